/* tensor_json.c — TF Serving request bodies into tensors, and the pieces both request parsers
 * share (formats and rules in kiln/tensor_json.h; v2 is tensor_json_v2.c).
 *
 * The top-level object is read once, checking its grammar, noting where "instances" or
 * "inputs" starts and skipping it; then that value is walked with one tj_builder per input
 * (tj_build.c), once everything that decides element types is known ("signature_name" may come
 * after "instances"). The skip is a cheap scan, so a body is read about twice, never more, and
 * no value is kept in any form but its tensor's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/tj_internal.h"

const char *kiln_tj_type_name(kiln_tj_type t) {
    static const char *names[] = {"FP32", "INT32", "INT64", "BYTES"};
    return (unsigned)t <= KILN_TJ_BYTES ? names[t] : "?";
}

kiln_tensor kiln_tj_as_tensor(const kiln_tj_tensor *t) {
    kiln_dtype dt = t->type == KILN_TJ_I32   ? KILN_I32
                    : t->type == KILN_TJ_I64 ? KILN_I64
                                             : KILN_F32;
    return kiln_tensor_view(dt, t->shape, t->data);
}

void kiln_tj_request_free(kiln_tj_request *r) {
    for (int i = 0; i < r->n_inputs; i++) {
        free(r->inputs[i].name);
        free(r->inputs[i].data);
        free(r->inputs[i].offsets);
    }
    free(r->inputs);
    for (int i = 0; i < r->n_outputs; i++) free(r->outputs[i]);
    free(r->outputs);
    free(r->outputs_binary);
    free(r->signature_name);
    free(r->id);
    memset(r, 0, sizeof *r);
}

/* ---- shared by both parsers (tj_internal.h) ---- */

int tj_key_is(const kiln_sbuf *k, const char *s) {
    size_t n = strlen(s);
    return k->len == n && memcmp(k->data, s, n) == 0;
}

kiln_status tj_read_key(js_cur *c, kiln_sbuf *key) {
    kiln_status st;
    kiln_sbuf_clear(key);
    if (kiln_sbuf_reserve(key, 0)) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    if (js_peek(c) != '"') return js_syntax(c, "expected a string key");
    if ((st = js_string(c, key))) return st;
    if (strlen(key->data) != key->len) return js_syntax(c, "NUL character in a key");
    return js_expect(c, ':', "expected ':' after a key");
}

kiln_status tj_read_cstring(js_cur *c, const char *what, char **out) {
    js_kind k = js_kind_at(c);
    if (k != JS_STRING)
        return kiln_error(KILN_ERR_INVALID, "%s: expected a string, got %s", what, js_kind_name(k));
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_status st = js_string(c, &s);
    if (st) {
        kiln_sbuf_free(&s);
        return st;
    }
    size_t len;
    char *v = kiln_sbuf_take(&s, &len);
    if (!v) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    if (strlen(v) != len) {
        free(v);
        return kiln_error(KILN_ERR_INVALID, "%s: NUL character in the string", what);
    }
    *out = v;
    return KILN_OK;
}

int tj_is_b64_object(const js_cur *c0) {
    js_cur c = *c0;
    if (js_peek(&c) != '{') return 0;
    c.p++;
    if (js_peek(&c) != '"' || c.end - c.p < 5 || memcmp(c.p, "\"b64\"", 5) != 0) return 0;
    c.p += 5;
    if (js_peek(&c) != ':') return 0;
    c.p++;
    if (js_kind_at(&c) != JS_STRING || js_skip_value(&c, 1)) return 0;
    return js_peek(&c) == '}';
}

kiln_status tj_add_builder(tj_parse_ctx *x, const char *name, const char *root, int named_row,
                           int base, const tj_dtype *decl, const char *where, tj_builder **out) {
    if (x->nb >= KILN_TJ_MAX_INPUTS)
        return kiln_error(KILN_ERR_INVALID, "%s: more than %d inputs", where, KILN_TJ_MAX_INPUTS);
    kiln_tj_type type = decl && decl->kind == TJ_BYTES_DT ? KILN_TJ_BYTES : KILN_TJ_F32;
    int auto_type = !decl;
    if (x->schema && x->schema->input_type) {
        kiln_status st = x->schema->input_type(x->schema->ctx, x->signature, name, &type);
        if (st) {
            kiln_error_prefix("%s", where);
            return st;
        }
        if ((unsigned)type > KILN_TJ_BYTES)
            return kiln_error(KILN_ERR_INVALID,
                              "%s: the schema gave input '" TJ_NAME "' an unknown type %d", where,
                              name, (int)type);
        auto_type = 0;
        if (decl && (decl->kind == TJ_BYTES_DT) != (type == KILN_TJ_BYTES))
            return kiln_error(KILN_ERR_INVALID, "%s: datatype %s, but the model takes %s for it",
                              where, decl->name, kiln_tj_type_name(type));
    }
    tj_builder *b = &x->b[x->nb];
    kiln_status st = tj_builder_init(b, name, type, auto_type, root, named_row, base);
    if (st) return st;
    b->decl = decl;
    x->nb++;
    *out = b;
    return KILN_OK;
}

int tj_find_builder(const tj_parse_ctx *x, const char *name) {
    for (int i = 0; i < x->nb; i++)
        if (strcmp(x->b[i].name, name) == 0) return i;
    return -1;
}

kiln_status tj_finish_all(tj_parse_ctx *x, kiln_tj_request *out) {
    out->inputs = calloc((size_t)x->nb, sizeof *out->inputs);
    if (!out->inputs) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < x->nb; i++) {
        kiln_status st = tj_finish(&x->b[i], &out->inputs[i]);
        if (st) return st;
        out->n_inputs = i + 1;
    }
    x->nb = 0;
    return KILN_OK;
}

void tj_ctx_init(tj_parse_ctx *x, const kiln_tj_schema *schema) {
    /* the builders past x->nb are never read: no need to clear 64 of them */
    x->schema = schema, x->signature = NULL, x->nb = 0;
    x->key = (kiln_sbuf)KILN_SBUF_INIT;
    x->bin = NULL, x->bin_len = x->bin_off = 0, x->has_bin = 0;
}

void tj_ctx_free(tj_parse_ctx *x) {
    for (int i = 0; i < x->nb; i++) tj_builder_free(&x->b[i]);
    x->nb = 0;
    kiln_sbuf_free(&x->key);
}

kiln_status tj_at_end(js_cur *c) {
    return js_peek(c) < 0 ? KILN_OK : js_syntax(c, "unexpected data after the JSON object");
}

/* ---- TF Serving ---- */

/* "instances": [{"a": ..., "b": ...}, ...] */
static kiln_status tf_named_rows(tj_parse_ctx *x, js_cur *c) {
    kiln_status st = KILN_OK;
    char where[160];
    unsigned char seen[KILN_TJ_MAX_INPUTS];
    int64_t i = 0;
    c->p++; /* '[' */
    for (;; i++) {
        js_kind k = js_kind_at(c);
        if (k != JS_OBJECT)
            return kiln_error(KILN_ERR_INVALID,
                              "instances[%lld]: expected an object of named "
                              "inputs like instances[0], got %s",
                              (long long)i, js_kind_name(k));
        c->p++;
        memset(seen, 0, sizeof seen);
        if (js_peek(c) == '}')
            return kiln_error(KILN_ERR_INVALID, "instances[%lld]: empty object", (long long)i);
        for (;;) {
            if ((st = tj_read_key(c, &x->key))) return st;
            int j = tj_find_builder(x, x->key.data);
            if (j < 0) {
                if (i > 0)
                    return kiln_error(KILN_ERR_INVALID,
                                      "instances[%lld]: input '" TJ_NAME "' is not in instances[0]",
                                      (long long)i, x->key.data);
                tj_builder *nb;
                snprintf(where, sizeof where, "instances[0]." TJ_NAME, x->key.data);
                if ((st = tj_add_builder(x, x->key.data, "instances", 1, 1, NULL, where, &nb)))
                    return st;
                j = x->nb - 1;
            }
            if (seen[j])
                return kiln_error(KILN_ERR_INVALID,
                                  "instances[%lld]: input '" TJ_NAME "' given twice", (long long)i,
                                  x->key.data);
            seen[j] = 1;
            x->b[j].idx[0] = i;
            if ((st = tj_walk(&x->b[j], c, 1))) return st;
            int more = js_next(c, '}', &st);
            if (more < 0) return st;
            if (!more) break;
        }
        for (int j = 0; j < x->nb; j++)
            if (!seen[j])
                return kiln_error(KILN_ERR_INVALID,
                                  "instances[%lld]: missing input '" TJ_NAME
                                  "' (instances[0] has it)",
                                  (long long)i, x->b[j].name);
        int more = js_next(c, ']', &st);
        if (more < 0) return st;
        if (!more) break;
    }
    for (int j = 0; j < x->nb; j++) {
        x->b[j].dims[0] = i + 1;
        x->b[j].dims_set |= 1;
    }
    return KILN_OK;
}

static kiln_status tf_rows(tj_parse_ctx *x, js_cur *c, kiln_tj_request *out) {
    js_kind k = js_kind_at(c);
    if (k != JS_ARRAY)
        return kiln_error(KILN_ERR_INVALID, "instances: expected a list, got %s", js_kind_name(k));
    js_cur look = *c;
    look.p++;
    if (js_peek(&look) == ']') return kiln_error(KILN_ERR_INVALID, "instances: empty list");
    if (js_kind_at(&look) == JS_OBJECT && !tj_is_b64_object(&look)) {
        out->named = 1;
        return tf_named_rows(x, c);
    }
    tj_builder *b;
    kiln_status st = tj_add_builder(x, "", "instances", 0, 0, NULL, "instances", &b);
    return st ? st : tj_walk(b, c, 0);
}

static kiln_status tf_columns(tj_parse_ctx *x, js_cur *c, kiln_tj_request *out) {
    kiln_status st;
    tj_builder *b;
    if (js_kind_at(c) != JS_OBJECT || tj_is_b64_object(c)) {
        if ((st = tj_add_builder(x, "", "inputs", 0, 0, NULL, "inputs", &b))) return st;
        return tj_walk(b, c, 0);
    }
    out->named = 1;
    c->p++;
    if (js_peek(c) == '}') return kiln_error(KILN_ERR_INVALID, "inputs: empty object");
    for (;;) {
        if ((st = tj_read_key(c, &x->key))) return st;
        char root[96];
        snprintf(root, sizeof root, "inputs." TJ_NAME, x->key.data);
        if (tj_find_builder(x, x->key.data) >= 0)
            return kiln_error(KILN_ERR_INVALID, "%s: given twice", root);
        if ((st = tj_add_builder(x, x->key.data, root, 0, 0, NULL, root, &b))) return st;
        if ((st = tj_walk(b, c, 0))) return st;
        int more = js_next(c, '}', &st);
        if (more < 0) return st;
        if (!more) return KILN_OK;
    }
}

kiln_status kiln_tj_parse_tf(const char *body, size_t len, const kiln_tj_schema *schema,
                             kiln_tj_request *out) {
    memset(out, 0, sizeof *out);
    tj_parse_ctx x;
    tj_ctx_init(&x, schema);
    js_cur c = {body, body, body + len};
    const char *rows = NULL, *cols = NULL;
    kiln_status st = KILN_OK;
    int ch = js_peek(&c);
    if (ch != '{') {
        if (ch < 0)
            return kiln_error(KILN_ERR_INVALID, "empty body: expected {\"instances\": [...]} or "
                                                "{\"inputs\": ...}");
        if (js_kind_at(&c) == JS_BAD) return js_syntax(&c, "expected a JSON object");
        return kiln_error(KILN_ERR_INVALID,
                          "expected a JSON object with \"instances\" or "
                          "\"inputs\", got %s",
                          js_kind_name(js_kind_at(&c)));
    }
    c.p++;
    if (js_peek(&c) == '}') {
        c.p++;
    } else {
        for (;;) {
            if ((st = tj_read_key(&c, &x.key))) goto fail;
            if (tj_key_is(&x.key, "instances") || tj_key_is(&x.key, "inputs")) {
                const char **slot = tj_key_is(&x.key, "inputs") ? &cols : &rows;
                if (*slot) {
                    st = kiln_error(KILN_ERR_INVALID, "\"%s\" given twice", x.key.data);
                    goto fail;
                }
                js_peek(&c);
                *slot = c.p;
                st = js_skip_bracketed(&c); /* the walk checks what is inside */
                if (st) goto fail;
            } else if (tj_key_is(&x.key, "signature_name")) {
                if (out->signature_name) {
                    st = kiln_error(KILN_ERR_INVALID, "\"signature_name\" given twice");
                    goto fail;
                }
                if ((st = tj_read_cstring(&c, "signature_name", &out->signature_name))) goto fail;
            } else if ((st = js_skip_value(&c, 1))) {
                goto fail;
            }
            int more = js_next(&c, '}', &st);
            if (more < 0) goto fail;
            if (!more) break;
        }
    }
    if ((st = tj_at_end(&c))) goto fail;
    if (rows && cols) {
        st = kiln_error(KILN_ERR_INVALID, "give either \"instances\" (row format) or \"inputs\" "
                                          "(columnar format), not both");
        goto fail;
    }
    if (!rows && !cols) {
        st = kiln_error(KILN_ERR_INVALID, "missing \"instances\" (row format) or \"inputs\" "
                                          "(columnar format)");
        goto fail;
    }
    x.signature = out->signature_name;
    c.p = rows ? rows : cols;
    out->format = rows ? KILN_TJ_TF_ROW : KILN_TJ_TF_COLUMNAR;
    if ((st = rows ? tf_rows(&x, &c, out) : tf_columns(&x, &c, out))) goto fail;
    if ((st = tj_finish_all(&x, out))) goto fail;
    tj_ctx_free(&x);
    return KILN_OK;
fail:
    tj_ctx_free(&x);
    kiln_tj_request_free(out);
    return st;
}

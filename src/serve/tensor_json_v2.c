/* tensor_json_v2.c — Open Inference Protocol v2 request bodies into tensors (kiln/tensor_json.h).
 *
 * The top-level object is read once, noting where "inputs" and "outputs" start; then each input
 * object is read in full (its fields come in any order) and only then is its "data" walked, with
 * the declared datatype and the model's element type known. Data may be flat or nested (row-major
 * either way); its element count must be the product of "shape", which becomes the tensor's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/tj_internal.h"

/* "shape": [d0, d1, ...] */
static kiln_status v2_shape(js_cur *c, const char *where, kiln_shape *shape) {
    kiln_status st = KILN_OK;
    js_kind k = js_kind_at(c);
    if (k != JS_ARRAY)
        return kiln_error(KILN_ERR_INVALID, "%s shape: expected a list of dims, got %s", where,
                          js_kind_name(k));
    shape->ndim = 0;
    c->p++;
    if (js_peek(c) == ']') {
        c->p++;
        return KILN_OK;
    }
    int64_t numel = 1;
    for (;;) {
        js_num n;
        if ((k = js_kind_at(c)) != JS_NUMBER)
            return kiln_error(KILN_ERR_INVALID, "%s shape: expected a number, got %s", where,
                              js_kind_name(k));
        if ((st = js_number(c, &n))) return st;
        if (!n.is_int || n.i < 1)
            return kiln_error(KILN_ERR_INVALID, "%s shape: dims must be integers >= 1, got %.*s",
                              where, n.text_len > 40 ? 40 : n.text_len, n.text);
        if (shape->ndim == KILN_MAX_DIMS)
            return kiln_error(KILN_ERR_INVALID, "%s shape: more than %d dims", where,
                              KILN_MAX_DIMS);
        if (n.i > INT64_MAX / numel)
            return kiln_error(KILN_ERR_INVALID, "%s shape: too many elements", where);
        numel *= n.i;
        shape->dims[shape->ndim++] = n.i;
        int more = js_next(c, ']', &st);
        if (more < 0) return st;
        if (!more) return KILN_OK;
    }
}

/* One element of "inputs": reads it and walks its data. */
static kiln_status v2_input(tj_parse_ctx *x, js_cur *c, int idx) {
    kiln_status st = KILN_OK;
    char where[112];
    snprintf(where, sizeof where, "inputs[%d]", idx);
    js_kind k = js_kind_at(c);
    if (k != JS_OBJECT)
        return kiln_error(KILN_ERR_INVALID, "%s: expected an object, got %s", where,
                          js_kind_name(k));
    c->p++;
    char *name = NULL;
    const char *data = NULL, *data_end = NULL;
    const tj_dtype *decl = NULL;
    kiln_shape shape = {0};
    int has_shape = 0, has_dtype = 0;
    if (js_peek(c) != '}') {
        for (;;) {
            if ((st = tj_read_key(c, &x->key))) goto out;
            int dup = 0;
            if (tj_key_is(&x->key, "name")) {
                if (!(dup = name != NULL)) {
                    char what[128];
                    snprintf(what, sizeof what, "%s name", where);
                    if ((st = tj_read_cstring(c, what, &name))) goto out;
                    if (!*name) {
                        st = kiln_error(KILN_ERR_INVALID, "%s name: empty", where);
                        goto out;
                    }
                    snprintf(where, sizeof where, "input '" TJ_NAME "'", name);
                }
            } else if (tj_key_is(&x->key, "shape")) {
                if (!(dup = has_shape)) {
                    if ((st = v2_shape(c, where, &shape))) goto out;
                    has_shape = 1;
                }
            } else if (tj_key_is(&x->key, "datatype")) {
                if (!(dup = has_dtype)) {
                    char what[128], *dt = NULL;
                    snprintf(what, sizeof what, "%s datatype", where);
                    if ((st = tj_read_cstring(c, what, &dt))) goto out;
                    decl = tj_dtype_find(dt);
                    if (!decl)
                        st = kiln_error(KILN_ERR_INVALID,
                                        "%s: datatype \"%.32s\" is not "
                                        "supported (%s)",
                                        where, dt, TJ_DTYPE_LIST);
                    free(dt);
                    if (st) goto out;
                    has_dtype = 1;
                }
            } else if (tj_key_is(&x->key, "data")) {
                if (!(dup = data != NULL)) {
                    js_peek(c);
                    data = c->p;
                    st = js_skip_value(c, 3);
                    if (st) goto out;
                    data_end = c->p;
                }
            } else if ((st = js_skip_value(c, 3))) { /* "parameters" and anything else */
                goto out;
            }
            if (dup) {
                st = kiln_error(KILN_ERR_INVALID, "%s: \"%s\" given twice", where, x->key.data);
                goto out;
            }
            int more = js_next(c, '}', &st);
            if (more < 0) goto out;
            if (!more) break;
        }
    } else {
        c->p++;
    }
    const char *missing = !name        ? "name"
                          : !has_shape ? "shape"
                          : !has_dtype ? "datatype"
                          : !data      ? "data"
                                       : NULL;
    if (missing) {
        st = kiln_error(KILN_ERR_INVALID, "%s: missing \"%s\"", where, missing);
        goto out;
    }
    if (tj_find_builder(x, name) >= 0) {
        st = kiln_error(KILN_ERR_INVALID, "%s: given twice", where);
        goto out;
    }
    char root[128];
    snprintf(root, sizeof root, "%.112s data", where);
    tj_builder *b;
    if ((st = tj_add_builder(x, name, root, 0, 0, decl, where, &b))) goto out;
    int64_t numel = kiln_shape_numel(&shape), room = (data_end - data) / 2 + 1;
    if ((st = tj_builder_reserve(b, numel < room ? numel : room))) goto out;
    js_cur dc = {c->base, data, c->end};
    if ((st = tj_walk(b, &dc, 0))) goto out;
    if (b->count != numel) {
        char s[96];
        st = kiln_error(KILN_ERR_INVALID, "%s: shape %s needs %lld values, data has %lld", where,
                        kiln_shape_str(&shape, s, sizeof s), (long long)numel, (long long)b->count);
        goto out;
    }
    /* the declared shape, not the nesting, is the tensor's */
    b->leaf_depth = shape.ndim;
    for (int d = 0; d < shape.ndim; d++) b->dims[d] = shape.dims[d];
out:
    free(name);
    return st;
}

/* "outputs": [{"name": ...}, ...] */
static kiln_status v2_outputs(js_cur *c, tj_parse_ctx *x, kiln_tj_request *out) {
    kiln_status st = KILN_OK;
    js_kind k = js_kind_at(c);
    if (k != JS_ARRAY)
        return kiln_error(KILN_ERR_INVALID, "outputs: expected a list, got %s", js_kind_name(k));
    c->p++;
    if (js_peek(c) == ']') return KILN_OK;
    out->outputs = calloc(KILN_TJ_MAX_INPUTS, sizeof *out->outputs);
    if (!out->outputs) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0;; i++) {
        if (i == KILN_TJ_MAX_INPUTS)
            return kiln_error(KILN_ERR_INVALID, "outputs: more than %d", KILN_TJ_MAX_INPUTS);
        if ((k = js_kind_at(c)) != JS_OBJECT)
            return kiln_error(KILN_ERR_INVALID, "outputs[%d]: expected an object, got %s", i,
                              js_kind_name(k));
        c->p++;
        char what[48], *name = NULL;
        snprintf(what, sizeof what, "outputs[%d] name", i);
        if (js_peek(c) != '}') {
            for (;;) {
                if ((st = tj_read_key(c, &x->key))) break;
                if (tj_key_is(&x->key, "name") && !name)
                    st = tj_read_cstring(c, what, &name);
                else
                    st = js_skip_value(c, 3);
                if (st) break;
                int more = js_next(c, '}', &st);
                if (more <= 0) break;
            }
        } else {
            c->p++;
        }
        if (!st && !name) st = kiln_error(KILN_ERR_INVALID, "outputs[%d]: missing \"name\"", i);
        if (st) {
            free(name);
            return st;
        }
        out->outputs[out->n_outputs++] = name;
        int more = js_next(c, ']', &st);
        if (more < 0) return st;
        if (!more) return KILN_OK;
    }
}

kiln_status kiln_tj_parse_v2(const char *body, size_t len, const kiln_tj_schema *schema,
                             kiln_tj_request *out) {
    memset(out, 0, sizeof *out);
    out->format = KILN_TJ_V2;
    tj_parse_ctx x;
    tj_ctx_init(&x, schema);
    js_cur c = {body, body, body + len};
    const char *inputs = NULL, *outputs = NULL;
    kiln_status st = KILN_OK;
    int ch = js_peek(&c);
    if (ch != '{') {
        if (ch < 0) return kiln_error(KILN_ERR_INVALID, "empty body: expected {\"inputs\": [...]}");
        if (js_kind_at(&c) == JS_BAD) return js_syntax(&c, "expected a JSON object");
        return kiln_error(KILN_ERR_INVALID, "expected a JSON object with \"inputs\", got %s",
                          js_kind_name(js_kind_at(&c)));
    }
    c.p++;
    if (js_peek(&c) == '}') {
        c.p++;
    } else {
        for (;;) {
            if ((st = tj_read_key(&c, &x.key))) goto fail;
            if (tj_key_is(&x.key, "inputs") || tj_key_is(&x.key, "outputs")) {
                const char **slot = tj_key_is(&x.key, "inputs") ? &inputs : &outputs;
                if (*slot) {
                    st = kiln_error(KILN_ERR_INVALID, "\"%s\" given twice", x.key.data);
                    goto fail;
                }
                js_peek(&c);
                *slot = c.p;
                st = js_skip_bracketed(&c); /* the walk checks what is inside */
                if (st) goto fail;
            } else if (tj_key_is(&x.key, "id")) {
                if (out->id) {
                    st = kiln_error(KILN_ERR_INVALID, "\"id\" given twice");
                    goto fail;
                }
                if ((st = tj_read_cstring(&c, "id", &out->id))) goto fail;
            } else if ((st = js_skip_value(&c, 1))) { /* "parameters" and anything else */
                goto fail;
            }
            int more = js_next(&c, '}', &st);
            if (more < 0) goto fail;
            if (!more) break;
        }
    }
    if ((st = tj_at_end(&c))) goto fail;
    if (!inputs) {
        st = kiln_error(KILN_ERR_INVALID, "missing \"inputs\"");
        goto fail;
    }
    c.p = inputs;
    js_kind k = js_kind_at(&c);
    if (k != JS_ARRAY) {
        st = kiln_error(KILN_ERR_INVALID, "inputs: expected a list, got %s", js_kind_name(k));
        goto fail;
    }
    c.p++;
    if (js_peek(&c) == ']') {
        st = kiln_error(KILN_ERR_INVALID, "inputs: empty list");
        goto fail;
    }
    for (int i = 0;; i++) {
        if ((st = v2_input(&x, &c, i))) goto fail;
        int more = js_next(&c, ']', &st);
        if (more < 0) goto fail;
        if (!more) break;
    }
    if (outputs) {
        c.p = outputs;
        if ((st = v2_outputs(&c, &x, out))) goto fail;
    }
    if ((st = tj_finish_all(&x, out))) goto fail;
    tj_ctx_free(&x);
    return KILN_OK;
fail:
    tj_ctx_free(&x);
    kiln_tj_request_free(out);
    return st;
}

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

/* A "parameters" object at the cursor: the value of the one key asked for (a non-negative
 * integer when want_int, else true/false) into *v; other keys are skipped. *found says whether
 * the key was there. what names the object in messages. */
static kiln_status v2_parameter(tj_parse_ctx *x, js_cur *c, const char *what, const char *key,
                                int want_int, int64_t *v, int *found) {
    kiln_status st = KILN_OK;
    js_kind k = js_kind_at(c);
    *found = 0;
    if (k != JS_OBJECT)
        return kiln_error(KILN_ERR_INVALID, "%s parameters: expected an object, got %s", what,
                          js_kind_name(k));
    c->p++;
    if (js_peek(c) == '}') return c->p++, KILN_OK;
    for (;;) {
        if ((st = tj_read_key(c, &x->key))) return st;
        if (tj_key_is(&x->key, key)) {
            if (*found)
                return kiln_error(KILN_ERR_INVALID, "%s parameters: \"%s\" given twice", what, key);
            *found = 1;
            k = js_kind_at(c);
            if (want_int) {
                js_num n;
                if (k != JS_NUMBER || (st = js_number(c, &n)) || !n.is_int || n.i < 0)
                    return st ? st
                              : kiln_error(KILN_ERR_INVALID,
                                           "%s parameters: \"%s\" must be "
                                           "a byte count (an integer >= 0)",
                                           what, key);
                *v = n.i;
            } else {
                if (k != JS_TRUE && k != JS_FALSE)
                    return kiln_error(KILN_ERR_INVALID,
                                      "%s parameters: \"%s\" must be true or "
                                      "false, got %s",
                                      what, key, js_kind_name(k));
                if ((st = js_literal(c, k))) return st;
                *v = k == JS_TRUE;
            }
        } else if ((st = js_skip_value(c, 4))) {
            return st;
        }
        int more = js_next(c, '}', &st);
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
    int has_shape = 0, has_dtype = 0, has_params = 0, binary = 0;
    int64_t bin_size = 0;
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
            } else if (tj_key_is(&x->key, "parameters")) {
                if (!(dup = has_params)) {
                    has_params = 1;
                    if ((st = v2_parameter(x, c, where, "binary_data_size", 1, &bin_size, &binary)))
                        goto out;
                }
            } else if ((st = js_skip_value(c, 3))) { /* anything else */
                goto out;
            }
            if (dup) {
                st = kiln_error(KILN_ERR_INVALID, "%s: \"%s\" given twice", where,
                                tj_key_is(&x->key, "parameters") ? "parameters" : x->key.data);
                goto out;
            }
            int more = js_next(c, '}', &st);
            if (more < 0) goto out;
            if (!more) break;
        }
    } else {
        c->p++;
    }
    const char *missing = !name ? "name" : !has_shape ? "shape" : !has_dtype ? "datatype" : NULL;
    if (missing || (!data && !binary)) {
        st = kiln_error(KILN_ERR_INVALID, "%s: missing \"%s\"%s", where, missing ? missing : "data",
                        missing ? ""
                                : " (or \"parameters\": {\"binary_data_size\": N} for "
                                  "binary tensor data)");
        goto out;
    }
    if (data && binary) { /* Triton: "Input must set only one of the following fields" */
        st = kiln_error(KILN_ERR_INVALID,
                        "%s: both \"data\" and \"parameters\": "
                        "{\"binary_data_size\"}; give one",
                        where);
        goto out;
    }
    if (binary && !x->has_bin) {
        st = kiln_error(KILN_ERR_INVALID,
                        "%s: \"binary_data_size\" is given, but the request "
                        "has no Inference-Header-Content-Length header to say where its JSON "
                        "ends and the binary data begins",
                        where);
        goto out;
    }
    if (binary && (uint64_t)bin_size > x->bin_len - x->bin_off) {
        st = kiln_error(KILN_ERR_INVALID,
                        "%s: binary_data_size is %lld, but only %zu bytes of "
                        "binary data are left after the JSON%s",
                        where, (long long)bin_size, x->bin_len - x->bin_off,
                        x->bin_off ? " and the inputs before it" : "");
        goto out;
    }
    if (tj_find_builder(x, name) >= 0) {
        st = kiln_error(KILN_ERR_INVALID, "%s: given twice", where);
        goto out;
    }
    char root[128];
    snprintf(root, sizeof root, "%.104s %sdata", where, binary ? "binary " : "");
    tj_builder *b;
    if ((st = tj_add_builder(x, name, root, 0, 0, decl, where, &b))) goto out;
    int64_t numel = kiln_shape_numel(&shape);
    if (binary) {
        const unsigned char *p = x->bin + x->bin_off;
        x->bin_off += (size_t)bin_size;
        if ((st = tj_put_binary(b, p, (size_t)bin_size, numel))) goto out;
    } else {
        int64_t room = (data_end - data) / 2 + 1;
        if ((st = tj_builder_reserve(b, numel < room ? numel : room))) goto out;
        js_cur dc = {c->base, data, c->end};
        if ((st = tj_walk(b, &dc, 0))) goto out;
    }
    if (b->count != numel) {
        char s[96];
        st = kiln_error(KILN_ERR_INVALID, "%s: shape %s needs %lld values, %sdata has %lld", where,
                        kiln_shape_str(&shape, s, sizeof s), (long long)numel,
                        binary ? "binary " : "", (long long)b->count);
        goto out;
    }
    /* the declared shape, not the nesting, is the tensor's */
    b->leaf_depth = shape.ndim;
    for (int d = 0; d < shape.ndim; d++) b->dims[d] = shape.dims[d];
out:
    free(name);
    return st;
}

/* "outputs": [{"name": ..., "parameters": {"binary_data": b}}, ...]; out->outputs_binary[i] gets
 * b, or 2 when not given (resolved by the caller once binary_data_output is known). */
static kiln_status v2_outputs(js_cur *c, tj_parse_ctx *x, kiln_tj_request *out) {
    kiln_status st = KILN_OK;
    js_kind k = js_kind_at(c);
    if (k != JS_ARRAY)
        return kiln_error(KILN_ERR_INVALID, "outputs: expected a list, got %s", js_kind_name(k));
    c->p++;
    if (js_peek(c) == ']') return KILN_OK;
    out->outputs = calloc(KILN_TJ_MAX_INPUTS, sizeof *out->outputs);
    out->outputs_binary = calloc(KILN_TJ_MAX_INPUTS, sizeof *out->outputs_binary);
    if (!out->outputs || !out->outputs_binary) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0;; i++) {
        if (i == KILN_TJ_MAX_INPUTS)
            return kiln_error(KILN_ERR_INVALID, "outputs: more than %d", KILN_TJ_MAX_INPUTS);
        if ((k = js_kind_at(c)) != JS_OBJECT)
            return kiln_error(KILN_ERR_INVALID, "outputs[%d]: expected an object, got %s", i,
                              js_kind_name(k));
        c->p++;
        char what[48], where[32], *name = NULL;
        snprintf(what, sizeof what, "outputs[%d] name", i);
        snprintf(where, sizeof where, "outputs[%d]", i);
        int64_t binary = 2;
        int has_params = 0, found = 0;
        if (js_peek(c) != '}') {
            for (;;) {
                if ((st = tj_read_key(c, &x->key))) break;
                if (tj_key_is(&x->key, "name") && !name) {
                    st = tj_read_cstring(c, what, &name);
                } else if (tj_key_is(&x->key, "parameters") && !has_params) {
                    has_params = 1;
                    st = v2_parameter(x, c, where, "binary_data", 0, &binary, &found);
                    if (!found) binary = 2;
                } else {
                    st = js_skip_value(c, 3);
                }
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
        out->outputs_binary[out->n_outputs] = (unsigned char)binary;
        out->outputs[out->n_outputs++] = name;
        int more = js_next(c, ']', &st);
        if (more < 0) return st;
        if (!more) return KILN_OK;
    }
}

/* has_bin: a header said where the JSON ends (json_len), so binary data may follow it. */
static kiln_status parse_v2(const char *body, size_t len, size_t json_len, int has_bin,
                            const kiln_tj_schema *schema, kiln_tj_request *out) {
    memset(out, 0, sizeof *out);
    out->format = KILN_TJ_V2;
    if (json_len > len)
        return kiln_error(KILN_ERR_INVALID,
                          "the JSON is said to be %zu bytes long, but the body "
                          "has %zu",
                          json_len, len);
    tj_parse_ctx x;
    tj_ctx_init(&x, schema);
    x.has_bin = has_bin;
    x.bin = (const unsigned char *)body + json_len, x.bin_len = len - json_len;
    js_cur c = {body, body, body + json_len};
    const char *inputs = NULL, *outputs = NULL;
    int has_params = 0, found = 0;
    int64_t bdo = 0;
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
            } else if (tj_key_is(&x.key, "parameters")) {
                if (has_params) {
                    st = kiln_error(KILN_ERR_INVALID, "\"parameters\" given twice");
                    goto fail;
                }
                has_params = 1;
                if ((st = v2_parameter(&x, &c, "request", "binary_data_output", 0, &bdo, &found)))
                    goto fail;
            } else if ((st = js_skip_value(&c, 1))) { /* anything else */
                goto fail;
            }
            int more = js_next(&c, '}', &st);
            if (more < 0) goto fail;
            if (!more) break;
        }
    }
    if (js_peek(&c) >= 0) {
        st =
            js_syntax(&c, x.has_bin ? "unexpected data after the JSON object (the "
                                      "Inference-Header-Content-Length header says where it ends)"
                                    : "unexpected data after the JSON object (binary tensor data "
                                      "after it needs the Inference-Header-Content-Length header)");
        goto fail;
    }
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
    if (x.bin_off != x.bin_len) { /* Triton: "unexpected additional input data" */
        st = kiln_error(KILN_ERR_INVALID,
                        "%zu bytes of binary data after the JSON belong to no "
                        "input (their binary_data_size add up to %zu)",
                        x.bin_len - x.bin_off, x.bin_off);
        goto fail;
    }
    if (outputs) {
        c.p = outputs;
        if ((st = v2_outputs(&c, &x, out))) goto fail;
    }
    out->binary_data_output = (int)bdo;
    for (int i = 0; i < out->n_outputs; i++)
        if (out->outputs_binary[i] == 2) out->outputs_binary[i] = (unsigned char)bdo;
    if ((st = tj_finish_all(&x, out))) goto fail;
    tj_ctx_free(&x);
    return KILN_OK;
fail:
    tj_ctx_free(&x);
    kiln_tj_request_free(out);
    return st;
}

kiln_status kiln_tj_parse_v2_binary(const char *body, size_t len, size_t json_len,
                                    const kiln_tj_schema *schema, kiln_tj_request *out) {
    return parse_v2(body, len, json_len, 1, schema, out);
}

kiln_status kiln_tj_parse_v2(const char *body, size_t len, const kiln_tj_schema *schema,
                             kiln_tj_request *out) {
    return parse_v2(body, len, len, 0, schema, out);
}

kiln_status kiln_tj_parse_v2_raw(const char *body, size_t len, const char *input_name,
                                 const char *dtype, const kiln_shape *shape,
                                 const kiln_tj_schema *schema, kiln_tj_request *out) {
    memset(out, 0, sizeof *out);
    out->format = KILN_TJ_V2;
    out->binary_data_output = 1;
    const tj_dtype *decl = tj_dtype_find(dtype);
    if (!decl) return kiln_error(KILN_ERR_INVALID, "raw binary request: datatype %s", dtype);
    tj_parse_ctx x;
    tj_ctx_init(&x, schema);
    char where[96];
    snprintf(where, sizeof where, "raw binary request: input '" TJ_NAME "'", input_name);
    tj_builder *b;
    kiln_status st = tj_add_builder(&x, input_name, where, 0, 0, decl, where, &b);
    if (!st) st = tj_put_binary(b, (const unsigned char *)body, len, kiln_shape_numel(shape));
    if (!st && b->count != kiln_shape_numel(shape)) {
        char s[96];
        st = kiln_error(KILN_ERR_INVALID, "%s: shape %s needs %lld values, the body has %lld",
                        where, kiln_shape_str(shape, s, sizeof s),
                        (long long)kiln_shape_numel(shape), (long long)b->count);
    }
    if (!st) {
        b->leaf_depth = shape->ndim;
        for (int d = 0; d < shape->ndim; d++) b->dims[d] = shape->dims[d];
        st = tj_finish_all(&x, out);
    }
    tj_ctx_free(&x);
    if (st) kiln_tj_request_free(out);
    return st;
}

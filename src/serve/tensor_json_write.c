/* tensor_json_write.c — response bodies: TF Serving's predictions/outputs and v2's outputs
 * (formats in kiln/tensor_json.h).
 *
 * Values stream into a kiln_sbuf: nested lists are written by one loop over the flat data that
 * opens and closes brackets as the index rolls over dims, with room for a typical value
 * (12 bytes) reserved up front, so the hot loop is number formatting and stores. Outputs are
 * checked before anything is written: a bad output leaves the buffer as it was.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kiln/tensor_json.h"

static kiln_status check_outputs(const kiln_tj_output *outs, int n, int need_batch) {
    if (n < 1 || n > KILN_TJ_MAX_INPUTS)
        return kiln_error(KILN_ERR_INVALID, "response: %d outputs (1 to %d)", n,
                          KILN_TJ_MAX_INPUTS);
    for (int i = 0; i < n; i++) {
        const kiln_tj_output *o = &outs[i];
        const char *name = o->name ? o->name : "?";
        char s[96];
        if ((unsigned)o->type > KILN_TJ_BYTES)
            return kiln_error(KILN_ERR_INVALID, "output '%.64s': unknown type %d", name,
                              (int)o->type);
        if (!o->name || !o->data || o->shape.ndim < 0 || o->shape.ndim > KILN_MAX_DIMS)
            return kiln_error(KILN_ERR_INVALID,
                              "output '%.64s': needs a name, data and 0 to %d dims", name,
                              KILN_MAX_DIMS);
        for (int d = 0; d < o->shape.ndim; d++)
            if (o->shape.dims[d] < 1)
                return kiln_error(KILN_ERR_INVALID, "output '%.64s': shape %s has an empty dim",
                                  name, kiln_shape_str(&o->shape, s, sizeof s));
        if (need_batch && (o->shape.ndim < 1 || o->shape.dims[0] != outs[0].shape.dims[0]))
            return kiln_error(KILN_ERR_INVALID,
                              "output '%.64s': shape %s; the row format needs "
                              "a leading batch dim shared by all outputs (output '%.64s' has %lld)",
                              name, kiln_shape_str(&o->shape, s, sizeof s), outs[0].name,
                              outs[0].shape.ndim ? (long long)outs[0].shape.dims[0] : 0ll);
    }
    return KILN_OK;
}

/* Writes v in decimal at o; returns the length. */
static int put_int(char *o, int64_t v) {
    char tmp[24];
    int n = 0, len = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do tmp[n++] = (char)('0' + u % 10), u /= 10;
    while (u);
    if (v < 0) o[len++] = '-';
    while (n) o[len++] = tmp[--n];
    return len;
}

/* The values [start, start + prod(dims)) of data, nested as dims (ndim 0: one bare value). */
static void put_nested(kiln_sbuf *b, kiln_tj_type t, const void *data, int64_t start,
                       const int64_t *dims, int ndim) {
    int64_t numel = 1, idx[KILN_MAX_DIMS] = {0};
    for (int d = 0; d < ndim; d++) numel *= dims[d];
    if (kiln_sbuf_reserve(b, (size_t)numel * 12 + 2 * (size_t)ndim)) return;
    for (int d = 0; d < ndim; d++) b->data[b->len++] = '[';
    for (int64_t i = 0; i < numel; i++) {
        if (t == KILN_TJ_BYTES) kiln_sbuf_json_str(b, ((const char *const *)data)[start + i]);
        char *o = kiln_sbuf_room(b, KILN_F32_CHARS + 2 * KILN_MAX_DIMS + 1), *o0 = o;
        if (!o) return;
        if (t == KILN_TJ_BYTES)
            ;
        else if (t == KILN_TJ_F32)
            o += kiln_f32_shortest(((const float *)data)[start + i], o);
        else if (t == KILN_TJ_I32)
            o += put_int(o, ((const int32_t *)data)[start + i]);
        else
            o += put_int(o, ((const int64_t *)data)[start + i]);
        int d = ndim - 1, closed = 0;
        while (d >= 0 && ++idx[d] == dims[d]) idx[d] = 0, d--, closed++;
        for (int k = 0; k < closed; k++) *o++ = ']';
        if (d >= 0) {
            *o++ = ',';
            for (int k = 0; k < closed; k++) *o++ = '[';
        }
        *o = 0;
        b->len += (size_t)(o - o0);
    }
}

static kiln_status done(const kiln_sbuf *b) {
    return b->failed ? kiln_error(KILN_ERR_NOMEM, "out of memory writing the response") : KILN_OK;
}

kiln_status kiln_tj_write_tf_row(kiln_sbuf *b, const kiln_tj_output *outs, int n) {
    kiln_status st = check_outputs(outs, n, 1);
    if (st) return st;
    int64_t batch = outs[0].shape.dims[0];
    kiln_sbuf_puts(b, "{\"predictions\":[");
    for (int64_t r = 0; r < batch; r++) {
        if (r) kiln_sbuf_putc(b, ',');
        if (n > 1) kiln_sbuf_putc(b, '{');
        for (int i = 0; i < n; i++) {
            const kiln_tj_output *o = &outs[i];
            int64_t row = kiln_shape_numel(&o->shape) / batch;
            if (n > 1) {
                if (i) kiln_sbuf_putc(b, ',');
                kiln_sbuf_json_str(b, o->name);
                kiln_sbuf_putc(b, ':');
            }
            put_nested(b, o->type, o->data, r * row, o->shape.dims + 1, o->shape.ndim - 1);
        }
        if (n > 1) kiln_sbuf_putc(b, '}');
    }
    kiln_sbuf_puts(b, "]}");
    return done(b);
}

kiln_status kiln_tj_write_tf_columnar(kiln_sbuf *b, const kiln_tj_output *outs, int n) {
    kiln_status st = check_outputs(outs, n, 0);
    if (st) return st;
    kiln_sbuf_puts(b, "{\"outputs\":");
    if (n > 1) kiln_sbuf_putc(b, '{');
    for (int i = 0; i < n; i++) {
        if (n > 1) {
            if (i) kiln_sbuf_putc(b, ',');
            kiln_sbuf_json_str(b, outs[i].name);
            kiln_sbuf_putc(b, ':');
        }
        put_nested(b, outs[i].type, outs[i].data, 0, outs[i].shape.dims, outs[i].shape.ndim);
    }
    if (n > 1) kiln_sbuf_putc(b, '}');
    kiln_sbuf_putc(b, '}');
    return done(b);
}

/* The bytes of output o as binary tensor data: little-endian values, or for BYTES each
 * string's 4-byte little-endian length and its bytes. NULL b: only counts them. */
static size_t put_binary(kiln_sbuf *b, const kiln_tj_output *o) {
    int64_t numel = kiln_shape_numel(&o->shape);
    size_t total = 0;
    for (int64_t i = 0; i < numel; i++) {
        unsigned char v[8];
        uint64_t u = 0;
        int size = 4;
        const char *str = NULL;
        if (o->type == KILN_TJ_BYTES) {
            str = ((const char *const *)o->data)[i];
            u = strlen(str);
        } else if (o->type == KILN_TJ_F32) {
            uint32_t u32;
            memcpy(&u32, (const float *)o->data + i, 4);
            u = u32;
        } else if (o->type == KILN_TJ_I32) {
            u = (uint32_t)((const int32_t *)o->data)[i];
        } else {
            u = (uint64_t)((const int64_t *)o->data)[i], size = 8;
        }
        for (int k = 0; k < size; k++) v[k] = (unsigned char)(u >> (8 * k));
        total += (size_t)size + (str ? (size_t)u : 0);
        if (!b) continue;
        kiln_sbuf_put(b, (const char *)v, (size_t)size);
        if (str) kiln_sbuf_put(b, str, (size_t)u);
    }
    return total;
}

kiln_status kiln_tj_write_v2(kiln_sbuf *b, const char *model_name, const char *model_version,
                             const char *id, const kiln_tj_output *outs, int n) {
    size_t json_len;
    return kiln_tj_write_v2_binary(b, model_name, model_version, id, outs, n, &json_len);
}

kiln_status kiln_tj_write_v2_binary(kiln_sbuf *b, const char *model_name, const char *model_version,
                                    const char *id, const kiln_tj_output *outs, int n,
                                    size_t *json_len) {
    kiln_status st = check_outputs(outs, n, 0);
    if (st) return st;
    size_t start = b->len;
    kiln_sbuf_puts(b, "{\"model_name\":");
    kiln_sbuf_json_str(b, model_name ? model_name : "");
    if (model_version) {
        kiln_sbuf_puts(b, ",\"model_version\":");
        kiln_sbuf_json_str(b, model_version);
    }
    if (id) {
        kiln_sbuf_puts(b, ",\"id\":");
        kiln_sbuf_json_str(b, id);
    }
    kiln_sbuf_puts(b, ",\"outputs\":[");
    for (int i = 0; i < n; i++) {
        const kiln_tj_output *o = &outs[i];
        if (i) kiln_sbuf_putc(b, ',');
        kiln_sbuf_puts(b, "{\"name\":");
        kiln_sbuf_json_str(b, o->name);
        kiln_sbuf_puts(b, ",\"shape\":[");
        for (int d = 0; d < o->shape.ndim; d++) {
            if (d) kiln_sbuf_putc(b, ',');
            kiln_sbuf_i64(b, o->shape.dims[d]);
        }
        kiln_sbuf_puts(b, "],\"datatype\":");
        kiln_sbuf_json_str(b, kiln_tj_type_name(o->type));
        if (o->binary) {
            kiln_sbuf_puts(b, ",\"parameters\":{\"binary_data_size\":");
            kiln_sbuf_i64(b, (int64_t)put_binary(NULL, o));
            kiln_sbuf_puts(b, "}}");
            continue;
        }
        kiln_sbuf_puts(b, ",\"data\":");
        int64_t numel = kiln_shape_numel(&o->shape);
        put_nested(b, o->type, o->data, 0, &numel, 1);
        kiln_sbuf_putc(b, '}');
    }
    kiln_sbuf_puts(b, "]}");
    *json_len = b->len - start;
    for (int i = 0; i < n; i++)
        if (outs[i].binary) put_binary(b, &outs[i]);
    return done(b);
}

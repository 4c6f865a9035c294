/* fl_wire.c — what goes over the wire in federated learning: a model's parameters as a
 * safetensors body (kiln/fl.h's kiln_fl_encode / kiln_fl_decode).
 *
 * Encoding writes the safetensors layout directly into memory (8-byte little-endian header
 * length, the JSON header padded with spaces to a multiple of 8, then the F32 data in parameter
 * order, contiguous), metadata under "__metadata__". Decoding parses with src/io/'s reader
 * (which checks the framing, offsets and dtypes) and then holds the body to the model: every
 * parameter present once with its exact shape, F32, and nothing the model does not have. A
 * body that fails any check leaves the caller's buffer untouched, so a bad update never gets
 * near the aggregate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/fl.h"
#include "kiln/safetensors.h"
#include "kiln/sbuf.h"

static kiln_status encode(kiln_graph *g, const void *flat, size_t es, const char *dtype,
                          const char *const *meta_kv, int n_meta, char **out, size_t *len) {
    *out = NULL, *len = 0;
    kiln_sbuf h = KILN_SBUF_INIT;
    kiln_sbuf_puts(&h, "{");
    if (n_meta > 0) {
        kiln_sbuf_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) kiln_sbuf_putc(&h, ',');
            kiln_sbuf_json_str(&h, meta_kv[2 * i]);
            kiln_sbuf_putc(&h, ':');
            kiln_sbuf_json_str(&h, meta_kv[2 * i + 1]);
        }
        kiln_sbuf_puts(&h, "}");
    }
    size_t at = 0;
    int np = kiln_graph_param_count(g);
    for (int i = 0; i < np; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        if (i || n_meta > 0) kiln_sbuf_putc(&h, ',');
        kiln_sbuf_json_str(&h, pi->name);
        kiln_sbuf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dtype);
        for (int d = 0; d < pi->shape.ndim; d++)
            kiln_sbuf_printf(&h, "%s%lld", d ? "," : "", (long long)pi->shape.dims[d]);
        kiln_sbuf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", at, at + pi->numel * es);
        at += pi->numel * es;
    }
    kiln_sbuf_puts(&h, "}");
    while (h.len % 8) kiln_sbuf_putc(&h, ' ');
    if (h.failed) {
        kiln_sbuf_free(&h);
        return kiln_error(KILN_ERR_NOMEM, "fl: out of memory for the body");
    }
    size_t total = 8 + h.len + at;
    char *b = malloc(total);
    if (!b) {
        kiln_sbuf_free(&h);
        return kiln_error(KILN_ERR_NOMEM, "fl: out of memory for the body");
    }
    uint64_t hl = h.len;
    for (int i = 0; i < 8; i++) b[i] = (char)(hl >> (8 * i)); /* little-endian */
    memcpy(b + 8, h.data, h.len);
    char *p = b + 8 + h.len;
    for (int i = 0; i < np; i++) { /* x86 and ARM Linux are little-endian, as the format */
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        memcpy(p, (const char *)flat + pi->offset * es, pi->numel * es);
        p += pi->numel * es;
    }
    kiln_sbuf_free(&h);
    *out = b, *len = total;
    return KILN_OK;
}

kiln_status kiln_fl_encode(kiln_graph *g, const float *flat, const char *const *meta_kv, int n_meta,
                           char **out, size_t *len) {
    return encode(g, flat, 4, "F32", meta_kv, n_meta, out, len);
}

kiln_status kiln_fl_encode_masked(kiln_graph *g, const uint64_t *flat, const char *const *meta_kv,
                                  int n_meta, char **out, size_t *len) {
    return encode(g, flat, 8, "I64", meta_kv, n_meta, out, len);
}

static int same_shape(const kiln_shape *a, const kiln_shape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->dims[d] != b->dims[d]) return 0;
    return 1;
}

static void shape_str(const kiln_shape *s, char *buf, size_t cap) {
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < s->ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", d ? ", " : "", (long long)s->dims[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

static kiln_status decode(kiln_graph *g, const void *body, size_t len, const char *label,
                          void *flat, kiln_dtype dt) {
    size_t es = dt == KILN_I64 ? 8 : 4;
    kiln_st_file *f = NULL;
    kiln_status st = kiln_safetensors_parse(body, len, label, &f);
    if (st) return st;
    int np = kiln_graph_param_count(g);
    for (int i = 0; !st && i < np; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        const kiln_st_entry *e = kiln_st_find(f, pi->name);
        char a[96], b[96];
        if (!e) {
            st = kiln_error(KILN_ERR_INVALID, "%s: parameter '%s' is missing", label, pi->name);
        } else if (e->dtype != dt) {
            st = kiln_error(KILN_ERR_INVALID, "%s: '%s' is not %s", label, pi->name,
                            dt == KILN_I64 ? "I64" : "F32");
        } else if (!same_shape(&e->shape, &pi->shape)) {
            shape_str(&e->shape, a, sizeof a), shape_str(&pi->shape, b, sizeof b);
            st = kiln_error(KILN_ERR_INVALID, "%s: '%s' has shape %s, the model's is %s", label,
                            pi->name, a, b);
        }
    }
    if (!st && kiln_st_count(f) != np) {
        const char *extra = "?";
        for (int i = 0; i < kiln_st_count(f); i++) {
            const char *n = kiln_st_get(f, i)->name;
            int known = 0;
            for (int j = 0; j < np && !known; j++)
                known = !strcmp(kiln_graph_param_info(g, j)->name, n);
            if (!known) extra = n;
        }
        st = kiln_error(KILN_ERR_INVALID, "%s: tensor '%s' is not a parameter of the model", label,
                        extra);
    }
    for (int i = 0; !st && i < np; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        memcpy((char *)flat + pi->offset * es, kiln_st_find(f, pi->name)->data, pi->numel * es);
    }
    kiln_st_close(f);
    return st;
}

kiln_status kiln_fl_decode(kiln_graph *g, const void *body, size_t len, const char *label,
                           float *flat) {
    return decode(g, body, len, label, flat, KILN_F32);
}

kiln_status kiln_fl_decode_masked(kiln_graph *g, const void *body, size_t len, const char *label,
                                  uint64_t *flat) {
    return decode(g, body, len, label, flat, KILN_I64);
}

kiln_status kiln_fl_meta(const void *body, size_t len, const char *key, char *buf, size_t cap) {
    kiln_st_file *f = NULL;
    kiln_status st = kiln_safetensors_parse(body, len, "body", &f);
    if (st) return st;
    const char *v = kiln_st_meta(f, key);
    if (v) snprintf(buf, cap, "%s", v);
    kiln_st_close(f);
    return v ? KILN_OK : kiln_error(KILN_ERR_NOTFOUND, "body: no metadata '%s'", key);
}

/* explain_io.c — explainers of exports and the files and JSON that attributions travel in
 * (see kiln/explain.h): NPY and PNG bytes, one result as a JSON object.
 *
 * PNG: 8-bit RGB, one IDAT of zlib's deflate at Z_BEST_SPEED. Heat maps are magnified blocks,
 * so row 0 uses the Sub filter and every later row Up (a repeated row is all zeros): small files
 * at a fraction of the time of stb's encoder, which tries five filters per row and compresses
 * at level 8 (stb_image_write took about a fifth of `kiln explain` for 100 images).
 *
 * The black baseline of an export is the preprocessing of an all-zero raw row: what a black
 * image becomes after the export's scale, mean and std, so "black" means the same thing whether
 * the data was scaled to [0, 1] or standardized.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "kiln/explain.h"

kiln_explainer *kiln_explainer_from_servable(kiln_servable *s) {
    kiln_model *m = kiln_servable_model(s);
    if (!m) {
        kiln_error(KILN_ERR_INVALID, "explain: no servable");
        return NULL;
    }
    kiln_servable_info info = kiln_servable_get_info(s);
    kiln_explainer *e = kiln_explainer_new(m->graph, m->input, m->output, info.probabilities);
    if (!e) return NULL;
    int64_t w = kiln_explainer_row_size(e);
    float *zero = calloc((size_t)w, sizeof *zero);
    kiln_status st = zero ? kiln_servable_preprocess(s, zero, zero, 1)
                          : kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
    if (!st) st = kiln_explainer_set_black(e, zero);
    free(zero);
    if (st) {
        kiln_explainer_free(e);
        return NULL;
    }
    return e;
}

kiln_status kiln_explain_npy(const float *v, int ndim, const int64_t *dims, void **bytes,
                             size_t *len) {
    char hdr[256], shape[160] = "";
    size_t n = 1, at = 0;
    for (int i = 0; i < ndim; i++) {
        n *= (size_t)dims[i];
        at += (size_t)snprintf(shape + at, sizeof shape - at, "%lld%s", (long long)dims[i],
                               ndim == 1 || i < ndim - 1 ? ", " : "");
        if (at >= sizeof shape) return kiln_error(KILN_ERR_INVALID, "explain: NPY shape too long");
    }
    if (ndim == 1) shape[at - 1] = '\0'; /* "(5,)" */
    int h = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                     shape);
    size_t total = 10 + (size_t)h + 1, pad = (64 - total % 64) % 64;
    size_t hl = (size_t)h + pad + 1;
    *len = 10 + hl + n * 4;
    unsigned char *b = malloc(*len);
    if (!b) return kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)(hl & 255), b[9] = (unsigned char)(hl >> 8);
    memcpy(b + 10, hdr, (size_t)h);
    memset(b + 10 + h, ' ', pad);
    b[10 + hl - 1] = '\n';
    memcpy(b + 10 + hl, v, n * 4); /* x86 and ARM Linux are little-endian */
    *bytes = b;
    return KILN_OK;
}

static void be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* A chunk at b: length, type, data (already there at b + 8), CRC over type and data. */
static size_t chunk(unsigned char *b, const char *type, size_t n) {
    be32(b, (uint32_t)n);
    memcpy(b + 4, type, 4);
    be32(b + 8 + n, (uint32_t)crc32(crc32(0, Z_NULL, 0), b + 4, (uInt)(n + 4)));
    return 12 + n;
}

kiln_status kiln_explain_png(const unsigned char *rgb, int w, int h, void **bytes, size_t *len) {
    if (!rgb || w < 1 || h < 1 || w > (1 << 20) / 3 || h > (1 << 20))
        return kiln_error(KILN_ERR_INVALID, "explain: PNG of %dx%d pixels", w, h);
    size_t stride = (size_t)w * 3, raw_n = (size_t)h * (stride + 1);
    unsigned char *raw = malloc(raw_n);
    uLong bound = compressBound((uLong)raw_n);
    unsigned char *b = raw ? malloc(8 + 25 + 12 + bound + 12) : NULL;
    if (!b) {
        free(raw);
        return kiln_error(KILN_ERR_NOMEM, "explain: out of memory for a %dx%d PNG", w, h);
    }
    for (int y = 0; y < h; y++) { /* filter byte, then the row: Sub for row 0, Up after */
        unsigned char *o = raw + (size_t)y * (stride + 1);
        const unsigned char *r = rgb + (size_t)y * stride, *up = r - stride;
        o[0] = y ? 2 : 1;
        for (size_t i = 0; i < stride; i++)
            o[1 + i] = (unsigned char)(r[i] - (y ? up[i] : i >= 3 ? r[i - 3] : 0));
    }
    memcpy(b, "\x89PNG\r\n\x1a\n", 8);
    size_t at = 8;
    unsigned char *ih = b + at + 8;
    be32(ih, (uint32_t)w), be32(ih + 4, (uint32_t)h);
    ih[8] = 8, ih[9] = 2, ih[10] = ih[11] = ih[12] = 0; /* 8-bit RGB, deflate, no interlace */
    at += chunk(b + at, "IHDR", 13);
    uLongf zn = bound;
    int zr = compress2(b + at + 8, &zn, raw, (uLong)raw_n, Z_BEST_SPEED);
    free(raw);
    if (zr != Z_OK) {
        free(b);
        return kiln_error(KILN_ERR_NOMEM, "explain: PNG compression failed (%dx%d, zlib %d)", w, h,
                          zr);
    }
    at += chunk(b + at, "IDAT", zn);
    at += chunk(b + at, "IEND", 0);
    *bytes = b, *len = at;
    return KILN_OK;
}

static void num(kiln_sbuf *b, double v) {
    if (isfinite(v))
        kiln_sbuf_f32(b, (float)v);
    else
        kiln_sbuf_puts(b, "null");
}

void kiln_explain_result_json(kiln_sbuf *b, const kiln_explain_opts *o,
                              const kiln_explain_result *r, const char *class_name) {
    kiln_sbuf_puts(b, "{\"method\": ");
    kiln_sbuf_json_str(b, kiln_explain_method_name(o->method));
    kiln_sbuf_printf(b, ", \"target\": %d, \"class\": ", r->target);
    if (class_name)
        kiln_sbuf_json_str(b, class_name);
    else
        kiln_sbuf_puts(b, "null");
    kiln_sbuf_printf(b, ", \"predicted\": %d, \"score\": ", r->predicted);
    num(b, r->score);
    kiln_sbuf_puts(b, ", \"probability\": ");
    num(b, r->probability);
    kiln_sbuf_printf(b, ", \"explained\": \"%s\", \"parameters\": {",
                     o->probability ? "probability" : "logit");
    switch (o->method) {
    case KILN_EXPLAIN_INTEGRATED_GRADIENTS:
        kiln_sbuf_printf(b, "\"steps\": %d, \"baseline\": \"%s\"", o->steps > 0 ? o->steps : 64,
                         kiln_explain_baseline_name(o->baseline));
        if (o->baseline == KILN_BASELINE_BLURRED) {
            kiln_sbuf_puts(b, ", \"blur_sigma\": ");
            num(b, o->blur_sigma > 0 ? o->blur_sigma : 5.0);
        }
        if (o->baseline == KILN_BASELINE_UNIFORM)
            kiln_sbuf_printf(b, ", \"seed\": %llu", (unsigned long long)o->seed);
        break;
    case KILN_EXPLAIN_SMOOTHGRAD:
        kiln_sbuf_puts(b, "\"sigma\": ");
        num(b, o->sigma > 0 ? o->sigma : 0.15);
        kiln_sbuf_printf(b, ", \"samples\": %d, \"seed\": %llu", o->samples > 0 ? o->samples : 32,
                         (unsigned long long)o->seed);
        break;
    case KILN_EXPLAIN_OCCLUSION:
        kiln_sbuf_printf(b, "\"window\": %d, \"stride\": %d", o->window > 0 ? o->window : 4,
                         o->stride > 0 ? o->stride : 2);
        break;
    case KILN_EXPLAIN_GRADCAM:
    case KILN_EXPLAIN_GRADCAM_PP:
        kiln_sbuf_puts(b, "\"layer\": ");
        kiln_sbuf_json_str(b, r->layer ? r->layer : "");
        break;
    default:
        break;
    }
    kiln_sbuf_puts(b, "}, \"completeness_error\": ");
    num(b, r->completeness);
    kiln_sbuf_puts(b, ", \"baseline_score\": ");
    num(b, r->baseline_score);
    kiln_sbuf_puts(b, "}");
}

/* image_resize.c — resampling, center crop and HWC -> CHW for 8-bit images (see kiln/image.h).
 *
 * Resampling is separable, as in PIL's ImagingResample: each output column (then row) is a
 * weighted sum of a span of input columns. Output pixel i's center maps to
 * center = (i + 0.5) * scale in the input (scale = in / out); the filter is stretched by
 * max(scale, 1), so that shrinking averages over every input pixel it covers (antialiasing)
 * while enlarging interpolates. Filters: bilinear = triangle (support 1); area = box (support
 * 1/2), which averages exactly the input area an output pixel covers when shrinking (OpenCV's
 * INTER_AREA) and, when enlarging, becomes the triangle filter as INTER_AREA does. The weights of
 * each output pixel are normalized to sum to 1. The horizontal pass writes floats, the vertical
 * one rounds to the nearest byte once, at the end; an axis whose size does not change is copied.
 *
 * Memory: the weight tables and one float image of in_h x out_w x c, allocated per call.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/image.h"

typedef struct {
    int *lo, *n; /* [out] first input index and count */
    float *w;    /* [out, k] weights */
    int k;       /* the widest span */
} taps;

static double triangle(double x) {
    x = fabs(x);
    return x < 1 ? 1 - x : 0;
}
static double box(double x) {
    return x > -0.5 && x <= 0.5 ? 1 : 0;
}

static void taps_free(taps *t) {
    free(t->lo), free(t->n), free(t->w);
}

static int taps_make(int in, int out, kiln_interp interp, taps *t) {
    double scale = (double)in / out, fs = scale > 1 ? scale : 1;
    int use_box = interp == KILN_INTERP_AREA && scale > 1;
    double support = (use_box ? 0.5 : 1.0) * fs;
    t->k = (int)ceil(support) * 2 + 1;
    t->lo = malloc((size_t)out * sizeof *t->lo);
    t->n = malloc((size_t)out * sizeof *t->n);
    t->w = malloc((size_t)out * t->k * sizeof *t->w);
    double *wv = malloc((size_t)t->k * sizeof *wv);
    if (!t->lo || !t->n || !t->w || !wv) {
        free(wv);
        return 0;
    }
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        if (hi - lo > t->k) hi = lo + t->k;
        double sum = 0;
        for (int j = lo; j < hi; j++) {
            double x = (j - center + 0.5) / fs;
            sum += wv[j - lo] = use_box ? box(x) : triangle(x);
        }
        if (sum <= 0) { /* cannot happen with these filters; keep the nearest pixel */
            lo = (int)center < in ? (int)center : in - 1, hi = lo + 1, wv[0] = sum = 1;
        }
        t->lo[i] = lo, t->n[i] = hi - lo;
        for (int j = 0; j < hi - lo; j++) t->w[(size_t)i * t->k + j] = (float)(wv[j] / sum);
    }
    free(wv);
    return 1;
}

static inline uint8_t to_u8(float v) {
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5f);
}

kiln_status kiln_image_resize(const kiln_image *src, kiln_image *dst, kiln_interp interp) {
    int ih = src->h, iw = src->w, oh = dst->h, ow = dst->w, c = src->c;
    if (ih < 1 || iw < 1 || oh < 1 || ow < 1 || c < 1 || c > 4)
        return kiln_error(KILN_ERR_INVALID, "image resize: %d x %d x %d to %d x %d", ih, iw, c, oh,
                          ow);
    dst->c = c, dst->stride = (ptrdiff_t)ow * c;
    taps tx = {0}, ty = {0};
    float *tmp = malloc((size_t)ih * ow * c * sizeof *tmp); /* [ih, ow, c] */
    int ok = tmp && taps_make(iw, ow, interp, &tx) && taps_make(ih, oh, interp, &ty);
    if (!ok) {
        free(tmp), taps_free(&tx), taps_free(&ty);
        return kiln_error(KILN_ERR_NOMEM, "image resize: out of memory");
    }
    for (int y = 0; y < ih; y++) { /* horizontal: src row y -> tmp row y */
        const uint8_t *s = src->data + y * src->stride;
        float *d = tmp + (size_t)y * ow * c;
        if (iw == ow) {
            for (int i = 0; i < ow * c; i++) d[i] = s[i];
            continue;
        }
        for (int x = 0; x < ow; x++) {
            const float *w = tx.w + (size_t)x * tx.k;
            const uint8_t *p = s + (ptrdiff_t)tx.lo[x] * c;
            for (int k = 0; k < c; k++) {
                float acc = 0;
                for (int j = 0; j < tx.n[x]; j++) acc += w[j] * p[j * c + k];
                d[x * c + k] = acc;
            }
        }
    }
    for (int y = 0; y < oh; y++) { /* vertical: tmp rows -> dst row y */
        uint8_t *d = dst->data + y * dst->stride;
        if (ih == oh) {
            const float *s = tmp + (size_t)y * ow * c;
            for (int i = 0; i < ow * c; i++) d[i] = to_u8(s[i]);
            continue;
        }
        const float *w = ty.w + (size_t)y * ty.k;
        const float *s = tmp + (size_t)ty.lo[y] * ow * c;
        for (int i = 0; i < ow * c; i++) {
            float acc = 0;
            for (int j = 0; j < ty.n[y]; j++) acc += w[j] * s[(size_t)j * ow * c + i];
            d[i] = to_u8(acc);
        }
    }
    free(tmp), taps_free(&tx), taps_free(&ty);
    return KILN_OK;
}

kiln_status kiln_image_center_crop(const kiln_image *src, int h, int w, kiln_image *view) {
    if (h < 1 || w < 1 || h > src->h || w > src->w)
        return kiln_error(KILN_ERR_SHAPE, "center crop %d x %d of a %d x %d image", h, w, src->h,
                          src->w);
    int top = (src->h - h) / 2, left = (src->w - w) / 2;
    *view = (kiln_image){h, w, src->c, src->stride,
                         src->data + top * src->stride + (ptrdiff_t)left * src->c};
    return KILN_OK;
}

void kiln_image_to_chw(const kiln_image *src, uint8_t *dst) {
    int h = src->h, w = src->w, c = src->c;
    if (c == 1) {
        for (int y = 0; y < h; y++)
            memcpy(dst + (size_t)y * w, src->data + y * src->stride, (size_t)w);
        return;
    }
    for (int y = 0; y < h; y++) {
        const uint8_t *s = src->data + y * src->stride;
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) dst[((size_t)k * h + y) * w + x] = s[x * c + k];
    }
}

/* augment_ops.c — the pixel work of augmentation on float32 [c, h, w] samples: resampling a box
 * (random resized crop), padding crops, flips, rotation, color jitter, and the preview grid (see
 * kiln/augment.h for the definitions and augment.c for the draws).
 *
 * Resampling follows kiln_image_resize (image_resize.c) with PIL's box argument: output pixel i
 * of an axis maps to center = b0 + (i + 0.5) * scale in the input, scale = box / out, and the
 * filter (triangle for bilinear, box for area when shrinking) is stretched by max(scale, 1).
 * Taps may reach outside the box but never outside the image. It is separable: the horizontal
 * pass runs only over the rows the vertical taps need, so a small crop of a big decoded photo
 * costs about the crop, not the photo. A u8 source (a decoded image, HWC) is read one row at a
 * time into floats, so the result never rounds to bytes.
 *
 * Nothing here allocates except through the caller's kiln_aug_scratch; nothing is shared.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment_internal.h"

/* ---- resampling ---- */

typedef struct {
    int *lo, *n; /* [out] */
    float *w;    /* [out, k] */
    int k;
} taps;

static double triangle(double x) {
    x = fabs(x);
    return x < 1 ? 1 - x : 0;
}
static double boxf(double x) {
    return x > -0.5 && x <= 0.5 ? 1 : 0;
}

static int taps_size(double box, int out, kiln_interp interp) {
    double scale = box / out, fs = scale > 1 ? scale : 1;
    double support = (interp == KILN_INTERP_AREA && scale > 1 ? 0.5 : 1.0) * fs;
    return (int)ceil(support) * 2 + 1;
}

/* Taps for an axis of `in` pixels, the box [b0, b0 + box) resampled to out. mem holds
 * out * (2 ints + k floats). */
static void taps_make(int in, double b0, double box, int out, kiln_interp interp, void *mem,
                      taps *t) {
    double scale = box / out, fs = scale > 1 ? scale : 1;
    int use_box = interp == KILN_INTERP_AREA && scale > 1;
    double support = (use_box ? 0.5 : 1.0) * fs, wv[512];
    t->k = taps_size(box, out, interp);
    t->lo = mem, t->n = t->lo + out, t->w = (float *)(t->n + out);
    for (int i = 0; i < out; i++) {
        double center = b0 + (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        if (hi - lo > t->k) hi = lo + t->k;
        if (hi - lo > 512) hi = lo + 512;
        double sum = 0;
        for (int j = lo; j < hi; j++) {
            double x = (j - center + 0.5) / fs;
            sum += wv[j - lo] = use_box ? boxf(x) : triangle(x);
        }
        if (sum <= 0) { /* a box at the very edge: the nearest pixel */
            lo = (int)center < in ? (int)center : in - 1;
            lo = lo < 0 ? 0 : lo, hi = lo + 1, wv[0] = sum = 1;
        }
        t->lo[i] = lo, t->n[i] = hi - lo;
        for (int j = 0; j < hi - lo; j++) t->w[(size_t)i * t->k + j] = (float)(wv[j] / sum);
    }
}

kiln_status kiln_aug_resample(const kiln_aug_src *src, double y0, double x0, double bh, double bw,
                              float *dst, int oh, int ow, kiln_interp interp, kiln_aug_scratch *s) {
    int c = src->c, ih = src->h, iw = src->w;
    if (c < 1 || ih < 1 || iw < 1 || oh < 1 || ow < 1 || !(bh > 0) || !(bw > 0) || y0 < 0 ||
        x0 < 0 || y0 + bh > ih + 1e-6 || x0 + bw > iw + 1e-6)
        return kiln_error(KILN_ERR_INVALID,
                          "resample: box %g,%g %gx%g of a %d x %d image to %d x %d", y0, x0, bh, bw,
                          ih, iw, oh, ow);
    int kx = taps_size(bw, ow, interp), ky = taps_size(bh, oh, interp);
    if (kx > 512 || ky > 512)
        return kiln_error(KILN_ERR_INVALID, "resample: shrinking %g x %g to %d x %d is too much",
                          bh, bw, oh, ow);
    size_t tx_bytes = (size_t)ow * (2 * sizeof(int) + (size_t)kx * sizeof(float));
    size_t ty_bytes = (size_t)oh * (2 * sizeof(int) + (size_t)ky * sizeof(float));
    char *tm = kiln_aug_grow(s, KILN_AUG_SCRATCH_TAPS, tx_bytes + ty_bytes + 16);
    if (!tm) return kiln_error(KILN_ERR_NOMEM, "resample: out of memory");
    taps tx, ty;
    taps_make(iw, x0, bw, ow, interp, tm, &tx);
    taps_make(ih, y0, bh, oh, interp, tm + ((tx_bytes + 7) & ~(size_t)7), &ty);
    int ylo = ih, yhi = 0, xlo = iw, xhi = 0;
    for (int i = 0; i < oh; i++) {
        ylo = ty.lo[i] < ylo ? ty.lo[i] : ylo;
        yhi = ty.lo[i] + ty.n[i] > yhi ? ty.lo[i] + ty.n[i] : yhi;
    }
    for (int i = 0; i < ow; i++) {
        xlo = tx.lo[i] < xlo ? tx.lo[i] : xlo;
        xhi = tx.lo[i] + tx.n[i] > xhi ? tx.lo[i] + tx.n[i] : xhi;
    }
    int rows = yhi - ylo;
    float *tmp = kiln_aug_grow(s, KILN_AUG_SCRATCH_ROWS, (size_t)c * rows * ow * sizeof *tmp);
    float *line =
        src->f32 ? NULL
                 : kiln_aug_grow(s, KILN_AUG_SCRATCH_LINE, (size_t)c * (xhi - xlo) * sizeof *line);
    if (!tmp || (!src->f32 && !line)) return kiln_error(KILN_ERR_NOMEM, "resample: out of memory");
    for (int y = ylo; y < yhi; y++) { /* horizontal: tmp [c, rows, ow] */
        for (int k = 0; k < c; k++) {
            const float *row; /* row[x - xlo] is pixel x */
            if (src->f32) {
                row = src->f32 + ((size_t)k * ih + y) * iw + xlo;
            } else {
                const uint8_t *p = src->u8 + y * src->stride + (size_t)xlo * c + k;
                float *l = line + (size_t)k * (xhi - xlo);
                for (int x = 0; x < xhi - xlo; x++) l[x] = p[(size_t)x * c];
                row = l;
            }
            float *d = tmp + ((size_t)k * rows + (y - ylo)) * ow;
            for (int x = 0; x < ow; x++) {
                const float *w = tx.w + (size_t)x * tx.k, *p = row + (tx.lo[x] - xlo);
                float acc = 0;
                for (int j = 0; j < tx.n[x]; j++) acc += w[j] * p[j];
                d[x] = acc;
            }
        }
    }
    for (int k = 0; k < c; k++) /* vertical: dst [c, oh, ow] */
        for (int y = 0; y < oh; y++) {
            const float *w = ty.w + (size_t)y * ty.k;
            const float *p = tmp + ((size_t)k * rows + (ty.lo[y] - ylo)) * ow;
            float *d = dst + ((size_t)k * oh + y) * ow;
            for (int x = 0; x < ow; x++) d[x] = 0;
            for (int j = 0; j < ty.n[y]; j++) {
                const float *q = p + (size_t)j * ow;
                for (int x = 0; x < ow; x++) d[x] += w[j] * q[x];
            }
        }
    return KILN_OK;
}

/* ---- geometry ---- */

void kiln_aug_flip(float *x, int c, int h, int w, int horizontal) {
    for (int k = 0; k < c; k++) {
        float *p = x + (size_t)k * h * w;
        if (horizontal) {
            for (int y = 0; y < h; y++)
                for (int a = 0, b = w - 1; a < b; a++, b--) {
                    float t = p[(size_t)y * w + a];
                    p[(size_t)y * w + a] = p[(size_t)y * w + b], p[(size_t)y * w + b] = t;
                }
        } else {
            for (int a = 0, b = h - 1; a < b; a++, b--)
                for (int xx = 0; xx < w; xx++) {
                    float t = p[(size_t)a * w + xx];
                    p[(size_t)a * w + xx] = p[(size_t)b * w + xx], p[(size_t)b * w + xx] = t;
                }
        }
    }
}

/* Index i of an axis of n reflected into [0, n) without repeating the edge (pad < n). */
static inline int reflect_idx(int i, int n) {
    return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
}

void kiln_aug_crop_pad(const float *src, float *dst, int c, int h, int w, int pad, int reflect,
                       float fill, int top, int left) {
    for (int k = 0; k < c; k++)
        for (int y = 0; y < h; y++) {
            int sy = top + y - pad;
            float *d = dst + ((size_t)k * h + y) * w;
            if (!reflect && (sy < 0 || sy >= h)) {
                for (int x = 0; x < w; x++) d[x] = fill;
                continue;
            }
            sy = reflect_idx(sy, h);
            const float *s = src + ((size_t)k * h + sy) * w;
            for (int x = 0; x < w; x++) {
                int sx = left + x - pad;
                d[x] = sx >= 0 && sx < w ? s[sx] : reflect ? s[reflect_idx(sx, w)] : fill;
            }
        }
}

void kiln_aug_rotate(const float *src, float *dst, int c, int h, int w, float degrees, float fill) {
    double th = degrees * (3.14159265358979323846 / 180.0), cs = cos(th), sn = sin(th);
    double cx = w * 0.5, cy = h * 0.5;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double u = x + 0.5 - cx, v = y + 0.5 - cy; /* output offset from the center */
            double sx = u * cs - v * sn + cx - 0.5, sy = u * sn + v * cs + cy - 0.5;
            double fx0 = floor(sx), fy0 = floor(sy);
            int x0 = (int)fx0, y0 = (int)fy0;
            float ax = (float)(sx - fx0), ay = (float)(sy - fy0);
            float wt[4] = {(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay};
            int tx[4] = {x0, x0 + 1, x0, x0 + 1}, ty[4] = {y0, y0, y0 + 1, y0 + 1};
            for (int k = 0; k < c; k++) {
                const float *p = src + (size_t)k * h * w;
                float acc = 0;
                for (int t = 0; t < 4; t++) {
                    int in = tx[t] >= 0 && tx[t] < w && ty[t] >= 0 && ty[t] < h;
                    acc += wt[t] * (in ? p[(size_t)ty[t] * w + tx[t]] : fill);
                }
                dst[((size_t)k * h + y) * w + x] = acc;
            }
        }
}

/* ---- color ---- */

/* Two selects the compiler turns into maxss / minss (and vectorizes), unlike a nested ?:. */
static inline float clampf(float v, float hi) {
    v = v > 0 ? v : 0;
    return v < hi ? v : hi;
}

static inline float gray_of(const float *x, size_t hw, size_t i) {
    return 0.2989f * x[i] + 0.587f * x[hw + i] + 0.114f * x[2 * hw + i];
}

/* Hue: torchvision's _rgb2hsv, h + f (mod 1), _hsv2rgb on r, g, b [n] in [0, bound], in place.
 * Branch-free (every choice a select) so that it vectorizes, and without libm calls (fmodf,
 * floorf are calls at the x86-64 baseline): the ranges are known, so each remainder is one
 * conditional subtraction, exact as fmod's is. A gray pixel (max == min) gets s = 0 and so
 * p = q = t = v: it comes back unchanged. */
static void hue_rows(float *restrict r, float *restrict g, float *restrict b, size_t n, float f,
                     float bound) {
    const float inb = 1.0f / bound;
    for (size_t i = 0; i < n; i++) {
        float R = r[i] * inb, G = g[i] * inb, B = b[i] * inb;
        float mx = R > G ? R : G, mn = R < G ? R : G;
        mx = mx > B ? mx : B, mn = mn < B ? mn : B;
        float cr = mx - mn, gray = cr == 0 ? 1.0f : 0.0f;
        float s = cr / (mx + gray), inv = 1.0f / (cr + gray); /* (gray: s = 0) */
        float rc = (mx - R) * inv, gc = (mx - G) * inv, bc = (mx - B) * inv;
        /* one-hot selects as products (x * 1 + y * 0 is exactly x): no multi-way branch */
        float isr = (float)(mx == R), isg = (float)(mx == G) * (1 - isr), isb = 1 - isr - isg;
        float hh = isr * (bc - gc) + isg * (2.0f + rc - bc) + isb * (4.0f + gc - rc);
        /* (a conditional add of a constant, x + 0 being exact: arithmetic only inside a select
         * would not be if-converted under -ftrapping-math) */
        hh = hh / 6.0f + 1.0f; /* [5/6, 11/6]: fmod(hh, 1) */
        hh -= hh >= 1.0f ? 1.0f : 0.0f;
        hh += f; /* f in [-0.5, 0.5]: Python's % 1.0 */
        hh += hh < 0.0f ? 1.0f : 0.0f;
        hh -= hh >= 1.0f ? 1.0f : 0.0f;
        float h6 = hh * 6.0f;
        float k = (float)(int)h6; /* h6 >= 0: truncation is floor; k in 0..5 */
        float fr = h6 - k, v = mx;
        float p = v * (1 - s), q = v * (1 - s * fr), t = v * (1 - s * (1 - fr));
        p = p > 0 ? p : 0, q = q > 0 ? q : 0, t = t > 0 ? t : 0;
        p = p < 1 ? p : 1, q = q < 1 ? q : 1, t = t < 1 ? t : 1;
        /* k: 0 (v t p) 1 (q v p) 2 (p v t) 3 (p q v) 4 (t p v) 5 (v p q) */
        float k0 = (float)(k == 0), k1 = (float)(k == 1), k2 = (float)(k == 2);
        float k3 = (float)(k == 3), k4 = (float)(k == 4), k5 = (float)(k == 5);
        float ro = (k0 + k5) * v + k1 * q + k4 * t + (k2 + k3) * p;
        float go = (k1 + k2) * v + k0 * t + k3 * q + (k4 + k5) * p;
        float bo = (k3 + k4) * v + k2 * t + k5 * q + (k0 + k1) * p;
        r[i] = ro * bound, g[i] = go * bound, b[i] = bo * bound;
    }
}

void kiln_aug_jitter(float *x, int c, int h, int w, float bound, const float factor[4],
                     const int order[4]) {
    size_t hw = (size_t)h * w, n = hw * c;
    for (int o = 0; o < 4; o++) {
        int which = order[o];
        float f = factor[which];
        if (which < 3 && f == 0) continue; /* not jittered */
        if (which == 3 && (factor[3] == 0 || c != 3)) continue;
        if (which == 2 && c != 3) continue;
        switch (which) {
        case 0: /* brightness: blend with black */
            for (size_t i = 0; i < n; i++) x[i] = clampf(f * x[i], bound);
            break;
        case 1: { /* contrast: blend with the mean gray */
            double sum = 0;
            for (size_t i = 0; i < hw; i++) sum += c == 3 ? gray_of(x, hw, i) : x[i];
            float mean = (float)(sum / (double)hw), off = (1 - f) * mean;
            for (size_t i = 0; i < n; i++) x[i] = clampf(f * x[i] + off, bound);
            break;
        }
        case 2: /* saturation: blend with the gray image (in chunks, so the loops vectorize) */
            for (size_t i0 = 0; i0 < hw; i0 += 256) {
                float gy[256];
                size_t m = hw - i0 < 256 ? hw - i0 : 256;
                for (size_t i = 0; i < m; i++) gy[i] = (1 - f) * gray_of(x, hw, i0 + i);
                for (int k = 0; k < 3; k++) {
                    float *p = x + k * hw + i0;
                    for (size_t i = 0; i < m; i++) p[i] = clampf(f * p[i] + gy[i], bound);
                }
            }
            break;
        default: /* hue */
            hue_rows(x, x + hw, x + 2 * hw, hw, f, bound);
            break;
        }
    }
}

void kiln_aug_normals(const uint32_t w[4], float z[4]) {
    for (int i = 0; i < 4; i += 2) {
        double u1 = ((double)(w[i] >> 8) + 1.0) / 16777217.0; /* (0, 1] */
        double u2 = (double)(w[i + 1] >> 8) / 16777216.0;
        double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        z[i] = (float)(r * cos(a)), z[i + 1] = (float)(r * sin(a));
    }
}

/* ---- the preview grid ---- */

uint8_t *kiln_aug_grid(const float *x, int n, int c, int h, int w, float bound, int *width,
                       int *height) {
    *width = *height = 0;
    if (n < 1 || (c != 1 && c != 3) || h < 1 || w < 1 || !(bound > 0)) {
        kiln_error(KILN_ERR_INVALID, "grid: %d samples of %d x %d x %d", n, c, h, w);
        return NULL;
    }
    int cols = (int)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols;
    int side = h > w ? h : w, f = side >= 64 ? 1 : (64 + side - 1) / side, gap = 2;
    int64_t gw = (int64_t)cols * w * f + (int64_t)(cols + 1) * gap;
    int64_t gh = (int64_t)rows * h * f + (int64_t)(rows + 1) * gap;
    if (gw > 16384 || gh > 16384) {
        kiln_error(KILN_ERR_INVALID, "grid: %lld x %lld pixels is too large (16384 a side)",
                   (long long)gw, (long long)gh);
        return NULL;
    }
    uint8_t *rgb = malloc((size_t)(gw * gh * 3));
    if (!rgb) {
        kiln_error(KILN_ERR_NOMEM, "grid: out of memory");
        return NULL;
    }
    memset(rgb, 96, (size_t)(gw * gh * 3));
    size_t hw = (size_t)h * w;
    for (int i = 0; i < n; i++) {
        const float *s = x + (size_t)i * c * hw;
        int64_t ox = gap + (int64_t)(i % cols) * (w * f + gap),
                oy = gap + (int64_t)(i / cols) * (h * f + gap);
        for (int y = 0; y < h * f; y++)
            for (int xx = 0; xx < w * f; xx++) {
                uint8_t *d = rgb + ((oy + y) * gw + ox + xx) * 3;
                size_t p = (size_t)(y / f) * w + (size_t)(xx / f);
                for (int k = 0; k < 3; k++) {
                    float v = s[(c == 3 ? (size_t)k * hw : 0) + p] / bound * 255.0f;
                    d[k] = v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5f);
                }
            }
    }
    *width = (int)gw, *height = (int)gh;
    return rgb;
}

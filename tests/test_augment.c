/* test_augment.c — augmentation (kiln/augment.h) and the loader's worker pool.
 *
 * Every op is checked against a plain reference written here from the definitions (torchvision's
 * and kiln/augment.h's): exact for flips, crops with padding and erasing, within a tolerance for
 * resampling (random resized crop, rotation) and color jitter. The references take the random
 * parameters from a re-implementation of the documented draw scheme (Philox block
 * (index << 32) + k of stream KILN_DATA_STREAM_AUGMENT + (epoch << 8) + op), so the draws are
 * checked too. Then the loader: batches are byte-identical with 0, 1 and 4 workers and any
 * prefetch, a seek gives the batches of an uninterrupted pass, random_resized_crop of image files
 * crops the decoded picture (DCT-scaled when the box allows it), mixup labels sum to 1, and a bad
 * file fails the batch with its name whatever the worker count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "check.h"
#include "data/data_internal.h"
#include "kiln/inputs.h"

static char tmpdir[256];

/* ---- the documented draw scheme, re-implemented ---- */

typedef struct {
    uint64_t seed, stream, base, k;
} cur;

static cur cur_at(uint64_t seed, int64_t epoch, int op, int64_t index) {
    return (cur){seed, 0xDA7C000000000000ull + ((uint64_t)epoch << 8) + (uint64_t)op,
                 (uint64_t)index << 32, 0};
}
static double u01(cur *c) {
    uint32_t w[4];
    kiln_philox(c->seed, c->stream, c->base + c->k++, w);
    return (double)(float)((float)(w[0] >> 8) * (1.0f / 16777216.0f));
}
static float urange(cur *c, float lo, float hi) {
    return lo + (hi - lo) * (float)u01(c);
}
static int ibelow(cur *c, int n) {
    return n <= 1 ? (c->k++, 0) : (int)kiln_rng_below(c->seed, c->stream, c->base + c->k++, n);
}

/* ---- helpers ---- */

static float *rand_image(int c, int h, int w, float bound, uint64_t s) {
    float *x = malloc((size_t)c * h * w * sizeof *x);
    kiln_test_fill(x, (size_t)c * h * w, 0, bound, s);
    return x;
}

static kiln_augment one(kiln_aug_op o) {
    kiln_augment a = {.n = 1};
    a.op[0] = o;
    return a;
}

static double max_abs(const float *a, const double *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* ---- references ---- */

/* PIL's resample filter weights for output i of an axis (in, box b0 + [0, bs), out). */
static int ref_weights(int in, double b0, double bs, int out, int i, int area, double *wt,
                       int *lo) {
    double scale = bs / out, fs = scale > 1 ? scale : 1, sup = (area && scale > 1 ? 0.5 : 1) * fs;
    double center = b0 + (i + 0.5) * scale, sum = 0;
    int a = (int)(center - sup + 0.5), b = (int)(center + sup + 0.5);
    a = a < 0 ? 0 : a, b = b > in ? in : b;
    for (int j = a; j < b; j++) {
        double x = (j - center + 0.5) / fs, v;
        if (area && scale > 1)
            v = x > -0.5 && x <= 0.5;
        else
            v = fabs(x) < 1 ? 1 - fabs(x) : 0;
        sum += wt[j - a] = v;
    }
    for (int j = a; j < b; j++) wt[j - a] /= sum;
    *lo = a;
    return b - a;
}

/* dst [c, oh, ow] <- box of src [c, h, w], evaluated as one 2-D sum per pixel in double. */
static void ref_resample(const double *src, int c, int h, int w, double y0, double x0, double bh,
                         double bw, double *dst, int oh, int ow, int area) {
    double wy[600], wx[600];
    for (int k = 0; k < c; k++)
        for (int y = 0; y < oh; y++) {
            int ly, ny = ref_weights(h, y0, bh, oh, y, area, wy, &ly);
            for (int x = 0; x < ow; x++) {
                int lx, nx = ref_weights(w, x0, bw, ow, x, area, wx, &lx);
                double acc = 0;
                for (int j = 0; j < ny; j++)
                    for (int i = 0; i < nx; i++)
                        acc += wy[j] * wx[i] * src[((size_t)k * h + ly + j) * w + lx + i];
                dst[((size_t)k * oh + y) * ow + x] = acc;
            }
        }
}

/* torchvision RandomResizedCrop.get_params with the draw scheme (Python's round: half even). */
static void ref_rrc_box(cur *c, int h, int w, const float sc[2], const float ra[2], int box[4]) {
    double area = (double)h * w;
    for (int t = 0; t < 10; t++) {
        double ta = area * urange(c, sc[0], sc[1]);
        double ar = exp(urange(c, (float)log(ra[0]), (float)log(ra[1])));
        int cw = (int)nearbyint(sqrt(ta * ar)), ch = (int)nearbyint(sqrt(ta / ar));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            box[0] = ibelow(c, h - ch + 1), box[1] = ibelow(c, w - cw + 1), box[2] = ch,
            box[3] = cw;
            return;
        }
    }
    double r = (double)w / h;
    int cw = w, ch = h;
    if (r < ra[0])
        ch = (int)nearbyint(cw / (double)ra[0]);
    else if (r > ra[1])
        cw = (int)nearbyint(ch * (double)ra[1]);
    box[0] = (h - ch) / 2, box[1] = (w - cw) / 2, box[2] = ch, box[3] = cw;
}

static double gray(const double *p, size_t hw, size_t i) {
    return 0.2989 * p[i] + 0.587 * p[hw + i] + 0.114 * p[2 * hw + i];
}

/* colorsys.rgb_to_hsv / hsv_to_rgb, Python's, on [0, 1] */
static void ref_hue(double *r, double *g, double *b, double f) {
    double mx = fmax(*r, fmax(*g, *b)), mn = fmin(*r, fmin(*g, *b)), h, s, v = mx;
    if (mx == mn) {
        h = 0, s = 0;
    } else {
        s = (mx - mn) / mx;
        double rc = (mx - *r) / (mx - mn), gc = (mx - *g) / (mx - mn), bc = (mx - *b) / (mx - mn);
        h = *r == mx ? bc - gc : *g == mx ? 2.0 + rc - bc : 4.0 + gc - rc;
        h = fmod(h / 6.0 + 1.0, 1.0);
    }
    h = h + f - floor(h + f);
    int i = (int)(h * 6.0);
    double fr = h * 6.0 - i, p = v * (1 - s), q = v * (1 - s * fr), t = v * (1 - s * (1 - fr));
    switch (i % 6) {
    case 0:
        *r = v, *g = t, *b = p;
        break;
    case 1:
        *r = q, *g = v, *b = p;
        break;
    case 2:
        *r = p, *g = v, *b = t;
        break;
    case 3:
        *r = p, *g = q, *b = v;
        break;
    case 4:
        *r = t, *g = p, *b = v;
        break;
    default:
        *r = v, *g = p, *b = q;
        break;
    }
}

/* ColorJitter with the given factors and order, on x [c, h, w] (double, in place). */
static void ref_jitter(double *x, int c, int h, int w, double bound, const float f[4],
                       const int order[4]) {
    size_t hw = (size_t)h * w, n = hw * c;
    for (int o = 0; o < 4; o++) {
        int k = order[o];
        if (k < 3 && f[k] == 0) continue;
        if (k == 0)
            for (size_t i = 0; i < n; i++) x[i] = fmin(fmax(f[0] * x[i], 0), bound);
        if (k == 1) {
            double m = 0;
            for (size_t i = 0; i < hw; i++) m += c == 3 ? gray(x, hw, i) : x[i];
            m /= hw;
            for (size_t i = 0; i < n; i++)
                x[i] = fmin(fmax(f[1] * x[i] + (1 - f[1]) * m, 0), bound);
        }
        if (k == 2 && c == 3)
            for (size_t i = 0; i < hw; i++) {
                double gy = gray(x, hw, i);
                for (int ch = 0; ch < 3; ch++)
                    x[ch * hw + i] = fmin(fmax(f[2] * x[ch * hw + i] + (1 - f[2]) * gy, 0), bound);
            }
        if (k == 3 && c == 3 && f[3] != 0)
            for (size_t i = 0; i < hw; i++) {
                double r = x[i] / bound, g = x[hw + i] / bound, b = x[2 * hw + i] / bound;
                ref_hue(&r, &g, &b, f[3]);
                x[i] = r * bound, x[hw + i] = g * bound, x[2 * hw + i] = b * bound;
            }
    }
}

static double *to_double(const float *x, size_t n) {
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* ---- per-op tests ---- */

enum { C = 3, H = 12, W = 10 };
#define N ((size_t)C * H * W)

/* Runs a one-op list on a fresh random image for `samples` sample indices; ref() computes the
 * expected image from the input and the draw the reference scheme makes; returns the largest
 * difference. */
typedef void (*ref_fn)(const kiln_aug_op *o, cur *c, const float *in, double *out, float bound);

static double run_op(kiln_aug_op o, ref_fn ref, float bound, int samples, int *applied) {
    kiln_augment a = one(o);
    kiln_aug_scratch sc = {0};
    double worst = 0;
    *applied = 0;
    CHECK_OK(kiln_augment_check(&a));
    for (int i = 0; i < samples; i++) {
        float *x = rand_image(C, H, W, bound, 100 + i), *in = malloc(N * sizeof *in);
        memcpy(in, x, N * sizeof *x);
        CHECK_OK(kiln_augment_sample(&a, 0, 7, 3, 1000 + i, bound, x, C, H, W, &sc));
        double *want = to_double(in, N);
        cur c = cur_at(7, 3, 0, 1000 + i);
        if (u01(&c) < o.p) {
            ++*applied;
            ref(&o, &c, in, want, bound);
        }
        worst = fmax(worst, max_abs(x, want, N));
        free(x), free(in), free(want);
    }
    kiln_aug_scratch_free(&sc);
    return worst;
}

static void ref_hflip(const kiln_aug_op *o, cur *c, const float *in, double *out, float b) {
    for (int k = 0; k < C; k++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) out[(k * H + y) * W + x] = in[(k * H + y) * W + W - 1 - x];
}
static void ref_vflip(const kiln_aug_op *o, cur *c, const float *in, double *out, float b) {
    for (int k = 0; k < C; k++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) out[(k * H + y) * W + x] = in[(k * H + H - 1 - y) * W + x];
}
static void ref_crop(const kiln_aug_op *o, cur *c, const float *in, double *out, float b) {
    int p = o->padding, ph = H + 2 * p, pw = W + 2 * p;
    int top = ibelow(c, 2 * p + 1), left = ibelow(c, 2 * p + 1);
    double *pad = malloc((size_t)C * ph * pw * sizeof *pad); /* numpy.pad, then the window */
    for (int k = 0; k < C; k++)
        for (int y = 0; y < ph; y++)
            for (int x = 0; x < pw; x++) {
                int sy = y - p, sx = x - p;
                double v = o->fill * b;
                if (o->reflect) {
                    sy = sy < 0 ? -sy : sy >= H ? 2 * H - 2 - sy : sy;
                    sx = sx < 0 ? -sx : sx >= W ? 2 * W - 2 - sx : sx;
                }
                if (sy >= 0 && sy < H && sx >= 0 && sx < W) v = in[(k * H + sy) * W + sx];
                pad[((size_t)k * ph + y) * pw + x] = v;
            }
    for (int k = 0; k < C; k++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                out[(k * H + y) * W + x] = pad[((size_t)k * ph + top + y) * pw + left + x];
    free(pad);
}
static void ref_erase(const kiln_aug_op *o, cur *c, const float *in, double *out, float b) {
    double area = H * W;
    for (int t = 0; t < 10; t++) {
        double ea = area * urange(c, o->scale[0], o->scale[1]);
        double ar = exp(urange(c, (float)log(o->ratio[0]), (float)log(o->ratio[1])));
        int eh = (int)nearbyint(sqrt(ea * ar)), ew = (int)nearbyint(sqrt(ea / ar));
        if (!(eh < H && ew < W)) continue;
        int i = ibelow(c, H - eh + 1), j = ibelow(c, W - ew + 1);
        for (int k = 0; k < C; k++)
            for (int y = i; y < i + eh; y++)
                for (int x = j; x < j + ew; x++) {
                    double v = o->value * b;
                    if (o->random_value) {
                        int64_t p = ((int64_t)k * H + y) * W + x;
                        uint32_t w4[4];
                        kiln_philox(c->seed, c->stream, c->base + 64 + (uint64_t)(p / 4), w4);
                        v = (float)(w4[p % 4] >> 8) * (1.0f / 16777216.0f) * b;
                    }
                    out[(k * H + y) * W + x] = v;
                }
        return;
    }
}
static void ref_rrc(const kiln_aug_op *o, cur *c, const float *in, double *out, float b) {
    int box[4];
    ref_rrc_box(c, H, W, o->scale, o->ratio, box);
    double *src = to_double(in, N);
    ref_resample(src, C, H, W, box[0], box[1], box[2], box[3], out, H, W,
                 o->interp == KILN_INTERP_AREA);
    free(src);
}
static void ref_rotate(const kiln_aug_op *o, cur *c, const float *in, double *out, float b) {
    double ang = urange(c, -o->degrees, o->degrees), th = ang * M_PI / 180.0;
    /* torchvision: the inverse affine matrix of rotate(-angle), applied to pixel centers taken
     * relative to the image center; bilinear, taps outside the image read fill */
    double m[4] = {cos(th), -sin(th), sin(th), cos(th)};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double bx = x - W * 0.5 + 0.5, by = y - H * 0.5 + 0.5;
            double sx = m[0] * bx + m[1] * by + W * 0.5 - 0.5;
            double sy = m[2] * bx + m[3] * by + H * 0.5 - 0.5;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double fx = sx - x0, fy = sy - y0;
            for (int k = 0; k < C; k++) {
                double acc = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int xx = x0 + dx, yy = y0 + dy;
                        double wt = (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy);
                        double v = xx >= 0 && xx < W && yy >= 0 && yy < H
                                       ? in[(k * H + yy) * W + xx]
                                       : o->fill * b;
                        acc += wt * v;
                    }
                out[(k * H + y) * W + x] = acc;
            }
        }
}
static void ref_jit(const kiln_aug_op *o, cur *c, const float *in, double *out, float b) {
    int order[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) {
        int k = ibelow(c, i + 1), t = order[i];
        order[i] = order[k], order[k] = t;
    }
    float f[4] = {0, 0, 0, 0};
    const float amt[3] = {o->brightness, o->contrast, o->saturation};
    for (int i = 0; i < 3; i++)
        if (amt[i] > 0) f[i] = urange(c, fmaxf(0, 1 - amt[i]), 1 + amt[i]);
    if (o->hue > 0) f[3] = urange(c, -o->hue, o->hue);
    ref_jitter(out, C, H, W, b, f, order);
}
static void ref_noise(const kiln_aug_op *o, cur *c, const float *in, double *out, float b) {
    for (size_t p = 0; p < N; p++) {
        uint32_t w4[4];
        kiln_philox(c->seed, c->stream, c->base + 64 + p / 4, w4);
        int pair = (int)(p % 4) / 2 * 2;
        double u1 = ((double)(w4[pair] >> 8) + 1.0) / 16777217.0;
        double u2 = (double)(w4[pair + 1] >> 8) / 16777216.0;
        double z = sqrt(-2 * log(u1)) * (p % 2 ? sin(2 * M_PI * u2) : cos(2 * M_PI * u2));
        double v = in[p] + (o->mean + o->std * z) * b;
        out[p] = o->clip ? fmin(fmax(v, 0), b) : v;
    }
}

static void test_flips_crops_erasing_exact(void) {
    int applied;
    kiln_aug_op f = {.kind = KILN_AUG_HORIZONTAL_FLIP, .p = 0.5f};
    CHECK(run_op(f, ref_hflip, 255, 40, &applied) == 0);
    CHECK_MSG(applied > 8 && applied < 32, "hflip applied %d of 40", applied);
    f.kind = KILN_AUG_VERTICAL_FLIP;
    CHECK(run_op(f, ref_vflip, 255, 40, &applied) == 0);
    for (int reflect = 0; reflect < 2; reflect++) {
        kiln_aug_op o = {
            .kind = KILN_AUG_RANDOM_CROP, .p = 1, .padding = 3, .reflect = reflect, .fill = 0.25f};
        CHECK_MSG(run_op(o, ref_crop, 255, 30, &applied) == 0, "reflect %d", reflect);
        CHECK(applied == 30);
    }
    kiln_aug_op e = {.kind = KILN_AUG_RANDOM_ERASING,
                     .p = 0.7f,
                     .scale = {0.02f, 0.33f},
                     .ratio = {0.3f, 3.3f},
                     .value = 0.5f};
    CHECK(run_op(e, ref_erase, 255, 40, &applied) == 0);
    e.random_value = 1;
    CHECK(run_op(e, ref_erase, 1, 40, &applied) == 0);
    CHECK(applied > 15);
}

static void test_resampling_ops(void) {
    int applied;
    for (int area = 0; area < 2; area++) {
        kiln_aug_op o = {.kind = KILN_AUG_RANDOM_RESIZED_CROP,
                         .p = 1,
                         .scale = {0.08f, 1},
                         .ratio = {0.75f, 4.0f / 3},
                         .interp = area ? KILN_INTERP_AREA : KILN_INTERP_BILINEAR};
        double d = run_op(o, ref_rrc, 255, 30, &applied);
        CHECK_MSG(d < 2e-3, "random_resized_crop (area %d): max diff %g", area, d);
    }
    kiln_aug_op o = {.kind = KILN_AUG_RANDOM_RESIZED_CROP,
                     .p = 1,
                     .scale = {0.5f, 0.5f},
                     .ratio = {3, 4}}; /* wide boxes: H x W = 12 x 10 forces the fallback often */
    double d = run_op(o, ref_rrc, 1, 30, &applied);
    CHECK_MSG(d < 1e-5, "random_resized_crop fallback: max diff %g", d);
    kiln_aug_op r = {.kind = KILN_AUG_ROTATION, .p = 1, .degrees = 40, .fill = 0.3f};
    d = run_op(r, ref_rotate, 255, 30, &applied);
    CHECK_MSG(d < 1e-3, "rotation: max diff %g", d);
    /* a quarter turn of a square image moves pixels exactly (counter-clockwise: the top row
     * becomes the left column, read bottom to top) */
    float sq[16], rot[16];
    for (int i = 0; i < 16; i++) sq[i] = (float)i;
    kiln_augment a = one((kiln_aug_op){.kind = KILN_AUG_ROTATION, .p = 1, .degrees = 90});
    kiln_aug_scratch sc = {0};
    int found = 0;
    for (int idx = 0; idx < 2000 && !found; idx++) { /* find a sample whose angle is ~90 */
        kiln_aug_draw dr;
        kiln_augment_draw(&a, 0, 1, 0, idx, 4, 4, &dr);
        if (dr.angle > 89.9f) {
            memcpy(rot, sq, sizeof sq);
            CHECK_OK(kiln_augment_sample(&a, 0, 1, 0, idx, 255, rot, 1, 4, 4, &sc));
            for (int y = 0; y < 4; y++) CHECK_NEAR(rot[y * 4 + 0], sq[0 * 4 + (3 - y)], 0.2);
            found = 1;
        }
    }
    CHECK(found);
    kiln_aug_scratch_free(&sc);
}

static void test_color_and_noise(void) {
    int applied;
    kiln_aug_op j = {.kind = KILN_AUG_COLOR_JITTER,
                     .p = 1,
                     .brightness = 0.4f,
                     .contrast = 0.4f,
                     .saturation = 0.4f,
                     .hue = 0.1f};
    double d = run_op(j, ref_jit, 255, 40, &applied);
    CHECK_MSG(d < 0.02, "color_jitter (0..255): max diff %g", d);
    d = run_op(j, ref_jit, 1, 40, &applied);
    CHECK_MSG(d < 1e-4, "color_jitter (0..1): max diff %g", d);
    kiln_aug_op h = {.kind = KILN_AUG_COLOR_JITTER, .p = 1, .hue = 0.5f};
    d = run_op(h, ref_jit, 1, 40, &applied);
    CHECK_MSG(d < 1e-4, "hue only: max diff %g", d);
    kiln_aug_op n = {
        .kind = KILN_AUG_GAUSSIAN_NOISE, .p = 1, .std = 0.1f, .mean = 0.02f, .clip = 1};
    d = run_op(n, ref_noise, 255, 10, &applied);
    CHECK_MSG(d < 1e-3, "gaussian_noise: max diff %g", d);
    n.clip = 0;
    d = run_op(n, ref_noise, 1, 10, &applied);
    CHECK_MSG(d < 1e-5, "gaussian_noise unclipped: max diff %g", d);
    /* the noise really is N(mean, std) */
    kiln_augment a = one(n);
    kiln_aug_scratch sc = {0};
    float *z = calloc(40000, sizeof *z);
    CHECK_OK(kiln_augment_sample(&a, 0, 5, 0, 0, 1, z, 1, 200, 200, &sc));
    double m = 0, v = 0;
    for (int i = 0; i < 40000; i++) m += z[i];
    m /= 40000;
    for (int i = 0; i < 40000; i++) v += (z[i] - m) * (z[i] - m);
    CHECK_NEAR(m, 0.02, 0.003);
    CHECK_NEAR(sqrt(v / 40000), 0.1, 0.003);
    free(z);
    /* one channel: saturation and hue leave it alone, contrast blends with its mean */
    float g[20], g0[20];
    kiln_test_fill(g, 20, 0, 255, 9);
    memcpy(g0, g, sizeof g);
    kiln_augment sh =
        one((kiln_aug_op){.kind = KILN_AUG_COLOR_JITTER, .p = 1, .saturation = 0.9f, .hue = 0.4f});
    CHECK_OK(kiln_augment_sample(&sh, 0, 1, 0, 0, 255, g, 1, 4, 5, &sc));
    CHECK(memcmp(g, g0, sizeof g) == 0);
    kiln_aug_scratch_free(&sc);
}

static void test_draws(void) {
    kiln_augment a = {.n = 2};
    a.op[0] = (kiln_aug_op){.kind = KILN_AUG_RANDOM_RESIZED_CROP,
                            .p = 1,
                            .scale = {0.08f, 1},
                            .ratio = {0.75f, 4.0f / 3}};
    a.op[1] = (kiln_aug_op){.kind = KILN_AUG_HORIZONTAL_FLIP, .p = 0.5f};
    int flips = 0, differ = 0;
    for (int i = 0; i < 2000; i++) {
        kiln_aug_draw d, d2, e;
        kiln_augment_draw(&a, 0, 1, 0, i, 300, 400, &d);
        kiln_augment_draw(&a, 0, 1, 0, i, 300, 400, &d2);
        kiln_augment_draw(&a, 0, 1, 1, i, 300, 400, &e); /* another epoch */
        CHECK(memcmp(&d, &d2, sizeof d) == 0);
        differ += memcmp(d.box, e.box, sizeof d.box) != 0;
        CHECK(d.box[0] >= 0 && d.box[1] >= 0 && d.box[0] + d.box[2] <= 300 &&
              d.box[1] + d.box[3] <= 400 && d.box[2] > 0 && d.box[3] > 0);
        double frac = (double)d.box[2] * d.box[3] / (300.0 * 400), ar = (double)d.box[3] / d.box[2];
        CHECK_MSG(frac > 0.07 && frac < 1.0001 && ar > 0.7 && ar < 1.4, "box %d %d %d %d", d.box[0],
                  d.box[1], d.box[2], d.box[3]);
        kiln_augment_draw(&a, 1, 1, 0, i, 300, 400, &d);
        flips += d.apply;
    }
    CHECK_MSG(flips > 900 && flips < 1100, "flips %d of 2000", flips);
    CHECK(differ > 1900);
    /* the mixing draws: lambda in [0, 1] with mean 1/2 for Beta(a, a); cutmix's lambda is the
     * kept area */
    kiln_augment m = {.n = 2};
    m.op[0] = (kiln_aug_op){.kind = KILN_AUG_MIXUP, .p = 1, .alpha = 0.4f};
    m.op[1] = (kiln_aug_op){.kind = KILN_AUG_CUTMIX, .p = 1, .alpha = 1};
    double sum = 0;
    int cut = 0, mixups = 0;
    for (int b = 0; b < 2000; b++) {
        kiln_aug_mix_draw d;
        kiln_augment_mix_draw(&m, 3, 0, b, 32, 24, &d);
        CHECK(d.op == 0 || d.op == 1);
        CHECK(d.lam >= 0 && d.lam <= 1);
        if (d.op == 0) sum += d.lam, mixups++;
        if (d.op == 1) {
            cut++;
            CHECK_NEAR(d.lam, 1 - d.box[2] * d.box[3] / (32.0 * 24), 1e-6);
            CHECK(d.box[0] >= 0 && d.box[1] >= 0 && d.box[0] + d.box[2] <= 32 &&
                  d.box[1] + d.box[3] <= 24);
        }
    }
    CHECK_NEAR(sum / mixups, 0.5, 0.04);
    CHECK_MSG(cut > 900 && cut < 1100, "cutmix chosen %d of 2000", cut);
}

static void test_mix_reference(void) {
    enum { B = 5, K = 4 };
    float x[B * N], y[B * K], x0[B * N], y0[B * K];
    kiln_test_fill(x, B * N, 0, 1, 3);
    memset(y, 0, sizeof y);
    for (int i = 0; i < B; i++) y[i * K + i % K] = 1;
    memcpy(x0, x, sizeof x), memcpy(y0, y, sizeof y);
    kiln_aug_scratch sc = {0};
    for (int kind = 0; kind < 2; kind++) {
        kiln_augment a =
            one((kiln_aug_op){.kind = kind ? KILN_AUG_CUTMIX : KILN_AUG_MIXUP, .p = 1, .alpha = 1});
        for (int b = 0; b < 6; b++) {
            memcpy(x, x0, sizeof x), memcpy(y, y0, sizeof y);
            CHECK_OK(kiln_augment_mix(&a, 9, 2, b, x, y, B, C, H, W, K, &sc));
            kiln_aug_mix_draw d;
            kiln_augment_mix_draw(&a, 9, 2, b, H, W, &d);
            CHECK(d.op == 0);
            double worst = 0;
            for (int i = 0; i < B; i++) {
                int pi = (i + B - 1) % B; /* torch.roll(batch, 1, 0) */
                for (int k = 0; k < C; k++)
                    for (int yy = 0; yy < H; yy++)
                        for (int xx = 0; xx < W; xx++) {
                            size_t o = ((size_t)k * H + yy) * W + xx;
                            int in = yy >= d.box[0] && yy < d.box[0] + d.box[2] && xx >= d.box[1] &&
                                     xx < d.box[1] + d.box[3];
                            double want =
                                kind ? (in ? x0[pi * N + o] : x0[i * N + o])
                                     : d.lam * x0[i * N + o] + (1 - d.lam) * x0[pi * N + o];
                            worst = fmax(worst, fabs(x[i * N + o] - want));
                        }
                double ysum = 0;
                for (int k = 0; k < K; k++) {
                    double want = d.lam * y0[i * K + k] + (1 - d.lam) * y0[pi * K + k];
                    worst = fmax(worst, fabs(y[i * K + k] - want));
                    ysum += y[i * K + k];
                }
                CHECK_NEAR(ysum, 1, 1e-6);
            }
            CHECK_MSG(worst < 1e-6, "%s batch %d: max diff %g", kind ? "cutmix" : "mixup", b,
                      worst);
        }
    }
    kiln_aug_scratch_free(&sc);
}

static void test_checks(void) {
    kiln_augment a = {.n = 2};
    a.op[0] = (kiln_aug_op){.kind = KILN_AUG_HORIZONTAL_FLIP, .p = 0.5f};
    a.op[1] = (kiln_aug_op){
        .kind = KILN_AUG_RANDOM_RESIZED_CROP, .p = 1, .scale = {0.1f, 1}, .ratio = {1, 1}};
    CHECK(kiln_augment_check(&a) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("data.augment[1].random_resized_crop: must be the first");
    a.op[0] = (kiln_aug_op){.kind = KILN_AUG_MIXUP, .p = 1, .alpha = 1};
    a.op[1] = (kiln_aug_op){.kind = KILN_AUG_HORIZONTAL_FLIP, .p = 0.5f};
    CHECK(kiln_augment_check(&a) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("data.augment[1].horizontal_flip: comes after mixup/cutmix");
    a.op[1] = (kiln_aug_op){.kind = KILN_AUG_MIXUP, .p = 1, .alpha = 1};
    CHECK(kiln_augment_check(&a) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("listed twice");
    a.op[1] = (kiln_aug_op){.kind = KILN_AUG_CUTMIX, .p = 1, .alpha = 0};
    CHECK(kiln_augment_check(&a) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("alpha must be > 0");
    kiln_augment r =
        one((kiln_aug_op){.kind = KILN_AUG_RANDOM_CROP, .p = 1, .padding = 10, .reflect = 1});
    CHECK_OK(kiln_augment_check(&r));
    CHECK(kiln_augment_check_shape(&r, 1, 8, 20) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("reflect padding 10");
}

/* ---- the loader ---- */

enum { ROWS = 50, LC = 3, LH = 16, LW = 12, KC = 5, SOFT = 6, BS = 8 };

static kiln_dataset *mem_dataset(void) {
    uint8_t *x = malloc((size_t)ROWS * LC * LH * LW);
    int32_t y[ROWS];
    for (size_t i = 0; i < (size_t)ROWS * LC * LH * LW; i++)
        x[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (int i = 0; i < ROWS; i++) y[i] = i % KC;
    kiln_dataset_desc d = {.rows = ROWS,
                           .x_dtype = KILN_U8,
                           .x_shape = {3, {LC, LH, LW}},
                           .x = x,
                           .y_kind = KILN_LABEL_CLASS,
                           .y = y};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_dataset_new(&d, &ds));
    free(x);
    return ds;
}

static kiln_augment full_list(void) {
    kiln_augment a = {.n = 9};
    a.op[0] = (kiln_aug_op){.kind = KILN_AUG_RANDOM_RESIZED_CROP,
                            .p = 1,
                            .scale = {0.3f, 1},
                            .ratio = {0.75f, 4.0f / 3}};
    a.op[1] = (kiln_aug_op){.kind = KILN_AUG_RANDOM_CROP, .p = 1, .padding = 2, .reflect = 1};
    a.op[2] = (kiln_aug_op){.kind = KILN_AUG_HORIZONTAL_FLIP, .p = 0.5f};
    a.op[3] = (kiln_aug_op){.kind = KILN_AUG_ROTATION, .p = 0.8f, .degrees = 20};
    a.op[4] = (kiln_aug_op){.kind = KILN_AUG_COLOR_JITTER,
                            .p = 1,
                            .brightness = 0.3f,
                            .contrast = 0.3f,
                            .saturation = 0.3f,
                            .hue = 0.05f};
    a.op[5] = (kiln_aug_op){.kind = KILN_AUG_GAUSSIAN_NOISE, .p = 0.5f, .std = 0.05f, .clip = 1};
    a.op[6] = (kiln_aug_op){.kind = KILN_AUG_RANDOM_ERASING,
                            .p = 0.5f,
                            .scale = {0.02f, 0.33f},
                            .ratio = {0.3f, 3.3f},
                            .random_value = 1};
    a.op[7] = (kiln_aug_op){.kind = KILN_AUG_MIXUP, .p = 0.8f, .alpha = 0.4f};
    a.op[8] = (kiln_aug_op){.kind = KILN_AUG_CUTMIX, .p = 0.8f, .alpha = 1};
    return a;
}

/* Every batch of `epochs` epochs from (e0, b0) on: x [total, m] and y [total, SOFT]. */
static int collect(kiln_dataset *ds, kiln_loader_config c, int e0, int b0, int epochs, float *x,
                   float *y) {
    kiln_loader *l = NULL;
    CHECK_OK(kiln_loader_new(ds, &c, &l));
    if (!l) return 0;
    if (e0 || b0) CHECK_OK(kiln_loader_seek(l, e0, b0));
    int m = LC * LH * LW, total = 0, rows, r = 0;
    float bx[BS * LC * LH * LW], by[BS * SOFT];
    for (int e = e0; e < e0 + epochs; e++)
        while ((r = kiln_loader_next(l, bx, by, &rows)) == 1) {
            memcpy(x + (size_t)total * m, bx, (size_t)rows * m * sizeof *bx);
            memcpy(y + (size_t)total * SOFT, by, (size_t)rows * SOFT * sizeof *by);
            total += rows;
        }
    CHECK(r == 0);
    kiln_loader_free(l);
    return total;
}

static void test_loader_workers_and_seek(void) {
    kiln_dataset *ds = mem_dataset();
    kiln_augment a = full_list();
    float mean[3] = {100, 110, 120}, sd[3] = {50, 60, 70};
    kiln_loader_config c = {.batch_size = BS,
                            .shuffle = 1,
                            .seed = 11,
                            .augment = &a,
                            .soft_labels = SOFT,
                            .norm = {.scale = 1, .channels = 3, .mean = mean, .std = sd}};
    size_t m = LC * LH * LW, cap = 2 * ROWS;
    float *x0 = malloc(cap * m * 4), *y0 = malloc(cap * SOFT * 4);
    float *x1 = malloc(cap * m * 4), *y1 = malloc(cap * SOFT * 4);
    int n0 = collect(ds, c, 0, 0, 2, x0, y0); /* no prefetch: the caller makes every batch */
    CHECK(n0 == 2 * ROWS);
    const int cfg[][2] = {{1, 1}, {1, 4}, {2, 4}, {3, 2}, {5, 7}}; /* prefetch, workers */
    for (int i = 0; i < 5; i++) {
        c.prefetch = cfg[i][0], c.workers = cfg[i][1];
        int n1 = collect(ds, c, 0, 0, 2, x1, y1);
        CHECK(n1 == n0);
        CHECK_MSG(
            memcmp(x0, x1, (size_t)n0 * m * 4) == 0 && memcmp(y0, y1, (size_t)n0 * SOFT * 4) == 0,
            "prefetch %d workers %d: batches differ from the caller's own", cfg[i][0], cfg[i][1]);
    }
    /* resume in the middle of epoch 1: the same batches as the uninterrupted pass */
    c.prefetch = 2, c.workers = 4;
    int n2 = collect(ds, c, 1, 3, 1, x1, y1);
    CHECK(n2 == ROWS - 3 * BS);
    CHECK(memcmp(x1, x0 + (size_t)(ROWS + 3 * BS) * m, (size_t)n2 * m * 4) == 0);
    CHECK(memcmp(y1, y0 + (size_t)(ROWS + 3 * BS) * SOFT, (size_t)n2 * SOFT * 4) == 0);
    /* labels: probabilities over the 5 classes (the 6th output gets none), some mixed */
    int mixed = 0;
    for (int i = 0; i < n0; i++) {
        double s = 0;
        int nz = 0;
        for (int k = 0; k < SOFT; k++) s += y0[i * SOFT + k], nz += y0[i * SOFT + k] > 0;
        CHECK_NEAR(s, 1, 1e-5);
        CHECK(y0[i * SOFT + 5] == 0);
        mixed += nz > 1;
    }
    CHECK(mixed > n0 / 4);
    /* epoch 1 differs from epoch 0, and augmentation changed the pixels */
    CHECK(memcmp(x0, x0 + (size_t)ROWS * m, (size_t)ROWS * m * 4) != 0);
    /* without augmentation and soft labels the loader gives what it always gave */
    kiln_loader_config plain = {.batch_size = BS, .prefetch = 2, .workers = 3};
    kiln_loader *l = NULL;
    CHECK_OK(kiln_loader_new(ds, &plain, &l));
    float bx[BS * LC * LH * LW], rowf[LC * LH * LW];
    int32_t by[BS], yy;
    int rows;
    CHECK(kiln_loader_next(l, bx, by, &rows) == 1 && rows == BS);
    for (int i = 0; i < BS; i++) {
        CHECK_OK(kiln_dataset_get(ds, i, rowf, &yy));
        CHECK(memcmp(bx + (size_t)i * m, rowf, m * 4) == 0 && by[i] == yy);
    }
    CHECK(kiln_loader_wait_seconds(l) >= 0);
    kiln_loader_free(l);
    /* mixing needs soft labels when there are labels */
    c.soft_labels = 0;
    CHECK(kiln_loader_new(ds, &c, &l) == KILN_ERR_INVALID && !l);
    CHECK_ERR_HAS("soft labels");
    free(x0), free(y0), free(x1), free(y1);
    kiln_dataset_free(ds);
}

/* ---- image files ---- */

static void write_jpeg(const char *path, const uint8_t *pix, int h, int w, int c) {
    tjhandle tj = tjInitCompress();
    unsigned char *buf = NULL;
    unsigned long len = 0;
    CHECK(tjCompress2(tj, pix, w, w * c, h, c == 1 ? TJPF_GRAY : TJPF_RGB, &buf, &len,
                      c == 1 ? TJSAMP_GRAY : TJSAMP_444, 95, 0) == 0);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(buf, 1, len, f) == len);
    if (f) fclose(f);
    tjFree(buf);
    tjDestroy(tj);
}

/* A smooth color picture h x w. */
static uint8_t *picture(int h, int w, int seed) {
    uint8_t *p = malloc((size_t)h * w * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < 3; k++)
                p[((size_t)y * w + x) * 3 + k] =
                    (uint8_t)(127 + 120 * sin(0.05 * x * (k + 1) + 0.07 * y + seed));
    return p;
}

static void make_tree(const char *root, int n, int h, int w, int bad) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", tmpdir, root);
    mkdir(p, 0755);
    for (int cls = 0; cls < 2; cls++) {
        snprintf(p, sizeof p, "%s/%s/c%d", tmpdir, root, cls);
        mkdir(p, 0755);
        for (int i = 0; i < n; i++) {
            snprintf(p, sizeof p, "%s/%s/c%d/%03d.jpg", tmpdir, root, cls, i);
            uint8_t *pix = picture(h + i % 3, w - i % 2, i + 10 * cls);
            write_jpeg(p, pix, h + i % 3, w - i % 2, 3);
            free(pix);
        }
    }
    if (bad) {
        snprintf(p, sizeof p, "%s/%s/c1/007.jpg", tmpdir, root);
        FILE *f = fopen(p, "wb");
        fputs("\xff\xd8\xff\xe0 truncated", f);
        fclose(f);
    }
}

static void test_image_source_crop(void) {
    make_tree("img", 12, 24, 30, 0); /* under 32 pixels a side: never DCT-scaled to 16 */
    char root[600];
    snprintf(root, sizeof root, "%s/img", tmpdir);
    kiln_image_source_options o = {
        .root = root,
        .spec = {.channels = 3, .resize_h = 16, .resize_w = 16, .out_h = 16, .out_w = 16}};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_data_load_images(&o, &ds));
    if (!ds) return;
    kiln_augment a = {.n = 3};
    a.op[0] = (kiln_aug_op){.kind = KILN_AUG_RANDOM_RESIZED_CROP,
                            .p = 0.9f,
                            .scale = {0.2f, 1},
                            .ratio = {0.75f, 4.0f / 3}};
    a.op[1] = (kiln_aug_op){.kind = KILN_AUG_HORIZONTAL_FLIP, .p = 0.5f};
    a.op[2] =
        (kiln_aug_op){.kind = KILN_AUG_COLOR_JITTER, .p = 1, .brightness = 0.2f, .hue = 0.05f};
    kiln_loader_config c = {.batch_size = 5, .shuffle = 1, .seed = 2, .augment = &a};
    size_t m = 3 * 16 * 16;
    float *x0 = malloc(24 * 2 * m * 4), *x1 = malloc(24 * 2 * m * 4);
    int32_t y0[48], y1[48];
    int n[2] = {0, 0};
    for (int run = 0; run < 2; run++) { /* 1 worker, then 4 */
        c.prefetch = 2, c.workers = run ? 4 : 1;
        kiln_loader *l = NULL;
        CHECK_OK(kiln_loader_new(ds, &c, &l));
        float bx[5 * 3 * 16 * 16];
        int32_t by[5];
        int rows;
        for (int e = 0; l && e < 2; e++)
            while (kiln_loader_next(l, bx, by, &rows) == 1) {
                memcpy((run ? x1 : x0) + n[run] * m, bx, (size_t)rows * m * 4);
                memcpy((run ? y1 : y0) + n[run], by, (size_t)rows * 4);
                n[run] += rows;
            }
        kiln_loader_free(l);
    }
    CHECK(n[0] == 48 && n[1] == 48);
    CHECK(memcmp(x0, x1, (size_t)n[0] * m * 4) == 0 && memcmp(y0, y1, (size_t)n[0] * 4) == 0);
    /* the crop of sample i comes from the decoded picture: check one sample of epoch 0 against
     * the reference resampling of the full-size decode (the pictures are small: no DCT scaling)
     * with the list cut to the crop alone */
    kiln_augment crop = one(a.op[0]);
    crop.op[0].p = 1;
    kiln_loader_config cc = {.batch_size = 24, .augment = &crop};
    kiln_loader *l = NULL;
    CHECK_OK(kiln_loader_new(ds, &cc, &l));
    float *bx = malloc(24 * m * 4);
    int32_t by[24];
    int rows;
    CHECK(l && kiln_loader_next(l, bx, by, &rows) == 1 && rows == 24);
    kiln_image_decoder *dec = NULL;
    CHECK_OK(kiln_image_decoder_new(&dec));
    double worst = 0;
    for (int i = 0; i < 24; i++) {
        const void *data;
        size_t len;
        int ih, iw;
        CHECK_OK(kiln_image_read_file(dec, kiln_dataset_row_name(ds, i), &data, &len));
        CHECK_OK(kiln_image_info(dec, data, len, "x", &ih, &iw));
        kiln_image img;
        kiln_image_decode_opts od = {.channels = 3};
        CHECK_OK(kiln_image_decode(dec, data, len, "x", &od, &img));
        CHECK(img.h == ih && img.w == iw);
        double *src = malloc((size_t)3 * ih * iw * sizeof *src), want[3 * 16 * 16];
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < ih; y++)
                for (int x = 0; x < iw; x++)
                    src[((size_t)k * ih + y) * iw + x] = img.data[y * img.stride + x * 3 + k];
        cur cr = cur_at(0, 0, 0, i);
        u01(&cr); /* the apply draw */
        int box[4];
        ref_rrc_box(&cr, ih, iw, crop.op[0].scale, crop.op[0].ratio, box);
        ref_resample(src, 3, ih, iw, box[0], box[1], box[2], box[3], want, 16, 16, 0);
        worst = fmax(worst, max_abs(bx + (size_t)i * m, want, m));
        free(src);
    }
    CHECK_MSG(worst < 1e-3, "crop of the decoded picture: max diff %g", worst);
    kiln_image_decoder_free(dec);
    kiln_loader_free(l);
    free(bx), free(x0), free(x1);
    kiln_dataset_free(ds);
}

static void test_dct_scaled_crop(void) {
    /* a 320 x 400 picture cropped to 16 x 16: the decoder may use 1/8 scaling when the box is
     * at least 8 x 16 pixels tall; the result stays close to cropping the full-size decode */
    make_tree("big", 2, 320, 400, 0);
    char root[600];
    snprintf(root, sizeof root, "%s/big", tmpdir);
    kiln_image_source_options o = {
        .root = root,
        .spec = {.channels = 3, .resize_h = 16, .resize_w = 16, .out_h = 16, .out_w = 16}};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_data_load_images(&o, &ds));
    if (!ds) return;
    kiln_augment a = one((kiln_aug_op){.kind = KILN_AUG_RANDOM_RESIZED_CROP,
                                       .p = 1,
                                       .scale = {0.5f, 1},
                                       .ratio = {0.75f, 4.0f / 3}});
    kiln_loader_config c = {.batch_size = 4, .augment = &a};
    kiln_loader *l = NULL;
    CHECK_OK(kiln_loader_new(ds, &c, &l));
    float bx[4 * 768];
    int32_t by[4];
    int rows;
    CHECK(l && kiln_loader_next(l, bx, by, &rows) == 1 && rows == 4);
    kiln_image_decoder *dec = NULL;
    CHECK_OK(kiln_image_decoder_new(&dec));
    for (int i = 0; i < 4; i++) {
        const void *data;
        size_t len;
        kiln_image img;
        kiln_image_decode_opts od = {.channels = 3};
        CHECK_OK(kiln_image_read_file(dec, kiln_dataset_row_name(ds, i), &data, &len));
        CHECK_OK(kiln_image_decode(dec, data, len, "x", &od, &img));
        kiln_aug_draw d;
        kiln_augment_draw(&a, 0, 0, 0, i, img.h, img.w, &d);
        kiln_aug_src src = {3, img.h, img.w, NULL, img.data, img.stride};
        float want[768];
        kiln_aug_scratch sc = {0};
        CHECK_OK(kiln_aug_resample(&src, d.box[0], d.box[1], d.box[2], d.box[3], want, 16, 16,
                                   KILN_INTERP_BILINEAR, &sc));
        kiln_aug_scratch_free(&sc);
        double mad = 0;
        for (int j = 0; j < 768; j++) mad += fabs(bx[i * 768 + j] - want[j]);
        CHECK_MSG(mad / 768 < 4, "sample %d: mean |difference| %g levels", i, mad / 768);
    }
    kiln_image_decoder_free(dec);
    kiln_loader_free(l);
    kiln_dataset_free(ds);
}

static void test_bad_file_with_workers(void) {
    make_tree("bad", 12, 20, 20, 1);
    char root[600];
    snprintf(root, sizeof root, "%s/bad", tmpdir);
    kiln_image_source_options o = {
        .root = root,
        .spec = {.channels = 3, .resize_h = 8, .resize_w = 8, .out_h = 8, .out_w = 8}};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_data_load_images(&o, &ds));
    if (!ds) return;
    kiln_augment a = one((kiln_aug_op){.kind = KILN_AUG_RANDOM_RESIZED_CROP,
                                       .p = 1,
                                       .scale = {0.5f, 1},
                                       .ratio = {0.75f, 4.0f / 3}});
    for (int workers = 0; workers <= 4; workers += 4) {
        kiln_loader_config c = {
            .batch_size = 24, .augment = &a, .prefetch = workers ? 2 : 0, .workers = workers};
        kiln_loader *l = NULL;
        CHECK_OK(kiln_loader_new(ds, &c, &l));
        float bx[24 * 192];
        int32_t by[24];
        int rows;
        for (int tries = 0; l && tries < 2; tries++) { /* fails again: the position stays */
            CHECK(kiln_loader_next(l, bx, by, &rows) == -1);
            CHECK_ERR_HAS("c1/007.jpg");
            int64_t e, b;
            kiln_loader_position(l, &e, &b);
            CHECK(e == 0 && b == 0);
        }
        kiln_loader_free(l);
    }
    kiln_dataset_free(ds);
}

/* data.cache_mb caps the decoded cache's budget (half the machine's memory otherwise). */
static void test_cache_budget(void) {
    make_tree("cache", 6, 40, 40, 0);
    for (int mb = 0; mb <= 1; mb++) {
        char text[2048];
        snprintf(text, sizeof text,
                 "data: {source: images, train: {path: %s/cache}, cache: decoded, cache_mb: %d,\n"
                 "       image: {channels: rgb}}\n"
                 "loss: softmax_cross_entropy\n"
                 "model: {input: [3, 256, 256], layers: [flatten, {dense: {units: 2}}]}\n",
                 tmpdir, mb);
        kiln_cfg *c = NULL;
        kiln_model m = {0};
        kiln_inputs in = {0};
        CHECK_OK(kiln_config_parse(text, "c.yaml", &c));
        CHECK_OK(kiln_config_resolve(c));
        CHECK_OK(kiln_config_set(c, "data.image.resize=[256, 256]"));
        CHECK_OK(kiln_model_build(c, &m));
        CHECK_OK(kiln_inputs_load(c, &m, &in));
        if (in.train) { /* rows of 3 x 256 x 256 = 192 KiB: 1 MiB holds 5 of the 12 */
            const kiln_dataset *root = in.train->root ? in.train->root : in.train;
            CHECK_MSG(root->cache_rows == (mb ? 5 : 12), "cache_mb %d: %lld rows cached", mb,
                      (long long)root->cache_rows);
        }
        kiln_inputs_free(&in);
        kiln_model_free(&m);
        kiln_cfg_free(c);
    }
}

/* Augmenting samples that are not images [C, H, W] is a config error naming data.augment. */
static void test_config_errors(void) {
    char csv[600], text[2048];
    snprintf(csv, sizeof csv, "%s/t.csv", tmpdir);
    FILE *f = fopen(csv, "w");
    fputs("a,b,label\n1,2,0\n3,4,1\n", f);
    fclose(f);
    snprintf(text, sizeof text,
             "data: {source: csv, train: {path: %s}, augment: [horizontal_flip]}\n"
             "loss: softmax_cross_entropy\n"
             "model: {input: [2], layers: [{dense: {units: 2}}]}\n",
             csv);
    kiln_cfg *c = NULL;
    kiln_model m = {0};
    kiln_inputs in = {0};
    CHECK_OK(kiln_config_parse(text, "c.yaml", &c));
    CHECK_OK(kiln_config_resolve(c));
    CHECK_OK(kiln_model_build(c, &m));
    CHECK(kiln_inputs_load(c, &m, &in) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("data.augment: the training samples must be images [C, H, W]");
    kiln_inputs_free(&in);
    kiln_model_free(&m);
    kiln_cfg_free(c);
}

static void test_grid(void) {
    float x[5 * 3 * 4 * 6];
    for (int i = 0; i < 5 * 72; i++) x[i] = (float)(i % 72) / 71.0f;
    int w, h;
    uint8_t *rgb = kiln_aug_grid(x, 5, 3, 4, 6, 1, &w, &h);
    CHECK(rgb != NULL);
    /* 3 columns, 2 rows of 6*11 x 4*11 tiles (scaled to about 64 pixels), 2-pixel gaps */
    CHECK(w == 3 * 66 + 4 * 2 && h == 2 * 44 + 3 * 2);
    if (rgb) {
        CHECK(rgb[(2 * w + 2) * 3] == 0);                   /* first tile, first pixel: 0 */
        CHECK(rgb[((2 + 43) * w + 2 + 65) * 3 + 2] == 255); /* its last pixel of channel 2 */
        CHECK(rgb[0] == 96);                                /* the gap */
    }
    free(rgb);
    CHECK(kiln_aug_grid(x, 0, 3, 4, 6, 1, &w, &h) == NULL);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kiln-test-augment-XXXXXX");
    if (!mkdtemp(tmpdir)) return perror("mkdtemp"), 1;
    RUN(test_flips_crops_erasing_exact);
    RUN(test_resampling_ops);
    RUN(test_color_and_noise);
    RUN(test_draws);
    RUN(test_mix_reference);
    RUN(test_checks);
    RUN(test_loader_workers_and_seek);
    RUN(test_image_source_crop);
    RUN(test_dct_scaled_crop);
    RUN(test_bad_file_with_workers);
    RUN(test_cache_budget);
    RUN(test_config_errors);
    RUN(test_grid);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return kiln_test_summary();
}

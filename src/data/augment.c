/* augment.c — what each augmentation draws, and applying a list of them to one sample or one
 * batch (see kiln/augment.h; the pixel work is in augment_ops.c).
 *
 * Draws. A cursor walks Philox blocks (seed, stream, base + k), k = 0, 1, ...; every draw takes
 * one block, so the sequence of an op for a sample is fixed by (seed, epoch, op, sample) alone
 * and rejection loops (the 10 tries of a crop box, the gamma sampler) stay deterministic. Draw 0
 * of every op decides whether it applies (uniform < p), even when p is 1, so that changing p
 * never shifts the other draws.
 *
 * Invariant: nothing here keeps state between calls; the scratch memory a caller passes in is
 * only working space. So any thread may augment any sample, in any order, with the same result.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment_internal.h"
#include "kiln/rng.h"

#define MIX_CHOICE_SLOT 255 /* the op slot of the mixup-or-cutmix choice */

const char *kiln_aug_kind_name(kiln_aug_kind k) {
    static const char *const names[] = {
        "?",        "random_resized_crop", "random_crop",    "horizontal_flip", "vertical_flip",
        "rotation", "color_jitter",        "gaussian_noise", "random_erasing",  "mixup",
        "cutmix"};
    return (unsigned)k <= KILN_AUG_CUTMIX ? names[k] : "?";
}

static int is_mix(kiln_aug_kind k) {
    return k == KILN_AUG_MIXUP || k == KILN_AUG_CUTMIX;
}

int kiln_augment_mixes(const kiln_augment *a) {
    for (int j = 0; a && j < a->n; j++)
        if (is_mix(a->op[j].kind)) return 1;
    return 0;
}

static kiln_status bad(int j, const kiln_aug_op *o, const char *what) {
    return kiln_error(KILN_ERR_INVALID, "data.augment[%d].%s: %s", j, kiln_aug_kind_name(o->kind),
                      what);
}

static int pair_ok(const float v[2], float max) {
    return v[0] > 0 && v[0] <= v[1] && v[1] <= max && isfinite(v[1]);
}

kiln_status kiln_augment_check(const kiln_augment *a) {
    if (!a) return KILN_OK;
    if (a->n < 0 || a->n > KILN_AUG_MAX)
        return kiln_error(KILN_ERR_INVALID, "data.augment: %d ops (at most %d)", a->n,
                          KILN_AUG_MAX);
    int seen_mix = 0, mixes[2] = {0, 0};
    for (int j = 0; j < a->n; j++) {
        const kiln_aug_op *o = &a->op[j];
        if (o->kind < KILN_AUG_RANDOM_RESIZED_CROP || o->kind > KILN_AUG_CUTMIX)
            return kiln_error(KILN_ERR_INVALID, "data.augment[%d]: unknown kind %d", j,
                              (int)o->kind);
        if (!(o->p >= 0 && o->p <= 1)) return bad(j, o, "p must be in [0, 1]");
        if (is_mix(o->kind)) {
            seen_mix = 1;
            if (mixes[o->kind == KILN_AUG_CUTMIX]++)
                return bad(j, o, "listed twice (one mixup and one cutmix at most)");
            if (!(o->alpha > 0 && isfinite(o->alpha))) return bad(j, o, "alpha must be > 0");
            continue;
        }
        if (seen_mix)
            return bad(j, o, "comes after mixup/cutmix, which mix whole batches: list them last");
        switch (o->kind) {
        case KILN_AUG_RANDOM_RESIZED_CROP:
            if (j != 0)
                return bad(j, o,
                           "must be the first augmentation (it crops the source image and "
                           "makes the input size)");
            if (!pair_ok(o->scale, 1))
                return bad(j, o, "scale must be [lo, hi], 0 < lo <= hi <= 1");
            if (!pair_ok(o->ratio, 1e6)) return bad(j, o, "ratio must be [lo, hi], 0 < lo <= hi");
            break;
        case KILN_AUG_RANDOM_ERASING:
            if (!pair_ok(o->scale, 1))
                return bad(j, o, "scale must be [lo, hi], 0 < lo <= hi <= 1");
            if (!pair_ok(o->ratio, 1e6)) return bad(j, o, "ratio must be [lo, hi], 0 < lo <= hi");
            if (!(o->value >= 0 && o->value <= 1))
                return bad(j, o, "value must be in [0, 1] (a fraction of the value range)");
            break;
        case KILN_AUG_RANDOM_CROP:
            if (o->padding < 0 || o->padding > 65535)
                return bad(j, o, "padding must be 0 to 65535");
            if (!(o->fill >= 0 && o->fill <= 1)) return bad(j, o, "fill must be in [0, 1]");
            break;
        case KILN_AUG_ROTATION:
            if (!(o->degrees >= 0 && o->degrees <= 180))
                return bad(j, o, "degrees must be 0 to 180");
            if (!(o->fill >= 0 && o->fill <= 1)) return bad(j, o, "fill must be in [0, 1]");
            break;
        case KILN_AUG_COLOR_JITTER:
            if (!(o->brightness >= 0 && o->contrast >= 0 && o->saturation >= 0) ||
                !isfinite(o->brightness + o->contrast + o->saturation))
                return bad(j, o, "brightness, contrast and saturation must be >= 0");
            if (!(o->hue >= 0 && o->hue <= 0.5)) return bad(j, o, "hue must be in [0, 0.5]");
            break;
        case KILN_AUG_GAUSSIAN_NOISE:
            if (!(o->std >= 0 && isfinite(o->std) && isfinite(o->mean)))
                return bad(j, o, "std must be >= 0 and mean finite");
            break;
        default:
            break;
        }
    }
    return KILN_OK;
}

kiln_status kiln_augment_check_shape(const kiln_augment *a, int c, int h, int w) {
    for (int j = 0; a && j < a->n; j++) {
        const kiln_aug_op *o = &a->op[j];
        if (o->kind == KILN_AUG_RANDOM_CROP && o->reflect && (o->padding >= h || o->padding >= w))
            return kiln_error(KILN_ERR_INVALID,
                              "data.augment[%d].random_crop: reflect padding %d needs samples "
                              "larger than that, got %d x %d",
                              j, o->padding, h, w);
        if (o->kind == KILN_AUG_COLOR_JITTER && c != 1 && c != 3)
            return kiln_error(KILN_ERR_INVALID,
                              "data.augment[%d].color_jitter: samples need 1 or 3 channels, "
                              "got %d",
                              j, c);
    }
    return KILN_OK;
}

/* ---- the cursor ---- */

typedef struct {
    uint64_t seed, stream, base, k;
} cursor;

static cursor cursor_at(uint64_t seed, int64_t epoch, int slot, int64_t index) {
    return (cursor){seed, KILN_DATA_STREAM_AUGMENT + ((uint64_t)epoch << 8) + (uint64_t)slot,
                    (uint64_t)index << 32, 0};
}

static float unif(cursor *c) { /* [0, 1), 24 bits */
    uint32_t w[4];
    kiln_philox(c->seed, c->stream, c->base + c->k++, w);
    return (float)(w[0] >> 8) * (1.0f / 16777216.0f);
}

static double unif_open(cursor *c) { /* (0, 1] */
    uint32_t w[4];
    kiln_philox(c->seed, c->stream, c->base + c->k++, w);
    return ((double)(w[0] >> 8) + 1.0) / 16777216.0;
}

static float unif_range(cursor *c, float lo, float hi) {
    return lo + (hi - lo) * unif(c);
}

static int below(cursor *c, int n) {
    return n <= 1 ? (c->k++, 0)
                  : (int)kiln_rng_below(c->seed, c->stream, c->base + c->k++, (uint32_t)n);
}

static double normal(cursor *c) {
    return kiln_rng_normal(c->seed, c->stream, c->base + c->k++);
}

/* Gamma(a, 1) by Marsaglia and Tsang; a < 1 through Gamma(a + 1) * U^(1 / a). */
static double gamma_draw(cursor *c, double a) {
    if (a < 1) {
        double u = unif_open(c);
        return gamma_draw(c, a + 1) * pow(u, 1.0 / a);
    }
    double d = a - 1.0 / 3.0, cc = 1.0 / sqrt(9.0 * d);
    for (int tries = 0; tries < 1000; tries++) {
        double x = normal(c), v = 1 + cc * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = unif_open(c);
        if (u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)))
            return d * v;
    }
    return d; /* not reached in practice (acceptance is above 95% a try) */
}

static float beta_draw(cursor *c, double alpha) {
    double x = gamma_draw(c, alpha), y = gamma_draw(c, alpha);
    return x + y > 0 ? (float)(x / (x + y)) : 0.5f;
}

/* Python's round(): halves to even (nearbyint in the default rounding mode). */
static int round_even(double v) {
    return (int)nearbyint(v);
}

/* RandomResizedCrop.get_params. */
static void rrc_box(cursor *c, const kiln_aug_op *o, int h, int w, int box[4]) {
    double area = (double)h * w, lr0 = log(o->ratio[0]), lr1 = log(o->ratio[1]);
    for (int t = 0; t < 10; t++) {
        double ta = area * unif_range(c, o->scale[0], o->scale[1]);
        double ar = exp(unif_range(c, (float)lr0, (float)lr1));
        int cw = round_even(sqrt(ta * ar)), ch = round_even(sqrt(ta / ar));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            box[0] = below(c, h - ch + 1), box[1] = below(c, w - cw + 1);
            box[2] = ch, box[3] = cw;
            return;
        }
    }
    double in_ratio = (double)w / h;
    int cw = w, ch = h;
    if (in_ratio < o->ratio[0])
        ch = round_even(cw / (double)o->ratio[0]);
    else if (in_ratio > o->ratio[1])
        cw = round_even(ch * (double)o->ratio[1]);
    ch = ch < 1 ? 1 : ch > h ? h : ch, cw = cw < 1 ? 1 : cw > w ? w : cw;
    box[0] = (h - ch) / 2, box[1] = (w - cw) / 2, box[2] = ch, box[3] = cw;
}

/* RandomErasing.get_params; apply = 0 when no box fits in 10 tries. */
static void erase_box(cursor *c, const kiln_aug_op *o, int h, int w, kiln_aug_draw *d) {
    double area = (double)h * w, lr0 = log(o->ratio[0]), lr1 = log(o->ratio[1]);
    for (int t = 0; t < 10; t++) {
        double ea = area * unif_range(c, o->scale[0], o->scale[1]);
        double ar = exp(unif_range(c, (float)lr0, (float)lr1));
        int eh = round_even(sqrt(ea * ar)), ew = round_even(sqrt(ea / ar));
        if (!(eh < h && ew < w)) continue;
        d->box[0] = below(c, h - eh + 1), d->box[1] = below(c, w - ew + 1);
        d->box[2] = eh, d->box[3] = ew;
        return;
    }
    d->apply = 0;
}

void kiln_augment_draw(const kiln_augment *a, int j, uint64_t seed, int64_t epoch, int64_t index,
                       int h, int w, kiln_aug_draw *d) {
    memset(d, 0, sizeof *d);
    const kiln_aug_op *o = &a->op[j];
    cursor c = cursor_at(seed, epoch, j, index);
    d->apply = unif(&c) < o->p;
    if (!d->apply) return;
    switch (o->kind) {
    case KILN_AUG_RANDOM_RESIZED_CROP:
        rrc_box(&c, o, h, w, d->box);
        break;
    case KILN_AUG_RANDOM_CROP:
        d->box[0] = below(&c, 2 * o->padding + 1), d->box[1] = below(&c, 2 * o->padding + 1);
        d->box[2] = h, d->box[3] = w;
        break;
    case KILN_AUG_ROTATION:
        d->angle = unif_range(&c, -o->degrees, o->degrees);
        break;
    case KILN_AUG_COLOR_JITTER: {
        for (int i = 0; i < 4; i++) d->order[i] = i;
        for (int i = 3; i > 0; i--) { /* Fisher-Yates */
            int k = below(&c, i + 1), t = d->order[i];
            d->order[i] = d->order[k], d->order[k] = t;
        }
        const float amt[3] = {o->brightness, o->contrast, o->saturation};
        for (int i = 0; i < 3; i++)
            if (amt[i] > 0) d->factor[i] = unif_range(&c, fmaxf(0, 1 - amt[i]), 1 + amt[i]);
        if (o->hue > 0) d->factor[3] = unif_range(&c, -o->hue, o->hue);
        break;
    }
    case KILN_AUG_RANDOM_ERASING:
        erase_box(&c, o, h, w, d);
        break;
    default:
        break;
    }
}

void kiln_augment_mix_draw(const kiln_augment *a, uint64_t seed, int64_t epoch, int64_t batch,
                           int h, int w, kiln_aug_mix_draw *d) {
    memset(d, 0, sizeof *d);
    d->op = -1, d->lam = 1;
    int mix[2] = {-1, -1}; /* mixup, cutmix */
    for (int j = 0; j < a->n; j++)
        if (is_mix(a->op[j].kind)) mix[a->op[j].kind == KILN_AUG_CUTMIX] = j;
    int j = mix[0] >= 0 ? mix[0] : mix[1];
    if (j < 0) return;
    if (mix[0] >= 0 && mix[1] >= 0) {
        cursor ch = cursor_at(seed, epoch, MIX_CHOICE_SLOT, batch);
        j = unif(&ch) < 0.5f ? mix[0] : mix[1];
    }
    const kiln_aug_op *o = &a->op[j];
    cursor c = cursor_at(seed, epoch, j, batch);
    if (!(unif(&c) < o->p)) return;
    d->op = j;
    d->lam = beta_draw(&c, o->alpha);
    if (o->kind == KILN_AUG_CUTMIX) { /* transforms.v2.CutMix */
        int rx = below(&c, w), ry = below(&c, h);
        double r = 0.5 * sqrt(1.0 - d->lam);
        int rw = (int)(r * w), rh = (int)(r * h);
        int x1 = rx - rw > 0 ? rx - rw : 0, y1 = ry - rh > 0 ? ry - rh : 0;
        int x2 = rx + rw < w ? rx + rw : w, y2 = ry + rh < h ? ry + rh : h;
        d->box[0] = y1, d->box[1] = x1, d->box[2] = y2 - y1, d->box[3] = x2 - x1;
        d->lam = (float)(1.0 - (double)(x2 - x1) * (y2 - y1) / ((double)w * h));
    }
}

/* ---- applying ---- */

void kiln_aug_scratch_free(kiln_aug_scratch *s) {
    for (int i = 0; i < 4; i++) free(s->buf[i]);
    memset(s, 0, sizeof *s);
}

void *kiln_aug_grow(kiln_aug_scratch *s, int which, size_t bytes) {
    if (bytes > s->cap[which]) {
        size_t c = bytes + bytes / 4 + 64;
        void *p = realloc(s->buf[which], c);
        if (!p) return NULL;
        s->buf[which] = p, s->cap[which] = c;
    }
    return s->buf[which];
}

/* Per-pixel values for op j of sample index: four per block from block (index << 32) + 64. */
void kiln_aug_pixel_words(uint64_t seed, int64_t epoch, int j, int64_t index, int64_t p,
                          uint32_t w[4]) {
    kiln_philox(seed, KILN_DATA_STREAM_AUGMENT + ((uint64_t)epoch << 8) + (uint64_t)j,
                ((uint64_t)index << 32) + 64 + (uint64_t)(p / 4), w);
}

kiln_status kiln_augment_sample(const kiln_augment *a, int first, uint64_t seed, int64_t epoch,
                                int64_t index, float bound, float *x, int c, int h, int w,
                                kiln_aug_scratch *s) {
    size_t bytes = (size_t)c * h * w * sizeof(float);
    for (int j = first; a && j < a->n; j++) {
        const kiln_aug_op *o = &a->op[j];
        if (is_mix(o->kind)) continue;
        kiln_aug_draw d;
        kiln_augment_draw(a, j, seed, epoch, index, h, w, &d);
        if (!d.apply) continue;
        float *copy;
        switch (o->kind) {
        case KILN_AUG_RANDOM_RESIZED_CROP:
        case KILN_AUG_ROTATION:
        case KILN_AUG_RANDOM_CROP:
            if (!(copy = kiln_aug_grow(s, KILN_AUG_SCRATCH_COPY, bytes)))
                return kiln_error(KILN_ERR_NOMEM, "augment: out of memory");
            memcpy(copy, x, bytes);
            if (o->kind == KILN_AUG_RANDOM_CROP) {
                kiln_aug_crop_pad(copy, x, c, h, w, o->padding, o->reflect, o->fill * bound,
                                  d.box[0], d.box[1]);
            } else if (o->kind == KILN_AUG_ROTATION) {
                kiln_aug_rotate(copy, x, c, h, w, d.angle, o->fill * bound);
            } else {
                kiln_aug_src src = {c, h, w, copy, NULL, 0};
                kiln_status st = kiln_aug_resample(&src, d.box[0], d.box[1], d.box[2], d.box[3], x,
                                                   h, w, o->interp, s);
                if (st) return st;
            }
            break;
        case KILN_AUG_HORIZONTAL_FLIP:
            kiln_aug_flip(x, c, h, w, 1);
            break;
        case KILN_AUG_VERTICAL_FLIP:
            kiln_aug_flip(x, c, h, w, 0);
            break;
        case KILN_AUG_COLOR_JITTER:
            kiln_aug_jitter(x, c, h, w, bound, d.factor, d.order);
            break;
        case KILN_AUG_GAUSSIAN_NOISE: {
            int64_t n = (int64_t)c * h * w;
            float m = o->mean * bound, sd = o->std * bound;
            for (int64_t p = 0; p < n; p += 4) {
                uint32_t wd[4];
                kiln_aug_pixel_words(seed, epoch, j, index, p, wd);
                float z[4];
                kiln_aug_normals(wd, z);
                for (int64_t q = p; q < p + 4 && q < n; q++) {
                    float v = x[q] + m + sd * z[q - p];
                    x[q] = o->clip ? (v < 0 ? 0 : v > bound ? bound : v) : v;
                }
            }
            break;
        }
        case KILN_AUG_RANDOM_ERASING: {
            int t = d.box[0], l = d.box[1], eh = d.box[2], ew = d.box[3];
            for (int k = 0; k < c; k++)
                for (int y = t; y < t + eh; y++)
                    for (int xx = l; xx < l + ew; xx++) {
                        float v = o->value * bound;
                        if (o->random_value) {
                            int64_t p = ((int64_t)k * h + y) * w + xx;
                            uint32_t wd[4];
                            kiln_aug_pixel_words(seed, epoch, j, index, p, wd);
                            v = (float)(wd[p & 3] >> 8) * (1.0f / 16777216.0f) * bound;
                        }
                        x[((size_t)k * h + y) * w + xx] = v;
                    }
            break;
        }
        default:
            break;
        }
    }
    return KILN_OK;
}

kiln_status kiln_augment_mix(const kiln_augment *a, uint64_t seed, int64_t epoch, int64_t batch,
                             float *x, float *y, int n, int c, int h, int w, int k,
                             kiln_aug_scratch *s) {
    kiln_aug_mix_draw d;
    kiln_augment_mix_draw(a, seed, epoch, batch, h, w, &d);
    if (d.op < 0 || n < 2) return KILN_OK;
    size_t m = (size_t)c * h * w;
    /* sample i takes from sample i - 1 (sample 0 from n - 1): go down from n - 1, keeping the
     * original last sample for sample 0 */
    float *last = kiln_aug_grow(s, KILN_AUG_SCRATCH_COPY, (m + (size_t)k) * sizeof *last);
    if (!last) return kiln_error(KILN_ERR_NOMEM, "augment: out of memory");
    memcpy(last, x + (size_t)(n - 1) * m, m * sizeof *last);
    if (y) memcpy(last + m, y + (size_t)(n - 1) * k, (size_t)k * sizeof *last);
    float lam = d.lam;
    int cut = a->op[d.op].kind == KILN_AUG_CUTMIX;
    for (int i = n - 1; i >= 0; i--) {
        float *xi = x + (size_t)i * m;
        const float *xp = i ? x + (size_t)(i - 1) * m : last;
        if (cut) {
            for (int ch = 0; ch < c; ch++)
                for (int r = d.box[0]; r < d.box[0] + d.box[2]; r++) {
                    size_t off = ((size_t)ch * h + r) * w + d.box[1];
                    memcpy(xi + off, xp + off, (size_t)d.box[3] * sizeof *xi);
                }
        } else {
            for (size_t q = 0; q < m; q++) xi[q] = lam * xi[q] + (1 - lam) * xp[q];
        }
        if (!y) continue;
        float *yi = y + (size_t)i * k;
        const float *yp = i ? y + (size_t)(i - 1) * k : last + m;
        for (int q = 0; q < k; q++) yi[q] = lam * yi[q] + (1 - lam) * yp[q];
    }
    return KILN_OK;
}

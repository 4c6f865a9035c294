/* kiln/augment.h — data augmentation for the training split (data.augment): random resized crop,
 * random crop with padding, flips, rotation, color jitter, gaussian noise, random erasing, and
 * mixup / cutmix with soft labels. The loader (kiln/data.h) runs it on its worker threads; the
 * functions here are pure, so tests and `kiln data preview` call them directly.
 *
 * Values. Augmentation works on one sample at a time as float32 [C, H, W] in the units the data
 * is stored in, before normalization: 0..255 for u8 data (images, IDX), and the stored floats for
 * F32 data, whose range is taken to be 0..1 (torchvision's convention for float images). `bound`
 * is that range's top (255 or 1): color jitter, noise and fills clamp to [0, bound], and every
 * intensity parameter below (fill, noise mean and std, erasing value) is a fraction of it.
 *
 * Randomness. Every choice is a pure function of (seed, epoch, sample index) through the
 * counter-based RNG (kiln/rng.h): draw k of sample i for op j of the list is Philox block
 * (i << 32) + k of stream KILN_DATA_STREAM_AUGMENT + (epoch << 8) + j. Uniforms use a block's
 * first word (24 bits), integers kiln_rng_below, normals Box-Muller over its words. Per-pixel
 * values (noise, random erasing values) take four per block from block (i << 32) + 64 + p / 4.
 * Mixup and cutmix choose once per batch: sample index i is replaced by the batch index, and
 * which of the two a batch uses (when both are listed) is draw 0 of op slot 255. So a sample
 * comes out the same whatever the worker count, the batch size (except for mixing), and whether
 * the run was resumed.
 *
 * The definitions follow torchvision (transforms and transforms.v2) where it has the op:
 *   random_resized_crop  RandomResizedCrop.get_params (10 tries, then the central crop within
 *                        the ratio range), then the box resampled to the output size with the
 *                        antialiased filters of kiln_image_resize (PIL's box argument).
 *   random_crop          RandomCrop(size = the input's, padding, fill, padding_mode constant or
 *                        reflect): top, left uniform in [0, 2 * padding].
 *   horizontal_flip, vertical_flip   with probability p (0.5).
 *   rotation             RandomRotation(degrees, BILINEAR, fill): angle uniform in
 *                        [-degrees, degrees], counter-clockwise, about the image center; a
 *                        bilinear tap outside the image reads fill.
 *   color_jitter         ColorJitter(brightness, contrast, saturation, hue): factors uniform in
 *                        [max(0, 1 - b), 1 + b] (hue in [-h, h]), applied in a random order (a
 *                        permutation of the four); brightness blends with black, contrast with
 *                        the mean of the grayscale image, saturation with the grayscale image
 *                        (gray = 0.2989 R + 0.587 G + 0.114 B), hue rotates H in HSV; each result
 *                        clamped to [0, bound]. Saturation and hue leave one-channel data alone.
 *   gaussian_noise       x + (mean + std * N(0, 1)) * bound, clamped to [0, bound] when clip.
 *   random_erasing       RandomErasing(p, scale, ratio, value): a box of area fraction in scale
 *                        and aspect ratio in ratio (10 tries, else nothing), filled with value
 *                        (or, with random_value, uniform values in [0, bound)).
 *   mixup, cutmix        transforms.v2.MixUp / CutMix over a batch: lambda ~ Beta(alpha, alpha),
 *                        each sample mixed with the one before it in the batch (the batch rolled
 *                        by one), labels lambda * onehot(y) + (1 - lambda) * onehot(y_rolled);
 *                        cutmix pastes a box of the rolled batch (center uniform, sides
 *                        sqrt(1 - lambda) of the image's) and sets lambda to the area kept.
 * Each op has a probability p (per sample; per batch for mixup and cutmix).
 */
#ifndef KILN_AUGMENT_H
#define KILN_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/image.h"
#include "kiln/status.h"

#define KILN_AUG_MAX             16
#define KILN_DATA_STREAM_AUGMENT 0xDA7C000000000000ull /* + (epoch << 8) + op */

typedef enum {
    KILN_AUG_RANDOM_RESIZED_CROP = 1,
    KILN_AUG_RANDOM_CROP,
    KILN_AUG_HORIZONTAL_FLIP,
    KILN_AUG_VERTICAL_FLIP,
    KILN_AUG_ROTATION,
    KILN_AUG_COLOR_JITTER,
    KILN_AUG_GAUSSIAN_NOISE,
    KILN_AUG_RANDOM_ERASING,
    KILN_AUG_MIXUP,
    KILN_AUG_CUTMIX,
} kiln_aug_kind;

typedef struct {
    kiln_aug_kind kind;
    float p;            /* probability the op applies, in [0, 1] */
    float scale[2];     /* random_resized_crop, random_erasing: area fraction [lo, hi] */
    float ratio[2];     /* random_resized_crop, random_erasing: aspect ratio w / h [lo, hi] */
    kiln_interp interp; /* random_resized_crop */
    int padding;        /* random_crop: pixels added on each side */
    int reflect;        /* random_crop: 1 reflect the edge (not repeated), 0 constant fill */
    float fill;         /* random_crop (constant), rotation: fraction of bound */
    float degrees;      /* rotation */
    float brightness, contrast, saturation, hue; /* color_jitter (0: not jittered) */
    float mean, std;                             /* gaussian_noise: fractions of bound */
    int clip;                                    /* gaussian_noise: clamp to [0, bound] */
    float value;                                 /* random_erasing: fill, fraction of bound */
    int random_value;                            /* random_erasing: uniform random values instead */
    float alpha;                                 /* mixup, cutmix: Beta(alpha, alpha) */
} kiln_aug_op;

typedef struct {
    int n;
    kiln_aug_op op[KILN_AUG_MAX];
} kiln_augment;

const char *kiln_aug_kind_name(kiln_aug_kind k); /* "random_resized_crop", ... */
/* Ranges and order: random_resized_crop only first, mixup and cutmix only last (at most one of
 * each), probabilities in [0, 1], scale 0 < lo <= hi (<= 1 for erasing), ratio 0 < lo <= hi,
 * hue <= 0.5, alpha > 0. Messages name the op as data.augment[i].<kind>. */
kiln_status kiln_augment_check(const kiln_augment *a);
/* 1 when a holds mixup or cutmix (batches then need soft labels). */
int kiln_augment_mixes(const kiln_augment *a);
/* Checks a against one sample's shape [c, h, w] (reflect padding must be < h and w). */
kiln_status kiln_augment_check_shape(const kiln_augment *a, int c, int h, int w);

/* ---- what an op drew for one sample ---- */

typedef struct {
    int apply;       /* 0: the op leaves this sample alone */
    int box[4];      /* random_resized_crop, random_erasing: top, left, height, width;
                        random_crop: top, left in the padded image */
    float angle;     /* rotation, degrees counter-clockwise */
    float factor[4]; /* color_jitter: brightness, contrast, saturation, hue (0 0 0 0 unused) */
    int order[4];    /* color_jitter: the order the four are tried in (0 b, 1 c, 2 s, 3 h) */
} kiln_aug_draw;

/* Op j of a for sample `index` of `epoch`; h, w: the size the op sees (random_resized_crop: the
 * source image's). Mixup and cutmix draw per batch (kiln_augment_mix_draw). */
void kiln_augment_draw(const kiln_augment *a, int j, uint64_t seed, int64_t epoch, int64_t index,
                       int h, int w, kiln_aug_draw *d);

typedef struct {
    int op;     /* the op of a that mixes this batch, or -1 for none */
    float lam;  /* weight of each sample's own image and label */
    int box[4]; /* cutmix: top, left, height, width pasted from the previous sample */
} kiln_aug_mix_draw;
void kiln_augment_mix_draw(const kiln_augment *a, uint64_t seed, int64_t epoch, int64_t batch,
                           int h, int w, kiln_aug_mix_draw *d);

/* ---- applying ---- */

/* Grow-only scratch for one thread. Zero-initialize; free with kiln_aug_scratch_free. */
typedef struct {
    void *buf[4];
    size_t cap[4];
} kiln_aug_scratch;
void kiln_aug_scratch_free(kiln_aug_scratch *s);

/* A source for kiln_aug_resample: float32 [c, h, w] (planar), or u8 [h, w, c] interleaved with
 * a row stride (a decoded image). */
typedef struct {
    int c, h, w;
    const float *f32;  /* planar floats, or NULL */
    const uint8_t *u8; /* interleaved bytes (when f32 is NULL) */
    ptrdiff_t stride;  /* bytes per u8 row */
} kiln_aug_src;
/* dst [c, oh, ow] <- the box (top y0, left x0, height bh, width bw, in pixels, fractions allowed)
 * of src resampled with interp: kiln_image_resize's separable filters (antialiased when
 * shrinking) with PIL's box semantics (filter taps may reach past the box, never past the
 * image). */
kiln_status kiln_aug_resample(const kiln_aug_src *src, double y0, double x0, double bh, double bw,
                              float *dst, int oh, int ow, kiln_interp interp, kiln_aug_scratch *s);

/* The ops of a from `first` on, except mixup and cutmix, on sample `index` of `epoch`:
 * x [c, h, w] in place (values in [0, bound]). An op at j = 0 that is random_resized_crop
 * crops and resizes x itself (for data whose source image is x). */
kiln_status kiln_augment_sample(const kiln_augment *a, int first, uint64_t seed, int64_t epoch,
                                int64_t index, float bound, float *x, int c, int h, int w,
                                kiln_aug_scratch *s);

/* Mixup / cutmix of batch `batch` of `epoch`: x [n, c, h, w] and soft labels y [n, k] (rows sum
 * to 1; NULL: no labels) in place. Nothing happens when the batch draws no mixing. */
kiln_status kiln_augment_mix(const kiln_augment *a, uint64_t seed, int64_t epoch, int64_t batch,
                             float *x, float *y, int n, int c, int h, int w, int k,
                             kiln_aug_scratch *s);

/* ---- pictures ---- */

/* A grid of n samples x [n, c, h, w] (c 1 or 3, values in [0, bound]) as RGB bytes
 * rgb [height][width][3] (malloc'd): tiles scaled up by a whole factor to about 64 pixels, laid
 * out in a near-square grid with 2-pixel gray gaps. NULL when out of memory (with a message). */
uint8_t *kiln_aug_grid(const float *x, int n, int c, int h, int w, float bound, int *width,
                       int *height);

#endif

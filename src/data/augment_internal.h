/* augment_internal.h — the pixel operations behind kiln_augment_sample (augment_ops.c), shared
 * with augment.c. Every image is float32 [c, h, w], planar. */
#ifndef KILN_DATA_AUGMENT_INTERNAL_H
#define KILN_DATA_AUGMENT_INTERNAL_H

#include "kiln/augment.h"

/* Scratch slots of kiln_aug_scratch: resampling uses the first three, the sample's copy the
 * last. */
enum { KILN_AUG_SCRATCH_ROWS, KILN_AUG_SCRATCH_TAPS, KILN_AUG_SCRATCH_LINE, KILN_AUG_SCRATCH_COPY };

/* Slot `which` of s with room for `bytes` (NULL when out of memory). */
void *kiln_aug_grow(kiln_aug_scratch *s, int which, size_t bytes);

/* The Philox words that give per-pixel values p .. p + 3 for op j of sample index. */
void kiln_aug_pixel_words(uint64_t seed, int64_t epoch, int j, int64_t index, int64_t p,
                          uint32_t w[4]);
/* Four standard normals from four words (Box-Muller on (w0, w1) and (w2, w3)). */
void kiln_aug_normals(const uint32_t w[4], float z[4]);

/* horizontal: mirror left-right; else top-bottom. In place. */
void kiln_aug_flip(float *x, int c, int h, int w, int horizontal);
/* dst [c, h, w] <- the h x w window at (top, left) of src padded by pad on each side (reflect, or
 * the constant fill). */
void kiln_aug_crop_pad(const float *src, float *dst, int c, int h, int w, int pad, int reflect,
                       float fill, int top, int left);
/* dst <- src rotated by degrees counter-clockwise about the center, bilinear, fill outside. */
void kiln_aug_rotate(const float *src, float *dst, int c, int h, int w, float degrees, float fill);
/* Color jitter with factors (brightness, contrast, saturation, hue; 0 = not jittered, for the
 * first three) in order, clamped to [0, bound]. In place. */
void kiln_aug_jitter(float *x, int c, int h, int w, float bound, const float factor[4],
                     const int order[4]);

#endif

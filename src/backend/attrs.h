/* attrs.h — each op's attributes: what a builder records in the node and the op reads.
 * Plain data (copied into the node with memcpy); one struct per op. */
#ifndef KILN_ATTRS_H
#define KILN_ATTRS_H

#include <stdint.h>

#include "kiln/backend.h"
#include "kiln/tensor.h" /* KILN_MAX_DIMS */

typedef struct {
    int units;
    kiln_act act;
} kiln_dense_attr;

typedef struct {
    int filters;
    int kernel[2], stride[2], dilation[2];
    kiln_padding padding;
    int pad[2]; /* KILN_PAD_EXPLICIT */
    int groups;
    kiln_act act;
} kiln_conv2d_attr;

typedef struct {
    int size[2], stride[2];
    kiln_padding padding;
    int pad[2];
} kiln_pool2d_attr;

/* Batch norm inputs: x, [gamma unless no_scale], [beta unless no_center], moving_mean,
 * moving_variance (the moving statistics are always the last two). */
typedef struct {
    float momentum, epsilon;
    int no_scale, no_center;
} kiln_batchnorm_attr;

/* Layer norm inputs: x, [gamma unless no_scale], [beta unless no_center]. */
typedef struct {
    float epsilon;
    int no_scale, no_center;
} kiln_layernorm_attr;

typedef struct {
    float rate;
} kiln_dropout_attr;

typedef struct {
    int ndim;                        /* excluding batch */
    int64_t dims[KILN_MAX_DIMS - 1]; /* one may be -1 */
} kiln_reshape_attr;

typedef struct {
    int axis; /* normalized: 1 .. ndim-1 */
} kiln_concat_attr;

typedef struct {
    kiln_act act;
    float alpha; /* leaky relu slope */
} kiln_activation_attr;

typedef struct {
    int vocab, dim;
} kiln_embedding_attr;

typedef struct {
    float label_smoothing; /* softmax cross-entropy */
    float delta;           /* huber */
} kiln_loss_attr;

/* ---- elementwise and resampling ops (issue 13) ---- */
typedef struct {
    float min, max; /* y = min(max(x, min), max); -inf / +inf when a bound is absent */
} kiln_clip_attr;

typedef struct {
    int nsp;      /* spatial axes: 1, 2 or 3 (input [B, C, spatial...]) */
    int size[3];  /* integer scale per spatial axis, >= 1 */
    kiln_upsample_mode mode;
} kiln_upsample_attr;

typedef struct {
    int nsp; /* spatial axes reduced: 1, 2 or 3 (input [B, C, spatial...] -> [B, C]) */
} kiln_global_pool_attr;

/* "same"/"valid"/explicit padding for one spatial axis: output size and (before, after) pads.
 * TF's rule for same: total = max((ceil(in / stride) - 1) * stride + (k - 1) * dil + 1 - in, 0),
 * before = total / 2, after = total - before. Returns the output size (< 1 when impossible). */
int64_t kiln_conv_out_size(int64_t in, int k, int stride, int dil, kiln_padding pad, int explicit_pad,
                           int64_t *pad_before, int64_t *pad_after);

#endif

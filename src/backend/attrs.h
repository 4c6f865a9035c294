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

/* Convolution of 1 to 3 spatial axes (conv1d/2d/3d, depthwise as groups = C) and transposed
 * convolution. nd 0 means 2 (callers written for conv2d). Explicit pads: pad[] before each axis,
 * pad_end[] after it when asym (else pad[] on both sides). Transposed: kernel [C, filters / G,
 * k...] and output_padding[] extra cells after each axis. */
typedef struct {
    int filters;
    int kernel[3], stride[3], dilation[3];
    kiln_padding padding;
    int pad[3]; /* KILN_PAD_EXPLICIT */
    int groups;
    kiln_act act;
    int nd;
    int pad_end[3];
    int asym;
    int transpose;
    int output_padding[3];
} kiln_conv_attr;
typedef kiln_conv_attr kiln_conv2d_attr;

/* Pooling of 1 to 3 spatial axes (nd 0 means 2); pads as kiln_conv_attr; ceil_mode: PyTorch's
 * (the last window may run past the end if it starts inside the input or the pad before). */
typedef struct {
    int size[3], stride[3];
    kiln_padding padding;
    int pad[3];
    int nd;
    int pad_end[3];
    int asym;
    int ceil_mode;
} kiln_pool_attr;
typedef kiln_pool_attr kiln_pool2d_attr;

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

/* The same rule with explicit pads (before, after) that may differ, and PyTorch's ceil_mode for
 * pools: the output rounds up, keeping only windows that start inside the input or the pad
 * before; *pad_after then grows so that the last window fits (oneDNN reads it as padding). */
int64_t kiln_conv_axis(int64_t in, int k, int stride, int dil, kiln_padding pad, int explicit_before,
                       int explicit_after, int ceil_mode, int64_t *pad_before, int64_t *pad_after);
/* Transposed convolution, one axis: out = (in - 1) * stride + (k - 1) * dil + 1 + output_padding
 * - before - after. "same" gives out = in * stride with total = (k - 1) * dil + 1 + output_padding
 * - stride split as before = total / 2 (ONNX SAME_UPPER, TF's conv2d_transpose); *pad_after
 * comes back less output_padding (what oneDNN reads) and may be negative. < 1 when impossible. */
int64_t kiln_deconv_axis(int64_t in, int k, int stride, int dil, kiln_padding pad,
                         int explicit_before, int explicit_after, int output_padding,
                         int64_t *pad_before, int64_t *pad_after);
/* A conv or pool attribute's spatial axis count (nd 0 means 2). */
static inline int kiln_attr_nd(int nd) { return nd ? nd : 2; }


/* ---- low-precision inference (kiln optimize; src/backend/cpu/lowp*.c) ----
 * A conv (not transposed) or dense node switched to int8 or bf16 (kiln_lowp_convert): same
 * inputs (x, kernel [, bias]) and shape; fp32 in, fp32 out. base is the node's original
 * attribute (kiln_conv_attr or kiln_dense_attr, first so that the original infer reads it) and
 * base_op its original op. int8: x is quantized as q = round(x / in_scale) to u8 (in_signed 0:
 * 0..255) or s8 (-128..127); weights per output channel, symmetric, when the plan is compiled. */
typedef enum { KILN_LOWP_INT8 = 1, KILN_LOWP_BF16 = 2 } kiln_lowp_dtype;
typedef struct {
    union {
        kiln_conv_attr conv;
        kiln_dense_attr dense;
    } base;
    const void *base_op; /* const kiln_op * */
    kiln_lowp_dtype dtype;
    float in_scale;
    int in_signed;
} kiln_lowp_attr;

/* ---- knowledge distillation (issue 15; backend/cpu/distill.c) ---- */
typedef struct {
    float temperature; /* T > 0 */
    float alpha;       /* weight of the soft-target term, [0, 1] */
} kiln_distill_attr;

#endif

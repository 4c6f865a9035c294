/* kiln/nn.h — layers and losses: graph builders in the style of Keras and KANN.
 *
 *   kiln_node *x = kiln_input(g, "image", KILN_F32, 3, (int64_t[]){1, 28, 28});
 *   x = kiln_conv2d(g, x, 32, 3, 1, KILN_PAD_SAME, KILN_ACT_RELU);
 *   x = kiln_maxpool2d(g, x, 2);
 *   x = kiln_flatten(g, x);
 *   x = kiln_dense(g, x, 10, KILN_ACT_NONE);
 *
 * Layouts: activations are NCHW ([batch, channels, height, width]); a dense kernel is
 * [in, units] (Keras), a conv kernel is [filters, in_channels / groups, kh, kw] (PyTorch/oneDNN;
 * conv1d/conv3d drop or add an axis; transposed: [in_channels, filters / groups, kh, kw]).
 * Parameter names are "<layer>.<param>" with Keras-style layer names: dense_1, conv2d_2,
 * batch_normalization_1 (kernel, bias, gamma, beta, moving_mean, moving_variance, embeddings).
 * Each *_ex variant takes an options struct: zero fields mean the documented default.
 */
#ifndef KILN_NN_H
#define KILN_NN_H

#include "kiln/backend.h" /* kiln_act, kiln_padding */
#include "kiln/graph.h"

/* ---- dense: y = act(x W + b) over the last axis; x [B, ..., in] -> [B, ..., units] ---- */
typedef struct {
    int units;
    kiln_act act;
    int no_bias;
    kiln_init kernel_init; /* default glorot_uniform */
    kiln_init bias_init;   /* default zeros */
    const char *name;      /* default dense_<n> */
} kiln_dense_opts;
kiln_node *kiln_dense(kiln_graph *g, kiln_node *x, int units, kiln_act act);
kiln_node *kiln_dense_ex(kiln_graph *g, kiln_node *x, const kiln_dense_opts *o);

/* ---- conv2d: x [B, C, H, W] -> [B, filters, OH, OW] ---- */
typedef struct {
    int filters;
    int kernel[2];   /* kh, kw */
    int stride[2];   /* default 1 */
    int dilation[2]; /* default 1 */
    kiln_padding padding;
    int pad[2]; /* KILN_PAD_EXPLICIT: rows and columns added on each side */
    int groups; /* default 1; C and filters must be multiples */
    kiln_act act;
    int no_bias;
    kiln_init kernel_init; /* default glorot_uniform */
    kiln_init bias_init;
    const char *name; /* default conv2d_<n> */
    int pad_end[2];   /* KILN_PAD_EXPLICIT with asymmetric: pads after (pad[]: before) */
    int asymmetric;
} kiln_conv2d_opts;
kiln_node *kiln_conv2d(kiln_graph *g, kiln_node *x, int filters, int kernel, int stride,
                       kiln_padding padding, kiln_act act);
kiln_node *kiln_conv2d_ex(kiln_graph *g, kiln_node *x, const kiln_conv2d_opts *o);

/* ---- pooling: x [B, C, H, W] -> [B, C, OH, OW] ---- */
typedef struct {
    int size[2];
    int stride[2]; /* default = size */
    kiln_padding padding;
    int pad[2];
    const char *name;
    int pad_end[2]; /* KILN_PAD_EXPLICIT with asymmetric: pads after (pad[]: before) */
    int asymmetric;
    int ceil_mode; /* PyTorch's: round the output size up */
} kiln_pool2d_opts;
kiln_node *kiln_maxpool2d(kiln_graph *g, kiln_node *x, int size);
kiln_node *kiln_maxpool2d_ex(kiln_graph *g, kiln_node *x, const kiln_pool2d_opts *o);
/* Average over the window; padded cells are not counted (Keras, count_include_pad=False). */
kiln_node *kiln_avgpool2d(kiln_graph *g, kiln_node *x, int size);
kiln_node *kiln_avgpool2d_ex(kiln_graph *g, kiln_node *x, const kiln_pool2d_opts *o);
/* [B, C, H, W] -> [B, C] */
kiln_node *kiln_global_avgpool2d(kiln_graph *g, kiln_node *x);

/* ---- convolutions of any axis count: conv1d [B, C, W], conv3d [B, C, D, H, W] (conv2d as
 * above), the transposed conv2d and the depthwise conv2d; kernel[], stride[], dilation[], pad[]
 * hold one entry per spatial axis (outer first), zeros meaning the defaults as for conv2d ---- */
typedef struct {
    int filters;
    int kernel[3];
    int stride[3];   /* default 1 */
    int dilation[3]; /* default 1 */
    kiln_padding padding;
    int pad[3];     /* KILN_PAD_EXPLICIT: before each axis (and after, unless asymmetric) */
    int pad_end[3]; /* KILN_PAD_EXPLICIT with asymmetric: after each axis */
    int asymmetric;
    int groups; /* default 1 */
    kiln_act act;
    int no_bias;
    kiln_init kernel_init; /* default glorot_uniform */
    kiln_init bias_init;   /* default zeros */
    const char *name;      /* default conv1d_<n>, conv3d_<n>, conv2d_transpose_<n> */
    int output_padding[3]; /* transposed: cells added after each axis (< stride or dilation) */
} kiln_conv_opts;
kiln_node *kiln_conv1d_ex(kiln_graph *g, kiln_node *x, const kiln_conv_opts *o);
kiln_node *kiln_conv3d_ex(kiln_graph *g, kiln_node *x, const kiln_conv_opts *o);
/* Transposed (Keras Conv2DTranspose, ONNX ConvTranspose): x [B, C, H, W] -> [B, filters, OH,
 * OW], OH = (H - 1) * stride + (kh - 1) * dilation + 1 + output_padding - pads ("same": H *
 * stride); kernel [C, filters / groups, kh, kw] (PyTorch's). */
kiln_node *kiln_conv2d_transpose_ex(kiln_graph *g, kiln_node *x, const kiln_conv_opts *o);

/* Depthwise (Keras DepthwiseConv2D): each of the C channels convolved with depth_multiplier
 * kernels of its own: x [B, C, H, W] -> [B, C * depth_multiplier, OH, OW], kernel
 * [C * depth_multiplier, 1, kh, kw] (a grouped conv2d with groups = C); initializer fans as
 * Keras's (fan_in = C kh kw, fan_out = depth_multiplier kh kw). */
typedef struct {
    int kernel[2];
    int stride[2];
    int dilation[2];
    kiln_padding padding;
    int pad[2], pad_end[2];
    int asymmetric;
    int depth_multiplier; /* default 1 */
    kiln_act act;
    int no_bias;
    kiln_init kernel_init; /* default glorot_uniform */
    kiln_init bias_init;   /* default zeros */
    const char *name;      /* default depthwise_conv2d_<n> */
} kiln_depthwise_conv2d_opts;
kiln_node *kiln_depthwise_conv2d_ex(kiln_graph *g, kiln_node *x, const kiln_depthwise_conv2d_opts *o);

/* ---- pooling of 1 or 3 axes: [B, C, W] / [B, C, D, H, W] (fields as kiln_pool2d_opts) ---- */
typedef struct {
    int size[3];
    int stride[3]; /* default = size */
    kiln_padding padding;
    int pad[3], pad_end[3];
    int asymmetric;
    int ceil_mode;
    const char *name;
} kiln_pool_opts;
kiln_node *kiln_maxpool1d_ex(kiln_graph *g, kiln_node *x, const kiln_pool_opts *o);
kiln_node *kiln_maxpool3d_ex(kiln_graph *g, kiln_node *x, const kiln_pool_opts *o);
kiln_node *kiln_avgpool1d_ex(kiln_graph *g, kiln_node *x, const kiln_pool_opts *o);
kiln_node *kiln_avgpool3d_ex(kiln_graph *g, kiln_node *x, const kiln_pool_opts *o);

/* ---- normalization ---- */
typedef struct {
    float momentum; /* running = momentum * running + (1 - momentum) * batch; default 0.99 */
    float epsilon;  /* default 1e-3 (Keras) */
    int no_scale, no_center;
    const char *name; /* default batch_normalization_<n> */
} kiln_batchnorm_opts;
/* Normalizes over axis 1 (channels of [B, C, ...], features of [B, F]). Parameters gamma,
 * beta (trainable), moving_mean, moving_variance (not trainable). Training plans use batch
 * statistics (biased variance) and update the running ones (unbiased variance). */
kiln_node *kiln_batchnorm(kiln_graph *g, kiln_node *x);
kiln_node *kiln_batchnorm_ex(kiln_graph *g, kiln_node *x, const kiln_batchnorm_opts *o);

typedef struct {
    float epsilon; /* default 1e-5 */
    int no_scale, no_center;
    const char *name; /* default layer_normalization_<n> */
} kiln_layernorm_opts;
/* Normalizes over the last axis with gamma, beta of that size. */
kiln_node *kiln_layernorm(kiln_graph *g, kiln_node *x);
kiln_node *kiln_layernorm_ex(kiln_graph *g, kiln_node *x, const kiln_layernorm_opts *o);

/* ---- regularization and plumbing ---- */
/* Inverted dropout: training plans zero each value with probability rate and scale the rest by
 * 1 / (1 - rate); inference plans pass x through. Mask from (seed, node, step, index). */
kiln_node *kiln_dropout(kiln_graph *g, kiln_node *x, float rate);
/* [B, ...] -> [B, prod(...)] */
kiln_node *kiln_flatten(kiln_graph *g, kiln_node *x);
/* dims exclude the batch dimension; one of them may be -1 (inferred). */
kiln_node *kiln_reshape(kiln_graph *g, kiln_node *x, int ndim, const int64_t *dims);
/* Elementwise sum of two tensors (residual connections). Same rank; on each axis the sizes are
 * equal or one is 1 and broadcasts ([B, C, 1, 1] against [B, C, H, W]). */
kiln_node *kiln_add(kiln_graph *g, kiln_node *a, kiln_node *b);
/* Joins n tensors along axis (1 .. ndim-1, or negative from the end; never the batch axis). */
kiln_node *kiln_concat(kiln_graph *g, kiln_node *const *xs, int n, int axis);

/* ---- activations (elementwise; softmax over the last axis) ---- */
kiln_node *kiln_activation(kiln_graph *g, kiln_node *x, kiln_act act);
kiln_node *kiln_relu(kiln_graph *g, kiln_node *x);
kiln_node *kiln_leaky_relu(kiln_graph *g, kiln_node *x, float alpha);
kiln_node *kiln_gelu(kiln_graph *g, kiln_node *x);
kiln_node *kiln_sigmoid(kiln_graph *g, kiln_node *x);
kiln_node *kiln_tanh(kiln_graph *g, kiln_node *x);
kiln_node *kiln_softmax(kiln_graph *g, kiln_node *x);
/* PyTorch's ReLU6, Hardsigmoid, Hardswish (also fusable into dense/conv as KILN_ACT_*). */
kiln_node *kiln_relu6(kiln_graph *g, kiln_node *x);
kiln_node *kiln_hard_sigmoid(kiln_graph *g, kiln_node *x);
kiln_node *kiln_hard_swish(kiln_graph *g, kiln_node *x);

/* ---- embedding: ids (I32 or I64) [B, ...] -> [B, ..., dim]; an id outside [0, vocab) makes
 * kiln_plan_forward fail with KILN_ERR_INVALID naming the node and the id. ---- */
kiln_node *kiln_embedding(kiln_graph *g, kiln_node *ids, int vocab, int dim);

/* ---- losses: scalar, mean over the batch (and every other non-class axis) ---- */
/* logits [B, K]; labels either I32/I64 class ids [B] or F32 probabilities [B, K]. With
 * smoothing s the target is (1 - s) * onehot + s / K (Keras and PyTorch agree). */
kiln_node *kiln_softmax_cross_entropy(kiln_graph *g, kiln_node *logits, kiln_node *labels,
                                      float label_smoothing);
/* Stable: max(z, 0) - z t + log(1 + exp(-|z|)); logits and targets of the same shape. */
kiln_node *kiln_binary_cross_entropy(kiln_graph *g, kiln_node *logits, kiln_node *targets);
kiln_node *kiln_mse(kiln_graph *g, kiln_node *pred, kiln_node *target);
kiln_node *kiln_mae(kiln_graph *g, kiln_node *pred, kiln_node *target);
/* 0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta) (Keras Huber, default delta 1). */
kiln_node *kiln_huber(kiln_graph *g, kiln_node *pred, kiln_node *target, float delta);
/* Knowledge distillation (Hinton et al. 2015), mean over rows of
 *   alpha T^2 KL(softmax(t / T) || softmax(z / T)) + (1 - alpha) CE(labels, z)
 * for student logits z [B, K], teacher logits t [B, K] (F32; no gradient flows into them) and
 * labels as kiln_softmax_cross_entropy takes them. temperature > 0, alpha in [0, 1]. */
kiln_node *kiln_softmax_distillation(kiln_graph *g, kiln_node *logits, kiln_node *teacher,
                                     kiln_node *labels, float temperature, float alpha);

/* ---- elementwise and resampling (issue 13) ---- */
/* Elementwise product, with kiln_add's broadcast rule (squeeze-and-excite). Name multiply_<n>. */
kiln_node *kiln_multiply(kiln_graph *g, kiln_node *a, kiln_node *b);
/* y = min(max(x, lo), hi) (ONNX Clip); -INFINITY / INFINITY for an absent bound; neither NaN.
 * Gradient passes where lo <= x <= hi (PyTorch clamp). Name clip_<n>. */
kiln_node *kiln_clip(kiln_graph *g, kiln_node *x, float lo, float hi);

typedef struct {
    int nsp;     /* spatial axes: 1, 2 or 3 (input [B, C, spatial...]) */
    int size[3]; /* factor per spatial axis, >= 1 (0 means 2) */
    /* nearest (default) or linear: half-pixel centres, as PyTorch align_corners=False and TF's
     * UpSampling2D bilinear */
    kiln_upsample_mode interpolation;
    const char *name;          /* default up_sampling<d>d_<n> (Keras) */
} kiln_upsampling_opts;
kiln_node *kiln_upsampling_ex(kiln_graph *g, kiln_node *x, const kiln_upsampling_opts *o);
/* [B, C, H, W] -> [B, C, H * size, W * size] */
kiln_node *kiln_upsampling2d(kiln_graph *g, kiln_node *x, int size,
                             kiln_upsample_mode interpolation);

/* [B, C, spatial...] -> [B, C]; max: the gradient goes to the first maximum (PyTorch). Names
 * global_max_pooling<d>d_<n>, global_average_pooling<d>d_<n> (Keras). */
kiln_node *kiln_global_maxpool1d(kiln_graph *g, kiln_node *x);
kiln_node *kiln_global_maxpool2d(kiln_graph *g, kiln_node *x);
kiln_node *kiln_global_maxpool3d(kiln_graph *g, kiln_node *x);
kiln_node *kiln_global_avgpool1d(kiln_graph *g, kiln_node *x);
kiln_node *kiln_global_avgpool3d(kiln_graph *g, kiln_node *x);

/* ---- low-precision inference (kiln optimize; src/nn/lowp.c, docs/optimize.md) ---- */
typedef enum { KILN_PRECISION_INT8 = 1, KILN_PRECISION_BF16 = 2 } kiln_precision;
typedef struct {
    kiln_precision precision;
    float in_scale; /* int8: the input's quantization step (x_q = round(x / in_scale)) */
    int in_signed;  /* int8: 0 -> u8 (the input is never negative), 1 -> s8 */
} kiln_lowp_opts;
/* 1 when node n has a low-precision form: dense, conv1d, conv2d, conv3d (depthwise and grouped
 * too; not conv2d_transpose). */
int kiln_lowp_supported(const kiln_node *n);
/* Runs node n in int8 or bf16 in plans compiled afterwards: same inputs, parameters and shape,
 * no gradient. KILN_ERR_INVALID (naming the node) when it has no such form or in_scale is not a
 * positive finite number. */
kiln_status kiln_lowp_convert(kiln_graph *g, kiln_node *n, const kiln_lowp_opts *o);
/* 1 (and *o) when n was converted. */
int kiln_lowp_get(const kiln_node *n, kiln_lowp_opts *o);

#endif

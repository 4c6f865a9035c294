/* onnx_export_ops.c — kiln ops as ONNX nodes (opset 17): one table entry per kiln op name.
 *
 * Every entry computes exactly what kiln's inference kernel computes for the node (layouts are
 * the same: activations N C spatial..., conv kernels [filters, in/groups, kh, kw], dense kernels
 * [in, units] which is Gemm's B without transB):
 *   dense            Gemm(x, W, b) for x [B, K]; MatMul(x, W) + Add(b) when x has more axes
 *                    (Gemm is 2-D only); a fused activation is a separate node after it
 *   conv1d/2d/3d     Conv with kernel_shape, strides, dilations, group and explicit pads
 *                    [x1_begin, .., xd_begin, x1_end, .., xd_end] from kiln's own padding rule
 *                    (attrs.c), so "same" with an odd total (TF puts the extra pad after) and
 *                    asymmetric pads are exact; depthwise_conv2d is conv2d with group = C; a
 *                    fused activation (any kiln_act) follows as its own node
 *   conv2d_transpose ConvTranspose with the same attributes and output_padding
 *   max/avg pooling  MaxPool / AveragePool (1-3 axes) with explicit pads; ceil_mode as the pads
 *                    it amounts to (emit_pool); kiln's average excludes the padding, which is
 *                    AveragePool's default (count_include_pad 0); adaptive_avgpool2d is built
 *                    of average pooling, concat and reshape, so it needs nothing of its own
 *   global pooling   GlobalAveragePool / GlobalMaxPool (1-3 axes) -> [B, C, 1, ..], then
 *                    Flatten(axis 1) -> [B, C]
 *   batchnorm        BatchNormalization (inference: moving statistics), ones / zeros for an
 *                    absent gamma / beta
 *   layernorm        LayerNormalization over the last axis (opset 17), ones for an absent gamma
 *   dropout          nothing (identity at inference)
 *   reshape/flatten  Reshape to [0, d1, ...]: 0 copies the batch, so it stays dynamic; the other
 *                    dims are the node's own (already resolved, no -1 left)
 *   add, multiply    Add, Mul: kiln broadcasts equal-rank inputs where one side is 1, as ONNX
 *   concat           Concat(axis)
 *   clip             Clip(x, min, max), an infinite bound left out
 *   upsampling       Resize (emit_upsample)
 *   activation       Relu, LeakyRelu(alpha), Sigmoid, Tanh, relu6 as Clip(0, 6), HardSigmoid
 *                    (alpha 1/6, beta 0.5), HardSwish, and GELU as 0.5 x (1 + erf(x/sqrt2))
 *   softmax          Softmax(axis -1): opset 13's Softmax is over that one axis, as kiln's
 *   embedding        Gather(table, ids) on axis 0
 * An op missing here (the losses, which never feed an output) is reported by the walk.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/attrs.h"
#include "model/onnx_export_internal.h"

kiln_status kiln_onnx_act(kiln_onnx_builder *b, kiln_act act, float alpha, const char *x,
                          const char *out) {
    static const char *const simple[KILN_ACT_COUNT] = {
        [KILN_ACT_NONE] = "Identity", [KILN_ACT_RELU] = "Relu", [KILN_ACT_LEAKY_RELU] = "LeakyRelu",
        [KILN_ACT_SIGMOID] = "Sigmoid", [KILN_ACT_TANH] = "Tanh",
        [KILN_ACT_HARD_SIGMOID] = "HardSigmoid", [KILN_ACT_HARD_SWISH] = "HardSwish"};
    if ((unsigned)act >= KILN_ACT_COUNT)
        return kiln_error(KILN_ERR_FORMAT, "export: activation %d has no ONNX form", (int)act);
    if (act == KILN_ACT_RELU6) { /* Clip(x, 0, 6): opset 11+ takes the bounds as inputs */
        static const float lo = 0.0f, hi = 6.0f;
        const char *in[3] = {x, kiln_onnx_const_f(b, "kiln.relu6.min", 0, NULL, &lo),
                             kiln_onnx_const_f(b, "kiln.relu6.max", 0, NULL, &hi)};
        if (in[1] && in[2]) kiln_onnx_node(b, "Clip", in, 3, out);
        return KILN_OK;
    }
    if (act != KILN_ACT_GELU) {
        Onnx__NodeProto *n = kiln_onnx_node(b, simple[act], &x, 1, out);
        if (n && act == KILN_ACT_LEAKY_RELU) kiln_onnx_attr_float(b, n, "alpha", alpha);
        if (n && act == KILN_ACT_HARD_SIGMOID) { /* relu6(x + 3) / 6 */
            kiln_onnx_attr_float(b, n, "alpha", 1.0f / 6);
            kiln_onnx_attr_float(b, n, "beta", 0.5f);
        }
        return KILN_OK;
    }
    static const float rsqrt2 = 0.70710678118654752f, one = 1.0f, half = 0.5f;
    const char *c_r = kiln_onnx_const_f(b, "kiln.gelu.rsqrt2", 0, NULL, &rsqrt2),
               *c_1 = kiln_onnx_const_f(b, "kiln.gelu.one", 0, NULL, &one),
               *c_h = kiln_onnx_const_f(b, "kiln.gelu.half", 0, NULL, &half);
    const char *t1 = kiln_onnx_str(b, "%s/gelu_scaled", out),
               *t2 = kiln_onnx_str(b, "%s/gelu_erf", out),
               *t3 = kiln_onnx_str(b, "%s/gelu_1p", out),
               *t4 = kiln_onnx_str(b, "%s/gelu_x1p", out);
    if (!c_r || !c_1 || !c_h || !t1 || !t2 || !t3 || !t4) return KILN_OK; /* b->oom says it */
    kiln_onnx_node(b, "Mul", (const char *[]){x, c_r}, 2, t1);
    kiln_onnx_node(b, "Erf", &t1, 1, t2);
    kiln_onnx_node(b, "Add", (const char *[]){t2, c_1}, 2, t3);
    kiln_onnx_node(b, "Mul", (const char *[]){x, t3}, 2, t4);
    kiln_onnx_node(b, "Mul", (const char *[]){t4, c_h}, 2, out);
    return KILN_OK;
}

/* The pre-activation value's name when act follows, else out itself. */
static const char *pre_act(kiln_onnx_builder *b, kiln_act act, const char *out) {
    return act == KILN_ACT_NONE ? out : kiln_onnx_str(b, "%s/preact", out);
}

static kiln_status emit_dense(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const kiln_dense_attr *a = KILN_ATTR(n, kiln_dense_attr);
    const char *x = kiln_onnx_input(b, n, 0), *w = kiln_onnx_input(b, n, 1),
               *bias = n->n_in > 2 ? kiln_onnx_input(b, n, 2) : NULL, *z = pre_act(b, a->act, out);
    if (!x || !w || (n->n_in > 2 && !bias) || !z) return KILN_OK;
    if (n->in[0]->shape.ndim == 2) {
        const char *in[3] = {x, w, bias};
        kiln_onnx_node(b, "Gemm", in, bias ? 3 : 2, z);
    } else if (!bias) {
        kiln_onnx_node(b, "MatMul", (const char *[]){x, w}, 2, z);
    } else {
        const char *xw = kiln_onnx_str(b, "%s/matmul", out);
        if (!xw) return KILN_OK;
        kiln_onnx_node(b, "MatMul", (const char *[]){x, w}, 2, xw);
        kiln_onnx_node(b, "Add", (const char *[]){xw, bias}, 2, z);
    }
    return a->act == KILN_ACT_NONE ? KILN_OK : kiln_onnx_act(b, a->act, 0.01f, z, out);
}

/* Convolution of 1 to 3 spatial axes (conv1d/2d/3d, depthwise as group = C) and transposed
 * convolution: Conv / ConvTranspose with the pads kiln's own rule gives (attrs.c), so "same" with
 * an odd total and asymmetric explicit pads are exact. ConvTranspose's output_padding adds cells
 * after the end like kiln's (kiln_deconv_axis returns the pad after less it, ONNX wants it
 * whole); where the pad after comes out negative (transposed "same" with stride > window) the
 * difference moves into output_padding, which ONNX allows but not negative pads. */
static kiln_status emit_conv(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const kiln_conv_attr *a = KILN_ATTR(n, kiln_conv_attr);
    const char *in[3] = {kiln_onnx_input(b, n, 0), kiln_onnx_input(b, n, 1),
                         n->n_in > 2 ? kiln_onnx_input(b, n, 2) : NULL};
    const char *z = pre_act(b, a->act, out);
    if (!in[0] || !in[1] || (n->n_in > 2 && !in[2]) || !z) return KILN_OK;
    Onnx__NodeProto *c =
        kiln_onnx_node(b, a->transpose ? "ConvTranspose" : "Conv", in, n->n_in > 2 ? 3 : 2, z);
    if (!c) return KILN_OK;
    int nd = kiln_attr_nd(a->nd);
    int64_t k[3], s[3], d[3], pads[6], op[3];
    for (int i = 0; i < nd; i++) {
        int pe = a->asym ? a->pad_end[i] : a->pad[i];
        int64_t in_i = n->in[0]->shape.dims[2 + i];
        k[i] = a->kernel[i], s[i] = a->stride[i], d[i] = a->dilation[i], op[i] = 0;
        if (a->transpose) {
            kiln_deconv_axis(in_i, a->kernel[i], a->stride[i], a->dilation[i], a->padding,
                             a->pad[i], pe, a->output_padding[i], &pads[i], &pads[nd + i]);
            op[i] = a->output_padding[i];
            pads[nd + i] += op[i];
            if (pads[nd + i] < 0) op[i] -= pads[nd + i], pads[nd + i] = 0;
        } else {
            kiln_conv_axis(in_i, a->kernel[i], a->stride[i], a->dilation[i], a->padding, a->pad[i],
                           pe, 0, &pads[i], &pads[nd + i]);
        }
    }
    kiln_onnx_attr_ints(b, c, "kernel_shape", nd, k);
    kiln_onnx_attr_ints(b, c, "strides", nd, s);
    kiln_onnx_attr_ints(b, c, "dilations", nd, d);
    kiln_onnx_attr_ints(b, c, "pads", 2 * nd, pads);
    if (a->transpose) kiln_onnx_attr_ints(b, c, "output_padding", nd, op);
    kiln_onnx_attr_int(b, c, "group", a->groups);
    return a->act == KILN_ACT_NONE ? KILN_OK : kiln_onnx_act(b, a->act, 0.01f, z, out);
}

/* Pools of 1 to 3 axes with the pads kiln_conv_axis gives. ceil_mode is written as the pads it
 * amounts to: kiln's (PyTorch's) rule grows the pad after so the last window fits and never
 * starts in it, and padded cells count for neither max nor average (count_include_pad 0), so
 * those pads with ceil_mode 0 give kiln's windows exactly, whichever rounding rule a runtime
 * applies to ceil_mode 1. Every pad stays below the window (ONNX Runtime checks it). */
static kiln_status emit_pool(kiln_onnx_builder *b, const kiln_node *n, const char *out,
                             const char *op_type) {
    const kiln_pool_attr *a = KILN_ATTR(n, kiln_pool_attr);
    const char *x = kiln_onnx_input(b, n, 0);
    Onnx__NodeProto *p = x ? kiln_onnx_node(b, op_type, &x, 1, out) : NULL;
    if (!p) return KILN_OK;
    int nd = kiln_attr_nd(a->nd);
    int64_t k[3], s[3], pads[6];
    for (int i = 0; i < nd; i++) {
        int ex = a->padding == KILN_PAD_EXPLICIT;
        k[i] = a->size[i], s[i] = a->stride[i];
        kiln_conv_axis(n->in[0]->shape.dims[2 + i], a->size[i], a->stride[i], 1, a->padding,
                       ex ? a->pad[i] : 0, ex ? (a->asym ? a->pad_end[i] : a->pad[i]) : 0,
                       a->ceil_mode, &pads[i], &pads[nd + i]);
    }
    kiln_onnx_attr_ints(b, p, "kernel_shape", nd, k);
    kiln_onnx_attr_ints(b, p, "strides", nd, s);
    kiln_onnx_attr_ints(b, p, "pads", 2 * nd, pads);
    return KILN_OK;
}

static kiln_status emit_maxpool(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    return emit_pool(b, n, out, "MaxPool");
}

static kiln_status emit_avgpool(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    return emit_pool(b, n, out, "AveragePool");
}

/* [B, C, spatial...] -> op_type -> [B, C, 1, ...] -> Flatten(axis 1) -> [B, C]. */
static kiln_status emit_global(kiln_onnx_builder *b, const kiln_node *n, const char *out,
                               const char *op_type) {
    const char *x = kiln_onnx_input(b, n, 0), *t = kiln_onnx_str(b, "%s/pooled", out);
    if (!x || !t) return KILN_OK;
    kiln_onnx_node(b, op_type, &x, 1, t);
    Onnx__NodeProto *f = kiln_onnx_node(b, "Flatten", &t, 1, out);
    if (f) kiln_onnx_attr_int(b, f, "axis", 1);
    return KILN_OK;
}

static kiln_status emit_global_avgpool(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    return emit_global(b, n, out, "GlobalAveragePool");
}

static kiln_status emit_global_maxpool(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    return emit_global(b, n, out, "GlobalMaxPool");
}

/* A [C] constant of v named after n ("<node>.ones"): gamma or beta a layer was built without. */
static const char *fill(kiln_onnx_builder *b, const kiln_node *n, int64_t c, float v,
                        const char *what) {
    float *vals = kiln_onnx_alloc(b, (size_t)c * sizeof *vals);
    const char *name = kiln_onnx_str(b, "%s.%s", n->name, what);
    if (!vals || !name) return NULL;
    for (int64_t i = 0; i < c; i++) vals[i] = v;
    return kiln_onnx_const_f(b, name, 1, &c, vals);
}

static kiln_status emit_batchnorm(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const kiln_batchnorm_attr *a = KILN_ATTR(n, kiln_batchnorm_attr);
    int64_t c = n->in[0]->shape.dims[1];
    int i = 1;
    const char *in[5];
    in[0] = kiln_onnx_input(b, n, 0);
    in[1] = a->no_scale ? fill(b, n, c, 1.0f, "gamma") : kiln_onnx_input(b, n, i++);
    in[2] = a->no_center ? fill(b, n, c, 0.0f, "beta") : kiln_onnx_input(b, n, i++);
    in[3] = kiln_onnx_input(b, n, n->n_in - 2);
    in[4] = kiln_onnx_input(b, n, n->n_in - 1);
    for (int j = 0; j < 5; j++)
        if (!in[j]) return KILN_OK;
    Onnx__NodeProto *p = kiln_onnx_node(b, "BatchNormalization", in, 5, out);
    if (p) kiln_onnx_attr_float(b, p, "epsilon", a->epsilon);
    return KILN_OK;
}

static kiln_status emit_layernorm(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const kiln_layernorm_attr *a = KILN_ATTR(n, kiln_layernorm_attr);
    const kiln_shape *s = &n->in[0]->shape;
    int i = 1;
    const char *in[3];
    in[0] = kiln_onnx_input(b, n, 0);
    in[1] = a->no_scale ? fill(b, n, s->dims[s->ndim - 1], 1.0f, "gamma")
                        : kiln_onnx_input(b, n, i++);
    in[2] = a->no_center ? NULL : kiln_onnx_input(b, n, i++);
    if (!in[0] || !in[1] || (!a->no_center && !in[2])) return KILN_OK;
    Onnx__NodeProto *p = kiln_onnx_node(b, "LayerNormalization", in, a->no_center ? 2 : 3, out);
    if (!p) return KILN_OK;
    kiln_onnx_attr_int(b, p, "axis", -1);
    kiln_onnx_attr_float(b, p, "epsilon", a->epsilon);
    return KILN_OK;
}

static kiln_status emit_reshape(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    int64_t shape[KILN_MAX_DIMS], nd = n->shape.ndim;
    shape[0] = 0; /* the input's batch, whatever it is */
    for (int i = 1; i < nd; i++) shape[i] = n->shape.dims[i];
    const char *x = kiln_onnx_input(b, n, 0), *sname = kiln_onnx_str(b, "%s.shape", n->name);
    const char *s = sname ? kiln_onnx_const_i64(b, sname, 1, &nd, shape) : NULL;
    if (x && s) kiln_onnx_node(b, "Reshape", (const char *[]){x, s}, 2, out);
    return KILN_OK;
}

static kiln_status emit_add(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const char *in[2] = {kiln_onnx_input(b, n, 0), kiln_onnx_input(b, n, 1)};
    if (in[0] && in[1]) kiln_onnx_node(b, "Add", in, 2, out);
    return KILN_OK;
}

static kiln_status emit_multiply(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const char *in[2] = {kiln_onnx_input(b, n, 0), kiln_onnx_input(b, n, 1)};
    if (in[0] && in[1]) kiln_onnx_node(b, "Mul", in, 2, out);
    return KILN_OK;
}

/* Clip(x, min, max) with each finite bound a scalar initializer; an infinite one is left out
 * (an omitted optional input), as kiln's attribute holds -inf / +inf for an absent bound. */
static kiln_status emit_clip(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const kiln_clip_attr *a = KILN_ATTR(n, kiln_clip_attr);
    const char *in[3] = {kiln_onnx_input(b, n, 0), "", ""};
    int n_in = 1;
    if (a->min != -INFINITY) {
        const char *name = kiln_onnx_str(b, "%s.min", n->name);
        in[1] = name ? kiln_onnx_const_f(b, name, 0, NULL, &a->min) : NULL;
        n_in = 2;
    }
    if (a->max != INFINITY) {
        const char *name = kiln_onnx_str(b, "%s.max", n->name);
        in[2] = name ? kiln_onnx_const_f(b, name, 0, NULL, &a->max) : NULL;
        n_in = 3;
    }
    if (in[0] && in[1] && in[2]) kiln_onnx_node(b, "Clip", in, n_in, out);
    return KILN_OK;
}

/* Resize by the integer factors (scales [1, 1, f...]). Nearest: kiln takes input cell o / f,
 * which is Resize's asymmetric coordinates (o / f) rounded by floor. Linear: half-pixel
 * centres clamped at 0 (kiln, PyTorch align_corners=False), Resize's half_pixel. */
static kiln_status emit_upsample(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const kiln_upsample_attr *a = KILN_ATTR(n, kiln_upsample_attr);
    float scales[5] = {1, 1, 1, 1, 1};
    int64_t len = a->nsp + 2;
    for (int i = 0; i < a->nsp; i++) scales[2 + i] = (float)a->size[i];
    const char *sname = kiln_onnx_str(b, "%s.scales", n->name);
    const char *in[3] = {kiln_onnx_input(b, n, 0), "",
                         sname ? kiln_onnx_const_f(b, sname, 1, &len, scales) : NULL};
    Onnx__NodeProto *p = in[0] && in[2] ? kiln_onnx_node(b, "Resize", in, 3, out) : NULL;
    if (!p) return KILN_OK;
    int linear = a->mode == KILN_UPSAMPLE_LINEAR;
    kiln_onnx_attr_str(b, p, "mode", linear ? "linear" : "nearest");
    kiln_onnx_attr_str(b, p, "coordinate_transformation_mode",
                       linear ? "half_pixel" : "asymmetric");
    if (!linear) kiln_onnx_attr_str(b, p, "nearest_mode", "floor");
    return KILN_OK;
}

static kiln_status emit_concat(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const char **in = kiln_onnx_alloc(b, (size_t)n->n_in * sizeof *in);
    if (!in) return KILN_OK;
    for (int i = 0; i < n->n_in; i++)
        if (!(in[i] = kiln_onnx_input(b, n, i))) return KILN_OK;
    Onnx__NodeProto *p = kiln_onnx_node(b, "Concat", in, n->n_in, out);
    if (p) kiln_onnx_attr_int(b, p, "axis", KILN_ATTR(n, kiln_concat_attr)->axis);
    return KILN_OK;
}

static kiln_status emit_activation(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const kiln_activation_attr *a = KILN_ATTR(n, kiln_activation_attr);
    const char *x = kiln_onnx_input(b, n, 0);
    return x ? kiln_onnx_act(b, a->act, a->alpha, x, out) : KILN_OK;
}

static kiln_status emit_softmax(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const char *x = kiln_onnx_input(b, n, 0);
    Onnx__NodeProto *p = x ? kiln_onnx_node(b, "Softmax", &x, 1, out) : NULL;
    if (p) kiln_onnx_attr_int(b, p, "axis", -1);
    return KILN_OK;
}

static kiln_status emit_embedding(kiln_onnx_builder *b, const kiln_node *n, const char *out) {
    const char *in[2] = {kiln_onnx_input(b, n, 1), kiln_onnx_input(b, n, 0)}; /* table, ids */
    Onnx__NodeProto *p = in[0] && in[1] ? kiln_onnx_node(b, "Gather", in, 2, out) : NULL;
    if (p) kiln_onnx_attr_int(b, p, "axis", 0);
    return KILN_OK;
}

/* By kiln_op.name (src/backend/cpu/). New ops: one line each. */
static const kiln_onnx_op table[] = {
    {"dense", emit_dense, 0},
    {"conv1d", emit_conv, 0},
    {"conv2d", emit_conv, 0},
    {"conv3d", emit_conv, 0},
    {"conv2d_transpose", emit_conv, 0},
    {"max_pooling1d", emit_maxpool, 0},
    {"max_pooling2d", emit_maxpool, 0},
    {"max_pooling3d", emit_maxpool, 0},
    {"average_pooling1d", emit_avgpool, 0},
    {"average_pooling2d", emit_avgpool, 0},
    {"average_pooling3d", emit_avgpool, 0},
    {"global_average_pooling2d", emit_global_avgpool, 0},
    {"global_average_pooling", emit_global_avgpool, 0},
    {"global_max_pooling", emit_global_maxpool, 0},
    {"batchnorm", emit_batchnorm, 0},
    {"layernorm", emit_layernorm, 0},
    {"dropout", NULL, 1},
    {"reshape", emit_reshape, 0},
    {"add", emit_add, 0},
    {"multiply", emit_multiply, 0},
    {"clip", emit_clip, 0},
    {"upsampling", emit_upsample, 0},
    {"concat", emit_concat, 0},
    {"activation", emit_activation, 0},
    {"softmax", emit_softmax, 0},
    {"embedding", emit_embedding, 0},
};

const kiln_onnx_op *kiln_onnx_find_op(const char *op_name) {
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (!strcmp(table[i].op, op_name)) return &table[i];
    return NULL;
}

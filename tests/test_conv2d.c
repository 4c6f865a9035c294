/* test_conv2d.c — conv2d forward against a direct convolution in double (batch 1 and 3, odd
 * sizes, kernels 1/3/5/3x2, strides, dilation, valid/same/explicit padding including TF's
 * asymmetric "same", groups and depthwise, every fused activation, with and without bias, in
 * inference and training plans); backward against finite differences for a subset; gradient
 * accumulation (one input into two convs; one kernel and bias shared by two convs); a frozen
 * kernel beside a trainable bias; default initializers; and shape and option errors. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "backend/ops.h"
#include "backend/attrs.h"

typedef struct {
    int B, C, H, W, F;
    int kh, kw, sh, sw, dh, dw;
    kiln_padding pad;
    int ph, pw; /* explicit pads */
    int groups;
    kiln_act act;
    int no_bias;
} conv_case;

/* The padding rule, restated from its definition (TF's for same): output size and pad before. */
static int out_size(int in, int k, int s, int d, kiln_padding pad, int p, int *before) {
    int eff = (k - 1) * d + 1;
    if (pad == KILN_PAD_SAME) {
        int out = (in + s - 1) / s, total = (out - 1) * s + eff - in;
        *before = total > 0 ? total / 2 : 0;
        return out;
    }
    *before = pad == KILN_PAD_EXPLICIT ? p : 0;
    return (in + 2 * *before - eff) / s + 1;
}

static double act_ref(kiln_act act, double z) {
    switch (act) {
    case KILN_ACT_RELU:
        return z > 0 ? z : 0;
    case KILN_ACT_LEAKY_RELU:
        return z > 0 ? z : 0.01 * z;
    case KILN_ACT_SIGMOID:
        return 1 / (1 + exp(-z));
    case KILN_ACT_TANH:
        return tanh(z);
    case KILN_ACT_GELU:
        return 0.5 * z * (1 + erf(z / sqrt(2.0)));
    case KILN_ACT_RELU6:
        return fmin(fmax(z, 0), 6);
    case KILN_ACT_HARD_SIGMOID:
        return fmin(fmax(z + 3, 0), 6) / 6;
    case KILN_ACT_HARD_SWISH:
        return z * fmin(fmax(z + 3, 0), 6) / 6;
    default:
        return z;
    }
}

/* y [B, F, OH, OW] = act(conv(x [B, C, H, W], w [F, C/G, kh, kw]) + b [F]), direct, in double. */
static void ref_conv(const conv_case *k, const float *x, const float *w, const float *b, float *y,
                     int OH, int OW, int pt, int pl) {
    int cg = k->C / k->groups, fg = k->F / k->groups;
    for (int n = 0; n < k->B; n++)
        for (int f = 0; f < k->F; f++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    double z = b ? b[f] : 0;
                    for (int c = 0; c < cg; c++) {
                        int ic = f / fg * cg + c;
                        for (int ky = 0; ky < k->kh; ky++)
                            for (int kx = 0; kx < k->kw; kx++) {
                                int iy = oy * k->sh - pt + ky * k->dh,
                                    ix = ox * k->sw - pl + kx * k->dw;
                                if (iy < 0 || iy >= k->H || ix < 0 || ix >= k->W) continue;
                                z += (double)x[((n * k->C + ic) * k->H + iy) * k->W + ix] *
                                     w[((f * cg + c) * k->kh + ky) * k->kw + kx];
                            }
                    }
                    y[((n * k->F + f) * OH + oy) * OW + ox] = (float)act_ref(k->act, z);
                }
}

/* Builds conv2d over x (a trainable parameter when grad, else an input of an inference plan),
 * checks shape and values against ref_conv, and with grad the gradients of x, kernel and bias. */
static void check_conv(conv_case k, int grad) {
    if (!k.sh) k.sh = 1;
    if (!k.sw) k.sw = 1;
    if (!k.dh) k.dh = 1;
    if (!k.dw) k.dw = 1;
    if (!k.groups) k.groups = 1;
    char what[256];
    snprintf(
        what, sizeof what,
        "B%d C%d %dx%d F%d k%dx%d s%dx%d d%dx%d pad %d (%d,%d) groups %d act %s bias %d grad %d",
        k.B, k.C, k.H, k.W, k.F, k.kh, k.kw, k.sh, k.sw, k.dh, k.dw, (int)k.pad, k.ph, k.pw,
        k.groups, kiln_act_name(k.act), !k.no_bias, grad);
    kiln_graph *g = kiln_graph_new(7);
    int64_t xd[4] = {k.B, k.C, k.H, k.W};
    kiln_node *x = grad ? kiln_param(g, "x", 4, xd, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1)
                        : kiln_input(g, "x", KILN_F32, 3, xd + 1);
    kiln_conv2d_opts o = {.filters = k.F,
                          .kernel = {k.kh, k.kw},
                          .stride = {k.sh, k.sw},
                          .dilation = {k.dh, k.dw},
                          .padding = k.pad,
                          .pad = {k.ph, k.pw},
                          .groups = k.groups,
                          .act = k.act,
                          .no_bias = k.no_bias,
                          .bias_init = {KILN_INIT_GLOROT_UNIFORM}};
    kiln_node *y = kiln_conv2d_ex(g, x, &o);
    CHECK_MSG(y != NULL, "%s: %s", what, kiln_last_error());
    if (!y) return kiln_graph_free(g);
    CHECK(strcmp(kiln_node_name(y), "conv2d_1") == 0);
    kiln_plan *p = kiln_plan_new(
        g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = grad ? y : NULL, .batch = k.B});
    CHECK_MSG(p != NULL, "%s: %s", what, kiln_last_error());
    if (!p) return kiln_graph_free(g);
    if (!grad) kiln_test_fill(kiln_plan_data(p, x), (size_t)k.B * k.C * k.H * k.W, -1.5f, 1.5f, 5);
    CHECK_OK(kiln_plan_forward(p));

    int pt, pl, OH = out_size(k.H, k.kh, k.sh, k.dh, k.pad, k.ph, &pt),
                OW = out_size(k.W, k.kw, k.sw, k.dw, k.pad, k.pw, &pl);
    kiln_shape ys = kiln_plan_shape(p, y);
    CHECK_MSG(ys.ndim == 4 && ys.dims[0] == k.B && ys.dims[1] == k.F && ys.dims[2] == OH &&
                  ys.dims[3] == OW,
              "%s: shape %lld %lld %lld %lld, want %d %d %d %d", what, (long long)ys.dims[0],
              (long long)ys.dims[1], (long long)ys.dims[2], (long long)ys.dims[3], k.B, k.F, OH,
              OW);
    kiln_node *wn = kiln_graph_find(g, "conv2d_1.kernel"),
              *bn = kiln_graph_find(g, "conv2d_1.bias");
    kiln_shape ws = kiln_node_shape(wn);
    CHECK(ws.ndim == 4 && ws.dims[0] == k.F && ws.dims[1] == k.C / k.groups && ws.dims[2] == k.kh &&
          ws.dims[3] == k.kw);
    CHECK((bn == NULL) == (k.no_bias != 0));
    size_t ny = (size_t)k.B * k.F * OH * OW;
    float *ref = malloc(ny * sizeof *ref);
    ref_conv(&k, kiln_plan_data(p, x), kiln_plan_data(p, wn), bn ? kiln_plan_data(p, bn) : NULL,
             ref, OH, OW, pt, pl);
    size_t wi = 0;
    double r = kiln_test_compare(kiln_plan_data(p, y), ref, ny, 1e-5, 1e-4, &wi);
    CHECK_MSG(r <= 1, "%s: worst at %zu: %g vs %g (ratio %g)", what, wi,
              (double)((float *)kiln_plan_data(p, y))[wi], (double)ref[wi], r);
    if (grad) CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 40) == 0, "%s", what);
    free(ref);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_conv_forward_shapes(void) {
    conv_case cases[] = {
        {1, 3, 7, 5, 4, 3, 3, .pad = KILN_PAD_SAME, .act = KILN_ACT_RELU},
        {3, 2, 7, 5, 3, 1, 1, .pad = KILN_PAD_VALID},
        {1, 3, 9, 8, 2, 5, 5, 2, 2, .pad = KILN_PAD_SAME, .act = KILN_ACT_TANH},
        {3, 4, 7, 5, 4, 3, 2, 2, 1, .pad = KILN_PAD_VALID, .act = KILN_ACT_SIGMOID},
        {1, 2, 9, 7, 3, 3, 3, 1, 1, 2, 2, .pad = KILN_PAD_SAME, .act = KILN_ACT_LEAKY_RELU},
        {3, 2, 7, 5, 3, 3, 3, 2, 2, .pad = KILN_PAD_EXPLICIT, .ph = 1, .pw = 2,
         .act = KILN_ACT_GELU},
        /* same with asymmetric pads (one more after): k 2 s 1; k 3 s 2 on 6; k 2 s 2 on 7 */
        {1, 1, 6, 6, 2, 2, 2, .pad = KILN_PAD_SAME},
        {3, 2, 6, 7, 3, 3, 3, 2, 2, .pad = KILN_PAD_SAME, .act = KILN_ACT_RELU},
        {1, 3, 7, 6, 2, 2, 2, 2, 2, .pad = KILN_PAD_SAME},
        /* groups 2, depthwise (groups = C) with and without a depth multiplier */
        {3, 4, 7, 5, 6, 3, 3, .pad = KILN_PAD_SAME, .groups = 2, .act = KILN_ACT_RELU},
        {1, 3, 7, 5, 3, 3, 3, 2, 2, .pad = KILN_PAD_SAME, .groups = 3},
        {3, 3, 5, 7, 6, 3, 2, 1, 2, .pad = KILN_PAD_VALID, .groups = 3, .act = KILN_ACT_TANH},
        /* dilation 2 with valid padding and stride; no bias */
        {1, 2, 9, 9, 2, 3, 3, 2, 1, 2, 2, .pad = KILN_PAD_VALID, .no_bias = 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_conv(cases[i], 0);
    for (int a = 0; a < KILN_ACT_COUNT; a++)
        check_conv((conv_case){3, 3, 7, 5, 4, 3, 3, .pad = KILN_PAD_SAME, .act = (kiln_act)a}, 0);
}

static void test_conv_gradients(void) {
    conv_case cases[] = {
        {1, 3, 7, 5, 4, 3, 3, .pad = KILN_PAD_SAME, .act = KILN_ACT_RELU},
        {3, 2, 7, 5, 3, 3, 2, 2, 1, .pad = KILN_PAD_VALID, .act = KILN_ACT_SIGMOID},
        {1, 2, 9, 7, 3, 3, 3, 1, 1, 2, 2, .pad = KILN_PAD_SAME, .act = KILN_ACT_TANH},
        {3, 2, 7, 5, 3, 3, 3, 2, 2, .pad = KILN_PAD_EXPLICIT, .ph = 1, .pw = 2,
         .act = KILN_ACT_GELU},
        {1, 2, 6, 7, 3, 3, 3, 2, 2, .pad = KILN_PAD_SAME, .act = KILN_ACT_LEAKY_RELU},
        {1, 4, 7, 5, 6, 3, 3, .pad = KILN_PAD_SAME, .groups = 2, .act = KILN_ACT_GELU},
        {3, 3, 6, 5, 3, 2, 2, 2, 2, .pad = KILN_PAD_SAME, .groups = 3},
        {1, 3, 5, 5, 2, 1, 1, .pad = KILN_PAD_VALID, .no_bias = 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_conv(cases[i], 1);
}

/* One tensor into two convs (dx accumulates), the sum through a third conv. */
static void test_conv_accumulate_input(void) {
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *x = kiln_param(g, "x", 4, (int64_t[]){2, 3, 6, 5},
                              (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
    kiln_node *a = kiln_conv2d(g, x, 4, 3, 1, KILN_PAD_SAME, KILN_ACT_TANH);
    kiln_node *b = kiln_conv2d_ex(g, x,
                                  &(kiln_conv2d_opts){.filters = 4,
                                                      .kernel = {1, 1},
                                                      .bias_init = {KILN_INIT_CONSTANT, 0.2f}});
    kiln_node *y = kiln_conv2d(g, kiln_add(g, a, b), 2, 3, 2, KILN_PAD_SAME, KILN_ACT_NONE);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (!y) return kiln_graph_free(g);
    CHECK(strcmp(kiln_node_name(y), "conv2d_3") == 0);
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (p) CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 60) == 0);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

/* One kernel and bias shared by two conv nodes (dW and db accumulate), as a siamese net would
 * wire it through the op table. */
static void test_conv_shared_weights(void) {
    kiln_graph *g = kiln_graph_new(5);
    kiln_init gu = {KILN_INIT_GLOROT_UNIFORM};
    kiln_node *x1 = kiln_param(g, "x1", 4, (int64_t[]){1, 2, 5, 6}, gu, 1, 1, 1);
    kiln_node *x2 = kiln_param(g, "x2", 4, (int64_t[]){1, 2, 5, 6}, gu, 1, 1, 1);
    kiln_node *w = kiln_param(g, "w", 4, (int64_t[]){3, 2, 3, 3}, gu, 1, 0, 0);
    kiln_node *b = kiln_param(g, "b", 1, (int64_t[]){3}, gu, 1, 0, 0);
    kiln_conv2d_attr at = {.filters = 3,
                           .kernel = {3, 3},
                           .stride = {1, 2},
                           .dilation = {1, 1},
                           .padding = KILN_PAD_SAME,
                           .groups = 1,
                           .act = KILN_ACT_SIGMOID};
    kiln_node *in1[3] = {x1, w, b}, *in2[3] = {x2, w, b};
    kiln_node *y1 = kiln_graph_add_op(g, &kiln_op_conv2d, in1, 3, &at, sizeof at, NULL);
    kiln_node *y2 = kiln_graph_add_op(g, &kiln_op_conv2d, in2, 3, &at, sizeof at, "twin");
    kiln_node *y = kiln_add(g, y1, y2);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (!y) return kiln_graph_free(g);
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (p) CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 80) == 0);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

/* Data input (no dx), frozen kernel (dW computed but dropped), trainable bias. */
static void test_conv_frozen_kernel(void) {
    kiln_graph *g = kiln_graph_new(9);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 3, (int64_t[]){2, 5, 5});
    kiln_node *w = kiln_param(g, "w", 4, (int64_t[]){4, 1, 3, 3},
                              (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 0, 0, 0);
    kiln_node *b =
        kiln_param(g, "b", 1, (int64_t[]){4}, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 0, 0);
    kiln_conv2d_attr at = {.filters = 4,
                           .kernel = {3, 3},
                           .stride = {1, 1},
                           .dilation = {1, 1},
                           .padding = KILN_PAD_VALID,
                           .groups = 2,
                           .act = KILN_ACT_TANH};
    kiln_node *in[3] = {x, w, b};
    kiln_node *y = kiln_graph_add_op(g, &kiln_op_conv2d, in, 3, &at, sizeof at, NULL);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (!y) return kiln_graph_free(g);
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 3});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (p) {
        CHECK(kiln_plan_grad(p, x) == NULL && kiln_plan_grad(p, w) == NULL);
        kiln_test_fill(kiln_plan_data(p, x), 3 * 2 * 5 * 5, -1, 1, 3);
        CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 60) == 0);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

/* glorot_uniform with Keras's fans (C/G*kh*kw in, F*kh*kw out) and zero bias by default. */
static void test_conv_default_init(void) {
    kiln_graph *g = kiln_graph_new(11);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 3, (int64_t[]){8, 9, 9});
    kiln_node *y =
        kiln_conv2d_ex(g, x, &(kiln_conv2d_opts){.filters = 16, .kernel = {3, 3}, .groups = 2});
    CHECK(y != NULL);
    CHECK_OK(kiln_graph_init_params(g));
    const kiln_param_info *wk = kiln_graph_param_info(g, 0), *bi = kiln_graph_param_info(g, 1);
    CHECK(wk && strcmp(wk->name, "conv2d_1.kernel") == 0 && wk->numel == 16 * 4 * 9);
    CHECK(bi && strcmp(bi->name, "conv2d_1.bias") == 0 && bi->numel == 16);
    if (!wk || !bi) return kiln_graph_free(g);
    const float *w = kiln_graph_params(g) + wk->offset, *b = kiln_graph_params(g) + bi->offset;
    double limit = sqrt(6.0 / (4 * 9 + 16 * 9)), most = 0, bmax = 0;
    for (size_t i = 0; i < wk->numel; i++) most = fmax(most, fabs(w[i]));
    for (size_t i = 0; i < bi->numel; i++) bmax = fmax(bmax, fabs(b[i]));
    CHECK_MSG(most <= limit && most > 0.9 * limit, "max |w| %g, limit %g", most, limit);
    CHECK(bmax == 0);
    kiln_graph_free(g);
}

static void test_conv_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *seq = kiln_input(g, "seq", KILN_F32, 2, (int64_t[]){3, 4});
    CHECK(kiln_conv2d(g, seq, 4, 3, 1, KILN_PAD_SAME, KILN_ACT_NONE) == NULL);
    CHECK_ERR_HAS("conv2d_1");
    CHECK_ERR_HAS("seq has shape [1, 3, 4]");

    kiln_node *img = kiln_input(g, "img", KILN_F32, 3, (int64_t[]){3, 8, 8});
    kiln_conv2d_opts o = {.filters = 4, .kernel = {3, 3}, .groups = 2, .name = "grouped"};
    CHECK(kiln_conv2d_ex(g, img, &o) == NULL);
    CHECK_ERR_HAS("grouped (conv2d)");
    CHECK_ERR_HAS("img [1, 3, 8, 8] has 3 channels");
    CHECK_ERR_HAS("groups = 2");
    kiln_node *img4 = kiln_input(g, "img4", KILN_F32, 3, (int64_t[]){4, 8, 8});
    o.filters = 3;
    CHECK(kiln_conv2d_ex(g, img4, &o) == NULL);
    CHECK_ERR_HAS("3 filters");

    kiln_node *small = kiln_input(g, "small", KILN_F32, 3, (int64_t[]){2, 3, 3});
    CHECK(kiln_conv2d(g, small, 4, 5, 1, KILN_PAD_VALID, KILN_ACT_NONE) == NULL);
    CHECK_ERR_HAS(
        "kernel 5x5 (dilation 1x1) is larger than input small [1, 2, 3, 3] with valid padding");
    /* dilation 2 makes a 3x3 kernel span 5 */
    CHECK(kiln_conv2d_ex(g, small,
                         &(kiln_conv2d_opts){.filters = 1, .kernel = {3, 3}, .dilation = {2, 2}}) ==
          NULL);
    CHECK_ERR_HAS("dilation 2x2");
    CHECK(kiln_conv2d_ex(g, small,
                         &(kiln_conv2d_opts){.filters = 1, .kernel = {3, 3}, .stride = {-1, 1}}) ==
          NULL);
    CHECK_ERR_HAS("stride -1x1");
    CHECK(kiln_conv2d(g, small, 0, 3, 1, KILN_PAD_SAME, KILN_ACT_NONE) == NULL);
    CHECK_ERR_HAS("filters 0");
    /* None of the failures above left parameters behind. */
    CHECK(kiln_graph_param_count(g) == 0);
    /* "same" needs no room: a 5x5 kernel over 3x3 works. */
    kiln_node *ok = kiln_conv2d(g, small, 4, 5, 1, KILN_PAD_SAME, KILN_ACT_NONE);
    CHECK_MSG(ok != NULL, "%s", kiln_last_error());

    /* Shape inference on a node made directly: a kernel that does not match the input. */
    kiln_node *w =
        kiln_param(g, "w", 4, (int64_t[]){4, 3, 3, 3}, (kiln_init){KILN_INIT_ZEROS}, 1, 0, 0);
    kiln_conv2d_attr at = {
        .filters = 4, .kernel = {3, 3}, .stride = {1, 1}, .dilation = {1, 1}, .groups = 1};
    kiln_node *in[2] = {small, w};
    CHECK(kiln_graph_add_op(g, &kiln_op_conv2d, in, 2, &at, sizeof at, "direct") == NULL);
    CHECK_ERR_HAS("direct (conv2d) got small=[1, 2, 3, 3], w=[4, 3, 3, 3]");
    CHECK_ERR_HAS("need kernel [4, 2, 3, 3]");
    in[0] = seq;
    CHECK(kiln_graph_add_op(g, &kiln_op_conv2d, in, 2, &at, sizeof at, "direct") == NULL);
    CHECK_ERR_HAS("seq=[1, 3, 4]");

    /* A NULL input propagates without replacing the first message. */
    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_conv2d(g, NULL, 4, 3, 1, KILN_PAD_SAME, KILN_ACT_NONE) == NULL);
    CHECK_ERR_HAS("first failure");
    kiln_graph_free(g);
}

static void test_conv_out_size(void) {
    int64_t b, a;
    CHECK(kiln_conv_out_size(6, 2, 1, 1, KILN_PAD_SAME, 0, &b, &a) == 6 && b == 0 && a == 1);
    CHECK(kiln_conv_out_size(6, 3, 2, 1, KILN_PAD_SAME, 0, &b, &a) == 3 && b == 0 && a == 1);
    CHECK(kiln_conv_out_size(7, 3, 2, 1, KILN_PAD_SAME, 0, &b, &a) == 4 && b == 1 && a == 1);
    CHECK(kiln_conv_out_size(5, 1, 3, 1, KILN_PAD_SAME, 0, &b, &a) == 2 && b == 0 && a == 0);
    CHECK(kiln_conv_out_size(9, 3, 1, 2, KILN_PAD_SAME, 0, &b, &a) == 9 && b == 2 && a == 2);
    CHECK(kiln_conv_out_size(7, 3, 2, 1, KILN_PAD_VALID, 0, &b, &a) == 3 && b == 0 && a == 0);
    CHECK(kiln_conv_out_size(2, 3, 2, 1, KILN_PAD_VALID, 0, &b, &a) < 1);
    CHECK(kiln_conv_out_size(5, 3, 2, 1, KILN_PAD_EXPLICIT, 1, &b, &a) == 3 && b == 1 && a == 1);
    CHECK(kiln_conv_out_size(5, 3, 0, 1, KILN_PAD_VALID, 0, &b, &a) < 1);
}

/* A conv -> pool -> conv -> pool -> dense stack, as in the Fashion-MNIST CNN: the values
 * between the convs and pools stay in oneDNN's blocked layout (reorders only at the edges), the
 * results equal an all-plain plan's, and the gradients through the blocked values are right. */
static kiln_graph *cnn(kiln_node **x, kiln_node **y, int c_in, int c1, int c2, kiln_act act) {
    kiln_graph *g = kiln_graph_new(11);
    *x = kiln_param(g, "x", 4, (int64_t[]){2, c_in, 9, 9}, (kiln_init){KILN_INIT_HE_UNIFORM}, 1, 0, 0);
    kiln_node *h = kiln_conv2d(g, *x, c1, 3, 1, KILN_PAD_SAME, act);
    h = kiln_maxpool2d_ex(g, h, &(kiln_pool2d_opts){.size = {2, 2}, .padding = KILN_PAD_SAME});
    h = kiln_conv2d(g, h, c2, 3, 1, KILN_PAD_SAME, KILN_ACT_TANH);
    h = kiln_avgpool2d(g, h, 2);
    h = kiln_flatten(g, h);
    *y = kiln_dense(g, h, 3, KILN_ACT_NONE);
    return g;
}

static void test_blocked_layouts_between_convs(void) {
    int chans[][3] = {{1, 8, 16}, {3, 16, 8}, {2, 5, 7}}; /* 5 and 7 channels: padded blocks */
    kiln_act acts[] = {KILN_ACT_TANH, KILN_ACT_GELU, KILN_ACT_SIGMOID}; /* smooth: max pooling brings kinks enough */
    for (int k = 0; k < 3; k++) {
        kiln_node *x, *y;
        kiln_graph *g = cnn(&x, &y, chans[k][0], chans[k][1], chans[k][2], acts[k]);
        CHECK_MSG(y != NULL, "%s", kiln_last_error());
        if (!y) return kiln_graph_free(g);
        kiln_plan *fast = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1, .training = 1});
        kiln_plan *plain = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .batch = 1, .plain_layouts = 1});
        CHECK(fast && plain);
        if (!fast || !plain) return;
        if (k == 0) { /* what oneDNN picks on AVX2 / AVX-512 for 8 and 16 channels */
            CHECK(kiln_plan_value_is_blocked(fast, kiln_graph_find(g, "conv2d_1")));
            CHECK(kiln_plan_value_is_blocked(fast, kiln_graph_find(g, "max_pooling2d_1")));
            CHECK(kiln_plan_value_is_blocked(fast, kiln_graph_find(g, "conv2d_2")));
            CHECK(!kiln_plan_value_is_blocked(fast, kiln_graph_find(g, "average_pooling2d_1"))); /* flatten reads it */
        }
        CHECK(!kiln_plan_value_is_blocked(plain, kiln_graph_find(g, "conv2d_1")));
        CHECK_OK(kiln_plan_forward(fast));
        CHECK_OK(kiln_plan_forward(plain));
        CHECK(kiln_test_compare(kiln_plan_data(fast, y), kiln_plan_data(plain, y), 6, 1e-5, 1e-4, NULL) <= 1);
        CHECK_MSG(kiln_test_gradcheck(g, fast, y, 1e-3, 1e-3, 3e-3, 30) == 0, "channels %d/%d/%d", chans[k][0],
                  chans[k][1], chans[k][2]);
        kiln_plan_free(fast), kiln_plan_free(plain);
        kiln_graph_free(g);
    }
}

int main(void) {
    RUN(test_conv_out_size);
    RUN(test_blocked_layouts_between_convs);
    RUN(test_conv_forward_shapes);
    RUN(test_conv_gradients);
    RUN(test_conv_accumulate_input);
    RUN(test_conv_shared_weights);
    RUN(test_conv_frozen_kernel);
    RUN(test_conv_default_init);
    RUN(test_conv_errors);
    return kiln_test_summary();
}

/* test_conv_nd.c — the convolution family beyond conv2d: conv1d and conv3d, the transposed
 * conv2d and the depthwise conv2d, and max/avg pooling of 1 and 3 axes, each forward against a
 * direct loop in double (strides, dilation, groups, valid/same/explicit pads including
 * asymmetric ones, output_padding, ceil_mode) and backward against finite differences, the
 * convolutions also in deterministic plans; also the
 * padding rule's new cases and the builders' errors. A 1-D or 2-D case is the 3-D loop with
 * leading extents 1. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "backend/ops.h"
#include "backend/attrs.h"

enum { PLAIN, TRANSPOSE, DEPTHWISE };

typedef struct {
    int nd, kind, B, C, F; /* depthwise: F = depth multiplier */
    int in[3], k[3], s[3], d[3];
    kiln_padding pad;
    int pb[3], pe[3]; /* explicit pads before and after */
    int op[3];        /* output_padding (transposed) */
    int groups;
    kiln_act act;
    int no_bias;
} conv_case;

/* Restated rules: output size of one axis, and the pad before. */
static int conv_out(int in, int k, int s, int d, kiln_padding pad, int pb, int pe, int *before) {
    int eff = (k - 1) * d + 1;
    if (pad == KILN_PAD_SAME) {
        int out = (in + s - 1) / s, total = (out - 1) * s + eff - in;
        *before = total > 0 ? total / 2 : 0;
        return out;
    }
    if (pad == KILN_PAD_VALID) pb = pe = 0;
    *before = pb;
    return (in + pb + pe - eff) / s + 1;
}

static int deconv_out(int in, int k, int s, int d, kiln_padding pad, int pb, int pe, int op,
                      int *before) {
    int eff = (k - 1) * d + 1;
    if (pad == KILN_PAD_SAME) {
        int total = (in - 1) * s + eff + op - in * s;
        *before = total > 0 ? total / 2 : 0;
        return in * s;
    }
    if (pad == KILN_PAD_VALID) pb = pe = 0;
    *before = pb;
    return (in - 1) * s + eff + op - pb - pe;
}

static double act_ref(kiln_act act, double z) {
    switch (act) {
    case KILN_ACT_RELU: return z > 0 ? z : 0;
    case KILN_ACT_TANH: return tanh(z);
    case KILN_ACT_SIGMOID: return 1 / (1 + exp(-z));
    case KILN_ACT_GELU: return 0.5 * z * (1 + erf(z / sqrt(2.0)));
    case KILN_ACT_LEAKY_RELU: return z > 0 ? z : 0.01 * z;
    default: return z;
    }
}

/* Direct loop over 3 axes (missing ones of extent 1): conv (w [F, C/G, k]) or transposed
 * (w [C, F/G, k]: every input cell scatters into the output). */
static void ref_conv(const conv_case *c, int F, int G, const int *I, const int *O, const int *K,
                     const int *S, const int *D, const int *P, const float *x, const float *w,
                     const float *b, float *y) {
    int cg = c->C / G, fg = F / G;
    long ni = (long)I[0] * I[1] * I[2], no = (long)O[0] * O[1] * O[2], nk = (long)K[0] * K[1] * K[2];
    double *z = calloc((size_t)c->B * F * no, sizeof *z);
    for (int n = 0; n < c->B; n++)
        for (int ci = 0; ci < c->C; ci++)
            for (int fl = 0; fl < fg; fl++) {
                int g = ci / cg, f = g * fg + fl;
                const float *wk = c->kind == TRANSPOSE ? w + ((long)ci * fg + fl) * nk
                                                       : w + ((long)f * cg + ci % cg) * nk;
                for (long o = 0; o < (c->kind == TRANSPOSE ? ni : no); o++) {
                    int p[3] = {(int)(o / ((long)(c->kind == TRANSPOSE ? I : O)[1] * (c->kind == TRANSPOSE ? I : O)[2])),
                                (int)(o / (c->kind == TRANSPOSE ? I : O)[2] % (c->kind == TRANSPOSE ? I : O)[1]),
                                (int)(o % (c->kind == TRANSPOSE ? I : O)[2])};
                    for (long kk = 0; kk < nk; kk++) {
                        int kx[3] = {(int)(kk / (K[1] * K[2])), (int)(kk / K[2] % K[1]), (int)(kk % K[2])}, q[3], in = 1;
                        for (int a = 0; a < 3; a++) {
                            q[a] = p[a] * S[a] - P[a] + kx[a] * D[a];
                            in &= q[a] >= 0 && q[a] < (c->kind == TRANSPOSE ? O : I)[a];
                        }
                        if (!in) continue;
                        long qi = ((long)q[0] * (c->kind == TRANSPOSE ? O : I)[1] + q[1]) * (c->kind == TRANSPOSE ? O : I)[2] + q[2];
                        if (c->kind == TRANSPOSE)
                            z[((long)n * F + f) * no + qi] += (double)x[((long)n * c->C + ci) * ni + o] * wk[kk];
                        else
                            z[((long)n * F + f) * no + o] += (double)x[((long)n * c->C + ci) * ni + qi] * wk[kk];
                    }
                }
            }
    for (long i = 0; i < (long)c->B * F * no; i++)
        y[i] = (float)act_ref(c->act, z[i] + (b ? b[i / no % F] : 0));
    free(z);
}

static int det; /* plans in deterministic mode (the split executor, dnnl_util.h) */

static void check_conv(conv_case c, int grad) {
    int nd = c.nd, G = c.kind == DEPTHWISE ? c.C : c.groups ? c.groups : 1;
    int F = c.kind == DEPTHWISE ? c.C * c.F : c.F;
    int I[3] = {1, 1, 1}, O[3] = {1, 1, 1}, K[3] = {1, 1, 1}, S[3] = {1, 1, 1}, D[3] = {1, 1, 1},
        P[3] = {0, 0, 0};
    for (int i = 0; i < nd; i++) {
        int a = 3 - nd + i;
        if (!c.s[i]) c.s[i] = 1;
        if (!c.d[i]) c.d[i] = 1;
        I[a] = c.in[i], K[a] = c.k[i], S[a] = c.s[i], D[a] = c.d[i];
        O[a] = c.kind == TRANSPOSE ? deconv_out(c.in[i], c.k[i], c.s[i], c.d[i], c.pad, c.pb[i], c.pe[i], c.op[i], &P[a])
                                   : conv_out(c.in[i], c.k[i], c.s[i], c.d[i], c.pad, c.pb[i], c.pe[i], &P[a]);
    }
    char what[256];
    snprintf(what, sizeof what, "%dd kind %d B%d C%d F%d in %dx%dx%d k %dx%dx%d s %dx%dx%d pad %d G%d act %s grad %d",
             nd, c.kind, c.B, c.C, F, I[0], I[1], I[2], K[0], K[1], K[2], S[0], S[1], S[2], (int)c.pad, G,
             kiln_act_name(c.act), grad);
    kiln_graph *g = kiln_graph_new(7);
    int64_t xd[5] = {c.B, c.C};
    for (int i = 0; i < nd; i++) xd[2 + i] = c.in[i];
    kiln_node *x = grad ? kiln_param(g, "x", nd + 2, xd, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1)
                        : kiln_input(g, "x", KILN_F32, nd + 1, xd + 1);
    int asym = c.pad == KILN_PAD_EXPLICIT && memcmp(c.pb, c.pe, sizeof c.pb);
    kiln_node *y;
    const char *name;
    if (c.kind == DEPTHWISE) {
        kiln_depthwise_conv2d_opts o = {.kernel = {c.k[0], c.k[1]}, .stride = {c.s[0], c.s[1]},
                                        .dilation = {c.d[0], c.d[1]}, .padding = c.pad,
                                        .pad = {c.pb[0], c.pb[1]}, .pad_end = {c.pe[0], c.pe[1]},
                                        .asymmetric = asym, .depth_multiplier = c.F, .act = c.act,
                                        .no_bias = c.no_bias, .bias_init = {KILN_INIT_GLOROT_UNIFORM}};
        y = kiln_depthwise_conv2d_ex(g, x, &o);
        name = "depthwise_conv2d_1";
    } else {
        kiln_conv_opts o = {.filters = c.F, .padding = c.pad, .asymmetric = asym, .groups = c.groups,
                            .act = c.act, .no_bias = c.no_bias, .bias_init = {KILN_INIT_GLOROT_UNIFORM}};
        memcpy(o.kernel, c.k, sizeof c.k), memcpy(o.stride, c.s, sizeof c.s), memcpy(o.dilation, c.d, sizeof c.d);
        memcpy(o.pad, c.pb, sizeof c.pb), memcpy(o.pad_end, c.pe, sizeof c.pe);
        memcpy(o.output_padding, c.op, sizeof c.op);
        y = c.kind == TRANSPOSE ? kiln_conv2d_transpose_ex(g, x, &o) : nd == 1 ? kiln_conv1d_ex(g, x, &o)
                                                                              : kiln_conv3d_ex(g, x, &o);
        name = c.kind == TRANSPOSE ? "conv2d_transpose_1" : nd == 1 ? "conv1d_1" : "conv3d_1";
    }
    CHECK_MSG(y != NULL, "%s: %s", what, kiln_last_error());
    if (!y) return kiln_graph_free(g);
    CHECK_MSG(strcmp(kiln_node_name(y), name) == 0, "%s: %s", what, kiln_node_name(y));
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = grad ? y : NULL, .batch = c.B,
                                                      .deterministic = det});
    CHECK_MSG(p != NULL, "%s: %s", what, kiln_last_error());
    if (!p) return kiln_graph_free(g);
    long nx = (long)c.B * c.C * I[0] * I[1] * I[2], ny = (long)c.B * F * O[0] * O[1] * O[2];
    if (!grad) kiln_test_fill(kiln_plan_data(p, x), (size_t)nx, -1.5f, 1.5f, 5);
    CHECK_OK(kiln_plan_forward(p));
    kiln_shape ys = kiln_plan_shape(p, y);
    int shape_ok = ys.ndim == nd + 2 && ys.dims[0] == c.B && ys.dims[1] == F;
    for (int i = 0; i < nd; i++) shape_ok &= ys.dims[2 + i] == O[3 - nd + i];
    CHECK_MSG(shape_ok, "%s: output shape [%lld, %lld, %lld, ...]; want spatial %dx%dx%d", what,
              (long long)ys.dims[0], (long long)ys.dims[1], (long long)ys.dims[2], O[0], O[1], O[2]);
    char pn[64];
    snprintf(pn, sizeof pn, "%s.kernel", name);
    kiln_node *wn = kiln_graph_find(g, pn);
    snprintf(pn, sizeof pn, "%s.bias", name);
    kiln_node *bn = kiln_graph_find(g, pn);
    kiln_shape ws = kiln_node_shape(wn);
    CHECK_MSG(ws.ndim == nd + 2 && ws.dims[0] == (c.kind == TRANSPOSE ? c.C : F) &&
                  ws.dims[1] == (c.kind == TRANSPOSE ? F / G : c.C / G),
              "%s: kernel [%lld, %lld, ...]", what, (long long)ws.dims[0], (long long)ws.dims[1]);
    if (shape_ok) {
        float *ref = malloc((size_t)ny * sizeof *ref);
        ref_conv(&c, F, G, I, O, K, S, D, P, kiln_plan_data(p, x), kiln_plan_data(p, wn),
                 bn ? kiln_plan_data(p, bn) : NULL, ref);
        size_t wi = 0;
        double r = kiln_test_compare(kiln_plan_data(p, y), ref, (size_t)ny, 1e-5, 1e-4, &wi);
        CHECK_MSG(r <= 1, "%s: worst at %zu: %g vs %g", what, wi, (double)((float *)kiln_plan_data(p, y))[wi],
                  (double)ref[wi]);
        free(ref);
    }
    if (grad) CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 40) == 0, "%s", what);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

#define E KILN_PAD_EXPLICIT
#define SAME KILN_PAD_SAME
#define VALID KILN_PAD_VALID

static const conv_case CASES[] = {
    /* conv1d */
    {1, PLAIN, 2, 3, 4, {11}, {3}, .pad = SAME, .act = KILN_ACT_RELU},
    {1, PLAIN, 1, 4, 6, {12}, {5}, {2}, {2}, .pad = VALID, .groups = 2, .act = KILN_ACT_TANH},
    {1, PLAIN, 2, 2, 3, {9}, {3}, {2}, .pad = E, .pb = {2}, .pe = {0}, .no_bias = 1},
    {1, PLAIN, 1, 3, 3, {8}, {4}, {3}, .pad = SAME, .groups = 3, .act = KILN_ACT_GELU},
    /* conv3d */
    {3, PLAIN, 2, 2, 3, {4, 5, 6}, {3, 3, 3}, .pad = SAME, .act = KILN_ACT_RELU},
    {3, PLAIN, 1, 4, 4, {5, 6, 5}, {2, 3, 1}, {1, 2, 1}, {1, 1, 2}, .pad = VALID, .groups = 2},
    {3, PLAIN, 1, 3, 2, {4, 4, 5}, {3, 2, 3}, {2, 1, 2}, .pad = E, .pb = {1, 0, 2}, .pe = {0, 1, 1},
     .act = KILN_ACT_SIGMOID},
    /* conv2d_transpose (kernel [C, F/G, kh, kw]) */
    {2, TRANSPOSE, 2, 3, 4, {4, 5}, {3, 3}, {2, 2}, .pad = VALID},
    {2, TRANSPOSE, 1, 2, 3, {5, 4}, {3, 3}, {2, 2}, .pad = E, .pb = {1, 1}, .pe = {1, 1}, .op = {1, 1},
     .act = KILN_ACT_RELU},
    {2, TRANSPOSE, 2, 4, 6, {3, 4}, {4, 3}, {2, 1}, .pad = SAME, .groups = 2, .act = KILN_ACT_TANH},
    {2, TRANSPOSE, 1, 2, 2, {4, 3}, {3, 2}, {1, 2}, {2, 1}, .pad = E, .pb = {0, 1}, .pe = {2, 0},
     .no_bias = 1},
    {2, TRANSPOSE, 1, 3, 2, {3, 4}, {1, 2}, {2, 3}, .pad = SAME}, /* k < stride: padding below 0 */
    /* depthwise conv2d (F: depth multiplier) */
    {2, DEPTHWISE, 2, 3, 1, {7, 6}, {3, 3}, .pad = SAME, .act = KILN_ACT_RELU},
    {2, DEPTHWISE, 1, 4, 2, {8, 7}, {3, 3}, {2, 2}, .pad = SAME},
    {2, DEPTHWISE, 1, 2, 3, {7, 7}, {3, 2}, {1, 2}, {2, 1}, .pad = E, .pb = {0, 0}, .pe = {1, 1},
     .act = KILN_ACT_GELU},
};

static void test_conv_forward(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) check_conv(CASES[i], 0);
}

static void test_conv_gradients(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) check_conv(CASES[i], 1);
}

/* The same cases in deterministic plans (each primitive cut into batch chunks). */
static void test_conv_deterministic(void) {
    det = 1;
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) check_conv(CASES[i], 0), check_conv(CASES[i], 1);
    det = 0;
}

/* ---- pooling ---- */
typedef struct {
    int nd, B, C;
    int in[3], k[3], s[3]; /* stride 0: = window */
    kiln_padding pad;
    int pb[3], pe[3];
    int ceil;
} pool_case;

/* Output size with ceil_mode, restated from PyTorch's docs. */
static int pool_out(int in, int k, int s, kiln_padding pad, int pb, int pe, int ceil, int *before) {
    if (pad == KILN_PAD_SAME) return conv_out(in, k, s, 1, pad, 0, 0, before);
    if (pad == KILN_PAD_VALID) pb = pe = 0;
    *before = pb;
    int span = in + pb + pe - k, out = (ceil ? (span + s - 1) / s : span / s) + 1;
    if (ceil && (out - 1) * s >= in + pb) out--;
    return out;
}

static void fill_distinct(float *x, long n) {
    for (long i = 0; i < n; i++) x[i] = (float)((i * 7919 % n) - n / 2) * 0.01f;
}

static void check_pool(pool_case c, int max, int grad) {
    int nd = c.nd, I[3] = {1, 1, 1}, O[3] = {1, 1, 1}, K[3] = {1, 1, 1}, S[3] = {1, 1, 1}, P[3] = {0, 0, 0};
    for (int i = 0; i < nd; i++) {
        int a = 3 - nd + i;
        if (!c.s[i]) c.s[i] = c.k[i];
        I[a] = c.in[i], K[a] = c.k[i], S[a] = c.s[i];
        O[a] = pool_out(c.in[i], c.k[i], c.s[i], c.pad, c.pb[i], c.pe[i], c.ceil, &P[a]);
    }
    char what[200];
    snprintf(what, sizeof what, "%s%dd B%d C%d in %dx%dx%d k %dx%dx%d s %dx%dx%d pad %d ceil %d grad %d",
             max ? "max" : "avg", nd, c.B, c.C, I[0], I[1], I[2], K[0], K[1], K[2], S[0], S[1], S[2],
             (int)c.pad, c.ceil, grad);
    kiln_graph *g = kiln_graph_new(1);
    int64_t xd[5] = {c.B, c.C};
    for (int i = 0; i < nd; i++) xd[2 + i] = c.in[i];
    kiln_node *x = grad ? kiln_param(g, "x", nd + 2, xd, (kiln_init){KILN_INIT_ZEROS}, 1, 0, 0)
                        : kiln_input(g, "x", KILN_F32, nd + 1, xd + 1);
    kiln_node *y;
    if (nd == 2) {
        kiln_pool2d_opts o = {.size = {c.k[0], c.k[1]}, .stride = {c.s[0], c.s[1]}, .padding = c.pad,
                              .pad = {c.pb[0], c.pb[1]}, .pad_end = {c.pe[0], c.pe[1]},
                              .asymmetric = 1, .ceil_mode = c.ceil};
        y = max ? kiln_maxpool2d_ex(g, x, &o) : kiln_avgpool2d_ex(g, x, &o);
    } else {
        kiln_pool_opts o = {.padding = c.pad, .asymmetric = 1, .ceil_mode = c.ceil};
        memcpy(o.size, c.k, sizeof c.k), memcpy(o.stride, c.s, sizeof c.s);
        memcpy(o.pad, c.pb, sizeof c.pb), memcpy(o.pad_end, c.pe, sizeof c.pe);
        y = nd == 1 ? (max ? kiln_maxpool1d_ex(g, x, &o) : kiln_avgpool1d_ex(g, x, &o))
                    : (max ? kiln_maxpool3d_ex(g, x, &o) : kiln_avgpool3d_ex(g, x, &o));
    }
    CHECK_MSG(y != NULL, "%s: %s", what, kiln_last_error());
    if (!y) return kiln_graph_free(g);
    char want[32];
    snprintf(want, sizeof want, "%s_pooling%dd_1", max ? "max" : "average", nd);
    CHECK_MSG(strcmp(kiln_node_name(y), want) == 0, "%s: %s", what, kiln_node_name(y));
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = grad ? y : NULL, .batch = c.B});
    CHECK_MSG(p != NULL, "%s: %s", what, kiln_last_error());
    if (!p) return kiln_graph_free(g);
    long nx = (long)c.B * c.C * I[0] * I[1] * I[2], no = (long)O[0] * O[1] * O[2];
    const float *xv = kiln_plan_data(p, x);
    fill_distinct(kiln_plan_data(p, x), nx);
    CHECK_OK(kiln_plan_forward(p));
    kiln_shape ys = kiln_plan_shape(p, y);
    int shape_ok = ys.ndim == nd + 2;
    for (int i = 0; i < nd; i++) shape_ok &= ys.dims[2 + i] == O[3 - nd + i];
    CHECK_MSG(shape_ok, "%s: spatial size %lld.., want %dx%dx%d", what, (long long)ys.dims[2], O[0], O[1], O[2]);
    if (shape_ok) {
        float *ref = malloc((size_t)(c.B * c.C * no) * sizeof *ref);
        for (long n = 0; n < (long)c.B * c.C; n++)
            for (long o = 0; o < no; o++) {
                int p3[3] = {(int)(o / (O[1] * O[2])), (int)(o / O[2] % O[1]), (int)(o % O[2])}, cnt = 0;
                double acc = max ? -INFINITY : 0;
                for (int a = 0; a < K[0]; a++)
                    for (int b = 0; b < K[1]; b++)
                        for (int e = 0; e < K[2]; e++) {
                            int q[3] = {p3[0] * S[0] - P[0] + a, p3[1] * S[1] - P[1] + b, p3[2] * S[2] - P[2] + e};
                            if (q[0] < 0 || q[0] >= I[0] || q[1] < 0 || q[1] >= I[1] || q[2] < 0 || q[2] >= I[2]) continue;
                            double v = xv[n * I[0] * I[1] * I[2] + ((long)q[0] * I[1] + q[1]) * I[2] + q[2]];
                            acc = max ? fmax(acc, v) : acc + v;
                            cnt++;
                        }
                ref[n * no + o] = (float)(max ? acc : acc / cnt);
            }
        size_t wi = 0;
        double r = kiln_test_compare(kiln_plan_data(p, y), ref, (size_t)(c.B * c.C * no), 1e-6, 1e-5, &wi);
        CHECK_MSG(r <= 1, "%s: worst at %zu: %g vs %g", what, wi, (double)((float *)kiln_plan_data(p, y))[wi],
                  (double)ref[wi]);
        free(ref);
    }
    if (grad) CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 40) == 0, "%s", what);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static const pool_case POOLS[] = {
    {1, 2, 3, {9}, {2}},
    {1, 1, 2, {10}, {3}, {2}, .pad = SAME},
    {1, 2, 2, {10}, {3}, {2}, .pad = E, .pb = {1}, .pe = {0}},
    {1, 1, 3, {8}, {3}, {2}, .ceil = 1},          /* last window runs past the end */
    {1, 1, 2, {7}, {2}, {2}, .pad = E, .pb = {1}, .pe = {1}, .ceil = 1}, /* ... not: starts in the pad */
    {3, 1, 2, {4, 5, 6}, {2, 2, 2}},
    {3, 2, 1, {5, 4, 5}, {3, 2, 3}, {2, 1, 2}, .pad = SAME},
    {3, 1, 2, {5, 5, 4}, {3, 3, 2}, {2, 2, 2}, .pad = E, .pb = {1, 0, 1}, .pe = {0, 1, 0}, .ceil = 1},
    {2, 1, 2, {7, 6}, {3, 3}, {2, 2}, .ceil = 1},
    {2, 2, 1, {6, 7}, {3, 2}, {2, 2}, .pad = E, .pb = {0, 1}, .pe = {2, 0}},
};

static void test_pool(void) {
    for (size_t i = 0; i < sizeof POOLS / sizeof *POOLS; i++)
        for (int max = 0; max < 2; max++)
            for (int grad = 0; grad < 2; grad++) check_pool(POOLS[i], max, grad);
}

static void test_padding_rule(void) {
    int64_t b, a;
    CHECK(kiln_conv_axis(7, 3, 2, 1, KILN_PAD_EXPLICIT, 0, 1, 0, &b, &a) == 3 && b == 0 && a == 1);
    CHECK(kiln_conv_axis(8, 3, 2, 1, KILN_PAD_VALID, 0, 0, 1, &b, &a) == 4 && b == 0 && a == 1);
    CHECK(kiln_conv_axis(8, 3, 2, 1, KILN_PAD_VALID, 0, 0, 0, &b, &a) == 3 && a == 0);
    /* ceil_mode drops a window that would start in the pad after */
    CHECK(kiln_conv_axis(7, 2, 2, 1, KILN_PAD_EXPLICIT, 1, 1, 1, &b, &a) == 4 && b == 1 && a == 1);
    CHECK(kiln_deconv_axis(4, 3, 2, 1, KILN_PAD_VALID, 0, 0, 0, &b, &a) == 9 && b == 0 && a == 0);
    CHECK(kiln_deconv_axis(5, 3, 2, 1, KILN_PAD_EXPLICIT, 1, 1, 1, &b, &a) == 10 && b == 1 && a == 0);
    CHECK(kiln_deconv_axis(4, 3, 2, 1, KILN_PAD_SAME, 0, 0, 0, &b, &a) == 8 && b == 0 && a == 1);
    CHECK(kiln_deconv_axis(4, 1, 2, 1, KILN_PAD_SAME, 0, 0, 0, &b, &a) == 8 && b == 0 && a == -1);
}

static void test_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x2 = kiln_input(g, "img", KILN_F32, 3, (int64_t[]){3, 8, 8});
    kiln_node *x1 = kiln_input(g, "sig", KILN_F32, 2, (int64_t[]){3, 8});
    CHECK(kiln_conv1d_ex(g, x2, &(kiln_conv_opts){.filters = 2, .kernel = {3}}) == NULL);
    CHECK_ERR_HAS("conv1d_1 (conv1d): input img has shape [1, 3, 8, 8]; need [batch, channels, width]");
    CHECK(kiln_conv3d_ex(g, x1, &(kiln_conv_opts){.filters = 2, .kernel = {3, 3, 3}}) == NULL);
    CHECK_ERR_HAS("[batch, channels, depth, height, width]");
    CHECK(kiln_conv1d_ex(g, x1, &(kiln_conv_opts){.filters = 2, .kernel = {9}}) == NULL);
    CHECK_ERR_HAS("kernel 9 (dilation 1) is larger than input sig");
    CHECK(kiln_conv2d_transpose_ex(g, x2, &(kiln_conv_opts){.filters = 2, .kernel = {3, 3},
                                                           .output_padding = {1, 0}}) == NULL);
    CHECK_ERR_HAS("output_padding below stride or dilation");
    CHECK(kiln_depthwise_conv2d_ex(g, x2, &(kiln_depthwise_conv2d_opts){.kernel = {3, 3},
                                                                       .depth_multiplier = -1}) == NULL);
    CHECK_ERR_HAS("depth_multiplier > 0");
    CHECK(kiln_depthwise_conv2d_ex(g, x1, &(kiln_depthwise_conv2d_opts){.kernel = {3, 3}}) == NULL);
    CHECK_ERR_HAS("depthwise_conv2d_2 (depthwise_conv2d): input sig has shape [1, 3, 8]; need [batch, channels, height, width]");
    CHECK(kiln_maxpool1d_ex(g, x1, &(kiln_pool_opts){.size = {3}, .padding = KILN_PAD_EXPLICIT,
                                                    .pad = {0}, .pad_end = {3}, .asymmetric = 1}) == NULL);
    CHECK_ERR_HAS("max_pooling1d: explicit pads 0x3 must be >= 0 and smaller than the window 3");
    CHECK(kiln_avgpool3d_ex(g, x2, &(kiln_pool_opts){.size = {2, 2, 2}}) == NULL);
    CHECK_ERR_HAS("[batch, channels, depth, height, width]");
    CHECK(kiln_graph_param_count(g) == 0);
    /* an attribute that does not match its op entry */
    kiln_node *w = kiln_param(g, "w", 3, (int64_t[]){2, 3, 3}, (kiln_init){KILN_INIT_ZEROS}, 1, 0, 0);
    kiln_conv_attr at = {.filters = 2, .kernel = {3}, .stride = {1}, .dilation = {1}, .groups = 1};
    kiln_node *in[2] = {x1, w};
    CHECK(kiln_graph_add_op(g, &kiln_op_conv1d, in, 2, &at, sizeof at, "direct") == NULL);
    CHECK_ERR_HAS("bad attributes (2-D for conv1d");
    at.nd = 1;
    CHECK(kiln_graph_add_op(g, &kiln_op_conv1d, in, 2, &at, sizeof at, "direct") != NULL);
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_padding_rule);
    RUN(test_conv_forward);
    RUN(test_conv_gradients);
    RUN(test_conv_deterministic);
    RUN(test_pool);
    RUN(test_errors);
    return kiln_test_summary();
}

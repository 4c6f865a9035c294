/* test_lowp.c — the int8 kernels (src/backend/cpu/lowp_*.c) against a plain C reference of the
 * same quantized arithmetic (lowp.h), and against fp32 within the quantization error; bf16 lives
 * in test_lowp_bf16.c (it needs a CPU with bf16). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/kiln.h"

static float qround(float v, float lo, float hi) {
    v = nearbyintf(v);
    return v < lo ? lo : v > hi ? hi : v;
}

/* The weight qmax the kernels use here (see lowp.h). */
static int qmax(void) { return kiln_backend_int8_weight_bits() == 8 ? 127 : 63; }

/* y [B, F, H, W] = relu?(in_scale * ws[f] * sum(xq * wq) + b[f]), same padding, stride 1. */
static void ref_conv_q(const float *x, const float *w, const float *b, float *y, int B, int C, int H, int W, int F,
                       int k, int groups, float in_scale, int sgn, int relu) {
    int cg = C / groups, fg = F / groups, p = k / 2;
    for (int f = 0; f < F; f++) {
        float m = 0;
        for (int i = 0; i < cg * k * k; i++) m = fmaxf(m, fabsf(w[f * cg * k * k + i]));
        float ws = m > 0 ? m / (float)qmax() : 1.0f;
        int g = f / fg;
        for (int n = 0; n < B; n++)
            for (int oh = 0; oh < H; oh++)
                for (int ow = 0; ow < W; ow++) {
                    long acc = 0;
                    for (int c = 0; c < cg; c++)
                        for (int kh = 0; kh < k; kh++)
                            for (int kw = 0; kw < k; kw++) {
                                int ih = oh + kh - p, iw = ow + kw - p;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                float xv = x[((n * C + g * cg + c) * H + ih) * W + iw];
                                float xq = qround(xv / in_scale, sgn ? -128 : 0, sgn ? 127 : 255);
                                float wq = qround(w[((f * cg + c) * k + kh) * k + kw] / ws, -127, 127);
                                acc += (long)xq * (long)wq;
                            }
                    float v = in_scale * ws * (float)acc + b[f];
                    y[((n * F + f) * H + oh) * W + ow] = relu && v < 0 ? 0 : v;
                }
    }
}

static float *run(kiln_graph *g, kiln_node *in, kiln_node *out, int batch, const float *x, size_t nx) {
    kiln_node *outs[] = {out};
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = outs, .n_outputs = 1, .batch = batch});
    if (!p) {
        fprintf(stderr, "plan: %s\n", kiln_last_error());
        return NULL;
    }
    memcpy(kiln_plan_data(p, in), x, nx * sizeof *x);
    kiln_status st = kiln_plan_forward(p);
    kiln_shape s = kiln_plan_shape(p, out);
    size_t n = (size_t)kiln_shape_numel(&s);
    float *y = malloc(n * sizeof *y);
    memcpy(y, kiln_plan_data(p, out), n * sizeof *y);
    kiln_plan_free(p);
    if (st) return free(y), NULL;
    return y;
}

static void conv_case(int groups, int C, int F) {
    enum { B = 2, H = 7, W = 6, K = 3 };
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 3, (int64_t[]){C, H, W});
    kiln_node *y = kiln_conv2d_ex(g, x, &(kiln_conv2d_opts){.filters = F, .kernel = {K, K}, .padding = KILN_PAD_SAME,
                                                            .groups = groups, .act = KILN_ACT_RELU});
    CHECK(y != NULL);
    CHECK_OK(kiln_graph_init_params(g));
    const kiln_param_info *bi = kiln_graph_param_info(g, 1);
    kiln_test_fill(kiln_graph_params(g) + bi->offset, bi->numel, -0.3f, 0.3f, 9);
    size_t nx = (size_t)B * C * H * W;
    float *xv = malloc(nx * sizeof *xv);
    kiln_test_fill(xv, nx, 0.0f, 1.0f, 7);
    float *fp = run(g, x, y, B, xv, nx);
    CHECK_OK(kiln_lowp_convert(g, y, &(kiln_lowp_opts){KILN_PRECISION_INT8, 1.0f / 255, 0}));
    float *q = run(g, x, y, B, xv, nx);
    CHECK(fp && q);
    size_t ny = (size_t)B * F * H * W;
    float *ref = malloc(ny * sizeof *ref);
    const float *w = kiln_graph_params(g) + kiln_graph_param_info(g, 0)->offset, *b = kiln_graph_params(g) + bi->offset;
    ref_conv_q(xv, w, b, ref, B, C, H, W, F, K, groups, 1.0f / 255, 0, 1);
    size_t worst;
    double e = q ? kiln_test_compare(q, ref, ny, 1e-5, 1e-5, &worst) : 99;
    CHECK_MSG(e <= 1, "int8 conv (groups %d) vs the quantized reference: %g at %zu (%g vs %g)", groups, e, worst,
              q ? q[worst] : 0, ref[worst]);
    /* and close to fp32: the quantization error of 8-bit input, 7/8-bit weights */
    double ef = q && fp ? kiln_test_compare(q, fp, ny, 0.03, 0.03, &worst) : 99;
    CHECK_MSG(ef <= 1, "int8 conv vs fp32: %g", ef);
    free(xv), free(fp), free(q), free(ref);
    kiln_graph_free(g);
}

static void test_conv_int8(void) { conv_case(1, 3, 5); }
static void test_depthwise_int8(void) { conv_case(4, 4, 8); }

static void test_dense_int8_signed(void) {
    enum { B = 5, K = 33, N = 7 };
    kiln_graph *g = kiln_graph_new(4);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){K});
    kiln_node *y = kiln_dense(g, x, N, KILN_ACT_NONE);
    CHECK_OK(kiln_graph_init_params(g));
    const kiln_param_info *wi = kiln_graph_param_info(g, 0), *bi = kiln_graph_param_info(g, 1);
    kiln_test_fill(kiln_graph_params(g) + bi->offset, bi->numel, -0.5f, 0.5f, 3);
    float xv[B * K], ref[B * N];
    kiln_test_fill(xv, B * K, -2.0f, 2.0f, 5);
    float *fp = run(g, x, y, B, xv, B * K);
    float s = 2.0f / 127;
    CHECK_OK(kiln_lowp_convert(g, y, &(kiln_lowp_opts){KILN_PRECISION_INT8, s, 1}));
    float *q = run(g, x, y, B, xv, B * K);
    const float *w = kiln_graph_params(g) + wi->offset, *b = kiln_graph_params(g) + bi->offset;
    for (int n = 0; n < N; n++) {
        float m = 0;
        for (int k = 0; k < K; k++) m = fmaxf(m, fabsf(w[k * N + n]));
        float ws = m / (float)qmax();
        for (int r = 0; r < B; r++) {
            long acc = 0;
            for (int k = 0; k < K; k++)
                acc += (long)qround(xv[r * K + k] / s, -128, 127) * (long)qround(w[k * N + n] / ws, -127, 127);
            ref[r * N + n] = s * ws * (float)acc + b[n];
        }
    }
    size_t worst;
    CHECK(q && fp);
    double e = q ? kiln_test_compare(q, ref, B * N, 1e-5, 1e-5, &worst) : 99;
    CHECK_MSG(e <= 1, "int8 dense vs reference: %g at %zu (%g vs %g)", e, worst, q ? q[worst] : 0, ref[worst]);
    double ef = q && fp ? kiln_test_compare(q, fp, B * N, 0.1, 0.03, &worst) : 99;
    CHECK_MSG(ef <= 1, "int8 dense vs fp32: %g", ef);
    free(fp), free(q);
    kiln_graph_free(g);
}

/* conv -> pool -> conv -> flatten -> dense, every conv and dense int8: layouts between them */
static void test_chain_int8(void) {
    kiln_graph *g = kiln_graph_new(5);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 3, (int64_t[]){1, 12, 12});
    kiln_node *c1 = kiln_conv2d(g, x, 8, 3, 1, KILN_PAD_SAME, KILN_ACT_RELU);
    kiln_node *p = kiln_maxpool2d(g, c1, 2);
    kiln_node *c2 = kiln_conv2d(g, p, 16, 3, 1, KILN_PAD_SAME, KILN_ACT_RELU);
    kiln_node *d = kiln_dense(g, kiln_flatten(g, c2), 10, KILN_ACT_NONE);
    CHECK(d != NULL);
    CHECK_OK(kiln_graph_init_params(g));
    enum { B = 4 };
    size_t nx = B * 144;
    float *xv = malloc(nx * sizeof *xv);
    kiln_test_fill(xv, nx, 0.0f, 1.0f, 11);
    /* calibrate on the fp32 run: each int8 node's input max */
    kiln_node *ins[] = {x, p, kiln_node_input(d, 0)}, *qs[] = {c1, c2, d};
    float scale[3];
    for (int i = 0; i < 3; i++) {
        float *v = run(g, x, ins[i], B, xv, nx);
        kiln_shape s = kiln_node_shape(ins[i]);
        size_t n = (size_t)kiln_shape_numel(&s) * B;
        float m = 0;
        for (size_t j = 0; v && j < n; j++) m = fmaxf(m, v[j]);
        scale[i] = m / 255;
        free(v);
    }
    float *fp = run(g, x, d, B, xv, nx);
    for (int i = 0; i < 3; i++) CHECK_OK(kiln_lowp_convert(g, qs[i], &(kiln_lowp_opts){KILN_PRECISION_INT8, scale[i], 0}));
    float *q = run(g, x, d, B, xv, nx);
    CHECK(fp && q);
    float m = 0;
    for (int i = 0; fp && i < B * 10; i++) m = fmaxf(m, fabsf(fp[i]));
    size_t worst;
    double e = fp && q ? kiln_test_compare(q, fp, B * 10, 0.05 * m, 0, &worst) : 99;
    CHECK_MSG(e <= 1, "int8 chain vs fp32: %g of 5%% of max |y| %g", e, m);
    free(xv), free(fp), free(q);
    kiln_graph_free(g);
}

static void test_convert_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){4});
    kiln_node *r = kiln_relu(g, x), *d = kiln_dense(g, r, 3, KILN_ACT_NONE);
    CHECK(kiln_lowp_convert(g, r, &(kiln_lowp_opts){KILN_PRECISION_INT8, 1, 0}) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("no int8/bf16 form");
    CHECK(kiln_lowp_convert(g, d, &(kiln_lowp_opts){KILN_PRECISION_INT8, 0, 0}) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("not a positive finite");
    CHECK(!kiln_lowp_get(d, NULL));
    kiln_graph_free(g);
}

int main(void) {
    printf("oneDNN ISA: %s, int8 weights: %d bits\n", kiln_backend_cpu_isa(), kiln_backend_int8_weight_bits());
    RUN(test_conv_int8);
    RUN(test_depthwise_int8);
    RUN(test_dense_int8_signed);
    RUN(test_chain_int8);
    RUN(test_convert_errors);
    return kiln_test_summary();
}

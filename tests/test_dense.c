/* test_dense.c — dense forward against a plain double loop, backward against finite
 * differences, for every fused activation, odd sizes, batch 1, rank-3 inputs and accumulation
 * (one input feeding two dense layers). */
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* y[m, n] = act(sum_k x[m, k] w[k, n] + b[n]) in double */
static void ref_dense(const float *x, const float *w, const float *b, float *y, int M, int K,
                      int N, kiln_act act) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double z = b ? b[n] : 0;
            for (int k = 0; k < K; k++) z += (double)x[m * K + k] * w[k * N + n];
            switch (act) {
            case KILN_ACT_RELU: z = z > 0 ? z : 0; break;
            case KILN_ACT_LEAKY_RELU: z = z > 0 ? z : 0.01 * z; break;
            case KILN_ACT_SIGMOID: z = 1 / (1 + exp(-z)); break;
            case KILN_ACT_TANH: z = tanh(z); break;
            case KILN_ACT_GELU: z = 0.5 * z * (1 + erf(z / sqrt(2.0))); break;
            case KILN_ACT_RELU6: z = fmin(fmax(z, 0), 6); break;
            case KILN_ACT_HARD_SIGMOID: z = fmin(fmax(z + 3, 0), 6) / 6; break;
            case KILN_ACT_HARD_SWISH: z = z * fmin(fmax(z + 3, 0), 6) / 6; break;
            default: break;
            }
            y[m * N + n] = (float)z;
        }
}

static void check_dense(int M, int K, int N, kiln_act act, int bias) {
    kiln_graph *g = kiln_graph_new(7);
    kiln_node *x = kiln_param(g, "x", 2, (int64_t[]){M, K}, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
    kiln_dense_opts o = {.units = N, .act = act, .no_bias = !bias, .bias_init = {KILN_INIT_CONSTANT, 0.1f}};
    kiln_node *y = kiln_dense_ex(g, x, &o);
    CHECK(y != NULL);
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return;
    CHECK_OK(kiln_plan_forward(p));
    float *ref = malloc((size_t)M * N * sizeof *ref);
    const float *w = kiln_plan_data(p, kiln_graph_find(g, "dense_1.kernel"));
    const float *b = bias ? kiln_plan_data(p, kiln_graph_find(g, "dense_1.bias")) : NULL;
    ref_dense(kiln_plan_data(p, x), w, b, ref, M, K, N, act);
    size_t wi;
    double r = kiln_test_compare(kiln_plan_data(p, y), ref, (size_t)M * N, 1e-5, 1e-4, &wi);
    CHECK_MSG(r <= 1, "M=%d K=%d N=%d act=%s: worst at %zu ratio %g", M, K, N, kiln_act_name(act), wi, r);
    CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0, "M=%d K=%d N=%d act=%s", M,
              K, N, kiln_act_name(act));
    free(ref);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_dense_shapes_and_acts(void) {
    int shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 13, 9}, {17, 33, 10}, {4, 64, 65}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int a = 0; a < KILN_ACT_COUNT; a++)
            check_dense(shapes[s][0], shapes[s][1], shapes[s][2], (kiln_act)a, 1);
    check_dense(6, 5, 4, KILN_ACT_RELU, 0);
}

static void test_dense_rank3_and_accumulate(void) {
    /* x [2, 3, 4] feeds two dense layers whose outputs are added: dx accumulates. */
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *x = kiln_param(g, "x", 3, (int64_t[]){2, 3, 4}, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
    kiln_node *a = kiln_dense(g, x, 5, KILN_ACT_TANH);
    kiln_node *b = kiln_dense(g, x, 5, KILN_ACT_SIGMOID);
    kiln_node *y = kiln_add(g, a, b);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (!y) return kiln_graph_free(g);
    kiln_shape s = kiln_node_shape(y);
    CHECK(s.ndim == 3 && s.dims[2] == 5);
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK(p != NULL);
    if (p) CHECK(kiln_test_gradcheck(g, p, y, 1e-2, 2e-3, 1e-2, 100) == 0);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_dense_shape_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "pixels", KILN_F32, 1, (int64_t[]){784});
    CHECK(kiln_dense(g, x, 0, KILN_ACT_NONE) == NULL);
    CHECK_ERR_HAS("units must be > 0");
    kiln_node *img = kiln_input(g, "img", KILN_F32, 0, NULL);
    CHECK(kiln_dense(g, img, 4, KILN_ACT_NONE) == NULL);
    CHECK_ERR_HAS("img");
    /* A NULL input propagates NULL without overwriting the first message. */
    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_dense(g, NULL, 4, KILN_ACT_NONE) == NULL);
    CHECK_ERR_HAS("first failure");
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_dense_shapes_and_acts);
    RUN(test_dense_rank3_and_accumulate);
    RUN(test_dense_shape_errors);
    return kiln_test_summary();
}

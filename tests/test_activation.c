/* test_activation.c — the standalone activations and softmax: forward against plain double
 * loops at several shapes (batch 1, odd sizes, rank 3 and 4, inputs at plan batch sizes),
 * softmax on extreme logits, backward against finite differences (softmax with a random
 * upstream gradient, so the Jacobian is exercised), a tensor feeding two activations, names,
 * and bad inputs. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

static double ref_act(kiln_act a, double alpha, double x) {
    switch (a) {
    case KILN_ACT_RELU:
        return x > 0 ? x : 0;
    case KILN_ACT_LEAKY_RELU:
        return x > 0 ? x : alpha * x;
    case KILN_ACT_GELU:
        return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case KILN_ACT_SIGMOID:
        return 1 / (1 + exp(-x));
    case KILN_ACT_TANH:
        return tanh(x);
    case KILN_ACT_RELU6:
        return fmin(fmax(x, 0), 6);
    case KILN_ACT_HARD_SIGMOID:
        return fmin(fmax(x + 3, 0), 6) / 6;
    case KILN_ACT_HARD_SWISH:
        return x * fmin(fmax(x + 3, 0), 6) / 6;
    default:
        return x;
    }
}

/* y[r, :] = softmax(x[r, :]) in double */
static void ref_softmax(const float *x, float *y, int64_t rows, int64_t K) {
    for (int64_t r = 0; r < rows; r++) {
        double m = x[r * K], s = 0;
        for (int64_t k = 1; k < K; k++) m = x[r * K + k] > m ? x[r * K + k] : m;
        for (int64_t k = 0; k < K; k++) s += exp(x[r * K + k] - m);
        for (int64_t k = 0; k < K; k++) y[r * K + k] = (float)(exp(x[r * K + k] - m) / s);
    }
}

/* Builds y = f(x) for activation a (alpha < 0: through kiln_activation, else the named
 * builder; a == KILN_ACT_COUNT: softmax). */
static kiln_node *build(kiln_graph *g, kiln_node *x, kiln_act a, float alpha) {
    if (a == KILN_ACT_COUNT) return kiln_softmax(g, x);
    if (alpha < 0) return kiln_activation(g, x, a);
    switch (a) {
    case KILN_ACT_RELU:
        return kiln_relu(g, x);
    case KILN_ACT_LEAKY_RELU:
        return kiln_leaky_relu(g, x, alpha);
    case KILN_ACT_GELU:
        return kiln_gelu(g, x);
    case KILN_ACT_SIGMOID:
        return kiln_sigmoid(g, x);
    case KILN_ACT_TANH:
        return kiln_tanh(g, x);
    case KILN_ACT_RELU6:
        return kiln_relu6(g, x);
    case KILN_ACT_HARD_SIGMOID:
        return kiln_hard_sigmoid(g, x);
    case KILN_ACT_HARD_SWISH:
        return kiln_hard_swish(g, x);
    default:
        return kiln_activation(g, x, a);
    }
}

static void check_act(int ndim, const int64_t *dims, kiln_act a, float alpha) {
    kiln_graph *g = kiln_graph_new(11);
    kiln_node *x = kiln_param(g, "x", ndim, dims, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
    kiln_node *y = build(g, x, a, alpha);
    const char *what = a == KILN_ACT_COUNT ? "softmax" : kiln_act_name(a);
    CHECK_MSG(y != NULL, "%s: %s", what, kiln_last_error());
    if (!y) return kiln_graph_free(g);
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return kiln_graph_free(g);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    float *xv = kiln_plan_data(p, x), *ref = malloc((size_t)n * sizeof *ref);
    kiln_test_fill(xv, (size_t)n, -3, 3, 7); /* wider than the initializer: both tails */
    CHECK_OK(kiln_plan_forward(p));
    if (a == KILN_ACT_COUNT)
        ref_softmax(xv, ref, n / dims[ndim - 1], dims[ndim - 1]);
    else {
        double slope = alpha < 0 ? 0.01 : alpha;
        for (int64_t i = 0; i < n; i++) ref[i] = (float)ref_act(a, slope, xv[i]);
    }
    size_t wi;
    double r = kiln_test_compare(kiln_plan_data(p, y), ref, (size_t)n, 1e-6, 1e-5, &wi);
    CHECK_MSG(r <= 1, "%s alpha %g n=%lld: worst at %zu ratio %g", what, alpha, (long long)n, wi,
              r);
    CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0, "%s alpha %g n=%lld", what,
              alpha, (long long)n);
    free(ref);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static const int64_t shapes[][4] = {{1, 1}, {1, 7}, {5, 13}, {3, 4, 5}, {2, 3, 1, 9}};
static const int ranks[] = {2, 2, 2, 3, 4};

static void test_activations(void) {
    for (size_t s = 0; s < sizeof ranks / sizeof *ranks; s++) {
        for (int a = 0; a < KILN_ACT_COUNT; a++) {
            check_act(ranks[s], shapes[s], (kiln_act)a, -1); /* kiln_activation */
            check_act(ranks[s], shapes[s], (kiln_act)a, 0);  /* named builders */
        }
        check_act(ranks[s], shapes[s], KILN_ACT_LEAKY_RELU, 0.2f);
        check_act(ranks[s], shapes[s], KILN_ACT_LEAKY_RELU, 1.5f);
    }
}

static void test_softmax(void) {
    for (size_t s = 0; s < sizeof ranks / sizeof *ranks; s++)
        check_act(ranks[s], shapes[s], KILN_ACT_COUNT, 0);
    check_act(2, (int64_t[]){3, 1000}, KILN_ACT_COUNT, 0);
}

static void test_large_threaded(void) {
    /* sizes past the OpenMP thresholds, so the threaded loops run too */
    check_act(2, (int64_t[]){20, 1000}, KILN_ACT_COUNT, 0);
    for (int a = KILN_ACT_RELU; a < KILN_ACT_COUNT; a++)
        check_act(2, (int64_t[]){4, 9001}, (kiln_act)a, 0);
}

static void test_softmax_extreme_logits(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "logits", KILN_F32, 1, (int64_t[]){4});
    kiln_node *y = kiln_softmax(g, x);
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .batch = 3});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return kiln_graph_free(g);
    const float in[12] = {1000, -1000, 0, 999, -1000, -1000, -1000, -1000, 88, 89, -104, 1e-30f};
    memcpy(kiln_plan_data(p, x), in, sizeof in);
    CHECK_OK(kiln_plan_forward(p));
    float ref[12];
    ref_softmax(in, ref, 3, 4);
    const float *yv = kiln_plan_data(p, y);
    for (int i = 0; i < 12; i++) {
        CHECK_MSG(isfinite(yv[i]), "y[%d] = %g", i, yv[i]);
        CHECK_NEAR(yv[i], ref[i], 1e-6 + 1e-5 * fabs(ref[i]));
    }
    CHECK_NEAR(yv[0], 1 / (1 + exp(-1.0)), 1e-6);
    CHECK_NEAR(yv[4], 0.25, 1e-7);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_inputs_at_plan_batch(void) {
    for (int batch = 1; batch <= 6; batch += 5) {
        kiln_graph *g = kiln_graph_new(1);
        kiln_node *x = kiln_input(g, "x", KILN_F32, 2, (int64_t[]){3, 5});
        kiln_node *outs[2] = {kiln_gelu(g, x), kiln_softmax(g, x)};
        CHECK_MSG(outs[0] && outs[1], "%s", kiln_last_error());
        kiln_plan *p =
            kiln_plan_new(g, &(kiln_plan_opts){.outputs = outs, .n_outputs = 2, .batch = batch});
        CHECK_MSG(p != NULL, "%s", kiln_last_error());
        if (!p) return kiln_graph_free(g);
        int64_t n = (int64_t)batch * 15;
        kiln_shape s = kiln_plan_shape(p, outs[1]);
        CHECK(s.ndim == 3 && s.dims[0] == batch && s.dims[2] == 5);
        float *xv = kiln_plan_data(p, x), *ref = malloc((size_t)n * sizeof *ref);
        kiln_test_fill(xv, (size_t)n, -4, 4, 3);
        CHECK_OK(kiln_plan_forward(p));
        for (int64_t i = 0; i < n; i++) ref[i] = (float)ref_act(KILN_ACT_GELU, 0, xv[i]);
        CHECK(kiln_test_compare(kiln_plan_data(p, outs[0]), ref, (size_t)n, 1e-6, 1e-5, NULL) <= 1);
        ref_softmax(xv, ref, n / 5, 5);
        CHECK(kiln_test_compare(kiln_plan_data(p, outs[1]), ref, (size_t)n, 1e-6, 1e-5, NULL) <= 1);
        free(ref);
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

static void test_accumulate(void) {
    /* x feeds relu, sigmoid, softmax and gelu; their outputs are summed. */
    kiln_graph *g = kiln_graph_new(9);
    kiln_node *x =
        kiln_param(g, "x", 2, (int64_t[]){3, 6}, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
    kiln_node *y = kiln_add(g, kiln_add(g, kiln_relu(g, x), kiln_sigmoid(g, x)),
                            kiln_add(g, kiln_softmax(g, x), kiln_gelu(g, x)));
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    kiln_plan *p =
        y ? kiln_plan_new(g,
                          &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1})
          : NULL;
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (p) CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_names(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){4});
    struct {
        kiln_node *n;
        const char *name;
    } want[] = {
        {kiln_relu(g, x), "relu_1"},
        {kiln_relu(g, x), "relu_2"},
        {kiln_leaky_relu(g, x, 0.3f), "leaky_re_lu_1"},
        {kiln_gelu(g, x), "gelu_1"},
        {kiln_sigmoid(g, x), "sigmoid_1"},
        {kiln_tanh(g, x), "tanh_1"},
        {kiln_softmax(g, x), "softmax_1"},
        {kiln_activation(g, x, KILN_ACT_RELU), "activation_1"},
        {kiln_activation(g, x, KILN_ACT_NONE), "activation_2"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        CHECK_MSG(want[i].n && strcmp(kiln_node_name(want[i].n), want[i].name) == 0,
                  "want %s, got %s", want[i].name,
                  want[i].n ? kiln_node_name(want[i].n) : kiln_last_error());
        if (want[i].n)
            CHECK(strcmp(kiln_node_op(want[i].n), i == 6 ? "softmax" : "activation") == 0);
    }
    kiln_graph_free(g);
}

static void test_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){4});
    kiln_node *ids = kiln_input(g, "ids", KILN_I32, 1, (int64_t[]){4});
    kiln_node *v = kiln_input(g, "v", KILN_F32, 0, NULL);
    CHECK(kiln_activation(g, x, KILN_ACT_COUNT) == NULL);
    CHECK_ERR_HAS("activation_1");
    CHECK_ERR_HAS("x=[1, 4]");
    CHECK_ERR_HAS("unknown activation");
    CHECK(kiln_leaky_relu(g, x, -0.1f) == NULL);
    CHECK_ERR_HAS("leaky_re_lu_1");
    CHECK_ERR_HAS(">= 0");
    CHECK(kiln_leaky_relu(g, x, NAN) == NULL);
    CHECK_ERR_HAS("finite");
    CHECK(kiln_relu(g, ids) == NULL);
    CHECK_ERR_HAS("relu_1");
    CHECK_ERR_HAS("ids=[1, 4]");
    CHECK_ERR_HAS("got I32");
    CHECK(kiln_softmax(g, ids) == NULL);
    CHECK_ERR_HAS("softmax_1");
    CHECK_ERR_HAS("F32");
    CHECK(kiln_softmax(g, v) == NULL);
    CHECK_ERR_HAS("v=[1]");
    CHECK_ERR_HAS("[batch, ..., classes]");
    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_sigmoid(g, NULL) == NULL);
    CHECK(kiln_softmax(g, NULL) == NULL);
    CHECK_ERR_HAS("first failure");
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_activations);
    RUN(test_softmax);
    RUN(test_large_threaded);
    RUN(test_softmax_extreme_logits);
    RUN(test_inputs_at_plan_batch);
    RUN(test_accumulate);
    RUN(test_names);
    RUN(test_errors);
    return kiln_test_summary();
}

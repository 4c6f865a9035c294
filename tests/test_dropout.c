/* test_dropout.c — inverted dropout: inference plans pass values through, training plans drop
 * exactly the elements the counter-based RNG says (checked against kiln_rng_uniform itself),
 * scale the kept ones by 1 / (1 - rate), keep about 1 - rate of them, give the same mask for
 * the same step in another plan and on another thread count, a new mask for a new step, and a
 * gradient that matches finite differences (the mask is fixed for a fixed step), also when x
 * feeds dropout and a residual add. Bad rates fail in the builder. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static int node_id(kiln_graph *g, const kiln_node *n) {
    for (int i = 0; i < kiln_graph_node_count(g); i++)
        if (kiln_graph_node(g, i) == n) return i;
    return -1;
}

typedef struct {
    kiln_graph *g;
    kiln_node *x, *y;
    kiln_plan *train, *infer;
} net;

/* x: input [F] at batch B, y = dropout(x, rate); a training and an inference plan. */
static int net_make(net *t, int64_t F, int B, float rate, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->g = kiln_graph_new(seed);
    t->x = kiln_input(t->g, "x", KILN_F32, 1, (int64_t[]){F});
    t->y = kiln_dropout(t->g, t->x, rate);
    if (!t->y) return -1;
    t->train = kiln_plan_new(
        t->g, &(kiln_plan_opts){.outputs = &t->y, .n_outputs = 1, .batch = B, .training = 1});
    t->infer = kiln_plan_new(t->g, &(kiln_plan_opts){.outputs = &t->y, .n_outputs = 1, .batch = B});
    if (!t->train || !t->infer) return -1;
    kiln_test_fill(kiln_plan_data(t->train, t->x), (size_t)(F * B), 0.5f, 1.5f, 7);
    kiln_test_fill(kiln_plan_data(t->infer, t->x), (size_t)(F * B), 0.5f, 1.5f, 7);
    return 0;
}

static void net_free(net *t) {
    kiln_plan_free(t->train);
    kiln_plan_free(t->infer);
    kiln_graph_free(t->g);
}

static void test_dropout_inference_identity(void) {
    net t;
    CHECK_MSG(net_make(&t, 37, 3, 0.5f, 1) == 0, "%s", kiln_last_error());
    if (t.infer) {
        CHECK_OK(kiln_plan_forward(t.infer));
        CHECK(memcmp(kiln_plan_data(t.infer, t.x), kiln_plan_data(t.infer, t.y),
                     37 * 3 * sizeof(float)) == 0);
        CHECK(strcmp(kiln_node_name(t.y), "dropout_1") == 0);
    }
    net_free(&t);
}

/* The mask is exactly kiln_rng_uniform(seed, node id, step * n + i) < rate, kept values are
 * x / (1 - rate), and the kept fraction is within 5 standard deviations of 1 - rate. */
static void check_mask(int64_t F, int B, float rate, uint64_t step) {
    net t;
    CHECK_MSG(net_make(&t, F, B, rate, 42) == 0, "%s", kiln_last_error());
    if (!t.train) return net_free(&t);
    kiln_plan_set_step(t.train, step);
    CHECK_OK(kiln_plan_forward(t.train));
    const float *x = kiln_plan_data(t.train, t.x), *y = kiln_plan_data(t.train, t.y);
    const int64_t n = F * B;
    const uint64_t stream = (uint64_t)node_id(t.g, t.y);
    const float scale = 1.0f / (1.0f - rate);
    int64_t kept = 0, wrong = 0;
    for (int64_t i = 0; i < n; i++) {
        int drop = kiln_rng_uniform(42, stream, step * (uint64_t)n + (uint64_t)i) < rate;
        float want = drop ? 0.0f : x[i] * scale;
        kept += !drop;
        if (y[i] != want) wrong++;
    }
    CHECK_MSG(wrong == 0, "n=%lld rate=%g step=%llu: %lld values differ from the RNG's mask",
              (long long)n, (double)rate, (unsigned long long)step, (long long)wrong);
    double p = 1.0 - rate, sd = sqrt((double)n * p * (1 - p));
    CHECK_MSG(fabs((double)kept - (double)n * p) <= 5 * sd + 1e-9, "kept %lld of %lld at rate %g",
              (long long)kept, (long long)n, (double)rate);
    net_free(&t);
}

static void test_dropout_mask_scale_fraction(void) {
    check_mask(50001, 2, 0.25f, 0); /* 100002 values, threaded */
    check_mask(50001, 2, 0.5f, 3);  /* step * n not a multiple of 4: blocks straddle the start */
    check_mask(7, 1, 0.1f, 5);
    check_mask(1, 1, 0.9f, 0);
    check_mask(4093, 3, 0.0f, 9); /* rate 0: everything kept, scale 1 */
}

/* Same step: the same mask in a second plan and on 1 or 2 threads. New step: a new mask. */
static void test_dropout_determinism(void) {
    const int64_t F = 20011;
    const int B = 2;
    net t;
    CHECK_MSG(net_make(&t, F, B, 0.3f, 5) == 0, "%s", kiln_last_error());
    if (!t.train) return net_free(&t);
    kiln_plan *other = kiln_plan_new(
        t.g, &(kiln_plan_opts){.outputs = &t.y, .n_outputs = 1, .batch = B, .training = 1});
    CHECK(other != NULL);
    if (!other) return net_free(&t);
    size_t bytes = (size_t)(F * B) * sizeof(float);
    memcpy(kiln_plan_data(other, t.x), kiln_plan_data(t.train, t.x), bytes);
    int threads = omp_get_max_threads();
    kiln_plan_set_step(t.train, 11);
    kiln_plan_set_step(other, 11);
    omp_set_num_threads(1);
    CHECK_OK(kiln_plan_forward(t.train));
    omp_set_num_threads(2);
    CHECK_OK(kiln_plan_forward(other));
    omp_set_num_threads(threads);
    float *a = malloc(bytes);
    memcpy(a, kiln_plan_data(t.train, t.y), bytes);
    CHECK(memcmp(a, kiln_plan_data(other, t.y), bytes) == 0);
    kiln_plan_set_step(other, 12);
    CHECK_OK(kiln_plan_forward(other));
    const float *b = kiln_plan_data(other, t.y);
    int64_t differ = 0;
    for (int64_t i = 0; i < F * B; i++) differ += (a[i] == 0.0f) != (b[i] == 0.0f);
    /* independent masks differ where exactly one drops: 2 * 0.3 * 0.7 = 42% of places */
    CHECK_MSG(differ > F * B / 3, "only %lld of %lld mask bits changed with the step",
              (long long)differ, (long long)(F * B));
    /* the same step again gives the first mask back */
    kiln_plan_set_step(other, 11);
    CHECK_OK(kiln_plan_forward(other));
    CHECK(memcmp(a, kiln_plan_data(other, t.y), bytes) == 0);
    free(a);
    kiln_plan_free(other);
    net_free(&t);
}

/* Gradients: x is a parameter; y = dropout(x) (+ x when residual) in either plan mode. */
static void check_grad(int training, int residual) {
    kiln_graph *g = kiln_graph_new(9);
    kiln_node *x =
        kiln_param(g, "x", 3, (int64_t[]){3, 7, 5}, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
    kiln_node *y = kiln_dropout(g, x, 0.4f);
    if (residual) y = kiln_add(g, y, x);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    kiln_plan *p = kiln_plan_new(
        g, &(kiln_plan_opts){
               .outputs = &y, .n_outputs = 1, .loss = y, .batch = 1, .training = training});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (p) {
        kiln_plan_set_step(p, 4);
        CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0,
                  "training=%d residual=%d", training, residual);
        /* dy = 1: dx is the scale where kept (plus 1 for the residual), 0 where dropped */
        if (!residual && training) {
            const float *xv = kiln_plan_data(p, x), *yv = kiln_plan_data(p, y);
            float *dy = kiln_plan_grad(p, y), *dx = kiln_plan_grad(p, x);
            for (int i = 0; i < 105; i++) dy[i] = 1.0f;
            CHECK_OK(kiln_plan_forward(p));
            CHECK_OK(kiln_plan_backward(p));
            int bad = 0, dropped = 0;
            for (int i = 0; i < 105; i++) {
                int kept = yv[i] != 0.0f || xv[i] == 0.0f;
                dropped += !kept;
                bad += dx[i] != (kept ? 1.0f / (1.0f - 0.4f) : 0.0f);
            }
            CHECK(bad == 0);
            CHECK(dropped > 10 && dropped < 75);
        }
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_dropout_gradients(void) {
    for (int training = 0; training <= 1; training++)
        for (int residual = 0; residual <= 1; residual++) check_grad(training, residual);
}

static void test_dropout_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "features", KILN_F32, 1, (int64_t[]){8});
    float bad[] = {1.0f, -0.1f, 1.5f, NAN};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(kiln_dropout(g, x, bad[i]) == NULL);
        CHECK_ERR_HAS("rate must be in [0, 1)");
        CHECK_ERR_HAS("features");
    }
    kiln_node *ids = kiln_input(g, "ids", KILN_I32, 1, (int64_t[]){8});
    CHECK(kiln_dropout(g, ids, 0.5f) == NULL);
    CHECK_ERR_HAS("ids");
    CHECK_ERR_HAS("I32");
    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_dropout(g, NULL, 0.5f) == NULL);
    CHECK_ERR_HAS("first failure");
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_dropout_inference_identity);
    RUN(test_dropout_mask_scale_fraction);
    RUN(test_dropout_determinism);
    RUN(test_dropout_gradients);
    RUN(test_dropout_errors);
    return kiln_test_summary();
}

/* bench/deterministic — what train.deterministic costs: one training step (forward, backward,
 * Adam) of the Fashion-MNIST MLP, the CNN of examples/fashion_mnist/cnn.yaml and that CNN with
 * batch norm after each convolution, batch 128, in plans with and without
 * kiln_plan_opts.deterministic, at the current OpenMP thread count.
 *
 *   build/bench_deterministic [--rounds R] [--steps S]
 *
 * Each round times S steps of one plan, then S steps of the other (interleaved, so that a busy
 * machine slows both alike); the table gives the fastest round and the median of each, in
 * milliseconds per step, and the ratio of the medians. The two graphs start from the same
 * weights and data, so they do the same work.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kiln/kiln.h"

typedef struct {
    kiln_graph *g;
    kiln_plan *p;
    kiln_optim *opt;
} model;

/* kind 0: MLP 784-128-10; 1: the CNN; 2: the CNN with batch norm */
static model build(int kind, int det) {
    model m;
    m.g = kiln_graph_new(1);
    int64_t in[3] = {1, 28, 28};
    kiln_node *x = kiln_input(m.g, "x", KILN_F32, 3, in), *y = kiln_input(m.g, "y", KILN_I32, 0, NULL), *h = x;
    if (kind == 0) {
        h = kiln_flatten(m.g, h);
        h = kiln_dense(m.g, h, 128, KILN_ACT_RELU);
    } else {
        h = kiln_conv2d(m.g, h, 32, 3, 1, KILN_PAD_SAME, kind == 2 ? KILN_ACT_NONE : KILN_ACT_RELU);
        if (kind == 2) h = kiln_relu(m.g, kiln_batchnorm(m.g, h));
        h = kiln_maxpool2d(m.g, h, 2);
        h = kiln_conv2d(m.g, h, 64, 3, 1, KILN_PAD_SAME, kind == 2 ? KILN_ACT_NONE : KILN_ACT_RELU);
        if (kind == 2) h = kiln_relu(m.g, kiln_batchnorm(m.g, h));
        h = kiln_maxpool2d(m.g, h, 2);
        h = kiln_flatten(m.g, h);
        h = kiln_dense(m.g, h, 128, KILN_ACT_RELU);
    }
    kiln_node *out = kiln_dense(m.g, h, 10, KILN_ACT_NONE);
    kiln_node *loss = kiln_softmax_cross_entropy(m.g, out, y, 0);
    kiln_node *outs[1] = {loss};
    kiln_plan_opts o = {.outputs = outs, .n_outputs = 1, .loss = loss, .batch = 128, .training = 1, .deterministic = det};
    if (!loss || !(m.p = kiln_plan_new(m.g, &o))) {
        fprintf(stderr, "bench_deterministic: %s\n", kiln_last_error());
        exit(1);
    }
    float *xd = kiln_plan_data(m.p, x);
    int32_t *yd = kiln_plan_data(m.p, y);
    for (int64_t i = 0; i < 128 * 784; i++) xd[i] = kiln_rng_uniform(3, 0, (uint64_t)i);
    for (int i = 0; i < 128; i++) yd[i] = i % 10;
    kiln_optim_config c = {.kind = KILN_OPT_ADAM};
    m.opt = kiln_optim_new(&c, kiln_graph_trainable_size(m.g));
    return m;
}

static double steps(model *m, int n) {
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        kiln_plan_forward(m->p);
        kiln_plan_backward(m->p);
        kiln_optim_step(m->opt, kiln_graph_params(m->g), kiln_graph_grads(m->g), 1e-3f);
    }
    return (bench_now() - t0) / n;
}

int main(int argc, char **argv) {
    int rounds = 7, n = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) n = atoi(argv[i + 1]);
    }
    if (rounds < 1 || rounds > 99 || n < 1) {
        fprintf(stderr, "usage: bench_deterministic [--rounds 1..99] [--steps N]\n");
        return 2;
    }
    static const char *const NAMES[] = {"MLP 784-128-10", "CNN (cnn.yaml)", "CNN + batch norm"};
    printf("%d threads, batch 128, %d rounds of %d steps each way (ms per step)\n", omp_get_max_threads(), rounds, n);
    printf("%-18s %10s %10s %10s %10s %8s\n", "model", "off min", "off med", "on min", "on med", "on/off");
    for (int k = 0; k < 3; k++) {
        model a = build(k, 0), b = build(k, 1);
        steps(&a, 3), steps(&b, 3); /* warm up */
        double ta[99], tb[99];
        for (int r = 0; r < rounds; r++) ta[r] = steps(&a, n), tb[r] = steps(&b, n);
        qsort(ta, (size_t)rounds, sizeof *ta, bench_cmp_double);
        qsort(tb, (size_t)rounds, sizeof *tb, bench_cmp_double);
        printf("%-18s %10.2f %10.2f %10.2f %10.2f %8.3f\n", NAMES[k], 1e3 * ta[0], 1e3 * ta[rounds / 2], 1e3 * tb[0],
               1e3 * tb[rounds / 2], tb[rounds / 2] / ta[rounds / 2]);
        kiln_plan_free(a.p), kiln_plan_free(b.p);
        kiln_optim_free(a.opt), kiln_optim_free(b.opt);
        kiln_graph_free(a.g), kiln_graph_free(b.g);
    }
    return 0;
}

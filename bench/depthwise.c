/* bench/depthwise — depthwise conv2d (groups = C) against a dense conv2d, forward and
 * forward+backward, at MobileNetV2-like shapes, to see whether oneDNN's grouped convolution
 * runs a fast (jit) kernel for it. Run with ONEDNN_VERBOSE=1 to see the implementations.
 *
 *   build/bench_depthwise [--seconds S] [--batch B] [--deterministic]
 *
 * Each case is one layer (relu fused) in a training plan whose gradient root is its output:
 * forward, then backward into kernel, bias and input. Reported: ms per call, GFLOP/s (2 MACs)
 * and GB/s of activations (x and y read or written once per pass: forward 1x, backward ~3x).
 * A depthwise conv does 1/C of a dense conv's work per byte, so it is bound by memory, not
 * arithmetic: GB/s is the number to compare with the machine's bandwidth.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kiln/kiln.h"

typedef struct {
    kiln_plan *plan;
    int fwd_only;
} step_ctx;

static void step(void *p) {
    step_ctx *s = p;
    kiln_plan_forward(s->plan);
    if (!s->fwd_only) kiln_plan_backward(s->plan);
}

/* The median seconds per step over 3 rounds (after 2 warm-up steps). */
static double time_it(step_ctx *s, double seconds) {
    return bench_median_time(step, s, seconds, 2, 3);
}

typedef struct {
    const char *name;
    int depthwise, C, H, W, F, k, s; /* F: dense filters */
} bench_case;

static int det;

static kiln_plan *build(const bench_case *c, int B, int fwd_only, kiln_graph **gout, double *mac, double *bytes) {
    kiln_graph *g = kiln_graph_new(1);
    int64_t d[4] = {B, c->C, c->H, c->W};
    kiln_node *x = kiln_param(g, "x", 4, d, (kiln_init){KILN_INIT_HE_UNIFORM}, 1, 0, 0), *y;
    if (c->depthwise)
        y = kiln_depthwise_conv2d_ex(g, x, &(kiln_depthwise_conv2d_opts){.kernel = {c->k, c->k}, .stride = {c->s, c->s},
                                                                      .padding = KILN_PAD_SAME, .act = KILN_ACT_RELU});
    else
        y = kiln_conv2d(g, x, c->F, c->k, c->s, KILN_PAD_SAME, KILN_ACT_RELU);
    kiln_plan *p = y ? kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = fwd_only ? NULL : y,
                                                          .batch = B, .training = 1, .deterministic = det})
                     : NULL;
    if (!p) {
        fprintf(stderr, "bench_depthwise: %s\n", kiln_last_error());
        exit(1);
    }
    kiln_shape ys = kiln_plan_shape(p, y);
    double OH = (double)ys.dims[2], OW = (double)ys.dims[3], F = (double)ys.dims[1];
    *mac = (double)B * OH * OW * F * (c->depthwise ? 1 : c->C) * c->k * c->k;
    *bytes = 4.0 * ((double)B * c->C * c->H * c->W + (double)B * F * OH * OW);
    float *xd = kiln_plan_data(p, x);
    for (int64_t i = 0; i < (int64_t)B * c->C * c->H * c->W; i++) xd[i] = kiln_rng_uniform(3, 0, (uint64_t)i) - 0.5f;
    if (!fwd_only) {
        float *dy = kiln_plan_grad(p, y);
        for (int64_t i = 0; i < kiln_shape_numel(&ys); i++) dy[i] = kiln_rng_uniform(3, 1, (uint64_t)i) - 0.5f;
    }
    *gout = g;
    return p;
}

int main(int argc, char **argv) {
    double seconds = 1.0;
    int B = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--deterministic")) det = 1;
        else return fprintf(stderr, "usage: bench_depthwise [--seconds S] [--batch B] [--deterministic]\n"), 2;
    }
    static const bench_case cases[] = {
        {"depthwise 32 3x3 56x56", 1, 32, 56, 56, 0, 3, 1},
        {"dense 32->32 3x3 56x56", 0, 32, 56, 56, 32, 3, 1},
        {"dense 32->1 3x3 56x56 (same MACs)", 0, 32, 56, 56, 1, 3, 1},
        {"depthwise 144 3x3 s2 28x28", 1, 144, 28, 28, 0, 3, 2},
        {"dense 144->144 3x3 s2 28x28", 0, 144, 28, 28, 144, 3, 2},
        {"dense 144->1 3x3 s2 28x28 (same MACs)", 0, 144, 28, 28, 1, 3, 2},
    };
    printf("batch %d, %d threads%s\n%-40s %9s %8s %7s %11s %8s %7s\n", B, omp_get_max_threads(), det ? ", deterministic" : "", "case", "fwd ms",
           "GFLOP/s", "GB/s", "fwd+bwd ms", "GFLOP/s", "GB/s");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kiln_graph *g1, *g2;
        double mac, bytes;
        step_ctx f = {build(&cases[i], B, 1, &g1, &mac, &bytes), 1};
        double tf = time_it(&f, seconds);
        step_ctx s = {build(&cases[i], B, 0, &g2, &mac, &bytes), 0};
        double ts = time_it(&s, seconds);
        printf("%-40s %9.2f %8.1f %7.1f %11.2f %8.1f %7.1f\n", cases[i].name, tf * 1e3, 2 * mac / tf / 1e9,
               bytes / tf / 1e9, ts * 1e3, 6 * mac / ts / 1e9, 4 * bytes / ts / 1e9);
        kiln_plan_free(f.plan), kiln_plan_free(s.plan);
        kiln_graph_free(g1), kiln_graph_free(g2);
    }
    return 0;
}

/* bench/ops — achieved GFLOP/s of dense and conv2d forward+backward at the shapes of the
 * Fashion-MNIST MLP and CNN (batch 128; ../shared/peers/torch_fmnist.py), and the fraction of
 * this machine's sgemm peak measured in the same run (oneDNN's dnnl_sgemm, 2048^3, all threads).
 *
 *   build/bench_ops [--seconds S] [--peak]
 *
 * Each case runs one layer in a plan whose gradient root is the layer's output (dL/dy random),
 * like a training step: forward, then backward into weights, bias and (except for the first
 * layer, whose input is data) the input. A conv is followed by its 2x2 max pooling, as in the
 * CNN, so that its output stays in oneDNN's blocked layout; the pool's time is included, its
 * FLOPs are not. FLOPs count the multiply-adds actually performed: forward 2MKN, each backward
 * product 2MKN (conv: 2 * B * OH * OW * F * C/g * kh * kw).
 * Timing: warm up, then repeat for S seconds (default 1) and report the median of 5 rounds.
 */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kiln/kiln.h"

/* The median seconds per call over 5 rounds of ~seconds/5 (after 3 warm-up calls). */
static double time_it(void (*fn)(void *), void *ctx, double seconds) {
    return bench_median_time(fn, ctx, seconds, 3, 5);
}

typedef struct {
    int n;
    float *a, *b, *c;
} sgemm_ctx;

static void run_sgemm(void *p) {
    sgemm_ctx *s = p;
    dnnl_sgemm('N', 'N', s->n, s->n, s->n, 1.0f, s->a, s->n, s->b, s->n, 0.0f, s->c, s->n);
}

typedef struct {
    kiln_plan *plan;
    int fwd_only;
} step_ctx;

static void run_step(void *p) {
    step_ctx *s = p;
    kiln_plan_forward(s->plan);
    if (!s->fwd_only) kiln_plan_backward(s->plan);
}

typedef struct {
    const char *name;
    int conv; /* 0: dense */
    int batch, in_c, h, w, out, k;
    int first; /* input is data: no gradient to it */
} bench_case;

/* Builds the case, returns its plan (and fills flops per step, fwd and total). */
static kiln_plan *build(const bench_case *c, kiln_graph **gout, double *f_fwd, double *f_all, int fwd_only) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x, *y;
    int64_t B = c->batch;
    if (c->conv) {
        int64_t d[4] = {B, c->in_c, c->h, c->w};
        x = c->first ? kiln_input(g, "x", KILN_F32, 3, d + 1)
                     : kiln_param(g, "x", 4, d, (kiln_init){KILN_INIT_HE_UNIFORM}, 1, 0, 0);
        y = kiln_conv2d(g, x, c->out, c->k, 1, KILN_PAD_SAME, KILN_ACT_RELU);
        y = kiln_maxpool2d(g, y, 2); /* as in the network: the conv's output stays blocked */
        double mac = (double)B * c->h * c->w * c->out * c->in_c * c->k * c->k;
        *f_fwd = 2 * mac;
        *f_all = 2 * mac * (c->first ? 2 : 3);
    } else {
        int64_t d[2] = {B, c->in_c};
        x = c->first ? kiln_input(g, "x", KILN_F32, 1, d + 1)
                     : kiln_param(g, "x", 2, d, (kiln_init){KILN_INIT_HE_UNIFORM}, 1, 0, 0);
        y = kiln_dense(g, x, c->out, KILN_ACT_RELU);
        double mac = (double)B * c->in_c * c->out;
        *f_fwd = 2 * mac;
        *f_all = 2 * mac * (c->first ? 2 : 3);
    }
    if (!y) {
        fprintf(stderr, "bench_ops: %s\n", kiln_last_error());
        exit(1);
    }
    kiln_plan_opts o = {.outputs = &y, .n_outputs = 1, .loss = fwd_only ? NULL : y, .batch = c->batch, .training = 1};
    kiln_plan *p = kiln_plan_new(g, &o);
    if (!p) {
        fprintf(stderr, "bench_ops: %s\n", kiln_last_error());
        exit(1);
    }
    kiln_shape xs = kiln_plan_shape(p, x), ys = kiln_plan_shape(p, y);
    float *xd = kiln_plan_data(p, x);
    for (int64_t i = 0; i < kiln_shape_numel(&xs); i++) xd[i] = kiln_rng_uniform(3, 0, (uint64_t)i);
    if (!fwd_only) {
        float *dy = kiln_plan_grad(p, y);
        for (int64_t i = 0; i < kiln_shape_numel(&ys); i++) dy[i] = kiln_rng_uniform(3, 1, (uint64_t)i) - 0.5f;
    }
    *gout = g;
    return p;
}

int main(int argc, char **argv) {
    double seconds = 1.0;
    int peak_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--peak") == 0) peak_only = 1;
        else {
            fprintf(stderr, "usage: bench_ops [--seconds S] [--peak]\n  --peak  print only the sgemm peak (GFLOP/s)\n");
            return 2;
        }
    }
    int threads = omp_get_max_threads();
    sgemm_ctx sg = {.n = 2048};
    size_t nn = (size_t)sg.n * sg.n;
    sg.a = kiln_alloc(nn * 4), sg.b = kiln_alloc(nn * 4), sg.c = kiln_alloc(nn * 4);
    for (size_t i = 0; i < nn; i++) sg.a[i] = sg.b[i] = 1e-3f * (float)(i % 1000);
    double t = time_it(run_sgemm, &sg, seconds);
    double peak = 2.0 * sg.n * sg.n * sg.n / t / 1e9;
    if (peak_only) {
        printf("%.1f\n", peak);
        kiln_free(sg.a), kiln_free(sg.b), kiln_free(sg.c);
        return 0;
    }
    printf("sgemm peak (oneDNN dnnl_sgemm %d^3, %d threads): %.1f GFLOP/s\n\n", sg.n, threads, peak);
    kiln_free(sg.a), kiln_free(sg.b), kiln_free(sg.c);

    static const bench_case cases[] = {
        {"mlp dense 784->512", 0, 128, 784, 1, 1, 512, 0, 1},
        {"mlp dense 512->256", 0, 128, 512, 1, 1, 256, 0, 0},
        {"mlp dense 256->10", 0, 128, 256, 1, 1, 10, 0, 0},
        {"cnn conv 1->32 3x3 28x28 +pool", 1, 128, 1, 28, 28, 32, 3, 1},
        {"cnn conv 32->64 3x3 14x14 +pool", 1, 128, 32, 14, 14, 64, 3, 0},
        {"cnn dense 3136->128", 0, 128, 3136, 1, 1, 128, 0, 0},
        {"cnn dense 128->10", 0, 128, 128, 1, 1, 10, 0, 0},
    };
    printf("%-32s %12s %10s %8s %12s %10s %8s\n", "case (batch 128)", "fwd ms", "GFLOP/s", "%peak",
           "fwd+bwd ms", "GFLOP/s", "%peak");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bench_case *c = &cases[i];
        double ff, fa, dummy;
        kiln_graph *g1, *g2;
        step_ctx f = {build(c, &g1, &ff, &dummy, 1), 1};
        double tf = time_it(run_step, &f, seconds);
        step_ctx s = {build(c, &g2, &dummy, &fa, 0), 0};
        double ts = time_it(run_step, &s, seconds);
        printf("%-32s %12.3f %10.1f %7.1f%% %12.3f %10.1f %7.1f%%\n", c->name, tf * 1e3, ff / tf / 1e9,
               100 * ff / tf / 1e9 / peak, ts * 1e3, fa / ts / 1e9, 100 * fa / ts / 1e9 / peak);
        kiln_plan_free(f.plan), kiln_plan_free(s.plan);
        kiln_graph_free(g1), kiln_graph_free(g2);
    }
    return 0;
}

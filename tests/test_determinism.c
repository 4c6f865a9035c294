/* test_determinism.c — results that do not depend on the number of threads
 * (kiln_plan_opts.deterministic, train.deterministic; docs/engine.md "Determinism").
 *
 * oneDNN 2.6 cuts its reductions by thread count: a convolution's weight gradient over the
 * batch, a matmul's inner dimension (forward included, at larger thread counts), batch norm's
 * statistics. So every op below is run at 1, 2 and 3 OpenMP threads (threads may outnumber
 * the cores: what is tested is the order of the sums, not speed) and must give the same bits:
 *  - a first convolution (1 input channel, plain image), a conv -> pool -> conv -> pool chain
 *    (blocked layouts between them), two dense layers sharing an input (dx accumulates), batch
 *    norm (training statistics, running statistics, backward), with shapes that cut into
 *    several chunks and a shorter last one; forward values and every gradient;
 *  - the same in a deterministic plan agree with an ordinary plan's within float rounding, and
 *    pass the gradient check;
 *  - ten training steps of a CNN with batch norm, dropout, Adam and gradient clipping;
 *  - kiln train of a CNN config with default settings at --threads 1 and 2 (child processes):
 *    the same final checkpoint, byte for byte (the 1-vs-2-thread check).
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "kiln/trainer.h"

/* ---- single ops ---- */

enum { CASE_CONV_FIRST, CASE_CONV_CHAIN, CASE_DENSE, CASE_BATCHNORM, N_CASES };
static const char *const CASE_NAMES[] = {"first conv", "conv chain", "dense pair", "batch norm"};

typedef struct {
    float *v; /* the output, then every parameter's gradient, then every parameter */
    size_t n;
} result;

static void append(result *r, const float *p, size_t n) {
    r->v = realloc(r->v, (r->n + n) * sizeof *r->v);
    memcpy(r->v + r->n, p, n * sizeof *p);
    r->n += n;
}

static kiln_node *build_case(kiln_graph *g, int c, int *batch) {
    kiln_node *x, *y;
    switch (c) {
    case CASE_CONV_FIRST: /* 45 images: two chunks, 23 and 22 */
        *batch = 45;
        x = kiln_param(g, "x", 4, (int64_t[]){45, 1, 28, 28}, (kiln_init){KILN_INIT_HE_UNIFORM}, 1, 1, 1);
        return kiln_conv2d(g, x, 16, 3, 1, KILN_PAD_SAME, KILN_ACT_TANH);
    case CASE_CONV_CHAIN: /* 13 images: chunks of 3 and a last one of 1 */
        *batch = 13;
        x = kiln_param(g, "x", 4, (int64_t[]){13, 16, 14, 14}, (kiln_init){KILN_INIT_HE_UNIFORM}, 1, 1, 1);
        y = kiln_conv2d(g, x, 32, 3, 1, KILN_PAD_SAME, KILN_ACT_TANH);
        y = kiln_avgpool2d(g, y, 2); /* smooth, for the gradient check */
        y = kiln_conv2d(g, y, 16, 3, 1, KILN_PAD_SAME, KILN_ACT_SIGMOID);
        return kiln_avgpool2d(g, y, 2);
    case CASE_DENSE: /* 300 rows: 4 chunks; dW: 200 rows of x^T in 4 chunks */
        *batch = 300;
        x = kiln_param(g, "x", 2, (int64_t[]){300, 200}, (kiln_init){KILN_INIT_HE_UNIFORM}, 1, 1, 1);
        y = kiln_add(g, kiln_dense(g, x, 150, KILN_ACT_TANH), kiln_dense(g, x, 150, KILN_ACT_NONE));
        return kiln_dense(g, y, 7, KILN_ACT_NONE);
    default:
        *batch = 37;
        x = kiln_param(g, "x", 4, (int64_t[]){37, 12, 5, 5}, (kiln_init){KILN_INIT_HE_UNIFORM}, 1, 1, 1);
        return kiln_batchnorm(g, x);
    }
}

/* Forward and backward of case c at `threads` threads; dL/dy is fixed. */
static result run_case(int c, int threads, int det) {
    result r = {0};
    omp_set_num_threads(threads);
    kiln_graph *g = kiln_graph_new(21);
    int batch;
    kiln_node *y = build_case(g, c, &batch);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    kiln_plan *p = y ? kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = batch,
                                                         .training = 1, .deterministic = det})
                     : NULL;
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (p) {
        kiln_shape ys = kiln_plan_shape(p, y);
        size_t ny = (size_t)kiln_shape_numel(&ys);
        kiln_test_fill(kiln_plan_grad(p, y), ny, -1, 1, 77);
        CHECK_OK(kiln_plan_forward(p));
        CHECK_OK(kiln_plan_backward(p));
        append(&r, kiln_plan_data(p, y), ny);
        append(&r, kiln_graph_grads(g), kiln_graph_trainable_size(g));
        append(&r, kiln_graph_params(g), kiln_graph_params_size(g)); /* running statistics */
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
    omp_set_num_threads(2);
    return r;
}

static void test_ops_same_bits_at_any_thread_count(void) {
    for (int c = 0; c < N_CASES; c++) {
        result one = run_case(c, 1, 1);
        for (int t = 2; t <= 3; t++) {
            result more = run_case(c, t, 1);
            size_t diff = 0, first = 0;
            for (size_t i = 0; i < one.n && i < more.n; i++)
                if (memcmp(&one.v[i], &more.v[i], sizeof(float)) != 0) first = diff++ ? first : i;
            CHECK_MSG(one.n == more.n && diff == 0, "%s: %zu of %zu values differ between 1 and %d threads (first at %zu)",
                      CASE_NAMES[c], diff, one.n, t, first);
            free(more.v);
        }
        free(one.v);
    }
}

/* The deterministic plan computes what the ordinary one does, up to the order of its sums. */
static void test_ops_agree_with_ordinary_plans(void) {
    for (int c = 0; c < N_CASES; c++) {
        result d = run_case(c, 2, 1), o = run_case(c, 2, 0);
        CHECK(d.n == o.n);
        double big = 0;
        for (size_t i = 0; i < o.n; i++) big = fabs(o.v[i]) > big ? fabs(o.v[i]) : big;
        size_t worst = 0;
        double r = d.n == o.n ? kiln_test_compare(d.v, o.v, o.n, 1e-6 * big, 1e-4, &worst) : 2;
        CHECK_MSG(r <= 1, "%s: worst at %zu: %g vs %g", CASE_NAMES[c], worst, (double)d.v[worst], (double)o.v[worst]);
        free(d.v), free(o.v);
    }
}

static void test_ops_gradient_check(void) {
    for (int c = 0; c < N_CASES; c++) {
        kiln_graph *g = kiln_graph_new(5);
        int batch;
        kiln_node *y = build_case(g, c, &batch);
        kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = batch,
                                                          .training = 1, .deterministic = 1});
        CHECK(p != NULL);
        if (p) CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 2e-3, 5e-3, 12) == 0, "%s", CASE_NAMES[c]);
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

/* ---- training steps ---- */

/* Ten steps of a CNN (conv 16 -> batch norm -> relu -> pool -> conv 32 -> pool -> dropout ->
 * dense 10) with Adam and gradient clipping; returns the parameters and optimizer-free state. */
static result train_steps(int threads) {
    result r = {0};
    omp_set_num_threads(threads);
    kiln_graph *g = kiln_graph_new(9);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 3, (int64_t[]){1, 28, 28});
    kiln_node *lab = kiln_input(g, "y", KILN_I32, 0, NULL);
    kiln_node *h = kiln_conv2d(g, x, 16, 3, 1, KILN_PAD_SAME, KILN_ACT_NONE);
    h = kiln_maxpool2d(g, kiln_relu(g, kiln_batchnorm(g, h)), 2);
    h = kiln_maxpool2d(g, kiln_conv2d(g, h, 32, 3, 1, KILN_PAD_SAME, KILN_ACT_RELU), 2);
    h = kiln_dropout(g, kiln_flatten(g, h), 0.25f);
    kiln_node *out = kiln_dense(g, h, 10, KILN_ACT_NONE);
    kiln_node *loss = kiln_softmax_cross_entropy(g, out, lab, 0);
    kiln_plan *p = loss ? kiln_plan_new(g, &(kiln_plan_opts){.outputs = &loss, .n_outputs = 1, .loss = loss,
                                                            .batch = 64, .training = 1, .deterministic = 1})
                        : NULL;
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    kiln_optim *opt = kiln_optim_new(&(kiln_optim_config){.kind = KILN_OPT_ADAM, .clip_norm = 0.5f},
                                     kiln_graph_trainable_size(g));
    for (int step = 0; p && opt && step < 10; step++) {
        float *xd = kiln_plan_data(p, x);
        int32_t *yd = kiln_plan_data(p, lab);
        for (int i = 0; i < 64 * 784; i++) xd[i] = kiln_rng_uniform(4, (uint64_t)step, (uint64_t)i);
        for (int i = 0; i < 64; i++) yd[i] = (i * 7 + step) % 10;
        kiln_plan_set_step(p, (uint64_t)step);
        CHECK_OK(kiln_plan_forward(p));
        CHECK_OK(kiln_plan_backward(p));
        CHECK_OK(kiln_optim_step(opt, kiln_graph_params(g), kiln_graph_grads(g), 1e-3f));
    }
    if (p) append(&r, kiln_graph_params(g), kiln_graph_params_size(g));
    kiln_optim_free(opt);
    kiln_plan_free(p);
    kiln_graph_free(g);
    omp_set_num_threads(2);
    return r;
}

static void test_training_same_bits_at_any_thread_count(void) {
    result one = train_steps(1);
    CHECK(one.n > 0);
    for (int t = 2; t <= 3; t++) {
        result more = train_steps(t);
        CHECK_MSG(one.n == more.n && memcmp(one.v, more.v, one.n * sizeof *one.v) == 0,
                  "parameters after 10 steps differ between 1 and %d threads", t);
        free(more.v);
    }
    free(one.v);
}

/* ---- kiln train ---- */

#define FM "/usr/share/datasets/fashion-mnist"

static const char *CNN_CONFIG =
    "experiment: det\n"
    "seed: 4\n"
    "data:\n"
    "  source: idx\n"
    "  train: {images: " FM "/t10k-images-idx3-ubyte.gz, labels: " FM "/t10k-labels-idx1-ubyte.gz}\n"
    "  validation_split: 0.1\n"
    "  normalize: {scale: 0.00392156862745098}\n"
    "  batch_size: 64\n"
    "model:\n"
    "  input: [1, 28, 28]\n"
    "  layers:\n"
    "    - conv2d: {filters: 16, kernel: 3, padding: same}\n"
    "    - batchnorm\n"
    "    - relu\n"
    "    - maxpool2d: {size: 2}\n"
    "    - conv2d: {filters: 32, kernel: 3, padding: same, activation: relu}\n"
    "    - maxpool2d: {size: 2}\n"
    "    - flatten\n"
    "    - dropout: {rate: 0.2}\n"
    "    - dense: {units: 10}\n"
    "loss: softmax_cross_entropy\n"
    "metrics: [accuracy]\n"
    "optimizer: {adam: {learning_rate: 0.002}}\n"
    "train:\n"
    "  max_steps: 30\n"
    "  clip_norm: 1.0\n"
    "  checkpoint: {every_steps: 30}\n"
    "log: {tensorboard: false}\n";

static char root[64];

/* kiln train in a child process (the parent's OpenMP state stays out of it). */
static int train_child(const char *config, int threads, char *run_dir, size_t cap) {
    int fds[2];
    if (pipe(fds)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        char runs[128];
        snprintf(runs, sizeof runs, "%s/runs", root);
        kiln_train_opts o = {.config_path = config, .runs_dir = runs, .quiet = 1, .threads = threads};
        kiln_train_result r;
        kiln_status st = kiln_train(&o, &r);
        if (st) fprintf(stderr, "kiln_train: %s\n", kiln_last_error());
        if (write(fds[1], r.run_dir, strlen(r.run_dir) + 1) < 0) _exit(3);
        _exit(st == KILN_OK ? 0 : 1);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], run_dir, cap - 1);
    run_dir[n > 0 ? n : 0] = 0;
    close(fds[0]);
    int status = -1;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_kiln_train_cnn_1_vs_2_threads(void) {
    char config[128], run[2][2048];
    snprintf(config, sizeof config, "%s/cnn.yaml", root);
    FILE *f = fopen(config, "w");
    fputs(CNN_CONFIG, f);
    fclose(f);
    for (int i = 0; i < 2; i++) CHECK(train_child(config, i + 1, run[i], sizeof run[i]) == 0);
    void *w[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/checkpoints/step-30/weights.safetensors", run[i]);
        CHECK_OK(kiln_file_read_all(path, &w[i], &len[i], 1 << 26));
    }
    CHECK_MSG(w[0] && w[1] && len[0] == len[1] && memcmp(w[0], w[1], len[0]) == 0,
              "step-30 weights (parameters, batch-norm statistics, Adam slots) differ between 1 and 2 threads");
    kiln_free(w[0]), kiln_free(w[1]);
}

int main(void) {
    /* kiln train first: its children are forked before this process starts OpenMP threads
     * (GNU OpenMP's thread pool does not survive a fork) */
    struct stat st;
    if (stat(FM "/t10k-images-idx3-ubyte.gz", &st) == 0) {
        snprintf(root, sizeof root, "/tmp/kiln-test-det-XXXXXX");
        if (!mkdtemp(root)) return 1;
        RUN(test_kiln_train_cnn_1_vs_2_threads);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    } else {
        printf("kiln train check skipped: Fashion-MNIST is not installed (scripts/setup.sh installs it)\n");
    }
    omp_set_num_threads(2);
    RUN(test_ops_same_bits_at_any_thread_count);
    RUN(test_ops_agree_with_ordinary_plans);
    RUN(test_ops_gradient_check);
    RUN(test_training_same_bits_at_any_thread_count);
    return kiln_test_summary();
}

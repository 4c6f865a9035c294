/* test_norm.c — batch and layer normalization: forward against plain double loops (training
 * and inference batch norm, odd shapes, batch 1, ranks 2 to 6, without scale or center),
 * backward against finite differences in both plan modes, accumulation (x feeding the norm
 * and a residual add), the running statistics after several training steps against a hand
 * computation, layer norm on rows with a large offset, and builder errors. Synchronized batch
 * norm (kiln_plan_on_reduce): two "processes" on two threads, each with half of a batch (split
 * unevenly) and a reduce callback that adds their sums, against one plan over the whole batch;
 * inference-mode batch norm never calls the callback. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const kiln_init glorot = {KILN_INIT_GLOROT_UNIFORM, 0};

static float *param_data(kiln_graph *g, kiln_plan *p, const char *layer, const char *suffix) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", layer, suffix);
    kiln_node *n = kiln_graph_find(g, name);
    return n ? kiln_plan_data(p, n) : NULL;
}

/* Fills a parameter (if the layer has it) with uniform values in [lo, hi). */
static void fill_param(kiln_graph *g, kiln_plan *p, const char *layer, const char *suffix,
                       int64_t n, float lo, float hi, uint64_t stream) {
    float *v = param_data(g, p, layer, suffix);
    if (v) kiln_test_fill(v, (size_t)n, lo, hi, stream);
}

/* ---- batch norm reference: x [B, C, S] in double; stats NULL = batch statistics ---- */
static void ref_bn(const float *x, const float *gamma, const float *beta, const float *mmean,
                   const float *mvar, int training, float eps, int64_t B, int64_t C, int64_t S,
                   float *y, double *bmean, double *bvar) {
    for (int64_t c = 0; c < C; c++) {
        double mean = 0, var = 0, n = (double)(B * S);
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < S; s++) mean += x[(b * C + c) * S + s];
        mean /= n;
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < S; s++) {
                double d = x[(b * C + c) * S + s] - mean;
                var += d * d;
            }
        var /= n;
        if (bmean) bmean[c] = mean, bvar[c] = var;
        double m = training ? mean : mmean[c], v = training ? var : mvar[c];
        double gm = gamma ? gamma[c] : 1.0, bt = beta ? beta[c] : 0.0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = (b * C + c) * S + s;
                y[i] = (float)((x[i] - m) / sqrt(v + eps) * gm + bt);
            }
    }
}

/* x is a trainable parameter of the given shape (axis 0 plays the batch). */
static void check_bn(int ndim, const int64_t *dims, int training, int no_scale, int no_center) {
    char what[160], sh[96];
    kiln_shape xs = kiln_shape_make(ndim, dims);
    snprintf(what, sizeof what, "x=%s training=%d no_scale=%d no_center=%d",
             kiln_shape_str(&xs, sh, sizeof sh), training, no_scale, no_center);
    kiln_graph *g = kiln_graph_new(11);
    kiln_node *x = kiln_param(g, "x", ndim, dims, glorot, 1, 1, 1);
    kiln_batchnorm_opts o = {.no_scale = no_scale, .no_center = no_center, .epsilon = 1e-3f};
    kiln_node *y = kiln_batchnorm_ex(g, x, &o);
    CHECK_MSG(y != NULL, "%s: %s", what, kiln_last_error());
    if (!y) return kiln_graph_free(g);
    CHECK(strcmp(kiln_node_name(y), "batch_normalization_1") == 0);
    kiln_plan *p = kiln_plan_new(
        g, &(kiln_plan_opts){
               .outputs = &y, .n_outputs = 1, .loss = y, .batch = 1, .training = training});
    CHECK_MSG(p != NULL, "%s: %s", what, kiln_last_error());
    if (!p) return kiln_graph_free(g);
    int64_t B = dims[0], C = dims[1], n = kiln_shape_numel(&xs), S = n / (B * C);
    const char *L = "batch_normalization_1";
    /* an offset and a spread per element, so means and variances are far from 0 and 1 */
    kiln_test_fill(kiln_plan_data(p, x), (size_t)n, -1.0f, 3.0f, 21);
    fill_param(g, p, L, "gamma", C, 0.5f, 1.5f, 22);
    fill_param(g, p, L, "beta", C, -0.5f, 0.5f, 23);
    fill_param(g, p, L, "moving_mean", C, -0.5f, 0.5f, 24);
    fill_param(g, p, L, "moving_variance", C, 0.5f, 2.0f, 25);
    float *mm = param_data(g, p, L, "moving_mean"), *mv = param_data(g, p, L, "moving_variance");
    float *mm0 = malloc((size_t)C * sizeof *mm0), *mv0 = malloc((size_t)C * sizeof *mv0);
    memcpy(mm0, mm, (size_t)C * sizeof *mm0);
    memcpy(mv0, mv, (size_t)C * sizeof *mv0);
    CHECK_OK(kiln_plan_forward(p));
    float *ref = malloc((size_t)n * sizeof *ref);
    double *bm = malloc((size_t)C * sizeof *bm), *bv = malloc((size_t)C * sizeof *bv);
    ref_bn(kiln_plan_data(p, x), param_data(g, p, L, "gamma"), param_data(g, p, L, "beta"), mm0,
           mv0, training, 1e-3f, B, C, S, ref, bm, bv);
    size_t wi;
    double r = kiln_test_compare(kiln_plan_data(p, y), ref, (size_t)n, 2e-5, 2e-4, &wi);
    CHECK_MSG(r <= 1, "%s: forward worst at %zu ratio %g", what, wi, r);
    /* one forward: running stats moved by 1% toward the batch's (unbiased variance) */
    double cnt = (double)(B * S), corr = cnt > 1 ? cnt / (cnt - 1) : 1.0;
    for (int64_t c = 0; c < C; c++) {
        double em = training ? 0.99 * mm0[c] + 0.01 * bm[c] : mm0[c];
        double ev = training ? 0.99 * mv0[c] + 0.01 * bv[c] * corr : mv0[c];
        CHECK_NEAR(mm[c], em, 1e-5);
        CHECK_NEAR(mv[c], ev, 1e-5);
    }
    CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0, "%s", what);
    free(ref), free(bm), free(bv), free(mm0), free(mv0);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_batchnorm_forward_backward(void) {
    static const struct {
        int ndim;
        int64_t dims[6];
    } shapes[] = {
        {2, {1, 3}},        {2, {5, 4}},       {2, {8, 1}},          {3, {3, 2, 7}},
        {4, {1, 3, 4, 5}},  {4, {2, 3, 5, 5}}, {5, {2, 3, 2, 3, 2}}, {6, {2, 2, 1, 2, 3, 2}},
        {4, {4, 16, 3, 3}},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int training = 0; training <= 1; training++)
            check_bn(shapes[i].ndim, shapes[i].dims, training, 0, 0);
    for (int training = 0; training <= 1; training++) {
        check_bn(3, (int64_t[]){3, 4, 5}, training, 1, 0);
        check_bn(3, (int64_t[]){3, 4, 5}, training, 0, 1);
        check_bn(3, (int64_t[]){3, 4, 5}, training, 1, 1);
    }
}

/* x feeds batch norm and a residual add: x's gradient accumulates over both. */
static void test_batchnorm_accumulate(void) {
    for (int training = 0; training <= 1; training++) {
        kiln_graph *g = kiln_graph_new(5);
        kiln_node *x = kiln_param(g, "x", 4, (int64_t[]){3, 2, 3, 4}, glorot, 1, 1, 1);
        kiln_node *y = kiln_add(g, kiln_batchnorm(g, x), x);
        CHECK_MSG(y != NULL, "%s", kiln_last_error());
        if (!y) return kiln_graph_free(g);
        kiln_plan *p = kiln_plan_new(
            g, &(kiln_plan_opts){
                   .outputs = &y, .n_outputs = 1, .loss = y, .batch = 1, .training = training});
        CHECK(p != NULL);
        if (p) {
            fill_param(g, p, "batch_normalization_1", "gamma", 2, 0.5f, 1.5f, 3);
            fill_param(g, p, "batch_normalization_1", "moving_variance", 2, 0.5f, 1.5f, 4);
            CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0, "training=%d",
                      training);
        }
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

/* Running statistics after several training forwards over different batches. x is a plan input
 * [B, C, H]; no loss (a training plan that only runs forward updates them too). */
static void check_moving_stats(const kiln_batchnorm_opts *o, double momentum) {
    const int B = 4, C = 3, H = 5, steps = 4;
    kiln_graph *g = kiln_graph_new(2);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 2, (int64_t[]){C, H});
    kiln_node *y = o ? kiln_batchnorm_ex(g, x, o) : kiln_batchnorm(g, x);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (!y) return kiln_graph_free(g);
    const char *L = kiln_node_name(y);
    kiln_plan *p = kiln_plan_new(
        g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .batch = B, .training = 1});
    kiln_plan *inf = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .batch = B});
    CHECK(p != NULL && inf != NULL);
    if (!p || !inf) {
        kiln_plan_free(p), kiln_plan_free(inf), kiln_graph_free(g);
        return;
    }
    double em[3] = {0, 0, 0}, ev[3] = {1, 1, 1}; /* initial zeros and ones */
    float *X = kiln_plan_data(p, x);
    for (int t = 0; t < steps; t++) {
        kiln_test_fill(X, (size_t)B * C * H, -2.0f + t, 2.0f + 2 * t, 100 + (uint64_t)t);
        CHECK_OK(kiln_plan_forward(p));
        for (int c = 0; c < C; c++) {
            double mean = 0, var = 0, n = B * H;
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) mean += X[(b * C + c) * H + h];
            mean /= n;
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) {
                    double d = X[(b * C + c) * H + h] - mean;
                    var += d * d;
                }
            em[c] = momentum * em[c] + (1 - momentum) * mean;
            ev[c] = momentum * ev[c] + (1 - momentum) * var / (n - 1);
        }
    }
    float *mm = param_data(g, p, L, "moving_mean"), *mv = param_data(g, p, L, "moving_variance");
    for (int c = 0; c < C; c++) {
        CHECK_NEAR(mm[c], em[c], 1e-5 + 1e-5 * fabs(em[c]));
        CHECK_NEAR(mv[c], ev[c], 1e-5 + 1e-5 * fabs(ev[c]));
    }
    /* the inference plan over the same graph normalizes with them, and leaves them alone */
    float keep_m[3], keep_v[3];
    memcpy(keep_m, mm, sizeof keep_m);
    memcpy(keep_v, mv, sizeof keep_v);
    memcpy(kiln_plan_data(inf, x), X, (size_t)B * C * H * sizeof(float));
    CHECK_OK(kiln_plan_forward(inf));
    CHECK(memcmp(keep_m, mm, sizeof keep_m) == 0 && memcmp(keep_v, mv, sizeof keep_v) == 0);
    float ref[60];
    float eps = o && o->epsilon ? o->epsilon : 1e-3f;
    ref_bn(X, param_data(g, p, L, "gamma"), param_data(g, p, L, "beta"), mm, mv, 0, eps, B, C, H,
           ref, NULL, NULL);
    CHECK(kiln_test_compare(kiln_plan_data(inf, y), ref, 60, 2e-5, 2e-4, NULL) <= 1);
    kiln_plan_free(p);
    kiln_plan_free(inf);
    kiln_graph_free(g);
}

static void test_batchnorm_moving_stats(void) {
    check_moving_stats(NULL, 0.99); /* Keras defaults */
    kiln_batchnorm_opts o = {.momentum = 0.8f, .epsilon = 1e-2f, .name = "bn"};
    check_moving_stats(&o, 0.8f);
}

/* x is a plan input (no gradient of its own): dx goes to scratch and is dropped, while gamma
 * and beta still get theirs, in both plan modes, at a batch that is not the build batch. */
static void test_batchnorm_input_x(void) {
    for (int training = 0; training <= 1; training++) {
        kiln_graph *g = kiln_graph_new(6);
        kiln_node *x = kiln_input(g, "image", KILN_F32, 3, (int64_t[]){3, 4, 5});
        kiln_node *y = kiln_batchnorm(g, x);
        CHECK_MSG(y != NULL, "%s", kiln_last_error());
        kiln_plan *p = kiln_plan_new(
            g, &(kiln_plan_opts){
                   .outputs = &y, .n_outputs = 1, .loss = y, .batch = 3, .training = training});
        CHECK_MSG(p != NULL, "%s", kiln_last_error());
        if (p) {
            CHECK(kiln_plan_grad(p, x) == NULL);
            kiln_test_fill(kiln_plan_data(p, x), 3 * 60, -1.0f, 2.0f, 8);
            fill_param(g, p, "batch_normalization_1", "gamma", 3, 0.5f, 1.5f, 9);
            CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0, "training=%d",
                      training);
        }
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

/* ---- synchronized batch norm ---- */

/* Two peers exchange through a barrier: each reduce call returns slot 0 + slot 1 (the same order
 * on both), as MPI_Allreduce(SUM) does. The global loss is L_0 + L_1 (weights 1), so KILN_REDUCE_GRAD
 * is the plain sum as well. */
typedef struct {
    pthread_barrier_t bar;
    double *slot[2];
    int n[2], calls[2][2]; /* [peer][kind] */
} sbn_link;

typedef struct {
    sbn_link *link;
    int rank, det;
    int64_t row0, rows; /* this peer's rows of the global batch */
    const float *X, *DY; /* global batch [B, C, S] and dL/dy */
    int64_t CS;
    float *y, *dx, *dgamma, *dbeta, *mm, *mv; /* out: y and dx rows, [C] vectors */
    kiln_status st;
} sbn_peer;

static kiln_status sbn_reduce(void *ctx, double *v, int n, kiln_reduce_kind kind) {
    sbn_peer *p = ctx;
    sbn_link *l = p->link;
    double tmp[64];
    if (n > 64) return kiln_error(KILN_ERR_INVALID, "test: reduce of %d values", n);
    l->slot[p->rank] = v, l->n[p->rank] = n, l->calls[p->rank][kind]++;
    pthread_barrier_wait(&l->bar);
    int same = l->n[0] == l->n[1];
    for (int i = 0; same && i < n; i++) tmp[i] = l->slot[0][i] + l->slot[1][i];
    pthread_barrier_wait(&l->bar);
    if (!same) return kiln_error(KILN_ERR_INVALID, "test: peers reduce %d and %d", l->n[0], l->n[1]);
    memcpy(v, tmp, (size_t)n * sizeof *v);
    return KILN_OK;
}

/* x [rows, C, 4, 5] as a trainable parameter (axis 0 plays the batch, so dx is checked); the
 * same seed and fills everywhere give every graph the same gamma, beta and moving statistics. */
static kiln_status sbn_run(sbn_peer *q, kiln_reduce_fn fn) {
    const int64_t C = 3, S = 20;
    kiln_graph *g = kiln_graph_new(7);
    kiln_node *x = kiln_param(g, "x", 4, (int64_t[]){q->rows, C, 4, 5}, glorot, 1, 1, 1);
    kiln_node *y = kiln_batchnorm_ex(g, x, &(kiln_batchnorm_opts){.momentum = 0.8f});
    kiln_plan *p = y ? kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y,
                                                          .batch = 1, .training = 1,
                                                          .deterministic = q->det})
                     : NULL;
    kiln_status st = p ? KILN_OK : KILN_ERR_INVALID;
    const char *L = y ? kiln_node_name(y) : "";
    if (!st) {
        if (fn) kiln_plan_on_reduce(p, fn, q);
        memcpy(kiln_plan_data(p, x), q->X + q->row0 * C * S, (size_t)(q->rows * C * S) * 4);
        fill_param(g, p, L, "gamma", C, 0.5f, 1.5f, 31);
        fill_param(g, p, L, "beta", C, -0.5f, 0.5f, 32);
        fill_param(g, p, L, "moving_mean", C, -0.5f, 0.5f, 33);
        fill_param(g, p, L, "moving_variance", C, 0.5f, 2.0f, 34);
        st = kiln_plan_forward(p);
    }
    if (!st) {
        memcpy(kiln_plan_grad(p, y), q->DY + q->row0 * C * S, (size_t)(q->rows * C * S) * 4);
        st = kiln_plan_backward(p);
    }
    if (!st) {
        char nm[160];
        size_t n = (size_t)(q->rows * C * S) * 4;
        memcpy(q->y + q->row0 * C * S, kiln_plan_data(p, y), n);
        memcpy(q->dx + q->row0 * C * S, kiln_plan_grad(p, x), n);
        snprintf(nm, sizeof nm, "%s.gamma", L);
        memcpy(q->dgamma, kiln_plan_grad(p, kiln_graph_find(g, nm)), (size_t)C * 4);
        snprintf(nm, sizeof nm, "%s.beta", L);
        memcpy(q->dbeta, kiln_plan_grad(p, kiln_graph_find(g, nm)), (size_t)C * 4);
        memcpy(q->mm, param_data(g, p, L, "moving_mean"), (size_t)C * 4);
        memcpy(q->mv, param_data(g, p, L, "moving_variance"), (size_t)C * 4);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
    return st;
}

static void *sbn_thread(void *arg) {
    sbn_peer *q = arg;
    q->st = sbn_run(q, sbn_reduce);
    return NULL;
}

static void check_sync_bn(int det, int64_t split) {
    enum { B = 6, C = 3, S = 20, N = B * C * S };
    static float X[N], DY[N], y1[N], dx1[N], y2[N], dx2[N];
    float g1[C], b1[C], mm1[C], mv1[C], g2[2][C], b2[2][C], mm2[2][C], mv2[2][C];
    kiln_test_fill(X, N, -1.0f, 3.0f, 41);
    kiln_test_fill(DY, N, -1.0f, 1.0f, 42);
    /* one plan over the whole batch */
    sbn_peer one = {.rows = B, .X = X, .DY = DY, .det = det, .y = y1, .dx = dx1, .dgamma = g1,
                    .dbeta = b1, .mm = mm1, .mv = mv1};
    CHECK_OK(sbn_run(&one, NULL));
    /* two peers: rows [0, split) and [split, B) */
    sbn_link link = {0};
    pthread_barrier_init(&link.bar, NULL, 2);
    sbn_peer q[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        q[r] = (sbn_peer){.link = &link, .rank = r, .det = det, .row0 = r ? split : 0,
                          .rows = r ? B - split : split, .X = X, .DY = DY, .y = y2, .dx = dx2,
                          .dgamma = g2[r], .dbeta = b2[r], .mm = mm2[r], .mv = mv2[r]};
        pthread_create(&th[r], NULL, sbn_thread, &q[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&link.bar);
    CHECK_MSG(q[0].st == KILN_OK && q[1].st == KILN_OK, "det=%d: %s", det, kiln_last_error());
    /* forward: two reductions (sums and count, squared deviations); backward: one */
    for (int r = 0; r < 2; r++)
        CHECK_MSG(link.calls[r][KILN_REDUCE_SUM] == 2 && link.calls[r][KILN_REDUCE_GRAD] == 1,
                  "peer %d: %d sum and %d grad reductions", r, link.calls[r][KILN_REDUCE_SUM],
                  link.calls[r][KILN_REDUCE_GRAD]);
    size_t wi = 0;
    double e = kiln_test_compare(y2, y1, N, 1e-5, 1e-5, &wi);
    CHECK_MSG(e <= 1, "det=%d split=%lld: y worst at %zu (%g)", det, (long long)split, wi, e);
    e = kiln_test_compare(dx2, dx1, N, 1e-5, 1e-4, &wi);
    CHECK_MSG(e <= 1, "det=%d split=%lld: dx worst at %zu (%g)", det, (long long)split, wi, e);
    for (int c = 0; c < C; c++) {
        /* dgamma, dbeta: each peer's own sums, which add up to the whole batch's */
        CHECK_NEAR(g2[0][c] + g2[1][c], g1[c], 1e-4 * (1 + fabs(g1[c])));
        CHECK_NEAR(b2[0][c] + b2[1][c], b1[c], 1e-4 * (1 + fabs(b1[c])));
        CHECK_MSG(fabs(b2[0][c] - b1[c]) > 1e-3, "dbeta of peer 0 is not its own sum");
        for (int r = 0; r < 2; r++) { /* the moving statistics: the global batch's, on both */
            CHECK_NEAR(mm2[r][c], mm1[c], 1e-6 * (1 + fabs(mm1[c])));
            CHECK_NEAR(mv2[r][c], mv1[c], 1e-6 * (1 + fabs(mv1[c])));
        }
    }
}

static kiln_status count_reduce(void *ctx, double *v, int n, kiln_reduce_kind kind) {
    (void)v, (void)n, (void)kind;
    ++*(int *)ctx;
    return KILN_OK;
}

static void test_batchnorm_sync(void) {
    for (int det = 0; det <= 1; det++) {
        check_sync_bn(det, 3);
        check_sync_bn(det, 2); /* unequal: the count is reduced too */
    }
    /* a frozen (inference-mode) batch norm in a training plan, and an evaluation plan: no call */
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *x = kiln_param(g, "x", 3, (int64_t[]){4, 2, 3}, glorot, 1, 1, 1);
    kiln_node *y = kiln_batchnorm(g, x);
    CHECK(y != NULL);
    if (!y) return kiln_graph_free(g);
    kiln_graph_set_inference(g, y, 1);
    int calls = 0;
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y,
                                                      .batch = 1, .training = 1});
    kiln_plan *ev = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .batch = 1});
    CHECK(p != NULL && ev != NULL);
    if (p && ev) {
        kiln_plan_on_reduce(p, count_reduce, &calls);
        kiln_plan_on_reduce(ev, count_reduce, &calls);
        CHECK_OK(kiln_plan_forward(p));
        CHECK_OK(kiln_plan_backward(p));
        CHECK_OK(kiln_plan_forward(ev));
        CHECK(calls == 0);
    }
    kiln_plan_free(p), kiln_plan_free(ev);
    kiln_graph_set_inference(g, y, 0); /* training mode again: now it reduces */
    p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1,
                                           .training = 1});
    CHECK(p != NULL);
    if (p) {
        kiln_plan_on_reduce(p, count_reduce, &calls);
        CHECK_OK(kiln_plan_forward(p));
        CHECK_OK(kiln_plan_backward(p));
        CHECK(calls == 3);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_batchnorm_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *v = kiln_input(g, "scalars", KILN_F32, 0, NULL);
    CHECK(kiln_batchnorm(g, v) == NULL);
    CHECK_ERR_HAS("scalars");
    CHECK_ERR_HAS("[1]");
    CHECK_ERR_HAS("batch_normalization_1");
    kiln_node *ids = kiln_input(g, "ids", KILN_I32, 1, (int64_t[]){4});
    CHECK(kiln_batchnorm(g, ids) == NULL);
    CHECK_ERR_HAS("ids");
    CHECK_ERR_HAS("I32");
    kiln_node *x = kiln_input(g, "feat", KILN_F32, 1, (int64_t[]){4});
    CHECK(kiln_batchnorm_ex(g, x, &(kiln_batchnorm_opts){.momentum = 1.5f}) == NULL);
    CHECK_ERR_HAS("momentum");
    CHECK(kiln_batchnorm_ex(g, x, &(kiln_batchnorm_opts){.epsilon = -1.0f, .name = "bn_bad"}) ==
          NULL);
    CHECK_ERR_HAS("bn_bad");
    CHECK_ERR_HAS("epsilon");
    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_batchnorm(g, NULL) == NULL);
    CHECK_ERR_HAS("first failure");
    kiln_node *ok = kiln_batchnorm(g, x);
    CHECK_MSG(ok != NULL, "%s", kiln_last_error());
    kiln_graph_free(g);
}

/* ---- layer norm reference: x [M, D] in double (two passes) ---- */
static void ref_ln(const float *x, const float *gamma, const float *beta, float eps, int64_t M,
                   int64_t D, float *y) {
    for (int64_t m = 0; m < M; m++) {
        const float *r = x + m * D;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < D; j++) mean += r[j];
        mean /= (double)D;
        for (int64_t j = 0; j < D; j++) var += (r[j] - mean) * (r[j] - mean);
        var /= (double)D;
        for (int64_t j = 0; j < D; j++)
            y[m * D + j] = (float)((r[j] - mean) / sqrt(var + eps) * (gamma ? gamma[j] : 1.0) +
                                   (beta ? beta[j] : 0.0));
    }
}

static void check_ln(int ndim, const int64_t *dims, int no_scale, int no_center, float lo, float hi,
                     int max_per_param) {
    char what[160], sh[96];
    kiln_shape xs = kiln_shape_make(ndim, dims);
    snprintf(what, sizeof what, "x=%s no_scale=%d no_center=%d range=[%g, %g)",
             kiln_shape_str(&xs, sh, sizeof sh), no_scale, no_center, (double)lo, (double)hi);
    kiln_graph *g = kiln_graph_new(13);
    kiln_node *x = kiln_param(g, "x", ndim, dims, glorot, 1, 1, 1);
    kiln_node *y = kiln_layernorm_ex(
        g, x, &(kiln_layernorm_opts){.no_scale = no_scale, .no_center = no_center});
    CHECK_MSG(y != NULL, "%s: %s", what, kiln_last_error());
    if (!y) return kiln_graph_free(g);
    CHECK(strcmp(kiln_node_name(y), "layer_normalization_1") == 0);
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK_MSG(p != NULL, "%s: %s", what, kiln_last_error());
    if (!p) return kiln_graph_free(g);
    int64_t n = kiln_shape_numel(&xs), D = dims[ndim - 1], M = n / D;
    const char *L = "layer_normalization_1";
    kiln_test_fill(kiln_plan_data(p, x), (size_t)n, lo, hi, 31);
    fill_param(g, p, L, "gamma", D, 0.5f, 1.5f, 32);
    fill_param(g, p, L, "beta", D, -0.5f, 0.5f, 33);
    CHECK_OK(kiln_plan_forward(p));
    float *ref = malloc((size_t)n * sizeof *ref);
    ref_ln(kiln_plan_data(p, x), param_data(g, p, L, "gamma"), param_data(g, p, L, "beta"), 1e-5f,
           M, D, ref);
    size_t wi;
    double r = kiln_test_compare(kiln_plan_data(p, y), ref, (size_t)n, 2e-5, 2e-4, &wi);
    CHECK_MSG(r <= 1, "%s: forward worst at %zu ratio %g", what, wi, r);
    if (max_per_param > 0)
        CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, max_per_param) == 0, "%s", what);
    free(ref);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_layernorm_forward_backward(void) {
    static const struct {
        int ndim;
        int64_t dims[6];
    } shapes[] = {
        {2, {1, 1}}, {2, {1, 7}}, {2, {4, 5}}, {3, {3, 2, 9}}, {3, {2, 3, 130}}, {4, {2, 1, 3, 33}},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        check_ln(shapes[i].ndim, shapes[i].dims, 0, 0, -1.0f, 3.0f, 200);
    check_ln(2, (int64_t[]){3, 6}, 1, 0, -1.0f, 1.0f, 200);
    check_ln(2, (int64_t[]){3, 6}, 0, 1, -1.0f, 1.0f, 200);
    check_ln(2, (int64_t[]){3, 6}, 1, 1, -1.0f, 1.0f, 200);
    /* large enough for the threaded paths (rows in forward and dx, column blocks in dgamma) */
    check_ln(2, (int64_t[]){72, 520}, 0, 0, -2.0f, 2.0f, 60);
}

/* Rows far from zero with a small spread: a one-pass float variance would lose it all. The
 * reference is exact in double; the op must stay within float rounding of the centered data. */
static void test_layernorm_large_offset(void) {
    check_ln(2, (int64_t[]){4, 300}, 0, 0, 1000.0f, 1000.5f, 0);
    check_ln(2, (int64_t[]){3, 17}, 1, 1, -20000.0f, -19999.0f, 0);
}

static void test_layernorm_accumulate(void) {
    /* x feeds two layer norms whose outputs are added: dx accumulates. */
    kiln_graph *g = kiln_graph_new(4);
    kiln_node *x = kiln_param(g, "x", 3, (int64_t[]){2, 3, 6}, glorot, 1, 1, 1);
    kiln_node *a = kiln_layernorm(g, x);
    kiln_node *b =
        kiln_layernorm_ex(g, x, &(kiln_layernorm_opts){.epsilon = 1e-3f, .name = "ln_b"});
    kiln_node *y = kiln_add(g, a, b);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (!y) return kiln_graph_free(g);
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK(p != NULL);
    if (p) {
        fill_param(g, p, "layer_normalization_1", "gamma", 6, 0.5f, 1.5f, 5);
        fill_param(g, p, "ln_b", "gamma", 6, -1.5f, -0.5f, 6);
        CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_layernorm_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *v = kiln_input(g, "scalars", KILN_F32, 0, NULL);
    CHECK(kiln_layernorm(g, v) == NULL);
    CHECK_ERR_HAS("scalars");
    CHECK_ERR_HAS("[1]");
    CHECK_ERR_HAS("layer_normalization_1");
    kiln_node *ids = kiln_input(g, "tokens", KILN_I64, 1, (int64_t[]){4});
    CHECK(kiln_layernorm(g, ids) == NULL);
    CHECK_ERR_HAS("tokens");
    CHECK_ERR_HAS("I64");
    kiln_node *x = kiln_input(g, "feat", KILN_F32, 1, (int64_t[]){4});
    CHECK(kiln_layernorm_ex(g, x, &(kiln_layernorm_opts){.epsilon = NAN, .name = "ln_nan"}) ==
          NULL);
    CHECK_ERR_HAS("ln_nan");
    CHECK_ERR_HAS("epsilon");
    CHECK(kiln_layernorm(g, x) != NULL);
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_batchnorm_forward_backward);
    RUN(test_batchnorm_accumulate);
    RUN(test_batchnorm_moving_stats);
    RUN(test_batchnorm_input_x);
    RUN(test_batchnorm_errors);
    RUN(test_batchnorm_sync);
    RUN(test_layernorm_forward_backward);
    RUN(test_layernorm_large_offset);
    RUN(test_layernorm_accumulate);
    RUN(test_layernorm_errors);
    return kiln_test_summary();
}

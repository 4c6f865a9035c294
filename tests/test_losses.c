/* test_losses.c — the losses: values against plain double loops (class ids of both int types,
 * probability labels, label smoothing, rank-3 logits, batch 1, odd sizes, more elements than
 * one reduction chunk), extreme logits (±1000: finite values and gradients), label smoothing
 * against hand-computed numbers, gradients against finite differences (into the labels and
 * targets too), an upstream gradient other than 1, tensors consumed twice, bad class ids at run
 * time, and bad shapes, dtypes and attributes at build time. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

static kiln_node *param(kiln_graph *g, const char *name, int ndim, const int64_t *dims) {
    return kiln_param(g, name, ndim, dims, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
}

/* A plan for loss (which must have been built: a NULL loss fails the test). */
static kiln_plan *plan(kiln_graph *g, kiln_node *loss, int batch) {
    CHECK_MSG(loss != NULL, "build: %s", kiln_last_error());
    if (!loss) return NULL;
    kiln_plan *p = kiln_plan_new(
        g, &(kiln_plan_opts){.outputs = &loss, .n_outputs = 1, .loss = loss, .batch = batch});
    CHECK_MSG(p != NULL, "plan: %s", kiln_last_error());
    return p;
}

static float loss_value(kiln_plan *p, kiln_node *loss) {
    return *(const float *)kiln_plan_data(p, loss);
}

/* ---- references (double) ---- */

/* mean over rows of -sum_k t_k log_softmax(z)_k; ids (if not NULL) or probabilities probs;
 * grad (if not NULL) gets dL/dz = (softmax * sum(t) - t) / rows. */
static double ref_sce(const float *z, const int64_t *ids, const float *probs, int64_t rows,
                      int64_t K, double s, float *grad) {
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * K;
        double m = zr[0], sum = 0, T = 0;
        for (int64_t k = 1; k < K; k++) m = zr[k] > m ? zr[k] : m;
        for (int64_t k = 0; k < K; k++) sum += exp(zr[k] - m);
        double lse = m + log(sum);
        for (int64_t k = 0; k < K; k++) {
            double base = ids ? (ids[r] == k) : probs[r * K + k];
            T += (1 - s) * base + s / K;
        }
        for (int64_t k = 0; k < K; k++) {
            double base = ids ? (ids[r] == k) : probs[r * K + k], t = (1 - s) * base + s / K;
            total += t * (lse - zr[k]);
            if (grad) grad[r * K + k] = (float)((exp(zr[k] - lse) * T - t) / rows);
        }
    }
    return total / rows;
}

typedef enum { BCE, MSE, MAE, HUBER } pair_kind;

static double ref_pair(pair_kind k, double delta, const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = a[i], t = b[i], d = x - t;
        switch (k) {
        case BCE:
            s += -(t * log(1 / (1 + exp(-x))) + (1 - t) * log(1 / (1 + exp(x))));
            break;
        case MSE:
            s += d * d;
            break;
        case MAE:
            s += fabs(d);
            break;
        case HUBER:
            s += fabs(d) <= delta ? 0.5 * d * d : delta * (fabs(d) - 0.5 * delta);
            break;
        }
    }
    return s / n;
}

/* ---- softmax cross-entropy ---- */

/* Logits z [1, R, K] (a parameter: gradients checked directly) or [1, K], class-id labels of
 * dtype dt fed as an input [1, R] (or [1]). A parameter's first axis is fixed, so rows beyond
 * batch 1 come from R here and from a dense layer over an input in check_sce_batch. */
static void check_sce_ids(int64_t R, int64_t K, kiln_dtype dt, float s) {
    int rank3 = R > 1;
    int64_t rows = R;
    kiln_graph *g = kiln_graph_new(21);
    kiln_node *z =
        rank3 ? param(g, "z", 3, (int64_t[]){1, R, K}) : param(g, "z", 2, (int64_t[]){1, K});
    kiln_node *y = kiln_input(g, "y", dt, rank3, &R);
    kiln_node *L = kiln_softmax_cross_entropy(g, z, y, s);
    CHECK_MSG(L != NULL, "%s", kiln_last_error());
    if (!L) return kiln_graph_free(g);
    CHECK(kiln_node_shape(L).ndim == 0);
    kiln_plan *p = plan(g, L, 1);
    if (!p) return kiln_graph_free(g);
    int64_t *ids = malloc((size_t)rows * sizeof *ids);
    void *yv = kiln_plan_data(p, y);
    for (int64_t r = 0; r < rows; r++) {
        ids[r] = (r * 7 + 3) % K;
        if (dt == KILN_I32)
            ((int32_t *)yv)[r] = (int32_t)ids[r];
        else
            ((int64_t *)yv)[r] = ids[r];
    }
    kiln_test_fill(kiln_plan_data(p, z), (size_t)(rows * K), -4, 4, 5);
    CHECK_OK(kiln_plan_forward(p));
    double ref = ref_sce(kiln_plan_data(p, z), ids, NULL, rows, K, s, NULL);
    CHECK_NEAR(loss_value(p, L), ref, 1e-6 + 1e-5 * fabs(ref));
    CHECK_MSG(kiln_test_gradcheck(g, p, L, 1e-3, 1e-3, 3e-3, 200) == 0, "K=%lld rows=%lld s=%g",
              (long long)K, (long long)rows, s);
    free(ids);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

/* logits = dense(x) for an input x [B, 6]: SCE over a real batch, labels [B]; the gradient
 * check covers the dense parameters, which see dL/dlogits through the chain rule. */
static void check_sce_batch(int B, int K, float s) {
    kiln_graph *g = kiln_graph_new(24);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){6});
    kiln_node *z = kiln_dense(g, x, K, KILN_ACT_NONE);
    kiln_node *y = kiln_input(g, "y", KILN_I32, 0, NULL);
    kiln_node *L = kiln_softmax_cross_entropy(g, z, y, s);
    CHECK_MSG(L != NULL, "%s", kiln_last_error());
    kiln_plan *p = plan(g, L, B);
    if (p) {
        kiln_test_fill(kiln_plan_data(p, x), (size_t)B * 6, -2, 2, 6);
        int32_t *yv = kiln_plan_data(p, y);
        int64_t *ids = malloc((size_t)B * sizeof *ids);
        for (int r = 0; r < B; r++) yv[r] = (int32_t)(ids[r] = (r * 5 + 1) % K);
        CHECK_OK(kiln_plan_forward(p));
        double ref = ref_sce(kiln_plan_data(p, z), ids, NULL, B, K, s, NULL);
        CHECK_NEAR(loss_value(p, L), ref, 1e-6 + 1e-5 * fabs(ref));
        CHECK_MSG(kiln_test_gradcheck(g, p, L, 1e-3, 1e-3, 3e-3, 200) == 0, "B=%d K=%d", B, K);
        free(ids);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_sce_class_ids(void) {
    const int64_t rk[][2] = {{1, 3}, {1, 1}, {5, 7}, {2, 1}, {4, 10}, {12, 3}};
    for (size_t i = 0; i < sizeof rk / sizeof *rk; i++)
        for (int dt = 0; dt < 2; dt++) {
            check_sce_ids(rk[i][0], rk[i][1], dt ? KILN_I64 : KILN_I32, 0.0f);
            check_sce_ids(rk[i][0], rk[i][1], dt ? KILN_I64 : KILN_I32, 0.1f);
        }
    check_sce_ids(3, 5, KILN_I32, 0.25f);
    check_sce_ids(41, 500, KILN_I64, 0.1f); /* past the threading threshold */
    check_sce_batch(1, 4, 0.0f);
    check_sce_batch(7, 5, 0.0f);
    check_sce_batch(7, 5, 0.2f);
}

static void test_sce_probabilities(void) {
    /* labels as a trainable parameter (not normalized, so the general formula and the
     * gradient into the labels are both checked), and as a normalized input */
    for (int s10 = 0; s10 <= 3; s10 += 3) {
        float s = s10 / 10.0f;
        kiln_graph *g = kiln_graph_new(22);
        kiln_node *z = param(g, "z", 2, (int64_t[]){3, 5});
        kiln_node *t = param(g, "t", 2, (int64_t[]){3, 5});
        kiln_node *L = kiln_softmax_cross_entropy(g, z, t, s);
        kiln_plan *p = plan(g, L, 3);
        if (p) {
            CHECK_OK(kiln_plan_forward(p));
            double ref = ref_sce(kiln_plan_data(p, z), NULL, kiln_plan_data(p, t), 3, 5, s, NULL);
            CHECK_NEAR(loss_value(p, L), ref, 1e-6 + 1e-5 * fabs(ref));
            CHECK_MSG(kiln_test_gradcheck(g, p, L, 1e-3, 1e-3, 3e-3, 200) == 0, "s=%g", s);
        }
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
    kiln_graph *g = kiln_graph_new(23);
    kiln_node *z = param(g, "z", 3, (int64_t[]){1, 6, 4});
    kiln_node *t = kiln_input(g, "t", KILN_F32, 2, (int64_t[]){6, 4});
    kiln_node *L = kiln_softmax_cross_entropy(g, z, t, 0.2f);
    kiln_plan *p = plan(g, L, 1);
    if (p) {
        float *tv = kiln_plan_data(p, t);
        kiln_test_fill(tv, 24, 0, 1, 8);
        for (int r = 0; r < 6; r++) {
            double sum = 0;
            for (int k = 0; k < 4; k++) sum += tv[r * 4 + k];
            for (int k = 0; k < 4; k++) tv[r * 4 + k] = (float)(tv[r * 4 + k] / sum);
        }
        CHECK_OK(kiln_plan_forward(p));
        double ref = ref_sce(kiln_plan_data(p, z), NULL, tv, 6, 4, 0.2, NULL);
        CHECK_NEAR(loss_value(p, L), ref, 1e-6 + 1e-5 * fabs(ref));
        CHECK(kiln_plan_grad(p, t) == NULL); /* an input: no gradient */
        CHECK(kiln_test_gradcheck(g, p, L, 1e-3, 1e-3, 3e-3, 200) == 0);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_sce_label_smoothing_by_hand(void) {
    /* z = [1, 2, 3], lse = log(e + e^2 + e^3) = 3.40760596444438. With target
     * (1 - s) onehot(y) + s/3 the loss is lse - (1 - s) z_y - s mean(z) (mean(z) = 2):
     *   y = 0, s = 0.1: 3.40760596444438 - 0.9 - 0.2 = 2.30760596444438
     *   y = 2, s = 0.2: 3.40760596444438 - 2.4 - 0.4 = 0.60760596444438
     * and the mean of the two rows is 1.45760596444438. dL/dz for row 0 is
     * (softmax(z) - [0.9333.., 0.0333.., 0.0333..]) / 2 with softmax = [0.0900306, 0.2447285,
     * 0.6652410]. */
    const float s[2] = {0.1f, 0.2f};
    const int32_t y[2] = {0, 2};
    const double want[2] = {2.30760596444438, 0.60760596444438};
    for (int c = 0; c < 3; c++) { /* each row alone, then both (with smoothing 0.1 and 0.2 apart) */
        kiln_graph *g = kiln_graph_new(1);
        int64_t rows = c < 2 ? 1 : 2;
        kiln_node *z = param(g, "z", 3, (int64_t[]){1, rows, 3});
        kiln_node *lab = kiln_input(g, "y", KILN_I32, 1, &rows);
        kiln_node *L = kiln_softmax_cross_entropy(g, z, lab, c < 2 ? s[c] : 0.1f);
        kiln_plan *p = plan(g, L, 1);
        if (!p) {
            kiln_graph_free(g);
            continue;
        }
        float *zv = kiln_plan_data(p, z);
        int32_t *yv = kiln_plan_data(p, lab);
        for (int r = 0; r < rows; r++) {
            zv[r * 3] = 1, zv[r * 3 + 1] = 2, zv[r * 3 + 2] = 3;
            yv[r] = y[c < 2 ? c : r];
        }
        CHECK_OK(kiln_plan_forward(p));
        if (c < 2)
            CHECK_NEAR(loss_value(p, L), want[c], 1e-6);
        else
            CHECK_NEAR(loss_value(p, L),
                       (2.30760596444438 + (3.40760596444438 - 0.9 * 3 - 0.2)) / 2, 1e-6);
        CHECK_OK(kiln_plan_backward(p));
        if (c == 0) {
            const float *dz = kiln_plan_grad(p, z);
            CHECK_NEAR(dz[0], 0.0900306 - (0.9 + 0.1 / 3), 1e-6);
            CHECK_NEAR(dz[1], 0.2447285 - 0.1 / 3, 1e-6);
            CHECK_NEAR(dz[2], 0.6652410 - 0.1 / 3, 1e-6);
        }
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

static void test_sce_extreme_logits(void) {
    /* rows: [1000, -1000, 0] y=1 -> 2000; [-1000, 1000, -1000] y=1 -> 0; [0, 0, 1000] y=0 -> 1000
     */
    const float zin[9] = {1000, -1000, 0, -1000, 1000, -1000, 0, 0, 1000};
    const int64_t ids[3] = {1, 1, 0};
    const float probs[9] = {0, 1, 0, 0, 1, 0, 1, 0, 0};
    for (int c = 0; c < 4; c++) { /* ids / probabilities, smoothing 0 / 0.1 */
        float s = c & 1 ? 0.1f : 0.0f;
        kiln_graph *g = kiln_graph_new(1);
        kiln_node *z = param(g, "z", 3, (int64_t[]){1, 3, 3});
        kiln_node *lab = c < 2 ? kiln_input(g, "y", KILN_I64, 1, (int64_t[]){3})
                               : kiln_input(g, "y", KILN_F32, 2, (int64_t[]){3, 3});
        kiln_node *L = kiln_softmax_cross_entropy(g, z, lab, s);
        kiln_plan *p = plan(g, L, 1);
        if (!p) {
            kiln_graph_free(g);
            continue;
        }
        memcpy(kiln_plan_data(p, z), zin, sizeof zin);
        if (c < 2)
            memcpy(kiln_plan_data(p, lab), ids, sizeof ids);
        else
            memcpy(kiln_plan_data(p, lab), probs, sizeof probs);
        CHECK_OK(kiln_plan_forward(p));
        CHECK_OK(kiln_plan_backward(p));
        float ref_grad[9];
        double ref = ref_sce(zin, c < 2 ? ids : NULL, probs, 3, 3, s, ref_grad);
        if (s == 0) CHECK_NEAR(ref, 1000.0, 1e-9);
        CHECK_MSG(isfinite(loss_value(p, L)), "loss %g", loss_value(p, L));
        CHECK_NEAR(loss_value(p, L), ref, 1e-6 * ref);
        const float *dz = kiln_plan_grad(p, z);
        for (int i = 0; i < 9; i++) {
            CHECK_MSG(isfinite(dz[i]), "dz[%d] = %g", i, dz[i]);
            CHECK_NEAR(dz[i], ref_grad[i], 1e-6);
        }
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

static void test_sce_bad_class_id(void) {
    const int64_t bad[] = {3, -1, 1000000000000LL};
    for (int c = 0; c < 3; c++) {
        kiln_graph *g = kiln_graph_new(1);
        kiln_node *z = param(g, "z", 3, (int64_t[]){1, 4, 3});
        kiln_dtype dt = c == 2 ? KILN_I64 : KILN_I32;
        kiln_node *lab = kiln_input(g, "y", dt, 1, (int64_t[]){4});
        kiln_node *L = kiln_softmax_cross_entropy(g, z, lab, 0);
        kiln_plan *p = plan(g, L, 1);
        if (!p) {
            kiln_graph_free(g);
            continue;
        }
        void *yv = kiln_plan_data(p, lab);
        for (int r = 0; r < 4; r++) {
            int64_t v = r == 2 ? bad[c] : r % 3;
            if (dt == KILN_I32)
                ((int32_t *)yv)[r] = (int32_t)v;
            else
                ((int64_t *)yv)[r] = v;
        }
        kiln_status st = kiln_plan_forward(p);
        CHECK(st == KILN_ERR_INVALID);
        CHECK_ERR_HAS("softmax_cross_entropy_1");
        CHECK_ERR_HAS("row 2");
        char id[32];
        snprintf(id, sizeof id, "class id %lld", (long long)bad[c]);
        CHECK_ERR_HAS(id);
        CHECK_ERR_HAS("[0, 3)");
        if (dt == KILN_I32)
            ((int32_t *)yv)[2] = 0; /* fixed: forward runs again */
        else
            ((int64_t *)yv)[2] = 0;
        CHECK_OK(kiln_plan_forward(p));
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

/* ---- elementwise losses ---- */

static kiln_node *build_pair(kiln_graph *g, pair_kind k, kiln_node *a, kiln_node *b, float delta) {
    switch (k) {
    case BCE:
        return kiln_binary_cross_entropy(g, a, b);
    case MSE:
        return kiln_mse(g, a, b);
    case MAE:
        return kiln_mae(g, a, b);
    case HUBER:
        return kiln_huber(g, a, b, delta);
    }
    return NULL;
}

static const char *pair_name[] = {"binary_cross_entropy", "mse", "mae", "huber"};

/* a and b params of one shape (both get gradients); b in [0, 1] for cross-entropy. */
static void check_pair(pair_kind k, float delta, int ndim, const int64_t *dims) {
    kiln_graph *g = kiln_graph_new(31);
    kiln_node *a = param(g, "a", ndim, dims), *b = param(g, "b", ndim, dims);
    kiln_node *L = build_pair(g, k, a, b, delta);
    CHECK_MSG(L != NULL, "%s", kiln_last_error());
    if (!L) return kiln_graph_free(g);
    CHECK(kiln_node_shape(L).ndim == 0);
    char want[64];
    snprintf(want, sizeof want, "%s_1", pair_name[k]);
    CHECK(strcmp(kiln_node_name(L), want) == 0);
    kiln_plan *p = plan(g, L, 1);
    if (!p) return kiln_graph_free(g);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    float *av = kiln_plan_data(p, a), *bv = kiln_plan_data(p, b);
    kiln_test_fill(av, (size_t)n, -3, 3, 41);
    if (k == BCE)
        kiln_test_fill(bv, (size_t)n, 0, 1, 42);
    else
        kiln_test_fill(bv, (size_t)n, -2, 2, 42);
    CHECK_OK(kiln_plan_forward(p));
    double ref = ref_pair(k, delta == 0 ? 1.0 : delta, av, bv, n);
    CHECK_MSG(fabs(loss_value(p, L) - ref) <= 1e-6 + 1e-5 * fabs(ref), "%s n=%lld: %.9g vs %.9g",
              pair_name[k], (long long)n, loss_value(p, L), ref);
    CHECK_MSG(kiln_test_gradcheck(g, p, L, 1e-3, 1e-3, 3e-3, 200) == 0, "%s delta %g n=%lld",
              pair_name[k], delta, (long long)n);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_pair_losses(void) {
    const int64_t shapes[][3] = {{1, 1}, {1, 9}, {7, 3}, {2, 3, 5}, {3, 5000}, {1, 40001}};
    const int ranks[] = {2, 2, 2, 3, 2, 2};
    for (size_t s = 0; s < sizeof ranks / sizeof *ranks; s++) {
        check_pair(BCE, 0, ranks[s], shapes[s]);
        check_pair(MSE, 0, ranks[s], shapes[s]);
        check_pair(MAE, 0, ranks[s], shapes[s]);
        check_pair(HUBER, 0, ranks[s], shapes[s]); /* default delta 1 */
        check_pair(HUBER, 0.5f, ranks[s], shapes[s]);
        check_pair(HUBER, 2.5f, ranks[s], shapes[s]);
    }
}

static void test_pair_by_hand(void) {
    /* a = [3, -1, 0.5, 0], b = [1, 1, 0, 0]: d = [2, -2, 0.5, 0]
     * mse = (4 + 4 + 0.25) / 4 = 2.0625, mae = 4.5 / 4 = 1.125,
     * huber(1) = (1.5 + 1.5 + 0.125 + 0) / 4 = 0.78125; dmae/da = [1, -1, 1, 0] / 4 */
    const float av[4] = {3, -1, 0.5f, 0}, bv[4] = {1, 1, 0, 0};
    const double want[3] = {2.0625, 1.125, 0.78125};
    for (int k = MSE; k <= HUBER; k++) {
        kiln_graph *g = kiln_graph_new(1);
        kiln_node *a = param(g, "a", 3, (int64_t[]){1, 2, 2});
        kiln_node *b = kiln_input(g, "b", KILN_F32, 2, (int64_t[]){2, 2});
        kiln_node *L = build_pair(g, (pair_kind)k, a, b, 0);
        kiln_plan *p = plan(g, L, 1);
        if (!p) {
            kiln_graph_free(g);
            continue;
        }
        memcpy(kiln_plan_data(p, a), av, sizeof av);
        memcpy(kiln_plan_data(p, b), bv, sizeof bv);
        CHECK_OK(kiln_plan_forward(p));
        CHECK_NEAR(loss_value(p, L), want[k - MSE], 1e-7);
        CHECK_OK(kiln_plan_backward(p));
        const float *da = kiln_plan_grad(p, a);
        if (k == MAE) {
            CHECK(da[0] == 0.25f && da[1] == -0.25f && da[2] == 0.25f && da[3] == 0.0f);
        } else if (k == HUBER) {
            CHECK(da[0] == 0.25f && da[1] == -0.25f && da[2] == 0.125f && da[3] == 0.0f);
        }
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

static void test_bce_extreme_logits(void) {
    /* z = ±1000 with targets 0/1: losses [0, 0, 1000, 1000, log 2] -> mean 400.1386...,
     * gradients (sigmoid(z) - t) / 5 = [0, 0, 0.2, -0.2, -0.1]. */
    const float zin[5] = {1000, -1000, 1000, -1000, 0}, tin[5] = {1, 0, 0, 1, 1};
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *z = param(g, "z", 2, (int64_t[]){1, 5});
    kiln_node *t = kiln_input(g, "t", KILN_F32, 1, (int64_t[]){5});
    kiln_node *L = kiln_binary_cross_entropy(g, z, t);
    kiln_plan *p = plan(g, L, 1);
    if (p) {
        memcpy(kiln_plan_data(p, z), zin, sizeof zin);
        memcpy(kiln_plan_data(p, t), tin, sizeof tin);
        CHECK_OK(kiln_plan_forward(p));
        CHECK_NEAR(loss_value(p, L), (2000 + log(2.0)) / 5, 1e-4);
        CHECK_OK(kiln_plan_backward(p));
        const float *dz = kiln_plan_grad(p, z);
        const double want[5] = {0, 0, 0.2, -0.2, -0.1};
        for (int i = 0; i < 5; i++) CHECK_NEAR(dz[i], want[i], 1e-7);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

/* ---- graph-level cases ---- */

static void test_upstream_gradient(void) {
    /* A loss that is not the root: sigmoid(mse) and tanh(sce) make dL/dloss != 1. */
    kiln_graph *g = kiln_graph_new(51);
    kiln_node *a = param(g, "a", 3, (int64_t[]){1, 3, 4}),
              *b = param(g, "b", 3, (int64_t[]){1, 3, 4});
    kiln_node *y = kiln_input(g, "y", KILN_I32, 1, (int64_t[]){3});
    kiln_node *m = kiln_sigmoid(g, kiln_mse(g, a, b));
    kiln_node *s = kiln_tanh(g, kiln_softmax_cross_entropy(g, a, y, 0.1f));
    kiln_node *L = kiln_add(g, m, s);
    CHECK_MSG(L != NULL, "%s", kiln_last_error());
    if (L) CHECK(kiln_node_shape(L).ndim == 0);
    kiln_plan *p = plan(g, L, 1);
    if (p) {
        int32_t *yv = kiln_plan_data(p, y);
        yv[0] = 3, yv[1] = 0, yv[2] = 2;
        CHECK(kiln_test_gradcheck(g, p, L, 1e-3, 1e-3, 3e-3, 200) == 0);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_accumulate(void) {
    /* a and b feed mse, mae, huber and bce; also a loss of a tensor against itself. */
    kiln_graph *g = kiln_graph_new(52);
    kiln_node *a = param(g, "a", 2, (int64_t[]){4, 3}), *b = param(g, "b", 2, (int64_t[]){4, 3});
    kiln_node *L =
        kiln_add(g, kiln_add(g, kiln_mse(g, a, b), kiln_mae(g, a, b)),
                 kiln_add(g, kiln_huber(g, a, b, 0.7f), kiln_binary_cross_entropy(g, a, b)));
    CHECK_MSG(L != NULL, "%s", kiln_last_error());
    kiln_plan *p = plan(g, L, 1);
    if (p) CHECK(kiln_test_gradcheck(g, p, L, 1e-3, 1e-3, 3e-3, 200) == 0);
    kiln_plan_free(p);
    kiln_graph_free(g);

    g = kiln_graph_new(53);
    a = param(g, "a", 2, (int64_t[]){4, 3});
    kiln_node *self = kiln_huber(g, a, a, 0);
    p = plan(g, self, 1);
    if (p) {
        float *da = kiln_plan_grad(p, a);
        for (int i = 0; i < 12; i++) da[i] = 123.0f; /* must be overwritten, then added to */
        CHECK_OK(kiln_plan_forward(p));
        CHECK(loss_value(p, self) == 0.0f);
        CHECK_OK(kiln_plan_backward(p));
        for (int i = 0; i < 12; i++) CHECK(da[i] == 0.0f);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *z = kiln_input(g, "z", KILN_F32, 1, (int64_t[]){10});
    kiln_node *z3 = kiln_input(g, "z3", KILN_F32, 2, (int64_t[]){4, 10});
    kiln_node *p4 = kiln_input(g, "p4", KILN_F32, 1, (int64_t[]){4});
    kiln_node *ids = kiln_input(g, "ids", KILN_I32, 0, NULL);
    kiln_node *ids2 = kiln_input(g, "ids2", KILN_I32, 1, (int64_t[]){10});
    kiln_node *u8 = kiln_input(g, "u8", KILN_U8, 0, NULL);
    kiln_node *v = kiln_input(g, "v", KILN_F32, 0, NULL);

    CHECK(kiln_mse(g, z, p4) == NULL);
    CHECK_ERR_HAS("mse_1 (mse) got z=[1, 10], p4=[1, 4]");
    CHECK_ERR_HAS("same shape");
    CHECK(kiln_mae(g, z, ids2) == NULL);
    CHECK_ERR_HAS("mae_1");
    CHECK_ERR_HAS("F32");
    CHECK(kiln_huber(g, z, p4, 1) == NULL);
    CHECK_ERR_HAS("huber_1");
    CHECK(kiln_huber(g, z, z, -1) == NULL);
    CHECK_ERR_HAS("delta");
    CHECK(kiln_huber(g, z, z, INFINITY) == NULL);
    CHECK_ERR_HAS("delta");
    CHECK(kiln_binary_cross_entropy(g, z, p4) == NULL);
    CHECK_ERR_HAS("binary_cross_entropy_1");
    CHECK_ERR_HAS("logits and targets");

    CHECK(kiln_softmax_cross_entropy(g, z, ids2, 0) == NULL); /* ids [B, 10] for logits [B, 10] */
    CHECK_ERR_HAS("softmax_cross_entropy_1");
    CHECK_ERR_HAS("ids2=[1, 10]");
    CHECK_ERR_HAS("shape [1]");
    CHECK(kiln_softmax_cross_entropy(g, z3, ids, 0) == NULL); /* rank-3 logits need ids [B, 4] */
    CHECK_ERR_HAS("shape [1, 4]");
    CHECK(kiln_softmax_cross_entropy(g, z, p4, 0) == NULL);
    CHECK_ERR_HAS("p4=[1, 4]");
    CHECK_ERR_HAS("logits' shape [1, 10]");
    CHECK(kiln_softmax_cross_entropy(g, z, u8, 0) == NULL);
    CHECK_ERR_HAS("labels are U8");
    CHECK(kiln_softmax_cross_entropy(g, ids2, ids, 0) == NULL);
    CHECK_ERR_HAS("logits must be F32");
    CHECK(kiln_softmax_cross_entropy(g, v, ids, 0) == NULL);
    CHECK_ERR_HAS("v=[1]");
    CHECK(kiln_softmax_cross_entropy(g, z, ids, 1.0f) == NULL);
    CHECK_ERR_HAS("label_smoothing");
    CHECK(kiln_softmax_cross_entropy(g, z, ids, -0.1f) == NULL);
    CHECK_ERR_HAS("label_smoothing");
    CHECK(kiln_softmax_cross_entropy(g, z, ids, NAN) == NULL);
    CHECK_ERR_HAS("label_smoothing");

    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_softmax_cross_entropy(g, NULL, ids, 0) == NULL);
    CHECK(kiln_mse(g, z, NULL) == NULL);
    CHECK(kiln_huber(g, NULL, z, 1) == NULL);
    CHECK_ERR_HAS("first failure");
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_sce_class_ids);
    RUN(test_sce_probabilities);
    RUN(test_sce_label_smoothing_by_hand);
    RUN(test_sce_extreme_logits);
    RUN(test_sce_bad_class_id);
    RUN(test_pair_losses);
    RUN(test_pair_by_hand);
    RUN(test_bce_extreme_logits);
    RUN(test_upstream_gradient);
    RUN(test_accumulate);
    RUN(test_errors);
    return kiln_test_summary();
}

/* test_metrics.c — evaluation metrics: every metric against numbers worked out by hand in the
 * comments (a 3-class split where one class is never predicted, a class present only in the
 * predictions, a class present in neither; r2 with a constant output), top-k with ties and a NaN
 * logit, the one-logit binary mode, batching invariance (bit-identical values and confusion
 * matrix for batches of 1, 7 and all rows) and regression against a two-pass double reference,
 * the confusion matrix and its printed table, reset, bad labels (nothing of the batch added),
 * rejected configurations with their messages, and the metric-name helpers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define NANF __builtin_nanf("")

static kiln_metrics *make(int n_classes, int64_t n_outputs, const char *const *names, int n,
                          int top_k) {
    kiln_metrics *m = kiln_metrics_new(n_classes, n_outputs, names, n, top_k);
    CHECK_MSG(m != NULL, "kiln_metrics_new: %s", kiln_last_error());
    return m;
}

static double get(const kiln_metrics *m, const char *name) {
    int found = 0;
    double v = kiln_metrics_get(m, name, &found);
    CHECK_MSG(found, "metric %s not reported", name);
    return v;
}

/* ---- the 3-class example ----
 * row  label  logits            argmax  rank of label  (top-2 hit)
 *  0     0    [0.5, 0.5, -1]     0 (tie: lowest)  0    yes
 *  1     0    [0.1, 0.9, 0.3]    1                2    no
 *  2     1    [-1, 2, 2]         1 (tie)          0    yes
 *  3     1    [3, 1, 2]          0                2    no
 *  4     2    [NaN, 1, 5]        0 (NaN largest)  1    yes
 *  5     2    [4, 0, 4]          0 (tie)          1 (class 0 ties and is lower)  yes
 * accuracy 2/6, top-2 4/6. Confusion (rows true): [[1,1,0],[1,1,0],[2,0,0]].
 * class 0: tp 1, predicted 4, true 2: P 1/4, R 1/2, F1 2/(2+4) = 1/3
 * class 1: tp 1, predicted 2, true 2: P 1/2, R 1/2, F1 2/4 = 1/2
 * class 2: tp 0, predicted 0, true 2: P 0 (zero division), R 0, F1 0
 * macro P = 0.75/3 = 0.25, R = 1/3, F1 = (1/3 + 1/2)/3 = 5/18. */
static const float EX_LOGITS[6 * 3] = {0.5f, 0.5f, -1, 0.1f, 0.9f, 0.3f, -1, 2, 2,
                                       3,    1,    2,  NANF, 1,    5,    4,  0, 4};
static const int32_t EX_LABELS[6] = {0, 0, 1, 1, 2, 2};
static const char *const ALL_CLASS[] = {"accuracy", "top_k_accuracy", "precision", "recall", "f1"};

static void check_example(const kiln_metrics *m) {
    CHECK(kiln_metrics_rows(m) == 6);
    CHECK(kiln_metrics_nonfinite_rows(m) == 1);
    CHECK_NEAR(get(m, "accuracy"), 2.0 / 6, 1e-15);
    CHECK_NEAR(get(m, "top_k_accuracy"), 4.0 / 6, 1e-15);
    CHECK_NEAR(get(m, "precision"), 0.25, 1e-15);
    CHECK_NEAR(get(m, "recall"), 1.0 / 3, 1e-15);
    CHECK_NEAR(get(m, "f1"), 5.0 / 18, 1e-15);
}

static void test_classification_by_hand(void) {
    kiln_metrics *m = make(3, 3, ALL_CLASS, 5, 2);
    if (!m) return;
    /* rows 0-3 with mean loss 1, rows 4-5 with mean loss 4: loss (4 * 1 + 2 * 4) / 6 = 2 */
    CHECK_OK(kiln_metrics_add(m, EX_LOGITS, EX_LABELS, 4, 1.0f));
    CHECK_OK(kiln_metrics_add(m, EX_LOGITS + 12, EX_LABELS + 4, 2, 4.0f));
    check_example(m);
    CHECK_NEAR(get(m, "loss"), 2.0, 1e-15);
    const int64_t want[9] = {1, 1, 0, 1, 1, 0, 2, 0, 0};
    const int64_t *cm = kiln_metrics_confusion(m);
    CHECK(cm && memcmp(cm, want, sizeof want) == 0);
    kiln_metrics_free(m);

    /* n_classes 4, class 3 in neither labels nor predictions: left out of the macro averages, so
     * the same numbers (averaging over all 4 would give precision 0.1875). */
    float wide[6 * 4];
    for (int r = 0; r < 6; r++) {
        memcpy(wide + r * 4, EX_LOGITS + r * 3, 3 * sizeof(float));
        wide[r * 4 + 3] = -10;
    }
    m = make(4, 4, ALL_CLASS, 5, 2);
    if (!m) return;
    CHECK_OK(kiln_metrics_add(m, wide, EX_LABELS, 6, 0.0f));
    check_example(m);
    kiln_metrics_free(m);
}

/* A class present only among the predictions counts (precision 0, recall 0 by zero division).
 * 5 classes, labels [0, 1], predictions [3, 1]:
 * class 0: tp 0, true 1, predicted 0 -> P 0, R 0, F1 0
 * class 1: tp 1, true 1, predicted 1 -> P 1, R 1, F1 1
 * class 3: tp 0, true 0, predicted 1 -> P 0, R 0, F1 0
 * classes 2 and 4 appear nowhere: macro over 3 classes gives P = R = F1 = 1/3, accuracy 1/2. */
static void test_class_only_predicted(void) {
    kiln_metrics *m = make(5, 5, ALL_CLASS, 5, 1);
    if (!m) return;
    const float logits[2 * 5] = {0, 0, 0, 1, 0, 0, 1, 0, 0, 0};
    const int32_t labels[2] = {0, 1};
    CHECK_OK(kiln_metrics_add(m, logits, labels, 2, 0.5f));
    CHECK_NEAR(get(m, "accuracy"), 0.5, 0);
    CHECK_NEAR(get(m, "top_k_accuracy"), 0.5, 0);
    CHECK_NEAR(get(m, "precision"), 1.0 / 3, 1e-15);
    CHECK_NEAR(get(m, "recall"), 1.0 / 3, 1e-15);
    CHECK_NEAR(get(m, "f1"), 1.0 / 3, 1e-15);
    CHECK_NEAR(get(m, "loss"), 0.5, 0);
    CHECK(kiln_metrics_nonfinite_rows(m) == 0);
    kiln_metrics_free(m);
}

/* f1 is the mean of per-class f1s, not the f1 of macro precision and recall:
 * labels [0, 0, 0, 1], predictions [0, 1, 1, 1]:
 * class 0: tp 1, true 3, pred 1 -> P 1, R 1/3, F1 2/(3+1) = 1/2
 * class 1: tp 1, true 1, pred 3 -> P 1/3, R 1, F1 2/(1+3) = 1/2
 * macro P = R = 2/3, macro F1 = 1/2 (the f1 of the macros would be 2/3). */
static void test_f1_is_mean_of_f1s(void) {
    const char *names[] = {"f1", "precision", "recall"};
    kiln_metrics *m = make(2, 2, names, 3, 0);
    if (!m) return;
    const float logits[4 * 2] = {1, 0, 0, 1, 0, 1, 0, 1};
    const int32_t labels[4] = {0, 0, 0, 1};
    CHECK_OK(kiln_metrics_add(m, logits, labels, 4, 0));
    CHECK_NEAR(get(m, "f1"), 0.5, 1e-15);
    CHECK_NEAR(get(m, "precision"), 2.0 / 3, 1e-15);
    CHECK_NEAR(get(m, "recall"), 2.0 / 3, 1e-15);
    /* reported in the configured order, after loss */
    CHECK(kiln_metrics_count(m) == 4);
    CHECK(strcmp(kiln_metrics_name(m, 0), "loss") == 0);
    CHECK(strcmp(kiln_metrics_name(m, 1), "f1") == 0);
    CHECK(strcmp(kiln_metrics_name(m, 3), "recall") == 0);
    CHECK(kiln_metrics_name(m, 4) == NULL && kiln_metrics_name(m, -1) == NULL);
    CHECK(isnan(kiln_metrics_value(m, 4)));
    CHECK_NEAR(kiln_metrics_value(m, 1), 0.5, 1e-15);
    int found = 1;
    CHECK(isnan(kiln_metrics_get(m, "accuracy", &found)) && !found);
    CHECK(isnan(kiln_metrics_get(m, "val_f1", &found)) && !found);
    kiln_metrics_free(m);
}

/* All logits equal: the label's rank is its index, so top-3 hits labels 0, 1, 2 and argmax is
 * always 0. A NaN outranks numbers and equals other NaNs (ties between NaNs by index). */
static void test_top_k_ties(void) {
    const char *names[] = {"accuracy", "top_k_accuracy"};
    kiln_metrics *m = make(5, 5, names, 2, 3);
    if (!m) return;
    float logits[5 * 5];
    int32_t labels[5];
    for (int r = 0; r < 5; r++) {
        labels[r] = r;
        for (int j = 0; j < 5; j++) logits[r * 5 + j] = 1.5f;
    }
    CHECK_OK(kiln_metrics_add(m, logits, labels, 5, 0));
    CHECK_NEAR(get(m, "accuracy"), 1.0 / 5, 0);
    CHECK_NEAR(get(m, "top_k_accuracy"), 3.0 / 5, 0);

    /* [NaN, 7, NaN, 9, NaN], k = 2: order 0, 2, 4 (NaNs by index), then 3, 1.
     * label 4 -> rank 2, miss; label 3 -> rank 3, miss; label 0 -> rank 0 (argmax), hit;
     * label 2 -> rank 1, hit: top-2 2/4, accuracy 1/4. */
    kiln_metrics_free(m);
    m = make(5, 5, names, 2, 2);
    if (!m) return;
    const float nan_row[5] = {NANF, 7, NANF, 9, NANF};
    float rows4[4 * 5];
    for (int r = 0; r < 4; r++) memcpy(rows4 + r * 5, nan_row, sizeof nan_row);
    const int32_t l4[4] = {4, 3, 0, 2};
    CHECK_OK(kiln_metrics_add(m, rows4, l4, 4, 0));
    CHECK_NEAR(get(m, "top_k_accuracy"), 2.0 / 4, 0);
    CHECK_NEAR(get(m, "accuracy"), 1.0 / 4, 0);
    CHECK(kiln_metrics_nonfinite_rows(m) == 4);
    kiln_metrics_free(m);

    /* k >= n_classes always hits */
    m = make(3, 3, names, 2, 7);
    if (!m) return;
    CHECK_OK(kiln_metrics_add(m, EX_LOGITS, EX_LABELS, 6, 0));
    CHECK_NEAR(get(m, "top_k_accuracy"), 1.0, 0);
    kiln_metrics_free(m);

    /* top-1 equals accuracy on random logits with many ties (values from 4 levels) */
    m = make(6, 6, names, 2, 1);
    if (!m) return;
    float z[200 * 6];
    int32_t y[200];
    kiln_test_fill(z, 200 * 6, 0, 4, 11);
    for (int i = 0; i < 200 * 6; i++) z[i] = floorf(z[i]);
    for (int r = 0; r < 200; r++) y[r] = (int32_t)(r * 7 % 6);
    CHECK_OK(kiln_metrics_add(m, z, y, 200, 0));
    CHECK(get(m, "top_k_accuracy") == get(m, "accuracy"));
    kiln_metrics_free(m);
}

/* One logit per row: class 1 where logit > 0. logits [0.3, -0.2, 0, NaN], labels [1, 0, 1, 0]
 * -> predictions [1, 0, 0, 0]: accuracy 3/4; top-2 always hits. Confusion [[2,0],[1,1]]. */
static void test_binary_one_logit(void) {
    const char *names[] = {"accuracy", "top_k_accuracy", "recall"};
    const float z[4] = {0.3f, -0.2f, 0.0f, NANF};
    const int32_t y[4] = {1, 0, 1, 0};
    kiln_metrics *m = make(2, 1, names, 3, 2);
    if (!m) return;
    CHECK_OK(kiln_metrics_add(m, z, y, 4, 0));
    CHECK_NEAR(get(m, "accuracy"), 0.75, 0);
    CHECK_NEAR(get(m, "top_k_accuracy"), 1.0, 0);
    CHECK_NEAR(get(m, "recall"), (1.0 + 0.5) / 2, 1e-15); /* class 0: 2/2, class 1: 1/2 */
    const int64_t want[4] = {2, 0, 1, 1};
    CHECK(kiln_metrics_confusion(m) && memcmp(kiln_metrics_confusion(m), want, sizeof want) == 0);
    CHECK(kiln_metrics_nonfinite_rows(m) == 1);
    kiln_metrics_free(m);
    m = make(2, 1, names, 3, 1);
    if (!m) return;
    CHECK_OK(kiln_metrics_add(m, z, y, 4, 0));
    CHECK_NEAR(get(m, "top_k_accuracy"), 0.75, 0);
    kiln_metrics_free(m);
}

/* ---- regression by hand ----
 * targets [[1, 5], [2, 5], [3, 5]], predictions [[1.5, 5], [2, 5], [2, 5]]:
 * output 0: d = 0.5, 0, -1: SS_res 1.25; mean 2, SS_tot 2; r2 = 1 - 1.25/2 = 0.375
 * output 1: constant targets, exact predictions: r2 = 1
 * r2 = (0.375 + 1)/2 = 0.6875; mse = 1.25/6; mae = 1.5/6 = 0.25.
 * With prediction [0][1] = 6 instead: output 1 is constant but missed: r2 0 (sklearn's
 * force_finite), so r2 = 0.1875, mse = 2.25/6, mae = 2.5/6. */
static void test_regression_by_hand(void) {
    const char *names[] = {"mse", "mae", "r2"};
    const float t[6] = {1, 5, 2, 5, 3, 5};
    float p[6] = {1.5f, 5, 2, 5, 2, 5};
    kiln_metrics *m = make(0, 2, names, 3, 0);
    if (!m) return;
    CHECK_OK(kiln_metrics_add(m, p, t, 3, 0.25f));
    CHECK_NEAR(get(m, "r2"), 0.6875, 1e-15);
    CHECK_NEAR(get(m, "mse"), 1.25 / 6, 1e-15);
    CHECK_NEAR(get(m, "mae"), 0.25, 1e-15);
    CHECK_NEAR(get(m, "loss"), 0.25, 0);
    CHECK(kiln_metrics_confusion(m) == NULL);
    kiln_metrics_reset(m);
    p[1] = 6;
    CHECK_OK(kiln_metrics_add(m, p, t, 1, 0));
    CHECK(isnan(get(m, "r2"))); /* one row: undefined */
    CHECK_OK(kiln_metrics_add(m, p + 2, t + 2, 2, 0));
    CHECK_NEAR(get(m, "r2"), 0.1875, 1e-15);
    CHECK_NEAR(get(m, "mse"), 2.25 / 6, 1e-15);
    CHECK_NEAR(get(m, "mae"), 2.5 / 6, 1e-15);

    /* a NaN prediction is counted and makes the regression metrics NaN */
    kiln_metrics_reset(m);
    p[2] = NANF;
    CHECK_OK(kiln_metrics_add(m, p, t, 3, 0));
    CHECK(kiln_metrics_nonfinite_rows(m) == 1);
    CHECK(isnan(get(m, "mse")) && isnan(get(m, "mae")) && isnan(get(m, "r2")));
    kiln_metrics_free(m);
}

/* ---- batching invariance ---- */

/* Adds rows [rows] in batches of `batch`; loss of each batch = its first row index. */
static kiln_metrics *add_in_batches(int n_classes, int64_t w, const char *const *names, int n,
                                    const float *pred, const void *labels, int rows, int batch) {
    kiln_metrics *m = make(n_classes, w, names, n, 2);
    if (!m) return NULL;
    size_t lw = n_classes ? sizeof(int32_t) : (size_t)w * sizeof(float);
    for (int r = 0; r < rows; r += batch) {
        int b = rows - r < batch ? rows - r : batch;
        CHECK_OK(
            kiln_metrics_add(m, pred + (int64_t)r * w, (const char *)labels + r * lw, b, 0.5f));
    }
    return m;
}

static void test_batching_classification(void) {
    enum { R = 101, C = 5 };
    static float z[R * C];
    static int32_t y[R];
    kiln_test_fill(z, R * C, -2, 2, 21);
    for (int r = 0; r < R; r++) y[r] = (int32_t)((r * 13 + r / 7) % C);
    kiln_metrics *all = add_in_batches(C, C, ALL_CLASS, 5, z, y, R, R);
    const int batches[] = {1, 7};
    for (int b = 0; b < 2 && all; b++) {
        kiln_metrics *m = add_in_batches(C, C, ALL_CLASS, 5, z, y, R, batches[b]);
        if (!m) break;
        for (int i = 0; i < kiln_metrics_count(all); i++)
            CHECK_MSG(kiln_metrics_value(m, i) == kiln_metrics_value(all, i),
                      "%s: batch %d %.17g, all at once %.17g", kiln_metrics_name(all, i),
                      batches[b], kiln_metrics_value(m, i), kiln_metrics_value(all, i));
        CHECK(memcmp(kiln_metrics_confusion(m), kiln_metrics_confusion(all),
                     C * C * sizeof(int64_t)) == 0);
        kiln_metrics_free(m);
    }
    /* accuracy against a direct count */
    int correct = 0;
    for (int r = 0; r < R; r++) {
        int best = 0;
        for (int j = 1; j < C; j++)
            if (z[r * C + j] > z[r * C + best]) best = j;
        correct += best == y[r];
    }
    if (all) CHECK_NEAR(get(all, "accuracy"), (double)correct / R, 1e-15);
    kiln_metrics_free(all);
}

static void test_batching_regression(void) {
    enum { R = 203, W = 3 };
    static float p[R * W], t[R * W];
    kiln_test_fill(t, R * W, -1, 1, 31);
    kiln_test_fill(p, R * W, -0.3f, 0.3f, 32);
    for (int i = 0; i < R * W; i++) {
        t[i] += 1000.0f * (float)(i % W); /* a large offset on outputs 1 and 2 */
        p[i] += t[i];
    }
    /* two-pass double reference */
    double se = 0, ae = 0, r2 = 0;
    for (int j = 0; j < W; j++) {
        double mean = 0, tot = 0, res = 0;
        for (int r = 0; r < R; r++) mean += t[r * W + j];
        mean /= R;
        for (int r = 0; r < R; r++) {
            double d = (double)p[r * W + j] - t[r * W + j], e = t[r * W + j] - mean;
            res += d * d, tot += e * e, se += d * d, ae += fabs(d);
        }
        r2 += 1 - res / tot;
    }
    r2 /= W;
    const char *names[] = {"r2", "mse", "mae"};
    kiln_metrics *all = add_in_batches(0, W, names, 3, p, t, R, R);
    if (!all) return;
    CHECK_MSG(fabs(get(all, "r2") - r2) <= 1e-12 * fabs(r2), "r2 %.17g, reference %.17g",
              get(all, "r2"), r2);
    CHECK_MSG(fabs(get(all, "mse") - se / (R * W)) <= 1e-12 * se / (R * W), "mse");
    CHECK_MSG(fabs(get(all, "mae") - ae / (R * W)) <= 1e-12 * ae / (R * W), "mae");
    CHECK(get(all, "r2") > 0.5 && get(all, "r2") < 1); /* the case is not degenerate */
    const int batches[] = {1, 7, 64};
    for (int b = 0; b < 3; b++) {
        kiln_metrics *m = add_in_batches(0, W, names, 3, p, t, R, batches[b]);
        if (!m) break;
        for (int i = 0; i < kiln_metrics_count(all); i++)
            CHECK_MSG(kiln_metrics_value(m, i) == kiln_metrics_value(all, i),
                      "%s: batch %d %.17g, all at once %.17g", kiln_metrics_name(all, i),
                      batches[b], kiln_metrics_value(m, i), kiln_metrics_value(all, i));
        kiln_metrics_free(m);
    }
    kiln_metrics_free(all);
}

/* ---- the printed confusion matrix ---- */

static char *printed(const kiln_metrics *m, const char *const *class_names) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    kiln_metrics_print_confusion(m, class_names, f);
    fclose(f);
    return buf;
}

#define CHECK_HAS(text, sub)                                                                       \
    CHECK_MSG((text) && strstr(text, sub), "output lacks '%s':\n%s", sub, (text) ? (text) : "")

static void test_print_confusion(void) {
    kiln_metrics *m = make(3, 3, ALL_CLASS, 5, 2);
    if (!m) return;
    CHECK_OK(kiln_metrics_add(m, EX_LOGITS, EX_LABELS, 6, 0));
    const char *names[] = {"cat", "dog", "bird"};
    char *s = printed(m, names);
    CHECK_HAS(s, "confusion matrix over 6 rows");
    CHECK_HAS(s, "true\\pred   cat   dog  bird | total recall\n");
    CHECK_HAS(s, "cat           1     1     0 |     2  0.500\n");
    CHECK_HAS(s, "bird          2     0     0 |     2  0.000\n");
    CHECK_HAS(s, "total         4     2     0 |     6\n");
    CHECK_HAS(s, "precision 0.250 0.500     -\n");
    free(s);
    /* ids without names; a long name is cut to 16 characters */
    s = printed(m, NULL);
    CHECK_HAS(s, "\n2             2     0     0 |     2  0.000\n");
    free(s);
    const char *long_names[] = {"a_very_long_class_name_indeed", NULL, "b"};
    s = printed(m, long_names);
    CHECK_HAS(s, "a_very_long_clas");
    CHECK(s && !strstr(s, "a_very_long_class"));
    CHECK_HAS(s, "\n1                "); /* the NULL name prints its id */
    free(s);
    kiln_metrics_free(m);

    const char *reg[] = {"mse"};
    m = make(0, 1, reg, 1, 0);
    s = printed(m, NULL);
    CHECK_HAS(s, "no confusion matrix: regression");
    free(s);
    kiln_metrics_free(m);
}

/* Above KILN_METRICS_MAX_CONFUSION classes there is no matrix, but the per-class counts
 * still give precision/recall. 2000 classes, labels [5, 7, 1999], predictions [5, 9, 1999]:
 * classes 5, 1999: P = R = 1; class 7: 0, 0; class 9: 0, 0 -> macro over 4 = 1/2. */
static void test_many_classes(void) {
    enum { C = 2000 };
    const char *names[] = {"precision", "recall", "accuracy"};
    kiln_metrics *m = make(C, C, names, 3, 0);
    if (!m) return;
    static float z[3 * C];
    z[5] = 1, z[C + 9] = 1, z[2 * C + 1999] = 1;
    const int32_t y[3] = {5, 7, 1999};
    CHECK_OK(kiln_metrics_add(m, z, y, 3, 0));
    CHECK(kiln_metrics_confusion(m) == NULL);
    CHECK_NEAR(get(m, "precision"), 0.5, 1e-15);
    CHECK_NEAR(get(m, "recall"), 0.5, 1e-15);
    CHECK_NEAR(get(m, "accuracy"), 2.0 / 3, 1e-15);
    char *s = printed(m, NULL);
    CHECK_HAS(s, "no confusion matrix: 2000 classes");
    free(s);
    kiln_metrics_free(m);
}

/* ---- reset, bad labels, bad configurations ---- */

static void test_reset(void) {
    kiln_metrics *m = make(3, 3, ALL_CLASS, 5, 2);
    if (!m) return;
    for (int i = 0; i < kiln_metrics_count(m); i++) CHECK(isnan(kiln_metrics_value(m, i)));
    const int32_t y[6] = {2, 2, 2, 2, 2, 2};
    CHECK_OK(kiln_metrics_add(m, EX_LOGITS, y, 6, 9.0f));
    kiln_metrics_reset(m);
    CHECK(kiln_metrics_rows(m) == 0 && kiln_metrics_nonfinite_rows(m) == 0);
    for (int i = 0; i < kiln_metrics_count(m); i++) CHECK(isnan(kiln_metrics_value(m, i)));
    const int64_t *cm = kiln_metrics_confusion(m);
    for (int i = 0; cm && i < 9; i++) CHECK(cm[i] == 0);
    CHECK_OK(kiln_metrics_add(m, EX_LOGITS, EX_LABELS, 6, 2.0f));
    check_example(m);
    CHECK_NEAR(get(m, "loss"), 2.0, 0);
    kiln_metrics_free(m);
}

static void test_bad_labels(void) {
    kiln_metrics *m = make(3, 3, ALL_CLASS, 5, 2);
    if (!m) return;
    CHECK_OK(kiln_metrics_add(m, EX_LOGITS, EX_LABELS, 4, 1.0f));
    const int32_t bad[2] = {1, 3};
    CHECK(kiln_metrics_add(m, EX_LOGITS + 12, bad, 2, 1.0f) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("label 3 at batch row 1 (row 5 of the split) is outside [0, 3)");
    const int32_t neg[1] = {-1};
    CHECK(kiln_metrics_add(m, EX_LOGITS, neg, 1, 1.0f) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("label -1 at batch row 0");
    /* nothing of the failed batches was added: finishing the split gives the example */
    CHECK(kiln_metrics_rows(m) == 4);
    CHECK_OK(kiln_metrics_add(m, EX_LOGITS + 12, EX_LABELS + 4, 2, 4.0f));
    check_example(m);
    CHECK_NEAR(get(m, "loss"), 2.0, 1e-15);
    /* other bad arguments */
    CHECK(kiln_metrics_add(m, EX_LOGITS, NULL, 1, 0) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("NULL labels");
    CHECK(kiln_metrics_add(m, EX_LOGITS, EX_LABELS, -1, 0) == KILN_ERR_INVALID);
    CHECK(kiln_metrics_add(NULL, EX_LOGITS, EX_LABELS, 1, 0) == KILN_ERR_INVALID);
    CHECK_OK(kiln_metrics_add(m, NULL, NULL, 0, 0)); /* an empty batch is nothing */
    CHECK(kiln_metrics_rows(m) == 6);
    kiln_metrics_free(m);
}

static void expect_rejected(int n_classes, int64_t n_outputs, const char *const *names, int n,
                            int top_k, const char *msg) {
    kiln_error_clear();
    kiln_metrics *m = kiln_metrics_new(n_classes, n_outputs, names, n, top_k);
    CHECK_MSG(m == NULL, "accepted, expected '%s'", msg);
    CHECK_ERR_HAS(msg);
    kiln_metrics_free(m);
}

static void test_bad_config(void) {
    const char *acc[] = {"accuracy"}, *mse[] = {"mse"}, *topk[] = {"top_k_accuracy"};
    const char *unknown[] = {"accuracy", "acc"}, *twice[] = {"f1", "recall", "f1"};
    const char *null_name[] = {NULL};
    expect_rejected(10, 10, unknown, 2, 0, "unknown metric 'acc'");
    expect_rejected(10, 10, unknown, 2, 0,
                    "valid: accuracy, top_k_accuracy, precision, recall, f1, mse, mae, r2");
    expect_rejected(10, 10, null_name, 1, 0, "unknown metric '(null)'");
    expect_rejected(10, 10, mse, 1, 0, "'mse' is a regression metric but the model is a 10-class");
    expect_rejected(0, 4, acc, 1, 0, "'accuracy' is a classification metric");
    expect_rejected(4, 4, twice, 3, 0, "'f1' is listed twice");
    expect_rejected(4, 4, topk, 1, 0, "top_k_accuracy needs k >= 1, got 0");
    expect_rejected(1, 1, acc, 1, 0, "n_classes must be 0 (regression) or 2 to");
    expect_rejected(-3, 1, acc, 1, 0, "got -3");
    expect_rejected(10, 9, acc, 1, 0,
                    "a 10-class model needs predictions [rows, 10], got [rows, 9]");
    expect_rejected(2, 3, acc, 1, 0, "or one logit [rows, 1]");
    expect_rejected(0, 0, mse, 1, 0, "regression needs 1 to");
    expect_rejected(3, 3, NULL, 2, 0, "2 metric names but no list");
    expect_rejected(3, 3, acc, -1, 0, "-1 metric names");
    /* no metrics at all: just the loss */
    kiln_metrics *m = make(3, 3, NULL, 0, 0);
    if (m) {
        CHECK(kiln_metrics_count(m) == 1);
        CHECK_OK(kiln_metrics_add(m, EX_LOGITS, EX_LABELS, 6, 3.0f));
        CHECK_NEAR(get(m, "loss"), 3.0, 0);
    }
    kiln_metrics_free(m);
    kiln_metrics_free(NULL);
}

static void test_names(void) {
    CHECK(kiln_metric_higher_is_better("loss") == 0);
    CHECK(kiln_metric_higher_is_better("val_loss") == 0);
    CHECK(kiln_metric_higher_is_better("train_mse") == 0);
    CHECK(kiln_metric_higher_is_better("test_mae") == 0);
    CHECK(kiln_metric_higher_is_better("val_accuracy") == 1);
    CHECK(kiln_metric_higher_is_better("val_top_k_accuracy") == 1);
    CHECK(kiln_metric_higher_is_better("precision") == 1);
    CHECK(kiln_metric_higher_is_better("recall") == 1);
    CHECK(kiln_metric_higher_is_better("test_f1") == 1);
    CHECK(kiln_metric_higher_is_better("r2") == 1);
    CHECK(kiln_metric_higher_is_better("val_") == -1);
    CHECK(kiln_metric_higher_is_better("val_bogus") == -1);
    CHECK(kiln_metric_higher_is_better("validation_loss") == -1);
    CHECK(kiln_metric_higher_is_better(NULL) == -1);
    CHECK(strcmp(kiln_metric_base_name("val_loss"), "loss") == 0);
    CHECK(strcmp(kiln_metric_base_name("accuracy"), "accuracy") == 0);
}

/* Shards of a split (data parallel): each shard's packed state, added element by element and
 * unpacked, gives the values of one pass over all the rows. */
static void test_shards_add_up(void) {
    const char *cn[] = {"accuracy", "top_k_accuracy", "precision", "recall", "f1"};
    const char *rn[] = {"mse", "mae", "r2"};
    for (int reg = 0; reg < 2; reg++) {
        int k = reg ? 0 : 4, w = reg ? 2 : 4;
        kiln_metrics *all = make(k, w, reg ? rn : cn, reg ? 3 : 5, 2), *a = make(k, w, reg ? rn : cn, reg ? 3 : 5, 2),
                     *b = make(k, w, reg ? rn : cn, reg ? 3 : 5, 2), *sum = make(k, w, reg ? rn : cn, reg ? 3 : 5, 2);
        if (!all || !a || !b || !sum) return;
        float pred[40 * 4], tgt[40 * 2];
        int32_t lab[40];
        kiln_test_fill(pred, 160, -2, 2, 11);
        kiln_test_fill(tgt, 80, -3, 3, 12);
        for (int i = 0; i < 40; i++) lab[i] = (i * 7) % 4;
        const void *y = reg ? (const void *)tgt : (const void *)lab;
        CHECK_OK(kiln_metrics_add(all, pred, y, 40, 0.75f));
        CHECK_OK(kiln_metrics_add(a, pred, y, 13, 0.75f));
        CHECK_OK(kiln_metrics_add(b, pred + 13 * w, reg ? (const void *)(tgt + 26) : (const void *)(lab + 13), 27, 0.75f));
        size_t n = kiln_metrics_packed_size(a);
        double *va = calloc(n, sizeof *va), *vb = calloc(n, sizeof *vb);
        kiln_metrics_pack(a, va);
        kiln_metrics_pack(b, vb);
        for (size_t i = 0; i < n; i++) va[i] += vb[i];
        kiln_metrics_unpack(sum, va);
        CHECK(kiln_metrics_rows(sum) == 40);
        for (int i = 0; i < kiln_metrics_count(all); i++)
            CHECK_MSG(fabs(kiln_metrics_value(all, i) - kiln_metrics_value(sum, i)) <= 1e-12 * (1 + fabs(kiln_metrics_value(all, i))),
                      "%s: %.17g in one pass, %.17g from shards", kiln_metrics_name(all, i), kiln_metrics_value(all, i),
                      kiln_metrics_value(sum, i));
        if (!reg) CHECK(memcmp(kiln_metrics_confusion(all), kiln_metrics_confusion(sum), 16 * sizeof(int64_t)) == 0);
        free(va), free(vb);
        kiln_metrics_free(all), kiln_metrics_free(a), kiln_metrics_free(b), kiln_metrics_free(sum);
    }
}

int main(void) {
    RUN(test_shards_add_up);
    RUN(test_classification_by_hand);
    RUN(test_class_only_predicted);
    RUN(test_f1_is_mean_of_f1s);
    RUN(test_top_k_ties);
    RUN(test_binary_one_logit);
    RUN(test_regression_by_hand);
    RUN(test_batching_classification);
    RUN(test_batching_regression);
    RUN(test_print_confusion);
    RUN(test_many_classes);
    RUN(test_reset);
    RUN(test_bad_labels);
    RUN(test_bad_config);
    RUN(test_names);
    return kiln_test_summary();
}

/* metrics.c — evaluation metrics accumulated over a split (see kiln/metrics.h).
 *
 * State is counts and double sums only; every value is computed from them when asked for, so
 * kiln_metrics_value is const and may be called mid-split.
 *
 * Invariants:
 *  - every accumulator is updated row by row in row order, never through a per-batch partial
 *    sum, so the values depend only on the sequence of rows, not on the batch boundaries;
 *  - a batch is validated completely before any accumulator changes, so a failed add leaves
 *    the metrics as they were;
 *  - classification keeps tp / true / predicted counts per class always (O(n_classes)), the
 *    full confusion matrix only up to KILN_METRICS_MAX_CONFUSION classes;
 *  - regression keeps, per output, SS_res and Welford's running mean and M2 (= SS_tot) of the
 *    targets, plus whether any target differed from the first one (so SS_tot = 0 is decided
 *    exactly, not by comparing a rounded M2 with 0).
 */
#include "kiln/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/data.h"
#include "kiln/mem.h"

typedef enum { M_ACC, M_TOPK, M_PREC, M_REC, M_F1, M_MSE, M_MAE, M_R2, M_COUNT } metric_kind;

static const struct {
    const char *name;
    int regression; /* 1: regression only, 0: classification only */
    int higher_is_better;
} METRIC[M_COUNT] = {
    [M_ACC] = {"accuracy", 0, 1},   [M_TOPK] = {"top_k_accuracy", 0, 1},
    [M_PREC] = {"precision", 0, 1}, [M_REC] = {"recall", 0, 1},
    [M_F1] = {"f1", 0, 1},          [M_MSE] = {"mse", 1, 0},
    [M_MAE] = {"mae", 1, 0},        [M_R2] = {"r2", 1, 1},
};
#define VALID_NAMES "accuracy, top_k_accuracy, precision, recall, f1, mse, mae, r2"
#define CLASS_NAMES "accuracy, top_k_accuracy, precision, recall, f1"
#define REGR_NAMES  "mse, mae, r2"

struct kiln_metrics {
    int n_classes;     /* 0: regression */
    int64_t n_outputs; /* values per row of pred */
    int top_k;
    int n_kinds;
    metric_kind kinds[M_COUNT]; /* the configured metrics, in order, no duplicates */

    int64_t rows, nonfinite_rows;
    double loss_sum; /* sum of mean_loss * rows */

    /* classification */
    int64_t correct, topk_correct;
    int64_t *tp, *n_true, *n_pred; /* [n_classes] each, one block */
    int64_t *confusion;            /* [n_classes][n_classes] or NULL */

    /* regression */
    double se, ae;              /* sums over all elements */
    double *ss_res, *mean, *m2; /* [n_outputs] each, one block */
    float *first;               /* [n_outputs] the first row's targets */
    unsigned char *varies;      /* [n_outputs] some target differed from first[] */
};

static int find_kind(const char *name) {
    for (int k = 0; k < M_COUNT; k++)
        if (strcmp(name, METRIC[k].name) == 0) return k;
    return -1;
}

static kiln_metrics *fail(kiln_metrics *m) {
    kiln_metrics_free(m);
    return NULL;
}

kiln_metrics *kiln_metrics_new(int n_classes, int64_t n_outputs, const char *const *names,
                               int n_names, int top_k) {
    if (n_classes < 0 || n_classes == 1 || n_classes > KILN_DATA_MAX_CLASSES) {
        kiln_error(KILN_ERR_INVALID, "metrics: n_classes must be 0 (regression) or 2 to %d, got %d",
                   KILN_DATA_MAX_CLASSES, n_classes);
        return NULL;
    }
    if (n_classes > 0 && n_outputs != n_classes && !(n_classes == 2 && n_outputs == 1)) {
        kiln_error(KILN_ERR_INVALID,
                   "metrics: a %d-class model needs predictions [rows, %d]%s, got [rows, %lld]",
                   n_classes, n_classes, n_classes == 2 ? " or one logit [rows, 1]" : "",
                   (long long)n_outputs);
        return NULL;
    }
    if (n_classes == 0 && (n_outputs < 1 || n_outputs > INT32_MAX)) {
        kiln_error(KILN_ERR_INVALID, "metrics: regression needs 1 to %d outputs per row, got %lld",
                   INT32_MAX, (long long)n_outputs);
        return NULL;
    }
    if (n_names < 0 || (n_names > 0 && !names)) {
        kiln_error(KILN_ERR_INVALID, "metrics: %d metric names%s", n_names,
                   n_names > 0 ? " but no list" : "");
        return NULL;
    }
    kiln_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_error(KILN_ERR_NOMEM, "metrics: out of memory");
        return NULL;
    }
    m->n_classes = n_classes, m->n_outputs = n_outputs, m->top_k = top_k;
    for (int i = 0; i < n_names; i++) {
        const char *name = names[i] ? names[i] : "(null)";
        int k = names[i] ? find_kind(names[i]) : -1;
        if (k < 0) {
            kiln_error(KILN_ERR_INVALID, "metrics: unknown metric '%s' (valid: " VALID_NAMES ")",
                       name);
            return fail(m);
        }
        if (METRIC[k].regression != (n_classes == 0)) {
            if (n_classes)
                kiln_error(KILN_ERR_INVALID,
                           "metrics: '%s' is a regression metric but the model is a %d-class "
                           "classifier (classification metrics: " CLASS_NAMES ")",
                           name, n_classes);
            else
                kiln_error(KILN_ERR_INVALID,
                           "metrics: '%s' is a classification metric but the model is a "
                           "regression (n_classes 0; regression metrics: " REGR_NAMES ")",
                           name);
            return fail(m);
        }
        for (int j = 0; j < m->n_kinds; j++)
            if ((int)m->kinds[j] == k) {
                kiln_error(KILN_ERR_INVALID, "metrics: '%s' is listed twice", name);
                return fail(m);
            }
        if (k == M_TOPK && top_k < 1) {
            kiln_error(KILN_ERR_INVALID, "metrics: top_k_accuracy needs k >= 1, got %d", top_k);
            return fail(m);
        }
        m->kinds[m->n_kinds++] = (metric_kind)k;
    }
    if (n_classes > 0) {
        size_t c = (size_t)n_classes;
        if (!(m->tp = kiln_alloc(3 * c * sizeof(int64_t)))) return fail(m);
        m->n_true = m->tp + c, m->n_pred = m->tp + 2 * c;
        if (n_classes <= KILN_METRICS_MAX_CONFUSION &&
            !(m->confusion = kiln_alloc(c * c * sizeof(int64_t))))
            return fail(m);
    } else {
        size_t n = (size_t)n_outputs;
        if (!(m->ss_res = kiln_alloc(3 * n * sizeof(double)))) return fail(m);
        m->mean = m->ss_res + n, m->m2 = m->ss_res + 2 * n;
        if (!(m->first = kiln_alloc(n * sizeof(float))) || !(m->varies = kiln_alloc(n)))
            return fail(m);
    }
    return m;
}

void kiln_metrics_free(kiln_metrics *m) {
    if (!m) return;
    kiln_free(m->tp);
    kiln_free(m->confusion);
    kiln_free(m->ss_res);
    kiln_free(m->first);
    kiln_free(m->varies);
    free(m);
}

void kiln_metrics_reset(kiln_metrics *m) {
    if (!m) return;
    m->rows = m->nonfinite_rows = 0;
    m->loss_sum = 0;
    m->correct = m->topk_correct = 0;
    m->se = m->ae = 0;
    size_t c = (size_t)m->n_classes, n = (size_t)m->n_outputs;
    if (m->tp) memset(m->tp, 0, 3 * c * sizeof(int64_t));
    if (m->confusion) memset(m->confusion, 0, c * c * sizeof(int64_t));
    if (m->ss_res) {
        memset(m->ss_res, 0, 3 * n * sizeof(double));
        memset(m->first, 0, n * sizeof(float));
        memset(m->varies, 0, n);
    }
}

/* ---- classification ---- */

/* a ranks above b: larger, with NaN above every number (numpy's argmax order). */
static inline int beats(float a, float b) {
    return a > b || (isnan(a) && !isnan(b));
}
static inline int same(float a, float b) {
    return a == b || (isnan(a) && isnan(b));
}

/* p [w]: the first index of the largest value. w = 1 is a binary logit: class 1 when p > 0. */
static int argmax(const float *p, int64_t w) {
    if (w == 1) return p[0] > 0.0f;
    int64_t best = 0;
    for (int64_t j = 1; j < w; j++)
        if (beats(p[j], p[best])) best = j;
    return (int)best;
}

/* p [w]: whether label is among the k first classes in the argmax order (ties: lower index
 * first). */
static int in_top_k(const float *p, int64_t w, int label, int k) {
    if (w == 1) return k >= 2 || argmax(p, 1) == label;
    if (k >= w) return 1;
    float v = p[label];
    int rank = 0;
    for (int64_t j = 0; j < w; j++)
        if (beats(p[j], v) || (j < label && same(p[j], v)))
            if (++rank >= k) return 0;
    return 1;
}

static kiln_status add_classes(kiln_metrics *m, const float *pred, const int32_t *labels,
                               int rows) {
    int c = m->n_classes;
    int64_t w = m->n_outputs;
    int topk = 0;
    for (int i = 0; i < m->n_kinds; i++) topk |= m->kinds[i] == M_TOPK;
    for (int r = 0; r < rows; r++)
        if (labels[r] < 0 || labels[r] >= c)
            return kiln_error(KILN_ERR_INVALID,
                              "metrics: label %d at batch row %d (row %lld of the split) is "
                              "outside [0, %d)",
                              (int)labels[r], r, (long long)(m->rows + r), c);
    for (int r = 0; r < rows; r++) {
        const float *p = pred + (int64_t)r * w; /* [w] */
        int y = labels[r], yhat = argmax(p, w);
        for (int64_t j = 0; j < w; j++)
            if (!isfinite(p[j])) {
                m->nonfinite_rows++;
                break;
            }
        m->correct += yhat == y;
        m->tp[y] += yhat == y;
        m->n_true[y]++;
        m->n_pred[yhat]++;
        if (m->confusion) m->confusion[(int64_t)y * c + yhat]++;
        if (topk) m->topk_correct += in_top_k(p, w, y, m->top_k);
    }
    return KILN_OK;
}

/* ---- regression ---- */

static void add_targets(kiln_metrics *m, const float *pred, const float *target, int rows) {
    int64_t w = m->n_outputs;
    for (int r = 0; r < rows; r++) {
        const float *p = pred + (int64_t)r * w, *t = target + (int64_t)r * w; /* [w] each */
        int64_t seen = m->rows + r; /* rows before this one */
        double inv = 1.0 / (double)(seen + 1);
        int finite = 1;
        for (int64_t j = 0; j < w; j++) {
            double y = t[j], d = (double)p[j] - y;
            finite &= isfinite(p[j]) != 0;
            m->se += d * d;
            m->ae += fabs(d);
            m->ss_res[j] += d * d;
            double delta = y - m->mean[j]; /* Welford */
            m->mean[j] += delta * inv;
            m->m2[j] += delta * (y - m->mean[j]);
            if (seen == 0)
                m->first[j] = t[j];
            else if (!m->varies[j] && !(t[j] == m->first[j]))
                m->varies[j] = 1;
        }
        m->nonfinite_rows += !finite;
    }
}

kiln_status kiln_metrics_add(kiln_metrics *m, const float *pred, const void *labels, int rows,
                             float mean_loss) {
    if (!m) return kiln_error(KILN_ERR_INVALID, "metrics: add to NULL metrics");
    if (rows < 0) return kiln_error(KILN_ERR_INVALID, "metrics: rows must be >= 0, got %d", rows);
    if (rows == 0) return KILN_OK;
    if (!pred || !labels)
        return kiln_error(KILN_ERR_INVALID, "metrics: %d rows with NULL %s", rows,
                          !pred ? "predictions" : "labels");
    if (m->n_classes > 0) {
        kiln_status s = add_classes(m, pred, labels, rows);
        if (s != KILN_OK) return s;
    } else {
        add_targets(m, pred, labels, rows);
    }
    m->loss_sum += (double)mean_loss * rows;
    m->rows += rows;
    return KILN_OK;
}

kiln_status kiln_metrics_add_probs(kiln_metrics *m, const float *pred, const float *probs,
                                   int rows, float mean_loss) {
    if (!m) return kiln_error(KILN_ERR_INVALID, "metrics: add to NULL metrics");
    if (m->n_classes <= 0)
        return kiln_error(KILN_ERR_INVALID, "metrics: probability labels need a classifier");
    if (rows < 0) return kiln_error(KILN_ERR_INVALID, "metrics: rows must be >= 0, got %d", rows);
    if (rows == 0) return KILN_OK;
    if (!pred || !probs)
        return kiln_error(KILN_ERR_INVALID, "metrics: %d rows with NULL %s", rows,
                          !pred ? "predictions" : "labels");
    int64_t w = m->n_outputs;
    for (int r = 0; r < rows; r++) {
        int32_t y = (int32_t)argmax(probs + (int64_t)r * w, w);
        kiln_status s = add_classes(m, pred + (int64_t)r * w, &y, 1);
        if (s != KILN_OK) return s;
    }
    m->loss_sum += (double)mean_loss * rows;
    m->rows += rows;
    return KILN_OK;
}

/* ---- values ---- */

/* Macro precision, recall or f1 over the classes seen in labels or predictions. */
static double macro(const kiln_metrics *m, metric_kind k) {
    double sum = 0;
    int64_t present = 0;
    for (int c = 0; c < m->n_classes; c++) {
        int64_t tp = m->tp[c], t = m->n_true[c], p = m->n_pred[c];
        if (t == 0 && p == 0) continue;
        present++;
        int64_t num = k == M_F1 ? 2 * tp : tp;
        int64_t den = k == M_PREC ? p : k == M_REC ? t : t + p; /* 2tp + fp + fn = t + p */
        sum += den ? (double)num / (double)den : 0.0;
    }
    return sum / (double)present;
}

static double r2(const kiln_metrics *m) {
    if (m->rows < 2) return NAN;
    double sum = 0;
    for (int64_t j = 0; j < m->n_outputs; j++) {
        double res = m->ss_res[j];
        if (isnan(res))
            sum += NAN;
        else if (!m->varies[j])
            sum += res == 0 ? 1.0 : 0.0;
        else
            sum += 1.0 - res / m->m2[j];
    }
    return sum / (double)m->n_outputs;
}

static double compute(const kiln_metrics *m, metric_kind k) {
    double rows = (double)m->rows, elems = rows * (double)m->n_outputs;
    switch (k) {
    case M_ACC:
        return (double)m->correct / rows;
    case M_TOPK:
        return (double)m->topk_correct / rows;
    case M_PREC:
    case M_REC:
    case M_F1:
        return macro(m, k);
    case M_MSE:
        return m->se / elems;
    case M_MAE:
        return m->ae / elems;
    case M_R2:
        return r2(m);
    default:
        return NAN;
    }
}

int kiln_metrics_count(const kiln_metrics *m) {
    return m ? 1 + m->n_kinds : 0;
}

const char *kiln_metrics_name(const kiln_metrics *m, int i) {
    if (!m || i < 0 || i > m->n_kinds) return NULL;
    return i == 0 ? "loss" : METRIC[m->kinds[i - 1]].name;
}

double kiln_metrics_value(const kiln_metrics *m, int i) {
    if (!m || i < 0 || i > m->n_kinds || m->rows == 0) return NAN;
    return i == 0 ? m->loss_sum / (double)m->rows : compute(m, m->kinds[i - 1]);
}

double kiln_metrics_get(const kiln_metrics *m, const char *name, int *found) {
    int n = kiln_metrics_count(m);
    for (int i = 0; name && i < n; i++)
        if (strcmp(name, kiln_metrics_name(m, i)) == 0) {
            if (found) *found = 1;
            return kiln_metrics_value(m, i);
        }
    if (found) *found = 0;
    return NAN;
}

int64_t kiln_metrics_rows(const kiln_metrics *m) {
    return m ? m->rows : 0;
}
int64_t kiln_metrics_nonfinite_rows(const kiln_metrics *m) {
    return m ? m->nonfinite_rows : 0;
}
int kiln_metrics_classes(const kiln_metrics *m) {
    return m ? m->n_classes : 0;
}
const int64_t *kiln_metrics_confusion(const kiln_metrics *m) {
    return m ? m->confusion : NULL;
}

/* ---- the confusion table ---- */

#define NAME_MAX_CHARS 16

static void class_label(const char *const *names, int c, char *buf, size_t n) {
    if (names && names[c])
        snprintf(buf, n, "%.*s", NAME_MAX_CHARS, names[c]);
    else
        snprintf(buf, n, "%d", c);
}

void kiln_metrics_print_confusion(const kiln_metrics *m, const char *const *class_names, FILE *f) {
    if (!m || !f) return;
    if (m->n_classes == 0) {
        fprintf(f, "no confusion matrix: regression metrics\n");
        return;
    }
    if (!m->confusion) {
        fprintf(f, "no confusion matrix: %d classes (kept up to %d)\n", m->n_classes,
                KILN_METRICS_MAX_CONFUSION);
        return;
    }
    int c = m->n_classes;
    char buf[NAME_MAX_CHARS + 16];
    /* first column: class names, "true\pred", "precision"; others: names, counts, "0.000" */
    int w0 = 9, w = 5;
    snprintf(buf, sizeof buf, "%lld", (long long)m->rows);
    if ((int)strlen(buf) > w) w = (int)strlen(buf);
    for (int i = 0; i < c; i++) {
        class_label(class_names, i, buf, sizeof buf);
        int len = (int)strlen(buf);
        if (len > w0) w0 = len;
        if (len > w) w = len;
    }
    fprintf(f, "confusion matrix over %lld rows (rows: true class, columns: predicted class)\n",
            (long long)m->rows);
    fprintf(f, "%-*s", w0, "true\\pred");
    for (int j = 0; j < c; j++) {
        class_label(class_names, j, buf, sizeof buf);
        fprintf(f, " %*s", w, buf);
    }
    fprintf(f, " | %*s recall\n", w, "total");
    for (int i = 0; i < c; i++) {
        class_label(class_names, i, buf, sizeof buf);
        fprintf(f, "%-*s", w0, buf);
        for (int j = 0; j < c; j++)
            fprintf(f, " %*lld", w, (long long)m->confusion[(int64_t)i * c + j]);
        fprintf(f, " | %*lld", w, (long long)m->n_true[i]);
        if (m->n_true[i])
            fprintf(f, "  %.3f\n", (double)m->tp[i] / (double)m->n_true[i]);
        else
            fprintf(f, "      -\n");
    }
    fprintf(f, "%-*s", w0, "total");
    for (int j = 0; j < c; j++) fprintf(f, " %*lld", w, (long long)m->n_pred[j]);
    fprintf(f, " | %*lld\n", w, (long long)m->rows);
    fprintf(f, "%-*s", w0, "precision");
    for (int j = 0; j < c; j++) {
        if (m->n_pred[j])
            fprintf(f, " %*.3f", w, (double)m->tp[j] / (double)m->n_pred[j]);
        else
            fprintf(f, " %*s", w, "-");
    }
    fprintf(f, "\n");
}

/* ---- names ---- */

const char *kiln_metric_base_name(const char *name) {
    static const char *prefix[] = {"train_", "val_", "test_"};
    if (!name) return NULL;
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(prefix[i]);
        if (strncmp(name, prefix[i], n) == 0) return name + n;
    }
    return name;
}

int kiln_metric_higher_is_better(const char *name) {
    const char *base = kiln_metric_base_name(name);
    if (!base) return -1;
    if (strcmp(base, "loss") == 0) return 0;
    int k = find_kind(base);
    return k < 0 ? -1 : METRIC[k].higher_is_better;
}

/* ---- combining shards (data parallel evaluation) ---- */

size_t kiln_metrics_packed_size(const kiln_metrics *m) {
    size_t c = (size_t)m->n_classes, n = (size_t)m->n_outputs;
    return 7 + (m->tp ? 3 * c : 0) + (m->confusion ? c * c : 0) + (m->ss_res ? 4 * n : 0);
}

/* Counts and sums as they are; the Welford pair (mean, m2) of each output as the plain sums
 * n mean and m2 + n mean^2, which add across shards. */
void kiln_metrics_pack(const kiln_metrics *m, double *v) {
    size_t c = (size_t)m->n_classes, n = (size_t)m->n_outputs, k = 0;
    double rows = (double)m->rows;
    v[k++] = rows, v[k++] = (double)m->nonfinite_rows, v[k++] = m->loss_sum;
    v[k++] = (double)m->correct, v[k++] = (double)m->topk_correct, v[k++] = m->se, v[k++] = m->ae;
    for (size_t i = 0; m->tp && i < 3 * c; i++) v[k++] = (double)m->tp[i];
    for (size_t i = 0; m->confusion && i < c * c; i++) v[k++] = (double)m->confusion[i];
    for (size_t j = 0; m->ss_res && j < n; j++) {
        v[k++] = m->ss_res[j];
        v[k++] = rows * m->mean[j];
        v[k++] = m->m2[j] + rows * m->mean[j] * m->mean[j];
        v[k++] = m->varies[j];
    }
}

void kiln_metrics_unpack(kiln_metrics *m, const double *v) {
    size_t c = (size_t)m->n_classes, n = (size_t)m->n_outputs, k = 0;
    m->rows = (int64_t)v[k++], m->nonfinite_rows = (int64_t)v[k++], m->loss_sum = v[k++];
    m->correct = (int64_t)v[k++], m->topk_correct = (int64_t)v[k++], m->se = v[k++];
    m->ae = v[k++];
    for (size_t i = 0; m->tp && i < 3 * c; i++) m->tp[i] = (int64_t)v[k++];
    for (size_t i = 0; m->confusion && i < c * c; i++) m->confusion[i] = (int64_t)v[k++];
    double rows = (double)m->rows;
    for (size_t j = 0; m->ss_res && j < n; j++) {
        m->ss_res[j] = v[k++];
        double s1 = v[k++], s2 = v[k++], varies = v[k++];
        m->mean[j] = rows > 0 ? s1 / rows : 0;
        m->m2[j] = s2 - rows * m->mean[j] * m->mean[j];
        /* a constant target leaves only rounding in m2; shards whose first targets differ
         * show it in m2 */
        if (!(m->m2[j] > 1e-12 * fabs(s2))) m->m2[j] = 0;
        m->varies[j] = varies > 0 || m->m2[j] > 0;
    }
}

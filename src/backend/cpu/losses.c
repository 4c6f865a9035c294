/* losses.c — the loss ops: softmax cross-entropy, binary cross-entropy (from logits), mean
 * squared error, mean absolute error and Huber. Each produces a scalar (shape [], ndim 0): the
 * mean over every row (cross-entropy) or every element (the others).
 *
 * Softmax cross-entropy. logits z [B, ..., K] seen as [rows, K]; labels either I32/I64 class ids
 * [B, ...] (the logits' shape minus the last axis) or F32 probabilities p [B, ..., K]. With
 * smoothing s the target is t = (1 - s) * onehot(y) + s / K (or (1 - s) * p + s / K), and
 *   lse_r = m_r + log(sum_k exp(z_rk - m_r)),  m_r = max_k z_rk           (finite for any z)
 *   loss  = 1/rows * sum_r sum_k t_rk (lse_r - z_rk)
 *   dz_rk = g/rows * (softmax_rk * T_r - t_rk),  T_r = sum_k t_rk (1 for class ids)
 *   dp_rk = g/rows * (1 - s) * (lse_r - z_rk)    (F32 labels only, when they have a gradient)
 * where g is dL/dloss (1 when the loss is the plan's root). lse is kept from forward in the
 * op's state ([rows] floats). A class id outside [0, K) fails forward with KILN_ERR_INVALID
 * naming the id and its (flattened) row; the plan adds the node's name.
 *
 * Elementwise losses, over n elements of a and b of one shape (d = a - b):
 *   binary cross-entropy  max(z, 0) - z t + log1p(exp(-|z|))   dz = sigmoid(z) - t, dt = -z
 *   mse                   d^2                                   da = 2 d
 *   mae                   |d|                                   da = sign(d) (0 at d = 0)
 *   huber (delta)         0.5 d^2 if |d| <= delta else delta (|d| - 0.5 delta)
 *                                                               da = clamp(d, -delta, delta)
 * each divided by n (times g in backward); db = -da for the three regression losses.
 *
 * Determinism: sums are formed per row (cross-entropy) or per fixed chunk of CHUNK elements in
 * double, written to the plan's scratch, and added serially in order, so the value does not
 * depend on the number of threads.
 */
#include <math.h>
#include <stdlib.h>

#include "backend/ops.h"
#include "backend/attrs.h"

#define CHUNK 8192

static size_t max_size(size_t a, size_t b) {
    return a > b ? a : b;
}

/* ---------------- softmax cross-entropy ---------------- */

typedef struct {
    int64_t rows, K;
    int int_labels; /* 1: class ids, 0: F32 probabilities */
    float *lse;     /* [rows] log-sum-exp of each row, from forward */
} sce_state;

static kiln_status sce_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                             kiln_dtype *dt) {
    char buf[512], want_ids[128], want_probs[128];
    const kiln_shape *z = &in[0], *y = &in[1];
    kiln_dtype ldt = n->in[1]->dtype;
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: logits must be F32, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (z->ndim < 2)
        return kiln_error(KILN_ERR_SHAPE, "%s: logits must be [batch, ..., classes]",
                          kiln_node_describe(n, in, buf, sizeof buf));
    kiln_shape ids = *z;
    ids.ndim--;
    kiln_shape_str(&ids, want_ids, sizeof want_ids);
    kiln_shape_str(z, want_probs, sizeof want_probs);
    if (ldt == KILN_I32 || ldt == KILN_I64) {
        if (!kiln_shape_equal(y, &ids))
            return kiln_error(
                KILN_ERR_SHAPE,
                "%s: %s class-id labels must have shape %s (the logits' minus the last axis)",
                kiln_node_describe(n, in, buf, sizeof buf), kiln_dtype_name(ldt), want_ids);
    } else if (ldt == KILN_F32) {
        if (!kiln_shape_equal(y, z))
            return kiln_error(KILN_ERR_SHAPE,
                              "%s: F32 probability labels must have the logits' shape %s",
                              kiln_node_describe(n, in, buf, sizeof buf), want_probs);
    } else {
        return kiln_error(KILN_ERR_INVALID,
                          "%s: labels are %s; need I32/I64 class ids %s or F32 probabilities %s",
                          kiln_node_describe(n, in, buf, sizeof buf), kiln_dtype_name(ldt),
                          want_ids, want_probs);
    }
    out->ndim = 0;
    *dt = KILN_F32;
    return KILN_OK;
}

static void sce_release(kiln_inst *x) {
    sce_state *s = x->state;
    kiln_free(s->lse);
    free(s);
    x->state = NULL;
}

static kiln_status sce_compile(kiln_inst *x, kiln_compile_ctx *c) {
    sce_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "softmax_cross_entropy: out of memory");
    x->state = s;
    const kiln_shape *z = &x->in[0]->shape;
    s->K = z->dims[z->ndim - 1];
    s->rows = x->in[0]->numel / s->K;
    s->int_labels = x->in[1]->dtype != KILN_F32;
    if (!(s->lse = kiln_alloc((size_t)s->rows * sizeof *s->lse))) return KILN_ERR_NOMEM;
    c->scratch_bytes = max_size(c->scratch_bytes, (size_t)s->rows * sizeof(double));
    return KILN_OK;
}

static int64_t label_at(const kiln_inst *lab, int64_t i) {
    return lab->dtype == KILN_I64 ? ((const int64_t *)lab->val)[i] : ((const int32_t *)lab->val)[i];
}

static kiln_status sce_forward(kiln_inst *x, const kiln_run *r) {
    sce_state *s = x->state;
    const int64_t rows = s->rows, K = s->K;
    const float *zv = x->in[0]->val; /* [rows, K] */
    const float sm = KILN_ATTR(x->node, kiln_loss_attr)->label_smoothing;
    double *row_loss = r->scratch; /* [rows] */
    if (s->int_labels)
        for (int64_t i = 0; i < rows; i++) {
            int64_t y = label_at(x->in[1], i);
            if (y < 0 || y >= K)
                return kiln_error(KILN_ERR_INVALID,
                                  "labels '%s' row %lld has class id %lld, outside [0, %lld)",
                                  x->in[1]->node->name, (long long)i, (long long)y, (long long)K);
        }
#pragma omp parallel for schedule(static) if (x->in[0]->numel > 16384)
    for (int64_t i = 0; i < rows; i++) {
        const float *z = zv + i * K;
        float m = z[0];
        for (int64_t k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
        double sum = 0;
        for (int64_t k = 0; k < K; k++) sum += expf(z[k] - m);
        double lse = m + log(sum), loss = 0;
        s->lse[i] = (float)lse;
        if (s->int_labels) {
            loss = (1.0 - sm) * (lse - z[label_at(x->in[1], i)]);
            if (sm > 0) {
                double all = 0;
                for (int64_t k = 0; k < K; k++) all += lse - z[k];
                loss += sm / (double)K * all;
            }
        } else {
            const float *p = (const float *)x->in[1]->val + i * K;
            for (int64_t k = 0; k < K; k++)
                loss += ((1.0 - sm) * p[k] + sm / (double)K) * (lse - z[k]);
        }
        row_loss[i] = loss;
    }
    double total = 0;
    for (int64_t i = 0; i < rows; i++) total += row_loss[i];
    *(float *)x->val = (float)(total / (double)rows);
    return KILN_OK;
}

static void sce_backward(kiln_inst *x, const kiln_run *r) {
    sce_state *s = x->state;
    const int64_t rows = s->rows, K = s->K;
    const float sm = KILN_ATTR(x->node, kiln_loss_attr)->label_smoothing;
    const float scale = x->grad[0] / (float)rows, off = sm / (float)K;
    const float *zv = x->in[0]->val; /* [rows, K] */
    float *dz = x->in[0]->grad;      /* [rows, K] */
    if (dz) {
        int accum = x->accum[0];
#pragma omp parallel for schedule(static) if (x->in[0]->numel > 16384)
        for (int64_t i = 0; i < rows; i++) {
            const float *z = zv + i * K;
            float *d = dz + i * K;
            float lse = s->lse[i], T = 1.0f;
            const float *p = s->int_labels ? NULL : (const float *)x->in[1]->val + i * K;
            int64_t y = s->int_labels ? label_at(x->in[1], i) : -1;
            if (p) {
                double tsum = 0;
                for (int64_t k = 0; k < K; k++) tsum += (1.0f - sm) * p[k] + off;
                T = (float)tsum;
            }
            for (int64_t k = 0; k < K; k++) {
                float t = p ? (1.0f - sm) * p[k] + off : (k == y ? 1.0f - sm : 0.0f) + off;
                float v = scale * (expf(z[k] - lse) * T - t);
                d[k] = accum ? d[k] + v : v;
            }
        }
    }
    float *dp = s->int_labels ? NULL : x->in[1]->grad; /* [rows, K] */
    if (dp) {
        int accum = x->accum[1];
        const float c = scale * (1.0f - sm);
#pragma omp parallel for schedule(static) if (x->in[0]->numel > 16384)
        for (int64_t i = 0; i < rows; i++) {
            const float *z = zv + i * K;
            float *d = dp + i * K, lse = s->lse[i];
            for (int64_t k = 0; k < K; k++) {
                float v = c * (lse - z[k]);
                d[k] = accum ? d[k] + v : v;
            }
        }
    }
}

const kiln_op kiln_op_softmax_cross_entropy = {.name = "softmax_cross_entropy",
                                               .backend = &kiln_backend_cpu,
                                               .infer = sce_infer,
                                               .compile = sce_compile,
                                               .forward = sce_forward,
                                               .backward = sce_backward,
                                               .release = sce_release};

/* ---------------- elementwise losses over (a, b) of one shape ---------------- */

typedef enum { PAIR_BCE, PAIR_MSE, PAIR_MAE, PAIR_HUBER } pair_kind;

static kiln_status pair_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                              kiln_dtype *dt) {
    char buf[512];
    int bce = n->op == &kiln_op_binary_cross_entropy;
    const char *a = bce ? "logits" : "pred", *b = bce ? "targets" : "target";
    if (n->in[0]->dtype != KILN_F32 || n->in[1]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: %s and %s must be F32, got %s and %s",
                          kiln_node_describe(n, in, buf, sizeof buf), a, b,
                          kiln_dtype_name(n->in[0]->dtype), kiln_dtype_name(n->in[1]->dtype));
    if (!kiln_shape_equal(&in[0], &in[1]))
        return kiln_error(KILN_ERR_SHAPE, "%s: %s and %s must have the same shape",
                          kiln_node_describe(n, in, buf, sizeof buf), a, b);
    out->ndim = 0;
    *dt = KILN_F32;
    return KILN_OK;
}

static kiln_status pair_compile(kiln_inst *x, kiln_compile_ctx *c) {
    size_t chunks = (size_t)((x->in[0]->numel + CHUNK - 1) / CHUNK);
    c->scratch_bytes = max_size(c->scratch_bytes, chunks * sizeof(double));
    return KILN_OK;
}

/* Sum of the per-element loss over [lo, hi), in double. */
static double pair_sum(pair_kind k, double delta, const float *a, const float *b, int64_t lo,
                       int64_t hi) {
    double s = 0;
    switch (k) {
    case PAIR_BCE:
        for (int64_t i = lo; i < hi; i++) {
            double z = a[i];
            s += (z > 0 ? z : 0) - z * b[i] + log1p(exp(-fabs(z)));
        }
        break;
    case PAIR_MSE:
        for (int64_t i = lo; i < hi; i++) {
            double d = (double)a[i] - b[i];
            s += d * d;
        }
        break;
    case PAIR_MAE:
        for (int64_t i = lo; i < hi; i++) s += fabs((double)a[i] - b[i]);
        break;
    case PAIR_HUBER:
        for (int64_t i = lo; i < hi; i++) {
            double d = fabs((double)a[i] - b[i]);
            s += d <= delta ? 0.5 * d * d : delta * (d - 0.5 * delta);
        }
        break;
    }
    return s;
}

static kiln_status pair_forward(kiln_inst *x, const kiln_run *r, pair_kind k) {
    const int64_t n = x->in[0]->numel, chunks = (n + CHUNK - 1) / CHUNK;
    const float *a = x->in[0]->val, *b = x->in[1]->val; /* [n] each */
    const double delta = KILN_ATTR(x->node, kiln_loss_attr)->delta;
    double *part = r->scratch; /* [chunks] */
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++)
        part[c] =
            pair_sum(k, delta, a, b, c * CHUNK, c * CHUNK + CHUNK < n ? c * CHUNK + CHUNK : n);
    double total = 0;
    for (int64_t c = 0; c < chunks; c++) total += part[c];
    *(float *)x->val = (float)(total / (double)n);
    return KILN_OK;
}

/* d loss_i / d a_i, before the 1/n scale. */
static inline float pair_da(pair_kind k, float delta, float a, float b) {
    float d = a - b;
    switch (k) {
    case PAIR_BCE:
        return (a >= 0 ? 1.0f / (1.0f + expf(-a)) : expf(a) / (1.0f + expf(a))) - b;
    case PAIR_MSE:
        return 2.0f * d;
    case PAIR_MAE:
        return d > 0 ? 1.0f : d < 0 ? -1.0f : 0.0f;
    case PAIR_HUBER:
        return d > delta ? delta : d < -delta ? -delta : d;
    }
    return 0.0f;
}

static void pair_backward(kiln_inst *x, const kiln_run *r, pair_kind k) {
    const int64_t n = x->in[0]->numel;
    const float *a = x->in[0]->val, *b = x->in[1]->val; /* [n] each */
    const float delta = KILN_ATTR(x->node, kiln_loss_attr)->delta;
    const float scale = x->grad[0] / (float)n;
    for (int j = 0; j < 2; j++) { /* index order: a, then b (they may be one tensor) */
        float *d = x->in[j]->grad;
        if (!d) continue;
        int accum = x->accum[j];
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) {
            /* d loss / d b: -z for cross-entropy targets, -d loss / d a for the others */
            float v = j == 0          ? pair_da(k, delta, a[i], b[i])
                      : k == PAIR_BCE ? -a[i]
                                      : -pair_da(k, delta, a[i], b[i]);
            v *= scale;
            d[i] = accum ? d[i] + v : v;
        }
    }
}

#define PAIR_OP(var, opname, kind)                                                                 \
    static kiln_status var##_forward(kiln_inst *x, const kiln_run *r) {                            \
        return pair_forward(x, r, kind);                                                           \
    }                                                                                              \
    static void var##_backward(kiln_inst *x, const kiln_run *r) {                                  \
        pair_backward(x, r, kind);                                                                 \
    }                                                                                              \
    const kiln_op kiln_op_##var = {.name = opname,                                                 \
                                   .backend = &kiln_backend_cpu,                                   \
                                   .infer = pair_infer,                                            \
                                   .compile = pair_compile,                                        \
                                   .forward = var##_forward,                                       \
                                   .backward = var##_backward};

PAIR_OP(binary_cross_entropy, "binary_cross_entropy", PAIR_BCE)
PAIR_OP(mse, "mse", PAIR_MSE)
PAIR_OP(mae, "mae", PAIR_MAE)
PAIR_OP(huber, "huber", PAIR_HUBER)

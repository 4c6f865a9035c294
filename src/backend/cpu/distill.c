/* distill.c — the knowledge-distillation loss (Hinton, Vinyals & Dean 2015, "Distilling the
 * Knowledge in a Neural Network"), one op so that its gradient is exact and checked.
 *
 * Inputs: student logits z [B, ..., K], teacher logits t (F32, z's shape), labels as softmax
 * cross-entropy takes them (I32/I64 class ids [B, ...] or F32 probabilities [B, ..., K]).
 * Attributes: temperature T > 0, alpha in [0, 1]. With rows r of K classes,
 *   p_r = softmax(t_r / T)        (the teacher's soft targets)
 *   q_r = softmax(z_r / T)        (the student at temperature T)
 *   KL_r = sum_k p_rk (log p_rk - log q_rk)
 *   CE_r = sum_k y_rk (lse(z_r) - z_rk)          (y: one-hot of the id, or the probabilities)
 *   loss = 1/rows * sum_r [alpha T^2 KL_r + (1 - alpha) CE_r]
 *   dz_rk = g/rows * [alpha T (q_rk - p_rk) + (1 - alpha)(softmax(z_r)_k Y_r - y_rk)]
 * with Y_r = sum_k y_rk (1 for class ids) and g = dL/dloss. The T^2 keeps the soft term's
 * gradient on the scale of the hard term's as T changes (the paper's section 2). The KL, not the
 * cross-entropy against p, is the value: it is 0 when the student matches the teacher, and its
 * gradient is the same. No gradient flows into the teacher's logits or the labels. Terms with
 * p_rk = 0 (underflow at extreme logits) add 0 (the limit of p log p). A class id outside
 * [0, K) fails forward like softmax cross-entropy.
 *
 * Determinism: per-row sums in double, added serially in row order.
 */
#include <math.h>
#include <stdlib.h>

#include "backend/ops.h"
#include "backend/attrs.h"

typedef struct {
    int64_t rows, K;
    int int_labels;
} kd_state;

static kiln_status kd_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                            kiln_dtype *dt) {
    char buf[512], want[128];
    const kiln_shape *z = &in[0];
    if (n->in[0]->dtype != KILN_F32 || n->in[1]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: student and teacher logits must be F32",
                          kiln_node_describe(n, in, buf, sizeof buf));
    if (z->ndim < 2)
        return kiln_error(KILN_ERR_SHAPE, "%s: logits must be [batch, ..., classes]",
                          kiln_node_describe(n, in, buf, sizeof buf));
    if (!kiln_shape_equal(&in[1], z))
        return kiln_error(KILN_ERR_SHAPE, "%s: the teacher's logits must have the student's "
                          "shape %s", kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_shape_str(z, want, sizeof want));
    kiln_dtype ldt = n->in[2]->dtype;
    kiln_shape ids = *z;
    ids.ndim--;
    if ((ldt == KILN_I32 || ldt == KILN_I64) ? !kiln_shape_equal(&in[2], &ids)
        : ldt == KILN_F32                    ? !kiln_shape_equal(&in[2], z)
                                             : 1)
        return kiln_error(KILN_ERR_SHAPE, "%s: labels must be I32/I64 class ids %s or F32 "
                          "probabilities of the logits' shape",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_shape_str(&ids, want, sizeof want));
    out->ndim = 0;
    *dt = KILN_F32;
    return KILN_OK;
}

static void kd_release(kiln_inst *x) {
    free(x->state);
    x->state = NULL;
}

static kiln_status kd_compile(kiln_inst *x, kiln_compile_ctx *c) {
    kd_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "softmax_distillation: out of memory");
    x->state = s;
    const kiln_shape *z = &x->in[0]->shape;
    s->K = z->dims[z->ndim - 1];
    s->rows = x->in[0]->numel / s->K;
    s->int_labels = x->in[2]->dtype != KILN_F32;
    size_t need = (size_t)s->rows * sizeof(double);
    if (c->scratch_bytes < need) c->scratch_bytes = need;
    return KILN_OK;
}

static int64_t label_at(const kiln_inst *lab, int64_t i) {
    return lab->dtype == KILN_I64 ? ((const int64_t *)lab->val)[i]
                                  : ((const int32_t *)lab->val)[i];
}

/* log-sum-exp of v[0..K) * scale, stable */
static double lse_scaled(const float *v, int64_t K, double scale) {
    double m = v[0] * scale, sum = 0;
    for (int64_t k = 1; k < K; k++) m = v[k] * scale > m ? v[k] * scale : m;
    for (int64_t k = 0; k < K; k++) sum += exp(v[k] * scale - m);
    return m + log(sum);
}

static kiln_status kd_forward(kiln_inst *x, const kiln_run *r) {
    kd_state *s = x->state;
    const int64_t rows = s->rows, K = s->K;
    const kiln_distill_attr *a = KILN_ATTR(x->node, kiln_distill_attr);
    const double T = a->temperature, alpha = a->alpha, invT = 1.0 / T;
    const float *zv = x->in[0]->val, *tv = x->in[1]->val;
    double *row_loss = r->scratch;
    if (s->int_labels)
        for (int64_t i = 0; i < rows; i++) {
            int64_t y = label_at(x->in[2], i);
            if (y < 0 || y >= K)
                return kiln_error(KILN_ERR_INVALID,
                                  "labels '%s' row %lld has class id %lld, outside [0, %lld)",
                                  x->in[2]->node->name, (long long)i, (long long)y, (long long)K);
        }
#pragma omp parallel for schedule(static) if (x->in[0]->numel > 16384)
    for (int64_t i = 0; i < rows; i++) {
        const float *z = zv + i * K, *t = tv + i * K;
        double lt = lse_scaled(t, K, invT), ls = lse_scaled(z, K, invT), lz = lse_scaled(z, K, 1);
        double kl = 0, ce = 0;
        for (int64_t k = 0; k < K; k++) {
            double logp = t[k] * invT - lt, p = exp(logp);
            if (p > 0) kl += p * (logp - (z[k] * invT - ls));
        }
        if (s->int_labels) {
            ce = lz - z[label_at(x->in[2], i)];
        } else {
            const float *y = (const float *)x->in[2]->val + i * K;
            for (int64_t k = 0; k < K; k++) ce += y[k] * (lz - z[k]);
        }
        row_loss[i] = alpha * T * T * kl + (1 - alpha) * ce;
    }
    double total = 0;
    for (int64_t i = 0; i < rows; i++) total += row_loss[i];
    *(float *)x->val = (float)(total / (double)rows);
    return KILN_OK;
}

static void kd_backward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    kd_state *s = x->state;
    float *dz = x->in[0]->grad;
    if (!dz) return;
    const int64_t rows = s->rows, K = s->K;
    const kiln_distill_attr *a = KILN_ATTR(x->node, kiln_distill_attr);
    const double T = a->temperature, alpha = a->alpha, invT = 1.0 / T;
    const double scale = x->grad[0] / (double)rows;
    const float *zv = x->in[0]->val, *tv = x->in[1]->val;
    int accum = x->accum[0];
#pragma omp parallel for schedule(static) if (x->in[0]->numel > 16384)
    for (int64_t i = 0; i < rows; i++) {
        const float *z = zv + i * K, *t = tv + i * K;
        const float *y = s->int_labels ? NULL : (const float *)x->in[2]->val + i * K;
        int64_t id = s->int_labels ? label_at(x->in[2], i) : -1;
        double lt = lse_scaled(t, K, invT), ls = lse_scaled(z, K, invT), lz = lse_scaled(z, K, 1);
        double Y = 1;
        if (y) {
            Y = 0;
            for (int64_t k = 0; k < K; k++) Y += y[k];
        }
        float *d = dz + i * K;
        for (int64_t k = 0; k < K; k++) {
            double p = exp(t[k] * invT - lt), q = exp(z[k] * invT - ls), sm = exp(z[k] - lz);
            double yk = y ? y[k] : (k == id);
            float v = (float)(scale * (alpha * T * (q - p) + (1 - alpha) * (sm * Y - yk)));
            d[k] = accum ? d[k] + v : v;
        }
    }
}

const kiln_op kiln_op_softmax_distillation = {.name = "softmax_distillation",
                                              .backend = &kiln_backend_cpu,
                                              .infer = kd_infer,
                                              .compile = kd_compile,
                                              .forward = kd_forward,
                                              .backward = kd_backward,
                                              .release = kd_release};

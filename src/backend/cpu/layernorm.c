/* layernorm.c — layer normalization over the last axis, own OpenMP loops.
 *
 * Inputs: x [M, D] (all leading axes of x fold into M rows), then gamma [D] unless no_scale,
 * beta [D] unless no_center (kiln_layernorm_attr says which are present). Per row:
 *   mean = sum(x) / D,  var = sum((x - mean)^2) / D   (biased, as Keras and PyTorch)
 *   rstd = 1 / sqrt(var + eps),  xhat = (x - mean) * rstd,  y = gamma * xhat + beta
 * Numerics: two passes over the row (mean first, then squared deviations from it) with the
 * sums in double, so a row with a large offset and a small spread keeps its variance (the
 * one-pass E[x^2] - E[x]^2 in float would cancel to garbage). The elementwise work is float,
 * with the mean held as a pair hi + lo (hi = float(mean), lo = float(mean - hi)): x - hi is
 * exact when x is near the mean (Sterbenz), so (x - hi) - lo centers to within float rounding
 * of the centered value itself, where x - float(mean) would carry the mean's rounding error
 * (ulp(1000) = 6e-5, not small next to a spread of 1e-2). hi, lo and rstd [M] are kept in op
 * state for backward.
 *
 * Backward, with g = dy * gamma:
 *   dx    = rstd * (g - mean_D(g) - xhat * mean_D(g * xhat))     (rows in parallel)
 *   dgamma = sum_M dy * xhat,  dbeta = sum_M dy                    (columns in parallel)
 * The column sums go over rows in a fixed order into double accumulators, each column owned
 * by one thread, so gradients do not depend on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/attrs.h"

#define LN_PAR  32768 /* elements below which a loop runs on one thread */
#define LN_COLS 64    /* columns per block in the dgamma/dbeta reduction */

typedef struct {
    int64_t M, D;
    int gi, bi; /* input index of gamma, beta (-1 when absent) */
    float eps;
    float *hi, *lo, *rstd; /* [M] each: mean = hi + lo; one allocation at hi */
} ln_state;

static kiln_status ln_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                            kiln_dtype *dt) {
    const kiln_layernorm_attr *a = KILN_ATTR(n, kiln_layernorm_attr);
    char buf[512];
    int want = 1 + !a->no_scale + !a->no_center;
    if (n->n_in != want)
        return kiln_error(KILN_ERR_INVALID, "%s: layer norm takes %d inputs here, got %d",
                          kiln_node_describe(n, in, buf, sizeof buf), want, n->n_in);
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: input must be F32, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (in[0].ndim < 2)
        return kiln_error(KILN_ERR_SHAPE, "%s: need [batch, ..., features] (at least 2 dims)",
                          kiln_node_describe(n, in, buf, sizeof buf));
    int64_t D = in[0].dims[in[0].ndim - 1];
    for (int i = 1; i < n->n_in; i++)
        if (in[i].ndim != 1 || in[i].dims[0] != D)
            return kiln_error(KILN_ERR_SHAPE, "%s: gamma and beta must be [%lld] (x's last axis)",
                              kiln_node_describe(n, in, buf, sizeof buf), (long long)D);
    *out = in[0];
    *dt = KILN_F32;
    return KILN_OK;
}

static void ln_release(kiln_inst *x) {
    ln_state *s = x->state;
    kiln_free(s->hi);
    free(s);
    x->state = NULL;
}

static kiln_status ln_compile(kiln_inst *x, kiln_compile_ctx *c) {
    const kiln_layernorm_attr *a = KILN_ATTR(x->node, kiln_layernorm_attr);
    ln_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "layer norm: out of memory");
    x->state = s;
    s->D = x->shape.dims[x->shape.ndim - 1];
    s->M = x->numel / s->D;
    s->eps = a->epsilon;
    int k = 1;
    s->gi = a->no_scale ? -1 : k++;
    s->bi = a->no_center ? -1 : k;
    if (!(s->hi = kiln_alloc(3 * (size_t)s->M * sizeof(float)))) return KILN_ERR_NOMEM;
    s->lo = s->hi + s->M;
    s->rstd = s->lo + s->M;
    (void)c;
    return KILN_OK;
}

static kiln_status ln_forward(kiln_inst *x, const kiln_run *r) {
    ln_state *s = x->state;
    const int64_t M = s->M, D = s->D;
    const float *X = x->in[0]->val;                             /* [M, D] */
    const float *gamma = s->gi >= 0 ? x->in[s->gi]->val : NULL; /* [D] */
    const float *beta = s->bi >= 0 ? x->in[s->bi]->val : NULL;  /* [D] */
    float *Y = x->val;                                          /* [M, D] */
#pragma omp parallel for schedule(static) if (M * D > LN_PAR)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = X + m * D;
        float *yr = Y + m * D;
        double sum = 0, ss = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < D; j++) sum += xr[j];
        const double mean = sum / (double)D;
        const float hi = (float)mean, lo = (float)(mean - hi);
#pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < D; j++) {
            float d = (xr[j] - hi) - lo;
            ss += (double)d * d;
        }
        const float rstd = (float)(1.0 / sqrt(ss / (double)D + (double)s->eps));
        s->hi[m] = hi, s->lo[m] = lo, s->rstd[m] = rstd;
#pragma omp simd
        for (int64_t j = 0; j < D; j++) {
            float v = ((xr[j] - hi) - lo) * rstd;
            if (gamma) v *= gamma[j];
            if (beta) v += beta[j];
            yr[j] = v;
        }
    }
    (void)r;
    return KILN_OK;
}

/* dx for every row: overwrite or add (accum) into dX [M, D]. */
static void ln_backward_x(const ln_state *s, const float *X, const float *dY, const float *gamma,
                          float *dX, int accum) {
    const int64_t M = s->M, D = s->D;
#pragma omp parallel for schedule(static) if (M * D > LN_PAR)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = X + m * D, *dyr = dY + m * D;
        float *dxr = dX + m * D;
        const float hi = s->hi[m], lo = s->lo[m], rstd = s->rstd[m];
        double s1 = 0, s2 = 0; /* sum g, sum g * xhat */
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t j = 0; j < D; j++) {
            float g = gamma ? dyr[j] * gamma[j] : dyr[j];
            s1 += g;
            s2 += (double)g * (((xr[j] - hi) - lo) * rstd);
        }
        const float c1 = (float)(s1 / (double)D), c2 = (float)(s2 / (double)D);
#pragma omp simd
        for (int64_t j = 0; j < D; j++) {
            float g = gamma ? dyr[j] * gamma[j] : dyr[j];
            float d = rstd * (g - c1 - ((xr[j] - hi) - lo) * rstd * c2);
            dxr[j] = accum ? dxr[j] + d : d;
        }
    }
}

/* dgamma [D] = sum_m dy * xhat and dbeta [D] = sum_m dy (either may be NULL), by column blocks. */
static void ln_backward_params(const ln_state *s, const float *X, const float *dY, float *dgamma,
                               int acc_g, float *dbeta, int acc_b) {
    const int64_t M = s->M, D = s->D, nblk = (D + LN_COLS - 1) / LN_COLS;
#pragma omp parallel for schedule(static) if (M * D > LN_PAR && nblk > 1)
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t j0 = b * LN_COLS, w = D - j0 < LN_COLS ? D - j0 : LN_COLS;
        double ag[LN_COLS] = {0}, ab[LN_COLS] = {0};
        for (int64_t m = 0; m < M; m++) {
            const float *xr = X + m * D + j0, *dyr = dY + m * D + j0;
            const float hi = s->hi[m], lo = s->lo[m], rstd = s->rstd[m];
#pragma omp simd
            for (int64_t j = 0; j < w; j++) {
                ag[j] += (double)dyr[j] * (((xr[j] - hi) - lo) * rstd);
                ab[j] += dyr[j];
            }
        }
        for (int64_t j = 0; j < w; j++) {
            if (dgamma) dgamma[j0 + j] = (float)(acc_g ? dgamma[j0 + j] + ag[j] : ag[j]);
            if (dbeta) dbeta[j0 + j] = (float)(acc_b ? dbeta[j0 + j] + ab[j] : ab[j]);
        }
    }
}

static void ln_backward(kiln_inst *x, const kiln_run *r) {
    ln_state *s = x->state;
    const float *X = x->in[0]->val, *dY = x->grad;
    const float *gamma = s->gi >= 0 ? x->in[s->gi]->val : NULL;
    if (x->in[0]->grad) ln_backward_x(s, X, dY, gamma, x->in[0]->grad, x->accum[0]);
    float *dg = s->gi >= 0 ? x->in[s->gi]->grad : NULL,
          *db = s->bi >= 0 ? x->in[s->bi]->grad : NULL;
    if (dg || db)
        ln_backward_params(s, X, dY, dg, dg ? x->accum[s->gi] : 0, db, db ? x->accum[s->bi] : 0);
    (void)r;
}

const kiln_op kiln_op_layernorm = {
    .name = "layernorm",
    .backend = &kiln_backend_cpu,
    .infer = ln_infer,
    .compile = ln_compile,
    .forward = ln_forward,
    .backward = ln_backward,
    .release = ln_release,
};

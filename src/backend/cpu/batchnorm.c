/* batchnorm.c — batch normalization over axis 1 on oneDNN's batch_normalization primitives.
 *
 * Inputs: x [B, C, ...], then gamma [C] unless no_scale, beta [C] unless no_center, then
 * moving_mean [C] and moving_variance [C] (always the last two; kiln_batchnorm_attr says which
 * of gamma and beta are present). y has x's shape. All trailing axes of x fold into one
 * spatial axis S, so oneDNN sees a plain NCHW tensor [B, C, S, 1] whatever the rank (oneDNN
 * takes at most 5 dims; kiln allows 6). oneDNN expresses everything this op needs, so there
 * are no hand-written loops besides the running-statistics update and gradient accumulation:
 * dnnl_use_scale / dnnl_use_shift map gamma and beta one to one (no packed scale-shift copy).
 *
 * Training plans: forward_training computes the batch mean and the biased variance over
 * n = B * S values per channel into state buffers and normalizes with them; forward then
 * updates the running statistics in place (they are non-trainable parameters):
 *   moving_mean     = momentum * moving_mean     + (1 - momentum) * mean
 *   moving_variance = momentum * moving_variance + (1 - momentum) * var * n / (n - 1)
 * (unbiased variance, as Keras and PyTorch; with n == 1 the factor is 1, as in TensorFlow's
 * fused kernel). Backward is the full gradient through the batch statistics (dnnl_backward
 * without use_global_stats, reading the saved batch mean and variance).
 * Inference plans: forward_inference with dnnl_use_global_stats normalizes with the moving
 * statistics; backward (fine-tuning with frozen statistics) is the affine gradient
 * dx = dy * gamma / sqrt(moving_var + eps), again one oneDNN primitive with use_global_stats.
 *
 * oneDNN's backward overwrites its outputs. dgamma and dbeta land in state buffers [C] and are
 * copied or added into the parameter gradients. dx goes straight into x's gradient when the
 * plan says overwrite; when it says accumulate (or x takes no gradient at all) it goes into
 * r->scratch, whose handle is set at each backward (a pointer store, no allocation), and is
 * added from there.
 *
 * Deterministic plans (kiln_plan_opts.deterministic) use the loops at the end of this file
 * instead of oneDNN, whose statistics and dgamma/dbeta sum over the batch in an order that
 * depends on the thread count: each channel's sums are taken by one thread in a fixed order
 * (batch row by row, in double), everything else is elementwise.
 *
 * Synchronized batch norm (kiln_plan_on_reduce, set by data-parallel training): a training
 * batch norm of a plan with a reduce callback takes the same loops, deterministic plan or not,
 * and passes its per-channel sums through the callback between the passes, in double:
 * forward [sum x (C), count] -> global mean; [sum (x - mean)^2 (C)] -> global biased variance;
 * the moving statistics are updated from those with the global count. Backward reduces
 * [sum dy (C), sum dy * xhat (C)] (KILN_REDUCE_GRAD) for dx; dgamma and dbeta keep the local
 * sums (as PyTorch's SyncBatchNorm: the gradient averaging adds them once). The callback runs
 * outside OpenMP regions. A backward whose x takes no gradient needs no dx and reduces nothing;
 * every process runs the same plan, so all of them skip it alike.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/dnnl_util.h"
#include "backend/cpu/vec.h"
#include "backend/ops.h"
#include "backend/attrs.h"

typedef struct {
    int64_t B, C, S;
    int gi, bi, mi, vi; /* input index of gamma, beta (-1 when absent), moving mean, variance */
    int training;
    float momentum;
    float *buf;             /* one allocation for the four [C] vectors below */
    float *mean, *var;      /* [C] batch statistics of the last training forward (biased var) */
    float *dscale, *dshift; /* [C] oneDNN's dgamma, dbeta before they reach the gradients */
    dnnl_primitive_t fwd, bwd;
    dnnl_memory_t src, dst, scale, shift, mean_m, var_m;      /* forward */
    dnnl_memory_t diff_dst, diff_src, diff_scale, diff_shift; /* backward */
    int dx_direct; /* diff_src is x's gradient itself (overwrite); else r->scratch */
    int det;       /* deterministic plan: own loops (bn_det_forward / bn_det_backward) */
    float eps;
    double count;  /* values per channel behind mean/var: B * S, or the global count (sync) */
    double *acc;   /* [2C] sums handed to the reduce callback (synchronized batch norm) */
} bn_state;

static kiln_status bn_det_forward(kiln_inst *x, const kiln_run *r);
static void bn_det_backward(kiln_inst *x, const kiln_run *r);

static kiln_status bn_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                            kiln_dtype *dt) {
    const kiln_batchnorm_attr *a = KILN_ATTR(n, kiln_batchnorm_attr);
    char buf[512];
    int want = 3 + !a->no_scale + !a->no_center;
    if (n->n_in != want)
        return kiln_error(KILN_ERR_INVALID, "%s: batch norm takes %d inputs here, got %d",
                          kiln_node_describe(n, in, buf, sizeof buf), want, n->n_in);
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: input must be F32, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (in[0].ndim < 2)
        return kiln_error(KILN_ERR_SHAPE, "%s: need [batch, channels, ...] (at least 2 dims)",
                          kiln_node_describe(n, in, buf, sizeof buf));
    int64_t C = in[0].dims[1];
    for (int i = 1; i < n->n_in; i++)
        if (in[i].ndim != 1 || in[i].dims[0] != C)
            return kiln_error(KILN_ERR_SHAPE, "%s: every parameter must be [%lld] (axis 1 of x)",
                              kiln_node_describe(n, in, buf, sizeof buf), (long long)C);
    *out = in[0];
    *dt = KILN_F32;
    return KILN_OK;
}

static void bn_release(kiln_inst *x) {
    bn_state *s = x->state;
    if (s->fwd) dnnl_primitive_destroy(s->fwd);
    if (s->bwd) dnnl_primitive_destroy(s->bwd);
    dnnl_memory_t mems[] = {s->src,   s->dst,      s->scale,    s->shift,      s->mean_m,
                            s->var_m, s->diff_dst, s->diff_src, s->diff_scale, s->diff_shift};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    kiln_free(s->buf);
    free(s->acc);
    free(s);
    x->state = NULL;
}

static kiln_status bn_compile(kiln_inst *x, kiln_compile_ctx *c) {
    const kiln_batchnorm_attr *a = KILN_ATTR(x->node, kiln_batchnorm_attr);
    bn_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "batch norm: out of memory");
    x->state = s;
    s->B = x->shape.dims[0];
    s->C = x->shape.dims[1];
    s->S = x->numel / (s->B * s->C);
    int k = 1;
    s->gi = a->no_scale ? -1 : k++;
    s->bi = a->no_center ? -1 : k++;
    s->mi = k++;
    s->vi = k;
    s->training = c->training;
    s->momentum = a->momentum;
    s->det = c->deterministic;
    s->eps = a->epsilon;
    s->count = (double)(s->B * s->S);
    if (!(s->buf = kiln_alloc(4 * (size_t)s->C * sizeof(float)))) return KILN_ERR_NOMEM;
    if (s->training && !(s->acc = malloc(2 * (size_t)s->C * sizeof *s->acc)))
        return kiln_error(KILN_ERR_NOMEM, "batch norm: out of memory");
    s->mean = s->buf, s->var = s->buf + s->C;
    s->dscale = s->buf + 2 * s->C, s->dshift = s->buf + 3 * s->C;

    int64_t dd[4] = {s->B, s->C, s->S, 1}, cd[1] = {s->C};
    dnnl_memory_desc_t md = kiln_dnnl_md(4, dd, NULL), cmd = kiln_dnnl_md(1, cd, NULL);
    unsigned flags = (s->gi >= 0 ? dnnl_use_scale : 0u) | (s->bi >= 0 ? dnnl_use_shift : 0u) |
                     (s->training ? 0u : dnnl_use_global_stats);
    dnnl_batch_normalization_desc_t fd;
    CHECK_DNNL(dnnl_batch_normalization_forward_desc_init(
                   &fd, s->training ? dnnl_forward_training : dnnl_forward_inference, &md,
                   a->epsilon, flags),
               "batch normalization forward desc");
    dnnl_primitive_desc_t fpd = NULL;
    kiln_status st =
        kiln_dnnl_primitive(&fd, NULL, NULL, &s->fwd, &fpd, "batch normalization forward");
    if (st) return st;
    float *mean = s->training ? s->mean : x->in[s->mi]->val;
    float *var = s->training ? s->var : x->in[s->vi]->val;
    if (!(s->src = kiln_dnnl_mem(&md, x->in[0]->val)) || !(s->dst = kiln_dnnl_mem(&md, x->val)) ||
        !(s->mean_m = kiln_dnnl_mem(&cmd, mean)) || !(s->var_m = kiln_dnnl_mem(&cmd, var)) ||
        (s->gi >= 0 && !(s->scale = kiln_dnnl_mem(&cmd, x->in[s->gi]->val))) ||
        (s->bi >= 0 && !(s->shift = kiln_dnnl_mem(&cmd, x->in[s->bi]->val)))) {
        dnnl_primitive_desc_destroy(fpd);
        return KILN_ERR_BACKEND;
    }
    if (!x->grad || !c->has_backward) {
        dnnl_primitive_desc_destroy(fpd);
        return KILN_OK;
    }

    /* backward: full gradient (training) or affine gradient (use_global_stats) */
    dnnl_batch_normalization_desc_t bd;
    dnnl_prop_kind_t prop = (s->gi >= 0 || s->bi >= 0) ? dnnl_backward : dnnl_backward_data;
    dnnl_status_t ds =
        dnnl_batch_normalization_backward_desc_init(&bd, prop, &md, &md, a->epsilon, flags);
    if (ds == dnnl_success)
        st = kiln_dnnl_primitive(&bd, NULL, fpd, &s->bwd, NULL, "batch normalization backward");
    else
        st = kiln_error(KILN_ERR_BACKEND,
                        "oneDNN batch normalization backward desc failed (status %d)", (int)ds);
    dnnl_primitive_desc_destroy(fpd);
    if (st) return st;
    s->dx_direct = x->in[0]->grad && !x->accum[0];
    if (!s->dx_direct && c->scratch_bytes < (size_t)x->numel * sizeof(float))
        c->scratch_bytes = (size_t)x->numel * sizeof(float);
    if (!(s->diff_dst = kiln_dnnl_mem(&md, x->grad)) ||
        !(s->diff_src = kiln_dnnl_mem(&md, s->dx_direct ? x->in[0]->grad : DNNL_MEMORY_NONE)) ||
        !(s->diff_scale = kiln_dnnl_mem(&cmd, s->dscale)) ||
        !(s->diff_shift = kiln_dnnl_mem(&cmd, s->dshift)))
        return KILN_ERR_BACKEND;
    return KILN_OK;
}

static void bn_update_running(kiln_inst *x);

static kiln_status bn_forward(kiln_inst *x, const kiln_run *r) {
    bn_state *s = x->state;
    if (s->det || (s->training && r->reduce)) return bn_det_forward(x, r);
    dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, s->src},
                               {DNNL_ARG_DST, s->dst},
                               {DNNL_ARG_MEAN, s->mean_m},
                               {DNNL_ARG_VARIANCE, s->var_m}};
    int n = 4;
    if (s->scale) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, s->scale};
    if (s->shift) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, s->shift};
    kiln_status st = kiln_dnnl_exec(s->fwd, r->stream, n, args);
    if (st != KILN_OK || !s->training) return st;
    bn_update_running(x);
    return KILN_OK;
}

/* running statistics: exponential moving average, unbiased variance */
static void bn_update_running(kiln_inst *x) {
    bn_state *s = x->state;
    float *mm = x->in[s->mi]->val, *mv = x->in[s->vi]->val; /* [C] each */
    double cnt = s->count;
    float m = s->momentum, corr = cnt > 1 ? (float)(cnt / (cnt - 1)) : 1.0f;
    for (int64_t ch = 0; ch < s->C; ch++) {
        mm[ch] = m * mm[ch] + (1.0f - m) * s->mean[ch];
        mv[ch] = m * mv[ch] + (1.0f - m) * (s->var[ch] * corr);
    }
}

/* dst [n] = src (accum == 0) or dst += src (accum == 1) */
static void bn_backward(kiln_inst *x, const kiln_run *r) {
    bn_state *s = x->state;
    if (s->det || (s->training && r->reduce)) return bn_det_backward(x, r);
    if (!s->dx_direct) dnnl_memory_set_data_handle(s->diff_src, r->scratch);
    dnnl_exec_arg_t args[9] = {{DNNL_ARG_SRC, s->src},
                               {DNNL_ARG_MEAN, s->mean_m},
                               {DNNL_ARG_VARIANCE, s->var_m},
                               {DNNL_ARG_DIFF_DST, s->diff_dst},
                               {DNNL_ARG_DIFF_SRC, s->diff_src}};
    int n = 5;
    if (s->scale) {
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, s->scale};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SCALE, s->diff_scale};
    }
    if (s->shift) { /* oneDNN 2.6 rejects the call (invalid arguments) without SHIFT here */
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, s->shift};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SHIFT, s->diff_shift};
    }
    kiln_dnnl_exec(s->bwd, r->stream, n, args); /* shapes were checked at compile */
    if (x->in[0]->grad && !s->dx_direct) kiln_vec_put(x->in[0]->grad, r->scratch, x->numel, 1);
    if (s->gi >= 0 && x->in[s->gi]->grad) kiln_vec_put(x->in[s->gi]->grad, s->dscale, s->C, x->accum[s->gi]);
    if (s->bi >= 0 && x->in[s->bi]->grad) kiln_vec_put(x->in[s->bi]->grad, s->dshift, s->C, x->accum[s->bi]);
}

/* ---- deterministic plans ---- */

/* x [B, C, S]: channel c of row b is x + (b * C + c) * S */

/* Synchronized statistics: the two passes of the loop below with each pass's sums reduced over
 * the processes (s->acc: [sum (C), count], then [sum of squared deviations (C)]). */
static kiln_status bn_sync_stats(kiln_inst *x, const kiln_run *r) {
    bn_state *s = x->state;
    const float *in = x->in[0]->val;
    int64_t B = s->B, C = s->C, S = s->S;
    double *a = s->acc;
#pragma omp parallel for schedule(static) if (B * C * S > 32768)
    for (int64_t c = 0; c < C; c++) {
        double sum = 0;
        for (int64_t b = 0; b < B; b++) {
            const float *p = in + (b * C + c) * S;
            for (int64_t i = 0; i < S; i++) sum += p[i];
        }
        a[c] = sum;
    }
    a[C] = (double)(B * S);
    kiln_status st = r->reduce(r->reduce_ctx, a, (int)C + 1, KILN_REDUCE_SUM);
    if (st) return st;
    double n = a[C];
    s->count = n;
#pragma omp parallel for schedule(static) if (B * C * S > 32768)
    for (int64_t c = 0; c < C; c++) {
        double m = a[c] / n, ss = 0;
        for (int64_t b = 0; b < B; b++) {
            const float *p = in + (b * C + c) * S;
            for (int64_t i = 0; i < S; i++) ss += (p[i] - m) * (p[i] - m);
        }
        s->mean[c] = (float)m;
        a[C + c] = ss; /* a[C] (the count) is no longer needed */
    }
    if ((st = r->reduce(r->reduce_ctx, a + C, (int)C, KILN_REDUCE_SUM))) return st;
    for (int64_t c = 0; c < C; c++) s->var[c] = (float)(a[C + c] / n);
    return KILN_OK;
}

static kiln_status bn_det_forward(kiln_inst *x, const kiln_run *r) {
    bn_state *s = x->state;
    const float *in = x->in[0]->val;
    float *out = x->val;
    int64_t B = s->B, C = s->C, S = s->S;
    const float *mean = s->training ? s->mean : x->in[s->mi]->val;
    const float *var = s->training ? s->var : x->in[s->vi]->val;
    if (s->training && r->reduce) {
        kiln_status st = bn_sync_stats(x, r);
        if (st) return st;
    } else if (s->training) {
#pragma omp parallel for schedule(static) if (B * C * S > 32768)
        for (int64_t c = 0; c < C; c++) {
            double sum = 0, ss = 0;
            for (int64_t b = 0; b < B; b++) {
                const float *p = in + (b * C + c) * S;
                for (int64_t i = 0; i < S; i++) sum += p[i];
            }
            double m = sum / (double)(B * S);
            for (int64_t b = 0; b < B; b++) {
                const float *p = in + (b * C + c) * S;
                for (int64_t i = 0; i < S; i++) ss += (p[i] - m) * (p[i] - m);
            }
            s->mean[c] = (float)m;
            s->var[c] = (float)(ss / (double)(B * S));
        }
    }
    const float *gamma = s->gi >= 0 ? x->in[s->gi]->val : NULL, *beta = s->bi >= 0 ? x->in[s->bi]->val : NULL;
#pragma omp parallel for schedule(static) if (B * C * S > 32768)
    for (int64_t bc = 0; bc < B * C; bc++) {
        int64_t c = bc % C;
        float k = (gamma ? gamma[c] : 1.0f) / sqrtf(var[c] + s->eps), m = mean[c], o = beta ? beta[c] : 0.0f;
        const float *p = in + bc * S;
        float *q = out + bc * S;
        for (int64_t i = 0; i < S; i++) q[i] = (p[i] - m) * k + o;
    }
    if (s->training) bn_update_running(x);
    return KILN_OK;
}

/* training: dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)), dgamma = sum(dy * xhat),
 * dbeta = sum(dy); with the moving statistics: dx = gamma * rstd * dy */
static void bn_det_backward(kiln_inst *x, const kiln_run *r) {
    bn_state *s = x->state;
    const float *in = x->in[0]->val, *dy = x->grad;
    int64_t B = s->B, C = s->C, S = s->S;
    const float *mean = s->training ? s->mean : x->in[s->mi]->val;
    const float *var = s->training ? s->var : x->in[s->vi]->val;
    const float *gamma = s->gi >= 0 ? x->in[s->gi]->val : NULL;
    int sync = s->training && r->reduce && x->in[0]->grad;
#pragma omp parallel for schedule(static) if (B * C * S > 32768)
    for (int64_t c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        float rstd = 1.0f / sqrtf(var[c] + s->eps), m = mean[c];
        for (int64_t b = 0; b < B; b++) {
            const float *p = in + (b * C + c) * S, *g = dy + (b * C + c) * S;
            for (int64_t i = 0; i < S; i++) sdy += g[i], sdyx += g[i] * ((p[i] - m) * rstd);
        }
        s->dshift[c] = (float)sdy;
        s->dscale[c] = (float)sdyx;
        if (sync) s->acc[c] = sdy, s->acc[C + c] = sdyx;
    }
    if (x->in[0]->grad) {
        float *dx = s->dx_direct ? x->in[0]->grad : r->scratch;
        double n = s->count;
        /* dx's mean terms: the local sums, or (sync) the reduced ones; a failed reduction leaves
         * the local ones (the callback's owner reports the failure and the step is not applied) */
        int global = sync && !r->reduce(r->reduce_ctx, s->acc, 2 * (int)C, KILN_REDUCE_GRAD);
#pragma omp parallel for schedule(static) if (B * C * S > 32768)
        for (int64_t bc = 0; bc < B * C; bc++) {
            int64_t c = bc % C;
            float rstd = 1.0f / sqrtf(var[c] + s->eps), m = mean[c], k = (gamma ? gamma[c] : 1.0f) * rstd;
            float sy = global ? (float)s->acc[c] : s->dshift[c];
            float syx = global ? (float)s->acc[C + c] : s->dscale[c];
            float a = s->training ? (float)(sy / n) : 0.0f;
            float d = s->training ? (float)(syx / n) : 0.0f;
            const float *p = in + bc * S, *g = dy + bc * S;
            float *q = dx + bc * S;
            for (int64_t i = 0; i < S; i++) q[i] = k * (g[i] - a - (p[i] - m) * rstd * d);
        }
        if (!s->dx_direct) kiln_vec_put(x->in[0]->grad, r->scratch, x->numel, 1);
    }
    if (s->gi >= 0 && x->in[s->gi]->grad) kiln_vec_put(x->in[s->gi]->grad, s->dscale, s->C, x->accum[s->gi]);
    if (s->bi >= 0 && x->in[s->bi]->grad) kiln_vec_put(x->in[s->bi]->grad, s->dshift, s->C, x->accum[s->bi]);
}

const kiln_op kiln_op_batchnorm = {
    .name = "batchnorm",
    .backend = &kiln_backend_cpu,
    .infer = bn_infer,
    .compile = bn_compile,
    .forward = bn_forward,
    .backward = bn_backward,
    .release = bn_release,
};

/* dense.c — fully connected layer on oneDNN matmul: y = act(x W + b).
 *
 * Shapes: x [M, K] (all leading axes of x folded into M), W [K, N] (Keras layout), b [N],
 * y [M, N]. Forward is one matmul primitive with bias and the activation fused as a post-op
 * (GELU, hard_sigmoid and hard_swish, whose derivatives need the pre-activation z, are applied
 * by our own loop over z).
 * Backward, with dz = dy * act'(.) ([M, N]):
 *   dW [K, N] = x^T dz   (matmul reading x through transposed strides; no copy)
 *   db [N]    = sum over M of dz
 *   dx [M, K] = dz W^T   (matmul reading W through transposed strides)
 * Each matmul adds into its destination with a sum post-op when the plan says the gradient
 * accumulates (the same tensor feeds several ops).
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/act.h"
#include "backend/cpu/dnnl_util.h"
#include "backend/ops.h"
#include "backend/attrs.h"

typedef struct {
    int64_t M, K, N;
    kiln_act act;
    float alpha;
    float *pre; /* [M, N] z, kept only when act' needs it (kiln_act_grad_from_output) */
    float *dz;  /* [M, N] backward temporary when act != none */
    dnnl_primitive_t fwd, bwd_w, bwd_x;
    dnnl_memory_t x, w, b, y, dz_m, dw, dx, xt, wt;
    int det; /* deterministic plan: the splits below run instead of the three primitives */
    kiln_dnnl_split d_fwd, d_bx, d_bw;
} dense_state;

static kiln_status dense_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                               kiln_dtype *dt) {
    const kiln_dense_attr *a = KILN_ATTR(n, kiln_dense_attr);
    char buf[512];
    const kiln_shape *x = &in[0], *w = &in[1];
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: input must be F32, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf), kiln_dtype_name(n->in[0]->dtype));
    if (x->ndim < 2 || w->ndim != 2 || x->dims[x->ndim - 1] != w->dims[0] || w->dims[1] != a->units ||
        (n->n_in > 2 && (in[2].ndim != 1 || in[2].dims[0] != a->units)))
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: the input's last axis must equal the kernel's rows (x [..., K], "
                          "kernel [K, %d], bias [%d])",
                          kiln_node_describe(n, in, buf, sizeof buf), a->units, a->units);
    *out = *x;
    out->dims[out->ndim - 1] = a->units;
    *dt = KILN_F32;
    return KILN_OK;
}

static void dense_release(kiln_inst *x) {
    dense_state *s = x->state;
    dnnl_primitive_t prims[] = {s->fwd, s->bwd_w, s->bwd_x};
    dnnl_memory_t mems[] = {s->x, s->w, s->b, s->y, s->dz_m, s->dw, s->dx, s->xt, s->wt};
    for (size_t i = 0; i < sizeof prims / sizeof *prims; i++)
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    kiln_dnnl_split_release(&s->d_fwd);
    kiln_dnnl_split_release(&s->d_bx);
    kiln_dnnl_split_release(&s->d_bw);
    kiln_free(s->pre);
    kiln_free(s->dz);
    free(s);
    x->state = NULL;
}

/* dst [m, n] (+)= src [m, k] . wei [k, n], with explicit strides for src and wei. */
static kiln_status make_matmul(int64_t m, int64_t k, int64_t n, const int64_t *src_st,
                               const int64_t *wei_st, const float *bias, dnnl_alg_kind_t elt,
                               float alpha, int sum, dnnl_primitive_t *prim,
                               dnnl_memory_desc_t *src_md, dnnl_memory_desc_t *wei_md) {
    int64_t sd[2] = {m, k}, wd[2] = {k, n}, dd[2] = {m, n}, bd[2] = {1, n};
    *src_md = kiln_dnnl_md(2, sd, src_st);
    *wei_md = kiln_dnnl_md(2, wd, wei_st);
    dnnl_memory_desc_t dst_md = kiln_dnnl_md(2, dd, NULL), bias_md = kiln_dnnl_md(2, bd, NULL);
    dnnl_matmul_desc_t md;
    CHECK_DNNL(dnnl_matmul_desc_init(&md, src_md, wei_md, bias ? &bias_md : NULL, &dst_md),
               "matmul desc");
    dnnl_primitive_attr_t attr = kiln_dnnl_attr(elt, alpha, sum);
    kiln_status st = kiln_dnnl_primitive(&md, attr, NULL, prim, NULL, "matmul");
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* ---- deterministic plans: each matmul cut into chunks of its output's rows (dnnl_util.h) ----
 * No chunk sums over another's rows: the forward and dx are cut along the batch rows M, dW
 * [K, N] along its rows K (x^T's rows), so every value is one single-threaded matmul's. */
typedef struct {
    dnnl_memory_desc_t src, wei, dst; /* the whole matmul's; src and dst are cut along axis 0 */
    int bias, sum;
    dnnl_alg_kind_t elt;
    float alpha;
} dense_split_ctx;

static kiln_status dense_split_make(void *vc, int64_t rows, dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd) {
    const dense_split_ctx *k = vc;
    dnnl_memory_desc_t src = kiln_dnnl_md_rows(&k->src, 0, rows), dst = kiln_dnnl_md_rows(&k->dst, 0, rows);
    int64_t bd[2] = {1, k->dst.dims[1]};
    dnnl_memory_desc_t bmd = kiln_dnnl_md(2, bd, NULL);
    dnnl_matmul_desc_t md;
    CHECK_DNNL(dnnl_matmul_desc_init(&md, &src, &k->wei, k->bias ? &bmd : NULL, &dst), "matmul desc (a chunk)");
    kiln_dnnl_attr_post_ops(attr, k->elt, k->alpha, k->sum);
    CHECK_DNNL(dnnl_primitive_desc_create(pd, &md, attr, kiln_dnnl_engine(), NULL), "matmul (a chunk)");
    return KILN_OK;
}

/* dst [m, n] (+)= src [m, k] . wei [k, n] (strides as make_matmul) in chunks of rows of m. */
static kiln_status dense_split(kiln_dnnl_split *sp, int64_t m, int64_t k, int64_t n, const int64_t *src_st,
                               const int64_t *wei_st, int bias, dnnl_alg_kind_t elt, float alpha, int sum,
                               const char *what) {
    int64_t sd[2] = {m, k}, wd[2] = {k, n}, dd[2] = {m, n};
    dense_split_ctx c = {kiln_dnnl_md(2, sd, src_st), kiln_dnnl_md(2, wd, wei_st), kiln_dnnl_md(2, dd, NULL),
                         bias, sum, elt, alpha};
    kiln_dnnl_split_arg a[4] = {{DNNL_ARG_SRC, KILN_SPLIT_ROWS, 0},
                                {DNNL_ARG_WEIGHTS, KILN_SPLIT_WHOLE, 0},
                                {DNNL_ARG_DST, KILN_SPLIT_ROWS, 0},
                                {DNNL_ARG_BIAS, KILN_SPLIT_WHOLE, 0}};
    return kiln_dnnl_split_init(sp, m, (double)k * (double)n, omp_get_max_threads(), a, bias ? 4 : 3,
                                dense_split_make, &c, what);
}

static kiln_status dense_split_exec(kiln_dnnl_split *sp, dnnl_memory_t src, dnnl_memory_t wei, dnnl_memory_t dst,
                                    dnnl_memory_t bias) {
    void *p[4] = {kiln_dnnl_mem_ptr(src), kiln_dnnl_mem_ptr(wei), kiln_dnnl_mem_ptr(dst),
                  bias ? kiln_dnnl_mem_ptr(bias) : NULL};
    return kiln_dnnl_split_exec(sp, p, NULL);
}

static kiln_status dense_compile(kiln_inst *x, kiln_compile_ctx *c) {
    const kiln_dense_attr *a = KILN_ATTR(x->node, kiln_dense_attr);
    dense_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "dense: out of memory");
    x->state = s;
    s->K = x->in[1]->shape.dims[0];
    s->N = a->units;
    s->M = x->numel / s->N;
    s->act = a->act;
    int fuse = kiln_act_grad_from_output(s->act); /* else own loop over z */
    dnnl_alg_kind_t elt = fuse ? kiln_dnnl_act_alg(s->act, &s->alpha) : (dnnl_alg_kind_t)0;
    if (!fuse && !(s->pre = kiln_alloc((size_t)x->numel * sizeof(float)))) return KILN_ERR_NOMEM;
    int64_t yd[2] = {s->M, s->N}, bd[2] = {1, s->N};
    dnnl_memory_desc_t xmd, wmd, ymd = kiln_dnnl_md(2, yd, NULL), bmd = kiln_dnnl_md(2, bd, NULL);
    int has_bias = x->n_in > 2;
    kiln_status st = make_matmul(s->M, s->K, s->N, NULL, NULL, has_bias ? (float *)1 : NULL, elt,
                                 s->alpha, 0, &s->fwd, &xmd, &wmd);
    if (st) return st;
    if (!(s->x = kiln_dnnl_mem(&xmd, x->in[0]->val)) || !(s->w = kiln_dnnl_mem(&wmd, x->in[1]->val)) ||
        !(s->y = kiln_dnnl_mem(&ymd, fuse ? x->val : s->pre)) ||
        (has_bias && !(s->b = kiln_dnnl_mem(&bmd, x->in[2]->val))))
        return KILN_ERR_BACKEND;
    s->det = c->deterministic;
    if (s->det && (st = dense_split(&s->d_fwd, s->M, s->K, s->N, NULL, NULL, has_bias, elt, s->alpha, 0,
                                    "dense forward")))
        return st;
    if (!x->grad) return KILN_OK;

    float *dz = x->grad;
    if (s->act != KILN_ACT_NONE) {
        if (!(s->dz = kiln_alloc((size_t)x->numel * sizeof(float)))) return KILN_ERR_NOMEM;
        dz = s->dz;
    }
    dnnl_memory_desc_t dzmd = kiln_dnnl_md(2, yd, NULL);
    if (!(s->dz_m = kiln_dnnl_mem(&dzmd, dz))) return KILN_ERR_BACKEND;
    if (x->in[1]->grad) { /* dW [K, N] = x^T [K, M] . dz [M, N] */
        int64_t xt_st[2] = {1, s->K};
        dnnl_memory_desc_t smd, dmd;
        st = make_matmul(s->K, s->M, s->N, xt_st, NULL, NULL, 0, 0, x->accum[1], &s->bwd_w, &smd, &dmd);
        if (!st && s->det)
            st = dense_split(&s->d_bw, s->K, s->M, s->N, xt_st, NULL, 0, 0, 0, x->accum[1], "dense backward-weights");
        if (st) return st;
        int64_t wd[2] = {s->K, s->N};
        dnnl_memory_desc_t dwmd = kiln_dnnl_md(2, wd, NULL);
        if (!(s->xt = kiln_dnnl_mem(&smd, x->in[0]->val)) || !(s->dw = kiln_dnnl_mem(&dwmd, x->in[1]->grad)))
            return KILN_ERR_BACKEND;
    }
    if (x->in[0]->grad) { /* dx [M, K] = dz [M, N] . W^T [N, K] */
        int64_t wt_st[2] = {1, s->N};
        dnnl_memory_desc_t smd, wtmd;
        st = make_matmul(s->M, s->N, s->K, NULL, wt_st, NULL, 0, 0, x->accum[0], &s->bwd_x, &smd, &wtmd);
        if (!st && s->det)
            st = dense_split(&s->d_bx, s->M, s->N, s->K, NULL, wt_st, 0, 0, 0, x->accum[0], "dense backward-data");
        if (st) return st;
        int64_t xd[2] = {s->M, s->K};
        dnnl_memory_desc_t dxmd = kiln_dnnl_md(2, xd, NULL);
        if (!(s->wt = kiln_dnnl_mem(&wtmd, x->in[1]->val)) || !(s->dx = kiln_dnnl_mem(&dxmd, x->in[0]->grad)))
            return KILN_ERR_BACKEND;
    }
    (void)c;
    return KILN_OK;
}

static kiln_status dense_forward(kiln_inst *x, const kiln_run *r) {
    dense_state *s = x->state;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->x}, {DNNL_ARG_WEIGHTS, s->w}, {DNNL_ARG_DST, s->y},
                               {DNNL_ARG_BIAS, s->b}};
    kiln_status st = s->det ? dense_split_exec(&s->d_fwd, s->x, s->w, s->y, s->b)
                            : kiln_dnnl_exec(s->fwd, r->stream, s->b ? 4 : 3, args);
    if (st == KILN_OK && s->pre) kiln_act_forward(s->act, s->alpha, s->pre, x->val, x->numel);
    return st;
}

static void dense_backward(kiln_inst *x, const kiln_run *r) {
    dense_state *s = x->state;
    const float *dz = x->grad;
    if (s->act != KILN_ACT_NONE) {
        kiln_act_backward(s->act, s->alpha, s->pre, x->val, x->grad, s->dz, x->numel, 0);
        dz = s->dz;
    }
    if (s->bwd_x) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, s->dz_m}, {DNNL_ARG_WEIGHTS, s->wt}, {DNNL_ARG_DST, s->dx}};
        if (s->det) dense_split_exec(&s->d_bx, s->dz_m, s->wt, s->dx, NULL);
        else kiln_dnnl_exec(s->bwd_x, r->stream, 3, args);
    }
    if (s->bwd_w) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, s->xt}, {DNNL_ARG_WEIGHTS, s->dz_m}, {DNNL_ARG_DST, s->dw}};
        if (s->det) dense_split_exec(&s->d_bw, s->xt, s->dz_m, s->dw, NULL);
        else kiln_dnnl_exec(s->bwd_w, r->stream, 3, args);
    }
    if (x->n_in > 2 && x->in[2]->grad) { /* db [N] = sum_m dz [m, :] */
        float *db = x->in[2]->grad;
        if (!x->accum[2]) memset(db, 0, (size_t)s->N * sizeof *db);
        for (int64_t m = 0; m < s->M; m++) {
            const float *row = dz + m * s->N;
#pragma omp simd
            for (int64_t j = 0; j < s->N; j++) db[j] += row[j];
        }
    }
}

const kiln_op kiln_op_dense = {
    .name = "dense",
    .backend = &kiln_backend_cpu,
    .infer = dense_infer,
    .compile = dense_compile,
    .forward = dense_forward,
    .backward = dense_backward,
    .release = dense_release,
};

/* conv2d.c — 2-D convolution on oneDNN: y = act(conv(x, W) + b), NCHW.
 *
 * Shapes: x [B, C, H, W], kernel W [F, C/G, KH, KW] (G groups; read by oneDNN as goihw
 * [G, F/G, C/G, KH, KW], the same bytes), bias b [F], y [B, F, OH, OW]. Layouts are plain
 * (nchw, oihw/goihw) because parameters live in the graph's flat buffer and activations in the
 * plan's arena in those layouts. Padding follows kiln_conv_out_size (TF's "same" may pad one
 * more after than before: oneDNN's padding_l / padding_r); oneDNN counts dilation from 0, ours
 * from 1.
 *
 * Forward is one convolution primitive with bias and the activation fused as an eltwise post-op;
 * GELU, whose derivative needs the pre-activation z, is applied by our own loop over z kept in
 * state. Backward, with dz = dy * act'(.) [B, F, OH, OW] (in state when act != none):
 *   dx [B, C, H, W]  = backward-data(dz, W)           (only when x has a gradient)
 *   dW [F, C/G, KH, KW], db [F] = backward-weights(x, dz)  (when the kernel or bias has one)
 * oneDNN's backward primitives only overwrite, so a gradient that accumulates (x->accum) or is
 * not wanted (a frozen kernel beside a trainable bias) is written into the plan's scratch and
 * added (or dropped). Inputs are handled in index order: x, kernel, bias.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/act.h"
#include "backend/cpu/dnnl_util.h"
#include "graph/ops.h"
#include "nn/attrs.h"

typedef struct {
    kiln_act act;
    float alpha;
    int64_t nx, nw, nb, ny;     /* element counts of x, kernel, bias, y */
    float *pre;                 /* [B, F, OH, OW] z, kept only for GELU */
    float *dz;                  /* [B, F, OH, OW] backward temporary when act != none */
    int dx_tmp, dw_tmp, db_tmp; /* that gradient goes through scratch */
    size_t db_off;              /* byte offset of db in scratch */
    dnnl_primitive_t fwd, bwd_x, bwd_w;
    dnnl_memory_t x, w, b, y, dz_m, dx, dw, db;
} conv_state;

static const char *pad_name(kiln_padding p) {
    return p == KILN_PAD_VALID ? "valid" : p == KILN_PAD_SAME ? "same" : "explicit";
}

static kiln_status conv_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                              kiln_dtype *dt) {
    const kiln_conv2d_attr *a = KILN_ATTR(n, kiln_conv2d_attr);
    char buf[512];
    const kiln_shape *x = &in[0], *w = &in[1];
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: input must be F32, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (a->filters <= 0 || a->groups <= 0 || a->filters % a->groups || a->stride[0] <= 0 ||
        a->stride[1] <= 0 || a->dilation[0] <= 0 || a->dilation[1] <= 0)
        return kiln_error(
            KILN_ERR_INVALID,
            "%s: bad attributes (filters %d, groups %d, stride %dx%d, dilation %dx%d)",
            kiln_node_describe(n, in, buf, sizeof buf), a->filters, a->groups, a->stride[0],
            a->stride[1], a->dilation[0], a->dilation[1]);
    if (x->ndim != 4)
        return kiln_error(KILN_ERR_SHAPE, "%s: the input must be [batch, channels, height, width]",
                          kiln_node_describe(n, in, buf, sizeof buf));
    if (x->dims[1] % a->groups)
        return kiln_error(
            KILN_ERR_SHAPE, "%s: %lld input channels are not a multiple of groups = %d",
            kiln_node_describe(n, in, buf, sizeof buf), (long long)x->dims[1], a->groups);
    if (w->ndim != 4 || w->dims[0] != a->filters || w->dims[1] != x->dims[1] / a->groups ||
        w->dims[2] != a->kernel[0] || w->dims[3] != a->kernel[1] ||
        (n->n_in > 2 && (in[2].ndim != 1 || in[2].dims[0] != a->filters)))
        return kiln_error(KILN_ERR_SHAPE, "%s: need kernel [%d, %lld, %d, %d] and bias [%d]",
                          kiln_node_describe(n, in, buf, sizeof buf), a->filters,
                          (long long)(x->dims[1] / a->groups), a->kernel[0], a->kernel[1],
                          a->filters);
    *out = *x;
    out->dims[1] = a->filters;
    for (int i = 0; i < 2; i++) {
        int64_t pb, pa;
        out->dims[2 + i] = kiln_conv_out_size(x->dims[2 + i], a->kernel[i], a->stride[i],
                                              a->dilation[i], a->padding, a->pad[i], &pb, &pa);
        if (out->dims[2 + i] < 1)
            return kiln_error(
                KILN_ERR_SHAPE,
                "%s: kernel %dx%d (dilation %dx%d) is larger than the %s-padded input",
                kiln_node_describe(n, in, buf, sizeof buf), a->kernel[0], a->kernel[1],
                a->dilation[0], a->dilation[1], pad_name(a->padding));
    }
    *dt = KILN_F32;
    return KILN_OK;
}

static void conv_release(kiln_inst *x) {
    conv_state *s = x->state;
    dnnl_primitive_t prims[] = {s->fwd, s->bwd_x, s->bwd_w};
    dnnl_memory_t mems[] = {s->x, s->w, s->b, s->y, s->dz_m, s->dx, s->dw, s->db};
    for (size_t i = 0; i < sizeof prims / sizeof *prims; i++)
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    kiln_free(s->pre);
    kiln_free(s->dz);
    free(s);
    x->state = NULL;
}

/* A memory object over p, or with no buffer yet (p == NULL: set to scratch in backward). */
static int mem(dnnl_memory_t *m, const dnnl_memory_desc_t *md, void *p) {
    return (*m = kiln_dnnl_mem(md, p)) == NULL;
}

/* What the forward and backward descriptors share. */
typedef struct {
    dnnl_memory_desc_t x, w, b, y; /* plain nchw, (g)oihw, [F], nchw */
    dnnl_dims_t stride, dil, pad_l, pad_r;
} conv_geom;

/* dz and the backward primitives for whichever of dx, dW, db have gradients. */
static kiln_status compile_backward(kiln_inst *x, conv_state *s, const conv_geom *q,
                                    const_dnnl_primitive_desc_t fwd_pd, kiln_compile_ctx *c) {
    float *dz = x->grad;
    if (s->act != KILN_ACT_NONE) {
        if (!(s->dz = kiln_alloc((size_t)s->ny * sizeof(float)))) return KILN_ERR_NOMEM;
        dz = s->dz;
    }
    if (mem(&s->dz_m, &q->y, dz)) return KILN_ERR_BACKEND;
    kiln_status st;
    size_t scratch = 0;
    if (x->in[0]->grad) {
        dnnl_convolution_desc_t d;
        CHECK_DNNL(dnnl_dilated_convolution_backward_data_desc_init(&d, dnnl_convolution_direct,
                                                                    &q->x, &q->w, &q->y, q->stride,
                                                                    q->dil, q->pad_l, q->pad_r),
                   "convolution backward-data desc");
        if ((st = kiln_dnnl_primitive(&d, NULL, fwd_pd, &s->bwd_x, NULL,
                                      "convolution backward-data")))
            return st;
        s->dx_tmp = x->accum[0];
        if (mem(&s->dx, &q->x, s->dx_tmp ? NULL : x->in[0]->grad)) return KILN_ERR_BACKEND;
        if (s->dx_tmp) scratch = (size_t)s->nx * sizeof(float);
    }
    int want_w = x->in[1]->grad != NULL, want_b = x->n_in > 2 && x->in[2]->grad;
    if (want_w || want_b) {
        dnnl_convolution_desc_t d;
        CHECK_DNNL(dnnl_dilated_convolution_backward_weights_desc_init(
                       &d, dnnl_convolution_direct, &q->x, &q->w, want_b ? &q->b : NULL, &q->y,
                       q->stride, q->dil, q->pad_l, q->pad_r),
                   "convolution backward-weights desc");
        if ((st = kiln_dnnl_primitive(&d, NULL, fwd_pd, &s->bwd_w, NULL,
                                      "convolution backward-weights")))
            return st;
        /* scratch: dW at 0 when it accumulates or is dropped, db at db_off when it accumulates */
        s->dw_tmp = !want_w || x->accum[1];
        s->db_tmp = want_b && x->accum[2];
        s->db_off = kiln_align_up((size_t)s->nw * sizeof(float));
        if (mem(&s->dw, &q->w, s->dw_tmp ? NULL : x->in[1]->grad) ||
            (want_b && mem(&s->db, &q->b, s->db_tmp ? NULL : x->in[2]->grad)))
            return KILN_ERR_BACKEND;
        size_t need = s->db_tmp   ? s->db_off + (size_t)s->nb * sizeof(float)
                      : s->dw_tmp ? s->db_off
                                  : 0;
        if (need > scratch) scratch = need;
    }
    if (scratch > c->scratch_bytes) c->scratch_bytes = scratch;
    return KILN_OK;
}

static kiln_status conv_compile(kiln_inst *x, kiln_compile_ctx *c) {
    const kiln_conv2d_attr *a = KILN_ATTR(x->node, kiln_conv2d_attr);
    conv_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "conv2d: out of memory");
    x->state = s;
    const kiln_shape *xs = &x->in[0]->shape;
    int64_t C = xs->dims[1], F = a->filters, G = a->groups;
    s->act = a->act;
    s->nx = x->in[0]->numel;
    s->nw = x->in[1]->numel;
    s->nb = F;
    s->ny = x->numel;
    int has_bias = x->n_in > 2, fuse = s->act != KILN_ACT_GELU;
    dnnl_alg_kind_t elt = fuse ? kiln_dnnl_act_alg(s->act, &s->alpha) : (dnnl_alg_kind_t)0;
    if (!fuse && !(s->pre = kiln_alloc((size_t)s->ny * sizeof(float)))) return KILN_ERR_NOMEM;

    conv_geom q;
    for (int i = 0; i < 2; i++) {
        q.stride[i] = a->stride[i];
        q.dil[i] = a->dilation[i] - 1;
        kiln_conv_out_size(xs->dims[2 + i], a->kernel[i], a->stride[i], a->dilation[i], a->padding,
                           a->pad[i], &q.pad_l[i], &q.pad_r[i]);
    }
    int64_t wd[5] = {G, F / G, C / G, a->kernel[0], a->kernel[1]};
    q.x = kiln_dnnl_md(4, xs->dims, NULL);
    q.y = kiln_dnnl_md(4, x->shape.dims, NULL);
    q.w = G > 1 ? kiln_dnnl_md(5, wd, NULL) : kiln_dnnl_md(4, wd + 1, NULL);
    q.b = kiln_dnnl_md(1, &F, NULL);

    dnnl_convolution_desc_t fd;
    CHECK_DNNL(dnnl_dilated_convolution_forward_desc_init(
                   &fd, x->grad ? dnnl_forward_training : dnnl_forward_inference,
                   dnnl_convolution_direct, &q.x, &q.w, has_bias ? &q.b : NULL, &q.y, q.stride,
                   q.dil, q.pad_l, q.pad_r),
               "convolution forward desc");
    dnnl_primitive_attr_t attr = kiln_dnnl_attr(elt, s->alpha, 0);
    dnnl_primitive_desc_t fwd_pd = NULL;
    kiln_status st = kiln_dnnl_primitive(&fd, attr, NULL, &s->fwd, &fwd_pd, "convolution forward");
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st) return st;
    if (mem(&s->x, &q.x, x->in[0]->val) || mem(&s->w, &q.w, x->in[1]->val) ||
        mem(&s->y, &q.y, fuse ? x->val : s->pre) || (has_bias && mem(&s->b, &q.b, x->in[2]->val)))
        st = KILN_ERR_BACKEND;
    else if (x->grad)
        st = compile_backward(x, s, &q, fwd_pd, c);
    dnnl_primitive_desc_destroy(fwd_pd);
    return st;
}

static kiln_status conv_forward(kiln_inst *x, const kiln_run *r) {
    conv_state *s = x->state;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->x},
                               {DNNL_ARG_WEIGHTS, s->w},
                               {DNNL_ARG_DST, s->y},
                               {DNNL_ARG_BIAS, s->b}};
    kiln_status st = kiln_dnnl_exec(s->fwd, r->stream, s->b ? 4 : 3, args);
    if (st == KILN_OK && s->pre) kiln_act_forward(s->act, s->alpha, s->pre, x->val, s->ny);
    return st;
}

/* dst[i] += src[i] */
static void add_into(float *dst, const float *src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

static void conv_backward(kiln_inst *x, const kiln_run *r) {
    conv_state *s = x->state;
    char *scratch = r->scratch;
    if (s->act != KILN_ACT_NONE)
        kiln_act_backward(s->act, s->alpha, s->pre, x->val, x->grad, s->dz, s->ny, 0);
    if (s->bwd_x) {
        if (s->dx_tmp) dnnl_memory_set_data_handle(s->dx, scratch);
        dnnl_exec_arg_t args[3] = {
            {DNNL_ARG_DIFF_DST, s->dz_m}, {DNNL_ARG_WEIGHTS, s->w}, {DNNL_ARG_DIFF_SRC, s->dx}};
        kiln_dnnl_exec(s->bwd_x, r->stream, 3, args);
        if (s->dx_tmp) add_into(x->in[0]->grad, (const float *)scratch, s->nx);
    }
    if (s->bwd_w) {
        if (s->dw_tmp) dnnl_memory_set_data_handle(s->dw, scratch);
        if (s->db_tmp) dnnl_memory_set_data_handle(s->db, scratch + s->db_off);
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->x},
                                   {DNNL_ARG_DIFF_DST, s->dz_m},
                                   {DNNL_ARG_DIFF_WEIGHTS, s->dw},
                                   {DNNL_ARG_DIFF_BIAS, s->db}};
        kiln_dnnl_exec(s->bwd_w, r->stream, s->db ? 4 : 3, args);
        if (s->dw_tmp && x->in[1]->grad) add_into(x->in[1]->grad, (const float *)scratch, s->nw);
        if (s->db_tmp) add_into(x->in[2]->grad, (const float *)(scratch + s->db_off), s->nb);
    }
}

const kiln_op kiln_op_conv2d = {
    .name = "conv2d",
    .infer = conv_infer,
    .compile = conv_compile,
    .forward = conv_forward,
    .backward = conv_backward,
    .release = conv_release,
};

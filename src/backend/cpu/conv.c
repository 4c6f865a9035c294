/* conv.c — convolution of 1, 2 or 3 spatial axes and transposed convolution on oneDNN:
 * y = act(conv(x, W) + b), N C spatial... One op implementation, several table entries
 * (conv1d, conv2d, conv3d, conv2d_transpose); the attribute (kiln_conv_attr) says nd and whether
 * it is transposed, and the entry's name must agree (checked in infer).
 *
 * Shapes (2-D shown; 1-D drops H, 3-D adds D before H): x [B, C, H, W], kernel W [F, C/G, KH,
 * KW] (G groups; read by oneDNN as goihw [G, F/G, C/G, KH, KW], the same bytes), bias b [F],
 * y [B, F, OH, OW]. Transposed: W [C, F/G, KH, KW] (PyTorch's ConvTranspose), which oneDNN's
 * deconvolution reads as the same logical goihw through strides (giohw bytes). Padding follows
 * kiln_conv_axis / kiln_deconv_axis (before and after may differ: oneDNN's padding_l /
 * padding_r; a transposed conv's output_padding is taken off padding_r); oneDNN counts
 * dilation from 0, ours from 1.
 *
 * Layouts. Parameters stay plain (oihw/goihw) in the graph's flat buffer. Activations are not
 * forced plain: the forward primitive is created with "any" for weights and output, so oneDNN
 * picks its fast blocked kernels (nChw8c on AVX2), and the output keeps that layout when its
 * consumers are layout-aware (pooling, the next conv); a plain input (the image) is taken as
 * is. Weights are reordered into the primitive's layout once per step (a few KB), and when
 * something downstream needs the output plain the edge reorder (dnnl_util.h) converts it.
 *
 * Forward: one convolution primitive with bias and the activation fused as an eltwise post-op;
 * GELU, whose derivative needs the pre-activation z, is applied by our own loop over z kept in
 * state (elementwise, so in whatever layout the output has). Backward, with dz = dy * act'(.)
 * (in state when act != none):
 *   dx = backward-data(dz, W)              (only when x has a gradient; x's layout)
 *   dW, db = backward-weights(x, dz)       (when the kernel or bias has one)
 * oneDNN's backward primitives only overwrite, so a gradient that accumulates (x->accum) or is
 * not wanted (a frozen kernel beside a trainable bias) is written into the plan's scratch and
 * added (or dropped). Inputs are handled in index order: x, kernel, bias.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/act.h"
#include "backend/cpu/dnnl_util.h"
#include "backend/cpu/vec.h"
#include "backend/ops.h"
#include "backend/attrs.h"

/* What the forward and backward descriptors share (plain layouts and geometry). */
typedef struct {
    dnnl_memory_desc_t x, w, b, y; /* plain nchw, (g)oihw, [F], nchw */
    dnnl_dims_t stride, dil, pad_l, pad_r;
    int nd, tr; /* spatial axes; transposed (deconvolution) */
} conv_geom;

/* The descriptors of either kind: convolution, or deconvolution when q->tr. */
static dnnl_status_t fwd_desc(dnnl_convolution_desc_t *d, const conv_geom *q, dnnl_prop_kind_t prop,
                              const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *w,
                              const dnnl_memory_desc_t *b, const dnnl_memory_desc_t *dst) {
    if (q->tr)
        return dnnl_dilated_deconvolution_forward_desc_init(d, prop, dnnl_deconvolution_direct, src, w, b, dst,
                                                            q->stride, q->dil, q->pad_l, q->pad_r);
    return dnnl_dilated_convolution_forward_desc_init(d, prop, dnnl_convolution_direct, src, w, b, dst, q->stride,
                                                      q->dil, q->pad_l, q->pad_r);
}
static dnnl_status_t bwd_data_desc(dnnl_convolution_desc_t *d, const conv_geom *q, const dnnl_memory_desc_t *dx,
                                   const dnnl_memory_desc_t *w, const dnnl_memory_desc_t *dy) {
    if (q->tr)
        return dnnl_dilated_deconvolution_backward_data_desc_init(d, dnnl_deconvolution_direct, dx, w, dy, q->stride,
                                                                  q->dil, q->pad_l, q->pad_r);
    return dnnl_dilated_convolution_backward_data_desc_init(d, dnnl_convolution_direct, dx, w, dy, q->stride, q->dil,
                                                            q->pad_l, q->pad_r);
}
static dnnl_status_t bwd_weights_desc(dnnl_convolution_desc_t *d, const conv_geom *q, const dnnl_memory_desc_t *x,
                                      const dnnl_memory_desc_t *dw, const dnnl_memory_desc_t *db,
                                      const dnnl_memory_desc_t *dy) {
    if (q->tr)
        return dnnl_dilated_deconvolution_backward_weights_desc_init(d, dnnl_deconvolution_direct, x, dw, db, dy,
                                                                     q->stride, q->dil, q->pad_l, q->pad_r);
    return dnnl_dilated_convolution_backward_weights_desc_init(d, dnnl_convolution_direct, x, dw, db, dy, q->stride,
                                                               q->dil, q->pad_l, q->pad_r);
}

typedef struct {
    kiln_act act;
    float alpha;
    conv_geom q;
    dnnl_memory_desc_t xmd;       /* input 0's layout in the plan */
    dnnl_primitive_desc_t fwd_pd; /* from choose_layout to compile */
    kiln_dnnl_edge out;           /* output layout and edge reorders */
    int64_t ny;                   /* floats in the output buffer (padded layouts included) */
    float *pre;                   /* [out] z, kept when act' needs it (GELU, hard_*) */
    float *dz;                    /* [out] backward temporary when act != none */
    kiln_dnnl_port src, w;        /* forward: x and the kernel in the primitive's layouts */
    kiln_dnnl_port bd_dy, bd_w, bd_dx; /* backward-data */
    kiln_dnnl_port bw_src, bw_dy, bw_dw; /* backward-weights */
    int dx_tmp, dw_tmp, db_tmp;   /* that gradient goes through scratch */
    size_t db_off;                /* byte offset of db in scratch */
    int64_t nx_floats, nw, nb;
    dnnl_primitive_t fwd, bwd_x, bwd_w;
    dnnl_memory_t b, y, db;
    int det;                        /* deterministic plan: the three splits below run instead */
    dnnl_prop_kind_t prop;          /* the forward's */
    dnnl_alg_kind_t elt;            /* the fused activation (0: none) */
    kiln_dnnl_split d_fwd, d_bx, d_bw;
} conv_state;

static const char *pad_name(kiln_padding p) {
    return p == KILN_PAD_VALID ? "valid" : p == KILN_PAD_SAME ? "same" : "explicit";
}

/* The op entry's spatial axes and kind, which the attribute must match. */
static int op_nd(const kiln_op *op) {
    return op == &kiln_op_conv1d ? 1 : op == &kiln_op_conv3d ? 3 : 2;
}

static const char *const AXES[3][3] = {{"width"}, {"height", "width"}, {"depth", "height", "width"}};

static kiln_status conv_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                              kiln_dtype *dt) {
    const kiln_conv_attr *a = KILN_ATTR(n, kiln_conv_attr);
    char buf[512], ks[64] = "", ss[64] = "", ds[64] = "", want[128];
    const kiln_shape *x = &in[0], *w = &in[1];
    int nd = kiln_attr_nd(a->nd), tr = n->op == &kiln_op_conv2d_transpose;
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: input must be F32, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    int bad = a->nd < 0 || a->nd > 3 || nd != op_nd(n->op) || a->transpose != tr ||
              a->filters <= 0 || a->groups <= 0 || a->filters % a->groups;
    for (int i = 0; i < nd; i++) {
        bad |= a->stride[i] <= 0 || a->dilation[i] <= 0 || a->kernel[i] <= 0;
        snprintf(ks + strlen(ks), sizeof ks - strlen(ks), "%s%d", i ? "x" : "", a->kernel[i]);
        snprintf(ss + strlen(ss), sizeof ss - strlen(ss), "%s%d", i ? "x" : "", a->stride[i]);
        snprintf(ds + strlen(ds), sizeof ds - strlen(ds), "%s%d", i ? "x" : "", a->dilation[i]);
    }
    if (bad)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: bad attributes (%d-D%s for %s, filters %d, groups %d, stride %s, "
                          "dilation %s)",
                          kiln_node_describe(n, in, buf, sizeof buf), a->nd ? a->nd : 2,
                          a->transpose ? " transposed" : "", n->op->name, a->filters, a->groups,
                          ss, ds);
    if (x->ndim != nd + 2) {
        char axes[64] = "";
        for (int i = 0; i < nd; i++)
            snprintf(axes + strlen(axes), sizeof axes - strlen(axes), ", %s", AXES[nd - 1][i]);
        return kiln_error(KILN_ERR_SHAPE, "%s: the input must be [batch, channels%s]",
                          kiln_node_describe(n, in, buf, sizeof buf), axes);
    }
    if (x->dims[1] % a->groups)
        return kiln_error(
            KILN_ERR_SHAPE, "%s: %lld input channels are not a multiple of groups = %d",
            kiln_node_describe(n, in, buf, sizeof buf), (long long)x->dims[1], a->groups);
    int64_t w0 = tr ? x->dims[1] : a->filters, w1 = tr ? a->filters / a->groups : x->dims[1] / a->groups;
    int wbad = w->ndim != nd + 2 || w->dims[0] != w0 || w->dims[1] != w1;
    snprintf(want, sizeof want, "[%lld, %lld", (long long)w0, (long long)w1);
    for (int i = 0; i < nd; i++) {
        wbad |= w->ndim == nd + 2 && w->dims[2 + i] != a->kernel[i];
        snprintf(want + strlen(want), sizeof want - strlen(want), ", %d", a->kernel[i]);
    }
    if (wbad || (n->n_in > 2 && (in[2].ndim != 1 || in[2].dims[0] != a->filters)))
        return kiln_error(KILN_ERR_SHAPE, "%s: need kernel %s] and bias [%d]",
                          kiln_node_describe(n, in, buf, sizeof buf), want, a->filters);
    *out = *x;
    out->dims[1] = a->filters;
    for (int i = 0; i < nd; i++) {
        int64_t pb, pa;
        out->dims[2 + i] =
            tr ? kiln_deconv_axis(x->dims[2 + i], a->kernel[i], a->stride[i], a->dilation[i],
                                  a->padding, a->pad[i], a->asym ? a->pad_end[i] : a->pad[i],
                                  a->output_padding[i], &pb, &pa)
               : kiln_conv_axis(x->dims[2 + i], a->kernel[i], a->stride[i], a->dilation[i],
                                a->padding, a->pad[i], a->asym ? a->pad_end[i] : a->pad[i], 0, &pb,
                                &pa);
        if (out->dims[2 + i] < 1)
            return kiln_error(
                KILN_ERR_SHAPE, "%s: kernel %s (dilation %s) is larger than the %s-padded input",
                kiln_node_describe(n, in, buf, sizeof buf), ks, ds, pad_name(a->padding));
    }
    *dt = KILN_F32;
    return KILN_OK;
}

static void conv_release(kiln_inst *x) {
    conv_state *s = x->state;
    dnnl_primitive_t prims[] = {s->fwd, s->bwd_x, s->bwd_w};
    dnnl_memory_t mems[] = {s->b, s->y, s->db};
    kiln_dnnl_port *ports[] = {&s->src, &s->w, &s->bd_dy, &s->bd_w, &s->bd_dx, &s->bw_src, &s->bw_dy, &s->bw_dw};
    for (size_t i = 0; i < sizeof prims / sizeof *prims; i++)
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    for (size_t i = 0; i < sizeof ports / sizeof *ports; i++) kiln_dnnl_port_release(ports[i]);
    if (s->fwd_pd) dnnl_primitive_desc_destroy(s->fwd_pd);
    kiln_dnnl_split_release(&s->d_fwd);
    kiln_dnnl_split_release(&s->d_bx);
    kiln_dnnl_split_release(&s->d_bw);
    kiln_dnnl_edge_release(&s->out);
    kiln_free(s->pre);
    kiln_free(s->dz);
    free(s);
    x->state = NULL;
}

static int mem(dnnl_memory_t *m, const dnnl_memory_desc_t *md, void *p) {
    return (*m = kiln_dnnl_mem(md, p)) == NULL;
}

static int is_plain(const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *plain) {
    return kiln_dnnl_md_equal(md, plain);
}

/* Before the memory plan: the forward primitive descriptor. oneDNN chooses the layouts of the
 * weights, of the output and (for a plain input) of the input; a blocked input from the
 * previous layer is taken as it is. The output's layout becomes the value's (see the edge). */
static kiln_status conv_choose_layout(kiln_inst *x, kiln_compile_ctx *c) {
    const kiln_conv_attr *a = KILN_ATTR(x->node, kiln_conv_attr);
    conv_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", x->node->op->name);
    x->state = s;
    const kiln_shape *xs = &x->in[0]->shape;
    int64_t C = xs->dims[1], F = a->filters, G = a->groups;
    s->act = a->act;
    conv_geom *q = &s->q;
    int nd = q->nd = kiln_attr_nd(a->nd), nx = nd + 2;
    q->tr = a->transpose;
    int64_t wd[6] = {G, F / G, C / G}, ws[6], K = 1;
    for (int i = 0; i < nd; i++) {
        int pe = a->asym ? a->pad_end[i] : a->pad[i];
        q->stride[i] = a->stride[i];
        q->dil[i] = a->dilation[i] - 1;
        if (q->tr)
            kiln_deconv_axis(xs->dims[2 + i], a->kernel[i], a->stride[i], a->dilation[i], a->padding,
                             a->pad[i], pe, a->output_padding[i], &q->pad_l[i], &q->pad_r[i]);
        else
            kiln_conv_axis(xs->dims[2 + i], a->kernel[i], a->stride[i], a->dilation[i], a->padding,
                           a->pad[i], pe, 0, &q->pad_l[i], &q->pad_r[i]);
        wd[3 + i] = a->kernel[i];
        K *= a->kernel[i];
    }
    for (int i = nd - 1, acc = 1; i >= 0; i--) ws[3 + i] = acc, acc *= a->kernel[i];
    /* strides of [G, F/G, C/G, k...]: goihw bytes, or giohw for the transposed kernel */
    ws[0] = F / G * (C / G) * K;
    ws[1] = q->tr ? K : C / G * K;
    ws[2] = q->tr ? F / G * K : K;
    q->x = kiln_dnnl_md(nx, xs->dims, NULL);
    q->y = kiln_dnnl_md(nx, x->shape.dims, NULL);
    q->w = G > 1 ? kiln_dnnl_md(nx + 1, wd, ws) : kiln_dnnl_md(nx, wd + 1, ws + 1);
    q->b = kiln_dnnl_md(1, &F, NULL);
    dnnl_memory_desc_t plain;
    s->xmd = *kiln_dnnl_layout_of(x->in[0], &plain);
    dnnl_memory_desc_t x_want = is_plain(&s->xmd, &q->x) ? kiln_dnnl_md_any(nx, xs->dims) : s->xmd;
    dnnl_memory_desc_t w_any = kiln_dnnl_md_any(q->w.ndims, q->w.dims), y_any = kiln_dnnl_md_any(nx, x->shape.dims);
    int fuse = kiln_act_grad_from_output(s->act); /* else own loop over z */
    dnnl_alg_kind_t elt = fuse ? kiln_dnnl_act_alg(s->act, &s->alpha) : (dnnl_alg_kind_t)0;
    dnnl_convolution_desc_t fd;
    s->prop = x->grad ? dnnl_forward_training : dnnl_forward_inference;
    s->elt = elt;
    s->det = c->deterministic;
    CHECK_DNNL(fwd_desc(&fd, q, s->prop, &x_want, &w_any, x->n_in > 2 ? &q->b : NULL, &y_any),
               "convolution forward desc");
    dnnl_primitive_attr_t attr = kiln_dnnl_attr(elt, s->alpha, 0);
    dnnl_status_t ds = dnnl_primitive_desc_create(&s->fwd_pd, &fd, attr, kiln_dnnl_engine(), NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    CHECK_DNNL(ds, "convolution forward primitive descriptor");
    kiln_dnnl_edge_choose(&s->out, x, dnnl_primitive_desc_query_md(s->fwd_pd, dnnl_query_dst_md, 0));
    return KILN_OK;
}

/* ---- deterministic plans: each primitive split into chunks of the batch (dnnl_util.h) ---- */

typedef struct {
    const conv_state *s;
    int kind; /* 0 forward, 1 backward-data, 2 backward-weights */
    int bias;
    dnnl_memory_desc_t src, w, dst; /* the full batch's layouts (src, weights, dst or their diffs) */
} conv_split_ctx;

static kiln_status conv_split_make(void *vc, int64_t rows, dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd) {
    const conv_split_ctx *k = vc;
    const conv_state *s = k->s;
    const conv_geom *q = &s->q;
    dnnl_memory_desc_t src = kiln_dnnl_md_rows(&k->src, 0, rows), dst = kiln_dnnl_md_rows(&k->dst, 0, rows);
    dnnl_memory_desc_t w_any = kiln_dnnl_md_any(q->w.ndims, q->w.dims),
                       dst_any = kiln_dnnl_md_any(dst.ndims, dst.dims);
    dnnl_convolution_desc_t fd, bd;
    int fwd = k->kind == 0;
    CHECK_DNNL(fwd_desc(&fd, q, fwd ? s->prop : dnnl_forward_training, &src, fwd ? &k->w : &w_any,
                        k->bias ? &q->b : NULL, fwd ? &dst : &dst_any),
               "convolution forward desc (a chunk)");
    if (fwd) {
        kiln_dnnl_attr_post_ops(attr, s->elt, s->alpha, 0);
        CHECK_DNNL(dnnl_primitive_desc_create(pd, &fd, attr, kiln_dnnl_engine(), NULL), "convolution forward (a chunk)");
        return KILN_OK;
    }
    dnnl_primitive_desc_t hint;
    CHECK_DNNL(dnnl_primitive_desc_create(&hint, &fd, NULL, kiln_dnnl_engine(), NULL), "convolution forward (a hint)");
    dnnl_status_t ds = k->kind == 1 ? bwd_data_desc(&bd, q, &src, &k->w, &dst)
                                    : bwd_weights_desc(&bd, q, &src, &k->w, k->bias ? &q->b : NULL, &dst);
    if (ds == dnnl_success) ds = dnnl_primitive_desc_create(pd, &bd, attr, kiln_dnnl_engine(), hint);
    dnnl_primitive_desc_destroy(hint);
    CHECK_DNNL(ds, k->kind == 1 ? "convolution backward-data (a chunk)" : "convolution backward-weights (a chunk)");
    return KILN_OK;
}

static kiln_status conv_split(conv_state *s, kiln_dnnl_split *sp, int kind, int bias, int64_t B,
                              const_dnnl_primitive_desc_t pd, const char *what) {
    const conv_geom *q = &s->q;
    static const dnnl_query_t Q[3][3] = {{dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
                                         {dnnl_query_diff_src_md, dnnl_query_weights_md, dnnl_query_diff_dst_md},
                                         {dnnl_query_src_md, dnnl_query_diff_weights_md, dnnl_query_diff_dst_md}};
    conv_split_ctx k = {.s = s, .kind = kind, .bias = bias,
                        .src = *dnnl_primitive_desc_query_md(pd, Q[kind][0], 0),
                        .w = *dnnl_primitive_desc_query_md(pd, Q[kind][1], 0),
                        .dst = *dnnl_primitive_desc_query_md(pd, Q[kind][2], 0)};
    kiln_dnnl_split_arg a[4];
    int n = 0;
    if (kind == 0) {
        a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_SRC, KILN_SPLIT_ROWS, 0};
        a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_WEIGHTS, KILN_SPLIT_WHOLE, 0};
        a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_DST, KILN_SPLIT_ROWS, 0};
        if (bias) a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_BIAS, KILN_SPLIT_WHOLE, 0};
    } else if (kind == 1) {
        a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_DIFF_DST, KILN_SPLIT_ROWS, 0};
        a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_WEIGHTS, KILN_SPLIT_WHOLE, 0};
        a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_DIFF_SRC, KILN_SPLIT_ROWS, 0};
    } else {
        a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_SRC, KILN_SPLIT_ROWS, 0};
        a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_DIFF_DST, KILN_SPLIT_ROWS, 0};
        a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_DIFF_WEIGHTS, KILN_SPLIT_SUM, 0};
        if (bias) a[n++] = (kiln_dnnl_split_arg){DNNL_ARG_DIFF_BIAS, KILN_SPLIT_SUM, 0};
    }
    /* multiply-adds per image: output pixels x filters x (input channels / groups) x kernel */
    int G = q->w.ndims == q->nd + 3;
    double work = (double)q->y.dims[1] * (double)(q->x.dims[1] / (G ? q->w.dims[0] : 1));
    for (int i = 0; i < q->nd; i++) work *= (double)q->y.dims[2 + i] * (double)q->w.dims[q->w.ndims - 1 - i];
    return kiln_dnnl_split_init(sp, B, work, omp_get_max_threads(), a, n, conv_split_make, &k, what);
}

/* A backward primitive descriptor, first with the layouts we already have (no reorders), and
 * again with every layout left to oneDNN if that only found a reference implementation. */
typedef dnnl_status_t (*bwd_init)(dnnl_convolution_desc_t *, const conv_geom *, const dnnl_memory_desc_t *,
                                  const dnnl_memory_desc_t *, const dnnl_memory_desc_t *, int);
static dnnl_status_t init_bwd_data(dnnl_convolution_desc_t *d, const conv_geom *q, const dnnl_memory_desc_t *a,
                                   const dnnl_memory_desc_t *w, const dnnl_memory_desc_t *dy, int bias) {
    return bwd_data_desc(d, q, a, w, dy);
}
static dnnl_status_t init_bwd_weights(dnnl_convolution_desc_t *d, const conv_geom *q, const dnnl_memory_desc_t *a,
                                      const dnnl_memory_desc_t *w, const dnnl_memory_desc_t *dy, int bias) {
    return bwd_weights_desc(d, q, a, w, bias ? &q->b : NULL, dy);
}

/* Tries, in order: the layouts we have (no reorders), ours for the activation and oneDNN's
 * choice for the gradient, then oneDNN's choice for both; the first that is not a reference
 * (slow) implementation wins (the last one regardless). */
static kiln_status make_bwd(conv_state *s, bwd_init init, const dnnl_memory_desc_t *act_md, int bias,
                            dnnl_primitive_desc_t *pd, const char *what) {
    const conv_geom *q = &s->q;
    dnnl_memory_desc_t w_any = kiln_dnnl_md_any(q->w.ndims, q->w.dims);
    dnnl_memory_desc_t x_any = kiln_dnnl_md_any(q->x.ndims, q->x.dims), y_any = kiln_dnnl_md_any(q->y.ndims, q->y.dims);
    const dnnl_memory_desc_t *acts[3] = {act_md, act_md, &x_any}, *dys[3] = {&s->out.md, &y_any, &y_any};
    for (int attempt = 0; attempt < 3; attempt++) {
        dnnl_convolution_desc_t d;
        CHECK_DNNL(init(&d, q, acts[attempt], &w_any, dys[attempt], bias), what);
        if (dnnl_primitive_desc_create(pd, &d, NULL, kiln_dnnl_engine(), s->fwd_pd) != dnnl_success) {
            if (attempt == 2) return kiln_error(KILN_ERR_BACKEND, "oneDNN has no %s for these shapes", what);
            continue;
        }
        if (attempt == 2 || !kiln_dnnl_is_reference(*pd)) return KILN_OK;
        dnnl_primitive_desc_destroy(*pd);
    }
    return KILN_OK;
}

/* dz and the backward primitives for whichever of dx, dW, db have gradients. */
static kiln_status compile_backward(kiln_inst *x, conv_state *s, kiln_compile_ctx *c) {
    const conv_geom *q = &s->q;
    float *dz = kiln_dnnl_edge_grad(&s->out, x);
    if (s->act != KILN_ACT_NONE) {
        if (!(s->dz = kiln_alloc((size_t)s->ny * sizeof(float)))) return KILN_ERR_NOMEM;
        dz = s->dz;
    }
    kiln_status st;
    size_t scratch = 0;
    dnnl_primitive_desc_t pd;
#define Q(what) dnnl_primitive_desc_query_md(pd, what, 0)
    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(s->fwd_pd, dnnl_query_src_md, 0);
    if (x->in[0]->grad) { /* dx in the layout the forward read x in (ports convert if x differs) */
        if ((st = make_bwd(s, init_bwd_data, src_md, 0, &pd, "convolution backward-data"))) return st;
        s->dx_tmp = x->accum[0];
        const kiln_dnnl_port *fw = &s->w; /* reuse the forward's weights when the layouts match */
        const dnnl_memory_desc_t *fw_md = dnnl_primitive_desc_query_md(s->fwd_pd, dnnl_query_weights_md, 0);
        if (!(st = kiln_dnnl_primitive_from_pd(pd, &s->bwd_x, "convolution backward-data")) &&
            !(st = kiln_dnnl_port_init(&s->bd_dy, &s->out.md, dz, Q(dnnl_query_diff_dst_md), 0)) &&
            !(st = kiln_dnnl_port_init(&s->bd_w, fw_md, fw->buf ? (void *)fw->buf : x->in[1]->val,
                                       Q(dnnl_query_weights_md), 0)))
            st = kiln_dnnl_port_init(&s->bd_dx, &s->xmd, s->dx_tmp ? NULL : x->in[0]->grad, Q(dnnl_query_diff_src_md), 1);
        if (!st && s->det) st = conv_split(s, &s->d_bx, 1, 0, q->x.dims[0], pd, "convolution backward-data");
        dnnl_primitive_desc_destroy(pd);
        if (st) return st;
        if (s->dx_tmp) scratch = x->in[0]->bytes;
    }
    int want_w = x->in[1]->grad != NULL, want_b = x->n_in > 2 && x->in[2]->grad;
    if (want_w || want_b) {
        if ((st = make_bwd(s, init_bwd_weights, src_md, want_b, &pd, "convolution backward-weights"))) return st;
        /* scratch: dW at 0 when it accumulates or is dropped, db at db_off when it accumulates */
        s->dw_tmp = !want_w || x->accum[1];
        s->db_tmp = want_b && x->accum[2];
        s->db_off = kiln_align_up((size_t)s->nw * sizeof(float));
        if (!(st = kiln_dnnl_primitive_from_pd(pd, &s->bwd_w, "convolution backward-weights")) &&
            !(st = kiln_dnnl_port_init(&s->bw_src, src_md, s->src.buf ? (void *)s->src.buf : x->in[0]->val,
                                       Q(dnnl_query_src_md), 0)) &&
            !(st = kiln_dnnl_port_init(&s->bw_dy, &s->out.md, dz, Q(dnnl_query_diff_dst_md), 0)))
            st = kiln_dnnl_port_init(&s->bw_dw, &q->w, s->dw_tmp ? NULL : x->in[1]->grad, Q(dnnl_query_diff_weights_md), 1);
        if (!st && s->det) st = conv_split(s, &s->d_bw, 2, want_b, q->x.dims[0], pd, "convolution backward-weights");
        dnnl_primitive_desc_destroy(pd);
        if (st) return st;
        if (want_b && mem(&s->db, &q->b, s->db_tmp ? NULL : x->in[2]->grad)) return KILN_ERR_BACKEND;
        size_t need = s->db_tmp ? s->db_off + (size_t)s->nb * sizeof(float) : s->dw_tmp ? s->db_off : 0;
        if (need > scratch) scratch = need;
    }
#undef Q
    if (scratch > c->scratch_bytes) c->scratch_bytes = scratch;
    return KILN_OK;
}

/* After the memory plan: primitives, ports and memory objects over the plan's buffers. */
static kiln_status conv_compile(kiln_inst *x, kiln_compile_ctx *c) {
    conv_state *s = x->state;
    const conv_geom *q = &s->q;
    s->nx_floats = (int64_t)(x->in[0]->bytes / sizeof(float));
    s->nw = x->in[1]->numel;
    s->nb = q->b.dims[0];
    s->ny = (int64_t)(kiln_dnnl_md_bytes(&s->out.md) / sizeof(float));
    kiln_status st = kiln_dnnl_edge_compile(&s->out, x);
    if (st) return st;
    if (!kiln_act_grad_from_output(s->act) && !(s->pre = kiln_alloc((size_t)s->ny * sizeof(float)))) return KILN_ERR_NOMEM;
    if ((st = kiln_dnnl_primitive_from_pd(s->fwd_pd, &s->fwd, "convolution forward"))) return st;
    const_dnnl_primitive_desc_t pd = s->fwd_pd;
    if ((st = kiln_dnnl_port_init(&s->src, &s->xmd, x->in[0]->val, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), 0)) ||
        (st = kiln_dnnl_port_init(&s->w, &q->w, x->in[1]->val, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), 0)))
        return st;
    if (mem(&s->y, &s->out.md, s->pre ? s->pre : kiln_dnnl_edge_val(&s->out, x)) ||
        (x->n_in > 2 && mem(&s->b, &q->b, x->in[2]->val)))
        return KILN_ERR_BACKEND;
    if (s->det && (st = conv_split(s, &s->d_fwd, 0, x->n_in > 2, q->x.dims[0], s->fwd_pd, "convolution forward")))
        return st;
    return x->grad ? compile_backward(x, s, c) : KILN_OK;
}

static kiln_status conv_forward(kiln_inst *x, const kiln_run *r) {
    conv_state *s = x->state;
    kiln_status st = kiln_dnnl_port_sync(&s->src, r->stream);
    if (!st) st = kiln_dnnl_port_sync(&s->w, r->stream);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, kiln_dnnl_port_mem(&s->src)},
                               {DNNL_ARG_WEIGHTS, kiln_dnnl_port_mem(&s->w)},
                               {DNNL_ARG_DST, s->y},
                               {DNNL_ARG_BIAS, s->b}};
    if (!st && s->det) {
        void *p[4] = {kiln_dnnl_mem_ptr(args[0].memory), kiln_dnnl_mem_ptr(args[1].memory), kiln_dnnl_mem_ptr(s->y),
                      s->b ? kiln_dnnl_mem_ptr(s->b) : NULL};
        st = kiln_dnnl_split_exec(&s->d_fwd, p, NULL);
    } else if (!st) {
        st = kiln_dnnl_exec(s->fwd, r->stream, s->b ? 4 : 3, args);
    }
    if (!st && s->pre) kiln_act_forward(s->act, s->alpha, s->pre, kiln_dnnl_edge_val(&s->out, x), s->ny);
    if (!st) st = kiln_dnnl_edge_forward(&s->out, r->stream);
    return st;
}

static void conv_backward(kiln_inst *x, const kiln_run *r) {
    conv_state *s = x->state;
    char *scratch = r->scratch;
    kiln_dnnl_edge_backward(&s->out, r->stream);
    if (s->act != KILN_ACT_NONE)
        kiln_act_backward(s->act, s->alpha, s->pre, kiln_dnnl_edge_val(&s->out, x), kiln_dnnl_edge_grad(&s->out, x),
                          s->dz, s->ny, 0);
    if (s->bwd_x) { /* the forward of this step already brought the weights into its layout */
        kiln_dnnl_port_sync(&s->bd_dy, r->stream);
        kiln_dnnl_port_sync(&s->bd_w, r->stream);
        if (s->dx_tmp) kiln_dnnl_port_point(&s->bd_dx, scratch);
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, kiln_dnnl_port_mem(&s->bd_dy)},
                                   {DNNL_ARG_WEIGHTS, kiln_dnnl_port_mem(&s->bd_w)},
                                   {DNNL_ARG_DIFF_SRC, kiln_dnnl_port_mem(&s->bd_dx)}};
        if (s->det) {
            void *p[3] = {kiln_dnnl_mem_ptr(args[0].memory), kiln_dnnl_mem_ptr(args[1].memory),
                          kiln_dnnl_mem_ptr(args[2].memory)};
            kiln_dnnl_split_exec(&s->d_bx, p, NULL);
        } else {
            kiln_dnnl_exec(s->bwd_x, r->stream, 3, args);
        }
        kiln_dnnl_port_sync(&s->bd_dx, r->stream);
        if (s->dx_tmp) kiln_vec_add(x->in[0]->grad, (const float *)scratch, s->nx_floats);
    }
    if (s->bwd_w) {
        kiln_dnnl_port_sync(&s->bw_src, r->stream);
        kiln_dnnl_port_sync(&s->bw_dy, r->stream);
        if (s->dw_tmp) kiln_dnnl_port_point(&s->bw_dw, scratch);
        if (s->db_tmp) dnnl_memory_set_data_handle(s->db, scratch + s->db_off);
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, kiln_dnnl_port_mem(&s->bw_src)},
                                   {DNNL_ARG_DIFF_DST, kiln_dnnl_port_mem(&s->bw_dy)},
                                   {DNNL_ARG_DIFF_WEIGHTS, kiln_dnnl_port_mem(&s->bw_dw)},
                                   {DNNL_ARG_DIFF_BIAS, s->db}};
        if (s->det) {
            void *p[4] = {kiln_dnnl_mem_ptr(args[0].memory), kiln_dnnl_mem_ptr(args[1].memory),
                          kiln_dnnl_mem_ptr(args[2].memory), s->db ? kiln_dnnl_mem_ptr(s->db) : NULL};
            kiln_dnnl_split_exec(&s->d_bw, p, NULL);
        } else {
            kiln_dnnl_exec(s->bwd_w, r->stream, s->db ? 4 : 3, args);
        }
        if (x->in[1]->grad) kiln_dnnl_port_sync(&s->bw_dw, r->stream);
        if (s->dw_tmp && x->in[1]->grad) kiln_vec_add(x->in[1]->grad, (const float *)scratch, s->nw);
        if (s->db_tmp) kiln_vec_add(x->in[2]->grad, (const float *)(scratch + s->db_off), s->nb);
    }
}

#define CONV_OP(var, opname)                                                                       \
    const kiln_op var = {.name = opname,                                                           \
                         .backend = &kiln_backend_cpu,                                             \
                         .infer = conv_infer,                                                      \
                         .choose_layout = conv_choose_layout,                                      \
                         .compile = conv_compile,                                                  \
                         .forward = conv_forward,                                                  \
                         .backward = conv_backward,                                                \
                         .release = conv_release,                                                  \
                         .accepts_layout = 1}
CONV_OP(kiln_op_conv1d, "conv1d");
CONV_OP(kiln_op_conv2d, "conv2d");
CONV_OP(kiln_op_conv3d, "conv3d");
CONV_OP(kiln_op_conv2d_transpose, "conv2d_transpose");

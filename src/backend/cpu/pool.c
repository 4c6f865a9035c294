/* pool.c — max and average pooling of 1, 2 or 3 spatial axes on oneDNN, N C spatial... One implementation, one table entry per kind and axis count
 * (max_pooling1d .. average_pooling3d); the attribute's nd must match the entry (infer).
 *
 * Shapes: x [B, C, H, W] -> y [B, C, OH, OW] (1-D drops H, 3-D adds D) with the output sizes and
 * the (possibly asymmetric) pads from kiln_conv_axis (dilation 1; ceil_mode rounds up and pads
 * after as needed). Max pooling never picks a padded cell; average pooling divides by the
 * number of real cells in the window (oneDNN's pooling_avg_exclude_padding; Keras, PyTorch's
 * count_include_pad=False). The builder keeps explicit pads smaller than the window, and
 * ceil_mode only keeps windows that start inside the input or the pad before, so every window
 * holds a real cell.
 *
 * When the plan runs backward through the pool, forward runs as forward_training and max pooling
 * records the argmax of each window in a workspace kept in op state; backward scatters dy through
 * it. oneDNN's pooling backward overwrites dx, so an accumulating dx goes through the plan's
 * scratch and is added.
 *
 * Layouts: the input may arrive in a conv's blocked layout (nChw8c); the output keeps it when
 * the consumers are layout-aware, else the edge reorder (dnnl_util.h) makes it plain.
 *
 * Global pooling (kiln_op_global_avgpool2d included) is in global_pool.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/dnnl_util.h"
#include "backend/cpu/vec.h"
#include "backend/ops.h"
#include "backend/attrs.h"

typedef struct {
    dnnl_alg_kind_t alg;
    int64_t nx_floats;            /* floats in x's buffer (its layout may pad) */
    int dx_tmp;                   /* dx goes through scratch (accumulates) */
    void *ws_buf;                 /* max pooling workspace (training plans with backward) */
    dnnl_dims_t geom[4];          /* strides, kernel, padding_l, padding_r */
    dnnl_memory_desc_t xmd;       /* input 0's layout */
    dnnl_primitive_desc_t fwd_pd; /* from choose_layout to compile */
    kiln_dnnl_edge out;
    dnnl_primitive_t fwd, bwd;
    dnnl_memory_t x, y, ws, dy, dx;
} pool_state;

static int op_nd(const kiln_op *op) {
    return op == &kiln_op_maxpool1d || op == &kiln_op_avgpool1d   ? 1
           : op == &kiln_op_maxpool3d || op == &kiln_op_avgpool3d ? 3
                                                                  : 2;
}

/* Pads of axis i (explicit before and after). */
static void pads_of(const kiln_pool_attr *a, int i, int *pb, int *pe) {
    *pb = a->padding == KILN_PAD_EXPLICIT ? a->pad[i] : 0;
    *pe = a->padding == KILN_PAD_EXPLICIT ? (a->asym ? a->pad_end[i] : a->pad[i]) : 0;
}

static kiln_status pool_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                              kiln_dtype *dt) {
    const kiln_pool_attr *a = KILN_ATTR(n, kiln_pool_attr);
    char buf[512];
    int nd = kiln_attr_nd(a->nd);
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: input must be F32, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (a->nd < 0 || a->nd > 3 || nd != op_nd(n->op))
        return kiln_error(KILN_ERR_INVALID, "%s: a %d-D attribute for %s",
                          kiln_node_describe(n, in, buf, sizeof buf), nd, n->op->name);
    if (in[0].ndim != nd + 2)
        return kiln_error(KILN_ERR_SHAPE, "%s: the input must be [batch, channels%s]",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          nd == 1 ? ", width" : nd == 2 ? ", height, width" : ", depth, height, width");
    *out = in[0];
    int bad = 0;
    char sz[48] = "", st[48] = "", pd[96] = "";
    for (int i = 0; i < nd; i++) {
        int64_t pb, pa;
        int eb, ee;
        pads_of(a, i, &eb, &ee);
        out->dims[2 + i] = kiln_conv_axis(in[0].dims[2 + i], a->size[i], a->stride[i], 1,
                                          a->padding, eb, ee, a->ceil_mode, &pb, &pa);
        bad |= out->dims[2 + i] < 1 || eb >= a->size[i] || ee >= a->size[i];
        snprintf(sz + strlen(sz), sizeof sz - strlen(sz), "%s%d", i ? "x" : "", a->size[i]);
        snprintf(st + strlen(st), sizeof st - strlen(st), "%s%d", i ? "x" : "", a->stride[i]);
        if (eb == ee) snprintf(pd + strlen(pd), sizeof pd - strlen(pd), "%s%d", i ? "x" : "", eb);
        else snprintf(pd + strlen(pd), sizeof pd - strlen(pd), "%s%d+%d", i ? "x" : "", eb, ee);
    }
    if (bad)
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: pool window %s (stride %s, pads %s) does not fit the input",
                          kiln_node_describe(n, in, buf, sizeof buf), sz, st, pd);
    *dt = KILN_F32;
    return KILN_OK;
}

static void pool_release(kiln_inst *x) {
    pool_state *s = x->state;
    dnnl_memory_t mems[] = {s->x, s->y, s->ws, s->dy, s->dx};
    if (s->fwd) dnnl_primitive_destroy(s->fwd);
    if (s->bwd) dnnl_primitive_destroy(s->bwd);
    if (s->fwd_pd) dnnl_primitive_desc_destroy(s->fwd_pd);
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    kiln_dnnl_edge_release(&s->out);
    kiln_free(s->ws_buf);
    free(s);
    x->state = NULL;
}

/* Before the memory plan: the forward descriptor over the input's layout, output "any" (the
 * pooling kernels keep the input's blocked layout). */
static kiln_status pool_choose(kiln_inst *x, dnnl_alg_kind_t alg) {
    const kiln_pool_attr *a = KILN_ATTR(x->node, kiln_pool_attr);
    pool_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "pooling: out of memory");
    x->state = s;
    s->alg = alg;
    int nd = kiln_attr_nd(a->nd);
    for (int i = 0; i < nd; i++) {
        int eb, ee;
        pads_of(a, i, &eb, &ee);
        s->geom[0][i] = a->stride[i];
        s->geom[1][i] = a->size[i];
        kiln_conv_axis(x->in[0]->shape.dims[2 + i], a->size[i], a->stride[i], 1, a->padding, eb, ee,
                       a->ceil_mode, &s->geom[2][i], &s->geom[3][i]);
    }
    dnnl_memory_desc_t plain, y_any = kiln_dnnl_md_any(nd + 2, x->shape.dims);
    s->xmd = *kiln_dnnl_layout_of(x->in[0], &plain);
    int backward = x->grad && x->in[0]->grad;
    dnnl_pooling_desc_t d;
    CHECK_DNNL(dnnl_pooling_forward_desc_init(&d, backward ? dnnl_forward_training : dnnl_forward_inference, alg,
                                              &s->xmd, &y_any, s->geom[0], s->geom[1], s->geom[2], s->geom[3]),
               "pooling forward desc");
    CHECK_DNNL(dnnl_primitive_desc_create(&s->fwd_pd, &d, NULL, kiln_dnnl_engine(), NULL),
               "pooling forward primitive descriptor");
    kiln_dnnl_edge_choose(&s->out, x, dnnl_primitive_desc_query_md(s->fwd_pd, dnnl_query_dst_md, 0));
    return KILN_OK;
}

static kiln_status maxpool_choose(kiln_inst *x, kiln_compile_ctx *c) { return pool_choose(x, dnnl_pooling_max); }
static kiln_status avgpool_choose(kiln_inst *x, kiln_compile_ctx *c) {
    return pool_choose(x, dnnl_pooling_avg_exclude_padding);
}

/* After the memory plan: primitives, workspace and memory objects. */
static kiln_status pool_compile(kiln_inst *x, kiln_compile_ctx *c) {
    pool_state *s = x->state;
    s->nx_floats = (int64_t)(x->in[0]->bytes / sizeof(float));
    kiln_status st = kiln_dnnl_edge_compile(&s->out, x);
    if (st) return st;
    CHECK_DNNL(dnnl_primitive_create(&s->fwd, s->fwd_pd), "pooling forward");
    const dnnl_memory_desc_t *wsmd = dnnl_primitive_desc_query_md(s->fwd_pd, dnnl_query_workspace_md, 0);
    size_t ws_bytes = wsmd ? dnnl_memory_desc_get_size(wsmd) : 0;
    if (!(s->x = kiln_dnnl_mem(&s->xmd, x->in[0]->val)) || !(s->y = kiln_dnnl_mem(&s->out.md, kiln_dnnl_edge_val(&s->out, x))))
        return KILN_ERR_BACKEND;
    if (ws_bytes && (!(s->ws_buf = kiln_alloc(ws_bytes)) || !(s->ws = kiln_dnnl_mem(wsmd, s->ws_buf))))
        return KILN_ERR_NOMEM;
    if (!(x->grad && x->in[0]->grad)) return KILN_OK;
    dnnl_pooling_desc_t d;
    CHECK_DNNL(dnnl_pooling_backward_desc_init(&d, s->alg, &s->xmd, &s->out.md, s->geom[0], s->geom[1], s->geom[2],
                                               s->geom[3]),
               "pooling backward desc");
    if ((st = kiln_dnnl_primitive(&d, NULL, s->fwd_pd, &s->bwd, NULL, "pooling backward"))) return st;
    s->dx_tmp = x->accum[0];
    if (!(s->dy = kiln_dnnl_mem(&s->out.md, kiln_dnnl_edge_grad(&s->out, x))) ||
        !(s->dx = kiln_dnnl_mem(&s->xmd, s->dx_tmp ? NULL : x->in[0]->grad)))
        return KILN_ERR_BACKEND;
    size_t need = s->dx_tmp ? x->in[0]->bytes : 0;
    if (need > c->scratch_bytes) c->scratch_bytes = need;
    return KILN_OK;
}

static kiln_status pool_forward(kiln_inst *x, const kiln_run *r) {
    pool_state *s = x->state;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, s->x}, {DNNL_ARG_DST, s->y}, {DNNL_ARG_WORKSPACE, s->ws}};
    kiln_status st = kiln_dnnl_exec(s->fwd, r->stream, s->ws ? 3 : 2, args);
    return st ? st : kiln_dnnl_edge_forward(&s->out, r->stream);
}

static void pool_backward(kiln_inst *x, const kiln_run *r) {
    pool_state *s = x->state;
    if (!s->bwd) return;
    kiln_dnnl_edge_backward(&s->out, r->stream);
    if (s->dx_tmp) dnnl_memory_set_data_handle(s->dx, r->scratch);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, s->dy}, {DNNL_ARG_DIFF_SRC, s->dx}, {DNNL_ARG_WORKSPACE, s->ws}};
    kiln_dnnl_exec(s->bwd, r->stream, s->ws ? 3 : 2, args);
    if (s->dx_tmp) kiln_vec_add(x->in[0]->grad, r->scratch, s->nx_floats);
}

#define POOL_OP(var, opname, choose)                                                               \
    const kiln_op var = {.name = opname,                                                           \
                         .backend = &kiln_backend_cpu,                                             \
                         .infer = pool_infer,                                                      \
                         .choose_layout = choose,                                                  \
                         .compile = pool_compile,                                                  \
                         .forward = pool_forward,                                                  \
                         .backward = pool_backward,                                                \
                         .release = pool_release,                                                  \
                         .accepts_layout = 1}
POOL_OP(kiln_op_maxpool1d, "max_pooling1d", maxpool_choose);
POOL_OP(kiln_op_maxpool2d, "max_pooling2d", maxpool_choose);
POOL_OP(kiln_op_maxpool3d, "max_pooling3d", maxpool_choose);
POOL_OP(kiln_op_avgpool1d, "average_pooling1d", avgpool_choose);
POOL_OP(kiln_op_avgpool2d, "average_pooling2d", avgpool_choose);
POOL_OP(kiln_op_avgpool3d, "average_pooling3d", avgpool_choose);

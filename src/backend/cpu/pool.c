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
 * Fast path: 2x2 max pooling with stride 2 and no pads over a channel-blocked layout (nChw8c
 * or nChw16c, what the convs before it produce) runs in own OpenMP loops instead of oneDNN's
 * kernel, which took about 3 ns per input value on AVX2 (Zen 3): the four values of a window
 * are whole vectors of bs channels, so the max and the window's argmax (0..3, row-major, the
 * first of equal values wins as in oneDNN and PyTorch) are a few vector compares per output.
 * The argmax is kept in an own byte workspace; backward writes dy to the argmax cell and 0 to
 * the other three (an odd last row or column, outside every window, gets 0). NaN inputs are
 * not propagated (the comparisons skip them), as in oneDNN's AVX2 kernel. KILN_POOL_REFERENCE=1
 * in the environment when a plan compiles turns the fast path off (tests compare the two).
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
    int fast;              /* block size (8 or 16) of the fast 2x2 max path, 0 off */
    int64_t fn, fcb, fh, fw; /* fast path: batch, channel blocks, input height and width */
    unsigned char *argmax; /* [fn, fcb, fh / 2, fw / 2, fast] (with backward) */
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
    kiln_free(s->argmax);
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

/* The block size of x's layout when it and y's are nChw8c / nChw16c and the pooling is 2x2,
 * stride 2, no pads, else 0. */
static int fast_block(const kiln_inst *x, const pool_state *s) {
    const char *off = getenv("KILN_POOL_REFERENCE");
    if ((off && *off && strcmp(off, "0")) || s->alg != dnnl_pooling_max ||
        x->node->op != &kiln_op_maxpool2d)
        return 0;
    for (int i = 0; i < 2; i++)
        if (s->geom[0][i] != 2 || s->geom[1][i] != 2 || s->geom[2][i] || s->geom[3][i]) return 0;
    dnnl_dims_t xd = {0}, yd = {0};
    for (int i = 0; i < 4; i++) xd[i] = x->in[0]->shape.dims[i], yd[i] = x->shape.dims[i];
    if (yd[2] != xd[2] / 2 || yd[3] != xd[3] / 2) return 0;
    static const dnnl_format_tag_t tags[2] = {dnnl_aBcd8b, dnnl_aBcd16b};
    for (int t = 0; t < 2; t++) {
        dnnl_memory_desc_t a, b;
        if (dnnl_memory_desc_init_by_tag(&a, 4, xd, dnnl_f32, tags[t]) != dnnl_success ||
            dnnl_memory_desc_init_by_tag(&b, 4, yd, dnnl_f32, tags[t]) != dnnl_success)
            continue;
        if (kiln_dnnl_md_equal(&s->xmd, &a) && kiln_dnnl_md_equal(&s->out.md, &b))
            return t ? 16 : 8;
    }
    return 0;
}

/* One output row (ow windows) of one channel block: the max and, with am, the argmax. */
#define FAST_FWD(BS)                                                                               \
    static void fast_row##BS(const float *r0, const float *r1, float *y, unsigned char *am,       \
                             int64_t ow) {                                                         \
        for (int64_t j = 0; j < ow; j++) {                                                         \
            const float *a = r0 + 2 * j * BS, *c = r1 + 2 * j * BS;                                \
            float *yo = y + j * BS;                                                                \
            unsigned char k[BS];                                                                   \
            _Pragma("omp simd") for (int l = 0; l < BS; l++) {                                     \
                float m = a[l];                                                                    \
                unsigned char q = 0;                                                               \
                if (a[BS + l] > m) m = a[BS + l], q = 1;                                           \
                if (c[l] > m) m = c[l], q = 2;                                                     \
                if (c[BS + l] > m) m = c[BS + l], q = 3;                                           \
                yo[l] = m, k[l] = q;                                                               \
            }                                                                                      \
            if (am) memcpy(am + j * BS, k, BS);                                                    \
        }                                                                                          \
    }
FAST_FWD(8)
FAST_FWD(16)

static void fast_forward(pool_state *s, const float *x, float *y) {
    int64_t bs = s->fast, H = s->fh, W = s->fw, OH = H / 2, OW = W / 2, rows = s->fn * s->fcb * OH;
    unsigned char *am = s->argmax;
#pragma omp parallel for schedule(static) if (rows * OW * bs > 32768)
    for (int64_t r = 0; r < rows; r++) {
        int64_t nc = r / OH, oh = r % OH;
        const float *r0 = x + ((nc * H + 2 * oh) * W) * bs, *r1 = r0 + W * bs;
        float *yo = y + r * OW * bs;
        unsigned char *ao = am ? am + r * OW * bs : NULL;
        if (bs == 8)
            fast_row8(r0, r1, yo, ao, OW);
        else
            fast_row16(r0, r1, yo, ao, OW);
    }
}

/* One output row of one channel block backward: dy through the argmax into the two input
 * rows (overwritten, or added to with accum). */
#define FAST_BWD(BS)                                                                               \
    static void fast_back_row##BS(const float *g, const unsigned char *k, float *r0, float *r1,   \
                                  int64_t ow, int accum) {                                         \
        for (int64_t j = 0; j < ow; j++) {                                                         \
            const float *gj = g + j * BS;                                                          \
            const unsigned char *kj = k + j * BS;                                                  \
            float *a = r0 + 2 * j * BS, *c = r1 + 2 * j * BS;                                      \
            if (accum) {                                                                           \
                _Pragma("omp simd") for (int l = 0; l < BS; l++) {                                 \
                    a[l] += kj[l] == 0 ? gj[l] : 0.0f, a[BS + l] += kj[l] == 1 ? gj[l] : 0.0f;     \
                    c[l] += kj[l] == 2 ? gj[l] : 0.0f, c[BS + l] += kj[l] == 3 ? gj[l] : 0.0f;     \
                }                                                                                  \
            } else {                                                                               \
                _Pragma("omp simd") for (int l = 0; l < BS; l++) {                                 \
                    a[l] = kj[l] == 0 ? gj[l] : 0.0f, a[BS + l] = kj[l] == 1 ? gj[l] : 0.0f;       \
                    c[l] = kj[l] == 2 ? gj[l] : 0.0f, c[BS + l] = kj[l] == 3 ? gj[l] : 0.0f;       \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
FAST_BWD(8)
FAST_BWD(16)

/* dx (overwritten, or added to with accum) from dy through the argmax. */
static void fast_backward(const pool_state *s, const float *dy, float *dx, int accum) {
    int64_t bs = s->fast, H = s->fh, W = s->fw, OH = H / 2, OW = W / 2, nc_n = s->fn * s->fcb;
    const unsigned char *am = s->argmax;
#pragma omp parallel for schedule(static) if (nc_n * H * W * bs > 32768)
    for (int64_t nc = 0; nc < nc_n; nc++) {
        float *plane = dx + nc * H * W * bs;
        for (int64_t oh = 0; oh < OH; oh++) {
            float *r0 = plane + 2 * oh * W * bs, *r1 = r0 + W * bs;
            const float *g = dy + (nc * OH + oh) * OW * bs;
            const unsigned char *k = am + (nc * OH + oh) * OW * bs;
            if (bs == 8)
                fast_back_row8(g, k, r0, r1, OW, accum);
            else
                fast_back_row16(g, k, r0, r1, OW, accum);
            if (!accum && W % 2) { /* the last column, outside every window */
                memset(r0 + (W - 1) * bs, 0, (size_t)bs * sizeof *r0);
                memset(r1 + (W - 1) * bs, 0, (size_t)bs * sizeof *r1);
            }
        }
        if (!accum && H % 2) memset(plane + (H - 1) * W * bs, 0, (size_t)(W * bs) * sizeof *plane);
    }
}

/* After the memory plan: primitives, workspace and memory objects. */
static kiln_status pool_compile(kiln_inst *x, kiln_compile_ctx *c) {
    pool_state *s = x->state;
    s->nx_floats = (int64_t)(x->in[0]->bytes / sizeof(float));
    kiln_status st = kiln_dnnl_edge_compile(&s->out, x);
    if (st) return st;
    if ((s->fast = fast_block(x, s))) {
        const int64_t *xd = x->in[0]->shape.dims;
        s->fn = xd[0], s->fcb = (xd[1] + s->fast - 1) / s->fast, s->fh = xd[2], s->fw = xd[3];
        if (!(x->grad && x->in[0]->grad)) return KILN_OK;
        size_t n = (size_t)(s->fn * s->fcb * (s->fh / 2) * (s->fw / 2) * s->fast);
        if (!(s->argmax = kiln_alloc(n ? n : 1))) return KILN_ERR_NOMEM;
        return KILN_OK;
    }
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
    if (s->fast) {
        fast_forward(s, x->in[0]->val, kiln_dnnl_edge_val(&s->out, x));
        return kiln_dnnl_edge_forward(&s->out, r->stream);
    }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, s->x}, {DNNL_ARG_DST, s->y}, {DNNL_ARG_WORKSPACE, s->ws}};
    kiln_status st = kiln_dnnl_exec(s->fwd, r->stream, s->ws ? 3 : 2, args);
    return st ? st : kiln_dnnl_edge_forward(&s->out, r->stream);
}

static void pool_backward(kiln_inst *x, const kiln_run *r) {
    pool_state *s = x->state;
    if (s->fast && s->argmax) {
        kiln_dnnl_edge_backward(&s->out, r->stream);
        fast_backward(s, kiln_dnnl_edge_grad(&s->out, x), x->in[0]->grad, x->accum[0]);
        return;
    }
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

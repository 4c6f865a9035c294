/* lowp_conv.c — a convolution (1-D, 2-D, 3-D, grouped and depthwise; not transposed) run in
 * int8 or bf16 for inference: the op kiln_lowp_convert puts in place of conv1d/2d/3d.
 *
 * Shapes and geometry are the fp32 op's (conv.c; its infer runs on the base attribute): x [B, C,
 * spatial...], kernel [F, C/G, k...], bias [F], y [B, F, out...], all f32 in the plan. Forward:
 *   1. x (in whatever layout the producer left it) -> u8/s8 (x / in_scale) or bf16, in the
 *      layout the primitive asked for, by one reorder (lowp.c);
 *   2. one oneDNN convolution: int8 (s8 weights quantized per output channel when the plan is
 *      compiled, s32 accumulation, output scales in_scale * w_scale[c]) or bf16, f32 output in
 *      the layout oneDNN chose, with the bias and (when oneDNN has it) the activation fused;
 *      hard_sigmoid / hard_swish run as our own loop over the output;
 *   3. the output edge (dnnl_util.h) as in conv.c: the value stays in oneDNN's layout for
 *      layout-aware consumers, else is reordered to plain.
 * No backward: a low-precision node is for inference plans only (no gradient flows through).
 * The weights are read when the plan is compiled; later writes to the parameters do not reach
 * it (servables never write them).
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/act.h"
#include "backend/cpu/lowp.h"
#include "backend/ops.h"
#include "kiln/mem.h"

typedef struct {
    kiln_lowp_core k;             /* act, input conversion, weights, bias, scales, primitive */
    dnnl_memory_desc_t xmd, wmd;  /* input 0's layout in the plan; plain f32 kernel */
    kiln_dnnl_edge out;
    int64_t F, ny;
} lowp_conv_state;

static kiln_status lowp_conv_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                                   kiln_dtype *dt) {
    return kiln_lowp_infer(n, in, out, dt, "conv");
}

static void lowp_conv_release(kiln_inst *x) {
    lowp_conv_state *s = x->state;
    if (!s) return;
    kiln_lowp_core_release(&s->k);
    kiln_dnnl_edge_release(&s->out);
    free(s);
    x->state = NULL;
}

static kiln_status lowp_conv_choose_layout(kiln_inst *x, kiln_compile_ctx *c) {
    (void)c;
    const kiln_lowp_attr *la = KILN_ATTR(x->node, kiln_lowp_attr);
    const kiln_conv_attr *a = &la->base.conv;
    if (a->transpose) return kiln_error(KILN_ERR_INVALID, "%s: no low-precision transposed convolution", x->node->name);
    lowp_conv_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", x->node->name);
    x->state = s;
    const kiln_shape *xs = &x->in[0]->shape;
    int64_t C = xs->dims[1], F = s->F = a->filters, G = a->groups, K = 1;
    int nd = kiln_attr_nd(a->nd), nx = nd + 2;
    dnnl_dims_t stride, dil, pl, pr;
    int64_t wd[6] = {G, F / G, C / G};
    for (int i = 0; i < nd; i++) {
        int pe = a->asym ? a->pad_end[i] : a->pad[i];
        stride[i] = a->stride[i];
        dil[i] = a->dilation[i] - 1;
        kiln_conv_axis(xs->dims[2 + i], a->kernel[i], a->stride[i], a->dilation[i], a->padding, a->pad[i], pe, 0,
                       &pl[i], &pr[i]);
        wd[3 + i] = a->kernel[i];
        K *= a->kernel[i];
    }
    s->wmd = G > 1 ? kiln_dnnl_md(nx + 1, wd, NULL) : kiln_dnnl_md(nx, wd + 1, NULL);
    dnnl_memory_desc_t plain;
    s->xmd = *kiln_dnnl_layout_of(x->in[0], &plain);
    int int8 = la->dtype == KILN_LOWP_INT8;
    dnnl_data_type_t wdt = int8 ? dnnl_s8 : dnnl_bf16;
    dnnl_memory_desc_t src_any, w_any, y_any = kiln_dnnl_md_any(nx, x->shape.dims), b = kiln_dnnl_md(1, &F, NULL);
    dnnl_dims_t xd;
    for (int i = 0; i < nx; i++) xd[i] = xs->dims[i];
    dnnl_memory_desc_init_by_tag(&src_any, nx, xd, kiln_lowp_src_dt(la), dnnl_format_tag_any);
    w_any = kiln_dnnl_md_any(s->wmd.ndims, s->wmd.dims);
    w_any.data_type = wdt;

    /* weight and output scales from the kernel as it is now (the plan reads parameters here) */
    kiln_status st = kiln_lowp_core_bias(&s->k, x, la, F, C / G * K, C / G * K, 1);
    if (st) return st;
    dnnl_alg_kind_t elt = kiln_lowp_core_act(&s->k, a->act);
    dnnl_convolution_desc_t fd;
    CHECK_DNNL(dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_inference, dnnl_convolution_direct,
                                                          &src_any, &w_any, &b, &y_any, stride, dil, pl, pr),
               "low-precision convolution desc");
    dnnl_primitive_attr_t attr;
    if ((st = kiln_lowp_core_attr(&s->k, elt, la, F, &attr))) return st;
    dnnl_status_t ds = dnnl_primitive_desc_create(&s->k.pd, &fd, attr, kiln_dnnl_engine(), NULL);
    dnnl_primitive_attr_destroy(attr);
    if (ds != dnnl_success)
        return kiln_error(KILN_ERR_BACKEND, "%s: oneDNN has no %s convolution for these shapes (status %d)",
                          x->node->name, int8 ? "int8" : "bf16", (int)ds);
    kiln_dnnl_edge_choose(&s->out, x, dnnl_primitive_desc_query_md(s->k.pd, dnnl_query_dst_md, 0));
    return KILN_OK;
}

static kiln_status lowp_conv_compile(kiln_inst *x, kiln_compile_ctx *c) {
    (void)c;
    lowp_conv_state *s = x->state;
    const kiln_lowp_attr *la = KILN_ATTR(x->node, kiln_lowp_attr);
    int int8 = la->dtype == KILN_LOWP_INT8;
    const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(s->k.pd, dnnl_query_src_md, 0),
                             *wmd = dnnl_primitive_desc_query_md(s->k.pd, dnnl_query_weights_md, 0),
                             *dst = dnnl_primitive_desc_query_md(s->k.pd, dnnl_query_dst_md, 0),
                             *bmd = dnnl_primitive_desc_query_md(s->k.pd, dnnl_query_weights_md, 1);
    kiln_status st;
    float in_inv = 1.0f / la->in_scale;
    if ((st = kiln_lowp_conv_init(&s->k.src, &s->xmd, x->in[0]->val, src, int8, 0, &in_inv))) return st;
    float *winv = NULL;
    if (int8) {
        if (!(winv = malloc((size_t)s->F * sizeof *winv))) return KILN_ERR_NOMEM;
        for (int64_t f = 0; f < s->F; f++) winv[f] = 1.0f / s->k.wscale[f];
    }
    int mask = s->wmd.ndims == x->in[1]->shape.ndim + 1 ? 3 : 1; /* grouped: [G, F/G, ...] */
    st = kiln_lowp_convert_now(&s->wmd, x->in[1]->val, wmd, int8 ? (int)s->F : 0, mask, winv, &s->k.wq);
    free(winv);
    if (st) return st;
    if ((st = kiln_dnnl_edge_compile(&s->out, x))) return st;
    s->ny = (int64_t)(kiln_dnnl_md_bytes(dst) / sizeof(float));
    if (!(s->k.m_w = kiln_dnnl_mem(wmd, s->k.wq)) || !(s->k.m_b = kiln_dnnl_mem(bmd, s->k.bias)) ||
        !(s->k.m_y = kiln_dnnl_mem(dst, kiln_dnnl_edge_val(&s->out, x))))
        return KILN_ERR_BACKEND;
    return kiln_dnnl_primitive_from_pd(s->k.pd, &s->k.prim, "low-precision convolution");
}

static kiln_status lowp_conv_forward(kiln_inst *x, const kiln_run *r) {
    lowp_conv_state *s = x->state;
    kiln_status st = kiln_lowp_core_exec(&s->k, r->stream);
    if (st) return st;
    if (s->k.own_act) {
        float *y = kiln_dnnl_edge_val(&s->out, x);
        kiln_act_forward(s->k.act, s->k.alpha, y, y, s->ny);
    }
    return kiln_dnnl_edge_forward(&s->out, r->stream);
}

const kiln_op kiln_op_conv_lowp = {
    .name = "conv_lowp",
    .backend = &kiln_backend_cpu,
    .infer = lowp_conv_infer,
    .choose_layout = lowp_conv_choose_layout,
    .compile = lowp_conv_compile,
    .forward = lowp_conv_forward,
    .release = lowp_conv_release,
    .accepts_layout = 1,
};

/* lowp_dense.c — a dense layer run in int8 or bf16 for inference: the op kiln_lowp_convert puts
 * in place of dense.
 *
 * Shapes are the fp32 op's (dense.c): x [M, K] (leading axes folded into M), kernel [K, N],
 * bias [N], y [M, N], plain f32 in the plan. Forward: x -> u8/s8 (x / in_scale) or bf16 by a
 * reorder (lowp.c), then one oneDNN matmul (int8: s8 weights quantized per output column when
 * the plan is compiled, s32 accumulation, output scales in_scale * w_scale[n]; bf16: f32
 * accumulation) writing f32 y with the bias and (where oneDNN has it) the activation fused;
 * hard_sigmoid / hard_swish run as our own loop. No backward: inference plans only. The weights
 * are read when the plan is compiled.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/act.h"
#include "backend/cpu/lowp.h"
#include "backend/ops.h"
#include "kiln/mem.h"

typedef struct {
    kiln_lowp_core k; /* act, input conversion, weights, bias and scales [N], primitive */
    int64_t M, K, N;
} lowp_dense_state;

static kiln_status lowp_dense_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                                    kiln_dtype *dt) {
    return kiln_lowp_infer(n, in, out, dt, "dense");
}

static void lowp_dense_release(kiln_inst *x) {
    lowp_dense_state *s = x->state;
    if (!s) return;
    kiln_lowp_core_release(&s->k);
    free(s);
    x->state = NULL;
}

static kiln_status lowp_dense_compile(kiln_inst *x, kiln_compile_ctx *c) {
    (void)c;
    const kiln_lowp_attr *la = KILN_ATTR(x->node, kiln_lowp_attr);
    lowp_dense_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", x->node->name);
    x->state = s;
    int int8 = la->dtype == KILN_LOWP_INT8;
    s->K = x->in[1]->shape.dims[0];
    s->N = la->base.dense.units;
    s->M = x->numel / s->N;
    dnnl_alg_kind_t elt = kiln_lowp_core_act(&s->k, la->base.dense.act);
    const float *w = x->in[1]->val;
    kiln_status st = kiln_lowp_core_bias(&s->k, x, la, s->N, s->K, 1, s->N);
    if (st) return st;

    int64_t xd[2] = {s->M, s->K}, wd[2] = {s->K, s->N}, yd[2] = {s->M, s->N}, bd[2] = {1, s->N};
    dnnl_memory_desc_t xf = kiln_dnnl_md(2, xd, NULL), wf = kiln_dnnl_md(2, wd, NULL);
    dnnl_memory_desc_t xq = kiln_lowp_md_dt(&xf, kiln_lowp_src_dt(la));
    dnnl_memory_desc_t w_any = kiln_dnnl_md_any(2, wd), y = kiln_dnnl_md(2, yd, NULL), b = kiln_dnnl_md(2, bd, NULL);
    w_any.data_type = int8 ? dnnl_s8 : dnnl_bf16;
    dnnl_matmul_desc_t md;
    CHECK_DNNL(dnnl_matmul_desc_init(&md, &xq, &w_any, &b, &y), "low-precision matmul desc");
    dnnl_primitive_attr_t attr;
    if ((st = kiln_lowp_core_attr(&s->k, elt, la, s->N, &attr))) return st;
    dnnl_status_t ds = dnnl_primitive_desc_create(&s->k.pd, &md, attr, kiln_dnnl_engine(), NULL);
    dnnl_primitive_attr_destroy(attr);
    if (ds != dnnl_success)
        return kiln_error(KILN_ERR_BACKEND, "%s: oneDNN has no %s matmul for these shapes (status %d)",
                          x->node->name, int8 ? "int8" : "bf16", (int)ds);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(s->k.pd, dnnl_query_weights_md, 0);
    float *winv = NULL;
    if (int8) {
        if (!(winv = malloc((size_t)s->N * sizeof *winv))) return KILN_ERR_NOMEM;
        for (int64_t n = 0; n < s->N; n++) winv[n] = 1.0f / s->k.wscale[n];
    }
    st = kiln_lowp_convert_now(&wf, w, wmd, int8 ? (int)s->N : 0, 1 << 1, winv, &s->k.wq);
    free(winv);
    if (st) return st;
    float in_inv = 1.0f / la->in_scale;
    if ((st = kiln_lowp_conv_init(&s->k.src, &xf, x->in[0]->val, &xq, int8, 0, &in_inv))) return st;
    if (!(s->k.m_w = kiln_dnnl_mem(wmd, s->k.wq)) || !(s->k.m_b = kiln_dnnl_mem(&b, s->k.bias)) ||
        !(s->k.m_y = kiln_dnnl_mem(&y, x->val)))
        return KILN_ERR_BACKEND;
    return kiln_dnnl_primitive_from_pd(s->k.pd, &s->k.prim, "low-precision matmul");
}

static kiln_status lowp_dense_forward(kiln_inst *x, const kiln_run *r) {
    lowp_dense_state *s = x->state;
    kiln_status st = kiln_lowp_core_exec(&s->k, r->stream);
    if (st) return st;
    if (s->k.own_act) kiln_act_forward(s->k.act, s->k.alpha, x->val, x->val, x->numel);
    return KILN_OK;
}

const kiln_op kiln_op_dense_lowp = {
    .name = "dense_lowp",
    .backend = &kiln_backend_cpu,
    .infer = lowp_dense_infer,
    .compile = lowp_dense_compile,
    .forward = lowp_dense_forward,
    .release = lowp_dense_release,
};

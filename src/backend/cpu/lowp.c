/* lowp.c — the helpers the low-precision kernels share (see lowp.h), and the CPU facts that
 * kiln optimize reports (kiln/backend.h: which ISA oneDNN runs, whether int8 keeps 8-bit
 * weights here). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/lowp.h"
#include "kiln/backend.h"
#include "kiln/cpu.h"
#include "kiln/mem.h"

int kiln_lowp_weight_qmax(void) { return kiln_cpu_has_int8_dot() ? 127 : 63; }

int kiln_backend_int8_weight_bits(void) { return kiln_lowp_weight_qmax() == 127 ? 8 : 7; }

const char *kiln_backend_cpu_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "all";
    }
}

void kiln_lowp_channel_scales(const float *w, int64_t channels, int64_t per, int64_t ch_stride,
                              int64_t el_stride, int qmax, float *scale) {
    for (int64_t c = 0; c < channels; c++) {
        float m = 0;
        for (int64_t i = 0; i < per; i++) {
            float v = fabsf(w[c * ch_stride + i * el_stride]);
            if (v > m) m = v;
        }
        scale[c] = m > 0 ? m / (float)qmax : 1.0f;
    }
}

dnnl_memory_desc_t kiln_lowp_md_dt(const dnnl_memory_desc_t *md, dnnl_data_type_t dt) {
    dnnl_memory_desc_t out = *md;
    out.data_type = dt;
    return out;
}

dnnl_data_type_t kiln_lowp_src_dt(const kiln_lowp_attr *a) {
    if (a->dtype == KILN_LOWP_BF16) return dnnl_bf16;
    return a->in_signed ? dnnl_s8 : dnnl_u8;
}

static kiln_status make_reorder(const dnnl_memory_desc_t *have, const dnnl_memory_desc_t *want,
                                int count, int mask, const float *scale, dnnl_primitive_t *r) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_engine_t e = kiln_dnnl_engine();
    if (count) {
        CHECK_DNNL(dnnl_primitive_attr_create(&attr), "attribute");
        dnnl_status_t s = dnnl_primitive_attr_set_output_scales(attr, count, mask, scale);
        if (s != dnnl_success) dnnl_primitive_attr_destroy(attr);
        CHECK_DNNL(s, "reorder scales");
    }
    dnnl_primitive_desc_t pd;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, have, e, want, e, attr);
    if (attr) dnnl_primitive_attr_destroy(attr);
    CHECK_DNNL(s, "quantizing reorder desc");
    s = dnnl_primitive_create(r, pd);
    dnnl_primitive_desc_destroy(pd);
    CHECK_DNNL(s, "quantizing reorder");
    return KILN_OK;
}

kiln_status kiln_lowp_conv_init(kiln_lowp_conv *c, const dnnl_memory_desc_t *have, void *have_ptr,
                                const dnnl_memory_desc_t *want, int count, int mask,
                                const float *scale) {
    memset(c, 0, sizeof *c);
    kiln_status st = make_reorder(have, want, count, mask, scale, &c->r);
    if (st) return st;
    if (!(c->buf = kiln_alloc(kiln_dnnl_md_bytes(want) + 64))) return KILN_ERR_NOMEM;
    if (!(c->from = kiln_dnnl_mem(have, have_ptr)) || !(c->to = kiln_dnnl_mem(want, c->buf)))
        return KILN_ERR_BACKEND;
    return KILN_OK;
}

kiln_status kiln_lowp_conv_run(kiln_lowp_conv *c, dnnl_stream_t s) {
    return kiln_dnnl_reorder_exec(c->r, s, c->from, c->to);
}

void kiln_lowp_conv_release(kiln_lowp_conv *c) {
    if (c->r) dnnl_primitive_destroy(c->r);
    if (c->from) dnnl_memory_destroy(c->from);
    if (c->to) dnnl_memory_destroy(c->to);
    kiln_free(c->buf);
    memset(c, 0, sizeof *c);
}

kiln_status kiln_lowp_convert_now(const dnnl_memory_desc_t *have, const void *ptr,
                                  const dnnl_memory_desc_t *want, int count, int mask,
                                  const float *scale, void **out) {
    kiln_lowp_conv c;
    dnnl_stream_t s = NULL;
    kiln_status st = kiln_lowp_conv_init(&c, have, (void *)ptr, want, count, mask, scale);
    if (!st && dnnl_stream_create(&s, kiln_dnnl_engine(), dnnl_stream_default_flags) != dnnl_success)
        st = kiln_error(KILN_ERR_BACKEND, "oneDNN stream failed");
    if (!st) st = kiln_lowp_conv_run(&c, s);
    if (!st) dnnl_stream_wait(s);
    if (s) dnnl_stream_destroy(s);
    if (!st) *out = c.buf, c.buf = NULL;
    kiln_lowp_conv_release(&c);
    return st;
}

kiln_status kiln_lowp_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                            kiln_dtype *dt, const char *what) {
    kiln_node base = *n; /* the fp32 op's checks, on the base attribute (first member) */
    base.op = (const kiln_op *)KILN_ATTR(n, kiln_lowp_attr)->base_op;
    if (!base.op || !base.op->infer)
        return kiln_error(KILN_ERR_INVALID, "%s: low-precision %s without a base op", n->name,
                          what);
    return base.op->infer(&base, in, out, dt);
}

dnnl_alg_kind_t kiln_lowp_core_act(kiln_lowp_core *c, kiln_act act) {
    c->act = act;
    dnnl_alg_kind_t elt = kiln_dnnl_act_alg(act, &c->alpha);
    c->own_act = act != KILN_ACT_NONE && !elt;
    return elt;
}

kiln_status kiln_lowp_core_bias(kiln_lowp_core *c, const kiln_inst *x, const kiln_lowp_attr *la,
                                int64_t channels, int64_t per, int64_t ch_stride,
                                int64_t el_stride) {
    size_t bytes = (size_t)channels * sizeof(float);
    if (!(c->wscale = kiln_alloc(bytes)) || !(c->bias = kiln_alloc(bytes))) return KILN_ERR_NOMEM;
    for (int64_t i = 0; i < channels; i++)
        c->bias[i] = x->n_in > 2 ? ((const float *)x->in[2]->val)[i] : 0.0f;
    if (la->dtype == KILN_LOWP_INT8) {
        kiln_lowp_channel_scales(x->in[1]->val, channels, per, ch_stride, el_stride,
                                 kiln_lowp_weight_qmax(), c->wscale);
        for (int64_t i = 0; i < channels; i++) c->bias[i] /= la->in_scale * c->wscale[i];
    }
    return KILN_OK;
}

kiln_status kiln_lowp_core_attr(const kiln_lowp_core *c, dnnl_alg_kind_t elt,
                                const kiln_lowp_attr *la, int64_t channels,
                                dnnl_primitive_attr_t *out) {
    dnnl_primitive_attr_t attr = kiln_dnnl_attr(elt, c->alpha, 0);
    if (!attr) CHECK_DNNL(dnnl_primitive_attr_create(&attr), "attribute");
    if (la->dtype == KILN_LOWP_INT8) {
        float *osc = malloc((size_t)channels * sizeof *osc);
        if (!osc) return dnnl_primitive_attr_destroy(attr), KILN_ERR_NOMEM;
        for (int64_t i = 0; i < channels; i++) osc[i] = la->in_scale * c->wscale[i];
        dnnl_primitive_attr_set_output_scales(attr, channels, 1 << 1, osc); /* copies osc */
        free(osc);
    }
    *out = attr;
    return KILN_OK;
}

kiln_status kiln_lowp_core_exec(kiln_lowp_core *c, dnnl_stream_t s) {
    kiln_status st = kiln_lowp_conv_run(&c->src, s);
    if (st) return st;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, c->src.to}, {DNNL_ARG_WEIGHTS, c->m_w},
                               {DNNL_ARG_BIAS, c->m_b}, {DNNL_ARG_DST, c->m_y}};
    return kiln_dnnl_exec(c->prim, s, 4, args);
}

void kiln_lowp_core_release(kiln_lowp_core *c) {
    if (c->prim) dnnl_primitive_destroy(c->prim);
    if (c->pd) dnnl_primitive_desc_destroy(c->pd);
    dnnl_memory_t mems[] = {c->m_w, c->m_b, c->m_y};
    for (size_t i = 0; i < 3; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    kiln_lowp_conv_release(&c->src);
    kiln_free(c->wq);
    kiln_free(c->bias);
    kiln_free(c->wscale);
    memset(c, 0, sizeof *c);
}

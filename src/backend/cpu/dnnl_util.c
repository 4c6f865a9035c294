/* dnnl_util.c — see dnnl_util.h. */
#include "backend/cpu/dnnl_util.h"
#include "backend/ops.h"

#include <pthread.h>
#include <string.h>

#include "kiln/backend.h"

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

dnnl_engine_t kiln_dnnl_engine(void) {
    pthread_once(&engine_once, engine_init);
    return engine;
}

/* The CPU backend's stream (kiln_backend_cpu): one per plan. */
static void *cpu_stream_new(void) {
    dnnl_stream_t s = NULL;
    dnnl_engine_t e = kiln_dnnl_engine();
    if (!e || dnnl_stream_create(&s, e, dnnl_stream_default_flags) != dnnl_success) {
        kiln_error(KILN_ERR_BACKEND, "oneDNN: cannot create a CPU stream");
        return NULL;
    }
    return s;
}

static void cpu_stream_free(void *s) {
    if (s) dnnl_stream_destroy((dnnl_stream_t)s);
}

const kiln_backend kiln_backend_cpu = {
    .name = "cpu", .stream_new = cpu_stream_new, .stream_free = cpu_stream_free};

dnnl_memory_desc_t kiln_dnnl_md(int ndim, const int64_t *dims, const int64_t *strides) {
    dnnl_memory_desc_t md;
    dnnl_dims_t d, st;
    int64_t acc = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        d[i] = dims[i];
        st[i] = strides ? strides[i] : acc;
        acc *= dims[i];
    }
    dnnl_memory_desc_init_by_strides(&md, ndim, d, dnnl_f32, st);
    return md;
}

dnnl_memory_t kiln_dnnl_mem(const dnnl_memory_desc_t *md, void *ptr) {
    dnnl_memory_t m = NULL;
    if (dnnl_memory_create(&m, md, kiln_dnnl_engine(), ptr) != dnnl_success) {
        kiln_error(KILN_ERR_BACKEND, "oneDNN: cannot create a memory object");
        return NULL;
    }
    return m;
}

kiln_status kiln_dnnl_primitive(const void *op_desc, const_dnnl_primitive_attr_t attr,
                                const_dnnl_primitive_desc_t hint, dnnl_primitive_t *prim,
                                dnnl_primitive_desc_t *pd_out, const char *what) {
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_primitive_desc_create(&pd, op_desc, attr, kiln_dnnl_engine(), hint);
    if (s != dnnl_success)
        return kiln_error(KILN_ERR_BACKEND, "oneDNN has no %s primitive for these shapes (status %d)",
                          what, (int)s);
    s = dnnl_primitive_create(prim, pd);
    if (s != dnnl_success) {
        dnnl_primitive_desc_destroy(pd);
        return kiln_error(KILN_ERR_BACKEND, "oneDNN could not create %s (status %d)", what, (int)s);
    }
    if (pd_out) *pd_out = pd;
    else dnnl_primitive_desc_destroy(pd);
    return KILN_OK;
}

dnnl_primitive_attr_t kiln_dnnl_attr(dnnl_alg_kind_t eltwise, float alpha, int sum) {
    dnnl_primitive_attr_t attr = NULL;
    if (!eltwise && !sum) return NULL;
    dnnl_post_ops_t po = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    dnnl_post_ops_create(&po);
    if (sum) dnnl_post_ops_append_sum(po, 1.0f);
    if (eltwise) dnnl_post_ops_append_eltwise(po, 1.0f, eltwise, alpha, 0.0f);
    dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
    return attr;
}

kiln_status kiln_dnnl_exec(dnnl_primitive_t p, dnnl_stream_t s, int nargs, const dnnl_exec_arg_t *args) {
    CHECK_DNNL(dnnl_primitive_execute(p, s, nargs, args), "execute");
    CHECK_DNNL(dnnl_stream_wait(s), "stream wait");
    return KILN_OK;
}

dnnl_alg_kind_t kiln_dnnl_act_alg(int act, float *alpha) {
    *alpha = 0.0f;
    switch ((kiln_act)act) {
    case KILN_ACT_RELU: return dnnl_eltwise_relu;
    case KILN_ACT_LEAKY_RELU: *alpha = 0.01f; return dnnl_eltwise_relu;
    case KILN_ACT_SIGMOID: return dnnl_eltwise_logistic;
    case KILN_ACT_TANH: return dnnl_eltwise_tanh;
    case KILN_ACT_GELU: return dnnl_eltwise_gelu_erf;
    default: return (dnnl_alg_kind_t)0;
    }
}

int kiln_dnnl_md_equal(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b) {
    return dnnl_memory_desc_equal(a, b) != 0;
}

dnnl_memory_desc_t kiln_dnnl_md_any(int ndim, const int64_t *dims) {
    dnnl_memory_desc_t md;
    dnnl_dims_t d;
    for (int i = 0; i < ndim; i++) d[i] = dims[i];
    dnnl_memory_desc_init_by_tag(&md, ndim, d, dnnl_f32, dnnl_format_tag_any);
    return md;
}

size_t kiln_dnnl_md_bytes(const dnnl_memory_desc_t *md) { return dnnl_memory_desc_get_size(md); }

const dnnl_memory_desc_t *kiln_dnnl_layout_of(const kiln_inst *x, dnnl_memory_desc_t *plain) {
    if (x->layout) return x->layout;
    *plain = kiln_dnnl_md(x->shape.ndim, x->shape.dims, NULL);
    return plain;
}

kiln_status kiln_dnnl_reorder(const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst, dnnl_primitive_t *out) {
    dnnl_primitive_desc_t pd;
    dnnl_engine_t e = kiln_dnnl_engine();
    CHECK_DNNL(dnnl_reorder_primitive_desc_create(&pd, src, e, dst, e, NULL), "reorder desc");
    dnnl_status_t s = dnnl_primitive_create(out, pd);
    dnnl_primitive_desc_destroy(pd);
    CHECK_DNNL(s, "reorder");
    return KILN_OK;
}

kiln_status kiln_dnnl_reorder_exec(dnnl_primitive_t r, dnnl_stream_t s, dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return kiln_dnnl_exec(r, s, 2, args);
}

void kiln_dnnl_edge_choose(kiln_dnnl_edge *e, kiln_inst *x, const dnnl_memory_desc_t *md) {
    dnnl_memory_desc_t plain = kiln_dnnl_md(x->shape.ndim, x->shape.dims, NULL);
    e->md = *md;
    e->active = 0;
    if (kiln_dnnl_md_equal(md, &plain)) return;
    if (x->plain_out) {
        e->active = 1;
        return;
    }
    x->layout = &e->md;
    x->bytes = kiln_dnnl_md_bytes(md);
}

kiln_status kiln_dnnl_edge_compile(kiln_dnnl_edge *e, kiln_inst *x) {
    if (!e->active) return KILN_OK;
    dnnl_memory_desc_t plain = kiln_dnnl_md(x->shape.ndim, x->shape.dims, NULL);
    size_t bytes = kiln_dnnl_md_bytes(&e->md);
    kiln_status st;
    if (!(e->buf = kiln_alloc(bytes))) return KILN_ERR_NOMEM;
    if ((st = kiln_dnnl_reorder(&e->md, &plain, &e->to_plain))) return st;
    if (!(e->m_buf = kiln_dnnl_mem(&e->md, e->buf)) || !(e->m_val = kiln_dnnl_mem(&plain, x->val)))
        return KILN_ERR_BACKEND;
    if (!x->grad) return KILN_OK;
    if (!(e->gbuf = kiln_alloc(bytes))) return KILN_ERR_NOMEM;
    if ((st = kiln_dnnl_reorder(&plain, &e->md, &e->from_plain))) return st;
    if (!(e->m_gbuf = kiln_dnnl_mem(&e->md, e->gbuf)) || !(e->m_grad = kiln_dnnl_mem(&plain, x->grad)))
        return KILN_ERR_BACKEND;
    return KILN_OK;
}

kiln_status kiln_dnnl_edge_forward(kiln_dnnl_edge *e, dnnl_stream_t s) {
    return e->active ? kiln_dnnl_reorder_exec(e->to_plain, s, e->m_buf, e->m_val) : KILN_OK;
}

kiln_status kiln_dnnl_edge_backward(kiln_dnnl_edge *e, dnnl_stream_t s) {
    return e->active && e->from_plain ? kiln_dnnl_reorder_exec(e->from_plain, s, e->m_grad, e->m_gbuf) : KILN_OK;
}

void kiln_dnnl_edge_release(kiln_dnnl_edge *e) {
    if (e->to_plain) dnnl_primitive_destroy(e->to_plain);
    if (e->from_plain) dnnl_primitive_destroy(e->from_plain);
    dnnl_memory_t mems[] = {e->m_buf, e->m_gbuf, e->m_val, e->m_grad};
    for (int i = 0; i < 4; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    kiln_free(e->buf);
    kiln_free(e->gbuf);
    memset(e, 0, sizeof *e);
}

kiln_status kiln_dnnl_port_init(kiln_dnnl_port *p, const dnnl_memory_desc_t *have, void *have_ptr,
                                const dnnl_memory_desc_t *want, int out) {
    memset(p, 0, sizeof *p);
    p->out = out;
    if (!(p->m_have = kiln_dnnl_mem(have, have_ptr))) return KILN_ERR_BACKEND;
    if (kiln_dnnl_md_equal(have, want)) {
        p->m_want = p->m_have;
        return KILN_OK;
    }
    kiln_status st = out ? kiln_dnnl_reorder(want, have, &p->reorder) : kiln_dnnl_reorder(have, want, &p->reorder);
    if (st) return st;
    if (!(p->buf = kiln_alloc(kiln_dnnl_md_bytes(want)))) return KILN_ERR_NOMEM;
    if (!(p->m_want = kiln_dnnl_mem(want, p->buf))) return KILN_ERR_BACKEND;
    return KILN_OK;
}

void kiln_dnnl_port_point(kiln_dnnl_port *p, void *have_ptr) { dnnl_memory_set_data_handle(p->m_have, have_ptr); }

kiln_status kiln_dnnl_port_sync(kiln_dnnl_port *p, dnnl_stream_t s) {
    if (!p->reorder) return KILN_OK;
    return p->out ? kiln_dnnl_reorder_exec(p->reorder, s, p->m_want, p->m_have)
                  : kiln_dnnl_reorder_exec(p->reorder, s, p->m_have, p->m_want);
}

void kiln_dnnl_port_release(kiln_dnnl_port *p) {
    if (p->reorder) dnnl_primitive_destroy(p->reorder);
    if (p->m_want && p->m_want != p->m_have) dnnl_memory_destroy(p->m_want);
    if (p->m_have) dnnl_memory_destroy(p->m_have);
    kiln_free(p->buf);
    memset(p, 0, sizeof *p);
}

int kiln_dnnl_is_reference(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl) return 0;
    return strncmp(impl, "ref", 3) == 0;
}

kiln_status kiln_dnnl_primitive_from_pd(const_dnnl_primitive_desc_t pd, dnnl_primitive_t *prim, const char *what) {
    dnnl_status_t s = dnnl_primitive_create(prim, pd);
    if (s != dnnl_success) return kiln_error(KILN_ERR_BACKEND, "oneDNN could not create %s (status %d)", what, (int)s);
    return KILN_OK;
}

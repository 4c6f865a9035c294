/* dnnl_util.c — see dnnl_util.h. */
#include "backend/cpu/dnnl_util.h"

#include <pthread.h>
#include <string.h>

#include "kiln/nn.h"

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

dnnl_engine_t kiln_dnnl_engine(void) {
    pthread_once(&engine_once, engine_init);
    return engine;
}

dnnl_stream_t kiln_dnnl_stream_new(void) {
    dnnl_stream_t s = NULL;
    dnnl_engine_t e = kiln_dnnl_engine();
    if (!e || dnnl_stream_create(&s, e, dnnl_stream_default_flags) != dnnl_success) {
        kiln_error(KILN_ERR_BACKEND, "oneDNN: cannot create a CPU stream");
        return NULL;
    }
    return s;
}

void kiln_dnnl_stream_free(dnnl_stream_t s) {
    if (s) dnnl_stream_destroy(s);
}

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

/* dnnl_util.h — the oneDNN engine, plain memory descriptors and primitive helpers.
 *
 * One CPU engine per process (created on first use, thread-safe). Each plan owns a stream
 * (kiln_run.stream) so that plans on different threads never share one. Memory objects are
 * created at compile time over the plan's fixed buffers, so executing a primitive costs no
 * allocation. CHECK_DNNL turns a oneDNN failure into a kiln_status with the call named.
 */
#ifndef KILN_DNNL_UTIL_H
#define KILN_DNNL_UTIL_H

#include <oneapi/dnnl/dnnl.h>

#include "graph/graph_internal.h"

dnnl_engine_t kiln_dnnl_engine(void);
dnnl_stream_t kiln_dnnl_stream_new(void);
void kiln_dnnl_stream_free(dnnl_stream_t s);

/* A plain row-major f32 descriptor for dims[0..ndim); strides may be NULL (dense). */
dnnl_memory_desc_t kiln_dnnl_md(int ndim, const int64_t *dims, const int64_t *strides);
/* A memory object over ptr; NULL with message on failure. */
dnnl_memory_t kiln_dnnl_mem(const dnnl_memory_desc_t *md, void *ptr);
/* Creates the primitive for op_desc (attr may be NULL); hint for backward descs. Also returns
 * the pd when pd_out is not NULL (caller destroys it). */
kiln_status kiln_dnnl_primitive(const void *op_desc, const_dnnl_primitive_attr_t attr,
                                const_dnnl_primitive_desc_t hint, dnnl_primitive_t *prim,
                                dnnl_primitive_desc_t *pd_out, const char *what);
/* An attribute with optional eltwise post-op (alg 0 = none) then optional sum (accumulate). */
dnnl_primitive_attr_t kiln_dnnl_attr(dnnl_alg_kind_t eltwise, float alpha, int sum);
/* Executes; oneDNN failures here are internal errors (shapes were checked at compile). */
kiln_status kiln_dnnl_exec(dnnl_primitive_t p, dnnl_stream_t s, int nargs, const dnnl_exec_arg_t *args);
/* The oneDNN eltwise algorithm for an activation, or 0 when none / not fusable. */
dnnl_alg_kind_t kiln_dnnl_act_alg(int act, float *alpha);

#define CHECK_DNNL(call, what)                                                                     \
    do {                                                                                           \
        dnnl_status_t s_ = (call);                                                                 \
        if (s_ != dnnl_success)                                                                    \
            return kiln_error(KILN_ERR_BACKEND, "oneDNN %s failed (status %d)", what, (int)s_);     \
    } while (0)

#endif

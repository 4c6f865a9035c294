/* dnnl_util.h — the oneDNN engine, plain memory descriptors and primitive helpers.
 *
 * One CPU engine per process (created on first use, thread-safe). Each plan owns a stream
 * (kiln_run.stream, made through kiln_backend_cpu) so that plans on different threads never
 * share one. Memory objects are
 * created at compile time over the plan's fixed buffers, so executing a primitive costs no
 * allocation. CHECK_DNNL turns a oneDNN failure into a kiln_status with the call named.
 */
#ifndef KILN_DNNL_UTIL_H
#define KILN_DNNL_UTIL_H

#include <oneapi/dnnl/dnnl.h>

#include "graph/graph_internal.h"

dnnl_engine_t kiln_dnnl_engine(void);

/* A plain row-major f32 descriptor for dims[0..ndim); strides may be NULL (dense). */
dnnl_memory_desc_t kiln_dnnl_md(int ndim, const int64_t *dims, const int64_t *strides);
/* A memory object over ptr; NULL with message on failure. */
dnnl_memory_t kiln_dnnl_mem(const dnnl_memory_desc_t *md, void *ptr);
/* Creates the primitive for op_desc (attr may be NULL); hint for backward descs. Also returns
 * the pd when pd_out is not NULL (caller destroys it). */
kiln_status kiln_dnnl_primitive(const void *op_desc, const_dnnl_primitive_attr_t attr,
                                const_dnnl_primitive_desc_t hint, dnnl_primitive_t *prim,
                                dnnl_primitive_desc_t *pd_out, const char *what);
/* The primitive of an existing descriptor. */
kiln_status kiln_dnnl_primitive_from_pd(const_dnnl_primitive_desc_t pd, dnnl_primitive_t *prim, const char *what);
/* An attribute with optional eltwise post-op (alg 0 = none) then optional sum (accumulate). */
dnnl_primitive_attr_t kiln_dnnl_attr(dnnl_alg_kind_t eltwise, float alpha, int sum);
/* Executes; oneDNN failures here are internal errors (shapes were checked at compile). */
kiln_status kiln_dnnl_exec(dnnl_primitive_t p, dnnl_stream_t s, int nargs, const dnnl_exec_arg_t *args);
/* The oneDNN eltwise algorithm for an activation, or 0 when none / not fusable. */
dnnl_alg_kind_t kiln_dnnl_act_alg(int act, float *alpha);

/* 1 when two descriptors describe the same layout. */
int kiln_dnnl_md_equal(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b);
/* "Let the primitive choose" (format any) for f32 dims. */
dnnl_memory_desc_t kiln_dnnl_md_any(int ndim, const int64_t *dims);
size_t kiln_dnnl_md_bytes(const dnnl_memory_desc_t *md);
/* The layout of a plan value: its backend layout, or plain dims (written into *plain). */
const dnnl_memory_desc_t *kiln_dnnl_layout_of(const kiln_inst *x, dnnl_memory_desc_t *plain);
/* A reorder primitive src_md -> dst_md. */
kiln_status kiln_dnnl_reorder(const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst, dnnl_primitive_t *out);
/* Runs a reorder between two memory objects. */
kiln_status kiln_dnnl_reorder_exec(dnnl_primitive_t r, dnnl_stream_t s, dnnl_memory_t from, dnnl_memory_t to);

/* The output edge of a layout-aware op. The op computes its output in the layout md its
 * primitive chose. When md is plain, or the consumers accept it, that is the value itself
 * (x->layout = md). When something needs the value plain, the op computes into a private
 * buffer in md and reorders into the plain value after forward; backward reorders the plain
 * gradient into a private buffer in md first. The reorders are the only ones in a step, at the
 * edges of a run of conv/pool ops. */
typedef struct {
    dnnl_memory_desc_t md; /* the primitive's output layout */
    int active;            /* reorders in play */
    float *buf, *gbuf;     /* [md] private value and gradient when active */
    dnnl_primitive_t to_plain, from_plain;
    dnnl_memory_t m_buf, m_gbuf, m_val, m_grad;
} kiln_dnnl_edge;

/* Before the memory plan: records md and sets x->layout / x->bytes. */
void kiln_dnnl_edge_choose(kiln_dnnl_edge *e, kiln_inst *x, const dnnl_memory_desc_t *md);
/* After the memory plan: buffers and reorders (gradient side only when x->grad). */
kiln_status kiln_dnnl_edge_compile(kiln_dnnl_edge *e, kiln_inst *x);
/* Where the primitive writes the value / reads the gradient. */
static inline void *kiln_dnnl_edge_val(const kiln_dnnl_edge *e, kiln_inst *x) { return e->active ? e->buf : x->val; }
static inline float *kiln_dnnl_edge_grad(const kiln_dnnl_edge *e, kiln_inst *x) { return e->active ? e->gbuf : x->grad; }
kiln_status kiln_dnnl_edge_forward(kiln_dnnl_edge *e, dnnl_stream_t s);  /* buf -> value */
kiln_status kiln_dnnl_edge_backward(kiln_dnnl_edge *e, dnnl_stream_t s); /* gradient -> gbuf */
void kiln_dnnl_edge_release(kiln_dnnl_edge *e);

/* A tensor handed between two layouts: it lives in `have` (a plan buffer) and a primitive
 * wants it in `want`. When they match the primitive uses the buffer itself; otherwise a
 * private buffer in `want` and a reorder (have -> want for inputs, before the primitive;
 * want -> have for outputs, after it). */
typedef struct {
    int out;                /* 1: the primitive writes it */
    float *buf;             /* [want] private, NULL when have == want */
    dnnl_primitive_t reorder;
    dnnl_memory_t m_have, m_want;
} kiln_dnnl_port;

/* have_ptr may be NULL (set later with kiln_dnnl_port_point, e.g. to the plan's scratch). */
kiln_status kiln_dnnl_port_init(kiln_dnnl_port *p, const dnnl_memory_desc_t *have, void *have_ptr,
                                const dnnl_memory_desc_t *want, int out);
static inline dnnl_memory_t kiln_dnnl_port_mem(const kiln_dnnl_port *p) { return p->m_want; }
void kiln_dnnl_port_point(kiln_dnnl_port *p, void *have_ptr);
/* Runs the reorder, if any. */
kiln_status kiln_dnnl_port_sync(kiln_dnnl_port *p, dnnl_stream_t s);
void kiln_dnnl_port_release(kiln_dnnl_port *p);
/* 1 when oneDNN picked a reference (slow) implementation for pd. */
int kiln_dnnl_is_reference(const_dnnl_primitive_desc_t pd);

#define CHECK_DNNL(call, what)                                                                     \
    do {                                                                                           \
        dnnl_status_t s_ = (call);                                                                 \
        if (s_ != dnnl_success)                                                                    \
            return kiln_error(KILN_ERR_BACKEND, "oneDNN %s failed (status %d)", what, (int)s_);     \
    } while (0)

#endif

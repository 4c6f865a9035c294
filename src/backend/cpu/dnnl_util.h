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

/* ---- deterministic execution: batch chunks with a fixed reduction order ----
 *
 * oneDNN splits its reductions (a convolution's weight gradient over the batch, a matmul's inner
 * dimension) according to the number of threads, so its results change in the last bits with
 * the thread count. A split executor runs one primitive over a batch in a way that does not
 * depend on it: the rows are cut into chunks whose size depends only on the shapes (at most
 * KILN_SPLIT_CHUNKS chunks, each of at least about KILN_SPLIT_MIN_WORK multiply-adds);
 * each chunk runs on one thread with a primitive made for one thread (a fixed computation);
 * results that sum over the batch (SUM arguments) are computed per chunk into private buffers
 * and added in chunk order, each element always as ((c0 + c1) + c2) + ...; row-wise results
 * (ROWS arguments) are written in place. Up to `workers` chunks run at once.
 *
 * ROWS arguments are views of a tensor whose `axis` runs over the rows and is not blocked in
 * the layout (any oneDNN layout with that axis outside its inner blocks, e.g. nchw, nChw8c);
 * WHOLE arguments (weights, bias) are the same for every chunk. The primitive descriptor of a
 * chunk comes from the op (make), called with one OpenMP thread and an attribute in user
 * scratchpad mode that it may add post-ops to. Every SUM result must have the same layout in
 * the chunk and the tail primitive. */
typedef enum { KILN_SPLIT_WHOLE, KILN_SPLIT_ROWS, KILN_SPLIT_SUM } kiln_split_role;

#define KILN_SPLIT_MAX_ARGS 6
#define KILN_SPLIT_CHUNKS   16      /* at most this many chunks (so at most this many threads) */
#define KILN_SPLIT_MIN_WORK 2097152 /* multiply-adds a chunk should have at least (~0.2 ms) */

typedef struct {
    int arg;              /* DNNL_ARG_SRC, ... */
    kiln_split_role role;
    int axis;             /* ROWS: the dimension that runs over the rows */
} kiln_dnnl_split_arg;

/* The primitive descriptor for `rows` rows; attr is the caller's to extend, not to destroy. */
typedef kiln_status (*kiln_dnnl_split_make)(void *ctx, int64_t rows, dnnl_primitive_attr_t attr,
                                            dnnl_primitive_desc_t *pd);

typedef struct {
    int n_args, workers, n_chunks;
    kiln_dnnl_split_arg args[KILN_SPLIT_MAX_ARGS];
    int64_t rows, chunk;                   /* rows per chunk; the last one may have fewer */
    int64_t stride[KILN_SPLIT_MAX_ARGS];   /* ROWS: bytes from one row to the next */
    size_t sum_off[KILN_SPLIT_MAX_ARGS];   /* SUM: byte offset in a worker's partial buffer */
    size_t sum_floats[KILN_SPLIT_MAX_ARGS]; /* SUM: floats of the result (padding included) */
    size_t partial_bytes, scratch_bytes;   /* per worker */
    dnnl_primitive_t prim[2];              /* full chunks, the tail chunk (NULL when none) */
    dnnl_memory_t *mem;                    /* [workers][2][n_args + 1] (last: scratchpad) */
    dnnl_stream_t *streams;                /* [workers] */
    char *partial, *scratch;               /* [workers][partial_bytes], [workers][scratch_bytes] */
} kiln_dnnl_split;

/* Cuts `rows` rows (row_work multiply-adds each) into chunks and makes the chunk primitives
 * for up to `workers` threads. */
kiln_status kiln_dnnl_split_init(kiln_dnnl_split *s, int64_t rows, double row_work, int workers,
                                 const kiln_dnnl_split_arg *args, int n_args,
                                 kiln_dnnl_split_make make, void *ctx, const char *what);
/* Runs it: ptr[i] is argument i's whole tensor (ROWS: its first row); a SUM result is
 * overwritten, or added to when add[i] (add may be NULL). */
kiln_status kiln_dnnl_split_exec(kiln_dnnl_split *s, void *const *ptr, const unsigned char *add);
void kiln_dnnl_split_release(kiln_dnnl_split *s);
/* md with dims[axis] (and its padded size) set to rows; strides unchanged. */
dnnl_memory_desc_t kiln_dnnl_md_rows(const dnnl_memory_desc_t *md, int axis, int64_t rows);
/* Appends post-ops (as kiln_dnnl_attr) to an existing attribute. */
void kiln_dnnl_attr_post_ops(dnnl_primitive_attr_t attr, dnnl_alg_kind_t eltwise, float alpha, int sum);
/* The data handle of a memory object. */
void *kiln_dnnl_mem_ptr(dnnl_memory_t m);

#define CHECK_DNNL(call, what)                                                                     \
    do {                                                                                           \
        dnnl_status_t s_ = (call);                                                                 \
        if (s_ != dnnl_success)                                                                    \
            return kiln_error(KILN_ERR_BACKEND, "oneDNN %s failed (status %d)", what, (int)s_);     \
    } while (0)

#endif

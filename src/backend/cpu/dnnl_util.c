/* dnnl_util.c — see dnnl_util.h. */
#include "backend/cpu/dnnl_util.h"
#include "backend/ops.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
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
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    kiln_dnnl_attr_post_ops(attr, eltwise, alpha, sum);
    return attr;
}

void kiln_dnnl_attr_post_ops(dnnl_primitive_attr_t attr, dnnl_alg_kind_t eltwise, float alpha, int sum) {
    if (!eltwise && !sum) return;
    dnnl_post_ops_t po = NULL;
    dnnl_post_ops_create(&po);
    if (sum) dnnl_post_ops_append_sum(po, 1.0f);
    if (eltwise) dnnl_post_ops_append_eltwise(po, 1.0f, eltwise, alpha, 0.0f);
    dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
}

void *kiln_dnnl_mem_ptr(dnnl_memory_t m) {
    void *p = NULL;
    dnnl_memory_get_data_handle(m, &p);
    return p;
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
    case KILN_ACT_RELU6: *alpha = 6.0f; return dnnl_eltwise_bounded_relu; /* min(max(x, 0), 6) */
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

/* ---- split executor (see dnnl_util.h) ---- */

dnnl_memory_desc_t kiln_dnnl_md_rows(const dnnl_memory_desc_t *md, int axis, int64_t rows) {
    dnnl_memory_desc_t r = *md;
    r.dims[axis] = rows;
    r.padded_dims[axis] = rows;
    return r;
}

/* The primitive descriptor of a chunk of `rows` rows, made with one thread. */
static kiln_status split_pd(kiln_dnnl_split_make make, void *ctx, int64_t rows,
                            dnnl_primitive_desc_t *pd, const char *what) {
    dnnl_primitive_attr_t attr = NULL;
    CHECK_DNNL(dnnl_primitive_attr_create(&attr), what);
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    kiln_status st = make(ctx, rows, attr, pd);
    omp_set_num_threads(threads);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

/* The primitive of pd (made with one thread), checking what the split needs of its layouts. */
static kiln_status split_check(kiln_dnnl_split *s, dnnl_primitive_desc_t pd, int k, const char *what) {
    for (int i = 0; i < s->n_args; i++) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, s->args[i].arg);
        if (!md || md->ndims == 0) return kiln_error(KILN_ERR_BACKEND, "%s: argument %d is not one of the primitive's", what, s->args[i].arg);
        if (s->args[i].role == KILN_SPLIT_ROWS) {
            const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
            int ax = s->args[i].axis, blocked = md->format_kind != dnnl_blocked || md->offset0 != 0;
            for (int j = 0; j < b->inner_nblks; j++) blocked |= b->inner_idxs[j] == ax;
            int64_t stride = (int64_t)(b->strides[ax] * (int64_t)sizeof(float));
            if (blocked || (k && stride != s->stride[i]))
                return kiln_error(KILN_ERR_BACKEND, "%s: argument %d cannot be cut into rows along axis %d", what,
                                  s->args[i].arg, ax);
            s->stride[i] = stride;
        } else if (s->args[i].role == KILN_SPLIT_SUM) {
            size_t n = kiln_dnnl_md_bytes(md) / sizeof(float);
            if (k && n != s->sum_floats[i])
                return kiln_error(KILN_ERR_BACKEND, "%s: the chunks' results have different layouts", what);
            s->sum_floats[i] = n;
        }
    }
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sb = sp ? kiln_dnnl_md_bytes(sp) : 0;
    if (sb > s->scratch_bytes) s->scratch_bytes = sb;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    kiln_status st = kiln_dnnl_primitive_from_pd(pd, &s->prim[k], what);
    omp_set_num_threads(threads);
    return st;
}

kiln_status kiln_dnnl_split_init(kiln_dnnl_split *s, int64_t rows, double row_work, int workers,
                                 const kiln_dnnl_split_arg *args, int n_args, kiln_dnnl_split_make make, void *ctx,
                                 const char *what) {
    memset(s, 0, sizeof *s);
    if (n_args > KILN_SPLIT_MAX_ARGS || rows < 1) return kiln_error(KILN_ERR_INVALID, "%s: bad split", what);
    memcpy(s->args, args, (size_t)n_args * sizeof *args);
    s->n_args = n_args;
    s->rows = rows;
    double chunks = rows * row_work / KILN_SPLIT_MIN_WORK; /* enough work per chunk to pay for it */
    int64_t most = chunks < 1 ? 1 : chunks > KILN_SPLIT_CHUNKS ? KILN_SPLIT_CHUNKS : (int64_t)chunks;
    s->chunk = (rows + most - 1) / most;
    s->n_chunks = (int)((rows + s->chunk - 1) / s->chunk);
    s->workers = workers < 1 ? 1 : workers > s->n_chunks ? s->n_chunks : workers;
    int64_t tail = rows - (int64_t)(s->n_chunks - 1) * s->chunk;
    dnnl_primitive_desc_t pd[2] = {NULL, NULL};
    kiln_status st = split_pd(make, ctx, s->chunk, &pd[0], what);
    if (!st) st = split_check(s, pd[0], 0, what);
    if (!st && tail != s->chunk && !(st = split_pd(make, ctx, tail, &pd[1], what))) st = split_check(s, pd[1], 1, what);
    for (int i = 0; !st && i < n_args; i++)
        if (args[i].role == KILN_SPLIT_SUM) {
            s->sum_off[i] = s->partial_bytes;
            s->partial_bytes += kiln_align_up(s->sum_floats[i] * sizeof(float));
        }
    size_t W = (size_t)s->workers, per = (size_t)n_args + 1;
    if (!st && (!(s->mem = calloc(W * 2 * per, sizeof *s->mem)) || !(s->streams = calloc(W, sizeof *s->streams)) ||
                (s->partial_bytes && !(s->partial = kiln_alloc(W * s->partial_bytes))) ||
                (s->scratch_bytes && !(s->scratch = kiln_alloc(W * kiln_align_up(s->scratch_bytes))))))
        st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", what);
    for (size_t w = 0; !st && w < W; w++) {
        if (dnnl_stream_create(&s->streams[w], kiln_dnnl_engine(), dnnl_stream_default_flags) != dnnl_success) {
            st = kiln_error(KILN_ERR_BACKEND, "oneDNN: cannot create a CPU stream");
            break;
        }
        for (int k = 0; !st && k < 2 && pd[k]; k++) {
            dnnl_memory_t *m = s->mem + (w * 2 + (size_t)k) * per;
            for (int i = 0; !st && i < n_args; i++)
                if (!(m[i] = kiln_dnnl_mem(dnnl_primitive_desc_query_md(pd[k], dnnl_query_exec_arg_md, args[i].arg),
                                           DNNL_MEMORY_NONE)))
                    st = KILN_ERR_BACKEND;
            const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd[k], dnnl_query_scratchpad_md, 0);
            if (!st && sp && kiln_dnnl_md_bytes(sp) &&
                !(m[n_args] = kiln_dnnl_mem(sp, s->scratch + w * kiln_align_up(s->scratch_bytes))))
                st = KILN_ERR_BACKEND;
        }
    }
    for (int k = 0; k < 2; k++)
        if (pd[k]) dnnl_primitive_desc_destroy(pd[k]);
    if (st) kiln_dnnl_split_release(s);
    return st;
}

/* Chunk c on worker w: its rows of the ROWS arguments, the worker's partial SUM buffers. */
static int split_chunk(kiln_dnnl_split *s, int w, int c, void *const *ptr) {
    int k = c == s->n_chunks - 1 && s->prim[1];
    int per = s->n_args + 1;
    dnnl_memory_t *m = s->mem + ((size_t)w * 2 + (size_t)k) * (size_t)per;
    dnnl_exec_arg_t a[KILN_SPLIT_MAX_ARGS + 1];
    int64_t r0 = (int64_t)c * s->chunk;
    for (int i = 0; i < s->n_args; i++) {
        const kiln_dnnl_split_arg *g = &s->args[i];
        if (g->role == KILN_SPLIT_ROWS)
            dnnl_memory_set_data_handle(m[i], (char *)ptr[i] + r0 * s->stride[i]);
        else if (g->role == KILN_SPLIT_SUM)
            dnnl_memory_set_data_handle(m[i], s->partial + (size_t)w * s->partial_bytes + s->sum_off[i]);
        a[i] = (dnnl_exec_arg_t){g->arg, m[i]};
    }
    int n = s->n_args;
    if (m[n]) a[n] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m[n]}, n++;
    return dnnl_primitive_execute(s->prim[k], s->streams[w], n, a) != dnnl_success ||
           dnnl_stream_wait(s->streams[w]) != dnnl_success;
}

kiln_status kiln_dnnl_split_exec(kiln_dnnl_split *s, void *const *ptr, const unsigned char *add) {
    int per = s->n_args + 1, failed = 0;
    for (int w = 0; w < s->workers; w++) /* the same weights for every chunk, set once */
        for (int k = 0; k < 2 && s->prim[k]; k++)
            for (int i = 0; i < s->n_args; i++)
                if (s->args[i].role == KILN_SPLIT_WHOLE)
                    dnnl_memory_set_data_handle(s->mem[((size_t)w * 2 + (size_t)k) * (size_t)per + (size_t)i], ptr[i]);
    int sums = 0;
    for (int i = 0; i < s->n_args; i++) sums += s->args[i].role == KILN_SPLIT_SUM;
    /* Each chunk runs on one thread: oneDNN sees one (omp_in_parallel, and one thread for any
     * region it would open), also when one worker runs everything (then the region is inactive;
     * the setting ends with it). */
    if (!sums) { /* row-wise results only: the chunks in any order */
#pragma omp parallel num_threads(s->workers) if (s->workers > 1)
        {
            omp_set_num_threads(1);
#pragma omp for schedule(static)
            for (int c = 0; c < s->n_chunks; c++)
                if (split_chunk(s, omp_get_thread_num(), c, ptr)) {
#pragma omp atomic write
                    failed = 1;
                }
        }
        return failed ? kiln_error(KILN_ERR_BACKEND, "oneDNN: a chunk of a deterministic primitive failed") : KILN_OK;
    }
#pragma omp parallel num_threads(s->workers) if (s->workers > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        omp_set_num_threads(1);
        for (int c0 = 0; c0 < s->n_chunks; c0 += T) { /* a wave: chunks c0 .. c0 + T - 1 */
            if (c0 + t < s->n_chunks && split_chunk(s, t, c0 + t, ptr)) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp barrier
            int n = s->n_chunks - c0 < T ? s->n_chunks - c0 : T;
            for (int i = 0; i < s->n_args; i++) {
                if (s->args[i].role != KILN_SPLIT_SUM) continue;
                float *dst = ptr[i];
                int64_t len = (int64_t)s->sum_floats[i];
                int first = c0 == 0 && !(add && add[i]);
#pragma omp for schedule(static)
                for (int64_t e = 0; e < len; e++) {
                    float v = first ? 0.0f : dst[e];
                    for (int k = 0; k < n; k++)
                        v += ((const float *)(s->partial + (size_t)k * s->partial_bytes + s->sum_off[i]))[e];
                    dst[e] = v;
                }
            }
        }
    }
    return failed ? kiln_error(KILN_ERR_BACKEND, "oneDNN: a chunk of a deterministic primitive failed") : KILN_OK;
}

void kiln_dnnl_split_release(kiln_dnnl_split *s) {
    size_t per = (size_t)s->n_args + 1;
    for (int k = 0; k < 2; k++)
        if (s->prim[k]) dnnl_primitive_destroy(s->prim[k]);
    for (size_t i = 0; s->mem && i < (size_t)s->workers * 2 * per; i++)
        if (s->mem[i]) dnnl_memory_destroy(s->mem[i]);
    for (int w = 0; s->streams && w < s->workers; w++)
        if (s->streams[w]) dnnl_stream_destroy(s->streams[w]);
    free(s->mem);
    free(s->streams);
    kiln_free(s->partial);
    kiln_free(s->scratch);
    memset(s, 0, sizeof *s);
}

/* embedding.c — table lookup: ids (I32 or I64) [B, ...] -> rows of embeddings [B, ..., dim].
 *
 * Inputs: ids [P] (all axes folded: P positions), table [V, D]; y [P, D], y[p] = table[ids[p]].
 * Forward first checks every id (one pass over P integers) and fails with KILN_ERR_INVALID
 * naming the ids input, the offending id and its position before writing anything; then it
 * copies rows, positions in parallel.
 * Backward scatter-adds: dtable[ids[p]] += dy[p] for every p (repeated ids accumulate). When
 * the plan says overwrite, the whole table gradient is zeroed first: rows no id touched have
 * gradient 0. Threads split the columns of the table, never the positions, so no two threads
 * write one element and each element sums its positions in order (deterministic). The ids
 * never get a gradient (integers; the plan gives none).
 */
#include <stdio.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/attrs.h"

#define EMB_PAR  32768 /* elements below which loops run on one thread */
#define EMB_COLS 64    /* columns per thread block in backward */

static kiln_status emb_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                             kiln_dtype *dt) {
    const kiln_embedding_attr *a = KILN_ATTR(n, kiln_embedding_attr);
    char buf[512];
    kiln_dtype idt = n->in[0]->dtype;
    if (idt != KILN_I32 && idt != KILN_I64)
        return kiln_error(KILN_ERR_INVALID, "%s: ids must be I32 or I64, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf), kiln_dtype_name(idt));
    if (in[1].ndim != 2 || in[1].dims[0] != a->vocab || in[1].dims[1] != a->dim)
        return kiln_error(KILN_ERR_SHAPE, "%s: the table must be [%d, %d] (vocab, dim)",
                          kiln_node_describe(n, in, buf, sizeof buf), a->vocab, a->dim);
    if (in[0].ndim < 1 || in[0].ndim >= KILN_MAX_DIMS)
        return kiln_error(KILN_ERR_SHAPE, "%s: ids need 1 to %d dims (the output adds one)",
                          kiln_node_describe(n, in, buf, sizeof buf), KILN_MAX_DIMS - 1);
    *out = in[0];
    out->dims[out->ndim++] = a->dim;
    *dt = KILN_F32;
    return KILN_OK;
}

static inline int64_t id_at(const void *ids, int is64, int64_t p) {
    return is64 ? ((const int64_t *)ids)[p] : (int64_t)((const int32_t *)ids)[p];
}

/* "[1, 3]": the coordinates of flat position p in shape s. */
static void coords(const kiln_shape *s, int64_t p, char *buf, size_t cap) {
    int64_t c[KILN_MAX_DIMS];
    for (int d = s->ndim - 1; d >= 0; d--) c[d] = p % s->dims[d], p /= s->dims[d];
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < s->ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "", (long long)c[d]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

static kiln_status emb_forward(kiln_inst *x, const kiln_run *r) {
    const kiln_inst *ids_in = x->in[0];
    const void *ids = ids_in->val; /* [P] */
    const int is64 = ids_in->dtype == KILN_I64;
    const float *table = x->in[1]->val; /* [V, D] */
    float *Y = x->val;                  /* [P, D] */
    const int64_t P = ids_in->numel, V = x->in[1]->shape.dims[0], D = x->in[1]->shape.dims[1];
    for (int64_t p = 0; p < P; p++) {
        int64_t id = id_at(ids, is64, p);
        if (id < 0 || id >= V) {
            char at[96], sh[96];
            coords(&ids_in->shape, p, at, sizeof at);
            return kiln_error(KILN_ERR_INVALID,
                              "id %lld at %s%s (flat position %lld of ids %s) is outside the "
                              "vocabulary [0, %lld)",
                              (long long)id, ids_in->node->name, at, (long long)p,
                              kiln_shape_str(&ids_in->shape, sh, sizeof sh), (long long)V);
        }
    }
#pragma omp parallel for schedule(static) if (P * D > EMB_PAR)
    for (int64_t p = 0; p < P; p++)
        memcpy(Y + p * D, table + id_at(ids, is64, p) * D, (size_t)D * sizeof *Y);
    (void)r;
    return KILN_OK;
}

static void emb_backward(kiln_inst *x, const kiln_run *r) {
    float *dT = x->in[1]->grad; /* [V, D] */
    if (!dT) return;
    const void *ids = x->in[0]->val;
    const int is64 = x->in[0]->dtype == KILN_I64;
    const float *dY = x->grad; /* [P, D] */
    const int64_t P = x->in[0]->numel, V = x->in[1]->shape.dims[0], D = x->in[1]->shape.dims[1];
    const int64_t nblk = (D + EMB_COLS - 1) / EMB_COLS;
    if (!x->accum[1]) memset(dT, 0, (size_t)(V * D) * sizeof *dT);
#pragma omp parallel for schedule(static) if (P * D > EMB_PAR && nblk > 1)
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t j0 = b * EMB_COLS, w = D - j0 < EMB_COLS ? D - j0 : EMB_COLS;
        for (int64_t p = 0; p < P; p++) {
            int64_t id = id_at(ids, is64, p);
            if (id < 0 || id >= V) continue; /* only after a failed forward; never write outside */
            float *dst = dT + id * D + j0;
            const float *src = dY + p * D + j0;
#pragma omp simd
            for (int64_t j = 0; j < w; j++) dst[j] += src[j];
        }
    }
    (void)r;
}

const kiln_op kiln_op_embedding = {
    .name = "embedding",
    .backend = &kiln_backend_cpu,
    .infer = emb_infer,
    .forward = emb_forward,
    .backward = emb_backward,
};

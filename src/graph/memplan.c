/* memplan.c — assigning arena offsets to buffers with known lifetimes.
 *
 * Each request is a buffer of `bytes` live over the closed step interval [start, end]. Two
 * requests may share bytes only if their intervals do not overlap. Greedy by size (the strategy
 * TFLite's arena planner uses): place the largest first, each at the lowest 64-byte aligned
 * offset that does not collide with an already placed request whose lifetime overlaps. O(n^2),
 * run once per plan compile.
 */
#include "graph/memplan.h"

#include <stdlib.h>

#include "kiln/mem.h"

static int by_size_desc(const void *a, const void *b) {
    const kiln_mem_req *x = *(kiln_mem_req *const *)a, *y = *(kiln_mem_req *const *)b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return (x->start > y->start) - (x->start < y->start);
}

static int by_offset(const void *a, const void *b) {
    const kiln_mem_req *x = *(kiln_mem_req *const *)a, *y = *(kiln_mem_req *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

size_t kiln_memplan_assign(kiln_mem_req *reqs, int n) {
    if (n == 0) return 0;
    kiln_mem_req **order = malloc((size_t)n * sizeof *order), **placed = malloc((size_t)n * sizeof *placed);
    if (!order || !placed) {
        free(order), free(placed);
        return (size_t)-1;
    }
    for (int i = 0; i < n; i++) order[i] = &reqs[i];
    qsort(order, (size_t)n, sizeof *order, by_size_desc);
    int n_placed = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        kiln_mem_req *r = order[i];
        size_t need = kiln_align_up(r->bytes ? r->bytes : 1), off = 0;
        /* placed[] is kept sorted by offset: scan for the first gap that fits */
        for (int j = 0; j < n_placed; j++) {
            kiln_mem_req *q = placed[j];
            if (q->end < r->start || q->start > r->end) continue; /* lifetimes disjoint */
            if (off + need <= q->offset) break;
            size_t q_end = q->offset + kiln_align_up(q->bytes ? q->bytes : 1);
            if (q_end > off) off = q_end;
        }
        r->offset = off;
        if (off + need > total) total = off + need;
        placed[n_placed++] = r;
        qsort(placed, (size_t)n_placed, sizeof *placed, by_offset);
    }
    free(order), free(placed);
    return total;
}

/* infer.c — running rows through a loaded version (see include/kiln/serve.h, "Inference").
 *
 * Every thread that runs inference gets a slot index once (a process-wide counter, so the
 * HTTP workers and the batch threads spread over a version's slots); a version has
 * kiln_server.n_slots slots, each with its own plans behind its own mutex, so threads on
 * different slots never wait for each other and a plan only ever runs on one thread at a time.
 * Bucket b holds a plan of batch 1 << b; r rows run on the smallest bucket >= r (the padding
 * rows are zeros and their outputs are dropped), more than max_rows rows in chunks.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/graph.h"
#include "serve/serve_internal.h"

static _Thread_local int thread_slot = -1;
static _Thread_local int thread_ready;
static atomic_int next_slot;

void serve_thread_setup(kiln_server *s) {
    if (thread_ready) return;
    thread_ready = 1;
    omp_set_num_threads(s->cfg.intra_op_threads > 0 ? s->cfg.intra_op_threads : 1);
}

static exec_slot *my_slot(served_version *v) {
    if (thread_slot < 0) thread_slot = atomic_fetch_add(&next_slot, 1) & 0x3fffffff;
    return &v->slots[thread_slot % v->n_slots];
}

static int bucket_of(int64_t rows) {
    int b = 0;
    while (((int64_t)1 << b) < rows) b++;
    return b;
}

static kiln_plan *slot_plan(served_version *v, exec_slot *sl, int b) {
    if (!sl->plans[b]) sl->plans[b] = kiln_servable_plan_new(v->sv, 1 << b);
    return sl->plans[b];
}

kiln_status serve_infer(kiln_server *s, served_version *v, float *x, int64_t rows, float *out,
                        float *probs) {
    serve_thread_setup(s);
    kiln_status st = kiln_servable_preprocess(v->sv, x, x, rows);
    if (st) return st;
    exec_slot *sl = my_slot(v);
    int max_b = bucket_of(s->max_rows);
    pthread_mutex_lock(&sl->mu);
    for (int64_t off = 0; off < rows && !st;) {
        int64_t n = rows - off;
        int b = n >= ((int64_t)1 << max_b) ? max_b : bucket_of(n);
        if (n > ((int64_t)1 << b)) n = (int64_t)1 << b;
        kiln_plan *p = slot_plan(v, sl, b);
        if (!p) {
            st = KILN_ERR_BACKEND;
            break;
        }
        st = kiln_servable_predict(v->sv, p, x + off * v->in_row, (int)n, out + off * v->out_row,
                                   probs ? probs + off * v->out_row : NULL);
        off += n;
    }
    pthread_mutex_unlock(&sl->mu);
    if (!st && v->model->batch_sizes) kiln_prom_observe(v->model->batch_sizes, (double)rows);
    return st;
}

kiln_status serve_warm_up(kiln_server *s, served_version *v) {
    float *x = calloc((size_t)v->in_row, sizeof *x), *y = malloc((size_t)v->out_row * sizeof *y),
          *p = malloc((size_t)v->out_row * sizeof *p);
    kiln_status st = x && y && p ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "warm-up: out of memory");
    for (int i = 0; i < v->n_slots && !st; i++) {
        kiln_plan *plan = slot_plan(v, &v->slots[i], 0);
        if (!plan)
            st = KILN_ERR_BACKEND;
        else
            st = kiln_servable_predict(v->sv, plan, x, 1, y, v->has_probs ? p : NULL);
    }
    free(x);
    free(y);
    free(p);
    return st;
}

void serve_slots_free(served_version *v) {
    for (int i = 0; v->slots && i < v->n_slots; i++) {
        for (int b = 0; b < SERVE_MAX_BUCKETS; b++) kiln_plan_free(v->slots[i].plans[b]);
        pthread_mutex_destroy(&v->slots[i].mu);
    }
    free(v->slots);
    v->slots = NULL;
}

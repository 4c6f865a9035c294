/* batcher.c — dynamic batching (include/kiln/serve.h, "Batching").
 *
 * One FIFO of parked jobs for the whole server, num_batch_threads threads taking from it. A
 * thread looks at the oldest job J: it takes J and the queued jobs of the same version (in
 * arrival order, as long as they fit in max_batch_size rows) when they fill a batch, or when
 * batch_timeout_micros have passed since J arrived; otherwise it sleeps until that deadline or
 * the next arrival. So a lone request waits at most the timeout, a busy server runs full
 * batches, and jobs of different versions (a swap in progress) never share a batch. A job
 * larger than max_batch_size runs alone. Capacity is counted in rows: submit refuses a job that
 * would take the queue over max_enqueued_batches * max_batch_size rows (answered 429).
 *
 * A batch of several jobs is copied into the thread's own buffer [rows, in_row], run once,
 * and its outputs copied back to each job; a single job runs on its own buffers. Stopping lets
 * the threads drain the queue first, so no parked request is left unanswered.
 */
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

struct batcher {
    kiln_server *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_job *head, *tail; /* FIFO by arrival (under mu) */
    int64_t queued_rows, capacity_rows;
    int max_batch;
    int64_t timeout_ns;
    int flushing; /* a stop is coming: every batch is due at once */
    int stopping; /* no more jobs; the threads exit when the queue is empty */
    int n_threads;
    pthread_t *threads;
};

static int64_t ns_between(const struct timespec *a, const struct timespec *b) {
    return (int64_t)(b->tv_sec - a->tv_sec) * 1000000000 + (b->tv_nsec - a->tv_nsec);
}

int serve_batcher_submit(batcher *b, serve_job *j, const kiln_http_request *req) {
    pthread_mutex_lock(&b->mu);
    int full = b->stopping || b->queued_rows + j->rows > b->capacity_rows;
    /* A job larger than the whole queue still gets in when the queue is empty. */
    if (full && !b->stopping && b->queued_rows == 0) full = 0;
    if (!full) b->queued_rows += j->rows;
    pthread_mutex_unlock(&b->mu);
    if (full) return -1;
    j->token = kiln_http_defer(req);
    clock_gettime(CLOCK_MONOTONIC, &j->queued);
    pthread_mutex_lock(&b->mu);
    j->next = NULL;
    if (b->tail)
        b->tail->next = j;
    else
        b->head = j;
    b->tail = j;
    kiln_prom_set(b->srv->queue_rows, (double)b->queued_rows);
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

/* Under mu: unlinks and returns the jobs forming the next batch when it is due (see the top of
 * the file), else NULL with *wait_ns how long to sleep (-1: until signalled). */
static serve_job *take_batch(batcher *b, int64_t *wait_ns) {
    serve_job *first = b->head;
    *wait_ns = -1;
    if (!first) return NULL;
    int64_t rows = 0;
    for (serve_job *j = first; j; j = j->next)
        if (j->v == first->v && rows + j->rows <= b->max_batch) rows += j->rows;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t age = ns_between(&first->queued, &now);
    int due = first->rows >= b->max_batch || rows >= b->max_batch || age >= b->timeout_ns ||
              b->flushing || b->stopping;
    if (!due) {
        *wait_ns = b->timeout_ns - age;
        return NULL;
    }
    /* Unlink first and the same-version jobs that fit. */
    serve_job *batch = NULL, **btail = &batch, **link = &b->head, *prev = NULL;
    rows = 0;
    while (*link) {
        serve_job *j = *link;
        int take = j == first || (j->v == first->v && rows + j->rows <= b->max_batch &&
                                  first->rows < b->max_batch);
        if (take) {
            rows += j->rows;
            *link = j->next;
            j->next = NULL;
            *btail = j;
            btail = &j->next;
            b->queued_rows -= j->rows;
        } else {
            prev = j;
            link = &j->next;
        }
    }
    b->tail = prev;
    kiln_prom_set(b->srv->queue_rows, (double)b->queued_rows);
    return batch;
}

/* Thread-local scratch for multi-job batches. */
typedef struct {
    float *x, *out, *probs; /* [cap_x], [cap_out], [cap_probs] */
    int64_t cap_x, cap_out, cap_probs;
} scratch;

static int grow(float **p, int64_t *cap, int64_t n) {
    if (n <= *cap) return 0;
    float *q = realloc(*p, (size_t)n * sizeof *q);
    if (!q) return -1;
    *p = q, *cap = n;
    return 0;
}

static void answer(serve_job *j, kiln_status st) {
    kiln_http_deferred *token = j->token;
    kiln_http_response resp = {.status = 200, .content_type = "application/json"};
    serve_job_finish(j, &resp, st ? 500 : 0, st ? kiln_last_error() : NULL);
    kiln_http_resume(token, &resp);
}

static void run_batch(batcher *b, serve_job *batch, scratch *sc) {
    kiln_server *s = b->srv;
    served_version *v = batch->v;
    kiln_status st;
    if (!batch->next) {
        st = serve_infer(s, v, batch->x, batch->rows, batch->out, batch->probs);
        answer(batch, st);
        return;
    }
    int64_t rows = 0;
    for (serve_job *j = batch; j; j = j->next) rows += j->rows;
    st = grow(&sc->x, &sc->cap_x, rows * v->in_row) ||
                 grow(&sc->out, &sc->cap_out, rows * v->out_row) ||
                 (v->has_probs && grow(&sc->probs, &sc->cap_probs, rows * v->out_row))
             ? kiln_error(KILN_ERR_NOMEM, "batch of %lld rows: out of memory", (long long)rows)
             : KILN_OK;
    int64_t off = 0;
    for (serve_job *j = batch; j && !st; j = j->next) {
        memcpy(sc->x + off * v->in_row, j->x, (size_t)(j->rows * v->in_row) * sizeof *sc->x);
        off += j->rows;
    }
    if (!st) st = serve_infer(s, v, sc->x, rows, sc->out, v->has_probs ? sc->probs : NULL);
    off = 0;
    for (serve_job *j = batch, *next; j; j = next) {
        next = j->next;
        if (!st) {
            memcpy(j->out, sc->out + off * v->out_row, (size_t)(j->rows * v->out_row) * sizeof *j->out);
            if (v->has_probs)
                memcpy(j->probs, sc->probs + off * v->out_row,
                       (size_t)(j->rows * v->out_row) * sizeof *j->probs);
        }
        off += j->rows;
        answer(j, st);
    }
}

static void *batch_thread(void *arg) {
    batcher *b = arg;
    serve_thread_setup(b->srv);
    scratch sc = {0};
    pthread_mutex_lock(&b->mu);
    for (;;) {
        int64_t wait_ns;
        serve_job *batch = take_batch(b, &wait_ns);
        if (batch) {
            pthread_mutex_unlock(&b->mu);
            run_batch(b, batch, &sc);
            pthread_mutex_lock(&b->mu);
            continue;
        }
        if (b->stopping && !b->head) break;
        if (wait_ns < 0) {
            pthread_cond_wait(&b->cv, &b->mu);
        } else {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            int64_t ns = until.tv_nsec + wait_ns;
            until.tv_sec += ns / 1000000000;
            until.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&b->cv, &b->mu, &until);
        }
    }
    pthread_mutex_unlock(&b->mu);
    free(sc.x);
    free(sc.out);
    free(sc.probs);
    return NULL;
}

kiln_status serve_batcher_start(kiln_server *s) {
    const kiln_serve_batching *c = &s->cfg.batching;
    batcher *b = calloc(1, sizeof *b);
    if (!b) return kiln_error(KILN_ERR_NOMEM, "serve: out of memory");
    b->srv = s;
    b->max_batch = c->max_batch_size;
    b->timeout_ns = c->batch_timeout_micros * 1000;
    b->capacity_rows = (int64_t)c->max_enqueued_batches * c->max_batch_size;
    b->n_threads = c->num_batch_threads;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    b->threads = calloc((size_t)b->n_threads, sizeof *b->threads);
    if (!b->threads) {
        free(b);
        return kiln_error(KILN_ERR_NOMEM, "serve: out of memory");
    }
    s->batcher = b;
    for (int i = 0; i < b->n_threads; i++)
        if (pthread_create(&b->threads[i], NULL, batch_thread, b)) {
            b->n_threads = i;
            return kiln_error(KILN_ERR_IO, "serve: cannot start batch thread %d", i);
        }
    return KILN_OK;
}

void serve_batcher_flush(batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->flushing = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void serve_batcher_stop(batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < b->n_threads; i++) pthread_join(b->threads[i], NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b->threads);
    free(b);
}

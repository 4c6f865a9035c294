/* loader.c — batches from a dataset: per-epoch seeded order, normalization, the final partial
 * batch, and a prefetch thread (see kiln/data.h).
 *
 * Position: (epoch, batch) is the next batch kiln_loader_next delivers; batch == nb (batches
 * per epoch) is "end of epoch", where next returns 0 and moves to (epoch + 1, 0). Batch b of
 * epoch e holds rows order_e[b * bs .. min(n, (b + 1) * bs)), order_e = the identity or
 * kiln_data_permutation(n, seed, KILN_DATA_STREAM_SHUFFLE + e); nothing depends on earlier
 * epochs, so seek is O(1) plus one permutation.
 *
 * Every batch is made by fill(), the one function that gathers, converts and normalizes; with
 * prefetch it runs on the worker thread into the loader's slot, and next copies the slot out.
 * Same code, same inputs: batches are byte-identical with prefetch on or off. In-memory rows are
 * read where they lie; a source's rows (kiln_dataset_from_source) are read one at a time into
 * the loader's row buffer first. A row that cannot be read fails the batch: the worker keeps the
 * status and message (messages are per thread) and next() reports them on the caller's thread,
 * returning -1 without moving.
 *
 * Threading (prefetch): one worker, one slot, one job at a time. The worker touches the slot
 * and the permutation cache only between taking a job (job = 1 -> busy = 1) and finishing it
 * (busy = 0, ready = 1); the caller touches them only after wait_idle() has seen job == 0 and
 * busy == 0 under the mutex. The mutex hand-offs order every access, so no field is shared
 * without it. The caller's position (epoch, batch) is the caller's alone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

struct kiln_loader {
    kiln_dataset *ds; /* one reference held */
    int64_t bs, nb;   /* batch size, batches per epoch */
    int shuffle;
    uint64_t seed;
    float scale;
    int channels;         /* 0: no mean/std */
    float *mean, *std;    /* [channels] */
    int64_t inner;        /* elements per channel in one row: x_numel / channels */
    int64_t epoch, batch; /* the next batch to deliver */
    int64_t *perm;        /* [n] the order of epoch perm_epoch (shuffle only) */
    void *row;            /* [row_bytes] a source's row as read (sources only) */
    int64_t perm_epoch;   /* -1: none yet */

    int prefetch;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake, done; /* worker waits on wake; caller on done */
    int quit, job, busy, ready;
    int64_t job_epoch, job_batch;   /* the pending job */
    int64_t slot_epoch, slot_batch; /* what the slot holds when ready */
    int slot_rows;
    kiln_status slot_st; /* why the slot's batch failed, with its message */
    char slot_err[1024];
    float *slot_x; /* [bs, x_numel] */
    void *slot_y;  /* [bs, y_width] int32 or float; NULL when unlabeled */
};

static const int64_t *order_of(kiln_loader *l, int64_t epoch) {
    if (!l->shuffle) return NULL;
    if (l->perm_epoch != epoch) {
        kiln_data_permutation(l->ds->n, l->seed, KILN_DATA_STREAM_SHUFFLE + (uint64_t)epoch,
                              l->perm); /* cannot fail: every dataset has 1 <= n <= UINT32_MAX */
        l->perm_epoch = epoch;
    }
    return l->perm;
}

/* Writes batch b of epoch `epoch` into x [bs, m] and y [bs, y_width] (may be NULL) and its row
 * count into *rows. x = (v * scale - mean[c]) / std[c] for channel c, or v * scale without
 * mean/std. Fails only when a source row cannot be read. */
static kiln_status fill(kiln_loader *l, int64_t epoch, int64_t b, float *x, void *y, int *rows) {
    const kiln_dataset *ds = l->ds;
    const int64_t *order = order_of(l, epoch);
    int64_t start = b * l->bs, n = ds->n - start < l->bs ? ds->n - start : l->bs;
    int64_t m = ds->x_numel, w = ds->y_width;
    float sc = l->scale;
    *rows = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t r = kiln_ds_row(ds, order ? order[start + k] : start + k);
        float *dx = x + k * m; /* [m] */
        const void *src = ds->x ? (const char *)ds->x + r * ds->row_bytes : l->row;
        if (!ds->x) {
            kiln_status st = kiln_ds_read(ds, r, l->row);
            if (st) return st;
        }
        if (ds->x_dtype == KILN_U8) {
            const uint8_t *sx = src;
            for (int64_t j = 0; j < m; j++) dx[j] = (float)sx[j] * sc;
        } else if (sc != 1.0f) {
            const float *sx = src;
            for (int64_t j = 0; j < m; j++) dx[j] = sx[j] * sc;
        } else {
            memcpy(dx, src, (size_t)m * sizeof *dx);
        }
        for (int c = 0; c < l->channels; c++) {
            float mu = l->mean[c], sd = l->std[c], *p = dx + c * l->inner;
            for (int64_t j = 0; j < l->inner; j++) p[j] = (p[j] - mu) / sd;
        }
        if (y && ds->y)
            memcpy((char *)y + k * w * 4, (const char *)ds->y + r * w * 4, (size_t)w * 4);
    }
    *rows = (int)n;
    return KILN_OK;
}

static void *worker(void *arg) {
    kiln_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !l->job) pthread_cond_wait(&l->wake, &l->mu);
        if (l->quit) break;
        int64_t e = l->job_epoch, b = l->job_batch;
        l->job = 0, l->busy = 1, l->ready = 0;
        pthread_mutex_unlock(&l->mu);
        int rows;
        kiln_status st = fill(l, e, b, l->slot_x, l->slot_y, &rows);
        if (st) snprintf(l->slot_err, sizeof l->slot_err, "%s", kiln_last_error());
        pthread_mutex_lock(&l->mu);
        l->busy = 0, l->ready = 1;
        l->slot_epoch = e, l->slot_batch = b, l->slot_rows = rows, l->slot_st = st;
        pthread_cond_signal(&l->done);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Waits until the worker holds no job; afterwards the caller may touch the slot and perm. */
static void wait_idle(kiln_loader *l) {
    pthread_mutex_lock(&l->mu);
    while (l->job || l->busy) pthread_cond_wait(&l->done, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

/* Asks the worker for the batch the next kiln_loader_next will deliver: the one at the
 * position, or (epoch + 1, 0) when the position is the end of an epoch. */
static void post_next(kiln_loader *l) {
    int64_t e = l->epoch, b = l->batch;
    if (b >= l->nb) e++, b = 0;
    pthread_mutex_lock(&l->mu);
    l->job = 1, l->job_epoch = e, l->job_batch = b;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->mu);
}

kiln_status kiln_loader_new(const kiln_dataset *ds, const kiln_loader_config *c,
                            kiln_loader **out) {
    *out = NULL;
    if (!ds || !c) return kiln_error(KILN_ERR_INVALID, "loader: no dataset or config");
    int64_t n = ds->n, bs = c->batch_size, m = ds->x_numel;
    const kiln_normalize *nm = &c->norm;
    if (bs < 1 || bs > (int64_t)1 << 30)
        return kiln_error(KILN_ERR_INVALID, "loader: batch_size %lld is not in [1, 2^30]",
                          (long long)bs);
    if (c->drop_last && n < bs)
        return kiln_error(KILN_ERR_INVALID,
                          "loader: drop_last with %lld rows and batch_size %lld leaves no batch",
                          (long long)n, (long long)bs);
    char sbuf[96];
    if (nm->channels < 0 || (nm->channels && nm->channels != ds->x_shape.dims[0]))
        return kiln_error(KILN_ERR_SHAPE,
                          "loader: normalize has %d channels, but features %s have %lld on their "
                          "first axis (axis 1 of a batch)",
                          nm->channels, kiln_shape_str(&ds->x_shape, sbuf, sizeof sbuf),
                          (long long)ds->x_shape.dims[0]);
    if (nm->channels && (!nm->mean || !nm->std))
        return kiln_error(KILN_ERR_INVALID, "loader: normalize has %d channels but no %s",
                          nm->channels, nm->mean ? "std" : "mean");
    for (int k = 0; k < nm->channels; k++)
        if (!(nm->std[k] > 0) || !(nm->mean[k] == nm->mean[k]))
            return kiln_error(KILN_ERR_INVALID,
                              "loader: normalize channel %d has mean %g std %g (std must be > 0)",
                              k, nm->mean[k], nm->std[k]);
    if (!(nm->scale == nm->scale))
        return kiln_error(KILN_ERR_INVALID, "loader: normalize scale is NaN");

    kiln_loader *l = calloc(1, sizeof *l);
    if (!l) return kiln_error(KILN_ERR_NOMEM, "loader: out of memory");
    l->ds = (kiln_dataset *)ds; /* the reference count is mutable */
    atomic_fetch_add(&l->ds->refs, 1);
    l->bs = bs;
    l->nb = c->drop_last ? n / bs : (n + bs - 1) / bs;
    l->shuffle = c->shuffle, l->seed = c->seed;
    l->scale = nm->scale != 0 ? nm->scale : 1.0f;
    l->channels = nm->channels;
    l->inner = nm->channels ? m / nm->channels : m;
    l->perm_epoch = -1;
    int ok = 1;
    if (l->channels) {
        ok = (l->mean = malloc((size_t)l->channels * sizeof *l->mean)) &&
             (l->std = malloc((size_t)l->channels * sizeof *l->std));
        if (ok) {
            memcpy(l->mean, nm->mean, (size_t)l->channels * sizeof *l->mean);
            memcpy(l->std, nm->std, (size_t)l->channels * sizeof *l->std);
        }
    }
    if (ok && l->shuffle) ok = (l->perm = malloc((size_t)n * sizeof *l->perm)) != NULL;
    if (ok && !ds->x) ok = (l->row = malloc((size_t)ds->row_bytes)) != NULL;
    if (ok && c->prefetch) {
        ok = (l->slot_x = malloc((size_t)(bs * m) * sizeof *l->slot_x)) != NULL;
        if (ok && ds->y) ok = (l->slot_y = malloc((size_t)(bs * ds->y_width) * 4)) != NULL;
    }
    if (!ok) {
        kiln_loader_free(l);
        return kiln_error(KILN_ERR_NOMEM, "loader: out of memory (batch_size %lld)", (long long)bs);
    }
    if (c->prefetch) {
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->wake, NULL);
        pthread_cond_init(&l->done, NULL);
        int e = pthread_create(&l->thread, NULL, worker, l);
        if (e != 0) {
            pthread_cond_destroy(&l->done), pthread_cond_destroy(&l->wake);
            pthread_mutex_destroy(&l->mu);
            kiln_loader_free(l);
            return kiln_error(KILN_ERR_BACKEND, "loader: cannot start the prefetch thread: %s",
                              strerror(e));
        }
        l->prefetch = 1;
        post_next(l); /* batch 0 of epoch 0 */
    }
    *out = l;
    return KILN_OK;
}

void kiln_loader_free(kiln_loader *l) {
    if (!l) return;
    if (l->prefetch) {
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->done), pthread_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->mu);
    }
    free(l->slot_x), free(l->slot_y), free(l->perm), free(l->row), free(l->mean), free(l->std);
    kiln_dataset_free(l->ds);
    free(l);
}

int64_t kiln_loader_batches(const kiln_loader *l) {
    return l->nb;
}

void kiln_loader_position(const kiln_loader *l, int64_t *epoch, int64_t *batch) {
    if (epoch) *epoch = l->epoch;
    if (batch) *batch = l->batch;
}

int kiln_loader_next(kiln_loader *l, float *x, void *y, int *rows) {
    if (!l || !x || !rows) {
        kiln_error(KILN_ERR_INVALID, "loader_next: needs the loader, x and rows");
        return -1;
    }
    if (l->batch >= l->nb) { /* end of the epoch: the prefetched job is already (epoch + 1, 0) */
        l->epoch++, l->batch = 0;
        *rows = 0;
        return 0;
    }
    kiln_status st;
    if (!l->prefetch) {
        if ((st = fill(l, l->epoch, l->batch, x, y, rows))) return -1;
        l->batch++;
        return 1;
    }
    wait_idle(l);
    if (l->ready && l->slot_epoch == l->epoch && l->slot_batch == l->batch) {
        const kiln_dataset *ds = l->ds;
        if (l->slot_st) {
            l->ready = 0; /* a retry makes the batch again */
            kiln_error(l->slot_st, "%s", l->slot_err);
            return -1;
        }
        *rows = l->slot_rows;
        memcpy(x, l->slot_x, (size_t)(*rows * ds->x_numel) * sizeof *x);
        if (y && ds->y) memcpy(y, l->slot_y, (size_t)(*rows * ds->y_width) * 4);
    } else if ((st = fill(l, l->epoch, l->batch, x, y, rows))) { /* not expected, but correct */
        return -1;
    }
    l->batch++;
    post_next(l);
    return 1;
}

kiln_status kiln_loader_seek(kiln_loader *l, int64_t epoch, int64_t batch) {
    if (epoch < 0 || batch < 0 || batch > l->nb)
        return kiln_error(
            KILN_ERR_INVALID,
            "loader_seek: epoch %lld batch %lld is outside epochs >= 0 and batches [0, %lld]",
            (long long)epoch, (long long)batch, (long long)l->nb);
    if (l->prefetch) wait_idle(l);
    l->epoch = epoch, l->batch = batch;
    if (l->prefetch) post_next(l);
    return KILN_OK;
}

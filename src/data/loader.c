/* loader.c — batches from a dataset: per-epoch seeded order, augmentation of the training split,
 * normalization, the final partial batch, and a pool of worker threads that make batches ahead
 * of the caller (see kiln/data.h and kiln/augment.h).
 *
 * Position: (epoch, batch) is the next batch kiln_loader_next delivers; batch == nb (batches
 * per epoch) is "end of epoch", where next returns 0 and moves to (epoch + 1, 0). Batch b of
 * epoch e holds rows order_e[b * bs .. min(n, (b + 1) * bs)), order_e = the identity or
 * kiln_data_permutation(n, seed, KILN_DATA_STREAM_SHUFFLE + e); nothing depends on earlier
 * epochs, so seek is O(1) plus one permutation.
 *
 * One sample, one function. make_sample() reads row i (or, for random_resized_crop of an image
 * source, decodes its file and crops the decoded image), augments it as sample i of epoch e,
 * normalizes it and writes its label; finish_batch() mixes the batch (mixup, cutmix). Both are
 * pure functions of (dataset, config, epoch, batch), and nothing in a sample depends on which
 * thread made it or on the others of its batch until the mixing. So the bytes are the same for
 * any worker count, with prefetch or without, and after a seek.
 *
 * Threads (prefetch > 0): `prefetch` slots, each holding one batch being made or made. The
 * caller posts batches in order, (epoch, batch), (epoch, batch + 1), ..., into free slots; the
 * workers claim the samples of the oldest posted slot a chunk at a time (so all of them work on
 * the batch the caller needs next), write them straight into the slot, and the worker that
 * finishes the last chunk mixes the batch and marks the slot done. The caller waits for its
 * slot, copies it out (the slot is then the caller's alone: workers touch only slots in the
 * FILLING state) and frees it, which posts the next batch. Everything about slots is changed
 * under the one mutex; the pixels of a slot are written by the worker that claimed them, before
 * it reports them finished under the mutex, and read by the caller only after the slot is done,
 * so the mutex orders every access. A failed sample stops new claims of its slot; the slot is
 * done once every claimed chunk has come back, and the caller reports the failure of the
 * lowest sample (deterministic), then cancels every slot and posts again from its unchanged
 * position, so the next call makes the batch again. Seek cancels the same way: no new claims,
 * wait for chunks in flight, free everything.
 *
 * Memory: prefetch batches, plus each worker's scratch (a row, a decoder, augmentation
 * buffers): bounded by the batch size and the image size, never by the data set's.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "data/data_internal.h"

enum { SLOT_FREE, SLOT_FILLING, SLOT_MIXING, SLOT_DONE, SLOT_TAKEN };

typedef struct {
    int state;
    uint64_t seq; /* posting order: workers serve the lowest first */
    int64_t epoch, batch;
    int rows, claimed, todo, finished, cancel;
    int64_t *idx;   /* [bs] the dataset rows of this batch */
    kiln_status st; /* the failure of sample err_k, with its message */
    int err_k;
    char err[1024];
    float *x; /* [bs, m] */
    void *y;  /* [bs, ywidth] int32 or float; NULL when unlabeled */
} slot;

typedef struct {
    kiln_image_decoder *dec; /* random_resized_crop of a source's images (made on first use) */
    void *row;               /* [row_bytes] a source's row */
    kiln_aug_scratch sc;
} wctx;

struct kiln_loader {
    kiln_dataset *ds; /* one reference held */
    int64_t bs, nb;   /* batch size, batches per epoch */
    int shard, shards; /* shards > 1: deliver part `shard` of every batch (data parallel) */
    int shuffle;
    uint64_t seed;
    float scale;
    int channels;         /* 0: no mean/std */
    float *mean, *std;    /* [channels] */
    int64_t inner;        /* elements per channel in one row: x_numel / channels */
    kiln_augment aug;     /* n == 0: none */
    int rrc_src;          /* op 0 is random_resized_crop of the source's encoded images */
    int mixes;            /* mixup or cutmix listed */
    int c, h, w;          /* one sample [c, h, w] (augmentation) */
    float bound;          /* the value range's top: 255 for u8 data, 1 for float */
    int soft;             /* K > 0: labels as float [bs, K] */
    int64_t ywidth;       /* label values per row delivered (0: none) */
    int64_t epoch, batch; /* the next batch to deliver */
    int64_t *perm;        /* [n] the order of epoch perm_epoch (shuffle only) */
    int64_t perm_epoch;   /* -1: none yet */
    double wait;          /* seconds next() waited */
    int64_t *sync_idx;    /* [bs] rows of the batch made without prefetch */

    int prefetch, nworkers;
    wctx *wc; /* [max(nworkers, 1)]: wc[0] serves the caller without prefetch */
    pthread_t *threads;
    int started, synced; /* threads running; 1: mu, work and done exist */
    pthread_mutex_t mu;
    pthread_cond_t work, done; /* workers wait on work; the caller on done */
    int quit;
    slot *slots; /* [prefetch] */
    uint64_t next_seq;
    int64_t post_e, post_b; /* the next batch to post */
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const int64_t *order_of(kiln_loader *l, int64_t epoch) {
    if (!l->shuffle) return NULL;
    if (l->perm_epoch != epoch) {
        kiln_data_permutation(l->ds->n, l->seed, KILN_DATA_STREAM_SHUFFLE + (uint64_t)epoch,
                              l->perm); /* cannot fail: every dataset has 1 <= n <= UINT32_MAX */
        l->perm_epoch = epoch;
    }
    return l->perm;
}

/* The rows of batch b of epoch e into idx [bs]; returns their count. Caller's thread only. */
static int batch_rows(kiln_loader *l, int64_t epoch, int64_t b, int64_t *idx) {
    const int64_t *order = order_of(l, epoch);
    int64_t start = b * l->bs, n = l->ds->n - start < l->bs ? l->ds->n - start : l->bs;
    if (l->shards > 1) { /* this shard's part of the global batch */
        int64_t lo = n * l->shard / l->shards, hi = n * (l->shard + 1) / l->shards;
        start += lo, n = hi - lo;
    }
    for (int64_t k = 0; k < n; k++) idx[k] = order ? order[start + k] : start + k;
    return (int)n;
}

int64_t kiln_loader_shard_rows(int64_t n, int64_t batch_size, int64_t b, int shard, int shards) {
    int64_t start = b * batch_size, rows = n - start < batch_size ? n - start : batch_size;
    if (rows < 0) rows = 0;
    if (shards <= 1) return rows;
    return rows * (shard + 1) / shards - rows * shard / shards;
}

/* random_resized_crop of row i's source image: decodes it (with DCT scaling when the crop box
 * leaves room: the scaled box must still cover the output size) and resamples the box straight
 * into dx [c, h, w]. *done = 0 when the op does not apply to this sample (p < 1). */
static kiln_status crop_source(kiln_loader *l, wctx *w, int64_t epoch, int64_t i, int64_t r,
                               float *dx, int *done) {
    const kiln_dataset *ds = l->ds;
    const char *name = ds->ops->name ? ds->ops->name(ds->ctx, r) : NULL;
    const void *data;
    size_t len;
    int ih, iw;
    *done = 0;
    kiln_status st = KILN_OK;
    if (!w->dec && (st = kiln_image_decoder_new(&w->dec))) return st;
    if ((st = ds->ops->encoded(ds->ctx, r, w->dec, &data, &len)) ||
        (st = kiln_image_info(w->dec, data, len, name, &ih, &iw)))
        return st;
    kiln_aug_draw d;
    kiln_augment_draw(&l->aug, 0, l->seed, epoch, i, ih, iw, &d);
    if (!d.apply) return KILN_OK;
    kiln_image_decode_opts o = {.channels = l->c,
                                .min_h = (int)ceil((double)l->h * ih / d.box[2]),
                                .min_w = (int)ceil((double)l->w * iw / d.box[3])};
    kiln_image img;
    if ((st = kiln_image_decode(w->dec, data, len, name, &o, &img))) return st;
    /* DCT scaling by 1/k: scaled pixel j covers source pixels [j k, (j + 1) k) (the last one
     * fewer), so the box scales by exactly 1/k; k is the largest with ceil(side / k) the
     * decoded size */
    int k = 8;
    while (k > 1 && ((ih + k - 1) / k != img.h || (iw + k - 1) / k != img.w)) k /= 2;
    double fy = 1.0 / k, fx = 1.0 / k;
    kiln_aug_src src = {img.c, img.h, img.w, NULL, img.data, img.stride};
    if ((st = kiln_aug_resample(&src, d.box[0] * fy, d.box[1] * fx, d.box[2] * fy, d.box[3] * fx,
                                dx, l->h, l->w, l->aug.op[0].interp, &w->sc)))
        return st;
    *done = 1;
    return KILN_OK;
}

/* Sample i (a row of ds) of `epoch` into dx [m] and its label into yk (y row, may be NULL). */
static kiln_status make_sample(kiln_loader *l, wctx *w, int64_t epoch, int64_t i, float *dx,
                               void *yk) {
    const kiln_dataset *ds = l->ds;
    int64_t r = kiln_ds_row(ds, i), m = ds->x_numel;
    kiln_status st;
    int first = 0, cropped = 0;
    if (l->rrc_src) {
        if ((st = crop_source(l, w, epoch, i, r, dx, &cropped))) return st;
        first = 1; /* done here, or drawn not to apply */
    }
    if (!cropped) {
        const void *src = ds->x ? (const char *)ds->x + r * ds->row_bytes : w->row;
        if (!ds->x && (st = kiln_ds_read(ds, r, w->row))) return st;
        if (ds->x_dtype == KILN_U8) {
            const uint8_t *sx = src;
            for (int64_t j = 0; j < m; j++) dx[j] = (float)sx[j];
        } else {
            memcpy(dx, src, (size_t)m * sizeof *dx);
        }
    }
    if (l->aug.n && (st = kiln_augment_sample(&l->aug, first, l->seed, epoch, i, l->bound, dx, l->c,
                                              l->h, l->w, &w->sc)))
        return st;
    float sc = l->scale;
    if (sc != 1.0f)
        for (int64_t j = 0; j < m; j++) dx[j] *= sc;
    for (int c = 0; c < l->channels; c++) {
        float mu = l->mean[c], sd = l->std[c], *p = dx + c * l->inner;
        for (int64_t j = 0; j < l->inner; j++) p[j] = (p[j] - mu) / sd;
    }
    if (yk && ds->y) {
        if (l->soft) {
            float *p = yk;
            memset(p, 0, (size_t)l->soft * sizeof *p);
            p[((const int32_t *)ds->y)[r]] = 1.0f; /* ids < num_classes <= soft (checked) */
        } else {
            memcpy(yk, (const char *)ds->y + r * ds->y_width * 4, (size_t)ds->y_width * 4);
        }
    }
    return KILN_OK;
}

/* Mixup / cutmix of a whole made batch. */
static kiln_status finish_batch(kiln_loader *l, wctx *w, int64_t epoch, int64_t b, float *x,
                                void *y, int rows) {
    if (!l->mixes) return KILN_OK;
    return kiln_augment_mix(&l->aug, l->seed, epoch, b, x, l->soft ? y : NULL, rows, l->c, l->h,
                            l->w, l->soft, &w->sc);
}

/* ---- workers ---- */

/* The oldest slot with samples left to claim (under the mutex), or NULL. */
static slot *claimable(kiln_loader *l) {
    slot *best = NULL;
    for (int i = 0; i < l->prefetch; i++) {
        slot *s = &l->slots[i];
        if (s->state == SLOT_FILLING && s->claimed < s->todo && (!best || s->seq < best->seq))
            best = s;
    }
    return best;
}

typedef struct {
    kiln_loader *l;
    wctx *w;
} worker_arg;

/* Worker threads run WORKER_NICE steps below the caller's priority (Linux: per thread), so the
 * compute threads win the cores whenever both want them and workers fill the gaps; when the
 * workers fall behind, the step loop blocks, the compute threads go idle and the workers get
 * every core. Measured on 2 shared cores (docs/data.md, "Workers and OpenMP"): 7% faster
 * training when decoding is cheap and when it is heavy, never slower. */
#define WORKER_NICE 10

static void lower_priority(void) {
#ifdef __linux__
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int now = getpriority(PRIO_PROCESS, (id_t)tid);
    if (errno == 0)
        setpriority(PRIO_PROCESS, (id_t)tid, now + WORKER_NICE > 19 ? 19 : now + WORKER_NICE);
#endif
}

static void *worker(void *arg) {
    kiln_loader *l = ((worker_arg *)arg)->l;
    wctx *w = ((worker_arg *)arg)->w;
    free(arg);
    lower_priority();
    int64_t m = l->ds->x_numel;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        slot *s;
        while (!l->quit && !(s = claimable(l))) pthread_cond_wait(&l->work, &l->mu);
        if (l->quit) break;
        int chunk = (int)((s->rows + 4 * l->nworkers - 1) / (4 * l->nworkers));
        chunk = chunk < 1 ? 1 : chunk > s->todo - s->claimed ? s->todo - s->claimed : chunk;
        int k0 = s->claimed;
        s->claimed += chunk;
        int64_t epoch = s->epoch;
        pthread_mutex_unlock(&l->mu);
        kiln_status st = KILN_OK;
        int k = k0;
        for (; k < k0 + chunk && !st; k++)
            st = make_sample(l, w, epoch, s->idx[k], s->x + k * m,
                             s->y ? (char *)s->y + k * l->ywidth * 4 : NULL);
        char msg[sizeof s->err];
        if (st) snprintf(msg, sizeof msg, "%s", kiln_last_error());
        pthread_mutex_lock(&l->mu);
        if (st) {
            if (!s->st || k - 1 < s->err_k) {
                s->st = st, s->err_k = k - 1;
                memcpy(s->err, msg, sizeof msg);
            }
            s->todo = s->claimed; /* no new claims */
        }
        s->finished += chunk;
        if (s->finished == s->todo) {
            if (!s->st && !s->cancel && l->mixes) {
                s->state = SLOT_MIXING;
                pthread_mutex_unlock(&l->mu);
                kiln_status ms = finish_batch(l, w, s->epoch, s->batch, s->x, s->y, s->rows);
                if (ms) snprintf(msg, sizeof msg, "%s", kiln_last_error());
                pthread_mutex_lock(&l->mu);
                if (ms) s->st = ms, memcpy(s->err, msg, sizeof msg);
            }
            s->state = SLOT_DONE;
            pthread_cond_broadcast(&l->done);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Fills free slots with the next batches in order (under the mutex, caller's thread). */
static void post_more(kiln_loader *l) {
    int posted = 0;
    for (int i = 0; i < l->prefetch; i++) {
        slot *s = &l->slots[i];
        if (s->state != SLOT_FREE) continue;
        s->epoch = l->post_e, s->batch = l->post_b;
        s->rows = batch_rows(l, s->epoch, s->batch, s->idx);
        s->claimed = s->finished = s->cancel = 0, s->todo = s->rows;
        s->st = KILN_OK, s->err_k = 0, s->err[0] = 0;
        s->seq = l->next_seq++;
        s->state = SLOT_FILLING;
        if (++l->post_b >= l->nb) l->post_e++, l->post_b = 0;
        posted = 1;
    }
    if (posted) pthread_cond_broadcast(&l->work);
}

/* Drops every slot (waiting for chunks in flight) and posts again from the position. Under the
 * mutex, caller's thread. */
static void repost(kiln_loader *l) {
    for (;;) {
        int busy = 0;
        for (int i = 0; i < l->prefetch; i++) {
            slot *s = &l->slots[i];
            if (s->state == SLOT_FILLING) {
                s->todo = s->claimed, s->cancel = 1;
                if (s->finished == s->todo) s->state = SLOT_DONE;
            }
            busy |= s->state == SLOT_FILLING || s->state == SLOT_MIXING;
        }
        if (!busy) break;
        pthread_cond_wait(&l->done, &l->mu);
    }
    for (int i = 0; i < l->prefetch; i++) l->slots[i].state = SLOT_FREE;
    l->post_e = l->epoch, l->post_b = l->batch;
    if (l->post_b >= l->nb) l->post_e++, l->post_b = 0;
    post_more(l);
}

/* ---- the loader ---- */

static void wctx_free(wctx *w) {
    kiln_image_decoder_free(w->dec);
    free(w->row);
    kiln_aug_scratch_free(&w->sc);
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
    if (c->shard_count > 1 && (c->shard_rank < 0 || c->shard_rank >= c->shard_count ||
                               bs < c->shard_count))
        return kiln_error(KILN_ERR_INVALID,
                          "loader: shard %d of %d with batch_size %lld (each shard needs a row)",
                          c->shard_rank, c->shard_count, (long long)bs);
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
    if (c->prefetch < 0 || c->prefetch > 64 || c->workers < 0 || c->workers > 1024)
        return kiln_error(KILN_ERR_INVALID,
                          "loader: prefetch %d (0 to 64) or workers %d (0 to 1024) out of range",
                          c->prefetch, c->workers);
    kiln_status st;
    const kiln_augment *aug = c->augment && c->augment->n > 0 ? c->augment : NULL;
    if (aug) {
        if ((st = kiln_augment_check(aug))) return st;
        if (ds->x_shape.ndim != 3)
            return kiln_error(KILN_ERR_SHAPE,
                              "data.augment: samples must be images [C, H, W], got %s",
                              kiln_shape_str(&ds->x_shape, sbuf, sizeof sbuf));
        if (ds->x_shape.dims[1] > 65535 || ds->x_shape.dims[2] > 65535)
            return kiln_error(KILN_ERR_SHAPE, "data.augment: samples of %s are too large",
                              kiln_shape_str(&ds->x_shape, sbuf, sizeof sbuf));
        if ((st = kiln_augment_check_shape(aug, (int)ds->x_shape.dims[0], (int)ds->x_shape.dims[1],
                                           (int)ds->x_shape.dims[2])))
            return st;
    }
    int mixes = kiln_augment_mixes(aug);
    if (c->soft_labels < 0 || (c->soft_labels > 0 && ds->y_kind != KILN_LABEL_CLASS) ||
        (c->soft_labels > 0 && c->soft_labels < ds->num_classes))
        return kiln_error(KILN_ERR_INVALID,
                          "loader: soft labels of width %d need class labels with at most that "
                          "many classes (%d)",
                          c->soft_labels, ds->num_classes);
    if (mixes && ds->y && !c->soft_labels)
        return kiln_error(KILN_ERR_INVALID,
                          "data.augment: mixup and cutmix mix labels too: they need soft labels "
                          "(a softmax_cross_entropy classifier)");

    kiln_loader *l = calloc(1, sizeof *l);
    if (!l) return kiln_error(KILN_ERR_NOMEM, "loader: out of memory");
    l->ds = (kiln_dataset *)ds; /* the reference count is mutable */
    atomic_fetch_add(&l->ds->refs, 1);
    l->bs = bs;
    if (c->shard_count > 1) l->shard = c->shard_rank, l->shards = c->shard_count;
    l->nb = c->drop_last ? n / bs : (n + bs - 1) / bs;
    l->shuffle = c->shuffle, l->seed = c->seed;
    l->scale = nm->scale != 0 ? nm->scale : 1.0f;
    l->channels = nm->channels;
    l->inner = nm->channels ? m / nm->channels : m;
    l->perm_epoch = -1;
    if (aug) {
        l->aug = *aug;
        l->c = (int)ds->x_shape.dims[0], l->h = (int)ds->x_shape.dims[1];
        l->w = (int)ds->x_shape.dims[2];
        l->rrc_src = aug->op[0].kind == KILN_AUG_RANDOM_RESIZED_CROP && !ds->x && ds->ops &&
                     ds->ops->encoded && ds->x_dtype == KILN_U8 && (l->c == 1 || l->c == 3);
    }
    l->mixes = mixes;
    l->bound = ds->x_dtype == KILN_U8 ? 255.0f : 1.0f;
    l->soft = ds->y ? c->soft_labels : 0;
    l->ywidth = !ds->y ? 0 : l->soft ? l->soft : ds->y_width;
    l->prefetch = c->prefetch;
    l->nworkers = c->prefetch ? (c->workers ? c->workers : 1) : 0;
    int nw = l->nworkers ? l->nworkers : 1, ok = 1;
    if (l->channels) {
        ok = (l->mean = malloc((size_t)l->channels * sizeof *l->mean)) &&
             (l->std = malloc((size_t)l->channels * sizeof *l->std));
        if (ok) {
            memcpy(l->mean, nm->mean, (size_t)l->channels * sizeof *l->mean);
            memcpy(l->std, nm->std, (size_t)l->channels * sizeof *l->std);
        }
    }
    if (ok && l->shuffle) ok = (l->perm = malloc((size_t)n * sizeof *l->perm)) != NULL;
    if (ok) ok = (l->sync_idx = malloc((size_t)bs * sizeof *l->sync_idx)) != NULL;
    if (ok) ok = (l->wc = calloc((size_t)nw, sizeof *l->wc)) != NULL;
    for (int i = 0; ok && !ds->x && i < nw; i++)
        ok = (l->wc[i].row = malloc((size_t)ds->row_bytes)) != NULL;
    if (ok && l->prefetch) ok = (l->slots = calloc((size_t)l->prefetch, sizeof *l->slots)) != NULL;
    for (int i = 0; ok && i < l->prefetch; i++) {
        slot *s = &l->slots[i];
        ok = (s->x = malloc((size_t)(bs * m) * sizeof *s->x)) &&
             (s->idx = malloc((size_t)bs * sizeof *s->idx)) &&
             (!l->ywidth || (s->y = malloc((size_t)(bs * l->ywidth) * 4)));
    }
    if (ok && l->prefetch) ok = (l->threads = calloc((size_t)nw, sizeof *l->threads)) != NULL;
    if (!ok) {
        kiln_loader_free(l);
        return kiln_error(KILN_ERR_NOMEM, "loader: out of memory (batch_size %lld)", (long long)bs);
    }
    if (l->prefetch) {
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->work, NULL);
        pthread_cond_init(&l->done, NULL);
        l->synced = 1;
        int e = 0, started = 0;
        for (int i = 0; i < nw && !e; i++) {
            worker_arg *a = malloc(sizeof *a);
            if (!a) {
                e = 12; /* ENOMEM */
                break;
            }
            *a = (worker_arg){l, &l->wc[i]};
            if ((e = pthread_create(&l->threads[i], NULL, worker, a)))
                free(a);
            else
                started++;
        }
        l->started = started;
        if (e) {
            kiln_loader_free(l);
            return kiln_error(KILN_ERR_BACKEND, "loader: cannot start %d worker threads: %s", nw,
                              strerror(e));
        }
        pthread_mutex_lock(&l->mu);
        post_more(l); /* from batch 0 of epoch 0 */
        pthread_mutex_unlock(&l->mu);
    }
    *out = l;
    return KILN_OK;
}

void kiln_loader_free(kiln_loader *l) {
    if (!l) return;
    if (l->synced) {
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_broadcast(&l->work);
        pthread_mutex_unlock(&l->mu);
        for (int i = 0; i < l->started; i++) pthread_join(l->threads[i], NULL);
        pthread_cond_destroy(&l->done), pthread_cond_destroy(&l->work);
        pthread_mutex_destroy(&l->mu);
    }
    for (int i = 0; l->slots && i < l->prefetch; i++)
        free(l->slots[i].x), free(l->slots[i].y), free(l->slots[i].idx);
    for (int i = 0; l->wc && i < (l->nworkers ? l->nworkers : 1); i++) wctx_free(&l->wc[i]);
    free(l->slots), free(l->wc), free(l->threads), free(l->sync_idx);
    free(l->perm), free(l->mean), free(l->std);
    kiln_dataset_free(l->ds);
    free(l);
}

int64_t kiln_loader_batches(const kiln_loader *l) {
    return l->nb;
}

double kiln_loader_wait_seconds(const kiln_loader *l) {
    return l->wait;
}

void kiln_loader_position(const kiln_loader *l, int64_t *epoch, int64_t *batch) {
    if (epoch) *epoch = l->epoch;
    if (batch) *batch = l->batch;
}

/* Batch (epoch, batch) made on the caller's thread into x, y. */
static kiln_status make_here(kiln_loader *l, float *x, void *y, int *rows) {
    int n = batch_rows(l, l->epoch, l->batch, l->sync_idx);
    int64_t m = l->ds->x_numel;
    for (int k = 0; k < n; k++) {
        kiln_status st = make_sample(l, &l->wc[0], l->epoch, l->sync_idx[k], x + k * m,
                                     y && l->ywidth ? (char *)y + k * l->ywidth * 4 : NULL);
        if (st) return st;
    }
    kiln_status st = finish_batch(l, &l->wc[0], l->epoch, l->batch, x, y, n);
    if (!st) *rows = n;
    return st;
}

int kiln_loader_next(kiln_loader *l, float *x, void *y, int *rows) {
    if (!l || !x || !rows) {
        kiln_error(KILN_ERR_INVALID, "loader_next: needs the loader, x and rows");
        return -1;
    }
    *rows = 0;
    if (l->batch >= l->nb) { /* end of the epoch: the slots already hold (epoch + 1, 0) on */
        l->epoch++, l->batch = 0;
        return 0;
    }
    double t0 = now_s();
    if (!l->prefetch) {
        kiln_status st = make_here(l, x, y, rows);
        l->wait += now_s() - t0;
        if (st) return -1;
        l->batch++;
        return 1;
    }
    pthread_mutex_lock(&l->mu);
    slot *s = NULL;
    for (int i = 0; i < l->prefetch && !s; i++)
        if (l->slots[i].state != SLOT_FREE && l->slots[i].epoch == l->epoch &&
            l->slots[i].batch == l->batch)
            s = &l->slots[i];
    if (!s) { /* not posted (cannot happen in order; kept correct anyway) */
        repost(l);
        for (int i = 0; i < l->prefetch && !s; i++)
            if (l->slots[i].epoch == l->epoch && l->slots[i].batch == l->batch &&
                l->slots[i].state != SLOT_FREE)
                s = &l->slots[i];
    }
    while (s->state != SLOT_DONE) pthread_cond_wait(&l->done, &l->mu);
    if (s->st) {
        kiln_status st = s->st;
        char msg[sizeof s->err];
        memcpy(msg, s->err, sizeof msg);
        repost(l); /* the position stays: the next call makes this batch again */
        pthread_mutex_unlock(&l->mu);
        l->wait += now_s() - t0;
        kiln_error(st, "%s", msg);
        return -1;
    }
    s->state = SLOT_TAKEN;
    pthread_mutex_unlock(&l->mu);
    l->wait += now_s() - t0;
    *rows = s->rows;
    memcpy(x, s->x, (size_t)(s->rows * l->ds->x_numel) * sizeof *x);
    if (y && s->y) memcpy(y, s->y, (size_t)(s->rows * l->ywidth) * 4);
    pthread_mutex_lock(&l->mu);
    s->state = SLOT_FREE;
    post_more(l);
    pthread_mutex_unlock(&l->mu);
    l->batch++;
    return 1;
}

kiln_status kiln_loader_seek(kiln_loader *l, int64_t epoch, int64_t batch) {
    if (epoch < 0 || batch < 0 || batch > l->nb)
        return kiln_error(
            KILN_ERR_INVALID,
            "loader_seek: epoch %lld batch %lld is outside epochs >= 0 and batches [0, %lld]",
            (long long)epoch, (long long)batch, (long long)l->nb);
    if (l->prefetch) pthread_mutex_lock(&l->mu);
    l->epoch = epoch, l->batch = batch;
    if (l->prefetch) {
        repost(l);
        pthread_mutex_unlock(&l->mu);
    }
    return KILN_OK;
}

kiln_status kiln_loader_preview(const kiln_dataset *ds, const kiln_loader_config *c, int n,
                                int64_t epoch, float **x, float **probs, int *k, float *bound) {
    *x = NULL, *probs = NULL, *k = 0, *bound = 0;
    if (n < 1 || n > 4096)
        return kiln_error(KILN_ERR_INVALID, "preview: %d samples (1 to 4096)", n);
    kiln_loader_config pc = *c;
    memset(&pc.norm, 0, sizeof pc.norm); /* pixel values, as augmentation sees them */
    kiln_loader *l = NULL;
    kiln_status st = kiln_loader_new(ds, &pc, &l);
    if (st) return st;
    int64_t m = ds->x_numel, bs = l->bs;
    int kk = l->soft ? l->soft : ds->y_kind == KILN_LABEL_CLASS ? ds->num_classes : 0;
    float *bx = malloc((size_t)(bs * m) * sizeof *bx);
    void *by = l->ywidth ? malloc((size_t)(bs * l->ywidth) * 4) : NULL;
    float *ox = malloc((size_t)n * (size_t)m * sizeof *ox);
    float *op = kk ? calloc((size_t)n * (size_t)kk, sizeof *op) : NULL;
    if (!bx || (l->ywidth && !by) || !ox || (kk && !op))
        st = kiln_error(KILN_ERR_NOMEM, "preview: out of memory");
    if (!st) st = kiln_loader_seek(l, epoch, 0);
    int got = 0, rows, r = 1;
    while (!st && got < n && (r = kiln_loader_next(l, bx, by, &rows)) == 1) {
        int take = rows < n - got ? rows : n - got;
        memcpy(ox + (size_t)got * m, bx, (size_t)(take * m) * sizeof *bx);
        for (int i = 0; kk && by && i < take; i++) {
            float *dst = op + (size_t)(got + i) * kk;
            if (l->soft)
                memcpy(dst, (float *)by + (size_t)i * kk, (size_t)kk * sizeof *dst);
            else
                dst[((int32_t *)by)[i]] = 1;
        }
        got += take;
    }
    if (!st && r < 0) st = KILN_ERR_INVALID; /* the message is next()'s */
    if (!st && got < n) st = kiln_error(KILN_ERR_INVALID, "preview: the data has %d rows", got);
    *bound = l->bound;
    kiln_loader_free(l);
    free(bx), free(by);
    if (st) {
        free(ox), free(op);
        return st;
    }
    *x = ox, *probs = op, *k = kk;
    return KILN_OK;
}

/* dp.c — data-parallel training: the trainer's hooks over MPI (kiln/dist.h, kiln/trainer.h).
 *
 * Invariants:
 *  - Every rank calls the same collectives in the same order: the trainer calls the hooks at
 *    the same points on every rank (same config, same global batch count, same agreed stop).
 *  - Gradients: the flat buffer [0, n) is cut into buckets from the top (the last parameters'
 *    gradients are final first in backward). When backward reports that [from, n) is final,
 *    every bucket inside it is scaled by this rank's share of the global batch (rows here /
 *    rows in the global batch) and its MPI_Iallreduce(SUM) starts; step_end waits for all of
 *    them. The sum is then the global batch's mean gradient, whatever the split of rows.
 *    bf16 compression sends each bucket as bfloat16 (round to nearest even) and adds in fp32.
 *  - Waiting never blocks in MPI: requests are polled, so a signal (SIGTERM from Slurm, or from
 *    mpirun when a rank died) is seen. If a wait does not finish soon after a signal, a rank has
 *    gone: rank 0 marks the run failed at once, naming the rank and host where it can (a dead
 *    pid on this host), because the launcher kills the remaining ranks a moment later.
 *  - Rank 0 owns the run folder; the others write only <run>/log.rank-K.txt.
 *  - dist.sync_batchnorm: the training plans' batch norms reduce their per-channel sums through
 *    batch_reduce (kiln_plan_on_reduce) with blocking-looking MPI_Iallreduce(SUM) in double, in
 *    plan order, so in the same order on every rank and between the bucket reductions already
 *    started. Backward's sums (KILN_REDUCE_GRAD) are gradients of this rank's loss; like the
 *    buckets they are weighted by this rank's share of the global batch before the sum and
 *    divided by it after, so dx is this rank's part of the global batch's gradient in the same
 *    scale as every other gradient here. dgamma and dbeta stay local sums and are averaged with
 *    the rest of the buffer (PyTorch's SyncBatchNorm does the same): nothing is counted twice.
 */
#include <math.h>
#include <mpi.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/crc32c.h"
#include "kiln/dist.h"
#include "kiln/mem.h"

typedef struct {
    size_t lo, hi;    /* floats [lo, hi) of the gradient buffer */
    uint16_t *packed; /* bf16 copy (compression) */
} bucket;

typedef struct {
    kiln_train_hooks h; /* first: the hooks pointer is the context */
    kiln_dist_world w;
    int bf16;
    size_t bucket_floats;
    int64_t n_train, G;
    float *grads;
    size_t n;
    bucket *b;
    int nb, next; /* buckets; the next one to start */
    MPI_Request *req; /* [nb + 2]: buckets, then the loss/rows sum and the stop max */
    double scale;
    double ctrl[2], ctrl_sum[2];
    int sig_in, sig_out;
    volatile sig_atomic_t *sig;
    kiln_rundir *run;
    FILE *log;
    int marked;
    int together; /* the last failure was seen by every rank */
    double t_first;
    kiln_dist_stats stats;
    double waited; /* seconds the last wait_all took */
    kiln_status bn_failed; /* a batch-norm reduction in backward failed: step_end reports it */
} dp;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- failures ---- */

/* Whether pid on this host is gone (no such process, or a zombie). */
static int pid_gone(long pid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Which rank is gone, as far as this host can tell. */
static void who_died(const dp *d, char *out, size_t cap) {
    size_t used = 0;
    out[0] = 0;
    for (int r = 0; r < d->w.size; r++) {
        if (r == d->w.rank || strcmp(kiln_dist_host_of(r), d->w.host)) continue;
        if (!pid_gone(kiln_dist_pid_of(r))) continue;
        used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%srank %d (host %s, pid %ld)",
                                 used ? ", " : "", r, kiln_dist_host_of(r), kiln_dist_pid_of(r));
        if (used >= cap) break;
    }
    if (!out[0]) {
        int remote = 0;
        for (int r = 0; r < d->w.size; r++) remote += strcmp(kiln_dist_host_of(r), d->w.host) != 0;
        snprintf(out, cap, "a rank%s", remote ? " on another host" : "");
    }
}

/* A rank is gone while this one waited in `what`: the message, and rank 0 marks the run failed
 * (its last intact checkpoint stays). */
static kiln_status peer_lost(dp *d, const char *what, int mpi_error) {
    char who[1024], msg[2048], err[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    who_died(d, who, sizeof who);
    if (mpi_error) MPI_Error_string(mpi_error, err, &len);
    snprintf(msg, sizeof msg,
             "%s died or stopped answering while rank %d (host %s) waited in %s%s%s; the job is "
             "aborted. The run keeps its last intact checkpoint: resume it with kiln train --resume "
             "RUN (with any number of ranks)",
             who, d->w.rank, d->w.host, what, err[0] ? ": " : "", err);
    if (!d->marked) {
        d->marked = 1;
        fprintf(stderr, "kiln train: %s\n", msg);
        fflush(stderr);
        if (d->run) {
            kiln_run_log(d->run, "error: %s", msg);
            kiln_run_set_status(d->run, KILN_RUN_FAILED, msg);
            kiln_run_save(d->run);
        }
        if (d->log) fprintf(d->log, "error: %s\n", msg), fflush(d->log);
    }
    return kiln_error(KILN_ERR_BACKEND, "%s", msg);
}

/* Polls the requests until they finish. A signal that arrives meanwhile is either a job-wide
 * stop (the others are coming) or the launcher ending the job after a rank died: after a grace
 * period without progress it is taken as the latter (the launcher kills for good soon after). */
static kiln_status wait_all(dp *d, MPI_Request *r, int n, const char *what) {
    double t0 = now_s(), sig_at = 0;
    for (long spin = 0;; spin++) {
        int done = 0, e = MPI_Testall(n, r, &done, MPI_STATUSES_IGNORE);
        if (e != MPI_SUCCESS) return peer_lost(d, what, e);
        if (done) break;
        if (d->sig && *d->sig && !d->marked) {
            double t = now_s();
            if (sig_at == 0) sig_at = t;
            else if (t - sig_at > 0.3) peer_lost(d, what, 0); /* marks; keeps waiting */
        }
        if (spin > 2000) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    if (d->marked) d->marked = 0; /* it finished after all: a job-wide stop, not a death */
    d->waited = now_s() - t0;
    return KILN_OK;
}

/* A blocking-looking collective on one request. */
static kiln_status wait1(dp *d, MPI_Request *r, const char *what) { return wait_all(d, r, 1, what); }

/* ---- setup ---- */

typedef struct {
    int st, usage;
    char hash[24];
    long long n_train, G;
    char msg[472];
} setup_msg;

static kiln_status shard_split(const dp *d, kiln_dataset **ds, const char *what) {
    if (!*ds) return KILN_OK;
    int64_t n = kiln_dataset_rows(*ds), lo = n * d->w.rank / d->w.size, hi = n * (d->w.rank + 1) / d->w.size;
    if (n < d->w.size)
        return kiln_error(KILN_ERR_INVALID, "dist: the %s split has %lld rows, fewer than the %d ranks", what,
                          (long long)n, d->w.size);
    int64_t *rows = malloc((size_t)(hi - lo) * sizeof *rows);
    if (!rows) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    for (int64_t i = lo; i < hi; i++) rows[i - lo] = i;
    kiln_dataset *part = NULL;
    kiln_status st = kiln_dataset_subset(*ds, rows, hi - lo, &part);
    free(rows);
    if (st) return st;
    kiln_dataset_free(*ds);
    *ds = part;
    return KILN_OK;
}

/* ---- synchronized batch norm ---- */

static kiln_status batch_reduce(void *ctx, double *v, int n, kiln_reduce_kind kind) {
    dp *d = ctx;
    if (d->bn_failed) return d->bn_failed;
    double w = kind == KILN_REDUCE_GRAD ? d->scale : 1.0;
    if (w != 1.0)
        for (int i = 0; i < n; i++) v[i] *= w;
    MPI_Request r;
    kiln_status st = MPI_Iallreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &r)
                         ? peer_lost(d, "the batch-norm reduction", 0)
                         : wait1(d, &r, "the batch-norm reduction");
    if (st) {
        if (kind == KILN_REDUCE_GRAD) d->bn_failed = st;
        return st;
    }
    d->stats.wait_s += d->waited;
    if (w != 1.0 && w > 0)
        for (int i = 0; i < n; i++) v[i] /= w;
    return KILN_OK;
}

static kiln_status setup(void *ctx, kiln_status st, int *usage, const char *hash, const kiln_cfg *cfg,
                         kiln_inputs *in) {
    dp *d = ctx;
    if (!st && cfg) { /* this rank's own checks of dist: */
        d->bf16 = !strcmp(kiln_cfg_str(cfg, "dist.compress", "none"), "bf16");
        d->bucket_floats = (size_t)(kiln_cfg_num(cfg, "dist.bucket_mb", 4) * 1048576.0 / 4);
        if (d->bucket_floats < 1) d->bucket_floats = 1;
        int64_t G = in->train_loader.batch_size;
        if (kiln_cfg_bool(cfg, "dist.sync_batchnorm", 0)) d->h.batch_reduce = batch_reduce;
        if (G % d->w.size)
            st = kiln_error(KILN_ERR_INVALID,
                            "data.batch_size %lld is the global batch: it must be a multiple of the %d "
                            "ranks (each rank runs batch_size / ranks rows)",
                            (long long)G, d->w.size);
        if (st) *usage = 1;
    }
    setup_msg me = {.st = st, .usage = *usage}, *all = calloc((size_t)d->w.size, sizeof *all);
    if (!all) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    snprintf(me.hash, sizeof me.hash, "%s", hash ? hash : "");
    if (st) snprintf(me.msg, sizeof me.msg, "%s", kiln_last_error());
    if (!st) me.n_train = kiln_dataset_rows(in->train), me.G = in->train_loader.batch_size;
    MPI_Request r;
    kiln_status s2 = MPI_Iallgather(&me, sizeof me, MPI_BYTE, all, sizeof me, MPI_BYTE, MPI_COMM_WORLD, &r)
                         ? peer_lost(d, "setup", 0)
                         : wait1(d, &r, "setup");
    if (s2) {
        free(all);
        return s2;
    }
    int bad = -1, nbad = 0;
    for (int q = 0; q < d->w.size; q++)
        if (all[q].st) nbad++, bad = bad < 0 ? q : bad;
    if (bad >= 0) {
        *usage = all[bad].usage;
        d->together = 1;
        st = kiln_error(all[bad].st, "rank %d (host %s): %s%s", bad, kiln_dist_host_of(bad), all[bad].msg,
                        nbad > 1 ? " (and more ranks failed: see their log lines)" : "");
        free(all);
        return st;
    }
    for (int q = 1; q < d->w.size; q++) {
        if (strcmp(all[q].hash, all[0].hash)) {
            *usage = 1;
            st = kiln_error(KILN_ERR_INVALID,
                            "rank %d (host %s) runs a different config than rank 0 (host %s): hash %s "
                            "against %s; every rank must be given the same config and --set options",
                            q, kiln_dist_host_of(q), kiln_dist_host_of(0), all[q].hash, all[0].hash);
        } else if (all[q].n_train != all[0].n_train) {
            *usage = 1;
            st = kiln_error(KILN_ERR_INVALID,
                            "rank %d (host %s) reads %lld training rows, rank 0 (host %s) %lld: the data "
                            "files differ between the hosts",
                            q, kiln_dist_host_of(q), all[q].n_train, kiln_dist_host_of(0), all[0].n_train);
        }
        if (st) break;
    }
    free(all);
    if (st) d->together = 1;
    if (st) return st;
    d->n_train = me.n_train, d->G = me.G;
    in->train_loader.shard_rank = d->w.rank, in->train_loader.shard_count = d->w.size;
    int64_t tail = d->n_train % d->G;
    if (tail && tail < d->w.size) in->train_loader.drop_last = 1; /* a rank would get no row */
    if (in->train_loader.drop_last && d->n_train < d->G) {
        *usage = 1;
        return kiln_error(KILN_ERR_INVALID, "data.batch_size %lld is larger than the %lld training rows",
                          (long long)d->G, (long long)d->n_train);
    }
    if ((st = shard_split(d, &in->validation, "validation")) || (st = shard_split(d, &in->test, "test"))) {
        *usage = 1;
        return st;
    }
    return KILN_OK;
}

/* ---- the run folder ---- */

typedef struct {
    int st;
    char msg[508];
    char dir[4096];
} folder_msg;

static kiln_status run_folder(void *ctx, kiln_status st, char *dir, size_t cap) {
    dp *d = ctx;
    folder_msg *m = calloc(1, sizeof *m);
    if (!m) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    if (d->w.rank == 0) {
        m->st = st;
        if (st) snprintf(m->msg, sizeof m->msg, "%s", kiln_last_error());
        snprintf(m->dir, sizeof m->dir, "%s", dir);
    }
    MPI_Request r;
    kiln_status s2 = MPI_Ibcast(m, sizeof *m, MPI_BYTE, 0, MPI_COMM_WORLD, &r) ? peer_lost(d, "setup", 0)
                                                                               : wait1(d, &r, "setup");
    if (!s2 && d->w.rank > 0) {
        if (m->st) {
            s2 = kiln_error(m->st, "rank 0 (host %s) could not make the run folder: %s", kiln_dist_host_of(0),
                            m->msg);
        } else {
            snprintf(dir, cap, "%s", m->dir);
            char path[4200];
            snprintf(path, sizeof path, "%s/log.rank-%d.txt", m->dir, d->w.rank);
            if (!d->log && !(d->log = fopen(path, "a")))
                fprintf(stderr, "kiln train: rank %d: cannot write %s (the run folder is not shared?)\n",
                        d->w.rank, path);
        }
    }
    if (m->st) d->together = 1;
    free(m);
    return d->w.rank == 0 ? st : s2;
}

/* ---- the start: rank 0's state everywhere ---- */

static kiln_status bcast(dp *d, void *p, size_t bytes) {
    char *c = p;
    while (bytes) { /* counts are ints: in pieces of 1 GiB */
        int n = bytes > (1u << 30) ? (1 << 30) : (int)bytes;
        MPI_Request r;
        if (MPI_Ibcast(c, n, MPI_BYTE, 0, MPI_COMM_WORLD, &r)) return peer_lost(d, "the start", 0);
        kiln_status st = wait1(d, &r, "the start");
        if (st) return st;
        c += n, bytes -= (size_t)n;
    }
    return KILN_OK;
}

static uint32_t state_crc(const kiln_train_sync *s) {
    size_t n = kiln_graph_params_size(s->graph), nt = kiln_graph_trainable_size(s->graph);
    uint32_t c = kiln_crc32c(kiln_graph_params(s->graph), n * sizeof(float));
    for (int i = 0; i < kiln_optim_slot_count(s->opt); i++)
        c = kiln_crc32c_extend(c, kiln_optim_slot(s->opt, i), nt * sizeof(float));
    if (s->ema) c = kiln_crc32c_extend(c, kiln_ema_weights(s->ema), n * sizeof(float));
    return kiln_crc32c_extend(c, s->state, s->state_size);
}

static void make_buckets(dp *d) {
    d->nb = d->n ? (int)((d->n + d->bucket_floats - 1) / d->bucket_floats) : 0;
    d->b = calloc((size_t)(d->nb ? d->nb : 1), sizeof *d->b);
    d->req = calloc((size_t)d->nb + 2, sizeof *d->req);
    for (int k = 0; d->b && k < d->nb; k++) {
        size_t hi = d->n - (size_t)k * d->bucket_floats;
        d->b[k].hi = hi, d->b[k].lo = hi > d->bucket_floats ? hi - d->bucket_floats : 0;
        if (d->bf16) d->b[k].packed = malloc((hi - d->b[k].lo) * sizeof(uint16_t));
    }
}

static kiln_status begin(void *ctx, kiln_status st, const kiln_train_sync *s) {
    dp *d = ctx;
    d->sig = s->signal, d->run = s->run;
    folder_msg *m = calloc(1, sizeof *m);
    if (!m) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    if (d->w.rank == 0) {
        m->st = st;
        if (st) snprintf(m->msg, sizeof m->msg, "%s", kiln_last_error());
    }
    kiln_status s2 = bcast(d, m, sizeof m->st + sizeof m->msg);
    if (!s2 && m->st && d->w.rank > 0)
        s2 = kiln_error(m->st, "rank 0 (host %s) could not start: %s", kiln_dist_host_of(0), m->msg);
    int failed = m->st != 0;
    if (failed) d->together = 1;
    free(m);
    if (s2 || failed) return s2 ? s2 : st;
    size_t n = kiln_graph_params_size(s->graph), nt = kiln_graph_trainable_size(s->graph);
    int64_t it = kiln_optim_iterations(s->opt), eu = s->ema ? kiln_ema_updates(s->ema) : 0;
    if ((st = bcast(d, kiln_graph_params(s->graph), n * sizeof(float)))) return st;
    for (int i = 0; i < kiln_optim_slot_count(s->opt); i++)
        if ((st = bcast(d, kiln_optim_slot(s->opt, i), nt * sizeof(float)))) return st;
    if ((st = bcast(d, &it, sizeof it)) || (st = bcast(d, &eu, sizeof eu))) return st;
    kiln_optim_set_iterations(s->opt, it);
    if (s->ema) {
        if ((st = bcast(d, kiln_ema_weights(s->ema), n * sizeof(float)))) return st;
        kiln_ema_set_updates(s->ema, eu);
    }
    if ((st = bcast(d, s->state, s->state_size))) return st;
    if (s->best && (st = bcast(d, s->best, n * sizeof(float)))) return st;
    /* the check: every rank's state has rank 0's checksum */
    uint32_t mine = state_crc(s), *all = calloc((size_t)d->w.size, sizeof *all);
    if (!all) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    MPI_Request r;
    st = MPI_Iallgather(&mine, 1, MPI_UINT32_T, all, 1, MPI_UINT32_T, MPI_COMM_WORLD, &r)
             ? peer_lost(d, "the start", 0)
             : wait1(d, &r, "the start");
    for (int q = 1; !st && q < d->w.size; q++)
        if (all[q] != all[0])
            st = kiln_error(KILN_ERR_BACKEND,
                            "rank %d (host %s): its parameters and optimizer state after the broadcast "
                            "from rank 0 have checksum %08x, rank 0's %08x: the ranks do not start equal",
                            q, kiln_dist_host_of(q), all[q], all[0]);
    free(all);
    if (st) d->together = 1;
    if (st) return st;
    d->grads = kiln_graph_grads(s->graph), d->n = nt;
    make_buckets(d);
    if (!d->b || !d->req) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    for (int k = 0; d->bf16 && k < d->nb; k++)
        if (!d->b[k].packed) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    return KILN_OK;
}

/* ---- steps ---- */

static void step_begin(void *ctx, int64_t batch, int rows, float *grads) {
    dp *d = ctx;
    d->grads = grads; /* a stage switch rebuilds the model: its buffer may have moved */
    int64_t global = kiln_loader_shard_rows(d->n_train, d->G, batch, 0, 1);
    d->scale = global > 0 ? (double)rows / (double)global : 0;
    d->ctrl[0] = 0, d->ctrl[1] = rows;
    d->next = 0;
    if (d->t_first == 0) d->t_first = now_s();
}

static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void bf16_sum(void *in, void *inout, int *len, MPI_Datatype *dt) {
    (void)dt;
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++) b[i] = to_bf16(from_bf16(a[i]) + from_bf16(b[i]));
}

static MPI_Op bf16_op = MPI_OP_NULL;

static void start_bucket(dp *d, int k) {
    bucket *b = &d->b[k];
    float *g = d->grads + b->lo, s = (float)d->scale;
    size_t n = b->hi - b->lo;
    if (d->bf16) {
        for (size_t i = 0; i < n; i++) b->packed[i] = to_bf16(g[i] * s);
        MPI_Iallreduce(MPI_IN_PLACE, b->packed, (int)n, MPI_UINT16_T, bf16_op, MPI_COMM_WORLD, &d->req[k]);
    } else {
        for (size_t i = 0; i < n; i++) g[i] *= s;
        MPI_Iallreduce(MPI_IN_PLACE, g, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &d->req[k]);
    }
    d->stats.buckets++;
}

static void grads_ready(void *ctx, size_t from) {
    dp *d = ctx;
    int started = d->next;
    while (d->next < d->nb && d->b[d->next].lo >= from) start_bucket(d, d->next++);
    if (d->next > 0 && started == d->next) { /* let the ones in flight progress */
        int done;
        MPI_Testall(d->next, d->req, &done, MPI_STATUSES_IGNORE);
    }
}

static kiln_status step_end(void *ctx, float *grads, float *loss, int *rows, int *stop) {
    dp *d = ctx;
    (void)grads;
    if (d->bn_failed) return d->bn_failed;
    grads_ready(d, 0);
    d->ctrl[0] = (double)*loss * d->ctrl[1];
    d->sig_in = *stop;
    MPI_Iallreduce(d->ctrl, d->ctrl_sum, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &d->req[d->nb]);
    MPI_Iallreduce(&d->sig_in, &d->sig_out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &d->req[d->nb + 1]);
    /* the buckets were started in place; the requests array is [0, nb) then the two controls */
    kiln_status st = wait_all(d, d->req, d->nb + 2, "the gradient reduction");
    if (st) return st;
    d->stats.wait_s += d->waited;
    for (int k = 0; d->bf16 && k < d->nb; k++)
        for (size_t i = d->b[k].lo; i < d->b[k].hi; i++) d->grads[i] = from_bf16(d->b[k].packed[i - d->b[k].lo]);
    *loss = d->ctrl_sum[1] > 0 ? (float)(d->ctrl_sum[0] / d->ctrl_sum[1]) : *loss;
    *rows = (int)d->ctrl_sum[1];
    *stop = d->sig_out;
    d->stats.steps++;
    d->stats.step_s = now_s() - d->t_first;
    return KILN_OK;
}

static kiln_status reduce_metrics(void *ctx, kiln_metrics *mt) {
    dp *d = ctx;
    size_t n = kiln_metrics_packed_size(mt);
    double *v = malloc(n * sizeof *v);
    if (!v) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    kiln_metrics_pack(mt, v);
    MPI_Request r;
    kiln_status st = MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &r)
                         ? peer_lost(d, "the metrics reduction", 0)
                         : wait1(d, &r, "the metrics reduction");
    if (!st) kiln_metrics_unpack(mt, v);
    free(v);
    return st;
}

static kiln_status sync_buffers(void *ctx, float *p, size_t n) {
    dp *d = ctx;
    if (!n) return KILN_OK;
    MPI_Request r;
    kiln_status st = MPI_Iallreduce(MPI_IN_PLACE, p, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r)
                         ? peer_lost(d, "the batch-norm statistics", 0)
                         : wait1(d, &r, "the batch-norm statistics");
    float inv = 1.0f / (float)d->w.size;
    for (size_t i = 0; !st && i < n; i++) p[i] *= inv;
    return st;
}

static void log_line(void *ctx, const char *line) {
    dp *d = ctx;
    if (d->log) fprintf(d->log, "%s\n", line), fflush(d->log);
}

kiln_train_hooks *kiln_dist_hooks(const kiln_dist_world *w) {
    dp *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->w = *w;
    d->bucket_floats = 1 << 20;
    if (w->mpi && bf16_op == MPI_OP_NULL) MPI_Op_create(bf16_sum, 1, &bf16_op);
    d->h = (kiln_train_hooks){.ctx = d,
                              .writer = w->rank == 0,
                              .setup = setup,
                              .run_folder = run_folder,
                              .begin = begin,
                              .step_begin = step_begin,
                              .grads_ready = grads_ready,
                              .step_end = step_end,
                              .reduce_metrics = reduce_metrics,
                              .sync_buffers = sync_buffers,
                              .log = log_line};
    return &d->h;
}

kiln_dist_stats kiln_dist_get_stats(const kiln_train_hooks *h) {
    const dp *d = (const dp *)h;
    return d ? d->stats : (kiln_dist_stats){0};
}

int kiln_dist_failed_together(const kiln_train_hooks *h) { return h && ((const dp *)h)->together; }

void kiln_dist_hooks_free(kiln_train_hooks *h) {
    dp *d = (dp *)h;
    if (!d) return;
    for (int k = 0; d->b && k < d->nb; k++) free(d->b[k].packed);
    free(d->b), free(d->req);
    if (d->log) fclose(d->log);
    free(d);
}

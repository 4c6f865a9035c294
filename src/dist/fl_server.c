/* fl_server.c — `kiln fl server`: the federated server (kiln/fl.h; protocol in
 * docs/federated.md).
 *
 * Protocol (HTTP or HTTPS, kiln/web.h; every request carries "Authorization: Bearer TOKEN"
 * when the server has a token, and a client certificate when it has a client CA):
 *   GET  /fl/v1/task?client=ID   200: the global weights (safetensors; metadata round, epochs,
 *                                mu, seed_offset) for a client sampled into the open round;
 *                                204 + Retry-After: nothing for this client now; 410: the
 *                                federation is over
 *   POST /fl/v1/update?client=ID&round=R   the client's trained weights (safetensors, metadata
 *                                samples): 200 {"accepted": true}; 400 refused (not
 *                                safetensors, a wrong tensor or shape, NaN/Inf, norm over the
 *                                limit); 409 not expected (another round, not sampled, sent
 *                                twice, the round closed)
 *   GET  /fl/v1/status           {"round", "rounds", "open", "clients", "sampled", "received"}
 * Missing credentials are 401, wrong ones 403, and neither ever gets model bytes.
 *
 * Rounds. The driver (the calling thread) waits until at least min_available (at least
 * min_clients) clients are waiting (polled in the last few seconds and hold no task), samples
 * max(min_clients, ceil(fraction_fit * waiting)) of them at random, and opens the round: sampled
 * clients get the task when they poll. It waits until every sampled client answered (accepted or
 * refused) or the round deadline passes, then closes the round (later updates are 409). With at
 * least min_clients accepted updates the strategy aggregates them; otherwise nothing changes and
 * the round is retried (up to max_retries times). Handlers run on MHD's threads; one mutex guards
 * all state below; the global weights change only while the round is closed, so handlers
 * never see them change under a check.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/fl_internal.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "kiln/rng.h"
#include "kiln/sbuf.h"
#include "kiln/web.h"
#include "train/signals.h"

#define WAITING_SECONDS 5.0 /* a client that polled within this is waiting for work */

/* SIGINT / SIGTERM: the driver stops at its next wait; the run is "stopped" (resumable). */
static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) {
    stop_signal = sig;
}

typedef struct {
    char id[128];
    double seen;
    int sampled;  /* the attempt this client was sampled into (0: none) */
    int answered; /* the attempt it answered */
} client_rec;

typedef struct {
    fl_global G;
    const kiln_fl_server_opts *o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    client_rec *cl;
    int ncl, capcl;
    int round, attempt, open, done;
    int target, received, rejected;
    double samples, norm_sum;
    char *task;
    size_t task_len;
    char auth[1100];
    uint64_t *msum; /* secure aggregation: the masked vectors' sum (modulo 2^64) */
    /* federated evaluation: the clients' local validation metrics, sample-weighted */
    int n_ev;
    char ev_name[8][64];
    double ev_sum[8], ev_w[8];
} srv;

/* Adds "val_accuracy=0.81;val_loss=0.5" (a client's local validation metrics) with weight w.
 * Under the lock. */
static void add_client_metrics(srv *s, const char *m, double w) {
    while (m && *m) {
        const char *eq = strchr(m, '='), *end = strchr(m, ';');
        if (!end) end = m + strlen(m);
        if (eq && eq < end && eq - m < 60) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(eq - m), m);
            double v = strtod(eq + 1, NULL);
            int i = 0;
            while (i < s->n_ev && strcmp(s->ev_name[i], name)) i++;
            if (i == s->n_ev && s->n_ev < 8) snprintf(s->ev_name[s->n_ev++], 64, "%s", name);
            if (i < s->n_ev && isfinite(v)) s->ev_sum[i] += w * v, s->ev_w[i] += w;
        }
        m = *end ? end + 1 : end;
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static client_rec *find_client(srv *s, const char *id, int add) {
    for (int i = 0; i < s->ncl; i++)
        if (!strcmp(s->cl[i].id, id)) return &s->cl[i];
    if (!add) return NULL;
    if (s->ncl == s->capcl) {
        int cap = s->capcl ? 2 * s->capcl : 16;
        client_rec *c = realloc(s->cl, (size_t)cap * sizeof *c);
        if (!c) return NULL;
        s->cl = c, s->capcl = cap;
    }
    client_rec *c = &s->cl[s->ncl++];
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    return c;
}

static int is_waiting(const srv *s, const client_rec *c, double t) {
    int busy = s->open && c->sampled == s->attempt && c->answered != s->attempt;
    return !busy && t - c->seen < WAITING_SECONDS;
}

static int check_auth(srv *s, const kiln_web_request *q, kiln_web_response *r) {
    if (s->o->client_ca && !q->client_cert_ok) {
        kiln_web_error(r, 403, "a client certificate signed by the server's CA is required");
        return 0;
    }
    if (!s->o->token) return 1;
    const char *a = kiln_web_header(q, "Authorization");
    if (!a) {
        kiln_web_error(r, 401, "missing Authorization: Bearer <token>");
        return 0;
    }
    if (strcmp(a, s->auth)) {
        kiln_web_error(r, 403, "wrong token");
        return 0;
    }
    return 1;
}

static void handle_task(srv *s, const kiln_web_request *q, kiln_web_response *r) {
    const char *id = kiln_web_arg(q, "client");
    if (!id || !*id || strlen(id) >= 128) {
        kiln_web_error(r, 400, "?client=ID (1 to 127 characters) is required");
        return;
    }
    pthread_mutex_lock(&s->mu);
    client_rec *c = find_client(s, id, 1);
    if (!c) {
        pthread_mutex_unlock(&s->mu);
        kiln_web_error(r, 500, "out of memory");
        return;
    }
    c->seen = now_s();
    pthread_cond_broadcast(&s->cv);
    if (s->done) {
        pthread_mutex_unlock(&s->mu);
        kiln_web_json(r, 410, "{\"done\": true}");
        return;
    }
    if (s->open && c->sampled == s->attempt && c->answered != s->attempt && s->task) {
        r->body = malloc(s->task_len);
        if (r->body) memcpy(r->body, s->task, s->task_len), r->body_len = s->task_len;
        r->content_type = "application/octet-stream";
        pthread_mutex_unlock(&s->mu);
        if (!r->body) kiln_web_error(r, 500, "out of memory");
        return;
    }
    pthread_mutex_unlock(&s->mu);
    r->status = 204, r->retry_after = "1";
}

static void handle_update(srv *s, const kiln_web_request *q, kiln_web_response *r) {
    const char *id = kiln_web_arg(q, "client"), *rs = kiln_web_arg(q, "round");
    if (!id || !rs) {
        kiln_web_error(r, 400, "?client=ID&round=R are required");
        return;
    }
    int round = atoi(rs);
    pthread_mutex_lock(&s->mu);
    client_rec *c = find_client(s, id, 0);
    int attempt = s->attempt;
    if (!s->open || round != s->round || !c || c->sampled != attempt || c->answered == attempt) {
        const char *why = !c || c->sampled != attempt
                              ? "this client was not sampled into the open round"
                          : c->answered == attempt ? "this client already answered this round"
                          : !s->open               ? "the round is closed"
                                                   : "not the open round";
        int cur = s->round;
        pthread_mutex_unlock(&s->mu);
        kiln_web_error(r, 409, "update for round %d refused: %s (round %d)", round, why, cur);
        return;
    }
    c->seen = now_s();
    pthread_mutex_unlock(&s->mu);
    /* parse outside the lock: the global weights do not change while the round is open */
    int sa = s->o->secure_agg;
    float *u = calloc(s->G.n, sizeof *u); /* the layout's gaps stay 0 */
    uint64_t *mu = sa ? calloc(s->G.n, sizeof *mu) : NULL;
    char sm[64] = "";
    kiln_status st = u && (mu || !sa) ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "out of memory");
    if (!st && sa)
        st = kiln_fl_decode_masked(s->G.m.graph, q->body, q->body_len, "update", mu);
    else if (!st)
        st = kiln_fl_decode(s->G.m.graph, q->body, q->body_len, "update", u);
    double samples = 0, norm = 0;
    char metrics[1024] = "";
    if (!st) kiln_fl_meta(q->body, q->body_len, "metrics", metrics, sizeof metrics);
    if (!st && (kiln_fl_meta(q->body, q->body_len, "samples", sm, sizeof sm) ||
                !((samples = strtod(sm, NULL)) > 0) || samples > 1e12))
        st = kiln_error(KILN_ERR_INVALID, "update: metadata 'samples' must be a positive count");
    pthread_mutex_lock(&s->mu);
    int still = s->open && s->attempt == attempt;
    if (!st && still && !sa)
        st = kiln_fl_check_update(&s->G.strat.o, s->G.global, u, s->G.n, &norm);
    if (still) {
        c->answered = attempt;
        if (!st) add_client_metrics(s, metrics, samples);
        if (st)
            s->rejected++;
        else if (sa)
            kiln_fl_secagg_add(s->msum, mu, s->G.n), s->received++, s->samples += samples;
        else
            kiln_fl_accum_add(&s->G.acc, u, kiln_fl_weight(&s->G.strat.o, samples)), s->received++,
                s->samples += samples, s->norm_sum += norm;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    free(u);
    free(mu);
    if (!still)
        kiln_web_error(r, 409, "update for round %d refused: the round closed", round);
    else if (st) {
        kiln_fl_log(&s->G, "round %d: refused the update of client %s: %s", round, id,
                    kiln_last_error());
        kiln_web_error(r, 400, "%s", kiln_last_error());
    } else
        kiln_web_json(r, 200, "{\"accepted\": true}");
}

static void handle_status(srv *s, kiln_web_response *r) {
    char b[512];
    pthread_mutex_lock(&s->mu);
    snprintf(b, sizeof b,
             "{\"round\": %d, \"rounds\": %d, \"open\": %s, \"done\": %s, "
             "\"clients\": %d, \"sampled\": %d, \"received\": %d, \"rejected\": %d}",
             s->round, s->o->rounds, s->open ? "true" : "false", s->done ? "true" : "false", s->ncl,
             s->target, s->received, s->rejected);
    pthread_mutex_unlock(&s->mu);
    kiln_web_json(r, 200, b);
}

static void handler(void *ctx, const kiln_web_request *q, kiln_web_response *r) {
    srv *s = ctx;
    if (!check_auth(s, q, r)) return;
    int get = !strcmp(q->method, "GET"), post = !strcmp(q->method, "POST");
    if (!strcmp(q->path, "/fl/v1/task") && get)
        handle_task(s, q, r);
    else if (!strcmp(q->path, "/fl/v1/update") && post)
        handle_update(s, q, r);
    else if (!strcmp(q->path, "/fl/v1/status") && get)
        handle_status(s, r);
    else if (!strcmp(q->path, "/fl/v1/task") || !strcmp(q->path, "/fl/v1/update") ||
             !strcmp(q->path, "/fl/v1/status"))
        kiln_web_error(r, 405, "%s is not allowed on %s", q->method, q->path);
    else
        kiln_web_error(r, 404, "no such endpoint: %s", q->path);
}

static void wait_until(srv *s, double t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double d = t - now_s();
    if (d <= 0) return;
    if (d > 0.2) d = 0.2;
    long ns = ts.tv_nsec + (long)(d * 1e9);
    ts.tv_sec += ns / 1000000000L, ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
}

/* Opens an attempt at round `round`: samples clients and encodes the task. Under the lock. */
static kiln_status open_round(srv *s, int round) {
    double t = now_s();
    int waiting = 0;
    for (int i = 0; i < s->ncl; i++) waiting += is_waiting(s, &s->cl[i], t);
    int target = (int)ceil(s->o->fraction_fit * waiting);
    if (target < s->o->min_clients) target = s->o->min_clients;
    if (target > waiting) target = waiting;
    s->attempt++;
    /* a random sample of the waiting clients: a partial Fisher-Yates over their indices */
    int *idx = malloc((size_t)(waiting ? waiting : 1) * sizeof *idx), k = 0;
    if (!idx) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < s->ncl; i++)
        if (is_waiting(s, &s->cl[i], t)) idx[k++] = i;
    uint64_t seed = (uint64_t)kiln_cfg_int(s->G.cfg, "seed", 1);
    for (int i = 0; i < target; i++) {
        int j = i + (int)kiln_rng_below(seed, 0x464c53, (uint64_t)s->attempt * 65536 + i,
                                        (uint32_t)(k - i));
        int tmp = idx[i];
        idx[i] = idx[j], idx[j] = tmp;
        s->cl[idx[i]].sampled = s->attempt;
    }
    free(idx);
    char r[32], e[32], mu[32], so[32];
    snprintf(r, sizeof r, "%d", round);
    snprintf(e, sizeof e, "%d", s->o->local_epochs > 0 ? s->o->local_epochs : 1);
    snprintf(mu, sizeof mu, "%.17g",
             s->o->strategy.kind == KILN_FL_FEDPROX ? s->o->strategy.mu : 0.0);
    snprintf(so, sizeof so, "%d", (round - 1) * 7919);
    char at[32], *cohort = NULL;
    snprintf(at, sizeof at, "%d", s->attempt);
    if (s->o->secure_agg) { /* the sampled ids, sorted: each client masks against the others */
        size_t cap = 1;
        for (int i = 0; i < s->ncl; i++) cap += strlen(s->cl[i].id) + 1;
        if (!(cohort = calloc(cap, 1))) return kiln_error(KILN_ERR_NOMEM, "out of memory");
        const char *last = "";
        for (int k2 = 0; k2 < target; k2++) { /* selection by increasing id */
            const char *next = NULL;
            for (int i = 0; i < s->ncl; i++)
                if (s->cl[i].sampled == s->attempt && strcmp(s->cl[i].id, last) > 0 &&
                    (!next || strcmp(s->cl[i].id, next) < 0))
                    next = s->cl[i].id;
            if (!next) break;
            if (k2) strcat(cohort, ",");
            strcat(cohort, next);
            last = next;
        }
        memset(s->msum, 0, s->G.n * sizeof *s->msum);
    }
    const char *meta[] = {
        "round", r,         "epochs", e,        "mu", mu,       "seed_offset",
        so,      "attempt", at,       "secagg", "1",  "cohort", cohort ? cohort : ""};
    free(s->task);
    s->task = NULL;
    kiln_status st =
        kiln_fl_encode(s->G.m.graph, s->G.global, meta, cohort ? 7 : 5, &s->task, &s->task_len);
    free(cohort);
    if (st) return st;
    s->round = round, s->target = target, s->received = s->rejected = 0;
    s->samples = s->norm_sum = 0;
    for (int i = 0; i < s->n_ev; i++) s->ev_sum[i] = s->ev_w[i] = 0;
    kiln_fl_accum_reset(&s->G.acc);
    s->open = 1;
    pthread_cond_broadcast(&s->cv);
    return KILN_OK;
}

static kiln_status run_rounds(srv *s) {
    const kiln_fl_server_opts *o = s->o;
    kiln_status st = KILN_OK;
    for (int round = s->G.round + 1; !st && round <= o->rounds; round++) {
        for (int tries = 0;; tries++) {
            pthread_mutex_lock(&s->mu);
            double t0 = now_s(), said = 0;
            int need = o->min_available > o->min_clients ? o->min_available : o->min_clients;
            for (;;) {
                int waiting = 0;
                double t = now_s();
                for (int i = 0; i < s->ncl; i++) waiting += is_waiting(s, &s->cl[i], t);
                if (waiting >= need) break;
                if (stop_signal) {
                    pthread_mutex_unlock(&s->mu);
                    s->G.stopped = 1;
                    return kiln_error(KILN_ERR_IO, "stopped by a signal before round %d", round);
                }
                if (o->wait_timeout > 0 && t - t0 > o->wait_timeout) {
                    pthread_mutex_unlock(&s->mu);
                    return kiln_error(KILN_ERR_IO,
                                      "round %d: fewer than %d clients came within "
                                      "%.0f s (--wait-timeout)",
                                      round, need, o->wait_timeout);
                }
                if (t - said > 30) {
                    said = t;
                    pthread_mutex_unlock(&s->mu);
                    kiln_fl_log(&s->G, "round %d: waiting for %d client%s (%d waiting)", round,
                                need, need == 1 ? "" : "s", waiting);
                    pthread_mutex_lock(&s->mu);
                }
                wait_until(s, now_s() + 0.2);
            }
            if ((st = open_round(s, round))) {
                pthread_mutex_unlock(&s->mu);
                return st;
            }
            double deadline = now_s() + o->round_timeout;
            while (s->received + s->rejected < s->target && now_s() < deadline && !stop_signal)
                wait_until(s, deadline);
            if (stop_signal) { /* the open round is abandoned: --resume runs it again */
                s->open = 0;
                pthread_mutex_unlock(&s->mu);
                s->G.stopped = 1;
                return kiln_error(KILN_ERR_IO, "stopped by a signal in round %d", round);
            }
            s->open = 0;
            int received = s->received, rejected = s->rejected, target = s->target;
            double samples = s->samples, norm = received ? s->norm_sum / received : 0;
            int ok = received >= o->min_clients;
            if (ok && o->secure_agg) { /* the masks cancel only when every member answered */
                ok = received == target && rejected == 0;
                if (ok) {
                    kiln_fl_secagg_unmask(s->msum, s->G.n, s->G.acc.sum);
                    s->G.acc.weight = samples, s->G.acc.count = received;
                }
            }
            if (ok) st = kiln_fl_strategy_apply(&s->G.strat, &s->G.acc, s->G.global);
            pthread_mutex_unlock(&s->mu);
            if (st) return st;
            if (ok) {
                char extra[512];
                size_t at = 0;
                for (int i = 0; i < s->n_ev; i++) /* federated evaluation */
                    if (s->ev_w[i] > 0) {
                        double v = s->ev_sum[i] / s->ev_w[i];
                        kiln_run_log_metric(s->G.run, round, round, KILN_SPLIT_VALIDATION,
                                            s->ev_name[i] + 4, v);
                        if (s->G.tb) {
                            char tag[96];
                            snprintf(tag, sizeof tag, "round_clients_%s", s->ev_name[i]);
                            kiln_tb_scalar(s->G.tb, tag, round, (float)v);
                        }
                        at += (size_t)snprintf(extra + at, sizeof extra - at, "clients_%s=%.4f ",
                                               s->ev_name[i], v);
                        if (at >= sizeof extra - 96) break;
                    }
                if (o->secure_agg)
                    snprintf(extra + at, sizeof extra - at, "(securely aggregated)");
                else
                    snprintf(extra + at, sizeof extra - at, "mean_update_norm=%.4g", norm);
                kiln_run_log_metric(s->G.run, round, round, KILN_SPLIT_TRAIN, "fl_update_norm",
                                    norm);
                st = kiln_fl_global_round(&s->G, round, received, samples, rejected, extra);
                break;
            }
            if (o->secure_agg && received >= o->min_clients)
                kiln_fl_log(&s->G,
                            "round %d: %d of %d cohort members answered (%d refused): secure "
                            "aggregation needs all of them; the round is retried",
                            round, received, target, rejected);
            else
                kiln_fl_log(&s->G,
                            "round %d: %d of %d sampled client%s answered with a valid update "
                            "(%d refused), fewer than --min-clients %d: the round is retried",
                            round, received, target, target == 1 ? "" : "s", rejected,
                            o->min_clients);
            if (tries + 1 > o->max_retries)
                return kiln_error(KILN_ERR_IO,
                                  "round %d failed %d times (too few clients answered)", round,
                                  tries + 1);
        }
    }
    return st;
}

static char *slurp(const char *path, kiln_status *st) {
    void *buf = NULL;
    size_t len = 0;
    if ((*st = kiln_file_read_all(path, &buf, &len, (size_t)1 << 20))) return NULL;
    return buf;
}

static kiln_status server_run(const kiln_fl_server_opts *o, kiln_fl_result *res,
                              kiln_train_signals *signals);

/* SIGINT and SIGTERM are blocked before any thread starts and taken by a watcher thread, never
 * on the thread that evaluates the global model (train/signals.h says why). */
kiln_status kiln_fl_server(const kiln_fl_server_opts *o, kiln_fl_result *res) {
    kiln_train_signals sig;
    const int stops[2] = {SIGINT, SIGTERM};
    kiln_train_signals_begin(&sig, on_signal, stops, 2);
    kiln_status st = server_run(o, res, &sig);
    kiln_train_signals_end(&sig);
    return st;
}

static kiln_status server_run(const kiln_fl_server_opts *o, kiln_fl_result *res,
                              kiln_train_signals *signals) {
    memset(res, 0, sizeof *res);
    res->accuracy = NAN;
    srv s;
    memset(&s, 0, sizeof s);
    s.o = o;
    if (o->token) snprintf(s.auth, sizeof s.auth, "Bearer %s", o->token);
    kiln_status st = KILN_OK;
    char *cert = NULL, *key = NULL, *ca = NULL;
    if (o->tls_cert && !(cert = slurp(o->tls_cert, &st))) goto usage;
    if (o->tls_key && !(key = slurp(o->tls_key, &st))) goto usage;
    if (o->client_ca && !(ca = slurp(o->client_ca, &st))) goto usage;
    int usage = 0;
    st = kiln_fl_global_open(&s.G, o, "server", &usage);
    snprintf(res->run_dir, sizeof res->run_dir, "%s", s.G.dir);
    if (st) {
        res->usage_error = usage;
        kiln_fl_global_close(&s.G, st);
        goto out;
    }
    if (o->secure_agg && !(s.msum = calloc(s.G.n ? s.G.n : 1, sizeof *s.msum))) {
        st = kiln_fl_global_close(&s.G, kiln_error(KILN_ERR_NOMEM, "out of memory"));
        goto out;
    }
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    kiln_web_config wc = {
        .host = o->host, .port = o->port, .cert_pem = cert, .key_pem = key, .client_ca_pem = ca};
    kiln_web_server *w = kiln_web_start(&wc, handler, &s);
    if (!w) {
        st = KILN_ERR_IO;
        kiln_fl_global_close(&s.G, st);
        goto out_sync;
    }
    int port = kiln_web_port(w);
    kiln_fl_log(&s.G,
                "fl server: %s on %s://%s:%d, %d rounds, strategy %s, min %d clients, "
                "fraction %.3g, %d local epoch%s; run %s",
                s.G.round ? "resumed" : "listening", cert ? "https" : "http",
                o->host ? o->host : "127.0.0.1", port, o->rounds,
                kiln_fl_kind_name(o->strategy.kind), o->min_clients, o->fraction_fit,
                o->local_epochs, o->local_epochs == 1 ? "" : "s", s.G.dir);
    if (o->port_file) {
        char p[32];
        int n = snprintf(p, sizeof p, "%d\n", port);
        kiln_file_write_atomic(o->port_file, p, (size_t)n);
    }
    stop_signal = 0;
    kiln_train_signals_arm(signals);
    st = run_rounds(&s);
    kiln_train_signals_disarm(signals);
    /* over: clients polling now learn it (410); give them a moment to hear it */
    pthread_mutex_lock(&s.mu);
    s.done = 1;
    s.open = 0;
    pthread_mutex_unlock(&s.mu);
    if (!st) {
        double until = now_s() + 3;
        while (now_s() < until) {
            pthread_mutex_lock(&s.mu);
            int left = 0;
            for (int i = 0; i < s.ncl; i++) left += now_s() - s.cl[i].seen < 1.5;
            pthread_mutex_unlock(&s.mu);
            if (!left) break;
            struct timespec ts = {0, 100000000L};
            nanosleep(&ts, NULL);
        }
    }
    kiln_web_stop(w);
    res->accuracy = s.G.last_acc;
    if (st) kiln_fl_log(&s.G, "error: %s", kiln_last_error());
    st = kiln_fl_global_close(&s.G, st);
    if (!st) printf("fl server: finished: %s\n", res->run_dir);
out_sync:
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
out:
    free(s.cl);
    free(s.task);
    free(s.msum);
    kiln_free(cert), kiln_free(key), kiln_free(ca);
    return st;
usage:
    res->usage_error = 1;
    goto out;
}

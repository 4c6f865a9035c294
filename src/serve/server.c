/* server.c — starting and stopping the model server, its poller thread and its metrics
 * (include/kiln/serve.h).
 *
 * Start order: metrics, repository, one synchronous poll (what is on disk is loaded and warm
 * before the port opens), batchers, HTTP, poller. Stop order is the reverse of what depends on
 * what: HTTP first (no new requests; those in flight, parked ones included, finish while the
 * batch threads still run), then the batchers (they drain their queue), then the poller, then
 * the versions.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/serve_internal.h"

static void *poller_main(void *arg) {
    kiln_server *s = arg;
    serve_thread_setup(s);
    double wait = s->cfg.poll_wait_seconds;
    pthread_mutex_lock(&s->poll_mu);
    while (!s->stopping) {
        if (s->poll_asked == s->poll_done) {
            if (wait > 0) {
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                int64_t ns = until.tv_nsec + (int64_t)(wait * 1e9);
                until.tv_sec += ns / 1000000000;
                until.tv_nsec = ns % 1000000000;
                pthread_cond_timedwait(&s->poll_cv, &s->poll_mu, &until);
            } else {
                pthread_cond_wait(&s->poll_cv, &s->poll_mu);
                if (s->poll_asked == s->poll_done) continue;
            }
            if (s->stopping) break;
        }
        int64_t asked = s->poll_asked;
        pthread_mutex_unlock(&s->poll_mu);
        serve_repo_poll(s);
        pthread_mutex_lock(&s->poll_mu);
        s->poll_done = asked;
        pthread_cond_broadcast(&s->poll_cv);
    }
    pthread_mutex_unlock(&s->poll_mu);
    return NULL;
}

void kiln_serve_poll_now(kiln_server *s) {
    pthread_mutex_lock(&s->poll_mu);
    int64_t ticket = ++s->poll_asked;
    pthread_cond_broadcast(&s->poll_cv);
    while (s->poll_done < ticket && !s->stopping) pthread_cond_wait(&s->poll_cv, &s->poll_mu);
    pthread_mutex_unlock(&s->poll_mu);
}

static kiln_status make_metrics(kiln_server *s) {
    int nl, nb;
    const double *lat = kiln_prom_latency_buckets(&nl), *bat = kiln_prom_batch_buckets(&nb);
    static const char *req_labels[] = {"model", "version", "api", "code"};
    static const char *model_api[] = {"model", "api"}, *model[] = {"model"},
                      *model_version[] = {"model", "version"};
    s->prom = kiln_prom_new();
    if (!s->prom) return kiln_error(KILN_ERR_NOMEM, "serve: out of memory");
    s->f_requests = kiln_prom_counter(s->prom, "kiln_requests_total",
                                      "Requests answered, by model, version, API and HTTP status.",
                                      4, req_labels);
    s->f_latency = kiln_prom_histogram(s->prom, "kiln_request_duration_seconds",
                                       "Time from a request's arrival to its answer, seconds.", 2,
                                       model_api, lat, nl);
    s->f_batch = kiln_prom_histogram(s->prom, "kiln_batch_size",
                                     "Rows per inference run (a batch, or one request).", 1, model,
                                     bat, nb);
    s->f_loaded = kiln_prom_gauge(s->prom, "kiln_model_version_loaded",
                                  "1 while a version is loaded and serving, 0 after it unloads.", 2,
                                  model_version);
    s->f_failures = kiln_prom_counter(s->prom, "kiln_model_load_failures_total",
                                      "Versions that failed to load.", 1, model);
    s->f_queue = kiln_prom_gauge(s->prom, "kiln_batch_queue_rows",
                                 "Rows waiting in the batching queue.", 0, NULL);
    if (!s->f_requests || !s->f_latency || !s->f_batch || !s->f_loaded || !s->f_failures ||
        !s->f_queue || !(s->queue_rows = kiln_prom_series_of(s->f_queue, NULL)))
        return KILN_ERR_NOMEM;
    return KILN_OK;
}

static int cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void free_server(kiln_server *s) {
    serve_repo_free(s);
    kiln_prom_free(s->prom);
    pthread_mutex_destroy(&s->poll_mu);
    pthread_cond_destroy(&s->poll_cv);
    free(s);
}

kiln_server *kiln_serve_start(const kiln_serve_config *c) {
    kiln_server *s = calloc(1, sizeof *s);
    if (!s) {
        kiln_error(KILN_ERR_NOMEM, "serve: out of memory");
        return NULL;
    }
    s->cfg = *c;
    kiln_serve_batching *bc = &s->cfg.batching;
    if (bc->max_batch_size <= 0) bc->max_batch_size = 128;
    if (bc->batch_timeout_micros < 0) bc->batch_timeout_micros = 1000;
    if (bc->num_batch_threads <= 0) bc->num_batch_threads = cpus();
    if (bc->max_enqueued_batches <= 0) bc->max_enqueued_batches = 64;
    if (s->cfg.http_threads <= 0) s->cfg.http_threads = cpus();
    if (s->cfg.poll_wait_seconds < 0) s->cfg.poll_wait_seconds = 1;
    int want_rows = bc->enabled && bc->max_batch_size > 64 ? bc->max_batch_size : 64;
    s->max_rows = s->cfg.max_rows > 0 ? s->cfg.max_rows : want_rows;
    if (s->max_rows > (1 << (SERVE_MAX_BUCKETS - 1))) s->max_rows = 1 << (SERVE_MAX_BUCKETS - 1);
    s->n_slots = s->cfg.http_threads + (bc->enabled ? bc->num_batch_threads : 0);
    pthread_mutex_init(&s->poll_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->poll_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (make_metrics(s) || serve_repo_init(s)) {
        kiln_error_prefix("serve");
        free_server(s);
        return NULL;
    }
    serve_thread_setup(s);
    serve_repo_poll(s);
    if (bc->enabled && serve_batcher_start(s)) {
        serve_batcher_stop(s->batcher);
        free_server(s);
        return NULL;
    }
    kiln_http_config hc = {.host = s->cfg.host ? s->cfg.host : "0.0.0.0",
                           .port = s->cfg.port,
                           .threads = s->cfg.http_threads,
                           .max_body_bytes = s->cfg.max_body_bytes,
                           .request_timeout_seconds = s->cfg.request_timeout_seconds,
                           .cors_allowed_origins = s->cfg.cors_allowed_origins};
    s->http = kiln_http_start(&hc, serve_route, s);
    if (!s->http) {
        serve_batcher_stop(s->batcher);
        free_server(s);
        return NULL;
    }
    /* The poller also runs with poll_wait_seconds 0: it then polls only when asked. */
    if (pthread_create(&s->poller, NULL, poller_main, s) == 0) s->poller_started = 1;
    return s;
}

int kiln_serve_port(const kiln_server *s) {
    return kiln_http_port(s->http);
}

void kiln_serve_stop(kiln_server *s) {
    if (!s) return;
    serve_batcher_flush(s->batcher);
    kiln_http_stop(s->http, s->cfg.drain_seconds > 0 ? s->cfg.drain_seconds : 10);
    serve_batcher_stop(s->batcher);
    pthread_mutex_lock(&s->poll_mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->poll_cv);
    pthread_mutex_unlock(&s->poll_mu);
    if (s->poller_started) pthread_join(s->poller, NULL);
    free_server(s);
}

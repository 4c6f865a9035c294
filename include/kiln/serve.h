/* kiln/serve.h — the model server behind `kiln serve`: a model repository that loads servable
 * versions (kiln/export.h) from base folders and swaps new ones in while it serves, an optional
 * dynamic batcher, and two REST dialects (TF Serving v1 and the Open Inference Protocol v2) plus
 * Prometheus metrics on one port (routes in docs/serving.md, DESIGN.md §6).
 *
 * Models and versions. Each configured model has a base folder of version folders and a version
 * policy: the latest N versions (default 1), all, or specific ones; labels map names to
 * versions. A poller thread lists every base folder every poll_wait_seconds (and once at start,
 * before the port opens, so a server that answers has loaded what was there) and compares the
 * complete versions it finds (kiln_export_list_versions: half-written .tmp-* folders are never
 * seen) with the policy:
 *   - a wanted version that is not loaded is loaded and warmed up on the poller thread (graph
 *     rebuilt, weights read, a batch-1 plan compiled and run once for every worker slot), then
 *     inserted into the model's table under its mutex: requests see it from that instant;
 *   - a loaded version no longer wanted is taken out of the table; requests running on it hold
 *     a reference and finish on it, and the last one to let go frees it;
 *   - a version that fails to load is logged once and marked failed (reported by the status
 *     API); it is tried again only when its model.json or weights change. The versions already
 *     loaded keep serving.
 * A request resolves its version (latest, a number, or a label) by taking a reference under
 * the model's mutex (a few loads and one increment), so swaps never block on inference.
 *
 * Inference. A loaded version owns one execution slot per worker thread (HTTP workers and batch
 * threads); a slot holds inference plans compiled per batch size bucket (1, 2, 4, ... up to
 * max_rows), so a request of r rows runs on the smallest bucket >= r, padded; longer requests
 * run in chunks of the largest bucket. Plans are compiled when a bucket is first used (batch 1
 * at load). Each worker runs oneDNN with intra_op_threads threads (default 1: concurrency comes
 * from the workers). Inputs are raw values as in the training data: the export's preprocessing
 * (scale, mean/std) is applied by the server.
 *
 * Batching (batching.enabled): a request is parked (kiln_http_defer) and its rows queued on its
 * model's queue; num_batch_threads threads take the oldest request, add queued requests for the
 * same version until max_batch_size rows or until batch_timeout_micros have passed since the
 * oldest arrived, run them as one batch, and answer each. A request that would take the queue
 * over max_enqueued_batches * max_batch_size rows is answered 429 at once. A request larger
 * than max_batch_size runs alone, in chunks.
 *
 * Lifecycle. kiln_serve_start loads, warms up and listens; kiln_serve_stop stops accepting,
 * lets requests in flight finish (up to drain_seconds), stops the batchers and the poller and
 * frees every version. Threads: start and stop from one thread; everything else is internal.
 */
#ifndef KILN_SERVE_H
#define KILN_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

typedef enum {
    KILN_VERSIONS_LATEST = 0, /* the newest latest_n versions */
    KILN_VERSIONS_ALL,
    KILN_VERSIONS_SPECIFIC, /* the listed versions */
} kiln_version_policy;

typedef struct {
    const char *label;
    int64_t version;
} kiln_version_label;

typedef struct {
    const char *name;      /* the model name in URLs: [A-Za-z0-9_.-]+ */
    /* A folder of version folders, or a model registry URI (kiln/registry.h) of runs_dir:
     * "models:/NAME@ALIAS" or "models:/NAME/VERSION" serve that one version, re-resolved at
     * every poll (moving the alias swaps the served version); "models:/NAME" serves the
     * model's versions by the policy below. */
    const char *base_path;
    const char *runs_dir; /* for models:/ URIs; NULL = "runs" */
    kiln_version_policy policy;
    int latest_n;              /* KILN_VERSIONS_LATEST: how many (0 means 1) */
    const int64_t *versions;   /* KILN_VERSIONS_SPECIFIC: [n_versions] */
    int n_versions;
    const kiln_version_label *labels; /* [n_labels] */
    int n_labels;
} kiln_serve_model;

typedef struct {
    int enabled;
    int max_batch_size;           /* rows per batch; 0 = 128 */
    int64_t batch_timeout_micros; /* how long the oldest request may wait for company; -1 = 1000 */
    int num_batch_threads;        /* 0 = the number of CPUs */
    int max_enqueued_batches;     /* queue capacity in batches; 0 = 64 */
} kiln_serve_batching;

typedef struct {
    const char *host; /* NULL = "0.0.0.0" (TF Serving listens on every address) */
    int port;         /* 0 = any free port (kiln_serve_port says which) */
    int http_threads; /* REST worker threads; 0 = the number of CPUs */
    int intra_op_threads;            /* oneDNN threads per inference; 0 = 1 */
    int request_timeout_seconds;     /* idle connections close; 0 = 30 */
    size_t max_body_bytes;           /* 0 = 64 MiB; larger bodies get 413 */
    double poll_wait_seconds;        /* 0 = poll once at start only; < 0 = 1 */
    int max_rows;                    /* largest plan batch; 0 = max(64, max_batch_size) */
    double drain_seconds;            /* kiln_serve_stop waits this long for requests in flight */
    /* CORS for browser clients (kiln/http.h): NULL = off (TF Serving's default), "*" = any
     * origin (TF Serving's --rest_api_enable_cors_support), or a comma-separated list of
     * origins. */
    const char *cors_allowed_origins;
    const kiln_serve_model *models; /* [n_models], names distinct */
    int n_models;
    kiln_serve_batching batching;
    /* Where log lines go ("loaded fashion version 3 (12.1 ms)"); NULL = stderr. Called from the
     * poller thread and the starting thread, one line at a time. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} kiln_serve_config;

typedef struct kiln_server kiln_server;

/* Checks the config, loads what the policies want (a model with no version yet is not an
 * error: it becomes available when one appears), starts the poller, the batchers and the
 * HTTP server. NULL (with message) on a bad config or a port that cannot be bound. */
kiln_server *kiln_serve_start(const kiln_serve_config *c);
int kiln_serve_port(const kiln_server *s);
/* Runs one poll of every model now, on the calling thread's behalf (the poller thread does
 * it; this waits until it has finished). For tests and for SIGHUP. */
void kiln_serve_poll_now(kiln_server *s);
/* Graceful stop (see above), then frees everything. NULL is a no-op. */
void kiln_serve_stop(kiln_server *s);

/* TF Serving's text-format config files, for `kiln serve --model_config_file` and
 * `--batching_parameters_file` (formats in docs/serving.md):
 *   model_config_list { config { name: 'a' base_path: '/m/a' model_platform: 'kiln'
 *     model_version_policy { latest { num_versions: 2 } }      (or all {} or
 *                                                                specific { versions: 3 ... })
 *     version_labels { key: 'stable' value: 3 } } config { ... } }
 *   max_batch_size { value: 64 } batch_timeout_micros { value: 2000 }
 *   num_batch_threads { value: 4 } max_enqueued_batches { value: 100 }
 * The parsed config owns its strings; free with kiln_serve_models_free. Errors name file:line. */
typedef struct {
    kiln_serve_model *models;
    int n_models;
    void *owned; /* the parsed text the strings point into */
} kiln_serve_models;
kiln_status kiln_serve_read_model_config(const char *path, kiln_serve_models *out);
void kiln_serve_models_free(kiln_serve_models *m);
kiln_status kiln_serve_read_batching_config(const char *path, kiln_serve_batching *out);

#endif

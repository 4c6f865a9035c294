/* serve_internal.h — the model server's parts, shared by its files:
 *   repo.c      models, versions, the poller, load / warm-up / swap, references
 *   infer.c     running rows through a version on the calling thread's execution slot
 *   batcher.c   the dynamic batching queue and its threads
 *   job.c       one prediction request: parse, run (directly or handed to the batcher)
 *   answer.c    the end of a request: its answer, its metrics, the version released
 *   routes.c    URL dispatch, the status / metadata / health endpoints of both dialects
 *   server.c    start and stop, metrics families
 *   log.c       the log line and the clock
 * Each calls only those after it: server, routes, job, batcher, answer, repo, infer, log.
 * The design and the guarantees are in include/kiln/serve.h.
 */
#ifndef KILN_SERVE_INTERNAL_H
#define KILN_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "kiln/export.h"
#include "kiln/http.h"
#include "kiln/prom.h"
#include "kiln/serve.h"
#include "kiln/tensor_json.h"

#define SERVE_MAX_BUCKETS 12 /* plan batch sizes 1, 2, 4, ... 2048 */

typedef struct kiln_server kiln_server;
typedef struct served_model served_model;

/* One worker's plans for one version: plans[b] has batch 1 << b (NULL until first used). */
typedef struct {
    pthread_mutex_t mu;
    kiln_plan *plans[SERVE_MAX_BUCKETS];
} exec_slot;

/* A loaded version. Freed when refs reaches 0: the table holds one reference while the version
 * is listed, every request using it one more. */
typedef struct served_version {
    atomic_int refs;
    served_model *model;
    int64_t version;
    char version_str[24];
    kiln_servable *sv;
    int64_t in_row, out_row; /* values per row of the input and of each output */
    kiln_shape row;          /* one instance of the input: its shape without the batch dim */
    int has_probs, n_classes;
    int n_slots;
    exec_slot *slots; /* [n_slots] */
    kiln_prom_series *loaded_gauge;
} served_version;

typedef enum { VS_LOADING = 0, VS_AVAILABLE, VS_UNLOADING, VS_END } version_state;

/* What the status API reports about a version this model has seen. */
typedef struct {
    int64_t version;
    version_state state;
    char *error;     /* a failed load's message (state VS_END), else NULL */
    char stamp[64];  /* the files' identity when it failed: retried only when it changes */
} version_record;

struct served_model {
    kiln_server *srv;
    char *name, *base_path; /* base_path: the resolved folder when uri is set (poller only) */
    char *uri, *runs_dir;   /* a models:/ URI, resolved at every poll; NULL for a folder */
    int64_t uri_version;    /* the version the URI names (0: by the policy) */
    char uri_error[256];    /* the last resolution error logged (so it is logged once) */
    kiln_version_policy policy;
    int latest_n;
    int64_t *versions; /* specific: [n_versions] */
    int n_versions;
    char **label_names; /* [n_labels] */
    int64_t *label_versions;
    int n_labels;
    pthread_mutex_t mu;       /* guards loaded and records */
    served_version **loaded;  /* [n_loaded], ascending versions */
    int n_loaded, cap_loaded;
    version_record *records;  /* [n_records], ascending versions */
    int n_records, cap_records;
    int warned_empty;         /* "no versions under base_path" logged (poller only) */
    kiln_prom_series *load_failures, *batch_sizes;
};

typedef struct batcher batcher;

struct kiln_server {
    kiln_serve_config cfg; /* copied; models point into `models` */
    served_model *models;
    int n_models;
    int n_slots; /* execution slots per version: HTTP workers + batch threads */
    int max_rows;
    kiln_http_server *http;
    batcher *batcher;
    /* the poller */
    pthread_t poller;
    int poller_started;
    pthread_mutex_t poll_mu;
    pthread_cond_t poll_cv;
    int stopping;                   /* under poll_mu */
    int64_t poll_asked, poll_done; /* kiln_serve_poll_now's generations (under poll_mu) */
    /* metrics */
    kiln_prom *prom;
    kiln_prom_family *f_requests, *f_latency, *f_batch, *f_loaded, *f_failures, *f_queue;
    kiln_prom_series *queue_rows;
};

/* ---- repo.c ---- */
kiln_status serve_repo_init(kiln_server *s);
/* One poll of every model (the poller thread's work; also run once by start). */
void serve_repo_poll(kiln_server *s);
void serve_repo_free(kiln_server *s);
served_model *serve_repo_find(kiln_server *s, const char *name);
/* How a request names its version. */
typedef enum { SEL_LATEST = 0, SEL_NUMBER, SEL_LABEL } version_sel_kind;
typedef struct {
    version_sel_kind kind;
    int64_t number;
    const char *label;
} version_sel;
/* The version number sel names (a label's version; sel->number otherwise; unused for latest):
 * 0, or -1 with a message for an unknown label (a bad request: 400, as in TF Serving). */
int serve_repo_sel_version(const served_model *m, const version_sel *sel, int64_t *version);
/* A referenced version, or NULL with *http_status (400 unknown label, 404 unknown version, 503
 * no version loaded yet) and a message (kiln_last_error). */
served_version *serve_repo_acquire(served_model *m, const version_sel *sel, int *http_status);
void serve_version_release(served_version *v);
/* 1 when the model has a record of this version (loading, loaded, unloaded or failed). */
int serve_repo_seen(served_model *m, int64_t version);
/* 1 when every model has at least one version loaded. */
int serve_repo_ready(kiln_server *s);
/* The version numbers loaded now (ascending) into out (cap entries); returns how many. */
int serve_repo_loaded(served_model *m, int64_t *out, int cap);
const char *serve_version_state_name(version_state st);

/* ---- explain.c ---- */
/* POST ...:explain (KServe v1's explain verb): attributions of the body's instances; sets
 * *version_str to the version that answered (for the metrics). */
void serve_explain_handle(kiln_server *s, served_model *m, const version_sel *sel,
                          const kiln_http_request *req, kiln_http_response *resp,
                          const char **version_str);

/* ---- infer.c ---- */
/* Runs rows raw rows x [rows, in_row] (preprocessed in place) through v on the calling
 * thread's slot: out [rows, out_row], probs [rows, out_row] (NULL without probabilities). */
kiln_status serve_infer(kiln_server *s, served_version *v, float *x, int64_t rows, float *out,
                        float *probs);
/* Compiles and runs the batch-1 plan of every slot once (at load, off the request path). */
kiln_status serve_warm_up(kiln_server *s, served_version *v);
void serve_slots_free(served_version *v);
/* Sets this thread's oneDNN thread count once. */
void serve_thread_setup(kiln_server *s);

/* ---- job.c ---- */
typedef enum { API_V1 = 0, API_V2 } serve_api;

/* One predict / infer request from arrival to answer. */
typedef struct serve_job {
    kiln_server *srv;
    served_version *v; /* referenced */
    serve_api api;
    kiln_tj_request req;
    float *x;     /* [rows, in_row]: the parsed input's buffer, or decoded images */
    float *x_owned; /* the decoded images (freed with the job) */
    int images;     /* the body has {"b64": ...} values: the input is read as bytes */
    int64_t rows;
    float *out, *probs; /* [rows, out_row] each; probs NULL without probabilities */
    unsigned want;      /* which outputs to write: bits OUT_* */
    unsigned binary;    /* v2: which of them go as binary tensor data: bits OUT_* */
    struct timespec start;
    kiln_http_deferred *token; /* batched: the parked request */
    struct timespec queued;
    struct serve_job *next;
} serve_job;

enum { OUT_LOGITS = 1, OUT_PROBS = 2, OUT_CLASSES = 4 };

/* Handles POST .../:predict (v1) and .../infer (v2) for model m. */
void serve_job_handle(kiln_server *s, served_model *m, const version_sel *sel, serve_api api,
                      const kiln_http_request *req, kiln_http_response *resp);

/* ---- answer.c ---- */
/* Writes the job's answer (or err: an HTTP status and message, for a failed batch), counts it
 * in the metrics, releases the version and frees the job. */
void serve_job_finish(serve_job *j, kiln_http_response *resp, int err_status, const char *err);
/* Counts one answered request in the metrics. */
void serve_count(kiln_server *s, const char *model, const char *version, const char *api,
                 int status, const struct timespec *start);
/* "v1_predict" or "v2_infer": the api label of the metrics. */
const char *serve_api_name(serve_api api);

/* ---- batcher.c ---- */
kiln_status serve_batcher_start(kiln_server *s);
/* Parks req (kiln_http_defer) and queues the job: 0. Or -1, with nothing done, when its rows
 * would take the queue over capacity (the caller answers 429). */
int serve_batcher_submit(batcher *b, serve_job *j, const kiln_http_request *req);
/* From now on batches run as soon as a thread is free (no waiting for company): a stop is
 * coming and parked requests should finish within the drain time. */
void serve_batcher_flush(batcher *b);
/* Stops the threads after they have answered everything queued. */
void serve_batcher_stop(batcher *b);

/* ---- routes.c ---- */
void serve_route(void *ctx, const kiln_http_request *req, kiln_http_response *resp);

/* ---- log.c ---- */
double serve_seconds_since(const struct timespec *t0);
/* Logs a line through the config's log callback. */
void serve_log(kiln_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

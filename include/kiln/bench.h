/* kiln/bench.h — latency and throughput of a model, like Triton's perf_analyzer (kiln bench,
 * docs/optimize.md). For every batch size B and concurrency N asked for, N workers each send
 * one request of B rows after another (a closed loop: a worker waits for its answer before the
 * next) for warmup + duration seconds; requests that start during the warm-up are not counted.
 * A worker with no counted answer when the time is up sends one more, so a point has at least
 * one answer per worker even when one request takes longer than the duration.
 *
 * Two targets:
 *  - in-process: a servable version folder (kiln_servable_load). Each worker has its own
 *    inference plan (kiln_servable_plan_new) and runs kiln_servable_predict on a fixed batch of
 *    inputs; the threads given (0: the online CPUs) are split over the N workers, each worker's
 *    OpenMP team getting max(1, threads / N). Preprocessing and JSON are not part of it.
 *  - a server over REST: TF Serving's v1 (`POST /v1/models/M[/versions/V]:predict` with
 *    {"instances": [...]}) or the Open Inference Protocol v2 (`POST
 *    /v2/models/M[/versions/V]/infer` with one FP32 input tensor). The input's name and row shape
 *    come from the server's metadata (v1 `.../metadata`, v2 `GET /v2/models/M`). Each worker has
 *    its own connection (a kiln_client: libcurl, kept alive). The body is built once per batch
 *    size; a request counts as an error unless it is answered with HTTP 200.
 *
 * Inputs are deterministic pseudo-random values (the same for every run): in [0, 1) in-process,
 * in [0, 255] over REST (raw pixel-like values: kiln serve applies the export's preprocessing).
 *
 * Latency is a request's wall time (microseconds, CLOCK_MONOTONIC), percentiles by nearest
 * rank over every counted request. Throughput is counted requests (and rows) divided by the
 * time from the end of the warm-up to the last counted answer.
 */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

#include <stdint.h>

#include "kiln/status.h"

#define KILN_BENCH_MAX_POINTS 16 /* batch sizes, and concurrencies, asked for in one run */

typedef struct {
    const char *model_dir; /* in-process: a servable version folder; or NULL with server */
    const char *server;    /* REST: "http://host:port" ("host:port" too) */
    const char *model;     /* REST: the model's name */
    int64_t version;       /* REST: 0 for the server's choice */
    int protocol;          /* REST: 1 (TF Serving v1, the default when 0) or 2 (v2) */
    int batches[KILN_BENCH_MAX_POINTS], n_batches;         /* rows per request, >= 1 */
    int concurrency[KILN_BENCH_MAX_POINTS], n_concurrency; /* workers, >= 1 */
    double duration_s;                                     /* measured seconds per point (> 0) */
    double warmup_s;  /* not counted, before each point (>= 0) */
    int threads;      /* in-process: OpenMP threads in all (0: the online CPUs) */
    double timeout_s; /* REST: per request (0: 60) */
} kiln_bench_opts;

typedef struct {
    int batch, concurrency;
    int threads_per_worker; /* in-process; 0 over REST */
    int64_t requests, rows, errors;
    double seconds; /* the measured window */
    double req_per_s, rows_per_s;
    double p50_ms, p90_ms, p99_ms, mean_ms, min_ms, max_ms;
} kiln_bench_point;

typedef struct {
    char target[4400];     /* the version folder, or the model's URL */
    char mode[16];         /* "in-process", "rest-v1", "rest-v2" */
    char precision[64];    /* in-process: what the servable runs in (fp32, int8, ...) */
    char isa[32];          /* in-process: oneDNN's instruction set */
    int64_t input_row;     /* values per input row */
    char first_error[512]; /* the first failed request's message ("" when none failed) */
    int n_points;
    kiln_bench_point points[KILN_BENCH_MAX_POINTS * KILN_BENCH_MAX_POINTS];
} kiln_bench_result;

/* Parses "1,8,64" into out (at most KILN_BENCH_MAX_POINTS values, each 1..max); -1 on a bad
 * list. */
int kiln_bench_parse_list(const char *s, int *out, int max);
/* Parses "5s", "500ms", "2.5" (seconds) into *seconds; -1 when it is not a duration. */
int kiln_bench_parse_duration(const char *s, double *seconds);

/* Runs every (batch, concurrency) point, batch-major. KILN_ERR_INVALID for bad options,
 * KILN_ERR_NOTFOUND / KILN_ERR_FORMAT for a version that cannot be loaded, KILN_ERR_IO when the
 * server cannot be reached or its metadata cannot be read. Failed requests during a point do
 * not fail the run: they are counted in errors (first_error says why). */
kiln_status kiln_bench_run(const kiln_bench_opts *o, kiln_bench_result *r);

/* The result as one JSON object (malloc'd; free()): {"target", "mode", "precision", "isa",
 * "points": [{"batch", "concurrency", "requests", "rows", "errors", "seconds", "req_per_s",
 * "rows_per_s", "latency_ms": {"p50", "p90", "p99", "mean", "min", "max"}}, ...]}. */
char *kiln_bench_json(const kiln_bench_result *r);

#endif

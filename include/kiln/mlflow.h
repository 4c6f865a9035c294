/* kiln/mlflow.h — kiln as an MLflow client (src/registry/mlflow_client.c): a kiln run folder
 * mirrored to an MLflow tracking server (MLflow's own, or kiln board's MLflow API) with the
 * requests of MLflow's REST API 2.0 that MLflow's clients send, so teams keep their MLflow UI.
 *
 * What goes where (docs/tracking.md, "## MLflow"): the run's experiment -> an experiment of
 * that name (experiments/get-by-name, else experiments/create); the run -> runs/create
 * (run_name, start_time, tags mlflow.runName, kiln.run_id, kiln.host, kiln.command); its
 * config.yaml flattened (optimizer.adam.learning_rate) -> params (log-batch, 100 a request);
 * metrics.jsonl -> metrics (log-batch, 1000 a request: key "loss", "val_loss", "test_loss" by
 * split, step as step, wall_time as timestamp in ms); its status and end time -> runs/update
 * (running RUNNING, finished FINISHED, failed FAILED, stopped and pruned KILLED); model versions
 * registered from the run (kiln models register) -> registered-models/create and
 * model-versions/create (source: the version folder).
 *
 * Incremental and idempotent. What has been sent is recorded in the run folder
 * (mlflow-sync.json, per server): the MLflow run id, the byte offset reached in metrics.jsonl,
 * the config hash whose params were sent, the status sent, the model versions sent. A sync sends
 * only what is new, so it can be repeated at any time, and a server that was down gets
 * everything missed at the next sync (the run folder is the buffer). A point is sent at least
 * once: a crash between a log-batch and the record of it re-sends that batch.
 */
#ifndef KILN_MLFLOW_H
#define KILN_MLFLOW_H

#include <stdint.h>

#include "kiln/registry.h"
#include "kiln/run.h"
#include "kiln/status.h"

typedef struct {
    const char *uri;        /* "mlflow+http://host:5000", "mlflow+https://...", or http(s)://... */
    const char *token;      /* NULL: the environment's MLFLOW_TRACKING_TOKEN (none when unset) */
    double timeout_seconds; /* per request; 0: 30 */
} kiln_mlflow_target;

typedef struct {
    char run_id[128];                /* the MLflow run id */
    char experiment_id[64];          /* the MLflow experiment id */
    int created;                     /* 1 when this sync created the MLflow run */
    int64_t metrics, params, models; /* sent by this sync */
} kiln_mlflow_sync_stats;

/* 1 when s is an MLflow tracking URI kiln mirrors to: mlflow+http:// or mlflow+https://. */
int kiln_mlflow_is_uri(const char *s);

/* Mirrors the run folder run_dir (<runs_dir>/<experiment>/<run-id>) to the server. reg (may be
 * NULL) is the registry of its runs folder: the run's registered model versions are sent too.
 * KILN_ERR_IO when the server cannot be reached or answers an error (the message names the
 * request and MLflow's error_code and message); KILN_ERR_NOTFOUND when run_dir is no run. */
kiln_status kiln_mlflow_sync_run(const kiln_mlflow_target *t, const char *run_dir,
                                 kiln_registry *reg, kiln_mlflow_sync_stats *stats);

/* Mirrors run live while it is written, as its kiln_run_follower (kiln/run.h): a sync at most
 * once a second as points come, at each save of run.json that changes the status, and at the
 * close (with the run's model versions). Never fails the run: the first error is written to
 * log.txt and stderr once, and later syncs catch up. uri is copied. */
void kiln_mlflow_follow_run(kiln_rundir *run, const char *uri);

#endif

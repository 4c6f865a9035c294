/* board_mlflow.h — kiln board's MLflow-compatible REST API (library-private), shared by:
 *   board_mlflow.c         routing under /api/2.0/mlflow/ and /ajax-api/2.0/mlflow/, the bearer
 *                          token, request fields (JSON body or query), MLflow's error JSON,
 *                          experiments
 *   board_mlflow_runs.c    runs: create, get, update, delete, restore, logging, metric history;
 *                          the run store (an ordinary kiln run folder per MLflow run)
 *   board_mlflow_search.c  runs/search: MLflow's filter grammar, order_by, pagination
 *   board_mlflow_models.c  the model registry subset: registered models, versions, aliases
 *
 * The store. An MLflow experiment is a folder under the runs folder (its name sanitized as kiln
 * names its experiment folders) with an optional experiment.json (name as given, creation time,
 * tags, lifecycle); an MLflow run is a kiln run folder <experiment>/<run-id>/ (kiln/run.h):
 * run.json (status, times), config.yaml (the params, one flat "key": "value" map, so the
 * registry and the board read them as kiln reads a config's params), metrics.jsonl (the metric
 * points, with the MLflow timestamp as wall_time) and mlflow.json (tags, exact start and end
 * times in ms, lifecycle stage). kiln's own runs are read the same way (no mlflow.json needed).
 * Ids are the folders' names in lowercase hex (run_id = hex("<experiment>/<run-id>"),
 * experiment_id = hex("<experiment>")), so they are stateless, reversible and within MLflow's
 * id alphabet; experiment "0" is the folder "Default".
 *
 * Locking. All MLflow writes, and reads of the files they write, are serialized by m->mu; runs
 * the API keeps open for writing (status RUNNING: kiln holds a running run's writer lock, so the
 * registry and the board do not take it for crashed) live in m->open under it.
 */
#ifndef KILN_BOARD_MLFLOW_H
#define KILN_BOARD_MLFLOW_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>

#include "board/board_internal.h"

#define MLF_ID_MAX 600 /* bytes of a hex id (2 x 257 + NUL fits) */

typedef struct {
    char *key, *value;
} mlf_kv;

typedef struct {
    char *key;
    double value;
    int64_t timestamp; /* ms */
    int64_t step;
} mlf_metric;

typedef struct {
    char key[600];  /* "<experiment folder>/<run folder>" */
    char dir[4096]; /* <runs_dir>/<key> */
    char run_id[MLF_ID_MAX], exp_id[MLF_ID_MAX];
    char exp_folder[300];
    char *run_name, *user_id;
    const char *status;           /* RUNNING, FINISHED, FAILED, KILLED */
    int64_t start_time, end_time; /* ms; end_time -1: none */
    int deleted;
    mlf_kv *params, *tags;
    int n_params, n_tags;
    mlf_metric *metrics; /* latest value per key */
    int n_metrics;
} mlf_run;

typedef struct mlf_open_run {
    char key[600];
    kiln_rundir *run;
    struct mlf_open_run *next;
} mlf_open_run;

typedef struct board_mlflow {
    pthread_mutex_t mu;
    char *token; /* NULL: no auth */
    mlf_open_run *open;
} board_mlflow;

/* One request's fields: the JSON body merged with the query arguments (as strings). */
typedef struct {
    cJSON *j;
} mlf_req;

/* ---- board_mlflow.c ---- */
/* MLflow's error body {"error_code": code, "message": ...} with the HTTP status MLflow gives the
 * code (RESOURCE_DOES_NOT_EXIST 404, INVALID_PARAMETER_VALUE / RESOURCE_ALREADY_EXISTS /
 * INVALID_STATE / BAD_REQUEST 400, UNAUTHENTICATED 401, ENDPOINT_NOT_FOUND 404,
 * INTERNAL_ERROR 500). */
void mlf_error(kiln_http_response *resp, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A string field (NULL when absent or not a string); a number field as int64 (from a JSON number
 * or a decimal string): 1 with the value, 0 when absent, -1 when malformed. */
const char *mlf_str(const mlf_req *r, const char *key);
int mlf_i64(const mlf_req *r, const char *key, int64_t *out);
/* A required string field: NULL after answering INVALID_PARAMETER_VALUE when missing. */
const char *mlf_need(const mlf_req *r, kiln_http_response *resp, const char *key);

void mlf_hex(const char *s, char *out, size_t cap);
/* 0 when id is not the hex of a string of at most cap - 1 bytes. */
int mlf_unhex(const char *id, char *out, size_t cap);
int64_t mlf_now_ms(void);
int64_t mlf_iso_ms(const char *iso); /* "2024-05-01T12:34:56Z" -> ms; -1 when NULL or bad */
/* A number as MLflow's JSON has it: shortest exact decimal, or "NaN" / "Infinity". */
void mlf_json_double(kiln_sbuf *s, double v);
void mlf_json_kv_list(kiln_sbuf *s, const mlf_kv *kv, int n); /* [{"key","value"}...] */
/* Reads a small JSON file (NULL when missing or bad). */
cJSON *mlf_read_json(const char *path);
kiln_status mlf_write_json(const char *path, const cJSON *j);
/* The experiment folder for an experiment id ("0" -> "Default"): 0 when it names none. */
int mlf_exp_folder(const kiln_board *b, const char *exp_id, char *folder, size_t cap);
/* The experiment's name: experiment.json's, else the folder's. */
void mlf_exp_name(const kiln_board *b, const char *folder, char *name, size_t cap);
/* Creates the experiment (folder and experiment.json) when missing; 0 on success. */
int mlf_exp_ensure(kiln_board *b, const char *folder, const char *name);

/* ---- board_mlflow_runs.c ---- */
void mlf_runs_route(kiln_board *b, const char *op, kiln_http_method method, const mlf_req *r,
                    kiln_http_response *resp);
void mlf_metrics_history(kiln_board *b, const mlf_req *r, kiln_http_response *resp);
/* Loads run key (checked: "<exp>/<run>" of plain names) into out (mlf_run_free it). 0 when the
 * folder holds no readable run. Caller holds m->mu. */
int mlf_run_load(kiln_board *b, const char *key, mlf_run *out);
void mlf_run_free(mlf_run *r);
void mlf_run_render(const mlf_run *r, kiln_sbuf *s); /* {"info":{...},"data":{...}} */
void mlf_run_render_info(const mlf_run *r, kiln_sbuf *s);
/* Closes every run the API holds open (at stop). */
void mlf_runs_close_all(board_mlflow *m);
/* The run key of a run_id (or run_uuid) field: NULL after answering when missing or unknown. */
const char *mlf_run_key(kiln_board *b, const mlf_req *r, kiln_http_response *resp, char *key,
                        size_t cap);

/* ---- board_mlflow_search.c ---- */
void mlf_runs_search(kiln_board *b, const mlf_req *r, kiln_http_response *resp);
/* Page tokens: the offset, encoded. -1 when tok is malformed. */
void mlf_page_token(kiln_sbuf *s, int64_t offset);
int64_t mlf_page_offset(const char *tok);

/* ---- board_mlflow_models.c ---- */
void mlf_models_route(kiln_board *b, const char *path, const kiln_http_request *req,
                      const mlf_req *r, kiln_http_response *resp);

/* ---- from board.c ---- */
/* 1 when the request went to the MLflow API (answered), 0 when it is not an MLflow path. */
int board_mlflow_handle(kiln_board *b, const kiln_http_request *req, kiln_http_response *resp);
board_mlflow *board_mlflow_new(const char *token);
void board_mlflow_free(board_mlflow *m);

#endif

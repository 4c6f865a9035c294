/* kiln/board.h — kiln board: a web dashboard over a runs folder, served by kiln itself.
 *
 * The board reads the run folders directly (run.json, metrics.jsonl, config.yaml, checkpoints/,
 * export/; see kiln/run.h); its page and JSON API never write to them (only the MLflow API of
 * config.mlflow does, through kiln's run writer). Its page (board/index.html, app.js,
 * style.css) is compiled into the library, so the board needs no other file at run time.
 *
 * HTTP, on kiln/http.h's server (GET and HEAD only; with config.mlflow also MLflow's REST API
 * under /api/2.0/mlflow/ and /ajax-api/2.0/mlflow/, which writes run folders: docs/tracking.md):
 *   /                                         the page (also /index.html, /app.js, /style.css)
 *   /api/runs[?since=GEN]                     the runs table; with since, only what changed
 *   /api/runs/EXP/RUN                         one run's details: run.json, config, checkpoints,
 *                                             export versions, the end of log.txt
 *   /api/runs/EXP/RUN/metrics[?after=N&rev=R] a run's metric points; with after and rev, only
 *                                             the points logged since
 * EXP and RUN are the folder names under the runs folder. Answers are JSON; errors are
 * {"error": "..."} with 400 (bad query), 404 (no such run or route) or 405 (not GET or HEAD).
 * docs/monitoring.md describes every field.
 *
 * Caching. The board keeps what it parsed: each run's run.json summary and flattened
 * config.yaml, keyed by the files' identity, size and modification time, and each run's metric
 * points, read incrementally from the byte after the last complete line. A refresh stats the
 * files and re-reads only what changed, so the cost of a poll follows what changed, not the size
 * of the runs folder. The runs folder is listed again at most every rescan_seconds.
 */
#ifndef KILN_BOARD_H
#define KILN_BOARD_H

#include "kiln/status.h"

typedef struct kiln_board kiln_board;

typedef struct {
    const char *runs_dir;  /* required; must exist */
    const char *host;      /* address to listen on; NULL = "127.0.0.1" */
    int port;              /* 0 = any free port (see kiln_board_port) */
    int threads;           /* HTTP worker threads; 0 = 2 */
    double rescan_seconds; /* the shortest time between two listings of the runs folder;
                              0 = 1 second, < 0 = list it on every request */
    int mlflow;            /* 1: also serve MLflow's REST API (tracking and model registry
                              subsets) under /api/2.0/mlflow/, writing run folders
                              (docs/tracking.md) */
    const char *token;     /* with mlflow: NULL or "" = no auth; else every MLflow request must
                              carry "Authorization: Bearer <token>" (401 otherwise) */
} kiln_board_config;

/* Lists the runs folder, reads every run's run.json and config.yaml, and starts serving. NULL
 * (with message) when the runs folder cannot be read or the address cannot be bound. */
kiln_board *kiln_board_start(const kiln_board_config *c);
/* The port bound (useful with port 0). */
int kiln_board_port(const kiln_board *b);
/* The number of runs the last listing found. */
int kiln_board_run_count(kiln_board *b);
/* Stops serving (requests in flight finish) and frees everything. NULL is a no-op. */
void kiln_board_stop(kiln_board *b);

#endif

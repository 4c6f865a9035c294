/* board_internal.h — the board's state, shared by its files (library-private):
 *   board.c          the server: routes, request checks, the embedded page
 *   board_index.c    the runs table: listing the folder, per-run summaries, what changed
 *   board_params.c   config.yaml flattened into key = value params, and the string tables
 *   board_metrics.c  per-run metric points, read incrementally, and their JSON
 *   board_details.c  one run's details (run.json, config, checkpoints, exports, log)
 *   board_studies.c  kiln tune's studies and trials, from the registry (runs/kiln.db)
 *   board_assets.c   generated at build time from src/board/web/ (cmake/embed_assets.cmake)
 *
 * Locking. b->mu guards the runs table (runs, slots, exps, the string tables, gen) and every
 * board_run field outside .m; each run's metrics (.m) have their own mutex, taken without holding
 * b->mu, so a slow metrics read never blocks the runs table. A board_run, once made, lives until
 * the board stops (a run whose folder disappears is only unlisted and its points dropped), so a
 * pointer taken under b->mu stays valid after it is released.
 */
#ifndef KILN_TRACK_BOARD_INTERNAL_H
#define KILN_TRACK_BOARD_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "kiln/board.h"
#include "kiln/http.h"
#include "kiln/run.h"
#include "kiln/sbuf.h"

/* ---- the embedded page (board_assets.c, generated) ---- */

typedef struct {
    const char *path; /* "/index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} kiln_board_asset;
extern const kiln_board_asset kiln_board_assets[];
extern const int kiln_board_n_assets;

/* ---- files ---- */

/* What identifies a version of a file: replaced (rename) or written (size, time) changes it. */
typedef struct {
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
} board_sig;

/* The signature of path (relative to dirfd, or AT_FDCWD): 1, or 0 (exists = 0) when it is not
 * a regular file that can be stat'ed. */
int board_sig_of(const char *path, board_sig *sig);
int board_sig_at(int dirfd, const char *path, board_sig *sig);
int board_sig_same(const board_sig *a, const board_sig *b);

/* ---- string tables: each distinct string once, named by its index ---- */

typedef struct {
    char **str; /* [n] */
    uint32_t n, cap;
    uint32_t *slots; /* [n_slots], open addressing: index + 1, 0 = empty */
    uint32_t n_slots;
} board_strtab;

/* The id of s (added when new); UINT32_MAX when memory runs out. */
uint32_t board_strtab_intern(board_strtab *t, const char *s);
void board_strtab_free(board_strtab *t);
uint64_t board_hash(const char *s);

/* ---- params: config.yaml flattened ---- */

typedef struct {
    char *key;   /* "optimizer.adam.learning_rate", "model.layers[1].dense.units" */
    char *value; /* the YAML text: "0.001", "[1, 28, 28]", "{}" */
} board_kv;

/* Reads <path> (a resolved config.yaml) into key = value pairs, in file order: maps give
 * dotted keys, sequences of scalars one "[a, b]" value, other sequences [i] keys. */
kiln_status board_params_read(const char *path, board_kv **out, int *n);
void board_params_free(board_kv *kv, int n);

/* ---- metric points ---- */

typedef struct {
    char *name;
    kiln_split split;
    int64_t *step, *seq; /* [n]: step ascending; seq: when the point was read (see below) */
    double *value, *wall, *epoch;
    int *stage; /* [n]: the point's "stage" (0: none) */
    int n, cap;
} board_series;

/* The points of one stage of a run (stages:): the range of steps and epochs they cover. */
typedef struct {
    int stage; /* 1-based */
    int64_t first_step, last_step;
    double first_epoch, last_epoch; /* NaN until a point with a finite epoch */
} board_stage;

/* A run's points, as metrics.jsonl holds them (the last line for a (step, split, name) wins).
 * seq numbers the points in the order they were read; rev changes whenever points a client may
 * already hold change (a point re-logged at an earlier step, the file replaced or cut short), so
 * a client that sends the rev it has and the seq it got up to ("after") can be sent only the
 * newer points: those all come after the last rev change and sit at the ends of their series. */
typedef struct {
    pthread_mutex_t mu;
    board_series *series;
    int n_series, cap_series;
    board_sig sig;  /* metrics.jsonl when last read */
    int64_t offset; /* bytes of complete lines read */
    int64_t seq;    /* points read since the last reset */
    int64_t rev;
    int64_t skipped;     /* lines that were not points */
    board_stage *stages; /* [n_stages] by stage, from the points that carry one */
    int n_stages, cap_stages;
    int stage; /* the stage of the last point read (the current one of a live run); 0: none */
} board_metrics;

void board_metrics_init(board_metrics *m, int64_t rev);
/* Brings m up to date with <dir>/metrics.jsonl (caller holds m->mu). */
kiln_status board_metrics_update(board_metrics *m, const char *dir);
/* Drops every point (the run is gone); the next update reads the file from the start. */
void board_metrics_reset(board_metrics *m);
/* The points with seq > after, or all (reset = 1) into out: "rev", "next", "reset", "skipped",
 * "series", "stage" and "stages" members, without the braces. */
void board_metrics_render(const board_metrics *m, int64_t after, int reset, kiln_sbuf *out);
/* ,"stage":N|null,"stages":[{"stage","first_step","last_step","first_epoch","last_epoch"}...] */
void board_metrics_render_stages(const board_metrics *m, kiln_sbuf *out);
void board_metrics_free(board_metrics *m);

/* ---- the runs table ---- */

typedef struct {
    uint32_t key, val; /* ids in the board's key and value tables */
} board_param;

typedef struct board_run {
    char *key;        /* "<experiment folder>/<run folder>" */
    char *dir;        /* "<runs_dir>/<key>" */
    int exp;          /* index in b->exps */
    int listed;       /* found by the last listing */
    int seen;         /* mark of the listing under way */
    uint64_t mod_gen; /* gen when its entry in /api/runs last changed */
    board_sig run_sig, cfg_sig;
    int says_running;    /* run.json's status is running: its writer's lock is probed each time */
    const char *status;  /* what the board shows: run.json's status, except "failed" for a run
                            that says running and has no writer, "unreadable" for a bad run.json */
    int crashed;         /* run.json says running but no process holds the run */
    char *head;          /* its /api/runs object without "params" and the closing brace */
    board_param *params; /* sorted by key id */
    int n_params;
    board_metrics m;
} board_run;

typedef struct {
    char *name;     /* the experiment's folder */
    int dirty;      /* its runs' params changed: recompute keys */
    uint32_t *keys; /* the params shown in the runs table: those that differ between its runs,
                       and a few always shown (batch size, learning rate, epochs) */
    int n_keys;
} board_exp;

struct kiln_board {
    char *runs_dir;
    kiln_http_server *http;
    struct board_mlflow *mlflow; /* the MLflow API (board_mlflow.h); NULL: not served */
    double rescan_seconds;
    char instance[24]; /* this board's id: tells clients their gens and revs are void */
    int64_t rev_base;

    pthread_mutex_t mu;
    board_run **runs; /* [n_runs], stable pointers */
    int n_runs, cap_runs;
    uint32_t *slots; /* runs by key: index + 1, 0 = empty */
    uint32_t n_slots;
    board_exp *exps;
    int n_exps, cap_exps;
    board_strtab keys, vals;
    uint64_t gen;     /* bumped by every change to the runs table */
    double last_scan; /* CLOCK_MONOTONIC seconds; < 0: never */
    int n_listed;
};

/* All under b->mu. */
/* Lists the runs folder and refreshes every run (when force, or rescan_seconds have passed). */
kiln_status board_scan(kiln_board *b, int force);
/* The run EXP/RUN (names already checked: one path component each, no leading dot), looked up,
 * or found on disk when the last listing missed it, and refreshed; NULL when there is none. */
board_run *board_find(kiln_board *b, const char *exp, const char *run);
/* The /api/runs answer for a client that has everything up to gen since (0: nothing). */
void board_render_runs(kiln_board *b, uint64_t since, kiln_sbuf *out);
void board_index_free(kiln_board *b);

/* Everything about one run for /api/runs/EXP/RUN (no lock needed: reads the folder); stages
 * (may be NULL) is put in as it is: members for the run's stages (board_metrics_render_stages). */
void board_render_details(const char *key, const char *dir, const char *status, int crashed,
                          const char *stages, kiln_sbuf *out);
/* board_explain.c: the run's log.explain images: the details' "explain" member, and one PNG
 * (GET /api/runs/EXP/RUN/explain/FILE) */
void board_put_explain(kiln_sbuf *s, const char *dir);
void board_serve_explain(kiln_http_response *resp, const char *dir, const char *file);

/* /api/studies (name NULL) or /api/studies/NAME (name checked): reads the registry, no lock. */
void board_api_studies(kiln_board *b, kiln_http_response *resp, const char *name);

/* Small JSON helpers shared by the renderers. */
void board_json_number(kiln_sbuf *b, double v); /* shortest exact form; null when not finite */
void board_json_time(kiln_sbuf *b, int64_t ns); /* ISO 8601 UTC string, seconds */

#endif

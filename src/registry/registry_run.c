/* registry_run.c — a run's writer keeps its rows in <runs_dir>/kiln.db current: the registry
 * follows the run (kiln_registry_follow_run installs a kiln_run_follower, kiln/run.h), so the run
 * folder below never calls up into the registry.
 *
 *   follow, created   the run's row, as run.json says at creation
 *   follow, resumed   the run brought up to date with its folder first (a resume of a run the
 *                     registry lacks, or lost points of a crash: kiln_reg_sync_run), then the
 *                     row with this process as its writer
 *   point             the point joins a buffer; the buffer goes to the registry in one
 *                     transaction when it holds BATCH points or a second has passed since the
 *                     last flush (at the next point), and at every save and at close
 *   saved             buffered points, the row from run.json and (once per config hash) the
 *                     params from config.yaml, in one transaction
 *   closing           the buffered points
 *
 * Cost in the training loop: a buffered point is a copy into the buffer; a flush is one
 * transaction with two prepared statements per point, in WAL mode with synchronous=NORMAL (no
 * fsync), at most about once a second. Each flush records how far into metrics.jsonl its points
 * go, so a sync never reads them again.
 *
 * Failure never reaches the caller: the first error (a damaged or foreign kiln.db, a registry
 * locked longer than BUSY_MS, a full disk) is written to log.txt and stderr once, and the run
 * goes on without the registry. Its folder has everything, and the next kiln_registry_sync (any
 * `kiln runs` command) reads what the registry missed. The caller's error message is kept
 * intact across close, which runs on error paths.
 *
 * A database server (PostgreSQL) that cannot be reached is different: it may come back. The
 * follower then says so once (log.txt and stderr), drops its buffer (every point is in
 * metrics.jsonl already) and tries again at the next point or save after a wait (RETRY_SEC,
 * doubling up to RETRY_MAX_SEC); once connected it catches up from the folder (kiln_reg_sync_run:
 * run.json and metrics.jsonl from the recorded offset) and follows as before. At close it tries
 * once more; a run that ends while the server is down is recorded by the next `kiln runs sync`
 * (or any `kiln runs` command). Training never waits for the server beyond a connect timeout.
 *
 * KILN_REGISTRY=off in the environment leaves the registry out (file systems where SQLite's
 * locking does not work, such as some network file systems, or measuring its cost).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/mlflow.h"
#include "registry/registry_internal.h"
#include "run/run_internal.h"

#define BATCH     256
#define BUSY_MS   2000
#define FLUSH_SEC 1.0
#define RETRY_SEC     5.0
#define RETRY_MAX_SEC 60.0

typedef struct {
    int64_t step;
    double wall_time, value;
    char name[208]; /* "test_" + a metric name of at most 200 bytes */
} pending;

typedef struct kiln_run_reg {
    kiln_registry *reg;
    int64_t rid;
    char id[2 * KILN_RUN_NAME_MAX + 64]; /* "<experiment>/<run-id>" */
    pending points[BATCH];
    int n;
    int64_t end;       /* metrics.jsonl's size after the newest buffered point */
    double last_flush; /* wall time of the last flush */
    int remote;        /* the registry is a database server */
    int down;          /* remote, and unreachable since the last try: reg is NULL */
    double retry_at, retry_wait;
    char runs_dir[PATH_MAX];
    kiln_reg_uri uri; /* where the run started: reconnecting goes there */
} kiln_run_reg;

/* Gives the registry up for this run, saying why once, and stops following it. */
static void give_up(kiln_rundir *run, kiln_run_reg *r, const char *when) {
    char msg[1200];
    snprintf(msg, sizeof msg,
             "warning: run registry: %s: %s; the run goes on without it (its folder has "
             "everything: `kiln runs` indexes it later)",
             when, kiln_last_error());
    fprintf(stderr, "kiln: %s\n", msg);
    if (run->log_fd >= 0) kiln_run_log(run, "%s", msg);
    kiln_run_set_follower(run, NULL, NULL);
    kiln_registry_close(r->reg);
    free(r);
}

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The server went away: say so once, keep following without it (see the top of this file). */
static void go_down(kiln_rundir *run, kiln_run_reg *r, const char *when) {
    if (!r->down) {
        char msg[1400];
        snprintf(msg, sizeof msg,
                 "warning: run registry: %s: %s; the run goes on, its points stay in the run "
                 "folder and go to the registry when it is back (or with kiln runs sync)",
                 when, kiln_last_error());
        fprintf(stderr, "kiln: %s\n", msg);
        if (run->log_fd >= 0) kiln_run_log(run, "%s", msg);
        r->retry_wait = RETRY_SEC;
    } else if ((r->retry_wait *= 2) > RETRY_MAX_SEC) {
        r->retry_wait = RETRY_MAX_SEC;
    }
    kiln_error_clear();
    kiln_registry_close(r->reg);
    r->reg = NULL, r->down = 1, r->n = 0;
    r->retry_at = now_sec() + r->retry_wait;
}

/* Reconnects and catches up from the folder; 1 when the registry is back. */
static int try_back(kiln_rundir *run, kiln_run_reg *r, int now) {
    if (!now && now_sec() < r->retry_at) return 0;
    kiln_status s = kiln_reg_open_uri(r->runs_dir, &r->uri, BUSY_MS, &r->reg);
    if (!s) s = kiln_reg_sync_run(r->reg, r->id, NULL);
    if (!s && !(s = kiln_reg_begin(r->reg))) {
        kiln_run_info info = kiln_run_get_info(run);
        s = kiln_reg_put_run(r->reg, r->id, &info, NULL, &r->rid);
        s = s ? (kiln_reg_rollback(r->reg), s) : kiln_reg_commit(r->reg);
    }
    if (s) {
        go_down(run, r, "reconnecting");
        return 0;
    }
    r->down = 0, r->n = 0;
    fprintf(stderr, "kiln: run registry: %s is back; the run is caught up\n",
            kiln_registry_path(r->reg));
    if (run->log_fd >= 0)
        kiln_run_log(run, "run registry: %s is back; the run is caught up",
                     kiln_registry_path(r->reg));
    return 1;
}

static kiln_status flush_points(kiln_run_reg *r) {
    kiln_status s = KILN_OK;
    reg_latest latest = {.n = 0};
    for (int i = 0; !s && i < r->n; i++)
        s = kiln_reg_put_point(r->reg, r->rid, r->points[i].name, r->points[i].step,
                               r->points[i].wall_time, r->points[i].value, &latest);
    if (!s) s = kiln_reg_put_latest(r->reg, r->rid, &latest);
    if (!s && r->n) s = kiln_reg_set_offset(r->reg, r->rid, r->end);
    return s;
}

/* One transaction around the buffered points (and more when `save`). */
static kiln_status write_out(kiln_rundir *run, kiln_run_reg *r, int save) {
    kiln_status s = kiln_reg_begin(r->reg);
    if (s) return s;
    s = flush_points(r);
    if (!s && save) {
        char stamp[64], file[4300];
        kiln_run_info info = kiln_run_get_info(run);
        kiln_reg_json_stamp(run->path, stamp);
        s = kiln_reg_put_run(r->reg, r->id, &info, stamp[0] ? stamp : NULL, &r->rid);
        reg_stmt *st = s ? NULL : kiln_reg_stmt(r->reg, REG_RUN_STATE);
        if (!s && !st) s = KILN_ERR_IO;
        if (!s) {
            kiln_reg_bind_text(st, 1, r->id);
            int rc = reg_step(st);
            const char *have = rc == REG_ROW ? kiln_reg_col_text(st, 3) : NULL;
            const char *want = info.config_hash ? info.config_hash : "";
            int stale = rc == REG_ROW && (!have || strcmp(have, want));
            reg_reset(st);
            if (rc != REG_ROW) s = kiln_reg_fail(r->reg, rc, "reading a run");
            if (!s && stale && !(s = kiln_run_join(file, sizeof file, run->path, "config.yaml")))
                s = kiln_reg_put_params(r->reg, r->rid, file, info.config_hash);
        }
    }
    if (s) {
        kiln_reg_rollback(r->reg);
        return s;
    }
    if ((s = kiln_reg_commit(r->reg))) return s;
    r->n = 0;
    return KILN_OK;
}

/* The runs folder and the run's id from its path: <runs_dir>/<experiment>/<run-id>. */
static kiln_status locate(const kiln_rundir *run, char *runs_dir, size_t cap, char *id,
                          size_t id_cap) {
    char real[PATH_MAX];
    if (!realpath(run->path, real))
        return kiln_error(KILN_ERR_IO, "run %s: cannot resolve its path", run->path);
    char *slash2 = strrchr(real, '/'), *slash1 = NULL;
    if (slash2 && slash2 > real) {
        *slash2 = 0;
        slash1 = strrchr(real, '/');
        *slash2 = '/';
    }
    if (!slash1) return kiln_error(KILN_ERR_INVALID, "run %s: not inside a runs folder", real);
    if (snprintf(id, id_cap, "%s", slash1 + 1) >= (int)id_cap)
        return kiln_error(KILN_ERR_INVALID, "run %s: name too long", real);
    *slash1 = 0;
    if (snprintf(runs_dir, cap, "%s", slash1 == real ? "/" : real) >= (int)cap)
        return kiln_error(KILN_ERR_INVALID, "run %s: path too long", real);
    return KILN_OK;
}

static void on_point(void *ctx, kiln_rundir *run, int64_t step, double wall_time,
                     kiln_split split, const char *name, double value, int64_t end) {
    kiln_run_reg *r = ctx;
    if (r->down) {
        try_back(run, r, 0);
        return;
    }
    pending *p = &r->points[r->n++];
    p->step = step, p->wall_time = wall_time, p->value = value;
    kiln_reg_metric_name(split, name, p->name, sizeof p->name);
    r->end = end;
    if (r->n < BATCH && wall_time - r->last_flush < FLUSH_SEC) return;
    r->last_flush = wall_time;
    if (write_out(run, r, 0)) {
        if (r->remote) go_down(run, r, "recording metrics");
        else give_up(run, r, "recording metrics");
    }
}

static void on_saved(void *ctx, kiln_rundir *run) {
    kiln_run_reg *r = ctx;
    if (r->down && !try_back(run, r, 0)) return;
    if (write_out(run, r, 1)) {
        if (r->remote) go_down(run, r, "recording the run");
        else give_up(run, r, "recording the run");
    }
}

/* Close runs on error paths too: the caller's message survives it. */
static void on_closing(void *ctx, kiln_rundir *run) {
    kiln_run_reg *r = ctx;
    if (r->down) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", kiln_last_error());
        if (!try_back(run, r, 1)) {
            char msg[600];
            snprintf(msg, sizeof msg,
                     "run registry: still unreachable at the end of the run: kiln runs sync "
                     "(or any kiln runs command) records it when it is back");
            fprintf(stderr, "kiln: %s\n", msg);
            if (run->log_fd >= 0) kiln_run_log(run, "%s", msg);
        }
        kiln_error(KILN_OK, "%s", keep);
        if (r->down) {
            free(r);
            return;
        }
        /* back: try_back caught up with the folder, which holds every point */
    } else if (r->n) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", kiln_last_error());
        int failed = write_out(run, r, 0) != KILN_OK;
        if (failed) give_up(run, r, "recording the last metrics");
        kiln_error(KILN_OK, "%s", keep);
        if (failed) return; /* give_up released r */
    }
    kiln_registry_close(r->reg);
    free(r);
}

static const kiln_run_follower follower = {
    .point = on_point, .saved = on_saved, .closing = on_closing};

void kiln_registry_follow_run(kiln_rundir *run, int created) {
    if (!run || !run->writable) return;
    kiln_reg_uri where; /* resolved once: it may read the user config file */
    kiln_status where_st = kiln_reg_uri_current(&where);
    if (!where_st && where.kind == REG_URI_OFF) return; /* KILN_REGISTRY or the user config */
    if (!where_st && where.kind == REG_URI_MLFLOW) { /* mlflow_client.c */
        kiln_mlflow_follow_run(run, where.conninfo);
        return;
    }
    kiln_run_reg *r = calloc(1, sizeof *r);
    if (!r) return; /* no memory for the buffer: the folder alone then */
    kiln_run_set_follower(run, &follower, r);
    kiln_status s = locate(run, r->runs_dir, sizeof r->runs_dir, r->id, sizeof r->id);
    if (!s && !(s = where_st)) r->uri = where, r->remote = where.kind == REG_URI_PG;
    if (!s) s = kiln_reg_open_uri(r->runs_dir, &r->uri, BUSY_MS, &r->reg);
    if (!s && !created) s = kiln_reg_sync_run(r->reg, r->id, NULL);
    if (!s && !(s = kiln_reg_begin(r->reg))) {
        kiln_run_info info = kiln_run_get_info(run);
        char stamp[64];
        kiln_reg_json_stamp(run->path, stamp);
        s = kiln_reg_put_run(r->reg, r->id, &info, created && stamp[0] ? stamp : NULL, &r->rid);
        s = s ? (kiln_reg_rollback(r->reg), s) : kiln_reg_commit(r->reg);
    }
    r->last_flush = now_sec();
    if (s && r->remote)
        go_down(run, r, created ? "registering the run" : "registering the resumed run");
    else if (s)
        give_up(run, r, created ? "registering the run" : "registering the resumed run");
}

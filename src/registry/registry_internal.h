/* registry_internal.h — what the registry's files share (library-private): the connection and
 * its prepared statements, error mapping, transactions, the row writers, liveness probes, and the
 * filter's operands and their SQL.
 *
 * Files: registry.c (open, schema, crashed runs), registry_write.c (rows from a run's files),
 * registry_sync.c (folders -> rows), registry_filter.c (expressions and sort keys -> SQL),
 * registry_query.c (listing, finding and removing runs), registry_models.c (models),
 * registry_run.c (the run folder's writer keeping its rows current).
 *
 * Invariants: a statement from kiln_reg_stmt is reset and unbound when handed out; every write
 * happens between kiln_reg_begin and kiln_reg_commit (or kiln_reg_rollback), never in
 * autocommit, so a failure leaves no half-written change.
 */
#ifndef KILN_TRACK_REGISTRY_INTERNAL_H
#define KILN_TRACK_REGISTRY_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "kiln/registry.h"
#include "kiln/run.h"
#include "registry/registry_db.h"
#include "registry/registry_uri.h"

enum {
    REG_EXPERIMENT_GET,
    REG_EXPERIMENT_ADD,
    REG_RUN_UPSERT,
    REG_RUN_STATE,
    REG_RUN_OFFSET,
    REG_RUN_OFFSET_RESET,
    REG_RUN_PARAMS_HASH,
    REG_PARAMS_CLEAR,
    REG_PARAM_ADD,
    REG_POINT_ADD,
    REG_LATEST_ADD,
    REG_METRICS_CLEAR,
    REG_LATEST_CLEAR,
    REG_LATEST_OF,
    REG_N_STMTS
};

struct kiln_registry {
    reg_db *db;
    char *runs_dir; /* as given, trailing slashes removed */
    char *path;     /* <runs_dir>/kiln.db, sqlite:PATH's file, or the PostgreSQL URI (masked) */
    int read_only;  /* db is a copy in memory of a kiln.db that cannot be written */
    int remote;     /* a database server (PostgreSQL): it may go away and come back */
    reg_stmt *stmts[REG_N_STMTS];
    struct reg_pending *pending; /* server only: points not sent yet (registry_write.c) */
};

/* Opens with a busy timeout of busy_ms (the trainer waits less than the CLI), where
 * kiln_reg_uri_current says; kiln_reg_open_uri where uri says. */
kiln_status kiln_reg_open(const char *runs_dir, int busy_ms, kiln_registry **out);
kiln_status kiln_reg_open_uri(const char *runs_dir, const kiln_reg_uri *uri, int busy_ms,
                              kiln_registry **out);
/* Opens an existing registry for reading only: no schema changes, no crashed-run marking.
 * KILN_ERR_NOTFOUND when there is no kiln.db or it holds no (current) schema. Works on a
 * read-only folder too (see kiln_reg_open_file). */
kiln_status kiln_reg_open_readonly(const char *runs_dir, kiln_registry **out);
/* Opens the file at path for reading only, into *db: "file:<path>?mode=ro", which sees a
 * writer's latest commits (and waits for its locks); where SQLite cannot read the file that way
 * (a WAL-mode file in a folder it cannot create kiln.db-shm in: a read-only mount or archive),
 * "file:<path>?immutable=1", which reads the file as it is, without locks. */
int kiln_reg_open_file(const char *path, int busy_ms, void **sqlite_db);
/* KILN_OK when reg may be written; else KILN_ERR_IO "<runs_dir> is read-only: cannot <what>". */
kiln_status kiln_reg_writable(const kiln_registry *reg, const char *what);
/* The statement, prepared on first use; NULL (with the error set) on failure. */
reg_stmt *kiln_reg_stmt(kiln_registry *reg, int which);
/* Maps a REG_E* class (registry_db.h) to a kiln_status with "<db>: <what>: <engine's message>". */
kiln_status kiln_reg_fail(kiln_registry *reg, int rc, const char *what);
/* Runs one statement without results. */
kiln_status kiln_reg_exec(kiln_registry *reg, const char *sql, const char *what);
/* Steps a write statement to its end (REG_DONE), then resets it. */
kiln_status kiln_reg_step_done(kiln_registry *reg, reg_stmt *st, const char *what);
/* BEGIN IMMEDIATE (takes the write lock now, waiting up to the busy timeout; on PostgreSQL an
 * advisory lock, registry_db.h), COMMIT, ROLLBACK. */
kiln_status kiln_reg_begin(kiln_registry *reg);
kiln_status kiln_reg_commit(kiln_registry *reg);
void kiln_reg_rollback(kiln_registry *reg);
/* Binds text, or NULL when s is NULL. */
void kiln_reg_bind_text(reg_stmt *st, int i, const char *s);
/* A column's text or NULL. */
const char *kiln_reg_col_text(reg_stmt *st, int i);

/* ---- a run's folder ---- */

/* 1 when a process still writes the run folder at path: it holds the folder's flock (as
 * kiln_run_is_active sees it); where the file system has no flock, when host is this host and
 * pid is alive, or host is another one (which cannot be asked). 0 when the folder is gone. */
int kiln_reg_run_alive(const char *path, const char *host, long pid);
/* The newest modification time of the run's run.json, metrics.jsonl and log.txt, as ISO 8601
 * UTC: when a dead run last showed signs of life. "" when none can be read. */
void kiln_reg_last_sign(const char *path, char out[24]);
/* What identifies one version of <path>/run.json: "inode:mtime-ns:size" (it is replaced by
 * rename, so every save changes it). 0 and "" when it cannot be read. */
int kiln_reg_json_stamp(const char *path, char out[64]);
/* "<runs_dir>/<id>" into out. */
kiln_status kiln_reg_run_path(const kiln_registry *reg, const char *id, char *out, size_t cap);

/* ---- writing rows (registry_write.c); call inside a transaction ---- */

/* The metric's registry name: name for train, "val_" + name, "test_" + name. */
void kiln_reg_metric_name(kiln_split split, const char *name, char *out, size_t cap);
/* Inserts or updates run `id` from info (what run.json says). A run that says running but whose
 * process is gone is recorded as failed (see kiln/registry.h). stamp: run.json's
 * kiln_reg_json_stamp, or NULL to leave the recorded one. Its row's key goes to *rid. */
kiln_status kiln_reg_put_run(kiln_registry *reg, const char *id, const kiln_run_info *info,
                             const char *stamp, int64_t *rid);
/* Replaces the run's params with config_path's flattened keys and records hash as the config
 * they came from. A missing or unreadable config leaves no params (and records hash, so that it
 * is not read again). */
kiln_status kiln_reg_put_params(kiln_registry *reg, int64_t rid, const char *config_path,
                                const char *hash);
/* One point (name already carries its split prefix); value NaN is stored as NULL. Its name's
 * latest value is kept in `latest` (written by kiln_reg_put_latest, once per name for a batch of
 * points instead of once per point); latest NULL writes it at once. */
typedef struct {
    struct {
        char name[208];
        int64_t step;
        double value;
    } v[16];
    int n;
} reg_latest;
kiln_status kiln_reg_put_point(kiln_registry *reg, int64_t rid, const char *name, int64_t step,
                               double wall_time, double value, reg_latest *latest);
/* Writes the latest points kept in l into latest_metrics and empties l. */
kiln_status kiln_reg_put_latest(kiln_registry *reg, int64_t rid, reg_latest *l);
/* A database server gets points in multi-row statements: kiln_reg_put_point keeps them here and
 * sends them when REG_PENDING_MAX are waiting and at kiln_reg_commit (which calls this first);
 * kiln_reg_rollback drops them. No-op on SQLite, where each point is one statement in process. */
kiln_status kiln_reg_flush_points(kiln_registry *reg);
void kiln_reg_drop_points(kiln_registry *reg);

/* Records that metrics.jsonl up to byte offset is in the registry (it never goes back). */
kiln_status kiln_reg_set_offset(kiln_registry *reg, int64_t rid, int64_t offset);

/* ---- syncing (registry_sync.c) ---- */

/* Brings run `id` up to date with its folder (see kiln_registry_sync), in transactions of its
 * own. *changed: 0 nothing to do, 1 imported, 2 updated (may be NULL). KILN_ERR_NOTFOUND when
 * the folder has no run.json. */
kiln_status kiln_reg_sync_run(kiln_registry *reg, const char *id, int *changed);

/* Records the complete versions under <runs_dir>/models/<name>/ that the registry lacks (a
 * registry rebuilt from the folders); their count goes to *added. Aliases live only here. */
kiln_status kiln_reg_sync_models(kiln_registry *reg, int *added);

/* ---- filters and sort keys (registry_filter.c) ---- */

typedef enum { REG_OP_METRIC, REG_OP_PARAM, REG_OP_ATTR, REG_OP_NUMBER, REG_OP_STRING } reg_op_kind;

typedef struct {
    reg_op_kind kind;
    char *text; /* metric or param name, string value; NULL for attributes and numbers */
    int attr;   /* REG_OP_ATTR: index into the attribute table */
    double num; /* REG_OP_NUMBER */
    int column; /* where it started in the expression (1-based characters) */
    size_t pos; /* the same in bytes */
} reg_operand;

/* A run's duration in seconds (up to now while it runs), over `runs r`. */
#define REG_DURATION_SQL                                                                           \
    "((julianday(coalesce(r.end_time, 'now')) - julianday(r.start_time)) * 86400.0)"

/* Values bound to the '?' of generated SQL, in order. Text points into the filter, sort key or
 * query that produced it. */
typedef struct {
    int is_text;
    const char *text;
    double num;
} reg_bind;
typedef struct {
    reg_bind *v;
    int n, cap;
    int failed; /* out of memory */
} reg_binds;
void kiln_reg_binds_add_text(reg_binds *b, const char *text);
void kiln_reg_binds_add_num(reg_binds *b, double num);
/* Binds them to st from parameter 1 on. */
void kiln_reg_binds_apply(const reg_binds *b, reg_stmt *st);

/* Metrics and params read through joins (the list on PostgreSQL): each distinct name gets one
 * "LEFT JOIN latest_metrics jN" or "LEFT JOIN params jN" on (r.rid, name), whose primary key
 * makes it at most one row, so the planner can hash-join a whole column at once instead of
 * probing per run. Names point into the query, filter or sort key that named them. */
typedef struct {
    const char **name;
    char *is_param;
    int n, cap;
    int failed; /* out of memory: operands without a join fall back to a subquery */
} reg_joins;
/* The join of (is_param, name), added when new; its index, or -1 without memory. */
int kiln_reg_joins_add(reg_joins *j, int is_param, const char *name);
/* Adds every metric and param the filter names. */
void kiln_reg_joins_add_filter(reg_joins *j, const kiln_registry_filter *f);
/* The "LEFT JOIN ..." clauses (after FROM runs r ...), their names bound. */
void kiln_reg_joins_sql(const reg_joins *j, FILE *sql, reg_binds *b);
void kiln_reg_joins_free(reg_joins *j);

/* The filter as an SQL boolean expression over `runs r JOIN experiments e` (always 0 or 1);
 * with j, its metrics and params read from j's joins (else correlated subqueries). */
void kiln_reg_filter_sql(const kiln_registry_filter *f, const reg_joins *j, FILE *sql,
                         reg_binds *b);
/* Parses a sort key (see kiln_registry_query.sort) into key and its direction. */
kiln_status kiln_reg_sort_parse(const char *text, reg_operand *key, int *desc);
void kiln_reg_operand_free(reg_operand *o);
/* The "ORDER BY" terms for key (without the words ORDER BY); j as for kiln_reg_filter_sql. */
void kiln_reg_sort_sql(const reg_operand *key, int desc, const reg_joins *j, FILE *sql,
                       reg_binds *b);

#endif

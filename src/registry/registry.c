/* src/registry/ — runs/kiln.db: opening and migrating it (registry.c), writing
 * runs, params and metrics (registry_write.c), following a run while it trains
 * (registry_run.c), indexing run folders it missed (registry_sync.c), queries and the filter
 * language (registry_query.c, registry_filter.c), models and aliases (registry_models.c). It
 * reads run folders (src/run/) and is read by the CLI, the server and the board; nothing below
 * it knows it exists. Layers: docs/architecture.md.
 *
 * registry.c — opening <runs_dir>/kiln.db: the connection, its settings, the schema and its
 * migrations, marking crashed runs, and the small helpers every registry file uses.
 *
 * Settings, per connection: WAL journal (stored in the file: the first opener switches it),
 * synchronous=NORMAL (in WAL mode a commit is durable once the WAL is checkpointed; a power cut
 * may lose the last commits but never corrupts the file, and the folders hold everything
 * anyway), foreign keys on (a run's params and metrics go with it), a busy timeout.
 *
 * Schema versions: user_version is the version of the schema in the file and MIGRATIONS[v] takes
 * it from v to v + 1. Opening applies the missing steps in one write transaction that re-reads
 * user_version first, so processes opening a new file at once create it exactly once. A file
 * whose application_id is not kiln's, while it holds tables or a version, belongs to another
 * program and is refused; so is a version above KILN_REGISTRY_SCHEMA (a newer kiln wrote it).
 *
 * Read-only folders (an archive, a read-only mount, another user's runs): when the runs folder
 * or kiln.db cannot be written, the connection is to an in-memory database that starts as a copy
 * of kiln.db (SQLite's backup API; kiln_reg_open_file reads it, with immutable=1 where a WAL file
 * cannot be read otherwise) or empty when there is none. Everything that reads works there, the
 * sync from the folders included (so the answer is current even when kiln.db is old or missing);
 * the public calls that change something refuse (kiln_reg_writable). Nothing touches the folder.
 *
 * Crashed runs: rows that say running are probed (kiln_reg_run_alive); the dead ones are marked
 * failed in one write transaction that probes each again, so a run resumed meanwhile (its new
 * writer takes the folder's lock before it touches the registry) is never marked. Then the points
 * the dead writer logged but had not flushed are read from its metrics.jsonl.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <sqlite3.h>
#include <unistd.h>

#include "registry/registry_internal.h"
#include "run/run_internal.h"

#define APPLICATION_ID 0x6b696c6e /* "kiln" */
#define BUSY_MS_CLI    10000

static const char *const MIGRATIONS[KILN_REGISTRY_SCHEMA] = {
    /* 0 -> 1 */
    "CREATE TABLE experiments ("
    "  eid INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created TEXT NOT NULL);"
    "CREATE TABLE runs ("
    "  rid INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  eid INTEGER NOT NULL REFERENCES experiments(eid),"
    "  name TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'stopped')),"
    "  message TEXT,"
    "  start_time TEXT NOT NULL,"
    "  end_time TEXT,"
    "  host TEXT,"
    "  pid INTEGER,"
    "  kiln_version TEXT,"
    "  seed TEXT,"
    "  config_hash TEXT,"
    "  command TEXT,"
    "  epochs_completed INTEGER NOT NULL DEFAULT 0,"
    "  steps INTEGER NOT NULL DEFAULT 0,"
    "  checkpoint TEXT,"
    "  json_stamp TEXT,"
    "  metrics_offset INTEGER NOT NULL DEFAULT 0,"
    "  params_hash TEXT);"
    "CREATE INDEX runs_by_experiment ON runs(eid, start_time);"
    "CREATE INDEX runs_by_start ON runs(start_time);"
    "CREATE INDEX runs_by_status ON runs(status);"
    "CREATE TABLE params ("
    "  rid INTEGER NOT NULL REFERENCES runs(rid) ON DELETE CASCADE,"
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  num REAL,"
    "  PRIMARY KEY (rid, key)) WITHOUT ROWID;"
    "CREATE TABLE metrics ("
    "  rid INTEGER NOT NULL REFERENCES runs(rid) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  wall_time REAL NOT NULL,"
    "  value REAL,"
    "  PRIMARY KEY (rid, name, step)) WITHOUT ROWID;"
    "CREATE TABLE latest_metrics ("
    "  rid INTEGER NOT NULL REFERENCES runs(rid) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  value REAL,"
    "  PRIMARY KEY (rid, name)) WITHOUT ROWID;"
    "CREATE INDEX latest_by_name ON latest_metrics(name, value);"
    "CREATE TABLE models ("
    "  mid INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created TEXT NOT NULL);"
    "CREATE TABLE model_versions ("
    "  mid INTEGER NOT NULL REFERENCES models(mid) ON DELETE CASCADE,"
    "  version INTEGER NOT NULL CHECK (version > 0),"
    "  rid INTEGER REFERENCES runs(rid) ON DELETE SET NULL,"
    "  run TEXT,"
    "  checkpoint TEXT,"
    "  path TEXT NOT NULL,"
    "  created TEXT NOT NULL,"
    "  PRIMARY KEY (mid, version));"
    "CREATE INDEX model_versions_by_run ON model_versions(rid);"
    "CREATE TABLE aliases ("
    "  mid INTEGER NOT NULL,"
    "  alias TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  PRIMARY KEY (mid, alias),"
    "  FOREIGN KEY (mid, version) REFERENCES model_versions(mid, version) ON DELETE CASCADE);",
    /* 1 -> 2: kiln tune's studies and trials (registry_study.c), and runs may say 'pruned': the
     * CHECK of runs.status only widens, so the stored table definition is edited in place (SQLite's
     * documented writable_schema procedure; migrate() then bumps schema_version). */
    "CREATE TABLE studies ("
    "  sid INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  experiment TEXT NOT NULL,"
    "  metric TEXT NOT NULL,"
    "  direction TEXT NOT NULL CHECK (direction IN ('minimize', 'maximize')),"
    "  created TEXT NOT NULL,"
    "  spec TEXT NOT NULL);"
    "CREATE TABLE trials ("
    "  sid INTEGER NOT NULL REFERENCES studies(sid) ON DELETE CASCADE,"
    "  number INTEGER NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('running', 'finished', 'pruned', 'failed')),"
    "  run TEXT,"
    "  params TEXT NOT NULL,"
    "  x TEXT NOT NULL,"
    "  value REAL,"
    "  resource REAL,"
    "  start_time TEXT NOT NULL,"
    "  end_time TEXT,"
    "  message TEXT,"
    "  PRIMARY KEY (sid, number));"
    "CREATE INDEX trials_by_run ON trials(run);"
    "PRAGMA writable_schema = ON;"
    "UPDATE sqlite_master SET sql = replace(sql, '''failed'', ''stopped'')',"
    "  '''failed'', ''stopped'', ''pruned'')') WHERE type = 'table' AND name = 'runs';"
    "PRAGMA writable_schema = OFF;",
    /* 2 -> 3: PostgreSQL's params_by_key (see PG_MIGRATIONS). Nothing here: SQLite's list reads
     * a param per run through the primary key (registry_query.c), so an index by key would only
     * cost (a 10,000-run import 40% slower, kiln.db 20% bigger), and the version numbers stay
     * the same on both. */
    "",
};

static const char *const STMT_SQL[REG_N_STMTS] = {
    [REG_EXPERIMENT_GET] = "SELECT eid FROM experiments WHERE name = ?1",
    [REG_EXPERIMENT_ADD] = "INSERT INTO experiments(name, created) VALUES (?1, ?2) RETURNING eid",
    [REG_RUN_UPSERT] =
        "INSERT INTO runs(id, eid, name, status, message, start_time, end_time, host, pid,"
        " kiln_version, seed, config_hash, command, epochs_completed, steps, checkpoint,"
        " json_stamp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
        " ?16, ?17) ON CONFLICT(id) DO UPDATE SET eid = excluded.eid, name = excluded.name,"
        " status = excluded.status, message = excluded.message,"
        " start_time = excluded.start_time, end_time = excluded.end_time, host = excluded.host,"
        " pid = excluded.pid, kiln_version = excluded.kiln_version, seed = excluded.seed,"
        " config_hash = excluded.config_hash, command = excluded.command,"
        " epochs_completed = excluded.epochs_completed, steps = excluded.steps,"
        " checkpoint = excluded.checkpoint,"
        " json_stamp = coalesce(excluded.json_stamp, runs.json_stamp) RETURNING rid",
    [REG_RUN_STATE] = "SELECT rid, json_stamp, metrics_offset, params_hash, config_hash"
                      " FROM runs WHERE id = ?1",
    [REG_RUN_OFFSET] = "UPDATE runs SET metrics_offset = CASE WHEN metrics_offset > ?2 THEN"
                      " metrics_offset ELSE ?2 END WHERE rid = ?1",
    [REG_RUN_OFFSET_RESET] = "UPDATE runs SET metrics_offset = 0 WHERE rid = ?1",
    [REG_RUN_PARAMS_HASH] = "UPDATE runs SET params_hash = ?2 WHERE rid = ?1",
    [REG_PARAMS_CLEAR] = "DELETE FROM params WHERE rid = ?1",
    [REG_PARAM_ADD] = "INSERT INTO params(rid, key, value, num) VALUES (?1, ?2, ?3, ?4)"
                      " ON CONFLICT(rid, key) DO UPDATE SET value = excluded.value,"
                      " num = excluded.num",
    [REG_POINT_ADD] = "INSERT INTO metrics(rid, name, step, wall_time, value)"
                      " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(rid, name, step) DO UPDATE SET"
                      " wall_time = excluded.wall_time, value = excluded.value",
    [REG_LATEST_ADD] = "INSERT INTO latest_metrics(rid, name, step, value) VALUES (?1, ?2, ?3, ?4)"
                       " ON CONFLICT(rid, name) DO UPDATE SET step = excluded.step,"
                       " value = excluded.value WHERE excluded.step >= latest_metrics.step",
    [REG_METRICS_CLEAR] = "DELETE FROM metrics WHERE rid = ?1",
    [REG_LATEST_CLEAR] = "DELETE FROM latest_metrics WHERE rid = ?1",
    [REG_LATEST_OF] = "SELECT l.name, l.step, l.value FROM latest_metrics l"
                      " WHERE l.rid = (SELECT rid FROM runs WHERE id = ?1) ORDER BY l.name",
};

/* ---- helpers ---- */

kiln_status kiln_reg_fail(kiln_registry *reg, int rc, const char *what) {
    const char *msg = reg && reg->db ? reg_db_errmsg(reg->db) : "";
    const char *path = reg && reg->path ? reg->path : "kiln.db";
    int remote = reg && reg->remote;
    switch (rc) {
    case REG_ENOMEM:
        return kiln_error(KILN_ERR_NOMEM, "%s: %s: out of memory", path, what);
    case REG_EFORMAT:
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: %s: %s (not a kiln registry, or a damaged one: move it away and "
                          "kiln rebuilds it from the run folders)",
                          path, what, msg);
    case REG_EBUSY:
        if (remote) return kiln_error(KILN_ERR_IO, "%s: %s: %s", path, what, msg);
        return kiln_error(KILN_ERR_IO, "%s: %s: the registry stayed locked by another process",
                          path, what);
    case REG_EFULL:
        return kiln_error(KILN_ERR_IO, "%s: %s: disk full", path, what);
    case REG_ECONN:
        return kiln_error(KILN_ERR_IO, "%s: %s: the database server cannot be reached: %s", path,
                          what, msg);
    case REG_ECONSTRAINT:
    case REG_EINVALID:
        return kiln_error(KILN_ERR_INVALID, "%s: %s: %s", path, what, msg);
    default:
        return kiln_error(KILN_ERR_IO, "%s: %s: %s", path, what, msg);
    }
}

reg_stmt *kiln_reg_stmt(kiln_registry *reg, int which) {
    reg_stmt *st = reg->stmts[which];
    if (st) {
        reg_reset(st);
        reg_clear_bindings(st);
        return st;
    }
    int rc = reg_prepare(reg->db, STMT_SQL[which], &reg->stmts[which]);
    if (rc != REG_OK) {
        kiln_reg_fail(reg, rc, "preparing a statement");
        return NULL;
    }
    return reg->stmts[which];
}

kiln_status kiln_reg_exec(kiln_registry *reg, const char *sql, const char *what) {
    int rc = reg_exec(reg->db, sql);
    return rc == REG_OK ? KILN_OK : kiln_reg_fail(reg, rc, what);
}

kiln_status kiln_reg_step_done(kiln_registry *reg, reg_stmt *st, const char *what) {
    int rc;
    while ((rc = reg_step(st)) == REG_ROW) {
    }
    kiln_status s = rc == REG_DONE ? KILN_OK : kiln_reg_fail(reg, rc, what);
    reg_reset(st);
    return s;
}

kiln_status kiln_reg_begin(kiln_registry *reg) {
    int rc = reg_db_begin(reg->db);
    if (rc != REG_OK) {
        kiln_status s = kiln_reg_fail(reg, rc, "starting a write");
        kiln_reg_rollback(reg);
        return s;
    }
    return KILN_OK;
}

kiln_status kiln_reg_commit(kiln_registry *reg) {
    kiln_status s = kiln_reg_flush_points(reg);
    if (!s) s = kiln_reg_exec(reg, "COMMIT", "committing");
    if (s) kiln_reg_rollback(reg);
    return s;
}

void kiln_reg_rollback(kiln_registry *reg) {
    kiln_reg_drop_points(reg);
    if (reg_in_tx(reg->db)) reg_exec(reg->db, "ROLLBACK");
}

void kiln_reg_bind_text(reg_stmt *st, int i, const char *s) {
    reg_bind_text(st, i, s);
}

const char *kiln_reg_col_text(reg_stmt *st, int i) {
    return reg_col_text(st, i);
}

kiln_status kiln_reg_run_path(const kiln_registry *reg, const char *id, char *out, size_t cap) {
    return kiln_run_join(out, cap, reg->runs_dir, id);
}

int kiln_registry_read_only(const kiln_registry *reg) {
    return reg && reg->read_only;
}

kiln_status kiln_reg_writable(const kiln_registry *reg, const char *what) {
    if (!reg->read_only) return KILN_OK;
    return kiln_error(KILN_ERR_IO, "%s is read-only: cannot %s", reg->runs_dir, what);
}

const char *kiln_registry_runs_dir(const kiln_registry *reg) {
    return reg->runs_dir;
}
const char *kiln_registry_path(const kiln_registry *reg) {
    return reg->path;
}

/* ---- a run's folder ---- */

int kiln_reg_run_alive(const char *path, const char *host, long pid) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? 0 : 1;
    int r;
    while ((r = flock(fd, LOCK_SH | LOCK_NB)) != 0 && errno == EINTR) {
    }
    int e = errno;
    if (r == 0) flock(fd, LOCK_UN);
    close(fd);
    if (r == 0) return 0;
    if (e == EWOULDBLOCK) return 1;
    /* No flock here: ask the process table, where it is ours to ask. */
    char me[256] = "";
    if (gethostname(me, sizeof me - 1) != 0 || !host || strcmp(host, me) || pid <= 0) return 1;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

void kiln_reg_last_sign(const char *path, char out[24]) {
    static const char *const files[] = {"run.json", "metrics.jsonl", "log.txt"};
    time_t newest = 0;
    char p[4200];
    struct stat st;
    for (int i = 0; i < 3; i++)
        if (snprintf(p, sizeof p, "%s/%s", path, files[i]) < (int)sizeof p && stat(p, &st) == 0 &&
            st.st_mtime > newest)
            newest = st.st_mtime;
    out[0] = 0;
    if (newest) kiln_run_iso_time((long long)newest, out);
}

int kiln_reg_json_stamp(const char *path, char out[64]) {
    char p[4200];
    struct stat st;
    out[0] = 0;
    if (snprintf(p, sizeof p, "%s/run.json", path) >= (int)sizeof p || stat(p, &st) != 0 ||
        !S_ISREG(st.st_mode))
        return 0;
    snprintf(out, 64, "%llu:%lld.%09ld:%lld", (unsigned long long)st.st_ino,
             (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_size);
    return 1;
}

/* ---- opening ---- */

#define LITE(reg) ((sqlite3 *)reg_db_sqlite((reg)->db))

static kiln_status lite_fail(kiln_registry *reg, int rc, const char *what) {
    return kiln_reg_fail(reg, reg_map_sqlite(rc), what);
}

static kiln_status pragma_int(kiln_registry *reg, const char *sql, int64_t *v) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(LITE(reg), sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *v = sqlite3_column_int64(st, 0), rc = SQLITE_OK;
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? KILN_OK : lite_fail(reg, rc, "reading its header");
}

/* Switches the file to WAL. Changing the journal mode needs the file to itself for an instant, and
 * SQLite does not wait for that through the busy handler, so retry for up to busy_ms. */
static kiln_status use_wal(kiln_registry *reg, int busy_ms) {
    for (int waited = 0;; waited += 10) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(LITE(reg), "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        int wal = rc == SQLITE_ROW && sqlite3_column_text(st, 0) &&
                  !strcmp((const char *)sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
        if (wal) return KILN_OK;
        if (rc == SQLITE_ROW)
            return kiln_error(KILN_ERR_IO, "%s: cannot switch to WAL mode (%s)", reg->path,
                              "the file system may not support it");
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
            return lite_fail(reg, rc, "switching to WAL mode");
        if (waited >= busy_ms) return lite_fail(reg, rc, "switching to WAL mode");
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
}

static kiln_status check_owner(kiln_registry *reg, int64_t app, int64_t version) {
    if (app != APPLICATION_ID && (app != 0 || version != 0))
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: not a kiln registry (an SQLite database of another program)",
                          reg->path);
    if (version > KILN_REGISTRY_SCHEMA)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: written by a newer kiln (registry schema %lld; this kiln knows up "
                          "to %d)",
                          reg->path, (long long)version, KILN_REGISTRY_SCHEMA);
    return KILN_OK;
}

static kiln_status migrate_sqlite(kiln_registry *reg) {
    int64_t app = 0, version = 0, tables = 0;
    kiln_status s;
    if ((s = pragma_int(reg, "PRAGMA application_id", &app)) ||
        (s = pragma_int(reg, "PRAGMA user_version", &version)) ||
        (s = check_owner(reg, app, version)))
        return s;
    if (app == APPLICATION_ID && version == KILN_REGISTRY_SCHEMA) return KILN_OK;
    if ((s = kiln_reg_begin(reg))) return s;
    if ((s = pragma_int(reg, "PRAGMA application_id", &app)) ||
        (s = pragma_int(reg, "PRAGMA user_version", &version)) ||
        (s = pragma_int(reg, "SELECT count(*) FROM sqlite_master", &tables)))
        goto out;
    if (app != APPLICATION_ID && version == 0 && tables > 0) app = -1; /* someone else's tables */
    if ((s = check_owner(reg, app, version))) goto out;
    for (int64_t v = version; v < KILN_REGISTRY_SCHEMA; v++)
        if ((s = kiln_reg_exec(reg, MIGRATIONS[v], "creating the schema"))) goto out;
    char sql[96];
    int64_t cookie = 0;
    if (version < 2) { /* the edited table definition: every connection re-reads the schema */
        if ((s = pragma_int(reg, "PRAGMA schema_version", &cookie))) goto out;
        snprintf(sql, sizeof sql, "PRAGMA schema_version = %lld", (long long)cookie + 1);
        if ((s = kiln_reg_exec(reg, sql, "upgrading the schema"))) goto out;
    }
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d; PRAGMA application_id = %d",
             KILN_REGISTRY_SCHEMA, APPLICATION_ID);
    if ((s = kiln_reg_exec(reg, sql, "recording the schema version"))) goto out;
    return kiln_reg_commit(reg);
out:
    kiln_reg_rollback(reg);
    return s;
}

typedef struct {
    int64_t rid;
    char *id, *host;
    long pid;
} suspect;

/* Marks the runs whose process is gone failed (see the top of this file). */
static kiln_status mark_crashed(kiln_registry *reg) {
    reg_stmt *st = NULL;
    int rc = reg_prepare(reg->db, "SELECT rid, id, host, pid FROM runs WHERE status = 'running'",
                         &st);
    if (rc != REG_OK) return kiln_reg_fail(reg, rc, "looking for crashed runs");
    suspect *dead = NULL;
    int n = 0, cap = 0;
    kiln_status s = KILN_OK;
    char path[4200];
    while (!s && (rc = reg_step(st)) == REG_ROW) {
        const char *id = kiln_reg_col_text(st, 1), *host = kiln_reg_col_text(st, 2);
        long pid = (long)reg_col_int64(st, 3);
        if (!id || kiln_reg_run_path(reg, id, path, sizeof path)) continue;
        if (kiln_reg_run_alive(path, host, pid)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            suspect *d = realloc(dead, (size_t)cap * sizeof *d);
            if (!d) {
                s = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
                break;
            }
            dead = d;
        }
        dead[n] =
            (suspect){reg_col_int64(st, 0), strdup(id), host ? strdup(host) : NULL, pid};
        if (!dead[n].id || (host && !dead[n].host)) {
            free(dead[n].id), free(dead[n].host);
            s = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
            break;
        }
        n++;
    }
    if (!s && rc != REG_DONE && rc != REG_ROW) s = kiln_reg_fail(reg, rc, "reading runs");
    reg_finalize(st);
    st = NULL;
    if (!s && n && !(s = kiln_reg_begin(reg))) {
        rc = reg_prepare(reg->db,
                         "UPDATE runs SET status = 'failed', end_time = ?2, message = ?3"
                         " WHERE rid = ?1 AND status = 'running'",
                         &st);
        if (rc != REG_OK) s = kiln_reg_fail(reg, rc, "marking crashed runs");
        for (int i = 0; !s && i < n; i++) {
            if (kiln_reg_run_path(reg, dead[i].id, path, sizeof path) ||
                kiln_reg_run_alive(path, dead[i].host, dead[i].pid))
                continue;
            char end[24], msg[512];
            kiln_reg_last_sign(path, end);
            snprintf(msg, sizeof msg,
                     "the process (pid %ld on %s) ended without closing the run: it crashed or "
                     "was killed",
                     dead[i].pid, dead[i].host ? dead[i].host : "an unknown host");
            reg_bind_int64(st, 1, dead[i].rid);
            kiln_reg_bind_text(st, 2, end[0] ? end : NULL);
            kiln_reg_bind_text(st, 3, msg);
            s = kiln_reg_step_done(reg, st, "marking a crashed run");
        }
        reg_finalize(st);
        s = s ? (kiln_reg_rollback(reg), s) : kiln_reg_commit(reg);
    }
    /* The points a dead writer had not flushed yet: best effort (a folder that cannot be read
     * now keeps the registry as it is; the run.json of a run that is resumed brings them). */
    for (int i = 0; !s && i < n; i++)
        if (kiln_reg_sync_run(reg, dead[i].id, NULL)) kiln_error_clear();
    for (int i = 0; i < n; i++) free(dead[i].id), free(dead[i].host);
    free(dead);
    return s;
}

/* "file:" URI of path with ?query: '%', '?' and '#' are %-escaped, and an absolute path gets an
 * empty authority ("file:///x"), so that one starting with "//" is not read as a host name. */
static char *file_uri(const char *path, const char *query) {
    size_t n = strlen(path), cap = 3 * n + strlen(query) + 16;
    char *u = malloc(cap), *o = u;
    if (!u) return NULL;
    o += sprintf(o, path[0] == '/' ? "file://" : "file:");
    for (const char *p = path; *p; p++)
        if (*p == '%' || *p == '?' || *p == '#') o += sprintf(o, "%%%02X", (unsigned char)*p);
        else *o++ = *p;
    sprintf(o, "?%s", query);
    return u;
}

/* Opens path with uri query q for reading and reads its header, which is where SQLite finds out
 * whether it can read a WAL-mode file at all. */
static int open_file_as(const char *path, const char *q, int busy_ms, sqlite3 **db) {
    *db = NULL;
    char *uri = file_uri(path, q);
    if (!uri) return SQLITE_NOMEM;
    int rc = sqlite3_open_v2(uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                             NULL);
    free(uri);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(*db, 1);
        sqlite3_busy_timeout(*db, busy_ms);
        rc = sqlite3_exec(*db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    }
    return rc;
}

int kiln_reg_open_file(const char *path, int busy_ms, void **sqlite_db) {
    sqlite3 **db = (sqlite3 **)sqlite_db;
    int rc = open_file_as(path, "mode=ro", busy_ms, db);
    int e = rc & 0xff;
    if (e != SQLITE_CANTOPEN && e != SQLITE_READONLY && e != SQLITE_IOERR) return rc;
    sqlite3_close_v2(*db);
    rc = open_file_as(path, "immutable=1", busy_ms, db);
    return rc;
}

/* The in-memory copy of a registry that cannot be written (see the top of this file). */
static kiln_status open_snapshot(kiln_registry *reg, int busy_ms) {
    reg->read_only = 1;
    sqlite3 *mem = NULL;
    int rc = sqlite3_open_v2(":memory:", &mem,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (!(reg->db = reg_db_wrap_sqlite(mem)))
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
    if (rc != SQLITE_OK) return lite_fail(reg, rc, "opening a copy in memory");
    sqlite3_extended_result_codes(mem, 1);
    struct stat st;
    if (stat(reg->path, &st) != 0) return KILN_OK; /* folders only: the sync fills the copy */
    sqlite3 *file = NULL;
    rc = kiln_reg_open_file(reg->path, busy_ms, (void **)&file);
    if (rc == SQLITE_OK) {
        sqlite3_backup *b = sqlite3_backup_init(mem, "main", file, "main");
        if (!b) {
            rc = sqlite3_errcode(mem);
        } else {
            rc = sqlite3_backup_step(b, -1);
            int rc2 = sqlite3_backup_finish(b);
            rc = rc == SQLITE_DONE ? rc2 : rc;
        }
    }
    kiln_status s = KILN_OK;
    if (rc != SQLITE_OK) {
        const char *msg = file ? sqlite3_errmsg(file) : sqlite3_errstr(rc);
        s = (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT
                ? kiln_error(KILN_ERR_FORMAT,
                             "%s: reading it: %s (not a kiln registry, or a damaged one)",
                             reg->path, msg)
                : kiln_error(KILN_ERR_IO, "%s: reading it: %s", reg->path, msg);
    }
    sqlite3_close_v2(file);
    return s;
}

/* Whether kiln.db in the runs folder cannot be written (and so is opened as a copy): the folder
 * or the file refuse writing (a read-only mount: EROFS; permissions: EACCES). */
static int cannot_write(const kiln_registry *reg) {
    if (access(reg->runs_dir, W_OK) != 0) return errno == EROFS || errno == EACCES;
    return access(reg->path, W_OK) != 0 && (errno == EROFS || errno == EACCES);
}

/* "off" and an MLflow server concern a training's run only: the index itself, read and written
 * by the commands, is then the default, <runs_dir>/kiln.db (the parser leaves their path empty). */
static void local_index(kiln_reg_uri *u) {
    if (u->kind == REG_URI_OFF || u->kind == REG_URI_MLFLOW) u->kind = REG_URI_SQLITE;
}

/* A registry for runs_dir at uri u, not connected yet; NULL without memory (error set). */
static kiln_registry *new_reg(const char *runs_dir, const kiln_reg_uri *u) {
    kiln_registry *reg = calloc(1, sizeof *reg);
    size_t n = strlen(runs_dir);
    while (n > 1 && runs_dir[n - 1] == '/') n--;
    if (reg && (reg->runs_dir = strndup(runs_dir, n))) {
        if (u->kind == REG_URI_PG)
            reg->path = strdup(u->display), reg->remote = 1;
        else if (u->path[0])
            reg->path = strdup(u->path);
        else if ((reg->path = malloc(n + sizeof "/" KILN_REGISTRY_FILE)))
            sprintf(reg->path, "%s/%s", reg->runs_dir, KILN_REGISTRY_FILE);
        if (reg->path) return reg;
    }
    kiln_registry_close(reg);
    kiln_error(KILN_ERR_NOMEM, "registry %s: out of memory", runs_dir);
    return NULL;
}

static kiln_status check_runs_dir(const char *runs_dir) {
    if (!runs_dir || !*runs_dir) return kiln_error(KILN_ERR_INVALID, "registry: empty runs folder");
    struct stat st;
    if (stat(runs_dir, &st) != 0)
        return kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO,
                          "registry: runs folder %s: %s", runs_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return kiln_error(KILN_ERR_NOTFOUND, "registry: %s is not a folder", runs_dir);
    return KILN_OK;
}

/* ---- PostgreSQL ---- */

/* The schema on PostgreSQL, version by version as MIGRATIONS: the same tables, columns, keys and
 * indexes; BIGINT identity keys for INTEGER PRIMARY KEY, DOUBLE PRECISION for REAL, text in the
 * "C" collation (byte order, as SQLite sorts), and kiln_meta in place of the file header (application, schema version, runs folder). */
#define PG_TEXT "TEXT COLLATE \"C\""
static const char *const PG_MIGRATIONS[KILN_REGISTRY_SCHEMA] = {
    /* 0 -> 1 */
    "CREATE TABLE experiments ("
    "  eid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  name " PG_TEXT " NOT NULL UNIQUE,"
    "  created " PG_TEXT " NOT NULL);"
    "CREATE TABLE runs ("
    "  rid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  id " PG_TEXT " NOT NULL UNIQUE,"
    "  eid BIGINT NOT NULL REFERENCES experiments(eid),"
    "  name " PG_TEXT " NOT NULL,"
    "  status " PG_TEXT " NOT NULL CONSTRAINT runs_status_check"
    "    CHECK (status IN ('running', 'finished', 'failed', 'stopped')),"
    "  message " PG_TEXT ","
    "  start_time " PG_TEXT " NOT NULL,"
    "  end_time " PG_TEXT ","
    "  host " PG_TEXT ","
    "  pid BIGINT,"
    "  kiln_version " PG_TEXT ","
    "  seed " PG_TEXT ","
    "  config_hash " PG_TEXT ","
    "  command " PG_TEXT ","
    "  epochs_completed BIGINT NOT NULL DEFAULT 0,"
    "  steps BIGINT NOT NULL DEFAULT 0,"
    "  checkpoint " PG_TEXT ","
    "  json_stamp " PG_TEXT ","
    "  metrics_offset BIGINT NOT NULL DEFAULT 0,"
    "  params_hash " PG_TEXT ");"
    "CREATE INDEX runs_by_experiment ON runs(eid, start_time);"
    "CREATE INDEX runs_by_start ON runs(start_time);"
    "CREATE INDEX runs_by_status ON runs(status);"
    "CREATE TABLE params ("
    "  rid BIGINT NOT NULL REFERENCES runs(rid) ON DELETE CASCADE,"
    "  key " PG_TEXT " NOT NULL,"
    "  value " PG_TEXT " NOT NULL,"
    "  num DOUBLE PRECISION,"
    "  PRIMARY KEY (rid, key));"
    "CREATE TABLE metrics ("
    "  rid BIGINT NOT NULL REFERENCES runs(rid) ON DELETE CASCADE,"
    "  name " PG_TEXT " NOT NULL,"
    "  step BIGINT NOT NULL,"
    "  wall_time DOUBLE PRECISION NOT NULL,"
    "  value DOUBLE PRECISION,"
    "  PRIMARY KEY (rid, name, step));"
    "CREATE TABLE latest_metrics ("
    "  rid BIGINT NOT NULL REFERENCES runs(rid) ON DELETE CASCADE,"
    "  name " PG_TEXT " NOT NULL,"
    "  step BIGINT NOT NULL,"
    "  value DOUBLE PRECISION,"
    "  PRIMARY KEY (rid, name));"
    "CREATE INDEX latest_by_name ON latest_metrics(name, value);"
    "CREATE TABLE models ("
    "  mid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  name " PG_TEXT " NOT NULL UNIQUE,"
    "  created " PG_TEXT " NOT NULL);"
    "CREATE TABLE model_versions ("
    "  mid BIGINT NOT NULL REFERENCES models(mid) ON DELETE CASCADE,"
    "  version BIGINT NOT NULL CHECK (version > 0),"
    "  rid BIGINT REFERENCES runs(rid) ON DELETE SET NULL,"
    "  run " PG_TEXT ","
    "  checkpoint " PG_TEXT ","
    "  path " PG_TEXT " NOT NULL,"
    "  created " PG_TEXT " NOT NULL,"
    "  PRIMARY KEY (mid, version));"
    "CREATE INDEX model_versions_by_run ON model_versions(rid);"
    "CREATE TABLE aliases ("
    "  mid BIGINT NOT NULL,"
    "  alias " PG_TEXT " NOT NULL,"
    "  version BIGINT NOT NULL,"
    "  PRIMARY KEY (mid, alias),"
    "  FOREIGN KEY (mid, version) REFERENCES model_versions(mid, version) ON DELETE CASCADE);",
    /* 1 -> 2 */
    "CREATE TABLE studies ("
    "  sid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  name " PG_TEXT " NOT NULL UNIQUE,"
    "  experiment " PG_TEXT " NOT NULL,"
    "  metric " PG_TEXT " NOT NULL,"
    "  direction " PG_TEXT " NOT NULL CHECK (direction IN ('minimize', 'maximize')),"
    "  created " PG_TEXT " NOT NULL,"
    "  spec " PG_TEXT " NOT NULL);"
    "CREATE TABLE trials ("
    "  sid BIGINT NOT NULL REFERENCES studies(sid) ON DELETE CASCADE,"
    "  number BIGINT NOT NULL,"
    "  state " PG_TEXT " NOT NULL CHECK (state IN ('running', 'finished', 'pruned', 'failed')),"
    "  run " PG_TEXT ","
    "  params " PG_TEXT " NOT NULL,"
    "  x " PG_TEXT " NOT NULL,"
    "  value DOUBLE PRECISION,"
    "  resource DOUBLE PRECISION,"
    "  start_time " PG_TEXT " NOT NULL,"
    "  end_time " PG_TEXT ","
    "  message " PG_TEXT ","
    "  PRIMARY KEY (sid, number));"
    "CREATE INDEX trials_by_run ON trials(run);"
    "ALTER TABLE runs DROP CONSTRAINT runs_status_check, ADD CONSTRAINT runs_status_check"
    " CHECK (status IN ('running', 'finished', 'failed', 'stopped', 'pruned'));",
    /* 2 -> 3: one param key's rows at once: the list joins a param's rows for every run (a
     * filter, sort key or column on it) instead of probing per run (registry_query.c) */
    "CREATE INDEX params_by_key ON params(key, rid);",
};

/* One text from a query without parameters into out ("" and *found 0 when no row or NULL). */
static kiln_status pg_text(kiln_registry *reg, const char *sql, char *out, size_t cap,
                           int *found) {
    reg_stmt *st = NULL;
    out[0] = 0, *found = 0;
    int rc = reg_prepare(reg->db, sql, &st);
    if (rc == REG_OK) rc = reg_step(st);
    if (rc == REG_ROW && reg_col_text(st, 0))
        *found = 1, snprintf(out, cap, "%s", reg_col_text(st, 0)), rc = REG_OK;
    else if (rc == REG_ROW || rc == REG_DONE)
        rc = REG_OK;
    reg_finalize(st);
    return rc == REG_OK ? KILN_OK : kiln_reg_fail(reg, rc, "reading its schema");
}

/* The schema version in kiln_meta (0 without one); KILN_ERR_FORMAT when the schema holds tables
 * of another program or a newer kiln's schema. */
static kiln_status pg_version(kiln_registry *reg, int64_t *version) {
    char v[64];
    int found;
    *version = 0;
    /* one statement, so both counts come from one snapshot */
    kiln_status s = pg_text(reg,
                            "SELECT CAST(count(*) FILTER (WHERE tablename = 'kiln_meta') AS TEXT)"
                            " || ' ' || CAST(count(*) AS TEXT) FROM pg_tables"
                            " WHERE schemaname = current_schema()",
                            v, sizeof v, &found);
    if (s) return s;
    long long has_meta = 0, tables = 0;
    sscanf(v, "%lld %lld", &has_meta, &tables);
    if (!has_meta) {
        if (tables > 0)
            return kiln_error(KILN_ERR_FORMAT,
                              "%s: not a kiln registry (its schema holds tables of another "
                              "program: give kiln its own database or ?schema=NAME)",
                              reg->path);
        return KILN_OK;
    }
    if ((s = pg_text(reg, "SELECT value FROM kiln_meta WHERE key = 'schema'", v, sizeof v,
                     &found)))
        return s;
    *version = found ? atoll(v) : 0;
    if (*version > KILN_REGISTRY_SCHEMA)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: written by a newer kiln (registry schema %lld; this kiln knows up "
                          "to %d)",
                          reg->path, (long long)*version, KILN_REGISTRY_SCHEMA);
    return KILN_OK;
}

static kiln_status migrate_pg(kiln_registry *reg) {
    int64_t version;
    kiln_status s = pg_version(reg, &version);
    if (!s && version == KILN_REGISTRY_SCHEMA) return KILN_OK;
    /* Anything else is judged under the lock: another process may be creating the schema right
     * now, and what two separate statements see of that differs. */
    kiln_error_clear();
    if ((s = kiln_reg_begin(reg))) return s; /* the advisory lock: one process migrates */
    if ((s = pg_version(reg, &version))) goto out;
    if (version == 0 &&
        (s = kiln_reg_exec(reg, "CREATE TABLE IF NOT EXISTS kiln_meta (key TEXT PRIMARY KEY,"
                                " value TEXT NOT NULL)",
                           "creating the schema")))
        goto out;
    for (int64_t v = version; v < KILN_REGISTRY_SCHEMA; v++)
        if ((s = kiln_reg_exec(reg, PG_MIGRATIONS[v], "creating the schema"))) goto out;
    char sql[200];
    snprintf(sql, sizeof sql,
             "INSERT INTO kiln_meta(key, value) VALUES ('application', 'kiln'), ('schema', '%d')"
             " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
             KILN_REGISTRY_SCHEMA);
    if ((s = kiln_reg_exec(reg, sql, "recording the schema version"))) goto out;
    return kiln_reg_commit(reg);
out:
    kiln_reg_rollback(reg);
    return s;
}

/* One database (or schema) indexes one runs folder: its rows are that folder's runs, and a sync
 * forgets rows whose folder is gone, so a second runs folder would delete the first one's rows.
 * The first opener records its runs folder; others must name the same one. */
static kiln_status pg_check_root(kiln_registry *reg, int record) {
    char real[PATH_MAX], have[PATH_MAX + 8];
    int found;
    if (!realpath(reg->runs_dir, real))
        return kiln_error(KILN_ERR_IO, "registry: cannot resolve %s: %s", reg->runs_dir,
                          strerror(errno));
    kiln_status s = pg_text(reg, "SELECT value FROM kiln_meta WHERE key = 'runs_dir'", have,
                            sizeof have, &found);
    if (s) return s;
    if (found) {
        if (!strcmp(have, real)) return KILN_OK;
        return kiln_error(KILN_ERR_INVALID,
                          "%s indexes the runs folder %s, not %s: give each runs folder its own "
                          "database or schema (postgresql://HOST/DB?schema=NAME)",
                          reg->path, have, real);
    }
    if (!record) return KILN_OK;
    reg_stmt *st = NULL;
    int rc = reg_prepare(reg->db,
                         "INSERT INTO kiln_meta(key, value) VALUES ('runs_dir', ?1)"
                         " ON CONFLICT(key) DO NOTHING",
                         &st);
    if (rc == REG_OK) {
        reg_bind_text(st, 1, real);
        rc = reg_step(st);
    }
    reg_finalize(st);
    if (rc != REG_DONE) return kiln_reg_fail(reg, rc, "recording the runs folder");
    return pg_check_root(reg, 0); /* another opener may have recorded first */
}

/* schema=auto: "runs_" and the 64-bit FNV-1a hash of the runs folder's real path, in hex. */
static kiln_status auto_schema(const kiln_registry *reg, char *out, size_t cap) {
    char real[PATH_MAX];
    if (!realpath(reg->runs_dir, real))
        return kiln_error(KILN_ERR_IO, "registry: cannot resolve %s: %s", reg->runs_dir,
                          strerror(errno));
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)real; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    snprintf(out, cap, "runs_%016llx", (unsigned long long)h);
    return KILN_OK;
}

/* The common case in one round trip: kiln_meta says the current schema and this runs folder
 * (else, or when there is no kiln_meta yet, pg_version and pg_check_root look closer). */
static int pg_current(kiln_registry *reg) {
    char real[PATH_MAX];
    reg_stmt *st = NULL;
    int ok = 0;
    if (realpath(reg->runs_dir, real) &&
        reg_prepare(reg->db,
                    "SELECT max(CASE WHEN key = 'schema' THEN value END),"
                    " max(CASE WHEN key = 'runs_dir' THEN value END) FROM kiln_meta",
                    &st) == REG_OK &&
        reg_step(st) == REG_ROW) {
        const char *v = reg_col_text(st, 0), *dir = reg_col_text(st, 1);
        ok = v && atoll(v) == KILN_REGISTRY_SCHEMA && dir && !strcmp(dir, real);
    }
    reg_finalize(st);
    return ok;
}

static kiln_status open_pg(kiln_registry *reg, const kiln_reg_uri *u, int busy_ms, int writing) {
    int timeout = busy_ms >= BUSY_MS_CLI ? 10 : 3;
    char schema[128];
    snprintf(schema, sizeof schema, "%s", u->schema);
    kiln_status s0 = strcmp(schema, "auto") ? KILN_OK : auto_schema(reg, schema, sizeof schema);
    if (s0) return s0;
    int rc = reg_db_open_pg(u->conninfo, schema[0] ? schema : NULL, timeout, &reg->db);
    if (rc == REG_EUNSUPPORTED)
        return kiln_error(KILN_ERR_INVALID,
                          "%s (registry from %s): this program has no PostgreSQL backend "
                          "(kiln-serve serves sqlite: and MLflow registries; use kiln serve, or "
                          "resolve the model with kiln models resolve)",
                          reg->path, u->origin);
    if (!reg->db) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
    if (rc != REG_OK)
        return kiln_error(rc == REG_ENOMEM ? KILN_ERR_NOMEM : KILN_ERR_IO,
                          "%s: cannot connect (registry from %s): %s", reg->path, u->origin,
                          reg_db_errmsg(reg->db));
    kiln_status s;
    if (pg_current(reg)) return writing ? mark_crashed(reg) : KILN_OK;
    if (!writing) {
        int64_t version = 0;
        if ((s = pg_version(reg, &version))) return s;
        if (version < KILN_REGISTRY_SCHEMA)
            return kiln_error(KILN_ERR_NOTFOUND,
                              "%s holds no registry yet (or an older one: any kiln runs command "
                              "creates or upgrades it)",
                              reg->path);
        return pg_check_root(reg, 0);
    }
    if ((s = migrate_pg(reg)) || (s = pg_check_root(reg, 1))) return s;
    return mark_crashed(reg);
}

/* ---- opening ---- */

kiln_status kiln_reg_open(const char *runs_dir, int busy_ms, kiln_registry **out) {
    *out = NULL;
    kiln_reg_uri u;
    kiln_status s = kiln_reg_uri_current(&u);
    return s ? s : kiln_reg_open_uri(runs_dir, &u, busy_ms, out);
}

kiln_status kiln_reg_open_uri(const char *runs_dir, const kiln_reg_uri *uri, int busy_ms,
                              kiln_registry **out) {
    *out = NULL;
    kiln_reg_uri u = *uri;
    kiln_status s = check_runs_dir(runs_dir);
    if (s) return s;
    local_index(&u);
    kiln_registry *reg = new_reg(runs_dir, &u);
    if (!reg) return KILN_ERR_NOMEM;
    int rc;
    if (u.kind == REG_URI_PG) {
        s = open_pg(reg, &u, busy_ms, 1);
    } else if (cannot_write(reg)) {
        s = open_snapshot(reg, busy_ms);
    } else {
        sqlite3 *lite = NULL;
        rc = sqlite3_open_v2(reg->path, &lite,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
        if (!(reg->db = reg_db_wrap_sqlite(lite)))
            s = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
        else if (rc != SQLITE_OK)
            s = lite_fail(reg, rc, "opening");
    }
    if (!s && u.kind != REG_URI_PG) {
        sqlite3_extended_result_codes(LITE(reg), 1);
        sqlite3_busy_timeout(LITE(reg), busy_ms);
        int64_t ignored;
        /* The first read tells a database from any other file. SQLite answers a file with a
         * database's magic but a header it cannot use with a plain error: that is the file's
         * fault too. */
        if (!(s = pragma_int(reg, "PRAGMA application_id", &ignored)) &&
            !(s = reg->read_only ? KILN_OK : use_wal(reg, busy_ms)) &&
            !(s = kiln_reg_exec(reg, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON",
                                "setting it up")) &&
            !(s = migrate_sqlite(reg)))
            s = mark_crashed(reg);
        if (s == KILN_ERR_INVALID) {
            char why[1024];
            snprintf(why, sizeof why, "%s", kiln_last_error());
            s = kiln_error(KILN_ERR_FORMAT,
                           "%s (not a kiln registry, or a damaged one: move it "
                           "away and kiln rebuilds it from the run folders)",
                           why);
        }
    }
    if (s) {
        kiln_registry_close(reg);
        return s;
    }
    *out = reg;
    return KILN_OK;
}

kiln_status kiln_reg_open_readonly(const char *runs_dir, kiln_registry **out) {
    *out = NULL;
    if (!runs_dir || !*runs_dir) return kiln_error(KILN_ERR_INVALID, "registry: empty runs folder");
    kiln_reg_uri u;
    kiln_status s = kiln_reg_uri_current(&u);
    if (s) return s;
    local_index(&u);
    kiln_registry *reg = new_reg(runs_dir, &u);
    if (!reg) return KILN_ERR_NOMEM;
    struct stat st;
    int64_t app = 0, version = 0;
    if (u.kind == REG_URI_PG) {
        s = open_pg(reg, &u, BUSY_MS_CLI, 0);
    } else if (stat(reg->path, &st) != 0) {
        s = kiln_error(KILN_ERR_NOTFOUND, "no registry %s (kiln creates it with the first run)",
                       reg->path);
    } else {
        sqlite3 *lite = NULL;
        int rc = kiln_reg_open_file(reg->path, BUSY_MS_CLI, (void **)&lite);
        if (!(reg->db = reg_db_wrap_sqlite(lite))) {
            s = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
        } else if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_NOTADB) {
            s = lite_fail(reg, rc, "opening");
        } else {
            if (!(s = pragma_int(reg, "PRAGMA application_id", &app)) &&
                !(s = pragma_int(reg, "PRAGMA user_version", &version)) &&
                !(s = check_owner(reg, app, version)) && version < KILN_REGISTRY_SCHEMA)
                s = kiln_error(KILN_ERR_NOTFOUND,
                               "%s holds no registry yet (or an older one: any kiln runs command "
                               "upgrades it)",
                               reg->path);
        }
    }
    if (s) {
        kiln_registry_close(reg);
        return s;
    }
    *out = reg;
    return KILN_OK;
}

kiln_status kiln_registry_open(const char *runs_dir, kiln_registry **out) {
    return kiln_reg_open(runs_dir, BUSY_MS_CLI, out);
}

void kiln_registry_close(kiln_registry *reg) {
    if (!reg) return;
    for (int i = 0; i < REG_N_STMTS; i++) reg_finalize(reg->stmts[i]);
    free(reg->pending);
    reg_db_close(reg->db);
    free(reg->runs_dir);
    free(reg->path);
    free(reg);
}

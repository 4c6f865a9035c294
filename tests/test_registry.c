/* test_registry.c — the run registry (src/registry/): schema and its version, refusing
 * foreign, newer and garbage files; a run's writer keeping its rows current (run, params,
 * metrics, status), batching and the offset into metrics.jsonl; a writer killed in the middle of
 * a transaction; crashed runs marked failed; two processes writing one registry at once; a
 * registry that fails (garbage, locked) never failing the run; importing run folders made
 * without a registry and following their changes; finding runs by reference; removing runs; the
 * filter language (canonical form, every error with its column, fuzzing) and what filters and
 * sort keys select; models, aliases and models:/ URIs.
 *
 * Everything happens under a mkdtemp folder in /tmp, removed at the end. No process forks while
 * this one holds an SQLite connection (SQLite's locks do not survive fork()).
 *
 * KILN_TEST_PG=postgresql://... runs the same tests on that PostgreSQL server (ctest's
 * test_registry_postgres, through tests/pg_test.sh): every runs folder gets a schema of its own
 * (?schema=auto), q1() and exec_sql() go there through libpq, and the few checks of SQLite's file
 * (garbage files, locks, pragmas) have PostgreSQL counterparts (foreign tables, a newer schema, a
 * server that cannot be reached, connections dropped by the server).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <libpq-fe.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "kiln/registry.h"
#include "run/run_internal.h" /* kiln_run_rmtree */

static char root[64];

static const char *at(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *at(const char *fmt, ...) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    int n = snprintf(buf[k], sizeof buf[k], "%s/", root);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf[k] + n, sizeof buf[k] - (size_t)n, fmt, ap);
    va_end(ap);
    return buf[k];
}

/* fork() for a child that must not outlive this process (a failed test must not leave a
 * child pausing forever). */
static pid_t fork_child(void) {
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
    }
    return pid;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void put(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp) return;
    fputs(text, fp);
    fclose(fp);
}

static void append(const char *path, const char *text) {
    FILE *fp = fopen(path, "ab");
    CHECK(fp != NULL);
    if (!fp) return;
    fputs(text, fp);
    fclose(fp);
}

static int count_in_file(const char *path, const char *needle) {
    void *buf;
    size_t n;
    if (kiln_file_read_all(path, &buf, &n, 1 << 24) != KILN_OK) return -1;
    int k = 0;
    for (const char *p = buf; (p = strstr(p, needle)); p++) k++;
    kiln_free(buf);
    return k;
}

static const char *pg_uri; /* KILN_TEST_PG, or NULL: SQLite */
static char pg_registry[1200];

/* KILN_REGISTRY as the tests want it: unset (SQLite), or the server with schema=auto. */
static void registry_env(void) {
    if (pg_uri)
        setenv("KILN_REGISTRY", pg_registry, 1);
    else
        unsetenv("KILN_REGISTRY");
}

/* The schema of dir under schema=auto (kiln/registry.h): runs_ + FNV-1a 64 of its real path. */
static void schema_of(const char *dir, char out[64]) {
    char real[PATH_MAX];
    if (!realpath(dir, real)) snprintf(real, sizeof real, "%s", dir);
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)real; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    snprintf(out, 64, "runs_%016llx", (unsigned long long)h);
}

/* A libpq connection with dir's schema first in search_path (created when missing). */
static PGconn *pg_connect(const char *dir) {
    PGconn *c = PQconnectdb(pg_uri);
    char schema[64], sql[256];
    schema_of(dir, schema);
    snprintf(sql, sizeof sql,
             "SET client_min_messages = warning; CREATE SCHEMA IF NOT EXISTS %s;"
             " SET search_path TO %s",
             schema, schema);
    PGresult *r = PQexec(c, sql);
    PQclear(r);
    return c;
}

/* One integer from SQL on <dir>/kiln.db through a connection of its own (-1 on error). */
static int64_t q1(const char *dir, const char *sql) {
    if (pg_uri) {
        PGconn *c = pg_connect(dir);
        PGresult *r = PQexec(c, sql);
        int64_t v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 &&
                            !PQgetisnull(r, 0, 0)
                        ? (int64_t)strtod(PQgetvalue(r, 0, 0), NULL)
                        : -1;
        PQclear(r);
        PQfinish(c);
        return v;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/kiln.db", dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Runs SQL on <dir>/kiln.db read-write (0 ok). */
static int exec_sql(const char *dir, const char *sql) {
    if (pg_uri) {
        PGconn *c = pg_connect(dir);
        PGresult *r = PQexec(c, sql);
        int rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK
                     ? 0
                     : 1;
        PQclear(r);
        PQfinish(c);
        return rc;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/kiln.db", dir);
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* ---- listing helpers ---- */

typedef struct {
    char ids[64][160];
    char status[64][16];
    double values[64][4];
    int n;
    int n_values; /* the query's n_metrics (up to 4) */
} listing;

static int collect(const kiln_registry_run *r, void *ctx) {
    listing *l = ctx;
    if (l->n == 64) return 1;
    snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s", r->name ? r->name : r->id);
    snprintf(l->status[l->n], sizeof l->status[l->n], "%s", r->status ? r->status : "");
    for (int i = 0; i < 4; i++) l->values[l->n][i] = i < l->n_values ? r->values[i] : NAN;
    l->n++;
    return 0;
}

/* The names of the runs a query selects, comma-joined, into out. */
static kiln_status names_of(kiln_registry *reg, kiln_registry_query q, char *out, size_t cap) {
    listing l = {.n = 0};
    kiln_status s = kiln_registry_list_runs(reg, &q, collect, &l);
    out[0] = 0;
    for (int i = 0; i < l.n; i++) {
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", i ? "," : "", l.ids[i]);
    }
    return s;
}

static kiln_status filtered(kiln_registry *reg, const char *filter, const char *sort, char *out,
                            size_t cap) {
    kiln_registry_filter *f = NULL;
    int col;
    kiln_status s = filter ? kiln_registry_filter_parse(filter, &f, &col) : KILN_OK;
    CHECK_MSG(s == KILN_OK, "%s: %s", filter, kiln_last_error());
    if (s) return s;
    kiln_registry_query q = {.filter = f, .sort = sort};
    s = names_of(reg, q, out, cap);
    kiln_registry_filter_free(f);
    return s;
}

/* A run folder written by hand, as a kiln without the registry left it. */
static void fake_run(const char *runs, const char *exp, const char *id, const char *status,
                     const char *lr, int points) {
    char dir[1200], path[1300], text[2048];
    snprintf(dir, sizeof dir, "%s/%s/%s", runs, exp, id);
    CHECK(kiln_mkdirs(dir) == KILN_OK);
    snprintf(path, sizeof path, "%s/run.json", dir);
    snprintf(text, sizeof text,
             "{\"id\":\"%s\",\"experiment\":\"%s\",\"name\":\"%s\",\"status\":\"%s\","
             "\"start_time\":\"2024-01-0%cT00:00:00Z\",\"end_time\":%s,\"host\":\"h\",\"pid\":1,"
             "\"config_hash\":\"hash-%s\",\"steps\":%d}",
             id, exp, id, status, id[strlen(id) - 1],
             strcmp(status, "running") ? "\"2024-01-09T00:00:00Z\"" : "null", lr, points);
    put(path, text);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    snprintf(text, sizeof text,
             "experiment: %s\noptimizer: {adam: {learning_rate: %s}}\nmodel:\n  input: [1, 28, "
             "28]\n  layers:\n    - flatten\n    - dense: {units: 10}\nname: \"quoted\"\n",
             exp, lr);
    put(path, text);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    put(path, "");
    for (int s = 1; s <= points; s++) {
        snprintf(text, sizeof text,
                 "{\"step\":%d,\"epoch\":1,\"wall_time\":1700000000.5,\"split\":\"train\","
                 "\"name\":\"loss\",\"value\":%g}\n"
                 "{\"step\":%d,\"epoch\":1,\"wall_time\":1700000000.5,\"split\":\"validation\","
                 "\"name\":\"accuracy\",\"value\":%g}\n",
                 s, 1.0 / s, s, atof(lr) * 10 + s * 0.001);
        append(path, text);
    }
}

/* ---- the schema ---- */

static void test_schema_pg(void) {
    kiln_registry *reg = NULL;
    CHECK(!exists(at("schema/kiln.db")));
    CHECK(q1(at("schema"), "SELECT value FROM kiln_meta WHERE key = 'schema'") ==
          KILN_REGISTRY_SCHEMA);
    CHECK(q1(at("schema"), "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
          == 11); /* the 10 of SQLite and kiln_meta */
    CHECK(q1(at("schema"), "SELECT count(*) FROM pg_indexes WHERE indexname = 'latest_by_name'"
                           " AND schemaname = current_schema()") == 1);
    CHECK_OK(kiln_registry_open(at("schema/"), &reg)); /* again: nothing to migrate */
    CHECK(reg && !strcmp(kiln_registry_runs_dir(reg), at("schema")));
    CHECK(reg && !strncmp(kiln_registry_path(reg), "postgres", 8));
    kiln_registry_close(reg);
    /* A newer kiln's registry is refused, not downgraded. */
    CHECK(exec_sql(at("schema"), "UPDATE kiln_meta SET value = '99' WHERE key = 'schema'") == 0);
    CHECK(kiln_registry_open(at("schema"), &reg) == KILN_ERR_FORMAT && !reg);
    CHECK_ERR_HAS("newer kiln");
    /* Another program's tables. */
    CHECK(kiln_mkdirs(at("foreign")) == KILN_OK);
    CHECK(exec_sql(at("foreign"), "CREATE TABLE t(x int); INSERT INTO t VALUES (1)") == 0);
    CHECK(kiln_registry_open(at("foreign"), &reg) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("not a kiln registry");
    CHECK(q1(at("foreign"), "SELECT count(*) FROM t") == 1); /* untouched */
    /* One schema, one runs folder: another folder naming the same schema is refused. */
    CHECK(kiln_mkdirs(at("second")) == KILN_OK);
    char schema[64], uri[1300];
    schema_of(at("schema"), schema);
    snprintf(uri, sizeof uri, "UPDATE kiln_meta SET value = '%d' WHERE key = 'schema'",
             KILN_REGISTRY_SCHEMA);
    CHECK(exec_sql(at("schema"), uri) == 0);
    snprintf(uri, sizeof uri, "%s%cschema=%s", pg_uri, strchr(pg_uri, '?') ? '&' : '?', schema);
    setenv("KILN_REGISTRY", uri, 1);
    CHECK(kiln_registry_open(at("second"), &reg) == KILN_ERR_INVALID && !reg);
    CHECK_ERR_HAS("indexes the runs folder");
    /* Bad URIs name the forms; a server that is not there is an I/O error naming it. */
    setenv("KILN_REGISTRY", "mysql://x", 1);
    CHECK(kiln_registry_open(at("second"), &reg) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("postgresql://");
    /* A tracking server mirrors training runs; reading commands keep the folder's kiln.db. */
    setenv("KILN_REGISTRY", "http://127.0.0.1:5000", 1);
    CHECK(kiln_registry_open(at("second"), &reg) == KILN_OK && reg &&
          strstr(kiln_registry_path(reg), "kiln.db"));
    kiln_registry_close(reg);
    reg = NULL;
    setenv("KILN_REGISTRY", "postgresql://postgres:hunter2@127.0.0.1:1/none", 1);
    CHECK(kiln_registry_open(at("second"), &reg) == KILN_ERR_IO && !reg);
    CHECK_ERR_HAS("cannot connect");
    CHECK(!strstr(kiln_last_error(), "hunter2"));
    registry_env();
}

static void test_schema(void) {
    kiln_registry *reg = NULL;
    CHECK(kiln_registry_open(at("nowhere"), &reg) == KILN_ERR_NOTFOUND && !reg);
    CHECK(kiln_mkdirs(at("schema")) == KILN_OK);
    CHECK_OK(kiln_registry_open(at("schema"), &reg));
    if (pg_uri) {
        kiln_registry_close(reg);
        test_schema_pg();
        return;
    }
    CHECK(exists(at("schema/kiln.db")));
    CHECK(q1(at("schema"), "PRAGMA user_version") == KILN_REGISTRY_SCHEMA);
    CHECK(q1(at("schema"), "PRAGMA application_id") == 0x6b696c6e);
    CHECK(q1(at("schema"), "SELECT count(*) FROM sqlite_master WHERE type = 'table'") == 10);
    CHECK(q1(at("schema"), "SELECT count(*) FROM sqlite_master WHERE name = 'latest_by_name'") ==
          1);
    CHECK(reg && !strcmp(kiln_registry_path(reg), at("schema/kiln.db")));
    kiln_registry_close(reg);
    reg = NULL;
    {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        CHECK(sqlite3_open(at("schema/kiln.db"), &db) == SQLITE_OK);
        CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(st) == SQLITE_ROW &&
              !strcmp((const char *)sqlite3_column_text(st, 0), "wal"));
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    CHECK_OK(kiln_registry_open(at("schema/"), &reg)); /* again: nothing to migrate */
    CHECK(reg && !strcmp(kiln_registry_runs_dir(reg), at("schema")));
    kiln_registry_close(reg);
    kiln_registry_close(NULL);

    /* A newer kiln's registry is refused, not downgraded. */
    CHECK(exec_sql(at("schema"), "PRAGMA user_version = 99") == SQLITE_OK);
    CHECK(kiln_registry_open(at("schema"), &reg) == KILN_ERR_FORMAT && !reg);
    CHECK_ERR_HAS("newer kiln");
    /* Another program's database. */
    CHECK(kiln_mkdirs(at("foreign")) == KILN_OK);
    CHECK(exec_sql(at("foreign"), "CREATE TABLE t(x); INSERT INTO t VALUES (1)") == SQLITE_OK);
    CHECK(kiln_registry_open(at("foreign"), &reg) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("not a kiln registry");
    CHECK(q1(at("foreign"), "SELECT count(*) FROM t") == 1); /* untouched */
    /* Garbage of every kind: an error naming the file, never a crash. */
    const char *garbage[] = {"hello, this is not a database\n",
                             "SQLite format 3", /* a truncated header */
                             "SQLite format 3\0\x10\0\x01\x01\0\x40\x20\x20garbage garbage"};
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++) {
        CHECK(kiln_mkdirs(at("garbage%zu", i)) == KILN_OK);
        FILE *f = fopen(at("garbage%zu/kiln.db", i), "wb");
        CHECK(f != NULL);
        if (!f) continue;
        fwrite(garbage[i], 1, i == 2 ? 40 : strlen(garbage[i]), f);
        for (int k = 0; k < 4096; k++) fputc((k * 7919) & 0xff, f);
        fclose(f);
        kiln_status s = kiln_registry_open(at("garbage%zu", i), &reg);
        CHECK_MSG(s == KILN_ERR_FORMAT && !reg, "case %zu: %s %s", i, kiln_status_name(s),
                  kiln_last_error());
        CHECK_ERR_HAS("kiln.db");
    }
    /* An empty file is a new database. */
    CHECK(kiln_mkdirs(at("empty")) == KILN_OK);
    put(at("empty/kiln.db"), "");
    CHECK_OK(kiln_registry_open(at("empty"), &reg));
    kiln_registry_close(reg);
}

/* ---- a run's writer ---- */

static void write_config(kiln_rundir *run, const char *lr) {
    char path[1200], text[512];
    snprintf(path, sizeof path, "%s/config.yaml", kiln_run_get_info(run).path);
    snprintf(text, sizeof text,
             "experiment: exp\nseed: 1\noptimizer: {adam: {learning_rate: %s}}\nmetrics: "
             "[accuracy]\ntrain: {epochs: 2, early_stopping: null}\n",
             lr);
    put(path, text);
}

static void test_writer(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("w"), "exp", "first", &run));
    kiln_registry_follow_run(run, 1);
    if (!run) return;
    CHECK(pg_uri ? !exists(at("w/kiln.db")) : exists(at("w/kiln.db")));
    CHECK(q1(at("w"), "SELECT count(*) FROM runs WHERE status = 'running' AND name = 'first'") ==
          1);
    write_config(run, "0.001");
    CHECK_OK(kiln_run_set_config_hash(run, "h1"));
    CHECK_OK(kiln_run_save(run));
    CHECK(q1(at("w"), "SELECT count(*) FROM params WHERE key = 'optimizer.adam.learning_rate'"
                      " AND num = 0.001 AND value = '0.001'") == 1);
    CHECK(q1(at("w"), "SELECT count(*) FROM params WHERE key = 'metrics' AND value = '[accuracy]'"
                      " AND num IS NULL") == 1);
    CHECK(q1(at("w"), "SELECT count(*) FROM params WHERE key = 'train.early_stopping'"
                      " AND value = 'null'") == 1);
    /* 600 points: batches of 256 go in as they fill, the rest at close */
    for (int s = 1; s <= 200; s++) {
        CHECK_OK(kiln_run_log_metric(run, s, 0, KILN_SPLIT_TRAIN, "loss", 1.0 / s));
        CHECK_OK(kiln_run_log_metric(run, s, 0, KILN_SPLIT_VALIDATION, "accuracy", s / 200.0));
        CHECK_OK(kiln_run_log_metric(run, s, 0, KILN_SPLIT_TEST, "loss", s == 7 ? NAN : 2.0));
    }
    CHECK(q1(at("w"), "SELECT count(*) FROM metrics") >= 512);
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL));
    CHECK_OK(kiln_run_save(run));
    CHECK(q1(at("w"), "SELECT count(*) FROM runs WHERE status = 'finished' AND end_time IS NOT"
                      " NULL") == 1);
    kiln_run_close(run);
    CHECK(q1(at("w"), "SELECT count(*) FROM metrics") == 600);
    CHECK(q1(at("w"), "SELECT count(*) FROM metrics WHERE name = 'val_accuracy'") == 200);
    CHECK(q1(at("w"), "SELECT count(*) FROM metrics WHERE name = 'test_loss' AND value IS NULL") ==
          1);
    CHECK(q1(at("w"), "SELECT step FROM latest_metrics WHERE name = 'val_accuracy'") == 200);
    /* the registry knows how far into metrics.jsonl it is: nothing to read again */
    char path[1200];
    kiln_registry *reg = NULL;
    CHECK_OK(kiln_registry_open(at("w"), &reg));
    listing l = {.n = 0, .n_values = 4};
    const char *cols[] = {"val_accuracy", "loss", "test_loss", "nope"};
    kiln_registry_query q = {.metrics = cols, .n_metrics = 4};
    CHECK_OK(kiln_registry_list_runs(reg, &q, collect, &l));
    CHECK(l.n == 1 && !strcmp(l.status[0], "finished"));
    CHECK(l.values[0][0] == 1.0 && l.values[0][1] == 1.0 / 200 && l.values[0][2] == 2.0 &&
          isnan(l.values[0][3]));
    kiln_registry_sync_stats stats;
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK_MSG(stats.imported == 0 && stats.updated == 0 && stats.removed == 0,
              "imported %d updated %d removed %d", stats.imported, stats.updated, stats.removed);
    kiln_registry_close(reg);

    /* Resuming: the same row, this process as its writer, points appended. */
    CHECK(q1(at("w"), "SELECT count(*) FROM runs") == 1);
    reg = NULL;
    CHECK_OK(kiln_registry_open(at("w"), &reg));
    char rid[1024];
    CHECK_OK(kiln_registry_find_run(reg, "first", rid, sizeof rid));
    kiln_registry_close(reg);
    snprintf(path, sizeof path, "%s/%s", at("w"), rid);
    run = NULL;
    CHECK_OK(kiln_run_open(path, KILN_RUN_WRITE, &run));
    kiln_registry_follow_run(run, 0);
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_RUNNING, NULL));
    CHECK_OK(kiln_run_save(run));
    CHECK(q1(at("w"), "SELECT count(*) FROM runs WHERE status = 'running'") == 1);
    CHECK_OK(kiln_run_log_metric(run, 201, 0, KILN_SPLIT_TRAIN, "loss", 0.5));
    CHECK_OK(
        kiln_run_log_metric(run, 200, 0, KILN_SPLIT_TRAIN, "loss", 0.25)); /* a re-logged step */
    kiln_run_close(run);
    CHECK(q1(at("w"), "SELECT count(*) FROM metrics WHERE name = 'loss'") == 201);
    CHECK(q1(at("w"), "SELECT value * 100 FROM metrics WHERE name = 'loss' AND step = 200") == 25);
    CHECK(q1(at("w"), "SELECT step FROM latest_metrics WHERE name = 'loss'") == 201);
    /* closed while "running": the next open finds its process gone */
    CHECK_OK(kiln_registry_open(at("w"), &reg));
    kiln_registry_close(reg);
    CHECK(q1(at("w"), "SELECT count(*) FROM runs WHERE status = 'failed' AND message LIKE"
                      " '%crashed%'") == 1);
}

/* KILN_REGISTRY=off: no kiln.db; a later sync indexes the run. */
static void test_switched_off(void) {
    setenv("KILN_REGISTRY", "off", 1);
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("off"), "exp", NULL, &run));
    kiln_registry_follow_run(run, 1);
    registry_env();
    if (!run) return;
    CHECK_OK(kiln_run_log_metric(run, 1, 0, KILN_SPLIT_TRAIN, "loss", 1));
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL));
    CHECK_OK(kiln_run_save(run));
    kiln_run_close(run);
    CHECK(!exists(at("off/kiln.db")));
    kiln_registry *reg = NULL;
    kiln_registry_sync_stats stats;
    CHECK_OK(kiln_registry_open(at("off"), &reg));
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK(stats.imported == 1);
    kiln_registry_close(reg);
    CHECK(q1(at("off"), "SELECT count(*) FROM metrics") == 1);
}

/* registry: off in the user config file (KILN_REGISTRY unset) switches recording off too. */
static void test_switched_off_by_user_config(void) {
    CHECK(kiln_mkdirs(at("offcfg")) == KILN_OK);
    FILE *f = fopen(at("offcfg-config.yaml"), "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("registry: off\n", f);
    fclose(f);
    unsetenv("KILN_REGISTRY");
    setenv("KILN_CONFIG", at("offcfg-config.yaml"), 1);
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("offcfg"), "exp", NULL, &run));
    kiln_registry_follow_run(run, 1);
    if (run) {
        CHECK_OK(kiln_run_log_metric(run, 1, 0, KILN_SPLIT_TRAIN, "loss", 1));
        CHECK_OK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL));
        CHECK_OK(kiln_run_save(run));
        kiln_run_close(run);
    }
    unsetenv("KILN_CONFIG");
    registry_env();
    CHECK(!exists(at("offcfg/kiln.db")));
}

/* ---- transactions and crashes ---- */

/* A process killed in the middle of a write transaction leaves the registry as it was. */
static void test_killed_mid_transaction(void) {
    CHECK(kiln_mkdirs(at("tx")) == KILN_OK);
    kiln_registry *reg = NULL;
    CHECK_OK(kiln_registry_open(at("tx"), &reg));
    kiln_registry_close(reg);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t kid = fork_child();
    if (kid == 0 && pg_uri) { /* a writer's transaction, as kiln's writers take it */
        PGconn *c = pg_connect(at("tx"));
        PGresult *r = PQexec(c, "BEGIN; SELECT pg_advisory_xact_lock(1802071150);"
                                " INSERT INTO experiments(name, created) VALUES ('x', 'y');"
                                " INSERT INTO runs(id, eid, name, status, start_time) VALUES"
                                " ('x/y', (SELECT eid FROM experiments WHERE name = 'x'), 'y',"
                                " 'finished', 'z')");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) _exit(1);
        if (write(p[1], "k", 1) != 1) _exit(1);
        for (;;) pause();
    }
    if (kid == 0) {
        sqlite3 *db = NULL;
        char path[1100];
        snprintf(path, sizeof path, "%s/kiln.db", at("tx"));
        if (sqlite3_open(path, &db) != SQLITE_OK ||
            sqlite3_exec(
                db,
                "BEGIN IMMEDIATE; INSERT INTO experiments(name, created) VALUES ('x', 'y');"
                " INSERT INTO runs(id, eid, name, status, start_time) VALUES ('x/y',"
                " last_insert_rowid(), 'y', 'finished', 'z')",
                NULL, NULL, NULL) != SQLITE_OK)
            _exit(1);
        if (write(p[1], "k", 1) != 1) _exit(1);
        for (;;) pause();
    }
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    close(p[0]), close(p[1]);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    CHECK(q1(at("tx"), "SELECT count(*) FROM runs") == 0);
    CHECK_OK(kiln_registry_open(at("tx"), &reg)); /* and it opens and writes again */
    kiln_registry_close(reg);
    CHECK(q1(at("tx"), "SELECT count(*) FROM experiments") == 0);
    CHECK(exec_sql(at("tx"), "INSERT INTO experiments(name, created) VALUES ('e', 'now')") == 0);
}

/* A writer killed with SIGKILL: its run is marked failed, a live one is left alone. */
static void test_crash_marking(void) {
    CHECK(kiln_mkdirs(at("crash")) == KILN_OK);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t kid = fork_child();
    if (kid == 0) {
        kiln_rundir *run = NULL;
        if (kiln_run_create(at("crash"), "exp", "doomed", &run) != KILN_OK) _exit(1);
        kiln_registry_follow_run(run, 1);
        kiln_run_log_metric(run, 1, 0, KILN_SPLIT_TRAIN, "loss", 3.0);
        kiln_run_save(run); /* the point goes in with the save */
        if (write(p[1], "k", 1) != 1) _exit(1);
        for (;;) pause();
    }
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    close(p[0]), close(p[1]);
    kiln_registry *reg = NULL;
    listing l = {.n = 0};
    CHECK_OK(kiln_registry_open(at("crash"), &reg)); /* alive: stays running */
    CHECK_OK(kiln_registry_list_runs(reg, NULL, collect, &l));
    CHECK(l.n == 1 && !strcmp(l.status[0], "running"));
    kiln_registry_close(reg);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    CHECK_OK(kiln_registry_open(at("crash"), &reg));
    l.n = 0;
    CHECK_OK(kiln_registry_list_runs(reg, NULL, collect, &l));
    CHECK(l.n == 1 && !strcmp(l.status[0], "failed"));
    kiln_registry_close(reg);
    CHECK(q1(at("crash"), "SELECT count(*) FROM runs WHERE end_time IS NOT NULL AND message LIKE"
                          " '%pid%crashed or was killed%'") == 1);
    CHECK(q1(at("crash"), "SELECT count(*) FROM metrics") == 1);
}

/* Two trainings at once in one runs folder, started at the same instant. */
static void test_concurrent_writers(void) {
    enum { KIDS = 2, POINTS = 2000 };
    CHECK(kiln_mkdirs(at("conc")) == KILN_OK);
    int gate[2];
    CHECK(pipe(gate) == 0);
    pid_t kids[KIDS];
    for (int k = 0; k < KIDS; k++) {
        kids[k] = fork_child();
        if (kids[k] == 0) {
            close(gate[1]);
            char c;
            while (read(gate[0], &c, 1) > 0) {
            }
            kiln_rundir *run = NULL;
            char name[16];
            snprintf(name, sizeof name, "kid%d", k);
            int bad = kiln_run_create(at("conc"), "race", name, &run) != KILN_OK;
            if (!bad) kiln_registry_follow_run(run, 1);
            for (int s = 1; !bad && s <= POINTS; s++) {
                bad |= kiln_run_log_metric(run, s, 0, KILN_SPLIT_TRAIN, "loss", k + 1.0 / s) != 0;
                if (s % 500 == 0) bad |= kiln_run_save(run) != KILN_OK;
            }
            bad |= !run || kiln_run_set_status(run, KILN_RUN_FINISHED, NULL) != KILN_OK ||
                   kiln_run_save(run) != KILN_OK;
            if (run) {
                char log[1200];
                snprintf(log, sizeof log, "%s/log.txt", kiln_run_get_info(run).path);
                bad |= count_in_file(log, "warning") != 0; /* the registry never gave up */
            }
            kiln_run_close(run);
            _exit(bad);
        }
        CHECK(kids[k] > 0);
    }
    close(gate[0]);
    close(gate[1]);
    for (int k = 0; k < KIDS; k++) {
        int st = -1;
        waitpid(kids[k], &st, 0);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %d", k, st);
    }
    CHECK(q1(at("conc"), "SELECT count(*) FROM runs WHERE status = 'finished'") == KIDS);
    CHECK(q1(at("conc"), "SELECT count(*) FROM metrics") == KIDS * POINTS);
    CHECK(q1(at("conc"), "SELECT count(DISTINCT rid) FROM metrics") == KIDS);
    CHECK(q1(at("conc"), "SELECT count(*) FROM latest_metrics WHERE step = 2000") == KIDS);
    CHECK(q1(at("conc"), "SELECT count(*) FROM experiments") == 1);
    kiln_registry *reg = NULL;
    kiln_registry_sync_stats stats;
    CHECK_OK(kiln_registry_open(at("conc"), &reg));
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK(stats.imported == 0 && stats.updated == 0);
    kiln_registry_close(reg);
}

/* ---- failures never stop a run ---- */

/* PostgreSQL: a server that cannot be reached, and one that drops the writer's connection in the
 * middle of a run, never stop the run, and lose nothing once it is back. */
static void test_failures_do_not_stop_runs_pg(void) {
    char uri[1300], log[1200];
    kiln_rundir *run = NULL;
    snprintf(uri, sizeof uri, "postgresql://postgres@127.0.0.1:1/kiln?schema=auto");
    setenv("KILN_REGISTRY", uri, 1);
    CHECK(kiln_mkdirs(at("away")) == KILN_OK);
    CHECK_OK(kiln_run_create(at("away"), "exp", NULL, &run));
    kiln_registry_follow_run(run, 1);
    registry_env();
    if (!run) return;
    for (int s = 1; s <= 300; s++)
        CHECK_OK(kiln_run_log_metric(run, s, 0, KILN_SPLIT_TRAIN, "loss", 1.0));
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL));
    CHECK_OK(kiln_run_save(run));
    snprintf(log, sizeof log, "%s/log.txt", kiln_run_get_info(run).path);
    kiln_run_close(run);
    CHECK(count_in_file(log, "warning: run registry") == 1);
    CHECK(count_in_file(log, "cannot connect") == 1);
    CHECK(count_in_file(log, "still unreachable") == 1);
    kiln_registry *reg = NULL;
    kiln_registry_sync_stats stats;
    CHECK_OK(kiln_registry_open(at("away"), &reg));
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK(stats.imported == 1);
    kiln_registry_close(reg);
    CHECK(q1(at("away"), "SELECT count(*) FROM metrics") == 300);

    /* the server drops the writer's connection (as a restart does) in the middle of the run */
    CHECK(kiln_mkdirs(at("dropped")) == KILN_OK);
    run = NULL;
    CHECK_OK(kiln_run_create(at("dropped"), "exp", NULL, &run));
    kiln_registry_follow_run(run, 1);
    if (!run) return;
    for (int s = 1; s <= 10; s++)
        CHECK_OK(kiln_run_log_metric(run, s, 0, KILN_SPLIT_TRAIN, "loss", 1.0 / s));
    CHECK_OK(kiln_run_save(run));
    CHECK(q1(at("dropped"), "SELECT count(*) FROM metrics") == 10);
    char kill_sql[300]; /* this process's connections only: other tests share the server */
    snprintf(kill_sql, sizeof kill_sql,
             "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
             " WHERE application_name = 'kiln %ld') t",
             (long)getpid());
    CHECK(q1(at("dropped"), kill_sql) == 1);
    for (int s = 11; s <= 600; s++)
        CHECK_OK(kiln_run_log_metric(run, s, 0, KILN_SPLIT_TRAIN, "loss", 1.0 / s));
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL));
    CHECK_OK(kiln_run_save(run));
    snprintf(log, sizeof log, "%s/log.txt", kiln_run_get_info(run).path);
    kiln_run_close(run); /* tries once more: back, and catches up from the folder */
    CHECK(count_in_file(log, "warning: run registry") == 1);
    CHECK(count_in_file(log, "is back; the run is caught up") == 1);
    CHECK(q1(at("dropped"), "SELECT count(*) FROM metrics") == 600);
    CHECK(q1(at("dropped"), "SELECT step FROM latest_metrics WHERE name = 'loss'") == 600);
    CHECK(q1(at("dropped"), "SELECT count(*) FROM runs WHERE status = 'finished'") == 1);
}

static void test_failures_do_not_stop_runs(void) {
    if (pg_uri) {
        test_failures_do_not_stop_runs_pg();
        return;
    }
    /* a garbage kiln.db */
    CHECK(kiln_mkdirs(at("broken")) == KILN_OK);
    put(at("broken/kiln.db"), "this is not a database, and never was one; ............");
    kiln_rundir *run = NULL;
    fflush(stderr);
    CHECK_OK(kiln_run_create(at("broken"), "exp", NULL, &run));
    kiln_registry_follow_run(run, 1);
    if (!run) return;
    for (int s = 1; s <= 300; s++)
        CHECK_OK(kiln_run_log_metric(run, s, 0, KILN_SPLIT_TRAIN, "loss", 1.0));
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL));
    CHECK_OK(kiln_run_save(run));
    char log[1200];
    snprintf(log, sizeof log, "%s/log.txt", kiln_run_get_info(run).path);
    kiln_run_close(run);
    CHECK(count_in_file(log, "warning: run registry") == 1);
    CHECK(count_in_file(log, "not a kiln registry") == 1);

    /* a registry another process keeps locked longer than the writer waits */
    CHECK(kiln_mkdirs(at("locked")) == KILN_OK);
    kiln_registry *reg = NULL;
    CHECK_OK(kiln_registry_open(at("locked"), &reg));
    kiln_registry_close(reg);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t kid = fork_child();
    if (kid == 0) {
        sqlite3 *db = NULL;
        char path[1100];
        snprintf(path, sizeof path, "%s/kiln.db", at("locked"));
        if (sqlite3_open(path, &db) != SQLITE_OK ||
            sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            _exit(1);
        if (write(p[1], "k", 1) != 1) _exit(1);
        for (;;) pause();
    }
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    close(p[0]), close(p[1]);
    run = NULL;
    CHECK_OK(kiln_run_create(at("locked"), "exp", NULL, &run)); /* waits ~2 s, then goes on */
    kiln_registry_follow_run(run, 1);
    for (int s = 1; run && s <= 10; s++)
        CHECK_OK(kiln_run_log_metric(run, s, 0, KILN_SPLIT_TRAIN, "loss", 1.0 / s));
    if (run) {
        snprintf(log, sizeof log, "%s/log.txt", kiln_run_get_info(run).path);
        CHECK_OK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL));
        CHECK_OK(kiln_run_save(run));
        kiln_run_close(run);
        CHECK(count_in_file(log, "warning: run registry") == 1);
        CHECK(count_in_file(log, "stayed locked") == 1);
    }
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    /* the folder had everything: a sync brings the registry up to date */
    kiln_registry_sync_stats stats;
    CHECK_OK(kiln_registry_open(at("locked"), &reg));
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK(stats.imported == 1);
    kiln_registry_close(reg);
    CHECK(q1(at("locked"), "SELECT count(*) FROM runs WHERE status = 'finished'") == 1);
    CHECK(q1(at("locked"), "SELECT count(*) FROM metrics") == 10);
}

/* ---- importing run folders ---- */

static void test_import(void) {
    char runs[1024];
    snprintf(runs, sizeof runs, "%s", at("old"));
    fake_run(runs, "mnist", "a-20240101-000001", "finished", "0.001", 5);
    fake_run(runs, "mnist", "b-20240101-000002", "finished", "0.01", 3);
    fake_run(runs, "cifar", "c-20240101-000003", "running", "0.1", 2); /* its process is gone */
    fake_run(runs, "cifar", "f-20240101-000006", "running", "0.1", 2); /* held: it runs */
    int held = open(at("old/cifar/f-20240101-000006"), O_RDONLY | O_DIRECTORY);
    CHECK(held >= 0 && flock(held, LOCK_EX | LOCK_NB) == 0);
    CHECK(kiln_mkdirs(at("old/mnist/d-20240101-000004")) == KILN_OK); /* no run.json: not a run */
    CHECK(kiln_mkdirs(at("old/mnist/e-20240101-000005")) == KILN_OK);
    put(at("old/mnist/e-20240101-000005/run.json"), "{\"id\": broken");
    append(at("old/mnist/a-20240101-000001/metrics.jsonl"), "not json\n");
    append(at("old/cifar/f-20240101-000006/metrics.jsonl"),
           "{\"step\":9,\"epoch\":1,\"wall_time\":1,\"split\":\"train\",\"name\":\"lo");
    put(at("old/stray-file"), "x");

    kiln_registry *reg = NULL;
    kiln_registry_sync_stats stats;
    CHECK_OK(kiln_registry_open(runs, &reg));
    if (!reg) return;
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK_MSG(stats.imported == 4 && stats.skipped == 1 && stats.updated == 0,
              "imported %d skipped %d updated %d", stats.imported, stats.skipped, stats.updated);
    CHECK(strstr(stats.warning, "e-20240101-000005") != NULL);
    char names[512];
    CHECK_OK(names_of(reg, (kiln_registry_query){0}, names, sizeof names));
    CHECK_MSG(!strcmp(names, "f-20240101-000006,c-20240101-000003,b-20240101-000002,"
                             "a-20240101-000001"),
              "%s", names);
    CHECK(q1(runs, "SELECT count(*) FROM runs WHERE name LIKE 'c-%' AND status = 'failed'") == 1);
    CHECK(q1(runs, "SELECT count(*) FROM runs WHERE name LIKE 'f-%' AND status = 'running'") == 1);
    CHECK(q1(runs, "SELECT count(*) FROM metrics m JOIN runs r USING (rid) WHERE r.name LIKE"
                   " 'a-%'") == 10); /* the bad line is no point */
    CHECK(q1(runs, "SELECT count(*) FROM metrics m JOIN runs r USING (rid) WHERE r.name LIKE"
                   " 'f-%'") == 4); /* nor the line still being written */
    CHECK(q1(runs, "SELECT count(*) FROM params WHERE key = 'model.input' AND value = '[1, 28,"
                   " 28]'") == 4);
    CHECK(q1(runs, "SELECT count(*) FROM params WHERE key = 'model.layers[0]' AND value ="
                   " 'flatten'") == 4);
    CHECK(q1(runs, "SELECT count(*) FROM params WHERE key = 'model.layers[1].dense.units' AND"
                   " num = 10") == 4);
    CHECK(q1(runs, "SELECT count(*) FROM params WHERE key = 'name' AND value = 'quoted' AND num"
                   " IS NULL") == 4);
    CHECK_OK(kiln_registry_sync(reg, &stats)); /* nothing changed */
    CHECK(stats.imported == 0 && stats.updated == 0 && stats.skipped == 1);

    /* the running one goes on: its torn line completes, a new point comes */
    append(at("old/cifar/f-20240101-000006/metrics.jsonl"),
           "ss\",\"value\":0.125}\n{\"step\":10,\"epoch\":1,\"wall_time\":1,\"split\":\"train\","
           "\"name\":\"loss\",\"value\":0.0625}\n");
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK(stats.updated == 1);
    CHECK(q1(runs, "SELECT count(*) FROM metrics m JOIN runs r USING (rid) WHERE r.name LIKE"
                   " 'f-%'") == 6);
    CHECK(q1(runs, "SELECT step FROM latest_metrics l JOIN runs r USING (rid) WHERE r.name LIKE"
                   " 'f-%' AND l.name = 'loss'") == 10);
    /* run.json rewritten (a resume elsewhere): the row follows, params too */
    fake_run(runs, "mnist", "b-20240101-000002", "stopped", "0.02", 3);
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK(stats.updated == 1);
    CHECK(q1(runs, "SELECT count(*) FROM runs WHERE name LIKE 'b-%' AND status = 'stopped'") == 1);
    CHECK(q1(runs, "SELECT count(*) FROM params p JOIN runs r USING (rid) WHERE r.name LIKE 'b-%'"
                   " AND key = 'optimizer.adam.learning_rate' AND num = 0.02") == 1);
    /* a shorter metrics.jsonl (the run started over): read again from the start */
    fake_run(runs, "mnist", "b-20240101-000002", "finished", "0.02", 1);
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK(q1(runs, "SELECT count(*) FROM metrics m JOIN runs r USING (rid) WHERE r.name LIKE"
                   " 'b-%'") == 2);
    /* a folder removed by hand: its rows go */
    kiln_run_rmtree(AT_FDCWD, at("old/cifar/c-20240101-000003"));
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK(stats.removed == 1);
    CHECK(q1(runs, "SELECT count(*) FROM runs") == 3);
    CHECK(q1(runs, "SELECT count(*) FROM metrics m LEFT JOIN runs r USING (rid) WHERE r.id IS"
                   " NULL") == 0);
    kiln_registry_close(reg);
    /* the running one dies with a point it had not flushed: marked, and the point read */
    append(at("old/cifar/f-20240101-000006/metrics.jsonl"),
           "{\"step\":11,\"epoch\":1,\"wall_time\":1,\"split\":\"train\",\"name\":\"loss\","
           "\"value\":0.03125}\n");
    close(held);
    CHECK_OK(kiln_registry_open(runs, &reg));
    kiln_registry_close(reg);
    CHECK(q1(runs, "SELECT count(*) FROM runs WHERE name LIKE 'f-%' AND status = 'failed'") == 1);
    CHECK(q1(runs, "SELECT step FROM latest_metrics l JOIN runs r USING (rid) WHERE r.name LIKE"
                   " 'f-%' AND l.name = 'loss'") == 11);
}

/* ---- finding and removing ---- */

static void test_find_and_remove(void) {
    char runs[1024];
    snprintf(runs, sizeof runs, "%s", at("find"));
    fake_run(runs, "e1", "alpha-20240101-000001", "finished", "0.1", 1);
    fake_run(runs, "e1", "alpha-20240101-000002", "finished", "0.1", 1);
    fake_run(runs, "e2", "beta-20240101-000003", "finished", "0.1", 1);
    kiln_registry *reg = NULL;
    CHECK_OK(kiln_registry_open(runs, &reg));
    if (!reg) return;
    CHECK_OK(kiln_registry_sync(reg, NULL));
    char id[256];
    CHECK_OK(kiln_registry_find_run(reg, "e2/beta-20240101-000003", id, sizeof id));
    CHECK(!strcmp(id, "e2/beta-20240101-000003"));
    CHECK_OK(kiln_registry_find_run(reg, "beta", id, sizeof id));
    CHECK(!strcmp(id, "e2/beta-20240101-000003"));
    CHECK_OK(kiln_registry_find_run(reg, "alpha-20240101-000002", id, sizeof id));
    CHECK(!strcmp(id, "e1/alpha-20240101-000002"));
    CHECK_OK(kiln_registry_find_run(reg, "e1/alpha-20240101-000001", id, sizeof id));
    CHECK(kiln_registry_find_run(reg, "alpha", id, sizeof id) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("alpha-20240101-000001");
    CHECK_ERR_HAS("alpha-20240101-000002");
    CHECK(kiln_registry_find_run(reg, "gamma", id, sizeof id) == KILN_ERR_NOTFOUND);
    CHECK(kiln_registry_find_run(reg, "", id, sizeof id) == KILN_ERR_INVALID);
    CHECK_OK(kiln_registry_find_run(reg, at("find/e2/beta-20240101-000003/"), id, sizeof id));
    CHECK(!strcmp(id, "e2/beta-20240101-000003"));
    fake_run(at("other"), "e", "x-20240101-000001", "finished", "0.1", 1);
    CHECK(kiln_registry_find_run(reg, at("other/e/x-20240101-000001"), id, sizeof id) ==
          KILN_ERR_INVALID);
    CHECK_ERR_HAS("--runs-dir");
    /* a folder made after the last sync is indexed when named */
    fake_run(runs, "e2", "late-20240101-000009", "finished", "0.1", 1);
    CHECK_OK(kiln_registry_find_run(reg, at("find/e2/late-20240101-000009"), id, sizeof id));
    CHECK(!strcmp(id, "e2/late-20240101-000009"));

    CHECK_OK(kiln_registry_remove_run(reg, "e2/beta-20240101-000003"));
    CHECK(!exists(at("find/e2/beta-20240101-000003")));
    CHECK(q1(runs, "SELECT count(*) FROM runs WHERE id LIKE 'e2/beta%'") == 0);
    CHECK(q1(runs, "SELECT count(*) FROM params p LEFT JOIN runs r USING (rid) WHERE r.id IS"
                   " NULL") == 0);
    CHECK(kiln_registry_remove_run(reg, "e2/beta-20240101-000003") == KILN_ERR_NOTFOUND);
    kiln_registry_close(reg);

    /* a run being written is not removed */
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(runs, "e3", "live", &run));
    kiln_registry_follow_run(run, 1);
    CHECK_OK(kiln_registry_open(runs, &reg));
    if (run && reg) {
        char rid[256];
        CHECK_OK(kiln_registry_find_run(reg, "live", rid, sizeof rid));
        CHECK(kiln_registry_remove_run(reg, rid) == KILN_ERR_IO); /* busy: exit 1 at the CLI */
        CHECK_ERR_HAS("being written");
        CHECK(exists(kiln_run_get_info(run).path));
        kiln_run_close(run);
        run = NULL;
        CHECK_OK(kiln_registry_remove_run(reg, rid));
    }
    kiln_run_close(run);
    kiln_registry_close(reg);
}

/* ---- the filter language ---- */

static void test_filter_parse(void) {
    struct {
        const char *in, *canonical;
    } good[] = {
        {"metrics.a > 1 or params.b = 'x' and not status = 'failed'",
         "((metrics.a > 1) or ((params.b = 'x') and (not (status = 'failed'))))"},
        {"(metrics.a>1 OR metrics.b<=2) AND NOT(experiment != \"e\")",
         "(((metrics.a > 1) or (metrics.b <= 2)) and (not (experiment != 'e')))"},
        {"metrics.val_accuracy > 0.9 and params.optimizer.adam.learning_rate < 0.01",
         "((metrics.val_accuracy > 0.9) and (params.optimizer.adam.learning_rate < 0.01))"},
        {"steps >= -1e3 and duration < .5", "((steps >= -1000) and (duration < 0.5))"},
        {"metrics.`my metric` == 2", "(metrics.`my metric` = 2)"},
        {"params.model.layers[1].dense.units <> 64", "(params.model.layers[1].dense.units != 64)"},
        {"attributes.status = 'running'", "(status = 'running')"},
        {"name = 'it\\'s'", "(name = 'it\\'s')"},
        {"not not metrics.x < 1", "(not (not (metrics.x < 1)))"},
        {"1 < metrics.x", "(1 < metrics.x)"},
        {"params.a = params.b", "(params.a = params.b)"},
        {"  metric.loss < 1  ", "(metrics.loss < 1)"},
    };
    char out[512];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        kiln_registry_filter *f = NULL;
        int col = -1;
        kiln_status s = kiln_registry_filter_parse(good[i].in, &f, &col);
        CHECK_MSG(s == KILN_OK && col == 0, "'%s': %s", good[i].in, kiln_last_error());
        if (!f) continue;
        CHECK_OK(kiln_registry_filter_format(f, out, sizeof out));
        CHECK_MSG(!strcmp(out, good[i].canonical), "'%s' -> '%s'", good[i].in, out);
        /* the canonical form parses to itself */
        kiln_registry_filter *g = NULL;
        CHECK_OK(kiln_registry_filter_parse(out, &g, NULL));
        char again[512];
        if (g) CHECK_OK(kiln_registry_filter_format(g, again, sizeof again));
        CHECK(g && !strcmp(again, out));
        kiln_registry_filter_free(g);
        CHECK(kiln_registry_filter_format(f, out, 5) == KILN_ERR_INVALID);
        kiln_registry_filter_free(f);
    }
    kiln_registry_filter *f = NULL;
    CHECK_OK(kiln_registry_filter_parse("metrics.a > 1 and (params.b = 'x' or metrics.c < 2)", &f,
                                        NULL));
    int is_param = -1;
    CHECK(f && !strcmp(kiln_registry_filter_name(f, 0, &is_param), "a") && is_param == 0);
    CHECK(f && !strcmp(kiln_registry_filter_name(f, 1, &is_param), "b") && is_param == 1);
    CHECK(f && !strcmp(kiln_registry_filter_name(f, 2, &is_param), "c") && is_param == 0);
    CHECK(f && kiln_registry_filter_name(f, 3, NULL) == NULL);
    kiln_registry_filter_free(f);

    struct {
        const char *in;
        int column;
        const char *msg;
    } bad[] = {
        {"", 1, "empty filter"},
        {"   ", 4, "empty filter"},
        {"metrics.a >", 12, "expected a value or a name after '>'"},
        {"metrics.a 1", 11, "expected a comparison (=, !=, <, <=, >, >=) after 'metrics.a'"},
        {"(metrics.a > 1", 15, "expected ')' to close the '(' at column 1"},
        {"metrics.a > 1)", 14, "unexpected ')'"},
        {"metrics.a > 'x'", 13, "metrics.a is a number"},
        {"status = 'runing'", 10, "unknown status 'runing'"},
        {"status = 5", 10, "5 is a number"},
        {"val_accuracy > 0.9", 1, "write metrics.val_accuracy"},
        {"attributes.colour = 'red'", 1, "unknown attribute 'colour'"},
        {"metrics.a > 1 metrics.b < 2", 15, "missing and / or"},
        {"metrics.a ! 1", 11, "unexpected '!'"},
        {"name = 'abc", 8, "unterminated string"},
        {"metrics. > 1", 1, "needs a metric name"},
        {"metrics.a > 1 and", 18, "expected a comparison"},
        {"metrics.a > 1e", 14, "exponent"},
        {"metrics.a > 12abc", 13, "is not a number"},
        {"metrics.a > 1 & metrics.b < 2", 15, "unexpected character '&'"},
        {"metrics.`a > 1", 9, "unterminated `quoted name`"},
        {"name = 'caf\xc3\xa9' and x", 19, "unknown name 'x'"}, /* é is one column */
        {"metrics.a > 1e999", 13, "out of range"},
        {"- 1 < 2", 1, "expected a number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f = NULL;
        int col = -1;
        kiln_status s = kiln_registry_filter_parse(bad[i].in, &f, &col);
        CHECK_MSG(s == KILN_ERR_INVALID && !f && col == bad[i].column &&
                      strstr(kiln_last_error(), bad[i].msg),
                  "'%s': column %d (want %d): %s", bad[i].in, col, bad[i].column,
                  kiln_last_error());
        char prefix[32];
        snprintf(prefix, sizeof prefix, "column %d: ", bad[i].column);
        CHECK_MSG(!strncmp(kiln_last_error(), prefix, strlen(prefix)), "%s", kiln_last_error());
    }
    /* nesting is bounded: no stack overflow on hostile input */
    char deep[4096];
    memset(deep, '(', 3000);
    strcpy(deep + 3000, "metrics.a > 1");
    int col = 0;
    CHECK(kiln_registry_filter_parse(deep, &f, &col) == KILN_ERR_INVALID && col == 65);
    CHECK_ERR_HAS("nested more than 64");
    deep[0] = 0;
    for (int i = 0; i < 500; i++) strcat(deep, "not ");
    strcat(deep, "metrics.a > 1");
    CHECK(kiln_registry_filter_parse(deep, &f, &col) == KILN_ERR_INVALID);
    CHECK(kiln_registry_filter_parse(NULL, &f, &col) == KILN_ERR_INVALID);

    /* fuzz: random texts from the language's alphabet parse or fail with a column in range */
    static const char *const pieces[] = {
        "metrics.a", "params.b", "status", "steps", " ", "(",  ")",  "and",
        "or",        "not",      ">",      "<=",    "=", "!=", "1",  "-2.5",
        "'x'",       "\"",       "`",      "1e",    "!", ".",  "\\", "é"};
    uint64_t x = 88172645463325252ull;
    for (int iter = 0; iter < 3000; iter++) {
        char text[256] = "";
        int n = (int)(x % 12) + 1;
        for (int k = 0; k < n; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            strcat(text, pieces[x % (sizeof pieces / sizeof *pieces)]);
            strcat(text, x & 64 ? " " : "");
        }
        f = NULL;
        col = -1;
        kiln_status s = kiln_registry_filter_parse(text, &f, &col);
        int chars = 0;
        for (const char *c = text; *c; c++) chars += ((unsigned char)*c & 0xC0) != 0x80;
        if (s == KILN_OK) {
            CHECK(f && col == 0 && kiln_registry_filter_format(f, out, sizeof out) == KILN_OK);
        } else {
            CHECK_MSG(s == KILN_ERR_INVALID && !f && col >= 1 && col <= chars + 1,
                      "'%s': %d, column %d", text, s, col);
        }
        kiln_registry_filter_free(f);
    }
    /* sort keys */
    int kind;
    char name[64];
    CHECK_OK(kiln_registry_sort_key("val_accuracy", &kind, name, sizeof name));
    CHECK(kind == 1 && !strcmp(name, "val_accuracy"));
    CHECK_OK(kiln_registry_sort_key("params.optimizer.adam.learning_rate desc", &kind, name,
                                    sizeof name));
    CHECK(kind == 2 && !strcmp(name, "optimizer.adam.learning_rate"));
    CHECK_OK(kiln_registry_sort_key("start_time ASC", &kind, name, sizeof name));
    CHECK(kind == 0);
    CHECK(kiln_registry_sort_key("loss sideways", &kind, name, sizeof name) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("asc or desc");
    CHECK(kiln_registry_sort_key("", &kind, name, sizeof name) == KILN_ERR_INVALID);
    CHECK(kiln_registry_sort_key("a b c", &kind, name, sizeof name) == KILN_ERR_INVALID);
}

/* Four runs in runs (two experiments; val_acc .015, .103, 1.004 and none), synced. */
static kiln_registry *four_runs(const char *runs) {
    fake_run(runs, "mnist", "a-20240101-000001", "finished", "0.001", 5);
    fake_run(runs, "mnist", "b-20240101-000002", "failed", "0.01", 3);
    fake_run(runs, "cifar", "c-20240101-000003", "finished", "0.1", 4);
    fake_run(runs, "cifar", "d-20240101-000004", "finished", "0.05", 0);
    kiln_registry *reg = NULL;
    CHECK_OK(kiln_registry_open(runs, &reg));
    if (reg) CHECK_OK(kiln_registry_sync(reg, NULL));
    return reg;
}

static void test_filter_select(void) {
    char runs[1024];
    snprintf(runs, sizeof runs, "%s", at("sel"));
    kiln_registry *reg = four_runs(runs);
    if (!reg) return;
    char got[512];
    struct {
        const char *filter, *sort, *want;
    } cases[] = {
        {NULL, NULL, "d-20240101-000004,c-20240101-000003,b-20240101-000002,a-20240101-000001"},
        {"metrics.val_accuracy > 0.1", NULL, "c-20240101-000003,b-20240101-000002"},
        {"params.optimizer.adam.learning_rate < 0.01", NULL, "a-20240101-000001"},
        {"params.optimizer.adam.learning_rate >= 0.01 and status = 'finished'", NULL,
         "d-20240101-000004,c-20240101-000003"},
        {"not metrics.val_accuracy > 0.1", NULL, "d-20240101-000004,a-20240101-000001"},
        {"metrics.val_accuracy > 0.1 or experiment = 'mnist'", NULL,
         "c-20240101-000003,b-20240101-000002,a-20240101-000001"},
        {"params.optimizer.adam.learning_rate = '0.05'", NULL, "d-20240101-000004"},
        {"params.model.input = '[1, 28, 28]' and steps = 3", NULL, "b-20240101-000002"},
        {"metrics.loss < 0.3", "loss", "a-20240101-000001,c-20240101-000003"},
        {NULL, "val_accuracy",
         "c-20240101-000003,b-20240101-000002,a-20240101-000001,d-20240101-000004"},
        {NULL, "val_accuracy asc",
         "a-20240101-000001,b-20240101-000002,c-20240101-000003,d-20240101-000004"},
        {NULL, "params.optimizer.adam.learning_rate",
         "a-20240101-000001,b-20240101-000002,d-20240101-000004,c-20240101-000003"},
        {NULL, "name", "a-20240101-000001,b-20240101-000002,c-20240101-000003,d-20240101-000004"},
        {"duration > 0 and start_time >= '2024-01-03'", "start_time asc",
         "c-20240101-000003,d-20240101-000004"},
        {"metrics.nothing > 0", NULL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK_OK(filtered(reg, cases[i].filter, cases[i].sort, got, sizeof got));
        CHECK_MSG(!strcmp(got, cases[i].want), "filter '%s' sort '%s': got '%s'",
                  cases[i].filter ? cases[i].filter : "", cases[i].sort ? cases[i].sort : "", got);
    }
    kiln_registry_query q = {.experiment = "cifar", .limit = 1};
    CHECK_OK(names_of(reg, q, got, sizeof got));
    CHECK(!strcmp(got, "d-20240101-000004"));
    q = (kiln_registry_query){.sort = "metrics. desc"};
    CHECK(names_of(reg, q, got, sizeof got) == KILN_ERR_INVALID);
    kiln_registry_close(reg);
}

/* Metric and param columns with a filter and a sort key naming the same metrics and params
 * (PostgreSQL reads each name through one join, shared by all of them; SQLite through
 * subqueries and a prefetched table), a metric and a param of the same name, and a name that no
 * run has: the values and the order are the same on both. */
typedef struct {
    char rows[8][160];
    int n;
} column_rows;

static int take_columns(const kiln_registry_run *r, void *ctx) {
    column_rows *c = ctx;
    if (c->n == 8) return 1;
    snprintf(c->rows[c->n++], sizeof c->rows[0], "%s %.4g %.4g %s %s %.4g", r->name,
             r->values[0], r->values[1], r->params[0] ? r->params[0] : "-",
             r->params[1] ? r->params[1] : "-", r->values[2]);
    return 0;
}

static void test_list_columns(void) {
    char runs[1024];
    snprintf(runs, sizeof runs, "%s", at("cols"));
    kiln_registry *reg = four_runs(runs);
    if (!reg) return;
    const char *metrics[] = {"val_accuracy", "loss", "nothing"};
    const char *params[] = {"optimizer.adam.learning_rate", "experiment"};
    struct {
        const char *filter, *sort;
        int n;
        const char *want[4];
    } cases[] = {
        {"metrics.val_accuracy > 0.1 or params.optimizer.adam.learning_rate = '0.05'",
         "params.optimizer.adam.learning_rate desc",
         3,
         {"c-20240101-000003 1.004 0.25 0.1 cifar nan", "d-20240101-000004 nan nan 0.05 cifar nan",
          "b-20240101-000002 0.103 0.3333 0.01 mnist nan"}},
        /* params.experiment is text; metrics.experiment does not exist (NULL: not > 0) */
        {"params.experiment = 'mnist' and not metrics.experiment > 0 and metrics.loss < 0.3",
         "loss",
         1,
         {"a-20240101-000001 0.015 0.2 0.001 mnist nan"}},
        {"metrics.val_accuracy >= 0.015 and metrics.val_accuracy < 1", "val_accuracy asc",
         2,
         {"a-20240101-000001 0.015 0.2 0.001 mnist nan",
          "b-20240101-000002 0.103 0.3333 0.01 mnist nan"}},
        {NULL, "params.experiment", 4, /* ties: the newest first */
         {"d-20240101-000004 nan nan 0.05 cifar nan", "c-20240101-000003 1.004 0.25 0.1 cifar nan",
          "b-20240101-000002 0.103 0.3333 0.01 mnist nan",
          "a-20240101-000001 0.015 0.2 0.001 mnist nan"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kiln_registry_filter *f = NULL;
        int col;
        if (cases[i].filter) CHECK_OK(kiln_registry_filter_parse(cases[i].filter, &f, &col));
        kiln_registry_query q = {.filter = f, .sort = cases[i].sort, .metrics = metrics,
                                 .n_metrics = 3, .params = params, .n_params = 2};
        column_rows c = {.n = 0};
        CHECK_OK(kiln_registry_list_runs(reg, &q, take_columns, &c));
        CHECK_MSG(c.n == cases[i].n, "case %zu: %d rows", i, c.n);
        for (int k = 0; k < c.n && k < cases[i].n; k++)
            CHECK_MSG(!strcmp(c.rows[k], cases[i].want[k]), "case %zu row %d: '%s'", i, k,
                      c.rows[k]);
        kiln_registry_filter_free(f);
    }
    kiln_registry_close(reg);
}

/* ---- metrics of one run ---- */

typedef struct {
    char names[8][32];
    double last[8], min[8], max[8];
    int64_t points[8];
    int n;
} metric_list;

static int take_metric(const kiln_registry_metric *m, void *ctx) {
    metric_list *l = ctx;
    if (l->n == 8) return 1;
    snprintf(l->names[l->n], 32, "%s", m->name);
    l->last[l->n] = m->last, l->min[l->n] = m->min, l->max[l->n] = m->max;
    l->points[l->n] = m->points;
    l->n++;
    return 0;
}

static int count_points(const kiln_registry_point *p, void *ctx) {
    int *n = ctx;
    *n += p->step == *n + 1;
    return 0;
}

static int count_params(const kiln_registry_param *p, void *ctx) {
    int *n = ctx;
    *n += p->is_number ? 100 : 1;
    return 0;
}

static void test_run_details(void) {
    char runs[1024];
    snprintf(runs, sizeof runs, "%s", at("det"));
    fake_run(runs, "m", "a-20240101-000001", "finished", "0.001", 5);
    kiln_registry *reg = NULL;
    CHECK_OK(kiln_registry_open(runs, &reg));
    if (!reg) return;
    CHECK_OK(kiln_registry_sync(reg, NULL));
    metric_list l = {.n = 0};
    CHECK_OK(kiln_registry_run_metrics(reg, "m/a-20240101-000001", take_metric, &l));
    CHECK(l.n == 2 && !strcmp(l.names[0], "loss") && !strcmp(l.names[1], "val_accuracy"));
    CHECK(l.points[0] == 5 && l.last[0] == 0.2 && l.min[0] == 0.2 && l.max[0] == 1.0);
    l.n = 0;
    CHECK_OK(kiln_registry_latest_metrics(reg, "m/a-20240101-000001", take_metric, &l));
    CHECK(l.n == 2 && l.last[1] == 0.015 && isnan(l.min[1]));
    int n = 0;
    CHECK_OK(kiln_registry_metric_history(reg, "m/a-20240101-000001", "loss", count_points, &n));
    CHECK(n == 5);
    n = 0;
    CHECK_OK(kiln_registry_run_params(reg, "m/a-20240101-000001", count_params, &n));
    CHECK_MSG(n == 2 * 100 + 4, "%d", n); /* lr and units are numbers; 4 texts */
    CHECK(kiln_registry_run_metrics(reg, "m/none", take_metric, &l) == KILN_ERR_NOTFOUND);
    kiln_registry_close(reg);
}

/* Two config entries that flatten to the same key path ("a: {b: 1}" and a key "a.b"): the later
 * one is the param, on SQLite (an upsert per param) and on PostgreSQL (the params in one
 * multi-row statement, which may not touch a row twice). */
typedef struct {
    char text[64];
    int n;
} one_param;

static int take_param(const kiln_registry_param *p, void *ctx) {
    one_param *o = ctx;
    if (!strcmp(p->key, "a.b")) snprintf(o->text, sizeof o->text, "%s %d", p->value, p->is_number);
    o->n++;
    return 0;
}

static void test_param_key_twice(void) {
    char runs[1024], path[1300];
    snprintf(runs, sizeof runs, "%s", at("twice"));
    fake_run(runs, "e", "a-20240101-000001", "finished", "0.001", 1);
    snprintf(path, sizeof path, "%s/e/a-20240101-000001/config.yaml", runs);
    put(path, "a:\n  b: 1\n\"a.b\": two\nc: [1, 2]\n");
    kiln_registry *reg = NULL;
    CHECK_OK(kiln_registry_open(runs, &reg));
    if (!reg) return;
    CHECK_OK(kiln_registry_sync(reg, NULL));
    one_param o = {"", 0};
    CHECK_OK(kiln_registry_run_params(reg, "e/a-20240101-000001", take_param, &o));
    CHECK_MSG(o.n == 2 && !strcmp(o.text, "two 0"), "%d params, a.b = '%s'", o.n, o.text);
    kiln_registry_close(reg);
}

/* ---- models ---- */

static void fake_version(const char *runs, const char *model, int v, const char *run_path) {
    char dir[1200], path[1300], text[1600];
    snprintf(dir, sizeof dir, "%s/models/%s/%d", runs, model, v);
    CHECK(kiln_mkdirs(dir) == KILN_OK);
    snprintf(path, sizeof path, "%s/model.json", dir);
    snprintf(text, sizeof text,
             "{\"format\":\"kiln-servable\",\"created\":\"2024-02-0%dT00:00:00Z\","
             "\"source\":{\"run\":\"%s\",\"checkpoint\":\"step-%d\"}}",
             v, run_path, v * 100);
    put(path, text);
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    put(path, "x");
}

static int take_version(const kiln_registry_model_version *v, void *ctx) {
    char *out = ctx;
    size_t used = strlen(out);
    snprintf(out + used, 512 - used, "%s%s/%lld[%s]%s%s", used ? "," : "", v->model,
             (long long)v->version, v->aliases, v->run ? v->run : "-",
             v->path_exists ? "" : "(missing)");
    return 0;
}

static void test_models(void) {
    char runs[1024];
    snprintf(runs, sizeof runs, "%s", at("mod"));
    fake_run(runs, "m", "a-20240101-000001", "finished", "0.001", 1);
    char real[4096];
    CHECK(realpath(at("mod/m/a-20240101-000001"), real) != NULL);
    fake_version(runs, "clf", 1, real);
    fake_version(runs, "clf", 2, "/elsewhere/run");
    CHECK(kiln_mkdirs(at("mod/models/clf/.tmp-3-1-2")) == KILN_OK); /* an export in progress */
    char base[1024];
    int64_t v = -1;
    /* no registry yet: an error, and none is created */
    CHECK(kiln_registry_resolve_model_uri(runs, "models:/clf/1", base, sizeof base, &v) ==
          KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("no registry");
    CHECK(!exists(at("mod/kiln.db")) && v == 0 && !base[0]);

    kiln_registry *reg = NULL;
    kiln_registry_sync_stats stats;
    CHECK_OK(kiln_registry_open(runs, &reg));
    if (!reg) return;
    CHECK_OK(kiln_registry_sync(reg, &stats));
    CHECK(stats.models == 2);
    char list[512] = "";
    CHECK_OK(kiln_registry_list_models(reg, NULL, take_version, list));
    CHECK_MSG(!strcmp(list, "clf/1[]m/a-20240101-000001,clf/2[]-"), "%s", list);
    CHECK_OK(kiln_registry_set_alias(reg, "clf", 1, "production"));
    CHECK_OK(kiln_registry_set_alias(reg, "clf", 2, "staging"));
    CHECK_OK(kiln_registry_set_alias(reg, "clf", 2, "production")); /* moves */
    CHECK(kiln_registry_set_alias(reg, "clf", 7, "x") == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("versions: 1, 2");
    CHECK(kiln_registry_set_alias(reg, "nope", 1, "x") == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("models: clf");
    CHECK(kiln_registry_set_alias(reg, "clf", 1, "123") == KILN_ERR_INVALID);
    CHECK(kiln_registry_set_alias(reg, "clf", 1, "a b") == KILN_ERR_INVALID);
    list[0] = 0;
    CHECK_OK(kiln_registry_list_models(reg, "clf", take_version, list));
    CHECK_MSG(!strcmp(list, "clf/1[]m/a-20240101-000001,clf/2[production, staging]-"), "%s", list);
    CHECK(kiln_registry_list_models(reg, "nope", take_version, list) == KILN_ERR_NOTFOUND);
    CHECK_OK(kiln_registry_delete_alias(reg, "clf", "staging"));
    CHECK(kiln_registry_delete_alias(reg, "clf", "staging") == KILN_ERR_NOTFOUND);
    CHECK(!kiln_registry_valid_name("") && !kiln_registry_valid_name(".x") &&
          !kiln_registry_valid_name("a/b") && kiln_registry_valid_name("fashion-mnist_v1.2"));
    kiln_registry_close(reg);

    struct {
        const char *uri;
        kiln_status s;
        int64_t version;
        const char *err;
    } cases[] = {
        {"models:/clf@production", KILN_OK, 2, NULL},
        {"models:/clf/1", KILN_OK, 1, NULL},
        {"models:/clf/latest", KILN_OK, 2, NULL},
        {"models:/clf", KILN_OK, 0, NULL},
        {"models:/clf@staging", KILN_ERR_NOTFOUND, 0,
         "no alias 'staging' (aliases: production -> 2)"},
        {"models:/clf/3", KILN_ERR_NOTFOUND, 0, "no version 3 (versions: 1, 2)"},
        {"models:/other@production", KILN_ERR_NOTFOUND, 0, "no model named 'other'"},
        {"models:/clf/01", KILN_ERR_INVALID, 0, "not a version"},
        {"models:/clf@", KILN_ERR_INVALID, 0, "nothing usable after '@'"},
        {"models:/", KILN_ERR_INVALID, 0, "expected models:/NAME/VERSION"},
        {"model:/clf/1", KILN_ERR_INVALID, 0, "expected"},
        {"models:/a b/1", KILN_ERR_INVALID, 0, "not a model name"},
        {"models:/clf@12", KILN_ERR_INVALID, 0, "not an alias"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        v = -1;
        kiln_status s = kiln_registry_resolve_model_uri(runs, cases[i].uri, base, sizeof base, &v);
        CHECK_MSG(s == cases[i].s, "%s: %s %s", cases[i].uri, kiln_status_name(s),
                  kiln_last_error());
        if (cases[i].err) CHECK_ERR_HAS(cases[i].err);
        if (s) continue;
        CHECK(v == cases[i].version);
        CHECK_MSG(!strcmp(base, at("mod/models/clf")), "%s", base);
    }
    CHECK(kiln_registry_resolve_model_uri(runs, "models:/clf/1", base, 8, &v) == KILN_ERR_INVALID);
    /* a version folder removed by hand */
    kiln_run_rmtree(AT_FDCWD, at("mod/models/clf/2"));
    CHECK(kiln_registry_resolve_model_uri(runs, "models:/clf@production", base, sizeof base, &v) ==
          KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("is missing");
    CHECK_OK(kiln_registry_open(runs, &reg));
    list[0] = 0;
    CHECK_OK(kiln_registry_list_models(reg, NULL, take_version, list));
    CHECK_MSG(strstr(list, "clf/2[production]-(missing)") != NULL, "%s", list);
    /* registering needs a run that can be exported (this one has no usable config or checkpoint) */
    int64_t got = 0;
    CHECK(kiln_registry_register_model(reg, "m/a-20240101-000001", NULL, NULL, 0, &got, NULL, 0) !=
          KILN_OK);
    CHECK(got == 0 && !exists(at("mod/models/m")));
    CHECK(kiln_registry_register_model(reg, "m/nope", NULL, NULL, 0, &got, NULL, 0) ==
          KILN_ERR_NOTFOUND);
    CHECK(kiln_registry_register_model(reg, "m/a-20240101-000001", "bad name", NULL, 0, &got, NULL,
                                       0) == KILN_ERR_INVALID);
    CHECK(kiln_registry_register_model(reg, "m/a-20240101-000001", "clf", NULL, 1, &got, NULL, 0) ==
          KILN_ERR_INVALID);
    CHECK_ERR_HAS("already has version 1");
    kiln_registry_close(reg);
}


/* Schema 2 -> 3: a version-2 registry keeps its rows and is version 3 after an open; on
 * PostgreSQL it gains params_by_key (SQLite's step is empty: its list probes params per run by
 * the primary key, and the index would only cost). Opening it again changes nothing. */
static void test_schema_upgrade_params_index(void) {
    kiln_registry *reg = NULL;
    const char *has_index =
        pg_uri ? "SELECT count(*) FROM pg_indexes WHERE indexname = 'params_by_key'"
                 " AND schemaname = current_schema()"
               : "SELECT count(*) FROM sqlite_master WHERE name = 'params_by_key'";
    int want = pg_uri ? 1 : 0;
    CHECK(kiln_mkdirs(at("v2")) == KILN_OK);
    CHECK_OK(kiln_registry_open(at("v2"), &reg));
    kiln_registry_close(reg);
    reg = NULL;
    CHECK(q1(at("v2"), has_index) == want);
    CHECK(exec_sql(at("v2"), pg_uri ? "DROP INDEX params_by_key;"
                                      " UPDATE kiln_meta SET value = '2' WHERE key = 'schema'"
                                    : "PRAGMA user_version = 2") == 0);
    CHECK(exec_sql(at("v2"), "INSERT INTO experiments VALUES (1, 'e', 'now');"
                             "INSERT INTO runs(rid, id, eid, name, status, start_time) VALUES"
                             " (1, 'e/r', 1, 'r', 'stopped', 'now');"
                             "INSERT INTO params VALUES (1, 'seed', '1', 1)") == 0);
    CHECK(q1(at("v2"), has_index) == 0);
    CHECK_OK(kiln_registry_open(at("v2"), &reg));
    kiln_registry_close(reg);
    reg = NULL;
    CHECK(q1(at("v2"), has_index) == want);
    CHECK(q1(at("v2"), pg_uri ? "SELECT value FROM kiln_meta WHERE key = 'schema'"
                              : "PRAGMA user_version") == 3);
    CHECK(q1(at("v2"), "SELECT count(*) FROM params") == 1);
    CHECK_OK(kiln_registry_open(at("v2"), &reg)); /* current: nothing to do */
    kiln_registry_close(reg);
}

/* Schema 1 -> 2 (kiln tune): a version-1 file keeps its rows, gains studies and trials, and its
 * runs may then say 'pruned'. Version 1 is remade from a new file by undoing the step. */
static void test_schema_upgrade_and_studies(void) {
    kiln_registry *reg = NULL;
    CHECK(kiln_mkdirs(at("v1")) == KILN_OK);
    CHECK_OK(kiln_registry_open(at("v1"), &reg));
    kiln_registry_close(reg);
    reg = NULL;
    if (pg_uri) { /* the same on PostgreSQL: back to schema 1, then opened again */
        CHECK(exec_sql(at("v1"), "DROP INDEX params_by_key;" /* back over 2 -> 3 too */
                                 "DROP TABLE trials; DROP TABLE studies; ALTER TABLE runs DROP"
                                 " CONSTRAINT runs_status_check, ADD CONSTRAINT runs_status_check"
                                 " CHECK (status IN ('running', 'finished', 'failed', 'stopped'));"
                                 " UPDATE kiln_meta SET value = '1' WHERE key = 'schema'") == 0);
        CHECK(exec_sql(at("v1"), "INSERT INTO experiments VALUES (1, 'e', 'now');"
                                 "INSERT INTO runs(rid, id, eid, name, status, start_time) VALUES"
                                 " (1, 'e/r', 1, 'r', 'stopped', 'now');"
                                 "INSERT INTO params VALUES (1, 'seed', '1', 1)") == 0);
        CHECK(exec_sql(at("v1"), "UPDATE runs SET status = 'pruned'") != 0); /* v1 refuses */
        CHECK_OK(kiln_registry_open(at("v1"), &reg));
        CHECK(q1(at("v1"), "SELECT value FROM kiln_meta WHERE key = 'schema'") ==
              KILN_REGISTRY_SCHEMA);
        CHECK(q1(at("v1"), "SELECT count(*) FROM params") == 1);
        CHECK(exec_sql(at("v1"), "UPDATE runs SET status = 'pruned'") == 0);
        CHECK(exec_sql(at("v1"), "UPDATE runs SET status = 'bogus'") != 0);
        goto studies;
    }
    CHECK(exec_sql(at("v1"), "DROP TABLE trials; DROP TABLE studies; PRAGMA writable_schema = ON;"
                             "UPDATE sqlite_master SET sql = replace(sql, ', ''pruned'')', ')')"
                             " WHERE name = 'runs'; PRAGMA writable_schema = OFF;"
                             "PRAGMA user_version = 1") == SQLITE_OK);
    CHECK(exec_sql(at("v1"), "INSERT INTO experiments VALUES (1, 'e', 'now');"
                             "INSERT INTO runs(rid, id, eid, name, status, start_time) VALUES"
                             " (1, 'e/r', 1, 'r', 'stopped', 'now');"
                             "INSERT INTO params VALUES (1, 'seed', '1', 1)") == SQLITE_OK);
    CHECK(exec_sql(at("v1"), "UPDATE runs SET status = 'pruned'") != SQLITE_OK); /* v1 refuses */
    CHECK_OK(kiln_registry_open(at("v1"), &reg));
    CHECK(q1(at("v1"), "PRAGMA user_version") == KILN_REGISTRY_SCHEMA);
    CHECK(q1(at("v1"), "SELECT count(*) FROM params") == 1);
    CHECK(exec_sql(at("v1"), "UPDATE runs SET status = 'pruned'") == SQLITE_OK);
    CHECK(exec_sql(at("v1"), "UPDATE runs SET status = 'bogus'") != SQLITE_OK);
    CHECK(q1(at("v1"), "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'") == 1);
studies:; /* studies and trials */
    kiln_registry_study s = {.name = "st", .experiment = "e", .metric = "val_loss",
                             .direction = "minimize", .spec = "{}"};
    CHECK_OK(kiln_registry_study_create(reg, &s));
    CHECK(kiln_registry_study_create(reg, &s) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("exists already");
    kiln_registry_trial t = {.number = 0, .state = "finished", .run = "e/r", .params = "{}",
                             .x = "[]", .has_value = 1, .value = 0.5, .start_time = "now"};
    CHECK_OK(kiln_registry_trial_put(reg, "st", &t));
    t.number = 1, t.value = 0.25;
    CHECK_OK(kiln_registry_trial_put(reg, "st", &t));
    t.number = 2, t.state = "pruned", t.value = 0.1;
    CHECK_OK(kiln_registry_trial_put(reg, "st", &t));
    t.state = "bogus";
    CHECK(kiln_registry_trial_put(reg, "st", &t) != KILN_OK);
    CHECK(kiln_registry_trial_put(reg, "nope", &t) == KILN_ERR_NOTFOUND);
    kiln_registry_close(reg);
    CHECK(q1(at("v1"), "SELECT count(*) FROM trials") == 3);
    CHECK(q1(at("v1"), "SELECT value * 100 FROM trials WHERE number = 1") == 25);
}

int main(void) {
    kiln_registry_use_postgres(); /* KILN_REGISTRY may name a PostgreSQL server */
    snprintf(root, sizeof root, "/tmp/kiln-test-registry-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    pg_uri = getenv("KILN_TEST_PG");
    if (pg_uri && !*pg_uri) pg_uri = NULL;
    if (pg_uri) {
        snprintf(pg_registry, sizeof pg_registry, "%s%cschema=auto", pg_uri,
                 strchr(pg_uri, '?') ? '&' : '?');
        printf("registry: PostgreSQL at %s (a schema per runs folder)\n", pg_uri);
    }
    registry_env();
    RUN(test_schema);
    RUN(test_schema_upgrade_and_studies);
    RUN(test_schema_upgrade_params_index);
    RUN(test_writer);
    RUN(test_switched_off);
    RUN(test_switched_off_by_user_config);
    RUN(test_killed_mid_transaction);
    RUN(test_crash_marking);
    RUN(test_concurrent_writers);
    RUN(test_failures_do_not_stop_runs);
    RUN(test_import);
    RUN(test_find_and_remove);
    RUN(test_filter_parse);
    RUN(test_filter_select);
    RUN(test_list_columns);
    RUN(test_run_details);
    RUN(test_param_key_twice);
    RUN(test_models);
    kiln_run_rmtree(AT_FDCWD, root);
    return kiln_test_summary();
}

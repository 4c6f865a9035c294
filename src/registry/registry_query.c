/* registry_query.c — reading runs out of the registry: the list (filter, sort, metric columns),
 * what a user's run reference means, a run's params, metric summaries and histories, and
 * removing a run.
 *
 * The list is one SELECT over runs joined with experiments. On SQLite, metric columns come from
 * one pass over latest_metrics by name (its index latest_by_name), into a table indexed by the
 * run's rowid, which is several times cheaper than a probe per run and name; filters on metrics
 * and metric sort keys probe latest_metrics by its primary key (run, name). On PostgreSQL every
 * statement is a round trip to the server and a probe per run is an index scan: there the list
 * is one statement with a LEFT JOIN per metric or param it names (columns, filter and sort key
 * share them: reg_joins), which the planner answers with one scan of each name's rows
 * (latest_by_name, params_by_key) and hash joins. Neither reads the metrics table itself, so
 * listing 10,000 runs stays in milliseconds whatever their history.
 * The SQL text is generated (filter.c), every value in it is a bound parameter.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry/registry_internal.h"
#include "run/run_internal.h"

#define RUN_COLUMNS                                                                                \
    "r.id, e.name, r.name, r.status, r.message, r.start_time, r.end_time, " REG_DURATION_SQL       \
    ", r.host, r.pid, r.kiln_version, r.seed, r.config_hash, r.command, r.checkpoint,"             \
    " r.epochs_completed, r.steps, r.rid"
#define N_RUN_COLUMNS 18

static kiln_status prepare(kiln_registry *reg, const char *sql, reg_stmt **st,
                           const char *what) {
    int rc = reg_prepare(reg->db, sql, st);
    return rc == REG_OK ? KILN_OK : kiln_reg_fail(reg, rc, what);
}

static double col_double(reg_stmt *st, int i) {
    return reg_col_null(st, i) ? NAN : reg_col_double(st, i);
}

/* ---- the list ---- */

/* The latest values of the query's metric columns for every run: values[rid * n + i] (NaN where
 * a run has none), rids up to *max_rid. Left NULL (the query then probes per run) when rowids are
 * too sparse for a table indexed by them. */
static kiln_status prefetch_metrics(kiln_registry *reg, const kiln_registry_query *q,
                                    double **values, int64_t *max_rid) {
    *values = NULL;
    reg_stmt *st = NULL;
    int64_t count = 0;
    kiln_status s = prepare(reg, "SELECT max(rid), count(*) FROM runs", &st, "listing runs");
    if (s) return s;
    int rc = reg_step(st);
    if (rc == REG_ROW)
        *max_rid = reg_col_int64(st, 0), count = reg_col_int64(st, 1);
    reg_finalize(st);
    if (rc != REG_ROW) return kiln_reg_fail(reg, rc, "listing runs");
    if (*max_rid < 0 || *max_rid > 16 * count + 65536) return KILN_OK;
    size_t n = ((size_t)*max_rid + 1) * (size_t)q->n_metrics;
    double *v = malloc(n * sizeof *v);
    if (!v) return KILN_OK; /* probing instead needs no memory */
    for (size_t i = 0; i < n; i++) v[i] = NAN;
    for (int m = 0; m < q->n_metrics && !s; m++) {
        if (!(s = prepare(reg, "SELECT rid, value FROM latest_metrics WHERE name = ?1", &st,
                          "listing runs"))) {
            kiln_reg_bind_text(st, 1, q->metrics[m]);
            while ((rc = reg_step(st)) == REG_ROW) {
                int64_t rid = reg_col_int64(st, 0);
                if (rid >= 0 && rid <= *max_rid)
                    v[(size_t)rid * (size_t)q->n_metrics + (size_t)m] = col_double(st, 1);
            }
            if (rc != REG_DONE) s = kiln_reg_fail(reg, rc, "listing runs");
            reg_finalize(st);
        }
    }
    if (s) {
        free(v);
        return s;
    }
    *values = v;
    return KILN_OK;
}

/* Every run's latest metrics, from one pass over latest_metrics in its key order (run, name). */
typedef struct {
    int64_t *rid;  /* [n], ascending */
    char **name;   /* [n], into names (sized once, so it never moves) */
    double *value; /* [n] */
    char *names;
    size_t n;
} all_latest;

static void free_latest(all_latest *a) {
    free(a->rid), free(a->name), free(a->value), free(a->names);
}

static kiln_status fetch_all_latest(kiln_registry *reg, all_latest *a) {
    memset(a, 0, sizeof *a);
    reg_stmt *st = NULL;
    int64_t count = 0, bytes = 0;
    kiln_status s =
        prepare(reg, "SELECT count(*), coalesce(sum(length(name) + 1), 0) FROM latest_metrics", &st,
                "listing runs");
    if (s) return s;
    if (reg_step(st) == REG_ROW)
        count = reg_col_int64(st, 0), bytes = reg_col_int64(st, 1);
    reg_finalize(st);
    a->rid = malloc(((size_t)count + 1) * sizeof *a->rid);
    a->name = malloc(((size_t)count + 1) * sizeof *a->name);
    a->value = malloc(((size_t)count + 1) * sizeof *a->value);
    a->names = malloc((size_t)bytes + 1);
    if (!a->rid || !a->name || !a->value || !a->names) {
        free_latest(a);
        return kiln_error(KILN_ERR_NOMEM, "registry: out of memory");
    }
    if ((s = prepare(reg, "SELECT rid, name, value FROM latest_metrics ORDER BY rid, name", &st,
                     "listing runs")))
        return s;
    size_t used = 0;
    int rc;
    while ((rc = reg_step(st)) == REG_ROW && a->n < (size_t)count) {
        const char *name = kiln_reg_col_text(st, 1);
        size_t len = name ? strlen(name) + 1 : 1;
        if (used + len > (size_t)bytes) break; /* written meanwhile: keep what fits */
        memcpy(a->names + used, name ? name : "", len);
        a->rid[a->n] = reg_col_int64(st, 0);
        a->name[a->n] = a->names + used;
        a->value[a->n++] = col_double(st, 2);
        used += len;
    }
    reg_finalize(st);
    return rc == REG_ROW || rc == REG_DONE ? KILN_OK : kiln_reg_fail(reg, rc, "listing runs");
}

/* The first entry of run rid (a->n when it has none) and how many there are. */
static size_t latest_of(const all_latest *a, int64_t rid, int *count) {
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->rid[mid] < rid)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < a->n && a->rid[end] == rid) end++;
    *count = (int)(end - lo);
    return lo;
}

/* The list's SELECT. probe_metrics: the metric columns are in it (else prefetched). j: read
 * metrics and params (columns, filter, sort key) through its joins (PostgreSQL); NULL:
 * correlated subqueries. */
static kiln_status build_list_sql(const kiln_registry_query *q, int probe_metrics,
                                  const reg_operand *sort, int desc, reg_joins *j, char **sql,
                                  reg_binds *b, char *exp_folder) {
    size_t len = 0;
    FILE *o = open_memstream(sql, &len);
    if (!o) return kiln_error(KILN_ERR_NOMEM, "registry: out of memory");
    if (j) {
        for (int i = 0; i < q->n_metrics; i++) kiln_reg_joins_add(j, 0, q->metrics[i]);
        for (int i = 0; i < q->n_params; i++) kiln_reg_joins_add(j, 1, q->params[i]);
        if (q->filter) kiln_reg_joins_add_filter(j, q->filter);
        if (q->sort && (sort->kind == REG_OP_METRIC || sort->kind == REG_OP_PARAM))
            kiln_reg_joins_add(j, sort->kind == REG_OP_PARAM, sort->text);
        if (j->failed) j = NULL; /* out of memory: subqueries need none */
    }
    fputs("SELECT " RUN_COLUMNS, o);
    for (int i = 0; probe_metrics && i < q->n_metrics; i++) {
        int at = j ? kiln_reg_joins_add(j, 0, q->metrics[i]) : -1;
        if (at >= 0) {
            fprintf(o, ", j%d.value", at);
            continue;
        }
        fputs(", (SELECT value FROM latest_metrics WHERE rid = r.rid AND name = ?)", o);
        kiln_reg_binds_add_text(b, q->metrics[i]);
    }
    for (int i = 0; i < q->n_params; i++) {
        int at = j ? kiln_reg_joins_add(j, 1, q->params[i]) : -1;
        if (at >= 0) {
            fprintf(o, ", j%d.value", at);
            continue;
        }
        fputs(", (SELECT value FROM params WHERE rid = r.rid AND key = ?)", o);
        kiln_reg_binds_add_text(b, q->params[i]);
    }
    fputs(" FROM runs r JOIN experiments e ON e.eid = r.eid", o);
    if (j) kiln_reg_joins_sql(j, o, b);
    fputs(" WHERE 1 = 1", o);
    if (q->id) {
        fputs(" AND r.id = ?", o);
        kiln_reg_binds_add_text(b, q->id);
    }
    if (q->experiment) {
        kiln_run_sanitize(q->experiment, exp_folder);
        strcat(exp_folder, "/");
        fputs(" AND (e.name = ? OR substr(r.id, 1, length(?)) = ?)", o);
        kiln_reg_binds_add_text(b, q->experiment);
        kiln_reg_binds_add_text(b, exp_folder);
        kiln_reg_binds_add_text(b, exp_folder);
    }
    if (q->filter) {
        fputs(" AND ", o);
        kiln_reg_filter_sql(q->filter, j, o, b);
    }
    fputs(" ORDER BY ", o);
    if (q->sort) {
        kiln_reg_sort_sql(sort, desc, j, o, b);
        fputs(", ", o);
    }
    fputs("r.start_time DESC, r.id", o);
    if (q->limit > 0) fprintf(o, " LIMIT %lld", (long long)q->limit);
    if (fclose(o) != 0 || !*sql || b->failed)
        return kiln_error(KILN_ERR_NOMEM, "registry: out of memory");
    return KILN_OK;
}

kiln_status kiln_registry_list_runs(kiln_registry *reg, const kiln_registry_query *q,
                                    kiln_registry_run_fn fn, void *ctx) {
    static const kiln_registry_query all = {0};
    if (!q) q = &all;
    if (!reg || !fn)
        return kiln_error(KILN_ERR_INVALID, "registry list: NULL registry or callback");
    if (q->n_metrics < 0 || (q->n_metrics && !q->metrics))
        return kiln_error(KILN_ERR_INVALID, "registry list: bad metric columns");
    for (int i = 0; i < q->n_metrics; i++)
        if (!q->metrics[i]) return kiln_error(KILN_ERR_INVALID, "registry list: NULL metric name");
    if (q->n_params < 0 || (q->n_params && !q->params))
        return kiln_error(KILN_ERR_INVALID, "registry list: bad param columns");
    for (int i = 0; i < q->n_params; i++)
        if (!q->params[i]) return kiln_error(KILN_ERR_INVALID, "registry list: NULL param key");
    reg_operand sort = {0};
    int desc = 1;
    kiln_status s = q->sort ? kiln_reg_sort_parse(q->sort, &sort, &desc) : KILN_OK;
    if (s) return s;
    char *sql = NULL, exp_folder[KILN_RUN_NAME_MAX + 2];
    reg_binds b = {0};
    double *values = calloc((size_t)q->n_metrics + 1, sizeof *values);
    const char **params = calloc((size_t)q->n_params + 1, sizeof *params);
    reg_stmt *st = NULL;
    double *table = NULL;
    int64_t max_rid = 0;
    if (!values || !params) s = kiln_error(KILN_ERR_NOMEM, "registry: out of memory");
    all_latest every = {0};
    /* a server: one statement (each is a round trip), metrics and params joined in it */
    int server = reg_db_dialect(reg->db) == REG_PG;
    reg_joins joins = {0};
    if (!s && q->n_metrics && !server) s = prefetch_metrics(reg, q, &table, &max_rid);
    if (!s && q->all_metrics) s = fetch_all_latest(reg, &every);
    int probe = table == NULL, nm = probe ? q->n_metrics : 0; /* metric columns in the SELECT */
    if (!s)
        s = build_list_sql(q, probe, &sort, desc, server ? &joins : NULL, &sql, &b, exp_folder);
    if (!s) s = prepare(reg, sql, &st, "listing runs");
    if (!s) {
        kiln_reg_binds_apply(&b, st);
        int rc;
        while ((rc = reg_step(st)) == REG_ROW) {
            kiln_registry_run r = {
                .id = kiln_reg_col_text(st, 0),
                .experiment = kiln_reg_col_text(st, 1),
                .name = kiln_reg_col_text(st, 2),
                .status = kiln_reg_col_text(st, 3),
                .message = kiln_reg_col_text(st, 4),
                .start_time = kiln_reg_col_text(st, 5),
                .end_time = kiln_reg_col_text(st, 6),
                .duration = col_double(st, 7),
                .host = kiln_reg_col_text(st, 8),
                .pid = (long)reg_col_int64(st, 9),
                .kiln_version = kiln_reg_col_text(st, 10),
                .seed = kiln_reg_col_text(st, 11),
                .config_hash = kiln_reg_col_text(st, 12),
                .command = kiln_reg_col_text(st, 13),
                .checkpoint = kiln_reg_col_text(st, 14),
                .epochs_completed = reg_col_int64(st, 15),
                .steps = reg_col_int64(st, 16),
                .values = values,
                .params = params,
            };
            int64_t rid = reg_col_int64(st, 17);
            for (int i = 0; i < q->n_metrics; i++)
                values[i] = probe ? col_double(st, N_RUN_COLUMNS + i)
                            : rid >= 0 && rid <= max_rid
                                ? table[(size_t)rid * (size_t)q->n_metrics + (size_t)i]
                                : NAN;
            for (int i = 0; i < q->n_params; i++)
                params[i] = kiln_reg_col_text(st, N_RUN_COLUMNS + nm + i);
            if (q->all_metrics) {
                size_t at = latest_of(&every, rid, &r.n_latest);
                r.latest_names = (const char *const *)every.name + at;
                r.latest_values = every.value + at;
            }
            if (fn(&r, ctx)) break;
        }
        if (rc != REG_ROW && rc != REG_DONE) s = kiln_reg_fail(reg, rc, "listing runs");
    }
    reg_finalize(st);
    free(values);
    free(table);
    free_latest(&every);
    free(params);
    free(sql);
    free(b.v);
    kiln_reg_joins_free(&joins);
    kiln_reg_operand_free(&sort);
    return s;
}

/* ---- which run ---- */

static kiln_status rid_of(kiln_registry *reg, const char *id, int64_t *rid) {
    reg_stmt *st = NULL;
    kiln_status s = prepare(reg, "SELECT rid FROM runs WHERE id = ?1", &st, "finding a run");
    if (s) return s;
    kiln_reg_bind_text(st, 1, id);
    int rc = reg_step(st);
    if (rc == REG_ROW)
        *rid = reg_col_int64(st, 0);
    else if (rc == REG_DONE)
        s = kiln_error(KILN_ERR_NOTFOUND, "no run %s in %s", id, reg->runs_dir);
    else
        s = kiln_reg_fail(reg, rc, "finding a run");
    reg_finalize(st);
    return s;
}

/* The ids (up to 6) the query with ?1 = ref returns, comma-separated into list; their count. */
static kiln_status matches(kiln_registry *reg, const char *sql, const char *ref, char *first,
                           size_t cap, char *list, size_t list_cap, int *n) {
    reg_stmt *st = NULL;
    *n = 0, list[0] = 0;
    kiln_status s = prepare(reg, sql, &st, "finding a run");
    if (s) return s;
    kiln_reg_bind_text(st, 1, ref);
    int rc;
    while ((rc = reg_step(st)) == REG_ROW) {
        const char *id = kiln_reg_col_text(st, 0);
        if (!id) continue;
        if (*n == 0 && snprintf(first, cap, "%s", id) >= (int)cap)
            s = kiln_error(KILN_ERR_INVALID, "run id %s is longer than %zu bytes", id, cap - 1);
        size_t used = strlen(list);
        if (*n < 5) snprintf(list + used, list_cap - used, "%s%s", *n ? ", " : "", id);
        ++*n;
    }
    if (rc != REG_DONE && rc != REG_ROW) s = kiln_reg_fail(reg, rc, "finding a run");
    reg_finalize(st);
    return s;
}

/* ref as a path to a run folder inside the runs folder: its id, or 0 when ref is no run folder. */
static kiln_status folder_ref(kiln_registry *reg, const char *ref, char *id, size_t cap,
                              int *found) {
    char probe[PATH_MAX], real[PATH_MAX], root[PATH_MAX];
    struct stat st;
    *found = 0;
    if (snprintf(probe, sizeof probe, "%s/run.json", ref) >= (int)sizeof probe ||
        stat(probe, &st) != 0 || !realpath(ref, real))
        return KILN_OK;
    if (!realpath(reg->runs_dir, root))
        return kiln_error(KILN_ERR_IO, "registry: cannot resolve %s", reg->runs_dir);
    size_t n = strlen(root);
    const char *rest = real + n;
    if (strncmp(real, root, n) || *rest != '/' || !strchr(rest + 1, '/') ||
        strchr(strchr(rest + 1, '/') + 1, '/'))
        return kiln_error(KILN_ERR_INVALID,
                          "run folder %s is not a run of the runs folder %s (pass --runs-dir)", ref,
                          reg->runs_dir);
    if (snprintf(id, cap, "%s", rest + 1) >= (int)cap)
        return kiln_error(KILN_ERR_INVALID, "run id %s is longer than %zu bytes", rest + 1,
                          cap - 1);
    *found = 1;
    int64_t rid;
    kiln_status s = rid_of(reg, id, &rid);
    if (s == KILN_ERR_NOTFOUND) { /* not indexed yet */
        kiln_error_clear();
        s = kiln_reg_sync_run(reg, id, NULL);
    }
    return s;
}

kiln_status kiln_registry_find_run(kiln_registry *reg, const char *ref, char *id, size_t cap) {
    if (!reg || !ref || !*ref) return kiln_error(KILN_ERR_INVALID, "registry: empty run reference");
    if (cap) id[0] = 0;
    int found, n;
    kiln_status s = folder_ref(reg, ref, id, cap, &found);
    if (s || found) return s;
    static const char *const QUERIES[] = {
        "SELECT id FROM runs WHERE id = ?1",
        "SELECT id FROM runs WHERE substr(id, instr(id, '/') + 1) = ?1 OR name = ?1"
        " ORDER BY id LIMIT 6",
        "SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1"
        " OR substr(substr(id, instr(id, '/') + 1), 1, length(?1)) = ?1"
        " OR substr(name, 1, length(?1)) = ?1 ORDER BY id LIMIT 6",
    };
    char list[1200];
    for (int i = 0; i < 3; i++) {
        if ((s = matches(reg, QUERIES[i], ref, id, cap, list, sizeof list, &n))) return s;
        if (n == 1) return KILN_OK;
        if (n > 1)
            return kiln_error(KILN_ERR_INVALID, "'%s' matches %s runs: %s%s (give more of it)", ref,
                              n > 5 ? "more than 5" : "several", list, n > 5 ? ", ..." : "");
    }
    if (cap) id[0] = 0;
    return kiln_error(KILN_ERR_NOTFOUND,
                      "no run matches '%s' in %s (kiln runs list --runs-dir %s shows them)", ref,
                      reg->runs_dir, reg->runs_dir);
}

/* ---- one run's details ---- */

kiln_status kiln_registry_run_params(kiln_registry *reg, const char *id, kiln_registry_param_fn fn,
                                     void *ctx) {
    int64_t rid;
    reg_stmt *st = NULL;
    kiln_status s = rid_of(reg, id, &rid);
    if (!s)
        s = prepare(reg, "SELECT key, value, num FROM params WHERE rid = ?1 ORDER BY key", &st,
                    "reading params");
    if (s) return s;
    reg_bind_int64(st, 1, rid);
    int rc;
    while ((rc = reg_step(st)) == REG_ROW) {
        kiln_registry_param p = {kiln_reg_col_text(st, 0), kiln_reg_col_text(st, 1),
                                 !reg_col_null(st, 2),
                                 reg_col_double(st, 2)};
        if (!p.key || !p.value) continue;
        if (fn(&p, ctx)) break;
    }
    if (rc != REG_ROW && rc != REG_DONE) s = kiln_reg_fail(reg, rc, "reading params");
    reg_finalize(st);
    return s;
}

kiln_status kiln_registry_run_metrics(kiln_registry *reg, const char *id,
                                      kiln_registry_metric_fn fn, void *ctx) {
    int64_t rid;
    reg_stmt *st = NULL;
    kiln_status s = rid_of(reg, id, &rid);
    if (!s)
        s = prepare(reg,
                    "SELECT m.name, count(*), min(m.value), max(m.value), l.step, l.value"
                    " FROM metrics m JOIN latest_metrics l ON l.rid = m.rid AND l.name = m.name"
                    " WHERE m.rid = ?1 GROUP BY m.name, l.step, l.value ORDER BY m.name",
                    &st, "reading metrics");
    if (s) return s;
    reg_bind_int64(st, 1, rid);
    int rc;
    while ((rc = reg_step(st)) == REG_ROW) {
        kiln_registry_metric m = {kiln_reg_col_text(st, 0),    reg_col_int64(st, 1),
                                  reg_col_int64(st, 4), col_double(st, 5),
                                  col_double(st, 2),           col_double(st, 3)};
        if (!m.name) continue;
        if (fn(&m, ctx)) break;
    }
    if (rc != REG_ROW && rc != REG_DONE) s = kiln_reg_fail(reg, rc, "reading metrics");
    reg_finalize(st);
    return s;
}

kiln_status kiln_registry_latest_metrics(kiln_registry *reg, const char *id,
                                         kiln_registry_metric_fn fn, void *ctx) {
    if (!reg || !id || !fn) return kiln_error(KILN_ERR_INVALID, "registry: NULL argument");
    reg_stmt *st = kiln_reg_stmt(reg, REG_LATEST_OF);
    if (!st) return KILN_ERR_IO;
    kiln_reg_bind_text(st, 1, id);
    int rc;
    while ((rc = reg_step(st)) == REG_ROW) {
        kiln_registry_metric m = {kiln_reg_col_text(st, 0), 1,   reg_col_int64(st, 1),
                                  col_double(st, 2),        NAN, NAN};
        if (m.name && fn(&m, ctx)) break;
    }
    kiln_status s =
        rc == REG_ROW || rc == REG_DONE ? KILN_OK : kiln_reg_fail(reg, rc, "reading metrics");
    reg_reset(st);
    return s;
}

kiln_status kiln_registry_metric_history(kiln_registry *reg, const char *id, const char *name,
                                         kiln_registry_point_fn fn, void *ctx) {
    int64_t rid;
    reg_stmt *st = NULL;
    if (!name) return kiln_error(KILN_ERR_INVALID, "registry: NULL metric name");
    kiln_status s = rid_of(reg, id, &rid);
    if (!s)
        s = prepare(reg,
                    "SELECT step, wall_time, value FROM metrics WHERE rid = ?1 AND name = ?2"
                    " ORDER BY step",
                    &st, "reading a metric");
    if (s) return s;
    reg_bind_int64(st, 1, rid);
    kiln_reg_bind_text(st, 2, name);
    int rc;
    while ((rc = reg_step(st)) == REG_ROW) {
        kiln_registry_point p = {reg_col_int64(st, 0), reg_col_double(st, 1),
                                 col_double(st, 2)};
        if (fn(&p, ctx)) break;
    }
    if (rc != REG_ROW && rc != REG_DONE) s = kiln_reg_fail(reg, rc, "reading a metric");
    reg_finalize(st);
    return s;
}

/* ---- removing ---- */

kiln_status kiln_registry_remove_run(kiln_registry *reg, const char *id) {
    int64_t rid;
    kiln_status s = kiln_reg_writable(reg, "remove runs");
    if (s || (s = rid_of(reg, id, &rid))) return s;
    char path[4200], parent[4200];
    if ((s = kiln_reg_run_path(reg, id, path, sizeof path))) return s;
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    *slash = 0;
    /* Hold the writer's lock while removing, so no training can open it meanwhile. */
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        int r;
        while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
        }
        if (r != 0 && errno == EWOULDBLOCK) {
            close(fd);
            return kiln_error(KILN_ERR_IO, /* a runtime condition, not a wrong argument */
                              "run %s is being written by another process: stop it first", id);
        }
        int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int rm = pfd < 0 ? -1 : kiln_run_rmtree(pfd, slash + 1);
        int e = errno;
        if (pfd >= 0) close(pfd);
        close(fd);
        if (rm != 0) return kiln_error(KILN_ERR_IO, "cannot remove %s: %s", path, strerror(e));
    } else if (errno != ENOENT) {
        return kiln_error(KILN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    if ((s = kiln_reg_begin(reg))) return s;
    reg_stmt *st = NULL;
    if (!(s = prepare(reg, "DELETE FROM runs WHERE rid = ?1", &st, "removing a run"))) {
        reg_bind_int64(st, 1, rid);
        s = kiln_reg_step_done(reg, st, "removing a run");
        reg_finalize(st);
    }
    return s ? (kiln_reg_rollback(reg), s) : kiln_reg_commit(reg);
}

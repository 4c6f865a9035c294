/* registry_study.c — kiln tune's studies and trials tables (schema 2; kiln/registry.h).
 *
 * The tuner is the only writer of its study's rows (one tuner per study: kiln tune takes the
 * study's lock file); trials' runs are written by their own processes through the ordinary
 * follower, so these tables never wait on a training. Every call is one statement or one
 * transaction, under the registry's busy timeout like every other writer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "registry/registry_internal.h"
#include "run/run_internal.h"

static kiln_status prep(kiln_registry *reg, const char *sql, reg_stmt **st) {
    int rc = reg_prepare(reg->db, sql, st);
    return rc == REG_OK ? KILN_OK : kiln_reg_fail(reg, rc, "reading studies");
}

kiln_status kiln_registry_open_read(const char *runs_dir, kiln_registry **out) {
    return kiln_reg_open_readonly(runs_dir, out);
}

kiln_status kiln_registry_study_create(kiln_registry *reg, const kiln_registry_study *s) {
    kiln_status e = kiln_reg_writable(reg, "create a study");
    if (e) return e;
    char now[32];
    kiln_run_iso_time((long long)time(NULL), now);
    reg_stmt *st;
    if ((e = prep(reg, "INSERT INTO studies(name, experiment, metric, direction, created, spec) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                  &st)))
        return e;
    kiln_reg_bind_text(st, 1, s->name);
    kiln_reg_bind_text(st, 2, s->experiment);
    kiln_reg_bind_text(st, 3, s->metric);
    kiln_reg_bind_text(st, 4, s->direction);
    kiln_reg_bind_text(st, 5, s->created ? s->created : now);
    kiln_reg_bind_text(st, 6, s->spec);
    int rc = reg_step(st);
    reg_finalize(st);
    if (rc == REG_ECONSTRAINT)
        return kiln_error(KILN_ERR_INVALID, "%s: a study named '%s' exists already (resume it with "
                          "kiln tune --resume %s, or pick another --study name)",
                          kiln_registry_path(reg), s->name, s->name);
    return rc == REG_DONE ? KILN_OK : kiln_reg_fail(reg, rc, "creating a study");
}

kiln_status kiln_registry_studies(kiln_registry *reg, const char *name, kiln_registry_study_fn fn,
                                  void *ctx) {
    reg_stmt *st;
    kiln_status e = prep(reg,
                         "SELECT s.name, s.experiment, s.metric, s.direction, s.created, s.spec,"
                         " count(t.number), sum(CASE WHEN t.state = 'finished' THEN 1 ELSE 0 END),"
                         " sum(CASE WHEN t.state = 'pruned' THEN 1 ELSE 0 END),"
                         " sum(CASE WHEN t.state = 'failed' THEN 1 ELSE 0 END),"
                         " sum(CASE WHEN t.state = 'running' THEN 1 ELSE 0 END),"
                         " CASE s.direction WHEN 'maximize' THEN max(CASE t.state WHEN 'finished'"
                         " THEN t.value END) ELSE min(CASE t.state WHEN 'finished' THEN t.value END)"
                         " END FROM studies s LEFT JOIN trials t ON t.sid = s.sid"
                         " WHERE CAST(?1 AS TEXT) IS NULL OR s.name = ?1"
                         " GROUP BY s.sid ORDER BY s.sid DESC",
                         &st);
    if (e) return e;
    kiln_reg_bind_text(st, 1, name);
    int rc, found = 0;
    while ((rc = reg_step(st)) == REG_ROW) {
        found = 1;
        kiln_registry_study s = {
            .name = kiln_reg_col_text(st, 0), .experiment = kiln_reg_col_text(st, 1),
            .metric = kiln_reg_col_text(st, 2), .direction = kiln_reg_col_text(st, 3),
            .created = kiln_reg_col_text(st, 4), .spec = kiln_reg_col_text(st, 5),
            .trials = reg_col_int64(st, 6), .finished = reg_col_int64(st, 7),
            .pruned = reg_col_int64(st, 8), .failed = reg_col_int64(st, 9),
            .running = reg_col_int64(st, 10),
            .has_best = !reg_col_null(st, 11),
            .best = reg_col_double(st, 11)};
        if (fn(&s, ctx)) break;
    }
    reg_finalize(st);
    if (rc != REG_ROW && rc != REG_DONE) return kiln_reg_fail(reg, rc, "reading studies");
    if (name && !found)
        return kiln_error(KILN_ERR_NOTFOUND, "%s: no study named '%s' (kiln tune show lists them)",
                          kiln_registry_path(reg), name);
    return KILN_OK;
}

kiln_status kiln_registry_trial_put(kiln_registry *reg, const char *study, const kiln_registry_trial *t) {
    kiln_status e = kiln_reg_writable(reg, "record a trial");
    if (e) return e;
    reg_stmt *st;
    if ((e = prep(reg,
                  "INSERT INTO trials(sid, number, state, run, params, x, value, resource,"
                  " start_time, end_time, message) SELECT sid, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                  " ?11 FROM studies WHERE name = ?1 ON CONFLICT(sid, number) DO UPDATE SET"
                  " state = excluded.state, run = excluded.run, params = excluded.params,"
                  " x = excluded.x, value = excluded.value, resource = excluded.resource,"
                  " start_time = excluded.start_time, end_time = excluded.end_time,"
                  " message = excluded.message",
                  &st)))
        return e;
    kiln_reg_bind_text(st, 1, study);
    reg_bind_int64(st, 2, t->number);
    kiln_reg_bind_text(st, 3, t->state);
    kiln_reg_bind_text(st, 4, t->run);
    kiln_reg_bind_text(st, 5, t->params);
    kiln_reg_bind_text(st, 6, t->x);
    if (t->has_value) reg_bind_double(st, 7, t->value);
    if (t->has_resource) reg_bind_double(st, 8, t->resource);
    kiln_reg_bind_text(st, 9, t->start_time);
    kiln_reg_bind_text(st, 10, t->end_time);
    kiln_reg_bind_text(st, 11, t->message);
    int rc = reg_step(st);
    int changed = reg_changes(reg->db);
    reg_finalize(st);
    if (rc != REG_DONE) return kiln_reg_fail(reg, rc, "recording a trial");
    if (!changed) return kiln_error(KILN_ERR_NOTFOUND, "%s: no study named '%s'", kiln_registry_path(reg), study);
    return KILN_OK;
}

kiln_status kiln_registry_trials(kiln_registry *reg, const char *study, kiln_registry_trial_fn fn,
                                 void *ctx) {
    reg_stmt *st;
    kiln_status e = prep(reg,
                         "SELECT number, state, run, params, x, value, resource, start_time, end_time,"
                         " message FROM trials WHERE sid = (SELECT sid FROM studies WHERE name = ?1)"
                         " ORDER BY number",
                         &st);
    if (e) return e;
    kiln_reg_bind_text(st, 1, study);
    int rc;
    while ((rc = reg_step(st)) == REG_ROW) {
        kiln_registry_trial t = {
            .number = reg_col_int64(st, 0), .state = kiln_reg_col_text(st, 1),
            .run = kiln_reg_col_text(st, 2), .params = kiln_reg_col_text(st, 3),
            .x = kiln_reg_col_text(st, 4), .has_value = !reg_col_null(st, 5),
            .value = reg_col_double(st, 5),
            .has_resource = !reg_col_null(st, 6),
            .resource = reg_col_double(st, 6), .start_time = kiln_reg_col_text(st, 7),
            .end_time = kiln_reg_col_text(st, 8), .message = kiln_reg_col_text(st, 9)};
        if (fn(&t, ctx)) break;
    }
    reg_finalize(st);
    return rc == REG_ROW || rc == REG_DONE ? KILN_OK : kiln_reg_fail(reg, rc, "reading trials");
}

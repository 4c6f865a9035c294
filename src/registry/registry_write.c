/* registry_write.c — rows from what a run's files say: the run (run.json), its params
 * (config.yaml) and its metric points (metrics.jsonl). Used by the run's own writer
 * (registry_run.c) and by the importer (registry_sync.c), so both record a run the same way.
 *
 * Every function here runs inside the caller's transaction and only writes; a statement that
 * fails leaves the transaction for the caller to roll back.
 *
 * Params: config.yaml is flattened into key paths the way --set names them: maps by ".key",
 * sequences by "[i]", so `optimizer: {adam: {learning_rate: 0.001}}` gives
 * optimizer.adam.learning_rate = "0.001" (number 0.001) and the second layer's units
 * model.layers[1].dense.units. A sequence of scalars stays one param written as a YAML flow list
 * ("[1, 28, 28]", "[accuracy]"): that is how a reader thinks of input shapes and metric lists.
 * A null scalar is "null"; an empty map or list "{}" / "[]". Unquoted scalars that parse as YAML
 * numbers also get their number.
 *
 * Points on a database server go in multi-row upserts of up to REG_PENDING_MAX (one round trip
 * for many points instead of one each); a later point for the same run, name and step replaces
 * a waiting one, as the upsert would (PostgreSQL refuses one statement touching a row twice).
 * So do a run's params (PARAMS_PER_STATEMENT a statement, a key twice kept once) and the latest
 * values of a batch of points: an import then costs a dozen round trips a run, not one per
 * param (40 and more for a typical config).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/config.h"
#include "registry/registry_internal.h"
#include "run/run_internal.h"

#define KEY_MAX 1024 /* longer key paths are not params anyone filters on; they are left out */

void kiln_reg_metric_name(kiln_split split, const char *name, char *out, size_t cap) {
    static const char *const prefix[] = {"", "val_", "test_"};
    snprintf(out, cap, "%s%s", (unsigned)split < 3 ? prefix[split] : "", name);
}

static kiln_status experiment_id(kiln_registry *reg, const char *name, int64_t *eid) {
    reg_stmt *st = kiln_reg_stmt(reg, REG_EXPERIMENT_GET);
    if (!st) return KILN_ERR_IO;
    kiln_reg_bind_text(st, 1, name);
    int rc = reg_step(st);
    if (rc == REG_ROW) {
        *eid = reg_col_int64(st, 0);
        reg_reset(st);
        return KILN_OK;
    }
    reg_reset(st);
    if (rc != REG_DONE) return kiln_reg_fail(reg, rc, "reading experiments");
    if (!(st = kiln_reg_stmt(reg, REG_EXPERIMENT_ADD))) return KILN_ERR_IO;
    char now[24];
    kiln_run_iso_time((long long)time(NULL), now);
    kiln_reg_bind_text(st, 1, name);
    kiln_reg_bind_text(st, 2, now);
    rc = reg_step(st);
    if (rc == REG_ROW) *eid = reg_col_int64(st, 0);
    reg_reset(st);
    return rc == REG_ROW ? KILN_OK : kiln_reg_fail(reg, rc, "adding an experiment");
}

kiln_status kiln_reg_put_run(kiln_registry *reg, const char *id, const kiln_run_info *info,
                             const char *stamp, int64_t *rid) {
    int64_t eid = 0;
    kiln_status s = experiment_id(reg, info->experiment ? info->experiment : "default", &eid);
    if (s) return s;
    const char *status = kiln_run_state_name(info->status), *message = info->message;
    const char *end = info->end_time;
    char path[4200], last[24], why[512];
    if (info->status == KILN_RUN_RUNNING && !kiln_reg_run_path(reg, id, path, sizeof path) &&
        !kiln_reg_run_alive(path, info->host, info->pid)) {
        kiln_reg_last_sign(path, last);
        snprintf(why, sizeof why,
                 "the process (pid %ld on %s) ended without closing the run: it crashed or was "
                 "killed",
                 info->pid, info->host ? info->host : "an unknown host");
        status = "failed", message = why, end = last[0] ? last : NULL;
    }
    char seed[24];
    if (info->has_seed) snprintf(seed, sizeof seed, "%llu", (unsigned long long)info->seed);
    reg_stmt *st = kiln_reg_stmt(reg, REG_RUN_UPSERT);
    if (!st) return KILN_ERR_IO;
    kiln_reg_bind_text(st, 1, id);
    reg_bind_int64(st, 2, eid);
    kiln_reg_bind_text(st, 3, info->name ? info->name : id);
    kiln_reg_bind_text(st, 4, status);
    kiln_reg_bind_text(st, 5, message);
    kiln_reg_bind_text(st, 6, info->start_time ? info->start_time : "");
    kiln_reg_bind_text(st, 7, end);
    kiln_reg_bind_text(st, 8, info->host);
    reg_bind_int64(st, 9, info->pid);
    kiln_reg_bind_text(st, 10, info->kiln_version);
    kiln_reg_bind_text(st, 11, info->has_seed ? seed : NULL);
    kiln_reg_bind_text(st, 12, info->config_hash);
    kiln_reg_bind_text(st, 13, info->command);
    reg_bind_int64(st, 14, info->epochs_completed);
    reg_bind_int64(st, 15, info->steps);
    kiln_reg_bind_text(st, 16, info->checkpoint);
    kiln_reg_bind_text(st, 17, stamp);
    int rc = reg_step(st);
    if (rc == REG_ROW) *rid = reg_col_int64(st, 0);
    reg_reset(st);
    return rc == REG_ROW ? KILN_OK : kiln_reg_fail(reg, rc, "recording a run");
}

/* ---- params ---- */

/* A param waiting for a multi-row statement (a database server). */
typedef struct {
    char *key, *value;
    double num;
    int has_num;
} param_row;

typedef struct {
    kiln_registry *reg;
    reg_stmt *st; /* one statement per param (SQLite) */
    int64_t rid;
    kiln_status s;
    param_row *rows; /* or these, sent together (a server: a round trip per statement) */
    int n, cap, batch;
} flattener;

static void keep_param(flattener *f, const char *key, const char *value, int has_num,
                       double num) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->rows[i].key, key)) { /* a key twice: the later wins, as an upsert */
            char *v = strdup(value);
            if (!v) goto oom;
            free(f->rows[i].value);
            f->rows[i].value = v, f->rows[i].num = num, f->rows[i].has_num = has_num;
            return;
        }
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 64;
        param_row *r = realloc(f->rows, (size_t)cap * sizeof *r);
        if (!r) goto oom;
        f->rows = r, f->cap = cap;
    }
    param_row *r = &f->rows[f->n];
    r->key = strdup(key), r->value = strdup(value), r->num = num, r->has_num = has_num;
    if (!r->key || !r->value) {
        free(r->key), free(r->value);
        goto oom;
    }
    f->n++;
    return;
oom:
    f->s = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", f->reg->path);
}

/* Prepares "INSERT INTO <into> VALUES (?, ...) x rows <tail>": a multi-row upsert of `cols`
 * values per row, one statement (on a database server one round trip). */
static kiln_status prepare_rows(kiln_registry *reg, const char *into, int rows, int cols,
                                const char *tail, const char *what, reg_stmt **st) {
    *st = NULL;
    char *sql = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&sql, &len);
    if (!o) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
    fprintf(o, "INSERT INTO %s VALUES ", into);
    for (int i = 0; i < rows; i++) {
        fputs(i ? ", (?" : "(?", o);
        for (int c = 1; c < cols; c++) fputs(", ?", o);
        fputc(')', o);
    }
    fprintf(o, " %s", tail);
    if (fclose(o) != 0 || !sql) {
        free(sql);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
    }
    int rc = reg_prepare(reg->db, sql, st);
    free(sql);
    return rc == REG_OK ? KILN_OK : kiln_reg_fail(reg, rc, what);
}

#define PARAMS_PER_STATEMENT 250 /* 4 parameters each: 1000 in a statement */

/* The kept params in multi-row upserts. */
static kiln_status send_params(flattener *f) {
    for (int at = 0; at < f->n && !f->s; at += PARAMS_PER_STATEMENT) {
        int n = f->n - at < PARAMS_PER_STATEMENT ? f->n - at : PARAMS_PER_STATEMENT;
        reg_stmt *st = NULL;
        if ((f->s = prepare_rows(f->reg, "params(rid, key, value, num)", n, 4,
                                 "ON CONFLICT(rid, key) DO UPDATE SET value = excluded.value,"
                                 " num = excluded.num",
                                 "recording params", &st)))
            return f->s;
        for (int i = 0, k = 1; i < n; i++) {
            const param_row *r = &f->rows[at + i];
            reg_bind_int64(st, k++, f->rid);
            reg_bind_text(st, k++, r->key);
            reg_bind_text(st, k++, r->value);
            if (r->has_num)
                reg_bind_double(st, k++, r->num);
            else
                reg_bind_null(st, k++);
        }
        f->s = kiln_reg_step_done(f->reg, st, "recording params");
        reg_finalize(st);
    }
    return f->s;
}

static void add_param(flattener *f, const char *key, const char *value, const kiln_cfg *scalar) {
    if (f->s) return;
    double num;
    if (f->batch) {
        int has_num = scalar && kiln_cfg_parse_num(scalar, &num) == 0;
        keep_param(f, key, value, has_num, has_num ? num : 0);
        return;
    }
    reg_bind_int64(f->st, 1, f->rid);
    kiln_reg_bind_text(f->st, 2, key);
    kiln_reg_bind_text(f->st, 3, value);
    if (scalar && kiln_cfg_parse_num(scalar, &num) == 0)
        reg_bind_double(f->st, 4, num);
    else
        reg_bind_null(f->st, 4);
    f->s = kiln_reg_step_done(f->reg, f->st, "recording a param");
}

static const char *scalar_text(const kiln_cfg *c) {
    return c->text[0] || c->quoted ? c->text : "null";
}

/* A sequence of scalars as one flow list; NULL when an item is not a scalar (or no memory). */
static char *flow_list(const kiln_cfg *seq) {
    size_t len = 3;
    for (int i = 0; i < seq->n_items; i++) {
        if (seq->items[i]->type != KILN_CFG_SCALAR) return NULL;
        len += 2 * strlen(scalar_text(seq->items[i])) + 6;
    }
    char *out = malloc(len), *p = out;
    if (!out) return NULL;
    *p++ = '[';
    for (int i = 0; i < seq->n_items; i++) {
        const kiln_cfg *c = seq->items[i];
        if (i) *p++ = ',', *p++ = ' ';
        if (c->quoted) *p++ = '"';
        for (const char *t = scalar_text(c); *t; t++) {
            if (c->quoted && (*t == '"' || *t == '\\')) *p++ = '\\';
            *p++ = *t;
        }
        if (c->quoted) *p++ = '"';
    }
    *p++ = ']', *p = 0;
    return out;
}

static void flatten(flattener *f, const kiln_cfg *c, char *key, size_t len) {
    if (f->s) return;
    if (c->type == KILN_CFG_SCALAR) {
        add_param(f, key, scalar_text(c), c);
        return;
    }
    if (c->n_items == 0) {
        add_param(f, key, c->type == KILN_CFG_MAP ? "{}" : "[]", NULL);
        return;
    }
    if (c->type == KILN_CFG_SEQ) {
        char *flow = flow_list(c);
        if (flow) {
            add_param(f, key, flow, NULL);
            free(flow);
            return;
        }
    }
    for (int i = 0; i < c->n_items && !f->s; i++) {
        const kiln_cfg *item = c->items[i];
        int n = c->type == KILN_CFG_MAP
                    ? snprintf(key + len, KEY_MAX - len, "%s%s", len ? "." : "", item->key)
                    : snprintf(key + len, KEY_MAX - len, "[%d]", i);
        if (n > 0 && len + (size_t)n < KEY_MAX) flatten(f, item, key, len + (size_t)n);
        key[len] = 0;
    }
}

kiln_status kiln_reg_put_params(kiln_registry *reg, int64_t rid, const char *config_path,
                                const char *hash) {
    reg_stmt *st = kiln_reg_stmt(reg, REG_PARAMS_CLEAR);
    if (!st) return KILN_ERR_IO;
    reg_bind_int64(st, 1, rid);
    kiln_status s = kiln_reg_step_done(reg, st, "clearing params");
    if (s) return s;
    kiln_cfg *cfg = NULL;
    if (config_path && kiln_config_load(config_path, &cfg) == KILN_OK) {
        flattener f = {.reg = reg, .rid = rid, .batch = reg->remote};
        char key[KEY_MAX] = "";
        if (!f.batch && !(f.st = kiln_reg_stmt(reg, REG_PARAM_ADD)))
            f.s = KILN_ERR_IO;
        else
            flatten(&f, cfg, key, 0);
        if (f.batch && !f.s) send_params(&f);
        for (int i = 0; i < f.n; i++) free(f.rows[i].key), free(f.rows[i].value);
        free(f.rows);
        kiln_cfg_free(cfg);
        if ((s = f.s)) return s;
    } else {
        kiln_error_clear(); /* a run without a readable config simply has no params */
    }
    if (!(st = kiln_reg_stmt(reg, REG_RUN_PARAMS_HASH))) return KILN_ERR_IO;
    reg_bind_int64(st, 1, rid);
    kiln_reg_bind_text(st, 2, hash ? hash : "");
    return kiln_reg_step_done(reg, st, "recording params");
}

/* ---- metrics ---- */

static kiln_status latest_one(kiln_registry *reg, int64_t rid, const char *name, int64_t step,
                              double value) {
    reg_stmt *st = kiln_reg_stmt(reg, REG_LATEST_ADD);
    if (!st) return KILN_ERR_IO;
    reg_bind_int64(st, 1, rid);
    reg_bind_text(st, 2, name);
    reg_bind_int64(st, 3, step);
    if (isnan(value))
        reg_bind_null(st, 4);
    else
        reg_bind_double(st, 4, value);
    return kiln_reg_step_done(reg, st, "recording a metric");
}

/* Every name of l in one upsert (a database server: one round trip); names in l are distinct,
 * which PostgreSQL needs of one statement. */
static kiln_status latest_all(kiln_registry *reg, int64_t rid, const reg_latest *l) {
    reg_stmt *st = NULL;
    kiln_status s = prepare_rows(reg, "latest_metrics(rid, name, step, value)", l->n, 4,
                                 "ON CONFLICT(rid, name) DO UPDATE SET step = excluded.step,"
                                 " value = excluded.value"
                                 " WHERE excluded.step >= latest_metrics.step",
                                 "recording metrics", &st);
    if (s) return s;
    for (int i = 0, k = 1; i < l->n; i++) {
        reg_bind_int64(st, k++, rid);
        reg_bind_text(st, k++, l->v[i].name);
        reg_bind_int64(st, k++, l->v[i].step);
        if (isnan(l->v[i].value))
            reg_bind_null(st, k++);
        else
            reg_bind_double(st, k++, l->v[i].value);
    }
    s = kiln_reg_step_done(reg, st, "recording metrics");
    reg_finalize(st);
    return s;
}

kiln_status kiln_reg_put_latest(kiln_registry *reg, int64_t rid, reg_latest *l) {
    kiln_status s = KILN_OK;
    if (reg->remote && l->n > 1)
        s = latest_all(reg, rid, l);
    else
        for (int i = 0; !s && i < l->n; i++)
            s = latest_one(reg, rid, l->v[i].name, l->v[i].step, l->v[i].value);
    l->n = 0;
    return s;
}

/* Keeps the point as its name's latest in l; 0, or -1 when l is full or the name too long. */
static int keep_latest(reg_latest *l, const char *name, int64_t step, double value) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name)) {
            if (step >= l->v[i].step) l->v[i].step = step, l->v[i].value = value;
            return 0;
        }
    if (l->n == (int)(sizeof l->v / sizeof *l->v) || strlen(name) >= sizeof l->v[0].name) return -1;
    strcpy(l->v[l->n].name, name);
    l->v[l->n].step = step, l->v[l->n].value = value;
    l->n++;
    return 0;
}

#define REG_PENDING_MAX 1000 /* 5 parameters each: a run writer's flush (256) is one statement */

typedef struct reg_pending {
    int n;
    struct {
        int64_t rid, step;
        double wall_time, value;
        char name[208];
    } v[REG_PENDING_MAX];
} reg_pending;

void kiln_reg_drop_points(kiln_registry *reg) {
    if (reg->pending) reg->pending->n = 0;
}

kiln_status kiln_reg_flush_points(kiln_registry *reg) {
    reg_pending *p = reg->pending;
    if (!p || !p->n) return KILN_OK;
    reg_stmt *st = NULL;
    kiln_status s = prepare_rows(reg, "metrics(rid, name, step, wall_time, value)", p->n, 5,
                                 "ON CONFLICT(rid, name, step) DO UPDATE SET"
                                 " wall_time = excluded.wall_time, value = excluded.value",
                                 "recording metrics", &st);
    if (s) return s;
    for (int i = 0, k = 1; i < p->n; i++) {
        reg_bind_int64(st, k++, p->v[i].rid);
        reg_bind_text(st, k++, p->v[i].name);
        reg_bind_int64(st, k++, p->v[i].step);
        reg_bind_double(st, k++, isfinite(p->v[i].wall_time) ? p->v[i].wall_time : 0);
        if (isnan(p->v[i].value))
            reg_bind_null(st, k++);
        else
            reg_bind_double(st, k++, p->v[i].value);
    }
    s = kiln_reg_step_done(reg, st, "recording metrics");
    reg_finalize(st);
    p->n = 0;
    return s;
}

/* Keeps the point for a multi-row statement (a database server). */
static kiln_status pend_point(kiln_registry *reg, int64_t rid, const char *name, int64_t step,
                              double wall_time, double value) {
    if (!reg->pending && !(reg->pending = calloc(1, sizeof *reg->pending)))
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
    reg_pending *p = reg->pending;
    for (int i = p->n - 1; i >= 0; i--)
        if (p->v[i].rid == rid && p->v[i].step == step && !strcmp(p->v[i].name, name)) {
            p->v[i].wall_time = wall_time, p->v[i].value = value;
            return KILN_OK;
        }
    if (p->n == REG_PENDING_MAX) {
        kiln_status s = kiln_reg_flush_points(reg);
        if (s) return s;
    }
    p->v[p->n].rid = rid, p->v[p->n].step = step;
    p->v[p->n].wall_time = wall_time, p->v[p->n].value = value;
    snprintf(p->v[p->n].name, sizeof p->v[p->n].name, "%s", name);
    p->n++;
    return KILN_OK;
}

kiln_status kiln_reg_put_point(kiln_registry *reg, int64_t rid, const char *name, int64_t step,
                               double wall_time, double value, reg_latest *latest) {
    if (reg->remote && strlen(name) < sizeof reg->pending->v[0].name) {
        kiln_status s = pend_point(reg, rid, name, step, wall_time, value);
        if (s || (latest && keep_latest(latest, name, step, value) == 0)) return s;
        return latest_one(reg, rid, name, step, value);
    }
    reg_stmt *st = kiln_reg_stmt(reg, REG_POINT_ADD);
    if (!st) return KILN_ERR_IO;
    reg_bind_int64(st, 1, rid);
    reg_bind_text(st, 2, name);
    reg_bind_int64(st, 3, step);
    reg_bind_double(st, 4, isfinite(wall_time) ? wall_time : 0);
    if (isnan(value))
        reg_bind_null(st, 5);
    else
        reg_bind_double(st, 5, value);
    kiln_status s = kiln_reg_step_done(reg, st, "recording a metric");
    if (s || (latest && keep_latest(latest, name, step, value) == 0)) return s;
    return latest_one(reg, rid, name, step, value);
}

kiln_status kiln_reg_set_offset(kiln_registry *reg, int64_t rid, int64_t offset) {
    reg_stmt *st = kiln_reg_stmt(reg, REG_RUN_OFFSET);
    if (!st) return KILN_ERR_IO;
    reg_bind_int64(st, 1, rid);
    reg_bind_int64(st, 2, offset);
    return kiln_reg_step_done(reg, st, "recording the metrics offset");
}

/* board_mlflow_runs.c — MLflow runs on kiln run folders (the store: board_mlflow.h):
 * runs/create, get, update, delete, restore, log-metric, log-parameter, log-batch, set-tag,
 * delete-tag, and metrics/get-history.
 *
 * Writes go through kiln/run.h, so a run the API writes is an ordinary kiln run: it is created
 * with kiln_run_create, followed by the registry (kiln_registry_follow_run keeps runs/kiln.db
 * current), and held open for writing while its status is RUNNING (a run that says running with
 * no writer is a crashed run to kiln). A run that has ended is opened for the duration of one
 * write and closed again. Metric keys map to kiln's splits: "val_X" is X of the validation split,
 * "test_X" X of the test split, anything else a train metric, so kiln's own metrics come back
 * under the names run.json and `kiln runs` give them. A metric's timestamp (ms) is its point's
 * wall_time; its step the point's step. Params are appended to config.yaml as "key": "value"
 * (YAML double-quoted, so any text round-trips) and, as in MLflow, cannot change once logged.
 * Tags, exact start/end times in ms and the deleted mark live in mlflow.json.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "board/board_mlflow.h"
#include "kiln/fileio.h"
#include "kiln/registry.h"

#define BATCH_MAX_METRICS 1000
#define BATCH_MAX_PARAMS  100
#define BATCH_MAX_TAGS    100
#define PARAM_VALUE_MAX   6000
#define KEY_MAX           250

/* ---- names and states ---- */

static const char *state_to_mlflow(kiln_run_state s) {
    switch (s) {
    case KILN_RUN_RUNNING:
        return "RUNNING";
    case KILN_RUN_FINISHED:
        return "FINISHED";
    case KILN_RUN_FAILED:
        return "FAILED";
    default:
        return "KILLED";
    }
}

static int state_from_mlflow(const char *s, kiln_run_state *out) {
    if (!strcmp(s, "RUNNING") || !strcmp(s, "SCHEDULED"))
        *out = KILN_RUN_RUNNING;
    else if (!strcmp(s, "FINISHED"))
        *out = KILN_RUN_FINISHED;
    else if (!strcmp(s, "FAILED"))
        *out = KILN_RUN_FAILED;
    else if (!strcmp(s, "KILLED"))
        *out = KILN_RUN_STOPPED;
    else
        return 0;
    return 1;
}

/* The MLflow key of kiln metric (split, name). */
static void metric_key(kiln_split split, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s%s",
             split == KILN_SPLIT_VALIDATION ? "val_"
             : split == KILN_SPLIT_TEST     ? "test_"
                                            : "",
             name);
}

/* The kiln (split, name) of an MLflow key. */
static const char *metric_split(const char *key, kiln_split *split) {
    if (!strncmp(key, "val_", 4) && key[4]) return *split = KILN_SPLIT_VALIDATION, key + 4;
    if (!strncmp(key, "test_", 5) && key[5]) return *split = KILN_SPLIT_TEST, key + 5;
    return *split = KILN_SPLIT_TRAIN, key;
}

static int plain(const char *s, size_t n) {
    if (n == 0 || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '\\' || s[i] == '/') return 0;
    return 1;
}

/* ---- loading ---- */

static void kv_add(mlf_kv **kv, int *n, const char *k, const char *v) {
    mlf_kv *x = realloc(*kv, (size_t)(*n + 1) * sizeof **kv);
    if (!x) return;
    *kv = x;
    x[*n].key = strdup(k), x[*n].value = strdup(v ? v : "");
    if (!x[*n].key || !x[*n].value) {
        free(x[*n].key), free(x[*n].value);
        return;
    }
    (*n)++;
}

static int kv_cmp(const void *a, const void *b) {
    return strcmp(((const mlf_kv *)a)->key, ((const mlf_kv *)b)->key);
}

void mlf_run_free(mlf_run *r) {
    for (int i = 0; i < r->n_params; i++) free(r->params[i].key), free(r->params[i].value);
    for (int i = 0; i < r->n_tags; i++) free(r->tags[i].key), free(r->tags[i].value);
    for (int i = 0; i < r->n_metrics; i++) free(r->metrics[i].key);
    free(r->params), free(r->tags), free(r->metrics);
    free(r->run_name), free(r->user_id);
    memset(r, 0, sizeof *r);
}

static const char *tag_of(const mlf_run *r, const char *key) {
    for (int i = 0; i < r->n_tags; i++)
        if (!strcmp(r->tags[i].key, key)) return r->tags[i].value;
    return NULL;
}

/* The latest point (highest step; the later one on a tie) of every series. */
static void load_metrics(kiln_board *b, const char *exp, const char *run, mlf_run *out) {
    pthread_mutex_lock(&b->mu);
    board_run *br = board_find(b, exp, run);
    pthread_mutex_unlock(&b->mu);
    if (!br) return;
    pthread_mutex_lock(&br->m.mu);
    if (board_metrics_update(&br->m, br->dir))
        kiln_error_clear();
    else if (br->m.n_series) {
        out->metrics = calloc((size_t)br->m.n_series, sizeof *out->metrics);
        for (int i = 0; out->metrics && i < br->m.n_series; i++) {
            const board_series *s = &br->m.series[i];
            if (!s->n) continue;
            char key[512];
            metric_key(s->split, s->name, key, sizeof key);
            mlf_metric *m = &out->metrics[out->n_metrics];
            if (!(m->key = strdup(key))) continue;
            m->value = s->value[s->n - 1];
            m->step = s->step[s->n - 1];
            m->timestamp = (int64_t)llround(s->wall[s->n - 1] * 1000);
            out->n_metrics++;
        }
    }
    pthread_mutex_unlock(&br->m.mu);
}

int mlf_run_load(kiln_board *b, const char *key, mlf_run *out) {
    memset(out, 0, sizeof *out);
    const char *slash = strchr(key, '/');
    if (!slash || strchr(slash + 1, '/') || !plain(key, (size_t)(slash - key)) ||
        !plain(slash + 1, strlen(slash + 1)) || strlen(key) >= sizeof out->key)
        return 0;
    snprintf(out->key, sizeof out->key, "%s", key);
    snprintf(out->exp_folder, sizeof out->exp_folder, "%.*s", (int)(slash - key), key);
    snprintf(out->dir, sizeof out->dir, "%s/%s", b->runs_dir, key);
    kiln_rundir *rd = NULL;
    if (kiln_run_open(out->dir, KILN_RUN_READ, &rd)) {
        kiln_error_clear();
        return 0;
    }
    kiln_run_info info = kiln_run_get_info(rd);
    mlf_hex(key, out->run_id, sizeof out->run_id);
    if (!strcmp(out->exp_folder, "Default"))
        snprintf(out->exp_id, sizeof out->exp_id, "0");
    else
        mlf_hex(out->exp_folder, out->exp_id, sizeof out->exp_id);
    out->status = state_to_mlflow(info.status);
    if (info.status == KILN_RUN_RUNNING && !kiln_run_is_active(rd)) out->status = "FAILED";
    out->start_time = mlf_iso_ms(info.start_time);
    out->end_time = mlf_iso_ms(info.end_time);
    char path[4200];
    snprintf(path, sizeof path, "%s/mlflow.json", out->dir);
    cJSON *j = mlf_read_json(path);
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(j, "tags")) {
        if (cJSON_IsString(t)) kv_add(&out->tags, &out->n_tags, t->string, t->valuestring);
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "start_time");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(j, "end_time");
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(j, "user_id");
    if (cJSON_IsNumber(st)) out->start_time = (int64_t)st->valuedouble;
    if (cJSON_IsNumber(et) && info.end_time) out->end_time = (int64_t)et->valuedouble;
    out->deleted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "deleted"));
    out->user_id = strdup(cJSON_IsString(user) ? user->valuestring : "");
    const char *name = tag_of(out, "mlflow.runName");
    out->run_name = strdup(name ? name : info.name ? info.name : info.id);
    if (!name) kv_add(&out->tags, &out->n_tags, "mlflow.runName", out->run_name);
    if (out->user_id && out->user_id[0] && !tag_of(out, "mlflow.user"))
        kv_add(&out->tags, &out->n_tags, "mlflow.user", out->user_id);
    cJSON_Delete(j);
    kiln_run_close(rd);
    snprintf(path, sizeof path, "%s/config.yaml", out->dir);
    board_kv *kv = NULL;
    int n = 0;
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (board_params_read(path, &kv, &n))
            kiln_error_clear();
        else
            for (int i = 0; i < n; i++)
                kv_add(&out->params, &out->n_params, kv[i].key, kv[i].value);
        board_params_free(kv, n);
    }
    if (out->n_params > 0) qsort(out->params, (size_t)out->n_params, sizeof *out->params, kv_cmp);
    if (out->n_tags > 0) qsort(out->tags, (size_t)out->n_tags, sizeof *out->tags, kv_cmp);
    load_metrics(b, out->exp_folder, slash + 1, out);
    return 1;
}

/* ---- rendering ---- */

void mlf_run_render_info(const mlf_run *r, kiln_sbuf *s) {
    kiln_sbuf_puts(s, "{\"run_id\":");
    kiln_sbuf_json_str(s, r->run_id);
    kiln_sbuf_puts(s, ",\"run_uuid\":");
    kiln_sbuf_json_str(s, r->run_id);
    kiln_sbuf_puts(s, ",\"run_name\":");
    kiln_sbuf_json_str(s, r->run_name ? r->run_name : "");
    kiln_sbuf_puts(s, ",\"experiment_id\":");
    kiln_sbuf_json_str(s, r->exp_id);
    kiln_sbuf_puts(s, ",\"user_id\":");
    kiln_sbuf_json_str(s, r->user_id ? r->user_id : "");
    kiln_sbuf_printf(s, ",\"status\":\"%s\",\"start_time\":%lld", r->status,
                     (long long)r->start_time);
    if (r->end_time >= 0) kiln_sbuf_printf(s, ",\"end_time\":%lld", (long long)r->end_time);
    kiln_sbuf_puts(s, ",\"artifact_uri\":");
    char uri[PATH_MAX + 16], abs[PATH_MAX];
    snprintf(uri, sizeof uri, "%s/artifacts", realpath(r->dir, abs) ? abs : r->dir);
    kiln_sbuf_json_str(s, uri);
    kiln_sbuf_printf(s, ",\"lifecycle_stage\":\"%s\"}", r->deleted ? "deleted" : "active");
}

void mlf_run_render(const mlf_run *r, kiln_sbuf *s) {
    kiln_sbuf_puts(s, "{\"info\":");
    mlf_run_render_info(r, s);
    kiln_sbuf_puts(s, ",\"data\":{\"metrics\":[");
    for (int i = 0; i < r->n_metrics; i++) {
        kiln_sbuf_puts(s, i ? ",{\"key\":" : "{\"key\":");
        kiln_sbuf_json_str(s, r->metrics[i].key);
        kiln_sbuf_puts(s, ",\"value\":");
        mlf_json_double(s, r->metrics[i].value);
        kiln_sbuf_printf(s, ",\"timestamp\":%lld,\"step\":%lld}",
                         (long long)r->metrics[i].timestamp, (long long)r->metrics[i].step);
    }
    kiln_sbuf_puts(s, "],\"params\":");
    mlf_json_kv_list(s, r->params, r->n_params);
    kiln_sbuf_puts(s, ",\"tags\":");
    mlf_json_kv_list(s, r->tags, r->n_tags);
    kiln_sbuf_puts(s, "},\"inputs\":{}}");
}

static void answer_run(kiln_board *b, const char *key, kiln_http_response *resp, int info_only) {
    mlf_run r;
    if (!mlf_run_load(b, key, &r)) {
        mlf_error(resp, "INTERNAL_ERROR", "run %s cannot be read back", key);
        return;
    }
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, info_only ? "{\"run_info\":" : "{\"run\":");
    if (info_only)
        mlf_run_render_info(&r, &s);
    else
        mlf_run_render(&r, &s);
    kiln_sbuf_putc(&s, '}');
    mlf_run_free(&r);
    kiln_http_body_sbuf(resp, &s);
}

const char *mlf_run_key(kiln_board *b, const mlf_req *r, kiln_http_response *resp, char *key,
                        size_t cap) {
    const char *id = mlf_str(r, "run_id");
    if (!id || !*id) id = mlf_str(r, "run_uuid");
    if (!id || !*id) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE",
                  "Missing value for required parameter 'run_id'.");
        return NULL;
    }
    char path[4200];
    struct stat st;
    const char *slash;
    if (!mlf_unhex(id, key, cap) || !(slash = strchr(key, '/')) || strchr(slash + 1, '/') ||
        !plain(key, (size_t)(slash - key)) || !plain(slash + 1, strlen(slash + 1)) ||
        snprintf(path, sizeof path, "%s/%s/run.json", b->runs_dir, key) >= (int)sizeof path ||
        stat(path, &st) != 0) {
        mlf_error(resp, "RESOURCE_DOES_NOT_EXIST", "Run '%s' not found", id);
        return NULL;
    }
    return key;
}

/* ---- writers ---- */

static mlf_open_run *find_open(board_mlflow *m, const char *key) {
    for (mlf_open_run *o = m->open; o; o = o->next)
        if (!strcmp(o->key, key)) return o;
    return NULL;
}

static void hold(board_mlflow *m, const char *key, kiln_rundir *run) {
    mlf_open_run *o = calloc(1, sizeof *o);
    if (!o) {
        kiln_run_close(run);
        return;
    }
    snprintf(o->key, sizeof o->key, "%s", key);
    o->run = run;
    o->next = m->open;
    m->open = o;
}

static void release(board_mlflow *m, const char *key) {
    for (mlf_open_run **p = &m->open; *p; p = &(*p)->next)
        if (!strcmp((*p)->key, key)) {
            mlf_open_run *o = *p;
            *p = o->next;
            kiln_run_close(o->run);
            free(o);
            return;
        }
}

void mlf_runs_close_all(board_mlflow *m) {
    while (m->open) release(m, m->open->key);
}

/* The run open for writing (held when it is running): NULL after answering. */
static kiln_rundir *writer(kiln_board *b, const char *key, kiln_http_response *resp) {
    mlf_open_run *o = find_open(b->mlflow, key);
    if (o) return o->run;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", b->runs_dir, key);
    kiln_rundir *run = NULL;
    if (kiln_run_open(dir, KILN_RUN_WRITE, &run)) {
        mlf_error(resp, "INVALID_STATE", "run %s cannot be written: %s", key, kiln_last_error());
        return NULL;
    }
    kiln_registry_follow_run(run, 0);
    hold(b->mlflow, key, run);
    return run;
}

/* After a write: a run that is not running is closed again. */
static void settle(kiln_board *b, const char *key) {
    mlf_open_run *o = find_open(b->mlflow, key);
    if (o && kiln_run_get_info(o->run).status != KILN_RUN_RUNNING) release(b->mlflow, key);
}

static cJSON *read_meta(const char *runs_dir, const char *key, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s/mlflow.json", runs_dir, key);
    cJSON *j = mlf_read_json(path);
    if (!j) j = cJSON_CreateObject();
    if (j && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "tags"))) {
        cJSON_DeleteItemFromObject(j, "tags");
        cJSON_AddObjectToObject(j, "tags");
    }
    return j;
}

static void set_num(cJSON *j, const char *k, double v) {
    cJSON_DeleteItemFromObject(j, k);
    cJSON_AddNumberToObject(j, k, v);
}

static int is_deleted(kiln_board *b, const char *key) {
    char path[4200];
    cJSON *j = read_meta(b->runs_dir, key, path, sizeof path);
    int d = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "deleted"));
    cJSON_Delete(j);
    return d;
}

static int check_key(const char *what, const char *k, kiln_http_response *resp) {
    size_t n = k ? strlen(k) : 0;
    if (n == 0 || n > KEY_MAX) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "Invalid %s name: '%s' (1 to %d bytes)", what,
                  k ? k : "", KEY_MAX);
        return 0;
    }
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        if (*p < 0x20) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE", "Invalid %s name: control character", what);
            return 0;
        }
    return 1;
}

/* ---- tags ---- */

static int put_tags(kiln_board *b, const char *key, const cJSON *list, const char *del,
                    kiln_http_response *resp) {
    char path[4200];
    cJSON *j = read_meta(b->runs_dir, key, path, sizeof path);
    if (!j) return mlf_error(resp, "INTERNAL_ERROR", "out of memory"), 0;
    cJSON *tags = cJSON_GetObjectItemCaseSensitive(j, "tags");
    if (del) {
        if (!cJSON_GetObjectItemCaseSensitive(tags, del)) {
            cJSON_Delete(j);
            mlf_error(resp, "RESOURCE_DOES_NOT_EXIST", "No tag with name: %s in run with id %s",
                      del, key);
            return 0;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(tags, del);
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, list) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(t, "key");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, "value");
        if (!cJSON_IsString(k) || !check_key("tag", k->valuestring, resp)) {
            if (!cJSON_IsString(k)) mlf_error(resp, "INVALID_PARAMETER_VALUE", "a tag has no key");
            cJSON_Delete(j);
            return 0;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(tags, k->valuestring);
        cJSON_AddStringToObject(tags, k->valuestring, cJSON_IsString(v) ? v->valuestring : "");
    }
    kiln_status s = mlf_write_json(path, j);
    cJSON_Delete(j);
    if (s) return mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error()), 0;
    return 1;
}

/* ---- params ---- */

static void yaml_quoted(kiln_sbuf *s, const char *t) {
    kiln_sbuf_putc(s, '"');
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
        if (*p == '"' || *p == '\\')
            kiln_sbuf_printf(s, "\\%c", *p);
        else if (*p == '\n')
            kiln_sbuf_puts(s, "\\n");
        else if (*p == '\t')
            kiln_sbuf_puts(s, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            kiln_sbuf_printf(s, "\\x%02x", *p);
        else
            kiln_sbuf_putc(s, (char)*p);
    }
    kiln_sbuf_putc(s, '"');
}

/* Appends the params of list ([{"key","value"}]) that the run lacks to config.yaml; one whose key
 * is there with another value is INVALID_PARAMETER_VALUE (MLflow's params are immutable). */
static int put_params(kiln_board *b, const char *key, const cJSON *list, kiln_http_response *resp) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/config.yaml", b->runs_dir, key);
    board_kv *kv = NULL;
    int n = 0;
    struct stat st;
    if (stat(path, &st) == 0 && board_params_read(path, &kv, &n)) {
        mlf_error(resp, "INVALID_STATE", "%s", kiln_last_error());
        return 0;
    }
    kiln_sbuf add = KILN_SBUF_INIT;
    const cJSON *p;
    int ok = 1;
    cJSON_ArrayForEach(p, list) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(p, "key");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "value");
        if (!cJSON_IsString(k) || !check_key("param", k->valuestring, resp)) {
            if (!cJSON_IsString(k))
                mlf_error(resp, "INVALID_PARAMETER_VALUE", "a param has no key");
            ok = 0;
            break;
        }
        char num[64];
        const char *val = cJSON_IsString(v) ? v->valuestring : "";
        if (cJSON_IsNumber(v)) {
            snprintf(num, sizeof num, "%.17g", v->valuedouble);
            val = num;
        }
        if (strlen(val) > PARAM_VALUE_MAX) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE", "Param value for '%s' is over %d bytes",
                      k->valuestring, PARAM_VALUE_MAX);
            ok = 0;
            break;
        }
        int found = 0;
        for (int i = 0; i < n && !found; i++)
            if (!strcmp(kv[i].key, k->valuestring)) {
                found = 1;
                if (strcmp(kv[i].value, val)) {
                    mlf_error(resp, "INVALID_PARAMETER_VALUE",
                              "Changing param values is not allowed. Param with key='%s' was "
                              "already logged with value='%s' for run ID='%s'. Attempted "
                              "logging new value '%s'.",
                              k->valuestring, kv[i].value, key, val);
                    ok = 0;
                }
            }
        if (!ok) break;
        if (found) continue;
        yaml_quoted(&add, k->valuestring);
        kiln_sbuf_puts(&add, ": ");
        yaml_quoted(&add, val);
        kiln_sbuf_putc(&add, '\n');
        board_kv *nkv = realloc(kv, (size_t)(n + 1) * sizeof *kv);
        if (!nkv) break;
        kv = nkv;
        kv[n].key = strdup(k->valuestring), kv[n].value = strdup(val);
        n++;
    }
    board_params_free(kv, n);
    if (ok && add.len) {
        void *old = NULL;
        size_t len = 0;
        if (stat(path, &st) == 0 && kiln_file_read_all(path, &old, &len, 64u << 20)) ok = 0;
        kiln_sbuf all = KILN_SBUF_INIT;
        if (ok) {
            if (len) kiln_sbuf_put(&all, old, len);
            if (len && ((char *)old)[len - 1] != '\n') kiln_sbuf_putc(&all, '\n');
            kiln_sbuf_put(&all, add.data, add.len);
            if (all.failed || kiln_file_write_atomic(path, all.data, all.len)) ok = 0;
        }
        free(old);
        kiln_sbuf_free(&all);
        if (!ok) mlf_error(resp, "INTERNAL_ERROR", "writing %s: %s", path, kiln_last_error());
    }
    kiln_sbuf_free(&add);
    return ok;
}

/* ---- metrics ---- */

static int number_of(const cJSON *v, double *out) {
    if (cJSON_IsNumber(v)) return *out = v->valuedouble, 1;
    if (!cJSON_IsString(v)) return 0;
    const char *s = v->valuestring;
    if (!strcmp(s, "NaN")) return *out = NAN, 1;
    if (!strcmp(s, "Infinity")) return *out = INFINITY, 1;
    if (!strcmp(s, "-Infinity")) return *out = -INFINITY, 1;
    char *end;
    *out = strtod(s, &end);
    return *s && !*end;
}

static int64_t int_of(const cJSON *v, int64_t dflt, int *bad) {
    double d;
    if (!v || cJSON_IsNull(v)) return dflt;
    if (!number_of(v, &d) || d != floor(d) || !(fabs(d) < 9.2e18)) return *bad = 1, dflt;
    return (int64_t)d;
}

/* Checks every metric of list first, then logs them: a bad one logs none. */
static int put_metrics(kiln_rundir *run, const cJSON *list, kiln_http_response *resp) {
    const cJSON *m;
    cJSON_ArrayForEach(m, list) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(m, "key");
        double v;
        int bad = 0;
        if (!cJSON_IsString(k) || !check_key("metric", k->valuestring, resp)) {
            if (!cJSON_IsString(k))
                mlf_error(resp, "INVALID_PARAMETER_VALUE", "a metric has no key");
            return 0;
        }
        if (!number_of(cJSON_GetObjectItemCaseSensitive(m, "value"), &v)) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE",
                      "Missing or invalid value for metric '%s' (a number)", k->valuestring);
            return 0;
        }
        int_of(cJSON_GetObjectItemCaseSensitive(m, "timestamp"), 0, &bad);
        int_of(cJSON_GetObjectItemCaseSensitive(m, "step"), 0, &bad);
        if (bad) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE",
                      "metric '%s': timestamp and step must be integers", k->valuestring);
            return 0;
        }
    }
    cJSON_ArrayForEach(m, list) {
        int bad = 0;
        double v = 0;
        number_of(cJSON_GetObjectItemCaseSensitive(m, "value"), &v);
        int64_t ts = int_of(cJSON_GetObjectItemCaseSensitive(m, "timestamp"), mlf_now_ms(), &bad);
        int64_t step = int_of(cJSON_GetObjectItemCaseSensitive(m, "step"), 0, &bad);
        kiln_split split;
        const char *name =
            metric_split(cJSON_GetObjectItemCaseSensitive(m, "key")->valuestring, &split);
        if (kiln_run_log_metric_at(run, step, NAN, split, name, v, (double)ts / 1000.0)) {
            mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
            return 0;
        }
    }
    return 1;
}

/* ---- endpoints ---- */

static void run_create(kiln_board *b, const mlf_req *r, kiln_http_response *resp) {
    const char *exp_id = mlf_str(r, "experiment_id");
    if (!exp_id || !*exp_id) exp_id = "0";
    char folder[300], exp_name[512];
    if (!mlf_exp_folder(b, exp_id, folder, sizeof folder)) {
        mlf_error(resp, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=%s exists", exp_id);
        return;
    }
    if (!strcmp(folder, "Default") && mlf_exp_ensure(b, folder, "Default")) {
        mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
        return;
    }
    mlf_exp_name(b, folder, exp_name, sizeof exp_name);
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(r->j, "tags");
    const char *name = mlf_str(r, "run_name");
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(t, "key");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, "value");
        if ((!name || !*name) && cJSON_IsString(k) && !strcmp(k->valuestring, "mlflow.runName") &&
            cJSON_IsString(v))
            name = v->valuestring;
    }
    int64_t start = mlf_now_ms();
    if (mlf_i64(r, "start_time", &start) < 0) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "start_time must be an integer (ms)");
        return;
    }
    kiln_rundir *run = NULL;
    if (kiln_run_create(b->runs_dir, exp_name, name && *name ? name : "run", &run)) {
        mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
        return;
    }
    char key[600];
    kiln_run_info info = kiln_run_get_info(run);
    snprintf(key, sizeof key, "%s/%s", folder, info.id);
    kiln_run_log(run, "created through kiln board's MLflow API");
    kiln_registry_follow_run(run, 1);
    hold(b->mlflow, key, run);
    char path[4200];
    cJSON *j = read_meta(b->runs_dir, key, path, sizeof path);
    set_num(j, "start_time", (double)start);
    const char *user = mlf_str(r, "user_id");
    if (user) cJSON_AddStringToObject(j, "user_id", user);
    if (name && *name)
        cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(j, "tags"), "mlflow.runName",
                                name);
    kiln_status st = mlf_write_json(path, j);
    cJSON_Delete(j);
    if (st) {
        mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
        return;
    }
    if (tags && !put_tags(b, key, tags, NULL, resp)) return;
    answer_run(b, key, resp, 0);
}

static void run_update(kiln_board *b, const char *key, const mlf_req *r, kiln_http_response *resp) {
    const char *status = mlf_str(r, "status");
    const char *name = mlf_str(r, "run_name");
    int64_t end = -1;
    kiln_run_state want = KILN_RUN_RUNNING;
    if (mlf_i64(r, "end_time", &end) < 0) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "end_time must be an integer (ms)");
        return;
    }
    if (status && !state_from_mlflow(status, &want)) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE",
                  "Invalid status '%s': expected RUNNING, SCHEDULED, FINISHED, FAILED or KILLED",
                  status);
        return;
    }
    if (status) {
        kiln_rundir *run = writer(b, key, resp);
        if (!run) return;
        kiln_run_state now = kiln_run_get_info(run).status;
        kiln_status st = KILN_OK;
        if (want != now) {
            if (now != KILN_RUN_RUNNING) st = kiln_run_set_status(run, KILN_RUN_RUNNING, NULL);
            if (!st && want != KILN_RUN_RUNNING) st = kiln_run_set_status(run, want, NULL);
            if (!st) st = kiln_run_save(run);
        }
        if (st) {
            mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
            return;
        }
    }
    char path[4200];
    cJSON *j = read_meta(b->runs_dir, key, path, sizeof path);
    if (status && want != KILN_RUN_RUNNING)
        set_num(j, "end_time", (double)(end >= 0 ? end : mlf_now_ms()));
    if (name && *name) {
        cJSON *tags = cJSON_GetObjectItemCaseSensitive(j, "tags");
        cJSON_DeleteItemFromObjectCaseSensitive(tags, "mlflow.runName");
        cJSON_AddStringToObject(tags, "mlflow.runName", name);
    }
    kiln_status st = mlf_write_json(path, j);
    cJSON_Delete(j);
    settle(b, key);
    if (st) {
        mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
        return;
    }
    answer_run(b, key, resp, 1);
}

static void run_set_deleted(kiln_board *b, const char *key, int deleted, kiln_http_response *resp) {
    char path[4200];
    cJSON *j = read_meta(b->runs_dir, key, path, sizeof path);
    cJSON_DeleteItemFromObject(j, "deleted");
    cJSON_AddBoolToObject(j, "deleted", deleted);
    kiln_status st = mlf_write_json(path, j);
    cJSON_Delete(j);
    if (st)
        mlf_error(resp, "INTERNAL_ERROR", "%s", kiln_last_error());
    else
        kiln_http_body_static(resp, "{}");
}

/* log-metric, log-parameter, set-tag, delete-tag and log-batch, as one batch. */
static void run_log(kiln_board *b, const char *key, const char *op, const mlf_req *r,
                    kiln_http_response *resp) {
    cJSON *one = cJSON_CreateArray(), *item = cJSON_CreateObject();
    const cJSON *metrics = NULL, *params = NULL, *tags = NULL;
    const char *del = NULL;
    cJSON_AddItemToArray(one, item);
    if (!strcmp(op, "log-batch")) {
        metrics = cJSON_GetObjectItemCaseSensitive(r->j, "metrics");
        params = cJSON_GetObjectItemCaseSensitive(r->j, "params");
        tags = cJSON_GetObjectItemCaseSensitive(r->j, "tags");
        int nm = cJSON_GetArraySize(metrics), np = cJSON_GetArraySize(params),
            nt = cJSON_GetArraySize(tags);
        if (nm > BATCH_MAX_METRICS || np > BATCH_MAX_PARAMS || nt > BATCH_MAX_TAGS ||
            nm + np + nt > BATCH_MAX_METRICS) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE",
                      "A batch logging request can contain at most %d metrics, %d params and %d "
                      "tags, %d in all; got %d, %d and %d",
                      BATCH_MAX_METRICS, BATCH_MAX_PARAMS, BATCH_MAX_TAGS, BATCH_MAX_METRICS, nm,
                      np, nt);
            cJSON_Delete(one);
            return;
        }
    } else {
        const char *k = op[0] == 'd' ? mlf_need(r, resp, "key") : mlf_str(r, "key");
        if (op[0] == 'd' && !k) {
            cJSON_Delete(one);
            return;
        }
        if (k) cJSON_AddStringToObject(item, "key", k);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->j, "value");
        if (v) cJSON_AddItemToObject(item, "value", cJSON_Duplicate(v, 1));
        static const char *const num[] = {"timestamp", "step"};
        for (int i = 0; i < 2; i++) {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(r->j, num[i]);
            if (x) cJSON_AddItemToObject(item, num[i], cJSON_Duplicate(x, 1));
        }
        if (!strcmp(op, "log-metric"))
            metrics = one;
        else if (!strcmp(op, "log-parameter"))
            params = one;
        else if (!strcmp(op, "set-tag"))
            tags = one;
        else
            del = k;
        if (!k && !del) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE",
                      "Missing value for required parameter 'key'.");
            cJSON_Delete(one);
            return;
        }
        if ((params || tags) && !cJSON_IsString(v) && !(params && cJSON_IsNumber(v))) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE",
                      "Missing value for required parameter 'value'.");
            cJSON_Delete(one);
            return;
        }
    }
    if (is_deleted(b, key)) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE",
                  "The run %s must be in the 'active' state. Current state is deleted.", key);
        cJSON_Delete(one);
        return;
    }
    int ok = 1;
    if (params) ok = put_params(b, key, params, resp);
    if (ok && (tags || del)) ok = put_tags(b, key, tags, del, resp);
    if (ok && cJSON_GetArraySize(metrics)) {
        kiln_rundir *run = writer(b, key, resp);
        ok = run && put_metrics(run, metrics, resp);
        settle(b, key);
    }
    cJSON_Delete(one);
    if (ok) kiln_http_body_static(resp, "{}");
}

void mlf_runs_route(kiln_board *b, const char *op, kiln_http_method method, const mlf_req *r,
                    kiln_http_response *resp) {
    int post = method == KILN_HTTP_POST;
    if (!strcmp(op, "search")) {
        if (post)
            mlf_runs_search(b, r, resp);
        else
            mlf_error(resp, "ENDPOINT_NOT_FOUND", "runs/search takes POST");
        return;
    }
    if (!strcmp(op, "create") && post) {
        run_create(b, r, resp);
        return;
    }
    static const char *const posts[] = {"update",        "delete",  "restore",    "log-metric",
                                        "log-parameter", "set-tag", "delete-tag", "log-batch"};
    int known = !strcmp(op, "get") && !post;
    for (size_t i = 0; i < sizeof posts / sizeof *posts && !known; i++)
        known = post && !strcmp(op, posts[i]);
    if (!known) {
        mlf_error(resp, "ENDPOINT_NOT_FOUND", "no MLflow endpoint runs/%s for this method", op);
        return;
    }
    char key[600];
    if (!mlf_run_key(b, r, resp, key, sizeof key)) return;
    if (!strcmp(op, "get"))
        answer_run(b, key, resp, 0);
    else if (!strcmp(op, "update"))
        run_update(b, key, r, resp);
    else if (!strcmp(op, "delete") || !strcmp(op, "restore"))
        run_set_deleted(b, key, op[0] == 'd', resp);
    else
        run_log(b, key, op, r, resp);
}

/* metrics/get-history: every point of one key, by step (one per step: the last logged). */
void mlf_metrics_history(kiln_board *b, const mlf_req *r, kiln_http_response *resp) {
    char key[600];
    if (!mlf_run_key(b, r, resp, key, sizeof key)) return;
    const char *mk = mlf_need(r, resp, "metric_key");
    if (!mk) return;
    int64_t max = 25000, off = 0;
    if (mlf_i64(r, "max_results", &max) < 0 || max < 1) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "max_results must be a positive integer");
        return;
    }
    const char *tok = mlf_str(r, "page_token");
    if (tok && *tok && (off = mlf_page_offset(tok)) < 0) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "Invalid page token '%s'", tok);
        return;
    }
    char exp[300];
    const char *slash = strchr(key, '/');
    snprintf(exp, sizeof exp, "%.*s", (int)(slash - key), key);
    pthread_mutex_lock(&b->mu);
    board_run *br = board_find(b, exp, slash + 1);
    pthread_mutex_unlock(&b->mu);
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, "{\"metrics\":[");
    int64_t total = 0, shown = 0;
    if (br) {
        pthread_mutex_lock(&br->m.mu);
        if (board_metrics_update(&br->m, br->dir)) kiln_error_clear();
        for (int i = 0; i < br->m.n_series; i++) {
            const board_series *se = &br->m.series[i];
            char name[512];
            metric_key(se->split, se->name, name, sizeof name);
            if (strcmp(name, mk)) continue;
            for (int k = 0; k < se->n; k++) {
                if (total++ < off || shown >= max) continue;
                kiln_sbuf_puts(&s, shown++ ? ",{\"key\":" : "{\"key\":");
                kiln_sbuf_json_str(&s, mk);
                kiln_sbuf_puts(&s, ",\"value\":");
                mlf_json_double(&s, se->value[k]);
                kiln_sbuf_printf(&s, ",\"timestamp\":%lld,\"step\":%lld}",
                                 (long long)llround(se->wall[k] * 1000), (long long)se->step[k]);
            }
        }
        pthread_mutex_unlock(&br->m.mu);
    }
    kiln_sbuf_putc(&s, ']');
    if (total > off + shown) {
        kiln_sbuf_puts(&s, ",\"next_page_token\":");
        mlf_page_token(&s, off + shown);
    }
    kiln_sbuf_putc(&s, '}');
    kiln_http_body_sbuf(resp, &s);
}

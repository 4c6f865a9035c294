/* mlflow_client.c — kiln as an MLflow client: a run folder mirrored to an MLflow tracking
 * server (contract and mapping in kiln/mlflow.h; docs/tracking.md "## MLflow").
 *
 * HTTP goes through src/net/'s client (kiln/client.h, raw mode: one keep-alive connection, JSON
 * bodies, an optional bearer token); this file never names libcurl. Each request is one that
 * MLflow's Python client sends for the same action (experiments/get-by-name then create,
 * runs/create, runs/log-batch, runs/update, registered-models/create, model-versions/create).
 *
 * The sync state (mlflow-sync.json in the run folder) is an object keyed by the server's base
 * URL, so one run can be mirrored to several servers; it is rewritten atomically after every
 * step that succeeded, which is what makes a sync resumable: a failed request leaves the state
 * at the last step that went through.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kiln/client.h"
#include "kiln/config.h"
#include "kiln/fileio.h"
#include "kiln/mlflow.h"
#include "kiln/sbuf.h"

#define METRICS_PER_BATCH 1000
#define PARAMS_PER_BATCH  100
#define PARAM_VALUE_MAX   6000
#define PARAM_KEY_MAX     250
#define API               "/api/2.0/mlflow/"

int kiln_mlflow_is_uri(const char *s) {
    return s && (!strncmp(s, "mlflow+http://", 14) || !strncmp(s, "mlflow+https://", 15));
}

/* ---- requests ---- */

typedef struct {
    kiln_client *c;
    char base[512];
} conn;

/* One request; *out gets the parsed answer on 2xx. On an HTTP error, *code (may be NULL) gets
 * MLflow's error_code (or "") and the status is KILN_ERR_IO with the message, unless *code is
 * wanted and the caller handles it (returns KILN_OK with *out NULL). */
static kiln_status call(conn *k, const char *method, const char *path, const char *body,
                        cJSON **out, char *code, size_t code_cap) {
    *out = NULL;
    if (code) code[0] = 0;
    char full[4096];
    snprintf(full, sizeof full, API "%s", path);
    int status = 0;
    char *resp = NULL;
    size_t len = 0;
    kiln_status s = kiln_client_request(k->c, method, full, body, body ? strlen(body) : 0, &status,
                                        &resp, &len);
    if (s) {
        free(resp);
        return kiln_error(KILN_ERR_IO, "MLflow server %s: %s", k->base, kiln_last_error());
    }
    cJSON *j = cJSON_ParseWithLength(resp, len);
    if (status >= 200 && status < 300) {
        free(resp);
        if (!j)
            return kiln_error(KILN_ERR_IO, "MLflow %s %s: the answer is not JSON", method, full);
        *out = j;
        return KILN_OK;
    }
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(j, "error_code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "message");
    if (code && cJSON_IsString(ec)) {
        snprintf(code, code_cap, "%s", ec->valuestring);
        cJSON_Delete(j);
        free(resp);
        return KILN_OK;
    }
    s = kiln_error(KILN_ERR_IO, "MLflow %s %s%s: HTTP %d: %s%s%.300s", method, k->base, full,
                   status, cJSON_IsString(ec) ? ec->valuestring : "",
                   cJSON_IsString(ec) ? ": " : "",
                   cJSON_IsString(msg) ? msg->valuestring
                   : resp              ? resp
                                       : "");
    cJSON_Delete(j);
    free(resp);
    return s;
}

static void url_escape(kiln_sbuf *b, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-_.~", *p))
            kiln_sbuf_putc(b, (char)*p);
        else
            kiln_sbuf_printf(b, "%%%02X", *p);
}

/* ---- the state ---- */

static cJSON *state_load(const char *path, const char *base, cJSON **root) {
    void *buf = NULL;
    size_t len = 0;
    *root = NULL;
    if (!kiln_file_read_all(path, &buf, &len, 1u << 20))
        *root = cJSON_ParseWithLength(buf, len);
    else
        kiln_error_clear();
    free(buf);
    if (!cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = cJSON_CreateObject();
    }
    cJSON *st = cJSON_GetObjectItemCaseSensitive(*root, base);
    if (!cJSON_IsObject(st)) {
        cJSON_DeleteItemFromObjectCaseSensitive(*root, base);
        st = cJSON_AddObjectToObject(*root, base);
    }
    return st;
}

static kiln_status state_save(const char *path, const cJSON *root) {
    char *text = cJSON_PrintUnformatted(root);
    if (!text) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    kiln_status s = kiln_file_write_atomic(path, text, strlen(text));
    free(text);
    return s;
}

static const char *st_str(const cJSON *st, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void st_set_str(cJSON *st, const char *k, const char *v) {
    cJSON_DeleteItemFromObjectCaseSensitive(st, k);
    cJSON_AddStringToObject(st, k, v);
}

static void st_set_num(cJSON *st, const char *k, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(st, k);
    cJSON_AddNumberToObject(st, k, v);
}

/* ---- pieces ---- */

static int64_t iso_ms(const char *iso) {
    struct tm tm = {0};
    if (!iso || sscanf(iso, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                       &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900, tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000;
}

static kiln_status experiment_id(conn *k, const char *name, char *id, size_t cap) {
    kiln_sbuf p = KILN_SBUF_INIT;
    kiln_sbuf_puts(&p, "experiments/get-by-name?experiment_name=");
    url_escape(&p, name);
    cJSON *j = NULL;
    char code[64];
    kiln_status s = p.failed ? kiln_error(KILN_ERR_NOMEM, "out of memory")
                             : call(k, "GET", p.data, NULL, &j, code, sizeof code);
    kiln_sbuf_free(&p);
    if (s) return s;
    if (!j) {
        if (strcmp(code, "RESOURCE_DOES_NOT_EXIST"))
            return kiln_error(KILN_ERR_IO, "MLflow experiments/get-by-name '%s': %s", name, code);
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "name", name);
        char *text = cJSON_PrintUnformatted(body);
        cJSON_Delete(body);
        s = call(k, "POST", "experiments/create", text, &j, NULL, 0);
        free(text);
        if (s) return s;
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "experiment_id");
        snprintf(id, cap, "%s", cJSON_IsString(e) ? e->valuestring : "");
    } else {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "experiment"), "experiment_id");
        snprintf(id, cap, "%s", cJSON_IsString(e) ? e->valuestring : "");
    }
    cJSON_Delete(j);
    if (!id[0]) return kiln_error(KILN_ERR_IO, "MLflow: no experiment_id for '%s'", name);
    return KILN_OK;
}

static void tag(cJSON *list, const char *k, const char *v) {
    if (!v) return;
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "key", k);
    cJSON_AddStringToObject(t, "value", v);
    cJSON_AddItemToArray(list, t);
}

/* Sends body's batch (run_id, metrics/params/tags) as runs/log-batch. */
static kiln_status log_batch(conn *k, cJSON *body) {
    char *text = cJSON_PrintUnformatted(body);
    if (!text) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    cJSON *j = NULL;
    kiln_status s = call(k, "POST", "runs/log-batch", text, &j, NULL, 0);
    free(text);
    cJSON_Delete(j);
    return s;
}

/* ---- params: config.yaml flattened as the registry does ---- */

typedef struct {
    conn *k;
    const char *run_id;
    cJSON *body, *list;
    int64_t n;
    kiln_status s;
} params_ctx;

static kiln_status params_flush(params_ctx *p) {
    if (!p->body || p->s) return p->s;
    if (cJSON_GetArraySize(p->list)) p->s = log_batch(p->k, p->body);
    cJSON_Delete(p->body);
    p->body = NULL;
    return p->s;
}

static void param(params_ctx *p, const char *key, const char *value) {
    if (p->s || !key[0]) return;
    if (!p->body) {
        p->body = cJSON_CreateObject();
        cJSON_AddStringToObject(p->body, "run_id", p->run_id);
        p->list = cJSON_AddArrayToObject(p->body, "params");
    }
    char v[PARAM_VALUE_MAX + 1];
    snprintf(v, sizeof v, "%s", value); /* MLflow refuses longer values: cut */
    char kk[PARAM_KEY_MAX + 1];
    snprintf(kk, sizeof kk, "%s", key);
    tag(p->list, kk, v);
    p->n++;
    if (cJSON_GetArraySize(p->list) == PARAMS_PER_BATCH) params_flush(p);
}

static const char *scalar(const kiln_cfg *c) {
    return c->text[0] || c->quoted ? c->text : "null";
}

static void flatten(params_ctx *p, const kiln_cfg *c, char *key, size_t len, size_t cap) {
    if (p->s) return;
    if (c->type == KILN_CFG_SCALAR) {
        param(p, key, scalar(c));
        return;
    }
    if (c->n_items == 0) {
        param(p, key, c->type == KILN_CFG_MAP ? "{}" : "[]");
        return;
    }
    if (c->type == KILN_CFG_SEQ) { /* a list of scalars: one value, as YAML flow */
        kiln_sbuf f = KILN_SBUF_INIT;
        int all = 1;
        kiln_sbuf_putc(&f, '[');
        for (int i = 0; i < c->n_items && all; i++) {
            all = c->items[i]->type == KILN_CFG_SCALAR;
            if (all) kiln_sbuf_printf(&f, "%s%s", i ? ", " : "", scalar(c->items[i]));
        }
        kiln_sbuf_putc(&f, ']');
        if (all && !f.failed) param(p, key, f.data);
        kiln_sbuf_free(&f);
        if (all) return;
    }
    for (int i = 0; i < c->n_items && !p->s; i++) {
        const kiln_cfg *item = c->items[i];
        int n = c->type == KILN_CFG_MAP
                    ? snprintf(key + len, cap - len, "%s%s", len ? "." : "", item->key)
                    : snprintf(key + len, cap - len, "[%d]", i);
        if (n > 0 && len + (size_t)n < cap) flatten(p, item, key, len + (size_t)n, cap);
        key[len] = 0;
    }
}

/* ---- metrics ---- */

typedef struct {
    conn *k;
    const char *run_id;
    cJSON *body, *list;
    int64_t n;
    kiln_status s;
} metrics_ctx;

static int on_point(const kiln_metric_point *pt, void *ctx) {
    metrics_ctx *m = ctx;
    if (!m->body) {
        m->body = cJSON_CreateObject();
        cJSON_AddStringToObject(m->body, "run_id", m->run_id);
        m->list = cJSON_AddArrayToObject(m->body, "metrics");
    }
    char key[256];
    snprintf(key, sizeof key, "%s%s",
             pt->split == KILN_SPLIT_VALIDATION ? "val_"
             : pt->split == KILN_SPLIT_TEST     ? "test_"
                                                : "",
             pt->name);
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "key", key);
    if (isfinite(pt->value))
        cJSON_AddNumberToObject(x, "value", pt->value);
    else /* protobuf's JSON form of a non-finite double */
        cJSON_AddStringToObject(x, "value",
                                isnan(pt->value) ? "NaN"
                                : pt->value > 0  ? "Infinity"
                                                 : "-Infinity");
    cJSON_AddNumberToObject(x, "timestamp", (double)llround(pt->wall_time * 1000));
    cJSON_AddNumberToObject(x, "step", (double)pt->step);
    cJSON_AddItemToArray(m->list, x);
    m->n++;
    return cJSON_GetArraySize(m->list) >= METRICS_PER_BATCH; /* stop: send this batch */
}

/* Sends metrics.jsonl from the state's offset on, a batch at a time, saving the offset after
 * each batch. */
static kiln_status send_metrics(conn *k, const char *dir, const char *run_id, cJSON *st,
                                const char *state_path, const cJSON *root, int64_t *sent) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(st, "offset");
    int64_t offset = cJSON_IsNumber(o) ? (int64_t)o->valuedouble : 0;
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size < offset) offset = 0; /* replaced: from the start */
    for (;;) {
        metrics_ctx m = {.k = k, .run_id = run_id};
        int64_t at = offset;
        kiln_status s = kiln_run_read_metrics(path, &at, on_point, &m, NULL);
        if (s == KILN_ERR_NOTFOUND) {
            kiln_error_clear();
            s = KILN_OK;
        }
        if (!s && m.body) s = log_batch(k, m.body);
        cJSON_Delete(m.body);
        if (s) return s;
        *sent += m.n;
        if (at == offset) return KILN_OK;
        offset = at;
        st_set_num(st, "offset", (double)offset);
        if ((s = state_save(state_path, root))) return s;
        if (m.n < METRICS_PER_BATCH) return KILN_OK;
    }
}

/* ---- model versions ---- */

typedef struct {
    const char *id;
    conn *k;
    cJSON *st;
    const char *run_id;
    int64_t n;
    kiln_status s;
} models_ctx;

static int on_version(const kiln_registry_model_version *v, void *ctx) {
    models_ctx *m = ctx;
    if (!v->run || strcmp(v->run, m->id)) return 0;
    char key[300];
    snprintf(key, sizeof key, "%s/%lld", v->model, (long long)v->version);
    cJSON *sent = cJSON_GetObjectItemCaseSensitive(m->st, "models");
    if (!cJSON_IsObject(sent)) {
        cJSON_DeleteItemFromObjectCaseSensitive(m->st, "models");
        sent = cJSON_AddObjectToObject(m->st, "models");
    }
    if (cJSON_GetObjectItemCaseSensitive(sent, key)) return 0;
    cJSON *body = cJSON_CreateObject(), *j = NULL;
    cJSON_AddStringToObject(body, "name", v->model);
    char *text = cJSON_PrintUnformatted(body);
    char code[64];
    m->s = call(m->k, "POST", "registered-models/create", text, &j, code, sizeof code);
    free(text);
    cJSON_Delete(j);
    j = NULL;
    if (!m->s && code[0] && strcmp(code, "RESOURCE_ALREADY_EXISTS"))
        m->s = kiln_error(KILN_ERR_IO, "MLflow registered-models/create '%s': %s", v->model, code);
    if (!m->s) {
        cJSON_AddStringToObject(body, "source", v->path ? v->path : "");
        cJSON_AddStringToObject(body, "run_id", m->run_id);
        cJSON *tags = cJSON_AddArrayToObject(body, "tags");
        char ver[32];
        snprintf(ver, sizeof ver, "%lld", (long long)v->version);
        tag(tags, "kiln.version", ver);
        if (v->checkpoint) tag(tags, "kiln.checkpoint", v->checkpoint);
        text = cJSON_PrintUnformatted(body);
        m->s = call(m->k, "POST", "model-versions/create", text, &j, NULL, 0);
        free(text);
        const cJSON *mv = cJSON_GetObjectItemCaseSensitive(j, "model_version");
        const cJSON *mver = cJSON_GetObjectItemCaseSensitive(mv, "version");
        if (!m->s)
            cJSON_AddStringToObject(sent, key, cJSON_IsString(mver) ? mver->valuestring : "?");
        cJSON_Delete(j);
        if (!m->s) m->n++;
    }
    cJSON_Delete(body);
    return m->s != KILN_OK;
}

/* ---- the sync ---- */

static const char *mlflow_status(kiln_run_state s) {
    return s == KILN_RUN_RUNNING    ? "RUNNING"
           : s == KILN_RUN_FINISHED ? "FINISHED"
           : s == KILN_RUN_FAILED   ? "FAILED"
                                    : "KILLED";
}

kiln_status kiln_mlflow_sync_run(const kiln_mlflow_target *t, const char *run_dir,
                                 kiln_registry *reg, kiln_mlflow_sync_stats *stats) {
    kiln_mlflow_sync_stats dummy;
    if (!stats) stats = &dummy;
    memset(stats, 0, sizeof *stats);
    if (!t || !t->uri) return kiln_error(KILN_ERR_INVALID, "MLflow: no tracking URI");
    const char *u = t->uri;
    if (!strncmp(u, "mlflow+", 7)) u += 7;
    if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))
        return kiln_error(KILN_ERR_INVALID,
                          "MLflow tracking URI '%s': expected mlflow+http://HOST:PORT or "
                          "mlflow+https://HOST:PORT",
                          t->uri);
    conn k = {0};
    snprintf(k.base, sizeof k.base, "%s", u);
    for (size_t n = strlen(k.base); n && k.base[n - 1] == '/'; n--) k.base[n - 1] = 0;
    const char *token = t->token ? t->token : getenv("MLFLOW_TRACKING_TOKEN");
    kiln_client_config cc = {.url = k.base,
                             .raw = 1,
                             .bearer_token = token,
                             .timeout_seconds = t->timeout_seconds > 0 ? t->timeout_seconds : 30};
    kiln_rundir *run = NULL;
    kiln_status s = kiln_run_open(run_dir, KILN_RUN_READ, &run);
    if (s) return s;
    if ((s = kiln_client_open(&cc, &k.c))) {
        kiln_run_close(run);
        return s;
    }
    kiln_run_info info = kiln_run_get_info(run);
    char state_path[4200], id[600];
    snprintf(state_path, sizeof state_path, "%s/mlflow-sync.json", run_dir);
    /* "<experiment folder>/<run-id>": the last two components of the folder */
    {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s", run_dir);
        for (size_t n = strlen(tmp); n > 1 && tmp[n - 1] == '/'; n--) tmp[n - 1] = 0;
        char *last = strrchr(tmp, '/');
        if (last) *last = 0;
        char *exp = strrchr(tmp, '/');
        if (snprintf(id, sizeof id, "%s/%s", exp ? exp + 1 : tmp, info.id) >= (int)sizeof id)
            id[0] = 0; /* longer than any run id: matches no model version */
    }
    cJSON *root = NULL, *st = state_load(state_path, k.base, &root), *j = NULL;
    const char *run_id = st_str(st, "run_id");
    char code[64];
    if (run_id) { /* still there? (a server wiped since: create it again) */
        kiln_sbuf p = KILN_SBUF_INIT;
        kiln_sbuf_puts(&p, "runs/get?run_id=");
        url_escape(&p, run_id);
        s = call(&k, "GET", p.data ? p.data : "", NULL, &j, code, sizeof code);
        kiln_sbuf_free(&p);
        cJSON_Delete(j);
        j = NULL;
        if (!s && code[0]) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, k.base);
            st = cJSON_AddObjectToObject(root, k.base);
            run_id = NULL;
        }
    }
    if (!s && !run_id) {
        char exp_id[256];
        s = experiment_id(&k, info.experiment ? info.experiment : "Default", exp_id, sizeof exp_id);
        if (!s) {
            cJSON *body = cJSON_CreateObject();
            cJSON_AddStringToObject(body, "experiment_id", exp_id);
            const char *name = info.name ? info.name : info.id;
            cJSON_AddStringToObject(body, "run_name", name);
            int64_t start = iso_ms(info.start_time);
            if (start >= 0) cJSON_AddNumberToObject(body, "start_time", (double)start);
            cJSON *tags = cJSON_AddArrayToObject(body, "tags");
            tag(tags, "mlflow.runName", name);
            tag(tags, "mlflow.source.type", "LOCAL");
            tag(tags, "mlflow.source.name", "kiln");
            tag(tags, "kiln.run_id", id);
            tag(tags, "kiln.host", info.host);
            tag(tags, "kiln.version", info.kiln_version);
            if (info.command) tag(tags, "kiln.command", info.command);
            char *text = cJSON_PrintUnformatted(body);
            cJSON_Delete(body);
            s = call(&k, "POST", "runs/create", text, &j, NULL, 0);
            free(text);
            const cJSON *ri = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "run"),
                                                 "info"),
                "run_id");
            if (!s && !cJSON_IsString(ri))
                s = kiln_error(KILN_ERR_IO, "MLflow runs/create: no run_id in the answer");
            if (!s) {
                st_set_str(st, "run_id", ri->valuestring);
                st_set_str(st, "experiment_id", exp_id);
                stats->created = 1;
                s = state_save(state_path, root);
            }
            cJSON_Delete(j);
            j = NULL;
        }
    }
    run_id = st_str(st, "run_id");
    if (!s) {
        snprintf(stats->run_id, sizeof stats->run_id, "%s", run_id);
        snprintf(stats->experiment_id, sizeof stats->experiment_id, "%s",
                 st_str(st, "experiment_id") ? st_str(st, "experiment_id") : "");
    }
    /* params, once per config hash */
    const char *hash = info.config_hash ? info.config_hash : "-";
    const char *sent_hash = st_str(st, "params");
    if (!s && (!sent_hash || strcmp(sent_hash, hash))) {
        char cfg_path[4200];
        snprintf(cfg_path, sizeof cfg_path, "%s/config.yaml", run_dir);
        kiln_cfg *cfg = NULL;
        struct stat sb;
        params_ctx p = {.k = &k, .run_id = run_id};
        if (stat(cfg_path, &sb) == 0 && kiln_config_load(cfg_path, &cfg) == KILN_OK) {
            char key[1024] = "";
            flatten(&p, cfg, key, 0, sizeof key);
            kiln_cfg_free(cfg);
            params_flush(&p);
        } else
            kiln_error_clear();
        cJSON_Delete(p.body);
        s = p.s;
        stats->params = p.n;
        if (!s) {
            st_set_str(st, "params", hash);
            s = state_save(state_path, root);
        }
    }
    if (!s) s = send_metrics(&k, run_dir, run_id, st, state_path, root, &stats->metrics);
    /* status and end time */
    const char *want = mlflow_status(info.status);
    const char *sent = st_str(st, "status");
    if (!s && (!sent || strcmp(sent, want)) && strcmp(want, "RUNNING")) {
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "run_id", run_id);
        cJSON_AddStringToObject(body, "status", want);
        int64_t end = iso_ms(info.end_time);
        if (end >= 0) cJSON_AddNumberToObject(body, "end_time", (double)end);
        char *text = cJSON_PrintUnformatted(body);
        cJSON_Delete(body);
        s = call(&k, "POST", "runs/update", text, &j, NULL, 0);
        free(text);
        cJSON_Delete(j);
        j = NULL;
        if (!s) {
            st_set_str(st, "status", want);
            s = state_save(state_path, root);
        }
    }
    if (!s && reg) {
        models_ctx m = {.id = id, .k = &k, .st = st, .run_id = run_id};
        s = kiln_registry_list_models(reg, NULL, on_version, &m);
        if (!s) s = m.s;
        stats->models = m.n;
        if (m.n && !s) s = state_save(state_path, root);
    }
    cJSON_Delete(root);
    kiln_client_free(k.c);
    kiln_run_close(run);
    return s;
}

/* ---- live ---- */

typedef struct {
    char *uri;
    char path[4096];
    double last;
    kiln_run_state status;
    int warned;
} follower_ctx;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sync_now(follower_ctx *f, kiln_rundir *run, int with_models) {
    f->last = now_s();
    kiln_mlflow_target t = {.uri = f->uri};
    kiln_registry *reg = NULL;
    if (with_models) {
        char runs_dir[4200];
        snprintf(runs_dir, sizeof runs_dir, "%s/../..", f->path);
        if (kiln_registry_open_read(runs_dir, &reg)) {
            kiln_error_clear();
            reg = NULL;
        }
    }
    kiln_status s = kiln_mlflow_sync_run(&t, f->path, reg, NULL);
    kiln_registry_close(reg);
    if (s && !f->warned) {
        f->warned = 1;
        char msg[1200];
        snprintf(msg, sizeof msg,
                 "warning: MLflow tracking: %s; training goes on, and the points are sent when "
                 "the server answers again (or with kiln runs sync --to %s)",
                 kiln_last_error(), f->uri);
        fprintf(stderr, "%s\n", msg);
        kiln_run_log(run, "%s", msg);
    }
    if (s) kiln_error_clear();
}

static void f_point(void *ctx, kiln_rundir *run, int64_t step, double wall, kiln_split split,
                    const char *name, double value, int64_t end) {
    (void)step, (void)wall, (void)split, (void)name, (void)value, (void)end;
    follower_ctx *f = ctx;
    if (now_s() - f->last >= 1.0) sync_now(f, run, 0);
}

static void f_saved(void *ctx, kiln_rundir *run) {
    follower_ctx *f = ctx;
    kiln_run_state s = kiln_run_get_info(run).status;
    if (s != f->status || now_s() - f->last >= 1.0) {
        f->status = s;
        sync_now(f, run, 0);
    }
}

static void f_closing(void *ctx, kiln_rundir *run) {
    follower_ctx *f = ctx;
    sync_now(f, run, 1);
    free(f->uri);
    free(f);
}

static const kiln_run_follower mlflow_follower = {
    .point = f_point, .saved = f_saved, .closing = f_closing};

void kiln_mlflow_follow_run(kiln_rundir *run, const char *uri) {
    if (!run || !uri) return;
    follower_ctx *f = calloc(1, sizeof *f);
    if (!f || !(f->uri = strdup(uri))) {
        free(f);
        return;
    }
    kiln_run_info info = kiln_run_get_info(run);
    snprintf(f->path, sizeof f->path, "%s", info.path);
    f->status = info.status;
    if (kiln_run_set_follower(run, &mlflow_follower, f)) {
        kiln_error_clear();
        free(f->uri);
        free(f);
        return;
    }
    sync_now(f, run, 0); /* the run exists on the server from the start */
}

/* board_mlflow.c — kiln board's MLflow REST API 2.0 (tracking and model registry subsets):
 * routing, the bearer token, request fields, MLflow's error JSON and the experiments endpoints.
 * The store and the invariants are described in board_mlflow.h; the API is documented in
 * docs/tracking.md ("## MLflow").
 *
 * Paths: /api/2.0/mlflow/<group>/<op> (what MLflow's Python, Java and R clients call) and
 * /ajax-api/2.0/mlflow/... (what MLflow's web UI calls). Request fields come from the JSON body
 * (POST, PATCH, DELETE) and the query string (GET; DELETE too), query arguments filling only
 * fields the body lacks. Every answer is JSON; errors are {"error_code", "message"}.
 *
 * Auth. With a token, every MLflow request must carry "Authorization: Bearer <token>" (401
 * UNAUTHENTICATED otherwise, compared in constant time); the board's own read-only pages and
 * /api/runs stay open as before.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "board/board_mlflow.h"
#include "kiln/fileio.h"

/* ---- helpers ---- */

void mlf_error(kiln_http_response *resp, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int status = 400;
    if (!strcmp(code, "RESOURCE_DOES_NOT_EXIST") || !strcmp(code, "ENDPOINT_NOT_FOUND"))
        status = 404;
    else if (!strcmp(code, "UNAUTHENTICATED"))
        status = 401;
    else if (!strcmp(code, "INTERNAL_ERROR"))
        status = 500;
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, "{\"error_code\":");
    kiln_sbuf_json_str(&s, code);
    kiln_sbuf_puts(&s, ",\"message\":");
    kiln_sbuf_json_str(&s, msg);
    kiln_sbuf_putc(&s, '}');
    resp->status = status;
    kiln_http_body_sbuf(resp, &s);
}

const char *mlf_str(const mlf_req *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int mlf_i64(const mlf_req *r, const char *key, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->j, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) {
        if (!(fabs(v->valuedouble) < 9.2e18) || v->valuedouble != floor(v->valuedouble)) return -1;
        *out = (int64_t)v->valuedouble;
        return 1;
    }
    if (!cJSON_IsString(v)) return -1;
    const char *p = v->valuestring;
    if (!*p) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(p, &end, 10);
    if (*end || errno) return -1;
    *out = x;
    return 1;
}

const char *mlf_need(const mlf_req *r, kiln_http_response *resp, const char *key) {
    const char *s = mlf_str(r, key);
    if (!s || !*s) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "Missing value for required parameter '%s'.",
                  key);
        return NULL;
    }
    return s;
}

void mlf_hex(const char *s, char *out, size_t cap) {
    static const char d[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 3 <= cap; p++) {
        out[n++] = d[*p >> 4];
        out[n++] = d[*p & 15];
    }
    out[n] = 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int mlf_unhex(const char *id, char *out, size_t cap) {
    size_t n = strlen(id);
    if (n == 0 || n % 2 || n / 2 >= cap) return 0;
    for (size_t i = 0; i < n; i += 2) {
        int a = hexval(id[i]), b = hexval(id[i + 1]);
        if (a < 0 || b < 0 || (a == 0 && b == 0)) return 0;
        out[i / 2] = (char)(a * 16 + b);
    }
    out[n / 2] = 0;
    return 1;
}

int64_t mlf_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int64_t mlf_iso_ms(const char *iso) {
    if (!iso) return -1;
    struct tm tm = {0};
    if (sscanf(iso, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900, tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000;
}

void mlf_json_double(kiln_sbuf *s, double v) {
    if (isnan(v))
        kiln_sbuf_puts(s, "\"NaN\"");
    else if (isinf(v))
        kiln_sbuf_puts(s, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    else
        board_json_number(s, v);
}

void mlf_json_kv_list(kiln_sbuf *s, const mlf_kv *kv, int n) {
    kiln_sbuf_putc(s, '[');
    for (int i = 0; i < n; i++) {
        kiln_sbuf_puts(s, i ? ",{\"key\":" : "{\"key\":");
        kiln_sbuf_json_str(s, kv[i].key);
        kiln_sbuf_puts(s, ",\"value\":");
        kiln_sbuf_json_str(s, kv[i].value);
        kiln_sbuf_putc(s, '}');
    }
    kiln_sbuf_putc(s, ']');
}

cJSON *mlf_read_json(const char *path) {
    void *buf = NULL;
    size_t len = 0;
    if (kiln_file_read_all(path, &buf, &len, 16u << 20)) {
        kiln_error_clear();
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

kiln_status mlf_write_json(const char *path, const cJSON *j) {
    char *text = cJSON_PrintUnformatted(j);
    if (!text) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    kiln_status st = kiln_file_write_atomic(path, text, n);
    free(text);
    return st;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A folder name the API may use as an experiment: plain, and not kiln's models/ folder. */
static int exp_folder_ok(const char *f) {
    return f[0] && f[0] != '.' && !strchr(f, '/') && strcmp(f, "models") && strlen(f) < 256;
}

int mlf_exp_folder(const kiln_board *b, const char *exp_id, char *folder, size_t cap) {
    if (!strcmp(exp_id, "0"))
        snprintf(folder, cap, "Default");
    else if (!mlf_unhex(exp_id, folder, cap) || !exp_folder_ok(folder))
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", b->runs_dir, folder);
    return is_dir(path) || !strcmp(folder, "Default");
}

void mlf_exp_name(const kiln_board *b, const char *folder, char *name, size_t cap) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/experiment.json", b->runs_dir, folder);
    cJSON *j = mlf_read_json(path);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "name");
    snprintf(name, cap, "%s", cJSON_IsString(n) ? n->valuestring : folder);
    cJSON_Delete(j);
}

int mlf_exp_ensure(kiln_board *b, const char *folder, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", b->runs_dir, folder);
    if (kiln_mkdirs(path)) return -1;
    snprintf(path, sizeof path, "%s/%s/experiment.json", b->runs_dir, folder);
    struct stat st;
    if (stat(path, &st) == 0) return 0;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", name);
    cJSON_AddNumberToObject(j, "creation_time", (double)mlf_now_ms());
    cJSON_AddStringToObject(j, "lifecycle_stage", "active");
    cJSON_AddItemToObject(j, "tags", cJSON_CreateObject());
    kiln_status s = mlf_write_json(path, j);
    cJSON_Delete(j);
    return s ? -1 : 0;
}

/* ---- experiments ---- */

static void render_experiment(kiln_board *b, const char *folder, kiln_sbuf *s) {
    char path[4096], id[MLF_ID_MAX], name[512];
    snprintf(path, sizeof path, "%s/%s/experiment.json", b->runs_dir, folder);
    cJSON *j = mlf_read_json(path);
    if (!strcmp(folder, "Default"))
        snprintf(id, sizeof id, "0");
    else
        mlf_hex(folder, id, sizeof id);
    mlf_exp_name(b, folder, name, sizeof name);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "creation_time");
    const cJSON *lu = cJSON_GetObjectItemCaseSensitive(j, "last_update_time");
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(j, "lifecycle_stage");
    int64_t created = cJSON_IsNumber(ct) ? (int64_t)ct->valuedouble : -1;
    if (created < 0) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", b->runs_dir, folder);
        created = stat(path, &st) == 0 ? (int64_t)st.st_mtime * 1000 : 0;
    }
    kiln_sbuf_puts(s, "{\"experiment_id\":");
    kiln_sbuf_json_str(s, id);
    kiln_sbuf_puts(s, ",\"name\":");
    kiln_sbuf_json_str(s, name);
    kiln_sbuf_puts(s, ",\"artifact_location\":");
    char abs[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", b->runs_dir, folder);
    if (realpath(path, abs)) snprintf(path, sizeof path, "%s", abs);
    kiln_sbuf_json_str(s, path);
    kiln_sbuf_puts(s, ",\"lifecycle_stage\":");
    kiln_sbuf_json_str(s, cJSON_IsString(ls) ? ls->valuestring : "active");
    kiln_sbuf_printf(s, ",\"creation_time\":%lld,\"last_update_time\":%lld,\"tags\":[",
                     (long long)created,
                     (long long)(cJSON_IsNumber(lu) ? (int64_t)lu->valuedouble : created));
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(j, "tags"), *t;
    int n = 0;
    cJSON_ArrayForEach(t, tags) {
        if (!cJSON_IsString(t)) continue;
        kiln_sbuf_puts(s, n++ ? ",{\"key\":" : "{\"key\":");
        kiln_sbuf_json_str(s, t->string);
        kiln_sbuf_puts(s, ",\"value\":");
        kiln_sbuf_json_str(s, t->valuestring);
        kiln_sbuf_putc(s, '}');
    }
    kiln_sbuf_puts(s, "]}");
    cJSON_Delete(j);
}

/* Sets the experiment's tags from a [{"key","value"}] list into experiment.json. */
static int exp_put_tags(kiln_board *b, const char *folder, const cJSON *list) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/experiment.json", b->runs_dir, folder);
    cJSON *j = mlf_read_json(path);
    if (!j) return -1;
    cJSON *tags = cJSON_GetObjectItemCaseSensitive(j, "tags");
    if (!cJSON_IsObject(tags)) {
        cJSON_DeleteItemFromObject(j, "tags");
        tags = cJSON_AddObjectToObject(j, "tags");
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, list) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(t, "key");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, "value");
        if (!cJSON_IsString(k)) continue;
        cJSON_DeleteItemFromObject(tags, k->valuestring);
        cJSON_AddStringToObject(tags, k->valuestring, cJSON_IsString(v) ? v->valuestring : "");
    }
    kiln_status s = mlf_write_json(path, j);
    cJSON_Delete(j);
    return s ? -1 : 0;
}

/* The folder of an experiment name: its sanitized form; 0 when no such experiment exists. */
static int exp_by_name(kiln_board *b, const char *name, char *folder, size_t cap) {
    char f[KILN_RUN_NAME_MAX + 1];
    kiln_run_sanitize(name, f);
    snprintf(folder, cap, "%s", f);
    if (!exp_folder_ok(f)) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", b->runs_dir, f);
    if (!is_dir(path)) return !strcmp(name, "Default");
    char real[512];
    mlf_exp_name(b, f, real, sizeof real);
    return !strcmp(real, name) || !strcmp(f, name);
}

static void exp_create(kiln_board *b, const mlf_req *r, kiln_http_response *resp) {
    const char *name = mlf_need(r, resp, "name");
    if (!name) return;
    char folder[300], path[4096];
    kiln_run_sanitize(name, folder);
    if (!exp_folder_ok(folder)) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE",
                  "experiment name '%s' is reserved (kiln keeps its model registry in models/)",
                  name);
        return;
    }
    snprintf(path, sizeof path, "%s/%s/experiment.json", b->runs_dir, folder);
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", b->runs_dir, folder);
    if (stat(path, &st) == 0) {
        mlf_error(resp, "RESOURCE_ALREADY_EXISTS", "Experiment '%s' already exists.", name);
        return;
    }
    if (mlf_exp_ensure(b, folder, name) ||
        exp_put_tags(b, folder, cJSON_GetObjectItemCaseSensitive(r->j, "tags"))) {
        mlf_error(resp, "INTERNAL_ERROR", "creating experiment '%s': %s", name, kiln_last_error());
        return;
    }
    char id[MLF_ID_MAX];
    mlf_hex(folder, id, sizeof id);
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, "{\"experiment_id\":");
    kiln_sbuf_json_str(&s, id);
    kiln_sbuf_putc(&s, '}');
    kiln_http_body_sbuf(resp, &s);
}

static void exp_answer(kiln_board *b, const char *folder, kiln_http_response *resp) {
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, "{\"experiment\":");
    render_experiment(b, folder, &s);
    kiln_sbuf_putc(&s, '}');
    kiln_http_body_sbuf(resp, &s);
}

static void exp_get(kiln_board *b, const mlf_req *r, kiln_http_response *resp) {
    const char *id = mlf_need(r, resp, "experiment_id");
    char folder[300];
    if (!id) return;
    if (!mlf_exp_folder(b, id, folder, sizeof folder)) {
        mlf_error(resp, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=%s exists", id);
        return;
    }
    exp_answer(b, folder, resp);
}

static void exp_get_by_name(kiln_board *b, const mlf_req *r, kiln_http_response *resp) {
    const char *name = mlf_need(r, resp, "experiment_name");
    char folder[300];
    if (!name) return;
    if (!exp_by_name(b, name, folder, sizeof folder)) {
        mlf_error(resp, "RESOURCE_DOES_NOT_EXIST", "Could not find experiment with name '%s'",
                  name);
        return;
    }
    exp_answer(b, folder, resp);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* experiments/search: every experiment folder, by name; filter "name = 'x'" / "name LIKE 'x%'"
 * is matched on the name; max_results and page_token as for runs. */
static void exp_search(kiln_board *b, const mlf_req *r, kiln_http_response *resp) {
    int64_t max = 1000, off = 0;
    int k = mlf_i64(r, "max_results", &max);
    if (k < 0 || max < 1 || max > 50000) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE",
                  "Invalid value for max_results: expected an integer in [1, 50000]");
        return;
    }
    const char *tok = mlf_str(r, "page_token");
    if (tok && *tok && (off = mlf_page_offset(tok)) < 0) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "Invalid page token '%s'", tok);
        return;
    }
    const char *filter = mlf_str(r, "filter");
    char want[512] = "";
    int like = 0;
    if (filter && *filter) {
        char op[8];
        if (sscanf(filter, " name %7s '%511[^']'", op, want) != 2 ||
            (strcmp(op, "=") && strcasecmp(op, "LIKE"))) {
            mlf_error(resp, "INVALID_PARAMETER_VALUE",
                      "Invalid filter '%s': experiments/search takes name = 'X' or name LIKE "
                      "'X%%'",
                      filter);
            return;
        }
        like = strcasecmp(op, "LIKE") == 0;
    }
    DIR *d = opendir(b->runs_dir);
    if (!d) {
        mlf_error(resp, "INTERNAL_ERROR", "cannot list %s: %s", b->runs_dir, strerror(errno));
        return;
    }
    char **names = NULL;
    int n = 0, cap = 0, has_default = 0;
    for (struct dirent *e;;) {
        const char *name;
        if ((e = readdir(d))) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", b->runs_dir, e->d_name);
            if (!exp_folder_ok(e->d_name) || !is_dir(path)) continue;
            name = e->d_name;
            if (!strcmp(name, "Default")) has_default = 1;
        } else if (!has_default) { /* experiment "0" is always there */
            name = "Default";
            has_default = 1;
        } else
            break;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(name);
    }
    closedir(d);
    if (n > 0) qsort(names, (size_t)n, sizeof *names, cmp_str);
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, "{\"experiments\":[");
    int64_t matched = 0, shown = 0;
    for (int i = 0; i < n; i++) {
        if (!names[i]) continue;
        if (want[0]) {
            char name[512];
            mlf_exp_name(b, names[i], name, sizeof name);
            size_t wl = strlen(want);
            int ok = like && wl && want[wl - 1] == '%' ? !strncmp(name, want, wl - 1)
                                                       : !strcmp(name, want);
            if (!ok) continue;
        }
        if (matched++ < off || shown >= max) continue;
        if (shown++) kiln_sbuf_putc(&s, ',');
        render_experiment(b, names[i], &s);
    }
    kiln_sbuf_putc(&s, ']');
    if (matched > off + shown) {
        kiln_sbuf_puts(&s, ",\"next_page_token\":");
        mlf_page_token(&s, off + shown);
    }
    kiln_sbuf_putc(&s, '}');
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    kiln_http_body_sbuf(resp, &s);
}

/* ---- routing ---- */

/* Constant-time comparison of the Authorization header with "Bearer <token>". */
static int auth_ok(const board_mlflow *m, const kiln_http_request *req) {
    if (!m->token) return 1;
    const char *h = kiln_http_header(req, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t a = strlen(h), t = strlen(m->token);
    unsigned diff = (unsigned)(a != t);
    for (size_t i = 0; i < t; i++)
        diff |= (unsigned char)m->token[i] ^ (unsigned char)h[i < a ? i : 0];
    return diff == 0;
}

static int from_hex(char c) {
    return hexval(c);
}

/* Adds the query's arguments (decoded) to j as strings where j lacks them; a repeated key
 * (experiment_ids=a&experiment_ids=b) becomes a list. */
static void add_query(cJSON *j, const char *q) {
    while (*q) {
        size_t n = strcspn(q, "&");
        char *kv = malloc(n + 1), *o = kv;
        if (!kv) return;
        for (size_t i = 0; i < n; i++) {
            char c = q[i];
            if (c == '+')
                c = ' ';
            else if (c == '%' && i + 2 < n + 1 && from_hex(q[i + 1]) >= 0 &&
                     from_hex(q[i + 2]) >= 0) {
                c = (char)(from_hex(q[i + 1]) * 16 + from_hex(q[i + 2]));
                i += 2;
            }
            *o++ = c;
        }
        *o = 0;
        char *eq = strchr(kv, '=');
        const char *val = "";
        if (eq) *eq = 0, val = eq + 1;
        if (kv[0]) {
            cJSON *old = cJSON_GetObjectItemCaseSensitive(j, kv);
            if (!old)
                cJSON_AddStringToObject(j, kv, val);
            else if (cJSON_IsArray(old))
                cJSON_AddItemToArray(old, cJSON_CreateString(val));
            else if (cJSON_IsString(old)) {
                cJSON *arr = cJSON_CreateArray();
                cJSON_AddItemToArray(arr, cJSON_CreateString(old->valuestring));
                cJSON_AddItemToArray(arr, cJSON_CreateString(val));
                cJSON_ReplaceItemInObjectCaseSensitive(j, kv, arr);
            }
        }
        free(kv);
        q += n;
        if (*q == '&') q++;
    }
}

int board_mlflow_handle(kiln_board *b, const kiln_http_request *req, kiln_http_response *resp) {
    const char *p = req->path;
    if (!strncmp(p, "/api/2.0/mlflow/", 16))
        p += 16;
    else if (!strncmp(p, "/ajax-api/2.0/mlflow/", 21))
        p += 21;
    else
        return 0;
    board_mlflow *m = b->mlflow;
    kiln_http_add_header(resp, "Cache-Control", "no-store");
    if (!m) {
        mlf_error(resp, "ENDPOINT_NOT_FOUND", "this kiln board serves no MLflow API (--no-mlflow)");
        return 1;
    }
    if (!auth_ok(m, req)) {
        kiln_http_add_header(resp, "WWW-Authenticate", "Bearer");
        mlf_error(resp, "UNAUTHENTICATED",
                  "this server needs 'Authorization: Bearer <token>' (kiln board --token)");
        return 1;
    }
    mlf_req r = {0};
    if (req->body_len && req->method != KILN_HTTP_GET) {
        r.j = cJSON_ParseWithLength(req->body, req->body_len);
        if (!cJSON_IsObject(r.j)) {
            cJSON_Delete(r.j);
            mlf_error(resp, "MALFORMED_REQUEST", "the request body is not a JSON object");
            resp->status = 400;
            return 1;
        }
    } else
        r.j = cJSON_CreateObject();
    if (!r.j) {
        mlf_error(resp, "INTERNAL_ERROR", "out of memory");
        return 1;
    }
    add_query(r.j, req->query);
    int get = req->method == KILN_HTTP_GET || req->method == KILN_HTTP_HEAD;
    int post = req->method == KILN_HTTP_POST;
    pthread_mutex_lock(&m->mu);
    if (!strcmp(p, "experiments/create") && post)
        exp_create(b, &r, resp);
    else if (!strcmp(p, "experiments/get") && get)
        exp_get(b, &r, resp);
    else if (!strcmp(p, "experiments/get-by-name") && get)
        exp_get_by_name(b, &r, resp);
    else if (!strcmp(p, "experiments/search") && (get || post))
        exp_search(b, &r, resp);
    else if (!strncmp(p, "runs/", 5))
        mlf_runs_route(b, p + 5, req->method, &r, resp);
    else if (!strcmp(p, "metrics/get-history") && get)
        mlf_metrics_history(b, &r, resp);
    else if (!strncmp(p, "registered-models/", 18) || !strncmp(p, "model-versions/", 15))
        mlf_models_route(b, p, req, &r, resp);
    else
        mlf_error(resp, "ENDPOINT_NOT_FOUND", "no MLflow endpoint %s %s", req->method_name,
                  req->path);
    pthread_mutex_unlock(&m->mu);
    cJSON_Delete(r.j);
    return 1;
}

board_mlflow *board_mlflow_new(const char *token) {
    board_mlflow *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    if (token && *token && !(m->token = strdup(token))) {
        free(m);
        return NULL;
    }
    return m;
}

void board_mlflow_free(board_mlflow *m) {
    if (!m) return;
    mlf_runs_close_all(m);
    pthread_mutex_destroy(&m->mu);
    free(m->token);
    free(m);
}

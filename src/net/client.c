/* client.c — TF Serving REST v1 client over libcurl (contract in kiln/client.h).
 *
 * One curl easy handle per client, reused for every request: libcurl keeps the connection in
 * the handle's cache and sends the next request on it (keep-alive), reconnecting by itself when
 * the server closed it. "Expect: 100-continue" is switched off so a large POST goes out in one
 * round trip. Response bodies collect in a kiln_sbuf, capped at KILN_CLIENT_MAX_RESPONSE.
 *
 * Metadata is small and parsed with cJSON into strings the client owns. Predict responses can
 * be large and may hold NaN/Infinity tokens that cJSON refuses, so they are walked with the
 * serving code's JSON scanner straight into the caller's float buffers, checking that every
 * instance has every wanted output with exactly its row size.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "kiln/client.h"
#include "kiln/sbuf.h"
#include "net/json_scan.h"

struct kiln_client {
    CURL *curl;
    struct curl_slist *headers;
    char *base;      /* "http://host:port" */
    char *model_url; /* base + "/v1/models/NAME[/versions/V]" */
    char errbuf[CURL_ERROR_SIZE];
    kiln_sbuf resp;
    int resp_too_big;
    int status;
    int connects; /* connections opened */
    int have_meta;
    kiln_client_model meta;
    char *strings[2 * KILN_CLIENT_MAX_OUTPUTS + 8]; /* owned strings behind meta */
    int n_strings;
    char **class_names;
    kiln_sbuf req; /* the predict body, reused */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code;
static void init_curl(void) {
    curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx) {
    kiln_client *c = ctx;
    size_t len = size * n;
    if (c->resp.len + len > KILN_CLIENT_MAX_RESPONSE) {
        c->resp_too_big = 1;
        return 0; /* curl aborts the transfer */
    }
    kiln_sbuf_put(&c->resp, p, len);
    return c->resp.failed ? 0 : len;
}

kiln_status kiln_client_open(const kiln_client_config *cfg, kiln_client **out) {
    *out = NULL;
    if (!cfg || !cfg->url || !*cfg->url)
        return kiln_error(KILN_ERR_INVALID, "client: no server URL");
    if (!cfg->raw && (!cfg->model || !*cfg->model))
        return kiln_error(KILN_ERR_INVALID, "client: no model name");
    if (cfg->bearer_token && strpbrk(cfg->bearer_token, "\r\n"))
        return kiln_error(KILN_ERR_INVALID, "client: the token has a line break");
    if (cfg->version < 0)
        return kiln_error(KILN_ERR_INVALID, "client: version %lld is not positive",
                          (long long)cfg->version);
    if (cfg->timeout_seconds < 0 || cfg->timeout_seconds > 1e6)
        return kiln_error(KILN_ERR_INVALID, "client: timeout %g s is out of range",
                          cfg->timeout_seconds);
    for (const char *p = cfg->url; *p; p++)
        if ((unsigned char)*p <= ' ')
            return kiln_error(KILN_ERR_INVALID,
                              "client: the URL '%s' has a space or control character", cfg->url);
    pthread_once(&curl_once, init_curl);
    if (curl_init_code != CURLE_OK)
        return kiln_error(KILN_ERR_IO, "client: libcurl failed to start: %s",
                          curl_easy_strerror(curl_init_code));
    kiln_client *c = calloc(1, sizeof *c);
    if (!c) return kiln_error(KILN_ERR_NOMEM, "client: out of memory");
    size_t n = strlen(cfg->url);
    while (n > 0 && cfg->url[n - 1] == '/') n--;
    int scheme = strstr(cfg->url, "://") != NULL;
    kiln_sbuf b = KILN_SBUF_INIT;
    if (!scheme) kiln_sbuf_puts(&b, "http://");
    kiln_sbuf_put(&b, cfg->url, n);
    c->base = kiln_sbuf_take(&b, NULL);
    c->curl = curl_easy_init();
    char *esc = c->curl ? curl_easy_escape(c->curl, cfg->raw ? "" : cfg->model, 0) : NULL;
    if (esc) {
        kiln_sbuf_printf(&b, "%s/v1/models/%s", c->base ? c->base : "", esc);
        if (cfg->version) kiln_sbuf_printf(&b, "/versions/%lld", (long long)cfg->version);
        curl_free(esc);
    }
    c->model_url = kiln_sbuf_take(&b, NULL);
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = c->headers ? curl_slist_append(c->headers, "Expect:") : NULL;
    if (h2) c->headers = h2;
    if (h2 && cfg->bearer_token && *cfg->bearer_token) {
        kiln_sbuf_printf(&b, "Authorization: Bearer %s", cfg->bearer_token);
        char *auth = kiln_sbuf_take(&b, NULL);
        h2 = auth ? curl_slist_append(c->headers, auth) : NULL;
        free(auth);
        if (h2) c->headers = h2;
    }
    if (!c->base || !c->curl || !esc || !c->model_url || !h2) {
        kiln_client_free(c);
        return kiln_error(KILN_ERR_NOMEM, "client: out of memory");
    }
    long timeout_ms = (long)((cfg->timeout_seconds > 0 ? cfg->timeout_seconds : 60) * 1000);
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln-client");
    *out = c;
    return KILN_OK;
}

void kiln_client_free(kiln_client *c) {
    if (!c) return;
    if (c->curl) curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->base);
    free(c->model_url);
    kiln_sbuf_free(&c->resp);
    kiln_sbuf_free(&c->req);
    for (int i = 0; i < c->n_strings; i++) free(c->strings[i]);
    for (int i = 0; i < c->meta.n_classes; i++) free(c->class_names[i]);
    free(c->class_names);
    free(c);
}

int kiln_client_http_status(const kiln_client *c) {
    return c ? c->status : 0;
}
int kiln_client_connections(const kiln_client *c) {
    return c->connects;
}
const char *kiln_client_model_url(const kiln_client *c) {
    return c->model_url;
}

/* ---- requests ---- */

/* Sends a request to url; the body lands in c->resp. */
static kiln_status send_request(kiln_client *c, const char *method, const char *url,
                                const char *body, size_t len) {
    CURL *h = c->curl;
    kiln_sbuf_clear(&c->resp);
    if (kiln_sbuf_reserve(&c->resp, 0)) return kiln_error(KILN_ERR_NOMEM, "client: out of memory");
    c->resp_too_big = 0;
    c->status = 0;
    c->errbuf[0] = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (!strcmp(method, "GET")) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
        if (strcmp(method, "POST")) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    long connects = 0;
    if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK)
        c->connects += (int)connects;
    if (rc != CURLE_OK) {
        if (c->resp_too_big)
            return kiln_error(KILN_ERR_FORMAT, "%s %s: the response is over %zu bytes", method, url,
                              KILN_CLIENT_MAX_RESPONSE);
        if (c->resp.failed)
            return kiln_error(KILN_ERR_NOMEM, "%s %s: out of memory for the response", method, url);
        return kiln_error(KILN_ERR_IO, "%s %s: %s", method, url,
                          c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    c->status = (int)code;
    return KILN_OK;
}

kiln_status kiln_client_request(kiln_client *c, const char *method, const char *path,
                                const char *body, size_t len, int *status, char **resp,
                                size_t *resp_len) {
    *resp = NULL;
    if (resp_len) *resp_len = 0;
    *status = 0;
    if (!path || path[0] != '/')
        return kiln_error(KILN_ERR_INVALID, "client: the path must start with '/'");
    kiln_sbuf u = KILN_SBUF_INIT;
    kiln_sbuf_printf(&u, "%s%s", c->base, path);
    char *url = kiln_sbuf_take(&u, NULL);
    if (!url) return kiln_error(KILN_ERR_NOMEM, "client: out of memory");
    kiln_status st = send_request(c, method, url, body, len);
    free(url);
    if (st) return st;
    *status = c->status;
    if (!(*resp = kiln_sbuf_take(&c->resp, resp_len)))
        return kiln_error(KILN_ERR_NOMEM, "client: out of memory");
    return KILN_OK;
}

/* The error for a response with status >= 400: the server's {"error"} text, else its body. */
static kiln_status http_error(kiln_client *c, const char *method, const char *url) {
    const char *msg = NULL;
    cJSON *j = c->resp.len ? cJSON_ParseWithLength(c->resp.data, c->resp.len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (cJSON_IsString(e)) msg = e->valuestring;
    int show = c->resp.len > 300 ? 300 : (int)c->resp.len;
    kiln_status code = c->status == 404   ? KILN_ERR_NOTFOUND
                       : c->status == 400 ? KILN_ERR_INVALID
                                          : KILN_ERR_IO;
    if (msg)
        kiln_error(code, "%s %s: HTTP %d: %s", method, url, c->status, msg);
    else
        kiln_error(code, "%s %s: HTTP %d%s%.*s%s", method, url, c->status, show ? ": " : "", show,
                   c->resp.data ? c->resp.data : "", c->resp.len > 300 ? "..." : "");
    cJSON_Delete(j);
    return code;
}

/* ---- metadata ---- */

int64_t kiln_client_row_size(const kiln_client_tensor *t) {
    int64_t n = 1;
    for (int d = 1; d < t->shape.ndim; d++) {
        if (t->shape.dims[d] < 0) return -1;
        if (t->shape.dims[d] && n > INT64_MAX / 2 / t->shape.dims[d])
            return INT64_MAX; /* saturate */
        n *= t->shape.dims[d];
    }
    return n;
}

static const char *keep(kiln_client *c, const char *s) {
    if (c->n_strings == (int)(sizeof c->strings / sizeof *c->strings)) return NULL;
    char *d = strdup(s);
    if (d) c->strings[c->n_strings++] = d;
    return d;
}

/* A TensorInfo {"dtype", "tensor_shape": {"dim": [{"size": "-1"}, ...]}} named by its key. */
static kiln_status tensor_info(kiln_client *c, const cJSON *v, const char *where,
                               kiln_client_tensor *t) {
    if (!cJSON_IsObject(v))
        return kiln_error(KILN_ERR_FORMAT, "%s: expected an object, got %s", where,
                          kiln_json_type(v));
    if (!(t->name = keep(c, v->string))) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(v, "dtype");
    t->dtype = cJSON_IsString(dt) ? keep(c, dt->valuestring) : NULL;
    if (cJSON_IsString(dt) && !t->dtype) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(v, "tensor_shape");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(ts, "dim");
    if (!cJSON_IsArray(dims))
        return kiln_error(KILN_ERR_FORMAT, "%s.tensor_shape.dim: expected a list, got %s", where,
                          kiln_json_type(dims));
    int nd = cJSON_GetArraySize(dims);
    if (nd < 1 || nd > KILN_MAX_DIMS)
        return kiln_error(KILN_ERR_FORMAT, "%s.tensor_shape.dim: %d dims (kiln takes 1 to %d)",
                          where, nd, KILN_MAX_DIMS);
    t->shape.ndim = nd;
    int i = 0;
    for (const cJSON *d = dims->child; d; d = d->next, i++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "size"); /* "28" (int64 as text) */
        double size = 0;
        char *end = NULL;
        if (cJSON_IsNumber(s))
            size = s->valuedouble;
        else if (cJSON_IsString(s))
            size = strtod(s->valuestring, &end);
        if (!(cJSON_IsNumber(s) || (cJSON_IsString(s) && end != s->valuestring && !*end)) ||
            size != floor(size) || size < -1 || size > 1e9 || (i > 0 && size == 0))
            return kiln_error(KILN_ERR_FORMAT,
                              "%s.tensor_shape.dim[%d].size: expected -1 or a size, got %s", where,
                              i, kiln_json_type(s));
        t->shape.dims[i] = (int64_t)size;
    }
    if (kiln_client_row_size(t) > ((int64_t)1 << 30))
        return kiln_error(KILN_ERR_FORMAT, "%s: more than 2^30 values per row", where);
    return KILN_OK;
}

static const cJSON *field(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static kiln_status parse_metadata(kiln_client *c, const cJSON *j) {
    kiln_client_model *m = &c->meta;
    kiln_status st;
    const cJSON *spec = field(j, "model_spec"), *name = field(spec, "name"),
                *ver = field(spec, "version");
    m->name = cJSON_IsString(name) ? keep(c, name->valuestring) : NULL;
    if (cJSON_IsString(ver))
        m->version = strtoll(ver->valuestring, NULL, 10);
    else if (cJSON_IsNumber(ver))
        m->version = (int64_t)ver->valuedouble;
    const cJSON *meta = field(j, "metadata");
    const cJSON *sig =
        field(field(field(meta, "signature_def"), "signature_def"), "serving_default");
    if (!cJSON_IsObject(sig))
        return kiln_error(KILN_ERR_FORMAT,
                          "no metadata.signature_def.signature_def.serving_default object");
    const cJSON *ins = field(sig, "inputs"), *outs = field(sig, "outputs");
    if (!cJSON_IsObject(ins) || cJSON_GetArraySize(ins) != 1)
        return kiln_error(KILN_ERR_FORMAT,
                          "serving_default.inputs: expected an object with one input, got %s",
                          cJSON_IsObject(ins) ? "several or none" : kiln_json_type(ins));
    char where[128];
    snprintf(where, sizeof where, "serving_default.inputs.%.64s", ins->child->string);
    if ((st = tensor_info(c, ins->child, where, &m->input))) return st;
    for (int d = 1; d < m->input.shape.ndim; d++)
        if (m->input.shape.dims[d] < 1)
            return kiln_error(KILN_ERR_FORMAT,
                              "serving_default.inputs.%s: dim %d has no fixed size; kiln predict "
                              "needs a fixed row shape",
                              m->input.name, d);
    if (!cJSON_IsObject(outs) || !outs->child)
        return kiln_error(KILN_ERR_FORMAT, "serving_default.outputs: expected an object, got %s",
                          kiln_json_type(outs));
    for (const cJSON *o = outs->child; o; o = o->next) {
        if (m->n_outputs == KILN_CLIENT_MAX_OUTPUTS)
            return kiln_error(KILN_ERR_FORMAT, "serving_default.outputs: more than %d",
                              KILN_CLIENT_MAX_OUTPUTS);
        snprintf(where, sizeof where, "serving_default.outputs.%.64s", o->string);
        if ((st = tensor_info(c, o, where, &m->outputs[m->n_outputs]))) return st;
        m->n_outputs++;
    }
    const cJSON *k = field(meta, "kiln");
    if (cJSON_IsObject(k)) {
        const cJSON *task = field(k, "task"), *names = field(k, "class_names");
        if (cJSON_IsString(task) && !(m->task = keep(c, task->valuestring)))
            return kiln_error(KILN_ERR_NOMEM, "out of memory");
        if (cJSON_IsArray(names)) {
            int n = cJSON_GetArraySize(names);
            c->class_names = calloc((size_t)n + 1, sizeof *c->class_names);
            if (!c->class_names) return kiln_error(KILN_ERR_NOMEM, "out of memory");
            for (const cJSON *s = names->child; s; s = s->next) {
                if (!cJSON_IsString(s))
                    return kiln_error(KILN_ERR_FORMAT,
                                      "kiln.class_names[%d]: expected a string, got %s",
                                      m->n_classes, kiln_json_type(s));
                if (!(c->class_names[m->n_classes] = strdup(s->valuestring)))
                    return kiln_error(KILN_ERR_NOMEM, "out of memory");
                m->n_classes++;
            }
            m->class_names = (const char *const *)c->class_names;
        } else if (names && !cJSON_IsNull(names)) {
            return kiln_error(KILN_ERR_FORMAT, "kiln.class_names: expected a list or null, got %s",
                              kiln_json_type(names));
        }
    }
    return KILN_OK;
}

kiln_status kiln_client_metadata(kiln_client *c, const kiln_client_model **out) {
    *out = NULL;
    if (c->have_meta) return *out = &c->meta, KILN_OK;
    kiln_sbuf u = KILN_SBUF_INIT;
    kiln_sbuf_printf(&u, "%s/metadata", c->model_url);
    char *url = kiln_sbuf_take(&u, NULL);
    if (!url) return kiln_error(KILN_ERR_NOMEM, "client: out of memory");
    kiln_status st = send_request(c, "GET", url, NULL, 0);
    if (!st && c->status >= 400) st = http_error(c, "GET", url);
    if (!st && c->status != 200)
        st = kiln_error(KILN_ERR_FORMAT, "GET %s: unexpected HTTP %d", url, c->status);
    if (!st) {
        cJSON *j = cJSON_ParseWithLength(c->resp.data, c->resp.len);
        if (!j)
            st = kiln_error(KILN_ERR_FORMAT, "the response is not JSON");
        else
            st = parse_metadata(c, j);
        cJSON_Delete(j);
        if (st) {
            kiln_error_prefix("GET %s", url);
            /* drop what a failed parse kept */
            for (int i = 0; i < c->n_strings; i++) free(c->strings[i]);
            for (int i = 0; i < c->meta.n_classes; i++) free(c->class_names[i]);
            free(c->class_names);
            c->class_names = NULL, c->n_strings = 0;
            memset(&c->meta, 0, sizeof c->meta);
        }
    }
    free(url);
    if (st) return st;
    c->have_meta = 1;
    *out = &c->meta;
    return KILN_OK;
}

int kiln_client_output_index(const kiln_client_model *m, const char *name) {
    for (int i = 0; i < m->n_outputs; i++)
        if (!strcmp(m->outputs[i].name, name)) return i;
    return -1;
}

/* ---- predict ---- */

/* One row nested in the input's shape (dims [1, ndim)), values from *x onward. */
static void write_nested(kiln_sbuf *b, const kiln_shape *s, int d, const float **x) {
    if (d == s->ndim) {
        kiln_sbuf_f32(b, *(*x)++);
        return;
    }
    kiln_sbuf_putc(b, '[');
    for (int64_t i = 0; i < s->dims[d]; i++) {
        if (i) kiln_sbuf_putc(b, ',');
        write_nested(b, s, d + 1, x);
    }
    kiln_sbuf_putc(b, ']');
}

typedef struct {
    const char *url;
    int64_t inst;      /* the prediction being read */
    const char *field; /* its output's name, or NULL for a bare list */
} resp_pos;

static kiln_status bad_resp(const resp_pos *p, const char *what) {
    if (p->field)
        return kiln_error(KILN_ERR_FORMAT, "POST %s: predictions[%lld].%.64s: %s", p->url,
                          (long long)p->inst, p->field, what);
    return kiln_error(KILN_ERR_FORMAT, "POST %s: predictions[%lld]: %s", p->url, (long long)p->inst,
                      what);
}

/* Reads a (nested) list of numbers into dst [want] (dst NULL: checks and skips it). */
static kiln_status read_numbers(js_cur *c, const resp_pos *p, float *dst, int64_t want,
                                int64_t *got, int depth) {
    kiln_status st;
    js_kind k = js_kind_at(c);
    if (k == JS_NUMBER || k == JS_NONFINITE) { /* servers write NaN and Infinity as tokens */
        js_num n;
        if ((st = js_number(c, &n))) return st;
        float v = (float)n.d;
        if (*got >= want) {
            char msg[96];
            snprintf(msg, sizeof msg, "more than the %lld values the output has", (long long)want);
            return bad_resp(p, msg);
        }
        if (dst) dst[*got] = v;
        (*got)++;
        return KILN_OK;
    }
    if (k != JS_ARRAY) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected numbers, got %s", js_kind_name(k));
        return bad_resp(p, msg);
    }
    if (depth >= JS_MAX_DEPTH) return js_syntax(c, "nested too deeply");
    c->p++;
    if (js_peek(c) == ']') return c->p++, KILN_OK;
    for (;;) {
        if ((st = read_numbers(c, p, dst, want, got, depth + 1))) return st;
        int more = js_next(c, ']', &st);
        if (more < 0) return st;
        if (!more) return KILN_OK;
    }
}

/* Reads one output's row of prediction p->inst into outs[o] (or checks and skips it). */
static kiln_status read_row(js_cur *c, const resp_pos *p, const kiln_client_model *m, int o,
                            float *const *outs) {
    int64_t rs = kiln_client_row_size(&m->outputs[o]), got = 0;
    float *dst = outs && outs[o] ? outs[o] + p->inst * rs : NULL;
    kiln_status st = read_numbers(c, p, dst, rs, &got, 2);
    if (st) return st;
    if (got != rs) {
        char msg[96];
        snprintf(msg, sizeof msg, "%lld values, the output has %lld", (long long)got,
                 (long long)rs);
        return bad_resp(p, msg);
    }
    return KILN_OK;
}

/* "key": (keys of responses may hold anything; a NUL byte just ends the name early). */
static kiln_status read_key(js_cur *c, kiln_sbuf *key) {
    kiln_sbuf_clear(key);
    if (kiln_sbuf_reserve(key, 0)) return kiln_error(KILN_ERR_NOMEM, "client: out of memory");
    if (js_peek(c) != '"') return js_syntax(c, "expected a string key");
    kiln_status st = js_string(c, key);
    return st ? st : js_expect(c, ':', "expected ':' after a key");
}

static kiln_status skip_value(js_cur *c, int depth) {
    return js_skip_value(c, depth);
}

/* One prediction that is an object {"output name": row, ...}. */
static kiln_status read_object(js_cur *c, resp_pos *p, const kiln_client_model *m,
                               float *const *outs, kiln_sbuf *key) {
    kiln_status st = KILN_OK;
    unsigned seen = 0;
    c->p++; /* '{' */
    if (js_peek(c) == '}') {
        c->p++;
    } else {
        for (;;) {
            if ((st = read_key(c, key))) return st;
            int o = kiln_client_output_index(m, key->data);
            if (o >= 0 && js_kind_at(c) == JS_ARRAY) { /* other entries ("classes") are skipped */
                p->field = m->outputs[o].name;
                st = read_row(c, p, m, o, outs);
                p->field = NULL;
                seen |= 1u << o;
            } else {
                st = skip_value(c, 3);
            }
            if (st) return st;
            int more = js_next(c, '}', &st);
            if (more < 0) return st;
            if (!more) break;
        }
    }
    for (int o = 0; outs && o < m->n_outputs; o++)
        if (outs[o] && !(seen >> o & 1)) {
            char msg[128];
            snprintf(msg, sizeof msg, "no \"%.64s\" (the model's output)", m->outputs[o].name);
            return bad_resp(p, msg);
        }
    return KILN_OK;
}

/* The "predictions" list: one entry per instance sent. */
static kiln_status read_predictions(js_cur *c, const char *url, const kiln_client_model *m,
                                    int64_t rows, float *const *outs, kiln_sbuf *key) {
    kiln_status st = KILN_OK;
    resp_pos p = {url, 0, NULL};
    if (js_kind_at(c) != JS_ARRAY)
        return kiln_error(KILN_ERR_FORMAT, "POST %s: \"predictions\" is %s, not a list", url,
                          js_kind_name(js_kind_at(c)));
    c->p++;
    if (js_peek(c) == ']') {
        c->p++;
    } else {
        for (;; p.inst++) {
            if (p.inst >= rows)
                return kiln_error(KILN_ERR_FORMAT,
                                  "POST %s: more predictions than the %lld instances sent", url,
                                  (long long)rows);
            js_kind k = js_kind_at(c);
            if (k == JS_ARRAY && m->n_outputs == 1) {
                st = read_row(c, &p, m, 0, outs);
            } else if (k == JS_ARRAY) {
                st = bad_resp(&p, "a list, but the model has several outputs");
            } else if (k == JS_OBJECT) {
                st = read_object(c, &p, m, outs, key);
            } else {
                char msg[96];
                snprintf(msg, sizeof msg, "expected a list or an object, got %s", js_kind_name(k));
                st = bad_resp(&p, msg);
            }
            if (st) return st;
            int more = js_next(c, ']', &st);
            if (more < 0) return st;
            if (!more) break;
        }
        p.inst++;
    }
    if (p.inst != rows)
        return kiln_error(KILN_ERR_FORMAT, "POST %s: %lld predictions for %lld instances", url,
                          (long long)p.inst, (long long)rows);
    return KILN_OK;
}

/* {"predictions": [...], other keys skipped} */
static kiln_status parse_predict(kiln_client *c, const char *url, int64_t rows,
                                 float *const *outs) {
    js_cur cur = {c->resp.data, c->resp.data, c->resp.data + c->resp.len};
    kiln_sbuf key = KILN_SBUF_INIT;
    kiln_status st = KILN_OK;
    int found = 0;
    if (js_peek(&cur) != '{') {
        st = js_syntax(&cur, "expected a JSON object");
        goto done;
    }
    cur.p++;
    if (js_peek(&cur) == '}') {
        cur.p++;
    } else {
        for (;;) {
            if ((st = read_key(&cur, &key))) goto done;
            if (!strcmp(key.data, "predictions") && !found) {
                st = read_predictions(&cur, url, &c->meta, rows, outs, &key);
                found = 1;
            } else {
                st = skip_value(&cur, 1);
            }
            if (st) goto done;
            int more = js_next(&cur, '}', &st);
            if (more < 0) goto done;
            if (!more) break;
        }
    }
    if (js_peek(&cur) >= 0)
        st = js_syntax(&cur, "unexpected data after the object");
    else if (!found)
        st = kiln_error(KILN_ERR_FORMAT, "no \"predictions\"");
done:
    kiln_sbuf_free(&key);
    if (st && strncmp(kiln_last_error(), "POST ", 5))
        kiln_error_prefix("POST %s: the response", url);
    return st;
}

kiln_status kiln_client_predict(kiln_client *c, const float *x, int64_t rows, float *const *outs) {
    const kiln_client_model *m;
    kiln_status st = kiln_client_metadata(c, &m);
    if (st) return st;
    if (rows < 1 || !x) return kiln_error(KILN_ERR_INVALID, "client: predict: no instances");
    kiln_sbuf *b = &c->req;
    kiln_sbuf_clear(b);
    kiln_sbuf_puts(b, "{\"instances\":[");
    for (int64_t r = 0; r < rows; r++) {
        if (r) kiln_sbuf_putc(b, ',');
        write_nested(b, &m->input.shape, 1, &x);
    }
    kiln_sbuf_puts(b, "]}");
    if (b->failed) return kiln_error(KILN_ERR_NOMEM, "client: out of memory for the request");
    kiln_sbuf u = KILN_SBUF_INIT;
    kiln_sbuf_printf(&u, "%s:predict", c->model_url);
    char *url = kiln_sbuf_take(&u, NULL);
    if (!url) return kiln_error(KILN_ERR_NOMEM, "client: out of memory");
    st = send_request(c, "POST", url, b->data, b->len);
    if (!st && c->status >= 400) st = http_error(c, "POST", url);
    if (!st && c->status != 200)
        st = kiln_error(KILN_ERR_FORMAT, "POST %s: unexpected HTTP %d", url, c->status);
    if (!st) st = parse_predict(c, url, rows, outs);
    free(url);
    return st;
}

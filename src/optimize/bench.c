/* bench.c — kiln bench: latency percentiles and throughput per batch size and concurrency, in
 * process or over REST v1/v2 (contract in kiln/bench.h).
 *
 * One point = N worker threads started together on a shared clock: each loops until warmup +
 * duration has passed since the start, timing every request, and keeps the latencies of the
 * requests that started after the warm-up in its own array (no sharing, no locks on the hot
 * path). After the join the arrays are merged and sorted. In-process workers compile their own
 * plan in their own thread after setting their OpenMP team size (the team size a plan is made
 * with is the one it runs with), and the plan is run once before the clock starts. REST workers
 * each open one kiln_client (a curl handle = one kept-alive connection) and send a body built
 * once for the batch size.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/backend.h"
#include "kiln/bench.h"
#include "kiln/client.h"
#include "kiln/export.h"
#include "kiln/graph.h"
#include "kiln/sbuf.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int kiln_bench_parse_list(const char *s, int *out, int max) {
    int n = 0;
    if (!s || !*s) return -1;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > max || n >= KILN_BENCH_MAX_POINTS) return -1;
        out[n++] = (int)v;
        s = end;
        if (*s == ',') {
            s++;
            if (!*s) return -1;
        } else if (*s) {
            return -1;
        }
    }
    return n;
}

int kiln_bench_parse_duration(const char *s, double *seconds) {
    char *end;
    if (!s || !*s) return -1;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0) || v > 86400) return -1;
    if (!strcmp(end, "ms"))
        v /= 1000;
    else if (strcmp(end, "s") && *end)
        return -1;
    *seconds = v;
    return 0;
}

/* ---- the workers ---- */

typedef struct bench_shared bench_shared;

typedef struct {
    bench_shared *sh;
    int id;
    double *lat; /* seconds of counted requests */
    int64_t n, cap, errors;
    double last_end; /* when the last counted request ended */
    char error[512];
    kiln_status setup; /* the worker could not start (plan, connection) */
} bench_worker;

struct bench_shared {
    const kiln_bench_opts *o;
    int batch, threads_per_worker;
    /* in-process */
    kiln_servable *sv;
    const float *x;
    /* REST */
    const char *path, *body;
    size_t body_len;
    /* the start line: workers set up, then wait until all are ready */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready, go;
    double t0; /* the clock starts (set by the last worker to be ready) */
};

static int record(bench_worker *w, double start, double end) {
    const kiln_bench_opts *o = w->sh->o;
    if (start < w->sh->t0 + o->warmup_s) return 0;
    if (w->n == w->cap) {
        int64_t cap = w->cap ? w->cap * 2 : 1024;
        double *l = realloc(w->lat, (size_t)cap * sizeof *l);
        if (!l) return -1;
        w->lat = l, w->cap = cap;
    }
    w->lat[w->n++] = end - start;
    w->last_end = end;
    return 0;
}

/* Waits until every worker is set up; the last one starts the clock. */
static void start_line(bench_worker *w) {
    bench_shared *sh = w->sh;
    pthread_mutex_lock(&sh->mu);
    if (++sh->ready == sh->go) {
        sh->t0 = now_s();
        pthread_cond_broadcast(&sh->cv);
    } else {
        while (sh->ready < sh->go) pthread_cond_wait(&sh->cv, &sh->mu);
    }
    pthread_mutex_unlock(&sh->mu);
}

static void *run_local(void *arg) {
    bench_worker *w = arg;
    bench_shared *sh = w->sh;
    omp_set_num_threads(sh->threads_per_worker);
    kiln_plan *p = kiln_servable_plan_new(sh->sv, sh->batch);
    if (!p) {
        w->setup = KILN_ERR_BACKEND;
        snprintf(w->error, sizeof w->error, "%s", kiln_last_error());
    } else if ((w->setup = kiln_servable_predict(sh->sv, p, sh->x, sh->batch, NULL, NULL))) {
        snprintf(w->error, sizeof w->error, "%s", kiln_last_error());
    }
    start_line(w);
    double end = sh->t0 + sh->o->warmup_s + sh->o->duration_s;
    while (!w->setup) {
        double t = now_s();
        if (t >= end && (w->n || w->errors)) break; /* at least one answer counted per worker */
        if (kiln_servable_predict(sh->sv, p, sh->x, sh->batch, NULL, NULL)) {
            if (!w->errors++) snprintf(w->error, sizeof w->error, "%s", kiln_last_error());
            continue;
        }
        if (record(w, t, now_s())) {
            w->setup = kiln_error(KILN_ERR_NOMEM, "bench: out of memory");
            break;
        }
    }
    kiln_plan_free(p);
    return NULL;
}

static void *run_rest(void *arg) {
    bench_worker *w = arg;
    bench_shared *sh = w->sh;
    const kiln_bench_opts *o = sh->o;
    kiln_client *c = NULL;
    kiln_client_config cc = {.url = o->server, .model = o->model, .timeout_seconds = o->timeout_s};
    if ((w->setup = kiln_client_open(&cc, &c)))
        snprintf(w->error, sizeof w->error, "%s", kiln_last_error());
    start_line(w);
    double end = sh->t0 + o->warmup_s + o->duration_s;
    while (!w->setup) {
        double t = now_s();
        if (t >= end && (w->n || w->errors)) break;
        int status = 0;
        char *resp = NULL;
        kiln_status st =
            kiln_client_request(c, "POST", sh->path, sh->body, sh->body_len, &status, &resp, NULL);
        double t1 = now_s();
        if (st || status != 200) {
            if (!w->errors++) {
                if (st)
                    snprintf(w->error, sizeof w->error, "%s", kiln_last_error());
                else
                    snprintf(w->error, sizeof w->error, "POST %s: HTTP %d: %.300s", sh->path,
                             status, resp ? resp : "");
            }
            free(resp);
            if (st) usleep(1000); /* a refused connection must not spin */
            continue;
        }
        free(resp);
        if (record(w, t, t1)) {
            w->setup = kiln_error(KILN_ERR_NOMEM, "bench: out of memory");
            break;
        }
    }
    kiln_client_free(c);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least q of all values at or below it. */
static double pct(const double *v, int64_t n, double q) {
    if (n <= 0) return 0;
    int64_t k = (int64_t)ceil(q * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

static kiln_status run_point(bench_shared *sh, int conc, kiln_bench_point *pt,
                             kiln_bench_result *r) {
    bench_worker *w = calloc((size_t)conc, sizeof *w);
    pthread_t *th = calloc((size_t)conc, sizeof *th);
    if (!w || !th) {
        free(w), free(th);
        return kiln_error(KILN_ERR_NOMEM, "bench: out of memory");
    }
    sh->ready = 0;
    sh->go = conc;
    int started = 0;
    kiln_status st = KILN_OK;
    for (int i = 0; i < conc; i++) {
        w[i].sh = sh, w[i].id = i;
        if (pthread_create(&th[i], NULL, sh->sv ? run_local : run_rest, &w[i])) {
            /* let the ones started run to the line: lower the count they wait for */
            pthread_mutex_lock(&sh->mu);
            sh->go = i;
            if (sh->ready == sh->go) {
                sh->t0 = now_s();
                pthread_cond_broadcast(&sh->cv);
            }
            pthread_mutex_unlock(&sh->mu);
            st = kiln_error(KILN_ERR_IO, "bench: cannot start worker thread %d of %d", i + 1, conc);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    int64_t total = 0;
    double last = 0;
    for (int i = 0; i < started && !st; i++) {
        if (w[i].setup) st = kiln_error(w[i].setup, "%s", w[i].error);
        total += w[i].n;
        pt->errors += w[i].errors;
        if (w[i].last_end > last) last = w[i].last_end;
        if (w[i].errors && !r->first_error[0])
            snprintf(r->first_error, sizeof r->first_error, "%s", w[i].error);
    }
    double *all = !st && total ? malloc((size_t)total * sizeof *all) : NULL;
    if (!st && total && !all) st = kiln_error(KILN_ERR_NOMEM, "bench: out of memory");
    if (!st) {
        int64_t k = 0;
        double sum = 0;
        for (int i = 0; i < started; i++)
            for (int64_t j = 0; j < w[i].n; j++) sum += (all[k++] = w[i].lat[j]);
        if (total) qsort(all, (size_t)total, sizeof *all, cmp_double);
        pt->batch = sh->batch, pt->concurrency = conc;
        pt->threads_per_worker = sh->sv ? sh->threads_per_worker : 0;
        pt->requests = total;
        pt->rows = total * sh->batch;
        pt->seconds = total ? last - (sh->t0 + sh->o->warmup_s) : sh->o->duration_s;
        if (pt->seconds <= 0) pt->seconds = sh->o->duration_s;
        pt->req_per_s = (double)total / pt->seconds;
        pt->rows_per_s = (double)pt->rows / pt->seconds;
        pt->p50_ms = pct(all, total, 0.50) * 1e3;
        pt->p90_ms = pct(all, total, 0.90) * 1e3;
        pt->p99_ms = pct(all, total, 0.99) * 1e3;
        pt->mean_ms = total ? sum / (double)total * 1e3 : 0;
        pt->min_ms = total ? all[0] * 1e3 : 0;
        pt->max_ms = total ? all[total - 1] * 1e3 : 0;
    }
    free(all);
    for (int i = 0; i < conc; i++) free(w[i].lat);
    free(w);
    free(th);
    return st;
}

/* ---- REST targets: the input's name and row from the metadata, the body per batch ---- */

typedef struct {
    char name[256];
    int64_t dims[8];
    int ndims; /* of one row */
    int64_t row;
} rest_input;

static kiln_status v1_input(const kiln_bench_opts *o, rest_input *in, char *url, size_t url_len) {
    kiln_client *c = NULL;
    kiln_client_config cc = {.url = o->server,
                             .model = o->model,
                             .version = o->version,
                             .timeout_seconds = o->timeout_s};
    kiln_status st = kiln_client_open(&cc, &c);
    const kiln_client_model *m = NULL;
    if (!st) st = kiln_client_metadata(c, &m);
    if (!st) {
        snprintf(in->name, sizeof in->name, "%s", m->input.name);
        in->ndims = m->input.shape.ndim - 1;
        if (in->ndims < 0 || in->ndims > 8)
            st = kiln_error(KILN_ERR_FORMAT, "bench: the input's shape has no batch");
        for (int d = 0; !st && d < in->ndims; d++) in->dims[d] = m->input.shape.dims[d + 1];
        snprintf(url, url_len, "%s", kiln_client_model_url(c));
    }
    kiln_client_free(c);
    return st;
}

static kiln_status v2_input(const kiln_bench_opts *o, const char *path, rest_input *in) {
    kiln_client *c = NULL;
    kiln_client_config cc = {.url = o->server, .model = o->model, .timeout_seconds = o->timeout_s};
    kiln_status st = kiln_client_open(&cc, &c);
    int status = 0;
    char *body = NULL;
    if (!st) st = kiln_client_request(c, "GET", path, NULL, 0, &status, &body, NULL);
    if (!st && status != 200)
        st = kiln_error(status == 404 ? KILN_ERR_NOTFOUND : KILN_ERR_IO,
                        "GET %s%s: HTTP %d: %.300s", o->server, path, status, body ? body : "");
    cJSON *j = !st ? cJSON_Parse(body) : NULL;
    if (!st && !j) st = kiln_error(KILN_ERR_FORMAT, "GET %s: the metadata is not JSON", path);
    const cJSON *ins = j ? cJSON_GetObjectItemCaseSensitive(j, "inputs") : NULL;
    const cJSON *i0 = cJSON_IsArray(ins) ? cJSON_GetArrayItem(ins, 0) : NULL;
    const cJSON *nm = i0 ? cJSON_GetObjectItemCaseSensitive(i0, "name") : NULL;
    const cJSON *sh = i0 ? cJSON_GetObjectItemCaseSensitive(i0, "shape") : NULL;
    if (!st && (!cJSON_IsString(nm) || !cJSON_IsArray(sh) || cJSON_GetArraySize(sh) < 1 ||
                cJSON_GetArraySize(sh) > 9 || cJSON_GetArraySize(ins) != 1))
        st =
            kiln_error(KILN_ERR_FORMAT, "GET %s: expected one input with a name and a shape", path);
    if (!st) {
        snprintf(in->name, sizeof in->name, "%s", nm->valuestring);
        in->ndims = cJSON_GetArraySize(sh) - 1;
        for (int d = 0; d < in->ndims; d++)
            in->dims[d] = (int64_t)cJSON_GetArrayItem(sh, d + 1)->valuedouble;
    }
    cJSON_Delete(j);
    free(body);
    kiln_client_free(c);
    return st;
}

static float input_value(int64_t k, float scale) {
    uint32_t h = (uint32_t)k * 2654435761u;
    h ^= h >> 15;
    return (float)(h % 256) / 256.0f * scale;
}

static void nested(kiln_sbuf *b, const rest_input *in, int d, int64_t *k) {
    kiln_sbuf_putc(b, '[');
    for (int64_t i = 0; i < in->dims[d]; i++) {
        if (i) kiln_sbuf_putc(b, ',');
        if (d + 1 < in->ndims)
            nested(b, in, d + 1, k);
        else
            kiln_sbuf_i64(b, (int64_t)input_value((*k)++, 256.0f));
    }
    kiln_sbuf_putc(b, ']');
}

static char *rest_body(int protocol, const rest_input *in, int batch, size_t *len) {
    kiln_sbuf b = KILN_SBUF_INIT;
    int64_t k = 0;
    if (protocol == 2) {
        kiln_sbuf_puts(&b, "{\"inputs\":[{\"name\":");
        kiln_sbuf_json_str(&b, in->name);
        kiln_sbuf_printf(&b, ",\"datatype\":\"FP32\",\"shape\":[%d", batch);
        for (int d = 0; d < in->ndims; d++) kiln_sbuf_printf(&b, ",%lld", (long long)in->dims[d]);
        kiln_sbuf_puts(&b, "],\"data\":[");
        for (int64_t i = 0; i < in->row * batch; i++) {
            if (i) kiln_sbuf_putc(&b, ',');
            kiln_sbuf_i64(&b, (int64_t)input_value(k++, 256.0f));
        }
        kiln_sbuf_puts(&b, "]}]}");
    } else {
        kiln_sbuf_puts(&b, "{\"instances\":[");
        for (int r = 0; r < batch; r++) {
            if (r) kiln_sbuf_putc(&b, ',');
            if (in->ndims)
                nested(&b, in, 0, &k);
            else
                kiln_sbuf_i64(&b, (int64_t)input_value(k++, 256.0f));
        }
        kiln_sbuf_puts(&b, "]}");
    }
    return kiln_sbuf_take(&b, len);
}

static kiln_status check_opts(const kiln_bench_opts *o) {
    if (!o->model_dir == !o->server)
        return kiln_error(KILN_ERR_INVALID, "bench: give either a version folder or a server URL");
    if (o->server && (!o->model || !*o->model))
        return kiln_error(KILN_ERR_INVALID, "bench: --server needs --model NAME");
    if (o->protocol && o->protocol != 1 && o->protocol != 2)
        return kiln_error(KILN_ERR_INVALID, "bench: protocol %d: expected 1 or 2", o->protocol);
    if (o->n_batches < 1 || o->n_batches > KILN_BENCH_MAX_POINTS || o->n_concurrency < 1 ||
        o->n_concurrency > KILN_BENCH_MAX_POINTS)
        return kiln_error(KILN_ERR_INVALID, "bench: 1 to %d batch sizes and concurrencies",
                          KILN_BENCH_MAX_POINTS);
    for (int i = 0; i < o->n_batches; i++)
        if (o->batches[i] < 1 || o->batches[i] > 65536)
            return kiln_error(KILN_ERR_INVALID, "bench: batch size %d: expected 1..65536",
                              o->batches[i]);
    for (int i = 0; i < o->n_concurrency; i++)
        if (o->concurrency[i] < 1 || o->concurrency[i] > 1024)
            return kiln_error(KILN_ERR_INVALID, "bench: concurrency %d: expected 1..1024",
                              o->concurrency[i]);
    if (!(o->duration_s > 0) || !(o->warmup_s >= 0) || o->threads < 0 || o->version < 0)
        return kiln_error(KILN_ERR_INVALID,
                          "bench: the duration must be positive and the warm-up not negative");
    return KILN_OK;
}

kiln_status kiln_bench_run(const kiln_bench_opts *o, kiln_bench_result *r) {
    memset(r, 0, sizeof *r);
    kiln_status st = check_opts(o);
    if (st) return st;
    bench_shared sh = {.o = o};
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    rest_input in = {0};
    char path[1024] = "";
    float *x = NULL;
    int cores = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (o->model_dir) {
        snprintf(r->target, sizeof r->target, "%s", o->model_dir);
        snprintf(r->mode, sizeof r->mode, "in-process");
        st = kiln_servable_load(o->model_dir, &sh.sv);
        if (!st) {
            snprintf(r->precision, sizeof r->precision, "%s",
                     kiln_servable_get_info(sh.sv).precision);
            snprintf(r->isa, sizeof r->isa, "%s", kiln_backend_cpu_isa());
            r->input_row = kiln_servable_row_size(kiln_servable_input(sh.sv, 0));
        }
    } else {
        int v2 = o->protocol == 2;
        snprintf(r->mode, sizeof r->mode, v2 ? "rest-v2" : "rest-v1");
        char ver[32] = "";
        if (o->version) snprintf(ver, sizeof ver, "/versions/%lld", (long long)o->version);
        if (v2) {
            snprintf(path, sizeof path, "/v2/models/%.900s%s", o->model, ver);
            st = v2_input(o, path, &in);
            const char *sv = o->server;
            size_t sl = strlen(sv);
            while (sl && sv[sl - 1] == '/') sl--;
            snprintf(r->target, sizeof r->target, "%s%.*s%s/infer",
                     strstr(sv, "://") ? "" : "http://", (int)(sl > 2000 ? 2000 : sl), sv, path);
            snprintf(path, sizeof path, "/v2/models/%.900s%s/infer", o->model, ver);
        } else {
            char url[4400];
            st = v1_input(o, &in, url, sizeof url);
            snprintf(r->target, sizeof r->target, "%.4000s:predict", url);
            snprintf(path, sizeof path, "/v1/models/%.900s%s:predict", o->model, ver);
        }
        in.row = 1;
        for (int d = 0; !st && d < in.ndims; d++) {
            if (in.dims[d] < 1 || in.dims[d] > (1 << 24) || in.row * in.dims[d] > (1 << 26))
                st = kiln_error(KILN_ERR_FORMAT,
                                "bench: the server's input shape has an unknown or huge dim");
            else
                in.row *= in.dims[d];
        }
        r->input_row = in.row;
        sh.path = path;
    }
    int max_batch = 0;
    for (int i = 0; i < o->n_batches; i++)
        max_batch = o->batches[i] > max_batch ? o->batches[i] : max_batch;
    if (!st && sh.sv) {
        x = malloc((size_t)(r->input_row * max_batch) * sizeof *x);
        if (!x) st = kiln_error(KILN_ERR_NOMEM, "bench: out of memory");
        for (int64_t k = 0; x && k < r->input_row * max_batch; k++) x[k] = input_value(k, 1.0f);
        sh.x = x;
    }
    for (int b = 0; !st && b < o->n_batches; b++) {
        char *body = NULL;
        sh.batch = o->batches[b];
        if (!sh.sv && !(body = rest_body(o->protocol, &in, sh.batch, &sh.body_len)))
            st = kiln_error(KILN_ERR_NOMEM, "bench: out of memory for the request body");
        sh.body = body;
        for (int c = 0; !st && c < o->n_concurrency; c++) {
            int conc = o->concurrency[c];
            sh.threads_per_worker = cores / conc > 0 ? cores / conc : 1;
            st = run_point(&sh, conc, &r->points[r->n_points], r);
            if (!st) r->n_points++;
        }
        free(body);
    }
    free(x);
    kiln_servable_free(sh.sv);
    pthread_mutex_destroy(&sh.mu);
    pthread_cond_destroy(&sh.cv);
    return st;
}

char *kiln_bench_json(const kiln_bench_result *r) {
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"target\":");
    kiln_sbuf_json_str(&b, r->target);
    kiln_sbuf_puts(&b, ",\"mode\":");
    kiln_sbuf_json_str(&b, r->mode);
    if (r->precision[0]) {
        kiln_sbuf_puts(&b, ",\"precision\":");
        kiln_sbuf_json_str(&b, r->precision);
        kiln_sbuf_puts(&b, ",\"isa\":");
        kiln_sbuf_json_str(&b, r->isa);
    }
    kiln_sbuf_printf(&b, ",\"input_row\":%lld,\"first_error\":", (long long)r->input_row);
    if (r->first_error[0])
        kiln_sbuf_json_str(&b, r->first_error);
    else
        kiln_sbuf_puts(&b, "null");
    kiln_sbuf_puts(&b, ",\"points\":[");
    for (int i = 0; i < r->n_points; i++) {
        const kiln_bench_point *p = &r->points[i];
        kiln_sbuf_printf(
            &b,
            "%s{\"batch\":%d,\"concurrency\":%d,\"threads_per_worker\":%d,\"requests\":%lld,"
            "\"rows\":%lld,\"errors\":%lld,\"seconds\":%.6f,\"req_per_s\":%.3f,\"rows_per_s\":%.3f,"
            "\"latency_ms\":{\"p50\":%.6f,\"p90\":%.6f,\"p99\":%.6f,\"mean\":%.6f,\"min\":%.6f,"
            "\"max\":%.6f}}",
            i ? "," : "", p->batch, p->concurrency, p->threads_per_worker, (long long)p->requests,
            (long long)p->rows, (long long)p->errors, p->seconds, p->req_per_s, p->rows_per_s,
            p->p50_ms, p->p90_ms, p->p99_ms, p->mean_ms, p->min_ms, p->max_ms);
    }
    kiln_sbuf_puts(&b, "]}\n");
    return kiln_sbuf_take(&b, NULL);
}

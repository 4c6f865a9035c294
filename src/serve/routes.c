/* routes.c — URL dispatch and every endpoint that is not a prediction (docs/serving.md).
 *
 *   GET  /v1/models/m[/versions/v|/labels/l]             model status (TF Serving)
 *   GET  /v1/models/m[/versions/v|/labels/l]/metadata    signature
 *   POST /v1/models/m[/versions/v|/labels/l]:predict     -> job.c
 *   POST /v1/models/m[/versions/v|/labels/l]:explain     -> explain.c (KServe v1)
 *   GET  /v2, /v2/health/live, /v2/health/ready          server metadata and health (v2)
 *   GET  /v2/models/m[/versions/v][/ready]               model metadata / readiness
 *   POST /v2/models/m[/versions/v]/infer                 -> job.c
 *   GET  /monitoring/prometheus/metrics                  Prometheus text format
 * Answers are JSON; errors {"error": "..."} with TF Serving's codes: 400 bad request, 404
 * unknown model, version or path, 405 wrong method, 503 no version loaded yet.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/version.h"
#include "serve/serve_internal.h"

typedef struct {
    const char *api; /* the metrics label */
    const char *model, *version;
} counted;

static void count(kiln_server *s, const counted *c, const kiln_http_response *resp,
                  const struct timespec *start) {
    serve_count(s, c->model ? c->model : "", c->version ? c->version : "", c->api, resp->status,
                start);
}

static int wrong_method(kiln_http_response *resp, const kiln_http_request *req, int want_post) {
    int is_post = req->method == KILN_HTTP_POST;
    if (is_post == want_post) return 0;
    kiln_http_json_error(resp, 405, "%s is not allowed on %s (use %s)", req->method_name,
                         req->path, want_post ? "POST" : "GET");
    kiln_http_add_header(resp, "Allow", want_post ? "POST" : "GET, HEAD");
    return 1;
}

/* Reads a version number, the digits at p up to a '/', ':' or the end; *end after them. As in
 * TF Serving (regex \d+, then SimpleAtoi) and Triton ([0-9]+, then stol), leading zeros are
 * fine ("01" is version 1). 0: not digits (a malformed path); -1: digits beyond int64. */
static int read_version(const char *p, int64_t *v, const char **end) {
    uint64_t x = 0;
    int over = 0;
    const char *q = p;
    for (; *q >= '0' && *q <= '9'; q++) {
        if (x > ((uint64_t)INT64_MAX - (uint64_t)(*q - '0')) / 10) over = 1;
        x = over ? 0 : x * 10 + (uint64_t)(*q - '0');
    }
    if (q == p || (*q && *q != '/' && *q != ':')) return 0;
    *end = q;
    if (over) return -1;
    *v = (int64_t)x;
    return 1;
}

/* ---- shared JSON pieces ---- */

static void put_str_or_null(kiln_sbuf *b, const char *s) {
    if (s)
        kiln_sbuf_json_str(b, s);
    else
        kiln_sbuf_puts(b, "null");
}

static void put_floats_or_null(kiln_sbuf *b, const float *v, int n) {
    if (!v || n <= 0) {
        kiln_sbuf_puts(b, "null");
        return;
    }
    kiln_sbuf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        if (i) kiln_sbuf_putc(b, ',');
        kiln_sbuf_f32(b, v[i]);
    }
    kiln_sbuf_putc(b, ']');
}

/* The signature's tensors: name, element type (v1 DT_ / v2 names) and shape with -1 batch. */
typedef struct {
    const char *name, *dt_v1, *dt_v2;
    kiln_shape shape;
} sig_tensor;

static int signature(served_version *v, sig_tensor *in, sig_tensor outs[3]) {
    const kiln_servable_tensor *i = kiln_servable_input(v->sv, 0);
    *in = (sig_tensor){i->name, "DT_FLOAT", "FP32", i->shape};
    int n = 0;
    for (int k = 0; k < kiln_servable_output_count(v->sv); k++) {
        const kiln_servable_tensor *o = kiln_servable_output(v->sv, k);
        outs[n++] = (sig_tensor){o->name, "DT_FLOAT", "FP32", o->shape};
    }
    if (v->has_probs && v->n_classes)
        outs[n++] = (sig_tensor){"classes", "DT_STRING", "BYTES",
                                 kiln_shape_make(1, (int64_t[]){-1})};
    return n;
}

static void put_tensor_info_v1(kiln_sbuf *b, const sig_tensor *t) {
    kiln_sbuf_json_str(b, t->name);
    kiln_sbuf_puts(b, ":{\"dtype\":");
    kiln_sbuf_json_str(b, t->dt_v1);
    kiln_sbuf_puts(b, ",\"tensor_shape\":{\"dim\":[");
    for (int d = 0; d < t->shape.ndim; d++)
        kiln_sbuf_printf(b, "%s{\"size\":\"%" PRId64 "\",\"name\":\"\"}", d ? "," : "",
                         t->shape.dims[d]);
    kiln_sbuf_puts(b, "],\"unknown_rank\":false},\"name\":");
    kiln_sbuf_json_str(b, t->name);
    kiln_sbuf_putc(b, '}');
}

static void put_tensor_v2(kiln_sbuf *b, const sig_tensor *t) {
    kiln_sbuf_puts(b, "{\"name\":");
    kiln_sbuf_json_str(b, t->name);
    kiln_sbuf_puts(b, ",\"datatype\":");
    kiln_sbuf_json_str(b, t->dt_v2);
    kiln_sbuf_puts(b, ",\"shape\":[");
    for (int d = 0; d < t->shape.ndim; d++)
        kiln_sbuf_printf(b, "%s%" PRId64, d ? "," : "", t->shape.dims[d]);
    kiln_sbuf_puts(b, "]}");
}

/* The version a request names, referenced and counted; NULL after answering 404 or 503. */
static served_version *acquire(served_model *m, const version_sel *sel, kiln_http_response *resp,
                               counted *c) {
    int code;
    served_version *v = serve_repo_acquire(m, sel, &code);
    if (!v)
        kiln_http_json_error(resp, code, "%s", kiln_last_error());
    else
        c->version = v->version_str;
    return v;
}

/* ---- TF Serving v1 ---- */

static void v1_status(kiln_server *s, served_model *m, const version_sel *sel,
                      kiln_http_response *resp) {
    int64_t want;
    if (serve_repo_sel_version(m, sel, &want)) {
        kiln_http_json_error(resp, 400, "%s", kiln_last_error());
        return;
    }
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"model_version_status\":[");
    int n = 0;
    pthread_mutex_lock(&m->mu);
    for (int i = m->n_records - 1; i >= 0; i--) {
        const version_record *r = &m->records[i];
        if (sel->kind != SEL_LATEST && r->version != want) continue;
        kiln_sbuf_printf(&b, "%s{\"version\":\"%" PRId64 "\",\"state\":\"%s\",\"status\":{",
                         n++ ? "," : "", r->version, serve_version_state_name(r->state));
        kiln_sbuf_printf(&b, "\"error_code\":\"%s\",\"error_message\":",
                         r->error ? "UNKNOWN" : "OK");
        kiln_sbuf_json_str(&b, r->error ? r->error : "");
        kiln_sbuf_puts(&b, "}}");
    }
    pthread_mutex_unlock(&m->mu);
    kiln_sbuf_puts(&b, "]}");
    if (n == 0) {
        kiln_sbuf_free(&b);
        if (sel->kind == SEL_LATEST)
            kiln_http_json_error(resp, 404, "Could not find any versions of model %s", m->name);
        else
            kiln_http_json_error(resp, 404, "Could not find version %" PRId64 " of model %s",
                                 want, m->name);
        return;
    }
    kiln_http_body_sbuf(resp, &b);
}

static void v1_metadata(kiln_server *s, served_model *m, const version_sel *sel,
                        kiln_http_response *resp, counted *c) {
    served_version *v = acquire(m, sel, resp, c);
    if (!v) return;
    sig_tensor in, outs[3];
    int n_out = signature(v, &in, outs);
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"model_spec\":{\"name\":");
    kiln_sbuf_json_str(&b, m->name);
    kiln_sbuf_printf(&b, ",\"signature_name\":\"\",\"version\":\"%s\"},", v->version_str);
    kiln_sbuf_puts(&b, "\"metadata\":{\"signature_def\":{\"signature_def\":{\"serving_default\":"
                       "{\"inputs\":{");
    put_tensor_info_v1(&b, &in);
    kiln_sbuf_puts(&b, "},\"outputs\":{");
    for (int i = 0; i < n_out; i++) {
        if (i) kiln_sbuf_putc(&b, ',');
        put_tensor_info_v1(&b, &outs[i]);
    }
    kiln_sbuf_puts(&b, "},\"method_name\":\"tensorflow/serving/predict\"}}},\"kiln\":{");
    kiln_servable_info info = kiln_servable_get_info(v->sv);
    kiln_sbuf_printf(&b, "\"task\":\"%s\",\"class_names\":",
                     info.task == KILN_TASK_CLASSIFICATION ? "classification" : "regression");
    if (v->n_classes) {
        kiln_sbuf_putc(&b, '[');
        for (int i = 0; i < v->n_classes; i++) {
            if (i) kiln_sbuf_putc(&b, ',');
            kiln_sbuf_json_str(&b, kiln_servable_class_name(v->sv, i));
        }
        kiln_sbuf_putc(&b, ']');
    } else {
        kiln_sbuf_puts(&b, "null");
    }
    const kiln_normalize *pre = kiln_servable_preprocessing(v->sv);
    kiln_sbuf_puts(&b, ",\"preprocessing\":{\"scale\":");
    kiln_sbuf_f32(&b, pre->scale);
    kiln_sbuf_puts(&b, ",\"mean\":");
    put_floats_or_null(&b, pre->mean, pre->channels);
    kiln_sbuf_puts(&b, ",\"std\":");
    put_floats_or_null(&b, pre->std, pre->channels);
    kiln_sbuf_puts(&b, "},\"source\":{\"run\":");
    put_str_or_null(&b, info.source_run);
    kiln_sbuf_puts(&b, ",\"checkpoint\":");
    put_str_or_null(&b, info.source_checkpoint);
    kiln_sbuf_puts(&b, "},\"created\":");
    put_str_or_null(&b, info.created);
    kiln_sbuf_puts(&b, "}}}");
    serve_version_release(v);
    kiln_http_body_sbuf(resp, &b);
}

/* TF Serving's answer to a /v1/ path that is none of its routes: 400 INVALID_ARGUMENT. */
static void v1_malformed(const kiln_http_request *req, kiln_http_response *resp, counted *c) {
    c->api = "v1_unknown";
    kiln_http_json_error(resp, 400, "Malformed request: %s %s", req->method_name, req->path);
}

/* /v1/models/<rest>, as TF Serving's two patterns read it:
 *   GET   /v1/models[/NAME[/versions/DIGITS|/labels/LABEL][/metadata]]
 *   POST  /v1/models/NAME[/versions/DIGITS|/labels/LABEL]:(predict|classify|regress)
 * Anything else under /v1/ is 400 "Malformed request" (TF Serving's code for it), a known route
 * with the other method 405. */
static void route_v1(kiln_server *s, const char *rest, const kiln_http_request *req,
                     kiln_http_response *resp, counted *c) {
    char name[256];
    if (!*rest) { /* GET /v1/models: TF Serving has no list of models */
        c->api = "v1_status";
        if (!wrong_method(resp, req, 0))
            kiln_http_json_error(resp, 400, "Missing model name in request.");
        return;
    }
    if (*rest != '/') {
        v1_malformed(req, resp, c);
        return;
    }
    rest++;
    size_t n = strcspn(rest, "/:");
    if (n == 0 || n >= sizeof name) {
        v1_malformed(req, resp, c);
        return;
    }
    memcpy(name, rest, n);
    name[n] = 0;
    const char *p = rest + n;
    version_sel sel = {SEL_LATEST, 0, NULL};
    char label[256];
    if (strncmp(p, "/versions/", 10) == 0) {
        int r = read_version(p + 10, &sel.number, &p);
        if (r == 0) {
            v1_malformed(req, resp, c);
            return;
        }
        if (r < 0) {
            c->api = "v1_unknown";
            kiln_http_json_error(resp, 400, "Failed to convert version: %.*s to numeric.",
                                 (int)(p - (rest + n) - 10), rest + n + 10);
            return;
        }
        sel.kind = SEL_NUMBER;
    } else if (strncmp(p, "/labels/", 8) == 0) {
        size_t k = strcspn(p + 8, "/:");
        if (k == 0 || k >= sizeof label) {
            v1_malformed(req, resp, c);
            return;
        }
        memcpy(label, p + 8, k);
        label[k] = 0;
        sel.kind = SEL_LABEL, sel.label = label;
        p += 8 + k;
    }
    const char *action = p;
    c->api = !*action                            ? "v1_status"
             : strcmp(action, "/metadata") == 0 ? "v1_metadata"
             : strcmp(action, ":predict") == 0  ? "v1_predict"
             : strcmp(action, ":explain") == 0  ? "v1_explain" /* KServe v1: explain.c */
                                                : "v1_unknown";
    if (strcmp(c->api, "v1_unknown") == 0) {
        if (strcmp(action, ":classify") == 0 || strcmp(action, ":regress") == 0)
            kiln_http_json_error(resp, 400,
                                 "%s takes tf.Example inputs, which kiln models do not have; "
                                 "use :predict",
                                 action + 1);
        else
            v1_malformed(req, resp, c);
        return;
    }
    served_model *m = serve_repo_find(s, name);
    c->model = m ? m->name : NULL;
    if (wrong_method(resp, req, action[0] == ':')) return;
    if (!m) {
        kiln_http_json_error(resp, 404, "Servable not found for request: model '%s' is not served",
                             name);
        return;
    }
    if (!*action)
        v1_status(s, m, &sel, resp);
    else if (action[0] == '/')
        v1_metadata(s, m, &sel, resp, c);
    else if (!strcmp(action, ":explain"))
        serve_explain_handle(s, m, &sel, req, resp, &c->version);
    else {
        c->api = NULL; /* counted by the job */
        serve_job_handle(s, m, &sel, API_V1, req, resp);
    }
}

/* ---- Open Inference Protocol v2 ---- */

static void v2_model_metadata(kiln_server *s, served_model *m, const version_sel *sel,
                              kiln_http_response *resp, counted *c) {
    served_version *v = acquire(m, sel, resp, c);
    if (!v) return;
    sig_tensor in, outs[3];
    int n_out = signature(v, &in, outs);
    int64_t loaded[64];
    int n_loaded = serve_repo_loaded(m, loaded, 64);
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"name\":");
    kiln_sbuf_json_str(&b, m->name);
    kiln_sbuf_puts(&b, ",\"versions\":[");
    for (int i = 0; i < n_loaded; i++)
        kiln_sbuf_printf(&b, "%s\"%" PRId64 "\"", i ? "," : "", loaded[i]);
    kiln_sbuf_puts(&b, "],\"platform\":\"kiln\",\"inputs\":[");
    put_tensor_v2(&b, &in);
    kiln_sbuf_puts(&b, "],\"outputs\":[");
    for (int i = 0; i < n_out; i++) {
        if (i) kiln_sbuf_putc(&b, ',');
        put_tensor_v2(&b, &outs[i]);
    }
    kiln_sbuf_puts(&b, "]}");
    serve_version_release(v);
    kiln_http_body_sbuf(resp, &b);
}

/* 200 {"name", "ready": true}; 503 with false while the version (or, without one, the model)
 * has nothing loaded; a version this model has never seen is unknown: 404 {"error"}, as the
 * metadata and infer routes answer it. */
static void v2_model_ready(served_model *m, const version_sel *sel, kiln_http_response *resp,
                           counted *c) {
    int code;
    served_version *v = serve_repo_acquire(m, sel, &code);
    if (v) {
        c->version = v->version_str;
    } else if (sel->kind == SEL_NUMBER && !serve_repo_seen(m, sel->number)) {
        kiln_http_json_error(resp, 404, "%s", kiln_last_error());
        return;
    }
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"name\":");
    kiln_sbuf_json_str(&b, m->name);
    kiln_sbuf_printf(&b, ",\"ready\":%s}", v ? "true" : "false");
    resp->status = v ? 200 : 503;
    kiln_http_body_sbuf(resp, &b);
    if (v) serve_version_release(v);
}

static void route_v2_model(kiln_server *s, const char *rest, const kiln_http_request *req,
                           kiln_http_response *resp, counted *c) {
    char name[256];
    size_t n = strcspn(rest, "/");
    c->api = "v2_unknown";
    if (n == 0 || n >= sizeof name) {
        kiln_http_json_error(resp, 404, "no route for %s %s", req->method_name, req->path);
        return;
    }
    memcpy(name, rest, n);
    name[n] = 0;
    const char *p = rest + n;
    version_sel sel = {SEL_LATEST, 0, NULL};
    if (strncmp(p, "/versions/", 10) == 0) {
        const char *v = p + 10;
        if (read_version(v, &sel.number, &p) != 1 || *p == ':') {
            kiln_http_json_error(resp, 400, "version '%.*s' is not an integer version number",
                                 (int)strcspn(v, "/"), v);
            return;
        }
        sel.kind = SEL_NUMBER;
    }
    c->api = !*p                          ? "v2_metadata"
             : strcmp(p, "/ready") == 0 ? "v2_ready"
             : strcmp(p, "/infer") == 0 ? "v2_infer"
                                        : "v2_unknown";
    if (strcmp(c->api, "v2_unknown") == 0) {
        kiln_http_json_error(resp, 404, "no route for %s %s", req->method_name, req->path);
        return;
    }
    served_model *m = serve_repo_find(s, name);
    c->model = m ? m->name : NULL;
    if (wrong_method(resp, req, strcmp(p, "/infer") == 0)) return;
    if (!m) {
        kiln_http_json_error(resp, 404, "Model %s not found", name);
        return;
    }
    if (!*p)
        v2_model_metadata(s, m, &sel, resp, c);
    else if (strcmp(p, "/ready") == 0)
        v2_model_ready(m, &sel, resp, c);
    else {
        c->api = NULL;
        serve_job_handle(s, m, &sel, API_V2, req, resp);
    }
}

static void route_metrics(kiln_server *s, kiln_http_response *resp) {
    kiln_sbuf b = KILN_SBUF_INIT;
    if (kiln_prom_render(s->prom, &b)) {
        kiln_sbuf_free(&b);
        kiln_http_json_error(resp, 500, "%s", kiln_last_error());
        return;
    }
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    kiln_http_body_sbuf(resp, &b);
}

void serve_route(void *ctx, const kiln_http_request *req, kiln_http_response *resp) {
    kiln_server *s = ctx;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    serve_thread_setup(s);
    const char *p = req->path;
    counted c = {"other", NULL, NULL};
    if (strncmp(p, "/v1/models", 10) == 0) {
        route_v1(s, p + 10, req, resp, &c);
    } else if (strncmp(p, "/v1/", 4) == 0) {
        v1_malformed(req, resp, &c);
    } else if (strncmp(p, "/v2/models/", 11) == 0) {
        route_v2_model(s, p + 11, req, resp, &c);
    } else if (strcmp(p, "/v2") == 0 || strcmp(p, "/v2/") == 0) {
        c.api = "v2_server";
        if (!wrong_method(resp, req, 0))
            kiln_http_body_static(resp, "{\"name\":\"kiln\",\"version\":\"" KILN_VERSION
                                        "\",\"extensions\":[\"binary_tensor_data\"]}");
    } else if (strcmp(p, "/v2/health/live") == 0) {
        c.api = "v2_health";
        if (!wrong_method(resp, req, 0)) kiln_http_body_static(resp, "{\"live\":true}");
    } else if (strcmp(p, "/v2/health/ready") == 0) {
        c.api = "v2_health";
        if (!wrong_method(resp, req, 0)) {
            int ready = serve_repo_ready(s);
            resp->status = ready ? 200 : 503;
            kiln_http_body_static(resp, ready ? "{\"ready\":true}" : "{\"ready\":false}");
        }
    } else if (strcmp(p, "/monitoring/prometheus/metrics") == 0) {
        c.api = "metrics";
        if (!wrong_method(resp, req, 0)) route_metrics(s, resp);
    } else {
        kiln_http_json_error(resp, 404, "no route for %s %s (kiln serves /v1/models/..., "
                             "/v2/... and /monitoring/prometheus/metrics)",
                             req->method_name, req->path);
    }
    if (c.api) count(s, &c, resp, &start);
}

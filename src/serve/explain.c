/* explain.c — POST /v1/models/NAME[/versions/V|/labels/L]:explain, KServe v1's explain verb
 * (its protocol: the predict body {"instances": [...]} or {"inputs": ...} in, {"predictions":
 * [...], "explanations": [...]} out), answered with kiln's attributions (src/explain/).
 *
 * The body may carry kiln's "parameters" object next to the instances: method (default
 * "integrated_gradients"), target, probability, layer, steps, baseline, samples, sigma,
 * window, stride, seed (kiln explain's options, docs/explain.md). Each explanation is
 * kiln_explain_result_json's object plus "attributions", nested in the input's shape ([H, W]
 * for Grad-CAM). Predictions are the :predict row answers ({"output", "probabilities"} per
 * instance for a classifier, else the output row).
 *
 * The work runs on the HTTP worker that parsed the request (no batching: an explanation is many
 * model runs of its own), with a private explainer over the version's servable: its plans are
 * compiled per request and freed with it, and the version is held (referenced) until the answer
 * is written, so a swap never frees what a request uses. Limits: 64 instances, 1024 steps or
 * samples per request (400 beyond). Errors: 400 {"error"} for bad bodies, parameters, layers or
 * targets; 500 for failures of the model.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "kiln/explain.h"
#include "kiln/instances.h"
#include "serve/serve_internal.h"

#define MAX_INSTANCES 64
#define MAX_STEPS     1024

static int bad(kiln_http_response *resp, const char *fmt, const char *a) {
    kiln_http_json_error(resp, 400, fmt, a);
    return -1;
}

/* parameters -> o; 0, or -1 with a 400 written */
static int read_params(const cJSON *p, kiln_explain_opts *o, kiln_http_response *resp) {
    o->method = KILN_EXPLAIN_INTEGRATED_GRADIENTS;
    o->target = -1;
    o->seed = 1;
    if (!p) return 0;
    if (!cJSON_IsObject(p)) return bad(resp, "explain: \"parameters\" must be an object%s", "");
    const cJSON *it;
    cJSON_ArrayForEach(it, p) {
        const char *k = it->string;
        int is_num = cJSON_IsNumber(it),
            whole = is_num && it->valuedouble == floor(it->valuedouble);
        double v = is_num ? it->valuedouble : 0;
        if (!strcmp(k, "method")) {
            if (!cJSON_IsString(it) || (o->method = kiln_explain_method_from_name(
                                            it->valuestring)) == KILN_EXPLAIN_METHOD_COUNT)
                return bad(resp, "explain: parameters.method must be one of %s",
                           kiln_explain_method_list());
        } else if (!strcmp(k, "baseline")) {
            if (!cJSON_IsString(it) || (o->baseline = kiln_explain_baseline_from_name(
                                            it->valuestring)) == KILN_BASELINE_COUNT)
                return bad(resp, "explain: parameters.baseline must be %s",
                           "\"black\", \"blurred\" or \"uniform\"");
        } else if (!strcmp(k, "layer")) {
            if (!cJSON_IsString(it))
                return bad(resp, "explain: parameters.layer must be a %s", "string");
            o->layer = it->valuestring;
        } else if (!strcmp(k, "probability")) {
            if (!cJSON_IsBool(it))
                return bad(resp, "explain: parameters.probability must be a %s", "boolean");
            o->probability = cJSON_IsTrue(it);
        } else if (!strcmp(k, "target")) {
            if (!whole || v < 0 || v > 1e6)
                return bad(resp, "explain: parameters.target must be %s", "a class index >= 0");
            o->target = (int)v;
        } else if (!strcmp(k, "steps") || !strcmp(k, "samples")) {
            int lo = !strcmp(k, "steps") ? 2 : 1;
            if (!whole || v < lo || v > MAX_STEPS)
                return bad(resp,
                           "explain: parameters.%s must be a whole number from 1 or 2 to 1024", k);
            *(!strcmp(k, "steps") ? &o->steps : &o->samples) = (int)v;
        } else if (!strcmp(k, "window") || !strcmp(k, "stride")) {
            if (!whole || v < 1 || v > 4096)
                return bad(resp, "explain: parameters.%s must be a whole number from 1 to 4096", k);
            *(!strcmp(k, "window") ? &o->window : &o->stride) = (int)v;
        } else if (!strcmp(k, "sigma")) {
            if (!is_num || !(v > 0 && v <= 10))
                return bad(resp, "explain: parameters.sigma must be %s", "in (0, 10]");
            o->sigma = (float)v;
        } else if (!strcmp(k, "seed")) {
            if (!whole || v < 0 || v > 9e15)
                return bad(resp, "explain: parameters.seed must be %s", "a whole number >= 0");
            o->seed = (uint64_t)v;
        } else {
            return bad(resp,
                       "explain: unknown parameter '%s' (method, target, probability, layer, "
                       "steps, baseline, samples, sigma, window, stride, seed)",
                       k);
        }
    }
    return 0;
}

/* v [dims...] as nested JSON lists */
static void nested(kiln_sbuf *b, const float *v, const int64_t *dims, int nd) {
    kiln_sbuf_putc(b, '[');
    int64_t inner = 1;
    for (int i = 1; i < nd; i++) inner *= dims[i];
    for (int64_t i = 0; i < dims[0]; i++) {
        if (i) kiln_sbuf_putc(b, ',');
        if (nd == 1) {
            if (isfinite(v[i]))
                kiln_sbuf_f32(b, v[i]);
            else
                kiln_sbuf_puts(b, "null");
        } else {
            nested(b, v + i * inner, dims + 1, nd - 1);
        }
    }
    kiln_sbuf_putc(b, ']');
}

void serve_explain_handle(kiln_server *s, served_model *m, const version_sel *sel,
                          const kiln_http_request *req, kiln_http_response *resp,
                          const char **version_str) {
    cJSON *root = cJSON_ParseWithLength(req->body, req->body_len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        kiln_http_json_error(resp, 400,
                             "explain: the body must be a JSON object {\"instances\": "
                             "[...]} (or {\"inputs\": ...}) with optional "
                             "\"parameters\"");
        return;
    }
    kiln_explain_opts o = {0};
    cJSON *params = cJSON_DetachItemFromObject(root, "parameters");
    char *body = NULL;
    if (read_params(params, &o, resp) < 0 || !(body = cJSON_PrintUnformatted(root))) {
        if (!body && resp->status != 400) kiln_http_json_error(resp, 500, "explain: out of memory");
        cJSON_Delete(root), cJSON_Delete(params);
        return;
    }
    int code;
    served_version *v = serve_repo_acquire(m, sel, &code);
    if (!v) {
        kiln_http_json_error(resp, code, "%s", kiln_last_error());
        free(body), cJSON_Delete(root), cJSON_Delete(params);
        return;
    }
    *version_str = v->version_str;
    serve_thread_setup(s);
    kiln_instances in = {0};
    kiln_instances_spec spec = {v->row, NULL};
    kiln_status st =
        kiln_instances_read_data(&in, "request", body, strlen(body), KILN_INSTANCES_JSON, &spec);
    int status = 400;
    if (!st && in.n > MAX_INSTANCES)
        st = kiln_error(KILN_ERR_INVALID, "explain: %lld instances; at most %d per request",
                        (long long)in.n, MAX_INSTANCES);
    kiln_explainer *e = st ? NULL : kiln_explainer_from_servable(v->sv);
    if (!st && !e) st = KILN_ERR_BACKEND, status = 500;
    size_t rows = st ? 0 : (size_t)in.n, w = (size_t)v->in_row;
    float *x = st ? NULL : malloc(rows * w * sizeof *x),
          *attr = st ? NULL : calloc(rows * w, sizeof *attr);
    float *raw = st ? NULL : malloc(rows * w * sizeof *raw);
    float *out = st ? NULL : malloc(rows * (size_t)v->out_row * sizeof *out);
    float *probs = st || !v->has_probs ? NULL : malloc(rows * (size_t)v->out_row * sizeof *probs);
    kiln_explain_result *res = st ? NULL : calloc(rows, sizeof *res);
    if (!st && (!x || !attr || !raw || !out || !res || (v->has_probs && !probs)))
        st = kiln_error(KILN_ERR_NOMEM, "explain: out of memory"), status = 500;
    if (!st) {
        memcpy(raw, in.x, rows * w * sizeof *raw);
        st = kiln_servable_preprocess(v->sv, in.x, x, in.n);
        if (!st) st = serve_infer(s, v, raw, in.n, out, probs); /* raw is preprocessed in place */
        status = 500;
    }
    if (!st) {
        st = kiln_explain(e, &o, x, (int)in.n, attr, res);
        status = st == KILN_ERR_INVALID ? 400 : 500;
    }
    if (st) {
        kiln_http_json_error(resp, status, "%s", kiln_last_error());
    } else {
        kiln_sbuf b = KILN_SBUF_INIT;
        kiln_sbuf_puts(&b, "{\"predictions\":[");
        for (size_t i = 0; i < rows; i++) {
            int64_t od[1] = {v->out_row};
            kiln_sbuf_puts(&b, i ? "," : "");
            if (probs) kiln_sbuf_puts(&b, "{\"output\":");
            nested(&b, out + i * (size_t)v->out_row, od, 1);
            if (probs) {
                kiln_sbuf_puts(&b, ",\"probabilities\":");
                nested(&b, probs + i * (size_t)v->out_row, od, 1);
                kiln_sbuf_putc(&b, '}');
            }
        }
        kiln_sbuf_puts(&b, "],\"explanations\":[");
        int cam = o.method == KILN_EXPLAIN_GRADCAM || o.method == KILN_EXPLAIN_GRADCAM_PP;
        for (size_t i = 0; i < rows; i++) {
            const kiln_explain_result *r = &res[i];
            const char *cls = kiln_servable_class_name(v->sv, r->target);
            kiln_sbuf_puts(&b, i ? "," : "");
            kiln_explain_result_json(&b, &o, r, cls);
            b.len--; /* reopen the object */
            kiln_sbuf_puts(&b, ",\"attributions\":");
            int64_t dims[8];
            int nd = v->row.ndim < 8 ? v->row.ndim : 8;
            for (int d = 0; d < nd; d++) dims[d] = v->row.dims[d];
            if (cam)
                dims[0] = v->row.dims[v->row.ndim - 2], dims[1] = v->row.dims[v->row.ndim - 1],
                nd = 2;
            nested(&b, attr + i * w, dims, nd);
            kiln_sbuf_putc(&b, '}');
        }
        kiln_sbuf_puts(&b, "]}");
        kiln_http_body_sbuf(resp, &b);
    }
    free(x), free(attr), free(raw), free(out), free(probs), free(res);
    kiln_explainer_free(e);
    kiln_instances_free(&in);
    serve_version_release(v);
    free(body), cJSON_Delete(root), cJSON_Delete(params);
}

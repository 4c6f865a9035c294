/* job.c — one prediction request from its body to its answer, in either dialect.
 *
 *   POST /v1/models/m[/versions/v|/labels/l]:predict   TF Serving: {"instances"} or {"inputs"}
 *   POST /v2/models/m[/versions/v]/infer                Open Inference Protocol v2
 *
 * The version is taken (referenced) first, so the body is checked against the signature of
 * the version that will run it. The input is one tensor: [N, ...the row shape] or, as a
 * convenience for clients that send flat rows (CSV, the peers' servers), [N, row size]. Values
 * are raw, as in the training data; the version's preprocessing is applied when it runs.
 * Encoded images ({"b64": ...} instances) are decoded by the instance readers
 * (kiln_instances_image: size checked before any pixel is decoded, never resized).
 * Outputs written: "output" (the last layer), "probabilities" (classifiers) and "classes" (the
 * most probable class's name, when the classes are named); v2 requests may ask for a subset.
 * v2 requests may carry tensors as binary data after the JSON and ask for outputs that way
 * (Triton's binary tensor data extension, which tritonclient uses by default): the
 * Inference-Header-Content-Length header says where the JSON ends (0: the whole body is one
 * raw FP32 instance, Triton's raw binary request).
 * Without batching the job runs on the HTTP worker that parsed it; with batching it is parked
 * and a batch thread runs it. Either way answer.c writes the answer (serve_job_finish).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/instances_internal.h"
#include "serve/serve_internal.h"

/* The parser asks what each named input becomes: the model has one float input, read as bytes
 * (encoded images) when the body carries {"b64": ...} values. */
static kiln_status input_type(void *ctx, const char *signature_name, const char *name,
                              kiln_tj_type *type) {
    serve_job *j = ctx;
    const char *want = kiln_servable_input(j->v->sv, 0)->name;
    if (*name && strcmp(name, want) != 0)
        return kiln_error(KILN_ERR_INVALID, "unknown input '%.64s' (model %s takes '%s')", name,
                          j->v->model->name, want);
    *type = j->images ? KILN_TJ_BYTES : KILN_TJ_F32;
    return KILN_OK;
}

/* Instances given as encoded images, one per instance: decoded into j->x [rows, in_row]. */
static kiln_status decode_images(serve_job *j, const kiln_tj_tensor *t) {
    served_version *v = j->v;
    const char *what = j->req.format == KILN_TJ_TF_ROW ? "instances" : "inputs";
    if (t->shape.ndim != 1 || t->shape.dims[0] < 1)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: encoded images go one per instance ({\"b64\": ...} each)", what);
    int64_t rows = t->shape.dims[0];
    if (!(j->x_owned = malloc((size_t)(rows * v->in_row) * sizeof *j->x_owned)))
        return kiln_error(KILN_ERR_NOMEM, "out of memory decoding %lld images", (long long)rows);
    for (int64_t r = 0; r < rows; r++) {
        char where[48];
        snprintf(where, sizeof where, "%s[%lld]", what, (long long)r);
        kiln_status st = kiln_instances_image(where, (const unsigned char *)t->data + t->offsets[r],
                                              (size_t)(t->offsets[r + 1] - t->offsets[r]), &v->row,
                                              j->x_owned + r * v->in_row);
        if (st) return st;
    }
    j->rows = rows;
    j->x = j->x_owned;
    return KILN_OK;
}

/* Checks the parsed input against the signature; rows into j->rows. */
static kiln_status check_input(serve_job *j) {
    served_version *v = j->v;
    const kiln_servable_tensor *in = kiln_servable_input(v->sv, 0);
    if (j->req.n_inputs != 1)
        return kiln_error(KILN_ERR_INVALID, "model %s takes one input ('%s'), the request has %d",
                          v->model->name, in->name, j->req.n_inputs);
    kiln_tj_tensor *t = &j->req.inputs[0];
    if (j->api == API_V2 && strcmp(t->name, in->name) != 0)
        return kiln_error(KILN_ERR_INVALID, "unknown input '%.64s' (model %s takes '%s')",
                          t->name, v->model->name, in->name);
    if (t->type == KILN_TJ_BYTES) return decode_images(j, t);
    /* the rule `kiln predict` applies to the same instances */
    char what[200], s[96];
    if (j->api == API_V2)
        snprintf(what, sizeof what, "input '%s' (shape %s: the instances along the first dim)",
                 in->name, kiln_shape_str(&t->shape, s, sizeof s));
    else
        snprintf(what, sizeof what, "%s",
                 j->req.format == KILN_TJ_TF_ROW ? "instances" : "inputs");
    kiln_status st = kiln_instances_check_batch(what, &t->shape, &v->row, v->model->name);
    if (st) return st;
    j->rows = t->shape.dims[0];
    j->x = t->data;
    return KILN_OK;
}

/* Which outputs the request wants (v2 may name them), and which go as binary data (v2). */
static kiln_status choose_outputs(serve_job *j) {
    served_version *v = j->v;
    unsigned all = OUT_LOGITS | (v->has_probs ? OUT_PROBS : 0) |
                   (v->has_probs && v->n_classes ? OUT_CLASSES : 0);
    if (j->api == API_V1 || j->req.n_outputs == 0) {
        j->want = all;
        j->binary = j->api == API_V2 && j->req.binary_data_output ? all : 0;
        return KILN_OK;
    }
    j->want = 0, j->binary = 0;
    for (int i = 0; i < j->req.n_outputs; i++) {
        const char *n = j->req.outputs[i];
        unsigned bit = strcmp(n, "output") == 0          ? OUT_LOGITS
                       : strcmp(n, "probabilities") == 0 ? OUT_PROBS
                       : strcmp(n, "classes") == 0       ? OUT_CLASSES
                                                         : 0;
        if (!(bit & all))
            return kiln_error(KILN_ERR_INVALID, "outputs[%d]: model %s has no output '%.64s' "
                              "(it has: output%s%s)", i, v->model->name, n,
                              all & OUT_PROBS ? ", probabilities" : "",
                              all & OUT_CLASSES ? ", classes" : "");
        j->want |= bit;
        if (j->req.outputs_binary && j->req.outputs_binary[i]) j->binary |= bit;
    }
    return KILN_OK;
}

/* Triton's Inference-Header-Content-Length: the JSON's length when binary tensor data follows
 * it; *json_len stays the body's length without the header. 0 is a raw binary request. */
static kiln_status header_length(const kiln_http_request *req, size_t *json_len, int *given) {
    const char *h = kiln_http_header(req, "Inference-Header-Content-Length");
    *json_len = req->body_len, *given = h != NULL;
    if (!h) return KILN_OK;
    uint64_t v = 0;
    const char *p = h;
    while (*p == ' ' || *p == '\t') p++;
    const char *digits = p;
    while (*p >= '0' && *p <= '9' && v <= req->body_len) v = v * 10 + (uint64_t)(*p++ - '0');
    while (*p == ' ' || *p == '\t') p++;
    if (p == digits || *p || v > req->body_len)
        return kiln_error(KILN_ERR_INVALID,
                          "Inference-Header-Content-Length: '%.32s' is not a "
                          "length from 0 to the body's %zu bytes",
                          h, req->body_len);
    *json_len = (size_t)v;
    return KILN_OK;
}

/* Parses the body in the request's dialect (v2: with binary tensor data, or a raw binary
 * request, when Inference-Header-Content-Length says so). */
static kiln_status parse_body(serve_job *j, const kiln_http_request *req,
                              const kiln_tj_schema *schema) {
    if (j->api == API_V1) return kiln_tj_parse_tf(req->body, req->body_len, schema, &j->req);
    size_t json_len;
    int given;
    kiln_status st = header_length(req, &json_len, &given);
    if (st) return st;
    if (!given) return kiln_tj_parse_v2(req->body, req->body_len, schema, &j->req);
    if (json_len > 0)
        return kiln_tj_parse_v2_binary(req->body, req->body_len, json_len, schema, &j->req);
    /* raw: the body is one instance of the model's input (Triton: a batch-1 request) */
    const kiln_servable_tensor *in = kiln_servable_input(j->v->sv, 0);
    kiln_shape shape = in->shape;
    shape.dims[0] = 1;
    return kiln_tj_parse_v2_raw(req->body, req->body_len, in->name, "FP32", &shape, schema,
                                &j->req);
}

static int status_of(kiln_status st) {
    return st == KILN_ERR_NOMEM ? 500 : st == KILN_ERR_BACKEND ? 500 : 400;
}

/* Whether the body holds the string "b64" (a {"b64": ...} value): memchr over the quotes (a
 * body of numbers has a few) instead of memmem over every byte. */
static int has_b64_key(const char *body, size_t len) {
    const char *p = body, *end = body + len;
    while (p && end - p >= 5) {
        p = memchr(p, '"', (size_t)(end - p - 4));
        if (!p) return 0;
        if (!memcmp(p, "\"b64\"", 5)) return 1;
        p++;
    }
    return 0;
}

void serve_job_handle(kiln_server *s, served_model *m, const version_sel *sel, serve_api api,
                      const kiln_http_request *req, kiln_http_response *resp) {
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int code = 0;
    served_version *v = serve_repo_acquire(m, sel, &code);
    if (!v) {
        kiln_http_json_error(resp, code, "%s", kiln_last_error());
        serve_count(s, m->name, "", serve_api_name(api), code, &start);
        return;
    }
    serve_job *j = calloc(1, sizeof *j);
    if (!j) {
        kiln_http_json_error(resp, 500, "out of memory");
        serve_count(s, m->name, v->version_str, serve_api_name(api), 500, &start);
        serve_version_release(v);
        return;
    }
    j->srv = s, j->v = v, j->api = api, j->start = start;
    /* TF bodies with {"b64": ...} values carry encoded images (v2 has no such form). */
    j->images = api == API_V1 && has_b64_key(req->body, req->body_len);
    kiln_tj_schema schema = {input_type, j};
    kiln_status st = parse_body(j, req, &schema);
    if (!st && api == API_V1 && j->req.signature_name && *j->req.signature_name &&
        strcmp(j->req.signature_name, "serving_default") != 0)
        st = kiln_error(KILN_ERR_INVALID,
                        "Serving signature name: \"%.64s\" not found in signature def (model %s "
                        "has \"serving_default\")",
                        j->req.signature_name, m->name);
    if (!st) st = check_input(j);
    if (!st) st = choose_outputs(j);
    if (!st) {
        j->out = malloc((size_t)(j->rows * v->out_row) * sizeof *j->out);
        j->probs = v->has_probs ? malloc((size_t)(j->rows * v->out_row) * sizeof *j->probs) : NULL;
        if (!j->out || (v->has_probs && !j->probs)) st = kiln_error(KILN_ERR_NOMEM, "out of memory");
    }
    if (st) {
        serve_job_finish(j, resp, status_of(st), kiln_last_error());
        return;
    }
    if (s->batcher) {
        if (serve_batcher_submit(s->batcher, j, req) == 0) return; /* answered by a batch thread */
        serve_job_finish(j, resp, 429,
                         "the batching queue is full (max_enqueued_batches); retry later");
        return;
    }
    st = serve_infer(s, v, j->x, j->rows, j->out, j->probs);
    serve_job_finish(j, resp, st ? 500 : 0, st ? kiln_last_error() : NULL);
}

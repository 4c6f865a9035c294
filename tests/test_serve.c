/* test_serve.c — the model server over real HTTP on 127.0.0.1 (libcurl as the client).
 *
 * A small classifier is exported with random weights into a temporary base folder; expected
 * answers are computed with the servable API directly and written with the same JSON writers,
 * so responses are compared byte for byte. Covered: every route of both dialects, the error
 * statuses (and that the server stays healthy after them), version labels and policies, a
 * corrupt version skipped while the previous one serves, hot reload of 5 versions under
 * concurrent load (no failed request, every answer from a loaded version and right for it),
 * dynamic batching (results, 429 on a full queue) and a graceful stop with a parked request.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "check.h"
#include "kiln/export.h"
#include "kiln/fileio.h"
#include "kiln/serve.h"
#include "kiln/tensor_json.h"

static char root[256];

static const char *at(const char *rel) {
    static _Thread_local char buf[4][512];
    static _Thread_local int k;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, rel);
    return buf[k];
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

/* ---- the model ---- */

static const char *YAML = "experiment: served\n"
                          "seed: 3\n"
                          "data: {source: npy, train: {x: a.npy, y: b.npy}}\n"
                          "loss: softmax_cross_entropy\n"
                          "model:\n"
                          "  input: [1, 4, 4]\n"
                          "  class_names: [ant, bee, 'cat \"c\"']\n"
                          "  layers:\n"
                          "    - flatten\n"
                          "    - dense: {units: 8, activation: relu}\n"
                          "    - dense: {units: 3}\n";
enum { ROW = 16, K = 3 };

static kiln_cfg *cfg;
static kiln_model model;

/* Exports version v (weights from stream v) into base. */
static void export_version(const char *base, int64_t v) {
    kiln_graph *g = model.graph;
    for (int i = 0; i < kiln_graph_param_count(g); i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        kiln_test_fill(kiln_graph_params(g) + pi->offset, pi->numel, -0.8f, 0.8f,
                       (uint64_t)(1000 * v + i));
    }
    kiln_export_source src = {.model = &model, .cfg = cfg, .preprocessing = {.scale = 1.0f / 255}};
    int64_t got = 0;
    CHECK_OK(kiln_export_graph(&src, base, v, &got));
    CHECK(got == v);
}

/* The expected outputs of version v of base for raw rows x [rows, ROW]. */
static void expect(const char *base, int64_t v, const float *x, int rows, float *out, float *probs) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%lld", base, (long long)v);
    kiln_servable *s = NULL;
    CHECK_OK(kiln_servable_load(dir, &s));
    if (!s) return;
    float *xx = malloc((size_t)rows * ROW * sizeof *xx);
    CHECK_OK(kiln_servable_preprocess(s, x, xx, rows));
    kiln_plan *p = kiln_servable_plan_new(s, rows);
    CHECK_OK(kiln_servable_predict(s, p, xx, rows, out, probs));
    kiln_plan_free(p);
    kiln_servable_free(s);
    free(xx);
}

static const char *CLASS[K] = {"ant", "bee", "cat \"c\""};

static void classes_of(const float *probs, int rows, const char **names) {
    for (int r = 0; r < rows; r++) {
        int best = 0;
        for (int c = 1; c < K; c++)
            if (probs[r * K + c] > probs[r * K + best]) best = c;
        names[r] = CLASS[best];
    }
}

/* The body a TF row-format answer must be, byte for byte. */
static char *expected_tf_row(const char *base, int64_t v, const float *x, int rows) {
    float out[64 * K], probs[64 * K];
    const char *names[64];
    expect(base, v, x, rows, out, probs);
    classes_of(probs, rows, names);
    kiln_tj_output o[3] = {
        {"output", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){rows, K}), out},
        {"probabilities", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){rows, K}), probs},
        {"classes", KILN_TJ_BYTES, kiln_shape_make(1, (int64_t[]){rows}), names}};
    kiln_sbuf b = KILN_SBUF_INIT;
    CHECK_OK(kiln_tj_write_tf_row(&b, o, 3));
    return kiln_sbuf_take(&b, NULL);
}

static char *expected_v2(const char *base, int64_t v, const float *x, int rows, const char *id,
                         unsigned want) {
    float out[64 * K], probs[64 * K];
    const char *names[64];
    expect(base, v, x, rows, out, probs);
    classes_of(probs, rows, names);
    kiln_tj_output all[3] = {
        {"output", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){rows, K}), out},
        {"probabilities", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){rows, K}), probs},
        {"classes", KILN_TJ_BYTES, kiln_shape_make(1, (int64_t[]){rows}), names}},
                   o[3];
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (want & (1u << i)) o[n++] = all[i];
    char vs[24];
    snprintf(vs, sizeof vs, "%lld", (long long)v);
    kiln_sbuf b = KILN_SBUF_INIT;
    CHECK_OK(kiln_tj_write_v2(&b, "m", vs, id, o, n));
    return kiln_sbuf_take(&b, NULL);
}

/* rows raw instances: pixel-like values 0..255. */
static void instances(float *x, int rows, uint64_t stream) {
    kiln_test_fill(x, (size_t)rows * ROW, 0, 255, stream);
    for (int i = 0; i < rows * ROW; i++) x[i] = (float)(int)x[i];
}

/* {"instances": [[...16...], ...]} (flat rows) */
static char *tf_body(const float *x, int rows) {
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"instances\":[");
    for (int r = 0; r < rows; r++) {
        kiln_sbuf_puts(&b, r ? ",[" : "[");
        for (int j = 0; j < ROW; j++) kiln_sbuf_printf(&b, "%s%g", j ? "," : "", x[r * ROW + j]);
        kiln_sbuf_putc(&b, ']');
    }
    kiln_sbuf_puts(&b, "]}");
    return kiln_sbuf_take(&b, NULL);
}

/* ---- the client ---- */

typedef struct {
    CURL *h;
    int port;
    long status;
    kiln_sbuf body;
} client;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
    kiln_sbuf_put(ud, p, sz * n);
    return sz * n;
}

static void client_init(client *c, int port) {
    memset(c, 0, sizeof *c);
    c->h = curl_easy_init();
    c->port = port;
}
static void client_free(client *c) {
    curl_easy_cleanup(c->h);
    kiln_sbuf_free(&c->body);
}

/* One request; body NULL means GET. The answer in c->status and c->body.data. */
static const char *req(client *c, const char *method, const char *path, const char *body) {
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", c->port, path);
    kiln_sbuf_clear(&c->body);
    curl_easy_reset(c->h);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->body);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c->h, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 30L);
    if (body) {
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    c->status = 0;
    if (curl_easy_perform(c->h) == CURLE_OK)
        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->status);
    return c->body.data ? c->body.data : "";
}

#define CHECK_BODY(c, want)                                                                        \
    CHECK_MSG(strcmp((c)->body.data ? (c)->body.data : "", want) == 0, "body\n    %s\nwanted\n    %s", \
              (c)->body.data ? (c)->body.data : "", want)
#define CHECK_STATUS(c, code)                                                                      \
    CHECK_MSG((c)->status == (code), "status %ld (wanted %d), body %s", (c)->status, code,         \
              (c)->body.data ? (c)->body.data : "")
#define CHECK_HAS(c, sub)                                                                          \
    CHECK_MSG(strstr((c)->body.data ? (c)->body.data : "", sub) != NULL, "body %s lacks %s",       \
              (c)->body.data ? (c)->body.data : "", sub)

/* Batching runs rows in larger plans than the reference, whose kernels may round the last bit
 * differently: answers are then compared as JSON, numbers within 1e-5 relative. */
static int same_json(const cJSON *a, const cJSON *b) {
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
        return fabs(a->valuedouble - b->valuedouble) <= 1e-5 * (1 + fabs(b->valuedouble));
    if ((a->type & 0xff) != (b->type & 0xff)) return 0;
    if (cJSON_IsString(a)) return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsArray(a) || cJSON_IsObject(a)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next)
            if ((cJSON_IsObject(a) && strcmp(x->string, y->string) != 0) || !same_json(x, y))
                return 0;
        return !x && !y;
    }
    return cJSON_Compare(a, b, 1);
}

static int same_answer(const char *got, const char *want) {
    cJSON *a = cJSON_Parse(got), *b = cJSON_Parse(want);
    int same = a && b && same_json(a, b);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return same;
}

/* ---- server helpers ---- */

static kiln_sbuf logbuf = KILN_SBUF_INIT;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static void log_to_buf(void *ctx, const char *line) {
    pthread_mutex_lock(&log_mu);
    kiln_sbuf_puts(&logbuf, line);
    kiln_sbuf_putc(&logbuf, '\n');
    pthread_mutex_unlock(&log_mu);
}

static kiln_server *start(const kiln_serve_model *models, int n, double poll,
                          kiln_serve_batching batching) {
    kiln_serve_config c = {.host = "127.0.0.1",
                           .http_threads = 2,
                           .poll_wait_seconds = poll,
                           .drain_seconds = 5,
                           .models = models,
                           .n_models = n,
                           .batching = batching,
                           .log = log_to_buf};
    kiln_server *s = kiln_serve_start(&c);
    CHECK_MSG(s != NULL, "%s", kiln_last_error());
    return s;
}

/* ---- tests ---- */

static void test_v1(void) {
    const char *base = at("v1");
    export_version(base, 1);
    export_version(base, 2);
    kiln_version_label labels[] = {{"stable", 1}, {"canary", 2}};
    kiln_serve_model m = {.name = "m", .base_path = base, .policy = KILN_VERSIONS_ALL,
                          .labels = labels, .n_labels = 2};
    kiln_server *s = start(&m, 1, 0, (kiln_serve_batching){0});
    if (!s) return;
    client c;
    client_init(&c, kiln_serve_port(s));

    req(&c, "GET", "/v1/models/m", NULL);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, "{\"model_version_status\":["
                   "{\"version\":\"2\",\"state\":\"AVAILABLE\",\"status\":{\"error_code\":\"OK\","
                   "\"error_message\":\"\"}},"
                   "{\"version\":\"1\",\"state\":\"AVAILABLE\",\"status\":{\"error_code\":\"OK\","
                   "\"error_message\":\"\"}}]}");
    req(&c, "GET", "/v1/models/m/versions/1", NULL);
    CHECK_BODY(&c, "{\"model_version_status\":[{\"version\":\"1\",\"state\":\"AVAILABLE\","
                   "\"status\":{\"error_code\":\"OK\",\"error_message\":\"\"}}]}");
    req(&c, "GET", "/v1/models/m/labels/canary", NULL);
    CHECK_HAS(&c, "{\"version\":\"2\"");
    /* "01" is version 1, as in TF Serving (\d+ read by SimpleAtoi) */
    req(&c, "GET", "/v1/models/m/versions/001", NULL);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, "{\"model_version_status\":[{\"version\":\"1\",\"state\":\"AVAILABLE\","
                   "\"status\":{\"error_code\":\"OK\",\"error_message\":\"\"}}]}");
    /* an unknown label is a bad request (TF Serving: INVALID_ARGUMENT), naming the known ones */
    req(&c, "GET", "/v1/models/m/labels/stabel", NULL);
    CHECK_STATUS(&c, 400);
    CHECK_BODY(&c, "{\"error\": \"Unrecognized servable version label: stabel (model m has labels "
                   "stable, canary)\"}");

    req(&c, "GET", "/v1/models/m/versions/1/metadata", NULL);
    CHECK_STATUS(&c, 200);
    CHECK_HAS(&c, "{\"model_spec\":{\"name\":\"m\",\"signature_name\":\"\",\"version\":\"1\"},"
                  "\"metadata\":{\"signature_def\":{\"signature_def\":{\"serving_default\":{"
                  "\"inputs\":{\"input\":{\"dtype\":\"DT_FLOAT\",\"tensor_shape\":{\"dim\":["
                  "{\"size\":\"-1\",\"name\":\"\"},{\"size\":\"1\",\"name\":\"\"},{\"size\":\"4\","
                  "\"name\":\"\"},{\"size\":\"4\",\"name\":\"\"}],\"unknown_rank\":false},"
                  "\"name\":\"input\"}},\"outputs\":{\"output\":{\"dtype\":\"DT_FLOAT\"");
    CHECK_HAS(&c, "\"classes\":{\"dtype\":\"DT_STRING\",\"tensor_shape\":{\"dim\":[{\"size\":"
                  "\"-1\",\"name\":\"\"}],\"unknown_rank\":false},\"name\":\"classes\"}},"
                  "\"method_name\":\"tensorflow/serving/predict\"}}},\"kiln\":{\"task\":"
                  "\"classification\",\"class_names\":[\"ant\",\"bee\",\"cat \\\"c\\\"\"],"
                  "\"preprocessing\":{\"scale\":0.003921569,\"mean\":null,\"std\":null}");

    /* row format, flat rows; latest is version 2 */
    float x[5 * ROW];
    instances(x, 5, 77);
    char *body = tf_body(x, 5), *want = expected_tf_row(base, 2, x, 5);
    req(&c, "POST", "/v1/models/m:predict", body);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, want);
    free(want);
    /* a label and a version pick theirs */
    want = expected_tf_row(base, 1, x, 5);
    req(&c, "POST", "/v1/models/m/labels/stable:predict", body);
    CHECK_BODY(&c, want);
    req(&c, "POST", "/v1/models/m/versions/1:predict", body);
    CHECK_BODY(&c, want);
    req(&c, "POST", "/v1/models/m/versions/01:predict", body);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, want);
    free(want);
    free(body);

    /* nested rows [1, 4, 4], named input, signature_name, one instance */
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"signature_name\": \"serving_default\", \"instances\": [{\"input\": [[");
    for (int i = 0; i < 4; i++) {
        kiln_sbuf_puts(&b, i ? ",[" : "[");
        for (int j = 0; j < 4; j++) kiln_sbuf_printf(&b, "%s%g", j ? "," : "", x[i * 4 + j]);
        kiln_sbuf_putc(&b, ']');
    }
    kiln_sbuf_puts(&b, "]]}]}");
    want = expected_tf_row(base, 2, x, 1);
    req(&c, "POST", "/v1/models/m:predict", b.data);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, want);
    free(want);

    /* NaN, Infinity and -Infinity in a request, as TF Serving takes them (api_rest.md, "JSON
     * conformance"); the answer is what the model makes of them, written the same way */
    {
        float nf[2 * ROW];
        memcpy(nf, x, sizeof nf);
        nf[3] = NAN, nf[ROW + 5] = INFINITY, nf[ROW + 6] = -INFINITY;
        kiln_sbuf_clear(&b);
        kiln_sbuf_puts(&b, "{\"instances\": [");
        for (int i = 0; i < 2 * ROW; i++) {
            kiln_sbuf_puts(&b, i % ROW ? "," : i ? "],[" : "[");
            if (isnan(nf[i]))
                kiln_sbuf_puts(&b, "NaN");
            else if (isinf(nf[i]))
                kiln_sbuf_puts(&b, nf[i] > 0 ? "Infinity" : "-Infinity");
            else
                kiln_sbuf_printf(&b, "%g", nf[i]);
        }
        kiln_sbuf_puts(&b, "]]}");
        want = expected_tf_row(base, 2, nf, 2);
        req(&c, "POST", "/v1/models/m:predict", b.data);
        CHECK_STATUS(&c, 200);
        CHECK_BODY(&c, want);
        CHECK_HAS(&c, "NaN"); /* a NaN pixel makes NaN logits */
        free(want);
    }

    /* the same instance without its leading 1: [4, 4] for the row [1, 4, 4] (the rule of
     * kiln predict: dims of size 1 come and go) */
    kiln_sbuf_clear(&b);
    kiln_sbuf_puts(&b, "{\"instances\": [[");
    for (int i = 0; i < 4; i++) {
        kiln_sbuf_puts(&b, i ? ",[" : "[");
        for (int j = 0; j < 4; j++) kiln_sbuf_printf(&b, "%s%g", j ? "," : "", x[i * 4 + j]);
        kiln_sbuf_putc(&b, ']');
    }
    kiln_sbuf_puts(&b, "]]}");
    want = expected_tf_row(base, 2, x, 1);
    req(&c, "POST", "/v1/models/m:predict", b.data);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, want);
    free(want);

    /* columnar: {"inputs": [[...]]} answers {"outputs": {...}} */
    kiln_sbuf_clear(&b);
    kiln_sbuf_puts(&b, "{\"inputs\": [[");
    for (int j = 0; j < ROW; j++) kiln_sbuf_printf(&b, "%s%g", j ? "," : "", x[j]);
    kiln_sbuf_puts(&b, "]]}");
    req(&c, "POST", "/v1/models/m:predict", b.data);
    CHECK_STATUS(&c, 200);
    float out[K], probs[K];
    const char *names[1];
    expect(base, 2, x, 1, out, probs);
    classes_of(probs, 1, names);
    kiln_tj_output o[3] = {{"output", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){1, K}), out},
                           {"probabilities", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){1, K}), probs},
                           {"classes", KILN_TJ_BYTES, kiln_shape_make(1, (int64_t[]){1}), names}};
    kiln_sbuf w = KILN_SBUF_INIT;
    CHECK_OK(kiln_tj_write_tf_columnar(&w, o, 3));
    CHECK_BODY(&c, w.data);
    kiln_sbuf_free(&w);
    kiln_sbuf_free(&b);

    /* HEAD gets the headers only */
    req(&c, "HEAD", "/v1/models/m", NULL);
    CHECK_STATUS(&c, 200);
    client_free(&c);
    kiln_serve_stop(s);
}

static void test_v2(void) {
    const char *base = at("v2");
    export_version(base, 4);
    kiln_serve_model m = {.name = "m", .base_path = base};
    kiln_server *s = start(&m, 1, 0, (kiln_serve_batching){0});
    if (!s) return;
    client c;
    client_init(&c, kiln_serve_port(s));
    req(&c, "GET", "/v2", NULL);
    CHECK_BODY(&c, "{\"name\":\"kiln\",\"version\":\"" KILN_VERSION
                   "\",\"extensions\":[\"binary_tensor_data\"]}");
    req(&c, "GET", "/v2/health/live", NULL);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, "{\"live\":true}");
    req(&c, "GET", "/v2/health/ready", NULL);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, "{\"ready\":true}");
    const char *meta = "{\"name\":\"m\",\"versions\":[\"4\"],\"platform\":\"kiln\",\"inputs\":[{"
                       "\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[-1,1,4,4]}],"
                       "\"outputs\":[{\"name\":\"output\",\"datatype\":\"FP32\",\"shape\":[-1,3]},"
                       "{\"name\":\"probabilities\",\"datatype\":\"FP32\",\"shape\":[-1,3]},"
                       "{\"name\":\"classes\",\"datatype\":\"BYTES\",\"shape\":[-1]}]}";
    req(&c, "GET", "/v2/models/m", NULL);
    CHECK_BODY(&c, meta);
    req(&c, "GET", "/v2/models/m/versions/4", NULL);
    CHECK_BODY(&c, meta);
    req(&c, "GET", "/v2/models/m/ready", NULL);
    CHECK_BODY(&c, "{\"name\":\"m\",\"ready\":true}");
    req(&c, "GET", "/v2/models/m/versions/4/ready", NULL);
    CHECK_BODY(&c, "{\"name\":\"m\",\"ready\":true}");
    req(&c, "GET", "/v2/models/m/versions/04/ready", NULL); /* "04" is version 4 (Triton) */
    CHECK_BODY(&c, "{\"name\":\"m\",\"ready\":true}");
    req(&c, "GET", "/v2/models/m/versions/004", NULL);
    CHECK_BODY(&c, meta);
    /* a version never seen is unknown, as for the other routes: 404 {"error"} */
    req(&c, "GET", "/v2/models/m/versions/5/ready", NULL);
    CHECK_STATUS(&c, 404);
    CHECK_BODY(&c, "{\"error\": \"Servable not found for request: Specific(m, 5)\"}");

    /* infer with every datatype, flat and nested data, an id, requested outputs */
    float x[2 * ROW];
    instances(x, 2, 5);
    static const char *types[] = {"FP32", "FP64", "INT32", "INT64", "UINT8"};
    for (int t = 0; t < 5; t++) {
        kiln_sbuf b = KILN_SBUF_INIT;
        kiln_sbuf_printf(&b, "{\"id\": \"req-%d\", \"inputs\": [{\"name\": \"input\", \"shape\": "
                             "[2, 1, 4, 4], \"datatype\": \"%s\", \"data\": [",
                         t, types[t]);
        for (int i = 0; i < 2 * ROW; i++) {
            if (t % 2 && i % ROW == 0) kiln_sbuf_puts(&b, i ? "],[" : "[");
            else if (i) kiln_sbuf_putc(&b, ',');
            kiln_sbuf_printf(&b, "%g", x[i]);
        }
        kiln_sbuf_puts(&b, t % 2 ? "]]}]}" : "]}]}");
        char id[16];
        snprintf(id, sizeof id, "req-%d", t);
        char *want = expected_v2(base, 4, x, 2, id, 7);
        req(&c, "POST", "/v2/models/m/infer", b.data);
        CHECK_STATUS(&c, 200);
        CHECK_BODY(&c, want);
        free(want);
        kiln_sbuf_free(&b);
    }
    /* instances of shape [4, 4] for the row [1, 4, 4]: [2, 4, 4] */
    {
        kiln_sbuf b = KILN_SBUF_INIT;
        kiln_sbuf_puts(&b, "{\"inputs\": [{\"name\": \"input\", \"shape\": [2, 4, 4], "
                           "\"datatype\": \"FP32\", \"data\": [");
        for (int i = 0; i < 2 * ROW; i++) kiln_sbuf_printf(&b, "%s%g", i ? "," : "", x[i]);
        kiln_sbuf_puts(&b, "]}]}");
        char *want = expected_v2(base, 4, x, 2, NULL, 7);
        req(&c, "POST", "/v2/models/m/infer", b.data);
        CHECK_STATUS(&c, 200);
        CHECK_BODY(&c, want);
        free(want);
        kiln_sbuf_free(&b);
    }
    /* BOOL values (0/1 pixels) and a requested subset, flat [1, 16] */
    float ones[ROW];
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 16], \"datatype\": "
                       "\"BOOL\", \"data\": [");
    for (int j = 0; j < ROW; j++) {
        ones[j] = (float)(j % 3 == 0);
        kiln_sbuf_printf(&b, "%s%s", j ? "," : "", j % 3 == 0 ? "true" : "false");
    }
    kiln_sbuf_puts(&b, "]}], \"outputs\": [{\"name\": \"classes\"}, {\"name\": \"output\"}]}");
    char *want = expected_v2(base, 4, ones, 1, NULL, 1 | 4);
    req(&c, "POST", "/v2/models/m/versions/4/infer", b.data);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, want);
    free(want);
    kiln_sbuf_free(&b);
    client_free(&c);
    kiln_serve_stop(s);
}

/* A body of n bytes, sent as it is read (never held whole). */
typedef struct {
    size_t left;
} big_body;
static size_t read_big(char *p, size_t sz, size_t n, void *ud) {
    big_body *b = ud;
    size_t k = sz * n < b->left ? sz * n : b->left;
    memset(p, ' ', k);
    b->left -= k;
    return k;
}

static void test_errors(void) {
    const char *base = at("err");
    export_version(base, 1);
    kiln_serve_model m = {.name = "m", .base_path = base};
    kiln_server *s = start(&m, 1, 0, (kiln_serve_batching){0});
    if (!s) return;
    client c;
    client_init(&c, kiln_serve_port(s));
    struct {
        const char *method, *path, *body;
        int status;
        const char *has;
    } cases[] = {
        {"POST", "/v1/models/m:predict", "{\"instances\": [[1, 2,", 400, "line 1"},
        {"POST", "/v1/models/m:predict", "", 400, "\"error\""},
        {"POST", "/v1/models/m:predict", "{\"instances\": [[1, 2, 3]]}", 400,
         "instances: each instance has shape [3], but model m's input row is [1, 4, 4] (16 "
         "values): give instances in that shape or flat lists of 16 numbers"},
        {"POST", "/v1/models/m:predict", "{\"instances\": [[[1, 2], [3, 4]]]}", 400,
         "instances: each instance has shape [2, 2], but model m's input row is [1, 4, 4]"},
        {"POST", "/v1/models/m:predict", "{\"inputs\": [[[1, 2], [3, 4]]]}", 400,
         "inputs: each instance has shape [2, 2], but"},
        {"POST", "/v2/models/m/infer", "{\"inputs\": [{\"name\": \"input\", \"shape\": [4, 4], "
                                       "\"datatype\": \"FP32\", \"data\": [0,0,0,0,0,0,0,0,0,0,0,"
                                       "0,0,0,0,0]}]}",
         400, "input 'input' (shape [4, 4]: the instances along the first dim): each instance has "
              "shape [4], but model m's input row is [1, 4, 4]"},
        {"POST", "/v1/models/m:predict", "{\"instances\": []}", 400, "\"error\""},
        {"POST", "/v1/models/m:predict", "{\"instances\": [[\"a\", 1]]}", 400, "\"error\""},
        {"POST", "/v1/models/m:predict",
         "{\"instances\": [[NaN,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\"0\"]]}", 400,
         "instances[0][15]: expected a number, got a string"},
        {"POST", "/v1/models/m:predict",
         "{\"instances\": [[NaN,0,0,0,0,0,0,0,0,0,0,0,0,0,0,Nan]]}", 400,
         "invalid JSON at line 1, column 49"},
        {"POST", "/v1/models/m:predict",
         "{\"signature_name\": \"other\", \"instances\": [[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}",
         400, "Serving signature name: \\\"other\\\" not found"},
        {"POST", "/v1/models/m:predict", "{\"instances\": [{\"x\": [1]}]}", 400,
         "unknown input 'x' (model m takes 'input')"},
        {"POST", "/v1/models/nope:predict", "{\"instances\": [[1]]}", 404, "nope"},
        {"POST", "/v1/models/m/versions/9:predict", "{\"instances\": [[1]]}", 404,
         "Specific(m, 9)"},
        /* TF Serving's codes and words (http_rest_api_handler.cc, server_core.cc) */
        {"POST", "/v1/models/m/versions/x1:predict", "{}", 400,
         "Malformed request: POST /v1/models/m/versions/x1:predict"},
        {"GET", "/v1/models/m/versions/99999999999999999999", NULL, 400,
         "Failed to convert version: 99999999999999999999 to numeric."},
        {"POST", "/v1/models/m/labels/prod:predict", "{}", 400,
         "Unrecognized servable version label: prod (model m has no labels)"},
        {"GET", "/v1/models/m/labels/prod", NULL, 400, "Unrecognized servable version label"},
        {"GET", "/v1/models/m/labels/prod/metadata", NULL, 400, "version label: prod"},
        {"GET", "/v1/models", NULL, 400, "Missing model name in request."},
        {"GET", "/v1/models/", NULL, 400, "Malformed request: GET /v1/models/"},
        {"GET", "/v1/models/m/versions/0", NULL, 404, "Could not find version 0 of model m"},
        {"GET", "/v1/models/m/versions/9", NULL, 404, "Could not find version 9 of model m"},
        {"GET", "/v2/models/m/versions/9/ready", NULL, 404, "Specific(m, 9)"},
        {"GET", "/v2/models/m/versions/x/ready", NULL, 400, "version 'x'"},
        {"GET", "/v1/models/m:predict", NULL, 405, "use POST"},
        {"POST", "/v1/models/m", "{}", 405, "use GET"},
        {"POST", "/v1/models/m:classify", "{}", 400, "use :predict"},
        {"GET", "/v1/other", NULL, 400, "Malformed request: GET /v1/other"},
        {"GET", "/v2/other", NULL, 404, "no route"},
        {"GET", "/v2/models/nope", NULL, 404, "Model nope not found"},
        {"POST", "/v2/models/m/infer", "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 16], "
                                       "\"datatype\": \"FP16\", \"data\": [1]}]}",
         400, "FP16"},
        {"POST", "/v2/models/m/infer", "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 16], "
                                       "\"datatype\": \"FP32\", \"data\": [1, 2]}]}",
         400, "needs 16 values"},
        {"POST", "/v2/models/m/infer", "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 16], "
                                       "\"datatype\": \"INT32\", \"data\": [1.5,0,0,0,0,0,0,0,0,0,"
                                       "0,0,0,0,0,0]}]}",
         400, "not an integer"},
        {"POST", "/v2/models/m/infer", "{\"inputs\": [{\"name\": \"image\", \"shape\": [1, 16], "
                                       "\"datatype\": \"FP32\", \"data\": [0,0,0,0,0,0,0,0,0,0,0,"
                                       "0,0,0,0,0]}]}",
         400, "unknown input 'image'"},
        {"POST", "/v2/models/m/infer", "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 16], "
                                       "\"datatype\": \"FP32\", \"data\": [0,0,0,0,0,0,0,0,0,0,0,"
                                       "0,0,0,0,0]}], \"outputs\": [{\"name\": \"logits\"}]}",
         400, "has no output 'logits'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        req(&c, cases[i].method, cases[i].path, cases[i].body);
        CHECK_MSG(c.status == cases[i].status && strstr(c.body.data ? c.body.data : "", cases[i].has) &&
                      strncmp(c.body.data ? c.body.data : "", "{\"error\"", 8) == 0,
                  "%s %s: %ld %s (wanted %d with '%s')", cases[i].method, cases[i].path, c.status,
                  c.body.data ? c.body.data : "", cases[i].status, cases[i].has);
    }
    /* 100 MB body: 413 (default limit 64 MiB), the body never stored */
    big_body bb = {100u << 20};
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/models/m:predict", c.port);
    CURL *h = curl_easy_init();
    kiln_sbuf got = KILN_SBUF_INIT;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_big);
    curl_easy_setopt(h, CURLOPT_READDATA, &bb);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(100u << 20));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    CHECK_MSG(status == 413, "100 MB body: status %ld", status);
    CHECK(got.data && strstr(got.data, "\"error\""));
    kiln_sbuf_free(&got);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdr);

    /* still healthy */
    float x[ROW];
    instances(x, 1, 9);
    char *body = tf_body(x, 1), *want = expected_tf_row(base, 1, x, 1);
    req(&c, "POST", "/v1/models/m:predict", body);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, want);
    free(body);
    free(want);
    /* the failures are counted */
    req(&c, "GET", "/monitoring/prometheus/metrics", NULL);
    CHECK_HAS(&c, "kiln_requests_total{model=\"m\",version=\"1\",api=\"v1_predict\",code=\"400\"} ");
    CHECK_HAS(&c, "kiln_requests_total{model=\"m\",version=\"1\",api=\"v1_predict\",code=\"200\"} 1\n");
    CHECK_HAS(&c, "kiln_requests_total{model=\"m\",version=\"\",api=\"v1_predict\","
                  "code=\"404\"} 1\n");
    CHECK_HAS(&c, "kiln_requests_total{model=\"m\",version=\"\",api=\"v1_predict\","
                  "code=\"400\"} 1\n"); /* the unknown label */
    CHECK_HAS(&c, "kiln_model_version_loaded{model=\"m\",version=\"1\"} 1\n");
    CHECK_HAS(&c, "kiln_request_duration_seconds_bucket{model=\"m\",api=\"v1_predict\",le=\"+Inf\"}");
    CHECK_HAS(&c, "kiln_batch_size_bucket{model=\"m\",le=\"1\"} 1\n");
    client_free(&c);
    kiln_serve_stop(s);
}

/* Policies, a corrupt version, a model with no versions yet, several models. */
static void test_policies_and_failures(void) {
    char a[512], b[512], empty[512];
    snprintf(a, sizeof a, "%s", at("pa"));
    snprintf(b, sizeof b, "%s", at("pb"));
    snprintf(empty, sizeof empty, "%s", at("pe"));
    for (int v = 1; v <= 3; v++) export_version(a, v);
    export_version(b, 5);
    int64_t specific[] = {1, 3};
    kiln_serve_model m[] = {
        {.name = "latest2", .base_path = a, .policy = KILN_VERSIONS_LATEST, .latest_n = 2},
        {.name = "specific", .base_path = a, .policy = KILN_VERSIONS_SPECIFIC, .versions = specific,
         .n_versions = 2},
        {.name = "b", .base_path = b},
        {.name = "later", .base_path = empty},
    };
    kiln_server *s = start(m, 4, 0, (kiln_serve_batching){0});
    if (!s) return;
    client c;
    client_init(&c, kiln_serve_port(s));
    req(&c, "GET", "/v2/models/latest2", NULL);
    CHECK_HAS(&c, "\"versions\":[\"2\",\"3\"]");
    req(&c, "GET", "/v2/models/specific", NULL);
    CHECK_HAS(&c, "\"versions\":[\"1\",\"3\"]");
    req(&c, "GET", "/v2/health/ready", NULL);
    CHECK_STATUS(&c, 503); /* "later" has nothing yet */
    req(&c, "POST", "/v1/models/later:predict", "{\"instances\": [[1]]}");
    CHECK_STATUS(&c, 503);
    req(&c, "GET", "/v1/models/later", NULL);
    CHECK_STATUS(&c, 404);

    /* a corrupt version 4 (complete folder, garbage model.json) and a half-written one */
    CHECK_OK(kiln_mkdirs(at("pb/6")));
    CHECK_OK(kiln_file_write_atomic(at("pb/6/model.json"), "{\"format\": \"kiln-servable\"", 26));
    CHECK_OK(kiln_file_write_atomic(at("pb/6/weights.safetensors"), "garbage", 7));
    CHECK_OK(kiln_mkdirs(at("pb/.tmp-7-1-x")));
    export_version(empty, 2);
    kiln_serve_poll_now(s);
    req(&c, "GET", "/v1/models/b", NULL);
    CHECK_HAS(&c, "{\"version\":\"6\",\"state\":\"END\",\"status\":{\"error_code\":\"UNKNOWN\","
                  "\"error_message\":\"");
    CHECK_HAS(&c, "{\"version\":\"5\",\"state\":\"AVAILABLE\"");
    req(&c, "GET", "/v2/models/b", NULL);
    CHECK_HAS(&c, "\"versions\":[\"5\"]"); /* 5 keeps serving */
    req(&c, "GET", "/v2/health/ready", NULL);
    CHECK_STATUS(&c, 200);
    pthread_mutex_lock(&log_mu);
    CHECK(logbuf.data && strstr(logbuf.data, "model b: version 6 failed to load, skipped"));
    pthread_mutex_unlock(&log_mu);
    /* a second poll does not retry the unchanged failure */
    kiln_serve_poll_now(s);
    req(&c, "GET", "/monitoring/prometheus/metrics", NULL);
    CHECK_HAS(&c, "kiln_model_load_failures_total{model=\"b\"} 1\n");

    /* a newer version replaces the latest-2 window: 2 goes, 3 and 4 stay */
    export_version(a, 4);
    kiln_serve_poll_now(s);
    req(&c, "GET", "/v2/models/latest2", NULL);
    CHECK_HAS(&c, "\"versions\":[\"3\",\"4\"]");
    req(&c, "GET", "/v1/models/latest2/versions/2", NULL);
    CHECK_HAS(&c, "\"state\":\"END\"");
    req(&c, "GET", "/monitoring/prometheus/metrics", NULL);
    CHECK_HAS(&c, "kiln_model_version_loaded{model=\"latest2\",version=\"2\"} 0\n");
    client_free(&c);
    kiln_serve_stop(s);
}

/* ---- hot reload under load ---- */

enum { LOAD_THREADS = 4, NEW_VERSIONS = 5 };

typedef struct {
    int port;
    const char *base;
    float x[2 * ROW];
    char *want[1 + NEW_VERSIONS + 1]; /* by version */
    atomic_int *stop;
    int batched;
    int ok, failed, wrong;
    int seen[1 + NEW_VERSIONS + 1];
} loader;

static void *load_thread(void *arg) {
    loader *l = arg;
    client c;
    client_init(&c, l->port);
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"inputs\": [{\"name\": \"input\", \"shape\": [2, 16], \"datatype\": "
                       "\"FP32\", \"data\": [");
    for (int i = 0; i < 2 * ROW; i++) kiln_sbuf_printf(&b, "%s%g", i ? "," : "", l->x[i]);
    kiln_sbuf_puts(&b, "]}]}");
    while (!atomic_load(l->stop)) {
        const char *got = req(&c, "POST", "/v2/models/m/infer", b.data);
        const char *mv = strstr(got, "\"model_version\":\"");
        int v = mv ? atoi(mv + 17) : 0;
        if (c.status != 200 || v < 1 || v > 1 + NEW_VERSIONS) {
            if (l->failed++ < 3) fprintf(stderr, "  load: status %ld: %s\n", c.status, got);
        } else if (l->batched ? !same_answer(got, l->want[v]) : strcmp(got, l->want[v]) != 0) {
            if (l->wrong++ < 3) fprintf(stderr, "  load: version %d answered %s\n", v, got);
        } else {
            l->ok++, l->seen[v]++;
        }
    }
    kiln_sbuf_free(&b);
    client_free(&c);
    return NULL;
}

static void hot_reload(const char *name, kiln_serve_batching batching) {
    const char *base = at(name);
    export_version(base, 1);
    /* the expected answers of versions 2..6, from copies exported elsewhere */
    char other[64];
    snprintf(other, sizeof other, "%s-ref", name);
    const char *ref = at(other);
    for (int v = 2; v <= 1 + NEW_VERSIONS; v++) export_version(ref, v);
    kiln_serve_model m = {.name = "m", .base_path = base};
    kiln_server *s = start(&m, 1, 0.02, batching);
    if (!s) return;
    atomic_int stop = 0;
    loader l[LOAD_THREADS];
    pthread_t th[LOAD_THREADS];
    for (int t = 0; t < LOAD_THREADS; t++) {
        memset(&l[t], 0, sizeof l[t]);
        l[t].port = kiln_serve_port(s), l[t].base = base, l[t].stop = &stop;
        l[t].batched = batching.enabled;
        instances(l[t].x, 2, 300 + (uint64_t)t);
        for (int v = 1; v <= 1 + NEW_VERSIONS; v++)
            l[t].want[v] = expected_v2(v == 1 ? base : ref, v, l[t].x, 2, NULL, 7);
        pthread_create(&th[t], NULL, load_thread, &l[t]);
    }
    /* 5 new versions appear while the clients hammer the server */
    for (int v = 2; v <= 1 + NEW_VERSIONS; v++) {
        usleep(150000);
        export_version(base, v);
    }
    usleep(300000);
    atomic_store(&stop, 1);
    int ok = 0, failed = 0, wrong = 0, last = 0;
    for (int t = 0; t < LOAD_THREADS; t++) {
        pthread_join(th[t], NULL);
        ok += l[t].ok, failed += l[t].failed, wrong += l[t].wrong;
        last += l[t].seen[1 + NEW_VERSIONS];
        for (int v = 1; v <= 1 + NEW_VERSIONS; v++) free(l[t].want[v]);
    }
    printf("  %s: %d requests answered, %d failed, %d wrong; %d by the last version\n", name, ok,
           failed, wrong, last);
    CHECK(failed == 0 && wrong == 0);
    CHECK(ok > 0 && last > 0); /* the last version was swapped in and answered */
    client c;
    client_init(&c, kiln_serve_port(s));
    req(&c, "GET", "/v2/models/m", NULL);
    CHECK_HAS(&c, "\"versions\":[\"6\"]");
    client_free(&c);
    kiln_serve_stop(s);
}

static void test_hot_reload_under_load(void) {
    hot_reload("hot", (kiln_serve_batching){0});
}

static void test_hot_reload_batched(void) {
    hot_reload("hotb", (kiln_serve_batching){.enabled = 1, .max_batch_size = 8,
                                              .batch_timeout_micros = 500, .num_batch_threads = 2,
                                              .max_enqueued_batches = 64});
}

/* ---- batching: 429 on a full queue, and a batch of two requests ---- */

typedef struct {
    int port;
    const char *body;
    long status;
    char *got;
} one_req;

static void *send_one(void *arg) {
    one_req *r = arg;
    client c;
    client_init(&c, r->port);
    r->got = strdup(req(&c, "POST", "/v1/models/m:predict", r->body));
    r->status = c.status;
    client_free(&c);
    return NULL;
}

static double queue_rows(int port) {
    client c;
    client_init(&c, port);
    const char *m = strstr(req(&c, "GET", "/monitoring/prometheus/metrics", NULL),
                           "\nkiln_batch_queue_rows ");
    double v = m ? atof(m + 23) : -1;
    client_free(&c);
    return v;
}

static void test_batching_queue(void) {
    const char *base = at("batch");
    export_version(base, 1);
    kiln_serve_model m = {.name = "m", .base_path = base};
    /* capacity 4 rows; a request waits up to 20 s for company */
    kiln_server *s = start(&m, 1, 0,
                           (kiln_serve_batching){.enabled = 1, .max_batch_size = 4,
                                                 .batch_timeout_micros = 20000000,
                                                 .num_batch_threads = 1,
                                                 .max_enqueued_batches = 1});
    if (!s) return;
    int port = kiln_serve_port(s);
    float x3[3 * ROW], x2[2 * ROW], x1[ROW];
    instances(x3, 3, 1), instances(x2, 2, 2), instances(x1, 1, 3);
    char *b3 = tf_body(x3, 3), *b2 = tf_body(x2, 2), *b1 = tf_body(x1, 1);
    one_req r3 = {port, b3}, r1 = {port, b1};
    pthread_t t3, t1;
    pthread_create(&t3, NULL, send_one, &r3);
    for (int i = 0; i < 500 && queue_rows(port) != 3; i++) usleep(10000);
    CHECK(queue_rows(port) == 3);
    /* 3 + 2 > 4: refused at once */
    client c;
    client_init(&c, port);
    req(&c, "POST", "/v1/models/m:predict", b2);
    CHECK_STATUS(&c, 429);
    CHECK_HAS(&c, "queue is full");
    /* 3 + 1 fills the batch: both answered, each with its own rows */
    pthread_create(&t1, NULL, send_one, &r1);
    pthread_join(t3, NULL);
    pthread_join(t1, NULL);
    char *w3 = expected_tf_row(base, 1, x3, 3), *w1 = expected_tf_row(base, 1, x1, 1);
    CHECK(r3.status == 200 && same_answer(r3.got, w3));
    CHECK_MSG(r1.status == 200 && same_answer(r1.got, w1), "%ld %s\n wanted %s", r1.status, r1.got,
              w1);
    req(&c, "GET", "/monitoring/prometheus/metrics", NULL);
    CHECK_HAS(&c, "kiln_batch_size_bucket{model=\"m\",le=\"4\"} 1\n"); /* one batch of 4 rows */
    CHECK_HAS(&c, "kiln_batch_size_count{model=\"m\"} 1\n");

    /* graceful stop: a parked request is answered, not dropped */
    one_req r = {port, b1};
    pthread_t tr;
    pthread_create(&tr, NULL, send_one, &r);
    for (int i = 0; i < 500 && queue_rows(port) != 1; i++) usleep(10000);
    client_free(&c);
    kiln_serve_stop(s);
    pthread_join(tr, NULL);
    CHECK_MSG(r.status == 200 && same_answer(r.got, w1), "parked request at stop: %ld %s",
              r.status, r.got);
    free(r.got), free(r3.got), free(r1.got);
    free(w3), free(w1), free(b3), free(b2), free(b1);
}

/* ---- Triton's binary tensor data extension ---- */

typedef struct {
    long status;
    kiln_sbuf body, headers;
} bin_answer;

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
    kiln_sbuf_put(ud, p, sz * n);
    return sz * n;
}

/* POST body (len bytes, any content) with "Inference-Header-Content-Length: header_len" when
 * header_len >= 0; the answer's status, body and raw headers into a (freed by the caller). */
static void post_bin(int port, const char *path, const void *body, size_t len, long header_len,
                     bin_answer *a) {
    char url[256], h[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    memset(a, 0, sizeof *a);
    CURL *c = curl_easy_init();
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    if (header_len >= 0) {
        snprintf(h, sizeof h, "Inference-Header-Content-Length: %ld", header_len);
        hs = curl_slist_append(hs, h);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
}

static void bin_answer_free(bin_answer *a) {
    kiln_sbuf_free(&a->body);
    kiln_sbuf_free(&a->headers);
}

/* The answer kiln must give, byte for byte: outputs of version v for rows x [rows, ROW], those
 * in want (bits 1 output, 2 probabilities, 4 classes), those in binary as binary data. */
static void expected_v2_bin(const char *base, int64_t v, const float *x, int rows, unsigned want,
                            unsigned binary, kiln_sbuf *b, size_t *json_len) {
    float out[64 * K], probs[64 * K];
    const char *names[64];
    expect(base, v, x, rows, out, probs);
    classes_of(probs, rows, names);
    kiln_tj_output all[3] =
        {{"output", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){rows, K}), out, 0},
         {"probabilities", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){rows, K}), probs, 0},
         {"classes", KILN_TJ_BYTES, kiln_shape_make(1, (int64_t[]){rows}), names, 0}},
                   o[3];
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (want & (1u << i)) o[n] = all[i], o[n++].binary = (binary >> i) & 1;
    char vs[24];
    snprintf(vs, sizeof vs, "%lld", (long long)v);
    CHECK_OK(kiln_tj_write_v2_binary(b, "m", vs, NULL, o, n, json_len));
}

/* Little-endian bytes of float32 values (the wire order, whatever the host's). */
static void put_le_f32(kiln_sbuf *b, const float *x, int n) {
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        char v[4] = {(char)u, (char)(u >> 8), (char)(u >> 16), (char)(u >> 24)};
        kiln_sbuf_put(b, v, 4);
    }
}

#define CHECK_SAME_BYTES(a, want)                                                                  \
    CHECK_MSG((a)->body.len == (want)->len &&                                                      \
                  memcmp((a)->body.data, (want)->data, (want)->len) == 0,                          \
              "answer (%zu bytes) differs from the expected (%zu bytes): %.*s", (a)->body.len,     \
              (want)->len, (int)(a)->body.len, (a)->body.data ? (a)->body.data : "")

static void test_binary_tensor_data(void) {
    const char *base = at("bin");
    export_version(base, 1);
    kiln_serve_model m = {.name = "m", .base_path = base};
    kiln_server *s = start(&m, 1, 0, (kiln_serve_batching){0});
    if (!s) return;
    int port = kiln_serve_port(s);
    client c;
    client_init(&c, port);
    req(&c, "GET", "/v2", NULL);
    CHECK_BODY(&c, "{\"name\":\"kiln\",\"version\":\"" KILN_VERSION
                   "\",\"extensions\":[\"binary_tensor_data\"]}");
    float x[2 * ROW];
    instances(x, 2, 11);
    x[5] = 0.5f; /* a value no integer datatype could carry */

    /* what tritonclient sends by default: FP32 input as binary data, no outputs named, so
     * "binary_data_output": true; every output comes back as binary data after the JSON */
    kiln_sbuf body = KILN_SBUF_INIT, want = KILN_SBUF_INIT;
    kiln_sbuf_puts(&body, "{\"inputs\":[{\"name\":\"input\",\"shape\":[2,1,4,4],\"datatype\":"
                          "\"FP32\",\"parameters\":{\"binary_data_size\":128}}],"
                          "\"parameters\":{\"binary_data_output\":true}}");
    long hl = (long)body.len;
    put_le_f32(&body, x, 2 * ROW);
    bin_answer a;
    post_bin(port, "/v2/models/m/infer", body.data, body.len, hl, &a);
    size_t json_len = 0;
    expected_v2_bin(base, 1, x, 2, 7, 7, &want, &json_len);
    CHECK_MSG(a.status == 200, "status %ld: %s", a.status, a.body.data ? a.body.data : "");
    CHECK_SAME_BYTES(&a, &want);
    char h[64];
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu\r\n", json_len);
    CHECK_MSG(a.headers.data && strstr(a.headers.data, h), "headers lack %s: %s", h,
              a.headers.data ? a.headers.data : "");
    CHECK(a.headers.data && strstr(a.headers.data, "Content-Type: application/octet-stream\r\n"));
    /* the binary outputs hold what the JSON answer says, to the bit */
    CHECK(json_len > 0 && strstr(want.data, "\"binary_data_size\":24}"));
    bin_answer_free(&a);

    /* outputs named: probabilities as binary data, classes as JSON; UINT8 input, binary */
    float px[ROW];
    instances(px, 1, 12);
    unsigned char u8[ROW];
    for (int i = 0; i < ROW; i++) u8[i] = (unsigned char)px[i];
    kiln_sbuf_clear(&body), kiln_sbuf_clear(&want);
    kiln_sbuf_puts(&body,
                   "{\"id\":\"7\",\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],"
                   "\"datatype\":\"UINT8\",\"parameters\":{\"binary_data_size\":16}}],"
                   "\"outputs\":[{\"name\":\"classes\",\"parameters\":{\"binary_data\":false}},"
                   "{\"name\":\"probabilities\",\"parameters\":{\"binary_data\":true}}]}");
    hl = (long)body.len;
    kiln_sbuf_put(&body, (const char *)u8, ROW);
    post_bin(port, "/v2/models/m/infer", body.data, body.len, hl, &a);
    {
        float out[K], probs[K];
        const char *names[1];
        expect(base, 1, px, 1, out, probs);
        classes_of(probs, 1, names);
        kiln_tj_output o[2] = {
            {"probabilities", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){1, K}), probs, 1},
            {"classes", KILN_TJ_BYTES, kiln_shape_make(1, (int64_t[]){1}), names, 0}};
        CHECK_OK(kiln_tj_write_v2_binary(&want, "m", "1", "7", o, 2, &json_len));
    }
    CHECK_MSG(a.status == 200, "status %ld: %s", a.status, a.body.data ? a.body.data : "");
    CHECK_SAME_BYTES(&a, &want);
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu\r\n", json_len);
    CHECK(a.headers.data && strstr(a.headers.data, h));
    bin_answer_free(&a);

    /* the header with JSON alone (nothing binary either way): a plain JSON answer */
    kiln_sbuf_clear(&body), kiln_sbuf_clear(&want);
    kiln_sbuf_puts(&body, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],\"datatype\":"
                          "\"FP32\",\"data\":[");
    for (int i = 0; i < ROW; i++) kiln_sbuf_printf(&body, "%s%g", i ? "," : "", x[i]);
    kiln_sbuf_puts(&body, "]}]}");
    post_bin(port, "/v2/models/m/infer", body.data, body.len, (long)body.len, &a);
    expected_v2_bin(base, 1, x, 1, 7, 0, &want, &json_len);
    CHECK(a.status == 200);
    CHECK_SAME_BYTES(&a, &want);
    CHECK(a.headers.data && !strstr(a.headers.data, "Inference-Header-Content-Length") &&
          strstr(a.headers.data, "Content-Type: application/json"));
    bin_answer_free(&a);

    /* a raw binary request (header 0): the body is one FP32 instance; outputs binary */
    kiln_sbuf_clear(&body), kiln_sbuf_clear(&want);
    put_le_f32(&body, x + ROW, ROW);
    post_bin(port, "/v2/models/m/versions/1/infer", body.data, body.len, 0, &a);
    expected_v2_bin(base, 1, x + ROW, 1, 7, 7, &want, &json_len);
    CHECK_MSG(a.status == 200, "status %ld: %s", a.status, a.body.data ? a.body.data : "");
    CHECK_SAME_BYTES(&a, &want);
    bin_answer_free(&a);

    /* refusals: 400 {"error"}, naming what was wrong */
    struct {
        const char *json;
        size_t extra; /* binary bytes after the JSON */
        long header;  /* -2: the JSON's length; -1: no header */
        const char *has;
    } bad[] = {
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":64}}]}",
         64, -1, "(binary tensor data after it needs the Inference-Header-Content-Length header)"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":64}}]}",
         0, -1,
         "binary_data_size\\\" is given, but the request has no Inference-Header-Content-Length"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":64}}]}",
         60, -2, "binary_data_size is 64, but only 60 bytes"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":64}}]}",
         68, -2, "4 bytes of binary data after the JSON belong to no input"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":64}}]}",
         64, 100000, "Inference-Header-Content-Length: '100000' is not a length from 0 to"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],\"datatype\":\"FP32\","
         "\"data\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}",
         8, -1, "unexpected data after the JSON object (binary tensor data after it needs"},
        {"", 60, 0, "raw binary request: input 'input': 16 FP32 values take 64 bytes, got 60"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kiln_sbuf_clear(&body);
        kiln_sbuf_puts(&body, bad[i].json);
        long hdr = bad[i].header == -2 ? (long)body.len : bad[i].header;
        for (size_t k = 0; k < bad[i].extra; k++) kiln_sbuf_putc(&body, 0);
        post_bin(port, "/v2/models/m/infer", body.data, body.len, hdr, &a);
        CHECK_MSG(a.status == 400 && a.body.data && strstr(a.body.data, bad[i].has) &&
                      strncmp(a.body.data, "{\"error\"", 8) == 0,
                  "case %zu: %ld %s (wanted 400 with '%s')", i, a.status,
                  a.body.data ? a.body.data : "", bad[i].has);
        bin_answer_free(&a);
    }
    kiln_sbuf_free(&body);
    kiln_sbuf_free(&want);
    client_free(&c);
    kiln_serve_stop(s);

    /* the same through the batcher (the answer is written on a batch thread) */
    s = start(&m, 1, 0,
              (kiln_serve_batching){.enabled = 1,
                                    .max_batch_size = 8,
                                    .batch_timeout_micros = 100,
                                    .num_batch_threads = 1,
                                    .max_enqueued_batches = 4});
    if (!s) return;
    kiln_sbuf_puts(&body, "{\"inputs\":[{\"name\":\"input\",\"shape\":[2,16],\"datatype\":"
                          "\"FP32\",\"parameters\":{\"binary_data_size\":128}}]}");
    hl = (long)body.len;
    put_le_f32(&body, x, 2 * ROW);
    post_bin(kiln_serve_port(s), "/v2/models/m/infer", body.data, body.len, hl, &a);
    expected_v2_bin(base, 1, x, 2, 7, 0, &want, &json_len); /* no binary outputs asked */
    CHECK(a.status == 200 && a.body.data && same_answer(a.body.data, want.data));
    bin_answer_free(&a);
    kiln_sbuf_clear(&body);
    kiln_sbuf_puts(&body,
                   "{\"inputs\":[{\"name\":\"input\",\"shape\":[2,16],\"datatype\":"
                   "\"FP32\",\"parameters\":{\"binary_data_size\":128}}],"
                   "\"outputs\":[{\"name\":\"classes\",\"parameters\":{\"binary_data\":true}}]}");
    hl = (long)body.len;
    put_le_f32(&body, x, 2 * ROW);
    post_bin(kiln_serve_port(s), "/v2/models/m/infer", body.data, body.len, hl, &a);
    kiln_sbuf_clear(&want);
    expected_v2_bin(base, 1, x, 2, 4, 4, &want, &json_len); /* classes: no float rounding */
    CHECK_MSG(a.status == 200, "status %ld: %s", a.status, a.body.data ? a.body.data : "");
    CHECK_SAME_BYTES(&a, &want);
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu\r\n", json_len);
    CHECK(a.headers.data && strstr(a.headers.data, h));
    bin_answer_free(&a);
    kiln_sbuf_free(&body);
    kiln_sbuf_free(&want);
    kiln_serve_stop(s);
}

/* ---- encoded images: {"b64": ...} instances ---- */

static void png_collect(void *ctx, void *data, int size) {
    kiln_sbuf_put(ctx, data, (size_t)size);
}

/* {"b64": "<PNG of pixels [h, w, comp]>"} appended to b. */
static void put_png_b64(kiln_sbuf *b, const unsigned char *px, int w, int h, int comp) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    kiln_sbuf png = KILN_SBUF_INIT;
    CHECK(stbi_write_png_to_func(png_collect, &png, w, h, comp, px, w * comp) != 0);
    const unsigned char *s = (const unsigned char *)png.data;
    kiln_sbuf_puts(b, "{\"b64\": \"");
    for (size_t i = 0; i < png.len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < png.len ? (uint32_t)s[i + 1] << 8 : 0) |
                     (i + 2 < png.len ? s[i + 2] : 0);
        kiln_sbuf_putc(b, A[v >> 18 & 63]);
        kiln_sbuf_putc(b, A[v >> 12 & 63]);
        kiln_sbuf_putc(b, i + 1 < png.len ? A[v >> 6 & 63] : '=');
        kiln_sbuf_putc(b, i + 2 < png.len ? A[v & 63] : '=');
    }
    kiln_sbuf_puts(b, "\"}");
    kiln_sbuf_free(&png);
}

static void test_images(void) {
    const char *base = at("img");
    export_version(base, 1);
    kiln_serve_model m = {.name = "m", .base_path = base};
    kiln_server *s = start(&m, 1, 0, (kiln_serve_batching){0});
    if (!s) return;
    client c;
    client_init(&c, kiln_serve_port(s));
    /* two 4x4 gray images: the answer equals that of their pixels sent as numbers */
    float x[2 * ROW];
    instances(x, 2, 41);
    unsigned char px[2 * ROW];
    for (int i = 0; i < 2 * ROW; i++) px[i] = (unsigned char)x[i];
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"instances\": [");
    put_png_b64(&b, px, 4, 4, 1);
    kiln_sbuf_puts(&b, ", ");
    put_png_b64(&b, px + ROW, 4, 4, 1);
    kiln_sbuf_puts(&b, "]}");
    char *want = expected_tf_row(base, 1, x, 2);
    req(&c, "POST", "/v1/models/m:predict", b.data);
    CHECK_STATUS(&c, 200);
    CHECK_BODY(&c, want);
    free(want);
    /* named input, columnar */
    kiln_sbuf_clear(&b);
    kiln_sbuf_puts(&b, "{\"inputs\": {\"input\": [");
    put_png_b64(&b, px, 4, 4, 1);
    kiln_sbuf_puts(&b, "]}}");
    req(&c, "POST", "/v1/models/m:predict", b.data);
    CHECK_STATUS(&c, 200);
    CHECK_HAS(&c, "{\"outputs\":{\"output\":[[");
    /* a 5x4 image, garbage bytes, an image nested in a list: 400 with the instance named */
    unsigned char wide[20] = {0};
    kiln_sbuf_clear(&b);
    kiln_sbuf_puts(&b, "{\"instances\": [");
    put_png_b64(&b, px, 4, 4, 1);
    kiln_sbuf_puts(&b, ", ");
    put_png_b64(&b, wide, 5, 4, 1);
    kiln_sbuf_puts(&b, "]}");
    req(&c, "POST", "/v1/models/m:predict", b.data);
    CHECK_STATUS(&c, 400);
    CHECK_HAS(&c, "instances[1]: the image is 5x4 (width x height), the model's input is 4x4");
    req(&c, "POST", "/v1/models/m:predict", "{\"instances\": [{\"b64\": \"aGVsbG8=\"}]}");
    CHECK_STATUS(&c, 400);
    CHECK_HAS(&c, "instances[0]: not a readable image");
    req(&c, "POST", "/v1/models/m:predict", "{\"instances\": [[{\"b64\": \"aGVsbG8=\"}]]}");
    CHECK_STATUS(&c, 400);
    CHECK_HAS(&c, "one per instance");
    kiln_sbuf_free(&b);
    client_free(&c);
    kiln_serve_stop(s);
}

/* ---- config files ---- */

static void test_config_files(void) {
    const char *path = at("models.config");
    const char *text = "# two models\n"
                       "model_config_list {\n"
                       "  config {\n"
                       "    name: 'a'\n"
                       "    base_path: \"/m/a\"\n"
                       "    model_platform: 'kiln'\n"
                       "    model_version_policy { specific { versions: 3 versions: 5 } }\n"
                       "    version_labels { key: 'stable' value: 3 }\n"
                       "    version_labels { key: 'canary' value: 5 }\n"
                       "  }\n"
                       "  config { name: 'b' base_path: '/m/b' "
                       "model_version_policy { latest { num_versions: 2 } } }\n"
                       "  config: { name: 'c', base_path: '/m/c', model_version_policy: { all: {} } }\n"
                       "}\n";
    CHECK_OK(kiln_file_write_atomic(path, text, strlen(text)));
    kiln_serve_models ms;
    CHECK_OK(kiln_serve_read_model_config(path, &ms));
    CHECK(ms.n_models == 3);
    if (ms.n_models == 3) {
        CHECK(strcmp(ms.models[0].name, "a") == 0 && strcmp(ms.models[0].base_path, "/m/a") == 0);
        CHECK(ms.models[0].policy == KILN_VERSIONS_SPECIFIC && ms.models[0].n_versions == 2 &&
              ms.models[0].versions[0] == 3 && ms.models[0].versions[1] == 5);
        CHECK(ms.models[0].n_labels == 2 && strcmp(ms.models[0].labels[1].label, "canary") == 0 &&
              ms.models[0].labels[1].version == 5);
        CHECK(ms.models[1].policy == KILN_VERSIONS_LATEST && ms.models[1].latest_n == 2);
        CHECK(ms.models[2].policy == KILN_VERSIONS_ALL && ms.models[2].n_labels == 0);
    }
    kiln_serve_models_free(&ms);
    struct {
        const char *text, *err;
    } bad[] = {
        {"model_config_list { config { name: 'a' base_path: '/x' typo: 1 } }",
         "models.config:1: unknown field 'typo' in config"},
        {"model_config_list {\n config { name: 'a' }\n}", "models.config:2: config 'a' has no base_path"},
        {"model_config_list { config { name: 'a' base_path: '/x' }", "expected '}'"},
        {"model_config_list { config { name: a base_path: '/x' } }", "name: expected a quoted string"},
        {"model_config_list { config { name: 'a' base_path: '/x' model_version_policy { latest "
         "{ num_versions: 0 } } } }",
         "num_versions: '0' is not an integer"},
        {"model_config_list { config { name: 'a' base_path: '/x' } config { name: 'a' "
         "base_path: '/y' } }",
         "model 'a' is configured twice"},
        {"model_config_list { config { name: 'a' base_path: '/x' model_version_policy { } } }",
         "needs exactly one of latest, all, specific"},
        {"model_config_list { }", "model_config_list has no config"},
        {"config { }", "unknown field 'config'"},
        {"model_config_list { config { name: 'a\n' } }", "unterminated string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_OK(kiln_file_write_atomic(path, bad[i].text, strlen(bad[i].text)));
        CHECK(kiln_serve_read_model_config(path, &ms) == KILN_ERR_FORMAT);
        CHECK_ERR_HAS(bad[i].err);
        CHECK(ms.models == NULL && ms.n_models == 0);
    }
    /* every prefix of a good file: an error or a parse, never a crash */
    for (size_t n = 0; n < strlen(text); n++) {
        CHECK_OK(kiln_file_write_atomic(path, text, n));
        if (kiln_serve_read_model_config(path, &ms) == KILN_OK) kiln_serve_models_free(&ms);
    }

    const char *bp = at("batching.config");
    const char *btext = "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000 }\n"
                        "num_batch_threads { value: 4 }\nmax_enqueued_batches { value: 100 }\n";
    CHECK_OK(kiln_file_write_atomic(bp, btext, strlen(btext)));
    kiln_serve_batching bc = {0};
    CHECK_OK(kiln_serve_read_batching_config(bp, &bc));
    CHECK(bc.max_batch_size == 64 && bc.batch_timeout_micros == 2000 &&
          bc.num_batch_threads == 4 && bc.max_enqueued_batches == 100);
    const char *bbad = "max_batch_size { value: -1 }";
    CHECK_OK(kiln_file_write_atomic(bp, bbad, strlen(bbad)));
    CHECK(kiln_serve_read_batching_config(bp, &bc) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("batching.config:1: value: '-1' is not an integer");
    const char *bunk = "max_batch_sizes { value: 1 }";
    CHECK_OK(kiln_file_write_atomic(bp, bunk, strlen(bunk)));
    CHECK(kiln_serve_read_batching_config(bp, &bc) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("unknown field 'max_batch_sizes'");
}

static void test_bad_config(void) {
    kiln_serve_model m = {.name = "bad name!", .base_path = at("x")};
    kiln_serve_config c = {.host = "127.0.0.1", .models = &m, .n_models = 1, .log = log_to_buf};
    CHECK(kiln_serve_start(&c) == NULL);
    CHECK_ERR_HAS("model name 'bad name!'");
    kiln_serve_model two[2] = {{.name = "a", .base_path = at("x")}, {.name = "a", .base_path = at("y")}};
    c.models = two, c.n_models = 2;
    CHECK(kiln_serve_start(&c) == NULL);
    CHECK_ERR_HAS("model 'a' is configured twice");
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/kiln-test-serve-XXXXXX");
    if (!mkdtemp(root)) return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kiln_status st = kiln_config_parse(YAML, "t.yaml", &cfg);
    if (!st) st = kiln_config_resolve(cfg);
    if (!st) st = kiln_model_build(cfg, &model);
    if (!st) st = kiln_graph_init_params(model.graph);
    if (st) {
        fprintf(stderr, "setup: %s\n", kiln_last_error());
        return 1;
    }
    RUN(test_v1);
    RUN(test_v2);
    RUN(test_errors);
    RUN(test_policies_and_failures);
    RUN(test_hot_reload_under_load);
    RUN(test_hot_reload_batched);
    RUN(test_batching_queue);
    RUN(test_binary_tensor_data);
    RUN(test_images);
    RUN(test_config_files);
    RUN(test_bad_config);
    kiln_model_free(&model);
    kiln_cfg_free(cfg);
    kiln_sbuf_free(&logbuf);
    curl_global_cleanup();
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return kiln_test_summary();
}

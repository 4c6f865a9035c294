/* test_tboard.c — the TensorBoard writer (src/tboard/), every field read
 * back with the tests' own reader (tests/util/tb_events.c: independent framing and CRC):
 * file names and the version record; scalars (rank-0 DT_FLOAT, plugin "scalars", metadata on a
 * tag's first value only); histogram buckets against TF2's definition and the [k, 3] DT_DOUBLE
 * tensor; images (the PNG decodes to the declared size and the same pixels); text; SessionLog
 * START; HParams session start/end (every hyperparameter's type and value) and config
 * flattening; the experiment summary (union across calls, the old file replaced, concurrent
 * processes); the projector's files; the sample-grid and confusion-matrix pictures. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stb_image.h>

#include "check.h"
#include "kiln/tboard.h"
#include "tb_events.h"
#include "tboard/tb_internal.h"
#include "tboard/tb_render.h"

static char root[64];

static const char *sub(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
    return buf[k];
}

/* Opens a writer in root/name, runs body's writes, closes it and loads the file. */
static int load(kiln_tb_writer *w, tb_events *e) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s", kiln_tb_path(w));
    kiln_tb_close(w);
    int rc = tb_events_load(path, e, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    return rc;
}

static void check_meta(const Tensorflow__Summary__Value *v, const char *plugin,
                       Tensorflow__DataClass dc) {
    CHECK(v->metadata != NULL);
    if (!v->metadata) return;
    CHECK(v->metadata->plugin_data && strcmp(v->metadata->plugin_data->plugin_name, plugin) == 0);
    CHECK(v->metadata->data_class == dc);
}

static void test_file_names_and_version(void) {
    kiln_tb_writer *a, *b;
    CHECK_OK(kiln_tb_open(sub("names/deep/er"), &a));
    CHECK_OK(kiln_tb_open(sub("names/deep/er"), &b));
    if (!a || !b) return;
    char host[256];
    kiln_tb_hostname(host, sizeof host);
    const char *base = strrchr(kiln_tb_path(a), '/') + 1;
    CHECK(strncmp(base, "events.out.tfevents.", 20) == 0);
    for (int i = 20; i < 30; i++) CHECK(base[i] >= '0' && base[i] <= '9');
    CHECK(base[30] == '.' && strcmp(base + 31, host) == 0);
    CHECK(strcmp(kiln_tb_path(a), kiln_tb_path(b)) != 0); /* same second: ".2" */
    long long t = strtoll(base + 20, NULL, 10);
    CHECK(llabs(t - (long long)time(NULL)) < 60);
    kiln_tb_close(b);
    tb_events e;
    if (load(a, &e)) return;
    CHECK(e.n == 1);
    CHECK(e.ev[0]->what_case == TENSORFLOW__EVENT__WHAT_FILE_VERSION &&
          strcmp(e.ev[0]->file_version, "brain.Event:2") == 0);
    CHECK(fabs(e.ev[0]->wall_time - (double)time(NULL)) < 60);
    CHECK(e.ev[0]->step == 0);
    tb_events_free(&e);
    CHECK(kiln_tb_open("/proc/kiln-no-such-dir", &a) != KILN_OK && a == NULL);
}

static void test_scalars(void) {
    kiln_tb_writer *w;
    CHECK_OK(kiln_tb_open(sub("scalars"), &w));
    if (!w) return;
    float vals[3] = {0.5f, 0.25f, -1e-30f};
    for (int i = 0; i < 3; i++) CHECK_OK(kiln_tb_scalar(w, "epoch_loss", 100 * (i + 1), vals[i]));
    CHECK_OK(kiln_tb_scalar(w, "epoch_accuracy", 7, NAN));
    CHECK(kiln_tb_scalar(w, "", 1, 0) == KILN_ERR_INVALID);
    char longtag[2000];
    memset(longtag, 'a', sizeof longtag - 1), longtag[sizeof longtag - 1] = 0;
    CHECK(kiln_tb_scalar(w, longtag, 1, 0) == KILN_ERR_INVALID);
    tb_events e;
    if (load(w, &e)) return;
    CHECK(e.n == 5);
    int first = -1;
    CHECK(tb_count_tag(&e, "epoch_loss", &first) == 3 && first == 1);
    for (int i = 1; i < e.n; i++) {
        const Tensorflow__Summary__Value *v = tb_value(&e, i);
        CHECK(v != NULL);
        if (!v) continue;
        CHECK(v->value_case == TENSORFLOW__SUMMARY__VALUE__VALUE_TENSOR);
        const Tensorflow__TensorProto *t = v->tensor;
        CHECK(t->dtype == TENSORFLOW__DATA_TYPE__DT_FLOAT);
        CHECK(t->tensor_shape != NULL && t->tensor_shape->n_dim == 0); /* rank 0 */
        CHECK(t->n_float_val == 1 && t->tensor_content.len == 0);
        CHECK((i == 1 || i == 4) == (v->metadata != NULL)); /* the first value of each tag */
        if (v->metadata) {
            check_meta(v, "scalars", TENSORFLOW__DATA_CLASS__DATA_CLASS_SCALAR);
            CHECK(v->metadata->plugin_data->content.len == 0);
        }
        if (i <= 3) {
            CHECK(strcmp(v->tag, "epoch_loss") == 0 && e.ev[i]->step == 100 * i);
            CHECK(t->n_float_val == 1 && t->float_val[0] == vals[i - 1]);
        } else {
            CHECK(strcmp(v->tag, "epoch_accuracy") == 0 && e.ev[i]->step == 7 &&
                  isnan(t->float_val[0]));
        }
        CHECK(e.ev[i]->wall_time >= e.ev[i - 1]->wall_time);
    }
    tb_events_free(&e);
}

static void test_histogram_buckets(void) {
    double o[4 * 3];
    float a[5] = {0, 1, 2, 3, 4};
    CHECK(kiln_tb_histogram_buckets(a, 5, 4, o) == 5);
    double want[12] = {0, 1, 1, 1, 2, 1,
                       2, 3, 1, 3, 4, 2}; /* the maximum goes to the last bucket */
    for (int i = 0; i < 12; i++) CHECK_NEAR(o[i], want[i], 1e-12);
    float same[3] = {2, 2, 2};
    CHECK(kiln_tb_histogram_buckets(same, 3, 4, o) == 3);
    for (int b = 0; b < 4; b++)
        CHECK(o[3 * b] == 2 && o[3 * b + 1] == 2 && o[3 * b + 2] == (b == 0 ? 3 : 0));
    float odd[4] = {NAN, INFINITY, -1, -INFINITY};
    CHECK(kiln_tb_histogram_buckets(odd, 4, 4, o) == 1);
    CHECK(o[0] == -1 && o[2] == 1);
    CHECK(kiln_tb_histogram_buckets(odd, 2, 4, o) == 0);
    CHECK(kiln_tb_histogram_buckets(NULL, 0, 4, o) == 0);
    /* random data: every value in its bucket, counts add up, edges increase and end at max */
    enum { N = 10000, K = KILN_TB_BUCKETS };
    float *x = malloc(N * sizeof *x);
    kiln_test_fill(x, N, -3, 5, 77);
    double h[K * 3];
    CHECK(kiln_tb_histogram_buckets(x, N, K, h) == N);
    float lo = x[0], hi = x[0];
    for (int i = 0; i < N; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
    double total = 0;
    for (int b = 0; b < K; b++) {
        total += h[3 * b + 2];
        CHECK(h[3 * b] < h[3 * b + 1]);
        if (b) CHECK(h[3 * b] == h[3 * (b - 1) + 1]);
        int n = 0;
        for (int i = 0; i < N; i++) {
            int in =
                x[i] >= h[3 * b] && (x[i] < h[3 * b + 1] || (b == K - 1 && x[i] <= h[3 * b + 1]));
            n += in;
        }
        CHECK_MSG(fabs(n - h[3 * b + 2]) <= 1, "bucket %d: %d values in its range, counted %g", b,
                  n, h[3 * b + 2]);
    }
    CHECK(total == N && h[0] == lo && h[3 * (K - 1) + 1] == hi);
    free(x);
}

static void test_histogram_events(void) {
    kiln_tb_writer *w;
    CHECK_OK(kiln_tb_open(sub("hist"), &w));
    if (!w) return;
    float x[100];
    for (int i = 0; i < 100; i++) x[i] = (float)i;
    CHECK_OK(kiln_tb_histogram(w, "dense_1/kernel", 5, x, 100));
    CHECK_OK(kiln_tb_histogram(w, "dense_1/kernel", 6, x, 0));
    tb_events e;
    if (load(w, &e)) return;
    CHECK(e.n == 3);
    const Tensorflow__Summary__Value *v = tb_value(&e, 1), *v2 = tb_value(&e, 2);
    CHECK(v && v2);
    if (!v || !v2) return;
    check_meta(v, "histograms", TENSORFLOW__DATA_CLASS__DATA_CLASS_TENSOR);
    CHECK(v2->metadata == NULL);
    const Tensorflow__TensorProto *t = v->tensor;
    CHECK(t->dtype == TENSORFLOW__DATA_TYPE__DT_DOUBLE);
    CHECK(t->tensor_shape->n_dim == 2 && t->tensor_shape->dim[0]->size == KILN_TB_BUCKETS &&
          t->tensor_shape->dim[1]->size == 3);
    CHECK(t->n_double_val == KILN_TB_BUCKETS * 3);
    double want[KILN_TB_BUCKETS * 3], total = 0;
    kiln_tb_histogram_buckets(x, 100, KILN_TB_BUCKETS, want);
    for (size_t i = 0; i < t->n_double_val && i < KILN_TB_BUCKETS * 3; i++)
        CHECK(t->double_val[i] == want[i]);
    for (int b = 0; b < KILN_TB_BUCKETS; b++) total += t->double_val[3 * b + 2];
    CHECK(total == 100);
    const Tensorflow__TensorProto *t2 = v2->tensor; /* no values: a [0, 3] tensor */
    CHECK(t2->tensor_shape->n_dim == 2 && t2->tensor_shape->dim[0]->size == 0 &&
          t2->n_double_val == 0);
    tb_events_free(&e);
}

static void test_images_and_text(void) {
    kiln_tb_writer *w;
    CHECK_OK(kiln_tb_open(sub("images"), &w));
    if (!w) return;
    enum { W = 5, H = 4 };
    unsigned char rgb[H][W][3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            rgb[y][x][0] = (unsigned char)(50 * x), rgb[y][x][1] = (unsigned char)(60 * y),
            rgb[y][x][2] = 7;
    CHECK_OK(kiln_tb_image(w, "samples", "what it *shows*", 3, &rgb[0][0][0], W, H));
    CHECK(kiln_tb_image(w, "samples", NULL, 3, &rgb[0][0][0], 0, H) == KILN_ERR_INVALID);
    CHECK(kiln_tb_image(w, "samples", NULL, 3, &rgb[0][0][0], W, 20000) == KILN_ERR_INVALID);
    const char *md = "    seed: 1\n    experiment: \"x\"\n";
    CHECK_OK(kiln_tb_text(w, "config", 0, md));
    CHECK_OK(kiln_tb_session_start(w, 42));
    tb_events e;
    if (load(w, &e)) return;
    CHECK(e.n == 4);
    const Tensorflow__Summary__Value *v = tb_value(&e, 1);
    CHECK(v && strcmp(v->tag, "samples") == 0 && e.ev[1]->step == 3);
    if (v) {
        check_meta(v, "images", TENSORFLOW__DATA_CLASS__DATA_CLASS_BLOB_SEQUENCE);
        CHECK(strcmp(v->metadata->summary_description, "what it *shows*") == 0);
        const Tensorflow__TensorProto *t = v->tensor;
        CHECK(t->dtype == TENSORFLOW__DATA_TYPE__DT_STRING && t->tensor_shape->n_dim == 1 &&
              t->tensor_shape->dim[0]->size == 3);
        CHECK(t->n_string_val == 3);
        if (t->n_string_val == 3) {
            CHECK(t->string_val[0].len == 1 && t->string_val[0].data[0] == '5');
            CHECK(t->string_val[1].len == 1 && t->string_val[1].data[0] == '4');
            int x, y, c;
            unsigned char *px = stbi_load_from_memory(t->string_val[2].data,
                                                      (int)t->string_val[2].len, &x, &y, &c, 3);
            CHECK(px && x == W && y == H && c == 3);
            if (px && x == W && y == H) CHECK(memcmp(px, rgb, sizeof rgb) == 0);
            stbi_image_free(px);
        }
    }
    v = tb_value(&e, 2);
    CHECK(v && strcmp(v->tag, "config") == 0);
    if (v) {
        check_meta(v, "text", TENSORFLOW__DATA_CLASS__DATA_CLASS_TENSOR);
        const Tensorflow__TensorProto *t = v->tensor;
        CHECK(t->dtype == TENSORFLOW__DATA_TYPE__DT_STRING && t->tensor_shape->n_dim == 0 &&
              t->n_string_val == 1);
        CHECK(t->n_string_val == 1 && t->string_val[0].len == strlen(md) &&
              memcmp(t->string_val[0].data, md, strlen(md)) == 0);
    }
    CHECK(e.ev[3]->what_case == TENSORFLOW__EVENT__WHAT_SESSION_LOG);
    CHECK(e.ev[3]->session_log->status == TENSORFLOW__SESSION_LOG__SESSION_STATUS__START &&
          e.ev[3]->step == 42);
    tb_events_free(&e);
}

static const char *CONFIG =
    "experiment: fm\n"
    "description: not a hyperparameter\n"
    "seed: 7\n"
    "data: {source: idx, shuffle: true, batch_size: 128, label: '3', normalize: {scale: 0.5}}\n"
    "model:\n"
    "  input: [1, 28, 28]\n"
    "  layers:\n"
    "    - flatten: {}\n"
    "    - dense: {units: 64, activation: relu}\n"
    "optimizer: {adam: {learning_rate: 0.001, epsilon: 1e-7}}\n"
    "metrics: [{accuracy: {}}]\n"
    "train: {ema_decay: .nan, epochs: 0x10}\n";

static const kiln_tb_hparam *find(const kiln_tb_hparams *h, const char *name) {
    for (int i = 0; i < h->n; i++)
        if (!strcmp(h->items[i].name, name)) return &h->items[i];
    return NULL;
}

static void test_hparams_from_config(void) {
    kiln_cfg *cfg;
    CHECK_OK(kiln_config_parse(CONFIG, "t.yaml", &cfg));
    if (!cfg) return;
    kiln_tb_hparams h;
    CHECK_OK(kiln_tb_hparams_from_config(cfg, &h));
    const kiln_tb_hparam *p;
#define IS_NUM(name, v)                                                                            \
    do {                                                                                           \
        p = find(&h, name);                                                                        \
        CHECK_MSG(p && p->type == KILN_TB_HP_NUMBER && p->number == (v), "%s", name);              \
    } while (0)
#define IS_STR(name, v)                                                                            \
    do {                                                                                           \
        p = find(&h, name);                                                                        \
        CHECK_MSG(p && p->type == KILN_TB_HP_STRING && strcmp(p->string, v) == 0, "%s", name);     \
    } while (0)
    IS_STR("experiment", "fm");
    CHECK(find(&h, "description") == NULL);
    IS_NUM("seed", 7);
    IS_STR("data.source", "idx");
    p = find(&h, "data.shuffle");
    CHECK(p && p->type == KILN_TB_HP_BOOL && p->boolean == 1);
    IS_NUM("data.batch_size", 128);
    IS_STR("data.label", "3"); /* quoted: a string */
    IS_NUM("data.normalize.scale", 0.5);
    IS_STR("model.input", "[1, 28, 28]");
    IS_STR("model.layers[0]", "flatten");
    IS_STR("model.layers[1]", "dense");
    IS_NUM("model.layers[1].dense.units", 64);
    IS_STR("model.layers[1].dense.activation", "relu");
    IS_STR("optimizer", "adam");
    IS_NUM("optimizer.adam.learning_rate", 0.001);
    IS_NUM("optimizer.adam.epsilon", 1e-7);
    IS_STR("metrics[0]", "accuracy");
    IS_NUM("train.epochs", 16);
    p = find(&h, "train.ema_decay");
    CHECK(p && p->type == KILN_TB_HP_NUMBER && isnan(p->number));
    CHECK_MSG(h.n == 18, "%d hyperparameters", h.n);
    /* the session start and end as the HParams plugin reads them */
    kiln_tb_writer *w;
    CHECK_OK(kiln_tb_open(sub("hparams"), &w));
    if (w) {
        CHECK_OK(kiln_tb_hparams_start(w, &h, "/runs/fm/run-1", NULL, 1700000000.5));
        CHECK_OK(kiln_tb_hparams_end(w, KILN_TB_STATUS_SUCCESS, 1700000100.25));
        tb_events e;
        if (!load(w, &e)) {
            CHECK(e.n == 3);
            const Tensorflow__Summary__Value *v = tb_value(&e, 1);
            CHECK(v && strcmp(v->tag, "_hparams_/session_start_info") == 0);
            if (v) {
                CHECK(v->metadata && strcmp(v->metadata->plugin_data->plugin_name, "hparams") == 0);
                CHECK(v->metadata->data_class == TENSORFLOW__DATA_CLASS__DATA_CLASS_UNKNOWN);
                const Tensorflow__TensorProto *t = v->tensor; /* TensorBoard's NULL_TENSOR */
                CHECK(t->dtype == TENSORFLOW__DATA_TYPE__DT_FLOAT && t->tensor_shape->n_dim == 1 &&
                      t->tensor_shape->dim[0]->size == 0 && t->n_float_val == 0);
                Tensorboard__Hparams__HParamsPluginData *pd = tb_hparams_content(v);
                CHECK(pd && pd->version == 0 &&
                      pd->data_case ==
                          TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_START_INFO);
                if (pd && pd->data_case ==
                              TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_START_INFO) {
                    const Tensorboard__Hparams__SessionStartInfo *si = pd->session_start_info;
                    CHECK(strcmp(si->model_uri, "/runs/fm/run-1") == 0 &&
                          si->start_time_secs == 1700000000.5);
                    char group[33];
                    CHECK_OK(kiln_tb_hparams_group(&h, group));
                    CHECK_MSG(strlen(si->group_name) == 32 && strcmp(si->group_name, group) == 0,
                              "group_name '%s', want '%s'", si->group_name, group);
                    CHECK(si->n_hparams == (size_t)h.n);
                    for (size_t i = 0; i < si->n_hparams && i < (size_t)h.n; i++) {
                        const kiln_tb_hparam *hp = &h.items[i];
                        const Google__Protobuf__Value *val = si->hparams[i]->value;
                        CHECK(strcmp(si->hparams[i]->key, hp->name) == 0);
                        if (hp->type == KILN_TB_HP_NUMBER)
                            CHECK(val->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE &&
                                  (val->number_value == hp->number ||
                                   (isnan(hp->number) && isnan(val->number_value))));
                        else if (hp->type == KILN_TB_HP_BOOL)
                            CHECK(val->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE &&
                                  val->bool_value == hp->boolean);
                        else
                            CHECK(val->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE &&
                                  strcmp(val->string_value, hp->string) == 0);
                    }
                }
                if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
            }
            v = tb_value(&e, 2);
            Tensorboard__Hparams__HParamsPluginData *pd = tb_hparams_content(v);
            CHECK(v && strcmp(v->tag, "_hparams_/session_end_info") == 0);
            CHECK(pd && pd->data_case ==
                            TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_END_INFO);
            if (pd &&
                pd->data_case == TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_END_INFO)
                CHECK(pd->session_end_info->status ==
                          TENSORBOARD__HPARAMS__STATUS__STATUS_SUCCESS &&
                      pd->session_end_info->end_time_secs == 1700000100.25);
            if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
            tb_events_free(&e);
        }
    }
    kiln_tb_hparams_free(&h);
    kiln_cfg_free(cfg);
}

/* The experiment summary files of dir, and the experiment in the newest (or NULL). */
static Tensorboard__Hparams__Experiment *read_experiment(const char *dir, int *files) {
    char *names[16];
    int n = tb_event_files(dir, names, 16);
    *files = 0;
    Tensorboard__Hparams__Experiment *exp = NULL;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (l > 11 && !strcmp(names[i] + l - 11, ".experiment")) {
            ++*files;
            tb_events e;
            char err[512];
            if (tb_events_load(names[i], &e, err, sizeof err) == 0) {
                int at = -1;
                if (tb_count_tag(&e, "_hparams_/experiment", &at) == 1) {
                    Tensorboard__Hparams__HParamsPluginData *pd =
                        tb_hparams_content(tb_value(&e, at));
                    if (pd && pd->data_case ==
                                  TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_EXPERIMENT) {
                        if (exp) tensorboard__hparams__experiment__free_unpacked(exp, NULL);
                        exp = pd->experiment;
                        pd->experiment = NULL,
                        pd->data_case = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA__NOT_SET;
                    }
                    if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
                }
                tb_events_free(&e);
            } else {
                CHECK_MSG(0, "%s", err);
            }
        }
        free(names[i]);
    }
    return exp;
}

static void hp_add(kiln_tb_hparams *h, const char *name, kiln_tb_hp_type type) {
    h->items = realloc(h->items, (size_t)(h->n + 1) * sizeof *h->items);
    h->items[h->n] =
        (kiln_tb_hparam){strdup(name), type, 1, type == KILN_TB_HP_STRING ? strdup("x") : NULL, 0};
    h->n++;
}

static void test_experiment_summary(void) {
    const char *dir = sub("exp");
    kiln_tb_hparams h = {0};
    hp_add(&h, "optimizer", KILN_TB_HP_STRING);
    hp_add(&h, "optimizer.adam.learning_rate", KILN_TB_HP_NUMBER);
    kiln_tb_metric_info m[2] = {
        {"train", "epoch_loss", "loss", KILN_TB_DATASET_TRAINING},
        {"validation", "epoch_loss", "val_loss", KILN_TB_DATASET_VALIDATION}};
    int changed = -1, files;
    CHECK_OK(kiln_tb_experiment_update(dir, "fm", &h, m, 2, &changed));
    CHECK(changed == 1);
    Tensorboard__Hparams__Experiment *x = read_experiment(dir, &files);
    CHECK(files == 1 && x);
    if (x) {
        CHECK(strcmp(x->name, "fm") == 0 && x->n_hparam_infos == 2 && x->n_metric_infos == 2);
        CHECK(x->n_hparam_infos == 2 && strcmp(x->hparam_infos[0]->name, "optimizer") == 0 &&
              x->hparam_infos[0]->type == TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_STRING &&
              x->hparam_infos[1]->type == TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_FLOAT64);
        CHECK(x->n_metric_infos == 2 &&
              strcmp(x->metric_infos[1]->name->group, "validation") == 0 &&
              strcmp(x->metric_infos[1]->name->tag, "epoch_loss") == 0 &&
              strcmp(x->metric_infos[1]->display_name, "val_loss") == 0 &&
              x->metric_infos[1]->dataset_type ==
                  TENSORBOARD__HPARAMS__DATASET_TYPE__DATASET_VALIDATION);
        tensorboard__hparams__experiment__free_unpacked(x, NULL);
    }
    CHECK_OK(kiln_tb_experiment_update(dir, "fm", &h, m, 2, &changed)); /* nothing new */
    CHECK(changed == 0);
    hp_add(&h, "data.shuffle", KILN_TB_HP_BOOL);
    kiln_tb_metric_info m2[1] = {
        {"validation", "epoch_accuracy", "val_accuracy", KILN_TB_DATASET_VALIDATION}};
    CHECK_OK(kiln_tb_experiment_update(dir, "fm", &h, m2, 1, &changed));
    CHECK(changed == 1);
    x = read_experiment(dir, &files);
    CHECK(files == 1 && x); /* the old file is gone */
    if (x) {
        CHECK(x->n_hparam_infos == 3 && strcmp(x->hparam_infos[2]->name, "data.shuffle") == 0 &&
              x->hparam_infos[2]->type == TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_BOOL);
        CHECK(x->n_metric_infos == 3 &&
              strcmp(x->metric_infos[2]->name->tag, "epoch_accuracy") == 0);
        tensorboard__hparams__experiment__free_unpacked(x, NULL);
    }
    kiln_tb_hparams_free(&h);
    /* eight processes at once, each with its own hyperparameter: all of them end up in one file */
    pid_t pids[8];
    for (int i = 0; i < 8; i++) {
        if ((pids[i] = fork()) == 0) {
            kiln_tb_hparams mine = {0};
            char name[32];
            snprintf(name, sizeof name, "process.%d", i);
            hp_add(&mine, name, KILN_TB_HP_NUMBER);
            kiln_status st = kiln_tb_experiment_update(dir, "fm", &mine, NULL, 0, NULL);
            kiln_tb_hparams_free(&mine);
            _exit(st == KILN_OK ? 0 : 1);
        }
    }
    for (int i = 0; i < 8; i++) {
        int status = -1;
        waitpid(pids[i], &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    x = read_experiment(dir, &files);
    CHECK(files == 1 && x && x->n_hparam_infos == 3 + 8);
    if (x) tensorboard__hparams__experiment__free_unpacked(x, NULL);
}

/* The hyperparameter of an experiment by name. */
static const Tensorboard__Hparams__HParamInfo *info(const Tensorboard__Hparams__Experiment *x,
                                                    const char *name) {
    for (size_t i = 0; x && i < x->n_hparam_infos; i++)
        if (!strcmp(x->hparam_infos[i]->name, name)) return x->hparam_infos[i];
    return NULL;
}

static int has_interval(const Tensorboard__Hparams__HParamInfo *h, double lo, double hi) {
    return h && h->domain_case == TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN_DOMAIN_INTERVAL &&
           h->domain_interval->min_value == lo && h->domain_interval->max_value == hi;
}

/* The discrete domain as text: "s:adam s:sgd b:0 b:1". */
static void discrete(const Tensorboard__Hparams__HParamInfo *h, char *out, size_t cap) {
    out[0] = 0;
    if (!h || h->domain_case != TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN_DOMAIN_DISCRETE) return;
    for (size_t i = 0; i < h->domain_discrete->n_values; i++) {
        const Google__Protobuf__Value *v = h->domain_discrete->values[i];
        size_t n = strlen(out);
        if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
            snprintf(out + n, cap - n, "%ss:%s", n ? " " : "", v->string_value);
        else if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE)
            snprintf(out + n, cap - n, "%sb:%d", n ? " " : "", v->bool_value);
        else
            snprintf(out + n, cap - n, "%s?", n ? " " : "");
    }
}

/* Domains and differs over several runs, as TensorBoard computes them from session infos. */
static void test_experiment_domains(void) {
    const char *dir = sub("exp-domains");
    kiln_tb_hparams h = {0};
    hp_add(&h, "optimizer", KILN_TB_HP_STRING);
    hp_add(&h, "optimizer.adam.learning_rate", KILN_TB_HP_NUMBER);
    hp_add(&h, "data.shuffle", KILN_TB_HP_BOOL);
    hp_add(&h, "train.ema_decay", KILN_TB_HP_NUMBER);
    free(h.items[0].string), h.items[0].string = strdup("adam");
    h.items[1].number = 0.01, h.items[2].boolean = 1, h.items[3].number = NAN;
    int changed = -1, files;
    CHECK_OK(kiln_tb_experiment_update(dir, "d", &h, NULL, 0, &changed));
    Tensorboard__Hparams__Experiment *x = read_experiment(dir, &files);
    char d[256];
    discrete(info(x, "optimizer"), d, sizeof d);
    CHECK_MSG(!strcmp(d, "s:adam") && !info(x, "optimizer")->differs, "optimizer: %s", d);
    CHECK(has_interval(info(x, "optimizer.adam.learning_rate"), 0.01, 0.01) &&
          !info(x, "optimizer.adam.learning_rate")->differs);
    discrete(info(x, "data.shuffle"), d, sizeof d);
    CHECK_MSG(!strcmp(d, "b:1") && !info(x, "data.shuffle")->differs, "data.shuffle: %s", d);
    const Tensorboard__Hparams__HParamInfo *ema = info(x, "train.ema_decay"); /* NaN: no domain */
    CHECK(ema && ema->domain_case == TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN__NOT_SET && !ema->differs);
    if (x) tensorboard__hparams__experiment__free_unpacked(x, NULL);
    /* a second run with the same values: nothing new */
    CHECK_OK(kiln_tb_experiment_update(dir, "d", &h, NULL, 0, &changed));
    CHECK(changed == 0);
    /* a third with another learning rate: the interval widens, the learning rate differs */
    h.items[1].number = 0.001;
    CHECK_OK(kiln_tb_experiment_update(dir, "d", &h, NULL, 0, &changed));
    CHECK(changed == 1);
    x = read_experiment(dir, &files);
    CHECK(files == 1 && has_interval(info(x, "optimizer.adam.learning_rate"), 0.001, 0.01) &&
          info(x, "optimizer.adam.learning_rate")->differs && !info(x, "optimizer")->differs &&
          !info(x, "data.shuffle")->differs);
    if (x) tensorboard__hparams__experiment__free_unpacked(x, NULL);
    /* a value inside the interval changes nothing; other optimizer and shuffle values do */
    h.items[1].number = 0.005;
    CHECK_OK(kiln_tb_experiment_update(dir, "d", &h, NULL, 0, &changed));
    CHECK(changed == 0);
    free(h.items[0].string), h.items[0].string = strdup("sgd");
    h.items[2].boolean = 0;
    CHECK_OK(kiln_tb_experiment_update(dir, "d", &h, NULL, 0, &changed));
    CHECK(changed == 1);
    x = read_experiment(dir, &files);
    discrete(info(x, "optimizer"), d, sizeof d);
    CHECK_MSG(!strcmp(d, "s:adam s:sgd") && info(x, "optimizer")->differs, "optimizer: %s", d);
    discrete(info(x, "data.shuffle"), d, sizeof d);
    CHECK_MSG(!strcmp(d, "b:0 b:1") && info(x, "data.shuffle")->differs, "data.shuffle: %s", d);
    if (x) tensorboard__hparams__experiment__free_unpacked(x, NULL);
    /* a value of another type (a string where numbers were) marks it as differing */
    kiln_tb_hparams other = {0};
    hp_add(&other, "train.ema_decay", KILN_TB_HP_STRING);
    CHECK_OK(kiln_tb_experiment_update(dir, "d", &other, NULL, 0, &changed));
    CHECK(changed == 1);
    x = read_experiment(dir, &files);
    ema = info(x, "train.ema_decay");
    CHECK(ema && ema->differs && ema->type == TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_FLOAT64);
    if (x) tensorboard__hparams__experiment__free_unpacked(x, NULL);
    kiln_tb_hparams_free(&other);
    kiln_tb_hparams_free(&h);
}

/* Trials of the same hyperparameters share a group; seed, threads and logging do not count. */
static void test_hparams_group(void) {
    kiln_cfg *a, *b;
    CHECK_OK(kiln_config_parse(CONFIG, "a.yaml", &a));
    CHECK_OK(kiln_config_parse(CONFIG, "b.yaml", &b));
    if (!a || !b) return;
    char ga[33], gb[33];
    kiln_tb_hparams ha, hb;
    const char *same[] = {"seed=8", "train.threads=4", "log.every_steps=10", "train.checkpoint.keep=9",
                          "train.export.every_epochs=2"};
    const char *other[] = {"optimizer.adam.learning_rate=0.002", "data.batch_size=64",
                           "model.layers[1].dense.activation=tanh", "data.shuffle=false"};
    CHECK_OK(kiln_tb_hparams_from_config(a, &ha));
    CHECK_OK(kiln_tb_hparams_group(&ha, ga));
    CHECK(strlen(ga) == 32 && strspn(ga, "0123456789abcdef") == 32);
    for (size_t i = 0; i < sizeof same / sizeof *same + sizeof other / sizeof *other; i++) {
        int is_same = i < sizeof same / sizeof *same;
        const char *set = is_same ? same[i] : other[i - sizeof same / sizeof *same];
        kiln_cfg *c;
        CHECK_OK(kiln_config_parse(CONFIG, "c.yaml", &c));
        if (!c) continue;
        CHECK_OK(kiln_config_set(c, set));
        CHECK_OK(kiln_tb_hparams_from_config(c, &hb));
        CHECK_OK(kiln_tb_hparams_group(&hb, gb));
        CHECK_MSG((strcmp(ga, gb) == 0) == is_same, "--set %s: group %s, first %s", set, gb, ga);
        kiln_tb_hparams_free(&hb);
        kiln_cfg_free(c);
    }
    /* the order of the keys in the file does not matter */
    CHECK_OK(kiln_tb_hparams_from_config(b, &hb));
    kiln_tb_hparam t = hb.items[0];
    hb.items[0] = hb.items[hb.n - 1], hb.items[hb.n - 1] = t;
    CHECK_OK(kiln_tb_hparams_group(&hb, gb));
    CHECK(strcmp(ga, gb) == 0);
    kiln_tb_hparams_free(&ha), kiln_tb_hparams_free(&hb);
    kiln_cfg_free(a), kiln_cfg_free(b);
}

static char *slurp(const char *path) {
    void *b;
    size_t n;
    return kiln_file_read_all(path, &b, &n, 1 << 24) == KILN_OK ? b : NULL;
}

static void test_projector(void) {
    const char *run = sub("proj");
    float emb[3 * 2] = {1, -2.5f, 0.125f, 1e-7f, 3, 4};
    const char *cols[2] = {"label", "prediction"};
    const char *meta[6] = {"Dress", "Shirt", "T-shirt\t/top", "T-shirt\t/top", "9", "7"};
    CHECK_OK(kiln_tb_projector_write(run, "dropout_1", emb, 3, 2, cols, 2, meta));
    char path[512];
    snprintf(path, sizeof path, "%s/projector/tensors.tsv", run);
    char *t = slurp(path);
    CHECK(t && strcmp(t, "1\t-2.5\n0.125\t1e-07\n3\t4\n") == 0);
    kiln_free(t);
    snprintf(path, sizeof path, "%s/projector/metadata.tsv", run);
    t = slurp(path);
    CHECK(t &&
          strcmp(t, "label\tprediction\nDress\tShirt\nT-shirt /top\tT-shirt /top\n9\t7\n") == 0);
    kiln_free(t);
    snprintf(path, sizeof path, "%s/projector_config.pbtxt", run);
    t = slurp(path);
    CHECK(
        t &&
        strcmp(
            t,
            "embeddings {\n  tensor_name: \"dropout_1\"\n  tensor_path: \"projector/tensors.tsv\"\n"
            "  metadata_path: \"projector/metadata.tsv\"\n}\n") == 0);
    kiln_free(t);
    CHECK_OK(
        kiln_tb_projector_write(run, "a\"b", emb, 3, 2, cols, 1, meta)); /* one column: no header */
    snprintf(path, sizeof path, "%s/projector/metadata.tsv", run);
    t = slurp(path);
    CHECK(t && strcmp(t, "Dress\nShirt\nT-shirt /top\n") == 0);
    kiln_free(t);
    snprintf(path, sizeof path, "%s/projector_config.pbtxt", run);
    t = slurp(path);
    CHECK(t && strstr(t, "tensor_name: \"a\\\"b\"") != NULL);
    kiln_free(t);
    CHECK(kiln_tb_projector_write(run, "x", emb, 0, 2, NULL, 0, NULL) == KILN_ERR_INVALID);
}

/* kiln_tb_format_g6 against printf's %.6g: every dyadic value k * 2^e (ties included) over the
 * range, a pseudo-random sweep of magnitudes, and the edges. */
static void test_format_g6(void) {
    char a[32], b[32];
    int diff = 0, n = 0;
    float specials[] = {0.0f,      -0.0f,           1e-4f,     9.99999e-5f, 9.999996f,
                        99999.95f, 999999.0f,       999999.5f, 1e6f,        1e-7f,
                        -3.4e38f,  1.17549435e-38f, NAN,       INFINITY,    -INFINITY,
                        0.1f,      12345.25f,       12345.75f, 0.125f};
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++, n++) {
        int len = kiln_tb_format_g6(specials[i], a);
        snprintf(b, sizeof b, "%.6g", (double)specials[i]);
        if (strcmp(a, b) || len != (int)strlen(a))
            diff++, fprintf(stderr, "  %.9g: %s, printf %s\n", (double)specials[i], a, b);
    }
    for (int e = -24; e <= 12; e++)
        for (int k = 0; k < 20000; k++, n++) {
            float v = ldexpf((float)(2 * k + 1), e) * (k % 3 ? 1 : -1);
            kiln_tb_format_g6(v, a);
            snprintf(b, sizeof b, "%.6g", (double)v);
            if (strcmp(a, b) && diff++ < 5)
                fprintf(stderr, "  %.9g: %s, printf %s\n", (double)v, a, b);
        }
    uint32_t s = 1;
    for (int i = 0; i < 300000; i++, n++) {
        s = s * 1103515245u + 12345u;
        float v = (float)((double)(s >> 8) / (1 << 24) * pow(10.0, (int)(s % 13) - 6));
        kiln_tb_format_g6(v, a);
        snprintf(b, sizeof b, "%.6g", (double)v);
        if (strcmp(a, b) && diff++ < 5) fprintf(stderr, "  %.9g: %s, printf %s\n", (double)v, a, b);
    }
    CHECK_MSG(diff == 0, "%d of %d values differ from printf", diff, n);
}

static int pixel_is(const unsigned char *img, int w, int x, int y, int r, int g, int b) {
    const unsigned char *p = img + 3 * ((size_t)y * w + x);
    return p[0] == r && p[1] == g && p[2] == b;
}

static void test_render(void) {
    float x[3 * 2 * 2] = {0, 1, 2, 3, 5, 5, 5, 5, -1, 0, 0, 1};
    int truth[3] = {1, 2, 3}, pred[3] = {1, 0, -1}, w, h;
    unsigned char *img = kiln_tb_render_samples(x, 3, 1, 2, 2, truth, pred, &w, &h);
    CHECK(img != NULL);
    if (img) {
        /* 2x2 images scaled 8x (the cap) into tiles as wide as the caption "t1 p1" (38 pixels + 4)
         * plus a 2-pixel frame: 46 x (16 + 14 + 4); 2 columns, 2 rows, 4-pixel gaps */
        CHECK_MSG(w == 2 * 46 + 3 * 4 && h == 2 * 34 + 3 * 4, "%d x %d", w, h);
        CHECK(pixel_is(img, w, 4, 4, 0, 170, 60));           /* tile 0: right, green frame */
        CHECK(pixel_is(img, w, 4 + 46 + 4, 4, 220, 30, 30)); /* tile 1: wrong, red frame */
        CHECK(pixel_is(img, w, 4, 4 + 34 + 4, 24, 24, 24));  /* tile 2: no prediction, no color */
        CHECK(pixel_is(img, w, 0, 0, 48, 48, 48));           /* background */
        int ix = 4 + 2 + (42 - 16) / 2, iy = 4 + 2;          /* tile 0's picture, centered */
        CHECK(pixel_is(img, w, ix, iy, 0, 0, 0));            /* its darkest pixel (x = 0) */
        CHECK(pixel_is(img, w, ix + 15, iy + 15, 255, 255, 255)); /* its brightest (x = 3) */
        CHECK(pixel_is(img, w, ix + 8, iy, 85, 85, 85));          /* x = 1 of 0..3 */
        CHECK(pixel_is(img, w, ix + 46 + 4, iy, 128, 128,
                       128)); /* tile 1's image is constant: mid gray */
        free(img);
    }
    CHECK(kiln_tb_render_samples(x, 3, 2, 2, 2, truth, pred, &w, &h) == NULL); /* 2 channels */
    int64_t cm[9] = {10, 0, 0, 1, 9, 0, 0, 0, 0};
    img = kiln_tb_render_confusion(cm, 3, &w, &h);
    CHECK(img != NULL);
    if (img) {
        int cw = w / 4, ch = h / 4;
        CHECK(w == 4 * cw && h == 4 * ch && cw == (4 * 3 - 1) * 2 + 12 && ch == 5 * 2 + 12);
        CHECK(pixel_is(img, w, cw + 1, ch + 1, 8, 48, 107));            /* (0,0): all of row 0 */
        CHECK(pixel_is(img, w, 2 * cw + 1, ch + 1, 255, 255, 255));     /* (0,1): none */
        CHECK(pixel_is(img, w, 3 * cw + 1, 3 * ch + 1, 255, 255, 255)); /* an empty row */
        free(img);
    }
    CHECK(kiln_tb_render_confusion(cm, 0, &w, &h) == NULL);
    CHECK(kiln_tb_render_confusion(cm, 257, &w, &h) == NULL);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/kiln-test-tboard-XXXXXX");
    if (!mkdtemp(root)) return 1;
    RUN(test_file_names_and_version);
    RUN(test_scalars);
    RUN(test_histogram_buckets);
    RUN(test_histogram_events);
    RUN(test_images_and_text);
    RUN(test_hparams_from_config);
    RUN(test_experiment_summary);
    RUN(test_experiment_domains);
    RUN(test_hparams_group);
    RUN(test_projector);
    RUN(test_format_g6);
    RUN(test_render);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return kiln_test_summary();
}

/* test_tb_train.c — TensorBoard output of real training runs (an MLP on Fashion-MNIST's 10,000
 * test images, 2 and 3 epochs), every event file read back with the tests' own reader:
 *  - the layout: <run>/ (config text, hparams), train/, validation/, test/, the projector's
 *    files, and the experiment summary in the runs folder;
 *  - every scalar matches metrics.jsonl one to one (split = folder, "batch_"/"epoch_" + name,
 *    metrics.jsonl's batch_loss being the tag batch_loss; step, float value, wall time),
 *    metadata on each tag's first value only;
 *  - no two points of metrics.jsonl share (step, split, name): running values are logged every
 *    9 steps and an epoch has 63, so the running loss falls on each epoch's last step, where the
 *    epoch's mean loss is logged too (as batch_loss and loss);
 *  - histograms of every parameter and gradient at each epoch end, counts adding up to the
 *    parameter's size; sample and confusion-matrix PNGs that decode to their declared sizes;
 *    the config text equal to config.yaml; hparams start (values of the config) and end;
 *  - a resumed run: new files starting with SessionLog START at the checkpoint's step + 1, and
 *    the scalars TensorBoard keeps (earlier points at steps >= that dropped) equal to
 *    metrics.jsonl read as its readers do (the last line per step, split and name).
 * Trainings run in child processes (fork), so the parent never starts OpenMP threads. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stb_image.h>

#include "check.h"
#include "kiln/trainer.h"
#include "tb_events.h"
#include "train/tb_hooks.h"

#define FM "/usr/share/datasets/fashion-mnist"

static char root[64];

static const char *CONFIG =
    "experiment: tbtest\n"
    "seed: 3\n"
    "data:\n"
    "  source: idx\n"
    "  train: {images: " FM "/t10k-images-idx3-ubyte.gz, labels: " FM
    "/t10k-labels-idx1-ubyte.gz}\n"
    "  test: {images: " FM "/t10k-images-idx3-ubyte.gz, labels: " FM "/t10k-labels-idx1-ubyte.gz}\n"
    "  validation_split: 0.2\n"
    "  normalize: {scale: 0.00392156862745098}\n"
    "  batch_size: 128\n"
    "model:\n"
    "  input: [1, 28, 28]\n"
    "  layers:\n"
    "    - flatten\n"
    "    - dense: {units: 32, activation: relu}\n"
    "    - dropout: {rate: 0.1}\n"
    "    - dense: {units: 10}\n"
    "loss: softmax_cross_entropy\n"
    "metrics: [accuracy]\n"
    "optimizer: {adam: {learning_rate: 0.001}}\n"
    "train:\n"
    "  epochs: %d\n"
    "  ema_decay: 0.9\n"
    "  checkpoint: {every_steps: 20, keep: 100}\n"
    "log: {every_steps: 9, image_samples: 8, projector_samples: 100}\n";

/* Trains in a child process; returns its exit status (0: kiln_train returned KILN_OK). */
static int train_child(const char *config, const char *resume, char *run_dir, size_t cap) {
    int fds[2];
    if (pipe(fds)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        char runs[128];
        snprintf(runs, sizeof runs, "%s/runs", root);
        kiln_train_opts o = {.config_path = resume ? NULL : config,
                             .runs_dir = runs,
                             .resume = resume,
                             .quiet = 1,
                             .threads = 2};
        kiln_train_result r;
        kiln_status st = kiln_train(&o, &r);
        if (st) fprintf(stderr, "kiln_train: %s\n", kiln_last_error());
        if (write(fds[1], r.run_dir, strlen(r.run_dir) + 1) < 0) _exit(3);
        _exit(st == KILN_OK ? 0 : 1);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], run_dir, cap - 1);
    run_dir[n > 0 ? n : 0] = 0;
    close(fds[0]);
    int status = -1;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char *write_config(int epochs) {
    static char path[128];
    snprintf(path, sizeof path, "%s/tb-%d.yaml", root, epochs);
    FILE *f = fopen(path, "w");
    fprintf(f, CONFIG, epochs);
    fclose(f);
    return path;
}

/* ---- what the event files say ---- */

typedef struct {
    int split; /* 0 train, 1 validation, 2 test */
    char name[64];
    int per_batch;
    int64_t step;
    float value;
    double wall;
    int used;
} point;

typedef struct {
    point *p;
    int n, cap;
    int metadata_ok; /* every tag's first value in a file has metadata, no other does */
    int hist[64];    /* histogram values seen per tag index below */
} scalars;

static const char *const SPLITS[] = {"train", "validation", "test"};

/* Adds the scalars of one events file (in file order), applying SessionLog START: points of this
 * folder at steps >= its step that came before it are dropped, as TensorBoard's loader does. */
static void add_file(scalars *s, int split, const tb_events *e) {
    char seen[64][64];
    int n_seen = 0;
    for (int i = 0; i < e->n; i++) {
        const Tensorflow__Event *ev = e->ev[i];
        if (ev->what_case == TENSORFLOW__EVENT__WHAT_SESSION_LOG &&
            ev->session_log->status == TENSORFLOW__SESSION_LOG__SESSION_STATUS__START) {
            int k = 0;
            for (int j = 0; j < s->n; j++)
                if (s->p[j].split != split || s->p[j].step < ev->step) s->p[k++] = s->p[j];
            s->n = k;
            continue;
        }
        const Tensorflow__Summary__Value *v = tb_value(e, i);
        if (!v) continue;
        int first = 1;
        for (int j = 0; j < n_seen; j++) first &= strcmp(seen[j], v->tag) != 0;
        if (first && n_seen < 64) snprintf(seen[n_seen++], 64, "%s", v->tag);
        if ((v->metadata != NULL) != first) s->metadata_ok = 0;
        const char *plugin =
            v->metadata && v->metadata->plugin_data ? v->metadata->plugin_data->plugin_name : NULL;
        if (plugin && strcmp(plugin, "scalars")) continue;
        if (!plugin && strncmp(v->tag, "batch_", 6) && strncmp(v->tag, "epoch_", 6)) continue;
        const Tensorflow__TensorProto *t = v->tensor;
        CHECK(t && t->dtype == TENSORFLOW__DATA_TYPE__DT_FLOAT && t->n_float_val == 1 &&
              t->tensor_shape->n_dim == 0);
        if (!t || t->n_float_val != 1) continue;
        if (s->n == s->cap)
            s->cap = s->cap ? 2 * s->cap : 256, s->p = realloc(s->p, (size_t)s->cap * sizeof *s->p);
        point *p = &s->p[s->n++];
        memset(p, 0, sizeof *p);
        p->split = split, p->per_batch = v->tag[0] == 'b', p->step = ev->step,
        p->value = t->float_val[0], p->wall = ev->wall_time;
        snprintf(p->name, sizeof p->name, "%s", p->per_batch && !strcmp(v->tag, "batch_loss") ? "batch_loss" : v->tag + 6);
    }
}

static int load_dir(const char *dir, tb_events *files, int cap) {
    char *names[8];
    int n = tb_event_files(dir, names, 8);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char err[512];
        if (ok < cap && tb_events_load(names[i], &files[ok], err, sizeof err) == 0)
            ok++;
        else
            CHECK_MSG(0, "%s", err);
        free(names[i]);
    }
    return ok;
}

/* metrics.jsonl, the last line per (step, split, name) */
typedef struct {
    point *p;
    int n, cap;
} jsonl;

static int on_metric(const kiln_metric_point *m, void *ctx) {
    jsonl *j = ctx;
    for (int i = 0; i < j->n; i++)
        if (j->p[i].step == m->step && j->p[i].split == (int)m->split &&
            !strcmp(j->p[i].name, m->name)) {
            j->p[i].value = (float)m->value, j->p[i].wall = m->wall_time;
            return 0;
        }
    if (j->n == j->cap)
        j->cap = j->cap ? 2 * j->cap : 256, j->p = realloc(j->p, (size_t)j->cap * sizeof *j->p);
    point *p = &j->p[j->n++];
    memset(p, 0, sizeof *p);
    p->split = (int)m->split, p->step = m->step, p->value = (float)m->value, p->wall = m->wall_time;
    snprintf(p->name, sizeof p->name, "%s", m->name);
    return 0;
}

/* Every metrics.jsonl point has exactly one TensorBoard scalar and the other way round. */
static void match_scalars(const char *run, scalars *s) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    jsonl j = {0};
    CHECK_OK(kiln_run_read_metrics(path, NULL, on_metric, &j, NULL));
    CHECK_MSG(j.n == s->n, "metrics.jsonl has %d points, the event files %d scalars", j.n, s->n);
    int missing = 0, wall = 0;
    for (int i = 0; i < j.n; i++) {
        int found = 0;
        for (int k = 0; k < s->n && !found; k++) {
            point *q = &s->p[k];
            if (q->used || q->split != j.p[i].split || q->step != j.p[i].step ||
                strcmp(q->name, j.p[i].name) ||
                !(q->value == j.p[i].value || (isnan(q->value) && isnan(j.p[i].value))))
                continue;
            q->used = found = 1;
            wall += fabs(q->wall - j.p[i].wall) > 5;
        }
        if (!found && missing++ < 5)
            fprintf(stderr, "  no scalar for %s/%s step %lld value %g\n", SPLITS[j.p[i].split],
                    j.p[i].name, (long long)j.p[i].step, (double)j.p[i].value);
    }
    CHECK_MSG(missing == 0, "%d metrics.jsonl points without their scalar", missing);
    CHECK(wall == 0);
    free(j.p);
}

static int count(const scalars *s, int split, const char *name, int per_batch) {
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n +=
            s->p[i].split == split && !strcmp(s->p[i].name, name) && s->p[i].per_batch == per_batch;
    return n;
}

static char *slurp(const char *path, size_t *len) {
    void *b;
    size_t n;
    if (kiln_file_read_all(path, &b, &n, 1 << 26)) return NULL;
    if (len) *len = n;
    return b;
}

static int lines(const char *text) {
    int n = 0;
    for (; text && *text; text++) n += *text == '\n';
    return n;
}

/* Every line of metrics.jsonl as it is (no last-line-per-key folding): no (step, split, name)
 * twice. */
typedef struct {
    int64_t step[4096];
    int split[4096];
    char name[4096][48];
    int n, dup;
} raw_points;

static int on_raw(const kiln_metric_point *m, void *ctx) {
    raw_points *r = ctx;
    for (int i = 0; i < r->n; i++)
        if (r->step[i] == m->step && r->split[i] == (int)m->split && !strcmp(r->name[i], m->name)) {
            if (r->dup++ < 3)
                fprintf(stderr, "  metrics.jsonl: step %lld, %s, %s twice\n", (long long)m->step,
                        SPLITS[m->split], m->name);
            return 0;
        }
    if (r->n < 4096) {
        r->step[r->n] = m->step, r->split[r->n] = (int)m->split;
        snprintf(r->name[r->n++], sizeof r->name[0], "%s", m->name);
    }
    return 0;
}

static void check_unique_points(const char *run) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    static raw_points r;
    memset(&r, 0, sizeof r);
    CHECK_OK(kiln_run_read_metrics(path, NULL, on_raw, &r, NULL));
    CHECK_MSG(r.n > 40 && r.dup == 0, "%d points, %d repeated (step, split, name)", r.n, r.dup);
}

/* ---- the fresh run ---- */

static void check_root(const char *run, int expect_end) {
    char dir[4200];
    tb_events e[4];
    int n = load_dir(run, e, 4);
    CHECK(n == 1);
    if (n < 1) return;
    CHECK(e[0].ev[0]->what_case == TENSORFLOW__EVENT__WHAT_FILE_VERSION);
    int at = -1;
    CHECK(tb_count_tag(&e[0], "config", &at) == 1);
    if (at >= 0) { /* the config.yaml, as a Markdown code block */
        snprintf(dir, sizeof dir, "%s/config.yaml", run);
        char *yaml = slurp(dir, NULL), md[8192];
        size_t k = 0;
        int bol = 1;
        for (const char *c = yaml; c && *c && k < sizeof md - 8; c++) {
            if (bol) memcpy(md + k, "    ", 4), k += 4;
            md[k++] = *c, bol = *c == '\n';
        }
        md[k] = 0;
        const Tensorflow__TensorProto *t = tb_value(&e[0], at)->tensor;
        CHECK(t->n_string_val == 1 && t->string_val[0].len == k &&
              memcmp(t->string_val[0].data, md, k) == 0);
        kiln_free(yaml);
    }
    at = -1;
    CHECK(tb_count_tag(&e[0], "_hparams_/session_start_info", &at) == 1);
    Tensorboard__Hparams__HParamsPluginData *pd =
        at >= 0 ? tb_hparams_content(tb_value(&e[0], at)) : NULL;
    CHECK(pd &&
          pd->data_case == TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_START_INFO);
    if (pd && pd->data_case == TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_START_INFO) {
        const Tensorboard__Hparams__SessionStartInfo *si = pd->session_start_info;
        CHECK(strcmp(si->model_uri, run) == 0 &&
              fabs(si->start_time_secs - (double)time(NULL)) < 120);
        int found = 0;
        for (size_t i = 0; i < si->n_hparams; i++) {
            const char *key = si->hparams[i]->key;
            const Google__Protobuf__Value *v = si->hparams[i]->value;
            if (!strcmp(key, "optimizer.adam.learning_rate")) found += v->number_value == 0.001;
            if (!strcmp(key, "model.layers[1].dense.units")) found += v->number_value == 32;
            if (!strcmp(key, "optimizer")) found += !strcmp(v->string_value, "adam");
            if (!strcmp(key, "data.shuffle"))
                found += v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE && v->bool_value;
            if (!strcmp(key, "log.projector_samples")) found += v->number_value == 100;
        }
        CHECK_MSG(found == 5, "found %d of 5 hyperparameters", found);
    }
    if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
    at = -1;
    CHECK(tb_count_tag(&e[0], "_hparams_/session_end_info", &at) == expect_end);
    if (at >= 0) {
        pd = tb_hparams_content(tb_value(&e[0], at));
        CHECK(pd &&
              pd->data_case == TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_END_INFO &&
              pd->session_end_info->status == TENSORBOARD__HPARAMS__STATUS__STATUS_SUCCESS);
        if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
    }
    for (int i = 0; i < n; i++) tb_events_free(&e[i]);
}

static void check_pictures(const tb_events *e, int epochs) {
    CHECK(tb_count_tag(e, "samples", NULL) == epochs);
    CHECK(tb_count_tag(e, "confusion_matrix", NULL) == epochs);
    for (int i = 0; i < e->n; i++) {
        const Tensorflow__Summary__Value *v = tb_value(e, i);
        if (!v || (strcmp(v->tag, "samples") && strcmp(v->tag, "confusion_matrix"))) continue;
        const Tensorflow__TensorProto *t = v->tensor;
        CHECK(t->dtype == TENSORFLOW__DATA_TYPE__DT_STRING && t->n_string_val == 3);
        if (t->n_string_val != 3) continue;
        char ws[16] = "", hs[16] = ""; /* bytes, not NUL-terminated */
        memcpy(ws, t->string_val[0].data, t->string_val[0].len < 15 ? t->string_val[0].len : 15);
        memcpy(hs, t->string_val[1].data, t->string_val[1].len < 15 ? t->string_val[1].len : 15);
        int dw = atoi(ws), dh = atoi(hs), x, y, c;
        unsigned char *px =
            stbi_load_from_memory(t->string_val[2].data, (int)t->string_val[2].len, &x, &y, &c, 3);
        CHECK_MSG(px && x == dw && y == dh && c == 3, "%s: PNG %d x %d, declared %d x %d", v->tag,
                  x, y, dw, dh);
        if (!strcmp(v->tag, "confusion_matrix"))
            CHECK(x % 11 == 0 && y % 11 == 0); /* 10 classes + the header */
        stbi_image_free(px);
    }
}

static void check_histograms(const tb_events *e, int epochs, const int64_t *steps) {
    static const char *const TAGS[] = {"dense_1/kernel", "dense_1/bias", "dense_2/kernel",
                                       "dense_2/bias"};
    static const int SIZE[] = {784 * 32, 32, 32 * 10, 10};
    for (int k = 0; k < 8; k++) {
        char tag[64];
        snprintf(tag, sizeof tag, "%s%s", TAGS[k % 4], k >= 4 ? "_grad" : "");
        int n = 0;
        for (int i = 0; i < e->n; i++) {
            const Tensorflow__Summary__Value *v = tb_value(e, i);
            if (!v || strcmp(v->tag, tag)) continue;
            const Tensorflow__TensorProto *t = v->tensor;
            CHECK(t->dtype == TENSORFLOW__DATA_TYPE__DT_DOUBLE && t->tensor_shape->n_dim == 2);
            double total = 0;
            for (size_t b = 2; b < t->n_double_val; b += 3) total += t->double_val[b];
            CHECK_MSG(total == SIZE[k % 4], "%s: %g values counted", tag, total);
            CHECK(n < epochs && e->ev[i]->step == steps[n]);
            n++;
        }
        CHECK_MSG(n == epochs, "%s: %d histograms", tag, n);
    }
}

/* The experiment summary's domains after the fresh run (runs = 1: epochs 2) and after the
 * resumed test's run too (runs = 2: epochs 3; everything else the same). */
static void check_domains(const Tensorboard__Hparams__Experiment *x, int runs) {
    const Tensorboard__Hparams__HParamInfo *lr = NULL, *ep = NULL, *opt = NULL, *seed = NULL;
    for (size_t i = 0; i < x->n_hparam_infos; i++) {
        const Tensorboard__Hparams__HParamInfo *h = x->hparam_infos[i];
        if (!strcmp(h->name, "optimizer.adam.learning_rate")) lr = h;
        if (!strcmp(h->name, "train.epochs")) ep = h;
        if (!strcmp(h->name, "optimizer")) opt = h;
        if (!strcmp(h->name, "seed")) seed = h;
    }
    CHECK(lr && lr->domain_case == TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN_DOMAIN_INTERVAL &&
          lr->domain_interval->min_value == 0.001 && lr->domain_interval->max_value == 0.001 &&
          !lr->differs);
    CHECK(seed && !seed->differs);
    CHECK(opt && opt->domain_case == TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN_DOMAIN_DISCRETE &&
          opt->domain_discrete->n_values == 1 &&
          !strcmp(opt->domain_discrete->values[0]->string_value, "adam") && !opt->differs);
    CHECK_MSG(ep && ep->domain_case == TENSORBOARD__HPARAMS__HPARAM_INFO__DOMAIN_DOMAIN_INTERVAL &&
                  ep->domain_interval->min_value == 2 &&
                  ep->domain_interval->max_value == (runs == 1 ? 2 : 3) && ep->differs == (runs > 1),
              "train.epochs after %d runs", runs);
    size_t differ = 0;
    for (size_t i = 0; i < x->n_hparam_infos; i++) differ += x->hparam_infos[i]->differs != 0;
    CHECK_MSG(differ == (runs > 1 ? 1u : 0u), "%zu hyperparameters differ after %d runs", differ, runs);
}

/* The experiment summary of the runs folder. */
static Tensorboard__Hparams__Experiment *experiment(void) {
    char dir[256], *names[8];
    snprintf(dir, sizeof dir, "%s/runs", root);
    int n = tb_event_files(dir, names, 8);
    Tensorboard__Hparams__Experiment *x = NULL;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        tb_events e;
        char err[512];
        int at = -1;
        if (!x && l > 11 && !strcmp(names[i] + l - 11, ".experiment") &&
            tb_events_load(names[i], &e, err, sizeof err) == 0) {
            if (tb_count_tag(&e, "_hparams_/experiment", &at) == 1) {
                Tensorboard__Hparams__HParamsPluginData *pd = tb_hparams_content(tb_value(&e, at));
                if (pd && pd->data_case == TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_EXPERIMENT)
                    x = pd->experiment, pd->experiment = NULL,
                    pd->data_case = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA__NOT_SET;
                if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
            }
            tb_events_free(&e);
        }
        free(names[i]);
    }
    return x;
}

/* The session group a run's root event file names. */
static void group_of(const char *run, char *out, size_t cap) {
    tb_events e[4];
    int n = load_dir(run, e, 4), at = -1;
    out[0] = 0;
    if (n >= 1 && tb_count_tag(&e[0], "_hparams_/session_start_info", &at) == 1) {
        Tensorboard__Hparams__HParamsPluginData *pd = tb_hparams_content(tb_value(&e[0], at));
        if (pd && pd->data_case == TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_START_INFO)
            snprintf(out, cap, "%s", pd->session_start_info->group_name);
        if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
    }
    for (int i = 0; i < n; i++) tb_events_free(&e[i]);
}

static char fresh_run[4096]; /* the fresh run's folder, for the resumed test */

/* A pruned run (kiln tune stopped it) ends its hparams session without a failure. */
static void test_end_status(void) {
    CHECK(kiln_tb_hooks_end_status("finished") == KILN_TB_STATUS_SUCCESS);
    CHECK(kiln_tb_hooks_end_status("pruned") == KILN_TB_STATUS_UNKNOWN);
    CHECK(kiln_tb_hooks_end_status("failed") == KILN_TB_STATUS_FAILURE);
}

static void test_fresh_run(void) {
    char run[4096];
    int rc = train_child(write_config(2), NULL, run, sizeof run);
    CHECK(rc == 0);
    if (rc) return;
    snprintf(fresh_run, sizeof fresh_run, "%s", run);
    check_root(run, 1);
    scalars s = {.metadata_ok = 1};
    tb_events split[3][4];
    int nfiles[3];
    for (int k = 0; k < 3; k++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", run, SPLITS[k]);
        nfiles[k] = load_dir(dir, split[k], 4);
        CHECK_MSG(nfiles[k] == 1, "%s: %d event files", SPLITS[k], nfiles[k]);
        for (int f = 0; f < nfiles[k]; f++) add_file(&s, k, &split[k][f]);
    }
    CHECK(s.metadata_ok);
    match_scalars(run, &s);
    /* 8000 training rows: 63 steps per epoch; running values every 9 steps */
    CHECK(count(&s, 0, "batch_loss", 1) == 14 && count(&s, 0, "learning_rate", 1) == 14 &&
          count(&s, 0, "samples_per_second", 1) == 14);
    CHECK(count(&s, 0, "loss", 1) == 0);
    check_unique_points(run);
    CHECK(count(&s, 0, "loss", 0) == 2 && count(&s, 0, "accuracy", 0) == 2);
    CHECK(count(&s, 1, "loss", 0) == 2 && count(&s, 1, "accuracy", 0) == 2);
    CHECK(count(&s, 2, "loss", 0) == 1 && count(&s, 2, "accuracy", 0) == 1 &&
          count(&s, 2, "samples_per_second", 0) == 1);
    int64_t steps[2] = {63, 126};
    if (nfiles[0]) check_histograms(&split[0][0], 2, steps);
    if (nfiles[1]) check_pictures(&split[1][0], 2);
    for (int k = 0; k < 3; k++)
        for (int f = 0; f < nfiles[k]; f++) tb_events_free(&split[k][f]);
    free(s.p);
    /* the projector */
    char path[4200];
    snprintf(path, sizeof path, "%s/projector/tensors.tsv", run);
    char *t = slurp(path, NULL);
    CHECK(t && lines(t) == 100);
    int tabs = 0;
    for (const char *c = t; c && *c != '\n'; c++) tabs += *c == '\t';
    CHECK(tabs == 31); /* the penultimate layer (dropout after dense 32) */
    kiln_free(t);
    snprintf(path, sizeof path, "%s/projector/metadata.tsv", run);
    t = slurp(path, NULL);
    CHECK(t && lines(t) == 101 && strncmp(t, "label\tprediction\n", 17) == 0);
    kiln_free(t);
    snprintf(path, sizeof path, "%s/projector_config.pbtxt", run);
    t = slurp(path, NULL);
    CHECK(t && strstr(t, "tensor_name: \"dropout_1\"") &&
          strstr(t, "metadata_path: \"projector/metadata.tsv\""));
    kiln_free(t);
    /* the experiment summary in the runs folder */
    char dir[256];
    snprintf(dir, sizeof dir, "%s/runs", root);
    char *names[8];
    int n = tb_event_files(dir, names, 8), exp_files = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (l > 11 && !strcmp(names[i] + l - 11, ".experiment")) {
            exp_files++;
            tb_events e;
            char err[512];
            int at = -1;
            if (tb_events_load(names[i], &e, err, sizeof err) == 0 &&
                tb_count_tag(&e, "_hparams_/experiment", &at) == 1) {
                Tensorboard__Hparams__HParamsPluginData *pd = tb_hparams_content(tb_value(&e, at));
                CHECK(pd &&
                      pd->data_case == TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_EXPERIMENT);
                if (pd &&
                    pd->data_case == TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_EXPERIMENT) {
                    const Tensorboard__Hparams__Experiment *x = pd->experiment;
                    CHECK(strcmp(x->name, "runs") == 0 && x->n_metric_infos == 6 &&
                          x->n_hparam_infos > 40);
                    int val_acc = 0;
                    for (size_t m = 0; m < x->n_metric_infos; m++)
                        val_acc += !strcmp(x->metric_infos[m]->name->group, "validation") &&
                                   !strcmp(x->metric_infos[m]->name->tag, "epoch_accuracy") &&
                                   !strcmp(x->metric_infos[m]->display_name, "val_accuracy");
                    CHECK(val_acc == 1);
                    check_domains(x, 1);
                }
                if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
                tb_events_free(&e);
            } else {
                CHECK_MSG(0, "%s", err);
            }
        }
        free(names[i]);
    }
    CHECK(exp_files == 1);
}

/* ---- a resumed run ---- */

static void test_resumed_run(void) {
    char run[4096], again[4096];
    int rc = train_child(write_config(3), NULL, run, sizeof run);
    CHECK(rc == 0);
    if (rc) return;
    /* as if the process had died right after the checkpoint at step 80: latest names it, the
     * later checkpoints are gone; metrics.jsonl and the event files keep what came after */
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoints/latest", run);
    FILE *f = fopen(path, "w");
    fputs("step-80\n", f);
    fclose(f);
    static const int LATER[] = {100, 120, 126, 140,
                                160, 180, 189}; /* every 20 steps, and epoch ends */
    for (int i = 0; i < 7; i++) {
        char cmd[4300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s/checkpoints/step-%d'", run, LATER[i]);
        CHECK(system(cmd) == 0);
    }
    rc = train_child(NULL, run, again, sizeof again);
    CHECK(rc == 0 && strcmp(run, again) == 0);
    if (rc) return;
    scalars s = {.metadata_ok = 1};
    for (int k = 0; k < 4; k++) {
        char dir[4200];
        snprintf(dir, sizeof dir, k < 3 ? "%s/%s" : "%s", run, k < 3 ? SPLITS[k] : "");
        tb_events e[4];
        int n = load_dir(dir, e, 4);
        CHECK_MSG(n == 2, "%s: %d event files", dir, n);
        if (n == 2) { /* the resumed attempt's file starts with START at step 81 */
            CHECK(e[1].n >= 2 && e[1].ev[1]->what_case == TENSORFLOW__EVENT__WHAT_SESSION_LOG &&
                  e[1].ev[1]->session_log->status ==
                      TENSORFLOW__SESSION_LOG__SESSION_STATUS__START &&
                  e[1].ev[1]->step == 81);
        }
        for (int i = 0; i < n; i++) {
            if (k < 3) add_file(&s, k, &e[i]);
            tb_events_free(&e[i]);
        }
    }
    CHECK(s.metadata_ok);
    match_scalars(run, &s);
    CHECK(count(&s, 0, "loss", 0) == 3 && count(&s, 1, "loss", 0) == 3 &&
          count(&s, 2, "loss", 0) == 1);
    free(s.p);
    /* the HParams summary now knows two values of train.epochs; the runs are two groups, and the
     * resumed attempt stays in its run's group */
    Tensorboard__Hparams__Experiment *x = experiment();
    CHECK(x != NULL);
    if (x) check_domains(x, 2), tensorboard__hparams__experiment__free_unpacked(x, NULL);
    char g1[64], g2[64];
    group_of(fresh_run, g1, sizeof g1);
    group_of(run, g2, sizeof g2);
    CHECK_MSG(strlen(g1) == 32 && strlen(g2) == 32 && strcmp(g1, g2) != 0, "groups '%s' and '%s'", g1, g2);
    tb_events e[4];
    int n = load_dir(run, e, 4), groups = 0;
    for (int f = 0; f < n; f++) {
        int at = -1;
        if (tb_count_tag(&e[f], "_hparams_/session_start_info", &at) == 1) {
            Tensorboard__Hparams__HParamsPluginData *pd = tb_hparams_content(tb_value(&e[f], at));
            groups += pd && !strcmp(pd->session_start_info->group_name, g2);
            if (pd) tensorboard__hparams__hparams_plugin_data__free_unpacked(pd, NULL);
        }
        tb_events_free(&e[f]);
    }
    CHECK_MSG(groups == 2, "%d of the run's 2 session starts name its group", groups);
}

int main(void) {
    struct stat st;
    if (stat(FM "/t10k-images-idx3-ubyte.gz", &st) != 0) {
        printf("skipped: Fashion-MNIST is not installed (scripts/setup.sh installs it)\n");
        return 0;
    }
    snprintf(root, sizeof root, "/tmp/kiln-test-tb-train-XXXXXX");
    if (!mkdtemp(root)) return 1;
    RUN(test_end_status);
    RUN(test_fresh_run);
    RUN(test_resumed_run);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return kiln_test_summary();
}

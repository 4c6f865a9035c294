/* test_run.c — the run folder (src/run): naming, sanitizing, clashes within one second (in one
 * process and from forked processes at once), run.json (exact keys and order, round trip, status
 * transitions, NaN -> null, 64-bit seeds), the writer's lock and crash detection,
 * metrics.jsonl (every line parsed by cJSON here, torn and malformed lines, reading on from an
 * offset, a resumed run after a torn write), log.txt across reopening, the checkpoint folders
 * (begin/commit/abort/latest/list/prune, replacing a step, stale .tmp folders, latest pointing
 * at a deleted folder), find_latest, what a run opened for reading refuses, and the follower
 * (what a higher layer such as the registry hears of a run, and when).
 *
 * Everything happens under a mkdtemp folder in /tmp, removed at the end.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "run/run_internal.h" /* kiln_run_rmtree */

static char root[64];

/* root/<rel> in one of 8 rotating buffers. */
static const char *at(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *at(const char *fmt, ...) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    int n = snprintf(buf[k], sizeof buf[k], "%s/", root);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf[k] + n, sizeof buf[k] - (size_t)n, fmt, ap);
    va_end(ap);
    return buf[k];
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void put(const char *path, const char *text) {
    FILE *fp = fopen(path, "ab");
    CHECK(fp != NULL);
    if (!fp) return;
    fputs(text, fp);
    fclose(fp);
}

/* The whole file as a NUL-terminated string (free it), or NULL. */
static char *slurp(const char *path, size_t *len) {
    void *buf;
    size_t n;
    if (kiln_file_read_all(path, &buf, &n, 1 << 24) != KILN_OK) return NULL;
    if (len) *len = n;
    return buf;
}

static cJSON *load_json(const char *path) {
    char *text = slurp(path, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    kiln_free(text);
    return j;
}

static void rm_rf(const char *path) {
    kiln_run_rmtree(AT_FDCWD, path);
}

/* "<dir>/<id>" -> id */
static const char *base(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---- names ---- */

static void test_sanitize(void) {
    char out[KILN_RUN_NAME_MAX + 1];
    struct {
        const char *in, *want;
    } cases[] = {
        {"fashion-mnist_v1.2", "fashion-mnist_v1.2"},
        {"a b/c\\d:e", "a_b_c_d_e"},
        {"", "_"},
        {".hidden", "_hidden"},
        {"..", "_."},
        {".", "_"},
        {"caf\xc3\xa9!", "caf__"},          /* é is one character, one '_' */
        {"\xe6\x97\xa5\xe6\x9c\xac", "__"}, /* two 3-byte characters */
        {"x\x01y\n", "x_y_"},
        {"a/../../etc", "a_.._.._etc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kiln_run_sanitize(cases[i].in, out);
        CHECK_MSG(!strcmp(out, cases[i].want), "sanitize('%s') = '%s', want '%s'", cases[i].in, out,
                  cases[i].want);
    }
    kiln_run_sanitize(NULL, out);
    CHECK(!strcmp(out, "_"));
    char long_name[400];
    memset(long_name, 'q', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    kiln_run_sanitize(long_name, out);
    CHECK(strlen(out) == KILN_RUN_NAME_MAX);
}

/* 1 when s is "YYYY-mm-ddTHH:MM:SSZ". */
static int is_iso(const char *s) {
    const char *pat = "dddd-dd-ddTdd:dd:ddZ";
    if (!s || strlen(s) != strlen(pat)) return 0;
    for (size_t i = 0; pat[i]; i++)
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i]) return 0;
    return 1;
}

static void test_create_layout(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("runs"), "fashion mnist", NULL, &run));
    if (!run) return;
    kiln_run_info in = kiln_run_get_info(run);
    const char *id = base(in.path);
    CHECK(!strcmp(id, in.id));
    CHECK(!strncmp(in.path, at("runs/fashion_mnist/"), strlen(at("runs/fashion_mnist/"))));
    CHECK(!strncmp(id, "fashion_mnist-", 14) && strlen(id) == 14 + 15);
    CHECK(!strcmp(in.experiment, "fashion mnist") && !strcmp(in.name, "fashion mnist"));
    CHECK(in.status == KILN_RUN_RUNNING && in.end_time == NULL && is_iso(in.start_time));
    CHECK(in.pid == (long)getpid() && in.host && in.host[0]);
    CHECK(!strcmp(in.kiln_version, KILN_VERSION));
    CHECK(!in.has_seed && !in.config_hash && !in.command && !in.message && !in.checkpoint);
    CHECK(in.best_step == -1 && in.steps == 0 && in.epochs_completed == 0);
    CHECK(kiln_run_is_active(run) == 1);

    /* The folder's stamp is start_time in local time. */
    struct tm tm = {0};
    strptime(in.start_time, "%Y-%m-%dT%H:%M:%SZ", &tm);
    time_t t = timegm(&tm);
    struct tm lt;
    char stamp[32];
    localtime_r(&t, &lt);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &lt);
    CHECK_MSG(!strcmp(id + 14, stamp), "folder %s, start_time %s", id, in.start_time);

    char p[1200];
    snprintf(p, sizeof p, "%s/checkpoints", in.path);
    CHECK(is_dir(p));
    size_t len = 99;
    snprintf(p, sizeof p, "%s/metrics.jsonl", in.path);
    char *text = slurp(p, &len);
    CHECK(text && len == 0);
    kiln_free(text);
    snprintf(p, sizeof p, "%s/log.txt", in.path);
    text = slurp(p, &len);
    CHECK(text && len == 0);
    kiln_free(text);
    snprintf(p, sizeof p, "%s/run.json", in.path);
    cJSON *j = load_json(p);
    CHECK(j && !strcmp(cJSON_GetObjectItem(j, "status")->valuestring, "running"));
    CHECK(j && cJSON_IsNull(cJSON_GetObjectItem(j, "end_time")));
    cJSON_Delete(j);

    /* A name of its own; an experiment of nothing but dots. */
    kiln_rundir *r2 = NULL;
    CHECK_OK(kiln_run_create(at("runs"), "..", "my run", &r2));
    if (r2) {
        in = kiln_run_get_info(r2);
        CHECK(!strncmp(in.path, at("runs/_./my_run-"), strlen(at("runs/_./my_run-"))));
        CHECK(!strcmp(in.name, "my run") && !strcmp(in.experiment, ".."));
    }
    kiln_run_close(r2);
    kiln_run_close(run);

    /* Bad arguments. */
    CHECK(kiln_run_create("", "x", NULL, &run) == KILN_ERR_INVALID && run == NULL);
    CHECK(kiln_run_create(at("runs"), NULL, NULL, &run) == KILN_ERR_INVALID);
    put(at("afile"), "x");
    CHECK(kiln_run_create(at("afile"), "x", NULL, &run) == KILN_ERR_IO && run == NULL);
    CHECK_ERR_HAS("afile");
}

/* Claimed folders for the current second and the next few: a create must take -3. */
static void test_create_collisions(void) {
    time_t now = time(NULL);
    for (int k = 0; k < 6; k++) {
        time_t t = now + k;
        struct tm lt;
        char stamp[32];
        localtime_r(&t, &lt);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &lt);
        CHECK(kiln_mkdirs(at("clash/e/n-%s", stamp)) == KILN_OK);
        CHECK(kiln_mkdirs(at("clash/e/n-%s-2", stamp)) == KILN_OK);
    }
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("clash"), "e", "n", &run));
    if (run) {
        const char *id = kiln_run_get_info(run).id;
        CHECK_MSG(strlen(id) == 2 + 15 + 2 && !strcmp(id + strlen(id) - 2, "-3"), "id %s", id);
    }
    kiln_run_close(run);

    /* Many in a row: all distinct, all complete, and the last one is the newest. */
    char last[1024] = "", ids[20][256];
    for (int i = 0; i < 20; i++) {
        run = NULL;
        CHECK_OK(kiln_run_create(at("clash"), "e", "n", &run));
        if (!run) return;
        snprintf(ids[i], sizeof ids[i], "%s", kiln_run_get_info(run).id);
        snprintf(last, sizeof last, "%s", kiln_run_get_info(run).path);
        for (int j = 0; j < i; j++) CHECK(strcmp(ids[i], ids[j]));
        kiln_run_close(run);
    }
    char found[1024];
    CHECK_OK(kiln_run_find_latest(at("clash"), "e", found, sizeof found));
    CHECK_MSG(!strcmp(found, last), "find_latest %s, last created %s", found, last);
}

/* Four processes released at the same instant each create 8 runs of the same name. */
static void test_create_forked(void) {
    enum { KIDS = 4, EACH = 8 };
    int gate[2];
    CHECK(pipe(gate) == 0);
    pid_t kids[KIDS];
    for (int k = 0; k < KIDS; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            close(gate[1]);
            char c;
            while (read(gate[0], &c, 1) > 0) {
            } /* EOF: go */
            int bad = 0;
            for (int i = 0; i < EACH; i++) {
                kiln_rundir *run = NULL;
                if (kiln_run_create(at("forked"), "race", NULL, &run) != KILN_OK) {
                    fprintf(stderr, "  child: %s\n", kiln_last_error());
                    bad = 1;
                }
                kiln_run_close(run);
            }
            _exit(bad);
        }
        CHECK(kids[k] > 0);
    }
    close(gate[0]);
    close(gate[1]); /* releases them all */
    for (int k = 0; k < KIDS; k++) {
        int st = -1;
        waitpid(kids[k], &st, 0);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %d", k, st);
    }
    /* 32 folders, each with its own run.json naming it, 8 from each child. */
    int per_kid[KIDS] = {0}, total = 0;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls %s/forked/race", root);
    FILE *ls = popen(cmd, "r");
    CHECK(ls != NULL);
    char line[512];
    while (ls && fgets(line, sizeof line, ls)) {
        line[strcspn(line, "\n")] = 0;
        cJSON *j = load_json(at("forked/race/%s/run.json", line));
        CHECK_MSG(j != NULL, "%s has no run.json", line);
        if (!j) continue;
        CHECK(!strcmp(cJSON_GetObjectItem(j, "id")->valuestring, line));
        long pid = (long)cJSON_GetObjectItem(j, "pid")->valuedouble;
        for (int k = 0; k < KIDS; k++) per_kid[k] += pid == (long)kids[k];
        total++;
        cJSON_Delete(j);
    }
    if (ls) pclose(ls);
    CHECK_MSG(total == KIDS * EACH, "%d run folders", total);
    for (int k = 0; k < KIDS; k++) CHECK(per_kid[k] == EACH);
}

/* ---- run.json ---- */

static void test_runjson_roundtrip(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("rj"), "exp", "r\"1", &run));
    if (!run) return;
    const char *argv[] = {"kiln",   "train",  "cnn.yaml", "--set", "train.epochs=3",
                          "--name", "my run", "it's",     ""};
    kiln_run_set_seed(run, 42);
    CHECK_OK(kiln_run_set_config_hash(run, "0123456789abcdef"));
    CHECK_OK(kiln_run_set_command(run, 9, argv));
    kiln_run_set_progress(run, 3, 1500);
    CHECK_OK(kiln_run_set_metric(run, KILN_RUN_FINAL, "loss", 0.25));
    CHECK_OK(kiln_run_set_metric(run, KILN_RUN_FINAL, "accuracy", 0.9));
    CHECK_OK(kiln_run_set_metric(run, KILN_RUN_FINAL, "loss", 0.125)); /* replaces, keeps order */
    CHECK_OK(kiln_run_set_metric(run, KILN_RUN_BEST, "val_loss", 1.0 / 3.0));
    CHECK_OK(kiln_run_set_metric(run, KILN_RUN_BEST, "sum", 0.1 + 0.2)); /* 15 digits: 0.3 */
    kiln_run_set_best_step(run, 1000);
    kiln_run_set_data_skipped(run, 4);
    CHECK(kiln_run_set_metric(run, KILN_RUN_FINAL, "", 1) == KILN_ERR_INVALID);
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL));
    CHECK_OK(kiln_run_save(run));
    char path[1024], json_path[1100];
    snprintf(path, sizeof path, "%s", kiln_run_get_info(run).path);
    snprintf(json_path, sizeof json_path, "%s/run.json", path);
    kiln_run_close(run);

    /* Exactly these keys, in this order, with these types. */
    cJSON *j = load_json(json_path);
    CHECK(j != NULL);
    if (!j) return;
    const char *keys[] = {"id",           "experiment",
                          "name",         "status",
                          "start_time",   "end_time",
                          "host",         "pid",
                          "kiln_version", "seed",
                          "config_hash",  "command",
                          "message",      "epochs_completed",
                          "steps",        "final_metrics",
                          "best_metrics", "best_step",
                          "checkpoint",   "data_skipped"};
    int k = 0;
    for (cJSON *c = j->child; c; c = c->next, k++)
        CHECK_MSG(k < 20 && !strcmp(c->string, keys[k]), "key %d is %s", k, c->string);
    CHECK(k == 20);
    CHECK(cJSON_GetObjectItem(j, "data_skipped")->valuedouble == 4);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "name")->valuestring, "r\"1"));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "status")->valuestring, "finished"));
    CHECK(is_iso(cJSON_GetObjectItem(j, "end_time")->valuestring));
    CHECK(cJSON_GetObjectItem(j, "seed")->valuedouble == 42);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "command")->valuestring,
                  "kiln train cnn.yaml --set train.epochs=3 --name 'my run' 'it'\\''s' ''"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "message")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "checkpoint")));
    CHECK(cJSON_GetObjectItem(j, "steps")->valuedouble == 1500);
    CHECK(cJSON_GetObjectItem(j, "best_step")->valuedouble == 1000);
    cJSON *fm = cJSON_GetObjectItem(j, "final_metrics");
    CHECK(cJSON_GetArraySize(fm) == 2 && !strcmp(fm->child->string, "loss") &&
          fm->child->valuedouble == 0.125);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "best_metrics"), "val_loss")->valuedouble ==
          1.0 / 3.0);
    cJSON_Delete(j);
    char *text = slurp(json_path, NULL);
    CHECK(text && text[strlen(text) - 1] == '\n' && strchr(text, '\t')); /* pretty-printed */
    kiln_free(text);

    /* Back through kiln_run_open. */
    CHECK_OK(kiln_run_open(path, KILN_RUN_READ, &run));
    if (!run) return;
    kiln_run_info in = kiln_run_get_info(run);
    CHECK(!strcmp(in.name, "r\"1") && !strcmp(in.experiment, "exp"));
    CHECK(in.status == KILN_RUN_FINISHED && in.end_time && in.has_seed && in.seed == 42);
    CHECK(!strcmp(in.config_hash, "0123456789abcdef"));
    CHECK(in.epochs_completed == 3 && in.steps == 1500 && in.best_step == 1000);
    CHECK(in.data_skipped == 4);
    double v = 0;
    CHECK_OK(kiln_run_get_metric(run, KILN_RUN_FINAL, "loss", &v));
    CHECK(v == 0.125);
    CHECK(kiln_run_get_metric(run, KILN_RUN_BEST, "loss", &v) == KILN_ERR_NOTFOUND);
    CHECK(kiln_run_metric_count(run, KILN_RUN_FINAL) == 2);
    CHECK(!strcmp(kiln_run_metric_at(run, KILN_RUN_FINAL, 1, &v), "accuracy") && v == 0.9);
    CHECK(kiln_run_metric_at(run, KILN_RUN_FINAL, 2, &v) == NULL);
    CHECK_OK(kiln_run_get_metric(run, KILN_RUN_BEST, "sum", &v));
    CHECK_MSG(v == 0.1 + 0.2, "%.17g", v);
    CHECK(kiln_run_is_active(run) == 0);
    kiln_run_close(run);

    /* Seeds above 2^53 are strings; 2^53 itself is still a number. */
    uint64_t seeds[] = {UINT64_MAX, ((uint64_t)1 << 53) + 1, (uint64_t)1 << 53};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(kiln_run_open(path, KILN_RUN_WRITE, &run));
        if (!run) return;
        kiln_run_set_seed(run, seeds[i]);
        CHECK_OK(kiln_run_save(run));
        kiln_run_close(run);
        j = load_json(json_path);
        cJSON *s = j ? cJSON_GetObjectItem(j, "seed") : NULL;
        CHECK(i < 2 ? cJSON_IsString(s) : cJSON_IsNumber(s));
        cJSON_Delete(j);
        CHECK_OK(kiln_run_open(path, KILN_RUN_READ, &run));
        if (!run) return;
        CHECK_MSG(kiln_run_get_info(run).seed == seeds[i], "seed %llu",
                  (unsigned long long)kiln_run_get_info(run).seed);
        kiln_run_close(run);
    }
}

static void test_status_transitions(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("st"), "exp", NULL, &run));
    if (!run) return;
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL));
    CHECK(kiln_run_get_info(run).end_time != NULL);
    CHECK(kiln_run_set_status(run, KILN_RUN_FAILED, "boom") == KILN_ERR_INVALID);
    CHECK_ERR_HAS("already finished");
    CHECK(kiln_run_set_status(run, KILN_RUN_FINISHED, NULL) == KILN_ERR_INVALID);
    CHECK(kiln_run_get_info(run).status == KILN_RUN_FINISHED && !kiln_run_get_info(run).message);
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_RUNNING, NULL)); /* resumed */
    CHECK(kiln_run_get_info(run).end_time == NULL);
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_STOPPED, "interrupted (SIGINT)"));
    CHECK(kiln_run_set_status(run, (kiln_run_state)7, NULL) == KILN_ERR_INVALID);
    CHECK_OK(kiln_run_save(run));
    char path[1200];
    snprintf(path, sizeof path, "%s", kiln_run_get_info(run).path);
    kiln_run_close(run);

    CHECK_OK(kiln_run_open(path, KILN_RUN_WRITE, &run));
    if (!run) return;
    kiln_run_info in = kiln_run_get_info(run);
    CHECK(in.status == KILN_RUN_STOPPED && !strcmp(in.message, "interrupted (SIGINT)"));
    CHECK(is_iso(in.end_time));
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_RUNNING, NULL));
    CHECK_OK(kiln_run_set_status(run, KILN_RUN_FAILED, "loss is NaN at step 12"));
    CHECK_OK(kiln_run_save(run));
    kiln_run_close(run);
    CHECK_OK(kiln_run_open(path, KILN_RUN_READ, &run));
    if (!run) return;
    CHECK(kiln_run_get_info(run).status == KILN_RUN_FAILED);
    CHECK(!strcmp(kiln_run_get_info(run).message, "loss is NaN at step 12"));
    CHECK(!strcmp(kiln_run_state_name(KILN_RUN_STOPPED), "stopped"));
    kiln_run_close(run);
}

static void test_nan_is_null(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("nan"), "exp", NULL, &run));
    if (!run) return;
    CHECK_OK(kiln_run_set_metric(run, KILN_RUN_FINAL, "loss", NAN));
    CHECK_OK(kiln_run_set_metric(run, KILN_RUN_FINAL, "up", INFINITY));
    CHECK_OK(kiln_run_set_metric(run, KILN_RUN_BEST, "down", -INFINITY));
    CHECK_OK(kiln_run_set_metric(run, KILN_RUN_BEST, "ok", 2.5));
    CHECK_OK(kiln_run_save(run));
    CHECK_OK(kiln_run_log_metric(run, 1, INFINITY, KILN_SPLIT_TRAIN, "loss", NAN));
    char path[1200], p[1300];
    snprintf(path, sizeof path, "%s", kiln_run_get_info(run).path);
    kiln_run_close(run);

    snprintf(p, sizeof p, "%s/run.json", path);
    char *text = slurp(p, NULL);
    CHECK(text && !strstr(text, "nan") && !strstr(text, "inf") && !strstr(text, "NaN"));
    cJSON *j = text ? cJSON_Parse(text) : NULL; /* valid JSON */
    CHECK(j != NULL);
    kiln_free(text);
    cJSON *fm = cJSON_GetObjectItem(j, "final_metrics"),
          *bm = cJSON_GetObjectItem(j, "best_metrics");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(fm, "loss")) &&
          cJSON_IsNull(cJSON_GetObjectItem(fm, "up")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(bm, "down")));
    CHECK(cJSON_GetObjectItem(bm, "ok")->valuedouble == 2.5);
    cJSON_Delete(j);

    snprintf(p, sizeof p, "%s/metrics.jsonl", path);
    text = slurp(p, NULL);
    CHECK(text && strstr(text, "\"epoch\":null") && strstr(text, "\"value\":null}\n"));
    kiln_free(text);

    CHECK_OK(kiln_run_open(path, KILN_RUN_READ, &run));
    if (!run) return;
    double v = 0;
    CHECK_OK(kiln_run_get_metric(run, KILN_RUN_FINAL, "up", &v));
    CHECK(isnan(v));
    kiln_run_close(run);
}

/* ---- metrics.jsonl ---- */

typedef struct {
    int n;
    kiln_metric_point p[64];
    char names[64][256];
    int stop_after;
} points;

static int collect(const kiln_metric_point *p, void *ctx) {
    points *ps = ctx;
    if (ps->n < 64) {
        ps->p[ps->n] = *p;
        snprintf(ps->names[ps->n], sizeof ps->names[0], "%s", p->name);
        ps->p[ps->n].name = ps->names[ps->n];
    }
    ps->n++;
    return ps->stop_after && ps->n >= ps->stop_after;
}

static int same(double a, double b) {
    return a == b || (isnan(a) && isnan(b));
}

static void test_metrics_log(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("m"), "exp", NULL, &run));
    if (!run) return;
    struct {
        int64_t step;
        double epoch;
        kiln_split split;
        const char *name;
        double value;
    } in[] = {
        {0, 0, KILN_SPLIT_TRAIN, "loss", 2.302585092994046},
        {1, 0.5, KILN_SPLIT_TRAIN, "loss", 0.1},
        {2, 1, KILN_SPLIT_VALIDATION, "accuracy", 1.0 / 3.0},
        {3, 1, KILN_SPLIT_TEST, "quote\" back\\ nl\n", -0.0},
        {4, 2, KILN_SPLIT_TRAIN, "tiny", 1e-300},
        {(int64_t)1 << 40, 2, KILN_SPLIT_TRAIN, "big", 123456789.125},
        {6, 3, KILN_SPLIT_TRAIN, "f", (double)0.1f},
    };
    int n_in = (int)(sizeof in / sizeof *in);
    double t0 = (double)time(NULL);
    for (int i = 0; i < n_in; i++)
        CHECK_OK(kiln_run_log_metric(run, in[i].step, in[i].epoch, in[i].split, in[i].name,
                                     in[i].value));
    double t1 = (double)time(NULL) + 1;
    CHECK(kiln_run_log_metric(run, 7, 0, (kiln_split)3, "x", 1) == KILN_ERR_INVALID);
    CHECK(kiln_run_log_metric(run, 7, 0, KILN_SPLIT_TRAIN, "", 1) == KILN_ERR_INVALID);
    char path[1200], file[1300];
    snprintf(path, sizeof path, "%s", kiln_run_get_info(run).path);
    snprintf(file, sizeof file, "%s/metrics.jsonl", path);

    /* Every line: a JSON object with exactly these keys in this order, values exact. */
    size_t len = 0;
    char *text = slurp(file, &len);
    CHECK(text && len > 0 && text[len - 1] == '\n');
    int lines = 0;
    const char *keys[] = {"step", "epoch", "wall_time", "split", "name", "value"};
    for (char *line = text, *nl; text && (nl = strchr(line, '\n')); line = nl + 1, lines++) {
        *nl = 0;
        cJSON *j = cJSON_Parse(line);
        CHECK_MSG(j != NULL, "line %d does not parse: %s", lines, line);
        if (!j || lines >= n_in) {
            cJSON_Delete(j);
            continue;
        }
        int k = 0;
        for (cJSON *c = j->child; c; c = c->next, k++) CHECK(k < 6 && !strcmp(c->string, keys[k]));
        CHECK(k == 6);
        CHECK(cJSON_GetObjectItem(j, "step")->valuedouble == (double)in[lines].step);
        CHECK(cJSON_GetObjectItem(j, "epoch")->valuedouble == in[lines].epoch);
        double wt = cJSON_GetObjectItem(j, "wall_time")->valuedouble;
        CHECK_MSG(wt >= t0 && wt <= t1, "wall_time %f not in [%f, %f]", wt, t0, t1);
        CHECK(!strcmp(cJSON_GetObjectItem(j, "split")->valuestring,
                      kiln_split_name(in[lines].split)));
        CHECK(!strcmp(cJSON_GetObjectItem(j, "name")->valuestring, in[lines].name));
        double v = cJSON_GetObjectItem(j, "value")->valuedouble;
        CHECK_MSG(v == in[lines].value && signbit(v) == signbit(in[lines].value),
                  "line %d value %.17g want %.17g", lines, v, in[lines].value);
        cJSON_Delete(j);
    }
    CHECK(lines == n_in);
    kiln_free(text);

    /* The reader gives the same points. */
    points *ps = calloc(1, sizeof *ps);
    int64_t off = 0, skipped = -1;
    CHECK_OK(kiln_run_read_metrics(file, &off, collect, ps, &skipped));
    CHECK(ps->n == n_in && skipped == 0 && off == (int64_t)len);
    for (int i = 0; i < n_in && i < ps->n; i++) {
        CHECK(ps->p[i].step == in[i].step && same(ps->p[i].epoch, in[i].epoch));
        CHECK(ps->p[i].split == in[i].split && !strcmp(ps->p[i].name, in[i].name));
        CHECK(ps->p[i].value == in[i].value);
    }

    /* A torn last line (no newline) is skipped and the offset stays before it; a blank line is
     * ignored; a malformed complete line is counted. */
    put(file,
        "\n{\"step\":1,\"epoch\":0,\"wall_time\":1,\"split\":\"nope\",\"name\":\"x\",\"value\":1}\n"
        "garbage\n{\"step\":99,\"epoch\":1,\"wal");
    memset(ps, 0, sizeof *ps);
    int64_t off2 = off;
    CHECK_OK(kiln_run_read_metrics(file, &off2, collect, ps, &skipped));
    CHECK_MSG(ps->n == 0 && skipped == 2, "%d points, %lld skipped", ps->n, (long long)skipped);
    char *now = slurp(file, &len);
    CHECK(now && off2 == (int64_t)(strstr(now, "{\"step\":99") - now));
    kiln_free(now);

    /* Logging again (here after reopening: a resume) ends the torn line first, so it becomes a
     * malformed line of its own and the new point is whole. */
    kiln_run_close(run);
    CHECK_OK(kiln_run_open(path, KILN_RUN_WRITE, &run));
    if (!run) return;
    CHECK_OK(kiln_run_log_metric(run, 99, 1, KILN_SPLIT_TRAIN, "loss", 0.5));
    memset(ps, 0, sizeof *ps);
    CHECK_OK(kiln_run_read_metrics(file, &off2, collect, ps, &skipped));
    CHECK_MSG(ps->n == 1 && skipped == 1, "%d points, %lld skipped", ps->n, (long long)skipped);
    CHECK(ps->n == 1 && ps->p[0].step == 99 && ps->p[0].value == 0.5);

    /* From the start: every point, stopping early when asked. */
    memset(ps, 0, sizeof *ps);
    CHECK_OK(kiln_run_read_metrics(file, NULL, collect, ps, &skipped));
    CHECK(ps->n == n_in + 1 && skipped == 3);
    memset(ps, 0, sizeof *ps);
    ps->stop_after = 2;
    off = 0;
    CHECK_OK(kiln_run_read_metrics(file, &off, collect, ps, NULL));
    CHECK(ps->n == 2);
    memset(ps, 0, sizeof *ps);
    CHECK_OK(kiln_run_read_metrics(file, &off, collect, ps, NULL)); /* goes on from there */
    CHECK(ps->n == n_in - 1 && ps->p[0].step == in[2].step);

    /* A line longer than the reader's buffer is skipped, and the offset is still exact. */
    size_t big = 70000;
    char *huge = malloc(big + 2);
    memset(huge, 'x', big);
    huge[big] = '\n', huge[big + 1] = 0;
    put(file, huge);
    free(huge);
    CHECK_OK(kiln_run_log_metric(run, 100, 1, KILN_SPLIT_TRAIN, "after", 7));
    int64_t off3 = off;
    memset(ps, 0, sizeof *ps);
    CHECK_OK(kiln_run_read_metrics(file, &off, collect, ps, &skipped));
    struct stat st;
    stat(file, &st);
    CHECK_MSG(ps->n == 1 && ps->p[0].value == 7 && skipped == 1, "%d points, %lld skipped", ps->n,
              (long long)skipped);
    CHECK(off == (int64_t)st.st_size && off > off3);
    free(ps);

    CHECK(kiln_run_read_metrics(at("m/none.jsonl"), NULL, collect, NULL, NULL) ==
          KILN_ERR_NOTFOUND);
    kiln_run_close(run);
}

/* Points logged after kiln_run_set_stage carry "stage", and the reader gives it back (0 for a
 * line without one); a "stage" that is not a whole number >= 1 makes the line not a point. */
static void test_metrics_stage(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("ms"), "exp", NULL, &run));
    if (!run) return;
    CHECK_OK(kiln_run_log_metric(run, 1, 0, KILN_SPLIT_TRAIN, "loss", 1));
    kiln_run_set_stage(run, 2);
    CHECK_OK(kiln_run_log_metric(run, 2, 1, KILN_SPLIT_TRAIN, "loss", 0.5));
    kiln_run_set_stage(run, 0);
    CHECK_OK(kiln_run_log_metric(run, 3, 1, KILN_SPLIT_TRAIN, "loss", 0.25));
    char file[1300];
    snprintf(file, sizeof file, "%s/metrics.jsonl", kiln_run_get_info(run).path);
    kiln_run_close(run);
    char *text = slurp(file, NULL);
    CHECK(text && strstr(text, "\"value\":0.5,\"stage\":2}\n") && !strstr(text, "\"stage\":0"));
    kiln_free(text);
    const char *bad[] = {"0", "-1", "1.5", "\"2\"", "null", "3e9"};
    for (int i = 0; i < 6; i++) {
        char line[200];
        snprintf(line, sizeof line,
                 "{\"step\":4,\"epoch\":1,\"wall_time\":1,\"split\":\"train\",\"name\":\"l\","
                 "\"value\":1,\"stage\":%s}\n",
                 bad[i]);
        put(file, line);
    }
    points *ps = calloc(1, sizeof *ps);
    int64_t skipped = -1;
    CHECK_OK(kiln_run_read_metrics(file, NULL, collect, ps, &skipped));
    CHECK_MSG(ps->n == 3 && skipped == 6, "%d points, %lld skipped", ps->n, (long long)skipped);
    CHECK(ps->p[0].stage == 0 && ps->p[1].stage == 2 && ps->p[2].stage == 0);
    free(ps);
}

/* kiln_run_log_metric_at: the caller's wall_time, kept to the microsecond; < 0 means now. */
static void test_metrics_at(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("mat"), "exp", NULL, &run));
    if (!run) return;
    CHECK_OK(kiln_run_log_metric_at(run, 7, NAN, KILN_SPLIT_VALIDATION, "acc", 0.5,
                                    1700000000.123456));
    CHECK_OK(kiln_run_log_metric_at(run, 8, 1, KILN_SPLIT_TRAIN, "loss", 0.25, -1));
    char file[1300];
    snprintf(file, sizeof file, "%s/metrics.jsonl", kiln_run_get_info(run).path);
    kiln_run_close(run);
    points *ps = calloc(1, sizeof *ps);
    CHECK_OK(kiln_run_read_metrics(file, NULL, collect, ps, NULL));
    CHECK(ps->n == 2);
    CHECK_MSG(fabs(ps->p[0].wall_time - 1700000000.123456) < 1e-6, "%.6f", ps->p[0].wall_time);
    CHECK(ps->p[0].step == 7 && ps->p[0].split == KILN_SPLIT_VALIDATION && isnan(ps->p[0].epoch));
    CHECK(ps->p[1].wall_time > 1700000001.0 && ps->p[1].step == 8); /* now */
    free(ps);
}

static void test_log_txt(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("log"), "exp", NULL, &run));
    if (!run) return;
    CHECK_OK(kiln_run_log(run, "epoch %d: loss %.3f", 1, 0.25));
    CHECK_OK(kiln_run_log(run, "two\n"));
    char big[3001];
    memset(big, 'b', 3000);
    big[3000] = 0;
    CHECK_OK(kiln_run_log(run, "%s", big));
    char path[1200], file[1300];
    snprintf(path, sizeof path, "%s", kiln_run_get_info(run).path);
    snprintf(file, sizeof file, "%s/log.txt", path);
    kiln_run_close(run);
    CHECK_OK(kiln_run_open(path, KILN_RUN_WRITE, &run));
    if (!run) return;
    CHECK_OK(kiln_run_log(run, "resumed"));
    kiln_run_close(run);
    char *want = malloc(4000);
    snprintf(want, 4000, "epoch 1: loss 0.250\ntwo\n%s\nresumed\n", big);
    char *text = slurp(file, NULL);
    CHECK(text && !strcmp(text, want));
    kiln_free(text);
    free(want);
}

/* ---- the lock ---- */

static void test_lock(void) {
    kiln_rundir *w = NULL, *r = NULL, *w2 = NULL;
    CHECK_OK(kiln_run_create(at("lock"), "exp", NULL, &w));
    if (!w) return;
    char path[1200];
    snprintf(path, sizeof path, "%s", kiln_run_get_info(w).path);
    CHECK(kiln_run_open(path, KILN_RUN_WRITE, &w2) == KILN_ERR_INVALID && !w2);
    CHECK_ERR_HAS("another process");
    CHECK_OK(kiln_run_open(path, KILN_RUN_READ, &r));
    CHECK(kiln_run_is_active(r) == 1);
    kiln_run_close(w);
    CHECK(kiln_run_is_active(r) == 0);
    CHECK_OK(kiln_run_open(path, KILN_RUN_WRITE, &w2));
    CHECK(kiln_run_is_active(r) == 1);
    kiln_run_close(w2);
    kiln_run_close(r);

    /* A writer killed with SIGKILL: run.json still says running, but nobody holds the run. */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t kid = fork();
    if (kid == 0) {
        kiln_rundir *run = NULL;
        char msg[1200] = "";
        if (kiln_run_create(at("lock"), "crash", NULL, &run) == KILN_OK)
            snprintf(msg, sizeof msg, "%s", kiln_run_get_info(run).path);
        if (write(p[1], msg, strlen(msg) + 1) < 0) _exit(1);
        for (;;) pause();
    }
    char got[1200] = "";
    ssize_t n = read(p[0], got, sizeof got - 1);
    CHECK(n > 1);
    close(p[0]), close(p[1]);
    r = NULL;
    CHECK_OK(kiln_run_open(got, KILN_RUN_READ, &r));
    CHECK(kiln_run_is_active(r) == 1);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    CHECK(kiln_run_is_active(r) == 0);
    CHECK(r && kiln_run_get_info(r).status == KILN_RUN_RUNNING);
    kiln_run_close(r);
}

/* ---- checkpoints ---- */

/* begin + one file + commit. */
static void checkpoint(kiln_rundir *run, int64_t step, const char *content) {
    char tmp[1200], f[1300];
    CHECK_OK(kiln_run_checkpoint_begin(run, step, tmp, sizeof tmp));
    snprintf(f, sizeof f, "%s/state.json", tmp);
    put(f, content);
    CHECK_OK(kiln_run_checkpoint_commit(run, step, tmp));
    CHECK(!exists(tmp));
}

static int dot_tmp_count(const char *dir) {
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -c '^\\.tmp-'", dir);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f && fscanf(f, "%d", &n) != 1) n = -1;
    if (f) pclose(f);
    return n;
}

static void steps_are(kiln_rundir *run, int n_want, const int64_t *want) {
    int64_t *steps = NULL;
    int n = -1;
    CHECK_OK(kiln_run_checkpoint_list(run, &steps, &n));
    int same_list = n == n_want;
    for (int i = 0; same_list && i < n; i++) same_list = steps[i] == want[i];
    CHECK_MSG(same_list, "%d checkpoints (first %lld), want %d", n,
              n > 0 ? (long long)steps[0] : -1LL, n_want);
    kiln_free(steps);
}

static void test_checkpoints(void) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("ck"), "exp", NULL, &run));
    if (!run) return;
    char path[1024], ck[1100], name[64], warn[1024], tmp[1200];
    snprintf(path, sizeof path, "%s", kiln_run_get_info(run).path);
    snprintf(ck, sizeof ck, "%s/checkpoints", path);
    steps_are(run, 0, NULL);
    CHECK(kiln_run_checkpoint_latest(run, name, sizeof name, warn, sizeof warn) ==
          KILN_ERR_NOTFOUND);
    CHECK(kiln_run_checkpoint_begin(run, -1, tmp, sizeof tmp) == KILN_ERR_INVALID);

    CHECK_OK(kiln_run_checkpoint_begin(run, 100, tmp, sizeof tmp));
    char want_tmp[1300];
    snprintf(want_tmp, sizeof want_tmp, "%s/.tmp-step-100-%ld", ck, (long)getpid());
    CHECK(!strcmp(tmp, want_tmp) && is_dir(tmp));
    CHECK(kiln_run_checkpoint_commit(run, 101, tmp) == KILN_ERR_INVALID); /* other step */
    CHECK(kiln_run_checkpoint_commit(run, 100, at("elsewhere")) == KILN_ERR_INVALID);
    char f[1300];
    snprintf(f, sizeof f, "%s/weights.safetensors", tmp);
    put(f, "w100");
    CHECK_OK(kiln_run_checkpoint_commit(run, 100, tmp));
    CHECK(!exists(tmp) && is_dir(at("ck/exp/%s/checkpoints/step-100", kiln_run_get_info(run).id)));
    snprintf(f, sizeof f, "%s/latest", ck);
    char *text = slurp(f, NULL);
    CHECK(text && !strcmp(text, "step-100\n"));
    kiln_free(text);
    CHECK(!strcmp(kiln_run_get_info(run).checkpoint, "step-100"));
    snprintf(f, sizeof f, "%s/run.json", path);
    cJSON *j = load_json(f);
    CHECK(j && !strcmp(cJSON_GetObjectItem(j, "checkpoint")->valuestring, "step-100"));
    cJSON_Delete(j);
    CHECK(kiln_run_checkpoint_commit(run, 100, tmp) == KILN_ERR_INVALID); /* already committed */

    checkpoint(run, 200, "200");
    checkpoint(run, 300, "300 first");
    steps_are(run, 3, (int64_t[]){100, 200, 300});
    CHECK_OK(kiln_run_checkpoint_latest(run, name, sizeof name, warn, sizeof warn));
    CHECK(!strcmp(name, "step-300") && warn[0] == 0);

    /* Committing step 300 again replaces it whole. */
    checkpoint(run, 300, "300 second");
    snprintf(f, sizeof f, "%s/step-300/state.json", ck);
    text = slurp(f, NULL);
    CHECK(text && !strcmp(text, "300 second"));
    kiln_free(text);
    CHECK(dot_tmp_count(ck) == 0);

    /* Leftovers of a crash, and a checkpoint of ours in progress. */
    CHECK(kiln_mkdirs(at("ck/exp/%s/checkpoints/.tmp-step-999-12345/sub",
                         kiln_run_get_info(run).id)) == KILN_OK);
    put(at("ck/exp/%s/checkpoints/.tmp-step-999-12345/sub/w", kiln_run_get_info(run).id), "x");
    put(at("ck/exp/%s/checkpoints/.tmp-latest-1-abc", kiln_run_get_info(run).id), "step-9");
    CHECK_OK(kiln_run_checkpoint_begin(run, 400, tmp, sizeof tmp));
    CHECK(dot_tmp_count(ck) == 3);
    CHECK_OK(kiln_run_checkpoint_prune(run, 1, "step-100"));
    steps_are(run, 2, (int64_t[]){100, 300}); /* 100 protected, 300 newest and latest */
    CHECK(dot_tmp_count(ck) == 1 && is_dir(tmp));
    snprintf(f, sizeof f, "%s/w", tmp);
    put(f, "400");
    CHECK_OK(kiln_run_checkpoint_commit(run, 400, tmp));
    CHECK(kiln_run_checkpoint_prune(run, -1, NULL) == KILN_ERR_INVALID);
    CHECK_OK(kiln_run_checkpoint_prune(run, 1, NULL));
    steps_are(run, 1, (int64_t[]){400});

    /* keep_last 0 still keeps what latest names. */
    checkpoint(run, 500, "500");
    CHECK_OK(kiln_run_checkpoint_prune(run, 0, NULL));
    steps_are(run, 1, (int64_t[]){500});

    /* latest names a folder someone deleted: fall back to the newest complete one, and say so. */
    checkpoint(run, 600, "600");
    CHECK_OK(kiln_run_checkpoint_prune(run, 5, NULL));
    rm_rf(at("ck/exp/%s/checkpoints/step-600", kiln_run_get_info(run).id));
    CHECK_OK(kiln_run_checkpoint_latest(run, name, sizeof name, warn, sizeof warn));
    CHECK_MSG(!strcmp(name, "step-500") && strstr(warn, "step-600") &&
                  strstr(warn, "does not exist"),
              "%s / %s", name, warn);
    CHECK_OK(kiln_run_checkpoint_latest(run, name, sizeof name, NULL, 0));
    /* ... and prune then protects that one. */
    CHECK_OK(kiln_run_checkpoint_prune(run, 0, NULL));
    steps_are(run, 1, (int64_t[]){500});

    /* latest missing, or garbage. */
    snprintf(f, sizeof f, "%s/latest", ck);
    unlink(f);
    CHECK_OK(kiln_run_checkpoint_latest(run, name, sizeof name, warn, sizeof warn));
    CHECK(!strcmp(name, "step-500") && strstr(warn, "missing"));
    put(f, "../../etc\n");
    CHECK_OK(kiln_run_checkpoint_latest(run, name, sizeof name, warn, sizeof warn));
    CHECK(!strcmp(name, "step-500") && strstr(warn, "does not name"));
    CHECK(kiln_run_checkpoint_latest(run, name, 4, NULL, 0) == KILN_ERR_INVALID);

    /* Abort; a second begin replaces an uncommitted first one. */
    CHECK_OK(kiln_run_checkpoint_begin(run, 700, tmp, sizeof tmp));
    CHECK_OK(kiln_run_checkpoint_abort(run, tmp));
    CHECK(!exists(tmp) && kiln_run_checkpoint_commit(run, 700, tmp) == KILN_ERR_INVALID);
    CHECK_OK(kiln_run_checkpoint_begin(run, 700, tmp, sizeof tmp));
    char tmp2[1200];
    CHECK_OK(kiln_run_checkpoint_begin(run, 800, tmp2, sizeof tmp2));
    CHECK(!exists(tmp) && is_dir(tmp2));
    CHECK(kiln_run_checkpoint_begin(run, 900, tmp, 8) == KILN_ERR_INVALID);
    CHECK_OK(kiln_run_checkpoint_abort(run, tmp2));

    CHECK_OK(kiln_run_checkpoint_path(run, "step-500", f, sizeof f));
    CHECK(is_dir(f));
    CHECK(kiln_run_checkpoint_path(run, "../x", f, sizeof f) == KILN_ERR_INVALID);
    kiln_run_close(run);

    /* A reader lists and finds checkpoints but writes nothing. */
    CHECK_OK(kiln_run_open(path, KILN_RUN_READ, &run));
    if (!run) return;
    steps_are(run, 1, (int64_t[]){500});
    CHECK_OK(kiln_run_checkpoint_latest(run, name, sizeof name, NULL, 0));
    CHECK(kiln_run_checkpoint_begin(run, 1000, tmp, sizeof tmp) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("opened for reading");
    CHECK(kiln_run_checkpoint_prune(run, 1, NULL) == KILN_ERR_INVALID);
    CHECK(kiln_run_save(run) == KILN_ERR_INVALID);
    CHECK(kiln_run_log(run, "x") == KILN_ERR_INVALID);
    CHECK(kiln_run_log_metric(run, 1, 0, KILN_SPLIT_TRAIN, "x", 1) == KILN_ERR_INVALID);
    kiln_run_close(run);
}

/* ---- find_latest ---- */

static void fake_run(const char *rel) {
    CHECK(kiln_mkdirs(at("find/%s", rel)) == KILN_OK);
    put(at("find/%s/run.json", rel), "{}");
}

static void test_find_latest(void) {
    fake_run("a/x-20240101-120000");
    fake_run("a/x-20240101-120000-2");
    fake_run("a/x-20240101-120000-10"); /* 10 > 2: numeric, not text order */
    fake_run("a/y-20231231-235959-3");
    fake_run("a/my-run-2-20240101-115959");
    CHECK(kiln_mkdirs(at("find/a/x-20250101-000000")) == KILN_OK); /* no run.json yet */
    fake_run("a/.x-20260101-000000");
    fake_run("a/not-a-run");
    fake_run("a/x-20270101-000000-01"); /* leading zero: not a suffix kiln writes */
    put(at("find/a/junk"), "x");
    fake_run("b_c/w-20240102-000000");
    put(at("find/kiln.db"), "");
    char out[1024];
    CHECK_OK(kiln_run_find_latest(at("find"), "a", out, sizeof out));
    CHECK_MSG(!strcmp(out, at("find/a/x-20240101-120000-10")), "%s", out);
    CHECK_OK(kiln_run_find_latest(at("find"), NULL, out, sizeof out));
    CHECK_MSG(!strcmp(out, at("find/b_c/w-20240102-000000")), "%s", out);
    CHECK_OK(kiln_run_find_latest(at("find"), "b c", out, sizeof out)); /* sanitized like create */
    CHECK(kiln_run_find_latest(at("find"), "nope", out, sizeof out) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("nope");
    CHECK(kiln_run_find_latest(at("nowhere"), NULL, out, sizeof out) == KILN_ERR_NOTFOUND);
    CHECK(kiln_run_find_latest(at("find"), "a", out, 10) == KILN_ERR_INVALID);

    /* With real runs of one name: the one created last (a later second, or the same one with a
     * higher -n). */
    kiln_rundir *r1 = NULL, *r2 = NULL;
    CHECK_OK(kiln_run_create(at("find2"), "e", "n", &r1));
    CHECK_OK(kiln_run_create(at("find2"), "e", "n", &r2));
    CHECK_OK(kiln_run_find_latest(at("find2"), "e", out, sizeof out));
    CHECK(r2 && !strcmp(out, kiln_run_get_info(r2).path));
    kiln_run_close(r1);
    kiln_run_close(r2);
}

/* ---- opening bad folders ---- */

static void test_open_errors(void) {
    kiln_rundir *run = NULL;
    CHECK(kiln_run_open(at("bad/none"), KILN_RUN_READ, &run) == KILN_ERR_NOTFOUND && !run);
    CHECK(kiln_mkdirs(at("bad/empty")) == KILN_OK);
    CHECK(kiln_run_open(at("bad/empty"), KILN_RUN_READ, &run) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("no run.json");
    CHECK(kiln_run_open(at("bad/empty"), KILN_RUN_WRITE, &run) == KILN_ERR_NOTFOUND);
    CHECK(!exists(at("bad/empty/log.txt"))); /* a failed open writes nothing */
    put(at("bad/file"), "x");
    CHECK(kiln_run_open(at("bad/file"), KILN_RUN_READ, &run) != KILN_OK);
    CHECK(kiln_run_open(at("bad/empty"), (kiln_run_mode)5, &run) == KILN_ERR_INVALID);

    const char *good = "{\"id\":\"r\",\"experiment\":\"e\",\"name\":\"r\",\"status\":\"running\","
                       "\"start_time\":\"2024-01-01T00:00:00Z\"";
    struct {
        const char *tail, *err; /* appended to good; the message must contain err */
    } cases[] = {
        {"}", NULL},
        {",\"future_key\":[1,2],\"seed\":\"123\"}", NULL},
        {",", ":1: not valid JSON"},
        {",\"status\":3}", NULL}, /* duplicate key: the first counts */
        {",\"steps\":-1}", "\"steps\" must be an integer >= 0"},
        {",\"steps\":1.5}", "\"steps\""},
        {",\"host\":5}", "\"host\" must be a string or null, not a number"},
        {",\"final_metrics\":{\"a\":\"x\"}}", "\"final_metrics\".\"a\""},
        {",\"seed\":\"-1\"}", "\"seed\""},
        {",\"seed\":\"99999999999999999999\"}", "\"seed\""},
        {",\"best_step\":null,\"end_time\":null,\"message\":null}", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rm_rf(at("bad/r"));
        CHECK(kiln_mkdirs(at("bad/r")) == KILN_OK);
        put(at("bad/r/run.json"), good);
        put(at("bad/r/run.json"), cases[i].tail);
        run = NULL;
        kiln_status s = kiln_run_open(at("bad/r"), KILN_RUN_READ, &run);
        if (!cases[i].err)
            CHECK_MSG(s == KILN_OK, "case %zu: %s", i, kiln_last_error());
        else
            CHECK_MSG(s == KILN_ERR_FORMAT && strstr(kiln_last_error(), cases[i].err),
                      "case %zu: %s", i, kiln_last_error());
        kiln_run_close(run);
    }
    rm_rf(at("bad/r"));
    CHECK(kiln_mkdirs(at("bad/r")) == KILN_OK);
    put(at("bad/r/run.json"),
        "{\"id\":\"r\",\"experiment\":\"e\",\"name\":\"r\",\"status\":\"paused\","
        "\"start_time\":\"2024-01-01T00:00:00Z\"}");
    CHECK(kiln_run_open(at("bad/r"), KILN_RUN_READ, &run) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("paused");
    rm_rf(at("bad/r/run.json"));
    put(at("bad/r/run.json"), "{\"experiment\":\"e\"}");
    CHECK(kiln_run_open(at("bad/r"), KILN_RUN_READ, &run) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("\"id\" is missing");
}

/* A follower that records what it hears. */
typedef struct {
    int points, saves, closings;
    int64_t step, end;
    kiln_split split;
    char name[32];
    double value, wall_time;
    int remove_on_save;
} heard;

static void f_point(void *ctx, kiln_rundir *run, int64_t step, double wall_time, kiln_split split,
                    const char *name, double value, int64_t end) {
    heard *h = ctx;
    h->points++, h->step = step, h->wall_time = wall_time, h->split = split, h->value = value;
    h->end = end;
    snprintf(h->name, sizeof h->name, "%s", name);
}
static void f_saved(void *ctx, kiln_rundir *run) {
    heard *h = ctx;
    h->saves++;
    if (h->remove_on_save) kiln_run_set_follower(run, NULL, NULL);
}
static void f_closing(void *ctx, kiln_rundir *run) { ((heard *)ctx)->closings++; }

static void test_follower(void) {
    static const kiln_run_follower f = {.point = f_point, .saved = f_saved, .closing = f_closing};
    heard h = {0};
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(at("follow"), "exp", NULL, &run));
    char path[1024];
    snprintf(path, sizeof path, "%s", kiln_run_get_info(run).path);
    CHECK_OK(kiln_run_log_metric(run, 1, 0, KILN_SPLIT_TRAIN, "loss", 2.0)); /* nobody listens */
    CHECK_OK(kiln_run_set_follower(run, &f, &h));
    double before = (double)time(NULL);
    CHECK_OK(kiln_run_log_metric(run, 7, 0.5, KILN_SPLIT_VALIDATION, "accuracy", 0.75));
    CHECK(h.points == 1 && h.step == 7 && h.split == KILN_SPLIT_VALIDATION && h.value == 0.75);
    CHECK(!strcmp(h.name, "accuracy") && h.wall_time >= before - 1 && h.wall_time <= before + 2);
    struct stat st;
    char file[1100];
    snprintf(file, sizeof file, "%s/metrics.jsonl", path);
    CHECK(stat(file, &st) == 0 && h.end == (int64_t)st.st_size); /* the point is in the file */
    CHECK_OK(kiln_run_save(run));
    CHECK(h.saves == 1 && h.closings == 0);
    kiln_run_close(run);
    CHECK(h.points == 1 && h.saves == 1 && h.closings == 1);

    /* a follower may leave from inside a callback; nothing is heard after that */
    heard g = {.remove_on_save = 1};
    CHECK_OK(kiln_run_open(path, KILN_RUN_WRITE, &run));
    CHECK_OK(kiln_run_set_follower(run, &f, &g));
    CHECK_OK(kiln_run_save(run));
    CHECK_OK(kiln_run_log_metric(run, 8, 1, KILN_SPLIT_TRAIN, "loss", 1.0));
    kiln_run_close(run);
    CHECK(g.saves == 1 && g.points == 0 && g.closings == 0);

    /* only a writer has followers */
    CHECK_OK(kiln_run_open(path, KILN_RUN_READ, &run));
    CHECK(kiln_run_set_follower(run, &f, &h) == KILN_ERR_INVALID);
    CHECK(strstr(kiln_last_error(), "open for writing") != NULL);
    kiln_run_close(run);
    CHECK(h.closings == 1);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/kiln-test-run-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_sanitize);
    RUN(test_create_layout);
    RUN(test_create_collisions);
    RUN(test_create_forked);
    RUN(test_runjson_roundtrip);
    RUN(test_status_transitions);
    RUN(test_nan_is_null);
    RUN(test_metrics_log);
    RUN(test_metrics_stage);
    RUN(test_metrics_at);
    RUN(test_log_txt);
    RUN(test_lock);
    RUN(test_checkpoints);
    RUN(test_find_latest);
    RUN(test_open_errors);
    RUN(test_follower);
    rm_rf(root);
    return kiln_test_summary();
}

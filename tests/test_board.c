/* test_board.c — kiln board over real HTTP on 127.0.0.1 (libcurl as the client), against a runs
 * folder made here with the run API (kiln/run.h):
 *   mnist/a   finished, lr 0.01, 32 units, two checkpoints and an export version
 *   mnist/b   finished, lr 0.001, 64 units
 *   mnist/c   crashed: run.json says running, nobody holds the run
 *   live/l    running: held open for writing by this process, until it "dies" at the end
 * Covered: the JSON shapes of /api/runs, of run details and of metrics; the shown params (those
 * that differ); "since" deltas (a changed run, a new run, a removed run); incremental metrics
 * (only new points, points logged later at the same step, a half-written line, a re-logged
 * earlier step that resets); a live run appended to by another thread while the client follows
 * it, then dies (failed, crashed); mangled run.json, config.yaml and metrics.jsonl; bad queries;
 * path escapes (../, percent-encoded, double-encoded, backslashes, hidden names) that must never
 * reach the run planted outside the runs folder; the embedded page; the model summary
 * (summary.txt) and the stages of a run trained in stages (mnist/a: stage 1 then 2).
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "kiln/board.h"
#include "kiln/fileio.h"
#include "kiln/registry.h"

static char root[128], runs_dir[160];
static kiln_board *board;
static int port;
static char key_a[256], key_b[256], key_c[256], key_l[256];
static kiln_rundir *live; /* live/l, open for writing */

/* ---- HTTP ---- */

typedef struct {
    long status;
    char *body;
    size_t len;
    char type[128];
    char allow[64];
} reply;

static size_t on_data(char *p, size_t size, size_t n, void *ctx) {
    reply *r = ctx;
    char *b = realloc(r->body, r->len + size * n + 1);
    if (!b) return 0;
    memcpy(b + r->len, p, size * n);
    r->body = b, r->len += size * n;
    b[r->len] = 0;
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx) {
    reply *r = ctx;
    size_t len = size * n;
    if (len > 7 && !strncasecmp(p, "Allow: ", 7))
        snprintf(r->allow, sizeof r->allow, "%.*s", (int)(len - 9), p + 7);
    return len;
}

/* method NULL = GET; path is sent as given (no ../ folding). */
static reply http(const char *method, const char *path) {
    reply r = {0};
    char url[2048];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    if (method && !strcmp(method, "HEAD"))
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (method)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (curl_easy_perform(h) == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        char *ct = NULL;
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
        if (ct) snprintf(r.type, sizeof r.type, "%s", ct);
    }
    curl_easy_cleanup(h);
    if (!r.body) r.body = calloc(1, 1);
    return r;
}

/* GET path, expecting status; the body parsed (NULL when it is not JSON). */
static cJSON *get_json(const char *path, long want) {
    reply r = http(NULL, path);
    CHECK_MSG(r.status == want, "GET %s: status %ld, want %ld: %.300s", path, r.status, want,
              r.body);
    cJSON *j = cJSON_Parse(r.body);
    CHECK_MSG(j != NULL, "GET %s: not JSON: %.300s", path, r.body);
    CHECK_MSG(strstr(r.type, "application/json") != NULL, "GET %s: content type %s", path, r.type);
    free(r.body);
    return j;
}

static cJSON *item(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = item(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = item(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const cJSON *find_run(const cJSON *list, const char *key) {
    const cJSON *r;
    cJSON_ArrayForEach(r, item(list, "runs")) {
        if (str(r, "key") && !strcmp(str(r, "key"), key)) return r;
    }
    return NULL;
}

static const cJSON *find_series(const cJSON *m, const char *name, const char *split) {
    const cJSON *s;
    cJSON_ArrayForEach(s, item(m, "series")) {
        if (!strcmp(str(s, "name"), name) && !strcmp(str(s, "split"), split)) return s;
    }
    return NULL;
}

/* ---- the runs folder ---- */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_OK(kiln_file_write_atomic(path, text, strlen(text)));
}

static void write_config(kiln_rundir *run, const char *lr, int units) {
    char text[512];
    snprintf(text, sizeof text,
             "experiment: mnist\nseed: 1\ndata: {batch_size: 64}\nmodel:\n  input: [1, 28, 28]\n"
             "  layers:\n    - flatten\n    - dense: {units: %d, activation: relu}\n"
             "optimizer: {adam: {learning_rate: %s}}\n",
             units, lr);
    write_file(kiln_run_get_info(run).path, "config.yaml", text);
}

static kiln_rundir *make_run(const char *exp, const char *name, char *key) {
    kiln_rundir *run = NULL;
    CHECK_OK(kiln_run_create(runs_dir, exp, name, &run));
    snprintf(key, 256, "%s/%s", exp, kiln_run_get_info(run).id);
    return run;
}

static void checkpoint(kiln_rundir *run, int64_t step) {
    char tmp[1024];
    CHECK_OK(kiln_run_checkpoint_begin(run, step, tmp, sizeof tmp));
    write_file(tmp, "weights.safetensors", "weights");
    CHECK_OK(kiln_run_checkpoint_commit(run, step, tmp));
}

/* as the trainer writes it (kiln_model_summary, one section per stage) */
#define SUMMARY_A                                                                                  \
    "stage 1/2\n"                                                                                  \
    "Layer     Kind     Output shape   Param #  Trainable\n"                                       \
    "dense_1   dense    (None, 32)       25120  frozen\n"                                          \
    "Total params: 25120\nTrainable params: 0\nFrozen params: 25120\n"                             \
    "stage 2/2\n"                                                                                  \
    "dense_1   dense    (None, 32)       25120  yes\n"

static void make_runs(void) {
    kiln_rundir *a = make_run("mnist", "a", key_a);
    write_config(a, "0.01", 32);
    write_file(kiln_run_get_info(a).path, "summary.txt", SUMMARY_A);
    for (int step = 10; step <= 50; step += 10) {
        kiln_run_set_stage(a, step <= 30 ? 1 : 2); /* trained in two stages */
        CHECK_OK(kiln_run_log_metric(a, step, step / 50.0, KILN_SPLIT_TRAIN, "loss", 1.0 / step));
    }
    CHECK_OK(kiln_run_log_metric(a, 50, 1, KILN_SPLIT_VALIDATION, "accuracy", 0.9));
    CHECK_OK(kiln_run_log(a, "epoch 1/1: loss 0.02"));
    checkpoint(a, 20);
    checkpoint(a, 50);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/export/1", kiln_run_get_info(a).path);
    CHECK_OK(kiln_mkdirs(dir));
    write_file(dir, "model.json",
               "{\"created\": \"2026-01-02T03:04:05Z\", \"source\": {\"checkpoint\": \"step-50\"}, "
               "\"inputs\": [{\"name\": \"input\", \"dtype\": \"FP32\", \"shape\": [-1, 4]}], "
               "\"outputs\": []}");
    write_file(dir, "weights.safetensors", "weights");
    CHECK_OK(kiln_run_set_metric(a, KILN_RUN_FINAL, "val_accuracy", 0.9));
    CHECK_OK(kiln_run_set_metric(a, KILN_RUN_BEST, "val_accuracy", 0.9));
    kiln_run_set_best_step(a, 50);
    kiln_run_set_progress(a, 1, 50);
    CHECK_OK(kiln_run_set_status(a, KILN_RUN_FINISHED, NULL));
    CHECK_OK(kiln_run_save(a));
    kiln_run_close(a);

    kiln_rundir *b = make_run("mnist", "b", key_b);
    write_config(b, "0.001", 64);
    CHECK_OK(kiln_run_log_metric(b, 10, 0.5, KILN_SPLIT_TRAIN, "loss", 2.0));
    CHECK_OK(kiln_run_set_metric(b, KILN_RUN_FINAL, "val_accuracy", 0.7));
    CHECK_OK(kiln_run_set_status(b, KILN_RUN_FINISHED, NULL));
    CHECK_OK(kiln_run_save(b));
    kiln_run_close(b);

    kiln_rundir *c = make_run("mnist", "c", key_c); /* dies without ending the run */
    write_config(c, "0.001", 64);
    CHECK_OK(kiln_run_log_metric(c, 10, 0.5, KILN_SPLIT_TRAIN, "loss", 3.0));
    kiln_run_close(c);

    live = make_run("live", "l", key_l);
    CHECK_OK(kiln_run_log_metric(live, 10, 0, KILN_SPLIT_TRAIN, "loss", 5.0));
    CHECK_OK(kiln_run_log_metric(live, 20, 0, KILN_SPLIT_TRAIN, "loss", 4.0));

    /* a run outside the runs folder, which no request may reach */
    snprintf(dir, sizeof dir, "%s/outside/x", root);
    CHECK_OK(kiln_mkdirs(dir));
    write_file(dir, "run.json",
               "{\"id\": \"x\", \"experiment\": \"OUTSIDE-SECRET\", \"name\": \"x\", "
               "\"status\": \"finished\", \"start_time\": \"2026-01-01T00:00:00Z\"}");
    write_file(dir, "metrics.jsonl",
               "{\"step\":1,\"epoch\":0,\"wall_time\":1,\"split\":\"train\",\"name\":\"OUTSIDE-"
               "SECRET\",\"value\":1}\n");
    write_file(dir, "config.yaml", "experiment: OUTSIDE-SECRET\n");
}

/* ---- tests ---- */

static void test_runs_list(void) {
    cJSON *j = get_json("/api/runs", 200);
    CHECK(cJSON_IsTrue(item(j, "full")));
    CHECK(num(j, "count") == 4);
    CHECK(cJSON_GetArraySize(item(j, "runs")) == 4);
    CHECK(cJSON_IsArray(item(j, "removed")) && cJSON_GetArraySize(item(j, "removed")) == 0);
    CHECK(str(j, "board") && num(j, "gen") > 0 && num(j, "now") > 1.7e9);
    CHECK(str(j, "runs_dir") && !strcmp(str(j, "runs_dir"), runs_dir));

    const cJSON *a = find_run(j, key_a), *b = find_run(j, key_b), *c = find_run(j, key_c),
                *l = find_run(j, key_l);
    CHECK(a && b && c && l);
    if (!(a && b && c && l)) goto out;
    CHECK(!strcmp(str(a, "status"), "finished") && cJSON_IsFalse(item(a, "crashed")));
    CHECK(!strcmp(str(a, "experiment"), "mnist") && !strcmp(str(a, "name"), "a"));
    CHECK(!strncmp(str(a, "run"), "a-", 2));
    CHECK(num(a, "steps") == 50 && num(a, "epochs") == 1 && num(a, "best_step") == 50);
    CHECK(!strcmp(str(a, "checkpoint"), "step-50"));
    CHECK(num(item(a, "final"), "val_accuracy") == 0.9 &&
          num(item(a, "best"), "val_accuracy") == 0.9);
    CHECK(str(a, "start_time") && str(a, "end_time") && cJSON_IsNull(item(a, "last_update")));
    /* the crashed run: failed, with a reason and when it last did something */
    CHECK(!strcmp(str(c, "status"), "failed") && cJSON_IsTrue(item(c, "crashed")));
    CHECK(str(c, "message") && strstr(str(c, "message"), "crashed"));
    CHECK(str(c, "last_update") != NULL && cJSON_IsNull(item(c, "end_time")));
    /* the live one is running: this process holds it */
    CHECK(!strcmp(str(l, "status"), "running") && cJSON_IsFalse(item(l, "crashed")));

    /* shown params: what differs (lr, units) and the always-shown batch size */
    const cJSON *keys = item(item(j, "param_keys"), "mnist");
    CHECK(cJSON_GetArraySize(keys) == 3);
    const char *want[] = {"data.batch_size", "model.layers[1].dense.units",
                          "optimizer.adam.learning_rate"};
    for (int i = 0; i < 3; i++) CHECK(!strcmp(cJSON_GetArrayItem(keys, i)->valuestring, want[i]));
    CHECK(!strcmp(str(item(a, "params"), "optimizer.adam.learning_rate"), "0.01"));
    CHECK(!strcmp(str(item(a, "params"), "model.layers[1].dense.units"), "32"));
    CHECK(!strcmp(str(item(b, "params"), "model.layers[1].dense.units"), "64"));
    CHECK(!item(item(a, "params"), "seed")); /* the same in every run */

    /* nothing changed since: an empty delta */
    char path[128];
    snprintf(path, sizeof path, "/api/runs?since=%.0f", num(j, "gen"));
    cJSON *d = get_json(path, 200);
    CHECK(cJSON_IsFalse(item(d, "full")) && num(d, "gen") == num(j, "gen"));
    CHECK(cJSON_GetArraySize(item(d, "runs")) == 0 && cJSON_GetArraySize(item(d, "removed")) == 0);
    cJSON_Delete(d);
out:
    cJSON_Delete(j);
}

static void test_runs_delta(void) {
    cJSON *j = get_json("/api/runs", 200);
    double gen = num(j, "gen");
    cJSON_Delete(j);
    char path[512];
    /* the live run saves run.json: only it comes back */
    CHECK_OK(kiln_run_set_metric(live, KILN_RUN_FINAL, "loss", 4.0));
    kiln_run_set_progress(live, 0, 20);
    CHECK_OK(kiln_run_save(live));
    snprintf(path, sizeof path, "/api/runs?since=%.0f", gen);
    j = get_json(path, 200);
    const cJSON *l = find_run(j, key_l);
    CHECK(cJSON_GetArraySize(item(j, "runs")) == 1 && l);
    CHECK(l && num(item(l, "final"), "loss") == 4.0 && num(l, "steps") == 20);
    gen = num(j, "gen");
    cJSON_Delete(j);
    /* a new run appears */
    char key_d[256];
    kiln_rundir *d = make_run("mnist", "d", key_d);
    write_config(d, "0.1", 32);
    CHECK_OK(kiln_run_set_status(d, KILN_RUN_STOPPED, "stopped by a signal"));
    CHECK_OK(kiln_run_save(d));
    kiln_run_close(d);
    snprintf(path, sizeof path, "/api/runs?since=%.0f", gen);
    j = get_json(path, 200);
    const cJSON *r = find_run(j, key_d);
    CHECK(r && !strcmp(str(r, "status"), "stopped") &&
          !strcmp(str(r, "message"), "stopped by a signal"));
    CHECK(num(j, "count") == 5);
    gen = num(j, "gen");
    cJSON_Delete(j);
    /* ... and is removed */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", runs_dir, key_d);
    CHECK(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
    snprintf(path, sizeof path, "/api/runs?since=%.0f", gen);
    j = get_json(path, 200);
    const cJSON *removed = item(j, "removed");
    CHECK(cJSON_GetArraySize(removed) == 1 &&
          !strcmp(cJSON_GetArrayItem(removed, 0)->valuestring, key_d));
    CHECK(num(j, "count") == 4 && !find_run(j, key_d));
    cJSON_Delete(j);
    snprintf(path, sizeof path, "/api/runs/%s/metrics", key_d);
    cJSON_Delete(get_json(path, 404));
    /* a gen from the future (another board) gets everything */
    j = get_json("/api/runs?since=999999999999", 200);
    CHECK(cJSON_IsTrue(item(j, "full")) && cJSON_GetArraySize(item(j, "runs")) == 4);
    cJSON_Delete(j);
}

/* GET metrics of key after (next, rev) of m (NULL: everything). */
static cJSON *metrics(const char *key, const cJSON *m) {
    char path[512];
    if (m)
        snprintf(path, sizeof path, "/api/runs/%s/metrics?after=%.0f&rev=%.0f", key, num(m, "next"),
                 num(m, "rev"));
    else
        snprintf(path, sizeof path, "/api/runs/%s/metrics", key);
    return get_json(path, 200);
}

static void test_metrics_incremental(void) {
    cJSON *m = metrics(key_a, NULL);
    CHECK(!strcmp(str(m, "key"), key_a) && !strcmp(str(m, "status"), "finished"));
    CHECK(cJSON_IsTrue(item(m, "reset")) && num(m, "next") == 6 && num(m, "skipped") == 0);
    const cJSON *loss = find_series(m, "loss", "train");
    CHECK(loss && cJSON_GetArraySize(item(loss, "step")) == 5);
    if (loss) {
        CHECK(cJSON_GetArrayItem(item(loss, "step"), 4)->valuedouble == 50);
        CHECK(cJSON_GetArrayItem(item(loss, "value"), 4)->valuedouble == 1.0 / 50);
        CHECK(cJSON_GetArrayItem(item(loss, "epoch"), 4)->valuedouble == 1.0);
        CHECK(cJSON_GetArrayItem(item(loss, "wall_time"), 0)->valuedouble > 1.7e9);
    }
    CHECK(find_series(m, "accuracy", "validation") != NULL);
    cJSON_Delete(m);

    /* the live run: everything, then only what is new */
    m = metrics(key_l, NULL);
    CHECK(!strcmp(str(m, "status"), "running") && num(m, "next") == 2);
    CHECK_OK(kiln_run_log_metric(live, 30, 0, KILN_SPLIT_TRAIN, "loss", 3.0));
    cJSON *n = metrics(key_l, m);
    CHECK(cJSON_IsFalse(item(n, "reset")) && num(n, "next") == 3 && num(n, "rev") == num(m, "rev"));
    loss = find_series(n, "loss", "train");
    CHECK(loss && cJSON_GetArraySize(item(loss, "step")) == 1 &&
          cJSON_GetArrayItem(item(loss, "step"), 0)->valuedouble == 30);
    cJSON_Delete(m);
    /* a validation point logged later at a step already seen still arrives */
    CHECK_OK(kiln_run_log_metric(live, 30, 0, KILN_SPLIT_VALIDATION, "loss", 3.5));
    m = metrics(key_l, n);
    const cJSON *val = find_series(m, "loss", "validation");
    CHECK(cJSON_GetArraySize(item(m, "series")) == 1 && val &&
          cJSON_GetArrayItem(item(val, "step"), 0)->valuedouble == 30);
    cJSON_Delete(n);
    /* nothing new: no series */
    n = metrics(key_l, m);
    CHECK(cJSON_GetArraySize(item(n, "series")) == 0 && num(n, "next") == num(m, "next"));
    cJSON_Delete(m), m = n;
    /* a line half written is not read until its newline comes */
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", runs_dir, key_l);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    const char *half = "{\"step\":40,\"epoch\":0,\"wall_time\":1800000000.5,";
    CHECK(write(fd, half, strlen(half)) == (ssize_t)strlen(half));
    n = metrics(key_l, m);
    CHECK(cJSON_GetArraySize(item(n, "series")) == 0);
    cJSON_Delete(m), m = n;
    const char *rest = "\"split\":\"train\",\"name\":\"loss\",\"value\":2.5}\n";
    CHECK(write(fd, rest, strlen(rest)) == (ssize_t)strlen(rest));
    /* and a junk line is skipped and counted */
    const char *junk = "this is not a point\n";
    CHECK(write(fd, junk, strlen(junk)) == (ssize_t)strlen(junk));
    close(fd);
    n = metrics(key_l, m);
    loss = find_series(n, "loss", "train");
    CHECK(loss && cJSON_GetArraySize(item(loss, "step")) == 1 &&
          cJSON_GetArrayItem(item(loss, "value"), 0)->valuedouble == 2.5);
    CHECK(num(n, "skipped") == 1);
    cJSON_Delete(m), m = n;
    /* a resumed run logs step 20 again: the client must start over, with the new value */
    CHECK_OK(kiln_run_log_metric(live, 20, 0, KILN_SPLIT_TRAIN, "loss", 4.25));
    n = metrics(key_l, m);
    CHECK(cJSON_IsTrue(item(n, "reset")) && num(n, "rev") != num(m, "rev"));
    loss = find_series(n, "loss", "train");
    CHECK(loss && cJSON_GetArraySize(item(loss, "step")) == 4);
    if (loss) {
        CHECK(cJSON_GetArrayItem(item(loss, "step"), 1)->valuedouble == 20);
        CHECK(cJSON_GetArrayItem(item(loss, "value"), 1)->valuedouble == 4.25);
    }
    cJSON_Delete(m), m = n;
    /* revs from elsewhere (another board) also start over */
    char q[512];
    snprintf(q, sizeof q, "/api/runs/%s/metrics?after=2&rev=7", key_l);
    n = get_json(q, 200);
    CHECK(cJSON_IsTrue(item(n, "reset")));
    cJSON_Delete(n);
    cJSON_Delete(m);
}

static void test_bad_queries(void) {
    char path[512];
    const char *bad[] = {"?after=3",       "?rev=3",        "?after=-1&rev=1",
                         "?after=x&rev=1", "?after=1&rev=", "?after=99999999999999999999&rev=1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "/api/runs/%s/metrics%s", key_a, bad[i]);
        cJSON *j = get_json(path, 400);
        CHECK(str(j, "error") != NULL);
        cJSON_Delete(j);
    }
    cJSON *j = get_json("/api/runs?since=-5", 400);
    CHECK(str(j, "error") && strstr(str(j, "error"), "since"));
    cJSON_Delete(j);
    cJSON_Delete(get_json("/api/runs/mnist/no-such-run", 404));
    cJSON_Delete(get_json("/api/runs/mnist/no-such-run/metrics", 404));
    cJSON_Delete(get_json("/api/runs/mnist", 404));
    snprintf(path, sizeof path, "/api/runs/%s/other", key_a);
    cJSON_Delete(get_json(path, 404));
    snprintf(path, sizeof path, "/api/runs/%s/metrics/more", key_a);
    cJSON_Delete(get_json(path, 404));
    cJSON_Delete(get_json("/api/nothing", 404));
    reply r = http("POST", "/api/runs");
    CHECK(r.status == 405 && strstr(r.body, "\"error\"") && !strcmp(r.allow, "GET, HEAD"));
    free(r.body);
}

static void test_details(void) {
    char path[512];
    snprintf(path, sizeof path, "/api/runs/%s", key_a);
    cJSON *j = get_json(path, 200);
    CHECK(!strcmp(str(j, "key"), key_a) && !strcmp(str(j, "status"), "finished"));
    CHECK(str(j, "dir") && strstr(str(j, "dir"), key_a));
    const cJSON *run = item(j, "run");
    CHECK(str(run, "id") && !strncmp(str(run, "id"), "a-", 2));
    CHECK(num(item(run, "final_metrics"), "val_accuracy") == 0.9);
    CHECK(str(j, "config") && strstr(str(j, "config"), "learning_rate: 0.01"));
    CHECK(cJSON_IsFalse(item(j, "config_truncated")));
    const cJSON *params = item(j, "params");
    CHECK(!strcmp(str(params, "optimizer.adam.learning_rate"), "0.01"));
    CHECK(!strcmp(str(params, "model.input"), "[1, 28, 28]"));
    CHECK(!strcmp(str(params, "model.layers[0]"), "flatten"));
    CHECK(!strcmp(str(params, "seed"), "1"));
    const cJSON *ck = item(j, "checkpoints");
    CHECK(cJSON_GetArraySize(ck) == 2);
    if (cJSON_GetArraySize(ck) == 2) {
        const cJSON *c0 = cJSON_GetArrayItem(ck, 0), *c1 = cJSON_GetArrayItem(ck, 1);
        CHECK(!strcmp(str(c0, "name"), "step-20") && num(c0, "step") == 20 &&
              cJSON_IsFalse(item(c0, "latest")));
        CHECK(!strcmp(str(c1, "name"), "step-50") && cJSON_IsTrue(item(c1, "latest")));
        CHECK(num(c1, "bytes") == 7 && str(c1, "time"));
    }
    CHECK(!strcmp(str(j, "latest_checkpoint"), "step-50"));
    const cJSON *ex = item(j, "exports");
    CHECK(cJSON_GetArraySize(ex) == 1);
    if (cJSON_GetArraySize(ex) == 1) {
        const cJSON *v = cJSON_GetArrayItem(ex, 0);
        CHECK(num(v, "version") == 1 && !strcmp(str(v, "checkpoint"), "step-50"));
        CHECK(!strcmp(str(v, "created"), "2026-01-02T03:04:05Z"));
        CHECK(!strcmp(str(cJSON_GetArrayItem(item(v, "inputs"), 0), "name"), "input"));
        CHECK(str(v, "path") && strstr(str(v, "path"), "/export/1"));
    }
    CHECK(str(j, "log_tail") && strstr(str(j, "log_tail"), "epoch 1/1: loss 0.02"));
    cJSON_Delete(j);
    /* a run without checkpoints, exports or a log still answers */
    snprintf(path, sizeof path, "/api/runs/%s", key_c);
    j = get_json(path, 200);
    CHECK(!strcmp(str(j, "status"), "failed") && cJSON_IsTrue(item(j, "crashed")));
    CHECK(cJSON_GetArraySize(item(j, "checkpoints")) == 0 &&
          cJSON_IsNull(item(j, "latest_checkpoint")));
    CHECK(cJSON_GetArraySize(item(j, "exports")) == 0);
    cJSON_Delete(j);
}

/* The model summary and the stages, in the details and in the metrics. */
static void test_stages(void) {
    char path[512];
    snprintf(path, sizeof path, "/api/runs/%s", key_a);
    cJSON *j = get_json(path, 200);
    CHECK(str(j, "summary") && !strcmp(str(j, "summary"), SUMMARY_A));
    CHECK(cJSON_IsFalse(item(j, "summary_truncated")) && !item(j, "summary_error"));
    CHECK(num(j, "stage") == 2);
    const cJSON *st = item(j, "stages");
    CHECK_MSG(cJSON_GetArraySize(st) == 2, "stages: %d", cJSON_GetArraySize(st));
    if (cJSON_GetArraySize(st) == 2) {
        const cJSON *s1 = cJSON_GetArrayItem(st, 0), *s2 = cJSON_GetArrayItem(st, 1);
        CHECK(num(s1, "stage") == 1 && num(s1, "first_step") == 10 && num(s1, "last_step") == 30);
        CHECK(num(s1, "first_epoch") == 0.2 && num(s1, "last_epoch") == 0.6);
        CHECK(num(s2, "stage") == 2 && num(s2, "first_step") == 40 && num(s2, "last_step") == 50);
        CHECK(num(s2, "first_epoch") == 0.8 && num(s2, "last_epoch") == 1);
    }
    cJSON_Delete(j);
    /* each point's stage, in the metrics; the same stages */
    j = metrics(key_a, NULL);
    const cJSON *loss = find_series(j, "loss", "train");
    const cJSON *stage = item(loss, "stage");
    CHECK(cJSON_GetArraySize(stage) == 5);
    for (int i = 0; i < 5 && i < cJSON_GetArraySize(stage); i++)
        CHECK(cJSON_GetArrayItem(stage, i)->valuedouble == (i < 3 ? 1 : 2));
    CHECK(num(j, "stage") == 2 && cJSON_GetArraySize(item(j, "stages")) == 2);
    cJSON_Delete(j);
    /* a run without stages or summary: none of it */
    snprintf(path, sizeof path, "/api/runs/%s", key_b);
    j = get_json(path, 200);
    CHECK(cJSON_IsNull(item(j, "summary")) && !item(j, "summary_error"));
    CHECK(cJSON_IsNull(item(j, "stage")) && cJSON_GetArraySize(item(j, "stages")) == 0);
    cJSON_Delete(j);
    j = metrics(key_b, NULL);
    loss = find_series(j, "loss", "train");
    CHECK(loss && !item(loss, "stage") && cJSON_IsNull(item(j, "stage")));
    cJSON_Delete(j);
    /* a summary.txt that cannot be read: null and why */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s/summary.txt", runs_dir, key_c);
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "/api/runs/%s", key_c);
    j = get_json(path, 200);
    CHECK(cJSON_IsNull(item(j, "summary")) && str(j, "summary_error") &&
          strstr(str(j, "summary_error"), "summary.txt"));
    cJSON_Delete(j);
    rmdir(dir);
    /* a live run enters a stage: the next points carry it, and it is the current one */
    cJSON *m = metrics(key_l, NULL);
    kiln_run_set_stage(live, 3);
    CHECK_OK(kiln_run_log_metric(live, 45, 0, KILN_SPLIT_TRAIN, "loss", 2.0));
    kiln_run_set_stage(live, 0);
    cJSON *n = metrics(key_l, m);
    loss = find_series(n, "loss", "train");
    CHECK(cJSON_IsFalse(item(n, "reset")) && num(n, "stage") == 3);
    CHECK(loss && cJSON_GetArraySize(item(loss, "stage")) == 1 &&
          cJSON_GetArrayItem(item(loss, "stage"), 0)->valuedouble == 3);
    st = item(n, "stages");
    CHECK(cJSON_GetArraySize(st) == 1 && num(cJSON_GetArrayItem(st, 0), "first_step") == 45);
    cJSON_Delete(m);
    cJSON_Delete(n);
}

static void test_path_escapes(void) {
    const char *paths[] = {
        "/api/runs/../outside/x",
        "/api/runs/../outside/x/metrics",
        "/api/runs/..%2Foutside/x",
        "/api/runs/%2e%2e/outside/x",
        "/api/runs/%2E%2E%2Foutside%2Fx/metrics",
        "/api/runs/mnist/..%2f..%2f..%2foutside%2fx",
        "/api/runs/mnist/../../outside/x/metrics",
        "/api/runs/%252e%252e/outside/x",
        "/api/runs/..%252foutside/x",
        "/api/runs/mnist%5c..%5c..%5coutside/x",
        "/api/runs/..\\..\\outside/x",
        "/api/runs/.hidden/x",
        "/api/runs//outside/x",
        "/api/runs/%00/x",
        "/api/runs/mnist/%2e",
        "/api/runs/%2e%2e%2f%2e%2e%2f..%2foutside/x/metrics",
        "/../outside/x/run.json",
        "/%2e%2e/outside/x/run.json",
        "/..%2foutside%2fx%2frun.json",
        "/app.js/../../outside/x/run.json",
        "/api/runs/outside/x",
    };
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        reply r = http(NULL, paths[i]);
        CHECK_MSG(r.status >= 400 && r.status < 500, "%s: status %ld", paths[i], r.status);
        CHECK_MSG(strstr(r.body, "\"error\"") != NULL, "%s: %.200s", paths[i], r.body);
        CHECK_MSG(!strstr(r.body, "OUTSIDE-SECRET"), "%s reached outside: %.200s", paths[i],
                  r.body);
        free(r.body);
    }
    /* the runs list never shows it either */
    reply r = http(NULL, "/api/runs");
    CHECK(r.status == 200 && !strstr(r.body, "OUTSIDE-SECRET"));
    free(r.body);
}

static void test_page(void) {
    reply r = http(NULL, "/");
    CHECK(r.status == 200 && strstr(r.type, "text/html"));
    CHECK(strstr(r.body, "<title>kiln board</title>") && strstr(r.body, "app.js"));
    free(r.body);
    /* the embedded files are the ones in src/board/web/, byte for byte */
    const char *names[] = {"index.html", "app.js", "style.css"};
    const char *types[] = {"text/html", "text/javascript", "text/css"};
    const char *src = getenv("KILN_SOURCE_DIR");
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "/%s", names[i]);
        r = http(NULL, path);
        CHECK_MSG(r.status == 200 && strstr(r.type, types[i]), "%s: %ld %s", path, r.status,
                  r.type);
        if (src) {
            snprintf(path, sizeof path, "%s/src/board/web/%s", src, names[i]);
            void *want = NULL;
            size_t len = 0;
            CHECK_OK(kiln_file_read_all(path, &want, &len, 1u << 24));
            CHECK_MSG(want && len == r.len && !memcmp(want, r.body, len),
                      "%s differs from the "
                      "embedded copy",
                      path);
            kiln_free(want);
        }
        free(r.body);
    }
    r = http("HEAD", "/app.js");
    CHECK(r.status == 200 && r.len == 0);
    free(r.body);
    cJSON_Delete(get_json("/nothing.html", 404));
}

/* ---- a live run followed while another thread writes it ---- */

enum { FOLLOW_POINTS = 1500 };
static atomic_int writer_done;

static void *writer(void *arg) {
    for (int i = 0; i < FOLLOW_POINTS; i++) {
        int64_t step = 1000 + i;
        kiln_run_log_metric(live, step, 1, KILN_SPLIT_TRAIN, "follow", 0.5 * (double)step);
        if (i % 100 == 99)
            kiln_run_log_metric(live, step, 1, KILN_SPLIT_VALIDATION, "follow", -(double)step);
        if (i % 10 == 0) usleep(1000); /* let the client poll in between */
    }
    atomic_store(&writer_done, 1);
    return arg;
}

static void test_follow_live_run(void) {
    cJSON *m = metrics(key_l, NULL);
    pthread_t t;
    atomic_store(&writer_done, 0);
    pthread_create(&t, NULL, writer, NULL);
    int got_train = 0, got_val = 0, bad = 0, polls = 0;
    int64_t last_train = 0;
    for (int done = 0; !done && polls < 20000; polls++) {
        done = atomic_load(&writer_done); /* one more poll after the writer ends */
        cJSON *n = metrics(key_l, m);
        CHECK(cJSON_IsFalse(item(n, "reset")));
        const cJSON *s;
        cJSON_ArrayForEach(s, item(n, "series")) {
            if (strcmp(str(s, "name"), "follow")) continue;
            int val = !strcmp(str(s, "split"), "validation");
            for (int i = 0; i < cJSON_GetArraySize(item(s, "step")); i++) {
                double step = cJSON_GetArrayItem(item(s, "step"), i)->valuedouble;
                double v = cJSON_GetArrayItem(item(s, "value"), i)->valuedouble;
                if (val) {
                    got_val++, bad += v != -step;
                } else {
                    got_train++, bad += v != 0.5 * step || step <= (double)last_train;
                    last_train = (int64_t)step;
                }
            }
        }
        cJSON_Delete(m), m = n;
    }
    pthread_join(t, NULL);
    CHECK_MSG(got_train == FOLLOW_POINTS && got_val == FOLLOW_POINTS / 100 && bad == 0,
              "train %d, validation %d, wrong %d (in %d polls)", got_train, got_val, bad, polls);
    cJSON_Delete(m);
}

/* Files a hand, a crash or another tool mangled: answered, never crashed on. */
static void test_bad_files(void) {
    cJSON *j = get_json("/api/runs", 200);
    char path[512], dir[600], file[700];
    snprintf(path, sizeof path, "/api/runs?since=%.0f", num(j, "gen"));
    cJSON_Delete(j);
    snprintf(dir, sizeof dir, "%s/mnist/broken-20260101-000000", runs_dir);
    CHECK_OK(kiln_mkdirs(dir));
    write_file(dir, "run.json", "{\"id\": \"broken\", \"status\": ");
    write_file(dir, "config.yaml", "model: [unclosed\n  - {");
    /* metrics.jsonl: NUL bytes, a line longer than any point, a wrong type, then a good point */
    char *big = malloc(100001);
    memset(big, 'x', 100000), big[100000] = 0;
    snprintf(file, sizeof file, "%s/metrics.jsonl", dir);
    FILE *f = fopen(file, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite("{\"step\":1,\0\0\n", 1, 13, f);
        fprintf(f, "%s\n", big);
        fputs("{\"step\":\"2\",\"epoch\":0,\"wall_time\":1,\"split\":\"train\",\"name\":\"loss\","
              "\"value\":1}\n",
              f);
        fputs("{\"step\":3,\"epoch\":null,\"wall_time\":1800000000,\"split\":\"train\",\"name\":"
              "\"loss\","
              "\"value\":null}\n",
              f);
        fclose(f);
    }
    free(big);
    j = get_json(path, 200);
    const cJSON *r = find_run(j, "mnist/broken-20260101-000000");
    CHECK(r && !strcmp(str(r, "status"), "unreadable") && str(r, "error"));
    CHECK(r && !strcmp(str(r, "experiment"), "mnist"));
    cJSON_Delete(j);
    j = get_json("/api/runs/mnist/broken-20260101-000000", 200);
    CHECK(cJSON_IsNull(item(j, "run")) && str(j, "run_error"));
    CHECK(str(j, "config") && cJSON_GetArraySize(item(j, "params")) == 0);
    cJSON_Delete(j);
    j = get_json("/api/runs/mnist/broken-20260101-000000/metrics", 200);
    const cJSON *loss = find_series(j, "loss", "train");
    CHECK(num(j, "skipped") == 3 && loss && cJSON_GetArraySize(item(loss, "step")) == 1);
    CHECK(loss && cJSON_IsNull(cJSON_GetArrayItem(item(loss, "value"), 0)) &&
          cJSON_IsNull(cJSON_GetArrayItem(item(loss, "epoch"), 0)));
    cJSON_Delete(j);
    CHECK(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

/* The live run's process "dies" (its writer closes without ending the run): it turns failed. */
static void test_live_run_crashes(void) {
    cJSON *j = get_json("/api/runs", 200);
    const cJSON *l = find_run(j, key_l);
    CHECK(l && !strcmp(str(l, "status"), "running"));
    char path[512];
    snprintf(path, sizeof path, "/api/runs?since=%.0f", num(j, "gen"));
    cJSON_Delete(j);
    kiln_run_close(live);
    live = NULL;
    j = get_json(path, 200);
    l = find_run(j, key_l);
    CHECK(cJSON_GetArraySize(item(j, "runs")) == 1 && l);
    CHECK(l && !strcmp(str(l, "status"), "failed") && cJSON_IsTrue(item(l, "crashed")));
    CHECK(l && str(l, "last_update") != NULL);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "/api/runs/%s/metrics", key_l);
    j = get_json(path, 200);
    CHECK(!strcmp(str(j, "status"), "failed") && cJSON_IsTrue(item(j, "crashed")));
    cJSON_Delete(j);
}

/* kiln tune's studies from the registry: none before there is a kiln.db (the board makes none),
 * then the list with counts and the best value, and one study with its trials (params,
 * objective, state, run key); an unknown study 404, a bad name 400. */
static void test_studies(void) {
    char db[300];
    snprintf(db, sizeof db, "%s/kiln.db", runs_dir);
    cJSON *j = get_json("/api/studies", 200);
    CHECK(cJSON_IsArray(item(j, "studies")) && cJSON_GetArraySize(item(j, "studies")) == 0);
    cJSON_Delete(j);
    CHECK(access(db, F_OK) != 0);
    cJSON_Delete(get_json("/api/studies/s1", 404));

    kiln_registry *reg = NULL;
    CHECK_OK(kiln_registry_open(runs_dir, &reg));
    kiln_registry_study st = {.name = "s1", .experiment = "exp", .metric = "val_accuracy",
                              .direction = "maximize", .spec = "{}"};
    CHECK_OK(kiln_registry_study_create(reg, &st));
    char run_key[300];
    snprintf(run_key, sizeof run_key, "%s", key_a);
    kiln_registry_trial t[3] = {
        {.number = 0, .state = "finished", .run = run_key,
         .params = "{\"optimizer.adam.learning_rate\":0.001,\"data.batch_size\":\"64\"}",
         .x = "[0.001,1]", .has_value = 1, .value = 0.85, .has_resource = 1, .resource = 9,
         .start_time = "2026-12-06T10:00:00Z", .end_time = "2026-12-06T10:01:00Z"},
        {.number = 1, .state = "pruned",
         .params = "{\"optimizer.adam.learning_rate\":0.01,\"data.batch_size\":\"32\"}",
         .x = "[0.01,0]", .has_value = 1, .value = 0.7, .has_resource = 1, .resource = 1,
         .start_time = "2026-12-06T10:00:00Z", .end_time = "2026-12-06T10:00:20Z"},
        {.number = 2, .state = "finished",
         .params = "{\"optimizer.adam.learning_rate\":0.0003,\"data.batch_size\":\"128\"}",
         .x = "[0.0003,2]", .has_value = 1, .value = 0.88, .has_resource = 1, .resource = 9,
         .start_time = "2026-12-06T10:01:00Z", .end_time = "2026-12-06T10:02:00Z"}};
    for (int i = 0; i < 3; i++) CHECK_OK(kiln_registry_trial_put(reg, "s1", &t[i]));
    kiln_registry_close(reg);

    j = get_json("/api/studies", 200);
    const cJSON *l = cJSON_GetArrayItem(item(j, "studies"), 0);
    CHECK(cJSON_GetArraySize(item(j, "studies")) == 1 && l);
    CHECK(l && !strcmp(str(l, "name"), "s1") && !strcmp(str(l, "metric"), "val_accuracy"));
    CHECK(l && !strcmp(str(l, "direction"), "maximize"));
    CHECK(l && num(l, "trials") == 3 && num(l, "finished") == 2 && num(l, "pruned") == 1);
    CHECK(l && num(l, "best") == 0.88);
    cJSON_Delete(j);

    j = get_json("/api/studies/s1", 200);
    CHECK(j && !strcmp(str(item(j, "study"), "name"), "s1"));
    const cJSON *tr = item(j, "trials");
    CHECK(cJSON_GetArraySize(tr) == 3);
    const cJSON *t0 = cJSON_GetArrayItem(tr, 0), *t1 = cJSON_GetArrayItem(tr, 1);
    CHECK(t0 && num(t0, "number") == 0 && !strcmp(str(t0, "state"), "finished"));
    CHECK(t0 && !strcmp(str(t0, "run"), key_a) && num(t0, "value") == 0.85);
    CHECK(t0 && num(item(t0, "params"), "optimizer.adam.learning_rate") == 0.001);
    CHECK(t0 && !strcmp(str(item(t0, "params"), "data.batch_size"), "64"));
    CHECK(t1 && !strcmp(str(t1, "state"), "pruned") && num(t1, "resource") == 1);
    CHECK(t1 && cJSON_IsNull(item(t1, "run")));
    cJSON_Delete(j);

    j = get_json("/api/studies/nope", 404);
    CHECK(j && str(j, "error") && strstr(str(j, "error"), "nope"));
    cJSON_Delete(j);
    cJSON_Delete(get_json("/api/studies/..", 400));
    cJSON_Delete(get_json("/api/studies/a%2Fb", 400));
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(root, sizeof root, "/tmp/kiln-board-test-XXXXXX");
    if (!mkdtemp(root)) return 1;
    snprintf(runs_dir, sizeof runs_dir, "%s/runs", root);
    RUN(make_runs);
    kiln_board_config cfg = {.runs_dir = runs_dir, .port = 0, .threads = 2, .rescan_seconds = -1};
    board = kiln_board_start(&cfg);
    if (!board) {
        fprintf(stderr, "board did not start: %s\n", kiln_last_error());
        return 1;
    }
    port = kiln_board_port(board);
    CHECK(kiln_board_run_count(board) == 4);
    RUN(test_runs_list);
    RUN(test_runs_delta);
    RUN(test_metrics_incremental);
    RUN(test_bad_queries);
    RUN(test_details);
    RUN(test_stages);
    RUN(test_path_escapes);
    RUN(test_page);
    RUN(test_follow_live_run);
    RUN(test_bad_files);
    RUN(test_live_run_crashes);
    RUN(test_studies);
    kiln_board_stop(board);
    kiln_run_close(live);
    /* starting on a folder that is not there fails with a message */
    kiln_board_config none = {.runs_dir = "/nonexistent/runs"};
    CHECK(kiln_board_start(&none) == NULL && strstr(kiln_last_error(), "/nonexistent/runs"));
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    curl_global_cleanup();
    return kiln_test_summary();
}

/* runjson.c — run.json: the run's record in memory, its setters and getters, and its JSON form.
 *
 * run.json is an object with exactly these keys, in this order (cJSON's pretty printing):
 *   id, experiment, name, status, start_time, end_time, host, pid, kiln_version, seed,
 *   config_hash, command, message, epochs_completed, steps, final_metrics, best_metrics,
 *   best_step, checkpoint, data_skipped
 * Strings that are not set are null; metric maps are objects of name -> number (null for a value
 * that is not finite); best_step is null until set. The seed is a number up to 2^53 (every JSON
 * reader holds it exactly) and a decimal string above.
 *
 * Reading is strict about the types of the keys it knows (a wrong type is KILN_ERR_FORMAT naming
 * the key) and lenient about keys it does not know (ignored) or optional keys that are absent
 * (null / 0), so that a newer kiln's run.json still opens. id, experiment, name, status and
 * start_time are required.
 */
#include <cjson/cJSON.h>

#include "core/json.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "run/run_internal.h"

#define RUN_JSON_MAX (16u << 20)        /* bytes; a run.json is a few KiB */
#define EXACT_MAX    9007199254740992.0 /* 2^53: integers up to here are exact in a double */

static const char *const STATE_NAMES[] = {"running", "finished", "failed", "stopped", "pruned"};

const char *kiln_run_state_name(kiln_run_state s) {
    return (unsigned)s < 5 ? STATE_NAMES[s] : "?";
}

kiln_status kiln_run_set_string(char **dst, const char *s, const char *what) {
    char *copy = NULL;
    if (s && !(copy = strdup(s)))
        return kiln_error(KILN_ERR_NOMEM, "run: out of memory for %s", what);
    free(*dst);
    *dst = copy;
    return KILN_OK;
}

void kiln_run_record_init(kiln_rundir *run) {
    run->status = KILN_RUN_RUNNING;
    run->best_step = -1;
}

void kiln_run_record_free(kiln_rundir *run) {
    char **strs[] = {&run->id,      &run->experiment,   &run->name,
                     &run->host,    &run->kiln_version, &run->config_hash,
                     &run->command, &run->message,      &run->checkpoint};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) free(*strs[i]), *strs[i] = NULL;
    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < run->n_metrics[w]; i++) free(run->metrics[w][i].name);
        free(run->metrics[w]);
        run->metrics[w] = NULL, run->n_metrics[w] = run->cap_metrics[w] = 0;
    }
}

/* ---- getters and setters ---- */

kiln_run_info kiln_run_get_info(const kiln_rundir *run) {
    if (!run) return (kiln_run_info){.path = "", .id = "", .experiment = "", .name = ""};
    return (kiln_run_info){.path = run->path,
                           .id = run->id,
                           .experiment = run->experiment,
                           .name = run->name,
                           .status = run->status,
                           .start_time = run->start_time,
                           .end_time = run->end_time[0] ? run->end_time : NULL,
                           .host = run->host,
                           .pid = run->pid,
                           .kiln_version = run->kiln_version,
                           .has_seed = run->has_seed,
                           .seed = run->seed,
                           .config_hash = run->config_hash,
                           .command = run->command,
                           .message = run->message,
                           .epochs_completed = run->epochs_completed,
                           .steps = run->steps,
                           .best_step = run->best_step,
                           .checkpoint = run->checkpoint,
                           .data_skipped = run->data_skipped};
}

kiln_status kiln_run_set_status(kiln_rundir *run, kiln_run_state status, const char *message) {
    if (!run) return KILN_OK;
    if ((unsigned)status > KILN_RUN_PRUNED)
        return kiln_error(KILN_ERR_INVALID, "run %s: unknown status %d", run->id, (int)status);
    if (status == KILN_RUN_RUNNING) {
        kiln_status s = kiln_run_set_string(&run->message, message, "the message");
        if (s) return s;
        run->status = status;
        run->end_time[0] = 0;
        return KILN_OK;
    }
    if (run->status != KILN_RUN_RUNNING)
        return kiln_error(KILN_ERR_INVALID, "run %s: cannot mark it %s: it has already %s", run->id,
                          STATE_NAMES[status],
                          run->status == KILN_RUN_FINISHED ? "finished"
                          : run->status == KILN_RUN_FAILED ? "failed"
                          : run->status == KILN_RUN_PRUNED ? "been pruned"
                                                           : "stopped");
    kiln_status s = kiln_run_set_string(&run->message, message, "the message");
    if (s) return s;
    run->status = status;
    kiln_run_iso_time((long long)time(NULL), run->end_time);
    return KILN_OK;
}

void kiln_run_set_seed(kiln_rundir *run, uint64_t seed) {
    run->has_seed = 1, run->seed = seed;
}

kiln_status kiln_run_set_config_hash(kiln_rundir *run, const char *hash) {
    return kiln_run_set_string(&run->config_hash, hash, "the config hash");
}

/* Characters that never need quoting in a POSIX shell word. */
static int shell_safe(const char *a) {
    if (!*a) return 0;
    for (; *a; a++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-", *a))
            return 0;
    return 1;
}

kiln_status kiln_run_set_command(kiln_rundir *run, int argc, const char *const *argv) {
    if (argc < 0 || (argc > 0 && !argv))
        return kiln_error(KILN_ERR_INVALID, "run %s: command: bad argc %d or NULL argv", run->id,
                          argc);
    size_t len = 1;
    for (int i = 0; i < argc; i++) {
        if (!argv[i])
            return kiln_error(KILN_ERR_INVALID, "run %s: command: argv[%d] is NULL", run->id, i);
        len += 4 * strlen(argv[i]) + 3; /* worst case: every char a quote ('\'') plus '' and ' ' */
    }
    char *cmd = malloc(len), *p = cmd;
    if (!cmd) return kiln_error(KILN_ERR_NOMEM, "run %s: out of memory for the command", run->id);
    for (int i = 0; i < argc; i++) {
        if (i) *p++ = ' ';
        if (shell_safe(argv[i])) {
            size_t n = strlen(argv[i]);
            memcpy(p, argv[i], n), p += n;
            continue;
        }
        *p++ = '\'';
        for (const char *a = argv[i]; *a; a++) {
            if (*a == '\'')
                memcpy(p, "'\\''", 4), p += 4;
            else
                *p++ = *a;
        }
        *p++ = '\'';
    }
    *p = 0;
    free(run->command);
    run->command = cmd;
    return KILN_OK;
}

void kiln_run_set_progress(kiln_rundir *run, int64_t epochs_completed, int64_t steps) {
    if (!run) return;
    run->epochs_completed = epochs_completed, run->steps = steps;
}

void kiln_run_set_data_skipped(kiln_rundir *run, int64_t n) {
    if (!run) return;
    run->data_skipped = n < 0 ? 0 : n;
}

void kiln_run_set_best_step(kiln_rundir *run, int64_t step) {
    if (!run) return;
    run->best_step = step < 0 ? -1 : step;
}

static int find_metric(const kiln_rundir *run, kiln_run_which w, const char *name) {
    for (int i = 0; i < run->n_metrics[w]; i++)
        if (!strcmp(run->metrics[w][i].name, name)) return i;
    return -1;
}

kiln_status kiln_run_set_metric(kiln_rundir *run, kiln_run_which which, const char *name,
                                double value) {
    if (!run) return KILN_OK;
    if ((unsigned)which > KILN_RUN_BEST)
        return kiln_error(KILN_ERR_INVALID, "run %s: unknown metric map %d", run->id, (int)which);
    if (!name || !*name) return kiln_error(KILN_ERR_INVALID, "run %s: empty metric name", run->id);
    int i = find_metric(run, which, name);
    if (i >= 0) {
        run->metrics[which][i].value = value;
        return KILN_OK;
    }
    if (run->n_metrics[which] == run->cap_metrics[which]) {
        int cap = run->cap_metrics[which] ? 2 * run->cap_metrics[which] : 8;
        kiln_run_metric *m = realloc(run->metrics[which], (size_t)cap * sizeof *m);
        if (!m) return kiln_error(KILN_ERR_NOMEM, "run %s: out of memory for metrics", run->id);
        run->metrics[which] = m, run->cap_metrics[which] = cap;
    }
    char *copy = strdup(name);
    if (!copy) return kiln_error(KILN_ERR_NOMEM, "run %s: out of memory for metrics", run->id);
    run->metrics[which][run->n_metrics[which]++] = (kiln_run_metric){copy, value};
    return KILN_OK;
}

void kiln_run_clear_metrics(kiln_rundir *run, kiln_run_which which) {
    if ((unsigned)which > KILN_RUN_BEST) return;
    for (int i = 0; i < run->n_metrics[which]; i++) free(run->metrics[which][i].name);
    run->n_metrics[which] = 0;
}

kiln_status kiln_run_get_metric(const kiln_rundir *run, kiln_run_which which, const char *name,
                                double *value) {
    int i = (unsigned)which <= KILN_RUN_BEST && name ? find_metric(run, which, name) : -1;
    if (i < 0)
        return kiln_error(KILN_ERR_NOTFOUND, "run %s: no %s metric '%s'", run->id,
                          which == KILN_RUN_BEST ? "best" : "final", name ? name : "(null)");
    *value = run->metrics[which][i].value;
    return KILN_OK;
}

int kiln_run_metric_count(const kiln_rundir *run, kiln_run_which which) {
    return (unsigned)which <= KILN_RUN_BEST ? run->n_metrics[which] : 0;
}

const char *kiln_run_metric_at(const kiln_rundir *run, kiln_run_which which, int i, double *value) {
    if ((unsigned)which > KILN_RUN_BEST || i < 0 || i >= run->n_metrics[which]) return NULL;
    if (value) *value = run->metrics[which][i].value;
    return run->metrics[which][i].name;
}

/* ---- writing ---- */

/* Numbers go in as raw text: cJSON prints a double with 15 digits whenever that is within
 * DBL_EPSILON of it, which can be one ulp off (2^53 comes back as 2^53 - 2); this way every
 * double reads back exactly and integers are written as integers. */
static cJSON *str_or_null(const char *s) {
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}
static cJSON *num_or_null(double v) {
    char buf[40];
    kiln_run_format_number(buf, sizeof buf, v);
    return cJSON_CreateRaw(buf);
}
static cJSON *integer(long long v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", v);
    return cJSON_CreateRaw(buf);
}

static cJSON *seed_json(const kiln_rundir *run) {
    if (!run->has_seed) return cJSON_CreateNull();
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)run->seed);
    return run->seed <= (uint64_t)1 << 53 ? cJSON_CreateRaw(buf) : cJSON_CreateString(buf);
}

static cJSON *metrics_json(const kiln_rundir *run, kiln_run_which w) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && i < run->n_metrics[w]; i++)
        if (!cJSON_AddItemToObject(o, run->metrics[w][i].name,
                                   num_or_null(run->metrics[w][i].value))) {
            cJSON_Delete(o);
            return NULL;
        }
    return o;
}

/* run as pretty-printed JSON with a final newline (malloc'ed), or NULL when out of memory. */
static char *render(const kiln_rundir *run) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    struct {
        const char *key;
        cJSON *val;
    } kv[] = {
        {"id", str_or_null(run->id)},
        {"experiment", str_or_null(run->experiment)},
        {"name", str_or_null(run->name)},
        {"status", cJSON_CreateString(STATE_NAMES[run->status])},
        {"start_time", cJSON_CreateString(run->start_time)},
        {"end_time", str_or_null(run->end_time[0] ? run->end_time : NULL)},
        {"host", str_or_null(run->host)},
        {"pid", integer(run->pid)},
        {"kiln_version", str_or_null(run->kiln_version)},
        {"seed", seed_json(run)},
        {"config_hash", str_or_null(run->config_hash)},
        {"command", str_or_null(run->command)},
        {"message", str_or_null(run->message)},
        {"epochs_completed", integer(run->epochs_completed)},
        {"steps", integer(run->steps)},
        {"final_metrics", metrics_json(run, KILN_RUN_FINAL)},
        {"best_metrics", metrics_json(run, KILN_RUN_BEST)},
        {"best_step", run->best_step < 0 ? cJSON_CreateNull() : integer(run->best_step)},
        {"checkpoint", str_or_null(run->checkpoint)},
        {"data_skipped", integer(run->data_skipped)},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++) {
        if (ok && kv[i].val && cJSON_AddItemToObject(o, kv[i].key, kv[i].val)) continue;
        ok = 0;
        cJSON_Delete(kv[i].val); /* NULL-safe; items already added go with o */
    }
    char *text = ok ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text) return NULL;
    size_t n = strlen(text);
    char *out = malloc(n + 2);
    if (out) memcpy(out, text, n), out[n] = '\n', out[n + 1] = 0;
    cJSON_free(text);
    return out;
}

kiln_status kiln_run_save(kiln_rundir *run) {
    if (!run) return KILN_OK;
    kiln_status s = kiln_run_need_write(run, "save");
    if (s) return s;
    char path[4096];
    if ((s = kiln_run_join(path, sizeof path, run->path, "run.json"))) return s;
    char *text = render(run);
    if (!text) return kiln_error(KILN_ERR_NOMEM, "run %s: out of memory writing %s", run->id, path);
    s = kiln_file_write_atomic(path, text, strlen(text));
    free(text);
    if (s) {
        kiln_error_prefix("run %s", run->id);
        return s;
    }
    if (run->follower) run->follower->saved(run->follower_ctx, run);
    return KILN_OK;
}

/* ---- reading ---- */


typedef struct {
    const char *file;
    const cJSON *root;
} reader;

static kiln_status bad_type(const reader *r, const char *key, const char *want, const cJSON *v) {
    return kiln_error(KILN_ERR_FORMAT, "%s: \"%s\" must be %s, not %s", r->file, key, want,
                      kiln_json_type(v));
}

/* A string or null (absent = null unless required). */
static kiln_status get_str(const reader *r, const char *key, int required, char **dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v && required) return kiln_error(KILN_ERR_FORMAT, "%s: \"%s\" is missing", r->file, key);
    if (!v || cJSON_IsNull(v)) return required ? bad_type(r, key, "a string", v) : KILN_OK;
    if (!cJSON_IsString(v)) return bad_type(r, key, required ? "a string" : "a string or null", v);
    return kiln_run_set_string(dst, v->valuestring, key);
}

/* An integer in [lo, 2^53] (absent = dflt; null = dflt when null_ok). */
static kiln_status get_int(const reader *r, const char *key, int null_ok, int64_t lo, int64_t dflt,
                           int64_t *dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    *dst = dflt;
    if (!v || (null_ok && cJSON_IsNull(v))) return KILN_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > EXACT_MAX)
        return cJSON_IsNumber(v)
                   ? kiln_error(KILN_ERR_FORMAT, "%s: \"%s\" must be an integer >= %lld, not %.17g",
                                r->file, key, (long long)lo, v->valuedouble)
                   : bad_type(r, key, null_ok ? "an integer or null" : "an integer", v);
    *dst = (int64_t)v->valuedouble;
    return KILN_OK;
}

static kiln_status get_seed(const reader *r, kiln_rundir *run) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, "seed");
    run->has_seed = 0;
    if (!v || cJSON_IsNull(v)) return KILN_OK;
    if (cJSON_IsString(v)) {
        const char *t = v->valuestring;
        char *end;
        unsigned long long x = strtoull(t, &end, 10);
        if (*t < '0' || *t > '9' || *end || (x == ~0ull && strcmp(t, "18446744073709551615")))
            return kiln_error(KILN_ERR_FORMAT,
                              "%s: \"seed\" \"%s\" is not an unsigned 64-bit integer", r->file, t);
        run->has_seed = 1, run->seed = x;
        return KILN_OK;
    }
    int64_t x;
    kiln_status s = get_int(r, "seed", 0, 0, 0, &x);
    if (s) return s;
    run->has_seed = 1, run->seed = (uint64_t)x;
    return KILN_OK;
}

static kiln_status get_metrics(const reader *r, const char *key, kiln_rundir *run,
                               kiln_run_which w) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!o || cJSON_IsNull(o)) return KILN_OK;
    if (!cJSON_IsObject(o)) return bad_type(r, key, "an object", o);
    for (const cJSON *m = o->child; m; m = m->next) {
        if (!cJSON_IsNumber(m) && !cJSON_IsNull(m))
            return kiln_error(KILN_ERR_FORMAT, "%s: \"%s\".\"%s\" must be a number or null, not %s",
                              r->file, key, m->string, kiln_json_type(m));
        kiln_status s =
            kiln_run_set_metric(run, w, m->string, cJSON_IsNull(m) ? NAN : m->valuedouble);
        if (s) return s;
    }
    return KILN_OK;
}

static kiln_status get_time(const reader *r, const char *key, int required, char out[24]) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    out[0] = 0;
    if (!required && (!v || cJSON_IsNull(v))) return KILN_OK;
    if (!v) return kiln_error(KILN_ERR_FORMAT, "%s: \"%s\" is missing", r->file, key);
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 23)
        return kiln_error(KILN_ERR_FORMAT, "%s: \"%s\" must be an ISO 8601 time, not %s", r->file,
                          key, cJSON_IsString(v) ? v->valuestring : kiln_json_type(v));
    strcpy(out, v->valuestring);
    return KILN_OK;
}

static kiln_status parse_record(const reader *r, kiln_rundir *run) {
    if (!cJSON_IsObject(r->root))
        return kiln_error(KILN_ERR_FORMAT, "%s: must hold an object, not %s", r->file,
                          kiln_json_type(r->root));
    kiln_status s;
    if ((s = get_str(r, "id", 1, &run->id)) ||
        (s = get_str(r, "experiment", 1, &run->experiment)) ||
        (s = get_str(r, "name", 1, &run->name)))
        return s;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->root, "status");
    if (!cJSON_IsString(st)) return bad_type(r, "status", "a string", st);
    int k = 0;
    while (k < 5 && strcmp(st->valuestring, STATE_NAMES[k])) k++;
    if (k == 5)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: \"status\" is \"%s\", not running, finished, failed, stopped or pruned",
                          r->file, st->valuestring);
    run->status = (kiln_run_state)k;
    int64_t pid;
    if ((s = get_time(r, "start_time", 1, run->start_time)) ||
        (s = get_time(r, "end_time", 0, run->end_time)) ||
        (s = get_str(r, "host", 0, &run->host)) || (s = get_int(r, "pid", 0, 0, 0, &pid)) ||
        (s = get_str(r, "kiln_version", 0, &run->kiln_version)) || (s = get_seed(r, run)) ||
        (s = get_str(r, "config_hash", 0, &run->config_hash)) ||
        (s = get_str(r, "command", 0, &run->command)) ||
        (s = get_str(r, "message", 0, &run->message)) ||
        (s = get_int(r, "epochs_completed", 0, 0, 0, &run->epochs_completed)) ||
        (s = get_int(r, "steps", 0, 0, 0, &run->steps)) ||
        (s = get_metrics(r, "final_metrics", run, KILN_RUN_FINAL)) ||
        (s = get_metrics(r, "best_metrics", run, KILN_RUN_BEST)) ||
        (s = get_int(r, "best_step", 1, 0, -1, &run->best_step)) ||
        (s = get_str(r, "checkpoint", 0, &run->checkpoint)) ||
        (s = get_int(r, "data_skipped", 0, 0, 0, &run->data_skipped)))
        return s;
    run->pid = (long)pid;
    return KILN_OK;
}

kiln_status kiln_run_record_load(kiln_rundir *run) {
    char path[4096];
    kiln_status s = kiln_run_join(path, sizeof path, run->path, "run.json");
    if (s) return s;
    void *buf;
    size_t len;
    if ((s = kiln_file_read_all(path, &buf, &len, RUN_JSON_MAX))) {
        if (s == KILN_ERR_NOTFOUND)
            kiln_error(KILN_ERR_NOTFOUND,
                       "run %s: no run.json (not a run folder, or one still being created)",
                       run->path);
        return s;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 1);
    if (!root || memchr(buf, 0, len)) {
        size_t at = end ? (size_t)(end - (const char *)buf) : 0;
        int line = 1;
        for (size_t i = 0; i < at && i < len; i++) line += ((const char *)buf)[i] == '\n';
        cJSON_Delete(root);
        kiln_free(buf);
        return kiln_error(KILN_ERR_FORMAT, "%s:%d: not valid JSON", path, line);
    }
    reader r = {path, root};
    s = parse_record(&r, run);
    cJSON_Delete(root);
    kiln_free(buf);
    return s;
}

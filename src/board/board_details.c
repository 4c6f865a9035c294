/* board_details.c — everything about one run, for the board's details panel:
 *   run.json (as the file has it), config.yaml (text, and flattened into params),
 *   checkpoints/step-<N>/ (size, time, which one latest names), export/<version>/ (size, time,
 *   and from model.json: when it was made, from which checkpoint, its input and output
 *   signature), the model summary (summary.txt, written by the trainer: every layer, its output
 *   shape, parameter count, trainable or frozen; one section per stage), the run's stages (from
 *   its metric points, given by the caller) and the end of log.txt.
 * It only reads the folder, with bounded reads, and any part it cannot read becomes null (with
 * a "<part>_error" message) instead of failing the whole answer: a run being written, or a
 * folder a user tidied by hand, still shows what it has.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln/export.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "board/board_internal.h"
#include "run/run_internal.h"

#define RUN_JSON_MAX   (16u << 20)
#define CONFIG_MAX     (1u << 20) /* config.yaml text sent; longer is cut (config_truncated) */
#define MODEL_JSON_MAX (16u << 20)
#define LOG_TAIL       (16 * 1024) /* bytes from the end of log.txt */
#define SUMMARY_MAX    (1u << 20)  /* summary.txt text sent; longer is cut (summary_truncated) */

/* A JSON file re-printed compactly as the value of a member, or null and "<what>_error". */
static void put_json_file(kiln_sbuf *s, const char *path, const char *what, size_t max) {
    void *text = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    char *out = NULL;
    kiln_status st = kiln_file_read_all(path, &text, &len, max);
    if (!st && !(j = cJSON_ParseWithLength(text, len)))
        st = kiln_error(KILN_ERR_FORMAT, "%s: not valid JSON", path);
    if (j) out = cJSON_PrintUnformatted(j);
    kiln_sbuf_printf(s, "\"%s\":", what);
    kiln_sbuf_puts(s, out ? out : "null");
    if (!out) {
        kiln_sbuf_printf(s, ",\"%s_error\":", what);
        kiln_sbuf_json_str(s, st ? kiln_last_error() : "out of memory");
        kiln_error_clear();
    }
    free(out);
    cJSON_Delete(j);
    kiln_free(text);
}

static void put_config(kiln_sbuf *s, const char *dir) {
    char path[4096];
    void *text = NULL;
    size_t len = 0;
    if (kiln_run_join(path, sizeof path, dir, "config.yaml")) return;
    kiln_status st = kiln_file_read_all(path, &text, &len, 16u << 20);
    kiln_sbuf_puts(s, ",\"config\":");
    if (st) {
        kiln_sbuf_puts(s, "null,\"config_error\":");
        kiln_sbuf_json_str(s, kiln_last_error());
        kiln_error_clear();
    } else {
        kiln_sbuf_json_strn(s, text, len < CONFIG_MAX ? len : CONFIG_MAX);
        kiln_sbuf_printf(s, ",\"config_truncated\":%s", len > CONFIG_MAX ? "true" : "false");
    }
    kiln_free(text);
    board_kv *kv = NULL;
    int n = 0;
    kiln_sbuf_puts(s, ",\"params\":{");
    if (!st && !board_params_read(path, &kv, &n))
        for (int i = 0; i < n; i++) {
            if (i) kiln_sbuf_putc(s, ',');
            kiln_sbuf_json_str(s, kv[i].key);
            kiln_sbuf_putc(s, ':');
            kiln_sbuf_json_str(s, kv[i].value);
        }
    kiln_error_clear();
    board_params_free(kv, n);
    kiln_sbuf_putc(s, '}');
}

/* summary.txt as text; null when the run has none (runs from before it, or not trained yet), and
 * "summary_error" when it is there but cannot be read. */
static void put_summary(kiln_sbuf *s, const char *dir) {
    char path[4096];
    void *text = NULL;
    size_t len = 0;
    if (kiln_run_join(path, sizeof path, dir, "summary.txt")) return;
    kiln_sbuf_puts(s, ",\"summary\":");
    kiln_status st = kiln_file_read_all(path, &text, &len, 16u << 20);
    if (st == KILN_ERR_NOTFOUND) {
        kiln_sbuf_puts(s, "null");
    } else if (st) {
        kiln_sbuf_puts(s, "null,\"summary_error\":");
        kiln_sbuf_json_str(s, kiln_last_error());
    } else {
        kiln_sbuf_json_strn(s, text, len < SUMMARY_MAX ? len : SUMMARY_MAX);
        kiln_sbuf_printf(s, ",\"summary_truncated\":%s", len > SUMMARY_MAX ? "true" : "false");
    }
    kiln_error_clear();
    kiln_free(text);
}

/* Bytes and newest modification time of the files directly in a folder. */
static void folder_size(const char *dir, int64_t *bytes, int64_t *mtime_ns) {
    *bytes = 0, *mtime_ns = 0;
    DIR *d = opendir(dir);
    if (!d) return;
    struct stat st;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) || !S_ISREG(st.st_mode))
            continue;
        *bytes += st.st_size;
        int64_t t = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if (t > *mtime_ns) *mtime_ns = t;
    }
    closedir(d);
}

static int step_of(const char *name, int64_t *step) {
    if (strncmp(name, "step-", 5) || name[5] < '0' || name[5] > '9') return 0;
    char *end;
    long long v = strtoll(name + 5, &end, 10);
    if (*end || v < 0) return 0;
    *step = v;
    return 1;
}

static int i64_cmp(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void put_checkpoints(kiln_sbuf *s, const char *dir) {
    char base[4096], path[4200], latest[64] = "";
    if (kiln_run_join(base, sizeof base, dir, "checkpoints")) return;
    snprintf(path, sizeof path, "%s/latest", base);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(latest, sizeof latest, f)) latest[0] = 0;
        latest[strcspn(latest, "\r\n")] = 0;
        fclose(f);
    }
    int64_t *steps = NULL;
    int n = 0, cap = 0;
    DIR *d = opendir(base);
    struct stat st;
    for (struct dirent *e; d && (e = readdir(d));) {
        int64_t step;
        if (!step_of(e->d_name, &step) || fstatat(dirfd(d), e->d_name, &st, 0) ||
            !S_ISDIR(st.st_mode))
            continue;
        if (n == cap) {
            int64_t *more = realloc(steps, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *more);
            if (!more) break;
            steps = more;
        }
        steps[n++] = step;
    }
    if (d) closedir(d);
    if (n) qsort(steps, (size_t)n, sizeof *steps, i64_cmp);
    kiln_sbuf_puts(s, ",\"checkpoints\":[");
    for (int i = 0; i < n; i++) {
        char name[32];
        int64_t bytes, mtime;
        snprintf(name, sizeof name, "step-%lld", (long long)steps[i]);
        snprintf(path, sizeof path, "%s/%s", base, name);
        folder_size(path, &bytes, &mtime);
        kiln_sbuf_printf(s,
                         "%s{\"name\":\"%s\",\"step\":%lld,\"bytes\":%lld,\"time\":", i ? "," : "",
                         name, (long long)steps[i], (long long)bytes);
        board_json_time(s, mtime);
        kiln_sbuf_printf(s, ",\"latest\":%s}", strcmp(name, latest) ? "false" : "true");
    }
    free(steps);
    kiln_sbuf_puts(s, "],\"latest_checkpoint\":");
    if (latest[0])
        kiln_sbuf_json_str(s, latest);
    else
        kiln_sbuf_puts(s, "null");
}

/* A member of model.json re-printed, or null. */
static void put_member(kiln_sbuf *s, const cJSON *j, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    char *out = v ? cJSON_PrintUnformatted(v) : NULL;
    kiln_sbuf_printf(s, ",\"%s\":", name);
    kiln_sbuf_puts(s, out ? out : "null");
    free(out);
}

static void put_exports(kiln_sbuf *s, const char *dir) {
    char base[4096], path[4200];
    if (kiln_run_join(base, sizeof base, dir, "export")) return;
    int64_t *versions = NULL;
    int n = 0;
    if (kiln_export_list_versions(base, &versions, &n)) kiln_error_clear(), n = 0;
    kiln_sbuf_puts(s, ",\"exports\":[");
    for (int i = 0; i < n; i++) {
        int64_t bytes, mtime;
        snprintf(path, sizeof path, "%s/%lld", base, (long long)versions[i]);
        folder_size(path, &bytes, &mtime);
        kiln_sbuf_printf(s, "%s{\"version\":%lld,\"path\":", i ? "," : "", (long long)versions[i]);
        kiln_sbuf_json_str(s, path);
        kiln_sbuf_printf(s, ",\"bytes\":%lld,\"time\":", (long long)bytes);
        board_json_time(s, mtime);
        void *text = NULL;
        size_t len = 0;
        cJSON *j = NULL;
        snprintf(path, sizeof path, "%s/%lld/model.json", base, (long long)versions[i]);
        if (!kiln_file_read_all(path, &text, &len, MODEL_JSON_MAX))
            j = cJSON_ParseWithLength(text, len);
        kiln_error_clear();
        kiln_free(text);
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(j, "source");
        const cJSON *ck = cJSON_GetObjectItemCaseSensitive(src, "checkpoint");
        const cJSON *created = cJSON_GetObjectItemCaseSensitive(j, "created");
        kiln_sbuf_puts(s, ",\"created\":");
        if (cJSON_IsString(created))
            kiln_sbuf_json_str(s, created->valuestring);
        else
            kiln_sbuf_puts(s, "null");
        kiln_sbuf_puts(s, ",\"checkpoint\":");
        if (cJSON_IsString(ck))
            kiln_sbuf_json_str(s, ck->valuestring);
        else
            kiln_sbuf_puts(s, "null");
        put_member(s, j, "inputs");
        put_member(s, j, "outputs");
        kiln_sbuf_putc(s, '}');
        cJSON_Delete(j);
    }
    kiln_free(versions);
    kiln_sbuf_putc(s, ']');
}

static void put_log_tail(kiln_sbuf *s, const char *dir) {
    char path[4096];
    kiln_sbuf_puts(s, ",\"log_tail\":");
    FILE *f = kiln_run_join(path, sizeof path, dir, "log.txt") ? NULL : fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        if (f) fclose(f);
        kiln_sbuf_puts(s, "null");
        return;
    }
    char *buf = malloc(LOG_TAIL);
    long from = st.st_size > LOG_TAIL ? (long)(st.st_size - LOG_TAIL) : 0;
    size_t n = buf && fseek(f, from, SEEK_SET) == 0 ? fread(buf, 1, LOG_TAIL, f) : 0;
    fclose(f);
    size_t at = 0;
    if (from > 0) /* start at a whole line */
        while (at < n && buf[at++] != '\n') {
        }
    kiln_sbuf_json_strn(s, buf ? buf + at : "", n - at);
    free(buf);
}

void board_render_details(const char *key, const char *dir, const char *status, int crashed,
                          const char *stages, kiln_sbuf *s) {
    char path[4096];
    kiln_sbuf_puts(s, "{\"key\":");
    kiln_sbuf_json_str(s, key);
    kiln_sbuf_puts(s, ",\"dir\":");
    kiln_sbuf_json_str(s, dir);
    kiln_sbuf_printf(s, ",\"status\":\"%s\",\"crashed\":%s,", status, crashed ? "true" : "false");
    if (kiln_run_join(path, sizeof path, dir, "run.json"))
        kiln_sbuf_puts(s, "\"run\":null");
    else
        put_json_file(s, path, "run", RUN_JSON_MAX);
    put_config(s, dir);
    put_checkpoints(s, dir);
    put_exports(s, dir);
    put_summary(s, dir);
    if (stages) kiln_sbuf_puts(s, stages);
    board_put_explain(s, dir); /* board_explain.c */
    put_log_tail(s, dir);
    kiln_sbuf_putc(s, '}');
}

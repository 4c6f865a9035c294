/* jsonl.c — metrics.jsonl: appending points and reading them back.
 *
 * Writing formats the whole line on the stack, with no allocation, and appends it with one
 * writev() (run.c: kiln_run_append_line). Numbers are written with the fewest digits that read
 * back to the same double (15, 16 or 17 significant digits, as cJSON does), wall_time to the
 * microsecond; values that are not finite become null. The C library's "%g" and strtod follow
 * LC_NUMERIC, which kiln leaves at "C" (a program that changes it must set it back first).
 *
 * Reading goes through the file with one 64 KiB buffer: each line is parsed by cJSON and checked
 * for the point's keys and types. A line longer than the buffer is not a point kiln wrote and is
 * skipped. The last line counts only with its newline, and *offset stops before it, so a reader
 * following a live run rereads it once it is complete.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "run/run_internal.h"

#define NAME_MAX_BYTES 200
#define READ_BUF       (64 * 1024) /* also the longest line read */

static const char *const SPLIT_NAMES[] = {"train", "validation", "test"};

const char *kiln_split_name(kiln_split s) {
    return (unsigned)s < 3 ? SPLIT_NAMES[s] : "?";
}

int kiln_run_format_number(char *out, size_t cap, double v) {
    if (!isfinite(v)) return snprintf(out, cap, "null");
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    return n;
}

/* s as a JSON string body (no quotes): '"', '\\' and control characters escaped. */
static size_t put_escaped(char *out, const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            out[n++] = '\\', out[n++] = (char)*p;
        else if (*p < 0x20)
            n += (size_t)sprintf(out + n, "\\u%04x", *p);
        else
            out[n++] = (char)*p;
    }
    return n;
}

kiln_status kiln_run_log_metric(kiln_rundir *run, int64_t step, double epoch, kiln_split split,
                                const char *name, double value) {
    return kiln_run_log_metric_at(run, step, epoch, split, name, value, -1);
}

kiln_status kiln_run_log_metric_at(kiln_rundir *run, int64_t step, double epoch, kiln_split split,
                                   const char *name, double value, double wall_time) {
    if (!run) return KILN_OK; /* a process that does not write the run (a rank other than 0) */
    kiln_status s = kiln_run_need_write(run, "log_metric");
    if (s) return s;
    if ((unsigned)split > KILN_SPLIT_TEST)
        return kiln_error(KILN_ERR_INVALID, "run %s: log_metric: unknown split %d", run->id,
                          (int)split);
    size_t nlen = name ? strlen(name) : 0;
    if (nlen == 0 || nlen > NAME_MAX_BYTES)
        return kiln_error(KILN_ERR_INVALID,
                          "run %s: log_metric: metric name must be 1 to %d bytes, got %zu", run->id,
                          NAME_MAX_BYTES, nlen);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (wall_time >= 0 && wall_time < 1e12) { /* the caller's time, to the microsecond */
        int64_t us = (int64_t)llround(wall_time * 1e6);
        ts.tv_sec = (time_t)(us / 1000000), ts.tv_nsec = (long)(us % 1000000) * 1000;
    }
    /* 6 bytes per escaped name byte + 3 numbers of <= 24 chars + the keys: well under 2 KiB. */
    char line[2048];
    size_t n = (size_t)snprintf(line, sizeof line, "{\"step\":%lld,\"epoch\":", (long long)step);
    n += (size_t)kiln_run_format_number(line + n, sizeof line - n, epoch);
    n += (size_t)snprintf(line + n, sizeof line - n,
                          ",\"wall_time\":%lld.%06ld,\"split\":\"%s\",\"name\":\"",
                          (long long)ts.tv_sec, ts.tv_nsec / 1000, SPLIT_NAMES[split]);
    n += put_escaped(line + n, name);
    n += (size_t)snprintf(line + n, sizeof line - n, "\",\"value\":");
    n += (size_t)kiln_run_format_number(line + n, sizeof line - n, value);
    if (run->stage > 0)
        n += (size_t)snprintf(line + n, sizeof line - n, ",\"stage\":%d", run->stage);
    n += (size_t)snprintf(line + n, sizeof line - n, "}\n");
    s = kiln_run_append_line(run->metrics_fd, &run->metrics_torn, line, n, "metrics.jsonl");
    if (s) {
        kiln_error_prefix("run %s", run->id);
        return s;
    }
    if (run->follower) /* the point as a reader of the line gets it back (wall_time to the us) */
        run->follower->point(run->follower_ctx, run, step,
                             (double)ts.tv_sec + (double)(ts.tv_nsec / 1000) * 1e-6, split,
                             name, value, (int64_t)lseek(run->metrics_fd, 0, SEEK_CUR));
    return KILN_OK;
}

/* ---- reading ---- */

static int get_number(const cJSON *o, const char *key, int null_ok, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (null_ok && cJSON_IsNull(x)) return *v = NAN, 1;
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valuedouble;
    return 1;
}

/* Parses one line (NUL-terminated at len) into p: 1 a point, 0 blank, -1 not a point. *json gets
 * the tree that p->name points into (the caller frees it). */
static int parse_point(char *line, size_t len, kiln_metric_point *p, cJSON **json) {
    *json = NULL;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) i++;
    if (i == len) return 0;
    if (memchr(line, 0, len)) return -1;
    cJSON *o = cJSON_ParseWithOpts(line, NULL, 1);
    *json = o;
    if (!cJSON_IsObject(o)) return -1;
    double step;
    const cJSON *split = cJSON_GetObjectItemCaseSensitive(o, "split");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!get_number(o, "step", 0, &step) || step != floor(step) ||
        fabs(step) > 9007199254740992.0 || !get_number(o, "epoch", 1, &p->epoch) ||
        !get_number(o, "wall_time", 0, &p->wall_time) || !get_number(o, "value", 1, &p->value) ||
        !cJSON_IsString(split) || !cJSON_IsString(name) || !name->valuestring[0])
        return -1;
    int k = 0;
    while (k < 3 && strcmp(split->valuestring, SPLIT_NAMES[k])) k++;
    if (k == 3) return -1;
    /* "stage" is optional; when there, a whole number from 1 to INT_MAX */
    const cJSON *stage = cJSON_GetObjectItemCaseSensitive(o, "stage");
    p->stage = 0;
    if (stage) {
        if (!cJSON_IsNumber(stage) || stage->valuedouble != floor(stage->valuedouble) ||
            stage->valuedouble < 1 || stage->valuedouble > INT_MAX)
            return -1;
        p->stage = (int)stage->valuedouble;
    }
    p->step = (int64_t)step;
    p->split = (kiln_split)k;
    p->name = name->valuestring;
    return 1;
}

kiln_status kiln_run_read_metrics(const char *path, int64_t *offset, kiln_metric_fn fn, void *ctx,
                                  int64_t *skipped) {
    if (skipped) *skipped = 0;
    if (!path || !fn) return kiln_error(KILN_ERR_INVALID, "read metrics: NULL path or callback");
    int64_t line_start = offset ? *offset : 0; /* file offset of buf[0]'s line */
    if (line_start < 0)
        return kiln_error(KILN_ERR_INVALID, "read metrics %s: negative offset %lld", path,
                          (long long)line_start);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return kiln_error(e == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "read metrics %s: %s",
                          path, strerror(e));
    }
    char *buf = malloc(READ_BUF + 1);
    kiln_status s = KILN_OK;
    if (!buf)
        s = kiln_error(KILN_ERR_NOMEM, "read metrics %s: out of memory", path);
    else if (lseek(fd, (off_t)line_start, SEEK_SET) < 0)
        s = kiln_error(KILN_ERR_IO, "read metrics %s: cannot seek to %lld: %s", path,
                       (long long)line_start, strerror(errno));
    size_t have = 0;     /* bytes in buf, all of the current line so far */
    int64_t dropped = 0; /* bytes of the current line dropped because it outgrew buf */
    int stop = 0;
    int64_t bad = 0;
    while (!s && !stop) {
        ssize_t r = read(fd, buf + have, READ_BUF - have);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            s = kiln_error(KILN_ERR_IO, "read metrics %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break; /* what is left in buf has no newline yet */
        size_t end = have + (size_t)r, i = 0;
        for (char *nl; !stop && (nl = memchr(buf + i, '\n', end - i));) {
            size_t len = (size_t)(nl - (buf + i));
            if (dropped) {
                bad++;
            } else {
                *nl = 0;
                kiln_metric_point p;
                cJSON *json;
                int k = parse_point(buf + i, len, &p, &json);
                if (k > 0)
                    stop = fn(&p, ctx) != 0;
                else
                    bad += k < 0;
                cJSON_Delete(json);
            }
            i += len + 1;
            line_start += dropped + (int64_t)len + 1;
            dropped = 0;
        }
        have = end - i;
        memmove(buf, buf + i, have);
        if (have == READ_BUF) dropped += (int64_t)have, have = 0;
    }
    free(buf);
    close(fd);
    if (offset && !s) *offset = line_start;
    if (skipped) *skipped = bad;
    return s;
}

void kiln_run_set_stage(kiln_rundir *run, int stage) {
    if (run) run->stage = stage > 0 ? stage : 0;
}

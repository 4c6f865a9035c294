/* src/run/ — the run folder a training run leaves: run.json (runjson.c), metrics.jsonl
 * (jsonl.c), log.txt, the checkpoint folders (checkpoints.c) and their state.json
 * (train_state.c), and exporting one of its checkpoints (export_run.c). It sits above
 * src/model/, whose graph building and export it uses, and knows nothing above it: the registry
 * follows a run through kiln_run_follower (kiln/run.h). Layers: docs/architecture.md.
 *
 * run.c — the run folder: naming and creating it, opening it, its writer's lock, finding the
 * newest one, and log.txt.
 *
 * Claiming a name: mkdir(<experiment>/<name>-<stamp>) and on EEXIST the same with -2, -3, ...
 * mkdir is atomic, so two processes can never claim the same folder, whatever their timing. Once
 * claimed, the folder is filled (checkpoints/, metrics.jsonl, log.txt, run.json); if any of that
 * fails the folder is removed again, so a failed create leaves nothing behind.
 *
 * The writer's lock is a flock on the run folder itself (an fd held open for the run's lifetime):
 * the kernel drops it when the process dies, however it dies, so "run.json says running but
 * nobody holds the lock" is a reliable sign of a crash, and a stale lock is impossible. Where the
 * file system has no flock (some network file systems answer ENOLCK) the run goes on unlocked.
 *
 * Appends (log.txt here, metrics.jsonl in jsonl.c) are one writev() per line on an O_APPEND fd:
 * the kernel places the whole line at the end of the file under the inode lock, so lines from
 * different threads or processes never interleave, and the line's newline is its last byte, so a
 * reader can tell a complete line from one still being copied.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "kiln/fileio.h"
#include "kiln/version.h"
#include "run/run_internal.h"

#define MAX_CLASH    100000 /* -n suffixes tried before giving up */
#define RMTREE_DEPTH 32

/* ---- small helpers shared with jsonl.c and checkpoints.c ---- */

kiln_status kiln_run_join(char *out, size_t cap, const char *a, const char *b) {
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return kiln_error(KILN_ERR_INVALID, "run: path %s/%s is longer than %zu bytes", a, b,
                          cap - 1);
    return KILN_OK;
}

kiln_status kiln_run_need_write(const kiln_rundir *run, const char *op) {
    if (run && run->writable) return KILN_OK;
    if (!run) return kiln_error(KILN_ERR_INVALID, "run: %s: NULL run", op);
    return kiln_error(KILN_ERR_INVALID, "run %s: %s: the run was opened for reading", run->path,
                      op);
}

void kiln_run_iso_time(long long unix_seconds, char out[24]) {
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

kiln_status kiln_run_open_append(const char *path, int *fd, int *torn) {
    *torn = 0;
    *fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (*fd < 0) return kiln_error(KILN_ERR_IO, "run: cannot open %s: %s", path, strerror(errno));
    struct stat st;
    char last = '\n';
    if (fstat(*fd, &st) != 0 || (st.st_size > 0 && pread(*fd, &last, 1, st.st_size - 1) != 1)) {
        int e = errno;
        close(*fd);
        *fd = -1;
        return kiln_error(KILN_ERR_IO, "run: cannot read the end of %s: %s", path, strerror(e));
    }
    *torn = last != '\n';
    return KILN_OK;
}

kiln_status kiln_run_append_line(int fd, int *torn, const char *line, size_t len,
                                 const char *what) {
    struct iovec iov[2] = {{"\n", 1}, {(void *)line, len}};
    int first = *torn ? 0 : 1;
    size_t total = len + (*torn ? 1 : 0);
    ssize_t w;
    do w = writev(fd, iov + first, 2 - first);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)total) {
        *torn = 0;
        return KILN_OK;
    }
    int e = w < 0 ? errno : ENOSPC; /* a short write to a regular file: no room */
    if (w > 0) *torn = 1;
    return kiln_error(KILN_ERR_IO, "run: cannot append to %s: %s", what,
                      e == ENOSPC || e == EDQUOT ? "disk full" : strerror(e));
}

static int rmtree_at(int dirfd, const char *name, int depth) {
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 0;
    if (errno != EISDIR && errno != EPERM) return -1; /* Linux says EISDIR, POSIX allows EPERM */
    int why = errno;
    if (depth >= RMTREE_DEPTH) return errno = ELOOP, -1;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOTDIR) errno = why; /* a file we may not remove */
        return errno == ENOENT ? 0 : -1;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    /* Removing entries while reading the folder may make readdir skip some, so go over it again
     * until the folder itself can go (or something in it cannot). */
    int rc = -1, e = 0;
    for (int pass = 0; pass < 8; pass++) {
        rewinddir(d);
        int failed = 0;
        for (struct dirent *ent; !failed && (ent = readdir(d));)
            if (strcmp(ent->d_name, ".") && strcmp(ent->d_name, ".."))
                failed = rmtree_at(fd, ent->d_name, depth + 1) != 0;
        if (failed) break;
        if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT) {
            rc = 0;
            break;
        }
        if (errno != ENOTEMPTY && errno != EEXIST) break;
    }
    e = errno;
    closedir(d);
    errno = e;
    return rc;
}

int kiln_run_rmtree(int dirfd, const char *name) {
    return rmtree_at(dirfd, name, 0);
}

/* ---- names ---- */

void kiln_run_sanitize(const char *in, char out[KILN_RUN_NAME_MAX + 1]) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)(in ? in : "");
         *p && n < KILN_RUN_NAME_MAX; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.') {
            out[n++] = (char)c;
            continue;
        }
        out[n++] = '_';
        if (c >= 0xC0) /* a UTF-8 lead byte: its continuation bytes go with it */
            while ((p[1] & 0xC0) == 0x80) p++;
    }
    if (n == 0) out[n++] = '_';
    if (out[0] == '.') out[0] = '_';
    out[n] = 0;
}

/* The folder name's timestamp "YYYYmmdd-HHMMSS" at id + len - 15, preceded by '-' and a name. */
static int stamp_at_end(const char *id, size_t len) {
    if (len < 17 || id[len - 16] != '-' || id[len - 7] != '-') return 0;
    for (size_t i = len - 15; i < len; i++)
        if (i != len - 7 && (id[i] < '0' || id[i] > '9')) return 0;
    return 1;
}

/* Parses "<name>-<YYYYmmdd-HHMMSS>[-n]": the stamp (15 chars + NUL) and n (1 when absent). */
static int parse_run_id(const char *id, char stamp[16], long *n) {
    size_t len = strlen(id);
    *n = 1;
    if (!stamp_at_end(id, len)) {
        const char *dash = strrchr(id, '-');
        if (!dash || dash[1] < '1' || dash[1] > '9' || strlen(dash + 1) > 9) return 0;
        for (const char *p = dash + 1; *p; p++)
            if (*p < '0' || *p > '9') return 0;
        *n = strtol(dash + 1, NULL, 10);
        len = (size_t)(dash - id);
        if (*n < 2 || !stamp_at_end(id, len)) return 0;
    }
    memcpy(stamp, id + len - 15, 15);
    stamp[15] = 0;
    return 1;
}

/* ---- creating and opening ---- */

static void strip_slashes(char *p) {
    for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--) p[n - 1] = 0;
}

static kiln_rundir *new_run(const char *path) {
    kiln_rundir *run = calloc(1, sizeof *run);
    if (!run || !(run->path = strdup(path))) {
        free(run);
        kiln_error(KILN_ERR_NOMEM, "run %s: out of memory", path);
        return NULL;
    }
    strip_slashes(run->path);
    run->dir_fd = run->metrics_fd = run->log_fd = -1;
    kiln_run_record_init(run);
    return run;
}

/* Takes the writer's lock; a reader probing it (kiln_run_is_active) holds it for an instant, so
 * a refusal is retried for ~0.2 s before it counts. */
static kiln_status lock_run(kiln_rundir *run) {
    for (int i = 0;; i++) {
        if (flock(run->dir_fd, LOCK_EX | LOCK_NB) == 0) return KILN_OK;
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK) return KILN_OK; /* no locks on this file system */
        if (i == 20) break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    return kiln_error(KILN_ERR_INVALID, "run %s is open for writing in another process", run->path);
}

/* This process becomes the run's writer: host, pid, version, and the append files. */
static kiln_status become_writer(kiln_rundir *run) {
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "unknown");
    kiln_status s;
    if ((s = kiln_run_set_string(&run->host, host, "the host name")) ||
        (s = kiln_run_set_string(&run->kiln_version, KILN_VERSION, "the version")))
        return s;
    run->pid = (long)getpid();
    char path[4096];
    if ((s = kiln_run_join(path, sizeof path, run->path, "checkpoints")) ||
        (s = kiln_mkdirs(path)) ||
        (s = kiln_run_join(path, sizeof path, run->path, "metrics.jsonl")) ||
        (s = kiln_run_open_append(path, &run->metrics_fd, &run->metrics_torn)) ||
        (s = kiln_run_join(path, sizeof path, run->path, "log.txt")) ||
        (s = kiln_run_open_append(path, &run->log_fd, &run->log_torn)))
        return s;
    run->writable = 1;
    return KILN_OK;
}

kiln_status kiln_run_create(const char *runs_dir, const char *experiment, const char *name,
                            kiln_rundir **out) {
    *out = NULL;
    if (!runs_dir || !*runs_dir) return kiln_error(KILN_ERR_INVALID, "run: empty runs folder");
    if (!experiment) return kiln_error(KILN_ERR_INVALID, "run: NULL experiment name");
    if (!name) name = experiment;
    char exp_s[KILN_RUN_NAME_MAX + 1], name_s[KILN_RUN_NAME_MAX + 1], dir[4096], path[4096];
    kiln_run_sanitize(experiment, exp_s);
    kiln_run_sanitize(name, name_s);
    kiln_status s = kiln_run_join(dir, sizeof dir, runs_dir, exp_s);
    if (s || (s = kiln_mkdirs(dir))) return s;

    time_t now = time(NULL);
    struct tm lt;
    char stamp[32], id[KILN_RUN_NAME_MAX + 48];
    localtime_r(&now, &lt);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &lt);
    for (long n = 1;; n++) {
        if (n == 1)
            snprintf(id, sizeof id, "%s-%s", name_s, stamp);
        else
            snprintf(id, sizeof id, "%s-%s-%ld", name_s, stamp, n);
        if ((s = kiln_run_join(path, sizeof path, dir, id))) return s;
        if (mkdir(path, 0777) == 0) break;
        if (errno != EEXIST)
            return kiln_error(KILN_ERR_IO, "run: cannot create folder %s: %s", path,
                              strerror(errno));
        if (n == MAX_CLASH)
            return kiln_error(KILN_ERR_IO, "run: %s-%s through -%d all exist in %s", name_s, stamp,
                              MAX_CLASH, dir);
    }

    kiln_rundir *run = new_run(path);
    if (!run)
        s = KILN_ERR_NOMEM;
    else if ((run->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        s = kiln_error(KILN_ERR_IO, "run: cannot open folder %s: %s", path, strerror(errno));
    else if (!(s = lock_run(run)) && !(s = kiln_run_set_string(&run->id, id, "the id")) &&
             !(s = kiln_run_set_string(&run->experiment, experiment, "the experiment")) &&
             !(s = kiln_run_set_string(&run->name, name, "the name")) &&
             !(s = become_writer(run))) {
        kiln_run_iso_time((long long)now, run->start_time);
        s = kiln_run_save(run);
    }
    if (s) {
        kiln_run_close(run);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) kiln_run_rmtree(dfd, id), close(dfd);
        return s;
    }
    *out = run;
    return KILN_OK;
}

kiln_status kiln_run_open(const char *path, kiln_run_mode mode, kiln_rundir **out) {
    *out = NULL;
    if (!path || !*path) return kiln_error(KILN_ERR_INVALID, "run: empty path");
    if (mode != KILN_RUN_READ && mode != KILN_RUN_WRITE)
        return kiln_error(KILN_ERR_INVALID, "run %s: unknown open mode %d", path, (int)mode);
    kiln_rundir *run = new_run(path);
    if (!run) return KILN_ERR_NOMEM;
    kiln_status s = KILN_OK;
    if ((run->dir_fd = open(run->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        int e = errno;
        s = kiln_error(e == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "run %s: %s", run->path,
                       e == ENOTDIR ? "not a folder" : strerror(e));
    }
    /* Lock before reading, so that a writer's run.json is read after its writer has gone. */
    if (!s && mode == KILN_RUN_WRITE) s = lock_run(run);
    if (!s) s = kiln_run_record_load(run);
    if (!s && mode == KILN_RUN_WRITE) s = become_writer(run);
    if (s) {
        kiln_run_close(run);
        return s;
    }
    *out = run;
    return KILN_OK;
}

kiln_status kiln_run_set_follower(kiln_rundir *run, const kiln_run_follower *f, void *ctx) {
    if (f && !run->writable)
        return kiln_error(KILN_ERR_INVALID, "run %s: a follower needs a run open for writing",
                          run->path);
    run->follower = f;
    run->follower_ctx = f ? ctx : NULL;
    return KILN_OK;
}

void kiln_run_close(kiln_rundir *run) {
    if (!run) return;
    if (run->follower) {
        const kiln_run_follower *f = run->follower;
        run->follower = NULL;
        f->closing(run->follower_ctx, run);
    }
    if (run->metrics_fd >= 0) close(run->metrics_fd);
    if (run->log_fd >= 0) close(run->log_fd);
    if (run->dir_fd >= 0) close(run->dir_fd); /* releases the lock */
    kiln_run_record_free(run);
    free(run->ckpt_tmp);
    free(run->path);
    free(run);
}

int kiln_run_is_active(const kiln_rundir *run) {
    if (!run) return 0;
    if (run->writable) return 1;
    if (run->dir_fd < 0) return 0;
    while (flock(run->dir_fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        return errno == EWOULDBLOCK;
    }
    flock(run->dir_fd, LOCK_UN);
    return 0;
}

/* ---- finding the newest run ---- */

typedef struct {
    char stamp[16];
    long n;
    char path[4096];
    int found;
} newest;

/* Considers every run folder in dir (an experiment's folder). */
static kiln_status scan_experiment(const char *dir, newest *best) {
    DIR *d = opendir(dir);
    if (!d)
        return kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "run: %s: %s", dir,
                          strerror(errno));
    char stamp[16], rel[NAME_MAX + 16], path[4096];
    long n;
    struct stat st;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || !parse_run_id(e->d_name, stamp, &n)) continue;
        snprintf(rel, sizeof rel, "%s/run.json", e->d_name);
        if (fstatat(dirfd(d), rel, &st, 0) != 0 || !S_ISREG(st.st_mode)) continue;
        if (kiln_run_join(path, sizeof path, dir, e->d_name)) continue;
        int c = best->found ? strcmp(stamp, best->stamp) : 1;
        if (!c) c = n < best->n ? -1 : n > best->n;
        if (!c) c = strcmp(path, best->path); /* same second in two experiments */
        if (c <= 0) continue;
        memcpy(best->stamp, stamp, 16), best->n = n, best->found = 1;
        strcpy(best->path, path);
    }
    closedir(d);
    return KILN_OK;
}

kiln_status kiln_run_find_latest(const char *runs_dir, const char *experiment, char *out,
                                 size_t cap) {
    if (cap) out[0] = 0;
    if (!runs_dir || !*runs_dir) return kiln_error(KILN_ERR_INVALID, "run: empty runs folder");
    newest *best = calloc(1, sizeof *best);
    if (!best) return kiln_error(KILN_ERR_NOMEM, "run: out of memory");
    char dir[4096];
    kiln_status s = KILN_OK;
    if (experiment) {
        char exp_s[KILN_RUN_NAME_MAX + 1];
        kiln_run_sanitize(experiment, exp_s);
        if (!(s = kiln_run_join(dir, sizeof dir, runs_dir, exp_s))) s = scan_experiment(dir, best);
        if (s == KILN_ERR_NOTFOUND) kiln_error_clear(), s = KILN_OK;
    } else {
        DIR *d = opendir(runs_dir);
        if (!d)
            s = kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "run: %s: %s",
                           runs_dir, strerror(errno));
        struct stat st;
        for (struct dirent *e; !s && (e = readdir(d));) {
            if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) != 0 ||
                !S_ISDIR(st.st_mode) || kiln_run_join(dir, sizeof dir, runs_dir, e->d_name))
                continue;
            s = scan_experiment(dir, best);
            if (s == KILN_ERR_NOTFOUND) s = KILN_OK; /* removed while we looked */
        }
        if (d) closedir(d);
    }
    if (!s && !best->found)
        s = experiment ? kiln_error(KILN_ERR_NOTFOUND, "run: no runs of experiment '%s' in %s",
                                    experiment, runs_dir)
                       : kiln_error(KILN_ERR_NOTFOUND, "run: no runs in %s", runs_dir);
    if (!s && strlen(best->path) >= cap)
        s = kiln_error(KILN_ERR_INVALID, "run: path %s is longer than %zu bytes", best->path,
                       cap ? cap - 1 : 0);
    if (!s) strcpy(out, best->path);
    free(best);
    return s;
}

/* ---- log.txt ---- */

kiln_status kiln_run_log(kiln_rundir *run, const char *fmt, ...) {
    if (!run) return KILN_OK;
    kiln_status s = kiln_run_need_write(run, "log");
    if (s) return s;
    char small[1024], *line = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small - 1, fmt, ap); /* -1: room for the newline */
    va_end(ap);
    if (n < 0) return kiln_error(KILN_ERR_INVALID, "run %s: log: bad format '%s'", run->id, fmt);
    if ((size_t)n >= sizeof small - 1) {
        if (!(line = malloc((size_t)n + 2)))
            return kiln_error(KILN_ERR_NOMEM, "run %s: log: out of memory", run->id);
        va_start(ap, fmt);
        vsnprintf(line, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (n == 0 || line[n - 1] != '\n') line[n++] = '\n';
    s = kiln_run_append_line(run->log_fd, &run->log_torn, line, (size_t)n, "log.txt");
    if (s) kiln_error_prefix("run %s", run->id);
    if (line != small) free(line);
    return s;
}

/* checkpoints.c — the checkpoint folders of a run: begin, commit, abort, latest, list, prune.
 *
 * Layout (all inside <run>/checkpoints/):
 *   .tmp-step-<N>-<pid>/   a checkpoint being written (begin .. commit)
 *   step-<N>/              a complete checkpoint: it only ever gets this name by a rename after
 *                          every file in it was fsync'ed
 *   latest                 "step-<N>\n", replaced atomically after the rename is durable
 *   .tmp-*                 anything else with this prefix is left by a crash (a begun checkpoint,
 *                          a replaced step-<N> not yet removed, latest's temporary file)
 *
 * Commit order and what a crash at each point leaves:
 *   1. fsync the files and folders in .tmp-step-<N>-<pid>/      crash: latest unchanged, .tmp left
 *   2. rename it to step-<N> (swapping with an existing step-<N> via RENAME_EXCHANGE, or moving
 *      the old one aside first where the file system cannot swap)
 *                                                              crash: step-<N> complete, latest
 *                                                              still names the previous one
 *   3. fsync checkpoints/ (the rename is durable)
 *   4. write latest atomically                                 from here on latest = step-<N>
 *   5. save run.json, remove the replaced folder
 * So latest always names a complete folder, unless someone deletes it by hand: then
 * kiln_run_checkpoint_latest falls back to the newest step-<N> that exists.
 *
 * Only the run's writer (who holds its lock) begins, commits and prunes, so a .tmp-* entry not
 * belonging to this process's current checkpoint is always a leftover.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "run/run_internal.h"

#define SYNC_DEPTH 16

/* "step-<N>" with N a decimal int64 without a leading zero: 1 and *step, else 0. */
static int parse_step_name(const char *s, int64_t *step) {
    if (strncmp(s, "step-", 5)) return 0;
    s += 5;
    if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 18) return 0;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (*s - '0');
    }
    *step = v;
    return 1;
}

static kiln_status ckpt_dir(const kiln_rundir *run, char *out, size_t cap) {
    return kiln_run_join(out, cap, run->path, "checkpoints");
}

static int is_dir_at(int dirfd, const char *name) {
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Folders that cannot be fsync'ed (EINVAL, ENOTSUP on some file systems) are not an error. */
static int sync_fd(int fd) {
    return fsync(fd) == 0 || errno == EINVAL || errno == ENOTSUP ? 0 : -1;
}

/* fsyncs every regular file and folder under the open folder fd, then fd itself; closes fd. */
static kiln_status sync_tree(int fd, const char *path, int depth) {
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return kiln_error(KILN_ERR_IO, "checkpoint: cannot read folder %s: %s", path,
                          strerror(errno));
    }
    kiln_status s = KILN_OK;
    for (struct dirent *e; !s && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            s = kiln_error(KILN_ERR_IO, "checkpoint: %s/%s: %s", path, e->d_name, strerror(errno));
            break;
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) continue;
        if (S_ISDIR(st.st_mode) && depth >= SYNC_DEPTH) {
            s = kiln_error(KILN_ERR_INVALID, "checkpoint: %s nests folders deeper than %d", path,
                           SYNC_DEPTH);
            break;
        }
        int cfd =
            openat(dirfd(d), e->d_name,
                   O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
        if (cfd < 0) {
            s = kiln_error(KILN_ERR_IO, "checkpoint: cannot open %s/%s: %s", path, e->d_name,
                           strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            char sub[4096];
            s = kiln_run_join(sub, sizeof sub, path, e->d_name);
            if (s)
                close(cfd);
            else
                s = sync_tree(cfd, sub, depth + 1);
        } else {
            if (fsync(cfd) != 0)
                s = kiln_error(KILN_ERR_IO, "checkpoint: fsync of %s/%s failed: %s", path,
                               e->d_name, strerror(errno));
            close(cfd);
        }
    }
    if (!s && sync_fd(dirfd(d)) != 0)
        s = kiln_error(KILN_ERR_IO, "checkpoint: fsync of folder %s failed: %s", path,
                       strerror(errno));
    closedir(d);
    return s;
}

static kiln_status sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    kiln_status s = KILN_OK;
    if (fd < 0 || sync_fd(fd) != 0)
        s = kiln_error(KILN_ERR_IO, "checkpoint: fsync of folder %s failed: %s", path,
                       strerror(errno));
    if (fd >= 0) close(fd);
    return s;
}

static kiln_status remove_at(const char *dir, const char *name) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || kiln_run_rmtree(fd, name) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return kiln_error(KILN_ERR_IO, "checkpoint: cannot remove %s/%s: %s", dir, name,
                          strerror(e));
    }
    close(fd);
    return KILN_OK;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ---- writing ---- */

kiln_status kiln_run_checkpoint_begin(kiln_rundir *run, int64_t step, char *tmpdir, size_t cap) {
    if (cap) tmpdir[0] = 0;
    kiln_status s = kiln_run_need_write(run, "checkpoint_begin");
    if (s) return s;
    if (step < 0)
        return kiln_error(KILN_ERR_INVALID, "run %s: checkpoint at negative step %lld", run->id,
                          (long long)step);
    char dir[4096], name[64], path[4096];
    snprintf(name, sizeof name, ".tmp-step-%lld-%ld", (long long)step, (long)getpid());
    if ((s = ckpt_dir(run, dir, sizeof dir)) || (s = kiln_run_join(path, sizeof path, dir, name)))
        return s;
    if (strlen(path) >= cap)
        return kiln_error(KILN_ERR_INVALID, "run %s: checkpoint folder %s is longer than %zu bytes",
                          run->id, path, cap ? cap - 1 : 0);
    if (run->ckpt_tmp) { /* an earlier begin that was neither committed nor aborted */
        if ((s = remove_at(dir, base_name(run->ckpt_tmp)))) return s;
        free(run->ckpt_tmp);
        run->ckpt_tmp = NULL;
    }
    if ((s = remove_at(dir, name))) return s; /* left by a crashed process with our pid */
    if (mkdir(path, 0777) != 0)
        return kiln_error(KILN_ERR_IO, "run %s: cannot create %s: %s", run->id, path,
                          strerror(errno));
    if ((s = kiln_run_set_string(&run->ckpt_tmp, path, "the checkpoint folder"))) {
        rmdir(path);
        return s;
    }
    strcpy(tmpdir, path);
    return KILN_OK;
}

/* Checks that tmpdir is the checkpoint begun for step. */
static kiln_status check_begun(const kiln_rundir *run, int64_t step, const char *tmpdir,
                               const char *op) {
    char name[64];
    snprintf(name, sizeof name, ".tmp-step-%lld-%ld", (long long)step, (long)getpid());
    if (!tmpdir || !run->ckpt_tmp || strcmp(tmpdir, run->ckpt_tmp) ||
        strcmp(base_name(tmpdir), name))
        return kiln_error(KILN_ERR_INVALID,
                          "run %s: %s: %s is not the checkpoint begun for step %lld (begun: %s)",
                          run->id, op, tmpdir ? tmpdir : "(null)", (long long)step,
                          run->ckpt_tmp ? run->ckpt_tmp : "none");
    return KILN_OK;
}

kiln_status kiln_run_checkpoint_commit(kiln_rundir *run, int64_t step, const char *tmpdir) {
    kiln_status s = kiln_run_need_write(run, "checkpoint_commit");
    if (s || (s = check_begun(run, step, tmpdir, "checkpoint_commit"))) return s;
    char dir[4096], final[4096], aside[4096], latest[4096], name[64], text[64], old[64] = "";
    snprintf(name, sizeof name, "step-%lld", (long long)step);
    if ((s = ckpt_dir(run, dir, sizeof dir)) ||
        (s = kiln_run_join(final, sizeof final, dir, name)) ||
        (s = kiln_run_join(latest, sizeof latest, dir, "latest")))
        return s;

    int fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return kiln_error(KILN_ERR_IO, "run %s: cannot open %s: %s", run->id, tmpdir,
                          strerror(errno));
    if ((s = sync_tree(fd, tmpdir, 0))) return s;

    if (rename(tmpdir, final) != 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            return kiln_error(KILN_ERR_IO, "run %s: cannot rename %s to %s: %s", run->id, tmpdir,
                              final, strerror(errno));
        /* An earlier attempt at this step left a complete step-<N>: swap the two, so that
         * step-<N> is never missing; the old one is then under the temporary name. */
        if (renameat2(AT_FDCWD, tmpdir, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
            snprintf(old, sizeof old, "%s", base_name(tmpdir));
        } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
            snprintf(old, sizeof old, ".tmp-old-step-%lld-%ld", (long long)step, (long)getpid());
            if ((s = kiln_run_join(aside, sizeof aside, dir, old)) || (s = remove_at(dir, old)))
                return s;
            if (rename(final, aside) != 0)
                return kiln_error(KILN_ERR_IO, "run %s: cannot move the old %s aside: %s", run->id,
                                  final, strerror(errno));
            if (rename(tmpdir, final) != 0) {
                int e = errno;
                rename(aside, final); /* put the old one back */
                return kiln_error(KILN_ERR_IO, "run %s: cannot rename %s to %s: %s", run->id,
                                  tmpdir, final, strerror(e));
            }
        } else {
            return kiln_error(KILN_ERR_IO, "run %s: cannot replace %s: %s", run->id, final,
                              strerror(errno));
        }
    }
    free(run->ckpt_tmp);
    run->ckpt_tmp = NULL;
    int n = snprintf(text, sizeof text, "%s\n", name);
    if ((s = sync_dir(dir)) || (s = kiln_file_write_atomic(latest, text, (size_t)n))) {
        kiln_error_prefix("run %s: checkpoint %s", run->id, name);
        return s;
    }
    if (!(s = kiln_run_set_string(&run->checkpoint, name, "the checkpoint name")))
        s = kiln_run_save(run);
    if (s) kiln_error_prefix("checkpoint %s is complete, but", name);
    if (old[0]) remove_at(dir, old); /* on failure prune removes it later */
    return s;
}

kiln_status kiln_run_checkpoint_abort(kiln_rundir *run, const char *tmpdir) {
    kiln_status s = kiln_run_need_write(run, "checkpoint_abort");
    if (s) return s;
    if (!tmpdir || !run->ckpt_tmp || strcmp(tmpdir, run->ckpt_tmp))
        return kiln_error(KILN_ERR_INVALID, "run %s: checkpoint_abort: %s was not begun", run->id,
                          tmpdir ? tmpdir : "(null)");
    char dir[4096];
    if ((s = ckpt_dir(run, dir, sizeof dir)) || (s = remove_at(dir, base_name(tmpdir)))) return s;
    free(run->ckpt_tmp);
    run->ckpt_tmp = NULL;
    return KILN_OK;
}

/* ---- reading ---- */

static int cmp_step(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

kiln_status kiln_run_checkpoint_list(const kiln_rundir *run, int64_t **steps, int *n) {
    *steps = NULL, *n = 0;
    char dir[4096];
    kiln_status s = ckpt_dir(run, dir, sizeof dir);
    if (s) return s;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return KILN_OK;
        return kiln_error(KILN_ERR_IO, "run %s: cannot read %s: %s", run->id, dir, strerror(errno));
    }
    int64_t *v = NULL, step;
    int cnt = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!parse_step_name(e->d_name, &step) || !is_dir_at(dirfd(d), e->d_name)) continue;
        if (cnt == cap) {
            int ncap = cap ? 2 * cap : 16;
            int64_t *nv = realloc(v, (size_t)ncap * sizeof *nv);
            if (!nv) {
                s = kiln_error(KILN_ERR_NOMEM, "run %s: out of memory listing %s", run->id, dir);
                break;
            }
            v = nv, cap = ncap;
        }
        v[cnt++] = step;
    }
    closedir(d);
    if (s) {
        free(v);
        return s;
    }
    if (cnt) qsort(v, (size_t)cnt, sizeof *v, cmp_step);
    *steps = v, *n = cnt;
    return KILN_OK;
}

kiln_status kiln_run_checkpoint_path(const kiln_rundir *run, const char *name, char *out,
                                     size_t cap) {
    if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return kiln_error(KILN_ERR_INVALID, "run %s: '%s' is not a checkpoint name", run->id,
                          name ? name : "(null)");
    char dir[4096];
    kiln_status s = ckpt_dir(run, dir, sizeof dir);
    return s ? s : kiln_run_join(out, cap, dir, name);
}

/* What latest names when that folder exists: 1 and *step; else 0 and why in reason. */
static int read_latest(const kiln_rundir *run, int64_t *step, char *reason, size_t cap) {
    char dir[4096], path[4096];
    if (ckpt_dir(run, dir, sizeof dir) || kiln_run_join(path, sizeof path, dir, "latest")) {
        snprintf(reason, cap, "%s", kiln_last_error());
        return 0;
    }
    void *buf;
    size_t len;
    kiln_status s = kiln_file_read_all(path, &buf, &len, 256);
    if (s) {
        if (s == KILN_ERR_NOTFOUND)
            snprintf(reason, cap, "checkpoints/latest is missing");
        else
            snprintf(reason, cap, "checkpoints/latest cannot be read (%s)", kiln_last_error());
        return 0;
    }
    char *t = buf;
    while (len > 0 && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' ')) t[--len] = 0;
    int ok = 0;
    if (strlen(t) != len || !parse_step_name(t, step)) {
        snprintf(reason, cap, "checkpoints/latest does not name a checkpoint");
    } else {
        char full[4096];
        struct stat st;
        ok = !kiln_run_join(full, sizeof full, dir, t) && stat(full, &st) == 0 &&
             S_ISDIR(st.st_mode);
        if (!ok) snprintf(reason, cap, "checkpoints/latest names %s, which does not exist", t);
    }
    kiln_free(buf);
    return ok;
}

kiln_status kiln_run_checkpoint_latest(const kiln_rundir *run, char *name, size_t cap,
                                       char *warning, size_t warning_cap) {
    if (cap) name[0] = 0;
    if (warning && warning_cap) warning[0] = 0;
    char reason[600];
    int64_t step, *steps;
    int n;
    kiln_status s = KILN_OK;
    int named = read_latest(run, &step, reason, sizeof reason);
    if (!named) {
        if ((s = kiln_run_checkpoint_list(run, &steps, &n))) return s;
        if (n == 0 && strstr(reason, "missing"))
            return kiln_error(KILN_ERR_NOTFOUND, "run %s has no checkpoint", run->id);
        if (n == 0)
            return kiln_error(KILN_ERR_NOTFOUND, "run %s has no checkpoint (%s)", run->id, reason);
        step = steps[n - 1];
        kiln_free(steps);
    }
    char buf[64];
    snprintf(buf, sizeof buf, "step-%lld", (long long)step);
    if (strlen(buf) >= cap)
        return kiln_error(KILN_ERR_INVALID, "run %s: checkpoint name %s is longer than %zu bytes",
                          run->id, buf, cap ? cap - 1 : 0);
    strcpy(name, buf);
    if (!named && warning && warning_cap)
        snprintf(warning, warning_cap, "run %s: %s; using %s, the newest complete checkpoint",
                 run->id, reason, buf);
    return KILN_OK;
}

kiln_status kiln_run_checkpoint_prune(kiln_rundir *run, int keep_last, const char *protect) {
    kiln_status s = kiln_run_need_write(run, "checkpoint_prune");
    if (s) return s;
    if (keep_last < 0)
        return kiln_error(KILN_ERR_INVALID, "run %s: checkpoint_prune: keep_last %d < 0", run->id,
                          keep_last);
    int64_t *steps, latest = -1, keep = -1;
    int n;
    char reason[600], dir[4096], name[64];
    if ((s = kiln_run_checkpoint_list(run, &steps, &n)) || (s = ckpt_dir(run, dir, sizeof dir)))
        return s;
    if (!read_latest(run, &latest, reason, sizeof reason)) latest = n ? steps[n - 1] : -1;
    if (protect && !parse_step_name(protect, &keep)) keep = -1;
    for (int i = 0; i < n - keep_last; i++) {
        if (steps[i] == latest || steps[i] == keep) continue;
        snprintf(name, sizeof name, "step-%lld", (long long)steps[i]);
        kiln_status r = remove_at(dir, name);
        if (!s) s = r;
    }
    kiln_free(steps);

    DIR *d = opendir(dir);
    if (!d)
        return s ? s
                 : kiln_error(KILN_ERR_IO, "run %s: cannot read %s: %s", run->id, dir,
                              strerror(errno));
    /* Leftovers of crashed attempts. Removing entries while reading the folder may make readdir
     * skip some, so go over it until a pass finds none (or only ones that cannot go). */
    const char *mine = run->ckpt_tmp ? base_name(run->ckpt_tmp) : "";
    int fd = dirfd(d), removed = 1;
    for (int pass = 0; pass < 4 && removed; pass++) {
        removed = 0;
        rewinddir(d);
        for (struct dirent *e; (e = readdir(d));) {
            if (strncmp(e->d_name, ".tmp-", 5) || !strcmp(e->d_name, mine)) continue;
            if (kiln_run_rmtree(fd, e->d_name) == 0)
                removed++;
            else if (!s)
                s = kiln_error(KILN_ERR_IO, "run %s: cannot remove %s/%s: %s", run->id, dir,
                               e->d_name, strerror(errno));
        }
    }
    closedir(d);
    return s;
}

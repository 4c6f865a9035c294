/* registry_sync.c — the registry catches up with the run folders.
 *
 * A run's rows record what they were made from: json_stamp (run.json's inode, mtime and size),
 * metrics_offset (the bytes of metrics.jsonl whose points are in) and params_hash (the config
 * hash whose config.yaml gave the params). A sync lists <runs_dir>/<experiment>/<run>/ folders
 * that hold a run.json and compares: an unknown folder is imported; a changed run.json is read
 * again; metrics.jsonl beyond metrics_offset is read from there (the reader keeps whole lines
 * only, so a line still being written is read next time); a shorter metrics.jsonl (replaced)
 * is read again from the start; a new config hash brings its params. An unchanged run costs
 * one fstatat() (run.json) when it has ended and two (metrics.jsonl too) while it runs, and no
 * reading, which keeps `kiln runs list` fast on 10,000 runs. An ended run's metrics.jsonl is not
 * looked at while its run.json stays the same: its writer logged every point before its last
 * save (a resume rewrites run.json), and a writer that died gets its last points read when
 * kiln_registry_open marks it failed.
 *
 * Points are upserted on (run, name, step), so reading a point twice (the run's writer and a
 * sync both saw it) changes nothing, and a later line for the same step wins, as it does for
 * readers of metrics.jsonl. Big files go in transactions of CHUNK points, each recording how far
 * it got, so a sync never holds the write lock long and an interrupted one resumes.
 *
 * Rows whose folder is gone are deleted, checking again inside the deleting transaction (a
 * folder that appears in the meantime keeps its row).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry/registry_internal.h"
#include "run/run_internal.h"

#define CHUNK 20000

/* ---- one run ---- */

typedef struct {
    kiln_registry *reg;
    int64_t rid;
    int64_t n;
    kiln_status s;
    reg_latest latest;
} importer;

static int import_point(const kiln_metric_point *p, void *ctx) {
    importer *im = ctx;
    char name[256];
    kiln_reg_metric_name(p->split, p->name, name, sizeof name);
    if ((im->s = kiln_reg_put_point(im->reg, im->rid, name, p->step, p->wall_time, p->value,
                                    &im->latest)))
        return 1;
    return ++im->n >= CHUNK;
}

/* Runs statement `which`, whose only parameter is the run's rid. */
static kiln_status by_rid(kiln_registry *reg, int which, int64_t rid) {
    reg_stmt *st = kiln_reg_stmt(reg, which);
    if (!st) return KILN_ERR_IO;
    reg_bind_int64(st, 1, rid);
    return kiln_reg_step_done(reg, st, "clearing metrics");
}

/* metrics.jsonl from offset on, CHUNK points per transaction; *moved when it read anything (or
 * started over). */
static kiln_status import_metrics(kiln_registry *reg, int64_t rid, const char *path, int64_t offset,
                                  int64_t size, int *moved) {
    kiln_status s;
    *moved = 0;
    if (size < offset) { /* the file was replaced: start again */
        if ((s = kiln_reg_begin(reg))) return s;
        if ((s = by_rid(reg, REG_METRICS_CLEAR, rid)) || (s = by_rid(reg, REG_LATEST_CLEAR, rid)) ||
            (s = by_rid(reg, REG_RUN_OFFSET_RESET, rid))) {
            kiln_reg_rollback(reg);
            return s;
        }
        if ((s = kiln_reg_commit(reg))) return s;
        offset = 0, *moved = 1;
    }
    while (offset < size) {
        importer im = {.reg = reg, .rid = rid};
        int64_t at = offset;
        if ((s = kiln_reg_begin(reg))) return s;
        s = kiln_run_read_metrics(path, &at, import_point, &im, NULL);
        if (s == KILN_ERR_NOTFOUND) {
            kiln_reg_rollback(reg);
            kiln_error_clear();
            return KILN_OK; /* removed meanwhile */
        }
        if (!s) s = im.s;
        if (!s) s = kiln_reg_put_latest(reg, rid, &im.latest);
        if (!s && at > offset) s = kiln_reg_set_offset(reg, rid, at);
        if (s) {
            kiln_reg_rollback(reg);
            return s;
        }
        if ((s = kiln_reg_commit(reg))) return s;
        *moved |= at > offset;
        if (im.n < CHUNK || at <= offset) break; /* the end, or only a partial line is left */
        offset = at;
    }
    return KILN_OK;
}

typedef struct {
    int exists;
    int64_t rid, offset;
    char *stamp, *params_hash, *config_hash;
} row_state;

static kiln_status read_state(kiln_registry *reg, const char *id, row_state *r) {
    memset(r, 0, sizeof *r);
    reg_stmt *st = kiln_reg_stmt(reg, REG_RUN_STATE);
    if (!st) return KILN_ERR_IO;
    kiln_reg_bind_text(st, 1, id);
    int rc = reg_step(st);
    kiln_status s = KILN_OK;
    if (rc == REG_ROW) {
        const char *a = kiln_reg_col_text(st, 1), *b = kiln_reg_col_text(st, 3),
                   *c = kiln_reg_col_text(st, 4);
        r->exists = 1;
        r->rid = reg_col_int64(st, 0);
        r->offset = reg_col_int64(st, 2);
        if ((a && !(r->stamp = strdup(a))) || (b && !(r->params_hash = strdup(b))) ||
            (c && !(r->config_hash = strdup(c))))
            s = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
    } else if (rc != REG_DONE) {
        s = kiln_reg_fail(reg, rc, "reading a run");
    }
    reg_reset(st);
    return s;
}

static void free_state(row_state *r) {
    free(r->stamp), free(r->params_hash), free(r->config_hash);
}

/* Like kiln_reg_sync_run; *folder is set when the failure is the folder's (unreadable run.json). */
static kiln_status sync_run(kiln_registry *reg, const char *id, int *changed, int *folder) {
    char path[4200], file[4300], stamp[64];
    *folder = 0;
    if (changed) *changed = 0;
    kiln_status s = kiln_reg_run_path(reg, id, path, sizeof path);
    if (s) return *folder = 1, s;
    if (!kiln_reg_json_stamp(path, stamp))
        return *folder = 1, kiln_error(KILN_ERR_NOTFOUND, "run %s: no run.json", path);
    row_state r;
    if ((s = read_state(reg, id, &r))) return s;
    const char *hash = r.config_hash;
    kiln_rundir *run = NULL;
    int json_changed = !r.exists || !r.stamp || strcmp(r.stamp, stamp);
    if (json_changed) {
        if ((s = kiln_run_open(path, KILN_RUN_READ, &run))) {
            *folder = 1;
            goto out;
        }
        hash = kiln_run_get_info(run).config_hash;
    }
    int params_changed = !r.params_hash || strcmp(r.params_hash, hash ? hash : "");
    if (json_changed || params_changed) {
        if ((s = kiln_reg_begin(reg))) goto out;
        if (json_changed) {
            kiln_run_info info = kiln_run_get_info(run);
            s = kiln_reg_put_run(reg, id, &info, stamp, &r.rid);
        }
        if (!s && params_changed && !(s = kiln_run_join(file, sizeof file, path, "config.yaml")))
            s = kiln_reg_put_params(reg, r.rid, file, hash);
        s = s ? (kiln_reg_rollback(reg), s) : kiln_reg_commit(reg);
        if (s) goto out;
    }
    struct stat st;
    int64_t size = 0;
    if (!(s = kiln_run_join(file, sizeof file, path, "metrics.jsonl")) && stat(file, &st) == 0)
        size = (int64_t)st.st_size;
    int moved = 0;
    if (!s && size != r.offset) s = import_metrics(reg, r.rid, file, r.offset, size, &moved);
    if (!s && changed) *changed = !r.exists ? 1 : json_changed || params_changed || moved ? 2 : 0;
out:
    kiln_run_close(run);
    free_state(&r);
    return s;
}

kiln_status kiln_reg_sync_run(kiln_registry *reg, const char *id, int *changed) {
    int folder;
    return sync_run(reg, id, changed, &folder);
}

/* ---- every run ---- */

/* What the registry knows of a run, for the cheap test. Strings live in the list's arena. */
typedef struct {
    size_t id_at; /* where the id is in the arena while it grows */
    const char *id;
    unsigned long long ino, sec, nsec, size; /* json_stamp's fields ("ino:sec.nsec:size") */
    int64_t offset;
    int params_current; /* params_hash is the config hash */
    int sealed;         /* ended (not running): its writer flushed every point before its last
                           save, so only a new run.json can bring more */
    int seen;
} known_run;

typedef struct {
    known_run *v;
    size_t n, cap;
    char *arena; /* the strings, back to back */
    size_t used, size;
} known_runs;

static void free_known(known_runs *k) {
    free(k->v);
    free(k->arena);
}

/* A copy of s in the arena; its offset there (-1 without memory). */
static int64_t keep_str(known_runs *k, const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    if (k->used + n > k->size) {
        size_t size = k->size ? 2 * k->size : 1 << 16;
        while (size < k->used + n) size *= 2;
        char *a = realloc(k->arena, size);
        if (!a) return -1;
        k->arena = a, k->size = size;
    }
    memcpy(k->arena + k->used, s, n);
    k->used += n;
    return (int64_t)(k->used - n);
}

/* json_stamp's "ino:sec.nsec:size" into r (by hand: sscanf costs more than the rest of reading
 * 10,000 rows); 0 when it is not one. */
static int parse_stamp(const char *s, known_run *r) {
    unsigned long long *f[4] = {&r->ino, &r->sec, &r->nsec, &r->size};
    static const char SEP[4] = {':', '.', ':', 0};
    for (int i = 0; i < 4; i++) {
        char *end;
        if (!s || ((*s < '0' || *s > '9') && *s != '-')) return 0; /* as %llu reads */
        *f[i] = strtoull(s, &end, 10);
        if (*end != SEP[i]) return 0;
        s = end + 1;
    }
    return 1;
}

static kiln_status load_known(kiln_registry *reg, known_runs *k) {
    reg_stmt *st = NULL;
    int rc = reg_prepare(reg->db,
                         "SELECT id, json_stamp, metrics_offset,"
                         " CASE WHEN params_hash = coalesce(config_hash, '') THEN 1 ELSE 0 END,"
                         " CASE WHEN status != 'running' THEN 1 ELSE 0 END FROM runs ORDER BY id",
                         &st);
    if (rc != REG_OK) return kiln_reg_fail(reg, rc, "reading runs");
    int oom = 0;
    while (!oom && (rc = reg_step(st)) == REG_ROW) {
        if (k->n == k->cap) {
            size_t cap = k->cap ? 2 * k->cap : 1024;
            known_run *v = realloc(k->v, cap * sizeof *v);
            if (!v) {
                oom = 1;
                break;
            }
            k->v = v, k->cap = cap;
        }
        int64_t id = keep_str(k, kiln_reg_col_text(st, 0));
        if (id < 0) {
            oom = 1;
            break;
        }
        known_run *r = &k->v[k->n++];
        *r = (known_run){.id_at = (size_t)id,
                         .offset = reg_col_int64(st, 2),
                         .params_current = (int)reg_col_int64(st, 3),
                         .sealed = (int)reg_col_int64(st, 4)};
        if (!parse_stamp(kiln_reg_col_text(st, 1), r))
            r->ino = r->sec = r->nsec = r->size = ~0ull; /* matches no file */
    }
    reg_finalize(st);
    if (oom) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", reg->path);
    for (size_t i = 0; i < k->n; i++) {
        k->v[i].id = k->arena + k->v[i].id_at;
    }
    return rc == REG_DONE ? KILN_OK : kiln_reg_fail(reg, rc, "reading runs");
}

static known_run *find_known(known_runs *k, const char *id) {
    size_t lo = 0, hi = k->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(k->v[mid].id, id);
        if (!c) return &k->v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Whether a known run is exactly as its folder says (the cheap test: one fstatat for an ended
 * run, two for a running one; crashed runs got their last points when they were marked). */
static int unchanged(const known_run *r, int dfd, const char *name) {
    char rel[NAME_MAX + 32];
    struct stat st;
    size_t n = strlen(name);
    memcpy(rel, name, n), memcpy(rel + n, "/run.json", sizeof "/run.json");
    if (fstatat(dfd, rel, &st, 0) != 0 || (unsigned long long)st.st_ino != r->ino ||
        (unsigned long long)st.st_mtim.tv_sec != r->sec ||
        (unsigned long long)st.st_mtim.tv_nsec != r->nsec ||
        (unsigned long long)st.st_size != r->size || !r->params_current)
        return 0;
    if (r->sealed) return 1;
    memcpy(rel + n, "/metrics.jsonl", sizeof "/metrics.jsonl");
    int64_t size = fstatat(dfd, rel, &st, 0) == 0 ? (int64_t)st.st_size : 0;
    return size == r->offset;
}

static int is_dir(int dfd, const struct dirent *e) {
    if (e->d_type == DT_DIR) return 1;
    if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK) return 0;
    struct stat st;
    return fstatat(dfd, e->d_name, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

static int has_run_json(int dfd, const char *name) {
    char rel[NAME_MAX + 32];
    struct stat st;
    snprintf(rel, sizeof rel, "%s/run.json", name);
    return fstatat(dfd, rel, &st, 0) == 0 && S_ISREG(st.st_mode);
}

static void note_skip(kiln_registry_sync_stats *stats, const char *id) {
    stats->skipped++;
    if (!stats->warning[0])
        snprintf(stats->warning, sizeof stats->warning, "%s", kiln_last_error());
    (void)id;
}

/* Every run folder of one experiment folder. */
static kiln_status scan_experiment(kiln_registry *reg, int rootfd, const char *exp, known_runs *k,
                                   kiln_registry_sync_stats *stats) {
    int fd = openat(rootfd, exp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return KILN_OK; /* removed meanwhile, or not ours to read */
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return KILN_OK;
    }
    kiln_status s = KILN_OK;
    char id[2 * NAME_MAX + 2];
    for (struct dirent *e; !s && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        size_t a = strlen(exp), b = strlen(e->d_name);
        if (a + b + 2 > sizeof id) continue;
        memcpy(id, exp, a), id[a] = '/', memcpy(id + a + 1, e->d_name, b + 1);
        known_run *r = find_known(k, id);
        if (r) {
            r->seen = 1;
            if (unchanged(r, fd, e->d_name)) continue;
        } else if (!is_dir(fd, e) || !has_run_json(fd, e->d_name)) {
            continue;
        }
        int changed = 0, folder = 0;
        s = sync_run(reg, id, &changed, &folder);
        if (s && folder) {
            note_skip(stats, id);
            s = KILN_OK;
            kiln_error_clear();
            continue;
        }
        if (changed == 1) stats->imported++;
        if (changed == 2) stats->updated++;
    }
    closedir(d);
    return s;
}

/* Deletes the rows of runs the scan did not see whose folder is gone. */
static kiln_status forget_gone(kiln_registry *reg, known_runs *k, kiln_registry_sync_stats *stats) {
    char path[4200];
    struct stat st;
    size_t gone = 0;
    for (size_t i = 0; i < k->n; i++)
        if (!k->v[i].seen && !kiln_reg_run_path(reg, k->v[i].id, path, sizeof path) &&
            lstat(path, &st) != 0 && errno == ENOENT)
            gone++;
    if (!gone) return KILN_OK;
    kiln_status s = kiln_reg_begin(reg);
    if (s) return s;
    reg_stmt *st2 = NULL;
    int rc = reg_prepare(reg->db, "DELETE FROM runs WHERE id = ?1", &st2);
    if (rc != REG_OK) s = kiln_reg_fail(reg, rc, "forgetting removed runs");
    for (size_t i = 0; !s && i < k->n; i++) {
        if (k->v[i].seen || kiln_reg_run_path(reg, k->v[i].id, path, sizeof path) ||
            lstat(path, &st) == 0 || errno != ENOENT)
            continue;
        kiln_reg_bind_text(st2, 1, k->v[i].id);
        if (!(s = kiln_reg_step_done(reg, st2, "forgetting a removed run"))) stats->removed++;
    }
    reg_finalize(st2);
    if (s) {
        kiln_reg_rollback(reg);
        stats->removed = 0;
        return s;
    }
    return kiln_reg_commit(reg);
}

kiln_status kiln_registry_sync(kiln_registry *reg, kiln_registry_sync_stats *stats) {
    kiln_registry_sync_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!reg) return kiln_error(KILN_ERR_INVALID, "registry sync: NULL registry");
    known_runs k = {0};
    kiln_status s = load_known(reg, &k);
    DIR *root = NULL;
    if (!s && !(root = opendir(reg->runs_dir)))
        s = kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "registry: %s: %s",
                       reg->runs_dir, strerror(errno));
    for (struct dirent *e; !s && (e = readdir(root));)
        if (e->d_name[0] != '.' && is_dir(dirfd(root), e))
            s = scan_experiment(reg, dirfd(root), e->d_name, &k, stats);
    if (root) closedir(root);
    if (!s) s = forget_gone(reg, &k, stats);
    if (!s) s = kiln_reg_sync_models(reg, &stats->models);
    free_known(&k);
    return s;
}

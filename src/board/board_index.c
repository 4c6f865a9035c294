/* board_index.c — the board's runs table: which runs the runs folder holds, what each run.json
 * and config.yaml say, and what changed since a client last asked.
 *
 * Listing. <runs_dir>/<experiment>/<run>/ is a run when it holds a run.json (kiln/run.h); names
 * starting with '.' are skipped. A listing stats run.json and config.yaml of every run and reads
 * a file again only when its signature (device, inode, size, modification time) changed, so a
 * listing of an unchanged folder of 10,000 runs is 20,000 stats and no parsing. run.json is read
 * through kiln_run_open(KILN_RUN_READ), which also gives kiln_run_is_active: a run whose run.json
 * says running is probed on every listing, and shown as failed (crashed) when no process holds
 * its lock any more.
 *
 * Rendering. Each run keeps its /api/runs object pre-rendered (head) but for its params, which
 * depend on the other runs of its experiment: the runs table shows, per experiment, the params
 * whose values differ between its runs (or that some runs lack), plus batch size, learning rate
 * and epochs, at most EXP_KEYS_MAX of them. Params are pairs of ids in two string tables, so
 * finding what differs is integer comparisons.
 *
 * Changes. gen counts changes to the table; each run remembers the gen of its last change
 * (mod_gen): appearing, its head or params changing, its experiment's shown params changing,
 * disappearing. A client that has everything up to gen G asks for since=G and gets only the runs
 * with mod_gen > G and the keys of those removed since. Removed runs stay in memory, unlisted
 * (their points dropped), so pointers to runs stay valid for the board's life (board_internal.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "board/board_internal.h"
#include "run/run_internal.h"

#define EXP_KEYS_MAX 32

static double mono_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- the table ---- */

static board_run *lookup(const kiln_board *b, const char *key) {
    if (!b->n_slots) return NULL;
    for (uint32_t j = (uint32_t)board_hash(key) & (b->n_slots - 1); b->slots[j];
         j = (j + 1) & (b->n_slots - 1))
        if (!strcmp(b->runs[b->slots[j] - 1]->key, key)) return b->runs[b->slots[j] - 1];
    return NULL;
}

static int slots_grow(kiln_board *b) {
    uint32_t n_slots = b->n_slots ? 2 * b->n_slots : 1024;
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots) return -1;
    for (int i = 0; i < b->n_runs; i++) {
        uint32_t j = (uint32_t)board_hash(b->runs[i]->key) & (n_slots - 1);
        while (slots[j]) j = (j + 1) & (n_slots - 1);
        slots[j] = (uint32_t)i + 1;
    }
    free(b->slots);
    b->slots = slots, b->n_slots = n_slots;
    return 0;
}

static int exp_index(kiln_board *b, const char *name) {
    for (int i = 0; i < b->n_exps; i++)
        if (!strcmp(b->exps[i].name, name)) return i;
    if (b->n_exps == b->cap_exps) {
        int cap = b->cap_exps ? 2 * b->cap_exps : 16;
        board_exp *e = realloc(b->exps, (size_t)cap * sizeof *e);
        if (!e) return -1;
        b->exps = e, b->cap_exps = cap;
    }
    board_exp *e = &b->exps[b->n_exps];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) return -1;
    return b->n_exps++;
}

static void run_free(board_run *r) {
    if (!r) return;
    free(r->key), free(r->dir), free(r->head), free(r->params);
    board_metrics_free(&r->m);
    free(r);
}

static board_run *add_run(kiln_board *b, int exp, const char *run) {
    if (2 * ((uint32_t)b->n_runs + 1) > b->n_slots && slots_grow(b)) return NULL;
    if (b->n_runs == b->cap_runs) {
        int cap = b->cap_runs ? 2 * b->cap_runs : 256;
        board_run **runs = realloc(b->runs, (size_t)cap * sizeof *runs);
        if (!runs) return NULL;
        b->runs = runs, b->cap_runs = cap;
    }
    board_run *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    board_metrics_init(&r->m, b->rev_base);
    const char *exp_name = b->exps[exp].name;
    size_t kn = strlen(exp_name) + 1 + strlen(run) + 1;
    r->key = malloc(kn);
    r->dir = malloc(strlen(b->runs_dir) + 1 + kn);
    if (!r->key || !r->dir) {
        run_free(r);
        return NULL;
    }
    snprintf(r->key, kn, "%s/%s", exp_name, run);
    sprintf(r->dir, "%s/%s", b->runs_dir, r->key);
    r->exp = exp;
    r->status = "unreadable";
    uint32_t j = (uint32_t)board_hash(r->key) & (b->n_slots - 1);
    while (b->slots[j]) j = (j + 1) & (b->n_slots - 1);
    b->runs[b->n_runs] = r;
    b->slots[j] = (uint32_t)++b->n_runs;
    return r;
}

/* ---- one run ---- */

static void put_metric_map(kiln_sbuf *s, const kiln_rundir *rd, kiln_run_which which) {
    kiln_sbuf_putc(s, '{');
    for (int i = 0, n = kiln_run_metric_count(rd, which); i < n; i++) {
        double v;
        const char *name = kiln_run_metric_at(rd, which, i, &v);
        if (i) kiln_sbuf_putc(s, ',');
        kiln_sbuf_json_str(s, name);
        kiln_sbuf_putc(s, ':');
        board_json_number(s, v);
    }
    kiln_sbuf_putc(s, '}');
}

static void put_str_or_null(kiln_sbuf *s, const char *v) {
    if (v)
        kiln_sbuf_json_str(s, v);
    else
        kiln_sbuf_puts(s, "null");
}

/* The newest modification time of the run's files: when a crashed run last did something. */
static int64_t last_update_ns(const board_run *r) {
    static const char *const FILES[] = {"run.json", "metrics.jsonl", "log.txt"};
    int64_t best = 0;
    char path[4096];
    for (int i = 0; i < 3; i++) {
        board_sig sig;
        if (!kiln_run_join(path, sizeof path, r->dir, FILES[i]) && board_sig_of(path, &sig) &&
            sig.mtime_ns > best)
            best = sig.mtime_ns;
    }
    return best;
}

/* Reads run.json (and probes the writer's lock) into r->head; 1 when the head changed. */
static int load_head(board_run *r) {
    kiln_sbuf s = KILN_SBUF_INIT;
    const char *slash = strchr(r->key, '/');
    kiln_sbuf_puts(&s, "{\"key\":");
    kiln_sbuf_json_str(&s, r->key);
    kiln_sbuf_puts(&s, ",\"run\":");
    kiln_sbuf_json_str(&s, slash + 1);
    kiln_rundir *rd = NULL;
    if (kiln_run_open(r->dir, KILN_RUN_READ, &rd)) {
        r->status = "unreadable", r->crashed = 0, r->says_running = 0;
        kiln_sbuf_puts(&s, ",\"experiment\":");
        kiln_sbuf_json_strn(&s, r->key, (size_t)(slash - r->key));
        kiln_sbuf_puts(&s, ",\"status\":\"unreadable\",\"error\":");
        kiln_sbuf_json_str(&s, kiln_last_error());
        kiln_error_clear();
    } else {
        kiln_run_info in = kiln_run_get_info(rd);
        r->says_running = in.status == KILN_RUN_RUNNING;
        r->crashed = r->says_running && !kiln_run_is_active(rd);
        r->status = r->crashed ? "failed" : kiln_run_state_name(in.status);
        kiln_sbuf_puts(&s, ",\"experiment\":");
        put_str_or_null(&s, in.experiment);
        kiln_sbuf_puts(&s, ",\"name\":");
        put_str_or_null(&s, in.name);
        kiln_sbuf_printf(&s, ",\"status\":\"%s\",\"crashed\":%s,\"message\":", r->status,
                         r->crashed ? "true" : "false");
        put_str_or_null(&s, r->crashed && !in.message
                                ? "the process ended without closing the run (killed or crashed)"
                                : in.message);
        kiln_sbuf_puts(&s, ",\"start_time\":");
        put_str_or_null(&s, in.start_time);
        kiln_sbuf_puts(&s, ",\"end_time\":");
        put_str_or_null(&s, in.end_time);
        kiln_sbuf_puts(&s, ",\"last_update\":");
        if (r->crashed)
            board_json_time(&s, last_update_ns(r));
        else
            kiln_sbuf_puts(&s, "null");
        kiln_sbuf_puts(&s, ",\"host\":");
        put_str_or_null(&s, in.host);
        kiln_sbuf_printf(&s, ",\"epochs\":%lld,\"steps\":%lld,\"best_step\":",
                         (long long)in.epochs_completed, (long long)in.steps);
        if (in.best_step >= 0)
            kiln_sbuf_i64(&s, in.best_step);
        else
            kiln_sbuf_puts(&s, "null");
        kiln_sbuf_puts(&s, ",\"checkpoint\":");
        put_str_or_null(&s, in.checkpoint);
        kiln_sbuf_puts(&s, ",\"final\":");
        put_metric_map(&s, rd, KILN_RUN_FINAL);
        kiln_sbuf_puts(&s, ",\"best\":");
        put_metric_map(&s, rd, KILN_RUN_BEST);
        kiln_run_close(rd);
    }
    if (s.failed) { /* out of memory: keep the old head */
        kiln_sbuf_free(&s);
        return 0;
    }
    if (r->head && !strcmp(r->head, s.data)) {
        kiln_sbuf_free(&s);
        return 0;
    }
    free(r->head);
    r->head = kiln_sbuf_take(&s, NULL);
    return 1;
}

static int param_cmp(const void *a, const void *b) {
    uint32_t x = ((const board_param *)a)->key, y = ((const board_param *)b)->key;
    return x < y ? -1 : x > y;
}

/* Reads <dir>/config.yaml into r->params (none when it is missing or unreadable). */
static void load_params(kiln_board *b, board_run *r, const char *dir) {
    free(r->params);
    r->params = NULL, r->n_params = 0;
    board_kv *kv = NULL;
    int n = 0;
    char path[4096];
    if (kiln_run_join(path, sizeof path, dir, "config.yaml") || board_params_read(path, &kv, &n)) {
        kiln_error_clear();
        return;
    }
    board_param *p = n ? malloc((size_t)n * sizeof *p) : NULL;
    int k = 0;
    for (int i = 0; p && i < n; i++) {
        uint32_t key = board_strtab_intern(&b->keys, kv[i].key);
        uint32_t val = board_strtab_intern(&b->vals, kv[i].value);
        if (key != UINT32_MAX && val != UINT32_MAX) p[k++] = (board_param){key, val};
    }
    board_params_free(kv, n);
    if (k) qsort(p, (size_t)k, sizeof *p, param_cmp);
    r->params = p, r->n_params = p ? k : 0;
}

static void unlist(kiln_board *b, board_run *r) {
    if (!r->listed) return;
    r->listed = 0;
    r->mod_gen = ++b->gen;
    b->exps[r->exp].dirty = 1;
    memset(&r->run_sig, 0, sizeof r->run_sig);
    memset(&r->cfg_sig, 0, sizeof r->cfg_sig);
    if (!pthread_mutex_trylock(&r->m.mu)) { /* a busy reader finds the file gone itself */
        board_metrics_reset(&r->m);
        pthread_mutex_unlock(&r->m.mu);
    }
}

/* Stats run.json and reads it when it changed, or when it says running and a process held the
 * run last time (its lock is probed again: has it crashed?). A crashed run is not probed again
 * until its run.json changes: kiln train --resume takes the lock and then saves run.json.
 * config.yaml, which kiln train writes once, is looked at again only while it has not been read,
 * the run is live or its run.json changed. at and rel name the run's folder (rel relative to the
 * folder at; the listing passes the experiment's folder, so a stat walks two names, not the
 * whole path). */
static void refresh(kiln_board *b, board_run *r, int at, const char *rel) {
    char path[4096];
    board_sig sig;
    r->seen = 1;
    if (snprintf(path, sizeof path, "%s/run.json", rel) >= (int)sizeof path ||
        !board_sig_at(at, path, &sig)) {
        unlist(b, r);
        return;
    }
    int changed = !r->listed, run_changed = !board_sig_same(&sig, &r->run_sig);
    int live = r->says_running && !r->crashed;
    r->listed = 1;
    if (changed || run_changed || live) {
        r->run_sig = sig;
        changed |= load_head(r);
    }
    if ((changed || run_changed || live || !r->cfg_sig.exists) &&
        snprintf(path, sizeof path, "%s/config.yaml", rel) < (int)sizeof path) {
        board_sig_at(at, path, &sig);
        if (!board_sig_same(&sig, &r->cfg_sig)) {
            r->cfg_sig = sig;
            load_params(b, r, r->dir);
            b->exps[r->exp].dirty = 1;
            changed = 1;
        }
    }
    if (changed) r->mod_gen = ++b->gen;
}

/* ---- the params each experiment shows ---- */

static int always_shown(const char *key) {
    if (!strcmp(key, "data.batch_size") || !strcmp(key, "train.epochs")) return 1;
    const char *dot = strchr(key, '.');
    return !strncmp(key, "optimizer.", 10) && dot && strchr(dot + 1, '.') &&
           !strcmp(strchr(dot + 1, '.'), ".learning_rate");
}

static int u32_cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Recomputes the shown params of every dirty experiment. */
static void update_exp_keys(kiln_board *b) {
    int any = 0;
    for (int e = 0; e < b->n_exps; e++) any |= b->exps[e].dirty;
    if (!any) return;
    uint32_t nk = b->keys.n;
    int *order = malloc(((size_t)b->n_runs + 1) * sizeof *order);
    int *start = calloc((size_t)b->n_exps + 1, sizeof *start);
    uint32_t *first = malloc(((size_t)nk + 1) * sizeof *first);
    int *count = calloc((size_t)nk + 1, sizeof *count);
    unsigned char *differs = calloc((size_t)nk + 1, 1);
    uint32_t *touched = malloc(((size_t)nk + 1) * sizeof *touched);
    if (!order || !start || !first || !count || !differs || !touched) goto done;
    /* listed runs grouped by experiment (a counting sort) */
    for (int i = 0; i < b->n_runs; i++)
        if (b->runs[i]->listed) start[b->runs[i]->exp + 1]++;
    for (int e = 0; e < b->n_exps; e++) start[e + 1] += start[e];
    {
        int *fill = calloc((size_t)b->n_exps, sizeof *fill);
        if (!fill) goto done;
        for (int i = 0; i < b->n_runs; i++)
            if (b->runs[i]->listed) {
                int e = b->runs[i]->exp;
                order[start[e] + fill[e]++] = i;
            }
        free(fill);
    }
    for (int e = 0; e < b->n_exps; e++) {
        board_exp *x = &b->exps[e];
        if (!x->dirty) continue;
        int nr = start[e + 1] - start[e];
        uint32_t nt = 0;
        for (int k = start[e]; k < start[e + 1]; k++) {
            const board_run *r = b->runs[order[k]];
            for (int i = 0; i < r->n_params; i++) {
                uint32_t key = r->params[i].key, val = r->params[i].val;
                if (!count[key]++)
                    first[key] = val, touched[nt++] = key;
                else if (first[key] != val)
                    differs[key] = 1;
            }
        }
        qsort(touched, nt, sizeof *touched, u32_cmp);
        uint32_t keys[EXP_KEYS_MAX];
        int n = 0;
        for (uint32_t t = 0; t < nt && n < EXP_KEYS_MAX; t++) {
            uint32_t key = touched[t];
            if ((nr > 1 && (differs[key] || count[key] != nr)) || always_shown(b->keys.str[key]))
                keys[n++] = key;
        }
        for (uint32_t t = 0; t < nt; t++) count[touched[t]] = 0, differs[touched[t]] = 0;
        x->dirty = 0;
        if (n == x->n_keys && (n == 0 || !memcmp(keys, x->keys, (size_t)n * sizeof *keys)))
            continue;
        uint32_t *copy = n ? malloc((size_t)n * sizeof *copy) : NULL;
        if (n && !copy) continue;
        if (n) memcpy(copy, keys, (size_t)n * sizeof *keys);
        free(x->keys);
        x->keys = copy, x->n_keys = n;
        uint64_t g = ++b->gen; /* every run of the experiment shows other columns now */
        for (int k = start[e]; k < start[e + 1]; k++) b->runs[order[k]]->mod_gen = g;
    }
done:
    free(order), free(start), free(first), free(count), free(differs), free(touched);
}

/* ---- listing ---- */

/* A folder entry that may name an experiment or a run: not hidden, a plain name. */
static int plain_name(const char *s) {
    return s[0] && s[0] != '.' && strlen(s) < 256;
}

static int is_dir_entry(DIR *d, const struct dirent *e) {
    if (e->d_type == DT_DIR) return 1;
    if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK) return 0;
    struct stat st;
    return fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

static void scan_experiment(kiln_board *b, const char *exp) {
    char dir[4096];
    if (kiln_run_join(dir, sizeof dir, b->runs_dir, exp)) return;
    DIR *d = opendir(dir);
    if (!d) return;
    int e = -1;
    for (struct dirent *ent; (ent = readdir(d));) {
        if (!plain_name(ent->d_name)) continue;
        char key[600];
        snprintf(key, sizeof key, "%s/%s", exp, ent->d_name);
        board_run *r = lookup(b, key);
        if (!r) { /* new: only folders with a run.json become runs */
            char rel[300];
            struct stat st;
            snprintf(rel, sizeof rel, "%s/run.json", ent->d_name);
            if (fstatat(dirfd(d), rel, &st, 0) != 0 || !S_ISREG(st.st_mode)) continue;
            if (e < 0 && (e = exp_index(b, exp)) < 0) break;
            if (!(r = add_run(b, e, ent->d_name))) break;
        }
        refresh(b, r, dirfd(d), ent->d_name);
    }
    closedir(d);
}

kiln_status board_scan(kiln_board *b, int force) {
    double t = mono_now();
    if (!force && b->last_scan >= 0 && b->rescan_seconds >= 0 &&
        t - b->last_scan < b->rescan_seconds)
        return KILN_OK;
    DIR *d = opendir(b->runs_dir);
    if (!d)
        return kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO,
                          "board: cannot list the runs folder %s: %s", b->runs_dir,
                          strerror(errno));
    for (int i = 0; i < b->n_runs; i++) b->runs[i]->seen = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (plain_name(e->d_name) && is_dir_entry(d, e)) scan_experiment(b, e->d_name);
    closedir(d);
    b->n_listed = 0;
    for (int i = 0; i < b->n_runs; i++) {
        if (!b->runs[i]->seen) unlist(b, b->runs[i]);
        b->n_listed += b->runs[i]->listed;
    }
    update_exp_keys(b);
    b->last_scan = t;
    return KILN_OK;
}

board_run *board_find(kiln_board *b, const char *exp, const char *run) {
    char key[600], path[4096];
    struct stat st;
    if (snprintf(key, sizeof key, "%s/%s", exp, run) >= (int)sizeof key) return NULL;
    board_run *r = lookup(b, key);
    if (!r) { /* made since the last listing? */
        int e;
        if (snprintf(path, sizeof path, "%s/%s/run.json", b->runs_dir, key) >= (int)sizeof path ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (e = exp_index(b, exp)) < 0 ||
            !(r = add_run(b, e, run)))
            return NULL;
    }
    int was = r->listed;
    refresh(b, r, AT_FDCWD, r->dir);
    b->n_listed += r->listed - was;
    update_exp_keys(b);
    return r->listed ? r : NULL;
}

/* ---- /api/runs ---- */

static void put_params(const kiln_board *b, const board_run *r, kiln_sbuf *s) {
    const board_exp *x = &b->exps[r->exp];
    kiln_sbuf_puts(s, ",\"params\":{");
    int i = 0, first = 1;
    for (int k = 0; k < x->n_keys; k++) { /* both sorted by key id */
        while (i < r->n_params && r->params[i].key < x->keys[k]) i++;
        if (i == r->n_params) break;
        if (r->params[i].key != x->keys[k]) continue;
        if (!first) kiln_sbuf_putc(s, ',');
        first = 0;
        kiln_sbuf_json_str(s, b->keys.str[x->keys[k]]);
        kiln_sbuf_putc(s, ':');
        kiln_sbuf_json_str(s, b->vals.str[r->params[i].val]);
    }
    kiln_sbuf_puts(s, "}}");
}

void board_render_runs(kiln_board *b, uint64_t since, kiln_sbuf *s) {
    int full = since == 0 || since > b->gen;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    kiln_sbuf_printf(s, "{\"board\":\"%s\",\"gen\":%llu,\"full\":%s,\"now\":%lld.%03ld,",
                     b->instance, (unsigned long long)b->gen, full ? "true" : "false",
                     (long long)now.tv_sec, now.tv_nsec / 1000000);
    kiln_sbuf_puts(s, "\"runs_dir\":");
    kiln_sbuf_json_str(s, b->runs_dir);
    kiln_sbuf_printf(s, ",\"count\":%d,\"param_keys\":{", b->n_listed);
    int first = 1;
    for (int e = 0; e < b->n_exps; e++) {
        const board_exp *x = &b->exps[e];
        if (!x->n_keys) continue;
        if (!first) kiln_sbuf_putc(s, ',');
        first = 0;
        kiln_sbuf_json_str(s, x->name);
        kiln_sbuf_puts(s, ":[");
        for (int k = 0; k < x->n_keys; k++) {
            if (k) kiln_sbuf_putc(s, ',');
            kiln_sbuf_json_str(s, b->keys.str[x->keys[k]]);
        }
        kiln_sbuf_putc(s, ']');
    }
    kiln_sbuf_puts(s, "},\"runs\":[");
    first = 1;
    for (int i = 0; i < b->n_runs; i++) {
        const board_run *r = b->runs[i];
        if (!r->listed || !r->head || (!full && r->mod_gen <= since)) continue;
        if (!first) kiln_sbuf_putc(s, ',');
        first = 0;
        kiln_sbuf_puts(s, r->head);
        put_params(b, r, s);
    }
    kiln_sbuf_puts(s, "],\"removed\":[");
    first = 1;
    for (int i = 0; !full && i < b->n_runs; i++) {
        const board_run *r = b->runs[i];
        if (r->listed || r->mod_gen <= since) continue;
        if (!first) kiln_sbuf_putc(s, ',');
        first = 0;
        kiln_sbuf_json_str(s, r->key);
    }
    kiln_sbuf_puts(s, "]}");
}

void board_index_free(kiln_board *b) {
    for (int i = 0; i < b->n_runs; i++) run_free(b->runs[i]);
    free(b->runs);
    free(b->slots);
    for (int e = 0; e < b->n_exps; e++) free(b->exps[e].name), free(b->exps[e].keys);
    free(b->exps);
    board_strtab_free(&b->keys);
    board_strtab_free(&b->vals);
    b->runs = NULL, b->slots = NULL, b->exps = NULL;
    b->n_runs = b->n_exps = 0;
}

/* study.c — `kiln tune`: running a study's trials as child processes and recording them.
 *
 * A trial is `kiln train CONFIG --set <the user's sets> --set tune=null --set <key=value>...
 * --name <study>-t<NNN> --runs-dir D --threads T --quiet`, an ordinary run in the runs folder
 * and the registry (so kiln runs, the board and TensorBoard's HParams show its parameters, which
 * are config keys). With --launcher slurm the same command runs as `srun -n1 -c T ...`.
 *
 * The loop (one tuner per study; <runs>/studies/<study>/lock is flock'ed):
 *   - keep up to P trials running: a new one gets its point from the sampler over the finished
 *     trials; its row goes into the trials table (running) before it starts;
 *   - every 100 ms: read each running trial's new metrics.jsonl lines; each new point of the
 *     objective goes through the pruner; a trial to prune gets SIGUSR1, on which the trainer
 *     checkpoints and ends its run as "pruned" (the run folder stays consistent: only its own
 *     process writes it);
 *   - a trial that exits is recorded from its run.json: finished (value: the best point of the
 *     objective), pruned (value: its last point), failed; one that died without saying (kill
 *     -9, status still running, or stopped by someone else) is resumed from its newest
 *     checkpoint (`kiln train --resume`), or started again without one, up to 3 times.
 * Children get SIGTERM when the tuner dies (PR_SET_PDEATHSIG), so they checkpoint and stop;
 * SIGINT/SIGTERM to the tuner stops it the same way. `kiln tune --resume STUDY` reads the study
 * (its spec: config, sets, budget) and trials from the registry: finished, pruned and failed
 * trials are reused; the rest wait for their process to let go of the run folder, then are
 * taken as finished/pruned if their run says so, else resumed from their checkpoints.
 *
 * Determinism: with --parallel 1 a study is a function of the config and the seed (trials are
 * deterministic trainings and the sampler a pure function of the history); with P > 1 the
 * order in which trials finish decides what the sampler sees.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <cjson/cJSON.h>

#include "kiln/fileio.h"
#include "kiln/inputs.h"
#include "kiln/registry.h"
#include "kiln/run.h"
#include "kiln/tune.h"

#define MAX_RETRIES 3

typedef struct {
    int number;
    char state[12]; /* "", running, finished, pruned, failed */
    double *x;
    char run[8192];   /* the run folder ("" until the child made it) */
    pid_t pid;        /* > 0 while its process runs */
    int resume;       /* start it as kiln train --resume run */
    int pruning, retries, rung; /* pruning: the points it had when the pruner decided (0: none) */
    double *res, *val;
    int n, cap;
    long off; /* metrics.jsonl bytes read */
    double value, resource;
    int has_value;
    char start[24], message[256];
    char stale[300]; /* a folder of an earlier attempt, started again: newer ones only */
} trial;

typedef struct {
    kiln_tune_space s;
    char study[256], experiment[KILN_RUN_NAME_MAX + 1], runs_dir[4096], dir[4400];
    char config[4096], space_file[4096], kiln[4096];
    char *config_text, *space_text; /* what the spec stores (resume runs on these) */
    char **sets;
    int n_sets, trials, parallel, threads, slurm, quiet;
    char split[16], metric[200];
    trial *t;
    int n;
    kiln_registry *reg;
} study;

static volatile sig_atomic_t stop_sig;
static void on_stop(int sig) { stop_sig = sig; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
static void iso_now(char out[24]) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- the objective's points from metrics.jsonl ---- */

static void objective_name(study *st) {
    const char *m = st->s.metric;
    if (!strncmp(m, "val_", 4)) snprintf(st->split, sizeof st->split, "validation"), m += 4;
    else if (!strncmp(m, "test_", 5)) snprintf(st->split, sizeof st->split, "test"), m += 5;
    else snprintf(st->split, sizeof st->split, "train");
    snprintf(st->metric, sizeof st->metric, "%s", m);
}

static void add_point(trial *t, double r, double v) {
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        double *a = realloc(t->res, (size_t)cap * sizeof *a);
        if (!a) return;
        t->res = a;
        double *b = realloc(t->val, (size_t)cap * sizeof *b);
        if (!b) return;
        t->val = b, t->cap = cap;
    }
    t->res[t->n] = r, t->val[t->n] = v, t->n++;
}

/* Reads the complete lines added since the last call; returns how many points it added. */
static int read_points(study *st, trial *t) {
    if (!t->run[0]) return 0;
    char path[8300];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->run);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int added = 0;
    if (fseek(f, t->off, SEEK_SET) == 0) {
        char line[8192];
        while (fgets(line, sizeof line, f)) {
            size_t len = strlen(line);
            if (!len || line[len - 1] != '\n') break; /* being written */
            t->off += (long)len;
            cJSON *j = cJSON_Parse(line);
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "split");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(j, "name");
            if (cJSON_IsString(sp) && cJSON_IsString(nm) && !strcmp(sp->valuestring, st->split) &&
                !strcmp(nm->valuestring, st->metric)) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
                const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, st->s.by_step ? "step" : "epoch");
                add_point(t, cJSON_IsNumber(r) ? r->valuedouble : t->n + 1,
                          cJSON_IsNumber(v) ? v->valuedouble : NAN);
                added++;
            }
            cJSON_Delete(j);
        }
    }
    fclose(f);
    return added;
}

/* ---- the registry rows ---- */

static char *params_json(const study *st, const double *x, int as_x) {
    cJSON *o = as_x ? cJSON_CreateArray() : cJSON_CreateObject();
    for (int i = 0; o && i < st->s.n_params; i++) {
        if (as_x) {
            cJSON_AddItemToArray(o, isnan(x[i]) ? cJSON_CreateNull() : cJSON_CreateNumber(x[i]));
            continue;
        }
        if (isnan(x[i])) continue;
        char buf[1024];
        kiln_tune_display(&st->s, x, i, buf, sizeof buf);
        if (st->s.params[i].kind != KILN_TUNE_CHOICE) cJSON_AddNumberToObject(o, st->s.params[i].key, x[i]);
        else cJSON_AddStringToObject(o, st->s.params[i].key, buf);
    }
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static void record(study *st, trial *t) {
    char *p = params_json(st, t->x, 0), *x = params_json(st, t->x, 1);
    char end[24] = "", id[8300] = "";
    if (strcmp(t->state, "running")) iso_now(end);
    size_t rl = strlen(st->runs_dir);
    if (t->run[0]) snprintf(id, sizeof id, "%s", !strncmp(t->run, st->runs_dir, rl) && t->run[rl] == '/' ? t->run + rl + 1 : t->run);
    kiln_registry_trial r = {.number = t->number, .state = t->state, .run = id[0] ? id : NULL,
                             .params = p ? p : "{}", .x = x ? x : "[]", .has_value = t->has_value,
                             .value = t->value, .has_resource = t->n > 0,
                             .resource = t->n ? t->res[t->n - 1] : 0, .start_time = t->start,
                             .end_time = end[0] ? end : NULL, .message = t->message[0] ? t->message : NULL};
    if (kiln_registry_trial_put(st->reg, st->study, &r))
        fprintf(stderr, "kiln tune: warning: %s\n", kiln_last_error());
    free(p), free(x);
}

/* ---- trials' processes ---- */

static void trial_name(const study *st, int number, char *out, size_t cap) {
    snprintf(out, cap, "%s-t%03d", st->study, number);
}

/* The newest run folder named after the trial (its name, then "-"): ones made by this trial. */
static int newer(const char *a, const char *b) { /* folder names of one run name */
    return strlen(a) > strlen(b) || (strlen(a) == strlen(b) && strcmp(a, b) > 0);
}

static void find_run(study *st, trial *t) {
    char name[400], san[KILN_RUN_NAME_MAX + 1], dir[4400], best[300] = "";
    snprintf(best, sizeof best, "%s", t->stale);
    trial_name(st, t->number, name, sizeof name);
    kiln_run_sanitize(name, san);
    size_t n = strlen(san);
    snprintf(dir, sizeof dir, "%s/%s", st->runs_dir, st->experiment);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, san, n) || e->d_name[n] != '-' || e->d_name[n + 1] < '0' || e->d_name[n + 1] > '9')
            continue;
        char rj[4800];
        snprintf(rj, sizeof rj, "%s/%s/run.json", dir, e->d_name);
        if (access(rj, R_OK)) continue;
        if (newer(e->d_name, best)) snprintf(best, sizeof best, "%s", e->d_name);
    }
    closedir(d);
    if (best[0] && strcmp(best, t->stale)) snprintf(t->run, sizeof t->run, "%s/%s", dir, best);
}

static int launch(study *st, trial *t) {
    int per = st->threads / st->parallel;
    if (per < 1) per = 1;
    char threads[32], name[400], log[5200], cpus[48];
    snprintf(threads, sizeof threads, "%d", per);
    snprintf(cpus, sizeof cpus, "--cpus-per-task=%d", per);
    trial_name(st, t->number, name, sizeof name);
    snprintf(log, sizeof log, "%s/%s.log", st->dir, name);
    int cap = 32 + 2 * (st->n_sets + st->s.n_params);
    char **argv = calloc((size_t)cap, sizeof *argv);
    char **owned = calloc((size_t)st->s.n_params + 1, sizeof *owned);
    if (!argv || !owned) {
        free(argv), free(owned);
        return -1;
    }
    int a = 0;
    if (st->slurm) {
        argv[a++] = "srun", argv[a++] = "--ntasks=1", argv[a++] = cpus, argv[a++] = "--quiet";
        argv[a++] = "--job-name", argv[a++] = name;
    }
    argv[a++] = st->kiln, argv[a++] = "train";
    if (t->resume) {
        argv[a++] = "--resume", argv[a++] = t->run;
    } else {
        argv[a++] = st->config;
        for (int i = 0; i < st->n_sets; i++) argv[a++] = "--set", argv[a++] = st->sets[i];
        argv[a++] = "--set", argv[a++] = "tune=null";
        for (int i = 0; i < st->s.n_params; i++) {
            if (isnan(t->x[i])) continue;
            char buf[4096];
            if (kiln_tune_assignment(&st->s, t->x, i, buf, sizeof buf)) continue;
            owned[i] = strdup(buf);
            argv[a++] = "--set", argv[a++] = owned[i];
        }
        argv[a++] = "--name", argv[a++] = name;
        argv[a++] = "--runs-dir", argv[a++] = st->runs_dir;
    }
    argv[a++] = "--threads", argv[a++] = threads, argv[a++] = "--quiet";
    argv[a] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1);
        signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the tuner, which stops the trials itself */
        /* a prune that comes when training is over must not kill the process as it saves: the
         * trainer takes SIGUSR1 during its loop only and restores this (ignored) after it */
        signal(SIGUSR1, SIG_IGN);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0), close(nul);
        char omp[32];
        snprintf(omp, sizeof omp, "%d", per);
        setenv("OMP_NUM_THREADS", omp, 1);
        execvp(argv[0], argv);
        fprintf(stderr, "kiln tune: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < st->s.n_params; i++) free(owned[i]);
    free(owned), free(argv);
    if (pid < 0) return -1;
    t->pid = pid;
    t->pruning = 0;
    snprintf(t->state, sizeof t->state, "running");
    return 0;
}

/* ---- outcomes ---- */

static double best_of(const study *st, const trial *t) {
    double b = NAN;
    for (int i = 0; i < t->n; i++) {
        double v = t->val[i];
        if (isnan(v)) continue;
        if (isnan(b) || (st->s.maximize ? v > b : v < b)) b = v;
    }
    return b;
}

static void say(const study *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const study *st, const char *fmt, ...) {
    if (st->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static void describe(const study *st, const trial *t, char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < st->s.n_params; i++) {
        if (isnan(t->x[i])) continue;
        char v[256];
        kiln_tune_display(&st->s, t->x, i, v, sizeof v);
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s=%s", buf[0] ? " " : "", st->s.params[i].key, v);
    }
}

static void best_so_far(const study *st, double *best, int *who) {
    *best = NAN, *who = -1;
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->t[i].state, "finished") && st->t[i].has_value &&
            (*who < 0 || (st->s.maximize ? st->t[i].value > *best : st->t[i].value < *best)))
            *best = st->t[i].value, *who = i;
}

/* The run's status ("" when it has no run.json) and whether it has a checkpoint. */
static void run_status(const trial *t, char *status, size_t cap, int *has_ckpt) {
    status[0] = 0, *has_ckpt = 0;
    kiln_rundir *r = NULL;
    if (!t->run[0] || kiln_run_open(t->run, KILN_RUN_READ, &r)) return;
    kiln_run_info info = kiln_run_get_info(r);
    snprintf(status, cap, "%s", kiln_run_state_name(info.status));
    *has_ckpt = info.checkpoint != NULL;
    kiln_run_close(r);
}

/* Starting again from nothing: the earlier folder stays (it says failed or running). */
static void forget_run(trial *t) {
    const char *slash = strrchr(t->run, '/');
    if (t->run[0]) snprintf(t->stale, sizeof t->stale, "%.299s", slash ? slash + 1 : t->run);
    t->run[0] = 0, t->n = 0, t->off = 0, t->rung = 0;
}

kiln_status kiln_tune_mark_pruned(const char *run_dir, double resource, int by_step) {
    kiln_rundir *r = NULL;
    kiln_status s = kiln_run_open(run_dir, KILN_RUN_WRITE, &r);
    if (s) return s;
    kiln_registry_follow_run(r, 0);
    char msg[200];
    snprintf(msg, sizeof msg, "pruned by kiln tune at %s %g (the run had trained to its end "
             "before the prune signal reached it)", by_step ? "step" : "epoch", resource);
    if (kiln_run_get_info(r).status != KILN_RUN_FINISHED)
        s = kiln_error(KILN_ERR_INVALID, "%s: only a finished run is marked pruned", run_dir);
    /* a status changes only from running (kiln/run.h): through it, saved once; end_time becomes
     * now, a moment after the process ended */
    if (!s && !(s = kiln_run_set_status(r, KILN_RUN_RUNNING, NULL)) &&
        !(s = kiln_run_set_status(r, KILN_RUN_PRUNED, msg)))
        s = kiln_run_save(r);
    if (!s) kiln_run_log(r, "%s", msg);
    kiln_run_close(r);
    return s;
}

/* A trial whose process is gone: what its run says decides. 1: it runs again. */
static int settle(study *st, trial *t, int exit_code) {
    if (!t->run[0]) find_run(st, t);
    while (read_points(st, t)) {}
    char status[16];
    int ckpt;
    run_status(t, status, sizeof status, &ckpt);
    char line[2048];
    describe(st, t, line, sizeof line);
    /* the pruner's decision decides, whatever the trial logged before the signal reached it, so
     * what a study does stays a function of its points; a run that finished before the signal
     * reached it is marked pruned as well, so the study and the run agree */
    if (kiln_tune_outcome(status, t->pruning) == KILN_TUNE_OUTCOME_PRUNED && t->pruning) {
        t->n = t->pruning < t->n ? t->pruning : t->n;
        if (!strcmp(status, "finished")) {
            if (kiln_tune_mark_pruned(t->run, t->n ? t->res[t->n - 1] : 0, st->s.by_step))
                fprintf(stderr, "kiln tune: warning: trial %d: %s\n", t->number, kiln_last_error());
            snprintf(t->message, sizeof t->message,
                     "its run had finished before the prune signal reached it");
        }
        snprintf(status, sizeof status, "pruned");
    }
    if (!strcmp(status, "finished")) {
        t->value = best_of(st, t);
        t->has_value = !isnan(t->value);
        snprintf(t->state, sizeof t->state, t->has_value ? "finished" : "failed");
        if (!t->has_value)
            snprintf(t->message, sizeof t->message, "the run never logged %s", st->s.metric);
    } else if (!strcmp(status, "pruned")) {
        snprintf(t->state, sizeof t->state, "pruned");
        t->has_value = t->n > 0 && !isnan(t->val[t->n - 1]);
        t->value = t->has_value ? t->val[t->n - 1] : 0;
    } else if (!strcmp(status, "failed") || exit_code == 2 || exit_code == 127 || (!status[0] && !stop_sig &&
                                                                                    t->retries >= MAX_RETRIES)) {
        snprintf(t->state, sizeof t->state, "failed");
        snprintf(t->message, sizeof t->message, "%s",
                 status[0] ? "the run failed (see its log.txt)" : "the trial did not start (see its .log)");
    } else if (stop_sig) {
        record(st, t); /* stays running in the registry: kiln tune --resume continues it */
        return 0;
    } else if (t->retries < MAX_RETRIES) {
        t->retries++;
        t->resume = ckpt;
        if (!ckpt) forget_run(t);
        say(st, "trial %d: its process ended without finishing (%s): %s\n", t->number,
            status[0] ? status : "no run", ckpt ? "resuming from its checkpoint" : "starting it again");
        return launch(st, t) == 0;
    } else {
        snprintf(t->state, sizeof t->state, "failed");
        snprintf(t->message, sizeof t->message, "interrupted %d times", MAX_RETRIES + 1);
    }
    record(st, t);
    double best;
    int who;
    best_so_far(st, &best, &who);
    char val[64] = "-";
    if (t->has_value) snprintf(val, sizeof val, "%.6g", t->value);
    say(st, "trial %d %s: %s %s (%s); best so far %.6g (trial %d)\n", t->number, t->state,
        st->s.metric, val, line, best, who >= 0 ? st->t[who].number : -1);
    return 0;
}

/* ---- sampling ---- */

static kiln_status new_trial(study *st, trial **out) {
    trial *a = realloc(st->t, (size_t)(st->n + 1) * sizeof *a);
    if (!a) return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    st->t = a;
    trial *t = &st->t[st->n];
    memset(t, 0, sizeof *t);
    t->number = st->n;
    if (!(t->x = malloc((size_t)(st->s.n_params ? st->s.n_params : 1) * sizeof *t->x)))
        return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    st->n++;
    *out = t;
    return KILN_OK;
}

static kiln_status suggest(study *st, trial *t) {
    kiln_tune_obs *obs = calloc((size_t)st->n + 1, sizeof *obs);
    if (!obs) return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    int m = 0;
    for (int i = 0; i < st->n; i++) {
        const trial *o = &st->t[i];
        if (!strcmp(o->state, "finished") && o->has_value)
            obs[m++] = (kiln_tune_obs){o->x, o->value, 0, KILN_TRIAL_COMPLETE};
        else if (!strcmp(o->state, "pruned"))
            obs[m++] = (kiln_tune_obs){o->x, o->has_value ? o->value : NAN,
                                       o->n ? o->res[o->n - 1] : 0, KILN_TRIAL_PRUNED};
    }
    kiln_status s = kiln_tune_suggest(&st->s, obs, m, (uint64_t)t->number, t->x);
    free(obs);
    return s;
}

static void check_prune(study *st, trial *t, int before) {
    if (st->s.pruner == KILN_TUNE_NOPRUNE || t->pruning || t->pid <= 0) return;
    kiln_tune_curve *c = calloc((size_t)st->n, sizeof *c);
    int *complete = calloc((size_t)st->n, sizeof *complete);
    if (!c || !complete) {
        free(c), free(complete);
        return;
    }
    int self = (int)(t - st->t), prune = 0;
    for (int i = 0; i < st->n; i++) {
        const trial *o = &st->t[i]; /* a trial being pruned counts up to the decision only */
        c[i] = (kiln_tune_curve){o->res, o->val, o->pruning ? o->pruning : o->n};
        complete[i] = !strcmp(st->t[i].state, "finished");
    }
    /* each new point as if reported on its own */
    int k;
    for (k = before + 1; k <= t->n && !prune; k++) {
        c[self].n = k;
        prune = st->s.pruner == KILN_TUNE_ASHA ? kiln_tune_asha_prune(&st->s, c, st->n, self, &t->rung)
                                               : kiln_tune_median_prune(&st->s, c, complete, st->n, self);
    }
    free(c), free(complete);
    if (prune) {
        t->pruning = k - 1;
        kill(t->pid, SIGUSR1);
        say(st, "trial %d: pruning at %s %g (%s %.6g)\n", t->number, st->s.by_step ? "step" : "epoch",
            t->res[k - 2], st->s.metric, t->val[k - 2]);
    }
}

/* ---- setting up ---- */

static kiln_status load_space(study *st) {
    kiln_cfg *root = NULL, *sp = NULL;
    kiln_status s = kiln_config_load(st->config, &root);
    for (int i = 0; !s && i < st->n_sets; i++) s = kiln_config_set(root, st->sets[i]);
    if (!s && st->space_file[0]) s = kiln_config_load(st->space_file, &sp);
    if (!s) {
        const kiln_cfg *tune = sp ? (kiln_cfg_child(sp, "tune") ? kiln_cfg_child(sp, "tune") : sp)
                                  : kiln_cfg_child(root, "tune");
        if (!tune) s = kiln_error(KILN_ERR_INVALID, "%s: no tune: section (or give --space FILE)", st->config);
        else s = kiln_tune_space_parse(tune, root, &st->s);
    }
    if (!s) {
        char exp[KILN_RUN_NAME_MAX + 1];
        kiln_run_sanitize(kiln_cfg_str(root, "experiment", "default"), exp);
        snprintf(st->experiment, sizeof st->experiment, "%s", exp);
    }
    kiln_cfg_free(root), kiln_cfg_free(sp);
    return s;
}

/* The config file as a study stores it: loaded, its relative data paths made absolute (as a
 * run's config.yaml has them; paths 0: as they are), written back as YAML into *out. */
static kiln_status config_text(const char *path, int paths, char **out) {
    kiln_cfg *root = NULL;
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    kiln_status s = kiln_config_load(path, &root);
    if (!s && paths) s = kiln_inputs_resolve_paths(root, NULL);
    FILE *f = s ? NULL : open_memstream(&buf, &len);
    if (!s && !f) s = kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    if (f) s = kiln_config_write(root, f), fclose(f);
    kiln_cfg_free(root);
    if (s) free(buf);
    else *out = buf;
    return s;
}

/* On resume: the stored text into <study folder>/NAME, which the trials then run. */
static kiln_status materialize(study *st, const char *text, const char *name, char *path, size_t cap) {
    kiln_status s = kiln_mkdirs(st->dir);
    if (s) return s;
    if ((size_t)snprintf(path, cap, "%.4000s/%s", st->dir, name) >= cap)
        return kiln_error(KILN_ERR_INVALID, "tune: the study's folder path is too long");
    return kiln_file_write_atomic(path, text, strlen(text));
}

static char *spec_json(const study *st) {
    cJSON *o = cJSON_CreateObject(), *sets = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "config", st->config);
    if (st->config_text) cJSON_AddStringToObject(o, "config_text", st->config_text);
    if (st->space_file[0]) cJSON_AddStringToObject(o, "space", st->space_file);
    if (st->space_text) cJSON_AddStringToObject(o, "space_text", st->space_text);
    for (int i = 0; i < st->n_sets; i++) cJSON_AddItemToArray(sets, cJSON_CreateString(st->sets[i]));
    cJSON_AddItemToObject(o, "sets", sets);
    cJSON_AddNumberToObject(o, "trials", st->trials);
    cJSON_AddNumberToObject(o, "parallel", st->parallel);
    cJSON_AddNumberToObject(o, "threads", st->threads);
    cJSON_AddBoolToObject(o, "slurm", st->slurm);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

typedef struct {
    study *st;
    kiln_status s;
} load_ctx;

static int got_study(const kiln_registry_study *r, void *ctx) {
    load_ctx *c = ctx;
    study *st = c->st;
    cJSON *j = cJSON_Parse(r->spec);
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(j, "config");
    if (!cJSON_IsString(cf)) {
        c->s = kiln_error(KILN_ERR_FORMAT, "study %s: its spec names no config", r->name);
        cJSON_Delete(j);
        return 1;
    }
    snprintf(st->config, sizeof st->config, "%s", cf->valuestring);
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "space");
    if (cJSON_IsString(sp)) snprintf(st->space_file, sizeof st->space_file, "%s", sp->valuestring);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "config_text");
    const cJSON *stx = cJSON_GetObjectItemCaseSensitive(j, "space_text");
    if (cJSON_IsString(ct)) st->config_text = strdup(ct->valuestring);
    if (cJSON_IsString(stx)) st->space_text = strdup(stx->valuestring);
    const cJSON *sets = cJSON_GetObjectItemCaseSensitive(j, "sets"), *e;
    st->sets = calloc((size_t)cJSON_GetArraySize(sets) + 1, sizeof *st->sets);
    cJSON_ArrayForEach(e, sets) if (cJSON_IsString(e) && st->sets) st->sets[st->n_sets++] = strdup(e->valuestring);
    const cJSON *n;
    if (!st->trials && cJSON_IsNumber(n = cJSON_GetObjectItemCaseSensitive(j, "trials"))) st->trials = n->valueint;
    if (!st->parallel && cJSON_IsNumber(n = cJSON_GetObjectItemCaseSensitive(j, "parallel"))) st->parallel = n->valueint;
    if (!st->threads && cJSON_IsNumber(n = cJSON_GetObjectItemCaseSensitive(j, "threads"))) st->threads = n->valueint;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "slurm"))) st->slurm = 1;
    cJSON_Delete(j);
    return 1;
}

static int got_trial(const kiln_registry_trial *r, void *ctx) {
    load_ctx *c = ctx;
    study *st = c->st;
    trial *t;
    if ((c->s = new_trial(st, &t))) return 1;
    t->number = (int)r->number;
    snprintf(t->state, sizeof t->state, "%s", r->state);
    if (r->run) snprintf(t->run, sizeof t->run, "%s/%s", st->runs_dir, r->run);
    t->has_value = r->has_value, t->value = r->value;
    t->resource = r->has_resource ? r->resource : 0;
    snprintf(t->start, sizeof t->start, "%s", r->start_time ? r->start_time : "");
    if (r->message) snprintf(t->message, sizeof t->message, "%s", r->message);
    cJSON *x = cJSON_Parse(r->x);
    for (int i = 0; i < st->s.n_params; i++) {
        const cJSON *v = cJSON_GetArrayItem(x, i);
        t->x[i] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    }
    cJSON_Delete(x);
    return 0;
}

static void study_free(study *st) {
    for (int i = 0; i < st->n; i++) free(st->t[i].x), free(st->t[i].res), free(st->t[i].val);
    free(st->t);
    for (int i = 0; i < st->n_sets; i++) free(st->sets[i]);
    free(st->sets);
    kiln_tune_space_free(&st->s);
    kiln_registry_close(st->reg);
    free(st->config_text), free(st->space_text);
}

static int count_running(const study *st) {
    int r = 0;
    for (int i = 0; i < st->n; i++) r += st->t[i].pid > 0;
    return r;
}

kiln_status kiln_tune_run(const kiln_tune_opts *o, int *interrupted) {
    *interrupted = 0;
    study *st = calloc(1, sizeof *st);
    if (!st) return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    kiln_status s = KILN_OK;
    int lock = -1;
    snprintf(st->runs_dir, sizeof st->runs_dir, "%s", o->runs_dir ? o->runs_dir : "runs");
    for (size_t l = strlen(st->runs_dir); l > 1 && st->runs_dir[l - 1] == '/'; l--) st->runs_dir[l - 1] = 0;
    snprintf(st->kiln, sizeof st->kiln, "%s", o->kiln);
    st->trials = o->trials, st->parallel = o->parallel, st->threads = o->threads;
    st->slurm = o->slurm, st->quiet = o->quiet;
    if ((s = kiln_mkdirs(st->runs_dir)) || (s = kiln_registry_open(st->runs_dir, &st->reg))) goto out;
    if (o->resume) {
        snprintf(st->study, sizeof st->study, "%s", o->study);
        load_ctx c = {st, KILN_OK};
        if ((s = kiln_registry_studies(st->reg, st->study, got_study, &c)) || (s = c.s)) goto out;
        /* the config as it was when the study started, wherever its file is now */
        snprintf(st->dir, sizeof st->dir, "%s/studies/%s", st->runs_dir, st->study);
        if (st->config_text &&
            (s = materialize(st, st->config_text, "config.yaml", st->config, sizeof st->config)))
            goto out;
        if (st->space_text && (s = materialize(st, st->space_text, "space.yaml", st->space_file,
                                               sizeof st->space_file)))
            goto out;
        if ((s = load_space(st))) goto out;
        if ((s = kiln_registry_trials(st->reg, st->study, got_trial, &c)) || (s = c.s)) goto out;
        objective_name(st);
        for (int i = 0; i < st->n; i++) { /* the curves the pruner compares with */
            trial *t = &st->t[i];
            while (read_points(st, t)) {}
            if (!strcmp(t->state, "pruned") && t->resource > 0) /* up to its decision */
                for (int k = 0; k < t->n; k++)
                    if (t->res[k] >= t->resource - 1e-9) {
                        t->n = k + 1;
                        break;
                    }
        }
    } else {
        if (!realpath(o->config, st->config)) {
            s = kiln_error(KILN_ERR_NOTFOUND, "%s: %s", o->config, strerror(errno));
            goto out;
        }
        if (o->space && !realpath(o->space, st->space_file)) {
            s = kiln_error(KILN_ERR_NOTFOUND, "%s: %s", o->space, strerror(errno));
            goto out;
        }
        st->sets = calloc((size_t)o->n_sets + 1, sizeof *st->sets);
        for (int i = 0; st->sets && i < o->n_sets; i++) st->sets[st->n_sets++] = strdup(o->sets[i]);
        if ((s = load_space(st))) goto out;
        if ((s = config_text(st->config, 1, &st->config_text)) ||
            (st->space_file[0] && (s = config_text(st->space_file, 0, &st->space_text))))
            goto out;
        if (!st->trials) st->trials = st->s.trials;
        if (!st->parallel) st->parallel = st->s.parallel;
        if (!st->threads) {
            long c = sysconf(_SC_NPROCESSORS_ONLN);
            st->threads = c > 0 ? (int)c : 1;
        }
        if (o->study) snprintf(st->study, sizeof st->study, "%s", o->study);
        else {
            char t[32];
            time_t now = time(NULL);
            struct tm tm;
            localtime_r(&now, &tm);
            strftime(t, sizeof t, "%Y%m%d-%H%M%S", &tm);
            snprintf(st->study, sizeof st->study, "%s-%s", st->experiment, t);
        }
        char *spec = spec_json(st);
        kiln_registry_study row = {.name = st->study, .experiment = st->experiment,
                                   .metric = st->s.metric,
                                   .direction = st->s.maximize ? "maximize" : "minimize",
                                   .spec = spec ? spec : "{}"};
        s = kiln_registry_study_create(st->reg, &row);
        free(spec);
        if (s) goto out;
    }
    if (!st->trials) st->trials = st->s.trials;
    if (!st->parallel) st->parallel = st->s.parallel;
    if (!st->threads) st->threads = 1;
    objective_name(st);
    snprintf(st->dir, sizeof st->dir, "%s/studies/%s", st->runs_dir, st->study);
    if ((s = kiln_mkdirs(st->dir))) goto out;
    {
        char lp[4500];
        snprintf(lp, sizeof lp, "%s/lock", st->dir);
        lock = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB)) {
            s = kiln_error(KILN_ERR_INVALID, "study %s: another kiln tune is running it", st->study);
            goto out;
        }
    }
    say(st, "study %s: %d trials, %d at once, %d threads each; objective %s (%s); runs in %s/%s\n",
        st->study, st->trials, st->parallel, st->threads / st->parallel > 0 ? st->threads / st->parallel : 1,
        st->s.metric, st->s.maximize ? "max" : "min", st->runs_dir, st->experiment);

    struct sigaction sa = {.sa_handler = on_stop}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    stop_sig = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* trials a killed tuner left running: wait for their processes to let go, then settle */
    for (int i = 0; i < st->n; i++) {
        trial *t = &st->t[i];
        if (strcmp(t->state, "running")) continue;
        if (!t->run[0]) find_run(st, t);
        for (int w = 0; w < 600 && t->run[0]; w++) {
            kiln_rundir *r = NULL;
            if (kiln_run_open(t->run, KILN_RUN_READ, &r)) break;
            int busy = kiln_run_is_active(r);
            kiln_run_close(r);
            if (!busy) break;
            usleep(100000);
        }
        char status[16];
        int ckpt;
        run_status(t, status, sizeof status, &ckpt);
        t->retries = 0;
        if (!strcmp(status, "finished") || !strcmp(status, "pruned") || !strcmp(status, "failed")) {
            settle(st, t, 0);
        } else {
            t->resume = ckpt;
            if (!ckpt) forget_run(t);
            t->state[0] = 0; /* launched below */
        }
    }
    double t0 = now_s();
    for (;;) {
        if (stop_sig) break;
        int running = count_running(st);
        int launched_or_done = 0;
        for (int i = 0; i < st->n; i++) launched_or_done += st->t[i].state[0] != 0;
        /* recovered trials first, then new ones */
        for (int i = 0; i < st->n && running < st->parallel; i++) {
            trial *t = &st->t[i];
            if (t->state[0]) continue;
            say(st, "trial %d: %s\n", t->number, t->resume ? "resuming from its checkpoint" : "starting again");
            if (launch(st, t) == 0) running++;
            else snprintf(t->state, sizeof t->state, "failed");
        }
        int time_up = st->s.time_limit > 0 && now_s() - t0 > st->s.time_limit;
        while (running < st->parallel && st->n < st->trials && !time_up && !stop_sig) {
            trial *t;
            if ((s = new_trial(st, &t)) || (s = suggest(st, t))) goto stop;
            iso_now(t->start);
            snprintf(t->state, sizeof t->state, "running");
            record(st, t);
            char line[2048];
            describe(st, t, line, sizeof line);
            say(st, "trial %d: %s\n", t->number, line);
            if (launch(st, t)) {
                s = kiln_error(KILN_ERR_IO, "tune: cannot start a trial: %s", strerror(errno));
                goto stop;
            }
            running++;
        }
        if (!running) break;
        (void)launched_or_done;
        usleep(100000);
        for (int i = 0; i < st->n; i++) {
            trial *t = &st->t[i];
            if (t->pid <= 0) continue;
            if (!t->run[0]) {
                find_run(st, t);
                if (t->run[0]) record(st, t);
            }
            int before = t->n;
            if (read_points(st, t)) check_prune(st, t, before);
            int ws;
            pid_t r = waitpid(t->pid, &ws, WNOHANG);
            if (r == t->pid) {
                t->pid = 0;
                settle(st, t, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
            }
        }
    }
stop:
    if (stop_sig || s) {
        for (int i = 0; i < st->n; i++)
            if (st->t[i].pid > 0) kill(st->t[i].pid, SIGTERM);
        if (!stop_sig) stop_sig = SIGTERM;
    }
    for (int i = 0; i < st->n; i++) {
        trial *t = &st->t[i];
        if (t->pid <= 0) continue;
        int ws;
        while (waitpid(t->pid, &ws, 0) < 0 && errno == EINTR) {}
        t->pid = 0;
        settle(st, t, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (stop_sig && !s) {
        *interrupted = 1;
        say(st, "study %s interrupted; continue with: kiln tune --resume %s --runs-dir %s\n", st->study,
            st->study, st->runs_dir);
    }
out:
    if (lock >= 0) close(lock);
    if (!s && !*interrupted && !st->quiet) {
        char name[256], dir[4096];
        snprintf(name, sizeof name, "%s", st->study);
        snprintf(dir, sizeof dir, "%s", st->runs_dir);
        study_free(st);
        free(st);
        printf("\n");
        return kiln_tune_show(dir, name);
    }
    study_free(st);
    free(st);
    return s;
}

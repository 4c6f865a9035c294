/* test_registry_load.c — many writers and readers on one registry at once lose no point.
 *
 *   test_registry_load [SECONDS]     (default 3)
 *
 * 8 writer processes each train a fake run for SECONDS: points as fast as a small sleep allows
 * (two names per step), a run.json save every second, then finished; each is followed by the
 * registry as kiln train does (batches, one transaction a second). 2 reader processes meanwhile
 * list the runs with a filter and sort and read a metric's history, over and over; every read must
 * succeed. Then, without a sync (what the writers' followers delivered, nothing read from the
 * folders afterwards), every run's points in the registry must equal its metrics.jsonl, and
 * every run must be finished.
 *
 * The registry is whatever KILN_REGISTRY says (SQLite by default); KILN_TEST_PG=postgresql://...
 * (tests/pg_test.sh) runs it on PostgreSQL with a schema for this runs folder. ctest runs a few
 * seconds on SQLite, and 60 s on PostgreSQL under the label long.
 */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "kiln/registry.h"
#include "run/run_internal.h" /* kiln_run_rmtree */

enum { WRITERS = 8, READERS = 2 };

static char root[64];
static double seconds = 3;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int writer(int k) {
    char name[32];
    snprintf(name, sizeof name, "w%d", k);
    kiln_rundir *run = NULL;
    if (kiln_run_create(root, "load", name, &run)) return 1;
    kiln_registry_follow_run(run, 1);
    double end = now() + seconds, last_save = now();
    for (int64_t step = 1; now() < end; step++) {
        if (kiln_run_log_metric(run, step, 0, KILN_SPLIT_TRAIN, "loss", 1.0 / (double)step) ||
            kiln_run_log_metric(run, step, 0, KILN_SPLIT_VALIDATION, "accuracy",
                                (double)(step % 100) / 100.0))
            return 1;
        if (now() - last_save > 1.0) {
            if (kiln_run_save(run)) return 1;
            last_save = now();
        }
        nanosleep(&(struct timespec){0, 500 * 1000}, NULL);
    }
    if (kiln_run_set_status(run, KILN_RUN_FINISHED, NULL) || kiln_run_save(run)) return 1;
    kiln_run_close(run);
    return 0;
}

static int count_run(const kiln_registry_run *r, void *ctx) {
    (void)r;
    ++*(int *)ctx;
    return 0;
}

static int count_point(const kiln_registry_point *p, void *ctx) {
    (void)p;
    ++*(int64_t *)ctx;
    return 0;
}

static int reader(void) {
    double end = now() + seconds;
    kiln_registry_filter *f = NULL;
    int col;
    if (kiln_registry_filter_parse("metrics.loss > 0 and status != 'failed'", &f, &col)) return 1;
    int reads = 0;
    while (now() < end) {
        kiln_registry *reg = NULL;
        if (kiln_registry_open(root, &reg)) {
            fprintf(stderr, "reader: open: %s\n", kiln_last_error());
            return 1;
        }
        const char *metrics[] = {"loss", "val_accuracy"};
        kiln_registry_query q = {.filter = f, .sort = "loss", .metrics = metrics, .n_metrics = 2};
        int n = 0;
        int64_t points = 0;
        if (kiln_registry_list_runs(reg, &q, count_run, &n)) {
            fprintf(stderr, "reader: list: %s\n", kiln_last_error());
            return 1;
        }
        char id[256];
        if (n && !kiln_registry_find_run(reg, "w0", id, sizeof id) &&
            kiln_registry_metric_history(reg, id, "loss", count_point, &points)) {
            fprintf(stderr, "reader: history: %s\n", kiln_last_error());
            return 1;
        }
        kiln_error_clear();
        kiln_registry_close(reg);
        reads++;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    kiln_registry_filter_free(f);
    return reads > 0 ? 0 : 1;
}

typedef struct {
    int n, finished;
    char ids[WRITERS][256];
} seen;

static int take(const kiln_registry_run *r, void *ctx) {
    seen *s = ctx;
    if (s->n < WRITERS) snprintf(s->ids[s->n++], 256, "%s", r->id);
    s->finished += r->status && !strcmp(r->status, "finished");
    return 0;
}

static int64_t lines_of(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int64_t n = 0;
    for (int c; (c = fgetc(f)) != EOF;) n += c == '\n';
    fclose(f);
    return n;
}

static int sum_points(const kiln_registry_metric *m, void *ctx) {
    *(int64_t *)ctx += m->points;
    return 0;
}

static void test_writers_and_readers(void) {
    pid_t kids[WRITERS + READERS];
    pid_t parent = getpid();
    for (int i = 0; i < WRITERS + READERS; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1);
            _exit(i < WRITERS ? writer(i) : reader());
        }
    }
    for (int i = 0; i < WRITERS + READERS; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s %d failed (status %d)",
                  i < WRITERS ? "writer" : "reader", i, st);
    }
    kiln_registry *reg = NULL;
    CHECK_OK(kiln_registry_open(root, &reg)); /* no sync: what the followers wrote */
    if (!reg) return;
    seen s = {0};
    CHECK_OK(kiln_registry_list_runs(reg, NULL, take, &s));
    CHECK_MSG(s.n == WRITERS && s.finished == WRITERS, "%d runs, %d finished", s.n, s.finished);
    int64_t total = 0;
    for (int i = 0; i < s.n; i++) {
        char path[600];
        int64_t in_db = 0;
        snprintf(path, sizeof path, "%s/%s/metrics.jsonl", root, s.ids[i]);
        int64_t in_file = lines_of(path);
        CHECK_OK(kiln_registry_run_metrics(reg, s.ids[i], sum_points, &in_db));
        CHECK_MSG(in_db == in_file && in_file > 0, "%s: %lld points in the registry, %lld in %s",
                  s.ids[i], (long long)in_db, (long long)in_file, path);
        total += in_db;
    }
    printf("%d writers, %d readers, %.0f s: %lld points, none lost (%s)\n", WRITERS, READERS,
           seconds, (long long)total, kiln_registry_path(reg));
    kiln_registry_close(reg);
}

int main(int argc, char **argv) {
    kiln_registry_use_postgres(); /* KILN_REGISTRY may name a PostgreSQL server */
    if (argc > 1) seconds = atof(argv[1]);
    if (!(seconds > 0)) seconds = 3;
    snprintf(root, sizeof root, "/tmp/kiln-test-regload-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    const char *pg = getenv("KILN_TEST_PG");
    if (pg && *pg) {
        char uri[1200];
        snprintf(uri, sizeof uri, "%s%cschema=auto", pg, strchr(pg, '?') ? '&' : '?');
        setenv("KILN_REGISTRY", uri, 1);
        printf("registry: PostgreSQL at %s\n", pg);
    }
    RUN(test_writers_and_readers);
    kiln_run_rmtree(AT_FDCWD, root);
    return kiln_test_summary();
}

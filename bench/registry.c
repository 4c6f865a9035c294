/* bench/registry.c — the run registry at scale: a runs folder of N runs x P metric points
 * (default 10,000 x 100) and how fast `kiln runs list` answers on it (the target: at
 * most 200 ms), plain, sorted by a metric, filtered on a metric and a param, and as JSON; the
 * first import of folders made without a registry; and what the registry adds to logging a
 * metric point (the run writer with the registry on vs KILN_REGISTRY=off).
 *
 *   build/bench_registry [RUNS [POINTS]] [--kiln PATH] [--keep DIR] [--registry URI]
 *
 * --registry postgresql://... measures the registry on PostgreSQL (a schema of its own for this
 * runs folder, ?schema=auto, unless the URI names one; the target there is 300 ms, for a server
 * reached over a socket); the default is SQLite (runs/kiln.db, target 200 ms). The CPU model and
 * the load average (before the import and after the lists: wall times move with it) are printed
 * with the figures. The ingest rate of kiln board's MLflow runs/log-batch over HTTP, on either
 * registry, is bench/mlflow_ingest.sh's.
 *
 * The run folders are written directly (run.json, config.yaml with 40 keys, metrics.jsonl: 60
 * train losses, 20 val_loss, 20 val_accuracy per run for P = 100), as a kiln without the
 * registry would have left them; the first kiln_registry_sync imports them. Each `kiln runs
 * list` is a fresh process (fork/exec, output to /dev/null), timed wall clock; the figure is the
 * median of 7 after one warm-up, so the page cache is warm as it is for a user who lists twice;
 * its CPU time (user + system) is printed beside, as the wall time moves with whatever else the
 * machine runs.
 * There is no peer here: MLflow (the tool users compare runs in) is not installable on this
 * machine, so the figures stand against the 200 ms target.
 */
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kiln/kiln.h"
#include "kiln/registry.h"
#include "run/run_internal.h" /* kiln_run_rmtree */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* One run folder as a kiln without the registry leaves it. */
static int make_run(const char *runs, int i, int points) {
    char dir[PATH_MAX + 64], path[PATH_MAX + 96], text[4096];
    int e = i % 10, day = 1 + i % 28, sec = i % 86400;
    double lr = 0.0001 * (1 + i % 100);
    snprintf(dir, sizeof dir, "%s/exp-%d/run-%05d-202401%02d-%02d%02d%02d", runs, e, i, day,
             sec / 3600, sec / 60 % 60, sec % 60);
    if (kiln_mkdirs(dir) != KILN_OK) return -1;
    snprintf(path, sizeof path, "%s/run.json", dir);
    snprintf(
        text, sizeof text,
        "{\"id\":\"%s\",\"experiment\":\"exp-%d\",\"name\":\"run-%05d\",\"status\":\"%s\","
        "\"start_time\":\"2024-01-%02dT%02d:%02d:%02dZ\",\"end_time\":\"2024-01-%02dT23:59:59Z\","
        "\"host\":\"bench\",\"pid\":1,\"kiln_version\":\"0.1.0\",\"seed\":%d,"
        "\"config_hash\":\"%016x\",\"command\":\"kiln train cfg.yaml\",\"message\":null,"
        "\"epochs_completed\":10,\"steps\":%d,\"final_metrics\":{},\"best_metrics\":{},"
        "\"best_step\":null,\"checkpoint\":null}\n",
        strrchr(dir, '/') + 1, e, i, i % 17 ? "finished" : "failed", day, sec / 3600, sec / 60 % 60,
        sec % 60, day, i, (unsigned)i * 2654435761u, points * 10);
    if (write_file(path, text)) return -1;
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    snprintf(
        text, sizeof text,
        "experiment: exp-%d\nseed: %d\ndata:\n  source: idx\n  train:\n    images: /d/train-x\n"
        "    labels: /d/train-y\n  test:\n    images: /d/test-x\n    labels: /d/test-y\n"
        "  validation_split: 0.1\n  normalize:\n    scale: 0.00392156862745098\n"
        "  batch_size: %d\n  shuffle: true\n  task: classification\nmodel:\n"
        "  input: [1, 28, 28]\n  layers:\n    - flatten\n    - dense:\n        units: %d\n"
        "        activation: relu\n        use_bias: true\n    - dropout:\n        rate: 0.25\n"
        "    - dense:\n        units: 10\n        activation: none\n        use_bias: true\n"
        "loss:\n  softmax_cross_entropy:\n    label_smoothing: 0\nmetrics: [accuracy]\n"
        "optimizer:\n  adam:\n    learning_rate: %g\n    beta_1: 0.9\n    beta_2: 0.999\n"
        "    epsilon: 1e-7\n    weight_decay: 0\nschedule:\n  cosine:\n    warmup_steps: 200\n"
        "train:\n  epochs: 10\n  max_steps: 0\n  ema_decay: 0.999\n  clip_norm: 0\n"
        "  early_stopping:\n    monitor: val_loss\n    patience: 3\n  checkpoint:\n"
        "    every_steps: 500\n    every_epochs: 1\n    keep: 3\nlog:\n  every_steps: 50\n"
        "  tensorboard: true\n",
        e, i, 32 << (i % 3), 64 << (i % 4), lr);
    if (write_file(path, text)) return -1;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int train = points * 6 / 10, val = (points - train) / 2;
    for (int s = 1; s <= train; s++)
        fprintf(
            f,
            "{\"step\":%d,\"epoch\":%d,\"wall_time\":%d.5,\"split\":\"train\",\"name\":\"loss\","
            "\"value\":%.6g}\n",
            s * 50, s * 10 / train, 1700000000 + s, 2.3 / (1 + 0.05 * s) + 0.001 * (i % 13));
    for (int s = 1; s <= val; s++)
        fprintf(f,
                "{\"step\":%d,\"epoch\":%d,\"wall_time\":%d.5,\"split\":\"validation\","
                "\"name\":\"loss\",\"value\":%.6g}\n"
                "{\"step\":%d,\"epoch\":%d,\"wall_time\":%d.5,\"split\":\"validation\","
                "\"name\":\"accuracy\",\"value\":%.6g}\n",
                s * 300, s, 1700000000 + s, 0.9 / (1 + 0.1 * s), s * 300, s, 1700000000 + s,
                0.7 + 0.25 * (1 - exp(-0.3 * s)) - 0.0005 * (i % 97));
    return fclose(f);
}

/* Wall seconds of one `kiln <args>` with its output to /dev/null (its CPU seconds, user and
 * system, in *cpu); -1 when it failed. */
static double run_kiln(const char *kiln, char *const *args, double *cpu) {
    double t0 = now();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execv(kiln, args);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    wait4(pid, &st, 0, &ru);
    double t = now() - t0;
    *cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? t : -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median wall milliseconds of 7 runs after a warm-up (and the median CPU milliseconds). */
static double median_ms(const char *kiln, char *const *args, double *cpu_ms) {
    double t[7], c[7];
    if (run_kiln(kiln, args, &c[0]) < 0) return -1; /* warm-up */
    for (int i = 0; i < 7; i++)
        if ((t[i] = run_kiln(kiln, args, &c[i])) < 0) return -1;
    qsort(t, 7, sizeof *t, cmp_double);
    qsort(c, 7, sizeof *c, cmp_double);
    *cpu_ms = c[3] * 1e3;
    return t[3] * 1e3;
}

static char registry_uri[2048]; /* KILN_REGISTRY for this benchmark ("" : SQLite) */

static void registry_env(void) {
    if (registry_uri[0])
        setenv("KILN_REGISTRY", registry_uri, 1);
    else
        unsetenv("KILN_REGISTRY");
}

static void cpu_model(char *out, size_t cap) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(out, cap, "unknown CPU");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(out, cap, "%s", strchr(line, ':') + 2);
            out[strcspn(out, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
}

/* Microseconds per kiln_run_log_metric, n points, registry on or off. */
static double log_cost(const char *runs, int n, int registry) {
    if (!registry) setenv("KILN_REGISTRY", "off", 1);
    kiln_rundir *run = NULL;
    kiln_status s = kiln_run_create(runs, "logging", registry ? "on" : "off", &run);
    registry_env();
    if (s) return -1;
    double t0 = now();
    for (int i = 0; i < n; i++)
        kiln_run_log_metric(run, i, 0, KILN_SPLIT_TRAIN, i % 3 ? "loss" : "learning_rate",
                            1.0 / (i + 1));
    kiln_run_close(run); /* with the last batch */
    return (now() - t0) / n * 1e6;
}

int main(int argc, char **argv) {
    kiln_registry_use_postgres(); /* KILN_REGISTRY may name a PostgreSQL server */
    int runs_n = 10000, points = 100;
    char kiln[PATH_MAX] = "", keep[PATH_MAX] = "";
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--kiln") && i + 1 < argc)
            snprintf(kiln, sizeof kiln, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--keep") && i + 1 < argc)
            snprintf(keep, sizeof keep, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--registry") && i + 1 < argc)
            snprintf(registry_uri, sizeof registry_uri - 16, "%s", argv[++i]);
        else if (pos++ == 0)
            runs_n = atoi(argv[i]);
        else
            points = atoi(argv[i]);
    }
    if (runs_n < 1 || points < 10) {
        fprintf(stderr, "usage: bench_registry [RUNS [POINTS >= 10]] [--kiln PATH] [--keep DIR]"
                        " [--registry URI]\n");
        return 2;
    }
    int remote = !strncmp(registry_uri, "postgres", 8);
    if (remote && !strstr(registry_uri, "schema="))
        strcat(registry_uri, strchr(registry_uri, '?') ? "&schema=auto" : "?schema=auto");
    double target = remote ? 300 : 200;
    registry_env();
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    if (!kiln[0]) { /* beside this program */
        ssize_t n = readlink("/proc/self/exe", kiln, sizeof kiln - 8);
        if (n <= 0) return 1;
        kiln[n] = 0;
        strcpy(strrchr(kiln, '/') + 1, "kiln");
    }
    char root[PATH_MAX], runs[PATH_MAX + 8];
    if (keep[0]) {
        snprintf(root, sizeof root, "%s", keep);
        kiln_mkdirs(root);
    } else {
        snprintf(root, sizeof root, "/tmp/kiln-bench-registry-XXXXXX");
        if (!mkdtemp(root)) return 1;
    }
    snprintf(runs, sizeof runs, "%s/runs", root);
    printf("registry benchmark: %d runs x %d metric points in %s\n", runs_n, points, runs);
    double load[3] = {0, 0, 0};
    getloadavg(load, 3);
    printf("  registry: %s; CPU: %s (%ld online), load average %.2f %.2f %.2f\n",
           registry_uri[0] ? registry_uri : "sqlite:", cpu, sysconf(_SC_NPROCESSORS_ONLN),
           load[0], load[1], load[2]);

    double t0 = now();
    for (int i = 0; i < runs_n; i++)
        if (make_run(runs, i, points)) {
            fprintf(stderr, "cannot write run %d under %s\n", i, runs);
            return 1;
        }
    printf("  run folders written                      %8.2f s\n", now() - t0);

    kiln_registry *reg = NULL;
    kiln_registry_sync_stats st;
    t0 = now();
    if (kiln_registry_open(runs, &reg) || kiln_registry_sync(reg, &st)) {
        fprintf(stderr, "registry: %s\n", kiln_last_error());
        return 1;
    }
    double import = now() - t0;
    printf("  first sync (import of every folder)      %8.2f s  (%.0f runs/s, %.0f points/s)\n",
           import, st.imported / import, (double)st.imported * points / import);
    t0 = now();
    kiln_registry_sync(reg, &st);
    printf("  sync with nothing to do                  %8.1f ms\n", (now() - t0) * 1e3);
    kiln_registry_close(reg);
    char db[PATH_MAX + 16];
    struct stat sb;
    snprintf(db, sizeof db, "%s/kiln.db", runs);
    if (stat(db, &sb) == 0)
        printf("  kiln.db                                  %8.1f MB\n", sb.st_size / 1e6);

    char *plain[] = {kiln, "runs", "list", "--runs-dir", runs, NULL};
    char *sorted[] = {kiln, "runs", "list", "--runs-dir", runs, "--sort", "val_accuracy", NULL};
    char *filtered[] = {
        kiln,
        "runs",
        "list",
        "--runs-dir",
        runs,
        "--filter",
        "metrics.val_accuracy > 0.9 and params.optimizer.adam.learning_rate < 0.005",
        "--sort",
        "val_loss",
        NULL};
    char *json[] = {kiln, "runs", "list", "--runs-dir", runs, "--json", NULL};
    char *top[] = {kiln,     "runs",         "list",    "--runs-dir", runs,
                   "--sort", "val_accuracy", "--limit", "20",         NULL};
    struct {
        const char *what;
        char **args;
    } cases[] = {{"kiln runs list", plain},
                 {"kiln runs list --sort val_accuracy", sorted},
                 {"kiln runs list --filter ... --sort val_loss", filtered},
                 {"kiln runs list --sort val_accuracy --limit 20", top},
                 {"kiln runs list --json (every latest metric)", json}};
    printf("  median of 7, each a new process, %d runs:         wall       CPU\n", runs_n);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double cpu_ms = 0, ms = median_ms(kiln, cases[i].args, &cpu_ms);
        if (ms < 0)
            printf("    %-48s failed\n", cases[i].what);
        else
            printf("    %-48s %6.1f ms %6.1f ms%s\n", cases[i].what, ms, cpu_ms,
                   ms <= target ? "" : target > 200 ? "  (over 300 ms)" : "  (over 200 ms)");
    }

    getloadavg(load, 3);
    printf("  load average after the lists: %.2f %.2f %.2f\n", load[0], load[1], load[2]);

    int n = 100000;
    char logging[PATH_MAX + 16];
    snprintf(logging, sizeof logging, "%s/logging", root);
    kiln_mkdirs(logging);
    double on = log_cost(logging, n, 1), off = log_cost(logging, n, 0);
    printf("  kiln_run_log_metric, %d points:  registry off %.2f us, on %.2f us per point"
           " (+%.2f us)\n",
           n, off, on, on - off);
    if (!keep[0]) kiln_run_rmtree(AT_FDCWD, root);
    return 0;
}

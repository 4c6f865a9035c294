/* board_runs.c — makes a big runs folder for bench/board.sh, with kiln's own run API (so the
 * files are exactly what kiln train writes):
 *
 *   build/bench_board_runs RUNS_DIR CONFIG [N_RUNS [POINTS [EXPERIMENTS]]]
 *
 * N_RUNS runs (default 10,000) spread over EXPERIMENTS experiments (default 10), each with the
 * resolved CONFIG as its config.yaml (learning rate and hidden units varied per run, so the
 * board has params that differ), POINTS metric points in metrics.jsonl (default 100: train
 * loss and accuracy every step, validation loss and accuracy every tenth), final and best
 * metrics, and status finished. Prints the time it took.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kiln/kiln.h"

static int fail(const char *what) {
    fprintf(stderr, "bench_board_runs: %s: %s\n", what, kiln_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s RUNS_DIR CONFIG [N_RUNS [POINTS [EXPERIMENTS]]]\n", argv[0]);
        return 2;
    }
    const char *runs_dir = argv[1];
    int n = argc > 3 ? atoi(argv[3]) : 10000;
    int points = argc > 4 ? atoi(argv[4]) : 100;
    int n_exp = argc > 5 ? atoi(argv[5]) : 10;
    if (n < 1 || points < 0 || n_exp < 1) {
        fprintf(stderr, "bench_board_runs: N_RUNS and EXPERIMENTS must be >= 1, POINTS >= 0\n");
        return 2;
    }
    kiln_cfg *base = NULL;
    if (kiln_config_load(argv[2], &base) || kiln_config_resolve(base)) return fail(argv[2]);
    static const char *const LR[] = {"0.01", "0.003", "0.001", "0.0003"};
    static const int UNITS[] = {64, 128, 256, 512};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        char exp[32], name[32], set[64], path[4200];
        snprintf(exp, sizeof exp, "exp%02d", i % n_exp);
        snprintf(name, sizeof name, "r%05d", i);
        kiln_rundir *run = NULL;
        if (kiln_run_create(runs_dir, exp, name, &run)) return fail("create a run");
        kiln_cfg *cfg = kiln_cfg_clone(base);
        snprintf(set, sizeof set, "optimizer.adam.learning_rate=%s", LR[i % 4]);
        if (!cfg || kiln_config_set(cfg, set)) return fail(set);
        snprintf(set, sizeof set, "model.layers[1].dense.units=%d", UNITS[(i / 4) % 4]);
        if (kiln_config_set(cfg, set)) return fail(set);
        snprintf(path, sizeof path, "%s/config.yaml", kiln_run_get_info(run).path);
        FILE *f = fopen(path, "w");
        if (!f || kiln_config_write(cfg, f) || fclose(f)) return fail(path);
        kiln_cfg_free(cfg);
        double loss = 2.0, acc = 0.1;
        for (int p = 0, step = 1; p < points; step++) {
            loss *= 0.97, acc += (0.9 - acc) * 0.05;
            double epoch = step / 40.0;
            kiln_run_log_metric(run, step, epoch, KILN_SPLIT_TRAIN, "loss", loss), p++;
            if (p < points)
                kiln_run_log_metric(run, step, epoch, KILN_SPLIT_TRAIN, "accuracy", acc), p++;
            if (step % 10 || p == points) continue;
            kiln_run_log_metric(run, step, epoch, KILN_SPLIT_VALIDATION, "loss", loss * 1.1), p++;
            if (p < points)
                kiln_run_log_metric(run, step, epoch, KILN_SPLIT_VALIDATION, "accuracy",
                                    acc * 0.98),
                    p++;
        }
        kiln_run_set_metric(run, KILN_RUN_FINAL, "loss", loss);
        kiln_run_set_metric(run, KILN_RUN_FINAL, "accuracy", acc);
        kiln_run_set_metric(run, KILN_RUN_FINAL, "val_loss", loss * 1.1);
        kiln_run_set_metric(run, KILN_RUN_FINAL, "val_accuracy", acc * 0.98);
        kiln_run_set_metric(run, KILN_RUN_BEST, "val_loss", loss * 1.1);
        kiln_run_set_progress(run, 1, points);
        kiln_run_set_seed(run, 1);
        if (kiln_run_set_status(run, KILN_RUN_FINISHED, NULL) || kiln_run_save(run))
            return fail("save run.json");
        kiln_run_close(run);
    }
    kiln_cfg_free(base);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("made %d runs x %d points in %s (%.1f s)\n", n, points, runs_dir,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}

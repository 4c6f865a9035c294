/* data_loader.c — the data pipeline alone: passes of a config's training loader (decode,
 * data.augment, normalization, batching on data.workers threads) with no model, as
 * bench/data_vs_torch.sh runs it beside PyTorch's DataLoader.
 *
 *   bench_data_loader CONFIG [--epochs N] [--set KEY=VALUE]...
 *
 * Prints one line: RESULT images=<n> seconds=<s> images_per_s=<r> peak_rss_mb=<m> workers=<w>
 * (the time of all passes; peak RSS of the whole process, getrusage). The first batch is taken
 * before the clock starts, so thread start-up is not counted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "kiln/inputs.h"
#include "kiln/kiln.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_data_loader CONFIG [--epochs N] [--set KEY=VALUE]...\n");
        return 2;
    }
    int epochs = 1;
    kiln_cfg *cfg = NULL;
    kiln_status st = kiln_config_load(argv[1], &cfg);
    for (int i = 2; !st && i < argc; i++) {
        if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
            epochs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--set") && i + 1 < argc)
            st = kiln_config_set(cfg, argv[++i]);
        else
            return fprintf(stderr, "bench_data_loader: unknown argument %s\n", argv[i]), 2;
    }
    kiln_model m = {0};
    kiln_inputs in = {0};
    if (!st) st = kiln_config_resolve(cfg);
    if (!st) st = kiln_inputs_resolve_paths(cfg, NULL);
    if (!st) st = kiln_model_build(cfg, &m);
    if (!st) st = kiln_inputs_load(cfg, &m, &in);
    kiln_loader *l = NULL;
    if (!st) st = kiln_loader_new(in.train, &in.train_loader, &l);
    if (st) {
        fprintf(stderr, "bench_data_loader: %s\n", kiln_last_error());
        return 1;
    }
    int64_t bs = in.train_loader.batch_size, numel = 1;
    kiln_shape xs = kiln_dataset_x_shape(in.train);
    for (int i = 0; i < xs.ndim; i++) numel *= xs.dims[i];
    int ys = in.train_loader.soft_labels ? in.train_loader.soft_labels : 1;
    float *x = malloc((size_t)(bs * numel) * sizeof *x);
    float *y = malloc((size_t)(bs * ys) * sizeof *y);
    int rows, r;
    int64_t images = 0;
    if ((r = kiln_loader_next(l, x, y, &rows)) < 0) { /* warm-up: threads started, first batch */
        fprintf(stderr, "bench_data_loader: %s\n", kiln_last_error());
        return 1;
    }
    double t0 = now();
    for (int e = 0; e < epochs; e++) {
        while ((r = kiln_loader_next(l, x, y, &rows)) == 1) images += rows;
        if (r < 0) {
            fprintf(stderr, "bench_data_loader: %s\n", kiln_last_error());
            return 1;
        }
    }
    double s = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("RESULT images=%lld seconds=%.3f images_per_s=%.1f peak_rss_mb=%.1f workers=%d\n",
           (long long)images, s, images / s, ru.ru_maxrss / 1024.0, in.train_loader.workers);
    kiln_loader_free(l);
    free(x), free(y);
    kiln_inputs_free(&in);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
    return 0;
}

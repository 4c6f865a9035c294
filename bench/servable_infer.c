/* bench/servable_infer — inference samples/s of an exported kiln version (a servable), timed
 * in-process the way bench/peer_resnet_torch.py and bench/peer_resnet_ort.js time their peers:
 * one fixed batch of pseudo-random inputs (already preprocessed), the batch's plan compiled
 * first, two warm-up predictions, then BATCHES predictions timed with a monotonic clock. No data
 * loading, no preprocessing and no HTTP in the timed part; the outputs are copied out (as
 * ONNX Runtime's session.run does), probabilities not requested.
 *
 *   build/bench_servable_infer VERSION_DIR BATCH BATCHES THREADS
 * prints "RESULT infer_samples_per_s=<x>" (bench/resnet_vs_torch.sh reads it); exit 1 with the
 * error when the version does not load.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kiln/export.h"
#include "kiln/kiln.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s VERSION_DIR BATCH BATCHES THREADS\n", argv[0]);
        return 2;
    }
    int batch = atoi(argv[2]), batches = atoi(argv[3]), threads = atoi(argv[4]);
    if (batch < 1 || batches < 1 || threads < 1) {
        fprintf(stderr, "servable_infer: BATCH, BATCHES and THREADS must be positive\n");
        return 2;
    }
    omp_set_num_threads(threads);
    kiln_servable *s = NULL;
    if (kiln_servable_load(argv[1], &s) != KILN_OK) {
        fprintf(stderr, "servable_infer: %s\n", kiln_last_error());
        return 1;
    }
    int64_t in_n = kiln_servable_row_size(kiln_servable_input(s, 0));
    int64_t out_n = kiln_servable_row_size(kiln_servable_output(s, 0));
    float *x = malloc((size_t)(batch * in_n) * sizeof *x);
    float *y = malloc((size_t)(batch * out_n) * sizeof *y);
    kiln_plan *p = x && y ? kiln_servable_plan(s, batch) : NULL;
    int ok = p != NULL;
    if (ok) {
        unsigned long long r = 1; /* a linear congruential generator, as the ORT peer's */
        for (int64_t i = 0; i < batch * in_n; i++) {
            r = (r * 1103515245ull + 12345ull) % 2147483648ull;
            x[i] = (float)r / 2147483648.0f - 0.5f;
        }
    }
    for (int i = 0; i < 2 && ok; i++) /* warm-up */
        ok = kiln_servable_predict(s, p, x, batch, y, NULL) == KILN_OK;
    double t0 = now();
    for (int i = 0; i < batches && ok; i++)
        ok = kiln_servable_predict(s, p, x, batch, y, NULL) == KILN_OK;
    double sec = now() - t0;
    if (ok)
        printf("RESULT infer_samples_per_s=%.1f\n", (double)batch * batches / sec);
    else
        fprintf(stderr, "servable_infer: %s\n", kiln_last_error());
    free(x), free(y);
    kiln_servable_free(s);
    return ok ? 0 : 1;
}

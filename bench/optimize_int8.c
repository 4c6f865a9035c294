/* optimize_int8.c — batch-64 inference throughput of servable versions side by side (e.g. the
 * fp32 export and its kiln optimize --quantize int8 version), interleaved rounds, one process:
 *   build/bench_optimize_int8 EXPORT/1 EXPORT/3 [rounds]
 * Prints rows/s per version (best round and median) and the ratio to the first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/export.h"
#include "kiln/kiln.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: %s VERSION_DIR... [-r rounds]\n", argv[0]), 2;
    int n = 0, rounds = 9, B = 64;
    kiln_servable *s[8];
    kiln_plan *p[8];
    float *x[8];
    for (int i = 1; i < argc && n < 8; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) { rounds = atoi(argv[++i]); continue; }
        if (kiln_servable_load(argv[i], &s[n])) return fprintf(stderr, "%s\n", kiln_last_error()), 1;
        p[n] = kiln_servable_plan(s[n], B);
        int64_t row = kiln_servable_row_size(kiln_servable_input(s[n], 0));
        x[n] = malloc(sizeof(float) * (size_t)(row * B));
        for (int64_t k = 0; k < row * B; k++) x[n][k] = (float)((k * 7919) % 255) / 255.0f;
        n++;
    }
    double t[8][64];
    for (int r = 0; r < rounds && r < 64; r++)
        for (int i = 0; i < n; i++) {
            int it = 20;
            double t0 = kiln_time_us();
            for (int k = 0; k < it; k++) kiln_servable_predict(s[i], p[i], x[i], B, NULL, NULL);
            t[i][r] = (kiln_time_us() - t0) / 1e6 / it;
        }
    printf("oneDNN ISA %s, int8 weights %d-bit\n", kiln_backend_cpu_isa(), kiln_backend_int8_weight_bits());
    double base = 0;
    for (int i = 0; i < n; i++) {
        qsort(t[i], (size_t)rounds, sizeof(double), cmp);
        double best = B / t[i][0], med = B / t[i][rounds / 2];
        if (!i) base = med;
        printf("%-40s %-6s batch %d: %9.0f rows/s best, %9.0f median  (x%.2f)\n", argv[1 + i],
               kiln_servable_get_info(s[i]).precision, B, best, med, med / base);
    }
    for (int i = 0; i < n; i++) free(x[i]), kiln_servable_free(s[i]);
    return 0;
}

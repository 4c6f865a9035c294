/* bench_util.h — what the C benchmarks share: a monotonic clock, a qsort comparison for
 * doubles, and the median-of-rounds timer. Header only (static functions), so that each
 * bench/<name>.c stays one executable of one source file (CMakeLists.txt makes one per .c
 * file in bench/). */
#ifndef KILN_BENCH_UTIL_H
#define KILN_BENCH_UTIL_H
#include <stdlib.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
static inline double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* qsort comparison of doubles, ascending. */
static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs fn(ctx) warmup times, estimates its cost for 0.2 s, then runs rounds (at most 9) rounds
 * of ~seconds/rounds each; returns the median seconds per call. */
static inline double bench_median_time(void (*fn)(void *), void *ctx, double seconds, int warmup,
                                       int rounds) {
    double t[9];
    if (rounds > 9) rounds = 9;
    for (int i = 0; i < warmup; i++) fn(ctx);
    double t0 = bench_now();
    int calls = 0;
    while (bench_now() - t0 < 0.2) fn(ctx), calls++;
    double per = (bench_now() - t0) / calls;
    int reps = (int)(seconds / rounds / per) + 1;
    for (int r = 0; r < rounds; r++) {
        double s = bench_now();
        for (int i = 0; i < reps; i++) fn(ctx);
        t[r] = (bench_now() - s) / reps;
    }
    qsort(t, (size_t)rounds, sizeof *t, bench_cmp_double);
    return t[rounds / 2];
}

#endif

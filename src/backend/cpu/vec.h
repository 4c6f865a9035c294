/* vec.h — the flat-buffer loops every backward needs: hand a gradient to an input, overwriting
 * it or adding to it (the plan's accum flag). OpenMP only past 64K floats, where it pays. */
#ifndef KILN_VEC_H
#define KILN_VEC_H

#include <stdint.h>
#include <string.h>

/* dst[i] += src[i] */
static inline void kiln_vec_add(float *dst, const float *src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

/* dst = src (accum 0) or dst += src (accum 1) */
static inline void kiln_vec_put(float *dst, const float *src, int64_t n, int accum) {
    if (accum) kiln_vec_add(dst, src, n);
    else memcpy(dst, src, (size_t)n * sizeof *dst);
}

#endif

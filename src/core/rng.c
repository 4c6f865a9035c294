/* rng.c — Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
 *
 * The 128-bit counter block is (counter lo, counter hi, stream lo, stream hi) and the 64-bit key
 * is the seed. Ten rounds of the Philox S-box; results match the published algorithm's structure
 * (constants 0xD2511F53, 0xCD9E8D57, Weyl keys 0x9E3779B9, 0xBB67AE85).
 */
#include "kiln/rng.h"

#include <math.h>

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void kiln_philox(uint64_t seed, uint64_t stream, uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(0xD2511F53u, c0, &hi0, &lo0);
        mulhilo(0xCD9E8D57u, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

uint32_t kiln_rng_u32(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint32_t w[4];
    kiln_philox(seed, stream, counter >> 2, w);
    return w[counter & 3];
}

float kiln_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return (float)(kiln_rng_u32(seed, stream, counter) >> 8) * (1.0f / 16777216.0f);
}

float kiln_rng_normal(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint32_t w[4];
    kiln_philox(seed, stream, counter, w);
    double u1 = ((double)(w[0] >> 8) + 1.0) / 16777217.0; /* (0, 1]: log is finite */
    double u2 = (double)(w[1] >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t kiln_rng_below(uint64_t seed, uint64_t stream, uint64_t counter, uint32_t n) {
    uint32_t w[4];
    kiln_philox(seed, stream, counter, w);
    uint64_t x = ((uint64_t)w[0] << 32) | w[1];
    return (uint32_t)(x % n); /* bias < n / 2^64 */
}

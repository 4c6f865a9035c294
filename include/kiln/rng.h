/* kiln/rng.h — counter-based random numbers (Philox4x32-10).
 *
 * value = f(seed, stream, counter): no hidden state, so a value depends only on where it is
 * drawn, never on thread count or call order. One seed drives initialization (stream = parameter
 * index), shuffling, dropout (stream = node id, counter = step * numel + i) and augmentation, so
 * a resumed run draws exactly what an uninterrupted one would have.
 */
#ifndef KILN_RNG_H
#define KILN_RNG_H

#include <stdint.h>

/* Four independent 32-bit words for (seed, stream, counter). */
void kiln_philox(uint64_t seed, uint64_t stream, uint64_t counter, uint32_t out[4]);
/* One 32-bit word: word (counter % 4) of block counter / 4. */
uint32_t kiln_rng_u32(uint64_t seed, uint64_t stream, uint64_t counter);
/* Uniform in [0, 1) with 24 random bits. */
float kiln_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter);
/* Standard normal (Box-Muller over block `counter`). */
float kiln_rng_normal(uint64_t seed, uint64_t stream, uint64_t counter);
/* Uniform integer in [0, n) without modulo bias worth noticing (n < 2^32). */
uint32_t kiln_rng_below(uint64_t seed, uint64_t stream, uint64_t counter, uint32_t n);

#endif

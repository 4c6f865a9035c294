/* clip.c — global-norm gradient clipping (see kiln/optim.h).
 *
 * The norm is summed in double, so it neither overflows nor loses the small terms of a large
 * model, and in a fixed order whatever the thread count: blocks of CLIP_BLOCK values, each summed
 * by one thread, then the block sums in order (an OpenMP reduction would combine the threads'
 * partial sums, whose number is the thread count); a non-finite norm means some gradient is NaN or Inf, and the gradients
 * are then left as they were for the caller to report. The optimizer's step measures with
 * max_norm = 0 and folds the scaling into its own update pass instead of a second sweep here.
 */
#include <math.h>

#include "kiln/optim.h"

#define CLIP_BLOCK  65536
#define CLIP_BLOCKS 64 /* block sums kept on the stack at a time */

float kiln_clip_global_norm(float *g, size_t n, float max_norm) {
    double ss = 0, part[CLIP_BLOCKS];
    size_t blocks = (n + CLIP_BLOCK - 1) / CLIP_BLOCK;
    for (size_t b0 = 0; b0 < blocks; b0 += CLIP_BLOCKS) {
        size_t nb = blocks - b0 < CLIP_BLOCKS ? blocks - b0 : CLIP_BLOCKS;
#pragma omp parallel for schedule(static) if (nb > 1)
        for (size_t b = 0; b < nb; b++) {
            size_t i0 = (b0 + b) * CLIP_BLOCK, i1 = i0 + CLIP_BLOCK < n ? i0 + CLIP_BLOCK : n;
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (size_t i = i0; i < i1; i++) s += (double)g[i] * g[i];
            part[b] = s;
        }
        for (size_t b = 0; b < nb; b++) ss += part[b];
    }
    double norm = sqrt(ss);
    if (!isfinite(norm) || !(max_norm > 0) || norm <= max_norm) return (float)norm;
    float scale = (float)(max_norm / norm);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= scale;
    return (float)norm;
}

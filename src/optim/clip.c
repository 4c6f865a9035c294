/* clip.c — global-norm gradient clipping (see kiln/optim.h).
 *
 * The norm is summed in double (an OpenMP reduction), so it neither overflows nor loses the small
 * terms of a large model; a non-finite norm means some gradient is NaN or Inf, and the gradients
 * are then left as they were for the caller to report. The optimizer's step measures with
 * max_norm = 0 and folds the scaling into its own update pass instead of a second sweep here.
 */
#include <math.h>

#include "kiln/optim.h"

float kiln_clip_global_norm(float *g, size_t n, float max_norm) {
    double ss = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : ss)
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    double norm = sqrt(ss);
    if (!isfinite(norm) || !(max_norm > 0) || norm <= max_norm) return (float)norm;
    float scale = (float)(max_norm / norm);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= scale;
    return (float)norm;
}

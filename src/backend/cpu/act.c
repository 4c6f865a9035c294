/* act.c — activation math (see act.h). GELU is the exact form 0.5 x (1 + erf(x / sqrt 2)).
 *
 * The hard activations follow PyTorch's CPU kernels operation for operation, derivatives at the
 * kinks included: relu6 (hardtanh(0, 6)) passes the gradient only strictly inside (0, 6);
 * hard_sigmoid = min(max(x + 3, 0), 6) / 6 has slope 1/6 strictly inside (-3, 3), else 0;
 * hard_swish = x * min(max(x + 3, 0), 6) / 6 has slope 0 below -3, x / 3 + 1/2 on [-3, 3),
 * 1 from 3 on (so -1/2 at -3 and 1 at 3: PyTorch 1.13's vectorized kernel, which does all but
 * the last few elements of a tensor; its scalar tail loop gives 3/2 at exactly 3). relu6's
 * slope is read from y (0 < y < 6 exactly when 0 < x < 6); the other two need x
 * (hard_sigmoid's y rounds to 1 just below x = 3). */
#include "backend/cpu/act.h"

#include <math.h>
#include <string.h>

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

static const char *act_names[KILN_ACT_COUNT] = {"none",    "relu",  "leaky_relu",   "gelu",
                                                "sigmoid", "tanh",  "relu6",        "hard_sigmoid",
                                                "hard_swish"};

kiln_act kiln_act_from_name(const char *name) {
    if (!name || strcmp(name, "linear") == 0) return KILN_ACT_NONE;
    for (int i = 0; i < KILN_ACT_COUNT; i++)
        if (strcmp(name, act_names[i]) == 0) return (kiln_act)i;
    return KILN_ACT_COUNT;
}

const char *kiln_act_name(kiln_act a) { return (unsigned)a < KILN_ACT_COUNT ? act_names[a] : "?"; }

int kiln_act_grad_from_output(kiln_act a) {
    return a != KILN_ACT_GELU && a != KILN_ACT_HARD_SIGMOID && a != KILN_ACT_HARD_SWISH;
}

static inline float relu6f(float v) { return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f; }

void kiln_act_forward(kiln_act a, float alpha, const float *x, float *y, int64_t n) {
    switch (a) {
    case KILN_ACT_NONE:
        if (y != x) memcpy(y, x, (size_t)n * sizeof *y);
        break;
    case KILN_ACT_RELU:
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case KILN_ACT_LEAKY_RELU:
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
        break;
    case KILN_ACT_GELU:
#pragma omp parallel for schedule(static) if (n > 8192)
        for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * INV_SQRT2));
        break;
    case KILN_ACT_SIGMOID:
#pragma omp parallel for schedule(static) if (n > 8192)
        for (int64_t i = 0; i < n; i++) {
            float v = x[i]; /* stable on both tails */
            y[i] = v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
        }
        break;
    case KILN_ACT_TANH:
#pragma omp parallel for schedule(static) if (n > 8192)
        for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    case KILN_ACT_RELU6:
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) y[i] = relu6f(x[i]);
        break;
    case KILN_ACT_HARD_SIGMOID:
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) y[i] = relu6f(x[i] + 3.0f) / 6.0f;
        break;
    case KILN_ACT_HARD_SWISH:
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * relu6f(x[i] + 3.0f) / 6.0f;
        break;
    default: break;
    }
}

static inline float dact(kiln_act a, float alpha, const float *x, const float *y, int64_t i) {
    switch (a) {
    case KILN_ACT_RELU: return y[i] > 0.0f ? 1.0f : 0.0f;
    case KILN_ACT_LEAKY_RELU: return y[i] > 0.0f ? 1.0f : alpha;
    case KILN_ACT_SIGMOID: return y[i] * (1.0f - y[i]);
    case KILN_ACT_TANH: return 1.0f - y[i] * y[i];
    case KILN_ACT_RELU6: return y[i] > 0.0f && y[i] < 6.0f ? 1.0f : 0.0f;
    case KILN_ACT_HARD_SIGMOID: return x[i] > -3.0f && x[i] < 3.0f ? 1.0f / 6.0f : 0.0f;
    case KILN_ACT_HARD_SWISH: {
        float v = x[i];
        return v < -3.0f ? 0.0f : v < 3.0f ? v / 3.0f + 0.5f : 1.0f;
    }
    case KILN_ACT_GELU: {
        float v = x[i];
        return 0.5f * (1.0f + erff(v * INV_SQRT2)) + v * INV_SQRT_2PI * expf(-0.5f * v * v);
    }
    default: return 1.0f;
    }
}

void kiln_act_backward(kiln_act a, float alpha, const float *x, const float *y, const float *dy,
                       float *dx, int64_t n, int accum) {
    if (a == KILN_ACT_RELU && !accum) { /* one vector select per value; 0, not dy * 0, where
                                         * y <= 0 (PyTorch's threshold_backward: no NaN) */
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        return;
    }
    if (accum) {
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * dact(a, alpha, x, y, i);
    } else {
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * dact(a, alpha, x, y, i);
    }
}

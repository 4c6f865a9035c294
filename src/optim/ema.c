/* ema.c — exponential moving average of the weights (see kiln/optim.h).
 *
 * ema = d ema + (1 - d) p with d = min(decay, (1 + t) / (10 + t)), t = updates so far, as
 * tf.train.ExponentialMovingAverage with num_updates: the early, smaller decay lets the average
 * leave its starting point quickly instead of dragging the initial weights along for ~1/(1-decay)
 * steps. d is computed once per update in double; the pass is one OpenMP simd loop over [n].
 * Invariant: w is [n] floats, 64-byte aligned; t >= 0.
 */
#include <stdlib.h>
#include <string.h>

#include "kiln/mem.h"
#include "kiln/optim.h"

struct kiln_ema {
    size_t n;
    float decay;
    int64_t t; /* updates so far */
    float *w;  /* [n] the averaged weights */
};

kiln_ema *kiln_ema_new(size_t n, float decay, const float *init) {
    if (n == 0 || !init) {
        kiln_error(KILN_ERR_INVALID,
                   "ema: needs n > 0 weights to start from (got n = %zu, init %s)", n,
                   init ? "set" : "NULL");
        return NULL;
    }
    if (!(decay >= 0 && decay <= 1)) {
        kiln_error(KILN_ERR_INVALID, "ema: decay must be in [0, 1], got %g", (double)decay);
        return NULL;
    }
    if (n > SIZE_MAX / sizeof(float)) {
        kiln_error(KILN_ERR_INVALID, "ema: %zu floats overflow", n);
        return NULL;
    }
    kiln_ema *e = calloc(1, sizeof *e);
    if (!e) {
        kiln_error(KILN_ERR_NOMEM, "ema: out of memory");
        return NULL;
    }
    e->w = kiln_alloc(n * sizeof(float));
    if (!e->w) {
        kiln_error_prefix("ema: %zu weights", n);
        free(e);
        return NULL;
    }
    memcpy(e->w, init, n * sizeof(float));
    e->n = n;
    e->decay = decay;
    return e;
}

void kiln_ema_free(kiln_ema *e) {
    if (!e) return;
    kiln_free(e->w);
    free(e);
}

void kiln_ema_update(kiln_ema *e, const float *params) {
    if (!e || !params) return;
    double warm = (1 + (double)e->t) / (10 + (double)e->t);
    float d = (float)(e->decay < warm ? e->decay : warm), a = (float)(1 - (double)d);
    float *restrict w = e->w;
    size_t n = e->n;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) w[i] = d * w[i] + a * params[i];
    e->t++;
}

float *kiln_ema_weights(kiln_ema *e) {
    return e ? e->w : NULL;
}

int64_t kiln_ema_updates(const kiln_ema *e) {
    return e ? e->t : 0;
}

void kiln_ema_set_updates(kiln_ema *e, int64_t t) {
    if (!e) return;
    if (t < 0) {
        kiln_error(KILN_ERR_INVALID, "ema: updates must be >= 0, got %lld; kept %lld", (long long)t,
                   (long long)e->t);
        return;
    }
    e->t = t;
}

/* dropout.c — inverted dropout with a counter-based mask.
 *
 * x [n] (any shape) -> y [n]. Training plans: element i is dropped when
 *   kiln_rng_uniform(seed, stream = node id, counter = step * n + i) < rate
 * and every kept element is scaled by 1 / (1 - rate), so E[y] = x. Inference plans copy x.
 * The mask is a pure function of (graph seed, node id, plan step, index): the same step gives
 * the same mask in any plan at the same batch size and on any number of threads, and each step
 * gives a fresh one (kiln_plan_set_step). Philox yields four 32-bit words per block counter c/4,
 * so the loop walks blocks and draws each block once (exactly kiln_rng_uniform's values).
 *
 * Training plans that run backward keep the mask as bytes [n] in op state (made at compile);
 * backward is dx = mask * dy / (1 - rate), or dx = dy in inference plans.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "kiln/rng.h"
#include "backend/attrs.h"

#define DROPOUT_PAR 16384 /* elements below which loops run on one thread */

typedef struct {
    float rate, scale; /* scale = 1 / (1 - rate) */
    int training;
    unsigned char *mask; /* [n] 1 = kept; only in training plans with backward */
} dropout_state;

static kiln_status dropout_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                                 kiln_dtype *dt) {
    const kiln_dropout_attr *a = KILN_ATTR(n, kiln_dropout_attr);
    char buf[512];
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: input must be F32, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (!(a->rate >= 0.0f && a->rate < 1.0f))
        return kiln_error(KILN_ERR_INVALID, "%s: rate must be in [0, 1), got %g",
                          kiln_node_describe(n, in, buf, sizeof buf), (double)a->rate);
    *out = in[0];
    *dt = KILN_F32;
    return KILN_OK;
}

static void dropout_release(kiln_inst *x) {
    dropout_state *s = x->state;
    kiln_free(s->mask);
    free(s);
    x->state = NULL;
}

static kiln_status dropout_compile(kiln_inst *x, kiln_compile_ctx *c) {
    const kiln_dropout_attr *a = KILN_ATTR(x->node, kiln_dropout_attr);
    dropout_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "dropout: out of memory");
    x->state = s;
    s->rate = a->rate;
    s->scale = 1.0f / (1.0f - a->rate);
    s->training = c->training;
    if (c->training && c->has_backward && x->grad && !(s->mask = kiln_alloc((size_t)x->numel)))
        return KILN_ERR_NOMEM;
    return KILN_OK;
}

static kiln_status dropout_forward(kiln_inst *x, const kiln_run *r) {
    dropout_state *s = x->state;
    const float *X = x->in[0]->val;
    float *Y = x->val;
    const int64_t n = x->numel;
    if (!s->training) {
        memcpy(Y, X, (size_t)n * sizeof *Y);
        return KILN_OK;
    }
    const uint64_t stream = (uint64_t)x->node->id, base = r->step * (uint64_t)n;
    const uint64_t b0 = base >> 2, b1 = (base + (uint64_t)n + 3) >> 2; /* blocks [b0, b1) */
    const float rate = s->rate, scale = s->scale;
    unsigned char *mask = s->mask;
#pragma omp parallel for schedule(static) if (n > DROPOUT_PAR)
    for (uint64_t b = b0; b < b1; b++) {
        uint32_t w[4];
        kiln_philox(r->seed, stream, b, w);
        for (int k = 0; k < 4; k++) {
            uint64_t c = 4 * b + (uint64_t)k;
            if (c < base || c - base >= (uint64_t)n) continue;
            int64_t i = (int64_t)(c - base);
            float u = (float)(w[k] >> 8) * (1.0f / 16777216.0f); /* = kiln_rng_uniform(.., c) */
            int keep = !(u < rate);
            Y[i] = keep ? X[i] * scale : 0.0f;
            if (mask) mask[i] = (unsigned char)keep;
        }
    }
    return KILN_OK;
}

static void dropout_backward(kiln_inst *x, const kiln_run *r) {
    dropout_state *s = x->state;
    float *dX = x->in[0]->grad;
    if (!dX) return;
    const float *dY = x->grad;
    const int64_t n = x->numel;
    const int accum = x->accum[0];
    if (!s->training) {
        if (!accum)
            memcpy(dX, dY, (size_t)n * sizeof *dX);
        else {
#pragma omp parallel for simd schedule(static) if (n > DROPOUT_PAR)
            for (int64_t i = 0; i < n; i++) dX[i] += dY[i];
        }
        return;
    }
    const unsigned char *mask = s->mask;
    const float scale = s->scale;
#pragma omp parallel for simd schedule(static) if (n > DROPOUT_PAR)
    for (int64_t i = 0; i < n; i++) {
        float d = mask[i] ? dY[i] * scale : 0.0f;
        dX[i] = accum ? dX[i] + d : d;
    }
    (void)r;
}

const kiln_op kiln_op_dropout = {
    .name = "dropout",
    .backend = &kiln_backend_cpu,
    .infer = dropout_infer,
    .compile = dropout_compile,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .release = dropout_release,
};

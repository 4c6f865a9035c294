/* softmax.c — softmax over the last axis: y = exp(x - max) / sum(exp(x - max)).
 *
 * Shapes: x [B, ..., K] seen as [rows, K]; y the same. Subtracting the row maximum keeps every
 * exponent <= 0, so logits of any size give finite values (±1000 included). Backward, per row:
 *   dx = y * (dy - sum_k dy_k y_k)
 * Rows are independent: both passes split rows across threads, and each row is summed in one
 * fixed order, so results do not depend on the thread count. No state.
 */
#include <math.h>

#include "backend/ops.h"

static kiln_status softmax_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                                 kiln_dtype *dt) {
    char buf[512];
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: softmax needs an F32 input, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (in[0].ndim < 2)
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: softmax needs [batch, ..., classes] (the last axis is normalized, "
                          "never the batch axis)",
                          kiln_node_describe(n, in, buf, sizeof buf));
    *out = in[0];
    *dt = KILN_F32;
    return KILN_OK;
}

static kiln_status softmax_forward(kiln_inst *x, const kiln_run *r) {
    int64_t K = x->shape.dims[x->shape.ndim - 1], rows = x->numel / K;
    const float *in = x->in[0]->val; /* [rows, K] */
    float *out = x->val;             /* [rows, K] */
#pragma omp parallel for schedule(static) if (x->numel > 16384)
    for (int64_t i = 0; i < rows; i++) {
        const float *z = in + i * K;
        float *y = out + i * K;
        float m = z[0];
        for (int64_t k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
        double sum = 0;
        for (int64_t k = 0; k < K; k++) sum += y[k] = expf(z[k] - m);
        float inv = (float)(1.0 / sum);
        for (int64_t k = 0; k < K; k++) y[k] *= inv;
    }
    return KILN_OK;
}

static void softmax_backward(kiln_inst *x, const kiln_run *r) {
    int64_t K = x->shape.dims[x->shape.ndim - 1], rows = x->numel / K;
    const float *yv = x->val, *dyv = x->grad; /* [rows, K] */
    float *dxv = x->in[0]->grad;              /* [rows, K] */
    int accum = x->accum[0];
    if (!dxv) return;
#pragma omp parallel for schedule(static) if (x->numel > 16384)
    for (int64_t i = 0; i < rows; i++) {
        const float *y = yv + i * K, *dy = dyv + i * K;
        float *dx = dxv + i * K;
        double dot = 0;
        for (int64_t k = 0; k < K; k++) dot += (double)dy[k] * y[k];
        float d = (float)dot;
        if (accum)
            for (int64_t k = 0; k < K; k++) dx[k] += y[k] * (dy[k] - d);
        else
            for (int64_t k = 0; k < K; k++) dx[k] = y[k] * (dy[k] - d);
    }
}

const kiln_op kiln_op_softmax = {.name = "softmax", .backend = &kiln_backend_cpu,
                                 .infer = softmax_infer,
                                 .forward = softmax_forward,
                                 .backward = softmax_backward};

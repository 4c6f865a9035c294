/* clip.c — y = min(max(x, min), max) elementwise (ONNX Clip, PyTorch clamp), any shape, F32.
 *
 * An absent bound is -inf / +inf (the attribute holds it). NaN passes through (both comparisons
 * are false), as in PyTorch. When min > max every value becomes max (ONNX, PyTorch).
 * Backward follows PyTorch's clamp: dx = dy where min <= x <= max (bounds included), else 0. It
 * reads x, which stays in the plan's buffer after forward, so the op keeps no state.
 */
#include "backend/ops.h"
#include "backend/attrs.h"

static kiln_status clip_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                              kiln_dtype *dt) {
    char buf[512];
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: clip needs an F32 input, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    *out = in[0];
    *dt = KILN_F32;
    return KILN_OK;
}

static kiln_status clip_forward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    const kiln_clip_attr *a = KILN_ATTR(x->node, kiln_clip_attr);
    const float *in = x->in[0]->val, lo = a->min, hi = a->max;
    float *y = x->val;
    int64_t n = x->numel;
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        float v = in[i] < lo ? lo : in[i];
        y[i] = v > hi ? hi : v;
    }
    return KILN_OK;
}

static void clip_backward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    const kiln_clip_attr *a = KILN_ATTR(x->node, kiln_clip_attr);
    const float *in = x->in[0]->val, *dy = x->grad, lo = a->min, hi = a->max;
    float *dx = x->in[0]->grad;
    int64_t n = x->numel;
    if (!dx) return;
    if (x->accum[0]) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) dx[i] += in[i] >= lo && in[i] <= hi ? dy[i] : 0.0f;
    } else {
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) dx[i] = in[i] >= lo && in[i] <= hi ? dy[i] : 0.0f;
    }
}

const kiln_op kiln_op_clip = {.name = "clip", .backend = &kiln_backend_cpu, .infer = clip_infer,
                              .forward = clip_forward, .backward = clip_backward};

/* global_pool.c — global max and average pooling over 1, 2 or 3 spatial axes, F32:
 * x [B, C, s1..sd] -> y [B, C] (Keras GlobalMaxPooling1D/2D/3D, GlobalAveragePooling1D/3D;
 * ONNX GlobalMaxPool / GlobalAveragePool followed by a flatten). The 2-D average keeps its own
 * op, kiln_op_global_avgpool2d (its own name and infer, the same kernels); these serve the
 * other cases.
 *
 * Max: the first maximum of each plane in memory order wins, and a NaN wins over numbers (the
 * last NaN, as PyTorch's max pooling kernels: v > m || isnan(v)). Backward gives dy to that one
 * element, found again from x (which stays in the plan's buffer), so the op keeps no state.
 * Average: y = sum / N, dx = dy / N on every element. Planes are independent: one thread each.
 */
#include <math.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/attrs.h"

static kiln_status gp_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                            kiln_dtype *dt) {
    int nsp = KILN_ATTR(n, kiln_global_pool_attr)->nsp;
    char buf[512];
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: global pooling needs an F32 input, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (nsp < 1 || nsp > 3 || in[0].ndim != nsp + 2)
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: global pooling %dd needs an input [batch, channels%s]",
                          kiln_node_describe(n, in, buf, sizeof buf), nsp,
                          nsp == 1 ? ", length" : nsp == 2 ? ", height, width"
                                                           : ", depth, height, width");
    int64_t d[2] = {in[0].dims[0], in[0].dims[1]};
    *out = kiln_shape_make(2, d);
    *dt = KILN_F32;
    return KILN_OK;
}

/* Index of the maximum of p[0..n) (see the top of the file). */
static inline int64_t argmax(const float *p, int64_t n) {
    int64_t k = 0;
    float m = p[0];
    for (int64_t j = 1; j < n; j++)
        if (p[j] > m || isnan(p[j])) m = p[j], k = j;
    return k;
}

static kiln_status gmax_forward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    const float *in = x->in[0]->val;
    float *y = x->val;
    int64_t planes = x->numel, n = x->in[0]->numel / planes;
#pragma omp parallel for schedule(static) if (planes * n > 65536)
    for (int64_t i = 0; i < planes; i++) y[i] = in[i * n + argmax(in + i * n, n)];
    return KILN_OK;
}

static void gmax_backward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    const float *in = x->in[0]->val, *dy = x->grad;
    float *dx = x->in[0]->grad;
    int64_t planes = x->numel, n = x->in[0]->numel / planes;
    int accum = x->accum[0];
    if (!dx) return;
#pragma omp parallel for schedule(static) if (planes * n > 65536)
    for (int64_t i = 0; i < planes; i++) {
        float *d = dx + i * n;
        if (!accum) memset(d, 0, (size_t)n * sizeof *d);
        d[argmax(in + i * n, n)] += dy[i];
    }
}

static kiln_status gavg_forward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    const float *in = x->in[0]->val;
    float *y = x->val;
    int64_t planes = x->numel, n = x->in[0]->numel / planes;
    float inv = 1.0f / (float)n;
#pragma omp parallel for schedule(static) if (planes * n > 65536)
    for (int64_t i = 0; i < planes; i++) {
        const float *p = in + i * n;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < n; j++) s += p[j];
        y[i] = s * inv;
    }
    return KILN_OK;
}

static void gavg_backward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    const float *dy = x->grad;
    float *dx = x->in[0]->grad;
    int64_t planes = x->numel, n = x->in[0]->numel / planes;
    float inv = 1.0f / (float)n;
    int accum = x->accum[0];
    if (!dx) return;
#pragma omp parallel for schedule(static) if (planes * n > 65536)
    for (int64_t i = 0; i < planes; i++) {
        float g = dy[i] * inv, *d = dx + i * n;
        if (accum) {
#pragma omp simd
            for (int64_t j = 0; j < n; j++) d[j] += g;
        } else {
#pragma omp simd
            for (int64_t j = 0; j < n; j++) d[j] = g;
        }
    }
}

const kiln_op kiln_op_global_maxpool = {.name = "global_max_pooling",
                                        .backend = &kiln_backend_cpu, .infer = gp_infer,
                                        .forward = gmax_forward, .backward = gmax_backward};
const kiln_op kiln_op_global_avgpool = {.name = "global_average_pooling",
                                        .backend = &kiln_backend_cpu, .infer = gp_infer,
                                        .forward = gavg_forward, .backward = gavg_backward};

/* ---- the 2-D global average pooling op: [B, C, H, W] -> [B, C] ---- */

static kiln_status gap_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                             kiln_dtype *dt) {
    char buf[512];
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: input must be F32, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (in[0].ndim != 4)
        return kiln_error(KILN_ERR_SHAPE, "%s: the input must be [batch, channels, height, width]",
                          kiln_node_describe(n, in, buf, sizeof buf));
    int64_t d[2] = {in[0].dims[0], in[0].dims[1]};
    *out = kiln_shape_make(2, d);
    *dt = KILN_F32;
    return KILN_OK;
}

const kiln_op kiln_op_global_avgpool2d = {
    .name = "global_average_pooling2d",
    .backend = &kiln_backend_cpu,
    .infer = gap_infer,
    .forward = gavg_forward,
    .backward = gavg_backward,
};

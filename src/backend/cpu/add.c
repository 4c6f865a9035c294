/* add.c — elementwise sum of two tensors of one shape: y = a + b; da = db = dy. */
#include <string.h>

#include "backend/cpu/vec.h"
#include "backend/ops.h"

static kiln_status add_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out, kiln_dtype *dt) {
    char buf[512];
    if (!kiln_shape_equal(&in[0], &in[1]))
        return kiln_error(KILN_ERR_SHAPE, "%s: add needs equal shapes",
                          kiln_node_describe(n, in, buf, sizeof buf));
    if (n->in[0]->dtype != KILN_F32 || n->in[1]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: add needs F32 inputs",
                          kiln_node_describe(n, in, buf, sizeof buf));
    *out = in[0];
    *dt = KILN_F32;
    return KILN_OK;
}

static kiln_status add_forward(kiln_inst *x, const kiln_run *r) {
    const float *a = x->in[0]->val, *b = x->in[1]->val;
    float *y = x->val;
    int64_t n = x->numel;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    return KILN_OK;
}

static void add_backward(kiln_inst *x, const kiln_run *r) {
    int64_t n = x->numel;
    const float *dy = x->grad;
    for (int j = 0; j < 2; j++) {
        float *d = x->in[j]->grad;
        if (!d) continue;
        kiln_vec_put(d, dy, n, x->accum[j]);
    }
}

const kiln_op kiln_op_add = {
    .name = "add",
    .backend = &kiln_backend_cpu,
    .infer = add_infer,
    .forward = add_forward,
    .backward = add_backward};

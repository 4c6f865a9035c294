/* concat.c — joins n tensors along one axis (never the batch axis).
 *
 * Shapes: x_i [d0, .., c_i, .., dk] (equal except at the axis) -> y [d0, .., sum c_i, .., dk].
 * Viewed around the axis, every tensor is [outer, row]: outer = prod(dims before the axis),
 * row_i = c_i * prod(dims after it). Output row o is input 0's row o, then input 1's row o, ...
 * So forward is outer * n contiguous copies and backward the same copies the other way (or
 * adds, when the plan says an input's gradient accumulates). Inputs are handled in index order,
 * which keeps the contract when one tensor appears twice (concat([a, b, a])).
 *
 * Every dtype is allowed as long as all inputs share it; gradients flow only through F32.
 * No state: the row sizes are recomputed from the shapes (n multiplications) on each call.
 */
#include <string.h>

#include "backend/ops.h"
#include "backend/attrs.h"

static kiln_status concat_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                                kiln_dtype *dt) {
    int axis = KILN_ATTR(n, kiln_concat_attr)->axis;
    char buf[768];
    const kiln_shape *s0 = &in[0];
    if (n->n_in < 1)
        return kiln_error(KILN_ERR_INVALID, "%s (concat): needs at least one input", n->name);
    if (axis < 1 || axis >= s0->ndim)
        return kiln_error(KILN_ERR_SHAPE, "%s: axis %d is not in 1..%d (axis 0 is the batch axis)",
                          kiln_node_describe(n, in, buf, sizeof buf), axis, s0->ndim - 1);
    *out = *s0;
    for (int i = 1; i < n->n_in; i++) {
        if (n->in[i]->dtype != n->in[0]->dtype)
            return kiln_error(
                KILN_ERR_INVALID, "%s: inputs have different dtypes (%s is %s, %s is %s)",
                kiln_node_describe(n, in, buf, sizeof buf), n->in[0]->name,
                kiln_dtype_name(n->in[0]->dtype), n->in[i]->name, kiln_dtype_name(n->in[i]->dtype));
        int ok = in[i].ndim == s0->ndim;
        for (int d = 0; ok && d < s0->ndim; d++) ok = d == axis || in[i].dims[d] == s0->dims[d];
        if (!ok)
            return kiln_error(KILN_ERR_SHAPE,
                              "%s: inputs must have the same rank and agree on every axis but %d",
                              kiln_node_describe(n, in, buf, sizeof buf), axis);
        out->dims[axis] += in[i].dims[axis];
    }
    *dt = n->in[0]->dtype;
    return KILN_OK;
}

/* Elements of one "row" (from the axis to the end) of shape s. */
static int64_t row_size(const kiln_shape *s, int axis) {
    int64_t r = 1;
    for (int d = axis; d < s->ndim; d++) r *= s->dims[d];
    return r;
}

static kiln_status concat_forward(kiln_inst *x, const kiln_run *r) {
    int axis = KILN_ATTR(x->node, kiln_concat_attr)->axis;
    size_t es = kiln_dtype_size(x->dtype);
    int64_t out_row = row_size(&x->shape, axis), outer = x->numel / out_row, off = 0;
    char *y = x->val; /* [outer, out_row] */
    for (int i = 0; i < x->n_in; i++) {
        const char *src = x->in[i]->val; /* [outer, row] */
        int64_t row = row_size(&x->in[i]->shape, axis);
#pragma omp parallel for schedule(static) if (outer * row > 65536)
        for (int64_t o = 0; o < outer; o++)
            memcpy(y + (size_t)(o * out_row + off) * es, src + (size_t)(o * row) * es,
                   (size_t)row * es);
        off += row;
    }
    return KILN_OK;
}

static void concat_backward(kiln_inst *x, const kiln_run *r) {
    int axis = KILN_ATTR(x->node, kiln_concat_attr)->axis;
    int64_t out_row = row_size(&x->shape, axis), outer = x->numel / out_row, off = 0;
    const float *dy = x->grad; /* [outer, out_row] */
    for (int i = 0; i < x->n_in; i++) {
        float *dx = x->in[i]->grad; /* [outer, row] */
        int64_t row = row_size(&x->in[i]->shape, axis);
        int accum = x->accum[i];
        if (dx) {
#pragma omp parallel for schedule(static) if (outer * row > 65536)
            for (int64_t o = 0; o < outer; o++) {
                const float *s = dy + o * out_row + off;
                float *d = dx + o * row;
                if (!accum)
                    memcpy(d, s, (size_t)row * sizeof *d);
                else
                    for (int64_t j = 0; j < row; j++) d[j] += s[j];
            }
        }
        off += row;
    }
}

const kiln_op kiln_op_concat = {.name = "concat", .backend = &kiln_backend_cpu,
                                .infer = concat_infer,
                                .forward = concat_forward,
                                .backward = concat_backward};

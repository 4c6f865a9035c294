/* reshape.c — reshape (and flatten, which is a reshape to [B, -1]): same values, new shape.
 *
 * Shapes: x [B, d1, .., dn] -> y [B, e1, .., em] with prod(d) == prod(e). The attribute holds
 * e (without the batch axis); at most one entry is -1 and is inferred at each batch size, so a
 * plan at batch 128 and one at batch 1 share the node. Every dtype is allowed (ids can be
 * reshaped too); gradients flow only through F32 (the plan enforces that).
 *
 * The plan gives every node its own buffer, so forward is a copy of the bytes and backward a
 * copy (accum 0) or an add (accum 1) of dy into dx: one pass each, no state.
 */
#include <stdio.h>
#include <string.h>

#include "backend/cpu/vec.h"
#include "backend/ops.h"
#include "backend/attrs.h"

/* "[4, -1]" for the attribute's dims (batch axis excluded). */
static const char *dims_str(const kiln_reshape_attr *a, char *buf, size_t cap) {
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < a->ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "",
                                 (long long)a->dims[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

static kiln_status reshape_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                                 kiln_dtype *dt) {
    const kiln_reshape_attr *a = KILN_ATTR(n, kiln_reshape_attr);
    char buf[512], ds[160];
    if (in[0].ndim < 1)
        return kiln_error(KILN_ERR_SHAPE, "%s: the input has no batch axis",
                          kiln_node_describe(n, in, buf, sizeof buf));
    if (a->ndim < 0 || a->ndim > KILN_MAX_DIMS - 1)
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: target has %d dims (at most %d besides the batch axis)",
                          kiln_node_describe(n, in, buf, sizeof buf), a->ndim, KILN_MAX_DIMS - 1);
    int64_t per = kiln_shape_numel(&in[0]) / in[0].dims[0]; /* values per sample */
    int64_t known = 1;
    int infer_at = -1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->dims[i] == -1 && infer_at < 0)
            infer_at = i;
        else if (a->dims[i] == -1)
            return kiln_error(KILN_ERR_SHAPE, "%s: target %s has more than one -1",
                              kiln_node_describe(n, in, buf, sizeof buf),
                              dims_str(a, ds, sizeof ds));
        else if (a->dims[i] <= 0)
            return kiln_error(KILN_ERR_SHAPE, "%s: target %s has dim %d = %lld (must be > 0 or -1)",
                              kiln_node_describe(n, in, buf, sizeof buf),
                              dims_str(a, ds, sizeof ds), i, (long long)a->dims[i]);
        else
            known *= a->dims[i];
    }
    if (infer_at >= 0 ? per % known != 0 : per != known)
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: cannot reshape %lld values per sample into %s (batch axis excluded)",
                          kiln_node_describe(n, in, buf, sizeof buf), (long long)per,
                          dims_str(a, ds, sizeof ds));
    out->ndim = a->ndim + 1;
    out->dims[0] = in[0].dims[0];
    for (int i = 0; i < a->ndim; i++) out->dims[i + 1] = i == infer_at ? per / known : a->dims[i];
    *dt = n->in[0]->dtype;
    return KILN_OK;
}

static kiln_status reshape_forward(kiln_inst *x, const kiln_run *r) {
    memcpy(x->val, x->in[0]->val, (size_t)x->numel * kiln_dtype_size(x->dtype));
    return KILN_OK;
}

static void reshape_backward(kiln_inst *x, const kiln_run *r) {
    float *dx = x->in[0]->grad; /* [x's shape], same numel as dy */
    const float *dy = x->grad;  /* [y's shape] */
    int64_t n = x->numel;
    if (!dx) return;
    kiln_vec_put(dx, dy, n, x->accum[0]);
}

const kiln_op kiln_op_reshape = {.name = "reshape", .backend = &kiln_backend_cpu,
                                 .infer = reshape_infer,
                                 .forward = reshape_forward,
                                 .backward = reshape_backward};

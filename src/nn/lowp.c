/* lowp.c (nn) — switching a built dense or convolution node to its low-precision op (int8 or
 * bf16 inference, src/backend/cpu/lowp_*.c). The node keeps its id, name, inputs (so its
 * parameters) and shape; its op and attribute change: the new attribute (kiln_lowp_attr) holds
 * the original one first, so the low-precision op's shape inference is the original's. Plans
 * compiled afterwards run it; plans compiled before keep what they compiled. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/attrs.h"
#include "backend/ops.h"
#include "kiln/nn.h"

int kiln_lowp_supported(const kiln_node *n) {
    return n && n->kind == KILN_NODE_OP &&
           (n->op == &kiln_op_dense || n->op == &kiln_op_conv1d || n->op == &kiln_op_conv2d ||
            n->op == &kiln_op_conv3d);
}

kiln_status kiln_lowp_convert(kiln_graph *g, kiln_node *n, const kiln_lowp_opts *o) {
    (void)g;
    if (!n || !o) return kiln_error(KILN_ERR_INVALID, "lowp: NULL node or options");
    if (!kiln_lowp_supported(n))
        return kiln_error(KILN_ERR_INVALID, "%s (%s): no int8/bf16 form (only dense and conv1d/2d/3d)",
                          n->name, n->op ? n->op->name : "not an op");
    if (o->precision != KILN_PRECISION_INT8 && o->precision != KILN_PRECISION_BF16)
        return kiln_error(KILN_ERR_INVALID, "%s: unknown precision %d", n->name, (int)o->precision);
    if (o->precision == KILN_PRECISION_INT8 && !(isfinite(o->in_scale) && o->in_scale > 0))
        return kiln_error(KILN_ERR_INVALID, "%s: int8 input scale %g is not a positive finite number", n->name,
                          (double)o->in_scale);
    kiln_lowp_attr *a = calloc(1, sizeof *a);
    if (!a) return kiln_error(KILN_ERR_NOMEM, "lowp: out of memory");
    int dense = n->op == &kiln_op_dense;
    if (dense) a->base.dense = *KILN_ATTR(n, kiln_dense_attr);
    else a->base.conv = *KILN_ATTR(n, kiln_conv_attr);
    a->base_op = n->op;
    a->dtype = o->precision == KILN_PRECISION_INT8 ? KILN_LOWP_INT8 : KILN_LOWP_BF16;
    a->in_scale = o->precision == KILN_PRECISION_INT8 ? o->in_scale : 1.0f;
    a->in_signed = o->in_signed != 0;
    free(n->attr);
    n->attr = a;
    n->op = dense ? &kiln_op_dense_lowp : &kiln_op_conv_lowp;
    return KILN_OK;
}

int kiln_lowp_get(const kiln_node *n, kiln_lowp_opts *o) {
    if (!n || (n->op != &kiln_op_dense_lowp && n->op != &kiln_op_conv_lowp)) return 0;
    const kiln_lowp_attr *a = KILN_ATTR(n, kiln_lowp_attr);
    if (o) {
        o->precision = a->dtype == KILN_LOWP_INT8 ? KILN_PRECISION_INT8 : KILN_PRECISION_BF16;
        o->in_scale = a->in_scale;
        o->in_signed = a->in_signed;
    }
    return 1;
}

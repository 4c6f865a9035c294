/* activation.c — a standalone elementwise activation: y = act(x), any shape, F32.
 *
 * The math lives in act.[ch], shared with the layers that fuse an activation. Backward reads
 * the output y (relu, leaky relu, sigmoid, tanh, relu6) or the input x (GELU, hard_sigmoid,
 * hard_swish) — both stay in the plan's buffers after forward — so the op keeps no state. KILN_ACT_NONE is the identity (Keras's
 * Activation("linear")). Leaky relu's slope is the attribute alpha, which must be >= 0 (the
 * builder checks): its derivative is recovered from the sign of y, and a negative slope would
 * flip that sign.
 */
#include "backend/cpu/act.h"
#include "backend/ops.h"
#include "backend/attrs.h"

static kiln_status activation_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                                    kiln_dtype *dt) {
    const kiln_activation_attr *a = KILN_ATTR(n, kiln_activation_attr);
    char buf[512];
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: %s needs an F32 input, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf), kiln_act_name(a->act),
                          kiln_dtype_name(n->in[0]->dtype));
    if ((unsigned)a->act >= KILN_ACT_COUNT)
        return kiln_error(KILN_ERR_INVALID, "%s: unknown activation %d",
                          kiln_node_describe(n, in, buf, sizeof buf), (int)a->act);
    *out = in[0];
    *dt = KILN_F32;
    return KILN_OK;
}

static kiln_status activation_forward(kiln_inst *x, const kiln_run *r) {
    const kiln_activation_attr *a = KILN_ATTR(x->node, kiln_activation_attr);
    kiln_act_forward(a->act, a->alpha, x->in[0]->val, x->val, x->numel);
    return KILN_OK;
}

static void activation_backward(kiln_inst *x, const kiln_run *r) {
    const kiln_activation_attr *a = KILN_ATTR(x->node, kiln_activation_attr);
    if (!x->in[0]->grad) return;
    kiln_act_backward(a->act, a->alpha, x->in[0]->val, x->val, x->grad, x->in[0]->grad, x->numel,
                      x->accum[0]);
}

const kiln_op kiln_op_activation = {.name = "activation", .backend = &kiln_backend_cpu,
                                    .infer = activation_infer,
                                    .forward = activation_forward,
                                    .backward = activation_backward};

/* losses.c (nn) — loss builders (see kiln/nn.h; the math is in backend/cpu/losses.c).
 *
 * Each adds one node whose value is a scalar (shape [], ndim 0): a plan given it as .loss seeds
 * dL/dloss = 1. Names come from the op: softmax_cross_entropy_<n>, binary_cross_entropy_<n>,
 * mse_<n>, mae_<n>, huber_<n>. Attribute rules, checked here:
 *   label_smoothing must lie in [0, 1);
 *   huber's delta 0 means the default 1.0 (the zero-means-default rule of nn.h); a negative or
 *   non-finite delta is an error.
 * Shape and dtype agreement of the two inputs is checked by the op's infer.
 */
#include <math.h>

#include "backend/ops.h"
#include "backend/attrs.h"
#include "kiln/nn.h"

/* The name the op would get by default, taken now so that a builder error can name the node. */
static const char *take_name(kiln_graph *g, const kiln_op *op, char *buf) {
    if (!kiln_graph_auto_name(g, op->name, buf, 96)) {
        kiln_error(KILN_ERR_NOMEM, "%s: out of memory", op->name);
        return NULL;
    }
    return buf;
}

kiln_node *kiln_softmax_cross_entropy(kiln_graph *g, kiln_node *logits, kiln_node *labels,
                                      float label_smoothing) {
    char name[96];
    if (!g || !logits || !labels || !take_name(g, &kiln_op_softmax_cross_entropy, name))
        return NULL;
    if (!(label_smoothing >= 0.0f && label_smoothing < 1.0f)) {
        kiln_error(
            KILN_ERR_INVALID,
            "%s (softmax_cross_entropy) got logits %s, labels %s: label_smoothing must be in "
            "[0, 1), got %g",
            name, kiln_node_name(logits), kiln_node_name(labels), (double)label_smoothing);
        return NULL;
    }
    kiln_node *in[2] = {logits, labels};
    kiln_loss_attr a = {.label_smoothing = label_smoothing};
    return kiln_graph_add_op(g, &kiln_op_softmax_cross_entropy, in, 2, &a, sizeof a, name);
}

static kiln_node *pair(kiln_graph *g, const kiln_op *op, kiln_node *a, kiln_node *b) {
    kiln_node *in[2] = {a, b};
    kiln_loss_attr attr = {0};
    return kiln_graph_add_op(g, op, in, 2, &attr, sizeof attr, NULL);
}

kiln_node *kiln_binary_cross_entropy(kiln_graph *g, kiln_node *logits, kiln_node *targets) {
    return pair(g, &kiln_op_binary_cross_entropy, logits, targets);
}

kiln_node *kiln_mse(kiln_graph *g, kiln_node *pred, kiln_node *target) {
    return pair(g, &kiln_op_mse, pred, target);
}

kiln_node *kiln_mae(kiln_graph *g, kiln_node *pred, kiln_node *target) {
    return pair(g, &kiln_op_mae, pred, target);
}

kiln_node *kiln_huber(kiln_graph *g, kiln_node *pred, kiln_node *target, float delta) {
    char name[96];
    if (!g || !pred || !target || !take_name(g, &kiln_op_huber, name)) return NULL;
    if (!(isfinite(delta) && delta >= 0.0f)) {
        kiln_error(KILN_ERR_INVALID,
                   "%s (huber) got pred %s, target %s: delta must be finite and > 0 (0 means the "
                   "default 1.0), got %g",
                   name, kiln_node_name(pred), kiln_node_name(target), (double)delta);
        return NULL;
    }
    kiln_node *in[2] = {pred, target};
    kiln_loss_attr a = {.delta = delta == 0.0f ? 1.0f : delta};
    return kiln_graph_add_op(g, &kiln_op_huber, in, 2, &a, sizeof a, name);
}

kiln_node *kiln_softmax_distillation(kiln_graph *g, kiln_node *logits, kiln_node *teacher,
                                     kiln_node *labels, float temperature, float alpha) {
    char name[96];
    if (!g || !logits || !teacher || !labels ||
        !take_name(g, &kiln_op_softmax_distillation, name))
        return NULL;
    if (!(temperature > 0.0f && isfinite(temperature)) || !(alpha >= 0.0f && alpha <= 1.0f)) {
        kiln_error(KILN_ERR_INVALID,
                   "%s (softmax_distillation): temperature must be > 0 (got %g) and alpha in "
                   "[0, 1] (got %g)", name, (double)temperature, (double)alpha);
        return NULL;
    }
    kiln_node *in[3] = {logits, teacher, labels};
    kiln_distill_attr a = {.temperature = temperature, .alpha = alpha};
    return kiln_graph_add_op(g, &kiln_op_softmax_distillation, in, 3, &a, sizeof a, name);
}

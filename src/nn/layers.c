/* layers.c (nn) — builders for the shape ops (flatten, reshape, concat), the standalone
 * activations and softmax (see kiln/nn.h). They check their attributes, pick a Keras-style name
 * and add one node; shape checks live in each op's infer, which names the node and its inputs.
 *
 * Auto names follow the Keras layer each builder stands for:
 *   kiln_flatten -> flatten_<n>        kiln_reshape -> reshape_<n>
 *   kiln_concat  -> concatenate_<n>    kiln_activation (any act) -> activation_<n>
 *   kiln_relu -> relu_<n>   kiln_leaky_relu -> leaky_re_lu_<n>   kiln_gelu -> gelu_<n>
 *   kiln_sigmoid -> sigmoid_<n>   kiln_tanh -> tanh_<n>   kiln_softmax -> softmax_<n>
 *   kiln_relu6 -> relu6_<n>   kiln_hard_sigmoid -> hard_sigmoid_<n>
 *   kiln_hard_swish -> hard_swish_<n>
 * kiln_activation with KILN_ACT_LEAKY_RELU uses slope 0.01, as a fused activation does;
 * kiln_leaky_relu takes the slope (finite, >= 0; Keras's LeakyReLU default is 0.3).
 */
#include <math.h>
#include <stdio.h>

#include "backend/ops.h"
#include "backend/attrs.h"
#include "kiln/nn.h"

/* The next Keras-style name for kind into buf (96 bytes); 0 with message when out of memory. */
static int auto_name(kiln_graph *g, const char *kind, char *buf) {
    if (kiln_graph_auto_name(g, kind, buf, 96)) return 1;
    kiln_error(KILN_ERR_NOMEM, "%s: out of memory", kind);
    return 0;
}

/* "x=[1, 28, 28], y=[1, 10]" for error messages about nodes not yet built. */
static const char *inputs_str(kiln_node *const *xs, int n, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used < cap; i++) {
        char s[128];
        kiln_shape sh = kiln_node_shape(xs[i]);
        used += (size_t)snprintf(buf + used, cap - used, "%s%s=%s", i ? ", " : "",
                                 kiln_node_name(xs[i]), kiln_shape_str(&sh, s, sizeof s));
    }
    return buf;
}

kiln_node *kiln_reshape(kiln_graph *g, kiln_node *x, int ndim, const int64_t *dims) {
    if (!g || !x) return NULL;
    char name[96], in[256];
    if (!auto_name(g, "reshape", name)) return NULL;
    if (ndim < 0 || ndim > KILN_MAX_DIMS - 1 || (ndim > 0 && !dims)) {
        kiln_error(KILN_ERR_INVALID,
                   "%s (reshape) got %s: need 0..%d target dims (batch axis excluded), got %d%s",
                   name, inputs_str(&x, 1, in, sizeof in), KILN_MAX_DIMS - 1, ndim,
                   ndim > 0 && !dims ? " and no dims array" : "");
        return NULL;
    }
    kiln_reshape_attr a = {.ndim = ndim};
    for (int i = 0; i < ndim; i++) a.dims[i] = dims[i];
    return kiln_graph_add_op(g, &kiln_op_reshape, &x, 1, &a, sizeof a, name);
}

kiln_node *kiln_flatten(kiln_graph *g, kiln_node *x) {
    if (!g || !x) return NULL;
    char name[96];
    if (!auto_name(g, "flatten", name)) return NULL;
    kiln_reshape_attr a = {.ndim = 1, .dims = {-1}};
    return kiln_graph_add_op(g, &kiln_op_reshape, &x, 1, &a, sizeof a, name);
}

kiln_node *kiln_concat(kiln_graph *g, kiln_node *const *xs, int n, int axis) {
    if (!g) return NULL;
    if (n < 1 || !xs) {
        kiln_error(KILN_ERR_INVALID, "concatenate: needs at least one input, got %d", n);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!xs[i]) return NULL; /* an earlier builder failed; keep its message */
    char name[96], in[512];
    if (!auto_name(g, "concatenate", name)) return NULL;
    int rank = kiln_node_shape(xs[0]).ndim, ax = axis < 0 ? axis + rank : axis;
    if (ax < 1 || ax >= rank) {
        kiln_error(KILN_ERR_SHAPE,
                   "%s (concat) got %s: axis %d is out of range for rank %d (use 1..%d or -%d..-1; "
                   "the batch axis 0 cannot be joined)",
                   name, inputs_str(xs, n, in, sizeof in), axis, rank, rank - 1, rank - 1);
        return NULL;
    }
    kiln_concat_attr a = {ax};
    return kiln_graph_add_op(g, &kiln_op_concat, xs, n, &a, sizeof a, name);
}

static kiln_node *act_node(kiln_graph *g, kiln_node *x, kiln_act act, float alpha,
                           const char *kind) {
    if (!g || !x) return NULL;
    char name[96], in[256];
    if (!auto_name(g, kind, name)) return NULL;
    if ((unsigned)act >= KILN_ACT_COUNT) {
        kiln_error(KILN_ERR_INVALID, "%s (activation) got %s: unknown activation %d", name,
                   inputs_str(&x, 1, in, sizeof in), (int)act);
        return NULL;
    }
    if (act == KILN_ACT_LEAKY_RELU && !(isfinite(alpha) && alpha >= 0.0f)) {
        kiln_error(KILN_ERR_INVALID,
                   "%s (activation) got %s: leaky relu slope must be finite and >= 0, got %g", name,
                   inputs_str(&x, 1, in, sizeof in), (double)alpha);
        return NULL;
    }
    kiln_activation_attr a = {act, act == KILN_ACT_LEAKY_RELU ? alpha : 0.0f};
    return kiln_graph_add_op(g, &kiln_op_activation, &x, 1, &a, sizeof a, name);
}

kiln_node *kiln_activation(kiln_graph *g, kiln_node *x, kiln_act act) {
    return act_node(g, x, act, 0.01f, "activation");
}
kiln_node *kiln_relu(kiln_graph *g, kiln_node *x) {
    return act_node(g, x, KILN_ACT_RELU, 0, "relu");
}
kiln_node *kiln_leaky_relu(kiln_graph *g, kiln_node *x, float alpha) {
    return act_node(g, x, KILN_ACT_LEAKY_RELU, alpha, "leaky_re_lu");
}
kiln_node *kiln_gelu(kiln_graph *g, kiln_node *x) {
    return act_node(g, x, KILN_ACT_GELU, 0, "gelu");
}
kiln_node *kiln_sigmoid(kiln_graph *g, kiln_node *x) {
    return act_node(g, x, KILN_ACT_SIGMOID, 0, "sigmoid");
}
kiln_node *kiln_tanh(kiln_graph *g, kiln_node *x) {
    return act_node(g, x, KILN_ACT_TANH, 0, "tanh");
}

kiln_node *kiln_relu6(kiln_graph *g, kiln_node *x) {
    return act_node(g, x, KILN_ACT_RELU6, 0, "relu6");
}
kiln_node *kiln_hard_sigmoid(kiln_graph *g, kiln_node *x) {
    return act_node(g, x, KILN_ACT_HARD_SIGMOID, 0, "hard_sigmoid");
}
kiln_node *kiln_hard_swish(kiln_graph *g, kiln_node *x) {
    return act_node(g, x, KILN_ACT_HARD_SWISH, 0, "hard_swish");
}

kiln_node *kiln_softmax(kiln_graph *g, kiln_node *x) {
    return kiln_graph_add_op(g, &kiln_op_softmax, &x, 1, NULL, 0, NULL);
}

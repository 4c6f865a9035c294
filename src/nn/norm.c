/* norm.c (nn) — builders for batch normalization, layer normalization and dropout.
 *
 * Batch norm creates "<name>.gamma" (ones) and "<name>.beta" (zeros), trainable, each left out
 * when no_scale / no_center says so (as Keras does), then "<name>.moving_mean" (zeros) and
 * "<name>.moving_variance" (ones), not trainable. Layer norm creates gamma and beta the same
 * way, sized by the last axis. Zero option fields mean the documented defaults (Keras's).
 */
#include <math.h>
#include <stdio.h>

#include "backend/ops.h"
#include "backend/attrs.h"
#include "kiln/nn.h"

static const kiln_init ones = {KILN_INIT_ONES, 0}, zeros = {KILN_INIT_ZEROS, 0};

/* The layer's name: the user's, or the next "<kind>_<n>". */
static const char *layer_name(kiln_graph *g, const char *given, const char *kind, char *buf,
                              size_t cap) {
    if (given) {
        snprintf(buf, cap, "%s", given);
        return buf;
    }
    return kiln_graph_auto_name(g, kind, buf, cap);
}

/* Checks that x is an F32 tensor with at least 2 dims; names the layer and x's shape. */
static int check_x(const char *layer, const char *what, const kiln_node *x) {
    kiln_shape xs = kiln_node_shape(x);
    char s[128];
    if (kiln_node_dtype(x) != KILN_F32) {
        kiln_error(KILN_ERR_INVALID, "%s: input %s is %s %s; need F32", layer, kiln_node_name(x),
                   kiln_dtype_name(kiln_node_dtype(x)), kiln_shape_str(&xs, s, sizeof s));
        return -1;
    }
    if (xs.ndim < 2) {
        kiln_error(KILN_ERR_SHAPE, "%s: input %s has shape %s; need %s", layer, kiln_node_name(x),
                   kiln_shape_str(&xs, s, sizeof s), what);
        return -1;
    }
    return 0;
}

static kiln_node *param1(kiln_graph *g, const char *layer, const char *suffix, int64_t n,
                         kiln_init init, int trainable) {
    char pname[160];
    snprintf(pname, sizeof pname, "%s.%s", layer, suffix);
    return kiln_param(g, pname, 1, (int64_t[]){n}, init, trainable, 0, 0);
}

kiln_node *kiln_batchnorm_ex(kiln_graph *g, kiln_node *x, const kiln_batchnorm_opts *o) {
    if (!g || !x) return NULL;
    kiln_batchnorm_opts d = {0};
    if (!o) o = &d;
    char name[96];
    if (!layer_name(g, o->name, "batch_normalization", name, sizeof name)) {
        kiln_error(KILN_ERR_NOMEM, "batch norm: out of memory");
        return NULL;
    }
    kiln_batchnorm_attr a = {o->momentum == 0.0f ? 0.99f : o->momentum,
                             o->epsilon == 0.0f ? 1e-3f : o->epsilon, o->no_scale != 0,
                             o->no_center != 0};
    if (!(a.momentum >= 0.0f && a.momentum <= 1.0f)) {
        kiln_error(KILN_ERR_INVALID, "%s (batch norm) on %s: momentum must be in [0, 1], got %g",
                   name, kiln_node_name(x), (double)o->momentum);
        return NULL;
    }
    if (!(a.epsilon > 0.0f) || isinf(a.epsilon)) {
        kiln_error(KILN_ERR_INVALID, "%s (batch norm) on %s: epsilon must be > 0, got %g", name,
                   kiln_node_name(x), (double)o->epsilon);
        return NULL;
    }
    char layer[160];
    snprintf(layer, sizeof layer, "%s (batch norm)", name);
    if (check_x(layer, "[batch, channels, ...]", x)) return NULL;
    int64_t C = kiln_node_shape(x).dims[1];
    kiln_node *in[5] = {x};
    int n = 1;
    if (!a.no_scale) in[n++] = param1(g, name, "gamma", C, ones, 1);
    if (!a.no_center) in[n++] = param1(g, name, "beta", C, zeros, 1);
    in[n++] = param1(g, name, "moving_mean", C, zeros, 0);
    in[n++] = param1(g, name, "moving_variance", C, ones, 0);
    return kiln_graph_add_op(g, &kiln_op_batchnorm, in, n, &a, sizeof a, name);
}

kiln_node *kiln_batchnorm(kiln_graph *g, kiln_node *x) {
    return kiln_batchnorm_ex(g, x, NULL);
}

kiln_node *kiln_layernorm_ex(kiln_graph *g, kiln_node *x, const kiln_layernorm_opts *o) {
    if (!g || !x) return NULL;
    kiln_layernorm_opts d = {0};
    if (!o) o = &d;
    char name[96];
    if (!layer_name(g, o->name, "layer_normalization", name, sizeof name)) {
        kiln_error(KILN_ERR_NOMEM, "layer norm: out of memory");
        return NULL;
    }
    kiln_layernorm_attr a = {o->epsilon == 0.0f ? 1e-5f : o->epsilon, o->no_scale != 0,
                             o->no_center != 0};
    if (!(a.epsilon > 0.0f) || isinf(a.epsilon)) {
        kiln_error(KILN_ERR_INVALID, "%s (layer norm) on %s: epsilon must be > 0, got %g", name,
                   kiln_node_name(x), (double)o->epsilon);
        return NULL;
    }
    char layer[160];
    snprintf(layer, sizeof layer, "%s (layer norm)", name);
    if (check_x(layer, "[batch, ..., features]", x)) return NULL;
    kiln_shape xs = kiln_node_shape(x);
    int64_t D = xs.dims[xs.ndim - 1];
    kiln_node *in[3] = {x};
    int n = 1;
    if (!a.no_scale) in[n++] = param1(g, name, "gamma", D, ones, 1);
    if (!a.no_center) in[n++] = param1(g, name, "beta", D, zeros, 1);
    return kiln_graph_add_op(g, &kiln_op_layernorm, in, n, &a, sizeof a, name);
}

kiln_node *kiln_layernorm(kiln_graph *g, kiln_node *x) {
    return kiln_layernorm_ex(g, x, NULL);
}

kiln_node *kiln_dropout(kiln_graph *g, kiln_node *x, float rate) {
    if (!g || !x) return NULL;
    char name[96];
    if (!kiln_graph_auto_name(g, "dropout", name, sizeof name)) {
        kiln_error(KILN_ERR_NOMEM, "dropout: out of memory");
        return NULL;
    }
    if (!(rate >= 0.0f && rate < 1.0f)) {
        kiln_error(KILN_ERR_INVALID, "%s (dropout) on %s: rate must be in [0, 1), got %g", name,
                   kiln_node_name(x), (double)rate);
        return NULL;
    }
    if (kiln_node_dtype(x) != KILN_F32) {
        kiln_shape xs = kiln_node_shape(x);
        char s[128];
        kiln_error(KILN_ERR_INVALID, "%s (dropout): input %s is %s %s; need F32", name,
                   kiln_node_name(x), kiln_dtype_name(kiln_node_dtype(x)),
                   kiln_shape_str(&xs, s, sizeof s));
        return NULL;
    }
    kiln_dropout_attr a = {rate};
    return kiln_graph_add_op(g, &kiln_op_dropout, &x, 1, &a, sizeof a, name);
}

/* conv.c (nn) — builders for the convolutions (conv1d, conv2d, conv3d, conv2d_transpose,
 * depthwise_conv2d) and the pools of 1 to 3 axes.
 *
 * A builder fills in defaults (stride 1 or = window, dilation 1, groups 1), validates the
 * options, and for a convolution creates the parameters "<name>.kernel" [filters, C / groups,
 * k...] (transposed: [C, filters / groups, k...]; glorot_uniform; kiln_param derives Keras's
 * fans from that shape: fan_in = C/groups * prod(k), fan_out = filters * prod(k); depthwise
 * passes Keras's own) and "<name>.bias" [filters] (zeros). Everything that could make the
 * op's shape inference fail is checked before the parameters are created, so a failed builder
 * leaves no orphan parameters behind. Names follow Keras: conv2d_<n>, conv1d_<n>,
 * depthwise_conv2d_<n>, conv2d_transpose_<n>, max_pooling2d_<n>, average_pooling1d_<n>, ...
 * (the pools' op names, so kiln_graph_add_op's automatic naming gives them). The padding rule
 * itself (kiln_conv_axis) is the ops' own, in src/backend/attrs.c. conv2d, depthwise_conv2d
 * and conv2d_transpose are one general builder (conv_nd) with the kind's kernel shape and op.
 */
#include <stdio.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/attrs.h"
#include "kiln/nn.h"

static const char *pad_name(kiln_padding p) {
    return p == KILN_PAD_VALID ? "valid" : p == KILN_PAD_SAME ? "same" : "explicit";
}

static const char *const LAYOUT[3] = {"[batch, channels, width]",
                                      "[batch, channels, height, width]",
                                      "[batch, channels, depth, height, width]"};

/* The input must be an F32 [B, C, spatial...] tensor; on failure the message names the layer. */
static int check_ncs(const char *name, const char *kind, kiln_node *x, int nd) {
    kiln_shape s = kiln_node_shape(x);
    char buf[128];
    if (s.ndim != nd + 2) {
        kiln_error(KILN_ERR_SHAPE, "%s (%s): input %s has shape %s; need %s", name, kind,
                   kiln_node_name(x), kiln_shape_str(&s, buf, sizeof buf), LAYOUT[nd - 1]);
        return -1;
    }
    if (kiln_node_dtype(x) != KILN_F32) {
        kiln_error(KILN_ERR_INVALID, "%s (%s): input %s must be F32, got %s", name, kind,
                   kiln_node_name(x), kiln_dtype_name(kiln_node_dtype(x)));
        return -1;
    }
    return 0;
}

/* "3x3" from n ints. */
static const char *joined(const int *v, int n, char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%d", i ? "x" : "", v[i]);
    return buf;
}

typedef enum { CONV_PLAIN, CONV_TRANSPOSE, CONV_DEPTHWISE } conv_kind;

/* Every convolution: o's first nd entries per axis; dm is the depthwise multiplier. */
static kiln_node *conv_nd(kiln_graph *g, kiln_node *x, int nd, const kiln_conv_opts *o,
                          conv_kind kind, int dm) {
    static const char *const KIND[3][3] = {{"conv1d", "conv2d", "conv3d"},
                                           {"", "conv2d_transpose", ""},
                                           {"", "depthwise_conv2d", ""}};
    const char *k = KIND[kind][nd - 1];
    if (!g || !x) return NULL;
    if (!o) {
        kiln_error(KILN_ERR_INVALID, "%s: options are required", k);
        return NULL;
    }
    char name[96], pname[128], sbuf[128], b1[48], b2[48], b3[48], b4[64];
    if (o->name)
        snprintf(name, sizeof name, "%s", o->name);
    else if (!kiln_graph_auto_name(g, k, name, sizeof name)) {
        kiln_error(KILN_ERR_NOMEM, "%s: out of memory", k);
        return NULL;
    }
    kiln_shape xs = kiln_node_shape(x);
    int64_t C = xs.ndim >= 2 ? xs.dims[1] : 0;
    kiln_conv_attr a = {.filters = o->filters,
                        .padding = o->padding,
                        .act = o->act,
                        .groups = o->groups ? o->groups : 1,
                        .nd = nd,
                        .asym = o->padding == KILN_PAD_EXPLICIT && o->asymmetric,
                        .transpose = kind == CONV_TRANSPOSE};
    int bad = 0, pads[6];
    for (int i = 0; i < nd; i++) {
        a.kernel[i] = o->kernel[i];
        a.stride[i] = o->stride[i] ? o->stride[i] : 1;
        a.dilation[i] = o->dilation[i] ? o->dilation[i] : 1;
        a.pad[i] = o->padding == KILN_PAD_EXPLICIT ? o->pad[i] : 0;
        a.pad_end[i] = a.asym ? o->pad_end[i] : a.pad[i];
        a.output_padding[i] = kind == CONV_TRANSPOSE ? o->output_padding[i] : 0;
        pads[i] = a.pad[i], pads[nd + i] = a.pad_end[i];
        bad |= a.kernel[i] <= 0 || o->stride[i] < 0 || o->dilation[i] < 0 || a.pad[i] < 0 ||
               a.pad_end[i] < 0 || a.output_padding[i] < 0;
        /* PyTorch's rule: the extra cells must be fewer than the stride or the dilation */
        bad |= a.output_padding[i] >= a.stride[i] && a.output_padding[i] >= a.dilation[i];
    }
    if (kind == CONV_DEPTHWISE) { /* filters and groups come from the input's channels */
        if (check_ncs(name, k, x, nd)) return NULL;
        a.groups = (int)C, a.filters = (int)C * dm;
    }
    if (bad || a.filters <= 0 || a.groups <= 0 || dm <= 0) {
        kiln_error(KILN_ERR_INVALID,
                   "%s (%s): need filters > 0 and kernel > 0, non-negative stride, dilation, "
                   "groups and pads%s; got filters %d, kernel %s, stride %s, dilation %s, "
                   "groups %d, pad %s%s%s",
                   name, k, kind == CONV_TRANSPOSE ? ", output_padding below stride or dilation"
                            : kind == CONV_DEPTHWISE ? ", depth_multiplier > 0" : "",
                   kind == CONV_DEPTHWISE ? dm : o->filters, joined(o->kernel, nd, b1, sizeof b1),
                   joined(o->stride, nd, b2, sizeof b2), joined(o->dilation, nd, b3, sizeof b3),
                   o->groups, joined(pads, a.asym ? 2 * nd : nd, b4, sizeof b4),
                   kind == CONV_TRANSPOSE ? ", output_padding " : "",
                   kind == CONV_TRANSPOSE ? joined(o->output_padding, nd, b1, sizeof b1) : "");
        return NULL;
    }
    if ((unsigned)a.padding > KILN_PAD_EXPLICIT || (unsigned)a.act >= KILN_ACT_COUNT) {
        kiln_error(KILN_ERR_INVALID, "%s (%s): unknown padding %d or activation %d", name, k,
                   (int)a.padding, (int)a.act);
        return NULL;
    }
    if (check_ncs(name, k, x, nd)) return NULL;
    if (C % a.groups || a.filters % a.groups) {
        kiln_error(KILN_ERR_SHAPE,
                   "%s (%s): input %s %s has %lld channels and the layer %d filters; both must "
                   "be multiples of groups = %d",
                   name, k, kiln_node_name(x), kiln_shape_str(&xs, sbuf, sizeof sbuf), (long long)C,
                   a.filters, a.groups);
        return NULL;
    }
    for (int i = 0; i < nd; i++) {
        int64_t pb, pa;
        int64_t out = a.transpose ? kiln_deconv_axis(xs.dims[2 + i], a.kernel[i], a.stride[i],
                                                     a.dilation[i], a.padding, a.pad[i],
                                                     a.pad_end[i], a.output_padding[i], &pb, &pa)
                                  : kiln_conv_axis(xs.dims[2 + i], a.kernel[i], a.stride[i],
                                                   a.dilation[i], a.padding, a.pad[i],
                                                   a.pad_end[i], 0, &pb, &pa);
        if (out < 1) {
            kiln_error(KILN_ERR_SHAPE,
                       "%s (%s): kernel %s (dilation %s) is larger than input %s %s with %s "
                       "padding",
                       name, k, joined(a.kernel, nd, b1, sizeof b1),
                       joined(a.dilation, nd, b2, sizeof b2), kiln_node_name(x),
                       kiln_shape_str(&xs, sbuf, sizeof sbuf), pad_name(a.padding));
            return NULL;
        }
    }
    kiln_init ki = o->kernel_init, bi = o->bias_init;
    if (ki.kind == KILN_INIT_DEFAULT) ki.kind = KILN_INIT_GLOROT_UNIFORM;
    if (bi.kind == KILN_INIT_DEFAULT) bi.kind = KILN_INIT_ZEROS;
    int64_t kd[5] = {a.filters, C / a.groups}, bd[1] = {a.filters}, rf = 1;
    if (a.transpose) kd[0] = C, kd[1] = a.filters / a.groups;
    for (int i = 0; i < nd; i++) kd[2 + i] = a.kernel[i], rf *= a.kernel[i];
    int64_t fan_in = kind == CONV_DEPTHWISE ? C * rf : 0, fan_out = kind == CONV_DEPTHWISE ? dm * rf : 0;
    snprintf(pname, sizeof pname, "%s.kernel", name);
    kiln_node *in[3] = {x, kiln_param(g, pname, nd + 2, kd, ki, 1, fan_in, fan_out), NULL};
    int n_in = 2;
    if (!o->no_bias) {
        snprintf(pname, sizeof pname, "%s.bias", name);
        in[n_in++] = kiln_param(g, pname, 1, bd, bi, 1, 0, 0);
    }
    const kiln_op *op = a.transpose ? &kiln_op_conv2d_transpose
                        : nd == 1   ? &kiln_op_conv1d
                        : nd == 3   ? &kiln_op_conv3d
                                    : &kiln_op_conv2d;
    return kiln_graph_add_op(g, op, in, n_in, &a, sizeof a, name);
}

kiln_node *kiln_conv2d_ex(kiln_graph *g, kiln_node *x, const kiln_conv2d_opts *o) {
    if (!g || !x) return NULL;
    if (!o) {
        kiln_error(KILN_ERR_INVALID, "conv2d: options are required");
        return NULL;
    }
    kiln_conv_opts c = {.filters = o->filters, .padding = o->padding, .asymmetric = o->asymmetric,
                        .groups = o->groups, .act = o->act, .no_bias = o->no_bias,
                        .kernel_init = o->kernel_init, .bias_init = o->bias_init, .name = o->name};
    for (int i = 0; i < 2; i++) {
        c.kernel[i] = o->kernel[i], c.stride[i] = o->stride[i], c.dilation[i] = o->dilation[i];
        c.pad[i] = o->pad[i], c.pad_end[i] = o->pad_end[i];
    }
    return conv_nd(g, x, 2, &c, CONV_PLAIN, 1);
}

kiln_node *kiln_conv1d_ex(kiln_graph *g, kiln_node *x, const kiln_conv_opts *o) {
    return conv_nd(g, x, 1, o, CONV_PLAIN, 1);
}

kiln_node *kiln_conv3d_ex(kiln_graph *g, kiln_node *x, const kiln_conv_opts *o) {
    return conv_nd(g, x, 3, o, CONV_PLAIN, 1);
}

kiln_node *kiln_conv2d_transpose_ex(kiln_graph *g, kiln_node *x, const kiln_conv_opts *o) {
    return conv_nd(g, x, 2, o, CONV_TRANSPOSE, 1);
}

kiln_node *kiln_depthwise_conv2d_ex(kiln_graph *g, kiln_node *x,
                                    const kiln_depthwise_conv2d_opts *o) {
    if (!g || !x) return NULL;
    if (!o) {
        kiln_error(KILN_ERR_INVALID, "depthwise_conv2d: options are required");
        return NULL;
    }
    kiln_conv_opts c = {.padding = o->padding, .asymmetric = o->asymmetric, .act = o->act,
                        .no_bias = o->no_bias, .kernel_init = o->kernel_init,
                        .bias_init = o->bias_init, .name = o->name};
    for (int i = 0; i < 2; i++) {
        c.kernel[i] = o->kernel[i], c.stride[i] = o->stride[i], c.dilation[i] = o->dilation[i];
        c.pad[i] = o->pad[i], c.pad_end[i] = o->pad_end[i];
    }
    return conv_nd(g, x, 2, &c, CONV_DEPTHWISE, o->depth_multiplier ? o->depth_multiplier : 1);
}

kiln_node *kiln_conv2d(kiln_graph *g, kiln_node *x, int filters, int kernel, int stride,
                       kiln_padding padding, kiln_act act) {
    kiln_conv2d_opts o = {.filters = filters,
                          .kernel = {kernel, kernel},
                          .stride = {stride, stride},
                          .padding = padding,
                          .act = act};
    return kiln_conv2d_ex(g, x, &o);
}

/* Pools have no parameters: options are checked here, shapes by the op's inference. */
static kiln_node *pool(kiln_graph *g, kiln_node *x, int nd, const kiln_pool_opts *o,
                       const kiln_op *op) {
    if (!g || !x) return NULL;
    if (!o) {
        kiln_error(KILN_ERR_INVALID, "%s: options are required", op->name);
        return NULL;
    }
    kiln_pool_attr a = {.padding = o->padding, .nd = nd, .ceil_mode = o->ceil_mode != 0,
                        .asym = o->padding == KILN_PAD_EXPLICIT && o->asymmetric};
    int bad = (unsigned)a.padding > KILN_PAD_EXPLICIT, badpad = 0, pads[6];
    for (int i = 0; i < nd; i++) {
        a.size[i] = o->size[i];
        a.stride[i] = o->stride[i] ? o->stride[i] : o->size[i];
        a.pad[i] = o->padding == KILN_PAD_EXPLICIT ? o->pad[i] : 0;
        a.pad_end[i] = a.asym ? o->pad_end[i] : a.pad[i];
        pads[i] = a.pad[i], pads[nd + i] = a.pad_end[i];
        bad |= a.size[i] <= 0 || a.stride[i] <= 0;
        /* A pad as wide as the window would make windows that hold only padding. */
        badpad |= a.pad[i] < 0 || a.pad_end[i] < 0 || a.pad[i] >= a.size[i] ||
                  a.pad_end[i] >= a.size[i];
    }
    char name[128], b1[48], b2[48], b3[64];
    if (o->name)
        snprintf(name, sizeof name, "%s (%s)", o->name, op->name);
    else
        snprintf(name, sizeof name, "%s", op->name);
    if (bad) {
        kiln_error(KILN_ERR_INVALID,
                   "%s: need pool size > 0, stride >= 0 and a known padding; got size %s, "
                   "stride %s, padding %d",
                   name, joined(o->size, nd, b1, sizeof b1), joined(o->stride, nd, b2, sizeof b2),
                   (int)o->padding);
        return NULL;
    }
    if (badpad) {
        kiln_error(KILN_ERR_INVALID,
                   "%s: explicit pads %s must be >= 0 and smaller than the window %s", name,
                   joined(pads, a.asym ? 2 * nd : nd, b3, sizeof b3),
                   joined(a.size, nd, b1, sizeof b1));
        return NULL;
    }
    return kiln_graph_add_op(g, op, &x, 1, &a, sizeof a, o->name);
}

static kiln_node *pool2d(kiln_graph *g, kiln_node *x, const kiln_pool2d_opts *o,
                         const kiln_op *op) {
    if (!o) return pool(g, x, 2, NULL, op);
    kiln_pool_opts p = {.padding = o->padding, .asymmetric = o->asymmetric,
                        .ceil_mode = o->ceil_mode, .name = o->name};
    for (int i = 0; i < 2; i++)
        p.size[i] = o->size[i], p.stride[i] = o->stride[i], p.pad[i] = o->pad[i],
        p.pad_end[i] = o->pad_end[i];
    return pool(g, x, 2, &p, op);
}

kiln_node *kiln_maxpool1d_ex(kiln_graph *g, kiln_node *x, const kiln_pool_opts *o) {
    return pool(g, x, 1, o, &kiln_op_maxpool1d);
}
kiln_node *kiln_maxpool3d_ex(kiln_graph *g, kiln_node *x, const kiln_pool_opts *o) {
    return pool(g, x, 3, o, &kiln_op_maxpool3d);
}
kiln_node *kiln_avgpool1d_ex(kiln_graph *g, kiln_node *x, const kiln_pool_opts *o) {
    return pool(g, x, 1, o, &kiln_op_avgpool1d);
}
kiln_node *kiln_avgpool3d_ex(kiln_graph *g, kiln_node *x, const kiln_pool_opts *o) {
    return pool(g, x, 3, o, &kiln_op_avgpool3d);
}

kiln_node *kiln_maxpool2d_ex(kiln_graph *g, kiln_node *x, const kiln_pool2d_opts *o) {
    return pool2d(g, x, o, &kiln_op_maxpool2d);
}

kiln_node *kiln_maxpool2d(kiln_graph *g, kiln_node *x, int size) {
    kiln_pool2d_opts o = {.size = {size, size}};
    return pool2d(g, x, &o, &kiln_op_maxpool2d);
}

kiln_node *kiln_avgpool2d_ex(kiln_graph *g, kiln_node *x, const kiln_pool2d_opts *o) {
    return pool2d(g, x, o, &kiln_op_avgpool2d);
}

kiln_node *kiln_avgpool2d(kiln_graph *g, kiln_node *x, int size) {
    kiln_pool2d_opts o = {.size = {size, size}};
    return pool2d(g, x, &o, &kiln_op_avgpool2d);
}

kiln_node *kiln_global_avgpool2d(kiln_graph *g, kiln_node *x) {
    return kiln_graph_add_op(g, &kiln_op_global_avgpool2d, &x, 1, NULL, 0, NULL);
}

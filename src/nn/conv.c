/* conv.c (nn) — builders for conv2d and the 2-D pools.
 *
 * A builder fills in defaults (stride 1 or = window, dilation 1, groups 1), validates the
 * options, and for conv2d creates the parameters "<name>.kernel" [filters, C / groups, kh, kw]
 * (glorot_uniform; kiln_param derives Keras's fans from that shape: fan_in = C/groups*kh*kw,
 * fan_out = filters*kh*kw) and "<name>.bias" [filters] (zeros). Everything that could make the
 * op's shape inference fail is checked before the parameters are created, so a failed builder
 * leaves no orphan parameters behind. Names follow Keras: conv2d_<n>, max_pooling2d_<n>,
 * average_pooling2d_<n>, global_average_pooling2d_<n> (the op names, so kiln_graph_add_op's
 * automatic naming gives them). The padding rule itself (kiln_conv_out_size) is the ops' own, in
 * src/backend/attrs.c.
 */
#include <stdio.h>

#include "backend/ops.h"
#include "backend/attrs.h"
#include "kiln/nn.h"

static const char *pad_name(kiln_padding p) {
    return p == KILN_PAD_VALID ? "valid" : p == KILN_PAD_SAME ? "same" : "explicit";
}

/* The input must be an F32 [B, C, H, W] tensor; on failure the message names the layer. */
static int check_nchw(const char *name, const char *kind, kiln_node *x) {
    kiln_shape s = kiln_node_shape(x);
    char buf[128];
    if (s.ndim != 4) {
        kiln_error(KILN_ERR_SHAPE,
                   "%s (%s): input %s has shape %s; need [batch, channels, height, width]", name,
                   kind, kiln_node_name(x), kiln_shape_str(&s, buf, sizeof buf));
        return -1;
    }
    if (kiln_node_dtype(x) != KILN_F32) {
        kiln_error(KILN_ERR_INVALID, "%s (%s): input %s must be F32, got %s", name, kind,
                   kiln_node_name(x), kiln_dtype_name(kiln_node_dtype(x)));
        return -1;
    }
    return 0;
}

kiln_node *kiln_conv2d_ex(kiln_graph *g, kiln_node *x, const kiln_conv2d_opts *o) {
    if (!g || !x) return NULL;
    if (!o) {
        kiln_error(KILN_ERR_INVALID, "conv2d: options are required");
        return NULL;
    }
    char name[96], pname[128], sbuf[128];
    if (o->name)
        snprintf(name, sizeof name, "%s", o->name);
    else if (!kiln_graph_auto_name(g, "conv2d", name, sizeof name)) {
        kiln_error(KILN_ERR_NOMEM, "conv2d: out of memory");
        return NULL;
    }
    kiln_conv2d_attr a = {.filters = o->filters,
                          .padding = o->padding,
                          .act = o->act,
                          .groups = o->groups ? o->groups : 1};
    for (int i = 0; i < 2; i++) {
        a.kernel[i] = o->kernel[i];
        a.stride[i] = o->stride[i] ? o->stride[i] : 1;
        a.dilation[i] = o->dilation[i] ? o->dilation[i] : 1;
        a.pad[i] = o->padding == KILN_PAD_EXPLICIT ? o->pad[i] : 0;
    }
    if (a.filters <= 0 || a.kernel[0] <= 0 || a.kernel[1] <= 0 || a.stride[0] < 0 ||
        a.stride[1] < 0 || a.dilation[0] < 0 || a.dilation[1] < 0 || a.groups < 0 || a.pad[0] < 0 ||
        a.pad[1] < 0) {
        kiln_error(KILN_ERR_INVALID,
                   "%s (conv2d): need filters > 0 and kernel > 0, non-negative stride, dilation, "
                   "groups and pads; got filters %d, kernel %dx%d, stride %dx%d, dilation %dx%d, "
                   "groups %d, pad %dx%d",
                   name, o->filters, o->kernel[0], o->kernel[1], o->stride[0], o->stride[1],
                   o->dilation[0], o->dilation[1], o->groups, o->pad[0], o->pad[1]);
        return NULL;
    }
    if ((unsigned)a.padding > KILN_PAD_EXPLICIT || (unsigned)a.act >= KILN_ACT_COUNT) {
        kiln_error(KILN_ERR_INVALID, "%s (conv2d): unknown padding %d or activation %d", name,
                   (int)a.padding, (int)a.act);
        return NULL;
    }
    if (check_nchw(name, "conv2d", x)) return NULL;
    kiln_shape xs = kiln_node_shape(x);
    int64_t C = xs.dims[1];
    if (C % a.groups || a.filters % a.groups) {
        kiln_error(KILN_ERR_SHAPE,
                   "%s (conv2d): input %s %s has %lld channels and the layer %d filters; both must "
                   "be multiples of groups = %d",
                   name, kiln_node_name(x), kiln_shape_str(&xs, sbuf, sizeof sbuf), (long long)C,
                   a.filters, a.groups);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        int64_t pb, pa;
        if (kiln_conv_out_size(xs.dims[2 + i], a.kernel[i], a.stride[i], a.dilation[i], a.padding,
                               a.pad[i], &pb, &pa) < 1) {
            kiln_error(KILN_ERR_SHAPE,
                       "%s (conv2d): kernel %dx%d (dilation %dx%d) is larger than input %s %s with "
                       "%s padding",
                       name, a.kernel[0], a.kernel[1], a.dilation[0], a.dilation[1],
                       kiln_node_name(x), kiln_shape_str(&xs, sbuf, sizeof sbuf),
                       pad_name(a.padding));
            return NULL;
        }
    }
    kiln_init ki = o->kernel_init, bi = o->bias_init;
    if (ki.kind == KILN_INIT_DEFAULT) ki.kind = KILN_INIT_GLOROT_UNIFORM;
    if (bi.kind == KILN_INIT_DEFAULT) bi.kind = KILN_INIT_ZEROS;
    int64_t kd[4] = {a.filters, C / a.groups, a.kernel[0], a.kernel[1]}, bd[1] = {a.filters};
    snprintf(pname, sizeof pname, "%s.kernel", name);
    kiln_node *in[3] = {x, kiln_param(g, pname, 4, kd, ki, 1, 0, 0), NULL};
    int n_in = 2;
    if (!o->no_bias) {
        snprintf(pname, sizeof pname, "%s.bias", name);
        in[n_in++] = kiln_param(g, pname, 1, bd, bi, 1, 0, 0);
    }
    return kiln_graph_add_op(g, &kiln_op_conv2d, in, n_in, &a, sizeof a, name);
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
static kiln_node *pool(kiln_graph *g, kiln_node *x, const kiln_pool2d_opts *o, const kiln_op *op) {
    if (!g || !x) return NULL;
    if (!o) {
        kiln_error(KILN_ERR_INVALID, "%s: options are required", op->name);
        return NULL;
    }
    kiln_pool2d_attr a = {.padding = o->padding};
    for (int i = 0; i < 2; i++) {
        a.size[i] = o->size[i];
        a.stride[i] = o->stride[i] ? o->stride[i] : o->size[i];
        a.pad[i] = o->padding == KILN_PAD_EXPLICIT ? o->pad[i] : 0;
    }
    char name[128];
    if (o->name)
        snprintf(name, sizeof name, "%s (%s)", o->name, op->name);
    else
        snprintf(name, sizeof name, "%s", op->name);
    if (a.size[0] <= 0 || a.size[1] <= 0 || a.stride[0] <= 0 || a.stride[1] <= 0 ||
        (unsigned)a.padding > KILN_PAD_EXPLICIT) {
        kiln_error(KILN_ERR_INVALID,
                   "%s: need pool size > 0, stride >= 0 and a known padding; got size %dx%d, "
                   "stride %dx%d, padding %d",
                   name, o->size[0], o->size[1], o->stride[0], o->stride[1], (int)o->padding);
        return NULL;
    }
    /* A pad as wide as the window would make windows that hold only padding. */
    if (a.pad[0] < 0 || a.pad[1] < 0 || a.pad[0] >= a.size[0] || a.pad[1] >= a.size[1]) {
        kiln_error(KILN_ERR_INVALID,
                   "%s: explicit pads %dx%d must be >= 0 and smaller than the window %dx%d", name,
                   a.pad[0], a.pad[1], a.size[0], a.size[1]);
        return NULL;
    }
    return kiln_graph_add_op(g, op, &x, 1, &a, sizeof a, o->name);
}

kiln_node *kiln_maxpool2d_ex(kiln_graph *g, kiln_node *x, const kiln_pool2d_opts *o) {
    return pool(g, x, o, &kiln_op_maxpool2d);
}

kiln_node *kiln_maxpool2d(kiln_graph *g, kiln_node *x, int size) {
    kiln_pool2d_opts o = {.size = {size, size}};
    return pool(g, x, &o, &kiln_op_maxpool2d);
}

kiln_node *kiln_avgpool2d_ex(kiln_graph *g, kiln_node *x, const kiln_pool2d_opts *o) {
    return pool(g, x, o, &kiln_op_avgpool2d);
}

kiln_node *kiln_avgpool2d(kiln_graph *g, kiln_node *x, int size) {
    kiln_pool2d_opts o = {.size = {size, size}};
    return pool(g, x, &o, &kiln_op_avgpool2d);
}

kiln_node *kiln_global_avgpool2d(kiln_graph *g, kiln_node *x) {
    return kiln_graph_add_op(g, &kiln_op_global_avgpool2d, &x, 1, NULL, 0, NULL);
}

/* model_conv.c — the convolution and pooling entries of model.layers (conv1d, conv2d, conv3d,
 * conv2d_transpose, depthwise_conv2d, maxpool1d/2d/3d, avgpool1d/2d/3d) into builder options.
 *
 * The schema (src/config/schema.c) has already checked each key: kernel, strides, dilation, size
 * and output_padding are an int or a list of d ints; padding is valid, same, an int N (N on every
 * side), a list of d ints (symmetric per axis) or a list of 2 d ints in ONNX order [x1_begin,
 * x2_begin, ..., x1_end, x2_end] (asymmetric). Pools' strides default to the window (0 here).
 */
#include <string.h>

#include "model/model_conv.h"

/* n ints from an int or a list (the schema checked the length); def when the key is absent. */
static void ints(const kiln_cfg *a, const char *key, int *out, int n, int def) {
    kiln_cfg *c = kiln_cfg_child(a, key);
    for (int i = 0; i < n; i++) {
        int64_t v = def;
        if (c && c->type == KILN_CFG_SEQ) kiln_cfg_parse_int(c->items[i < c->n_items ? i : 0], &v);
        else if (c) kiln_cfg_parse_int(c, &v);
        out[i] = (int)v;
    }
}

/* padding: into the mode, pads before and after (n axes) and whether they differ. */
static kiln_padding padding(const kiln_cfg *a, int n, int *pb, int *pe, int *asym) {
    kiln_cfg *c = kiln_cfg_child(a, "padding");
    *asym = 0;
    if (!c || (c->type == KILN_CFG_SCALAR && !strcmp(c->text, "valid"))) return KILN_PAD_VALID;
    if (c->type == KILN_CFG_SCALAR && !strcmp(c->text, "same")) return KILN_PAD_SAME;
    for (int i = 0; i < n; i++) {
        int64_t b = 0, e = 0;
        if (c->type != KILN_CFG_SEQ) kiln_cfg_parse_int(c, &b), e = b;
        else if (c->n_items == 2 * n) kiln_cfg_parse_int(c->items[i], &b), kiln_cfg_parse_int(c->items[n + i], &e);
        else kiln_cfg_parse_int(c->items[i < c->n_items ? i : 0], &b), e = b;
        pb[i] = (int)b, pe[i] = (int)e;
        *asym |= b != e;
    }
    return KILN_PAD_EXPLICIT;
}

static kiln_init init_of(const kiln_cfg *a, const char *key) {
    kiln_init i = {kiln_init_from_name(kiln_cfg_str(a, key, "default"))};
    if (i.kind == KILN_INIT_COUNT) i.kind = KILN_INIT_DEFAULT;
    return i;
}

int kiln_model_conv_layer(kiln_graph *g, const char *kind, const kiln_cfg *a, const char *name,
                          kiln_node *x, kiln_act act, kiln_node **y) {
    static const char *const CONVS[] = {"conv1d", "conv2d", "conv3d", "conv2d_transpose",
                                        "depthwise_conv2d"};
    static const char *const POOLS[] = {"maxpool1d", "maxpool2d", "maxpool3d",
                                        "avgpool1d", "avgpool2d", "avgpool3d"};
    for (int k = 0; k < 5; k++) {
        if (strcmp(kind, CONVS[k])) continue;
        int nd = k < 3 ? k + 1 : 2;
        kiln_conv_opts o = {.filters = (int)kiln_cfg_int(a, "filters", 0), .act = act,
                            .no_bias = !kiln_cfg_bool(a, "use_bias", 1),
                            .groups = (int)kiln_cfg_int(a, "groups", 1),
                            .kernel_init = init_of(a, "kernel_initializer"),
                            .bias_init = init_of(a, "bias_initializer"), .name = name};
        o.padding = padding(a, nd, o.pad, o.pad_end, &o.asymmetric);
        ints(a, "kernel", o.kernel, nd, 1), ints(a, "strides", o.stride, nd, 1);
        ints(a, "dilation", o.dilation, nd, 1), ints(a, "output_padding", o.output_padding, nd, 0);
        if (k == 1) {
            kiln_conv2d_opts c = {.filters = o.filters, .act = act, .no_bias = o.no_bias,
                                  .groups = o.groups, .kernel_init = o.kernel_init,
                                  .bias_init = o.bias_init, .name = name, .padding = o.padding,
                                  .asymmetric = o.asymmetric};
            memcpy(c.kernel, o.kernel, sizeof c.kernel), memcpy(c.stride, o.stride, sizeof c.stride);
            memcpy(c.dilation, o.dilation, sizeof c.dilation), memcpy(c.pad, o.pad, sizeof c.pad);
            memcpy(c.pad_end, o.pad_end, sizeof c.pad_end);
            *y = kiln_conv2d_ex(g, x, &c);
        } else if (k == 4) {
            kiln_depthwise_conv2d_opts d = {
                .depth_multiplier = (int)kiln_cfg_int(a, "depth_multiplier", 1), .act = act,
                .no_bias = o.no_bias, .kernel_init = o.kernel_init, .bias_init = o.bias_init,
                .name = name, .padding = o.padding, .asymmetric = o.asymmetric};
            memcpy(d.kernel, o.kernel, sizeof d.kernel), memcpy(d.stride, o.stride, sizeof d.stride);
            memcpy(d.dilation, o.dilation, sizeof d.dilation), memcpy(d.pad, o.pad, sizeof d.pad);
            memcpy(d.pad_end, o.pad_end, sizeof d.pad_end);
            *y = kiln_depthwise_conv2d_ex(g, x, &d);
        } else {
            *y = k == 0 ? kiln_conv1d_ex(g, x, &o) : k == 2 ? kiln_conv3d_ex(g, x, &o)
                                                            : kiln_conv2d_transpose_ex(g, x, &o);
        }
        return 1;
    }
    for (int k = 0; k < 6; k++) {
        if (strcmp(kind, POOLS[k])) continue;
        int nd = k % 3 + 1, max = k < 3;
        kiln_pool_opts o = {.name = name, .ceil_mode = kiln_cfg_bool(a, "ceil_mode", 0)};
        o.padding = padding(a, nd, o.pad, o.pad_end, &o.asymmetric);
        ints(a, "size", o.size, nd, 2), ints(a, "strides", o.stride, nd, 0);
        if (nd == 2) {
            kiln_pool2d_opts p = {.name = name, .ceil_mode = o.ceil_mode, .padding = o.padding,
                                  .asymmetric = o.asymmetric};
            memcpy(p.size, o.size, sizeof p.size), memcpy(p.stride, o.stride, sizeof p.stride);
            memcpy(p.pad, o.pad, sizeof p.pad), memcpy(p.pad_end, o.pad_end, sizeof p.pad_end);
            *y = max ? kiln_maxpool2d_ex(g, x, &p) : kiln_avgpool2d_ex(g, x, &p);
        } else if (nd == 1) {
            *y = max ? kiln_maxpool1d_ex(g, x, &o) : kiln_avgpool1d_ex(g, x, &o);
        } else {
            *y = max ? kiln_maxpool3d_ex(g, x, &o) : kiln_avgpool3d_ex(g, x, &o);
        }
        return 1;
    }
    return 0;
}

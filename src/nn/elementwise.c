/* elementwise.c (nn) — builders for multiply, clip, upsampling and global max/average pooling
 * over 1-3 spatial axes (see kiln/nn.h). Each checks its attributes, picks a Keras-style name
 * (multiply_<n>, clip_<n>, up_sampling2d_<n>, global_max_pooling3d_<n>, ...) and adds one node;
 * shape checks live in each op's infer, which names the node and its inputs.
 */
#include <math.h>
#include <stdio.h>

#include "backend/ops.h"
#include "backend/attrs.h"
#include "kiln/nn.h"

static int auto_name(kiln_graph *g, const char *kind, char *buf) {
    if (kiln_graph_auto_name(g, kind, buf, 96)) return 1;
    kiln_error(KILN_ERR_NOMEM, "%s: out of memory", kind);
    return 0;
}

kiln_node *kiln_multiply(kiln_graph *g, kiln_node *a, kiln_node *b) {
    if (!g || !a || !b) return NULL;
    char name[96];
    if (!auto_name(g, "multiply", name)) return NULL;
    kiln_node *in[2] = {a, b};
    return kiln_graph_add_op(g, &kiln_op_multiply, in, 2, NULL, 0, name);
}

kiln_node *kiln_clip(kiln_graph *g, kiln_node *x, float lo, float hi) {
    if (!g || !x) return NULL;
    char name[96];
    if (!auto_name(g, "clip", name)) return NULL;
    if (isnan(lo) || isnan(hi)) {
        kiln_error(KILN_ERR_INVALID, "%s (clip) got %s: the bounds must not be NaN", name,
                   kiln_node_name(x));
        return NULL;
    }
    kiln_clip_attr a = {lo, hi};
    return kiln_graph_add_op(g, &kiln_op_clip, &x, 1, &a, sizeof a, name);
}

kiln_node *kiln_upsampling_ex(kiln_graph *g, kiln_node *x, const kiln_upsampling_opts *o) {
    if (!g || !x || !o) return NULL;
    char name[96], kind[32];
    snprintf(kind, sizeof kind, "up_sampling%dd", o->nsp);
    if (!o->name && !auto_name(g, kind, name)) return NULL;
    const char *nm = o->name ? o->name : name;
    if (o->nsp < 1 || o->nsp > 3) {
        kiln_error(KILN_ERR_INVALID, "%s (upsampling): 1, 2 or 3 spatial axes, got %d", nm, o->nsp);
        return NULL;
    }
    if ((unsigned)o->interpolation > KILN_UPSAMPLE_LINEAR) {
        kiln_error(KILN_ERR_INVALID, "%s (upsampling): unknown interpolation %d", nm,
                   (int)o->interpolation);
        return NULL;
    }
    kiln_upsample_attr a = {.nsp = o->nsp, .mode = o->interpolation};
    for (int i = 0; i < o->nsp; i++) {
        a.size[i] = o->size[i] ? o->size[i] : 2;
        if (a.size[i] < 1 || a.size[i] > 65536) {
            kiln_error(KILN_ERR_INVALID, "%s (upsampling): size must be 1 .. 65536, got %d", nm,
                       a.size[i]);
            return NULL;
        }
    }
    return kiln_graph_add_op(g, &kiln_op_upsample, &x, 1, &a, sizeof a, nm);
}

kiln_node *kiln_upsampling2d(kiln_graph *g, kiln_node *x, int size,
                             kiln_upsample_mode interpolation) {
    kiln_upsampling_opts o = {.nsp = 2, .size = {size, size}, .interpolation = interpolation};
    return kiln_upsampling_ex(g, x, &o);
}

static kiln_node *global_pool(kiln_graph *g, kiln_node *x, int nsp, int max) {
    if (!g || !x) return NULL;
    char name[96], kind[48];
    snprintf(kind, sizeof kind, "global_%s_pooling%dd", max ? "max" : "average", nsp);
    if (!auto_name(g, kind, name)) return NULL;
    kiln_global_pool_attr a = {nsp};
    return kiln_graph_add_op(g, max ? &kiln_op_global_maxpool : &kiln_op_global_avgpool, &x, 1,
                             &a, sizeof a, name);
}

kiln_node *kiln_global_maxpool1d(kiln_graph *g, kiln_node *x) { return global_pool(g, x, 1, 1); }
kiln_node *kiln_global_maxpool2d(kiln_graph *g, kiln_node *x) { return global_pool(g, x, 2, 1); }
kiln_node *kiln_global_maxpool3d(kiln_graph *g, kiln_node *x) { return global_pool(g, x, 3, 1); }
kiln_node *kiln_global_avgpool1d(kiln_graph *g, kiln_node *x) { return global_pool(g, x, 1, 0); }
kiln_node *kiln_global_avgpool3d(kiln_graph *g, kiln_node *x) { return global_pool(g, x, 3, 0); }

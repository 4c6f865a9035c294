/* dense.c (nn) — the dense layer builder: creates kernel [in, units] and bias [units]. */
#include <stdio.h>

#include "backend/ops.h"
#include "backend/attrs.h"
#include "kiln/nn.h"

kiln_node *kiln_dense_ex(kiln_graph *g, kiln_node *x, const kiln_dense_opts *o) {
    if (!g || !x) return NULL;
    char name[96], pname[128];
    if (o->units <= 0) {
        kiln_error(KILN_ERR_INVALID, "dense: units must be > 0, got %d", o->units);
        return NULL;
    }
    if ((unsigned)o->act >= KILN_ACT_COUNT) {
        kiln_error(KILN_ERR_INVALID, "dense: unknown activation %d", (int)o->act);
        return NULL;
    }
    kiln_shape xs = kiln_node_shape(x);
    if (xs.ndim < 2) {
        char s[64];
        kiln_error(KILN_ERR_SHAPE, "dense: input %s has shape %s; need [batch, ..., features]",
                   kiln_node_name(x), kiln_shape_str(&xs, s, sizeof s));
        return NULL;
    }
    if (kiln_node_dtype(x) != KILN_F32) {
        kiln_error(KILN_ERR_INVALID, "dense: input %s is %s; dense needs F32", kiln_node_name(x),
                   kiln_dtype_name(kiln_node_dtype(x)));
        return NULL;
    }
    if (o->name) snprintf(name, sizeof name, "%s", o->name);
    else kiln_graph_auto_name(g, "dense", name, sizeof name);
    int64_t kd[2] = {xs.dims[xs.ndim - 1], o->units}, bd[1] = {o->units};
    kiln_init ki = o->kernel_init, bi = o->bias_init;
    if (ki.kind == KILN_INIT_DEFAULT) ki.kind = KILN_INIT_GLOROT_UNIFORM;
    if (bi.kind == KILN_INIT_DEFAULT) bi.kind = KILN_INIT_ZEROS;
    snprintf(pname, sizeof pname, "%s.kernel", name);
    kiln_node *in[3] = {x, kiln_param(g, pname, 2, kd, ki, 1, 0, 0), NULL};
    int n_in = 2;
    if (!o->no_bias) {
        snprintf(pname, sizeof pname, "%s.bias", name);
        in[n_in++] = kiln_param(g, pname, 1, bd, bi, 1, 0, 0);
    }
    kiln_dense_attr a = {o->units, o->act};
    return kiln_graph_add_op(g, &kiln_op_dense, in, n_in, &a, sizeof a, name);
}

kiln_node *kiln_dense(kiln_graph *g, kiln_node *x, int units, kiln_act act) {
    kiln_dense_opts o = {.units = units, .act = act};
    return kiln_dense_ex(g, x, &o);
}

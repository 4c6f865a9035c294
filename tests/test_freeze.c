/* test_freeze.c — freezing at the graph and optimizer level: a frozen conv kernel gets no
 * gradient in plans compiled after kiln_graph_set_frozen (and nothing upstream of only frozen
 * parameters runs backward), a batch norm set to inference mode keeps its moving statistics in a
 * training plan, kiln_graph_active_ranges leaves frozen slices out, and kiln_optim_set_ranges
 * updates only those ranges (params and Adam slots of the rest untouched, weight decay too). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/graph.h"
#include "kiln/nn.h"
#include "kiln/optim.h"

static int find_param(kiln_graph *g, const char *name) {
    for (int i = 0; i < kiln_graph_param_count(g); i++)
        if (!strcmp(kiln_graph_param_info(g, i)->name, name)) return i;
    return -1;
}

static void test_frozen_conv_gets_no_gradient(void) {
    kiln_graph *g = kiln_graph_new(7);
    int64_t in_dims[3] = {1, 6, 6}, one = 1;
    kiln_node *x = kiln_input(g, "x", KILN_F32, 3, in_dims);
    kiln_node *y = kiln_input(g, "y", KILN_F32, 1, &one);
    kiln_node *c = kiln_conv2d(g, x, 3, 3, 1, KILN_PAD_SAME, KILN_ACT_NONE);
    kiln_node *bn = kiln_batchnorm(g, c);
    kiln_node *f = kiln_flatten(g, bn);
    kiln_node *d = kiln_dense(g, f, 1, KILN_ACT_NONE);
    kiln_node *loss = kiln_mse(g, d, y);
    CHECK(loss != NULL);
    CHECK_OK(kiln_graph_init_params(g));
    char ckn[128], name[128];
    snprintf(ckn, sizeof ckn, "%s.kernel", kiln_node_name(c));
    int ck = find_param(g, ckn);
    snprintf(name, sizeof name, "%s.bias", kiln_node_name(c));
    int cb = find_param(g, name);
    snprintf(name, sizeof name, "%s.moving_mean", kiln_node_name(bn));
    int mm = find_param(g, name);
    snprintf(name, sizeof name, "%s.gamma", kiln_node_name(bn));
    int bg = find_param(g, name);
    snprintf(name, sizeof name, "%s.beta", kiln_node_name(bn));
    int bb = find_param(g, name);
    CHECK(ck >= 0 && cb >= 0 && mm >= 0 && bg >= 0 && bb >= 0);
    CHECK_OK(kiln_graph_set_frozen(g, ck, 1));
    CHECK_OK(kiln_graph_set_frozen(g, cb, 1));
    CHECK_OK(kiln_graph_set_frozen(g, bg, 1));
    CHECK_OK(kiln_graph_set_frozen(g, bb, 1));
    kiln_graph_set_inference(g, bn, 1);
    kiln_node *outs[1] = {loss};
    kiln_plan_opts po = {.outputs = outs, .n_outputs = 1, .loss = loss, .batch = 4, .training = 1,
                         .deterministic = 1};
    kiln_plan *p = kiln_plan_new(g, &po);
    CHECK(p != NULL);
    CHECK(kiln_plan_grad(p, kiln_graph_find(g, ckn)) == NULL);
    CHECK(kiln_plan_grad(p, c) == NULL); /* nothing below the head takes a gradient */
    snprintf(name, sizeof name, "%s.kernel", kiln_node_name(d));
    CHECK(kiln_plan_grad(p, kiln_graph_find(g, name)) != NULL); /* the head trains */
    float *xv = kiln_plan_data(p, x), *yv = kiln_plan_data(p, y);
    for (int i = 0; i < 4 * 36; i++) xv[i] = (float)sin(i);
    for (int i = 0; i < 4; i++) yv[i] = (float)i;
    const kiln_param_info *mi = kiln_graph_param_info(g, mm);
    float before[3];
    memcpy(before, kiln_graph_params(g) + mi->offset, sizeof before);
    CHECK_OK(kiln_plan_forward(p));
    CHECK_OK(kiln_plan_backward(p));
    CHECK(memcmp(before, kiln_graph_params(g) + mi->offset, sizeof before) == 0);
    const kiln_param_info *ki = kiln_graph_param_info(g, ck);
    for (size_t i = 0; i < ki->numel; i++) CHECK(kiln_graph_grads(g)[ki->offset + i] == 0.0f);
    kiln_plan_free(p);
    /* unfrozen again: a new plan has the kernel gradient and updates the statistics */
    CHECK_OK(kiln_graph_set_frozen(g, ck, 0));
    kiln_graph_set_inference(g, bn, 0);
    p = kiln_plan_new(g, &po);
    CHECK(p != NULL && kiln_plan_grad(p, kiln_graph_find(g, ckn)) != NULL);
    xv = kiln_plan_data(p, x), yv = kiln_plan_data(p, y);
    for (int i = 0; i < 4 * 36; i++) xv[i] = (float)sin(i);
    for (int i = 0; i < 4; i++) yv[i] = (float)i;
    CHECK_OK(kiln_plan_forward(p));
    CHECK(memcmp(before, kiln_graph_params(g) + mi->offset, sizeof before) != 0);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_optimizer_ranges(void) {
    enum { N = 64 };
    float p[N], gr[N], p0[N];
    for (int i = 0; i < N; i++) p[i] = p0[i] = 1.0f + (float)i, gr[i] = 0.5f;
    kiln_optim_config c = {.kind = KILN_OPT_ADAM, .weight_decay = 0.1f};
    kiln_optim *o = kiln_optim_new(&c, N);
    CHECK(o != NULL);
    size_t off[2] = {0, 32}, len[2] = {16, 16};
    CHECK_OK(kiln_optim_set_ranges(o, off, len, 2));
    CHECK_OK(kiln_optim_step(o, p, gr, 0.01f));
    for (int i = 0; i < N; i++) {
        int active = i < 16 || (i >= 32 && i < 48);
        CHECK(active ? p[i] != p0[i] : p[i] == p0[i]);
        CHECK(active ? kiln_optim_slot(o, 0)[i] != 0 : kiln_optim_slot(o, 0)[i] == 0);
    }
    size_t bad_off[2] = {32, 0};
    CHECK(kiln_optim_set_ranges(o, bad_off, len, 2) == KILN_ERR_INVALID);
    kiln_optim_free(o);
}

int main(void) {
    RUN(test_frozen_conv_gets_no_gradient);
    RUN(test_optimizer_ranges);
    return kiln_test_summary();
}

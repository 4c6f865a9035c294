/* test_graph.c — kiln_plan_on_grads, the gradient watermarks data-parallel training starts its
 * reductions from: during backward the calls come with decreasing offsets ending at 0, and when
 * fn(ctx, from) is called every gradient in [from, trainable size) already holds its final value
 * (compared with the gradients after the whole backward). Three dense layers and a loss, so the
 * parameters' gradients become final one layer at a time. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

typedef struct {
    kiln_graph *g;
    float *snap[16]; /* the gradient buffer at each call */
    size_t from[16];
    int n;
} seen;

static void on_grads(void *ctx, size_t from) {
    seen *s = ctx;
    if (s->n >= 16) return;
    size_t nt = kiln_graph_trainable_size(s->g);
    s->snap[s->n] = malloc(nt * sizeof(float));
    memcpy(s->snap[s->n], kiln_graph_grads(s->g), nt * sizeof(float));
    s->from[s->n++] = from;
}

static void test_watermarks(void) {
    kiln_graph *g = kiln_graph_new(7);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){6});
    kiln_node *lab = kiln_input(g, "y", KILN_I32, 0, NULL);
    kiln_node *h = kiln_dense(g, x, 8, KILN_ACT_TANH);
    h = kiln_dense(g, h, 8, KILN_ACT_RELU);
    kiln_node *out = kiln_dense(g, h, 3, KILN_ACT_NONE);
    kiln_node *loss = kiln_softmax_cross_entropy(g, out, lab, 0);
    CHECK_MSG(loss != NULL, "%s", kiln_last_error());
    if (!loss) return kiln_graph_free(g);
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &loss, .n_outputs = 1, .loss = loss, .batch = 4,
                                                      .training = 1});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    seen s = {.g = g};
    if (p) {
        kiln_test_fill(kiln_plan_data(p, x), 24, -1, 1, 3);
        int32_t *y = kiln_plan_data(p, lab);
        for (int i = 0; i < 4; i++) y[i] = i % 3;
        CHECK_OK(kiln_plan_forward(p));
        CHECK_OK(kiln_plan_backward(p)); /* no hook: nothing called */
        CHECK(s.n == 0);
        kiln_plan_on_grads(p, on_grads, &s);
        float *gb = kiln_graph_grads(g); /* what an unfinished gradient would still show */
        for (size_t i = 0; i < kiln_graph_trainable_size(g); i++) gb[i] = 12345.0f;
        CHECK_OK(kiln_plan_forward(p));
        CHECK_OK(kiln_plan_backward(p));
    }
    size_t nt = kiln_graph_trainable_size(g);
    const float *final = kiln_graph_grads(g);
    CHECK_MSG(s.n >= 3, "%d calls: one per layer at least", s.n);
    CHECK(s.n > 0 && s.from[s.n - 1] == 0);
    for (int i = 0; i < s.n; i++) {
        if (i) CHECK_MSG(s.from[i] < s.from[i - 1], "call %d: from %zu after %zu", i, s.from[i], s.from[i - 1]);
        CHECK_MSG(memcmp(s.snap[i] + s.from[i], final + s.from[i], (nt - s.from[i]) * sizeof(float)) == 0,
                  "call %d: gradients [%zu, %zu) were not final yet", i, s.from[i], nt);
        free(s.snap[i]);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_watermarks);
    return kiln_test_summary();
}

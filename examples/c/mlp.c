/* mlp.c — kiln's C API in use: an MLP learns a 3-class spiral from plain arrays.
 *
 *   build/example_mlp        prints the loss as it trains and the final accuracy; exits 1 if
 *                            the model failed to learn (accuracy < 0.95), so ctest runs it too.
 *
 * Everything between the two "user code" markers is what a user writes.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln/kiln.h"

enum { N = 900, CLASSES = 3, BATCH = 64 };
static float X[N][2];
static int32_t Y[N];

/* The classic spiral data set: three arms, each a noisy spiral of 300 points. */
static void make_spiral(void) {
    for (int i = 0; i < N; i++) {
        int c = i / (N / CLASSES), k = i % (N / CLASSES);
        float r = (float)k / (N / CLASSES), t = c * 4.0f + 4.0f * r + 0.2f * kiln_rng_normal(7, 0, (uint64_t)i);
        X[i][0] = r * sinf(t), X[i][1] = r * cosf(t), Y[i] = c;
    }
}

int main(void) {
    make_spiral();
    /* ---- user code ---- */
    kiln_graph *g = kiln_graph_new(42);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){2});
    kiln_node *y = kiln_input(g, "y", KILN_I32, 0, NULL);
    kiln_node *h = kiln_dense(g, x, 64, KILN_ACT_RELU);
    h = kiln_dense(g, h, 64, KILN_ACT_RELU);
    kiln_node *logits = kiln_dense(g, h, CLASSES, KILN_ACT_NONE);
    kiln_node *loss = kiln_softmax_cross_entropy(g, logits, y, 0.0f);
    kiln_plan *train = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &loss, .n_outputs = 1, .loss = loss,
                                                         .batch = BATCH, .training = 1});
    kiln_plan *eval = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &logits, .n_outputs = 1, .batch = N});
    kiln_optim *opt = kiln_optim_new(&(kiln_optim_config){.kind = KILN_OPT_ADAM}, kiln_graph_trainable_size(g));
    if (!train || !eval || !opt) return fprintf(stderr, "error: %s\n", kiln_last_error()), 2;
    float *xb = kiln_plan_data(train, x);
    int32_t *yb = kiln_plan_data(train, y);
    for (int step = 0; step < 3000; step++) {
        for (int i = 0; i < BATCH; i++) { /* a random batch */
            uint32_t r = kiln_rng_below(1, 0, (uint64_t)step * BATCH + i, N);
            memcpy(xb + 2 * i, X[r], sizeof X[r]), yb[i] = Y[r];
        }
        kiln_plan_forward(train);
        kiln_plan_backward(train);
        kiln_optim_step(opt, kiln_graph_params(g), kiln_graph_grads(g), 0.01f);
        if (step % 500 == 0) printf("step %4d  loss %.4f\n", step, *(float *)kiln_plan_data(train, loss));
    }
    memcpy(kiln_plan_data(eval, x), X, sizeof X);
    kiln_plan_forward(eval);
    const float *z = kiln_plan_data(eval, logits); /* [N, CLASSES] */
    int correct = 0;
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int c = 1; c < CLASSES; c++) best = z[i * CLASSES + c] > z[i * CLASSES + best] ? c : best;
        correct += best == Y[i];
    }
    printf("accuracy %.3f\n", (double)correct / N);
    kiln_optim_free(opt), kiln_plan_free(train), kiln_plan_free(eval), kiln_graph_free(g);
    /* ---- end of user code ---- */
    return correct >= 0.95 * N ? 0 : 1;
}

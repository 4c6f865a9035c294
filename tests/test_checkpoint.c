/* test_checkpoint.c — parameters + optimizer slots + EMA through safetensors: exact round trip,
 * names as Python sees them, and refusals (shape, missing, unexpected, optimizer) that leave the
 * model untouched. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/checkpoint.h"

static char dir[] = "/tmp/kiln-test-ckpt-XXXXXX";

static kiln_graph *model(uint64_t seed, int units2) {
    kiln_graph *g = kiln_graph_new(seed);
    kiln_node *x = kiln_param(g, "x", 2, (int64_t[]){4, 6}, (kiln_init){KILN_INIT_HE_UNIFORM}, 0, 0, 0);
    kiln_node *h = kiln_dense(g, x, 5, KILN_ACT_TANH);
    h = kiln_batchnorm(g, h);
    kiln_dense(g, h, units2, KILN_ACT_NONE);
    return g;
}

/* A few real training steps so that slots, EMA and running statistics are all non-trivial. */
static void train(kiln_graph *g, kiln_optim *o, kiln_ema *e, int steps) {
    kiln_node *y = kiln_graph_find(g, "dense_2");
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1, .training = 1});
    CHECK(p != NULL);
    for (int s = 0; s < steps && p; s++) {
        CHECK_OK(kiln_plan_forward(p));
        kiln_test_fill(kiln_plan_grad(p, y), 4 * 3, -1, 1, (uint64_t)s);
        CHECK_OK(kiln_plan_backward(p));
        CHECK_OK(kiln_optim_step(o, kiln_graph_params(g), kiln_graph_grads(g), 0.01f));
        kiln_ema_update(e, kiln_graph_params(g));
    }
    kiln_plan_free(p);
}

static void test_roundtrip_exact(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    kiln_graph *g = model(1, 3), *h = model(2, 3);
    CHECK_OK(kiln_graph_init_params(g));
    CHECK_OK(kiln_graph_init_params(h));
    kiln_optim_config oc = {.kind = KILN_OPT_ADAM};
    kiln_optim *o = kiln_optim_new(&oc, kiln_graph_trainable_size(g)), *o2 = kiln_optim_new(&oc, kiln_graph_trainable_size(h));
    kiln_ema *e = kiln_ema_new(kiln_graph_params_size(g), 0.9f, kiln_graph_params(g));
    kiln_ema *e2 = kiln_ema_new(kiln_graph_params_size(h), 0.9f, kiln_graph_params(h));
    train(g, o, e, 3);
    const char *meta[] = {"kiln.step", "3"};
    CHECK_OK(kiln_checkpoint_save(path, g, o, e, meta, 1));
    CHECK_OK(kiln_checkpoint_load(path, h, o2, e2));
    size_t n = kiln_graph_params_size(g), nt = kiln_graph_trainable_size(g);
    CHECK(memcmp(kiln_graph_params(g), kiln_graph_params(h), n * 4) == 0);
    CHECK(memcmp(kiln_ema_weights(e), kiln_ema_weights(e2), n * 4) == 0);
    for (int s = 0; s < kiln_optim_slot_count(o); s++)
        CHECK(memcmp(kiln_optim_slot(o, s), kiln_optim_slot(o2, s), nt * 4) == 0);
    CHECK(kiln_optim_iterations(o2) == 3 && kiln_ema_updates(e2) == 3);
    /* continuing from the restored state matches continuing the original */
    train(g, o, e, 2);
    train(h, o2, e2, 2);
    CHECK(memcmp(kiln_graph_params(g), kiln_graph_params(h), n * 4) == 0);
    char buf[64];
    CHECK_OK(kiln_checkpoint_read_meta(path, "kiln.step", buf, sizeof buf));
    CHECK(strcmp(buf, "3") == 0);
    CHECK_OK(kiln_checkpoint_read_meta(path, "kiln.optimizer", buf, sizeof buf));
    CHECK(strcmp(buf, "adam") == 0);
    /* names as a Python user sees them */
    kiln_st_file *f;
    CHECK_OK(kiln_safetensors_open(path, &f));
    CHECK(kiln_st_find(f, "dense_1.kernel") && kiln_st_find(f, "dense_1.kernel.adam_m") &&
          kiln_st_find(f, "dense_1.kernel.adam_v") && kiln_st_find(f, "dense_2.bias.ema") &&
          kiln_st_find(f, "batch_normalization_1.moving_variance") &&
          !kiln_st_find(f, "batch_normalization_1.moving_mean.adam_m")); /* not trainable: no slots */
    kiln_st_close(f);
    /* weights only, EMA or raw */
    kiln_graph *w = model(3, 3);
    CHECK_OK(kiln_checkpoint_load_weights(path, w, 1));
    CHECK(memcmp(kiln_graph_params(w), kiln_ema_weights(e2), n * 4) != 0); /* e2 moved on since */
    kiln_graph *w2 = model(3, 3);
    CHECK_OK(kiln_checkpoint_load_weights(path, w2, 0));
    CHECK(memcmp(kiln_graph_params(w), kiln_graph_params(w2), n * 4) != 0);
    kiln_graph_free(w), kiln_graph_free(w2);
    kiln_optim_free(o), kiln_optim_free(o2), kiln_ema_free(e), kiln_ema_free(e2);
    kiln_graph_free(g), kiln_graph_free(h);
    unlink(path);
}

static void test_refusals_leave_model_untouched(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/b.safetensors", dir);
    kiln_graph *g = model(1, 3);
    kiln_optim_config oc = {.kind = KILN_OPT_ADAM};
    CHECK_OK(kiln_graph_init_params(g));
    kiln_optim *o = kiln_optim_new(&oc, kiln_graph_trainable_size(g));
    CHECK_OK(kiln_checkpoint_save(path, g, o, NULL, NULL, 0));

    kiln_graph *other = model(5, 4); /* dense_2 has 4 units: shape mismatch */
    CHECK_OK(kiln_graph_init_params(other));
    size_t n = kiln_graph_params_size(other);
    float *before = malloc(n * 4);
    memcpy(before, kiln_graph_params(other), n * 4);
    CHECK(kiln_checkpoint_load(path, other, NULL, NULL) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("tensor 'dense_2.kernel' has shape [5, 3], the model expects [5, 4]");
    CHECK(memcmp(before, kiln_graph_params(other), n * 4) == 0);
    free(before);

    kiln_ema *e = kiln_ema_new(kiln_graph_params_size(g), 0.9f, kiln_graph_params(g));
    CHECK(kiln_checkpoint_load(path, g, o, e) == KILN_ERR_FORMAT); /* saved without EMA */
    CHECK_ERR_HAS("kiln.ema_updates");
    oc.kind = KILN_OPT_SGD, oc.momentum = 0.9f;
    kiln_optim *sgd = kiln_optim_new(&oc, kiln_graph_trainable_size(g));
    CHECK(kiln_checkpoint_load(path, g, sgd, NULL) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("saved with optimizer 'adam', this run uses 'sgd'");

    /* a model with an extra layer: the file lacks it */
    kiln_graph *bigger = model(1, 3);
    kiln_dense(bigger, kiln_graph_find(bigger, "dense_2"), 2, KILN_ACT_NONE);
    CHECK(kiln_checkpoint_load(path, bigger, NULL, NULL) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("missing tensor 'dense_3.kernel'");
    /* a model with fewer layers: the file has one it does not know */
    kiln_graph *smaller = kiln_graph_new(1);
    kiln_node *x = kiln_param(smaller, "x", 2, (int64_t[]){4, 6}, (kiln_init){KILN_INIT_ZEROS}, 0, 0, 0);
    kiln_dense(smaller, x, 5, KILN_ACT_TANH);
    CHECK(kiln_checkpoint_load(path, smaller, NULL, NULL) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("unexpected tensor 'batch_normalization_1.beta'");
    /* garbage */
    FILE *fp = fopen(path, "wb");
    fputs("not a checkpoint", fp);
    fclose(fp);
    CHECK(kiln_checkpoint_load(path, g, NULL, NULL) != KILN_OK);
    CHECK(kiln_checkpoint_load_weights("/nonexistent/w.safetensors", g, 0) != KILN_OK);
    kiln_graph_free(bigger), kiln_graph_free(smaller), kiln_graph_free(other), kiln_graph_free(g);
    kiln_optim_free(o), kiln_optim_free(sgd), kiln_ema_free(e);
    unlink(path);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    RUN(test_roundtrip_exact);
    RUN(test_refusals_leave_model_untouched);
    rmdir(dir);
    return kiln_test_summary();
}

/* test_core.c — status messages, RNG (Philox known answers, distributions), tensors, bf16,
 * arenas, parameter layout and initializers, and plan compilation rules. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void test_status_messages(void) {
    CHECK(kiln_error(KILN_ERR_SHAPE, "dense_1: %d", 7) == KILN_ERR_SHAPE);
    CHECK(strcmp(kiln_last_error(), "dense_1: 7") == 0);
    kiln_error_prefix("plan (batch %d)", 4);
    CHECK(strcmp(kiln_last_error(), "plan (batch 4): dense_1: 7") == 0);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    kiln_error(KILN_ERR_IO, "%s", big); /* truncated, never overflows */
    kiln_error_prefix("ctx");
    CHECK(strncmp(kiln_last_error(), "ctx: xxx", 8) == 0);
    CHECK(strlen(kiln_last_error()) < 1024);
    CHECK(strcmp(kiln_status_name(KILN_ERR_NUMERIC), "KILN_ERR_NUMERIC") == 0);
    /* re-raising the current message (its own argument) keeps it intact */
    kiln_error(KILN_ERR_NOTFOUND, "a.yaml: no such file");
    CHECK(kiln_error(KILN_ERR_IO, "%s", kiln_last_error()) == KILN_ERR_IO);
    CHECK(strcmp(kiln_last_error(), "a.yaml: no such file") == 0);
    kiln_error(KILN_ERR_IO, "while loading: %s (%d)", kiln_last_error(), 2);
    CHECK(strcmp(kiln_last_error(), "while loading: a.yaml: no such file (2)") == 0);
}

static void test_philox_known_answers(void) {
    /* Known-answer vectors of Philox4x32-10 from the Random123 distribution. */
    uint32_t o[4];
    kiln_philox(0, 0, 0, o);
    CHECK(o[0] == 0x6627e8d5u && o[1] == 0xe169c58du && o[2] == 0xbc57ac4cu && o[3] == 0x9b00dbd8u);
    kiln_philox(~0ull, ~0ull, ~0ull, o);
    CHECK(o[0] == 0x408f276du && o[1] == 0x41c83b0eu && o[2] == 0xa20bc7c6u && o[3] == 0x6d5451fdu);
    kiln_philox(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull, o);
    CHECK(o[0] == 0xd16cfe09u && o[1] == 0x94fdccebu && o[2] == 0x5001e420u && o[3] == 0x24126ea1u);
}

static void test_rng_distributions(void) {
    const int n = 200000;
    double su = 0, su2 = 0, sn = 0, sn2 = 0;
    int below_hist[7] = {0};
    float umin = 1, umax = 0;
    for (int i = 0; i < n; i++) {
        float u = kiln_rng_uniform(42, 3, (uint64_t)i);
        umin = u < umin ? u : umin, umax = u > umax ? u : umax;
        su += u, su2 += (double)u * u;
        double z = kiln_rng_normal(42, 4, (uint64_t)i);
        sn += z, sn2 += z * z;
        below_hist[kiln_rng_below(42, 5, (uint64_t)i, 7)]++;
    }
    CHECK(umin >= 0.0f && umax < 1.0f);
    CHECK_NEAR(su / n, 0.5, 0.005);
    CHECK_NEAR(su2 / n - (su / n) * (su / n), 1.0 / 12, 0.002);
    CHECK_NEAR(sn / n, 0.0, 0.01);
    CHECK_NEAR(sn2 / n, 1.0, 0.02);
    for (int k = 0; k < 7; k++) CHECK_NEAR(below_hist[k] / (double)n, 1.0 / 7, 0.005);
    /* value = f(seed, stream, counter): repeatable, and each argument matters */
    CHECK(kiln_rng_u32(1, 2, 3) == kiln_rng_u32(1, 2, 3));
    CHECK(kiln_rng_u32(1, 2, 3) != kiln_rng_u32(2, 2, 3));
    CHECK(kiln_rng_u32(1, 2, 3) != kiln_rng_u32(1, 3, 3));
    CHECK(kiln_rng_u32(1, 2, 3) != kiln_rng_u32(1, 2, 4));
}

static void test_tensors_and_bf16(void) {
    kiln_tensor *t = kiln_tensor_new(KILN_I64, 3, (int64_t[]){2, 3, 5});
    CHECK(t && kiln_tensor_nbytes(t) == 240 && ((uintptr_t)t->data % 64) == 0);
    char buf[64];
    CHECK(strcmp(kiln_shape_str(&t->shape, buf, sizeof buf), "[2, 3, 5]") == 0);
    CHECK(strcmp(kiln_shape_str(&t->shape, buf, 5), "[2, ") == 0); /* truncated, terminated */
    kiln_tensor_free(t);
    CHECK(kiln_tensor_new(KILN_F32, 2, (int64_t[]){3, 0}) == NULL);
    CHECK_ERR_HAS("dim 1 is 0");
    CHECK(kiln_tensor_new(KILN_F32, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}) == NULL);
    CHECK(kiln_tensor_new((kiln_dtype)99, 1, (int64_t[]){1}) == NULL);
    CHECK(kiln_dtype_from_name("BF16") == KILN_BF16 && kiln_dtype_from_name("F64") == KILN_DTYPE_COUNT);
    /* bf16: exact for representable values, round to nearest even, NaN stays NaN */
    CHECK(kiln_bf16_to_f32(kiln_f32_to_bf16(1.5f)) == 1.5f);
    CHECK(kiln_f32_to_bf16(1.0f + 1.0f / 256) == kiln_f32_to_bf16(1.0f));        /* tie -> even */
    CHECK(kiln_f32_to_bf16(1.0f + 3.0f / 256) == kiln_f32_to_bf16(1.0f + 4.0f / 256)); /* tie -> even (up) */
    CHECK(isnan(kiln_bf16_to_f32(kiln_f32_to_bf16(NAN))));
    CHECK(isinf(kiln_bf16_to_f32(kiln_f32_to_bf16(INFINITY))));
}

static void test_arena(void) {
    kiln_arena a;
    CHECK(kiln_arena_init(&a, 1000) == 0);
    char *p = kiln_arena_take(&a, 10), *q = kiln_arena_take(&a, 100);
    CHECK(p && q && q - p == 64 && ((uintptr_t)q % 64) == 0);
    CHECK(kiln_arena_take(&a, 10000) == NULL);
    CHECK_ERR_HAS("arena");
    kiln_arena_free(&a);
}

static kiln_graph *two_layer(uint64_t seed) {
    kiln_graph *g = kiln_graph_new(seed);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){300});
    kiln_node *h = kiln_dense(g, x, 200, KILN_ACT_RELU);
    kiln_param(g, "counter", 1, (int64_t[]){3}, (kiln_init){KILN_INIT_CONSTANT, 2.5f}, 0, 0, 0);
    kiln_dense(g, h, 7, KILN_ACT_NONE);
    return g;
}

static void test_param_layout_and_init(void) {
    kiln_graph *g = two_layer(5), *g2 = two_layer(5), *g3 = two_layer(6);
    CHECK_OK(kiln_graph_init_params(g));
    CHECK_OK(kiln_graph_init_params(g2));
    CHECK_OK(kiln_graph_init_params(g3));
    CHECK(kiln_graph_param_count(g) == 5);
    size_t nt = kiln_graph_trainable_size(g);
    CHECK(nt >= 300 * 200 + 200 + 200 * 7 + 7 && kiln_graph_params_size(g) > nt);
    for (int i = 0; i < kiln_graph_param_count(g); i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        CHECK(pi->offset % 16 == 0);
        CHECK(pi->trainable ? pi->offset + pi->numel <= nt : pi->offset >= nt);
    }
    const kiln_param_info *k1 = kiln_graph_param_info(g, 0), *c = kiln_graph_param_info(g, 2);
    CHECK(strcmp(k1->name, "dense_1.kernel") == 0 && strcmp(c->name, "counter") == 0);
    float *w = kiln_graph_params(g) + k1->offset;
    CHECK(kiln_graph_params(g)[c->offset + 2] == 2.5f);
    /* glorot uniform: |w| <= sqrt(6 / (300 + 200)), variance 2 / (300 + 200) */
    double lim = sqrt(6.0 / 500), s2 = 0, maxabs = 0;
    for (size_t i = 0; i < k1->numel; i++) {
        s2 += (double)w[i] * w[i];
        maxabs = fabs(w[i]) > maxabs ? fabs(w[i]) : maxabs;
    }
    CHECK(maxabs <= lim && maxabs > 0.99 * lim);
    CHECK_NEAR(s2 / k1->numel, 2.0 / 500, 2.0 / 500 * 0.03);
    /* the seed decides everything */
    CHECK(memcmp(kiln_graph_params(g), kiln_graph_params(g2), kiln_graph_params_size(g) * 4) == 0);
    CHECK(memcmp(kiln_graph_params(g), kiln_graph_params(g3), kiln_graph_params_size(g) * 4) != 0);
    /* no nodes after init */
    CHECK(kiln_input(g, "late", KILN_F32, 1, (int64_t[]){3}) == NULL);
    CHECK_ERR_HAS("after parameters were initialized");
    kiln_graph_free(g), kiln_graph_free(g2), kiln_graph_free(g3);
}

static void test_he_normal_statistics(void) {
    kiln_graph *g = kiln_graph_new(9);
    kiln_node *p = kiln_param(g, "w", 2, (int64_t[]){400, 300}, (kiln_init){KILN_INIT_HE_NORMAL}, 1, 0, 0);
    CHECK(p != NULL);
    CHECK_OK(kiln_graph_init_params(g));
    const float *w = kiln_graph_params(g);
    double s = 0, s2 = 0, maxabs = 0, sd = sqrt(2.0 / 400) / 0.87962566103423978;
    for (int i = 0; i < 120000; i++) s += w[i], s2 += (double)w[i] * w[i], maxabs = fmax(maxabs, fabs(w[i]));
    CHECK_NEAR(s / 120000, 0, 0.002);
    CHECK_NEAR(s2 / 120000, 2.0 / 400, 2.0 / 400 * 0.03); /* truncation rescaled: variance kept */
    CHECK(maxabs <= 2 * sd + 1e-6);
    kiln_graph_free(g);
}

static void test_graph_names_and_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){4});
    CHECK(kiln_input(g, "x", KILN_F32, 1, (int64_t[]){4}) == NULL);
    CHECK_ERR_HAS("already used");
    CHECK(kiln_input(g, "bad", KILN_F32, 1, (int64_t[]){-3}) == NULL);
    CHECK_ERR_HAS("dim 0 is -3");
    kiln_node *d = kiln_dense_ex(g, x, &(kiln_dense_opts){.units = 3, .name = "dense_2"});
    kiln_node *e = kiln_dense(g, d, 3, KILN_ACT_NONE); /* auto name skips the taken dense_2 */
    CHECK(strcmp(kiln_node_name(e), "dense_1") == 0);
    kiln_node *f = kiln_dense(g, e, 2, KILN_ACT_NONE);
    CHECK(strcmp(kiln_node_name(f), "dense_3") == 0);
    kiln_node *bad = kiln_add(g, e, f);
    CHECK(bad == NULL);
    CHECK_ERR_HAS("dense_1=[1, 3], dense_3=[1, 2]");
    CHECK(kiln_graph_find(g, "dense_2.kernel") != NULL);
    /* a loss that depends on no trainable parameter cannot be differentiated */
    kiln_node *y = kiln_input(g, "y", KILN_F32, 1, (int64_t[]){4});
    kiln_node *s = kiln_add(g, x, y);
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &s, .n_outputs = 1, .loss = s, .batch = 2});
    CHECK(p == NULL);
    CHECK_ERR_HAS("does not depend on any trainable parameter");
    CHECK(kiln_plan_new(g, &(kiln_plan_opts){.outputs = &s, .n_outputs = 1, .batch = 0}) == NULL);
    kiln_graph_free(g);
}

static void test_plan_batches_and_unused_params(void) {
    kiln_graph *g = kiln_graph_new(2);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){6});
    kiln_node *a = kiln_dense(g, x, 4, KILN_ACT_TANH);
    kiln_node *unused = kiln_dense(g, x, 5, KILN_ACT_NONE); /* not on the loss path */
    CHECK(unused != NULL);
    kiln_plan *p8 = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &a, .n_outputs = 1, .loss = a, .batch = 8});
    kiln_plan *p3 = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &a, .n_outputs = 1, .batch = 3});
    CHECK(p8 && p3);
    if (!p8 || !p3) return;
    CHECK(kiln_plan_shape(p8, a).dims[0] == 8 && kiln_plan_shape(p3, a).dims[0] == 3);
    CHECK(kiln_plan_data(p3, unused) == NULL && kiln_plan_grad(p3, a) == NULL);
    /* rows of a batch-8 run equal the batch-3 run on the same rows (shared parameters) */
    kiln_test_fill(kiln_plan_data(p8, x), 48, -1, 1, 1);
    memcpy(kiln_plan_data(p3, x), kiln_plan_data(p8, x), 18 * sizeof(float));
    CHECK_OK(kiln_plan_forward(p8));
    CHECK_OK(kiln_plan_forward(p3));
    CHECK(kiln_test_compare(kiln_plan_data(p3, a), kiln_plan_data(p8, a), 12, 1e-6, 1e-6, NULL) <= 1);
    /* gradients of a parameter off the loss path are zero, not stale */
    const kiln_param_info *pu = kiln_graph_param_info(g, 2);
    CHECK(strcmp(pu->name, "dense_2.kernel") == 0);
    float *gr = kiln_graph_grads(g);
    for (size_t i = 0; i < pu->numel; i++) gr[pu->offset + i] = 7.0f;
    float *seed = kiln_plan_grad(p8, a);
    for (int i = 0; i < 32; i++) seed[i] = 1.0f;
    CHECK_OK(kiln_plan_backward(p8));
    int zero = 1;
    for (size_t i = 0; i < pu->numel; i++) zero &= gr[pu->offset + i] == 0.0f;
    CHECK(zero);
    CHECK(kiln_plan_backward(p3) == KILN_ERR_INVALID);
    kiln_plan_free(p8), kiln_plan_free(p3);
    kiln_graph_free(g);
}

/* Inference plans reuse activation slices once their last consumer ran; results are the same
 * as in a training plan (where every value is kept for backward). */
static kiln_graph *deep_chain(int width, kiln_node **x, kiln_node **h) {
    kiln_graph *g = kiln_graph_new(4);
    *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){width});
    kiln_node *skip = NULL;
    *h = *x;
    for (int i = 0; i < 8; i++) {
        *h = kiln_dense(g, *h, width, KILN_ACT_TANH);
        if (i == 2) skip = *h;
    }
    *h = kiln_add(g, *h, skip); /* keeps dense_3 alive across five layers */
    return g;
}

static void test_memory_plan_reuse(void) {
    kiln_node *x, *h;
    kiln_graph *g = deep_chain(256, &x, &h);
    kiln_plan *inf = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &h, .n_outputs = 1, .batch = 64});
    kiln_plan *trn = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &h, .n_outputs = 1, .loss = h, .batch = 64});
    CHECK(inf && trn);
    if (!inf || !trn) return;
    size_t one = 64 * 256 * sizeof(float);
    /* input + output + dense_3 + at most two live intermediates */
    CHECK_MSG(kiln_plan_arena_bytes(inf) <= 5 * one, "%zu bytes", kiln_plan_arena_bytes(inf));
    CHECK(kiln_plan_arena_bytes(trn) >= 10 * one);
    kiln_test_fill(kiln_plan_data(inf, x), 64 * 256, -1, 1, 8);
    memcpy(kiln_plan_data(trn, x), kiln_plan_data(inf, x), one);
    CHECK_OK(kiln_plan_forward(inf));
    CHECK_OK(kiln_plan_forward(trn));
    CHECK(memcmp(kiln_plan_data(inf, h), kiln_plan_data(trn, h), one) == 0);
    kiln_plan_free(inf), kiln_plan_free(trn);
    kiln_graph_free(g);
    /* gradients through the shared backward buffers are right (small sizes: f32 finite
     * differences are only precise when the loss sums few terms) */
    g = deep_chain(6, &x, &h);
    trn = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &h, .n_outputs = 1, .loss = h, .batch = 3});
    CHECK(trn != NULL);
    kiln_test_fill(kiln_plan_data(trn, x), 18, -1, 1, 8);
    CHECK(kiln_test_gradcheck(g, trn, h, 1e-3, 1e-3, 3e-3, 40) == 0);
    kiln_plan_free(trn);
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_status_messages);
    RUN(test_philox_known_answers);
    RUN(test_rng_distributions);
    RUN(test_tensors_and_bf16);
    RUN(test_arena);
    RUN(test_param_layout_and_init);
    RUN(test_he_normal_statistics);
    RUN(test_graph_names_and_errors);
    RUN(test_plan_batches_and_unused_params);
    RUN(test_memory_plan_reuse);
    return kiln_test_summary();
}

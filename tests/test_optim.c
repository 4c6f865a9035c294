/* test_optim.c — optimizers, gradient clipping and weight EMA against plain double references.
 *
 * Every optimizer runs 3 steps on n = 5 and n = 1001 floats (the second spans both OpenMP
 * threads and a vector remainder) and is compared after each step with a scalar reference written
 * here in double from the papers' / PyTorch's formulas (Adam in its textbook m-hat / v-hat form,
 * not the folded form the library uses): params, slots, the clipped gradients and the measured
 * norm. A few cases are checked against numbers worked out by hand in comments. Then: NaN/Inf
 * gradients leave everything untouched, slot names, the iteration count round trip (a restored
 * optimizer continues exactly), defaults, and configs that must be rejected with a message.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/cpu.h"

/* ---- the reference: one step in double, p/s0/s1 [n], t counted from 1 ---- */

static kiln_optim_config with_defaults(kiln_optim_config c) {
    if (c.kind == KILN_OPT_ADAM || c.kind == KILN_OPT_ADAMW) {
        if (c.beta1 == 0) c.beta1 = 0.9f;
        if (c.beta2 == 0) c.beta2 = 0.999f;
        if (c.epsilon == 0) c.epsilon = 1e-7f;
    }
    if (c.kind == KILN_OPT_RMSPROP) {
        if (c.rho == 0) c.rho = 0.9f;
        if (c.epsilon == 0) c.epsilon = 1e-7f;
    }
    return c;
}

/* Applies one step to p with raw gradients g; writes the clipped gradients to gc, returns the
 * norm before clipping. */
static double ref_step(const kiln_optim_config *cfg, size_t n, double *p, const float *g,
                       double *gc, double *s0, double *s1, int64_t t, double lr) {
    kiln_optim_config c = with_defaults(*cfg);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    double norm = sqrt(ss);
    double scale = c.clip_norm > 0 && norm > c.clip_norm ? c.clip_norm / norm : 1;
    double mu = c.momentum, wd = c.weight_decay, eps = c.epsilon;
    for (size_t i = 0; i < n; i++) {
        double gi = g[i] * scale;
        gc[i] = gi;
        switch (c.kind) {
        case KILN_OPT_SGD:
            gi += wd * p[i];
            if (mu > 0) {
                s0[i] = mu * s0[i] + gi;
                p[i] -= lr * (c.nesterov ? gi + mu * s0[i] : s0[i]);
            } else {
                p[i] -= lr * gi;
            }
            break;
        case KILN_OPT_ADAM:
        case KILN_OPT_ADAMW: {
            double b1 = c.beta1, b2 = c.beta2;
            if (c.kind == KILN_OPT_ADAM) gi += wd * p[i];
            s0[i] = b1 * s0[i] + (1 - b1) * gi;
            s1[i] = b2 * s1[i] + (1 - b2) * gi * gi;
            double mhat = s0[i] / (1 - pow(b1, (double)t)), vhat = s1[i] / (1 - pow(b2, (double)t));
            double decay = c.kind == KILN_OPT_ADAMW ? lr * wd * p[i] : 0;
            p[i] -= decay + lr * mhat / (sqrt(vhat) + eps);
            break;
        }
        default: {
            double rho = c.rho;
            gi += wd * p[i];
            s0[i] = rho * s0[i] + (1 - rho) * gi * gi;
            double step = gi / (sqrt(s0[i]) + eps);
            if (mu > 0) {
                s1[i] = mu * s1[i] + step;
                step = s1[i];
            }
            p[i] -= lr * step;
            break;
        }
        }
    }
    return norm;
}

/* |a - b| <= atol + rtol |b| over [n] floats vs doubles, with atol = atol_rel max |b|: float
 * rounding errs relative to the size of the terms, and a slot such as momentum = 0.9 v + g can
 * cancel to a value far smaller than its terms. */
static int close_d(const float *a, const double *b, size_t n, double atol_rel, double rtol,
                   const char *what) {
    double big = 0;
    for (size_t i = 0; i < n; i++) big = fmax(big, fabs(b[i]));
    double atol = atol_rel * big;
    for (size_t i = 0; i < n; i++)
        if (!(fabs(a[i] - b[i]) <= atol + rtol * fabs(b[i]))) {
            fprintf(stderr, "  %s[%zu] = %.9g, reference %.9g\n", what, i, (double)a[i], b[i]);
            return 0;
        }
    return 1;
}

/* 3 steps of optimizer c on [n] floats vs ref_step; the reference's s0 / s1 are the optimizer's
 * slots 0 / 1 where it has them. */
static void check_against_reference(const char *label, kiln_optim_config c, size_t n, float lr) {
    kiln_optim *o = kiln_optim_new(&c, n);
    CHECK_MSG(o != NULL, "%s: %s", label, kiln_last_error());
    if (!o) return;
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g), *graw = malloc(n * sizeof *g);
    double *rp = malloc(n * sizeof *rp), *rg = malloc(n * sizeof *rg);
    double *s0 = calloc(n, sizeof *s0), *s1 = calloc(n, sizeof *s1);
    kiln_test_fill(p, n, -1, 1, 100);
    for (size_t i = 0; i < n; i++) rp[i] = p[i];
    for (int64_t step = 1; step <= 3; step++) {
        kiln_test_fill(graw, n, -1, 1, 200 + (uint64_t)step);
        memcpy(g, graw, n * sizeof *g);
        CHECK_OK(kiln_optim_step(o, p, g, lr));
        double norm = ref_step(&c, n, rp, graw, rg, s0, s1, step, lr);
        CHECK_MSG(kiln_optim_iterations(o) == step, "%s", label);
        CHECK_MSG(fabs(kiln_optim_last_grad_norm(o) - norm) <= 1e-6 * norm,
                  "%s n=%zu step %lld: "
                  "norm %.9g vs %.9g",
                  label, n, (long long)step, (double)kiln_optim_last_grad_norm(o), norm);
        CHECK_MSG(close_d(g, rg, n, 0, 1e-6, "grad"), "%s n=%zu step %lld: clipped grads", label, n,
                  (long long)step);
        CHECK_MSG(close_d(p, rp, n, 1e-6, 1e-5, "param"), "%s n=%zu step %lld: params", label, n,
                  (long long)step);
        int ns = kiln_optim_slot_count(o);
        if (ns > 0)
            CHECK_MSG(close_d(kiln_optim_slot(o, 0), s0, n, 1e-6, 1e-5, kiln_optim_slot_name(o, 0)),
                      "%s n=%zu step %lld: slot 0", label, n, (long long)step);
        if (ns > 1)
            CHECK_MSG(close_d(kiln_optim_slot(o, 1), s1, n, 1e-6, 1e-5, kiln_optim_slot_name(o, 1)),
                      "%s n=%zu step %lld: slot 1", label, n, (long long)step);
    }
    free(p), free(g), free(graw), free(rp), free(rg), free(s0), free(s1);
    kiln_optim_free(o);
}

static void test_optimizers_vs_reference(void) {
    /* clip 0.5 is below the gradient norm at both sizes (about 1.3 and 18): clipping active;
     * 1e3 is above it: measured but not applied. */
    struct {
        const char *label;
        kiln_optim_config c;
        float lr;
    } cases[] = {
        {"sgd", {KILN_OPT_SGD}, 0.1f},
        {"sgd wd", {KILN_OPT_SGD, .weight_decay = 0.05f}, 0.1f},
        {"sgd momentum", {KILN_OPT_SGD, .momentum = 0.9f}, 0.1f},
        {"sgd nesterov", {KILN_OPT_SGD, .momentum = 0.9f, .nesterov = 1}, 0.1f},
        {"sgd nesterov wd clip",
         {KILN_OPT_SGD, .momentum = 0.8f, .nesterov = 1, .weight_decay = 0.01f, .clip_norm = 0.5f},
         0.05f},
        {"sgd clip inactive", {KILN_OPT_SGD, .momentum = 0.5f, .clip_norm = 1e3f}, 0.1f},
        {"adam", {KILN_OPT_ADAM}, 0.01f},
        {"adam betas eps", {KILN_OPT_ADAM, .beta1 = 0.8f, .beta2 = 0.99f, .epsilon = 1e-3f}, 0.05f},
        {"adam wd", {KILN_OPT_ADAM, .weight_decay = 0.1f}, 0.01f},
        {"adam clip", {KILN_OPT_ADAM, .clip_norm = 0.5f}, 0.01f},
        {"adamw wd", {KILN_OPT_ADAMW, .weight_decay = 0.1f}, 0.01f},
        {"adamw wd clip", {KILN_OPT_ADAMW, .weight_decay = 0.3f, .clip_norm = 0.5f}, 0.1f},
        {"rmsprop", {KILN_OPT_RMSPROP}, 0.01f},
        {"rmsprop rho eps", {KILN_OPT_RMSPROP, .rho = 0.5f, .epsilon = 1e-2f}, 0.01f},
        {"rmsprop momentum", {KILN_OPT_RMSPROP, .momentum = 0.9f}, 0.01f},
        {"rmsprop momentum wd clip",
         {KILN_OPT_RMSPROP, .momentum = 0.5f, .weight_decay = 0.1f, .clip_norm = 0.5f},
         0.01f},
        {"rmsprop clip inactive", {KILN_OPT_RMSPROP, .clip_norm = 1e3f}, 0.01f},
    };
    size_t sizes[] = {5, 1001};
    for (size_t s = 0; s < 2; s++)
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            check_against_reference(cases[i].label, cases[i].c, sizes[s], cases[i].lr);
}

/* Runs `steps` steps with the same gradient each time; p [n]. */
static void run_const(kiln_optim_config c, float *p, const float *g0, size_t n, float lr,
                      int steps) {
    kiln_optim *o = kiln_optim_new(&c, n);
    CHECK_MSG(o != NULL, "%s", kiln_last_error());
    if (!o) return;
    float g[8];
    for (int s = 0; s < steps; s++) {
        memcpy(g, g0, n * sizeof *g);
        CHECK_OK(kiln_optim_step(o, p, g, lr));
    }
    kiln_optim_free(o);
}

static void test_sgd_momentum_by_hand(void) {
    /* p = 1, g = 1 every step, mu = 0.9, lr = 0.1.
     * plain:    v = 1, 1.9, 2.71;                    p = 0.9, 0.71, 0.439
     * nesterov: d = 1 + 0.9 v = 1.9, 2.71, 3.439;    p = 0.81, 0.539, 0.1951 */
    const float one = 1;
    float p = 1;
    run_const((kiln_optim_config){KILN_OPT_SGD, .momentum = 0.9f}, &p, &one, 1, 0.1f, 3);
    CHECK_NEAR(p, 0.439, 1e-6);
    p = 1;
    run_const((kiln_optim_config){KILN_OPT_SGD, .momentum = 0.9f, .nesterov = 1}, &p, &one, 1, 0.1f,
              3);
    CHECK_NEAR(p, 0.1951, 1e-6);
    p = 1; /* plain SGD: 1 - 3 * 0.1 */
    run_const((kiln_optim_config){KILN_OPT_SGD}, &p, &one, 1, 0.1f, 3);
    CHECK_NEAR(p, 0.7, 1e-6);
}

static void test_adam_first_step_by_hand(void) {
    /* Step 1: m = 0.1 g, v = 0.001 g^2, so m-hat = g and v-hat = g^2 and each param moves by
     * lr g / (|g| + eps) = lr sign(g) up to eps. lr = 0.1, eps = 1e-7:
     *   g = 0.5:  0.1 * 0.5 / 0.5000001 = 0.09999998  -> 1 - 0.09999998 = 0.90000002
     *   g = -3:   -> -2 + 0.1 (to 3e-9) = -1.9
     *   g = 1e-3: 0.1 * 1e-3 / 1.0001e-3 = 0.09999000 -> 0.5 - 0.09999 = 0.40001 */
    float p[3] = {1, -2, 0.5f};
    const float g[3] = {0.5f, -3, 1e-3f};
    run_const((kiln_optim_config){KILN_OPT_ADAM}, p, g, 3, 0.1f, 1);
    CHECK_NEAR(p[0], 0.90000002, 1e-7);
    CHECK_NEAR(p[1], -1.9, 1e-7);
    CHECK_NEAR(p[2], 0.40001, 1e-7);
}

static void test_weight_decay_coupled_vs_decoupled(void) {
    /* p = 2, g = 0, lr = 0.1, wd = 0.1, one step.
     * AdamW: p (1 - lr wd) = 2 * 0.99 = 1.98 (m = v = 0, so the Adam part moves nothing).
     * Adam (L2): g = wd p = 0.2, and a first Adam step moves lr sign(g): 2 - 0.1 = 1.9.
     * SGD (L2): 2 - 0.1 * 0.2 = 1.98. RMSprop (L2): s = 0.1 * 0.04 = 0.004, step
     * 0.2 / (0.0632455532 + 1e-7) = 3.16227266 -> 2 - 0.316227266 = 1.683772734. */
    const float zero = 0;
    float p = 2;
    run_const((kiln_optim_config){KILN_OPT_ADAMW, .weight_decay = 0.1f}, &p, &zero, 1, 0.1f, 1);
    CHECK_NEAR(p, 1.98, 1e-6);
    p = 2;
    run_const((kiln_optim_config){KILN_OPT_ADAM, .weight_decay = 0.1f}, &p, &zero, 1, 0.1f, 1);
    CHECK_NEAR(p, 1.9, 1e-6);
    p = 2;
    run_const((kiln_optim_config){KILN_OPT_SGD, .weight_decay = 0.1f}, &p, &zero, 1, 0.1f, 1);
    CHECK_NEAR(p, 1.98, 1e-6);
    p = 2;
    run_const((kiln_optim_config){KILN_OPT_RMSPROP, .weight_decay = 0.1f}, &p, &zero, 1, 0.1f, 1);
    CHECK_NEAR(p, 1.683772734, 1e-6);
    /* AdamW over 3 steps with g = 0: 2 * 0.99^3 = 1.940598 */
    p = 2;
    run_const((kiln_optim_config){KILN_OPT_ADAMW, .weight_decay = 0.1f}, &p, &zero, 1, 0.1f, 3);
    CHECK_NEAR(p, 1.940598, 1e-6);
}

static void test_clipping(void) {
    /* g = (3, 4): ||g|| = 5. */
    float g[2] = {3, 4};
    CHECK_NEAR(kiln_clip_global_norm(g, 2, 1), 5, 1e-6);
    CHECK_NEAR(g[0], 0.6, 1e-7);
    CHECK_NEAR(g[1], 0.8, 1e-7);
    g[0] = 3, g[1] = 4;
    CHECK_NEAR(kiln_clip_global_norm(g, 2, 10), 5, 1e-6); /* below the threshold: untouched */
    CHECK(g[0] == 3 && g[1] == 4);
    CHECK_NEAR(kiln_clip_global_norm(g, 2, 0), 5, 1e-6); /* 0: measure only */
    CHECK(g[0] == 3 && g[1] == 4);
    CHECK_NEAR(kiln_clip_global_norm(g, 2, 5), 5, 1e-6); /* exactly at the threshold */
    CHECK(g[0] == 3 && g[1] == 4);
    g[1] = NAN;
    CHECK(isnan(kiln_clip_global_norm(g, 2, 1)));
    CHECK(g[0] == 3);
    g[1] = INFINITY;
    CHECK(isinf(kiln_clip_global_norm(g, 2, 1)));
    CHECK(g[0] == 3);

    /* Through the optimizer: SGD lr 1 with clip 1 moves p by the clipped gradient and writes it
     * back; clip 10 leaves g as it was. Both report the norm 5. */
    kiln_optim *o = kiln_optim_new(&(kiln_optim_config){KILN_OPT_SGD, .clip_norm = 1}, 2);
    float p[2] = {1, 1};
    g[0] = 3, g[1] = 4;
    CHECK_OK(kiln_optim_step(o, p, g, 1));
    CHECK_NEAR(kiln_optim_last_grad_norm(o), 5, 1e-6);
    CHECK_NEAR(g[0], 0.6, 1e-7);
    CHECK_NEAR(p[0], 0.4, 1e-7);
    CHECK_NEAR(p[1], 0.2, 1e-7);
    kiln_optim_free(o);
    o = kiln_optim_new(&(kiln_optim_config){KILN_OPT_SGD, .clip_norm = 10}, 2);
    p[0] = p[1] = 1;
    g[0] = 3, g[1] = 4;
    CHECK_OK(kiln_optim_step(o, p, g, 1));
    CHECK_NEAR(kiln_optim_last_grad_norm(o), 5, 1e-6);
    CHECK(g[0] == 3 && g[1] == 4);
    CHECK_NEAR(p[0], -2, 1e-7);
    CHECK_NEAR(p[1], -3, 1e-7);
    kiln_optim_free(o);

    /* A big buffer: the parallel reduction and the scaling agree with a double loop. */
    size_t n = 100003;
    float *big = malloc(n * sizeof *big);
    kiln_test_fill(big, n, -1, 1, 7);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)big[i] * big[i];
    float first = big[0];
    CHECK_NEAR(kiln_clip_global_norm(big, n, 2), sqrt(ss), 1e-6 * sqrt(ss));
    CHECK_NEAR(big[0], first * 2 / sqrt(ss), 1e-7);
    CHECK_NEAR(kiln_clip_global_norm(big, n, 0), 2, 1e-5);
    free(big);
}

static void test_nonfinite_gradient(void) {
    kiln_optim_config cfgs[] = {{KILN_OPT_SGD, .momentum = 0.9f},
                                {KILN_OPT_ADAM},
                                {KILN_OPT_ADAMW, .weight_decay = 0.1f, .clip_norm = 1},
                                {KILN_OPT_RMSPROP, .momentum = 0.5f},
                                {KILN_OPT_SGD}};
    size_t n = 1001;
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g), *p0 = malloc(n * sizeof *p);
    float *g0 = malloc(n * sizeof *g), *s0 = malloc(2 * n * sizeof *s0);
    for (size_t k = 0; k < sizeof cfgs / sizeof *cfgs; k++)
        for (int bad = 0; bad < 2; bad++) {
            kiln_optim *o = kiln_optim_new(&cfgs[k], n);
            CHECK(o != NULL);
            if (!o) continue;
            kiln_test_fill(p, n, -1, 1, 1);
            kiln_test_fill(g, n, -1, 1, 2);
            CHECK_OK(kiln_optim_step(o, p, g, 0.1f)); /* slots non-zero from here */
            kiln_test_fill(g, n, -1, 1, 3);
            g[n - 1] = bad ? INFINITY : NAN;
            memcpy(p0, p, n * sizeof *p);
            memcpy(g0, g, n * sizeof *g);
            int ns = kiln_optim_slot_count(o);
            for (int i = 0; i < ns; i++) memcpy(s0 + i * n, kiln_optim_slot(o, i), n * sizeof *s0);
            kiln_status s = kiln_optim_step(o, p, g, 0.1f);
            CHECK_MSG(s == KILN_ERR_NUMERIC, "%s: got %s", kiln_optim_kind_name(cfgs[k].kind),
                      kiln_status_name(s));
            CHECK_ERR_HAS("gradient norm is");
            CHECK_ERR_HAS(kiln_optim_kind_name(cfgs[k].kind));
            CHECK(memcmp(p, p0, n * sizeof *p) == 0);
            CHECK(memcmp(g, g0, n * sizeof *g) == 0);
            for (int i = 0; i < ns; i++)
                CHECK(memcmp(s0 + i * n, kiln_optim_slot(o, i), n * sizeof *s0) == 0);
            CHECK(kiln_optim_iterations(o) == 1);
            CHECK(!isfinite(kiln_optim_last_grad_norm(o)));
            /* and it recovers on the next finite gradient */
            g[n - 1] = 0;
            CHECK_OK(kiln_optim_step(o, p, g, 0.1f));
            CHECK(kiln_optim_iterations(o) == 2);
            kiln_optim_free(o);
        }
    free(p), free(g), free(p0), free(g0), free(s0);
}

static void test_slots(void) {
    struct {
        kiln_optim_config c;
        int count;
        const char *names[2];
    } cases[] = {
        {{KILN_OPT_SGD}, 0, {NULL, NULL}},
        {{KILN_OPT_SGD, .momentum = 0.9f}, 1, {"momentum", NULL}},
        {{KILN_OPT_SGD, .momentum = 0.9f, .nesterov = 1}, 1, {"momentum", NULL}},
        {{KILN_OPT_ADAM}, 2, {"adam_m", "adam_v"}},
        {{KILN_OPT_ADAMW, .weight_decay = 0.01f}, 2, {"adam_m", "adam_v"}},
        {{KILN_OPT_RMSPROP}, 1, {"rms", NULL}},
        {{KILN_OPT_RMSPROP, .momentum = 0.9f}, 2, {"rms", "momentum"}},
    };
    size_t n = 37;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_optim *o = kiln_optim_new(&cases[k].c, n);
        CHECK(o != NULL);
        if (!o) continue;
        CHECK_MSG(kiln_optim_slot_count(o) == cases[k].count, "case %zu: %d slots", k,
                  kiln_optim_slot_count(o));
        for (int i = 0; i < cases[k].count && i < kiln_optim_slot_count(o); i++) {
            CHECK_MSG(strcmp(kiln_optim_slot_name(o, i), cases[k].names[i]) == 0, "case %zu: %s", k,
                      kiln_optim_slot_name(o, i));
            float *s = kiln_optim_slot(o, i);
            CHECK(s != NULL && (uintptr_t)s % 64 == 0);
            int zero = 1;
            for (size_t j = 0; j < n; j++) zero &= s[j] == 0;
            CHECK(zero);
        }
        CHECK(kiln_optim_slot(o, cases[k].count) == NULL);
        CHECK(kiln_optim_slot_name(o, cases[k].count) == NULL);
        CHECK(kiln_optim_slot(o, -1) == NULL);
        CHECK(kiln_optim_iterations(o) == 0);
        CHECK(kiln_optim_last_grad_norm(o) == 0);
        kiln_optim_free(o);
    }
    kiln_optim_free(NULL);
}

static void test_set_iterations_round_trip(void) {
    /* Optimizer a runs 3 steps. b is "restored" after a's second step: params, slots and the
     * iteration count copied; its third step must match a's bit for bit (Adam's bias correction
     * depends on t). */
    kiln_optim_config cfgs[] = {{KILN_OPT_ADAM},
                                {KILN_OPT_RMSPROP, .momentum = 0.9f},
                                {KILN_OPT_SGD, .momentum = 0.9f, .nesterov = 1}};
    size_t n = 1001;
    float *pa = malloc(n * sizeof *pa), *pb = malloc(n * sizeof *pb), *g = malloc(n * sizeof *g);
    for (size_t k = 0; k < sizeof cfgs / sizeof *cfgs; k++) {
        kiln_optim *a = kiln_optim_new(&cfgs[k], n), *b = kiln_optim_new(&cfgs[k], n);
        kiln_test_fill(pa, n, -1, 1, 11);
        for (uint64_t s = 0; s < 2; s++) {
            kiln_test_fill(g, n, -1, 1, 20 + s);
            CHECK_OK(kiln_optim_step(a, pa, g, 0.01f));
        }
        memcpy(pb, pa, n * sizeof *pb);
        for (int i = 0; i < kiln_optim_slot_count(a); i++)
            memcpy(kiln_optim_slot(b, i), kiln_optim_slot(a, i), n * sizeof(float));
        kiln_optim_set_iterations(b, kiln_optim_iterations(a));
        CHECK(kiln_optim_iterations(b) == 2);
        kiln_test_fill(g, n, -1, 1, 22);
        CHECK_OK(kiln_optim_step(a, pa, g, 0.01f));
        kiln_test_fill(g, n, -1, 1, 22);
        CHECK_OK(kiln_optim_step(b, pb, g, 0.01f));
        CHECK_MSG(memcmp(pa, pb, n * sizeof *pa) == 0, "%s", kiln_optim_kind_name(cfgs[k].kind));
        CHECK(kiln_optim_iterations(b) == 3);
        /* a restore that forgets the count differs (for Adam), so the test can fail */
        if (cfgs[k].kind == KILN_OPT_ADAM) {
            kiln_optim_set_iterations(b, 0);
            kiln_test_fill(g, n, -1, 1, 23);
            memcpy(pb, pa, n * sizeof *pb);
            for (int i = 0; i < kiln_optim_slot_count(a); i++)
                memcpy(kiln_optim_slot(b, i), kiln_optim_slot(a, i), n * sizeof(float));
            CHECK_OK(kiln_optim_step(a, pa, g, 0.01f));
            kiln_test_fill(g, n, -1, 1, 23);
            CHECK_OK(kiln_optim_step(b, pb, g, 0.01f));
            CHECK(memcmp(pa, pb, n * sizeof *pa) != 0);
        }
        kiln_error_clear();
        int64_t before = kiln_optim_iterations(b);
        kiln_optim_set_iterations(b, -5);
        CHECK(kiln_optim_iterations(b) == before);
        CHECK_ERR_HAS("iterations must be >= 0");
        kiln_optim_set_iterations(b, 1000000);
        CHECK(kiln_optim_iterations(b) == 1000000);
        kiln_optim_free(a);
        kiln_optim_free(b);
    }
    free(pa), free(pb), free(g);
}

static void test_defaults(void) {
    /* A field left 0 behaves as its documented default, bit for bit. */
    kiln_optim_config pairs[][2] = {
        {{KILN_OPT_ADAM}, {KILN_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .epsilon = 1e-7f}},
        {{KILN_OPT_ADAMW, .weight_decay = 0.01f},
         {KILN_OPT_ADAMW, .beta1 = 0.9f, .beta2 = 0.999f, .epsilon = 1e-7f, .weight_decay = 0.01f}},
        {{KILN_OPT_RMSPROP}, {KILN_OPT_RMSPROP, .rho = 0.9f, .epsilon = 1e-7f}},
    };
    size_t n = 64;
    for (size_t k = 0; k < sizeof pairs / sizeof *pairs; k++) {
        float p[2][64], g[64];
        for (int j = 0; j < 2; j++) {
            kiln_optim *o = kiln_optim_new(&pairs[k][j], n);
            kiln_test_fill(p[j], n, -1, 1, 5);
            for (uint64_t s = 0; s < 3; s++) {
                kiln_test_fill(g, n, -1, 1, 30 + s);
                CHECK_OK(kiln_optim_step(o, p[j], g, 0.01f));
            }
            kiln_optim_free(o);
        }
        CHECK_MSG(memcmp(p[0], p[1], sizeof p[0]) == 0, "%s",
                  kiln_optim_kind_name(pairs[k][0].kind));
    }
}

static void test_bad_configs(void) {
    struct {
        kiln_optim_config c;
        size_t n;
        const char *msg;
    } cases[] = {
        {{(kiln_optim_kind)7}, 4, "unknown optimizer kind 7"},
        {{KILN_OPT_COUNT}, 4, "unknown optimizer kind"},
        {{KILN_OPT_ADAM}, 0, "nothing to train"},
        {{KILN_OPT_ADAM, .beta1 = 1}, 4, "adam: beta1 must be in [0, 1), got 1"},
        {{KILN_OPT_ADAMW, .beta2 = -0.5f}, 4, "adamw: beta2 must be in [0, 1)"},
        {{KILN_OPT_ADAM, .beta1 = NAN}, 4, "beta1 must be in [0, 1), got nan"},
        {{KILN_OPT_ADAM, .epsilon = -1e-8f}, 4, "epsilon must be finite and >= 0"},
        {{KILN_OPT_SGD, .momentum = -0.9f}, 4, "sgd: momentum must be in [0, 1)"},
        {{KILN_OPT_SGD, .momentum = 1}, 4, "momentum must be in [0, 1)"},
        {{KILN_OPT_SGD, .nesterov = 1}, 4, "nesterov needs momentum > 0"},
        {{KILN_OPT_SGD, .weight_decay = -0.1f}, 4, "weight_decay must be finite and >= 0"},
        {{KILN_OPT_ADAMW, .weight_decay = INFINITY}, 4, "weight_decay must be finite"},
        {{KILN_OPT_RMSPROP, .clip_norm = -1}, 4, "clip_norm must be finite and >= 0"},
        {{KILN_OPT_RMSPROP, .rho = 1.5f}, 4, "rmsprop: rho must be in [0, 1)"},
        {{KILN_OPT_RMSPROP, .momentum = 2}, 4, "rmsprop: momentum must be in [0, 1)"},
        {{KILN_OPT_ADAM, .momentum = 0.9f}, 4, "adam does not use momentum"},
        {{KILN_OPT_ADAMW, .nesterov = 1}, 4, "adamw does not use nesterov"},
        {{KILN_OPT_SGD, .beta1 = 0.9f}, 4, "sgd does not use beta1"},
        {{KILN_OPT_SGD, .epsilon = 1e-8f}, 4, "sgd does not use epsilon"},
        {{KILN_OPT_ADAM, .rho = 0.9f}, 4, "adam does not use rho"},
        {{KILN_OPT_RMSPROP, .beta2 = 0.99f}, 4, "rmsprop does not use beta2"},
        {{KILN_OPT_RMSPROP, .nesterov = 1, .momentum = 0.9f}, 4, "rmsprop does not use nesterov"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_error_clear();
        kiln_optim *o = kiln_optim_new(&cases[k].c, cases[k].n);
        CHECK_MSG(o == NULL, "case %zu accepted", k);
        kiln_optim_free(o);
        CHECK_ERR_HAS(cases[k].msg);
    }
    CHECK(kiln_optim_new(NULL, 4) == NULL);
    CHECK_ERR_HAS("config is NULL");

    /* the boundaries that are allowed */
    kiln_optim *o =
        kiln_optim_new(&(kiln_optim_config){KILN_OPT_ADAM, .beta1 = 1e-30f, .beta2 = 0.9999f}, 1);
    CHECK_MSG(o != NULL, "%s", kiln_last_error());
    kiln_optim_free(o);

    /* bad step arguments leave params untouched */
    o = kiln_optim_new(&(kiln_optim_config){KILN_OPT_SGD}, 2);
    float p[2] = {1, 2}, g[2] = {1, 1};
    CHECK(kiln_optim_step(o, p, g, -0.1f) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("sgd: learning rate must be finite and >= 0, got -0.1");
    CHECK(kiln_optim_step(o, p, g, NAN) == KILN_ERR_INVALID);
    CHECK(kiln_optim_step(o, p, g, INFINITY) == KILN_ERR_INVALID);
    CHECK(kiln_optim_step(o, NULL, g, 0.1f) == KILN_ERR_INVALID);
    CHECK(kiln_optim_step(o, p, NULL, 0.1f) == KILN_ERR_INVALID);
    CHECK(kiln_optim_step(NULL, p, g, 0.1f) == KILN_ERR_INVALID);
    CHECK(p[0] == 1 && p[1] == 2 && kiln_optim_iterations(o) == 0);
    CHECK_OK(kiln_optim_step(o, p, g, 0)); /* lr 0 (first warmup step): counts, moves nothing */
    CHECK(p[0] == 1 && p[1] == 2 && kiln_optim_iterations(o) == 1);
    kiln_optim_free(o);
}

static void test_kind_names(void) {
    for (int k = 0; k < KILN_OPT_COUNT; k++)
        CHECK(kiln_optim_kind_from_name(kiln_optim_kind_name((kiln_optim_kind)k)) ==
              (kiln_optim_kind)k);
    CHECK(strcmp(kiln_optim_kind_name(KILN_OPT_ADAMW), "adamw") == 0);
    CHECK(kiln_optim_kind_from_name("adagrad") == KILN_OPT_COUNT);
    CHECK(kiln_optim_kind_from_name(NULL) == KILN_OPT_COUNT);
    CHECK(strcmp(kiln_optim_kind_name(KILN_OPT_COUNT), "?") == 0);
}

/* ---- EMA ---- */

static void check_ema(size_t n, float decay, int updates) {
    float *init = malloc(n * sizeof *init), *p = malloc(n * sizeof *p);
    double *ref = malloc(n * sizeof *ref);
    kiln_test_fill(init, n, -1, 1, 40);
    for (size_t i = 0; i < n; i++) ref[i] = init[i];
    kiln_ema *e = kiln_ema_new(n, decay, init);
    CHECK_MSG(e != NULL, "%s", kiln_last_error());
    if (!e) return free(init), free(p), free(ref);
    CHECK(memcmp(kiln_ema_weights(e), init, n * sizeof *init) == 0);
    CHECK((uintptr_t)kiln_ema_weights(e) % 64 == 0);
    for (int t = 0; t < updates; t++) {
        kiln_test_fill(p, n, -1, 1, 41 + (uint64_t)t);
        kiln_ema_update(e, p);
        double d = fmin(decay, (1.0 + t) / (10.0 + t));
        for (size_t i = 0; i < n; i++) ref[i] = d * ref[i] + (1 - d) * p[i];
        CHECK(kiln_ema_updates(e) == t + 1);
        CHECK_MSG(close_d(kiln_ema_weights(e), ref, n, 1e-6, 1e-5, "ema"),
                  "n=%zu decay %g update %d", n, (double)decay, t);
    }
    kiln_ema_free(e);
    free(init), free(p), free(ref);
}

static void test_ema(void) {
    /* decay 0.5: (1 + t) / (10 + t) < 0.5 until t = 8, then the decay itself; 0.999: the warm-up
     * decay throughout; 0: the EMA is the last params. */
    size_t sizes[] = {5, 1001};
    for (int s = 0; s < 2; s++) {
        check_ema(sizes[s], 0.5f, 20);
        check_ema(sizes[s], 0.999f, 12);
        check_ema(sizes[s], 0, 2);
    }
    /* By hand: start at 0, params 1. t = 0: d = 1/10 -> 0.9; t = 1: d = 2/11 ->
     * 2/11 * 0.9 + 9/11 = 10.8/11 = 0.98181818; t = 2: d = 3/12 -> 0.25 * 0.98181818 + 0.75 =
     * 0.99545455. */
    float zero = 0, one = 1;
    kiln_ema *e = kiln_ema_new(1, 0.999f, &zero);
    kiln_ema_update(e, &one);
    CHECK_NEAR(kiln_ema_weights(e)[0], 0.9, 1e-7);
    kiln_ema_update(e, &one);
    CHECK_NEAR(kiln_ema_weights(e)[0], 0.98181818, 1e-7);
    kiln_ema_update(e, &one);
    CHECK_NEAR(kiln_ema_weights(e)[0], 0.99545455, 1e-7);
    /* restoring the count: at t = 1000, d = min(0.999, 1001/1010) = 0.99108911 (the warm-up is
     * still below 0.999): 0.99545455 d + (1 - d) * 0 = 0.98658416 */
    kiln_ema_set_updates(e, 1000);
    CHECK(kiln_ema_updates(e) == 1000);
    kiln_ema_update(e, &zero);
    CHECK_NEAR(kiln_ema_weights(e)[0], 0.99545455 * (1001.0 / 1010.0), 1e-6);
    kiln_ema_set_updates(e, 100000);
    float w = kiln_ema_weights(e)[0];
    kiln_ema_update(e, &zero); /* t = 1e5: the decay 0.999 itself */
    CHECK_NEAR(kiln_ema_weights(e)[0], w * 0.999, 1e-7);
    kiln_error_clear();
    kiln_ema_set_updates(e, -1);
    CHECK(kiln_ema_updates(e) == 100001);
    CHECK_ERR_HAS("updates must be >= 0");
    kiln_ema_free(e);
    kiln_ema_free(NULL);
}

static void test_ema_bad(void) {
    float x[2] = {0};
    CHECK(kiln_ema_new(0, 0.9f, x) == NULL);
    CHECK_ERR_HAS("n > 0");
    CHECK(kiln_ema_new(2, 0.9f, NULL) == NULL);
    CHECK_ERR_HAS("init NULL");
    CHECK(kiln_ema_new(2, 1.5f, x) == NULL);
    CHECK_ERR_HAS("decay must be in [0, 1], got 1.5");
    CHECK(kiln_ema_new(2, -0.1f, x) == NULL);
    CHECK(kiln_ema_new(2, NAN, x) == NULL);
    CHECK_ERR_HAS("got nan");
}

/* Adam's loop runs in a baseline and an AVX2 build of the same code (kiln/cpu.h): the CPU's own
 * level is detected, and both give the same bits (over odd sizes, so the vector tails run too,
 * with clipping and weight decay). */
static void test_adam_variants_agree(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    CHECK_MSG((kiln_cpu_level_get() >= KILN_CPU_AVX2) == avx2, "level %s, CPU avx2+fma %d",
              kiln_cpu_level_name(kiln_cpu_level_get()), avx2);
#endif
    const size_t sizes[] = {1, 7, 8, 9, 1000, 100003};
    for (int k = 0; k < 6; k++) {
        size_t n = sizes[k];
        float *p[2], *g = malloc(n * sizeof *g);
        for (int v = 0; v < 2; v++) {
            p[v] = malloc(n * sizeof *p[v]);
            kiln_cpu_cap(v ? KILN_CPU_AVX512 : KILN_CPU_BASELINE);
            kiln_optim_config c = {KILN_OPT_ADAMW, .weight_decay = 0.01f, .clip_norm = 0.5f};
            kiln_optim *o = kiln_optim_new(&c, n);
            for (size_t i = 0; i < n; i++) p[v][i] = 0.01f * (float)((i * 37) % 101) - 0.5f;
            for (int step = 0; o && step < 5; step++) {
                for (size_t i = 0; i < n; i++)
                    g[i] = 0.003f * (float)(((i + 11 * (size_t)step) * 53) % 97) - 0.14f;
                CHECK_OK(kiln_optim_step(o, p[v], g, 1e-3f));
            }
            kiln_optim_free(o);
        }
        CHECK_MSG(memcmp(p[0], p[1], n * sizeof(float)) == 0, "n = %zu", n);
        free(p[0]), free(p[1]), free(g);
    }
    kiln_cpu_cap(KILN_CPU_AVX512);
}

int main(void) {
    RUN(test_adam_variants_agree);
    RUN(test_optimizers_vs_reference);
    RUN(test_sgd_momentum_by_hand);
    RUN(test_adam_first_step_by_hand);
    RUN(test_weight_decay_coupled_vs_decoupled);
    RUN(test_clipping);
    RUN(test_nonfinite_gradient);
    RUN(test_slots);
    RUN(test_set_iterations_round_trip);
    RUN(test_defaults);
    RUN(test_bad_configs);
    RUN(test_kind_names);
    RUN(test_ema);
    RUN(test_ema_bad);
    return kiln_test_summary();
}

/* test_schedule.c — every learning-rate schedule at chosen steps against values worked out by
 * hand (in the comments): warmup ramps, step boundaries, staircase vs smooth exponential decay,
 * cosine with warmup and alpha, PyTorch's one-cycle start / peak / end and mid-phase values;
 * then the names and the configurations that must be rejected with a message.
 */
#include <string.h>

#include "check.h"

#define LR(s, base, step) ((double)kiln_schedule_lr(&(s), (base), (step)))
/* float results of values around 1: a few ulp */
#define TOL 1e-6

static void test_constant(void) {
    kiln_schedule s = {KILN_SCHED_CONSTANT};
    CHECK_OK(kiln_schedule_validate(&s));
    CHECK_NEAR(LR(s, 0.1f, 0), 0.1, 1e-8);
    CHECK_NEAR(LR(s, 0.1f, 123456789), 0.1, 1e-8);
    CHECK_NEAR(LR(s, 0.1f, -4), 0.1, 1e-8);
    /* warmup 10: 0.1 * step / 10 up to step 10 */
    s.warmup_steps = 10;
    CHECK(LR(s, 0.1f, 0) == 0);
    CHECK(LR(s, 0.1f, -3) == 0); /* negative steps count as 0 */
    CHECK_NEAR(LR(s, 0.1f, 1), 0.01, 1e-8);
    CHECK_NEAR(LR(s, 0.1f, 5), 0.05, 1e-8);
    CHECK_NEAR(LR(s, 0.1f, 9), 0.09, 1e-8);
    CHECK_NEAR(LR(s, 0.1f, 10), 0.1, 1e-8);
    CHECK_NEAR(LR(s, 0.1f, 11), 0.1, 1e-8);
}

static void test_step(void) {
    /* base 1, gamma 0.5 every 10 steps: 1 for 0..9, 0.5 for 10..19, 0.25 from 20, 0.125 from 30 */
    kiln_schedule s = {KILN_SCHED_STEP, .step_size = 10, .gamma = 0.5f};
    CHECK_OK(kiln_schedule_validate(&s));
    CHECK_NEAR(LR(s, 1, 0), 1, TOL);
    CHECK_NEAR(LR(s, 1, 9), 1, TOL);
    CHECK_NEAR(LR(s, 1, 10), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 19), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 20), 0.25, TOL);
    CHECK_NEAR(LR(s, 1, 35), 0.125, TOL);
    /* gamma left 0 means 0.1: 2 -> 0.2 at 10 -> 0.02 at 20 */
    s.gamma = 0;
    CHECK_NEAR(LR(s, 2, 9), 2, TOL);
    CHECK_NEAR(LR(s, 2, 10), 0.2, 1e-7);
    CHECK_NEAR(LR(s, 2, 25), 0.02, 1e-8);
    /* warmup 4, step_size 3, gamma 0.5: the value at step 4 is 0.5 (one boundary passed), so the
     * ramp is 0.5 * step / 4: 0 at 0, 0.25 at 2; then 0.5 at 4 and 5, 0.25 at 6 */
    s = (kiln_schedule){KILN_SCHED_STEP, .warmup_steps = 4, .step_size = 3, .gamma = 0.5f};
    CHECK(LR(s, 1, 0) == 0);
    CHECK_NEAR(LR(s, 1, 2), 0.25, TOL);
    CHECK_NEAR(LR(s, 1, 3), 0.375, TOL);
    CHECK_NEAR(LR(s, 1, 4), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 5), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 6), 0.25, TOL);
}

static void test_exponential(void) {
    /* base 1, rate 0.5 per 10 steps. Smooth: 0.5^(step/10): step 5 -> sqrt(0.5) = 0.70710678,
     * 10 -> 0.5, 15 -> 0.5^1.5 = 0.35355339, 20 -> 0.25. Staircase: 0.5^floor(step/10):
     * 1 at 5 and 9, 0.5 at 10 and 15, 0.25 at 20. */
    kiln_schedule s = {KILN_SCHED_EXPONENTIAL, .decay_steps = 10, .decay_rate = 0.5f};
    CHECK_OK(kiln_schedule_validate(&s));
    CHECK_NEAR(LR(s, 1, 0), 1, TOL);
    CHECK_NEAR(LR(s, 1, 5), 0.70710678, TOL);
    CHECK_NEAR(LR(s, 1, 10), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 15), 0.35355339, TOL);
    CHECK_NEAR(LR(s, 1, 20), 0.25, TOL);
    s.staircase = 1;
    CHECK_NEAR(LR(s, 1, 5), 1, TOL);
    CHECK_NEAR(LR(s, 1, 9), 1, TOL);
    CHECK_NEAR(LR(s, 1, 10), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 15), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 20), 0.25, TOL);
    /* smooth with warmup 10: the ramp reaches the value at step 10 (0.5): 0.25 at 5 */
    s = (kiln_schedule){KILN_SCHED_EXPONENTIAL, .warmup_steps = 10, .decay_steps = 10,
                        .decay_rate = 0.5f};
    CHECK(LR(s, 1, 0) == 0);
    CHECK_NEAR(LR(s, 1, 5), 0.25, TOL);
    CHECK_NEAR(LR(s, 1, 10), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 15), 0.35355339, TOL);
}

static void test_cosine(void) {
    /* base 1, 100 steps, alpha 0: 1 at 0, (1 + cos(pi/4))/2 = 0.85355339 at 25, 0.5 at 50,
     * 0 at 100 and after (clamped). */
    kiln_schedule s = {KILN_SCHED_COSINE, .total_steps = 100};
    CHECK_OK(kiln_schedule_validate(&s));
    CHECK_NEAR(LR(s, 1, 0), 1, TOL);
    CHECK_NEAR(LR(s, 1, 25), 0.85355339, TOL);
    CHECK_NEAR(LR(s, 1, 50), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 100), 0, TOL);
    CHECK_NEAR(LR(s, 1, 1000), 0, TOL);
    /* alpha 0.1, base 2: the end is alpha * base = 0.2; the middle 2 (0.1 + 0.9 / 2) = 1.1 */
    s.alpha = 0.1f;
    CHECK_NEAR(LR(s, 2, 0), 2, 2 * TOL);
    CHECK_NEAR(LR(s, 2, 50), 1.1, 2 * TOL);
    CHECK_NEAR(LR(s, 2, 100), 0.2, TOL);
    CHECK_NEAR(LR(s, 2, 5000), 0.2, TOL);
    /* warmup 10 of 110: ramp 0 -> 1 over 0..10 (0.5 at 5), then the decay over the 100 steps
     * left: t = (60 - 10) / 100 = 0.5 -> 0.55 with alpha 0.1; t = 1 at 110 -> alpha */
    s = (kiln_schedule){KILN_SCHED_COSINE, .warmup_steps = 10, .total_steps = 110, .alpha = 0.1f};
    CHECK(LR(s, 1, 0) == 0);
    CHECK_NEAR(LR(s, 1, 5), 0.5, TOL);
    CHECK_NEAR(LR(s, 1, 10), 1, TOL);
    CHECK_NEAR(LR(s, 1, 35), 0.1 + 0.9 * 0.85355339, TOL);
    CHECK_NEAR(LR(s, 1, 60), 0.55, TOL);
    CHECK_NEAR(LR(s, 1, 110), 0.1, TOL);
    CHECK_NEAR(LR(s, 1, 1000), 0.1, TOL);
}

static void test_one_cycle(void) {
    /* PyTorch OneCycleLR, max_lr 1, total 100, defaults pct 0.3, div 25, final_div 1e4:
     * start 1/25 = 0.04, peak 1 at step 0.3 * 100 - 1 = 29, end 0.04 / 1e4 = 4e-6 at step 99
     * (and held after). Step 10: 1 + (0.04 - 1) / 2 (cos(pi 10/29) + 1)
     *   = 1 - 0.48 * 1.46841 = 0.29516393. */
    kiln_schedule s = {KILN_SCHED_ONE_CYCLE, .total_steps = 100};
    CHECK_OK(kiln_schedule_validate(&s));
    CHECK_NEAR(LR(s, 1, 0), 0.04, 1e-7);
    CHECK_NEAR(LR(s, 1, 10), 0.29516393, TOL);
    CHECK_NEAR(LR(s, 1, 29), 1, TOL);
    CHECK(LR(s, 1, 28) < LR(s, 1, 29) && LR(s, 1, 30) < LR(s, 1, 29));
    CHECK_NEAR(LR(s, 1, 99), 4e-6, 1e-12);
    CHECK_NEAR(LR(s, 1, 100), 4e-6, 1e-12);
    CHECK_NEAR(LR(s, 1, 100000), 4e-6, 1e-12);
    CHECK_NEAR(LR(s, 1, -1), 0.04, 1e-7);
    /* pct 0.5 of 42 steps, max 2: the ramp ends at 20, so step 10 is its middle:
     * (start + max) / 2 = (0.08 + 2) / 2 = 1.04 */
    s = (kiln_schedule){KILN_SCHED_ONE_CYCLE, .total_steps = 42, .pct_start = 0.5f};
    CHECK_NEAR(LR(s, 2, 0), 0.08, 1e-7);
    CHECK_NEAR(LR(s, 2, 10), 1.04, 2 * TOL);
    CHECK_NEAR(LR(s, 2, 20), 2, 2 * TOL);
    CHECK_NEAR(LR(s, 2, 41), 8e-6, 1e-12);
    /* pct 0.5 of 44 steps: up to 21, down over 22 steps to 43, so 32 is the middle of the way
     * down: (max + end) / 2; with div 10 and final_div 100: start 0.1, end 0.001, middle 0.5005 */
    s = (kiln_schedule){KILN_SCHED_ONE_CYCLE, .total_steps = 44, .pct_start = 0.5f,
                        .div_factor = 10, .final_div_factor = 100};
    CHECK_NEAR(LR(s, 1, 0), 0.1, 1e-7);
    CHECK_NEAR(LR(s, 1, 21), 1, TOL);
    CHECK_NEAR(LR(s, 1, 32), 0.5005, TOL);
    CHECK_NEAR(LR(s, 1, 43), 0.001, 1e-9);
    /* monotone up, then down */
    s = (kiln_schedule){KILN_SCHED_ONE_CYCLE, .total_steps = 1000};
    int ok = 1;
    for (int64_t i = 1; i < 1000; i++) {
        double a = LR(s, 0.5f, i - 1), b = LR(s, 0.5f, i);
        ok &= i <= 299 ? b >= a : b <= a;
    }
    CHECK(ok);
}

static void test_names(void) {
    for (int k = 0; k < KILN_SCHED_COUNT; k++)
        CHECK(kiln_schedule_kind_from_name(kiln_schedule_kind_name((kiln_schedule_kind)k)) ==
              (kiln_schedule_kind)k);
    CHECK(strcmp(kiln_schedule_kind_name(KILN_SCHED_ONE_CYCLE), "one_cycle") == 0);
    CHECK(strcmp(kiln_schedule_kind_name(KILN_SCHED_EXPONENTIAL), "exponential") == 0);
    CHECK(kiln_schedule_kind_from_name("polynomial") == KILN_SCHED_COUNT);
    CHECK(kiln_schedule_kind_from_name(NULL) == KILN_SCHED_COUNT);
    CHECK(strcmp(kiln_schedule_kind_name(KILN_SCHED_COUNT), "?") == 0);
}

static void test_bad_schedules(void) {
    struct {
        kiln_schedule s;
        const char *msg;
    } cases[] = {
        {{(kiln_schedule_kind)9}, "unknown kind 9"},
        {{KILN_SCHED_CONSTANT, .warmup_steps = -1},
         "constant: warmup_steps must be finite and >= 0, got -1"},
        {{KILN_SCHED_CONSTANT, .gamma = 0.5f}, "constant does not use gamma"},
        {{KILN_SCHED_STEP}, "step: step_size must be > 0, got 0"},
        {{KILN_SCHED_STEP, .step_size = 5, .gamma = -0.5f}, "step: gamma must be finite and >= 0"},
        {{KILN_SCHED_STEP, .step_size = 5, .total_steps = 100}, "step does not use total_steps"},
        {{KILN_SCHED_EXPONENTIAL, .decay_rate = 0.5f}, "exponential: decay_steps must be > 0"},
        {{KILN_SCHED_EXPONENTIAL, .decay_steps = 10}, "exponential: decay_rate must be > 0, got 0"},
        {{KILN_SCHED_EXPONENTIAL, .decay_steps = 10, .decay_rate = NAN},
         "decay_rate must be finite"},
        {{KILN_SCHED_EXPONENTIAL, .decay_steps = 10, .decay_rate = 0.5f, .alpha = 0.1f},
         "exponential does not use alpha"},
        {{KILN_SCHED_COSINE}, "cosine: total_steps (0) must exceed warmup_steps (0)"},
        {{KILN_SCHED_COSINE, .warmup_steps = 200, .total_steps = 100},
         "total_steps (100) must exceed warmup_steps (200)"},
        {{KILN_SCHED_COSINE, .total_steps = 100, .alpha = 1.5f},
         "alpha must be in [0, 1], got 1.5"},
        {{KILN_SCHED_COSINE, .total_steps = 100, .staircase = 1}, "cosine does not use staircase"},
        {{KILN_SCHED_ONE_CYCLE, .total_steps = 100, .warmup_steps = 10},
         "one_cycle does not use warmup_steps"},
        {{KILN_SCHED_ONE_CYCLE, .total_steps = 100, .pct_start = 1},
         "pct_start must be in (0, 1), got 1"},
        {{KILN_SCHED_ONE_CYCLE, .total_steps = 3},
         "pct_start * total_steps (0.3 * 3) must exceed 1"},
        {{KILN_SCHED_ONE_CYCLE, .total_steps = 100, .div_factor = -25},
         "div_factor must be finite and >= 0"},
        {{KILN_SCHED_ONE_CYCLE, .total_steps = 100, .final_div_factor = INFINITY},
         "final_div_factor must be finite"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_error_clear();
        CHECK_MSG(kiln_schedule_validate(&cases[k].s) == KILN_ERR_INVALID, "case %zu accepted", k);
        CHECK_ERR_HAS(cases[k].msg);
        /* the lr of an invalid schedule is NaN, with the same message */
        kiln_error_clear();
        CHECK(isnan(kiln_schedule_lr(&cases[k].s, 0.1f, 5)));
        CHECK_ERR_HAS(cases[k].msg);
    }
    CHECK(kiln_schedule_validate(NULL) == KILN_ERR_INVALID);
    CHECK(isnan(kiln_schedule_lr(NULL, 0.1f, 0)));
}

int main(void) {
    RUN(test_constant);
    RUN(test_step);
    RUN(test_exponential);
    RUN(test_cosine);
    RUN(test_one_cycle);
    RUN(test_names);
    RUN(test_bad_schedules);
    return kiln_test_summary();
}

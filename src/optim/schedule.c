/* schedule.c — learning-rate schedules: lr(step) as a pure function (see kiln/optim.h).
 *
 * No state: a resumed run asks for lr(step) at its restored step and gets what it would have
 * had. Everything is computed in double and rounded once. Validation is table-driven: each field
 * lists the kinds that read it, so a field set for the wrong kind is caught in one place.
 * Warmup overlays every kind but one-cycle: for step < warmup the value at warmup is scaled by
 * step / warmup. One-cycle follows PyTorch's OneCycleLR (anneal_strategy='cos',
 * three_phase=False) phase arithmetic exactly, with steps past total_steps - 1 held at the end.
 */
#include <math.h>
#include <string.h>

#include "kiln/optim.h"

#define PI 3.14159265358979323846

static const char *kind_names[KILN_SCHED_COUNT] = {"constant", "step", "exponential", "cosine",
                                                   "one_cycle"};

const char *kiln_schedule_kind_name(kiln_schedule_kind k) {
    return (unsigned)k < KILN_SCHED_COUNT ? kind_names[k] : "?";
}

kiln_schedule_kind kiln_schedule_kind_from_name(const char *name) {
    if (!name) return KILN_SCHED_COUNT;
    for (int i = 0; i < KILN_SCHED_COUNT; i++)
        if (strcmp(name, kind_names[i]) == 0) return (kiln_schedule_kind)i;
    return KILN_SCHED_COUNT;
}

#define K(kind) (1u << (kind))
#define ALL_BUT_ONE_CYCLE                                                                          \
    (K(KILN_SCHED_CONSTANT) | K(KILN_SCHED_STEP) | K(KILN_SCHED_EXPONENTIAL) | K(KILN_SCHED_COSINE))

kiln_status kiln_schedule_validate(const kiln_schedule *s) {
    if (!s) return kiln_error(KILN_ERR_INVALID, "schedule: NULL");
    if ((unsigned)s->kind >= KILN_SCHED_COUNT)
        return kiln_error(KILN_ERR_INVALID,
                          "schedule: unknown kind %d (constant, step, "
                          "exponential, cosine, one_cycle)",
                          (int)s->kind);
    const char *k = kind_names[s->kind];
    const struct {
        const char *name;
        double value;
        unsigned kinds; /* the kinds that read it */
    } fields[] = {
        {"warmup_steps", (double)s->warmup_steps, ALL_BUT_ONE_CYCLE},
        {"step_size", (double)s->step_size, K(KILN_SCHED_STEP)},
        {"gamma", s->gamma, K(KILN_SCHED_STEP)},
        {"decay_steps", (double)s->decay_steps, K(KILN_SCHED_EXPONENTIAL)},
        {"decay_rate", s->decay_rate, K(KILN_SCHED_EXPONENTIAL)},
        {"staircase", s->staircase, K(KILN_SCHED_EXPONENTIAL)},
        {"total_steps", (double)s->total_steps, K(KILN_SCHED_COSINE) | K(KILN_SCHED_ONE_CYCLE)},
        {"alpha", s->alpha, K(KILN_SCHED_COSINE)},
        {"pct_start", s->pct_start, K(KILN_SCHED_ONE_CYCLE)},
        {"div_factor", s->div_factor, K(KILN_SCHED_ONE_CYCLE)},
        {"final_div_factor", s->final_div_factor, K(KILN_SCHED_ONE_CYCLE)},
    };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        double v = fields[i].value;
        if (!(fields[i].kinds & K(s->kind))) {
            if (v != 0)
                return kiln_error(KILN_ERR_INVALID,
                                  "schedule: %s does not use %s (got %g); leave it 0", k,
                                  fields[i].name, v);
        } else if (!(v >= 0) || isinf(v)) {
            return kiln_error(KILN_ERR_INVALID, "schedule: %s: %s must be finite and >= 0, got %g",
                              k, fields[i].name, v);
        }
    }
    switch (s->kind) {
    case KILN_SCHED_STEP:
        if (s->step_size <= 0)
            return kiln_error(KILN_ERR_INVALID, "schedule: step: step_size must be > 0, got %lld",
                              (long long)s->step_size);
        break;
    case KILN_SCHED_EXPONENTIAL:
        if (s->decay_steps <= 0)
            return kiln_error(KILN_ERR_INVALID,
                              "schedule: exponential: decay_steps must be > 0, "
                              "got %lld",
                              (long long)s->decay_steps);
        if (!(s->decay_rate > 0))
            return kiln_error(KILN_ERR_INVALID,
                              "schedule: exponential: decay_rate must be > 0, "
                              "got %g",
                              (double)s->decay_rate);
        break;
    case KILN_SCHED_COSINE:
        if (s->total_steps <= s->warmup_steps)
            return kiln_error(KILN_ERR_INVALID,
                              "schedule: cosine: total_steps (%lld) must exceed "
                              "warmup_steps (%lld)",
                              (long long)s->total_steps, (long long)s->warmup_steps);
        if (s->alpha > 1)
            return kiln_error(KILN_ERR_INVALID, "schedule: cosine: alpha must be in [0, 1], got %g",
                              (double)s->alpha);
        break;
    case KILN_SCHED_ONE_CYCLE: {
        double pct = s->pct_start ? s->pct_start : 0.3;
        if (!(pct < 1))
            return kiln_error(KILN_ERR_INVALID,
                              "schedule: one_cycle: pct_start must be in (0, 1), "
                              "got %g",
                              pct);
        if (!(pct * (double)s->total_steps > 1))
            return kiln_error(KILN_ERR_INVALID,
                              "schedule: one_cycle: pct_start * total_steps "
                              "(%g * %lld) must exceed 1, so that the ramp up has a step",
                              pct, (long long)s->total_steps);
        break;
    }
    default:
        break;
    }
    return KILN_OK;
}

/* PyTorch's _annealing_cos: from start (pct 0) to end (pct 1). */
static double anneal_cos(double start, double end, double pct) {
    return end + (start - end) / 2 * (cos(PI * pct) + 1);
}

/* The schedule's value at step >= 0, ignoring warmup. */
static double value_at(const kiln_schedule *s, double base, int64_t step) {
    switch (s->kind) {
    case KILN_SCHED_STEP:
        return base * pow(s->gamma ? s->gamma : 0.1, (double)(step / s->step_size));
    case KILN_SCHED_EXPONENTIAL: {
        double p =
            s->staircase ? (double)(step / s->decay_steps) : (double)step / (double)s->decay_steps;
        return base * pow(s->decay_rate, p);
    }
    case KILN_SCHED_COSINE: {
        double t = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        return base * (s->alpha + (1 - s->alpha) * (1 + cos(PI * t)) / 2);
    }
    case KILN_SCHED_ONE_CYCLE: {
        double pct = s->pct_start ? s->pct_start : 0.3;
        double div = s->div_factor ? s->div_factor : 25;
        double final_div = s->final_div_factor ? s->final_div_factor : 1e4;
        double initial = base / div, min = initial / final_div;
        double up_end = pct * (double)s->total_steps - 1, down_end = (double)s->total_steps - 1;
        double x = (double)(step < s->total_steps - 1 ? step : s->total_steps - 1);
        if (x <= up_end) return anneal_cos(initial, base, x / up_end);
        return anneal_cos(base, min, (x - up_end) / (down_end - up_end));
    }
    default: /* constant */
        return base;
    }
}

float kiln_schedule_lr(const kiln_schedule *s, float base, int64_t step) {
    if (kiln_schedule_validate(s) != KILN_OK) return NAN;
    if (step < 0) step = 0;
    if (s->kind != KILN_SCHED_ONE_CYCLE && step < s->warmup_steps)
        return (float)(value_at(s, base, s->warmup_steps) * (double)step / (double)s->warmup_steps);
    return (float)value_at(s, base, step);
}

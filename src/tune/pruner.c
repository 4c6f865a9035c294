/* pruner.c — deciding from intermediate values whether a running trial stops (ASHA, median),
 * and the parameter importances `kiln tune show` prints.
 *
 * A curve is what a trial reported so far, in order: (resource, value) with the resource its
 * epoch (or step). Both pruners only read curves, so the caller can rebuild them from the
 * trials' metrics.jsonl at any time (a resumed study does).
 *
 * ASHA follows Optuna's SuccessiveHalvingPruner (min_early_stopping_rate 0, no bootstrap): the
 * value of a trial at rung k (resource min_resource * eta^k) is its first report at or past
 * that resource; a trial reaching a rung is promoted when its value there is at least as good
 * as the floor(n / eta)-th best of the n values the rung holds now (itself included; the best
 * one while n < eta), otherwise pruned. *rung (the caller's per-trial state) keeps the rungs
 * already passed, so a promotion is never taken back. Unlike Optuna (which does not know how
 * long a trial runs), no rung sits at or past the trial's full budget (max_resource, from
 * train.epochs): pruning a trial that has trained to the end saves nothing and would only throw
 * its complete result away (Hyperband and Ray Tune's ASHA likewise stop at max_t).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/tune.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The curve's first value at or past resource r (NaN with *has 0 when it never got there). */
static double at_rung(const kiln_tune_curve *c, double r, int *has) {
    for (int i = 0; i < c->n; i++)
        if (c->resource[i] >= r - 1e-9) {
            *has = 1;
            return c->value[i];
        }
    *has = 0;
    return NAN;
}

int kiln_tune_asha_prune(const kiln_tune_space *s, const kiln_tune_curve *curves, int n, int self,
                         int *rung) {
    const kiln_tune_curve *me = &curves[self];
    if (!me->n) return 0;
    double latest = me->resource[me->n - 1];
    double *vals = malloc((size_t)(n > 0 ? n : 1) * sizeof *vals);
    if (!vals) return 0;
    int prune = 0;
    for (;;) {
        double r = s->min_resource * pow(s->reduction, *rung);
        if (latest < r - 1e-9) break;
        if (s->max_resource > 0 && r >= s->max_resource - 1e-9) break; /* the end: complete */
        int has;
        double v = at_rung(me, r, &has);
        if (isnan(v)) {
            prune = 1;
            break;
        }
        int m = 0;
        for (int t = 0; t < n; t++) {
            double w = at_rung(&curves[t], r, &has);
            if (has && !isnan(w)) vals[m++] = s->maximize ? -w : w;
        }
        qsort(vals, (size_t)m, sizeof *vals, cmp_d);
        int idx = (int)floor(m / s->reduction) - 1;
        if (idx < 0) idx = 0;
        if ((s->maximize ? -v : v) > vals[idx]) {
            prune = 1;
            break;
        }
        (*rung)++;
    }
    free(vals);
    return prune;
}

int kiln_tune_median_prune(const kiln_tune_space *s, const kiln_tune_curve *curves,
                           const int *complete, int n, int self) {
    const kiln_tune_curve *me = &curves[self];
    if (!me->n) return 0;
    double r = me->resource[me->n - 1];
    if (r < s->median_warmup) return 0;
    if (s->max_resource > 0 && r >= s->max_resource - 1e-9) return 0;
    double sign = s->maximize ? -1 : 1, best = INFINITY;
    for (int i = 0; i < me->n; i++)
        if (!isnan(me->value[i])) best = fmin(best, sign * me->value[i]);
    double *vals = malloc((size_t)(n > 0 ? n : 1) * sizeof *vals);
    if (!vals) return 0;
    int m = 0, done = 0;
    for (int t = 0; t < n; t++) {
        if (!complete[t] || t == self) continue;
        done++;
        double v = NAN;
        for (int i = 0; i < curves[t].n && curves[t].resource[i] <= r + 1e-9; i++) v = curves[t].value[i];
        if (!isnan(v)) vals[m++] = sign * v;
    }
    int prune = 0;
    if (done >= s->median_startup && m > 0) {
        qsort(vals, (size_t)m, sizeof *vals, cmp_d);
        double med = m % 2 ? vals[m / 2] : 0.5 * (vals[m / 2 - 1] + vals[m / 2]);
        prune = isnan(best) || isinf(best) || best > med;
    }
    free(vals);
    return prune;
}

kiln_tune_outcome_kind kiln_tune_outcome(const char *run_status, int pruning) {
    int done = !strcmp(run_status, "finished"), pruned = !strcmp(run_status, "pruned");
    if (pruning && (done || pruned)) return KILN_TUNE_OUTCOME_PRUNED; /* the decision decides */
    if (done) return KILN_TUNE_OUTCOME_FINISHED;
    if (pruned) return KILN_TUNE_OUTCOME_PRUNED;
    return KILN_TUNE_OUTCOME_OTHER;
}

/* ---- importances ---- */

typedef struct {
    double v;
    int i;
} vi;
static int by_v(const void *a, const void *b) {
    double x = ((const vi *)a)->v, y = ((const vi *)b)->v;
    if (x != y) return x < y ? -1 : 1;
    return ((const vi *)a)->i - ((const vi *)b)->i;
}

void kiln_tune_importance(const kiln_tune_space *s, const double *const *x, const double *value,
                          int n, double *out) {
    double total = 0;
    vi *items = malloc((size_t)(n > 0 ? n : 1) * sizeof *items);
    int *group = malloc((size_t)(n > 0 ? n : 1) * sizeof *group);
    for (int p = 0; p < s->n_params; p++) {
        out[p] = 0;
        if (!items || !group) continue;
        int m = 0;
        for (int t = 0; t < n; t++)
            if (!isnan(x[t][p]) && isfinite(value[t])) items[m++] = (vi){x[t][p], t};
        if (m < 2) continue;
        qsort(items, (size_t)m, sizeof *items, by_v);
        int ng;
        if (s->params[p].kind == KILN_TUNE_CHOICE) {
            ng = s->params[p].n_choices;
            for (int k = 0; k < m; k++) group[k] = (int)items[k].v;
        } else {
            ng = 4; /* quartiles of rank; equal values share a group */
            for (int k = 0; k < m; k++)
                group[k] = k && items[k].v == items[k - 1].v ? group[k - 1] : k * 4 / m;
        }
        double mean = 0, between = 0, within = 0;
        for (int k = 0; k < m; k++) mean += value[items[k].i];
        mean /= m;
        for (int g = 0; g < ng; g++) {
            double sum = 0;
            int c = 0;
            for (int k = 0; k < m; k++)
                if (group[k] == g) sum += value[items[k].i], c++;
            if (c) between += c * (sum / c - mean) * (sum / c - mean);
        }
        for (int k = 0; k < m; k++) within += (value[items[k].i] - mean) * (value[items[k].i] - mean);
        out[p] = within > 0 ? between / within : 0;
        total += out[p];
    }
    for (int p = 0; p < s->n_params; p++) out[p] = total > 0 ? out[p] / total : 0;
    free(items), free(group);
}

/* sampler.c — the random sampler and TPE (the tree-structured Parzen estimator of Bergstra et
 * al. 2011 as hyperopt and Optuna compute it, with Optuna's multivariate kernels, EI weights and
 * a magic-clip exponent by default; docs/tune.md has the rules and the reasons).
 *
 * For trial `number`: while fewer than n_startup trials are finished (complete or pruned), or
 * with the random sampler, each active parameter is drawn uniformly (loguniform and int log: in
 * log space; int: over its grid; choice: over its options). Then:
 *   1. rank the finished trials: complete ones by objective (best first), then pruned ones by
 *      the resource they reached (furthest first) and their last value; the first
 *      n_good = min(ceil(gamma * n), 25) are "good", the rest "bad";
 *   2. Parzen estimators l (good) and g (bad): for numbers one truncated normal per
 *      observation (in log space for log scales; an int's range widened by half a step on each
 *      side) plus a prior N(mid, range), bandwidths from the distances to the sorted neighbours
 *      (the bounds at the ends), clipped to [range * max(0.01, (n + 2)^-clip_exponent), range];
 *      for choices one categorical kernel per observation (prior_weight / (n + 1) on every
 *      option, plus 1 on the observed one) plus the prior kernel; mixture weights: in l with EI
 *      weights max(1e-12, y* - y_i) (y* the best bad value) and prior_weight x their mean,
 *      otherwise 1 each (the older ones ramped down after 25) and prior_weight for the prior;
 *   3. multivariate: the parameters active in every trial (parent < 0) are drawn together:
 *      kernel i of an estimator is the product of the per-parameter kernels of observation i
 *      (only trials where all of them are set); n_ei candidates are drawn from l (a kernel, then
 *      each parameter from it) and the one maximizing log l(x) - log g(x) is kept;
 *   4. every other parameter (all of them with multivariate off), parents first, alone: n_ei
 *      candidates from its own l, the best log l(x) - log g(x); ints score by the mass of their
 *      grid cell.
 *
 * Randomness: a splitmix64 stream seeded by (seed, number, parameter), so a point depends only on
 * the seed, the trial number and the history, never on what the process sampled before.
 * Invariants: x values lie within [low, high] on the parameter's grid; choices are integers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/tune.h"

typedef struct {
    uint64_t s;
} rng;

static uint64_t next_u64(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(rng *r) { return (double)(next_u64(r) >> 11) * 0x1.0p-53; }
static double gauss(rng *r) {
    double u = unif(r), v = unif(r);
    return sqrt(-2 * log(u > 0 ? u : 1e-300)) * cos(2 * M_PI * v);
}
static rng rng_for(const kiln_tune_space *s, uint64_t number, int param) {
    rng r = {s->seed * 0x9e3779b97f4a7c15ull ^ (number + 1) * 0xd1b54a32d192ed03ull ^
             ((uint64_t)param + 1) * 0x8cb92ba72f3d8dd7ull};
    next_u64(&r);
    return r;
}

/* The parameter's range in the space the estimator works in, and its cell (q > 0: int grid). */
static void bounds(const kiln_tune_param *p, double *lo, double *hi, double *q) {
    *q = 0;
    if (p->kind == KILN_TUNE_INT && p->log) *lo = log(p->low - 0.5), *hi = log(p->high + 0.5);
    else if (p->kind == KILN_TUNE_INT) *q = p->step, *lo = p->low - 0.5 * p->step, *hi = p->high + 0.5 * p->step;
    else if (p->log) *lo = log(p->low), *hi = log(p->high);
    else *lo = p->low, *hi = p->high;
}
static double to_internal(const kiln_tune_param *p, double v) { return p->log ? log(v) : v; }
static double from_internal(const kiln_tune_param *p, double v) {
    if (p->kind == KILN_TUNE_INT) {
        double r = p->log ? round(exp(v)) : round((v - p->low) / p->step) * p->step + p->low;
        return fmin(fmax(r, p->low), p->high);
    }
    return p->log ? fmin(fmax(exp(v), p->low), p->high) : v;
}

static double random_value(const kiln_tune_param *p, rng *r) {
    if (p->kind == KILN_TUNE_CHOICE) return (double)(next_u64(r) % (uint64_t)p->n_choices);
    if (p->kind == KILN_TUNE_INT && !p->log) {
        uint64_t cells = (uint64_t)((p->high - p->low) / p->step) + 1;
        return p->low + p->step * (double)(next_u64(r) % cells);
    }
    double lo, hi, q;
    bounds(p, &lo, &hi, &q);
    return from_internal(p, lo + (hi - lo) * unif(r));
}

/* ---- Parzen estimators ---- */

typedef struct {
    int n;          /* kernels (observations + the prior) */
    double *w;      /* [n] mixture weights, summing to 1 */
    double *mu, *sd; /* numbers: [n] */
    double *logz;   /* numbers: [n] log of each kernel's mass within [lo, hi] */
    double *c;      /* [n] log w - log sd - log sqrt(2 pi) - logz (continuous), or log w */
    double *cat;    /* choices: [n][n_choices] */
    double lo, hi, q;
} parzen;

static double phi_cdf(double z) { return 0.5 * erfc(-z * M_SQRT1_2); }
/* log(Phi(b) - Phi(a)) for a < b, accurate in both tails */
static double log_mass(double a, double b) {
    if (a > 0) return log(phi_cdf(-a) - phi_cdf(-b));
    return log(phi_cdf(b) - phi_cdf(a));
}

static void mixture_weights(const kiln_tune_space *s, int n_obs, double *w) {
    for (int i = 0; i < n_obs; i++)
        w[i] = n_obs < 25 ? 1
               : i < n_obs - 25 ? 1.0 / n_obs + (1 - 1.0 / n_obs) * (n_obs - 25 > 1 ? (double)i / (n_obs - 26) : 0)
                                : 1;
    w[n_obs] = s->prior_weight;
    double sum = 0;
    for (int i = 0; i <= n_obs; i++) sum += w[i];
    for (int i = 0; i <= n_obs; i++) w[i] /= sum;
}

typedef struct {
    double v;
    int i;
} vi;
static int by_v(const void *a, const void *b) {
    double x = ((const vi *)a)->v, y = ((const vi *)b)->v;
    return x < y ? -1 : x > y;
}

/* obs: [n_obs] values (external) of the parameter, in trial order. ew: NULL (the weights of
 * mixture_weights), or the observations' EI weights (ei_weights): kernel i weighs ew[i], the
 * prior prior_weight x their mean. */
static kiln_status parzen_build(const kiln_tune_space *s, const kiln_tune_param *p, const double *obs,
                                int n_obs, const double *ew, parzen *e) {
    memset(e, 0, sizeof *e);
    int n = e->n = n_obs + 1;
    int nc = p->kind == KILN_TUNE_CHOICE ? p->n_choices : 0;
    e->w = malloc((size_t)n * sizeof *e->w);
    if (nc) e->cat = malloc((size_t)n * (size_t)nc * sizeof *e->cat);
    else {
        e->mu = malloc((size_t)n * sizeof(double)), e->sd = malloc((size_t)n * sizeof(double));
        e->logz = malloc((size_t)n * sizeof(double));
    }
    e->c = malloc((size_t)n * sizeof(double));
    vi *sorted = malloc((size_t)n * sizeof *sorted);
    if (!e->w || !e->c || (nc && !e->cat) || (!nc && (!e->mu || !e->sd || !e->logz)) || !sorted) {
        free(sorted);
        return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    }
    mixture_weights(s, n_obs, e->w);
    if (ew && n_obs) {
        double sum = 0, mean = 0;
        for (int i = 0; i < n_obs; i++) mean += ew[i] / n_obs;
        for (int i = 0; i < n_obs; i++) sum += e->w[i] = ew[i];
        sum += e->w[n_obs] = s->prior_weight * mean;
        for (int i = 0; i <= n_obs; i++) e->w[i] /= sum;
    }
    if (nc) {
        double base = s->prior_weight / n;
        for (int i = 0; i < n; i++) {
            double sum = 0;
            for (int c = 0; c < nc; c++) e->cat[i * nc + c] = base;
            if (i < n_obs) e->cat[i * nc + (int)obs[i]] += 1;
            for (int c = 0; c < nc; c++) sum += e->cat[i * nc + c];
            for (int c = 0; c < nc; c++) e->cat[i * nc + c] /= sum;
            e->c[i] = log(e->w[i]);
        }
        free(sorted);
        return KILN_OK;
    }
    bounds(p, &e->lo, &e->hi, &e->q);
    double lo = e->lo, hi = e->hi;
    for (int i = 0; i < n_obs; i++) e->mu[i] = to_internal(p, obs[i]);
    e->mu[n_obs] = 0.5 * (lo + hi);
    for (int i = 0; i < n; i++) sorted[i] = (vi){e->mu[i], i};
    qsort(sorted, (size_t)n, sizeof *sorted, by_v);
    for (int k = 0; k < n; k++) {
        double left = k ? sorted[k - 1].v : lo, right = k + 1 < n ? sorted[k + 1].v : hi;
        double sd = fmax(sorted[k].v - left, right - sorted[k].v);
        /* consider_endpoints off: the ends look only inwards (with 2 or more kernels) */
        if (n >= 2 && k == 0) sd = sorted[1].v - sorted[0].v;
        if (n >= 2 && k == n - 1) sd = sorted[n - 1].v - sorted[n - 2].v;
        e->sd[sorted[k].i] = sd;
    }
    /* magic clip: at least range / (n_obs + 2)^alpha and range / 100 (alpha 1: Optuna's) */
    double maxs = hi - lo, mins = (hi - lo) * fmax(0.01, pow(1.0 + n, -s->clip_exponent));
    for (int i = 0; i < n; i++) e->sd[i] = fmin(fmax(e->sd[i], mins), maxs);
    e->sd[n_obs] = hi - lo;
    for (int i = 0; i < n; i++) {
        e->logz[i] = log_mass((lo - e->mu[i]) / e->sd[i], (hi - e->mu[i]) / e->sd[i]);
        /* Optuna 3.1-3.4's truncated normal lacked the 1/sigma (optuna#5109): density: optuna31 */
        double lsd = s->optuna31 ? 0 : log(e->sd[i]);
        e->c[i] = log(e->w[i]) - (e->q > 0 ? e->logz[i] : lsd + 0.5 * log(2 * M_PI) + e->logz[i]);
    }
    free(sorted);
    return KILN_OK;
}

static void parzen_free(parzen *e) {
    free(e->w), free(e->mu), free(e->sd), free(e->logz), free(e->cat), free(e->c);
}

static int pick(const double *w, int n, rng *r) {
    double u = unif(r), c = 0;
    for (int i = 0; i < n - 1; i++)
        if (u < (c += w[i])) return i;
    return n - 1;
}

/* A draw of kernel k in internal space (choices: the index). */
static double kernel_sample(const parzen *e, int nc, int k, rng *r) {
    if (nc) return (double)pick(e->cat + k * nc, nc, r);
    for (int t = 0; t < 1000; t++) {
        double v = e->mu[k] + e->sd[k] * gauss(r);
        if (v >= e->lo && v <= e->hi) return v;
    }
    return fmin(fmax(e->mu[k], e->lo), e->hi);
}

/* A draw in internal space (choices: the index). */
static double parzen_sample(const parzen *e, int nc, rng *r) {
    return kernel_sample(e, nc, pick(e->w, e->n, r), r);
}

/* log density (or mass) of kernel i alone at v, its mixture weight left out. */
static double kernel_logpdf(const parzen *e, int nc, int i, double v) {
    if (nc) return log(e->cat[i * nc + (int)v]);
    if (e->q > 0) {
        double a = fmax(v - e->q / 2, e->lo), b = fmin(v + e->q / 2, e->hi);
        return log_mass((a - e->mu[i]) / e->sd[i], (b - e->mu[i]) / e->sd[i]) + e->c[i] -
               log(e->w[i]);
    }
    double z = (v - e->mu[i]) / e->sd[i];
    return -0.5 * z * z + e->c[i] - log(e->w[i]);
}

/* log density (or mass of the grid cell) at v (internal space). */
static double parzen_logpdf(const parzen *e, int nc, double v) {
    double mx = -INFINITY;
    double terms[e->n];
    for (int i = 0; i < e->n; i++) {
        double t;
        if (nc) t = log(e->cat[i * nc + (int)v]);
        else if (e->q > 0) {
            double a = fmax(v - e->q / 2, e->lo), b = fmin(v + e->q / 2, e->hi);
            t = log_mass((a - e->mu[i]) / e->sd[i], (b - e->mu[i]) / e->sd[i]);
        } else {
            double z = (v - e->mu[i]) / e->sd[i];
            t = -0.5 * z * z;
        }
        terms[i] = t + e->c[i];
        if (terms[i] > mx) mx = terms[i];
    }
    double sum = 0;
    for (int i = 0; i < e->n; i++) sum += exp(terms[i] - mx);
    return mx + log(sum);
}

kiln_status kiln_tune_parzen_logpdf(const kiln_tune_space *s, int param, const double *obs,
                                    int n_obs, const double *x, int n_x, double *out) {
    const kiln_tune_param *p = &s->params[param];
    parzen e;
    kiln_status st = parzen_build(s, p, obs, n_obs, NULL, &e);
    int nc = p->kind == KILN_TUNE_CHOICE ? p->n_choices : 0;
    for (int i = 0; !st && i < n_x; i++) out[i] = parzen_logpdf(&e, nc, nc ? x[i] : to_internal(p, x[i]));
    parzen_free(&e);
    return st;
}

/* ---- TPE ---- */

typedef struct {
    int complete; /* 1 complete, 0 pruned */
    double key2, key3; /* pruned: -resource; value (minimized) */
    int i;
} ranked;
static int by_rank(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->complete != y->complete) return x->complete ? -1 : 1;
    if (!x->complete && x->key2 != y->key2) return x->key2 < y->key2 ? -1 : 1;
    if (x->key3 != y->key3) {
        if (isnan(x->key3)) return 1;
        if (isnan(y->key3)) return -1;
        return x->key3 < y->key3 ? -1 : 1;
    }
    return x->i - y->i;
}

/* EI weights (Bergstra et al. 2011's expected improvement below the threshold, Watanabe 2023's
 * "EI" weighting) of the good observations obs[sel[0..n)]: w = max(1e-12, y* - y), y* the best
 * objective among the complete bad trials, y minimized. 0 (then the default weights) when
 * s->ei_weights is off, a good trial was pruned, or no bad trial is complete. */
static int ei_weights(const kiln_tune_space *s, const kiln_tune_obs *obs, int n_obs,
                      const char *good, const int *sel, int n, double *w) {
    if (!s->ei_weights) return 0;
    double sign = s->maximize ? -1 : 1, thr = INFINITY;
    for (int i = 0; i < n_obs; i++)
        if (!good[i] && obs[i].state == KILN_TRIAL_COMPLETE && sign * obs[i].value < thr)
            thr = sign * obs[i].value;
    if (!isfinite(thr)) return 0;
    for (int k = 0; k < n; k++) {
        const kiln_tune_obs *o = &obs[sel[k]];
        if (o->state != KILN_TRIAL_COMPLETE || isnan(o->value)) return 0;
        w[k] = fmax(1e-12, thr - sign * o->value);
    }
    return 1;
}

static kiln_status tpe_param(const kiln_tune_space *s, int pi, const kiln_tune_obs *obs, int n_obs,
                             const char *good, rng *r, double *out) {
    const kiln_tune_param *p = &s->params[pi];
    double *vals = malloc((size_t)(n_obs + 1) * 3 * sizeof *vals);
    int *sel = malloc((size_t)(n_obs + 1) * sizeof *sel);
    if (!vals || !sel) {
        free(vals), free(sel);
        return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    }
    double *gv = vals, *bv = vals + n_obs + 1, *ew = bv + n_obs + 1;
    int ng = 0, nb = 0;
    for (int i = 0; i < n_obs; i++) {
        double v = obs[i].x[pi];
        if (isnan(v)) continue;
        if (good[i]) sel[ng] = i, gv[ng++] = v;
        else bv[nb++] = v;
    }
    int use_ew = ei_weights(s, obs, n_obs, good, sel, ng, ew);
    free(sel);
    parzen l, g;
    kiln_status st = parzen_build(s, p, gv, ng, use_ew ? ew : NULL, &l);
    if (!st) st = parzen_build(s, p, bv, nb, NULL, &g);
    else memset(&g, 0, sizeof g);
    if (!st) {
        int nc = p->kind == KILN_TUNE_CHOICE ? p->n_choices : 0;
        double best = -INFINITY, bestv = 0;
        for (int c = 0; c < s->n_ei; c++) {
            double v = parzen_sample(&l, nc, r);
            if (!nc && l.q > 0) v = to_internal(p, from_internal(p, v)); /* onto the grid */
            double score = parzen_logpdf(&l, nc, v) - parzen_logpdf(&g, nc, v);
            if (score > best || c == 0) best = score, bestv = v;
        }
        *out = nc ? bestv : from_internal(p, bestv);
    }
    parzen_free(&l), parzen_free(&g);
    free(vals);
    return st;
}

/* Multivariate TPE (Falkner et al. 2018's BOHB, Optuna's multivariate=True): the parameters
 * idx[0..m) (those active in every trial) get one estimator per group whose kernels are products
 * over the parameters, kernel i centred on observation i in every dimension, so l and g see how
 * the parameters go together. Each dimension keeps the univariate bandwidths (distances to the
 * sorted neighbours, magic-clipped) and prior; choices their categorical kernels. A candidate
 * draws one kernel, then every dimension from it; the candidate with the highest joint
 * log l(x) - log g(x) wins. tmp: [n_obs + 1] doubles (values), then [n_obs] ints. */
static kiln_status joint_build(const kiln_tune_space *s, const int *idx, int m,
                               const kiln_tune_obs *obs, int n_obs, const char *good, int want,
                               double *tmp, double *ew, int *sel, parzen *e) {
    int n = 0;
    for (int i = 0; i < n_obs; i++) {
        int ok = good[i] == want;
        for (int d = 0; ok && d < m; d++) ok = !isnan(obs[i].x[idx[d]]);
        if (ok) sel[n++] = i;
    }
    int use_ew = want && ei_weights(s, obs, n_obs, good, sel, n, ew);
    kiln_status st = KILN_OK;
    for (int d = 0; d < m && !st; d++) {
        for (int k = 0; k < n; k++) tmp[k] = obs[sel[k]].x[idx[d]];
        st = parzen_build(s, &s->params[idx[d]], tmp, n, use_ew ? ew : NULL, &e[d]);
    }
    return st;
}

static double joint_logpdf(const parzen *e, const int *nc, int m, const double *v) {
    double mx = -INFINITY;
    double terms[e[0].n];
    for (int i = 0; i < e[0].n; i++) {
        double t = log(e[0].w[i]);
        for (int d = 0; d < m; d++) t += kernel_logpdf(&e[d], nc[d], i, v[d]);
        terms[i] = t;
        if (t > mx) mx = t;
    }
    double sum = 0;
    for (int i = 0; i < e[0].n; i++) sum += exp(terms[i] - mx);
    return mx + log(sum);
}

static kiln_status tpe_joint(const kiln_tune_space *s, const int *idx, int m,
                             const kiln_tune_obs *obs, int n_obs, const char *good, rng *r,
                             double *x) {
    parzen *l = calloc((size_t)m * 2, sizeof *l), *g = l + m;
    double *tmp = malloc((2 * ((size_t)n_obs + 1) + 2 * (size_t)m) * sizeof *tmp);
    int *nc = malloc(((size_t)m + (size_t)n_obs + 1) * sizeof *nc), *sel = nc + m;
    kiln_status st =
        !l || !tmp || !nc ? kiln_error(KILN_ERR_NOMEM, "tune: out of memory") : KILN_OK;
    double *ew = tmp + n_obs + 1;
    if (!st) st = joint_build(s, idx, m, obs, n_obs, good, 1, tmp, ew, sel, l);
    if (!st) st = joint_build(s, idx, m, obs, n_obs, good, 0, tmp, ew, sel, g);
    if (!st) {
        double *v = ew + n_obs + 1, *bestv = v + m, best = -INFINITY;
        for (int d = 0; d < m; d++) {
            const kiln_tune_param *p = &s->params[idx[d]];
            nc[d] = p->kind == KILN_TUNE_CHOICE ? p->n_choices : 0;
        }
        for (int c = 0; c < s->n_ei; c++) {
            int k = pick(l[0].w, l[0].n, r);
            for (int d = 0; d < m; d++) {
                const kiln_tune_param *p = &s->params[idx[d]];
                v[d] = kernel_sample(&l[d], nc[d], k, r);
                if (!nc[d] && l[d].q > 0) v[d] = to_internal(p, from_internal(p, v[d]));
            }
            double score = joint_logpdf(l, nc, m, v) - joint_logpdf(g, nc, m, v);
            if (score > best || c == 0) {
                best = score;
                memcpy(bestv, v, (size_t)m * sizeof *v);
            }
        }
        for (int d = 0; d < m; d++)
            x[idx[d]] = nc[d] ? bestv[d] : from_internal(&s->params[idx[d]], bestv[d]);
    }
    for (int d = 0; l && d < 2 * m; d++) parzen_free(&l[d]);
    free(l), free(tmp), free(nc);
    return st;
}

kiln_status kiln_tune_suggest(const kiln_tune_space *s, const kiln_tune_obs *obs, int n_obs,
                              uint64_t number, double *x) {
    int tpe = s->sampler == KILN_TUNE_TPE && n_obs >= s->n_startup && n_obs > 0;
    char *good = NULL;
    if (tpe) {
        ranked *rk = malloc((size_t)n_obs * sizeof *rk);
        good = calloc((size_t)n_obs, 1);
        if (!rk || !good) {
            free(rk), free(good);
            return kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
        }
        double sign = s->maximize ? -1 : 1;
        for (int i = 0; i < n_obs; i++)
            rk[i] = (ranked){obs[i].state == KILN_TRIAL_COMPLETE, -obs[i].resource,
                             sign * obs[i].value, i};
        qsort(rk, (size_t)n_obs, sizeof *rk, by_rank);
        int n_good = (int)ceil(s->gamma * n_obs - 1e-12);
        if (n_good > 25) n_good = 25;
        for (int k = 0; k < n_good && k < n_obs; k++) good[rk[k].i] = 1;
        free(rk);
    }
    kiln_status st = KILN_OK;
    int *idx = malloc((size_t)(s->n_params ? s->n_params : 1) * sizeof *idx), m = 0;
    if (!idx) st = kiln_error(KILN_ERR_NOMEM, "tune: out of memory");
    for (int i = 0; idx && i < s->n_params; i++)
        if (s->params[i].parent < 0) idx[m++] = i; /* active in every trial */
    int joint = tpe && s->multivariate && m >= 2;
    if (joint && !st) {
        rng r = rng_for(s, number, s->n_params);
        st = tpe_joint(s, idx, m, obs, n_obs, good, &r, x);
    }
    for (int i = 0; i < s->n_params && !st; i++) {
        if (joint && s->params[i].parent < 0) continue; /* drawn above */
        x[i] = NAN;
        if (!kiln_tune_active(s, x, i)) continue;
        rng r = rng_for(s, number, i);
        if (tpe) st = tpe_param(s, i, obs, n_obs, good, &r, &x[i]);
        else x[i] = random_value(&s->params[i], &r);
    }
    free(good), free(idx);
    return st;
}

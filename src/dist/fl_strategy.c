/* fl_strategy.c — federated aggregation: update checks, sample-weighted FedAvg, the adaptive
 * server optimizers FedAdam and FedYogi, and the simulation's data partitions (kiln/fl.h).
 *
 * Aggregation sums samples * update in double and divides once at the end, so the global
 * model is the exact weighted mean rounded once to float (independent of the order in which
 * updates arrived, up to double rounding of the sum). FedAdam / FedYogi follow Reddi et al.
 * 2021, Algorithm 2: with Delta the weighted mean change of the trainable parameters,
 *   m = b1 m + (1 - b1) Delta
 *   v = b2 v + (1 - b2) Delta^2                     (Adam)
 *   v = v - (1 - b2) Delta^2 sign(v - Delta^2)      (Yogi)
 *   w = w + eta m / (sqrt(v) + tau)
 * with m starting at 0 and v at tau^2; non-trainable state (batch-norm statistics) takes the
 * plain weighted mean. Partitions draw from the counter-based RNG (seed, stream, counter), so
 * they are the same on every machine.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/data.h"
#include "kiln/fl.h"
#include "kiln/mem.h"
#include "kiln/rng.h"

static const char *const NAMES[] = {"fedavg", "fedprox", "fedadam", "fedyogi"};

int kiln_fl_kind_parse(const char *name) {
    for (int i = 0; i < 4; i++)
        if (name && !strcmp(name, NAMES[i])) return i;
    return -1;
}

const char *kiln_fl_kind_name(kiln_fl_kind k) {
    return k >= 0 && k < 4 ? NAMES[k] : "?";
}

kiln_fl_opts kiln_fl_opts_default(kiln_fl_kind k) {
    return (kiln_fl_opts){.kind = k,
                          .mu = 0.01,
                          .server_lr = 0.01,
                          .beta1 = 0.9,
                          .beta2 = 0.99,
                          .tau = 1e-3,
                          .max_norm = 0,
                          .clip = 0,
                          .dp_noise = 0,
                          .dp_clip = 1,
                          .dp_delta = 1e-5,
                          .seed = 1};
}

kiln_status kiln_fl_strategy_init(kiln_fl_strategy *s, const kiln_fl_opts *o, size_t n,
                                  size_t n_trainable) {
    memset(s, 0, sizeof *s);
    s->o = *o, s->n = n, s->n_trainable = n_trainable;
    if (o->kind == KILN_FL_FEDADAM || o->kind == KILN_FL_FEDYOGI) {
        s->m = calloc(n_trainable ? n_trainable : 1, sizeof *s->m);
        s->v = malloc((n_trainable ? n_trainable : 1) * sizeof *s->v);
        if (!s->m || !s->v) {
            kiln_fl_strategy_free(s);
            return kiln_error(KILN_ERR_NOMEM, "fl: out of memory for the server optimizer");
        }
        for (size_t i = 0; i < n_trainable; i++) s->v[i] = (float)(o->tau * o->tau);
    }
    return KILN_OK;
}

void kiln_fl_strategy_free(kiln_fl_strategy *s) {
    free(s->m);
    free(s->v);
    s->m = s->v = NULL;
}

kiln_status kiln_fl_accum_init(kiln_fl_accum *a, size_t n) {
    memset(a, 0, sizeof *a);
    a->n = n;
    if (!(a->sum = calloc(n ? n : 1, sizeof *a->sum)))
        return kiln_error(KILN_ERR_NOMEM, "fl: out of memory for the aggregate");
    return KILN_OK;
}

void kiln_fl_accum_reset(kiln_fl_accum *a) {
    memset(a->sum, 0, a->n * sizeof *a->sum);
    a->weight = 0, a->count = 0;
}

void kiln_fl_accum_free(kiln_fl_accum *a) {
    free(a->sum);
    a->sum = NULL;
}

kiln_status kiln_fl_check_update(const kiln_fl_opts *o, const float *global, float *update,
                                 size_t n, double *norm) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(update[i]))
            return kiln_error(KILN_ERR_INVALID, "the update holds a non-finite value (%g at %zu)",
                              (double)update[i], i);
        double d = (double)update[i] - global[i];
        ss += d * d;
    }
    *norm = sqrt(ss);
    if (!isfinite(*norm))
        return kiln_error(KILN_ERR_INVALID, "the update's change has a non-finite norm");
    if (o->max_norm > 0 && *norm > o->max_norm) {
        if (!o->clip)
            return kiln_error(KILN_ERR_INVALID,
                              "the update's change has norm %.4g, over the limit %.4g "
                              "(--max-update-norm)",
                              *norm, o->max_norm);
        if (!(o->dp_noise > 0)) {
            double f = o->max_norm / *norm;
            for (size_t i = 0; i < n; i++)
                update[i] = (float)(global[i] + ((double)update[i] - global[i]) * f);
        }
    }
    if (o->dp_noise > 0 && *norm > o->dp_clip) { /* DP: every change clipped to S, always */
        double f = o->dp_clip / *norm;
        for (size_t i = 0; i < n; i++)
            update[i] = (float)(global[i] + ((double)update[i] - global[i]) * f);
    }
    return KILN_OK;
}

double kiln_fl_weight(const kiln_fl_opts *o, double samples) {
    return o->dp_noise > 0 ? 1.0 : samples;
}

void kiln_fl_accum_add(kiln_fl_accum *a, const float *update, double samples) {
    for (size_t i = 0; i < a->n; i++) a->sum[i] += samples * (double)update[i];
    a->weight += samples;
    a->count++;
}

kiln_status kiln_fl_strategy_apply(kiln_fl_strategy *s, const kiln_fl_accum *a, float *global) {
    if (a->count == 0 || !(a->weight > 0))
        return kiln_error(KILN_ERR_INVALID, "fl: no update to aggregate");
    if (a->n != s->n) return kiln_error(KILN_ERR_INVALID, "fl: aggregate of the wrong size");
    int adaptive = s->o.kind == KILN_FL_FEDADAM || s->o.kind == KILN_FL_FEDYOGI;
    size_t from = adaptive ? s->n_trainable : 0;
    /* DP: N(0, (sigma S / m)^2) on each value of the mean (the parameters only) */
    double sd = s->o.dp_noise > 0 ? s->o.dp_noise * s->o.dp_clip / a->count : 0;
    uint64_t stream = 0x44500000u + (uint64_t)s->applied;
#define NOISE(i)                                                                                   \
    (sd > 0 && (!s->used || s->used[i]) ? sd * kiln_rng_normal(s->o.seed, stream, i) : 0.0)
    if (adaptive) {
        double b1 = s->o.beta1, b2 = s->o.beta2, eta = s->o.server_lr, tau = s->o.tau;
        for (size_t i = 0; i < s->n_trainable; i++) {
            double delta = a->sum[i] / a->weight + NOISE(i) - global[i], d2 = delta * delta;
            double m = b1 * s->m[i] + (1 - b1) * delta, v = s->v[i];
            if (s->o.kind == KILN_FL_FEDADAM)
                v = b2 * v + (1 - b2) * d2;
            else
                v = v - (1 - b2) * d2 * (v - d2 > 0 ? 1.0 : v - d2 < 0 ? -1.0 : 0.0);
            s->m[i] = (float)m, s->v[i] = (float)v;
            global[i] = (float)(global[i] + eta * m / (sqrt(v) + tau));
        }
    }
    for (size_t i = from; i < s->n; i++) global[i] = (float)(a->sum[i] / a->weight + NOISE(i));
#undef NOISE
    s->applied++;
    return KILN_OK;
}

/* log(exp(a) + exp(b)) without overflow */
static double log_add(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    double m = a > b ? a : b;
    return m + log(exp(a - m) + exp(b - m));
}

double kiln_fl_dp_epsilon(double q, double sigma, int64_t rounds, double delta) {
    if (!(sigma > 0) || rounds <= 0) return rounds <= 0 ? 0 : INFINITY;
    if (q > 1) q = 1;
    if (!(q > 0)) return 0;
    double best = INFINITY;
    for (int alpha = 2; alpha <= 256; alpha++) {
        double rdp;
        if (q >= 1) {
            rdp = alpha / (2 * sigma * sigma);
        } else { /* log A_alpha = log sum_k C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k)/(2 sigma^2))
                  */
            double la = -INFINITY;
            for (int k = 0; k <= alpha; k++) {
                double lc = lgamma(alpha + 1.0) - lgamma(k + 1.0) - lgamma(alpha - k + 1.0);
                la = log_add(la, lc + (alpha - k) * log1p(-q) + k * log(q) +
                                     ((double)k * k - k) / (2 * sigma * sigma));
            }
            rdp = la / (alpha - 1);
        }
        double eps = (double)rounds * rdp + log(1 / delta) / (alpha - 1);
        if (eps < best) best = eps;
    }
    return best;
}

/* ---- partitions ---- */

enum { STREAM_PART = 0x464c5041 };

/* Gamma(alpha, 1) by Marsaglia and Tsang (alpha < 1 through Gamma(alpha + 1) * U^(1/alpha)). */
static double gamma_draw(double alpha, uint64_t seed, uint64_t *ctr) {
    double boost = 1;
    if (alpha < 1) {
        double u = kiln_rng_uniform(seed, STREAM_PART, (*ctr)++);
        boost = pow(u > 1e-12 ? u : 1e-12, 1 / alpha);
        alpha += 1;
    }
    double d = alpha - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x = kiln_rng_normal(seed, STREAM_PART, (*ctr)++), v = 1 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = kiln_rng_uniform(seed, STREAM_PART, (*ctr)++);
        if (u < 1 - 0.0331 * x * x * x * x) return d * v * boost;
        if (u > 0 && log(u) < 0.5 * x * x + d * (1 - v + log(v))) return d * v * boost;
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

kiln_status kiln_fl_partition(const char *spec, const int32_t *labels, int64_t n, int classes,
                              int clients, uint64_t seed, int64_t **rows_out, int64_t *counts) {
    if (clients < 1) return kiln_error(KILN_ERR_INVALID, "fl: --clients must be at least 1");
    if (n < clients)
        return kiln_error(KILN_ERR_INVALID, "fl: %lld training rows for %d clients", (long long)n,
                          clients);
    double alpha = 0;
    long k = 0;
    char *end = NULL;
    int kind = -1;
    if (!strcmp(spec, "iid"))
        kind = 0;
    else if (!strncmp(spec, "dirichlet:", 10) && (alpha = strtod(spec + 10, &end)) > 0 && !*end)
        kind = 1;
    else if (!strncmp(spec, "shards:", 7) && (k = strtol(spec + 7, &end, 10)) > 0 && !*end)
        kind = 2;
    if (kind < 0)
        return kiln_error(KILN_ERR_INVALID,
                          "fl: --partition '%s': expected iid, dirichlet:ALPHA "
                          "(ALPHA > 0) or shards:K (K >= 1)",
                          spec);
    if (kind && classes < 1)
        return kiln_error(KILN_ERR_INVALID, "fl: --partition %s needs class labels", spec);
    int64_t *owner = malloc((size_t)n * sizeof *owner), *perm = malloc((size_t)n * sizeof *perm);
    kiln_status st = owner && perm ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
    if (!st) st = kiln_data_permutation(n, seed, STREAM_PART, perm);
    if (!st && kind == 0) {
        for (int64_t i = 0; i < n; i++) owner[perm[i]] = i * clients / n;
    } else if (!st && kind == 1) {
        uint64_t ctr = 0;
        double *p = malloc((size_t)clients * sizeof *p);
        int64_t *cls = malloc((size_t)n * sizeof *cls);
        if (!p || !cls) st = kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
        for (int c = 0; !st && c < classes; c++) {
            int64_t m = 0; /* this class's rows, in the shuffled order */
            for (int64_t i = 0; i < n; i++)
                if (labels[perm[i]] == c) cls[m++] = perm[i];
            double tot = 0, acc = 0;
            for (int j = 0; j < clients; j++) tot += p[j] = gamma_draw(alpha, seed, &ctr);
            int64_t at = 0;
            for (int j = 0; j < clients; j++) {
                acc += p[j];
                int64_t to = j == clients - 1 ? m : (int64_t)llround(m * (acc / tot));
                for (; at < to && at < m; at++) owner[cls[at]] = j;
            }
        }
        free(p);
        free(cls);
    } else if (!st) { /* shards: sort by label (stable over the shuffle), cut, deal */
        int64_t *byl = malloc((size_t)n * sizeof *byl), ns = (int64_t)clients * k, at = 0;
        int64_t *sp = ns <= n ? malloc((size_t)ns * sizeof *sp) : NULL;
        if (ns > n)
            st = kiln_error(KILN_ERR_INVALID, "fl: %lld shards of %lld rows", (long long)ns,
                            (long long)n);
        else if (!byl || !sp)
            st = kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
        for (int c = 0; !st && c < classes; c++)
            for (int64_t i = 0; i < n; i++)
                if (labels[perm[i]] == c) byl[at++] = perm[i];
        for (int64_t i = 0; !st && i < n; i++) /* labels out of range go last */
            if (labels[perm[i]] < 0 || labels[perm[i]] >= classes) byl[at++] = perm[i];
        if (!st) st = kiln_data_permutation(ns, seed, STREAM_PART + 1, sp);
        for (int64_t s = 0; !st && s < ns; s++) {
            int64_t lo = n * s / ns, hi = n * (s + 1) / ns, who = 0;
            for (int64_t j = 0; j < ns; j++)
                if (sp[j] == s) who = j / k;
            for (int64_t i = lo; i < hi; i++) owner[byl[i]] = who;
        }
        free(byl);
        free(sp);
    }
    for (int c = 0; c < clients; c++) counts[c] = 0, rows_out[c] = NULL;
    if (!st)
        for (int64_t i = 0; i < n; i++) counts[owner[i]]++;
    for (int c = 0; !st && c < clients; c++)
        if (!(rows_out[c] = malloc((size_t)(counts[c] ? counts[c] : 1) * sizeof **rows_out)))
            st = kiln_error(KILN_ERR_NOMEM, "fl: out of memory");
    if (!st) {
        for (int c = 0; c < clients; c++) counts[c] = 0;
        for (int64_t i = 0; i < n; i++) rows_out[owner[i]][counts[owner[i]]++] = i;
        for (int c = 0; c < clients; c++)
            qsort(rows_out[c], (size_t)counts[c], sizeof(int64_t), cmp_i64);
    } else {
        for (int c = 0; c < clients; c++) free(rows_out[c]), rows_out[c] = NULL;
    }
    free(owner);
    free(perm);
    return st;
}

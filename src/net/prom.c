/* prom.c — Prometheus metrics (kiln/prom.h).
 *
 * Invariants: a family's series list only grows, at its tail, under the family's mutex; each
 * link is published with a release store after the series is fully built, so readers walk it
 * with acquire loads and no lock. Doubles live in _Atomic uint64_t as their bit patterns and
 * are updated by compare-and-swap. The registry's family array changes only under its mutex,
 * which rendering also holds (families are made at startup; rendering is rare).
 */
#include "kiln/prom.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM } prom_type;

struct kiln_prom_series {
    _Atomic(kiln_prom_series *) next;
    kiln_prom_family *fam;
    char **values;             /* [fam->n_labels] */
    _Atomic uint64_t value;    /* counter, gauge: the value; histogram: the sum (double bits) */
    _Atomic uint64_t counts[]; /* histogram: [n_bounds + 1], the last one is +Inf */
};

struct kiln_prom_family {
    prom_type type;
    char *name, *help;
    int n_labels;
    char *labels[KILN_PROM_MAX_LABELS];
    int n_bounds;
    double *bounds; /* [n_bounds] */
    _Atomic(kiln_prom_series *) head;
    kiln_prom_series *tail; /* under mu */
    pthread_mutex_t mu;
};

struct kiln_prom {
    pthread_mutex_t mu;
    kiln_prom_family **fams;
    int n, cap;
};

static const double LATENCY[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const double BATCH[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

const double *kiln_prom_latency_buckets(int *n) {
    *n = (int)(sizeof LATENCY / sizeof *LATENCY);
    return LATENCY;
}

const double *kiln_prom_batch_buckets(int *n) {
    *n = (int)(sizeof BATCH / sizeof *BATCH);
    return BATCH;
}

static uint64_t dbits(double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    return u;
}

static double bitsd(uint64_t u) {
    double v;
    memcpy(&v, &u, 8);
    return v;
}

static void atomic_add_double(_Atomic uint64_t *a, double v) {
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

kiln_prom *kiln_prom_new(void) {
    kiln_prom *r = calloc(1, sizeof *r);
    if (!r) {
        kiln_error(KILN_ERR_NOMEM, "prom: out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void series_free(kiln_prom_series *s, int n_labels) {
    for (int i = 0; i < n_labels; i++) free(s->values[i]);
    free(s->values);
    free(s);
}

static void family_free(kiln_prom_family *f) {
    kiln_prom_series *s = atomic_load(&f->head);
    while (s) {
        kiln_prom_series *next = atomic_load(&s->next);
        series_free(s, f->n_labels);
        s = next;
    }
    for (int i = 0; i < f->n_labels; i++) free(f->labels[i]);
    free(f->name);
    free(f->help);
    free(f->bounds);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void kiln_prom_free(kiln_prom *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) family_free(r->fams[i]);
    free(r->fams);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static int valid_name(const char *s, int colon_ok) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon_ok && c == ':') || (p > s && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static kiln_prom_family *family_new(kiln_prom *r, prom_type type, const char *name,
                                    const char *help, int n_labels, const char *const *labels,
                                    const double *bounds, int n_bounds) {
    if (!valid_name(name, 1)) {
        kiln_error(KILN_ERR_INVALID, "prom: bad metric name '%.64s'", name ? name : "(null)");
        return NULL;
    }
    if (n_labels < 0 || n_labels > KILN_PROM_MAX_LABELS || (n_labels && !labels)) {
        kiln_error(KILN_ERR_INVALID, "prom: %s: 0 to %d labels, got %d", name, KILN_PROM_MAX_LABELS,
                   n_labels);
        return NULL;
    }
    for (int i = 0; i < n_labels; i++) {
        const char *l = labels[i];
        if (!valid_name(l, 0) || strncmp(l, "__", 2) == 0 ||
            (type == PROM_HISTOGRAM && strcmp(l, "le") == 0)) {
            kiln_error(KILN_ERR_INVALID, "prom: %s: bad label name '%.64s'", name,
                       l ? l : "(null)");
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(labels[j], l) == 0) {
                kiln_error(KILN_ERR_INVALID, "prom: %s: label '%s' given twice", name, l);
                return NULL;
            }
    }
    if (type == PROM_HISTOGRAM) {
        if (n_bounds < 1 || !bounds) {
            kiln_error(KILN_ERR_INVALID, "prom: %s: a histogram needs bucket bounds", name);
            return NULL;
        }
        for (int i = 0; i < n_bounds; i++)
            if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1]))) {
                kiln_error(KILN_ERR_INVALID,
                           "prom: %s: bucket bounds must be finite and "
                           "increasing (bound %d is %g)",
                           name, i, bounds[i]);
                return NULL;
            }
    }
    kiln_prom_family *f = calloc(1, sizeof *f);
    if (!f) goto nomem;
    pthread_mutex_init(&f->mu, NULL);
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->n_labels = n_labels;
    int ok = f->name && f->help;
    for (int i = 0; i < n_labels; i++) ok &= (f->labels[i] = strdup(labels[i])) != NULL;
    if (type == PROM_HISTOGRAM) {
        f->n_bounds = n_bounds;
        ok &= (f->bounds = malloc((size_t)n_bounds * sizeof *bounds)) != NULL;
        if (f->bounds) memcpy(f->bounds, bounds, (size_t)n_bounds * sizeof *bounds);
    }
    if (!ok) goto nomem;

    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->fams[i]->name, name) == 0) {
            pthread_mutex_unlock(&r->mu);
            family_free(f);
            kiln_error(KILN_ERR_INVALID, "prom: metric '%s' already exists", name);
            return NULL;
        }
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        kiln_prom_family **p = realloc(r->fams, (size_t)cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&r->mu);
            goto nomem;
        }
        r->fams = p, r->cap = cap;
    }
    r->fams[r->n++] = f;
    pthread_mutex_unlock(&r->mu);
    /* a family without labels has its one series from the start, so it prints 0 */
    if (n_labels == 0 && !kiln_prom_series_of(f, NULL)) return NULL;
    return f;
nomem:
    if (f) family_free(f);
    kiln_error(KILN_ERR_NOMEM, "prom: out of memory");
    return NULL;
}

kiln_prom_family *kiln_prom_counter(kiln_prom *r, const char *name, const char *help, int n_labels,
                                    const char *const *labels) {
    return family_new(r, PROM_COUNTER, name, help, n_labels, labels, NULL, 0);
}

kiln_prom_family *kiln_prom_gauge(kiln_prom *r, const char *name, const char *help, int n_labels,
                                  const char *const *labels) {
    return family_new(r, PROM_GAUGE, name, help, n_labels, labels, NULL, 0);
}

kiln_prom_family *kiln_prom_histogram(kiln_prom *r, const char *name, const char *help,
                                      int n_labels, const char *const *labels, const double *bounds,
                                      int n_bounds) {
    return family_new(r, PROM_HISTOGRAM, name, help, n_labels, labels, bounds, n_bounds);
}

static int same_values(const kiln_prom_series *s, const char *const *values, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(s->values[i], values[i] ? values[i] : "") != 0) return 0;
    return 1;
}

static kiln_prom_series *find(kiln_prom_family *f, const char *const *values) {
    for (kiln_prom_series *s = atomic_load_explicit(&f->head, memory_order_acquire); s;
         s = atomic_load_explicit(&s->next, memory_order_acquire))
        if (same_values(s, values, f->n_labels)) return s;
    return NULL;
}

kiln_prom_series *kiln_prom_series_of(kiln_prom_family *f, const char *const *values) {
    kiln_prom_series *s = find(f, values);
    if (s) return s;
    pthread_mutex_lock(&f->mu);
    if ((s = find(f, values))) { /* made while we waited */
        pthread_mutex_unlock(&f->mu);
        return s;
    }
    size_t nc = f->type == PROM_HISTOGRAM ? (size_t)f->n_bounds + 1 : 0;
    s = calloc(1, sizeof *s + nc * sizeof s->counts[0]);
    if (s) s->values = calloc((size_t)f->n_labels + 1, sizeof *s->values);
    int ok = s && s->values;
    for (int i = 0; ok && i < f->n_labels; i++)
        ok = (s->values[i] = strdup(values[i] ? values[i] : "")) != NULL;
    if (!ok) {
        pthread_mutex_unlock(&f->mu);
        if (s && s->values)
            series_free(s, f->n_labels);
        else
            free(s);
        kiln_error(KILN_ERR_NOMEM, "prom: %s: out of memory", f->name);
        return NULL;
    }
    s->fam = f;
    atomic_init(&s->next, NULL);
    atomic_init(&s->value, dbits(0.0));
    for (size_t i = 0; i < nc; i++) atomic_init(&s->counts[i], 0);
    if (f->tail)
        atomic_store_explicit(&f->tail->next, s, memory_order_release);
    else
        atomic_store_explicit(&f->head, s, memory_order_release);
    f->tail = s;
    pthread_mutex_unlock(&f->mu);
    return s;
}

void kiln_prom_add(kiln_prom_series *s, double v) {
    if (!s || s->fam->type == PROM_HISTOGRAM) return;
    if (s->fam->type == PROM_COUNTER && !(v >= 0)) return;
    atomic_add_double(&s->value, v);
}

void kiln_prom_set(kiln_prom_series *s, double v) {
    if (!s || s->fam->type != PROM_GAUGE) return;
    atomic_store_explicit(&s->value, dbits(v), memory_order_relaxed);
}

void kiln_prom_observe(kiln_prom_series *s, double v) {
    if (!s || s->fam->type != PROM_HISTOGRAM) return;
    const kiln_prom_family *f = s->fam;
    int lo = 0, hi = f->n_bounds; /* first bound >= v, or n_bounds (+Inf; NaN lands here too) */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->counts[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->value, v);
}

double kiln_prom_value(const kiln_prom_series *s) {
    if (!s) return 0;
    if (s->fam->type != PROM_HISTOGRAM)
        return bitsd(atomic_load_explicit(&s->value, memory_order_relaxed));
    uint64_t n = 0;
    for (int i = 0; i <= s->fam->n_bounds; i++)
        n += atomic_load_explicit(&((kiln_prom_series *)s)->counts[i], memory_order_relaxed);
    return (double)n;
}

/* ---- rendering ---- */

/* v as Go's strconv 'g' with the shortest round-trip precision writes it, as Prometheus
 * clients do ("0.0005", "1", "2.5", "1e+21"), and NaN, +Inf, -Inf. */
static void fmt_double(double v, char s[32]) {
    if (isnan(v) || isinf(v)) {
        strcpy(s, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, 32, "%.*g", prec, v);
        if (strtod(s, NULL) == v) break;
    }
}

static void put_double(kiln_sbuf *b, double v) {
    char s[32];
    fmt_double(v, s);
    kiln_sbuf_puts(b, s);
}

/* s with '\\' and '\n' escaped, and '"' too when quote is set. */
static void put_escaped(kiln_sbuf *b, const char *s, int quote) {
    for (; *s; s++) {
        if (*s == '\\')
            kiln_sbuf_puts(b, "\\\\");
        else if (*s == '\n')
            kiln_sbuf_puts(b, "\\n");
        else if (*s == '"' && quote)
            kiln_sbuf_puts(b, "\\\"");
        else
            kiln_sbuf_putc(b, *s);
    }
}

/* {a="x",b="y"[,le="..."]} or nothing. */
static void put_labels(kiln_sbuf *b, const kiln_prom_series *s, const char *le) {
    const kiln_prom_family *f = s->fam;
    if (!f->n_labels && !le) return;
    kiln_sbuf_putc(b, '{');
    for (int i = 0; i < f->n_labels; i++) {
        if (i) kiln_sbuf_putc(b, ',');
        kiln_sbuf_puts(b, f->labels[i]);
        kiln_sbuf_puts(b, "=\"");
        put_escaped(b, s->values[i], 1);
        kiln_sbuf_putc(b, '"');
    }
    if (le) {
        if (f->n_labels) kiln_sbuf_putc(b, ',');
        kiln_sbuf_puts(b, "le=\"");
        kiln_sbuf_puts(b, le);
        kiln_sbuf_putc(b, '"');
    }
    kiln_sbuf_putc(b, '}');
}

static void render_family(kiln_sbuf *b, kiln_prom_family *f) {
    static const char *types[] = {"counter", "gauge", "histogram"};
    kiln_prom_series *s = atomic_load_explicit(&f->head, memory_order_acquire);
    if (!s) return;
    if (*f->help) {
        kiln_sbuf_printf(b, "# HELP %s ", f->name);
        put_escaped(b, f->help, 0);
        kiln_sbuf_putc(b, '\n');
    }
    kiln_sbuf_printf(b, "# TYPE %s %s\n", f->name, types[f->type]);
    for (; s; s = atomic_load_explicit(&s->next, memory_order_acquire)) {
        double v = bitsd(atomic_load_explicit(&s->value, memory_order_relaxed));
        if (f->type != PROM_HISTOGRAM) {
            kiln_sbuf_puts(b, f->name);
            put_labels(b, s, NULL);
            kiln_sbuf_putc(b, ' ');
            put_double(b, v);
            kiln_sbuf_putc(b, '\n');
            continue;
        }
        uint64_t cum = 0;
        for (int i = 0; i <= f->n_bounds; i++) {
            cum += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
            char le[32];
            fmt_double(i < f->n_bounds ? f->bounds[i] : INFINITY, le);
            kiln_sbuf_printf(b, "%s_bucket", f->name);
            put_labels(b, s, le);
            kiln_sbuf_printf(b, " %llu\n", (unsigned long long)cum);
        }
        kiln_sbuf_printf(b, "%s_sum", f->name);
        put_labels(b, s, NULL);
        kiln_sbuf_putc(b, ' ');
        put_double(b, v);
        kiln_sbuf_printf(b, "\n%s_count", f->name);
        put_labels(b, s, NULL);
        kiln_sbuf_printf(b, " %llu\n", (unsigned long long)cum);
    }
}

kiln_status kiln_prom_render(kiln_prom *r, kiln_sbuf *out) {
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) render_family(out, r->fams[i]);
    pthread_mutex_unlock(&r->mu);
    return out->failed ? kiln_error(KILN_ERR_NOMEM, "prom: out of memory rendering") : KILN_OK;
}

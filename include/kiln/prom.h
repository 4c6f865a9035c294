/* kiln/prom.h — metrics for Prometheus: counters, gauges and histograms with labels, rendered
 * in the text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/).
 *
 * A registry holds metric families; a family has a name, a help text and fixed label names, and
 * one series per combination of label values, made on first use and kept until the registry is
 * freed. Updates are lock-free: values are atomics (doubles updated by compare-and-swap), and
 * finding a series walks a list that only ever grows at its tail, without a lock; only making a
 * new series takes the family's mutex. Hot paths look a series up once and keep the pointer.
 *
 * Rendering reads the atomics while writers go on: every number printed is one that was true
 * at some instant, but a histogram's buckets and _sum may be an observation or two apart (as
 * with the official clients). _count is printed as the +Inf bucket, so those two always agree.
 * Families print in the order they were made, series in the order they first appeared;
 * a family with labels and no series yet prints nothing (as the Go client does).
 */
#ifndef KILN_PROM_H
#define KILN_PROM_H

#include "kiln/sbuf.h"
#include "kiln/status.h"

#define KILN_PROM_MAX_LABELS 8

typedef struct kiln_prom kiln_prom;
typedef struct kiln_prom_family kiln_prom_family;
typedef struct kiln_prom_series kiln_prom_series;

kiln_prom *kiln_prom_new(void);
void kiln_prom_free(kiln_prom *r);

/* A new family. Names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and
 * may not start with "__" (nor be "le" for histograms). NULL (with message) on a bad or taken
 * name. labels may be NULL when n_labels is 0. help may be NULL or "" (no # HELP line). */
kiln_prom_family *kiln_prom_counter(kiln_prom *r, const char *name, const char *help, int n_labels,
                                    const char *const *labels);
kiln_prom_family *kiln_prom_gauge(kiln_prom *r, const char *name, const char *help, int n_labels,
                                  const char *const *labels);
/* bounds: n_bounds finite, strictly increasing bucket upper bounds; +Inf is added. */
kiln_prom_family *kiln_prom_histogram(kiln_prom *r, const char *name, const char *help,
                                      int n_labels, const char *const *labels, const double *bounds,
                                      int n_bounds);

/* Bucket bounds for request latency in seconds (0.5 ms .. 10 s) and for batch sizes (1 .. 512). */
const double *kiln_prom_latency_buckets(int *n);
const double *kiln_prom_batch_buckets(int *n);

/* The series for these label values (one string per label name; NULL when there are none),
 * made on first use. NULL only when out of memory. */
kiln_prom_series *kiln_prom_series_of(kiln_prom_family *f, const char *const *values);
/* Counters: add v (negative and NaN v are ignored: counters only go up). Gauges: add v. */
void kiln_prom_add(kiln_prom_series *s, double v);
/* Gauges: set. */
void kiln_prom_set(kiln_prom_series *s, double v);
/* Histograms: one observation (into the first bucket with v <= bound). */
void kiln_prom_observe(kiln_prom_series *s, double v);
/* A counter's or gauge's value, or a histogram's observation count. */
double kiln_prom_value(const kiln_prom_series *s);

/* The page: every family, as text format 0.0.4. Serve it with
 * Content-Type: text/plain; version=0.0.4; charset=utf-8. */
kiln_status kiln_prom_render(kiln_prom *r, kiln_sbuf *out);

#endif

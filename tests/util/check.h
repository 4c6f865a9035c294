/* check.h — the test harness: CHECK macros, a run summary, and gradient checking.
 *
 * Each test program calls its test functions through RUN(fn) and ends with
 * `return kiln_test_summary();`, which prints "N passed, N failed" and returns the exit code.
 * A CHECK that fails prints file:line and the expression and marks the current test failed
 * (the test goes on, so one run shows every failure).
 */
#ifndef KILN_CHECK_H
#define KILN_CHECK_H

#include <math.h>
#include <stdio.h>

#include "kiln/kiln.h"

extern int kiln_test_failed_now;
void kiln_test_run(const char *name, void (*fn)(void));
int kiln_test_summary(void);

#define RUN(fn) kiln_test_run(#fn, fn)
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);              \
            kiln_test_failed_now = 1;                                                              \
        }                                                                                          \
    } while (0)
#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            kiln_test_failed_now = 1;                                                              \
        }                                                                                          \
    } while (0)
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        kiln_status s_ = (expr);                                                                   \
        CHECK_MSG(s_ == KILN_OK, "%s: %s", kiln_status_name(s_), kiln_last_error());              \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        CHECK_MSG(fabs(a_ - b_) <= (tol), "%s = %.9g, %s = %.9g (tol %g)", #a, a_, #b, b_,         \
                  (double)(tol));                                                                  \
    } while (0)
/* The last error message contains the substring. */
#define CHECK_ERR_HAS(sub) CHECK_MSG(strstr(kiln_last_error(), sub) != NULL, "error '%s' lacks '%s'", \
                                     kiln_last_error(), sub)

/* Largest |a[i] - b[i]| / (atol + rtol |b[i]|) over n values (<= 1 means within tolerance). */
double kiln_test_compare(const float *a, const float *b, size_t n, double atol, double rtol,
                         size_t *worst);
/* Fills x with uniform values in [lo, hi) from a fixed stream. */
void kiln_test_fill(float *x, size_t n, float lo, float hi, uint64_t stream);

/* Gradient check of every trainable parameter of plan p (made with .loss = out; the caller has
 * filled its inputs). L = sum(out * w) for a fixed random w (w = 1 for a scalar out); compares
 * dL/dparam from kiln_plan_backward with central differences (step eps) computed in double, on
 * at most max_per_param elements of each parameter. Returns 0 when all are within
 * |num - ana| <= atol + rtol |num|, else prints the worst and returns -1. */
int kiln_test_gradcheck(kiln_graph *g, kiln_plan *p, kiln_node *out, double eps, double atol,
                        double rtol, int max_per_param);

#endif

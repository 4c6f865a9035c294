/* check.c — see check.h. */
#include "check.h"

#include <stdlib.h>
#include <string.h>

int kiln_test_failed_now;
static int passed, failed;

void kiln_test_run(const char *name, void (*fn)(void)) {
    kiln_test_failed_now = 0;
    kiln_error_clear();
    fn();
    if (kiln_test_failed_now) failed++, printf("FAIL %s\n", name);
    else passed++, printf("ok   %s\n", name);
    fflush(stdout);
}

int kiln_test_summary(void) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

double kiln_test_compare(const float *a, const float *b, size_t n, double atol, double rtol,
                         size_t *worst) {
    double w = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(r <= w)) w = r, wi = i; /* NaN counts as worst */
        if (isnan(r)) { w = INFINITY; break; }
    }
    if (worst) *worst = wi;
    return w;
}

void kiln_test_fill(float *x, size_t n, float lo, float hi, uint64_t stream) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * kiln_rng_uniform(12345, stream, i);
}

static double loss_of(kiln_plan *p, kiln_node *out, const float *w, size_t n) {
    if (kiln_plan_forward(p) != KILN_OK) return NAN;
    const float *y = kiln_plan_data(p, out);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)y[i] * (w ? w[i] : 1.0);
    return s;
}

int kiln_test_gradcheck(kiln_graph *g, kiln_plan *p, kiln_node *out, double eps, double atol,
                        double rtol, int max_per_param) {
    kiln_shape s = kiln_plan_shape(p, out);
    size_t n = (size_t)kiln_shape_numel(&s);
    float *w = NULL;
    if (n > 1) {
        w = malloc(n * sizeof *w);
        kiln_test_fill(w, n, -1.0f, 1.0f, 999);
    }
    int rc = 0;
    if (kiln_plan_forward(p) != KILN_OK) {
        fprintf(stderr, "  gradcheck: forward failed: %s\n", kiln_last_error());
        free(w);
        return -1;
    }
    if (w) memcpy(kiln_plan_grad(p, out), w, n * sizeof *w);
    if (kiln_plan_backward(p) != KILN_OK) {
        fprintf(stderr, "  gradcheck: backward failed: %s\n", kiln_last_error());
        free(w);
        return -1;
    }
    size_t nt = kiln_graph_trainable_size(g);
    float *ana = malloc(nt * sizeof *ana);
    memcpy(ana, kiln_graph_grads(g), nt * sizeof *ana);
    float *params = kiln_graph_params(g);
    for (int k = 0; k < kiln_graph_param_count(g); k++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, k);
        if (!pi->trainable) continue;
        size_t stride = pi->numel > (size_t)max_per_param ? pi->numel / (size_t)max_per_param + 1 : 1;
        double worst = 0, wnum = 0, wana = 0, l0 = loss_of(p, out, w, n);
        size_t wi = 0, checked = 0, kinks = 0;
        for (size_t i = 0; i < pi->numel; i += stride) {
            float *v = &params[pi->offset + i], keep = *v;
            *v = keep + (float)eps;
            double lp = loss_of(p, out, w, n);
            double h1 = (double)*v - keep;
            *v = keep - (float)eps;
            double lm = loss_of(p, out, w, n);
            double h2 = keep - (double)*v;
            *v = keep;
            double num = (lp - lm) / (h1 + h2), a = ana[pi->offset + i];
            /* At a kink (relu at 0, max pooling ties) the one-sided slopes disagree and the
             * central difference means nothing: skip such points, but only a few. */
            double fwd = (lp - l0) / h1, bwd = (l0 - lm) / h2;
            checked++;
            if (fabs(fwd - bwd) > 2 * (atol + rtol * fabs(num))) {
                kinks++;
                continue;
            }
            double r = fabs(num - a) / (atol + rtol * fabs(num));
            if (!(r <= worst)) worst = r, wi = i, wnum = num, wana = a;
        }
        if (kinks * 5 > checked) {
            fprintf(stderr, "  gradcheck %s: %zu of %zu points sit on kinks\n", pi->name, kinks, checked);
            rc = -1;
        }
        if (!(worst <= 1.0)) {
            fprintf(stderr, "  gradcheck %s[%zu]: numeric %.7g analytic %.7g (ratio %.3g)\n",
                    pi->name, wi, wnum, wana, worst);
            rc = -1;
        }
    }
    free(ana);
    free(w);
    return rc;
}

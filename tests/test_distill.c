/* test_distill.c — the knowledge-distillation loss (softmax_distillation): values against a
 * double reference (class ids of both int types, probability labels, rank-3 logits, several
 * temperatures and alphas, extreme logits), KL = 0 when the student is the teacher, alpha 0 is
 * plain softmax cross-entropy, gradients against finite differences, no gradient into the
 * teacher, and bad shapes and attributes at build time. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* mean over rows of alpha T^2 KL(softmax(t/T) || softmax(z/T)) + (1 - alpha) CE(y, z) */
static double ref_kd(const float *z, const float *t, const int64_t *ids, const float *probs,
                     int64_t rows, int64_t K, double T, double alpha) {
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * K, *tr = t + r * K;
        double mz = -1e300, mt = -1e300, m1 = -1e300, sz = 0, st = 0, s1 = 0;
        for (int64_t k = 0; k < K; k++) {
            mz = fmax(mz, zr[k] / T), mt = fmax(mt, tr[k] / T), m1 = fmax(m1, zr[k]);
        }
        for (int64_t k = 0; k < K; k++)
            sz += exp(zr[k] / T - mz), st += exp(tr[k] / T - mt), s1 += exp(zr[k] - m1);
        double kl = 0, ce = 0;
        for (int64_t k = 0; k < K; k++) {
            double lp = tr[k] / T - mt - log(st), lq = zr[k] / T - mz - log(sz);
            kl += exp(lp) * (lp - lq);
            double y = ids ? (ids[r] == k) : probs[r * K + k];
            ce += y * (m1 + log(s1) - zr[k]);
        }
        total += alpha * T * T * kl + (1 - alpha) * ce;
    }
    return total / rows;
}

/* Student logits a parameter z [1, R, K]; teacher t and labels are inputs. */
static void check_kd(int64_t R, int64_t K, kiln_dtype dt, float T, float alpha, float range) {
    kiln_graph *g = kiln_graph_new(7);
    kiln_node *z = kiln_param(g, "z", 3, (int64_t[]){1, R, K},
                              (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
    kiln_node *t = kiln_input(g, "t", KILN_F32, 2, (int64_t[]){R, K});
    kiln_node *y = dt == KILN_F32 ? kiln_input(g, "y", KILN_F32, 2, (int64_t[]){R, K})
                                  : kiln_input(g, "y", dt, 1, &R);
    kiln_node *L = kiln_softmax_distillation(g, z, t, y, T, alpha);
    CHECK_MSG(L != NULL, "%s", kiln_last_error());
    if (!L) return kiln_graph_free(g);
    kiln_plan *p = kiln_plan_new(
        g, &(kiln_plan_opts){.outputs = &L, .n_outputs = 1, .loss = L, .batch = 1});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return kiln_graph_free(g);
    int64_t *ids = malloc((size_t)R * sizeof *ids);
    float *probs = kiln_plan_data(p, y);
    for (int64_t r = 0; r < R; r++) {
        ids[r] = (r * 5 + 1) % K;
        if (dt == KILN_I32) ((int32_t *)kiln_plan_data(p, y))[r] = (int32_t)ids[r];
        if (dt == KILN_I64) ((int64_t *)kiln_plan_data(p, y))[r] = ids[r];
    }
    if (dt == KILN_F32) { /* rows of probabilities */
        kiln_test_fill(probs, (size_t)(R * K), 0.01f, 1, 3);
        for (int64_t r = 0; r < R; r++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += probs[r * K + k];
            for (int64_t k = 0; k < K; k++) probs[r * K + k] /= (float)s;
        }
    }
    kiln_test_fill(kiln_plan_data(p, z), (size_t)(R * K), -range, range, 5);
    kiln_test_fill(kiln_plan_data(p, t), (size_t)(R * K), -range, range, 6);
    CHECK_OK(kiln_plan_forward(p));
    double ref = ref_kd(kiln_plan_data(p, z), kiln_plan_data(p, t), dt == KILN_F32 ? NULL : ids,
                        dt == KILN_F32 ? probs : NULL, R, K, T, alpha);
    float got = *(const float *)kiln_plan_data(p, L);
    CHECK_MSG(fabs(got - ref) <= 1e-5 + 1e-5 * fabs(ref),
              "R=%lld K=%lld T=%g alpha=%g: %.9g vs %.9g", (long long)R, (long long)K, T, alpha,
              got, ref);
    if (range < 100)
        CHECK_MSG(kiln_test_gradcheck(g, p, L, 1e-3, 1e-3, 3e-3, 200) == 0, "R=%lld K=%lld T=%g "
                  "alpha=%g", (long long)R, (long long)K, T, alpha);
    CHECK(kiln_plan_grad(p, t) == NULL); /* nothing flows into the teacher */
    CHECK_OK(kiln_plan_backward(p));
    float *dz = kiln_plan_grad(p, z);
    for (int64_t i = 0; dz && i < R * K; i++) CHECK_MSG(isfinite(dz[i]), "dz[%lld]", (long long)i);
    free(ids);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_values_and_gradients(void) {
    check_kd(1, 10, KILN_I32, 4, 0.9f, 4);
    check_kd(3, 5, KILN_I64, 1, 0.5f, 3);
    check_kd(4, 7, KILN_F32, 2.5f, 0.3f, 3);
    check_kd(2, 3, KILN_I32, 8, 1, 5);
    check_kd(5, 4, KILN_I32, 0.5f, 0, 2);
    check_kd(3, 10, KILN_I32, 4, 0.9f, 1000); /* extreme logits: finite, as the reference */
}

/* The student equal to the teacher: the KL term is 0, only (1 - alpha) CE is left; alpha 0 is
 * softmax cross-entropy itself. */
static void test_limits(void) {
    kiln_graph *g = kiln_graph_new(1);
    int64_t K = 6;
    kiln_node *z = kiln_input(g, "z", KILN_F32, 1, &K), *t = kiln_input(g, "t", KILN_F32, 1, &K);
    kiln_node *y = kiln_input(g, "y", KILN_I32, 0, NULL);
    kiln_node *kd = kiln_softmax_distillation(g, z, t, y, 4, 1);
    kiln_node *kd0 = kiln_softmax_distillation(g, z, t, y, 4, 0);
    kiln_node *ce = kiln_softmax_cross_entropy(g, z, y, 0);
    kiln_node *outs[3] = {kd, kd0, ce};
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = outs, .n_outputs = 3, .batch = 3});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return kiln_graph_free(g);
    kiln_test_fill(kiln_plan_data(p, z), 18, -3, 3, 1);
    memcpy(kiln_plan_data(p, t), kiln_plan_data(p, z), 18 * sizeof(float));
    for (int i = 0; i < 3; i++) ((int32_t *)kiln_plan_data(p, y))[i] = i;
    CHECK_OK(kiln_plan_forward(p));
    CHECK_NEAR(*(float *)kiln_plan_data(p, kd), 0, 1e-6);
    CHECK_NEAR(*(float *)kiln_plan_data(p, kd0), *(float *)kiln_plan_data(p, ce), 1e-6);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_build_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    int64_t K = 6, K2 = 5;
    kiln_node *z = kiln_input(g, "z", KILN_F32, 1, &K), *t = kiln_input(g, "t", KILN_F32, 1, &K2);
    kiln_node *y = kiln_input(g, "y", KILN_I32, 0, NULL);
    CHECK(kiln_softmax_distillation(g, z, t, y, 4, 0.9f) == NULL);
    CHECK_ERR_HAS("the teacher's logits must have the student's shape");
    CHECK(kiln_softmax_distillation(g, z, z, y, 0, 0.9f) == NULL);
    CHECK_ERR_HAS("temperature must be > 0");
    CHECK(kiln_softmax_distillation(g, z, z, y, 4, 1.5f) == NULL);
    CHECK_ERR_HAS("alpha in [0, 1]");
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_values_and_gradients);
    RUN(test_limits);
    RUN(test_build_errors);
    return kiln_test_summary();
}

/* test_tune.c — the search space (parsing, errors, assignments), the samplers (random and TPE
 * on a 2-D quadratic and a conditional space, determinism, multivariate TPE on diagonal optima,
 * EI weights, the sampler options), the pruners (ASHA's promotion rule
 * against a worked example, median) and the importances. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/run.h"
#include "kiln/tune.h"

static kiln_tune_space parse(const char *yaml, const char *root_yaml, kiln_status *st) {
    kiln_cfg *t = NULL, *root = NULL;
    kiln_tune_space s;
    memset(&s, 0, sizeof s);
    *st = kiln_config_parse(yaml, "space.yaml", &t);
    if (!*st && root_yaml) *st = kiln_config_parse(root_yaml, "cfg.yaml", &root);
    if (!*st) *st = kiln_tune_space_parse(kiln_cfg_child(t, "tune"), root, &s);
    kiln_cfg_free(t), kiln_cfg_free(root);
    return s;
}

static const char *QUAD =
    "tune:\n"
    "  objective: {metric: f, mode: min}\n"
    "  sampler: {tpe: {seed: 7}}\n"
    "  space:\n"
    "    x: {uniform: [-2, 2]}\n"
    "    y: {uniform: [-2, 2]}\n";

static double quad(const double *x) { return (x[0] - 0.3) * (x[0] - 0.3) + (x[1] + 0.7) * (x[1] + 0.7); }

/* Runs n sequential trials; returns the best value; points into xs ([n][n_params]) if given. */
static double study(const kiln_tune_space *s, int n, double (*f)(const double *), double *xs) {
    double *own = xs ? NULL : malloc((size_t)n * (size_t)s->n_params * sizeof *own);
    if (!xs) xs = own;
    kiln_tune_obs *obs = calloc((size_t)n, sizeof *obs);
    double best = INFINITY;
    for (int t = 0; t < n; t++) {
        double *x = xs + (size_t)t * (size_t)s->n_params;
        CHECK_OK(kiln_tune_suggest(s, obs, t, (uint64_t)t, x));
        obs[t] = (kiln_tune_obs){.x = x, .value = f(x), .state = KILN_TRIAL_COMPLETE};
        best = fmin(best, obs[t].value);
    }
    free(obs), free(own);
    return best;
}

static void test_space_parse(void) {
    kiln_status st;
    kiln_tune_space s = parse(
        "tune:\n"
        "  trials: 12\n"
        "  parallel: 3\n"
        "  pruner: {asha: {min_resource: 2, reduction_factor: 2}}\n"
        "  space:\n"
        "    optimizer:\n"
        "      choice:\n"
        "        - adam: {learning_rate: {loguniform: [1.0e-4, 1.0e-2]}}\n"
        "        - sgd: {learning_rate: {loguniform: [1.0e-3, 1.0e-1]}, momentum: {uniform: [0.5, 0.99]}}\n"
        "    data.batch_size: {int: [16, 256], log: true}\n"
        "    model.layers[1].dense.units: {choice: [32, 64]}\n",
        "seed: 5\n"
        "data: {source: npy, train: {x: a.npy, y: b.npy}, batch_size: 8}\n"
        "model: {input: [4], layers: [flatten, {dense: {units: 3}}]}\n"
        "loss: softmax_cross_entropy\n"
        "train: {early_stopping: {monitor: val_accuracy}}\n",
        &st);
    CHECK_OK(st);
    CHECK(s.n_params == 6);
    CHECK(!strcmp(s.params[0].key, "optimizer") && s.params[0].kind == KILN_TUNE_CHOICE);
    CHECK(!strcmp(s.params[1].key, "optimizer.adam.learning_rate") && s.params[1].parent == 0 &&
          s.params[1].parent_option == 0 && s.params[1].log);
    CHECK(!strcmp(s.params[3].key, "optimizer.sgd.momentum") && s.params[3].parent_option == 1);
    CHECK(s.params[4].kind == KILN_TUNE_INT && s.params[4].log);
    CHECK(s.trials == 12 && s.parallel == 3 && s.pruner == KILN_TUNE_ASHA && s.min_resource == 2);
    CHECK(!strcmp(s.metric, "val_accuracy") && s.maximize == 1 && s.seed == 5);
    double x[6] = {1, NAN, 0.01, 0.9, 64, 1};
    char a[200];
    CHECK(kiln_tune_assignment(&s, x, 0, a, sizeof a) == 0);
    CHECK_MSG(!strcmp(a, "optimizer={sgd: {}}"), "got %s", a);
    CHECK(kiln_tune_active(&s, x, 2) && !kiln_tune_active(&s, x, 1));
    kiln_tune_display(&s, x, 0, a, sizeof a);
    CHECK(!strcmp(a, "sgd"));
    CHECK(kiln_tune_assignment(&s, x, 5, a, sizeof a) == 0 && !strcmp(a, "model.layers[1].dense.units=64"));
    kiln_tune_space_free(&s);
}

static void test_space_errors(void) {
    const char *root = "data: {source: npy, train: {x: a.npy, y: b.npy}}\n"
                       "model: {input: [4], layers: [flatten, {dense: {units: 3}}]}\n"
                       "loss: softmax_cross_entropy\n";
    kiln_status st;
    kiln_tune_space s = parse("tune:\n  space:\n    optimizer.adam.learnig_rate: {uniform: [0, 1]}\n"
                              "  objective: {metric: val_loss}\n", root, &st);
    CHECK(st == KILN_ERR_INVALID);
    CHECK_ERR_HAS("space.yaml:3:5");
    CHECK_ERR_HAS("learnig_rate");
    s = parse("tune:\n  space:\n    x: {uniform: [1, 0]}\n  objective: {metric: f}\n", NULL, &st);
    CHECK(st == KILN_ERR_INVALID);
    CHECK_ERR_HAS("must be below");
    s = parse("tune:\n  space:\n    x: {normal: [0, 1]}\n  objective: {metric: f}\n", NULL, &st);
    CHECK(st == KILN_ERR_INVALID);
    CHECK_ERR_HAS("expected a distribution");
    s = parse("tune:\n  trails: 3\n  space:\n    x: {uniform: [0, 1]}\n", NULL, &st);
    CHECK(st == KILN_ERR_INVALID);
    CHECK_ERR_HAS("space.yaml:2:3");
    s = parse("tune:\n  space:\n    x: {uniform: [0, 1]}\n", NULL, &st);
    CHECK(st == KILN_ERR_INVALID);
    CHECK_ERR_HAS("no metric");
    s = parse("tune:\n  space:\n    x: {loguniform: [0, 1]}\n  objective: {metric: f}\n", NULL, &st);
    CHECK(st == KILN_ERR_INVALID);
    CHECK_ERR_HAS("low > 0");
    s = parse("tune:\n  space:\n    data.batch_size: {uniform: [0.5, 4]}\n  objective: {metric: f}\n",
              root, &st);
    CHECK(st == KILN_ERR_INVALID);
    CHECK_ERR_HAS("data.batch_size=0.5");
    kiln_tune_space_free(&s);
}

static void test_determinism(void) {
    kiln_status st;
    kiln_tune_space s = parse(QUAD, NULL, &st);
    CHECK_OK(st);
    double a[40 * 2], b[40 * 2];
    study(&s, 40, quad, a);
    study(&s, 40, quad, b);
    CHECK(!memcmp(a, b, sizeof a));
    s.seed = 8;
    study(&s, 40, quad, b);
    CHECK(memcmp(a, b, sizeof a) != 0);
    kiln_tune_space_free(&s);
}

static void test_tpe_quadratic(void) {
    kiln_status st;
    kiln_tune_space s = parse(QUAD, NULL, &st);
    CHECK_OK(st);
    double tpe[9], rnd[9];
    for (int seed = 0; seed < 9; seed++) {
        s.seed = (uint64_t)seed + 1;
        s.sampler = KILN_TUNE_TPE;
        tpe[seed] = study(&s, 80, quad, NULL);
        s.sampler = KILN_TUNE_RANDOM;
        rnd[seed] = study(&s, 80, quad, NULL);
    }
    int better = 0;
    for (int i = 0; i < 9; i++) better += tpe[i] < rnd[i];
    double mt = 0, mr = 0;
    for (int i = 0; i < 9; i++) mt += tpe[i] / 9, mr += rnd[i] / 9;
    printf("  quadratic, 80 trials: mean best TPE %.5f, random %.5f (TPE better in %d of 9)\n", mt, mr, better);
    CHECK(mt < mr);
    CHECK(better >= 6);
    CHECK(mt < 0.01);
    kiln_tune_space_free(&s);
}

/* Conditional: option a has x (best 0 at x = 0.8), option b has y (at least 0.5). */
static double cond_f(const double *x) {
    return x[0] == 0 ? (x[1] - 0.8) * (x[1] - 0.8) : 0.5 + x[2];
}

static void test_tpe_conditional(void) {
    kiln_status st;
    kiln_tune_space s = parse("tune:\n  objective: {metric: f, mode: min}\n  space:\n"
                              "    opt: {choice: [{a: {x: {uniform: [0, 1]}}}, {b: {y: {uniform: [0, 1]}}}]}\n",
                              NULL, &st);
    CHECK_OK(st);
    CHECK(s.n_params == 3 && !strcmp(s.params[1].key, "opt.a.x") && !strcmp(s.params[2].key, "opt.b.y"));
    double xs[60 * 3];
    double best = study(&s, 60, cond_f, xs);
    int late_a = 0;
    for (int t = 0; t < 60; t++) {
        const double *x = xs + t * 3;
        CHECK(x[0] == 0 || x[0] == 1);
        CHECK(x[0] == 0 ? !isnan(x[1]) && isnan(x[2]) && x[1] >= 0 && x[1] <= 1
                        : isnan(x[1]) && !isnan(x[2]) && x[2] >= 0 && x[2] <= 1);
        if (t >= 40) late_a += x[0] == 0;
    }
    printf("  conditional: best %.5f, option a in %d of the last 20\n", best, late_a);
    CHECK(best < 0.005);
    CHECK(late_a >= 15);
    kiln_tune_space_free(&s);
}

static double int_f(const double *x) { return fabs(x[0] - 37) + (x[1] == 2 ? 0 : 5); }

static void test_int_and_choice(void) {
    kiln_status st;
    kiln_tune_space s = parse("tune:\n  objective: {metric: f, mode: min}\n  space:\n"
                              "    n: {int: [1, 200], log: true}\n    c: {choice: [p, q, r, s]}\n",
                              NULL, &st);
    CHECK_OK(st);
    double xs[60 * 2];
    double best = study(&s, 60, int_f, xs);
    for (int t = 0; t < 60; t++)
        CHECK(xs[t * 2] == floor(xs[t * 2]) && xs[t * 2] >= 1 && xs[t * 2] <= 200);
    printf("  int + choice: best %.1f\n", best);
    CHECK(best <= 5);
    kiln_tune_space_free(&s);
}

/* ASHA with eta = 3, min_resource 1: rungs at 1, 3, 9 (minimizing). Worked example:
 *   rung 1 gets, in order, 0.5 (alone: best, promoted), 0.7 (of 2: only the best, 0.5, goes
 *   on: pruned), 0.3 (of 3: floor(3/3) = 1 best: 0.3 is it: promoted), 0.4 (of 4: still 1:
 *   pruned), 0.2 (promoted), 0.35 (of 6: the 2 best are 0.2, 0.3: pruned)
 *   rung 3: trial 0 reports 0.45 (alone: promoted), trial 2 reports 0.25 (promoted), trial 4
 *   reports 0.5 (of 3: best is 0.25: pruned). */
static void test_asha_worked_example(void) {
    kiln_tune_space s = {.min_resource = 1, .reduction = 3, .maximize = 0};
    double r1[] = {1, 3}, v0[] = {0.5, 0.45}, v1[] = {0.7}, v2[] = {0.3, 0.25}, v3[] = {0.4};
    double v4[] = {0.2, 0.5}, v5[] = {0.35};
    kiln_tune_curve c[6] = {{r1, v0, 0}, {r1, v1, 0}, {r1, v2, 0}, {r1, v3, 0}, {r1, v4, 0}, {r1, v5, 0}};
    int rung[6] = {0};
    int expect1[6] = {0, 1, 0, 1, 0, 1};
    for (int t = 0; t < 6; t++) {
        c[t].n = 1;
        CHECK_MSG(kiln_tune_asha_prune(&s, c, 6, t, &rung[t]) == expect1[t], "trial %d at rung 1", t);
        CHECK(rung[t] == (expect1[t] ? 0 : 1));
    }
    int order[3] = {0, 2, 4}, expect3[3] = {0, 0, 1};
    for (int k = 0; k < 3; k++) {
        int t = order[k];
        c[t].n = 2;
        CHECK_MSG(kiln_tune_asha_prune(&s, c, 6, t, &rung[t]) == expect3[k], "trial %d at rung 3", t);
    }
    CHECK(rung[0] == 2 && rung[2] == 2 && rung[4] == 1);
    /* between rungs nothing is decided: trial 0 at resource 5 goes on */
    double r0[] = {1, 3, 5}, w0[] = {0.5, 0.45, 9.0};
    c[0] = (kiln_tune_curve){r0, w0, 3};
    CHECK(kiln_tune_asha_prune(&s, c, 6, 0, &rung[0]) == 0);
    /* maximizing flips the order: 0.7 is now the best of the first two */
    s.maximize = 1;
    int rr[2] = {0, 0};
    kiln_tune_curve m[2] = {{r1, v0, 1}, {r1, v1, 0}};
    CHECK(kiln_tune_asha_prune(&s, m, 2, 0, &rr[0]) == 0);
    m[1].n = 1;
    CHECK(kiln_tune_asha_prune(&s, m, 2, 1, &rr[1]) == 0);
    /* a NaN is pruned */
    double vn[] = {NAN};
    kiln_tune_curve nanc[1] = {{r1, vn, 1}};
    int rn = 0;
    CHECK(kiln_tune_asha_prune(&s, nanc, 1, 0, &rn) == 1);
}

/* No rung at the end of a trial's budget: trial 4 of the worked example reached rung 3 with 0.5
 * and was pruned there; when 3 epochs are all a trial trains (max_resource 3) it has spent its
 * budget and stays complete, and the median pruner leaves it too. A study's parsed space takes
 * max_resource from train.epochs. */
static void test_no_prune_at_the_end(void) {
    kiln_tune_space s = {.min_resource = 1, .reduction = 3, .maximize = 0, .max_resource = 3};
    double r1[] = {1, 3}, v0[] = {0.5, 0.45}, v2[] = {0.3, 0.25}, v4[] = {0.2, 0.5};
    kiln_tune_curve c[3] = {{r1, v0, 2}, {r1, v2, 2}, {r1, v4, 2}};
    int rung[3] = {1, 1, 1};
    CHECK(kiln_tune_asha_prune(&s, c, 3, 2, &rung[2]) == 0);
    CHECK(rung[2] == 1);
    s.max_resource = 0; /* unknown: as Optuna, rung 3 prunes it */
    CHECK(kiln_tune_asha_prune(&s, c, 3, 2, &rung[2]) == 1);
    kiln_tune_space m = {.median_startup = 2, .maximize = 0, .max_resource = 3};
    int complete[3] = {1, 1, 0};
    double v5[] = {0.6, 0.5};
    c[2].value = v5; /* worse than the median (0.35) all along */
    CHECK(kiln_tune_median_prune(&m, c, complete, 3, 2) == 0);
    m.max_resource = 0;
    CHECK(kiln_tune_median_prune(&m, c, complete, 3, 2) == 1);

    kiln_cfg *root = NULL;
    const char *y = "data: {source: idx, train: {images: a.gz, labels: b.gz}, batch_size: 8}\n"
                    "model: {input: [4], layers: [{dense: {units: 2}}]}\n"
                    "loss: softmax_cross_entropy\noptimizer: {adam: {learning_rate: 0.001}}\n"
                    "train: {epochs: 7}\n"
                    "tune: {objective: {metric: loss, mode: min}, pruner: asha,\n"
                    "       space: {optimizer.adam.learning_rate: {uniform: [0.001, 0.01]}}}\n";
    CHECK(kiln_config_parse(y, "t.yaml", &root) == KILN_OK);
    kiln_tune_space sp;
    if (root && kiln_tune_space_parse(kiln_cfg_child(root, "tune"), root, &sp) == KILN_OK) {
        CHECK(sp.max_resource == 7);
        kiln_tune_space_free(&sp);
    } else
        CHECK_MSG(0, "%s", kiln_last_error());
    kiln_cfg_free(root);
}

/* The study and the run agree on a trial the tuner was pruning: the decision decides (so a
 * study stays a function of its points), and a run that finished before the signal reached it
 * is marked pruned too, with a message saying so. */
static void test_outcome(void) {
    CHECK(kiln_tune_outcome("finished", 3) == KILN_TUNE_OUTCOME_PRUNED);
    CHECK(kiln_tune_outcome("finished", 0) == KILN_TUNE_OUTCOME_FINISHED);
    CHECK(kiln_tune_outcome("pruned", 3) == KILN_TUNE_OUTCOME_PRUNED);
    CHECK(kiln_tune_outcome("failed", 3) == KILN_TUNE_OUTCOME_OTHER);
    CHECK(kiln_tune_outcome("", 3) == KILN_TUNE_OUTCOME_OTHER);

    char root[] = "/tmp/kiln-tune-test-XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    setenv("KILN_REGISTRY", "off", 1);
    kiln_rundir *r = NULL;
    CHECK_OK(kiln_run_create(root, "exp", "t000", &r));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", r ? kiln_run_get_info(r).path : "");
    CHECK_OK(kiln_run_set_status(r, KILN_RUN_FINISHED, NULL));
    CHECK_OK(kiln_run_save(r));
    /* while its process holds it, it is left alone */
    CHECK(kiln_tune_mark_pruned(dir, 3, 0) == KILN_ERR_INVALID);
    kiln_run_close(r);
    CHECK_OK(kiln_tune_mark_pruned(dir, 3, 0));
    r = NULL;
    CHECK_OK(kiln_run_open(dir, KILN_RUN_READ, &r));
    if (r) {
        kiln_run_info info = kiln_run_get_info(r);
        CHECK(info.status == KILN_RUN_PRUNED);
        CHECK(info.message && strstr(info.message, "pruned by kiln tune at epoch 3"));
        kiln_run_close(r);
    }
    /* only a finished run */
    CHECK(kiln_tune_mark_pruned(dir, 3, 0) == KILN_ERR_INVALID);
    unsetenv("KILN_REGISTRY");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
}

static void test_median(void) {
    kiln_tune_space s = {.median_startup = 2, .median_warmup = 1, .maximize = 1};
    double r[] = {1, 2}, a[] = {0.6, 0.8}, b[] = {0.5, 0.7}, c[] = {0.4, 0.55}, d[] = {0.3, 0.9};
    kiln_tune_curve cv[4] = {{r, a, 2}, {r, b, 2}, {r, c, 1}, {r, d, 1}};
    int complete[4] = {1, 1, 0, 0};
    /* at resource 1 the median of 0.6 and 0.5 is 0.55: 0.4 is worse (pruned), and with only one
     * complete trial nothing would be */
    CHECK(kiln_tune_median_prune(&s, cv, complete, 4, 2) == 1);
    complete[1] = 0;
    CHECK(kiln_tune_median_prune(&s, cv, complete, 4, 2) == 0);
    complete[1] = 1;
    s.median_warmup = 2;
    CHECK(kiln_tune_median_prune(&s, cv, complete, 4, 2) == 0); /* warm-up */
    s.median_warmup = 0;
    cv[3].n = 2; /* best so far 0.9 beats the median 0.75 at resource 2 */
    CHECK(kiln_tune_median_prune(&s, cv, complete, 4, 3) == 0);
}

static void test_importance(void) {
    kiln_status st;
    kiln_tune_space s = parse("tune:\n  objective: {metric: f}\n  space:\n    x: {uniform: [0, 1]}\n"
                              "    y: {uniform: [0, 1]}\n    c: {choice: [a, b]}\n", NULL, &st);
    CHECK_OK(st);
    s.sampler = KILN_TUNE_RANDOM;
    enum { N = 64 };
    double xs[N * 3], v[N];
    const double *rows[N];
    kiln_tune_obs none[1];
    for (int t = 0; t < N; t++) {
        CHECK_OK(kiln_tune_suggest(&s, none, 0, (uint64_t)t, xs + t * 3));
        rows[t] = xs + t * 3;
        v[t] = 10 * xs[t * 3] + (xs[t * 3 + 2] == 1 ? 2 : 0); /* y plays no part */
    }
    double imp[3];
    kiln_tune_importance(&s, rows, v, N, imp);
    printf("  importances x %.3f y %.3f c %.3f\n", imp[0], imp[1], imp[2]);
    CHECK_NEAR(imp[0] + imp[1] + imp[2], 1.0, 1e-9);
    CHECK(imp[0] > 0.6 && imp[1] < 0.15 && imp[2] > imp[1]);
    kiln_tune_space_free(&s);
}

/* kiln's Parzen estimators against Optuna's (the values of tests/tune/parzen_optuna.py: Optuna 3.1's
 * _ParzenEstimator with the truncated normal's density fixed as in Optuna 3.5, optuna#5109):
 * bandwidths, prior, weights, truncation, the int grid cells and the categorical kernels. */
static void test_parzen_optuna(void) {
    kiln_status st;
    kiln_tune_space s = parse("tune:\n  objective: {metric: f}\n  space:\n"
                              "    u: {uniform: [-5, 10]}\n    l: {loguniform: [1.0e-4, 1.0e-1]}\n"
                              "    i: {int: [1, 20]}\n    c: {choice: [a, b, c]}\n    m: {uniform: [0, 1]}\n",
                              NULL, &st);
    CHECK_OK(st);
    s.clip_exponent = 1; /* Optuna's magic clip */
    double ou[] = {0.3, 9.5, -4.0, 2.2, 2.3}, xu[] = {-5, 0, 2.25, 9.9};
    double eu[] = {-3.0730364281, -2.4176492996, -2.2116691297, -3.4876916610};
    double ol[] = {1e-3, 5e-2, 2e-4}, xl[] = {1e-4, 1e-3, 0.05}, el[] = {-1.9169599622, -1.6962874938, -2.3013266147};
    double oi[] = {3, 7, 7, 19}, xi[] = {1, 7, 20}, ei[] = {-3.0501971106, -2.5581797122, -3.6411275553};
    double oc[] = {0, 2, 2, 2, 1}, xc[] = {0, 1, 2}, ec[] = {-1.3499267169, -1.3499267169, -0.7308875085};
    double om[30], xm[] = {0.0, 0.33, 0.5, 0.97}, em[] = {-0.6272613152, -0.1757553249, 0.1556853215, -0.0699379921};
    for (int i = 0; i < 30; i++) om[i] = ((i * 37) % 101) / 100.0;
    struct { int p; const double *o; int n; const double *x, *e; int nx; } cases[] = {
        {0, ou, 5, xu, eu, 4}, {1, ol, 3, xl, el, 3}, {2, oi, 4, xi, ei, 3}, {3, oc, 5, xc, ec, 3},
        {4, om, 30, xm, em, 4}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        double out[4];
        CHECK_OK(kiln_tune_parzen_logpdf(&s, cases[k].p, cases[k].o, cases[k].n, cases[k].x, cases[k].nx, out));
        for (int i = 0; i < cases[k].nx; i++)
            CHECK_MSG(fabs(out[i] - cases[k].e[i]) < 1e-8, "%s at %g: %.10f, Optuna %.10f",
                      s.params[cases[k].p].key, cases[k].x[i], out[i], cases[k].e[i]);
    }
    /* density: optuna31 gives Optuna 3.1's own (unfixed) values */
    double e31[] = {-1.1591044565, -0.8023249406, -0.7126906313, -1.2338472310}, out[4];
    s.optuna31 = 1;
    CHECK_OK(kiln_tune_parzen_logpdf(&s, 0, ou, 5, xu, 4, out));
    for (int i = 0; i < 4; i++) CHECK_NEAR(out[i], e31[i], 1e-8);
    kiln_tune_space_free(&s);
}

/* The TPE settings: multivariate and EI weights by default, Optuna's univariate TPE on request. */
static void test_sampler_options(void) {
    kiln_status st;
    kiln_tune_space s = parse(QUAD, NULL, &st);
    CHECK_OK(st);
    CHECK(s.multivariate == 1 && s.ei_weights == 1 && s.optuna31 == 0 && s.n_ei == 24);
    CHECK(s.clip_exponent == 2 && s.gamma == 0.1 && s.prior_weight == 1 && s.n_startup == 10);
    kiln_tune_space_free(&s);
    s = parse("tune:\n  objective: {metric: f}\n"
              "  sampler: {tpe: {multivariate: false, weights: uniform, clip_exponent: 1}}\n"
              "  space:\n    x: {uniform: [0, 1]}\n", NULL, &st);
    CHECK_OK(st);
    CHECK(s.multivariate == 0 && s.ei_weights == 0 && s.clip_exponent == 1);
    kiln_tune_space_free(&s);
    s = parse("tune:\n  objective: {metric: f}\n  sampler: {tpe: {multivariate: yes}}\n"
              "  space:\n    x: {uniform: [0, 1]}\n", NULL, &st);
    CHECK(st == KILN_ERR_INVALID);
    CHECK_ERR_HAS("space.yaml:3:19");
    CHECK_ERR_HAS("expected true or false");
    s = parse("tune:\n  objective: {metric: f}\n  sampler: {tpe: {weights: rank}}\n"
              "  space:\n    x: {uniform: [0, 1]}\n", NULL, &st);
    CHECK(st == KILN_ERR_INVALID);
    CHECK_ERR_HAS("expected ei or uniform");
}

/* Good trials at (0.2, 0.8) and (0.8, 0.2), bad ones on a grid elsewhere, (0.2, 0.2) and (0.8,
 * 0.8) among them: univariate TPE learns x in {0.2, 0.8} and y in {0.2, 0.8} apart and so also
 * proposes the wrong pairs; multivariate TPE keeps the pairs together. Counted: suggestions
 * (200 trial numbers) within 0.1 of a good pair and of a wrong pair. */
static void test_tpe_multivariate(void) {
    kiln_status st;
    kiln_tune_space s = parse("tune:\n  objective: {metric: f}\n"
                              "  sampler: {tpe: {startup_trials: 1}}\n  space:\n"
                              "    x: {uniform: [0, 1]}\n    y: {uniform: [0, 1]}\n", NULL, &st);
    CHECK_OK(st);
    double pts[40][2] = {{0.2, 0.8}, {0.22, 0.78}, {0.8, 0.2}, {0.78, 0.22}};
    kiln_tune_obs obs[40];
    int n = 4;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6 && n < 40; j++) {
            double x = 0.1 + 0.14 * i, y = 0.1 + 0.14 * j;
            if (fabs(x - y) > 0.5) continue; /* near a good pair */
            pts[n][0] = x, pts[n][1] = y, n++;
        }
    for (int i = 0; i < n; i++)
        obs[i] = (kiln_tune_obs){.x = pts[i], .value = i < 4 ? 0 : 1};
    s.gamma = 4.0 / n;
    int good[2] = {0, 0}, wrong[2] = {0, 0};
    for (int mv = 0; mv < 2; mv++) {
        s.multivariate = mv;
        for (int t = 0; t < 200; t++) {
            double p[2];
            CHECK_OK(kiln_tune_suggest(&s, obs, n, (uint64_t)t + 1000, p));
            good[mv] += fmin(hypot(p[0] - 0.2, p[1] - 0.8), hypot(p[0] - 0.8, p[1] - 0.2)) < 0.1;
            wrong[mv] += fmin(hypot(p[0] - 0.2, p[1] - 0.2), hypot(p[0] - 0.8, p[1] - 0.8)) < 0.1;
        }
    }
    printf("  %d trials, good pairs (0.2, 0.8), (0.8, 0.2): of 200 suggestions near a good / wrong "
           "pair: univariate %d / %d, multivariate %d / %d\n",
           n, good[0], wrong[0], good[1], wrong[1]);
    CHECK(good[1] > good[0] && wrong[1] * 4 < wrong[0]);
    kiln_tune_space_free(&s);
}

/* EI weights: of the good trials, the one far below the threshold (the best bad value) weighs
 * most, so the draws from l crowd around it; with uniform weights they spread over all three. */
static void test_ei_weights(void) {
    kiln_status st;
    kiln_tune_space s = parse("tune:\n  objective: {metric: f}\n"
                              "  sampler: {tpe: {startup_trials: 1}}\n"
                              "  space:\n    x: {uniform: [0, 1]}\n", NULL, &st);
    CHECK_OK(st);
    s.gamma = 0.25; /* 3 good of 12 */
    double xv[12] = {0.1, 0.6, 0.9, 0.3, 0.31, 0.32, 0.33, 0.34, 0.35, 0.36, 0.37, 0.38};
    double yv[12] = {0.0, 0.95, 0.96, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    kiln_tune_obs obs[12];
    for (int i = 0; i < 12; i++) obs[i] = (kiln_tune_obs){.x = &xv[i], .value = yv[i]};
    int close[2] = {0, 0};
    for (int ei = 0; ei < 2; ei++) {
        s.ei_weights = ei;
        for (int t = 0; t < 200; t++) {
            double x;
            CHECK_OK(kiln_tune_suggest(&s, obs, 12, (uint64_t)t + 100, &x));
            close[ei] += fabs(x - 0.1) < 0.1;
        }
    }
    printf("  good trials at 0.1 (y 0), 0.6 and 0.9 (y 0.95): suggestions within 0.1 of 0.1: "
           "uniform weights %d of 200, EI weights %d\n", close[0], close[1]);
    CHECK(close[1] > close[0] + 30);
    kiln_tune_space_free(&s);
}

int main(void) {
    RUN(test_space_parse);
    RUN(test_space_errors);
    RUN(test_parzen_optuna);
    RUN(test_determinism);
    RUN(test_tpe_quadratic);
    RUN(test_sampler_options);
    RUN(test_tpe_multivariate);
    RUN(test_ei_weights);
    RUN(test_tpe_conditional);
    RUN(test_int_and_choice);
    RUN(test_asha_worked_example);
    RUN(test_no_prune_at_the_end);
    RUN(test_outcome);
    RUN(test_median);
    RUN(test_importance);
    return kiln_test_summary();
}

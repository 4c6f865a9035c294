/* tune_sampler.c — kiln's samplers on synthetic objectives, called as library functions (no
 * process per trial): bench/tune_vs_optuna.sh runs it beside Optuna's TPESampler.
 *   bench_tune_sampler OBJECTIVE SEEDS TRIALS [tpe|tpe-optuna|tpe31|random] [FIRST_SEED]
 * tpe: the default (multivariate, EI weights, clip exponent 2); tpe-optuna: {multivariate: false,
 * weights: uniform, clip_exponent: 1}, Optuna's univariate TPE with the exact density (Optuna
 * >= 3.5); tpe31: that with density: optuna31 (Optuna 3.1).
 * Seeds FIRST_SEED (0) .. FIRST_SEED + SEEDS - 1.
 * OBJECTIVE: branin, hartmann6, quad10. Prints one line per seed, "best after 25 50 100 ...:" the
 * best value after each checkpoint of trials, and the sampler's own time per trial (the
 * kiln_tune_suggest call, in CPU time of this thread) at the last trial and over all of them, in
 * milliseconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/tune.h"
#include "tune_objectives.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: the machine may be busy */
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr,
                "usage: %s branin|hartmann6|quad10 SEEDS TRIALS [tpe|tpe-optuna|tpe31|random] "
                "[FIRST_SEED]\n",
                argv[0]);
        return 2;
    }
    const char *obj = argv[1];
    int seeds = atoi(argv[2]), trials = atoi(argv[3]);
    const char *space_yaml = !strcmp(obj, "branin") ? "tune:\n  objective: {metric: f, mode: min}\n  space:\n"
                                                      "    x0: {uniform: [-5, 10]}\n    x1: {uniform: [0, 15]}\n"
                             : !strcmp(obj, "hartmann6")
                                 ? "tune:\n  objective: {metric: f, mode: min}\n  space:\n"
                                   "    x0: {uniform: [0, 1]}\n    x1: {uniform: [0, 1]}\n    x2: {uniform: [0, 1]}\n"
                                   "    x3: {uniform: [0, 1]}\n    x4: {uniform: [0, 1]}\n    x5: {uniform: [0, 1]}\n"
                                 : !strcmp(obj, "quad10") ? NULL : "";
    char quad[2048];
    if (!space_yaml) {
        snprintf(quad, sizeof quad, "tune:\n  objective: {metric: f, mode: min}\n  space:\n");
        for (int i = 0; i < 10; i++)
            snprintf(quad + strlen(quad), sizeof quad - strlen(quad), "    x%d: {uniform: [-5, 5]}\n", i);
        space_yaml = quad;
    }
    if (!space_yaml[0]) {
        fprintf(stderr, "unknown objective %s\n", obj);
        return 2;
    }
    double (*f)(const double *) = !strcmp(obj, "branin") ? branin : !strcmp(obj, "hartmann6") ? hartmann6 : quad10;
    kiln_cfg *c = NULL;
    kiln_tune_space s;
    if (kiln_config_parse(space_yaml, obj, &c) || kiln_tune_space_parse(kiln_cfg_child(c, "tune"), NULL, &s)) {
        fprintf(stderr, "%s\n", kiln_last_error());
        return 1;
    }
    if (argc > 4 && !strcmp(argv[4], "random")) s.sampler = KILN_TUNE_RANDOM;
    int optuna = argc > 4 && (!strcmp(argv[4], "tpe31") || !strcmp(argv[4], "tpe-optuna"));
    if (optuna) s.multivariate = 0, s.ei_weights = 0, s.clip_exponent = 1;
    if (argc > 4 && !strcmp(argv[4], "tpe31")) s.optuna31 = 1;
    int first = argc > 5 ? atoi(argv[5]) : 0;
    double *xs = malloc((size_t)trials * (size_t)s.n_params * sizeof *xs);
    kiln_tune_obs *obs = calloc((size_t)trials, sizeof *obs);
    double last_ms = 0, all_ms = 0;
    for (int seed = first; seed < first + seeds; seed++) {
        s.seed = (uint64_t)seed;
        double best = 1e300;
        printf("seed %d best", seed);
        for (int t = 0; t < trials; t++) {
            double *x = xs + (size_t)t * (size_t)s.n_params;
            double t0 = now();
            if (kiln_tune_suggest(&s, obs, t, (uint64_t)t, x)) return 1;
            double dt = (now() - t0) * 1e3;
            all_ms += dt;
            if (t == trials - 1) last_ms += dt;
            obs[t] = (kiln_tune_obs){.x = x, .value = f(x), .state = KILN_TRIAL_COMPLETE};
            if (obs[t].value < best) best = obs[t].value;
            if (t + 1 == 25 || t + 1 == 50 || t + 1 == trials) printf(" %.6g", best);
        }
        printf("\n");
    }
    printf("sampler ms/trial: at trial %d %.4f, mean over all %.4f\n", trials, last_ms / seeds,
           all_ms / ((double)seeds * trials));
    free(xs), free(obs);
    kiln_tune_space_free(&s);
    kiln_cfg_free(c);
    return 0;
}

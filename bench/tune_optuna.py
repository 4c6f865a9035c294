"""Optuna's TPESampler (defaults, seeded) on the objectives of bench/tune_objectives.h.
usage: /usr/bin/python3 tune_optuna.py OBJECTIVE SEEDS TRIALS [FIRST_SEED]
Prints the same lines as bench_tune_sampler: the best after 25, 50 and TRIALS trials per seed,
and the sampler's CPU time per trial (ask and suggest of a trial) at the last trial."""
import math
import sys
import time

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def branin(x):
    a, b, c, r, s, t = 1, 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
    u = x[1] - b * x[0] ** 2 + c * x[0] - r
    return a * u * u + s * (1 - t) * math.cos(x[0]) + s


ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
     [17, 8, 0.05, 10, 0.1, 14]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]


def hartmann6(x):
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6)))
                for i in range(4))


def quad10(x):
    return sum((v - 1) ** 2 for v in x)


SPACES = {"branin": (branin, [(-5, 10), (0, 15)]), "hartmann6": (hartmann6, [(0, 1)] * 6),
          "quad10": (quad10, [(-5, 5)] * 10)}


def main():
    name, seeds, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    f, bounds = SPACES[name]
    last = 0.0
    for seed in range(first, first + seeds):
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        best, line = math.inf, []
        for t in range(trials):
            t0 = time.thread_time()
            trial = study.ask()
            x = [trial.suggest_float("x%d" % i, lo, hi) for i, (lo, hi) in enumerate(bounds)]
            dt = time.thread_time() - t0
            v = f(x)
            study.tell(trial, v)
            best = min(best, v)
            if t + 1 in (25, 50, trials):
                line.append("%.6g" % best)
            if t == trials - 1:
                last += dt * 1e3
        print("seed %d best %s" % (seed, " ".join(line)))
    print("sampler ms/trial: at trial %d %.4f" % (trials, last / seeds))


main()

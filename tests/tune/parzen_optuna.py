"""The oracle values of test_tune.c's test_parzen_optuna: Optuna's _ParzenEstimator (Debian's
python3-optuna 3.1) log densities, with the fix of optuna#5109 / PR #5110 (Optuna 3.5: the
truncated normal's log pdf lacked -log(scale)) applied, for the observations and points below.
Run: /usr/bin/python3 tests/tune/parzen_optuna.py (--unfixed: Optuna 3.1 as it is)"""
import numpy as np
import optuna.samplers._tpe._truncnorm as T
from optuna import distributions as D
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import default_weights

import sys

orig = T.logpdf
if "--unfixed" not in sys.argv:
    T.logpdf = lambda x, a, b, loc=0, scale=1: orig(x, a, b, loc, scale) - np.log(scale)
P = _ParzenEstimatorParameters(True, 1.0, True, False, default_weights, False)


def run(tag, dist, obs, xs):
    pe = _ParzenEstimator({"a": np.asarray(obs, dtype=float)}, {"a": dist}, P)
    xs = np.asarray(xs, dtype=int if isinstance(dist, D.CategoricalDistribution) else float)
    print(tag, ", ".join("%.10f" % v for v in pe.log_pdf({"a": xs})))


run("uniform", D.FloatDistribution(-5, 10), [0.3, 9.5, -4.0, 2.2, 2.3], [-5, 0, 2.25, 9.9])
run("loguniform", D.FloatDistribution(1e-4, 1e-1, log=True), [1e-3, 5e-2, 2e-4], [1e-4, 1e-3, 0.05])
run("int", D.IntDistribution(1, 20), [3, 7, 7, 19], [1, 7, 20])
run("choice", D.CategoricalDistribution(["a", "b", "c"]), [0, 2, 2, 2, 1], [0, 1, 2])
run("many", D.FloatDistribution(0, 1), [((i * 37) % 101) / 100.0 for i in range(30)], [0.0, 0.33, 0.5, 0.97])

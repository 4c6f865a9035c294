#!/usr/bin/env bash
# kiln's TPE against Optuna's TPESampler (Debian python3-optuna, /usr/bin/python3) on Branin,
# Hartmann-6 and a 10-D quadratic, SEEDS seeds x TRIALS trials each (default 20 x 100, seeds
# FIRST_SEED ..), both with their defaults (10 random startup trials, 24 EI candidates, gamma =
# min(ceil(0.1 n), 25)). Prints the median over seeds of the best value after 25, 50 and TRIALS
# trials for kiln's default TPE, kiln's TPE set up as Optuna's (kiln-opt: univariate, uniform
# weights, Optuna's magic clip; kiln31: that with Optuna 3.1's density), Optuna and kiln's random
# sampler, and each sampler's own time per trial at the last trial.
#   bash bench/tune_vs_optuna.sh [BUILD_DIR] [SEEDS] [TRIALS] [FIRST_SEED]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
SEEDS=${2:-20}
TRIALS=${3:-100}
FIRST=${4:-0}
BIN=$BUILD/bench_tune_sampler
[ -x "$BIN" ] || { echo "build $BIN first: cmake --build $BUILD --target bench_tune_sampler" >&2; exit 2; }
median() { # column $1 of "seed N best a b c" lines on stdin
    awk -v c="$1" '/^seed/ {v[n++] = $(c + 3)} END {
        for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) {t = v[i]; v[i] = v[j]; v[j] = t}
        printf "%.5g", n % 2 ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2 }'
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf "%-10s %-8s %12s %12s %12s %16s\n" objective sampler "best@25" "best@50" "best@$TRIALS" "ms/trial@$TRIALS"
for obj in branin hartmann6 quad10; do
    "$BIN" $obj "$SEEDS" "$TRIALS" tpe "$FIRST" >"$tmp/kiln"
    "$BIN" $obj "$SEEDS" "$TRIALS" tpe-optuna "$FIRST" >"$tmp/kiln-opt"
    "$BIN" $obj "$SEEDS" "$TRIALS" tpe31 "$FIRST" >"$tmp/kiln31"
    "$BIN" $obj "$SEEDS" "$TRIALS" random "$FIRST" >"$tmp/random"
    /usr/bin/python3 "$HERE/tune_optuna.py" $obj "$SEEDS" "$TRIALS" "$FIRST" >"$tmp/optuna"
    for s in kiln kiln-opt kiln31 optuna random; do
        ms=$(sed -n 's/^sampler ms\/trial: at trial [0-9]* \([0-9.]*\).*/\1/p' "$tmp/$s")
        printf "%-10s %-8s %12s %12s %12s %16s\n" $obj $s "$(median 1 <"$tmp/$s")" "$(median 2 <"$tmp/$s")" \
            "$(median 3 <"$tmp/$s")" "$ms"
    done
done
echo "(kiln: the default TPE (multivariate, EI weights, clip_exponent 2); kiln-opt: sampler {tpe:"
echo " {multivariate: false, weights: uniform, clip_exponent: 1}}, Optuna's univariate TPE with exact"
echo " densities (Optuna >= 3.5); kiln31: that with density: optuna31, the kernels without 1/sigma as"
echo " Optuna 3.1 (Debian's) computes them, optuna#5109.)"
echo "(median over seeds $FIRST..$((FIRST + SEEDS - 1)) of the best value so far; lower is better."
echo " Minima: branin 0.397887, hartmann6 -3.32237, quad10 0. ms/trial: the sampler's own time for"
echo " the last trial's point.)"

#!/usr/bin/env bash
# ASHA against no pruning on real data: the same TPE study of examples/fashion_mnist/tune.yaml
# (the MLP on Fashion-MNIST: learning rate, batch size, width, dropout; up to 9 epochs, ASHA
# rungs at epochs 1, 3, 9) run twice, with and without the pruner, TRIALS trials (default 16),
# P at once (default 2), THREADS cores in all (default 2). Prints each study's best validation
# accuracy, the summed training time of its trials (run durations) and its wall time.
#   bash bench/tune_asha.sh [BUILD] [TRIALS] [P] [THREADS]
# KEEP=DIR keeps the runs folder there (for a look at the curves) instead of deleting it.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
TRIALS=${2:-16}
P=${3:-2}
THREADS=${4:-2}
if [ -n "${KEEP:-}" ]; then
    RUNS=$KEEP
    mkdir -p "$RUNS"
else
    RUNS=$(mktemp -d /tmp/kiln-tune-asha-XXXXXX)
    trap 'rm -rf "$RUNS"' EXIT
fi
CFG=$HERE/../examples/fashion_mnist/tune.yaml
study() { # name, extra args
    local name=$1
    shift
    local t0=$(date +%s.%N)
    "$BUILD/kiln" tune "$CFG" --study "$name" --runs-dir "$RUNS" --trials "$TRIALS" --parallel "$P" \
        --threads "$THREADS" --quiet --set log.tensorboard=false "$@"
    local wall=$(echo "$(date +%s.%N) - $t0" | bc)
    local acc=$("$BUILD/kiln" tune show "$name" --runs-dir "$RUNS" | sed -n 's/^best: .*val_accuracy \([0-9.]*\),.*/\1/p')
    "$BUILD/kiln" runs list --runs-dir "$RUNS" --json --limit 100000 | /usr/bin/python3 -c '
import json, sys
name, wall, acc = sys.argv[1], float(sys.argv[2]), float(sys.argv[3] or 0)
runs = [r for r in json.load(sys.stdin) if r["name"].startswith(name + "-t")]
train = sum(r["duration"] for r in runs)
pruned = sum(r["status"] == "pruned" for r in runs)
print("%-8s trials %2d (pruned %2d)  best val_accuracy %.4f  training time %7.1f s  wall %7.1f s"
      % (name, len(runs), pruned, acc, train, wall))' "$name" "$wall" "$acc"
}
study asha
study none --set 'tune.pruner=none'

#!/usr/bin/env bash
# make demo: after the build, show kiln working end to end.
# Today: the C API trains an MLP on an in-memory data set (examples/c/mlp.c).
set -euo pipefail
BUILD=${1:-build}
echo "== kiln demo: an MLP learns a 3-class spiral through the C API (examples/c/mlp.c)"
"$BUILD/example_mlp"

#!/usr/bin/env bash
# make demo: after setup and build, train the Fashion-MNIST MLP for 2 epochs, evaluate it on the
# test set, and say where the run is. (Issue by issue this grows: export, serve, query.)
set -euo pipefail
BUILD=${1:-build}
KILN="$BUILD/kiln"
RUNS=${KILN_DEMO_RUNS:-runs}
echo "== kiln demo: train the Fashion-MNIST MLP (examples/fashion_mnist/mlp.yaml) for 2 epochs"
"$KILN" train examples/fashion_mnist/mlp.yaml --set train.epochs=2 --name demo --runs-dir "$RUNS"
RUN=$(ls -td "$RUNS"/fashion-mnist-mlp/demo-* | head -1)
echo
echo "== evaluate it on the 10,000 test images"
"$KILN" eval "$RUN"
echo
echo "== the run is in $RUN:"
ls "$RUN"
echo
echo "next:"
echo "  $KILN train examples/fashion_mnist/cnn.yaml       # the CNN (about 25 s an epoch on 2 cores)"
echo "  $KILN train --resume $RUN                         # continue a stopped run"
echo "  $KILN --help"

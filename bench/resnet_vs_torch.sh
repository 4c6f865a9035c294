#!/usr/bin/env bash
# bench/resnet_vs_torch.sh — resnet18 at 64x64, batch 64, 10 classes, 2 threads each, one run:
# kiln's training and inference samples/s against PyTorch (Debian's python3-torch,
# bench/peer_resnet_torch.py: torchvision's resnet18) and kiln's inference against ONNX Runtime
# (tests/oracles' onnxruntime-node, bench/peer_resnet_ort.js) running kiln's own exported
# model.onnx. Prints the three ratios and the CPU model and flags.
#
#   bash bench/resnet_vs_torch.sh [TRAIN_STEPS [INFER_BATCHES]]     (defaults 20 and 20)
#
# How each side is measured (the same batch of 64, after a warm-up, no data loading timed):
# - kiln training: `kiln train` of the built-in resnet18 (include_top, classes 10), Adam 1e-3,
#   on random float32 NPY rows held in memory, 2 epochs of TRAIN_STEPS steps each; the figure is
#   run.json's train_samples_per_second, the rate of the second (last) epoch, so the first epoch
#   is the warm-up (plan compilation, first touches). The loader only copies rows on its
#   prefetch thread, and no checkpoint, log point or TensorBoard write falls inside that epoch.
# - PyTorch training: 2 warm-up steps, then TRAIN_STEPS steps on one fixed random batch
#   (zero_grad, forward, cross-entropy, backward, Adam step).
# - kiln inference: bench_servable_infer on the run's exported version (`kiln export
#   --format onnx`): the batch-64 plan, 2 warm-up predictions, INFER_BATCHES timed predictions
#   of one fixed batch (in-process, no HTTP, outputs copied out).
# - PyTorch inference: eval mode under no_grad, 2 warm-up batches, INFER_BATCHES timed.
# - ONNX Runtime: the same model.onnx as kiln's, intra-op threads 2, sequential, all graph
#   optimizations, 2 warm-up runs, INFER_BATCHES timed runs of one fixed batch.
# Nothing here is a test: numbers depend on the machine (and on what else runs on it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
STEPS=${1:-20}
BATCHES=${2:-20}
THREADS=2
ORT=$ROOT/tests/oracles/node_modules/onnxruntime-node
/usr/bin/python3 -c 'import torch, torchvision, numpy' 2>/dev/null || { echo "bench: needs python3-torch and python3-torchvision (KILN_WITH_BENCH=1 bash scripts/setup.sh)" >&2; exit 2; }
[ -d "$ORT" ] || { echo "bench: needs onnxruntime-node in tests/oracles (bash scripts/setup.sh)" >&2; exit 2; }
[ -x "$BUILD/bench_servable_infer" ] || { echo "bench: build first (make build): $BUILD/bench_servable_infer is missing" >&2; exit 2; }
OMP_NUM_THREADS=$THREADS /usr/bin/python3 "$ROOT/bench/peer_blas.py" || exit 2 # the peer at its best, and which BLAS it is
grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: /CPU: /'
echo "CPU flags (SIMD): $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(sse4_2|avx|avx2|fma|f16c|avx512[a-z_]*|amx[a-z_]*)$' | tr '\n' ' ')"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
TMP=$(mktemp -d /tmp/kiln-bench-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

field() { grep -o "\"$2\":[[:space:]]*[0-9.e+-]*" "$1" | head -1 | sed 's/.*:[[:space:]]*//'; }

# kiln: random data, exactly STEPS batches an epoch
/usr/bin/python3 -c "
import numpy as np
r = np.random.default_rng(1)
n = 64 * $STEPS
np.save('$TMP/x.npy', r.standard_normal((n, 3, 64, 64), dtype=np.float32))
np.save('$TMP/y.npy', r.integers(0, 10, size=n).astype(np.int64))"
cat >"$TMP/resnet18.yaml" <<YAML
experiment: bench-resnet18
seed: 1
data:
  source: npy
  train: {x: $TMP/x.npy, y: $TMP/y.npy}
  batch_size: 64
model:
  input: [3, 64, 64]
  layers:
    - resnet: {depth: 18, include_top: true, classes: 10}
loss: softmax_cross_entropy
optimizer: {adam: {learning_rate: 0.001}}
train:
  epochs: 2
  checkpoint: {every_steps: 0, every_epochs: 1}
log: {tensorboard: false, every_steps: 1000000}
YAML
OMP_NUM_THREADS=$THREADS "$BUILD/kiln" train "$TMP/resnet18.yaml" --threads $THREADS --runs-dir "$TMP/runs" --quiet >&2
RUN=$(ls -d "$TMP/runs"/*/*)
KT=$(field "$RUN/run.json" train_samples_per_second)
"$BUILD/kiln" export "$RUN" --format onnx --to "$TMP/export" >&2
KI=$(OMP_NUM_THREADS=$THREADS "$BUILD/bench_servable_infer" "$TMP/export/1" 64 "$BATCHES" $THREADS |
     sed -n 's/^RESULT infer_samples_per_s=//p')
read -r TT TI < <(/usr/bin/python3 "$ROOT/bench/peer_resnet_torch.py" $THREADS "$STEPS" "$BATCHES" |
    sed -n 's/^RESULT train_samples_per_s=\([0-9.]*\) infer_samples_per_s=\([0-9.]*\)$/\1 \2/p')
OI=$(node "$ROOT/bench/peer_resnet_ort.js" "$TMP/export/1/model.onnx" $THREADS "$BATCHES" |
     sed -n 's/^RESULT infer_samples_per_s=//p')
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

printf '%-34s %10s %10s %8s\n' "resnet18 64x64, batch 64" kiln peer ratio
row() { printf '%-34s %10.1f %10.1f %7.2fx\n' "$1" "$2" "$3" "$(awk "BEGIN{print $2/$3}")"; }
row "training samples/s vs PyTorch" "$KT" "$TT"
row "inference samples/s vs PyTorch" "$KI" "$TI"
row "inference samples/s vs ONNX Runtime" "$KI" "$OI"

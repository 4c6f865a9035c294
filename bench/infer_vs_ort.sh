#!/usr/bin/env bash
# infer_vs_ort.sh — kiln's in-process inference against ONNX Runtime on the same models, one run:
# the Fashion-MNIST MLP and CNN (examples/fashion_mnist/*.yaml) and a built-in resnet18 (64x64,
# 10 classes), each trained for a few steps (only speed is compared), exported by kiln with
# --format onnx, and run
#   - by ONNX Runtime (npm onnxruntime-node, tests/oracles; 2 intra-op threads, all graph
#     optimizations; bench/peer_infer_ort.js),
#   - by kiln in process, fp32 (the export), folded fp32 (kiln optimize --fold) and int8 (kiln
#     optimize --fold --quantize int8 of it), with kiln bench (2 OpenMP threads, one worker).
# Printed per model: batch-1 latency p50/p99 and batch-64 rows/s of each, and the ratios
# kiln fp32 / ORT fp32 (goal >= 1.0) and kiln int8 / kiln fp32 at batch 64 (goal >= 2 on a CPU
# with VNNI); then the instruction sets: the CPU's, oneDNN's (kiln) and the int8 weight width.
#
#   bash bench/infer_vs_ort.sh [SECONDS]     (default 3 per measurement)
set -euo pipefail
SECS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KILN=$ROOT/build/kiln
FMNIST=/usr/share/datasets/fashion-mnist
[ -x "$KILN" ] || { echo "infer_vs_ort: build kiln first (make)" >&2; exit 2; }
[ -d "$ROOT/tests/oracles/node_modules/onnxruntime-node" ] ||
    { echo "infer_vs_ort: needs onnxruntime-node (bash scripts/setup.sh)" >&2; exit 2; }
command -v jq >/dev/null || { echo "infer_vs_ort: needs jq" >&2; exit 2; }
TMP=$(mktemp -d /tmp/kiln-bench-ort-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=2
# kiln's OpenMP threads sleep when idle: with spinning threads (libgomp's default) a busy shared
# machine stalls a 2-thread team for ~100 ms at a time (measured on the 2-core development box)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: //'), $(nproc) CPUs visible; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU vector ISA: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|amx)|vnni' | tr '\n' ' ')"
echo "ONNX Runtime $(node -e "console.log(require('$ROOT/tests/oracles/node_modules/onnxruntime-node/package.json').version)") (MLAS picks its kernels by CPUID at run time), 2 intra-op threads; kiln: 2 OpenMP threads, OMP_WAIT_POLICY=$OMP_WAIT_POLICY"
echo "each: batch-1 latency and batch-64 throughput over ${SECS} s, one request after another"

# resnet18 data: 256 random 3x64x64 images with 10 classes (NPY), enough to train 2 steps and calibrate
/usr/bin/python3 - "$TMP" <<'PY'
import sys, numpy as np
r = np.random.default_rng(1)
np.save(sys.argv[1] + "/x.npy", (r.random((256, 3, 64, 64)) * 255).astype(np.float32))
np.save(sys.argv[1] + "/y.npy", r.integers(0, 10, 256).astype(np.int64))
PY
cat >"$TMP/resnet18.yaml" <<YAML
experiment: resnet18-64
seed: 1
data:
  source: npy
  train: {x: $TMP/x.npy, y: $TMP/y.npy}
  test: {x: $TMP/x.npy, y: $TMP/y.npy}
  validation_split: 0.25
  normalize: {scale: 0.00392156862745098}
  batch_size: 32
model:
  input: [3, 64, 64]
  layers:
    - resnet: {depth: 18, classes: 10}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {sgd: {learning_rate: 0.01}}
train: {epochs: 1, max_steps: 2}
YAML

prepare() { # prepare NAME CONFIG STEPS -> $TMP/NAME/1 (fp32 + model.onnx), 2 (folded + int8), 3 (folded)
    local name=$1 cfg=$2 steps=$3
    "$KILN" train "$cfg" --runs-dir "$TMP/runs-$name" --quiet --set train.epochs=1 --set train.max_steps="$steps" \
        >"$TMP/$name-train.log" 2>&1 || { cat "$TMP/$name-train.log" >&2; exit 1; }
    "$KILN" export "$(ls -d "$TMP/runs-$name"/*/*/ | head -1)" --format onnx --to "$TMP/$name" >/dev/null
    "$KILN" optimize "$TMP/$name/1" --fold --quantize int8 --calibrate 2 --to "$TMP/$name" >"$TMP/$name-opt.log"
    "$KILN" optimize "$TMP/$name/1" --fold --to "$TMP/$name" >/dev/null # 3: folded fp32
}

kiln_point() { # kiln_point DIR BATCH -> "p50 p99 rows/s isa precision"
    "$KILN" bench "$1" --batch "$2" --concurrency 1 --threads 2 --duration "${SECS}s" --warmup 0.5s --json |
        jq -r '.points[0] as $p | "\($p.latency_ms.p50) \($p.latency_ms.p99) \($p.rows_per_s) \(.isa) \(.precision)"'
}

printf '\n%-9s %-12s %12s %12s %14s\n' model runtime "b1 p50 ms" "b1 p99 ms" "b64 rows/s"
SUMMARY=""
for m in mlp:examples/fashion_mnist/mlp.yaml:20:1,28,28 cnn:examples/fashion_mnist/cnn.yaml:20:1,28,28 \
         resnet18:$TMP/resnet18.yaml:2:3,64,64; do
    IFS=: read -r name cfg steps row <<<"$m"
    [[ $cfg = /* ]] || cfg=$ROOT/$cfg
    prepare "$name" "$cfg" "$steps"
    ort=$(node "$ROOT/bench/peer_infer_ort.js" "$TMP/$name/1/model.onnx" 2 "$row" "$SECS" | sed -n 's/^RESULT //p')
    eval "$ort"
    read -r f1p50 f1p99 _ f1isa _ <<<"$(kiln_point "$TMP/$name/1" 1)"
    read -r _ _ f64 _ _ <<<"$(kiln_point "$TMP/$name/1" 64)"
    read -r d1p50 d1p99 _ _ _ <<<"$(kiln_point "$TMP/$name/3" 1)"
    read -r _ _ d64 _ _ <<<"$(kiln_point "$TMP/$name/3" 64)"
    read -r q1p50 q1p99 _ _ qprec <<<"$(kiln_point "$TMP/$name/2" 1)"
    read -r _ _ q64 _ _ <<<"$(kiln_point "$TMP/$name/2" 64)"
    printf '%-9s %-12s %12.3f %12.3f %14.0f\n' "$name" "ORT fp32" "$b1_p50_ms" "$b1_p99_ms" "$b64_rows_per_s"
    printf '%-9s %-12s %12.3f %12.3f %14.0f\n' "" "kiln fp32" "$f1p50" "$f1p99" "$f64"
    printf '%-9s %-12s %12.3f %12.3f %14.0f\n' "" "kiln folded" "$d1p50" "$d1p99" "$d64"
    printf '%-9s %-12s %12.3f %12.3f %14.0f\n' "" "kiln $qprec" "$q1p50" "$q1p99" "$q64"
    SUMMARY+=$(awk -v n="$name" -v o1="$b1_p50_ms" -v o64="$b64_rows_per_s" -v f1="$f1p50" -v f64="$f64" -v q64="$q64" -v d64="$d64" \
        'BEGIN { printf "%-9s kiln fp32 / ORT: batch-1 latency x%.2f (ORT p50 / kiln p50), batch-64 throughput x%.2f;  at batch 64: kiln int8 / kiln fp32 x%.2f (int8 / folded fp32 x%.2f)\n", n, o1 / f1, f64 / o64, q64 / f64, q64 / d64 }')$'\n'
    ISA=$f1isa
done
echo
echo "ratios (> 1: kiln faster):"
printf '%s' "$SUMMARY"
echo "kiln: oneDNN ISA $ISA, int8 weights $(sed -n 's/^int8: weights \([0-9]*\)-bit.*/\1/p' "$TMP/mlp-opt.log")-bit ($(sed -n 's/^int8: weights [0-9]*-bit per output channel (\(.*\))/\1/p' "$TMP/mlp-opt.log"))"

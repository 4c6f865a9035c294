#!/usr/bin/env bash
# explain_vs_torch.sh — integrated gradients (64 steps, black baseline) for 100 Fashion-MNIST
# test images with the Fashion-MNIST CNN (examples/fashion_mnist/cnn.yaml): `kiln explain`
# against the PyTorch reimplementation (tests/explain_torch.py bench: the same path, one batch
# of 64 points per image, torch.autograd), both on 2 threads. Prints both times (best of
# REPEAT runs each, default 2), the ratio and the CPU model.
#
#   bash bench/explain_vs_torch.sh [build/kiln] [EXPORT_DIR]
# Without EXPORT_DIR the CNN is trained for a few steps first (the weights do not change the
# work; the time of explaining does not depend on how well the model learned).
#
# kiln's time is the whole command: loading the export, reading the inputs, the attributions
# and writing 100 NPY, PNG and JSON files. PyTorch's is the attribution loop alone (its model
# building and imports are left out), so the ratio does not favour kiln.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
KILN=${1:-$SRC/build/kiln}
EXPORT=${2:-}
REPEAT=${REPEAT:-2}
TMP=$(mktemp -d /tmp/kiln-bench-explain-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=2

if [ -z "$EXPORT" ]; then
    echo "training the Fashion-MNIST CNN for 40 steps (weights for the benchmark)..."
    "$KILN" train "$SRC/examples/fashion_mnist/cnn.yaml" --set train.max_steps=40 \
        --set train.checkpoint.every_steps=40 --set data.validation_split=0.01 \
        --runs-dir "$TMP/runs" --quiet >"$TMP/train.log" 2>&1 || { cat "$TMP/train.log"; exit 1; }
    "$KILN" export "$(ls -d "$TMP"/runs/*/*)" --to "$TMP/export" >/dev/null
    EXPORT=$TMP/export
fi
VDIR=$EXPORT
[ -f "$VDIR/model.json" ] || VDIR=$EXPORT/$(ls "$EXPORT" | grep -E '^[1-9][0-9]*$' | sort -n | tail -1)

/usr/bin/python3 - "$TMP/x.npy" <<'PY'
import gzip, sys, numpy as np
d = np.frombuffer(gzip.open('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz').read()[16:],
                  dtype=np.uint8).reshape(-1, 1, 28, 28)
np.save(sys.argv[1], d[:100])
PY

best() { sort -g | head -1; }
kiln_t=$(for ((i = 0; i < REPEAT; i++)); do
    s=$(date +%s.%N)
    "$KILN" explain "$VDIR" "$TMP/x.npy" --method integrated_gradients --steps 64 --out "$TMP/out" --quiet
    e=$(date +%s.%N)
    echo "$e - $s" | bc -l
done | best)
torch_t=$(for ((i = 0; i < REPEAT; i++)); do
    /usr/bin/python3 "$SRC/tests/explain_torch.py" bench "$VDIR" "$TMP/x.npy" 2 64 | sed -n 's/RESULT seconds=//p'
done | best)
cpu=$(grep -m1 "model name" /proc/cpuinfo | sed 's/.*: //')
printf 'CPU: %s (%s cores online; load average %s)\n' "$cpu" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'integrated gradients, 64 steps, 100 images, 2 threads (best of %d)\n' "$REPEAT"
printf '  kiln explain       %8.2f s\n' "$kiln_t"
printf '  PyTorch (autograd) %8.2f s\n' "$torch_t"
printf '  ratio (PyTorch / kiln) %.2fx\n' "$(echo "$torch_t / $kiln_t" | bc -l)"

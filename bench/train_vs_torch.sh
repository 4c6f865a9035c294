#!/usr/bin/env bash
# bench/train_vs_torch.sh — kiln vs PyTorch (Debian's python3-torch) training the same
# Fashion-MNIST models side by side in one run: the MLP and the CNN of
# ../shared/peers/torch_fmnist.py, batch 128, Adam 1e-3, the same epochs, 2 threads each, all
# 60,000 training images (no validation split), then the 10,000 test images.
#
#   bash bench/train_vs_torch.sh [EPOCHS_MLP [EPOCHS_CNN]]     (defaults 3 and 1)
#
# Prints training and evaluation samples/s for both, the ratios, both test accuracies, and the
# MLP's achieved GFLOP/s as a fraction of this machine's sgemm peak (bench_ops --peak) measured
# in the same run. Nothing here is a test: numbers depend on the machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PEER=${PEER:-$ROOT/../shared/peers/torch_fmnist.py}
EM=${1:-3}
EC=${2:-1}
THREADS=2
[ -f "$PEER" ] || { echo "bench: the peer $PEER is missing" >&2; exit 2; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "bench: needs python3-torch (KILN_WITH_BENCH=1 bash scripts/setup.sh)" >&2; exit 2; }
/usr/bin/python3 "$ROOT/bench/peer_blas.py" || exit 2 # the peer at its best, and which BLAS it is
grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: /CPU: /'
TMP=$(mktemp -d /tmp/kiln-bench-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

field() { grep -o "\"$2\":[[:space:]]*[0-9.e+-]*" "$1" | head -1 | sed 's/.*:[[:space:]]*//'; }

kiln_run() { # model epochs -> "train_rate eval_rate accuracy"
    OMP_NUM_THREADS=$THREADS "$BUILD/kiln" train "$ROOT/examples/fashion_mnist/$1.yaml" --set train.epochs=$2 \
        --set data.validation_split=0 --set train.early_stopping=null --threads $THREADS --runs-dir "$TMP/$1" --quiet >&2
    local j=$(ls -d "$TMP/$1"/*/*)/run.json
    echo "$(field "$j" train_samples_per_second) $(field "$j" test_samples_per_second) $(field "$j" test_accuracy)"
}

torch_run() { # model epochs -> "train_rate eval_rate accuracy"
    /usr/bin/python3 "$PEER" "$1" "$2" 128 $THREADS | sed -n 's/^RESULT .*train_samples_per_s=\([0-9.]*\) eval_samples_per_s=\([0-9.]*\) test_acc=\([0-9.]*\)$/\1 \2 \3/p'
}

PEAK=$(OMP_NUM_THREADS=$THREADS "$BUILD/bench_ops" --peak)
# MLP FLOPs per training sample: forward 2*(784*512 + 512*256 + 256*10); backward the same for the
# weight gradients, plus the input gradients of layers 2 and 3 (the first layer's input is data).
MLP_FLOP=$(( 2 * (784*512 + 512*256 + 256*10) * 2 + 2 * (512*256 + 256*10) ))

printf '%-5s %-7s %14s %14s %9s %14s %14s %9s\n' model epochs "kiln train/s" "torch train/s" ratio "kiln eval/s" "torch eval/s" ratio
for spec in "mlp $EM" "cnn $EC"; do
    set -- $spec
    read -r kt ke ka < <(kiln_run "$1" "$2")
    read -r tt te ta < <(torch_run "$1" "$2")
    printf '%-5s %-7s %14.0f %14.0f %8.2fx %14.0f %14.0f %8.2fx\n' "$1" "$2" "$kt" "$tt" "$(awk "BEGIN{print $kt/$tt}")" \
        "$ke" "$te" "$(awk "BEGIN{print $ke/$te}")"
    printf '      test accuracy: kiln %.4f  torch %.4f  (difference %+.2f points)\n' "$ka" "$ta" "$(awk "BEGIN{print 100*($ka-$ta)}")"
    if [ "$1" = mlp ]; then
        awk -v r="$kt" -v f="$MLP_FLOP" -v p="$PEAK" -v t="$tt" 'BEGIN {
            printf "      MLP training: kiln %.1f GFLOP/s = %.0f%% of the sgemm peak (%.1f GFLOP/s); torch %.0f%%\n",
                   r*f/1e9, 100*r*f/1e9/p, p, 100*t*f/1e9/p }'
    fi
done

#!/usr/bin/env bash
# bench/portable_vs_native.sh — what the portable default build (x86-64 baseline for kiln's own
# code; oneDNN chooses its kernels at run time either way) costs against a -march=native build
# (-DKILN_NATIVE=ON), side by side in one run on this machine.
#
#   bash bench/portable_vs_native.sh [STEPS]      (default 300 training steps per model)
#
# Builds build-native/ next to build/ when missing, then for each build: the dense and conv
# layer benchmark (bench_ops, GFLOP/s) and training throughput of the Fashion-MNIST MLP and CNN
# (examples/fashion_mnist, batch 128, 2 threads, STEPS steps, no validation) from run.json's
# train_samples_per_second. Prints both and the ratio portable / native.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STEPS=${1:-300}
THREADS=2
P=$ROOT/build N=$ROOT/build-native
[ -x "$P/kiln" ] || { echo "portable_vs_native: build kiln first (make)" >&2; exit 2; }
if [ ! -x "$N/kiln" ]; then
    echo "building $N (-DKILN_NATIVE=ON) ..."
    cmake -S "$ROOT" -B "$N" -DCMAKE_BUILD_TYPE=Release -DKILN_NATIVE=ON >/dev/null
    cmake --build "$N" -j "$(nproc)" --target kiln_cli bench_ops >/dev/null
fi
grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: /CPU: /'
echo "CPU flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_tile|fma)$' | tr '\n' ' ')"
TMP=$(mktemp -d /tmp/kiln-bench-isa-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

train_rate() { # build model -> samples/s
    local out=$TMP/$(basename "$1")-$2
    OMP_NUM_THREADS=$THREADS "$1/kiln" train "$ROOT/examples/fashion_mnist/$2.yaml" --threads $THREADS \
        --set train.epochs=1 --set train.max_steps=$STEPS --set data.validation_split=0 \
        --set train.early_stopping=null --runs-dir "$out" --quiet >/dev/null
    grep -o '"train_samples_per_second":[[:space:]]*[0-9.e+-]*' "$(ls -d "$out"/*/*)/run.json" | sed 's/.*:[[:space:]]*//'
}

printf '%-34s %12s %12s %8s\n' case portable native ratio
while read -r name p n; do
    printf '%-34s %12.1f %12.1f %7.3fx\n' "$name" "$p" "$n" "$(awk "BEGIN{print $p/$n}")"
done < <(
    # bench_ops rows: name words, then fwd ms, GFLOP/s, %peak, fwd+bwd ms, GFLOP/s, %peak
    rows='$NF ~ /%$/ && NF >= 9 { n = $1; for (i = 2; i <= NF - 6; i++) n = n "_" $i; print n "_GFLOP/s", $(NF-1) }'
    paste -d' ' <(OMP_NUM_THREADS=$THREADS "$P/bench_ops" | awk "$rows") \
                <(OMP_NUM_THREADS=$THREADS "$N/bench_ops" | awk "$rows" | cut -d' ' -f2)
    for m in mlp cnn; do
        p=$(train_rate "$P" $m); n=$(train_rate "$N" $m)
        echo "train_${m}_samples/s $p $n"
    done)

#!/usr/bin/env bash
# bench/dist_scaling.sh — data-parallel scaling on this machine (docs/distributed.md): the
# Fashion-MNIST MLP and CNN of examples/fashion_mnist/ (global batch 128, Adam) trained by
#   1 rank x 1 thread  (kiln train --threads 1)
#   2 ranks x 1 thread (mpirun -np 2 kiln train, OMP_NUM_THREADS=1)
# samples/s of each, scaling efficiency = rate(2) / (2 x rate(1)), the share of step time rank 0
# spent waiting for gradient reductions, and PyTorch DistributedDataParallel with 2 processes x
# 1 thread (gloo backend; bench/dist_torch_ddp.py) on the same models and global batch.
#
#   bash bench/dist_scaling.sh [MLP_STEPS [CNN_STEPS]]     (defaults 400 and 150)
#
# Nothing here is a test: the numbers depend on the machine (and on what else runs on it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SM=${1:-400}
SC=${2:-150}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
TMP=$(mktemp -d /tmp/kiln-bench-dist-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: /CPU: /'
echo "cores: $(nproc)"

# the last samples_per_second point of the run in $1 (global samples: every rank's rows)
rate() { grep '"name":"samples_per_second"' "$(ls -d "$1"/*/*)/metrics.jsonl" | tail -1 | sed 's/.*"value":\([0-9.e+]*\).*/\1/'; }
SET=(--set data.validation_split=0 --set train.early_stopping=null --set data.test=null --set log.every_steps=25
     --set log.tensorboard=false --set train.checkpoint.every_steps=0 --set train.checkpoint.every_epochs=0)

for m in mlp cnn; do
    steps=$SM; [ $m = cnn ] && steps=$SC
    "$BUILD/kiln" train "$ROOT/examples/fashion_mnist/$m.yaml" "${SET[@]}" --set train.max_steps=$steps \
        --threads 1 --runs-dir "$TMP/$m-1" --quiet
    r1=$(rate "$TMP/$m-1")
    mpirun --oversubscribe -np 2 --bind-to core "$BUILD/kiln" train "$ROOT/examples/fashion_mnist/$m.yaml" "${SET[@]}" \
        --set train.max_steps=$steps --runs-dir "$TMP/$m-2" >"$TMP/$m-2.out" 2>&1
    r2=$(rate "$TMP/$m-2")
    wait=$(sed -n 's/^dist: .*steps on 2 ranks, \([0-9.]*\)% of the step time.*/\1/p' "$TMP/$m-2.out")
    rt=$(/usr/bin/python3 "$ROOT/bench/dist_torch_ddp.py" $m $steps 128 2 | sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p')
    awk -v m=$m -v r1="$r1" -v r2="$r2" -v w="$wait" -v rt="$rt" 'BEGIN {
        printf "%s: 1 rank x 1 thread %.0f samples/s; 2 ranks x 1 thread %.0f samples/s; scaling efficiency %.0f%%; waiting in allreduce %s%% of step time\n", m, r1, r2, 100 * r2 / (2 * r1), w
        printf "%s: PyTorch DDP (gloo) 2 processes x 1 thread %.0f samples/s; kiln 2 ranks / PyTorch = %.2fx\n", m, rt, r2 / rt }'
done

#!/usr/bin/env bash
# Distillation beats the same student trained without a teacher (docs/optimize.md
# "Distillation"): a CNN teacher trained on 20,000 Fashion-MNIST images, a small CNN student
# trained on 1,000 others for 30 epochs with and without it (same seed, data, epochs and
# optimizer), both scored on the 10,000 test images. Deterministic (fixed seeds, deterministic
# kernels): the same numbers on every run with the same thread count. Prints both accuracies.
# About a minute of CPU on 2 cores (ctest label long).
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

run_dir() { ls -d "$1"/*/* | head -1; }
accuracy() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['final_metrics']['test_accuracy'])" "$1/run.json"; }

setup() {
    $PY - "$FMNIST" "$TMP" <<'PYEOF'
import gzip, sys
import numpy as np
d, out = sys.argv[1], sys.argv[2]
def images(f): return np.frombuffer(gzip.open(f'{d}/{f}').read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
def labels(f): return np.frombuffer(gzip.open(f'{d}/{f}').read(), np.uint8, offset=8).astype(np.int64)
x, y = images('train-images-idx3-ubyte.gz'), labels('train-labels-idx1-ubyte.gz')
np.save(f'{out}/tx.npy', x[:20000].astype(np.float32)); np.save(f'{out}/ty.npy', y[:20000])
np.save(f'{out}/sx.npy', x[20000:21000].astype(np.float32)); np.save(f'{out}/sy.npy', y[20000:21000])
np.save(f'{out}/ex.npy', images('t10k-images-idx3-ubyte.gz').astype(np.float32))
np.save(f'{out}/ey.npy', labels('t10k-labels-idx1-ubyte.gz'))
PYEOF
    cat >"$TMP/teacher.yaml" <<YAML
experiment: teacher
seed: 1
data:
  source: npy
  train: {x: $TMP/tx.npy, y: $TMP/ty.npy}
  test: {x: $TMP/ex.npy, y: $TMP/ey.npy}
  normalize: {scale: 0.00392156862745098}
  batch_size: 64
model:
  input: [1, 28, 28]
  layers:
    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}
    - maxpool2d: {size: 2}
    - conv2d: {filters: 16, kernel: 3, padding: same, activation: relu}
    - maxpool2d: {size: 2}
    - flatten
    - dense: {units: 32, activation: relu}
    - dense: {units: 10}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.003}}
train: {epochs: 1}
log: {tensorboard: false}
YAML
    cat >"$TMP/student.yaml" <<YAML
experiment: student
seed: 1
data:
  source: npy
  train: {x: $TMP/sx.npy, y: $TMP/sy.npy}
  test: {x: $TMP/ex.npy, y: $TMP/ey.npy}
  normalize: {scale: 0.00392156862745098}
  batch_size: 64
model:
  input: [1, 28, 28]
  layers:
    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}
    - maxpool2d: {size: 2}
    - flatten
    - dense: {units: 10}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.003}}
train: {epochs: 30}
log: {tensorboard: false}
YAML
}

t_distillation_beats_plain() {
    k train "$TMP/teacher.yaml" --runs-dir "$TMP/rt" --quiet
    check "teacher: exit 0" [ $rc = 0 ]
    local teacher=$(run_dir "$TMP/rt")
    k train "$TMP/student.yaml" --runs-dir "$TMP/rp" --quiet
    check "plain student: exit 0" [ $rc = 0 ]
    k train "$TMP/student.yaml" --runs-dir "$TMP/rd" --quiet \
        --set "train.distill={teacher: $teacher, temperature: 2, alpha: 0.5}"
    check "distilled student: exit 0" [ $rc = 0 ]
    local t=$(accuracy "$teacher") p=$(accuracy "$(run_dir "$TMP/rp")") d=$(accuracy "$(run_dir "$TMP/rd")")
    echo "  test accuracy: teacher $t, student alone $p, student distilled $d"
    check "distillation beats the student alone ($d > $p)" $PY -c "import sys; sys.exit(not $d > $p)"
}

setup
cd "$TMP"
run_test t_distillation_beats_plain
finish

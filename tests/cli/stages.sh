#!/usr/bin/env bash
# stages: and freezing end to end on a small CNN (a scoped backbone with a batch norm, a dense
# head) over generated NPY data: kiln train --dry-run, config errors, frozen bytes unchanged in a
# frozen stage (batch-norm moving statistics and Adam moments included) and changed after
# unfreezing, the stage in metrics.jsonl and checkpoints, and --resume from checkpoints taken at
# several points (right after the stage switch too) and after kill -9 ending bit for bit where
# the uninterrupted run ends.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

run_dir() { ls -d "$1"/*/* | head -1; }

# tensor NAME of a safetensors file, as hex
tensor() {
    $PY - "$1" "$2" <<'PYEOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
s, e = h[sys.argv[2]]['data_offsets']
print(b[8 + n + s:8 + n + e].hex())
PYEOF
}

setup() {
    $PY -c "
import numpy as np
r = np.random.default_rng(0)
y = r.integers(0, 3, size=200).astype(np.int64)
x = r.normal(size=(200, 1, 8, 8)).astype(np.float32)
x[:, 0] += y[:, None, None] * 0.5
np.save('$TMP/x.npy', x); np.save('$TMP/y.npy', y)"
    cat >"$TMP/cnn.yaml" <<YAML
experiment: stages
seed: 3
data:
  source: npy
  train: {x: $TMP/x.npy, y: $TMP/y.npy}
  validation_split: 0.2
  batch_size: 32
model:
  input: [1, 8, 8]
  layers:
    - conv2d: {name: backbone/conv1, filters: 4, kernel: 3, padding: same}
    - batchnorm: {name: backbone/bn1}
    - relu: {name: backbone/relu1}
    - conv2d: {name: backbone/block1/conv2, filters: 4, kernel: 3, padding: same, activation: relu}
    - global_avgpool2d: {name: pool}
    - dropout: {rate: 0.1}
    - dense: {name: head, units: 3}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01, weight_decay: 0.01}}
train:
  epochs: 2
  checkpoint: {every_steps: 1, keep: 1000}
log: {tensorboard: false, every_steps: 2}
stages:
  - freeze: ["backbone/*"]
  - freeze: []
    optimizer: {sgd: {learning_rate: 0.05, momentum: 0.9}}
    schedule: {cosine: {warmup_steps: 2}}
    train: {epochs: 2}
YAML
}

t_dry_run() {
    sed 's#x: [^,]*,#x: /nonexistent/x.npy,#' "$TMP/cnn.yaml" >"$TMP/nodata.yaml"
    k train "$TMP/nodata.yaml" --dry-run
    check "exit 0 without reading the (missing) data" [ $rc = 0 ]
    check "stage 1 header" has "stage 1/2: 2 epochs, adam"
    check "frozen conv" grep -Eq '^backbone/conv1 +conv2d +\(None, 4, 8, 8\) +40 +frozen' "$TMP/out"
    check "frozen batch norm in inference mode" grep -Eq '^backbone/bn1 .*frozen \(inference mode\)' "$TMP/out"
    check "head trainable" grep -Eq '^head +dense +\(None, 3\) +15 +yes' "$TMP/out"
    check "totals" has "Frozen params: 196"
    check "stage 2 unfreezes" grep -Eq '^backbone/conv1 .* yes' "$TMP/out"
    check "no run folder" [ ! -d runs ]
}

t_config_errors() {
    printf '  - model: {input: [1, 4, 4]}\n' >>"$TMP/bad1.yaml"
    sed '/^stages:/,$d' "$TMP/cnn.yaml" >"$TMP/bad1.yaml"
    printf 'stages:\n  - {train: {epochs: 1}}\n  - model: {input: [1, 4, 4]}\n' >>"$TMP/bad1.yaml"
    k train "$TMP/bad1.yaml" --dry-run
    check "model in a stage: exit 2" [ $rc = 2 ]
    check "names the stage and key with its line" grep -Eq 'bad1.yaml:[0-9]+:[0-9]+: stages\[1\]\.model: cannot change between stages' "$TMP/out"
    sed '/^stages:/,$d' "$TMP/cnn.yaml" >"$TMP/bad2.yaml"
    printf 'stages:\n  - {train: {epochs: 1}}\n  - optimizer: {adam: {learning_rate: -1}}\n' >>"$TMP/bad2.yaml"
    k train "$TMP/bad2.yaml"
    check "bad value: exit 2" [ $rc = 2 ]
    check "key path" grep -Eq 'bad2.yaml:[0-9]+:[0-9]+: stages\[1\]\.optimizer\.adam\.learning_rate: -1 is out of range' "$TMP/out"
    sed '/^stages:/,$d' "$TMP/cnn.yaml" >"$TMP/bad3.yaml"
    printf 'stages:\n  - {freeze: ["backbon/*"]}\n' >>"$TMP/bad3.yaml"
    k train "$TMP/bad3.yaml" --dry-run
    check "glob matching nothing: exit 2" [ $rc = 2 ]
    check "names the glob" has "'backbon/*' matches no parameter"
    sed '/^stages:/,$d' "$TMP/cnn.yaml" >"$TMP/bad4.yaml"
    printf 'stages:\n  - {data: {batch_size: 8}}\n' >>"$TMP/bad4.yaml"
    k train "$TMP/bad4.yaml" --dry-run
    check "data.batch_size: exit 2" [ $rc = 2 ]
    check "only augment" has "stages[0].data.batch_size: cannot change between stages"
    sed '/^stages:/,$d' "$TMP/cnn.yaml" >"$TMP/bad5.yaml"
    printf 'stages:\n  - {train: {epochs: 1}}\n  - {optimizer_state: keep, optimizer: sgd}\n' >>"$TMP/bad5.yaml"
    k train "$TMP/bad5.yaml" --runs-dir "$TMP/rbad" --quiet
    check "keep across optimizer kinds: exit 2" [ $rc = 2 ]
    check "says why" has "keep needs the optimizer state of the previous stage"
}

t_freeze_and_stages() {
    k train "$TMP/cnn.yaml" --runs-dir "$TMP/ra" --quiet
    check "exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/ra") c
    c=$d/checkpoints
    check "20 steps" [ -f "$c/step-20/weights.safetensors" ]
    for p in backbone/conv1.kernel backbone/conv1.bias backbone/bn1.gamma backbone/bn1.beta \
        backbone/bn1.moving_mean backbone/bn1.moving_variance backbone/block1/conv2.kernel; do
        check "$p unchanged through stage 1" [ "$(tensor "$c/step-1/weights.safetensors" $p)" = "$(tensor "$c/step-10/weights.safetensors" $p)" ]
        check "$p changed in stage 2" [ "$(tensor "$c/step-10/weights.safetensors" $p)" != "$(tensor "$c/step-20/weights.safetensors" $p)" ]
    done
    local m=$(tensor "$c/step-9/weights.safetensors" backbone/conv1.kernel.adam_m)
    check "adam moments of a frozen kernel stay zero" [ -n "$m" -a -z "$(echo "$m" | tr -d 0)" ]
    m=$(tensor "$c/step-9/weights.safetensors" head.kernel.adam_m)
    check "the head's do not" [ -n "$(echo "$m" | tr -d 0)" ]
    check "head changed in stage 1" [ "$(tensor "$c/step-1/weights.safetensors" head.kernel)" != "$(tensor "$c/step-10/weights.safetensors" head.kernel)" ]
    check "stage in metrics.jsonl" grep -q '"stage":2' "$d/metrics.jsonl"
    check "stage 1 points too" grep -q '"step":2,.*"stage":1' "$d/metrics.jsonl"
    check "state.json records the stage" grep -q '"stage":[[:space:]]*1' "$c/step-11/state.json"
    check "and where it began" grep -q '"stage_step":[[:space:]]*10' "$c/step-11/state.json"
    check "log.txt has the summary" grep -q '^Frozen params: 196' "$d/log.txt"
    check "log.txt has the stage switch" grep -q '^stage 2/2 from epoch 3, step 10' "$d/log.txt"
    check "summary.txt has both stages" grep -q '^stage 2/2' "$d/summary.txt"
    cp -r "$d" "$TMP/uninterrupted"
}

# Resumes a copy of the uninterrupted run as if it had been killed right after checkpoint $1.
resume_from() {
    local src=$TMP/uninterrupted dst=$TMP/cut-$1/stages/run
    mkdir -p "$TMP/cut-$1/stages" && cp -r "$src" "$dst"
    for s in $(ls "$dst/checkpoints" | sed -n 's/^step-//p'); do [ "$s" -gt "$1" ] && rm -rf "$dst/checkpoints/step-$s"; done
    printf 'step-%s' "$1" >"$dst/checkpoints/latest"
    "$KILN" train --resume "$dst" --quiet >"$TMP/out" 2>&1
    rc=$?
    check "resume from step $1: exit 0" [ $rc = 0 ]
    check "resume from step $1: final weights bitwise equal" cmp -s "$src/checkpoints/step-20/weights.safetensors" "$dst/checkpoints/step-20/weights.safetensors"
}

t_resume_points() {
    resume_from 3   # inside stage 1
    resume_from 10  # right after the switch to stage 2
    resume_from 11  # the first step of stage 2
    resume_from 17  # inside stage 2
}

t_kill9() {
    local long="stages[1].train.epochs=40" # stage 2: steps 11 to 210
    "$KILN" train "$TMP/cnn.yaml" --runs-dir "$TMP/rk" --quiet --set "$long" >/dev/null 2>&1 &
    local pid=$! i d
    for i in $(seq 1 3000); do
        d=$(ls -d "$TMP"/rk/*/* 2>/dev/null | head -1)
        [ -n "$d" ] && [ -f "$d/checkpoints/latest" ] && [ "$(sed -n 's/^step-//p' "$d/checkpoints/latest")" -ge 60 ] 2>/dev/null && break
        sleep 0.01
    done
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    d=$(run_dir "$TMP/rk")
    local at=$(sed -n 's/^step-//p' "$d/checkpoints/latest")
    check "killed in stage 2 (latest step $at)" [ "$at" -gt 10 -a "$at" -lt 210 ]
    "$KILN" train --resume "$d" --quiet >"$TMP/out" 2>&1
    check "resume after kill -9: exit 0" [ $? = 0 ]
    "$KILN" train "$TMP/cnn.yaml" --runs-dir "$TMP/rk2" --quiet --set "$long" >/dev/null 2>&1
    local d2=$(run_dir "$TMP/rk2")
    check "after kill -9: final weights bitwise equal" cmp -s "$d/checkpoints/step-210/weights.safetensors" "$d2/checkpoints/step-210/weights.safetensors"
}

setup
cd "$TMP"
run_test t_dry_run
run_test t_config_errors
run_test t_freeze_and_stages
run_test t_resume_points
run_test t_kill9
finish

#!/usr/bin/env bash
# model.init_from through kiln train: a new run starts from an earlier run's weights by name; the
# report (loaded / missing / unexpected / shape mismatch) goes to stderr and log.txt; strict: true
# makes a mismatch a config error (exit 2); a resumed run takes its own checkpoint, not init_from.
. "$(dirname "$0")/lib.sh"

run_dir() { ls -d "$1"/*/* | head -1; }

# $1: name, $2: the head's name, $3: its units, $4: extra model lines
config() {
    cat >"$TMP/$1.yaml" <<YAML
experiment: $1
seed: 1
data:
  source: idx
  train: {images: $FMNIST/train-images-idx3-ubyte.gz, labels: $FMNIST/train-labels-idx1-ubyte.gz}
  normalize: {scale: 0.00392156862745098}
  batch_size: 64
model:
  input: [1, 28, 28]
  layers:
    - flatten
    - dense: {units: 16, name: body/fc, activation: relu}
    - dense: {units: $3, name: $2}
$4
loss: softmax_cross_entropy
train: {epochs: 1, max_steps: 20, checkpoint: {every_steps: 10}}
log: {tensorboard: false}
YAML
    echo "$TMP/$1.yaml"
}

t_from_run() {
    k train "$(config base head 10 "")" --runs-dir "$TMP/runs" --quiet
    check "base run trains" [ $rc = 0 ]
    local base=$(run_dir "$TMP/runs")
    # a relative path: relative to the config file's folder
    local rel=${base#$TMP/}
    k train "$(config tuned head2 10 "  init_from: $rel")" --runs-dir "$TMP/runs2" --quiet
    check "exit 0" [ $rc = 0 ]
    check "report on stderr" has "loaded 2 of 4 parameters"
    check "missing named" has "missing in the file (2, left as initialized): head2.kernel, head2.bias"
    check "unexpected named" has "unexpected in the file (2, not used): head.bias, head.kernel"
    local d=$(run_dir "$TMP/runs2")
    check "report in log.txt" grep -q "init_from .*checkpoints/step-20/weights.safetensors (convention kiln): loaded 2 of 4" "$d/log.txt"
    check "config.yaml has the absolute path" grep -q "init_from: $base" "$d/config.yaml"
    # --resume takes the run's checkpoint: no init_from again
    k train --resume "$d" --quiet
    check "resume exit 0" [ $rc = 0 ]
    check "no init_from on resume" bash -c "! grep -q init_from '$TMP/out'"
    check "log.txt has the report once" [ "$(grep -c 'init_from .*loaded' "$d/log.txt")" = 1 ]
}

t_strict_and_errors() {
    k train "$(config base head 10 "")" --runs-dir "$TMP/s" --quiet
    local base=$(run_dir "$TMP/s")
    k train "$(config wide head 12 "  init_from: {path: $base, strict: true}")" --runs-dir "$TMP/s2" --quiet
    check "strict mismatch: exit 2" [ $rc = 2 ]
    check "names the mismatch" has "head.kernel: file F32 [16, 10], model [16, 12]"
    check "no run folder made" [ ! -d "$TMP/s2" ]
    k train "$(config nofile head 10 "  init_from: $TMP/none.safetensors")" --runs-dir "$TMP/s3" --quiet
    check "missing file: exit 2" [ $rc = 2 ]
    check "names it" has "model.init_from: $TMP/none.safetensors: no such file or folder"
    k train "$(config badkey head 10 "  init_from: {path: $base, stict: true}")" --runs-dir "$TMP/s3" --quiet
    check "unknown key: exit 2" [ $rc = 2 ]
    check "names the key" has "model.init_from: unknown key 'stict'"
}

run_test t_from_run
run_test t_strict_and_errors
finish

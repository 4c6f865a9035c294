#!/usr/bin/env bash
# data.augment end to end on a JPEG class-folder tree (kiln_example_data --fashion-jpeg): kiln data
# preview (the PNG, the labels, usage and config errors), a training run that logs the augmented
# grid to TensorBoard and its data wait to run.json, and an augmented run (random resized crop of
# the decoded JPEGs, flips, jitter, erasing, mixup, 3 decode workers) killed with kill -9 and
# resumed: its final weights and metrics equal an uninterrupted run's bit for bit.
. "$(dirname "$0")/lib.sh"
EXAMPLE_DATA=$(dirname "$KILN")/kiln_example_data
FJ=$TMP/fj
"$EXAMPLE_DATA" --fashion-jpeg "$FJ" --limit 1200 >/dev/null || { echo "kiln_example_data failed"; exit 1; }

run_dir() { ls -d "$1"/*/* | head -1; }
json() { grep -o "\"$2\":[[:space:]]*[^,}]*" "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//; s/"//g'; }
latest_step() { sed -n 's/^step-//p' "$1/checkpoints/latest" 2>/dev/null; }
wait_for_step() { # run folder pattern, step: up to 60 s for a checkpoint at >= step
    local i d
    for i in $(seq 1 6000); do
        d=$(ls -d "$1"/*/* 2>/dev/null | head -1)
        if [ -n "$d" ] && [ -f "$d/checkpoints/latest" ] && [ "$(latest_step "$d")" -ge "$2" ] 2>/dev/null; then return 0; fi
        sleep 0.01
    done
    return 1
}

CFG=$TMP/aug.yaml
cat >"$CFG" <<YAML
experiment: augment
seed: 5
data:
  source: images
  train: {path: $FJ/train}
  test: {path: $FJ/test}
  validation_split: 0.1
  image: {channels: grayscale}
  normalize: {scale: 0.00392156862745098}
  batch_size: 16
  workers: 3
  augment:
    - random_resized_crop: {scale: [0.5, 1.0]}
    - horizontal_flip
    - color_jitter: {brightness: 0.3, contrast: 0.3}
    - random_erasing: {p: 0.3}
    - mixup: {alpha: 0.4}
model:
  input: [1, 28, 28]
  layers:
    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}
    - maxpool2d: {size: 2}
    - flatten
    - dense: {units: 32, activation: relu}
    - dense: {units: 10}
loss: softmax_cross_entropy
metrics: [accuracy]
train:
  epochs: 3
  checkpoint: {every_steps: 10, keep: 2}
log: {every_steps: 1000}
YAML

t_preview() {
    k data preview "$CFG" --out "$TMP/grid.png" --n 9
    check "preview exit 0" [ $rc = 0 ]
    check "says what it wrote" has "9 augmented training samples of epoch 0"
    check "a PNG" bash -c "head -c 4 '$TMP/grid.png' | od -An -c | grep -q 'P   N   G'"
    check "labels by class name, mixed with weights" grep -Eq '^ +[0-9]+: [01]\.[0-9]{3} [A-Za-z_-]+ \+ 0\.[0-9]{3} [A-Za-z_-]+$' "$TMP/out"
    k data preview "$CFG" --out "$TMP/grid2.png" --n 9
    check "the same grid twice" cmp -s "$TMP/grid.png" "$TMP/grid2.png"
    k data preview "$CFG" --out "$TMP/grid3.png" --n 9 --epoch 1
    check "another epoch, another grid" bash -c "! cmp -s '$TMP/grid.png' '$TMP/grid3.png'"
    k data preview "$CFG" --out "$TMP/g.png" --set 'data.augment=[]'
    check "no augmentation: still a grid" [ $rc = 0 ]
    check "says so" has "not augmented"
    k data preview "$CFG"
    check "no --out: exit 2" [ $rc = 2 ]
    check "names it" has "missing --out"
    k data preview "$CFG" --out "$TMP/g.png" --n 0
    check "--n 0: exit 2" [ $rc = 2 ]
    k data nonsense
    check "unknown data command: exit 2" [ $rc = 2 ]
    k data preview "$CFG" --out "$TMP/g.png" --set 'data.augment=[horizontal_flip, random_resized_crop]'
    check "random_resized_crop not first: exit 2" [ $rc = 2 ]
    check "names the op and its place" has "data.augment[1].random_resized_crop: must be the first"
    k data preview "$CFG" --out "$TMP/g.png" --set 'data.augment=[{rotation: {degrez: 3}}]'
    check "a misspelt key: exit 2" [ $rc = 2 ]
    check "suggests the key" has "did you mean 'degrees'?"
    k data preview "$CFG" --out "$TMP/g.png" --set 'data.augment=[{random_erasing: {value: lots}}]'
    check "a bad erasing value: exit 2" [ $rc = 2 ]
    check "names it" has "random_erasing.value"
    k data preview "$CFG" --out "$TMP/nowhere/g.png"
    check "an unwritable --out: exit 1" [ $rc = 1 ]
    k train "$CFG" --set 'loss=mse' --set data.task=regression --runs-dir "$TMP/bad" --quiet
    check "mixup without a classifier: exit 2" [ $rc = 2 ]
}

t_train_logs_grid_and_wait() {
    k train "$CFG" --set train.epochs=1 --set 'train.checkpoint={every_steps: 0}' --runs-dir "$TMP/tb" --quiet
    check "train exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/tb")
    check "the epoch line has the data wait" grep -Eq '^epoch 1/1: .*waiting for data [0-9.]+%\)' "$d/log.txt"
    check "run.json has train_data_wait_fraction" grep -q '"train_data_wait_fraction"' "$d/run.json"
    check "TensorBoard has augmented_samples" bash -c "cat '$d'/train/events.out.tfevents.* | grep -aq augmented_samples"
}

t_resume_after_kill9_is_exact() {
    k train "$CFG" --runs-dir "$TMP/a" --quiet
    check "uninterrupted run exit 0" [ $rc = 0 ]
    "$KILN" train "$CFG" --runs-dir "$TMP/b" --quiet >/dev/null 2>&1 &
    local pid=$!
    check "a checkpoint in the middle appeared" wait_for_step "$TMP/b" 70
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    local a=$(run_dir "$TMP/a") b=$(run_dir "$TMP/b")
    local last=$(latest_step "$a") at=$(latest_step "$b")
    check "killed mid-run (latest step $at < $last)" [ "$at" -lt "$last" ]
    check "status still says running" [ "$(json "$b" status)" = running ]
    k train --resume "$b" --quiet
    check "resume exit 0" [ $rc = 0 ]
    check "status finished" [ "$(json "$b" status)" = finished ]
    check "final weights bitwise equal to the uninterrupted run's" cmp -s "$a/checkpoints/step-$last/weights.safetensors" "$b/checkpoints/step-$last/weights.safetensors"
    for m in loss accuracy val_loss val_accuracy test_loss test_accuracy; do
        check "final $m equal ($(json "$a" "$m") vs $(json "$b" "$m"))" [ "$(json "$a" "$m")" = "$(json "$b" "$m")" ]
    done
}

run_test t_preview
run_test t_train_logs_grid_and_wait
run_test t_resume_after_kill9_is_exact
finish

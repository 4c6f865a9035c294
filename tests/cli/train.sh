#!/usr/bin/env bash
# kiln train / eval end to end on real data: run folder contents, exact resume after kill -9 and
# after SIGTERM, NaN handling, eval output, and the regression and tabular examples.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
EXAMPLE_DATA=$(dirname "$KILN")/kiln_example_data

run_dir() { ls -d "$1"/*/* | head -1; }
json() { grep -o "\"$2\":[[:space:]]*[^,}]*" "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//; s/"//g'; }
latest_step() { sed -n 's/^step-//p' "$1/checkpoints/latest" 2>/dev/null; }

# Waits (up to 60 s) until run folder pattern $1 has a checkpoint at step >= $2.
wait_for_step() {
    local i d
    for i in $(seq 1 6000); do
        d=$(ls -d "$1"/*/* 2>/dev/null | head -1)
        if [ -n "$d" ] && [ -f "$d/checkpoints/latest" ] && [ "$(latest_step "$d")" -ge "$2" ] 2>/dev/null; then return 0; fi
        sleep 0.01
    done
    return 1
}

t_run_folder() {
    local c=$(small_config folder "log: {every_steps: 50}")
    k train "$c" --set train.epochs=1 --runs-dir "$TMP/r1" --name first --quiet
    check "exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/r1")
    check "named <name>-<time>" bash -c "basename '$d' | grep -Eq '^first-[0-9]{8}-[0-9]{6}$'"
    for f in config.yaml run.json metrics.jsonl log.txt checkpoints/latest; do check "has $f" [ -s "$d/$f" ]; done
    check "status finished" [ "$(json "$d" status)" = finished ]
    check "steps" [ "$(json "$d" steps)" = 422 ]
    check "final test accuracy recorded" grep -q '"test_accuracy"' "$d/run.json"
    check "metrics.jsonl points" grep -q '"split":"validation","name":"accuracy"' "$d/metrics.jsonl"
    check "every line is a JSON object with the six keys" bash -c "grep -cv '^{\"step\":[0-9]*,\"epoch\":[0-9.e+-]*,\"wall_time\":[0-9.e+]*,\"split\":\"[a-z]*\",\"name\":\"[a-z_]*\",\"value\":' '$d/metrics.jsonl' | grep -qx 0"
    check "config.yaml is resolved (defaults filled)" grep -q 'beta_2: 0.999' "$d/config.yaml"
    check "the resolved config trains again" "$KILN" train "$d/config.yaml" --set train.max_steps=5 --runs-dir "$TMP/r1b" --quiet
    check "checkpoints pruned to keep 2 (+ none protected)" [ "$(ls -d "$d"/checkpoints/step-* | wc -l)" -le 3 ]
    check "log.txt has the epoch line" grep -q '^epoch 1/1:' "$d/log.txt"
}

t_resume_after_kill9_is_exact() {
    local c=$(small_config resume "log: {every_steps: 1000}")
    local S=(--set train.epochs=3 --set "model.layers[1].dense.units=256" --quiet)
    "$KILN" train "$c" "${S[@]}" --runs-dir "$TMP/a" >/dev/null 2>&1
    "$KILN" train "$c" "${S[@]}" --runs-dir "$TMP/b" >/dev/null 2>&1 &
    local pid=$!
    check "a checkpoint in the middle of epoch 2 appeared" wait_for_step "$TMP/b" 500
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    local b=$(run_dir "$TMP/b") a=$(run_dir "$TMP/a")
    local at=$(latest_step "$b")
    check "killed mid-run (latest step $at < 1266)" [ "$at" -lt 1266 ]
    check "status still says running" [ "$(json "$b" status)" = running ]
    k train --resume "$b" --quiet
    check "resume exit 0" [ $rc = 0 ]
    check "status finished" [ "$(json "$b" status)" = finished ]
    check "final weights bitwise equal to the uninterrupted run's" cmp -s "$a/checkpoints/step-1266/weights.safetensors" "$b/checkpoints/step-1266/weights.safetensors"
}

t_sigterm_checkpoints_and_stops() {
    local c=$(small_config stop "log: {every_steps: 1000}")
    local S=(--set train.epochs=3 --set "model.layers[1].dense.units=256" --set train.checkpoint.every_steps=0 --quiet)
    "$KILN" train "$c" "${S[@]}" --runs-dir "$TMP/s" >/dev/null 2>&1 &
    local pid=$!
    check "first epoch checkpoint" wait_for_step "$TMP/s" 422
    kill -TERM $pid
    wait $pid
    local code=$? d=$(run_dir "$TMP/s")
    check "stopped run exits 1 (got $code)" [ $code = 1 ]
    check "status stopped" [ "$(json "$d" status)" = stopped ]
    check "checkpoint at the stop step" bash -c "[ $(latest_step "$d") -gt 422 ]"
    k train --resume latest --runs-dir "$TMP/s" --quiet
    check "resume latest: exit 0" [ $rc = 0 ]
    check "finished" [ "$(json "$d" status)" = finished ]
    "$KILN" train "$c" "${S[@]}" --runs-dir "$TMP/u" >/dev/null 2>&1
    check "equal to the uninterrupted run" cmp -s "$(run_dir "$TMP/u")/checkpoints/step-1266/weights.safetensors" "$d/checkpoints/step-1266/weights.safetensors"
}

t_nan_loss_stops_cleanly() {
    # SGD with a huge learning rate on a regression diverges exponentially: inf, then NaN
    mkdir -p "$TMP/nan/regression" && cp "$SRC/examples/regression/curve_fitting.yaml" "$TMP/nan/regression/"
    "$EXAMPLE_DATA" "$TMP/nan/regression"
    k train "$TMP/nan/regression/curve_fitting.yaml" --set "optimizer={sgd: {learning_rate: 1000000}}" \
        --set "schedule=constant" --set train.checkpoint.every_steps=1 --runs-dir "$TMP/n" --quiet
    local d=$(run_dir "$TMP/n")
    check "exit 1 (got $rc)" [ $rc = 1 ]
    check "message says NaN or infinite" bash -c "grep -Eq 'loss is (NaN|infinite)|gradient is not finite' '$TMP/out'"
    check "message names the intact checkpoint" has "is intact"
    check "status failed" [ "$(json "$d" status)" = failed ]
    check "the last good checkpoint loads and evaluates" "$KILN" eval "$d" --quiet
}

t_eval() {
    local c=$(small_config ev "  early_stopping: {monitor: val_accuracy, patience: 2}")
    "$KILN" train "$c" --runs-dir "$TMP/e" --quiet >/dev/null 2>&1
    local d=$(run_dir "$TMP/e")
    k eval "$d"
    check "exit 0" [ $rc = 0 ]
    check "accuracy line" has "accuracy"
    check "confusion matrix" has "true\\pred"
    check "eval-test.json" grep -q '"confusion_matrix"' "$d/eval-test.json"
    k eval "$d" --split validation --checkpoint best
    check "best on validation: exit 0" [ $rc = 0 ]
    check "validation rows" has "validation (6000 rows"
    k eval "$d" --checkpoint step-99999
    check "missing checkpoint: exit 1" [ $rc = 1 ]
    k eval "$d" --split nope
    check "bad split: exit 2" [ $rc = 2 ]
    k export "$d"
    check "export: exit 0" [ $rc = 0 ]
    check "version 1 written" [ -s "$d/export/1/model.json" ] && check "weights" [ -s "$d/export/1/weights.safetensors" ]
    k export "$d" --checkpoint best --to "$TMP/served"
    check "export elsewhere: exit 0" [ $rc = 0 ]
    check "version 1 there" [ -s "$TMP/served/1/model.json" ]
    k export "$d" --to "$TMP/served" --version 1
    check "an existing version is never overwritten (exit $rc)" [ $rc != 0 ]
    k export "$d" --checkpoint step-99999
    check "unknown checkpoint: not 0" [ $rc != 0 ]
}

t_regression_example() {
    mkdir -p "$TMP/regression" && cp "$SRC/examples/regression/curve_fitting.yaml" "$TMP/regression/"
    check "data generated" "$EXAMPLE_DATA" "$TMP/regression"
    k train "$TMP/regression/curve_fitting.yaml" --runs-dir "$TMP/rr" --quiet
    check "exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/rr")
    local r2=$(grep -o '"test_r2":[[:space:]]*[0-9.e-]*' "$d/run.json" | sed 's/.*:[[:space:]]*//')
    check "test r2 $r2 >= 0.95 (noise floor ~0.98)" awk "BEGIN{exit !($r2 >= 0.95)}"
}

t_tabular_example() {
    mkdir -p "$TMP/tabular" && cp "$SRC/examples/tabular/wine.yaml" "$TMP/tabular/"
    check "data generated" "$EXAMPLE_DATA" "$TMP/tabular"
    # as its comment says (kiln train examples/tabular/wine.yaml), from the folder above it
    (cd "$TMP" && "$KILN" train tabular/wine.yaml --runs-dir rt --quiet) >"$TMP/out" 2>&1
    rc=$?
    check "exit 0 (rc $rc)" [ $rc = 0 ]
    local d=$(run_dir "$TMP/rt")
    local acc=$(grep -o '"test_accuracy":[[:space:]]*[0-9.e-]*' "$d/run.json" | sed 's/.*:[[:space:]]*//')
    check "test accuracy $acc >= 0.80" awk "BEGIN{exit !($acc >= 0.80)}"
    (cd / && "$KILN" eval "$d") >"$TMP/out" 2>&1 # the data paths of the run are absolute
    rc=$?
    check "eval from another directory: exit 0 (rc $rc)" [ $rc = 0 ]
    check "class names in the confusion matrix" has "medium"
}

t_profile() {
    local c=$(small_config prof)
    k train "$c" --set train.max_steps=12 --profile=4 --runs-dir "$TMP/p"
    check "exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/p")
    check "trace.json" [ -s "$d/trace.json" ]
    check "complete events with name, ts, dur, pid, tid" grep -q '"name": "dense_1", "cat": "backward", "ph": "X", "ts": [0-9.]*, "dur": [0-9.]*, "pid": 1, "tid": 1' "$d/trace.json"
    check "4 steps of updates" [ "$(grep -c '"cat": "update"' "$d/trace.json")" = 4 ]
    check "per-op table printed" has "per-op time over 4 profiled steps"
    check "table has the optimizer" grep -q "optimizer.*adam.*update" "$d/profile.txt"
    k train "$c" --profile=0
    check "--profile=0 is a usage error" [ $rc = 2 ]
}

for t in t_profile t_run_folder t_resume_after_kill9_is_exact t_sigterm_checkpoints_and_stops t_nan_loss_stops_cleanly t_eval \
         t_regression_example t_tabular_example; do
    run_test $t
done
finish

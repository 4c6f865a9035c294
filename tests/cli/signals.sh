#!/usr/bin/env bash
# kiln train's stop path under signals that arrive right after a validation point (where kiln
# tune's pruner sends SIGUSR1), with the registry on: many short trainings of a tiny MLP on a
# CSV, each stopped at a different validation line by SIGUSR1, SIGTERM or SIGINT, alone or
# followed at once by another signal (as when the tuner prunes a trial and then stops). Each
# must end as a clean stop (exit 1, no crash, no allocator abort), with run.json, the registry
# and the output saying the same: pruned when SIGUSR1 was among the signals (what the study
# records), stopped otherwise, and a checkpoint at the step it stopped. Two signals sent at once
# are often taken by two threads at once (the data loader's workers take signals too), which
# once turned a pruned run into a stopped one. Then a storm of signals after the prune: the
# process may die of one only once its run is recorded.
. "$(dirname "$0")/lib.sh"

csv() { # $1 file: 600 rows, 6 features, 3 classes
    awk 'BEGIN { srand(3); print "a,b,c,d,e,f,label";
        for (i = 0; i < 600; i++) { s = 0; line = "";
            for (j = 0; j < 6; j++) { v = rand() * 2 - 1; s += (j < 2) ? v : 0; line = line sprintf("%.4f,", v) }
            print line (s > 0.5 ? "hi" : s < -0.5 ? "lo" : "mid") } }' >"$1"
}

config() {
    cat >"$TMP/sig.yaml" <<YAML
experiment: sig
seed: 1
data: {source: csv, label: label, train: {path: $TMP/d.csv}, validation_split: 0.25,
       normalize: {standardize: true}, batch_size: 16}
model: {input: [6], layers: [{dense: {units: 16, activation: relu}}, {dense: {units: 3}}]}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01}}
train: {epochs: 200, validate_every_steps: 2, checkpoint: {every_steps: 4, keep: 2}}
log: {every_steps: 2}
YAML
}

json() { grep -o "\"$2\":[[:space:]]*[^,}]*" "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//; s/"//g'; }

# $1 runs folder, $2 validation line to stop at, $3 first signal, $4 second signal or "";
# sets rc and leaves the output in $TMP/out. SIGUSR1 starts ignored, as under kiln tune.
stop_at() {
    local runs=$1 at=$2 first=$3 second=$4 seen=0 line
    rm -f "$TMP/fifo" && mkfifo "$TMP/fifo"
    (trap '' USR1 && exec "$KILN" train "${CFG:-$TMP/sig.yaml}" --runs-dir "$runs" --threads 1 \
        >"$TMP/fifo" 2>&1) &
    local pid=$!
    exec 3<"$TMP/fifo"
    : >"$TMP/out"
    while IFS= read -r line <&3; do
        printf '%s\n' "$line" >>"$TMP/out"
        case $line in
        "step "*:*val_*)
            seen=$((seen + 1))
            if [ $seen = "$at" ]; then
                kill -"$first" $pid
                if [ "$second" = storm ] || [ "$second" = usr1storm ]; then # until it is gone
                    local n=0 s=TERM
                    [ "$second" = storm ] || s=USR1
                    while kill -$s $pid 2>/dev/null; do
                        n=$((n + 1))
                        [ $n -lt 2000 ] || break
                    done
                elif [ -n "$second" ]; then
                    kill -"$second" $pid
                fi
            fi
            ;;
        esac
    done
    exec 3<&-
    wait $pid
    rc=$?
}

t_signals_at_validation() {
    csv "$TMP/d.csv"
    config
    local sigs=(USR1 TERM INT USR1 USR1 TERM INT) seconds=("" "" "" TERM INT USR1 TERM) i
    for i in $(seq 0 13); do
        local first=${sigs[$((i % 7))]} second=${seconds[$((i % 7))]} runs=$TMP/runs$i
        stop_at "$runs" $((1 + (i * 7) % 13)) "$first" "$second"
        local what="run $i ($first${second:+ then $second} at validation $((1 + (i * 7) % 13)))"
        check "$what: exit 1 (a clean stop), got $rc" [ $rc = 1 ]
        check "$what: no allocator or sanitizer report" \
            bash -c "! grep -qiE 'corrupted|double free|free\(\)|Sanitizer|Segmentation' '$TMP/out'"
        local d=$(ls -d "$runs"/sig/sig-* 2>/dev/null | head -1) want=stopped
        [ "$first" = USR1 ] || [ "$second" = USR1 ] && want=pruned
        check "$what: a run folder" [ -n "$d" ]
        [ -n "$d" ] || continue
        check "$what: run.json says $want, got $(json "$d" status)" [ "$(json "$d" status)" = $want ]
        check "$what: the output says $want" has "$want: $d"
        local step=$(json "$d" steps)
        check "$what: a checkpoint at the last step ($step)" [ -d "$d/checkpoints/step-$step" ]
        k runs list --runs-dir "$runs" --filter "status = '$want'"
        check "$what: the registry says $want" has "$(basename "$d")"
    done
}

# SIGUSR1, then SIGTERM without pause until the process is gone: the run says pruned
# (never "running", left by a process killed before run.json said how it ended), whatever
# signal finally ends the process once the run is recorded.
t_signal_storm() {
    csv "$TMP/d.csv"
    config
    local i
    for i in 0 1 2 3; do
        local runs=$TMP/storm$i what="storm $i"
        stop_at "$runs" $((2 + 3 * i)) USR1 storm
        local d=$(ls -d "$runs"/sig/sig-* 2>/dev/null | head -1)
        check "$what: a run folder" [ -n "$d" ]
        [ -n "$d" ] || continue
        check "$what: run.json says pruned, got $(json "$d" status) (exit $rc)" \
            [ "$(json "$d" status)" = pruned ]
        check "$what: no allocator or sanitizer report" \
            bash -c "! grep -qiE 'corrupted|double free|free\(\)|Sanitizer|Segmentation' '$TMP/out'"
        k runs list --runs-dir "$runs" --filter "status = 'pruned'"
        check "$what: the registry says pruned" has "$(basename "$d")"
    done
}

# SIGUSR1 without pause from the first validation point until the process is gone, while it
# trains and evaluates a model whose matmuls run oneDNN's JIT GEMM kernels (784-256-10 on
# Fashion-MNIST). oneDNN < 3.11 points rsp into the heap inside those kernels, so a signal
# handled on a thread running one wrote its frame into the heap: 6 of 10 such runs crashed
# before the trainer took its signals on a thread of its own (src/train/signals.h).
t_signals_during_matmuls() {
    cat >"$TMP/mm.yaml" <<YAML
experiment: sig
seed: 1
data:
  source: idx
  train: {images: $FMNIST/train-images-idx3-ubyte.gz, labels: $FMNIST/train-labels-idx1-ubyte.gz}
  validation_split: 0.1
  normalize: {scale: 0.00392156862745098}
  batch_size: 74
  test: {images: $FMNIST/t10k-images-idx3-ubyte.gz, labels: $FMNIST/t10k-labels-idx1-ubyte.gz}
model: {input: [1, 28, 28], layers: [flatten, {dense: {units: 64, activation: relu}}, {dense: {units: 10}}]}
loss: softmax_cross_entropy
optimizer: {adam: {learning_rate: 0.001}}
train: {epochs: 1, max_steps: 400, validate_every_steps: 30, ema_decay: 0.99, deterministic: true,
        early_stopping: {monitor: val_loss, patience: 20, restore_best: true}}
log: {every_steps: 50}
YAML
    local i
    for i in 0 1 2 3 4; do
        local runs=$TMP/mm$i what="matmuls $i"
        CFG=$TMP/mm.yaml stop_at "$runs" 1 USR1 usr1storm
        check "$what: exit 1 (a clean stop), got $rc" [ $rc = 1 ]
        check "$what: no allocator or sanitizer report" \
            bash -c "! grep -qiE 'corrupted|double free|free\(\)|Sanitizer|Segmentation' '$TMP/out'"
        local d=$(ls -d "$runs"/sig/sig-* 2>/dev/null | head -1)
        check "$what: a run folder" [ -n "$d" ]
        [ -n "$d" ] || continue
        check "$what: run.json says pruned, got $(json "$d" status)" [ "$(json "$d" status)" = pruned ]
    done
}

run_test t_signals_at_validation
run_test t_signal_storm
run_test t_signals_during_matmuls
finish

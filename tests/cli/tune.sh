#!/usr/bin/env bash
# kiln tune end to end on real data (Fashion-MNIST, a tiny MLP, few steps): a full study with TPE
# and ASHA through the CLI, the registry and run folders it leaves, determinism of a study, resume
# after kill -9 of the tuner and of a trial, and config errors.
. "$(dirname "$0")/lib.sh"

# $1 name, $2 max_steps, then extra lines for the config
tune_config() {
    local name=$1 steps=$2
    shift 2
    small_config "$name" "  max_steps: $steps" "  validate_every_steps: 30" \
        "  early_stopping: {monitor: val_accuracy, patience: 20}" "log: {tensorboard: false}" "$@"
}
SPACE=("tune:" "  sampler: {tpe: {startup_trials: 3}}"
    "  space:"
    "    optimizer.adam.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}"
    "    data.batch_size: {int: [32, 256], log: true}"
    "    model.layers[1].dense.units: {choice: [16, 64]}"
    "    model.layers[2].dropout.rate: {uniform: [0.0, 0.5]}")
json() { grep -o "\"$2\":[[:space:]]*[^,}]*" "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//; s/"//g'; }
trial_rows() { "$KILN" tune show "$1" --runs-dir "$2" | awk '/^TRIAL/{t=1; next} t && NF == 0 {t=0} t'; }

t_study() {
    local c=$(tune_config study 90 "${SPACE[@]}" "  trials: 6" "  parallel: 2" \
        "  pruner: {asha: {min_resource: 30, reduction_factor: 2, resource: step}}")
    k tune "$c" --study s1 --runs-dir "$TMP/r1" --threads 2
    check "exit 0" [ $rc = 0 ]
    check "prints the best trial" has "best: trial"
    check "prints importances" has "importances"
    check "6 runs" [ "$(ls -d "$TMP"/r1/small/s1-t00*-* | wc -l)" = 6 ]
    k tune show s1 --runs-dir "$TMP/r1"
    check "show: 6 trials, none running or failed" has "6 trials:"
    check "show: no failed" has "0 failed, 0 running"
    local pruned=$(awk '$1 ~ /^[0-9]+$/ && $2 == "pruned"' "$TMP/out" | wc -l)
    local finished=$(awk '$1 ~ /^[0-9]+$/ && $2 == "finished"' "$TMP/out" | wc -l)
    check "finished + pruned = 6 ($finished + $pruned)" [ $((finished + pruned)) = 6 ]
    check "ASHA pruned some" [ "$pruned" -ge 1 ]
    # a pruned trial's run folder is consistent: run.json says pruned, it has its checkpoint
    local pd=""
    for d in "$TMP"/r1/small/s1-t*; do [ "$(json "$d" status)" = pruned ] && pd=$d; done
    check "a run folder says pruned" [ -n "$pd" ]
    check "the pruned run has a checkpoint" [ -s "$pd/checkpoints/latest" ]
    # the runs are ordinary runs: kiln runs filters on the sampled keys and the pruned status
    k runs list --runs-dir "$TMP/r1" --filter "status = 'pruned'"
    check "kiln runs: pruned runs listed" has "pruned"
    k runs list --runs-dir "$TMP/r1" --filter "params.\`model.layers[1].dense.units\` >= 16 and params.optimizer.adam.learning_rate > 0" --sort params.optimizer.adam.learning_rate
    check "kiln runs: sampled params are params" has "s1-t000"
    check "the trials' config has no tune: section" bash -c "! grep -q '^tune:' $TMP/r1/small/s1-t000-*/config.yaml"
    k tune show --runs-dir "$TMP/r1"
    check "show lists the study" has "s1 "
    k tune "$c" --study s1 --runs-dir "$TMP/r1"
    check "a taken study name: exit 2" [ $rc = 2 ]
}

t_determinism() {
    local c=$(tune_config det 60 "${SPACE[@]}" "  trials: 4" \
        "  pruner: {asha: {min_resource: 30, reduction_factor: 2, resource: step}}")
    k tune "$c" --study d1 --runs-dir "$TMP/rd" --threads 1 --quiet
    check "first: exit 0" [ $rc = 0 ]
    k tune "$c" --study d2 --runs-dir "$TMP/rd" --threads 1 --quiet
    check "second: exit 0" [ $rc = 0 ]
    trial_rows d1 "$TMP/rd" >"$TMP/d1"
    trial_rows d2 "$TMP/rd" >"$TMP/d2"
    check "4 trials" [ "$(wc -l <"$TMP/d1")" = 4 ]
    check "same points, values and states" cmp -s "$TMP/d1" "$TMP/d2"
    # the study and the runs agree (a run that finished before its prune signal says pruned too)
    local bad=0 s n st d
    for s in d1 d2; do
        while read -r n st _; do
            d=$(ls -d "$TMP/rd/small/$s-t$(printf %03d "$n")-"* | tail -1)
            [ "$(json "$d" status)" = "$st" ] ||
                { echo "  $s trial $n: the study says $st, its run $(json "$d" status)" >&2; bad=1; }
        done <"$TMP/$s"
    done
    check "every trial's run says what the study says" [ $bad = 0 ]
    k tune "$c" --study d3 --runs-dir "$TMP/rd" --threads 1 --quiet --set seed=2 --trials 2
    trial_rows d3 "$TMP/rd" | head -2 >"$TMP/d3"
    check "another seed, other points" bash -c "! cmp -s <(head -2 $TMP/d1) $TMP/d3"
}

wait_ckpt() { # until a run folder under $1 has a checkpoint (up to 60 s); prints it
    local i d
    for i in $(seq 1 600); do
        for d in "$1"/small/*/; do
            [ -s "$d/checkpoints/latest" ] && { echo "${d%/}"; return 0; }
        done
        sleep 0.1
    done
    return 1
}

t_kill_tuner() {
    # the config names its data relative to its folder, and is moved away before the resume
    local c0=$(tune_config kt 400 "${SPACE[@]}" "  trials: 3" "  parallel: 2")
    mkdir -p "$TMP/cfg"
    ln -s "$FMNIST" "$TMP/cfg/fm"
    local c=$TMP/cfg/kt.yaml
    sed "s|$FMNIST/|fm/|g" "$c0" >"$c"
    "$KILN" tune "$c" --study k1 --runs-dir "$TMP/rk" --threads 2 --quiet --set train.checkpoint.every_steps=20 >"$TMP/k1.out" 2>&1 &
    local tp=$!
    check "a trial checkpoints" wait_ckpt "$TMP/rk" >/dev/null
    # every trial running has a checkpoint (a trial killed before its first one starts again in
    # a new folder, rightly, which the folder count below would take for a failure)
    local i n_dirs n_ckpt
    for i in $(seq 1 600); do
        n_dirs=$(ls -d "$TMP"/rk/small/k1-t*/ 2>/dev/null | wc -l)
        n_ckpt=$(ls "$TMP"/rk/small/k1-t*/checkpoints/latest 2>/dev/null | wc -l)
        [ "$n_dirs" -gt 0 ] && [ "$n_dirs" = "$n_ckpt" ] && break
        sleep 0.1
    done
    kill -9 $tp
    wait $tp 2>/dev/null
    mv "$c" "$TMP/kt-moved.yaml"
    local kabs=$(realpath "$KILN")
    (cd / && "$kabs" tune --resume k1 --runs-dir "$TMP/rk" --quiet) >"$TMP/out" 2>&1
    rc=$?
    check "resume (config moved, another directory): exit 0" [ $rc = 0 ]
    check "runs on the study's stored config" [ -s "$TMP/rk/studies/k1/config.yaml" ]
    k tune show k1 --runs-dir "$TMP/rk"
    check "3 trials finished" has "3 finished, 0 pruned, 0 failed, 0 running"
    check "3 run folders (interrupted ones resumed in place)" [ "$(ls -d "$TMP"/rk/small/k1-t* | wc -l)" = 3 ]
    check "a run resumed from its checkpoint" bash -c "grep -q '^resumed' $TMP/rk/small/k1-t*/log.txt"
}

t_kill_trial() {
    local c=$(tune_config kr 400 "${SPACE[@]}" "  trials: 2")
    "$KILN" tune "$c" --study k2 --runs-dir "$TMP/rt" --threads 1 --quiet --set train.checkpoint.every_steps=20 >"$TMP/k2.out" 2>&1 &
    local tp=$!
    local d=$(wait_ckpt "$TMP/rt")
    check "a trial checkpoints" [ -n "$d" ]
    local pid=$(json "$d" pid)
    kill -9 "$pid"
    wait $tp
    check "the study ends: exit 0" [ $? = 0 ]
    k tune show k2 --runs-dir "$TMP/rt"
    check "2 trials finished" has "2 finished, 0 pruned, 0 failed, 0 running"
    check "the killed trial resumed from its checkpoint" grep -q '^resumed' "$d/log.txt"
    check "and finished" [ "$(json "$d" status)" = finished ]
}

t_errors() {
    local c=$(tune_config e1 30 "tune:" "  trails: 3" "  space:" "    x.y: {uniform: [0, 1]}")
    k tune "$c" --runs-dir "$TMP/re"
    check "unknown key: exit 2" [ $rc = 2 ]
    check "names file:line:col" has "e1.yaml:"
    check "names the key" has "unknown key 'trails'"
    c=$(tune_config e2 30 "tune:" "  space:" "    optimizer.adam.learnig_rate: {uniform: [0, 1]}")
    k tune "$c" --runs-dir "$TMP/re"
    check "a key the config lacks: exit 2" [ $rc = 2 ]
    check "says which" has "learnig_rate"
    k tune --resume nope --runs-dir "$TMP/re"
    check "unknown study: exit 2" [ $rc = 2 ]
    k tune
    check "no config: exit 2" [ $rc = 2 ]
    k tune "$c" --parallel 0
    check "--parallel 0: exit 2" [ $rc = 2 ]
}

t_slurm() { # --launcher slurm: trials as srun steps, pruning through srun's signal forwarding
    if ! sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)'; then
        echo "  (no idle Slurm node here: scripts/slurm_local.sh starts one; not run)"
        return
    fi
    local c=$(tune_config sl 90 "${SPACE[@]}" "  trials: 4" "  parallel: 2" \
        "  pruner: {asha: {min_resource: 30, reduction_factor: 2, resource: step}}")
    k tune "$c" --study sl --runs-dir "$TMP/rs" --threads 2 --launcher slurm
    check "exit 0" [ $rc = 0 ]
    check "4 trials, none failed" has "4 trials:"
    check "none failed" has "0 failed, 0 running"
    check "4 runs" [ "$(ls -d "$TMP"/rs/small/sl-t00*-* | wc -l)" = 4 ]
}

cd "$TMP"
run_test t_errors
run_test t_study
run_test t_determinism
run_test t_kill_tuner
run_test t_kill_trial
run_test t_slurm
finish

#!/usr/bin/env bash
# Data-parallel training under mpirun (docs/distributed.md): the world line, equivalence of
# 2 ranks x 64 rows with 1 process x 128 rows, what rank 0 and the other ranks write, kill -9 of
# a rank and --resume with 1 or 2 ranks, SIGTERM stopping every rank at one step, bad setups
# (different configs, a rank without its data, a global batch not divisible by the ranks, srun
# without PMIx). Every mpirun runs under a timeout: a hang fails the test instead of the suite.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1 # 2 ranks on a machine that may have fewer free cores
MPI=(timeout 120 mpirun --oversubscribe -np 2)
. "$SRC/tests/dist/asan_env.sh" # Open MPI's own leaks suppressed under make asan

run_dir() { ls -d "$1"/*/* | head -1; }
json() { grep -o "\"$2\":[[:space:]]*[^,}]*" "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//; s/"//g'; }
km() { "${MPI[@]}" "$KILN" "$@" >"$TMP/out" 2>&1; rc=$?; }

# tanh: a smooth model, so rounding differences of the reduction order stay rounding (with ReLU
# a pre-activation within rounding of 0 flips its derivative and the runs part; see the docs)
dist_config() {
    small_config "$1" "log: {every_steps: 1000, tensorboard: false}" >/dev/null
    sed -i 's/activation: relu/activation: tanh/; /dropout/d; /ema_decay/d' "$TMP/$1.yaml"
    sed -i 's/optimizer: .*/optimizer: {sgd: {learning_rate: 0.05, momentum: 0.9}}/' "$TMP/$1.yaml"
    echo "$TMP/$1.yaml"
}

t_world_line() {
    local c=$(dist_config world)
    km train "$c" --set train.max_steps=3 --runs-dir "$TMP/w"
    check "exit 0" [ $rc = 0 ]
    check "the world" has "world: 2 ranks on 1 host (launcher: mpirun)"
    check "rank 1's host and threads" grep -Eq "rank 1: host .*, pid [0-9]+, 1 thread" "$TMP/out"
    check "one run folder" [ "$(ls -d "$TMP"/w/*/* | wc -l)" = 1 ]
}

t_equivalent_to_one_process() {
    local c=$(dist_config eq)
    local S=(--set train.epochs=1 --set train.checkpoint.every_steps=100 --set train.checkpoint.keep=10 --quiet)
    k train "$c" "${S[@]}" --runs-dir "$TMP/one" --threads 1
    check "1 process: exit 0" [ $rc = 0 ]
    km train "$c" "${S[@]}" --runs-dir "$TMP/two"
    check "2 ranks: exit 0" [ $rc = 0 ]
    local a=$(run_dir "$TMP/one") b=$(run_dir "$TMP/two")
    check "weights after 100 steps within 1e-5 relative" /usr/bin/python3 "$SRC/tests/dist/compare_weights.py" \
        "$a/checkpoints/step-100/weights.safetensors" "$b/checkpoints/step-100/weights.safetensors" 1e-5
    check "same steps in the epoch" [ "$(json "$a" steps)" = "$(json "$b" steps)" ]
    for m in test_accuracy val_accuracy accuracy; do
        check "same $m after an epoch" [ "$(json "$a" $m)" = "$(json "$b" $m)" ]
    done
    for m in test_loss val_loss; do
        check "$m within 1e-5 relative" awk -v x="$(json "$a" $m)" -v y="$(json "$b" $m)" \
            'BEGIN { d = x - y; if (d < 0) d = -d; exit !(d <= 1e-5 * x) }'
    done
}

t_rank0_writes_the_run() {
    local c=$(dist_config writes)
    km train "$c" --set train.max_steps=60 --set train.checkpoint.every_steps=20 --runs-dir "$TMP/rw" --quiet
    check "exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/rw")
    check "finished" [ "$(json "$d" status)" = finished ]
    check "rank 1 logs to log.rank-1.txt" grep -q "finished" "$d/log.rank-1.txt"
    check "no log of a rank 0 copy" [ ! -e "$d/log.rank-0.txt" ]
    check "each metric point once" [ "$(grep -c '"name":"accuracy","value"' "$d/metrics.jsonl")" = 1 ]
    check "only rank 0's files" bash -c "ls '$d' | sort | tr '\n' ' ' | grep -qx 'checkpoints config.yaml log.rank-1.txt log.txt metrics.jsonl run.json summary.txt '"
    check "checkpoints of global steps" [ -d "$d/checkpoints/step-60" ]
}

wait_for_step() { # run folder pattern, step
    local i d
    for i in $(seq 1 3000); do
        d=$(ls -d "$1"/*/* 2>/dev/null | head -1)
        if [ -n "$d" ] && [ "$(sed -n 's/^step-//p' "$d/checkpoints/latest" 2>/dev/null)" -ge "$2" ] 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    return 1
}

# The pid of rank R of the job writing into runs folder $2 (its command line names the folder).
rank_pid() { pgrep -f -- "^$KILN train .*--runs-dir $2 " | sort -n | sed -n "$(($1 + 1))p"; }

t_kill9_then_resume_with_1_or_2_ranks() {
    local c=$(dist_config kill)
    "${MPI[@]}" "$KILN" train "$c" --set train.epochs=2 --set train.checkpoint.every_steps=50 \
        --runs-dir "$TMP/k" --quiet >"$TMP/kill.out" 2>&1 &
    local job=$!
    check "a checkpoint appeared" wait_for_step "$TMP/k" 100
    kill -9 "$(rank_pid 1 "$TMP/k")"
    wait $job
    local jrc=$?
    check "the job ended with a failure ($jrc)" [ $jrc != 0 ]
    local d=$(run_dir "$TMP/k")
    check "run failed" [ "$(json "$d" status)" = failed ]
    check "message names the rank and host" grep -q "rank 1 (host $(hostname)" "$d/run.json"
    check "rank 0 said so" grep -q "rank 1 (host .*died" "$TMP/kill.out"
    check "a checkpoint is intact" [ -s "$d/checkpoints/$(cat "$d/checkpoints/latest")/weights.safetensors" ]
    cp -r "$d" "$TMP/copy"
    k train --resume "$d" --quiet --threads 1
    check "resume with 1 process: exit 0" [ $rc = 0 ]
    check "finished (1 process)" [ "$(json "$d" status)" = finished ]
    km train --resume "$TMP/copy" --quiet
    check "resume with 2 ranks: exit 0" [ $rc = 0 ]
    check "finished (2 ranks)" [ "$(json "$TMP/copy" status)" = finished ]
    check "both ran every step" [ "$(json "$d" steps)" = 844 ] && [ "$(json "$TMP/copy" steps)" = 844 ]
    check "the two resumes agree" /usr/bin/python3 "$SRC/tests/dist/compare_weights.py" \
        "$d/checkpoints/step-844/weights.safetensors" "$TMP/copy/checkpoints/step-844/weights.safetensors" 1e-4
}

t_sigterm_stops_every_rank_at_one_step() {
    local c=$(dist_config term)
    "${MPI[@]}" "$KILN" train "$c" --set train.epochs=3 --set train.checkpoint.every_steps=50 \
        --runs-dir "$TMP/t" --quiet >"$TMP/term.out" 2>&1 &
    local job=$!
    check "a checkpoint appeared" wait_for_step "$TMP/t" 50
    kill -TERM "$(rank_pid 1 "$TMP/t")" # one rank told: the others follow at the same step
    wait $job
    local d=$(run_dir "$TMP/t")
    check "run stopped" [ "$(json "$d" status)" = stopped ]
    local s0=$(sed -n 's/^stopped by signal 15 at step \([0-9]*\).*/\1/p' "$d/log.txt")
    local s1=$(sed -n 's/^stopped by signal 15 at step \([0-9]*\).*/\1/p' "$d/log.rank-1.txt")
    check "both ranks stopped ($s0, $s1)" [ -n "$s0" ] && [ "$s0" = "$s1" ]
    check "rank 1's resume line names the run" grep -qF "resume with: kiln train --resume $d" "$d/log.rank-1.txt"
    check "rank 0 checkpointed that step" [ "$(cat "$d/checkpoints/latest")" = "step-$s0" ]
    km train --resume "$d" --quiet
    check "resumed to the end" [ $rc = 0 ] && [ "$(json "$d" status)" = finished ]
}

t_different_configs() {
    local c=$(dist_config cfg)
    timeout 120 mpirun --oversubscribe -np 1 "$KILN" train "$c" --runs-dir "$TMP/dc" --quiet : \
        -np 1 "$KILN" train "$c" --set train.epochs=5 --runs-dir "$TMP/dc" --quiet >"$TMP/out" 2>&1
    rc=$?
    check "no hang, exit 2 ($rc)" [ $rc = 2 ]
    check "rank 0 names the rank" has "kiln train: rank 0: rank 1 (host $(hostname)) runs a different config than rank 0"
    check "no run folder" [ ! -d "$TMP/dc" ] || [ -z "$(ls -A "$TMP/dc"/*/ 2>/dev/null)" ]
}

t_rank_without_data() {
    local c=$(dist_config nodata)
    timeout 120 mpirun --oversubscribe -np 1 "$KILN" train "$c" --runs-dir "$TMP/nd" --quiet : \
        -np 1 "$KILN" train "$c" --set data.train.images=/nonexistent/train.gz --runs-dir "$TMP/nd" --quiet >"$TMP/out" 2>&1
    rc=$?
    check "no hang, exit 2 ($rc)" [ $rc = 2 ]
    check "rank 0 names the rank and the file" grep -q "kiln train: rank 0: rank 1 (host .*/nonexistent/train.gz" "$TMP/out"
}

t_kafka_source_refused() {
    local c=$(dist_config kafka)
    sed -i 's/^  source: idx/  source: kafka\n  kafka: {brokers: "127.0.0.1:1"}/;
            s/^  train: {images.*/  train: {topic: t}/; /^  test: {images/d' "$c"
    km train "$c" --runs-dir "$TMP/kafka" --quiet
    check "no hang, exit 2 ($rc)" [ $rc = 2 ]
    check "says why" has "data.source: kafka: data-parallel training (mpirun, srun) does not read Kafka"
}

t_batch_not_divisible() {
    local c=$(dist_config odd)
    km train "$c" --set data.batch_size=127 --runs-dir "$TMP/odd" --quiet
    check "exit 2" [ $rc = 2 ]
    check "says why" has "data.batch_size 127 is the global batch: it must be a multiple of the 2 ranks"
}

t_srun_without_pmix() {
    local c=$(dist_config srun)
    SLURM_STEP_ID=0 SLURM_NTASKS=2 SLURM_PROCID=1 "$KILN" train "$c" --runs-dir "$TMP/s" >"$TMP/out" 2>&1
    rc=$?
    check "exit 2" [ $rc = 2 ]
    check "says how" has "srun --mpi=pmix"
}

# A CNN with batch norm (tanh: smooth, see above; no conv bias, whose gradient through batch
# norm is 0 up to rounding, so its relative difference would be noise over noise): 2 ranks x 32 rows against 1 process x 64.
bn_config() {
    local c=$(dist_config "$1")
    sed -i '/^model:/,/^loss:/d' "$c"
    cat >>"$c" <<'YAML'
model:
  input: [1, 28, 28]
  layers:
    - conv2d: {filters: 8, kernel: 3, strides: 2, use_bias: false}
    - batchnorm: {momentum: 0.9}
    - tanh
    - conv2d: {filters: 8, kernel: 3, strides: 2, use_bias: false}
    - batchnorm: {momentum: 0.9}
    - tanh
    - flatten
    - dense: {units: 10}
loss: softmax_cross_entropy
YAML
    echo "$c"
}

# sync_batchnorm: statistics of the global batch, so the same training as one process (weights
# and moving statistics); without it each rank normalizes with its own 32 rows and the runs part.
# Stage 1 freezes the first batch norm (inference mode: no reduction), stage 2 trains it again
# (plans rebuilt at the switch keep the reduction).
t_sync_batchnorm_matches_one_process() {
    local c=$(bn_config sbn)
    cat >>"$c" <<'YAML'
stages:
  - freeze: [batch_normalization_1]
    train: {max_steps: 20}
  - freeze: []
    train: {max_steps: 40}
YAML
    local S=(--set data.batch_size=64 --set train.checkpoint.every_steps=60
        --set train.early_stopping=null --set data.validation_split=0 --quiet)
    k train "$c" "${S[@]}" --runs-dir "$TMP/sbn1" --threads 1
    check "1 process: exit 0" [ $rc = 0 ]
    km train "$c" "${S[@]}" --set dist.sync_batchnorm=true --runs-dir "$TMP/sbn2"
    check "2 ranks, sync: exit 0" [ $rc = 0 ]
    km train "$c" "${S[@]}" --runs-dir "$TMP/sbn3"
    check "2 ranks, local: exit 0" [ $rc = 0 ]
    local w=checkpoints/step-60/weights.safetensors
    local a=$(run_dir "$TMP/sbn1")/$w b=$(run_dir "$TMP/sbn2")/$w l=$(run_dir "$TMP/sbn3")/$w
    check "sync: weights and moving statistics within 1e-5 relative" \
        /usr/bin/python3 "$SRC/tests/dist/compare_weights.py" "$a" "$b" 1e-5
    /usr/bin/python3 "$SRC/tests/dist/compare_weights.py" "$a" "$l" 1e-3 >"$TMP/local.out"
    local lrc=$?
    check "local statistics: the runs part ($(cat "$TMP/local.out"))" [ $lrc = 1 ]
}

t_bf16_compression_trains() {
    local c=$(dist_config bf16)
    km train "$c" --set train.epochs=1 --set dist.compress=bf16 --runs-dir "$TMP/bf" --quiet
    check "exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/bf")
    check "learned (test accuracy $(json "$d" test_accuracy) > 0.8)" awk -v a="$(json "$d" test_accuracy)" 'BEGIN { exit !(a > 0.8) }'
}

# stages: a stage switch rebuilds the model (new gradient buffer, new plans); under 2 ranks the
# run must still match one process, with the frozen layer frozen on every rank
t_stages_match_one_process() {
    local c=$(dist_config st)
    cat >>"$c" <<'YAML'
stages:
  - freeze: [dense_1]
    train: {max_steps: 30}
  - freeze: []
    optimizer: {sgd: {learning_rate: 0.02, momentum: 0.9}}
    train: {max_steps: 30}
YAML
    local S=(--set train.epochs=1 --set train.early_stopping=null --quiet)
    k train "$c" "${S[@]}" --runs-dir "$TMP/st1" --threads 1
    check "1 process: exit 0" [ $rc = 0 ]
    km train "$c" "${S[@]}" --runs-dir "$TMP/st2"
    check "2 ranks: exit 0" [ $rc = 0 ]
    local a=$(run_dir "$TMP/st1") b=$(run_dir "$TMP/st2")
    local last=$(ls "$a/checkpoints" | grep '^step-' | sort -t- -k2 -n | tail -1)
    check "both at $last" [ -n "$last" -a -f "$b/checkpoints/$last/weights.safetensors" ]
    check "the same weights after both stages (1e-5 relative)" /usr/bin/python3 \
        "$SRC/tests/dist/compare_weights.py" "$a/checkpoints/$last/weights.safetensors" \
        "$b/checkpoints/$last/weights.safetensors" 1e-5
    check "stage 2 reached on 2 ranks" grep -q '"stage":2' "$b/metrics.jsonl"
}

# One short job for the quick suite (ctest cli_dist_quick, not labelled long, so `make asan`
# runs it too: the MPI path under ASan/LSan): the world line and 3 steps of a CNN with
# synchronized batch norm (the reductions inside forward and backward).
t_quick_sync_batchnorm_steps() {
    local c=$(bn_config quick)
    km train "$c" --set train.max_steps=3 --set dist.sync_batchnorm=true --runs-dir "$TMP/q"
    check "exit 0" [ $rc = 0 ]
    check "the world" has "world: 2 ranks on 1 host (launcher: mpirun)"
    local d=$(run_dir "$TMP/q")
    check "finished" [ "$(json "$d" status)" = finished ]
    check "rank 1 finished too" grep -q "finished" "$d/log.rank-1.txt"
}

if [ "${DIST_QUICK:-0}" = 1 ]; then
    run_test t_quick_sync_batchnorm_steps
    finish
    exit
fi
run_test t_world_line
run_test t_stages_match_one_process
run_test t_equivalent_to_one_process
run_test t_rank0_writes_the_run
run_test t_kill9_then_resume_with_1_or_2_ranks
run_test t_sigterm_stops_every_rank_at_one_step
run_test t_different_configs
run_test t_rank_without_data
run_test t_batch_not_divisible
run_test t_kafka_source_refused
run_test t_srun_without_pmix
run_test t_sync_batchnorm_matches_one_process
run_test t_bf16_compression_trains
finish

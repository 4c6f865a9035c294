#!/usr/bin/env bash
# Slurm for real: a one-host cluster (scripts/slurm_local.sh: munge, slurmctld, slurmd) runs
# examples/slurm/train.sbatch with 2 tasks (srun --mpi=pmix); the run folder is checked. Then
# a requeue: the job is preempted with SIGTERM (scancel --signal=TERM) and requeued, and its
# second start resumes the run to the end. Exit 77 (ctest: skipped) only without root, which the
# cluster needs; everything else that goes wrong fails.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/tests/dist/asan_env.sh" # Open MPI's own leaks suppressed under make asan
if [ "$(id -u)" != 0 ]; then echo "SKIP: starting slurmctld/slurmd needs root"; exit 77; fi
if ! bash "$SRC/scripts/slurm_local.sh"; then echo "the local Slurm cluster did not start" >&2; exit 1; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run_dir() { ls -d "$1"/*/slurm-"$2"-* 2>/dev/null | head -1; }
json() { grep -o "\"$2\":[[:space:]]*[^,}]*" "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//; s/"//g'; }

t_sbatch_two_tasks() {
    local c=$(small_config slurm "log: {tensorboard: false}")
    (cd "$TMP" && timeout 300 sbatch --wait --parsable --ntasks=2 --output="$TMP/job-%j.out" \
        --export=ALL,KILN="$KILN",KILN_RUNS="$TMP/runs" "$SRC/examples/slurm/train.sbatch" "$c" \
        --set train.max_steps=60 >"$TMP/jobid" 2>"$TMP/sbatch.err")
    rc=$?
    local id=$(head -1 "$TMP/jobid")
    check "sbatch --wait exit 0 ($rc)" [ $rc = 0 ]
    local d=$(run_dir "$TMP/runs" "$id")
    check "run folder slurm-$id-*" [ -n "$d" ]
    check "finished" [ "$(json "$d" status)" = finished ]
    check "60 steps" [ "$(json "$d" steps)" = 60 ]
    check "2 ranks: log.rank-1.txt" [ -s "$d/log.rank-1.txt" ]
    check "srun launched it" grep -q "world: 2 ranks on 1 host (launcher: srun)" "$TMP/job-$id.out"
    [ $test_failed = 0 ] || { cat "$TMP"/job-*.out "$TMP/sbatch.err" >&2; }
}

t_preempted_then_requeued_resumes() {
    local c=$(small_config pre "log: {tensorboard: false}")
    local id
    id=$(cd "$TMP" && sbatch --parsable --ntasks=2 --output="$TMP/pre-%j.out" \
        --export=ALL,KILN="$KILN",KILN_RUNS="$TMP/pruns" "$SRC/examples/slurm/train.sbatch" "$c" \
        --set train.epochs=1 --set train.checkpoint.every_steps=50 --quiet)
    local i d=""
    for i in $(seq 1 600); do
        d=$(run_dir "$TMP/pruns" "$id")
        [ -n "$d" ] && [ -s "$d/checkpoints/latest" ] && break
        sleep 0.1
    done
    check "a checkpoint appeared" [ -n "$d" ] && [ -s "$d/checkpoints/latest" ]
    scancel --signal=TERM "$id" # preemption: every task gets SIGTERM
    for i in $(seq 1 300); do [ "$(json "$d" status)" = stopped ] && break; sleep 0.1; done
    check "stopped with a checkpoint" [ "$(json "$d" status)" = stopped ]
    for i in $(seq 1 300); do squeue -h -j "$id" 2>/dev/null | grep -q . || break; sleep 0.1; done
    scontrol requeue "$id"
    # a requeued job becomes eligible only after a delay Slurm adds (a begin time 2 minutes
    # ahead, set while the job goes from completing to pending): start it now, as an
    # administrator may, until it runs (an update made before Slurm sets the delay is undone)
    for i in $(seq 1 600); do
        case "$(squeue -h -j "$id" -o '%T %r' 2>/dev/null)" in
        RUNNING* | COMPLETED* | "") break ;;
        *BeginTime*) scontrol update JobId="$id" StartTime=now 2>/dev/null ;;
        esac
        sleep 0.1
    done
    for i in $(seq 1 1200); do [ "$(json "$d" status)" = finished ] && break; sleep 0.2; done
    check "the requeued job resumed the run to the end" [ "$(json "$d" status)" = finished ]
    check "every step" [ "$(json "$d" steps)" = 422 ]
    check "it said so" grep -q "requeued (restart 1): resuming" "$TMP"/pre-*.out
    [ $test_failed = 0 ] || { cat "$TMP"/pre-*.out >&2; scancel "$id" 2>/dev/null; }
}

run_test t_sbatch_two_tasks
run_test t_preempted_then_requeued_resumes
finish

#!/usr/bin/env bash
# kiln runs / kiln models end to end on three tiny trainings (a CSV made here, learning rates
# 0.001, 0.01, 0.1): list, sort, filter (and its errors), JSON, show, compare, references,
# rm; the model registry (register, list, alias, resolve); run folders made without a registry;
# a garbage registry; two trainings at once in one runs folder. Seconds, not minutes.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
R=$TMP/runs

# 300 training and 100 test rows, 4 features, two named classes.
awk 'BEGIN { srand(3); print "a,b,c,d,label"
             for (i = 0; i < 400; i++) { a = rand(); b = rand(); c = rand(); d = rand()
                 printf "%.4f,%.4f,%.4f,%.4f,%s\n", a, b, c, d, (a + b > 1 ? "hi" : "lo") } }' >"$TMP/all.csv"
head -301 "$TMP/all.csv" >"$TMP/train.csv"
{ head -1 "$TMP/all.csv"; tail -100 "$TMP/all.csv"; } >"$TMP/test.csv"
cat >"$TMP/tiny.yaml" <<'YAML'
experiment: tiny
seed: 1
data:
  source: csv
  label: label
  train: {path: train.csv}
  test: {path: test.csv}
  validation_split: 0.2
  batch_size: 16
model:
  input: [4]
  layers:
    - dense: {units: 8, activation: relu}
    - dense: {units: 2}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01}}
train:
  epochs: 3
  early_stopping: {monitor: val_accuracy, patience: 5}
log: {every_steps: 5}
YAML
for lr in 0.001 0.01 0.1; do
    "$KILN" train "$TMP/tiny.yaml" --runs-dir "$R" --name "lr-$lr" --set "optimizer.adam.learning_rate=$lr" --quiet >/dev/null 2>&1 ||
        echo "  training lr-$lr failed" >&2
done
folder() { ls -d "$R"/tiny/"$1"-2* | head -1; } # the run folder of run name $1

t_list() {
    k runs list --runs-dir "$R"
    check "exit 0" [ $rc = 0 ]
    check "header" bash -c "sed -n 1p '$TMP/out' | grep -q '^RUN  *EXPERIMENT  *STATUS  *STARTED  *DURATION  *val_accuracy  *val_loss  *loss'"
    check "three runs" [ "$(grep -c '  tiny  *finished' "$TMP/out")" = 3 ]
    for lr in 0.001 0.01 0.1; do check "lr-$lr listed" has "lr-$lr-"; done
    if [ -n "$PG" ]; then
        check "no kiln.db: the registry is on the server" [ ! -e "$R/kiln.db" ]
    else
        check "registry file" [ -f "$R/kiln.db" ]
    fi
    k runs --runs-dir "$R" # list is the default
    check "default subcommand" [ "$(grep -c finished "$TMP/out")" = 3 ]
    k runs list --runs-dir "$TMP/none"
    check "missing runs folder: exit 2" [ $rc = 2 ]
}

t_sort() {
    k runs list --runs-dir "$R" --sort 'params.optimizer.adam.learning_rate desc'
    check "exit 0" [ $rc = 0 ]
    check "param column" has "optimizer.adam.learning_rate"
    check "highest lr first" bash -c "sed -n 2p '$TMP/out' | grep -q '^lr-0.1-'"
    check "lowest lr last" bash -c "sed -n 4p '$TMP/out' | grep -q '^lr-0.001-'"
    k runs list --runs-dir "$R" --sort params.optimizer.adam.learning_rate
    check "ascending by default" bash -c "sed -n 2p '$TMP/out' | grep -q '^lr-0.001-'"
    k runs list --runs-dir "$R" --sort val_loss --metrics val_loss
    check "exit 0" [ $rc = 0 ]
    local v1 v2 v3
    v1=$(sed -n 2p "$TMP/out" | awk '{print $NF}') v2=$(sed -n 3p "$TMP/out" | awk '{print $NF}') v3=$(sed -n 4p "$TMP/out" | awk '{print $NF}')
    check "val_loss ascending ($v1 $v2 $v3)" awk -v a="$v1" -v b="$v2" -v c="$v3" 'BEGIN { exit !(a <= b && b <= c) }'
    k runs list --runs-dir "$R" --sort 'loss sideways'
    check "bad sort key: exit 2" [ $rc = 2 ]
    check "says why" has "asc or desc"
}

t_filter() {
    k runs list --runs-dir "$R" --filter 'params.optimizer.adam.learning_rate < 0.05 and metrics.val_accuracy >= 0'
    check "exit 0" [ $rc = 0 ]
    check "two runs" [ "$(grep -c finished "$TMP/out")" = 2 ]
    check "not lr-0.1" bash -c "! grep -q '^lr-0.1-' '$TMP/out'"
    k runs list --runs-dir "$R" --filter "status = 'finished' and (name = 'lr-0.1' or name = \"lr-0.001\")"
    check "or and quotes" [ "$(grep -c finished "$TMP/out")" = 2 ]
    k runs list --runs-dir "$R" --filter 'metrics.val_accuracy > 2'
    check "nothing matches: exit 0" [ $rc = 0 ]
    check "says so" has "no matching runs"
    k runs list --runs-dir "$R" --filter 'metrics.val_accuracy > and x'
    check "bad filter: exit 2" [ $rc = 2 ]
    check "names the column" has "column 24: expected a value or a name after '>'"
    check "caret under it" grep -qx "$(printf '%25s^' '')" "$TMP/out"
    k runs list --runs-dir "$R" --filter "status = 'done'"
    check "unknown status: exit 2" [ $rc = 2 ]
    check "names it" has "unknown status 'done'"
}

t_json() {
    k runs list --runs-dir "$R" --json --filter "name = 'lr-0.01'"
    check "exit 0" [ $rc = 0 ]
    check "one object" [ "$(grep -c '"id":' "$TMP/out")" = 1 ]
    check "its metrics" has '"val_accuracy":'
    check "test metrics too" has '"test_accuracy":'
    check "status" has '"status": "finished"'
    check "an array" [ "$(sed -n '1p;$p' "$TMP/out" | tr -d '\n')" = "[]" ]
    check "of one object per line" [ "$(grep -c '^  {.*}$' "$TMP/out")" = 1 ]
    k runs list --runs-dir "$R" --json --filter "name = 'none'"
    check "empty: an empty array" [ "$(cat "$TMP/out")" = "[]" ]
}

t_show() {
    k runs show lr-0.01 --runs-dir "$R"
    check "exit 0" [ $rc = 0 ]
    check "its id" has "tiny/lr-0.01-"
    check "status" bash -c "grep -q '^status  *finished' '$TMP/out'"
    check "param" bash -c "grep -q '^  optimizer.adam.learning_rate  *0.01\$' '$TMP/out'"
    check "metrics table" bash -c "grep -q '^  val_accuracy ' '$TMP/out'"
    k runs show "$(folder lr-0.1)" # a folder: its runs folder is found without --runs-dir
    check "by folder: exit 0" [ $rc = 0 ]
    check "by folder: that run" bash -c "grep -q '^  optimizer.adam.learning_rate  *0.1\$' '$TMP/out'"
    k runs show "$(basename "$(folder lr-0.001)")" --runs-dir "$R" --json
    check "json" has '"optimizer.adam.learning_rate":	0.001'
    k runs show lr-0 --runs-dir "$R"
    check "ambiguous prefix: exit 2" [ $rc = 2 ]
    check "names the candidates" has "matches several runs"
    k runs show nothing-like-this --runs-dir "$R"
    check "unknown run: exit 2" [ $rc = 2 ]
    check "says so" has "no run matches 'nothing-like-this'"
}

t_compare() {
    k runs compare lr-0.001 lr-0.1 --runs-dir "$R"
    check "exit 0" [ $rc = 0 ]
    check "labels are run names" bash -c "sed -n 1p '$TMP/out' | grep -q 'lr-0.001  *lr-0.1'"
    check "one param differs" has "params that differ (1 of"
    check "side by side" bash -c "grep -q '^  optimizer.adam.learning_rate  *0.001  *0.1\$' '$TMP/out'"
    check "final (best) metrics" bash -c "grep -q '^  val_accuracy  *[0-9.]* ([0-9.]*)  *[0-9.]* ([0-9.]*)\$' '$TMP/out'"
    k runs compare lr-0.001 lr-0.01 lr-0.1 --runs-dir "$R" --all
    check "all params" has "data.batch_size"
    k runs compare lr-0.001 lr-0.01 lr-0.1 --runs-dir "$R" --json
    check "json params" has '"optimizer.adam.learning_rate":'
    check "json best" has '"best":'
    k runs compare lr-0.001 --runs-dir "$R"
    check "one run: exit 2" [ $rc = 2 ]
}

t_models() {
    k models register lr-0.1 --name clf --runs-dir "$R"
    check "exit 0" [ $rc = 0 ]
    check "version 1" has "registered clf version 1 from run tiny/lr-0.1-"
    check "a servable version: model.json" [ -f "$R/models/clf/1/model.json" ]
    check "a servable version: weights" [ -f "$R/models/clf/1/weights.safetensors" ]
    check "best checkpoint exported" grep -q '"checkpoint": "step-' "$R/models/clf/1/model.json"
    k models register "$(folder lr-0.01)" --name clf
    check "by folder: version 2" has "registered clf version 2"
    k models register lr-0.001 --name clf --version 2 --runs-dir "$R"
    check "taken version: exit 2" [ $rc = 2 ]
    k models register lr-0.001 --runs-dir "$R"
    check "default name: the experiment" has "registered tiny version 1"
    k models alias clf 1 production --runs-dir "$R"
    check "alias: exit 0" [ $rc = 0 ]
    check "alias: says so" has "clf@production -> version 1"
    k models alias clf 9 production --runs-dir "$R"
    check "alias of an unknown version: exit 2" [ $rc = 2 ]
    check "names the versions" has "versions: 1, 2"
    k models list --runs-dir "$R"
    check "list: exit 0" [ $rc = 0 ]
    check "three versions" [ "$(grep -c 'models/' "$TMP/out")" = 3 ]
    check "alias shown" bash -c "grep -q '^clf  *1  *production  *tiny/lr-0.1-' '$TMP/out'"
    k models resolve models:/clf@production --runs-dir "$R"
    check "resolve alias" [ "$(cat "$TMP/out")" = "$R/models/clf/1" ]
    k models resolve models:/clf/latest --runs-dir "$R"
    check "resolve latest" [ "$(cat "$TMP/out")" = "$R/models/clf/2" ]
    k models resolve models:/clf --runs-dir "$R"
    check "resolve base" [ "$(cat "$TMP/out")" = "$R/models/clf" ]
    k models resolve models:/clf@staging --runs-dir "$R"
    check "unknown alias: exit 2" [ $rc = 2 ]
    check "names the aliases" has "no alias 'staging' (aliases: production -> 1)"
    k models resolve models:/nope/1 --runs-dir "$R"
    check "unknown model: exit 2" [ $rc = 2 ]
    k models resolve clf --runs-dir "$R"
    check "not a URI: exit 2" [ $rc = 2 ]
    k runs show lr-0.1 --runs-dir "$R"
    check "the run knows its model" bash -c "grep -q '^  clf  *1  *production' '$TMP/out'"
}

t_rm() {
    local f
    f=$(folder lr-0.001)
    "$KILN" runs rm lr-0.001 --runs-dir "$R" </dev/null >"$TMP/out" 2>&1
    check "no --yes without a terminal: exit 2" [ $? = 2 ]
    check "kept" [ -d "$f" ]
    k runs rm lr-0.001 --runs-dir "$R" --yes
    check "exit 0" [ $rc = 0 ]
    check "says so" has "removed"
    check "folder gone" [ ! -e "$f" ]
    k runs list --runs-dir "$R"
    check "two left" [ "$(grep -c finished "$TMP/out")" = 2 ]
    k models list --runs-dir "$R"
    check "its model version stays, run marked removed" has "(removed)"
    rm -rf "$(folder lr-0.01)" # by hand: the registry forgets it at the next command
    k runs list --runs-dir "$R"
    check "one left" [ "$(grep -c finished "$TMP/out")" = 1 ]
}

t_pre_registry_folders() {
    local r2=$TMP/old
    mkdir -p "$r2/tiny"
    cp -r "$(folder lr-0.1)" "$r2/tiny/"
    k runs list --runs-dir "$r2"
    check "exit 0" [ $rc = 0 ]
    check "imported" has "lr-0.1-"
    k runs show lr-0.1 --runs-dir "$r2"
    check "with its params" has "optimizer.adam.learning_rate"
    check "and metrics" bash -c "grep -q '^  val_accuracy ' '$TMP/out'"
}

# PostgreSQL: a server that cannot be reached fails the CLI (exit 1, naming the URI) but never a
# training; once it is back, the run is there.
t_unreachable_registry() {
    local r3=$TMP/unreachable
    mkdir -p "$r3"
    KILN_REGISTRY=postgresql://postgres@127.0.0.1:1/kiln k runs list --runs-dir "$r3"
    check "list: exit 1 (rc $rc)" [ $rc = 1 ]
    check "names the server" has "postgresql://postgres@127.0.0.1:1/kiln"
    check "says it cannot connect" has "cannot connect"
    KILN_REGISTRY=postgresql://postgres@127.0.0.1:1/kiln \
        k train "$TMP/tiny.yaml" --runs-dir "$r3" --set train.epochs=1 --quiet
    check "training is not stopped by it (rc $rc)" [ $rc = 0 ]
    check "warned on the terminal" has "warning: run registry"
    check "warned once in log.txt" [ "$(cat "$r3"/tiny/*/log.txt | grep -c 'warning: run registry')" = 1 ]
    k runs list --runs-dir "$r3"
    check "indexed from the folder once reachable" grep -Eq ' tiny +finished ' "$TMP/out"
    KILN_REGISTRY=postgres://nobody:secret@127.0.0.1:1/kiln k runs list --runs-dir "$r3"
    check "the password is not shown" bash -c "! grep -q secret '$TMP/out'"
    # an MLflow server is where training mirrors its runs; reading commands use the local index
    k runs list --runs-dir "$r3" --registry mlflow+http://127.0.0.1:5000
    check "tracking servers: runs list reads the local index (rc $rc)" [ $rc = 0 ]
    k runs list --runs-dir "$r3" --registry ftp://127.0.0.1:5000
    check "unknown scheme: exit 2 (rc $rc)" [ $rc = 2 ]
    check "unknown scheme: names the forms" has "mlflow+http"
}

t_garbage_registry() {
    if [ -n "$PG" ]; then t_unreachable_registry; return; fi
    local r3=$TMP/garbage
    mkdir -p "$r3"
    echo "certainly not SQLite" >"$r3/kiln.db"
    k runs list --runs-dir "$r3"
    check "list: exit 1" [ $rc = 1 ]
    check "names the file" has "$r3/kiln.db"
    check "says what to do" has "move it away"
    k train "$TMP/tiny.yaml" --runs-dir "$r3" --set train.epochs=1 --quiet
    check "training is not stopped by it" [ $rc = 0 ]
    check "warned on the terminal" has "warning: run registry"
    check "warned once in log.txt" [ "$(cat "$r3"/tiny/*/log.txt | grep -c 'warning: run registry')" = 1 ]
    mv "$r3/kiln.db" "$r3/kiln.db.bad"
    k runs list --runs-dir "$r3"
    check "rebuilt from the folders" grep -Eq ' tiny +finished ' "$TMP/out"
}

t_two_trainings_at_once() {
    local r4=$TMP/two
    "$KILN" train "$TMP/tiny.yaml" --runs-dir "$r4" --name a --quiet >/dev/null 2>&1 &
    local p1=$!
    "$KILN" train "$TMP/tiny.yaml" --runs-dir "$r4" --name b --quiet >/dev/null 2>&1 &
    local p2=$!
    wait $p1
    local c1=$?
    wait $p2
    local c2=$?
    check "both finished ($c1 $c2)" [ "$c1$c2" = 00 ]
    k runs list --runs-dir "$r4" --sort name
    check "both registered" [ "$(grep -Ec ' tiny +finished ' "$TMP/out")" = 2 ]
    k runs compare a b --runs-dir "$r4" --json
    check "both have their metrics" bash -c "grep -A3 '\"val_accuracy\"' '$TMP/out' | grep -q '\"final\"'"
}

# How to make a folder read-only for a command (an archive, a read-only mount): chmod -R a-w
# does not stop root, so as root a read-only bind mount in a private mount namespace
# (unshare -m), which the kernel enforces for everyone; chmod for anyone else.
ro_mode=
if [ "$(id -u)" != 0 ]; then
    ro_mode=chmod
elif mkdir -p "$TMP/ro-probe" && unshare -m sh -c 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" &&
        ! touch "$0/x" 2>/dev/null' "$TMP/ro-probe" 2>/dev/null; then
    ro_mode=mount
fi
ro() { # ro DIR COMMAND...: runs COMMAND with DIR (and all below it) read-only
    local d=$1 r
    shift
    case $ro_mode in
    mount) unshare -m sh -c 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"' "$d" "$@" ;;
    chmod) chmod -R a-w "$d"; "$@"; r=$?; chmod -R u+w "$d"; return $r ;;
    esac
}
kro() { ro "$1" "$KILN" "${@:2}" >"$TMP/out" 2>&1; rc=$?; } # kro DIR kiln-args...

t_read_only_runs() {
    if [ -n "$PG" ]; then
        echo "  (SQLite only: with PostgreSQL the registry is not in the runs folder)"
        return
    fi
    if [ -z "$ro_mode" ]; then
        echo "  SKIPPED: root without unshare -m / mount here: no way to make a folder read-only"
        return
    fi
    local a=$TMP/archive run
    mkdir -p "$a" && cp -a "$R/." "$a/"
    run=$(ls -d "$a"/tiny/lr-0.1-* | head -1)
    rm -f "$run"/eval-*.json
    local before
    before=$(cat "$a/kiln.db"* | md5sum)
    kro "$a" runs list --runs-dir "$a"
    check "runs list: exit 0 (rc $rc)" [ $rc = 0 ]
    check "runs list: the run" has "lr-0.1-"
    check "runs list: says the folder is read-only" has "is read-only"
    kro "$a" runs show lr-0.1 --runs-dir "$a"
    check "runs show: exit 0 (rc $rc)" [ $rc = 0 ]
    check "runs show: params" has "optimizer.adam.learning_rate"
    kro "$a" runs show "$run"
    check "runs show by folder: exit 0 (rc $rc)" [ $rc = 0 ]
    kro "$a" runs compare lr-0.1 lr-0.1 --runs-dir "$a"
    check "runs compare: exit 0 (rc $rc)" [ $rc = 0 ]
    kro "$a" models list --runs-dir "$a"
    check "models list: exit 0 (rc $rc)" [ $rc = 0 ]
    check "models list: the model" has "clf"
    kro "$a" models resolve models:/clf@production --runs-dir "$a"
    check "models resolve: exit 0 (rc $rc)" [ $rc = 0 ]
    kro "$a" eval "$run"
    check "eval: exit 0 (rc $rc)" [ $rc = 0 ]
    check "eval: the metrics" has "accuracy"
    check "eval: a warning that they are not saved" has "warning: eval-test.json not written"
    check "eval: no eval-test.json" [ ! -e "$run/eval-test.json" ]
    kro "$a" export "$run"
    check "export into the read-only run: exit 1 (rc $rc)" [ $rc = 1 ]
    check "export: says where else" has "export elsewhere with --to DIR"
    kro "$a" export "$run" --to "$TMP/exported"
    check "export elsewhere: exit 0 (rc $rc)" [ $rc = 0 ]
    kro "$a" train --resume "$run" --quiet
    check "resume of a read-only run: a runtime failure, exit 1 (rc $rc)" [ $rc = 1 ]
    kro "$a" runs rm lr-0.1 --runs-dir "$a" --yes
    check "runs rm: exit 1 (rc $rc)" [ $rc = 1 ]
    check "runs rm: says why" has "is read-only"
    check "runs rm: the folder stays" [ -d "$run" ]
    kro "$a" models alias clf 1 staging --runs-dir "$a"
    check "models alias: exit 1 (rc $rc)" [ $rc = 1 ]
    check "kiln.db unchanged" [ "$(cat "$a/kiln.db"* | md5sum)" = "$before" ]
    rm -f "$a"/kiln.db*
    kro "$a" runs list --runs-dir "$a"
    check "run folders without a kiln.db: exit 0 (rc $rc)" [ $rc = 0 ]
    check "run folders without a kiln.db: the run" has "lr-0.1-"
    check "no kiln.db made" [ ! -e "$a/kiln.db" ]
    # busy: another process holds the run's writer lock (flock(1) on the folder, as kiln does)
    flock "$run" "$KILN" train --resume "$run" --quiet >"$TMP/out" 2>&1
    rc=$?
    check "resume of a busy run: exit 1 (rc $rc)" [ $rc = 1 ]
    check "resume of a busy run: says so" has "open for writing in another process"
    flock "$run" "$KILN" runs rm "$run" --yes >"$TMP/out" 2>&1
    rc=$?
    check "runs rm of a busy run: exit 1 (rc $rc)" [ $rc = 1 ]
    check "runs rm of a busy run: says so" has "being written by another process"
}

# A run works from any directory: relative data paths are taken relative to the config file
# (those given with --set relative to the current directory) and stored absolute.
t_portable_run() {
    local p=$TMP/project d n
    mkdir -p "$p/data" "$TMP/elsewhere" "$TMP/other"
    cp "$TMP/train.csv" "$TMP/test.csv" "$p/data/"
    sed 's|path: train.csv|path: data/train.csv|; s|path: test.csv|path: ./data/test.csv|' "$TMP/tiny.yaml" >"$p/exp.yaml"
    (cd "$TMP" && "$KILN" train project/exp.yaml --runs-dir project/runs --name from-parent --set train.epochs=1 --quiet) >"$TMP/out" 2>&1
    rc=$?
    check "trained from the parent directory (exit $rc)" [ $rc = 0 ]
    (cd "$p" && "$KILN" train exp.yaml --runs-dir runs --name from-inside --set train.epochs=1 --quiet) >"$TMP/out" 2>&1
    rc=$?
    check "trained from the config's directory (exit $rc)" [ $rc = 0 ]
    cp "$TMP/test.csv" "$TMP/other/t.csv"
    (cd "$TMP" && "$KILN" train project/exp.yaml --runs-dir project/runs --name with-set --set train.epochs=1 \
        --set data.test.path=other/t.csv --quiet) >"$TMP/out" 2>&1
    rc=$?
    check "a --set path is relative to the current directory (exit $rc)" [ $rc = 0 ]
    (cd "$p" && "$KILN" train <(cat exp.yaml) --runs-dir runs --name from-pipe --set train.epochs=1 --quiet) >"$TMP/out" 2>&1
    rc=$?
    check "a config from a pipe: paths relative to the current directory (exit $rc)" [ $rc = 0 ]
    for d in "$p"/runs/tiny/*; do
        n=$(basename "$d")
        check "$n: config.yaml holds the absolute train path" grep -q "path: $p/data/train.csv" "$d/config.yaml"
        check "$n: no relative path left" bash -c "! grep -Eq 'path: [^/]' '$d/config.yaml'"
        (cd "$TMP/elsewhere" && "$KILN" eval "$d" --quiet) >"$TMP/out" 2>&1
        rc=$?
        check "$n: eval from elsewhere (exit $rc)" [ $rc = 0 ]
        (cd "$TMP/elsewhere" && "$KILN" export "$d" --to "$TMP/elsewhere/exp-$n") >"$TMP/out" 2>&1
        rc=$?
        check "$n: export from elsewhere (exit $rc)" [ $rc = 0 ]
    done
    check "four runs" [ "$(ls "$p"/runs/tiny | wc -l)" = 4 ]
    check "the --set path" grep -q "path: $TMP/other/t.csv" "$p"/runs/tiny/with-set-*/config.yaml
}

run_test t_list
run_test t_sort
run_test t_filter
run_test t_json
run_test t_show
run_test t_compare
run_test t_models
run_test t_rm
run_test t_pre_registry_folders
run_test t_garbage_registry
run_test t_two_trainings_at_once
run_test t_portable_run
run_test t_read_only_runs
finish

#!/usr/bin/env bash
# The registry on PostgreSQL, what needs a server of its own: the database killed in the middle
# of a training (pg_ctl stop -m immediate, then started again) loses no point once it is back;
# the user config file's registry: key and its errors; --registry on the command line. It starts
# a private throwaway server (scripts/pg_local.sh with its own folder and port), so it can stop
# it; exit 77 (skipped) only when none can be started. Tens of seconds.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export OMP_NUM_THREADS=1
PGDIR=/tmp/kiln-pg-kill-$$
PORT=$((30000 + $$ % 20000))
pgl() { KILN_PG_DIR=$PGDIR KILN_PG_PORT=$PORT bash "$SRC/scripts/pg_local.sh" "$@"; }
if ! BASE=$(pgl 2>"$TMP/pg.err"); then
    echo "SKIPPED: no private PostgreSQL server could be started: $(cat "$TMP/pg.err")"
    exit 77
fi
trap 'pgl stop; rm -rf "$PGDIR" "$PGDIR.lock" "$TMP"' EXIT
PSQL=$(ls /usr/lib/postgresql/*/bin/psql /usr/bin/psql 2>/dev/null | head -1)
q() { "$PSQL" "$BASE" -Atqc "$1" 2>/dev/null; }
export KILN_REGISTRY="$BASE?schema=kill"
unset KILN_TEST_PG

awk 'BEGIN { srand(3); print "a,b,c,d,label"
             for (i = 0; i < 400; i++) { a = rand(); b = rand(); c = rand(); d = rand()
                 printf "%.4f,%.4f,%.4f,%.4f,%s\n", a, b, c, d, (a + b > 1 ? "hi" : "lo") } }' >"$TMP/train.csv"
cat >"$TMP/tiny.yaml" <<'YAML'
experiment: tiny
seed: 1
data: {source: csv, label: label, train: {path: train.csv}, validation_split: 0.2, batch_size: 16}
model:
  input: [4]
  layers: [{dense: {units: 8, activation: relu}}, {dense: {units: 2}}]
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01}}
train: {epochs: 40}
log: {every_steps: 1}
YAML

t_kill_database() {
    local R=$TMP/runs
    mkdir -p "$R"
    "$KILN" train "$TMP/tiny.yaml" --runs-dir "$R" --name k --quiet >"$TMP/train.out" 2>&1 &
    local pid=$! n=0
    for _ in $(seq 1 300); do # until the registry holds some points (at most 30 s)
        n=$(q "SELECT count(*) FROM kill.metrics" || echo 0)
        [ "${n:-0}" -gt 20 ] && break
        sleep 0.1
    done
    check "points reached the registry before the kill ($n)" [ "${n:-0}" -gt 20 ]
    pgl stop
    check "the server is down" bash -c "! '$PSQL' '$BASE' -Atqc 'SELECT 1' >/dev/null 2>&1"
    sleep 3
    pgl >/dev/null
    wait $pid
    rc=$?
    check "training finished (rc $rc)" [ $rc = 0 ]
    cp "$TMP/train.out" "$TMP/out"
    check "warned that the registry went away" has "warning: run registry"
    local lines
    lines=$(cat "$R"/tiny/k-*/metrics.jsonl | wc -l)
    if grep -q "is back; the run is caught up" "$TMP/train.out"; then
        n=$(q "SELECT count(*) FROM kill.metrics")
        check "caught up by the training itself: $n of $lines points" [ "$n" = "$lines" ]
    fi
    k runs sync --runs-dir "$R"
    check "runs sync: exit 0 (rc $rc)" [ $rc = 0 ]
    n=$(q "SELECT count(*) FROM kill.metrics")
    check "no point lost: $n of $lines" [ "$n" = "$lines" ]
    check "the run finished" [ "$(q "SELECT status FROM kill.runs")" = finished ]
    k runs list --runs-dir "$R" --filter "metrics.loss > 0 and status = 'finished'"
    check "listed" grep -Eq '^k-.* tiny +finished ' "$TMP/out"
}

t_user_config() {
    local R=$TMP/cfg
    mkdir -p "$R"
    "$KILN" train "$TMP/tiny.yaml" --runs-dir "$R" --name c --set train.epochs=1 --quiet \
        --registry "$BASE?schema=cfg" >/dev/null 2>&1
    printf 'registry: %s?schema=cfg\n' "$BASE" >"$TMP/config.yaml"
    KILN_REGISTRY= KILN_CONFIG=$TMP/config.yaml k runs list --runs-dir "$R"
    check "config: exit 0 (rc $rc)" [ $rc = 0 ]
    check "config: the run" has "c-"
    check "config: no kiln.db" [ ! -e "$R/kiln.db" ]
    check "--registry: the run went to PostgreSQL" [ "$(q "SELECT count(*) FROM cfg.runs")" = 1 ]
    printf 'registry: %s?schema=cfg\nregistyr: x\n' "$BASE" >"$TMP/config.yaml"
    KILN_REGISTRY= KILN_CONFIG=$TMP/config.yaml k runs list --runs-dir "$R"
    check "unknown key: exit 2 (rc $rc)" [ $rc = 2 ]
    check "unknown key: names file and line" has "$TMP/config.yaml:2:"
    printf 'registry: mongodb://x\n' >"$TMP/config.yaml"
    KILN_REGISTRY= KILN_CONFIG=$TMP/config.yaml k runs list --runs-dir "$R"
    check "bad URI in the config: exit 2 (rc $rc)" [ $rc = 2 ]
    check "bad URI in the config: names the forms" has "postgresql://"
    KILN_REGISTRY= KILN_CONFIG=$TMP/config.yaml k runs list --runs-dir "$R" --registry "sqlite:"
    check "--registry beats the config (rc $rc)" [ $rc = 0 ]
    check "sqlite: is runs/kiln.db" [ -f "$R/kiln.db" ]
    k runs list --runs-dir "$R" --registry "sqlite:$TMP/elsewhere.db"
    check "sqlite:PATH (rc $rc)" [ $rc = 0 ] && [ -f "$TMP/elsewhere.db" ]
    k runs list --runs-dir "$R" --registry
    check "--registry without a URI: exit 2 (rc $rc)" [ $rc = 2 ]
    k runs list --runs-dir "$R" --registry ftp://tracking.example:5000
    check "an unknown scheme: exit 2 (rc $rc)" [ $rc = 2 ]
}

run_test t_kill_database
run_test t_user_config
finish

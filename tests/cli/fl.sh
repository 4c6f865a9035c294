#!/usr/bin/env bash
# kiln fl: a real federation over loopback (1 server + 4 client processes), authentication,
# TLS (a self-signed certificate made here with openssl) and client certificates, every fault
# (garbage, wrong shape, NaN, an update far out of range, a client that drops mid-round, one
# that answers after the deadline), a round retried with too few updates, kill -9 of the server
# and --resume, and kiln fl simulate's partitions. Data: the synthetic wine table (1500 rows).
. "$(dirname "$0")/lib.sh"
EXAMPLE_DATA=$(dirname "$KILN")/kiln_example_data
mkdir -p "$TMP/tabular"
"$EXAMPLE_DATA" "$TMP/tabular" >/dev/null || { echo "kiln_example_data failed"; exit 1; }
CFG=$TMP/wine.yaml
cat >"$CFG" <<YAML
experiment: wine-fl
seed: 7
data:
  source: csv
  label: quality
  train: {path: tabular/wine_train.csv}
  test: {path: tabular/wine_test.csv}
  normalize: {standardize: true}
  batch_size: 32
model:
  input: [11]
  layers:
    - dense: {units: 16, activation: relu}
    - dense: {units: 3}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01}}
train: {epochs: 1}
YAML
export OMP_NUM_THREADS=1
PIDS=()

# start_server NAME ARGS...: a server in the background ($SPID), its port in $PORT
start_server() {
    local name=$1
    shift
    rm -f "$TMP/$name.port"
    "$KILN" fl server "$CFG" --port 0 --port-file "$TMP/$name.port" --runs-dir "$TMP/runs-$name" "$@" \
        >"$TMP/$name.log" 2>&1 &
    SPID=$!
    PIDS+=("$SPID")
    for _ in $(seq 300); do [ -s "$TMP/$name.port" ] && break; sleep 0.1; done
    PORT=$(cat "$TMP/$name.port" 2>/dev/null)
    [ -n "$PORT" ] || { echo "  server $name did not start" >&2; cat "$TMP/$name.log" >&2; }
}

# client NAME ARGS...: a client in the background ($CPID), output in $TMP/NAME.log
client() {
    local name=$1
    shift
    "$KILN" fl client "$CFG" --id "$name" --give-up 20 "$@" >"$TMP/$name.log" 2>&1 &
    CPID=$!
    PIDS+=("$CPID")
}

# waitrc PID: its exit code in $rc (kills it after 120 s)
waitrc() {
    local pid=$1
    for _ in $(seq 1200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
}

cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT

in_log() { grep -qF -- "$2" "$TMP/$1.log" || { echo "  $1.log lacks: $2" >&2; sed 's/^/    | /' "$TMP/$1.log" | tail -15 >&2; test_failed=1; return 1; }; }
count_in_log() { grep -cF -- "$2" "$TMP/$1.log"; }
run_dir() { dirname "$(ls -d "$TMP"/runs-"$1"/wine-fl/*/run.json | head -1)"; }

t_usage() {
    k fl
    check "no subcommand: exit 2" [ "$rc" = 2 ]
    k fl server "$CFG"
    check "no --rounds: exit 2" [ "$rc" = 2 ]
    check "output has: --rounds R is required" has "--rounds R is required"
    k fl server "$CFG" --rounds 1 --strategy fedsgd
    check "unknown strategy: exit 2" [ "$rc" = 2 ]
    check "output has: expected fedavg, fedprox, fedadam or fedyogi" has "expected fedavg, fedprox, fedadam or fedyogi"
    k fl client "$CFG"
    check "client without --server: exit 2" [ "$rc" = 2 ]
    k fl simulate "$CFG" --clients 3 --rounds 1 --partition stripes --runs-dir "$TMP/runs-u"
    check "bad partition: exit 2" [ "$rc" = 2 ]
    check "output has: expected iid, dirichlet:ALPHA" has "expected iid, dirichlet:ALPHA"
    k fl --help
    check "--help: exit 0" [ "$rc" = 0 ]
    check "output has: kiln fl simulate" has "kiln fl simulate"
}

# 1 server + 4 client processes over loopback, two rounds, each client a quarter of the rows
t_federation() {
    start_server fed --rounds 2 --min-clients 4 --token tok
    local c=()
    for i in 0 1 2 3; do # each holds out a validation split of its own: federated evaluation
        client "fed$i" --server "http://127.0.0.1:$PORT" --token tok --shard "$i/4" \
            --set data.validation_split=0.2
        c+=("$CPID")
    done
    waitrc "$SPID"
    check "server exit 0" [ "$rc" = 0 ]
    for i in 0 1 2 3; do
        waitrc "${c[$i]}"
        check "client $i exit 0" [ "$rc" = 0 ]
        check "client $i trained both rounds" [ "$(count_in_log "fed$i" "update accepted")" = 2 ]
        in_log "fed$i" "on 300 rows"
    done
    in_log fed "round 2/2: 4 clients, 1200 samples, 0 rejected"
    in_log fed "clients_val_accuracy="
    check "the clients' validation accuracy per round" grep -q '"step":2,.*"split":"validation","name":"accuracy"' "$(run_dir fed)/metrics.jsonl"
    local d
    d=$(run_dir fed)
    check "metrics per round" grep -q '"step":2,.*"split":"test","name":"accuracy"' "$d/metrics.jsonl"
    check "checkpoint of round 2" [ -f "$d/checkpoints/step-2/weights.safetensors" ]
    check "strategy state" [ -f "$d/checkpoints/step-2/fl_state.safetensors" ]
    check "exported for kiln serve" [ -f "$d/export/2/model.json" ]
    check "TensorBoard" ls "$d"/events.out.tfevents.* >/dev/null
    check "registry" [ -f "$TMP/runs-fed/kiln.db" ]
    check "run finished" grep -q '"status":[[:space:]]*"finished"' "$d/run.json"
    k eval "$d"
    check "kiln eval reads the server's run" [ "$rc" = 0 ]
    local acc
    acc=$(sed -n 's/.*test_accuracy=\([0-9.]*\).*/\1/p' "$TMP/fed.log" | tail -1)
    check "the federation learned (accuracy $acc > 0.6)" awk -v a="$acc" 'BEGIN { exit !(a > 0.6) }'
}

t_auth() {
    start_server auth --rounds 1 --min-clients 1 --token right
    client bad --server "http://127.0.0.1:$PORT" --token wrong
    waitrc "$CPID"
    check "wrong token: client exit 1" [ "$rc" = 1 ]
    in_log bad "refused this client (HTTP 403)"
    local code
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' "http://127.0.0.1:$PORT/fl/v1/task?client=x")
    check "no token: 401 ($code)" [ "$code" = 401 ]
    check "no token: a JSON error, no weights" grep -q '"error"' "$TMP/body"
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' -H 'Authorization: Bearer nope' \
        "http://127.0.0.1:$PORT/fl/v1/task?client=x")
    check "wrong token: 403 ($code)" [ "$code" = 403 ]
    check "the refused got no round" [ "$(grep -c 'round 1/1' "$TMP/auth.log")" = 0 ]
    client good --server "http://127.0.0.1:$PORT" --token right
    waitrc "$CPID"
    check "right token: exit 0" [ "$rc" = 0 ]
    waitrc "$SPID"
    check "server exit 0" [ "$rc" = 0 ]
}

# garbage, a wrong shape, NaN and an update far out of range are refused; the round completes
# with the two good clients and the global model stays sound
t_bad_updates() {
    start_server bad --rounds 1 --min-available 6 --min-clients 2 --max-update-norm 100
    local u="http://127.0.0.1:$PORT"
    client good1 --server "$u" --shard 0/2
    client good2 --server "$u" --shard 1/2
    for f in garbage shape nan scale:1000; do client "inj-${f%%:*}" --server "$u" --inject "$f"; done
    waitrc "$SPID"
    check "server exit 0" [ "$rc" = 0 ]
    in_log bad "round 1/1: 2 clients, 1500 samples, 4 rejected"
    in_log inj-garbage "update not taken (HTTP 400)"
    in_log inj-shape "has shape"
    in_log inj-nan "non-finite"
    in_log inj-scale "over the limit"
    check "log.txt names the 4 refused updates" [ "$(grep -c 'refused the update' "$(run_dir bad)/log.txt")" = 4 ]
    local acc
    acc=$(sed -n 's/.*test_accuracy=\([0-9.]*\).*/\1/p' "$TMP/bad.log" | tail -1)
    check "the global model is sound (accuracy $acc > 0.5)" awk -v a="$acc" 'BEGIN { exit !(a > 0.5) }'
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
}

# a client that drops mid-round and one that answers after the deadline: the round completes
# with those that answered; the late update is refused (409)
t_drop_and_slow() {
    start_server slow --rounds 1 --min-available 4 --min-clients 2 --round-timeout 8
    local u="http://127.0.0.1:$PORT"
    client s1 --server "$u" --shard 0/2
    client s2 --server "$u" --shard 1/2
    client sdrop --server "$u" --inject drop
    local dpid=$CPID
    client slate --server "$u" --inject sleep:12 --give-up 3
    local lpid=$CPID
    waitrc "$SPID"
    check "server exit 0" [ "$rc" = 0 ]
    in_log slow "round 1/1: 2 clients"
    waitrc "$dpid"
    check "dropped client died (exit 3)" [ "$rc" = 3 ]
    waitrc "$lpid"
    in_log slate "could not be sent"
}

# a round that gets fewer than --min-clients updates is retried, not aggregated
t_retry() {
    start_server retry --rounds 1 --min-clients 2 --round-timeout 4
    local u="http://127.0.0.1:$PORT"
    client r1 --server "$u"
    client rdrop --server "$u" --inject drop
    for _ in $(seq 200); do grep -q "retried" "$TMP/retry.log" && break; sleep 0.1; done
    in_log retry "fewer than --min-clients 2: the round is retried"
    client r3 --server "$u"
    waitrc "$SPID"
    check "server exit 0 after the retry" [ "$rc" = 0 ]
    in_log retry "round 1/1: 2 clients"
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
}

# kill -9 of the server in the middle, --resume on the same port: the clients carry on
t_kill_resume() {
    start_server kr --rounds 4 --min-clients 2
    local u="http://127.0.0.1:$PORT" port=$PORT d
    client k1 --server "$u" --shard 0/2 --give-up 60
    local p1=$CPID
    client k2 --server "$u" --shard 1/2 --give-up 60
    local p2=$CPID
    for _ in $(seq 600); do ls "$TMP"/runs-kr/wine-fl/*/checkpoints/step-2 >/dev/null 2>&1 && break; sleep 0.1; done
    kill -9 "$SPID"
    wait "$SPID" 2>/dev/null
    d=$(run_dir kr)
    check "round 2 was checkpointed before the kill" [ -d "$d/checkpoints/step-2" ]
    "$KILN" fl server --resume "$d" --rounds 4 --min-clients 2 --port "$port" >"$TMP/kr2.log" 2>&1 &
    SPID=$!
    PIDS+=("$SPID")
    waitrc "$SPID"
    check "resumed server exit 0" [ "$rc" = 0 ]
    in_log kr2 "resumed $d after round"
    in_log kr2 "round 4/4: 2 clients"
    check "resumed run finished" grep -q '"status":[[:space:]]*"finished"' "$d/run.json"
    check "round 4 checkpoint" [ -f "$d/checkpoints/step-4/weights.safetensors" ]
    waitrc "$p1"
    check "client 1 exit 0" [ "$rc" = 0 ]
    # SIGTERM: the server stops cleanly, the run says "stopped"
    start_server term --rounds 5 --min-clients 1
    for _ in $(seq 100); do grep -q "waiting for" "$TMP/term.log" && break; sleep 0.1; done
    kill -TERM "$SPID"
    waitrc "$SPID"
    check "SIGTERM: exit 1" [ "$rc" = 1 ]
    check "SIGTERM: run stopped" grep -q '"status":[[:space:]]*"stopped"' "$(run_dir term)/run.json"
    waitrc "$p2"
    check "client 2 exit 0" [ "$rc" = 0 ]
}

# secure aggregation: clients mask pairwise with a shared key; the sum equals plain FedAvg's
t_secure_agg() {
    start_server sa --rounds 2 --min-clients 3 --secure-agg
    local u="http://127.0.0.1:$PORT" c=()
    for i in 0 1 2; do client "sa$i" --server "$u" --shard "$i/3" --secagg-key s3cr3t; c+=("$CPID"); done
    waitrc "$SPID"
    check "secure server exit 0" [ "$rc" = 0 ]
    in_log sa "round 2/2: 3 clients, 1500 samples, 0 rejected"
    in_log sa "(securely aggregated)"
    for p in "${c[@]}"; do waitrc "$p"; check "secure client exit 0" [ "$rc" = 0 ]; done
    start_server plain --rounds 2 --min-clients 3
    u="http://127.0.0.1:$PORT"
    for i in 0 1 2; do client "pl$i" --server "$u" --shard "$i/3"; done
    waitrc "$SPID"
    local a b
    a=$(sed -n 's/^round 2.*test_loss=\([0-9.]*\).*/\1/p' "$TMP/sa.log")
    b=$(sed -n 's/^round 2.*test_loss=\([0-9.]*\).*/\1/p' "$TMP/plain.log")
    check "secure sum = plain FedAvg (test loss $a vs $b)" awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(a != "" && d < 0.0005 && d > -0.0005) }'
    # a client without the key cannot take part; a missing member means a retried round
    start_server sa2 --rounds 1 --min-available 2 --min-clients 1 --secure-agg --round-timeout 5 --max-retries 0
    u="http://127.0.0.1:$PORT"
    client sakey --server "$u" --secagg-key s3cr3t
    client sanokey --server "$u"
    local np=$CPID
    waitrc "$np"
    check "no key: exit 1" [ "$rc" = 1 ]
    in_log sanokey "needs --secagg-key"
    waitrc "$SPID"
    in_log sa2 "secure aggregation needs all of them"
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
}

t_tls() {
    local o=$TMP/pki
    mkdir -p "$o"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$o/server.key" -out "$o/server.pem" -days 1 \
        -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >/dev/null 2>&1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$o/ca.key" -out "$o/ca.pem" -days 1 \
        -subj /CN=kiln-fl-ca >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -keyout "$o/client.key" -out "$o/client.csr" \
        -subj /CN=client1 >/dev/null 2>&1
    openssl x509 -req -in "$o/client.csr" -CA "$o/ca.pem" -CAkey "$o/ca.key" -CAcreateserial \
        -out "$o/client.pem" -days 1 >/dev/null 2>&1
    check "certificates made" [ -s "$o/server.pem" ] && [ -s "$o/client.pem" ]
    start_server tls --rounds 1 --min-clients 1 --token t --tls-cert "$o/server.pem" --tls-key "$o/server.key"
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/fl/v1/status")
    check "plain HTTP gets no answer from the HTTPS server ($code)" [ "$code" != 200 ]
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$o/server.pem" -H 'Authorization: Bearer t' "https://127.0.0.1:$PORT/fl/v1/status")
    check "HTTPS status: 200 ($code)" [ "$code" = 200 ]
    client tls1 --server "https://127.0.0.1:$PORT" --token t --ca "$o/server.pem"
    waitrc "$CPID"
    check "TLS client exit 0" [ "$rc" = 0 ]
    waitrc "$SPID"
    check "TLS server exit 0" [ "$rc" = 0 ]
    in_log tls "https://127.0.0.1"
    # client certificates: none -> 403; one signed by the CA -> in
    start_server mtls --rounds 1 --min-clients 1 --tls-cert "$o/server.pem" --tls-key "$o/server.key" --client-ca "$o/ca.pem"
    client nocert --server "https://127.0.0.1:$PORT" --ca "$o/server.pem"
    waitrc "$CPID"
    check "no client certificate: exit 1" [ "$rc" = 1 ]
    in_log nocert "HTTP 403"
    client withcert --server "https://127.0.0.1:$PORT" --ca "$o/server.pem" --cert "$o/client.pem" --key "$o/client.key"
    waitrc "$CPID"
    check "client certificate: exit 0" [ "$rc" = 0 ]
    waitrc "$SPID"
    check "mTLS server exit 0" [ "$rc" = 0 ]
}

t_simulate() {
    k fl simulate "$CFG" --clients 5 --rounds 2 --partition shards:1 --strategy fedprox --mu 0.1 --runs-dir "$TMP/runs-sim"
    check "simulate exit 0" [ "$rc" = 0 ]
    check "output has: client 4: 300 rows, classes [" has "client 4: 300 rows, classes ["
    check "output has: round 2/2: 5 clients, 1500 samples" has "round 2/2: 5 clients, 1500 samples"
    k fl simulate "$CFG" --clients 10 --rounds 2 --fraction-fit 0.3 --partition dirichlet:0.3 --strategy fedyogi --runs-dir "$TMP/runs-sim"
    check "simulate fedyogi exit 0" [ "$rc" = 0 ]
    check "output has: round 2/2: 3 clients" has "round 2/2: 3 clients"
    check "output has: strategy fedyogi" has "strategy fedyogi"
    cp "$CFG" "$TMP/staged.yaml"
    printf 'stages:\n  - {train: {epochs: 1}}\n  - {optimizer: {adam: {learning_rate: 0.001}}}\n' >>"$TMP/staged.yaml"
    k fl simulate "$TMP/staged.yaml" --clients 2 --rounds 1 --strategy fedprox --runs-dir "$TMP/runs-sim"
    check "FedProx with stages: exit 2" [ "$rc" = 2 ]
    check "output has: does not support a config with stages" has "does not support a config with stages"
    k fl simulate "$CFG" --clients 4 --rounds 2 --dp-noise 0.8 --dp-clip 2 --runs-dir "$TMP/runs-sim" --name dp
    check "simulate with DP exit 0" [ "$rc" = 0 ]
    check "output has: dp_epsilon=" has "dp_epsilon="
    check "epsilon logged per round" grep -q '"name":"dp_epsilon"' "$TMP"/runs-sim/wine-fl/dp-*/metrics.jsonl
}

cd "$TMP" || exit 1
# FL_TESTS="t_a t_b": only those (ctest runs the file in three parts, each well under a minute)
for t in t_usage t_federation t_auth t_bad_updates t_drop_and_slow t_retry t_kill_resume \
    t_secure_agg t_tls t_simulate; do
    case " ${FL_TESTS:-$t} " in *" $t "*) run_test "$t" ;; esac
done
finish

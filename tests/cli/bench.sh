#!/usr/bin/env bash
# bench.sh — kiln bench (docs/optimize.md): in process against an export of a briefly trained
# MLP, and over REST v1 and v2 against a kiln serve started here, with short durations. Checks
# structure and sanity only (a point per batch x concurrency, requests > 0, no errors,
# p50 <= p90 <= p99, rows = requests x batch), never timings; and the usage errors.
. "$(dirname "$0")/lib.sh"
SERVER_PID=""
stop_server() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
trap 'stop_server; rm -rf "$TMP"' EXIT

jqe() { jq -e "$@" >/dev/null; }
# sane FILE NPOINTS: the JSON's points are complete and ordered
sane() {
    jq -e --argjson n "$2" '(.points | length) == $n and all(.points[];
        .requests > 0 and .errors == 0 and .rows == .requests * .batch and .req_per_s > 0
        and .latency_ms.min <= .latency_ms.p50 and .latency_ms.p50 <= .latency_ms.p90
        and .latency_ms.p90 <= .latency_ms.p99 and .latency_ms.p99 <= .latency_ms.max)' "$1" >/dev/null ||
        { echo "  not sane:" >&2; head -c 1500 "$1" | sed 's/^/    | /' >&2; return 1; }
}

t_export() {
    cfg=$(small_config b)
    k train "$cfg" --runs-dir "$TMP/runs" --quiet --set train.epochs=1 --set train.max_steps=10
    check "train exit 0" [ $rc = 0 ]
    k export "$(ls -d "$TMP"/runs/small/*/ | head -1)" --to "$TMP/exp"
    check "export exit 0" [ $rc = 0 ]
}

t_in_process() {
    "$KILN" bench "$TMP/exp/1" --batch 1,4 --concurrency 1,2 --threads 2 --duration 200ms --warmup 50ms --json \
        >"$TMP/j" 2>"$TMP/err"
    check "exit 0" [ $? = 0 ]
    check "4 sane points" sane "$TMP/j" 4
    check "mode and precision" jqe '.mode == "in-process" and .precision == "fp32" and .input_row == 784' "$TMP/j"
    check "points batch-major" jqe '[.points[] | [.batch, .concurrency]] == [[1,1],[1,2],[4,1],[4,2]]' "$TMP/j"
    check "threads split over workers" jqe '.points[0].threads_per_worker == 2 and .points[1].threads_per_worker == 1' "$TMP/j"
    k bench "$TMP/exp/1" --batch 2 --duration 100ms --warmup 0 --threads 2
    check "table: exit 0" [ $rc = 0 ]
    check "table header" has "batch  concurrency  threads  requests  errors"
    check "table names the precision" has "(in-process, fp32, oneDNN ISA"
}

serve() {
    "$KILN" serve --host 127.0.0.1 --rest_api_port 0 --rest_api_num_threads 2 "$@" >"$TMP/serve.log" 2>&1 &
    SERVER_PID=$!
    PORT=""
    for _ in $(seq 100); do
        PORT=$(sed -n 's/.*serving .* on http:\/\/[0-9.]*:\([0-9]*\) .*/\1/p' "$TMP/serve.log")
        [ -n "$PORT" ] && return 0
        sleep 0.1
    done
    cat "$TMP/serve.log" >&2
    return 1
}

t_rest() {
    serve --model_base_path "$TMP/exp" --model_name fm || { test_failed=1; return; }
    "$KILN" bench --server "127.0.0.1:$PORT" --model fm --batch 1,3 --concurrency 1,4 --duration 200ms \
        --warmup 50ms --json >"$TMP/j1" 2>"$TMP/err"
    check "v1: exit 0" [ $? = 0 ]
    check "v1: 4 sane points" sane "$TMP/j1" 4
    check "v1: target and mode" jqe '.mode == "rest-v1" and (.target | endswith("/v1/models/fm:predict"))' "$TMP/j1"
    "$KILN" bench --server "http://127.0.0.1:$PORT/" --model fm --version 1 --protocol v2 --batch 2 \
        --concurrency 2 --duration 200ms --warmup 0 --json >"$TMP/j2" 2>"$TMP/err"
    check "v2: exit 0" [ $? = 0 ]
    check "v2: sane point" sane "$TMP/j2" 1
    check "v2: target" jqe '.mode == "rest-v2" and .target == "http://127.0.0.1:'"$PORT"'/v2/models/fm/versions/1/infer"' "$TMP/j2"
    # the server counted what the client sent
    curl -s "http://127.0.0.1:$PORT/monitoring/prometheus/metrics" >"$TMP/m"
    local v2n=$(jq '.points[0].requests' "$TMP/j2")
    check "server saw at least the counted v2 requests" awk -v n="$v2n" '/^kiln_requests_total\{model="fm",version="1",api="v2_infer",code="200"\}/ { s += $2 } END { exit !(s >= n) }' "$TMP/m"
    k bench --server "127.0.0.1:$PORT" --model nope --duration 100ms
    check "unknown model: exit 1" [ $rc = 1 ]
    check "unknown model: named" has "model 'nope' is not served"
    stop_server
}

t_errors() {
    k bench "$TMP/exp/1" --batch 0
    check "--batch 0: exit 2" [ $rc = 2 ]
    check "--batch 0: named" has "--batch 0"
    k bench "$TMP/exp/1" --concurrency 1,x
    check "--concurrency bad: exit 2" [ $rc = 2 ]
    k bench "$TMP/exp/1" --duration 5h
    check "--duration 5h: exit 2" has "--duration 5h"
    k bench --server localhost:1
    check "--server without --model: exit 2" [ $rc = 2 ]
    k bench "$TMP/exp/1" --protocol v3
    check "--protocol v3: exit 2" [ $rc = 2 ]
    k bench "$TMP/nothing"
    check "missing version: exit 2" [ $rc = 2 ]
    check "missing version: named" has "$TMP/nothing"
    k bench --server 127.0.0.1:1 --model m --duration 100ms
    check "no server: exit 1" [ $rc = 1 ]
}

# kiln optimize --report: the fp32 source, a folded, a folded + int8 and three pruned versions
# written here, and a --variants row, each with its size, parameters, test accuracy and timings.
t_report() {
    k optimize "$TMP/exp/1" --report --to "$TMP/opt" --bench-seconds 0.1 --threads 2 --variants "again=$TMP/exp/1"
    check "report: exit 0" [ $rc = 0 ]
    check "report: header" has "variant        runs as  size KiB  params  non-zero  test acc  b1 p50 ms  b1 p99 ms  b64 rows/s"
    check "report: names the CPU" has "CPU: "
    check "report: wrote the folded version" [ -s "$TMP/opt/1/model.json" ]
    check "report: wrote the int8 version" [ -s "$TMP/opt/2/model.json" ]
    check "report: wrote the pruned versions" grep -q '"sparsity": *0.9' "$TMP/opt/5/model.json"
    # name, runs-as, size, params, non-zero, accuracy, p50, p99, rows/s per row
    awk '$1 != "CPU:" && NF >= 9 && $NF ~ /^[0-9]+$/' "$TMP/out" >"$TMP/rows" # the table's rows
    check "report: fp32, folded, folded + int8, prune 50/80/90% and the variant" \
        test "$(grep -c '' "$TMP/rows")" = 7 -a "$(grep -c '^folded + int8  int8 ' "$TMP/out")" = 1 -a \
        "$(grep -c '^prune [589]0%' "$TMP/rows")" = 3
    # timings and sizes sane everywhere; accuracy above chance where nothing was pruned
    check "report: every row sane" awk '{ n = NF; acc = $(n-3); if (!($(n-6) > 0 && $(n-4) <= $(n-5) &&
        acc >= 0 && acc <= 1 && ($1 == "prune" || acc > 0.3) && $(n-2) > 0 && $(n-2) <= $(n-1) && $n > 0))
        bad = 1 } END { exit bad }' "$TMP/rows"
    check "report: prune 80% keeps at most a fifth of the weights (and the biases)" \
        awk '$1 == "prune" && $2 == "80%" { n = NF; if ($(n-4) > 0.21 * $(n-5)) bad = 1; seen = 1 }
             END { exit bad || !seen }' "$TMP/rows"
    check "report: the same fp32 accuracy for the variant" test "$(awk '$1 == "fp32" { print $(NF-3) }' "$TMP/rows")" = \
        "$(awk '$1 == "again" { print $(NF-3) }' "$TMP/rows")"
    k optimize "$TMP/exp/1" --report --variants "$TMP/nothing"
    check "report: a missing variant: exit 2" [ $rc = 2 ]
    check "report: a missing variant: named" has "$TMP/nothing"
    k optimize "$TMP/exp/1" --variants "$TMP/exp/1" --to "$TMP/opt"
    check "--variants without --report: exit 2" [ $rc = 2 ]
}

run_test t_export
run_test t_in_process
run_test t_rest
run_test t_errors
run_test t_report
finish

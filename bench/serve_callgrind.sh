#!/usr/bin/env bash
# serve_callgrind.sh — instructions per request on kiln serve's request path (HTTP parse, JSON
# parse, dispatch, batch-1 inference, answer), counted by valgrind's callgrind: wall-clock free,
# so it means the same on a busy machine. The Fashion-MNIST MLP (a short training run, exported)
# is served under callgrind with 2 HTTP threads and one OpenMP thread; after the first answer the
# counters are zeroed, wrk sends the first test image ({"instances": [[784 pixels]]}) over 16
# connections for SECONDS, the counters are dumped, and the predictions the server counted in
# that window (its Prometheus counter) divide the instructions. Prints the total per request and
# the inclusive cost per request of the main stages.
#
#   bash bench/serve_callgrind.sh [SECONDS] [KILN]      (default 20 s, build/kiln)
#   KEEP=1 keeps the temporary folder (its callgrind file, for callgrind_annotate).
set -euo pipefail
SECS=${1:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KILN=${2:-$ROOT/build/kiln}
FMNIST=/usr/share/datasets/fashion-mnist
for t in valgrind callgrind_control callgrind_annotate wrk curl; do
    command -v $t >/dev/null || { echo "serve_callgrind: needs $t" >&2; exit 2; }
done
D=$(mktemp -d /tmp/kiln-bench-callgrind-XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$D"' EXIT
OMP_NUM_THREADS=2 "$KILN" train "$ROOT/examples/fashion_mnist/mlp.yaml" --runs-dir "$D/runs" --quiet \
    --set train.epochs=1 --set train.max_steps=20 >/dev/null
"$KILN" export "$(ls -d "$D"/runs/*/*/ | head -1)" --to "$D/models" >/dev/null
pixels=$( (gzip -dc "$FMNIST/t10k-images-idx3-ubyte.gz" || true) | head -c $((16 + 784)) | tail -c 784 | od -An -v -tu1 | tr -s ' \n' ',,' | sed 's/^,//; s/,$//')
printf '{"instances": [[%s]]}' "$pixels" >"$D/body.json"
cat >"$D/post.lua" <<L
local f = io.open("$D/body.json", "r"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
L
PORT=$((18600 + RANDOM % 1000))
OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE valgrind --tool=callgrind --callgrind-out-file="$D/cg.%p" \
    "$KILN" serve --model_base_path "$D/models" --model_name fmnist --host 127.0.0.1 --rest_api_port $PORT \
    --rest_api_num_threads 2 --file_system_poll_wait_seconds 0 >"$D/serve.log" 2>&1 &
PID=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$D/body.json" $URL/v1/models/fmnist:predict)" = 200 ] && break
    sleep 0.2
done
count() { curl -s $URL/monitoring/prometheus/metrics | awk '/^kiln_requests_total\{.*v1_predict.*code="200"/ { s += $2 } END { print s + 0 }'; }
N0=$(count)
callgrind_control -z $PID >/dev/null
wrk -t2 -c16 -d"${SECS}s" -s "$D/post.lua" $URL/v1/models/fmnist:predict >/dev/null
callgrind_control -d $PID >/dev/null
N=$(($(count) - N0))
kill $PID; wait $PID 2>/dev/null || true; PID_DONE=$PID; PID=""
F=$D/cg.$PID_DONE.1
TOTAL=$(callgrind_annotate "$F" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "kiln serve under callgrind: $N predictions in ${SECS} s, $TOTAL instructions: $((TOTAL / N)) per request"
callgrind_annotate --inclusive=yes "$F" 2>/dev/null |
    awk -v n="$N" '$0 ~ /\?\?\?:(serve_job_handle|serve_infer|kiln_tj_parse_tf|js_skip_bracketed|serve_job_finish|kiln_f32_shortest|step_head|start_response|kiln_servable_preprocess) / {
        v = $1; gsub(",", "", v); name = $0; sub(/.*\?\?\?:/, "", name); sub(/ .*/, "", name)
        printf "  %-26s %8.0f per request (inclusive)\n", name, v / n }'

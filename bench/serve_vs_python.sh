#!/usr/bin/env bash
# serve_vs_python.sh — kiln serve against the "simple Python server" peer
# (../shared/peers/torch_server.py: http.server + PyTorch), side by side in one run.
#
#   bash bench/serve_vs_python.sh [SECONDS]        (default 10 per server)
#
# Both serve the Fashion-MNIST MLP (784-512-256-10; kiln's from a short training run, the peer's
# with random weights: only speed is compared) and get the same wrk load on loopback: the same
# JSON body (one Fashion-MNIST test image as {"instances": [[784 pixels]]}), 16 connections,
# 2 wrk threads, the same duration. Printed for each: requests/s, p50 and p99 latency, the
# serving process's resident memory after the load (VmRSS and its peak VmHWM), and the time
# from starting the process to its first successful prediction; then the ratios. After wrk, the
# same load again from build/bench_http_load (bench/http_load.c: 2 threads x 8 connections,
# every request's latency recorded): wrk 4.1's latency statistics with 2 threads break Little's
# law on this machine (a mean of 10 ms at 22,000 req/s over 16 connections, where 0.73 ms is the
# most possible), so the latency ratio is taken from bench_http_load; wrk's are printed too.
set -euo pipefail
SECONDS_EACH=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KILN=$ROOT/build/kiln
PEER=${KILN_PEERS:-$ROOT/../shared/peers}/torch_server.py
FMNIST=/usr/share/datasets/fashion-mnist
command -v wrk >/dev/null || { echo "serve_vs_python: needs wrk (apt-get install wrk)" >&2; exit 2; }
[ -x "$KILN" ] || { echo "serve_vs_python: build kiln first (make)" >&2; exit 2; }
LOAD=$ROOT/build/bench_http_load
[ -x "$LOAD" ] || { echo "serve_vs_python: build the benches first (make)" >&2; exit 2; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "serve_vs_python: needs python3-torch (KILN_WITH_BENCH=1 scripts/setup.sh)" >&2; exit 2; }

/usr/bin/python3 "$ROOT/bench/peer_blas.py" || exit 2 # the peer at its best, and which BLAS it is
grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: /CPU: /'
TMP=$(mktemp -d /tmp/kiln-bench-serve-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

# The model: the MLP example, trained for a few steps and exported.
echo "preparing the kiln model (a short training run of examples/fashion_mnist/mlp.yaml) ..."
OMP_NUM_THREADS=2 "$KILN" train "$ROOT/examples/fashion_mnist/mlp.yaml" --runs-dir "$TMP/runs" --quiet \
    --set train.epochs=1 --set train.max_steps=50 >/dev/null
"$KILN" export "$(ls -d "$TMP"/runs/*/*/ | head -1)" --to "$TMP/models/fmnist" >/dev/null

# The body: the first test image, raw pixels.
pixels=$( (gzip -dc "$FMNIST/t10k-images-idx3-ubyte.gz" || true) | head -c $((16 + 784)) | tail -c 784 | od -An -v -tu1 | tr -s ' \n' ',,' | sed 's/^,//; s/,$//')
printf '{"instances": [[%s]]}' "$pixels" >"$TMP/body.json"
cat >"$TMP/post.lua" <<EOF
local f = io.open("$TMP/body.json", "r"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
EOF

now_ms() { date +%s%3N; }
# Waits for the first 200 from a predict; prints the milliseconds since $1 (the start time).
first_prediction_ms() {
    local t0=$1 url=$2
    for _ in $(seq 6000); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$TMP/body.json" "$url" 2>/dev/null)" = 200 ]; then
            echo $(($(now_ms) - t0))
            return
        fi
        sleep 0.005
    done
    echo "server never answered" >&2
    exit 1
}
to_ms() { # wrk latency ("812.00us", "1.30ms", "2.01s") -> ms
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
mem_kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

run_one() { # run_one NAME PID URL START_MS
    local name=$1 pid=$2 url=$3 t0=$4 first out
    first=$(first_prediction_ms "$t0" "$url")
    out=$(wrk -t2 -c16 -d"${SECONDS_EACH}s" --latency -s "$TMP/post.lua" "$url")
    local rps p50 p99 non2xx
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
    p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
    non2xx=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
    printf '%-22s %10s req/s   p50 %8s ms   p99 %8s ms   RSS %6d KiB (peak %6d)   first prediction %5d ms%s\n' \
        "$name" "$rps" "$p50" "$p99" "$(mem_kb "$pid" VmRSS)" "$(mem_kb "$pid" VmHWM)" "$first" \
        "${non2xx:+   NON-2XX: $non2xx}"
    local port=${url#http://127.0.0.1:} own
    own=$("$LOAD" "${port%%/*}" "/${port#*/}" "$TMP/body.json" 2 8 "$SECONDS_EACH")
    printf '%-22s bench_http_load: %s\n' "" "$own"
    eval "${name%% *}_rps=$rps ${name%% *}_p99=$(echo "$own" | awk '{ print $15 }')"
}

echo "wrk: 16 connections, 2 threads, ${SECONDS_EACH} s each, body $(wc -c <"$TMP/body.json") bytes (one 28x28 image)"

PORT_K=18501
t0=$(now_ms)
OMP_NUM_THREADS=1 "$KILN" serve --model_base_path "$TMP/models/fmnist" --model_name fmnist --host 127.0.0.1 \
    --rest_api_port $PORT_K --rest_api_num_threads 2 2>"$TMP/kiln.log" &
PIDS+=($!)
run_one "kiln serve" $! "http://127.0.0.1:$PORT_K/v1/models/fmnist:predict" "$t0"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

PORT_P=18502
t0=$(now_ms)
OMP_NUM_THREADS=1 /usr/bin/python3 "$PEER" $PORT_P 2>"$TMP/peer.log" &
PIDS+=($!)
run_one "python (torch_server)" $! "http://127.0.0.1:$PORT_P/v1/models/fmnist:predict" "$t0"

awk -v kr="$kiln_rps" -v pr="$python_rps" -v kp="$kiln_p99" -v pp="$python_p99" 'BEGIN {
    printf "ratios: requests/s (wrk) kiln/python = %.1fx (goal >= 60x);  p99 (bench_http_load) kiln/python = %.3f (target <= 0.1)\n",
           kr / pr, kp / pp }'

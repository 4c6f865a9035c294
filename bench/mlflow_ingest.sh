#!/usr/bin/env bash
# bench/mlflow_ingest.sh — ingest rate of kiln board's MLflow API: runs/log-batch over HTTP, in
# metric points per second, two ways:
#   1. a Python client (http.client, one keep-alive connection, the requests' JSON encoded
#      before the clock starts) posting BATCHES batches of 1000 metrics (MLflow's per-request
#      maximum) to one run: what the server sustains (parse, append to metrics.jsonl);
#   2. kiln's own MLflow client, `kiln runs sync --to mlflow+http://...`, mirroring that run
#      (read metrics.jsonl, encode, send) to a second kiln board: end to end, both sides on
#      this machine.
# The registry behind the boards is KILN_REGISTRY's (default sqlite:, runs/kiln.db; with
# postgresql://...?schema=auto each board's runs folder gets a schema of its own): the points go
# to metrics.jsonl at once and to the registry in the run writer's batches (one transaction a
# second or 256 points, and at every save), so the first figure is given twice: the log-batch
# requests alone, and up to the answer of the final runs/update (FINISHED), which saves the run
# and so flushes its last points: every point is then in the registry.
# Prints the CPU model and the load average with the figures. There is no MLflow server here to
# compare with (MLflow is not installable on this machine).
#
#   bash bench/mlflow_ingest.sh [build/kiln] [BATCHES]    (default build/kiln, 200)
#   KILN_REGISTRY='postgresql://postgres@127.0.0.1:54329/kiln?schema=auto' \
#       bash bench/mlflow_ingest.sh build/kiln              (the registry on PostgreSQL)
set -eu
KILN=${1:-build/kiln}
BATCHES=${2:-200}
PY=/usr/bin/python3
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
TMP=$(mktemp -d /tmp/kiln-mlflow-bench-XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT

start() { # start DIR LOG: a board on a free port; its URL into $U (no subshell: the trap
    mkdir -p "$1" #                                      must know the pid)
    "$KILN" board --runs-dir "$1" --port 0 >"$2" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        U=$(sed -n 's/.* on \(http:\/\/[^ ]*\)\/ .*/\1/p' "$2")
        [ -n "$U" ] && return
        sleep 0.1
    done
    echo "board did not start" >&2
    exit 1
}
start "$TMP/a" "$TMP/a.log"
A=$U
start "$TMP/b" "$TMP/b.log"
B=$U

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) cores)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "registry: ${KILN_REGISTRY:-sqlite: (runs/kiln.db)}"
"$PY" - "$A" "$BATCHES" <<'PY'
import http.client, json, sys, time, urllib.parse
url, batches = urllib.parse.urlparse(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection(url.hostname, url.port)
def call(path, body):
    c.request("POST", "/api/2.0/mlflow/" + path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse(); data = r.read()
    if r.status != 200: sys.exit(f"{path}: HTTP {r.status}: {data[:300]}")
    return json.loads(data)
exp = call("experiments/create", json.dumps({"name": "bench"}))["experiment_id"]
run = call("runs/create", json.dumps({"experiment_id": exp, "run_name": "ingest"}))["run"]["info"]["run_id"]
t0 = 1700000000000
bodies = [json.dumps({"run_id": run, "metrics": [
    {"key": ("loss", "val_loss", "accuracy", "val_accuracy")[i % 4], "value": 1.0 / (1 + b * 250 + i // 4),
     "timestamp": t0 + b * 250 + i // 4, "step": b * 250 + i // 4} for i in range(1000)]}).encode()
    for b in range(batches)]
start = time.perf_counter()
for body in bodies: call("runs/log-batch", body)
dt = time.perf_counter() - start
n = 1000 * batches
print(f"log-batch over HTTP (Python client, 1 keep-alive connection): {n} points in {dt:.2f} s = "
      f"{n / dt:,.0f} points/s ({batches / dt:.0f} requests/s of 1000 metrics)")
call("runs/update", json.dumps({"run_id": run, "status": "FINISHED"}))
dt2 = time.perf_counter() - start
print(f"  with the final runs/update (every point in the registry): {n / dt2:,.0f} points/s "
      f"({dt2:.2f} s)")
PY
start_ns=$(date +%s%N)
"$KILN" runs sync --to "mlflow+$B" --runs-dir "$TMP/a" >"$TMP/sync.out"
end_ns=$(date +%s%N)
n=$(sed -n 's/.*, \([0-9]*\) metric points.*/\1/p' "$TMP/sync.out")
awk -v n="$n" -v ns=$((end_ns - start_ns)) 'BEGIN {
    printf "kiln runs sync --to mlflow+http (kiln'"'"'s client, read + send, kiln board on the other side): %d points in %.2f s = %.0f points/s\n", n, ns / 1e9, n / (ns / 1e9) }'

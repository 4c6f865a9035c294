#!/usr/bin/env bash
# board.sh — kiln board on a big runs folder: 10,000 runs x 100 metric points (issue 6's target:
# the runs endpoint answers in at most 200 ms).
#
#   bash bench/board.sh [N_RUNS [POINTS]]        (defaults 10000 and 100)
#
# The folder is made by build/bench_board_runs with kiln's run API (the resolved Fashion-MNIST
# MLP config, learning rate and units varied), on /dev/shm when there is one. Printed:
#   - start: from `kiln board` starting to its URL line: listing the folder and parsing every
#     run.json and config.yaml (the cache the later requests use);
#   - /api/runs, the full list (what a page loads first), each request after the rescan
#     interval (1 s) so that it lists the folder again: 20,000 stats, nothing re-parsed;
#   - /api/runs?since=GEN with nothing changed (what an open page polls every 5 s), and after
#     100 run.json files were rewritten (only those are re-read and sent);
#   - one run's metrics: all of them, and the incremental poll (after=NEXT&rev=REV);
#   - one run's details;
#   - for reference, `kiln runs list` (the run registry, kiln.db, which the runs made with kiln's
#     run API also fill) on the same folder, as a whole process.
# Each endpoint figure is the median of 9 requests (curl's time_total, on loopback).
set -euo pipefail
N=${1:-10000}
POINTS=${2:-100}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${KILN_BUILD:-$ROOT/build}
KILN=$BUILD/kiln
GEN=$BUILD/bench_board_runs
[ -x "$KILN" ] && [ -x "$GEN" ] || { echo "board.sh: build kiln first (make)" >&2; exit 2; }
command -v curl >/dev/null || { echo "board.sh: needs curl" >&2; exit 2; }

BASE=/dev/shm
[ -d "$BASE" ] && [ -w "$BASE" ] || BASE=${TMPDIR:-/tmp}
TMP=$(mktemp -d "$BASE/kiln-bench-board-XXXXXX")
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

echo "making $N runs x $POINTS points in $TMP ..."
"$GEN" "$TMP/runs" "$ROOT/examples/fashion_mnist/mlp.yaml" "$N" "$POINTS"

now_ms() { date +%s%3N; }
t0=$(now_ms)
"$KILN" board --runs-dir "$TMP/runs" --port 0 >"$TMP/board.log" 2>&1 &
PID=$!
URL=""
while [ -z "$URL" ]; do
    kill -0 "$PID" 2>/dev/null || { cat "$TMP/board.log" >&2; exit 1; }
    URL=$(sed -n 's/.* on \(http:\/\/[^ ]*\) .*/\1/p' "$TMP/board.log")
    [ -n "$URL" ] || sleep 0.01
done
start_ms=$(($(now_ms) - t0))
URL=${URL%/}

# median_ms PATH [SLEEP]: the median of 9 requests' time_total in ms; the last body in $TMP/body
median_ms() {
    local times=() i
    for i in 1 2 3 4 5 6 7 8 9; do
        [ -n "${2:-}" ] && sleep "$2"
        times+=("$(curl -s -o "$TMP/body" -w '%{time_total}' "$URL$1")")
    done
    printf '%s\n' "${times[@]}" | sort -g | sed -n 5p | awk '{printf "%.1f", $1 * 1000}'
}
bytes() { wc -c <"$TMP/body"; }
json_num() { grep -o "\"$1\":[0-9]*" "$TMP/body" | head -1 | cut -d: -f2; }

full=$(median_ms /api/runs 1.1)
full_bytes=$(bytes)
gen=$(json_num gen)
unchanged=$(median_ms "/api/runs?since=$gen" 1.1)
# 100 runs save their run.json again (as a checkpoint would)
runs=("$TMP"/runs/exp*/*)
for d in "${runs[@]:0:100}"; do
    sed -i 's/"steps":\t[0-9]*/"steps":\t101/' "$d/run.json"
done
sleep 1.1
changed_t=$(curl -s -o "$TMP/body" -w '%{time_total}' "$URL/api/runs?since=$gen" | awk '{printf "%.1f", $1 * 1000}')
changed_n=$(grep -o '"key":' "$TMP/body" | wc -l)
key=${runs[0]#"$TMP/runs/"}
metrics_all=$(median_ms "/api/runs/$key/metrics")
metrics_bytes=$(bytes)
next=$(json_num next)
rev=$(json_num rev)
metrics_poll=$(median_ms "/api/runs/$key/metrics?after=$next&rev=$rev")
details=$(median_ms "/api/runs/$key")
# for reference, the registry's listing of the same folder (kiln runs list syncs kiln.db first)
runs_list_ms() {
    local times=() i t0
    for i in 1 2 3 4 5; do
        t0=$(date +%s%N)
        "$KILN" runs list --runs-dir "$TMP/runs" "$@" >/dev/null
        times+=($((($(date +%s%N) - t0) / 1000000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}
runs_list=$(runs_list_ms)
runs_list_json=$(runs_list_ms --json)

cat <<EOF

kiln board, $N runs x $POINTS metric points ($(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))
  start (list + parse every run.json and config.yaml)   $start_ms ms
  /api/runs, full list ($((full_bytes / 1024)) KiB)                   $full ms   (target: <= 200 ms)
  /api/runs?since=GEN, nothing changed                  $unchanged ms
  /api/runs?since=GEN, 100 runs changed ($changed_n sent)         $changed_t ms
  one run's metrics, all ($metrics_bytes bytes)                 $metrics_all ms
  one run's metrics, incremental poll                   $metrics_poll ms
  one run's details                                     $details ms
for reference, the run registry on the same folder (kiln.db, written by the runs as they ran):
  kiln runs list (a table, median of 5 processes)        $runs_list ms
  kiln runs list --json                                 $runs_list_json ms
EOF

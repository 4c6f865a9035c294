#!/usr/bin/env bash
# A federation on one machine: kiln fl server + 3 kiln fl client processes over loopback with a
# shared token, each client training on a third of Fashion-MNIST's training rows (--shard).
# The server writes runs/fmnist-federated/fl-<time>/ (metrics per round, TensorBoard,
# checkpoints, export/<round>/ for kiln serve). Usage: bash examples/federated/run.sh [ROUNDS]
set -eu
KILN=${KILN:-build/kiln}
HERE=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${1:-5}
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
PORTFILE=$(mktemp)
"$KILN" fl server "$HERE/mlp.yaml" --rounds "$ROUNDS" --min-clients 3 --strategy fedavg \
    --token "$TOKEN" --port 0 --port-file "$PORTFILE" &
SERVER=$!
for _ in $(seq 100); do [ -s "$PORTFILE" ] && break; sleep 0.1; done
URL=http://127.0.0.1:$(cat "$PORTFILE")
for i in 0 1 2; do
    OMP_NUM_THREADS=1 "$KILN" fl client "$HERE/mlp.yaml" --server "$URL" --token "$TOKEN" \
        --id "client-$i" --shard "$i/3" &
done
wait "$SERVER"
wait
rm -f "$PORTFILE"

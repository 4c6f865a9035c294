#!/usr/bin/env bash
# fl_table.sh — the federated results table of docs/federated.md (the shape of McMahan et al.'s
# FedAvg tables): Fashion-MNIST, 10 and 100 clients, IID vs Dirichlet(0.3), FedAvg vs FedProx:
# rounds to TARGET test accuracy and the test accuracy after ROUNDS rounds, next to centralized
# training for the same number of epochs over the same rows. Everything runs through
# `kiln fl simulate` and `kiln train`.
#
#   bash bench/fl_table.sh build/kiln                  # the issue's scale: CNN, 50 rounds, all rows
#   MODEL=mlp ROUNDS=10 TRAIN_SHARE=0.2 bash bench/fl_table.sh build/kiln   # a small run
#
# Settings (environment): MODEL cnn|mlp (examples/fashion_mnist/*.yaml), ROUNDS (50), EPOCHS
# local epochs per round (1), TRAIN_SHARE share of the 60000 training rows used (1: all; the
# rest becomes the unused validation split), TARGET (0.85), FRACTION_100 fraction of the 100
# clients sampled per round (0.1, as McMahan's C), MU FedProx's mu (0.01), OUT folder (runs-fl-table).
set -u
KILN=${1:?usage: fl_table.sh path/to/kiln}
HERE=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${MODEL:-cnn} ROUNDS=${ROUNDS:-50} EPOCHS=${EPOCHS:-1} TRAIN_SHARE=${TRAIN_SHARE:-1}
TARGET=${TARGET:-0.85} FRACTION_100=${FRACTION_100:-0.1} MU=${MU:-0.01} OUT=${OUT:-runs-fl-table}
CFG=$HERE/examples/fashion_mnist/$MODEL.yaml
mkdir -p "$OUT"
VAL=$(awk -v s="$TRAIN_SHARE" 'BEGIN { v = 1 - s; if (v < 0.0001) v = 0.0001; print v }')
SETS=(--set "data.validation_split=$VAL" --set "train.early_stopping.patience=1000000")
PY=/usr/bin/python3

# rounds to TARGET and the final test accuracy of a run folder's metrics.jsonl
summary() {
    $PY - "$1/metrics.jsonl" "$TARGET" <<'PYEOF'
import json, sys
acc = {}
for line in open(sys.argv[1]):
    try: p = json.loads(line)
    except ValueError: continue
    if p.get("split") == "test" and p.get("name") == "accuracy": acc[p["step"]] = p["value"]
t = float(sys.argv[2])
hit = [r for r in sorted(acc) if acc[r] is not None and acc[r] >= t]
last = acc[max(acc)] if acc else float("nan")
print("%s %.4f" % (hit[0] if hit else "-", last))
PYEOF
}

row() { # name clients fraction partition strategy
    local name=$1 n=$2 frac=$3 part=$4 strat=$5 log=$OUT/$1.log
    local t0=$SECONDS
    "$KILN" fl simulate "$CFG" "${SETS[@]}" --clients "$n" --fraction-fit "$frac" --partition "$part" \
        --strategy "$strat" --mu "$MU" --rounds "$ROUNDS" --local-epochs "$EPOCHS" \
        --runs-dir "$OUT/runs" --name "$name" >"$log" 2>&1 || { echo "| $name | failed (see $log) |"; return; }
    local dir
    dir=$(sed -n 's/^fl simulate: finished: //p' "$log")
    read -r hit last < <(summary "$dir")
    printf '| %s | %s | %s | %s | %s | %s | %d |\n' "$n" "$part" "$strat" "$hit" "$last" \
        "$(awk -v n="$n" -v f="$frac" 'BEGIN { c = int(n * f + 0.999); print c }')" $((SECONDS - t0))
}

echo "kiln fl table: model $MODEL, $ROUNDS rounds of $EPOCHS local epoch(s), $TRAIN_SHARE of the training rows, target $TARGET"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores"
echo
echo "| clients | partition | strategy | rounds to $TARGET | accuracy after $ROUNDS rounds | clients per round | seconds |"
echo "|---|---|---|---|---|---|---|"
for n in 10 100; do
    frac=1
    [ "$n" = 100 ] && frac=$FRACTION_100
    for part in iid dirichlet:0.3; do
        for strat in fedavg fedprox; do
            row "c$n-${part%%:*}-$strat" "$n" "$frac" "$part" "$strat"
        done
    done
done
# centralized: the same rows, ROUNDS * EPOCHS epochs
t0=$SECONDS
"$KILN" train "$CFG" "${SETS[@]}" --set "train.epochs=$((ROUNDS * EPOCHS))" --runs-dir "$OUT/runs" \
    --name centralized >"$OUT/centralized.log" 2>&1
dir=$(ls -d "$OUT"/runs/*/centralized-* | tail -1)
acc=$("$KILN" eval "$dir" --quiet 2>/dev/null | awk '$1 == "accuracy" { printf "%.4f", $2 }')
echo "| centralized | - | kiln train, $((ROUNDS * EPOCHS)) epochs | - | ${acc:-?} | - | $((SECONDS - t0)) |"

#!/usr/bin/env bash
# bench/logging_overhead.sh — what TensorBoard output costs a training run: the Fashion-MNIST
# MLP (examples/fashion_mnist/mlp.yaml, early stopping off) trained with all logging on
# (log.tensorboard: scalars every log.every_steps, histograms of every parameter and gradient,
# sample and confusion-matrix images, the projector's 1,000 embeddings, hparams; every epoch)
# and with it off (log.tensorboard: false), the same config otherwise, in one run. The two are
# interleaved ROUNDS times so that both see the same machine.
#
#   bash bench/logging_overhead.sh [EPOCHS [ROUNDS]]     (defaults 3 and 5)
#
# It prints, for each side, the best and median wall-clock and CPU (user + system) seconds of
# whole `kiln train` processes (loading the data, training, validation, the test), the overhead
# of on against off (the issue's target: at most 3%), and the time kiln itself reports spending
# in its TensorBoard code (the run's last log line) as a share of the run: the figure that does
# not depend on what else the machine is doing. Nothing here is a test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
EPOCHS=${1:-3}
ROUNDS=${2:-5}
THREADS=${THREADS:-2}
TMP=$(mktemp -d /tmp/kiln-bench-log-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

run() { # on|off round -> "wall cpu"
    local extra=(--set log.tensorboard=false)
    [ "$1" = on ] && extra=(--set log.tensorboard=true --set log.histograms_every_epochs=1 --set log.images_every_epochs=1
                            --set log.image_samples=16 --set log.projector_samples=1000)
    local TIMEFORMAT='%R %U %S' # bash's time: wall, user and system seconds of the process
    { time OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=PASSIVE "$BUILD/kiln" train "$ROOT/examples/fashion_mnist/mlp.yaml" \
        --set train.epochs="$EPOCHS" --set train.early_stopping=null "${extra[@]}" --threads "$THREADS" \
        --runs-dir "$TMP/$1-$2" --quiet >/dev/null 2>"$TMP/stderr-$1-$2"; } 2>"$TMP/time-$1-$2"
    awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' "$TMP/time-$1-$2"
}

stats() { sort -n | awk '{ v[NR] = $1 } END { printf "%.3f %.3f\n", v[1], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

on_wall=() on_cpu=() off_wall=() off_cpu=() share=()
for r in $(seq 1 "$ROUNDS"); do
    read -r w c < <(run off "$r"); off_wall+=("$w"); off_cpu+=("$c")
    read -r w c < <(run on "$r"); on_wall+=("$w"); on_cpu+=("$c")
    spent=$(sed -n 's/^TensorBoard: .*, \([0-9.]*\) s writing them.*/\1/p' "$TMP"/on-"$r"/*/*/log.txt)
    share+=("$(awk -v s="$spent" -v w="$w" 'BEGIN { printf "%.3f", 100 * s / w }')")
    printf 'round %d: off %7.3f s wall %7.3f s cpu   on %7.3f s wall %7.3f s cpu   in TensorBoard code %.3f s (%.2f%%)\n' \
        "$r" "${off_wall[-1]}" "${off_cpu[-1]}" "$w" "$c" "$spent" "${share[-1]}"
done
files=$(find "$TMP"/on-1 -name 'events.out.tfevents.*' | wc -l)
[ "$files" -ge 4 ] || { echo "bench: the logging-on run wrote no TensorBoard files" >&2; exit 1; }
[ -z "$(find "$TMP"/off-1 -name 'events.out.tfevents.*')" ] || { echo "bench: the logging-off run wrote event files" >&2; exit 1; }
bytes=$(find "$TMP"/on-1 \( -name 'events.out.tfevents.*' -o -name '*.tsv' -o -name '*.pbtxt' \) -printf '%s\n' | awk '{ s += $1 } END { print s }')
read -r ow_min ow_med < <(printf '%s\n' "${off_wall[@]}" | stats)
read -r nw_min nw_med < <(printf '%s\n' "${on_wall[@]}" | stats)
read -r oc_min oc_med < <(printf '%s\n' "${off_cpu[@]}" | stats)
read -r nc_min nc_med < <(printf '%s\n' "${on_cpu[@]}" | stats)
read -r _ share_med < <(printf '%s\n' "${share[@]}" | stats)
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f%%", 100 * (b - a) / a }'; }
echo "MLP (535,824 parameters), $EPOCHS epochs, $THREADS threads, $ROUNDS rounds; logging on writes $files event files and $(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }') of TensorBoard files per run"
printf '                 best wall   median wall   best cpu   median cpu\n'
printf 'logging off     %9.3f s   %9.3f s  %8.3f s   %8.3f s\n' "$ow_min" "$ow_med" "$oc_min" "$oc_med"
printf 'logging on      %9.3f s   %9.3f s  %8.3f s   %8.3f s\n' "$nw_min" "$nw_med" "$nc_min" "$nc_med"
printf 'overhead        %11s   %11s  %10s   %10s   (target: at most +3%%)\n' "$(pct "$ow_min" "$nw_min")" "$(pct "$ow_med" "$nw_med")" \
    "$(pct "$oc_min" "$nc_min")" "$(pct "$oc_med" "$nc_med")"
printf 'time in TensorBoard code, as reported by kiln: %.2f%% of the run (median)\n' "$share_med"

#!/usr/bin/env bash
# bench/data_vs_torch.sh — kiln's data pipeline against PyTorch's DataLoader (Debian's
# python3-torch and python3-torchvision), side by side in one run:
#
#  1. Decoded + augmented images/s from one folder of JPEG files (N photo-like images of 160 to
#     320 pixels a side, written by bench/make_photos.py): random resized crop to 64 x 64
#     (scale 0.08..1), horizontal flip, color jitter (brightness, contrast, saturation 0.4, hue
#     0.1), normalization, shuffled batches of 64, no model. kiln: bench_data_loader with
#     data.workers threads; PyTorch: ImageFolder + torchvision transforms through a DataLoader
#     with as many worker processes (bench/data_torch.py). Two passes each, after a first batch
#     that starts the workers; the files are in the page cache for both.
#  2. Peak RSS of kiln passing over that folder and over one four times larger, streaming
#     (data.cache: none) and with data.cache: decoded capped at 16 MB (data.cache_mb): memory
#     follows the batch and the cache budget, not the data set.
#  3. The fraction of step time the Fashion-MNIST CNN (examples/images/folder_cnn.yaml) waits for
#     data when trained for an epoch from its JPEG folder with random_resized_crop, flip and
#     jitter (run.json train_data_wait_fraction; the goal is under 5%).
#
#   bash bench/data_vs_torch.sh [N_IMAGES [WORKERS]]      (defaults 4000 and the core count)
#
# Nothing here is a test: the numbers depend on the machine and on what else runs on it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
N=${1:-4000}
WORKERS=${2:-$(nproc)}
/usr/bin/python3 -c 'import torchvision' 2>/dev/null ||
    { echo "bench: needs python3-torchvision (KILN_WITH_BENCH=1 bash scripts/setup.sh)" >&2; exit 2; }
/usr/bin/python3 "$ROOT/bench/peer_pil.py" || exit 2 # the peer at its best: Pillow on libjpeg-turbo
[ -x "$BUILD/bench_data_loader" ] || { echo "bench: build first ($BUILD/bench_data_loader)" >&2; exit 2; }
grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: /CPU: /'
echo "cores: $(nproc), workers: $WORKERS, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
TMP=$(mktemp -d /tmp/kiln-bench-data-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

field() { sed -n "s/.*$2=\([0-9.]*\).*/\1/p" <<<"$1"; }

echo "writing $N JPEG files ..."
/usr/bin/python3 "$ROOT/bench/make_photos.py" "$TMP/photos" "$N"
find "$TMP/photos" -type f -exec cat {} + >/dev/null # into the page cache

cat >"$TMP/photos.yaml" <<YAML
experiment: bench-data
seed: 1
data:
  source: images
  train: {path: $TMP/photos}
  image: {channels: rgb, resize: [64, 64]}
  normalize: {scale: 0.00392156862745098, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
  batch_size: 64
  workers: $WORKERS
  augment:
    - random_resized_crop: {scale: [0.08, 1.0]}
    - horizontal_flip
    - color_jitter: {brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1}
model:
  input: [3, 64, 64]
  layers: [flatten, {dense: {units: 10}}]
loss: softmax_cross_entropy
YAML

K=$("$BUILD/bench_data_loader" "$TMP/photos.yaml" --epochs 2)
T=$(/usr/bin/python3 "$ROOT/bench/data_torch.py" "$TMP/photos" "$WORKERS" 2 64 64 | grep '^RESULT')
KR=$(field "$K" images_per_s) TR=$(field "$T" images_per_s)
echo
echo "1. decode + random resized crop 64x64 + flip + color jitter, batches of 64, $WORKERS workers"
printf "   kiln    %8.0f images/s   (%s images in %s s)\n" "$KR" "$(field "$K" images)" "$(field "$K" seconds)"
printf "   PyTorch %8.0f images/s   (%s images in %s s)\n" "$TR" "$(field "$T" images)" "$(field "$T" seconds)"
echo "   ratio   $(awk -v a="$KR" -v b="$TR" 'BEGIN { printf "%.2fx", a / b }')"

echo
echo "2. peak RSS of one pass (bench_data_loader), $N and $((4 * N)) images"
for c in "$TMP/photos"/*; do # four hard-linked copies of each class, as its subfolders: 4N rows
    mkdir -p "$TMP/photos4/${c##*/}"
    for i in 1 2 3 4; do cp -al "$c" "$TMP/photos4/${c##*/}/copy$i"; done
done
for cache in none decoded; do
    for d in photos photos4; do
        R=$("$BUILD/bench_data_loader" "$TMP/photos.yaml" --epochs 1 --set "data.train.path=$TMP/$d" \
            --set 'data.augment=[]' --set "data.cache=$cache" --set data.cache_mb=16)
        printf "   data.cache: %-8s %6s images: peak RSS %6.1f MB\n" "$cache" "$(field "$R" images)" "$(field "$R" peak_rss_mb)"
    done
done

echo
echo "3. the Fashion-MNIST CNN trained from JPEG files, 1 epoch, augmented"
"$BUILD/kiln_example_data" --fashion-jpeg "$TMP/fashion" --limit 20000 >/dev/null
"$BUILD/kiln" train "$ROOT/examples/images/folder_cnn.yaml" --set "data.train.path=$TMP/fashion/train" \
    --set "data.test.path=$TMP/fashion/test" --set train.epochs=1 --set data.validation_split=0 \
    --set train.early_stopping=null --set "data.workers=$WORKERS" \
    --set 'data.augment=[{random_resized_crop: {scale: [0.6, 1.0]}}, horizontal_flip, {color_jitter: {brightness: 0.3, contrast: 0.3}}]' \
    --runs-dir "$TMP/runs" --quiet
J=$(ls -d "$TMP/runs"/*/*)/run.json
W=$(grep -o '"train_data_wait_fraction":[[:space:]]*[0-9.e+-]*' "$J" | sed 's/.*:[[:space:]]*//')
S=$(grep -o '"train_samples_per_second":[[:space:]]*[0-9.e+-]*' "$J" | sed 's/.*:[[:space:]]*//')
printf "   %.0f samples/s, waiting for data %.2f%% of the step loop's time (goal < 5%%)\n" "$S" "$(awk -v w="$W" 'BEGIN { print 100 * w }')"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

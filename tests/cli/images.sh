#!/usr/bin/env bash
# data.source: images end to end: a few hundred Fashion-MNIST images written as a JPEG class-folder
# tree (kiln_example_data --fashion-jpeg), examples/images/folder_cnn.yaml trained for one epoch
# from it, then kiln eval and kiln export (class names = the sorted folder names); a manifest;
# data.on_error (error names the file and exits 1; skip counts in log.txt and run.json); config
# errors (channels, center_crop vs model.input) exit 2 naming both keys.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
EXAMPLE_DATA=$(dirname "$KILN")/kiln_example_data
CFG=$SRC/examples/images/folder_cnn.yaml
FJ=$TMP/fj
CLASSES='["Ankle_boot","Bag","Coat","Dress","Pullover","Sandal","Shirt","Sneaker","T-shirt_top","Trouser"]'

run_dir() { ls -d "$1"/*/* | head -1; }
json() { grep -o "\"$2\":[[:space:]]*[^,}]*" "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//; s/"//g'; }
names_of() { tr -d ' \n\t' <"$1" | grep -o '"class_names":\[[^]]*\]' | sed 's/"class_names"://'; }
small() { # small RUNS [--set ...]: one epoch of the example config on the small tree
    local runs=$1
    shift
    k train "$CFG" --set "data.train.path=$FJ/train" --set "data.test.path=$FJ/test" \
        --set train.epochs=1 --set 'train.checkpoint={every_steps: 0, every_epochs: 1}' \
        --runs-dir "$runs" --quiet "$@"
}

"$EXAMPLE_DATA" --fashion-jpeg "$FJ" --limit 300 >/dev/null || { echo "kiln_example_data failed"; exit 1; }

t_tree_written() {
    check "10 class folders" [ "$(ls "$FJ/train" | wc -l)" = 10 ]
    check "300 training images" [ "$(find "$FJ/train" -name '*.jpg' | wc -l)" = 300 ]
    check "300 test images" [ "$(find "$FJ/test" -name '*.jpg' | wc -l)" = 300 ]
    check "they are JPEG files" bash -c "head -c 3 '$(find "$FJ/train" -name '*.jpg' | head -1)' | od -An -tx1 | grep -q 'ff d8 ff'"
}

t_train_eval_export() {
    small "$TMP/r" --set 'train.export={every_epochs: 1}'
    check "train exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/r")
    check "status finished" [ "$(json "$d" status)" = finished ]
    check "270 training rows (validation_split 0.1)" grep -q '270 training rows' "$d/log.txt"
    check "a test accuracy" grep -q '"test_accuracy"' "$d/run.json"
    check "no samples skipped" [ "$(json "$d" data_skipped)" = 0 ]
    check "the export made while training names the classes" [ "$(names_of "$d/export/1/model.json")" = "$CLASSES" ]
    k export "$d" --to "$TMP/served"
    check "kiln export exit 0" [ $rc = 0 ]
    local m=$(ls -d "$TMP/served"/*/model.json 2>/dev/null | head -1)
    check "kiln export names the classes" [ -n "$m" ] && check "the same names" [ "$(names_of "$m")" = "$CLASSES" ]
    k eval "$d"
    check "kiln eval exit 0" [ $rc = 0 ]
    check "eval shows accuracy" has "accuracy"
    check "the confusion matrix uses the folder names" has "Ankle_boot"
}

t_manifest() {
    { echo "path,label"
      for c in Bag Trouser; do for f in $(ls "$FJ/train/$c" | head -20); do echo "train/$c/$f,$c"; done; done
    } >"$FJ/two.csv"
    k train "$CFG" --set data.train='{manifest: '"$FJ"'/two.csv}' --set data.test='{manifest: '"$FJ"'/two.csv}' \
        --set train.epochs=1 --set 'model.layers[6].dense.units=2' --runs-dir "$TMP/man" --quiet
    check "train from a manifest exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/man")
    check "36 training rows" grep -q '36 training rows' "$d/log.txt"
}

t_on_error() {
    cp -r "$FJ" "$TMP/bad"
    printf '\377\330\377\340 truncated' >"$TMP/bad/train/Coat/99999.jpg"
    cp "$(ls "$FJ"/train/Bag/*.jpg | head -1)" "$TMP/bad/train/Bag/notes.txt" # not an image name
    k train "$CFG" --set "data.train.path=$TMP/bad/train" --set "data.test.path=$TMP/bad/test" \
        --set train.epochs=1 --runs-dir "$TMP/e1" --quiet
    check "a bad image fails the run: exit 1" [ $rc = 1 ]
    check "the message names the file" has "Coat/99999.jpg"
    check "run.json says failed" [ "$(json "$(run_dir "$TMP/e1")" status)" = failed ]
    small "$TMP/e2" --set "data.train.path=$TMP/bad/train" --set data.on_error=skip
    check "skip: exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/e2")
    check "skip: log.txt counts it" grep -q 'skipped 1 unreadable sample' "$d/log.txt"
    check "skip: log.txt names it" grep -q 'Coat/99999.jpg' "$d/log.txt"
    check "skip: run.json data_skipped 1" [ "$(json "$d" data_skipped)" = 1 ]
    check "skip: 270 of the 300 good rows train" grep -q '270 training rows' "$d/log.txt"
}

t_config_errors() {
    small "$TMP/c0" --set 'model.input=[3, 28, 28]'
    check "channels: grayscale vs a [3, 28, 28] model: exit 2" [ $rc = 2 ]
    check "names both" has "data.image.channels: grayscale gives 1 channel, but model.input is [3, 28, 28]"
    small "$TMP/c1" --set 'model.input=[3, 28, 28]' --set 'data.image={}'
    check "gray JPEGs into a [3, 28, 28] model (channels follow model.input): exit 0" [ $rc = 0 ]
    small "$TMP/c2" --set data.image.channels=rgb
    check "channels vs model.input: exit 2" [ $rc = 2 ]
    check "names data.image.channels" has "data.image.channels: rgb gives 3 channels, but model.input is [1, 28, 28]"
    small "$TMP/c3" --set data.image.center_crop=24
    check "center_crop vs model.input: exit 2" [ $rc = 2 ]
    check "names both" has "data.image.center_crop gives 24 x 24 images (height x width), but model.input is [1, 28, 28]"
    small "$TMP/c4" --set data.image.resize=32
    check "a shorter-side resize that leaves 32 x 32: exit 1 naming a file" [ $rc = 1 ]
    check "the file and its size" has "the image is 32 x 32"
    small "$TMP/c5" --set data.image.resize=32 --set data.image.center_crop=28 --set data.image.interpolation=area
    check "resize 32 + center_crop 28 trains" [ $rc = 0 ]
    small "$TMP/c6" --set data.train='{path: '"$TMP"'/nowhere}'
    check "a missing folder: exit 2" [ $rc = 2 ]
    check "names it" has "nowhere"
    small "$TMP/c7" --set data.image.interpolation=cubic
    check "unknown interpolation: exit 2" [ $rc = 2 ]
}

run_test t_tree_written
run_test t_train_eval_export
run_test t_manifest
run_test t_on_error
run_test t_config_errors
finish

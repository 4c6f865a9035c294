#!/usr/bin/env bash
# data.source: tfrecord and kiln data convert / inspect end to end, checked against an
# independent reader and writer (tests/cli/tfrecord_ref.py: Python's standard library only, its
# own CRC-32C, protobuf wire format and PNG code, nothing of kiln's):
#   - what kiln data convert writes (IDX as PNG records, a JPEG class folder, a CSV table; plain,
#     GZIP and ZLIB) is read back by the reference reader and compared value by value;
#   - what the reference writer writes (plain, GZIP and ZLIB shards, keys in another order,
#     packed and unpacked lists) trains the Fashion-MNIST CNN of examples/images/tfrecord_cnn.yaml
#     and a table MLP, and kiln eval and the export name the classes from image/class/text;
#   - kiln data inspect (counts, schema, histogram; a damaged record: exit 1 with file and
#     offset); bad records in training (a checksum, a missing key, a wrong type: exit 1 naming
#     the file and the record; data.on_error: skip counts them); config errors exit 2;
#   - convert is atomic: a failure leaves no shard, existing shards are not overwritten silently.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
REF="$PY $SRC/tests/cli/tfrecord_ref.py"
EXAMPLE_DATA=$(dirname "$KILN")/kiln_example_data
CFG=$SRC/examples/images/tfrecord_cnn.yaml
D=$TMP/d
NAMES='T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot'
mkdir -p "$D"

run_dir() { ls -d "$1"/*/* | head -1; }
json() { grep -o "\"$2\":[[:space:]]*[^,}]*" "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//; s/"//g'; }
names_of() { tr -d ' \n\t' <"$1" | grep -o '"class_names":\[[^]]*\]' | sed 's/"class_names"://'; }
ref() { $REF "$@" >"$TMP/ref" 2>&1; local r=$?; [ $r = 0 ] || sed 's/^/    | /' "$TMP/ref" | head -5 >&2; return $r; }

# 300 training and 200 test images of Fashion-MNIST as small IDX files (written by the reference)
$REF idx-subset $FMNIST/train-images-idx3-ubyte.gz $FMNIST/train-labels-idx1-ubyte.gz 300 \
    "$D/tr-img.gz" "$D/tr-lab.gz" >/dev/null || { echo "tfrecord_ref.py failed"; exit 1; }
$REF idx-subset $FMNIST/t10k-images-idx3-ubyte.gz $FMNIST/t10k-labels-idx1-ubyte.gz 200 \
    "$D/te-img.gz" "$D/te-lab.gz" >/dev/null || exit 1

train_small() { # train_small RUNS [--set ...]: one epoch of the example config, quiet
    local runs=$1
    shift
    k train "$CFG" --set train.epochs=1 --set 'train.checkpoint={every_steps: 0, every_epochs: 1}' \
        --runs-dir "$runs" --quiet "$@"
}

t_convert_idx_read_back() {
    for c in none gzip zlib; do
        k data convert "$D/tr-img.gz" --labels "$D/tr-lab.gz" --to "$TMP/cv-$c" --shards 3 \
            --compression $c --no-shuffle --class-names "$NAMES"
        check "convert ($c): exit 0" [ $rc = 0 ]
        check "convert ($c): says what it wrote" has "wrote 300 records in 3 shards"
        check "convert ($c): shard names" [ -f "$TMP/cv-$c/train.tfrecord-00002-of-00003" ]
        check "the reference reader finds IDX image i in record i ($c)" \
            ref check-idx "$TMP/cv-$c/train.tfrecord-*" "$D/tr-img.gz" "$D/tr-lab.gz" "$NAMES"
    done
    check "gzip shards start with the gzip magic" \
        bash -c "head -c 2 '$TMP/cv-gzip/train.tfrecord-00000-of-00003' | od -An -tx1 | grep -q '1f 8b'"
    # the default order is a seeded shuffle: the same records, another order, the same each time
    k data convert "$D/tr-img.gz" --labels "$D/tr-lab.gz" --to "$TMP/cv-shuf" --shards 2
    check "shuffled: exit 0" [ $rc = 0 ]
    check "shuffled: 300 records" [ "$($REF count "$TMP/cv-shuf/train.tfrecord-*")" = 300 ]
    check "shuffled: not in the IDX order (the checker is not vacuous)" \
        bash -c "! $REF check-idx '$TMP/cv-shuf/train.tfrecord-*' '$D/tr-img.gz' '$D/tr-lab.gz' >/dev/null"
    k data convert "$D/tr-img.gz" --labels "$D/tr-lab.gz" --to "$TMP/cv-shuf2" --shards 2
    check "shuffled twice: the same bytes" cmp -s "$TMP/cv-shuf/train.tfrecord-00001-of-00002" \
        "$TMP/cv-shuf2/train.tfrecord-00001-of-00002"
}

t_convert_folder_and_csv() {
    "$EXAMPLE_DATA" --fashion-jpeg "$TMP/fj" --limit 60 >/dev/null
    k data convert "$TMP/fj/train" --to "$TMP/cf" --shards 4 --compression gzip
    check "folder: exit 0" [ $rc = 0 ]
    check "folder: 60 records" has "wrote 60 records in 4 shards"
    check "the reference reader finds every file's bytes, label and class name" \
        ref check-folder "$TMP/cf/train.tfrecord-*" "$TMP/fj/train"
    { echo "a,b,kind"; for i in $(seq 0 39); do echo "$i.5,$((i % 7)),$([ $((i % 3)) = 0 ] && echo red || echo blue)"; done; } >"$TMP/t.csv"
    k data convert "$TMP/t.csv" --to "$TMP/cc" --label-column kind --no-shuffle --compression zlib
    check "csv: exit 0" [ $rc = 0 ]
    check "the reference reader finds every row" ref check-csv "$TMP/cc/train.tfrecord-*" "$TMP/t.csv" kind
}

t_python_written_trains() {
    # mixed shards: plain, gzip, zlib; every other one with unpacked lists
    check "the reference writer" ref write-images "$D/tr-img.gz" "$D/tr-lab.gz" "$D/py-train" 3 mixed "$NAMES"
    check "the reference writer (test)" ref write-images "$D/te-img.gz" "$D/te-lab.gz" "$D/py-test" 1 gzip
    train_small "$TMP/r1" --set "data.train.path=$D/py-train-*" --set "data.test.path=$D/py-test-*" \
        --set 'train.export={every_epochs: 1}'
    check "train from the reference writer's shards: exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/r1")
    check "status finished" [ "$(json "$d" status)" = finished ]
    check "270 training rows (300, validation_split 0.1)" grep -q '270 training rows' "$d/log.txt"
    check "a test accuracy" grep -q '"test_accuracy"' "$d/run.json"
    check "the export names the classes (image/class/text)" \
        [ "$(names_of "$d/export/1/model.json")" = '["T-shirt/top","Trouser","Pullover","Dress","Coat","Sandal","Shirt","Sneaker","Bag","Ankleboot"]' ]
    k eval "$d"
    check "kiln eval: exit 0" [ $rc = 0 ]
    check "kiln eval's confusion matrix names the classes (the test shards have none: the training split's)" has "Ankle boot"
    # a table: float features x [3] and a label
    { echo "a,b,c,kind"; for i in $(seq 0 199); do echo "$((i % 10)),$((i % 7)).25,$((i % 3)),$([ $((i % 10)) -lt 5 ] && echo low || echo high)"; done; } >"$TMP/tab.csv"
    check "the reference writer (table)" ref write-table "$TMP/tab.csv" kind "$D/tab.tfrecord" zlib
    cat >"$TMP/tab.yaml" <<YAML
seed: 1
data:
  source: tfrecord
  train: {path: $D/tab.tfrecord}
  features:
    x: {key: x, dtype: float, shape: [3]}
    label: {key: label, names_key: label/text}
  batch_size: 16
model:
  input: [3]
  layers: [{dense: {units: 16, activation: relu}}, {dense: {units: 2}}]
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01}}
train: {epochs: 3}
YAML
    k train "$TMP/tab.yaml" --runs-dir "$TMP/r2" --quiet
    check "a table from tf.Example float features trains: exit 0" [ $rc = 0 ]
    check "200 rows" grep -q '200 training rows' "$(run_dir "$TMP/r2")/log.txt"
    k train "$TMP/tab.yaml" --runs-dir "$TMP/r3" --quiet --set 'data.features.x.shape=[4]'
    check "a shape that does not fit the records: exit 1" [ $rc = 1 ]
    check "names the feature and both sizes" has "feature 'x' has 3 values (expected 4)"
}

t_regression() {
    { echo "a,b,y"; for i in $(seq 0 99); do echo "$((i % 10)),$((i % 4)),$((i % 10 * 2 + i % 4)).5"; done; } >"$TMP/reg.csv"
    k data convert "$TMP/reg.csv" --label-column y --regression --to "$TMP/creg" --compression gzip
    check "csv with float targets: exit 0" [ $rc = 0 ]
    cat >"$TMP/reg.yaml" <<YAML
seed: 1
data:
  source: tfrecord
  train: {path: $TMP/creg}
  features: {x: {dtype: float, shape: [2]}, label: {key: label, dtype: float}}
  task: regression
  batch_size: 10
model: {input: [2], layers: [{dense: {units: 1}}]}
loss: mse
optimizer: {adam: {learning_rate: 0.05}}
train: {epochs: 2}
YAML
    k train "$TMP/reg.yaml" --runs-dir "$TMP/rr" --quiet
    check "regression from tf.Example float targets: exit 0" [ $rc = 0 ]
    check "100 rows" grep -q '100 training rows' "$(run_dir "$TMP/rr")/log.txt"
}

latest_step() { sed -n 's/^step-//p' "$1/checkpoints/latest" 2>/dev/null; }
wait_for_step() { # up to 60 s until run folder pattern $1 has a checkpoint at step >= $2
    local i d
    for i in $(seq 1 6000); do
        d=$(ls -d "$1"/*/* 2>/dev/null | head -1)
        if [ -n "$d" ] && [ -f "$d/checkpoints/latest" ] && [ "$(latest_step "$d")" -ge "$2" ] 2>/dev/null; then return 0; fi
        sleep 0.01
    done
    return 1
}

# GZIP shards (the decompressed copy is made again on resume): killed with -9 after a checkpoint,
# resumed, the final weights are those of the run that was never interrupted.
t_resume_exact() {
    local S=(--set "data.train.path=$D/py-train-*" --set "data.test.path=$D/py-test-*"
             --set data.compression=auto --set data.batch_size=16 --set train.epochs=3
             --set 'train.checkpoint={every_steps: 5, every_epochs: 1, keep: 2}'
             --set 'train.early_stopping={monitor: val_loss, patience: 100}' --quiet)
    "$KILN" train "$CFG" "${S[@]}" --runs-dir "$TMP/ka" >/dev/null 2>&1
    "$KILN" train "$CFG" "${S[@]}" --runs-dir "$TMP/kb" >/dev/null 2>&1 &
    local pid=$!
    check "a checkpoint appeared" wait_for_step "$TMP/kb" 5
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    local a=$(run_dir "$TMP/ka") b=$(run_dir "$TMP/kb")
    local at=$(latest_step "$b")
    check "killed mid-run (latest step $at < 51)" [ "$at" -lt 51 ]
    k train --resume "$b" --quiet
    check "resume: exit 0" [ $rc = 0 ]
    check "the uninterrupted run reached step 51" [ -f "$a/checkpoints/step-51/weights.safetensors" ]
    check "final weights bitwise equal to the uninterrupted run's" \
        cmp -s "$a/checkpoints/step-51/weights.safetensors" "$b/checkpoints/step-51/weights.safetensors"
}

t_inspect() {
    k data inspect "$D/py-train-*" --records 1
    check "inspect: exit 0" [ $rc = 0 ]
    check "counts the records" has "records: 300 (every checksum intact)"
    check "lists the files" has "files: 3"
    check "schema: image/encoded is png bytes" grep -qE 'image/encoded +bytes \[1\] .*\(png\)' "$TMP/out"
    check "schema: the label is int64" grep -qE 'image/class/label +int64 \[1\]' "$TMP/out"
    check "class histogram with names" grep -qE '^  9 +Ankle boot +[0-9]+$' "$TMP/out"
    check "shows a first record" has "record 0 (offset 0):"
    local sum=$(grep -E '^  [0-9] ' "$TMP/out" | awk '{s += $NF} END {print s}')
    check "the histogram adds up to 300" [ "$sum" = 300 ]
    cp "$TMP/cv-none/train.tfrecord-00001-of-00003" "$TMP/dmg.tfrecord"
    local off=$($REF damage "$TMP/dmg.tfrecord" 7)
    k data inspect "$TMP/dmg.tfrecord"
    check "a damaged record: exit 1" [ $rc = 1 ]
    check "names the file, the record and its offset" has "dmg.tfrecord: record 7, offset $off: corrupt record"
    check "and reads on past it" has "records: 99, and 1 damaged"
    head -c 5000 "$TMP/cv-gzip/train.tfrecord-00000-of-00003" >"$TMP/cut.tfrecord.gz"
    k data inspect "$TMP/cut.tfrecord.gz"
    check "a truncated gzip file: exit 1" [ $rc = 1 ] && check "says so" has "truncated"
    k data inspect "$TMP/nothing-*"
    check "nothing matches: exit 2" [ $rc = 2 ]
}

t_bad_records_train() {
    mkdir -p "$TMP/bad"
    cp "$TMP/cv-none"/train.tfrecord-* "$TMP/bad/"
    local f=$TMP/bad/train.tfrecord-00001-of-00003
    local off=$($REF damage "$f" 5)
    train_small "$TMP/b1" --set "data.train.path=$TMP/bad/train*" --set "data.test.path=$TMP/bad/train*"
    check "a bad checksum: exit 1" [ $rc = 1 ]
    check "names the file and the offset" has "train.tfrecord-00001-of-00003: offset $off: corrupt record"
    train_small "$TMP/b2" --set "data.train.path=$TMP/bad/train*" --set "data.test.path=$TMP/cv-none/train*" \
        --set data.on_error=skip
    check "skip: exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/b2")
    check "skip: run.json data_skipped 1" [ "$(json "$d" data_skipped)" = 1 ]
    check "skip: log.txt names it" grep -q "skipped 1 unreadable sample.*offset $off" "$d/log.txt"
    check "skip: 269 training rows" grep -q '269 training rows' "$d/log.txt"
    cp "$TMP/cv-none"/train.tfrecord-00001-of-00003 "$f"
    $REF rewrite "$f" 4 drop image/encoded >/dev/null
    train_small "$TMP/b3" --set "data.train.path=$TMP/bad/train*"
    check "a missing key: exit 1" [ $rc = 1 ]
    check "names the file, the record and the key" has "train.tfrecord-00001-of-00003: record 4 (offset"
    check "and the key" has "feature 'image/encoded' is missing"
    cp "$TMP/cv-none"/train.tfrecord-00001-of-00003 "$f"
    $REF rewrite "$f" 2 retype image/class/label >/dev/null
    train_small "$TMP/b4" --set "data.train.path=$TMP/bad/train*"
    check "a wrong dtype: exit 1" [ $rc = 1 ]
    check "names the record and the types" has "record 2 (offset"
    check "says what it is" has "the label feature 'image/class/label' is a float list"
    cp "$TMP/cv-none"/train.tfrecord-00001-of-00003 "$f"
    head -c 3000 "$TMP/cv-none/train.tfrecord-00002-of-00003" >"$TMP/bad/train.tfrecord-00002-of-00003"
    train_small "$TMP/b5" --set "data.train.path=$TMP/bad/train*"
    check "a truncated shard: exit 1" [ $rc = 1 ] && check "says truncated" has "truncated record"
}

t_config_errors() {
    local base=(--set "data.train.path=$TMP/cv-none/train*" --set "data.test.path=$TMP/cv-none/train*")
    train_small "$TMP/c1" "${base[@]}" --set 'data.features=[a, b]'
    check "features as a list: exit 2" [ $rc = 2 ] && check "says a map" has "source tfrecord takes a map of features"
    train_small "$TMP/c2" "${base[@]}" --set 'data.features.image.dtype=float'
    check "an image feature with a dtype: exit 2" [ $rc = 2 ] && check "names it" has "data.features.image: an image feature takes no 'dtype'"
    train_small "$TMP/c3" "${base[@]}" --set 'data.features={image: {key: image/encoded, decode: image}}'
    check "no label entry: exit 2" [ $rc = 2 ] && check "says so" has "needs a 'label' entry"
    train_small "$TMP/c4" "${base[@]}" --set data.compression=lzma
    check "unknown compression: exit 2" [ $rc = 2 ] && check "lists them" has "auto, none, gzip, zlib"
    train_small "$TMP/c5" --set "data.train.path=$TMP/nowhere/*.tfrecord"
    check "a glob that matches nothing: exit 2" [ $rc = 2 ] && check "names it" has "nowhere/*.tfrecord"
    train_small "$TMP/c6" "${base[@]}" --set 'data.features.image.decoder=image'
    check "an unknown key: exit 2" [ $rc = 2 ] && check "suggests decode" has "did you mean 'decode'"
    train_small "$TMP/c8" "${base[@]}" --set data.features=5
    check "features neither a list nor a map: exit 2" [ $rc = 2 ] && check "says what it takes" has "expected a list of names or a map of named entries"
    printf 'a,b,label\n1,2,0\n3,4,1\n' >"$TMP/two.csv"
    k train "$CFG" --set data.source=csv --set "data.train={path: $TMP/two.csv}" --set 'data.test={path: '"$TMP"'/two.csv}' \
        --set 'model.input=[2]' --set 'model.layers=[{dense: {units: 2}}]' --quiet --runs-dir "$TMP/c9"
    check "csv with a map of features: exit 2" [ $rc = 2 ] && check "says a list" has "source csv takes a list of column names"
    train_small "$TMP/c7" "${base[@]}" --set data.compression=gzip
    check "compression gzip for plain shards: exit 1 naming a shard" [ $rc = 1 ] && check "named" has "train.tfrecord-00000-of-00003"
}

t_convert_atomic() {
    k data convert "$D/tr-img.gz" --labels "$D/tr-lab.gz" --to "$TMP/cv-none" --shards 2
    check "shards already there: exit 2" [ $rc = 2 ] && check "says --force" has "--force"
    check "the old shards are untouched" [ -f "$TMP/cv-none/train.tfrecord-00002-of-00003" ]
    k data convert "$D/tr-img.gz" --labels "$D/tr-lab.gz" --to "$TMP/cv-none" --shards 2 --force
    check "--force: exit 0" [ $rc = 0 ]
    check "--force: the old set is gone" [ ! -e "$TMP/cv-none/train.tfrecord-00002-of-00003" ]
    check "--force: the new set is there" [ "$($REF count "$TMP/cv-none/train.tfrecord-*")" = 300 ]
    cp -r "$TMP/fj/train" "$TMP/badfolder"
    local last=$(ls "$TMP/badfolder/Trouser" | tail -1)
    printf '\377\330\377\340 truncated' >"$TMP/badfolder/Trouser/$last"
    k data convert "$TMP/badfolder" --to "$TMP/cb" --shards 4 --no-shuffle
    check "a bad image: exit 1" [ $rc = 1 ] && check "names the file" has "Trouser/$last"
    check "no shard left behind (nor a temporary file)" [ -z "$(ls -A "$TMP/cb" 2>/dev/null)" ]
    k data convert "$D/tr-img.gz" --labels "$D/tr-lab.gz" --to "$TMP/x" --shards 301
    check "more shards than records: exit 2" [ $rc = 2 ]
    k data convert "$D/tr-img.gz" --to "$TMP/x" --format csv
    check "--format csv: exit 2" [ $rc = 2 ]
    k data convert "$D/tr-img.gz"
    check "no --to: exit 2" [ $rc = 2 ]
    k data frobnicate
    check "unknown data command: exit 2" [ $rc = 2 ]
    k data --help
    check "kiln data --help: exit 0" [ $rc = 0 ] && check "lists convert" has "convert SRC --to DIR"
    k data convert --help
    check "kiln data convert --help: exit 0" [ $rc = 0 ]
    k help data
    check "kiln help data: exit 0" [ $rc = 0 ]
}

run_test t_convert_idx_read_back
run_test t_convert_folder_and_csv
run_test t_python_written_trains
run_test t_resume_exact
run_test t_regression
run_test t_inspect
run_test t_bad_records_train
run_test t_config_errors
run_test t_convert_atomic
finish

#!/usr/bin/env bash
# kiln optimize end to end (docs/optimize.md): an MLP and a CNN with batch norms, activation
# layers and a dropout are trained briefly on Fashion-MNIST and exported; --fold gives the same
# test metrics (outputs within 1e-5: test_optimize checks the values); int8 (min-max and
# percentile calibration, folded or not) keeps test accuracy within 1 point of fp32 through
# kiln eval; the int8 version is served and answers; bf16 on a CPU without AVX512-BF16 / AMX
# says so; bad flags, a source that is no model and calibration without data exit 2 and leave
# no version. Trains two small models: labelled long.
. "$(dirname "$0")/lib.sh"
SERVER_PID=""
stop_server() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
trap 'stop_server; rm -rf "$TMP"' EXIT

config() { # config NAME STEPS LAYERS...
    local name=$1 steps=$2
    shift 2
    {
        cat <<YAML
experiment: $name
seed: 1
data:
  source: idx
  train: {images: $FMNIST/train-images-idx3-ubyte.gz, labels: $FMNIST/train-labels-idx1-ubyte.gz}
  test: {images: $FMNIST/t10k-images-idx3-ubyte.gz, labels: $FMNIST/t10k-labels-idx1-ubyte.gz}
  validation_split: 0.1
  normalize: {scale: 0.00392156862745098}
  batch_size: 128
model:
  input: [1, 28, 28]
  layers:
YAML
        for l in "$@"; do echo "    - $l"; done
        cat <<YAML
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.002}}
train: {epochs: 1, max_steps: $steps}
log: {every_steps: 1000}
YAML
    } >"$TMP/$name.yaml"
}

acc() { sed -n 's/^ *accuracy *\([0-9.]*\)$/\1/p' "$TMP/out"; }
loss() { sed -n 's/^ *loss *\([0-9.]*\)$/\1/p' "$TMP/out"; }
within_point() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 0.01) }'; }

train_export() { # train_export NAME -> $TMP/NAME-exp/1
    "$KILN" train "$TMP/$1.yaml" --runs-dir "$TMP/runs" >"$TMP/train-$1.log" 2>&1 || { cat "$TMP/train-$1.log" >&2; return 1; }
    "$KILN" export "$TMP"/runs/"$1"/*/ --to "$TMP/$1-exp" >/dev/null
}

t_mlp_int8() {
    config mlp 400 flatten "dense: {units: 128, activation: relu}" "dropout: {rate: 0.2}" "dense: {units: 10}"
    check "train mlp" train_export mlp
    k eval "$TMP/mlp-exp/1" --quiet
    local fp=$(acc)
    k optimize "$TMP/mlp-exp/1" --quantize int8 --calibrate 8 --to "$TMP/mlp-exp"
    check "int8 optimize exits 0" test $rc = 0
    check "names the int8 layers" has "int8: 2 layer(s): dense_1, dense_2"
    check "names the ISA" has "oneDNN ISA:"
    k eval "$TMP/mlp-exp/2" --quiet
    check "eval runs int8" has "int8"
    local q=$(acc)
    echo "    mlp test accuracy: fp32 $fp, int8 $q"
    check "int8 accuracy within 1 point of fp32 ($q vs $fp)" within_point "$q" "$fp"
    grep -q '"input_scale"' "$TMP/mlp-exp/2/model.json"
    check "model.json has the scales" test $? = 0
    grep -q '"calibration": "minmax"' "$TMP/mlp-exp/2/model.json"
    check "model.json records the calibration" test $? = 0
}

t_cnn_fold_int8() {
    config cnn 150 "conv2d: {filters: 16, kernel: 3, padding: same, use_bias: false}" "batchnorm: {momentum: 0.9}" relu \
        "maxpool2d: {size: 2}" "conv2d: {filters: 32, kernel: 3, padding: same}" "batchnorm: {momentum: 0.9}" \
        "activation: {activation: relu}" "maxpool2d: {size: 2}" flatten "dense: {units: 64}" relu \
        "dropout: {rate: 0.25}" "dense: {units: 10}"
    check "train cnn" train_export cnn
    k eval "$TMP/cnn-exp/1" --quiet
    local fp=$(acc) fl=$(loss)
    k optimize "$TMP/cnn-exp/1" --fold --to "$TMP/cnn-exp"
    check "fold exits 0" test $rc = 0
    check "fold counts" has "fold: 2 batch norm(s) folded, 1 dropout(s) removed, 3 activation(s) fused"
    k eval "$TMP/cnn-exp/2" --quiet
    check "folded: same accuracy" test "$(acc)" = "$fp"
    check "folded: same loss ($(loss) vs $fl)" test "$(loss)" = "$fl"
    k optimize "$TMP/cnn-exp/1" --fold --quantize int8 --to "$TMP/cnn-exp"
    check "fold + int8 exits 0" test $rc = 0
    check "conv and dense int8" has "int8: 4 layer(s): conv2d_1, conv2d_2, dense_1, dense_2"
    check "pooling stays fp32" has "fp32 ops: max_pooling2d"
    k eval "$TMP/cnn-exp/3" --quiet
    local q=$(acc)
    k optimize "$TMP/cnn-exp/2" --quantize int8 --calibration percentile --percentile 99.99 --calibrate 4 \
        --to "$TMP/cnn-exp"
    check "percentile exits 0" test $rc = 0
    k eval "$TMP/cnn-exp/4" --quiet
    local p=$(acc)
    echo "    cnn test accuracy: fp32 $fp, folded+int8 minmax $q, percentile $p"
    check "int8 accuracy within 1 point ($q vs $fp)" within_point "$q" "$fp"
    check "percentile int8 within 1 point ($p vs $fp)" within_point "$p" "$fp"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); o=d['optimizations']; \
assert list(o[0])==['fold'] and list(o[1])==['quantize'] and o[1]['quantize']['calibration']=='percentile', o" \
        "$TMP/cnn-exp/4/model.json"
    check "model.json lists fold then quantize" test $? = 0
}

t_serve_int8() {
    [ -d "$TMP/cnn-exp/3" ] || { echo "  needs t_cnn_fold_int8" >&2; test_failed=1; return; }
    mkdir -p "$TMP/serve" && cp -r "$TMP/cnn-exp/3" "$TMP/serve/1"
    : >"$TMP/serve.log"
    "$KILN" serve --host 127.0.0.1 --rest_api_port 0 --model_base_path "$TMP/serve" --model_name cnn >"$TMP/serve.log" 2>&1 &
    SERVER_PID=$!
    PORT=""
    for _ in $(seq 100); do
        PORT=$(sed -n 's/.*serving .* on http:\/\/[0-9.]*:\([0-9]*\) .*/\1/p' "$TMP/serve.log")
        [ -n "$PORT" ] && break
        sleep 0.1
    done
    check "server started" test -n "$PORT"
    python3 -c "print('{\"instances\": [[' + ','.join(['0.5'] * 784) + ']]}')" >"$TMP/req.json"
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST --data-binary @"$TMP/req.json" \
        "http://127.0.0.1:$PORT/v1/models/cnn:predict")
    check "int8 version answers 200 ($code)" test "$code" = 200
    grep -q '"predictions"' "$TMP/body"
    check "with predictions" test $? = 0
    stop_server
}

t_bf16_message() {
    k optimize "$TMP/mlp-exp/1" --quantize bf16 --to "$TMP/bf16"
    check "bf16 exits 0" test $rc = 0
    if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then
        check "runs bf16" has "runs here as: bf16"
    else
        check "names the missing instruction sets" has "neither AVX512-BF16 nor AMX-BF16"
        check "says fp32" has "runs here as: fp32 (bf16 version)"
    fi
}

t_errors() {
    k optimize "$TMP/mlp-exp/1" --quantize int4 --to "$TMP/err"
    check "bad dtype: exit 2" test $rc = 2
    check "bad dtype: message" has "--quantize int4: expected int8 or bf16"
    k optimize "$TMP/mlp-exp/1" --quantize int8 --calibration median --to "$TMP/err"
    check "bad calibration: exit 2" test $rc = 2
    k optimize "$TMP/mlp-exp/1" --quantize int8 --calibrate 0 --to "$TMP/err"
    check "bad batch count: exit 2" test $rc = 2
    k optimize "$TMP/mlp-exp/1" --to "$TMP/err"
    check "nothing to do: exit 2" test $rc = 2
    k optimize "$TMP" --fold --to "$TMP/err"
    check "not a model: exit 2" test $rc = 2
    check "not a model: message" has "neither an export version"
    mkdir -p "$TMP/orphan" && cp -r "$TMP/mlp-exp/1" "$TMP/orphan/1"
    sed -i 's|"run": "[^"]*"|"run": null|' "$TMP/orphan/1/model.json"
    k optimize "$TMP/orphan/1" --quantize int8 --to "$TMP/err"
    check "no data: exit 2" test $rc = 2
    check "no data: message" has "calibration needs data"
    sed -i 's|"dense"|"densse"|' "$TMP/orphan/1/model.json"
    k optimize "$TMP/orphan/1" --fold --to "$TMP/err"
    check "unknown op: exit 2" test $rc = 2
    check "unknown op: named" has "densse"
    check "no version written" test ! -e "$TMP/err"
}

run_test t_mlp_int8
run_test t_cnn_fold_int8
run_test t_serve_int8
run_test t_bf16_message
run_test t_errors
finish

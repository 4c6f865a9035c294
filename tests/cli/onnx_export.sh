#!/usr/bin/env bash
# kiln export --format onnx and kiln models register --format onnx end to end: a small MLP and a
# small CNN with batch norm and a residual concat are trained on Fashion-MNIST for a few steps,
# exported with model.onnx, and each version round-trips (test_onnx_export --version-dir: kiln's
# servable and ONNX Runtime agree on both outputs at batch 1 and 5 within 1e-5, and python3-onnx's
# checker with strict shape inference accepts the file). The default format writes no
# model.onnx; a bad --format exits 2, and so does --format on models list/alias/resolve (it
# means nothing there); an export killed while writing model.onnx (SIGXFSZ from a
# file size limit) leaves no version, and the next export cleans up and writes version 1.
. "$(dirname "$0")/lib.sh"
ROUNDTRIP=$(dirname "$KILN")/test_onnx_export
export KILN_SOURCE_DIR=${KILN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

cnn_config() {
    cat >"$TMP/cnn.yaml" <<YAML
experiment: small-cnn
seed: 1
data:
  source: idx
  train: {images: $FMNIST/train-images-idx3-ubyte.gz, labels: $FMNIST/train-labels-idx1-ubyte.gz}
  test: {images: $FMNIST/t10k-images-idx3-ubyte.gz, labels: $FMNIST/t10k-labels-idx1-ubyte.gz}
  validation_split: 0.1
  normalize: {scale: 0.00392156862745098}
  batch_size: 64
model:
  input: [1, 28, 28]
  layers:
    - conv2d: {filters: 8, kernel: 3, padding: same, name: c1}
    - batchnorm: {name: bn1}
    - relu: {name: r1}
    - maxpool2d: {size: 2, name: p1}
    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu, name: c2}
    - concat: {from: [p1, c2]}
    - maxpool2d: {size: 2}
    - flatten
    - dense: {units: 32, activation: relu}
    - dense: {units: 10}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.001}}
train:
  epochs: 1
  max_steps: 40
YAML
    echo "$TMP/cnn.yaml"
}

setup() {
    local c
    c=$(small_config mlp "  max_steps: 40")
    "$KILN" train "$c" --name mlp --runs-dir "$TMP/runs" --quiet >"$TMP/train.log" 2>&1 ||
        { cat "$TMP/train.log"; return 1; }
    c=$(cnn_config)
    "$KILN" train "$c" --name cnn --runs-dir "$TMP/runs" --quiet >"$TMP/train.log" 2>&1 ||
        { cat "$TMP/train.log"; return 1; }
    MLP=$(ls -d "$TMP"/runs/*/mlp-*)
    CNN=$(ls -d "$TMP"/runs/*/cnn-*)
}

roundtrip() { "$ROUNDTRIP" --version-dir "$1" >"$TMP/rt.log" 2>&1 || { sed 's/^/    | /' "$TMP/rt.log" >&2; return 1; }; }

t_export_mlp_onnx() {
    k export "$MLP" --format onnx --to "$TMP/mlp"
    check "exit 0" [ $rc = 0 ]
    check "prints the version" has "$TMP/mlp/1"
    check "model.onnx beside the kiln files" [ -s "$TMP/mlp/1/model.onnx" -a -s "$TMP/mlp/1/model.json" -a -s "$TMP/mlp/1/weights.safetensors" ]
    check "model.json records it" grep -q '"file": "model.onnx"' "$TMP/mlp/1/model.json"
    check "ONNX Runtime gives kiln's outputs" roundtrip "$TMP/mlp/1"
}

t_export_cnn_onnx() {
    k export "$CNN" --format onnx --to "$TMP/cnn"
    check "exit 0" [ $rc = 0 ]
    check "ONNX Runtime gives kiln's outputs" roundtrip "$TMP/cnn/1"
}

t_default_format_is_kiln() {
    k export "$MLP" --to "$TMP/plain"
    check "exit 0" [ $rc = 0 ]
    check "no model.onnx" [ ! -e "$TMP/plain/1/model.onnx" ]
    check "no onnx key" bash -c "! grep -q onnx '$TMP/plain/1/model.json'"
    k export "$MLP" --format kiln --to "$TMP/plain"
    check "--format kiln: exit 0" [ $rc = 0 ]
    check "--format kiln: no model.onnx" [ -e "$TMP/plain/2/model.json" -a ! -e "$TMP/plain/2/model.onnx" ]
}

t_bad_format() {
    k export "$MLP" --format tflite --to "$TMP/bad"
    check "exit 2" [ $rc = 2 ]
    check "names the option" has "--format tflite: expected kiln or onnx"
    check "nothing written" [ ! -e "$TMP/bad" ]
    k models register "$MLP" --format pt --runs-dir "$TMP/runs"
    check "register: exit 2" [ $rc = 2 ]
    check "register: names the option" has "--format pt: expected kiln or onnx"
}

t_register_onnx() {
    k models register "$CNN" --format onnx --name cnn-onnx --runs-dir "$TMP/runs"
    check "exit 0" [ $rc = 0 ]
    check "registered" has "registered cnn-onnx version 1"
    check "model.onnx in the model version" [ -s "$TMP/runs/models/cnn-onnx/1/model.onnx" ]
    check "it round-trips" roundtrip "$TMP/runs/models/cnn-onnx/1"
    k models register "$CNN" --name cnn-onnx --runs-dir "$TMP/runs"
    check "default: exit 0" [ $rc = 0 ]
    check "default: no model.onnx" [ -e "$TMP/runs/models/cnn-onnx/2/model.json" -a ! -e "$TMP/runs/models/cnn-onnx/2/model.onnx" ]
}

# --format only means something to register: list, alias and resolve refuse it (exit 2)
# rather than ignore it.
t_format_elsewhere() {
    k models register "$MLP" --name mlp-fmt --runs-dir "$TMP/runs"
    check "registered (exit 0)" [ $rc = 0 ]
    k models list mlp-fmt --format onnx --runs-dir "$TMP/runs"
    check "list: exit 2" [ $rc = 2 ]
    check "list: says why" has "--format applies to 'kiln models register' only"
    k models alias mlp-fmt 1 production --format onnx --runs-dir "$TMP/runs"
    check "alias: exit 2" [ $rc = 2 ]
    check "alias: says why" has "--format applies to 'kiln models register' only"
    k models resolve models:/mlp-fmt/1 --format kiln --runs-dir "$TMP/runs"
    check "resolve: exit 2" [ $rc = 2 ]
    check "resolve: says why" has "--format applies to 'kiln models register' only"
    k models list mlp-fmt --runs-dir "$TMP/runs"
    check "list without it: exit 0, no alias was set" [ $rc = 0 ]
    check "no alias was set" bash -c "! grep -q production '$TMP/out'"
}

# The file size limit kills kiln (SIGXFSZ) in the middle of writing model.onnx, the first file
# of the version: nothing may appear under a version's name.
t_interrupted_export() {
    mkdir -p "$TMP/cut"
    { (ulimit -f 16; exec "$KILN" export "$MLP" --format onnx --to "$TMP/cut") >"$TMP/out" 2>&1
      rc=$?; } 2>/dev/null
    check "killed by the file size limit (rc $rc)" [ $rc -gt 128 ]
    check "no version folder" bash -c "! ls '$TMP/cut' | grep -q '^[0-9]'"
    check "its private folder is left (a dead writer's)" bash -c "ls -a '$TMP/cut' | grep -q '^\.tmp-'"
    check "it died in model.onnx, before the weights" bash -c "! ls -a '$TMP'/cut/.tmp-* | grep -q weights"
    k export "$MLP" --format onnx --to "$TMP/cut"
    check "the next export: exit 0" [ $rc = 0 ]
    check "writes version 1" has "$TMP/cut/1"
    check "and removed the dead folder" bash -c "! ls -a '$TMP/cut' | grep -q '^\.tmp-'"
    check "complete" roundtrip "$TMP/cut/1"
}

if setup; then
    run_test t_export_mlp_onnx
    run_test t_export_cnn_onnx
    run_test t_default_format_is_kiln
    run_test t_bad_format
    run_test t_register_onnx
    run_test t_format_elsewhere
    run_test t_interrupted_export
else
    echo "FAIL setup"
    failed=$((failed + 1))
fi
finish

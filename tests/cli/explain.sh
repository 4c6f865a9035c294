#!/usr/bin/env bash
# kiln explain end to end, on a small Fashion-MNIST MLP and CNN trained here in seconds:
# - parity: saliency, gradient x input, integrated gradients (64 steps) and Grad-CAM(++) match a
#   PyTorch reimplementation on the same exported weights (tests/explain_torch.py, Debian's
#   torch autograd) within 1e-4 relative, and the predicted classes agree;
# - integrated gradients' completeness error, reported per input, is below 1% with 64 steps;
# - sanity checks of Adebayo et al. (2018): re-drawing the weights changes the saliency maps
#   (their Spearman rank correlation with the trained model's drops), and over 100 test images
#   blacking out the window of highest attribution lowers the class probability more than
#   blacking out a random window;
# - files: NPY shapes, PNGs for image inputs, explanations.json, a run folder as the model,
#   PNG inputs; bad options and inputs exit 2 naming what was wrong;
# - log.explain writes attribution images to TensorBoard and <run>/explain/, and kiln board
#   lists and serves them;
# - kiln serve's POST /v1/models/NAME:explain (KServe v1) gives kiln explain's attributions,
#   and 400 / 404 {"error"} for bad requests.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
REF="$SRC/tests/explain_torch.py"

config() { # NAME LAYERS... -> $TMP/NAME.yaml
    local f=$TMP/$1.yaml
    shift
    cat >"$f" <<YAML
experiment: $(basename "$f" .yaml)
seed: 1
data:
  source: idx
  train: {images: $FMNIST/train-images-idx3-ubyte.gz, labels: $FMNIST/train-labels-idx1-ubyte.gz}
  validation_split: 0.01
  normalize: {scale: 0.00392156862745098}
  batch_size: 64
model:
  input: [1, 28, 28]
  class_names: [T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot]
  layers:
YAML
    for l in "$@"; do printf '    - %s\n' "$l" >>"$f"; done
    cat >>"$f" <<YAML
loss: softmax_cross_entropy
optimizer: {adam: {learning_rate: 0.002}}
train: {epochs: 1, max_steps: 80, checkpoint: {every_steps: 80}}
YAML
    echo "$f"
}

setup() {
    local mlp cnn
    mlp=$(config mlp flatten "dense: {units: 64, activation: relu}" "dropout: {rate: 0.1}" "dense: {units: 10}")
    cnn=$(config cnn "conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}" "maxpool2d: {size: 2}" \
        "conv2d: {filters: 16, kernel: 3, padding: same, activation: relu}" "maxpool2d: {size: 2}" flatten \
        "dense: {units: 32, activation: relu}" "dense: {units: 10}")
    for m in mlp cnn; do
        "$KILN" train "$TMP/$m.yaml" --runs-dir "$TMP/runs" --quiet >"$TMP/train-$m.log" 2>&1 || { cat "$TMP/train-$m.log"; return 1; }
        "$KILN" export "$(ls -d "$TMP"/runs/$m/*)" --to "$TMP/$m-export" >/dev/null || return 1
    done
    $PY - "$TMP" <<'PY' || return 1
import gzip, sys, numpy as np
d = np.frombuffer(gzip.open('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz').read()[16:], dtype=np.uint8).reshape(-1, 1, 28, 28)
np.save(sys.argv[1] + '/x.npy', d[:16])
np.save(sys.argv[1] + '/x100.npy', d[100:200])
PY
    mkdir -p "$TMP/h" && cp "$TMP/x100.npy" "$TMP/h/x.npy"
}

parity() { # MODEL METHOD...
    local m=$1 meth
    shift
    for meth in "$@"; do
        k explain "$TMP/$m-export" "$TMP/x.npy" --method "$meth" --out "$TMP/par-$m/$meth" --quiet
        check "$m $meth exits 0" [ "$rc" = 0 ]
        [ "$rc" = 0 ] || cat "$TMP/out"
    done
    $PY "$REF" parity "$TMP/$m-export/1" "$TMP/x.npy" "$TMP/par-$m" "$@" >"$TMP/out" 2>&1
    rc=$?
    sed 's/^/    /' "$TMP/out"
    check "$m: kiln matches PyTorch within 1e-4" [ "$rc" = 0 ]
}

t_parity_mlp() { parity mlp saliency grad_x_input integrated_gradients; }
t_parity_cnn() { parity cnn saliency grad_x_input integrated_gradients gradcam gradcam_pp; }

t_completeness() {
    local m
    for m in mlp cnn; do
        $PY - "$TMP/par-$m/integrated_gradients/explanations.json" >"$TMP/out" 2>&1 <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["explanations"]
worst = max(x["completeness_error"] for x in e)
print("%d inputs, worst completeness error %.5f" % (len(e), worst))
sys.exit(0 if len(e) == 16 and worst < 0.01 and all(x["parameters"]["steps"] == 64 for x in e) else 1)
PY
        check "$m: completeness below 1% with 64 steps" [ $? = 0 ]
        sed 's/^/    /' "$TMP/out"
    done
}

t_randomized_weights() {
    $PY "$REF" randomize "$TMP/cnn-export/1" "$TMP/cnn-random" || return
    k explain "$TMP/cnn-export" "$TMP/h/x.npy" --method saliency --out "$TMP/sal-trained" --quiet
    check "trained saliency" [ "$rc" = 0 ]
    k explain "$TMP/cnn-random" "$TMP/h/x.npy" --method saliency --out "$TMP/sal-random" --quiet
    check "random saliency" [ "$rc" = 0 ]
    k explain "$TMP/cnn-export" "$TMP/h/x.npy" --method saliency --out "$TMP/sal-again" --quiet
    local same rnd
    same=$($PY "$REF" spearman "$TMP/sal-trained" "$TMP/sal-again" 100 | sed -n 's/RESULT spearman=//p')
    rnd=$($PY "$REF" spearman "$TMP/sal-trained" "$TMP/sal-random" 100 | sed -n 's/RESULT spearman=//p')
    echo "    Spearman rank correlation: trained vs itself $same, trained vs randomized weights $rnd"
    check "the same model gives the same maps" awk -v s="$same" 'BEGIN{exit !(s > 0.999)}'
    check "randomized weights change the saliency maps" awk -v r="$rnd" 'BEGIN{exit !(r < 0.5)}'
}

t_occlusion_sanity() {
    k explain "$TMP/cnn-export" "$TMP/h/x.npy" --method integrated_gradients --steps 16 --out "$TMP/ig100" --quiet
    check "ig on 100 images" [ "$rc" = 0 ]
    $PY "$REF" occlude "$TMP/h/x.npy" "$TMP/ig100" "$TMP/occ" 6 3 || return
    local f
    for f in x occ-top occ-rand; do
        src=$TMP/h/x.npy
        [ $f = x ] || src=$TMP/$f.npy
        "$KILN" predict --model_dir "$TMP/cnn-export" --json "$src" >"$TMP/pred-$f.json" || return
    done
    $PY - "$TMP" >"$TMP/out" 2>&1 <<'PY'
import json, sys
t = sys.argv[1]
tg = [x["target"] for x in json.load(open(t + "/ig100/explanations.json"))["explanations"]]
p = {f: [r["probabilities"][tg[i]] for i, r in enumerate(json.load(open(t + "/pred-%s.json" % f))["predictions"])]
     for f in ("x", "occ-top", "occ-rand")}
mean = lambda v: sum(v) / len(v)
top, rnd = mean(p["x"]) - mean(p["occ-top"]), mean(p["x"]) - mean(p["occ-rand"])
print("100 images: mean probability %.4f; drop occluding the most attributed 6x6 window %.4f, a random one %.4f"
      % (mean(p["x"]), top, rnd))
sys.exit(0 if len(tg) == 100 and top > rnd else 1)
PY
    check "occluding the most attributed region costs more than a random one" [ $? = 0 ]
    sed 's/^/    /' "$TMP/out"
}

t_files_and_run_folder() {
    local run
    run=$(ls -d "$TMP"/runs/cnn/*)
    $PY -c "
import numpy as np; from PIL import Image
x = np.load('$TMP/x.npy'); Image.fromarray(x[0, 0]).save('$TMP/shoe.png')"
    k explain "$run" "$TMP/shoe.png" "$TMP/x.npy" --method occlusion --window 4 --stride 2 --out "$TMP/files"
    check "a run folder and a PNG input" [ "$rc" = 0 ]
    check "table" has "shoe.png"
    check "files" [ -s "$TMP/files/shoe.npy" -a -s "$TMP/files/shoe.png" -a -s "$TMP/files/shoe.json" \
        -a -s "$TMP/files/x-15.npy" -a -s "$TMP/files/explanations.json" ]
    $PY - "$TMP/files" <<'PY'
import json, sys, numpy as np
from PIL import Image
d = sys.argv[1]
a = np.load(d + "/shoe.npy"); b = np.load(d + "/x-0.npy")
assert a.shape == (1, 28, 28) and a.dtype == np.float32, a.shape
assert np.array_equal(a, b), "the same image as PNG and NPY gives the same attribution"
im = Image.open(d + "/shoe.png"); assert im.size == (224, 224) and im.mode == "RGB", (im.size, im.mode)
j = json.load(open(d + "/shoe.json"))
assert j["method"] == "occlusion" and j["parameters"] == {"window": 4, "stride": 2}, j
assert j["completeness_error"] is None and 0 < j["probability"] <= 1 and j["class"], j
assert len(json.load(open(d + "/explanations.json"))["explanations"]) == 17
PY
    check "NPY, PNG and JSON contents" [ $? = 0 ]
    k explain "$TMP/cnn-export" "$TMP/x.npy" --method gradcam --target 3 --out "$TMP/cam3" --quiet
    check "gradcam --target" [ "$rc" = 0 ]
    $PY -c "
import json, numpy as np
a = np.load('$TMP/cam3/x-2.npy'); j = json.load(open('$TMP/cam3/x-2.json'))
assert a.shape == (28, 28) and j['target'] == 3 and j['parameters']['layer'] == 'conv2d_2', (a.shape, j)"
    check "Grad-CAM NPY [H, W], target and default layer" [ $? = 0 ]
}

t_bad_input() {
    k explain "$TMP/cnn-export" "$TMP/x.npy" --method lime --out "$TMP/bad"
    check "unknown method: 2" [ "$rc" = 2 ]
    check "names it" has "--method lime: unknown"
    k explain "$TMP/cnn-export" "$TMP/x.npy" --method saliency
    check "no --out: 2" [ "$rc" = 2 ]
    check "says so" has "--out DIR is required"
    k explain "$TMP/cnn-export" --method saliency --out "$TMP/bad"
    check "no input: 2" [ "$rc" = 2 ]
    k explain "$TMP/cnn-export" "$TMP/x.npy" --method gradcam --layer dense_9 --out "$TMP/bad"
    check "unknown layer: 2" [ "$rc" = 2 ]
    check "names the layer" has "Grad-CAM layer 'dense_9': no such layer"
    k explain "$TMP/mlp-export" "$TMP/x.npy" --method gradcam --out "$TMP/bad"
    check "Grad-CAM without conv: 2" [ "$rc" = 2 ]
    check "says so" has "no conv2d layer"
    k explain "$TMP/cnn-export" "$TMP/x.npy" --method saliency --target 10 --out "$TMP/bad"
    check "target out of range: 2" [ "$rc" = 2 ]
    check "names it" has "target 10, but the model has 10 outputs"
    k explain "$TMP/nowhere" "$TMP/x.npy" --method saliency --out "$TMP/bad"
    check "no model: 2" [ "$rc" = 2 ]
    check "names it" has "$TMP/nowhere: no such run or export folder"
    printf '1,2,3\n' >"$TMP/short.csv"
    k explain "$TMP/cnn-export" "$TMP/short.csv" --method saliency --out "$TMP/bad"
    check "input that does not fit: 2" [ "$rc" = 2 ]
    check "names the file" has "short.csv"
    k explain "$TMP/cnn-export" "$TMP/x.npy" --method ig --steps 1 --out "$TMP/bad"
    check "--steps 1: 2" [ "$rc" = 2 ]
    check "no files for bad calls" [ ! -e "$TMP/bad" ]
}

# kiln serve answers KServe v1's :explain with the same attributions as kiln explain.
t_serve_explain() {
    "$KILN" serve --host 127.0.0.1 --rest_api_port 0 --rest_api_num_threads 2 \
        --model_base_path "$TMP/cnn-export" --model_name fm >"$TMP/serve.log" 2>&1 &
    local pid=$! port="" c
    for _ in $(seq 100); do
        port=$(sed -n 's/.*serving .* on http:\/\/[0-9.]*:\([0-9]*\) .*/\1/p' "$TMP/serve.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    check "server started" [ -n "$port" ]
    [ -n "$port" ] || { kill "$pid"; return; }
    local url=http://127.0.0.1:$port/v1/models/fm
    $PY -c "
import json, numpy as np
x = np.load('$TMP/x.npy')[:3].tolist()
json.dump({'instances': x, 'parameters': {'method': 'integrated_gradients', 'steps': 64}}, open('$TMP/req-ig.json', 'w'))
json.dump({'instances': x[:1], 'parameters': {'method': 'gradcam', 'target': 3}}, open('$TMP/req-cam.json', 'w'))
json.dump({'instances': x[:1], 'parameters': {'method': 'gradcam', 'layer': 'nope'}}, open('$TMP/req-layer.json', 'w'))
json.dump({'instances': x[:1], 'parameters': {'steps': 'many'}}, open('$TMP/req-steps.json', 'w'))"
    c=$(curl -s -o "$TMP/ig.json" -w '%{http_code}' -X POST --data-binary @"$TMP/req-ig.json" "$url:explain")
    check ":explain 200" [ "$c" = 200 ]
    $PY - "$TMP" <<'PY'
import json, sys, numpy as np
t = sys.argv[1]
d = json.load(open(t + "/ig.json"))
assert len(d["predictions"]) == 3 and len(d["explanations"]) == 3, d.keys()
for i, e in enumerate(d["explanations"]):
    a = np.array(e["attributions"], dtype=np.float32)
    ref = np.load(t + "/par-cnn/integrated_gradients/x-%d.npy" % i)
    assert a.shape == ref.shape, (a.shape, ref.shape)
    assert np.abs(a - ref).max() <= 1e-6 * np.abs(ref).max() + 1e-30, "differs from kiln explain"
    assert e["completeness_error"] < 0.01 and e["parameters"]["steps"] == 64
    assert np.argmax(d["predictions"][i]["probabilities"]) == e["predicted"]
PY
    check "the same attributions as kiln explain, with predictions" [ $? = 0 ]
    c=$(curl -s -o "$TMP/cam.json" -w '%{http_code}' -X POST --data-binary @"$TMP/req-cam.json" "$url/versions/1:explain")
    check "Grad-CAM on a version: 200" [ "$c" = 200 ]
    $PY -c "
import json, numpy as np; e = json.load(open('$TMP/cam.json'))['explanations'][0]
assert e['target'] == 3 and np.array(e['attributions']).shape == (28, 28), e['target']"
    check "Grad-CAM [H, W] for the asked target" [ $? = 0 ]
    c=$(curl -s -o "$TMP/err.json" -w '%{http_code}' -X POST --data-binary @"$TMP/req-layer.json" "$url:explain")
    check "unknown layer: 400" [ "$c" = 400 ] && check "names it" grep -q "layer 'nope': no such layer" "$TMP/err.json"
    c=$(curl -s -o "$TMP/err.json" -w '%{http_code}' -X POST --data-binary @"$TMP/req-steps.json" "$url:explain")
    check "bad parameter: 400" [ "$c" = 400 ] && check "names it" grep -q '"error": "explain: parameters.steps' "$TMP/err.json"
    c=$(curl -s -o "$TMP/err.json" -w '%{http_code}' -X POST --data-binary '{"instances": [[1, 2]]}' "$url:explain")
    check "bad instance: 400" [ "$c" = 400 ] && check "error body" grep -q '"error"' "$TMP/err.json"
    c=$(curl -s -o "$TMP/err.json" -w '%{http_code}' -X POST --data-binary 'x' "$url:explain")
    check "not JSON: 400" [ "$c" = 400 ]
    c=$(curl -s -o "$TMP/err.json" -w '%{http_code}' -X POST --data-binary '{}' "http://127.0.0.1:$port/v1/models/none:explain")
    check "unknown model: 404" [ "$c" = 404 ]
    kill "$pid"
    wait "$pid" 2>/dev/null
}

# log.explain: attribution images in TensorBoard and <run>/explain/, shown by kiln board.
t_log_explain() {
    cat >"$TMP/tb.yaml" <<YAML
experiment: tbx
seed: 1
data:
  source: idx
  train: {images: $FMNIST/t10k-images-idx3-ubyte.gz, labels: $FMNIST/t10k-labels-idx1-ubyte.gz}
  validation_split: 0.05
  normalize: {scale: 0.00392156862745098}
  batch_size: 128
model:
  input: [1, 28, 28]
  layers:
    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}
    - maxpool2d: {size: 2}
    - flatten
    - dense: {units: 10}
loss: softmax_cross_entropy
train: {epochs: 2}
log: {explain: {method: integrated_gradients, every_epochs: 1, samples: 6}, projector_samples: 0}
YAML
    k train "$TMP/tb.yaml" --runs-dir "$TMP/tbruns" --quiet
    check "train with log.explain" [ "$rc" = 0 ]
    local run
    run=$(ls -d "$TMP"/tbruns/tbx/*)
    check "a PNG per epoch" [ -s "$run/explain/epoch-1-integrated_gradients.png" -a -s "$run/explain/epoch-2-integrated_gradients.png" ]
    check "TensorBoard image tag" grep -aq "explain/integrated_gradients" "$run"/validation/events.out.tfevents.*
    $PY -c "
from PIL import Image; im = Image.open('$run/explain/epoch-2-integrated_gradients.png')
assert im.size == (3 * 84 + 4, 2 * 84 + 2), im.size" # 6 tiles of 28 x 3 in a 3 x 2 grid
    check "the grid's size" [ $? = 0 ]
    "$KILN" board --runs-dir "$TMP/tbruns" --port 0 >"$TMP/board.log" 2>&1 &
    local pid=$! url=""
    for _ in $(seq 100); do
        url=$(sed -n 's/.* on \(http:\/\/[^ ]*\) .*/\1/p' "$TMP/board.log")
        [ -n "$url" ] && break
        sleep 0.1
    done
    check "board started" [ -n "$url" ]
    url=${url%/}
    local key=tbx/$(basename "$run")
    curl -s "$url/api/runs/$key" >"$TMP/details.json"
    check "details list the images" grep -q '"explain":\[{"file":"epoch-1-integrated_gradients.png","epoch":1,"method":"integrated_gradients"}' "$TMP/details.json"
    local c
    c=$(curl -s -o "$TMP/img.png" -w '%{http_code} %{content_type}' "$url/api/runs/$key/explain/epoch-2-integrated_gradients.png")
    check "the image: 200 image/png" [ "$c" = "200 image/png" ]
    check "the same bytes" cmp -s "$TMP/img.png" "$run/explain/epoch-2-integrated_gradients.png"
    c=$(curl -s -o /dev/null -w '%{http_code}' "$url/api/runs/$key/explain/..%2Fconfig.yaml")
    check "a name outside the pattern: 400" [ "$c" = 400 ]
    c=$(curl -s -o /dev/null -w '%{http_code}' "$url/api/runs/$key/explain/epoch-9-saliency.png")
    check "a missing image: 404" [ "$c" = 404 ]
    check "the page shows them" sh -c "curl -s '$url/app.js' | grep -q 'attributions (log.explain'"
    kill "$pid"
    wait "$pid" 2>/dev/null
}

if ! setup; then
    echo "FAIL setup"
    echo "0 passed, 1 failed"
    exit 1
fi
run_test t_parity_mlp
run_test t_parity_cnn
run_test t_completeness
run_test t_randomized_weights
run_test t_occlusion_sanity
run_test t_files_and_run_folder
run_test t_bad_input
run_test t_serve_explain
run_test t_log_explain
finish

#!/usr/bin/env bash
# serve.sh — kiln serve end to end: versions exported while training, served over HTTP on
# 127.0.0.1 and queried with curl; a new export picked up by polling; a model config file with
# batching; usage and config-file errors; graceful SIGTERM. (Route-by-route response shapes,
# hot reload under load and batching are in tests/test_serve.c.)
. "$(dirname "$0")/lib.sh"

SERVER_PID=""
stop_server() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
trap 'stop_server; rm -rf "$TMP"' EXIT

# Starts kiln serve with the given flags on a free port; sets $PORT (from its log line).
serve() {
    : >"$TMP/serve.log"
    "$KILN" serve --host 127.0.0.1 --rest_api_port 0 --rest_api_num_threads 2 "$@" >"$TMP/serve.log" 2>&1 &
    SERVER_PID=$!
    PORT=""
    for _ in $(seq 100); do
        PORT=$(sed -n 's/.*serving .* on http:\/\/[0-9.]*:\([0-9]*\) .*/\1/p' "$TMP/serve.log")
        [ -n "$PORT" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "  server did not start:" >&2
    sed 's/^/    | /' "$TMP/serve.log" >&2
    return 1
}

# curl: status into $code, body into $TMP/body
call() { # call METHOD PATH [BODY_FILE]
    if [ $# -ge 3 ]; then
        code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$1" --data-binary @"$3" "http://127.0.0.1:$PORT$2")
    else
        code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$1" "http://127.0.0.1:$PORT$2")
    fi
}
body_has() { grep -qF -- "$1" "$TMP/body" || { echo "  body lacks: $1" >&2; head -c 600 "$TMP/body" | sed 's/^/    | /' >&2; echo >&2; return 1; }; }

# The first test image of Fashion-MNIST (an ankle boot) as {"instances": [[784 pixels]]}.
first_test_image() {
    local raw
    raw=$(gzip -dc "$FMNIST/t10k-images-idx3-ubyte.gz" | head -c $((16 + 784)) | tail -c 784 | od -An -v -tu1 | tr -s ' \n' ',,' | sed 's/^,//; s/,$//')
    printf '{"instances": [[%s]]}' "$raw" >"$TMP/boot.json"
}

t_serve_exports_while_training() {
    local cfg run
    cfg=$(small_config exp "  export: {every_epochs: 1}")
    k train "$cfg" --runs-dir "$TMP/runs" --quiet \
        --set 'model.class_names=[T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot]'
    check "train with train.export: exit 0" [ $rc = 0 ]
    run=$(ls -d "$TMP"/runs/small/*/ | head -1)
    check "version 1 exported after epoch 1" [ -s "$run/export/1/model.json" ]
    check "version 2 exported after epoch 2" [ -s "$run/export/2/weights.safetensors" ]
    check "no temporary folders left" [ -z "$(ls -A "$run/export" | grep '^\.tmp')" ]
    serve --model_base_path "$run/export" --model_name fmnist || { test_failed=1; return; }
    first_test_image
    call POST /v1/models/fmnist:predict "$TMP/boot.json"
    check "predict: 200" [ "$code" = 200 ]
    check "predict: the boot is named" body_has '"classes":"Ankle boot"'
    check "predict: probabilities" body_has '"probabilities":['
    call GET /v1/models/fmnist
    check "status: version 2 available" body_has '{"model_version_status":[{"version":"2","state":"AVAILABLE"'
    # a new version appears (kiln export) and is served within the poll interval
    "$KILN" export "$run" --to "$run/export" >/dev/null 2>&1
    for _ in $(seq 50); do
        call GET /v2/models/fmnist
        grep -qF '"versions":["3"]' "$TMP/body" && break
        sleep 0.2
    done
    check "version 3 swapped in by polling" body_has '"versions":["3"]'
    check "the swap is logged" grep -q "version 3 loaded and warmed up" "$TMP/serve.log"
    call GET /monitoring/prometheus/metrics
    check "metrics: predictions counted" body_has 'kiln_requests_total{model="fmnist",version="2",api="v1_predict",code="200"} 1'
    check "metrics: version 2 unloaded" body_has 'kiln_model_version_loaded{model="fmnist",version="2"} 0'
    stop_server
    check "SIGTERM: stopped cleanly" grep -q "stopped" "$TMP/serve.log"
    cp -r "$run/export" "$TMP/fm-export"
}

t_serve_config_file_and_batching() {
    [ -d "$TMP/fm-export" ] || { echo "  (needs t_serve_exports_while_training)" >&2; test_failed=1; return; }
    cat >"$TMP/models.config" <<EOF
model_config_list {
  config { name: 'a' base_path: '$TMP/fm-export' model_version_policy { all {} }
           version_labels { key: 'stable' value: 1 } }
  config { name: 'b' base_path: '$TMP/fm-export' model_version_policy { specific { versions: 2 } } }
}
EOF
    printf 'max_batch_size { value: 16 }\nbatch_timeout_micros { value: 500 }\nnum_batch_threads { value: 2 }\n' >"$TMP/batching.config"
    serve --model_config_file "$TMP/models.config" --enable_batching --batching_parameters_file "$TMP/batching.config" || { test_failed=1; return; }
    call GET /v2/models/a
    check "model a: all versions" body_has '"versions":["1","2","3"]'
    call GET /v2/models/b
    check "model b: version 2 only" body_has '"versions":["2"]'
    call POST /v1/models/a/labels/stable:predict "$TMP/boot.json"
    check "label predict through the batcher: 200" [ "$code" = 200 ]
    check "label predict: the boot" body_has '"classes":"Ankle boot"'
    printf '{"inputs": [{"name": "input", "shape": [1, 784], "datatype": "UINT8", "data": %s}]}' \
        "$(sed 's/{"instances": \[\(.*\)\]}/\1/' "$TMP/boot.json")" >"$TMP/v2.json"
    call POST /v2/models/b/versions/2/infer "$TMP/v2.json"
    check "v2 infer: 200" [ "$code" = 200 ]
    check "v2 infer: names the model and version" body_has '{"model_name":"b","model_version":"2","outputs":['
    check "batching announced" grep -q "batching" "$TMP/serve.log"
    stop_server
}

# One rule for the shape of an instance in kiln serve and kiln predict: [28, 28] fits the model's
# [1, 28, 28] in both, and a misfit names the instance's shape and the row.
t_serve_instance_shapes() {
    [ -d "$TMP/fm-export" ] || { echo "  (needs t_serve_exports_while_training)" >&2; test_failed=1; return; }
    python3 -c '
import json, sys
px = json.load(open(sys.argv[1]))["instances"][0]
rows = [px[i * 28:(i + 1) * 28] for i in range(28)]
json.dump({"instances": [rows]}, open(sys.argv[2], "w"))
json.dump({"instances": [[r[:27] for r in rows]]}, open(sys.argv[3], "w"))
' "$TMP/boot.json" "$TMP/boot28.json" "$TMP/boot27.json"
    serve --model_base_path "$TMP/fm-export" --model_name fmnist || { test_failed=1; return; }
    call POST /v1/models/fmnist:predict "$TMP/boot.json"
    cp "$TMP/body" "$TMP/flat.answer"
    call POST /v1/models/fmnist:predict "$TMP/boot28.json"
    check "serve: a [28, 28] instance for [1, 28, 28]: 200" [ "$code" = 200 ]
    check "serve: the same answer as 784 flat values" cmp -s "$TMP/body" "$TMP/flat.answer"
    call POST /v1/models/fmnist:predict "$TMP/boot27.json"
    check "serve: [28, 27]: 400" [ "$code" = 400 ]
    check "serve: names the instance's shape and the row" body_has "instances: each instance has shape [28, 27], but model fmnist's input row is [1, 28, 28] (784 values)"
    k predict --server "http://127.0.0.1:$PORT" --model fmnist --json "$TMP/boot28.json"
    check "predict --server: the [28, 28] instance, exit 0" [ $rc = 0 ] && check "predict: the boot" has '"class": "Ankle boot"'
    k predict --model_dir "$TMP/fm-export" "$TMP/boot27.json"
    check "predict: [28, 27] exits 2" [ $rc = 2 ] && check "predict: the same words" has "instances: each instance has shape [28, 27], but the model's input row is [1, 28, 28] (784 values)"
    stop_server
}

# What tritonclient sends by default (the binary tensor data extension), built here with
# python3's struct: the binary answer must hold, byte for byte, the values of the JSON answer to
# the same instance. And NaN / Infinity in a TF Serving body (its "JSON conformance").
t_serve_binary_tensor_data_and_nan() {
    [ -d "$TMP/fm-export" ] || { echo "  (needs t_serve_exports_while_training)" >&2; test_failed=1; return; }
    serve --model_base_path "$TMP/fm-export" --model_name fmnist || { test_failed=1; return; }
    cat >"$TMP/triton.py" <<'PY'
import json, struct, sys, urllib.request
port, boot = sys.argv[1], sys.argv[2]
url = "http://127.0.0.1:%s/v2/models/fmnist/infer" % port
px = json.load(open(boot))["instances"][0]

def post(url, body, headers={}):
    with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers)) as r:
        return r.read(), r.headers

meta = json.loads(post("http://127.0.0.1:%s/v2" % port, None)[0])
assert "binary_tensor_data" in meta["extensions"], meta
head = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                               "parameters": {"binary_data_size": 784 * 4}}],
                   "parameters": {"binary_data_output": True}}).encode()
raw, h = post(url, head + struct.pack("<784f", *px),
              {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(head))})
assert h["Content-Type"] == "application/octet-stream", h["Content-Type"]
hl = int(h["Inference-Header-Content-Length"])
answer, data = json.loads(raw[:hl]), raw[hl:]
plain = json.loads(post(url, json.dumps({"inputs": [{"name": "input", "shape": [1, 784],
                                                     "datatype": "FP32", "data": px}]}).encode())[0])
off = 0
for o in answer["outputs"]:
    n = o["parameters"]["binary_data_size"]
    got, off = data[off:off + n], off + n
    j = next(x for x in plain["outputs"] if x["name"] == o["name"])
    assert (o["shape"], o["datatype"]) == (j["shape"], j["datatype"]), (o, j)
    if o["datatype"] == "FP32":
        want = struct.pack("<%df" % len(j["data"]), *j["data"])
    else:
        want = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in j["data"])
    assert got == want, o["name"]
assert off == len(data) and len(answer["outputs"]) == 3
print("classes", data[-14:].decode(errors="replace"))

# TF Serving's JSON conformance: NaN and Infinity tokens are numbers (what the model makes of
# them is its business: a ReLU may turn NaN into 0)
body = json.dumps({"instances": [[float("nan"), float("inf"), -float("inf")] + px[3:]]}).encode()
assert b"NaN, Infinity, -Infinity" in body
ans = json.loads(post("http://127.0.0.1:%s/v1/models/fmnist:predict" % port, body)[0])
assert len(ans["predictions"][0]["output"]) == 10, ans
print("nan ok")
PY
    python3 "$TMP/triton.py" "$PORT" "$TMP/boot.json" >"$TMP/out" 2>&1
    rc=$?
    check "binary tensor data: the same bytes as the JSON answer" [ $rc = 0 ] || sed 's/^/    | /' "$TMP/out" >&2
    check "binary classes: the boot" has "Ankle boot"
    check "NaN and Infinity in a TF Serving body: 200" has "nan ok"
    stop_server
}

t_serve_registry_alias() {
    local run
    run=$(ls -d "$TMP"/runs/small/*/ 2>/dev/null | head -1)
    [ -n "$run" ] || { echo "  (needs t_serve_exports_while_training)" >&2; test_failed=1; return; }
    "$KILN" models register "$run" --name fm --runs-dir "$TMP/runs" >/dev/null 2>&1
    "$KILN" models register "$run" --name fm --runs-dir "$TMP/runs" >/dev/null 2>&1
    k models alias fm 1 production --runs-dir "$TMP/runs"
    check "alias production -> 1" [ $rc = 0 ]
    serve --model_base_path models:/fm@production --runs-dir "$TMP/runs" --file_system_poll_wait_seconds 1 || { test_failed=1; return; }
    call GET /v2/models/fm
    check "models:/fm@production serves version 1 as model fm" body_has '"name":"fm","versions":["1"]'
    "$KILN" models alias fm 2 production --runs-dir "$TMP/runs" >/dev/null 2>&1
    for _ in $(seq 50); do
        call GET /v2/models/fm
        grep -qF '"versions":["2"]' "$TMP/body" && break
        sleep 0.2
    done
    check "moving the alias swaps in version 2" body_has '"versions":["2"]'
    call POST /v1/models/fm:predict "$TMP/boot.json"
    check "predict on the aliased version: 200" [ "$code" = 200 ]
    stop_server
    "$KILN" serve --model_base_path models:/nope@production --runs-dir "$TMP/runs" --rest_api_port 0 \
        --file_system_poll_wait_seconds 0 >"$TMP/out" 2>&1 &
    local pid=$!
    for _ in $(seq 50); do grep -q "serving" "$TMP/out" && break; sleep 0.1; done
    kill -TERM $pid 2>/dev/null
    wait $pid
    check "an unknown registered model is reported" grep -q "models:/nope@production: .*nope" "$TMP/out"
}

t_serve_errors() {
    k serve
    check "no model: exit 2" [ $rc = 2 ] && check "says what is missing" has "missing --model_base_path"
    k serve --model_base_path /x --nonsense
    check "unknown flag: exit 2" [ $rc = 2 ] && check "names it" has "--nonsense"
    k serve --model_base_path /x --rest_api_port 99999
    check "bad port: exit 2" [ $rc = 2 ] && check "names the range" has "[0, 65535]"
    k serve --model_base_path /x --model_version_policy newest
    check "bad policy: exit 2" [ $rc = 2 ]
    printf 'model_config_list {\n  config { name: "a" base_pth: "/x" }\n}\n' >"$TMP/bad.config"
    k serve --model_config_file "$TMP/bad.config"
    check "bad config file: exit 2" [ $rc = 2 ] && check "file:line and the field" has "bad.config:2: unknown field 'base_pth' in config"
    printf 'max_batch_size { value: 0 }\n' >"$TMP/bad-batching.config"
    k serve --model_base_path /x --enable_batching --batching_parameters_file "$TMP/bad-batching.config"
    check "bad batching file: exit 2" [ $rc = 2 ] && check "names it" has "bad-batching.config:1"
    k serve --help
    check "--help: exit 0" [ $rc = 0 ] && check "lists TF Serving's flags" has "--file_system_poll_wait_seconds"
}

# CORS: off by default (TF Serving's default), any origin with TF Serving's flag, or a list.
t_serve_cors() {
    mkdir -p "$TMP/empty-models"
    local url pre
    pre=(-X OPTIONS -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: content-type')
    hdr_has() { grep -qiF -- "$1" "$TMP/hdr" || { echo "  headers lack: $1" >&2; sed 's/^/    | /' "$TMP/hdr" >&2; return 1; }; }
    hdr_lacks() { ! grep -qiF -- "$1" "$TMP/hdr" || { echo "  headers have: $1" >&2; return 1; }; }
    serve --model_base_path "$TMP/empty-models" --model_name m || { test_failed=1; return; }
    url="http://127.0.0.1:$PORT/v1/models/m:predict"
    curl -s -o /dev/null -D "$TMP/hdr" "${pre[@]}" -H 'Origin: http://app.example' "$url"
    check "default: a preflight is answered 204" hdr_has "HTTP/1.1 204"
    check "default: no CORS headers" hdr_lacks "Access-Control-Allow-Origin"
    stop_server
    serve --model_base_path "$TMP/empty-models" --model_name m --rest_api_enable_cors_support || { test_failed=1; return; }
    url="http://127.0.0.1:$PORT/v1/models/m:predict"
    curl -s -o /dev/null -D "$TMP/hdr" "${pre[@]}" -H 'Origin: http://app.example' "$url"
    check "any origin: preflight 204" hdr_has "HTTP/1.1 204"
    check "any origin: Allow-Origin *" hdr_has "Access-Control-Allow-Origin: *"
    check "any origin: POST allowed" hdr_has "Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS"
    check "any origin: the requested header allowed" hdr_has "Access-Control-Allow-Headers: content-type"
    check "any origin: Max-Age" hdr_has "Access-Control-Max-Age: 600"
    curl -s -o "$TMP/body" -D "$TMP/hdr" -H 'Origin: http://app.example' "http://127.0.0.1:$PORT/v1/models/nope"
    check "any origin: an error answer carries Allow-Origin too" hdr_has "Access-Control-Allow-Origin: *"
    check "any origin: the error is JSON" body_has '{"error": '
    stop_server
    serve --model_base_path "$TMP/empty-models" --model_name m --cors_allowed_origins "http://app.example, https://other.example" || { test_failed=1; return; }
    curl -s -o /dev/null -D "$TMP/hdr" -H 'Origin: http://app.example' "http://127.0.0.1:$PORT/v1/models/m"
    check "listed origin: echoed" hdr_has "Access-Control-Allow-Origin: http://app.example"
    check "listed origin: Vary" hdr_has "Vary: Origin"
    curl -s -o /dev/null -D "$TMP/hdr" -H 'Origin: http://evil.example' "http://127.0.0.1:$PORT/v1/models/m"
    check "unlisted origin: no Allow-Origin" hdr_lacks "Access-Control-Allow-Origin"
    stop_server
    k serve --model_base_path /x --cors_allowed_origins app.example
    check "a bad origin: exit 2" [ $rc = 2 ] && check "names it" has "'app.example' is not an origin"
    k serve --model_base_path /x --rest_api_enable_cors_support --cors_allowed_origins http://a.example
    check "both CORS flags: exit 2" [ $rc = 2 ]
}

run_test t_serve_exports_while_training
run_test t_serve_config_file_and_batching
run_test t_serve_instance_shapes
run_test t_serve_binary_tensor_data_and_nan
run_test t_serve_registry_alias
run_test t_serve_errors
run_test t_serve_cors
finish

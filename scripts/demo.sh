#!/usr/bin/env bash
# make demo: after setup and build, train the Fashion-MNIST MLP for 2 epochs (exporting a servable
# version after each), evaluate it on the test set, serve the exports with kiln serve, query the
# server in both REST dialects, stop it, and say where everything is.
set -euo pipefail
BUILD=${1:-build}
KILN="$BUILD/kiln"
RUNS=${KILN_DEMO_RUNS:-runs}
echo "== kiln demo: train the Fashion-MNIST MLP (examples/fashion_mnist/mlp.yaml) for 2 epochs"
"$KILN" train examples/fashion_mnist/mlp.yaml --set train.epochs=2 --set 'train.export={every_epochs: 1}' \
    --name demo --runs-dir "$RUNS"
RUN=$(ls -td "$RUNS"/fashion-mnist-mlp/demo-* | head -1)
echo
echo "== evaluate it on the 10,000 test images"
"$KILN" eval "$RUN"
echo
echo "== serve its exported versions ($RUN/export) with kiln serve"
DEMO_TMP=$(mktemp -d /tmp/kiln-demo-XXXXXX)
LOG=$DEMO_TMP/serve.log
"$KILN" serve --model_base_path "$RUN/export" --model_name fmnist --host 127.0.0.1 --rest_api_port 0 2>"$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DEMO_TMP"' EXIT
PORT=""
for _ in $(seq 100); do
    PORT=$(sed -n 's/.*serving .* on http:\/\/[0-9.]*:\([0-9]*\) .*/\1/p' "$LOG")
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { cat "$LOG"; exit 1; }
sed 's/^/   /' "$LOG"
# The first test image (an ankle boot), raw pixels, as TF Serving's row format.
PIXELS=$( (gzip -dc /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz || true) | head -c 800 | tail -c 784 |
    od -An -v -tu1 | tr -s ' \n' ',,' | sed 's/^,//; s/,$//')
echo
echo "== query it: TF Serving REST (POST /v1/models/fmnist:predict) with the first test image"
echo "   (the label of that image is: Ankle boot)"
curl -s -d "{\"instances\": [[$PIXELS]]}" "http://127.0.0.1:$PORT/v1/models/fmnist:predict" | cut -c1-400
echo
echo "== the same through the Open Inference Protocol v2 (POST /v2/models/fmnist/infer)"
curl -s -d "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 784], \"datatype\": \"UINT8\", \"data\": [$PIXELS]}], \"outputs\": [{\"name\": \"classes\"}]}" \
    "http://127.0.0.1:$PORT/v2/models/fmnist/infer"
echo
echo "== the same with kiln predict (a TF Serving REST client), then in-process without a server"
printf '{"instances": [[%s]]}' "$PIXELS" >"$DEMO_TMP/boot.json"
KILN_ABS=$(realpath "$KILN") EXPORT_ABS=$(realpath "$RUN/export")
(cd "$DEMO_TMP" && "$KILN_ABS" predict --server "http://127.0.0.1:$PORT" --model fmnist boot.json)
(cd "$DEMO_TMP" && "$KILN_ABS" predict --model_dir "$EXPORT_ABS" boot.json)
echo
echo "== model status, then a graceful stop"
curl -s "http://127.0.0.1:$PORT/v1/models/fmnist"
echo
kill -TERM $SERVER
wait $SERVER || true
tail -2 "$LOG" | sed 's/^/   /'
echo
echo "== the run is in $RUN:"
ls "$RUN"
echo
echo "next:"
echo "  $KILN train examples/fashion_mnist/cnn.yaml       # the CNN (about 25 s an epoch on 2 cores)"
echo "  $KILN train --resume $RUN                         # continue a stopped run"
echo "  $KILN serve --model_base_path $RUN/export --model_name fmnist   # serve on port 8501"
echo "  $KILN --help"

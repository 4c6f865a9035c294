#!/bin/sh
# The kiln-serve image's entrypoint: tensorflow/serving's conventions, so the image drops in for
# it in compose files and Kubernetes manifests. MODEL_NAME (default "model") is the name in URLs;
# the versions are read from ${MODEL_BASE_PATH}/${MODEL_NAME} (MODEL_BASE_PATH default /models),
# exactly as tensorflow/serving's tf_serving_entrypoint.sh does. Arguments are kiln serve's flags
# (TF Serving's names: --rest_api_port, --enable_batching, ...) and come after these, so they
# win; with --model_config_file the name and path are left out (several models). exec: kiln-serve
# becomes PID 1 and gets `podman stop`'s SIGTERM itself (it blocks and sigwaits for it, then
# drains the requests in flight).
set -eu
for a in "$@"; do
    case "$a" in
        --model_config_file|--model_config_file=*) exec /usr/local/bin/kiln-serve "$@" ;;
    esac
done
exec /usr/local/bin/kiln-serve --rest_api_port=8501 --model_name="${MODEL_NAME:-model}" \
    --model_base_path="${MODEL_BASE_PATH:-/models}/${MODEL_NAME:-model}" "$@"

#!/usr/bin/env bash
# Installs every Debian package kiln needs to build, test and run its demo (DESIGN.md §7).
# Idempotent: does nothing when all packages are present. Needs root (or sudo) for apt-get.
# `setup.sh --build-deps` installs only what building kiln needs (the Containerfile uses it).
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libdnnl-dev libfyaml-dev libcjson-dev zlib1g-dev libcurl4-openssl-dev
      libsqlite3-dev protobuf-c-compiler libprotobuf-c-dev libstb-dev libturbojpeg0-dev curl
      libpq-dev postgresql  # the registry on PostgreSQL and its tests (scripts/pg_local.sh)
      dataset-fashion-mnist
      chromium chromium-driver  # the kiln board test loads the page in headless Chromium
      python3-torch python3-numpy   # formats_torch runs docs/formats.md's example in PyTorch
      python3-torchvision python3-onnx  # ONNX parity tests: torchvision models, onnx's checker
      libopenmpi-dev openmpi-bin        # data parallel training (src/dist/, docs/distributed.md)
      librdkafka-dev                    # data.source: kafka, kiln data produce (docs/kafka.md)
      munge slurmctld slurmd slurm-client iproute2  # the Slurm and two-host tests (scripts/slurm_local.sh)
      libmicrohttpd-dev libgnutls28-dev openssl)  # kiln fl: its HTTPS server; test certificates
# ONNX Runtime (npm onnxruntime-node) runs kiln's ONNX exports in the tests: Debian's nodejs and
# npm unless a Node.js with its own npm is installed already (NodeSource's package bundles npm).
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
# The benchmarks compare against PyTorch (the same packages) at its best: without OpenBLAS it
# silently runs on the reference BLAS, 5-7x slower (bench/peer_blas.py checks); and need wrk.
if [ "${KILN_WITH_BENCH:-0}" = 1 ]; then PKGS+=(libopenblas0-pthread wrk python3-optuna); fi
PKGS+=(podman debootstrap runc)  # tests/container.sh builds and runs the images (docs/containers.md)
# --build-deps: only what compiling kiln needs (the Containerfile's build stage): the tool chain
# and every -dev package and compiler listed above; no test oracles, browsers or services.
if [ "${1:-}" = --build-deps ]; then
    build=()
    for p in "${PKGS[@]}"; do
        case $p in build-essential|cmake|pkg-config|*-dev|*-compiler) build+=("$p") ;; esac
    done
    PKGS=("${build[@]}")
fi
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = --build-deps ] && exit 0
# Test oracles from npm (tests/oracles/package.json): ONNX Runtime's CPU library ships inside
# the package, so --ignore-scripts installs it without any download at test time.
ORACLES="$(cd "$(dirname "$0")/../tests/oracles" && pwd)"
if [ ! -f "$ORACLES/node_modules/onnxruntime-node/package.json" ]; then
    echo "setup: npm install onnxruntime-node (tests/oracles)"
    (cd "$ORACLES" && npm install --ignore-scripts --no-audit --no-fund --silent)
fi

#!/usr/bin/env bash
# Installs every Debian package kiln needs to build, test and run its demo (DESIGN.md §7).
# Idempotent: does nothing when all packages are present. Needs root (or sudo) for apt-get.
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libdnnl-dev libfyaml-dev libcjson-dev zlib1g-dev libcurl4-openssl-dev
      libsqlite3-dev protobuf-c-compiler libprotobuf-c-dev libstb-dev libturbojpeg0-dev curl
      dataset-fashion-mnist
      chromium chromium-driver  # the kiln board test loads the page in headless Chromium
      python3-torch python3-numpy)  # formats_torch runs docs/formats.md's example in PyTorch
# The benchmarks compare against PyTorch (the same packages) at its best: without OpenBLAS it
# silently runs on the reference BLAS, 5-7x slower (bench/peer_blas.py checks); and need wrk.
if [ "${KILN_WITH_BENCH:-0}" = 1 ]; then PKGS+=(python3-torchvision libopenblas0-pthread wrk); fi
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

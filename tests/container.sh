#!/usr/bin/env bash
# tests/container.sh — kiln's container images used as a user would (issue 21,
# docs/containers.md). A CI step of .ci/run, not a ctest entry: building the images compiles kiln
# inside a container and takes minutes.
#
#   bash tests/container.sh
#
# 1. builds both images with scripts/container.sh (the Debian base made by debootstrap when
#    debian:bookworm-slim is not in local storage; apt and debootstrap downloads are retried) and
#    prints their sizes; KILN_CONTAINER_FRESH=1 rebuilds every layer and the base (--no-cache
#    --new-base), otherwise Podman's layer cache is used (a fresh CI machine builds from scratch);
#    KILN_CONTAINER_BUILD=0 uses the images already built
# 2. makes the wine data with kiln_example_data and trains the tabular MLP for one epoch in the
#    kiln image, the runs folder mounted from the host; the files on the host must be owned by
#    the image's user (uid 1000) when run by root, by the invoking user with rootless Podman
#    (--userns=keep-id)
# 3. serves the export with the kiln-serve image (-p 127.0.0.1:PORT:8501, MODEL_NAME and
#    MODEL_BASE_PATH, a read-only root file system), queries it from the host with curl (TF Serving REST v1 and KServe v2, and
#    kiln predict in the kiln image: the same class), runs the HEALTHCHECK, and prints the time
#    from `podman run` to the first answered prediction
# 4. `podman stop`: kiln serve drains on SIGTERM and exits 0 (a SIGKILL after the grace period
#    would be 137); the time it took is printed (the issue's goal is 2 s), not asserted
# 5. kiln.def's %post and %test run as shell scripts inside the kiln image (Apptainer itself is
#    not packaged for Debian 12), and its %runscript runs kiln
# Prints "N passed, N failed"; exit 1 on any failure. Skips (one line, exit 0) only where Podman
# cannot run at all.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${KILN_IMAGE_TAG:-latest}"
KILN_IMG="localhost/kiln:$TAG" SERVE_IMG="localhost/kiln-serve:$TAG"
pass=0 fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
T_START=$(now)

# shellcheck source=../scripts/container.sh
source "$ROOT/scripts/container.sh" --env-only
set +e
if ! command -v podman >/dev/null 2>&1 || ! podman info >/dev/null 2>&1; then
    echo "SKIP: tests/container.sh: podman cannot run here ($(command -v podman >/dev/null \
        && echo "podman info fails" || echo "not installed"))"
    exit 0
fi

echo "== 1. build both images (scripts/container.sh)"
B0=$(now)
if [ "${KILN_CONTAINER_FRESH:-0}" = 1 ]; then FRESH=(--no-cache --new-base); else FRESH=(); fi
BLOG="${TMPDIR:-/tmp}/kiln-container-build.log"
if [ "${KILN_CONTAINER_BUILD:-1}" = 0 ]; then
    echo "(KILN_CONTAINER_BUILD=0: using the images already built)" >"$BLOG"
elif ! bash "$ROOT/scripts/container.sh" "${FRESH[@]}" >"$BLOG" 2>&1; then
    tail -40 "$BLOG"
    bad "scripts/container.sh builds kiln and kiln-serve"
    echo "$pass passed, $fail failed"; exit 1
fi
ok "scripts/container.sh builds kiln and kiln-serve ($(secs "$B0" "$(now)") s)"
grep -E '^(kiln needs|kiln-serve needs):' "$BLOG" | tail -2
mb() { podman image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.1f", $1 / 1e6 }'; }
SZ_KILN=$(mb "$KILN_IMG") SZ_SERVE=$(mb "$SERVE_IMG")
echo "image sizes: kiln $SZ_KILN MB (goal <= 250), kiln-serve $SZ_SERVE MB (goal <= 120)"
check "kiln-serve's image is smaller than kiln's" awk -v a="$SZ_SERVE" -v b="$SZ_KILN" \
    'BEGIN { exit !(a < b) }'
SERVE_LIBS=$(podman run --rm --entrypoint /bin/sh "$SERVE_IMG" -c \
    'ldd /usr/local/bin/kiln-serve' 2>&1)
check "kiln-serve's libraries all resolve in its image" \
    bash -c '! grep -q "not found" <<<"$1"' _ "$SERVE_LIBS"
check "kiln-serve loads no training-only library (Open MPI, libcurl)" \
    bash -c '! grep -qE "libmpi|libcurl" <<<"$1"' _ "$SERVE_LIBS"
check "the images run as a non-root user" \
    test "$(podman image inspect --format '{{.Config.User}}' "$SERVE_IMG")" = kiln

WORK=$(mktemp -d /tmp/kiln-container-test.XXXXXX)
SERVE_CTR="kiln-serve-test-$$"
cleanup() {
    podman rm -f "$SERVE_CTR" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
# Who owns what the containers write: rootful Podman runs the image's user kiln (uid 1000) on the
# host's uid 1000; rootless Podman maps the invoking user in with --userns=keep-id.
if [ "$(id -u)" = 0 ]; then
    USERNS=() OWNER=1000
    chown 1000:1000 "$WORK"
else
    USERNS=(--userns=keep-id) OWNER=$(id -u)
fi
mkdir -p "$WORK/runs" "$WORK/data"
[ "$(id -u)" = 0 ] && chown 1000:1000 "$WORK/runs" "$WORK/data"

echo "== 2. train the tabular MLP for one epoch in the kiln image (runs folder from the host)"
podman run --rm "${USERNS[@]}" -v "$WORK/data:/data" --workdir /data --entrypoint /bin/sh \
    "$KILN_IMG" -c 'mkdir -p tabular && kiln_example_data tabular &&
                    cp /usr/local/share/kiln/examples/tabular/wine.yaml tabular/'
check "kiln_example_data wrote the wine data on the host" \
    test -s "$WORK/data/tabular/wine_train.csv"
T0=$(now)
podman run --rm "${USERNS[@]}" -v "$WORK/data:/data" -v "$WORK/runs:/runs" "$KILN_IMG" \
    train /data/tabular/wine.yaml --runs-dir /runs --name ctr --set train.epochs=1 \
    --set 'train.export={every_epochs: 1}' >"$WORK/train.log" 2>&1
rc=$?
sed 's/^/   /' "$WORK/train.log" | tail -5
check "kiln train exits 0 in the container ($(secs "$T0" "$(now)") s)" test "$rc" = 0
RUN=$(ls -d "$WORK"/runs/wine-quality/ctr-* 2>/dev/null | head -1)
check "the run folder is on the host" test -n "$RUN" -a -f "$RUN/run.json"
check "run.json says finished" grep -qE '"status":[[:space:]]*"finished"' "$RUN/run.json"
check "the export is on the host" test -f "$RUN/export/1/model.json"
STRAY=$(find "$WORK/runs" "$WORK/data" ! -uid "$OWNER" | head -3)
check "every file written on the host is owned by uid $OWNER" test -z "$STRAY"
[ -n "$STRAY" ] && ls -ln $STRAY

echo "== 3. serve the export with the kiln-serve image"
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0));
print(s.getsockname()[1])')
# TF Serving's conventions: the versions are at ${MODEL_BASE_PATH}/${MODEL_NAME}
T0=$(now)
# (without systemd Podman logs that it cannot schedule the HEALTHCHECK: run by hand below)
# a read-only root file system without tmpfs, as examples/containers/kubernetes.yaml asks
podman run -d --name "$SERVE_CTR" "${USERNS[@]}" --read-only --read-only-tmpfs=false \
    -p "127.0.0.1:$PORT:8501" \
    -e MODEL_NAME=wine -e MODEL_BASE_PATH=/srv/models -v "$RUN/export:/srv/models/wine:ro" \
    "$SERVE_IMG" >/dev/null 2> >(grep -v 'unable to get systemd connection' >&2)
ROW=$(sed -n 2p "$WORK/data/tabular/wine_test.csv" | cut -d, -f1-11)
URL="http://127.0.0.1:$PORT"
V1=""
for _ in $(seq 600); do
    V1=$(curl -sf -d "{\"instances\": [[$ROW]]}" "$URL/v1/models/wine:predict" 2>/dev/null) &&
        break
    V1=""
    sleep 0.05
done
T_FIRST=$(secs "$T0" "$(now)")
podman logs "$SERVE_CTR" 2>&1 | sed 's/^/   /' | head -5
check "v1 predict answers from the host (${T_FIRST} s from podman run)" test -n "$V1"
echo "   v1: ${V1:0:200}"
V2=$(curl -sf -d "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 11], \"datatype\": \"FP32\",
    \"data\": [$ROW]}]}" "$URL/v2/models/wine/infer")
echo "   v2: ${V2:0:200}"
check "v2 infer answers" test -n "$V2"
# the class both protocols and kiln predict (in the kiln image, no server) give
cls() { grep -oE '"(high|medium|low)"' | head -1; }
C1=$(cls <<<"$V1") C2=$(cls <<<"$V2")
C3=$(printf '{"instances": [[%s]]}' "$ROW" | podman run --rm -i "${USERNS[@]}" \
    -v "$RUN/export:/models/wine:ro" "$KILN_IMG" predict --json --model_dir /models/wine - \
    2>&1 | cls)
check "v1, v2 and kiln predict give the same class ($C1 $C2 $C3)" \
    test -n "$C1" -a "$C1" = "$C2" -a "$C2" = "$C3"
check "GET /v2/health/ready is 200" curl -sf -o /dev/null "$URL/v2/health/ready"
check "the image's HEALTHCHECK passes" podman healthcheck run "$SERVE_CTR"

echo "== 4. podman stop: graceful (SIGTERM, drain, exit 0; not SIGKILLed after the 10 s grace)"
T0=$(now)
podman stop -t 10 "$SERVE_CTR" >/dev/null 2> >(grep -v 'Removing timer for container' >&2)
T_STOP=$(secs "$T0" "$(now)")
echo "   podman stop took $T_STOP s (printed, not asserted: the suite asserts no timings)"
check "kiln serve exited 0" \
    test "$(podman inspect --format '{{.State.ExitCode}}' "$SERVE_CTR")" = 0
LOGS=$(podman logs "$SERVE_CTR" 2>&1)
check "kiln serve got SIGTERM and drained" \
    grep -q 'SIGTERM: finishing requests in flight' <<<"$LOGS"
check "kiln serve says stopped" grep -q 'stopped' <<<"$LOGS"
tail -2 <<<"$LOGS" | sed 's/^/   /'

echo "== 5. kiln.def (Apptainer): %post, %test and %runscript inside the kiln image"
section() {  # the body of kiln.def's %NAME section
    awk -v s="%$1" '/^%/ { on = ($1 == s); next } on' "$ROOT/kiln.def"
}
mkdir -p "$WORK/def"
for s in post test runscript; do section $s >"$WORK/def/$s.sh"; done
check "kiln.def has %post, %test and %runscript" \
    test -s "$WORK/def/post.sh" -a -s "$WORK/def/test.sh" -a -s "$WORK/def/runscript.sh"
# %post runs as root at build time; %test and %runscript as the user, with %environment's PATH
AS_USER='sh -e /def/test.sh && sh -e /def/runscript.sh --version'
OUT=$(podman run --rm --user root -v "$WORK/def:/def:ro" --entrypoint /bin/sh "$KILN_IMG" -ec \
    "sh -e /def/post.sh && su kiln -s /bin/sh -c '$AS_USER'" 2>&1)
rc=$?
sed 's/^/   /' <<<"$OUT" | tail -5
check "%post and %test succeed, %runscript runs kiln" \
    bash -c '[ "$1" = 0 ] && grep -q "^kiln [0-9]" <<<"$2"' _ "$rc" "$OUT"

echo "container test: images kiln $SZ_KILN MB, kiln-serve $SZ_SERVE MB;" \
     "podman run to first prediction ${T_FIRST} s; podman stop $T_STOP s;" \
     "whole test $(secs "$T_START" "$(now)") s; CPU: $(grep -m1 'model name' /proc/cpuinfo |
     cut -d: -f2 | sed 's/^ *//')"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

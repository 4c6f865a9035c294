# lib.sh — a tiny harness for the command-line tests: each test is a function; check() asserts.
# Usage in a test file: . "$(dirname "$0")/lib.sh"; ...; run_test name; ...; finish
# $KILN is the binary (first argument), $TMP a fresh folder removed at the end.
set -u
KILN=${1:?usage: test.sh path/to/kiln}
KILN=$(cd "$(dirname "$KILN")" && pwd)/$(basename "$KILN")
TMP=$(mktemp -d /tmp/kiln-cli-test-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
FMNIST=/usr/share/datasets/fashion-mnist
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# KILN_TEST_PG=postgresql://... runs the test against that PostgreSQL server: every runs folder
# gets a schema of its own there (?schema=auto); PG=1 lets a test skip what only SQLite has.
PG=""
if [ -n "${KILN_TEST_PG:-}" ]; then
    case "$KILN_TEST_PG" in *\?*) export KILN_REGISTRY="$KILN_TEST_PG&schema=auto" ;;
                            *) export KILN_REGISTRY="$KILN_TEST_PG?schema=auto" ;; esac
    PG=1
fi
passed=0
failed=0
current=""
test_failed=0

check() { # check "description" command...
    local what=$1
    shift
    if ! "$@"; then
        echo "  FAILED: $what" >&2
        test_failed=1
    fi
}

# Runs kiln, keeping stdout+stderr in $TMP/out and the exit code in $rc.
k() {
    "$KILN" "$@" >"$TMP/out" 2>&1
    rc=$?
}

has() { grep -qF -- "$1" "$TMP/out" || { echo "  output lacks: $1" >&2; sed 's/^/    | /' "$TMP/out" | head -20 >&2; return 1; }; }

run_test() {
    if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$1" ]; then return; fi # ONLY=t_name runs just that one
    current=$1
    test_failed=0
    if ! declare -F "$1" >/dev/null; then # a misspelled or lost test must not pass
        failed=$((failed + 1)); echo "FAIL $1 (no such test function)"; return
    fi
    "$1"
    if [ $test_failed = 0 ]; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}

finish() {
    echo "$passed passed, $failed failed"
    [ $failed = 0 ]
}

# A small Fashion-MNIST MLP config (fast: 64 units), written to $TMP/$1.yaml; extra lines appended.
small_config() {
    local f=$TMP/$1.yaml
    shift
    cat >"$f" <<YAML
experiment: small
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
    - flatten
    - dense: {units: 64, activation: relu}
    - dropout: {rate: 0.1}
    - dense: {units: 10}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.001}}
train:
  epochs: 2
  ema_decay: 0.99
  checkpoint: {every_steps: 100, keep: 2}
YAML
    for line in "$@"; do printf '%s\n' "$line" >>"$f"; done
    echo "$f"
}

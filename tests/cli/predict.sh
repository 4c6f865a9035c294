#!/usr/bin/env bash
# kiln predict end to end: a small Fashion-MNIST classifier is trained and exported in seconds,
# then asked about the same test images as PNG (written here by a tiny PNG encoder on top of
# gzip, so the decoder is checked against an encoder that is not stb's), NPY, CSV, JSON, stdin
# and --stream: the answers agree across formats bit for bit, name the classes, and mostly
# match the true labels. Against `kiln serve` serving the same export, --server gives the same
# answers as --model_dir (files, several formats in one request, a version, --stream), and
# the server's 404s come back with its text and status. Bad inputs exit 2 naming the file (and
# line); a broken export, an unknown model or an unreachable server exit 1. A regression export
# prints its values; a single-logit binary classifier reads as two classes.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
EXAMPLE_DATA=$(dirname "$KILN")/kiln_example_data
N=4 # test images used

# ---- tiny binary helpers: data moves as hex strings ----
hex() { od -An -v -tx1 | tr -d ' \n'; }
tobin() { printf '%b' "$(printf %s "$1" | sed 's/../\\x&/g')"; }
crc32() { tobin "$1" | gzip -c | tail -c 8 | head -c 4 | od -An -tx1 | awk '{print $4 $3 $2 $1}'; }
adler32() { tobin "$1" | od -An -v -tu1 | awk 'BEGIN{a=1;b=0} {for(i=1;i<=NF;i++){a=(a+$i)%65521;b=(b+a)%65521}} END{printf "%04x%04x", b, a}'; }
chunk() { # TYPE HEXDATA -> a PNG chunk: length, type, data, CRC of type + data
    local t=$(printf %s "$1" | hex)
    tobin "$(printf '%08x' $((${#2} / 2)))$t$2$(crc32 "$t$2")"
}
png_gray() { # W H HEXPIXELS -> an 8-bit grayscale PNG on stdout (zlib stream from gzip's deflate)
    local w=$1 h=$2 px=$3 scan="" y
    for ((y = 0; y < h; y++)); do scan+="00${px:$((y * w * 2)):$((w * 2))}"; done
    local z="789c$(tobin "$scan" | gzip -cn9 | tail -c +11 | head -c -8 | hex)$(adler32 "$scan")"
    printf '\x89PNG\r\n\x1a\n'
    chunk IHDR "$(printf '%08x%08x' "$w" "$h")0800000000"
    chunk IDAT "$z"
    chunk IEND ""
}

# ---- fixtures: a model and the first N test images in every format ----
setup() {
    local c=$(small_config model "  max_steps: 300")
    sed -i 's/^  input: \[1, 28, 28\]$/  input: [1, 28, 28]\n  class_names: [T-shirt\/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot]/' "$c"
    OMP_NUM_THREADS=1 "$KILN" train "$c" --set train.epochs=1 --runs-dir "$TMP/runs" --quiet >"$TMP/train.log" 2>&1 || { cat "$TMP/train.log"; return 1; }
    "$KILN" export "$(ls -d "$TMP"/runs/*/*)" --to "$TMP/export" >/dev/null || return 1
    zcat "$FMNIST/t10k-images-idx3-ubyte.gz" | head -c $((16 + 784 * N)) | tail -c +17 >"$TMP/raw"
    zcat "$FMNIST/t10k-labels-idx1-ubyte.gz" | head -c $((8 + N)) | tail -c +9 | od -An -v -tu1 | tr -s ' \n' '\n' | sed '/^$/d' >"$TMP/labels"
    local hdr="{'descr': '|u1', 'fortran_order': False, 'shape': ($N, 1, 28, 28), }"
    local pad=$(((64 - (10 + ${#hdr} + 1) % 64) % 64))
    { printf '\x93NUMPY\x01\x00'; local hl=$((${#hdr} + pad + 1))
      tobin "$(printf '%02x%02x' $((hl & 255)) $((hl >> 8)))"
      printf '%s%*s\n' "$hdr" $pad ""; cat "$TMP/raw"; } >"$TMP/x.npy"
    od -An -v -tu1 -w784 "$TMP/raw" | sed 's/^ *//; s/  */,/g' >"$TMP/rows"
    { printf 'pixel%d,' $(seq 1 783); echo pixel784; cat "$TMP/rows"; } >"$TMP/x.csv"
    { printf '{"instances": ['; sed 's/.*/[&]/' "$TMP/rows" | paste -sd, | tr -d '\n'; printf ']}\n'; } >"$TMP/x.json"
    sed 's/.*/[&]/' "$TMP/rows" | paste -sd, | sed 's/.*/[&]/' >"$TMP/bare.json"
    local i
    for ((i = 0; i < N; i++)); do
        png_gray 28 28 "$(tail -c +$((784 * i + 1)) "$TMP/raw" | head -c 784 | hex)" >"$TMP/img$i.png"
    done
    # the reference answers: the NPY file, one instance per model run
    k predict --model_dir "$TMP/export" --json --batch 1 "$TMP/x.npy"
    [ $rc = 0 ] || { cat "$TMP/out"; return 1; }
    answers >"$TMP/a.npy"
}

# The JSON predictions of a --json run without their "input" keys, one per line.
answers() { grep '"class"' "$TMP/out" | sed 's/"input": "[^"]*", //; s/,$//; s/^ *//'; }

# Two files of answers agree: the same classes, every probability within 1e-5 (a server may run
# a batch of another size or on other threads, which moves the last bits).
agree() {
    [ "$(wc -l <"$1")" = "$(wc -l <"$2")" ] && [ -s "$1" ] || return 1
    paste -d'|' "$1" "$2" | awk -F'|' '
        function probs(s, v) { sub(/.*"probabilities": \[/, "", s); sub(/\].*/, "", s); return split(s, v, ", ") }
        function cls(s) { sub(/.*"class_index": /, "", s); sub(/,.*/, "", s); return s }
        { if (cls($1) != cls($2)) bad = 1
          n = probs($1, x); m = probs($2, y); if (n != m || n < 2) bad = 1
          for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > 1e-5) bad = 1 } }
        END { exit bad }'
}

SERVER_PID=""
stop_server() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
trap 'stop_server; rm -rf "$TMP"' EXIT

# kiln serve on a free port of 127.0.0.1; sets $URL (the port from its log line).
serve() {
    "$KILN" serve --host 127.0.0.1 --rest_api_port 0 --rest_api_num_threads 2 "$@" >"$TMP/serve.log" 2>&1 &
    SERVER_PID=$!
    local port="" i
    for i in $(seq 100); do
        port=$(sed -n 's/.*serving .* on http:\/\/[0-9.]*:\([0-9]*\) .*/\1/p' "$TMP/serve.log")
        [ -n "$port" ] && URL=http://127.0.0.1:$port && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    sed 's/^/    | /' "$TMP/serve.log" >&2
    return 1
}

t_formats_agree() {
    check "npy: $N predictions" [ "$(wc -l <"$TMP/a.npy")" = $N ]
    check "class names appear" grep -q '"class": "[A-Z]' "$TMP/a.npy"
    local f
    for f in x.csv x.json bare.json; do
        k predict --model_dir "$TMP/export/1" --json --batch 1 "$TMP/$f"
        check "$f: exit 0" [ $rc = 0 ]
        answers >"$TMP/a.$f"
        check "$f agrees with npy" cmp -s "$TMP/a.npy" "$TMP/a.$f"
    done
    k predict --model_dir "$TMP/export" --json --batch 1 "$TMP"/img{0,1,2,3}.png
    check "png: exit 0" [ $rc = 0 ]
    answers >"$TMP/a.png"
    check "png (encoded by this script) agrees with npy" cmp -s "$TMP/a.npy" "$TMP/a.png"
    check "each png is one instance, named by its file" has "\"input\": \"$TMP/img3.png\""
    # the model is small but real: most of the first test images are right
    local right=$(paste -d' ' "$TMP/labels" <(sed 's/.*"class_index": \([0-9]*\).*/\1/' "$TMP/a.npy") | awk '$1 == $2' | wc -l)
    check "$right of $N predictions match the labels" [ "$right" -ge 3 ]
    # batched runs: the same classes (floats may differ in the last bits across batch sizes)
    k predict --model_dir "$TMP/export" --json "$TMP/x.csv"
    check "batched: same classes" [ "$(answers | grep -o '"class_index": [0-9]*')" = "$(grep -o '"class_index": [0-9]*' "$TMP/a.npy")" ]
}

t_table_and_stdin() {
    k predict --model_dir "$TMP/export" "$TMP/x.csv" "$TMP/img0.png"
    check "exit 0" [ $rc = 0 ]
    check "header" has "probability  top 3"
    check "csv rows named file:line" has "$TMP/x.csv:2 "
    check "png row" has "$TMP/img0.png "
    check "a class name" bash -c "grep -Eq 'Ankle boot|Trouser|Pullover|Shirt' '$TMP/out'"
    check "$N + 2 lines" [ "$(wc -l <"$TMP/out")" = $((N + 2)) ]
    k predict --model_dir "$TMP/export" --top 0 "$TMP/img0.png"
    check "--top 0: no top column" bash -c "! grep -q 'top' '$TMP/out'"
    "$KILN" predict --model_dir "$TMP/export" --json --batch 1 - <"$TMP/x.npy" >"$TMP/out" 2>&1
    check "npy on stdin: exit 0" [ $? = 0 ]
    check "npy on stdin agrees" cmp -s "$TMP/a.npy" <(answers)
    "$KILN" predict --model_dir "$TMP/export" --json - <"$TMP/img1.png" >"$TMP/out" 2>&1
    check "png on stdin: named stdin" has '"input": "stdin"'
    check "png on stdin agrees" [ "$(answers)" = "$(sed -n 2p "$TMP/a.npy")" ]
}

t_stream() {
    { head -1 "$TMP/rows"; echo; sed -n 2p "$TMP/rows" | sed 's/.*/[&]/'; echo "1,2,3"; sed -n 3,4p "$TMP/rows"; echo '[1, "x"]'; } >"$TMP/stream.in"
    "$KILN" predict --model_dir "$TMP/export" --stream <"$TMP/stream.in" >"$TMP/stream.out" 2>"$TMP/stream.err"
    local code=$?
    check "a bad line: exit 1 at the end (got $code)" [ $code = 1 ]
    check "every good line answered, in order" cmp -s "$TMP/a.npy" "$TMP/stream.out"
    check "the bad lines named" bash -c "grep -q '^kiln predict: stdin:4: 3 values' '$TMP/stream.err' && grep -q '^kiln predict: stdin:7: ' '$TMP/stream.err'"
    head -2 "$TMP/rows" | "$KILN" predict --model_dir "$TMP/export" --stream >"$TMP/out" 2>&1
    check "clean stream: exit 0" [ $? = 0 ]
    check "one JSON object per line" [ "$(grep -c '^{"class": ".*"probabilities": \[.*\]}$' "$TMP/out")" = 2 ]
    # answers come as lines arrive, not at the end of input
    local fifo=$TMP/fifo
    mkfifo "$fifo"
    "$KILN" predict --model_dir "$TMP/export" --stream <"$fifo" >"$TMP/live.out" 2>&1 &
    local pid=$!
    exec 7>"$fifo"
    head -1 "$TMP/rows" >&7
    local i
    for i in $(seq 1 200); do [ -s "$TMP/live.out" ] && break; sleep 0.05; done
    check "the first answer is out before stdin closes" [ -s "$TMP/live.out" ]
    exec 7>&-
    wait $pid
    check "and the stream ends cleanly at EOF" [ $? = 0 ]
}

t_bad_inputs() {
    printf '1,2,3\n' >"$TMP/short.csv"
    k predict --model_dir "$TMP/export" "$TMP/short.csv"
    check "short csv: exit 2" [ $rc = 2 ]
    check "names file:line and sizes" has "short.csv:1: 3 values, but the model's input row is [1, 28, 28] (784 values)"
    { head -1 "$TMP/rows"; head -1 "$TMP/rows" | sed 's/,0,/,zero,/'; } >"$TMP/word.csv"
    k predict --model_dir "$TMP/export" "$TMP/word.csv"
    check "non-number: exit 2, file:line:column" bash -c "[ $rc = 2 ] && grep -q \"word.csv:2: column [0-9]*: 'zero' is not a number\" '$TMP/out'"
    png_gray 2 3 "000102030405" >"$TMP/small.png"
    k predict --model_dir "$TMP/export" "$TMP/small.png"
    check "wrong-size png: exit 2, both sizes" bash -c "[ $rc = 2 ] && grep -q 'small.png: the image is 2x3 (width x height), the model.s input is 28x28' '$TMP/out'"
    head -c 300 "$TMP/img0.png" >"$TMP/cut.png"
    k predict --model_dir "$TMP/export" "$TMP/cut.png"
    check "truncated png: exit 2, named" bash -c "[ $rc = 2 ] && grep -q 'cut.png' '$TMP/out'"
    head -c 2000 "$TMP/x.npy" >"$TMP/cut.npy"
    k predict --model_dir "$TMP/export" "$TMP/cut.npy"
    check "truncated npy: exit 2, named" bash -c "[ $rc = 2 ] && grep -q 'cut.npy' '$TMP/out'"
    echo '{"instances": [[1, 2]]}' >"$TMP/shape.json"
    k predict --model_dir "$TMP/export" "$TMP/shape.json"
    check "wrong json shape: exit 2" bash -c "[ $rc = 2 ] && grep -q 'shape.json: instances: each instance has shape \[2\]' '$TMP/out'"
    head -c 3000 /dev/urandom >"$TMP/noise.bin"
    k predict --model_dir "$TMP/export" "$TMP/noise.bin"
    check "garbage: exit 2, named" bash -c "[ $rc = 2 ] && grep -q 'noise.bin' '$TMP/out'"
    k predict --model_dir "$TMP/export" "$TMP/x.csv" "$TMP/missing.png"
    check "missing file: exit 2, named" bash -c "[ $rc = 2 ] && grep -q 'missing.png' '$TMP/out'"
    check "and nothing predicted" bash -c "! grep -q probability '$TMP/out'"
}

t_usage_and_failures() {
    k predict
    check "no arguments: exit 2" [ $rc = 2 ]
    k predict --model_dir "$TMP/export" --server http://127.0.0.1:1 --model m x.csv
    check "both modes: exit 2" [ $rc = 2 ]
    k predict --model_dir "$TMP/export" --stream "$TMP/x.csv"
    check "--stream with files: exit 2" [ $rc = 2 ]
    k predict --model_dir "$TMP/export"
    check "no input: exit 2" [ $rc = 2 ]
    k predict --model_dir "$TMP/nothing" "$TMP/x.csv"
    check "missing export: exit 2" [ $rc = 2 ]
    k predict --model_dir "$TMP/export" --version 9 "$TMP/x.csv"
    check "missing version: exit 2" bash -c "[ $rc = 2 ] && grep -q 'no complete version 9' '$TMP/out'"
    k predict --model_dir "$TMP/export" --top -1 "$TMP/x.csv"
    check "--top -1: exit 2" [ $rc = 2 ]
    mkdir -p "$TMP/broken/1" && cp "$TMP/export/1/weights.safetensors" "$TMP/broken/1/" && echo '{"format": 1' >"$TMP/broken/1/model.json"
    k predict --model_dir "$TMP/broken" "$TMP/x.csv"
    check "corrupt export: exit 1, model.json named" bash -c "[ $rc = 1 ] && grep -q 'model.json' '$TMP/out'"
    k predict --server http://127.0.0.1:1 --model m "$TMP/x.csv"
    check "server down: exit 1" bash -c "[ $rc = 1 ] && grep -q '127.0.0.1:1/v1/models/m/metadata' '$TMP/out'"
    k predict --help
    check "--help: exit 0" bash -c "[ $rc = 0 ] && grep -q -- '--model_dir DIR' '$TMP/out'"
    k help predict
    check "kiln help predict" [ $rc = 0 ]
}

t_server() {
    check "kiln serve starts" serve --model_base_path "$TMP/export" --model_name fmnist || return
    k predict --server "$URL" --model fmnist --json --batch 1 "$TMP/x.npy"
    check "--server: exit 0" [ $rc = 0 ]
    answers >"$TMP/s.npy"
    check "--server agrees with --model_dir" agree "$TMP/a.npy" "$TMP/s.npy"
    k predict --server "$URL/" --model fmnist --version 1 --json "$TMP/x.csv" "$TMP"/img{0,1}.png
    check "a version, csv and png in one request: exit 0" [ $rc = 0 ]
    answers >"$TMP/s.mixed"
    head -$N "$TMP/s.mixed" >"$TMP/s.csv"
    tail -2 "$TMP/s.mixed" >"$TMP/s.png"
    head -2 "$TMP/a.npy" >"$TMP/a.first2"
    check "csv rows agree" agree "$TMP/s.csv" "$TMP/a.npy"
    check "png rows agree" agree "$TMP/s.png" "$TMP/a.first2"
    k predict --server "${URL#http://}" --model fmnist "$TMP/img0.png"
    check "table over http (no scheme): class named" bash -c "[ $rc = 0 ] && grep -q \"img0.png  *$(sed 's/.*"class": "\([^"]*\)".*/\1/;q' "$TMP/a.npy")\" '$TMP/out'"
    { head -1 "$TMP/rows"; echo "0,1"; sed -n 2,4p "$TMP/rows" | sed '2s/.*/[&]/'; } |
        "$KILN" predict --server "$URL" --model fmnist --stream >"$TMP/stream.out" 2>"$TMP/stream.err"
    local code=$?
    check "--stream over http: exit 1 for the bad line" [ $code = 1 ]
    check "--stream: the bad line named" grep -q '^kiln predict: stdin:2: 2 values' "$TMP/stream.err"
    check "--stream over http agrees" agree "$TMP/a.npy" "$TMP/stream.out"
    k predict --server "$URL" --model nope "$TMP/x.csv"
    check "unknown model: exit 1, the server's error and status" bash -c "[ $rc = 1 ] && grep -q 'HTTP 404: .*nope' '$TMP/out'"
    k predict --server "$URL" --model fmnist --version 7 "$TMP/x.csv"
    check "unknown version: exit 1" bash -c "[ $rc = 1 ] && grep -q 'versions/7/metadata: HTTP 404' '$TMP/out'"
    printf '1,2,3\n' >"$TMP/short.csv"
    k predict --server "$URL" --model fmnist "$TMP/short.csv"
    check "bad input with a server: exit 2 before sending" bash -c "[ $rc = 2 ] && grep -q 'short.csv:1: 3 values' '$TMP/out'"
    curl -s "$URL/monitoring/prometheus/metrics" >"$TMP/metrics"
    check "the server answered predictions with 200" grep -q 'api="v1_predict",code="200"' "$TMP/metrics"
    check "and never with 400" bash -c "! grep -q 'api=\"v1_predict\",code=\"400\"' '$TMP/metrics'"
    stop_server
    k predict --server "$URL" --model fmnist "$TMP/x.csv"
    check "server gone: exit 1" bash -c "[ $rc = 1 ] && grep -q \"$URL/v1/models/fmnist/metadata: \" '$TMP/out'"
}

t_regression() {
    mkdir -p "$TMP/regression" && cp "$SRC/examples/regression/curve_fitting.yaml" "$TMP/regression/"
    "$EXAMPLE_DATA" "$TMP/regression" >/dev/null
    OMP_NUM_THREADS=1 "$KILN" train "$TMP/regression/curve_fitting.yaml" --set train.epochs=2 --runs-dir "$TMP/rr" --quiet >/dev/null 2>&1
    "$KILN" export "$(ls -d "$TMP"/rr/*/*)" --to "$TMP/regexp" >/dev/null
    printf 'x\n0.25\n0.5\n' >"$TMP/reg.csv"
    k predict --model_dir "$TMP/regexp" "$TMP/reg.csv"
    check "exit 0" [ $rc = 0 ]
    check "values, not classes" bash -c "grep -q '^input  *output' '$TMP/out' && grep -Eq 'reg.csv:2  +-?[0-9]' '$TMP/out' && ! grep -q probability '$TMP/out'"
    k predict --model_dir "$TMP/regexp" --json "$TMP/reg.csv"
    check "json: an output list" has '"input": "'"$TMP"'/reg.csv:3", "output": ['
}

t_binary() { # one sigmoid logit: read as two classes [1 - p, p]
    mkdir -p "$TMP/bin"
    awk 'BEGIN { srand(1); print "x,y"; for (i = 0; i < 400; i++) { x = rand(); print x "," (x > 0.5 ? 1 : 0) } }' >"$TMP/bin/train.csv"
    cat >"$TMP/bin/bin.yaml" <<YAML
experiment: binary
seed: 1
data: {source: csv, task: regression, label: y, train: {path: train.csv}, batch_size: 32}
model: {input: [1], class_names: [low, high], layers: [{dense: {units: 1}}]}
loss: binary_cross_entropy
optimizer: {adam: {learning_rate: 0.1}}
train: {epochs: 20}
YAML
    OMP_NUM_THREADS=1 "$KILN" train "$TMP/bin/bin.yaml" --runs-dir "$TMP/bin/runs" --quiet >/dev/null 2>&1
    "$KILN" export "$(ls -d "$TMP"/bin/runs/*/*)" --to "$TMP/bin/export" >/dev/null
    printf '0.05\n0.95\n' >"$TMP/bin/q.csv"
    k predict --model_dir "$TMP/bin/export" --json "$TMP/bin/q.csv"
    check "exit 0" [ $rc = 0 ]
    check "low x: class low, two probabilities" bash -c "grep -q 'q.csv:1\", \"class\": \"low\", \"class_index\": 0, .*\"probabilities\": \[[0-9.e-]*, [0-9.e-]*\]}' '$TMP/out'"
    check "high x: class high" grep -q '"class": "high", "class_index": 1' "$TMP/out"
    k predict --model_dir "$TMP/bin/export" "$TMP/bin/q.csv"
    check "table: top 2 of the two classes" bash -c "grep -q 'top 2$' '$TMP/out' && grep -Eq 'q.csv:2 +high +0\.9[0-9]* +high +0\.9[0-9]* +low 0\.0' '$TMP/out'"
}

if ! setup; then
    echo "FAIL setup (training or export failed)"
    exit 1
fi
for t in t_formats_agree t_table_and_stdin t_stream t_bad_inputs t_usage_and_failures t_server t_regression t_binary; do
    run_test $t
done
finish

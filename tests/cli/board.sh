#!/usr/bin/env bash
# board.sh — kiln board end to end: three real runs trained with kiln train, the board started on
# a free port (it prints the URL), its API checked with curl, and the page loaded in a real
# browser (headless Chromium): the runs table must list the three runs and each run's curves
# must be drawn (SVG paths with data-run and data-metric). A screenshot is saved in
# <build>/test-output/board.png. Then a run trains while the page is open (Chromium driven by
# chromedriver over WebDriver, with curl): its curve must grow, and its status turn from running
# to stopped. A run trained in two stages (the first with a frozen layer): its details serve and
# show the model summary (summary.txt) and the stages, and its curves mark where stage 2 starts.
# (Endpoint shapes, incremental metrics and path escapes are tested in detail in
# tests/test_board.c.)
. "$(dirname "$0")/lib.sh"
OUT_DIR=$(dirname "$KILN")/test-output
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
RUNS=$TMP/runs

DRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
BOARD_PID="" TRAIN_PID="" DRIVER_PID="" SESSION="" WD=""
stop_board() { [ -n "$BOARD_PID" ] && kill -TERM "$BOARD_PID" 2>/dev/null && wait "$BOARD_PID" 2>/dev/null; BOARD_PID=""; }
stop_train() { [ -n "$TRAIN_PID" ] && kill -TERM "$TRAIN_PID" 2>/dev/null && wait "$TRAIN_PID" 2>/dev/null; TRAIN_PID=""; }
stop_driver() { # closes the browser session (that ends Chromium), then chromedriver
    [ -n "$SESSION" ] && curl -s -m 20 -X DELETE "$WD/session/$SESSION" >/dev/null
    SESSION=""
    [ -n "$DRIVER_PID" ] && kill -TERM "$DRIVER_PID" 2>/dev/null && wait "$DRIVER_PID" 2>/dev/null
    DRIVER_PID=""
}
trap 'stop_driver; stop_train; stop_board; rm -rf "$TMP"' EXIT

# Starts kiln board on a free port; sets $URL from the line it prints.
start_board() {
    : >"$TMP/board.log"
    "$KILN" board --runs-dir "$RUNS" --port 0 "$@" >"$TMP/board.log" 2>&1 &
    BOARD_PID=$!
    URL=""
    for _ in $(seq 100); do
        URL=$(sed -n 's/.* on \(http:\/\/[^ ]*\) .*/\1/p' "$TMP/board.log")
        [ -n "$URL" ] && return 0
        kill -0 "$BOARD_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "  the board did not start:" >&2
    sed 's/^/    | /' "$TMP/board.log" >&2
    return 1
}

get() { # get PATH: status into $code, body into $TMP/body
    code=$(curl -s --path-as-is -o "$TMP/body" -w '%{http_code}' "${URL%/}$1")
}
body_has() { grep -qF -- "$1" "$TMP/body" || { echo "  body lacks: $1" >&2; head -c 400 "$TMP/body" | sed 's/^/    | /' >&2; echo >&2; return 1; }; }

# Runs headless Chromium on the board's page: chromium ARGS...
browser() {
    timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
        --user-data-dir="$TMP/chromium" --window-size=1400,1100 --virtual-time-budget=6000 "$@" 2>>"$TMP/chromium.log"
}

t_chromium_is_installed() {
    if [ ! -x "$CHROMIUM" ]; then
        echo "  $CHROMIUM is missing: this test loads the board in a real browser; install it with" >&2
        echo "  scripts/setup.sh (Debian packages chromium and chromium-driver), or set CHROMIUM=path" >&2
        test_failed=1
    fi
}

t_train_three_runs() {
    local cfg lr
    cfg=$(small_config board "log: {every_steps: 25}")
    for lr in 0.01 0.003 0.001; do
        k train "$cfg" --runs-dir "$RUNS" --name "lr$lr" --quiet --set train.epochs=1 \
            --set "optimizer.adam.learning_rate=$lr" --set train.validate_every_steps=100 \
            --set 'train.export={every_epochs: 1}'
        check "train lr=$lr: exit 0" [ $rc = 0 ]
    done
    check "three run folders" [ "$(ls -d "$RUNS"/small/*/ 2>/dev/null | wc -l)" = 3 ]
}

t_board_api() {
    start_board || { test_failed=1; return; }
    check "prints its URL on 127.0.0.1" grep -q "3 runs in .* on http://127.0.0.1:[0-9]*/" "$TMP/board.log"
    get /api/runs
    check "runs: 200" [ "$code" = 200 ]
    check "runs: three of them" body_has '"count":3'
    check "runs: the learning rate is a shown param" body_has '"optimizer.adam.learning_rate":"0.003"'
    check "runs: finished" body_has '"status":"finished"'
    local key
    key=$(grep -o '"key":"small/lr0.01-[^"]*"' "$TMP/body" | head -1 | sed 's/"key":"//; s/"$//')
    get "/api/runs/$key/metrics"
    check "metrics: 200" [ "$code" = 200 ]
    check "metrics: running training loss" body_has '{"name":"batch_loss","split":"train","step":[25,50,'
    check "metrics: the epoch's training loss, once" body_has '{"name":"loss","split":"train","step":[422],'
    check "metrics: validation points" body_has '"split":"validation"'
    get "/api/runs/$key"
    check "details: the checkpoint latest names" body_has '"latest_checkpoint":"step-422"'
    check "details: export version 1" body_has '"exports":[{"version":1,'
    check "details: the config" body_has 'learning_rate: 0.01'
    get "/api/runs/small/..%2F..%2F..%2Fetc/metrics"
    check "an escape attempt: 400" [ "$code" = 400 ]
    get /
    check "the page: 200" [ "$code" = 200 ]
    check "the page: kiln board" body_has '<title>kiln board</title>'
    stop_board
    check "SIGTERM: stopped" grep -q "stopped" "$TMP/board.log"
}

t_board_in_chromium() {
    [ -x "$CHROMIUM" ] || { echo "  (needs chromium)" >&2; test_failed=1; return; }
    start_board || { test_failed=1; return; }
    browser --dump-dom "$URL" >"$TMP/dom.html"
    check "chromium dumped the page" grep -q '<title>kiln board</title>' "$TMP/dom.html"
    local keys key
    keys=$(cd "$RUNS" && ls -d small/*)
    check "three rows in the runs table" [ "$(grep -o '<tr data-run="small/[^"]*"' "$TMP/dom.html" | sort -u | wc -l)" = 3 ]
    for key in $keys; do
        check "$key: a row" grep -qF "<tr data-run=\"$key\"" "$TMP/dom.html"
        check "$key: a drawn running-loss curve" grep -qE "<path class=\"line\" data-run=\"$key\" data-metric=\"batch_loss\" data-split=\"train\" d=\"M[0-9.]+,[0-9.]+L" "$TMP/dom.html"
        check "$key: a drawn validation accuracy curve" grep -qE "<path class=\"line\" data-run=\"$key\" data-metric=\"accuracy\" data-split=\"validation\" d=\"M[0-9.]+,[0-9.]+L" "$TMP/dom.html"
    done
    check "one chart per metric" [ "$(grep -o '<div class="chart" data-metric="[^"]*"' "$TMP/dom.html" | sort -u | wc -l)" -ge 3 ]
    check "a legend names each run" [ "$(grep -o '<span class="item" title="small/[^"]*"' "$TMP/dom.html" | wc -l)" = 3 ]
    mkdir -p "$OUT_DIR"
    rm -f "$OUT_DIR/board.png"
    browser --screenshot="$OUT_DIR/board.png" "$URL" >/dev/null
    check "a screenshot" [ -s "$OUT_DIR/board.png" ]
    check "the screenshot is a PNG" bash -c "head -c 8 '$OUT_DIR/board.png' | od -An -tx1 | grep -q '89 50 4e 47'"
    echo "  screenshot: $OUT_DIR/board.png"
    # the comparison tab, from the URL: the parallel coordinates draw a line per run
    browser --dump-dom "${URL}#tab=compare" >"$TMP/compare.html"
    check "compare: a params table naming the differing learning rate" grep -q '<td>optimizer.adam.learning_rate</td>' "$TMP/compare.html"
    check "compare: parallel coordinates, one line per run" [ "$(grep -o '<path class="pc-line" data-run="small/[^"]*"' "$TMP/compare.html" | wc -l)" = 3 ]
    stop_board
}

# WebDriver (chromedriver) over HTTP with curl: wd METHOD PATH [JSON]
wd() { curl -s -m 60 -X "$1" "$WD$2" -H 'Content-Type: application/json' ${3:+-d "$3"}; }
# Runs JavaScript in the page (no double quotes in it) and prints the value it returns.
js() { wd POST "/session/$SESSION/execute/sync" "{\"script\": \"$1\", \"args\": []}" | sed -n 's/^{"value":"\{0,1\}\([^"]*\)"\{0,1\}}$/\1/p'; }

# Starts chromedriver on a free port and opens a headless Chromium session; sets $WD, $SESSION.
start_browser() {
    local port i
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 30000))
        "$DRIVER" --port="$port" >"$TMP/driver.log" 2>&1 &
        DRIVER_PID=$!
        WD=http://127.0.0.1:$port
        for i in $(seq 50); do
            curl -s "$WD/status" 2>/dev/null | grep -q '"ready":true' && break
            kill -0 "$DRIVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        curl -s "$WD/status" 2>/dev/null | grep -q '"ready":true' && break
        stop_driver
    done
    [ -n "$DRIVER_PID" ] || { echo "  chromedriver did not start:" >&2; sed 's/^/    | /' "$TMP/driver.log" >&2; return 1; }
    SESSION=$(wd POST /session "{\"capabilities\": {\"alwaysMatch\": {\"goog:chromeOptions\": {\"binary\": \"$CHROMIUM\",
        \"args\": [\"--headless\", \"--no-sandbox\", \"--disable-gpu\", \"--user-data-dir=$TMP/chromium-wd\", \"--window-size=1400,1000\"]}}}}" |
        grep -o '"sessionId":"[^"]*"' | cut -d'"' -f4)
    [ -n "$SESSION" ] || { echo "  no WebDriver session" >&2; return 1; }
}

# Waits up to $1 seconds for the JavaScript $2 to return something other than $3; prints it.
js_until_not() {
    local v
    for _ in $(seq $(($1 * 4))); do
        v=$(js "$2")
        [ -n "$v" ] && [ "$v" != "$3" ] && { echo "$v"; return 0; }
        sleep 0.25
    done
    echo "$v"
    return 1
}

t_board_follows_a_live_run() {
    [ -x "$DRIVER" ] || {
        echo "  $DRIVER is missing: install chromium-driver (scripts/setup.sh), or set CHROMEDRIVER=path" >&2
        test_failed=1
        return
    }
    local cfg live=$TMP/live-runs n1 n2 status
    cfg=$(small_config live "log: {every_steps: 10}")
    OMP_NUM_THREADS=1 "$KILN" train "$cfg" --runs-dir "$live" --quiet --set train.epochs=100 >"$TMP/train.log" 2>&1 &
    TRAIN_PID=$!
    for _ in $(seq 300); do
        [ "$(cat "$live"/small/*/metrics.jsonl 2>/dev/null | wc -l)" -ge 6 ] && break
        sleep 0.1
    done
    RUNS=$live start_board || { test_failed=1; return; }
    start_browser || { test_failed=1; return; }
    wd POST "/session/$SESSION/url" "{\"url\": \"$URL\"}" >/dev/null
    local points="const p = document.querySelector('path.line[data-metric=batch_loss][data-split=train]'); return p ? p.getAttribute('d').split('L').length : 0;"
    n1=$(js_until_not 20 "$points" 0)
    check "the live run's running-loss curve is drawn ($n1 points)" [ "${n1:-0}" -gt 1 ] 2>/dev/null
    status="return document.querySelector('#runs tbody tr .status').textContent;"
    check "the table says it is running" [ "$(js "$status")" = running ]
    n2=$(js_until_not 20 "$points" "$n1")
    check "the curve grows while it trains ($n1 -> $n2 points)" [ "${n2:-0}" -gt "${n1:-0}" ] 2>/dev/null
    stop_train
    local final
    final=$(js_until_not 30 "$status" running)
    check "the table says stopped once training stops (it says: ${final:-nothing}; run.json: $(grep -o '"status":[^,]*' "$live"/small/*/run.json))" [ "$final" = stopped ]
    stop_driver
    stop_board
}

t_board_errors() {
    k board --runs-dir "$TMP/nowhere"
    check "no runs folder: exit 2" [ $rc = 2 ] && check "says which" has "no runs folder $TMP/nowhere"
    k board --port 99999
    check "bad port: exit 2" [ $rc = 2 ] && check "names the range" has "[0, 65535]"
    k board --bogus
    check "unknown option: exit 2" [ $rc = 2 ] && check "names it" has "--bogus"
    k board extra
    check "extra argument: exit 2" [ $rc = 2 ]
    k board --help
    check "--help: exit 0" [ $rc = 0 ] && check "--help lists --runs-dir" has "--runs-dir D"
    k help
    check "kiln help lists board" has "board [--runs-dir D]"
    start_board || { test_failed=1; return; }
    local port=${URL##*:}
    port=${port%/}
    k board --runs-dir "$RUNS" --port "$port"
    check "a port in use: exit 1" [ $rc = 1 ]
    stop_board
}

# kiln tune's studies: a small study (4 trials, ASHA by steps), then /api/studies and the page's
# Studies tab: the study list, the trials table (one row per trial, with its state), the
# best-so-far curve (a line and a dot per trial with a value) and parallel coordinates (a line
# per trial with a value).
t_board_studies() {
    local RUNS=$TMP/tune-runs cfg
    cfg=$(small_config bt "  max_steps: 90" "  validate_every_steps: 30" "log: {tensorboard: false}" \
        "tune:" "  objective: {metric: val_accuracy, mode: max}" "  trials: 4" \
        "  sampler: {tpe: {startup_trials: 2}}" \
        "  pruner: {asha: {min_resource: 30, reduction_factor: 2, resource: step}}" \
        "  space:" "    optimizer.adam.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}" \
        "    data.batch_size: {choice: [32, 128]}")
    k tune "$cfg" --study bs --runs-dir "$RUNS" --threads 2 --quiet
    check "kiln tune: exit 0" [ $rc = 0 ]
    start_board || { test_failed=1; return; }
    get /api/studies
    check "studies: 200" [ "$code" = 200 ]
    check "studies: the study, its 4 trials" body_has '{"name":"bs","experiment":"small","metric":"val_accuracy","direction":"maximize"'
    check "studies: trial count" body_has '"trials":4,'
    local pruned
    pruned=$(grep -o '"pruned":[0-9]*' "$TMP/body" | head -1 | cut -d: -f2)
    get /api/studies/bs
    check "study: 200" [ "$code" = 200 ]
    check "study: trial 0 with its params" body_has '{"number":0,"state":"'
    check "study: the sampled learning rate" body_has '"params":{"optimizer.adam.learning_rate":'
    check "study: the trials' runs" body_has '"run":"small/bs-t000-'
    get /api/studies/nope
    check "an unknown study: 404" [ "$code" = 404 ]
    if [ -x "$CHROMIUM" ]; then
        browser --dump-dom "${URL}#tab=studies&study=bs" >"$TMP/studies.html"
        check "page: the study listed" grep -q '<tr data-study="bs" class="current">' "$TMP/studies.html"
        check "page: a row per trial" [ "$(grep -o '<tr data-trial="[0-9]*" data-state="[a-z]*"' "$TMP/studies.html" | wc -l)" = 4 ]
        check "page: pruned trials shown as pruned ($pruned)" [ "$(grep -o '<tr data-trial="[0-9]*" data-state="pruned"' "$TMP/studies.html" | wc -l)" = "$pruned" ]
        check "page: the best-so-far curve" grep -qE '<path class="best-line" d="M[0-9.]+,[0-9.]+' "$TMP/studies.html"
        check "page: a dot per trial" [ "$(grep -o '<circle class="trial-dot [a-z]*" data-trial=' "$TMP/studies.html" | wc -l)" = 4 ]
        check "page: parallel coordinates, a line per trial" [ "$(grep -o '<path class="pc-line [a-z]*" data-trial="[0-9]*"' "$TMP/studies.html" | wc -l)" = 4 ]
        mkdir -p "$OUT_DIR"
        browser --screenshot="$OUT_DIR/board-studies.png" "${URL}#tab=studies&study=bs" >/dev/null
        check "a screenshot of the study" [ -s "$OUT_DIR/board-studies.png" ]
    else
        echo "  (needs chromium)" >&2
        test_failed=1
    fi
    stop_board
}

run_test t_chromium_is_installed
run_test t_board_studies
run_test t_train_three_runs
run_test t_board_api
run_test t_board_in_chromium
run_test t_board_follows_a_live_run
# A small MLP on generated NPY data, trained in two stages: stage 1 with dense_1 frozen.
t_board_stages() {
    local runs=$TMP/stage-runs key
    /usr/bin/python3 -c "
import numpy as np
r = np.random.default_rng(0)
y = r.integers(0, 3, size=96).astype(np.int64)
x = (r.normal(size=(96, 6)) + y[:, None]).astype(np.float32)
np.save('$TMP/sx.npy', x); np.save('$TMP/sy.npy', y)" || { test_failed=1; return; }
    cat >"$TMP/staged.yaml" <<YAML
experiment: staged
seed: 2
data: {source: npy, train: {x: $TMP/sx.npy, y: $TMP/sy.npy}, validation_split: 0.25, batch_size: 24}
model:
  input: [6]
  layers:
    - dense: {name: dense_1, units: 8, activation: relu}
    - dense: {name: head, units: 3}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01}}
train: {epochs: 1}
log: {tensorboard: false, every_steps: 1}
stages:
  - freeze: [dense_1]
  - freeze: []
YAML
    k train "$TMP/staged.yaml" --runs-dir "$runs" --quiet
    check "staged run: exit 0" [ $rc = 0 ] || { sed 's/^/    | /' "$TMP/out" >&2; return; }
    key=$(cd "$runs" && ls -d staged/* | head -1)
    RUNS=$runs start_board || { test_failed=1; return; }
    get "/api/runs/$key"
    check "details: 200" [ "$code" = 200 ]
    check "details: the model summary" body_has '"summary":"stage 1/2\nLayer'
    check "details: the summary's totals" body_has 'Frozen params: 56\n'
    check "details: the current stage" body_has '"stage":2,"stages":[{"stage":1,"first_step":1,'
    get "/api/runs/$key/metrics"
    check "metrics: each point's stage" grep -qE '"name":"batch_loss","split":"train","step":\[1,2,3,4,5,6\],.*"stage":\[1,1,1,2,2,2\]' "$TMP/body"
    if [ -x "$CHROMIUM" ]; then
        browser --dump-dom "${URL}#tab=details&run=$key" >"$TMP/details.html"
        check "page: the summary is shown" grep -qE '<pre class="summary">stage 1/2' "$TMP/details.html"
        check "page: a frozen layer in it" grep -qE '^dense_1 +dense +\(None, 8\) +56 +frozen' "$TMP/details.html"
        check "page: both stages listed" [ "$(grep -o '<tr data-stage="[12]"' "$TMP/details.html" | wc -l)" = 2 ]
        check "page: the current stage" grep -qF '<p class="stage-now">last: <b>stage 2 of 2</b></p>' "$TMP/details.html"
        browser --dump-dom "$URL" >"$TMP/curves.html"
        check "page: the curves mark where stage 2 starts" grep -qF "<line class=\"stage-line\" data-run=\"$key\" data-stage=\"2\"" "$TMP/curves.html"
    else
        echo "  (needs chromium)" >&2
        test_failed=1
    fi
    stop_board
}

run_test t_board_stages
run_test t_board_errors
finish

#!/usr/bin/env bash
# mlflow_api.sh — kiln board's MLflow REST API, from MLflow's REST API docs (docs/tracking.md):
# request and response JSON of each endpoint (experiments, runs, logging, metric history,
# search with MLflow's filter syntax, order_by and pages, model registry, aliases), the error
# JSON {"error_code", "message"} with its HTTP status (RESOURCE_DOES_NOT_EXIST 404,
# INVALID_PARAMETER_VALUE and RESOURCE_ALREADY_EXISTS 400, UNAUTHENTICATED 401), the bearer
# token; kiln's own runs seen through the API; runs logged through it seen by `kiln runs`; an
# independent client (the npm package mlflow, tests/oracles) logging and reading back a run;
# and kiln as an MLflow client: `kiln runs sync --to mlflow+http://...` and `kiln train` with
# KILN_REGISTRY=mlflow+http://... against a second board. Seconds, not minutes.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1 NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
ORACLES=$(cd "$(dirname "$0")/../oracles" && pwd)
RUNS=$TMP/runs
mkdir -p "$RUNS"
BOARD_PID="" BOARD2_PID=""
stop_boards() {
    for p in $BOARD_PID $BOARD2_PID; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    BOARD_PID="" BOARD2_PID=""
}
trap 'stop_boards; rm -rf "$TMP"' EXIT

# start_board DIR LOG [args]: starts kiln board on a free port; its URL into $SURL, pid $LAST_PID.
start_board() {
    local dir=$1 log=$2
    shift 2
    "$KILN" board --runs-dir "$dir" --port 0 "$@" >"$log" 2>&1 &
    LAST_PID=$!
    for _ in $(seq 100); do
        SURL=$(sed -n 's/.* on \(http:\/\/[^ ]*\)\/ .*/\1/p' "$log")
        [ -n "$SURL" ] && return 0
        sleep 0.1
    done
    sed 's/^/    | /' "$log" >&2
    return 1
}

# api METHOD PATH [BODY]: status into $code, body into $TMP/body (URL is the board's).
api() {
    local m=$1 p=$2
    shift 2
    if [ $# -gt 0 ]; then
        code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$m" -H 'Content-Type: application/json' \
            ${AUTH:+-H "Authorization: Bearer $AUTH"} --data-binary "$1" "$URL/api/2.0/mlflow/$p")
    else
        code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$m" \
            ${AUTH:+-H "Authorization: Bearer $AUTH"} "$URL/api/2.0/mlflow/$p")
    fi
}
j() { jq -r "$@" "$TMP/body"; }                     # j FILTER: a field of the last answer
is() { [ "$1" = "$2" ] || { echo "  got '$1', expected '$2'" >&2; head -c 600 "$TMP/body" | sed 's/^/    | /' >&2; echo >&2; return 1; }; }
err_is() { # err_is STATUS CODE: the answer is MLflow's error JSON
    is "$code" "$1" && is "$(j .error_code)" "$2" && [ -n "$(j .message)" ]
}

start_board "$RUNS" "$TMP/board.log" || { echo "board did not start"; exit 1; }
BOARD_PID=$LAST_PID URL=$SURL

t_experiments() {
    api POST experiments/create '{"name":"vision exp","tags":[{"key":"team","value":"cv"}]}'
    check "create: 200" is "$code" 200
    EXP=$(j .experiment_id)
    check "create: an id" [ -n "$EXP" ]
    api POST experiments/create '{"name":"vision exp"}'
    check "twice: RESOURCE_ALREADY_EXISTS" err_is 400 RESOURCE_ALREADY_EXISTS
    api POST experiments/create '{}'
    check "no name: INVALID_PARAMETER_VALUE" err_is 400 INVALID_PARAMETER_VALUE
    api GET "experiments/get?experiment_id=$EXP"
    check "get: 200" is "$code" 200
    check "get: name" is "$(j .experiment.name)" "vision exp"
    check "get: id" is "$(j .experiment.experiment_id)" "$EXP"
    check "get: lifecycle" is "$(j .experiment.lifecycle_stage)" active
    check "get: tags" is "$(j '.experiment.tags[0].key + "=" + .experiment.tags[0].value')" "team=cv"
    check "get: creation_time ms" [ "$(j .experiment.creation_time)" -gt 1600000000000 ]
    api GET "experiments/get-by-name?experiment_name=vision%20exp"
    check "get-by-name" is "$(j .experiment.experiment_id)" "$EXP"
    api GET "experiments/get-by-name?experiment_name=nope"
    check "unknown name: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api GET "experiments/get?experiment_id=123456"
    check "unknown id: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api POST experiments/search '{"max_results":100}'
    check "search: 200" is "$code" 200
    check "search: lists it" is "$(j '[.experiments[].name] | index("vision exp") != null')" true
    check "search: and Default (id 0)" is "$(j '[.experiments[] | select(.experiment_id == "0")] | length')" 1
    api POST experiments/search '{"filter":"name = '"'"'vision exp'"'"'"}'
    check "search: filter by name" is "$(j '.experiments | length')" 1
}

t_runs_and_logging() {
    api POST runs/create "{\"experiment_id\":\"$EXP\",\"run_name\":\"first\",\"start_time\":1700000000123,\"user_id\":\"ana\",\"tags\":[{\"key\":\"stage\",\"value\":\"dev\"}]}"
    check "create: 200" is "$code" 200
    RUN=$(j .run.info.run_id)
    check "create: run_id and run_uuid agree" is "$(j .run.info.run_uuid)" "$RUN"
    check "create: RUNNING" is "$(j .run.info.status)" RUNNING
    check "create: start_time kept to the ms" is "$(j .run.info.start_time)" 1700000000123
    check "create: experiment" is "$(j .run.info.experiment_id)" "$EXP"
    check "create: run_name" is "$(j .run.info.run_name)" first
    check "create: user" is "$(j .run.info.user_id)" ana
    check "create: tag" is "$(j '.run.data.tags[] | select(.key=="stage") | .value')" dev
    api POST runs/log-metric "{\"run_id\":\"$RUN\",\"key\":\"loss\",\"value\":0.5,\"timestamp\":1700000001000,\"step\":1}"
    check "log-metric: 200 {}" is "$code/$(cat "$TMP/body")" "200/{}"
    api POST runs/log-parameter "{\"run_id\":\"$RUN\",\"key\":\"lr\",\"value\":\"0.01\"}"
    check "log-parameter: 200" is "$code" 200
    api POST runs/log-batch "{\"run_id\":\"$RUN\",\"metrics\":[{\"key\":\"loss\",\"value\":0.25,\"timestamp\":1700000002000,\"step\":2},{\"key\":\"val_accuracy\",\"value\":0.875,\"timestamp\":1700000002500,\"step\":2}],\"params\":[{\"key\":\"optimizer\",\"value\":\"adam \\\"beta\\\"\"},{\"key\":\"lr\",\"value\":\"0.01\"}],\"tags\":[{\"key\":\"note\",\"value\":\"a\\nb\"}]}"
    check "log-batch: 200" is "$code" 200
    api POST runs/log-parameter "{\"run_id\":\"$RUN\",\"key\":\"lr\",\"value\":\"0.02\"}"
    check "changing a param: INVALID_PARAMETER_VALUE" err_is 400 INVALID_PARAMETER_VALUE
    api POST runs/set-tag "{\"run_id\":\"$RUN\",\"key\":\"gone\",\"value\":\"x\"}"
    check "set-tag: 200" is "$code" 200
    api POST runs/delete-tag "{\"run_id\":\"$RUN\",\"key\":\"gone\"}"
    check "delete-tag: 200" is "$code" 200
    api POST runs/delete-tag "{\"run_id\":\"$RUN\",\"key\":\"gone\"}"
    check "delete-tag again: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api POST runs/log-metric "{\"run_id\":\"$RUN\",\"key\":\"loss\",\"value\":\"abc\",\"timestamp\":1}"
    check "bad metric value: 400" err_is 400 INVALID_PARAMETER_VALUE
    api GET "runs/get?run_id=$RUN"
    check "get: 200" is "$code" 200
    check "get: latest loss" is "$(j '.run.data.metrics[] | select(.key=="loss") | "\(.value) \(.step) \(.timestamp)"')" "0.25 2 1700000002000"
    check "get: val_accuracy" is "$(j '.run.data.metrics[] | select(.key=="val_accuracy") | .value')" 0.875
    check "get: params" is "$(j '[.run.data.params[] | "\(.key)=\(.value)"] | join(",")')" 'lr=0.01,optimizer=adam "beta"'
    check "get: multi-line tag" is "$(j '.run.data.tags[] | select(.key=="note") | .value')" $'a\nb'
    check "get: deleted tag gone" is "$(j '[.run.data.tags[] | select(.key=="gone")] | length')" 0
    check "get: runName tag" is "$(j '.run.data.tags[] | select(.key=="mlflow.runName") | .value')" first
    api GET "metrics/get-history?run_id=$RUN&metric_key=loss"
    check "history: 200" is "$code" 200
    check "history: both points" is "$(j '[.metrics[] | "\(.step):\(.value):\(.timestamp)"] | join(",")')" "1:0.5:1700000001000,2:0.25:1700000002000"
    api GET "metrics/get-history?run_id=$RUN&metric_key=loss&max_results=1"
    check "history pages: one" is "$(j '.metrics | length')" 1
    api GET "metrics/get-history?run_id=$RUN&metric_key=loss&max_results=1&page_token=$(j .next_page_token)"
    check "history pages: the next" is "$(j '.metrics[0].step')" 2
    api POST runs/update "{\"run_id\":\"$RUN\",\"status\":\"FINISHED\",\"end_time\":1700000009000}"
    check "update: 200" is "$code" 200
    check "update: run_info" is "$(j '.run_info.status + " " + (.run_info.end_time|tostring)')" "FINISHED 1700000009000"
    api POST runs/update "{\"run_id\":\"$RUN\",\"status\":\"DONE\"}"
    check "bad status: 400" err_is 400 INVALID_PARAMETER_VALUE
    # what kiln makes of it: an ordinary run folder, in kiln runs and the board
    k runs list --runs-dir "$RUNS" --filter "params.lr = '0.01'" --metrics loss,val_accuracy
    check "kiln runs list: exit 0" [ $rc = 0 ]
    check "kiln runs list: the run" grep -Eq '^first-[0-9-]+ +vision exp +finished .*0\.2500 +0\.8750' "$TMP/out"
    local dir
    dir=$(ls -d "$RUNS"/vision_exp/first-*)
    check "metrics.jsonl: validation split" grep -q '"split":"validation","name":"accuracy"' "$dir/metrics.jsonl"
    check "metrics.jsonl: the MLflow timestamp as wall_time" grep -q '"wall_time":1700000002.500000' "$dir/metrics.jsonl"
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' "$URL/api/runs")
    check "board: /api/runs lists it" grep -q 'vision_exp/first-' "$TMP/body"
}

t_errors() {
    api GET "runs/get?run_id=00ff"
    check "unknown run: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api GET "runs/get?run_id=zz"
    check "not an id: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api GET "runs/get"
    check "no run_id: 400" err_is 400 INVALID_PARAMETER_VALUE
    api POST runs/create '{"experiment_id":"99999999"}'
    check "run in unknown experiment: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api POST runs/log-batch 'not json'
    check "malformed body: 400" is "$code" 400
    api GET "nothing/here"
    check "unknown endpoint: 404" err_is 404 ENDPOINT_NOT_FOUND
    api POST "runs/get" '{}'
    check "wrong method: 404" err_is 404 ENDPOINT_NOT_FOUND
    local batch
    batch=$(jq -cn --arg r "$RUN" '{run_id:$r, params:[range(101) | {key:"p\(.)", value:"1"}]}')
    api POST runs/log-batch "$batch"
    check "101 params in a batch: 400" err_is 400 INVALID_PARAMETER_VALUE
}

t_search() {
    local i=0 ids=()
    for spec in "a 0.9 adam vision FINISHED" "b 0.6 sgd vision-2 FINISHED" "c 0.3 adam nlp KILLED"; do
        set -- $spec
        api POST runs/create "{\"experiment_id\":\"$EXP\",\"run_name\":\"s-$1\",\"start_time\":170000010000$i}"
        local r
        r=$(j .run.info.run_id)
        ids+=("$r")
        api POST runs/log-batch "{\"run_id\":\"$r\",\"metrics\":[{\"key\":\"acc\",\"value\":$2,\"timestamp\":1,\"step\":0}],\"params\":[{\"key\":\"opt\",\"value\":\"$3\"}],\"tags\":[{\"key\":\"team\",\"value\":\"$4\"}]}"
        api POST runs/update "{\"run_id\":\"$r\",\"status\":\"$5\"}"
        i=$((i + 1))
    done
    search() { # search FILTER [ORDER]: the run names found, in order
        local body
        body=$(jq -cn --arg e "$EXP" --arg f "$1" --arg o "${2:-}" \
            '{experiment_ids:[$e], filter:$f} + (if $o == "" then {} else {order_by:[$o]} end)')
        api POST runs/search "$body"
        j '[.runs[]?.info.run_name] | join(",")'
    }
    check "metrics >" is "$(search 'metrics.acc > 0.5' 'metrics.acc ASC')" "s-b,s-a"
    check "params =" is "$(search "params.opt = 'adam'" 'metrics.acc DESC')" "s-a,s-c"
    check "params !=" is "$(search "params.opt != 'adam'")" "s-b"
    check "tags LIKE" is "$(search "tags.team LIKE 'vision%'" 'metrics.acc DESC')" "s-a,s-b"
    check "tags ILIKE" is "$(search "tags.team ILIKE 'VISION-_'")" "s-b"
    check "attributes.status" is "$(search "attributes.status = 'KILLED'")" "s-c"
    check "AND" is "$(search "params.opt = 'adam' AND metrics.acc >= 0.9")" "s-a"
    check "quoted key" is "$(search 'metrics.`acc` <= 0.3')" "s-c"
    check "IN" is "$(search "attributes.run_name IN ('s-a', 's-c')" 'attributes.run_name DESC')" "s-c,s-a"
    check "missing metric is false" is "$(search 'metrics.nope > 0')" ""
    check "order by param, then start_time desc" is "$(search "params.opt LIKE '%'" 'params.opt DESC')" "s-b,s-c,s-a"
    search 'metrics.acc > 0.5 OR metrics.acc < 0.1' >/dev/null
    check "OR: INVALID_PARAMETER_VALUE" err_is 400 INVALID_PARAMETER_VALUE
    search "metrics.acc > 'x'" >/dev/null
    check "string for a metric: 400" err_is 400 INVALID_PARAMETER_VALUE
    search "params.opt < 'x'" >/dev/null
    check "< on a param: 400" err_is 400 INVALID_PARAMETER_VALUE
    search "foo.bar = 'x'" >/dev/null
    check "unknown attribute: 400" err_is 400 INVALID_PARAMETER_VALUE
    # pages of one
    local names="" tok=""
    for _ in 1 2 3 4 5; do
        api POST runs/search "$(jq -cn --arg e "$EXP" --arg t "$tok" '{experiment_ids:[$e], filter:"attributes.run_name LIKE '"'s-%'"'", max_results:1, order_by:["metrics.acc DESC"]} + (if $t == "" then {} else {page_token:$t} end)')"
        names="$names$(j '.runs[0].info.run_name'),"
        tok=$(j '.next_page_token // ""')
        [ -z "$tok" ] && break
    done
    check "pages: all three in order, then no token" is "$names" "s-a,s-b,s-c,"
    api POST runs/search "{\"experiment_ids\":[\"$EXP\"],\"page_token\":\"bogus\"}"
    check "bad page token: 400" err_is 400 INVALID_PARAMETER_VALUE
    # deleting is MLflow's soft delete
    api POST runs/delete "{\"run_id\":\"${ids[2]}\"}"
    check "delete: 200" is "$code" 200
    check "deleted: not in ACTIVE_ONLY" is "$(search "attributes.run_name LIKE 's-%'" 'metrics.acc DESC')" "s-a,s-b"
    api POST runs/search "{\"experiment_ids\":[\"$EXP\"],\"run_view_type\":\"DELETED_ONLY\"}"
    check "deleted: in DELETED_ONLY" is "$(j '[.runs[].info | .run_name + ":" + .lifecycle_stage] | join(",")')" "s-c:deleted"
    api POST runs/log-metric "{\"run_id\":\"${ids[2]}\",\"key\":\"x\",\"value\":1,\"timestamp\":1}"
    check "logging to a deleted run: 400" err_is 400 INVALID_PARAMETER_VALUE
    api POST runs/restore "{\"run_id\":\"${ids[2]}\"}"
    check "restored" is "$(search "attributes.run_name = 's-c'")" "s-c"
}

t_kiln_runs_through_the_api() {
    awk 'BEGIN { srand(3); print "a,b,label"; for (i = 0; i < 200; i++) { a = rand(); b = rand()
         printf "%.4f,%.4f,%s\n", a, b, (a + b > 1 ? "hi" : "lo") } }' >"$TMP/d.csv"
    cat >"$TMP/tiny.yaml" <<YAML
experiment: tiny
seed: 1
data: {source: csv, label: label, train: {path: $TMP/d.csv}, validation_split: 0.2, batch_size: 16}
model: {input: [2], layers: [{dense: {units: 4, activation: relu}}, {dense: {units: 2}}]}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01}}
train: {epochs: 2, checkpoint: {every_steps: 10, keep: 1}}
log: {every_steps: 5}
YAML
    k train "$TMP/tiny.yaml" --runs-dir "$RUNS" --name own --quiet
    check "kiln train: exit 0" [ $rc = 0 ]
    api GET "experiments/get-by-name?experiment_name=tiny"
    check "kiln's experiment is an MLflow experiment" is "$code" 200
    local e
    e=$(j .experiment.experiment_id)
    api POST runs/search "{\"experiment_ids\":[\"$e\"],\"filter\":\"params.\`optimizer.adam.learning_rate\` = '0.01' AND metrics.val_accuracy >= 0\"}"
    check "kiln's run found by its config params" is "$(j '.runs | length')" 1
    check "status" is "$(j '.runs[0].info.status')" FINISHED
    check "its train and validation metrics" is "$(j '[.runs[0].data.metrics[].key] | map(select(. == "loss" or . == "val_accuracy")) | sort | join(",")')" "loss,val_accuracy"
    OWN_RUN=$(j '.runs[0].info.run_id')
    api GET "metrics/get-history?run_id=$OWN_RUN&metric_key=val_loss"
    check "history of kiln's val_loss: one point per epoch" is "$(j '.metrics | length')" 2
}

t_models() {
    api POST registered-models/create '{"name":"clf","description":"a classifier","tags":[{"key":"k","value":"v"}]}'
    check "create: 200" is "$code" 200
    check "create: registered_model" is "$(j '.registered_model | .name + "|" + .description')" "clf|a classifier"
    api POST registered-models/create '{"name":"clf"}'
    check "twice: RESOURCE_ALREADY_EXISTS" err_is 400 RESOURCE_ALREADY_EXISTS
    api GET "registered-models/get?name=nope"
    check "unknown: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api POST model-versions/create "{\"name\":\"clf\",\"source\":\"s3://bucket/model\",\"run_id\":\"$RUN\"}"
    check "version 1 (an external source)" is "$code $(j .model_version.version) $(j .model_version.status)" "200 1 READY"
    check "its source and run" is "$(j '.model_version.source + " " + .model_version.run_id')" "s3://bucket/model $RUN"
    api POST model-versions/create "{\"name\":\"clf\",\"run_id\":\"$OWN_RUN\"}"
    check "version 2 (kiln's run: exported)" is "$code $(j .model_version.version)" "200 2"
    check "its folder" [ -f "$RUNS/models/clf/2/model.json" ]
    api POST model-versions/create '{"name":"nope","source":"x"}'
    check "version of an unknown model: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api GET "model-versions/get?name=clf&version=1"
    check "get version" is "$(j .model_version.source)" "s3://bucket/model"
    api GET "model-versions/get?name=clf&version=9"
    check "unknown version: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api GET "registered-models/get?name=clf"
    check "latest_versions" is "$(j '.registered_model.latest_versions[0].version')" 2
    api POST registered-models/get-latest-versions '{"name":"clf","stages":["None"]}'
    check "get-latest-versions" is "$(j '[.model_versions[].version] | join(",")')" 2
    api GET "registered-models/get-latest-versions?name=clf&stages=Production"
    check "get-latest-versions: no Production stage" is "$(j '.model_versions | length')" 0
    api GET "registered-models/search?filter=name%20LIKE%20%27cl%25%27"
    check "search models" is "$(j '[.registered_models[].name] | join(",")')" clf
    api GET "model-versions/search?filter=name%3D%27clf%27"
    check "search versions" is "$(j '[.model_versions[].version] | join(",")')" "1,2"
    api POST registered-models/alias '{"name":"clf","alias":"prod","version":"2"}'
    check "alias set: 200" is "$code" 200
    k models list --runs-dir "$RUNS"
    check "kiln models sees the alias" grep -Eq 'clf +2 .*prod' "$TMP/out"
    api POST registered-models/alias '{"name":"clf","alias":"staging","version":"1"}'
    api GET "registered-models/alias?name=clf&alias=prod"
    check "alias get" is "$(j .model_version.version)" 2
    api GET "registered-models/get?name=clf"
    check "aliases of the model" is "$(j '[.registered_model.aliases[] | "\(.alias)=\(.version)"] | sort | join(",")')" "prod=2,staging=1"
    api DELETE "registered-models/alias?name=clf&alias=prod"
    check "alias delete: 200" is "$code" 200
    api GET "registered-models/alias?name=clf&alias=prod"
    check "deleted alias: 404" err_is 404 RESOURCE_DOES_NOT_EXIST
    api DELETE registered-models/alias '{"name":"clf","alias":"staging"}'
    check "alias delete (JSON body): 200" is "$code" 200
}

t_token() {
    local dir=$TMP/auth
    mkdir -p "$dir"
    start_board "$dir" "$TMP/board2.log" --token s3cret || { check "board with --token starts" false; return; }
    BOARD2_PID=$LAST_PID
    local u=$SURL
    local save=$URL
    URL=$u
    api POST experiments/search '{}'
    check "no token: 401" err_is 401 UNAUTHENTICATED
    AUTH=s3cret api POST experiments/search '{}'
    check "empty runs folder: experiment 0 (Default)" is "$(j '[.experiments[] | .experiment_id + "=" + .name] | join(",")')" "0=Default"
    api POST experiments/create '{"name":"x"}'
    check "no token: 401" err_is 401 UNAUTHENTICATED
    AUTH=wrong api POST experiments/create '{"name":"x"}'
    check "wrong token: 401" err_is 401 UNAUTHENTICATED
    AUTH=s3cret api POST experiments/create '{"name":"x"}'
    check "right token: 200" is "$code" 200
    code=$(curl -s -o /dev/null -w '%{http_code}' "$u/api/runs")
    check "the board's own pages stay open" is "$code" 200
    URL=$save
    kill -TERM "$BOARD2_PID" && wait "$BOARD2_PID" 2>/dev/null
    BOARD2_PID=""
}

t_node_mlflow_client() {
    if [ ! -d "$ORACLES/node_modules/mlflow" ]; then
        echo "  $ORACLES/node_modules/mlflow is missing: install it with scripts/setup.sh" >&2
        echo "  (npm install --ignore-scripts in tests/oracles)" >&2
        check "the npm package mlflow is installed" false
        return
    fi
    cat >"$TMP/client.js" <<'JS'
const MLflow = require(process.env.ORACLES + '/node_modules/mlflow');
const {Experiments, Runs, Metrics} = new MLflow({endpoint: process.env.URL});
(async () => {
  const {experiment_id} = await Experiments.create({name: 'node-exp'});
  const {run} = await Runs.create({experiment_id, start_time: 1700000000000,
                                   tags: [{key: 'mlflow.runName', value: 'from-node'}]});
  const run_id = run.info.run_id;
  await Runs.logParameter({run_id, key: 'batch_size', value: '32'});
  await Runs.logBatch({run_id, params: [{key: 'optimizer', value: 'sgd'}],
                       tags: [{key: 'framework', value: 'node'}],
                       metrics: [1, 2, 3].map(s => ({key: 'loss', value: 1 / s,
                                                     timestamp: 1700000000000 + s, step: s}))});
  await Runs.logMetric({run_id, key: 'val_accuracy', value: 0.75, timestamp: 1700000000009, step: 3});
  await Runs.setTag({run_id, key: 'owner', value: 'test'});
  await Runs.update({run_id, status: 'FINISHED', end_time: 1700000000010});
  const back = (await Runs.get({run_id})).run;
  const hist = await Metrics.getHistory({run_id, metric_key: 'loss'});
  const found = await Runs.search({experiment_ids: [experiment_id], filter: "params.optimizer = 'sgd'"});
  const kv = l => Object.fromEntries(l.map(x => [x.key, x.value]));
  process.stderr.write(JSON.stringify({
    status: back.info.status, end_time: back.info.end_time,
    params: kv(back.data.params), tags: kv(back.data.tags), metrics: kv(back.data.metrics),
    history: hist.metrics.map(m => [m.step, m.value, m.timestamp]),
    found: found.runs.map(r => r.info.run_id === run_id)}) + '\n');
})().catch(e => { process.stderr.write('ERROR ' + e + '\n'); process.exit(1); });
JS
    URL=$URL ORACLES=$ORACLES node "$TMP/client.js" >/dev/null 2>"$TMP/node.out"
    check "node client: exit 0" [ $? = 0 ]
    cp "$TMP/node.out" "$TMP/body"
    check "status" is "$(j .status) $(j .end_time)" "FINISHED 1700000000010"
    check "params" is "$(j '.params.batch_size + "," + .params.optimizer')" "32,sgd"
    check "tags" is "$(j '.tags.framework + "," + .tags.owner + "," + .tags["mlflow.runName"]')" "node,test,from-node"
    check "latest metrics" is "$(j '"\(.metrics.loss) \(.metrics.val_accuracy)"')" "0.3333333333333333 0.75"
    check "history" is "$(j -c .history)" '[[1,1,1700000000001],[2,0.5,1700000000002],[3,0.3333333333333333,1700000000003]]'
    check "search finds it" is "$(j -c .found)" '[true]'
    k runs list --runs-dir "$RUNS" --experiment node-exp --metrics loss,val_accuracy
    check "kiln runs list shows it" grep -Eq '^from-node-[0-9-]+ +node-exp +finished .*0\.3333 +0\.7500' "$TMP/out"
}

t_kiln_as_mlflow_client() {
    local remote=$TMP/remote local=$TMP/local
    mkdir -p "$remote" "$local"
    start_board "$remote" "$TMP/board3.log" || { check "second board starts" false; return; }
    BOARD2_PID=$LAST_PID
    local save=$URL
    local R2=$SURL
    # kiln runs sync: the run kiln trained (with its model version) sent to the other server
    k runs sync --to "mlflow+$R2" own --runs-dir "$RUNS"
    check "sync: exit 0" [ $rc = 0 ]
    check "sync: created" has "created, "
    URL=$R2
    api GET "experiments/get-by-name?experiment_name=tiny"
    check "remote: the experiment" is "$code" 200
    local e
    e=$(j .experiment.experiment_id)
    api POST runs/search "{\"experiment_ids\":[\"$e\"]}"
    check "remote: one run" is "$(j '.runs | length')" 1
    check "remote: FINISHED" is "$(j '.runs[0].info.status')" FINISHED
    check "remote: params from config.yaml" is "$(j '.runs[0].data.params[] | select(.key=="optimizer.adam.learning_rate") | .value')" 0.01
    check "remote: kiln.run_id tag" grep -q '"key":"kiln.run_id","value":"tiny/own-' "$TMP/body"
    local rid n_local
    rid=$(j '.runs[0].info.run_id')
    api GET "metrics/get-history?run_id=$rid&metric_key=loss"
    n_local=$(grep -c '"split":"train","name":"loss"' "$RUNS"/tiny/own-*/metrics.jsonl)
    check "remote: every loss point" is "$(j '.metrics | length')" "$n_local"
    check "remote: steps and times as logged" is "$(j -c '[.metrics[0].step, .metrics[0].timestamp]')" \
        "$(grep -m1 '"split":"train","name":"loss"' "$RUNS"/tiny/own-*/metrics.jsonl | jq -c '[.step, (.wall_time * 1000 | round)]')"
    api GET "registered-models/get?name=clf"
    check "remote: the model version registered from the run" is "$(j '.registered_model.latest_versions[0].run_id')" "$rid"
    # again: nothing new to send, nothing sent twice
    k runs sync --to "mlflow+$R2" own --runs-dir "$RUNS"
    check "sync again: exit 0, nothing new" has ": 0 params, 0 metric points, 0 model versions"
    api GET "metrics/get-history?run_id=$rid&metric_key=loss"
    check "sync again: no duplicates" is "$(j '.metrics | length')" "$n_local"
    # kiln train with KILN_REGISTRY=mlflow+http://...: mirrored live
    KILN_REGISTRY="mlflow+$R2" "$KILN" train "$TMP/tiny.yaml" --runs-dir "$local" --name live --quiet >"$TMP/out" 2>&1
    check "live: train exit 0" [ $? = 0 ]
    check "live: no warning" bash -c "! grep -q warning '$TMP/out'"
    api POST runs/search "{\"experiment_ids\":[\"$e\"],\"filter\":\"attributes.run_name = 'live'\"}"
    check "live: the run on the server, FINISHED" is "$(j '.runs[0].info.status')" FINISHED
    rid=$(j '.runs[0].info.run_id')
    api GET "metrics/get-history?run_id=$rid&metric_key=val_loss"
    check "live: val_loss per epoch" is "$(j '.metrics | length')" 2
    # a server that is down: training goes on; kiln runs sync sends it all later
    KILN_REGISTRY="mlflow+http://127.0.0.1:9" "$KILN" train "$TMP/tiny.yaml" --runs-dir "$local" --name offline --quiet >"$TMP/out" 2>&1
    check "down: train exit 0" [ $? = 0 ]
    check "down: warned once" is "$(grep -c 'warning: MLflow tracking' "$TMP/out")" 1
    k runs sync --to "mlflow+$R2" offline --runs-dir "$local"
    check "down: synced later" [ $rc = 0 ]
    api POST runs/search "{\"experiment_ids\":[\"$e\"],\"filter\":\"attributes.run_name = 'offline'\"}"
    check "down: the run arrived, FINISHED" is "$(j '.runs[0].info.status')" FINISHED
    k runs sync --to "http://x" --runs-dir "$local"
    check "bad --to: exit 2" [ $rc = 2 ]
    URL=$save
    kill -TERM "$BOARD2_PID" && wait "$BOARD2_PID" 2>/dev/null
    BOARD2_PID=""
}

run_test t_experiments
run_test t_runs_and_logging
run_test t_errors
run_test t_search
run_test t_kiln_runs_through_the_api
run_test t_models
run_test t_token
run_test t_node_mlflow_client
run_test t_kiln_as_mlflow_client
finish

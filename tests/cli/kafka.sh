#!/usr/bin/env bash
# data.source: kafka, kiln data produce and kiln predict --kafka-in end to end, against
# librdkafka's mock cluster run as its own process (build/kafka_mock_broker: no broker to
# install, and it outlives a `kiln train` killed with -9):
#   - replay: the Fashion-MNIST MLP trained from a one-partition topic filled by kiln data produce
#     from IDX files reaches the IDX run's test accuracy (within 0.5 points; the same rows in the
#     same order, so in fact the same);
#   - stream: killed with -9 while it waits for records, resumed: the (partition, offset) pairs
#     read over both runs have no gap, and the resumed run starts at its checkpoint's offsets;
#     (the group's committed offsets following checkpoints is checked in tests/test_kafka.c);
#   - every format of kiln data produce trains; usage and config errors exit 2.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BROKER_BIN=$(dirname "$KILN")/kafka_mock_broker
DUMP=$(dirname "$KILN")/kafka_dump
REF="/usr/bin/python3 $SRC/tests/cli/tfrecord_ref.py"
D=$TMP/d
mkdir -p "$D"
"$BROKER_BIN" 1 acc:1 acctest:1 st:3 fmt:1 >"$TMP/broker" 2>"$TMP/broker.err" &
BROKER_PID=$!
trap 'kill $BROKER_PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do [ -s "$TMP/broker" ] && break; sleep 0.1; done
B=$(head -1 "$TMP/broker")
[ -n "$B" ] || { echo "kafka_mock_broker did not start"; cat "$TMP/broker.err"; exit 1; }
N=${KAFKA_TEST_ROWS:-1000}
$REF idx-subset $FMNIST/train-images-idx3-ubyte.gz $FMNIST/train-labels-idx1-ubyte.gz $N \
    "$D/tr-img.gz" "$D/tr-lab.gz" >/dev/null || { echo "tfrecord_ref.py failed"; exit 1; }
$REF idx-subset $FMNIST/t10k-images-idx3-ubyte.gz $FMNIST/t10k-labels-idx1-ubyte.gz 500 \
    "$D/te-img.gz" "$D/te-lab.gz" >/dev/null || exit 1

config() { # config NAME DATA-LINES...: the MLP of examples/fashion_mnist/mlp.yaml, smaller
    local f=$TMP/$1.yaml
    shift
    {
        echo "experiment: kafka"
        echo "seed: 1"
        echo "data:"
        for l in "$@"; do echo "  $l"; done
        cat <<'YAML'
  normalize: {scale: 0.00392156862745098}
  batch_size: 64
model:
  input: [1, 28, 28]
  layers: [flatten, {dense: {units: 64, activation: relu}}, {dense: {units: 10}}]
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.001}}
train: {epochs: 2, checkpoint: {every_steps: 0, every_epochs: 1}}
YAML
    } >"$f"
}
acc() { grep -o '"test_accuracy":[[:space:]]*[0-9.e-]*' "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//'; }

t_produce_and_replay_accuracy() {
    k data produce "$D/tr-img.gz" --labels "$D/tr-lab.gz" --brokers "$B" --topic acc
    check "produce exits 0" [ "$rc" = 0 ]
    check "final count" has "$N records delivered to acc"
    k data produce "$D/te-img.gz" --labels "$D/te-lab.gz" --brokers "$B" --topic acctest --rate 5000/s
    check "produce the test set (rate-limited)" has "500 records delivered to acctest"
    config idx "source: idx" "train: {images: $D/tr-img.gz, labels: $D/tr-lab.gz}" \
        "test: {images: $D/te-img.gz, labels: $D/te-lab.gz}" "validation_split: 0.1"
    config kafka "source: kafka" "kafka: {brokers: \"$B\", mode: replay}" "train: {topic: acc}" \
        "test: {topic: acctest}" "validation_split: 0.1"
    k train "$TMP/idx.yaml" --runs-dir "$TMP/r-idx" --quiet
    check "IDX run" [ "$rc" = 0 ]
    k train "$TMP/kafka.yaml" --runs-dir "$TMP/r-kafka" --quiet
    check "Kafka replay run" [ "$rc" = 0 ]
    local a b
    a=$(acc "$(ls -d "$TMP"/r-idx/*/* | head -1)")
    b=$(acc "$(ls -d "$TMP"/r-kafka/*/* | head -1)")
    echo "    test accuracy: IDX $a, Kafka replay $b"
    check "accuracy within 0.5 points of the IDX run ($a vs $b)" \
        awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0.5 && d <= 0.005) }'
}

t_stream_kill9_resume() {
    k data produce "$D/tr-img.gz" --labels "$D/tr-lab.gz" --brokers "$B" --topic st --limit 700
    check "produce part of the stream" [ "$rc" = 0 ]
    k data produce "$D/te-img.gz" --labels "$D/te-lab.gz" --brokers "$B" --topic stval --limit 200
    config stream "source: kafka" \
        "kafka: {brokers: \"$B\", mode: stream, epoch_records: 200, group_id: resume, trace: $TMP/trace," \
        "        properties: [session.timeout.ms=6000, heartbeat.interval.ms=500]}" \
        "train: {topic: st}" "validation: {topic: stval}"
    sed -i 's/epochs: 2, checkpoint: {every_steps: 0, every_epochs: 1}/epochs: 5, checkpoint: {every_steps: 2, keep: 2}/' "$TMP/stream.yaml"
    "$KILN" train "$TMP/stream.yaml" --runs-dir "$TMP/r-st" >"$TMP/st.out" 2>&1 &
    local pid=$! i
    for i in $(seq 600); do grep -q "training paused" "$TMP/st.out" && break; sleep 0.1; done
    check "waits for records with a 'training paused' line" grep -q "training paused" "$TMP/st.out"
    check "the run's log.txt has the line too" \
        grep -q "training paused" "$(ls -d "$TMP"/r-st/*/* | head -1)/log.txt"
    kill -9 $pid
    wait $pid 2>/dev/null
    local run ck lines
    run=$(ls -d "$TMP"/r-st/*/* | head -1)
    ck=$(ls -d "$run"/checkpoints/step-* | sort -t- -k2 -n | tail -1)
    check "the checkpoint holds kafka.json" [ -f "$ck/kafka.json" ]
    lines=$(wc -l <"$TMP/trace")
    cp "$ck/kafka.json" "$TMP/ck-kafka.json" 2>/dev/null # the resumed run prunes old checkpoints
    k data produce "$D/tr-img.gz" --labels "$D/tr-lab.gz" --brokers "$B" --topic st
    check "produce the rest" [ "$rc" = 0 ]
    k train --resume "$run" --quiet
    check "resumed run finishes" [ "$rc" = 0 ]
    [ "$rc" = 0 ] || sed "s/^/    | /" "$TMP/out" | tail -8 >&2
    # no gap: per partition, the offsets read over both runs are 0 .. max, every one
    check "no gap in the (partition, offset) pairs read" awk '
        { seen[$2 " " $3] = 1; if ($3 > max[$2]) max[$2] = $3; parts[$2] = 1 }
        END { for (p in parts) for (o = 0; o <= max[p]; o++) if (!((p " " o) in seen)) {
                  print "gap: partition " p " offset " o; exit 1 } }' "$TMP/trace"
    # the resumed run starts at the checkpoint's offsets (position, or start of its window)
    /usr/bin/python3 - "$TMP/ck-kafka.json" "$TMP/trace" "$lines" >"$TMP/py" 2>&1 <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
lines = open(sys.argv[2]).read().split("\n")[int(sys.argv[3]):]
first = {}
for l in lines:
    if l:
        t, p, o = l.split()
        first.setdefault(int(p), int(o))
within = st["epoch"] == st["window_epoch"]
for e in st["partitions"]:
    want = e["start"] if within and e["start"] < e["end"] else e["position"]
    if e["partition"] in first and first[e["partition"]] != want:
        sys.exit("partition %d: resumed at %d, checkpoint says %d" % (e["partition"], first[e["partition"]], want))
print("ok", first)
PY
    check "resumed at the checkpoint's offsets" grep -q "^ok" "$TMP/py"
    grep -q "^ok" "$TMP/py" || sed "s/^/    | /" "$TMP/py" >&2
}

t_formats() {
    local f
    for f in npy json raw; do
        "$KILN" data produce "$D/tr-img.gz" --labels "$D/tr-lab.gz" --brokers "$B" --topic "fmt-$f" \
            --format $f --limit 300 --quiet >"$TMP/out" 2>&1
        check "produce --format $f" [ $? = 0 ]
        config "f-$f" "source: kafka" "kafka: {brokers: \"$B\", format: $f}" "train: {topic: fmt-$f}"
        k train "$TMP/f-$f.yaml" --runs-dir "$TMP/r-$f" --quiet
        check "train from --format $f" [ "$rc" = 0 ]
        [ "$rc" = 0 ] || sed 's/^/    | /' "$TMP/out" | tail -5 >&2
    done
}

t_errors() {
    k data produce "$D/tr-img.gz" --brokers "$B"
    check "no --topic: exit 2" [ "$rc" = 2 ]
    check "names --topic" has "missing --topic"
    k data produce "$D/tr-img.gz" --brokers "$B" --topic x --format avro
    check "bad --format: exit 2" [ "$rc" = 2 ]
    config nobrokers "source: kafka" "train: {topic: acc}"
    k train "$TMP/nobrokers.yaml" --runs-dir "$TMP/r-e" --quiet
    check "no brokers: exit 2" [ "$rc" = 2 ]
    check "names data.kafka.brokers" has "data.kafka.brokers"
    config notopic "source: kafka" "kafka: {brokers: \"$B\"}" "train: {path: x}"
    k train "$TMP/notopic.yaml" --runs-dir "$TMP/r-e" --quiet
    check "no topic: exit 2" [ "$rc" = 2 ]
    config split "source: kafka" "kafka: {brokers: \"$B\", mode: stream, epoch_records: 10}" \
        "train: {topic: acc}" "validation_split: 0.1"
    k train "$TMP/split.yaml" --runs-dir "$TMP/r-e" --quiet
    check "stream + validation_split: exit 2" [ "$rc" = 2 ]
}

run_test t_produce_and_replay_accuracy
run_test t_stream_kill9_resume
run_test t_formats
t_predict_stream() {
    config pidx "source: idx" "train: {images: $D/tr-img.gz, labels: $D/tr-lab.gz}"
    k train "$TMP/pidx.yaml" --runs-dir "$TMP/r-p" --quiet
    check "train a model" [ "$rc" = 0 ]
    k export "$(ls -d "$TMP"/r-p/*/* | head -1)" --to "$TMP/export"
    check "export it" [ "$rc" = 0 ]
    k data produce "$D/te-img.gz" --labels "$D/te-lab.gz" --brokers "$B" --topic pin --limit 60
    k predict --model_dir "$TMP/export" --kafka-in pin --kafka-out pout --brokers "$B" --max 60
    check "predict --kafka-in exits 0" [ "$rc" = 0 ]
    check "counts what it produced" has "60 predictions produced to pout"
    "$DUMP" "$B" pin 2 >"$TMP/pin.txt"
    "$DUMP" "$B" pout 2 >"$TMP/pout.txt"
    check "60 predictions in the output topic" [ "$(wc -l <"$TMP/pout.txt")" = 60 ]
    # keyed like the inputs: every input key answered once; mostly right (labels from headers)
    check "each input key answered once, mostly correctly" awk '
        FNR == NR { label[$3] = $4; next }
        { n[$3]++; if (match($0, /"class_index": [0-9]+/)) {
              c = substr($0, RSTART + 15, RLENGTH - 15); right += (c == label[$3]) } }
        END { for (k in label) if (n[k] != 1) { print "key " k ": " n[k] " answers"; exit 1 }
              if (right < 30) { print right " of 60 right"; exit 1 } }' "$TMP/pin.txt" "$TMP/pout.txt"
    k predict --model_dir "$TMP/export" --kafka-in pin --brokers "$B"
    check "--kafka-in without --kafka-out: exit 2" [ "$rc" = 2 ]
}

run_test t_predict_stream
run_test t_errors
finish

#!/usr/bin/env bash
# kafka.sh — throughput of the Kafka source's consumer path (records/s of tf.Example images)
# against the plain TFRecord source on the same records (issue 19's goal: within 2x).
#
#   bash bench/kafka.sh [BUILD [N]]        (defaults: build, 60000 Fashion-MNIST images)
#
# The broker is librdkafka's mock cluster (build/kafka_mock_broker, on loopback); the records are
# what `kiln data produce` sends from the IDX files (PNG images in tf.Example; 16 partitions: the
# mock keeps about 5 MB a partition), and the TFRecord
# file what `kiln data convert --no-shuffle` writes from the same files. bench_kafka_consume
# times both readers, best of 3, one thread each. Printed with the CPU's name.
set -euo pipefail
BUILD=${1:-build}
N=${2:-60000}
FM=/usr/share/datasets/fashion-mnist
TMP=$(mktemp -d /tmp/kiln-bench-kafka-XXXXXX)
"$BUILD/kafka_mock_broker" 1 bench:16 >"$TMP/broker" &
BROKER=$!
trap 'kill $BROKER 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do [ -s "$TMP/broker" ] && break; sleep 0.1; done
B=$(head -1 "$TMP/broker")
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') ($(nproc) cores)"
"$BUILD/kiln" data produce "$FM/train-images-idx3-ubyte.gz" --labels "$FM/train-labels-idx1-ubyte.gz" \
    --brokers "$B" --topic bench --limit "$N" --quiet
"$BUILD/kiln" data convert "$FM/train-images-idx3-ubyte.gz" --labels "$FM/train-labels-idx1-ubyte.gz" \
    --to "$TMP/tfr" --no-shuffle --quiet >/dev/null
if [ "$N" -lt 60000 ]; then # the same first N records in the file
    echo "(N < 60000: the TFRecord file holds all 60000; the rates are per record)"
fi
"$BUILD/bench_kafka_consume" "$B" bench "$TMP/tfr/train.tfrecord-00000-of-00001" 3

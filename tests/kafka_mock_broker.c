/* kafka_mock_broker.c — a Kafka cluster for tests, with no broker process to install:
 * librdkafka's mock cluster (real protocol traffic on localhost ports) kept up until killed.
 *
 *   kafka_mock_broker [BROKERS [TOPIC:PARTITIONS ...]]
 *
 * Prints its bootstrap servers on the first line of stdout ("host:port,..."), then sleeps until
 * SIGTERM / SIGINT. Topics named on the command line are created with that many partitions;
 * others are created on first use (1 partition, as a broker with auto.create.topics.enable).
 * A test runs it in the background so that the cluster outlives a `kiln train` killed with -9.
 * Note: the mock keeps about 5 MB of records per partition (older ones are deleted, as a broker's
 * retention would): spread big data sets over enough partitions.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) {
    stop = s;
}

int main(int argc, char **argv) {
    int brokers = argc > 1 ? atoi(argv[1]) : 1;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err); /* it only hosts the cluster */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "kafka_mock_broker: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers > 0 ? brokers : 1);
    if (!mc) {
        fprintf(stderr, "kafka_mock_broker: cannot start the mock cluster\n");
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s", argv[i]);
        char *colon = strrchr(name, ':');
        int parts = colon ? atoi(colon + 1) : 1;
        if (colon) *colon = 0;
        if (rd_kafka_mock_topic_create(mc, name, parts > 0 ? parts : 1, 1)) {
            fprintf(stderr, "kafka_mock_broker: cannot create topic %s\n", name);
            return 1;
        }
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    while (!stop) pause();
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}

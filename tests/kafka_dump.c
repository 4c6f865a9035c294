/* kafka_dump.c — prints a topic's records for the tests: one line per record, "partition offset
 * key label value" (label: the "label" header or -; value printed as text when printable, else
 * as its length "<N bytes>"), from the beginning until no record came for IDLE seconds.
 *
 *   kafka_dump BROKERS TOPIC [IDLE]
 */
#include <ctype.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "usage: kafka_dump BROKERS TOPIC [IDLE]\n"), 2;
    double idle = argc > 3 ? atof(argv[3]) : 5;
    char err[512], group[64];
    snprintf(group, sizeof group, "kafka-dump-%ld", (long)time(NULL) ^ (long)clock());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err) ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof err) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err))
        return fprintf(stderr, "kafka_dump: %s\n", err), 1;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) return fprintf(stderr, "kafka_dump: %s\n", err), 1;
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, argv[2], RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    time_t last = time(NULL);
    int got = 0;
    while (difftime(time(NULL), last) < idle + (got ? 0 : 10)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) continue;
        if (!m->err) {
            last = time(NULL), got = 1;
            rd_kafka_headers_t *h = NULL;
            const void *hv = NULL;
            size_t hl = 0;
            if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, "label", &hv, &hl))
                hv = NULL;
            int text = 1;
            for (size_t i = 0; i < m->len && text; i++)
                text = isprint(((unsigned char *)m->payload)[i]) != 0;
            printf("%d %lld %.*s %.*s ", (int)m->partition, (long long)m->offset, (int)m->key_len,
                   m->key ? (const char *)m->key : "-", hv ? (int)hl : 1,
                   hv ? (const char *)hv : "-");
            if (text)
                printf("%.*s\n", (int)m->len, (const char *)m->payload);
            else
                printf("<%zu bytes>\n", m->len);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}

/* kafka_consume.c — the Kafka source's consumer path against the plain TFRecord source, on the
 * same tf.Example image records (bench/kafka.sh makes them):
 *
 *   bench_kafka_consume BROKERS TOPIC TFRECORD_FILE [REPEATS]
 *
 * Kafka: a replay source opened over the whole topic (fetch, parse each tf.Example, decode its
 * PNG into u8 [1, 28, 28], rows sorted): records / seconds of kiln_kafka_source_open.
 * TFRecord: kiln_data_load_tfrecord (reads and checks every record) plus reading every row once
 * (pread, checksums, parse, PNG decode): records / seconds of both. One thread each, as the
 * Kafka source decodes on its consumer thread. Best of REPEATS (default 3).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/kafka.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_kafka_consume BROKERS TOPIC TFRECORD_FILE [REPEATS]\n");
        return 2;
    }
    int reps = argc > 4 ? atoi(argv[4]) : 3;
    kiln_tfrecord_feature feat = {"image/encoded", KILN_TFR_IMAGE, 0, {0}};
    kiln_image_spec spec = {.channels = 1, .out_h = 28, .out_w = 28};
    double best_k = 1e30, best_t = 1e30;
    int64_t nk = 0, nt = 0;
    for (int r = 0; r < reps; r++) {
        const char *topic = argv[2];
        char group[64];
        snprintf(group, sizeof group, "bench-%d", r);
        kiln_kafka_source_options o = {.conn = {.brokers = argv[1], .group_id = group},
                                       .topics = &topic,
                                       .num_topics = 1,
                                       .replay = 1,
                                       .timeout_s = 60};
        o.dec.format = KILN_KAFKA_TF_EXAMPLE;
        o.dec.features = &feat, o.dec.num_features = 1, o.dec.spec = spec;
        o.dec.label_key = "image/class/label", o.dec.label_kind = KILN_LABEL_CLASS;
        kiln_kafka_source *s = NULL;
        double t0 = now_s();
        if (kiln_kafka_source_open(&o, &s)) {
            fprintf(stderr, "kafka: %s\n", kiln_last_error());
            return 1;
        }
        double dk = now_s() - t0;
        nk = kiln_dataset_rows(kiln_kafka_source_dataset(s));
        kiln_kafka_source_free(s);
        if (dk < best_k) best_k = dk;

        const char *files[1] = {argv[3]};
        kiln_tfrecord_source_options to = {.files = files,
                                           .num_files = 1,
                                           .features = &feat,
                                           .num_features = 1,
                                           .spec = spec,
                                           .label_key = "image/class/label",
                                           .label_kind = KILN_LABEL_CLASS};
        kiln_dataset *ds = NULL;
        t0 = now_s();
        if (kiln_data_load_tfrecord(&to, &ds, NULL)) {
            fprintf(stderr, "tfrecord: %s\n", kiln_last_error());
            return 1;
        }
        nt = kiln_dataset_rows(ds);
        uint8_t row[28 * 28];
        for (int64_t i = 0; i < nt; i++)
            if (kiln_dataset_read(ds, i, row)) {
                fprintf(stderr, "tfrecord: %s\n", kiln_last_error());
                return 1;
            }
        double dt = now_s() - t0;
        kiln_dataset_free(ds);
        if (dt < best_t) best_t = dt;
    }
    double rk = (double)nk / best_k, rt = (double)nt / best_t;
    printf("kafka source (replay, consume + decode): %lld records in %.2f s: %.0f records/s\n",
           (long long)nk, best_k, rk);
    printf("tfrecord source (index + read + decode): %lld records in %.2f s: %.0f records/s\n",
           (long long)nt, best_t, rt);
    printf("ratio tfrecord / kafka: %.2fx (goal: within 2x)\n", rt / rk);
    return 0;
}

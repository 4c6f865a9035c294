/* predict_kafka.c — kiln predict --kafka-in: predictions as a stream. Records of the input topic
 * (kiln/kafka.h formats: tf_example (image/encoded for [C, H, W] inputs, else a float list "x"),
 * npy, json, raw) are decoded, run through the model (an export in-process or a server: the
 * same kiln_cli_predictor), and each prediction (the JSON object kiln predict --stream prints)
 * is produced to the output topic with the input record's key, so answers pair with questions.
 * The input group's offsets are committed after the predictions they answer are acknowledged
 * (at-least-once: after a crash some inputs are answered twice, none is lost). A record that
 * does not decode is reported on stderr with its partition and offset and skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "kiln/kafka.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int kiln_cli_predict_kafka(kiln_cli_predictor *p, const kiln_cli_kafka_opts *o) {
    kiln_kafka_conn conn = {.brokers = o->brokers,
                            .group_id = o->group ? o->group : "kiln-predict"};
    kiln_kafka_decode d = {
        .format = o->format, .label_kind = KILN_LABEL_NONE, .x_shape = p->spec.row};
    kiln_tfrecord_feature feat = {"x", KILN_TFR_FLOAT, 0, {0}};
    int64_t c = p->spec.row.dims[0];
    if (o->format == KILN_KAFKA_TF_EXAMPLE && p->spec.row.ndim == 3 && (c == 1 || c == 3)) {
        feat = (kiln_tfrecord_feature){"image/encoded", KILN_TFR_IMAGE, 0, {0}};
        d.spec = (kiln_image_spec){.channels = (int)c,
                                   .out_h = (int)p->spec.row.dims[1],
                                   .out_w = (int)p->spec.row.dims[2]};
    }
    d.features = &feat, d.num_features = 1;
    kiln_kafka_decoder *dec = NULL;
    kiln_kafka_consumer *in = NULL;
    kiln_kafka_producer *out = NULL;
    const char *topics[1] = {o->in_topic};
    kiln_status st = kiln_kafka_decoder_new(&d, &dec);
    if (!st) st = kiln_kafka_consumer_new(&conn, topics, 1, &in);
    if (!st) st = kiln_kafka_producer_new(&conn, &out);
    if (st) {
        fprintf(stderr, "kiln predict: %s\n", kiln_last_error());
        kiln_kafka_decoder_free(dec), kiln_kafka_consumer_free(in);
        return KILN_EXIT_USAGE;
    }
    int64_t rs = kiln_shape_numel(&p->spec.row);
    int u8 = kiln_kafka_decoder_dtype(dec) == KILN_U8;
    void *row = malloc((size_t)rs * 4);
    float *x = malloc((size_t)rs * sizeof *x), *y = malloc((size_t)p->out_size * sizeof *y);
    float *probs = p->prob_size ? malloc((size_t)p->prob_size * sizeof *probs) : NULL;
    kiln_sbuf b = KILN_SBUF_INIT;
    int64_t done = 0, bad = 0, since = 0;
    int rc = KILN_EXIT_OK;
    if (!row || !x || !y || (p->prob_size && !probs)) rc = KILN_EXIT_FAIL;
    double last = now_s();
    while (rc == KILN_EXIT_OK && (!o->max || done + bad < o->max)) {
        kiln_kafka_message m;
        int got = kiln_kafka_consumer_poll(in, 0.5, &m);
        if (got < 0) {
            fprintf(stderr, "kiln predict: %s\n", kiln_last_error());
            rc = KILN_EXIT_FAIL;
            break;
        }
        if (!got) {
            if (o->idle_s > 0 && now_s() - last >= o->idle_s) break;
            continue;
        }
        last = now_s();
        char where[400], key[256];
        snprintf(where, sizeof where, "%s partition %d offset %lld", m.topic, (int)m.partition,
                 (long long)m.offset);
        size_t kl = m.key && m.key_len < sizeof key ? m.key_len : 0;
        memcpy(key, m.key ? m.key : "", kl), key[kl] = 0;
        st = kiln_kafka_decoder_row(dec, m.value, m.len, NULL, where, row, NULL);
        if (!st) {
            for (int64_t j = 0; j < rs; j++)
                x[j] = u8 ? ((const uint8_t *)row)[j] : ((const float *)row)[j];
            st = kiln_cli_predictor_run(p, x, 1, y, probs);
            if (st && st != KILN_ERR_FORMAT) {
                fprintf(stderr, "kiln predict: %s: %s\n", where, kiln_last_error());
                rc = KILN_EXIT_FAIL;
                break;
            }
        }
        if (st) {
            fprintf(stderr, "kiln predict: %s (skipped)\n", kiln_last_error());
            bad++;
            continue;
        }
        kiln_sbuf_clear(&b);
        kiln_cli_predict_json_one(&b, p, y, probs, NULL);
        if (b.failed || (st = kiln_kafka_produce(out, o->out_topic, -1, kl ? key : NULL, b.data,
                                                 b.len, NULL))) {
            fprintf(stderr, "kiln predict: %s\n", b.failed ? "out of memory" : kiln_last_error());
            rc = KILN_EXIT_FAIL;
            break;
        }
        done++;
        if (++since >= 256) { /* answers acknowledged, then their inputs committed */
            if ((st = kiln_kafka_producer_flush(out, 60, NULL, NULL)) ||
                (st = kiln_kafka_consumer_commit(in))) {
                fprintf(stderr, "kiln predict: %s\n", kiln_last_error());
                rc = KILN_EXIT_FAIL;
            }
            since = 0;
        }
    }
    if (rc == KILN_EXIT_OK && ((st = kiln_kafka_producer_flush(out, 60, NULL, NULL)) ||
                               (st = kiln_kafka_consumer_commit(in)))) {
        fprintf(stderr, "kiln predict: %s\n", kiln_last_error());
        rc = KILN_EXIT_FAIL;
    }
    fprintf(stderr, "kiln predict: %lld predictions produced to %s, %lld bad record%s skipped\n",
            (long long)done, o->out_topic, (long long)bad, bad == 1 ? "" : "s");
    kiln_sbuf_free(&b);
    free(row), free(x), free(y), free(probs);
    kiln_kafka_decoder_free(dec);
    kiln_kafka_consumer_free(in);
    kiln_kafka_producer_free(out);
    return rc;
}

/* test_kafka.c — the Kafka source, producer and consumer (kiln/kafka.h) against librdkafka's
 * mock cluster, in process: real protocol traffic, no broker to install. Each test makes its
 * own topics. Row i of the test data set has pixel 0 = 7 i mod 256 (7 is invertible mod 256),
 * so every row read back names the record it came from.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/kafka.h"

#define ROWS 60
static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mc;
static const char *brokers;
static kiln_dataset *ds;

static int idx_of(const float *x) {
    return ((int)x[0] * 183) & 255;
} /* 7 * 183 = 1 mod 256 */

static void setup(void) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err); /* the handle only hosts the mock */
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    mc = rd_kafka_mock_cluster_new(mock_rk, 3);
    brokers = rd_kafka_mock_cluster_bootstraps(mc);
    uint8_t x[ROWS * 16];
    int32_t y[ROWS];
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < 16; j++) x[i * 16 + j] = (uint8_t)(j ? i + 3 * j : (i * 7) & 255);
        y[i] = i % 4;
    }
    kiln_dataset_desc d = {.rows = ROWS,
                           .x_dtype = KILN_U8,
                           .x = x,
                           .y_kind = KILN_LABEL_CLASS,
                           .y = y,
                           .num_classes = 4};
    int64_t dims[3] = {1, 4, 4};
    d.x_shape = kiln_shape_make(3, dims);
    kiln_dataset_new(&d, &ds);
}

/* rows [from, to) of ds into topic, row i to partition i % parts; corrupt: a row index whose
 * value is replaced by garbage (-1: none). */
static void produce(const char *topic, kiln_kafka_format f, int parts, int from, int to,
                    int corrupt) {
    kiln_kafka_conn c = {.brokers = brokers};
    kiln_kafka_producer *p = NULL;
    CHECK_OK(kiln_kafka_producer_new(&c, &p));
    void *buf = NULL;
    size_t cap = 0, len = 0;
    char label[64], key[32];
    for (int i = from; i < to; i++) {
        CHECK_OK(kiln_kafka_encode_row(ds, i, f, &buf, &cap, &len, label));
        snprintf(key, sizeof key, "%d", i);
        if (i == corrupt) memcpy(buf, "\x0a\xff\xff garbage", len < 12 ? len : 12);
        CHECK_OK(kiln_kafka_produce(p, topic, i % parts, key, buf, len, label));
    }
    int64_t ok = 0;
    CHECK_OK(kiln_kafka_producer_flush(p, 20, &ok, NULL));
    CHECK(ok == to - from);
    free(buf);
    kiln_kafka_producer_free(p);
}

static kiln_tfrecord_feature IMAGE_FEAT = {"image/encoded", KILN_TFR_IMAGE, 0, {0}};

/* short group timeouts, so that a member that left is not waited for long */
static const char *const PROPS[] = {"session.timeout.ms=6000", "heartbeat.interval.ms=500",
                                    "max.poll.interval.ms=10000"};

static kiln_kafka_source_options opts(const char *const *topic, kiln_kafka_format f) {
    kiln_kafka_source_options o = {.conn = {.brokers = brokers, .props = PROPS, .num_props = 3},
                                   .topics = topic,
                                   .num_topics = 1};
    o.dec.format = f;
    o.dec.features = &IMAGE_FEAT, o.dec.num_features = 1;
    o.dec.spec = (kiln_image_spec){.channels = 1, .out_h = 4, .out_w = 4};
    o.dec.label_key = "image/class/label", o.dec.label_kind = KILN_LABEL_CLASS;
    o.dec.num_classes = 4;
    int64_t dims[3] = {1, 4, 4};
    o.dec.x_shape = kiln_shape_make(3, dims);
    o.timeout_s = 30;
    return o;
}

static char logbuf[8192];
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static void log_to_buf(void *ctx, const char *line) {
    (void)ctx;
    pthread_mutex_lock(&log_mu);
    strncat(logbuf, line, sizeof logbuf - strlen(logbuf) - 2);
    strcat(logbuf, "\n");
    pthread_mutex_unlock(&log_mu);
}

/* Every format: produced, replayed, each row equal to its source row (order: partition, then
 * offset), labels included. */
static void test_produce_replay_formats(void) {
    static const kiln_kafka_format F[] = {KILN_KAFKA_TF_EXAMPLE, KILN_KAFKA_NPY, KILN_KAFKA_JSON,
                                          KILN_KAFKA_RAW};
    for (int k = 0; k < 4; k++) {
        char topic[64];
        snprintf(topic, sizeof topic, "formats-%s", kiln_kafka_format_name(F[k]));
        rd_kafka_mock_topic_create(mc, topic, 2, 1);
        produce(topic, F[k], 2, 0, 40, -1);
        const char *t = topic;
        kiln_kafka_source_options o = opts(&t, F[k]);
        o.replay = 1;
        kiln_kafka_source *s = NULL;
        CHECK_OK(kiln_kafka_source_open(&o, &s));
        if (!s) continue;
        kiln_dataset *d = kiln_kafka_source_dataset(s);
        CHECK(kiln_dataset_rows(d) == 40);
        int bad = 0;
        for (int r = 0; r < 40 && kiln_dataset_rows(d) == 40; r++) {
            int want = r < 20 ? 2 * r : 2 * (r - 20) + 1; /* partition 0: even rows, then odd */
            float x[16], xw[16];
            int32_t y;
            CHECK_OK(kiln_dataset_get(d, r, x, &y));
            CHECK_OK(kiln_dataset_get(ds, want, xw, NULL));
            bad += memcmp(x, xw, sizeof x) != 0 || y != want % 4;
        }
        CHECK_MSG(bad == 0, "%s: %d rows differ", topic, bad);
        kiln_kafka_source_free(s);
    }
}

/* Stream windows, a save in the middle of window 1, commit, and a new source from that state:
 * the group's committed offsets are the window's start, the same window comes back row for
 * row, and the next window continues where it ended; no record twice, none missed. */
static void test_stream_state_commit_resume(void) {
    rd_kafka_mock_topic_create(mc, "stream", 2, 1);
    produce("stream", KILN_KAFKA_TF_EXAMPLE, 2, 0, ROWS, -1);
    const char *t = "stream";
    kiln_kafka_source_options o = opts(&t, KILN_KAFKA_TF_EXAMPLE);
    o.epoch_records = 20;
    o.conn.group_id = "g-stream";
    kiln_kafka_source *a = NULL, *b = NULL;
    CHECK_OK(kiln_kafka_source_open(&o, &a));
    if (!a) return;
    int seen[ROWS] = {0}, in0[2] = {0};
    float x[16], w1[20][16];
    kiln_dataset *d = kiln_kafka_source_dataset(a);
    for (int r = 0; r < 20; r++)
        kiln_dataset_get(d, r, x, NULL), seen[idx_of(x)]++, in0[idx_of(x) % 2]++;
    CHECK_OK(kiln_kafka_source_epoch(a, 1));
    for (int r = 0; r < 20; r++) kiln_dataset_get(d, r, w1[r], NULL);
    char path[] = "/tmp/kiln-test-kafka-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK_OK(kiln_kafka_source_save(a, 1, path)); /* the trainer is inside epoch 1 */
    CHECK_OK(kiln_kafka_source_commit(a));
    kiln_kafka_source_free(a);
    /* the committed offsets: window 1's start in each partition */
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "g-stream", err, sizeof err);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(l, "stream", 0);
    rd_kafka_topic_partition_list_add(l, "stream", 1);
    CHECK(rd_kafka_committed(c, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_MSG(l->elems[0].offset == in0[0] && l->elems[1].offset == in0[1],
              "committed %lld %lld (window 1 starts at %d, %d)", (long long)l->elems[0].offset,
              (long long)l->elems[1].offset, in0[0], in0[1]);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(c);
    o.state = path;
    o.timeout_s = 15;
    CHECK_OK(kiln_kafka_source_open(&o, &b));
    unlink(path);
    if (!b) return;
    d = kiln_kafka_source_dataset(b);
    int same = 1;
    for (int r = 0; r < 20; r++) {
        kiln_dataset_get(d, r, x, NULL);
        same &= !memcmp(x, w1[r], sizeof x);
        seen[idx_of(x)]++;
    }
    CHECK_MSG(same, "the window read again from the state differs");
    CHECK_OK(kiln_kafka_source_epoch(b, 2));
    for (int r = 0; r < 20; r++) kiln_dataset_get(d, r, x, NULL), seen[idx_of(x)]++;
    int once = 0;
    for (int i = 0; i < ROWS; i++) once += seen[i] == 1;
    CHECK_MSG(once == ROWS, "%d of %d records read exactly once", once, ROWS);
    kiln_kafka_source_free(b);
}

static void *broker_back(void *arg) {
    (void)arg;
    usleep(1500 * 1000);
    for (int id = 1; id <= 3; id++) rd_kafka_mock_broker_set_up(mc, id);
    produce("outage", KILN_KAFKA_TF_EXAMPLE, 1, 10, 20, -1);
    return NULL;
}

/* Every broker down while a window waits: a "paused" line, then, once they are back and the
 * records come, a "continues" line and the right window. */
static void test_broker_down_then_up(void) {
    rd_kafka_mock_topic_create(mc, "outage", 1, 1);
    produce("outage", KILN_KAFKA_TF_EXAMPLE, 1, 0, 10, -1);
    const char *t = "outage";
    kiln_kafka_source_options o = opts(&t, KILN_KAFKA_TF_EXAMPLE);
    o.epoch_records = 10, o.conn.group_id = "g-outage";
    o.log = log_to_buf;
    logbuf[0] = 0;
    kiln_kafka_source *s = NULL;
    CHECK_OK(kiln_kafka_source_open(&o, &s));
    if (!s) return;
    for (int id = 1; id <= 3; id++) rd_kafka_mock_broker_set_down(mc, id);
    pthread_t th;
    pthread_create(&th, NULL, broker_back, NULL);
    CHECK_OK(kiln_kafka_source_epoch(s, 1));
    pthread_join(th, NULL);
    CHECK_MSG(strstr(logbuf, "training paused") && strstr(logbuf, "training continues"), "log: %s",
              logbuf);
    float x[16];
    int ok = 1;
    kiln_dataset *d = kiln_kafka_source_dataset(s);
    for (int r = 0; r < 10; r++) kiln_dataset_get(d, r, x, NULL), ok &= idx_of(x) == 10 + r;
    CHECK_MSG(ok, "window 1 is not records 10..19");
    kiln_kafka_source_free(s);
}

typedef struct {
    kiln_kafka_source_options o;
    kiln_kafka_source *s;
    kiln_status st;
} opener;

static void *open_thread(void *arg) {
    opener *op = arg;
    op->st = kiln_kafka_source_open(&op->o, &op->s);
    return NULL;
}

/* The (partition, offset) pairs of a trace file: count[p * 100 + off]++ for lines [from, to). */
static int read_trace(const char *path, int from, int to, int *count) {
    FILE *f = fopen(path, "r");
    char topic[64];
    int p, n = 0;
    long long off;
    while (f && fscanf(f, "%63s %d %lld", topic, &p, &off) == 3)
        if (n++ >= from && n <= to && p >= 0 && p < 4 && off >= 0 && off < 100)
            count[p * 100 + off]++;
    if (f) fclose(f);
    return n;
}

/* Two members of one group: the second joins while the first reads. The first logs the
 * rebalance, both go on, no record is lost between them, and the second never reads what the
 * first committed (records the first read in its uncommitted window may be read again by the
 * second: at-least-once). */
static void test_rebalance_two_consumers(void) {
    rd_kafka_mock_topic_create(mc, "shared", 4, 1);
    produce("shared", KILN_KAFKA_TF_EXAMPLE, 4, 0, 40, -1);
    const char *t = "shared";
    char ta[] = "/tmp/kiln-test-kafka-a-XXXXXX", tb[] = "/tmp/kiln-test-kafka-b-XXXXXX";
    close(mkstemp(ta)), close(mkstemp(tb));
    kiln_kafka_source_options o = opts(&t, KILN_KAFKA_TF_EXAMPLE);
    o.conn.group_id = "g-shared", o.epoch_records = 20, o.epoch_seconds = 4;
    o.log = log_to_buf, o.trace = ta;
    logbuf[0] = 0;
    kiln_kafka_source *a = NULL;
    CHECK_OK(kiln_kafka_source_open(&o, &a));
    if (!a) return;
    char tmp[] = "/tmp/kiln-test-kafka-s-XXXXXX";
    close(mkstemp(tmp));
    CHECK_OK(kiln_kafka_source_save(a, 1, tmp)); /* window 0 done: commit where it ended */
    CHECK_OK(kiln_kafka_source_commit(a));
    unlink(tmp);
    opener b = {.o = o};
    b.o.trace = tb, b.o.epoch_records = 20;
    pthread_t th;
    pthread_create(&th, NULL, open_thread, &b);
    CHECK_OK(kiln_kafka_source_epoch(a, 1));
    pthread_join(th, NULL);
    CHECK_OK(b.st);
    CHECK_MSG(strstr(logbuf, "group rebalance"), "log: %s", logbuf);
    int all[400] = {0}, committed[400] = {0}, by_b[400] = {0};
    read_trace(ta, 0, 1 << 30, all);
    read_trace(tb, 0, 1 << 30, all);
    read_trace(ta, 0, 20, committed);
    read_trace(tb, 0, 1 << 30, by_b);
    int missing = 0, again = 0;
    for (int p = 0; p < 4; p++)
        for (int off = 0; off < 10; off++) {
            missing += all[p * 100 + off] == 0;
            again += committed[p * 100 + off] && by_b[p * 100 + off];
        }
    CHECK_MSG(missing == 0 && again == 0, "%d records never read, %d committed ones read again",
              missing, again);
    kiln_kafka_source_free(a);
    kiln_kafka_source_free(b.s);
    unlink(ta), unlink(tb);
}

/* A corrupted record: skipped and counted with its partition and offset (on_error: skip), or
 * the error naming them; random bytes in every format never crash the decoder. */
static void test_corrupted_records(void) {
    rd_kafka_mock_topic_create(mc, "corrupt", 1, 1);
    produce("corrupt", KILN_KAFKA_TF_EXAMPLE, 1, 0, 10, 3);
    const char *t = "corrupt";
    kiln_kafka_source_options o = opts(&t, KILN_KAFKA_TF_EXAMPLE);
    o.replay = 1;
    kiln_kafka_source *s = NULL;
    CHECK(kiln_kafka_source_open(&o, &s) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("partition 0 offset 3");
    o.skip_bad = 1;
    CHECK_OK(kiln_kafka_source_open(&o, &s));
    if (s) {
        char first[512];
        CHECK(kiln_dataset_rows(kiln_kafka_source_dataset(s)) == 9);
        CHECK(kiln_kafka_source_skipped(s, first, sizeof first) == 1);
        CHECK_MSG(strstr(first, "corrupt partition 0 offset 3"), "first: %s", first);
        kiln_kafka_source_free(s);
    }
    for (int f = 0; f < 4; f++) {
        kiln_kafka_source_options oo = opts(&t, (kiln_kafka_format)f);
        kiln_kafka_decoder *dec = NULL;
        CHECK_OK(kiln_kafka_decoder_new(&oo.dec, &dec));
        uint8_t junk[300], x[64];
        int32_t y;
        uint64_t r = 88172645463325252ull;
        int failed = 0;
        for (int it = 0; it < 2000 && dec; it++) {
            size_t len = (size_t)(it % 300);
            for (size_t i = 0; i < len; i++)
                r ^= r << 13, r ^= r >> 7, r ^= r << 17, junk[i] = (uint8_t)r;
            if (f == KILN_KAFKA_NPY && len > 10) memcpy(junk, "\x93NUMPY\x01\x00", 8);
            failed +=
                kiln_kafka_decoder_row(dec, junk, len, it % 2 ? "3" : "x", "junk", x, &y) != 0;
        }
        CHECK(failed > 1900); /* a raw record of exactly 16 bytes is a valid row */
        kiln_kafka_decoder_free(dec);
    }
}

int main(void) {
    setup();
    RUN(test_produce_replay_formats);
    RUN(test_stream_state_commit_resume);
    RUN(test_corrupted_records);
    RUN(test_broker_down_then_up);
    RUN(test_rebalance_two_consumers);
    kiln_dataset_free(ds);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mock_rk);
    return kiln_test_summary();
}

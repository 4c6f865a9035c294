/* cmd_data_produce.c — kiln data produce: a data set pushed into a Kafka topic, one record per
 * sample (kiln/kafka.h "Records"), keyed by its index, with progress and a final count; what
 * the producer scripts of Kafka-fed training pipelines do. An image folder, IDX, CSV or NPY data
 * set is read with kiln's own loaders (as kiln data convert reads it); TFRecord files are sent
 * record by record as they are (their tf.train.Example bytes). --rate paces the records (a
 * token bucket: at most N a second). Exit codes: 2 usage, 1 when records fail or time out.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/kafka.h"
#include "kiln/kiln.h"
#include "kiln/tfrecord.h"

static const char *HELP =
    "usage: kiln data produce SRC --brokers HOST:PORT --topic T [options]\n"
    "\n"
    "Pushes the data set SRC into the Kafka topic T, one record per sample, keyed by the\n"
    "sample's index: an image folder, IDX images (--labels FILE), a CSV table, NPY features\n"
    "(--labels FILE), or TFRecord files (sent as they are). docs/kafka.md has the formats.\n"
    "\n"
    "options:\n"
    "  --brokers B            bootstrap servers host:port[,host:port...]\n"
    "  --topic T              the topic (created by the broker if it allows that)\n"
    "  --format F             tf_example (default), npy, json or raw\n"
    "  --rate N               at most N records a second (default: as fast as possible)\n"
    "  --from KIND            images, idx, csv, npy or tfrecord (default: told by the name)\n"
    "  --labels FILE          IDX or NPY labels\n"
    "  --label-column COL     CSV: the label column (default label)\n"
    "  --limit N              only the first N samples\n"
    "  --partition P          every record to partition P (default: by key)\n"
    "  -X key=value           a librdkafka setting (repeatable)\n"
    "  --quiet                no progress line\n"
    "  --help                 this text\n";

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int ends(const char *s, const char *t) {
    size_t a = strlen(s), b = strlen(t);
    return a >= b && !strcmp(s + a - b, t);
}

typedef struct {
    kiln_kafka_producer *p;
    const char *topic;
    int32_t partition;
    double rate, t0, last;
    int64_t sent, limit;
    int quiet, tty;
} run;

static kiln_status send_one(run *r, const void *v, size_t len, const char *label) {
    if (r->rate > 0) { /* the n-th record not before t0 + n / rate */
        double due = r->t0 + (double)r->sent / r->rate, t = now_s();
        if (due > t) {
            struct timespec ts = {(time_t)(due - t),
                                  (long)((due - t - (double)(time_t)(due - t)) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)r->sent);
    kiln_status st = kiln_kafka_produce(r->p, r->topic, r->partition, key, v, len, label);
    if (st) return st;
    r->sent++;
    double t = now_s();
    if (!r->quiet && r->tty && t - r->last > 0.2) {
        r->last = t;
        fprintf(stderr, "\rkiln data produce: %lld records (%.0f/s)", (long long)r->sent,
                (double)r->sent / (t - r->t0 + 1e-9));
    }
    return KILN_OK;
}

static kiln_status send_tfrecords(run *r, const char *pattern) {
    char **files = NULL;
    int n = 0;
    kiln_status st = kiln_data_glob(pattern, &files, &n);
    for (int i = 0; !st && i < n && r->sent < r->limit; i++) {
        kiln_tfrecord_reader *rd = NULL;
        if ((st = kiln_tfrecord_open(files[i], (size_t)1 << 30, &rd))) break;
        const void *d;
        size_t len;
        while (r->sent < r->limit && !(st = kiln_tfrecord_next(rd, &d, &len)))
            if ((st = send_one(r, d, len, NULL))) break;
        if (st == KILN_ERR_NOTFOUND) st = KILN_OK;
        kiln_tfrecord_close(rd);
    }
    kiln_data_free_files(files, n);
    return st;
}

int kiln_cmd_data_produce(int argc, char **argv) {
    static const struct option opts[] = {{"brokers", required_argument, 0, 'b'},
                                         {"topic", required_argument, 0, 't'},
                                         {"format", required_argument, 0, 'F'},
                                         {"rate", required_argument, 0, 'r'},
                                         {"from", required_argument, 0, 'f'},
                                         {"labels", required_argument, 0, 'l'},
                                         {"label-column", required_argument, 0, 'L'},
                                         {"limit", required_argument, 0, 'n'},
                                         {"partition", required_argument, 0, 'p'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    kiln_kafka_conn conn = {0};
    const char *props[64], *from = NULL, *labels = NULL, *label_col = "label";
    run r = {.partition = -1, .limit = INT64_MAX};
    kiln_kafka_format fmt = KILN_KAFKA_TF_EXAMPLE;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "X:", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'b':
            conn.brokers = optarg;
            break;
        case 't':
            r.topic = optarg;
            break;
        case 'F':
            if (!kiln_kafka_format_parse(optarg, &fmt))
                return kiln_cli_usage_error("data produce",
                                            "--format %s: expected tf_example, "
                                            "npy, json or raw",
                                            optarg);
            break;
        case 'r':
            r.rate = strtod(optarg, &end);
            if (end && !strcmp(end, "/s")) end += 2;
            if (!end || *end || !(r.rate > 0))
                return kiln_cli_usage_error("data produce",
                                            "--rate %s: expected a number of "
                                            "records a second (e.g. 500 or 500/s)",
                                            optarg);
            break;
        case 'f':
            from = optarg;
            break;
        case 'l':
            labels = optarg;
            break;
        case 'L':
            label_col = optarg;
            break;
        case 'n':
            r.limit = strtoll(optarg, &end, 10);
            if (*end || r.limit < 1)
                return kiln_cli_usage_error("data produce", "--limit %s: expected N >= 1", optarg);
            break;
        case 'p':
            r.partition = (int32_t)strtol(optarg, &end, 10);
            if (*end || r.partition < 0)
                return kiln_cli_usage_error("data produce", "--partition %s: expected P >= 0",
                                            optarg);
            break;
        case 'X':
            if (conn.num_props == 64 || !strchr(optarg, '='))
                return kiln_cli_usage_error("data produce", "-X %s: expected key=value", optarg);
            props[conn.num_props++] = optarg;
            break;
        case 'q':
            r.quiet = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("data produce", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    conn.props = props;
    if (optind != argc - 1)
        return kiln_cli_usage_error("data produce",
                                    optind >= argc ? "missing SRC (a data set)" : "one SRC only");
    const char *src = argv[optind];
    if (!conn.brokers) return kiln_cli_usage_error("data produce", "missing --brokers HOST:PORT");
    if (!r.topic || !r.topic[0]) return kiln_cli_usage_error("data produce", "missing --topic T");
    struct stat sb;
    int dir = stat(src, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (!from)
        from = dir                                               ? "images"
               : ends(src, ".csv") || ends(src, ".csv.gz")       ? "csv"
               : ends(src, ".npy") || ends(src, ".npy.gz")       ? "npy"
               : strstr(src, ".tfrecord") || ends(src, ".tfrec") ? "tfrecord"
                                                                 : "idx";
    if (strcmp(from, "images") && strcmp(from, "idx") && strcmp(from, "csv") &&
        strcmp(from, "npy") && strcmp(from, "tfrecord"))
        return kiln_cli_usage_error("data produce",
                                    "--from %s: expected images, idx, csv, npy "
                                    "or tfrecord",
                                    from);
    if ((!strcmp(from, "images") || !strcmp(from, "tfrecord")) && fmt != KILN_KAFKA_TF_EXAMPLE)
        return kiln_cli_usage_error("data produce", "%s: %s are sent as tf_example records", src,
                                    !strcmp(from, "images") ? "image files" : "TFRecords");
    kiln_dataset *ds = NULL;
    kiln_status st = KILN_OK;
    if (!strcmp(from, "images")) {
        kiln_image_source_options io = {
            .root = src,
            .spec = {.channels = 1, .resize_h = 1, .resize_w = 1, .out_h = 1, .out_w = 1}};
        st = kiln_data_load_images(&io, &ds);
    } else if (!strcmp(from, "idx")) {
        st = kiln_data_load_idx(src, labels, 0, &ds);
    } else if (!strcmp(from, "csv")) {
        kiln_csv_options co = {.label = label_col, .label_kind = KILN_LABEL_CLASS};
        st = kiln_data_load_csv(src, &co, &ds);
    } else if (!strcmp(from, "npy")) {
        st = kiln_data_load_npy(src, labels, KILN_LABEL_CLASS, &ds);
    }
    if (st) {
        fprintf(stderr, "kiln data produce: %s\n", kiln_last_error());
        return KILN_EXIT_USAGE;
    }
    if ((st = kiln_kafka_producer_new(&conn, &r.p))) {
        kiln_dataset_free(ds);
        fprintf(stderr, "kiln data produce: %s\n", kiln_last_error());
        return KILN_EXIT_USAGE;
    }
    r.tty = isatty(2);
    r.t0 = now_s();
    if (!ds) {
        st = send_tfrecords(&r, src);
    } else {
        void *buf = NULL;
        size_t cap = 0, len = 0;
        char label[64];
        int64_t n = kiln_dataset_rows(ds);
        for (int64_t i = 0; i < n && i < r.limit && !st; i++)
            if (!(st = kiln_kafka_encode_row(ds, i, fmt, &buf, &cap, &len, label)))
                st = send_one(&r, buf, len, label);
        free(buf);
    }
    int64_t delivered = 0, failed = 0;
    kiln_status fs = kiln_kafka_producer_flush(r.p, 60, &delivered, &failed);
    if (!st) st = fs;
    double dt = now_s() - r.t0;
    if (!r.quiet && r.tty) fputc('\n', stderr);
    if (!st)
        printf("kiln data produce: %lld records delivered to %s (%s, %.1f s, %.0f records/s)\n",
               (long long)delivered, r.topic, kiln_kafka_format_name(fmt), dt,
               (double)delivered / (dt > 0 ? dt : 1));
    else
        fprintf(stderr, "kiln data produce: %s (%lld of %lld delivered)\n", kiln_last_error(),
                (long long)delivered, (long long)r.sent);
    kiln_kafka_producer_free(r.p);
    kiln_dataset_free(ds);
    return st ? KILN_EXIT_FAIL : KILN_EXIT_OK;
}

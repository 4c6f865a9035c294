/* kiln/kafka.h — Kafka topics as training data (data.source: kafka), data sets pushed into
 * topics (kiln data produce), and the plain consumer / producer kiln predict streams with. Only
 * src/data/ talks to librdkafka (src/data/kafka*.c); every other layer goes through this header.
 *
 * Records. A record's value is one sample in one of four formats (kiln_kafka_format):
 *   tf_example  a serialized tf.train.Example, decoded with the TFRecord source's feature spec
 *               (kiln_tfrecord_feature; an image feature through kiln_image_process);
 *   npy         one row as a .npy file (format 1.0/2.0, '|u1', '<f4', '<f8', '<i4', '<i8');
 *   json        {"x": [numbers, nested lists flattened], "label": N | [numbers]};
 *   raw         the row's bytes: u8 (x_numel bytes) or little-endian float32 (4 x_numel bytes).
 * npy and raw carry their label in the header "label" (decimal; comma-separated floats for
 * regression). The producer keys every record with its index in the data set (decimal), and
 * kiln predict keys each prediction like its input.
 *
 * The source (kiln_kafka_source). Rows are read into memory in windows: a window is, for each
 * partition read, the records at offsets [start, end), ordered by (topic, partition, offset), so
 * a window is defined by its offsets alone and can be read again exactly.
 *   replay  one window: every partition from its beginning (low watermark) to the end offset
 *           recorded when the source opened; a finite data set, shuffled by the loader's seeded
 *           permutation each epoch (a perfect shuffle rather than a buffer), split and resumed as
 *           any other source.
 *   stream  epoch e trains on window e, the next epoch_records records after window e - 1 (the
 *           first starts at the group's committed offsets, else at the beginning); with
 *           epoch_seconds, a window closes that long after its first record with what
 *           arrived, and its rows cycle through those records (row r = record r mod k).
 * The dataset (kiln_kafka_source_dataset) is an in-memory dataset of epoch_records rows whose
 * contents change only in kiln_kafka_source_epoch, between epochs, so its loader must not make
 * batches ahead (prefetch 0).
 *
 * Delivery. Offsets are committed to the group only by kiln_kafka_source_commit, which the
 * trainer calls after writing a checkpoint, and kiln_kafka_source_save writes them into the
 * checkpoint (kafka.json): the window in progress and where the next one starts. Opening with
 * options.state (a checkpoint's kafka.json) reads the window in progress again by its offsets,
 * so a run killed with -9 and resumed trains on exactly the records an uninterrupted run
 * would have (at-least-once into the model, exactly-once with respect to the checkpoint).
 *
 * Outages. While no record arrives because the brokers are unreachable or the group is
 * rebalancing, reading waits, logging one line when it pauses ("kafka: ... training paused")
 * and one when records flow again; it gives up only after timeout_s (0: never).
 * A record that does not decode is counted and skipped (skip_bad) or fails with an error
 * naming its topic, partition and offset; it never crashes the reader.
 */
#ifndef KILN_KAFKA_H
#define KILN_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/data.h"
#include "kiln/status.h"
#include "kiln/tfexample.h"

typedef enum {
    KILN_KAFKA_TF_EXAMPLE = 0,
    KILN_KAFKA_NPY,
    KILN_KAFKA_JSON,
    KILN_KAFKA_RAW,
} kiln_kafka_format;

/* "tf_example", "npy", "json", "raw" -> *f; 0 when s is none of them. */
int kiln_kafka_format_parse(const char *s, kiln_kafka_format *f);
const char *kiln_kafka_format_name(kiln_kafka_format f);

/* Where to connect. */
typedef struct {
    const char *brokers;      /* bootstrap.servers: host:port[,host:port...] */
    const char *group_id;     /* NULL: "kiln" */
    const char *const *props; /* extra librdkafka settings "key=value" [num_props] */
    int num_props;
} kiln_kafka_conn;

/* What a record holds and how it becomes a row. */
typedef struct {
    kiln_kafka_format format;
    /* tf_example: the features (as kiln_tfrecord_source_options has them) */
    const kiln_tfrecord_feature *features;
    int num_features;
    kiln_image_spec spec;       /* for an image feature */
    const char *label_key;      /* tf_example: the label feature (NULL: unlabeled) */
    kiln_label_kind label_kind; /* CLASS: one int64 / integer; FLOAT: floats */
    int64_t label_width;        /* FLOAT: values per label (0: the first record decides) */
    int num_classes;            /* CLASS: ids must be below it (0: no bound) */
    kiln_shape x_shape;         /* a row's shape (npy, json, raw, tf_example without an image) */
} kiln_kafka_decode;

typedef struct {
    kiln_kafka_conn conn;
    const char *const *topics; /* names, or one pattern starting with '^' (stream only) */
    int num_topics;
    kiln_kafka_decode dec;
    int replay;            /* 1: replay, 0: stream */
    int64_t epoch_records; /* stream: rows per epoch (>= 1) */
    double epoch_seconds;  /* stream: > 0: a window closes this long after its first record */
    int skip_bad;          /* data.on_error: skip */
    double timeout_s;      /* give up after this long without records while paused (0: never) */
    const char *state;     /* a checkpoint's kafka.json to start from, or NULL */
    const char *trace;     /* NULL, or a file that gets "topic partition offset" per record read */
    void (*log)(void *ctx, const char *line); /* pause / continue lines (NULL: stderr) */
    void *log_ctx;
} kiln_kafka_source_options;

typedef struct kiln_kafka_source kiln_kafka_source;

/* Connects, reads the first window (the one options.state names, when given) and makes the
 * dataset. Errors: KILN_ERR_INVALID for options, KILN_ERR_IO for brokers or topics that cannot
 * be reached in timeout_s, KILN_ERR_FORMAT for a bad record (without skip_bad). */
kiln_status kiln_kafka_source_open(const kiln_kafka_source_options *o, kiln_kafka_source **out);
/* The dataset (borrowed: valid until kiln_kafka_source_free; take a view or subset to keep it). */
kiln_dataset *kiln_kafka_source_dataset(kiln_kafka_source *s);
/* Stream: makes the dataset window `epoch` (reading the next one when it is not the window
 * held). Replay: nothing. Call before the epoch's first batch. */
kiln_status kiln_kafka_source_epoch(kiln_kafka_source *s, int64_t epoch);
/* Writes the state for a checkpoint taken at the trainer's `epoch` (the epoch in progress, or
 * the next one at an epoch's end) to path (JSON, written atomically). */
kiln_status kiln_kafka_source_save(kiln_kafka_source *s, int64_t epoch, const char *path);
/* Commits to the group the offsets of the last save (stream: the start of the window in
 * progress, or the end of the last one finished). Synchronous. */
kiln_status kiln_kafka_source_commit(kiln_kafka_source *s);
/* Records skipped (skip_bad) so far, and the first one's message into first [cap]. */
int64_t kiln_kafka_source_skipped(const kiln_kafka_source *s, char *first, size_t cap);
/* Records read so far (windows, refills included) and seconds spent paused. */
int64_t kiln_kafka_source_records(const kiln_kafka_source *s);
/* Where pause / continue lines go from now on (the trainer: the run's log.txt and stderr, once
 * the run exists). Call between reads, not during one. */
void kiln_kafka_source_set_log(kiln_kafka_source *s, void (*log)(void *ctx, const char *line),
                               void *ctx);
void kiln_kafka_source_free(kiln_kafka_source *s); /* NULL is ignored */

/* Decodes one record value into a row x (x_dtype of d: see kiln_kafka_decode_dtype) and its
 * label y (int32 [1] or float [label_width]); `where` prefixes errors (KILN_ERR_FORMAT). For
 * tests and kiln predict. dec is per thread; free with kiln_kafka_decoder_free. */
typedef struct kiln_kafka_decoder kiln_kafka_decoder;
kiln_status kiln_kafka_decoder_new(const kiln_kafka_decode *d, kiln_kafka_decoder **out);
void kiln_kafka_decoder_free(kiln_kafka_decoder *dec);
kiln_dtype kiln_kafka_decoder_dtype(const kiln_kafka_decoder *dec);
kiln_shape kiln_kafka_decoder_shape(const kiln_kafka_decoder *dec);
kiln_status kiln_kafka_decoder_row(kiln_kafka_decoder *dec, const void *value, size_t len,
                                   const char *label_header, const char *where, void *x, void *y);

/* ---- plain producer and consumer ---- */

typedef struct kiln_kafka_producer kiln_kafka_producer;
kiln_status kiln_kafka_producer_new(const kiln_kafka_conn *c, kiln_kafka_producer **out);
/* Queues one record (copied); waits while the local queue is full. label may be NULL. */
kiln_status kiln_kafka_produce(kiln_kafka_producer *p, const char *topic, int32_t partition,
                               const char *key, const void *value, size_t len, const char *label);
/* Waits up to timeout_s for every queued record to be acknowledged; *delivered and *failed
 * (may be NULL) count acknowledgements so far. KILN_ERR_IO when some failed or time ran out. */
kiln_status kiln_kafka_producer_flush(kiln_kafka_producer *p, double timeout_s, int64_t *delivered,
                                      int64_t *failed);
void kiln_kafka_producer_free(kiln_kafka_producer *p);

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key, *value;
    size_t key_len, len;
    const char *label; /* the "label" header (NUL-terminated copy) or NULL */
} kiln_kafka_message;

typedef struct kiln_kafka_consumer kiln_kafka_consumer;
/* A group member subscribed to topics (from the committed offsets, else the beginning). */
kiln_status kiln_kafka_consumer_new(const kiln_kafka_conn *c, const char *const *topics, int n,
                                    kiln_kafka_consumer **out);
/* The next record within timeout_s: 1 with *m set (valid until the next call), 0 when none came.
 * -1 on a fatal error. */
int kiln_kafka_consumer_poll(kiln_kafka_consumer *c, double timeout_s, kiln_kafka_message *m);
/* Commits the offsets after every record polled so far (synchronous). */
kiln_status kiln_kafka_consumer_commit(kiln_kafka_consumer *c);
void kiln_kafka_consumer_free(kiln_kafka_consumer *c);

/* ---- data sets as records (kiln data produce) ---- */

/* Row `row` of ds as one record value in format f into *buf [*len] (grown with realloc; the
 * caller frees it) and its label header into label [64] ("" when none). tf_example: the keys
 * kiln data convert writes (image/encoded as PNG for [1, H, W] u8 rows from IDX; x and label
 * for others); images read from an image folder keep their file's bytes. */
kiln_status kiln_kafka_encode_row(const kiln_dataset *ds, int64_t row, kiln_kafka_format f,
                                  void **buf, size_t *cap, size_t *len, char label[64]);

#endif

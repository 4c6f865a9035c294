/* kiln/tfexample.h — tf.train.Example, the record of TFRecord data sets: parsing and building.
 *
 * An Example is a map from feature names (keys such as "image/encoded") to one list of values
 * of one kind: bytes, float32 or int64 (proto/tensorflow/feature.proto and example.proto, the
 * upstream field numbers). kiln parses them with protobuf-c, whose parser refuses malformed
 * input without reading past it, into a reusable kiln_example: its memory (one arena that
 * grows to the largest record seen, at most KILN_EXAMPLE_MAX_ARENA or 48 times the record)
 * is kept for the next parse, so a reader that goes through many records allocates once.
 *
 * A key given twice in one record counts once, its last value winning (protobuf's rule for
 * maps). Features are listed in byte order of their keys.
 *
 * Building: a kiln_example_builder collects features and serializes them with the keys in byte
 * order (so the same features give the same bytes, as TensorFlow's deterministic serialization
 * does). Both objects are used by one thread at a time.
 *
 * Data sets: kiln_data_convert writes an image folder, IDX, CSV or NPY data set as TFRecord
 * shards of Examples with the keys TFDS and Keras image datasets use; kiln_tfrecord_inspect
 * reads shards back: count, schema, class histogram, and every record's checksums.
 */
#ifndef KILN_TFEXAMPLE_H
#define KILN_TFEXAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#define KILN_EXAMPLE_MAX_ARENA ((size_t)64 << 20)

/* The kinds, numbered as the fields of tensorflow.Feature's oneof. */
typedef enum {
    KILN_FEAT_NONE = 0, /* a Feature with no list set */
    KILN_FEAT_BYTES = 1,
    KILN_FEAT_FLOAT = 2,
    KILN_FEAT_INT64 = 3,
} kiln_feat_kind;

/* "bytes", "float", "int64" ("none"). */
const char *kiln_feat_kind_name(kiln_feat_kind k);

typedef struct {
    const char *key;
    kiln_feat_kind kind;
    size_t n;          /* values in the list */
    const float *f;    /* KILN_FEAT_FLOAT: [n] */
    const int64_t *i;  /* KILN_FEAT_INT64: [n] */
    const void *bytes; /* KILN_FEAT_BYTES: read with kiln_feature_bytes */
} kiln_feature;

/* Value i (< f->n) of a bytes feature: its data and *len. */
const uint8_t *kiln_feature_bytes(const kiln_feature *f, size_t i, size_t *len);

typedef struct kiln_example kiln_example;
kiln_status kiln_example_new(kiln_example **out);
void kiln_example_free(kiln_example *e); /* NULL is ignored */
/* Parses len bytes into e (what e held before is gone). KILN_ERR_FORMAT ("not a
 * tf.train.Example (malformed protocol buffer)") when they are not one; the caller adds where. */
kiln_status kiln_example_parse(kiln_example *e, const void *data, size_t len);
int kiln_example_size(const kiln_example *e); /* distinct keys */
/* Feature i (0 <= i < size), in byte order of the keys. Valid until the next parse. */
void kiln_example_feature(const kiln_example *e, int i, kiln_feature *f);
/* The feature named key: 1 with *f set, or 0. */
int kiln_example_find(const kiln_example *e, const char *key, kiln_feature *f);

typedef struct kiln_example_builder kiln_example_builder;
kiln_status kiln_example_builder_new(kiln_example_builder **out);
void kiln_example_builder_free(kiln_example_builder *b);  /* NULL is ignored */
void kiln_example_builder_reset(kiln_example_builder *b); /* no features; memory kept */
/* Adds a feature (the key and values are copied). A key already added is replaced. */
kiln_status kiln_example_add_bytes(kiln_example_builder *b, const char *key, const void *data,
                                   size_t len); /* one value */
kiln_status kiln_example_add_int64(kiln_example_builder *b, const char *key, const int64_t *v,
                                   size_t n);
kiln_status kiln_example_add_float(kiln_example_builder *b, const char *key, const float *v,
                                   size_t n);
/* The serialized tf.train.Example; *data stays valid until the next call on b. */
kiln_status kiln_example_serialize(kiln_example_builder *b, const void **data, size_t *len);

/* ---- converting data sets into shards ---- */

typedef enum {
    KILN_CONVERT_AUTO = 0, /* a folder: images; *.csv[.gz]: CSV; *.npy[.gz]: NPY; else IDX */
    KILN_CONVERT_IMAGES,   /* a folder of class folders (kiln_data_load_images) */
    KILN_CONVERT_MANIFEST, /* an image manifest, CSV or JSONL (path, label) */
    KILN_CONVERT_IDX,      /* IDX images (+ labels): PNG-encoded */
    KILN_CONVERT_CSV,      /* a CSV table (label column) */
    KILN_CONVERT_NPY,      /* NPY features (+ labels) */
} kiln_convert_from;

typedef struct {
    const char *src;    /* the data set (see from) */
    const char *labels; /* IDX or NPY labels file (NULL: no labels) */
    kiln_convert_from from;
    const char *label_column;       /* CSV: the label column (NULL: "label") */
    int regression;                 /* CSV, NPY: float targets instead of class ids */
    const char *const *class_names; /* [num_class_names] names of class ids 0.. (IDX, NPY) */
    int num_class_names;
    const char *to;   /* the folder for the shards (made when missing) */
    const char *name; /* shard names NAME.tfrecord-00000-of-0000N (NULL: "train") */
    int shards;       /* >= 1 */
    int compression;  /* kiln_tfrecord_compression: NONE, GZIP or ZLIB */
    int shuffle;      /* 1: records in a seeded random order (else the source's) */
    uint64_t seed;
    int force; /* replace shards NAME.tfrecord-* already in `to` */
    /* progress: called every record or so from the converting thread (may be NULL) */
    void (*progress)(void *ctx, int64_t done, int64_t total, int64_t bytes);
    void *progress_ctx;
} kiln_convert_options;

typedef struct {
    int64_t records;
    int64_t bytes; /* written, all shards */
    int shards;
    char first[4096], last[4096]; /* the first and last shard's paths */
    int num_classes;              /* 0 unless class labels */
} kiln_convert_result;

/* Writes the data set as o->shards TFRecord files of tf.train.Example records, each written
 * atomically (a temporary name, renamed when complete); when anything fails, the shards this
 * call already wrote are removed, so `to` never holds a partial set from it. Features:
 *   images: image/encoded (the file's own bytes), image/format ("jpeg", "png", "bmp", "gif"),
 *           image/height, image/width (as stored, before EXIF orientation), image/class/label,
 *           image/class/text (the class folder's name), image/filename (relative to src);
 *   IDX:    image/encoded (PNG, lossless), image/format "png", image/height, image/width,
 *           image/class/label (and image/class/text when class_names are given);
 *   CSV, NPY: x (float list: the row's features, flattened) and label (int64 class id, or a
 *           float list for regression), label/text when the classes have names.
 * Shard i holds records [i n / N, (i + 1) n / N) of the (shuffled) order. Errors name the
 * file (and record); KILN_ERR_INVALID for bad options, KILN_ERR_FORMAT for bad input, and
 * KILN_ERR_IO when `to` already holds NAME.tfrecord-* shards (without force) or cannot be
 * written. */
kiln_status kiln_data_convert(const kiln_convert_options *o, kiln_convert_result *res);

/* ---- inspecting shards ---- */

typedef struct {
    char key[256];
    kiln_feat_kind kind;          /* of its first appearance */
    int mixed;                    /* other records give it another kind */
    int64_t records;              /* records holding it */
    int64_t min_n, max_n;         /* values per record (bytes: strings per record) */
    int64_t min_bytes, max_bytes; /* bytes features: the first string's length */
    char format[8];               /* bytes features: the image format of the first value, or "" */
} kiln_inspect_feature;

typedef struct {
    int64_t records; /* intact records */
    int64_t bad;     /* damaged records (checksums, framing, not an Example) */
    int files;
    kiln_inspect_feature *features; /* [num_features], by key (malloc'd) */
    int num_features;
    int truncated_features; /* more distinct keys than listed (at most 1024) */
    int64_t *histogram;     /* [num_classes] records per class id of label_key (malloc'd) */
    int num_classes;
    int64_t out_of_range;  /* label values < 0 or >= 65536, not in the histogram */
    char **class_text;     /* [num_classes] the first name seen per class (text_key), or NULL */
    const char *label_key; /* the label key used (static or the caller's), or NULL */
} kiln_inspect_result;

/* Called for every intact record among the first `first` of each call, and for every bad one
 * (ex NULL, msg the error naming the file and byte offset). Return nonzero to stop. */
typedef int (*kiln_inspect_fn)(void *ctx, const char *file, int64_t index, int64_t offset,
                               const kiln_example *ex, const char *msg);

/* Reads files [n] record by record (compression: kiln_tfrecord_compression, AUTO per file),
 * checking both checksums of every record and that it parses as an Example. Reading goes on
 * past a record whose data checksum fails; a damaged length or a truncated file ends that
 * file. label_key gives the class histogram (its first int64 value per record), text_key the
 * class names; label_key NULL: image/class/label (names image/class/text) when the first
 * record has it, else label (names label/text). Returns
 * KILN_OK even when records are bad (res->bad counts them); an error only when a file cannot
 * be opened or memory runs out. Free res with kiln_inspect_result_free. */
kiln_status kiln_tfrecord_inspect(const char *const *files, int n, int compression,
                                  const char *label_key, const char *text_key, int64_t first,
                                  kiln_inspect_fn fn, void *ctx, kiln_inspect_result *res);
void kiln_inspect_result_free(kiln_inspect_result *res);

#endif

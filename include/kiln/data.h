/* kiln/data.h — datasets from IDX, CSV and NPY files (in memory) and from image folders and
 * TFRecord shards (read on demand), a seeded validation split, and a batch loader (per-epoch
 * seeded shuffle, normalization, final partial batch, a pool of worker threads that make
 * batches ahead, and augmentation of the training split (kiln/augment.h)).
 *
 * A kiln_dataset is n rows. One row's features have shape x_shape (IDX images [1, rows, cols],
 * CSV [num_features], NPY the array's trailing dims); labels are int32 class ids [n], float32
 * targets [n, k] (regression), or absent. Features keep their file's type when it is u8 (IDX
 * images, '|u1' arrays: 4x less memory than float32) and are float32 otherwise; batches are
 * always float32, converted and normalized by the loader as it copies them.
 *
 * Ownership: a dataset is reference-counted. kiln_data_split and kiln_dataset_subset return
 * views (a list of row indices into the same storage, in file order) that stay valid after
 * their parent is freed; a loader holds a reference too. Free everything with kiln_dataset_free.
 * Datasets are immutable once made (a source's decoded cache only fills in, under atomics), so
 * any number of threads may read one.
 *
 * Determinism: every random choice is kiln_rng_below(seed, stream, counter) with the streams
 * below. The split depends only on (seed, n, fraction); epoch e's order only on (seed, e, n), so
 * a resumed run seeks to its (epoch, batch) and sees exactly the batches an uninterrupted run
 * would have seen, without replaying earlier epochs.
 *
 * Files: raw or gzip (recognized by the gzip magic, not by the name) for all three formats;
 * at most KILN_DATA_MAX_BYTES decoded per file. Errors name the file and what was wrong
 * (CSV: file:line and the column), and never read outside the data.
 */
#ifndef KILN_DATA_H
#define KILN_DATA_H

#include <stdint.h>

#include "kiln/augment.h"
#include "kiln/image.h"
#include "kiln/status.h"
#include "kiln/tensor.h"

#define KILN_DATA_MAX_BYTES   ((int64_t)4 << 30) /* decoded bytes per file */
#define KILN_DATA_MAX_CLASSES (1 << 24)          /* class ids are in [0, KILN_DATA_MAX_CLASSES) */
/* RNG streams (kept far from parameter indices and node ids, the other users of the seed). */
#define KILN_DATA_STREAM_SPLIT   0xDA7A000000000000ull
#define KILN_DATA_STREAM_SHUFFLE 0xDA7B000000000000ull /* + epoch */

typedef enum {
    KILN_LABEL_NONE = 0, /* unlabeled */
    KILN_LABEL_CLASS,    /* int32 class ids [n] */
    KILN_LABEL_FLOAT,    /* float32 targets [n, k] (regression) */
} kiln_label_kind;

typedef struct kiln_dataset kiln_dataset;

/* ---- making datasets ---- */

/* Arrays already in memory (copied). */
typedef struct {
    int64_t rows;
    kiln_dtype x_dtype; /* KILN_F32 or KILN_U8 */
    kiln_shape x_shape; /* one row's features */
    const void *x;      /* [rows, ...x_shape] */
    kiln_label_kind y_kind;
    int64_t y_width;                /* KILN_LABEL_FLOAT: k */
    const void *y;                  /* int32 [rows] or float [rows, k]; NULL when y_kind is NONE */
    int num_classes;                /* KILN_LABEL_CLASS: 0 means max id + 1 */
    const char *const *class_names; /* [num_classes] or NULL */
} kiln_dataset_desc;
kiln_status kiln_dataset_new(const kiln_dataset_desc *d, kiln_dataset **out);

/* Rows read on demand: a source (image files now; TFRecord records, ... later) that decodes
 * storage row r when asked, so that memory stays bounded whatever the data set's size. The
 * dataset keeps in memory only the labels (4 bytes a class label: every source lists them when
 * it opens, to count the classes and check the ids) and, optionally, a cache of decoded rows.
 * Everything that works on a dataset (views, kiln_dataset_get, channel stats, the loader) works
 * on one of these unchanged.
 *
 * read() is called by any number of threads at once (the loader's worker threads, channel
 * statistics), so it must be reentrant: per-call or per-thread state only, or state behind
 * a lock (the image source keeps a mutex-guarded pool of decoders). It writes the row in the
 * dataset's x_dtype (images: u8 [C, H, W]) and fails with a message that names the file (and
 * the record) of row r. close() frees ctx once the last reference to the dataset is gone. */
typedef struct {
    const char *kind; /* "images", for messages */
    kiln_status (*read)(void *ctx, int64_t r, void *x);
    const char *(*name)(void *ctx, int64_t r); /* the file behind row r (may be NULL) */
    void (*close)(void *ctx);
    /* Optional, for image sources: row r's encoded image (JPEG, PNG, ... bytes) read into d's
     * buffer (kiln_image_read_file), *data [*len] valid until d's next use. The loader decodes
     * it itself when data.augment starts with random_resized_crop, which crops the source image
     * rather than the row read() makes (read()'s geometry is then not used for that split).
     * Reentrant like read(); the caller owns d (one per thread). */
    kiln_status (*encoded)(void *ctx, int64_t r, kiln_image_decoder *d, const void **data,
                           size_t *len);
} kiln_source_ops;

typedef struct {
    int64_t rows;
    kiln_dtype x_dtype; /* KILN_U8 or KILN_F32 */
    kiln_shape x_shape;
    kiln_label_kind y_kind;
    int64_t y_width;
    const void *y; /* int32 [rows] or float [rows, k] (copied); NULL when y_kind is NONE */
    int num_classes;
    const char *const *class_names; /* [num_classes] or NULL (copied) */
    const kiln_source_ops *ops;
    void *ctx;
    /* data.cache: decoded: keep decoded rows in memory, at most this many bytes (rows past the
     * budget are decoded every time); 0: no cache. The memory is reserved but pages are touched
     * only as rows are first read. */
    int64_t cache_bytes;
} kiln_source_desc;
/* Takes ownership of ctx: on failure ops->close(ctx) has been called. */
kiln_status kiln_dataset_from_source(const kiln_source_desc *d, kiln_dataset **out);

/* data.on_error: skip. Reads every row of ds once (filling the decoded cache, if any) and returns
 * a view of the rows that read (in order) in *good, the number left out in *skipped and the
 * first failure's message in first [cap] (may be NULL). Only KILN_ERR_FORMAT and KILN_ERR_IO
 * count as unreadable; other failures (out of memory) stop it. Fails when no row reads. */
kiln_status kiln_data_drop_unreadable(const kiln_dataset *ds, kiln_dataset **good,
                                      int64_t *skipped, char *first, size_t cap);

/* IDX (the MNIST family): images u8 [n, rows, cols] (magic 0x00000803) and labels u8 [n]
 * (0x00000801) as class ids. labels may be NULL (unlabeled). Features are [1, rows, cols]
 * (NCHW with one channel), or [rows * cols] when flat. */
kiln_status kiln_data_load_idx(const char *images, const char *labels, int flat,
                               kiln_dataset **out);

/* CSV with a header row (RFC 4180 quoting, CRLF or LF, blank lines skipped, UTF-8 BOM skipped;
 * unquoted fields are trimmed of spaces and tabs). The label column is chosen by name; every
 * other column is a numeric feature unless feature_columns names the ones to use (in that
 * order). Class labels: when every value is a non-negative integer those are the ids; otherwise
 * each distinct string is a class, ids in byte order of the names (kiln_dataset_class_name). */
typedef struct {
    const char *label;                  /* label column, or NULL: unlabeled */
    kiln_label_kind label_kind;         /* KILN_LABEL_CLASS or KILN_LABEL_FLOAT (k = 1) */
    const char *const *feature_columns; /* NULL: every column but the label */
    int num_feature_columns;
    char delimiter; /* 0 means ',' */
} kiln_csv_options;
kiln_status kiln_data_load_csv(const char *path, const kiln_csv_options *opt, kiln_dataset **out);

/* NPY (format 1.0 and 2.0, C order). Features: '<f4', '<f8' (converted to float32), '|u1' (kept
 * as u8), '<i4', '<i8' (converted to float32); [n, ...] gives rows of the trailing dims ([n]
 * gives rows of shape [1]). Labels (NULL: unlabeled) from a second file with n rows:
 * KILN_LABEL_CLASS takes '<i4', '<i8', '|u1' of shape [n] or [n, 1]; KILN_LABEL_FLOAT takes any
 * of the feature dtypes, [n] (k = 1) or [n, ...] (k = the product of the trailing dims). */
kiln_status kiln_data_load_npy(const char *features, const char *labels, kiln_label_kind kind,
                               kiln_dataset **out);

/* Image files as a source (rows read on demand, u8 [channels, out_h, out_w] through
 * kiln_image_load with spec), labelled by class:
 *   root:     root/<class>/[...]/NAME.{jpg,jpeg,png,bmp,gif} (extensions in any case; names
 *             starting with '.' and other files are ignored; subfolders of a class folder are
 *             searched, at most 16 deep). Classes are the folder names in byte order, ids
 *             0, 1, ... in that order, an empty class folder included; rows go class by class,
 *             each folder's entries in byte order of their names (subfolders where their names
 *             fall).
 *   manifest: a CSV file with a header naming columns "path" and "label" (others ignored), or a
 *             JSONL file (name ending .jsonl or .json, or first byte '{'), one object a line
 *             with "path" (string) and "label" (string or integer). Paths are relative to the
 *             manifest's folder unless absolute. Labels: when every one is a non-negative
 *             integer those are the ids (no names), else each distinct string is a class, ids in
 *             byte order of the names (as kiln_data_load_csv does).
 * classes: when given (a validation or test split takes the training split's names), class
 * folders and label strings are mapped onto those ids, and one that is not among them is an
 * error. Nothing is decoded here: a bad image is found when its row is read (or by
 * kiln_data_drop_unreadable). Errors name the folder or manifest:line. */
typedef struct {
    const char *root;     /* a folder of class folders, or NULL */
    const char *manifest; /* or a manifest file */
    kiln_image_spec spec;
    const char *const *classes; /* [num_classes] or NULL */
    int num_classes;
    int64_t cache_bytes; /* kiln_source_desc.cache_bytes */
} kiln_image_source_options;
kiln_status kiln_data_load_images(const kiln_image_source_options *o, kiln_dataset **out);

/* TFRecord files of tf.train.Example records as a source (rows read on demand; see
 * src/data/tfrecord_source.c and docs/data.md). Opening reads every file once, in the order
 * given, checking every record's checksums, that each feature below is present with its type
 * and size, and the label; it keeps only each record's place (16 bytes) and label. Compressed
 * files (GZIP, ZLIB) are decompressed once into an unlinked temporary file in tmp_dir (NULL:
 * $TMPDIR, else /tmp), since they cannot be read at random. A row is the features in the order
 * given: one image feature (decoded with spec, u8 [C, H, W]; it must be the only one), or raw
 * features concatenated into float32 [sum of their sizes] (a single feature keeps its shape; a
 * single raw-bytes feature stays u8). Class labels are one int64 each; class names come from
 * text_key (a bytes feature; ids no record names are named by their number). Errors name the
 * file and the record (index and byte offset). skip_bad: a record that fails any of these
 * checks is left out and counted in res instead (a damaged length or a truncated file loses the
 * rest of that file, counted as one); images are only decoded when read, so bad image bytes
 * are found later (kiln_data_drop_unreadable). */
typedef enum {
    KILN_TFR_IMAGE = 0, /* one bytes value: an encoded image, decoded with the spec */
    KILN_TFR_FLOAT,     /* a float list */
    KILN_TFR_INT64,     /* an int64 list (converted to float32) */
    KILN_TFR_RAW,       /* one bytes value of numel bytes, each a u8 feature */
} kiln_tfr_decode;

typedef struct {
    const char *key; /* the tf.train.Example feature key */
    kiln_tfr_decode decode;
    int64_t numel;    /* values per record (RAW: bytes); 0: what the first record has */
    kiln_shape shape; /* a single non-image feature's row shape (ndim 0: [numel]) */
} kiln_tfrecord_feature;

typedef struct {
    const char *const *files; /* in reading order (kiln_data_glob sorts them) */
    int num_files;
    int compression; /* kiln_tfrecord_compression (kiln/tfrecord.h); AUTO: told per file */
    const kiln_tfrecord_feature *features;
    int num_features;
    kiln_image_spec spec;       /* for an image feature */
    const char *label_key;      /* NULL when unlabeled */
    kiln_label_kind label_kind; /* CLASS: one int64; FLOAT: a float (or int64) list */
    const char *text_key;       /* class names, or NULL */
    const char *const *class_names; /* [num_class_names] names to use (a validation or test
                                       split takes the training split's), or NULL */
    int num_class_names;
    int num_classes;            /* 0: the largest id + 1; else ids must be below it */
    int skip_bad;
    int64_t cache_bytes; /* kiln_source_desc.cache_bytes */
    const char *tmp_dir;
} kiln_tfrecord_source_options;

typedef struct {
    int64_t rows;    /* records indexed */
    int64_t records; /* records read (with their checksums intact) */
    int files;
    int compressed;  /* a decompressed copy was made */
    int64_t skipped; /* skip_bad: records left out */
    char first[512]; /* the first one's message */
} kiln_tfrecord_source_result;

kiln_status kiln_data_load_tfrecord(const kiln_tfrecord_source_options *o, kiln_dataset **out,
                                    kiln_tfrecord_source_result *res);

/* The regular files a pattern names, in byte order of their paths: a glob ('*', '?', '[...]'),
 * a folder (every file in it not starting with '.'), or a file. KILN_ERR_NOTFOUND when none.
 * Free with kiln_data_free_files. */
kiln_status kiln_data_glob(const char *pattern, char ***files, int *n);
void kiln_data_free_files(char **files, int n);

/* ---- inspecting datasets ---- */

void kiln_dataset_free(kiln_dataset *ds); /* drops one reference; NULL is ignored */
int64_t kiln_dataset_rows(const kiln_dataset *ds);
kiln_shape kiln_dataset_x_shape(const kiln_dataset *ds); /* one row's features */
kiln_dtype kiln_dataset_x_dtype(const kiln_dataset *ds); /* storage: KILN_U8 or KILN_F32 */
kiln_label_kind kiln_dataset_label_kind(const kiln_dataset *ds);
int64_t kiln_dataset_label_width(const kiln_dataset *ds); /* 1 class, k float, 0 none */
int kiln_dataset_num_classes(const kiln_dataset *ds);     /* 0 unless KILN_LABEL_CLASS */
/* The name of class i (CSV string labels), or NULL when the classes are bare ids. */
const char *kiln_dataset_class_name(const kiln_dataset *ds, int i);
/* Row i as float32 (u8 converted, not normalized): x [...x_shape]; y (may be NULL) int32 [1] or
 * float [k]. */
kiln_status kiln_dataset_get(const kiln_dataset *ds, int64_t i, float *x, void *y);
/* Row i in its storage dtype (u8 stays u8): x [x_numel] of kiln_dataset_x_dtype. */
kiln_status kiln_dataset_read(const kiln_dataset *ds, int64_t i, void *x);
/* The file behind row i of a source dataset (NULL for in-memory data or out of range). */
const char *kiln_dataset_row_name(const kiln_dataset *ds, int64_t i);
/* 1 when ds reads its rows on demand (kiln_dataset_from_source). */
int kiln_dataset_is_source(const kiln_dataset *ds);
/* Which row of the file row i of ds is (views map through to the file; -1 when out of range). */
int64_t kiln_dataset_source_row(const kiln_dataset *ds, int64_t i);
/* Per-channel mean and (population) standard deviation of x * scale (scale 0 means 1) over all
 * rows, channel = feature axis 0 (batch axis 1): mean and std are [x_shape[0]]. A constant
 * channel gets std 1 (as scikit-learn's StandardScaler does), so the result can go straight
 * into kiln_normalize. */
kiln_status kiln_dataset_channel_stats(const kiln_dataset *ds, float scale, float *mean,
                                       float *std);

/* ---- subsets ---- */

/* perm [n] = a permutation of 0..n-1 (Fisher-Yates: for i = n-1 down to 1, swap perm[i] and
 * perm[kiln_rng_below(seed, stream, i, i + 1)]). 1 <= n <= UINT32_MAX. */
kiln_status kiln_data_permutation(int64_t n, uint64_t seed, uint64_t stream, int64_t *perm);
/* A view of rows[0..n) of ds (each in [0, rows of ds); repeats allowed), in that order. */
kiln_status kiln_dataset_subset(const kiln_dataset *ds, const int64_t *rows, int64_t n,
                                kiln_dataset **out);
/* Validation split: the first round(n * fraction) entries of
 * kiln_data_permutation(n, seed, KILN_DATA_STREAM_SPLIT) go to *val, the rest to *train. Both are
 * views in file order. 0 < fraction < 1, and neither part may be empty. */
kiln_status kiln_data_split(const kiln_dataset *ds, double fraction, uint64_t seed,
                            kiln_dataset **train, kiln_dataset **val);

/* ---- the loader ---- */

/* x <- (x * scale - mean[c]) / std[c], c = the feature's index on batch axis 1. */
typedef struct {
    float scale;       /* 0 means 1 (u8 images usually 1/255) */
    int channels;      /* 0: no mean/std; else x_shape[0] */
    const float *mean; /* [channels] (copied) */
    const float *std;  /* [channels], each > 0 (copied) */
} kiln_normalize;

typedef struct {
    int64_t batch_size;
    int shuffle;   /* epoch e visits rows in kiln_data_permutation(n, seed, SHUFFLE + e) */
    int drop_last; /* 0: the final partial batch comes with its real row count */
    int prefetch;  /* batches made ahead by worker threads while the caller trains (0: none,
                      the caller makes each batch itself; the bytes are the same either way) */
    int workers;   /* worker threads that decode and augment when prefetch > 0 (0 means 1); they
                      share the batches being made sample by sample */
    uint64_t seed;
    kiln_normalize norm;
    const kiln_augment *augment; /* NULL or no ops: none (copied; see kiln/augment.h) */
    int soft_labels; /* K > 0: class labels come as float [batch, K] probabilities (one-hot,
                        mixed by mixup / cutmix), for a soft-label loss */
    /* Data parallel: shard_count > 1 makes the loader deliver only part shard_rank of every
     * batch: of a batch's n rows (in the epoch's order), rows [n r / N, n (r + 1) / N). So the
     * global batch order is the single process's whatever N is; mixup / cutmix mix within a
     * part. 0 or 1: the whole batch. */
    int shard_rank, shard_count;
} kiln_loader_config;

typedef struct kiln_loader kiln_loader;

/* The loader holds a reference to ds. One thread at a time drives a loader (its worker threads
 * are its own business). Memory: prefetch batches of x and y, plus each worker's scratch (one
 * row, one decoder, augmentation buffers), whatever the data set's size. */
kiln_status kiln_loader_new(const kiln_dataset *ds, const kiln_loader_config *c, kiln_loader **out);
void kiln_loader_free(kiln_loader *l); /* stops and joins the workers; NULL is ignored */
int64_t kiln_loader_batches(const kiln_loader *l); /* per epoch */
/* Seconds kiln_loader_next has spent waiting for batches (or making them itself, without
 * prefetch) since the loader was made: the time a training loop lost to data. */
double kiln_loader_wait_seconds(const kiln_loader *l);
/* Writes the next batch into x float [batch_size, ...x_shape] and y (int32 [batch_size] or
 * float [batch_size, k]; NULL skips labels) and its row count into *rows; returns 1. At the end
 * of an epoch it writes nothing, sets *rows = 0, moves to the next epoch and returns 0.
 * Returns -1 (with a message) on bad arguments or a row that cannot be read (a source's file;
 * the position does not move, so the batch is made again on the next call). */
int kiln_loader_next(kiln_loader *l, float *x, void *y, int *rows);
/* What training sees: the first n samples of epoch `epoch` of a loader over ds with config c
 * (its batch size, seed, shuffle, augmentation and mixing, so a sample and its mixing partner
 * are those of the training batch), before normalization: x [n, ...x_shape] in the data's units
 * (0..bound: 255 for u8 data, 1 for float), malloc'd. Labels as probabilities probs [n, *k]
 * (one-hot unless mixed; NULL and *k = 0 when unlabeled). For `kiln data preview` and the
 * TensorBoard image of augmented samples. */
kiln_status kiln_loader_preview(const kiln_dataset *ds, const kiln_loader_config *c, int n,
                                int64_t epoch, float **x, float **probs, int *k, float *bound);
/* Rows that part `shard` of `shards` gets of batch b of an epoch of n rows in batches of
 * batch_size (kiln_loader_config.shard_count; shards <= 1: the whole batch's rows). */
int64_t kiln_loader_shard_rows(int64_t n, int64_t batch_size, int64_t b, int shard, int shards);
/* Makes batch `batch` of epoch `epoch` the next one delivered (0 <= batch <= batches per
 * epoch; batch == batches per epoch means the end of that epoch). */
kiln_status kiln_loader_seek(kiln_loader *l, int64_t epoch, int64_t batch);
/* Where the next kiln_loader_next call reads: what a checkpoint stores to resume exactly. */
void kiln_loader_position(const kiln_loader *l, int64_t *epoch, int64_t *batch);

#endif

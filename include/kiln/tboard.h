/* kiln/tboard.h — TensorBoard event files, written by kiln (DESIGN.md §3).
 *
 * A kiln_tb_writer appends to one events.out.tfevents.<time>.<host> file: TFRecord framing
 * (kiln/tfrecord.h) around tensorflow.Event protobufs (proto/), the bytes TF2's summary writer
 * produces, so TensorBoard (and anything else that reads TF event files) reads them as its own.
 * The first record is the file version "brain.Event:2"; then one Event per summary value, each
 * written with a single writev() on an O_APPEND descriptor: a concurrent reader (a live
 * TensorBoard) sees whole records, and a record survives a crash of the process once its call
 * has returned. Nothing is buffered, so there is no flush; the file is not fsync'ed.
 *
 * Every value is a TensorProto tagged with the plugin that reads it, as TF2 writes them:
 *
 *               tensor                                   plugin        data class
 *   scalars     rank-0 DT_FLOAT (float_val)              "scalars"     DATA_CLASS_SCALAR
 *   histograms  [k, 3] DT_DOUBLE: left, right, count     "histograms"  DATA_CLASS_TENSOR
 *   images      [3] DT_STRING: width, height, PNG bytes  "images"      DATA_CLASS_BLOB_SEQUENCE
 *   text        rank-0 DT_STRING (Markdown)              "text"        DATA_CLASS_TENSOR
 *   hparams     a [0] DT_FLOAT placeholder; the data is the plugin content (HParamsPluginData)
 *
 * The SummaryMetadata (plugin name, content, data class, description) goes on the first value of
 * each tag in a file only, as TF does; readers keep the first metadata they see for a tag.
 *
 * Writers are not thread-safe: one thread per writer. Errors name the file and the reason
 * ("disk full" for ENOSPC); after a failed write the file may end in a partial record, which
 * readers report as truncated.
 */
#ifndef KILN_TBOARD_H
#define KILN_TBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/config.h"
#include "kiln/status.h"

typedef struct kiln_tb_writer kiln_tb_writer;

/* Makes dir (and missing parents) and a new event file in it named
 * events.out.tfevents.<unix seconds, 10 digits>.<host>, with ".2", ".3", ... appended while the
 * name is taken (it is created with O_EXCL, so concurrent writers never share a file), and
 * writes the file-version record. On failure *out is NULL. */
kiln_status kiln_tb_open(const char *dir, kiln_tb_writer **out);
void kiln_tb_close(kiln_tb_writer *w); /* NULL is a no-op */
const char *kiln_tb_path(const kiln_tb_writer *w);

/* tag: 1 to 1024 bytes. step: the x axis (kiln uses the global optimizer step). The wall time
 * of each event is now. */
kiln_status kiln_tb_scalar(kiln_tb_writer *w, const char *tag, int64_t step, float value);
/* A histogram of values[0..n) in KILN_TB_BUCKETS buckets (kiln_tb_histogram_buckets). */
kiln_status kiln_tb_histogram(kiln_tb_writer *w, const char *tag, int64_t step, const float *values,
                              size_t n);
/* An RGB image (rgb[height][width][3], 1 <= width, height <= 16384), PNG-encoded (stb).
 * description (Markdown, may be NULL) is shown under the image card. */
kiln_status kiln_tb_image(kiln_tb_writer *w, const char *tag, const char *description, int64_t step,
                          const unsigned char *rgb, int width, int height);
/* Markdown text (the Text tab renders it). */
kiln_status kiln_tb_text(kiln_tb_writer *w, const char *tag, int64_t step, const char *markdown);
/* A SessionLog START event at step: TensorBoard's loader drops the points of this run (this
 * folder) at steps >= step that came before it. kiln writes it when a run resumes from a
 * checkpoint, at the first step the resumed run will log again. */
kiln_status kiln_tb_session_start(kiln_tb_writer *w, int64_t step);

/* ---- histograms ---- */

#define KILN_TB_BUCKETS 30
/* TF2's tf.summary.histogram buckets: k equal-width buckets from min to max of the finite
 * values, each row [left edge, right edge, count] in out[k * 3]; a value goes to bucket
 * floor((v - min) / width), the maximum to the last one. All values equal: k buckets
 * [v, v, .], every count in the first. Non-finite values are left out. Returns the number of
 * values counted; when it is 0 nothing is written to out (TF writes a [0, 3] tensor then). */
size_t kiln_tb_histogram_buckets(const float *values, size_t n, int k, double *out);

/* ---- HParams (the plugin's session_start_info / session_end_info / experiment tags) ---- */

typedef enum { KILN_TB_HP_NUMBER = 0, KILN_TB_HP_STRING, KILN_TB_HP_BOOL } kiln_tb_hp_type;
typedef struct {
    char *name; /* "optimizer.adam.learning_rate" */
    kiln_tb_hp_type type;
    double number;
    char *string;
    int boolean;
} kiln_tb_hparam;
typedef struct {
    kiln_tb_hparam *items;
    int n, cap;
} kiln_tb_hparams;

/* Flattens a resolved config into hyperparameters, one per scalar leaf, named by its key path:
 * "optimizer.adam.learning_rate" (number), "data.shuffle" (bool), "model.layers[1].dense.units";
 * a list of scalars is one string ("model.input" = "[1, 28, 28]"); a one-key map holding a map
 * (the choices: loss, optimizer, schedule, each layer and metric) also gives its path the
 * chosen name ("optimizer" = "adam", "model.layers[0]" = "flatten"). Quoted scalars are
 * strings; true/false are bools; numbers (YAML 1.2 core) are numbers; the rest are strings.
 * "description" is left out (free text, not a hyperparameter). */
kiln_status kiln_tb_hparams_from_config(const kiln_cfg *cfg, kiln_tb_hparams *out);
void kiln_tb_hparams_free(kiln_tb_hparams *h);

typedef enum {
    KILN_TB_STATUS_UNKNOWN = 0,
    KILN_TB_STATUS_SUCCESS = 1,
    KILN_TB_STATUS_FAILURE = 2,
    KILN_TB_STATUS_RUNNING = 3,
} kiln_tb_status;

/* The session group of a run with these hyperparameters (32 hex digits): a hash of every
 * hyperparameter but those that do not change what a run learns or that repeated trials vary
 * (seed, train.threads, log.*, train.checkpoint.*, train.export.*), in name order. Runs with the
 * same group are trials of the same hyperparameters: TensorBoard's HParams tab shows them as one
 * row (their metrics aggregated) with the sessions inside. */
kiln_status kiln_tb_hparams_group(const kiln_tb_hparams *hp, char out[33]);

/* "_hparams_/session_start_info": this run's hyperparameters. model_uri (may be NULL): where
 * its checkpoints are; group_name: its session group (NULL: kiln_tb_hparams_group of hp);
 * start_time: seconds since the Unix epoch. */
kiln_status kiln_tb_hparams_start(kiln_tb_writer *w, const kiln_tb_hparams *hp,
                                  const char *model_uri, const char *group_name, double start_time);
/* "_hparams_/session_end_info". */
kiln_status kiln_tb_hparams_end(kiln_tb_writer *w, kiln_tb_status status, double end_time);

/* A metric of the experiment summary: the scalar tag `tag` in the run "<session>/<group>". */
typedef enum {
    KILN_TB_DATASET_UNKNOWN = 0,
    KILN_TB_DATASET_TRAINING,
    KILN_TB_DATASET_VALIDATION
} kiln_tb_dataset;
typedef struct {
    const char *group;        /* "validation" */
    const char *tag;          /* "epoch_accuracy" */
    const char *display_name; /* "val_accuracy" (may be NULL) */
    kiln_tb_dataset dataset;
} kiln_tb_metric_info;

/* Keeps the HParams experiment summary ("_hparams_/experiment") of the TensorBoard log folder
 * dir (kiln's runs folder) up to date: the union of the hyperparameters and metrics of
 * every run that called it. The summary lives in dir/events.out.tfevents.<time>.<host>.experiment;
 * this reads the newest such file, and when hp or metrics add anything (a hyperparameter, a
 * value that widens one's domain, a metric), writes a new file with the union (named so that it
 * sorts last) and removes the older ones. Each hyperparameter has its domain over those runs (an
 * interval [min, max] for numbers, the discrete set of values seen for strings and bools) and
 * `differs` when it has had two or more values. Callers in several
 * processes are serialized by an exclusive flock on dir. A damaged summary file counts as
 * absent. *changed (may be NULL) says whether a new file was written. */
kiln_status kiln_tb_experiment_update(const char *dir, const char *name, const kiln_tb_hparams *hp,
                                      const kiln_tb_metric_info *metrics, int n_metrics,
                                      int *changed);

/* ---- Embedding Projector ---- */

/* Writes the projector's files for run folder run_dir, each atomically:
 *   projector/tensors.tsv     rows lines of dim tab-separated values (emb[rows][dim])
 *   projector/metadata.tsv    one line per row (meta[row * n_cols + col]), after a header of
 *                             the column names when n_cols > 1 (the projector's rule); tabs and
 *                             newlines in values become spaces
 *   projector_config.pbtxt    one embedding named tensor_name pointing at both files
 * TensorBoard's Projector tab reads projector_config.pbtxt from each run's folder. */
kiln_status kiln_tb_projector_write(const char *run_dir, const char *tensor_name, const float *emb,
                                    int64_t rows, int64_t dim, const char *const *col_names,
                                    int n_cols, const char *const *meta);

#endif

/* kiln/export.h — servable packages: what `kiln export` writes and `kiln serve` loads.
 *
 * Layout (DESIGN.md §3):
 *   <base>/<version>/model.json            signature, preprocessing, class names, the graph
 *   <base>/<version>/weights.safetensors   the inference weights
 * <version> is a positive integer without leading zeros ("1", "2", ..., as TF Serving and Triton
 * expect). A version folder appears under its final name only when it is complete: export writes
 * <base>/.tmp-<version>-<pid>-<random>/, fsyncs both files and that folder, renames it to
 * <base>/<version> with RENAME_NOREPLACE and fsyncs <base>. So a reader listing <base> sees
 * complete versions only, a crash leaves at most a .tmp-* folder (readers ignore it), and an
 * existing version is never overwritten, not even an empty folder of that name.
 *
 * model.json (format_version 1), written by kiln, pretty-printed:
 *   {"format": "kiln-servable", "format_version": 1, "kiln_version": "0.1.0",
 *    "name": "fashion-mnist", "version": 3, "created": "2024-05-01T12:34:56Z",
 *    "source": {"run": "/abs/path/of/the/run", "checkpoint": "step-4220"},   (nulls when unknown)
 *    "task": "classification",                                   (or "regression")
 *    "inputs":  [{"name": "input", "dtype": "FP32", "shape": [-1, 1, 28, 28]}],
 *    "outputs": [{"name": "output", "dtype": "FP32", "shape": [-1, 10]},
 *                {"name": "probabilities", "dtype": "FP32", "shape": [-1, 10]}],
 *    "class_names": ["T-shirt/top", "Trouser", ...],             (or null)
 *    "preprocessing": {"scale": 0.003921569, "mean": null, "std": null},
 *    "config": {"seed": 1, "model": {"input": [1, 28, 28], "layers": [...]},
 *               "loss": {"softmax_cross_entropy": {"label_smoothing": 0}}},
 *    "onnx": {"file": "model.onnx", "opset": 17, "ir_version": 8}}   (only with model.onnx)
 *
 *  - shape: -1 is the batch dimension (any size); the rest is one row.
 *  - outputs: "output" is the last layer's value (logits for a classifier, predictions for a
 *    regression). "probabilities" is there when the model was trained with a cross-entropy
 *    loss: softmax over the last axis for softmax_cross_entropy, sigmoid for
 *    binary_cross_entropy.
 *  - class_names: one name per class (per output; two for a single-logit binary model), only
 *    where there are probabilities; null when the classes have no names.
 *  - preprocessing: the normalization the training data loader applied to every raw value v of
 *    a row: x = v * scale, then x = (x - mean[c]) / std[c] when mean and std are given, where c
 *    is the channel: a row is cut into len(mean) equal consecutive slices (for an input
 *    [-1, C, H, W], one per channel). The model expects x. A server applies it when a request
 *    carries raw values (0..255 pixels), and passes values through when they are already
 *    normalized; the numbers are float32 written so that they read back exactly, and
 *    kiln_servable_preprocess does the arithmetic of the loader bit for bit.
 *  - config: the part of the run's resolved config that defines the graph, under the keys
 *    config.yaml uses (YAML as JSON): seed, model (input, layers, class_names) and loss. Loading
 *    rebuilds the graph from it with kiln_model_build, as training did, so every parameter name
 *    and shape matches the weights.
 * Readers are strict about every field above (type, range, agreement with the rebuilt graph;
 * errors name the file and the field) and ignore keys they do not know.
 *
 * Sparse tensors (src.sparse, model/sparse.h): a parameter whose zeros make it smaller that way
 * (4 nnz + ceil(n / 8) < 4 n bytes) is stored as two entries instead of "<W>":
 * "<W>.sparse_bitmask" (U8 [ceil(n / 8)], bit b, least significant first, of byte j set when
 * value 8 j + b in C order is not zero) and "<W>.sparse_values" (F32 [nnz], those values in C
 * order), and model.json lists it:
 *   "sparse": {"format": "bitmask",
 *              "tensors": [{"name": "dense_1.kernel", "shape": [784, 128], "nonzeros": 20070}]}
 * The loader densifies them (the same values, zeros as +0); without the field every tensor is
 * dense, as below.
 *
 * weights.safetensors holds exactly one F32 tensor per parameter of the graph under its name
 * (batch-norm moving statistics included; no optimizer slots, no ".ema" copies) and the
 * metadata {"kiln.format": "1"}: it is also a kiln checkpoint without optimizer state, and
 * Python's safetensors reads it as is.
 */
#ifndef KILN_EXPORT_H
#define KILN_EXPORT_H

#include <stdint.h>

#include "kiln/config.h"
#include "kiln/data.h"
#include "kiln/graph.h"
#include "kiln/model.h"
#include "kiln/status.h"

#define KILN_SERVABLE_FORMAT_VERSION 1

/* ---- versions ---- */

/* 1 when name is a version folder's name (a positive integer without leading zeros or sign
 * that fits in int64), with its value in *version (may be NULL); 0 otherwise. */
int kiln_export_parse_version(const char *name, int64_t *version);
/* The complete versions under base (folders named by kiln_export_parse_version holding both
 * model.json and weights.safetensors), ascending, in a new array (free it with kiln_free; NULL
 * when there are none). .tmp-* folders, other names and incomplete folders are skipped.
 * KILN_ERR_NOTFOUND when base does not exist. */
kiln_status kiln_export_list_versions(const char *base, int64_t **versions, int *n);

/* ---- writing ---- */

/* What to export: a model in memory (the trainer's, or one rebuilt from a run). */
typedef struct {
    kiln_model *model;   /* built from cfg; its graph's parameters are initialized */
    const kiln_cfg *cfg; /* the resolved config the model was built from */
    /* NULL: the graph's current parameters. Else kiln_graph_params_size(graph) floats in the
     * graph's layout, e.g. kiln_ema_weights(): exported instead, the graph is not touched. */
    const float *weights;
    kiln_normalize preprocessing;   /* what the data loader applied (scale 0 means 1) */
    const char *const *class_names; /* [n_class_names]; NULL: cfg's model.class_names, if any */
    int n_class_names;
    const char *name;              /* the model's name; NULL: cfg's experiment */
    const char *source_run;        /* recorded in model.json's source; NULL: null */
    const char *source_checkpoint; /* "step-N"; NULL: null */
    int onnx; /* 1: also model.onnx (kiln_onnx_export), written before the version appears */
    /* NULL, or a JSON object whose members are added to model.json after the standard ones
     * (kiln optimize: "optimizations", "quantization"; docs/optimize.md) */
    const char *extra_json;
    /* 1: parameters with enough zeros (pruned kernels) are stored compactly ("Sparse tensors"
     * above); 0: every parameter dense */
    int sparse;
} kiln_export_source;

/* Writes src as version `version` of base_dir (created with its parents when missing); version
 * 0 takes the next after the highest version name under base_dir. The version written goes to
 * *version_out (may be NULL). Writing an existing version is KILN_ERR_INVALID and leaves it as
 * it was; on any failure nothing but a removed temporary folder has touched base_dir.
 *
 * Threads: reads the graph's parameters (or weights) and cfg and writes only files. Several
 * processes may export into one base at once: a version is claimed by the rename, and with
 * version 0 the loser of a race takes the next number. The trainer calls it from the training
 * thread between steps: nothing may write the parameters (or weights) while it runs. */
kiln_status kiln_export_graph(const kiln_export_source *src, const char *base_dir, int64_t version,
                              int64_t *version_out);

/* kiln_export_run (a run folder's checkpoint to a version) is in kiln/run.h. */

/* ---- ONNX (src/model/onnx_export*.c) ----
 * With src.onnx, the version folder also holds model.onnx: the same graph and weights as an
 * ONNX model (ir_version 8, opset 17) with the signature of model.json (input "input", outputs
 * "output" and, for classifiers, "probabilities"; the batch dimension is the symbolic "batch"),
 * the parameters as initializers named as in weights.safetensors. It is written inside the
 * private folder before the rename, so a version never appears without it, and model.json then
 * carries "onnx": {"file": "model.onnx", "opset": 17, "ir_version": 8}. The preprocessing is not
 * part of the graph: ONNX consumers apply model.json's (also in the model's doc_string and its
 * metadata "kiln.preprocessing"). A model with an op that has no ONNX form fails the export
 * (KILN_ERR_FORMAT naming the layer and the op) before anything is written. */
#define KILN_ONNX_FILE "model.onnx"
#define KILN_ONNX_OPSET 17
#define KILN_ONNX_IR_VERSION 8

typedef struct {
    const char *name;                    /* the graph's name (NULL: "kiln") */
    const char *probabilities;           /* "softmax", "sigmoid", or NULL: no such output */
    const kiln_normalize *preprocessing; /* recorded in the metadata (NULL: scale 1) */
    const float *weights;                /* NULL: the graph's parameters */
} kiln_onnx_opts;

/* The model m (its output and what it depends on) as a serialized ONNX ModelProto in a new
 * buffer *bytes of *len bytes (free it with free()). o may be NULL. */
kiln_status kiln_onnx_export(const kiln_model *m, const kiln_onnx_opts *o, void **bytes,
                             size_t *len);

/* ---- loading ---- */

typedef struct kiln_servable kiln_servable;

typedef struct {
    const char *name; /* "input", "output", "probabilities" */
    kiln_dtype dtype; /* KILN_F32 ("FP32" in model.json) */
    kiln_shape shape; /* dims[0] == -1: the batch, any size */
} kiln_servable_tensor;

typedef struct {
    const char *dir;  /* the version folder as given */
    const char *name; /* the model's name */
    int64_t version;  /* the folder's name when it is a version, else model.json's version */
    kiln_task task;
    const char *probabilities; /* "softmax", "sigmoid", or NULL when there is no such output */
    const char *kiln_version, *created;
    const char *source_run, *source_checkpoint; /* NULL when model.json has null */
    /* what dense and conv layers run in: "fp32", "int8", "bf16", or for a bf16 version on a CPU
     * without AVX512-BF16 / AMX-BF16 "fp32 (bf16 version; ...)" (model.json "quantization",
     * kiln optimize: docs/optimize.md) */
    const char *precision;
} kiln_servable_info;

/* Reads <version_dir>/model.json (strictly, see above), rebuilds the graph from its config,
 * loads weights.safetensors (every parameter present with its shape, nothing else) and checks
 * the signature against the graph. Any defect is KILN_ERR_FORMAT (or KILN_ERR_IO /
 * KILN_ERR_NOTFOUND for files that cannot be read) with a message naming the file and the field
 * or tensor; no file content can crash it. *out is NULL on failure. */
kiln_status kiln_servable_load(const char *version_dir, kiln_servable **out);
/* Frees the servable and its cached plans (plans from kiln_servable_plan_new must be freed
 * before). NULL is a no-op. */
void kiln_servable_free(kiln_servable *s);

kiln_servable_info kiln_servable_get_info(const kiln_servable *s);
int kiln_servable_input_count(const kiln_servable *s);                          /* 1 */
const kiln_servable_tensor *kiln_servable_input(const kiln_servable *s, int i); /* NULL: range */
int kiln_servable_output_count(const kiln_servable *s); /* 1, or 2 with probabilities */
const kiln_servable_tensor *kiln_servable_output(const kiln_servable *s, int i);
/* Values per row of an input or output (the product of its shape without the batch). */
int64_t kiln_servable_row_size(const kiln_servable_tensor *t);
/* 0 when the classes have no names. */
int kiln_servable_class_count(const kiln_servable *s);
const char *kiln_servable_class_name(const kiln_servable *s, int i); /* NULL out of range */
/* The loader's normalization (scale is never 0 here; channels 0 when there is no mean/std). */
const kiln_normalize *kiln_servable_preprocessing(const kiln_servable *s);
/* Applies the preprocessing to rows raw rows: raw, x [rows, input row size]; x may be raw. */
kiln_status kiln_servable_preprocess(const kiln_servable *s, const float *raw, float *x,
                                     int64_t rows);
/* The rebuilt model (graph, input and output nodes), e.g. to evaluate an export. */
kiln_model *kiln_servable_model(kiln_servable *s);

/* ---- running ----
 * Threads: a servable never changes after loading except for its plan cache, and a mutex
 * guards that cache and plan compilation, so any thread may ask for plans. A plan runs on one
 * thread at a time. Plans of one servable share its parameters, which inference plans only
 * read, so different plans may run at the same time: give each worker thread its own
 * (kiln_servable_plan_new). */

/* An inference plan for batch rows, compiled once per batch size and kept until
 * kiln_servable_free: the same plan for every caller asking for that size. NULL on error. */
kiln_plan *kiln_servable_plan(kiln_servable *s, int batch);
/* A new inference plan owned by the caller (free it with kiln_plan_free, before the servable). */
kiln_plan *kiln_servable_plan_new(kiln_servable *s, int batch);
/* Runs rows (1 .. the plan's batch) of x [rows, input row size] (already preprocessed) through
 * plan p, a plan of s, and copies out [rows, output row size] and, when the servable has them,
 * probs [rows, output row size]. out or probs may be NULL when not wanted; probs must be NULL
 * without a probabilities output. Rows past `rows` in the plan are zeroed. */
kiln_status kiln_servable_predict(kiln_servable *s, kiln_plan *p, const float *x, int rows,
                                  float *out, float *probs);

#endif

/* kiln/optimize.h — deployment transformations of a servable version (kiln optimize,
 * docs/optimize.md): fold and fuse, int8 post-training quantization, bf16. The result is a new
 * servable version written like kiln export's (atomic, never replacing one), whose model.json
 * records every transformation and its parameters:
 *   "optimizations": [{"fold": {...}}, {"quantize": {"dtype": "int8", ...}}]
 *   "quantization": {"dtype": "int8", "layers": {name: {"input_scale", "input_signed"}}, ...}
 * (kiln/export.h has the rest of the format; the servable loader applies "quantization").
 */
#ifndef KILN_OPTIMIZE_H
#define KILN_OPTIMIZE_H

#include <stdint.h>

#include "kiln/status.h"

typedef struct {
    const char *source;     /* an export version folder (holding model.json) or a run folder */
    const char *checkpoint; /* a run's checkpoint (NULL: the newest; "best"; "step-N") */
    const char *to;         /* the base folder of the new version */
    int fold;               /* fold batch norms, drop dropouts, fuse activations */
    const char *quantize;   /* NULL, "int8" or "bf16" */
    double prune;           /* > 0: one-shot magnitude pruning of every kernel to this sparsity,
                               in (0, 1) (kiln_prune_magnitude; stored sparse in the export) */
    int calibrate;          /* int8: batches of calibration data (0: 8) */
    const char *calibration; /* "minmax" (NULL) or "percentile" */
    double percentile;       /* percentile calibration: 0 means 99.99 */
    const char *data;        /* an experiment config whose data: names the calibration data
                                (NULL: the source run's config.yaml) */
} kiln_optimize_opts;

#define KILN_OPTIMIZE_MAX_LAYERS 512

typedef struct {
    int64_t version;        /* written */
    char dir[4200];         /* <to>/<version> */
    int bn_folded, dropout_removed, act_fused;
    size_t pruned, prunable;  /* --prune: values zeroed, of the values in the kernels */
    int n_lowp, n_fp32;     /* conv/dense layers run in int8 (or bf16) / left in fp32 */
    char lowp_layers[4096]; /* "conv2d_1, conv2d_2, dense_1" */
    char fp32_ops[1024];    /* kinds of ops that stay fp32: "maxpool2d, add, ..." */
    const char *isa;        /* oneDNN's instruction set here */
    int weight_bits;        /* int8 weights: 8 (VNNI/AMX) or 7 */
    const char *precision;  /* what the new version runs in on this CPU */
    char warning[512];      /* "" or what the caller should print (bf16 without hardware) */
    int calibration_rows;
    char calibration_split[32];
} kiln_optimize_report;

/* Runs the transformations o asks for and writes the version. KILN_ERR_INVALID for bad options
 * or a source that cannot be optimized as asked (naming what and where), KILN_ERR_NOTFOUND for
 * a missing source, KILN_ERR_FORMAT for a damaged one; on any failure no version appears. */
kiln_status kiln_optimize(const kiln_optimize_opts *o, kiln_optimize_report *r);

/* ---- the deployment table (kiln optimize --report; src/optimize/report.c) ----
 * One row per variant, a servable version folder, measured as kiln serve runs it: the folder's
 * size on disk, the graph's parameters (and how many are non-zero), the test split's accuracy
 * (and loss), batch-1 latency p50/p99 and batch-64 rows/s (kiln_bench_run in process,
 * concurrency 1). The rows come from versions the command writes (fold, int8) or is given
 * (--variants: e.g. pruned or distilled versions written by other commands). */
typedef struct {
    const char *data;      /* an experiment config for the test split (NULL: the source run's) */
    double bench_seconds;  /* per timing point (0: 2) */
    double warmup_seconds; /* before each point (0: 0.5) */
    int threads;           /* OpenMP threads (0: the online CPUs) */
} kiln_optimize_measure_opts;

typedef struct {
    char name[128]; /* "fp32", "folded", "folded + int8", ... */
    char dir[4200];
    char precision[64]; /* what it runs in here */
    int64_t file_bytes; /* the version folder's files */
    int64_t params, nonzero;
    int64_t test_rows;
    double accuracy; /* NaN for a regression */
    double loss;
    double p50_ms, p99_ms; /* batch 1 */
    double rows_per_s_64;  /* batch 64 */
} kiln_optimize_variant;

/* Measures the version folder dir; name NULL: from its model.json. */
kiln_status kiln_optimize_measure(const char *dir, const char *name,
                                  const kiln_optimize_measure_opts *o, kiln_optimize_variant *v);

#endif

/* servable_internal.h — what the servable writer (export.c) and reader (servable.c) must agree
 * on beyond model.json's text (library-private). */
#ifndef KILN_IO_SERVABLE_INTERNAL_H
#define KILN_IO_SERVABLE_INTERNAL_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln/model.h"
#include "kiln/status.h"

#define KILN_SERVABLE_FORMAT   "kiln-servable"
#define KILN_SERVABLE_JSON     "model.json"
#define KILN_SERVABLE_WEIGHTS  "weights.safetensors"
#define KILN_SERVABLE_JSON_MAX ((size_t)64 << 20) /* bytes; class names make it large at most */

/* The probabilities a model trained with loss (the config's loss name) gets: "softmax" for
 * softmax_cross_entropy, "sigmoid" for binary_cross_entropy, NULL otherwise. */
const char *kiln_servable_prob_kind(const char *loss);
/* Whether n class names fit a model with n_outputs outputs and probabilities prob: one per
 * output, or two for a single sigmoid output (a binary classifier). */
int kiln_servable_class_count_ok(const char *prob, int64_t n_outputs, int64_t n);
/* "<a>/<b>" into out; KILN_ERR_INVALID naming both when it does not fit. */
kiln_status kiln_servable_join(char *out, size_t cap, const char *a, const char *b);

/* model.json's "quantization" section (servable_lowp.c) applied to m's graph; *precision is
 * what the layers run in here ("fp32", "int8", "bf16", or the fp32 fallback of a bf16 version). */
kiln_status kiln_servable_apply_lowp(const cJSON *q, kiln_model *m, const char *json_path,
                                     const char **precision);

#endif

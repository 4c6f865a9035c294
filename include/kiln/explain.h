/* kiln/explain.h — attributions: which parts of an input a model's answer depends on.
 *
 * Every gradient method runs through a plan compiled with kiln_plan_opts.input_grads: the
 * gradient root is the model's output [B, K], seeded per row with d(target)/d(output) (a one-hot
 * row for a logit, p_t (e_t - p) for a softmax probability), and backward computes the gradient
 * with respect to the input and nothing for the parameters. Plans are compiled once per batch
 * size (and Grad-CAM layer) and kept by the explainer, and the work of a method is batched:
 * integrated gradients' steps, SmoothGrad's samples and occlusion's windows are rows of one
 * plan, and saliency, gradient x input and Grad-CAM take several inputs per run.
 *
 * Methods (x is one input row in the model's input space, after preprocessing):
 *   saliency      |d f / d x|                                       (Simonyan et al. 2014)
 *   grad_x_input  x * d f / d x
 *   integrated_gradients  (x - b) * sum_k w_k d f / d x (b + a_k (x - b)), a_k = k / (n - 1),
 *                 trapezoid weights (w = 1/(n-1), halved at both ends); baseline b black (the
 *                 model input of an all-zero raw input), blurred (Gaussian, sigma blur_sigma
 *                 pixels) or uniform (U(min x, max x)); completeness error
 *                 |sum(attr) - (f(x) - f(b))| / |f(x) - f(b)|                (Sundararajan 2017)
 *   smoothgrad    mean over samples of d f / d x (x + N(0, (sigma (max x - min x))^2))
 *                                                                   (Smilkov et al. 2017)
 *   gradcam       relu(sum_c alpha_c A_c), alpha_c = the mean over i, j of d f / d A_cij, with A
 *                 [C, h, w] a conv layer's output; upsampled bilinearly (align_corners false) to
 *                 the input's H x W
 *                                                                   (Selvaraju et al. 2017)
 *   gradcam_pp    the same with Grad-CAM++'s weights: alpha = g^2 / (2 g^2 + sum_ij A * g^3),
 *                 w_c = sum_ij alpha relu(g)                         (Chattopadhay et al. 2018)
 *   occlusion     per element, the mean over the windows (window x window, every stride) that
 *                 cover it of f(x) - f(x with the window set to the black baseline)
 * f is the target's logit (or with probability, its probability). Attributions have the input
 * row's shape, except Grad-CAM's: [H, W] (the last two dimensions of the row).
 */
#ifndef KILN_EXPLAIN_H
#define KILN_EXPLAIN_H

#include <stdint.h>

#include "kiln/export.h"
#include "kiln/graph.h"
#include "kiln/sbuf.h"
#include "kiln/status.h"

typedef enum {
    KILN_EXPLAIN_SALIENCY = 0,
    KILN_EXPLAIN_GRAD_X_INPUT,
    KILN_EXPLAIN_INTEGRATED_GRADIENTS,
    KILN_EXPLAIN_SMOOTHGRAD,
    KILN_EXPLAIN_GRADCAM,
    KILN_EXPLAIN_GRADCAM_PP,
    KILN_EXPLAIN_OCCLUSION,
    KILN_EXPLAIN_METHOD_COUNT
} kiln_explain_method;

/* "saliency", "grad_x_input", "integrated_gradients", "smoothgrad", "gradcam", "gradcam_pp",
 * "occlusion" (also "ig" and "gradcam++"); KILN_EXPLAIN_METHOD_COUNT when unknown. */
kiln_explain_method kiln_explain_method_from_name(const char *name);
const char *kiln_explain_method_name(kiln_explain_method m);
/* The names, comma separated, for messages. */
const char *kiln_explain_method_list(void);

typedef enum {
    KILN_BASELINE_BLACK = 0,
    KILN_BASELINE_BLURRED,
    KILN_BASELINE_UNIFORM,
    KILN_BASELINE_COUNT
} kiln_explain_baseline;
kiln_explain_baseline kiln_explain_baseline_from_name(const char *name);
const char *kiln_explain_baseline_name(kiln_explain_baseline b);

/* Zeros give the defaults written after each field. */
typedef struct {
    kiln_explain_method method;
    int target;        /* the output to explain; -1: the predicted class (argmax of the output) */
    int probability;   /* 1: f is the probability (softmax or sigmoid), 0: the logit / output */
    const char *layer; /* Grad-CAM: a node name; NULL: the last conv2d the output depends on */
    int steps;         /* integrated gradients: points on the path (>= 2; 0: 64) */
    kiln_explain_baseline baseline; /* integrated gradients: black */
    float blur_sigma;               /* blurred baseline: pixels (0: 5) */
    float sigma;                    /* SmoothGrad: noise as a fraction of max x - min x (0: 0.15) */
    int samples;                    /* SmoothGrad: 0: 32 */
    int window;                     /* occlusion: window side (0: 4) */
    int stride;                     /* occlusion: 0: 2 */
    uint64_t seed;                  /* noise and uniform baselines */
    int batch; /* rows per plan run (0: 128 for input rows of up to 4096 values, else 64) */
} kiln_explain_opts;

typedef struct {
    int target;           /* the output explained */
    int predicted;        /* argmax of the output */
    float score;          /* f(x) */
    float probability;    /* the target's probability (NaN without a probability output) */
    float baseline_score; /* integrated gradients: f(baseline); NaN otherwise */
    double completeness;  /* integrated gradients' completeness error; NaN otherwise */
    int64_t size;         /* values of the attribution (the row's, or H * W for Grad-CAM) */
    const char *layer;    /* Grad-CAM: the layer used; NULL otherwise */
} kiln_explain_result;

typedef struct kiln_explainer kiln_explainer;

/* An explainer of the model whose input node is input and whose output node is output (logits
 * or predictions, [B, K]); probabilities: "softmax", "sigmoid" or NULL (what model.json says).
 * The graph's parameters must be loaded; the explainer compiles its own plans (freed with it)
 * and only reads them, so it may run beside inference plans of the same graph. One thread at a
 * time per explainer. NULL on error (kiln_last_error). */
kiln_explainer *kiln_explainer_new(kiln_graph *g, kiln_node *input, kiln_node *output,
                                   const char *probabilities);
void kiln_explainer_free(kiln_explainer *e);
/* Values per input row and per output row. */
int64_t kiln_explainer_row_size(const kiln_explainer *e);
int64_t kiln_explainer_output_size(const kiln_explainer *e);

/* The model input of an all-zero raw row (the black baseline and occlusion's fill); NULL:
 * zeros. Copied. */
kiln_status kiln_explainer_set_black(kiln_explainer *e, const float *black);

/* Attributions of n rows x [n, row] (preprocessed): attr [n, row size] (Grad-CAM fills the
 * first H * W of each row's slice), res [n]. Bad options (an unknown layer, a target out of
 * range, Grad-CAM on an input without two spatial dimensions) are KILN_ERR_INVALID. */
kiln_status kiln_explain(kiln_explainer *e, const kiln_explain_opts *o, const float *x, int n,
                         float *attr, kiln_explain_result *res);

/* The building block: d f_t / d x for n rows (any n; run in pieces of batch rows), target[i]
 * per row (-1: predicted). grad [n, row] and score [n] may be NULL; out [n, K] (may be NULL)
 * receives the outputs. */
kiln_status kiln_explain_gradients(kiln_explainer *e, const float *x, int n, const int *target,
                                   int probability, int batch, float *grad, float *score,
                                   float *out);

/* The last conv2d node the output depends on (Grad-CAM's default layer), or NULL. */
const char *kiln_explainer_default_layer(kiln_explainer *e);

/* ---- pictures ----
 * Cubehelix (Green 2011, Bull. Astr. Soc. India 39, 289): lightness rises monotonically with v
 * in [0, 1] while the hue turns; start 0.5, rotations -1.5, hue 1, gamma 1. rgb[3] in 0..255. */
void kiln_explain_cubehelix(float v, unsigned char rgb[3]);
/* A heat map of attr ([C, H, W] summed over C in absolute value, or [H, W] when C is 1) over a
 * grey version of img ([C, H, W] raw values, scaled by its own min and max; NULL: black),
 * magnified scale times: rgb [H * scale][W * scale][3]. The attribution is scaled by its 99th
 * percentile (v, clamped to 1), so one extreme element does not wash out the rest; a pixel is
 * (1 - v) * 0.45 * grey + v * cubehelix(v). */
kiln_status kiln_explain_overlay(const float *attr, int attr_channels, const float *img,
                                 int img_channels, int h, int w, int scale, unsigned char *rgb);

/* ---- exports and files (explain_io.c) ---- */
/* An explainer of a loaded export: its output, its probabilities, and as black the
 * preprocessing of an all-zero raw row. Free it before the servable. */
kiln_explainer *kiln_explainer_from_servable(kiln_servable *s);
/* NPY (version 1.0, little-endian <f4, C order) of v [dims] in a new buffer (free()). */
kiln_status kiln_explain_npy(const float *v, int ndim, const int64_t *dims, void **bytes,
                             size_t *len);
/* A PNG of rgb [h][w][3] in a new buffer (free()). */
kiln_status kiln_explain_png(const unsigned char *rgb, int w, int h, void **bytes, size_t *len);
/* One result as a JSON object: {"method", "target", "class" (class_name or null), "predicted",
 * "score", "probability", "parameters": {...the method's...}, "completeness_error",
 * "baseline_score", "layer"} (null where a value does not apply). */
void kiln_explain_result_json(kiln_sbuf *b, const kiln_explain_opts *o,
                              const kiln_explain_result *r, const char *class_name);

#endif

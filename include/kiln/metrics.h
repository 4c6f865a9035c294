/* kiln/metrics.h — evaluation metrics accumulated batch by batch over a split.
 *
 * The trainer makes one kiln_metrics per split, calls kiln_metrics_add after each forward with
 * the batch's predictions, labels and mean loss, reads the values at the end of the split and
 * resets for the next. Nothing is allocated after kiln_metrics_new; an add is O(rows * width)
 * (plus O(rows * n_classes) for top-k), a value O(n_classes) or O(n_outputs).
 *
 * Two modes, fixed at creation:
 *  - classification (n_classes >= 2): pred is logits (or probabilities: only the order matters)
 *    [rows, n_classes] and labels int32 class ids [rows]. A binary model with one logit per row
 *    is n_classes = 2, n_outputs = 1: class 1 where logit > 0 (sigmoid > 0.5, Keras'
 *    binary_accuracy), else 0. Metrics: accuracy, top_k_accuracy, precision, recall, f1.
 *  - regression (n_classes = 0): pred and labels are float [rows, n_outputs].
 *    Metrics: mse, mae, r2.
 * "loss" is always reported, first; then the configured metrics in the order given.
 *
 * Definitions (scikit-learn's where it has one):
 *  - loss: sum(mean_loss * rows) / total rows over the batches (the mean over rows of a split
 *    whose batches differ in size, e.g. a partial last batch).
 *  - accuracy: argmax(pred) == label; ties go to the lowest index and a NaN counts as larger
 *    than any number (so argmax is numpy's: the first NaN, else the first maximum).
 *  - top_k_accuracy (k = top_k): the label's rank is the number of classes j whose score beats
 *    it, where j beats the label when pred[j] > pred[label], or they are equal and j < label
 *    (the same order as argmax, NaN largest); a hit is rank < k. k >= n_classes always hits.
 *    top_k_accuracy with k = 1 equals accuracy. With one logit it is accuracy for k = 1 and 1
 *    for k >= 2.
 *  - precision, recall, f1: MACRO averages over the classes that occur in the split's labels
 *    or predictions (sklearn's default labels = unique_labels(y_true, y_pred)); classes seen in
 *    neither are left out. Per class c, from the confusion matrix: precision = tp / (tp + fp),
 *    recall = tp / (tp + fn), f1 = 2 tp / (2 tp + fp + fn) (the harmonic mean of the two),
 *    each 0 where its denominator is 0 (sklearn's zero_division default, without the warning).
 *    The macro f1 is the mean of the per-class f1s, not the f1 of the macro precision and
 *    recall.
 *  - mse, mae: mean over all rows * n_outputs elements of (pred - target)^2, |pred - target|.
 *  - r2: per output j, 1 - SS_res / SS_tot with SS_tot the sum of squares of the targets around
 *    their mean over the split; then the plain mean over outputs (sklearn's 'uniform_average').
 *    An output whose targets are all equal (SS_tot = 0) scores 1 if its predictions are exact,
 *    else 0 (sklearn's force_finite), NaN if one of them is NaN.
 *    Fewer than 2 rows: NaN (sklearn warns and returns NaN).
 * All sums are kept in double and updated row by row in row order (Welford for the target
 * means and SS_tot), so every value depends only on the sequence of rows, never on how they
 * were cut into batches: adding a split in batches gives bit-identical values to adding it at
 * once.
 *
 * Non-finite values are accepted and counted: a NaN prediction makes mse/mae/r2 NaN and is an
 * argmax winner as above; a NaN mean_loss makes loss NaN. kiln_metrics_nonfinite_rows tells the
 * caller how many rows had a NaN or Inf prediction, so that it can decide what to do. Before
 * the first row every value is NaN.
 *
 * The confusion matrix is kept for n_classes <= KILN_METRICS_MAX_CONFUSION (8 MiB of counts);
 * above that only the per-class counts that precision/recall/f1 need are kept and
 * kiln_metrics_confusion returns NULL.
 */
#ifndef KILN_METRICS_H
#define KILN_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "kiln/status.h"

#define KILN_METRICS_MAX_CONFUSION 1024

typedef struct kiln_metrics kiln_metrics;

/* n_classes: >= 2 for classification (at most KILN_DATA_MAX_CLASSES, kiln/data.h), 0 for
 * regression.
 * n_outputs: values per row of pred: n_classes, or 1 for a binary model with one logit
 * (n_classes = 2); the number of targets per row (>= 1) for regression.
 * names[n_names]: the metrics to report after "loss", as the config spells them (no duplicates,
 * each valid for the mode); n_names may be 0. top_k: k for top_k_accuracy (>= 1), ignored
 * unless it is named.
 * Returns NULL with a message for an unknown name (the message lists the valid ones), a name
 * of the other mode, a duplicate, bad sizes, or out of memory. */
kiln_metrics *kiln_metrics_new(int n_classes, int64_t n_outputs, const char *const *names,
                               int n_names, int top_k);
void kiln_metrics_free(kiln_metrics *m);
/* Forgets every row (the start of a split); keeps the configuration. */
void kiln_metrics_reset(kiln_metrics *m);

/* Adds one batch: pred [rows, n_outputs] float; labels int32 [rows] (classification) or float
 * [rows, n_outputs] (regression); mean_loss the batch's mean loss. rows = 0 adds nothing.
 * A label outside [0, n_classes) is KILN_ERR_INVALID naming the batch row, its row in the split
 * and the label; on any error nothing of the batch is added. */
kiln_status kiln_metrics_add(kiln_metrics *m, const float *pred, const void *labels, int rows,
                             float mean_loss);
/* The same for a classifier trained on probability labels probs [rows, n_outputs] (mixup,
 * cutmix): each row counts as its most probable class (the first on a tie). */
kiln_status kiln_metrics_add_probs(kiln_metrics *m, const float *pred, const float *probs,
                                   int rows, float mean_loss);

/* Reported values: "loss", then the configured names in order. */
int kiln_metrics_count(const kiln_metrics *m);
const char *kiln_metrics_name(const kiln_metrics *m, int i); /* NULL out of range */
double kiln_metrics_value(const kiln_metrics *m, int i);     /* NaN out of range */
/* The value of a reported name (exact: "accuracy", not "val_accuracy"); *found (may be NULL)
 * says whether it is reported; NaN when not. */
double kiln_metrics_get(const kiln_metrics *m, const char *name, int *found);

int64_t kiln_metrics_rows(const kiln_metrics *m);           /* rows added since the reset */
int64_t kiln_metrics_nonfinite_rows(const kiln_metrics *m); /* of them, with a NaN/Inf pred */
int kiln_metrics_classes(const kiln_metrics *m);            /* n_classes (0: regression) */
/* [n_classes][n_classes] counts, rows = true class, columns = predicted class; NULL for
 * regression and above KILN_METRICS_MAX_CONFUSION classes. Valid until kiln_metrics_free. */
const int64_t *kiln_metrics_confusion(const kiln_metrics *m);
/* Writes the confusion matrix as a table: a header of predicted classes, one line per true
 * class with its total and recall ("-" when it has none), then a line of predicted totals and
 * one of per-class precision. class_names [n_classes] or NULL (ids; a NULL entry prints its
 * id); names are cut to 16 characters. Writes one line saying why when there is no matrix. */
void kiln_metrics_print_confusion(const kiln_metrics *m, const char *const *class_names, FILE *f);

/* Whether larger is better for a metric name: 1 for accuracy, top_k_accuracy, precision,
 * recall, f1, r2; 0 for loss, mse, mae; -1 for a name that is none of these. The name may carry
 * a "train_", "val_" or "test_" prefix. */
int kiln_metric_higher_is_better(const char *name);
/* name without its "train_", "val_" or "test_" prefix (a pointer into name). */
const char *kiln_metric_base_name(const char *name);

/* Shards of one split (data parallel evaluation): pack each shard's state into
 * kiln_metrics_packed_size doubles, add the vectors element by element over the shards, and
 * unpack the sum: the values are those of one pass over all the rows (counts exactly; sums up
 * to rounding). */
size_t kiln_metrics_packed_size(const kiln_metrics *m);
void kiln_metrics_pack(const kiln_metrics *m, double *v);
void kiln_metrics_unpack(kiln_metrics *m, const double *v);

#endif

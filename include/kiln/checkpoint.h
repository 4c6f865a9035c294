/* kiln/checkpoint.h — training state as safetensors: parameters, optimizer slots and EMA.
 *
 * One file holds every parameter under its own name ("dense_1.kernel", "batch_normalization_1
 * .moving_mean"), each optimizer slot as "<param>.<slot>" ("dense_1.kernel.adam_m"), and the
 * EMA weights as "<param>.ema"; metadata records the format, the optimizer and its iteration
 * count, and whatever the caller adds (the trainer stores its position there too). Python's
 * safetensors library reads it as is. Files are written atomically (temporary name, fsync,
 * rename): a crash leaves the previous file intact.
 *
 * Loading checks the whole file against the model before it changes anything: every expected
 * tensor present, F32, with the model's shape; no tensor the model does not know; the same
 * optimizer. On any mismatch nothing is modified and the message names the tensor.
 */
#ifndef KILN_CHECKPOINT_H
#define KILN_CHECKPOINT_H

#include "kiln/graph.h"
#include "kiln/optim.h"

/* opt and ema may be NULL. meta_kv: n_meta key/value pairs (key0, value0, key1, ...). */
kiln_status kiln_checkpoint_save(const char *path, kiln_graph *g, kiln_optim *opt, kiln_ema *ema,
                                 const char *const *meta_kv, int n_meta);
/* Restores g's parameters (and opt's slots and iteration count, ema's weights and update count,
 * when not NULL: their tensors must then be in the file). */
kiln_status kiln_checkpoint_load(const char *path, kiln_graph *g, kiln_optim *opt, kiln_ema *ema);
/* Only the weights, for evaluation and export: each parameter from "<param>.ema" when use_ema
 * and the file has EMA weights, else from "<param>". Slots in the file are ignored. */
kiln_status kiln_checkpoint_load_weights(const char *path, kiln_graph *g, int use_ema);
/* A metadata value of the file at path, copied into buf (KILN_ERR_NOTFOUND when absent). */
kiln_status kiln_checkpoint_read_meta(const char *path, const char *key, char *buf, size_t cap);

#endif

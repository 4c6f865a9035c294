/* kiln/optim.h — optimizers, learning-rate schedules, gradient clipping and weight EMA.
 *
 * Everything works on the graph's flat buffers (kiln_graph_params / kiln_graph_grads): an
 * update is one pass over n contiguous floats (OpenMP-parallel, vectorized), with the slots
 * (Adam's m and v, momentum, ...) in flat buffers of the same length and offsets, so that
 * "<param>.<slot>" slices line up with the parameters for checkpoints.
 *
 * Conventions (and where they come from):
 *  - SGD: v = momentum v + g; p -= lr v (PyTorch); nesterov: p -= lr (g + momentum v).
 *  - Adam/AdamW: bias-corrected m, v (Kingma & Ba); defaults beta1 0.9, beta2 0.999, eps 1e-7
 *    (Keras; PyTorch uses 1e-8). AdamW applies decoupled weight decay p -= lr wd p
 *    (Loshchilov & Hutter, as in PyTorch's AdamW).
 *  - RMSprop: s = rho s + (1 - rho) g^2; p -= lr g / (sqrt(s) + eps); with momentum, the
 *    step goes through a velocity buffer (PyTorch's formulation), defaults rho 0.9, eps 1e-7.
 *  - weight_decay for SGD, Adam and RMSprop is L2 added to the gradient (g += wd p).
 *  - clip_norm > 0 scales all gradients by min(1, clip_norm / ||g||_2) first (global norm).
 *
 * Configuration: a field left 0 takes its default, so beta1, beta2, epsilon and rho cannot be
 * set to a literal 0 (pass a tiny value such as 1e-30f, which differs from 0 only far below
 * float resolution next to any ordinary gradient). kiln_optim_new rejects (NULL, with a
 * message) an unknown kind, n = 0, non-finite values, weight_decay or clip_norm < 0,
 * momentum, beta1, beta2 or rho outside [0, 1),
 * epsilon < 0, nesterov without momentum, and a non-zero field the kind does not use (momentum
 * for Adam, beta1 for SGD, ...), since an ignored hyperparameter is almost always a mistake.
 */
#ifndef KILN_OPTIM_H
#define KILN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

typedef enum { KILN_OPT_SGD = 0, KILN_OPT_ADAM, KILN_OPT_ADAMW, KILN_OPT_RMSPROP, KILN_OPT_COUNT } kiln_optim_kind;

typedef struct {
    kiln_optim_kind kind;
    float momentum;  /* SGD, RMSprop: [0, 1), default 0 (no velocity slot) */
    int nesterov;    /* SGD, needs momentum > 0 */
    float beta1;     /* Adam(W): [0, 1), 0 means the default 0.9 */
    float beta2;     /* Adam(W): [0, 1), 0 means the default 0.999 */
    float epsilon;   /* Adam(W), RMSprop: 0 means the default 1e-7 */
    float rho;       /* RMSprop: [0, 1), 0 means the default 0.9 */
    float weight_decay; /* all kinds, >= 0 (L2 in the gradient; decoupled for AdamW) */
    float clip_norm; /* all kinds, >= 0; 0: no clipping */
} kiln_optim_config;

typedef struct kiln_optim kiln_optim;

/* n: number of trainable floats (kiln_graph_trainable_size), > 0. Slots start at zero. */
kiln_optim *kiln_optim_new(const kiln_optim_config *c, size_t n);
void kiln_optim_free(kiln_optim *o);
/* Clips grads in place (when configured), then updates params at learning rate lr and counts
 * one iteration. Returns KILN_ERR_NUMERIC (params, grads, slots and the iteration count
 * untouched) if the gradient norm is not finite, KILN_ERR_INVALID if lr is negative or not
 * finite (lr = 0 is allowed: it is where a warmup starts). */
kiln_status kiln_optim_step(kiln_optim *o, float *params, float *grads, float lr);
/* The gradient norm measured by the last step (before clipping), also when that step failed
 * with KILN_ERR_NUMERIC; 0 before the first step. */
float kiln_optim_last_grad_norm(const kiln_optim *o);
/* Restricts later steps to n [off[i], off[i] + len[i]) ranges of the n floats (frozen
 * parameters: the ranges between get no update, no slot update and no weight decay; their
 * gradients should be 0, which the graph sees to, so the clipping norm is unchanged). n < 0:
 * the whole buffer again (the default). Ranges must be in bounds and not overlap; the arrays are
 * copied. KILN_ERR_INVALID otherwise. */
kiln_status kiln_optim_set_ranges(kiln_optim *o, const size_t *off, const size_t *len, int n);
int64_t kiln_optim_iterations(const kiln_optim *o);
/* When restoring a checkpoint; Adam's next step uses t + 1. A negative t is ignored (and leaves
 * a message). */
void kiln_optim_set_iterations(kiln_optim *o, int64_t t);
/* Slots: Adam(W) "adam_m", "adam_v"; SGD with momentum "momentum"; RMSprop "rms" (+ "momentum"). */
int kiln_optim_slot_count(const kiln_optim *o);
const char *kiln_optim_slot_name(const kiln_optim *o, int i);
float *kiln_optim_slot(kiln_optim *o, int i); /* [n]; NULL (and slot_name NULL) out of range */
/* The configuration in force (defaults filled in). */
const kiln_optim_config *kiln_optim_get_config(const kiln_optim *o);
const char *kiln_optim_kind_name(kiln_optim_kind k);  /* "sgd", "adam", "adamw", "rmsprop"; "?" */
kiln_optim_kind kiln_optim_kind_from_name(const char *name); /* KILN_OPT_COUNT when unknown */

/* Scales g by min(1, max_norm / ||g||) and returns ||g|| before scaling (summed in double).
 * max_norm <= 0 only measures; a non-finite norm is returned with g left as it was. */
float kiln_clip_global_norm(float *g, size_t n, float max_norm);

/* ---- learning-rate schedules: lr(step) from a base lr; step counts from 0 ----
 *
 * Warmup (all kinds but one-cycle, which has its own) overlays the first warmup_steps steps:
 * lr(step) = value(warmup_steps) * step / warmup_steps, so step 0 trains at lr 0. The step and
 * exponential schedules keep counting from step 0 through the warmup (as TF Model Garden's
 * LinearWarmup does); the cosine schedule starts its decay where the warmup ends (t below).
 * A field left 0 takes its default; a non-zero field the kind does not use is rejected by
 * kiln_schedule_validate. */
typedef enum {
    KILN_SCHED_CONSTANT = 0,
    KILN_SCHED_STEP,        /* base * gamma^floor(step / step_size) */
    KILN_SCHED_EXPONENTIAL, /* base * decay_rate^(step / decay_steps), floored when staircase */
    KILN_SCHED_COSINE,      /* after warmup: base * (alpha + (1 - alpha)(1 + cos(pi t)) / 2),
                               t = (step - warmup) / (total_steps - warmup) clamped to [0, 1];
                               needs total_steps > warmup_steps */
    KILN_SCHED_ONE_CYCLE,   /* PyTorch OneCycleLR (cos): from max/div_factor at step 0 up to max
                               at step pct_start*total_steps - 1, then down to
                               max/(div_factor*final_div_factor) at step total_steps - 1 and
                               after; needs pct_start*total_steps > 1 (learning rate only: no
                               momentum cycling) */
    KILN_SCHED_COUNT
} kiln_schedule_kind;

typedef struct {
    kiln_schedule_kind kind;
    int64_t warmup_steps; /* any schedule but one-cycle: linear ramp from 0 to its value at warmup */
    int64_t step_size;    /* step: > 0 */
    float gamma;          /* step: > 0 (default 0.1) */
    int64_t decay_steps;  /* exponential: > 0 */
    float decay_rate;     /* exponential: > 0 (no default) */
    int staircase;        /* exponential */
    int64_t total_steps;  /* cosine, one-cycle */
    float alpha;          /* cosine: final lr as a fraction of base, [0, 1] (default 0) */
    float pct_start;      /* one-cycle: (0, 1), default 0.3 */
    float div_factor;     /* one-cycle: > 0, default 25 */
    float final_div_factor; /* one-cycle: > 0, default 1e4 */
} kiln_schedule;

/* KILN_OK, or KILN_ERR_INVALID with a message naming the schedule and the field. */
kiln_status kiln_schedule_validate(const kiln_schedule *s);
/* The learning rate at step (a negative step counts as 0); base is the optimizer's learning rate
 * (one-cycle's max_lr). NaN, with kiln_schedule_validate's message, for an invalid schedule. */
float kiln_schedule_lr(const kiln_schedule *s, float base, int64_t step);
/* "constant", "step", "exponential", "cosine", "one_cycle"; "?" */
const char *kiln_schedule_kind_name(kiln_schedule_kind k);
/* KILN_SCHED_COUNT when unknown */
kiln_schedule_kind kiln_schedule_kind_from_name(const char *name);

/* ---- exponential moving average of weights ---- */
typedef struct kiln_ema kiln_ema;
/* Starts from a copy of init[0..n). NULL, with a message, when n = 0, init is NULL or decay is
 * outside [0, 1]. */
kiln_ema *kiln_ema_new(size_t n, float decay, const float *init);
void kiln_ema_free(kiln_ema *e);
/* ema = d ema + (1 - d) p with d = min(decay, (1 + t) / (10 + t)), t = updates so far
 * (tf.train.ExponentialMovingAverage with num_updates). */
void kiln_ema_update(kiln_ema *e, const float *params);
float *kiln_ema_weights(kiln_ema *e); /* [n] */
int64_t kiln_ema_updates(const kiln_ema *e);
void kiln_ema_set_updates(kiln_ema *e, int64_t t); /* a negative t is ignored (with a message) */

#endif

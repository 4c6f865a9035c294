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
 */
#ifndef KILN_OPTIM_H
#define KILN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

typedef enum { KILN_OPT_SGD = 0, KILN_OPT_ADAM, KILN_OPT_ADAMW, KILN_OPT_RMSPROP, KILN_OPT_COUNT } kiln_optim_kind;

typedef struct {
    kiln_optim_kind kind;
    float momentum;  /* SGD, RMSprop (default 0) */
    int nesterov;    /* SGD */
    float beta1;     /* Adam(W): default 0.9 (0 means default) */
    float beta2;     /* default 0.999 */
    float epsilon;   /* default 1e-7 */
    float rho;       /* RMSprop: default 0.9 */
    float weight_decay;
    float clip_norm; /* 0: no clipping */
} kiln_optim_config;

typedef struct kiln_optim kiln_optim;

/* n: number of trainable floats (kiln_graph_trainable_size). */
kiln_optim *kiln_optim_new(const kiln_optim_config *c, size_t n);
void kiln_optim_free(kiln_optim *o);
/* Clips grads in place (when configured), then updates params at learning rate lr and counts
 * one iteration. Returns KILN_ERR_NUMERIC (params untouched) if the gradient norm is not finite. */
kiln_status kiln_optim_step(kiln_optim *o, float *params, float *grads, float lr);
/* The gradient norm measured by the last step (before clipping). */
float kiln_optim_last_grad_norm(const kiln_optim *o);
int64_t kiln_optim_iterations(const kiln_optim *o);
void kiln_optim_set_iterations(kiln_optim *o, int64_t t); /* when restoring a checkpoint */
/* Slots: Adam(W) "adam_m", "adam_v"; SGD with momentum "momentum"; RMSprop "rms" (+ "momentum"). */
int kiln_optim_slot_count(const kiln_optim *o);
const char *kiln_optim_slot_name(const kiln_optim *o, int i);
float *kiln_optim_slot(kiln_optim *o, int i); /* [n] */
const char *kiln_optim_kind_name(kiln_optim_kind k);  /* "sgd", "adam", "adamw", "rmsprop" */
kiln_optim_kind kiln_optim_kind_from_name(const char *name); /* KILN_OPT_COUNT when unknown */

/* Scales g by min(1, max_norm / ||g||) and returns ||g|| before scaling. */
float kiln_clip_global_norm(float *g, size_t n, float max_norm);

/* ---- learning-rate schedules: lr(step) from a base lr; step counts from 0 ---- */
typedef enum {
    KILN_SCHED_CONSTANT = 0,
    KILN_SCHED_STEP,        /* base * gamma^floor(step / step_size) */
    KILN_SCHED_EXPONENTIAL, /* base * decay_rate^(step / decay_steps), floored when staircase */
    KILN_SCHED_COSINE,      /* after warmup: base * (alpha + (1 - alpha)(1 + cos(pi t)) / 2),
                               t = (step - warmup) / (total_steps - warmup) clamped to [0, 1] */
    KILN_SCHED_ONE_CYCLE,   /* PyTorch OneCycleLR (cos): from max/div_factor up to max over
                               pct_start of total_steps, then down to max/(div_factor*final_div_factor) */
    KILN_SCHED_COUNT
} kiln_schedule_kind;

typedef struct {
    kiln_schedule_kind kind;
    int64_t warmup_steps; /* any schedule but one-cycle: linear ramp from 0 to its value at warmup */
    int64_t step_size;    /* step */
    float gamma;          /* step (default 0.1) */
    int64_t decay_steps;  /* exponential */
    float decay_rate;     /* exponential */
    int staircase;        /* exponential */
    int64_t total_steps;  /* cosine, one-cycle */
    float alpha;          /* cosine: final lr as a fraction of base (default 0) */
    float pct_start;      /* one-cycle: default 0.3 */
    float div_factor;     /* one-cycle: default 25 */
    float final_div_factor; /* one-cycle: default 1e4 */
} kiln_schedule;

/* The learning rate at step; base is the optimizer's learning rate (one-cycle's max_lr). */
float kiln_schedule_lr(const kiln_schedule *s, float base, int64_t step);
const char *kiln_schedule_kind_name(kiln_schedule_kind k); /* "constant", "step", ... */
kiln_schedule_kind kiln_schedule_kind_from_name(const char *name);

/* ---- exponential moving average of weights ---- */
typedef struct kiln_ema kiln_ema;
/* Starts from a copy of init[0..n). */
kiln_ema *kiln_ema_new(size_t n, float decay, const float *init);
void kiln_ema_free(kiln_ema *e);
/* ema = d ema + (1 - d) p with d = min(decay, (1 + t) / (10 + t)), t = updates so far
 * (tf.train.ExponentialMovingAverage with num_updates). */
void kiln_ema_update(kiln_ema *e, const float *params);
float *kiln_ema_weights(kiln_ema *e); /* [n] */
int64_t kiln_ema_updates(const kiln_ema *e);
void kiln_ema_set_updates(kiln_ema *e, int64_t t);

#endif

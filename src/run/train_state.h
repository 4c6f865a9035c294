/* train_state.h — state.json of a checkpoint: where training stands beyond the weights. */
#ifndef KILN_TRAIN_STATE_H
#define KILN_TRAIN_STATE_H

#include <stdint.h>

#include "kiln/status.h"

typedef struct {
    int64_t step;           /* optimizer updates completed */
    int64_t epoch;          /* the epoch in progress (0-based) */
    int64_t batch;          /* batches of that epoch completed */
    int has_best;           /* early stopping: a best value exists */
    double best;            /* the best monitored value */
    int64_t best_step;
    int64_t wait;           /* evaluations without improvement */
    char best_checkpoint[64]; /* "step-N" holding the best weights, or "" */
    char config_hash[17];
    /* stages: (absent from state.json without them, read back as 0) */
    int64_t stage;       /* the stage in progress (0-based) */
    int64_t stage_step;  /* step at which it began (its schedule counts from there) */
    int64_t stage_epoch; /* epoch at which it began */
} kiln_train_state;

kiln_status kiln_train_state_write(const char *path, const kiln_train_state *s);
kiln_status kiln_train_state_read(const char *path, kiln_train_state *s);

#endif

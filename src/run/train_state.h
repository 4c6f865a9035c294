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
} kiln_train_state;

kiln_status kiln_train_state_write(const char *path, const kiln_train_state *s);
kiln_status kiln_train_state_read(const char *path, kiln_train_state *s);

#endif

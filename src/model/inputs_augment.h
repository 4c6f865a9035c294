/* inputs_augment.h — data.augment and data.workers of a config for inputs.c (library-private). */
#ifndef KILN_MODEL_INPUTS_AUGMENT_H
#define KILN_MODEL_INPUTS_AUGMENT_H

#include "kiln/inputs.h"

/* data.workers: the value, or one per online core when it is 0 (at least 1). */
int kiln_inputs_workers(const kiln_cfg *cfg);
/* Fills in->augment from data.augment and in->train_loader (in->loader plus the augmentation
 * and, when mixup or cutmix is listed, soft labels of the model's width). Errors name the
 * config position of the op. */
kiln_status kiln_inputs_augment(const kiln_cfg *cfg, const kiln_model *m, kiln_inputs *in);

#endif

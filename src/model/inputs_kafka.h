/* inputs_kafka.h — data.source: kafka for inputs.c (library-private; docs/kafka.md). */
#ifndef KILN_MODEL_INPUTS_KAFKA_H
#define KILN_MODEL_INPUTS_KAFKA_H

#include "kiln/inputs.h"

/* Split "train" (data.train.topic, mode data.kafka.mode; the source stays in in->kafka for the
 * trainer's epochs and checkpoints, starting from in->kafka_state when set) or "validation" /
 * "test" (their topic read as a replay snapshot). */
kiln_status kiln_inputs_kafka_split(const kiln_cfg *cfg, const char *split, const kiln_cfg *sp,
                                    const kiln_model *m, kiln_inputs *in, kiln_dataset **out);

#endif

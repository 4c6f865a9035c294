/* inputs_kafka.h — data.source: kafka for inputs.c (library-private; docs/kafka.md).
 *
 * inputs.c reaches inputs_kafka.c only through kiln_inputs_kafka_ops, which kiln_inputs_use_kafka
 * (kiln/inputs.h) installs: a program that never calls it (kiln-serve) links no librdkafka. */
#ifndef KILN_MODEL_INPUTS_KAFKA_H
#define KILN_MODEL_INPUTS_KAFKA_H

#include "kiln/inputs.h"

/* Split "train" (data.train.topic, mode data.kafka.mode; the source stays in in->kafka for the
 * trainer's epochs and checkpoints, starting from in->kafka_state when set) or "validation" /
 * "test" (their topic read as a replay snapshot). */
kiln_status kiln_inputs_kafka_split(const kiln_cfg *cfg, const char *split, const kiln_cfg *sp,
                                    const kiln_model *m, kiln_inputs *in, kiln_dataset **out);

typedef struct {
    kiln_status (*split)(const kiln_cfg *cfg, const char *split, const kiln_cfg *sp,
                         const kiln_model *m, kiln_inputs *in, kiln_dataset **out);
    void (*free)(kiln_inputs *in);
} kiln_inputs_kafka_table;
extern const kiln_inputs_kafka_table *kiln_inputs_kafka_ops; /* inputs.c; NULL until installed */

#endif

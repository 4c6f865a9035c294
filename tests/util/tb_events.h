/* tb_events.h — the tests' own reader of TensorBoard event files.
 *
 * Independent of the library's reader on purpose: it parses the TFRecord framing itself and
 * checks both checksums with a bit-by-bit CRC-32C written from the definition (polynomial
 * 0x82F63B78 reflected, mask = rotate right 15 + 0xA282EAD8), so a bug shared by kiln's writer
 * and reader cannot hide. Every record is decoded as a tensorflow.Event (protobuf-c); the tests
 * then look at every field.
 */
#ifndef KILN_TEST_TB_EVENTS_H
#define KILN_TEST_TB_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "tensorboard/hparams_plugin_data.pb-c.h"
#include "tensorflow/event.pb-c.h"

typedef struct {
    Tensorflow__Event **ev; /* [n], owned */
    int64_t *offset;        /* [n] where each record starts */
    int n;
    char path[1024];
} tb_events;

/* CRC-32C bit by bit, and TFRecord's mask of it. */
uint32_t tb_crc32c_bitwise(const void *data, size_t n);
uint32_t tb_masked_crc(const void *data, size_t n);

/* Loads every event of the file. 0 on success; -1 with a message (naming the offset) in err
 * when a record is damaged, truncated or not an Event. */
int tb_events_load(const char *path, tb_events *out, char *err, size_t cap);
void tb_events_free(tb_events *e);

/* The single summary value of event i (kiln writes one per event), or NULL. */
const Tensorflow__Summary__Value *tb_value(const tb_events *e, int i);
/* The number of values with this tag; *first (may be NULL) gets the index of the first one. */
int tb_count_tag(const tb_events *e, const char *tag, int *first);
/* The hparams plugin content of a value, decoded (free with
 * tensorboard__hparams__hparams_plugin_data__free_unpacked), or NULL. */
Tensorboard__Hparams__HParamsPluginData *tb_hparams_content(const Tensorflow__Summary__Value *v);

/* The event files (events.out.tfevents.*) of dir, sorted by name, into names[cap] (absolute
 * paths, malloc'ed); returns how many. */
int tb_event_files(const char *dir, char **names, int cap);

#endif

/* tb_internal.h — what the TensorBoard writer's files share (library-private): writing an
 * hparams-plugin value, creating an event file at an exact path, reading event files back, and
 * the host name used in file names. */
#ifndef KILN_TRACK_TB_INTERNAL_H
#define KILN_TRACK_TB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/tboard.h"
#include "tensorboard/hparams_plugin_data.pb-c.h"
#include "tensorflow/event.pb-c.h"

/* Creates the event file at exactly path (O_EXCL: KILN_ERR_INVALID when it exists) and writes
 * the version record. */
kiln_status kiln_tb_open_path(const char *path, kiln_tb_writer **out);
/* One value of the hparams plugin under tag (its data is the plugin content). */
kiln_status kiln_tb_write_hparams(kiln_tb_writer *w, const char *tag,
                                  Tensorboard__Hparams__HParamsPluginData *pd);
/* The text printf("%.6g", value) gives, produced without printf (several times faster): fixed
 * notation with trailing zeros removed for 1e-4 <= |value| < 999999.5 (round half to even on
 * exact ties, as glibc does), printf itself outside that range and for NaN and infinities.
 * Returns the length (< 32); out is NUL-terminated. */
int kiln_tb_format_g6(float value, char out[32]);
/* gethostname, with '/' and control characters replaced by '_' ("localhost" when unknown). */
void kiln_tb_hostname(char *out, size_t cap);

/* Calls fn for each Event of an event file in order, with the byte offset of its record; stops
 * early when fn returns nonzero. A damaged or truncated record, or a record that is not an
 * Event, is KILN_ERR_FORMAT naming the file and offset (the events before it were delivered). */
typedef int (*kiln_tb_event_fn)(const Tensorflow__Event *ev, int64_t offset, void *ctx);
kiln_status kiln_tb_read_events(const char *path, kiln_tb_event_fn fn, void *ctx);
/* The same over len bytes in memory; name is used in messages. */
kiln_status kiln_tb_read_events_mem(const void *data, size_t len, const char *name,
                                    kiln_tb_event_fn fn, void *ctx);

#endif

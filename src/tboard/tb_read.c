/* tb_read.c — reading event files back: TFRecord records (both checksums checked) decoded as
 * tensorflow.Event with protobuf-c. Used by the experiment summary (tb_experiment.c) and the
 * tests; a reader of other tools' files gets the same guarantees: any damage is an error with
 * the offset, never a crash. */
#include <stdlib.h>

#include "kiln/tfrecord.h"
#include "tboard/tb_internal.h"

static kiln_status walk(kiln_tfrecord_reader *r, const char *name, kiln_tb_event_fn fn, void *ctx) {
    const void *data;
    size_t len;
    kiln_status st;
    for (;;) {
        int64_t at = kiln_tfrecord_offset(r);
        if ((st = kiln_tfrecord_next(r, &data, &len)) != KILN_OK) break;
        Tensorflow__Event *ev = tensorflow__event__unpack(NULL, len, data);
        if (!ev) {
            st = kiln_error(KILN_ERR_FORMAT,
                            "%s: offset %lld: the record is not a tensorflow.Event message", name,
                            (long long)at);
            break;
        }
        int stop = fn(ev, at, ctx);
        tensorflow__event__free_unpacked(ev, NULL);
        if (stop) break;
    }
    kiln_tfrecord_close(r);
    return st == KILN_ERR_NOTFOUND ? KILN_OK : st;
}

kiln_status kiln_tb_read_events(const char *path, kiln_tb_event_fn fn, void *ctx) {
    kiln_tfrecord_reader *r;
    kiln_status st = kiln_tfrecord_open(path, 0, &r);
    return st ? st : walk(r, path, fn, ctx);
}

kiln_status kiln_tb_read_events_mem(const void *data, size_t len, const char *name,
                                    kiln_tb_event_fn fn, void *ctx) {
    kiln_tfrecord_reader *r;
    kiln_status st = kiln_tfrecord_open_mem(data, len, name, 0, &r);
    return st ? st : walk(r, name, fn, ctx);
}

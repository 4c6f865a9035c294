/* src/tboard/ — TensorBoard event files: the writer (tboard.c), hparams and the
 * experiment summary (tb_hparams.c, tb_experiment.c), images rendered for the image tab
 * (tb_render.c), the embedding projector's files (tb_projector.c) and a reader of event files
 * (tb_read.c). It uses TFRecord framing (src/io/) and the protobuf-c messages under proto/; the
 * trainer's hooks (src/train/tb_hooks.c) decide what to log. Layers: docs/architecture.md.
 *
 * tboard.c — the TensorBoard event-file writer (see kiln/tboard.h).
 *
 * Each call builds its protobuf-c message tree on the stack, packs it into the writer's scratch
 * buffer (grown as needed, kept between calls) and appends it as one TFRecord. The writer
 * remembers which tags it has written (a small open-addressing set of owned strings) so that
 * only a tag's first value carries its SummaryMetadata. Plugin contents are empty for the
 * scalars, histograms, images and text plugins: their PluginData messages at version 0 have no
 * fields set, which serializes to zero bytes.
 */
#include "kiln/tboard.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "kiln/fileio.h"
#include "kiln/tfrecord.h"
#include "tensorboard/hparams_plugin_data.pb-c.h"
#include "tensorflow/event.pb-c.h"
#include "tboard/tb_internal.h"

#define MAX_TAG 1024

struct kiln_tb_writer {
    int fd;
    char *path;
    uint8_t *buf; /* [cap] pack scratch */
    size_t cap;
    char **tags; /* [tag_cap] open addressing, NULL = empty; tag_cap a power of two */
    size_t n_tags, tag_cap;
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* 1 when tag was already written to this file; otherwise records it and returns 0 (-1: out of
 * memory, and the caller writes the metadata again next time, which is harmless). */
static int tag_seen(kiln_tb_writer *w, const char *tag) {
    if (w->tag_cap && w->tags) {
        for (size_t i = hash_str(tag) & (w->tag_cap - 1);; i = (i + 1) & (w->tag_cap - 1)) {
            if (!w->tags[i]) break;
            if (strcmp(w->tags[i], tag) == 0) return 1;
        }
    }
    if (2 * (w->n_tags + 1) > w->tag_cap) { /* keep the load at most 1/2 */
        size_t cap = w->tag_cap ? 2 * w->tag_cap : 64;
        char **t = calloc(cap, sizeof *t);
        if (!t) return -1;
        for (size_t j = 0; j < w->tag_cap; j++) {
            if (!w->tags[j]) continue;
            size_t i = hash_str(w->tags[j]) & (cap - 1);
            while (t[i]) i = (i + 1) & (cap - 1);
            t[i] = w->tags[j];
        }
        free(w->tags);
        w->tags = t, w->tag_cap = cap;
    }
    char *copy = strdup(tag);
    if (!copy) return -1;
    size_t i = hash_str(tag) & (w->tag_cap - 1);
    while (w->tags[i]) i = (i + 1) & (w->tag_cap - 1);
    w->tags[i] = copy, w->n_tags++;
    return 0;
}

static kiln_status write_event(kiln_tb_writer *w, Tensorflow__Event *ev) {
    size_t n = tensorflow__event__get_packed_size(ev);
    if (n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < n) cap *= 2;
        uint8_t *b = realloc(w->buf, cap);
        if (!b)
            return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for an event of %zu bytes",
                              w->path, n);
        w->buf = b, w->cap = cap;
    }
    tensorflow__event__pack(ev, w->buf);
    return kiln_tfrecord_write(w->fd, w->buf, n, w->path);
}

/* The writer of a just-created file: records the version event; on failure removes the file. */
static kiln_status start_file(int fd, const char *path, kiln_tb_writer **out) {
    kiln_tb_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        close(fd);
        unlink(path);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
    }
    w->fd = fd;
    Tensorflow__Event ev = TENSORFLOW__EVENT__INIT;
    ev.wall_time = now_seconds();
    ev.what_case = TENSORFLOW__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2";
    kiln_status st = write_event(w, &ev);
    if (st) {
        unlink(path);
        kiln_tb_close(w);
        return st;
    }
    *out = w;
    return KILN_OK;
}

static int create_excl(const char *path) {
    return open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0666);
}

kiln_status kiln_tb_open_path(const char *path, kiln_tb_writer **out) {
    *out = NULL;
    int fd = create_excl(path);
    if (fd < 0)
        return kiln_error(errno == EEXIST ? KILN_ERR_INVALID : KILN_ERR_IO, "%s: %s", path,
                          strerror(errno));
    return start_file(fd, path, out);
}

void kiln_tb_hostname(char *out, size_t cap) {
    char host[256];
    if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
    host[sizeof host - 1] = 0;
    for (char *p = host; *p; p++)
        if (*p == '/' || (unsigned char)*p < 0x20) *p = '_';
    snprintf(out, cap, "%s", host[0] ? host : "localhost");
}

kiln_status kiln_tb_open(const char *dir, kiln_tb_writer **out) {
    *out = NULL;
    kiln_status st = kiln_mkdirs(dir);
    if (st) return st;
    char host[256];
    kiln_tb_hostname(host, sizeof host);
    long long t = (long long)time(NULL);
    char path[4096 + 320];
    for (int k = 1; k < 1000; k++) {
        int len =
            k == 1 ? snprintf(path, sizeof path, "%s/events.out.tfevents.%010lld.%s", dir, t, host)
                   : snprintf(path, sizeof path, "%s/events.out.tfevents.%010lld.%s.%d", dir, t,
                              host, k);
        if (len < 0 || (size_t)len >= sizeof path)
            return kiln_error(KILN_ERR_INVALID, "%s: path too long", dir);
        int fd = create_excl(path);
        if (fd >= 0) return start_file(fd, path, out);
        if (errno != EEXIST) return kiln_error(KILN_ERR_IO, "%s: %s", path, strerror(errno));
    }
    return kiln_error(KILN_ERR_IO, "%s: 999 event files of this second already exist", dir);
}

void kiln_tb_close(kiln_tb_writer *w) {
    if (!w) return;
    close(w->fd);
    for (size_t i = 0; i < w->tag_cap; i++) free(w->tags[i]);
    free(w->tags);
    free(w->buf);
    free(w->path);
    free(w);
}

const char *kiln_tb_path(const kiln_tb_writer *w) {
    return w->path;
}

/* One summary value as an Event. plugin/content/data_class/description form the metadata,
 * attached on the tag's first value in this file. */
static kiln_status write_value(kiln_tb_writer *w, const char *tag, int64_t step, const char *plugin,
                               const void *content, size_t content_len,
                               Tensorflow__DataClass data_class, const char *description,
                               Tensorflow__TensorProto *tensor) {
    size_t tl = tag ? strlen(tag) : 0;
    if (tl == 0 || tl > MAX_TAG)
        return kiln_error(KILN_ERR_INVALID, "%s: a tag must be 1 to %d bytes, got %zu", w->path,
                          MAX_TAG, tl);
    Tensorflow__SummaryMetadata__PluginData pd = TENSORFLOW__SUMMARY_METADATA__PLUGIN_DATA__INIT;
    pd.plugin_name = (char *)plugin;
    pd.content.data = (uint8_t *)content, pd.content.len = content_len;
    Tensorflow__SummaryMetadata md = TENSORFLOW__SUMMARY_METADATA__INIT;
    md.plugin_data = &pd;
    md.data_class = data_class;
    if (description) md.summary_description = (char *)description;
    Tensorflow__Summary__Value v = TENSORFLOW__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    if (tag_seen(w, tag) != 1) v.metadata = &md;
    v.value_case = TENSORFLOW__SUMMARY__VALUE__VALUE_TENSOR;
    v.tensor = tensor;
    Tensorflow__Summary__Value *vals[1] = {&v};
    Tensorflow__Summary s = TENSORFLOW__SUMMARY__INIT;
    s.n_value = 1, s.value = vals;
    Tensorflow__Event ev = TENSORFLOW__EVENT__INIT;
    ev.wall_time = now_seconds();
    ev.step = step;
    ev.what_case = TENSORFLOW__EVENT__WHAT_SUMMARY;
    ev.summary = &s;
    return write_event(w, &ev);
}

kiln_status kiln_tb_scalar(kiln_tb_writer *w, const char *tag, int64_t step, float value) {
    Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT; /* rank 0 */
    Tensorflow__TensorProto t = TENSORFLOW__TENSOR_PROTO__INIT;
    t.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    t.tensor_shape = &shape;
    t.n_float_val = 1, t.float_val = &value;
    return write_value(w, tag, step, "scalars", NULL, 0, TENSORFLOW__DATA_CLASS__DATA_CLASS_SCALAR,
                       NULL, &t);
}

size_t kiln_tb_histogram_buckets(const float *values, size_t n, int k, double *out) {
    float lo = INFINITY, hi = -INFINITY;
    size_t finite = 0;
    for (size_t i = 0; i < n; i++) {
        float v = values[i];
        if (!isfinite(v)) continue;
        finite++;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    if (finite == 0 || k < 1) return 0;
    for (int b = 0; b < k; b++) out[3 * b + 2] = 0;
    double dlo = lo, range = (double)hi - dlo;
    if (range == 0) {
        for (int b = 0; b < k; b++) out[3 * b] = dlo, out[3 * b + 1] = dlo;
        out[2] = (double)finite;
        return finite;
    }
    double per = k / range; /* buckets per unit: (v - min) * per is floor'ed to the bucket */
    for (size_t i = 0; i < n; i++) {
        float v = values[i];
        if (!isfinite(v)) continue;
        int b = (int)(((double)v - dlo) * per); /* >= 0, so the cast is floor */
        out[3 * (b < k ? b : k - 1) + 2] += 1;
    }
    for (int b = 0; b < k; b++) { /* edges = linspace(min, max, k + 1), the last one exactly max */
        out[3 * b] = dlo + range * b / k;
        out[3 * b + 1] = b == k - 1 ? (double)hi : dlo + range * (b + 1) / k;
    }
    return finite;
}

kiln_status kiln_tb_histogram(kiln_tb_writer *w, const char *tag, int64_t step, const float *values,
                              size_t n) {
    double rows[KILN_TB_BUCKETS * 3];
    size_t counted = kiln_tb_histogram_buckets(values, n, KILN_TB_BUCKETS, rows);
    Tensorflow__TensorShapeProto__Dim d0 = TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
    Tensorflow__TensorShapeProto__Dim d1 = TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
    d0.size = counted ? KILN_TB_BUCKETS : 0, d1.size = 3;
    Tensorflow__TensorShapeProto__Dim *dims[2] = {&d0, &d1};
    Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    shape.n_dim = 2, shape.dim = dims;
    Tensorflow__TensorProto t = TENSORFLOW__TENSOR_PROTO__INIT;
    t.dtype = TENSORFLOW__DATA_TYPE__DT_DOUBLE;
    t.tensor_shape = &shape;
    t.n_double_val = counted ? KILN_TB_BUCKETS * 3 : 0, t.double_val = rows;
    return write_value(w, tag, step, "histograms", NULL, 0,
                       TENSORFLOW__DATA_CLASS__DATA_CLASS_TENSOR, NULL, &t);
}

/* stb's PNG output, collected in memory; failed is set when a realloc fails. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
    int failed;
} png_buf;

static void png_sink(void *ctx, void *data, int size) {
    png_buf *b = ctx;
    if (b->failed || size <= 0) return;
    if (b->len + (size_t)size > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)size) cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->data = p, b->cap = cap;
    }
    memcpy(b->data + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

kiln_status kiln_tb_image(kiln_tb_writer *w, const char *tag, const char *description, int64_t step,
                          const unsigned char *rgb, int width, int height) {
    if (width < 1 || height < 1 || width > 16384 || height > 16384 || !rgb)
        return kiln_error(KILN_ERR_INVALID, "%s: image %s: %d x %d is not a valid size", w->path,
                          tag, width, height);
    png_buf png = {0};
    /* No per-row PNG filter: kiln's pictures are flat colors and upscaled pixels, for which stb's
     * search for the best filter of each row costs 3-4x the encoding time to save ~20% of a few
     * kilobytes. (stb keeps this setting in a global; nothing else in kiln encodes PNGs.) */
    stbi_write_force_png_filter = 0;
    int ok = stbi_write_png_to_func(png_sink, &png, width, height, 3, rgb, width * 3);
    if (!ok || png.failed) {
        free(png.data);
        return kiln_error(KILN_ERR_NOMEM, "%s: image %s: PNG encoding failed", w->path, tag);
    }
    char ws[16], hs[16];
    snprintf(ws, sizeof ws, "%d", width);
    snprintf(hs, sizeof hs, "%d", height);
    ProtobufCBinaryData strs[3] = {
        {strlen(ws), (uint8_t *)ws}, {strlen(hs), (uint8_t *)hs}, {png.len, png.data}};
    Tensorflow__TensorShapeProto__Dim d0 = TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
    d0.size = 3;
    Tensorflow__TensorShapeProto__Dim *dims[1] = {&d0};
    Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    shape.n_dim = 1, shape.dim = dims;
    Tensorflow__TensorProto t = TENSORFLOW__TENSOR_PROTO__INIT;
    t.dtype = TENSORFLOW__DATA_TYPE__DT_STRING;
    t.tensor_shape = &shape;
    t.n_string_val = 3, t.string_val = strs;
    kiln_status st = write_value(w, tag, step, "images", NULL, 0,
                                 TENSORFLOW__DATA_CLASS__DATA_CLASS_BLOB_SEQUENCE, description, &t);
    free(png.data);
    return st;
}

kiln_status kiln_tb_text(kiln_tb_writer *w, const char *tag, int64_t step, const char *markdown) {
    ProtobufCBinaryData s = {strlen(markdown), (uint8_t *)markdown};
    Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    Tensorflow__TensorProto t = TENSORFLOW__TENSOR_PROTO__INIT;
    t.dtype = TENSORFLOW__DATA_TYPE__DT_STRING;
    t.tensor_shape = &shape;
    t.n_string_val = 1, t.string_val = &s;
    return write_value(w, tag, step, "text", NULL, 0, TENSORFLOW__DATA_CLASS__DATA_CLASS_TENSOR,
                       NULL, &t);
}

kiln_status kiln_tb_session_start(kiln_tb_writer *w, int64_t step) {
    Tensorflow__SessionLog sl = TENSORFLOW__SESSION_LOG__INIT;
    sl.status = TENSORFLOW__SESSION_LOG__SESSION_STATUS__START;
    Tensorflow__Event ev = TENSORFLOW__EVENT__INIT;
    ev.wall_time = now_seconds();
    ev.step = step;
    ev.what_case = TENSORFLOW__EVENT__WHAT_SESSION_LOG;
    ev.session_log = &sl;
    return write_event(w, &ev);
}

/* ---- HParams ---- */

/* An hparams-plugin value: the data is the plugin content; the tensor a [0] DT_FLOAT
 * placeholder (TensorBoard's NULL_TENSOR). */
kiln_status kiln_tb_write_hparams(kiln_tb_writer *w, const char *tag,
                                  Tensorboard__Hparams__HParamsPluginData *pd) {
    size_t n = tensorboard__hparams__hparams_plugin_data__get_packed_size(pd);
    uint8_t *content = malloc(n ? n : 1);
    if (!content) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", w->path);
    tensorboard__hparams__hparams_plugin_data__pack(pd, content);
    Tensorflow__TensorShapeProto__Dim d0 = TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
    Tensorflow__TensorShapeProto__Dim *dims[1] = {&d0};
    Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    shape.n_dim = 1, shape.dim = dims;
    Tensorflow__TensorProto t = TENSORFLOW__TENSOR_PROTO__INIT;
    t.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    t.tensor_shape = &shape;
    kiln_status st = write_value(w, tag, 0, "hparams", content, n,
                                 TENSORFLOW__DATA_CLASS__DATA_CLASS_UNKNOWN, NULL, &t);
    free(content);
    return st;
}

kiln_status kiln_tb_hparams_start(kiln_tb_writer *w, const kiln_tb_hparams *hp,
                                  const char *model_uri, const char *group_name, double start_time) {
    int n = hp ? hp->n : 0;
    char group[33] = "";
    if (!group_name && hp) {
        kiln_status gs = kiln_tb_hparams_group(hp, group);
        if (gs) return gs;
        group_name = group;
    }
    Google__Protobuf__Value *vals = calloc((size_t)n + 1, sizeof *vals);
    Tensorboard__Hparams__SessionStartInfo__HparamsEntry *ents =
        calloc((size_t)n + 1, sizeof *ents);
    Tensorboard__Hparams__SessionStartInfo__HparamsEntry **eptr =
        calloc((size_t)n + 1, sizeof *eptr);
    kiln_status st = KILN_OK;
    if (!vals || !ents || !eptr) {
        st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", w->path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const kiln_tb_hparam *h = &hp->items[i];
        Google__Protobuf__Value *v = &vals[i];
        google__protobuf__value__init(v);
        switch (h->type) {
        case KILN_TB_HP_NUMBER:
            v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE, v->number_value = h->number;
            break;
        case KILN_TB_HP_BOOL:
            v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE,
            v->bool_value = h->boolean != 0;
            break;
        default:
            v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE,
            v->string_value = h->string ? h->string : "";
            break;
        }
        tensorboard__hparams__session_start_info__hparams_entry__init(&ents[i]);
        ents[i].key = h->name, ents[i].value = v;
        eptr[i] = &ents[i];
    }
    Tensorboard__Hparams__SessionStartInfo si = TENSORBOARD__HPARAMS__SESSION_START_INFO__INIT;
    si.n_hparams = (size_t)n, si.hparams = eptr;
    if (model_uri) si.model_uri = (char *)model_uri;
    if (group_name) si.group_name = (char *)group_name;
    si.start_time_secs = start_time;
    Tensorboard__Hparams__HParamsPluginData pd = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__INIT;
    pd.data_case = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_START_INFO;
    pd.session_start_info = &si;
    st = kiln_tb_write_hparams(w, "_hparams_/session_start_info", &pd);
done:
    free(vals);
    free(ents);
    free(eptr);
    return st;
}

kiln_status kiln_tb_hparams_end(kiln_tb_writer *w, kiln_tb_status status, double end_time) {
    Tensorboard__Hparams__SessionEndInfo ei = TENSORBOARD__HPARAMS__SESSION_END_INFO__INIT;
    ei.status = (Tensorboard__Hparams__Status)status;
    ei.end_time_secs = end_time;
    Tensorboard__Hparams__HParamsPluginData pd = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__INIT;
    pd.data_case = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_END_INFO;
    pd.session_end_info = &ei;
    return kiln_tb_write_hparams(w, "_hparams_/session_end_info", &pd);
}

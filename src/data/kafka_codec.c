/* kafka_codec.c — one Kafka record value <-> one row (see kiln/kafka.h "Records").
 *
 * Decoding never trusts the bytes: tf.Example goes through protobuf-c (kiln_example_parse), .npy
 * headers are parsed with bounds on every length, JSON through cJSON; every size is checked
 * against the row before anything is written, so a malformed record is a KILN_ERR_FORMAT
 * naming `where` (the caller's topic/partition/offset), never a read or write out of bounds.
 * A decoder is used by one thread at a time (its Example arena and image decoder are reused).
 *
 * Rows: an image feature gives u8 [C, H, W] (kiln_image_process with the spec); a single raw
 * bytes feature gives u8; everything else float32 of the decode's x_shape.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

#include "data/data_internal.h"
#include "kiln/fileio.h"
#include "kiln/kafka.h"
#include "kiln/mem.h"

#define MAX_FEATS 256

struct kiln_kafka_decoder {
    kiln_kafka_decode d;
    kiln_example *ex;
    kiln_image_decoder *img;
    kiln_dtype dtype;
    kiln_shape shape;
    int64_t numel;
    int64_t fnumel[MAX_FEATS]; /* tf_example: values each feature gives (0: first record) */
    int image;                 /* tf_example: the row is an image feature */
};

static const char *const FORMATS[] = {"tf_example", "npy", "json", "raw"};

int kiln_kafka_format_parse(const char *s, kiln_kafka_format *f) {
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, FORMATS[i])) return *f = (kiln_kafka_format)i, 1;
    return 0;
}

const char *kiln_kafka_format_name(kiln_kafka_format f) {
    return (unsigned)f < 4 ? FORMATS[f] : "?";
}

kiln_status kiln_kafka_decoder_new(const kiln_kafka_decode *d, kiln_kafka_decoder **out) {
    *out = NULL;
    if (d->format == KILN_KAFKA_TF_EXAMPLE && (d->num_features < 1 || d->num_features > MAX_FEATS))
        return kiln_error(KILN_ERR_INVALID, "kafka: tf_example needs 1 to %d features", MAX_FEATS);
    kiln_kafka_decoder *k = calloc(1, sizeof *k);
    if (!k) return kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
    k->d = *d;
    k->dtype = KILN_F32;
    k->shape = d->x_shape;
    kiln_status st = KILN_OK;
    if (d->format == KILN_KAFKA_TF_EXAMPLE) {
        st = kiln_example_new(&k->ex);
        for (int i = 0; i < d->num_features; i++) {
            k->fnumel[i] = d->features[i].numel;
            if (d->features[i].decode == KILN_TFR_IMAGE) k->image = 1;
        }
        if (k->image) {
            if (d->num_features != 1)
                st = kiln_error(KILN_ERR_INVALID, "kafka: an image feature must be the only one");
            int64_t dims[3] = {d->spec.channels, d->spec.out_h, d->spec.out_w};
            k->shape = kiln_shape_make(3, dims);
            k->dtype = KILN_U8;
            if (!st) st = kiln_image_decoder_new(&k->img);
        } else if (d->num_features == 1 && d->features[0].decode == KILN_TFR_RAW) {
            k->dtype = KILN_U8;
        }
        if (!st && !k->image && d->num_features == 1 && !k->fnumel[0])
            k->fnumel[0] = kiln_shape_numel(&k->shape);
    }
    k->numel = kiln_shape_numel(&k->shape);
    if (!st && (k->shape.ndim < 1 || k->numel < 1))
        st = kiln_error(KILN_ERR_INVALID, "kafka: a row needs a shape (model.input)");
    if (st) {
        kiln_kafka_decoder_free(k);
        return st;
    }
    *out = k;
    return KILN_OK;
}

void kiln_kafka_decoder_free(kiln_kafka_decoder *k) {
    if (!k) return;
    kiln_example_free(k->ex);
    kiln_image_decoder_free(k->img);
    free(k);
}

kiln_dtype kiln_kafka_decoder_dtype(const kiln_kafka_decoder *k) {
    return k->dtype;
}
kiln_shape kiln_kafka_decoder_shape(const kiln_kafka_decoder *k) {
    return k->shape;
}

static kiln_status bad(const char *where, const char *what) {
    return kiln_error(KILN_ERR_FORMAT, "%s: %s", where, what);
}

/* label text "3" or "0.5,1.5" into y. */
static kiln_status parse_label(kiln_kafka_decoder *k, const char *text, const char *where,
                               void *y) {
    if (k->d.label_kind == KILN_LABEL_NONE || !y) return KILN_OK;
    if (!text) return bad(where, "no \"label\" header");
    char *end;
    if (k->d.label_kind == KILN_LABEL_CLASS) {
        long long v = strtoll(text, &end, 10);
        if (end == text || *end || v < 0 || v >= (k->d.num_classes ? k->d.num_classes : 1 << 24))
            return kiln_error(KILN_ERR_FORMAT, "%s: label '%.40s' is not a class id in range",
                              where, text);
        *(int32_t *)y = (int32_t)v;
        return KILN_OK;
    }
    int64_t n = 0;
    for (const char *p = text;; p = end + 1) {
        float v = strtof(p, &end);
        if (end == p || n >= (k->d.label_width ? k->d.label_width : 1))
            return kiln_error(KILN_ERR_FORMAT, "%s: label '%.40s' is not %lld numbers", where, text,
                              (long long)(k->d.label_width ? k->d.label_width : 1));
        ((float *)y)[n++] = v;
        if (!*end) break;
        if (*end != ',') return bad(where, "label: numbers separated by ','");
    }
    if (n != (k->d.label_width ? k->d.label_width : 1))
        return bad(where, "label: wrong number of values");
    return KILN_OK;
}

static kiln_status decode_example(kiln_kafka_decoder *k, const void *v, size_t len,
                                  const char *where, void *x, void *y) {
    kiln_status st = kiln_example_parse(k->ex, v, len);
    if (st) {
        kiln_error_prefix("%s", where);
        return st;
    }
    int64_t at = 0;
    for (int i = 0; i < k->d.num_features; i++) {
        const kiln_tfrecord_feature *sp = &k->d.features[i];
        kiln_feature f;
        if (!kiln_example_find(k->ex, sp->key, &f))
            return kiln_error(KILN_ERR_FORMAT, "%s: feature '%s' is missing", where, sp->key);
        kiln_feat_kind want = sp->decode == KILN_TFR_FLOAT   ? KILN_FEAT_FLOAT
                              : sp->decode == KILN_TFR_INT64 ? KILN_FEAT_INT64
                                                             : KILN_FEAT_BYTES;
        if (f.kind != want)
            return kiln_error(KILN_ERR_FORMAT, "%s: feature '%s' is a %s list (expected %s)", where,
                              sp->key, kiln_feat_kind_name(f.kind), kiln_feat_kind_name(want));
        if (sp->decode == KILN_TFR_IMAGE) {
            size_t bl;
            const uint8_t *b = f.n == 1 ? kiln_feature_bytes(&f, 0, &bl) : NULL;
            if (!b) return bad(where, "the image feature holds no single byte string");
            if ((st = kiln_image_process(k->img, b, bl, where, &k->d.spec, x))) return st;
            at = k->numel;
            break;
        }
        size_t bl = 0;
        const uint8_t *b = NULL;
        int64_t have = (int64_t)f.n;
        if (sp->decode == KILN_TFR_RAW) {
            if (f.n != 1) return bad(where, "a raw bytes feature holds one byte string");
            b = kiln_feature_bytes(&f, 0, &bl);
            have = (int64_t)bl;
        }
        if (!k->fnumel[i]) k->fnumel[i] = have;
        if (have != k->fnumel[i] || at + have > k->numel)
            return kiln_error(KILN_ERR_FORMAT, "%s: feature '%s' has %lld values (expected %lld)",
                              where, sp->key, (long long)have,
                              (long long)(k->fnumel[i] ? k->fnumel[i] : k->numel - at));
        if (k->dtype == KILN_U8) {
            memcpy((uint8_t *)x + at, b, (size_t)have);
        } else {
            float *xf = (float *)x + at;
            for (int64_t j = 0; j < have; j++)
                xf[j] = sp->decode == KILN_TFR_RAW     ? b[j]
                        : sp->decode == KILN_TFR_FLOAT ? f.f[j]
                                                       : (float)f.i[j];
        }
        at += have;
    }
    if (at != k->numel)
        return kiln_error(KILN_ERR_FORMAT, "%s: the features give %lld values (a row is %lld)",
                          where, (long long)at, (long long)k->numel);
    if (k->d.label_kind == KILN_LABEL_NONE || !y) return KILN_OK;
    kiln_feature f;
    if (!k->d.label_key || !kiln_example_find(k->ex, k->d.label_key, &f))
        return kiln_error(KILN_ERR_FORMAT, "%s: the label feature '%s' is missing", where,
                          k->d.label_key ? k->d.label_key : "?");
    if (k->d.label_kind == KILN_LABEL_CLASS) {
        int limit = k->d.num_classes ? k->d.num_classes : 1 << 24;
        if (f.kind != KILN_FEAT_INT64 || f.n != 1 || f.i[0] < 0 || f.i[0] >= limit)
            return kiln_error(KILN_ERR_FORMAT, "%s: the label '%s' is not one class id in [0, %d)",
                              where, k->d.label_key, limit);
        *(int32_t *)y = (int32_t)f.i[0];
        return KILN_OK;
    }
    if (!k->d.label_width) k->d.label_width = (int64_t)f.n;
    if ((f.kind != KILN_FEAT_FLOAT && f.kind != KILN_FEAT_INT64) ||
        (int64_t)f.n != k->d.label_width)
        return kiln_error(KILN_ERR_FORMAT, "%s: the label '%s' is not %lld numbers", where,
                          k->d.label_key, (long long)k->d.label_width);
    for (size_t j = 0; j < f.n; j++)
        ((float *)y)[j] = f.kind == KILN_FEAT_FLOAT ? f.f[j] : (float)f.i[j];
    return KILN_OK;
}

/* One .npy value: the header's descr and shape, the data after it. */
static kiln_status decode_npy(kiln_kafka_decoder *k, const uint8_t *v, size_t len,
                              const char *where, float *x) {
    if (len < 10 || memcmp(v, "\x93NUMPY", 6)) return bad(where, "not a .npy value");
    size_t hl = v[6] == 1 ? (size_t)v[8] | (size_t)v[9] << 8
                : len >= 12
                    ? (size_t)v[8] | (size_t)v[9] << 8 | (size_t)v[10] << 16 | (size_t)v[11] << 24
                    : (size_t)-1;
    size_t off = v[6] == 1 ? 10 : 12;
    if (v[6] < 1 || v[6] > 3 || hl > len - off || hl > 65536) return bad(where, ".npy header");
    char h[65537];
    memcpy(h, v + off, hl), h[hl] = 0;
    const uint8_t *data = v + off + hl;
    size_t dl = len - off - hl;
    const char *d = strstr(h, "'descr'");
    if (!d || strstr(h, "'fortran_order': True")) return bad(where, ".npy: not a C-order array");
    d = strchr(d + 7, '\'');
    if (!d) return bad(where, ".npy header");
    static const char *const T[] = {"|u1'", "<f4'", "<f8'", "<i4'", "<i8'"};
    static const size_t S[] = {1, 4, 8, 4, 8};
    int t = -1;
    for (int i = 0; i < 5 && t < 0; i++)
        if (!strncmp(d + 1, T[i], 4)) t = i;
    if (t < 0) return bad(where, ".npy: dtype is not |u1, <f4, <f8, <i4 or <i8");
    if (dl != (size_t)k->numel * S[t])
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: .npy holds %zu bytes of data (a row is %lld "
                          "values of %zu bytes)",
                          where, dl, (long long)k->numel, S[t]);
    for (int64_t j = 0; j < k->numel; j++) {
        const uint8_t *p = data + (size_t)j * S[t];
        float fv;
        double dv;
        int32_t iv;
        int64_t lv;
        switch (t) {
        case 0:
            x[j] = p[0];
            break;
        case 1:
            memcpy(&fv, p, 4), x[j] = fv;
            break;
        case 2:
            memcpy(&dv, p, 8), x[j] = (float)dv;
            break;
        case 3:
            memcpy(&iv, p, 4), x[j] = (float)iv;
            break;
        default:
            memcpy(&lv, p, 8), x[j] = (float)lv;
            break;
        }
    }
    return KILN_OK;
}

static int flatten(const cJSON *a, float *x, int64_t n, int64_t *at, int depth) {
    if (depth > 16) return 0;
    if (cJSON_IsNumber(a)) {
        if (*at >= n) return 0;
        x[(*at)++] = (float)a->valuedouble;
        return 1;
    }
    if (!cJSON_IsArray(a)) return 0;
    for (const cJSON *e = a->child; e; e = e->next)
        if (!flatten(e, x, n, at, depth + 1)) return 0;
    return 1;
}

static kiln_status decode_json(kiln_kafka_decoder *k, const void *v, size_t len, const char *where,
                               float *x, void *y) {
    cJSON *j = cJSON_ParseWithLength(v, len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return bad(where, "not a JSON object {\"x\": [...], \"label\": ...}");
    }
    int64_t at = 0;
    kiln_status st = KILN_OK;
    if (!flatten(cJSON_GetObjectItemCaseSensitive(j, "x"), x, k->numel, &at, 0) || at != k->numel)
        st = kiln_error(KILN_ERR_FORMAT, "%s: \"x\" is not a list of %lld numbers", where,
                        (long long)k->numel);
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "label");
    if (!st && y && k->d.label_kind == KILN_LABEL_CLASS) {
        if (!cJSON_IsNumber(l) || l->valuedouble < 0 || l->valuedouble != (int32_t)l->valuedouble ||
            (k->d.num_classes && l->valuedouble >= k->d.num_classes))
            st = bad(where, "\"label\" is not a class id in range");
        else
            *(int32_t *)y = (int32_t)l->valuedouble;
    } else if (!st && y && k->d.label_kind == KILN_LABEL_FLOAT) {
        int64_t w = k->d.label_width ? k->d.label_width : 1, n = 0;
        float tmp[4096];
        if (w > 4096 || !flatten(l, tmp, w, &n, 0) || n != w)
            st = bad(where, "\"label\" does not hold the targets");
        else
            memcpy(y, tmp, (size_t)w * sizeof *tmp);
    }
    cJSON_Delete(j);
    return st;
}

kiln_status kiln_kafka_decoder_row(kiln_kafka_decoder *k, const void *value, size_t len,
                                   const char *label, const char *where, void *x, void *y) {
    if (!value) return bad(where, "an empty record (no value)");
    kiln_status st;
    switch (k->d.format) {
    case KILN_KAFKA_TF_EXAMPLE:
        return decode_example(k, value, len, where, x, y);
    case KILN_KAFKA_NPY:
        if ((st = decode_npy(k, value, len, where, x))) return st;
        return parse_label(k, label, where, y);
    case KILN_KAFKA_JSON:
        return decode_json(k, value, len, where, x, y);
    default:
        if (len == (size_t)k->numel) {
            for (int64_t j = 0; j < k->numel; j++) ((float *)x)[j] = ((const uint8_t *)value)[j];
        } else if (len == (size_t)k->numel * 4) {
            memcpy(x, value, len);
        } else {
            return kiln_error(KILN_ERR_FORMAT,
                              "%s: %zu bytes (a raw row is %lld u8 or %lld "
                              "float32 bytes)",
                              where, len, (long long)k->numel, (long long)k->numel * 4);
        }
        return parse_label(k, label, where, y);
    }
}

/* ---- encoding (kiln data produce) ---- */

typedef struct {
    uint8_t **buf;
    size_t *cap, *len;
    int failed;
} sink;

static int reserve(sink *s, size_t more) {
    if (*s->len + more <= *s->cap) return 1;
    size_t c = *s->cap ? *s->cap : 4096;
    while (c < *s->len + more) c *= 2;
    uint8_t *p = realloc(*s->buf, c);
    if (!p) return s->failed = 1, 0;
    *s->buf = p, *s->cap = c;
    return 1;
}

static void put(sink *s, const void *d, size_t n) {
    if (!s->failed && reserve(s, n)) memcpy(*s->buf + *s->len, d, n), *s->len += n;
}

static void png_put(void *ctx, void *data, int size) {
    if (size > 0) put(ctx, data, (size_t)size);
}

static kiln_status encode_example(const kiln_dataset *ds, int64_t row, sink *s, int64_t label,
                                  float *xf, uint8_t *xu) {
    kiln_example_builder *b = NULL;
    kiln_status st = kiln_example_builder_new(&b);
    int cls = ds->y_kind == KILN_LABEL_CLASS;
    const char *path = kiln_dataset_row_name(ds, row);
    if (!st && path && ds->x_dtype == KILN_U8) { /* an image file: its own bytes */
        void *bytes = NULL;
        size_t n = 0;
        if (!(st = kiln_file_read_all(path, &bytes, &n, (size_t)KILN_IMAGE_MAX_BYTES)))
            st = kiln_example_add_bytes(b, "image/encoded", bytes, n);
        kiln_free(bytes);
    } else if (!st && ds->x_dtype == KILN_U8 && ds->x_shape.ndim == 3 && ds->x_shape.dims[0] == 1) {
        int h = (int)ds->x_shape.dims[1], w = (int)ds->x_shape.dims[2];
        uint8_t *png = NULL;
        size_t cap = 0, len = 0;
        sink ps = {&png, &cap, &len, 0};
        if (!(st = kiln_dataset_read(ds, row, xu))) {
            if (!stbi_write_png_to_func(png_put, &ps, w, h, 1, xu, w) || ps.failed)
                st = kiln_error(KILN_ERR_NOMEM, "row %lld: PNG encoding failed", (long long)row);
            else
                st = kiln_example_add_bytes(b, "image/encoded", png, len);
        }
        int64_t hh = h, ww = w;
        if (!st) st = kiln_example_add_bytes(b, "image/format", "png", 3);
        if (!st) st = kiln_example_add_int64(b, "image/height", &hh, 1);
        if (!st) st = kiln_example_add_int64(b, "image/width", &ww, 1);
        free(png);
    } else if (!st) {
        st = kiln_dataset_get(ds, row, xf, NULL);
        if (!st) st = kiln_example_add_float(b, "x", xf, (size_t)ds->x_numel);
    }
    int image = ds->x_dtype == KILN_U8 && (path || ds->x_shape.ndim == 3);
    if (!st && cls)
        st = kiln_example_add_int64(b, image ? "image/class/label" : "label", &label, 1);
    if (!st && ds->y_kind == KILN_LABEL_FLOAT)
        st = kiln_example_add_float(b, "label",
                                    (const float *)ds->y + kiln_ds_row(ds, row) * ds->y_width,
                                    (size_t)ds->y_width);
    const char *cn = cls ? kiln_dataset_class_name(ds, (int)label) : NULL;
    if (!st && cn)
        st = kiln_example_add_bytes(b, image ? "image/class/text" : "label/text", cn, strlen(cn));
    const void *data;
    size_t n;
    if (!st && !(st = kiln_example_serialize(b, &data, &n))) put(s, data, n);
    kiln_example_builder_free(b);
    return st;
}

kiln_status kiln_kafka_encode_row(const kiln_dataset *ds, int64_t row, kiln_kafka_format f,
                                  void **buf, size_t *cap, size_t *len, char label[64]) {
    sink s = {(uint8_t **)buf, cap, len, 0};
    *len = 0, label[0] = 0;
    if (row < 0 || row >= ds->n) return kiln_error(KILN_ERR_INVALID, "row %lld", (long long)row);
    int64_t sr = kiln_ds_row(ds, row), n = ds->x_numel;
    int64_t cls = ds->y_kind == KILN_LABEL_CLASS ? ((const int32_t *)ds->y)[sr] : 0;
    if (ds->y_kind == KILN_LABEL_CLASS) {
        snprintf(label, 64, "%lld", (long long)cls);
    } else if (ds->y_kind == KILN_LABEL_FLOAT) {
        const float *y = (const float *)ds->y + sr * ds->y_width;
        int at = 0;
        for (int64_t j = 0; j < ds->y_width && at < 60; j++)
            at += snprintf(label + at, (size_t)(64 - at), "%s%.9g", j ? "," : "", (double)y[j]);
        if (at >= 60)
            return kiln_error(KILN_ERR_INVALID, "regression targets too wide for a header");
    }
    float *xf = malloc((size_t)n * sizeof *xf);
    uint8_t *xu = malloc((size_t)n);
    kiln_status st = xf && xu ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "out of memory");
    int u8 = ds->x_dtype == KILN_U8;
    if (!st && f == KILN_KAFKA_TF_EXAMPLE) {
        st = encode_example(ds, row, &s, cls, xf, xu);
    } else if (!st && f == KILN_KAFKA_RAW) {
        if (u8 && !(st = kiln_dataset_read(ds, row, xu))) put(&s, xu, (size_t)n);
        if (!u8 && !(st = kiln_dataset_get(ds, row, xf, NULL))) put(&s, xf, (size_t)n * 4);
    } else if (!st && f == KILN_KAFKA_NPY) {
        char shape[256] = "", hdr[400];
        int at = 0;
        for (int i = 0; i < ds->x_shape.ndim; i++)
            at += snprintf(shape + at, sizeof shape - (size_t)at, "%lld,",
                           (long long)ds->x_shape.dims[i]);
        if (ds->x_shape.ndim > 1) shape[at - 1] = 0;
        int hl =
            snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                     u8 ? "|u1" : "<f4", shape);
        int total = 10 + hl + 1, pad = (64 - total % 64) % 64;
        uint8_t pre[10] = {0x93,
                           'N',
                           'U',
                           'M',
                           'P',
                           'Y',
                           1,
                           0,
                           (uint8_t)((hl + pad + 1) & 255),
                           (uint8_t)((hl + pad + 1) >> 8)};
        put(&s, pre, 10), put(&s, hdr, (size_t)hl);
        for (int i = 0; i < pad; i++) put(&s, " ", 1);
        put(&s, "\n", 1);
        if (u8 && !(st = kiln_dataset_read(ds, row, xu))) put(&s, xu, (size_t)n);
        if (!u8 && !(st = kiln_dataset_get(ds, row, xf, NULL))) put(&s, xf, (size_t)n * 4);
    } else if (!st) { /* json */
        if (!(st = kiln_dataset_get(ds, row, xf, NULL))) {
            char num[32];
            put(&s, "{\"x\": [", 7);
            for (int64_t j = 0; j < n; j++) {
                int k = snprintf(num, sizeof num, "%s%.9g", j ? "," : "", (double)xf[j]);
                put(&s, num, (size_t)k);
            }
            put(&s, "]", 1);
            if (ds->y_kind != KILN_LABEL_NONE) {
                int k = snprintf(num, sizeof num, ", \"label\": %s",
                                 ds->y_kind == KILN_LABEL_CLASS ? "" : "[");
                put(&s, num, (size_t)k), put(&s, label, strlen(label));
                if (ds->y_kind == KILN_LABEL_FLOAT) put(&s, "]", 1);
            }
            put(&s, "}", 1);
        }
    }
    free(xf), free(xu);
    if (!st && s.failed) st = kiln_error(KILN_ERR_NOMEM, "out of memory");
    if (st) kiln_error_prefix("row %lld", (long long)row);
    return st;
}

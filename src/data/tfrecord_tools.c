/* tfrecord_tools.c — data sets into TFRecord shards of tf.train.Example (kiln_data_convert) and
 * shards back into a summary (kiln_tfrecord_inspect); see kiln/tfexample.h.
 *
 * Converting: the source is opened with kiln's own loaders (so a folder, IDX, CSV and NPY are
 * read exactly as training reads them), the record order is the source's or a seeded
 * permutation, and shard i gets the contiguous slice [i n / N, (i + 1) n / N) of it. Every shard
 * is a kiln_tfrecord_writer (a temporary file renamed when complete); the names committed so far
 * are kept so that a failure removes them again. Image folders keep each file's own bytes;
 * IDX images are encoded as PNG (lossless: a model trained from the shards sees the IDX pixels).
 *
 * Inspecting walks every record of every file once, keeping a table of the keys seen (at most
 * MAX_KEYS, sorted), a histogram of the label and the first name of each class.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "data/data_internal.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "kiln/rng.h"
#include "kiln/tfexample.h"
#include "kiln/tfrecord.h"

#define STREAM_CONVERT 0xDA7C000000000000ull
#define MAX_KEYS       1024
#define MAX_HIST       65536

/* ---- converting ---- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static kiln_convert_from detect(const char *src) {
    struct stat sb;
    if (stat(src, &sb) == 0 && S_ISDIR(sb.st_mode)) return KILN_CONVERT_IMAGES;
    if (ends_with(src, ".csv") || ends_with(src, ".csv.gz")) return KILN_CONVERT_CSV;
    if (ends_with(src, ".npy") || ends_with(src, ".npy.gz")) return KILN_CONVERT_NPY;
    if (ends_with(src, ".jsonl")) return KILN_CONVERT_MANIFEST;
    return KILN_CONVERT_IDX;
}

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int failed;
} membuf;

static void png_sink(void *ctx, void *data, int size) {
    membuf *m = ctx;
    if (m->failed || size <= 0) return;
    if (m->n + (size_t)size > m->cap) {
        size_t c = m->cap ? m->cap : 4096;
        while (c < m->n + (size_t)size) c *= 2;
        unsigned char *p = realloc(m->p, c);
        if (!p) {
            m->failed = 1;
            return;
        }
        m->p = p, m->cap = c;
    }
    memcpy(m->p + m->n, data, (size_t)size);
    m->n += (size_t)size;
}

/* The shards NAME.tfrecord-* in dir (names only). */
static kiln_status existing_shards(const char *dir, const char *name, char ***out, int *n) {
    *out = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return KILN_OK; /* made later */
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s.tfrecord-", name);
    size_t pl = strlen(prefix);
    struct dirent *e;
    kiln_status st = KILN_OK;
    int cap = 0;
    while ((e = readdir(d)) && !st) {
        if (strncmp(e->d_name, prefix, pl)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(*out, (size_t)cap * sizeof *v);
            if (!v) {
                st = kiln_error(KILN_ERR_NOMEM, "out of memory");
                break;
            }
            *out = v;
        }
        if (!((*out)[*n] = strdup(e->d_name)))
            st = kiln_error(KILN_ERR_NOMEM, "out of memory");
        else
            ++*n;
    }
    closedir(d);
    return st;
}

typedef struct {
    const kiln_convert_options *o;
    kiln_convert_from from;
    kiln_dataset *ds;
    kiln_example_builder *b;
    kiln_image_decoder *dec;
    membuf png;
    float *xf;       /* a row as float32 */
    uint8_t *xu;     /* a row as u8 */
    size_t root_len; /* images: strip this much of a path for image/filename */
} conv;

/* Fills the builder with row r of the source. */
static kiln_status build_record(conv *c, int64_t r) {
    const kiln_convert_options *o = c->o;
    kiln_dataset *ds = c->ds;
    kiln_example_builder *b = c->b;
    kiln_example_builder_reset(b);
    int64_t srow = kiln_ds_row(ds, r);
    int classes = ds->y_kind == KILN_LABEL_CLASS;
    int64_t label = classes ? ((const int32_t *)ds->y)[srow] : 0;
    const char *cname = classes ? kiln_dataset_class_name(ds, (int)label) : NULL;
    if (classes && !cname && label < o->num_class_names) cname = o->class_names[label];
    kiln_status st = KILN_OK;
    if (c->from == KILN_CONVERT_IMAGES || c->from == KILN_CONVERT_MANIFEST) {
        const char *path = kiln_dataset_row_name(ds, r);
        void *bytes = NULL;
        size_t n = 0;
        if ((st = kiln_file_read_all(path, &bytes, &n, (size_t)KILN_IMAGE_MAX_BYTES))) return st;
        kiln_image img;
        kiln_image_decode_opts dop = {.channels = 1, .no_orientation = 1};
        st = kiln_image_decode(c->dec, bytes, n, path, &dop, &img);
        const char *fmt = kiln_image_format_name(kiln_image_sniff(bytes, n));
        int64_t h = img.h, w = img.w;
        const char *rel = path;
        if (c->root_len && !strncmp(path, o->src, c->root_len)) {
            rel = path + c->root_len;
            while (*rel == '/') rel++;
        }
        if (!st) st = kiln_example_add_bytes(b, "image/encoded", bytes, n);
        kiln_free(bytes);
        if (!st) st = kiln_example_add_bytes(b, "image/format", fmt, strlen(fmt));
        if (!st) st = kiln_example_add_int64(b, "image/height", &h, 1);
        if (!st) st = kiln_example_add_int64(b, "image/width", &w, 1);
        if (!st) st = kiln_example_add_bytes(b, "image/filename", rel, strlen(rel));
        if (!st) st = kiln_example_add_int64(b, "image/class/label", &label, 1);
        if (!st && cname) st = kiln_example_add_bytes(b, "image/class/text", cname, strlen(cname));
        return st;
    }
    if (c->from == KILN_CONVERT_IDX) {
        if ((st = kiln_dataset_read(ds, r, c->xu))) return st;
        int64_t h = ds->x_shape.dims[1], w = ds->x_shape.dims[2];
        c->png.n = 0, c->png.failed = 0;
        if (!stbi_write_png_to_func(png_sink, &c->png, (int)w, (int)h, 1, c->xu, (int)w) ||
            c->png.failed)
            return kiln_error(KILN_ERR_NOMEM, "%s: row %lld: PNG encoding failed", o->src,
                              (long long)r);
        if (!st) st = kiln_example_add_bytes(b, "image/encoded", c->png.p, c->png.n);
        if (!st) st = kiln_example_add_bytes(b, "image/format", "png", 3);
        if (!st) st = kiln_example_add_int64(b, "image/height", &h, 1);
        if (!st) st = kiln_example_add_int64(b, "image/width", &w, 1);
        if (!st && classes) st = kiln_example_add_int64(b, "image/class/label", &label, 1);
        if (!st && cname) st = kiln_example_add_bytes(b, "image/class/text", cname, strlen(cname));
        return st;
    }
    /* CSV, NPY: x and label */
    if ((st = kiln_dataset_get(ds, r, c->xf, NULL))) return st;
    st = kiln_example_add_float(b, "x", c->xf, (size_t)ds->x_numel);
    if (!st && classes) st = kiln_example_add_int64(b, "label", &label, 1);
    if (!st && ds->y_kind == KILN_LABEL_FLOAT)
        st = kiln_example_add_float(b, "label", (const float *)ds->y + srow * ds->y_width,
                                    (size_t)ds->y_width);
    if (!st && cname) st = kiln_example_add_bytes(b, "label/text", cname, strlen(cname));
    return st;
}

static kiln_status open_source(conv *c) {
    const kiln_convert_options *o = c->o;
    kiln_label_kind kind = o->regression ? KILN_LABEL_FLOAT : KILN_LABEL_CLASS;
    switch (c->from) {
    case KILN_CONVERT_IMAGES:
    case KILN_CONVERT_MANIFEST: {
        if (o->regression)
            return kiln_error(KILN_ERR_INVALID, "%s: images are labelled by class", o->src);
        kiln_image_source_options io = {
            .spec = {.channels = 1, .resize_h = 1, .resize_w = 1, .out_h = 1, .out_w = 1}};
        if (c->from == KILN_CONVERT_IMAGES)
            io.root = o->src, c->root_len = strlen(o->src);
        else
            io.manifest = o->src;
        return kiln_data_load_images(&io, &c->ds);
    }
    case KILN_CONVERT_IDX:
        if (o->regression)
            return kiln_error(KILN_ERR_INVALID, "%s: IDX labels are class ids", o->src);
        return kiln_data_load_idx(o->src, o->labels, 0, &c->ds);
    case KILN_CONVERT_CSV: {
        kiln_csv_options co = {.label = o->label_column ? o->label_column : "label",
                               .label_kind = kind};
        return kiln_data_load_csv(o->src, &co, &c->ds);
    }
    default:
        return kiln_data_load_npy(o->src, o->labels, kind, &c->ds);
    }
}

static void remove_written(const char *dir, char **names, int n) {
    char p[PATH_MAX];
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
}

kiln_status kiln_data_convert(const kiln_convert_options *o, kiln_convert_result *res) {
    kiln_convert_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    const char *name = o->name && *o->name ? o->name : "train";
    if (!o->src || !*o->src || !o->to || !*o->to)
        return kiln_error(KILN_ERR_INVALID, "convert: needs a source and a folder to write to");
    if (o->shards < 1 || o->shards > 99999)
        return kiln_error(KILN_ERR_INVALID, "convert: %d shards (1 to 99999)", o->shards);
    if (strchr(name, '/') || strlen(name) > 200)
        return kiln_error(KILN_ERR_INVALID, "convert: '%s' is not a file name", name);
    if (o->compression != KILN_TFRECORD_NONE && o->compression != KILN_TFRECORD_GZIP &&
        o->compression != KILN_TFRECORD_ZLIB)
        return kiln_error(KILN_ERR_INVALID, "convert: compression must be none, gzip or zlib");
    conv c = {.o = o, .from = o->from ? o->from : detect(o->src)};
    kiln_status st = open_source(&c);
    if (st) return st;
    int64_t n = kiln_dataset_rows(c.ds);
    if (o->shards > n) {
        kiln_dataset_free(c.ds);
        return kiln_error(KILN_ERR_INVALID, "convert: %d shards for %lld records", o->shards,
                          (long long)n);
    }
    char **old = NULL, **done = NULL;
    int nold = 0, ndone = 0;
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    c.xf = malloc((size_t)c.ds->x_numel * sizeof *c.xf);
    c.xu = malloc((size_t)c.ds->x_numel);
    done = calloc((size_t)o->shards, sizeof *done);
    if (!perm || !c.xf || !c.xu || !done) st = kiln_error(KILN_ERR_NOMEM, "convert: out of memory");
    if (!st) st = kiln_example_builder_new(&c.b);
    if (!st) st = kiln_image_decoder_new(&c.dec);
    if (!st) st = kiln_mkdirs(o->to);
    if (!st) st = existing_shards(o->to, name, &old, &nold);
    if (!st && nold && !o->force)
        st = kiln_error(KILN_ERR_INVALID,
                        "%s already holds %d %s.tfrecord-* file%s (%s): remove them, choose "
                        "another --name, or replace them with --force",
                        o->to, nold, name, nold == 1 ? "" : "s", old[0]);
    if (!st && o->shuffle) st = kiln_data_permutation(n, o->seed, STREAM_CONVERT, perm);
    if (!st && !o->shuffle)
        for (int64_t i = 0; i < n; i++) perm[i] = i;
    int64_t written = 0;
    for (int s = 0; !st && s < o->shards; s++) {
        char shard[256], path[PATH_MAX];
        snprintf(shard, sizeof shard, "%s.tfrecord-%05d-of-%05d", name, s, o->shards);
        if (snprintf(path, sizeof path, "%s/%s", o->to, shard) >= (int)sizeof path) {
            st = kiln_error(KILN_ERR_INVALID, "%s: path too long", o->to);
            break;
        }
        kiln_tfrecord_writer *w = NULL;
        if ((st = kiln_tfrecord_writer_open(path, o->compression, &w))) break;
        int64_t lo = n * s / o->shards, hi = n * (s + 1) / o->shards;
        for (int64_t i = lo; i < hi && !st; i++) {
            const void *data;
            size_t len;
            st = build_record(&c, perm[i]);
            if (!st) st = kiln_example_serialize(c.b, &data, &len);
            if (!st) st = kiln_tfrecord_writer_add(w, data, len);
            if (!st && o->progress)
                o->progress(o->progress_ctx, i + 1, n, written + kiln_tfrecord_writer_bytes(w));
        }
        if (st) {
            kiln_tfrecord_writer_abort(w);
            break;
        }
        written += kiln_tfrecord_writer_bytes(w); /* for progress; the sizes come from stat */
        if ((st = kiln_tfrecord_writer_commit(w))) break;
        if (!(done[ndone] = strdup(shard)))
            st = kiln_error(KILN_ERR_NOMEM, "out of memory");
        else
            ndone++;
        if (s == 0) snprintf(res->first, sizeof res->first, "%s", path);
        snprintf(res->last, sizeof res->last, "%s", path);
    }
    if (st) {
        remove_written(o->to, done, ndone);
        memset(res, 0, sizeof *res);
    } else {
        /* --force: old shards whose names the new set did not reuse */
        for (int i = 0; i < nold; i++) {
            int reused = 0;
            for (int j = 0; j < ndone && !reused; j++) reused = !strcmp(old[i], done[j]);
            if (!reused) remove_written(o->to, &old[i], 1);
        }
        res->records = n, res->shards = ndone;
        res->num_classes = kiln_dataset_num_classes(c.ds);
        res->bytes = 0;
        for (int j = 0; j < ndone; j++) {
            char p[PATH_MAX];
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", o->to, done[j]);
            if (stat(p, &sb) == 0) res->bytes += (int64_t)sb.st_size;
        }
    }
    for (int i = 0; i < nold; i++) free(old[i]);
    for (int i = 0; i < ndone; i++) free(done[i]);
    free(old), free(done), free(perm), free(c.xf), free(c.xu), free(c.png.p);
    kiln_example_builder_free(c.b);
    kiln_image_decoder_free(c.dec);
    kiln_dataset_free(c.ds);
    return st;
}

/* ---- inspecting ---- */

typedef struct {
    kiln_inspect_result *res;
    int cap;
    int64_t hist_cap;
} inspector;

static kiln_inspect_feature *key_slot(inspector *in, const char *key) {
    kiln_inspect_result *r = in->res;
    int lo = 0, hi = r->num_features;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(r->features[mid].key, key);
        if (c == 0) return &r->features[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (r->num_features >= MAX_KEYS || strlen(key) >= sizeof r->features[0].key) {
        r->truncated_features = 1;
        return NULL;
    }
    if (r->num_features == in->cap) {
        int c = in->cap ? in->cap * 2 : 16;
        kiln_inspect_feature *f = realloc(r->features, (size_t)c * sizeof *f);
        if (!f) return NULL;
        r->features = f, in->cap = c;
    }
    memmove(&r->features[lo + 1], &r->features[lo],
            (size_t)(r->num_features - lo) * sizeof *r->features);
    r->num_features++;
    kiln_inspect_feature *f = &r->features[lo];
    memset(f, 0, sizeof *f);
    snprintf(f->key, sizeof f->key, "%s", key);
    f->min_n = f->min_bytes = INT64_MAX, f->max_n = f->max_bytes = -1;
    return f;
}

static void add_stats(inspector *in, const kiln_example *ex) {
    for (int i = 0; i < kiln_example_size(ex); i++) {
        kiln_feature f;
        kiln_example_feature(ex, i, &f);
        kiln_inspect_feature *s = key_slot(in, f.key);
        if (!s) continue;
        if (s->records == 0) {
            s->kind = f.kind;
            if (f.kind == KILN_FEAT_BYTES && f.n) {
                size_t bl;
                const uint8_t *b = kiln_feature_bytes(&f, 0, &bl);
                kiln_image_format fm = kiln_image_sniff(b, bl);
                if (fm != KILN_IMAGE_UNKNOWN)
                    snprintf(s->format, sizeof s->format, "%s", kiln_image_format_name(fm));
            }
        } else if (s->kind != f.kind) {
            s->mixed = 1;
        }
        s->records++;
        if ((int64_t)f.n < s->min_n) s->min_n = (int64_t)f.n;
        if ((int64_t)f.n > s->max_n) s->max_n = (int64_t)f.n;
        if (f.kind == KILN_FEAT_BYTES && f.n) {
            size_t bl;
            kiln_feature_bytes(&f, 0, &bl);
            if ((int64_t)bl < s->min_bytes) s->min_bytes = (int64_t)bl;
            if ((int64_t)bl > s->max_bytes) s->max_bytes = (int64_t)bl;
        }
    }
}

static kiln_status add_label(inspector *in, const kiln_example *ex, const char *label_key,
                             const char *text_key) {
    kiln_inspect_result *r = in->res;
    kiln_feature f;
    if (!label_key || !kiln_example_find(ex, label_key, &f) || f.kind != KILN_FEAT_INT64 || f.n < 1)
        return KILN_OK;
    int64_t id = f.i[0];
    if (id < 0 || id >= MAX_HIST) {
        r->out_of_range++;
        return KILN_OK;
    }
    if (id >= r->num_classes) {
        if (id >= in->hist_cap) {
            int64_t c = in->hist_cap ? in->hist_cap : 16;
            while (c <= id) c *= 2;
            int64_t *h = realloc(r->histogram, (size_t)c * sizeof *h);
            char **t = h ? realloc(r->class_text, (size_t)c * sizeof *t) : NULL;
            if (h) r->histogram = h;
            if (t) r->class_text = t;
            if (!h || !t) return kiln_error(KILN_ERR_NOMEM, "inspect: out of memory");
            in->hist_cap = c;
        }
        for (int64_t k = r->num_classes; k <= id; k++) r->histogram[k] = 0, r->class_text[k] = NULL;
        r->num_classes = (int)id + 1;
    }
    r->histogram[id]++;
    kiln_feature t;
    size_t tl;
    const uint8_t *tb;
    if (text_key && !r->class_text[id] && kiln_example_find(ex, text_key, &t) &&
        t.kind == KILN_FEAT_BYTES && t.n >= 1 && (tb = kiln_feature_bytes(&t, 0, &tl)) &&
        tl < 1024) {
        char *s = malloc(tl + 1);
        if (!s) return kiln_error(KILN_ERR_NOMEM, "inspect: out of memory");
        memcpy(s, tb, tl), s[tl] = 0;
        r->class_text[id] = s;
    }
    return KILN_OK;
}

kiln_status kiln_tfrecord_inspect(const char *const *files, int n, int compression,
                                  const char *label_key, const char *text_key, int64_t first,
                                  kiln_inspect_fn fn, void *ctx, kiln_inspect_result *res) {
    memset(res, 0, sizeof *res);
    inspector in = {.res = res};
    kiln_example *ex;
    kiln_status st = kiln_example_new(&ex);
    int stop = 0, auto_done = 0;
    res->label_key = label_key;
    for (int fi = 0; !st && !stop && fi < n; fi++) {
        kiln_tfrecord_reader *r;
        if ((st = kiln_tfrecord_open_compressed(files[fi], compression, 0, &r))) break;
        res->files++;
        for (int64_t idx = 0; !st && !stop; idx++) {
            int64_t at = kiln_tfrecord_offset(r);
            const void *data;
            size_t len;
            kiln_status rs = kiln_tfrecord_next(r, &data, &len);
            if (rs == KILN_ERR_NOTFOUND) break;
            if (rs == KILN_ERR_NOMEM || rs == KILN_ERR_IO) {
                st = rs;
                break;
            }
            if (rs) {
                res->bad++;
                char msg[1024];
                const char *why = kiln_last_error();
                size_t fl = strlen(files[fi]);
                if (!strncmp(why, files[fi], fl) && !strncmp(why + fl, ": ", 2)) why += fl + 2;
                snprintf(msg, sizeof msg, "%s: record %lld, %s", files[fi], (long long)idx, why);
                if (fn) stop = fn(ctx, files[fi], idx, at, NULL, msg);
                if (kiln_tfrecord_skip_damaged(r)) continue;
                break;
            }
            if (kiln_example_parse(ex, data, len)) {
                res->bad++;
                char msg[1024];
                snprintf(msg, sizeof msg, "%s: record %lld (offset %lld%s): %s", files[fi],
                         (long long)idx, (long long)at,
                         kiln_tfrecord_reader_compression(r) ? ", decompressed" : "",
                         kiln_last_error());
                if (fn) stop = fn(ctx, files[fi], idx, at, NULL, msg);
                continue;
            }
            res->records++;
            if (!label_key && !auto_done) { /* the first record decides */
                kiln_feature f;
                auto_done = 1;
                int img = kiln_example_find(ex, "image/class/label", &f);
                if (img || kiln_example_find(ex, "label", &f)) {
                    label_key = img ? "image/class/label" : "label";
                    if (!text_key) text_key = img ? "image/class/text" : "label/text";
                }
                res->label_key = label_key;
            }
            add_stats(&in, ex);
            st = add_label(&in, ex, label_key, text_key);
            if (!st && fn && idx < first) stop = fn(ctx, files[fi], idx, at, ex, NULL);
        }
        kiln_tfrecord_close(r);
    }
    kiln_example_free(ex);
    return st;
}

void kiln_inspect_result_free(kiln_inspect_result *res) {
    if (!res) return;
    for (int i = 0; res->class_text && i < res->num_classes; i++) free(res->class_text[i]);
    free(res->class_text);
    free(res->histogram);
    free(res->features);
    memset(res, 0, sizeof *res);
}

/* inputs_tfrecord.c — data.source: tfrecord: a config's data.features, data.compression,
 * data.image, data.on_error and data.cache turned into kiln_data_load_tfrecord calls (see
 * inputs_tfrecord.h and docs/data.md).
 *
 * data.features maps names to tf.train.Example features. The entry named `label` is the label
 * (an int64 class id, or float targets for regression; `names_key` the bytes feature holding
 * class names); every other entry is an input: one `decode: image` feature (decoded with
 * data.image into model.input's [C, H, W]), or raw lists (`dtype: float | int64 | bytes`,
 * optional `shape`) concatenated in the order written. Without data.features, the keys
 * `kiln data convert` and TFDS image datasets use: image/encoded and image/class/label.
 * Mistakes in the spec are config errors (exit 2) naming the key; mistakes in the data are
 * runtime errors naming the file and the record.
 */
#include <stdio.h>
#include <string.h>

#include "kiln/tfrecord.h"
#include "model/inputs_images.h"
#include "model/inputs_tfrecord.h"

#define MAX_FEATURES 256

typedef struct {
    kiln_tfrecord_feature feat[MAX_FEATURES];
    int nfeat;
    const char *label_key, *names_key;
    const char *label_dtype;
    const kiln_cfg *label_at;
    int images;
} spec;

static kiln_status bad(const kiln_cfg *at, const char *fmt, const char *a, const char *b) {
    char where[300], msg[600];
    snprintf(msg, sizeof msg, fmt, a, b);
    return kiln_error(KILN_ERR_INVALID, "%s: %s", kiln_cfg_where(at, where, sizeof where), msg);
}

/* One entry of data.features into sp. */
static kiln_status add_entry(const kiln_cfg *e, spec *sp) {
    const kiln_cfg *k = kiln_cfg_child(e, "key"), *dec = kiln_cfg_child(e, "decode");
    const kiln_cfg *dt = kiln_cfg_child(e, "dtype"), *sh = kiln_cfg_child(e, "shape");
    const kiln_cfg *nk = kiln_cfg_child(e, "names_key");
    const char *key = k && k->text && k->text[0] ? k->text : e->key;
    if (!strcmp(e->key, "label")) {
        if (dec)
            return bad(dec, "data.features.label: a label is not decoded (no 'decode')%s%s", "",
                       "");
        if (dt && !strcmp(dt->text, "bytes"))
            return bad(dt,
                       "data.features.label.dtype: a label is int64 (class ids) or float "
                       "(regression targets), not %s%s",
                       dt->text, "");
        if (sh)
            return bad(sh, "data.features.label: no 'shape' (the model's outputs decide)%s%s", "",
                       "");
        sp->label_key = key, sp->label_at = e;
        sp->label_dtype = dt ? dt->text : NULL;
        sp->names_key = nk && nk->text[0] ? nk->text : "image/class/text";
        return KILN_OK;
    }
    if (nk)
        return bad(nk, "data.features.%s.names_key: only the 'label' entry has class names%s",
                   e->key, "");
    if (sp->nfeat == MAX_FEATURES)
        return bad(e, "data.features: more than %s input features%s", "256", "");
    kiln_tfrecord_feature *f = &sp->feat[sp->nfeat++];
    memset(f, 0, sizeof *f);
    f->key = key;
    if (dec) { /* decode: image */
        if (dt || sh)
            return bad(dt ? dt : sh,
                       "data.features.%s: an image feature takes no '%s' (data.image and "
                       "model.input give its shape)",
                       e->key, dt ? "dtype" : "shape");
        f->decode = KILN_TFR_IMAGE;
        sp->images++;
        return KILN_OK;
    }
    const char *d = dt ? dt->text : "float";
    f->decode = !strcmp(d, "int64")   ? KILN_TFR_INT64
                : !strcmp(d, "bytes") ? KILN_TFR_RAW
                                      : KILN_TFR_FLOAT;
    if (sh) {
        if (sh->n_items < 1 || sh->n_items > KILN_MAX_DIMS - 1)
            return bad(sh, "data.features.%s.shape: 1 to 7 dimensions%s", e->key, "");
        int64_t dims[KILN_MAX_DIMS], numel = 1;
        for (int i = 0; i < sh->n_items; i++) {
            kiln_cfg_parse_int(sh->items[i], &dims[i]);
            numel *= dims[i];
            if (numel > ((int64_t)1 << 40))
                return bad(sh, "data.features.%s.shape: too large%s", e->key, "");
        }
        f->shape = kiln_shape_make(sh->n_items, dims);
        f->numel = numel;
    }
    return KILN_OK;
}

static kiln_status read_spec(const kiln_cfg *cfg, const kiln_model *m, spec *sp) {
    memset(sp, 0, sizeof *sp);
    const kiln_cfg *fs = kiln_cfg_at(cfg, "data.features");
    char where[300];
    if (!fs) { /* what kiln data convert writes for images (and TFDS-style image shards) */
        sp->feat[0] = (kiln_tfrecord_feature){"image/encoded", KILN_TFR_IMAGE, 0, {0}};
        sp->nfeat = 1, sp->images = 1;
        sp->label_key = "image/class/label", sp->names_key = "image/class/text";
        return KILN_OK;
    }
    if (fs->type != KILN_CFG_MAP)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.features: source tfrecord takes a map of features ({image: "
                          "{key: image/encoded, decode: image}, label: {key: "
                          "image/class/label}}), not a list",
                          kiln_cfg_where(fs, where, sizeof where));
    kiln_status st;
    for (int i = 0; i < fs->n_items; i++)
        if ((st = add_entry(fs->items[i], sp))) return st;
    if (!sp->label_key)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.features: needs a 'label' entry (e.g. label: {key: "
                          "image/class/label})",
                          kiln_cfg_where(fs, where, sizeof where));
    if (sp->nfeat == 0)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.features: needs an input feature besides the label",
                          kiln_cfg_where(fs, where, sizeof where));
    if (sp->images && sp->nfeat > 1)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.features: an image feature (decode: image) must be the only "
                          "input feature (there are %d)",
                          kiln_cfg_where(fs, where, sizeof where), sp->nfeat);
    int cls = m->task == KILN_TASK_CLASSIFICATION;
    if (sp->label_dtype && cls && strcmp(sp->label_dtype, "int64"))
        return bad(kiln_cfg_child(sp->label_at, "dtype"),
                   "data.features.label.dtype: %s, but class labels are int64 (for float "
                   "targets use a regression loss)%s",
                   sp->label_dtype, "");
    return KILN_OK;
}

kiln_status kiln_inputs_tfrecord_split(const kiln_cfg *cfg, const char *split, const kiln_cfg *sp,
                                       const kiln_model *m, kiln_inputs *in, kiln_dataset **out) {
    *out = NULL;
    char where[300];
    const kiln_cfg *pat = sp ? kiln_cfg_child(sp, "path") : NULL;
    if (!pat || pat->type != KILN_CFG_SCALAR || !pat->text[0])
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.%s: source tfrecord needs 'path' (a file, a folder or a glob "
                          "such as DIR/train.tfrecord-*)",
                          kiln_cfg_where(sp ? sp : cfg, where, sizeof where), split);
    spec s;
    kiln_status st = read_spec(cfg, m, &s);
    if (st) return st;
    kiln_tfrecord_source_options o = {0};
    if (s.images && (st = kiln_inputs_image_spec(cfg, m, &o.spec))) return st;
    kiln_tfrecord_compression comp = KILN_TFRECORD_AUTO;
    kiln_tfrecord_compression_parse(kiln_cfg_str(cfg, "data.compression", "auto"), &comp);
    char **files = NULL;
    int nfiles = 0;
    if ((st = kiln_data_glob(pat->text, &files, &nfiles))) return st;
    int cls = m->task == KILN_TASK_CLASSIFICATION;
    o.files = (const char *const *)files, o.num_files = nfiles;
    o.compression = comp;
    o.features = s.feat, o.num_features = s.nfeat;
    o.label_key = s.label_key;
    o.label_kind = cls ? KILN_LABEL_CLASS : KILN_LABEL_FLOAT;
    o.text_key = cls ? s.names_key : NULL;
    /* validation and test take the training split's class names */
    const char *names[4096];
    int k = in->train && cls ? kiln_dataset_num_classes(in->train) : 0;
    if (k > 0 && k <= 4096 && kiln_dataset_class_name(in->train, 0)) {
        for (int i = 0; i < k; i++) names[i] = kiln_dataset_class_name(in->train, i);
        o.class_names = names, o.num_class_names = k;
    }
    o.skip_bad = !strcmp(kiln_cfg_str(cfg, "data.on_error", "error"), "skip");
    o.cache_bytes = kiln_inputs_cache_budget(cfg, in);
    kiln_tfrecord_source_result res;
    kiln_dataset *ds = NULL;
    st = kiln_data_load_tfrecord(&o, &ds, &res);
    kiln_data_free_files(files, nfiles);
    if (st) {
        /* damaged records (a checksum, a missing feature, a wrong type): a runtime failure, as
         * a damaged image met while training is; the same for unreadable files */
        in->data_error = st == KILN_ERR_FORMAT || st == KILN_ERR_IO;
        return st;
    }
    kiln_shape xs = kiln_dataset_x_shape(ds);
    int64_t rb = kiln_shape_numel(&xs) * (kiln_dataset_x_dtype(ds) == KILN_U8 ? 1 : 4);
    kiln_inputs_cache_used(in, o.cache_bytes, kiln_dataset_rows(ds), rb);
    if (res.skipped) {
        if (!in->skipped) snprintf(in->skipped_first, sizeof in->skipped_first, "%s", res.first);
        in->skipped += res.skipped;
    }
    if (o.skip_bad && s.images) { /* image bytes are only checked by decoding them */
        if ((st = kiln_inputs_drop_unreadable(in, &ds))) return st;
    }
    *out = ds;
    return KILN_OK;
}

kiln_status kiln_inputs_tfrecord_features(const kiln_cfg *cfg, const kiln_model *m,
                                          kiln_tfrecord_feature feat[256], int *nfeat,
                                          const char **label_key, int *images) {
    spec s;
    kiln_status st = read_spec(cfg, m, &s);
    if (st) return st;
    memcpy(feat, s.feat, (size_t)s.nfeat * sizeof *feat);
    *nfeat = s.nfeat, *label_key = s.label_key, *images = s.images;
    return KILN_OK;
}

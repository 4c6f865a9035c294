/* inputs.c — config data: section into datasets and a loader configuration (see kiln/inputs.h).
 *
 * Sources: idx (train.images + train.labels), csv (train.path; data.label names the label
 * column, data.features optionally the feature columns), npy (train.x + train.y), images
 * (inputs_images.c), tfrecord (inputs_tfrecord.c: train.path a file, folder or glob). The same keys
 * under validation: and test:. Without a validation: entry, data.validation_split carves one out
 * of the training data with the seed. data.normalize gives scale, per-channel mean/std, or
 * standardize: true (mean/std measured on the training split).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/inputs.h"
#include "model/inputs_augment.h"
#include "model/inputs_images.h"
#include "model/inputs_kafka.h"
#include "model/inputs_tfrecord.h"
#include "model/servable_internal.h"

static const char *const FILE_KEYS[] = {"images", "labels", "path", "x", "y", "manifest"};

/* The absolute folder that node f's relative paths are relative to: the folder of the config
 * file it was read from, when that is a regular file; otherwise (--set, a pipe, text parsed
 * from memory) fallback, and without one the current directory. */
static kiln_status base_of(const kiln_cfg *f, const char *fallback, char *out) {
    struct stat sb;
    char dir[PATH_MAX];
    const char *from = fallback;
    if (f->file && strcmp(f->file, "--set") && strcmp(f->file, "default") &&
        stat(f->file, &sb) == 0 && S_ISREG(sb.st_mode)) {
        if (snprintf(dir, sizeof dir, "%s", f->file) >= (int)sizeof dir)
            return kiln_error(KILN_ERR_INVALID, "%s: path too long", f->file);
        from = dirname(dir);
    }
    if (from && realpath(from, out)) return KILN_OK;
    if (from)
        return kiln_error(KILN_ERR_IO, "data paths: cannot resolve the folder %s: %s", from,
                          strerror(errno));
    if (getcwd(out, PATH_MAX)) return KILN_OK;
    return kiln_error(KILN_ERR_IO, "data paths: cannot read the current directory: %s",
                      strerror(errno));
}

kiln_status kiln_inputs_resolve_paths(kiln_cfg *cfg, const char *base_dir) {
    static const char *const splits[] = {"data.train", "data.validation", "data.test", "model",
                                         "train.distill"};
    for (int s = 0; s < 5; s++) {
        kiln_cfg *sp = kiln_cfg_at(cfg, splits[s]);
        for (int k = 0; sp && k < 6; k++) {
            kiln_cfg *f = s < 3 ? kiln_cfg_child(sp, FILE_KEYS[k])
                          : k   ? NULL /* model.init_from, train.distill.teacher too */
                                : kiln_cfg_child(sp, s == 3 ? "init_from" : "teacher");
            if (f && f->type == KILN_CFG_MAP) f = kiln_cfg_child(f, "path");
            if (!f || f->type != KILN_CFG_SCALAR || !f->text[0] || f->text[0] == '/') continue;
            char base[PATH_MAX];
            kiln_status st = base_of(f, base_dir, base);
            if (st) return st;
            const char *rel = f->text;
            while (rel[0] == '.' && rel[1] == '/') /* "./x" */
                for (rel += 2; *rel == '/'; rel++) {
                }
            size_t n = strlen(base) + strlen(rel) + 2;
            char *abs = malloc(n);
            if (!abs) return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
            snprintf(abs, n, "%s%s%s", base, strcmp(base, "/") ? "/" : "", rel);
            free(f->text);
            f->text = abs;
        }
    }
    return KILN_OK;
}

static kiln_status need(const kiln_cfg *sp, const char *split, const char *key, const char *source, const char **out) {
    kiln_cfg *f = kiln_cfg_child(sp, key);
    if (!f || f->type != KILN_CFG_SCALAR || !f->text[0]) {
        char where[300];
        return kiln_error(KILN_ERR_INVALID, "%s: data.%s: source %s needs '%s'", kiln_cfg_where(sp, where, sizeof where),
                          split, source, key);
    }
    *out = f->text;
    return KILN_OK;
}

static kiln_status load_split(const kiln_cfg *cfg, const char *split, const kiln_model *m, kiln_inputs *in,
                              kiln_dataset **out) {
    kiln_task task = m->task;
    char path[64];
    snprintf(path, sizeof path, "data.%s", split);
    const kiln_cfg *sp = kiln_cfg_at(cfg, path);
    const char *source = kiln_cfg_str(cfg, "data.source", "idx");
    const char *a = NULL, *b = NULL;
    kiln_status st;
    kiln_label_kind kind = task == KILN_TASK_CLASSIFICATION ? KILN_LABEL_CLASS : KILN_LABEL_FLOAT;
    if (!strcmp(source, "images")) {
        if (kind != KILN_LABEL_CLASS)
            return kiln_error(KILN_ERR_INVALID, "data.task: image folders are labelled by class; use task: classification");
        st = kiln_inputs_images_split(cfg, split, sp, m, in, out);
    } else if (!strcmp(source, "tfrecord")) {
        st = kiln_inputs_tfrecord_split(cfg, split, sp, m, in, out);
    } else if (!strcmp(source, "kafka")) {
        if (!kiln_inputs_kafka_ops)
            return kiln_error(KILN_ERR_INVALID,
                              "data.source: kafka: this program does not read Kafka (kiln-serve); "
                              "export the run with kiln export and serve the export");
        return kiln_inputs_kafka_ops->split(cfg, split, sp, m, in, out); /* prefixes its errors */
    } else if (!strcmp(source, "idx")) {
        if ((st = need(sp, split, "images", source, &a)) || (st = need(sp, split, "labels", source, &b))) return st;
        if (kind != KILN_LABEL_CLASS)
            return kiln_error(KILN_ERR_INVALID, "data.task: IDX labels are class ids; use task: classification");
        st = kiln_data_load_idx(a, b, 0, out);
    } else if (!strcmp(source, "csv")) {
        if ((st = need(sp, split, "path", source, &a))) return st;
        kiln_cfg *feats = kiln_cfg_at(cfg, "data.features");
        if (feats && feats->type != KILN_CFG_SEQ) {
            char where[300];
            return kiln_error(KILN_ERR_INVALID,
                              "%s: data.features: source csv takes a list of column names (a map "
                              "of features is for source tfrecord)",
                              kiln_cfg_where(feats, where, sizeof where));
        }
        const char *names[4096];
        int nf = 0;
        for (int i = 0; feats && i < feats->n_items && i < 4096; i++) names[nf++] = feats->items[i]->text;
        kiln_csv_options o = {.label = kiln_cfg_str(cfg, "data.label", "label"), .label_kind = kind,
                              .feature_columns = nf ? names : NULL, .num_feature_columns = nf};
        st = kiln_data_load_csv(a, &o, out);
    } else {
        if ((st = need(sp, split, "x", source, &a)) || (st = need(sp, split, "y", source, &b))) return st;
        st = kiln_data_load_npy(a, b, kind, out);
    }
    if (st) kiln_error_prefix("data.%s", split);
    return st;
}

/* Row shape of the data vs model.input: equal element counts are fine ([784] vs [1, 28, 28]). */
static kiln_status check_fit(const kiln_dataset *ds, const char *split, const kiln_model *m) {
    kiln_shape xs = kiln_dataset_x_shape(ds), ms = kiln_node_shape(m->input);
    int64_t want = kiln_shape_numel(&ms); /* batch 1 */
    char a[128], b[128];
    ms.ndim--;
    memmove(ms.dims, ms.dims + 1, sizeof ms.dims - sizeof ms.dims[0]);
    if (kiln_shape_numel(&xs) != want)
        return kiln_error(KILN_ERR_INVALID, "data.%s: rows have shape %s (%lld values) but model.input is %s (%lld values)",
                          split, kiln_shape_str(&xs, a, sizeof a), (long long)kiln_shape_numel(&xs),
                          kiln_shape_str(&ms, b, sizeof b), (long long)want);
    if (m->task == KILN_TASK_CLASSIFICATION) {
        if (kiln_dataset_num_classes(ds) > m->n_outputs)
            return kiln_error(KILN_ERR_INVALID, "data.%s: %d classes, but the model's last layer has %lld outputs", split,
                              kiln_dataset_num_classes(ds), (long long)m->n_outputs);
    } else if (kiln_dataset_label_width(ds) != m->n_outputs) {
        return kiln_error(KILN_ERR_INVALID, "data.%s: %lld targets per row, but the model's last layer has %lld outputs", split,
                          (long long)kiln_dataset_label_width(ds), (long long)m->n_outputs);
    }
    return KILN_OK;
}

kiln_status kiln_inputs_load(const kiln_cfg *cfg, const kiln_model *m, kiln_inputs *in) {
    return kiln_inputs_load_at(cfg, m, NULL, in);
}

kiln_status kiln_inputs_load_at(const kiln_cfg *cfg, const kiln_model *m, const char *kafka_state,
                                kiln_inputs *in) {
    memset(in, 0, sizeof *in);
    in->cache_left = -1;
    in->kafka_state = kafka_state;
    kiln_status st;
    kiln_dataset *all = NULL;
    if ((st = load_split(cfg, "train", m, in, &all))) return st;
    if (kiln_cfg_at(cfg, "data.validation")) {
        in->train = all;
        st = load_split(cfg, "validation", m, in, &in->validation);
    } else {
        double frac = kiln_cfg_num(cfg, "data.validation_split", 0);
        if (frac > 0) {
            st = kiln_data_split(all, frac, (uint64_t)kiln_cfg_int(cfg, "seed", 1), &in->train, &in->validation);
            kiln_dataset_free(all);
        } else {
            in->train = all;
        }
    }
    if (!st && kiln_cfg_at(cfg, "data.test")) st = load_split(cfg, "test", m, in, &in->test);
    if (!st) st = check_fit(in->train, "train", m);
    if (!st && in->validation) st = check_fit(in->validation, "validation", m);
    if (!st && in->test) st = check_fit(in->test, "test", m);
    if (st) {
        int data_error = in->data_error;
        kiln_inputs_free(in);
        in->data_error = data_error;
        return st;
    }
    in->n_classes = kiln_dataset_num_classes(in->train);
    kiln_loader_config *lc = &in->loader;
    lc->batch_size = kiln_cfg_int(cfg, "data.batch_size", 32);
    lc->shuffle = kiln_cfg_bool(cfg, "data.shuffle", 1);
    lc->seed = (uint64_t)kiln_cfg_int(cfg, "seed", 1);
    lc->prefetch = (int)kiln_cfg_int(cfg, "data.prefetch", 2);
    lc->workers = kiln_inputs_workers(cfg);
    lc->norm.scale = (float)kiln_cfg_num(cfg, "data.normalize.scale", 1.0);
    kiln_shape xs = kiln_dataset_x_shape(in->train);
    int channels = (int)xs.dims[0];
    kiln_cfg *mean = kiln_cfg_at(cfg, "data.normalize.mean"), *sd = kiln_cfg_at(cfg, "data.normalize.std");
    if (kiln_cfg_bool(cfg, "data.normalize.standardize", 0)) {
        if (channels > 256) {
            kiln_inputs_free(in);
            return kiln_error(KILN_ERR_INVALID, "data.normalize.standardize: at most 256 channels (got %d)", channels);
        }
        if ((st = kiln_dataset_channel_stats(in->train, lc->norm.scale, in->mean, in->std))) {
            kiln_inputs_free(in);
            return st;
        }
        lc->norm.channels = channels;
    } else if (mean || sd) {
        int nm = mean ? mean->n_items : 0, ns = sd ? sd->n_items : 0;
        if (nm != channels || ns != channels || channels > 256) {
            kiln_inputs_free(in);
            return kiln_error(KILN_ERR_INVALID,
                              "data.normalize: mean and std need one value per channel (%d channels; got %d and %d)",
                              channels, nm, ns);
        }
        for (int c = 0; c < channels; c++) {
            double v;
            kiln_cfg_parse_num(mean->items[c], &v), in->mean[c] = (float)v;
            kiln_cfg_parse_num(sd->items[c], &v), in->std[c] = (float)v;
        }
        lc->norm.channels = channels;
    }
    lc->norm.mean = in->mean;
    lc->norm.std = in->std;
    if (in->kafka_stream) lc->prefetch = 0; /* a stream's rows change between epochs */
    if ((st = kiln_inputs_augment(cfg, m, in))) kiln_inputs_free(in);
    return st;
}

kiln_status kiln_inputs_check_class_names(const kiln_cfg *cfg, const kiln_model *m) {
    const kiln_cfg *cn = kiln_cfg_at(cfg, "model.class_names"), *loss = kiln_cfg_child(cfg, "loss");
    if (!cn || cn->type != KILN_CFG_SEQ || !cn->n_items || !loss || loss->type != KILN_CFG_MAP ||
        loss->n_items != 1)
        return KILN_OK;
    const char *prob = kiln_servable_prob_kind(loss->items[0]->key);
    if (!prob || kiln_servable_class_count_ok(prob, m->n_outputs, cn->n_items)) return KILN_OK;
    char where[300];
    int two = m->n_outputs == 1 && !strcmp(prob, "sigmoid");
    return kiln_error(KILN_ERR_INVALID,
                      "%s: model.class_names: %d names for a model with %lld output%s (the last "
                      "layer's units): give one name per class%s",
                      kiln_cfg_where(cn, where, sizeof where), cn->n_items,
                      (long long)m->n_outputs, m->n_outputs == 1 ? "" : "s",
                      two ? " (or two for one sigmoid output: negative, positive)" : "");
}

const kiln_inputs_kafka_table *kiln_inputs_kafka_ops;

void kiln_inputs_free(kiln_inputs *in) {
    if (kiln_inputs_kafka_ops) kiln_inputs_kafka_ops->free(in);
    kiln_dataset_free(in->train);
    kiln_dataset_free(in->validation);
    kiln_dataset_free(in->test);
    memset(in, 0, sizeof *in);
}

/* inputs_kafka.c — data.source: kafka: data.train.topic, data.validation.topic and data.kafka
 * turned into a kiln_kafka_source (kiln/kafka.h, docs/kafka.md), and the trainer's calls for it
 * (kiln_inputs_epoch, kiln_inputs_save_state, kiln_inputs_commit_state in kiln/inputs.h): they
 * do nothing for other sources.
 *
 * The training split keeps its source in in->kafka: in stream mode the dataset's rows change at
 * each epoch's start (so its loader makes no batches ahead: train_loader.prefetch 0), and the
 * source's offsets go into every checkpoint (kafka.json) and are committed after it. Validation
 * and test topics are read once as replay snapshots. Stream mode takes no validation_split (a
 * split of a window would change with it): give data.validation.topic instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kafka.h"
#include "model/inputs_images.h"
#include "model/inputs_kafka.h"
#include "model/inputs_tfrecord.h"

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

kiln_status kiln_inputs_kafka_split(const kiln_cfg *cfg, const char *split, const kiln_cfg *sp,
                                    const kiln_model *m, kiln_inputs *in, kiln_dataset **out) {
    *out = NULL;
    char where[300];
    const kiln_cfg *tp = sp ? kiln_cfg_child(sp, "topic") : NULL;
    const char *topics[64];
    int nt = 0;
    if (tp && tp->type == KILN_CFG_SCALAR && tp->text[0]) topics[nt++] = tp->text;
    for (int i = 0; tp && tp->type == KILN_CFG_SEQ && i < tp->n_items && nt < 64; i++)
        topics[nt++] = tp->items[i]->text;
    if (!nt)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.%s: source kafka needs 'topic' (a name, a list of names, or "
                          "a pattern starting with ^)",
                          kiln_cfg_where(sp ? sp : cfg, where, sizeof where), split);
    int train = !strcmp(split, "train");
    const char *mode = kiln_cfg_str(cfg, "data.kafka.mode", "replay");
    int replay = !train || !strcmp(mode, "replay");
    const kiln_cfg *vs = kiln_cfg_at(cfg, "data.validation_split");
    if (train && !replay && vs && kiln_cfg_num(cfg, "data.validation_split", 0) > 0)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.validation_split: a stream has no fixed rows to split; give "
                          "data.validation: {topic: NAME} (read as a snapshot) instead",
                          kiln_cfg_where(vs, where, sizeof where));
    kiln_kafka_source_options o = {0};
    o.conn.brokers = kiln_cfg_str(cfg, "data.kafka.brokers", NULL);
    if (!o.conn.brokers || !o.conn.brokers[0])
        return kiln_error(KILN_ERR_INVALID, "data.kafka.brokers: source kafka needs the brokers "
                                            "(host:port[,host:port...])");
    char group[512];
    snprintf(group, sizeof group, "%s%s%s", kiln_cfg_str(cfg, "data.kafka.group_id", "kiln"),
             train ? "" : "-", train ? "" : split);
    o.conn.group_id = group;
    const kiln_cfg *props = kiln_cfg_at(cfg, "data.kafka.properties");
    const char *pv[64];
    for (int i = 0; props && i < props->n_items && i < 64; i++)
        pv[o.conn.num_props++] = props->items[i]->text;
    o.conn.props = pv;
    o.topics = topics, o.num_topics = nt;
    o.replay = replay;
    o.epoch_records = kiln_cfg_int(cfg, "data.kafka.epoch_records", 0);
    o.epoch_seconds = kiln_cfg_num(cfg, "data.kafka.epoch_seconds", 0);
    if (!replay && o.epoch_records < 1)
        return kiln_error(KILN_ERR_INVALID, "data.kafka.epoch_records: mode stream needs the "
                                            "rows of an epoch (with epoch_seconds: at most)");
    o.timeout_s = kiln_cfg_num(cfg, "data.kafka.timeout_s", 0);
    o.skip_bad = !strcmp(kiln_cfg_str(cfg, "data.on_error", "error"), "skip");
    o.trace = train ? kiln_cfg_str(cfg, "data.kafka.trace", NULL) : NULL;
    o.state = train ? in->kafka_state : NULL;
    o.log = log_line;
    kiln_kafka_decode *d = &o.dec;
    if (!kiln_kafka_format_parse(kiln_cfg_str(cfg, "data.kafka.format", "tf_example"), &d->format))
        return kiln_error(KILN_ERR_INVALID, "data.kafka.format: tf_example, npy, json or raw");
    int cls = m->task == KILN_TASK_CLASSIFICATION;
    d->label_kind = cls ? KILN_LABEL_CLASS : KILN_LABEL_FLOAT;
    d->label_width = cls ? 0 : m->n_outputs;
    d->num_classes = cls ? (int)m->n_outputs : 0;
    kiln_shape ms = kiln_node_shape(m->input);
    d->x_shape = ms;
    d->x_shape.ndim--;
    memmove(d->x_shape.dims, d->x_shape.dims + 1, sizeof ms.dims - sizeof ms.dims[0]);
    kiln_tfrecord_feature feat[256];
    kiln_status st;
    if (d->format == KILN_KAFKA_TF_EXAMPLE) {
        int images = 0;
        if ((st = kiln_inputs_tfrecord_features(cfg, m, feat, &d->num_features, &d->label_key,
                                                &images)))
            return st;
        d->features = feat;
        if (images && (st = kiln_inputs_image_spec(cfg, m, &d->spec))) return st;
    }
    kiln_kafka_source *src = NULL;
    if ((st = kiln_kafka_source_open(&o, &src))) {
        in->data_error = st == KILN_ERR_FORMAT || st == KILN_ERR_IO;
        kiln_error_prefix("data.%s", split);
        return st;
    }
    kiln_dataset *ds = kiln_kafka_source_dataset(src);
    int64_t n = kiln_dataset_rows(ds);
    int64_t *rows = malloc((size_t)n * sizeof *rows);
    if (!rows) st = kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
    for (int64_t i = 0; !st && i < n; i++) rows[i] = i;
    if (!st) st = kiln_dataset_subset(ds, rows, n, out); /* a view: ours to free */
    free(rows);
    char first[512];
    int64_t skipped = kiln_kafka_source_skipped(src, first, sizeof first);
    if (skipped) {
        if (!in->skipped) snprintf(in->skipped_first, sizeof in->skipped_first, "%s", first);
        in->skipped += skipped;
    }
    if (!st && train) {
        in->kafka = src;
        in->kafka_stream = !replay;
    } else {
        kiln_kafka_source_free(src); /* the view holds the rows */
    }
    return st;
}

kiln_status kiln_inputs_epoch(kiln_inputs *in, int64_t epoch) {
    return in->kafka && in->kafka_stream ? kiln_kafka_source_epoch(in->kafka, epoch) : KILN_OK;
}

kiln_status kiln_inputs_save_state(kiln_inputs *in, int64_t epoch, const char *dir) {
    if (!in->kafka) return KILN_OK;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/kafka.json", dir) >= (int)sizeof path)
        return kiln_error(KILN_ERR_INVALID, "%s: path too long", dir);
    return kiln_kafka_source_save(in->kafka, epoch, path);
}

void kiln_inputs_set_log(kiln_inputs *in, void (*log)(void *ctx, const char *line), void *ctx) {
    if (in->kafka) kiln_kafka_source_set_log(in->kafka, log, ctx);
}

kiln_status kiln_inputs_commit_state(kiln_inputs *in) {
    return in->kafka ? kiln_kafka_source_commit(in->kafka) : KILN_OK;
}

void kiln_inputs_kafka_free(kiln_inputs *in) {
    kiln_kafka_source_free(in->kafka);
    in->kafka = NULL;
}

static const kiln_inputs_kafka_table kafka_ops = {kiln_inputs_kafka_split, kiln_inputs_kafka_free};

void kiln_inputs_use_kafka(void) {
    kiln_inputs_kafka_ops = &kafka_ops;
}

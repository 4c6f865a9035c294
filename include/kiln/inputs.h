/* kiln/inputs.h — the data a config names: train / validation / test datasets and how to batch
 * them (DESIGN.md §4, data:). Relative file names are taken relative to the config file's folder
 * and written back as absolute paths, so a run folder's config.yaml works from anywhere
 * (kiln_inputs_resolve_paths). */
#ifndef KILN_INPUTS_H
#define KILN_INPUTS_H

#include "kiln/config.h"
#include "kiln/data.h"
#include "kiln/model.h"

typedef struct {
    kiln_dataset *train, *validation, *test; /* validation and test may be NULL */
    kiln_loader_config loader;               /* batch size, shuffle, seed, normalization */
    kiln_loader_config train_loader;         /* loader plus data.augment and soft labels: for
                                                the training split only */
    kiln_augment augment;                    /* storage behind train_loader.augment */
    float mean[256], std[256];               /* storage behind loader.norm */
    int n_classes;                           /* classification: classes in the training data */
    int64_t skipped;        /* data.on_error: skip: unreadable samples left out, all splits */
    char skipped_first[512]; /* the first one's message */
    int64_t cache_left;      /* data.cache: decoded: bytes not yet given to a split (-1: unset) */
    int data_error; /* set when kiln_inputs_load failed on damaged records in the files (a
                       runtime failure, exit 1) rather than on the config or what it names */
    /* data.source: kafka (src/model/inputs_kafka.c): the training split's source, whose offsets
     * go into checkpoints; stream: its rows change at each epoch's start */
    struct kiln_kafka_source *kafka;
    int kafka_stream;
    const char *kafka_state; /* kiln_inputs_load_at: a checkpoint's kafka.json to start from */
} kiln_inputs;

/* Rewrites the relative data paths of cfg's data: section (train/validation/test images,
 * labels, path, x, y), model.init_from's path and train.distill.teacher to absolute ones, so
 * that the config works from any directory: a path written in a config file is relative to
 * that file's folder; one that came from no regular file (--set, a config read from a pipe)
 * relative to base_dir, or the current directory when base_dir is NULL. Call it right after
 * loading (file names are as they were given then). */
kiln_status kiln_inputs_resolve_paths(kiln_cfg *cfg, const char *base_dir);
/* Loads what cfg's data: section names and checks it against the model (row shape, label kind,
 * class count). Errors name the config key and the file; on failure in is empty except for
 * in->data_error. */
kiln_status kiln_inputs_load(const kiln_cfg *cfg, const kiln_model *m, kiln_inputs *in);
/* The same, resuming: kafka_state is the checkpoint's kafka.json (NULL: none), so a Kafka source
 * reads again exactly the window that checkpoint was taken in (docs/kafka.md). */
kiln_status kiln_inputs_load_at(const kiln_cfg *cfg, const kiln_model *m, const char *kafka_state,
                                kiln_inputs *in);
void kiln_inputs_free(kiln_inputs *in);
/* What the trainer tells a data source that is a stream (data.source: kafka; nothing for the
 * others): an epoch begins (before its first batch; stream: the rows become that epoch's
 * window), a checkpoint is being written into dir at the trainer's epoch (dir/kafka.json), and
 * it was committed (the consumer group's offsets follow the checkpoint). */
kiln_status kiln_inputs_epoch(kiln_inputs *in, int64_t epoch);
kiln_status kiln_inputs_save_state(kiln_inputs *in, int64_t epoch, const char *dir);
kiln_status kiln_inputs_commit_state(kiln_inputs *in);
/* Where a stream's own lines go from now on ("kafka: ... training paused" and "continues"; until
 * then stderr): the trainer sends them to the run's log.txt and stderr once the run exists. */
void kiln_inputs_set_log(kiln_inputs *in, void (*log)(void *ctx, const char *line), void *ctx);
void kiln_inputs_kafka_free(kiln_inputs *in);
/* Lets this program read data.source: kafka. The kiln command calls it first thing; a program
 * that never does (kiln-serve, so its image carries no librdkafka) gets KILN_ERR_INVALID saying
 * so for a Kafka source. Idempotent; call before any thread loads inputs. */
void kiln_inputs_use_kafka(void);
/* stages: re-reads data.augment of cfg (a stage's config) into in->augment and in->train_loader
 * for model m (mixup and cutmix need its soft labels); make a new training loader after. */
kiln_status kiln_inputs_set_augment(const kiln_cfg *cfg, const kiln_model *m, kiln_inputs *in);
/* model.class_names against the model: one name per output of a classifier (a single sigmoid
 * output may have two: negative, positive), as a servable package needs. KILN_ERR_INVALID with
 * file:line:column: model.class_names: ... otherwise; OK when there are none or the loss gives
 * no probabilities (they are not used then). Training checks it before the first step. */
kiln_status kiln_inputs_check_class_names(const kiln_cfg *cfg, const kiln_model *m);

#endif

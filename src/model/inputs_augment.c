/* inputs_augment.c — data.augment and data.workers of a config: the list of augmentations turned
 * into a kiln_augment for the training split's loader, with soft labels when it mixes (see
 * inputs_augment.h, kiln/augment.h and docs/data.md).
 *
 * The schema (src/config/schema.c) has checked each op's keys, types and ranges and filled the
 * defaults; the rules that need the whole list (random_resized_crop first, mixup and cutmix
 * last) are kiln_augment_check's, run here on each prefix of the list so that the error names
 * the position of the op that breaks them.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/inputs_augment.h"

int kiln_inputs_workers(const kiln_cfg *cfg) {
    int64_t w = kiln_cfg_int(cfg, "data.workers", 0);
    if (w > 0) return (int)w;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)(cores < 1024 ? cores : 1024) : 1;
}

static float num(const kiln_cfg *args, const char *key, double def) {
    return (float)kiln_cfg_num(args, key, def);
}

static void pair(const kiln_cfg *args, const char *key, float lo, float hi, float out[2]) {
    const kiln_cfg *c = kiln_cfg_child(args, key);
    out[0] = lo, out[1] = hi;
    if (!c || c->type != KILN_CFG_SEQ) return;
    double v;
    out[0] = out[1] = -1; /* a list of other than 2 numbers fails kiln_augment_check */
    if (c->n_items == 2 && !kiln_cfg_parse_num(c->items[0], &v)) out[0] = (float)v;
    if (c->n_items == 2 && !kiln_cfg_parse_num(c->items[1], &v)) out[1] = (float)v;
}

/* One op from its config entry ({kind: {args}}). */
static kiln_status parse_op(const kiln_cfg *item, kiln_aug_op *o) {
    const kiln_cfg *args = item->items[0];
    const char *kind = args->key;
    char where[300];
    memset(o, 0, sizeof *o);
    for (int k = KILN_AUG_RANDOM_RESIZED_CROP; k <= KILN_AUG_CUTMIX; k++)
        if (!strcmp(kind, kiln_aug_kind_name((kiln_aug_kind)k))) o->kind = (kiln_aug_kind)k;
    o->p = num(args, "p", 1);
    switch (o->kind) {
    case KILN_AUG_RANDOM_RESIZED_CROP:
        pair(args, "scale", 0.08f, 1.0f, o->scale);
        pair(args, "ratio", 0.75f, 4.0f / 3.0f, o->ratio);
        o->interp = !strcmp(kiln_cfg_str(args, "interpolation", "bilinear"), "area")
                        ? KILN_INTERP_AREA
                        : KILN_INTERP_BILINEAR;
        break;
    case KILN_AUG_RANDOM_CROP:
        o->padding = (int)kiln_cfg_int(args, "padding", 4);
        o->reflect = !strcmp(kiln_cfg_str(args, "padding_mode", "constant"), "reflect");
        o->fill = num(args, "fill", 0);
        break;
    case KILN_AUG_HORIZONTAL_FLIP:
    case KILN_AUG_VERTICAL_FLIP:
        o->p = num(args, "p", 0.5);
        break;
    case KILN_AUG_ROTATION:
        o->degrees = num(args, "degrees", 0);
        o->fill = num(args, "fill", 0);
        break;
    case KILN_AUG_COLOR_JITTER:
        o->brightness = num(args, "brightness", 0), o->contrast = num(args, "contrast", 0);
        o->saturation = num(args, "saturation", 0), o->hue = num(args, "hue", 0);
        break;
    case KILN_AUG_GAUSSIAN_NOISE:
        o->std = num(args, "std", 0.1), o->mean = num(args, "mean", 0);
        o->clip = kiln_cfg_bool(args, "clip", 1);
        break;
    case KILN_AUG_RANDOM_ERASING: {
        o->p = num(args, "p", 0.5);
        pair(args, "scale", 0.02f, 0.33f, o->scale);
        pair(args, "ratio", 0.3f, 3.3f, o->ratio);
        const kiln_cfg *v = kiln_cfg_child(args, "value");
        double d;
        if (v && !strcmp(v->text, "random")) {
            o->random_value = 1;
        } else if (v && (kiln_cfg_parse_num(v, &d) || !(d >= 0 && d <= 1))) {
            return kiln_error(KILN_ERR_INVALID,
                              "%s: data.augment: random_erasing.value: expected a number in "
                              "[0, 1] (a fraction of the value range) or 'random', got '%.80s'",
                              kiln_cfg_where(v, where, sizeof where), v->text);
        } else if (v) {
            o->value = (float)d;
        }
        break;
    }
    case KILN_AUG_MIXUP:
    case KILN_AUG_CUTMIX:
        o->alpha = num(args, "alpha", 1.0);
        break;
    default:
        return kiln_error(KILN_ERR_INVALID, "%s: data.augment: unknown augmentation '%s'",
                          kiln_cfg_where(args, where, sizeof where), kind);
    }
    return KILN_OK;
}

kiln_status kiln_inputs_augment(const kiln_cfg *cfg, const kiln_model *m, kiln_inputs *in) {
    /* a stage switch makes the training loader's config again: this process's part of every
     * batch (data parallel: kiln_loader_config.shard_*) stays what it was */
    int rank = in->train_loader.shard_rank, count = in->train_loader.shard_count;
    int drop_last = in->train_loader.drop_last;
    in->train_loader = in->loader;
    if (count > 1)
        in->train_loader.shard_rank = rank, in->train_loader.shard_count = count,
        in->train_loader.drop_last = drop_last;
    memset(&in->augment, 0, sizeof in->augment);
    const kiln_cfg *list = kiln_cfg_at(cfg, "data.augment");
    if (!list || list->type != KILN_CFG_SEQ || list->n_items == 0) return KILN_OK;
    char where[300];
    if (list->n_items > KILN_AUG_MAX)
        return kiln_error(KILN_ERR_INVALID, "%s: data.augment: %d augmentations (at most %d)",
                          kiln_cfg_where(list, where, sizeof where), list->n_items, KILN_AUG_MAX);
    kiln_augment *a = &in->augment;
    for (int i = 0; i < list->n_items; i++) {
        const kiln_cfg *item = list->items[i];
        kiln_status st = parse_op(item, &a->op[i]);
        if (st) return st;
        a->n = i + 1;
        if ((st = kiln_augment_check(a))) { /* the first prefix that fails names the op */
            kiln_error_prefix("%s", kiln_cfg_where(item, where, sizeof where));
            return st;
        }
    }
    kiln_shape xs = kiln_dataset_x_shape(in->train);
    char sb[96];
    if (xs.ndim != 3)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.augment: the training samples must be images [C, H, W] to "
                          "augment, but they are %s",
                          kiln_cfg_where(list, where, sizeof where),
                          kiln_shape_str(&xs, sb, sizeof sb));
    kiln_status st = kiln_augment_check_shape(a, (int)xs.dims[0], (int)xs.dims[1], (int)xs.dims[2]);
    if (st) {
        kiln_error_prefix("%s", kiln_cfg_where(list, where, sizeof where));
        return st;
    }
    if (kiln_augment_mixes(a) && !m->soft_target)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.augment: mixup and cutmix mix the labels: they need a "
                          "classifier trained with softmax_cross_entropy",
                          kiln_cfg_where(list, where, sizeof where));
    in->train_loader.augment = a;
    in->train_loader.soft_labels = m->soft_target ? (int)m->n_outputs : 0;
    return KILN_OK;
}

kiln_status kiln_inputs_set_augment(const kiln_cfg *cfg, const kiln_model *m, kiln_inputs *in) {
    return kiln_inputs_augment(cfg, m, in);
}

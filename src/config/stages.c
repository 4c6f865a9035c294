/* stages.c — stages: (DESIGN.md §4, docs/models.md "Stages"): the effective config of each
 * training stage.
 *
 * Stage k's config is the base config (the resolved root without stages:) with the partial
 * configs stages[0], ..., stages[k] merged into it in turn, then resolved with the ordinary
 * schema. Merge rules: maps merge key by key; lists and scalars are replaced; a null value
 * removes the key (its default returns); optimizer, schedule and loss, which name one kind,
 * merge their parameters when the stage names the same kind and are replaced otherwise. The
 * stage-level keys freeze and optimizer_state are short for train.freeze and
 * train.optimizer_state; optimizer_state is the only key not inherited (each switch says
 * reset unless its own stage says keep).
 *
 * Invariants: a stage may only say what can change between stages of one run (one graph, one
 * data source): optimizer, schedule, loss, metrics, train (but not ema_decay, threads,
 * precision), data.augment, freeze, optimizer_state. Every node merged in is a clone of the
 * stage's own, so it keeps its file:line:column, and each stage is checked on its own first, so
 * a mistake is reported with the stage's key path ("stages[1].optimizer.adam.learning_rate").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/config.h"

static const char *const CHANGEABLE[] = {"optimizer", "schedule", "loss", "metrics", "train",
                                         "data", "freeze", "optimizer_state", NULL};
static const char *const TRAIN_FIXED[] = {"ema_decay", "threads", "precision", NULL};

static int in_list(const char *const *l, const char *k) {
    for (int i = 0; l[i]; i++)
        if (!strcmp(l[i], k)) return 1;
    return 0;
}

static kiln_status fixed(const kiln_cfg *at, int k, const char *key, const char *why) {
    char where[300];
    return kiln_error(KILN_ERR_INVALID, "%s: stages[%d].%s: cannot change between stages (%s)",
                      kiln_cfg_where(at, where, sizeof where), k, key, why);
}

static int is_null(const kiln_cfg *c) {
    return c->type == KILN_CFG_SCALAR && !c->quoted && !c->text[0];
}

static void remove_child(kiln_cfg *map, const char *key) {
    for (int i = 0; i < map->n_items; i++)
        if (!strcmp(map->items[i]->key, key)) {
            kiln_cfg_free(map->items[i]);
            memmove(map->items + i, map->items + i + 1,
                    (size_t)(map->n_items - i - 1) * sizeof *map->items);
            map->n_items--;
            return;
        }
}

/* Puts a clone of v under key in map (replacing what was there). */
static kiln_status put(kiln_cfg *map, const char *key, const kiln_cfg *v) {
    kiln_cfg *c = kiln_cfg_clone(v);
    char *k = c ? strdup(key) : NULL;
    if (!c || !k) {
        kiln_cfg_free(c), free(k);
        return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
    }
    free(c->key);
    c->key = k;
    for (int i = 0; i < map->n_items; i++)
        if (!strcmp(map->items[i]->key, key)) {
            kiln_cfg_free(map->items[i]);
            map->items[i] = c;
            return KILN_OK;
        }
    kiln_cfg **ni = realloc(map->items, (size_t)(map->n_items + 1) * sizeof *ni);
    if (!ni) {
        kiln_cfg_free(c);
        return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
    }
    map->items = ni;
    map->items[map->n_items++] = c;
    return KILN_OK;
}

/* Merges src (a map) into dst (a map); oneof: dst and src are one-kind maps (optimizer, ...). */
static kiln_status merge(kiln_cfg *dst, const kiln_cfg *src, int oneof) {
    if (oneof && (dst->n_items != 1 || src->n_items != 1 ||
                  strcmp(dst->items[0]->key, src->items[0]->key) != 0)) {
        while (dst->n_items) remove_child(dst, dst->items[0]->key); /* another kind: replace */
        oneof = 0;
    }
    for (int i = 0; i < src->n_items; i++) {
        const kiln_cfg *s = src->items[i];
        kiln_cfg *d = kiln_cfg_child(dst, s->key);
        if (is_null(s)) {
            remove_child(dst, s->key);
            continue;
        }
        if (d && d->type == KILN_CFG_MAP && s->type == KILN_CFG_MAP) {
            kiln_status st = merge(d, s, 0);
            if (st) return st;
            continue;
        }
        kiln_status st = put(dst, s->key, s);
        if (st) return st;
    }
    (void)oneof;
    return KILN_OK;
}

/* Checks stage k on its own (a normalized clone comes back in *out). */
static kiln_status check_stage(const kiln_cfg *item, int k, kiln_cfg **out) {
    char where[300], path[48];
    *out = NULL;
    if (item->type != KILN_CFG_MAP)
        return kiln_error(KILN_ERR_INVALID, "%s: stages[%d]: expected a map of the keys this stage "
                          "changes (optimizer, schedule, train, freeze, ...)",
                          kiln_cfg_where(item, where, sizeof where), k);
    for (int i = 0; i < item->n_items; i++) {
        const kiln_cfg *c = item->items[i];
        if (!in_list(CHANGEABLE, c->key))
            return fixed(c, k, c->key,
                         "a stage may change optimizer, schedule, loss, metrics, "
                         "train, data.augment, freeze and optimizer_state; the model, "
                         "the data and the seed are fixed for the run");
        if (!strcmp(c->key, "data") && c->type == KILN_CFG_MAP)
            for (int j = 0; j < c->n_items; j++)
                if (strcmp(c->items[j]->key, "augment") != 0) {
                    char key[128];
                    snprintf(key, sizeof key, "data.%s", c->items[j]->key);
                    return fixed(c->items[j], k, key, "of data:, only data.augment may change");
                }
        if (!strcmp(c->key, "train") && c->type == KILN_CFG_MAP)
            for (int j = 0; j < c->n_items; j++)
                if (in_list(TRAIN_FIXED, c->items[j]->key)) {
                    char key[128];
                    snprintf(key, sizeof key, "train.%s", c->items[j]->key);
                    return fixed(c->items[j], k, key, "it is fixed for the whole run");
                }
    }
    kiln_cfg *s = kiln_cfg_clone(item);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
    /* freeze and optimizer_state: short for train.freeze / train.optimizer_state */
    for (int pass = 0; pass < 2; pass++) {
        const char *key = pass ? "optimizer_state" : "freeze";
        kiln_cfg *v = kiln_cfg_child(s, key);
        if (!v) continue;
        if (kiln_cfg_at(s, pass ? "train.optimizer_state" : "train.freeze")) {
            kiln_error(KILN_ERR_INVALID, "%s: stages[%d].%s: given twice (also as train.%s)",
                       kiln_cfg_where(v, where, sizeof where), k, key, key);
            kiln_cfg_free(s);
            return KILN_ERR_INVALID;
        }
        kiln_cfg *train = kiln_cfg_child(s, "train");
        kiln_status st = KILN_OK;
        if (!train) {
            kiln_cfg empty = {.type = KILN_CFG_MAP, .file = v->file, .line = v->line,
                              .column = v->column};
            st = put(s, "train", &empty);
            train = kiln_cfg_child(s, "train");
        }
        if (!st) st = put(train, key, v);
        if (st) {
            kiln_cfg_free(s);
            return st;
        }
        remove_child(s, key);
    }
    snprintf(path, sizeof path, "stages[%d]", k);
    kiln_status st = kiln_config_check_partial(s, path);
    if (st) {
        kiln_cfg_free(s);
        return st;
    }
    *out = s;
    return KILN_OK;
}

int kiln_config_stage_count(const kiln_cfg *root) {
    const kiln_cfg *s = kiln_cfg_child(root, "stages");
    return s && s->type == KILN_CFG_SEQ ? s->n_items : 0;
}

kiln_status kiln_config_stage(const kiln_cfg *root, int k, kiln_cfg **out) {
    char where[300];
    *out = NULL;
    const kiln_cfg *stages = kiln_cfg_child(root, "stages");
    if (!stages || stages->type != KILN_CFG_SEQ || stages->n_items == 0)
        return kiln_error(KILN_ERR_INVALID, "%s: stages: expected a list of stages (maps)",
                          stages ? kiln_cfg_where(stages, where, sizeof where) : "config");
    if (k < 0 || k >= stages->n_items)
        return kiln_error(KILN_ERR_INVALID, "stages: no stage %d (there are %d)", k + 1,
                          stages->n_items);
    kiln_cfg *eff = kiln_cfg_clone(root);
    if (!eff) return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
    remove_child(eff, "stages");
    kiln_status st = KILN_OK;
    for (int j = 0; j <= k && !st; j++) {
        kiln_cfg *s = NULL;
        if ((st = check_stage(stages->items[j], j, &s))) break;
        kiln_cfg *train = kiln_cfg_child(eff, "train");
        if (train) remove_child(train, "optimizer_state"); /* not inherited */
        for (int i = 0; i < s->n_items && !st; i++) {
            const kiln_cfg *c = s->items[i];
            kiln_cfg *d = kiln_cfg_child(eff, c->key);
            int oneof = !strcmp(c->key, "optimizer") || !strcmp(c->key, "schedule") ||
                        !strcmp(c->key, "loss");
            if (is_null(c)) remove_child(eff, c->key);
            else if (d && d->type == KILN_CFG_MAP && c->type == KILN_CFG_MAP)
                st = merge(d, c, oneof);
            else st = put(eff, c->key, c);
        }
        kiln_cfg_free(s);
        if (!st && (st = kiln_config_resolve(eff))) kiln_error_prefix("stages[%d]", j);
    }
    if (st) {
        kiln_cfg_free(eff);
        return st;
    }
    *out = eff;
    return KILN_OK;
}

kiln_status kiln_config_stages_check(const kiln_cfg *root) {
    const kiln_cfg *stages = kiln_cfg_child(root, "stages");
    char where[300];
    if (!stages) return KILN_OK;
    if (stages->type != KILN_CFG_SEQ || stages->n_items == 0)
        return kiln_error(KILN_ERR_INVALID, "%s: stages: expected a list of stages, each a map of "
                          "what it changes", kiln_cfg_where(stages, where, sizeof where));
    kiln_cfg *prev = NULL, *eff = NULL;
    kiln_status st = KILN_OK;
    for (int k = 0; k < stages->n_items && !st; k++) {
        if ((st = kiln_config_stage(root, k, &eff))) break;
        /* optimizer_state: keep carries slots over: the same kind with the same slots */
        const kiln_cfg *keep = kiln_cfg_at(eff, "train.optimizer_state");
        if (k > 0 && keep && !strcmp(keep->text, "keep")) {
            const kiln_cfg *a = kiln_cfg_at(prev, "optimizer")->items[0];
            const kiln_cfg *b = kiln_cfg_at(eff, "optimizer")->items[0];
            int ma = kiln_cfg_num(a, "momentum", 0) > 0, mb = kiln_cfg_num(b, "momentum", 0) > 0;
            if (strcmp(a->key, b->key) != 0 || ma != mb)
                st = kiln_error(KILN_ERR_INVALID, "%s: stages[%d].optimizer_state: keep needs the "
                                "optimizer state of the previous stage, but it was %s%s and this "
                                "stage uses %s%s", kiln_cfg_where(keep, where, sizeof where), k,
                                a->key, ma ? " with momentum" : "", b->key,
                                mb ? " with momentum" : "");
        }
        kiln_cfg_free(prev);
        prev = eff, eff = NULL;
    }
    kiln_cfg_free(prev);
    return st;
}

/* kiln/config.h — experiment configs: YAML into a tree with positions, overrides, a schema with
 * defaults, and the resolved config written back as YAML.
 *
 * A kiln_cfg is a node: a scalar (text), a map (ordered keys) or a sequence. Every node read from
 * a file remembers file:line:column, so an error reads
 *   cnn.yaml:14:7: model.layers[3].conv2d: unknown key 'filter' (did you mean 'filters'?)
 * Key paths use dots and [i] for sequence items: "model.layers[3].conv2d.filters".
 *
 * Flow: kiln_config_load (parse) -> kiln_config_set for each --set (override, typed as YAML
 * scalars: "train.epochs=3", "optimizer={sgd: {learning_rate: 0.1}}") -> kiln_config_resolve
 * (validate against the schema, fill defaults) -> kiln_cfg_get_* (read) and kiln_config_write
 * (the resolved config.yaml of a run).
 */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "kiln/status.h"

typedef enum { KILN_CFG_SCALAR = 0, KILN_CFG_MAP, KILN_CFG_SEQ } kiln_cfg_type;

typedef struct kiln_cfg kiln_cfg;
struct kiln_cfg {
    kiln_cfg_type type;
    char *key;     /* the key in the parent map (NULL in sequences and at the root) */
    char *text;    /* scalars: the text ("" for null) */
    int quoted;    /* scalars: written in quotes (always a string) */
    kiln_cfg **items; /* maps and sequences: children in order */
    int n_items;
    const char *file; /* where it came from ("--set" for overrides, "default" for defaults) */
    int line, column; /* 1-based; of the key for map entries */
};

/* Parses a YAML file (one document), opening it once (a named pipe or <(...) works). Syntax
 * errors give file:line:column and exit code 2 at the CLI (KILN_ERR_FORMAT); a missing file
 * gives KILN_ERR_IO. */
kiln_status kiln_config_load(const char *path, kiln_cfg **out);
/* Parses YAML text (name is used in messages). */
kiln_status kiln_config_parse(const char *text, const char *name, kiln_cfg **out);
/* Applies "key.path=value"; value is YAML (a scalar, or flow {..} / [..]). Creates missing map
 * keys; a [i] index must exist. "key.path=null" removes the key (its default, if any, returns):
 * --set train.early_stopping=null turns early stopping off. */
kiln_status kiln_config_set(kiln_cfg *root, const char *assignment);
/* Validates against kiln's schema and fills defaults (see docs/config.md). */
kiln_status kiln_config_resolve(kiln_cfg *root);
/* Checks one model.layers item against the layer schema and fills its defaults, as resolve does
 * (blocks are expanded after resolve, then each expanded layer goes through this). */
kiln_status kiln_config_check_layer(kiln_cfg *item, const char *path);
/* Writes the tree as block YAML. */
kiln_status kiln_config_write(const kiln_cfg *root, FILE *f);
/* The same into the file at path, atomically (a run's or a federation's config.yaml: a reader
 * sees the old file or the whole new one, never a part). */
kiln_status kiln_config_save(const kiln_cfg *root, const char *path);
kiln_cfg *kiln_cfg_clone(const kiln_cfg *c);
void kiln_cfg_free(kiln_cfg *c);

/* Lookup by path ("train.epochs", "model.layers[2]"); NULL when absent. */
kiln_cfg *kiln_cfg_at(const kiln_cfg *root, const char *path);
kiln_cfg *kiln_cfg_child(const kiln_cfg *map, const char *key);
/* Typed reads of a scalar; def when absent. (Types were checked by resolve.) */
const char *kiln_cfg_str(const kiln_cfg *root, const char *path, const char *def);
int64_t kiln_cfg_int(const kiln_cfg *root, const char *path, int64_t def);
double kiln_cfg_num(const kiln_cfg *root, const char *path, double def);
int kiln_cfg_bool(const kiln_cfg *root, const char *path, int def);
/* Scalar parsing as YAML 1.2 core schema: ints, floats (.inf, .nan too), true/false. */
int kiln_cfg_parse_int(const kiln_cfg *c, int64_t *out);
int kiln_cfg_parse_num(const kiln_cfg *c, double *out);
int kiln_cfg_parse_bool(const kiln_cfg *c, int *out);
/* "file:line:column" of a node (or "file" when it has no position) into buf. */
const char *kiln_cfg_where(const kiln_cfg *c, char *buf, size_t cap);
/* Levenshtein distance of a and b, for "did you mean" (99 when either is over 63 chars). */
int kiln_cfg_edit_distance(const char *a, const char *b);
/* A stable 64-bit hash of the tree (FNV-1a over a canonical rendering); 16 hex digits. */
void kiln_cfg_hash(const kiln_cfg *root, char out[17]);

/* ---- stages (src/config/stages.c; docs/models.md "Stages") ----
 * stages: is a list of partial configs applied in turn: stage k's effective config is the base
 * config (without stages:) with stages[0..k] merged into it (maps key by key; lists and scalars
 * replaced; a null value removes a key; optimizer/schedule/loss merge when they name the same
 * kind, else are replaced). A stage may say: optimizer, schedule, loss, metrics, train (not
 * ema_decay, threads, precision), data.augment, and freeze / optimizer_state (short for
 * train.freeze / train.optimizer_state; optimizer_state is not inherited). Anything else
 * (model, data source and files, seed, log, ...) is fixed for the run: an error. */
/* Stages in a resolved config (0 when it has none). */
int kiln_config_stage_count(const kiln_cfg *root);
/* Stage k's (0-based) effective config, resolved; the caller frees it. Errors name
 * file:line:column and the key path, "stages[1].optimizer.adam.learning_rate". */
kiln_status kiln_config_stage(const kiln_cfg *root, int k, kiln_cfg **out);
/* Builds every stage's effective config once (kiln_config_resolve calls it). */
kiln_status kiln_config_stages_check(const kiln_cfg *root);
/* Checks c (a stage's map) against the root schema without defaults or required keys; path
 * prefixes the key paths of messages ("stages[1]"). Rewrites bare names into maps as resolve. */
kiln_status kiln_config_check_partial(kiln_cfg *c, const char *path);

#endif

/* board_params.c — a run's config.yaml as flat params, the form the runs table, the filter and
 * the hyperparameter comparison work with (MLflow's params, TensorBoard's hparams).
 *
 * The resolved config is parsed with kiln's own YAML reader and walked in file order:
 *   optimizer: {adam: {learning_rate: 0.001}}   ->  optimizer.adam.learning_rate = 0.001
 *   model: {input: [1, 28, 28]}                 ->  model.input = [1, 28, 28]
 *   model: {layers: [flatten, {dense: {units: 64}}]}
 *                                               ->  model.layers[0].flatten = {}
 *                                                   model.layers[1].dense.units = 64
 * A sequence of scalars is one value (written as YAML flow), any other sequence gives [i] keys; an
 * empty map is the value {} so that a layer without options still shows. Values are the YAML text
 * (null for an empty scalar). The parser is given the fixed name "config.yaml" (it keeps every
 * name it sees for the life of the process) and errors are prefixed with the real path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/config.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "board/board_internal.h"

#define CONFIG_MAX   (4u << 20) /* bytes of config.yaml read; a resolved config is a few KiB */
#define PARAMS_MAX   4096       /* params kept per run */
#define KEY_MAX      512        /* bytes of a flattened key */
#define SEQ_TEXT_MAX 1024       /* bytes of a sequence of scalars shown as one value */

typedef struct {
    board_kv *kv;
    int n, cap;
    int oom;
} flat;

static void add(flat *f, const char *key, const char *value) {
    if (f->oom || f->n == PARAMS_MAX) return;
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 64;
        board_kv *kv = realloc(f->kv, (size_t)cap * sizeof *kv);
        if (!kv) {
            f->oom = 1;
            return;
        }
        f->kv = kv, f->cap = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k), free(v);
        f->oom = 1;
        return;
    }
    f->kv[f->n++] = (board_kv){k, v};
}

static const char *scalar_text(const kiln_cfg *c) {
    return c->text && (c->text[0] || c->quoted) ? c->text : "null";
}

static int all_scalars(const kiln_cfg *c) {
    for (int i = 0; i < c->n_items; i++)
        if (c->items[i]->type != KILN_CFG_SCALAR) return 0;
    return 1;
}

/* key holds the path so far (len bytes); children append to it. */
static void walk(flat *f, const kiln_cfg *c, char *key, size_t len) {
    if (c->type == KILN_CFG_SCALAR) {
        add(f, key, scalar_text(c));
        return;
    }
    if (c->n_items == 0) {
        add(f, key, c->type == KILN_CFG_MAP ? "{}" : "[]");
        return;
    }
    if (c->type == KILN_CFG_SEQ && all_scalars(c)) {
        kiln_sbuf t = KILN_SBUF_INIT;
        kiln_sbuf_putc(&t, '[');
        for (int i = 0; i < c->n_items && t.len <= SEQ_TEXT_MAX; i++) {
            if (i) kiln_sbuf_puts(&t, ", ");
            kiln_sbuf_puts(&t, scalar_text(c->items[i]));
        }
        if (!t.failed && t.len > SEQ_TEXT_MAX) t.len = SEQ_TEXT_MAX, kiln_sbuf_puts(&t, "...");
        kiln_sbuf_putc(&t, ']');
        if (t.failed)
            f->oom = 1;
        else
            add(f, key, t.data);
        kiln_sbuf_free(&t);
        return;
    }
    for (int i = 0; i < c->n_items; i++) {
        const kiln_cfg *item = c->items[i];
        int w = c->type == KILN_CFG_MAP
                    ? snprintf(key + len, KEY_MAX - len, "%s%s", len ? "." : "", item->key)
                    : snprintf(key + len, KEY_MAX - len, "[%d]", i);
        if (w < 0 || (size_t)w >= KEY_MAX - len) continue; /* a key too long to show */
        walk(f, item, key, len + (size_t)w);
        key[len] = 0;
    }
}

kiln_status board_params_read(const char *path, board_kv **out, int *n) {
    *out = NULL, *n = 0;
    void *text = NULL;
    size_t len = 0;
    kiln_status s = kiln_file_read_all(path, &text, &len, CONFIG_MAX);
    if (s) return s;
    kiln_cfg *cfg = NULL;
    s = kiln_config_parse(text, "config.yaml", &cfg);
    kiln_free(text);
    if (s) {
        kiln_error_prefix("%s", path);
        return s;
    }
    flat f = {0};
    char key[KEY_MAX] = "";
    walk(&f, cfg, key, 0);
    kiln_cfg_free(cfg);
    if (f.oom) {
        board_params_free(f.kv, f.n);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for its params", path);
    }
    *out = f.kv, *n = f.n;
    return KILN_OK;
}

void board_params_free(board_kv *kv, int n) {
    for (int i = 0; i < n; i++) free(kv[i].key), free(kv[i].value);
    free(kv);
}

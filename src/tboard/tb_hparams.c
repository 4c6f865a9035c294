/* tb_hparams.c — a resolved config as HParams hyperparameters (kiln_tb_hparams_from_config).
 *
 * A depth-first walk over the tree that carries the key path in one buffer: map keys append
 * ".key" (no dot at the root), sequence items "[i]". What becomes a hyperparameter is described
 * in kiln/tboard.h; paths longer than the buffer (512 bytes, far beyond any real config) are
 * cut, which can only make two such keys collide, never overflow.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/tboard.h"

#define PATH_CAP 512

static int add(kiln_tb_hparams *h, const char *name, kiln_tb_hp_type type, double num,
               const char *str, int b) {
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 64;
        kiln_tb_hparam *items = realloc(h->items, (size_t)cap * sizeof *items);
        if (!items) return -1;
        h->items = items, h->cap = cap;
    }
    kiln_tb_hparam *p = &h->items[h->n];
    memset(p, 0, sizeof *p);
    p->type = type, p->number = num, p->boolean = b;
    if (!(p->name = strdup(name)) || (str && !(p->string = strdup(str)))) {
        free(p->name);
        return -1;
    }
    h->n++;
    return 0;
}

static int add_scalar(kiln_tb_hparams *h, const char *path, const kiln_cfg *c) {
    int64_t i;
    double d;
    int b;
    if (!kiln_cfg_parse_bool(c, &b)) return add(h, path, KILN_TB_HP_BOOL, 0, NULL, b);
    if (!kiln_cfg_parse_int(c, &i)) return add(h, path, KILN_TB_HP_NUMBER, (double)i, NULL, 0);
    if (!kiln_cfg_parse_num(c, &d)) return add(h, path, KILN_TB_HP_NUMBER, d, NULL, 0);
    return add(h, path, KILN_TB_HP_STRING, 0, c->text, 0);
}

static int walk(kiln_tb_hparams *h, const kiln_cfg *c, char *path, size_t len) {
    switch (c->type) {
    case KILN_CFG_SCALAR:
        return len ? add_scalar(h, path, c) : 0;
    case KILN_CFG_MAP:
        if (len && c->n_items == 1 && c->items[0]->type == KILN_CFG_MAP &&
            add(h, path, KILN_TB_HP_STRING, 0, c->items[0]->key, 0))
            return -1;
        for (int i = 0; i < c->n_items; i++) {
            const kiln_cfg *k = c->items[i];
            if (!len && !strcmp(k->key, "description")) continue;
            snprintf(path + len, PATH_CAP - len, "%s%s", len ? "." : "", k->key);
            if (walk(h, k, path, strlen(path))) return -1;
            path[len] = 0;
        }
        return 0;
    case KILN_CFG_SEQ: {
        int scalars = 1;
        for (int i = 0; i < c->n_items; i++) scalars &= c->items[i]->type == KILN_CFG_SCALAR;
        if (scalars) { /* one string: "[1, 28, 28]" (cut at 1 KiB) */
            char s[1024];
            size_t n = 1, room = sizeof s - 1; /* the last byte is kept for ']' */
            s[0] = '[';
            for (int i = 0; i < c->n_items && n < room; i++) {
                int k = snprintf(s + n, room - n, "%s%s", i ? ", " : "", c->items[i]->text);
                n = k < 0 || (size_t)k >= room - n ? room - 1 : n + (size_t)k;
            }
            s[n] = ']', s[n + 1] = 0;
            return len ? add(h, path, KILN_TB_HP_STRING, 0, s, 0) : 0;
        }
        for (int i = 0; i < c->n_items; i++) {
            snprintf(path + len, PATH_CAP - len, "[%d]", i);
            if (walk(h, c->items[i], path, strlen(path))) return -1;
            path[len] = 0;
        }
        return 0;
    }
    }
    return 0;
}

kiln_status kiln_tb_hparams_from_config(const kiln_cfg *cfg, kiln_tb_hparams *out) {
    memset(out, 0, sizeof *out);
    char path[PATH_CAP] = "";
    if (cfg && walk(out, cfg, path, 0)) {
        kiln_tb_hparams_free(out);
        return kiln_error(KILN_ERR_NOMEM, "hparams: out of memory");
    }
    return KILN_OK;
}

void kiln_tb_hparams_free(kiln_tb_hparams *h) {
    for (int i = 0; i < h->n; i++) free(h->items[i].name), free(h->items[i].string);
    free(h->items);
    memset(h, 0, sizeof *h);
}

/* ---- the session group ---- */

/* Keys that do not change what a run learns (threads: train.deterministic), or that repeated
 * trials are meant to vary (seed). */
static int outside_group(const char *name) {
    static const char *const EXACT[] = {"seed", "train.threads"};
    static const char *const UNDER[] = {"log", "train.checkpoint", "train.export"};
    for (size_t i = 0; i < sizeof EXACT / sizeof *EXACT; i++)
        if (!strcmp(name, EXACT[i])) return 1;
    for (size_t i = 0; i < sizeof UNDER / sizeof *UNDER; i++) {
        size_t n = strlen(UNDER[i]);
        if (!strncmp(name, UNDER[i], n) && (name[n] == 0 || name[n] == '.')) return 1;
    }
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const kiln_tb_hparam *const *)a)->name, (*(const kiln_tb_hparam *const *)b)->name);
}

static void fnv(uint64_t *h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ c[i]) * 0x100000001b3ull;
}

kiln_status kiln_tb_hparams_group(const kiln_tb_hparams *hp, char out[33]) {
    const kiln_tb_hparam **v = malloc(((size_t)hp->n + 1) * sizeof *v);
    if (!v) return kiln_error(KILN_ERR_NOMEM, "hparams: out of memory");
    int n = 0;
    for (int i = 0; i < hp->n; i++)
        if (!outside_group(hp->items[i].name)) v[n++] = &hp->items[i];
    qsort(v, (size_t)n, sizeof *v, by_name);
    /* two FNV-1a 64 hashes (different offsets) of "name \x1f type value \x1e" lines */
    uint64_t h[2] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    for (int i = 0; i < n; i++) {
        char val[64];
        const char *s = val;
        if (v[i]->type == KILN_TB_HP_NUMBER) snprintf(val, sizeof val, "n%.17g", v[i]->number);
        else if (v[i]->type == KILN_TB_HP_BOOL) snprintf(val, sizeof val, "b%d", v[i]->boolean != 0);
        else s = v[i]->string ? v[i]->string : "";
        for (int k = 0; k < 2; k++) {
            fnv(&h[k], v[i]->name, strlen(v[i]->name) + 1);
            if (v[i]->type == KILN_TB_HP_STRING) fnv(&h[k], "s", 1);
            fnv(&h[k], s, strlen(s) + 1);
        }
    }
    free(v);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h[0], (unsigned long long)h[1]);
    return KILN_OK;
}

/* checkpoint.c — parameters + optimizer slots + EMA in one safetensors file
 * (see kiln/checkpoint.h). Entries point straight into the flat buffers: saving copies nothing
 * but what the file writer streams. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/checkpoint.h"
#include "kiln/safetensors.h"

#define FORMAT_VERSION "1"

typedef struct {
    char name[160];
    float *data; /* where the values live (or go) */
    kiln_shape shape;
} slot_ref;

/* Every tensor a checkpoint of (g, opt, ema) holds, in a stable order. */
static int collect(kiln_graph *g, kiln_optim *opt, kiln_ema *ema, slot_ref **out) {
    int np = kiln_graph_param_count(g), ns = opt ? kiln_optim_slot_count(opt) : 0;
    slot_ref *r = calloc((size_t)np * (size_t)(2 + ns), sizeof *r);
    if (!r) return -1;
    int n = 0;
    float *params = kiln_graph_params(g), *ema_w = ema ? kiln_ema_weights(ema) : NULL;
    for (int i = 0; i < np; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        snprintf(r[n].name, sizeof r[n].name, "%s", pi->name);
        r[n].data = params + pi->offset, r[n++].shape = pi->shape;
        for (int s = 0; s < ns && pi->trainable; s++) {
            snprintf(r[n].name, sizeof r[n].name, "%s.%s", pi->name, kiln_optim_slot_name(opt, s));
            r[n].data = kiln_optim_slot(opt, s) + pi->offset, r[n++].shape = pi->shape;
        }
        if (ema_w) {
            snprintf(r[n].name, sizeof r[n].name, "%s.ema", pi->name);
            r[n].data = ema_w + pi->offset, r[n++].shape = pi->shape;
        }
    }
    *out = r;
    return n;
}

kiln_status kiln_checkpoint_save(const char *path, kiln_graph *g, kiln_optim *opt, kiln_ema *ema,
                                 const char *const *meta_kv, int n_meta) {
    kiln_status st = kiln_graph_init_params(g);
    if (st) return st;
    slot_ref *refs;
    int n = collect(g, opt, ema, &refs);
    if (n < 0) return kiln_error(KILN_ERR_NOMEM, "checkpoint: out of memory");
    kiln_st_entry *e = calloc((size_t)(n ? n : 1), sizeof *e);
    const char **kv = calloc((size_t)(2 * n_meta + 8), sizeof *kv);
    char iters[32], updates[32];
    if (!e || !kv) {
        free(refs), free(e), free(kv);
        return kiln_error(KILN_ERR_NOMEM, "checkpoint: out of memory");
    }
    for (int i = 0; i < n; i++) e[i] = (kiln_st_entry){refs[i].name, KILN_F32, refs[i].shape, refs[i].data};
    int m = 0;
    kv[m++] = "kiln.format", kv[m++] = FORMAT_VERSION;
    if (opt) {
        snprintf(iters, sizeof iters, "%lld", (long long)kiln_optim_iterations(opt));
        kv[m++] = "kiln.optimizer", kv[m++] = kiln_optim_kind_name(kiln_optim_get_config(opt)->kind);
        kv[m++] = "kiln.iterations", kv[m++] = iters;
    }
    if (ema) {
        snprintf(updates, sizeof updates, "%lld", (long long)kiln_ema_updates(ema));
        kv[m++] = "kiln.ema_updates", kv[m++] = updates;
    }
    for (int i = 0; i < 2 * n_meta; i++) kv[m++] = meta_kv[i];
    st = kiln_safetensors_write(path, e, n, kv, m / 2);
    free(refs), free(e), free(kv);
    return st;
}

static kiln_status check_entry(const char *path, const kiln_st_entry *t, const slot_ref *want) {
    char a[128], b[128];
    if (!t) return kiln_error(KILN_ERR_FORMAT, "%s: missing tensor '%s' (the model has it)", path, want->name);
    if (t->dtype != KILN_F32)
        return kiln_error(KILN_ERR_FORMAT, "%s: tensor '%s' is %s, expected F32", path, want->name, kiln_dtype_name(t->dtype));
    if (!kiln_shape_equal(&t->shape, &want->shape))
        return kiln_error(KILN_ERR_FORMAT, "%s: tensor '%s' has shape %s, the model expects %s", path, want->name,
                          kiln_shape_str(&t->shape, a, sizeof a), kiln_shape_str(&want->shape, b, sizeof b));
    return KILN_OK;
}

static kiln_status parse_count(const kiln_st_file *f, const char *path, const char *key, int64_t *out) {
    const char *v = kiln_st_meta(f, key);
    char *end;
    if (!v) return kiln_error(KILN_ERR_FORMAT, "%s: metadata '%s' is missing", path, key);
    long long x = strtoll(v, &end, 10);
    if (*end || x < 0) return kiln_error(KILN_ERR_FORMAT, "%s: metadata '%s' is not a count: '%s'", path, key, v);
    *out = x;
    return KILN_OK;
}

kiln_status kiln_checkpoint_load(const char *path, kiln_graph *g, kiln_optim *opt, kiln_ema *ema) {
    kiln_status st = kiln_graph_init_params(g);
    if (st) return st;
    kiln_st_file *f;
    if ((st = kiln_safetensors_open(path, &f))) return st;
    slot_ref *refs;
    int n = collect(g, opt, ema, &refs);
    if (n < 0) return kiln_st_close(f), kiln_error(KILN_ERR_NOMEM, "checkpoint: out of memory");
    int64_t iters = 0, updates = 0;
    const char *kind = kiln_st_meta(f, "kiln.optimizer");
    if (opt) {
        const char *mine = kiln_optim_kind_name(kiln_optim_get_config(opt)->kind);
        if (!kind || strcmp(kind, mine) != 0)
            st = kiln_error(KILN_ERR_FORMAT, "%s: saved with optimizer '%s', this run uses '%s'", path,
                            kind ? kind : "none", mine);
        if (!st) st = parse_count(f, path, "kiln.iterations", &iters);
    }
    if (!st && ema) st = parse_count(f, path, "kiln.ema_updates", &updates);
    for (int i = 0; i < n && !st; i++) st = check_entry(path, kiln_st_find(f, refs[i].name), &refs[i]);
    /* A name that is neither expected nor "<param>.<state>" of a known parameter (optimizer or
     * EMA state we were not asked to restore) means the file is for a different model. */
    for (int i = 0; i < kiln_st_count(f) && !st; i++) {
        const char *name = kiln_st_get(f, i)->name;
        int known = 0;
        for (int k = 0; k < n && !known; k++) known = strcmp(refs[k].name, name) == 0;
        for (int p = 0; p < kiln_graph_param_count(g) && !known; p++) {
            const char *pn = kiln_graph_param_info(g, p)->name;
            size_t pl = strlen(pn);
            known = strncmp(name, pn, pl) == 0 && name[pl] == '.';
        }
        if (!known) st = kiln_error(KILN_ERR_FORMAT, "%s: unexpected tensor '%s' (the model has no such parameter)", path, name);
    }
    if (!st) {
        for (int i = 0; i < n; i++) {
            const kiln_st_entry *t = kiln_st_find(f, refs[i].name);
            memcpy(refs[i].data, t->data, (size_t)kiln_shape_numel(&refs[i].shape) * sizeof(float));
        }
        if (opt) kiln_optim_set_iterations(opt, iters);
        if (ema) kiln_ema_set_updates(ema, updates);
    }
    free(refs);
    kiln_st_close(f);
    return st;
}

kiln_status kiln_checkpoint_load_weights(const char *path, kiln_graph *g, int use_ema) {
    kiln_status st = kiln_graph_init_params(g);
    if (st) return st;
    kiln_st_file *f;
    if ((st = kiln_safetensors_open(path, &f))) return st;
    int np = kiln_graph_param_count(g);
    char name[160];
    /* check all, then copy all */
    for (int pass = 0; pass < 2 && !st; pass++)
        for (int i = 0; i < np && !st; i++) {
            const kiln_param_info *pi = kiln_graph_param_info(g, i);
            snprintf(name, sizeof name, "%s.ema", pi->name);
            const kiln_st_entry *t = use_ema ? kiln_st_find(f, name) : NULL;
            if (!t) t = kiln_st_find(f, pi->name);
            slot_ref want = {.shape = pi->shape};
            snprintf(want.name, sizeof want.name, "%s", pi->name);
            if (pass == 0) st = check_entry(path, t, &want);
            else memcpy(kiln_graph_params(g) + pi->offset, t->data, pi->numel * sizeof(float));
        }
    kiln_st_close(f);
    return st;
}

kiln_status kiln_checkpoint_read_meta(const char *path, const char *key, char *buf, size_t cap) {
    kiln_st_file *f;
    kiln_status st = kiln_safetensors_open(path, &f);
    if (st) return st;
    const char *v = kiln_st_meta(f, key);
    if (v) snprintf(buf, cap, "%s", v);
    else st = kiln_error(KILN_ERR_NOTFOUND, "%s: no metadata '%s'", path, key);
    kiln_st_close(f);
    return st;
}

/* prune.c — train.prune (see train/prune.h, docs/optimize.md "Pruning").
 *
 * Schedule (TensorFlow Model Optimization's PolynomialDecay, after Zhu & Gupta 2017): with
 * begin = start_epoch * batches and end = end_epoch * batches (steps counted over the whole
 * run), the target at step t in [begin, end] is
 *   polynomial: s(t) = s_f + (s_i - s_f) (1 - (t - begin) / (end - begin))^power  (power 3)
 *   constant:   s(t) = s_f
 * and the masks are recomputed at the update points: t = begin, begin + frequency, ..., and at
 * t = end itself (tfmot skips end unless frequency divides end - begin; kiln always ends there,
 * so the sparsity asked for is reached exactly at end_epoch). After end the masks are held.
 *
 * A mask update ranks each selected kernel's current values by magnitude (kiln_prune_mask:
 * exactly round(s n) zeros). Between updates every step masks the gradients of pruned values
 * before the optimizer (so clipping, momentum and Adam's moments never see them) and zeroes the
 * pruned values of the parameters, of every optimizer slot and of the EMA weights after it:
 * they are exactly 0 everywhere, so pruned values (already 0, the smallest) stay pruned at the
 * next update and the masks only shrink. The masks live in one byte per trainable float (the
 * flat buffer's layout); a checkpoint holds them in prune.safetensors next to its weights, so a
 * resumed run recomputes nothing and continues bit for bit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/prune.h"
#include "kiln/safetensors.h"
#include "train/prune.h"

struct kiln_pruner {
    double final, initial, power;
    int constant;
    int64_t begin, end, frequency;
    int np;
    unsigned char *sel;  /* [np]: pruned parameters */
    unsigned char *mask; /* [trainable floats]: 0 = pruned (only selected ranges are used) */
    size_t n;            /* trainable floats */
};

void kiln_pruner_free(kiln_pruner *p) {
    if (!p) return;
    free(p->sel), free(p->mask), free(p);
}

static kiln_status cfg_error(const kiln_cfg *at, const char *key, const char *msg) {
    char where[300];
    return kiln_error(KILN_ERR_INVALID, "%s: train.prune.%s: %s",
                      at ? kiln_cfg_where(at, where, sizeof where) : "config", key, msg);
}

kiln_status kiln_pruner_new(const kiln_cfg *cfg, kiln_graph *g, int64_t batches,
                            int64_t total_epochs, const kiln_pruner *old, kiln_pruner **out) {
    *out = NULL;
    const kiln_cfg *pc = kiln_cfg_at(cfg, "train.prune");
    if (!pc) return KILN_OK;
    kiln_pruner *p = calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_ERR_NOMEM, "train.prune: out of memory");
    p->final = kiln_cfg_num(pc, "sparsity", 0);
    p->initial = kiln_cfg_num(pc, "initial_sparsity", 0);
    p->power = kiln_cfg_num(pc, "power", 3);
    p->constant = !strcmp(kiln_cfg_str(pc, "schedule", "polynomial"), "constant");
    p->frequency = kiln_cfg_int(pc, "frequency", 100);
    int64_t e0 = kiln_cfg_int(pc, "start_epoch", 0);
    int64_t e1 = kiln_cfg_int(pc, "end_epoch", total_epochs);
    char msg[300];
    kiln_status st = KILN_OK;
    if (e1 < e0) {
        snprintf(msg, sizeof msg, "%lld is before start_epoch %lld", (long long)e1, (long long)e0);
        st = cfg_error(kiln_cfg_child(pc, "end_epoch"), "end_epoch", msg);
    } else if (e1 > total_epochs) {
        snprintf(msg, sizeof msg, "%lld is after the run's last epoch (%lld): the sparsity would "
                 "never be reached", (long long)e1, (long long)total_epochs);
        st = cfg_error(kiln_cfg_child(pc, "end_epoch"), "end_epoch", msg);
    } else if (p->initial > p->final) {
        snprintf(msg, sizeof msg, "%g is above sparsity %g", p->initial, p->final);
        st = cfg_error(kiln_cfg_child(pc, "initial_sparsity"), "initial_sparsity", msg);
    }
    p->begin = e0 * batches, p->end = e1 * batches;
    p->np = kiln_graph_param_count(g);
    p->n = kiln_graph_trainable_size(g);
    if (!st && (!(p->sel = calloc((size_t)p->np + 1, 1)) || !(p->mask = malloc(p->n + 1))))
        st = kiln_error(KILN_ERR_NOMEM, "train.prune: out of memory");
    const kiln_cfg *globs = kiln_cfg_child(pc, "params");
    unsigned char *one = st ? NULL : calloc((size_t)p->np + 1, 1);
    if (!st && !one) st = kiln_error(KILN_ERR_NOMEM, "train.prune: out of memory");
    if (!st && (!globs || !globs->n_items) && kiln_prune_select(g, NULL, 0, p->sel)) {
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        st = cfg_error(pc, "params", msg);
    }
    for (int k = 0; !st && globs && k < globs->n_items; k++) { /* one at a time: its line */
        const char *gl = globs->items[k]->text;
        if (kiln_prune_select(g, &gl, 1, one)) {
            snprintf(msg, sizeof msg, "%s", kiln_last_error());
            char key[32];
            snprintf(key, sizeof key, "params[%d]", k);
            st = cfg_error(globs->items[k], key, strstr(msg, ": ") ? strstr(msg, ": ") + 2 : msg);
        }
        for (int i = 0; !st && i < p->np; i++) p->sel[i] |= one[i];
    }
    free(one);
    if (st) return kiln_pruner_free(p), st;
    memset(p->mask, 1, p->n);
    for (int i = 0; old && old->n == p->n && i < p->np; i++) { /* masks of kernels still pruned */
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        if (p->sel[i] && old->sel[i])
            memcpy(p->mask + pi->offset, old->mask + pi->offset, pi->numel);
    }
    *out = p;
    return KILN_OK;
}

double kiln_pruner_target(const kiln_pruner *p, int64_t step) {
    if (step < p->begin) return p->initial;
    if (p->constant || step >= p->end) return p->final;
    double f = 1.0 - (double)(step - p->begin) / (double)(p->end - p->begin);
    return p->final + (p->initial - p->final) * pow(f, p->power);
}

void kiln_pruner_mask_grads(const kiln_pruner *p, float *grads) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++)
        if (!p->mask[i]) grads[i] = 0.0f;
}

kiln_status kiln_pruner_step(kiln_pruner *p, kiln_graph *g, kiln_optim *opt, float *ema,
                             int64_t step, int *updated) {
    if (updated) *updated = 0;
    if (!p) return KILN_OK;
    float *w = kiln_graph_params(g);
    if (step >= p->begin && step <= p->end &&
        ((step - p->begin) % p->frequency == 0 || step == p->end)) {
        double s = kiln_pruner_target(p, step);
        for (int i = 0; i < p->np; i++) {
            const kiln_param_info *pi = kiln_graph_param_info(g, i);
            kiln_status st;
            if (p->sel[i] && (st = kiln_prune_mask(w + pi->offset, pi->numel, s,
                                                   p->mask + pi->offset)))
                return st;
        }
        if (updated) *updated = 1;
    }
    int slots = opt ? kiln_optim_slot_count(opt) : 0;
    for (int i = 0; i < p->np; i++) {
        if (!p->sel[i]) continue;
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        for (size_t j = pi->offset; j < pi->offset + pi->numel; j++) {
            if (p->mask[j]) continue;
            w[j] = 0.0f;
            if (ema) ema[j] = 0.0f;
            for (int k = 0; k < slots; k++) kiln_optim_slot(opt, k)[j] = 0.0f;
        }
    }
    return KILN_OK;
}

kiln_status kiln_pruner_save(const kiln_pruner *p, const kiln_graph *g, const char *path) {
    kiln_st_entry *e = calloc((size_t)p->np + 1, sizeof *e);
    if (!e) return kiln_error(KILN_ERR_NOMEM, "train.prune: out of memory");
    int n = 0;
    for (int i = 0; i < p->np; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        if (p->sel[i]) e[n++] = (kiln_st_entry){pi->name, KILN_U8, pi->shape, p->mask + pi->offset};
    }
    const char *meta[] = {"kiln.format", "1", "kiln.content", "prune masks (1 kept, 0 pruned)"};
    kiln_status st = kiln_safetensors_write(path, e, n, meta, 2);
    free(e);
    return st;
}

kiln_status kiln_pruner_load(kiln_pruner *p, const kiln_graph *g, const char *path) {
    FILE *probe = fopen(path, "rb");
    if (!probe) return KILN_OK;
    fclose(probe);
    kiln_st_file *f;
    kiln_status st = kiln_safetensors_open(path, &f);
    if (st) return st;
    for (int i = 0; i < p->np && !st; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        const kiln_st_entry *t = p->sel[i] ? kiln_st_find(f, pi->name) : NULL;
        if (!t) continue; /* pruned from a later stage on: no mask yet */
        if (t->dtype != KILN_U8 || !kiln_shape_equal(&t->shape, &pi->shape))
            st = kiln_error(KILN_ERR_FORMAT, "%s: mask '%s' is not U8 of the parameter's shape",
                            path, pi->name);
        else
            memcpy(p->mask + pi->offset, t->data, pi->numel);
    }
    kiln_st_close(f);
    return st;
}

/* freeze.c — train.freeze (docs/models.md "Freezing") and the model summary that shows it.
 *
 * A freeze glob (fnmatch(3) syntax, where '*' also crosses '/' and '.') freezes a parameter when
 * it matches the parameter's name ("dense_1.kernel"), its layer's name ("dense_1") or one of the
 * layer's scopes ("backbone" and "backbone/block1" of "backbone/block1/conv1"); so "backbone",
 * "dense_1", "*.bias" and backbone/ followed by a star all do what they look like. A glob that
 * matches nothing is an error (a typo would otherwise train what was meant to be frozen).
 *
 * Invariants: kiln_model_apply_freeze sets every parameter's frozen flag from scratch (so a
 * stage that freezes less unfreezes the rest) and every batch norm's inference flag: a batch
 * norm runs in inference mode inside training plans exactly when train.freeze_batchnorm is on
 * and every parameter of that layer (gamma, beta, moving statistics) is matched. Plans compiled
 * before a call do not see it: the trainer compiles new ones.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/model.h"

/* 1 when glob matches the parameter name, its layer or one of the layer's scopes. */
static int glob_hits(const char *glob, const char *param) {
    if (fnmatch(glob, param, 0) == 0) return 1;
    char layer[256];
    snprintf(layer, sizeof layer, "%s", param);
    char *dot = strrchr(layer, '.');
    if (dot) *dot = 0;
    if (fnmatch(glob, layer, 0) == 0) return 1;
    for (char *slash = strrchr(layer, '/'); slash; slash = strrchr(layer, '/')) {
        *slash = 0; /* "a/b/c" -> "a/b" -> "a" */
        if (fnmatch(glob, layer, 0) == 0) return 1;
    }
    return 0;
}

kiln_status kiln_model_apply_freeze(kiln_model *m, const kiln_cfg *cfg) {
    kiln_graph *g = m->graph;
    const kiln_cfg *list = kiln_cfg_at(cfg, "train.freeze");
    int np = kiln_graph_param_count(g), nglobs = list ? list->n_items : 0;
    char *hit = calloc((size_t)(np ? np : 1), 1);
    if (!hit) return kiln_error(KILN_ERR_NOMEM, "freeze: out of memory");
    char where[300];
    for (int k = 0; k < nglobs; k++) {
        const kiln_cfg *gk = list->items[k];
        int any = 0;
        for (int i = 0; i < np; i++)
            if (glob_hits(gk->text, kiln_graph_param_info(g, i)->name)) hit[i] = 1, any = 1;
        if (!any) {
            free(hit);
            return kiln_error(KILN_ERR_INVALID,
                              "%s: train.freeze[%d]: '%s' matches no parameter, layer or scope "
                              "(names are like 'dense_1', 'dense_1.kernel', 'backbone/*'; "
                              "kiln train --dry-run lists them)",
                              kiln_cfg_where(gk, where, sizeof where), k, gk->text);
        }
    }
    size_t active = 0;
    for (int i = 0; i < np; i++) {
        kiln_status st = kiln_graph_set_frozen(g, i, hit[i]);
        if (st) {
            free(hit);
            return st;
        }
        const kiln_param_info *p = kiln_graph_param_info(g, i);
        if (p->trainable && !p->frozen) active += p->numel;
    }
    int bn_frozen = kiln_cfg_bool(cfg, "train.freeze_batchnorm", 1);
    for (int i = 0; i < kiln_graph_node_count(g); i++) {
        kiln_node *n = kiln_graph_node(g, i);
        if (strcmp(kiln_node_op(n), "batchnorm") != 0) continue;
        int all = bn_frozen, params = 0;
        for (int j = 0; j < kiln_node_input_count(n); j++) {
            int pi = kiln_node_param_index(kiln_node_input(n, j));
            if (pi < 0) continue;
            params++;
            if (!hit[pi]) all = 0;
        }
        kiln_graph_set_inference(g, n, all && params > 0);
    }
    free(hit);
    if (nglobs && active == 0)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: train.freeze: every trainable parameter is frozen: "
                          "nothing left to train",
                          kiln_cfg_where(list, where, sizeof where));
    return KILN_OK;
}

/* ---- summary ---- */

static void shape_text(kiln_shape s, char *buf, size_t cap) {
    size_t u = (size_t)snprintf(buf, cap, "(None");
    for (int i = 1; i < s.ndim && u < cap; i++)
        u += (size_t)snprintf(buf + u, cap - u, ", %lld", (long long)s.dims[i]);
    if (u < cap) snprintf(buf + u, cap - u, ")");
}

kiln_status kiln_model_summary(kiln_model *m, FILE *f) {
    kiln_graph *g = m->graph;
    int n = kiln_graph_node_count(g);
    char *need = calloc((size_t)(n ? n : 1), 1);
    if (!need) return kiln_error(KILN_ERR_NOMEM, "summary: out of memory");
    for (int i = 0; i < n; i++) /* ids are creation order: mark the output, walk back */
        if (kiln_graph_node(g, i) == m->output) need[i] = 1;
    for (int i = n - 1; i >= 0; i--) {
        if (!need[i]) continue;
        kiln_node *nd = kiln_graph_node(g, i);
        for (int j = 0; j < kiln_node_input_count(nd); j++) {
            kiln_node *in = kiln_node_input(nd, j);
            for (int k = 0; k < i; k++) /* inputs precede their users */
                if (kiln_graph_node(g, k) == in) need[k] = 1;
        }
    }
    const char *rule = "----------------------------------------------------------------------"
                       "--------------------------";
    fprintf(f, "%-36s %-24s %-22s %10s  %s\n", "Layer", "Kind", "Output shape", "Param #",
            "Trainable");
    fprintf(f, "%s\n", rule);
    for (int i = 0; i < n; i++) {
        kiln_node *nd = kiln_graph_node(g, i);
        const char *kind = kiln_node_op(nd);
        if (!need[i] || !strcmp(kind, "param")) continue;
        size_t count = 0;
        int trainable = 0, frozen = 0;
        for (int j = 0; j < kiln_node_input_count(nd); j++) {
            int pi = kiln_node_param_index(kiln_node_input(nd, j));
            if (pi < 0) continue;
            const kiln_param_info *p = kiln_graph_param_info(g, pi);
            count += p->numel;
            if (p->trainable && p->frozen) frozen = 1;
            else if (p->trainable) trainable = 1;
        }
        char sh[96];
        shape_text(kiln_node_shape(nd), sh, sizeof sh);
        const char *state = trainable && frozen ? "partly frozen"
                            : trainable         ? "yes"
                            : frozen            ? "frozen"
                                                : "-";
        fprintf(f, "%-36s %-24s %-22s %10zu  %s%s\n", kiln_node_name(nd), kind, sh, count, state,
                kiln_node_inference(nd) ? " (inference mode)" : "");
    }
    free(need);
    size_t total = 0, tr = 0, fr = 0, non = 0;
    for (int i = 0; i < kiln_graph_param_count(g); i++) {
        const kiln_param_info *p = kiln_graph_param_info(g, i);
        total += p->numel;
        if (!p->trainable) non += p->numel;
        else if (p->frozen) fr += p->numel;
        else tr += p->numel;
    }
    fprintf(f, "%s\n", rule);
    fprintf(f, "Total params: %zu\nTrainable params: %zu\nFrozen params: %zu\n"
               "Non-trainable params: %zu\n", total, tr, fr, non);
    return ferror(f) ? kiln_error(KILN_ERR_IO, "summary: write failed") : KILN_OK;
}

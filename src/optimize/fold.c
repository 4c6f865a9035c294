/* fold.c — folding and fusing for inference (kiln optimize --fold), on the config so that the
 * folded version's graph is rebuilt from model.json like any other:
 *
 *   1. batch norm after a conv (conv1d/2d/3d, depthwise, transposed) or dense: folded into it
 *      when the BN reads the producer directly, nothing else reads the producer, and the producer
 *      has no activation (a dense only with a 2-D output, where BN's channel is its unit axis).
 *      The BN layer goes; the producer gets use_bias: true and, per output channel c,
 *      W'[c] = W[c] * a[c], b'[c] = (b[c] - mean[c]) * a[c] + beta[c], a = gamma / sqrt(var + eps);
 *   2. dropout: removed (it is the identity in inference);
 *   3. an activation layer (activation, relu, leaky_relu with alpha 0.01, sigmoid, tanh, gelu,
 *      relu6: those oneDNN fuses as a post-op) right after a conv or dense with no activation
 *      and no other reader: the layer goes and the producer gets `activation:`.
 * A removed layer's readers read what it read (its producer). The new flat layer list names
 * every layer (its node's name in the original graph) and gives every one an explicit from:,
 * so removing layers changes no other layer's input and no parameter's name: parameters keep
 * their names ("conv2d_1.kernel"; a folded producer that had no bias gets "<name>.bias").
 * model.blocks and backbones are written out expanded. The output is still the last layer: a
 * removal that would change which layer is last is not made.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg_json.h"
#include "kiln/nn.h"
#include "model/blocks.h"
#include "optimize/optimize_internal.h"

static int is_conv(const char *k) {
    return !strcmp(k, "conv1d") || !strcmp(k, "conv2d") || !strcmp(k, "conv3d") ||
           !strcmp(k, "depthwise_conv2d") || !strcmp(k, "conv2d_transpose");
}
static int is_producer(const char *k) { return is_conv(k) || !strcmp(k, "dense"); }

/* The activation an activation layer applies, when oneDNN can fuse it into a conv or dense;
 * NULL otherwise. */
static const char *fusable_act(const char *kind, const kiln_cfg *args) {
    static const char *const plain[] = {"relu", "sigmoid", "tanh", "gelu", "relu6"};
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
        if (!strcmp(kind, plain[i])) return plain[i];
    if (!strcmp(kind, "leaky_relu") && fabs(kiln_cfg_num(args, "alpha", 0.01) - 0.01) < 1e-12) return "leaky_relu";
    if (!strcmp(kind, "activation")) {
        const char *a = kiln_cfg_str(args, "activation", "none");
        for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
            if (!strcmp(a, plain[i])) return plain[i];
        if (!strcmp(a, "leaky_relu")) return a;
    }
    return NULL;
}

typedef struct {
    const char *kind, *name; /* name: the layer's node's */
    const kiln_cfg *args;
    int *in, n_in;           /* input layers: -1 the model input */
    int removed, repl;       /* removed: its readers read layer repl instead (-1: input) */
    int readers;
    const char *act;         /* fused activation */
    int bias;                /* use_bias forced on */
} lay;

static int resolve(int i) { return i; }

kiln_status kiln_fold_plan(const kiln_cfg *cfg, const kiln_model *m, kiln_fold_result *out) {
    memset(out, 0, sizeof *out);
    kiln_flat_layers flat = {0};
    kiln_status st = kiln_blocks_expand(cfg, &flat);
    if (st) return st;
    int L = flat.layers->n_items;
    if (L != m->n_layers) {
        kiln_blocks_free(&flat);
        return kiln_error(KILN_ERR_INVALID, "fold: %d layers in the config, %d in the model", L, m->n_layers);
    }
    lay *ls = calloc((size_t)L, sizeof *ls);
    if (!ls) return kiln_blocks_free(&flat), KILN_ERR_NOMEM;
    for (int i = 0; i < L && !st; i++) {
        lay *l = &ls[i];
        l->args = flat.layers->items[i]->items[0];
        l->kind = l->args->key;
        l->name = kiln_node_name(m->layer_outputs[i]);
        l->repl = i;
        const kiln_cfg *from = kiln_cfg_child(l->args, "from");
        int n = from && from->type == KILN_CFG_SEQ ? from->n_items : from && from->text && from->text[0] ? 1 : 0;
        if (!(l->in = calloc((size_t)(n ? n : 1), sizeof *l->in))) st = KILN_ERR_NOMEM;
        for (int k = 0; k < n && !st; k++) {
            const char *want = (from->type == KILN_CFG_SEQ ? from->items[k] : from)->text;
            int found = -2;
            if (!strcmp(want, "input")) found = -1;
            else if (want[0] == '@') found = atoi(want + 1);
            for (int b = 0; b < i && found == -2; b++) {
                const char *un = kiln_cfg_str(ls[b].args, "name", NULL);
                if (!strcmp(ls[b].name, want) || (un && !strcmp(un, want))) found = b;
            }
            if (found == -2 || found >= i) st = kiln_error(KILN_ERR_INVALID, "fold: layer %s: cannot resolve from: %s", l->name, want);
            l->in[k] = found;
        }
        l->n_in = n ? n : 1;
        if (!n) l->in[0] = i - 1;
    }
    for (int i = 0; i < L && !st; i++)
        for (int k = 0; k < ls[i].n_in; k++)
            if (ls[i].in[k] >= 0) ls[ls[i].in[k]].readers++;
    if (L) ls[L - 1].readers++; /* the model output */
    (void)resolve;

    cJSON *bn_rec = cJSON_CreateArray(), *drop_rec = cJSON_CreateArray(), *act_rec = cJSON_CreateArray();
    out->pairs = calloc((size_t)L + 1, sizeof *out->pairs);
    if (!bn_rec || !drop_rec || !act_rec || !out->pairs) st = KILN_ERR_NOMEM;
    /* the layer i's (single) input, through removals */
#define SRC(i) (ls[i].in[0] < 0 ? -1 : ls[ls[i].in[0]].repl)
    for (int i = 0; i < L && !st; i++) {
        lay *l = &ls[i];
        for (int k = 0; k < l->n_in; k++) /* inputs through earlier removals */
            if (l->in[k] >= 0) l->in[k] = ls[l->in[k]].repl;
        int j = l->n_in == 1 ? l->in[0] : -1;
        int last = i == L - 1, prev_kept = -1;
        for (int b = i - 1; b >= 0 && prev_kept < 0; b--)
            if (!ls[b].removed) prev_kept = b;
        if (last && j != prev_kept) continue; /* the output must stay the last layer */
        if (!strcmp(l->kind, "dropout") && l->n_in == 1) {
            l->removed = 1, l->repl = j;
            if (j >= 0) ls[j].readers += l->readers - 1;
            out->dropout_removed++;
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "dropout", l->name);
            cJSON_AddItemToArray(drop_rec, r);
            continue;
        }
        if (j < 0 || ls[j].removed || !is_producer(ls[j].kind) || ls[j].readers != 1 || ls[j].act) continue;
        if (strcmp(kiln_cfg_str(ls[j].args, "activation", "none"), "none")) continue;
        if (!strcmp(l->kind, "batchnorm")) {
            kiln_shape s = kiln_node_shape(m->layer_outputs[j]);
            if (!strcmp(ls[j].kind, "dense") && s.ndim != 2) continue;
            out->pairs[out->n_pairs++] = (kiln_fold_pair){strdup(ls[j].name), strdup(l->name),
                                                          (float)kiln_cfg_num(l->args, "epsilon", 1e-3)};
            ls[j].bias = 1;
            l->removed = 1, l->repl = j;
            ls[j].readers = l->readers;
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "batchnorm", l->name);
            cJSON_AddStringToObject(r, "into", ls[j].name);
            cJSON_AddItemToArray(bn_rec, r);
            continue;
        }
        const char *act = fusable_act(l->kind, l->args);
        if (act) {
            ls[j].act = act;
            l->removed = 1, l->repl = j;
            ls[j].readers = l->readers;
            out->act_fused++;
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "activation", l->name);
            cJSON_AddStringToObject(r, "function", act);
            cJSON_AddStringToObject(r, "into", ls[j].name);
            cJSON_AddItemToArray(act_rec, r);
        }
    }
#undef SRC
    /* the new list */
    cJSON *arr = st ? NULL : cJSON_CreateArray();
    if (!st && !arr) st = KILN_ERR_NOMEM;
    for (int i = 0; i < L && !st; i++) {
        lay *l = &ls[i];
        if (l->removed) continue;
        cJSON *args = kiln_cfg_to_json(l->args), *item = cJSON_CreateObject(), *from = cJSON_CreateArray();
        if (!args || !item || !from) {
            cJSON_Delete(args), cJSON_Delete(item), cJSON_Delete(from);
            st = KILN_ERR_NOMEM;
            break;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(args, "name");
        cJSON_DeleteItemFromObjectCaseSensitive(args, "from");
        cJSON_AddStringToObject(args, "name", l->name);
        for (int k = 0; k < l->n_in; k++)
            cJSON_AddItemToArray(from, cJSON_CreateString(l->in[k] < 0 ? "input" : ls[l->in[k]].name));
        cJSON_AddItemToObject(args, "from", from);
        if (l->bias) {
            cJSON_DeleteItemFromObjectCaseSensitive(args, "use_bias");
            cJSON_AddTrueToObject(args, "use_bias");
        }
        if (l->act) {
            cJSON_DeleteItemFromObjectCaseSensitive(args, "activation");
            cJSON_AddStringToObject(args, "activation", l->act);
        }
        cJSON_AddItemToObject(item, l->kind, args);
        cJSON_AddItemToArray(arr, item);
    }
    out->layers = arr;
    if (!st && (out->record = cJSON_CreateObject())) {
        cJSON_AddItemToObject(out->record, "batchnorm_folded", bn_rec);
        cJSON_AddItemToObject(out->record, "dropout_removed", drop_rec);
        cJSON_AddItemToObject(out->record, "activations_fused", act_rec);
        bn_rec = drop_rec = act_rec = NULL;
    } else if (!st) {
        st = KILN_ERR_NOMEM;
    }
    cJSON_Delete(bn_rec), cJSON_Delete(drop_rec), cJSON_Delete(act_rec);
    for (int i = 0; i < L; i++) free(ls[i].in);
    free(ls);
    kiln_blocks_free(&flat);
    if (st) kiln_fold_free(out);
    return st;
}

void kiln_fold_free(kiln_fold_result *f) {
    cJSON_Delete(f->layers);
    cJSON_Delete(f->record);
    for (int i = 0; i < f->n_pairs; i++) free(f->pairs[i].producer), free(f->pairs[i].bn);
    free(f->pairs);
    memset(f, 0, sizeof *f);
}

/* The value of node n's input k when it is a parameter (its info in *info), else NULL. */
static float *pin(kiln_graph *g, kiln_node *n, int k, const kiln_param_info **info) {
    if (!n || k >= kiln_node_input_count(n)) return NULL;
    int pi = kiln_node_param_index(kiln_node_input(n, k));
    if (pi < 0) return NULL;
    const kiln_param_info *p = kiln_graph_param_info(g, pi);
    if (info) *info = p;
    return kiln_graph_params(g) + p->offset;
}

static kiln_status fold_pair(const kiln_fold_pair *fp, kiln_graph *src, kiln_graph *dst) {
    const kiln_param_info *ki = NULL, *bi = NULL, *gi = NULL;
    kiln_node *pn = kiln_graph_find(src, fp->producer), *bn = kiln_graph_find(src, fp->bn),
              *qn = kiln_graph_find(dst, fp->producer);
    int nb_in = bn ? kiln_node_input_count(bn) : 0;
    const float *w = pin(src, pn, 1, &ki), *b = pin(src, pn, 2, NULL);
    float *nw = pin(dst, qn, 1, NULL), *nb = pin(dst, qn, 2, &bi);
    const float *mean = nb_in >= 3 ? pin(src, bn, nb_in - 2, NULL) : NULL,
                *var = nb_in >= 3 ? pin(src, bn, nb_in - 1, NULL) : NULL, *gamma = NULL, *beta = NULL;
    for (int k = 1; k < nb_in - 2; k++) { /* [gamma], [beta] */
        const float *v = pin(src, bn, k, &gi);
        size_t len = strlen(gi->name);
        if (len >= 6 && !strcmp(gi->name + len - 6, ".gamma")) gamma = v;
        else beta = v;
    }
    if (!pn || !w || !nw || !nb || !mean || !var)
        return kiln_error(KILN_ERR_INVALID, "fold: %s into %s: parameters not found", fp->bn, fp->producer);
    int64_t F = bi->numel;
    const char *op = kiln_node_op(pn);
    kiln_shape ks = ki->shape;
    for (int64_t c = 0; c < F; c++) {
        double a = (gamma ? gamma[c] : 1.0) / sqrt((double)var[c] + fp->epsilon);
        nb[c] = (float)(((b ? b[c] : 0.0) - mean[c]) * a + (beta ? beta[c] : 0.0));
    }
    if (!strcmp(op, "dense")) { /* [K, N]: column n */
        int64_t K = ks.dims[0], N = ks.dims[1];
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++)
                nw[k * N + n] = (float)(w[k * N + n] * ((gamma ? gamma[n] : 1.0) / sqrt((double)var[n] + fp->epsilon)));
    } else if (!strcmp(op, "conv2d_transpose")) { /* [C, F/G, k...]: out channel g * F/G + j */
        int64_t C = ks.dims[0], FG = ks.dims[1], per = (int64_t)ki->numel / (C * FG);
        int64_t G = F / FG, CG = C / G;
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < FG; j++) {
                int64_t f = c / CG * FG + j;
                double a = (gamma ? gamma[f] : 1.0) / sqrt((double)var[f] + fp->epsilon);
                for (int64_t e = 0; e < per; e++) {
                    size_t at = (size_t)((c * FG + j) * per + e);
                    nw[at] = (float)(w[at] * a);
                }
            }
    } else { /* [F, C/G, k...]: first axis */
        int64_t per = (int64_t)ki->numel / F;
        for (int64_t f = 0; f < F; f++) {
            double a = (gamma ? gamma[f] : 1.0) / sqrt((double)var[f] + fp->epsilon);
            for (int64_t e = 0; e < per; e++) nw[f * per + e] = (float)(w[f * per + e] * a);
        }
    }
    return KILN_OK;
}

static const float *param(kiln_graph *g, const char *name, const kiln_param_info **info) {
    for (int i = 0; i < kiln_graph_param_count(g); i++) {
        const kiln_param_info *p = kiln_graph_param_info(g, i);
        if (!strcmp(p->name, name)) {
            if (info) *info = p;
            return kiln_graph_params(g) + p->offset;
        }
    }
    return NULL;
}

kiln_status kiln_fold_weights(const kiln_fold_result *f, kiln_graph *src, kiln_graph *dst) {
    for (int i = 0; i < kiln_graph_param_count(dst); i++) {
        const kiln_param_info *p = kiln_graph_param_info(dst, i), *sp;
        const float *v = param(src, p->name, &sp);
        if (!v) continue; /* a folded producer's new bias: fold_pair writes it */
        if (sp->numel != p->numel)
            return kiln_error(KILN_ERR_INVALID, "fold: %s has %zu values before and %zu after", p->name, sp->numel,
                              p->numel);
        memcpy(kiln_graph_params(dst) + p->offset, v, p->numel * sizeof(float));
    }
    for (int i = 0; i < f->n_pairs; i++) {
        kiln_status st = fold_pair(&f->pairs[i], src, dst);
        if (st) return st;
    }
    return KILN_OK;
}

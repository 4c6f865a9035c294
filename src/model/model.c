/* src/model/ — a model as a config describes it, and its files: the graph built
 * from model.layers (model.c), the data the config names (inputs.c), checkpoint weights with
 * optimizer slots and EMA (checkpoint.c), and the servable package (export.c writes it,
 * servable.c loads and runs it). It sits on the engine (graph, backend, nn, optim) and below the
 * run folder, the trainer and the server, which all use it. Layers: docs/architecture.md.
 *
 * model.c — model.layers (a resolved config) into a graph (see kiln/model.h).
 *
 * Each list item is {kind: {params}} after resolve. The layer's inputs are its from: names, looked
 * up among the layers built so far (and "input"), or else the previous layer's output. Because
 * only earlier layers can be named, the graph is acyclic by construction; a name that exists
 * later in the list (or is the layer itself) is reported as the cycle it would make. Builder
 * errors (shape mismatches) are prefixed with the layer's position and key path.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/model.h"
#include "kiln/nn.h"
#include "model/model_conv.h"
#include "model/blocks.h"

typedef struct {
    const char *name; /* user name (from config) or the graph's name */
    kiln_node *node;
} named;

static kiln_status layer_err(const kiln_cfg *at, const char *path) {
    char where[300];
    kiln_error_prefix("%s: %s", kiln_cfg_where(at, where, sizeof where), path);
    return KILN_ERR_INVALID;
}

/* [h, w] or one int for both (kept for layers that take a pair; convs and pools: model_conv.c) */
static int pair(const kiln_cfg *args, const char *key, int out[2], int def) {
    kiln_cfg *c = kiln_cfg_child(args, key);
    out[0] = out[1] = def;
    if (!c) return 0;
    if (c->type == KILN_CFG_SEQ) {
        out[0] = (int)kiln_cfg_int(c, "[0]", def);
        out[1] = (int)kiln_cfg_int(c, "[1]", def);
    } else {
        out[0] = out[1] = (int)kiln_cfg_int(c, "", def);
    }
    return 1;
}

static kiln_init init_of(const kiln_cfg *args, const char *key) {
    kiln_init i = {kiln_init_from_name(kiln_cfg_str(args, key, "default"))};
    if (i.kind == KILN_INIT_COUNT) i.kind = KILN_INIT_DEFAULT;
    return i;
}

/* Resolves the inputs of layer index li: from: names or the previous output. */
static kiln_status layer_inputs(const kiln_cfg *layers, int li, const kiln_cfg *args, const char *path,
                                named *built, int n_built, kiln_node *prev, kiln_node **in, int *n_in) {
    kiln_cfg *from = kiln_cfg_child(args, "from");
    if (!from) {
        in[0] = prev, *n_in = 1;
        return KILN_OK;
    }
    int n = from->type == KILN_CFG_SEQ ? from->n_items : 1;
    if (n < 1 || n > 64) {
        char where[300];
        return kiln_error(KILN_ERR_INVALID, "%s: %s.from: expected 1 to 64 layer names", kiln_cfg_where(from, where, sizeof where), path);
    }
    for (int k = 0; k < n; k++) {
        const kiln_cfg *c = from->type == KILN_CFG_SEQ ? from->items[k] : from;
        const char *want = c->text;
        kiln_node *found = NULL;
        if (want[0] == '@') { /* "@<i>": flat layer i, written by block expansion (blocks.c) */
            int at = atoi(want + 1);
            if (at >= 0 && at + 1 < n_built) found = built[at + 1].node;
        }
        for (int b = 0; b < n_built && !found; b++)
            if (strcmp(built[b].name, want) == 0) found = built[b].node;
        if (!found) {
            char where[300];
            kiln_cfg_where(c, where, sizeof where);
            /* a later (or this) layer with that name would make a cycle */
            for (int j = li; j < layers->n_items; j++) {
                const kiln_cfg *lj = layers->items[j]->items[0];
                if (strcmp(kiln_cfg_str(lj, "name", ""), want) == 0)
                    return kiln_error(KILN_ERR_INVALID,
                                      "%s: %s.from: '%s' is %s; a layer may only take earlier layers (this would be a cycle)",
                                      where, path, want, j == li ? "this layer itself" : "defined later in the list");
            }
            char known[600] = "input";
            for (int b = 1; b < n_built; b++)
                snprintf(known + strlen(known), sizeof known - strlen(known), ", %s", built[b].name);
            return kiln_error(KILN_ERR_INVALID, "%s: %s.from: unknown layer '%s' (known so far: %s)", where, path, want, known);
        }
        in[k] = found;
    }
    *n_in = n;
    return KILN_OK;
}

/* Issue 13's elementwise and resampling layers: 1 when kind is one of them (*y is the node, or
 * NULL with the error set). upsampling3d's size (an int or [d, h, w]) is checked here. */
static int build_elem(kiln_graph *g, const char *kind, const kiln_cfg *a, kiln_node **in,
                      int n_in, const char *path, const kiln_cfg *at, kiln_node **y) {
    kiln_node *x = in[0];
    char where[300];
    if (!strcmp(kind, "relu6")) *y = kiln_relu6(g, x);
    else if (!strcmp(kind, "hard_sigmoid")) *y = kiln_hard_sigmoid(g, x);
    else if (!strcmp(kind, "hard_swish")) *y = kiln_hard_swish(g, x);
    else if (!strcmp(kind, "clip"))
        *y = kiln_clip(g, x, (float)kiln_cfg_num(a, "min", -INFINITY),
                       (float)kiln_cfg_num(a, "max", INFINITY));
    else if (!strcmp(kind, "multiply")) {
        if (n_in < 2) {
            kiln_error(KILN_ERR_INVALID, "%s: %s: multiply needs at least two inputs in from:",
                       kiln_cfg_where(at, where, sizeof where), path);
            return 1;
        }
        *y = kiln_multiply(g, in[0], in[1]);
        for (int i = 2; i < n_in && *y; i++) *y = kiln_multiply(g, *y, in[i]);
    } else if (!strncmp(kind, "upsampling", 10) && kind[10] >= '1' && kind[10] <= '3') {
        kiln_upsampling_opts o = {.nsp = kind[10] - '0'};
        o.interpolation = strcmp(kiln_cfg_str(a, "interpolation", "nearest"), "nearest")
                              ? KILN_UPSAMPLE_LINEAR
                              : KILN_UPSAMPLE_NEAREST;
        const kiln_cfg *s = kiln_cfg_child(a, "size");
        int64_t v[3] = {2, 2, 2};
        int n = s && s->type == KILN_CFG_SEQ ? s->n_items : 1, ok = n == 1 || n == o.nsp;
        for (int i = 0; ok && s && i < n; i++)
            ok = !kiln_cfg_parse_int(s->type == KILN_CFG_SEQ ? s->items[i] : s, &v[i]) &&
                 v[i] >= 1 && v[i] <= 65536;
        if (!ok) {
            kiln_error(KILN_ERR_INVALID,
                       "%s: %s.size: expected an integer 1 .. 65536 or a list of %d of them",
                       kiln_cfg_where(s, where, sizeof where), path, o.nsp);
            return 1;
        }
        for (int i = 0; i < o.nsp; i++) o.size[i] = (int)v[n == 1 ? 0 : i];
        *y = kiln_upsampling_ex(g, x, &o);
    } else if (!strcmp(kind, "global_maxpool1d")) *y = kiln_global_maxpool1d(g, x);
    else if (!strcmp(kind, "global_maxpool2d")) *y = kiln_global_maxpool2d(g, x);
    else if (!strcmp(kind, "global_maxpool3d")) *y = kiln_global_maxpool3d(g, x);
    else if (!strcmp(kind, "global_avgpool1d")) *y = kiln_global_avgpool1d(g, x);
    else if (!strcmp(kind, "global_avgpool3d")) *y = kiln_global_avgpool3d(g, x);
    else return 0;
    return 1;
}

static kiln_node *build_layer(kiln_graph *g, const char *kind, const kiln_cfg *a, const char *name,
                              kiln_node **in, int n_in, const char *path, const kiln_cfg *at) {
    kiln_node *x = in[0];
    int single = strcmp(kind, "add") != 0 && strcmp(kind, "concat") != 0 &&
                 strcmp(kind, "multiply") != 0;
    if (single && n_in != 1) {
        char where[300];
        kiln_error(KILN_ERR_INVALID, "%s: %s.from: %s takes one input, got %d", kiln_cfg_where(at, where, sizeof where), path, kind, n_in);
        return NULL;
    }
    kiln_act act = kiln_act_from_name(kiln_cfg_str(a, "activation", "none"));
    if (!strcmp(kind, "dense")) {
        kiln_dense_opts o = {.units = (int)kiln_cfg_int(a, "units", 0), .act = act, .no_bias = !kiln_cfg_bool(a, "use_bias", 1),
                             .kernel_init = init_of(a, "kernel_initializer"), .bias_init = init_of(a, "bias_initializer"), .name = name};
        return kiln_dense_ex(g, x, &o);
    }
    kiln_node *conv = NULL; /* convolutions and pools: model_conv.c */
    if (kiln_model_conv_layer(g, kind, a, name, x, act, &conv)) return conv;
    if (!strcmp(kind, "batchnorm")) {
        kiln_batchnorm_opts o = {.momentum = (float)kiln_cfg_num(a, "momentum", 0.99), .epsilon = (float)kiln_cfg_num(a, "epsilon", 1e-3),
                                 .no_scale = !kiln_cfg_bool(a, "scale", 1), .no_center = !kiln_cfg_bool(a, "center", 1), .name = name};
        return kiln_batchnorm_ex(g, x, &o);
    }
    if (!strcmp(kind, "layernorm")) {
        kiln_layernorm_opts o = {.epsilon = (float)kiln_cfg_num(a, "epsilon", 1e-5), .no_scale = !kiln_cfg_bool(a, "scale", 1),
                                 .no_center = !kiln_cfg_bool(a, "center", 1), .name = name};
        return kiln_layernorm_ex(g, x, &o);
    }
    kiln_node *y = NULL;
    if (!strcmp(kind, "adaptive_avgpool2d")) {
        int size[2];
        pair(a, "size", size, 1);
        return kiln_model_adaptive_avgpool2d(g, x, size, name);
    }
    if (build_elem(g, kind, a, in, n_in, path, at, &y)) { /* issue 13's elementwise layers */
    } else if (!strcmp(kind, "global_avgpool2d")) y = kiln_global_avgpool2d(g, x);
    else if (!strcmp(kind, "dropout")) y = kiln_dropout(g, x, (float)kiln_cfg_num(a, "rate", 0));
    else if (!strcmp(kind, "flatten")) y = kiln_flatten(g, x);
    else if (!strcmp(kind, "reshape")) {
        kiln_cfg *s = kiln_cfg_child(a, "shape");
        int64_t dims[KILN_MAX_DIMS] = {0};
        int nd = s->n_items < KILN_MAX_DIMS ? s->n_items : KILN_MAX_DIMS;
        for (int i = 0; i < nd; i++) kiln_cfg_parse_int(s->items[i], &dims[i]);
        y = kiln_reshape(g, x, s->n_items, dims);
    } else if (!strcmp(kind, "add")) {
        if (n_in < 2) {
            char where[300];
            kiln_error(KILN_ERR_INVALID, "%s: %s: add needs at least two inputs in from:", kiln_cfg_where(at, where, sizeof where), path);
            return NULL;
        }
        y = kiln_add(g, in[0], in[1]);
        for (int i = 2; i < n_in && y; i++) y = kiln_add(g, y, in[i]);
    } else if (!strcmp(kind, "concat")) y = kiln_concat(g, in, n_in, (int)kiln_cfg_int(a, "axis", 1));
    else if (!strcmp(kind, "activation")) y = kiln_activation(g, x, act);
    else if (!strcmp(kind, "relu")) y = kiln_relu(g, x);
    else if (!strcmp(kind, "leaky_relu")) y = kiln_leaky_relu(g, x, (float)kiln_cfg_num(a, "alpha", 0.01));
    else if (!strcmp(kind, "gelu")) y = kiln_gelu(g, x);
    else if (!strcmp(kind, "sigmoid")) y = kiln_sigmoid(g, x);
    else if (!strcmp(kind, "tanh")) y = kiln_tanh(g, x);
    else if (!strcmp(kind, "softmax")) y = kiln_softmax(g, x);
    else if (!strcmp(kind, "embedding"))
        y = kiln_embedding(g, x, (int)kiln_cfg_int(a, "input_dim", 0), (int)kiln_cfg_int(a, "output_dim", 0));
    else kiln_error(KILN_ERR_INVALID, "unknown layer kind '%s'", kind);
    if (y && name && kiln_graph_rename(g, y, name) != KILN_OK) return NULL;
    return y;
}

/* 1 when data.augment lists mixup or cutmix (training then feeds soft labels). */
static int augment_mixes(const kiln_cfg *cfg) {
    const kiln_cfg *aug = kiln_cfg_at(cfg, "data.augment");
    for (int i = 0; aug && aug->type == KILN_CFG_SEQ && i < aug->n_items; i++) {
        const kiln_cfg *it = aug->items[i];
        const char *k = it->type == KILN_CFG_MAP && it->n_items == 1 ? it->items[0]->key : it->text;
        if (k && (!strcmp(k, "mixup") || !strcmp(k, "cutmix"))) return 1;
    }
    return 0;
}

static kiln_status build_loss(const kiln_cfg *cfg, kiln_model *m) {
    kiln_cfg *loss = kiln_cfg_child(cfg, "loss");
    const kiln_cfg *lc = loss->items[0];
    const char *kind = lc->key;
    kiln_graph *g = m->graph;
    kiln_shape os = kiln_node_shape(m->output);
    int classify = strcmp(kind, "softmax_cross_entropy") == 0;
    if (classify != (m->task == KILN_TASK_CLASSIFICATION) && strcmp(kind, "binary_cross_entropy") != 0) {
        char where[300];
        return kiln_error(KILN_ERR_INVALID, "%s: loss: %s does not fit data.task: %s", kiln_cfg_where(lc, where, sizeof where),
                          kind, m->task == KILN_TASK_CLASSIFICATION ? "classification (use softmax_cross_entropy)" : "regression");
    }
    if (classify) {
        float smooth = (float)kiln_cfg_num(lc, "label_smoothing", 0);
        m->target = kiln_input(g, "labels", KILN_I32, os.ndim - 2, os.dims + 1);
        m->loss = kiln_softmax_cross_entropy(g, m->output, m->target, smooth);
        if (m->loss && augment_mixes(cfg)) { /* made last: the other nodes keep their ids */
            if (os.ndim != 2) {
                char where[300];
                return kiln_error(KILN_ERR_INVALID, "%s: data.augment: mixup and cutmix need a model output [batch, classes]",
                                  kiln_cfg_where(kiln_cfg_at(cfg, "data.augment"), where, sizeof where));
            }
            m->soft_target = kiln_input(g, "soft_labels", KILN_F32, 1, os.dims + 1);
            m->soft_loss = kiln_softmax_cross_entropy(g, m->output, m->soft_target, smooth);
            if (!m->soft_loss) return layer_err(lc, "loss");
        }
        const kiln_cfg *kd = kiln_cfg_at(cfg, "train.distill"); /* made last, as above */
        if (m->loss && kd && os.ndim == 2) { /* checked against the teacher in src/train/ */
            m->teacher_logits = kiln_input(g, "teacher_logits", KILN_F32, 1, os.dims + 1);
            m->distill_loss = kiln_softmax_distillation(
                g, m->output, m->teacher_logits, m->soft_target ? m->soft_target : m->target,
                (float)kiln_cfg_num(kd, "temperature", 4), (float)kiln_cfg_num(kd, "alpha", 0.9));
            if (!m->distill_loss) return layer_err(lc, "loss");
        }
    } else {
        m->target = kiln_input(g, "targets", KILN_F32, os.ndim - 1, os.dims + 1);
        if (!strcmp(kind, "binary_cross_entropy")) m->loss = kiln_binary_cross_entropy(g, m->output, m->target);
        else if (!strcmp(kind, "mse")) m->loss = kiln_mse(g, m->output, m->target);
        else if (!strcmp(kind, "mae")) m->loss = kiln_mae(g, m->output, m->target);
        else m->loss = kiln_huber(g, m->output, m->target, (float)kiln_cfg_num(lc, "delta", 1.0));
    }
    if (!m->loss) return layer_err(lc, "loss");
    return KILN_OK;
}

kiln_status kiln_model_build(const kiln_cfg *cfg, kiln_model *m) {
    memset(m, 0, sizeof *m);
    m->task = strcmp(kiln_cfg_str(cfg, "data.task", "classification"), "regression") == 0 ? KILN_TASK_REGRESSION
                                                                                         : KILN_TASK_CLASSIFICATION;
    m->graph = kiln_graph_new((uint64_t)kiln_cfg_int(cfg, "seed", 1));
    if (!m->graph) return KILN_ERR_NOMEM;
    kiln_cfg *inp = kiln_cfg_at(cfg, "model.input"), *layers = kiln_cfg_at(cfg, "model.layers");
    char where[300];
    kiln_flat_layers flat = {0}; /* model.blocks and backbones expanded (blocks.c) */
    kiln_status st = kiln_blocks_expand(cfg, &flat);
    if (st) return kiln_model_free(m), st;
    if (layers) layers = flat.layers;
    if (!inp || inp->n_items < 1 || inp->n_items > KILN_MAX_DIMS - 1) {
        kiln_blocks_free(&flat), kiln_model_free(m);
        return kiln_error(KILN_ERR_INVALID, "%s: model.input: expected 1 to %d dimensions (without the batch)",
                          inp ? kiln_cfg_where(inp, where, sizeof where) : "config", KILN_MAX_DIMS - 1);
    }
    int64_t dims[KILN_MAX_DIMS];
    for (int i = 0; i < inp->n_items; i++) kiln_cfg_parse_int(inp->items[i], &dims[i]);
    m->input = kiln_input(m->graph, "input", KILN_F32, inp->n_items, dims);
    if (!layers || layers->n_items == 0) { /* the message first: layers is flat's, freed below */
        st = kiln_error(KILN_ERR_INVALID, "%s: model.layers: the model has no layers",
                        layers ? kiln_cfg_where(layers, where, sizeof where) : "config");
        kiln_blocks_free(&flat), kiln_model_free(m);
        return st;
    }
    named *built = calloc((size_t)layers->n_items + 1, sizeof *built);
    if (!built) return kiln_blocks_free(&flat), kiln_model_free(m), KILN_ERR_NOMEM;
    built[0] = (named){"input", m->input};
    int n_built = 1;
    kiln_node *prev = m->input, *before = NULL;
    for (int i = 0; i < layers->n_items && st == KILN_OK; i++) {
        const kiln_cfg *item = layers->items[i], *args = item->items[0];
        char path[1600];
        snprintf(path, sizeof path, "%s", flat.paths[i]);
        const char *name = kiln_cfg_str(args, "name", NULL);
        if (name)
            for (int b = 0; b < n_built; b++)
                if (strcmp(built[b].name, name) == 0) {
                    st = kiln_error(KILN_ERR_INVALID, "%s: %s.name: '%s' is already used by an earlier layer",
                                    kiln_cfg_where(kiln_cfg_child(args, "name"), where, sizeof where), path, name);
                    break;
                }
        kiln_node *in[64];
        int n_in = 0;
        if (st == KILN_OK) st = layer_inputs(layers, i, args, path, built, n_built, prev, in, &n_in);
        if (st != KILN_OK) break;
        kiln_node *y = build_layer(m->graph, args->key, args, name, in, n_in, path, args);
        if (!y) {
            st = strstr(kiln_last_error(), path) ? KILN_ERR_INVALID : layer_err(args, path);
            break;
        }
        built[n_built++] = (named){name ? name : kiln_node_name(y), y};
        before = prev;
        prev = y;
    }
    if (st == KILN_OK && (m->layer_outputs = malloc((size_t)(n_built - 1 + 1) * sizeof *m->layer_outputs)))
        for (int i = 1; i < n_built; i++) m->layer_outputs[m->n_layers++] = built[i].node;
    free(built);
    kiln_blocks_free(&flat);
    if (st == KILN_OK && !m->layer_outputs) st = KILN_ERR_NOMEM;
    if (st != KILN_OK) return kiln_model_free(m), st;
    m->output = prev;
    m->penultimate = before;
    kiln_shape os = kiln_node_shape(m->output);
    m->n_outputs = kiln_shape_numel(&os);
    if ((st = build_loss(cfg, m)) != KILN_OK) return kiln_model_free(m), st;
    return KILN_OK;
}

void kiln_model_free(kiln_model *m) {
    kiln_graph_free(m->graph);
    free(m->layer_outputs);
    memset(m, 0, sizeof *m);
}

/* onnx_import_write.c — the imported model's files: model.yaml, weights.safetensors and the
 * servable version servable/1/ (kiln/onnx.h).
 *
 * The YAML is rendered once per form (with the commented data: section and init_from for the
 * user; with a placeholder data: section for kiln's own schema check) from the same layer list,
 * one flow-style line per layer, so the two cannot disagree on the model. The servable is not
 * written by hand: the config goes through kiln_config_resolve and kiln_model_build, the
 * weights are copied in by parameter name (the set of names and every shape must match the
 * built graph exactly), and kiln_export_graph writes the version. So an import that succeeds
 * is a model kiln can build, train and serve.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/export.h"
#include "kiln/fileio.h"
#include "kiln/model.h"
#include "model/onnx_import_internal.h"

void ox_put(ox_buf *b, const char *fmt, ...) {
    va_list ap;
    for (int tries = 0; tries < 2 && !b->oom; tries++) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s, b->cap = cap;
    }
}

/* A name as a YAML flow scalar (quoted when it could read as something else). */
void ox_put_name(ox_buf *b, const char *s) {
    int plain = isalpha((unsigned char)s[0]) || s[0] == '_';
    static const char *const words[] = {"true", "false", "null", "yes", "no", "on", "off", NULL};
    for (int i = 0; words[i] && plain; i++) plain = strcasecmp(s, words[i]) != 0;
    ox_put(b, plain ? "%s" : "\"%s\"", s);
}

void ox_put_layer(ox_buf *b, int ind, const ox_layer *L, const char *name,
                  const char *const *refs, int nref, const char *const *val) {
    ox_put(b, "%*s- %s: {name: ", ind, "", L->kind);
    ox_put_name(b, name);
    if (refs) {
        ox_put(b, ", from: %s", nref > 1 ? "[" : "");
        for (int k = 0; k < nref; k++) {
            if (k) ox_put(b, ", ");
            ox_put_name(b, refs[k]);
        }
        ox_put(b, "%s", nref > 1 ? "]" : "");
    }
    for (int k = 0; k < L->nkv; k++)
        ox_put(b, ", %s: %s", L->kv[k].key, val && val[k] ? val[k] : L->kv[k].text);
    ox_put(b, "}\n");
}

static const char *from_name(const kiln_onnx_model *m, int li) {
    return li < 0 ? "input" : m->layers[li].name;
}

static void render_layers(const kiln_onnx_model *m, ox_buf *b) {
    ox_put(b, "  layers:\n");
    for (int i = 0; i < m->nl; i++) {
        const ox_layer *L = &m->layers[i];
        const char *refs[OX_MAXIN];
        for (int k = 0; k < L->nfrom; k++) refs[k] = from_name(m, L->from[k]);
        int chain = L->nfrom == 1 && L->from[0] == i - 1;
        ox_put_layer(b, 4, L, L->name, chain ? NULL : refs, L->nfrom, NULL);
    }
}

static void experiment_name(const kiln_onnx_model *m, char *out, size_t cap) {
    const char *base = strrchr(m->label, '/');
    base = base ? base + 1 : m->label;
    size_t o = 0;
    for (const char *s = base; *s && o + 1 < cap && o < 60; s++) {
        if (!strcmp(s, ".onnx")) break;
        out[o++] = isalnum((unsigned char)*s) || *s == '-' || *s == '_' ? *s : '_';
    }
    out[o] = 0;
    if (!o || !isalpha((unsigned char)out[0])) snprintf(out, cap, "imported");
}

static char *render(kiln_onnx_model *m, int full) {
    ox_buf b = {0};
    char exp[80], inp[200];
    experiment_name(m, exp, sizeof exp);
    ox_fmt_ints(inp, sizeof inp, m->in_dims, m->in_nd, 0);
    if (m->in_nd == 1) snprintf(inp, sizeof inp, "[%lld]", (long long)m->in_dims[0]);
    int regression = !strcmp(m->loss, "mse");
    /* both forms have the same lines, so the servable's config errors point into model.yaml */
    ox_put(&b, "# A kiln model imported by `kiln import` from %s\n", m->label);
    ox_put(&b, "# (producer: %s; opset %d): %d ONNX nodes -> %d kiln layers.\n",
        m->producer ? m->producer : "unknown", m->opset, m->n_nodes, m->nl);
    ox_put(&b, "# Layer names come from the ONNX node names; a parameter is \"<layer>.<param>\""
            " (for a torch\n# export, \"layer1/0/conv1.kernel\" is torch's "
            "\"layer1.0.conv1.weight\").\n");
    if (m->block_depth > 0)
        ox_put(&b, "# Sub-graphs that repeat are model.blocks; an instance's name scopes its "
                   "layers' names, so\n# the parameters are named as in `kiln import --flat`, "
                   "which writes every layer out.\n");
    if (m->dropped[0])
        ox_put(&b, "# The graph ended in %s, which is left out here: the loss below applies it "
                "in training,\n# and the servable's `probabilities` output is that %s.\n",
            m->dropped, m->dropped[1] == 'o' ? "softmax" : "sigmoid");
    ox_put(&b, "# Loss rule: a final Softmax -> softmax_cross_entropy, a final Sigmoid -> "
            "binary_cross_entropy,\n# an output [batch, n >= 2] (logits) -> "
            "softmax_cross_entropy, anything else -> mse (regression).\n");
    ox_put(&b, "experiment: %s\nseed: 1\n", exp);
    ox_put(&b, "# data: what to train or fine-tune on (required by `kiln train`; docs/data.md)."
            " For example:\n");
    if (full) ox_put(&b, "# data:\n");
    else ox_put(&b, "data: {source: npy, train: {}, task: %s}\n",
             regression ? "regression" : "classification");
    ox_put(&b, "#   source: images\n#   train: {path: data/train}\n"
            "#   validation: {path: data/validation}\n");
    if (m->in_nd == 3)
        ox_put(&b, "#   image: {channels: %s, resize: [%lld, %lld]}\n",
            m->in_dims[0] == 1 ? "grayscale" : "rgb", (long long)m->in_dims[1],
            (long long)m->in_dims[2]);
    ox_put(&b, "#   normalize: {scale: 0.00392156862745098}   # and mean/std as the model was "
            "trained with\n#   batch_size: 32\n");
    if (regression) ox_put(&b, "#   task: regression\n");
    ox_put(&b, "model:\n  input: %s\n", inp);
    ox_put(&b, "  %sinit_from: weights.safetensors\n", full ? "" : "# ");
    int nb = m->block_depth > 0 ? ox_blocks_render(m, m->block_depth, &b) : 0;
    if (nb <= 0) render_layers(m, &b);
    m->n_blocks = nb > 0 ? nb : 0;
    ox_put(&b, "loss:\n  %s: {}\n", m->loss);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* Both YAML forms, in the block form unless m->flat or nothing repeats. */
static kiln_status render_yaml(kiln_onnx_model *m) {
    m->block_depth = m->flat ? 0 : ox_blocks_choose(m);
    if (m->block_depth >= 0) {
        m->yaml_full = render(m, 1);
        m->yaml_serve = render(m, 0);
    }
    if (!m->yaml_full || !m->yaml_serve)
        return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
    return KILN_OK;
}

kiln_status ox_render(kiln_onnx_model *m) {
    if (m->nl == 0) return kiln_error(KILN_ERR_INVALID, "%s: the graph has no layers", m->label);
    int n = 0;
    for (int i = 0; i < m->nl; i++) n += m->layers[i].nw;
    m->entries = calloc((size_t)n + 1, sizeof *m->entries);
    m->entry_names = calloc((size_t)n + 1, sizeof *m->entry_names);
    if (!m->entries || !m->entry_names) return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
    for (int i = 0; i < m->nl; i++)
        for (int k = 0; k < m->layers[i].nw; k++) {
            const ox_w *w = &m->layers[i].w[k];
            char name[200];
            snprintf(name, sizeof name, "%s.%s", m->layers[i].name, w->suffix);
            if (!(m->entry_names[m->ne] = strdup(name)))
                return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
            kiln_st_entry *e = &m->entries[m->ne];
            e->name = m->entry_names[m->ne++];
            e->dtype = KILN_F32;
            e->shape.ndim = w->nd;
            for (int d = 0; d < w->nd; d++) e->shape.dims[d] = w->dims[d];
            e->data = w->data;
        }
    return render_yaml(m);
}

kiln_status kiln_onnx_set_flat(kiln_onnx_model *m, int flat) {
    m->flat = flat != 0;
    free(m->yaml_full), free(m->yaml_serve);
    m->yaml_full = m->yaml_serve = NULL;
    return render_yaml(m);
}

int kiln_onnx_block_count(const kiln_onnx_model *m) { return m->n_blocks; }

/* Copies the weights into the built graph: the same names, every shape equal. */
static kiln_status fill(const kiln_onnx_model *m, kiln_graph *g) {
    int np = kiln_graph_param_count(g);
    if (np != m->ne)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: kiln's model has %d parameters, the import made %d tensors",
                          m->label, np, m->ne);
    for (int i = 0; i < np; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        const kiln_st_entry *e = NULL;
        for (int k = 0; k < m->ne && !e; k++)
            if (!strcmp(m->entries[k].name, pi->name)) e = &m->entries[k];
        if (!e)
            return kiln_error(KILN_ERR_INVALID, "%s: kiln's parameter %s has no imported tensor",
                              m->label, pi->name);
        int same = e->shape.ndim == pi->shape.ndim;
        for (int d = 0; same && d < pi->shape.ndim; d++) same = e->shape.dims[d] == pi->shape.dims[d];
        if (!same)
            return kiln_error(KILN_ERR_INVALID,
                              "%s: parameter %s: kiln builds a different shape than the import",
                              m->label, pi->name);
        memcpy(kiln_graph_params(g) + pi->offset, e->data, pi->numel * sizeof(float));
    }
    return KILN_OK;
}

kiln_status kiln_onnx_write(const kiln_onnx_model *m, const char *dir) {
    char path[4200];
    kiln_status st = kiln_mkdirs(dir);
    if (st) return st;
    if (snprintf(path, sizeof path, "%s/servable/1", dir) >= (int)sizeof path)
        return kiln_error(KILN_ERR_INVALID, "import: path %s is too long", dir);
    FILE *probe = fopen(path, "r");
    if (probe) {
        fclose(probe);
        return kiln_error(KILN_ERR_INVALID,
                          "import: %s already exists; import into a new folder (or remove it)",
                          path);
    }
    /* model.yaml and the weights first: a config kiln cannot build yet (a layer kind of a newer
     * kiln) is still there to read and edit, and the build error points into it */
    kiln_cfg *cfg = NULL;
    kiln_model km = {0};
    char label[4300];
    snprintf(label, sizeof label, "%s/model.yaml", dir);
    st = kiln_file_write_atomic(label, m->yaml_full, strlen(m->yaml_full));
    if (!st) {
        static const char *const meta[] = {"kiln.format", "1"};
        snprintf(path, sizeof path, "%s/weights.safetensors", dir);
        st = kiln_safetensors_write(path, m->entries, m->ne, meta, 1);
    }
    if (st) return st;
    st = kiln_config_parse(m->yaml_serve, label, &cfg);
    if (!st) st = kiln_config_resolve(cfg);
    if (!st && !(st = kiln_model_build(cfg, &km))) st = kiln_graph_init_params(km.graph);
    if (!st) st = fill(m, km.graph);
    if (!st) {
        char base[4300], exp[80];
        snprintf(base, sizeof base, "%s/servable", dir);
        experiment_name(m, exp, sizeof exp);
        kiln_export_source src = {.model = &km, .cfg = cfg, .name = exp};
        st = kiln_export_graph(&src, base, 1, NULL);
    }
    if (st && st != KILN_ERR_NOMEM) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        st = kiln_error(st, "%s (%s and weights.safetensors are written, no servable)", msg,
                        label);
    }
    kiln_model_free(&km);
    kiln_cfg_free(cfg);
    return st;
}

/* onnx_import_ops.c — one ONNX node onto kiln layers (the table in docs/models.md, "Importing
 * ONNX").
 *
 * Each mapping checks the node's attributes against the list it knows (anything else is an
 * error naming the attribute), reads its constant inputs (weights, shapes, Clip bounds), and
 * computes the output shape the ONNX way, so that later nodes (Flatten, Reshape, Gemm) see the
 * true shape. Rules that keep the YAML readable and the model trainable as kiln trains it:
 *  - Relu and Clip(0, 6) fold into the conv/dense before them as `activation:` when they are
 *    that layer's only reader; an Add of a constant folds into that layer's bias the same way.
 *  - BatchNormalization stays a batchnorm layer (not folded into the conv), with ONNX's epsilon
 *    and momentum, so fine-tuning trains it as PyTorch does.
 *  - No-ops vanish: Identity, Dropout of rate 0, a 1x1 pool of stride 1, Flatten of a value that
 *    is already [batch, n], Reshape/Transpose that keep kiln's layout.
 *  - A final Softmax (or Sigmoid) is dropped and recorded: the loss (softmax / binary cross
 *    entropy) applies it, and the servable's `probabilities` output is it.
 * Padding: pads equal to `same` (TensorFlow's SAME_UPPER, for this input size) are written
 * `same`; zero pads `valid`; other symmetric pads as d ints, asymmetric ones as 2*d ints in
 * ONNX order (docs/config.md).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/onnx_import_internal.h"

static const char *op(ox_ctx *c) { return c->n->op_type; }

static float *copy_f(const float *src, int64_t n) {
    float *d = malloc((size_t)n * sizeof *d + 1);
    if (d) memcpy(d, src, (size_t)n * sizeof *d);
    return d;
}

static kiln_status nomem(void) { return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory"); }

/* A float constant input with n elements (n < 0: any). */
static kiln_status f_in(ox_ctx *c, int k, const char *what, int64_t n, int required, int *v) {
    kiln_status st = ox_const_in(c, k, what, v);
    if (st) return st;
    if (*v < 0) return required ? ox_err(c, KILN_ERR_FORMAT, NULL, "input %d (%s) is missing", k, what)
                                : KILN_OK;
    const ox_val *x = &c->vals[*v];
    if (!x->f) return ox_err(c, KILN_ERR_FORMAT, NULL, "input %d (%s) is not float32", k, what);
    if (n >= 0 && x->n != n)
        return ox_err(c, KILN_ERR_INVALID, NULL, "input %d (%s) has %lld values, expected %lld", k,
                      what, (long long)x->n, (long long)n);
    return KILN_OK;
}

/* Only output 0 may be read (Dropout's mask, MaxPool's indices, BN's training outputs). */
static kiln_status only_first_output(ox_ctx *c) {
    for (size_t k = 1; k < c->n->n_output; k++)
        if (c->n->output[k] && c->n->output[k][0]) {
            int used = 0;
            const Onnx__GraphProto *g = c->mp->graph;
            for (size_t i = 0; i < g->n_node; i++)
                for (size_t j = 0; g->node[i] && j < g->node[i]->n_input; j++)
                    used += g->node[i]->input[j] && !strcmp(g->node[i]->input[j], c->n->output[k]);
            for (size_t i = 0; i < g->n_output; i++)
                used += g->output[i] && g->output[i]->name &&
                        !strcmp(g->output[i]->name, c->n->output[k]);
            if (used)
                return ox_err(c, KILN_ERR_INVALID, NULL,
                              "output %zu ('%.60s') is used; kiln computes output 0 only", k,
                              c->n->output[k]);
        }
    return KILN_OK;
}

static int is_conv_kind(const char *k) {
    return !strncmp(k, "conv", 4) || !strcmp(k, "dense") || !strncmp(k, "depthwise", 9);
}

/* The layer v is the direct output of, when an activation or bias may fold into it. */
static int foldable(ox_ctx *c, int v) {
    const ox_val *x = &c->vals[v];
    if (x->is_const || x->layer < 0) return -1;
    ox_layer *L = &c->m->layers[x->layer];
    if (L->out_val != v || !is_conv_kind(L->kind) || ox_kv_get(L, "activation")) return -1;
    if (ox_uses(c, v) != 1) return -1;
    return x->layer;
}

static void kv_del(ox_layer *L, const char *key) {
    for (int i = 0; i < L->nkv; i++)
        if (!strcmp(L->kv[i].key, key)) {
            free(L->kv[i].text);
            memmove(&L->kv[i], &L->kv[i + 1], (size_t)(L->nkv - i - 1) * sizeof L->kv[0]);
            L->nkv--;
            return;
        }
}

/* A one-input layer of kind on input 0 with the same shape out (activations). */
static kiln_status simple(ox_ctx *c, const char *kind, int *li_out) {
    int x, li;
    kiln_status st = ox_act_in(c, 0, &x);
    if (!st) st = ox_layer_new(c, kind, &x, 1, &li);
    if (st) return st;
    const ox_val *v = &c->vals[x];
    if (li_out) *li_out = li;
    return ox_def_act(c, 0, li, v->nd, v->dims, v->knd, v->kdims);
}

/* relu, relu6, hard_swish, hard_sigmoid: folded into the conv or dense before it when it is that layer's only reader. */
static kiln_status act_layer(ox_ctx *c, const char *act) {
    int x;
    kiln_status st = ox_act_in(c, 0, &x);
    if (st) return st;
    int L = foldable(c, x);
    if (L >= 0) {
        if ((st = ox_kv_add(c, L, "activation", "%s", act))) return st;
        return ox_alias(c, 0, x);
    }
    return simple(c, act, NULL);
}

static int is_last_output(ox_ctx *c) {
    return c->n->n_output >= 1 && c->n->output[0] && c->m->output_name &&
           !strcmp(c->n->output[0], c->m->output_name);
}

/* ---- convolutions ---- */

typedef struct {
    int d;
    int64_t k[3], s[3], dil[3], pb[3], pe[3], op[3];
    char pad_text[120];
} conv_geo;

/* Reads strides, dilations, pads / auto_pad for d spatial axes of input x; out: sizes. */
static kiln_status geometry(ox_ctx *c, const ox_val *x, conv_geo *g, int transpose, int pool,
                            int64_t *out) {
    int d = g->d, n;
    int64_t buf[6];
    kiln_status st;
    for (int i = 0; i < d; i++) g->s[i] = g->dil[i] = 1, g->pb[i] = g->pe[i] = g->op[i] = 0;
    if ((st = ox_attr_ints(c, "strides", buf, 3, &n))) return st;
    if (n >= 0 && n != d) return ox_err(c, KILN_ERR_INVALID, "strides", "needs %d values", d);
    for (int i = 0; i < n; i++) g->s[i] = buf[i];
    if ((st = ox_attr_ints(c, "dilations", buf, 3, &n))) return st;
    if (n >= 0 && n != d) return ox_err(c, KILN_ERR_INVALID, "dilations", "needs %d values", d);
    for (int i = 0; i < n; i++) g->dil[i] = buf[i];
    if (transpose) {
        if ((st = ox_attr_ints(c, "output_padding", buf, 3, &n))) return st;
        if (n >= 0 && n != d)
            return ox_err(c, KILN_ERR_INVALID, "output_padding", "needs %d values", d);
        for (int i = 0; i < n; i++) g->op[i] = buf[i];
    }
    for (int i = 0; i < d; i++)
        if (g->s[i] < 1 || g->s[i] > 4096 || g->dil[i] < 1 || g->dil[i] > 4096 || g->k[i] < 1 ||
            g->k[i] > 4096 || g->op[i] < 0 || g->op[i] >= g->s[i] + g->dil[i])
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "kernel %lld, stride %lld, dilation %lld, output_padding %lld on axis "
                          "%d are out of range",
                          (long long)g->k[i], (long long)g->s[i], (long long)g->dil[i],
                          (long long)g->op[i], i);
    if (pool)
        for (int i = 0; i < d; i++)
            if (g->dil[i] != 1)
                return ox_err(c, KILN_ERR_INVALID, "dilations", "pooling with dilation %lld",
                              (long long)g->dil[i]);
    char ap[32];
    if ((st = ox_attr_str(c, "auto_pad", "NOTSET", ap, sizeof ap))) return st;
    if ((st = ox_attr_ints(c, "pads", buf, 6, &n))) return st;
    if (n >= 0 && n != 2 * d) return ox_err(c, KILN_ERR_INVALID, "pads", "needs %d values", 2 * d);
    int same_upper = 1, zero = 1, sym = 1;
    for (int i = 0; i < d; i++) {
        int64_t in = x->dims[2 + i], eff = (g->k[i] - 1) * g->dil[i] + 1;
        int64_t so = (in + g->s[i] - 1) / g->s[i], tot = (so - 1) * g->s[i] + eff - in;
        if (tot < 0) tot = 0;
        if (!strcmp(ap, "NOTSET")) {
            if (n > 0) g->pb[i] = buf[i], g->pe[i] = buf[d + i];
        } else if (!strcmp(ap, "VALID")) {
        } else if (!strcmp(ap, "SAME_UPPER") && !transpose) {
            g->pb[i] = tot / 2, g->pe[i] = tot - tot / 2;
        } else if (!strcmp(ap, "SAME_LOWER") && !transpose) {
            g->pe[i] = tot / 2, g->pb[i] = tot - tot / 2;
        } else {
            return ox_err(c, KILN_ERR_INVALID, "auto_pad", "value %s is not supported%s", ap,
                          transpose ? " for ConvTranspose (give explicit pads)" : "");
        }
        if (g->pb[i] < 0 || g->pe[i] < 0 || g->pb[i] > 4096 || g->pe[i] > 4096)
            return ox_err(c, KILN_ERR_INVALID, "pads", "value %lld / %lld is out of range",
                          (long long)g->pb[i], (long long)g->pe[i]);
        same_upper = same_upper && g->pb[i] == tot / 2 && g->pe[i] == tot - tot / 2;
        zero = zero && !g->pb[i] && !g->pe[i];
        sym = sym && g->pb[i] == g->pe[i];
        if (transpose)
            out[i] = g->s[i] * (in - 1) + g->op[i] + eff - g->pb[i] - g->pe[i];
        else
            out[i] = in + g->pb[i] + g->pe[i] < eff ? 0
                                                    : (in + g->pb[i] + g->pe[i] - eff) / g->s[i] + 1;
        if (out[i] < 1)
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "the window (%lld) does not fit the input (%lld) on spatial axis %d",
                          (long long)eff, (long long)in, i);
    }
    int64_t all[6];
    for (int i = 0; i < d; i++) all[i] = g->pb[i], all[d + i] = g->pe[i];
    if (zero) snprintf(g->pad_text, sizeof g->pad_text, "valid");
    else if (same_upper && !transpose) snprintf(g->pad_text, sizeof g->pad_text, "same");
    else ox_fmt_ints(g->pad_text, sizeof g->pad_text, all, sym ? d : 2 * d, 0);
    return KILN_OK;
}

static kiln_status kv_ints(ox_ctx *c, int li, const char *key, const int64_t *v, int n,
                           int64_t skip_if_all) {
    int all = 1;
    for (int i = 0; i < n; i++) all = all && v[i] == skip_if_all;
    if (all && skip_if_all >= 0) return KILN_OK;
    char buf[120];
    ox_fmt_ints(buf, sizeof buf, v, n, 1);
    return ox_kv_add(c, li, key, "%s", buf);
}

static kiln_status map_conv(ox_ctx *c, int transpose) {
    static const char *const A[] = {"kernel_shape", "strides",        "pads", "dilations",
                                    "group",        "auto_pad",       NULL};
    static const char *const AT[] = {"kernel_shape", "strides",        "pads", "dilations",
                                     "group",        "auto_pad",       "output_padding", NULL};
    kiln_status st = ox_attrs_only(c, transpose ? AT : A);
    int x, w, b;
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = f_in(c, 1, "weights", -1, 1, &w);
    if (!st) st = f_in(c, 2, "bias", -1, 0, &b);
    if (!st) st = ox_exact(c, x, &x);
    if (st) return st;
    const ox_val *X = &c->vals[x], *W = &c->vals[w];
    conv_geo g = {.d = W->nd - 2};
    if (g.d < 1 || g.d > 3 || X->nd != g.d + 2)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "weights of %d dims on an input of %d dims; kiln has 1d, 2d and 3d "
                      "convolutions over [batch, channels, ...]",
                      W->nd, X->nd);
    int64_t group;
    if ((st = ox_attr_int(c, "group", 1, &group))) return st;
    int64_t C = X->dims[1], F;
    if (group < 1 || C % group)
        return ox_err(c, KILN_ERR_INVALID, "group", "%lld does not divide the %lld input channels",
                      (long long)group, (long long)C);
    if (!transpose) {
        F = W->dims[0];
        if (W->dims[1] * group != C || F % group)
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "weights [%lld, %lld, ...] do not fit %lld input channels in %lld "
                          "groups",
                          (long long)W->dims[0], (long long)W->dims[1], (long long)C,
                          (long long)group);
    } else {
        F = W->dims[1] * group;
        if (W->dims[0] != C)
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "weights [%lld, ...] do not fit %lld input channels",
                          (long long)W->dims[0], (long long)C);
        if (g.d != 2)
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "ConvTranspose over %d spatial axes; kiln has conv2d_transpose only",
                          g.d);
    }
    int64_t ks[3];
    int nk;
    if ((st = ox_attr_ints(c, "kernel_shape", ks, 3, &nk))) return st;
    for (int i = 0; i < g.d; i++) {
        g.k[i] = W->dims[2 + i];
        if (nk >= 0 && (nk != g.d || ks[i] != g.k[i]))
            return ox_err(c, KILN_ERR_INVALID, "kernel_shape", "does not match the weights");
    }
    if (b >= 0 && c->vals[b].n != F)
        return ox_err(c, KILN_ERR_INVALID, NULL, "bias has %lld values for %lld filters",
                      (long long)c->vals[b].n, (long long)F);
    int64_t out[3];
    if ((st = geometry(c, X, &g, transpose, 0, out))) return st;
    char kind[32];
    /* one group per input channel: Keras's DepthwiseConv2D (the same kernel layout) */
    int dw = !transpose && g.d == 2 && group == C && C > 1;
    snprintf(kind, sizeof kind, transpose ? "conv2d_transpose" : dw ? "depthwise_conv2d"
                                                                     : "conv%dd", g.d);
    int li;
    if ((st = ox_layer_new(c, kind, &x, 1, &li))) return st;
    if (dw && F != C) st = ox_kv_add(c, li, "depth_multiplier", "%lld", (long long)(F / C));
    else if (!dw) st = ox_kv_add(c, li, "filters", "%lld", (long long)F);
    if (!st) st = kv_ints(c, li, "kernel", g.k, g.d, -1);
    if (!st) st = kv_ints(c, li, "strides", g.s, g.d, 1);
    if (!st && strcmp(g.pad_text, "valid")) st = ox_kv_add(c, li, "padding", "%s", g.pad_text);
    if (!st && transpose) st = kv_ints(c, li, "output_padding", g.op, g.d, 0);
    if (!st) st = kv_ints(c, li, "dilation", g.dil, g.d, 1);
    if (!st && group != 1 && !dw) st = ox_kv_add(c, li, "groups", "%lld", (long long)group);
    if (!st && b < 0) st = ox_kv_add(c, li, "use_bias", "false");
    if (st) return st;
    float *kd = copy_f(W->f, W->n);
    if (!kd) return nomem();
    if ((st = ox_w_add(c, li, "kernel", W->nd, W->dims, kd))) return st;
    if (b >= 0) {
        float *bd = copy_f(c->vals[b].f, F);
        if (!bd) return nomem();
        if ((st = ox_w_add(c, li, "bias", 1, &F, bd))) return st;
    }
    int64_t od[OX_MAXD] = {-1, F};
    for (int i = 0; i < g.d; i++) od[2 + i] = out[i];
    return ox_def_act(c, 0, li, g.d + 2, od, g.d + 2, od);
}

/* ---- dense ---- */

static kiln_status dense(ox_ctx *c, int x, const ox_val *B, int trans_b, float alpha,
                         const ox_val *Cb, float beta) {
    const ox_val *X = &c->vals[x];
    if (X->nd != 2)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "input of %d dims; kiln's dense takes [batch, features] (add a Flatten)",
                      X->nd);
    if (B->nd != 2)
        return ox_err(c, KILN_ERR_INVALID, NULL, "weights of %d dims, expected 2", B->nd);
    int64_t K = trans_b ? B->dims[1] : B->dims[0], N = trans_b ? B->dims[0] : B->dims[1];
    if (K != X->dims[1])
        return ox_err(c, KILN_ERR_INVALID, NULL, "weights take %lld features, the input has %lld",
                      (long long)K, (long long)X->dims[1]);
    if (Cb && Cb->n != N && Cb->n != 1)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "bias (C) has %lld values; kiln's dense needs %lld (or one)",
                      (long long)Cb->n, (long long)N);
    int li;
    kiln_status st = ox_layer_new(c, "dense", &x, 1, &li);
    if (!st) st = ox_kv_add(c, li, "units", "%lld", (long long)N);
    if (!st && !Cb) st = ox_kv_add(c, li, "use_bias", "false");
    if (st) return st;
    float *k = malloc((size_t)(K * N) * sizeof *k + 1);
    if (!k) return nomem();
    for (int64_t i = 0; i < K; i++)
        for (int64_t j = 0; j < N; j++)
            k[i * N + j] = alpha * (trans_b ? B->f[j * K + i] : B->f[i * N + j]);
    int64_t kd[2] = {K, N};
    if ((st = ox_w_add(c, li, "kernel", 2, kd, k))) return st;
    if (Cb) {
        float *bd = malloc((size_t)N * sizeof *bd + 1);
        if (!bd) return nomem();
        for (int64_t j = 0; j < N; j++) bd[j] = beta * Cb->f[Cb->n == 1 ? 0 : j];
        if ((st = ox_w_add(c, li, "bias", 1, &N, bd))) return st;
    }
    int64_t od[2] = {-1, N};
    return ox_def_act(c, 0, li, 2, od, 2, od);
}

static kiln_status map_gemm(ox_ctx *c) {
    static const char *const A[] = {"alpha", "beta", "transA", "transB", NULL};
    int64_t ta, tb;
    float alpha, beta;
    int x, b, cb;
    kiln_status st = ox_attrs_only(c, A);
    if (!st) st = ox_attr_int(c, "transA", 0, &ta);
    if (!st) st = ox_attr_int(c, "transB", 0, &tb);
    if (!st) st = ox_attr_float(c, "alpha", 1, &alpha);
    if (!st) st = ox_attr_float(c, "beta", 1, &beta);
    if (!st && ta != 0)
        st = ox_err(c, KILN_ERR_INVALID, "transA", "value %lld is not supported (the data would "
                    "be transposed)", (long long)ta);
    if (!st && tb != 0 && tb != 1) st = ox_err(c, KILN_ERR_INVALID, "transB", "must be 0 or 1");
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = f_in(c, 1, "B, the weights", -1, 1, &b);
    if (!st) st = f_in(c, 2, "C, the bias", -1, 0, &cb);
    if (!st) st = ox_exact(c, x, &x);
    if (st) return st;
    return dense(c, x, &c->vals[b], (int)tb, alpha, cb >= 0 ? &c->vals[cb] : NULL, beta);
}

static kiln_status map_matmul(ox_ctx *c) {
    kiln_status st = ox_attrs_only(c, (const char *const[]){NULL});
    int x, b;
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = f_in(c, 1, "B, the weights", -1, 1, &b);
    if (!st) st = ox_exact(c, x, &x);
    if (st) return st;
    return dense(c, x, &c->vals[b], 0, 1, NULL, 1);
}

/* ---- normalization ---- */

static kiln_status map_bn(ox_ctx *c) {
    static const char *const A[] = {"epsilon", "momentum", "training_mode", "spatial", "is_test",
                                    NULL};
    float eps, mom;
    int64_t tm, spatial;
    int x, p[4];
    kiln_status st = ox_attrs_only(c, A);
    if (!st) st = ox_attr_float(c, "epsilon", 1e-5f, &eps);
    if (!st) st = ox_attr_float(c, "momentum", 0.9f, &mom);
    if (!st) st = ox_attr_int(c, "training_mode", 0, &tm);
    if (!st) st = ox_attr_int(c, "spatial", 1, &spatial);
    if (!st && tm) st = ox_err(c, KILN_ERR_INVALID, "training_mode", "value 1 is not supported");
    if (!st && spatial != 1) st = ox_err(c, KILN_ERR_INVALID, "spatial", "value 0 is not supported");
    if (!st && !(eps >= 1e-12f && eps <= 1))
        st = ox_err(c, KILN_ERR_INVALID, "epsilon", "value %g is out of kiln's range [1e-12, 1]",
                    (double)eps);
    if (!st && !(mom >= 0 && mom <= 1))
        st = ox_err(c, KILN_ERR_INVALID, "momentum", "value %g is out of range [0, 1]", (double)mom);
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = ox_exact(c, x, &x);
    if (!st) st = only_first_output(c);
    if (st) return st;
    const ox_val *X = &c->vals[x];
    int64_t C = X->dims[1];
    static const char *const what[4] = {"scale", "B", "mean", "var"};
    static const char *const names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    for (int i = 0; i < 4 && !st; i++) st = f_in(c, 1 + i, what[i], C, 1, &p[i]);
    int li;
    if (!st) st = ox_layer_new(c, "batchnorm", &x, 1, &li);
    if (st) return st;
    char e[40], m[40];
    ox_fmt_float(e, sizeof e, eps);
    ox_fmt_float(m, sizeof m, mom);
    st = ox_kv_add(c, li, "epsilon", "%s", e);
    if (!st) st = ox_kv_add(c, li, "momentum", "%s", m);
    for (int i = 0; i < 4 && !st; i++) {
        float *d = copy_f(c->vals[p[i]].f, C);
        st = d ? ox_w_add(c, li, names[i], 1, &C, d) : nomem();
    }
    if (st) return st;
    X = &c->vals[x];
    return ox_def_act(c, 0, li, X->nd, X->dims, X->knd, X->kdims);
}

/* ---- elementwise ---- */

static kiln_status scalar_in(ox_ctx *c, int k, const char *what, float def, float *out) {
    int v;
    *out = def;
    kiln_status st = f_in(c, k, what, 1, 0, &v);
    if (!st && v >= 0) *out = c->vals[v].f[0];
    return st;
}

static kiln_status map_clip(ox_ctx *c) {
    float lo = -INFINITY, hi = INFINITY;
    kiln_status st;
    if (c->opset < 11) {
        st = ox_attrs_only(c, (const char *const[]){"min", "max", NULL});
        if (!st) st = ox_attr_float(c, "min", -FLT_MAX, &lo);
        if (!st) st = ox_attr_float(c, "max", FLT_MAX, &hi);
    } else {
        st = ox_attrs_only(c, (const char *const[]){NULL});
        if (!st) st = scalar_in(c, 1, "min", -INFINITY, &lo);
        if (!st) st = scalar_in(c, 2, "max", INFINITY, &hi);
    }
    if (st) return st;
    if (lo <= -FLT_MAX) lo = -INFINITY;
    if (hi >= FLT_MAX) hi = INFINITY;
    if (isnan(lo) || isnan(hi) || lo > hi)
        return ox_err(c, KILN_ERR_INVALID, "min", "bounds [%g, %g] are not an interval",
                      (double)lo, (double)hi);
    if (lo == 0 && hi == 6) return act_layer(c, "relu6");
    if (lo == 0 && isinf(hi)) return act_layer(c, "relu");
    int li;
    if ((st = simple(c, "clip", &li))) return st;
    char a[40], b[40];
    ox_fmt_float(a, sizeof a, lo);
    ox_fmt_float(b, sizeof b, hi);
    if (!isinf(lo) && (st = ox_kv_add(c, li, "min", "%s", a))) return st;
    if (!isinf(hi) && (st = ox_kv_add(c, li, "max", "%s", b))) return st;
    return KILN_OK;
}

/* numpy broadcasting of two activations' ONNX shapes (same rank: kiln's layers keep ranks). */
static kiln_status broadcast(ox_ctx *c, const ox_val *a, const ox_val *b, int64_t *out) {
    if (a->nd != b->nd)
        return ox_err(c, KILN_ERR_INVALID, NULL, "inputs of %d and %d dims", a->nd, b->nd);
    for (int i = 1; i < a->nd; i++) {
        if (a->dims[i] != b->dims[i] && a->dims[i] != 1 && b->dims[i] != 1)
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "input shapes do not broadcast (axis %d: %lld vs %lld)", i,
                          (long long)a->dims[i], (long long)b->dims[i]);
        out[i] = a->dims[i] > b->dims[i] ? a->dims[i] : b->dims[i];
    }
    out[0] = -1;
    return KILN_OK;
}

/* Add of a constant: the bias of the conv/dense before it (tf2onnx's MatMul + Add). */
static kiln_status fold_bias(ox_ctx *c, int x, int k) {
    int L = foldable(c, x);
    ox_layer *ly = L >= 0 ? &c->m->layers[L] : NULL;
    const ox_val *K = &c->vals[k];
    if (!ly || !K->f || ly->nw < 1 || ly->w[0].nd < 2)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "adding a constant is supported only as the bias of the Conv, Gemm or "
                      "MatMul right before it");
    int64_t F = !strcmp(ly->kind, "dense") ? ly->w[0].dims[1] : ly->w[0].dims[0];
    if (!strcmp(ly->kind, "conv2d_transpose")) F = c->vals[x].dims[1];
    /* the constant must vary along the channel axis only */
    const ox_val *X = &c->vals[x];
    int ok = K->n == F || K->n == 1;
    for (int i = 0, j = K->nd - 1; ok && i < K->nd; i++, j--) {
        int axis = X->nd - 1 - (K->nd - 1 - i);
        ok = K->dims[i] == 1 || (axis == 1 && K->dims[i] == F);
        (void)j;
    }
    if (!ok)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "the constant added is not a per-channel bias of %lld values", (long long)F);
    float *bd = malloc((size_t)F * sizeof *bd + 1);
    if (!bd) return nomem();
    for (int64_t j = 0; j < F; j++) bd[j] = K->f[K->n == 1 ? 0 : j];
    int had = -1;
    for (int i = 0; i < ly->nw; i++)
        if (!strcmp(ly->w[i].suffix, "bias")) had = i;
    if (had >= 0) {
        for (int64_t j = 0; j < F; j++) ly->w[had].data[j] += bd[j];
        free(bd);
    } else {
        kv_del(ly, "use_bias");
        kiln_status st = ox_w_add(c, L, "bias", 1, &F, bd);
        if (st) return st;
    }
    return ox_alias(c, 0, x);
}

static kiln_status map_binary(ox_ctx *c, const char *kind) {
    kiln_status st = ox_attrs_only(c, (const char *const[]){NULL});
    if (st) return st;
    if (c->n->n_input != 2) return ox_err(c, KILN_ERR_FORMAT, NULL, "needs two inputs");
    int v[2];
    for (int k = 0; k < 2; k++) {
        v[k] = c->n->input[k] ? ox_find(c, c->n->input[k]) : -1;
        if (v[k] < 0)
            return ox_err(c, KILN_ERR_FORMAT, NULL, "input %d '%.80s' is not defined", k,
                          c->n->input[k] ? c->n->input[k] : "");
    }
    int ca = c->vals[v[0]].is_const, cb = c->vals[v[1]].is_const;
    if (ca && cb)
        return ox_err(c, KILN_ERR_INVALID, NULL, "both inputs are constants (fold them first)");
    if (ca || cb) {
        if (strcmp(kind, "add"))
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "multiplying by a constant tensor is not supported");
        return fold_bias(c, ca ? v[1] : v[0], ca ? v[0] : v[1]);
    }
    for (int k = 0; k < 2 && !st; k++) st = ox_exact(c, v[k], &v[k]);
    int64_t od[OX_MAXD];
    if (!st) st = broadcast(c, &c->vals[v[0]], &c->vals[v[1]], od);
    int li;
    if (!st) st = ox_layer_new(c, kind, v, 2, &li);
    if (st) return st;
    return ox_def_act(c, 0, li, c->vals[v[0]].nd, od, c->vals[v[0]].nd, od);
}

static kiln_status map_concat(ox_ctx *c) {
    kiln_status st = ox_attrs_only(c, (const char *const[]){"axis", NULL});
    int64_t axis;
    if (!st) st = ox_attr_int(c, "axis", INT64_MIN, &axis);
    if (st) return st;
    if (axis == INT64_MIN) return ox_err(c, KILN_ERR_FORMAT, "axis", "is required");
    int n = (int)c->n->n_input, v[OX_MAXIN];
    if (n < 1 || n > OX_MAXIN)
        return ox_err(c, KILN_ERR_INVALID, NULL, "%d inputs (1 to %d)", n, OX_MAXIN);
    for (int k = 0; k < n && !st; k++) {
        st = ox_act_in(c, k, &v[k]);
        if (!st) st = ox_exact(c, v[k], &v[k]);
    }
    if (st) return st;
    const ox_val *a = &c->vals[v[0]];
    int nd = a->nd;
    if (axis < 0) axis += nd;
    if (axis < 1 || axis >= nd)
        return ox_err(c, KILN_ERR_INVALID, "axis", "value %lld: kiln concatenates along a non-batch "
                      "axis", (long long)axis);
    int64_t od[OX_MAXD];
    memcpy(od, a->dims, sizeof od);
    od[axis] = 0;
    for (int k = 0; k < n; k++) {
        const ox_val *b = &c->vals[v[k]];
        for (int i = 1; i < nd; i++)
            if (b->nd != nd || (i != axis && b->dims[i] != a->dims[i]))
                return ox_err(c, KILN_ERR_INVALID, NULL, "input %d does not match input 0's shape",
                              k);
        od[axis] += b->dims[axis];
    }
    if (n == 1) return ox_alias(c, 0, v[0]);
    int li;
    if ((st = ox_layer_new(c, "concat", v, n, &li))) return st;
    if ((st = ox_kv_add(c, li, "axis", "%lld", (long long)axis))) return st;
    return ox_def_act(c, 0, li, nd, od, nd, od);
}

/* ---- pooling ---- */

static kiln_status map_pool(ox_ctx *c, int is_max) {
    static const char *const AM[] = {"kernel_shape", "strides",   "pads",          "auto_pad",
                                     "ceil_mode",    "dilations", "storage_order", NULL};
    static const char *const AA[] = {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode",
                                     "count_include_pad", NULL};
    int x, nk;
    int64_t ks[3], ceil_mode, cip = 0, so = 0;
    kiln_status st = ox_attrs_only(c, is_max ? AM : AA);
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = ox_exact(c, x, &x);
    if (!st) st = ox_attr_ints(c, "kernel_shape", ks, 3, &nk);
    if (!st) st = ox_attr_int(c, "ceil_mode", 0, &ceil_mode);
    if (!st && !is_max) st = ox_attr_int(c, "count_include_pad", 0, &cip);
    if (!st && is_max) st = ox_attr_int(c, "storage_order", 0, &so);
    if (!st) st = only_first_output(c);
    if (st) return st;
    if (so) return ox_err(c, KILN_ERR_INVALID, "storage_order", "value %lld is not supported",
                          (long long)so);
    const ox_val *X = &c->vals[x];
    conv_geo g = {.d = nk};
    if (nk < 1 || nk > 3 || X->nd != nk + 2)
        return ox_err(c, KILN_ERR_INVALID, "kernel_shape",
                      "%d values for an input of %d dims; kiln pools 1, 2 or 3 spatial axes", nk,
                      X->nd);
    for (int i = 0; i < nk; i++) g.k[i] = ks[i];
    int64_t out[3], fl[3];
    if ((st = geometry(c, X, &g, 0, 1, out))) return st;
    memcpy(fl, out, sizeof fl);
    int ceil_differs = 0;
    if (ceil_mode) {
        for (int i = 0; i < nk; i++) {
            int64_t span = X->dims[2 + i] + g.pb[i] + g.pe[i] - g.k[i];
            int64_t o = (span + g.s[i] - 1) / g.s[i] + 1;
            /* PyTorch's rule: the last window must start inside the input or left padding */
            if ((o - 1) * g.s[i] >= X->dims[2 + i] + g.pb[i]) o--;
            if (o != out[i]) ceil_differs = 1, out[i] = o;
        }
    }
    if (cip && strcmp(g.pad_text, "valid"))
        return ox_err(c, KILN_ERR_INVALID, "count_include_pad",
                      "value 1 with padding is not supported (kiln averages the cells inside)");
    int ident = 1;
    for (int i = 0; i < nk; i++) ident = ident && g.k[i] == 1 && g.s[i] == 1;
    if (ident && !strcmp(g.pad_text, "valid")) return ox_alias(c, 0, x);
    char kind[32];
    snprintf(kind, sizeof kind, "%s%dd", is_max ? "maxpool" : "avgpool", nk);
    int li;
    if ((st = ox_layer_new(c, kind, &x, 1, &li))) return st;
    st = kv_ints(c, li, "size", g.k, nk, -1);
    if (!st) st = kv_ints(c, li, "strides", g.s, nk, -1);
    if (!st && strcmp(g.pad_text, "valid")) st = ox_kv_add(c, li, "padding", "%s", g.pad_text);
    if (!st && ceil_differs) st = ox_kv_add(c, li, "ceil_mode", "true");
    if (st) return st;
    X = &c->vals[x];
    int64_t od[OX_MAXD] = {-1, X->dims[1]};
    for (int i = 0; i < nk; i++) od[2 + i] = out[i];
    return ox_def_act(c, 0, li, nk + 2, od, nk + 2, od);
}

static kiln_status map_global_pool(ox_ctx *c, int is_max) {
    int x;
    kiln_status st = ox_attrs_only(c, (const char *const[]){NULL});
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = ox_exact(c, x, &x);
    if (st) return st;
    const ox_val *X = &c->vals[x];
    if (X->nd < 3 || X->nd > 5)
        return ox_err(c, KILN_ERR_INVALID, NULL, "input of %d dims; kiln pools 1 to 3 spatial axes",
                      X->nd);
    char kind[40];
    snprintf(kind, sizeof kind, "global_%s%dd", is_max ? "maxpool" : "avgpool", X->nd - 2);
    int li;
    if ((st = ox_layer_new(c, kind, &x, 1, &li))) return st;
    X = &c->vals[x];
    int64_t od[OX_MAXD] = {-1, X->dims[1], 1, 1, 1}, kd[2] = {-1, X->dims[1]};
    return ox_def_act(c, 0, li, X->nd, od, 2, kd);
}

/* ---- shapes ---- */

static int same_dims(const int64_t *a, int na, const int64_t *b, int nb) {
    if (na != nb) return 0;
    for (int i = 1; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* The output has ONNX shape od: nothing when kiln's shape of x already is it (or it is [B, n]
 * and x is [B, n] in kiln), else a reshape layer. */
static kiln_status reshape_to(ox_ctx *c, int x, const int64_t *od, int nd, const char *kind) {
    const ox_val *X = &c->vals[x];
    if (same_dims(X->kdims, X->knd, od, nd) || (X->layer < 0 && same_dims(X->dims, X->nd, od, nd)))
        return ox_def_act(c, 0, X->layer, nd, od, nd, od);
    int li;
    kiln_status st = ox_layer_new(c, kind, &x, 1, &li);
    if (st) return st;
    if (strcmp(kind, "flatten")) {
        char buf[200];
        ox_fmt_ints(buf, sizeof buf, od + 1, nd - 1, 0);
        if (nd == 2) snprintf(buf, sizeof buf, "[%lld]", (long long)od[1]);
        if ((st = ox_kv_add(c, li, "shape", "%s", buf))) return st;
    }
    return ox_def_act(c, 0, li, nd, od, nd, od);
}

static int64_t row_numel(const ox_val *x) {
    int64_t n = 1;
    for (int i = 1; i < x->nd; i++) n *= x->dims[i];
    return n;
}

static kiln_status map_flatten(ox_ctx *c) {
    int x;
    int64_t axis;
    kiln_status st = ox_attrs_only(c, (const char *const[]){"axis", NULL});
    if (!st) st = ox_attr_int(c, "axis", 1, &axis);
    if (!st) st = ox_act_in(c, 0, &x);
    if (st) return st;
    if (axis < 0) axis += c->vals[x].nd;
    if (axis != 1)
        return ox_err(c, KILN_ERR_INVALID, "axis",
                      "value %lld: kiln flattens everything but the batch (axis 1)",
                      (long long)axis);
    int64_t od[2] = {-1, row_numel(&c->vals[x])};
    return reshape_to(c, x, od, 2, "flatten");
}

static kiln_status map_reshape(ox_ctx *c) {
    int x, s;
    int64_t allowzero;
    kiln_status st = ox_attrs_only(c, (const char *const[]){"allowzero", NULL});
    if (!st) st = ox_attr_int(c, "allowzero", 0, &allowzero);
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = ox_const_in(c, 1, "shape", &s);
    if (st) return st;
    if (s < 0 || !c->vals[s].i64)
        return ox_err(c, KILN_ERR_INVALID, NULL, "the target shape must be an int64 constant");
    const ox_val *S = &c->vals[s], *X = &c->vals[x];
    if (S->n < 1 || S->n > OX_MAXD - 1)
        return ox_err(c, KILN_ERR_INVALID, NULL, "a target shape of %lld dims", (long long)S->n);
    int64_t od[OX_MAXD], known = 1, rows = row_numel(X);
    int minus = -1;
    for (int i = 0; i < S->n; i++) {
        int64_t t = S->i64[i];
        if (t == 0 && !allowzero) {
            if (i >= X->nd) return ox_err(c, KILN_ERR_INVALID, NULL, "0 past the input's dims");
            t = X->dims[i];
        }
        if (t == -1 || (i == 0 && t == X->dims[0])) {
            if (i == 0) {
                od[0] = -1;
                continue;
            }
            if (minus >= 0) return ox_err(c, KILN_ERR_INVALID, NULL, "two -1 in the target shape");
            minus = i;
            continue;
        }
        if (i == 0)
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "the target shape sets the batch to %lld; kiln keeps the batch "
                          "(export with a dynamic batch or use 0 / -1 first)",
                          (long long)t);
        if (t < 1 || t > ((int64_t)1 << 40) || known > ((int64_t)1 << 40) / t)
            return ox_err(c, KILN_ERR_INVALID, NULL, "target dimension %lld", (long long)t);
        od[i] = t, known *= t;
    }
    if (minus >= 0) {
        if (rows % known)
            return ox_err(c, KILN_ERR_INVALID, NULL, "the shape does not divide %lld values",
                          (long long)rows);
        od[minus] = rows / known;
    } else if (known != rows) {
        return ox_err(c, KILN_ERR_INVALID, NULL, "the target shape holds %lld values, a row has %lld",
                      (long long)known, (long long)rows);
    }
    return reshape_to(c, x, od, (int)S->n, "reshape");
}

static kiln_status map_transpose(ox_ctx *c) {
    int x, n;
    int64_t perm[OX_MAXD];
    kiln_status st = ox_attrs_only(c, (const char *const[]){"perm", NULL});
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = ox_attr_ints(c, "perm", perm, OX_MAXD, &n);
    if (st) return st;
    const ox_val *X = &c->vals[x];
    if (n < 0) {
        n = X->nd;
        for (int i = 0; i < n; i++) perm[i] = n - 1 - i;
    }
    if (n != X->nd) return ox_err(c, KILN_ERR_INVALID, "perm", "needs %d values", X->nd);
    int seen[OX_MAXD] = {0}, last = -1;
    int64_t od[OX_MAXD];
    for (int i = 0; i < n; i++) {
        if (perm[i] < 0 || perm[i] >= n || seen[perm[i]]++)
            return ox_err(c, KILN_ERR_FORMAT, "perm", "is not a permutation");
        od[i] = X->dims[perm[i]];
        /* a layout no-op: the batch stays first and the axes longer than 1 keep their order */
        if (perm[i] == 0 ? i != 0 : X->dims[perm[i]] != 1 && perm[i] < last)
            return ox_err(c, KILN_ERR_INVALID, "perm",
                          "moves data (only transposes that keep the memory layout, such as "
                          "moving axes of size 1, are supported)");
        if (perm[i] && X->dims[perm[i]] != 1) last = (int)perm[i];
    }
    od[0] = -1;
    return reshape_to(c, x, od, n, "reshape");
}

/* ---- the rest ---- */

static kiln_status map_softmax(ox_ctx *c) {
    int x;
    int64_t axis;
    kiln_status st = ox_attrs_only(c, (const char *const[]){"axis", NULL});
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = ox_attr_int(c, "axis", c->opset >= 13 ? -1 : 1, &axis);
    if (!st) st = ox_exact(c, x, &x);
    if (st) return st;
    int nd = c->vals[x].nd;
    if (axis < 0) axis += nd;
    if (axis != nd - 1)
        return ox_err(c, KILN_ERR_INVALID, "axis",
                      "value %lld: kiln's softmax is over the last axis (%d)", (long long)axis,
                      nd - 1);
    if (is_last_output(c) && c->vals[x].layer >= 0) {
        snprintf(c->m->dropped, sizeof c->m->dropped, "Softmax");
        return ox_alias(c, 0, x);
    }
    return simple(c, "softmax", NULL);
}

static kiln_status map_dropout(ox_ctx *c) {
    float rate = 0.5f;
    int x;
    kiln_status st = only_first_output(c);
    if (!st && c->opset < 12) {
        st = ox_attrs_only(c, (const char *const[]){"ratio", "is_test", NULL});
        if (!st) st = ox_attr_float(c, "ratio", 0.5f, &rate);
    } else if (!st) {
        int tm;
        st = ox_attrs_only(c, (const char *const[]){"seed", NULL});
        if (!st) st = scalar_in(c, 1, "ratio", 0.5f, &rate);
        if (!st) st = ox_const_in(c, 2, "training_mode", &tm);
        if (!st && tm >= 0 && c->vals[tm].i64 && c->vals[tm].n == 1 && c->vals[tm].i64[0])
            st = ox_err(c, KILN_ERR_INVALID, NULL, "training_mode true is not supported");
    }
    if (!st) st = ox_act_in(c, 0, &x);
    if (st) return st;
    if (!(rate >= 0 && rate < 1))
        return ox_err(c, KILN_ERR_INVALID, "ratio", "value %g is out of [0, 1)", (double)rate);
    if (rate == 0) return ox_alias(c, 0, x);
    int li;
    if ((st = simple(c, "dropout", &li))) return st;
    char r[40];
    ox_fmt_float(r, sizeof r, rate);
    return ox_kv_add(c, li, "rate", "%s", r);
}

/* Pad: only the no-op form (every pad 0), which torch emits before an AveragePool with
 * count_include_pad; kiln has no pad layer, so real padding is refused. */
static kiln_status map_pad(ox_ctx *c) {
    char mode[16];
    int x, pv = -1, cv = -1, av = -1;
    int64_t pads[2 * OX_MAXD];
    int np = 0;
    kiln_status st = only_first_output(c);
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st && c->opset < 11) {
        st = ox_attrs_only(c, (const char *const[]){"mode", "pads", "value", NULL});
        if (!st) st = ox_attr_ints(c, "pads", pads, 2 * OX_MAXD, &np);
        if (!st && np < 0) return ox_err(c, KILN_ERR_FORMAT, "pads", "is missing");
    } else if (!st) {
        st = ox_attrs_only(c, (const char *const[]){"mode", NULL});
        if (!st) st = ox_const_in(c, 1, "pads", &pv);
        if (!st) st = ox_const_in(c, 2, "constant_value", &cv);
        if (!st) st = ox_const_in(c, 3, "axes", &av);
        if (!st && (pv < 0 || !c->vals[pv].i64))
            return ox_err(c, KILN_ERR_INVALID, NULL, "input 1 (pads) must be int64 constants");
        if (!st && av >= 0)
            return ox_err(c, KILN_ERR_INVALID, NULL, "input 3 (axes) is not supported");
        for (int64_t i = 0; !st && i < c->vals[pv].n && i < 2 * OX_MAXD; i++)
            pads[np++] = c->vals[pv].i64[i];
    }
    if (!st) st = ox_attr_str(c, "mode", "constant", mode, sizeof mode);
    if (st) return st;
    (void)cv; /* the value does not matter when nothing is padded */
    for (int i = 0; i < np; i++)
        if (pads[i])
            return ox_err(c, KILN_ERR_INVALID, "pads",
                          "non-zero padding (%lld at %d) is not supported: kiln has no pad "
                          "layer (give the following Conv or pool its pads)",
                          (long long)pads[i], i);
    return ox_alias(c, 0, x);
}

static kiln_status map_constant(ox_ctx *c) {
    if (c->n->n_attribute != 1 || !c->n->attribute[0] || !c->n->attribute[0]->name)
        return ox_err(c, KILN_ERR_FORMAT, NULL, "needs exactly one attribute");
    const Onnx__AttributeProto *a = c->n->attribute[0];
    const char *nm = a->name;
    int64_t one = 1;
    if (!strcmp(nm, "value")) {
        if (!a->t) return ox_err(c, KILN_ERR_FORMAT, nm, "has no tensor");
        int v;
        /* read under the output's name */
        Onnx__TensorProto t = *a->t;
        t.name = c->n->n_output ? c->n->output[0] : NULL;
        if (!t.name || !t.name[0]) return ox_err(c, KILN_ERR_FORMAT, NULL, "output 0 is missing");
        return ox_const_from_attr(c, &t, &v);
    }
    if (!strcmp(nm, "value_float")) {
        float *f = malloc(sizeof *f);
        if (!f) return nomem();
        *f = a->f;
        return ox_def_const(c, 0, 0, &one, f, NULL, 1);
    }
    if (!strcmp(nm, "value_int")) {
        int64_t *i = malloc(sizeof *i);
        if (!i) return nomem();
        *i = a->i;
        return ox_def_const(c, 0, 0, &one, NULL, i, 1);
    }
    if (!strcmp(nm, "value_floats") || !strcmp(nm, "value_ints")) {
        int64_t n = nm[6] == 'f' ? (int64_t)a->n_floats : (int64_t)a->n_ints;
        float *f = nm[6] == 'f' ? copy_f(a->floats, n) : NULL;
        int64_t *i = nm[6] == 'i' ? malloc((size_t)n * sizeof *i + 1) : NULL;
        if (!f && !i) return nomem();
        if (i && n) memcpy(i, a->ints, (size_t)n * sizeof *i);
        return ox_def_const(c, 0, 1, &n, f, i, n);
    }
    return ox_err(c, KILN_ERR_INVALID, nm, "is not supported by kiln's import");
}

static kiln_status map_resize(ox_ctx *c, int upsample) {
    static const char *const AR[] = {"mode", "coordinate_transformation_mode", "nearest_mode",
                                     "cubic_coeff_a", "exclude_outside", "extrapolation_value",
                                     "antialias", "keep_aspect_ratio_policy", NULL};
    static const char *const AU[] = {"mode", "scales", NULL};
    int x, sc = -1, sz = -1;
    char mode[32], ctm[40], nm[40], karp[40];
    int64_t antialias = 0, excl = 0;
    kiln_status st = ox_attrs_only(c, upsample ? AU : AR);
    if (!st) st = ox_act_in(c, 0, &x);
    if (!st) st = ox_exact(c, x, &x);
    if (!st) st = ox_attr_str(c, "mode", "nearest", mode, sizeof mode);
    if (!st) st = ox_attr_str(c, "coordinate_transformation_mode", "half_pixel", ctm, sizeof ctm);
    if (!st) st = ox_attr_str(c, "nearest_mode", "round_prefer_floor", nm, sizeof nm);
    if (!st) st = ox_attr_str(c, "keep_aspect_ratio_policy", "stretch", karp, sizeof karp);
    if (!st) st = ox_attr_int(c, "antialias", 0, &antialias);
    if (!st) st = ox_attr_int(c, "exclude_outside", 0, &excl);
    if (st) return st;
    const ox_val *X = &c->vals[x];
    int nd = X->nd, d = nd - 2;
    float scales[OX_MAXD];
    int64_t od[OX_MAXD];
    if (upsample && c->opset < 9) {
        float s[OX_MAXD];
        const Onnx__AttributeProto *a = ox_attr(c, "scales");
        if (!a || a->n_floats != (size_t)nd)
            return ox_err(c, KILN_ERR_INVALID, "scales", "needs %d values", nd);
        for (int i = 0; i < nd; i++) s[i] = a->floats[i];
        memcpy(scales, s, sizeof s);
    } else {
        int ks = upsample || c->opset < 11 ? 1 : 2;
        st = ox_const_in(c, ks, "scales", &sc);
        if (!st && !upsample && c->opset >= 11) st = ox_const_in(c, 3, "sizes", &sz);
        if (st) return st;
        if (sc >= 0 && c->vals[sc].n == 0) sc = -1;
        if (sz >= 0 && sz < c->nv && c->vals[sz].i64 && c->vals[sz].n == nd) {
            for (int i = 0; i < nd; i++)
                scales[i] = i == 0 ? 1 : (float)c->vals[sz].i64[i] / (float)X->dims[i];
        } else if (sc >= 0 && c->vals[sc].f && c->vals[sc].n == nd) {
            for (int i = 0; i < nd; i++) scales[i] = c->vals[sc].f[i];
        } else {
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "needs constant scales or sizes with one value per axis (%d)", nd);
        }
    }
    if (d < 1 || d > 3 || scales[1] != 1)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "resizes the batch or channels, or an input of %d dims", nd);
    int64_t s[3];
    for (int i = 0; i < d; i++) {
        float f = scales[2 + i];
        if (!(f >= 1 && f <= 64) || f != floorf(f))
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "scale %g on axis %d: kiln upsamples by whole factors only", (double)f,
                          2 + i);
        s[i] = (int64_t)f;
    }
    const char *interp;
    if (!strcmp(mode, "nearest")) {
        int ok = !strcmp(ctm, "half_pixel") || !strcmp(ctm, "pytorch_half_pixel") ||
                 ((!strcmp(ctm, "asymmetric") || !strcmp(ctm, "tf_half_pixel_for_nn")) &&
                  !strcmp(nm, "floor")) ||
                 upsample;
        if (!ok && strcmp(ctm, "half_pixel") && strcmp(ctm, "pytorch_half_pixel"))
            return ox_err(c, KILN_ERR_INVALID, "coordinate_transformation_mode",
                          "value %s with nearest_mode %s does not repeat pixels", ctm, nm);
        if (!ok)
            return ox_err(c, KILN_ERR_INVALID, "nearest_mode", "value %s is not supported", nm);
        interp = "nearest";
    } else if (!strcmp(mode, "linear") || !strcmp(mode, "bilinear")) {
        if (!upsample && strcmp(ctm, "half_pixel") && strcmp(ctm, "pytorch_half_pixel"))
            return ox_err(c, KILN_ERR_INVALID, "coordinate_transformation_mode",
                          "value %s: kiln's bilinear uses half-pixel centers", ctm);
        if (upsample)
            return ox_err(c, KILN_ERR_INVALID, "mode",
                          "linear Upsample (asymmetric coordinates) is not supported");
        interp = d == 1 ? "linear" : d == 2 ? "bilinear" : "trilinear";
    } else {
        return ox_err(c, KILN_ERR_INVALID, "mode", "value %s is not supported", mode);
    }
    if (antialias && strcmp(interp, "nearest"))
        return ox_err(c, KILN_ERR_INVALID, "antialias", "value 1 is not supported");
    if (strcmp(karp, "stretch"))
        return ox_err(c, KILN_ERR_INVALID, "keep_aspect_ratio_policy", "value %s is not supported",
                      karp);
    char kind[32];
    snprintf(kind, sizeof kind, "upsampling%dd", d);
    int li;
    if ((st = ox_layer_new(c, kind, &x, 1, &li))) return st;
    if ((st = kv_ints(c, li, "size", s, d, -1))) return st;
    if ((st = ox_kv_add(c, li, "interpolation", "%s", interp))) return st;
    X = &c->vals[x];
    memcpy(od, X->dims, sizeof od);
    for (int i = 0; i < d; i++) od[2 + i] = X->dims[2 + i] * s[i];
    return ox_def_act(c, 0, li, nd, od, nd, od);
}

static kiln_status map_hard_sigmoid(ox_ctx *c) {
    float a, b;
    kiln_status st = ox_attrs_only(c, (const char *const[]){"alpha", "beta", NULL});
    if (!st) st = ox_attr_float(c, "alpha", 0.2f, &a);
    if (!st) st = ox_attr_float(c, "beta", 0.5f, &b);
    if (st) return st;
    if (fabsf(a - 1.0f / 6) > 1e-6f)
        return ox_err(c, KILN_ERR_INVALID, "alpha",
                      "value %g: kiln's hard_sigmoid is relu6(x + 3) / 6 (alpha 1/6)", (double)a);
    if (b != 0.5f)
        return ox_err(c, KILN_ERR_INVALID, "beta", "value %g: kiln's hard_sigmoid has beta 0.5",
                      (double)b);
    return act_layer(c, "hard_sigmoid");
}

static kiln_status map_leaky(ox_ctx *c) {
    float a;
    int li;
    kiln_status st = ox_attrs_only(c, (const char *const[]){"alpha", NULL});
    if (!st) st = ox_attr_float(c, "alpha", 0.01f, &a);
    if (!st && !(a >= 0 && a <= 1e6))
        st = ox_err(c, KILN_ERR_INVALID, "alpha", "value %g is out of range", (double)a);
    if (!st) st = simple(c, "leaky_relu", &li);
    if (st) return st;
    char t[40];
    ox_fmt_float(t, sizeof t, a);
    return ox_kv_add(c, li, "alpha", "%s", t);
}

static kiln_status plain(ox_ctx *c, const char *kind) {
    kiln_status st = ox_attrs_only(c, (const char *const[]){NULL});
    return st ? st : simple(c, kind, NULL);
}

kiln_status ox_map_node(ox_ctx *c) {
    const char *o = op(c);
    if (!strcmp(o, "Conv")) return map_conv(c, 0);
    if (!strcmp(o, "ConvTranspose")) return map_conv(c, 1);
    if (!strcmp(o, "Gemm")) return map_gemm(c);
    if (!strcmp(o, "MatMul")) return map_matmul(c);
    if (!strcmp(o, "BatchNormalization")) return map_bn(c);
    if (!strcmp(o, "Relu")) {
        kiln_status st = ox_attrs_only(c, (const char *const[]){NULL});
        return st ? st : act_layer(c, "relu");
    }
    if (!strcmp(o, "Clip")) return map_clip(c);
    if (!strcmp(o, "LeakyRelu")) return map_leaky(c);
    if (!strcmp(o, "Sigmoid")) {
        int x;
        kiln_status st = ox_attrs_only(c, (const char *const[]){NULL});
        if (!st && is_last_output(c) && !(st = ox_act_in(c, 0, &x)) && c->vals[x].layer >= 0) {
            snprintf(c->m->dropped, sizeof c->m->dropped, "Sigmoid");
            return ox_alias(c, 0, x);
        }
        return st ? st : simple(c, "sigmoid", NULL);
    }
    if (!strcmp(o, "Tanh")) return plain(c, "tanh");
    if (!strcmp(o, "HardSwish")) {
        kiln_status st = ox_attrs_only(c, (const char *const[]){NULL});
        return st ? st : act_layer(c, "hard_swish");
    }
    if (!strcmp(o, "HardSigmoid")) return map_hard_sigmoid(c);
    if (!strcmp(o, "Add")) return map_binary(c, "add");
    if (!strcmp(o, "Mul")) return map_binary(c, "multiply");
    if (!strcmp(o, "Concat")) return map_concat(c);
    if (!strcmp(o, "MaxPool")) return map_pool(c, 1);
    if (!strcmp(o, "AveragePool")) return map_pool(c, 0);
    if (!strcmp(o, "GlobalAveragePool")) return map_global_pool(c, 0);
    if (!strcmp(o, "GlobalMaxPool")) return map_global_pool(c, 1);
    if (!strcmp(o, "Flatten")) return map_flatten(c);
    if (!strcmp(o, "Reshape")) return map_reshape(c);
    if (!strcmp(o, "Transpose")) return map_transpose(c);
    if (!strcmp(o, "Softmax")) return map_softmax(c);
    if (!strcmp(o, "Dropout")) return map_dropout(c);
    if (!strcmp(o, "Identity")) {
        int v = c->n->n_input && c->n->input[0] ? ox_find(c, c->n->input[0]) : -1;
        if (v < 0) return ox_err(c, KILN_ERR_FORMAT, NULL, "input 0 is not defined");
        return ox_alias(c, 0, v);
    }
    if (!strcmp(o, "Constant")) return map_constant(c);
    if (!strcmp(o, "Pad")) return map_pad(c);
    if (!strcmp(o, "Resize")) return map_resize(c, 0);
    if (!strcmp(o, "Upsample")) return map_resize(c, 1);
    return ox_err(c, KILN_ERR_INVALID, NULL,
                  "op '%.40s' is not supported by kiln's import (docs/models.md lists the ops)", o);
}

void ox_free_layer(ox_layer *L) {
    free(L->name);
    for (int i = 0; i < L->nkv; i++) free(L->kv[i].text);
    for (int i = 0; i < L->nw; i++) free(L->w[i].data);
}

/* onnx_import.c — reading an ONNX model for kiln (kiln/onnx.h): the protobuf, its values and
 * the walk over its nodes, plus the helpers every op mapping uses (onnx_import_ops.c).
 *
 * Design: the protobuf is unpacked with protobuf-c (which checks the wire format: a malformed
 * message is refused there). Everything after that is checked field by field before use:
 * initializers must be FLOAT (weights) or INT64 (shapes, axes) with data matching their dims
 * (raw_data or the typed field), the one model input must be FLOAT with a fixed shape apart from
 * the batch, node inputs must name values defined earlier (ONNX graphs are topologically
 * sorted), and an op's attributes must be ones its mapping knows. The walk appends layers in
 * node order, so the config's from: lists only name earlier layers.
 *
 * Names: a layer's name is its node's name made readable: torch's "/layer1/layer1.0/conv1/Conv"
 * loses the trailing op type and the repeated module prefixes ("layer1" before "layer1.0"),
 * and dots become '/': "layer1/0/conv1" — so the parameter "layer1/0/conv1.kernel" is torch's
 * "layer1.0.conv1.weight" under the agreed torchvision convention. Other characters than
 * [A-Za-z0-9_/-] become '_'; an empty or taken name gets "<op>_<node index>".
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/onnx_import_internal.h"

#define OX_MAX_NAME 60 /* kiln node names hold 63 characters and leave room for suffixes */

/* ---- messages ---- */

kiln_status ox_err(ox_ctx *c, kiln_status st, const char *attr, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const Onnx__NodeProto *n = c->n;
    if (!n) return kiln_error(st, "%s: %s", c->label, msg);
    if (attr)
        return kiln_error(st, "%s: node %d '%.80s' (%.40s): attribute '%s': %s", c->label, c->ni,
                          n->name ? n->name : "", n->op_type ? n->op_type : "?", attr, msg);
    return kiln_error(st, "%s: node %d '%.80s' (%.40s): %s", c->label, c->ni,
                      n->name ? n->name : "", n->op_type ? n->op_type : "?", msg);
}

/* ---- values ---- */

int ox_find(ox_ctx *c, const char *name) {
    for (int i = c->nv - 1; i >= 0; i--)
        if (!strcmp(c->vals[i].name, name)) return i;
    return -1;
}

static kiln_status val_new(ox_ctx *c, const char *name, int *out) {
    if (!name || !name[0]) return ox_err(c, KILN_ERR_FORMAT, NULL, "a value without a name");
    if (ox_find(c, name) >= 0)
        return ox_err(c, KILN_ERR_FORMAT, NULL, "value '%.80s' is defined twice", name);
    if (c->nv == c->capv) {
        int cap = c->capv ? 2 * c->capv : 64;
        ox_val *v = realloc(c->vals, (size_t)cap * sizeof *v);
        if (!v) return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
        c->vals = v, c->capv = cap;
    }
    memset(&c->vals[c->nv], 0, sizeof c->vals[c->nv]);
    c->vals[c->nv].name = name;
    *out = c->nv++;
    return KILN_OK;
}

kiln_status ox_act_in(ox_ctx *c, int k, int *v) {
    if (k >= (int)c->n->n_input || !c->n->input[k] || !c->n->input[k][0])
        return ox_err(c, KILN_ERR_FORMAT, NULL, "input %d is missing", k);
    int i = ox_find(c, c->n->input[k]);
    if (i < 0)
        return ox_err(c, KILN_ERR_FORMAT, NULL, "input %d '%.80s' is not defined before the node",
                      k, c->n->input[k]);
    if (c->vals[i].is_const)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "input %d '%.80s' is a constant; kiln needs the data flowing through here", k,
                      c->n->input[k]);
    *v = i;
    return KILN_OK;
}

kiln_status ox_const_in(ox_ctx *c, int k, const char *what, int *v) {
    *v = -1;
    if (k >= (int)c->n->n_input || !c->n->input[k] || !c->n->input[k][0]) return KILN_OK;
    int i = ox_find(c, c->n->input[k]);
    if (i < 0)
        return ox_err(c, KILN_ERR_FORMAT, NULL,
                      "input %d (%s) '%.80s' is missing: no initializer or earlier node makes it",
                      k, what, c->n->input[k]);
    if (!c->vals[i].is_const)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "input %d (%s) '%.80s' is computed; kiln needs a constant (initializer) here",
                      k, what, c->n->input[k]);
    *v = i;
    return KILN_OK;
}

/* ---- attributes ---- */

const Onnx__AttributeProto *ox_attr(ox_ctx *c, const char *name) {
    for (size_t i = 0; i < c->n->n_attribute; i++) {
        const Onnx__AttributeProto *a = c->n->attribute[i];
        if (a && a->name && !strcmp(a->name, name)) return a;
    }
    return NULL;
}

/* The attribute called name into *a (NULL when the node has none), checked to be of type want
 * (what names the type in the error). */
static kiln_status attr_typed(ox_ctx *c, const char *name, int want, const char *what,
                              const Onnx__AttributeProto **out) {
    const Onnx__AttributeProto *a = *out = ox_attr(c, name);
    if (!a) return KILN_OK;
    if (a->ref_attr_name)
        return ox_err(c, KILN_ERR_INVALID, a->name, "references a function attribute");
    if (a->has_type && (int)a->type != want && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED)
        return ox_err(c, KILN_ERR_FORMAT, a->name, "expected %s (attribute type %d), got type %d",
                      what, want, (int)a->type);
    return KILN_OK;
}

kiln_status ox_attr_int(ox_ctx *c, const char *name, int64_t def, int64_t *out) {
    const Onnx__AttributeProto *a;
    *out = def;
    kiln_status st = attr_typed(c, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, "an int", &a);
    if (!st && a) *out = a->i;
    return st;
}

kiln_status ox_attr_float(ox_ctx *c, const char *name, float def, float *out) {
    const Onnx__AttributeProto *a;
    *out = def;
    kiln_status st =
        attr_typed(c, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, "a float", &a);
    if (!st && a) *out = a->f;
    return st;
}

kiln_status ox_attr_ints(ox_ctx *c, const char *name, int64_t *out, int max, int *n) {
    const Onnx__AttributeProto *a;
    *n = -1;
    kiln_status st = attr_typed(c, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, "ints", &a);
    if (st || !a) return st;
    if (a->n_ints > (size_t)max)
        return ox_err(c, KILN_ERR_INVALID, name, "%zu values; at most %d are supported", a->n_ints,
                      max);
    for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
    *n = (int)a->n_ints;
    return KILN_OK;
}

kiln_status ox_attr_str(ox_ctx *c, const char *name, const char *def, char *out, size_t cap) {
    const Onnx__AttributeProto *a;
    snprintf(out, cap, "%s", def);
    kiln_status st =
        attr_typed(c, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING, "a string", &a);
    if (st || !a) return st;
    if (!a->has_s || a->s.len >= cap || memchr(a->s.data, 0, a->s.len))
        return ox_err(c, KILN_ERR_INVALID, name, "not a short string");
    memcpy(out, a->s.data, a->s.len);
    out[a->s.len] = 0;
    return KILN_OK;
}

kiln_status ox_attrs_only(ox_ctx *c, const char *const *allowed) {
    for (size_t i = 0; i < c->n->n_attribute; i++) {
        const Onnx__AttributeProto *a = c->n->attribute[i];
        const char *nm = a && a->name ? a->name : "";
        int ok = 0;
        for (int k = 0; allowed[k] && !ok; k++) ok = !strcmp(allowed[k], nm);
        if (!ok) return ox_err(c, KILN_ERR_INVALID, nm, "is not supported by kiln's import");
    }
    return KILN_OK;
}

/* ---- formatting ---- */

void ox_fmt_float(char *buf, size_t cap, float x) {
    if (isinf(x)) {
        snprintf(buf, cap, "%s", x > 0 ? ".inf" : "-.inf");
        return;
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, cap, "%.*g", p, (double)x);
        if ((float)strtod(buf, NULL) == x) break;
    }
    /* YAML reads "1e-05" as a string under the core schema's float rule without a dot */
    if (strchr(buf, 'e') && !strchr(buf, '.')) {
        char m[40], *e = strchr(buf, 'e');
        snprintf(m, sizeof m, "%.*s.0%s", (int)(e - buf), buf, e);
        snprintf(buf, cap, "%s", m);
    }
}

void ox_fmt_ints(char *buf, size_t cap, const int64_t *v, int n, int one_if_same) {
    int same = 1;
    for (int i = 1; i < n; i++) same = same && v[i] == v[0];
    if (n == 1 || (one_if_same && same && n > 0)) {
        snprintf(buf, cap, "%lld", (long long)v[0]);
        return;
    }
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)v[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* ---- layers ---- */

static int name_taken(const kiln_onnx_model *m, const char *s) {
    static const char *const reserved[] = {"input", "labels", "targets", "soft_labels", NULL};
    for (int i = 0; reserved[i]; i++)
        if (!strcmp(s, reserved[i])) return 1;
    for (int i = 0; i < m->nl; i++)
        if (!strcmp(m->layers[i].name, s)) return 1;
    return 0;
}

/* The readable name of the current node (see the top of the file). */
static void layer_name(ox_ctx *c, const char *kind, char *out, size_t cap) {
    const char *raw = c->n->name ? c->n->name : "";
    char comp[16][64];
    int nc = 0;
    for (const char *p = raw; *p && nc < 16;) {
        while (*p == '/') p++;
        size_t len = strcspn(p, "/");
        if (len && len < 64) memcpy(comp[nc], p, len), comp[nc++][len] = 0;
        p += len;
    }
    const char *op = c->n->op_type ? c->n->op_type : "";
    if (nc > 0 && (!strcmp(comp[nc - 1], op) || (!strncmp(comp[nc - 1], op, strlen(op)) &&
                                                  comp[nc - 1][strlen(op)] == '_')))
        nc--; /* "/fc/Gemm", "Conv_0" */
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < nc; i++) {
        size_t l = strlen(comp[i]);
        if (i + 1 < nc && !strncmp(comp[i + 1], comp[i], l) && comp[i + 1][l] == '.') continue;
        for (const char *s = comp[i]; *s && o + 2 < cap && o < OX_MAX_NAME; s++) {
            char ch = *s;
            if (ch == '.') ch = '/';
            else if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                       (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
                ch = '_';
            out[o++] = ch;
        }
        if (i + 1 < nc && o + 2 < cap && o < OX_MAX_NAME) out[o++] = '/';
        out[o] = 0;
    }
    while (o > 0 && out[o - 1] == '/') out[--o] = 0;
    if (!o || name_taken(c->m, out)) {
        char base[80];
        snprintf(base, sizeof base, "%.*s%s%s", (int)o, out, o ? "/" : "", kind);
        snprintf(out, cap, "%s", base);
        for (int k = 1; name_taken(c->m, out); k++) snprintf(out, cap, "%s_%d", base, k);
    }
}

kiln_status ox_layer_new(ox_ctx *c, const char *kind, const int *in_vals, int n_in, int *li) {
    kiln_onnx_model *m = c->m;
    if (n_in > OX_MAXIN)
        return ox_err(c, KILN_ERR_INVALID, NULL, "%d inputs; at most %d are supported", n_in,
                      OX_MAXIN);
    if (m->nl == m->capl) {
        int cap = m->capl ? 2 * m->capl : 32;
        ox_layer *l = realloc(m->layers, (size_t)cap * sizeof *l);
        if (!l) return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
        m->layers = l, m->capl = cap;
    }
    ox_layer *L = &m->layers[m->nl];
    memset(L, 0, sizeof *L);
    snprintf(L->kind, sizeof L->kind, "%s", kind);
    char nm[128];
    layer_name(c, kind, nm, sizeof nm);
    if (!(L->name = strdup(nm))) return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
    for (int i = 0; i < n_in; i++) L->from[i] = c->vals[in_vals[i]].layer;
    L->nfrom = n_in;
    L->out_val = -1;
    L->node = c->ni;
    *li = m->nl++;
    return KILN_OK;
}

kiln_status ox_kv_add(ox_ctx *c, int li, const char *key, const char *fmt, ...) {
    ox_layer *L = &c->m->layers[li];
    if (L->nkv == OX_MAXKV) return ox_err(c, KILN_ERR_INVALID, NULL, "too many layer keys");
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ox_kv *kv = &L->kv[L->nkv];
    snprintf(kv->key, sizeof kv->key, "%s", key);
    if (!(kv->text = strdup(buf))) return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
    L->nkv++;
    return KILN_OK;
}

const char *ox_kv_get(const ox_layer *L, const char *key) {
    for (int i = 0; i < L->nkv; i++)
        if (!strcmp(L->kv[i].key, key)) return L->kv[i].text;
    return NULL;
}

kiln_status ox_w_add(ox_ctx *c, int li, const char *suffix, int nd, const int64_t *dims,
                     float *data) {
    ox_layer *L = &c->m->layers[li];
    if (L->nw == OX_MAXW || nd > OX_MAXD) {
        free(data);
        return ox_err(c, KILN_ERR_INVALID, NULL, "too many parameters");
    }
    ox_w *w = &L->w[L->nw++];
    snprintf(w->suffix, sizeof w->suffix, "%s", suffix);
    w->nd = nd;
    memcpy(w->dims, dims, (size_t)nd * sizeof *dims);
    w->data = data;
    return KILN_OK;
}

static kiln_status out_name(ox_ctx *c, int k, const char **name) {
    if (k >= (int)c->n->n_output || !c->n->output[k] || !c->n->output[k][0])
        return ox_err(c, KILN_ERR_FORMAT, NULL, "output %d is missing", k);
    *name = c->n->output[k];
    return KILN_OK;
}

kiln_status ox_def_act(ox_ctx *c, int k, int li, int nd, const int64_t *dims, int knd,
                       const int64_t *kdims) {
    const char *name;
    int v;
    kiln_status st = out_name(c, k, &name);
    if (!st) st = val_new(c, name, &v);
    if (st) return st;
    for (int i = 0; i < nd; i++)
        if (i > 0 && (dims[i] < 1 || dims[i] > ((int64_t)1 << 40)))
            return ox_err(c, KILN_ERR_INVALID, NULL, "output %d would have dimension %d = %lld", k,
                          i, (long long)dims[i]);
    ox_val *x = &c->vals[v];
    x->layer = li, x->nd = nd, x->knd = knd;
    memcpy(x->dims, dims, (size_t)nd * sizeof *dims);
    memcpy(x->kdims, kdims, (size_t)knd * sizeof *kdims);
    x->dims[0] = x->kdims[0] = -1;
    if (li >= 0) c->m->layers[li].out_val = v;
    return KILN_OK;
}

kiln_status ox_alias(ox_ctx *c, int k, int v) {
    const char *name;
    int w;
    kiln_status st = out_name(c, k, &name);
    if (!st) st = val_new(c, name, &w);
    if (st) return st;
    ox_val keep = c->vals[v];
    keep.name = name;
    keep.uses = 0;
    if (keep.is_const) { /* constants are copied: each value owns its data */
        size_t bytes = (size_t)keep.n * (keep.f ? sizeof(float) : sizeof(int64_t));
        void *d = malloc(bytes ? bytes : 1);
        if (!d) return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
        memcpy(d, keep.f ? (void *)keep.f : (void *)keep.i64, bytes);
        if (keep.f) keep.f = d;
        else keep.i64 = d;
    }
    c->vals[w] = keep;
    /* a fused activation or alias of a layer's output stands for that output */
    if (!keep.is_const && keep.layer >= 0 && c->m->layers[keep.layer].out_val == v)
        c->m->layers[keep.layer].out_val = w;
    return KILN_OK;
}

kiln_status ox_def_const(ox_ctx *c, int k, int nd, const int64_t *dims, float *f, int64_t *i64,
                         int64_t n) {
    const char *name;
    int v;
    kiln_status st = out_name(c, k, &name);
    if (!st) st = val_new(c, name, &v);
    if (st) {
        free(f), free(i64);
        return st;
    }
    ox_val *x = &c->vals[v];
    x->is_const = 1, x->nd = nd, x->f = f, x->i64 = i64, x->n = n;
    memcpy(x->dims, dims, (size_t)nd * sizeof *dims);
    return KILN_OK;
}

kiln_status ox_exact(ox_ctx *c, int v, int *out) {
    ox_val *x = &c->vals[v];
    int same = x->nd == x->knd;
    for (int i = 1; same && i < x->nd; i++) same = x->dims[i] == x->kdims[i];
    *out = v;
    if (same) return KILN_OK;
    int li;
    kiln_status st = ox_layer_new(c, "reshape", &v, 1, &li);
    if (st) return st;
    char buf[200];
    /* named after the layer it reshapes, so the node's own name stays for the node's layer */
    int pl = x->layer;
    char base[160];
    snprintf(base, sizeof base, "%.120s/reshape", pl >= 0 ? c->m->layers[pl].name : "input");
    snprintf(buf, sizeof buf, "%s", base);
    for (int k = 1; name_taken(c->m, buf); k++) snprintf(buf, sizeof buf, "%s_%d", base, k);
    char *nm = strdup(buf);
    if (!nm) return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
    free(c->m->layers[li].name);
    c->m->layers[li].name = nm;
    ox_fmt_ints(buf, sizeof buf, x->dims + 1, x->nd - 1, 0);
    if (x->nd == 2) snprintf(buf, sizeof buf, "[%lld]", (long long)x->dims[1]);
    if ((st = ox_kv_add(c, li, "shape", "%s", buf))) return st;
    /* an unnamed value standing for the reshaped one */
    if (c->nv == c->capv) {
        int cap = 2 * c->capv;
        ox_val *nv = realloc(c->vals, (size_t)cap * sizeof *nv);
        if (!nv) return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
        c->vals = nv, c->capv = cap;
    }
    x = &c->vals[v];
    ox_val r = *x;
    r.name = "";
    r.layer = li;
    r.knd = r.nd;
    memcpy(r.kdims, r.dims, sizeof r.dims);
    r.uses = 1;
    c->vals[c->nv] = r;
    c->m->layers[li].out_val = c->nv;
    *out = c->nv++;
    return KILN_OK;
}

/* ---- tensors ---- */

static kiln_status tensor_read(ox_ctx *c, const Onnx__TensorProto *t, const char *where, int *v) {
    const char *nm = t->name ? t->name : "";
    if (t->n_dims > OX_MAXD)
        return ox_err(c, KILN_ERR_FORMAT, NULL, "%s '%.80s' has %zu dims (at most %d)", where, nm,
                      t->n_dims, OX_MAXD);
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return ox_err(c, KILN_ERR_FORMAT, NULL,
                      "%s '%.80s' keeps its data in an external file, which kiln does not read; "
                      "save the model with its weights inside (onnx.save(model, "
                      "save_as_external_data=False))",
                      where, nm);
    int64_t numel = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0 || (t->dims[i] > 0 && numel > ((int64_t)1 << 40) / t->dims[i]))
            return ox_err(c, KILN_ERR_FORMAT, NULL, "%s '%.80s' has a bad dimension %lld", where,
                          nm, (long long)t->dims[i]);
        numel *= t->dims[i];
    }
    int dt = t->has_data_type ? t->data_type : 0;
    if (dt != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && dt != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 &&
        dt != ONNX__TENSOR_PROTO__DATA_TYPE__INT32 && dt != ONNX__TENSOR_PROTO__DATA_TYPE__BOOL)
        return ox_err(c, KILN_ERR_FORMAT, NULL,
                      "%s '%.80s' has data type %d; kiln imports float32 weights (and int64 "
                      "shapes) only",
                      where, nm, dt);
    int is_f = dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    int is_b = dt == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL; /* Dropout's training_mode */
    size_t esz = dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : is_b ? 1 : 4;
    size_t have = t->has_raw_data ? t->raw_data.len / esz
                  : is_f         ? t->n_float_data
                  : esz == 8     ? t->n_int64_data
                                 : t->n_int32_data;
    if ((t->has_raw_data && t->raw_data.len != (size_t)numel * esz) || have != (size_t)numel)
        return ox_err(c, KILN_ERR_FORMAT, NULL,
                      "%s '%.80s' has %zu values of data for %lld elements", where, nm, have,
                      (long long)numel);
    float *f = NULL;
    int64_t *i64 = NULL;
    if (is_f) {
        f = malloc((size_t)numel * sizeof *f + 1);
        if (f && t->has_raw_data) memcpy(f, t->raw_data.data, (size_t)numel * 4);
        else if (f) memcpy(f, t->float_data, (size_t)numel * 4);
    } else {
        i64 = malloc((size_t)numel * sizeof *i64 + 1);
        for (int64_t i = 0; i64 && i < numel; i++) {
            if (t->has_raw_data && esz == 8) memcpy(&i64[i], t->raw_data.data + 8 * i, 8);
            else if (t->has_raw_data && is_b) i64[i] = t->raw_data.data[i] != 0;
            else if (t->has_raw_data) {
                int32_t x;
                memcpy(&x, t->raw_data.data + 4 * i, 4);
                i64[i] = x;
            } else i64[i] = esz == 8 ? t->int64_data[i] : t->int32_data[i];
        }
    }
    if (!f && !i64) return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
    kiln_status st = val_new(c, nm, v);
    if (st) return free(f), free(i64), st;
    ox_val *x = &c->vals[*v];
    x->is_const = 1, x->f = f, x->i64 = i64, x->n = numel, x->nd = (int)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) x->dims[i] = t->dims[i];
    return KILN_OK;
}

kiln_status ox_const_from_attr(ox_ctx *c, const Onnx__TensorProto *t, int *v) {
    return tensor_read(c, t, "Constant value", v);
}

/* ---- the model ---- */

static kiln_status read_input(ox_ctx *c, const Onnx__GraphProto *g) {
    int found = -1;
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        if (!vi || !vi->name) return ox_err(c, KILN_ERR_FORMAT, NULL, "graph input %zu has no name", i);
        if (ox_find(c, vi->name) >= 0) continue; /* an initializer listed as an input */
        if (found >= 0)
            return ox_err(c, KILN_ERR_INVALID, NULL,
                          "the graph has several inputs ('%.60s', '%.60s'); kiln models take one",
                          g->input[found]->name, vi->name);
        found = (int)i;
    }
    if (found < 0) return ox_err(c, KILN_ERR_FORMAT, NULL, "the graph has no input");
    const Onnx__ValueInfoProto *vi = g->input[found];
    const Onnx__TypeProto__Tensor *tt =
        vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE
            ? vi->type->tensor_type
            : NULL;
    if (!tt || !tt->has_elem_type || tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return ox_err(c, KILN_ERR_FORMAT, NULL, "input '%.80s' is not a float32 tensor", vi->name);
    if (!tt->shape || tt->shape->n_dim < 2 || tt->shape->n_dim > OX_MAXD - 1)
        return ox_err(c, KILN_ERR_FORMAT, NULL,
                      "input '%.80s' needs a shape [batch, ...] of 2 to %d dims", vi->name,
                      OX_MAXD - 1);
    int v;
    kiln_status st = val_new(c, vi->name, &v);
    if (st) return st;
    ox_val *x = &c->vals[v];
    x->layer = -1, x->nd = x->knd = (int)tt->shape->n_dim;
    x->dims[0] = x->kdims[0] = -1;
    for (int i = 1; i < x->nd; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        if (!d || d->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
            d->dim_value < 1 || d->dim_value > ((int64_t)1 << 30))
            return ox_err(c, KILN_ERR_FORMAT, NULL,
                          "input '%.80s' dimension %d is dynamic ('%.40s') or not positive; "
                          "only the batch (dimension 0) may be; export with a fixed input size",
                          vi->name, i,
                          d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                              ? d->dim_param
                              : "?");
        x->dims[i] = x->kdims[i] = d->dim_value;
    }
    c->m->in_nd = x->nd - 1;
    memcpy(c->m->in_dims, x->dims + 1, (size_t)(x->nd - 1) * sizeof(int64_t));
    c->m->input_name = strdup(vi->name);
    return c->m->input_name ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
}

static kiln_status convert(ox_ctx *c) {
    const Onnx__ModelProto *mp = c->mp;
    c->opset = -1;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (o && (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")))
            c->opset = o->has_version ? (int)o->version : -1;
    }
    if (c->opset < 7 || c->opset > 18)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "opset %d of the default domain; kiln imports opsets 7 to 18 (tested: 11 to "
                      "18)",
                      c->opset);
    c->m->opset = c->opset;
    const Onnx__GraphProto *g = mp->graph;
    if (!g) return ox_err(c, KILN_ERR_FORMAT, NULL, "the model has no graph");
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < g->n_initializer && !st; i++) {
        int v;
        if (!g->initializer[i]) return ox_err(c, KILN_ERR_FORMAT, NULL, "an empty initializer");
        st = tensor_read(c, g->initializer[i], "initializer", &v);
    }
    if (!st) st = read_input(c, g);
    if (st) return st;
    if (g->n_output != 1 || !g->output[0] || !g->output[0]->name)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "the graph has %zu outputs; kiln models have one", g->n_output);
    if (!(c->m->output_name = strdup(g->output[0]->name)))
        return kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
    c->m->n_nodes = (int)g->n_node;
    /* uses: count, by name, how often each value is read (values are defined as we go) */
    for (c->ni = 0; c->ni < (int)g->n_node && !st; c->ni++) {
        c->n = g->node[c->ni];
        if (!c->n) return ox_err(c, KILN_ERR_FORMAT, NULL, "node %d is empty", c->ni);
        if (!c->n->op_type) return ox_err(c, KILN_ERR_FORMAT, NULL, "node without an op_type");
        if (c->n->domain && c->n->domain[0] && strcmp(c->n->domain, "ai.onnx"))
            return ox_err(c, KILN_ERR_INVALID, NULL, "domain '%.60s' is not supported",
                          c->n->domain);
        st = ox_map_node(c);
    }
    c->n = NULL;
    if (st) return st;
    int out = ox_find(c, c->m->output_name);
    if (out < 0)
        return ox_err(c, KILN_ERR_FORMAT, NULL, "the graph output '%.80s' is not computed",
                      c->m->output_name);
    if (c->vals[out].is_const || c->vals[out].layer < 0)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "the graph output '%.80s' is a constant or the input itself",
                      c->m->output_name);
    /* the output layer must be the last: kiln's model output is the last layer */
    if (c->vals[out].layer != c->m->nl - 1)
        return ox_err(c, KILN_ERR_INVALID, NULL,
                      "the graph output '%.80s' is not computed by the last node kiln maps",
                      c->m->output_name);
    const ox_val *o = &c->vals[out];
    if (!strcmp(c->m->dropped, "Softmax")) snprintf(c->m->loss, sizeof c->m->loss, "%s",
                                                    "softmax_cross_entropy");
    else if (!strcmp(c->m->dropped, "Sigmoid"))
        snprintf(c->m->loss, sizeof c->m->loss, "%s", "binary_cross_entropy");
    else if (o->knd == 2 && o->kdims[1] >= 2)
        snprintf(c->m->loss, sizeof c->m->loss, "%s", "softmax_cross_entropy");
    else snprintf(c->m->loss, sizeof c->m->loss, "%s", "mse");
    return ox_render(c->m);
}

/* Values read by some node or the graph output (to know which outputs have one consumer). */
static void count_uses(ox_ctx *c, const Onnx__GraphProto *g, const char *name, int *uses) {
    *uses = 0;
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; g->node[i] && k < g->node[i]->n_input; k++)
            if (g->node[i]->input[k] && !strcmp(g->node[i]->input[k], name)) (*uses)++;
    for (size_t i = 0; i < g->n_output; i++)
        if (g->output[i] && g->output[i]->name && !strcmp(g->output[i]->name, name)) (*uses)++;
}

int ox_uses(ox_ctx *c, int v) {
    int u;
    count_uses(c, c->mp->graph, c->vals[v].name, &u);
    return u;
}

void kiln_onnx_free(kiln_onnx_model *m) {
    if (!m) return;
    for (int i = 0; i < m->nl; i++) ox_free_layer(&m->layers[i]);
    free(m->layers);
    free(m->input_name), free(m->output_name), free(m->producer), free(m->label);
    free(m->yaml_full), free(m->yaml_serve);
    for (int i = 0; i < m->ne; i++) free(m->entry_names[i]);
    free(m->entry_names), free(m->entries);
    free(m);
}

kiln_status kiln_onnx_convert(const void *bytes, size_t len, const char *label,
                              kiln_onnx_model **out) {
    *out = NULL;
    label = label ? label : "onnx";
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, bytes);
    if (!mp)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: not an ONNX model (the protobuf ModelProto does not parse)", label);
    kiln_onnx_model *m = calloc(1, sizeof *m);
    ox_ctx c = {.mp = mp, .label = label, .m = m};
    kiln_status st = m ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "onnx import: out of memory");
    if (!st && !(m->label = strdup(label))) st = KILN_ERR_NOMEM;
    if (!st && mp->producer_name) {
        char p[200];
        snprintf(p, sizeof p, "%.80s %.40s", mp->producer_name,
                 mp->producer_version ? mp->producer_version : "");
        for (char *s = p; *s; s++)
            if (*s == '\n' || *s == '\r' || (unsigned char)*s < 32) *s = ' ';
        if (!(m->producer = strdup(p))) st = KILN_ERR_NOMEM;
    }
    if (!st) st = convert(&c);
    for (int i = 0; i < c.nv; i++) free(c.vals[i].f), free(c.vals[i].i64);
    free(c.vals);
    onnx__model_proto__free_unpacked(mp, NULL);
    if (st) {
        kiln_onnx_free(m);
        return st;
    }
    *out = m;
    return KILN_OK;
}

kiln_status kiln_onnx_load(const char *path, kiln_onnx_model **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO,
                              "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (len < cap) break;
        unsigned char *nb = cap < ((size_t)1 << 34) ? realloc(buf, cap * 2) : NULL;
        if (!nb) free(buf);
        buf = nb, cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory reading it", path);
    if (err) return free(buf), kiln_error(KILN_ERR_IO, "%s: read error", path);
    kiln_status st = kiln_onnx_convert(buf, len, path, out);
    free(buf);
    return st;
}

const char *kiln_onnx_yaml(const kiln_onnx_model *m, int with_data_comment) {
    return with_data_comment ? m->yaml_full : m->yaml_serve;
}
const kiln_st_entry *kiln_onnx_weights(const kiln_onnx_model *m, int *n) {
    *n = m->ne;
    return m->entries;
}
int kiln_onnx_layer_count(const kiln_onnx_model *m) { return m->nl; }
int kiln_onnx_node_count(const kiln_onnx_model *m) { return m->n_nodes; }

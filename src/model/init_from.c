/* init_from.c — model.init_from: a new run's parameters loaded, by name, from earlier weights
 * (a kiln run, checkpoint or export, or any .safetensors file such as a torchvision state dict),
 * reported like PyTorch's load_state_dict(strict=False).
 *
 * The spec is a path, or {path, map: {old_prefix: new_prefix}, strict: false, convention:
 * kiln | torchvision}. The path may be
 *   - a .safetensors file;
 *   - a checkpoint or export version folder (its weights.safetensors);
 *   - a run folder (the checkpoint checkpoints/latest names);
 *   - an export base folder (its highest numbered version);
 *   - a .onnx file: converted by the ONNX importer (kiln/onnx.h), whose weights carry kiln's
 *     names and layouts, exactly what `kiln import` writes to weights.safetensors (so the
 *     convention is kiln; torchvision is refused for it, its names are already mapped).
 * For each model parameter K the name looked up in the file is: K with the first map entry
 * whose new_prefix starts K turned back into its old_prefix (map speaks kiln names, "/" and
 * all), then, with convention torchvision, "/" -> "." and the parameter's suffix as PyTorch names
 * it (kernel -> weight; batch norm gamma, beta, moving_mean, moving_variance -> weight, bias,
 * running_mean, running_var; embeddings -> weight); a dense kernel (2-D) is transposed, since
 * kiln keeps [in, units] and PyTorch [out, in]. A kiln checkpoint's optimizer slots and EMA
 * copies ("<param>.<slot>") are not parameters: the EMA copy is taken when there is one (as
 * kiln export does), the slots are skipped; torchvision's num_batches_tracked is ignored.
 *
 * Every parameter is checked before any is written. Then the matching ones are copied, the
 * others keep their initial values, and the report lists loaded / missing / unexpected /
 * shape-mismatched names. strict: true turns any of the last three into an error that names
 * them, with nothing changed.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kiln/model.h"
#include "kiln/onnx.h"
#include "kiln/safetensors.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "model/sparse.h"

typedef struct {
    char *path, *convention;
    int strict;
    const kiln_cfg *map; /* old_prefix -> new_prefix, or NULL */
} spec;

typedef struct {
    char *buf;
    size_t len, cap;
} text;

static void add(text *t, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = (t->len + (size_t)n + 1) * 2;
        char *nb = realloc(t->buf, cap);
        if (!nb) return;
        t->buf = nb, t->cap = cap;
    }
    va_start(ap, f);
    vsnprintf(t->buf + t->len, t->cap - t->len, f, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* The tensors init_from reads: a safetensors file, or an ONNX model's converted weights. */
typedef struct {
    kiln_st_file *st;
    kiln_sparse_set sp; /* an export's sparse tensors, densified (model/sparse.h) */
    cJSON *json;        /* that export's model.json (sp's names point into it) */
    kiln_onnx_model *ox;
    const kiln_st_entry *e; /* ox's entries */
    int n;
} wsrc;

static int w_count(const wsrc *f) { return f->st ? kiln_st_count(f->st) : f->n; }
static const kiln_st_entry *w_get(const wsrc *f, int i) {
    return f->st ? kiln_st_get(f->st, i) : &f->e[i];
}
static const kiln_st_entry *w_find(const wsrc *f, const char *name) {
    if (f->st) return kiln_sparse_find(&f->sp, f->st, name);
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->e[i].name, name)) return &f->e[i];
    return NULL;
}
static void w_close(wsrc *f) {
    kiln_sparse_set_free(&f->sp), cJSON_Delete(f->json);
    kiln_st_close(f->st), kiln_onnx_free(f->ox);
}

/* The weights of an export version stored sparse (model.json's "sparse" next to the file). */
static kiln_status sparse_weights(const char *file, wsrc *f) {
    char json[4700];
    const char *slash = strrchr(file, '/');
    snprintf(json, sizeof json, "%.*smodel.json", slash ? (int)(slash - file + 1) : 0, file);
    void *buf = NULL;
    size_t len = 0;
    if (!ends_with(file, "/weights.safetensors") || access(json, F_OK) != 0 ||
        kiln_file_read_all(json, &buf, &len, (size_t)64 << 20) != KILN_OK) {
        kiln_error_clear();
        return KILN_OK; /* not an export version: no sparse tensors */
    }
    f->json = cJSON_ParseWithLength(buf, len);
    kiln_free(buf);
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(f->json, "sparse");
    return kiln_sparse_read(sp, f->st, json, file, &f->sp);
}

/* An .onnx file's weights through the importer: kiln names and layouts, as `kiln import`
 * writes them (docs/models.md "Importing ONNX"). */
static kiln_status onnx_weights(const char *path, const char *convention, wsrc *f) {
    if (strcmp(convention, "kiln"))
        return kiln_error(KILN_ERR_INVALID,
                          "model.init_from: %s: convention %s does not apply to an ONNX file: "
                          "its weights are read under the names `kiln import` gives them "
                          "(torch's layer1.0.conv1.weight is layer1/0/conv1.kernel); leave "
                          "convention out",
                          path, convention);
    kiln_status st = kiln_onnx_load(path, &f->ox);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        return kiln_error(st == KILN_ERR_NOMEM ? st : KILN_ERR_INVALID,
                          "model.init_from: %s", msg);
    }
    f->e = kiln_onnx_weights(f->ox, &f->n);
    return KILN_OK;
}

/* The weights file a path means (see the top of the file) into out. */
static kiln_status locate(const char *path, char *out, size_t cap) {
    if (is_file(path)) {
        snprintf(out, cap, "%s", path);
        return KILN_OK;
    }
    if (!is_dir(path))
        return kiln_error(KILN_ERR_INVALID, "model.init_from: %s: no such file or folder", path);
    char p[4400];
    snprintf(p, sizeof p, "%s/weights.safetensors", path); /* a checkpoint or an export version */
    if (is_file(p)) return snprintf(out, cap, "%s", p), KILN_OK;
    snprintf(p, sizeof p, "%s/checkpoints/latest", path); /* a run folder */
    FILE *f = fopen(p, "r");
    if (f) {
        char name[256] = "";
        if (!fgets(name, sizeof name, f)) name[0] = 0;
        fclose(f);
        name[strcspn(name, "\r\n")] = 0;
        snprintf(p, sizeof p, "%s/checkpoints/%s/weights.safetensors", path, name);
        if (name[0] && !strchr(name, '/') && is_file(p))
            return snprintf(out, cap, "%s", p), KILN_OK;
        return kiln_error(KILN_ERR_INVALID,
                          "model.init_from: %s: checkpoints/latest names '%s', which has no "
                          "weights.safetensors",
                          path, name);
    }
    DIR *d = opendir(path); /* an export base folder: its highest version */
    long best = -1;
    for (struct dirent *e; d && (e = readdir(d));) {
        char *end;
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        long v = strtol(e->d_name, &end, 10);
        snprintf(p, sizeof p, "%s/%s/weights.safetensors", path, e->d_name);
        if (!*end && v > best && is_file(p)) best = v;
    }
    if (d) closedir(d);
    if (best >= 0) return snprintf(out, cap, "%s/%ld/weights.safetensors", path, best), KILN_OK;
    return kiln_error(KILN_ERR_INVALID,
                      "model.init_from: %s: not a run, checkpoint or export folder (no "
                      "weights.safetensors, checkpoints/latest or numbered version in it)",
                      path);
}

static kiln_status read_spec(const kiln_cfg *c, spec *s) {
    char w[300];
    memset(s, 0, sizeof *s);
    if (c->type == KILN_CFG_SCALAR) {
        s->path = c->text, s->convention = "kiln";
        return c->text[0] ? KILN_OK
                          : kiln_error(KILN_ERR_INVALID, "%s: model.init_from: expected a path",
                                       kiln_cfg_where(c, w, sizeof w));
    }
    if (c->type != KILN_CFG_MAP)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: model.init_from: expected a path or {path, map, strict, convention}",
                          kiln_cfg_where(c, w, sizeof w));
    s->convention = "kiln";
    for (int i = 0; i < c->n_items; i++) {
        const kiln_cfg *v = c->items[i];
        const char *k = v->key;
        kiln_cfg_where(v, w, sizeof w);
        if (!strcmp(k, "path") && v->type == KILN_CFG_SCALAR && v->text[0])
            s->path = v->text;
        else if (!strcmp(k, "strict") && !kiln_cfg_parse_bool(v, &s->strict))
            continue;
        else if (!strcmp(k, "convention") && v->type == KILN_CFG_SCALAR &&
                 (!strcmp(v->text, "kiln") || !strcmp(v->text, "torchvision")))
            s->convention = v->text;
        else if (!strcmp(k, "map") && v->type == KILN_CFG_MAP) {
            for (int j = 0; j < v->n_items; j++)
                if (v->items[j]->type != KILN_CFG_SCALAR)
                    return kiln_error(KILN_ERR_INVALID,
                                      "%s: model.init_from.map.%s: expected a prefix (a string)",
                                      kiln_cfg_where(v->items[j], w, sizeof w), v->items[j]->key);
            s->map = v;
        } else if (!strcmp(k, "path") || !strcmp(k, "strict") || !strcmp(k, "convention") ||
                   !strcmp(k, "map"))
            return kiln_error(KILN_ERR_INVALID, "%s: model.init_from.%s: expected %s", w, k,
                              !strcmp(k, "path")     ? "a path"
                              : !strcmp(k, "strict") ? "true or false"
                              : !strcmp(k, "map")    ? "a map {old_prefix: new_prefix}"
                                                     : "kiln or torchvision");
        else
            return kiln_error(KILN_ERR_INVALID,
                              "%s: model.init_from: unknown key '%s' (expected path, map, strict, "
                              "convention)",
                              w, k);
    }
    if (!s->path)
        return kiln_error(KILN_ERR_INVALID, "%s: model.init_from: missing required key 'path'",
                          kiln_cfg_where(c, w, sizeof w));
    return KILN_OK;
}

/* The file's name for model parameter k (see the top of the file). */
static void source_name(const spec *s, const char *k, char *out, size_t cap) {
    char mapped[600];
    snprintf(mapped, sizeof mapped, "%s", k);
    for (int i = 0; s->map && i < s->map->n_items; i++) {
        const char *oldp = s->map->items[i]->key, *newp = s->map->items[i]->text;
        if (!strncmp(k, newp, strlen(newp))) {
            snprintf(mapped, sizeof mapped, "%s%s", oldp, k + strlen(newp));
            break;
        }
    }
    if (strcmp(s->convention, "torchvision")) {
        snprintf(out, cap, "%s", mapped);
        return;
    }
    char *dot = strrchr(mapped, '.');
    const char *suffix = dot ? dot + 1 : "";
    if (dot) *dot = 0;
    for (char *p = mapped; *p; p++)
        if (*p == '/') *p = '.';
    static const char *const T[][2] = {{"kernel", "weight"},
                                       {"gamma", "weight"},
                                       {"beta", "bias"},
                                       {"moving_mean", "running_mean"},
                                       {"moving_variance", "running_var"},
                                       {"embeddings", "weight"}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (!strcmp(suffix, T[i][0])) suffix = T[i][1];
    snprintf(out, cap, dot ? "%s.%s" : "%s", mapped, suffix);
}

/* 1 when entry i of f is an optimizer slot or EMA copy of another entry ("<param>.<slot>"), or
 * a torchvision counter: not a parameter. */
static int not_a_param(const wsrc *f, const char *name) {
    if (ends_with(name, ".num_batches_tracked")) return 1;
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    char base[600];
    snprintf(base, sizeof base, "%.*s", (int)(dot - name), name);
    return w_find(f, base) != NULL && strchr(base, '.') != NULL;
}

static void shape_text(const kiln_shape *s, int transposed, char *buf, size_t cap) {
    snprintf(buf, cap, "[");
    for (int d = 0; d < s->ndim; d++) {
        int dd = transposed ? s->ndim - 1 - d : d;
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%lld", d ? ", " : "",
                 (long long)s->dims[dd]);
    }
    snprintf(buf + strlen(buf), cap - strlen(buf), "]");
}

kiln_status kiln_model_init_from(const kiln_cfg *cfg, kiln_graph *g, char **report) {
    *report = NULL;
    const kiln_cfg *c = kiln_cfg_at(cfg, "model.init_from");
    if (!c || (c->type == KILN_CFG_SCALAR && !c->quoted && !c->text[0])) return KILN_OK;
    spec s;
    char file[4600];
    kiln_status st = read_spec(c, &s);
    if (!st) st = kiln_graph_init_params(g);
    if (!st) st = locate(s.path, file, sizeof file);
    if (st) return st;
    wsrc wf = {0}, *f = &wf;
    st = ends_with(file, ".onnx") ? onnx_weights(file, s.convention, f)
                                  : kiln_safetensors_open(file, &f->st);
    if (!st && f->st) st = sparse_weights(file, f);
    if (st) return w_close(f), st;
    int np = kiln_graph_param_count(g), nt = w_count(f),
        torch = !strcmp(s.convention, "torchvision");
    const kiln_st_entry **src = calloc((size_t)np + 1, sizeof *src);
    char *used = calloc((size_t)nt + 1, 1);
    text missing = {0}, mism = {0}, unexp = {0}, out = {0};
    int n_loaded = 0, n_missing = 0, n_mism = 0, n_unexp = 0;
    if (!src || !used) {
        free(src), free(used), w_close(f);
        return KILN_ERR_NOMEM;
    }
    for (int i = 0; i < nt; i++) /* entries that are not parameters count as used */
        used[i] = (char)not_a_param(f, w_get(f, i)->name);
    for (int i = 0; i < np; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        char name[700], ema[720];
        source_name(&s, pi->name, name, sizeof name);
        snprintf(ema, sizeof ema, "%s.ema", name);
        const kiln_st_entry *t = w_find(f, ema);
        if (!t) t = w_find(f, name);
        if (!t) {
            add(&missing, "%s%s", n_missing++ ? ", " : "", pi->name);
            continue;
        }
        for (int k = 0; k < nt; k++)
            if (w_get(f, k) == t || !strcmp(w_get(f, k)->name, name)) used[k] = 1;
        int transpose = torch && pi->shape.ndim == 2 && ends_with(pi->name, ".kernel");
        int same = t->dtype == KILN_F32 && t->shape.ndim == pi->shape.ndim;
        for (int d = 0; same && d < t->shape.ndim; d++)
            same = t->shape.dims[d] == pi->shape.dims[transpose ? t->shape.ndim - 1 - d : d];
        if (!same) {
            char a[128], b[128];
            shape_text(&t->shape, 0, a, sizeof a);
            shape_text(&pi->shape, transpose, b, sizeof b);
            add(&mism, "    %s: file %s %s, model %s%s\n", pi->name, kiln_dtype_name(t->dtype), a,
                b, transpose ? " (transposed)" : "");
            n_mism++;
            continue;
        }
        src[i] = t;
        n_loaded++;
    }
    for (int k = 0; k < nt; k++)
        if (!used[k]) add(&unexp, "%s%s", n_unexp++ ? ", " : "", w_get(f, k)->name);
    add(&out, "init_from %s (convention %s): loaded %d of %d parameters", file, s.convention,
        n_loaded, np);
    const char *kept = s.strict ? "refused" : "left as initialized";
    if (n_missing) add(&out, "\n  missing in the file (%d, %s): %s", n_missing, kept, missing.buf);
    if (n_mism)
        add(&out, "\n  shape mismatch (%d, %s):\n%.*s", n_mism, kept, (int)mism.len - 1, mism.buf);
    if (n_unexp) add(&out, "\n  unexpected in the file (%d, not used): %s", n_unexp, unexp.buf);
    add(&out, "\n");
    if (s.strict && (n_missing || n_mism || n_unexp)) {
        char w[300];
        st = kiln_error(KILN_ERR_INVALID, "%s: model.init_from: strict: %s",
                        kiln_cfg_where(c, w, sizeof w), out.buf ? out.buf : "");
    } else {
        float *params = kiln_graph_params(g);
        for (int i = 0; i < np; i++) {
            const kiln_param_info *pi = kiln_graph_param_info(g, i);
            const float *x = src[i] ? src[i]->data : NULL;
            if (!x) continue;
            float *y = params + pi->offset;
            if (torch && pi->shape.ndim == 2 &&
                ends_with(pi->name, ".kernel")) { /* [out, in] -> [in, out] */
                int64_t in = pi->shape.dims[0], units = pi->shape.dims[1];
                for (int64_t o = 0; o < units; o++)
                    for (int64_t j = 0; j < in; j++) y[j * units + o] = x[o * in + j];
            } else
                memcpy(y, x, pi->numel * sizeof *y);
        }
        *report = out.buf, out.buf = NULL;
    }
    free(out.buf), free(missing.buf), free(mism.buf), free(unexp.buf);
    free(src), free(used);
    w_close(f);
    return st;
}

/* servable.c — loading a servable version and running it (see kiln/export.h).
 *
 * Loading trusts nothing in the folder. model.json is read with a size cap and parsed as JSON;
 * every field is checked for type and range before use; the graph is rebuilt from "config"
 * through the same schema check (kiln_config_resolve) and builder (kiln_model_build) that
 * training uses, so a bad layer is reported as the config error it is; the weights go through
 * the safetensors reader (which validates the whole header) and must match the rebuilt graph
 * tensor for tensor; finally the signature in model.json must describe that graph. Only then is
 * the servable handed out.
 *
 * The schema wants a data source that a servable does not have: the loader puts
 * data: {source: npy, train: {}, task: <task>} beside seed, model and loss before resolving
 * (only task is ever read). A classifier's probabilities are one more node on the rebuilt graph
 * (softmax or sigmoid of the output), so every plan computes them with the rest.
 *
 * Invariants: after kiln_servable_load the servable is immutable except for `cache`, which `mu`
 * guards together with plan compilation. Inference plans read the graph's parameters and write
 * only their own arenas, so plans of one servable may run concurrently (each on one thread).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg_json.h"
#include "model/servable_internal.h"
#include "model/sparse.h"
#include "kiln/export.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"
#include "kiln/nn.h"
#include "kiln/safetensors.h"

#define EXACT_INT 9007199254740992.0 /* 2^53 */

typedef struct {
    int batch;
    kiln_plan *plan;
} cached_plan;

struct kiln_servable {
    char *dir, *json_path, *config_label;
    char *name, *kiln_version, *created, *source_run, *source_checkpoint;
    int64_t version;
    kiln_task task;
    const char *prob; /* "softmax", "sigmoid" or NULL */
    const char *precision; /* what the layers run in (servable_lowp.c) */
    kiln_model m;
    kiln_node *probs; /* prob(m.output), or NULL */
    kiln_servable_tensor input, outputs[2];
    int n_outputs;
    char **class_names; /* [n_classes] */
    int n_classes;
    kiln_normalize norm;
    float *mean, *std; /* [norm.channels] behind norm */
    pthread_mutex_t mu;
    cached_plan *cache; /* [n_cache] */
    int n_cache, cap_cache;
};

/* ---- reading model.json ---- */

static const char *jtype(const cJSON *v) {
    if (!v) return "missing";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "a list";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsBool(v)) return "a boolean";
    return "null";
}

static kiln_status bad(const kiln_servable *s, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kiln_status bad(const kiln_servable *s, const char *field, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(KILN_ERR_FORMAT, "%s: \"%s\": %s", s->json_path, field, msg);
}

static kiln_status want(const kiln_servable *s, const char *field, const char *what,
                        const cJSON *v) {
    return bad(s, field, "expected %s, got %s", what, jtype(v));
}

/* A string (or, when nullable, null -> *dst stays NULL) copied into *dst. */
static kiln_status get_str(kiln_servable *s, const cJSON *obj, const char *key, const char *field,
                           int nullable, char **dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (nullable && cJSON_IsNull(v)) return KILN_OK;
    if (!cJSON_IsString(v)) return want(s, field, nullable ? "a string or null" : "a string", v);
    if (!(*dst = strdup(v->valuestring)))
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", s->json_path);
    return KILN_OK;
}

/* The string value of key, which must be one of choices[] (NULL-terminated); its index. */
static kiln_status get_choice(kiln_servable *s, const cJSON *obj, const char *key,
                              const char *field, const char *const *choices, int *index) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v)) return want(s, field, "a string", v);
    char list[200] = "";
    for (int i = 0; choices[i]; i++) {
        if (!strcmp(v->valuestring, choices[i])) return *index = i, KILN_OK;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"", i ? " or " : "",
                 choices[i]);
    }
    return bad(s, field, "is \"%.100s\", expected %s", v->valuestring, list);
}

static kiln_status get_int(kiln_servable *s, const cJSON *v, const char *field, int64_t lo,
                           int64_t hi, int64_t *dst) {
    if (!cJSON_IsNumber(v)) return want(s, field, "an integer", v);
    double d = v->valuedouble;
    if (d != floor(d) || d < (double)lo || d > (double)hi || fabs(d) > EXACT_INT)
        return bad(s, field, "%.17g is not an integer in %lld .. %lld", d, (long long)lo,
                   (long long)hi);
    *dst = (int64_t)d;
    return KILN_OK;
}

/* A finite float32 (the value read back as the float export wrote). */
static kiln_status get_float(kiln_servable *s, const cJSON *v, const char *field, float *dst) {
    if (!cJSON_IsNumber(v)) return want(s, field, "a number", v);
    float f = (float)v->valuedouble;
    if (!isfinite(f)) return bad(s, field, "%.17g is not a finite float32", v->valuedouble);
    *dst = f;
    return KILN_OK;
}

/* The graph rebuilt from "config" (see the top of the file). */
static kiln_status build_graph(kiln_servable *s, const cJSON *config) {
    if (!cJSON_IsObject(config)) return want(s, "config", "an object", config);
    static const char *const keys[] = {"seed", "model", "loss"};
    for (int i = 1; i < 3; i++)
        if (!cJSON_GetObjectItemCaseSensitive(config, keys[i]))
            return bad(s, "config", "has no \"%s\"", keys[i]);
    /* {"data": {...}, "seed": ..., "model": ..., "loss": ...} referring to config's items */
    cJSON *full = cJSON_CreateObject(), *data = cJSON_CreateObject();
    int ok = full && data && cJSON_AddItemToObject(full, "data", data);
    if (!ok) cJSON_Delete(data);
    ok = ok && cJSON_AddStringToObject(data, "source", "npy") &&
         cJSON_AddObjectToObject(data, "train") &&
         cJSON_AddStringToObject(data, "task",
                                 s->task == KILN_TASK_REGRESSION ? "regression" : "classification");
    for (int i = 0; i < 3 && ok; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(config, keys[i]);
        ok = !v || cJSON_AddItemReferenceToObject(full, keys[i], v);
    }
    kiln_cfg *root = NULL;
    kiln_status st = ok ? kiln_cfg_from_json(full, s->config_label, NULL, &root)
                        : kiln_error(KILN_ERR_NOMEM, "%s: out of memory", s->json_path);
    cJSON_Delete(full);
    if (st) return st;
    kiln_cfg *seed = kiln_cfg_child(root, "seed"); /* beyond 2^53 it is a decimal string */
    if (seed && seed->type == KILN_CFG_SCALAR) seed->quoted = 0;
    st = kiln_config_resolve(root);
    if (!st) st = kiln_model_build(root, &s->m);
    if (!st) {
        s->prob = kiln_servable_prob_kind(kiln_cfg_child(root, "loss")->items[0]->key);
        if (s->prob) {
            s->probs = !strcmp(s->prob, "softmax") ? kiln_softmax(s->m.graph, s->m.output)
                                                   : kiln_sigmoid(s->m.graph, s->m.output);
            if (!s->probs)
                kiln_error_prefix("%s: probabilities", s->json_path), st = KILN_ERR_INVALID;
        }
    }
    if (!st) st = kiln_graph_init_params(s->m.graph);
    kiln_cfg_free(root);
    return st;
}

/* One entry of "inputs" / "outputs": {"name": name, "dtype": "FP32", "shape": [-1, node's]}. */
static kiln_status check_tensor(kiln_servable *s, const cJSON *arr, int i, const char *list,
                                const char *name, const kiln_node *node, kiln_servable_tensor *t) {
    char field[64];
    const cJSON *e = cJSON_GetArrayItem(arr, i);
    snprintf(field, sizeof field, "%s[%d]", list, i);
    if (!cJSON_IsObject(e)) return want(s, field, "an object", e);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name"),
                *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype"),
                *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    snprintf(field, sizeof field, "%s[%d].name", list, i);
    if (!cJSON_IsString(n)) return want(s, field, "a string", n);
    if (strcmp(n->valuestring, name))
        return bad(s, field, "is \"%.100s\", expected \"%s\"", n->valuestring, name);
    snprintf(field, sizeof field, "%s[%d].dtype", list, i);
    if (!cJSON_IsString(dt)) return want(s, field, "a string", dt);
    if (strcmp(dt->valuestring, "FP32"))
        return bad(s, field, "is \"%.100s\", expected \"FP32\"", dt->valuestring);
    snprintf(field, sizeof field, "%s[%d].shape", list, i);
    kiln_shape g = kiln_node_shape(node);
    g.dims[0] = -1;
    if (!cJSON_IsArray(sh)) return want(s, field, "a list of integers", sh);
    kiln_shape got = {0};
    for (const cJSON *d = sh->child; d; d = d->next) {
        int64_t v;
        if (got.ndim == KILN_MAX_DIMS)
            return bad(s, field, "has more than %d dimensions", KILN_MAX_DIMS);
        kiln_status st = get_int(s, d, field, -1, INT64_MAX, &v);
        if (st) return st;
        got.dims[got.ndim++] = v;
    }
    if (!kiln_shape_equal(&got, &g)) {
        char a[160], b[160];
        return bad(s, field, "is %s, but the model's config gives %s",
                   kiln_shape_str(&got, a, sizeof a), kiln_shape_str(&g, b, sizeof b));
    }
    *t = (kiln_servable_tensor){name, KILN_F32, g};
    return KILN_OK;
}

static kiln_status check_signature(kiln_servable *s, const cJSON *root) {
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(root, "inputs"),
                *outs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
    if (!cJSON_IsArray(ins)) return want(s, "inputs", "a list", ins);
    if (cJSON_GetArraySize(ins) != 1)
        return bad(s, "inputs", "has %d entries, expected 1", cJSON_GetArraySize(ins));
    if (!cJSON_IsArray(outs)) return want(s, "outputs", "a list", outs);
    s->n_outputs = s->probs ? 2 : 1;
    if (cJSON_GetArraySize(outs) != s->n_outputs)
        return bad(s, "outputs", "has %d entries, expected %d (output%s)", cJSON_GetArraySize(outs),
                   s->n_outputs,
                   s->probs ? " and probabilities, for a model trained with a cross-entropy loss"
                            : " only");
    kiln_status st = check_tensor(s, ins, 0, "inputs", "input", s->m.input, &s->input);
    if (!st) st = check_tensor(s, outs, 0, "outputs", "output", s->m.output, &s->outputs[0]);
    if (!st && s->probs)
        st = check_tensor(s, outs, 1, "outputs", "probabilities", s->m.output, &s->outputs[1]);
    return st;
}

static kiln_status read_class_names(kiln_servable *s, const cJSON *root) {
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(root, "class_names");
    if (cJSON_IsNull(cn)) return KILN_OK;
    if (!cJSON_IsArray(cn)) return want(s, "class_names", "a list of strings or null", cn);
    int n = cJSON_GetArraySize(cn);
    if (!kiln_servable_class_count_ok(s->prob, s->m.n_outputs, n))
        return s->prob
                   ? bad(s, "class_names", "has %d names for a model with %lld outputs", n,
                         (long long)s->m.n_outputs)
                   : bad(s, "class_names", "must be null: the model has no probabilities output");
    if (!(s->class_names = calloc((size_t)n, sizeof *s->class_names)))
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", s->json_path);
    s->n_classes = n;
    int i = 0;
    for (const cJSON *e = cn->child; e; e = e->next, i++) {
        char field[48];
        snprintf(field, sizeof field, "class_names[%d]", i);
        if (!cJSON_IsString(e)) return want(s, field, "a string", e);
        if (!(s->class_names[i] = strdup(e->valuestring)))
            return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", s->json_path);
    }
    return KILN_OK;
}

static kiln_status read_floats(kiln_servable *s, const cJSON *a, const char *key, float *dst,
                               int positive) {
    int i = 0;
    for (const cJSON *e = a->child; e; e = e->next, i++) {
        char field[64];
        snprintf(field, sizeof field, "preprocessing.%s[%d]", key, i);
        kiln_status st = get_float(s, e, field, &dst[i]);
        if (st) return st;
        if (positive && !(dst[i] > 0))
            return bad(s, field, "is %g; a standard deviation must be > 0", dst[i]);
    }
    return KILN_OK;
}

static kiln_status read_preprocessing(kiln_servable *s, const cJSON *root) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "preprocessing");
    if (!cJSON_IsObject(p)) return want(s, "preprocessing", "an object", p);
    kiln_status st = get_float(s, cJSON_GetObjectItemCaseSensitive(p, "scale"),
                               "preprocessing.scale", &s->norm.scale);
    if (st) return st;
    if (s->norm.scale == 0)
        return bad(s, "preprocessing.scale", "is 0, which would erase every input");
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(p, "mean"),
                *sd = cJSON_GetObjectItemCaseSensitive(p, "std");
    if (cJSON_IsNull(mean) && cJSON_IsNull(sd)) return KILN_OK;
    if (!cJSON_IsArray(mean))
        return want(s, "preprocessing.mean", "a list of numbers (or null with std null)", mean);
    if (!cJSON_IsArray(sd))
        return want(s, "preprocessing.std", "a list of numbers (or null with mean null)", sd);
    int n = cJSON_GetArraySize(mean);
    int64_t row = kiln_servable_row_size(&s->input);
    if (n < 1 || n != cJSON_GetArraySize(sd) || row % n)
        return bad(s, "preprocessing",
                   "mean and std have %d and %d values; need the same number, dividing the input "
                   "row of %lld values",
                   n, cJSON_GetArraySize(sd), (long long)row);
    if (!(s->mean = malloc((size_t)n * sizeof *s->mean)) ||
        !(s->std = malloc((size_t)n * sizeof *s->std)))
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", s->json_path);
    if ((st = read_floats(s, mean, "mean", s->mean, 0)) ||
        (st = read_floats(s, sd, "std", s->std, 1)))
        return st;
    s->norm.channels = n, s->norm.mean = s->mean, s->norm.std = s->std;
    return KILN_OK;
}

static kiln_status read_header(kiln_servable *s, const cJSON *root) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, KILN_SERVABLE_FORMAT))
        return cJSON_IsString(f) ? bad(s, "format", "is \"%.100s\", expected \"%s\"",
                                       f->valuestring, KILN_SERVABLE_FORMAT)
                                 : want(s, "format", "the string \"" KILN_SERVABLE_FORMAT "\"", f);
    int64_t fv, version;
    kiln_status st = get_int(s, cJSON_GetObjectItemCaseSensitive(root, "format_version"),
                             "format_version", 1, INT64_MAX, &fv);
    if (st) return st;
    if (fv != KILN_SERVABLE_FORMAT_VERSION)
        return bad(s, "format_version",
                   "is %lld; this kiln reads version %d (export it again, or use a newer kiln)",
                   (long long)fv, KILN_SERVABLE_FORMAT_VERSION);
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(root, "source");
    static const char *const tasks[] = {"classification", "regression", NULL};
    int task = 0;
    if ((st = get_str(s, root, "kiln_version", "kiln_version", 0, &s->kiln_version)) ||
        (st = get_str(s, root, "name", "name", 0, &s->name)) ||
        (st = get_int(s, cJSON_GetObjectItemCaseSensitive(root, "version"), "version", 1, INT64_MAX,
                      &version)) ||
        (st = get_str(s, root, "created", "created", 0, &s->created)) ||
        (st = cJSON_IsObject(src) ? KILN_OK : want(s, "source", "an object", src)) ||
        (st = get_str(s, src, "run", "source.run", 1, &s->source_run)) ||
        (st = get_str(s, src, "checkpoint", "source.checkpoint", 1, &s->source_checkpoint)) ||
        (st = get_choice(s, root, "task", "task", tasks, &task)))
        return st;
    if (!s->name[0]) return bad(s, "name", "is empty");
    s->task = task ? KILN_TASK_REGRESSION : KILN_TASK_CLASSIFICATION;
    /* The folder's name is the version (TF Serving's rule: a copied folder takes its new name). */
    const char *base = strrchr(s->dir, '/');
    s->version = kiln_export_parse_version(base ? base + 1 : s->dir, &fv) ? fv : version;
    return KILN_OK;
}

/* ---- weights ---- */

/* sparse: model.json's "sparse" field (NULL: none): its tensors are read densified
 * (model/sparse.h), their bitmask and values entries are theirs. */
static kiln_status load_weights(kiln_servable *s, const cJSON *sparse) {
    char path[4200];
    kiln_status st = kiln_servable_join(path, sizeof path, s->dir, KILN_SERVABLE_WEIGHTS);
    kiln_st_file *f = NULL;
    if (st || (st = kiln_safetensors_open(path, &f))) return st;
    kiln_sparse_set sp;
    if ((st = kiln_sparse_read(sparse, f, s->json_path, path, &sp))) return kiln_st_close(f), st;
    kiln_graph *g = s->m.graph;
    int np = kiln_graph_param_count(g);
    char a[160], b[160];
    for (int i = 0; i < np && !st; i++) { /* every parameter, F32, with its shape */
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        const kiln_st_entry *t = kiln_sparse_find(&sp, f, pi->name);
        if (!t)
            st = kiln_error(KILN_ERR_FORMAT, "%s: missing tensor '%s' (the model has it)", path,
                            pi->name);
        else if (t->dtype != KILN_F32)
            st = kiln_error(KILN_ERR_FORMAT, "%s: tensor '%s' is %s, expected F32", path, pi->name,
                            kiln_dtype_name(t->dtype));
        else if (!kiln_shape_equal(&t->shape, &pi->shape))
            st = kiln_error(KILN_ERR_FORMAT, "%s: tensor '%s' has shape %s, the model expects %s",
                            path, pi->name, kiln_shape_str(&t->shape, a, sizeof a),
                            kiln_shape_str(&pi->shape, b, sizeof b));
    }
    /* and nothing else (names in a file are unique, so a count above np means a stranger) */
    for (int k = 0; !st && kiln_st_count(f) + sp.n > np && k < kiln_st_count(f); k++) {
        const char *name = kiln_st_get(f, k)->name;
        int known = kiln_sparse_owns(&sp, name);
        for (int i = 0; i < np && !known; i++)
            known = !strcmp(name, kiln_graph_param_info(g, i)->name);
        if (!known)
            st = kiln_error(KILN_ERR_FORMAT,
                            "%s: unexpected tensor '%s' (the model has no such parameter)", path,
                            name);
    }
    for (int i = 0; i < np && !st; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        memcpy(kiln_graph_params(g) + pi->offset, kiln_sparse_find(&sp, f, pi->name)->data,
               pi->numel * sizeof(float));
    }
    kiln_sparse_set_free(&sp);
    kiln_st_close(f);
    return st;
}

/* ---- load / free ---- */

static char *dup_printf(const char *fmt, const char *a, const char *b) {
    size_t n = strlen(fmt) + strlen(a) + strlen(b);
    char *p = malloc(n);
    if (p) snprintf(p, n, fmt, a, b);
    return p;
}

kiln_status kiln_servable_load(const char *version_dir, kiln_servable **out) {
    if (!out) return kiln_error(KILN_ERR_INVALID, "servable: NULL out");
    *out = NULL;
    if (!version_dir || !version_dir[0]) return kiln_error(KILN_ERR_INVALID, "servable: no folder");
    kiln_servable *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "servable: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    size_t len = strlen(version_dir);
    while (len > 1 && version_dir[len - 1] == '/') len--;
    kiln_status st = KILN_OK;
    if (!(s->dir = strndup(version_dir, len)) ||
        !(s->json_path = dup_printf("%s/%s", s->dir, KILN_SERVABLE_JSON)) ||
        !(s->config_label = dup_printf("%s: %s", s->json_path, "config")))
        st = kiln_error(KILN_ERR_NOMEM, "servable: out of memory");
    void *buf = NULL;
    size_t n = 0;
    cJSON *root = NULL;
    if (!st) st = kiln_file_read_all(s->json_path, &buf, &n, KILN_SERVABLE_JSON_MAX);
    if (!st) {
        const char *end = NULL;
        root = cJSON_ParseWithOpts(buf, &end, 1);
        if (!root || memchr(buf, 0, n)) {
            size_t at = end && root == NULL ? (size_t)(end - (const char *)buf) : n;
            int line = 1;
            for (size_t i = 0; i < at && i < n; i++) line += ((const char *)buf)[i] == '\n';
            st = kiln_error(KILN_ERR_FORMAT, "%s:%d: not valid JSON%s", s->json_path, line,
                            root      ? " (it holds a NUL byte)"
                            : at >= n ? " (cut short?)"
                                      : "");
        } else if (!cJSON_IsObject(root)) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: expected a JSON object, got %s", s->json_path,
                            jtype(root));
        }
    }
    if (!st) st = read_header(s, root);
    if (!st) st = build_graph(s, cJSON_GetObjectItemCaseSensitive(root, "config"));
    if (!st)
        st = kiln_servable_apply_lowp(cJSON_GetObjectItemCaseSensitive(root, "quantization"), &s->m,
                                      s->json_path, &s->precision);
    if (!st) st = check_signature(s, root);
    if (!st) st = read_class_names(s, root);
    if (!st) st = read_preprocessing(s, root);
    if (!st) st = load_weights(s, cJSON_GetObjectItemCaseSensitive(root, "sparse"));
    cJSON_Delete(root);
    kiln_free(buf);
    if (st) {
        kiln_servable_free(s);
        return st;
    }
    *out = s;
    return KILN_OK;
}

void kiln_servable_free(kiln_servable *s) {
    if (!s) return;
    for (int i = 0; i < s->n_cache; i++) kiln_plan_free(s->cache[i].plan);
    free(s->cache);
    kiln_model_free(&s->m);
    for (int i = 0; i < s->n_classes; i++) free(s->class_names[i]);
    free(s->class_names);
    free(s->mean), free(s->std);
    free(s->dir), free(s->json_path), free(s->config_label);
    free(s->name), free(s->kiln_version), free(s->created), free(s->source_run),
        free(s->source_checkpoint);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- accessors ---- */

kiln_servable_info kiln_servable_get_info(const kiln_servable *s) {
    return (kiln_servable_info){.dir = s->dir,
                                .name = s->name,
                                .version = s->version,
                                .task = s->task,
                                .probabilities = s->prob,
                                .kiln_version = s->kiln_version,
                                .created = s->created,
                                .source_run = s->source_run,
                                .source_checkpoint = s->source_checkpoint,
                                .precision = s->precision ? s->precision : "fp32"};
}
int kiln_servable_input_count(const kiln_servable *s) {
    return 1;
}
const kiln_servable_tensor *kiln_servable_input(const kiln_servable *s, int i) {
    return i == 0 ? &s->input : NULL;
}
int kiln_servable_output_count(const kiln_servable *s) {
    return s->n_outputs;
}
const kiln_servable_tensor *kiln_servable_output(const kiln_servable *s, int i) {
    return i >= 0 && i < s->n_outputs ? &s->outputs[i] : NULL;
}
int64_t kiln_servable_row_size(const kiln_servable_tensor *t) {
    int64_t n = 1;
    for (int i = 1; i < t->shape.ndim; i++) n *= t->shape.dims[i];
    return n;
}
int kiln_servable_class_count(const kiln_servable *s) {
    return s->n_classes;
}
const char *kiln_servable_class_name(const kiln_servable *s, int i) {
    return i >= 0 && i < s->n_classes ? s->class_names[i] : NULL;
}
const kiln_normalize *kiln_servable_preprocessing(const kiln_servable *s) {
    return &s->norm;
}
kiln_model *kiln_servable_model(kiln_servable *s) {
    return &s->m;
}

/* The loader's arithmetic (src/data/loader.c), so raw values give what training saw. */
kiln_status kiln_servable_preprocess(const kiln_servable *s, const float *raw, float *x,
                                     int64_t rows) {
    if (!s || !raw || !x || rows < 0)
        return kiln_error(KILN_ERR_INVALID, "servable: preprocess: bad arguments");
    int64_t m = kiln_servable_row_size(&s->input), chans = s->norm.channels,
            inner = chans ? m / chans : 0;
    float sc = s->norm.scale;
    for (int64_t r = 0; r < rows; r++) {
        const float *src = raw + r * m; /* [m] */
        float *dx = x + r * m;          /* [m] */
        if (sc != 1.0f)
            for (int64_t j = 0; j < m; j++) dx[j] = src[j] * sc;
        else if (dx != src)
            memmove(dx, src, (size_t)m * sizeof *dx);
        for (int64_t c = 0; c < chans; c++) {
            float mu = s->mean[c], sd = s->std[c], *p = dx + c * inner;
            for (int64_t j = 0; j < inner; j++) p[j] = (p[j] - mu) / sd;
        }
    }
    return KILN_OK;
}

/* ---- plans and prediction ---- */

static kiln_plan *compile(kiln_servable *s, int batch) {
    if (batch < 1) {
        kiln_error(KILN_ERR_INVALID, "servable %s: batch size %d must be >= 1", s->name, batch);
        return NULL;
    }
    kiln_node *outs[2] = {s->m.output, s->probs};
    kiln_plan_opts o = {.outputs = outs, .n_outputs = s->probs ? 2 : 1, .batch = batch};
    kiln_plan *p = kiln_plan_new(s->m.graph, &o);
    if (!p) kiln_error_prefix("servable %s version %lld", s->name, (long long)s->version);
    return p;
}

kiln_plan *kiln_servable_plan(kiln_servable *s, int batch) {
    if (!s) return NULL;
    pthread_mutex_lock(&s->mu);
    kiln_plan *p = NULL;
    for (int i = 0; i < s->n_cache && !p; i++)
        if (s->cache[i].batch == batch) p = s->cache[i].plan;
    if (!p && s->n_cache == s->cap_cache) {
        int cap = s->cap_cache ? 2 * s->cap_cache : 4;
        cached_plan *grown = realloc(s->cache, (size_t)cap * sizeof *grown);
        if (grown)
            s->cache = grown, s->cap_cache = cap;
        else
            kiln_error(KILN_ERR_NOMEM, "servable: out of memory");
    }
    if (!p && s->n_cache < s->cap_cache && (p = compile(s, batch)))
        s->cache[s->n_cache++] = (cached_plan){batch, p};
    pthread_mutex_unlock(&s->mu);
    return p;
}

kiln_plan *kiln_servable_plan_new(kiln_servable *s, int batch) {
    if (!s) return NULL;
    pthread_mutex_lock(&s->mu);
    kiln_plan *p = compile(s, batch);
    pthread_mutex_unlock(&s->mu);
    return p;
}

kiln_status kiln_servable_predict(kiln_servable *s, kiln_plan *p, const float *x, int rows,
                                  float *out, float *probs) {
    if (!s || !p || !x)
        return kiln_error(KILN_ERR_INVALID, "servable: predict: NULL servable, plan or input");
    float *in = kiln_plan_data(p, s->m.input), *o = kiln_plan_data(p, s->m.output);
    float *pr = s->probs ? kiln_plan_data(p, s->probs) : NULL;
    if (!in || !o || (s->probs && !pr))
        return kiln_error(KILN_ERR_INVALID,
                          "servable %s: predict: the plan was not made by kiln_servable_plan",
                          s->name);
    int batch = (int)kiln_plan_shape(p, s->m.input).dims[0];
    if (rows < 1 || rows > batch)
        return kiln_error(KILN_ERR_INVALID, "servable %s: predict: %d rows for a plan of batch %d",
                          s->name, rows, batch);
    if (probs && !pr)
        return kiln_error(KILN_ERR_INVALID,
                          "servable %s: predict: the model has no probabilities output", s->name);
    size_t xr = (size_t)kiln_servable_row_size(&s->input),
           yr = (size_t)kiln_servable_row_size(&s->outputs[0]);
    memcpy(in, x, (size_t)rows * xr * sizeof *in);
    memset(in + (size_t)rows * xr, 0, (size_t)(batch - rows) * xr * sizeof *in);
    kiln_status st = kiln_plan_forward(p);
    if (st) {
        kiln_error_prefix("servable %s version %lld", s->name, (long long)s->version);
        return st;
    }
    if (out) memcpy(out, o, (size_t)rows * yr * sizeof *out);
    if (probs) memcpy(probs, pr, (size_t)rows * yr * sizeof *probs);
    return KILN_OK;
}

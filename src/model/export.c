/* export.c — writing servable packages and listing their versions (see kiln/export.h).
 *
 * A version is written in three moves: (1) a private folder <base>/.tmp-<v>-<pid>-<random>
 * (mkdir, so it is ours alone), (2) model.onnx when asked for (serialized before (1), so an op
 * ONNX lacks fails before any file exists), weights.safetensors and model.json inside it, each
 * written atomically (temporary file, fsync, rename, fsync of the folder), (3) renameat2 with
 * RENAME_NOREPLACE to <base>/<v>, then fsync of <base>. Until (3) no reader can see the version;
 * after it the folder is complete and durable. RENAME_NOREPLACE is what makes "never
 * overwritten" hold against another exporter too: rename(2) alone would silently replace an
 * empty folder. Where the file system lacks it (EINVAL), a check for the name followed by
 * rename(2) is used, which leaves a window only against a concurrent writer.
 *
 * With version 0 the number is the highest version name under base plus one (any entry named
 * like a version counts, complete or not, so a half-copied folder is not claimed); when the
 * rename loses a race to another exporter, model.json is rewritten with the next number and the
 * rename tried again. Any failure removes the private folder.
 *
 * The exporter holds an flock on its private folder from just after creating it until the
 * rename, so a folder that a killed exporter left behind can be told from one being written:
 * each export first removes the .tmp-<v>-<pid>-<16 hex> folders of its base that no process has
 * locked and whose pid is not a live process here (a folder just made, not yet locked, belongs
 * to a live pid; a lock held from another host keeps its folder too). Other names are left alone.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/cfg_json.h"
#include "model/servable_internal.h"
#include "model/sparse.h"
#include "kiln/version.h"
#include "kiln/mem.h"
#include "kiln/export.h"
#include "kiln/fileio.h"
#include "kiln/safetensors.h"

/* ---- shared with the reader ---- */

const char *kiln_servable_prob_kind(const char *loss) {
    if (!loss) return NULL;
    if (!strcmp(loss, "softmax_cross_entropy")) return "softmax";
    if (!strcmp(loss, "binary_cross_entropy")) return "sigmoid";
    return NULL;
}

int kiln_servable_class_count_ok(const char *prob, int64_t n_outputs, int64_t n) {
    if (!prob) return 0;
    return n == n_outputs || (n_outputs == 1 && n == 2 && !strcmp(prob, "sigmoid"));
}

kiln_status kiln_servable_join(char *out, size_t cap, const char *a, const char *b) {
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return kiln_error(KILN_ERR_INVALID, "export: path %s/%s is longer than %zu bytes", a, b,
                          cap - 1);
    return KILN_OK;
}

/* ---- versions ---- */

int kiln_export_parse_version(const char *name, int64_t *version) {
    if (!name || name[0] < '1' || name[0] > '9') return 0;
    int64_t v = 0;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - (*p - '0')) / 10) return 0;
        v = v * 10 + (*p - '0');
    }
    if (version) *version = v;
    return 1;
}

static int is_file(const char *dir, const char *name) {
    char path[4200];
    struct stat st;
    return kiln_servable_join(path, sizeof path, dir, name) == KILN_OK && stat(path, &st) == 0 &&
           S_ISREG(st.st_mode);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Version names under base: every one (complete = 0) or only complete folders (complete = 1). */
static kiln_status scan(const char *base, int complete, int64_t **out, int *n) {
    *out = NULL, *n = 0;
    DIR *d = opendir(base);
    if (!d) {
        int e = errno;
        return kiln_error(e == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO,
                          "export: cannot read %s: %s", base, strerror(e));
    }
    int cap = 0;
    kiln_status st = KILN_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int64_t v;
        if (!kiln_export_parse_version(e->d_name, &v)) continue;
        if (complete) {
            char dir[4200];
            struct stat sb;
            if (kiln_servable_join(dir, sizeof dir, base, e->d_name) || stat(dir, &sb) ||
                !S_ISDIR(sb.st_mode) || !is_file(dir, KILN_SERVABLE_JSON) ||
                !is_file(dir, KILN_SERVABLE_WEIGHTS))
                continue;
        }
        if (*n == cap) {
            int64_t *grown = realloc(*out, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *grown);
            if (!grown) {
                st = kiln_error(KILN_ERR_NOMEM, "export: out of memory listing %s", base);
                break;
            }
            *out = grown;
        }
        (*out)[(*n)++] = v;
    }
    closedir(d);
    if (st)
        free(*out), *out = NULL, *n = 0;
    else if (*n)
        qsort(*out, (size_t)*n, sizeof **out, cmp_i64);
    return st;
}

kiln_status kiln_export_list_versions(const char *base, int64_t **versions, int *n) {
    if (!base || !versions || !n)
        return kiln_error(KILN_ERR_INVALID, "export: list_versions: NULL argument");
    int64_t *v;
    kiln_status st = scan(base, 1, &v, n);
    *versions = NULL;
    if (st || !*n) return free(v), st;
    if (!(*versions = kiln_alloc((size_t)*n * sizeof *v))) {
        free(v), *n = 0;
        return kiln_error(KILN_ERR_NOMEM, "export: out of memory listing %s", base);
    }
    memcpy(*versions, v, (size_t)*n * sizeof *v);
    free(v);
    return KILN_OK;
}

/* The highest version name under base plus one. */
static kiln_status next_version(const char *base, int64_t *v) {
    int64_t *all;
    int n;
    kiln_status st = scan(base, 0, &all, &n);
    if (st) return st;
    int64_t top = n ? all[n - 1] : 0;
    free(all);
    if (top == INT64_MAX)
        return kiln_error(KILN_ERR_INVALID, "export: %s: no version after %lld", base,
                          (long long)top);
    *v = top + 1;
    return KILN_OK;
}

/* ---- model.json ---- */

static cJSON *tensor_json(const char *name, kiln_shape s) {
    cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray();
    if (!t || !shape) return cJSON_Delete(t), cJSON_Delete(shape), NULL;
    cJSON_AddItemToObject(t, "name", cJSON_CreateString(name));
    cJSON_AddItemToObject(t, "dtype", cJSON_CreateString("FP32"));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(-1));
    for (int i = 1; i < s.ndim; i++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)s.dims[i]));
    cJSON_AddItemToObject(t, "shape", shape);
    return t;
}

static cJSON *floats_json(const float *v, int n) {
    if (!v) return cJSON_CreateNull();
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, kiln_json_number(v[i], 1));
    return a;
}

static cJSON *str_or_null(const char *s) {
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* Everything in model.json but the version, as checked by kiln_export_graph. */
typedef struct {
    const char *name, *prob, *loss;
    const char *const *class_names;
    int n_class_names;
    kiln_normalize norm;
    char created[24];
    cJSON *sparse; /* src.sparse: the "sparse" field (write_weights makes it), else NULL */
} manifest;

/* cJSON's pretty printing indents with tabs, puts one after each colon and spreads an empty
 * object over two lines; two spaces, one space and "{}" read better (tabs never occur inside
 * the strings, which escape them). */
static char *untab(const char *text) {
    size_t n = 0;
    for (const char *p = text; *p; p++) n += *p == '\t' ? 2 : 1;
    char *out = malloc(n + 2), *o = out;
    if (!out) return NULL;
    int line_start = 1;
    for (const char *p = text; *p; p++) {
        if (*p == '{' && p[1] == '\n') { /* "{\n\t\t}" -> "{}" */
            const char *q = p + 2;
            while (*q == '\t') q++;
            if (*q == '}') {
                *o++ = '{', *o++ = '}', p = q, line_start = 0;
                continue;
            }
        }
        if (*p == '\t') {
            *o++ = ' ';
            if (line_start) *o++ = ' ';
            continue;
        }
        line_start = *p == '\n';
        *o++ = *p;
    }
    *o++ = '\n', *o = 0;
    return out;
}

static char *render(const kiln_export_source *src, const manifest *mf, int64_t version) {
    const kiln_model *m = src->model;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddItemToObject(o, "format", cJSON_CreateString(KILN_SERVABLE_FORMAT));
    cJSON_AddItemToObject(o, "format_version", cJSON_CreateNumber(KILN_SERVABLE_FORMAT_VERSION));
    cJSON_AddItemToObject(o, "kiln_version", cJSON_CreateString(KILN_VERSION));
    cJSON_AddItemToObject(o, "name", cJSON_CreateString(mf->name));
    cJSON_AddItemToObject(o, "version", kiln_json_number((double)version, 0));
    cJSON_AddItemToObject(o, "created", cJSON_CreateString(mf->created));
    cJSON *source = cJSON_CreateObject();
    if (source) {
        cJSON_AddItemToObject(source, "run", str_or_null(src->source_run));
        cJSON_AddItemToObject(source, "checkpoint", str_or_null(src->source_checkpoint));
    }
    cJSON_AddItemToObject(o, "source", source);
    cJSON_AddItemToObject(
        o, "task",
        cJSON_CreateString(m->task == KILN_TASK_REGRESSION ? "regression" : "classification"));
    cJSON *ins = cJSON_CreateArray(), *outs = cJSON_CreateArray();
    if (ins) cJSON_AddItemToArray(ins, tensor_json("input", kiln_node_shape(m->input)));
    if (outs) cJSON_AddItemToArray(outs, tensor_json("output", kiln_node_shape(m->output)));
    if (outs && mf->prob)
        cJSON_AddItemToArray(outs, tensor_json("probabilities", kiln_node_shape(m->output)));
    cJSON_AddItemToObject(o, "inputs", ins);
    cJSON_AddItemToObject(o, "outputs", outs);
    if (mf->class_names) {
        cJSON *names = cJSON_CreateArray();
        for (int i = 0; names && i < mf->n_class_names; i++)
            cJSON_AddItemToArray(names, cJSON_CreateString(mf->class_names[i]));
        cJSON_AddItemToObject(o, "class_names", names);
    } else {
        cJSON_AddItemToObject(o, "class_names", cJSON_CreateNull());
    }
    cJSON *pre = cJSON_CreateObject();
    if (pre) {
        int c = mf->norm.channels;
        cJSON_AddItemToObject(pre, "scale", kiln_json_number(mf->norm.scale, 1));
        cJSON_AddItemToObject(pre, "mean", floats_json(c ? mf->norm.mean : NULL, c));
        cJSON_AddItemToObject(pre, "std", floats_json(c ? mf->norm.std : NULL, c));
    }
    cJSON_AddItemToObject(o, "preprocessing", pre);
    cJSON *config = cJSON_CreateObject();
    static const char *const keys[] = {"seed", "model", "loss"};
    int n_config = 0;
    for (int i = 0; config && i < 3; i++) {
        const kiln_cfg *c = kiln_cfg_child(src->cfg, keys[i]);
        if (c) cJSON_AddItemToObject(config, keys[i], kiln_cfg_to_json(c)), n_config++;
    }
    cJSON_AddItemToObject(o, "config", config);
    if (mf->sparse) cJSON_AddItemReferenceToObject(o, "sparse", mf->sparse);
    cJSON *onnx = src->onnx ? cJSON_CreateObject() : NULL;
    if (onnx) {
        cJSON_AddItemToObject(onnx, "file", cJSON_CreateString(KILN_ONNX_FILE));
        cJSON_AddItemToObject(onnx, "opset", cJSON_CreateNumber(KILN_ONNX_OPSET));
        cJSON_AddItemToObject(onnx, "ir_version", cJSON_CreateNumber(KILN_ONNX_IR_VERSION));
        cJSON_AddItemToObject(o, "onnx", onnx);
    }
    int n_extra = 0, extra_ok = 1;
    if (src->extra_json) { /* kiln optimize's record: its members move into model.json */
        cJSON *x = cJSON_Parse(src->extra_json);
        extra_ok = cJSON_IsObject(x);
        while (extra_ok && x->child) {
            cJSON *it = cJSON_DetachItemViaPointer(x, x->child);
            cJSON_AddItemToObject(o, it->string, it);
            n_extra++;
        }
        cJSON_Delete(x);
    }
    /* A failed allocation anywhere above left a NULL that the Add calls refused; cJSON_Print
     * then still succeeds, so count what must be there. */
    int complete = extra_ok && cJSON_GetArraySize(o) == 13 + !!src->onnx + !!mf->sparse + n_extra &&
                   (!src->onnx || cJSON_GetArraySize(onnx) == 3) && source && ins && outs &&
                   pre && config &&
                   cJSON_GetArraySize(config) == n_config && cJSON_GetArraySize(pre) == 3;
    char *text = complete ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    char *out = text ? untab(text) : NULL;
    cJSON_free(text);
    return out;
}

/* ---- checks ---- */

static kiln_status check_source(const kiln_export_source *src, manifest *mf) {
    if (!src || !src->model || !src->model->graph || !src->model->input || !src->model->output ||
        !src->cfg)
        return kiln_error(KILN_ERR_INVALID, "export: need a built model and its config");
    const kiln_model *m = src->model;
    if (!kiln_graph_params(m->graph))
        return kiln_error(KILN_ERR_INVALID, "export: the model's parameters are not initialized");
    const kiln_cfg *loss = kiln_cfg_child(src->cfg, "loss"),
                   *model = kiln_cfg_child(src->cfg, "model");
    if (!model || model->type != KILN_CFG_MAP || !loss || loss->type != KILN_CFG_MAP ||
        loss->n_items != 1)
        return kiln_error(
            KILN_ERR_INVALID,
            "export: the config has no resolved model: and loss: (call kiln_config_resolve)");
    mf->loss = loss->items[0]->key;
    mf->prob = kiln_servable_prob_kind(mf->loss);
    mf->name = src->name ? src->name : kiln_cfg_str(src->cfg, "experiment", "default");
    if (!mf->name[0]) return kiln_error(KILN_ERR_INVALID, "export: the model's name is empty");

    /* preprocessing */
    kiln_normalize *nm = &mf->norm;
    *nm = src->preprocessing;
    if (nm->scale == 0) nm->scale = 1;
    if (!isfinite(nm->scale))
        return kiln_error(KILN_ERR_INVALID, "export: preprocessing scale %g is not finite",
                          nm->scale);
    kiln_shape is = kiln_node_shape(m->input);
    int64_t row = kiln_shape_numel(&is);
    if (nm->channels < 0 || (nm->channels > 0 && (!nm->mean || !nm->std || row % nm->channels)))
        return kiln_error(KILN_ERR_INVALID,
                          "export: preprocessing needs mean and std for %d channels that divide "
                          "the input row of %lld values",
                          nm->channels, (long long)row);
    for (int c = 0; c < nm->channels; c++)
        if (!isfinite(nm->mean[c]) || !isfinite(nm->std[c]) || !(nm->std[c] > 0))
            return kiln_error(
                KILN_ERR_INVALID,
                "export: preprocessing channel %d has mean %g std %g (need finite, std > 0)", c,
                nm->mean[c], nm->std[c]);

    /* class names */
    mf->class_names = src->class_names, mf->n_class_names = src->n_class_names;
    if (mf->class_names && !mf->prob)
        return kiln_error(KILN_ERR_INVALID,
                          "export: class names given for a model without probabilities (loss %s)",
                          mf->loss);
    if (mf->class_names)
        for (int i = 0; i < mf->n_class_names; i++)
            if (!mf->class_names[i])
                return kiln_error(KILN_ERR_INVALID, "export: class name %d is NULL", i);
    if (mf->class_names && !kiln_servable_class_count_ok(mf->prob, m->n_outputs, mf->n_class_names))
        return kiln_error(KILN_ERR_INVALID, "export: %d class names for a model with %lld outputs",
                          mf->n_class_names, (long long)m->n_outputs);
    return KILN_OK;
}

/* model.class_names of the config as a list (names points into cfg; *n 0 and NULL when none). */
static kiln_status config_class_names(const kiln_export_source *src, manifest *mf,
                                      const char ***names) {
    *names = NULL;
    const kiln_cfg *cn = kiln_cfg_at(src->cfg, "model.class_names");
    if (mf->class_names || !mf->prob || !cn || cn->type != KILN_CFG_SEQ || !cn->n_items)
        return KILN_OK;
    if (!kiln_servable_class_count_ok(mf->prob, src->model->n_outputs, cn->n_items)) {
        char where[300];
        return kiln_error(
            KILN_ERR_INVALID, "%s: model.class_names: %d names for a model with %lld outputs",
            kiln_cfg_where(cn, where, sizeof where), cn->n_items, (long long)src->model->n_outputs);
    }
    if (!(*names = calloc((size_t)cn->n_items, sizeof **names)))
        return kiln_error(KILN_ERR_NOMEM, "export: out of memory");
    for (int i = 0; i < cn->n_items; i++)
        (*names)[i] = cn->items[i]->text ? cn->items[i]->text : "";
    mf->class_names = *names, mf->n_class_names = cn->n_items;
    return KILN_OK;
}

/* ---- files ---- */

/* src.sparse: the parameters that are smaller stored compactly become bitmask + values entries
 * (model/sparse.h) and are listed in mf->sparse. */
static kiln_status write_weights(const kiln_export_source *src, manifest *mf, const char *path) {
    kiln_graph *g = src->model->graph;
    int n = kiln_graph_param_count(g), m = 0;
    const float *w = src->weights ? src->weights : kiln_graph_params(g);
    kiln_st_entry *e = calloc((size_t)(2 * n + 1), sizeof *e);
    char **names = calloc((size_t)(2 * n + 1), sizeof *names);
    void **bufs = calloc((size_t)(2 * n + 1), sizeof *bufs);
    cJSON *list = src->sparse ? cJSON_CreateArray() : NULL;
    kiln_status st = e && names && bufs && (list || !src->sparse)
                         ? KILN_OK
                         : kiln_error(KILN_ERR_NOMEM, "export: out of memory");
    for (int i = 0; i < n && !st; i++) {
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        const float *v = w + pi->offset;
        size_t nnz = src->sparse ? kiln_sparse_nonzeros(v, pi->numel) : pi->numel;
        if (!src->sparse || !kiln_sparse_worth(pi->numel, nnz)) {
            e[m++] = (kiln_st_entry){pi->name, KILN_F32, pi->shape, v};
            continue;
        }
        size_t nb = (pi->numel + 7) / 8, len = strlen(pi->name) + 32;
        int k = m;
        names[k] = malloc(len), names[k + 1] = malloc(len);
        bufs[k] = malloc(nb), bufs[k + 1] = malloc((nnz ? nnz : 1) * sizeof(float));
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray();
        if (!names[k] || !names[k + 1] || !bufs[k] || !bufs[k + 1] || !t || !shape) {
            cJSON_Delete(t), cJSON_Delete(shape);
            st = kiln_error(KILN_ERR_NOMEM, "export: out of memory");
            break;
        }
        snprintf(names[k], len, "%s%s", pi->name, KILN_SPARSE_BITMASK);
        snprintf(names[k + 1], len, "%s%s", pi->name, KILN_SPARSE_VALUES);
        kiln_sparse_encode(v, pi->numel, bufs[k], bufs[k + 1]);
        e[m++] = (kiln_st_entry){names[k], KILN_U8, kiln_shape_make(1, (int64_t[]){(int64_t)nb}),
                                 bufs[k]};
        e[m++] = (kiln_st_entry){names[k + 1], KILN_F32,
                                 kiln_shape_make(1, (int64_t[]){(int64_t)nnz}), bufs[k + 1]};
        for (int d = 0; d < pi->shape.ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)pi->shape.dims[d]));
        cJSON_AddItemToObject(t, "name", cJSON_CreateString(pi->name));
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON_AddItemToObject(t, "nonzeros", cJSON_CreateNumber((double)nnz));
        cJSON_AddItemToArray(list, t);
    }
    if (!st && list && cJSON_GetArraySize(list)) {
        if (!(mf->sparse = cJSON_CreateObject()))
            st = kiln_error(KILN_ERR_NOMEM, "export: out of memory");
        else
            cJSON_AddItemToObject(mf->sparse, "format", cJSON_CreateString("bitmask")),
                cJSON_AddItemToObject(mf->sparse, "tensors", list), list = NULL;
    }
    const char *meta[] = {"kiln.format", "1"};
    if (!st) st = kiln_safetensors_write(path, e, m, meta, 1);
    for (int i = 0; names && bufs && i < 2 * n; i++) free(names[i]), free(bufs[i]);
    cJSON_Delete(list);
    free(e), free(names), free(bufs);
    return st;
}

static kiln_status fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return kiln_error(KILN_ERR_IO, "export: cannot fsync %s: %s", dir, strerror(e));
    }
    close(fd);
    return KILN_OK;
}

/* rm -r of a folder holding only files (the private folder of a failed export). */
static void remove_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            char path[4400];
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                kiln_servable_join(path, sizeof path, dir, e->d_name) == KILN_OK)
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Whether name is a private folder's name: .tmp-<digits>-<digits>-<16 hex digits>; its pid. */
static int private_name(const char *name, long *pid) {
    const char *p = name;
    if (strncmp(p, ".tmp-", 5)) return 0;
    p += 5;
    if (!isdigit((unsigned char)*p)) return 0;
    while (isdigit((unsigned char)*p)) p++;
    if (*p++ != '-' || !isdigit((unsigned char)*p)) return 0;
    char *end;
    errno = 0;
    *pid = strtol(p, &end, 10);
    if (errno || *pid <= 0 || *end != '-') return 0;
    p = end + 1;
    for (int i = 0; i < 16; i++)
        if (!isxdigit((unsigned char)p[i])) return 0;
    return p[16] == 0;
}

/* Removes the private folders under base that their exporter left when it was killed (see the
 * top of this file). Best effort: what cannot be removed stays, and the export goes on. */
static void remove_stale(const char *base) {
    DIR *d = opendir(base);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long pid;
        char path[4400];
        if (!private_name(e->d_name, &pid) ||
            kiln_servable_join(path, sizeof path, base, e->d_name) != KILN_OK)
            continue;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) continue;
        int r;
        while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
        }
        int locked_by_other = r != 0 && errno == EWOULDBLOCK; /* other errors: no flock here */
        int pid_alive = kill((pid_t)pid, 0) == 0 || errno == EPERM;
        if (!locked_by_other && !pid_alive) remove_flat(path);
        close(fd); /* drops our lock, if we took it */
    }
    closedir(d);
}

/* Creates the private folder and locks it; the lock's descriptor goes to *lock_fd. */
static kiln_status make_private_dir(const char *base, int64_t v, char *out, size_t cap,
                                    int *lock_fd) {
    for (int tries = 0; tries < 100; tries++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = (uint64_t)time(NULL) * 2654435761u + (uint64_t)tries;
        int n = snprintf(out, cap, "%s/.tmp-%lld-%ld-%016llx", base, (long long)v, (long)getpid(),
                         (unsigned long long)r);
        if (n < 0 || (size_t)n >= cap)
            return kiln_error(KILN_ERR_INVALID, "export: path under %s is too long", base);
        if (mkdir(out, 0777) == 0) {
            *lock_fd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (*lock_fd >= 0) flock(*lock_fd, LOCK_EX); /* new and ours: never waits */
            return KILN_OK;
        }
        if (errno != EEXIST)
            return kiln_error(KILN_ERR_IO, "export: cannot create %s: %s", out, strerror(errno));
    }
    return kiln_error(KILN_ERR_IO, "export: cannot create a temporary folder in %s", base);
}

/* rename(from, to) unless to exists: 0, or -1 with errno (EEXIST / ENOTEMPTY when it does). */
static int rename_noreplace(const char *from, const char *to) {
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
    struct stat st;
    if (lstat(to, &st) == 0) return errno = EEXIST, -1;
    return rename(from, to);
}

static kiln_status exists_error(const char *dir) {
    return kiln_error(KILN_ERR_INVALID,
                      "export: %s already exists (an exported version is never replaced: "
                      "choose another number, or let export take the next)",
                      dir);
}

kiln_status kiln_export_graph(const kiln_export_source *src, const char *base_dir, int64_t version,
                              int64_t *version_out) {
    manifest mf;
    memset(&mf, 0, sizeof mf);
    if (!base_dir || !base_dir[0]) return kiln_error(KILN_ERR_INVALID, "export: no base folder");
    if (version < 0)
        return kiln_error(KILN_ERR_INVALID,
                          "export: version %lld: must be positive (or 0 for the next)",
                          (long long)version);
    kiln_status st = check_source(src, &mf);
    const char **cfg_names = NULL;
    if (!st) st = config_class_names(src, &mf, &cfg_names);
    void *onnx = NULL; /* model.onnx, made before any file: an op ONNX lacks fails here */
    size_t onnx_len = 0;
    if (!st && src->onnx) {
        kiln_onnx_opts oo = {mf.name, mf.prob, &mf.norm, src->weights};
        st = kiln_onnx_export(src->model, &oo, &onnx, &onnx_len);
    }
    if (st) return free(cfg_names), st;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(mf.created, sizeof mf.created, "%Y-%m-%dT%H:%M:%SZ", &tm);

    char tmp[4096], final[4096], path[4200], name[24];
    int64_t v = version;
    int lock_fd = -1;
    if (!(st = kiln_mkdirs(base_dir))) {
        remove_stale(base_dir);
        if (v == 0) st = next_version(base_dir, &v);
        snprintf(name, sizeof name, "%lld", (long long)v);
        struct stat sb;
        if (!st && !(st = kiln_servable_join(final, sizeof final, base_dir, name)) && version &&
            lstat(final, &sb) == 0)
            st = exists_error(final);
    }
    if (!st) st = make_private_dir(base_dir, v, tmp, sizeof tmp, &lock_fd);
    if (st) {
        free(cfg_names), free(onnx);
        return st;
    }
    if (onnx && !(st = kiln_servable_join(path, sizeof path, tmp, KILN_ONNX_FILE)))
        st = kiln_file_write_atomic(path, onnx, onnx_len);
    free(onnx);
    if (!st && !(st = kiln_servable_join(path, sizeof path, tmp, KILN_SERVABLE_WEIGHTS)))
        st = write_weights(src, &mf, path);
    for (int tries = 0; !st; tries++) {
        char *text = render(src, &mf, v);
        if (!text) {
            st = kiln_error(KILN_ERR_NOMEM, "export: out of memory writing model.json");
            break;
        }
        if (!(st = kiln_servable_join(path, sizeof path, tmp, KILN_SERVABLE_JSON)))
            st = kiln_file_write_atomic(path, text, strlen(text));
        free(text);
        if (st) break;
        if (rename_noreplace(tmp, final) == 0) break;
        int e = errno;
        if ((e != EEXIST && e != ENOTEMPTY) || version || tries >= 100) {
            st = e == EEXIST || e == ENOTEMPTY
                     ? exists_error(final)
                     : kiln_error(KILN_ERR_IO, "export: cannot rename %s to %s: %s", tmp, final,
                                  strerror(e));
            break;
        }
        int64_t next; /* another exporter took v: the next free number, and model.json again */
        if ((st = next_version(base_dir, &next))) break;
        v = next > v ? next : v + 1;
        snprintf(name, sizeof name, "%lld", (long long)v);
        st = kiln_servable_join(final, sizeof final, base_dir, name);
    }
    free(cfg_names);
    cJSON_Delete(mf.sparse);
    if (st) remove_flat(tmp);
    if (lock_fd >= 0) close(lock_fd); /* the folder is renamed or removed: its lock can go */
    if (st) return st;
    if ((st = fsync_dir(base_dir))) return st;
    if (version_out) *version_out = v;
    return KILN_OK;
}

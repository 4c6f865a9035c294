/* image_folder.c — the image source: class folders or a manifest listed at open, images decoded
 * when a row is read (see kiln_data_load_images in kiln/data.h).
 *
 * What stays in memory: the file paths (one blob of NUL-terminated strings and their offsets),
 * the labels (kept by the dataset) and a small pool of decoders; never pixels, except in the
 * optional decoded cache that dataset.c keeps.
 *
 * Threads: read() may run on many threads at once. The only shared mutable state is the pool of
 * idle decoders, behind a mutex: a reader takes one (or makes one when the pool is empty),
 * decodes with it outside the lock, and puts it back. So the pool holds at most as many decoders
 * as there were concurrent readers, and decoding itself never waits on another thread.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "data/data_internal.h"

#define MAX_DEPTH 16

/* ---- a growable list of strings in one blob ---- */

typedef struct {
    char *blob;
    size_t len, cap;
    int64_t *off; /* [n] */
    int64_t n, ncap;
} strlist;

static int sl_push(strlist *l, const char *a, const char *b) { /* appends a + b */
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    if (l->len + la + lb + 1 > l->cap) {
        size_t c = l->cap ? l->cap : 4096;
        while (c < l->len + la + lb + 1) c *= 2;
        char *p = realloc(l->blob, c);
        if (!p) return -1;
        l->blob = p, l->cap = c;
    }
    if (l->n == l->ncap) {
        int64_t c = l->ncap ? l->ncap * 2 : 256;
        int64_t *p = realloc(l->off, (size_t)c * sizeof *p);
        if (!p) return -1;
        l->off = p, l->ncap = c;
    }
    l->off[l->n++] = (int64_t)l->len;
    memcpy(l->blob + l->len, a, la);
    if (lb) memcpy(l->blob + l->len + la, b, lb);
    l->len += la + lb;
    l->blob[l->len++] = 0;
    return 0;
}

static const char *sl_at(const strlist *l, int64_t i) {
    return l->blob + l->off[i];
}

static void sl_free(strlist *l) {
    free(l->blob), free(l->off);
    memset(l, 0, sizeof *l);
}

/* ---- the source ---- */

typedef struct {
    strlist paths;
    kiln_image_spec spec;
    pthread_mutex_t mu;
    kiln_image_decoder **idle; /* [n_idle] */
    int n_idle, cap_idle;
} img_src;

static kiln_status src_read(void *ctx, int64_t r, void *x) {
    img_src *s = ctx;
    kiln_image_decoder *d = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->n_idle) d = s->idle[--s->n_idle];
    pthread_mutex_unlock(&s->mu);
    kiln_status st = d ? KILN_OK : kiln_image_decoder_new(&d);
    if (st) return st;
    st = kiln_image_load(d, sl_at(&s->paths, r), &s->spec, x);
    pthread_mutex_lock(&s->mu);
    if (s->n_idle == s->cap_idle) {
        int c = s->cap_idle ? s->cap_idle * 2 : 8;
        kiln_image_decoder **p = realloc(s->idle, (size_t)c * sizeof *p);
        if (p) s->idle = p, s->cap_idle = c;
    }
    if (s->n_idle < s->cap_idle) s->idle[s->n_idle++] = d, d = NULL;
    pthread_mutex_unlock(&s->mu);
    kiln_image_decoder_free(d); /* only when the pool could not grow */
    return st;
}

static const char *src_name(void *ctx, int64_t r) {
    img_src *s = ctx;
    return r >= 0 && r < s->paths.n ? sl_at(&s->paths, r) : NULL;
}

static void src_close(void *ctx) {
    img_src *s = ctx;
    if (!s) return;
    for (int i = 0; i < s->n_idle; i++) kiln_image_decoder_free(s->idle[i]);
    free(s->idle);
    pthread_mutex_destroy(&s->mu);
    sl_free(&s->paths);
    free(s);
}

static kiln_status src_encoded(void *ctx, int64_t r, kiln_image_decoder *d, const void **data,
                               size_t *len) {
    img_src *s = ctx;
    return kiln_image_read_file(d, sl_at(&s->paths, r), data, len);
}

static const kiln_source_ops IMAGE_OPS = {"images", src_read, src_name, src_close, src_encoded};

/* ---- listing class folders ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir (not "." or "..", nor hidden), sorted; *n of them. */
static kiln_status list_dir(const char *dir, char ***names, int64_t *n) {
    *names = NULL, *n = 0;
    DIR *dp = opendir(dir);
    if (!dp)
        return kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO,
                          "%s: cannot open the folder: %s", dir, strerror(errno));
    char **v = NULL;
    int64_t cap = 0;
    kiln_status st = KILN_OK;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(v, (size_t)cap * sizeof *p);
            if (!p) break;
            v = p;
        }
        if (!(v[*n] = strdup(e->d_name))) break;
        ++*n;
    }
    if (e) st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory listing the folder", dir);
    closedir(dp);
    if (st) {
        for (int64_t i = 0; i < *n; i++) free(v[i]);
        free(v);
        *n = 0;
        return st;
    }
    if (*n) qsort(v, (size_t)*n, sizeof *v, cmp_str);
    *names = v;
    return KILN_OK;
}

static void free_list(char **v, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Appends the image files under dir (its path, sorted, subfolders included) to out. */
static kiln_status walk(const char *dir, int depth, strlist *out) {
    char **names;
    int64_t n;
    kiln_status st = list_dir(dir, &names, &n);
    if (st) return st;
    char path[PATH_MAX];
    for (int64_t i = 0; i < n && !st; i++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) {
            st = kiln_error(KILN_ERR_IO, "%s/%s: path too long", dir, names[i]);
            break;
        }
        struct stat sb;
        if (stat(path, &sb) != 0) continue; /* a dangling link */
        if (S_ISDIR(sb.st_mode)) {
            if (depth >= MAX_DEPTH)
                st = kiln_error(KILN_ERR_FORMAT,
                                "%s: folders nested more than %d deep (a link "
                                "loop?)",
                                path, MAX_DEPTH);
            else
                st = walk(path, depth + 1, out);
        } else if (S_ISREG(sb.st_mode) && kiln_image_has_extension(names[i])) {
            if (sl_push(out, path, NULL)) st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", dir);
        }
    }
    free_list(names, n);
    return st;
}

typedef struct {
    const char *name;
    int id;
} named;

static int cmp_named(const void *a, const void *b) {
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* classes [n] sorted by name, for class_id (malloc'd; NULL when out of memory). */
static named *class_index(const char *const *classes, int n) {
    named *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) return NULL;
    for (int i = 0; i < n; i++) idx[i] = (named){classes[i] ? classes[i] : "", i};
    qsort(idx, (size_t)n, sizeof *idx, cmp_named);
    return idx;
}

/* The id of name in idx [n], or -1. */
static int class_id(const named *idx, int n, const char *name) {
    named key = {name, 0}, *hit = bsearch(&key, idx, (size_t)n, sizeof *idx, cmp_named);
    return hit ? hit->id : -1;
}

typedef struct {
    int32_t *y;
    int64_t ycap;
    char **names; /* [num] this split's own class names (malloc'd), or NULL */
    int num;
} labels;

static int grow_y(labels *lb, int64_t need) {
    if (need <= lb->ycap) return 0;
    int64_t c = lb->ycap ? lb->ycap * 2 : 1024;
    while (c < need) c *= 2;
    int32_t *p = realloc(lb->y, (size_t)c * sizeof *p);
    if (!p) return -1;
    lb->y = p, lb->ycap = c;
    return 0;
}

static kiln_status list_folder(const kiln_image_source_options *o, strlist *paths, labels *lb) {
    const char *root = o->root;
    char **cls;
    int64_t ncls;
    kiln_status st = list_dir(root, &cls, &ncls);
    if (st) return st;
    int64_t nd = 0; /* keep only folders */
    char path[PATH_MAX];
    for (int64_t i = 0; i < ncls; i++) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", root, cls[i]);
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            cls[nd++] = cls[i];
        else
            free(cls[i]);
    }
    ncls = nd;
    if (ncls == 0) {
        free(cls);
        return kiln_error(KILN_ERR_FORMAT, "%s: no class folders (expected %s/<class>/<images>)",
                          root, root);
    }
    if (!o->classes && ncls > KILN_DATA_MAX_CLASSES) {
        free_list(cls, ncls);
        return kiln_error(KILN_ERR_FORMAT, "%s: %lld class folders (at most %d)", root,
                          (long long)ncls, KILN_DATA_MAX_CLASSES);
    }
    named *idx = o->classes ? class_index(o->classes, o->num_classes) : NULL;
    if (o->classes && !idx) st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", root);
    for (int64_t c = 0; c < ncls && !st; c++) {
        int id = (int)c;
        if (o->classes && (id = class_id(idx, o->num_classes, cls[c])) < 0) {
            st = kiln_error(KILN_ERR_FORMAT,
                            "%s: class folder '%s' is not one of the %d classes of the training "
                            "data",
                            root, cls[c], o->num_classes);
            break;
        }
        int64_t before = paths->n;
        snprintf(path, sizeof path, "%s/%s", root, cls[c]);
        if ((st = walk(path, 1, paths))) break;
        if (grow_y(lb, paths->n)) {
            st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", root);
            break;
        }
        for (int64_t i = before; i < paths->n; i++) lb->y[i] = id;
    }
    free(idx);
    if (!st && paths->n == 0)
        st = kiln_error(KILN_ERR_FORMAT,
                        "%s: no image files (.jpg .jpeg .png .bmp .gif) in its %lld class "
                        "folder%s",
                        root, (long long)ncls, ncls == 1 ? "" : "s");
    if (st || o->classes) {
        free_list(cls, ncls);
        return st;
    }
    lb->names = cls, lb->num = (int)ncls;
    return KILN_OK;
}

/* ---- manifests ---- */

/* The folder of a file path ("." when it has none), into dir [cap]. */
static void folder_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, cap, ".");
    else if (slash == path)
        snprintf(dir, cap, "/");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

static int push_path(strlist *paths, const char *dir, const char *p) {
    if (p[0] == '/') return sl_push(paths, p, NULL);
    char pre[PATH_MAX + 1];
    snprintf(pre, sizeof pre, "%s/", dir);
    return sl_push(paths, pre, p);
}

static int is_jsonl(const char *path, const char *text) {
    size_t n = strlen(path);
    if ((n > 6 && !strcmp(path + n - 6, ".jsonl")) || (n > 5 && !strcmp(path + n - 5, ".json")))
        return 1;
    if (n > 4 && !strcmp(path + n - 4, ".csv")) return 0;
    while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r') text++;
    return *text == '{';
}

/* Room for need entries in *lab and *lline (both of capacity *cap). */
static int grow_rows(char ***lab, int64_t **lline, int64_t *cap, int64_t need) {
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap * 2 : 1024;
    char **a = realloc(*lab, (size_t)c * sizeof *a);
    if (a) *lab = a;
    int64_t *b = a ? realloc(*lline, (size_t)c * sizeof *b) : NULL;
    if (b) *lline = b;
    if (!a || !b) return -1;
    *cap = c;
    return 0;
}

/* Reads the manifest into paths, label strings lab [n] (pointing into *text or *store) and their
 * lines. */
static kiln_status read_manifest(const char *path, strlist *paths, char ***lab, int64_t **lline,
                                 char **text, strlist *store) {
    kiln_dfile f;
    size_t len = 0;
    kiln_status st = kiln_dfile_open(&f, path);
    if (st) return st;
    st = kiln_dfile_read_rest(&f, text, &len);
    kiln_dfile_close(&f);
    if (st) return st;
    char dir[PATH_MAX];
    folder_of(path, dir, sizeof dir);
    int64_t cap = 0, n = 0;
    char *t = *text;
    if (len >= 3 && !memcmp(t, "\xEF\xBB\xBF", 3)) t += 3;
    if (is_jsonl(path, t)) {
        int64_t line = 0;
        for (char *p = t; *p && !st;) {
            char *e = strchr(p, '\n');
            if (e) *e = 0;
            line++;
            char *q = p;
            while (*q == ' ' || *q == '\t' || *q == '\r') q++;
            if (*q) {
                cJSON *o = cJSON_Parse(q);
                const cJSON *pv = o ? cJSON_GetObjectItemCaseSensitive(o, "path") : NULL;
                const cJSON *lv = o ? cJSON_GetObjectItemCaseSensitive(o, "label") : NULL;
                char num[32];
                const char *ls = NULL;
                if (cJSON_IsString(lv))
                    ls = lv->valuestring;
                else if (cJSON_IsNumber(lv) && lv->valuedouble == (double)(int64_t)lv->valuedouble)
                    snprintf(num, sizeof num, "%lld", (long long)lv->valuedouble), ls = num;
                if (!cJSON_IsObject(o))
                    st = kiln_error(KILN_ERR_FORMAT, "%s:%lld: not a JSON object", path,
                                    (long long)line);
                else if (!cJSON_IsString(pv) || !pv->valuestring[0])
                    st = kiln_error(KILN_ERR_FORMAT, "%s:%lld: needs \"path\": a file name", path,
                                    (long long)line);
                else if (!ls)
                    st = kiln_error(KILN_ERR_FORMAT,
                                    "%s:%lld: needs \"label\": a string or an integer", path,
                                    (long long)line);
                else if (grow_rows(lab, lline, &cap, n + 1) ||
                         push_path(paths, dir, pv->valuestring) || sl_push(store, ls, NULL))
                    st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
                else
                    (*lline)[n++] = line;
                cJSON_Delete(o);
            }
            p = e ? e + 1 : p + strlen(p);
        }
        for (int64_t i = 0; !st && i < n; i++) (*lab)[i] = (char *)sl_at(store, i);
    } else {
        kiln_csv_tok c = {path, t, *text + len, 1, ',', NULL, NULL, 0, 0, KILN_OK};
        int r = kiln_csv_next(&c), pc = -1, lc = -1, ncol = c.nfield;
        for (int j = 0; r > 0 && j < c.nfield; j++) {
            if (!strcmp(c.field[j], "path")) pc = j;
            if (!strcmp(c.field[j], "label")) lc = j;
        }
        if (r < 0)
            st = c.err;
        else if (r == 0)
            st = kiln_error(KILN_ERR_FORMAT, "%s: empty manifest (no header)", path);
        else if (pc < 0 || lc < 0)
            st = kiln_error(KILN_ERR_FORMAT,
                            "%s:1: the header must name the columns 'path' and 'label'", path);
        while (!st && (r = kiln_csv_next(&c)) > 0) {
            int64_t line = c.fline[0];
            if (c.nfield != ncol)
                st = kiln_error(KILN_ERR_FORMAT, "%s:%lld: %d fields, but the header has %d", path,
                                (long long)line, c.nfield, ncol);
            else if (!c.field[pc][0])
                st = kiln_error(KILN_ERR_FORMAT, "%s:%lld: the path is empty", path,
                                (long long)line);
            else if (grow_rows(lab, lline, &cap, n + 1) || push_path(paths, dir, c.field[pc]))
                st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
            else
                (*lab)[n] = c.field[lc], (*lline)[n++] = line;
        }
        if (!st && r < 0) st = c.err;
        free(c.field), free(c.fline);
    }
    if (!st && n == 0) st = kiln_error(KILN_ERR_FORMAT, "%s: no images listed", path);
    return st;
}

static kiln_status manifest_labels(const kiln_image_source_options *o, const strlist *paths,
                                   char **lab, const int64_t *lline, labels *lb) {
    int64_t n = paths->n;
    if (grow_y(lb, n)) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", o->manifest);
    if (!o->classes) {
        kiln_csv_tok c = {.path = o->manifest};
        return kiln_csv_label_ids(&c, lab, lline, n, lb->y, &lb->names, &lb->num);
    }
    named *idx = class_index(o->classes, o->num_classes);
    if (!idx) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", o->manifest);
    kiln_status st = KILN_OK;
    for (int64_t i = 0; i < n && !st; i++)
        if ((lb->y[i] = class_id(idx, o->num_classes, lab[i])) < 0)
            st = kiln_error(KILN_ERR_FORMAT,
                            "%s:%lld: label '%s' is not one of the %d classes of the training data",
                            o->manifest, (long long)lline[i], lab[i], o->num_classes);
    free(idx);
    return st;
}

kiln_status kiln_data_load_images(const kiln_image_source_options *o, kiln_dataset **out) {
    *out = NULL;
    if (!o || !o->root == !o->manifest)
        return kiln_error(KILN_ERR_INVALID, "images: give a folder or a manifest (one of them)");
    const char *where = o->root ? o->root : o->manifest;
    kiln_status st = kiln_image_spec_check(&o->spec);
    if (st) {
        kiln_error_prefix("%s", where);
        return st;
    }
    if (o->classes && (o->num_classes < 1 || o->num_classes > KILN_DATA_MAX_CLASSES))
        return kiln_error(KILN_ERR_INVALID, "%s: %d training classes", where, o->num_classes);
    img_src *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", where);
    pthread_mutex_init(&s->mu, NULL);
    s->spec = o->spec;
    labels lb = {0};
    if (o->root) {
        st = list_folder(o, &s->paths, &lb);
    } else {
        char **lab = NULL, *text = NULL;
        int64_t *lline = NULL;
        strlist store = {0};
        st = read_manifest(o->manifest, &s->paths, &lab, &lline, &text, &store);
        if (!st) st = manifest_labels(o, &s->paths, lab, lline, &lb);
        free(lab), free(lline), free(text), sl_free(&store);
    }
    if (!st && s->paths.n > (int64_t)UINT32_MAX)
        st = kiln_error(KILN_ERR_FORMAT, "%s: %lld images (at most %u)", where,
                        (long long)s->paths.n, UINT32_MAX);
    if (st) {
        src_close(s);
        free(lb.y), free_list(lb.names, lb.num);
        return st;
    }
    const kiln_image_spec *sp = &o->spec;
    kiln_source_desc d = {
        .rows = s->paths.n,
        .x_dtype = KILN_U8,
        .x_shape = kiln_shape_make(3, (const int64_t[]){sp->channels, sp->out_h, sp->out_w}),
        .y_kind = KILN_LABEL_CLASS,
        .y_width = 1,
        .y = lb.y,
        .num_classes = o->classes ? o->num_classes : lb.num,
        .class_names = o->classes ? o->classes : (const char *const *)lb.names,
        .ops = &IMAGE_OPS,
        .ctx = s,
        .cache_bytes = o->cache_bytes,
    };
    st = kiln_dataset_from_source(&d, out); /* closes s on failure */
    free(lb.y), free_list(lb.names, lb.num);
    if (st) kiln_error_prefix("%s", where);
    return st;
}

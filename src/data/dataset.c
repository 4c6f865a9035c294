/* dataset.c — datasets: in-memory roots that own arrays, source roots that read rows on demand,
 * views that list rows of a root, reference counting, the seeded permutation and the validation
 * split (see kiln/data.h).
 *
 * Invariants: a root has rows == NULL and root == NULL; a view has rows [n] (each a storage row
 * of its root, < the root's n) and root != NULL, and its metadata, array and ops pointers equal
 * the root's. Views of views point straight at the root, so lookups are one indirection deep.
 * The reference count is atomic so that a loader or view may be freed on any thread.
 *
 * A source root's decoded cache: storage row r < cache_rows has a state byte, 0 (empty) ->
 * 1 (one thread is filling it) -> 2 (filled, never changes again). A reader that sees 2
 * (acquire) copies the cached bytes; otherwise it decodes, and the one thread that wins the
 * 0 -> 1 exchange stores its bytes and publishes 2 (release). Others never wait: they use the
 * row they decoded themselves, which is byte-identical.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "kiln/rng.h"

static kiln_status make_view(const kiln_dataset *ds, int64_t *rows, int64_t n, kiln_dataset **out);

static void free_names(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* kiln_ds_adopt, and the root of a dataset read on demand (from_source: x is NULL, the rows
 * come from ops; see kiln_dataset_from_source). */
static kiln_status adopt(kiln_dataset **out, const char *what, int64_t n, kiln_dtype x_dtype,
                         kiln_shape x_shape, void *x, int from_source, kiln_label_kind y_kind,
                         int64_t y_width, void *y, int num_classes, char **names) {
    kiln_status st = KILN_OK;
    char sbuf[96];
    *out = NULL;
    int64_t numel = 1;
    for (int i = 0; i < x_shape.ndim && i < KILN_MAX_DIMS; i++)
        numel *= x_shape.dims[i] > 0 ? x_shape.dims[i] : 0;
    if (n <= 0 || n > (int64_t)UINT32_MAX)
        st = kiln_error(KILN_ERR_FORMAT, "%s: %lld rows (need 1 to %u)", what, (long long)n,
                        UINT32_MAX);
    else if (x_dtype != KILN_U8 && x_dtype != KILN_F32)
        st = kiln_error(KILN_ERR_INVALID, "%s: features must be F32 or U8, got %s", what,
                        kiln_dtype_name(x_dtype));
    else if (x_shape.ndim < 1 || x_shape.ndim > KILN_MAX_DIMS - 1 || numel <= 0)
        st = kiln_error(KILN_ERR_SHAPE, "%s: bad feature shape %s (1 to %d dims, each > 0)", what,
                        kiln_shape_str(&x_shape, sbuf, sizeof sbuf), KILN_MAX_DIMS - 1);
    else if ((!x && !from_source) || (y_kind != KILN_LABEL_NONE && !y))
        st = kiln_error(KILN_ERR_INVALID, "%s: missing %s data", what,
                        x || from_source ? "label" : "feature");
    else if (y_kind == KILN_LABEL_FLOAT && y_width <= 0)
        st = kiln_error(KILN_ERR_SHAPE, "%s: float labels need a width > 0, got %lld", what,
                        (long long)y_width);
    else if ((unsigned)y_kind > KILN_LABEL_FLOAT)
        st = kiln_error(KILN_ERR_INVALID, "%s: unknown label kind %d", what, (int)y_kind);
    else if (num_classes < 0 || num_classes > KILN_DATA_MAX_CLASSES)
        st = kiln_error(KILN_ERR_INVALID, "%s: %d classes (at most %d)", what, num_classes,
                        KILN_DATA_MAX_CLASSES);
    if (st == KILN_OK && y_kind == KILN_LABEL_CLASS) {
        const int32_t *id = y; /* [n] */
        int limit = num_classes ? num_classes : KILN_DATA_MAX_CLASSES, max = -1;
        for (int64_t i = 0; i < n && st == KILN_OK; i++) {
            if (id[i] < 0 || id[i] >= limit)
                st =
                    kiln_error(KILN_ERR_FORMAT, "%s: row %lld has class id %d (must be in [0, %d))",
                               what, (long long)i, (int)id[i], limit);
            max = id[i] > max ? id[i] : max;
        }
        if (!num_classes) num_classes = max + 1;
    }
    kiln_dataset *ds = st == KILN_OK ? calloc(1, sizeof *ds) : NULL;
    if (st == KILN_OK && !ds) st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", what);
    if (st != KILN_OK) {
        free(x), free(y), free_names(names, num_classes);
        return st;
    }
    atomic_init(&ds->refs, 1);
    ds->n = n;
    ds->x_dtype = x_dtype, ds->x_shape = x_shape, ds->x_numel = numel, ds->x = x;
    ds->row_bytes = numel * (int64_t)kiln_dtype_size(x_dtype);
    ds->y_kind = y_kind;
    ds->y_width = y_kind == KILN_LABEL_CLASS ? 1 : y_kind == KILN_LABEL_FLOAT ? y_width : 0;
    if (y_kind == KILN_LABEL_NONE) free(y), y = NULL;
    if (y_kind != KILN_LABEL_CLASS) free_names(names, num_classes), names = NULL, num_classes = 0;
    ds->y = y, ds->num_classes = num_classes, ds->class_names = names;
    *out = ds;
    return KILN_OK;
}

kiln_status kiln_ds_adopt(kiln_dataset **out, const char *what, int64_t n, kiln_dtype x_dtype,
                          kiln_shape x_shape, void *x, kiln_label_kind y_kind, int64_t y_width,
                          void *y, int num_classes, char **names) {
    return adopt(out, what, n, x_dtype, x_shape, x, 0, y_kind, y_width, y, num_classes, names);
}

kiln_status kiln_dataset_new(const kiln_dataset_desc *d, kiln_dataset **out) {
    *out = NULL;
    if (!d || d->rows <= 0 || !d->x)
        return kiln_error(KILN_ERR_INVALID, "dataset_new: need rows > 0 and feature data");
    if (d->x_dtype != KILN_U8 && d->x_dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "dataset_new: features must be F32 or U8, got %s",
                          kiln_dtype_name(d->x_dtype));
    int ndim = d->x_shape.ndim;
    int64_t numel = ndim >= 1 && ndim < KILN_MAX_DIMS ? kiln_shape_numel(&d->x_shape) : 0;
    for (int i = 0; i < ndim && numel > 0; i++)
        if (d->x_shape.dims[i] <= 0) numel = 0;
    if (numel <= 0)
        return kiln_error(KILN_ERR_SHAPE,
                          "dataset_new: bad feature shape (%d dims; 1 to %d, each > 0)", ndim,
                          KILN_MAX_DIMS - 1);
    int64_t yw = d->y_kind == KILN_LABEL_CLASS ? 1 : d->y_kind == KILN_LABEL_FLOAT ? d->y_width : 0;
    if (d->y_kind != KILN_LABEL_NONE && (!d->y || yw <= 0))
        return kiln_error(KILN_ERR_INVALID, "dataset_new: labels need data and a width > 0");
    size_t xb = (size_t)d->rows * (size_t)numel * kiln_dtype_size(d->x_dtype);
    size_t yb = (size_t)d->rows * (size_t)yw * 4;
    void *x = malloc(xb), *y = yb ? malloc(yb) : NULL;
    char **names =
        d->class_names && d->num_classes > 0 ? calloc((size_t)d->num_classes, sizeof *names) : NULL;
    int fail = !x || (yb && !y) || (d->class_names && d->num_classes > 0 && !names);
    for (int i = 0; names && !fail && i < d->num_classes; i++)
        fail = !(names[i] = strdup(d->class_names[i] ? d->class_names[i] : ""));
    if (fail) {
        free(x), free(y), free_names(names, d->num_classes);
        return kiln_error(KILN_ERR_NOMEM, "dataset_new: out of memory (%zu bytes)", xb + yb);
    }
    memcpy(x, d->x, xb);
    if (yb) memcpy(y, d->y, yb);
    return kiln_ds_adopt(out, "dataset_new", d->rows, d->x_dtype, d->x_shape, x, d->y_kind, yw, y,
                         d->y_kind == KILN_LABEL_CLASS ? d->num_classes : 0, names);
}

void kiln_dataset_free(kiln_dataset *ds) {
    if (!ds || atomic_fetch_sub(&ds->refs, 1) != 1) return;
    if (ds->root) {
        free(ds->rows);
        kiln_dataset_free(ds->root);
    } else {
        if (ds->ops && ds->ops->close) ds->ops->close(ds->ctx);
        free(ds->cache), free((void *)ds->cache_st);
        free(ds->x), free(ds->y);
        free_names(ds->class_names, ds->num_classes);
    }
    free(ds);
}

kiln_status kiln_dataset_from_source(const kiln_source_desc *d, kiln_dataset **out) {
    *out = NULL;
    if (!d || !d->ops || !d->ops->read) {
        if (d && d->ops && d->ops->close) d->ops->close(d->ctx);
        return kiln_error(KILN_ERR_INVALID, "dataset_from_source: no source operations");
    }
    const char *what = d->ops->kind ? d->ops->kind : "source";
    int64_t n = d->rows, yw = d->y_kind == KILN_LABEL_CLASS   ? 1
                              : d->y_kind == KILN_LABEL_FLOAT ? d->y_width
                                                              : 0;
    kiln_status st = KILN_OK;
    void *y = NULL;
    char **names = NULL;
    size_t yb = n > 0 && yw > 0 ? (size_t)n * (size_t)yw * 4 : 0;
    if (d->y_kind != KILN_LABEL_NONE && (!d->y || yw <= 0 || n <= 0))
        st = kiln_error(KILN_ERR_INVALID, "%s: labels need data and a width > 0", what);
    else if (yb && !(y = malloc(yb)))
        st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory for labels", what);
    if (!st && d->class_names && d->num_classes > 0 && d->y_kind == KILN_LABEL_CLASS) {
        names = calloc((size_t)d->num_classes, sizeof *names);
        int fail = !names;
        for (int i = 0; !fail && i < d->num_classes; i++)
            fail = !(names[i] = strdup(d->class_names[i] ? d->class_names[i] : ""));
        if (fail) st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory for class names", what);
    }
    if (st) {
        free(y), free_names(names, d->class_names ? d->num_classes : 0);
        if (d->ops->close) d->ops->close(d->ctx);
        return st;
    }
    if (yb) memcpy(y, d->y, yb);
    kiln_dataset *ds = NULL; /* adopt checks the rest (and frees y and names on failure) */
    st = adopt(&ds, what, n, d->x_dtype, d->x_shape, NULL, 1, d->y_kind, yw, y,
               d->y_kind == KILN_LABEL_CLASS ? d->num_classes : 0, names);
    if (st) {
        if (d->ops->close) d->ops->close(d->ctx);
        return st;
    }
    ds->ops = d->ops, ds->ctx = d->ctx;
    if (d->cache_bytes > 0) {
        int64_t rows = d->cache_bytes / ds->row_bytes;
        rows = rows < n ? rows : n;
        if (rows > 0) {
            ds->cache = malloc((size_t)(rows * ds->row_bytes));
            ds->cache_st = calloc((size_t)rows, 1);
            if (!ds->cache || !ds->cache_st) {
                kiln_dataset_free(ds);
                return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for a cache of %lld rows",
                                  what, (long long)rows);
            }
            ds->cache_rows = rows;
        }
    }
    *out = ds;
    return KILN_OK;
}

kiln_status kiln_ds_read(const kiln_dataset *ds, int64_t r, void *x) {
    if (ds->x) {
        memcpy(x, (const char *)ds->x + r * ds->row_bytes, (size_t)ds->row_bytes);
        return KILN_OK;
    }
    const kiln_dataset *root = ds->root ? ds->root : ds;
    if (r >= root->cache_rows) return root->ops->read(root->ctx, r, x);
    _Atomic uint8_t *state = &root->cache_st[r];
    uint8_t *slot = root->cache + r * root->row_bytes;
    if (atomic_load_explicit(state, memory_order_acquire) == 2) {
        memcpy(x, slot, (size_t)root->row_bytes);
        return KILN_OK;
    }
    kiln_status st = root->ops->read(root->ctx, r, x);
    if (st) return st;
    uint8_t empty = 0;
    if (atomic_compare_exchange_strong(state, &empty, 1)) {
        memcpy(slot, x, (size_t)root->row_bytes);
        atomic_store_explicit(state, 2, memory_order_release);
    }
    return KILN_OK;
}

kiln_status kiln_dataset_read(const kiln_dataset *ds, int64_t i, void *x) {
    if (i < 0 || i >= ds->n)
        return kiln_error(KILN_ERR_INVALID, "dataset_read: row %lld of %lld", (long long)i,
                          (long long)ds->n);
    return kiln_ds_read(ds, kiln_ds_row(ds, i), x);
}

const char *kiln_dataset_row_name(const kiln_dataset *ds, int64_t i) {
    if (!ds->ops || !ds->ops->name || i < 0 || i >= ds->n) return NULL;
    return ds->ops->name(ds->ctx, kiln_ds_row(ds, i));
}

int kiln_dataset_is_source(const kiln_dataset *ds) {
    return ds->ops != NULL;
}

kiln_status kiln_data_drop_unreadable(const kiln_dataset *ds, kiln_dataset **good,
                                      int64_t *skipped, char *first, size_t cap) {
    *good = NULL, *skipped = 0;
    if (first && cap) first[0] = 0;
    int64_t *keep = malloc((size_t)ds->n * sizeof *keep), nk = 0;
    void *row = malloc((size_t)ds->row_bytes);
    kiln_status st = keep && row ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "data: out of memory");
    for (int64_t i = 0; !st && i < ds->n; i++) {
        kiln_status s = kiln_ds_read(ds, kiln_ds_row(ds, i), row);
        if (s == KILN_OK) {
            keep[nk++] = i;
        } else if (s == KILN_ERR_FORMAT || s == KILN_ERR_IO) {
            if (first && cap && !*skipped) snprintf(first, cap, "%s", kiln_last_error());
            ++*skipped;
        } else {
            st = s;
        }
    }
    free(row);
    if (!st && nk == 0)
        st = kiln_error(KILN_ERR_FORMAT, "data: none of the %lld rows could be read (first: %s)",
                        (long long)ds->n, first && cap ? first : "?");
    if (st) {
        free(keep);
        return st;
    }
    return make_view(ds, keep, nk, good);
}

int64_t kiln_dataset_rows(const kiln_dataset *ds) {
    return ds->n;
}
kiln_shape kiln_dataset_x_shape(const kiln_dataset *ds) {
    return ds->x_shape;
}
kiln_dtype kiln_dataset_x_dtype(const kiln_dataset *ds) {
    return ds->x_dtype;
}
kiln_label_kind kiln_dataset_label_kind(const kiln_dataset *ds) {
    return ds->y_kind;
}
int64_t kiln_dataset_label_width(const kiln_dataset *ds) {
    return ds->y_width;
}
int kiln_dataset_num_classes(const kiln_dataset *ds) {
    return ds->num_classes;
}

const char *kiln_dataset_class_name(const kiln_dataset *ds, int i) {
    if (!ds->class_names || i < 0 || i >= ds->num_classes) return NULL;
    return ds->class_names[i];
}

int64_t kiln_dataset_source_row(const kiln_dataset *ds, int64_t i) {
    return i >= 0 && i < ds->n ? kiln_ds_row(ds, i) : -1;
}

kiln_status kiln_dataset_get(const kiln_dataset *ds, int64_t i, float *x, void *y) {
    if (i < 0 || i >= ds->n)
        return kiln_error(KILN_ERR_INVALID, "dataset_get: row %lld of %lld", (long long)i,
                          (long long)ds->n);
    int64_t r = kiln_ds_row(ds, i), m = ds->x_numel;
    if (x && !ds->x) { /* a source: read the row in its storage dtype, then widen */
        if (ds->x_dtype == KILN_F32) {
            kiln_status st = kiln_ds_read(ds, r, x);
            if (st) return st;
        } else {
            uint8_t *row = malloc((size_t)m);
            if (!row) return kiln_error(KILN_ERR_NOMEM, "dataset_get: out of memory");
            kiln_status st = kiln_ds_read(ds, r, row);
            for (int64_t j = 0; !st && j < m; j++) x[j] = (float)row[j];
            free(row);
            if (st) return st;
        }
    } else if (x && ds->x_dtype == KILN_U8) {
        const uint8_t *s = (const uint8_t *)ds->x + r * m; /* [m] */
        for (int64_t j = 0; j < m; j++) x[j] = (float)s[j];
    } else if (x) {
        memcpy(x, (const float *)ds->x + r * m, (size_t)m * sizeof *x);
    }
    if (y && ds->y) memcpy(y, (const char *)ds->y + r * ds->y_width * 4, (size_t)ds->y_width * 4);
    return KILN_OK;
}

/* Channel stats of a source: each row is read once (u8: per-channel histograms, exact) or twice
 * (float: the mean, then the squared deviations), the same two-pass result as in memory. */
static kiln_status source_stats(const kiln_dataset *ds, float scale, float *mean, float *std) {
    int64_t c = ds->x_shape.dims[0], inner = ds->x_numel / c;
    double cnt = (double)ds->n * (double)inner;
    kiln_status st = KILN_OK;
    void *row = malloc((size_t)ds->row_bytes);
    double *acc = calloc((size_t)c * 256, sizeof *acc); /* u8: [c, 256] counts; f32: [c] sums */
    if (!row || !acc) st = kiln_error(KILN_ERR_NOMEM, "channel stats: out of memory");
    for (int pass = 0; !st && pass < (ds->x_dtype == KILN_U8 ? 1 : 2); pass++) {
        for (int64_t i = 0; !st && i < ds->n; i++) {
            if ((st = kiln_ds_read(ds, kiln_ds_row(ds, i), row))) break;
            for (int64_t k = 0; k < c; k++) {
                if (ds->x_dtype == KILN_U8) {
                    const uint8_t *p = (const uint8_t *)row + k * inner;
                    for (int64_t j = 0; j < inner; j++) acc[k * 256 + p[j]] += 1;
                    continue;
                }
                const float *p = (const float *)row + k * inner;
                double s = 0, mu = acc[k * 256] / cnt;
                for (int64_t j = 0; j < inner; j++) s += pass ? (p[j] - mu) * (p[j] - mu) : p[j];
                acc[k * 256 + pass] += s;
            }
        }
    }
    for (int64_t k = 0; !st && k < c; k++) {
        double mu, d2 = 0;
        if (ds->x_dtype == KILN_U8) {
            double s = 0;
            for (int v = 0; v < 256; v++) s += acc[k * 256 + v] * v;
            mu = s / cnt;
            for (int v = 0; v < 256; v++) d2 += acc[k * 256 + v] * (v - mu) * (v - mu);
        } else {
            mu = acc[k * 256] / cnt, d2 = acc[k * 256 + 1];
        }
        double sd = sqrt(d2 / cnt) * fabs((double)scale);
        mean[k] = (float)(mu * scale);
        std[k] = sd > 0 ? (float)sd : 1.0f;
    }
    free(row), free(acc);
    if (st) kiln_error_prefix("channel stats");
    return st;
}

/* Feature e of storage row r as a double. */
static inline double x_at(const kiln_dataset *ds, int64_t r, int64_t e) {
    size_t k = (size_t)(r * ds->x_numel + e);
    return ds->x_dtype == KILN_U8 ? ((const uint8_t *)ds->x)[k] : ((const float *)ds->x)[k];
}

/* Two passes (mean, then squared deviations) so that a constant channel has exactly zero spread. */
kiln_status kiln_dataset_channel_stats(const kiln_dataset *ds, float scale, float *mean,
                                       float *std) {
    if (scale == 0) scale = 1;
    if (!ds->x) return source_stats(ds, scale, mean, std);
    int64_t c = ds->x_shape.dims[0], inner = ds->x_numel / c;
    double cnt = (double)ds->n * (double)inner;
    for (int64_t k = 0; k < c; k++) {
        double s = 0, d2 = 0;
        for (int64_t i = 0; i < ds->n; i++)
            for (int64_t j = 0; j < inner; j++) s += x_at(ds, kiln_ds_row(ds, i), k * inner + j);
        double mu = s / cnt;
        for (int64_t i = 0; i < ds->n; i++)
            for (int64_t j = 0; j < inner; j++) {
                double d = x_at(ds, kiln_ds_row(ds, i), k * inner + j) - mu;
                d2 += d * d;
            }
        double sd = sqrt(d2 / cnt) * fabs((double)scale);
        mean[k] = (float)(mu * scale);
        std[k] = sd > 0 ? (float)sd : 1.0f;
    }
    return KILN_OK;
}

kiln_status kiln_data_permutation(int64_t n, uint64_t seed, uint64_t stream, int64_t *perm) {
    if (n < 1 || n > (int64_t)UINT32_MAX)
        return kiln_error(KILN_ERR_INVALID, "permutation: n = %lld (need 1 to %u)", (long long)n,
                          UINT32_MAX);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = kiln_rng_below(seed, stream, (uint64_t)i, (uint32_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    return KILN_OK;
}

/* A view of ds that adopts rows [n] (rows of ds, already checked), mapping them to storage. */
static kiln_status make_view(const kiln_dataset *ds, int64_t *rows, int64_t n, kiln_dataset **out) {
    kiln_dataset *v = calloc(1, sizeof *v);
    if (!v) {
        free(rows);
        return kiln_error(KILN_ERR_NOMEM, "dataset view: out of memory");
    }
    for (int64_t k = 0; ds->rows && k < n; k++) rows[k] = ds->rows[rows[k]];
    kiln_dataset *root = ds->root ? ds->root : (kiln_dataset *)ds; /* refs are mutable */
    atomic_fetch_add(&root->refs, 1);
    atomic_init(&v->refs, 1);
    v->root = root, v->n = n, v->rows = rows;
    v->x_dtype = root->x_dtype, v->x_shape = root->x_shape, v->x_numel = root->x_numel;
    v->x = root->x, v->row_bytes = root->row_bytes, v->ops = root->ops, v->ctx = root->ctx;
    v->y_kind = root->y_kind, v->y_width = root->y_width, v->y = root->y;
    v->num_classes = root->num_classes, v->class_names = root->class_names;
    *out = v;
    return KILN_OK;
}

kiln_status kiln_dataset_subset(const kiln_dataset *ds, const int64_t *rows, int64_t n,
                                kiln_dataset **out) {
    *out = NULL;
    if (n < 1 || n > (int64_t)UINT32_MAX || !rows)
        return kiln_error(KILN_ERR_INVALID, "subset: %lld rows (need 1 to %u)", (long long)n,
                          UINT32_MAX);
    for (int64_t k = 0; k < n; k++)
        if (rows[k] < 0 || rows[k] >= ds->n)
            return kiln_error(KILN_ERR_INVALID, "subset: rows[%lld] = %lld is outside [0, %lld)",
                              (long long)k, (long long)rows[k], (long long)ds->n);
    int64_t *r = malloc((size_t)n * sizeof *r);
    if (!r) return kiln_error(KILN_ERR_NOMEM, "subset: out of memory");
    memcpy(r, rows, (size_t)n * sizeof *r);
    return make_view(ds, r, n, out);
}

kiln_status kiln_data_split(const kiln_dataset *ds, double fraction, uint64_t seed,
                            kiln_dataset **train, kiln_dataset **val) {
    *train = *val = NULL;
    if (!(fraction > 0 && fraction < 1))
        return kiln_error(KILN_ERR_INVALID, "split: validation fraction %g is not in (0, 1)",
                          fraction);
    int64_t n = ds->n, nv = (int64_t)llround(fraction * (double)n);
    if (nv < 1 || nv >= n)
        return kiln_error(KILN_ERR_INVALID, "split: fraction %g of %lld rows leaves %s set empty",
                          fraction, (long long)n, nv < 1 ? "the validation" : "the training");
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    int64_t *tr = malloc((size_t)(n - nv) * sizeof *tr), *va = malloc((size_t)nv * sizeof *va);
    unsigned char *in_val = calloc((size_t)n, 1);
    if (!perm || !tr || !va || !in_val) {
        free(perm), free(tr), free(va), free(in_val);
        return kiln_error(KILN_ERR_NOMEM, "split: out of memory (%lld rows)", (long long)n);
    }
    kiln_data_permutation(n, seed, KILN_DATA_STREAM_SPLIT, perm); /* 1 <= n <= UINT32_MAX */
    for (int64_t k = 0; k < nv; k++) in_val[perm[k]] = 1;
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        if (in_val[i])
            va[b++] = i;
        else
            tr[a++] = i;
    }
    free(perm), free(in_val);
    kiln_status st = make_view(ds, tr, n - nv, train);
    if (st != KILN_OK) {
        free(va);
        return st;
    }
    st = make_view(ds, va, nv, val);
    if (st != KILN_OK) {
        kiln_dataset_free(*train);
        *train = NULL;
    }
    return st;
}

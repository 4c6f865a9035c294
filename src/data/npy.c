/* npy.c — NumPy .npy arrays (format 1.0 and 2.0), raw or gzip, as features and labels.
 *
 * Layout: "\x93NUMPY", major, minor, header length (u16 LE in 1.0, u32 LE in 2.0), then an
 * ASCII Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (n, ...), }
 * padded with spaces and '\n', then the data. The dict is parsed by a small recursive-descent
 * reader of exactly that grammar (strings, True/False, tuples of ints, trailing commas); any
 * other key, a missing key, or any other value is an error. Data must be exactly
 * prod(shape) * itemsize bytes. Types are converted while reading, in chunks, so a '<f8' file
 * never needs a float64 copy in memory. The host is little-endian (static-asserted), so '<'
 * data is read as is and '>' data is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy.c reads little-endian data as is");

#define NPY_MAX_HEADER 65536 /* bytes of dict; NumPy itself refuses more than 10000 by default */

typedef enum { NPY_U1, NPY_I4, NPY_I8, NPY_F4, NPY_F8 } npy_type;
static const struct {
    const char *descr;
    size_t size;
} npy_types[] = {{"u1", 1}, {"i4", 4}, {"i8", 8}, {"f4", 4}, {"f8", 8}};

typedef struct {
    npy_type type;
    int fortran;
    int ndim;
    int64_t dims[KILN_MAX_DIMS];
    int64_t numel;
    char descr[16];
} npy_header;

/* ---- the header dict ---- */

typedef struct {
    const char *path, *s; /* s [len]: the dict text */
    size_t len, i;
} lit;

static kiln_status lit_error(const lit *L, const char *what) {
    size_t end = L->len;
    while (end > 0 && (L->s[end - 1] == '\n' || L->s[end - 1] == ' ')) end--; /* the padding */
    int show = end < 120 ? (int)end : 120;
    return kiln_error(KILN_ERR_FORMAT, "%s: bad .npy header: %s at character %zu of \"%.*s%s\"",
                      L->path, what, L->i, show, L->s, end > 120 ? "..." : "");
}

static void lit_ws(lit *L) {
    while (L->i < L->len && (L->s[L->i] == ' ' || L->s[L->i] == '\t' || L->s[L->i] == '\n')) L->i++;
}

static int lit_eat(lit *L, char c) {
    lit_ws(L);
    if (L->i < L->len && L->s[L->i] == c) return L->i++, 1;
    return 0;
}

static kiln_status lit_string(lit *L, char *out, size_t cap) {
    lit_ws(L);
    char q = L->i < L->len ? L->s[L->i] : 0;
    if (q != '\'' && q != '"') return lit_error(L, "expected a quoted string");
    size_t start = ++L->i;
    while (L->i < L->len && L->s[L->i] != q) {
        if (L->s[L->i] == '\\' || L->s[L->i] == '\n') return lit_error(L, "unsupported string");
        L->i++;
    }
    if (L->i >= L->len) return lit_error(L, "unterminated string");
    size_t n = L->i++ - start;
    if (n >= cap) return lit_error(L, "string too long");
    memcpy(out, L->s + start, n);
    out[n] = 0;
    return KILN_OK;
}

static kiln_status lit_bool(lit *L, int *v) {
    lit_ws(L);
    if (L->len - L->i >= 4 && memcmp(L->s + L->i, "True", 4) == 0)
        return L->i += 4, *v = 1, KILN_OK;
    if (L->len - L->i >= 5 && memcmp(L->s + L->i, "False", 5) == 0)
        return L->i += 5, *v = 0, KILN_OK;
    return lit_error(L, "expected True or False");
}

static kiln_status lit_shape(lit *L, npy_header *h) {
    if (!lit_eat(L, '(')) return lit_error(L, "expected a tuple");
    h->ndim = 0;
    while (!lit_eat(L, ')')) {
        if (h->ndim > 0 && !lit_eat(L, ',')) return lit_error(L, "expected ',' or ')'");
        if (lit_eat(L, ')')) break; /* trailing comma */
        lit_ws(L);
        if (L->i >= L->len || L->s[L->i] < '0' || L->s[L->i] > '9')
            return lit_error(L, "expected a dimension (a non-negative integer)");
        if (h->ndim == KILN_MAX_DIMS) return lit_error(L, "more dims than kiln supports (6)");
        int64_t v = 0;
        while (L->i < L->len && L->s[L->i] >= '0' && L->s[L->i] <= '9') {
            if (v > ((int64_t)1 << 40)) return lit_error(L, "dimension too large");
            v = v * 10 + (L->s[L->i++] - '0');
        }
        if (L->i < L->len && L->s[L->i] == 'L') L->i++; /* Python 2 longs */
        h->dims[h->ndim++] = v;
    }
    return KILN_OK;
}

static kiln_status parse_dict(const char *path, const char *s, size_t len, npy_header *h) {
    lit L = {path, s, len, 0};
    int seen[3] = {0}; /* descr, fortran_order, shape */
    kiln_status st;
    if (!lit_eat(&L, '{')) return lit_error(&L, "expected '{'");
    while (!lit_eat(&L, '}')) {
        if ((seen[0] || seen[1] || seen[2]) && !lit_eat(&L, ','))
            return lit_error(&L, "expected ',' or '}'");
        if (lit_eat(&L, '}')) break; /* trailing comma */
        char key[32];
        if ((st = lit_string(&L, key, sizeof key)) != KILN_OK) return st;
        if (!lit_eat(&L, ':')) return lit_error(&L, "expected ':'");
        int k = strcmp(key, "descr") == 0           ? 0
                : strcmp(key, "fortran_order") == 0 ? 1
                : strcmp(key, "shape") == 0         ? 2
                                                    : -1;
        if (k < 0) return lit_error(&L, "unknown key (expected descr, fortran_order, shape)");
        if (seen[k]++) return lit_error(&L, "repeated key");
        if (k == 0)
            st = lit_string(&L, h->descr, sizeof h->descr);
        else if (k == 1)
            st = lit_bool(&L, &h->fortran);
        else
            st = lit_shape(&L, h);
        if (st != KILN_OK) return st;
    }
    lit_ws(&L);
    if (L.i != L.len) return lit_error(&L, "unexpected text after the dict");
    if (!seen[0] || !seen[1] || !seen[2])
        return lit_error(&L, !seen[0]   ? "no 'descr' key"
                             : !seen[1] ? "no 'fortran_order' key"
                                        : "no 'shape' key");
    return KILN_OK;
}

/* Reads the preamble and header dict, checks them, and checks the data size (raw files). */
static kiln_status read_header(kiln_dfile *f, npy_header *h) {
    memset(h, 0, sizeof *h);
    unsigned char pre[12];
    kiln_status st = kiln_dfile_read(f, pre, 10, ".npy preamble");
    if (st != KILN_OK) return st;
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: not a .npy file (it does not start with \"\\x93NUMPY\")", f->path);
    int major = pre[6], minor = pre[7];
    if ((major != 1 && major != 2) || minor != 0)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: .npy format version %d.%d is not supported (1.0 and 2.0 are)",
                          f->path, major, minor);
    uint32_t hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
    if (major == 2) {
        if ((st = kiln_dfile_read(f, pre + 10, 2, ".npy header length")) != KILN_OK) return st;
        hlen |= (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
    }
    if (hlen == 0 || hlen > NPY_MAX_HEADER)
        return kiln_error(KILN_ERR_FORMAT, "%s: .npy header length %u is not in [1, %d]", f->path,
                          hlen, NPY_MAX_HEADER);
    if ((st = kiln_dfile_expect(f, hlen, ".npy header")) != KILN_OK) return st;
    char *text = malloc(hlen);
    if (!text) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", f->path);
    st = kiln_dfile_read(f, text, hlen, ".npy header");
    if (st == KILN_OK) st = parse_dict(f->path, text, hlen, h);
    free(text);
    if (st != KILN_OK) return st;

    const char *d = h->descr;
    int order_ok = d[0] == '<' || d[0] == '|' || d[0] == '=';
    int t = -1;
    for (int i = 0; order_ok && i < (int)(sizeof npy_types / sizeof *npy_types); i++)
        if (strcmp(d + 1, npy_types[i].descr) == 0) t = i;
    if (t < 0)
        return kiln_error(
            KILN_ERR_FORMAT,
            "%s: .npy dtype '%s' is not supported (use '<f4', '<f8', '|u1', '<i4' or '<i8'%s)",
            f->path, d, d[0] == '>' ? "; this one is big-endian" : "");
    h->type = (npy_type)t;
    if (h->fortran)
        return kiln_error(
            KILN_ERR_FORMAT,
            "%s: .npy array is in Fortran order; save it in C order (np.ascontiguousarray)",
            f->path);
    uint64_t numel = 1;
    for (int i = 0; i < h->ndim; i++) {
        if (h->dims[i] == 0)
            return kiln_error(KILN_ERR_FORMAT, "%s: .npy array has an empty dim (%d)", f->path, i);
        if (numel > (uint64_t)KILN_DATA_MAX_BYTES / (uint64_t)h->dims[i])
            numel = UINT64_MAX;
        else
            numel *= (uint64_t)h->dims[i];
    }
    if (h->ndim == 0)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: .npy array is a scalar (shape ()); need [rows, ...]", f->path);
    if (numel > (uint64_t)KILN_DATA_MAX_BYTES / npy_types[t].size)
        return kiln_error(KILN_ERR_FORMAT, "%s: .npy array is more than %lld bytes (the limit)",
                          f->path, (long long)KILN_DATA_MAX_BYTES);
    h->numel = (int64_t)numel;
    return kiln_dfile_expect(f, numel * npy_types[t].size, ".npy data");
}

/* Reads the data as dst (KILN_F32, KILN_I32 or KILN_U8, which the caller has checked the file
 * type allows) into a malloc'd [numel], then checks that the file ends. */
static kiln_status read_data(kiln_dfile *f, const npy_header *h, kiln_dtype dst, void **out) {
    size_t isz = npy_types[h->type].size, n = (size_t)h->numel;
    *out = malloc(n * kiln_dtype_size(dst));
    if (!*out) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", f->path);
    int same = (dst == KILN_F32 && h->type == NPY_F4) || (dst == KILN_I32 && h->type == NPY_I4) ||
               (dst == KILN_U8 && h->type == NPY_U1);
    kiln_status st = KILN_OK;
    if (same) {
        st = kiln_dfile_read(f, *out, n * isz, ".npy data");
    } else {
        enum { CH = 16384 };
        unsigned char *buf = malloc(CH * 8); /* [CH] elements of the file's type */
        if (!buf) st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", f->path);
        for (size_t at = 0; buf && at < n && st == KILN_OK; at += CH) {
            size_t m = n - at < CH ? n - at : CH;
            if ((st = kiln_dfile_read(f, buf, m * isz, ".npy data")) != KILN_OK) break;
            for (size_t k = 0; k < m; k++) {
                double v;
                int64_t iv = 0;
                switch (h->type) {
                case NPY_U1:
                    v = iv = buf[k];
                    break;
                case NPY_I4: {
                    int32_t t;
                    memcpy(&t, buf + 4 * k, 4);
                    v = iv = t;
                    break;
                }
                case NPY_I8: {
                    memcpy(&iv, buf + 8 * k, 8);
                    v = (double)iv;
                    break;
                }
                case NPY_F4: {
                    float t;
                    memcpy(&t, buf + 4 * k, 4);
                    v = t;
                    break;
                }
                default:
                    memcpy(&v, buf + 8 * k, 8);
                    break;
                }
                if (dst == KILN_F32) {
                    ((float *)*out)[at + k] = (float)v;
                } else if (iv < INT32_MIN || iv > INT32_MAX) {
                    st = kiln_error(KILN_ERR_FORMAT, "%s: element %zu is %lld, outside int32",
                                    f->path, at + k, (long long)iv);
                    break;
                } else {
                    ((int32_t *)*out)[at + k] = (int32_t)iv;
                }
            }
        }
        free(buf);
    }
    if (st == KILN_OK) st = kiln_dfile_expect_end(f, ".npy data");
    if (st != KILN_OK) free(*out), *out = NULL;
    return st;
}

/* Opens path and reads its header; the caller reads the data and closes f. */
static kiln_status open_npy(kiln_dfile *f, const char *path, npy_header *h) {
    kiln_status st = kiln_dfile_open(f, path);
    if (st != KILN_OK) return st;
    if ((st = read_header(f, h)) != KILN_OK) kiln_dfile_close(f);
    return st;
}

kiln_status kiln_data_load_npy(const char *features, const char *labels, kiln_label_kind kind,
                               kiln_dataset **out) {
    *out = NULL;
    if (labels && kind != KILN_LABEL_CLASS && kind != KILN_LABEL_FLOAT)
        return kiln_error(KILN_ERR_INVALID, "%s: a labels file needs the label kind class or float",
                          labels);
    kiln_dfile f;
    npy_header hx, hy;
    void *x = NULL, *y = NULL;
    kiln_status st = open_npy(&f, features, &hx);
    if (st != KILN_OK) return st;
    kiln_dtype xdt = hx.type == NPY_U1 ? KILN_U8 : KILN_F32;
    st = read_data(&f, &hx, xdt, &x);
    kiln_dfile_close(&f);
    if (st != KILN_OK) return st;
    kiln_shape xs = hx.ndim > 1 ? kiln_shape_make(hx.ndim - 1, hx.dims + 1)
                                : kiln_shape_make(1, (const int64_t[]){1});
    int64_t yw = 0;
    if (labels) {
        if ((st = open_npy(&f, labels, &hy)) != KILN_OK) goto fail;
        char sbuf[96];
        kiln_shape ys = kiln_shape_make(hy.ndim, hy.dims);
        kiln_shape_str(&ys, sbuf, sizeof sbuf);
        yw = hy.numel / hy.dims[0];
        if (hy.dims[0] != hx.dims[0])
            st = kiln_error(KILN_ERR_SHAPE, "%s has %lld rows but %s has %lld (shape %s)", features,
                            (long long)hx.dims[0], labels, (long long)hy.dims[0], sbuf);
        else if (kind == KILN_LABEL_CLASS && (hy.type == NPY_F4 || hy.type == NPY_F8))
            st = kiln_error(KILN_ERR_FORMAT,
                            "%s: dtype '%s' cannot hold class ids (save them as integers, or load "
                            "them as float targets)",
                            labels, hy.descr);
        else if (kind == KILN_LABEL_CLASS && yw != 1)
            st = kiln_error(KILN_ERR_SHAPE,
                            "%s: class ids must have shape [n] or [n, 1], got %s (one-hot labels "
                            "can load as float targets)",
                            labels, sbuf);
        if (st == KILN_OK)
            st = read_data(&f, &hy, kind == KILN_LABEL_CLASS ? KILN_I32 : KILN_F32, &y);
        kiln_dfile_close(&f);
        if (st != KILN_OK) goto fail;
    }
    return kiln_ds_adopt(out, labels ? labels : features, hx.dims[0], xdt, xs, x,
                         labels ? kind : KILN_LABEL_NONE, yw, y, 0, NULL);
fail:
    free(x);
    return st;
}

/* safetensors.c — the .safetensors reader and writer (format and rules in kiln/safetensors.h).
 *
 * Reading is three steps, each done in full before the next:
 *   1. the 8-byte length prefix against the file size (st_prefix);
 *   2. the header (st_header): a lexical scan (UTF-8, no raw control bytes, no \u0000 so every
 *      JSON string is a C string), cJSON, then every tensor and metadata field, then names sorted
 *      for duplicates and lookup, then spans sorted by offset to prove the tensors tile the data
 *      section exactly [0, data_len) — the same rule as Python's reader;
 *   3. only then the data section is read into one 64-byte aligned block, and entries point into
 *      it (st_bind). F16 tensors and tensors whose offset is not a multiple of their element size
 *      get a copy in a second block (`extra`), so every data pointer is aligned.
 * Names and metadata strings point into the cJSON tree, which lives as long as the file.
 *
 * Offsets and sizes are uint64 and every product and sum is overflow-checked; JSON numbers must
 * be exact non-negative integers (at most 2^53, where doubles stop being exact).
 */
#include "kiln/safetensors.h"

#include <cjson/cJSON.h>

#include "core/json.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/fileio.h"
#include "kiln/mem.h"

#define ST_MAX_HEADER 100000000ull /* Python's limit too */
#define NAME          "%.200s"     /* names in messages, cut so the message keeps its tail */

typedef struct {
    uint64_t begin, end; /* byte range in the data section */
    int f16;             /* stored as F16, handed out as F32 */
    int idx;             /* entry index, for messages after sorting */
} st_span;

struct kiln_st_file {
    char *label; /* path or caller's label, for messages */
    cJSON *json; /* the parsed header; names and metadata point into it */
    int n, n_meta;
    kiln_st_entry *entries;        /* [n], header order */
    st_span *spans;                /* [n], same order */
    const kiln_st_entry **by_name; /* [n], sorted by name */
    const char **meta;             /* [2 n_meta]: key, value, ... */
    unsigned char *data;           /* [data_len] data section, 64-byte aligned; NULL when empty */
    uint64_t data_len;
    unsigned char *extra; /* F16 conversions and realigned copies */
};

/* What zero-byte tensors point at: non-NULL, aligned. */
static _Alignas(64) const unsigned char st_empty[64];

/* ---- small helpers ---- */

/* Length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when it is not one (overlongs,
 * surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c == 0xE0)
        len = 3, lo = 0xA0;
    else if (c == 0xED)
        len = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF)
        len = 3;
    else if (c == 0xF0)
        len = 4, lo = 0x90;
    else if (c == 0xF4)
        len = 4, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3)
        len = 4;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

static int utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_seq(p + i, n - i))) return 0;
    return 1;
}


/* An exact non-negative integer (JSON numbers are doubles in cJSON: exact up to 2^53). */
static int as_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0)) return 0;
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return 0;
    *out = u;
    return 1;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(const kiln_st_entry *const *)a)->name,
                  (*(const kiln_st_entry *const *)b)->name);
}

static int cmp_span(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

/* The first duplicate among n strings (sorted in place), or NULL. */
static const char *first_duplicate(const char **s, size_t n) {
    qsort(s, n, sizeof *s, cmp_str);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(s[i - 1], s[i])) return s[i];
    return NULL;
}

/* IEEE half -> float, exact. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f)
        bits = sign | 0x7f800000u | (man << 13); /* inf, NaN (payload kept) */
    else if (exp)
        bits = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
    else {                                               /* zero and subnormals */
        float v = (float)man * 5.9604644775390625e-8f;   /* man * 2^-24, exact */
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---- reading ---- */

static kiln_st_file *st_new(const char *label) {
    kiln_st_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    size_t n = strlen(label);
    f->label = malloc(n + 1);
    if (!f->label) {
        free(f);
        return NULL;
    }
    memcpy(f->label, label, n + 1);
    return f;
}

/* Checks the length prefix of a file of file_len bytes; *hlen is the header length N. */
static kiln_status st_prefix(const char *label, const unsigned char *prefix, uint64_t file_len,
                             uint64_t *hlen) {
    if (file_len < 8)
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: file is %llu bytes, shorter than the 8-byte header "
                          "length (truncated or not a safetensors file)",
                          label, (unsigned long long)file_len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | prefix[i];
    if (n > ST_MAX_HEADER)
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: oversized header: length field says %llu bytes (limit "
                          "%llu; not a safetensors file?)",
                          label, (unsigned long long)n, ST_MAX_HEADER);
    if (n > file_len - 8)
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: header length %llu runs past the end of the file (%llu "
                          "bytes): truncated",
                          label, (unsigned long long)n, (unsigned long long)file_len);
    *hlen = n;
    return KILN_OK;
}

/* Rejects what cJSON would accept or mangle: invalid UTF-8, raw control bytes (JSON allows only
 * tab, LF and CR, as whitespace) and \u0000 inside strings (cJSON would cut the string there). */
static kiln_status st_scan(const char *label, const unsigned char *s, size_t n) {
    int in_str = 0;
    for (size_t i = 0, k; i < n; i += k) {
        k = utf8_seq(s + i, n - i);
        if (!k)
            return kiln_error(KILN_ERR_FORMAT,
                              "safetensors %s: header is not valid UTF-8 (byte %zu of the header)",
                              label, i);
        unsigned c = s[i];
        if (c < 0x20 && !(c == '\t' || c == '\n' || c == '\r'))
            return kiln_error(KILN_ERR_FORMAT,
                              "safetensors %s: header holds control byte 0x%02x at byte %zu (not "
                              "valid JSON)",
                              label, c, i);
        if (c == '"')
            in_str = !in_str;
        else if (c == '\\' && in_str && i + 1 < n && s[i + 1] >= 0x20 && s[i + 1] < 0x80) {
            if (s[i + 1] == 'u' && n - i >= 6 && !memcmp(s + i + 2, "0000", 4))
                return kiln_error(KILN_ERR_FORMAT,
                                  "safetensors %s: header holds \\u0000 in a string at byte %zu",
                                  label, i);
            k = 2; /* the escaped byte (plain ASCII) cannot open or close a string */
        }
    }
    return KILN_OK;
}

/* One tensor's header entry -> f->entries[i], f->spans[i]. */
static kiln_status st_tensor(kiln_st_file *f, const cJSON *item, int i) {
    const char *L = f->label, *name = item->string;
    if (!cJSON_IsObject(item))
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: tensor '" NAME "': expected an object with dtype, shape "
                          "and data_offsets, got %s",
                          L, name, kiln_json_type(item));
    const cJSON *dt = NULL, *sh = NULL, *off = NULL;
    for (const cJSON *c = item->child; c; c = c->next) {
        const cJSON **slot = !strcmp(c->string, "dtype")          ? &dt
                             : !strcmp(c->string, "shape")        ? &sh
                             : !strcmp(c->string, "data_offsets") ? &off
                                                                  : NULL;
        if (!slot) continue; /* unknown fields are ignored, as Python does */
        if (*slot)
            return kiln_error(KILN_ERR_FORMAT,
                              "safetensors %s: tensor '" NAME "': duplicate field '%s'", L, name,
                              c->string);
        *slot = c;
    }
    const char *missing = !dt ? "dtype" : !sh ? "shape" : !off ? "data_offsets" : NULL;
    if (missing)
        return kiln_error(KILN_ERR_FORMAT, "safetensors %s: tensor '" NAME "': missing field '%s'",
                          L, name, missing);

    kiln_st_entry *e = &f->entries[i];
    st_span *sp = &f->spans[i];
    e->name = name;
    sp->idx = i;
    if (!cJSON_IsString(dt))
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: tensor '" NAME "': dtype is %s, not a string", L, name,
                          kiln_json_type(dt));
    size_t esize;
    if (!strcmp(dt->valuestring, "F16")) {
        e->dtype = KILN_F32, sp->f16 = 1, esize = 2;
    } else {
        e->dtype = kiln_dtype_from_name(dt->valuestring);
        if (e->dtype == KILN_DTYPE_COUNT)
            return kiln_error(KILN_ERR_FORMAT,
                              "safetensors %s: tensor '" NAME "': unsupported dtype '%.32s' (kiln "
                              "reads F32, F16, BF16, I32, I64, U8)",
                              L, name, dt->valuestring);
        esize = kiln_dtype_size(e->dtype);
    }

    if (!cJSON_IsArray(sh))
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: tensor '" NAME "': shape is %s, not a list", L, name,
                          kiln_json_type(sh));
    uint64_t numel = 1;
    int overflow = 0;
    for (const cJSON *d = sh->child; d; d = d->next) {
        if (e->shape.ndim == KILN_MAX_DIMS)
            return kiln_error(KILN_ERR_FORMAT,
                              "safetensors %s: tensor '" NAME "': shape has %d dims; kiln supports "
                              "at most %d",
                              L, name, cJSON_GetArraySize(sh), KILN_MAX_DIMS);
        uint64_t v;
        if (!as_u64(d, &v))
            return kiln_error(KILN_ERR_FORMAT,
                              "safetensors %s: tensor '" NAME "': shape[%d] is not a non-negative "
                              "integer",
                              L, name, e->shape.ndim);
        e->shape.dims[e->shape.ndim++] = (int64_t)v;
        overflow |= __builtin_mul_overflow(numel, v, &numel);
    }
    uint64_t nbytes;
    char sbuf[160];
    overflow |= __builtin_mul_overflow(numel, (uint64_t)esize, &nbytes);
    if (overflow || numel > INT64_MAX)
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: tensor '" NAME "': shape %s has too many elements "
                          "(overflow)",
                          L, name, kiln_shape_str(&e->shape, sbuf, sizeof sbuf));

    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !as_u64(off->child, &sp->begin) ||
        !as_u64(off->child->next, &sp->end))
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: tensor '" NAME "': data_offsets is not a list of two "
                          "non-negative integers",
                          L, name);
    unsigned long long b = sp->begin, en = sp->end;
    if (b > en)
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: tensor '" NAME "': data_offsets [%llu, %llu]: begin "
                          "is after end",
                          L, name, b, en);
    if (en > f->data_len)
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: tensor '" NAME "': data_offsets [%llu, %llu] run beyond "
                          "the end of the data section (%llu bytes): truncated file?",
                          L, name, b, en, (unsigned long long)f->data_len);
    if (en - b != nbytes)
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: tensor '" NAME "': data_offsets [%llu, %llu] hold %llu "
                          "bytes, but %.32s %s needs %llu",
                          L, name, b, en, en - b, dt->valuestring,
                          kiln_shape_str(&e->shape, sbuf, sizeof sbuf), (unsigned long long)nbytes);
    return KILN_OK;
}

static kiln_status st_metadata(kiln_st_file *f, const cJSON *m) {
    if (cJSON_IsNull(m)) return KILN_OK;
    if (!cJSON_IsObject(m))
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: __metadata__ is %s, not an object of strings", f->label,
                          kiln_json_type(m));
    int n = 0;
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return kiln_error(KILN_ERR_FORMAT,
                              "safetensors %s: __metadata__ '" NAME "' is %s, not a string",
                              f->label, c->string, kiln_json_type(c));
        n++;
    }
    if (!n) return KILN_OK;
    f->meta = malloc(2 * (size_t)n * sizeof *f->meta);
    const char **keys = malloc((size_t)n * sizeof *keys);
    if (!f->meta || !keys) {
        free(keys);
        return kiln_error(KILN_ERR_NOMEM, "safetensors %s: out of memory", f->label);
    }
    int i = 0;
    for (const cJSON *c = m->child; c; c = c->next, i++)
        f->meta[2 * i] = keys[i] = c->string, f->meta[2 * i + 1] = c->valuestring;
    f->n_meta = n;
    const char *dup = first_duplicate(keys, (size_t)n);
    kiln_status s =
        dup ? kiln_error(KILN_ERR_FORMAT, "safetensors %s: __metadata__ has key '" NAME "' twice",
                         f->label, dup)
            : KILN_OK;
    free(keys);
    return s;
}

/* Parses and validates the header hdr[0..hlen) (NUL at hdr[hlen]) for a data section of
 * f->data_len bytes. */
static kiln_status st_header(kiln_st_file *f, const char *hdr, size_t hlen) {
    const char *L = f->label;
    if (hlen == 0 || hdr[0] != '{')
        return kiln_error(
            KILN_ERR_FORMAT,
            "safetensors %s: header does not start with '{' (not a safetensors file?)", L);
    kiln_status s = st_scan(L, (const unsigned char *)hdr, hlen);
    if (s) return s;
    const char *end = NULL;
    f->json = cJSON_ParseWithOpts(hdr, &end, 0);
    if (!f->json)
        return kiln_error(KILN_ERR_FORMAT,
                          "safetensors %s: header is not valid JSON (error near byte %zu)", L,
                          end ? (size_t)(end - hdr) : (size_t)0);
    for (const char *p = end; p < hdr + hlen; p++)
        if (!(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
            return kiln_error(
                KILN_ERR_FORMAT,
                "safetensors %s: header has bytes after its JSON object (at byte %zu)", L,
                (size_t)(p - hdr));
    if (!cJSON_IsObject(f->json))
        return kiln_error(KILN_ERR_FORMAT, "safetensors %s: header is %s, not a JSON object", L,
                          kiln_json_type(f->json));

    const cJSON *meta = NULL;
    int n = 0;
    for (const cJSON *c = f->json->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__")) {
            n++;
        } else if (meta) {
            return kiln_error(KILN_ERR_FORMAT, "safetensors %s: header has __metadata__ twice", L);
        } else {
            meta = c;
        }
    }
    if (meta && (s = st_metadata(f, meta))) return s;
    if (n) {
        f->entries = calloc((size_t)n, sizeof *f->entries);
        f->spans = calloc((size_t)n, sizeof *f->spans);
        f->by_name = calloc((size_t)n, sizeof *f->by_name);
        if (!f->entries || !f->spans || !f->by_name)
            return kiln_error(KILN_ERR_NOMEM, "safetensors %s: out of memory for %d tensors", L, n);
    }
    int i = 0;
    for (const cJSON *c = f->json->child; c; c = c->next) {
        if (c == meta) continue;
        if ((s = st_tensor(f, c, i))) return s;
        f->by_name[i] = &f->entries[i];
        i++;
    }
    f->n = n;

    if (n) qsort(f->by_name, (size_t)n, sizeof *f->by_name, cmp_entry_name);
    for (i = 1; i < n; i++)
        if (!strcmp(f->by_name[i - 1]->name, f->by_name[i]->name))
            return kiln_error(KILN_ERR_FORMAT, "safetensors %s: tensor '" NAME "' appears twice", L,
                              f->by_name[i]->name);

    /* The tensors must tile [0, data_len): sorted by offset, each begins where the last ended. */
    st_span *sorted = n ? malloc((size_t)n * sizeof *sorted) : NULL;
    if (n && !sorted) return kiln_error(KILN_ERR_NOMEM, "safetensors %s: out of memory", L);
    if (n) {
        memcpy(sorted, f->spans, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_span);
    }
    uint64_t at = 0;
    for (i = 0; i < n && !s; i++) {
        const st_span *sp = &sorted[i];
        const char *nm = f->entries[sp->idx].name;
        if (sp->begin < at)
            s = kiln_error(KILN_ERR_FORMAT,
                           "safetensors %s: tensors '" NAME "' and '" NAME "' overlap (the first "
                           "ends at byte %llu, the second begins at %llu)",
                           L, f->entries[sorted[i - 1].idx].name, nm, (unsigned long long)at,
                           (unsigned long long)sp->begin);
        else if (sp->begin > at)
            s = kiln_error(
                KILN_ERR_FORMAT,
                "safetensors %s: gap of %llu bytes in the data section before tensor '" NAME
                "' (data_offsets [%llu, %llu])",
                L, (unsigned long long)(sp->begin - at), nm, (unsigned long long)sp->begin,
                (unsigned long long)sp->end);
        at = sp->end;
    }
    free(sorted);
    if (!s && at != f->data_len)
        s = kiln_error(KILN_ERR_FORMAT,
                       "safetensors %s: the data section has %llu bytes but the tensors cover %llu "
                       "(trailing bytes)",
                       L, (unsigned long long)f->data_len, (unsigned long long)at);
    return s;
}

/* Points the entries at f->data (already filled), converting F16 and realigning as needed. */
static kiln_status st_bind(kiln_st_file *f) {
    size_t extra = 0;
    for (int i = 0; i < f->n; i++) {
        const st_span *sp = &f->spans[i];
        size_t nbytes = (size_t)(sp->end - sp->begin),
               esize = sp->f16 ? 2 : kiln_dtype_size(f->entries[i].dtype);
        if (nbytes && sp->f16)
            extra += kiln_align_up(nbytes * 2);
        else if (nbytes && sp->begin % esize)
            extra += kiln_align_up(nbytes);
    }
    if (extra && !(f->extra = kiln_alloc(extra)))
        return kiln_error(KILN_ERR_NOMEM, "safetensors %s: out of memory for %zu bytes", f->label,
                          extra);
    unsigned char *x = f->extra;
    for (int i = 0; i < f->n; i++) {
        const st_span *sp = &f->spans[i];
        kiln_st_entry *e = &f->entries[i];
        size_t nbytes = (size_t)(sp->end - sp->begin),
               esize = sp->f16 ? 2 : kiln_dtype_size(e->dtype);
        const unsigned char *src = nbytes ? f->data + sp->begin : NULL;
        if (!nbytes) {
            e->data = st_empty;
        } else if (sp->f16) {
            float *dst = (float *)x; /* [nbytes / 2] */
            for (size_t k = 0; k < nbytes / 2; k++)
                dst[k] = half_to_float((uint16_t)(src[2 * k] | src[2 * k + 1] << 8));
            e->data = dst;
            x += kiln_align_up(nbytes * 2);
        } else if (sp->begin % esize) {
            memcpy(x, src, nbytes);
            e->data = x;
            x += kiln_align_up(nbytes);
        } else {
            e->data = src;
        }
    }
    return KILN_OK;
}

/* Reads exactly n bytes at off; 0 or -1 (errno set; ENODATA means the file ended early). */
static int pread_full(int fd, void *buf, size_t n, uint64_t off) {
    char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = ENODATA;
            return -1;
        }
        p += r, n -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

static kiln_status read_err(const char *path, const char *what) {
    int e = errno;
    if (e == ENODATA)
        return kiln_error(KILN_ERR_FORMAT, "safetensors %s: the file shrank while reading %s", path,
                          what);
    return kiln_error(KILN_ERR_IO, "safetensors %s: reading %s: %s", path, what, strerror(e));
}

kiln_status kiln_safetensors_open(const char *path, kiln_st_file **out) {
    *out = NULL;
    if (!path || !*path) return kiln_error(KILN_ERR_INVALID, "safetensors: empty path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return kiln_error(e == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "safetensors %s: %s", path,
                          strerror(e));
    }
    struct stat st;
    kiln_status s = KILN_OK;
    kiln_st_file *f = NULL;
    char *hdr = NULL;
    unsigned char prefix[8];
    uint64_t hlen = 0;
    if (fstat(fd, &st) != 0)
        s = read_err(path, "its size");
    else if (!S_ISREG(st.st_mode))
        s = kiln_error(KILN_ERR_IO, "safetensors %s: not a regular file", path);
    else if (!(f = st_new(path)))
        s = kiln_error(KILN_ERR_NOMEM, "safetensors %s: out of memory", path);
    else if (pread_full(fd, prefix, st.st_size < 8 ? 0 : 8, 0))
        s = read_err(path, "the header length");
    else
        s = st_prefix(path, prefix, (uint64_t)st.st_size, &hlen);
    if (!s) {
        f->data_len = (uint64_t)st.st_size - 8 - hlen;
        if (!(hdr = malloc(hlen + 1)))
            s = kiln_error(KILN_ERR_NOMEM, "safetensors %s: out of memory for a %llu-byte header",
                           path, (unsigned long long)hlen);
        else if (pread_full(fd, hdr, hlen, 8))
            s = read_err(path, "the header");
        else
            hdr[hlen] = 0, s = st_header(f, hdr, hlen);
    }
    free(hdr);
    if (!s && f->data_len) {
        if (f->data_len > SIZE_MAX || !(f->data = kiln_alloc((size_t)f->data_len)))
            s = kiln_error(KILN_ERR_NOMEM,
                           "safetensors %s: out of memory for %llu bytes of tensors", path,
                           (unsigned long long)f->data_len);
        else if (pread_full(fd, f->data, (size_t)f->data_len, 8 + hlen))
            s = read_err(path, "the tensors");
    }
    close(fd);
    if (!s) s = st_bind(f);
    if (s) {
        kiln_st_close(f);
        return s;
    }
    *out = f;
    return KILN_OK;
}

kiln_status kiln_safetensors_parse(const void *bytes, size_t len, const char *label,
                                   kiln_st_file **out) {
    *out = NULL;
    if (!label) label = "(memory)";
    if (!bytes && len) return kiln_error(KILN_ERR_INVALID, "safetensors %s: NULL bytes", label);
    const unsigned char *b = bytes;
    uint64_t hlen;
    kiln_status s = st_prefix(label, b, len, &hlen);
    if (s) return s;
    kiln_st_file *f = st_new(label);
    char *hdr = malloc(hlen + 1); /* NUL-terminated copy for cJSON */
    if (!f || !hdr) {
        free(hdr);
        kiln_st_close(f);
        return kiln_error(KILN_ERR_NOMEM, "safetensors %s: out of memory", label);
    }
    memcpy(hdr, b + 8, hlen);
    hdr[hlen] = 0;
    f->data_len = len - 8 - hlen;
    s = st_header(f, hdr, hlen);
    free(hdr);
    if (!s && f->data_len) {
        if (!(f->data = kiln_alloc(f->data_len)))
            s = kiln_error(KILN_ERR_NOMEM, "safetensors %s: out of memory for %llu bytes", label,
                           (unsigned long long)f->data_len);
        else
            memcpy(f->data, b + 8 + hlen, f->data_len);
    }
    if (!s) s = st_bind(f);
    if (s) {
        kiln_st_close(f);
        return s;
    }
    *out = f;
    return KILN_OK;
}

int kiln_st_count(const kiln_st_file *f) {
    return f ? f->n : 0;
}

const kiln_st_entry *kiln_st_get(const kiln_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->entries[i] : NULL;
}

const kiln_st_entry *kiln_st_find(const kiln_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, f->by_name[mid]->name);
        if (!c) return f->by_name[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *kiln_st_meta(const kiln_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

int kiln_st_meta_count(const kiln_st_file *f) {
    return f ? f->n_meta : 0;
}

const char *const *kiln_st_meta_kv(const kiln_st_file *f) {
    return f ? f->meta : NULL;
}

void kiln_st_close(kiln_st_file *f) {
    if (!f) return;
    cJSON_Delete(f->json);
    free(f->label);
    free(f->entries);
    free(f->spans);
    free(f->by_name);
    free(f->meta);
    kiln_free(f->data);
    kiln_free(f->extra);
    free(f);
}

/* ---- writing ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_u64(sbuf *b, uint64_t v) {
    char t[24];
    int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    sb_put(b, t, (size_t)n);
}

/* A JSON string the way serde_json writes it: \" \\ \b \f \n \r \t, other bytes below 0x20 as
 * \u00xx, everything else (UTF-8 included) as is. */
static void sb_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = NULL;
        char t[8];
        switch (*p) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (*p < 0x20) snprintf(t, sizeof t, "\\u%04x", *p), esc = t;
        }
        if (esc)
            sb_puts(b, esc);
        else
            sb_put(b, (const char *)p, 1);
    }
    sb_put(b, "\"", 1);
}

/* Python's order: dtypes by descending rank in its Dtype enum (U8 < BF16 < I32 < F32 < I64). */
static int dtype_rank(kiln_dtype dt) {
    switch (dt) {
    case KILN_U8:
        return 0;
    case KILN_BF16:
        return 1;
    case KILN_I32:
        return 2;
    case KILN_F32:
        return 3;
    default:
        return 4; /* KILN_I64 */
    }
}

static int cmp_write_order(const void *a, const void *b) {
    const kiln_st_entry *x = *(const kiln_st_entry *const *)a,
                        *y = *(const kiln_st_entry *const *)b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

/* Checks one entry; *nbytes is its data size. */
static kiln_status check_entry(const char *path, const kiln_st_entry *e, int i, uint64_t *nbytes) {
    if (!e->name)
        return kiln_error(KILN_ERR_INVALID, "safetensors write %s: entry %d has no name", path, i);
    if (!utf8_valid(e->name))
        return kiln_error(KILN_ERR_INVALID,
                          "safetensors write %s: entry %d: name is not valid UTF-8", path, i);
    if (!strcmp(e->name, "__metadata__"))
        return kiln_error(
            KILN_ERR_INVALID,
            "safetensors write %s: entry %d: '__metadata__' is reserved, not a tensor "
            "name",
            path, i);
    if ((unsigned)e->dtype >= KILN_DTYPE_COUNT)
        return kiln_error(KILN_ERR_INVALID,
                          "safetensors write %s: tensor '" NAME "': unknown dtype %d", path,
                          e->name, (int)e->dtype);
    if (e->shape.ndim < 0 || e->shape.ndim > KILN_MAX_DIMS)
        return kiln_error(KILN_ERR_SHAPE,
                          "safetensors write %s: tensor '" NAME "': %d dims (0 to %d)", path,
                          e->name, e->shape.ndim, KILN_MAX_DIMS);
    uint64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < e->shape.ndim; d++) {
        if (e->shape.dims[d] < 0)
            return kiln_error(KILN_ERR_SHAPE,
                              "safetensors write %s: tensor '" NAME "': dim %d is %lld", path,
                              e->name, d, (long long)e->shape.dims[d]);
        overflow |= __builtin_mul_overflow(numel, (uint64_t)e->shape.dims[d], &numel);
    }
    overflow |= __builtin_mul_overflow(numel, (uint64_t)kiln_dtype_size(e->dtype), nbytes);
    char sb[160];
    if (overflow || *nbytes > SIZE_MAX)
        return kiln_error(KILN_ERR_SHAPE,
                          "safetensors write %s: tensor '" NAME "': shape %s is too large", path,
                          e->name, kiln_shape_str(&e->shape, sb, sizeof sb));
    if (*nbytes && !e->data)
        return kiln_error(
            KILN_ERR_INVALID, "safetensors write %s: tensor '" NAME "': NULL data for %s %s", path,
            e->name, kiln_dtype_name(e->dtype), kiln_shape_str(&e->shape, sb, sizeof sb));
    return KILN_OK;
}

/* Validates everything and builds the padded header; *order is the write order. */
static kiln_status build_header(const char *path, const kiln_st_entry *entries, int n,
                                const char *const *kv, int n_meta, sbuf *h,
                                const kiln_st_entry ***order) {
    const kiln_st_entry **ord = NULL;
    const char **keys = NULL;
    uint64_t *sizes = NULL;
    kiln_status s = KILN_OK;
    if (n &&
        (!(ord = malloc((size_t)n * sizeof *ord)) || !(sizes = malloc((size_t)n * sizeof *sizes))))
        s = kiln_error(KILN_ERR_NOMEM, "safetensors write %s: out of memory", path);
    for (int i = 0; i < n && !s; i++)
        s = check_entry(path, &entries[i], i, &sizes[i]), ord[i] = &entries[i];
    if (!s && n) {
        qsort(ord, (size_t)n, sizeof *ord, cmp_entry_name);
        for (int i = 1; i < n && !s; i++)
            if (!strcmp(ord[i - 1]->name, ord[i]->name))
                s = kiln_error(KILN_ERR_INVALID,
                               "safetensors write %s: tensor '" NAME "' given twice", path,
                               ord[i]->name);
        qsort(ord, (size_t)n, sizeof *ord, cmp_write_order);
    }
    for (int i = 0; i < n_meta && !s; i++) {
        const char *k = kv[2 * i], *v = kv[2 * i + 1];
        if (!k || !v)
            s = kiln_error(KILN_ERR_INVALID, "safetensors write %s: metadata pair %d has a NULL %s",
                           path, i, k ? "value" : "key");
        else if (!utf8_valid(k) || !utf8_valid(v))
            s = kiln_error(KILN_ERR_INVALID,
                           "safetensors write %s: metadata '" NAME "' is not valid UTF-8", path, k);
    }
    if (!s && n_meta) {
        if (!(keys = malloc((size_t)n_meta * sizeof *keys)))
            s = kiln_error(KILN_ERR_NOMEM, "safetensors write %s: out of memory", path);
        for (int i = 0; i < n_meta && !s; i++) keys[i] = kv[2 * i];
        const char *dup = s ? NULL : first_duplicate(keys, (size_t)n_meta);
        if (dup)
            s = kiln_error(KILN_ERR_INVALID,
                           "safetensors write %s: metadata key '" NAME "' given twice", path, dup);
    }
    if (!s) {
        sb_puts(h, "{");
        if (n_meta) {
            sb_puts(h, "\"__metadata__\":{");
            for (int i = 0; i < n_meta; i++) {
                if (i) sb_puts(h, ",");
                sb_str(h, kv[2 * i]);
                sb_puts(h, ":");
                sb_str(h, kv[2 * i + 1]);
            }
            sb_puts(h, n ? "}," : "}");
        }
        uint64_t at = 0;
        for (int i = 0; i < n; i++) {
            const kiln_st_entry *e = ord[i];
            uint64_t nb = sizes[e - entries];
            if (i) sb_puts(h, ",");
            sb_str(h, e->name);
            sb_puts(h, ":{\"dtype\":");
            sb_str(h, kiln_dtype_name(e->dtype));
            sb_puts(h, ",\"shape\":[");
            for (int d = 0; d < e->shape.ndim; d++) {
                if (d) sb_puts(h, ",");
                sb_u64(h, (uint64_t)e->shape.dims[d]);
            }
            sb_puts(h, "],\"data_offsets\":[");
            sb_u64(h, at);
            sb_puts(h, ",");
            sb_u64(h, at + nb);
            sb_puts(h, "]}");
            at += nb;
        }
        sb_puts(h, "}");
        while (h->len % 8) sb_puts(h, " ");
        if (h->oom)
            s = kiln_error(KILN_ERR_NOMEM, "safetensors write %s: out of memory for the header",
                           path);
    }
    free(keys);
    free(sizes);
    if (s) {
        free(ord);
        return s;
    }
    *order = ord;
    return KILN_OK;
}

kiln_status kiln_safetensors_write(const char *path, const kiln_st_entry *entries, int n,
                                   const char *const *meta_kv, int n_meta) {
    if (!path || !*path) return kiln_error(KILN_ERR_INVALID, "safetensors write: empty path");
    if (n < 0 || (n && !entries))
        return kiln_error(KILN_ERR_INVALID, "safetensors write %s: %d entries at %p", path, n,
                          (const void *)entries);
    if (n_meta < 0 || (n_meta && !meta_kv))
        return kiln_error(KILN_ERR_INVALID, "safetensors write %s: %d metadata pairs at %p", path,
                          n_meta, (const void *)meta_kv);
    sbuf h = {0};
    const kiln_st_entry **ord = NULL;
    kiln_status s = build_header(path, entries, n, meta_kv, n_meta, &h, &ord);
    kiln_atomic_file *af = NULL;
    if (!s) s = kiln_atomic_open(path, &af);
    if (!s) {
        unsigned char prefix[8];
        for (int i = 0; i < 8; i++) prefix[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
        kiln_atomic_write(af, prefix, 8); /* errors stick to af and come back from commit */
        kiln_atomic_write(af, h.p, h.len);
        for (int i = 0; i < n; i++) {
            const kiln_st_entry *e = ord[i];
            kiln_atomic_write(af, e->data,
                              (size_t)kiln_shape_numel(&e->shape) * kiln_dtype_size(e->dtype));
        }
        s = kiln_atomic_commit(af);
    }
    free(h.p);
    free(ord);
    return s;
}

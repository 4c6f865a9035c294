/* tj_build.c — tensor builders: nested JSON lists into typed buffers (tj_internal.h).
 *
 * Leaves are converted on the spot: numbers to the target type with range checks (float32
 * range, though the NaN and Infinity tokens pass into float inputs as TF Serving and Triton let
 * them; integers must be integral and fit), strings and {"b64": ...} objects to bytes. v2
 * leaves are first checked against the declared datatype (tj_dtype). Buffers grow by doubling,
 * so a body of n values costs O(n) time and about one value's size per value in memory.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/tj_internal.h"

static const tj_dtype DTYPES[] = {
    {"BOOL", TJ_BOOL, 0, 1},
    {"UINT8", TJ_UINT, 0, 255},
    {"UINT16", TJ_UINT, 0, 65535},
    {"UINT32", TJ_UINT, 0, 4294967295.0},
    {"UINT64", TJ_UINT, 0, 18446744073709551615.0},
    {"INT8", TJ_INT, -128, 127},
    {"INT16", TJ_INT, -32768, 32767},
    {"INT32", TJ_INT, -2147483648.0, 2147483647.0},
    {"INT64", TJ_INT, -9223372036854775808.0, 9223372036854775807.0},
    {"FP32", TJ_FLOAT, 0, 0},
    {"FP64", TJ_FLOAT, 0, 0},
    {"BYTES", TJ_BYTES_DT, 0, 0},
};
const char TJ_DTYPE_LIST[] =
    "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP32, FP64, BYTES";

const tj_dtype *tj_dtype_find(const char *name) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof *DTYPES; i++)
        if (strcmp(DTYPES[i].name, name) == 0) return &DTYPES[i];
    return NULL;
}

static size_t type_size(kiln_tj_type t) {
    return t == KILN_TJ_I64 ? 8 : t == KILN_TJ_BYTES ? 1 : 4;
}

const char *tj_path(const tj_builder *b, int depth, char *buf, size_t cap) {
    size_t n = 0;
    int d = b->base;
    if (b->named_row)
        n = (size_t)snprintf(buf, cap, "%s[%lld]." TJ_NAME, b->root, (long long)b->idx[0], b->name);
    else
        n = (size_t)snprintf(buf, cap, "%s", b->root);
    for (; d < depth && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "[%lld]", (long long)b->idx[d]);
    return buf;
}

/* "path: message" as KILN_ERR_INVALID. */
__attribute__((format(printf, 3, 4))) static kiln_status at(const tj_builder *b, int depth,
                                                            const char *fmt, ...) {
    char path[256], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(KILN_ERR_INVALID, "%s: %s", tj_path(b, depth, path, sizeof path), msg);
}

kiln_status tj_builder_init(tj_builder *b, const char *name, kiln_tj_type type, int auto_type,
                            const char *root, int named_row, int base) {
    memset(b, 0, sizeof *b);
    b->type = type, b->auto_type = auto_type, b->named_row = named_row, b->base = base;
    b->leaf_depth = -1;
    b->name = strdup(name);
    b->root = strdup(root);
    if (!b->name || !b->root || kiln_sbuf_reserve(&b->scratch, 64)) {
        tj_builder_free(b);
        return kiln_error(KILN_ERR_NOMEM, "out of memory");
    }
    return KILN_OK;
}

void tj_builder_free(tj_builder *b) {
    free(b->name);
    free((char *)b->root);
    free(b->data);
    free(b->offsets);
    kiln_sbuf_free(&b->scratch);
    memset(b, 0, sizeof *b);
}

static kiln_status grow(tj_builder *b, size_t need) {
    if (b->cap - b->len >= need) return KILN_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < need) {
        if (cap > SIZE_MAX / 2) return kiln_error(KILN_ERR_NOMEM, "input too large");
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) return kiln_error(KILN_ERR_NOMEM, "out of memory for input '" TJ_NAME "'", b->name);
    b->data = p, b->cap = cap;
    return KILN_OK;
}

kiln_status tj_builder_reserve(tj_builder *b, int64_t n) {
    if (n <= 0 || b->type == KILN_TJ_BYTES || b->auto_type) return KILN_OK;
    return grow(b, (size_t)n * type_size(b->type));
}

/* Ends the current bytes element at b->len. */
static kiln_status push_offset(tj_builder *b) {
    if ((size_t)b->count + 2 > b->off_cap) {
        size_t cap = b->off_cap ? 2 * b->off_cap : 64;
        int64_t *p = realloc(b->offsets, cap * sizeof *p);
        if (!p) return kiln_error(KILN_ERR_NOMEM, "out of memory for input '" TJ_NAME "'", b->name);
        b->offsets = p, b->off_cap = cap;
        if (b->count == 0) p[0] = 0;
    }
    b->offsets[b->count + 1] = (int64_t)b->len;
    return KILN_OK;
}

static int b64val(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

/* Appends the base64 text s[0..n) decoded. */
static kiln_status put_base64(tj_builder *b, int depth, const char *s, size_t n) {
    size_t pad = 0, total = n;
    while (n > 0 && s[n - 1] == '=' && pad < 2) n--, pad++;
    if ((pad && total % 4) || n % 4 == 1)
        return at(b, depth, "b64: invalid base64 length %zu", total);
    kiln_status st = grow(b, n / 4 * 3 + 3);
    if (st) return st;
    unsigned char *o = (unsigned char *)b->data + b->len;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) return at(b, depth, "b64: invalid base64 character at offset %zu", i);
        acc = acc << 6 | (uint32_t)v, bits += 6;
        if (bits >= 8) bits -= 8, *o++ = (unsigned char)(acc >> bits);
    }
    b->len = (size_t)((char *)o - b->data);
    return KILN_OK;
}

/* {"b64": "..."} at the cursor. */
static kiln_status put_b64_object(tj_builder *b, js_cur *c, int depth) {
    kiln_status st;
    c->p++; /* '{' */
    kiln_sbuf_clear(&b->scratch);
    if (js_peek(c) != '"') return at(b, depth, "expected {\"b64\": \"...\"}, got another object");
    if ((st = js_string(c, &b->scratch))) return st;
    if (b->scratch.len != 3 || memcmp(b->scratch.data, "b64", 3) != 0)
        return at(b, depth, "expected {\"b64\": \"...\"}, got an object with key \"%.32s\"",
                  b->scratch.data);
    if ((st = js_expect(c, ':', "expected ':' after a key"))) return st;
    if (js_kind_at(c) != JS_STRING) return at(b, depth, "b64: expected a string");
    kiln_sbuf_clear(&b->scratch);
    if ((st = js_string(c, &b->scratch))) return st;
    if ((st = put_base64(b, depth, b->scratch.data, b->scratch.len))) return st;
    if (js_peek(c) != '}') return at(b, depth, "expected {\"b64\": \"...\"} with no other keys");
    c->p++;
    return KILN_OK;
}

/* The raw text of the string at the cursor, when it spells NaN or an infinity. */
static int spells_nonfinite(const js_cur *c) {
    static const char *words[] = {"\"NaN\"", "\"nan\"",  "\"Infinity\"", "\"-Infinity\"",
                                  "\"inf\"", "\"-inf\"", "\"Inf\"",      "\"-Inf\""};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(c->end - c->p) >= n && memcmp(c->p, words[i], n) == 0) return 1;
    }
    return 0;
}

static const char *want(const tj_builder *b) {
    if (b->decl && b->decl->kind == TJ_BOOL) return "true or false";
    if (b->type == KILN_TJ_BYTES) return b->decl ? "a string" : "a string or {\"b64\": ...}";
    return b->decl && b->decl->kind != TJ_FLOAT ? "an integer" : "a number";
}

static kiln_status put_number(tj_builder *b, const js_num *n, int depth) {
    int tl = n->text_len > 40 ? 40 : n->text_len;
    double d = n->d;
    int integral = n->is_int || (isfinite(d) && d == floor(d));
    if (b->decl) { /* the declared datatype first */
        const tj_dtype *t = b->decl;
        if (t->kind == TJ_BOOL || t->kind == TJ_BYTES_DT)
            return at(b, depth, "expected %s (datatype %s), got %.*s", want(b), t->name, tl,
                      n->text);
        if ((t->kind == TJ_INT || t->kind == TJ_UINT) && !integral)
            return at(b, depth, "%.*s is not an integer (datatype %s)", tl, n->text, t->name);
        if ((t->kind == TJ_INT || t->kind == TJ_UINT) &&
            (n->is_int ? ((double)n->i < t->lo || (double)n->i > t->hi) : (d < t->lo || d > t->hi)))
            return at(b, depth, "%.*s is out of range for %s", tl, n->text, t->name);
        if (t->kind == TJ_FLOAT && !isfinite(d) && !n->nonfinite) /* 1e999, not Infinity */
            return at(b, depth, "%.*s is out of range for %s", tl, n->text, t->name);
    }
    kiln_status st = grow(b, 8);
    if (st) return st;
    char *o = b->data + b->len;
    switch (b->type) {
    case KILN_TJ_F32: {
        float f = (float)d;
        if (!isfinite(f) && !n->nonfinite)
            return at(b, depth, "%.*s is out of float32 range", tl, n->text);
        memcpy(o, &f, 4);
        b->len += 4;
        return KILN_OK;
    }
    case KILN_TJ_I32: {
        if (!integral) return at(b, depth, "expected an integer (INT32), got %.*s", tl, n->text);
        if ((n->is_int ? (n->i < INT32_MIN || n->i > INT32_MAX) : (d < INT32_MIN || d > INT32_MAX)))
            return at(b, depth, "%.*s is out of range for INT32", tl, n->text);
        int32_t v32 = (int32_t)(n->is_int ? n->i : (int64_t)d);
        memcpy(o, &v32, 4);
        b->len += 4;
        return KILN_OK;
    }
    case KILN_TJ_I64: {
        if (!integral) return at(b, depth, "expected an integer (INT64), got %.*s", tl, n->text);
        if (!n->is_int && !(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            return at(b, depth, "%.*s is out of range for INT64", tl, n->text);
        int64_t v = n->is_int ? n->i : (int64_t)d;
        memcpy(o, &v, 8);
        b->len += 8;
        return KILN_OK;
    }
    case KILN_TJ_BYTES:
        break;
    }
    return at(b, depth, "expected %s, got a number", want(b));
}

static kiln_status put_bool(tj_builder *b, int v, int depth) {
    if (!b->decl || b->decl->kind != TJ_BOOL)
        return at(b, depth, "expected %s%s%s, got %s", want(b), b->decl ? " for " : "",
                  b->decl ? b->decl->name : "", v ? "true" : "false");
    js_num n = {v, v, 1, v ? "true" : "false", v ? 4 : 5};
    const tj_dtype *decl = b->decl;
    b->decl = NULL; /* 0 and 1 then convert like numbers */
    kiln_status st = put_number(b, &n, depth);
    b->decl = decl;
    return st;
}

/* One leaf at the cursor, of kind k. */
static kiln_status put_leaf(tj_builder *b, js_cur *c, js_kind k, int depth) {
    kiln_status st;
    if (b->auto_type && (k == JS_NUMBER || k == JS_NONFINITE || k == JS_STRING || k == JS_OBJECT)) {
        b->type = k == JS_NUMBER || k == JS_NONFINITE ? KILN_TJ_F32 : KILN_TJ_BYTES;
        b->auto_type = 0;
    }
    switch (k) {
    case JS_NUMBER:
    case JS_NONFINITE: { /* NaN and Infinity as TF Serving and Triton take them */
        js_num n;
        if ((st = js_number(c, &n))) return st;
        st = put_number(b, &n, depth);
        break;
    }
    case JS_STRING:
        if (b->type != KILN_TJ_BYTES || (b->decl && b->decl->kind != TJ_BYTES_DT)) {
            if (spells_nonfinite(c))
                return at(b, depth, "expected %s, got a string (NaN, Infinity and -Infinity go "
                          "without quotes)", want(b));
            return at(b, depth, "expected %s, got a string", want(b));
        }
        if ((st = js_string(c, &b->scratch))) return st; /* decoded, then appended */
        if ((st = grow(b, b->scratch.len + 1))) return st;
        memcpy(b->data + b->len, b->scratch.data, b->scratch.len);
        b->len += b->scratch.len;
        kiln_sbuf_clear(&b->scratch);
        st = push_offset(b);
        break;
    case JS_OBJECT:
        if (b->type != KILN_TJ_BYTES || b->decl)
            return at(b, depth, "expected %s, got an object", want(b));
        if ((st = put_b64_object(b, c, depth))) return st;
        st = push_offset(b);
        break;
    case JS_TRUE:
    case JS_FALSE:
        if ((st = js_literal(c, k))) return st;
        st = put_bool(b, k == JS_TRUE, depth);
        break;
    case JS_NULL:
        return at(b, depth, "expected %s, got null", want(b));
    default:
        return js_syntax(c, "expected a value");
    }
    if (st) return st;
    b->count++;
    return KILN_OK;
}

/* ---- binary tensor data (Triton's extension): little-endian, row-major, no padding ---- */

static uint64_t load_le(const unsigned char *p, int size) {
    uint64_t v = 0;
    for (int k = size - 1; k >= 0; k--) v = v << 8 | p[k];
    return v;
}

/* Bytes per element of a fixed-size datatype. */
static int dtype_size(const tj_dtype *t) {
    if (t->kind == TJ_BOOL) return 1;
    if (t->kind == TJ_FLOAT) return strcmp(t->name, "FP64") == 0 ? 8 : 4;
    return t->hi <= 255 ? 1 : t->hi <= 65535 ? 2 : t->hi <= 4294967295.0 ? 4 : 8;
}

/* Element i of a fixed-size datatype as a number, as if it had been written in JSON. */
static void binary_number(const tj_dtype *t, int size, const unsigned char *p, js_num *n) {
    uint64_t u = load_le(p, size);
    memset(n, 0, sizeof *n);
    n->text = "";
    if (t->kind == TJ_FLOAT) {
        if (size == 4) {
            uint32_t u32 = (uint32_t)u;
            float f;
            memcpy(&f, &u32, 4);
            n->d = f;
        } else {
            memcpy(&n->d, &u, 8);
        }
        n->nonfinite = !isfinite(n->d); /* NaN and infinities are values here, as in JSON */
    } else if (t->kind == TJ_INT) {
        int shift = 64 - 8 * size; /* sign-extend */
        n->i = (int64_t)(u << shift) >> shift;
        n->d = (double)n->i, n->is_int = 1;
    } else if (u <= (uint64_t)INT64_MAX) { /* BOOL, UINT */
        n->i = (int64_t)u, n->d = (double)u, n->is_int = 1;
    } else {
        n->d = (double)u; /* a UINT64 past INT64_MAX: converts like a large literal */
    }
}

kiln_status tj_put_binary(tj_builder *b, const unsigned char *p, size_t len, int64_t numel) {
    const tj_dtype *t = b->decl;
    kiln_status st;
    if (t->kind == TJ_BYTES_DT) { /* each element: a 4-byte length, then its bytes */
        size_t off = 0;
        for (int64_t i = 0; off < len; i++) {
            b->idx[0] = i;
            if (len - off < 4)
                return at(b, 1, "%zu bytes left, too few for an element's 4-byte length",
                          len - off);
            uint64_t n = load_le(p + off, 4);
            off += 4;
            if (n > len - off)
                return at(b, 1, "an element of %llu bytes, but only %zu bytes are left",
                          (unsigned long long)n, len - off);
            if (b->type != KILN_TJ_BYTES) return at(b, 1, "expected %s, got bytes", want(b));
            if ((st = grow(b, (size_t)n + 1))) return st;
            memcpy(b->data + b->len, p + off, (size_t)n);
            b->len += (size_t)n, off += (size_t)n;
            if ((st = push_offset(b))) return st;
            b->count++;
        }
        return KILN_OK;
    }
    int size = dtype_size(t);
    if ((uint64_t)numel > len / (uint64_t)size || len != (size_t)numel * (size_t)size)
        return kiln_error(KILN_ERR_INVALID, "%s: %lld %s values take %lld bytes, got %zu", b->root,
                          (long long)numel, t->name, (long long)numel * size, len);
    if (t->kind == TJ_FLOAT && size == 4 && b->type == KILN_TJ_F32) { /* the common case */
        if ((st = grow(b, len))) return st;
        for (int64_t i = 0; i < numel; i++) {
            uint32_t u = (uint32_t)load_le(p + 4 * i, 4);
            memcpy(b->data + b->len + 4 * i, &u, 4);
        }
        b->len += len, b->count += numel;
        return KILN_OK;
    }
    /* the JSON path's checks, one element at a time: bool and integer elements as numbers */
    const tj_dtype *decl = b->decl;
    if (t->kind == TJ_BOOL) b->decl = NULL;
    for (int64_t i = 0; i < numel; i++) {
        js_num n;
        b->idx[0] = i;
        binary_number(t, size, p + (size_t)i * (size_t)size, &n);
        if (t->kind == TJ_BOOL && n.i > 1) {
            b->decl = decl;
            return at(b, 1, "BOOL byte %lld (1 is true, 0 is false)", (long long)n.i);
        }
        if ((st = put_number(b, &n, 1))) { /* again, with the value in the message */
            char text[40];
            if (n.is_int)
                snprintf(text, sizeof text, "%lld", (long long)n.i);
            else
                snprintf(text, sizeof text, "%.9g", n.d);
            n.text = text, n.text_len = (int)strlen(text);
            st = put_number(b, &n, 1);
            b->decl = decl;
            return st;
        }
        b->count++;
    }
    b->decl = decl;
    return KILN_OK;
}

/* A run of plain JSON integers of at most 9 digits each ("0", "-17", "255": pixels and class
 * ids, the bulk of request bodies), separated by bare commas, as float32 (correctly rounded, -0
 * for "-0") into dst, at most room of them. Each is taken only when ',' or ']' follows it; the
 * cursor ends right after the last one taken (at its ',' or ']'). Anything else (a fraction, an
 * exponent, a leading zero, 10 digits, whitespace, the end) stops the run, untouched, for
 * js_number and the general path. Returns how many were taken. */
static int64_t int_run(js_cur *c, char *dst, size_t room) {
    const char *p = c->p, *end = c->end;
    int64_t k = 0;
    while ((size_t)k < room) {
        const char *q = p;
        int neg = q < end && *q == '-';
        q += neg;
        if (q >= end || (unsigned)((unsigned char)*q - '0') > 9) break;
        uint32_t v = 0;
        if (*q == '0') {
            q++;
        } else {
            const char *d0 = q;
            while (q < end && (unsigned)((unsigned char)*q - '0') <= 9 && q - d0 < 9)
                v = v * 10 + (uint32_t)(*q++ - '0');
        }
        if (q >= end || (*q != ',' && *q != ']')) break;
        float f = neg ? -(float)v : (float)v;
        memcpy(dst + 4 * k, &f, 4);
        k++;
        c->p = q;
        if (*q != ',') break;
        p = q + 1;
    }
    return k;
}

kiln_status tj_walk(tj_builder *b, js_cur *c, int depth) {
    kiln_status st = KILN_OK;
    js_kind k = js_kind_at(c);
    if (k != JS_ARRAY) {
        if (b->leaf_depth < 0) {
            b->leaf_depth = depth;
        } else if (depth < b->leaf_depth) {
            if (b->dims_set >> depth & 1)
                return at(b, depth, "expected a list of %lld values, got %s",
                          (long long)b->dims[depth], js_kind_name(k));
            return at(b, depth, "expected a list, got %s", js_kind_name(k));
        }
        return put_leaf(b, c, k, depth);
    }
    if (b->leaf_depth >= 0 && depth >= b->leaf_depth)
        return at(b, depth, "expected %s, got a list", want(b));
    if (depth >= KILN_MAX_DIMS) return at(b, depth, "more than %d dimensions", KILN_MAX_DIMS);
    c->p++;
    if (js_peek(c) == ']')
        return at(b, depth, "empty list (every dimension needs at least 1 value)");
    int64_t n = 0;
    /* The common case, a list of numbers for a float32 input with no declared datatype, runs
     * in this loop; anything else (and every error) goes through the general path. */
    for (;;) {
        b->idx[depth] = n;
        int ch = js_peek(c);
        if (((ch >= '0' && ch <= '9') ||
             (ch == '-' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')) &&
            b->leaf_depth == depth + 1 &&
            b->type == KILN_TJ_F32 && !b->auto_type && !b->decl && b->cap - b->len >= 4) {
            int64_t got = int_run(c, b->data + b->len, (b->cap - b->len) / 4);
            if (!got) {
                js_num v;
                if ((st = js_number(c, &v))) return st;
                float f = (float)v.d;
                if (!isfinite(f)) return put_number(b, &v, depth + 1); /* names the error */
                memcpy(b->data + b->len, &f, 4);
                got = 1;
            }
            b->len += 4 * (size_t)got;
            b->count += got;
            n += got - 1;
        } else if ((st = tj_walk(b, c, depth + 1))) {
            return st;
        }
        n++;
        if (c->p < c->end && *c->p == ',') { /* the next element, no whitespace between */
            c->p++;
            continue;
        }
        int more = js_next(c, ']', &st);
        if (more < 0) return st;
        if (!more) break;
    }
    if (!(b->dims_set >> depth & 1)) {
        b->dims[depth] = n;
        b->dims_set |= 1u << depth;
    } else if (n != b->dims[depth]) {
        return at(b, depth, "expected %lld values, got %lld", (long long)b->dims[depth],
                  (long long)n);
    }
    return KILN_OK;
}

kiln_status tj_finish(tj_builder *b, kiln_tj_tensor *t) {
    memset(t, 0, sizeof *t);
    t->name = b->name, b->name = NULL;
    t->type = b->type;
    t->shape.ndim = b->leaf_depth < 0 ? 0 : b->leaf_depth;
    for (int d = 0; d < t->shape.ndim; d++) t->shape.dims[d] = b->dims[d];
    if (b->type == KILN_TJ_BYTES && !b->offsets) { /* no elements: still one offset */
        b->offsets = calloc(1, sizeof *b->offsets);
        if (!b->offsets) {
            tj_builder_free(b);
            return kiln_error(KILN_ERR_NOMEM, "out of memory");
        }
    }
    t->data = b->data, b->data = NULL;
    t->data_bytes = b->len;
    t->offsets = b->offsets, b->offsets = NULL;
    tj_builder_free(b);
    return KILN_OK;
}

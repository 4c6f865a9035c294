/* sbuf.c — the growable text buffer (kiln/sbuf.h).
 * Invariant: failed == 1 implies data == NULL and len == cap == 0; otherwise data[len] == 0
 * whenever data != NULL. Growth doubles, so n appends cost O(total bytes). */
#include "kiln/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sbuf_fail(kiln_sbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 1;
}

int kiln_sbuf_reserve(kiln_sbuf *b, size_t n) {
    if (b->failed) return -1;
    if (b->cap - b->len > n) return 0; /* room for n bytes and the NUL */
    if (n > SIZE_MAX / 2 - b->len) {
        sbuf_fail(b);
        return -1;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= n) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        sbuf_fail(b);
        return -1;
    }
    b->data = p, b->cap = cap;
    p[b->len] = 0;
    return 0;
}

void kiln_sbuf_put(kiln_sbuf *b, const char *s, size_t n) {
    if (kiln_sbuf_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void kiln_sbuf_puts(kiln_sbuf *b, const char *s) {
    kiln_sbuf_put(b, s, strlen(s));
}

void kiln_sbuf_putc(kiln_sbuf *b, char c) {
    if (kiln_sbuf_reserve(b, 1)) return;
    b->data[b->len++] = c;
    b->data[b->len] = 0;
}

void kiln_sbuf_printf(kiln_sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || kiln_sbuf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s[0..n) (2-4 bytes), or 0 (overlongs, surrogates and
 * code points above U+10FFFF are invalid). s[0] >= 0x80. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len) return 0;
    unsigned cp = c & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

void kiln_sbuf_json_strn(kiln_sbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    /* worst case: every byte becomes \u00XX or \ufffd (6 bytes) */
    if (n > (SIZE_MAX - 3) / 6 || kiln_sbuf_reserve(b, 6 * n + 2)) {
        if (!b->failed) sbuf_fail(b);
        return;
    }
    char *o = b->data + b->len;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    *o++ = '"';
    while (p < end) {
        unsigned c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c, p++;
        } else if (c == '"' || c == '\\') {
            *o++ = '\\', *o++ = (char)c, p++;
        } else if (c < 0x20) { /* \b \t \n \f \r by name, the rest as \u00XX */
            static const char short_esc[33] = "uuuuuuuubtnufruuuuuuuuuuuuuuuuuu";
            *o++ = '\\', *o++ = short_esc[c];
            if (short_esc[c] == 'u') *o++ = '0', *o++ = '0', *o++ = hex[c >> 4], *o++ = hex[c & 15];
            p++;
        } else {
            size_t len = utf8_len(p, (size_t)(end - p));
            if (len) {
                memcpy(o, p, len);
                o += len, p += len;
            } else {
                memcpy(o, "\\ufffd", 6);
                o += 6, p++;
            }
        }
    }
    *o++ = '"';
    *o = 0;
    b->len = (size_t)(o - b->data);
}

void kiln_sbuf_json_str(kiln_sbuf *b, const char *s) {
    kiln_sbuf_json_strn(b, s, strlen(s));
}

void kiln_sbuf_f32(kiln_sbuf *b, float v) {
    if (kiln_sbuf_reserve(b, KILN_F32_CHARS)) return;
    b->len += (size_t)kiln_f32_shortest(v, b->data + b->len);
}

void kiln_sbuf_i64(kiln_sbuf *b, int64_t v) {
    if (kiln_sbuf_reserve(b, 24)) return;
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do tmp[n++] = (char)('0' + u % 10), u /= 10;
    while (u);
    char *o = b->data + b->len;
    if (v < 0) *o++ = '-';
    while (n) *o++ = tmp[--n];
    *o = 0;
    b->len = (size_t)(o - b->data);
}

char *kiln_sbuf_take(kiln_sbuf *b, size_t *len) {
    if (b->failed) {
        b->failed = 0;
        if (len) *len = 0;
        return NULL;
    }
    if (!b->data && kiln_sbuf_reserve(b, 0)) {
        b->failed = 0;
        return NULL;
    }
    b->data[b->len] = 0;
    char *s = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

void kiln_sbuf_clear(kiln_sbuf *b) {
    b->len = 0;
    b->failed = 0;
    if (b->data) b->data[0] = 0;
}

void kiln_sbuf_free(kiln_sbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

/* json_scan.c — strings, numbers, literals and skipping for the request parsers (json_scan.h).
 *
 * NaN and Infinity tokens read as numbers (js_number, js_skip_value) wherever they stand, as
 * rapidjson reads them for TF Serving and Triton; whoever converts a value decides whether a
 * non-finite one is welcome (a float tensor takes it, an integer or a shape refuses it).
 *
 * Numbers: the literal is checked against JSON's grammar first. When its digits fit 2^53 and
 * its decimal exponent is within ±22, value = digits · 10^exp or digits / 10^-exp is one
 * correctly rounded double operation on exact operands (Clinger's fast path); other literals go
 * to strtod on a copy of just the literal, so strtod never sees bytes past it and the body needs
 * no terminator. strtod follows LC_NUMERIC, which kiln leaves at "C".
 */
#include "net/json_scan.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kiln_status js_syntax(const js_cur *c, const char *what) {
    int line = 1;
    const char *line_start = c->base;
    for (const char *q = c->base; q < c->p; q++)
        if (*q == '\n') line++, line_start = q + 1;
    if (c->p >= c->end)
        return kiln_error(KILN_ERR_FORMAT, "invalid JSON at line %d (end of body): %s", line, what);
    return kiln_error(KILN_ERR_FORMAT, "invalid JSON at line %d, column %d: %s", line,
                      (int)(c->p - line_start) + 1, what);
}

kiln_status js_expect(js_cur *c, char ch, const char *what) {
    if (js_peek(c) != (unsigned char)ch) return js_syntax(c, what);
    c->p++;
    return KILN_OK;
}

int js_next(js_cur *c, char close, kiln_status *st) {
    int ch = js_peek(c);
    if (ch == ',') {
        c->p++;
        return 1;
    }
    if (ch == (unsigned char)close) {
        c->p++;
        return 0;
    }
    *st = js_syntax(c, close == ']' ? "expected ',' or ']' after a list element"
                                    : "expected ',' or '}' after an object member");
    return -1;
}

js_kind js_kind_at(js_cur *c) {
    int ch = js_peek(c);
    switch (ch) {
    case -1:
        return JS_END;
    case '{':
        return JS_OBJECT;
    case '[':
        return JS_ARRAY;
    case '"':
        return JS_STRING;
    case 't':
        return JS_TRUE;
    case 'f':
        return JS_FALSE;
    case 'n':
        return JS_NULL;
    case 'N':
    case 'I':
        return JS_NONFINITE;
    case '-':
        if (c->p + 1 < c->end && (c->p[1] == 'I' || c->p[1] == 'N')) return JS_NONFINITE;
        return JS_NUMBER;
    default:
        return ch >= '0' && ch <= '9' ? JS_NUMBER : JS_BAD;
    }
}

const char *js_kind_name(js_kind k) {
    static const char *names[] = {"nothing",         "an object",   "a list", "a string",
                                  "a number",        "true",        "false",  "null",
                                  "NaN or Infinity", "invalid JSON"};
    return names[k];
}

kiln_status js_literal(js_cur *c, js_kind k) {
    const char *word = k == JS_TRUE ? "true" : k == JS_FALSE ? "false" : "null";
    size_t n = strlen(word);
    js_peek(c);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return js_syntax(c, "expected a value");
    c->p += n;
    return KILN_OK;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* The 4 hex digits at p (p + 4 <= end checked by the caller); -1 when not hex. */
static long hex4(const char *p) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v << 4 | h;
    }
    return v;
}

static void put_utf8(kiln_sbuf *out, unsigned long cp) {
    char u[4];
    size_t n;
    if (cp < 0x80)
        u[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
        u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    else
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    kiln_sbuf_put(out, u, n);
}

kiln_status js_string(js_cur *c, kiln_sbuf *out) {
    if (js_peek(c) != '"') return js_syntax(c, "expected a string");
    const char *p = ++c->p;
    for (;;) {
        const char *run = p; /* copy runs of plain bytes at once */
        while (p < c->end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
        if (p > run) kiln_sbuf_put(out, run, (size_t)(p - run));
        if (p >= c->end) {
            c->p = p;
            return js_syntax(c, "unterminated string");
        }
        if (*p == '"') break;
        if ((unsigned char)*p < 0x20) {
            c->p = p;
            return js_syntax(c, "control character in a string (escape it)");
        }
        /* a backslash escape */
        c->p = p;
        if (p + 1 >= c->end) return js_syntax(c, "unterminated string");
        char e = p[1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char to[] = "\"\\/\b\f\n\r\t";
            kiln_sbuf_putc(out, to[simple - "\"\\/bfnrt"]);
            p += 2;
            continue;
        }
        if (e != 'u') return js_syntax(c, "invalid escape in a string");
        if (c->end - p < 6 || hex4(p + 2) < 0) return js_syntax(c, "invalid \\u escape");
        unsigned long cp = (unsigned long)hex4(p + 2);
        p += 6;
        if (cp >= 0xdc00 && cp <= 0xdfff) return js_syntax(c, "lone low surrogate in \\u escape");
        if (cp >= 0xd800 && cp <= 0xdbff) {
            long lo = c->end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
            if (lo < 0xdc00 || lo > 0xdfff)
                return js_syntax(c, "high surrogate without a low one in \\u escape");
            cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned long)lo - 0xdc00);
            p += 6;
        }
        put_utf8(out, cp);
    }
    c->p = p + 1;
    if (out->failed) return kiln_error(KILN_ERR_NOMEM, "out of memory reading a string");
    return KILN_OK;
}

/* Skips a string, checking it as js_string does, without decoding. */
static kiln_status skip_string(js_cur *c) {
    const char *p = ++c->p;
    for (;;) {
        while (p < c->end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
        c->p = p;
        if (p >= c->end) return js_syntax(c, "unterminated string");
        if (*p == '"') break;
        if ((unsigned char)*p < 0x20)
            return js_syntax(c, "control character in a string (escape it)");
        if (p + 1 >= c->end) return js_syntax(c, "unterminated string");
        if (p[1] == 'u') {
            if (c->end - p < 6 || hex4(p + 2) < 0) return js_syntax(c, "invalid \\u escape");
            long cp = hex4(p + 2);
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return js_syntax(c, "lone low surrogate in \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                long lo = c->end - p >= 12 && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return js_syntax(c, "high surrogate without a low one in \\u escape");
                p += 6;
            }
            p += 6;
        } else if (p[1] && strchr("\"\\/bfnrt", p[1])) {
            p += 2;
        } else {
            return js_syntax(c, "invalid escape in a string");
        }
    }
    c->p = p + 1;
    return KILN_OK;
}

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Checks the literal's grammar and, when convert is set, computes its value. */
static kiln_status number(js_cur *c, js_num *n, int convert) {
    js_peek(c);
    const char *p = c->p, *start = p, *end = c->end;
    int neg = 0;
    if (p < end && *p == '-') neg = 1, p++;
    if (p >= end || *p < '0' || *p > '9') {
        c->p = p;
        return js_syntax(c, "expected a digit");
    }
    uint64_t mant = 0;
    int ndig = 0, dropped = 0; /* significant digits kept in mant, and digits past 19 */
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9') {
            c->p = p;
            return js_syntax(c, "leading zeros are not allowed in numbers");
        }
    } else {
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (ndig < 19)
                mant = mant * 10 + (uint64_t)(*p - '0'), ndig++;
            else
                dropped++;
        }
    }
    int frac = 0, has_frac = 0, has_exp = 0;
    if (p < end && *p == '.') {
        has_frac = 1, p++;
        if (p >= end || *p < '0' || *p > '9') {
            c->p = p;
            return js_syntax(c, "expected a digit after the decimal point");
        }
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (ndig == 0 && *p == '0') { /* leading zeros of 0.000123 carry no digits */
                frac++;
                continue;
            }
            if (ndig < 19)
                mant = mant * 10 + (uint64_t)(*p - '0'), ndig++, frac++;
            else
                dropped++;
        }
    }
    long ex = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        has_exp = 1, p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p == '-', p++;
        if (p >= end || *p < '0' || *p > '9') {
            c->p = p;
            return js_syntax(c, "expected a digit in the exponent");
        }
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if (ex < 100000) ex = ex * 10 + (*p - '0');
        if (eneg) ex = -ex;
    }
    c->p = p;
    if (!convert) return KILN_OK;
    n->text = start;
    n->text_len = (int)(p - start);

    long e10 = ex - frac; /* value = mant · 10^e10 when no digit was dropped */
    n->is_int = 0;
    if (!has_frac && !has_exp && !dropped &&
        (mant <= (uint64_t)INT64_MAX || (neg && mant == (uint64_t)INT64_MAX + 1))) {
        n->is_int = 1;
        n->i = neg ? (int64_t)(0 - mant) : (int64_t)mant;
    }
    if (!dropped && mant <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
        double d = (double)mant;
        d = e10 >= 0 ? d * POW10[e10] : d / POW10[-e10];
        n->d = neg ? -d : d;
        return KILN_OK;
    }
    char small[64], *buf = small;
    size_t len = (size_t)(p - start);
    if (len >= sizeof small && !(buf = malloc(len + 1)))
        return kiln_error(KILN_ERR_NOMEM, "out of memory reading a number");
    memcpy(buf, start, len);
    buf[len] = 0;
    n->d = strtod(buf, NULL); /* overflow gives ±HUGE_VAL, which callers range-check */
    if (buf != small) free(buf);
    return KILN_OK;
}

/* NaN, Infinity, -Infinity at the cursor, and what rapidjson's kParseNanAndInfFlag also takes:
 * -NaN, Inf, -Inf. The token must end there (a letter after it is a syntax error). */
static kiln_status nonfinite(js_cur *c, js_num *n) {
    static const struct {
        const char *word;
        double sign; /* 0: NaN */
    } words[] = {{"-Infinity", -1}, {"Infinity", 1}, {"-Inf", -1}, {"Inf", 1},
                 {"-NaN", 0},       {"NaN", 0}};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t len = strlen(words[i].word);
        if ((size_t)(c->end - c->p) < len || memcmp(c->p, words[i].word, len) != 0) continue;
        const char *after = c->p + len;
        int letter = after < c->end && ((*after | 0x20) >= 'a' && (*after | 0x20) <= 'z');
        if (letter) break;
        n->d = words[i].sign == 0 ? NAN : words[i].sign * INFINITY;
        n->i = 0, n->is_int = 0, n->nonfinite = 1;
        n->text = c->p, n->text_len = (int)len;
        c->p = after;
        return KILN_OK;
    }
    return js_syntax(c, "expected a value (NaN, Infinity or -Infinity?)");
}

kiln_status js_number(js_cur *c, js_num *n) {
    /* Fast path: a plain integer of 1 to 9 digits (pixels, class ids), the bulk of request
     * bodies. Anything else, and every error, takes the general path. */
    js_peek(c);
    const char *p = c->p, *end = c->end;
    int neg = p < end && *p == '-';
    p += neg;
    n->nonfinite = 0;
    if (p < end && (*p == 'N' || *p == 'I')) return nonfinite(c, n);
    if (p < end && *p >= '1' && *p <= '9') {
        const char *d0 = p;
        uint32_t v = 0;
        while (p < end && *p >= '0' && *p <= '9' && p - d0 < 9) v = v * 10 + (uint32_t)(*p++ - '0');
        if (p >= end || !((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E')) {
            n->i = neg ? -(int64_t)v : (int64_t)v;
            n->d = (double)n->i;
            n->is_int = 1;
            n->text = c->p;
            n->text_len = (int)(p - c->p);
            c->p = p;
            return KILN_OK;
        }
    } else if (p < end && *p == '0' && (p + 1 >= end || !((p[1] >= '0' && p[1] <= '9') ||
                                                          p[1] == '.' || p[1] == 'e' ||
                                                          p[1] == 'E'))) {
        n->i = 0, n->d = neg ? -0.0 : 0.0, n->is_int = 1;
        n->text = c->p;
        n->text_len = (int)(p + 1 - c->p);
        c->p = p + 1;
        return KILN_OK;
    }
    return number(c, n, 1);
}

/* The bytes js_skip_bracketed stops at. */
static const unsigned char STRUCTURAL[256] = {['['] = 1, [']'] = 1, ['{'] = 1, ['}'] = 1, ['"'] = 1};

/* Whether any of the 8 bytes of w is '[', ']', '{', '}' or '"' (SWAR: b | 0x20 is 0x7b only
 * for '[' and '{', 0x7d only for ']' and '}'; has_zero is exact, no false positives). */
static inline int has_structural(uint64_t w) {
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t l = w | 0x2020202020202020u;
    uint64_t a = l ^ 0x7b7b7b7b7b7b7b7bu, b = l ^ 0x7d7d7d7d7d7d7d7du, q = w ^ 0x2222222222222222u;
    return (((a - ones) & ~a) | ((b - ones) & ~b) | ((q - ones) & ~q)) & highs ? 1 : 0;
}

kiln_status js_skip_bracketed(js_cur *c) {
    int ch = js_peek(c);
    if (ch != '[' && ch != '{') return js_skip_value(c, 1);
    const char *p = c->p, *end = c->end;
    int64_t depth = 0;
    for (; p < end; p++) {
        /* numbers, commas, spaces: 8 bytes at a time while none of them is structural */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (has_structural(w)) break;
            p += 8;
        }
        if (p >= end) break;
        char b = *p;
        while (!STRUCTURAL[(unsigned char)b] && ++p < end) b = *p;
        if (p >= end) break;
        if (b == '[' || b == '{') {
            depth++;
        } else if (b == ']' || b == '}') {
            if (--depth == 0) {
                c->p = p + 1;
                return KILN_OK;
            }
        } else if (b == '"') {
            c->p = p;
            kiln_status st = skip_string(c);
            if (st) return st;
            p = c->p - 1;
        }
    }
    c->p = end;
    return js_syntax(c, "unterminated list or object");
}

kiln_status js_skip_value(js_cur *c, int depth) {
    kiln_status st = KILN_OK;
    js_kind k = js_kind_at(c);
    switch (k) {
    case JS_STRING:
        return skip_string(c);
    case JS_NUMBER: {
        js_num n;
        return number(c, &n, 0);
    }
    case JS_TRUE:
    case JS_FALSE:
    case JS_NULL:
        return js_literal(c, k);
    case JS_OBJECT:
    case JS_ARRAY: {
        if (depth >= JS_MAX_DEPTH) return js_syntax(c, "nesting deeper than 128 levels");
        char close = k == JS_OBJECT ? '}' : ']';
        c->p++;
        if (js_peek(c) == (unsigned char)close) {
            c->p++;
            return KILN_OK;
        }
        for (;;) {
            if (k == JS_OBJECT) {
                if (js_peek(c) != '"') return js_syntax(c, "expected a string key");
                if ((st = skip_string(c)) || (st = js_expect(c, ':', "expected ':' after a key")))
                    return st;
            }
            if ((st = js_skip_value(c, depth + 1))) return st;
            int more = js_next(c, close, &st);
            if (more < 0) return st;
            if (!more) return KILN_OK;
        }
    }
    case JS_NONFINITE: {
        js_num n;
        return nonfinite(c, &n);
    }
    case JS_END:
        return js_syntax(c, "expected a value");
    case JS_BAD:
        break;
    }
    return js_syntax(c, "expected a value");
}

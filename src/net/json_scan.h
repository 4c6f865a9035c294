/* json_scan.h — the lexical layer of the request parsers (tensor_json.c, tj_build.c).
 *
 * A js_cur walks a body [base, end) that need not be NUL-terminated; every read is bounds-checked.
 * Functions return KILN_OK with the cursor past what they read, or KILN_ERR_FORMAT with a
 * message naming line and column ("invalid JSON at line 3, column 14: expected ',' or ']'").
 * The grammar is RFC 8259's plus the tokens NaN, Infinity and -Infinity (and rapidjson's -NaN,
 * Inf, -Inf) wherever a number may stand, as TF Serving and Triton parse requests (rapidjson's
 * kParseNanAndInfFlag; TF Serving's api_rest.md, "JSON conformance"). Otherwise strict: no
 * comments, trailing commas, leading zeros, raw control characters in strings or lone \u
 * surrogates. Nesting deeper than JS_MAX_DEPTH is refused, which bounds the recursion of
 * js_skip_value.
 */
#ifndef KILN_JSON_SCAN_H
#define KILN_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/sbuf.h"
#include "kiln/status.h"

#define JS_MAX_DEPTH 128

typedef struct {
    const char *base, *p, *end;
} js_cur;

static inline int js_ws_char(char ch) {
    return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t';
}

/* Skips whitespace; returns the next byte, or -1 at the end. */
static inline int js_peek(js_cur *c) {
    while (c->p < c->end && js_ws_char(*c->p)) c->p++;
    return c->p < c->end ? (unsigned char)*c->p : -1;
}

/* "invalid JSON at line L, column C: <what>" for the cursor's position (KILN_ERR_FORMAT). */
kiln_status js_syntax(const js_cur *c, const char *what);
/* Skips whitespace and one expected byte. */
kiln_status js_expect(js_cur *c, char ch, const char *what);
/* After an element of a list or object: skips ',' (returns 1) or the closing byte (returns 0);
 * anything else is a syntax error (returns -1). */
int js_next(js_cur *c, char close, kiln_status *st);

/* Decodes the string at the cursor (which must be at '"') and appends its bytes to out (which
 * stays NUL-terminated; decoded strings may contain NUL bytes from \u0000). */
kiln_status js_string(js_cur *c, kiln_sbuf *out);

typedef struct {
    double d;         /* the value, correctly rounded */
    int64_t i;        /* the value when is_int */
    int is_int;       /* written without fraction or exponent, and fits int64 */
    const char *text; /* the literal as written, for messages */
    int text_len;
    int nonfinite; /* a NaN or Infinity token (d is NaN or ±inf), not an overflowing literal */
} js_num;
/* A number at the cursor: a JSON number, or a NaN / Infinity token (kind JS_NONFINITE). */
kiln_status js_number(js_cur *c, js_num *n);

/* What the value at the cursor is, from its first byte (after whitespace). */
typedef enum {
    JS_END = 0, /* no more input */
    JS_OBJECT,
    JS_ARRAY,
    JS_STRING,
    JS_NUMBER,
    JS_TRUE,
    JS_FALSE,
    JS_NULL,
    JS_NONFINITE, /* NaN, Infinity, -Infinity (not RFC 8259 JSON; read by js_number) */
    JS_BAD,
} js_kind;
js_kind js_kind_at(js_cur *c);
const char *js_kind_name(js_kind k); /* "a number", "a list", ... */

/* Reads (and checks) true, false or null. */
kiln_status js_literal(js_cur *c, js_kind k);
/* Skips one complete value, checking its grammar; depth is the current nesting. */
kiln_status js_skip_value(js_cur *c, int depth);
/* Skips one list or object by its brackets and strings alone (strings are checked), without
 * checking the grammar of what is between: for a value that is parsed in full later (the
 * tensors of a request), so the first pass over it costs a byte scan. Other values go to
 * js_skip_value. */
kiln_status js_skip_bracketed(js_cur *c);

#endif

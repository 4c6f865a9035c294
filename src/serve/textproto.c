/* textproto.c — a recursive-descent reader of the protobuf text format (see textproto.h).
 *
 * One pass over the text with a cursor that tracks the line. Nesting is bounded
 * (TP_MAX_DEPTH) so a hostile file cannot exhaust the stack; every allocation failure unwinds
 * with KILN_ERR_NOMEM and frees what was built.
 */
#include "serve/textproto.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/fileio.h"
#include "kiln/mem.h"

#define TP_MAX_DEPTH 32
#define TP_MAX_FILE (16u << 20)

typedef struct {
    const char *p, *end, *file;
    int line;
} cursor;

static void skip_space(cursor *c) {
    while (c->p < c->end) {
        char ch = *c->p;
        if (ch == '\n')
            c->line++, c->p++;
        else if (ch == ' ' || ch == '\t' || ch == '\r' || ch == ',' || ch == ';')
            c->p++;
        else if (ch == '#')
            while (c->p < c->end && *c->p != '\n') c->p++;
        else
            break;
    }
}

static int is_word(char ch) {
    return isalnum((unsigned char)ch) || ch == '_' || ch == '.' || ch == '-' || ch == '+';
}

static kiln_status syntax(cursor *c, const char *what) {
    if (c->p >= c->end)
        return kiln_error(KILN_ERR_FORMAT, "%s:%d: %s, got the end of the file", c->file, c->line,
                          what);
    char ch = *c->p;
    if (isprint((unsigned char)ch))
        return kiln_error(KILN_ERR_FORMAT, "%s:%d: %s, got '%c'", c->file, c->line, what, ch);
    return kiln_error(KILN_ERR_FORMAT, "%s:%d: %s, got byte 0x%02x", c->file, c->line, what,
                      (unsigned char)ch);
}

static char *dup_range(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n), d[n] = 0;
    return d;
}

/* A quoted string at c->p; the unescaped text into *out. */
static kiln_status read_quoted(cursor *c, char **out) {
    char q = *c->p++;
    const char *start = c->p;
    size_t cap = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\n') break;
        if (*c->p == '\\' && c->p + 1 < c->end) c->p++;
        c->p++, cap++;
    }
    if (c->p >= c->end || *c->p != q)
        return kiln_error(KILN_ERR_FORMAT, "%s:%d: unterminated string", c->file, c->line);
    char *s = malloc(cap + 1), *o = s;
    if (!s) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", c->file);
    for (const char *p = start; p < c->p; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        char e = *++p;
        *o++ = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == '0' ? '\0' : e;
    }
    *o = 0;
    c->p++;
    *out = s;
    return KILN_OK;
}

static kiln_status read_message(cursor *c, char close, int depth, tp_node **first);

static kiln_status read_field(cursor *c, int depth, tp_node **out) {
    const char *start = c->p;
    while (c->p < c->end && is_word(*c->p)) c->p++;
    if (c->p == start) return syntax(c, "expected a field name");
    tp_node *n = calloc(1, sizeof *n);
    if (!n || !(n->name = dup_range(start, (size_t)(c->p - start)))) {
        free(n);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", c->file);
    }
    n->line = c->line;
    *out = n;
    skip_space(c);
    int colon = c->p < c->end && *c->p == ':';
    if (colon) c->p++, skip_space(c);
    if (c->p < c->end && (*c->p == '{' || *c->p == '<')) {
        char close = *c->p == '{' ? '}' : '>';
        c->p++;
        if (depth >= TP_MAX_DEPTH)
            return kiln_error(KILN_ERR_FORMAT, "%s:%d: nested deeper than %d levels", c->file,
                              c->line, TP_MAX_DEPTH);
        return read_message(c, close, depth + 1, &n->children);
    }
    if (!colon) return syntax(c, "expected ':' or '{' after the field name");
    if (c->p < c->end && (*c->p == '"' || *c->p == '\'')) {
        n->quoted = 1;
        return read_quoted(c, &n->value);
    }
    start = c->p;
    while (c->p < c->end && is_word(*c->p)) c->p++;
    if (c->p == start) return syntax(c, "expected a value");
    if (!(n->value = dup_range(start, (size_t)(c->p - start))))
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", c->file);
    return KILN_OK;
}

/* Fields until close ('}' or '>'), or the end of the text when close is 0. */
static kiln_status read_message(cursor *c, char close, int depth, tp_node **first) {
    tp_node **tail = first;
    for (;;) {
        skip_space(c);
        if (c->p >= c->end) {
            if (!close) return KILN_OK;
            char what[32];
            snprintf(what, sizeof what, "expected '%c'", close);
            return syntax(c, what);
        }
        if (close && *c->p == close) {
            c->p++;
            return KILN_OK;
        }
        kiln_status st = read_field(c, depth, tail);
        if (*tail) tail = &(*tail)->next;
        if (st) return st;
    }
}

kiln_status textproto_parse(const char *text, size_t len, const char *file, tp_node **root) {
    *root = NULL;
    tp_node *r = calloc(1, sizeof *r);
    if (!r) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", file);
    r->line = 1;
    cursor c = {text, text + len, file, 1};
    kiln_status st = read_message(&c, 0, 0, &r->children);
    if (st) {
        textproto_free(r);
        return st;
    }
    *root = r;
    return KILN_OK;
}

kiln_status textproto_parse_file(const char *path, tp_node **root) {
    void *buf;
    size_t len;
    *root = NULL;
    kiln_status st = kiln_file_read_all(path, &buf, &len, TP_MAX_FILE);
    if (st) return st;
    st = textproto_parse(buf, len, path, root);
    kiln_free(buf);
    return st;
}

void textproto_free(tp_node *n) {
    while (n) {
        tp_node *next = n->next;
        textproto_free(n->children);
        free(n->name);
        free(n->value);
        free(n);
        n = next;
    }
}

kiln_status textproto_int(const tp_node *n, const char *file, int64_t lo, int64_t hi,
                          int64_t *out) {
    if (!n->value || n->quoted)
        return kiln_error(KILN_ERR_FORMAT, "%s:%d: %s: expected an integer", file, n->line,
                          n->name);
    char *end;
    errno = 0;
    long long v = strtoll(n->value, &end, 10);
    if (errno || *end || end == n->value || v < lo || v > hi)
        return kiln_error(KILN_ERR_FORMAT, "%s:%d: %s: '%s' is not an integer in [%lld, %lld]",
                          file, n->line, n->name, n->value, (long long)lo, (long long)hi);
    *out = v;
    return KILN_OK;
}

kiln_status textproto_string(const tp_node *n, const char *file, const char **out) {
    if (!n->value || !n->quoted)
        return kiln_error(KILN_ERR_FORMAT, "%s:%d: %s: expected a quoted string", file, n->line,
                          n->name);
    *out = n->value;
    return KILN_OK;
}

kiln_status textproto_unknown(const tp_node *n, const char *file, const char *where) {
    return kiln_error(KILN_ERR_FORMAT, "%s:%d: unknown field '%s' in %s", file, n->line, n->name,
                      where);
}

kiln_status textproto_message(const tp_node *n, const char *file) {
    if (n->value)
        return kiln_error(KILN_ERR_FORMAT, "%s:%d: %s: expected a message ({ ... })", file,
                          n->line, n->name);
    return KILN_OK;
}

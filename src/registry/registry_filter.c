/* registry_filter.c — filter expressions and sort keys over runs: lexing, parsing, the canonical
 * text, and their translation to SQL (kiln/registry.h has the language).
 *
 * Grammar (recursive descent, one token of lookahead):
 *   expr    := and_e ("or" and_e)*
 *   and_e   := not_e ("and" not_e)*
 *   not_e   := "not" not_e | primary
 *   primary := "(" expr ")" | operand cmp operand
 *   operand := NAME | NUMBER | STRING
 * Nesting (parentheses and "not") is limited to MAX_DEPTH, so no input can exhaust the stack.
 *
 * Types are checked while parsing, so that an error can point at its column: metrics are
 * numbers, params are numbers or text (by what they are compared with), attributes have a fixed
 * type. A comparison is numeric unless one side can only be text (a string, a text attribute);
 * then both sides must have a text form.
 *
 * SQL: every comparison becomes coalesce(<lhs> <op> <rhs>, 0), so a missing metric or param
 * (NULL) makes it false rather than unknown, and "not" is plain negation. Values and names are
 * bound as parameters (reg_binds), never spliced into the SQL text. A metric or param operand is
 * a correlated subquery on its table's primary key (SQLite: the cheapest there), or, given the
 * query's reg_joins (PostgreSQL), a column of its LEFT JOIN: the same value, NULL when missing.
 *
 * Columns count characters (UTF-8 sequences), from 1.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kiln/metrics.h"
#include "registry/registry_internal.h"

#define MAX_DEPTH 64

typedef struct {
    const char *name, *sql;
    int numeric;
} attribute;

static const attribute ATTRS[] = {
    {"id", "r.id", 0},
    {"name", "r.name", 0},
    {"experiment", "e.name", 0},
    {"status", "r.status", 0},
    {"message", "r.message", 0},
    {"start_time", "r.start_time", 0},
    {"end_time", "r.end_time", 0},
    {"host", "r.host", 0},
    {"kiln_version", "r.kiln_version", 0},
    {"config_hash", "r.config_hash", 0},
    {"pid", "r.pid", 1},
    {"steps", "r.steps", 1},
    {"epochs_completed", "r.epochs_completed", 1},
    {"duration", REG_DURATION_SQL, 1},
};
#define N_ATTRS ((int)(sizeof ATTRS / sizeof *ATTRS))
static const char *const ATTR_LIST = "id, name, experiment, status, message, start_time, end_time, "
                                     "host, kiln_version, config_hash, pid, steps, "
                                     "epochs_completed, duration";

enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };
static const char *const OP_TEXT[] = {"=", "!=", "<", "<=", ">", ">="};
static const char *const OP_SQL[] = {"=", "<>", "<", "<=", ">", ">="};

typedef enum { N_AND, N_OR, N_NOT, N_CMP } node_kind;

typedef struct {
    node_kind kind;
    int a, b; /* children (node indexes) */
    int op, text_cmp;
    reg_operand l, r;
} node;

struct kiln_registry_filter {
    node *nodes;
    int n, cap;
    int root;
};

/* ---- lexing ---- */

typedef enum {
    T_END,
    T_NAME,
    T_NUMBER,
    T_STRING,
    T_OP,
    T_LPAREN,
    T_RPAREN,
    T_AND,
    T_OR,
    T_NOT
} tok_kind;

typedef struct {
    tok_kind kind;
    size_t pos, end; /* bytes of the token in the text */
    int op;
    double num;
    char *text; /* T_NAME, T_STRING: the unquoted text (owned by the token until taken) */
} token;

typedef struct {
    const char *src;
    size_t pos;
    token tok;
    kiln_status s;
    int column;
    int depth;
    kiln_registry_filter *f;
} parser;

static int column_of(const char *src, size_t pos) {
    int col = 1;
    for (size_t i = 0; i < pos && src[i]; i++) col += ((unsigned char)src[i] & 0xC0) != 0x80;
    return col;
}

static int fail(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parser *p, size_t pos, const char *fmt, ...) {
    if (p->s) return -1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->column = column_of(p->src, pos);
    p->s = kiln_error(KILN_ERR_INVALID, "column %d: %s", p->column, msg);
    return -1;
}

static int name_char(char c) {
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-' || c == '[' || c == ']' ||
           (unsigned char)c >= 0x80;
}

/* A name: plain characters and `backquoted` parts, joined. */
static int lex_name(parser *p, token *t) {
    const char *s = p->src;
    size_t i = p->pos, n = 0, cap = 32;
    char *out = malloc(cap);
    if (!out) return p->s = kiln_error(KILN_ERR_NOMEM, "filter: out of memory"), -1;
    while (s[i] && (name_char(s[i]) || s[i] == '`')) {
        size_t from = i, to;
        if (s[i] == '`') {
            const char *close = strchr(s + i + 1, '`');
            if (!close) {
                free(out);
                return fail(p, i, "unterminated `quoted name`");
            }
            from = i + 1, to = (size_t)(close - s), i = to + 1;
        } else {
            while (s[i] && name_char(s[i])) i++;
            to = i;
        }
        if (n + (to - from) + 1 > cap) {
            while (n + (to - from) + 1 > cap) cap *= 2;
            char *bigger = realloc(out, cap);
            if (!bigger) {
                free(out);
                return p->s = kiln_error(KILN_ERR_NOMEM, "filter: out of memory"), -1;
            }
            out = bigger;
        }
        memcpy(out + n, s + from, to - from), n += to - from;
    }
    out[n] = 0;
    t->kind = T_NAME, t->text = out, t->end = i;
    if (!strcasecmp(out, "and") || !strcasecmp(out, "or") || !strcasecmp(out, "not")) {
        t->kind = tolower((unsigned char)out[0]) == 'a'   ? T_AND
                  : tolower((unsigned char)out[0]) == 'o' ? T_OR
                                                          : T_NOT;
        free(out), t->text = NULL;
    }
    return 0;
}

static int lex_number(parser *p, token *t) {
    const char *s = p->src;
    size_t i = p->pos, digits = 0;
    if (s[i] == '+' || s[i] == '-') i++;
    while (isdigit((unsigned char)s[i])) i++, digits++;
    if (s[i] == '.')
        for (i++; isdigit((unsigned char)s[i]); i++) digits++;
    if (!digits) return fail(p, p->pos, "expected a number after '%c'", s[p->pos]);
    if (s[i] == 'e' || s[i] == 'E') {
        size_t e = i + 1;
        if (s[e] == '+' || s[e] == '-') e++;
        if (!isdigit((unsigned char)s[e])) return fail(p, i, "expected the exponent's digits");
        for (i = e; isdigit((unsigned char)s[i]); i++) {
        }
    }
    if (name_char(s[i]) && s[i] != '.' && s[i] != '-')
        return fail(p, p->pos, "'%.*s' is not a number", (int)(i - p->pos + 1), s + p->pos);
    char buf[64];
    if (i - p->pos >= sizeof buf) return fail(p, p->pos, "number too long");
    memcpy(buf, s + p->pos, i - p->pos), buf[i - p->pos] = 0;
    t->kind = T_NUMBER, t->num = strtod(buf, NULL), t->end = i;
    if (!isfinite(t->num)) return fail(p, p->pos, "number %s is out of range", buf);
    return 0;
}

static int lex_string(parser *p, token *t) {
    const char *s = p->src;
    char q = s[p->pos];
    size_t i = p->pos + 1, n = 0;
    char *out = malloc(strlen(s + i) + 1);
    if (!out) return p->s = kiln_error(KILN_ERR_NOMEM, "filter: out of memory"), -1;
    for (; s[i] && s[i] != q; i++) {
        if (s[i] == '\\' && s[i + 1]) i++;
        out[n++] = s[i];
    }
    if (!s[i]) {
        free(out);
        return fail(p, p->pos, "unterminated string (no closing %c)", q);
    }
    out[n] = 0;
    t->kind = T_STRING, t->text = out, t->end = i + 1;
    return 0;
}

/* Reads the next token into p->tok (freeing the current one's text). */
static int next(parser *p) {
    free(p->tok.text);
    token *t = &p->tok;
    memset(t, 0, sizeof *t);
    const char *s = p->src;
    if (p->s) return -1;
    size_t i = p->pos;
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') i++;
    p->pos = t->pos = i;
    char c = s[i];
    int r = 0;
    if (!c) {
        t->kind = T_END, t->end = i;
    } else if (c == '(' || c == ')') {
        t->kind = c == '(' ? T_LPAREN : T_RPAREN, t->end = i + 1;
    } else if (c == '=' || c == '<' || c == '>' || c == '!') {
        char d = s[i + 1];
        t->kind = T_OP, t->end = i + 1;
        if (c == '=')
            t->op = OP_EQ, t->end += d == '=';
        else if (c == '!' && d == '=')
            t->op = OP_NE, t->end++;
        else if (c == '!')
            return fail(p, i, "unexpected '!' (write != or not)");
        else if (c == '<' && d == '>')
            t->op = OP_NE, t->end++;
        else if (d == '=')
            t->op = c == '<' ? OP_LE : OP_GE, t->end++;
        else
            t->op = c == '<' ? OP_LT : OP_GT;
    } else if (c == '\'' || c == '"') {
        r = lex_string(p, t);
    } else if (isdigit((unsigned char)c) || c == '+' || c == '-' ||
               (c == '.' && isdigit((unsigned char)s[i + 1]))) {
        r = lex_number(p, t);
    } else if (isalpha((unsigned char)c) || c == '_' || c == '`' || (unsigned char)c >= 0x80) {
        r = lex_name(p, t);
    } else {
        return fail(p, i, "unexpected character '%c'", c);
    }
    if (r) return -1;
    p->pos = t->end;
    return 0;
}

/* ---- names ---- */

static int attr_index(const char *name) {
    for (int i = 0; i < N_ATTRS; i++)
        if (!strcmp(ATTRS[i].name, name)) return i;
    return -1;
}

static const char *strip_prefix(const char *name, const char *const *prefixes) {
    for (; *prefixes; prefixes++) {
        size_t n = strlen(*prefixes);
        if (!strncasecmp(name, *prefixes, n)) return name + n;
    }
    return NULL;
}

/* Classifies a name token into o (taking its text). bare_metric: a bare unknown name is a metric
 * (sort keys) rather than an error (filters). */
static int classify(parser *p, token *t, reg_operand *o, int bare_metric) {
    static const char *const METRIC[] = {"metrics.", "metric.", NULL};
    static const char *const PARAM[] = {"params.", "param.", NULL};
    static const char *const ATTR[] = {"attributes.", "attribute.", "attr.", NULL};
    const char *rest;
    memset(o, 0, sizeof *o);
    o->column = column_of(p->src, t->pos), o->pos = t->pos;
    if ((rest = strip_prefix(t->text, METRIC)) || (rest = strip_prefix(t->text, PARAM))) {
        int metric = strip_prefix(t->text, METRIC) != NULL;
        if (!*rest)
            return fail(p, t->pos, "'%s' needs a %s name after the dot", t->text,
                        metric ? "metric" : "param");
        char *name = strdup(rest);
        if (!name) return p->s = kiln_error(KILN_ERR_NOMEM, "filter: out of memory"), -1;
        o->kind = metric ? REG_OP_METRIC : REG_OP_PARAM, o->text = name;
        return 0;
    }
    const char *attr = (rest = strip_prefix(t->text, ATTR)) ? rest : t->text;
    int k = attr_index(attr);
    if (k >= 0) {
        o->kind = REG_OP_ATTR, o->attr = k;
        return 0;
    }
    if (bare_metric && !rest) {
        o->kind = REG_OP_METRIC, o->text = t->text, t->text = NULL;
        return 0;
    }
    if (rest) return fail(p, t->pos, "unknown attribute '%s' (attributes: %s)", attr, ATTR_LIST);
    return fail(p, t->pos,
                "unknown name '%s': write metrics.%s or params.%s, or use an attribute (%s)",
                t->text, t->text, t->text, ATTR_LIST);
}

void kiln_reg_operand_free(reg_operand *o) {
    free(o->text);
    o->text = NULL;
}

/* ---- parsing ---- */

static int add_node(parser *p, node n) {
    kiln_registry_filter *f = p->f;
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 16;
        node *v = realloc(f->nodes, (size_t)cap * sizeof *v);
        if (!v) {
            kiln_reg_operand_free(&n.l), kiln_reg_operand_free(&n.r);
            p->s = kiln_error(KILN_ERR_NOMEM, "filter: out of memory");
            return -1;
        }
        f->nodes = v, f->cap = cap;
    }
    f->nodes[f->n] = n;
    return f->n++;
}

static int parse_or(parser *p);

static int has_num(const reg_operand *o) {
    return o->kind != REG_OP_STRING && (o->kind != REG_OP_ATTR || ATTRS[o->attr].numeric);
}
static int has_text(const reg_operand *o) {
    return o->kind == REG_OP_STRING || o->kind == REG_OP_PARAM ||
           (o->kind == REG_OP_ATTR && !ATTRS[o->attr].numeric);
}
static int text_only(const reg_operand *o) {
    return !has_num(o);
}

static void describe(const reg_operand *o, char *out, size_t cap) {
    switch (o->kind) {
    case REG_OP_METRIC:
        snprintf(out, cap, "metrics.%s is a number", o->text);
        break;
    case REG_OP_ATTR:
        snprintf(out, cap, "%s is %s", ATTRS[o->attr].name,
                 ATTRS[o->attr].numeric ? "a number" : "text");
        break;
    case REG_OP_NUMBER:
        snprintf(out, cap, "%.15g is a number", o->num);
        break;
    default:
        snprintf(out, cap, "this is text");
        break;
    }
}

static int typecheck(parser *p, node *n) {
    reg_operand *l = &n->l, *r = &n->r;
    n->text_cmp = text_only(l) || text_only(r);
    if (n->text_cmp && !(has_text(l) && has_text(r))) {
        reg_operand *bad = has_text(l) ? r : l, *other = bad == l ? r : l;
        char what[300];
        describe(bad, what, sizeof what);
        return fail(p, (bad == l && other->kind == REG_OP_STRING ? other : bad)->pos,
                    "%s: it cannot be compared with %s", what,
                    other->kind == REG_OP_STRING ? "a string" : "text");
    }
    /* status values are a closed set: catch typos */
    for (int side = 0; side < 2; side++) {
        reg_operand *a = side ? r : l, *b = side ? l : r;
        if (a->kind == REG_OP_ATTR && !strcmp(ATTRS[a->attr].name, "status") &&
            b->kind == REG_OP_STRING && strcmp(b->text, "running") && strcmp(b->text, "finished") &&
            strcmp(b->text, "failed") && strcmp(b->text, "stopped") && strcmp(b->text, "pruned"))
            return fail(p, b->pos, "unknown status '%s' (running, finished, failed, stopped or pruned)",
                        b->text);
    }
    return 0;
}

static int parse_operand(parser *p, reg_operand *o, const char *after) {
    token *t = &p->tok;
    memset(o, 0, sizeof *o);
    o->column = column_of(p->src, t->pos), o->pos = t->pos;
    switch (t->kind) {
    case T_NAME:
        if (classify(p, t, o, 0)) return -1;
        break;
    case T_NUMBER:
        o->kind = REG_OP_NUMBER, o->num = t->num;
        break;
    case T_STRING:
        o->kind = REG_OP_STRING, o->text = t->text, t->text = NULL;
        break;
    default:
        if (after) return fail(p, t->pos, "expected a value or a name after '%s'", after);
        return fail(p, t->pos, "expected a comparison such as metrics.loss < 0.5%s",
                    t->kind == T_END ? "" : " here");
    }
    return next(p);
}

static int parse_comparison(parser *p) {
    node n = {.kind = N_CMP, .a = -1, .b = -1};
    size_t lhs_pos = p->tok.pos;
    if (parse_operand(p, &n.l, NULL)) {
        kiln_reg_operand_free(&n.l); /* taken, then the next token failed */
        return -1;
    }
    if (p->tok.kind != T_OP) {
        int len = (int)(p->tok.pos - lhs_pos);
        while (len > 0 && (p->src[lhs_pos + len - 1] == ' ' || p->src[lhs_pos + len - 1] == '\t'))
            len--;
        kiln_reg_operand_free(&n.l);
        return fail(p, p->tok.pos, "expected a comparison (=, !=, <, <=, >, >=) after '%.*s'", len,
                    p->src + lhs_pos);
    }
    n.op = p->tok.op;
    if (next(p) || parse_operand(p, &n.r, OP_TEXT[n.op]) || typecheck(p, &n)) {
        kiln_reg_operand_free(&n.l), kiln_reg_operand_free(&n.r);
        return -1;
    }
    return add_node(p, n);
}

static int parse_primary(parser *p) {
    if (p->tok.kind != T_LPAREN) return parse_comparison(p);
    size_t open = p->tok.pos;
    if (++p->depth > MAX_DEPTH) return fail(p, open, "nested more than %d deep", MAX_DEPTH);
    if (next(p)) return -1;
    int e = parse_or(p);
    if (e < 0) return -1;
    if (p->tok.kind != T_RPAREN)
        return fail(p, p->tok.pos, "expected ')' to close the '(' at column %d%s",
                    column_of(p->src, open), p->tok.kind == T_END ? "" : " (or and / or)");
    p->depth--;
    return next(p) ? -1 : e;
}

static int parse_not(parser *p) {
    if (p->tok.kind != T_NOT) return parse_primary(p);
    if (++p->depth > MAX_DEPTH) return fail(p, p->tok.pos, "nested more than %d deep", MAX_DEPTH);
    if (next(p)) return -1;
    int a = parse_not(p);
    p->depth--;
    return a < 0 ? -1 : add_node(p, (node){.kind = N_NOT, .a = a, .b = -1});
}

static int parse_and(parser *p) {
    int l = parse_not(p);
    while (l >= 0 && p->tok.kind == T_AND) {
        int r = next(p) ? -1 : parse_not(p);
        l = r < 0 ? -1 : add_node(p, (node){.kind = N_AND, .a = l, .b = r});
    }
    return l;
}

static int parse_or(parser *p) {
    int l = parse_and(p);
    while (l >= 0 && p->tok.kind == T_OR) {
        int r = next(p) ? -1 : parse_and(p);
        l = r < 0 ? -1 : add_node(p, (node){.kind = N_OR, .a = l, .b = r});
    }
    return l;
}

void kiln_registry_filter_free(kiln_registry_filter *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++)
        kiln_reg_operand_free(&f->nodes[i].l), kiln_reg_operand_free(&f->nodes[i].r);
    free(f->nodes);
    free(f);
}

kiln_status kiln_registry_filter_parse(const char *text, kiln_registry_filter **out,
                                       int *error_column) {
    *out = NULL;
    if (error_column) *error_column = 0;
    if (!text) return kiln_error(KILN_ERR_INVALID, "filter: NULL text");
    parser p = {.src = text};
    if (!(p.f = calloc(1, sizeof *p.f))) return kiln_error(KILN_ERR_NOMEM, "filter: out of memory");
    int root = -1;
    if (!next(&p)) {
        if (p.tok.kind == T_END)
            fail(&p, p.tok.pos, "empty filter: expected a comparison such as metrics.loss < 0.5");
        else if ((root = parse_or(&p)) >= 0 && p.tok.kind != T_END)
            fail(&p, p.tok.pos, "unexpected '%.*s' after a complete expression (missing and / or?)",
                 (int)(p.tok.end - p.tok.pos), text + p.tok.pos);
    }
    free(p.tok.text);
    if (p.s) {
        if (error_column) *error_column = p.column;
        kiln_registry_filter_free(p.f);
        return p.s;
    }
    p.f->root = root;
    *out = p.f;
    return KILN_OK;
}

const char *kiln_registry_filter_name(const kiln_registry_filter *f, int i, int *is_param) {
    if (!f || i < 0) return NULL;
    /* nodes are stored children first, which is the order of appearance for comparisons */
    for (int k = 0; k < f->n; k++) {
        const node *n = &f->nodes[k];
        if (n->kind != N_CMP) continue;
        const reg_operand *side[2] = {&n->l, &n->r};
        for (int j = 0; j < 2; j++) {
            if (side[j]->kind != REG_OP_METRIC && side[j]->kind != REG_OP_PARAM) continue;
            if (i-- == 0) {
                if (is_param) *is_param = side[j]->kind == REG_OP_PARAM;
                return side[j]->text;
            }
        }
    }
    return NULL;
}

/* ---- the canonical text ---- */

static void put_name_part(FILE *o, const char *s) {
    int plain = *s != 0;
    for (const char *c = s; *c; c++) plain &= name_char(*c) && *c != '`';
    if (plain)
        fputs(s, o);
    else
        fprintf(o, "`%s`", s);
}

static void put_operand(FILE *o, const reg_operand *x) {
    switch (x->kind) {
    case REG_OP_METRIC:
        fputs("metrics.", o), put_name_part(o, x->text);
        break;
    case REG_OP_PARAM:
        fputs("params.", o), put_name_part(o, x->text);
        break;
    case REG_OP_ATTR:
        fputs(ATTRS[x->attr].name, o);
        break;
    case REG_OP_NUMBER: {
        char buf[32];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, x->num);
            if (strtod(buf, NULL) == x->num) break;
        }
        fputs(buf, o);
        break;
    }
    case REG_OP_STRING:
        fputc('\'', o);
        for (const char *c = x->text; *c; c++) {
            if (*c == '\'' || *c == '\\') fputc('\\', o);
            fputc(*c, o);
        }
        fputc('\'', o);
        break;
    }
}

static void put_node(FILE *o, const kiln_registry_filter *f, int i) {
    const node *n = &f->nodes[i];
    fputc('(', o);
    if (n->kind == N_CMP) {
        put_operand(o, &n->l);
        fprintf(o, " %s ", OP_TEXT[n->op]);
        put_operand(o, &n->r);
    } else if (n->kind == N_NOT) {
        fputs("not ", o);
        put_node(o, f, n->a);
    } else {
        put_node(o, f, n->a);
        fputs(n->kind == N_AND ? " and " : " or ", o);
        put_node(o, f, n->b);
    }
    fputc(')', o);
}

kiln_status kiln_registry_filter_format(const kiln_registry_filter *f, char *out, size_t cap) {
    char *buf = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    if (!o) return kiln_error(KILN_ERR_NOMEM, "filter: out of memory");
    put_node(o, f, f->root);
    int bad = fclose(o) != 0;
    kiln_status s = KILN_OK;
    if (bad || !buf)
        s = kiln_error(KILN_ERR_NOMEM, "filter: out of memory");
    else if (len >= cap)
        s = kiln_error(KILN_ERR_INVALID, "filter: its text needs %zu bytes, have %zu", len + 1,
                       cap);
    else
        memcpy(out, buf, len + 1);
    free(buf);
    return s;
}

/* ---- SQL ---- */

void kiln_reg_binds_add_text(reg_binds *b, const char *text) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 16;
        reg_bind *v = realloc(b->v, (size_t)cap * sizeof *v);
        if (!v) {
            b->failed = 1;
            return;
        }
        b->v = v, b->cap = cap;
    }
    b->v[b->n++] = (reg_bind){1, text, 0};
}

void kiln_reg_binds_add_num(reg_binds *b, double num) {
    kiln_reg_binds_add_text(b, NULL);
    if (!b->failed) b->v[b->n - 1] = (reg_bind){0, NULL, num};
}

void kiln_reg_binds_apply(const reg_binds *b, reg_stmt *st) {
    for (int i = 0; i < b->n; i++) {
        if (b->v[i].is_text)
            reg_bind_text(st, i + 1, b->v[i].text);
        else
            reg_bind_double(st, i + 1, b->v[i].num);
    }
}

/* ---- operands through joins ---- */

static int joins_find(const reg_joins *j, int is_param, const char *name) {
    for (int i = 0; j && i < j->n; i++)
        if (j->is_param[i] == is_param && !strcmp(j->name[i], name)) return i;
    return -1;
}

int kiln_reg_joins_add(reg_joins *j, int is_param, const char *name) {
    int i = joins_find(j, is_param, name);
    if (i >= 0) return i;
    if (j->n == j->cap) {
        int cap = j->cap ? 2 * j->cap : 8;
        const char **v = realloc(j->name, (size_t)cap * sizeof *v);
        if (v) j->name = v;
        char *p = v ? realloc(j->is_param, (size_t)cap) : NULL;
        if (!p) {
            j->failed = 1;
            return -1;
        }
        j->is_param = p, j->cap = cap;
    }
    j->name[j->n] = name, j->is_param[j->n] = (char)is_param;
    return j->n++;
}

void kiln_reg_joins_add_filter(reg_joins *j, const kiln_registry_filter *f) {
    int is_param;
    const char *name;
    for (int i = 0; f && (name = kiln_registry_filter_name(f, i, &is_param)); i++)
        kiln_reg_joins_add(j, is_param, name);
}

void kiln_reg_joins_sql(const reg_joins *j, FILE *sql, reg_binds *b) {
    for (int i = 0; i < j->n; i++) {
        if (j->is_param[i])
            fprintf(sql, " LEFT JOIN params j%d ON j%d.rid = r.rid AND j%d.key = ?", i, i, i);
        else
            fprintf(sql, " LEFT JOIN latest_metrics j%d ON j%d.rid = r.rid AND j%d.name = ?", i,
                    i, i);
        kiln_reg_binds_add_text(b, j->name[i]);
    }
}

void kiln_reg_joins_free(reg_joins *j) {
    free(j->name), free(j->is_param);
    memset(j, 0, sizeof *j);
}

/* The operand as SQL: its number (want_text 0) or its text (1); metrics and params from their
 * join in j when there is one. */
static void operand_sql(const reg_operand *o, int want_text, const reg_joins *j, FILE *sql,
                        reg_binds *b) {
    int at = o->kind == REG_OP_METRIC || o->kind == REG_OP_PARAM
                 ? joins_find(j, o->kind == REG_OP_PARAM, o->text)
                 : -1;
    switch (o->kind) {
    case REG_OP_METRIC:
        if (at >= 0) {
            fprintf(sql, "j%d.value", at);
            break;
        }
        fputs("(SELECT value FROM latest_metrics WHERE rid = r.rid AND name = ?)", sql);
        kiln_reg_binds_add_text(b, o->text);
        break;
    case REG_OP_PARAM:
        if (at >= 0) {
            fprintf(sql, "j%d.%s", at, want_text ? "value" : "num");
            break;
        }
        fprintf(sql, "(SELECT %s FROM params WHERE rid = r.rid AND key = ?)",
                want_text ? "value" : "num");
        kiln_reg_binds_add_text(b, o->text);
        break;
    case REG_OP_ATTR:
        fputs(ATTRS[o->attr].sql, sql);
        break;
    case REG_OP_NUMBER:
        fputc('?', sql);
        kiln_reg_binds_add_num(b, o->num);
        break;
    case REG_OP_STRING:
        fputc('?', sql);
        kiln_reg_binds_add_text(b, o->text);
        break;
    }
}

static void node_sql(const kiln_registry_filter *f, int i, const reg_joins *j, FILE *sql,
                     reg_binds *b) {
    const node *n = &f->nodes[i];
    switch (n->kind) {
    case N_CMP:
        fputs("coalesce(", sql);
        operand_sql(&n->l, n->text_cmp, j, sql, b);
        fprintf(sql, " %s ", OP_SQL[n->op]);
        operand_sql(&n->r, n->text_cmp, j, sql, b);
        fputs(", FALSE)", sql);
        break;
    case N_NOT:
        fputs("(NOT ", sql);
        node_sql(f, n->a, j, sql, b);
        fputc(')', sql);
        break;
    default:
        fputc('(', sql);
        node_sql(f, n->a, j, sql, b);
        fputs(n->kind == N_AND ? " AND " : " OR ", sql);
        node_sql(f, n->b, j, sql, b);
        fputc(')', sql);
    }
}

void kiln_reg_filter_sql(const kiln_registry_filter *f, const reg_joins *j, FILE *sql,
                         reg_binds *b) {
    node_sql(f, f->root, j, sql, b);
}

/* ---- sort keys ---- */

kiln_status kiln_reg_sort_parse(const char *text, reg_operand *key, int *desc) {
    memset(key, 0, sizeof *key);
    if (!text) return kiln_error(KILN_ERR_INVALID, "sort: NULL key");
    parser p = {.src = text};
    int dir = -1; /* -1: the key's own default */
    if (!next(&p) && p.tok.kind != T_NAME)
        fail(&p, p.tok.pos, "expected a metric, param or attribute name to sort by");
    if (!p.s && !classify(&p, &p.tok, key, 1) && !next(&p) && p.tok.kind == T_NAME) {
        if (!strcasecmp(p.tok.text, "asc") || !strcasecmp(p.tok.text, "desc"))
            dir = tolower((unsigned char)p.tok.text[0]) == 'd';
        else
            fail(&p, p.tok.pos, "expected asc or desc, not '%s'", p.tok.text);
        if (!p.s) next(&p);
    }
    if (!p.s && p.tok.kind != T_END)
        fail(&p, p.tok.pos, "unexpected '%.*s' after the sort key", (int)(p.tok.end - p.tok.pos),
             text + p.tok.pos);
    free(p.tok.text);
    if (p.s) {
        kiln_reg_operand_free(key);
        kiln_error_prefix("sort '%s'", text);
        return p.s;
    }
    if (dir < 0) {
        if (key->kind == REG_OP_METRIC)
            dir = kiln_metric_higher_is_better(key->text) != 0;
        else
            dir = key->kind == REG_OP_ATTR && strstr(ATTRS[key->attr].name, "_time") != NULL;
    }
    *desc = dir;
    return KILN_OK;
}

kiln_status kiln_registry_sort_key(const char *sort, int *kind, char *name, size_t cap) {
    reg_operand key;
    int desc;
    if (cap) name[0] = 0;
    kiln_status s = kiln_reg_sort_parse(sort, &key, &desc);
    if (s) return s;
    *kind = key.kind == REG_OP_METRIC ? 1 : key.kind == REG_OP_PARAM ? 2 : 0;
    if (*kind && snprintf(name, cap, "%s", key.text) >= (int)cap)
        s = kiln_error(KILN_ERR_INVALID, "sort '%s': the name is longer than %zu bytes", sort,
                       cap ? cap - 1 : 0);
    kiln_reg_operand_free(&key);
    return s;
}

void kiln_reg_sort_sql(const reg_operand *key, int desc, const reg_joins *j, FILE *sql,
                       reg_binds *b) {
    const char *dir = desc ? "DESC" : "ASC";
    operand_sql(key, 0, j, sql, b);
    fprintf(sql, " %s NULLS LAST", dir);
    if (key->kind == REG_OP_PARAM) { /* numbers first by value, then text params by text */
        fputs(", ", sql);
        operand_sql(key, 1, j, sql, b);
        fprintf(sql, " %s NULLS LAST", dir);
    }
}

/* tree.c — YAML to a kiln_cfg tree and back, path lookup, --set overrides (see kiln/config.h).
 *
 * Parsing uses libfyaml's event parser, because events carry positions for every node (maps and
 * sequences included) where the document API of libfyaml 0.7 gives them only for scalars. A stack
 * of open collections turns the event stream into the tree; anchors are remembered and aliases
 * are deep copies of what they name (so the tree stays a tree). Duplicate keys are errors.
 * Copies are bounded, since nested aliases grow exponentially (a 350-byte "billion laughs" names
 * 387 million scalars): at most CFG_MAX_ALIASES aliases, copying at most CFG_MAX_COPIED bytes of
 * nodes and text in all, and no deeper than the nesting limit; the alias that would pass a limit
 * is an error at its file:line:column, found before anything is copied.
 * Positions are stored 1-based. File names are interned in a small process-wide list so that
 * nodes can point at them for their whole life.
 */
#include <ctype.h>
#include <errno.h>
#include <libfyaml.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/config.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"

/* ---- interned file names ---- */
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;
static char **names;
static int n_names;

static const char *intern(const char *s) {
    pthread_mutex_lock(&names_lock);
    const char *r = NULL;
    for (int i = 0; i < n_names && !r; i++)
        if (strcmp(names[i], s) == 0) r = names[i];
    if (!r) {
        char **nn = realloc(names, (size_t)(n_names + 1) * sizeof *nn);
        char *copy = strdup(s);
        if (nn && copy) names = nn, names[n_names++] = copy, r = copy;
        else free(copy), r = "?";
    }
    pthread_mutex_unlock(&names_lock);
    return r;
}

/* ---- nodes ---- */
static kiln_cfg *node_new(kiln_cfg_type t, const char *file, int line, int col) {
    kiln_cfg *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->type = t;
    c->file = file;
    c->line = line, c->column = col;
    return c;
}

void kiln_cfg_free(kiln_cfg *c) {
    if (!c) return;
    for (int i = 0; i < c->n_items; i++) kiln_cfg_free(c->items[i]);
    free(c->items);
    free(c->key);
    free(c->text);
    free(c);
}

static int push_item(kiln_cfg *parent, kiln_cfg *child) {
    kiln_cfg **ni = realloc(parent->items, (size_t)(parent->n_items + 1) * sizeof *ni);
    if (!ni) return -1;
    parent->items = ni;
    parent->items[parent->n_items++] = child;
    return 0;
}

kiln_cfg *kiln_cfg_clone(const kiln_cfg *c) {
    kiln_cfg *d = node_new(c->type, c->file, c->line, c->column);
    if (!d) return NULL;
    d->quoted = c->quoted;
    if ((c->key && !(d->key = strdup(c->key))) || (c->text && !(d->text = strdup(c->text)))) {
        kiln_cfg_free(d);
        return NULL;
    }
    for (int i = 0; i < c->n_items; i++) {
        kiln_cfg *ci = kiln_cfg_clone(c->items[i]);
        if (!ci || push_item(d, ci)) {
            kiln_cfg_free(ci), kiln_cfg_free(d);
            return NULL;
        }
    }
    return d;
}

kiln_cfg *kiln_cfg_child(const kiln_cfg *map, const char *key) {
    if (!map || map->type != KILN_CFG_MAP) return NULL;
    for (int i = 0; i < map->n_items; i++)
        if (strcmp(map->items[i]->key, key) == 0) return map->items[i];
    return NULL;
}

/* ---- parsing ---- */
typedef struct {
    char msg[1024];
} diag_capture;

static void diag_out(struct fy_diag *d, void *user, const char *buf, size_t len) {
    diag_capture *cap = user;
    if (!cap->msg[0]) {
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) len--;
        snprintf(cap->msg, sizeof cap->msg, "%.*s", (int)len, buf);
    }
}

typedef struct {
    char *name;
    kiln_cfg *node;
} anchor;

#define CFG_MAX_DEPTH   128        /* open collections */
#define CFG_MAX_ALIASES 10000      /* aliases in one document */
#define CFG_MAX_COPIED  (16u << 20) /* bytes that aliases copy, in all (the file limit too) */

typedef struct {
    kiln_cfg *stack[CFG_MAX_DEPTH];
    char *pending_key[CFG_MAX_DEPTH]; /* the key waiting for its value, per open map */
    int pk_line[CFG_MAX_DEPTH], pk_col[CFG_MAX_DEPTH];
    int depth;
    int n_aliases;  /* aliases expanded so far */
    size_t copied;  /* bytes they copied */
    kiln_cfg *root;
    anchor *anchors;
    int n_anchors;
    const char *file;
} builder;

static kiln_status fail_at(const char *file, int line, int col, const char *msg) {
    return kiln_error(KILN_ERR_FORMAT, "%s:%d:%d: %s", file, line, col, msg);
}

/* Adds a finished node to the open collection (or makes it the root). */
static kiln_status attach(builder *b, kiln_cfg *n, int line, int col) {
    if (b->depth == 0) {
        if (b->root) {
            kiln_cfg_free(n);
            return fail_at(b->file, line, col, "only one YAML document is allowed");
        }
        b->root = n;
        return KILN_OK;
    }
    kiln_cfg *top = b->stack[b->depth - 1];
    if (top->type == KILN_CFG_SEQ) {
        if (push_item(top, n)) return kiln_cfg_free(n), kiln_error(KILN_ERR_NOMEM, "config: out of memory");
        return KILN_OK;
    }
    char **pk = &b->pending_key[b->depth - 1];
    if (!*pk) { /* n is a key */
        if (n->type != KILN_CFG_SCALAR) {
            kiln_cfg_free(n);
            return fail_at(b->file, line, col, "map keys must be plain scalars");
        }
        if (kiln_cfg_child(top, n->text)) {
            char m[300];
            snprintf(m, sizeof m, "duplicate key '%.200s'", n->text);
            kiln_cfg_free(n);
            return fail_at(b->file, line, col, m);
        }
        *pk = n->text;
        n->text = NULL;
        b->pk_line[b->depth - 1] = n->line, b->pk_col[b->depth - 1] = n->column;
        kiln_cfg_free(n);
        return KILN_OK;
    }
    free(n->key); /* an alias copy carries its anchor's key */
    n->key = *pk;
    *pk = NULL;
    n->line = b->pk_line[b->depth - 1], n->column = b->pk_col[b->depth - 1];
    if (push_item(top, n)) return kiln_cfg_free(n), kiln_error(KILN_ERR_NOMEM, "config: out of memory");
    return KILN_OK;
}

static kiln_status remember_anchor(builder *b, struct fy_token *tok, kiln_cfg *n) {
    if (!tok) return KILN_OK;
    size_t len;
    const char *t = fy_token_get_text(tok, &len);
    anchor *na = realloc(b->anchors, (size_t)(b->n_anchors + 1) * sizeof *na);
    if (!na) return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
    b->anchors = na;
    b->anchors[b->n_anchors].name = strndup(t, len);
    b->anchors[b->n_anchors++].node = n;
    return KILN_OK;
}

/* Bytes of the nodes and text of c's tree (a node counts its struct, key and text), counting
 * no further than past limit; its height (0 for a scalar) into *height. Trees in the builder are
 * at most CFG_MAX_DEPTH deep (aliases are checked), so the recursion is bounded. */
static size_t tree_bytes(const kiln_cfg *c, size_t limit, int *height) {
    size_t n = sizeof *c + (c->key ? strlen(c->key) + 1 : 0) + (c->text ? strlen(c->text) + 1 : 0);
    *height = 0;
    for (int i = 0; i < c->n_items && n <= limit; i++) {
        int h;
        n += tree_bytes(c->items[i], limit - n, &h);
        if (h + 1 > *height) *height = h + 1;
    }
    return n;
}

/* Whether one more copy of node (named by alias name[len]) stays within the limits. */
static kiln_status check_alias(builder *b, const kiln_cfg *node, const char *name, size_t len,
                               int line, int col) {
    char m[400];
    int shown = (int)(len > 100 ? 100 : len);
    if (++b->n_aliases > CFG_MAX_ALIASES) {
        snprintf(m, sizeof m, "alias *%.*s: more than %d aliases in one config", shown, name,
                 CFG_MAX_ALIASES);
        return fail_at(b->file, line, col, m);
    }
    int height;
    size_t room = CFG_MAX_COPIED - b->copied, n = tree_bytes(node, room, &height);
    if (n > room) {
        snprintf(m, sizeof m,
                 "alias *%.*s: expanding the aliases would make the config larger than %u MiB "
                 "(nested aliases grow exponentially: a \"billion laughs\"?)",
                 shown, name, CFG_MAX_COPIED >> 20);
        return fail_at(b->file, line, col, m);
    }
    if (b->depth + height > CFG_MAX_DEPTH) {
        snprintf(m, sizeof m, "alias *%.*s: nesting deeper than %d levels", shown, name,
                 CFG_MAX_DEPTH);
        return fail_at(b->file, line, col, m);
    }
    b->copied += n;
    return KILN_OK;
}

static kiln_status handle(builder *b, struct fy_event *e) {
    const struct fy_mark *m = fy_event_start_mark(e);
    int line = m ? m->line + 1 : 0, col = m ? m->column + 1 : 0;
    size_t len;
    switch (e->type) {
    case FYET_SCALAR: {
        kiln_cfg *n = node_new(KILN_CFG_SCALAR, b->file, line, col);
        const char *t = fy_token_get_text(e->scalar.value, &len);
        if (!n || !(n->text = strndup(t ? t : "", t ? len : 0))) {
            kiln_cfg_free(n);
            return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
        }
        n->quoted = fy_token_scalar_style(e->scalar.value) != FYSS_PLAIN;
        if (!n->quoted && (strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0)) n->text[0] = 0;
        kiln_status st = remember_anchor(b, e->scalar.anchor, n);
        return st ? st : attach(b, n, line, col);
    }
    case FYET_MAPPING_START:
    case FYET_SEQUENCE_START: {
        if (b->depth == CFG_MAX_DEPTH)
            return fail_at(b->file, line, col, "nesting deeper than 128 levels");
        kiln_cfg *n = node_new(e->type == FYET_MAPPING_START ? KILN_CFG_MAP : KILN_CFG_SEQ, b->file, line, col);
        if (!n) return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
        kiln_status st = remember_anchor(b, e->type == FYET_MAPPING_START ? e->mapping_start.anchor
                                                                         : e->sequence_start.anchor, n);
        if (st) return kiln_cfg_free(n), st;
        b->pending_key[b->depth] = NULL;
        b->stack[b->depth++] = n;
        return KILN_OK;
    }
    case FYET_MAPPING_END:
    case FYET_SEQUENCE_END: {
        kiln_cfg *n = b->stack[--b->depth];
        free(b->pending_key[b->depth]);
        b->pending_key[b->depth] = NULL;
        return attach(b, n, n->line, n->column);
    }
    case FYET_ALIAS: {
        const char *t = fy_token_get_text(e->alias.anchor, &len);
        for (int i = b->n_anchors - 1; i >= 0; i--)
            if (strlen(b->anchors[i].name) == len && memcmp(b->anchors[i].name, t, len) == 0) {
                kiln_status st = check_alias(b, b->anchors[i].node, t, len, line, col);
                if (st) return st;
                kiln_cfg *n = kiln_cfg_clone(b->anchors[i].node);
                if (!n) return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
                return attach(b, n, line, col);
            }
        return fail_at(b->file, line, col, "alias to an unknown anchor");
    }
    default: return KILN_OK;
    }
}

static kiln_status parse_with(struct fy_parser *p, const char *file, kiln_cfg **out, diag_capture *cap) {
    builder b = {.file = file};
    kiln_status st = KILN_OK;
    struct fy_event *e;
    while (st == KILN_OK && (e = fy_parser_parse(p))) {
        st = handle(&b, e);
        fy_parser_event_free(p, e);
    }
    if (st == KILN_OK && fy_parser_get_stream_error(p)) {
        /* libfyaml names string inputs "<memory-...>": put our name there */
        const char *m = cap->msg, *gt = m[0] == '<' ? strstr(m, ">:") : NULL;
        if (gt) st = kiln_error(KILN_ERR_FORMAT, "%s%s", file, gt + 1);
        else st = kiln_error(KILN_ERR_FORMAT, "%s", m[0] ? m : "YAML syntax error");
    }
    while (b.depth > 0) {
        b.depth--;
        free(b.pending_key[b.depth]);
        kiln_cfg_free(b.stack[b.depth]);
    }
    for (int i = 0; i < b.n_anchors; i++) free(b.anchors[i].name);
    free(b.anchors);
    if (st == KILN_OK && !b.root) b.root = node_new(KILN_CFG_MAP, file, 1, 1); /* empty file */
    if (st != KILN_OK) {
        kiln_cfg_free(b.root);
        return st;
    }
    *out = b.root;
    return KILN_OK;
}

/* Config text must be UTF-8 without NUL bytes: libfyaml 0.7 can loop forever on some invalid
 * UTF-8 (a '%' directive followed by a stray byte), so bad bytes are refused before it sees them.
 * Returns 0, or -1 with *line / *col of the first bad byte. */
static int check_utf8(const unsigned char *s, size_t n, int *line, int *col) {
    *line = 1, *col = 1;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (c == 0 || len == 0 || i + len > n) return -1;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return -1;
        unsigned cp = len == 1 ? c : len == 2 ? ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu)
                   : len == 3 ? ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu)
                              : ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
        if ((len == 2 && cp < 0x80) || (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return -1; /* overlong, surrogate, out of range */
        if (c == '\n') (*line)++, *col = 1;
        else (*col)++;
        i += len;
    }
    return 0;
}

static kiln_status parse_source(const char *path, const char *text, const char *name, kiln_cfg **out) {
    diag_capture cap = {{0}};
    void *file_text = NULL;
    size_t len = text ? strlen(text) : 0;
    if (path) {
        kiln_status rs = kiln_file_read_all(path, &file_text, &len, 16u << 20);
        if (rs) return kiln_error(rs == KILN_ERR_NOTFOUND ? KILN_ERR_IO : rs, "%s", kiln_last_error());
        text = file_text;
    }
    int bl, bc;
    if (check_utf8((const unsigned char *)text, len, &bl, &bc)) {
        kiln_free(file_text);
        return kiln_error(KILN_ERR_FORMAT, "%s:%d:%d: not UTF-8 text (a config is a YAML file)", name, bl, bc);
    }
    struct fy_diag_cfg dc;
    fy_diag_cfg_default(&dc);
    dc.fp = NULL, dc.output_fn = diag_out, dc.user = &cap;
    dc.colorize = false, dc.show_source = false, dc.show_position = true;
    dc.show_type = false, dc.show_module = false;
    struct fy_diag *diag = fy_diag_create(&dc);
    struct fy_parse_cfg pc = {.flags = FYPCF_DEFAULT_VERSION_1_2, .diag = diag};
    struct fy_parser *p = diag ? fy_parser_create(&pc) : NULL;
    if (!p) {
        if (diag) fy_diag_destroy(diag);
        kiln_free(file_text);
        return kiln_error(KILN_ERR_NOMEM, "config: cannot create the YAML parser");
    }
    kiln_status st;
    int rc = fy_parser_set_string(p, text, len);
    if (rc) st = kiln_error(KILN_ERR_IO, "%s: cannot read the config", name);
    else st = parse_with(p, intern(name), out, &cap);
    fy_parser_destroy(p);
    fy_diag_destroy(diag);
    kiln_free(file_text);
    if (st == KILN_OK && (*out)->type != KILN_CFG_MAP) {
        kiln_cfg_free(*out);
        *out = NULL;
        return kiln_error(KILN_ERR_FORMAT, "%s:1:1: a config must be a map of keys (experiment:, model:, ...)", name);
    }
    return st;
}

/* The file is opened once: a named pipe or a <(...) can be read only once. */
kiln_status kiln_config_load(const char *path, kiln_cfg **out) {
    return parse_source(path, NULL, path, out);
}

kiln_status kiln_config_parse(const char *text, const char *name, kiln_cfg **out) {
    return parse_source(NULL, text, name, out);
}

/* ---- paths ---- */

/* Reads the next path component: a key (up to '.' or '[') or an index [i]. */
static const char *next_part(const char *p, char *key, size_t cap, long *index) {
    *index = -1;
    key[0] = 0;
    if (*p == '[') {
        char *end;
        errno = 0;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end != ']' || v < 0 || errno) return NULL;
        *index = v;
        p = end + 1;
    } else {
        size_t n = 0;
        while (*p && *p != '.' && *p != '[') {
            if (n + 1 >= cap) return NULL;
            key[n++] = *p++;
        }
        key[n] = 0;
        if (n == 0) return NULL;
    }
    if (*p == '.') p++;
    return p;
}

kiln_cfg *kiln_cfg_at(const kiln_cfg *root, const char *path) {
    const kiln_cfg *c = root;
    char key[256];
    long idx;
    if (!path || !*path) return (kiln_cfg *)root;
    while (c && *path) {
        if (!(path = next_part(path, key, sizeof key, &idx))) return NULL;
        if (idx >= 0) c = c->type == KILN_CFG_SEQ && idx < c->n_items ? c->items[idx] : NULL;
        else c = kiln_cfg_child(c, key);
    }
    return (kiln_cfg *)c;
}

kiln_status kiln_config_set(kiln_cfg *root, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return kiln_error(KILN_ERR_INVALID, "--set %s: expected key.path=value", assignment);
    char *path = strndup(assignment, (size_t)(eq - assignment));
    if (!path) return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
    kiln_cfg *val;
    kiln_status st = parse_source(NULL, eq + 1, "--set", &val);
    if (st == KILN_ERR_FORMAT && kiln_last_error()[0]) {
        /* a scalar is not a map: parse "v: <value>" and take v */
        kiln_cfg *wrap;
        size_t n = strlen(eq + 1) + 8;
        char *text = malloc(n);
        if (!text) return free(path), kiln_error(KILN_ERR_NOMEM, "config: out of memory");
        snprintf(text, n, "v: %s", eq + 1);
        st = parse_source(NULL, text, "--set", &wrap);
        free(text);
        if (st == KILN_OK) {
            val = wrap->items[0];
            wrap->items[0] = NULL, wrap->n_items = 0;
            kiln_cfg_free(wrap);
            free(val->key), val->key = NULL;
        }
    }
    if (st != KILN_OK) {
        kiln_error(KILN_ERR_INVALID, "--set %s: the value is not valid YAML", assignment);
        free(path);
        return KILN_ERR_INVALID;
    }
    val->line = val->column = 0;
    /* walk, creating maps for missing keys */
    kiln_cfg *c = root, *parent = NULL;
    char key[256];
    long idx = -1;
    const char *p = path;
    while (*p) {
        if (!(p = next_part(p, key, sizeof key, &idx))) {
            st = kiln_error(KILN_ERR_INVALID, "--set %s: bad key path '%s'", assignment, path);
            break;
        }
        parent = c;
        if (idx >= 0) {
            if (c->type != KILN_CFG_SEQ || idx >= c->n_items) {
                st = kiln_error(KILN_ERR_INVALID, "--set %s: %s has no item [%ld]", assignment, path, idx);
                break;
            }
            c = c->items[idx];
        } else {
            if (c->type != KILN_CFG_MAP) {
                st = kiln_error(KILN_ERR_INVALID, "--set %s: '%s' is inside a value that is not a map",
                                assignment, key);
                break;
            }
            kiln_cfg *next = kiln_cfg_child(c, key);
            if (!next && *p) { /* intermediate map */
                next = node_new(KILN_CFG_MAP, intern("--set"), 0, 0);
                if (!next || !(next->key = strdup(key)) || push_item(c, next)) {
                    kiln_cfg_free(next);
                    st = kiln_error(KILN_ERR_NOMEM, "config: out of memory");
                    break;
                }
            }
            c = next;
        }
        if (!c) break; /* last key missing: append below */
    }
    if (st == KILN_OK) {
        int is_null = val->type == KILN_CFG_SCALAR && !val->quoted && !val->text[0];
        if (is_null && parent->type == KILN_CFG_MAP) { /* key=null removes the key (a default returns) */
            for (int i = 0; c && i < parent->n_items; i++)
                if (parent->items[i] == c) {
                    memmove(parent->items + i, parent->items + i + 1, (size_t)(parent->n_items - i - 1) * sizeof *parent->items);
                    parent->n_items--;
                    kiln_cfg_free(c);
                    break;
                }
        } else if (c) { /* replace in place */
            int slot = -1;
            for (int i = 0; i < parent->n_items; i++)
                if (parent->items[i] == c) slot = i;
            val->key = c->key, c->key = NULL;
            parent->items[slot] = val;
            kiln_cfg_free(c);
        } else if (!(val->key = strdup(key)) || push_item(parent, val)) {
            st = kiln_error(KILN_ERR_NOMEM, "config: out of memory");
        }
        if (st == KILN_OK && !(is_null && parent->type == KILN_CFG_MAP)) val = NULL;
    }
    kiln_cfg_free(val);
    free(path);
    return st;
}

/* ---- typed reads ---- */

int kiln_cfg_parse_int(const kiln_cfg *c, int64_t *out) {
    if (!c || c->type != KILN_CFG_SCALAR || c->quoted || !c->text[0]) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(c->text, &end, 0);
    if (*end || errno) {
        double d; /* 1e3 is an int too, when it is integral */
        if (kiln_cfg_parse_num(c, &d) || d != floor(d) || fabs(d) > 9e15) return -1;
        v = (long long)d;
    }
    *out = v;
    return 0;
}

int kiln_cfg_parse_num(const kiln_cfg *c, double *out) {
    if (!c || c->type != KILN_CFG_SCALAR || c->quoted || !c->text[0]) return -1;
    const char *t = c->text;
    if (!strcmp(t, ".inf") || !strcmp(t, "+.inf") || !strcmp(t, ".Inf")) return *out = INFINITY, 0;
    if (!strcmp(t, "-.inf") || !strcmp(t, "-.Inf")) return *out = -INFINITY, 0;
    if (!strcmp(t, ".nan") || !strcmp(t, ".NaN")) return *out = NAN, 0;
    if (strchr(t, 'x') || strchr(t, 'X') || !strncasecmp(t, "inf", 3) || !strncasecmp(t, "nan", 3)) return -1;
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    if (*end || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

int kiln_cfg_parse_bool(const kiln_cfg *c, int *out) {
    if (!c || c->type != KILN_CFG_SCALAR || c->quoted) return -1;
    if (!strcmp(c->text, "true") || !strcmp(c->text, "True") || !strcmp(c->text, "TRUE")) return *out = 1, 0;
    if (!strcmp(c->text, "false") || !strcmp(c->text, "False") || !strcmp(c->text, "FALSE")) return *out = 0, 0;
    return -1;
}

const char *kiln_cfg_str(const kiln_cfg *root, const char *path, const char *def) {
    const kiln_cfg *c = kiln_cfg_at(root, path);
    return c && c->type == KILN_CFG_SCALAR && c->text[0] ? c->text : def;
}

int64_t kiln_cfg_int(const kiln_cfg *root, const char *path, int64_t def) {
    int64_t v;
    return kiln_cfg_parse_int(kiln_cfg_at(root, path), &v) ? def : v;
}

double kiln_cfg_num(const kiln_cfg *root, const char *path, double def) {
    double v;
    return kiln_cfg_parse_num(kiln_cfg_at(root, path), &v) ? def : v;
}

int kiln_cfg_bool(const kiln_cfg *root, const char *path, int def) {
    int v;
    return kiln_cfg_parse_bool(kiln_cfg_at(root, path), &v) ? def : v;
}

const char *kiln_cfg_where(const kiln_cfg *c, char *buf, size_t cap) {
    if (c->line > 0) snprintf(buf, cap, "%s:%d:%d", c->file, c->line, c->column);
    else snprintf(buf, cap, "%s", c->file ? c->file : "config");
    return buf;
}

/* ---- writing ---- */

static int needs_quotes(const char *t) {
    if (!t[0]) return 0;
    if (strchr(":#{}[],&*!|>'\"%@`", t[0]) || isspace((unsigned char)t[0]) || t[0] == '-') {
        if (t[0] == '-' && (isdigit((unsigned char)t[1]) || t[1] == '.')) return 0; /* -1, -.5 */
        return 1;
    }
    for (const char *p = t; *p; p++)
        if ((*p == ':' && (p[1] == ' ' || !p[1])) || (*p == ' ' && p[1] == '#') || *p == '\n' ||
            (unsigned char)*p < 0x20)
            return 1;
    return isspace((unsigned char)t[strlen(t) - 1]);
}

static void write_scalar(const kiln_cfg *c, FILE *f) {
    if (!c->text[0] && !c->quoted) {
        fputs("null", f);
        return;
    }
    if (!c->quoted && !needs_quotes(c->text)) {
        fputs(c->text, f);
        return;
    }
    fputc('"', f);
    for (const char *p = c->text; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", f);
        else if (ch < 0x20) fprintf(f, "\\x%02x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static int is_flat_seq(const kiln_cfg *c) {
    if (c->type != KILN_CFG_SEQ) return 0;
    for (int i = 0; i < c->n_items; i++)
        if (c->items[i]->type != KILN_CFG_SCALAR) return 0;
    return 1;
}

static void write_node(const kiln_cfg *c, FILE *f, int indent, int inline_first);

static void write_value(const kiln_cfg *v, FILE *f, int indent) {
    if (v->type == KILN_CFG_SCALAR) {
        fputc(' ', f);
        write_scalar(v, f);
        fputc('\n', f);
    } else if (is_flat_seq(v)) { /* [1, 28, 28] */
        fputs(" [", f);
        for (int i = 0; i < v->n_items; i++) {
            if (i) fputs(", ", f);
            write_scalar(v->items[i], f);
        }
        fputs("]\n", f);
    } else if (v->n_items == 0) {
        fputs(v->type == KILN_CFG_MAP ? " {}\n" : " []\n", f);
    } else {
        fputc('\n', f);
        write_node(v, f, indent + 2, 0);
    }
}

/* Block YAML at indent; with inline_first the first line continues the current one ("- "). */
static void write_node(const kiln_cfg *c, FILE *f, int indent, int inline_first) {
    for (int i = 0; i < c->n_items; i++) {
        const kiln_cfg *v = c->items[i];
        if (i > 0 || !inline_first) fprintf(f, "%*s", indent, "");
        if (c->type == KILN_CFG_MAP) {
            kiln_cfg k = {.type = KILN_CFG_SCALAR, .text = v->key};
            write_scalar(&k, f);
            fputc(':', f);
            write_value(v, f, indent);
        } else if (v->type == KILN_CFG_MAP && v->n_items > 0) { /* "- key: ..." and siblings */
            fputs("- ", f);
            write_node(v, f, indent + 2, 1);
        } else {
            fputc('-', f);
            write_value(v, f, indent);
        }
    }
}

kiln_status kiln_config_write(const kiln_cfg *root, FILE *f) {
    write_node(root, f, 0, 0);
    return ferror(f) ? kiln_error(KILN_ERR_IO, "config: write failed") : KILN_OK;
}

kiln_status kiln_config_save(const kiln_cfg *root, const char *path) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
    kiln_status st = kiln_config_write(root, f);
    if (fclose(f) != 0 && !st) st = kiln_error(KILN_ERR_NOMEM, "config: out of memory");
    if (!st) st = kiln_file_write_atomic(path, buf, len);
    free(buf);
    return st;
}

/* ---- hash ---- */

static void hash_node(const kiln_cfg *c, uint64_t *h) {
    const char *parts[3] = {c->key ? c->key : "", c->type == KILN_CFG_SCALAR ? c->text : "",
                            c->type == KILN_CFG_MAP ? "{" : c->type == KILN_CFG_SEQ ? "[" : "="};
    for (int k = 0; k < 3; k++) {
        for (const char *p = parts[k]; *p; p++) *h = (*h ^ (unsigned char)*p) * 0x100000001b3ull;
        *h = (*h ^ 0xff) * 0x100000001b3ull;
    }
    for (int i = 0; i < c->n_items; i++) hash_node(c->items[i], h);
    *h = (*h ^ '}') * 0x100000001b3ull;
}

void kiln_cfg_hash(const kiln_cfg *root, char out[17]) {
    uint64_t h = 0xcbf29ce484222325ull;
    hash_node(root, &h);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* board_mlflow_search.c — runs/search: MLflow's search filter, order_by and pagination over the
 * runs of the experiments asked for (kiln's own runs and the API's alike: board_mlflow.h).
 *
 * Filter (MLflow's search syntax, the subset its docs give): comparisons joined by AND,
 *   metrics.<key> <op> <number>         op: = != < <= > >=   (the run's latest value)
 *   params.<key> / tags.<key> <op> 'string'   op: = != LIKE ILIKE IN NOT IN
 *   attributes.<name> <op> value        status, run_name, run_id, user_id, artifact_uri,
 *                                       lifecycle_stage (strings, as params), start_time,
 *                                       end_time (numbers, ms)
 * Prefixes may be singular or plural (metric/metrics, param/params/parameter(s), tag/tags,
 * attribute/attributes/attr/run); a key with other characters goes in backquotes or double
 * quotes (metrics.`my metric`, tags."mlflow.user"); strings in single or double quotes; LIKE's
 * % and _ are wildcards (ILIKE ignores case); IN takes ('a', 'b'). A comparison with a metric,
 * param or tag the run lacks is false. A bad filter is INVALID_PARAMETER_VALUE naming the spot.
 *
 * order_by: a list of "<name> [ASC|DESC]" with names as in filters (no prefix: an attribute);
 * runs without the value come last; the default and the final tie-break is start_time DESC,
 * then run_id. Pages: max_results (default 1000, at most 50000) and an opaque page_token (the
 * offset, base64) that the previous page returned as next_page_token.
 */
#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "board/board_mlflow.h"

#define MAX_CLAUSES 64

typedef enum { E_METRIC, E_PARAM, E_TAG, E_ATTR } entity;
typedef enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_LIKE, OP_ILIKE, OP_IN, OP_NOT_IN } op;

typedef struct {
    entity e;
    char key[260];
    op o;
    int is_num;
    double num;
    char *str;   /* the string value */
    int quoted;  /* the value was a quoted string */
    char **list; /* IN */
    int n_list;
} clause;

typedef struct {
    const char *s, *p;
    char err[300];
} lexer;

static void skip_ws(lexer *l) {
    while (isspace((unsigned char)*l->p)) l->p++;
}

static int fail(lexer *l, const char *what) {
    snprintf(l->err, sizeof l->err, "at character %d: %s", (int)(l->p - l->s) + 1, what);
    return 0;
}

/* A quoted string ('...' or "..."; a backslash escapes) or a `...` name into out. */
static int quoted(lexer *l, char *out, size_t cap) {
    char q = *l->p++;
    size_t n = 0;
    while (*l->p && *l->p != q) {
        if (*l->p == '\\' && l->p[1] && q != '`') l->p++;
        if (n + 1 < cap) out[n++] = *l->p;
        l->p++;
    }
    if (!*l->p) return fail(l, "unterminated quote");
    l->p++;
    out[n] = 0;
    return 1;
}

static int ident_char(char c) {
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-' || c == '/' || c == ':';
}

static int parse_ident(lexer *l, entity *e, char *key, size_t cap) {
    skip_ws(l);
    char first[64];
    size_t n = 0;
    const char *start = l->p;
    while (isalnum((unsigned char)*l->p) || *l->p == '_') {
        if (n + 1 < sizeof first) first[n++] = *l->p;
        l->p++;
    }
    first[n] = 0;
    if (!n) return fail(l, "expected metrics.KEY, params.KEY, tags.KEY or attributes.NAME");
    static const struct {
        const char *name;
        entity e;
    } prefixes[] = {{"metric", E_METRIC},   {"metrics", E_METRIC},  {"param", E_PARAM},
                    {"params", E_PARAM},    {"parameter", E_PARAM}, {"parameters", E_PARAM},
                    {"tag", E_TAG},         {"tags", E_TAG},        {"attribute", E_ATTR},
                    {"attributes", E_ATTR}, {"attr", E_ATTR},       {"run", E_ATTR}};
    int found = -1;
    if (*l->p == '.')
        for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
            if (!strcasecmp(first, prefixes[i].name)) found = (int)i;
    if (found < 0) { /* a bare attribute name */
        *e = E_ATTR;
        l->p = start;
    } else {
        *e = prefixes[found].e;
        l->p++;
    }
    if (*l->p == '`' || *l->p == '"') return quoted(l, key, cap);
    n = 0;
    while (ident_char(*l->p)) {
        if (n + 1 < cap) key[n++] = *l->p;
        l->p++;
    }
    key[n] = 0;
    if (!n) return fail(l, "expected a key after the prefix");
    return 1;
}

static int word(lexer *l, const char *w) {
    skip_ws(l);
    size_t n = strlen(w);
    if (strncasecmp(l->p, w, n) || isalnum((unsigned char)l->p[n]) || l->p[n] == '_') return 0;
    l->p += n;
    return 1;
}

static int parse_op(lexer *l, op *o) {
    skip_ws(l);
    static const struct {
        const char *t;
        op o;
    } sym[] = {{"!=", OP_NE}, {"<>", OP_NE}, {"<=", OP_LE}, {">=", OP_GE},
               {"==", OP_EQ}, {"=", OP_EQ},  {"<", OP_LT},  {">", OP_GT}};
    for (size_t i = 0; i < sizeof sym / sizeof *sym; i++)
        if (!strncmp(l->p, sym[i].t, strlen(sym[i].t))) {
            l->p += strlen(sym[i].t);
            *o = sym[i].o;
            return 1;
        }
    if (word(l, "LIKE")) return *o = OP_LIKE, 1;
    if (word(l, "ILIKE")) return *o = OP_ILIKE, 1;
    if (word(l, "IN")) return *o = OP_IN, 1;
    if (word(l, "NOT")) {
        if (word(l, "IN")) return *o = OP_NOT_IN, 1;
        return fail(l, "expected IN after NOT");
    }
    return fail(l, "expected a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN)");
}

static int is_num_attr(const char *k) {
    return !strcmp(k, "start_time") || !strcmp(k, "end_time") || !strcmp(k, "created");
}

static int parse_value(lexer *l, clause *c) {
    skip_ws(l);
    char buf[8192];
    if (c->o == OP_IN || c->o == OP_NOT_IN) {
        if (*l->p != '(') return fail(l, "expected ( after IN");
        l->p++;
        for (;;) {
            skip_ws(l);
            if (*l->p != '\'' && *l->p != '"')
                return fail(l, "expected a quoted string in IN (...)");
            if (!quoted(l, buf, sizeof buf)) return 0;
            char **nl = realloc(c->list, (size_t)(c->n_list + 1) * sizeof *nl);
            if (!nl) return fail(l, "out of memory");
            c->list = nl;
            c->list[c->n_list++] = strdup(buf);
            skip_ws(l);
            if (*l->p == ',') {
                l->p++;
                continue;
            }
            if (*l->p == ')') {
                l->p++;
                return 1;
            }
            return fail(l, "expected , or ) in IN (...)");
        }
    }
    if (*l->p == '\'' || *l->p == '"') {
        if (!quoted(l, buf, sizeof buf)) return 0;
        c->str = strdup(buf);
        c->quoted = 1;
        char *end;
        c->num = strtod(buf, &end);
        c->is_num = buf[0] && !*end;
        return 1;
    }
    char *end;
    c->num = strtod(l->p, &end);
    if (end == l->p) return fail(l, "expected a number or a quoted string");
    c->is_num = 1;
    c->str = strndup(l->p, (size_t)(end - l->p));
    l->p = end;
    return 1;
}

static void clauses_free(clause *c, int n) {
    for (int i = 0; i < n; i++) {
        free(c[i].str);
        for (int k = 0; k < c[i].n_list; k++) free(c[i].list[k]);
        free(c[i].list);
    }
}

static const char *const STR_ATTRS[] = {"status",       "run_name",        "run_id", "user_id",
                                        "artifact_uri", "lifecycle_stage", NULL};

static int known_attr(const char *k) {
    for (int i = 0; STR_ATTRS[i]; i++)
        if (!strcmp(k, STR_ATTRS[i])) return 1;
    return is_num_attr(k);
}

/* Parses text into c[*n]; 0 with l->err on error. */
static int parse_filter(const char *text, clause *c, int *n, lexer *l) {
    l->s = l->p = text;
    *n = 0;
    skip_ws(l);
    if (!*l->p) return 1;
    for (;;) {
        if (*n == MAX_CLAUSES) return fail(l, "too many comparisons");
        clause *x = &c[*n];
        memset(x, 0, sizeof *x);
        (*n)++;
        if (!parse_ident(l, &x->e, x->key, sizeof x->key) || !parse_op(l, &x->o)) return 0;
        if (x->e == E_ATTR && !known_attr(x->key))
            return fail(l, "unknown attribute (status, run_name, run_id, user_id, artifact_uri, "
                           "lifecycle_stage, start_time, end_time)");
        int numeric = x->e == E_METRIC || (x->e == E_ATTR && is_num_attr(x->key));
        if (numeric && x->o >= OP_LIKE) return fail(l, "LIKE and IN compare strings, not numbers");
        if (!numeric && x->o >= OP_LT && x->o <= OP_GE)
            return fail(l, "params, tags and string attributes take =, !=, LIKE, ILIKE or IN");
        if (!parse_value(l, x)) return 0;
        if (numeric && !x->is_num) return fail(l, "expected a number");
        if (!numeric && x->o <= OP_LIKE + 1 && !x->quoted)
            return fail(l, "expected a quoted string");
        skip_ws(l);
        if (!*l->p) return 1;
        if (!word(l, "AND"))
            return fail(l, "expected AND (MLflow filters join comparisons with AND)");
    }
}

static int like(const char *s, const char *pat, int icase) {
    if (!*pat) return !*s;
    if (*pat == '%') {
        for (;; s++) {
            if (like(s, pat + 1, icase)) return 1;
            if (!*s) return 0;
        }
    }
    if (!*s) return 0;
    if (*pat == '_' ||
        (icase ? tolower((unsigned char)*s) == tolower((unsigned char)*pat) : *s == *pat))
        return like(s + 1, pat + 1, icase);
    return 0;
}

static const char *kv_get(const mlf_kv *kv, int n, const char *k) {
    for (int i = 0; i < n; i++)
        if (!strcmp(kv[i].key, k)) return kv[i].value;
    return NULL;
}

static int metric_of(const mlf_run *r, const char *k, double *v) {
    for (int i = 0; i < r->n_metrics; i++)
        if (!strcmp(r->metrics[i].key, k)) return *v = r->metrics[i].value, 1;
    return 0;
}

static const char *attr_str(const mlf_run *r, const char *k) {
    if (!strcmp(k, "status")) return r->status;
    if (!strcmp(k, "run_name")) return r->run_name;
    if (!strcmp(k, "run_id")) return r->run_id;
    if (!strcmp(k, "user_id")) return r->user_id;
    if (!strcmp(k, "lifecycle_stage")) return r->deleted ? "deleted" : "active";
    return NULL; /* artifact_uri: rendered, compared as rendered */
}

static int attr_num(const mlf_run *r, const char *k, double *v) {
    if (!strcmp(k, "end_time")) return r->end_time >= 0 ? (*v = (double)r->end_time, 1) : 0;
    return *v = (double)r->start_time, 1;
}

static int eval(const clause *c, const mlf_run *r) {
    double v;
    if (c->e == E_METRIC || (c->e == E_ATTR && is_num_attr(c->key))) {
        if (!(c->e == E_METRIC ? metric_of(r, c->key, &v) : attr_num(r, c->key, &v))) return 0;
        switch (c->o) {
        case OP_EQ:
            return v == c->num;
        case OP_NE:
            return v != c->num;
        case OP_LT:
            return v < c->num;
        case OP_LE:
            return v <= c->num;
        case OP_GT:
            return v > c->num;
        case OP_GE:
            return v >= c->num;
        default:
            return 0;
        }
    }
    const char *s;
    char uri[PATH_MAX + 16];
    if (c->e == E_PARAM)
        s = kv_get(r->params, r->n_params, c->key);
    else if (c->e == E_TAG)
        s = kv_get(r->tags, r->n_tags, c->key);
    else if (!strcmp(c->key, "artifact_uri")) {
        char abs[PATH_MAX];
        snprintf(uri, sizeof uri, "%s/artifacts", realpath(r->dir, abs) ? abs : r->dir);
        s = uri;
    } else
        s = attr_str(r, c->key);
    if (!s) return 0;
    switch (c->o) {
    case OP_EQ:
        return !strcmp(s, c->str);
    case OP_NE:
        return strcmp(s, c->str) != 0;
    case OP_LIKE:
        return like(s, c->str, 0);
    case OP_ILIKE:
        return like(s, c->str, 1);
    case OP_IN:
    case OP_NOT_IN: {
        int in = 0;
        for (int i = 0; i < c->n_list && !in; i++) in = !strcmp(s, c->list[i]);
        return c->o == OP_IN ? in : !in;
    }
    default:
        return 0;
    }
}

/* ---- order_by ---- */

typedef struct {
    entity e;
    char key[260];
    int desc;
} order;

static int parse_order(const char *text, order *o, lexer *l) {
    l->s = l->p = text;
    if (!parse_ident(l, &o->e, o->key, sizeof o->key)) return 0;
    if (o->e == E_ATTR && !known_attr(o->key)) return fail(l, "unknown attribute");
    o->desc = 0;
    if (word(l, "DESC"))
        o->desc = 1;
    else
        word(l, "ASC");
    skip_ws(l);
    if (*l->p) return fail(l, "expected ASC or DESC at the end");
    return 1;
}

typedef struct {
    const order *o;
    int n;
} sorter;
static sorter g_sort; /* qsort has no context; under m->mu */

/* -1, 0, 1; has: whether each side has a value. */
static int cmp_key(const order *o, const mlf_run *a, const mlf_run *b) {
    double x = 0, y = 0;
    int hx, hy;
    const char *sx = NULL, *sy = NULL;
    int numeric = o->e == E_METRIC || (o->e == E_ATTR && is_num_attr(o->key));
    if (numeric) {
        hx = o->e == E_METRIC ? metric_of(a, o->key, &x) : attr_num(a, o->key, &x);
        hy = o->e == E_METRIC ? metric_of(b, o->key, &y) : attr_num(b, o->key, &y);
    } else {
        sx = o->e == E_PARAM ? kv_get(a->params, a->n_params, o->key)
             : o->e == E_TAG ? kv_get(a->tags, a->n_tags, o->key)
                             : attr_str(a, o->key);
        sy = o->e == E_PARAM ? kv_get(b->params, b->n_params, o->key)
             : o->e == E_TAG ? kv_get(b->tags, b->n_tags, o->key)
                             : attr_str(b, o->key);
        hx = sx != NULL, hy = sy != NULL;
    }
    if (!hx || !hy) return hx == hy ? 0 : hx ? -1 : 1; /* missing last */
    int c = numeric ? (x < y ? -1 : x > y) : strcmp(sx, sy);
    return o->desc ? -c : c;
}

static int cmp_runs(const void *pa, const void *pb) {
    const mlf_run *a = *(mlf_run *const *)pa, *b = *(mlf_run *const *)pb;
    for (int i = 0; i < g_sort.n; i++) {
        int c = cmp_key(&g_sort.o[i], a, b);
        if (c) return c;
    }
    if (a->start_time != b->start_time) return a->start_time > b->start_time ? -1 : 1;
    return strcmp(a->run_id, b->run_id);
}

/* ---- page tokens ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void mlf_page_token(kiln_sbuf *s, int64_t offset) {
    char plain[64], out[128];
    int n = snprintf(plain, sizeof plain, "{\"offset\": %lld}", (long long)offset), k = 0;
    for (int i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)plain[i] << 16;
        if (i + 1 < n) v |= (unsigned char)plain[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)plain[i + 2];
        out[k++] = B64[v >> 18 & 63];
        out[k++] = B64[v >> 12 & 63];
        out[k++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
        out[k++] = i + 2 < n ? B64[v & 63] : '=';
    }
    out[k] = 0;
    kiln_sbuf_json_str(s, out);
}

int64_t mlf_page_offset(const char *tok) {
    char plain[96];
    size_t n = strlen(tok), k = 0;
    if (n == 0 || n % 4 || n > 120) return -1;
    for (size_t i = 0; i < n; i += 4) {
        unsigned v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            const char *c = tok[i + j] == '=' ? NULL : strchr(B64, tok[i + j]);
            if (tok[i + j] == '=')
                pad++;
            else if (!c || !tok[i + j] || pad)
                return -1;
            v = v << 6 | (c ? (unsigned)(c - B64) : 0);
        }
        plain[k++] = (char)(v >> 16);
        if (pad < 2) plain[k++] = (char)(v >> 8 & 255);
        if (pad < 1) plain[k++] = (char)(v & 255);
    }
    plain[k] = 0;
    long long off;
    char end;
    if (sscanf(plain, "{\"offset\": %lld%c", &off, &end) != 2 || end != '}' || off < 0) return -1;
    return off;
}

/* ---- runs/search ---- */

typedef struct {
    mlf_run **runs;
    int n, cap;
} run_list;

static void collect(kiln_board *b, const char *folder, run_list *rl) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", b->runs_dir, folder);
    DIR *d = opendir(path);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char key[600];
        if (snprintf(key, sizeof key, "%s/%s", folder, e->d_name) >= (int)sizeof key) continue;
        struct stat st;
        snprintf(path, sizeof path, "%s/%s/run.json", b->runs_dir, key);
        if (stat(path, &st) != 0) continue;
        mlf_run *r = malloc(sizeof *r);
        if (!r) break;
        if (!mlf_run_load(b, key, r)) {
            free(r);
            continue;
        }
        if (rl->n == rl->cap) {
            rl->cap = rl->cap ? 2 * rl->cap : 64;
            mlf_run **nr = realloc(rl->runs, (size_t)rl->cap * sizeof *nr);
            if (!nr) {
                mlf_run_free(r), free(r);
                break;
            }
            rl->runs = nr;
        }
        rl->runs[rl->n++] = r;
    }
    closedir(d);
}

void mlf_runs_search(kiln_board *b, const mlf_req *r, kiln_http_response *resp) {
    int64_t max = 1000, off = 0;
    if (mlf_i64(r, "max_results", &max) < 0 || max < 1 || max > 50000) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE",
                  "Invalid value for max_results: expected an integer in [1, 50000]");
        return;
    }
    const char *tok = mlf_str(r, "page_token");
    if (tok && *tok && (off = mlf_page_offset(tok)) < 0) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "Invalid page token '%s'", tok);
        return;
    }
    const char *view = mlf_str(r, "run_view_type");
    int want_deleted = 0; /* 0 active, 1 deleted, 2 all */
    if (view && !strcmp(view, "DELETED_ONLY"))
        want_deleted = 1;
    else if (view && !strcmp(view, "ALL"))
        want_deleted = 2;
    else if (view && *view && strcmp(view, "ACTIVE_ONLY")) {
        mlf_error(resp, "INVALID_PARAMETER_VALUE",
                  "Invalid run_view_type '%s': ACTIVE_ONLY, DELETED_ONLY or ALL", view);
        return;
    }
    clause cl[MAX_CLAUSES];
    int ncl = 0;
    lexer lx = {0};
    const char *filter = mlf_str(r, "filter");
    if (filter && !parse_filter(filter, cl, &ncl, &lx)) {
        clauses_free(cl, ncl);
        mlf_error(resp, "INVALID_PARAMETER_VALUE", "Invalid filter '%s': %s", filter, lx.err);
        return;
    }
    order ord[16];
    int nord = 0;
    const cJSON *ob = cJSON_GetObjectItemCaseSensitive(r->j, "order_by"), *o;
    if (cJSON_IsString(ob)) { /* one order_by in the query string */
        if (!parse_order(ob->valuestring, &ord[nord++], &lx)) goto bad_order;
    } else
        cJSON_ArrayForEach(o, ob) {
            if (!cJSON_IsString(o) || nord == 16 ||
                !parse_order(o->valuestring, &ord[nord++], &lx)) {
                if (!cJSON_IsString(o) || nord == 16)
                    snprintf(lx.err, sizeof lx.err, "not a string");
                goto bad_order;
            }
        }
    run_list rl = {0};
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(r->j, "experiment_ids"), *id;
    if (cJSON_IsString(ids)) { /* one id in the query string */
        char folder[300];
        if (mlf_exp_folder(b, ids->valuestring, folder, sizeof folder)) collect(b, folder, &rl);
    } else
        cJSON_ArrayForEach(id, ids) {
            char folder[300];
            if (cJSON_IsString(id) && mlf_exp_folder(b, id->valuestring, folder, sizeof folder))
                collect(b, folder, &rl);
        }
    int k = 0;
    for (int i = 0; i < rl.n; i++) {
        mlf_run *x = rl.runs[i];
        int keep = want_deleted == 2 || x->deleted == want_deleted;
        for (int c = 0; c < ncl && keep; c++) keep = eval(&cl[c], x);
        if (keep)
            rl.runs[k++] = x;
        else
            mlf_run_free(x), free(x);
    }
    rl.n = k;
    g_sort = (sorter){ord, nord};
    if (rl.n > 0) qsort(rl.runs, (size_t)rl.n, sizeof *rl.runs, cmp_runs);
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_sbuf_puts(&s, "{\"runs\":[");
    int64_t shown = 0;
    for (int64_t i = off; i < rl.n && shown < max; i++) {
        if (shown++) kiln_sbuf_putc(&s, ',');
        mlf_run_render(rl.runs[i], &s);
    }
    kiln_sbuf_putc(&s, ']');
    if (off + shown < rl.n) {
        kiln_sbuf_puts(&s, ",\"next_page_token\":");
        mlf_page_token(&s, off + shown);
    }
    kiln_sbuf_putc(&s, '}');
    for (int i = 0; i < rl.n; i++) mlf_run_free(rl.runs[i]), free(rl.runs[i]);
    free(rl.runs);
    clauses_free(cl, ncl);
    kiln_http_body_sbuf(resp, &s);
    return;
bad_order:
    clauses_free(cl, ncl);
    mlf_error(resp, "INVALID_PARAMETER_VALUE", "Invalid order_by clause: %s", lx.err);
}

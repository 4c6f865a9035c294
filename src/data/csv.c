/* csv.c — CSV tables with a header row as datasets (see kiln_csv_options in kiln/data.h).
 *
 * The whole file is read into one buffer (raw or gzip) and tokenized in place: quoted fields
 * are unquoted where they lie ("" becomes ") and every field is NUL-terminated, so a record is
 * an array of pointers into the buffer and nothing is copied until values are converted.
 * Grammar (RFC 4180 plus what real files do): records end at LF, CRLF or CR; a field that
 * starts (after spaces) with a quote runs to the closing quote and may hold delimiters, quotes
 * and line breaks; other fields run to the delimiter and are trimmed of spaces and tabs; lines
 * that are empty or blank are skipped; a UTF-8 byte-order mark is skipped. Lines are counted
 * physically (a quoted line break counts), so file:line in messages is what an editor shows.
 *
 * Features must be finite numbers (missing values are errors, not NaN). Class labels are ids
 * when every value is a non-negative integer, else names mapped to ids in byte order.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

typedef kiln_csv_tok csv;

static int is_blank(char c) {
    return c == ' ' || c == '\t';
}

static kiln_status push_field(csv *c, char *v, int64_t line) {
    if (c->nfield == c->cap) {
        int ncap = c->cap ? c->cap * 2 : 16;
        char **f = realloc(c->field, (size_t)ncap * sizeof *f);
        if (f) c->field = f;
        int64_t *l = f ? realloc(c->fline, (size_t)ncap * sizeof *l) : NULL;
        if (l) c->fline = l;
        if (!f || !l) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", c->path);
        c->cap = ncap;
    }
    c->field[c->nfield] = v, c->fline[c->nfield++] = line;
    return KILN_OK;
}

int kiln_csv_next(csv *c) {
    c->nfield = 0;
    for (;;) { /* skip blank lines */
        char *q = c->p;
        while (q < c->end && is_blank(*q)) q++;
        if (q >= c->end) return 0;
        if (*q != '\n' && *q != '\r') break;
        c->p = q + 1 + (*q == '\r' && q + 1 < c->end && q[1] == '\n');
        c->line++;
    }
    for (;;) {
        int64_t line = c->line;
        char *s = c->p, *t, *val;
        while (s < c->end && is_blank(*s)) s++;
        char tc;
        if (s < c->end && *s == '"') {
            char *r = s + 1, *w = s; /* w < r always, so writing never overtakes reading */
            for (;;) {
                if (r >= c->end) {
                    c->err = kiln_error(KILN_ERR_FORMAT, "%s:%lld: quoted field never closed",
                                        c->path, (long long)line);
                    return -1;
                }
                if (*r == '"') {
                    if (r + 1 < c->end && r[1] == '"') {
                        *w++ = '"', r += 2;
                        continue;
                    }
                    r++;
                    break;
                }
                if (*r == '\n' || (*r == '\r' && (r + 1 >= c->end || r[1] != '\n'))) c->line++;
                *w++ = *r++;
            }
            while (r < c->end && is_blank(*r)) r++;
            t = r, tc = t < c->end ? *t : 0;
            if (t < c->end && tc != c->delim && tc != '\n' && tc != '\r') {
                if (tc > ' ' && tc < 127)
                    c->err = kiln_error(KILN_ERR_FORMAT,
                                        "%s:%lld: unexpected '%c' after a closing quote", c->path,
                                        (long long)c->line, tc);
                else
                    c->err = kiln_error(KILN_ERR_FORMAT,
                                        "%s:%lld: unexpected byte 0x%02x after a closing quote",
                                        c->path, (long long)c->line, (unsigned char)tc);
                return -1;
            }
            *w = 0, val = s;
        } else {
            t = s;
            while (t < c->end && *t != c->delim && *t != '\n' && *t != '\r') t++;
            tc = t < c->end ? *t : 0;
            char *e = t;
            while (e > s && is_blank(e[-1])) e--;
            *e = 0, val = s; /* e <= t: may overwrite the terminator, which tc remembers */
        }
        if ((c->err = push_field(c, val, line)) != KILN_OK) return -1;
        if (t < c->end && tc == c->delim) {
            c->p = t + 1;
            continue;
        }
        if (tc == '\r' || tc == '\n') {
            t += 1 + (tc == '\r' && t + 1 < c->end && t[1] == '\n');
            c->line++;
        }
        c->p = t;
        return 1;
    }
}

/* Appends "a, b, c" (the header's names) to buf, truncated with "...". */
static const char *list_columns(char **names, int n, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < n && at + 8 < cap; i++) {
        int w = snprintf(buf + at, cap - at, "%s'%s'", i ? ", " : "", names[i]);
        at += w > 0 ? (size_t)w : 0;
    }
    if (at >= cap - 1) strcpy(buf + cap - 4, "...");
    return buf;
}

/* The index of column `name`; an error when it is absent or not unique. */
static int find_column(const csv *c, char **names, int n, const char *name, const char *role,
                       kiln_status *st) {
    int at = -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], name) != 0) continue;
        if (at >= 0) {
            *st = kiln_error(KILN_ERR_FORMAT,
                             "%s: the header names column '%s' twice (columns %d and %d)", c->path,
                             name, at + 1, i + 1);
            return -1;
        }
        at = i;
    }
    if (at < 0) {
        char buf[320];
        *st = kiln_error(KILN_ERR_NOTFOUND, "%s: no %s column '%s' in the header (columns: %s)",
                         c->path, role, name, list_columns(names, n, buf, sizeof buf));
    }
    return at;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A class id from text: a non-negative decimal integer below the class limit, else -1. */
static int32_t parse_id(const char *s) {
    if (!*s) return -1;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
        if (v >= KILN_DATA_MAX_CLASSES) return -1;
    }
    return (int32_t)v;
}

kiln_status kiln_csv_label_ids(const csv *c, char **lab, const int64_t *lline, int64_t n,
                             int32_t *ids, char ***names, int *num) {
    *names = NULL, *num = 0;
    int64_t i = 0;
    for (; i < n && (ids[i] = parse_id(lab[i])) >= 0; i++) {
    }
    if (i == n) return KILN_OK;
    for (int64_t k = 0; k < n; k++)
        if (!*lab[k])
            return kiln_error(KILN_ERR_FORMAT, "%s:%lld: the label is empty", c->path,
                              (long long)lline[k]);
    char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", c->path);
    memcpy(sorted, lab, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    int64_t u = 0;
    for (int64_t k = 0; k < n; k++)
        if (k == 0 || strcmp(sorted[k], sorted[u - 1]) != 0) sorted[u++] = sorted[k];
    if (u > KILN_DATA_MAX_CLASSES) {
        free(sorted);
        return kiln_error(KILN_ERR_FORMAT, "%s: %lld distinct labels (at most %d classes)", c->path,
                          (long long)u, KILN_DATA_MAX_CLASSES);
    }
    for (int64_t k = 0; k < n; k++) {
        char **hit = bsearch(&lab[k], sorted, (size_t)u, sizeof *sorted, cmp_str);
        ids[k] = (int32_t)(hit - sorted);
    }
    char **nm = calloc((size_t)u, sizeof *nm);
    int fail = !nm;
    for (int64_t k = 0; !fail && k < u; k++) fail = !(nm[k] = strdup(sorted[k]));
    free(sorted);
    if (fail) {
        for (int64_t k = 0; nm && k < u; k++) free(nm[k]);
        free(nm);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", c->path);
    }
    *names = nm, *num = (int)u;
    return KILN_OK;
}

/* Field j of the current record as a finite float. */
static kiln_status parse_number(const csv *c, char **names, int j, float *out) {
    const char *v = c->field[j];
    char *end;
    *out = strtof(v, &end);
    if (!*v)
        return kiln_error(KILN_ERR_FORMAT, "%s:%lld: column '%s' is empty", c->path,
                          (long long)c->fline[j], names[j]);
    if (end == v || *end || !isfinite(*out))
        return kiln_error(KILN_ERR_FORMAT,
                          "%s:%lld: column '%s': \"%.40s%s\" is not a finite number", c->path,
                          (long long)c->fline[j], names[j], v, strlen(v) > 40 ? "..." : "");
    return KILN_OK;
}

/* Grows *p (elements of `size` bytes) to hold at least `need`. */
static int grow(void **p, int64_t *cap, int64_t need, size_t size) {
    if (need <= *cap) return 0;
    int64_t ncap = *cap ? *cap : 1024;
    while (ncap < need) ncap *= 2;
    void *q = realloc(*p, (size_t)ncap * size);
    if (!q) return -1;
    *p = q, *cap = ncap;
    return 0;
}

kiln_status kiln_data_load_csv(const char *path, const kiln_csv_options *opt, kiln_dataset **out) {
    *out = NULL;
    kiln_csv_options o = opt ? *opt : (kiln_csv_options){0};
    char delim = o.delimiter ? o.delimiter : ',';
    if (delim == '"' || delim == '\n' || delim == '\r')
        return kiln_error(KILN_ERR_INVALID, "%s: the delimiter cannot be a quote or line break",
                          path);
    kiln_label_kind kind = o.label ? o.label_kind : KILN_LABEL_NONE;
    if (o.label && kind != KILN_LABEL_CLASS && kind != KILN_LABEL_FLOAT)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: label column '%s' needs the label kind class or float", path,
                          o.label);
    if (o.feature_columns && o.num_feature_columns <= 0)
        return kiln_error(KILN_ERR_INVALID, "%s: an empty list of feature columns", path);

    kiln_dfile f;
    char *text = NULL;
    size_t len = 0;
    kiln_status st = kiln_dfile_open(&f, path);
    if (st != KILN_OK) return st;
    st = kiln_dfile_read_rest(&f, &text, &len);
    kiln_dfile_close(&f);
    if (st != KILN_OK) return st;

    csv c = {path, text, text + len, 1, delim, NULL, NULL, 0, 0, KILN_OK};
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) c.p += 3;
    int ncol = 0, nf = 0, ycol = -1, *fcol = NULL;
    char **names = NULL, **lab = NULL, **cnames = NULL;
    float *x = NULL, *yf = NULL;
    int32_t *yi = NULL;
    int64_t *lline = NULL, n = 0, xcap = 0, lcap = 0, llcap = 0, yfcap = 0;
    int ncls = 0;

    int r = kiln_csv_next(&c);
    if (r <= 0) {
        st = r < 0 ? c.err : kiln_error(KILN_ERR_FORMAT, "%s: empty file (no header)", path);
        goto done;
    }
    ncol = c.nfield;
    names = malloc((size_t)ncol * sizeof *names);
    fcol = malloc((size_t)ncol * sizeof *fcol); /* [nf], nf <= ncol (distinct columns) */
    if (!names || !fcol) {
        st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    memcpy(names, c.field, (size_t)ncol * sizeof *names); /* they point into text */
    if (o.label && (ycol = find_column(&c, names, ncol, o.label, "label", &st)) < 0) goto done;
    if (o.feature_columns) {
        for (int k = 0; k < o.num_feature_columns; k++) {
            const char *name = o.feature_columns[k] ? o.feature_columns[k] : "";
            int j = find_column(&c, names, ncol, name, "feature", &st);
            if (j < 0) goto done;
            for (int q = 0; q < nf; q++)
                if (fcol[q] == j) {
                    st = kiln_error(KILN_ERR_INVALID, "%s: feature column '%s' is listed twice",
                                    path, name);
                    goto done;
                }
            if (j == ycol) {
                st = kiln_error(KILN_ERR_INVALID, "%s: column '%s' is both the label and a feature",
                                path, name);
                goto done;
            }
            fcol[nf++] = j;
        }
    } else {
        for (int j = 0; j < ncol; j++)
            if (j != ycol) fcol[nf++] = j;
    }
    if (nf == 0) {
        st = kiln_error(KILN_ERR_FORMAT, "%s: no feature columns (the header has only '%s')", path,
                        names[0]);
        goto done;
    }

    while ((r = kiln_csv_next(&c)) > 0) {
        int64_t line = c.fline[0];
        if (c.nfield != ncol) {
            st = kiln_error(KILN_ERR_FORMAT, "%s:%lld: %d field%s, but the header has %d columns",
                            path, (long long)line, c.nfield, c.nfield == 1 ? "" : "s", ncol);
            goto done;
        }
        if (grow((void **)&x, &xcap, (n + 1) * nf, sizeof *x) ||
            (kind == KILN_LABEL_CLASS && (grow((void **)&lab, &lcap, n + 1, sizeof *lab) ||
                                          grow((void **)&lline, &llcap, n + 1, sizeof *lline))) ||
            (kind == KILN_LABEL_FLOAT && grow((void **)&yf, &yfcap, n + 1, sizeof *yf))) {
            st =
                kiln_error(KILN_ERR_NOMEM, "%s: out of memory at line %lld", path, (long long)line);
            goto done;
        }
        for (int k = 0; k < nf; k++)
            if ((st = parse_number(&c, names, fcol[k], &x[n * nf + k])) != KILN_OK) goto done;
        if (kind == KILN_LABEL_FLOAT && (st = parse_number(&c, names, ycol, &yf[n])) != KILN_OK)
            goto done;
        if (kind == KILN_LABEL_CLASS) lab[n] = c.field[ycol], lline[n] = c.fline[ycol];
        n++;
    }
    if (r < 0) {
        st = c.err;
        goto done;
    }
    if (n == 0) {
        st = kiln_error(KILN_ERR_FORMAT, "%s: no data rows after the header", path);
        goto done;
    }
    if (kind == KILN_LABEL_CLASS) {
        if (!(yi = malloc((size_t)n * sizeof *yi))) {
            st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        if ((st = kiln_csv_label_ids(&c, lab, lline, n, yi, &cnames, &ncls)) != KILN_OK) goto done;
    }
    st = kiln_ds_adopt(out, path, n, KILN_F32, kiln_shape_make(1, (const int64_t[]){nf}), x, kind,
                       1, kind == KILN_LABEL_CLASS ? (void *)yi : (void *)yf, ncls, cnames);
    x = NULL, yi = NULL, yf = NULL, cnames = NULL; /* adopted, even on failure */
done:
    free(x), free(yf), free(yi), free(lab), free(lline), free(names), free(fcol);
    free(c.field), free(c.fline), free(text);
    return st;
}

/* instances.c — reading instances from JSON, CSV and NPY files (formats in kiln/instances.h;
 * images are instances_image.c).
 *
 * JSON goes through the serving parser (kiln_tj_parse_tf for predict bodies, its tensor builder
 * for bare lists), so a file is read exactly as the server would read the same body, with the
 * same messages, and numbers go straight into a float32 buffer. CSV is read here, line by line
 * in place. NPY is the data module's reader (which also takes .npy.gz).
 *
 * Invariant: every read appends whole files or nothing. A read notes in->n first, and on any
 * failure drops what it appended (rows past that mark and their `where` strings), so a caller
 * can report a bad file and go on with the instances it already has.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kiln/data.h"
#include "kiln/fileio.h"
#include "kiln/instances.h"
#include "kiln/mem.h"
#include "serve/instances_internal.h"
#include "serve/tj_internal.h"

/* ---- formats ---- */

kiln_instances_format kiln_instances_format_of_name(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 3 && !strcasecmp(base + n - 3, ".gz")) n -= 3; /* only NPY is read gzipped */
    const char *dot = NULL;
    for (size_t i = 0; i < n; i++)
        if (base[i] == '.') dot = base + i;
    if (!dot) return KILN_INSTANCES_UNKNOWN;
    size_t el = (size_t)(base + n - dot - 1);
    static const struct {
        const char *ext;
        kiln_instances_format f;
    } exts[] = {{"json", KILN_INSTANCES_JSON},  {"csv", KILN_INSTANCES_CSV},
                {"txt", KILN_INSTANCES_CSV},    {"npy", KILN_INSTANCES_NPY},
                {"png", KILN_INSTANCES_IMAGE},  {"jpg", KILN_INSTANCES_IMAGE},
                {"jpeg", KILN_INSTANCES_IMAGE}, {"bmp", KILN_INSTANCES_IMAGE},
                {"gif", KILN_INSTANCES_IMAGE},  {"pgm", KILN_INSTANCES_IMAGE},
                {"ppm", KILN_INSTANCES_IMAGE},  {"pnm", KILN_INSTANCES_IMAGE}};
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++)
        if (strlen(exts[i].ext) == el && !strncasecmp(dot + 1, exts[i].ext, el))
            return n < strlen(base) && exts[i].f != KILN_INSTANCES_NPY ? KILN_INSTANCES_UNKNOWN
                                                                       : exts[i].f;
    return KILN_INSTANCES_UNKNOWN;
}

static int starts(const unsigned char *d, size_t len, const char *magic, size_t n) {
    return len >= n && memcmp(d, magic, n) == 0;
}

kiln_instances_format kiln_instances_format_of_data(const void *data, size_t len) {
    const unsigned char *d = data;
    if (starts(d, len, "\x93NUMPY", 6)) return KILN_INSTANCES_NPY;
    if (starts(d, len, "\x89PNG\r\n\x1a\n", 8) || starts(d, len, "\xff\xd8\xff", 3) ||
        starts(d, len, "GIF87a", 6) || starts(d, len, "GIF89a", 6))
        return KILN_INSTANCES_IMAGE;
    /* BMP: "BM", file size, two reserved u16 that are zero (text never has NUL bytes) */
    if (len >= 14 && d[0] == 'B' && d[1] == 'M' && !d[6] && !d[7] && !d[8] && !d[9])
        return KILN_INSTANCES_IMAGE;
    if (len >= 3 && d[0] == 'P' && (d[1] == '5' || d[1] == '6') &&
        (d[2] == ' ' || d[2] == '\n' || d[2] == '\r' || d[2] == '\t'))
        return KILN_INSTANCES_IMAGE;
    size_t probe = len < 4096 ? len : 4096;
    if (memchr(d, 0, probe)) return KILN_INSTANCES_UNKNOWN;
    size_t i = starts(d, len, "\xef\xbb\xbf", 3) ? 3 : 0;
    while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n')) i++;
    if (i == len) return KILN_INSTANCES_UNKNOWN;
    return d[i] == '[' || d[i] == '{' ? KILN_INSTANCES_JSON : KILN_INSTANCES_CSV;
}

const char *kiln_instances_format_name(kiln_instances_format f) {
    static const char *names[] = {"unknown", "JSON", "CSV", "NPY", "image"};
    return (unsigned)f <= KILN_INSTANCES_IMAGE ? names[f] : "unknown";
}

/* ---- shapes ---- */

int kiln_instances_fits(const int64_t *dims, int ndim, const kiln_shape *row) {
    int64_t rs = kiln_shape_numel(row);
    if (ndim == 1 && dims[0] == rs) return 1; /* flat */
    int i = 0, j = 0;
    for (;;) { /* equal once size-1 dims are dropped */
        while (i < ndim && dims[i] == 1) i++;
        while (j < row->ndim && row->dims[j] == 1) j++;
        if (i == ndim || j == row->ndim) break;
        if (dims[i++] != row->dims[j++]) return 0;
    }
    return i == ndim && j == row->ndim;
}

static const char *dims_str(const int64_t *dims, int ndim, char *buf, size_t cap) {
    kiln_shape s = kiln_shape_make(ndim, dims);
    return kiln_shape_str(&s, buf, cap);
}

/* "the model's input row is [1, 28, 28] (784 values)" */
static const char *row_str(const kiln_shape *row, char *buf, size_t cap) {
    char s[96];
    snprintf(buf, cap, "the model's input row is %s (%lld values)",
             kiln_shape_str(row, s, sizeof s), (long long)kiln_shape_numel(row));
    return buf;
}

kiln_status kiln_instances_check_batch(const char *what, const kiln_shape *t,
                                      const kiln_shape *row, const char *model) {
    char a[96], b[96], whose[160];
    if (t->ndim < 1)
        return kiln_error(KILN_ERR_FORMAT, "%s: expected a list of instances, got a number", what);
    if (t->dims[0] < 1)
        return kiln_error(KILN_ERR_FORMAT, "%s: no instances (shape %s)", what,
                          kiln_shape_str(t, a, sizeof a));
    if (kiln_instances_fits(t->dims + 1, t->ndim - 1, row)) return KILN_OK;
    if (model)
        snprintf(whose, sizeof whose, "model %s's", model);
    else
        snprintf(whose, sizeof whose, "the model's");
    return kiln_error(KILN_ERR_FORMAT,
                      "%s: each instance has shape %s, but %s input row is %s (%lld values): give "
                      "instances in that shape or flat lists of %lld numbers",
                      what, dims_str(t->dims + 1, t->ndim - 1, a, sizeof a), whose,
                      kiln_shape_str(row, b, sizeof b), (long long)kiln_shape_numel(row),
                      (long long)kiln_shape_numel(row));
}

/* ---- appending ---- */

static kiln_status reserve(kiln_instances *in, int64_t more) {
    if (in->n + more <= in->cap) return KILN_OK;
    int64_t cap = in->cap ? in->cap : 16;
    while (cap < in->n + more) cap *= 2;
    if ((uint64_t)cap * (uint64_t)in->row_size > ((uint64_t)1 << 40))
        return kiln_error(KILN_ERR_NOMEM, "too many instances (%lld values)",
                          (long long)(cap * in->row_size));
    float *x = realloc(in->x, (size_t)(cap * in->row_size) * sizeof *x);
    if (!x) return kiln_error(KILN_ERR_NOMEM, "out of memory for %lld instances", (long long)cap);
    in->x = x;
    char **w = realloc(in->where, (size_t)cap * sizeof *w);
    if (!w) return kiln_error(KILN_ERR_NOMEM, "out of memory for %lld instances", (long long)cap);
    in->where = w;
    in->cap = cap;
    return KILN_OK;
}

/* Names the instances [first, in->n) of one file: "name" when it gave one, else "name[i]". */
static kiln_status name_rows(kiln_instances *in, int64_t first, const char *name) {
    int64_t count = in->n - first;
    for (int64_t i = first; i < in->n; i++) in->where[i] = NULL;
    for (int64_t i = first; i < in->n; i++) {
        size_t cap = strlen(name) + 24;
        if (!(in->where[i] = malloc(cap))) return kiln_error(KILN_ERR_NOMEM, "out of memory");
        if (count == 1)
            snprintf(in->where[i], cap, "%s", name);
        else
            snprintf(in->where[i], cap, "%s[%lld]", name, (long long)(i - first));
    }
    return KILN_OK;
}

static void truncate_to(kiln_instances *in, int64_t n) {
    for (int64_t i = n; i < in->n; i++) free(in->where[i]);
    in->n = n < in->n ? n : in->n;
}

void kiln_instances_free(kiln_instances *in) {
    truncate_to(in, 0);
    free(in->x);
    free(in->where);
    memset(in, 0, sizeof *in);
}

/* Appends rows rows of values (or reserves them, zeroed, when x is NULL) and names them. */
static kiln_status push_rows(kiln_instances *in, const float *x, int64_t rows, const char *name) {
    int64_t first = in->n;
    kiln_status st = reserve(in, rows);
    if (st) return st;
    float *dst = in->x + first * in->row_size;
    if (x)
        memcpy(dst, x, (size_t)(rows * in->row_size) * sizeof *dst);
    else
        memset(dst, 0, (size_t)(rows * in->row_size) * sizeof *dst);
    in->n += rows;
    return name_rows(in, first, name);
}

/* ---- JSON ---- */

static kiln_status all_f32(void *ctx, const char *sig, const char *name, kiln_tj_type *type) {
    (void)ctx, (void)sig, (void)name;
    *type = KILN_TJ_F32;
    return KILN_OK;
}

/* A predict body {"instances": ...} or {"inputs": ...} into t (shape [N, ...]). */
static kiln_status json_body(const char *text, size_t len, const kiln_instances_spec *spec,
                             kiln_tj_tensor *t, const char **key) {
    kiln_tj_schema schema = {all_f32, NULL};
    kiln_tj_request r;
    kiln_status st = kiln_tj_parse_tf(text, len, &schema, &r);
    if (st) return st;
    *key = r.format == KILN_TJ_TF_ROW ? "instances" : "inputs";
    if (r.n_inputs != 1)
        st = kiln_error(KILN_ERR_FORMAT,
                        "%s: %d named inputs ('" TJ_NAME "', '" TJ_NAME "'%s); the model takes one",
                        *key, r.n_inputs, r.inputs[0].name, r.inputs[1].name,
                        r.n_inputs > 2 ? ", ..." : "");
    else if (r.named && spec->input_name && strcmp(r.inputs[0].name, spec->input_name))
        st = kiln_error(KILN_ERR_FORMAT, "%s: input '" TJ_NAME "' is not the model's input ('%s')",
                        *key, r.inputs[0].name, spec->input_name);
    else if (r.inputs[0].shape.ndim < 1)
        st = kiln_error(KILN_ERR_FORMAT, "%s: expected a list of instances, got a number", *key);
    if (!st) *t = r.inputs[0], memset(&r.inputs[0], 0, sizeof r.inputs[0]);
    kiln_tj_request_free(&r);
    return st;
}

/* A bare list (a list of instances or one instance) at the cursor into t. */
static kiln_status json_list(js_cur *c, kiln_tj_tensor *t) {
    tj_builder b;
    kiln_status st = tj_builder_init(&b, "", KILN_TJ_F32, 0, "", 0, 0);
    if (st) return st;
    if ((st = tj_walk(&b, c, 0)) || (st = tj_at_end(c))) {
        tj_builder_free(&b);
        return st;
    }
    return tj_finish(&b, t);
}

/* Parses JSON text into t and how many instances it holds (*n): a predict body's instances, or
 * a bare list (one_only: exactly one instance). */
static kiln_status json_instances(const char *text, size_t len, const kiln_instances_spec *spec,
                                  int one_only, kiln_tj_tensor *t, int64_t *n) {
    memset(t, 0, sizeof *t);
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) text += 3, len -= 3; /* a UTF-8 BOM */
    js_cur c = {text, text, text + len};
    int ch = js_peek(&c);
    kiln_status st;
    char a[96], b[160];
    if (ch == '{') {
        const char *key;
        if ((st = json_body(text, len, spec, t, &key))) return st;
        if ((st = kiln_instances_check_batch(key, &t->shape, &spec->row, NULL))) return st;
        *n = t->shape.dims[0];
    } else if (ch == '[') {
        if ((st = json_list(&c, t))) return st;
        const kiln_shape *s = &t->shape;
        if (s->ndim >= 1 && kiln_instances_fits(s->dims + 1, s->ndim - 1, &spec->row))
            *n = s->dims[0];
        else if (kiln_instances_fits(s->dims, s->ndim, &spec->row))
            *n = 1;
        else
            return kiln_error(KILN_ERR_FORMAT,
                              "a list of shape %s is neither one instance nor a list of "
                              "instances: %s",
                              dims_str(s->dims, s->ndim, a, sizeof a),
                              row_str(&spec->row, b, sizeof b));
    } else {
        if (ch < 0) return kiln_error(KILN_ERR_FORMAT, "empty: expected JSON");
        return js_kind_at(&c) == JS_BAD
                   ? js_syntax(&c, "expected a JSON list or object")
                   : kiln_error(KILN_ERR_FORMAT,
                                "expected a list of instances or an object with \"instances\" "
                                "or \"inputs\", got %s",
                                js_kind_name(js_kind_at(&c)));
    }
    if (one_only && *n != 1)
        return kiln_error(KILN_ERR_FORMAT, "%lld instances; give one per line", (long long)*n);
    return KILN_OK;
}

static void tj_tensor_free(kiln_tj_tensor *t) {
    free(t->name);
    free(t->data);
    free(t->offsets);
    memset(t, 0, sizeof *t);
}

static kiln_status read_json(kiln_instances *in, const char *name, const char *text, size_t len,
                             const kiln_instances_spec *spec) {
    kiln_tj_tensor t;
    int64_t n = 0;
    kiln_status st = json_instances(text, len, spec, 0, &t, &n);
    if (!st) st = push_rows(in, t.data, n, name);
    tj_tensor_free(&t);
    return st;
}

/* ---- CSV ---- */

typedef enum { NUM_OK = 0, NUM_BAD, NUM_NONFINITE } num_result;

static num_result parse_num(const char *s, size_t n, float *v) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return NUM_BAD;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    double d = strtod(buf, &end);
    if (end != buf + n) return NUM_BAD;
    float f = (float)d;
    if (!isfinite(d) || !isfinite(f)) return NUM_NONFINITE;
    *v = f;
    return NUM_OK;
}

static int blank(char ch) {
    return ch == ' ' || ch == '\t';
}

/* Reads the comma-separated fields of [s, e) as numbers into x (at most want of them); *got is
 * the number of fields. A field that is not a number stops the read: *bad is its column
 * (1-based) and [*bs, *bs + *bn) its text; *bad is 0 when every field was a number. */
static void csv_fields(const char *s, const char *e, float *x, int64_t want, int64_t *got,
                       int64_t *bad, num_result *why, const char **bs, size_t *bn) {
    *got = 0, *bad = 0;
    const char *p = s;
    for (;;) {
        while (p < e && blank(*p)) p++;
        const char *fs = p, *fe;
        if (p < e && *p == '"') {
            const char *q = memchr(p + 1, '"', (size_t)(e - p - 1)), *after = q ? q + 1 : e;
            while (after < e && blank(*after)) after++;
            if (q && (after == e || *after == ',')) {
                fs = p + 1, fe = q, p = after;
            } else { /* unterminated, or text after the closing quote: all of it is the field */
                const char *comma = memchr(p, ',', (size_t)(e - p));
                fe = p = comma ? comma : e;
            }
        } else {
            while (p < e && *p != ',') p++;
            fe = p;
            while (fe > fs && blank(fe[-1])) fe--;
        }
        float v = 0;
        num_result r = parse_num(fs, (size_t)(fe - fs), &v);
        (*got)++;
        if (r != NUM_OK) {
            *bad = *got, *why = r, *bs = fs, *bn = (size_t)(fe - fs);
            return;
        }
        if (*got <= want) x[*got - 1] = v;
        if (p >= e) return;
        p++; /* ',' */
    }
}

/* The message for a line that is not want numbers. */
static kiln_status csv_line_error(int64_t got, int64_t bad, num_result why, const char *bs,
                                  size_t bn, const kiln_shape *row) {
    char b[160];
    if (bad) {
        int show = bn > 40 ? 40 : (int)bn;
        return kiln_error(KILN_ERR_FORMAT, "column %lld: '%.*s%s' is %s", (long long)bad, show, bs,
                          bn > 40 ? "..." : "",
                          why == NUM_NONFINITE ? "not a finite float32 number" : "not a number");
    }
    return kiln_error(KILN_ERR_FORMAT, "%lld values, but %s", (long long)got,
                      row_str(row, b, sizeof b));
}

static kiln_status read_csv(kiln_instances *in, const char *name, const char *text, size_t len,
                            const kiln_instances_spec *spec) {
    const char *p = text, *end = text + len;
    if (len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3)) p += 3;
    int64_t line = 0, first = in->n;
    int seen_line = 0;
    char wname[64];
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *s = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        line++;
        if (e > s && e[-1] == '\r') e--;
        const char *q = s;
        while (q < e && blank(*q)) q++;
        if (q == e) continue; /* blank line */
        kiln_status st = reserve(in, 1);
        if (st) return st;
        float *x = in->x + in->n * in->row_size;
        int64_t got, bad;
        num_result why = NUM_OK;
        const char *bs = NULL;
        size_t bn = 0;
        csv_fields(s, e, x, in->row_size, &got, &bad, &why, &bs, &bn);
        int header = !seen_line && bad;
        seen_line = 1;
        if (header) continue;
        if (bad || got != in->row_size) {
            csv_line_error(got, bad, why, bs, bn, &spec->row);
            kiln_error_prefix("%s:%lld", name, (long long)line);
            return KILN_ERR_FORMAT;
        }
        in->n++;
        snprintf(wname, sizeof wname, ":%lld", (long long)line);
        size_t cap = strlen(name) + strlen(wname) + 1;
        in->where[in->n - 1] = malloc(cap);
        if (!in->where[in->n - 1]) {
            in->n--;
            return kiln_error(KILN_ERR_NOMEM, "out of memory");
        }
        snprintf(in->where[in->n - 1], cap, "%s%s", name, wname);
    }
    if (in->n == first)
        return kiln_error(KILN_ERR_FORMAT, "%s: no instances (no lines of numbers)", name);
    return KILN_OK;
}

/* ---- NPY ---- */

static kiln_status read_npy(kiln_instances *in, const char *path, const char *name,
                            const kiln_instances_spec *spec) {
    kiln_dataset *ds = NULL;
    kiln_status st = kiln_data_load_npy(path, NULL, KILN_LABEL_NONE, &ds);
    if (st) return st;
    int64_t rows = kiln_dataset_rows(ds);
    kiln_shape xs = kiln_dataset_x_shape(ds);
    int64_t per = kiln_shape_numel(&xs), n;
    int64_t full[KILN_MAX_DIMS + 1] = {rows};
    memcpy(full + 1, xs.dims, (size_t)xs.ndim * sizeof *full);
    char a[96], b[160];
    if (kiln_instances_fits(xs.dims, xs.ndim, &spec->row)) {
        n = rows;
    } else if (kiln_instances_fits(full, xs.ndim + 1, &spec->row)) {
        n = 1;
    } else {
        kiln_dataset_free(ds);
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: an array of shape %s is neither one instance nor a list of "
                          "instances: %s",
                          name, dims_str(full, xs.ndim + 1, a, sizeof a),
                          row_str(&spec->row, b, sizeof b));
    }
    int64_t first = in->n;
    if (!(st = push_rows(in, NULL, n, name))) {
        float *dst = in->x + first * in->row_size;
        for (int64_t i = 0; i < rows && !st; i++) st = kiln_dataset_get(ds, i, dst + i * per, NULL);
    }
    kiln_dataset_free(ds);
    return st;
}

/* NPY content in memory: through a temporary file. Messages name `name`, not that file. */
static kiln_status read_npy_data(kiln_instances *in, const char *name, const void *data, size_t len,
                                 const kiln_instances_spec *spec) {
    const char *dir = getenv("TMPDIR");
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/kiln-instances-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmp);
    if (fd < 0)
        return kiln_error(KILN_ERR_IO, "%s: cannot make a temporary file %s: %s", name, tmp,
                          strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd), unlink(tmp);
            return kiln_error(KILN_ERR_IO, "%s: cannot write the temporary file %s: %s", name, tmp,
                              w < 0 ? strerror(e) : "short write");
        }
        p += w, left -= (size_t)w;
    }
    close(fd);
    kiln_status st = read_npy(in, tmp, name, spec);
    unlink(tmp);
    if (st) { /* "<tmp>: what" -> "<name>: what" */
        const char *msg = kiln_last_error(), *hit = strstr(msg, tmp);
        if (hit) {
            char copy[1024];
            snprintf(copy, sizeof copy, "%.*s%s%s", (int)(hit - msg), msg, name, hit + strlen(tmp));
            kiln_error(st, "%s", copy);
        }
    }
    return st;
}

/* ---- entry points ---- */

static kiln_status begin(kiln_instances *in, const kiln_instances_spec *spec) {
    int64_t rs = kiln_shape_numel(&spec->row);
    if (spec->row.ndim < 0 || spec->row.ndim > KILN_MAX_DIMS || rs < 1)
        return kiln_error(KILN_ERR_INVALID, "instances: bad row shape");
    if (in->row_size && in->row_size != rs)
        return kiln_error(KILN_ERR_INVALID,
                          "instances: rows of %lld values were read before, now %lld",
                          (long long)in->row_size, (long long)rs);
    in->row_size = rs;
    return KILN_OK;
}

static kiln_status read_data(kiln_instances *in, const char *name, const void *data, size_t len,
                             kiln_instances_format fmt, const kiln_instances_spec *spec) {
    if (len == 0) return kiln_error(KILN_ERR_FORMAT, "%s: the file is empty", name);
    if (fmt == KILN_INSTANCES_UNKNOWN) fmt = kiln_instances_format_of_data(data, len);
    kiln_status st;
    switch (fmt) {
    case KILN_INSTANCES_JSON:
        if ((st = read_json(in, name, data, len, spec))) { /* the parser's messages: no name */
            kiln_error_prefix("%s", name);
            return st == KILN_ERR_NOMEM ? st : KILN_ERR_FORMAT;
        }
        return KILN_OK;
    case KILN_INSTANCES_CSV:
        return read_csv(in, name, data, len, spec);
    case KILN_INSTANCES_NPY:
        return read_npy_data(in, name, data, len, spec);
    case KILN_INSTANCES_IMAGE: {
        int64_t first = in->n;
        if ((st = push_rows(in, NULL, 1, name))) return st;
        return kiln_instances_image(name, data, len, &spec->row, in->x + first * in->row_size);
    }
    case KILN_INSTANCES_UNKNOWN:
        break;
    }
    return kiln_error(KILN_ERR_FORMAT,
                      "%s: cannot tell the format (not JSON, CSV, NPY or a PNG/JPEG/GIF/BMP/PGM "
                      "image); name it .json, .csv, .npy or .png",
                      name);
}

kiln_status kiln_instances_read_data(kiln_instances *in, const char *name, const void *data,
                                     size_t len, kiln_instances_format fmt,
                                     const kiln_instances_spec *spec) {
    kiln_status st = begin(in, spec);
    if (st) return st;
    int64_t n0 = in->n;
    if ((st = read_data(in, name, data, len, fmt, spec))) truncate_to(in, n0);
    return st;
}

kiln_status kiln_instances_read(kiln_instances *in, const char *path,
                                const kiln_instances_spec *spec) {
    if (!path || !*path) return kiln_error(KILN_ERR_INVALID, "instances: empty file name");
    kiln_status st = begin(in, spec);
    if (st) return st;
    int is_stdin = !strcmp(path, "-");
    const char *name = is_stdin ? "stdin" : path;
    kiln_instances_format fmt =
        is_stdin ? KILN_INSTANCES_UNKNOWN : kiln_instances_format_of_name(path);
    int64_t n0 = in->n;
    if (fmt == KILN_INSTANCES_NPY) {
        if ((st = read_npy(in, path, name, spec))) truncate_to(in, n0);
        return st;
    }
    void *buf = NULL;
    size_t len = 0;
    st = kiln_file_read_all(is_stdin ? "/dev/stdin" : path, &buf, &len, KILN_INSTANCES_MAX_FILE);
    if (st) {
        if (is_stdin) kiln_error_prefix("stdin");
        return st;
    }
    if (fmt == KILN_INSTANCES_UNKNOWN && !is_stdin && len &&
        kiln_instances_format_of_data(buf, len) == KILN_INSTANCES_NPY) {
        kiln_free(buf);
        if ((st = read_npy(in, path, name, spec))) truncate_to(in, n0);
        return st;
    }
    if ((st = read_data(in, name, buf, len, fmt, spec))) truncate_to(in, n0);
    kiln_free(buf);
    return st;
}

kiln_status kiln_instances_parse_line(const char *line, size_t len, const kiln_instances_spec *spec,
                                      float *x) {
    const char *s = line, *e = line + len;
    while (s < e && (blank(*s) || *s == '\r' || *s == '\n')) s++;
    while (e > s && (blank(e[-1]) || e[-1] == '\r' || e[-1] == '\n')) e--;
    if (s == e) return kiln_error(KILN_ERR_FORMAT, "empty line");
    int64_t rs = kiln_shape_numel(&spec->row);
    if (*s == '[' || *s == '{') {
        kiln_tj_tensor t;
        int64_t n = 0;
        kiln_status st = json_instances(s, (size_t)(e - s), spec, 1, &t, &n);
        if (!st) memcpy(x, t.data, (size_t)rs * sizeof *x);
        tj_tensor_free(&t);
        return st == KILN_ERR_NOMEM ? st : st ? KILN_ERR_FORMAT : KILN_OK;
    }
    int64_t got, bad;
    num_result why = NUM_OK;
    const char *bs = NULL;
    size_t bn = 0;
    csv_fields(s, e, x, rs, &got, &bad, &why, &bs, &bn);
    if (bad || got != rs) return csv_line_error(got, bad, why, bs, bn, &spec->row);
    return KILN_OK;
}

/* tfrecord_source.c — TFRecord shards of tf.train.Example records as a data source (see
 * kiln_data_load_tfrecord in kiln/data.h and docs/data.md "tfrecord").
 *
 * Design: an index, then random access. Opening the source reads every shard once, in order,
 * checking both checksums of every record and the features the spec names, and keeps for each
 * record only where it is (offset, length, its index in the shard: 16 bytes) plus its label (4
 * bytes a class). A row is then read on demand with one pread of its framed record, whose
 * checksums are checked again, parsed and decoded. So the dataset is random-access like every
 * other source: the loader's seeded permutation shuffles across all shards (a perfect shuffle,
 * not a buffer), the split, exact resume and any number of reader threads work unchanged.
 *
 * Compressed shards (GZIP, ZLIB) have no random access. While indexing, their records are
 * decompressed once into one temporary file (created in tmp_dir and unlinked at once, so
 * nothing is left behind whatever happens to the process), framed as plain TFRecords, and rows
 * point into it. Disk use is the decompressed size; memory stays the index.
 *
 * Threads: read() may run on many threads at once. pread on a shared descriptor is thread-safe;
 * each call borrows a worker (a record buffer, a parsed-Example arena, an image decoder) from a
 * mutex-guarded pool, as the image source does with its decoders, and works outside the lock.
 * Shards past KEEP_FDS are opened per read (so thousands of shards do not exhaust descriptors).
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "kiln/tfexample.h"
#include "kiln/tfrecord.h"

#define KEEP_FDS  256
#define CACHE_BUF ((size_t)1 << 20)

typedef struct {
    char *path;
    int fd;        /* open descriptor (plain shards among the first KEEP_FDS), or -1 */
    int cached;    /* its records are in the decompressed copy */
    int64_t first; /* its first row */
} shard;

typedef struct {
    unsigned char *buf;
    size_t cap;
    kiln_example *ex;
    kiln_image_decoder *dec;
} worker;

typedef struct {
    shard *shards;
    int nshards;
    int cache_fd; /* the decompressed copy, or -1 */
    int64_t rows;
    int64_t *off;  /* [rows] framed record's offset (in the shard, or in the copy) */
    uint32_t *len; /* [rows] data bytes */
    uint32_t *rec; /* [rows] the record's index in its shard (for messages) */
    /* what a row is made of */
    kiln_tfrecord_feature *feat; /* [nfeat] (keys copied) */
    int nfeat;
    int64_t *numel; /* [nfeat] values each contributes */
    kiln_image_spec spec;
    kiln_dtype x_dtype;
    int64_t x_numel;
    pthread_mutex_t mu;
    worker **idle;
    int n_idle, cap_idle;
} tfr_src;

/* ---- the files a pattern names ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_regular(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

void kiln_data_free_files(char **files, int n) {
    for (int i = 0; files && i < n; i++) free(files[i]);
    free(files);
}

/* glob's error callback: a folder that is not there matches nothing; one that cannot be read
 * stops the listing (so a permission problem is not mistaken for "no files"). */
static int glob_err(const char *path, int err) {
    (void)path;
    return err != ENOENT && err != ENOTDIR;
}

kiln_status kiln_data_glob(const char *pattern, char ***files, int *n) {
    *files = NULL, *n = 0;
    if (!pattern || !*pattern) return kiln_error(KILN_ERR_INVALID, "no file name or pattern");
    struct stat sb;
    char pat[PATH_MAX];
    /* a folder: every file in it */
    if (!strpbrk(pattern, "*?[") && stat(pattern, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        int len = (int)strlen(pattern);
        while (len > 1 && pattern[len - 1] == '/') len--;
        if (snprintf(pat, sizeof pat, "%.*s/[!.]*", len, pattern) >= (int)sizeof pat)
            return kiln_error(KILN_ERR_INVALID, "%s: path too long", pattern);
        pattern = pat;
    }
    glob_t g;
    int rc = glob(pattern, 0, glob_err, &g);
    if (rc == GLOB_NOMATCH)
        return kiln_error(KILN_ERR_NOTFOUND, "%s: no such file (or no file matches)", pattern);
    if (rc != 0) {
        globfree(&g);
        return kiln_error(rc == GLOB_NOSPACE ? KILN_ERR_NOMEM : KILN_ERR_IO,
                          "%s: cannot list the matching files%s", pattern,
                          rc == GLOB_NOSPACE ? " (out of memory)" : " (a folder is unreadable)");
    }
    char **v = calloc(g.gl_pathc ? g.gl_pathc : 1, sizeof *v);
    int k = 0, fail = !v;
    for (size_t i = 0; !fail && i < g.gl_pathc && k < INT_MAX; i++)
        if (is_regular(g.gl_pathv[i]) && !(fail = !(v[k] = strdup(g.gl_pathv[i])))) k++;
    globfree(&g);
    if (fail) {
        kiln_data_free_files(v, k);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", pattern);
    }
    if (k == 0) {
        free(v);
        return kiln_error(KILN_ERR_NOTFOUND, "%s: matches no regular file", pattern);
    }
    qsort(v, (size_t)k, sizeof *v, cmp_str);
    *files = v, *n = k;
    return KILN_OK;
}

/* ---- checking a record against the spec ---- */

/* The type a decode wants from the Example. */
static kiln_feat_kind wants(kiln_tfr_decode d) {
    return d == KILN_TFR_FLOAT   ? KILN_FEAT_FLOAT
           : d == KILN_TFR_INT64 ? KILN_FEAT_INT64
                                 : KILN_FEAT_BYTES;
}

static const char *decode_name(kiln_tfr_decode d) {
    return d == KILN_TFR_IMAGE   ? "an encoded image (bytes)"
           : d == KILN_TFR_RAW   ? "raw bytes"
           : d == KILN_TFR_FLOAT ? "float"
                                 : "int64";
}

/* Feature i of the spec in ex: found and of the right kind and size (numel[i] 0: any, the
 * first record decides). Errors say what, not where (the caller prefixes the record). */
static kiln_status check_feature(const kiln_tfrecord_feature *sp, int64_t *numel,
                                 const kiln_example *ex, kiln_feature *f) {
    if (!kiln_example_find(ex, sp->key, f))
        return kiln_error(KILN_ERR_FORMAT, "feature '%s' is missing", sp->key);
    if (f->kind != wants(sp->decode))
        return kiln_error(KILN_ERR_FORMAT, "feature '%s' is a %s list, but the spec wants %s",
                          sp->key, kiln_feat_kind_name(f->kind), decode_name(sp->decode));
    int64_t have = (int64_t)f->n;
    if (f->kind == KILN_FEAT_BYTES) {
        if (f->n != 1)
            return kiln_error(KILN_ERR_FORMAT, "feature '%s' holds %zu byte strings (expected 1)",
                              sp->key, f->n);
        if (sp->decode == KILN_TFR_IMAGE) return KILN_OK;
        size_t bl;
        kiln_feature_bytes(f, 0, &bl);
        have = (int64_t)bl;
    }
    if (*numel == 0 && have > 0) *numel = have;
    if (have != *numel)
        return kiln_error(KILN_ERR_FORMAT, "feature '%s' has %lld values (expected %lld)", sp->key,
                          (long long)have, (long long)*numel);
    return KILN_OK;
}

/* Writes the row's features into x (x_dtype) from ex, already checked. */
static kiln_status fill_row(tfr_src *s, worker *w, const kiln_example *ex, const char *name,
                            void *x) {
    int64_t at = 0;
    for (int i = 0; i < s->nfeat; i++) {
        const kiln_tfrecord_feature *sp = &s->feat[i];
        kiln_feature f;
        int64_t want = s->numel[i]; /* fixed by the index (a copy: never written here) */
        kiln_status st = check_feature(sp, &want, ex, &f);
        if (st) {
            kiln_error_prefix("%s", name);
            return st;
        }
        if (sp->decode == KILN_TFR_IMAGE) {
            size_t bl;
            const uint8_t *b = kiln_feature_bytes(&f, 0, &bl);
            if (!w->dec && (st = kiln_image_decoder_new(&w->dec))) return st;
            return kiln_image_process(w->dec, b, bl, name, &s->spec, x);
        }
        int64_t n = s->numel[i];
        float *xf = (float *)x + at;
        if (sp->decode == KILN_TFR_RAW) {
            size_t bl;
            const uint8_t *b = kiln_feature_bytes(&f, 0, &bl);
            if (s->x_dtype == KILN_U8)
                memcpy((uint8_t *)x + at, b, (size_t)n);
            else
                for (int64_t j = 0; j < n; j++) xf[j] = b[j];
        } else if (sp->decode == KILN_TFR_FLOAT) {
            memcpy(xf, f.f, (size_t)n * sizeof *xf);
        } else {
            for (int64_t j = 0; j < n; j++) xf[j] = (float)f.i[j];
        }
        at += n;
    }
    return KILN_OK;
}

/* ---- the source's operations ---- */

static void worker_free(worker *w) {
    if (!w) return;
    free(w->buf);
    kiln_example_free(w->ex);
    kiln_image_decoder_free(w->dec);
    free(w);
}

static worker *take_worker(tfr_src *s) {
    worker *w = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->n_idle) w = s->idle[--s->n_idle];
    pthread_mutex_unlock(&s->mu);
    if (w) return w;
    if (!(w = calloc(1, sizeof *w)) || kiln_example_new(&w->ex)) {
        free(w);
        kiln_error(KILN_ERR_NOMEM, "tfrecord: out of memory");
        return NULL;
    }
    return w;
}

static void give_worker(tfr_src *s, worker *w) {
    pthread_mutex_lock(&s->mu);
    if (s->n_idle == s->cap_idle) {
        int c = s->cap_idle ? s->cap_idle * 2 : 8;
        worker **p = realloc(s->idle, (size_t)c * sizeof *p);
        if (p) s->idle = p, s->cap_idle = c;
    }
    if (s->n_idle < s->cap_idle) s->idle[s->n_idle++] = w, w = NULL;
    pthread_mutex_unlock(&s->mu);
    worker_free(w); /* only when the pool could not grow */
}

static int shard_of(const tfr_src *s, int64_t r) {
    int lo = 0, hi = s->nshards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (s->shards[mid].first <= r)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static kiln_status src_read(void *ctx, int64_t r, void *x) {
    tfr_src *s = ctx;
    const shard *sh = &s->shards[shard_of(s, r)];
    char name[PATH_MAX + 64];
    snprintf(name, sizeof name, "%s: record %u", sh->path, s->rec[r]);
    worker *w = take_worker(s);
    if (!w) return KILN_ERR_NOMEM;
    kiln_status st = KILN_OK;
    size_t need = (size_t)s->len[r] + KILN_TFRECORD_HEADER + KILN_TFRECORD_FOOTER;
    if (need > w->cap) {
        unsigned char *b = realloc(w->buf, need);
        if (!b)
            st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %zu bytes", name, need);
        else
            w->buf = b, w->cap = need;
    }
    int fd = sh->cached ? s->cache_fd : sh->fd, own = 0;
    if (!st && fd < 0) {
        if ((fd = open(sh->path, O_RDONLY | O_CLOEXEC)) < 0)
            st = kiln_error(KILN_ERR_IO, "%s: cannot open: %s", sh->path, strerror(errno));
        own = 1;
    }
    const void *data = NULL;
    if (!st) {
        char where[PATH_MAX + 96];
        snprintf(where, sizeof where, "%s%s", name,
                 sh->cached ? " (in the decompressed copy)" : "");
        st = kiln_tfrecord_read_at(fd, s->off[r], s->len[r], w->buf, where, &data);
    }
    if (own && fd >= 0) close(fd);
    if (!st && (st = kiln_example_parse(w->ex, data, s->len[r]))) kiln_error_prefix("%s", name);
    if (!st) st = fill_row(s, w, w->ex, name, x);
    give_worker(s, w);
    return st;
}

static const char *src_name(void *ctx, int64_t r) {
    tfr_src *s = ctx;
    return r >= 0 && r < s->rows ? s->shards[shard_of(s, r)].path : NULL;
}

static void src_close(void *ctx) {
    tfr_src *s = ctx;
    if (!s) return;
    for (int i = 0; i < s->nshards; i++) {
        if (s->shards[i].fd >= 0) close(s->shards[i].fd);
        free(s->shards[i].path);
    }
    free(s->shards);
    if (s->cache_fd >= 0) close(s->cache_fd);
    free(s->off), free(s->len), free(s->rec);
    for (int i = 0; i < s->nfeat; i++) free((char *)s->feat[i].key);
    free(s->feat), free(s->numel);
    for (int i = 0; i < s->n_idle; i++) worker_free(s->idle[i]);
    free(s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const kiln_source_ops TFRECORD_OPS = {"tfrecord", src_read, src_name, src_close};

/* ---- indexing ---- */

typedef struct {
    const kiln_tfrecord_source_options *o;
    tfr_src *s;
    int64_t cap;   /* of off, len, rec, y */
    int32_t *y;    /* class ids */
    float *yf;     /* float targets [cap, width] */
    int64_t width; /* float label width (0: not known yet) */
    char **names;  /* [nnames] class names seen (text_key) */
    int nnames;
    unsigned char *cbuf; /* the decompressed copy's write buffer */
    size_t cused;
    int64_t cend; /* bytes in the copy (written or buffered) */
    kiln_tfrecord_source_result *res;
} indexer;

static kiln_status grow_rows(indexer *ix) {
    tfr_src *s = ix->s;
    if (s->rows < ix->cap) return KILN_OK;
    int64_t c = ix->cap ? ix->cap * 2 : 4096;
    int64_t *off = realloc(s->off, (size_t)c * sizeof *off);
    if (off) s->off = off;
    uint32_t *len = off ? realloc(s->len, (size_t)c * sizeof *len) : NULL;
    if (len) s->len = len;
    uint32_t *rec = len ? realloc(s->rec, (size_t)c * sizeof *rec) : NULL;
    if (rec) s->rec = rec;
    int ok = rec != NULL;
    if (ok && ix->o->label_kind == KILN_LABEL_CLASS) {
        int32_t *y = realloc(ix->y, (size_t)c * sizeof *y);
        if (y) ix->y = y;
        ok = y != NULL;
    } else if (ok && ix->o->label_kind == KILN_LABEL_FLOAT && ix->width > 0) {
        float *y = realloc(ix->yf, (size_t)c * (size_t)ix->width * sizeof *y);
        if (y) ix->yf = y;
        ok = y != NULL;
    }
    if (!ok) return kiln_error(KILN_ERR_NOMEM, "tfrecord: out of memory for the index");
    ix->cap = c;
    return KILN_OK;
}

static kiln_status cache_flush(indexer *ix) {
    size_t done = 0;
    while (done < ix->cused) {
        ssize_t w = write(ix->s->cache_fd, ix->cbuf + done, ix->cused - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int e = errno;
            return kiln_error(KILN_ERR_IO,
                              "tfrecord: cannot write the decompressed copy of the compressed "
                              "shards in %s: %s (set TMPDIR to a folder with room)",
                              ix->o->tmp_dir ? ix->o->tmp_dir : "the temporary folder",
                              e == ENOSPC ? "disk full" : strerror(e));
        }
        done += (size_t)w;
    }
    ix->cused = 0;
    return KILN_OK;
}

/* Appends a framed record to the decompressed copy; *at gets its offset there. */
static kiln_status cache_add(indexer *ix, const void *data, size_t len, int64_t *at) {
    tfr_src *s = ix->s;
    if (s->cache_fd < 0) {
        const char *dir = ix->o->tmp_dir;
        if (!dir || !*dir) dir = getenv("TMPDIR");
        if (!dir || !*dir) dir = "/tmp";
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/kiln-tfrecord-XXXXXX", dir);
        int fd = mkostemp(p, O_CLOEXEC);
        if (fd < 0)
            return kiln_error(KILN_ERR_IO,
                              "tfrecord: cannot create the decompressed copy of the compressed "
                              "shards in %s: %s",
                              dir, strerror(errno));
        unlink(p);
        s->cache_fd = fd;
        if (!ix->cbuf && !(ix->cbuf = malloc(CACHE_BUF)))
            return kiln_error(KILN_ERR_NOMEM, "tfrecord: out of memory");
    }
    unsigned char h[KILN_TFRECORD_HEADER], f[KILN_TFRECORD_FOOTER];
    kiln_tfrecord_frame(data, len, h, f);
    const void *parts[3] = {h, data, f};
    size_t lens[3] = {sizeof h, len, sizeof f};
    *at = ix->cend;
    for (int i = 0; i < 3; i++) {
        const unsigned char *p = parts[i];
        size_t n = lens[i];
        while (n) {
            if (ix->cused == CACHE_BUF) {
                kiln_status st = cache_flush(ix);
                if (st) return st;
            }
            size_t k = CACHE_BUF - ix->cused < n ? CACHE_BUF - ix->cused : n;
            memcpy(ix->cbuf + ix->cused, p, k);
            ix->cused += k, p += k, n -= k;
        }
        ix->cend += (int64_t)lens[i];
    }
    return KILN_OK;
}

/* The label (and class name) of a record: checked, into the index at row. */
static kiln_status take_label(indexer *ix, const kiln_example *ex, int64_t row) {
    const kiln_tfrecord_source_options *o = ix->o;
    if (o->label_kind == KILN_LABEL_NONE) return KILN_OK;
    kiln_feature f;
    if (!kiln_example_find(ex, o->label_key, &f))
        return kiln_error(KILN_ERR_FORMAT, "the label feature '%s' is missing", o->label_key);
    if (o->label_kind == KILN_LABEL_CLASS) {
        if (f.kind != KILN_FEAT_INT64 || f.n != 1)
            return kiln_error(KILN_ERR_FORMAT,
                              "the label feature '%s' is a %s list of %zu values, but a class "
                              "label is one int64",
                              o->label_key, kiln_feat_kind_name(f.kind), f.n);
        int64_t id = f.i[0];
        int limit = o->num_classes ? o->num_classes : KILN_DATA_MAX_CLASSES;
        if (id < 0 || id >= limit)
            return kiln_error(KILN_ERR_FORMAT, "class label %lld is out of range [0, %d)",
                              (long long)id, limit);
        ix->y[row] = (int32_t)id;
        kiln_feature t;
        size_t tl;
        const uint8_t *tb;
        if (o->text_key && kiln_example_find(ex, o->text_key, &t) && t.kind == KILN_FEAT_BYTES &&
            t.n >= 1 && (tb = kiln_feature_bytes(&t, 0, &tl)) && tl < 4096) {
            if (id >= ix->nnames) {
                char **nn = realloc(ix->names, (size_t)(id + 1) * sizeof *nn);
                if (!nn) return kiln_error(KILN_ERR_NOMEM, "tfrecord: out of memory");
                for (int64_t k = ix->nnames; k <= id; k++) nn[k] = NULL;
                ix->names = nn, ix->nnames = (int)id + 1;
            }
            char *have = ix->names[id];
            if (!have) {
                if (!(have = malloc(tl + 1))) return kiln_error(KILN_ERR_NOMEM, "out of memory");
                memcpy(have, tb, tl), have[tl] = 0;
                ix->names[id] = have;
            } else if (strlen(have) != tl || memcmp(have, tb, tl)) {
                return kiln_error(KILN_ERR_FORMAT,
                                  "class %lld is named '%.*s' (%s) here, but '%s' in an earlier "
                                  "record",
                                  (long long)id, (int)(tl > 200 ? 200 : tl), tb, o->text_key, have);
            }
        }
        return KILN_OK;
    }
    if (f.kind != KILN_FEAT_FLOAT && f.kind != KILN_FEAT_INT64)
        return kiln_error(KILN_ERR_FORMAT,
                          "the label feature '%s' is a %s list, but a regression target is float "
                          "(or int64)",
                          o->label_key, kiln_feat_kind_name(f.kind));
    if (ix->width == 0) {
        if (f.n == 0)
            return kiln_error(KILN_ERR_FORMAT, "the label feature '%s' is empty", o->label_key);
        ix->width = (int64_t)f.n;
        float *y = malloc((size_t)ix->cap * (size_t)ix->width * sizeof *y);
        if (!y) return kiln_error(KILN_ERR_NOMEM, "tfrecord: out of memory");
        ix->yf = y;
    }
    if ((int64_t)f.n != ix->width)
        return kiln_error(KILN_ERR_FORMAT, "the label feature '%s' has %zu values (expected %lld)",
                          o->label_key, f.n, (long long)ix->width);
    float *y = ix->yf + row * ix->width;
    for (int64_t k = 0; k < ix->width; k++)
        y[k] = f.kind == KILN_FEAT_FLOAT ? f.f[k] : (float)f.i[k];
    return KILN_OK;
}

/* A bad record: an error, or (skip_bad) counted with its message. */
static kiln_status bad_record(indexer *ix, kiln_status st, const char *extra) {
    if (!ix->o->skip_bad || (st != KILN_ERR_FORMAT && st != KILN_ERR_IO)) return st;
    kiln_tfrecord_source_result *res = ix->res;
    if (res->skipped++ == 0)
        snprintf(res->first, sizeof res->first, "%s%s", kiln_last_error(), extra);
    kiln_error_clear();
    return KILN_OK;
}

static kiln_status index_shard(indexer *ix, int si, kiln_example *ex) {
    tfr_src *s = ix->s;
    shard *sh = &s->shards[si];
    kiln_tfrecord_reader *r;
    kiln_status st = kiln_tfrecord_open_compressed(sh->path, ix->o->compression, 0, &r);
    if (st) return st == KILN_ERR_NOTFOUND ? KILN_ERR_IO : st;
    sh->cached = kiln_tfrecord_reader_compression(r) != KILN_TFRECORD_NONE;
    if (!sh->cached && si < KEEP_FDS && (sh->fd = open(sh->path, O_RDONLY | O_CLOEXEC)) < 0)
        st = kiln_error(KILN_ERR_IO, "%s: cannot open: %s", sh->path, strerror(errno));
    sh->first = s->rows;
    ix->res->files++;
    int64_t rec = 0;
    while (!st) {
        int64_t at = kiln_tfrecord_offset(r);
        const void *data;
        size_t len;
        kiln_status rs = kiln_tfrecord_next(r, &data, &len);
        if (rs == KILN_ERR_NOTFOUND) break;
        if (rs) { /* the reader's message names the file and the offset */
            if (kiln_tfrecord_skip_damaged(r)) {
                st = bad_record(ix, rs, "");
                rec++;
                continue;
            }
            st = bad_record(ix, rs, " (the rest of that file is left out)");
            break;
        }
        ix->res->records++;
        if (len > UINT32_MAX) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: record %lld: %zu bytes (at most %u)", sh->path,
                            (long long)rec, len, UINT32_MAX);
            break;
        }
        char where[PATH_MAX + 96];
        if (sh->cached)
            snprintf(where, sizeof where, "%s: record %lld", sh->path, (long long)rec);
        else
            snprintf(where, sizeof where, "%s: record %lld (offset %lld)", sh->path, (long long)rec,
                     (long long)at);
        if ((st = grow_rows(ix))) break;
        kiln_status fs = kiln_example_parse(ex, data, len);
        for (int i = 0; !fs && i < s->nfeat; i++) {
            kiln_feature f;
            fs = check_feature(&s->feat[i], &s->numel[i], ex, &f);
        }
        if (!fs) fs = take_label(ix, ex, s->rows);
        if (fs) {
            kiln_error_prefix("%s", where);
            st = bad_record(ix, fs, "");
            rec++;
            continue;
        }
        int64_t off = at;
        if (sh->cached && (st = cache_add(ix, data, len, &off))) break;
        s->off[s->rows] = off, s->len[s->rows] = (uint32_t)len, s->rec[s->rows] = (uint32_t)rec;
        s->rows++, rec++;
        if (s->rows > (int64_t)UINT32_MAX) {
            st = kiln_error(KILN_ERR_FORMAT, "tfrecord: more than %u records", UINT32_MAX);
            break;
        }
    }
    kiln_tfrecord_close(r);
    return st;
}

kiln_status kiln_data_load_tfrecord(const kiln_tfrecord_source_options *o, kiln_dataset **out,
                                    kiln_tfrecord_source_result *res) {
    *out = NULL;
    kiln_tfrecord_source_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    if (!o || o->num_files < 1 || o->num_features < 1)
        return kiln_error(KILN_ERR_INVALID, "tfrecord: give files and at least one feature");
    int images = 0;
    for (int i = 0; i < o->num_features; i++) images += o->features[i].decode == KILN_TFR_IMAGE;
    if (images && o->num_features > 1)
        return kiln_error(KILN_ERR_INVALID,
                          "tfrecord: an image feature must be the only input feature");
    if (o->label_kind != KILN_LABEL_NONE && !o->label_key)
        return kiln_error(KILN_ERR_INVALID, "tfrecord: labels need a label feature key");
    kiln_status st;
    if (images && (st = kiln_image_spec_check(&o->spec))) return st;
    tfr_src *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "tfrecord: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    s->cache_fd = -1;
    s->spec = o->spec;
    s->feat = calloc((size_t)o->num_features, sizeof *s->feat);
    s->numel = calloc((size_t)o->num_features, sizeof *s->numel);
    s->shards = calloc((size_t)o->num_files, sizeof *s->shards);
    int fail = !s->feat || !s->numel || !s->shards;
    for (int i = 0; !fail && i < o->num_features; i++) {
        s->feat[i] = o->features[i];
        fail = !(s->feat[i].key = strdup(o->features[i].key ? o->features[i].key : ""));
        s->nfeat = i + 1;
        s->numel[i] = o->features[i].numel;
    }
    for (int i = 0; !fail && i < o->num_files; i++) {
        s->shards[i].fd = -1;
        fail = !(s->shards[i].path = strdup(o->files[i]));
        s->nshards = i + 1;
    }
    if (fail) {
        src_close(s);
        return kiln_error(KILN_ERR_NOMEM, "tfrecord: out of memory");
    }
    indexer ix = {.o = o, .s = s, .res = res};
    kiln_example *ex = NULL;
    st = kiln_example_new(&ex);
    for (int i = 0; !st && i < s->nshards; i++) st = index_shard(&ix, i, ex);
    kiln_example_free(ex);
    if (!st && ix.cused) st = cache_flush(&ix);
    free(ix.cbuf);
    if (!st && s->rows == 0)
        st = kiln_error(KILN_ERR_FORMAT, "%s%s: no %srecords", o->files[0],
                        o->num_files > 1 ? " (and the other files)" : "",
                        res->skipped ? "readable " : "");
    /* the row: one image, or features one after the other */
    int64_t numel = 0;
    for (int i = 0; i < s->nfeat; i++) numel += s->numel[i];
    kiln_shape shape;
    if (images) {
        s->x_dtype = KILN_U8;
        shape =
            kiln_shape_make(3, (const int64_t[]){o->spec.channels, o->spec.out_h, o->spec.out_w});
    } else {
        s->x_dtype = s->nfeat == 1 && s->feat[0].decode == KILN_TFR_RAW ? KILN_U8 : KILN_F32;
        shape = kiln_shape_make(1, (const int64_t[]){numel});
        if (s->nfeat == 1 && o->features[0].shape.ndim > 0) shape = o->features[0].shape;
        if (!st && kiln_shape_numel(&shape) != numel) {
            char b[96];
            st = kiln_error(KILN_ERR_FORMAT,
                            "%s: feature '%s' has %lld values, but its shape %s "
                            "holds %lld",
                            o->files[0], s->feat[0].key, (long long)numel,
                            kiln_shape_str(&shape, b, sizeof b),
                            (long long)kiln_shape_numel(&shape));
        }
    }
    if (st) {
        free(ix.y), free(ix.yf);
        for (int i = 0; i < ix.nnames; i++) free(ix.names[i]);
        free(ix.names);
        src_close(s);
        return st;
    }
    s->x_numel = numel;
    /* class names: every id up to the largest gets one (its number when no record named it) */
    int nclass = o->num_classes;
    if (o->label_kind == KILN_LABEL_CLASS && !nclass)
        for (int64_t i = 0; i < s->rows; i++) nclass = ix.y[i] + 1 > nclass ? ix.y[i] + 1 : nclass;
    char **names = NULL;
    int given = o->class_names && o->label_kind == KILN_LABEL_CLASS ? o->num_class_names : 0;
    if (given > nclass && !o->num_classes) nclass = given;
    if ((ix.nnames || given) && o->label_kind == KILN_LABEL_CLASS) {
        names = calloc((size_t)nclass, sizeof *names);
        for (int i = 0; names && i < nclass; i++) {
            char num[16];
            snprintf(num, sizeof num, "%d", i);
            const char *nm = i < given && o->class_names[i] ? o->class_names[i]
                             : i < ix.nnames && ix.names[i] ? ix.names[i]
                                                            : num;
            names[i] = strdup(nm);
        }
    }
    for (int i = 0; i < ix.nnames; i++) free(ix.names[i]);
    free(ix.names);
    kiln_source_desc d = {
        .rows = s->rows,
        .x_dtype = s->x_dtype,
        .x_shape = shape,
        .y_kind = o->label_kind,
        .y_width = o->label_kind == KILN_LABEL_FLOAT ? ix.width : 1,
        .y = o->label_kind == KILN_LABEL_CLASS ? (const void *)ix.y : ix.yf,
        .num_classes = o->label_kind == KILN_LABEL_CLASS ? nclass : 0,
        .class_names = (const char *const *)names,
        .ops = &TFRECORD_OPS,
        .ctx = s,
        .cache_bytes = o->cache_bytes,
    };
    res->rows = s->rows;
    res->compressed = s->cache_fd >= 0;
    st = kiln_dataset_from_source(&d, out); /* closes s on failure */
    free(ix.y), free(ix.yf);
    for (int i = 0; names && i < nclass; i++) free(names[i]);
    free(names);
    return st;
}

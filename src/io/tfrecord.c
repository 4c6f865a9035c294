/* tfrecord.c — TFRecord framing, plain or compressed, see kiln/tfrecord.h.
 *
 * The reader pulls bytes from one of two inputs, a FILE (buffered by stdio) or a memory span,
 * through take(): it copies exactly n bytes or reports how many there were. A compressed
 * reader puts zlib's inflate between the input and take(): compressed bytes come in chunks of
 * ZCHUNK through raw_take() and are inflated straight into the caller's buffer. Each record is
 * read into one growing buffer (data and footer together), which is kept for the next record,
 * so a file of many small records allocates once. An error is sticky: status and message are
 * kept and returned again by every later call (kiln_tfrecord_skip_damaged lifts the one error
 * that leaves the framing intact: a data checksum).
 *
 * Invariants: offset is the (decompressed) offset of the next record to read, or of the record
 * that failed; zerr is set by take() when the compressed stream itself is corrupt (take then
 * returns short), and zdone once a stream has ended with its checksum checked.
 *
 * The writer frames each record into a buffer of WBUF bytes; a full buffer goes to the atomic
 * file as it is (plain) or through deflate (compressed).
 */
#include "kiln/tfrecord.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include "kiln/crc32c.h"
#include "kiln/fileio.h"

#define DEFAULT_MAX ((size_t)1 << 30)
#define ZCHUNK      ((size_t)1 << 16)
#define WBUF        ((size_t)1 << 18)

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)p[i] << (8 * i);
    return n;
}

void kiln_tfrecord_frame(const void *data, size_t len, unsigned char header[KILN_TFRECORD_HEADER],
                         unsigned char footer[KILN_TFRECORD_FOOTER]) {
    uint64_t n = len;
    for (int i = 0; i < 8; i++) header[i] = (unsigned char)(n >> (8 * i));
    put_u32(header + 8, kiln_crc32c_mask(kiln_crc32c(header, 8)));
    put_u32(footer, kiln_crc32c_mask(kiln_crc32c(data, len)));
}

kiln_status kiln_tfrecord_write(int fd, const void *data, size_t len, const char *what) {
    unsigned char head[KILN_TFRECORD_HEADER], foot[KILN_TFRECORD_FOOTER];
    kiln_tfrecord_frame(data, len, head, foot);
    struct iovec iov[3] = {{head, sizeof head}, {(void *)data, len}, {foot, sizeof foot}};
    struct iovec *v = iov;
    int nv = 3;
    while (nv > 0) {
        ssize_t w = writev(fd, v, nv);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            return kiln_error(KILN_ERR_IO, "%s: %s", what,
                              e == ENOSPC || e == EDQUOT ? "disk full" : strerror(e));
        }
        size_t done = (size_t)w;
        while (nv > 0 && done >= v->iov_len) done -= v->iov_len, v++, nv--;
        if (nv > 0) v->iov_base = (char *)v->iov_base + done, v->iov_len -= done;
    }
    return KILN_OK;
}

/* ---- compression names and detection ---- */

static const char *const COMP_NAMES[] = {"none", "gzip", "zlib", "auto"};

const char *kiln_tfrecord_compression_name(kiln_tfrecord_compression c) {
    return (unsigned)c < 4 ? COMP_NAMES[c] : "?";
}

int kiln_tfrecord_compression_parse(const char *s, kiln_tfrecord_compression *c) {
    if (!s) return -1;
    if (!s[0]) {
        *c = KILN_TFRECORD_NONE;
        return 0;
    }
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, COMP_NAMES[i])) {
            *c = (kiln_tfrecord_compression)i;
            return 0;
        }
    return -1;
}

kiln_tfrecord_compression kiln_tfrecord_detect(const void *head, size_t n) {
    const unsigned char *p = head;
    if (n >= KILN_TFRECORD_HEADER && kiln_crc32c_mask(kiln_crc32c(p, 8)) == get_u32(p + 8))
        return KILN_TFRECORD_NONE;
    if (n >= 3 && p[0] == 0x1f && p[1] == 0x8b && p[2] == 8) return KILN_TFRECORD_GZIP;
    if (n >= 2 && (p[0] & 0x0f) == 8 && (p[0] >> 4) <= 7 && ((p[0] << 8) | p[1]) % 31 == 0)
        return KILN_TFRECORD_ZLIB;
    return KILN_TFRECORD_NONE;
}

/* ---- reading ---- */

struct kiln_tfrecord_reader {
    FILE *f;                  /* file input, or NULL */
    const unsigned char *mem; /* memory input */
    size_t mem_len, mem_pos;
    char *name;
    size_t max;
    unsigned char *buf; /* [cap]: the current record's data and footer */
    size_t cap;
    int64_t offset;  /* of the next record (in the decompressed stream) */
    kiln_status err; /* sticky */
    char *err_msg;
    int truncated;
    int skippable;   /* the error was a data checksum: the framing is intact */
    int64_t skip_to; /* then: where the next record starts */
    kiln_tfrecord_compression comp;
    /* compressed input */
    z_stream zs;
    int zinit;          /* zs was initialized (inflateEnd needed) */
    unsigned char *zin; /* [ZCHUNK] compressed bytes not yet inflated: zs.next_in */
    int zdone;          /* the stream ended, checksum checked */
    int zeof;           /* the raw input has no more bytes */
    int64_t zin_total;  /* compressed bytes taken from the input */
    char zmsg[160];     /* why the compressed stream is corrupt ("" when it is not) */
};

/* Copies up to n raw (file) bytes into dst; returns how many (< n only at the end or on a read
 * error). */
static size_t raw_take(kiln_tfrecord_reader *r, void *dst, size_t n) {
    if (r->f) return fread(dst, 1, n, r->f);
    size_t k = r->mem_len - r->mem_pos < n ? r->mem_len - r->mem_pos : n;
    if (k) memcpy(dst, r->mem + r->mem_pos, k);
    r->mem_pos += k;
    return k;
}

/* Refills zs's input when it is empty; 0 when there is nothing more. */
static int z_fill(kiln_tfrecord_reader *r) {
    if (r->zs.avail_in > 0) return 1;
    if (r->zeof) return 0;
    size_t got = raw_take(r, r->zin, ZCHUNK);
    if (got < ZCHUNK) r->zeof = 1;
    r->zs.next_in = r->zin, r->zs.avail_in = (uInt)got;
    r->zin_total += (int64_t)got;
    return got > 0;
}

/* Inflates up to n bytes into dst; returns how many. Short at the end of the data, or with
 * r->zmsg set when the compressed stream is corrupt. */
static size_t z_take(kiln_tfrecord_reader *r, unsigned char *dst, size_t n) {
    size_t done = 0;
    while (done < n && !r->zmsg[0]) {
        if (r->zdone) { /* a finished stream: another gzip member, or the end */
            if (!z_fill(r)) break;
            if (r->comp != KILN_TFRECORD_GZIP) {
                snprintf(r->zmsg, sizeof r->zmsg,
                         "unexpected bytes after the end of the zlib "
                         "stream");
                break;
            }
            inflateReset(&r->zs);
            r->zdone = 0;
        }
        if (!z_fill(r)) break; /* input ended inside the stream: truncated */
        size_t want = n - done > (size_t)1 << 30 ? (size_t)1 << 30 : n - done;
        r->zs.next_out = dst + done, r->zs.avail_out = (uInt)want;
        int z = inflate(&r->zs, Z_NO_FLUSH);
        done += want - r->zs.avail_out;
        if (z == Z_STREAM_END) {
            r->zdone = 1;
        } else if (z != Z_OK && z != Z_BUF_ERROR) {
            int64_t at = r->zin_total - (int64_t)r->zs.avail_in;
            snprintf(r->zmsg, sizeof r->zmsg, "corrupt %s data near compressed byte %lld: %s",
                     r->comp == KILN_TFRECORD_GZIP ? "gzip" : "zlib", (long long)at,
                     r->zs.msg          ? r->zs.msg
                     : z == Z_MEM_ERROR ? "out of memory"
                                        : "inflate");
        }
    }
    return done;
}

/* Copies up to n (decompressed) bytes into dst; returns how many. */
static size_t take(kiln_tfrecord_reader *r, void *dst, size_t n) {
    if (r->comp == KILN_TFRECORD_NONE) return raw_take(r, dst, n);
    return z_take(r, dst, n);
}

static kiln_status reader_new(const char *name, size_t max, kiln_tfrecord_reader **out) {
    kiln_tfrecord_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(name ? name : "tfrecord"))) {
        free(r);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", name ? name : "tfrecord");
    }
    r->max = max ? max : DEFAULT_MAX;
    *out = r;
    return KILN_OK;
}

/* Sets up decompression once the input is attached; AUTO peeks at the first bytes. */
static kiln_status reader_start(kiln_tfrecord_reader *r, kiln_tfrecord_compression c) {
    unsigned char head[KILN_TFRECORD_HEADER];
    size_t n = 0;
    if (r->f) {
        n = fread(head, 1, sizeof head, r->f);
        if (ferror(r->f))
            return kiln_error(KILN_ERR_IO, "%s: read error: %s", r->name, strerror(errno));
        rewind(r->f);
    } else {
        n = r->mem_len < sizeof head ? r->mem_len : sizeof head;
        if (n) memcpy(head, r->mem, n);
    }
    if (c == KILN_TFRECORD_AUTO) c = kiln_tfrecord_detect(head, n);
    r->comp = c;
    if (c == KILN_TFRECORD_NONE) return KILN_OK;
    if (n == 0) { /* an empty file has no records, compressed or not */
        r->zeof = 1, r->zdone = 1;
        return KILN_OK;
    }
    if (!(r->zin = malloc(ZCHUNK))) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", r->name);
    if (inflateInit2(&r->zs, c == KILN_TFRECORD_GZIP ? 15 + 16 : 15) != Z_OK)
        return kiln_error(KILN_ERR_NOMEM, "%s: cannot start inflating (out of memory)", r->name);
    r->zinit = 1;
    return KILN_OK;
}

kiln_status kiln_tfrecord_open_compressed(const char *path, kiln_tfrecord_compression c,
                                          size_t max_record, kiln_tfrecord_reader **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "%s: %s", path,
                          strerror(errno));
    kiln_tfrecord_reader *r;
    kiln_status st = reader_new(path, max_record, &r);
    if (st) {
        fclose(f);
        return st;
    }
    r->f = f;
    if ((st = reader_start(r, c))) {
        kiln_tfrecord_close(r);
        return st;
    }
    *out = r;
    return KILN_OK;
}

kiln_status kiln_tfrecord_open(const char *path, size_t max_record, kiln_tfrecord_reader **out) {
    return kiln_tfrecord_open_compressed(path, KILN_TFRECORD_NONE, max_record, out);
}

kiln_status kiln_tfrecord_open_mem_compressed(const void *data, size_t len, const char *name,
                                              kiln_tfrecord_compression c, size_t max_record,
                                              kiln_tfrecord_reader **out) {
    *out = NULL;
    kiln_tfrecord_reader *r;
    kiln_status st = reader_new(name, max_record, &r);
    if (st) return st;
    r->mem = data, r->mem_len = data ? len : 0;
    if ((st = reader_start(r, c))) {
        kiln_tfrecord_close(r);
        return st;
    }
    *out = r;
    return KILN_OK;
}

kiln_status kiln_tfrecord_open_mem(const void *data, size_t len, const char *name,
                                   size_t max_record, kiln_tfrecord_reader **out) {
    return kiln_tfrecord_open_mem_compressed(data, len, name, KILN_TFRECORD_NONE, max_record, out);
}

kiln_tfrecord_compression kiln_tfrecord_reader_compression(const kiln_tfrecord_reader *r) {
    return r->comp;
}

/* Records the error (sticky) and returns it. */
static kiln_status fail(kiln_tfrecord_reader *r, kiln_status code, int truncated, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));
static kiln_status fail(kiln_tfrecord_reader *r, kiln_status code, int truncated, const char *fmt,
                        ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    kiln_error(code, "%s: offset %lld%s: %s", r->name, (long long)r->offset,
               r->comp == KILN_TFRECORD_NONE ? "" : " (decompressed)", what);
    r->err = code, r->truncated = truncated, r->skippable = 0;
    free(r->err_msg);
    r->err_msg = strdup(kiln_last_error());
    return code;
}

/* After a short take(): the error it means. */
static kiln_status short_read(kiln_tfrecord_reader *r, const char *fmt, size_t got, size_t need) {
    if (r->f && ferror(r->f)) return fail(r, KILN_ERR_IO, 0, "read error: %s", strerror(errno));
    if (r->zmsg[0]) return fail(r, KILN_ERR_FORMAT, 0, "%s", r->zmsg);
    char what[160];
    snprintf(what, sizeof what, fmt, got, need);
    if (r->comp != KILN_TFRECORD_NONE && !r->zdone)
        return fail(r, KILN_ERR_FORMAT, 1, "%s (the %s stream is truncated)", what,
                    r->comp == KILN_TFRECORD_GZIP ? "gzip" : "zlib");
    return fail(r, KILN_ERR_FORMAT, 1, "%s", what);
}

kiln_status kiln_tfrecord_next(kiln_tfrecord_reader *r, const void **data, size_t *len) {
    *data = NULL, *len = 0;
    if (r->err) return kiln_error(r->err, "%s", r->err_msg ? r->err_msg : r->name);
    unsigned char head[KILN_TFRECORD_HEADER];
    size_t got = take(r, head, sizeof head);
    if (got == 0 && !r->zmsg[0] && !(r->f && ferror(r->f))) {
        if (r->comp != KILN_TFRECORD_NONE && !r->zdone)
            return fail(r, KILN_ERR_FORMAT, 1,
                        "the %s stream is truncated (its end and checksum are missing)",
                        r->comp == KILN_TFRECORD_GZIP ? "gzip" : "zlib");
        return KILN_ERR_NOTFOUND;
    }
    if (got < sizeof head)
        return short_read(r, "truncated record: %zu of the %zu header bytes", got, sizeof head);
    uint64_t n = get_u64(head);
    if (kiln_crc32c_mask(kiln_crc32c(head, 8)) != get_u32(head + 8))
        return fail(r, KILN_ERR_FORMAT, 0,
                    "corrupt record: the checksum of its length does not match");
    if (n > r->max)
        return fail(r, KILN_ERR_FORMAT, 0, "record of %llu bytes is larger than the %zu allowed",
                    (unsigned long long)n, r->max);
    size_t need = (size_t)n + KILN_TFRECORD_FOOTER;
    if (need > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < need) cap *= 2;
        unsigned char *b = realloc(r->buf, cap);
        if (!b)
            return fail(r, KILN_ERR_NOMEM, 0, "out of memory for a record of %llu bytes",
                        (unsigned long long)n);
        r->buf = b, r->cap = cap;
    }
    got = take(r, r->buf, need);
    if (got < need)
        return short_read(r, "truncated record: %zu of its %zu bytes after the header", got, need);
    if (kiln_crc32c_mask(kiln_crc32c(r->buf, (size_t)n)) != get_u32(r->buf + n)) {
        kiln_status st = fail(r, KILN_ERR_FORMAT, 0,
                              "corrupt record: the checksum of its %llu data bytes does not match",
                              (unsigned long long)n);
        r->skippable = 1, r->skip_to = r->offset + KILN_TFRECORD_HEADER + (int64_t)need;
        return st;
    }
    r->offset += KILN_TFRECORD_HEADER + (int64_t)need;
    *data = r->buf, *len = (size_t)n;
    return KILN_OK;
}

int kiln_tfrecord_skip_damaged(kiln_tfrecord_reader *r) {
    if (!r->err || !r->skippable) return 0;
    r->err = KILN_OK, r->skippable = 0, r->truncated = 0;
    r->offset = r->skip_to;
    return 1;
}

int64_t kiln_tfrecord_offset(const kiln_tfrecord_reader *r) {
    return r->offset;
}
int kiln_tfrecord_truncated(const kiln_tfrecord_reader *r) {
    return r->err && r->truncated;
}

void kiln_tfrecord_close(kiln_tfrecord_reader *r) {
    if (!r) return;
    if (r->f) fclose(r->f);
    if (r->zinit) inflateEnd(&r->zs);
    free(r->zin);
    free(r->buf);
    free(r->name);
    free(r->err_msg);
    free(r);
}

/* ---- random access ---- */

kiln_status kiln_tfrecord_read_at(int fd, int64_t offset, size_t len, void *buf, const char *name,
                                  const void **data) {
    *data = NULL;
    unsigned char *b = buf;
    size_t span = len + KILN_TFRECORD_HEADER + KILN_TFRECORD_FOOTER, done = 0;
    while (done < span) {
        ssize_t got = pread(fd, b + done, span - done, (off_t)(offset + (int64_t)done));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0)
            return kiln_error(KILN_ERR_IO, "%s: offset %lld: read error: %s", name,
                              (long long)offset, strerror(errno));
        if (got == 0)
            return kiln_error(KILN_ERR_FORMAT,
                              "%s: offset %lld: truncated record: the file ends after %zu of its "
                              "%zu bytes (was it changed since it was indexed?)",
                              name, (long long)offset, done, span);
        done += (size_t)got;
    }
    if (kiln_crc32c_mask(kiln_crc32c(b, 8)) != get_u32(b + 8) || get_u64(b) != len)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: offset %lld: corrupt record: its length or the length's checksum "
                          "is not what the file had when it was indexed",
                          name, (long long)offset);
    if (kiln_crc32c_mask(kiln_crc32c(b + KILN_TFRECORD_HEADER, len)) !=
        get_u32(b + KILN_TFRECORD_HEADER + len))
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: offset %lld: corrupt record: the checksum of its %zu data bytes "
                          "does not match",
                          name, (long long)offset, len);
    *data = b + KILN_TFRECORD_HEADER;
    return KILN_OK;
}

/* ---- writing whole files ---- */

struct kiln_tfrecord_writer {
    kiln_atomic_file *f;
    kiln_tfrecord_compression comp;
    z_stream zs;
    int zinit;
    unsigned char *buf; /* [WBUF] framed records not yet written (plain) or deflated */
    size_t used;
    unsigned char *zout; /* [WBUF] deflate's output */
    int64_t written;
    char *path;
};

/* Writes n bytes at p to the file, through deflate when compressed (flush: Z_NO_FLUSH or
 * Z_FINISH). */
static kiln_status w_emit(kiln_tfrecord_writer *w, const unsigned char *p, size_t n, int flush) {
    if (w->comp == KILN_TFRECORD_NONE) {
        w->written += (int64_t)n;
        return n ? kiln_atomic_write(w->f, p, n) : KILN_OK;
    }
    w->zs.next_in = (unsigned char *)p, w->zs.avail_in = (uInt)n;
    for (;;) {
        w->zs.next_out = w->zout, w->zs.avail_out = (uInt)WBUF;
        int z = deflate(&w->zs, flush);
        if (z == Z_STREAM_ERROR) return kiln_error(KILN_ERR_IO, "%s: deflate failed", w->path);
        size_t out = WBUF - w->zs.avail_out;
        if (out) {
            kiln_status st = kiln_atomic_write(w->f, w->zout, out);
            if (st) return st;
            w->written += (int64_t)out;
        }
        if (flush == Z_FINISH ? z == Z_STREAM_END : w->zs.avail_in == 0 && w->zs.avail_out > 0)
            return KILN_OK;
    }
}

kiln_status kiln_tfrecord_writer_open(const char *path, kiln_tfrecord_compression c,
                                      kiln_tfrecord_writer **out) {
    *out = NULL;
    if (c != KILN_TFRECORD_NONE && c != KILN_TFRECORD_GZIP && c != KILN_TFRECORD_ZLIB)
        return kiln_error(KILN_ERR_INVALID, "%s: a writer needs none, gzip or zlib", path);
    kiln_tfrecord_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path)) || !(w->buf = malloc(WBUF)) ||
        (c != KILN_TFRECORD_NONE && !(w->zout = malloc(WBUF)))) {
        kiln_tfrecord_writer_abort(w);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
    }
    w->comp = c;
    if (c != KILN_TFRECORD_NONE) {
        if (deflateInit2(&w->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                         c == KILN_TFRECORD_GZIP ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            kiln_tfrecord_writer_abort(w);
            return kiln_error(KILN_ERR_NOMEM, "%s: cannot start deflating (out of memory)", path);
        }
        w->zinit = 1;
    }
    kiln_status st = kiln_atomic_open(path, &w->f);
    if (st) {
        kiln_tfrecord_writer_abort(w);
        return st;
    }
    *out = w;
    return KILN_OK;
}

kiln_status kiln_tfrecord_writer_add(kiln_tfrecord_writer *w, const void *data, size_t len) {
    unsigned char head[KILN_TFRECORD_HEADER], foot[KILN_TFRECORD_FOOTER];
    kiln_tfrecord_frame(data, len, head, foot);
    const unsigned char *parts[3] = {head, data, foot};
    size_t lens[3] = {sizeof head, len, sizeof foot};
    for (int i = 0; i < 3; i++) {
        if (w->used + lens[i] > WBUF) {
            kiln_status st = w_emit(w, w->buf, w->used, Z_NO_FLUSH);
            w->used = 0;
            if (st) return st;
        }
        if (lens[i] >= WBUF) { /* a big record goes through without a copy */
            kiln_status st = w_emit(w, parts[i], lens[i], Z_NO_FLUSH);
            if (st) return st;
        } else {
            if (lens[i]) memcpy(w->buf + w->used, parts[i], lens[i]);
            w->used += lens[i];
        }
    }
    return KILN_OK;
}

int64_t kiln_tfrecord_writer_bytes(const kiln_tfrecord_writer *w) {
    return w->written;
}

kiln_status kiln_tfrecord_writer_commit(kiln_tfrecord_writer *w) {
    kiln_status st = w_emit(w, w->buf, w->used, Z_FINISH);
    w->used = 0;
    if (st) {
        kiln_tfrecord_writer_abort(w);
        return st;
    }
    st = kiln_atomic_commit(w->f);
    w->f = NULL;
    kiln_tfrecord_writer_abort(w); /* frees the rest */
    return st;
}

void kiln_tfrecord_writer_abort(kiln_tfrecord_writer *w) {
    if (!w) return;
    if (w->f) kiln_atomic_abort(w->f);
    if (w->zinit) deflateEnd(&w->zs);
    free(w->buf);
    free(w->zout);
    free(w->path);
    free(w);
}

/* tfrecord.c — TFRecord framing, see kiln/tfrecord.h.
 *
 * The reader pulls bytes from one of two sources, a FILE (buffered by stdio) or a memory span,
 * through take(): it copies exactly n bytes or reports how many there were. Each record is read
 * into one growing buffer (data and footer together), which is kept for the next record, so a
 * file of many small records allocates once. An error is sticky: status and message are kept
 * and returned again by every later call.
 */
#include "kiln/tfrecord.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "kiln/crc32c.h"

#define DEFAULT_MAX ((size_t)1 << 30)

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
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

/* ---- reading ---- */

struct kiln_tfrecord_reader {
    FILE *f;                  /* file source, or NULL */
    const unsigned char *mem; /* memory source */
    size_t mem_len, mem_pos;
    char *name;
    size_t max;
    unsigned char *buf; /* [cap]: the current record's data and footer */
    size_t cap;
    int64_t offset;  /* of the next record */
    kiln_status err; /* sticky */
    char *err_msg;
    int truncated;
};

/* Copies up to n bytes into dst; returns how many (< n only at the end or on a read error). */
static size_t take(kiln_tfrecord_reader *r, void *dst, size_t n) {
    if (r->f) return fread(dst, 1, n, r->f);
    size_t k = r->mem_len - r->mem_pos < n ? r->mem_len - r->mem_pos : n;
    if (k) memcpy(dst, r->mem + r->mem_pos, k);
    r->mem_pos += k;
    return k;
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

kiln_status kiln_tfrecord_open(const char *path, size_t max_record, kiln_tfrecord_reader **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "%s: %s", path,
                          strerror(errno));
    kiln_status st = reader_new(path, max_record, out);
    if (st) {
        fclose(f);
        return st;
    }
    (*out)->f = f;
    return KILN_OK;
}

kiln_status kiln_tfrecord_open_mem(const void *data, size_t len, const char *name,
                                   size_t max_record, kiln_tfrecord_reader **out) {
    *out = NULL;
    kiln_status st = reader_new(name, max_record, out);
    if (st) return st;
    (*out)->mem = data, (*out)->mem_len = data ? len : 0;
    return KILN_OK;
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
    kiln_error(code, "%s: offset %lld: %s", r->name, (long long)r->offset, what);
    r->err = code, r->truncated = truncated;
    free(r->err_msg);
    r->err_msg = strdup(kiln_last_error());
    return code;
}

kiln_status kiln_tfrecord_next(kiln_tfrecord_reader *r, const void **data, size_t *len) {
    *data = NULL, *len = 0;
    if (r->err) return kiln_error(r->err, "%s", r->err_msg ? r->err_msg : r->name);
    unsigned char head[KILN_TFRECORD_HEADER];
    size_t got = take(r, head, sizeof head);
    if (r->f && ferror(r->f)) return fail(r, KILN_ERR_IO, 0, "read error: %s", strerror(errno));
    if (got == 0) return KILN_ERR_NOTFOUND;
    if (got < sizeof head)
        return fail(r, KILN_ERR_FORMAT, 1, "truncated record: %zu of the %d header bytes", got,
                    KILN_TFRECORD_HEADER);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)head[i] << (8 * i);
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
    if (r->f && ferror(r->f)) return fail(r, KILN_ERR_IO, 0, "read error: %s", strerror(errno));
    if (got < need)
        return fail(r, KILN_ERR_FORMAT, 1,
                    "truncated record: %zu of its %zu bytes after the header", got, need);
    if (kiln_crc32c_mask(kiln_crc32c(r->buf, (size_t)n)) != get_u32(r->buf + n))
        return fail(r, KILN_ERR_FORMAT, 0,
                    "corrupt record: the checksum of its %llu data bytes does not match",
                    (unsigned long long)n);
    r->offset += KILN_TFRECORD_HEADER + (int64_t)need;
    *data = r->buf, *len = (size_t)n;
    return KILN_OK;
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
    free(r->buf);
    free(r->name);
    free(r->err_msg);
    free(r);
}

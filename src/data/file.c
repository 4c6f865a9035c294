/* file.c — reading dataset files, raw or gzip, with exact-size checks (see data_internal.h).
 *
 * zlib's gz* functions read both (a file without the gzip magic is copied through), so every
 * parser has one code path. We peek the magic ourselves only to say "gzip" in messages and to
 * know whether the size on disk bounds the decoded size: for a raw file it does, so a header
 * that promises more data than the file holds is refused before anything is allocated. A gzip
 * file's decoded size is only known by decoding it; callers allocate with malloc (untouched
 * pages cost nothing) and a short read fails.
 *
 * Invariant: pos counts decoded bytes consumed, so messages give offsets in the decoded data.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_internal.h"

#define CHUNK ((size_t)1 << 30) /* gzread takes an unsigned and returns an int */

kiln_status kiln_dfile_open(kiln_dfile *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = path;
    if (!path || !*path) return kiln_error(KILN_ERR_INVALID, "data: no file name given");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return kiln_error(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return kiln_error(KILN_ERR_IO, "%s: %s", path,
                          S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file");
    }
    f->size = (int64_t)st.st_size;
    unsigned char magic[2];
    f->gzipped = pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    f->gz = gzdopen(fd, "rb");
    if (!f->gz) {
        close(fd);
        return kiln_error(KILN_ERR_NOMEM, "%s: cannot start reading (out of memory)", path);
    }
    gzbuffer(f->gz, 1u << 17);
    return KILN_OK;
}

void kiln_dfile_close(kiln_dfile *f) {
    if (f->gz) gzclose_r(f->gz);
    f->gz = NULL;
}

/* Reads up to n bytes into buf and their count into *got; fails on a read error or corrupt
 * gzip data (a clean end of data, or a gzip stream that just stops, is not an error here). */
static kiln_status read_some(kiln_dfile *f, void *buf, size_t n, size_t *got) {
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < CHUNK ? n - *got : CHUNK;
        int r = gzread(f->gz, (char *)buf + *got, (unsigned)want);
        if (r < 0) break;
        *got += (size_t)r;
        if ((size_t)r < want) break;
    }
    f->pos += (int64_t)*got;
    int err = Z_OK;
    const char *msg = gzerror(f->gz, &err);
    if (err == Z_ERRNO)
        return kiln_error(KILN_ERR_IO, "%s: read error at decoded offset %lld: %s", f->path,
                          (long long)f->pos, strerror(errno));
    if (err != Z_OK && err != Z_BUF_ERROR)
        return kiln_error(KILN_ERR_FORMAT, "%s: corrupt gzip data near decoded offset %lld: %s",
                          f->path, (long long)f->pos, msg);
    return KILN_OK;
}

/* After a short read: the cause, for messages. */
static const char *short_cause(kiln_dfile *f) {
    int err = Z_OK;
    gzerror(f->gz, &err);
    return err == Z_BUF_ERROR ? "the gzip stream is truncated" : "the file ends";
}

kiln_status kiln_dfile_read(kiln_dfile *f, void *buf, size_t n, const char *what) {
    int64_t start = f->pos;
    size_t got;
    kiln_status st = read_some(f, buf, n, &got);
    if (st != KILN_OK) return st;
    if (got < n)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: %s: needs %zu bytes at offset %lld but %s after %lld bytes", f->path,
                          what, n, (long long)start, short_cause(f), (long long)got);
    return KILN_OK;
}

kiln_status kiln_dfile_expect(kiln_dfile *f, uint64_t n, const char *what) {
    if (f->gzipped) return KILN_OK;
    uint64_t left = (uint64_t)(f->size - f->pos);
    if (n > left)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: %s: the header implies %llu bytes after offset %lld but the file "
                          "has %llu (truncated, or the header is wrong)",
                          f->path, what, (unsigned long long)n, (long long)f->pos,
                          (unsigned long long)left);
    return KILN_OK;
}

kiln_status kiln_dfile_expect_end(kiln_dfile *f, const char *what) {
    char probe[64];
    int64_t at = f->pos;
    size_t got;
    kiln_status st = read_some(f, probe, sizeof probe, &got);
    if (st != KILN_OK) return st;
    if (got > 0) {
        if (!f->gzipped)
            return kiln_error(KILN_ERR_FORMAT,
                              "%s: %lld unexpected bytes after the %s (which ends at offset %lld)",
                              f->path, (long long)(f->size - at), what, (long long)at);
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: unexpected data after the %s (which ends at decoded offset %lld)",
                          f->path, what, (long long)at);
    }
    int err = Z_OK;
    gzerror(f->gz, &err);
    if (err == Z_BUF_ERROR)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: the gzip stream is truncated (its end and checksum are missing)",
                          f->path);
    return KILN_OK;
}

kiln_status kiln_dfile_read_rest(kiln_dfile *f, char **buf, size_t *len) {
    *buf = NULL, *len = 0;
    size_t cap = f->gzipped ? (size_t)f->size * 4 + 4096 : (size_t)(f->size - f->pos) + 1;
    if (cap > (size_t)KILN_DATA_MAX_BYTES + 1) cap = (size_t)KILN_DATA_MAX_BYTES + 1;
    char *b = malloc(cap + 1);
    if (!b) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory (%zu bytes)", f->path, cap);
    size_t n = 0;
    for (;;) {
        size_t got;
        kiln_status st = read_some(f, b + n, cap - n, &got);
        if (st != KILN_OK) {
            free(b);
            return st;
        }
        n += got;
        if (n < cap) break; /* end of data */
        if (n > (size_t)KILN_DATA_MAX_BYTES) {
            free(b);
            return kiln_error(KILN_ERR_FORMAT, "%s: more than %lld bytes decoded (the limit)",
                              f->path, (long long)KILN_DATA_MAX_BYTES);
        }
        size_t ncap =
            cap * 2 > (size_t)KILN_DATA_MAX_BYTES + 1 ? (size_t)KILN_DATA_MAX_BYTES + 1 : cap * 2;
        char *nb = realloc(b, ncap + 1);
        if (!nb) {
            free(b);
            return kiln_error(KILN_ERR_NOMEM, "%s: out of memory (%zu bytes)", f->path, ncap);
        }
        b = nb, cap = ncap;
    }
    int err = Z_OK;
    gzerror(f->gz, &err);
    if (err == Z_BUF_ERROR) {
        free(b);
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: the gzip stream is truncated after %zu decoded bytes", f->path, n);
    }
    b[n] = 0;
    *buf = b, *len = n;
    return KILN_OK;
}

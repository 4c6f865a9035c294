/* fileio.c — atomic writes (temp file + fsync + rename + fsync dir), bounded reads, mkdir -p.
 *
 * Invariants of a kiln_atomic_file:
 *   - fd >= 0 exactly while the temporary file exists and no error has happened;
 *   - once err != KILN_OK the temporary file has been closed and unlinked, and errmsg holds the
 *     message to repeat (the thread's message may have been overwritten since);
 *   - path, tmp and dir are owned copies; dir is the folder to fsync after the rename.
 * Temporary names are "<dir>/.tmp-<name>-<pid>-<16 hex>", created with O_EXCL (a clash is retried
 * with new random bits); <name> is cut to 96 bytes so the temporary name stays under NAME_MAX.
 */
#include "kiln/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kiln/mem.h"
#include "kiln/rng.h"

struct kiln_atomic_file {
    int fd;
    char *path; /* the target */
    char *tmp;  /* the temporary file */
    char *dir;  /* the folder holding both */
    unsigned long long written;
    kiln_status err;
    char errmsg[512];
};

/* "disk full" spelled out for the errors that mean it; strerror otherwise. */
static const char *why(int e) {
    if (e == ENOSPC) return "disk full (No space left on device)";
    if (e == EDQUOT) return "disk full (disk quota exceeded)";
    return strerror(e);
}

static uint64_t random64(void) {
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r) return r;
    /* No entropy yet (early boot): time, pid and a counter; O_EXCL keeps it safe anyway. */
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint32_t w[4];
    kiln_philox((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, (uint64_t)getpid(),
                counter++, w);
    return ((uint64_t)w[0] << 32) | w[1];
}

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n), p[n] = 0;
    return p;
}

/* Closes and unlinks the temporary file and remembers the current message as f's error. */
static kiln_status fail(kiln_atomic_file *f, kiln_status code) {
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
        unlink(f->tmp);
    }
    f->err = code;
    snprintf(f->errmsg, sizeof f->errmsg, "%s", kiln_last_error());
    return code;
}

static void free_file(kiln_atomic_file *f) {
    free(f->path);
    free(f->tmp);
    free(f->dir);
    free(f);
}

kiln_status kiln_atomic_open(const char *path, kiln_atomic_file **out) {
    *out = NULL;
    if (!path || !*path) return kiln_error(KILN_ERR_INVALID, "atomic write: empty path");
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return kiln_error(KILN_ERR_INVALID, "atomic write %s: path does not name a file", path);
    size_t dlen = slash ? (size_t)(slash - path) + 1 : 0; /* the folder prefix, with its '/' */
    size_t blen = strlen(base) > 96 ? 96 : strlen(base);

    kiln_atomic_file *f = calloc(1, sizeof *f);
    if (!f) return kiln_error(KILN_ERR_NOMEM, "atomic write %s: out of memory", path);
    f->fd = -1;
    f->path = dup_n(path, strlen(path));
    f->dir = dlen ? dup_n(path, dlen) : dup_n(".", 1);
    f->tmp = malloc(dlen + blen + 64);
    if (!f->path || !f->dir || !f->tmp) {
        free_file(f);
        return kiln_error(KILN_ERR_NOMEM, "atomic write %s: out of memory", path);
    }
    for (int attempt = 0; attempt < 16; attempt++) {
        snprintf(f->tmp, dlen + blen + 64, "%.*s.tmp-%.*s-%ld-%016llx", (int)dlen, path, (int)blen,
                 base, (long)getpid(), (unsigned long long)random64());
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0 || errno != EEXIST) break;
    }
    if (f->fd < 0) {
        int e = errno;
        kiln_status s =
            kiln_error(KILN_ERR_IO, "atomic write %s: cannot create temporary file %s: %s", path,
                       f->tmp, why(e));
        free_file(f);
        return s;
    }
    *out = f;
    return KILN_OK;
}

kiln_status kiln_atomic_write(kiln_atomic_file *f, const void *data, size_t len) {
    if (!f) return kiln_error(KILN_ERR_INVALID, "atomic write: NULL file");
    if (f->err) return kiln_error(f->err, "%s", f->errmsg);
    if (len && !data)
        return fail(f, kiln_error(KILN_ERR_INVALID, "atomic write %s: NULL data for %zu bytes",
                                  f->path, len));
    const char *p = data;
    while (len > 0) {
        size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC; /* write returning 0 for a regular file: no room */
            kiln_error(KILN_ERR_IO, "atomic write %s: %s after %llu bytes; %s is unchanged",
                       f->path, why(e), f->written, f->path);
            return fail(f, KILN_ERR_IO);
        }
        p += w, len -= (size_t)w, f->written += (unsigned long long)w;
    }
    return KILN_OK;
}

kiln_status kiln_atomic_commit(kiln_atomic_file *f) {
    if (!f) return kiln_error(KILN_ERR_INVALID, "atomic write: NULL file");
    kiln_status s = KILN_OK;
    if (f->err) {
        s = kiln_error(f->err, "%s", f->errmsg);
    } else if (fsync(f->fd) != 0) {
        int e = errno;
        kiln_error(KILN_ERR_IO, "atomic write %s: fsync of %s failed: %s; %s is unchanged", f->path,
                   f->tmp, why(e), f->path);
        s = fail(f, KILN_ERR_IO);
    } else {
        int rc = close(f->fd);
        f->fd = -1;
        if (rc != 0) {
            int e = errno;
            unlink(f->tmp);
            s = kiln_error(KILN_ERR_IO, "atomic write %s: closing %s failed: %s; %s is unchanged",
                           f->path, f->tmp, why(e), f->path);
        } else if (rename(f->tmp, f->path) != 0) {
            int e = errno;
            unlink(f->tmp);
            s = kiln_error(KILN_ERR_IO, "atomic write %s: cannot rename %s over it: %s", f->path,
                           f->tmp, why(e));
        } else {
            /* The rename is done; make it durable. Filesystems that cannot fsync a folder say
             * EINVAL (or ENOTSUP): nothing more can be done there, so that is not an error. */
            int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP)) {
                int e = errno;
                s = kiln_error(KILN_ERR_IO,
                               "atomic write %s: written and renamed, but syncing folder %s "
                               "failed: %s",
                               f->path, f->dir, why(e));
            }
            if (dfd >= 0) close(dfd);
        }
    }
    free_file(f);
    return s;
}

void kiln_atomic_abort(kiln_atomic_file *f) {
    if (!f) return;
    if (f->fd >= 0) {
        close(f->fd);
        unlink(f->tmp);
    }
    free_file(f);
}

const char *kiln_atomic_temp_path(const kiln_atomic_file *f) {
    return f ? f->tmp : "";
}

kiln_status kiln_file_write_atomic(const char *path, const void *data, size_t len) {
    kiln_atomic_file *f;
    kiln_status s = kiln_atomic_open(path, &f);
    if (s) return s;
    kiln_atomic_write(f, data, len); /* an error sticks to f and comes back from commit */
    return kiln_atomic_commit(f);
}

kiln_status kiln_file_read_all(const char *path, void **buf, size_t *len, size_t max_len) {
    *buf = NULL, *len = 0;
    if (!path || !*path) return kiln_error(KILN_ERR_INVALID, "read: empty path");
    if (max_len > SIZE_MAX / 4) max_len = SIZE_MAX / 4; /* keeps max_len + 1 and cap * 2 exact */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return kiln_error(e == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "read %s: %s", path,
                          strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return kiln_error(KILN_ERR_IO, "read %s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return kiln_error(KILN_ERR_IO, "read %s: is a folder, not a file", path);
    }
    if (S_ISREG(st.st_mode) && (unsigned long long)st.st_size > max_len) {
        close(fd);
        return kiln_error(KILN_ERR_FORMAT,
                          "read %s: file is %lld bytes, more than the limit of %zu", path,
                          (long long)st.st_size, max_len);
    }
    /* Regular files: their size (+1 to see EOF without growing). Others: grow as needed. */
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *p = malloc(cap + 1);
    kiln_status s = KILN_OK;
    if (!p) s = kiln_error(KILN_ERR_NOMEM, "read %s: out of memory for %zu bytes", path, cap);
    while (!s) {
        if (n == cap) {
            if (n > max_len) break; /* reported below */
            size_t ncap = cap > max_len / 2 ? max_len + 1 : cap * 2;
            char *q = realloc(p, ncap + 1);
            if (!q) {
                s = kiln_error(KILN_ERR_NOMEM, "read %s: out of memory for %zu bytes", path, ncap);
                break;
            }
            p = q, cap = ncap;
        }
        ssize_t r = read(fd, p + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            s = kiln_error(KILN_ERR_IO, "read %s: %s after %zu bytes", path, strerror(errno), n);
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (!s && n > max_len)
        s = kiln_error(KILN_ERR_FORMAT, "read %s: file holds more than the limit of %zu bytes",
                       path, max_len);
    if (s) {
        free(p);
        return s;
    }
    p[n] = 0;
    *buf = p, *len = n;
    return KILN_OK;
}

kiln_status kiln_mkdirs(const char *path) {
    if (!path || !*path) return kiln_error(KILN_ERR_INVALID, "mkdirs: empty path");
    size_t n = strlen(path);
    char *p = dup_n(path, n);
    if (!p) return kiln_error(KILN_ERR_NOMEM, "mkdirs %s: out of memory", path);
    kiln_status s = KILN_OK;
    /* Visit each prefix that ends a component: at every '/' after a name, and at the end. */
    for (size_t i = 1; i <= n && !s; i++) {
        if (i < n && (p[i] != '/' || p[i - 1] == '/')) continue;
        if (i == n && p[i - 1] == '/') break;
        char saved = p[i];
        p[i] = 0;
        if (mkdir(p, 0777) != 0) {
            int e = errno;
            struct stat st;
            if (stat(p, &st) != 0)
                s = kiln_error(KILN_ERR_IO, "mkdirs %s: cannot create %s: %s", path, p, why(e));
            else if (!S_ISDIR(st.st_mode))
                s = kiln_error(KILN_ERR_IO, "mkdirs %s: %s exists and is not a folder", path, p);
        }
        p[i] = saved;
    }
    free(p);
    return s;
}

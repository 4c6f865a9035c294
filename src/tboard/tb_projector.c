/* tb_projector.c — the Embedding Projector's files (kiln_tb_projector_write, see kiln/tboard.h).
 *
 * Each file is formatted in memory (open_memstream) and replaced atomically (a temporary file
 * renamed over it), so a TensorBoard reading a run that is still training sees the previous
 * epoch's files or this one's, never half of one. Values are written with 6 significant digits,
 * plenty for a 2-D or 3-D projection, by kiln_tb_format_g6: a run writes this file after every
 * validation (1,000 x 256 values for the Fashion-MNIST MLP), and printf's %g would cost more than
 * everything else TensorBoard output does in an epoch. The tensors file has no header (the
 * projector's format).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include "kiln/fileio.h" /* kiln_mkdirs */
#include "kiln/tboard.h"
#include "tboard/tb_internal.h"

static const double POW10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10};

/* Unsigned decimal of u into p; returns the length. */
static int put_u64(char *p, uint64_t u) {
    char t[24];
    int n = 0;
    do t[n++] = (char)('0' + u % 10), u /= 10;
    while (u);
    for (int i = 0; i < n; i++) p[i] = t[n - 1 - i];
    return n;
}

int kiln_tb_format_g6(float value, char out[32]) {
    double m = fabs((double)value);
    if (m == 0) return snprintf(out, 32, signbit(value) ? "-0" : "0");
    if (!(m >= 1e-4 && m < 999999.5))
        return snprintf(out, 32, "%.6g", (double)value); /* rare: printf */
    int e = 0;                                           /* m in [10^e, 10^(e+1)), e in -4 .. 5 */
    if (m >= 1)
        while (e < 5 && m >= POW10[e + 1]) e++;
    else
        while (m < 1.0 / POW10[-e]) e--;
    int d = 5 - e; /* decimals that leave 6 significant digits: 0 .. 9 */
    uint64_t q = (uint64_t)llrint(m * POW10[d]);
    if (q >= 1000000 && d > 0) q = (uint64_t)llrint(m * POW10[--d]); /* rounded up a decade */
    char *p = out;
    if (value < 0) *p++ = '-';
    uint64_t scale = (uint64_t)POW10[d], ip = q / scale, frac = q % scale;
    p += put_u64(p, ip);
    if (frac) {
        *p++ = '.';
        for (uint64_t s = scale / 10; s > 0 && frac; s /= 10)
            *p++ = (char)('0' + frac / s), frac %= s;
    }
    *p = 0;
    return (int)(p - out);
}

/* s with tabs, newlines and carriage returns as spaces (they would break the TSV). */
static void put_cell(FILE *f, const char *s) {
    for (; s && *s; s++) fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

/* Closes the memory stream f (its bytes land in *buf, *len only then) and puts them at dir/name
 * atomically: written to dir/.name.tmp-<pid>, then renamed over it. Not fsync'ed: these files
 * are rewritten after every validation, and a reader needs whole files, not durable ones (a
 * crash of the machine may lose the last version; the next run writes them again). */
static kiln_status finish(FILE *f, char **buf, size_t *len, const char *dir, const char *name) {
    char path[4096 + 64], tmp[4096 + 96];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%ld", dir, name, (long)getpid());
    int bad = ferror(f);
    if (fclose(f) || bad) {
        free(*buf);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
    }
    kiln_status st = KILN_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    size_t done = 0;
    while (fd >= 0 && done < *len) {
        ssize_t w = write(fd, *buf + done, *len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) break;
        done += (size_t)w;
    }
    if (fd < 0 || done < *len || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        if (fd >= 0 && done < *len) close(fd);
        unlink(tmp);
        st = kiln_error(KILN_ERR_IO, "%s: %s", path,
                        e == ENOSPC || e == EDQUOT ? "disk full" : strerror(e));
    }
    free(*buf);
    return st;
}

kiln_status kiln_tb_projector_write(const char *run_dir, const char *tensor_name, const float *emb,
                                    int64_t rows, int64_t dim, const char *const *col_names,
                                    int n_cols, const char *const *meta) {
    if (rows < 1 || dim < 1 || !emb || n_cols < 0 || (n_cols > 0 && (!col_names || !meta)))
        return kiln_error(KILN_ERR_INVALID,
                          "%s: projector: %lld x %lld embeddings with %d metadata columns", run_dir,
                          (long long)rows, (long long)dim, n_cols);
    char dir[4096 + 16];
    snprintf(dir, sizeof dir, "%s/projector", run_dir);
    kiln_status st = kiln_mkdirs(dir);
    if (st) return st;
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", dir);
    char num[32];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < dim; j++) {
            int n = kiln_tb_format_g6(emb[r * dim + j], num);
            num[n] = j + 1 < dim ? '\t' : '\n';
            fwrite(num, 1, (size_t)n + 1, f);
        }
    if ((st = finish(f, &buf, &len, dir, "tensors.tsv"))) return st;
    if (n_cols > 0) {
        if (!(f = open_memstream(&buf, &len)))
            return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", dir);
        if (n_cols > 1)
            for (int c = 0; c < n_cols; c++)
                put_cell(f, col_names[c]), fputc(c + 1 < n_cols ? '\t' : '\n', f);
        for (int64_t r = 0; r < rows; r++)
            for (int c = 0; c < n_cols; c++)
                put_cell(f, meta[r * n_cols + c]), fputc(c + 1 < n_cols ? '\t' : '\n', f);
        if ((st = finish(f, &buf, &len, dir, "metadata.tsv"))) return st;
    }
    if (!(f = open_memstream(&buf, &len)))
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", dir);
    fputs("embeddings {\n  tensor_name: \"", f);
    for (const char *s = tensor_name ? tensor_name : "embedding"; *s;
         s++) { /* a text-format string */
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
    }
    fputs("\"\n  tensor_path: \"projector/tensors.tsv\"\n", f);
    if (n_cols > 0) fputs("  metadata_path: \"projector/metadata.tsv\"\n", f);
    fputs("}\n", f);
    return finish(f, &buf, &len, run_dir, "projector_config.pbtxt");
}

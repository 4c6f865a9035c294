/* tb_projector.c — the Embedding Projector's files (kiln_tb_projector_write, see kiln/tboard.h).
 *
 * Each file is formatted in memory (open_memstream) and written atomically (kiln/fileio.h), so a
 * TensorBoard reading a run that is still training sees the previous epoch's files or this
 * one's, never a mix. Values are written with 6 significant digits ("%.6g"), plenty for a 2-D
 * or 3-D projection; the tensors file has no header (the projector's format).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/fileio.h"
#include "kiln/tboard.h"

/* s with tabs, newlines and carriage returns as spaces (they would break the TSV). */
static void put_cell(FILE *f, const char *s) {
    for (; s && *s; s++) fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

/* Closes the memory stream f (its bytes land in *buf, *len only then) and writes them to
 * dir/name. */
static kiln_status finish(FILE *f, char **buf, size_t *len, const char *dir, const char *name) {
    char path[4096 + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        free(*buf);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
    }
    kiln_status st = kiln_file_write_atomic(path, *buf, *len);
    free(*buf);
    return st;
}

kiln_status kiln_tb_projector_write(const char *run_dir, const char *tensor_name, const float *emb, int64_t rows,
                                    int64_t dim, const char *const *col_names, int n_cols, const char *const *meta) {
    if (rows < 1 || dim < 1 || !emb || n_cols < 0 || (n_cols > 0 && (!col_names || !meta)))
        return kiln_error(KILN_ERR_INVALID, "%s: projector: %lld x %lld embeddings with %d metadata columns",
                          run_dir, (long long)rows, (long long)dim, n_cols);
    char dir[4096 + 16];
    snprintf(dir, sizeof dir, "%s/projector", run_dir);
    kiln_status st = kiln_mkdirs(dir);
    if (st) return st;
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", dir);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < dim; j++) fprintf(f, j + 1 < dim ? "%.6g\t" : "%.6g\n", (double)emb[r * dim + j]);
    if ((st = finish(f, &buf, &len, dir, "tensors.tsv"))) return st;
    if (n_cols > 0) {
        if (!(f = open_memstream(&buf, &len))) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", dir);
        if (n_cols > 1)
            for (int c = 0; c < n_cols; c++) put_cell(f, col_names[c]), fputc(c + 1 < n_cols ? '\t' : '\n', f);
        for (int64_t r = 0; r < rows; r++)
            for (int c = 0; c < n_cols; c++) put_cell(f, meta[r * n_cols + c]), fputc(c + 1 < n_cols ? '\t' : '\n', f);
        if ((st = finish(f, &buf, &len, dir, "metadata.tsv"))) return st;
    }
    if (!(f = open_memstream(&buf, &len))) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", dir);
    fputs("embeddings {\n  tensor_name: \"", f);
    for (const char *s = tensor_name ? tensor_name : "embedding"; *s; s++) { /* a text-format string */
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
    }
    fputs("\"\n  tensor_path: \"projector/tensors.tsv\"\n", f);
    if (n_cols > 0) fputs("  metadata_path: \"projector/metadata.tsv\"\n", f);
    fputs("}\n", f);
    return finish(f, &buf, &len, run_dir, "projector_config.pbtxt");
}

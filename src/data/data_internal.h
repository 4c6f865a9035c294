/* data_internal.h — the dataset struct and the file reader shared by the format parsers.
 *
 * Two kinds of root: an in-memory root owns its arrays (malloc'd, freed with free()); a source
 * root (kiln_dataset_from_source) has x == NULL and reads features through its ops, keeping
 * only the labels and an optional cache of decoded rows in memory. A view owns only its row list
 * and holds a reference to its root. Views copy the root's metadata and point at its arrays (and
 * ops), so code reading a dataset needs to know only whether x is NULL: row i's storage row is
 * rows ? rows[i] : i, and kiln_ds_read reads any storage row of either kind.
 */
#ifndef KILN_DATA_INTERNAL_H
#define KILN_DATA_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "kiln/data.h"

struct kiln_dataset {
    atomic_int refs;
    kiln_dataset *root; /* a view: its root (one reference held); a root: NULL */
    int64_t n;          /* rows */
    int64_t *rows;      /* a view: [n] storage rows; a root: NULL (row i is storage row i) */

    kiln_dtype x_dtype; /* KILN_U8 or KILN_F32 */
    kiln_shape x_shape; /* one row's features */
    int64_t x_numel;    /* elements per row */
    void *x;            /* [storage rows, x_numel] */
    kiln_label_kind y_kind;
    int64_t y_width; /* 1 class, k float, 0 none */
    void *y;         /* int32 [storage rows] or float [storage rows, k]; NULL when none */
    int num_classes;
    char **class_names; /* [num_classes] or NULL */

    /* source roots (x == NULL); views copy ops and ctx, the cache is the root's alone */
    const kiln_source_ops *ops;
    void *ctx;
    int64_t row_bytes;         /* x_numel * dtype size */
    int64_t cache_rows;        /* storage rows [0, cache_rows) are cached once read */
    uint8_t *cache;            /* [cache_rows, row_bytes] */
    _Atomic uint8_t *cache_st; /* [cache_rows] 0 empty, 1 being filled, 2 filled */
};

/* Storage row r of ds (any kind) in its storage dtype into x [row_bytes]. Thread-safe. */
kiln_status kiln_ds_read(const kiln_dataset *ds, int64_t r, void *x);

/* Storage row of row i. */
static inline int64_t kiln_ds_row(const kiln_dataset *ds, int64_t i) {
    return ds->rows ? ds->rows[i] : i;
}

/* Makes a root dataset that takes ownership of x, y and names (malloc'd; names an array of
 * num_classes malloc'd strings) whether it succeeds or not. Checks the shapes and, for class
 * labels, that every id is in [0, num_classes) (num_classes 0: max id + 1). `what` names the
 * source in messages. */
kiln_status kiln_ds_adopt(kiln_dataset **out, const char *what, int64_t n, kiln_dtype x_dtype,
                          kiln_shape x_shape, void *x, kiln_label_kind y_kind, int64_t y_width,
                          void *y, int num_classes, char **names);

/* ---- CSV tokenizing (csv.c), shared with the image manifest reader ---- */

typedef struct {
    const char *path;
    char *p, *end; /* unread text; *end == 0 */
    int64_t line;  /* line of p, from 1 */
    char delim;
    char **field;   /* the current record: [nfield] NUL-terminated values */
    int64_t *fline; /* [nfield] the line each field starts on */
    int nfield, cap;
    kiln_status err; /* why kiln_csv_next returned -1 */
} kiln_csv_tok;
/* The next record into c->field, tokenized in place (see csv.c). Returns 1 for a record, 0 at
 * the end, -1 on error (c->err). Free c->field and c->fline when done. */
int kiln_csv_next(kiln_csv_tok *c);
/* Turns label strings [n] (lline: their lines) into ids [n]: integers as they are when all are,
 * else names in byte order (*names [*num] malloc'd). */
kiln_status kiln_csv_label_ids(const kiln_csv_tok *c, char **lab, const int64_t *lline, int64_t n,
                               int32_t *ids, char ***names, int *num);

/* ---- reading files: raw or gzip, told apart by the first two bytes ---- */

typedef struct {
    const char *path;
    gzFile gz;    /* reads raw files transparently too */
    int gzipped;  /* starts with 1f 8b */
    int64_t size; /* bytes on disk */
    int64_t pos;  /* decoded bytes consumed */
} kiln_dfile;

kiln_status kiln_dfile_open(kiln_dfile *f, const char *path);
void kiln_dfile_close(kiln_dfile *f);
/* Reads exactly n bytes of `what`, or fails naming the file, the offset and the cause. */
kiln_status kiln_dfile_read(kiln_dfile *f, void *buf, size_t n, const char *what);
/* Raw files: fails unless at least n bytes remain (checked before allocating for them).
 * Gzip files cannot tell without decoding; their reads fail instead. */
kiln_status kiln_dfile_expect(kiln_dfile *f, uint64_t n, const char *what);
/* Fails unless the file ends here (for gzip this also checks the stream's CRC and length). */
kiln_status kiln_dfile_expect_end(kiln_dfile *f, const char *what);
/* Everything that remains, in a malloc'd buffer with a NUL after its len bytes. */
kiln_status kiln_dfile_read_rest(kiln_dfile *f, char **buf, size_t *len);

#endif

/* data_internal.h — the dataset struct and the file reader shared by the format parsers.
 *
 * A root dataset owns its arrays (malloc'd, freed with free()); a view owns only its row list
 * and holds a reference to its root. Views copy the root's metadata and point at its arrays, so
 * code reading a dataset never needs to know which kind it has: row i's storage row is
 * rows ? rows[i] : i.
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
};

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

/* idx.c — IDX files (LeCun's MNIST format, also Fashion-MNIST, KMNIST, EMNIST), raw or gzip.
 *
 * Layout: magic 00 00 <type> <ndim>, then ndim big-endian u32 dims, then the data in C order.
 * We read type 0x08 (unsigned byte) only: images [n, rows, cols] (magic 0x00000803) and labels
 * [n] (0x00000801). Everything is checked before it is trusted: the magic, each dim (> 0), the
 * decoded size (<= KILN_DATA_MAX_BYTES), the data length (exactly what the dims say, no more,
 * no less) and, across the two files, the number of rows. Images stay u8 in the dataset; the
 * loader converts them to float32 as it builds batches.
 */
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

/* One IDX u8 file with `ndim` dims into dims [ndim] and a malloc'd data [prod dims]. `kind`
 * ("images", "labels") names what was expected in messages. */
static kiln_status read_idx(const char *path, int ndim, const char *kind, int64_t *dims,
                            uint8_t **data) {
    *data = NULL;
    kiln_dfile f;
    kiln_status st = kiln_dfile_open(&f, path);
    if (st != KILN_OK) return st;
    unsigned char h[4 + 4 * 3];
    if ((st = kiln_dfile_read(&f, h, 4, "IDX magic")) != KILN_OK) goto done;
    if (h[0] != 0 || h[1] != 0) {
        st = kiln_error(KILN_ERR_FORMAT,
                        "%s: not an IDX file: %sstarts with %02x %02x %02x %02x, IDX %s start with "
                        "00 00 08 0%d",
                        path, f.gzipped ? "decoded data " : "", h[0], h[1], h[2], h[3], kind, ndim);
        goto done;
    }
    if (h[2] != 0x08) {
        st = kiln_error(KILN_ERR_FORMAT,
                        "%s: IDX element type 0x%02x is not supported (only unsigned bytes, 0x08)",
                        path, h[2]);
        goto done;
    }
    if (h[3] != ndim) {
        st = kiln_error(KILN_ERR_FORMAT,
                        "%s: IDX file has %d dims, but %s have %d (magic 0x0000080%d)", path, h[3],
                        kind, ndim, ndim);
        goto done;
    }
    if ((st = kiln_dfile_read(&f, h + 4, 4 * (size_t)ndim, "IDX dims")) != KILN_OK) goto done;
    uint64_t bytes = 1;
    int too_big = 0;
    for (int i = 0; i < ndim; i++) {
        const unsigned char *b = h + 4 + 4 * i;
        dims[i] =
            (int64_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
        if (dims[i] == 0) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: IDX dim %d is 0", path, i);
            goto done;
        }
        if (bytes > (uint64_t)KILN_DATA_MAX_BYTES / (uint64_t)dims[i])
            too_big = 1;
        else
            bytes *= (uint64_t)dims[i];
    }
    if (too_big) {
        char sbuf[96];
        kiln_shape s = kiln_shape_make(ndim, dims);
        st =
            kiln_error(KILN_ERR_FORMAT,
                       "%s: IDX dims %s are more than %lld bytes of data (the limit): the header "
                       "is corrupt or the file too big",
                       path, kiln_shape_str(&s, sbuf, sizeof sbuf), (long long)KILN_DATA_MAX_BYTES);
        goto done;
    }
    if ((st = kiln_dfile_expect(&f, bytes, "IDX data")) != KILN_OK) goto done;
    if (!(*data = malloc(bytes))) {
        st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory (%llu bytes)", path,
                        (unsigned long long)bytes);
        goto done;
    }
    if ((st = kiln_dfile_read(&f, *data, bytes, "IDX data")) != KILN_OK) goto done;
    st = kiln_dfile_expect_end(&f, "IDX data");
done:
    kiln_dfile_close(&f);
    if (st != KILN_OK) free(*data), *data = NULL;
    return st;
}

kiln_status kiln_data_load_idx(const char *images, const char *labels, int flat,
                               kiln_dataset **out) {
    *out = NULL;
    int64_t xd[3], yd[1];
    uint8_t *x = NULL, *yb = NULL;
    kiln_status st = read_idx(images, 3, "images", xd, &x);
    if (st != KILN_OK) return st;
    int32_t *y = NULL;
    if (labels) {
        if ((st = read_idx(labels, 1, "labels", yd, &yb)) != KILN_OK) {
            free(x);
            return st;
        }
        if (yd[0] != xd[0]) {
            free(x), free(yb);
            return kiln_error(KILN_ERR_FORMAT, "%s has %lld images but %s has %lld labels", images,
                              (long long)xd[0], labels, (long long)yd[0]);
        }
        if (!(y = malloc((size_t)yd[0] * sizeof *y))) { /* [n] */
            free(x), free(yb);
            return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", labels);
        }
        for (int64_t i = 0; i < yd[0]; i++) y[i] = yb[i];
        free(yb);
    }
    int64_t fd[3] = {1, xd[1], xd[2]}, flatd[1] = {xd[1] * xd[2]};
    kiln_shape shape = flat ? kiln_shape_make(1, flatd) : kiln_shape_make(3, fd);
    return kiln_ds_adopt(out, images, xd[0], KILN_U8, shape, x,
                         labels ? KILN_LABEL_CLASS : KILN_LABEL_NONE, 1, y, 0, NULL);
}

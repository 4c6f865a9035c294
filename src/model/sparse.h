/* sparse.h — compact storage of mostly-zero tensors in a servable's weights.safetensors
 * (library-private; the format is documented in kiln/export.h, "Sparse tensors").
 *
 * A tensor W of n F32 values is stored as two entries in place of "<W>":
 *   "<W>.sparse_bitmask"  U8 [ceil(n / 8)]: bit b (least significant first) of byte j is 1 when
 *                         value 8 j + b (C order) is not zero; the bits past n are 0
 *   "<W>.sparse_values"   F32 [nnz]: the values that are not zero, in C order
 * (numpy: np.unpackbits(bitmask, bitorder="little")[:n] gives the mask). model.json lists them:
 *   "sparse": {"format": "bitmask", "tensors": [{"name": W, "shape": [...], "nonzeros": nnz}]}
 * Zeros of either sign are left out (they read back as +0). The writer stores a tensor so only
 * when that is smaller than the dense form: 4 nnz + ceil(n / 8) < 4 n bytes. */
#ifndef KILN_MODEL_SPARSE_H
#define KILN_MODEL_SPARSE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/safetensors.h"

#define KILN_SPARSE_BITMASK ".sparse_bitmask"
#define KILN_SPARSE_VALUES ".sparse_values"

/* Values of w[0..n) that are not zero. */
size_t kiln_sparse_nonzeros(const float *w, size_t n);
/* 1 when the compact form of a tensor of n values with nnz non-zeros is the smaller one. */
int kiln_sparse_worth(size_t n, size_t nnz);
/* Fills bits [ceil(n / 8)] and values [nonzeros]. */
void kiln_sparse_encode(const float *w, size_t n, uint8_t *bits, float *values);

/* The dense tensors of a weights file whose model.json has a "sparse" field. */
typedef struct {
    int n;
    kiln_st_entry *e; /* [n]: name (model.json's), F32, shape, data (owned) */
} kiln_sparse_set;

/* Reads model.json's "sparse" field (field may be NULL: no sparse tensors) and densifies every
 * tensor it lists from f (weights_path and json_path name the files in messages). Strict: a
 * malformed field, a missing or mistyped entry, a bitmask of the wrong length or with bits set
 * past n, or a values count other than the bitmask's count of ones is KILN_ERR_FORMAT. */
kiln_status kiln_sparse_read(const cJSON *field, const kiln_st_file *f, const char *json_path,
                             const char *weights_path, kiln_sparse_set *out);
/* The dense entry of name: densified by kiln_sparse_read, else f's own (NULL when neither). */
const kiln_st_entry *kiln_sparse_find(const kiln_sparse_set *s, const kiln_st_file *f,
                                      const char *name);
/* 1 when name is the bitmask or values entry of a tensor of s. */
int kiln_sparse_owns(const kiln_sparse_set *s, const char *name);
void kiln_sparse_set_free(kiln_sparse_set *s);

#endif

/* kiln/tensor.h — dtypes, shapes and tensors.
 *
 * A kiln_tensor is a dense, C-ordered (row-major) array of up to KILN_MAX_DIMS dims. It either
 * owns its storage (64-byte aligned, freed by kiln_tensor_free) or views memory owned by
 * someone else (a compiled plan, a mapped file). Shapes are int64 so that sizes never overflow.
 */
#ifndef KILN_TENSOR_H
#define KILN_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#define KILN_MAX_DIMS 6

typedef enum { KILN_F32 = 0, KILN_BF16, KILN_I32, KILN_I64, KILN_U8, KILN_DTYPE_COUNT } kiln_dtype;

typedef struct {
    int ndim;                     /* 0 (scalar) .. KILN_MAX_DIMS */
    int64_t dims[KILN_MAX_DIMS];
} kiln_shape;

typedef struct {
    kiln_dtype dtype;
    kiln_shape shape;
    void *data;
    int owns_data;
} kiln_tensor;

size_t kiln_dtype_size(kiln_dtype dt);
/* "F32", "BF16", "I32", "I64", "U8": the names safetensors uses. */
const char *kiln_dtype_name(kiln_dtype dt);
/* Parses a safetensors dtype name; returns KILN_DTYPE_COUNT when unknown. */
kiln_dtype kiln_dtype_from_name(const char *name);

kiln_shape kiln_shape_make(int ndim, const int64_t *dims);
int64_t kiln_shape_numel(const kiln_shape *s);
int kiln_shape_equal(const kiln_shape *a, const kiln_shape *b);
/* Writes "[128, 1, 28, 28]" into buf (always terminated); returns buf. */
char *kiln_shape_str(const kiln_shape *s, char *buf, size_t cap);

/* Allocates a zeroed tensor; returns NULL (with message) on a bad shape or no memory. */
kiln_tensor *kiln_tensor_new(kiln_dtype dt, int ndim, const int64_t *dims);
/* A view of memory the caller keeps alive. */
kiln_tensor kiln_tensor_view(kiln_dtype dt, kiln_shape shape, void *data);
void kiln_tensor_free(kiln_tensor *t);
size_t kiln_tensor_nbytes(const kiln_tensor *t);

/* bf16 <-> f32 (round to nearest even; NaN stays NaN). */
uint16_t kiln_f32_to_bf16(float x);
float kiln_bf16_to_f32(uint16_t x);

#endif

/* tensor.c — dtypes, shapes and owned/viewed tensors (see kiln/tensor.h). */
#include "kiln/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/mem.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[KILN_DTYPE_COUNT] = {
    [KILN_F32] = {"F32", 4}, [KILN_BF16] = {"BF16", 2}, [KILN_I32] = {"I32", 4},
    [KILN_I64] = {"I64", 8}, [KILN_U8] = {"U8", 1},
};

size_t kiln_dtype_size(kiln_dtype dt) { return (unsigned)dt < KILN_DTYPE_COUNT ? dtypes[dt].size : 0; }

const char *kiln_dtype_name(kiln_dtype dt) {
    return (unsigned)dt < KILN_DTYPE_COUNT ? dtypes[dt].name : "?";
}

kiln_dtype kiln_dtype_from_name(const char *name) {
    for (int i = 0; i < KILN_DTYPE_COUNT; i++)
        if (strcmp(name, dtypes[i].name) == 0) return (kiln_dtype)i;
    return KILN_DTYPE_COUNT;
}

kiln_shape kiln_shape_make(int ndim, const int64_t *dims) {
    kiln_shape s = {0};
    s.ndim = ndim;
    for (int i = 0; i < ndim && i < KILN_MAX_DIMS; i++) s.dims[i] = dims[i];
    return s;
}

int64_t kiln_shape_numel(const kiln_shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->dims[i];
    return n;
}

int kiln_shape_equal(const kiln_shape *a, const kiln_shape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

char *kiln_shape_str(const kiln_shape *s, char *buf, size_t cap) {
    size_t n = 0;
    if (cap == 0) return buf;
    buf[0] = 0;
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "[");
    for (int i = 0; i < s->ndim; i++)
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%lld", i ? ", " : "",
                              (long long)s->dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

kiln_tensor *kiln_tensor_new(kiln_dtype dt, int ndim, const int64_t *dims) {
    if ((unsigned)dt >= KILN_DTYPE_COUNT) {
        kiln_error(KILN_ERR_INVALID, "tensor: unknown dtype %d", (int)dt);
        return NULL;
    }
    if (ndim < 0 || ndim > KILN_MAX_DIMS) {
        kiln_error(KILN_ERR_SHAPE, "tensor: %d dims (at most %d)", ndim, KILN_MAX_DIMS);
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (dims[i] <= 0) {
            kiln_error(KILN_ERR_SHAPE, "tensor: dim %d is %lld (must be > 0)", i,
                       (long long)dims[i]);
            return NULL;
        }
    kiln_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        kiln_error(KILN_ERR_NOMEM, "tensor: out of memory");
        return NULL;
    }
    t->dtype = dt;
    t->shape = kiln_shape_make(ndim, dims);
    t->data = kiln_alloc(kiln_tensor_nbytes(t) ? kiln_tensor_nbytes(t) : 1);
    t->owns_data = 1;
    if (!t->data) {
        free(t);
        return NULL;
    }
    return t;
}

kiln_tensor kiln_tensor_view(kiln_dtype dt, kiln_shape shape, void *data) {
    kiln_tensor t = {dt, shape, data, 0};
    return t;
}

void kiln_tensor_free(kiln_tensor *t) {
    if (!t) return;
    if (t->owns_data) kiln_free(t->data);
    free(t);
}

size_t kiln_tensor_nbytes(const kiln_tensor *t) {
    return (size_t)kiln_shape_numel(&t->shape) * kiln_dtype_size(t->dtype);
}

uint16_t kiln_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float kiln_bf16_to_f32(uint16_t x) {
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

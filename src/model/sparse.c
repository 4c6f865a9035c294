/* sparse.c — bitmask + values storage of mostly-zero tensors (see model/sparse.h). The reader
 * trusts nothing in the file: every count is checked against the others before any value is
 * copied, so no file can make it read or write out of bounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/mem.h"
#include "model/sparse.h"

size_t kiln_sparse_nonzeros(const float *w, size_t n) {
    size_t nnz = 0;
    for (size_t i = 0; i < n; i++) nnz += w[i] != 0.0f;
    return nnz;
}

int kiln_sparse_worth(size_t n, size_t nnz) {
    return 4 * nnz + (n + 7) / 8 < 4 * n;
}

void kiln_sparse_encode(const float *w, size_t n, uint8_t *bits, float *values) {
    memset(bits, 0, (n + 7) / 8);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i] != 0.0f) bits[i >> 3] |= (uint8_t)(1u << (i & 7)), values[k++] = w[i];
}

static kiln_status densify(const kiln_st_file *f, const char *wpath, const char *name,
                           const kiln_shape *shape, float *out) {
    char key[400];
    size_t n = (size_t)kiln_shape_numel(shape), nb = (n + 7) / 8, ones = 0;
    snprintf(key, sizeof key, "%s%s", name, KILN_SPARSE_BITMASK);
    const kiln_st_entry *b = kiln_st_find(f, key);
    if (!b || b->dtype != KILN_U8 || b->shape.ndim != 1 || (size_t)b->shape.dims[0] != nb)
        return kiln_error(KILN_ERR_FORMAT, "%s: sparse tensor '%s' needs '%s' as U8 [%zu]",
                          wpath, name, key, nb);
    const uint8_t *bits = b->data;
    for (size_t j = 0; j < nb; j++) ones += (size_t)__builtin_popcount(bits[j]);
    if (n % 8 && bits[nb - 1] >> (n % 8))
        return kiln_error(KILN_ERR_FORMAT, "%s: '%s' has bits set past the tensor's %zu values",
                          wpath, key, n);
    snprintf(key, sizeof key, "%s%s", name, KILN_SPARSE_VALUES);
    const kiln_st_entry *v = kiln_st_find(f, key);
    if (!v || v->dtype != KILN_F32 || v->shape.ndim != 1 || (size_t)v->shape.dims[0] != ones)
        return kiln_error(KILN_ERR_FORMAT, "%s: sparse tensor '%s' needs '%s' as F32 [%zu] (the "
                          "bitmask's ones)", wpath, name, key, ones);
    const float *vals = v->data;
    for (size_t i = 0, k = 0; i < n; i++)
        out[i] = bits[i >> 3] >> (i & 7) & 1 ? vals[k++] : 0.0f;
    return KILN_OK;
}

kiln_status kiln_sparse_read(const cJSON *field, const kiln_st_file *f, const char *json_path,
                             const char *weights_path, kiln_sparse_set *out) {
    memset(out, 0, sizeof *out);
    if (!field) return KILN_OK;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(field, "format");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(field, "tensors");
    if (!cJSON_IsObject(field) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "bitmask") ||
        !cJSON_IsArray(list))
        return kiln_error(KILN_ERR_FORMAT, "%s: \"sparse\": expected {\"format\": \"bitmask\", "
                          "\"tensors\": [...]}", json_path);
    int n = cJSON_GetArraySize(list);
    if (n && !(out->e = calloc((size_t)n, sizeof *out->e)))
        return kiln_error(KILN_ERR_NOMEM, "servable: out of memory");
    kiln_status st = KILN_OK;
    for (int i = 0; i < n && !st; i++) {
        const cJSON *t = cJSON_GetArrayItem(list, i);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
        kiln_shape sh = {0};
        int ok = cJSON_IsString(name) && cJSON_IsArray(shape) &&
                 cJSON_GetArraySize(shape) <= KILN_MAX_DIMS;
        for (int d = 0; ok && d < cJSON_GetArraySize(shape); d++) {
            const cJSON *v = cJSON_GetArrayItem(shape, d);
            ok = cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1e12 &&
                 v->valuedouble == (double)(int64_t)v->valuedouble;
            if (ok) sh.dims[sh.ndim++] = (int64_t)v->valuedouble;
        }
        for (int j = 0; ok && j < i; j++) ok = strcmp(out->e[j].name, name->valuestring) != 0;
        if (ok && kiln_shape_numel(&sh) > ((int64_t)1 << 34)) ok = 0;
        if (!ok) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: \"sparse.tensors[%d]\": expected a unique "
                            "{\"name\": ..., \"shape\": [...]}", json_path, i);
            break;
        }
        size_t numel = (size_t)kiln_shape_numel(&sh);
        float *data = kiln_alloc((numel ? numel : 1) * sizeof *data);
        out->e[out->n++] = (kiln_st_entry){name->valuestring, KILN_F32, sh, data};
        st = data ? densify(f, weights_path, name->valuestring, &sh, data)
                  : kiln_error(KILN_ERR_NOMEM, "servable: out of memory");
    }
    if (st) kiln_sparse_set_free(out);
    return st;
}

const kiln_st_entry *kiln_sparse_find(const kiln_sparse_set *s, const kiln_st_file *f,
                                      const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->e[i].name, name)) return &s->e[i];
    return kiln_st_find(f, name);
}

int kiln_sparse_owns(const kiln_sparse_set *s, const char *name) {
    for (int i = 0; i < s->n; i++) {
        size_t l = strlen(s->e[i].name);
        if (!strncmp(name, s->e[i].name, l) &&
            (!strcmp(name + l, KILN_SPARSE_BITMASK) || !strcmp(name + l, KILN_SPARSE_VALUES)))
            return 1;
    }
    return 0;
}

void kiln_sparse_set_free(kiln_sparse_set *s) {
    for (int i = 0; i < s->n; i++) kiln_free((void *)s->e[i].data);
    free(s->e);
    memset(s, 0, sizeof *s);
}

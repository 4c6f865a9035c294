/* prune.c — magnitude pruning masks (see kiln/prune.h).
 *
 * Exactness: the k smallest magnitudes are found by sorting 64-bit keys (bits of |w| << 32 |
 * index). A non-negative float's bit pattern orders like its value, so the keys order by
 * magnitude and then by position, all distinct: exactly k values fall below the k-th key, with
 * no tie to resolve. NaN sorts above every number (never pruned first). Tensors are limited to
 * 2^32 values (far above any kernel).
 */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/prune.h"

/* train.freeze's rule (src/model/freeze.c): the parameter name, its layer or one of its scopes. */
static int glob_hits(const char *glob, const char *param) {
    if (fnmatch(glob, param, 0) == 0) return 1;
    char layer[256];
    snprintf(layer, sizeof layer, "%s", param);
    char *dot = strrchr(layer, '.');
    if (dot) *dot = 0;
    if (fnmatch(glob, layer, 0) == 0) return 1;
    for (char *slash = strrchr(layer, '/'); slash; slash = strrchr(layer, '/')) {
        *slash = 0;
        if (fnmatch(glob, layer, 0) == 0) return 1;
    }
    return 0;
}

static int is_kernel(const kiln_param_info *p) {
    size_t n = strlen(p->name);
    return p->trainable && n > 7 && !strcmp(p->name + n - 7, ".kernel");
}

kiln_status kiln_prune_select(const kiln_graph *g, const char *const *globs, int n_globs,
                              unsigned char *sel) {
    int np = kiln_graph_param_count(g), any = 0;
    for (int i = 0; i < np; i++) {
        const kiln_param_info *p = kiln_graph_param_info(g, i);
        sel[i] = (unsigned char)(is_kernel(p) && n_globs == 0);
        any |= is_kernel(p);
    }
    if (!any)
        return kiln_error(KILN_ERR_INVALID, "params: the model has no kernel to prune (dense and "
                          "convolution layers have one)");
    for (int k = 0; k < n_globs; k++) {
        int hit = 0;
        for (int i = 0; i < np; i++) {
            const kiln_param_info *p = kiln_graph_param_info(g, i);
            if (is_kernel(p) && glob_hits(globs[k], p->name)) sel[i] = 1, hit = 1;
        }
        if (!hit)
            return kiln_error(KILN_ERR_INVALID, "params[%d]: '%s' matches no kernel (only "
                              "'<layer>.kernel' parameters are pruned; names are like 'dense_1', "
                              "'dense_1.kernel', 'backbone/*')", k, globs[k]);
    }
    return KILN_OK;
}

size_t kiln_prune_count(size_t n, double sparsity) {
    double k = floor(sparsity * (double)n + 0.5);
    return k <= 0 ? 0 : k >= (double)n ? n : (size_t)k;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t key_of(float v, size_t i) {
    float a = fabsf(v);
    uint32_t bits;
    memcpy(&bits, &a, sizeof bits);
    return (uint64_t)bits << 32 | (uint64_t)i;
}

kiln_status kiln_prune_mask(const float *w, size_t n, double sparsity, unsigned char *mask) {
    if (!(sparsity >= 0 && sparsity <= 1))
        return kiln_error(KILN_ERR_INVALID, "prune: sparsity %g is outside [0, 1]", sparsity);
    if (n > UINT32_MAX)
        return kiln_error(KILN_ERR_INVALID, "prune: a tensor of %zu values is too large", n);
    size_t k = kiln_prune_count(n, sparsity);
    memset(mask, 1, n);
    if (k == 0) return KILN_OK;
    if (k == n) return memset(mask, 0, n), KILN_OK;
    uint64_t *keys = malloc(n * sizeof *keys);
    if (!keys) return kiln_error(KILN_ERR_NOMEM, "prune: out of memory");
    for (size_t i = 0; i < n; i++) keys[i] = key_of(w[i], i);
    qsort(keys, n, sizeof *keys, cmp_u64);
    for (size_t j = 0; j < k; j++) mask[keys[j] & 0xffffffffu] = 0;
    free(keys);
    return KILN_OK;
}

kiln_status kiln_prune_magnitude(kiln_graph *g, double sparsity, const char *const *globs,
                                 int n_globs, float *weights, size_t *pruned, size_t *total) {
    if (!(sparsity >= 0 && sparsity < 1))
        return kiln_error(KILN_ERR_INVALID, "prune: sparsity %g is outside [0, 1)", sparsity);
    kiln_status st = kiln_graph_init_params(g);
    if (st) return st;
    int np = kiln_graph_param_count(g);
    unsigned char *sel = calloc((size_t)(np ? np : 1), 1);
    if (!sel) return kiln_error(KILN_ERR_NOMEM, "prune: out of memory");
    float *w = weights ? weights : kiln_graph_params(g);
    size_t zeroed = 0, all = 0, biggest = 0;
    st = kiln_prune_select(g, globs, n_globs, sel);
    for (int i = 0; i < np; i++)
        if (sel[i] && kiln_graph_param_info(g, i)->numel > biggest)
            biggest = kiln_graph_param_info(g, i)->numel;
    unsigned char *mask = st ? NULL : malloc(biggest ? biggest : 1);
    if (!st && !mask) st = kiln_error(KILN_ERR_NOMEM, "prune: out of memory");
    for (int i = 0; i < np && !st; i++) {
        const kiln_param_info *p = kiln_graph_param_info(g, i);
        if (!sel[i]) continue;
        float *v = w + p->offset;
        if ((st = kiln_prune_mask(v, p->numel, sparsity, mask))) break;
        for (size_t j = 0; j < p->numel; j++)
            if (!mask[j]) v[j] = 0.0f, zeroed++;
        all += p->numel;
    }
    free(mask), free(sel);
    if (st) return st;
    if (pruned) *pruned = zeroed;
    if (total) *total = all;
    return KILN_OK;
}

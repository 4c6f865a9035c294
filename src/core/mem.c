/* mem.c — 64-byte aligned allocation and bump arenas (see kiln/mem.h). */
#include "kiln/mem.h"

#include <stdlib.h>
#include <string.h>

#include "kiln/status.h"

void *kiln_alloc(size_t bytes) {
    if (bytes == 0) {
        kiln_error(KILN_ERR_INVALID, "alloc: zero bytes");
        return NULL;
    }
    size_t n = kiln_align_up(bytes);
    if (n < bytes) {
        kiln_error(KILN_ERR_NOMEM, "alloc: %zu bytes overflows", bytes);
        return NULL;
    }
    void *p = aligned_alloc(KILN_ALIGN, n);
    if (!p) {
        kiln_error(KILN_ERR_NOMEM, "alloc: out of memory (%zu bytes)", bytes);
        return NULL;
    }
    memset(p, 0, n);
    return p;
}

void kiln_free(void *p) { free(p); }

int kiln_arena_init(kiln_arena *a, size_t cap) {
    a->used = 0;
    a->cap = kiln_align_up(cap ? cap : KILN_ALIGN);
    a->base = kiln_alloc(a->cap);
    return a->base ? 0 : -1;
}

void *kiln_arena_take(kiln_arena *a, size_t bytes) {
    size_t n = kiln_align_up(bytes ? bytes : 1);
    if (n > a->cap - a->used) {
        kiln_error(KILN_ERR_NOMEM, "arena: %zu bytes requested, %zu left", bytes, a->cap - a->used);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += n;
    return p;
}

void kiln_arena_free(kiln_arena *a) {
    kiln_free(a->base);
    a->base = NULL;
    a->used = a->cap = 0;
}

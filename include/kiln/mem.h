/* kiln/mem.h — aligned allocation and bump arenas.
 *
 * All compute buffers are 64-byte aligned (one cache line, one AVX-512 register). An arena hands
 * out aligned slices of one block and frees them all at once; a compiled plan uses one for all
 * of its activations, so a training step never calls malloc.
 */
#ifndef KILN_MEM_H
#define KILN_MEM_H

#include <stddef.h>

#define KILN_ALIGN 64

/* Zeroed, 64-byte aligned; NULL (with message) on failure or on size 0. */
void *kiln_alloc(size_t bytes);
void kiln_free(void *p);
static inline size_t kiln_align_up(size_t n) { return (n + KILN_ALIGN - 1) & ~(size_t)(KILN_ALIGN - 1); }

typedef struct {
    char *base;
    size_t used, cap;
} kiln_arena;

/* Reserves cap bytes (zeroed). */
int kiln_arena_init(kiln_arena *a, size_t cap);
/* An aligned slice of the arena; NULL when full. */
void *kiln_arena_take(kiln_arena *a, size_t bytes);
void kiln_arena_free(kiln_arena *a);

#endif

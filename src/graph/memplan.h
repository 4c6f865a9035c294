/* memplan.h — lifetime-based arena offsets (see memplan.c). */
#ifndef KILN_MEMPLAN_H
#define KILN_MEMPLAN_H

#include <stddef.h>

typedef struct {
    size_t bytes;
    int start, end; /* live over steps [start, end] */
    size_t offset;  /* out: 64-byte aligned */
    void **where;   /* the pointer to set to base + offset */
} kiln_mem_req;

/* Assigns offsets; returns the arena size in bytes ((size_t)-1 when out of memory). */
size_t kiln_memplan_assign(kiln_mem_req *reqs, int n);

#endif

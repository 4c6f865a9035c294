/* board_util.c — small pieces the board's files share: file signatures, string tables, JSON
 * numbers and times.
 *
 * A string table keeps each distinct string once and names it by its index, so the runs table
 * can hold 10,000 runs x 60 params as pairs of integers and compare values across runs with ==.
 * Lookup is open addressing on a 64-bit FNV-1a hash, with the table kept at most half full.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "board/board_internal.h"
#include "run/run_internal.h"

int board_sig_of(const char *path, board_sig *sig) {
    return board_sig_at(AT_FDCWD, path, sig);
}

int board_sig_at(int dirfd, const char *path, board_sig *sig) {
    struct stat st;
    memset(sig, 0, sizeof *sig);
    if (fstatat(dirfd, path, &st, 0) != 0 || !S_ISREG(st.st_mode)) return 0;
    sig->exists = 1;
    sig->dev = st.st_dev;
    sig->ino = st.st_ino;
    sig->size = st.st_size;
    sig->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 1;
}

int board_sig_same(const board_sig *a, const board_sig *b) {
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

uint64_t board_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int strtab_grow(board_strtab *t) {
    uint32_t n_slots = t->n_slots ? 2 * t->n_slots : 256;
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots) return -1;
    for (uint32_t i = 0; i < t->n; i++) {
        uint32_t j = (uint32_t)board_hash(t->str[i]) & (n_slots - 1);
        while (slots[j]) j = (j + 1) & (n_slots - 1);
        slots[j] = i + 1;
    }
    free(t->slots);
    t->slots = slots, t->n_slots = n_slots;
    return 0;
}

uint32_t board_strtab_intern(board_strtab *t, const char *s) {
    if (2 * (t->n + 1) > t->n_slots && strtab_grow(t)) return UINT32_MAX;
    uint32_t j = (uint32_t)board_hash(s) & (t->n_slots - 1);
    for (; t->slots[j]; j = (j + 1) & (t->n_slots - 1))
        if (!strcmp(t->str[t->slots[j] - 1], s)) return t->slots[j] - 1;
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? 2 * t->cap : 64;
        char **str = realloc(t->str, cap * sizeof *str);
        if (!str) return UINT32_MAX;
        t->str = str, t->cap = cap;
    }
    if (!(t->str[t->n] = strdup(s))) return UINT32_MAX;
    t->slots[j] = t->n + 1;
    return t->n++;
}

void board_strtab_free(board_strtab *t) {
    for (uint32_t i = 0; i < t->n; i++) free(t->str[i]);
    free(t->str);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

void board_json_number(kiln_sbuf *b, double v) {
    char num[40];
    int n = kiln_run_format_number(num, sizeof num, v);
    kiln_sbuf_put(b, num, (size_t)n);
}

void board_json_time(kiln_sbuf *b, int64_t ns) {
    char iso[24];
    kiln_run_iso_time((long long)(ns / 1000000000), iso);
    kiln_sbuf_json_str(b, iso);
}

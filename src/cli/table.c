/* table.c — aligned text tables (see table.h). */
#include "cli/table.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void kiln_table_init(kiln_table *t, int cols) {
    memset(t, 0, sizeof *t);
    t->cols = cols < 1 ? 1 : cols > KILN_TABLE_MAX_COLS ? KILN_TABLE_MAX_COLS : cols;
}

void kiln_table_add(kiln_table *t, const char *const *cells) {
    if (t->failed) return;
    if (t->rows == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        char **v = realloc(t->cells, (size_t)cap * (size_t)t->cols * sizeof *v);
        if (!v) {
            t->failed = 1;
            return;
        }
        t->cells = v, t->cap = cap;
    }
    char **row = t->cells + (size_t)t->rows * (size_t)t->cols;
    for (int c = 0; c < t->cols; c++) {
        row[c] = strdup(cells[c] ? cells[c] : "");
        if (!row[c]) {
            while (c--) free(row[c]);
            t->failed = 1;
            return;
        }
    }
    t->rows++;
}

void kiln_table_row(kiln_table *t, ...) {
    const char *cells[KILN_TABLE_MAX_COLS];
    va_list ap;
    va_start(ap, t);
    for (int c = 0; c < t->cols; c++) cells[c] = va_arg(ap, const char *);
    va_end(ap);
    kiln_table_add(t, cells);
}

static int width(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int kiln_table_print(const kiln_table *t, FILE *f, int indent) {
    int w[KILN_TABLE_MAX_COLS] = {0};
    for (int r = 0; r < t->rows; r++)
        for (int c = 0; c < t->cols; c++) {
            int n = width(t->cells[(size_t)r * (size_t)t->cols + (size_t)c]);
            if (n > w[c]) w[c] = n;
        }
    int last = t->cols - 1;
    while (last > 0 && (w[last] == 0 || t->hidden[last])) last--; /* nothing to print there */
    for (int r = 0; r < t->rows; r++) {
        char **row = t->cells + (size_t)r * (size_t)t->cols;
        int end = last; /* no padding after the row's last cell */
        while (end > 0 && (!row[end][0] || t->hidden[end])) end--;
        fprintf(f, "%*s", indent, "");
        for (int c = 0; c <= end; c++) {
            if (t->hidden[c]) continue;
            int pad = w[c] - width(row[c]);
            if (t->right[c]) fprintf(f, "%*s", pad, "");
            fputs(row[c], f);
            if (c < end) fprintf(f, "%*s", (t->right[c] ? 0 : pad) + 2, "");
        }
        fputc('\n', f);
    }
    return t->failed ? -1 : 0;
}

void kiln_table_free(kiln_table *t) {
    for (size_t i = 0; i < (size_t)t->rows * (size_t)t->cols; i++) free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

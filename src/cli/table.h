/* table.h — aligned text tables for the kiln command (kiln runs, kiln models).
 *
 * Cells are copied in; kiln_table_print pads every column to its widest cell (counting UTF-8
 * characters, not bytes), two spaces apart, the last column unpadded, numbers right-aligned
 * when the column asks for it. Row 0 is the header. Out of memory, the table prints what it
 * holds and kiln_table_print returns -1.
 */
#ifndef KILN_CLI_TABLE_H
#define KILN_CLI_TABLE_H

#include <stdio.h>

#define KILN_TABLE_MAX_COLS 64

typedef struct {
    int cols;
    char **cells; /* [rows * cols] */
    int rows, cap;
    unsigned char right[KILN_TABLE_MAX_COLS];  /* right-aligned columns */
    unsigned char hidden[KILN_TABLE_MAX_COLS]; /* columns left out when printing */
    int failed;
} kiln_table;

/* cols: 1..KILN_TABLE_MAX_COLS (more are cut). */
void kiln_table_init(kiln_table *t, int cols);
/* Appends a row of t->cols cells (NULL cells print empty). */
void kiln_table_add(kiln_table *t, const char *const *cells);
/* Appends a row whose cells are given as arguments (t->cols of them). */
void kiln_table_row(kiln_table *t, ...);
/* Prints every row with indent spaces before it; 0, or -1 when a row was lost. */
int kiln_table_print(const kiln_table *t, FILE *f, int indent);
void kiln_table_free(kiln_table *t);

#endif

/* run_servable.c — runs a servable version on raw float32 rows and writes its "output" (the
 * logits, which `kiln predict --json` does not print for a classifier) for tests/onnx/parity.py.
 *
 * usage: onnx_run_servable VERSION_DIR ROWS IN.f32 OUT.f32
 * IN.f32 holds ROWS x (input row size) floats, already preprocessed (an imported servable has
 * none); OUT.f32 receives ROWS x (output row size) floats. Exit 0, or 1 with the error. */
#include <stdio.h>
#include <stdlib.h>

#include "kiln/export.h"
#include "kiln/kiln.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s VERSION_DIR ROWS IN.f32 OUT.f32\n", argv[0]);
        return 2;
    }
    int rows = atoi(argv[2]);
    kiln_servable *s = NULL;
    if (kiln_servable_load(argv[1], &s) != KILN_OK || rows < 1) {
        fprintf(stderr, "%s\n", kiln_last_error());
        return 1;
    }
    int64_t in_n = kiln_servable_row_size(kiln_servable_input(s, 0));
    int64_t out_n = kiln_servable_row_size(kiln_servable_output(s, 0));
    float *x = malloc((size_t)(rows * in_n) * sizeof *x);
    float *y = malloc((size_t)(rows * out_n) * sizeof *y);
    FILE *f = fopen(argv[3], "rb");
    int ok = x && y && f && fread(x, sizeof *x, (size_t)(rows * in_n), f) == (size_t)(rows * in_n);
    if (f) fclose(f);
    kiln_plan *p = ok ? kiln_servable_plan(s, rows) : NULL;
    ok = p && kiln_servable_predict(s, p, x, rows, y, NULL) == KILN_OK;
    if (ok && (f = fopen(argv[4], "wb"))) {
        ok = fwrite(y, sizeof *y, (size_t)(rows * out_n), f) == (size_t)(rows * out_n);
        ok = !fclose(f) && ok;
    } else {
        ok = 0;
    }
    if (!ok) fprintf(stderr, "run_servable: %s\n", kiln_last_error());
    free(x), free(y);
    kiln_servable_free(s);
    return ok ? 0 : 1;
}

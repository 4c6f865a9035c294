/* export_logits — a test helper: the raw outputs (logits) of a kiln export, as kiln serve computes
 * them, for tests/formats/torch_export.py to compare with PyTorch.
 *
 *   kiln_export_logits VERSION_DIR IN.f32 OUT.f32
 *
 * IN.f32 holds rows of raw input values (float32, little-endian, C order; as in the training
 * data, before the export's preprocessing), OUT.f32 gets [rows, outputs] float32 logits. The
 * preprocessing and the forward pass are the library's (kiln_servable_preprocess, _predict).
 * Exit 0 on success, 1 with a message otherwise. */
#include <stdio.h>
#include <stdlib.h>

#include "kiln/export.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: kiln_export_logits VERSION_DIR IN.f32 OUT.f32\n");
        return 1;
    }
    kiln_servable *s = NULL;
    void *raw = NULL;
    size_t len = 0;
    kiln_status st = kiln_servable_load(argv[1], &s);
    if (!st) st = kiln_file_read_all(argv[2], &raw, &len, (size_t)1 << 30);
    if (st) {
        fprintf(stderr, "kiln_export_logits: %s\n", kiln_last_error());
        kiln_servable_free(s);
        return 1;
    }
    int64_t in_row = kiln_servable_row_size(kiln_servable_input(s, 0)),
            out_row = kiln_servable_row_size(kiln_servable_output(s, 0));
    int rows = (int)(len / sizeof(float) / (size_t)in_row);
    int rc = 1;
    float *x = malloc(len + 1), *y = malloc((size_t)(rows ? rows : 1) * (size_t)out_row * sizeof *y);
    kiln_plan *p = NULL;
    if (!x || !y || rows < 1 || len != (size_t)rows * (size_t)in_row * sizeof(float))
        fprintf(stderr, "kiln_export_logits: %s: %zu bytes are not whole rows of %lld floats\n", argv[2], len,
                (long long)in_row);
    else if ((st = kiln_servable_preprocess(s, raw, x, rows)) || !(p = kiln_servable_plan_new(s, rows)) ||
             (st = kiln_servable_predict(s, p, x, rows, y, NULL)))
        fprintf(stderr, "kiln_export_logits: %s\n", kiln_last_error());
    else if ((st = kiln_file_write_atomic(argv[3], y, (size_t)rows * (size_t)out_row * sizeof *y)))
        fprintf(stderr, "kiln_export_logits: %s\n", kiln_last_error());
    else
        rc = 0;
    kiln_plan_free(p);
    free(x), free(y);
    kiln_free(raw);
    kiln_servable_free(s);
    return rc;
}

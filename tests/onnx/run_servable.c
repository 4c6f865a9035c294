/* run_servable.c — runs a servable version on raw float32 rows and writes its "output" (the
 * logits, which `kiln predict --json` does not print for a classifier) for tests/onnx/parity.py.
 *
 * usage: onnx_run_servable VERSION_DIR ROWS IN.f32 OUT.f32
 * IN.f32 holds ROWS x (input row size) floats, already preprocessed (an imported servable has
 * none); OUT.f32 receives ROWS x (output row size) floats. Exit 0, or 1 with the error.
 *
 * usage: onnx_run_servable --config CONFIG.yaml BASE_DIR
 * builds the model of a kiln config, applies its model.init_from (the report goes to stderr)
 * and exports it as version 1 of BASE_DIR, for the first form to run. Exit 0, or 2 with the
 * error (as kiln train exits on a config error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/export.h"
#include "kiln/kiln.h"

static int from_config(const char *path, const char *base) {
    kiln_cfg *cfg = NULL;
    kiln_model km = {0};
    char *report = NULL;
    kiln_status st = kiln_config_load(path, &cfg);
    if (!st) st = kiln_config_resolve(cfg);
    if (!st) st = kiln_model_build(cfg, &km);
    if (!st) st = kiln_model_init_from(cfg, km.graph, &report);
    if (report) fputs(report, stderr);
    if (!st) {
        kiln_export_source src = {.model = &km, .cfg = cfg};
        st = kiln_export_graph(&src, base, 1, NULL);
    }
    if (st) fprintf(stderr, "run_servable --config: %s\n", kiln_last_error());
    free(report);
    kiln_model_free(&km);
    kiln_cfg_free(cfg);
    return st ? 2 : 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--config")) return from_config(argv[2], argv[3]);
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

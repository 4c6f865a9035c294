/* predict_backend.c — the model `kiln predict` asks, in-process or over HTTP (see predict.h).
 *
 * In-process: the export's servable, one inference plan compiled for min(rows, batch) rows and
 * reused for every piece (a short last piece is padded by kiln_servable_predict), the raw rows
 * preprocessed into a scratch buffer first, exactly as the server does. Over HTTP: a kiln_client
 * whose metadata gives the row shape, which output is "output" (the only one, or the one of
 * that name) and which is "probabilities"; each piece is one :predict request on the client's
 * kept-alive connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/predict.h"
#include "kiln/kiln.h"

static int is_file(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

kiln_status kiln_cli_predictor_open_dir(kiln_cli_predictor *p, const char *dir, int64_t version,
                                        int batch, int *usage) {
    memset(p, 0, sizeof *p);
    p->batch = batch;
    *usage = 0;
    char vdir[4096];
    int n = (int)strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (is_file(dir, "model.json")) {
        if (version) {
            *usage = 1;
            return kiln_error(KILN_ERR_INVALID,
                              "%s is a version folder (it has model.json); --version picks a "
                              "version in a base folder",
                              dir);
        }
        snprintf(vdir, sizeof vdir, "%.*s", n, dir);
    } else {
        int64_t *versions = NULL;
        int nv = 0;
        kiln_status st = kiln_export_list_versions(dir, &versions, &nv);
        if (st) {
            *usage = st == KILN_ERR_NOTFOUND;
            return st;
        }
        int64_t pick = 0;
        for (int i = 0; i < nv; i++)
            if (!version || versions[i] == version) pick = versions[i];
        kiln_free(versions);
        if (!pick) {
            *usage = 1;
            if (version)
                return kiln_error(KILN_ERR_NOTFOUND, "%s: no complete version %lld", dir,
                                  (long long)version);
            return kiln_error(
                KILN_ERR_NOTFOUND,
                "%s: no model.json and no complete versions (folders 1/, 2/, ... "
                "holding model.json and weights.safetensors; kiln export writes them)",
                dir);
        }
        snprintf(vdir, sizeof vdir, "%.*s/%lld", n, dir, (long long)pick);
    }
    kiln_status st = kiln_servable_load(vdir, &p->sv);
    if (st) return st;
    const kiln_servable_tensor *in = kiln_servable_input(p->sv, 0),
                               *out = kiln_servable_output(p->sv, 0);
    p->spec.row = kiln_shape_make(in->shape.ndim - 1, in->shape.dims + 1);
    p->spec.input_name = in->name;
    p->out_size = kiln_servable_row_size(out);
    if (kiln_servable_output_count(p->sv) > 1)
        p->prob_size = kiln_servable_row_size(kiln_servable_output(p->sv, 1));
    p->n_classes = kiln_servable_class_count(p->sv);
    static const char *names_none[1];
    const char **names = p->n_classes ? malloc((size_t)p->n_classes * sizeof *names) : names_none;
    if (!names) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < p->n_classes; i++) names[i] = kiln_servable_class_name(p->sv, i);
    p->class_names = names;
    return KILN_OK;
}

kiln_status kiln_cli_predictor_open_server(kiln_cli_predictor *p, const kiln_client_config *cfg,
                                           int batch) {
    memset(p, 0, sizeof *p);
    p->batch = batch;
    kiln_status st = kiln_client_open(cfg, &p->cl);
    const kiln_client_model *m = NULL;
    if (!st) st = kiln_client_metadata(p->cl, &m);
    if (st) return st;
    p->spec.row = kiln_shape_make(m->input.shape.ndim - 1, m->input.shape.dims + 1);
    p->spec.input_name = m->input.name;
    p->n_outputs = m->n_outputs;
    p->out_i = m->n_outputs == 1 ? 0 : kiln_client_output_index(m, "output");
    p->prob_i = kiln_client_output_index(m, "probabilities");
    if (p->out_i < 0)
        return kiln_error(KILN_ERR_FORMAT,
                          "model %s: its signature has %d outputs and none is named \"output\"",
                          cfg->model, m->n_outputs);
    p->out_size = kiln_client_row_size(&m->outputs[p->out_i]);
    p->prob_size = p->prob_i >= 0 ? kiln_client_row_size(&m->outputs[p->prob_i]) : 0;
    if (p->out_size < 1 || p->prob_size < 0)
        return kiln_error(KILN_ERR_FORMAT, "model %s: an output has no fixed row size", cfg->model);
    p->n_classes = m->n_classes;
    p->class_names = m->class_names;
    return KILN_OK;
}

kiln_status kiln_cli_predictor_run(kiln_cli_predictor *p, const float *x, int64_t rows, float *out,
                                   float *probs) {
    int64_t in_size = kiln_shape_numel(&p->spec.row);
    if (p->cl) {
        float *outs[KILN_CLIENT_MAX_OUTPUTS] = {0};
        for (int64_t r = 0; r < rows; r += p->batch) {
            int64_t k = rows - r < p->batch ? rows - r : p->batch;
            outs[p->out_i] = out + r * p->out_size;
            if (p->prob_i >= 0) outs[p->prob_i] = probs ? probs + r * p->prob_size : NULL;
            kiln_status st = kiln_client_predict(p->cl, x + r * in_size, k, outs);
            if (st) return st;
        }
        return KILN_OK;
    }
    if (!p->plan) { /* compiled once, for the first call's size */
        int b = rows < p->batch ? (int)rows : p->batch;
        p->scratch = malloc((size_t)b * (size_t)in_size * sizeof *p->scratch);
        if (!p->scratch) return kiln_error(KILN_ERR_NOMEM, "out of memory");
        if (!(p->plan = kiln_servable_plan(p->sv, b))) return KILN_ERR_BACKEND;
        p->batch = b;
    }
    for (int64_t r = 0; r < rows; r += p->batch) {
        int k = rows - r < p->batch ? (int)(rows - r) : p->batch;
        kiln_status st = kiln_servable_preprocess(p->sv, x + r * in_size, p->scratch, k);
        if (!st)
            st = kiln_servable_predict(p->sv, p->plan, p->scratch, k, out + r * p->out_size,
                                       probs && p->prob_size ? probs + r * p->prob_size : NULL);
        if (st) return st;
    }
    return KILN_OK;
}

void kiln_cli_predictor_close(kiln_cli_predictor *p) {
    if (p->sv) {
        if (p->n_classes) free((void *)p->class_names);
        kiln_servable_free(p->sv); /* frees its cached plans */
    }
    free(p->scratch);
    kiln_client_free(p->cl);
    memset(p, 0, sizeof *p);
}

/* tb_explain.c — log.explain's TensorBoard images (see tb_explain.h).
 *
 * The samples are the first log.explain.samples rows of the validation split, read once through
 * a loader of their own (no shuffle, no augmentation: as validation sees them, normalized). At a
 * due epoch end they go through an explainer over the training graph (src/explain/: gradient
 * plans of its own, compiled at the first use and kept; dropped when a stage replaces the
 * graph) with the predicted class as the target and the default options of each method (the
 * black baseline is the all-zero model input). The image is a near-square grid of tiles, each
 * the attribution as a cubehelix heat map over its sample (kiln_explain_overlay), magnified to
 * about 64 pixels, with 2-pixel gaps. The same grid goes to <run>/explain/epoch-<N>-<method>.png
 * (written atomically), which kiln board's run page shows.
 */
#include "train/tb_explain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/explain.h"
#include "kiln/fileio.h"
#include "kiln/graph.h"

struct kiln_tb_explain {
    kiln_model *m;
    kiln_explain_method method;
    int64_t every;
    int n, c, h, w;
    float *x;    /* [n][c h w] the samples as the model sees them */
    float *attr; /* [n][c h w] */
    kiln_explainer *e;
    char dir[4096]; /* <run>/explain */
};

kiln_tb_explain *kiln_tb_explain_new(const kiln_cfg *cfg, kiln_model *m, const kiln_inputs *in,
                                     kiln_progress *prog, const char *run_dir) {
    if (!kiln_cfg_at(cfg, "log.explain") || !in->validation) return NULL;
    kiln_shape s = kiln_node_shape(m->input);
    int img = (s.ndim == 4 && (s.dims[1] == 1 || s.dims[1] == 3)) || s.ndim == 3;
    if (!img || kiln_node_shape(m->output).ndim != 2) {
        kiln_progress_line(prog, "warning: log.explain: the input is not an image ([C, H, W] with "
                                 "C 1 or 3); no attribution images for this run");
        return NULL;
    }
    kiln_tb_explain *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->m = m;
    snprintf(x->dir, sizeof x->dir, "%s/explain", run_dir);
    x->method = kiln_explain_method_from_name(
        kiln_cfg_str(cfg, "log.explain.method", "integrated_gradients"));
    x->every = kiln_cfg_int(cfg, "log.explain.every_epochs", 1);
    x->n = (int)kiln_cfg_int(cfg, "log.explain.samples", 8);
    int64_t avail = kiln_dataset_rows(in->validation);
    if (x->n > avail) x->n = (int)avail;
    x->c = s.ndim == 4 ? (int)s.dims[1] : 1;
    x->h = (int)s.dims[s.ndim - 2], x->w = (int)s.dims[s.ndim - 1];
    size_t row = (size_t)x->c * (size_t)x->h * (size_t)x->w;
    int64_t *idx = malloc((size_t)(x->n > 0 ? x->n : 1) * sizeof *idx);
    kiln_dataset *sub = NULL;
    kiln_loader *l = NULL;
    kiln_loader_config lc = in->loader;
    lc.batch_size = x->n, lc.shuffle = 0, lc.drop_last = 0, lc.prefetch = 0;
    int64_t yw = kiln_dataset_label_width(in->validation);
    void *y = calloc((size_t)x->n * (size_t)(yw > 0 ? yw : 1), 8);
    x->x = malloc((size_t)x->n * row * sizeof *x->x);
    x->attr = malloc((size_t)x->n * row * sizeof *x->attr);
    int rows = 0,
        ok = idx && y && x->x && x->attr && x->n > 0 && x->method != KILN_EXPLAIN_METHOD_COUNT;
    for (int i = 0; ok && i < x->n; i++) idx[i] = i;
    ok = ok && !kiln_dataset_subset(in->validation, idx, x->n, &sub) &&
         !kiln_loader_new(sub, &lc, &l) && kiln_loader_next(l, x->x, y, &rows) == 1 && rows == x->n;
    kiln_loader_free(l);
    kiln_dataset_free(sub);
    free(idx), free(y);
    if (!ok) {
        kiln_progress_line(prog,
                           "warning: log.explain: cannot read the validation samples (%s); "
                           "no attribution images for this run",
                           kiln_last_error());
        kiln_tb_explain_free(x);
        return NULL;
    }
    return x;
}

int kiln_tb_explain_epoch(kiln_tb_explain *x, kiln_tb_writer *w, int64_t epoch, int64_t step,
                          const float *eval_weights, float *swap) {
    if (!x || !w || epoch % x->every != 0) return 0;
    kiln_model *m = x->m;
    if (!x->e) {
        const char *prob =
            m->task == KILN_TASK_CLASSIFICATION && m->n_outputs > 1 ? "softmax" : NULL;
        if (!(x->e = kiln_explainer_new(m->graph, m->input, m->output, prob))) return 1;
    }
    kiln_graph *g = m->graph;
    size_t bytes = kiln_graph_params_size(g) * sizeof(float);
    float *p = kiln_graph_params(g);
    if (eval_weights) memcpy(swap, p, bytes), memcpy(p, eval_weights, bytes);
    kiln_explain_result *res = calloc((size_t)x->n, sizeof *res);
    kiln_explain_opts o = {.method = x->method, .target = -1, .seed = 1};
    kiln_status st = res ? kiln_explain(x->e, &o, x->x, x->n, x->attr, res)
                         : kiln_error(KILN_ERR_NOMEM, "out of memory");
    if (eval_weights) memcpy(p, swap, bytes);
    if (st) {
        free(res);
        return 1;
    }
    int cam = x->method == KILN_EXPLAIN_GRADCAM || x->method == KILN_EXPLAIN_GRADCAM_PP;
    int scale = (64 + x->w - 1) / x->w, gap = 2;
    int cols = (int)ceil(sqrt((double)x->n)), gr = (x->n + cols - 1) / cols;
    int tw = x->w * scale, th = x->h * scale;
    int W = cols * tw + (cols - 1) * gap, H = gr * th + (gr - 1) * gap;
    unsigned char *img = calloc((size_t)W * (size_t)H * 3, 1);
    unsigned char *tile = malloc((size_t)tw * (size_t)th * 3);
    size_t row = (size_t)x->c * (size_t)x->h * (size_t)x->w;
    st = img && tile ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < x->n; i++) {
        st = kiln_explain_overlay(x->attr + i * row, cam ? 1 : x->c, x->x + i * row, x->c, x->h,
                                  x->w, scale, tile);
        int ox = (i % cols) * (tw + gap), oy = (i / cols) * (th + gap);
        for (int r = 0; !st && r < th; r++)
            memcpy(img + ((size_t)(oy + r) * (size_t)W + (size_t)ox) * 3,
                   tile + (size_t)r * (size_t)tw * 3, (size_t)tw * 3);
    }
    char tag[64], desc[512];
    snprintf(tag, sizeof tag, "explain/%s", kiln_explain_method_name(x->method));
    int at = snprintf(desc, sizeof desc,
                      "Attributions (%s, kiln explain) of the first %d validation samples for "
                      "their predicted class, as a cubehelix heat map over each sample. "
                      "Predicted:",
                      kiln_explain_method_name(x->method), x->n);
    for (int i = 0; i < x->n && at > 0 && at < (int)sizeof desc - 8; i++)
        at += snprintf(desc + at, sizeof desc - (size_t)at, " %d", res[i].predicted);
    if (!st) st = kiln_tb_image(w, tag, desc, step, img, W, H);
    void *png = NULL;
    size_t len = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/epoch-%lld-%s.png", x->dir, (long long)epoch,
             kiln_explain_method_name(x->method));
    if (!st) st = kiln_mkdirs(x->dir);
    if (!st) st = kiln_explain_png(img, W, H, &png, &len);
    if (!st) st = kiln_file_write_atomic(path, png, len);
    free(png);
    free(img), free(tile), free(res);
    return st != KILN_OK;
}

void kiln_tb_explain_model_changed(kiln_tb_explain *x) {
    if (!x) return;
    kiln_explainer_free(x->e);
    x->e = NULL;
}

void kiln_tb_explain_free(kiln_tb_explain *x) {
    if (!x) return;
    kiln_explainer_free(x->e);
    free(x->x), free(x->attr);
    free(x);
}

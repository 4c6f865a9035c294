/* tb_hooks.c — kiln train's TensorBoard output (see tb_hooks.h).
 *
 * The epoch-end pictures and the projector come from a "probe": the first N rows of the
 * validation split (N = max(log.image_samples, log.projector_samples), a view in file order, so
 * the same samples every epoch) run through an inference plan of its own whose outputs are the
 * model output and the penultimate layer (plan outputs are plain row-major). The plan is built
 * at the first use with batch min(N, 256); a final partial batch runs at the full batch size
 * and the rows past its end are ignored (inference rows are independent). With EMA the probe
 * uses the EMA weights, as validation does, swapped in and back bit for bit.
 *
 * Histograms read the flat parameter and gradient buffers in place, one slice per parameter;
 * the gradients are those of the epoch's last step.
 */
#include "train/tb_hooks.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kiln/graph.h"
#include "kiln/mem.h"
#include "kiln/tboard.h"
#include "tboard/tb_render.h"
#include "train/tb_explain.h"

#define MAX_PROBE_BATCH 256
#define LABEL_CHARS     64

struct kiln_tb_hooks {
    char run_dir[4096];
    kiln_tb_writer *root, *split[3];
    kiln_progress *prog;
    int off;            /* a write failed: no more output */
    int64_t purge_from; /* > 0: resumed; SessionLog START at this step in every new file */
    int64_t hist_every, images_every, n_images, n_proj;
    int deterministic;  /* train.deterministic: the probe's plan too */
    double spent; /* seconds inside these hooks (the closing line reports it) */
    kiln_model *m;
    int classes;        /* 0: regression */
    const char **names; /* [classes] class names (NULL entries: ids) */
    /* the probe */
    kiln_dataset *rows; /* the first n_rows validation rows (NULL: no probe) */
    int64_t n_rows, xrow, dim, ywidth;
    kiln_loader_config lc;
    kiln_plan *plan;
    int batch;
    int image_ok; /* input [1 or 3, h, w] and a classifier: sample grids */
    kiln_shape in_shape;
    float *x;               /* [n_images][xrow] inputs as the model saw them */
    float *emb;             /* [n_rows][dim] penultimate outputs */
    int *truth, *pred;      /* [n_rows] classifiers */
    float *target, *output; /* [n_rows] regression: first target and output */
    void *y;                /* [batch][ywidth] labels of one batch */
    kiln_tb_explain *explain; /* log.explain (tb_explain.c), or NULL */
};

static const char *const SPLIT_DIRS[] = {"train", "validation", "test"};

static void fail(kiln_tb_hooks *h, const char *what) {
    kiln_progress_line(h->prog,
                       "warning: TensorBoard: %s: %s; no more TensorBoard output for this run",
                       what, kiln_last_error());
    h->off = 1;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The writer of a split's folder, opened on first use. */
static kiln_tb_writer *split_writer(kiln_tb_hooks *h, kiln_split s) {
    if (h->off || (unsigned)s > KILN_SPLIT_TEST) return NULL;
    if (!h->split[s]) {
        char dir[4096 + 16];
        snprintf(dir, sizeof dir, "%s/%s", h->run_dir, SPLIT_DIRS[s]);
        if (kiln_tb_open(dir, &h->split[s]) ||
            (h->purge_from > 0 && kiln_tb_session_start(h->split[s], h->purge_from))) {
            fail(h, dir);
            return NULL;
        }
    }
    return h->split[s];
}

/* ---- opening ---- */

/* The resolved config as Markdown: a code block (indented 4 spaces). */
static char *config_markdown(const kiln_cfg *cfg) {
    char *yaml = NULL, *md = NULL;
    size_t ylen = 0, mlen = 0;
    FILE *f = open_memstream(&yaml, &ylen);
    if (!f) return NULL;
    kiln_config_write(cfg, f);
    if (fclose(f)) return free(yaml), NULL;
    if (!(f = open_memstream(&md, &mlen))) return free(yaml), NULL;
    int bol = 1;
    for (size_t i = 0; i < ylen; i++) {
        if (bol) fputs("    ", f);
        fputc(yaml[i], f);
        bol = yaml[i] == '\n';
    }
    free(yaml);
    if (fclose(f)) return free(md), NULL;
    return md;
}

/* The HParams experiment summary in the runs folder, with this run's hyperparameters and its
 * metrics: epoch_<metric> of each split the run has. */
static void experiment_summary(kiln_tb_hooks *h, const kiln_cfg *cfg, const kiln_tb_hparams *hp,
                               const kiln_inputs *in) {
    const char *names[33] = {"loss"};
    int n = 1;
    const kiln_cfg *ms = kiln_cfg_at(cfg, "metrics");
    for (int i = 0; ms && i < ms->n_items && n < 33; i++) names[n++] = ms->items[i]->items[0]->key;
    kiln_tb_metric_info mi[3 * 33];
    char tags[3 * 33][80], shown[3 * 33][80];
    static const char *const PREFIX[] = {"", "val_", "test_"};
    static const kiln_tb_dataset SET[] = {KILN_TB_DATASET_TRAINING, KILN_TB_DATASET_VALIDATION,
                                          KILN_TB_DATASET_UNKNOWN};
    int k = 0;
    for (int s = 0; s < 3; s++) {
        if ((s == 1 && !in->validation) || (s == 2 && !in->test)) continue;
        for (int i = 0; i < n; i++, k++) {
            snprintf(tags[k], sizeof tags[k], "epoch_%s", names[i]);
            snprintf(shown[k], sizeof shown[k], "%s%s", PREFIX[s], names[i]);
            mi[k] = (kiln_tb_metric_info){SPLIT_DIRS[s], tags[k], shown[k], SET[s]};
        }
    }
    char runs[4096]; /* <runs>/<experiment>/<run>: the runs folder, TensorBoard's log folder */
    snprintf(runs, sizeof runs, "%s", h->run_dir);
    char *dir = dirname(dirname(runs)), name[4096];
    snprintf(name, sizeof name, "%s", dir);
    if (kiln_tb_experiment_update(dir, basename(name), hp, mi, k, NULL))
        kiln_progress_line(h->prog, "warning: TensorBoard: the HParams experiment summary: %s",
                           kiln_last_error());
}

/* Class names for captions and the projector: the data's (CSV string labels), else
 * model.class_names; NULL entries print as ids. */
static int load_names(kiln_tb_hooks *h, const kiln_cfg *cfg, const kiln_inputs *in) {
    if (!h->classes) return 0;
    if (!(h->names = calloc((size_t)h->classes, sizeof *h->names))) return -1;
    const kiln_cfg *mc = kiln_cfg_at(cfg, "model.class_names");
    for (int c = 0; c < h->classes; c++) {
        h->names[c] = kiln_dataset_class_name(in->train, c);
        if (!h->names[c] && mc && c < mc->n_items) h->names[c] = mc->items[c]->text;
    }
    return 0;
}

/* The probe's rows and buffers (the plan comes at the first use). */
static kiln_status probe_setup(kiln_tb_hooks *h, const kiln_inputs *in) {
    kiln_model *m = h->m;
    h->n_rows = h->n_images > h->n_proj ? h->n_images : h->n_proj;
    int64_t avail = kiln_dataset_rows(in->validation);
    if (h->n_rows > avail) h->n_rows = avail;
    if (h->n_images > h->n_rows) h->n_images = h->n_rows;
    if (h->n_proj > h->n_rows) h->n_proj = h->n_rows;
    if (!m->penultimate) h->n_proj = 0;
    h->in_shape = kiln_node_shape(m->input);
    h->image_ok = h->classes && h->in_shape.ndim == 4 &&
                  (h->in_shape.dims[1] == 1 || h->in_shape.dims[1] == 3);
    if (!h->image_ok) h->n_images = 0;
    if (h->n_images == 0 && h->n_proj == 0) return KILN_OK;
    h->n_rows = h->n_images > h->n_proj ? h->n_images : h->n_proj;
    h->batch = (int)(h->n_rows < MAX_PROBE_BATCH ? h->n_rows : MAX_PROBE_BATCH);
    h->lc = in->loader;
    h->lc.batch_size = h->batch, h->lc.shuffle = 0, h->lc.drop_last = 0, h->lc.prefetch = 0;
    h->xrow = kiln_shape_numel(&h->in_shape); /* build-time shapes have batch 1 */
    if (m->penultimate) {
        kiln_shape ps = kiln_node_shape(m->penultimate);
        h->dim = kiln_shape_numel(&ps);
    }
    h->ywidth = h->classes ? 1 : kiln_dataset_label_width(in->validation);
    int64_t *idx = malloc((size_t)h->n_rows * sizeof *idx);
    if (!idx) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < h->n_rows; i++) idx[i] = i;
    kiln_status st = kiln_dataset_subset(in->validation, idx, h->n_rows, &h->rows);
    free(idx);
    if (st) return st;
    size_t n = (size_t)h->n_rows;
    int bad = !(h->y = calloc((size_t)h->batch * (size_t)(h->ywidth ? h->ywidth : 1), 4));
    if (h->n_images) bad |= !(h->x = malloc((size_t)h->n_images * (size_t)h->xrow * sizeof *h->x));
    if (h->n_proj) bad |= !(h->emb = malloc(n * (size_t)h->dim * sizeof *h->emb));
    if (h->classes)
        bad |=
            !(h->truth = malloc(n * sizeof *h->truth)) || !(h->pred = malloc(n * sizeof *h->pred));
    else
        bad |= !(h->target = malloc(n * sizeof *h->target)) ||
               !(h->output = malloc(n * sizeof *h->output));
    return bad ? kiln_error(KILN_ERR_NOMEM, "out of memory for %lld probe rows",
                            (long long)h->n_rows)
               : KILN_OK;
}

/* data.augment: the first training samples as training sees them (kiln_loader_preview: augmented,
 * mixed, before normalization), once, at the start of a new run. */
static void augmented_samples(kiln_tb_hooks *h, const kiln_cfg *cfg, const kiln_inputs *in,
                              int64_t step) {
    const kiln_augment *a = in->train_loader.augment;
    kiln_shape s = kiln_dataset_x_shape(in->train);
    int64_t n = kiln_cfg_int(cfg, "log.image_samples", 16), rows = kiln_dataset_rows(in->train);
    if (!a || a->n == 0 || n <= 0 || s.ndim != 3 || (s.dims[0] != 1 && s.dims[0] != 3)) return;
    n = n < rows ? n : rows;
    float *x = NULL, *probs = NULL, bound;
    int k, iw, ih;
    unsigned char *rgb = NULL;
    kiln_tb_writer *w = split_writer(h, KILN_SPLIT_TRAIN);
    if (!w) return;
    if (kiln_loader_preview(in->train, &in->train_loader, (int)n, 0, &x, &probs, &k, &bound) ||
        !(rgb = kiln_aug_grid(x, (int)n, (int)s.dims[0], (int)s.dims[1], (int)s.dims[2], bound,
                              &iw, &ih)))
        kiln_progress_line(h->prog, "warning: TensorBoard: augmented_samples: %s",
                           kiln_last_error());
    else if (kiln_tb_image(w, "augmented_samples",
                           "The first training samples of epoch 1 as data.augment makes them "
                           "(before normalization); `kiln data preview` draws the same grid.",
                           step, rgb, iw, ih))
        fail(h, "augmented_samples");
    free(x), free(probs), free(rgb);
}

static void start(kiln_tb_hooks *h, const kiln_cfg *cfg, kiln_model *m, const kiln_inputs *in,
                  kiln_rundir *run, kiln_progress *prog, int64_t step, int resumed) {
    snprintf(h->run_dir, sizeof h->run_dir, "%s", kiln_run_get_info(run).path);
    h->prog = prog, h->m = m;
    h->purge_from = resumed ? step + 1 : 0;
    h->hist_every = kiln_cfg_int(cfg, "log.histograms_every_epochs", 1);
    h->images_every = kiln_cfg_int(cfg, "log.images_every_epochs", 1);
    h->n_images = kiln_cfg_int(cfg, "log.image_samples", 16);
    h->n_proj = kiln_cfg_int(cfg, "log.projector_samples", 1000);
    h->deterministic = kiln_cfg_bool(cfg, "train.deterministic", 1);
    h->classes =
        m->task == KILN_TASK_CLASSIFICATION ? (int)(m->n_outputs > 1 ? m->n_outputs : 2) : 0;
    if (kiln_tb_open(h->run_dir, &h->root) ||
        (resumed && kiln_tb_session_start(h->root, h->purge_from))) {
        fail(h, h->run_dir);
        return;
    }
    char *md = config_markdown(cfg);
    if (!md || kiln_tb_text(h->root, "config", step, md)) {
        free(md);
        fail(h, "config");
        return;
    }
    free(md);
    kiln_tb_hparams hp;
    if (kiln_tb_hparams_from_config(cfg, &hp) ||
        kiln_tb_hparams_start(h->root, &hp, h->run_dir, NULL, wall_now())) {
        kiln_tb_hparams_free(&hp);
        fail(h, "hparams");
        return;
    }
    experiment_summary(h, cfg, &hp, in);
    kiln_tb_hparams_free(&hp);
    if (!resumed) augmented_samples(h, cfg, in, step);
    h->explain = kiln_tb_explain_new(cfg, m, in, prog, h->run_dir);
    if (load_names(h, cfg, in) || (in->validation && probe_setup(h, in))) {
        kiln_progress_line(prog,
                           "warning: TensorBoard: %s; no sample images or projector for this run",
                           kiln_last_error());
        h->n_images = h->n_proj = 0;
    }
}

void kiln_tb_hooks_open(const kiln_cfg *cfg, kiln_model *m, const kiln_inputs *in, kiln_rundir *run,
                        kiln_progress *prog, int64_t step, int resumed, kiln_tb_hooks **out) {
    *out = NULL;
    if (!kiln_cfg_bool(cfg, "log.tensorboard", 1)) return;
    double t0 = kiln_now();
    kiln_tb_hooks *h = calloc(1, sizeof *h);
    if (!h) {
        kiln_progress_line(
            prog, "warning: TensorBoard: out of memory; no TensorBoard output for this run");
        return;
    }
    start(h, cfg, m, in, run, prog, step, resumed);
    h->spent += kiln_now() - t0;
    *out = h;
}

/* ---- scalars ---- */

void kiln_tb_hooks_scalar(kiln_tb_hooks *h, int64_t step, kiln_split split, const char *name,
                          double value, int per_batch) {
    if (!h || h->off) return;
    double t0 = kiln_now();
    kiln_tb_writer *w = split_writer(h, split);
    char tag[256]; /* batch_<name>, epoch_<name>; batch_loss keeps its name */
    if (per_batch && !strncmp(name, "batch_", 6)) name += 6;
    snprintf(tag, sizeof tag, "%s_%s", per_batch ? "batch" : "epoch", name);
    if (w && kiln_tb_scalar(w, tag, step, (float)value)) fail(h, tag);
    h->spent += kiln_now() - t0;
}

/* ---- epoch ends ---- */

static void histograms(kiln_tb_hooks *h, int64_t step) {
    kiln_graph *g = h->m->graph;
    kiln_tb_writer *w = split_writer(h, KILN_SPLIT_TRAIN);
    const float *params = kiln_graph_params(g), *grads = kiln_graph_grads(g);
    for (int i = 0; w && i < kiln_graph_param_count(g); i++) {
        const kiln_param_info *p = kiln_graph_param_info(g, i);
        char tag[300];
        snprintf(tag, sizeof tag, "%s", p->name);
        char *dot =
            strchr(tag, '.'); /* "dense_1.kernel" -> "dense_1/kernel": one group per layer */
        if (dot) *dot = '/';
        if (kiln_tb_histogram(w, tag, step, params + p->offset, p->numel)) {
            fail(h, tag);
            return;
        }
        if (!p->trainable || !grads) continue;
        size_t len = strlen(tag);
        snprintf(tag + len, sizeof tag - len, "_grad");
        if (kiln_tb_histogram(w, tag, step, grads + p->offset, p->numel)) {
            fail(h, tag);
            return;
        }
    }
}

static int argmax(const float *v, int64_t n) {
    if (n == 1) return v[0] > 0; /* one logit: class 1 when it is positive */
    int best = 0;
    for (int64_t j = 1; j < n; j++)
        if (v[j] > v[best]) best = (int)j;
    return best;
}

/* Runs the probe rows through the inference plan: predictions, labels, embeddings, inputs. */
static kiln_status probe(kiln_tb_hooks *h) {
    kiln_model *m = h->m;
    if (!h->plan) {
        kiln_node *outs[2] = {m->output, m->penultimate};
        kiln_plan_opts po = {.outputs = outs,
                             .n_outputs = m->penultimate ? 2 : 1,
                             .batch = h->batch,
                             .deterministic = h->deterministic};
        if (!(h->plan = kiln_plan_new(m->graph, &po))) return KILN_ERR_INVALID;
    }
    kiln_loader *l;
    kiln_status st = kiln_loader_new(h->rows, &h->lc, &l);
    if (st) return st;
    float *x = kiln_plan_data(h->plan, m->input);
    int64_t done = 0;
    int rows, r;
    while ((r = kiln_loader_next(l, x, h->y, &rows)) == 1) {
        if ((st = kiln_plan_forward(h->plan))) break;
        const float *out = kiln_plan_data(h->plan, m->output);
        const float *pen = m->penultimate ? kiln_plan_data(h->plan, m->penultimate) : NULL;
        for (int i = 0; i < rows && done + i < h->n_rows; i++) {
            int64_t k = done + i;
            if (h->classes) {
                h->truth[k] = ((const int32_t *)h->y)[i];
                h->pred[k] = argmax(out + i * m->n_outputs, m->n_outputs);
            } else {
                h->target[k] = ((const float *)h->y)[i * h->ywidth];
                h->output[k] = out[i * m->n_outputs];
            }
            if (k < h->n_proj)
                memcpy(h->emb + k * h->dim, pen + i * h->dim, (size_t)h->dim * sizeof *pen);
            if (k < h->n_images)
                memcpy(h->x + k * h->xrow, x + i * h->xrow, (size_t)h->xrow * sizeof *x);
        }
        done += rows;
    }
    if (!st && r < 0) st = KILN_ERR_INVALID;
    kiln_loader_free(l);
    return st;
}

static void pictures(kiln_tb_hooks *h, const kiln_tb_epoch *e) {
    kiln_tb_writer *w = split_writer(h, KILN_SPLIT_VALIDATION);
    if (!w) return;
    int iw, ih;
    unsigned char *rgb;
    if (h->n_images > 0) {
        const kiln_shape *s = &h->in_shape;
        if (!(rgb = kiln_tb_render_samples(h->x, (int)h->n_images, (int)s->dims[1], (int)s->dims[2],
                                           (int)s->dims[3], h->truth, h->pred, &iw, &ih))) {
            fail(h, "samples");
            return;
        }
        kiln_status st =
            kiln_tb_image(w, "samples",
                          "The first validation samples, captioned t<true class> p<predicted "
                          "class>: green when the model is right, red when it is wrong.",
                          e->step, rgb, iw, ih);
        free(rgb);
        if (st) {
            fail(h, "samples");
            return;
        }
    }
    const int64_t *cm = e->val ? kiln_metrics_confusion(e->val) : NULL;
    int k = e->val ? kiln_metrics_classes(e->val) : 0;
    if (cm && k >= 1 && k <= 256) {
        if (!(rgb = kiln_tb_render_confusion(cm, k, &iw, &ih))) {
            fail(h, "confusion_matrix");
            return;
        }
        kiln_status st =
            kiln_tb_image(w, "confusion_matrix",
                          "Validation confusion matrix: rows are the true classes, columns the "
                          "predicted ones; each cell is shaded by its share of its row.",
                          e->step, rgb, iw, ih);
        free(rgb);
        if (st) {
            fail(h, "confusion_matrix");
            return;
        }
    }
}

static void projector(kiln_tb_hooks *h) {
    int64_t n = h->n_proj;
    char(*cells)[LABEL_CHARS] = malloc((size_t)n * 2 * sizeof *cells);
    const char **meta = malloc((size_t)n * 2 * sizeof *meta);
    if (!cells || !meta) {
        free(cells), free(meta);
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        {
            fail(h, "projector");
            return;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        for (int c = 0; c < 2; c++) {
            char *s = cells[2 * i + c];
            if (h->classes) {
                int id = c ? h->pred[i] : h->truth[i];
                const char *name = id >= 0 && id < h->classes ? h->names[id] : NULL;
                if (name)
                    snprintf(s, LABEL_CHARS, "%s", name);
                else
                    snprintf(s, LABEL_CHARS, "%d", id);
            } else {
                snprintf(s, LABEL_CHARS, "%.6g", (double)(c ? h->output[i] : h->target[i]));
            }
            meta[2 * i + c] = s;
        }
    }
    static const char *const CLASS_COLS[] = {"label", "prediction"}, *const REG_COLS[] = {
                                                                         "target", "prediction"};
    if (kiln_tb_projector_write(h->run_dir, kiln_node_name(h->m->penultimate), h->emb, n, h->dim,
                                h->classes ? CLASS_COLS : REG_COLS, 2, meta))
        fail(h, "projector");
    free(cells), free(meta);
}

static void epoch_end(kiln_tb_hooks *h, const kiln_tb_epoch *e) {
    if (h->hist_every > 0 && e->epoch % h->hist_every == 0) histograms(h, e->step);
    if (!h->off && e->val &&
        kiln_tb_explain_epoch(h->explain, split_writer(h, KILN_SPLIT_VALIDATION), e->epoch,
                              e->step, e->eval_weights, e->swap)) { /* only log.explain stops */
        kiln_progress_line(h->prog, "warning: log.explain: %s; no more attribution images",
                           kiln_last_error());
        kiln_tb_explain_free(h->explain);
        h->explain = NULL;
    }
    int images = h->n_images > 0 && h->images_every > 0 && e->epoch % h->images_every == 0;
    int confusion = h->images_every > 0 && e->epoch % h->images_every == 0 && e->val && h->classes;
    int proj = h->n_proj > 0;
    if (h->off || !e->val || !(images || confusion || proj)) return;
    if (images || proj) {
        kiln_graph *g = h->m->graph;
        size_t bytes = kiln_graph_params_size(g) * sizeof(float);
        float *p = kiln_graph_params(g);
        if (e->eval_weights) memcpy(e->swap, p, bytes), memcpy(p, e->eval_weights, bytes);
        kiln_status st = probe(h);
        if (e->eval_weights) memcpy(p, e->swap, bytes);
        if (st) {
            fail(h, "the validation samples");
            return;
        }
    }
    if (images || confusion) {
        int64_t keep = h->n_images;
        if (!images) h->n_images = 0; /* the confusion matrix only */
        pictures(h, e);
        h->n_images = keep;
    }
    if (proj && !h->off) projector(h);
}

void kiln_tb_hooks_epoch_end(kiln_tb_hooks *h, const kiln_tb_epoch *e) {
    if (!h || h->off) return;
    double t0 = kiln_now();
    epoch_end(h, e);
    h->spent += kiln_now() - t0;
}

kiln_tb_status kiln_tb_hooks_end_status(const char *status) {
    if (!strcmp(status, "finished")) return KILN_TB_STATUS_SUCCESS;
    /* TensorBoard's Status (hparams_api.proto) has no "pruned": not a failure, and apart from
     * the finished sessions in the dashboard's status filter */
    if (!strcmp(status, "pruned")) return KILN_TB_STATUS_UNKNOWN;
    return KILN_TB_STATUS_FAILURE;
}

void kiln_tb_hooks_close(kiln_tb_hooks *h, const char *status) {
    if (!h) return;
    double t0 = kiln_now();
    if (!h->off && h->root && status && strcmp(status, "stopped") != 0) {
        if (kiln_tb_hparams_end(h->root, kiln_tb_hooks_end_status(status), wall_now()))
            fail(h, "hparams");
    }
    int files = 0;
    double bytes = 0;
    kiln_tb_writer *all[4] = {h->root, h->split[0], h->split[1], h->split[2]};
    for (int i = 0; i < 4; i++) {
        struct stat sb;
        if (all[i] && stat(kiln_tb_path(all[i]), &sb) == 0) files++, bytes += (double)sb.st_size;
        kiln_tb_close(all[i]);
    }
    h->spent += kiln_now() - t0;
    if (status && files && !h->off) { /* where to look, and what it cost */
        char runs[4096];
        snprintf(runs, sizeof runs, "%s", h->run_dir);
        kiln_progress_line(
            h->prog,
            "TensorBoard: %d event files, %.1f %s, %.2f s writing them (tensorboard --logdir %s)",
            files, bytes < 1e6 ? bytes / 1e3 : bytes / 1e6, bytes < 1e6 ? "kB" : "MB", h->spent,
            dirname(dirname(runs)));
    }
    kiln_plan_free(h->plan);
    kiln_tb_explain_free(h->explain);
    kiln_dataset_free(h->rows);
    free(h->names), free(h->x), free(h->emb), free(h->truth), free(h->pred), free(h->target),
        free(h->output), free(h->y);
    free(h);
}

void kiln_tb_hooks_model_changed(kiln_tb_hooks *h) {
    if (!h) return;
    kiln_plan_free(h->plan); /* compiled on the old graph; the next probe compiles anew */
    kiln_tb_explain_model_changed(h->explain);
    h->plan = NULL;
}

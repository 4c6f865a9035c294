/* calibrate.c — int8 activation scales from calibration data (kiln optimize --calibrate N).
 *
 * Every dense and conv node with an int8 form gets one scale for its input (per tensor,
 * symmetric, zero point 0, as oneDNN's int8 primitives take it). The model runs in fp32 over the
 * first N batches of the split (file order, the loader's normalization), with each such input
 * made a plan output so that it is read plain. Per input it records the range [lo, hi]; the
 * input is unsigned (u8, 0..255) when lo >= 0 (after a ReLU), else signed (s8, -127..127 used).
 * The clipping bound is max |x| (min-max), or with percentile the p-th percentile of |x| over all
 * values seen, from a 4096-bin histogram over [0, max |x|] filled in a second pass over the same
 * batches (the bound is the upper edge of the bin where the count reaches p%). in_scale =
 * bound / 255 (unsigned) or bound / 127 (signed); an input that was 0 throughout gets 1/255.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/nn.h"
#include "optimize/optimize_internal.h"

#define BINS 4096

typedef struct {
    kiln_node *in;
    int64_t row; /* values per row */
    double *hist;
} probe;

static kiln_status pass(kiln_model *m, kiln_plan *p, const kiln_dataset *ds, const kiln_loader_config *lc,
                        int batches, kiln_calib_layer *ls, probe *pr, int n, int hist, int64_t *rows_seen) {
    kiln_loader_config c = *lc;
    c.shuffle = 0, c.drop_last = 0, c.prefetch = 1;
    kiln_loader *l;
    kiln_status st = kiln_loader_new(ds, &c, &l);
    if (st) return st;
    float *x = kiln_plan_data(p, m->input);
    int rows, r = 0;
    *rows_seen = 0;
    for (int b = 0; b < batches && (r = kiln_loader_next(l, x, NULL, &rows)) == 1; b++) {
        if ((st = kiln_plan_forward(p))) break;
        *rows_seen += rows;
        for (int i = 0; i < n; i++) {
            const float *v = kiln_plan_data(p, pr[i].in);
            size_t cnt = (size_t)rows * (size_t)pr[i].row;
            kiln_calib_layer *q = &ls[i];
            if (!hist) {
                for (size_t k = 0; k < cnt; k++) {
                    if (v[k] < q->lo) q->lo = v[k];
                    if (v[k] > q->hi) q->hi = v[k];
                }
            } else {
                double top = fmax(fabs(q->lo), fabs(q->hi));
                if (!(top > 0)) continue;
                for (size_t k = 0; k < cnt; k++) {
                    int bin = (int)(fabs(v[k]) / top * BINS);
                    pr[i].hist[bin >= BINS ? BINS - 1 : bin] += 1;
                }
            }
        }
    }
    if (!st && r < 0) st = KILN_ERR_INVALID;
    kiln_loader_free(l);
    return st;
}

kiln_status kiln_calibrate(kiln_model *m, const kiln_dataset *ds, const kiln_loader_config *lc, int batches,
                           int percentile, double pct, kiln_calib_layer **layers, int *n_out, int64_t *rows) {
    kiln_graph *g = m->graph;
    int n = 0, N = kiln_graph_node_count(g);
    *layers = NULL, *n_out = 0;
    kiln_calib_layer *ls = calloc((size_t)N + 1, sizeof *ls);
    probe *pr = calloc((size_t)N + 1, sizeof *pr);
    kiln_node **outs = calloc((size_t)N + 1, sizeof *outs);
    if (!ls || !pr || !outs) return free(ls), free(pr), free(outs), KILN_ERR_NOMEM;
    for (int i = 0; i < N; i++) {
        kiln_node *nd = kiln_graph_node(g, i);
        if (!kiln_lowp_supported(nd)) continue;
        kiln_node *in = kiln_node_input(nd, 0);
        kiln_shape s = kiln_node_shape(in);
        ls[n] = (kiln_calib_layer){nd, 0, 0, INFINITY, -INFINITY, 0};
        pr[n] = (probe){in, kiln_shape_numel(&s) / s.dims[0], NULL};
        outs[n++] = in;
    }
    kiln_status st = KILN_OK;
    kiln_plan *p = n ? kiln_plan_new(g, &(kiln_plan_opts){.outputs = outs, .n_outputs = n, .batch = (int)lc->batch_size})
                     : NULL;
    if (n && !p) st = KILN_ERR_INVALID;
    if (!st && n) st = pass(m, p, ds, lc, batches, ls, pr, n, 0, rows);
    if (!st && n && *rows == 0) st = kiln_error(KILN_ERR_INVALID, "calibration: the data split has no rows");
    if (!st && percentile) {
        for (int i = 0; i < n && !st; i++)
            if (!(pr[i].hist = calloc(BINS, sizeof(double)))) st = KILN_ERR_NOMEM;
        if (!st) st = pass(m, p, ds, lc, batches, ls, pr, n, 1, rows);
    }
    for (int i = 0; i < n && !st; i++) {
        kiln_calib_layer *q = &ls[i];
        double top = fmax(fabs(q->lo), fabs(q->hi)), bound = top;
        if (percentile && top > 0) {
            double total = 0, acc = 0;
            for (int b = 0; b < BINS; b++) total += pr[i].hist[b];
            for (int b = 0; b < BINS; b++) {
                acc += pr[i].hist[b];
                if (acc >= total * pct / 100.0) {
                    bound = top * (b + 1) / BINS;
                    break;
                }
            }
        }
        q->in_signed = q->lo < 0;
        q->clip = (float)bound;
        q->in_scale = bound > 0 ? (float)(bound / (q->in_signed ? 127.0 : 255.0)) : 1.0f / 255;
    }
    kiln_plan_free(p);
    for (int i = 0; i < n; i++) free(pr[i].hist);
    free(pr), free(outs);
    if (st) return free(ls), st;
    *layers = ls, *n_out = n;
    return KILN_OK;
}

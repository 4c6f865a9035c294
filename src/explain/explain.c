/* explain.c — attribution methods over the graph's input gradients (see kiln/explain.h).
 *
 * One primitive does the work: grad_batch() copies up to B rows into a plan compiled with
 * input_grads (root = the model's output, outputs = the output and, for Grad-CAM, the layer),
 * runs forward, writes the seed d f_t / d output of each row into the root's gradient (zeros in
 * padding rows, so they add nothing), runs backward and reads the input's gradient. Every method
 * is a way of filling rows: IG's path points, SmoothGrad's noisy copies and occlusion's occluded
 * copies of one input, or several inputs side by side.
 *
 * Invariants: plans are compiled for a (batch, layer) pair and cached (at most CACHE, the oldest
 * replaced); nothing in a method allocates per row; the scratch buffers grow to the largest batch
 * seen. Rows past `rows` in a plan are zeros and their seeds are zero.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/explain.h"
#include "kiln/mem.h"
#include "kiln/rng.h"

#define CACHE 6

typedef struct {
    int batch;
    const kiln_node *layer;
    kiln_plan *p;
} cached;

struct kiln_explainer {
    kiln_graph *g;
    kiln_node *input, *output;
    int prob; /* 0 none, 1 softmax, 2 sigmoid */
    int64_t row, k;
    kiln_shape row_shape; /* the input row (no batch) */
    cached cache[CACHE];
    int n_cache, next;
    float *black; /* [row] or NULL (zeros) */
    float *xb;    /* [cap, row] rows being built */
    float *gb;    /* [cap, row] their gradients */
    float *sb;    /* [cap] their scores */
    int *tb;      /* [cap] their targets */
    int cap;
};

static const char *method_names[] = {"saliency",   "grad_x_input", "integrated_gradients",
                                     "smoothgrad", "gradcam",      "gradcam_pp",
                                     "occlusion"};
static const char *baseline_names[] = {"black", "blurred", "uniform"};

kiln_explain_method kiln_explain_method_from_name(const char *name) {
    if (!name) return KILN_EXPLAIN_METHOD_COUNT;
    if (!strcmp(name, "ig")) return KILN_EXPLAIN_INTEGRATED_GRADIENTS;
    if (!strcmp(name, "gradcam++")) return KILN_EXPLAIN_GRADCAM_PP;
    for (int i = 0; i < KILN_EXPLAIN_METHOD_COUNT; i++)
        if (!strcmp(name, method_names[i])) return (kiln_explain_method)i;
    return KILN_EXPLAIN_METHOD_COUNT;
}
const char *kiln_explain_method_name(kiln_explain_method m) {
    return m >= 0 && m < KILN_EXPLAIN_METHOD_COUNT ? method_names[m] : "?";
}
const char *kiln_explain_method_list(void) {
    return "saliency, grad_x_input, integrated_gradients (ig), smoothgrad, gradcam, "
           "gradcam_pp (gradcam++), occlusion";
}
kiln_explain_baseline kiln_explain_baseline_from_name(const char *name) {
    for (int i = 0; name && i < KILN_BASELINE_COUNT; i++)
        if (!strcmp(name, baseline_names[i])) return (kiln_explain_baseline)i;
    return KILN_BASELINE_COUNT;
}
const char *kiln_explain_baseline_name(kiln_explain_baseline b) {
    return b >= 0 && b < KILN_BASELINE_COUNT ? baseline_names[b] : "?";
}

kiln_explainer *kiln_explainer_new(kiln_graph *g, kiln_node *input, kiln_node *output,
                                   const char *probabilities) {
    if (!g || !input || !output) {
        kiln_error(KILN_ERR_INVALID, "explain: need a graph, its input and its output");
        return NULL;
    }
    kiln_shape is = kiln_node_shape(input), os = kiln_node_shape(output);
    if (kiln_node_dtype(input) != KILN_F32 || is.ndim < 2 || os.ndim != 2) {
        kiln_error(KILN_ERR_INVALID,
                   "explain: the input must be F32 [B, ...] and the output [B, K] (output '%s' "
                   "has %d dimensions)",
                   kiln_node_name(output), os.ndim);
        return NULL;
    }
    kiln_explainer *e = calloc(1, sizeof *e);
    if (!e) {
        kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
        return NULL;
    }
    e->g = g, e->input = input, e->output = output;
    e->prob = !probabilities                      ? 0
              : !strcmp(probabilities, "softmax") ? 1
              : !strcmp(probabilities, "sigmoid") ? 2
                                                  : 0;
    e->row_shape = kiln_shape_make(is.ndim - 1, is.dims + 1);
    e->row = kiln_shape_numel(&e->row_shape);
    e->k = os.dims[1];
    return e;
}

void kiln_explainer_free(kiln_explainer *e) {
    if (!e) return;
    for (int i = 0; i < e->n_cache; i++) kiln_plan_free(e->cache[i].p);
    free(e->black), free(e->xb), free(e->gb), free(e->sb), free(e->tb);
    free(e);
}

int64_t kiln_explainer_row_size(const kiln_explainer *e) {
    return e ? e->row : 0;
}
int64_t kiln_explainer_output_size(const kiln_explainer *e) {
    return e ? e->k : 0;
}

kiln_status kiln_explainer_set_black(kiln_explainer *e, const float *black) {
    free(e->black);
    e->black = NULL;
    if (!black) return KILN_OK;
    if (!(e->black = malloc((size_t)e->row * sizeof *e->black)))
        return kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
    memcpy(e->black, black, (size_t)e->row * sizeof *e->black);
    return KILN_OK;
}

/* Rows per plan run when the caller gives none: 128 for inputs of up to 4096 values (few
 * runs, so few OpenMP barriers per attribution, while a 28x28 CNN's activations stay near the
 * caches: 256 was slower for integrated gradients on a 2-core EPYC), else 64. */
static int default_batch(const kiln_explainer *e) {
    return e->row <= 4096 ? 128 : 64;
}

static kiln_status reserve(kiln_explainer *e, int rows) {
    if (rows <= e->cap) return KILN_OK;
    size_t r = (size_t)rows, w = (size_t)e->row;
    float *xb = realloc(e->xb, r * w * sizeof *xb);
    if (xb) e->xb = xb;
    float *gb = realloc(e->gb, r * w * sizeof *gb);
    if (gb) e->gb = gb;
    float *sb = realloc(e->sb, r * sizeof *sb);
    if (sb) e->sb = sb;
    int *tb = realloc(e->tb, r * sizeof *tb);
    if (tb) e->tb = tb;
    if (!xb || !gb || !sb || !tb) return kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
    e->cap = rows;
    return KILN_OK;
}

static kiln_plan *plan_for(kiln_explainer *e, int batch, const kiln_node *layer) {
    /* a one-value root is seeded with 1 by kiln_plan_backward itself: keep the root bigger so
     * that the seed written here (a sigmoid's p (1 - p)) counts; the extra row is padding */
    if (e->k == 1 && batch == 1) batch = 2;
    for (int i = 0; i < e->n_cache; i++)
        if (e->cache[i].batch == batch && e->cache[i].layer == layer) return e->cache[i].p;
    kiln_node *outs[2] = {e->output, (kiln_node *)layer};
    kiln_plan_opts o = {.outputs = outs,
                        .n_outputs = layer ? 2 : 1,
                        .loss = e->output,
                        .batch = batch,
                        .input_grads = 1};
    kiln_plan *p = kiln_plan_new(e->g, &o);
    if (!p) {
        kiln_error_prefix("explain: compiling a gradient plan for batch %d", batch);
        return NULL;
    }
    int at = e->n_cache < CACHE ? e->n_cache++ : e->next++ % CACHE;
    if (e->cache[at].p) kiln_plan_free(e->cache[at].p);
    e->cache[at] = (cached){batch, layer, p};
    return p;
}

static int argmax(const float *v, int64_t k) {
    int best = 0;
    for (int64_t j = 1; j < k; j++)
        if (v[j] > v[best]) best = (int)j;
    return best;
}

/* The probability of class t from an output row z (softmax or sigmoid). */
static float prob_of(const kiln_explainer *e, const float *z, int t, float *all) {
    if (e->prob == 2) {
        float p = 1.0f / (1.0f + expf(-z[t]));
        if (all) all[t] = p;
        return p;
    }
    float m = z[argmax(z, e->k)];
    double s = 0;
    for (int64_t j = 0; j < e->k; j++) s += exp((double)(z[j] - m));
    if (all)
        for (int64_t j = 0; j < e->k; j++) all[j] = (float)(exp((double)(z[j] - m)) / s);
    return (float)(exp((double)(z[t] - m)) / s);
}

/* rows (<= the plan's batch) rows of x through p: scores [rows] of f_t, targets resolved in
 * place (-1 -> predicted), out [rows, K] if not NULL; with backward, grads [rows, row]. */
static kiln_status grad_batch(kiln_explainer *e, kiln_plan *p, const float *x, int rows, int *tgt,
                              int probability, int backward, float *score, float *grad,
                              float *out) {
    int batch = (int)kiln_plan_shape(p, e->input).dims[0];
    size_t w = (size_t)e->row;
    float *in = kiln_plan_data(p, e->input);
    memcpy(in, x, (size_t)rows * w * sizeof *in);
    memset(in + (size_t)rows * w, 0, (size_t)(batch - rows) * w * sizeof *in);
    kiln_status st = kiln_plan_forward(p);
    if (st) return st;
    const float *z = kiln_plan_data(p, e->output);
    float *seed = kiln_plan_grad(p, e->output);
    if (backward) memset(seed, 0, (size_t)batch * (size_t)e->k * sizeof *seed);
    float pr[4096];
    for (int r = 0; r < rows; r++) {
        const float *zr = z + (size_t)r * (size_t)e->k;
        if (tgt[r] < 0) tgt[r] = argmax(zr, e->k);
        if (tgt[r] >= e->k)
            return kiln_error(KILN_ERR_INVALID,
                              "explain: target %d, but the model has %lld "
                              "outputs (0 .. %lld)",
                              tgt[r], (long long)e->k, (long long)e->k - 1);
        if (out) memcpy(out + (size_t)r * (size_t)e->k, zr, (size_t)e->k * sizeof *out);
        int t = tgt[r];
        float *sr = backward ? seed + (size_t)r * (size_t)e->k : NULL;
        if (!probability || !e->prob) {
            score[r] = zr[t];
            if (sr) sr[t] = 1.0f;
        } else if (e->prob == 2) {
            float q = prob_of(e, zr, t, NULL);
            score[r] = q;
            if (sr) sr[t] = q * (1.0f - q);
        } else {
            if (e->k > 4096) return kiln_error(KILN_ERR_INVALID, "explain: more than 4096 classes");
            float q = prob_of(e, zr, t, pr);
            score[r] = q;
            for (int64_t j = 0; sr && j < e->k; j++) sr[j] = q * ((j == t) - pr[j]);
        }
    }
    if (!backward) return KILN_OK;
    if ((st = kiln_plan_backward(p))) return st;
    if (grad) memcpy(grad, kiln_plan_grad(p, e->input), (size_t)rows * w * sizeof *grad);
    return KILN_OK;
}

static kiln_status run_rows(kiln_explainer *e, const float *x, int n, const int *target,
                            int probability, int batch, int backward, float *grad, float *score,
                            float *out) {
    if (!e || !x || n < 1) return kiln_error(KILN_ERR_INVALID, "explain: no rows");
    int b = batch > 0 ? batch : default_batch(e);
    if (b > n) b = n;
    /* a plan of up to 4x the rows already compiled: use it (zero rows cost less than compiling
     * another plan: its arena and primitives) */
    for (int i = 0; i < e->n_cache; i++)
        if (!e->cache[i].layer && e->cache[i].batch > b && e->cache[i].batch <= 4 * b)
            b = e->cache[i].batch;
    kiln_status st = reserve(e, b);
    if (st) return st;
    kiln_plan *p = plan_for(e, b, NULL);
    if (!p) return KILN_ERR_BACKEND;
    for (int r = 0; r < n; r += b) {
        int k = n - r < b ? n - r : b;
        for (int i = 0; i < k; i++) e->tb[i] = target ? target[r + i] : -1;
        st = grad_batch(e, p, x + (size_t)r * (size_t)e->row, k, e->tb, probability, backward,
                        e->sb, grad ? grad + (size_t)r * (size_t)e->row : NULL,
                        out ? out + (size_t)r * (size_t)e->k : NULL);
        if (st) return st;
        if (score) memcpy(score + r, e->sb, (size_t)k * sizeof *score);
    }
    return KILN_OK;
}

kiln_status kiln_explain_gradients(kiln_explainer *e, const float *x, int n, const int *target,
                                   int probability, int batch, float *grad, float *score,
                                   float *out) {
    return run_rows(e, x, n, target, probability, batch, 1, grad, score, out);
}

const char *kiln_explainer_default_layer(kiln_explainer *e) {
    /* the last conv2d among the output's ancestors: walk back from the output */
    int n = kiln_graph_node_count(e->g);
    char *anc = calloc((size_t)n, 1);
    if (!anc) return NULL;
    const char *found = NULL;
    int out_i = -1;
    for (int i = 0; i < n; i++)
        if (kiln_graph_node(e->g, i) == e->output) out_i = i;
    if (out_i >= 0) anc[out_i] = 1;
    for (int i = out_i; i >= 0 && !found; i--) {
        kiln_node *nd = kiln_graph_node(e->g, i);
        if (!anc[i]) continue;
        const char *op = kiln_node_op(nd);
        if (op && !strcmp(op, "conv2d") && kiln_node_shape(nd).ndim == 4)
            found = kiln_node_name(nd);
        for (int j = 0; j < kiln_node_input_count(nd); j++)
            for (int q = 0; q < i; q++)
                if (kiln_graph_node(e->g, q) == kiln_node_input(nd, j)) anc[q] = 1;
    }
    free(anc);
    return found;
}

/* ---- baselines ---- */

/* [C, H, W] view of the row: H, W its last two dimensions (H 1 for a flat row). */
static void spatial(const kiln_explainer *e, int64_t *c, int64_t *h, int64_t *w) {
    const kiln_shape *s = &e->row_shape;
    *w = s->dims[s->ndim - 1];
    *h = s->ndim >= 2 ? s->dims[s->ndim - 2] : 1;
    *c = e->row / (*h * *w);
}

static void blur(const kiln_explainer *e, const float *x, float sigma, float *out, float *tmp) {
    int64_t C, H, W;
    spatial(e, &C, &H, &W);
    int rad = (int)ceilf(3 * sigma);
    if (rad > 64) rad = 64;
    float k[129];
    double s = 0;
    for (int i = -rad; i <= rad; i++)
        s += k[i + rad] = expf(-0.5f * (float)(i * i) / (sigma * sigma));
    for (int i = 0; i <= 2 * rad; i++) k[i] = (float)(k[i] / s);
    for (int64_t c = 0; c < C; c++) {
        const float *xc = x + c * H * W;
        float *tc = tmp + c * H * W, *oc = out + c * H * W;
        for (int64_t i = 0; i < H; i++) /* along W, edges clamped */
            for (int64_t j = 0; j < W; j++) {
                float a = 0;
                for (int d = -rad; d <= rad; d++) {
                    int64_t q = j + d < 0 ? 0 : j + d >= W ? W - 1 : j + d;
                    a += k[d + rad] * xc[i * W + q];
                }
                tc[i * W + j] = a;
            }
        for (int64_t i = 0; i < H; i++) /* along H */
            for (int64_t j = 0; j < W; j++) {
                float a = 0;
                for (int d = -rad; d <= rad; d++) {
                    int64_t q = i + d < 0 ? 0 : i + d >= H ? H - 1 : i + d;
                    a += k[d + rad] * tc[q * W + j];
                }
                oc[i * W + j] = a;
            }
    }
}

static void minmax(const float *x, int64_t n, float *lo, float *hi) {
    *lo = FLT_MAX, *hi = -FLT_MAX;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] < *lo) *lo = x[i];
        if (x[i] > *hi) *hi = x[i];
    }
}

static kiln_status make_baseline(kiln_explainer *e, const kiln_explain_opts *o, const float *x,
                                 uint64_t stream, float *b) {
    int64_t w = e->row;
    if (o->baseline == KILN_BASELINE_BLURRED) {
        float *tmp = malloc((size_t)w * sizeof *tmp);
        if (!tmp) return kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
        blur(e, x, o->blur_sigma > 0 ? o->blur_sigma : 5.0f, b, tmp);
        free(tmp);
    } else if (o->baseline == KILN_BASELINE_UNIFORM) {
        float lo, hi;
        minmax(x, w, &lo, &hi);
        for (int64_t i = 0; i < w; i++)
            b[i] = lo + (hi - lo) * kiln_rng_uniform(o->seed, stream, (uint64_t)i);
    } else if (e->black) {
        memcpy(b, e->black, (size_t)w * sizeof *b);
    } else {
        memset(b, 0, (size_t)w * sizeof *b);
    }
    return KILN_OK;
}

/* ---- methods over one input, rows = points of a path, noisy copies, occlusions ---- */

/* Rows per plan run of integrated gradients for n inputs, and *g the inputs per run. */
static int ig_rows(const kiln_explainer *e, const kiln_explain_opts *o, int n, int *g) {
    int steps = o->steps > 1 ? o->steps : 64, B = o->batch > 0 ? o->batch : default_batch(e);
    *g = B >= steps ? B / steps : 1;
    if (*g > n) *g = n;
    return *g * steps < B ? *g * steps : B;
}

/* Integrated gradients for n inputs: the path points of g = B / steps inputs go through the
 * plan together (one plan run per g inputs; with steps > B, one input's points in pieces). */
static kiln_status integrated(kiln_explainer *e, const kiln_explain_opts *o, const float *x, int n,
                              float *attr, kiln_explain_result *res) {
    int steps = o->steps > 0 ? o->steps : 64, g;
    if (steps < 2)
        return kiln_error(KILN_ERR_INVALID, "explain: --steps must be >= 2, got %d", steps);
    int64_t rows = ig_rows(e, o, n, &g), w = e->row;
    float *b = malloc((size_t)(g * w) * sizeof *b);
    double *acc = calloc((size_t)(g * w), sizeof *acc);
    float *fb = malloc((size_t)g * sizeof *fb), *fx = malloc((size_t)g * sizeof *fx);
    kiln_status st = !b || !acc || !fb || !fx ? kiln_error(KILN_ERR_NOMEM, "explain: out of memory")
                                              : reserve(e, (int)rows);
    kiln_plan *p = st ? NULL : plan_for(e, (int)rows, NULL);
    if (!st && !p) st = KILN_ERR_BACKEND;
    for (int i0 = 0; !st && i0 < n; i0 += g) {
        int gi = n - i0 < g ? n - i0 : g; /* inputs in this group */
        for (int q = 0; !st && q < gi; q++)
            st = make_baseline(e, o, x + (size_t)(i0 + q) * (size_t)w, (uint64_t)(i0 + q),
                               b + (size_t)q * (size_t)w);
        memset(acc, 0, (size_t)(gi * w) * sizeof *acc);
        int64_t total = (int64_t)gi * steps; /* (input q, step s) is point q * steps + s */
        for (int64_t r0 = 0; !st && r0 < total; r0 += rows) {
            int k = (int)(total - r0 < rows ? total - r0 : rows);
            for (int i = 0; i < k; i++) {
                int q = (int)((r0 + i) / steps), s = (int)((r0 + i) % steps);
                float a = (float)s / (float)(steps - 1);
                const float *xq = x + (size_t)(i0 + q) * (size_t)w, *bq = b + (size_t)q * (size_t)w;
                float *row = e->xb + (size_t)i * (size_t)w;
                for (int64_t j = 0; j < w; j++) row[j] = bq[j] + a * (xq[j] - bq[j]);
                e->tb[i] = res[i0 + q].target;
            }
            st = grad_batch(e, p, e->xb, k, e->tb, o->probability, 1, e->sb, e->gb, NULL);
            for (int i = 0; !st && i < k; i++) {
                int q = (int)((r0 + i) / steps), s = (int)((r0 + i) % steps);
                double wt = (s == 0 || s == steps - 1 ? 0.5 : 1.0) / (steps - 1);
                const float *gr = e->gb + (size_t)i * (size_t)w;
                double *aq = acc + (size_t)q * (size_t)w;
                for (int64_t j = 0; j < w; j++) aq[j] += wt * gr[j];
                if (s == 0) fb[q] = e->sb[i];
                if (s == steps - 1) fx[q] = e->sb[i];
            }
        }
        for (int q = 0; !st && q < gi; q++) {
            const float *xq = x + (size_t)(i0 + q) * (size_t)w, *bq = b + (size_t)q * (size_t)w;
            float *at = attr + (size_t)(i0 + q) * (size_t)w;
            double sum = 0;
            for (int64_t j = 0; j < w; j++) {
                at[j] = (float)((xq[j] - bq[j]) * acc[(size_t)q * (size_t)w + (size_t)j]);
                sum += at[j];
            }
            double d = (double)fx[q] - (double)fb[q];
            res[i0 + q].baseline_score = fb[q];
            res[i0 + q].completeness = fabs(sum - d) / (fabs(d) > 1e-12 ? fabs(d) : 1e-12);
        }
    }
    free(b), free(acc), free(fb), free(fx);
    return st;
}

static kiln_status smooth(kiln_explainer *e, const kiln_explain_opts *o, const float *x,
                          uint64_t stream, float *attr, const kiln_explain_result *r) {
    int n = o->samples > 0 ? o->samples : 32, B = o->batch > 0 ? o->batch : default_batch(e);
    if (B > n) B = n;
    int64_t w = e->row;
    float lo, hi;
    minmax(x, w, &lo, &hi);
    float sd = (o->sigma > 0 ? o->sigma : 0.15f) * (hi - lo);
    kiln_status st = reserve(e, B);
    kiln_plan *p = st ? NULL : plan_for(e, B, NULL);
    if (!st && !p) st = KILN_ERR_BACKEND;
    double *acc = st ? NULL : calloc((size_t)w, sizeof *acc);
    if (!st && !acc) st = kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
    for (int s0 = 0; !st && s0 < n; s0 += B) {
        int k = n - s0 < B ? n - s0 : B;
        for (int i = 0; i < k; i++) {
            float *row = e->xb + (size_t)i * (size_t)w;
            uint64_t base = (uint64_t)(s0 + i) * (uint64_t)w;
            for (int64_t j = 0; j < w; j++)
                row[j] = x[j] + sd * kiln_rng_normal(o->seed, stream, base + (uint64_t)j);
            e->tb[i] = r->target;
        }
        st = grad_batch(e, p, e->xb, k, e->tb, o->probability, 1, e->sb, e->gb, NULL);
        for (int i = 0; !st && i < k; i++)
            for (int64_t j = 0; j < w; j++) acc[j] += e->gb[(size_t)i * (size_t)w + (size_t)j];
    }
    for (int64_t j = 0; !st && j < w; j++) attr[j] = (float)(acc[j] / n);
    free(acc);
    return st;
}

static kiln_status occlude(kiln_explainer *e, const kiln_explain_opts *o, const float *x,
                           float *attr, const kiln_explain_result *r) {
    int64_t C, H, W, w = e->row;
    spatial(e, &C, &H, &W);
    int win = o->window > 0 ? o->window : 4, str = o->stride > 0 ? o->stride : 2;
    int wh = H < win ? (int)H : win, ww = W < win ? (int)W : win;
    int ny = (int)((H - wh) / str + 1), nx = (int)((W - ww) / str + 1), n = ny * nx;
    int B = o->batch > 0 ? o->batch : default_batch(e);
    if (B > n) B = n;
    kiln_status st = reserve(e, B);
    kiln_plan *p = st ? NULL : plan_for(e, B, NULL);
    if (!st && !p) st = KILN_ERR_BACKEND;
    float *cnt = st ? NULL : calloc((size_t)(H * W), sizeof *cnt);
    if (!st && !cnt) st = kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
    memset(attr, 0, (size_t)w * sizeof *attr);
    for (int s0 = 0; !st && s0 < n; s0 += B) {
        int k = n - s0 < B ? n - s0 : B;
        for (int i = 0; i < k; i++) {
            float *row = e->xb + (size_t)i * (size_t)w;
            memcpy(row, x, (size_t)w * sizeof *row);
            int y0 = (s0 + i) / nx * str, x0 = (s0 + i) % nx * str;
            for (int64_t c = 0; c < C; c++)
                for (int yy = y0; yy < y0 + wh; yy++)
                    for (int xx = x0; xx < x0 + ww; xx++) {
                        int64_t at = (c * H + yy) * W + xx;
                        row[at] = e->black ? e->black[at] : 0.0f;
                    }
            e->tb[i] = r->target;
        }
        st = grad_batch(e, p, e->xb, k, e->tb, o->probability, 0, e->sb, NULL, NULL);
        for (int i = 0; !st && i < k; i++) {
            float d = r->score - e->sb[i];
            int y0 = (s0 + i) / nx * str, x0 = (s0 + i) % nx * str;
            for (int yy = y0; yy < y0 + wh; yy++)
                for (int xx = x0; xx < x0 + ww; xx++) {
                    cnt[yy * W + xx] += 1;
                    for (int64_t c = 0; c < C; c++) attr[(c * H + yy) * W + xx] += d;
                }
        }
    }
    for (int64_t c = 0; !st && c < C; c++)
        for (int64_t q = 0; q < H * W; q++)
            if (cnt[q] > 0) attr[c * H * W + q] /= cnt[q];
    free(cnt);
    return st;
}

/* Bilinear, align_corners false (PyTorch's F.interpolate): src = (dst + 0.5) in / out - 0.5. */
static void upsample(const float *m, int h, int w, float *out, int H, int W) {
    for (int i = 0; i < H; i++) {
        float sy = ((float)i + 0.5f) * (float)h / (float)H - 0.5f;
        if (sy < 0) sy = 0;
        int y0 = (int)sy, y1 = y0 + (y0 < h - 1);
        float ly = sy - (float)y0;
        for (int j = 0; j < W; j++) {
            float sx = ((float)j + 0.5f) * (float)w / (float)W - 0.5f;
            if (sx < 0) sx = 0;
            int x0 = (int)sx, x1 = x0 + (x0 < w - 1);
            float lx = sx - (float)x0;
            out[i * W + j] = (1 - ly) * ((1 - lx) * m[y0 * w + x0] + lx * m[y0 * w + x1]) +
                             ly * ((1 - lx) * m[y1 * w + x0] + lx * m[y1 * w + x1]);
        }
    }
}

static kiln_status gradcam(kiln_explainer *e, const kiln_explain_opts *o, const float *x, int n,
                           float *attr, kiln_explain_result *res) {
    int64_t C, H, W;
    spatial(e, &C, &H, &W);
    if (e->row_shape.ndim < 2)
        return kiln_error(KILN_ERR_INVALID, "explain: Grad-CAM needs an input with two spatial "
                                            "dimensions, this one is flat");
    const char *name = o->layer ? o->layer : kiln_explainer_default_layer(e);
    if (!name)
        return kiln_error(KILN_ERR_INVALID, "explain: Grad-CAM: the model has no conv2d layer "
                                            "(name one with --layer)");
    kiln_node *layer = kiln_graph_find(e->g, name);
    if (!layer || kiln_node_shape(layer).ndim != 4 || layer == e->input)
        return kiln_error(KILN_ERR_INVALID, "explain: Grad-CAM layer '%s': %s", name,
                          !layer ? "no such layer in the model"
                                 : "not a [B, C, h, w] layer output (pick a conv layer)");
    int B = o->batch > 0 ? o->batch : default_batch(e);
    if (B > n) B = n;
    kiln_status st = reserve(e, B);
    if (st) return st;
    kiln_plan *p = plan_for(e, B, layer);
    if (!p) return KILN_ERR_BACKEND;
    if (!kiln_plan_grad(p, layer))
        return kiln_error(KILN_ERR_INVALID,
                          "explain: Grad-CAM layer '%s' is not between the "
                          "input and the output",
                          name);
    kiln_shape ls = kiln_plan_shape(p, layer);
    int K = (int)ls.dims[1], h = (int)ls.dims[2], w = (int)ls.dims[3];
    float *cam = malloc((size_t)(h * w) * sizeof *cam), *wt = malloc((size_t)K * sizeof *wt);
    if (!st && (!cam || !wt)) st = kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
    int pp = o->method == KILN_EXPLAIN_GRADCAM_PP;
    for (int r0 = 0; !st && r0 < n; r0 += B) {
        int k = n - r0 < B ? n - r0 : B;
        for (int i = 0; i < k; i++) e->tb[i] = res[r0 + i].target;
        st = grad_batch(e, p, x + (size_t)r0 * (size_t)e->row, k, e->tb, o->probability, 1, e->sb,
                        NULL, NULL);
        const float *A = kiln_plan_data(p, layer), *G = kiln_plan_grad(p, layer);
        for (int i = 0; !st && i < k; i++) {
            const float *a = A + (size_t)i * (size_t)(K * h * w),
                        *g = G + (size_t)i * (size_t)(K * h * w);
            for (int c = 0; c < K; c++) {
                const float *ac = a + c * h * w, *gc = g + c * h * w;
                double s = 0;
                if (!pp) {
                    for (int q = 0; q < h * w; q++) s += gc[q];
                    wt[c] = (float)(s / (h * w));
                    continue;
                }
                double sa = 0;
                for (int q = 0; q < h * w; q++) sa += ac[q];
                for (int q = 0; q < h * w; q++) {
                    double g2 = (double)gc[q] * gc[q], g3 = g2 * gc[q];
                    double den = 2 * g2 + sa * g3;
                    double al = gc[q] != 0 ? g2 / (den != 0 ? den : 1e-7) : 0;
                    s += al * (gc[q] > 0 ? gc[q] : 0);
                }
                wt[c] = (float)s;
            }
            for (int q = 0; q < h * w; q++) {
                double s = 0;
                for (int c = 0; c < K; c++) s += (double)wt[c] * a[c * h * w + q];
                cam[q] = s > 0 ? (float)s : 0.0f;
            }
            upsample(cam, h, w, attr + (size_t)(r0 + i) * (size_t)e->row, (int)H, (int)W);
            res[r0 + i].size = H * W;
            res[r0 + i].layer = kiln_node_name(layer);
        }
    }
    free(cam), free(wt);
    return st;
}

kiln_status kiln_explain(kiln_explainer *e, const kiln_explain_opts *o, const float *x, int n,
                         float *attr, kiln_explain_result *res) {
    if (!e || !o || !x || !attr || !res || n < 1)
        return kiln_error(KILN_ERR_INVALID, "explain: NULL argument or no rows");
    if (o->method < 0 || o->method >= KILN_EXPLAIN_METHOD_COUNT)
        return kiln_error(KILN_ERR_INVALID, "explain: unknown method %d", (int)o->method);
    if (o->target >= e->k)
        return kiln_error(KILN_ERR_INVALID,
                          "explain: target %d, but the model has %lld outputs "
                          "(0 .. %lld)",
                          o->target, (long long)e->k, (long long)e->k - 1);
    if (o->probability && !e->prob)
        return kiln_error(KILN_ERR_INVALID, "explain: the model has no probabilities output");
    size_t w = (size_t)e->row;
    /* pass 1: targets, scores and (for the plain methods) gradients, several inputs per run */
    int plain = o->method == KILN_EXPLAIN_SALIENCY || o->method == KILN_EXPLAIN_GRAD_X_INPUT;
    int *tg = malloc((size_t)n * sizeof *tg);
    float *sc = malloc((size_t)n * sizeof *sc),
          *out = malloc((size_t)n * (size_t)e->k * sizeof *out);
    float *pr = malloc((size_t)e->k * sizeof *pr);
    kiln_status st =
        !tg || !sc || !out || !pr ? kiln_error(KILN_ERR_NOMEM, "explain: out of memory") : KILN_OK;
    for (int i = 0; !st && i < n; i++) tg[i] = o->target;
    int g;
    if (!st && o->method == KILN_EXPLAIN_INTEGRATED_GRADIENTS && o->steps != 1 && /* pass 1 too */
        reserve(e, ig_rows(e, o, n, &g)) == KILN_OK && !plan_for(e, ig_rows(e, o, n, &g), NULL))
        st = KILN_ERR_BACKEND;
    if (!st)
        st = run_rows(e, x, n, tg, o->probability, o->batch, plain, plain ? attr : NULL, sc, out);
    for (int i = 0; !st && i < n; i++) {
        const float *z = out + (size_t)i * (size_t)e->k;
        kiln_explain_result *r = &res[i];
        memset(r, 0, sizeof *r);
        r->predicted = argmax(z, e->k);
        r->target = o->target >= 0 ? o->target : r->predicted;
        r->score = sc[i];
        r->probability = e->prob ? prob_of(e, z, r->target, pr) : NAN;
        r->baseline_score = NAN;
        r->completeness = NAN;
        r->size = e->row;
    }
    for (int i = 0; !st && i < n; i++) {
        const float *xi = x + (size_t)i * w;
        float *ai = attr + (size_t)i * w;
        switch (o->method) {
        case KILN_EXPLAIN_SALIENCY:
            for (size_t j = 0; j < w; j++) ai[j] = fabsf(ai[j]);
            break;
        case KILN_EXPLAIN_GRAD_X_INPUT:
            for (size_t j = 0; j < w; j++) ai[j] *= xi[j];
            break;
        case KILN_EXPLAIN_SMOOTHGRAD:
            st = smooth(e, o, xi, (uint64_t)i, ai, &res[i]);
            break;
        case KILN_EXPLAIN_OCCLUSION:
            st = occlude(e, o, xi, ai, &res[i]);
            break;
        default:
            break;
        }
    }
    if (!st && o->method == KILN_EXPLAIN_INTEGRATED_GRADIENTS)
        st = integrated(e, o, x, n, attr, res);
    if (!st && (o->method == KILN_EXPLAIN_GRADCAM || o->method == KILN_EXPLAIN_GRADCAM_PP))
        st = gradcam(e, o, x, n, attr, res);
    free(tg), free(sc), free(out), free(pr);
    return st;
}

/* ---- pictures ---- */

void kiln_explain_cubehelix(float v, unsigned char rgb[3]) {
    const double start = 0.5, rot = -1.5, hue = 1.0, gamma = 1.0, pi = 3.14159265358979323846;
    double l = v < 0 ? 0 : v > 1 ? 1 : v;
    double lg = pow(l, gamma), a = hue * lg * (1 - lg) / 2, phi = 2 * pi * (start / 3 + rot * l);
    double c = cos(phi), s = sin(phi);
    double ch[3] = {lg + a * (-0.14861 * c + 1.78277 * s), lg + a * (-0.29227 * c - 0.90649 * s),
                    lg + a * (1.97294 * c)};
    for (int i = 0; i < 3; i++) {
        double q = ch[i] < 0 ? 0 : ch[i] > 1 ? 1 : ch[i];
        rgb[i] = (unsigned char)lround(q * 255);
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

kiln_status kiln_explain_overlay(const float *attr, int attr_channels, const float *img,
                                 int img_channels, int h, int w, int scale, unsigned char *rgb) {
    if (!attr || h < 1 || w < 1 || scale < 1 || attr_channels < 1 || !rgb)
        return kiln_error(KILN_ERR_INVALID, "explain: overlay: bad arguments");
    size_t hw = (size_t)h * (size_t)w;
    float *m = malloc(hw * sizeof *m), *sorted = malloc(hw * sizeof *sorted);
    if (!m || !sorted) {
        free(m), free(sorted);
        return kiln_error(KILN_ERR_NOMEM, "explain: out of memory");
    }
    for (size_t q = 0; q < hw; q++) {
        float s = 0;
        for (int c = 0; c < attr_channels; c++) s += fabsf(attr[c * hw + q]);
        m[q] = s;
    }
    memcpy(sorted, m, hw * sizeof *m);
    qsort(sorted, hw, sizeof *sorted, cmp_float);
    float top = sorted[(size_t)(0.99 * (double)(hw - 1))];
    if (!(top > 0)) top = sorted[hw - 1] > 0 ? sorted[hw - 1] : 1;
    float lo = 0, hi = 1;
    if (img) minmax(img, (int64_t)hw * img_channels, &lo, &hi);
    unsigned char *cell = (unsigned char *)sorted; /* reused: 3 bytes per cell fit in a float's 4 */
    for (size_t q = 0; q < hw; q++) { /* each input cell's colour once, then magnified */
        float g = 0;
        for (int c = 0; img && c < img_channels; c++) g += img[c * hw + q];
        g = img && hi > lo ? (g / (float)img_channels - lo) / (hi - lo) : 0;
        unsigned char col[3];
        float v = m[q] / top;
        kiln_explain_cubehelix(v, col);
        float alpha = v > 1 ? 1 : v; /* the input, dimmed, where nothing is attributed */
        for (int k = 0; k < 3; k++)
            cell[q * 3 + k] =
                (unsigned char)lroundf((1 - alpha) * 0.45f * 255 * g + alpha * col[k]);
    }
    for (int i = 0; i < h * scale; i++)
        for (int j = 0; j < w * scale; j++) {
            size_t q = (size_t)(i / scale) * (size_t)w + (size_t)(j / scale);
            memcpy(rgb + ((size_t)i * (size_t)(w * scale) + (size_t)j) * 3, cell + q * 3, 3);
        }
    free(m), free(sorted);
    return KILN_OK;
}

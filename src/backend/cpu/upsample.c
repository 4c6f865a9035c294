/* upsample.c — upsampling by integer factors along 1, 2 or 3 spatial axes (Keras UpSampling1D/
 * 2D/3D, PyTorch nn.Upsample with scale_factor, ONNX Resize), nearest or (bi/tri)linear, F32.
 *
 * Shapes: x [B, C, s1..sd] -> y [B, C, s1*f1 .. sd*fd]. Every case runs as 3-D: x is viewed as
 * [P = B*C, D, H, W] with missing leading spatial axes of size 1 (factor 1), so one kernel serves
 * d = 1, 2, 3.
 *
 * Source coordinates, per axis of input size n, factor f, output index o:
 *   nearest: i = o / f (integer division: each input value repeated f times; Keras, PyTorch).
 *   linear:  half-pixel centres, as PyTorch's align_corners=False, ONNX half_pixel and TF's
 *            half_pixel_centers=True: src = max((1/f) (o + 0.5) - 0.5, 0) computed in float,
 *            i0 = floor(src), i1 = min(i0 + 1, n - 1), w1 = src - i0, w0 = 1 - w1
 *            (PyTorch's compute_source_index_and_lambda, operation for operation).
 * A linear output is sum over the 2^d corners of the product of the axis weights; along W it is
 * w0 * x[i0] + w1 * x[i1], then weighted by the D and H weights (PyTorch's bilinear order).
 * These per-axis tables are made at compile and kept in op state.
 *
 * Backward scatters dy through the same weights. Planes (b, c) are independent and each is done
 * by one thread in a fixed order, so the result does not depend on the thread count.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/attrs.h"

typedef struct {
    int64_t n, m;   /* input and output size of the axis */
    int64_t *i0, *i1; /* [m] */
    float *w0, *w1;   /* [m] (linear) */
} axis_tab;

typedef struct {
    int linear;
    int64_t planes;
    axis_tab ax[3]; /* D, H, W */
} up_state;

static kiln_status up_infer(const kiln_node *n, const kiln_shape *in, kiln_shape *out,
                            kiln_dtype *dt) {
    const kiln_upsample_attr *a = KILN_ATTR(n, kiln_upsample_attr);
    char buf[512];
    if (n->in[0]->dtype != KILN_F32)
        return kiln_error(KILN_ERR_INVALID, "%s: upsampling needs an F32 input, got %s",
                          kiln_node_describe(n, in, buf, sizeof buf),
                          kiln_dtype_name(n->in[0]->dtype));
    if (a->nsp < 1 || a->nsp > 3 || in[0].ndim != a->nsp + 2)
        return kiln_error(KILN_ERR_SHAPE, "%s: upsampling%dd needs an input [batch, channels%s]",
                          kiln_node_describe(n, in, buf, sizeof buf), a->nsp,
                          a->nsp == 1 ? ", length" : a->nsp == 2 ? ", height, width"
                                                                 : ", depth, height, width");
    *out = in[0];
    for (int i = 0; i < a->nsp; i++) {
        if (a->size[i] < 1)
            return kiln_error(KILN_ERR_INVALID, "%s: upsampling factor %d must be >= 1",
                              kiln_node_describe(n, in, buf, sizeof buf), a->size[i]);
        out->dims[2 + i] = in[0].dims[2 + i] * a->size[i];
    }
    *dt = KILN_F32;
    return KILN_OK;
}

static void up_release(kiln_inst *x) {
    up_state *s = x->state;
    if (!s) return;
    for (int i = 0; i < 3; i++) {
        free(s->ax[i].i0), free(s->ax[i].i1);
        free(s->ax[i].w0), free(s->ax[i].w1);
    }
    free(s);
    x->state = NULL;
}

static int make_axis(axis_tab *t, int64_t n, int f, int linear) {
    t->n = n, t->m = n * f;
    size_t m = (size_t)t->m;
    t->i0 = malloc(m * sizeof *t->i0), t->i1 = malloc(m * sizeof *t->i1);
    t->w0 = malloc(m * sizeof *t->w0), t->w1 = malloc(m * sizeof *t->w1);
    if (!t->i0 || !t->i1 || !t->w0 || !t->w1) return 0;
    float scale = (float)(1.0 / f);
    for (int64_t o = 0; o < t->m; o++) {
        if (!linear || f == 1) { /* f == 1: PyTorch copies (src = o exactly) */
            t->i0[o] = t->i1[o] = o / f;
            t->w0[o] = 1.0f, t->w1[o] = 0.0f;
            continue;
        }
        float src = scale * ((float)o + 0.5f) - 0.5f;
        if (src < 0.0f) src = 0.0f;
        int64_t i0 = (int64_t)src;
        float l1 = src - (float)i0;
        l1 = l1 < 0.0f ? 0.0f : l1 > 1.0f ? 1.0f : l1;
        t->i0[o] = i0, t->i1[o] = i0 + (i0 < n - 1 ? 1 : 0);
        t->w1[o] = l1, t->w0[o] = 1.0f - l1;
    }
    return 1;
}

static kiln_status up_compile(kiln_inst *x, kiln_compile_ctx *c) {
    (void)c;
    const kiln_upsample_attr *a = KILN_ATTR(x->node, kiln_upsample_attr);
    up_state *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", x->node->name);
    x->state = s;
    s->linear = a->mode == KILN_UPSAMPLE_LINEAR;
    const kiln_shape *xs = &x->in[0]->shape;
    s->planes = xs->dims[0] * xs->dims[1];
    for (int i = 0; i < 3; i++) {
        int k = i - (3 - a->nsp); /* spatial axis of x, or < 0 for a padded one */
        if (!make_axis(&s->ax[i], k < 0 ? 1 : xs->dims[2 + k], k < 0 ? 1 : a->size[k], s->linear))
            return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", x->node->name);
    }
    return KILN_OK;
}

/* The (up to 4) input rows of plane p that output row (od, oh) reads, with their weights. */
static int corners(const up_state *s, int64_t od, int64_t oh, int64_t row[4], float w[4]) {
    const axis_tab *D = &s->ax[0], *H = &s->ax[1];
    int k = 0;
    for (int a = 0; a < 2; a++) {
        float wd = a ? D->w1[od] : D->w0[od];
        if (a && wd == 0.0f) continue;
        int64_t id = a ? D->i1[od] : D->i0[od];
        for (int b = 0; b < 2; b++) {
            float wh = b ? H->w1[oh] : H->w0[oh];
            if (b && wh == 0.0f) continue;
            row[k] = (id * H->n + (b ? H->i1[oh] : H->i0[oh])) * s->ax[2].n;
            w[k++] = wd * wh; /* wd is 1 for 1-D and 2-D, so 2-D weights are PyTorch's */
        }
    }
    return k;
}

static kiln_status up_forward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    const up_state *s = x->state;
    const axis_tab *D = &s->ax[0], *H = &s->ax[1], *W = &s->ax[2];
    const float *in = x->in[0]->val;
    float *y = x->val;
    int64_t in_plane = D->n * H->n * W->n, out_plane = D->m * H->m * W->m;
#pragma omp parallel for schedule(static) if (x->numel > 32768)
    for (int64_t p = 0; p < s->planes; p++) {
        const float *ip = in + p * in_plane;
        float *yp = y + p * out_plane;
        for (int64_t od = 0; od < D->m; od++)
            for (int64_t oh = 0; oh < H->m; oh++) {
                float *yr = yp + (od * H->m + oh) * W->m;
                int64_t row[4];
                float w[4];
                int k = corners(s, od, oh, row, w);
                if (!s->linear) {
                    const float *src = ip + row[0];
                    for (int64_t ow = 0; ow < W->m; ow++) yr[ow] = src[W->i0[ow]];
                    continue;
                }
                for (int64_t ow = 0; ow < W->m; ow++) {
                    float v = 0.0f;
                    for (int c = 0; c < k; c++) {
                        const float *src = ip + row[c];
                        v += w[c] * (W->w0[ow] * src[W->i0[ow]] + W->w1[ow] * src[W->i1[ow]]);
                    }
                    yr[ow] = v;
                }
            }
    }
    return KILN_OK;
}

static void up_backward(kiln_inst *x, const kiln_run *r) {
    (void)r;
    const up_state *s = x->state;
    const axis_tab *D = &s->ax[0], *H = &s->ax[1], *W = &s->ax[2];
    float *dx = x->in[0]->grad;
    const float *dy = x->grad;
    if (!dx) return;
    int64_t in_plane = D->n * H->n * W->n, out_plane = D->m * H->m * W->m;
    int accum = x->accum[0];
#pragma omp parallel for schedule(static) if (x->numel > 32768)
    for (int64_t p = 0; p < s->planes; p++) {
        float *dp = dx + p * in_plane;
        const float *gp = dy + p * out_plane;
        if (!accum) memset(dp, 0, (size_t)in_plane * sizeof *dp);
        for (int64_t od = 0; od < D->m; od++)
            for (int64_t oh = 0; oh < H->m; oh++) {
                const float *gr = gp + (od * H->m + oh) * W->m;
                int64_t row[4];
                float w[4];
                int k = corners(s, od, oh, row, w);
                if (!s->linear) {
                    float *dst = dp + row[0];
                    for (int64_t ow = 0; ow < W->m; ow++) dst[W->i0[ow]] += gr[ow];
                    continue;
                }
                for (int c = 0; c < k; c++) {
                    float *dst = dp + row[c];
                    for (int64_t ow = 0; ow < W->m; ow++) {
                        dst[W->i0[ow]] += w[c] * W->w0[ow] * gr[ow];
                        dst[W->i1[ow]] += w[c] * W->w1[ow] * gr[ow];
                    }
                }
            }
    }
}

const kiln_op kiln_op_upsample = {.name = "upsampling", .backend = &kiln_backend_cpu,
                                  .infer = up_infer, .compile = up_compile,
                                  .forward = up_forward, .backward = up_backward,
                                  .release = up_release};

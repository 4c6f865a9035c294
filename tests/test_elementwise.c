/* test_elementwise.c — issue 13's elementwise and resampling ops: the hard activations over
 * their kinks (standalone and fused into dense/conv2d), clip, add and multiply with broadcasting,
 * upsampling (1-3 spatial axes, nearest and linear), global max/average pooling (1-3 axes).
 * Forward against plain double loops, backward against finite differences (values kept away
 * from kinks) and, at sizes past the OpenMP thresholds, against reference gradients in double;
 * names and the builders' errors. The comparison with PyTorch itself is test_torch_ops.c. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

static kiln_node *param(kiln_graph *g, const char *name, int ndim, const int64_t *dims) {
    return kiln_param(g, name, ndim, dims, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
}

static kiln_plan *plan(kiln_graph *g, kiln_node *y) {
    kiln_plan *p = kiln_plan_new(
        g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK_MSG(p != NULL, "plan: %s", kiln_last_error());
    return p;
}

static int64_t numel(int nd, const int64_t *d) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= d[i];
    return n;
}

/* Fills a parameter with uniform values in [lo, hi), each at least gap from every kink. */
static void fill_away(float *v, int64_t n, float lo, float hi, uint64_t stream, const float *kinks,
                      int nk, float gap) {
    kiln_test_fill(v, (size_t)n, lo, hi, stream);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < nk; k++)
            if (fabsf(v[i] - kinks[k]) < gap) v[i] = kinks[k] + (v[i] < kinks[k] ? -gap : gap);
}

static double ref_act(kiln_act a, double z) {
    double r6 = fmin(fmax(z + 3, 0), 6);
    switch (a) {
    case KILN_ACT_RELU6: return fmin(fmax(z, 0), 6);
    case KILN_ACT_HARD_SIGMOID: return r6 / 6;
    case KILN_ACT_HARD_SWISH: return z * r6 / 6;
    default: return NAN;
    }
}

static const kiln_act HARD[3] = {KILN_ACT_RELU6, KILN_ACT_HARD_SIGMOID, KILN_ACT_HARD_SWISH};
static const float KINKS[4] = {-3, 0, 3, 6};

/* ---- hard activations ---- */

static void test_hard_activations(void) {
    for (int k = 0; k < 3; k++)
        for (int big = 0; big < 2; big++) {
            int64_t dims[2] = {big ? 40 : 3, big ? 1000 : 37}, n = dims[0] * dims[1];
            kiln_graph *g = kiln_graph_new(1);
            kiln_node *x = param(g, "x", 2, dims);
            kiln_node *y = k == 0 ? kiln_relu6(g, x)
                           : k == 1 ? kiln_hard_sigmoid(g, x)
                                    : kiln_hard_swish(g, x);
            kiln_node *z = kiln_activation(g, x, HARD[k]);
            CHECK_MSG(y && z, "%s", kiln_last_error());
            kiln_plan *p = y && z ? plan(g, y) : NULL;
            if (!p) {
                kiln_graph_free(g);
                continue;
            }
            float *xv = kiln_plan_data(p, x), *ref = malloc((size_t)n * sizeof *ref);
            fill_away(xv, n, -8, 9, 3 + (uint64_t)k, KINKS, 4, 0.01f);
            if (!big) xv[0] = -3, xv[1] = 0, xv[2] = 3, xv[3] = 6; /* the kinks themselves */
            CHECK_OK(kiln_plan_forward(p));
            for (int64_t i = 0; i < n; i++) ref[i] = (float)ref_act(HARD[k], xv[i]);
            CHECK(kiln_test_compare(kiln_plan_data(p, y), ref, (size_t)n, 1e-7, 1e-6, NULL) <= 1);
            if (!big) {
                fill_away(xv, 4, -8, 9, 9, KINKS, 4, 0.01f); /* finite differences: no kinks */
                CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0, "%s",
                          kiln_act_name(HARD[k]));
            } else { /* threaded loops: dy = 1, so dx is the slope */
                float *dy = kiln_plan_grad(p, y);
                for (int64_t i = 0; i < n; i++) dy[i] = 1;
                CHECK_OK(kiln_plan_backward(p));
                const float *dx = kiln_plan_grad(p, x);
                int bad = 0;
                for (int64_t i = 0; i < n; i++) {
                    double v = xv[i], s = HARD[k] == KILN_ACT_RELU6 ? (v > 0 && v < 6)
                                        : HARD[k] == KILN_ACT_HARD_SIGMOID
                                            ? (v > -3 && v < 3) / 6.0
                                            : (v < -3 ? 0 : v < 3 ? v / 3 + 0.5 : 1);
                    bad += fabs(dx[i] - s) > 1e-6;
                }
                CHECK_MSG(bad == 0, "%s: %d slopes wrong", kiln_act_name(HARD[k]), bad);
            }
            free(ref);
            kiln_plan_free(p);
            kiln_graph_free(g);
        }
    CHECK(kiln_act_from_name("relu6") == KILN_ACT_RELU6);
    CHECK(kiln_act_from_name("hard_swish") == KILN_ACT_HARD_SWISH);
    CHECK(strcmp(kiln_act_name(KILN_ACT_HARD_SIGMOID), "hard_sigmoid") == 0);
}

/* dense and conv2d with a fused hard activation, pre-activations spread over [-8, 8]. */
static void test_hard_activations_fused(void) {
    for (int k = 0; k < 6; k++) /* k >= 3: a deterministic plan (its split primitives) */
        for (int conv = 0; conv < 2; conv++) {
            kiln_graph *g = kiln_graph_new(5);
            int64_t xd[4] = {2, 2, 5, 5};
            kiln_node *x = param(g, "x", conv ? 4 : 2, conv ? xd : (int64_t[]){6, 3});
            kiln_node *y;
            if (conv) {
                kiln_conv2d_opts o = {.filters = 3, .kernel = {3, 3}, .padding = KILN_PAD_SAME,
                                      .act = HARD[k % 3], .bias_init = {KILN_INIT_CONSTANT, 0.5f}};
                y = kiln_conv2d_ex(g, x, &o);
            } else {
                kiln_dense_opts o = {.units = 7, .act = HARD[k % 3],
                                     .bias_init = {KILN_INIT_CONSTANT, 0.5f}};
                y = kiln_dense_ex(g, x, &o);
            }
            CHECK_MSG(y != NULL, "%s", kiln_last_error());
            kiln_plan *p = y ? kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1,
                                                                .loss = y, .batch = 1,
                                                                .deterministic = k >= 3})
                             : NULL;
            CHECK_MSG(p != NULL, "plan: %s", kiln_last_error());
            if (!p) {
                kiln_graph_free(g);
                continue;
            }
            /* a pre-activation z = x W + b: scale x so that z covers the kinks */
            kiln_shape xs = kiln_plan_shape(p, x), ys = kiln_plan_shape(p, y);
            int64_t nx = kiln_shape_numel(&xs), ny = kiln_shape_numel(&ys);
            float *xv = kiln_plan_data(p, x);
            kiln_test_fill(xv, (size_t)nx, -6, 6, 17);
            kiln_node *z = conv ? kiln_graph_find(g, "conv2d_1.kernel")
                                : kiln_graph_find(g, "dense_1.kernel");
            kiln_shape ks = kiln_node_shape(z);
            float *kv = kiln_plan_data(p, z);
            for (int64_t i = 0; i < kiln_shape_numel(&ks); i++) kv[i] *= 3; /* wider z */
            /* the layer with act none, on the same parameters, gives the reference z */
            kiln_graph *g2 = kiln_graph_new(5);
            kiln_node *x2 = param(g2, "x", xs.ndim, xs.dims), *y2;
            if (conv) {
                kiln_conv2d_opts o = {.filters = 3, .kernel = {3, 3}, .padding = KILN_PAD_SAME,
                                      .bias_init = {KILN_INIT_CONSTANT, 0.5f}};
                y2 = kiln_conv2d_ex(g2, x2, &o);
            } else {
                kiln_dense_opts o = {.units = 7, .bias_init = {KILN_INIT_CONSTANT, 0.5f}};
                y2 = kiln_dense_ex(g2, x2, &o);
            }
            kiln_plan *p2 = y2 ? plan(g2, y2) : NULL;
            if (p2) {
                memcpy(kiln_plan_data(p2, x2), xv, (size_t)nx * sizeof *xv);
                kiln_node *z2 = conv ? kiln_graph_find(g2, "conv2d_1.kernel")
                                     : kiln_graph_find(g2, "dense_1.kernel");
                memcpy(kiln_plan_data(p2, z2), kiln_plan_data(p, z),
                       (size_t)kiln_shape_numel(&ks) * sizeof(float));
                CHECK_OK(kiln_plan_forward(p2));
                CHECK_OK(kiln_plan_forward(p));
                const float *zv = kiln_plan_data(p2, y2), *yv = kiln_plan_data(p, y);
                int bad = 0, lo = 0, hi = 0;
                for (int64_t i = 0; i < ny; i++) {
                    double r = ref_act(HARD[k % 3], zv[i]);
                    bad += fabs(yv[i] - r) > 1e-5 + 1e-5 * fabs(r);
                    lo += zv[i] < -3, hi += zv[i] > (HARD[k % 3] == KILN_ACT_RELU6 ? 6 : 3);
                }
                CHECK_MSG(bad == 0, "%s %s: %d values off", conv ? "conv2d" : "dense",
                          kiln_act_name(HARD[k % 3]), bad);
                CHECK_MSG(lo > 0 && hi > 0, "z does not reach both flat parts (%d, %d)", lo, hi);
                CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 2e-3, 5e-3, 100) == 0, "%s %s",
                          conv ? "conv2d" : "dense", kiln_act_name(HARD[k % 3]));
            }
            kiln_plan_free(p2);
            kiln_graph_free(g2);
            kiln_plan_free(p);
            kiln_graph_free(g);
        }
}

/* ---- clip ---- */

static void test_clip(void) {
    const float bounds[][2] = {{-1.5f, 2}, {-INFINITY, 0.5f}, {0, INFINITY}, {2, -1}};
    for (int b = 0; b < 4; b++) {
        kiln_graph *g = kiln_graph_new(1);
        kiln_node *x = param(g, "x", 2, (int64_t[]){4, 9});
        kiln_node *y = kiln_clip(g, x, bounds[b][0], bounds[b][1]);
        CHECK_MSG(y != NULL, "%s", kiln_last_error());
        kiln_plan *p = y ? plan(g, y) : NULL;
        if (!p) {
            kiln_graph_free(g);
            continue;
        }
        float *xv = kiln_plan_data(p, x);
        fill_away(xv, 36, -4, 4, 2, bounds[b], 2, 0.01f);
        CHECK_OK(kiln_plan_forward(p));
        const float *yv = kiln_plan_data(p, y);
        for (int i = 0; i < 36; i++)
            CHECK(yv[i] == fminf(fmaxf(xv[i], bounds[b][0]), bounds[b][1]));
        CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 100) == 0);
        /* at the bounds the gradient passes (PyTorch clamp); NaN passes through */
        xv[0] = bounds[b][0], xv[1] = bounds[b][1], xv[2] = NAN;
        CHECK_OK(kiln_plan_forward(p));
        CHECK(isnan(yv[2]));
        float *dy = kiln_plan_grad(p, y);
        for (int i = 0; i < 36; i++) dy[i] = 1;
        CHECK_OK(kiln_plan_backward(p));
        const float *dx = kiln_plan_grad(p, x);
        int inside = bounds[b][0] <= bounds[b][1];
        if (isfinite(xv[0])) CHECK(dx[0] == (float)inside);
        if (isfinite(xv[1])) CHECK(dx[1] == (float)inside);
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){4});
    CHECK(kiln_clip(g, x, NAN, 1) == NULL);
    CHECK_ERR_HAS("clip_1");
    CHECK_ERR_HAS("NaN");
    kiln_node *c = kiln_clip(g, x, 0, 1);
    CHECK(c && strcmp(kiln_node_name(c), "clip_2") == 0 && strcmp(kiln_node_op(c), "clip") == 0);
    kiln_graph_free(g);
}

/* ---- add and multiply with broadcasting ---- */

/* Offset into a tensor of shape s (rank nd) of the output multi-index idx, broadcasting. */
static int64_t bidx(int nd, const int64_t *s, const int64_t *idx) {
    int64_t o = 0;
    for (int d = 0; d < nd; d++) o = o * s[d] + (s[d] == 1 ? 0 : idx[d]);
    return o;
}

/* y = a op b at shapes sa, sb (rank nd): forward against loops; backward with a random dy
 * against the reference sums in double; small cases also by finite differences. */
static void check_binary(int mul, int nd, const int64_t *sa, const int64_t *sb, int same) {
    kiln_graph *g = kiln_graph_new(2);
    kiln_node *a = param(g, "a", nd, sa), *b = same ? a : param(g, "b", nd, sb);
    kiln_node *y = mul ? kiln_multiply(g, a, b) : kiln_add(g, a, b);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    kiln_plan *p = y ? plan(g, y) : NULL;
    if (!p) return kiln_graph_free(g);
    int64_t so[KILN_MAX_DIMS], na = numel(nd, sa), nb = numel(nd, sb);
    for (int d = 0; d < nd; d++) so[d] = sa[d] > sb[d] ? sa[d] : sb[d];
    int64_t n = numel(nd, so);
    kiln_shape ys = kiln_plan_shape(p, y);
    CHECK(ys.ndim == nd && kiln_shape_numel(&ys) == n);
    float *av = kiln_plan_data(p, a), *bv = kiln_plan_data(p, b);
    kiln_test_fill(av, (size_t)na, -2, 2, 5);
    if (!same) kiln_test_fill(bv, (size_t)nb, -2, 2, 6);
    CHECK_OK(kiln_plan_forward(p));
    float *dy = kiln_plan_grad(p, y);
    kiln_test_fill(dy, (size_t)n, -1, 1, 7);
    double *ga = calloc((size_t)na, sizeof *ga), *gb = calloc((size_t)nb, sizeof *gb);
    const float *yv = kiln_plan_data(p, y);
    int bad = 0;
    int64_t idx[KILN_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i;
        for (int d = nd - 1; d >= 0; d--) idx[d] = r % so[d], r /= so[d];
        int64_t ia = bidx(nd, sa, idx), ib = bidx(nd, sb, idx);
        double want = mul ? (double)av[ia] * bv[ib] : (double)av[ia] + bv[ib];
        bad += fabs(yv[i] - want) > 1e-6 * (1 + fabs(want));
        ga[ia] += dy[i] * (mul ? bv[ib] : 1.0);
        gb[ib] += dy[i] * (mul ? av[ia] : 1.0);
    }
    CHECK_MSG(bad == 0, "%s: %d values off", mul ? "multiply" : "add", bad);
    CHECK_OK(kiln_plan_backward(p));
    const float *da = kiln_plan_grad(p, a), *db = kiln_plan_grad(p, b);
    bad = 0;
    for (int64_t i = 0; i < na; i++) {
        double want = ga[i] + (same ? gb[i] : 0);
        bad += fabs(da[i] - want) > 1e-4 * (1 + fabs(want));
    }
    for (int64_t i = 0; !same && i < nb; i++) bad += fabs(db[i] - gb[i]) > 1e-4 * (1 + fabs(gb[i]));
    CHECK_MSG(bad == 0, "%s: %d gradients off", mul ? "multiply" : "add", bad);
    if (n < 2000)
        CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 100) == 0, "%s",
                  mul ? "multiply" : "add");
    free(ga), free(gb);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_broadcast(void) {
    const int64_t full[4] = {2, 3, 4, 5}, se[4] = {2, 3, 1, 1}, row[4] = {2, 3, 1, 5},
                  col[4] = {2, 1, 4, 1}, one[4] = {1, 1, 1, 1}, mixed[4] = {2, 1, 4, 5};
    const int64_t *others[] = {full, se, row, col, one, mixed};
    for (int mul = 0; mul < 2; mul++) {
        for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
            check_binary(mul, 4, full, others[i], 0);
            check_binary(mul, 4, others[i], full, 0);
        }
        check_binary(mul, 4, row, col, 0); /* both broadcast, on different axes */
        check_binary(mul, 4, full, full, 1); /* one tensor twice (x * x, x + x) */
        check_binary(mul, 2, (int64_t[]){3, 7}, (int64_t[]){3, 1}, 0);
        /* past the OpenMP thresholds: squeeze-and-excite at a real size */
        check_binary(mul, 4, (int64_t[]){4, 16, 40, 40}, (int64_t[]){4, 16, 1, 1}, 0);
        check_binary(mul, 4, (int64_t[]){4, 1, 40, 40}, (int64_t[]){4, 16, 40, 40}, 0);
        check_binary(mul, 3, (int64_t[]){1, 300, 300}, (int64_t[]){1, 300, 300}, 0);
    }
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *a = kiln_input(g, "a", KILN_F32, 3, (int64_t[]){3, 4, 5});
    kiln_node *b = kiln_input(g, "b", KILN_F32, 3, (int64_t[]){3, 2, 5});
    kiln_node *c = kiln_input(g, "c", KILN_F32, 2, (int64_t[]){3, 4});
    CHECK(kiln_multiply(g, a, b) == NULL);
    CHECK_ERR_HAS("multiply_1");
    CHECK_ERR_HAS("b=[1, 3, 2, 5]");
    CHECK_ERR_HAS("broadcast");
    CHECK(kiln_add(g, a, c) == NULL);
    CHECK_ERR_HAS("one rank");
    CHECK(kiln_multiply(g, a, NULL) == NULL);
    kiln_node *m = kiln_multiply(g, a, kiln_input(g, "s", KILN_F32, 3, (int64_t[]){3, 1, 1}));
    CHECK(m && strcmp(kiln_node_name(m), "multiply_2") == 0);
    CHECK(m && strcmp(kiln_node_op(m), "multiply") == 0);
    kiln_graph_free(g);
}

/* ---- upsampling ---- */

/* Source index and weight of output o along an axis of size n, factor f (double reference). */
static void src_of(int linear, int64_t o, int64_t n, int f, int64_t *i0, int64_t *i1, double *w1) {
    if (!linear) {
        *i0 = *i1 = o / f, *w1 = 0;
        return;
    }
    double s = (o + 0.5) / f - 0.5;
    if (s < 0) s = 0;
    *i0 = (int64_t)floor(s), *i1 = *i0 + 1 < n ? *i0 + 1 : n - 1, *w1 = s - (double)*i0;
}

static void check_upsample(int nsp, const int64_t *sp, const int *f, int linear, int big) {
    int64_t dims[5] = {2, 3, 1, 1, 1}, od[3] = {1, 1, 1}, id[3] = {1, 1, 1};
    int ff[3] = {1, 1, 1};
    for (int i = 0; i < nsp; i++) {
        dims[2 + i] = sp[i];
        id[3 - nsp + i] = sp[i], ff[3 - nsp + i] = f[i], od[3 - nsp + i] = sp[i] * f[i];
    }
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *x = param(g, "x", nsp + 2, dims);
    kiln_upsampling_opts o = {.nsp = nsp, .interpolation = linear ? KILN_UPSAMPLE_LINEAR
                                                                  : KILN_UPSAMPLE_NEAREST};
    memcpy(o.size, f, (size_t)nsp * sizeof *f);
    kiln_node *y = kiln_upsampling_ex(g, x, &o);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    kiln_plan *p = y ? plan(g, y) : NULL;
    if (!p) return kiln_graph_free(g);
    int64_t planes = 6, nin = id[0] * id[1] * id[2], nout = od[0] * od[1] * od[2];
    kiln_shape ys = kiln_plan_shape(p, y);
    CHECK(ys.ndim == nsp + 2 && kiln_shape_numel(&ys) == planes * nout);
    float *xv = kiln_plan_data(p, x);
    kiln_test_fill(xv, (size_t)(planes * nin), -2, 2, 11);
    CHECK_OK(kiln_plan_forward(p));
    const float *yv = kiln_plan_data(p, y);
    float *dy = kiln_plan_grad(p, y);
    kiln_test_fill(dy, (size_t)(planes * nout), -1, 1, 12);
    double *gx = calloc((size_t)(planes * nin), sizeof *gx);
    int bad = 0;
    for (int64_t q = 0; q < planes; q++)
        for (int64_t a = 0; a < od[0]; a++)
            for (int64_t b = 0; b < od[1]; b++)
                for (int64_t c = 0; c < od[2]; c++) {
                    int64_t i[3][2];
                    double w[3][2], v = 0;
                    int64_t oo[3] = {a, b, c};
                    for (int ax = 0; ax < 3; ax++) {
                        src_of(linear, oo[ax], id[ax], ff[ax], &i[ax][0], &i[ax][1], &w[ax][1]);
                        w[ax][0] = 1 - w[ax][1];
                    }
                    int64_t out = q * nout + (a * od[1] + b) * od[2] + c;
                    for (int s = 0; s < 8; s++) {
                        int u = s >> 2, v2 = (s >> 1) & 1, t = s & 1;
                        double wt = w[0][u] * w[1][v2] * w[2][t];
                        int64_t in = q * nin + (i[0][u] * id[1] + i[1][v2]) * id[2] + i[2][t];
                        v += wt * xv[in];
                        gx[in] += wt * dy[out];
                    }
                    bad += fabs(yv[out] - v) > 1e-5 * (1 + fabs(v));
                }
    CHECK_MSG(bad == 0, "upsampling%dd %s: %d values off", nsp, linear ? "linear" : "nearest",
              bad);
    CHECK_OK(kiln_plan_backward(p));
    const float *dx = kiln_plan_grad(p, x);
    bad = 0;
    for (int64_t i = 0; i < planes * nin; i++)
        bad += fabs(dx[i] - gx[i]) > 1e-4 * (1 + fabs(gx[i]));
    CHECK_MSG(bad == 0, "upsampling%dd %s: %d gradients off", nsp, linear ? "linear" : "nearest",
              bad);
    if (!big)
        CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 100) == 0, "upsampling%dd %s",
                  nsp, linear ? "linear" : "nearest");
    free(gx);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_upsampling(void) {
    for (int linear = 0; linear < 2; linear++) {
        check_upsample(1, (int64_t[]){5}, (int[]){2}, linear, 0);
        check_upsample(1, (int64_t[]){4}, (int[]){3}, linear, 0);
        check_upsample(2, (int64_t[]){3, 4}, (int[]){2, 2}, linear, 0);
        check_upsample(2, (int64_t[]){3, 4}, (int[]){3, 1}, linear, 0);
        check_upsample(2, (int64_t[]){1, 5}, (int[]){2, 4}, linear, 0);
        check_upsample(3, (int64_t[]){2, 3, 2}, (int[]){2, 2, 3}, linear, 0);
        check_upsample(2, (int64_t[]){40, 30}, (int[]){2, 2}, linear, 1); /* threaded */
        check_upsample(3, (int64_t[]){8, 9, 10}, (int[]){2, 2, 2}, linear, 1);
    }
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "img", KILN_F32, 3, (int64_t[]){3, 4, 5});
    kiln_node *u = kiln_upsampling2d(g, x, 2, KILN_UPSAMPLE_LINEAR);
    CHECK(u && strcmp(kiln_node_name(u), "up_sampling2d_1") == 0);
    CHECK(u && kiln_node_shape(u).dims[2] == 8 && kiln_node_shape(u).dims[3] == 10);
    CHECK(kiln_upsampling_ex(g, x, &(kiln_upsampling_opts){.nsp = 3}) == NULL);
    CHECK_ERR_HAS("up_sampling3d_1");
    CHECK_ERR_HAS("img=[1, 3, 4, 5]");
    CHECK_ERR_HAS("[batch, channels, depth, height, width]");
    CHECK(kiln_upsampling_ex(g, x, &(kiln_upsampling_opts){.nsp = 2, .size = {2, -1}}) == NULL);
    CHECK_ERR_HAS("size must be 1 .. 65536, got -1");
    CHECK(kiln_upsampling_ex(g, x, &(kiln_upsampling_opts){.nsp = 4}) == NULL);
    CHECK_ERR_HAS("1, 2 or 3 spatial axes");
    kiln_graph_free(g);
}

/* ---- global pooling ---- */

static void test_global_pools(void) {
    for (int nsp = 1; nsp <= 3; nsp++)
        for (int max = 0; max < 2; max++)
            for (int big = 0; big < 2; big++) {
                int64_t dims[5] = {2, 3, 3, 4, 5};
                if (big)
                    dims[0] = 4, dims[1] = 32, dims[2] = dims[3] = dims[4] = nsp == 3 ? 12 : 40;
                kiln_graph *g = kiln_graph_new(1);
                kiln_node *x = param(g, "x", nsp + 2, dims);
                kiln_node *y = max ? (nsp == 1 ? kiln_global_maxpool1d(g, x)
                                      : nsp == 2 ? kiln_global_maxpool2d(g, x)
                                                 : kiln_global_maxpool3d(g, x))
                                   : (nsp == 1 ? kiln_global_avgpool1d(g, x)
                                      : nsp == 2 ? kiln_global_avgpool2d(g, x)
                                                 : kiln_global_avgpool3d(g, x));
                CHECK_MSG(y != NULL, "%s", kiln_last_error());
                kiln_plan *p = y ? plan(g, y) : NULL;
                if (!p) {
                    kiln_graph_free(g);
                    continue;
                }
                int64_t planes = dims[0] * dims[1], n = numel(nsp, dims + 2);
                kiln_shape ys = kiln_plan_shape(p, y);
                CHECK(ys.ndim == 2 && ys.dims[0] == dims[0] && ys.dims[1] == dims[1]);
                float *xv = kiln_plan_data(p, x);
                kiln_test_fill(xv, (size_t)(planes * n), -3, 3, 21);
                if (max) xv[2] = xv[n - 1] = 10; /* a tie in plane 0: the first one wins */
                CHECK_OK(kiln_plan_forward(p));
                const float *yv = kiln_plan_data(p, y);
                float *dy = kiln_plan_grad(p, y);
                kiln_test_fill(dy, (size_t)planes, -1, 1, 22);
                CHECK_OK(kiln_plan_backward(p));
                const float *dx = kiln_plan_grad(p, x);
                int bad = 0;
                for (int64_t q = 0; q < planes; q++) {
                    const float *v = xv + q * n;
                    double s = 0;
                    int64_t k = 0;
                    for (int64_t j = 0; j < n; j++) s += v[j], k = v[j] > v[k] ? j : k;
                    double want = max ? v[k] : s / n;
                    bad += fabs(yv[q] - want) > 1e-5 * (1 + fabs(want));
                    for (int64_t j = 0; j < n; j++) {
                        double gw = max ? (j == k ? dy[q] : 0) : dy[q] / (double)n;
                        bad += fabs(dx[q * n + j] - gw) > 1e-6;
                    }
                }
                CHECK_MSG(bad == 0, "global %s pool %dd: %d off", max ? "max" : "avg", nsp, bad);
                if (!big) {
                    xv[n - 1] = 9; /* finite differences need a unique maximum */
                    CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 100) == 0,
                              "global %s pool %dd", max ? "max" : "avg", nsp);
                }
                kiln_plan_free(p);
                kiln_graph_free(g);
            }
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "seq", KILN_F32, 2, (int64_t[]){3, 7});
    kiln_node *m = kiln_global_maxpool1d(g, x), *a = kiln_global_avgpool1d(g, x);
    CHECK(m && strcmp(kiln_node_name(m), "global_max_pooling1d_1") == 0);
    CHECK(a && strcmp(kiln_node_name(a), "global_average_pooling1d_1") == 0);
    CHECK(kiln_global_maxpool2d(g, x) == NULL);
    CHECK_ERR_HAS("global_max_pooling2d_1");
    CHECK_ERR_HAS("seq=[1, 3, 7]");
    CHECK_ERR_HAS("[batch, channels, height, width]");
    CHECK(kiln_global_avgpool3d(g, x) == NULL);
    CHECK_ERR_HAS("[batch, channels, depth, height, width]");
    kiln_graph_free(g);
}

/* One tensor into the new ops at once: every gradient accumulates into it. */
static void test_accumulate(void) {
    kiln_graph *g = kiln_graph_new(4);
    kiln_node *x = param(g, "x", 4, (int64_t[]){2, 3, 4, 4});
    kiln_node *s = kiln_hard_sigmoid(g, kiln_global_avgpool2d(g, x));
    s = kiln_reshape(g, s, 3, (int64_t[]){3, 1, 1});
    kiln_node *y = kiln_multiply(g, x, s); /* squeeze-and-excite */
    y = kiln_add(g, y, kiln_clip(g, x, -0.3f, 0.4f));
    y = kiln_add(g, kiln_upsampling2d(g, y, 2, KILN_UPSAMPLE_LINEAR),
                 kiln_upsampling2d(g, kiln_relu6(g, x), 2, KILN_UPSAMPLE_NEAREST));
    y = kiln_add(g, kiln_global_maxpool2d(g, y), kiln_global_avgpool2d(g, kiln_hard_swish(g, y)));
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    kiln_plan *p = y ? plan(g, y) : NULL;
    if (p) {
        float *xv = kiln_plan_data(p, x);
        const float kinks[2] = {-0.3f, 0.4f};
        fill_away(xv, 96, -1, 1, 8, kinks, 2, 0.01f);
        CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 2e-3, 5e-3, 100) == 0);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_hard_activations);
    RUN(test_hard_activations_fused);
    RUN(test_clip);
    RUN(test_broadcast);
    RUN(test_upsampling);
    RUN(test_global_pools);
    RUN(test_accumulate);
    return kiln_test_summary();
}

/* test_pool2d.c — max and average pooling forward against a plain double loop (valid, same with
 * asymmetric pads, explicit pads, stride != size, non-square windows, batch 1 and 3, inference
 * and training plans), backward against finite differences (max pooling on inputs without
 * ties), global average pooling, gradient accumulation, and shape and option errors; the fast
 * 2x2 max path over a conv's blocked layout against oneDNN's kernel (KILN_POOL_REFERENCE=1),
 * ties and an accumulated dx included, and against finite differences. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

typedef struct {
    int B, C, H, W;
    int kh, kw, sh, sw; /* stride 0: = window */
    kiln_padding pad;
    int ph, pw;
} pool_case;

/* Output size and pad before, restated from the padding rule (TF's for same). */
static int out_size(int in, int k, int s, kiln_padding pad, int p, int *before) {
    if (pad == KILN_PAD_SAME) {
        int out = (in + s - 1) / s, total = (out - 1) * s + k - in;
        *before = total > 0 ? total / 2 : 0;
        return out;
    }
    *before = pad == KILN_PAD_EXPLICIT ? p : 0;
    return (in + 2 * *before - k) / s + 1;
}

/* y [B, C, OH, OW]: max or mean over the real cells of each window of x [B, C, H, W]. */
static void ref_pool(const pool_case *k, int max, const float *x, float *y, int OH, int OW, int pt,
                     int pl) {
    for (int n = 0; n < k->B * k->C; n++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                double acc = max ? -INFINITY : 0;
                int cnt = 0;
                for (int ky = 0; ky < k->kh; ky++)
                    for (int kx = 0; kx < k->kw; kx++) {
                        int iy = oy * k->sh - pt + ky, ix = ox * k->sw - pl + kx;
                        if (iy < 0 || iy >= k->H || ix < 0 || ix >= k->W) continue;
                        double v = x[(n * k->H + iy) * k->W + ix];
                        acc = max ? fmax(acc, v) : acc + v;
                        cnt++;
                    }
                y[(n * OH + oy) * OW + ox] = (float)(max ? acc : acc / cnt);
            }
}

/* Distinct values 0.01 apart in a scrambled order: no ties, and a 1e-3 nudge never changes which
 * cell is a window's maximum. */
static void fill_distinct(float *x, int n) {
    for (int i = 0; i < n; i++) x[i] = (float)(((long)i * 7919 % n) - n / 2) * 0.01f;
}

static void check_pool(pool_case k, int max, int grad) {
    if (!k.sh) k.sh = k.kh;
    if (!k.sw) k.sw = k.kw;
    char what[200];
    snprintf(what, sizeof what, "%s B%d C%d %dx%d k%dx%d s%dx%d pad %d (%d,%d) grad %d",
             max ? "max" : "avg", k.B, k.C, k.H, k.W, k.kh, k.kw, k.sh, k.sw, (int)k.pad, k.ph,
             k.pw, grad);
    kiln_graph *g = kiln_graph_new(1);
    int64_t xd[4] = {k.B, k.C, k.H, k.W};
    kiln_node *x = grad ? kiln_param(g, "x", 4, xd, (kiln_init){KILN_INIT_ZEROS}, 1, 0, 0)
                        : kiln_input(g, "x", KILN_F32, 3, xd + 1);
    kiln_pool2d_opts o = {
        .size = {k.kh, k.kw}, .stride = {k.sh, k.sw}, .padding = k.pad, .pad = {k.ph, k.pw}};
    kiln_node *y = max ? kiln_maxpool2d_ex(g, x, &o) : kiln_avgpool2d_ex(g, x, &o);
    CHECK_MSG(y != NULL, "%s: %s", what, kiln_last_error());
    if (!y) return kiln_graph_free(g);
    CHECK(strcmp(kiln_node_name(y), max ? "max_pooling2d_1" : "average_pooling2d_1") == 0);
    kiln_plan *p = kiln_plan_new(
        g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = grad ? y : NULL, .batch = k.B});
    CHECK_MSG(p != NULL, "%s: %s", what, kiln_last_error());
    if (!p) return kiln_graph_free(g);
    int nx = k.B * k.C * k.H * k.W;
    fill_distinct(kiln_plan_data(p, x), nx);
    CHECK_OK(kiln_plan_forward(p));
    int pt, pl, OH = out_size(k.H, k.kh, k.sh, k.pad, k.ph, &pt),
                OW = out_size(k.W, k.kw, k.sw, k.pad, k.pw, &pl);
    kiln_shape ys = kiln_plan_shape(p, y);
    CHECK_MSG(ys.ndim == 4 && ys.dims[0] == k.B && ys.dims[1] == k.C && ys.dims[2] == OH &&
                  ys.dims[3] == OW,
              "%s: got [%lld, %lld, %lld, %lld]", what, (long long)ys.dims[0],
              (long long)ys.dims[1], (long long)ys.dims[2], (long long)ys.dims[3]);
    size_t ny = (size_t)k.B * k.C * OH * OW, wi = 0;
    float *ref = malloc(ny * sizeof *ref);
    ref_pool(&k, max, kiln_plan_data(p, x), ref, OH, OW, pt, pl);
    double r = kiln_test_compare(kiln_plan_data(p, y), ref, ny, 1e-6, 1e-5, &wi);
    CHECK_MSG(r <= 1, "%s: worst at %zu: %g vs %g", what, wi,
              (double)((float *)kiln_plan_data(p, y))[wi], (double)ref[wi]);
    if (grad) CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0, "%s", what);
    free(ref);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static const pool_case cases[] = {
    {3, 2, 7, 5, 2, 2, .pad = KILN_PAD_VALID},         /* default stride = size, odd sizes */
    {1, 3, 6, 6, 3, 3, 2, 2, KILN_PAD_SAME},           /* same, pads 0 before, 1 after */
    {1, 2, 7, 5, 3, 2, 1, 2, KILN_PAD_SAME},           /* stride != size, non-square */
    {3, 2, 7, 7, 3, 3, 2, 2, KILN_PAD_EXPLICIT, 1, 1}, /* explicit pads */
    {1, 2, 5, 6, 3, 3, 1, 1, KILN_PAD_EXPLICIT, 2, 1}, /* pads up to size - 1 */
    {1, 1, 5, 8, 2, 2, 3, 3, KILN_PAD_VALID},          /* stride > size: cells skipped */
    {1, 2, 4, 4, 4, 4, .pad = KILN_PAD_VALID},         /* one window */
    {3, 1, 5, 5, 3, 3, 3, 3, KILN_PAD_SAME},           /* same, stride = size */
};

static void test_pool_forward(void) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int max = 0; max < 2; max++) check_pool(cases[i], max, 0);
}

static void test_pool_gradients(void) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int max = 0; max < 2; max++) check_pool(cases[i], max, 1);
}

static void test_global_avgpool(void) {
    for (int grad = 0; grad < 2; grad++) {
        kiln_graph *g = kiln_graph_new(2);
        int B = 3, C = 4, H = 5, W = 3;
        kiln_node *x = grad ? kiln_param(g, "x", 4, (int64_t[]){B, C, H, W},
                                         (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1)
                            : kiln_input(g, "x", KILN_F32, 3, (int64_t[]){C, H, W});
        kiln_node *y = kiln_global_avgpool2d(g, x);
        CHECK_MSG(y != NULL, "%s", kiln_last_error());
        if (!y) return kiln_graph_free(g);
        CHECK(strcmp(kiln_node_name(y), "global_average_pooling2d_1") == 0);
        kiln_plan *p = kiln_plan_new(
            g,
            &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = grad ? y : NULL, .batch = B});
        CHECK_MSG(p != NULL, "%s", kiln_last_error());
        if (!p) return kiln_graph_free(g);
        if (!grad) kiln_test_fill(kiln_plan_data(p, x), (size_t)B * C * H * W, -2, 2, 4);
        CHECK_OK(kiln_plan_forward(p));
        kiln_shape s = kiln_plan_shape(p, y);
        CHECK(s.ndim == 2 && s.dims[0] == B && s.dims[1] == C);
        const float *xv = kiln_plan_data(p, x), *yv = kiln_plan_data(p, y);
        float ref[12];
        for (int i = 0; i < B * C; i++) {
            double acc = 0;
            for (int j = 0; j < H * W; j++) acc += xv[i * H * W + j];
            ref[i] = (float)(acc / (H * W));
        }
        CHECK(kiln_test_compare(yv, ref, (size_t)B * C, 1e-6, 1e-5, NULL) <= 1);
        if (grad) CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0);
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

/* x feeds max and average pooling (and two global pools): every dx but the first accumulates. */
static void test_pool_accumulate(void) {
    kiln_graph *g = kiln_graph_new(4);
    kiln_node *x =
        kiln_param(g, "x", 4, (int64_t[]){2, 3, 6, 5}, (kiln_init){KILN_INIT_ZEROS}, 1, 0, 0);
    kiln_pool2d_opts o = {.size = {3, 3}, .stride = {2, 1}, .padding = KILN_PAD_SAME};
    kiln_node *a = kiln_maxpool2d_ex(g, x, &o), *b = kiln_avgpool2d_ex(g, x, &o);
    kiln_node *y = kiln_add(g, kiln_global_avgpool2d(g, kiln_add(g, a, b)),
                            kiln_add(g, kiln_global_avgpool2d(g, x), kiln_global_avgpool2d(g, x)));
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (!y) return kiln_graph_free(g);
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (p) {
        fill_distinct(kiln_plan_data(p, x), 2 * 3 * 6 * 5);
        CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_pool_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *seq = kiln_input(g, "seq", KILN_F32, 2, (int64_t[]){3, 4});
    CHECK(kiln_maxpool2d(g, seq, 2) == NULL);
    CHECK_ERR_HAS("max_pooling2d_1 (max_pooling2d) got seq=[1, 3, 4]");
    CHECK_ERR_HAS("[batch, channels, height, width]");
    CHECK(kiln_global_avgpool2d(g, seq) == NULL);
    CHECK_ERR_HAS("global_average_pooling2d_1 (global_average_pooling2d) got seq=[1, 3, 4]");

    kiln_node *small = kiln_input(g, "small", KILN_F32, 3, (int64_t[]){2, 3, 3});
    CHECK(kiln_avgpool2d(g, small, 4) == NULL);
    CHECK_ERR_HAS("average_pooling2d_1 (average_pooling2d) got small=[1, 2, 3, 3]");
    CHECK_ERR_HAS("pool window 4x4");
    CHECK_ERR_HAS("does not fit");
    kiln_pool2d_opts o = {
        .size = {2, 2}, .padding = KILN_PAD_EXPLICIT, .pad = {2, 0}, .name = "padded"};
    CHECK(kiln_maxpool2d_ex(g, small, &o) == NULL);
    CHECK_ERR_HAS("padded (max_pooling2d): explicit pads 2x0");
    o = (kiln_pool2d_opts){.size = {0, 2}};
    CHECK(kiln_maxpool2d_ex(g, small, &o) == NULL);
    CHECK_ERR_HAS("size 0x2");
    /* "same" pooling always fits. */
    o = (kiln_pool2d_opts){.size = {4, 4}, .padding = KILN_PAD_SAME};
    kiln_node *y = kiln_avgpool2d_ex(g, small, &o);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (y) {
        kiln_shape s = kiln_node_shape(y);
        CHECK(s.dims[2] == 1 && s.dims[3] == 1);
    }
    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_maxpool2d(g, NULL, 2) == NULL);
    CHECK(kiln_global_avgpool2d(g, NULL) == NULL);
    CHECK_ERR_HAS("first failure");
    kiln_graph_free(g);
}

/* conv (C = 16: a blocked output) -> 2x2 max pool -> loss (mode 2: the sum of two pools of
 * the conv, so one pool's backward adds to the other's dx). mode 1: ties, every window at 0.5.
 * The pool output, and the gradients of every parameter (x is one), after one step. */
static void fast_case(int B, int H, int W, int mode, int reference, float *y_out, float *g_out,
                      size_t *ny, size_t *ng) {
    int ties = mode == 1;
    if (reference) setenv("KILN_POOL_REFERENCE", "1", 1);
    kiln_graph *g = kiln_graph_new(5);
    kiln_node *x = kiln_param(g, "x", 4, (int64_t[]){B, 3, H, W}, (kiln_init){KILN_INIT_ZEROS}, 1,
                              0, 0);
    kiln_node *c = kiln_conv2d(g, x, 16, 3, 1, KILN_PAD_SAME, KILN_ACT_NONE);
    kiln_node *y = kiln_maxpool2d(g, c, 2);
    if (mode == 2) y = kiln_add(g, y, kiln_maxpool2d(g, c, 2));
    kiln_plan *p =
        c && y ? kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y,
                                                    .batch = B})
               : NULL;
    unsetenv("KILN_POOL_REFERENCE");
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return kiln_graph_free(g);
    float *pv = kiln_graph_params(g);
    size_t n = kiln_graph_params_size(g);
    size_t nx = (size_t)(B * 3 * H * W);
    for (size_t i = 0; i < n; i++) /* ties: kernel 0, bias 0.5, so every window ties at 0.5 */
        pv[i] = !ties ? (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f
                : i < nx ? (float)(i % 7)
                : i >= n - 16 ? 0.5f
                              : 0.0f;
    CHECK_OK(kiln_plan_forward(p));
    float *seed = kiln_plan_grad(p, y);
    kiln_shape ys = kiln_plan_shape(p, y);
    size_t m = (size_t)kiln_shape_numel(&ys);
    for (size_t i = 0; i < m; i++) seed[i] = (float)(i % 5) - 2.0f;
    memset(kiln_graph_grads(g), 0, n * sizeof(float));
    CHECK_OK(kiln_plan_backward(p));
    memcpy(y_out, kiln_plan_data(p, y), m * sizeof *y_out);
    memcpy(g_out, kiln_graph_grads(g), n * sizeof *g_out);
    *ny = m, *ng = n;
    if (!ties && !reference)
        CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 100) == 0, "fast pool gradcheck");
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_pool_fast_path(void) {
    static float ya[20000], yb[20000], ga[20000], gb[20000];
    const int shapes[3][3] = {{2, 8, 10}, {1, 9, 7}, {3, 6, 6}}; /* odd sizes: a row left out */
    for (int k = 0; k < 3; k++)
        for (int mode = 0; mode < 3; mode++) {
            size_t ny, ng, ny2, ng2, wi = 0;
            fast_case(shapes[k][0], shapes[k][1], shapes[k][2], mode, 0, ya, ga, &ny, &ng);
            fast_case(shapes[k][0], shapes[k][1], shapes[k][2], mode, 1, yb, gb, &ny2, &ng2);
            CHECK(ny == ny2 && ng == ng2);
            CHECK_MSG(!memcmp(ya, yb, ny * sizeof *ya), "case %d mode %d: outputs differ", k, mode);
            double r = kiln_test_compare(ga, gb, ng, 1e-6, 1e-5, &wi);
            CHECK_MSG(r <= 1, "case %d mode %d: gradient %zu: %g vs %g", k, mode, wi,
                      (double)ga[wi], (double)gb[wi]);
        }
}

int main(void) {
    RUN(test_pool_fast_path);
    RUN(test_pool_forward);
    RUN(test_pool_gradients);
    RUN(test_global_avgpool);
    RUN(test_pool_accumulate);
    RUN(test_pool_errors);
    return kiln_test_summary();
}

/* test_explain.c — attributions (src/explain/) on small graphs with random weights:
 * - input gradients (logit and softmax probability targets, several rows with their own
 *   targets) against central differences of the forward, and the parameters' gradient buffer
 *   left alone by an input_grads plan;
 * - each method against a plain reference: gradient x input and saliency from the gradients,
 *   integrated gradients' completeness (< 1% with 64 steps) and its endpoints f(x), f(b),
 *   SmoothGrad with tiny noise ~ the gradient, occlusion against forwards of hand-occluded
 *   inputs, Grad-CAM and Grad-CAM++ on a conv -> flatten -> dense model where d f / d A is
 *   the dense kernel's column (so the CAM is computed here by hand);
 * - bad options: an unknown layer, a target out of range, probability without probabilities;
 * - the cubehelix colormap's lightness rises monotonically from black to white;
 * - PNG bytes decode (stb_image) to the pixels encoded; a magnified overlay repeats cells. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

#include "check.h"

typedef struct {
    kiln_graph *g;
    kiln_node *in, *conv, *out;
} net;

/* input [2, 6, 6] -> conv 3 filters 3x3 same tanh -> (maxpool 2) -> flatten -> dense 4 */
static net make_net(int pool, kiln_act act) {
    net n;
    n.g = kiln_graph_new(7);
    int64_t dims[3] = {2, 6, 6};
    n.in = kiln_input(n.g, "input", KILN_F32, 3, dims);
    n.conv = kiln_conv2d(n.g, n.in, 3, 3, 1, KILN_PAD_SAME, act);
    kiln_node *h = pool ? kiln_maxpool2d(n.g, n.conv, 2) : n.conv;
    n.out = kiln_dense(n.g, kiln_flatten(n.g, h), 4, KILN_ACT_NONE);
    CHECK(n.out != NULL);
    CHECK_OK(kiln_graph_init_params(n.g));
    /* non-zero biases too */
    float *prm = kiln_graph_params(n.g);
    for (int i = 0; i < kiln_graph_param_count(n.g); i++) {
        const kiln_param_info *pi = kiln_graph_param_info(n.g, i);
        if (strstr(pi->name, "bias"))
            kiln_test_fill(prm + pi->offset, pi->numel, -0.3f, 0.3f, 50 + i);
    }
    return n;
}

static float fwd_score(kiln_explainer *e, const float *x, int t, int prob) {
    float s = 0;
    int tg = t;
    kiln_status st = kiln_explain_gradients(e, x, 1, &tg, prob, 1, NULL, &s, NULL);
    CHECK_OK(st);
    return s;
}

static void test_gradients_vs_finite_differences(void) {
    net n = make_net(0, KILN_ACT_TANH);
    kiln_explainer *e = kiln_explainer_new(n.g, n.in, n.out, "softmax");
    CHECK(e != NULL);
    int R = 3, W = 72;
    float x[3 * 72], g[3 * 72], s[3];
    kiln_test_fill(x, (size_t)(R * W), -1, 1, 3);
    int tg[3] = {0, 2, 3};
    size_t before = kiln_graph_trainable_size(n.g);
    float *pg = kiln_graph_grads(n.g);
    for (size_t i = 0; i < before; i++) pg[i] = 123.0f;
    for (int prob = 0; prob <= 1; prob++) {
        CHECK_OK(kiln_explain_gradients(e, x, R, tg, prob, 2, g, s, NULL));
        double worst = 0;
        for (int r = 0; r < R; r++)
            for (int j = 0; j < W; j += 5) {
                float xp[72];
                memcpy(xp, x + r * W, sizeof xp);
                const float eps = 1e-2f;
                xp[j] += eps;
                float fp = fwd_score(e, xp, tg[r], prob);
                xp[j] -= 2 * eps;
                float fm = fwd_score(e, xp, tg[r], prob);
                double num = ((double)fp - fm) / (2 * eps), ana = g[r * W + j];
                double err = fabs(num - ana) / (1e-3 + fabs(num));
                if (err > worst) worst = err;
            }
        CHECK_MSG(worst < 2e-2, "prob %d: worst relative error %g", prob, worst);
        CHECK_NEAR(s[1], fwd_score(e, x + W, 2, prob), 1e-6);
    }
    int untouched = 1;
    for (size_t i = 0; i < before; i++) untouched &= pg[i] == 123.0f;
    CHECK_MSG(untouched, "the parameters' gradient buffer changed");
    kiln_explainer_free(e);
    kiln_graph_free(n.g);
}

/* A single-logit (sigmoid) classifier, one row: the probability's gradient is p (1 - p) times the
 * logit's (a plan of batch 1 with a one-value root would be seeded with 1 by backward). */
static void test_single_logit_probability(void) {
    kiln_graph *g = kiln_graph_new(3);
    int64_t dims[1] = {5};
    kiln_node *in = kiln_input(g, "input", KILN_F32, 1, dims);
    kiln_node *out = kiln_dense(g, in, 1, KILN_ACT_NONE);
    CHECK_OK(kiln_graph_init_params(g));
    kiln_explainer *e = kiln_explainer_new(g, in, out, "sigmoid");
    CHECK(e != NULL);
    float x[5] = {0.3f, -0.2f, 0.5f, 1.0f, -0.7f}, gl[5], gp[5], z, p;
    CHECK_OK(kiln_explain_gradients(e, x, 1, NULL, 0, 1, gl, &z, NULL));
    CHECK_OK(kiln_explain_gradients(e, x, 1, NULL, 1, 1, gp, &p, NULL));
    CHECK_NEAR(p, 1 / (1 + exp(-z)), 1e-6);
    for (int j = 0; j < 5; j++) CHECK_NEAR(gp[j], p * (1 - p) * gl[j], 1e-6);
    kiln_explainer_free(e);
    kiln_graph_free(g);
}

static void test_methods(void) {
    net n = make_net(1, KILN_ACT_TANH);
    kiln_explainer *e = kiln_explainer_new(n.g, n.in, n.out, "softmax");
    int W = 72;
    float x[2 * 72], g[2 * 72], a[2 * 72];
    kiln_test_fill(x, 2 * 72, 0, 1, 9);
    kiln_explain_result r[2];
    int tg[2];
    float z[8];
    CHECK_OK(kiln_explain_gradients(e, x, 2, NULL, 0, 0, g, NULL, z));
    for (int i = 0; i < 2; i++) {
        tg[i] = 0;
        for (int j = 1; j < 4; j++)
            if (z[i * 4 + j] > z[i * 4 + tg[i]]) tg[i] = j;
    }
    kiln_explain_opts o = {.method = KILN_EXPLAIN_GRAD_X_INPUT, .target = -1};
    CHECK_OK(kiln_explain(e, &o, x, 2, a, r));
    double d = 0;
    for (int j = 0; j < 2 * W; j++) d = fmax(d, fabs(a[j] - g[j] * x[j]));
    CHECK_MSG(d < 1e-6, "grad x input off by %g", d);
    CHECK(r[0].target == tg[0] && r[1].target == tg[1] && r[0].predicted == tg[0]);
    CHECK(r[0].probability > 0 && r[0].probability <= 1);
    o.method = KILN_EXPLAIN_SALIENCY;
    CHECK_OK(kiln_explain(e, &o, x, 2, a, r));
    d = 0;
    for (int j = 0; j < 2 * W; j++) d = fmax(d, fabs(a[j] - fabsf(g[j])));
    CHECK_MSG(d < 1e-6, "saliency off by %g", d);

    /* integrated gradients: completeness, with each baseline, logit and probability, on a
     * smooth model (max pooling's kinks are what the step count has to resolve) */
    net sm = make_net(0, KILN_ACT_TANH);
    kiln_explainer *es = kiln_explainer_new(sm.g, sm.in, sm.out, "softmax");
    for (int b = 0; b < KILN_BASELINE_COUNT; b++)
        for (int prob = 0; prob <= 1; prob++) {
            kiln_explain_opts ig = {.method = KILN_EXPLAIN_INTEGRATED_GRADIENTS,
                                    .target = 1,
                                    .steps = 64,
                                    .baseline = (kiln_explain_baseline)b,
                                    .probability = prob,
                                    .batch = 20,
                                    .seed = 5};
            CHECK_OK(kiln_explain(es, &ig, x, 2, a, r));
            for (int i = 0; i < 2; i++) {
                CHECK_MSG(r[i].completeness < 0.01, "baseline %s prob %d row %d: completeness %g",
                          kiln_explain_baseline_name(b), prob, i, r[i].completeness);
                CHECK_NEAR(r[i].score, fwd_score(es, x + i * W, 1, prob), 1e-6);
            }
        }
    kiln_explainer_free(es);
    kiln_graph_free(sm.g);
    float zero[72] = {0};
    kiln_explain_opts ig = {.method = KILN_EXPLAIN_INTEGRATED_GRADIENTS, .target = 1};
    CHECK_OK(kiln_explain(e, &ig, x, 1, a, r));
    CHECK_NEAR(r[0].baseline_score, fwd_score(e, zero, 1, 0), 1e-6);

    /* SmoothGrad with tiny noise is the gradient */
    kiln_explain_opts sg = {
        .method = KILN_EXPLAIN_SMOOTHGRAD, .target = -1, .sigma = 1e-6f, .samples = 5};
    CHECK_OK(kiln_explain(e, &sg, x, 2, a, r));
    d = 0;
    for (int j = 0; j < 2 * W; j++) d = fmax(d, fabs(a[j] - g[j]));
    CHECK_MSG(d < 1e-4, "smoothgrad (sigma ~0) off the gradient by %g", d);
    sg.sigma = 0.3f;
    CHECK_OK(kiln_explain(e, &sg, x, 1, a, r));
    d = 0;
    for (int j = 0; j < W; j++) d = fmax(d, fabs(a[j] - g[j]));
    CHECK_MSG(d > 1e-4, "smoothgrad with noise equals the gradient");

    /* occlusion: window 3 stride 3 tiles the 6 x 6 input: each element's attribution is the
     * score drop of occluding its own tile, recomputed here by hand */
    float black[72];
    for (int j = 0; j < W; j++) black[j] = -0.25f;
    CHECK_OK(kiln_explainer_set_black(e, black));
    kiln_explain_opts oc = {
        .method = KILN_EXPLAIN_OCCLUSION, .target = 2, .window = 3, .stride = 3, .batch = 3};
    CHECK_OK(kiln_explain(e, &oc, x, 1, a, r));
    float f0 = fwd_score(e, x, 2, 0);
    d = 0;
    for (int ty = 0; ty < 2; ty++)
        for (int tx = 0; tx < 2; tx++) {
            float xo[72];
            memcpy(xo, x, sizeof xo);
            for (int c = 0; c < 2; c++)
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++) xo[c * 36 + (ty * 3 + i) * 6 + tx * 3 + j] = -0.25f;
            float drop = f0 - fwd_score(e, xo, 2, 0);
            for (int c = 0; c < 2; c++)
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++)
                        d = fmax(d, fabs(a[c * 36 + (ty * 3 + i) * 6 + tx * 3 + j] - drop));
        }
    CHECK_MSG(d < 1e-6, "occlusion off by %g", d);
    kiln_explainer_free(e);
    kiln_graph_free(n.g);
}

static void test_gradcam(void) {
    net n = make_net(0, KILN_ACT_RELU);
    kiln_explainer *e = kiln_explainer_new(n.g, n.in, n.out, NULL);
    CHECK(kiln_explainer_default_layer(e) &&
          !strcmp(kiln_explainer_default_layer(e), kiln_node_name(n.conv)));
    float x[2 * 72], a[2 * 72];
    kiln_test_fill(x, 2 * 72, -1, 1, 11);
    kiln_explain_result r[2];
    /* A = relu(conv(x)) from an inference plan; dense kernel [108, 4]: d f_t / d A = K[:, t] */
    kiln_node *outs[1] = {n.conv};
    kiln_plan_opts po = {.outputs = outs, .n_outputs = 1, .batch = 2};
    kiln_plan *p = kiln_plan_new(n.g, &po);
    memcpy(kiln_plan_data(p, n.in), x, sizeof x);
    CHECK_OK(kiln_plan_forward(p));
    const float *A = kiln_plan_data(p, n.conv);
    const float *K = NULL;
    for (int i = 0; i < kiln_graph_param_count(n.g); i++) {
        const kiln_param_info *pi = kiln_graph_param_info(n.g, i);
        if (pi->shape.ndim == 2) K = kiln_graph_params(n.g) + pi->offset;
    }
    for (int pp = 0; pp <= 1; pp++) {
        kiln_explain_opts o = {.method = pp ? KILN_EXPLAIN_GRADCAM_PP : KILN_EXPLAIN_GRADCAM,
                               .target = 3};
        CHECK_OK(kiln_explain(e, &o, x, 2, a, r));
        CHECK(r[0].size == 36 && r[0].layer && !strcmp(r[0].layer, kiln_node_name(n.conv)));
        double d = 0;
        for (int b = 0; b < 2; b++) {
            const float *Ab = A + b * 108;
            double w[3];
            for (int c = 0; c < 3; c++) {
                double s = 0, sa = 0;
                for (int q = 0; q < 36; q++) sa += Ab[c * 36 + q];
                for (int q = 0; q < 36; q++) {
                    double gq = K[(c * 36 + q) * 4 + 3];
                    if (!pp)
                        s += gq / 36;
                    else if (gq != 0)
                        s += gq * gq / (2 * gq * gq + sa * gq * gq * gq) * fmax(gq, 0);
                }
                w[c] = s;
            }
            for (int q = 0; q < 36; q++) {
                double cam = 0;
                for (int c = 0; c < 3; c++) cam += w[c] * Ab[c * 36 + q];
                d = fmax(d, fabs(fmax(cam, 0) - a[b * 72 + q]) / (1e-3 + fabs(cam)));
            }
        }
        CHECK_MSG(d < 1e-4, "%s off by %g (relative)", pp ? "gradcam++" : "gradcam", d);
    }
    kiln_plan_free(p);
    /* bad options */
    kiln_explain_opts o = {.method = KILN_EXPLAIN_GRADCAM, .layer = "nope"};
    CHECK(kiln_explain(e, &o, x, 1, a, r) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("'nope': no such layer");
    o = (kiln_explain_opts){.method = KILN_EXPLAIN_SALIENCY, .target = 4};
    CHECK(kiln_explain(e, &o, x, 1, a, r) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("target 4, but the model has 4 outputs");
    o = (kiln_explain_opts){.method = KILN_EXPLAIN_SALIENCY, .probability = 1};
    CHECK(kiln_explain(e, &o, x, 1, a, r) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("no probabilities");
    CHECK(kiln_explain_method_from_name("ig") == KILN_EXPLAIN_INTEGRATED_GRADIENTS);
    CHECK(kiln_explain_method_from_name("gradcam++") == KILN_EXPLAIN_GRADCAM_PP);
    CHECK(kiln_explain_method_from_name("lime") == KILN_EXPLAIN_METHOD_COUNT);
    kiln_explainer_free(e);
    kiln_graph_free(n.g);
}

static void test_cubehelix(void) {
    unsigned char c[3], lo[3], hi[3];
    kiln_explain_cubehelix(0, lo);
    kiln_explain_cubehelix(1, hi);
    CHECK(lo[0] == 0 && lo[1] == 0 && lo[2] == 0 && hi[0] == 255 && hi[1] == 255 && hi[2] == 255);
    double prev = -1;
    int mono = 1;
    for (int i = 0; i <= 100; i++) {
        kiln_explain_cubehelix((float)i / 100, c);
        double l = 0.30 * c[0] + 0.59 * c[1] + 0.11 * c[2]; /* Green's perceived brightness */
        mono &= l >= prev - 1.0;                            /* rounding to bytes */
        prev = l;
    }
    CHECK_MSG(mono, "cubehelix lightness not monotonic");
    float attr[4] = {0, 1, 2, 3}, img[4] = {0, 0, 0, 0};
    unsigned char rgb[4 * 4 * 3];
    CHECK_OK(kiln_explain_overlay(attr, 1, img, 1, 2, 2, 2, rgb));
    CHECK(rgb[0] == 0 && rgb[1] == 0 && rgb[2] == 0); /* zero attribution on black: black */
}

/* The PNG encoder (zlib, Sub/Up filters) against stb_image's decoder: the same pixels, for a
 * magnified overlay (repeated rows) and for noise (every filter byte wraps around). */
static void test_png_roundtrip(void) {
    enum { H = 5, W = 4, S = 3 };
    float attr[H * W], img[H * W];
    for (int i = 0; i < H * W; i++) attr[i] = (float)((i * 7) % 11) - 5, img[i] = (float)(i % 3);
    unsigned char rgb[H * S * W * S * 3], noise[7 * 9 * 3];
    CHECK_OK(kiln_explain_overlay(attr, 1, img, 1, H, W, S, rgb));
    for (size_t i = 0; i < sizeof noise; i++) noise[i] = (unsigned char)(i * 2654435761u >> 13);
    /* the overlay magnifies: cell (i / S, j / S) of a plain 1x overlay */
    unsigned char one[H * W * 3];
    CHECK_OK(kiln_explain_overlay(attr, 1, img, 1, H, W, 1, one));
    int same = 1;
    for (int i = 0; i < H * S; i++)
        for (int j = 0; j < W * S; j++)
            same &= !memcmp(rgb + (i * W * S + j) * 3, one + (i / S * W + j / S) * 3, 3);
    CHECK_MSG(same, "a magnified overlay is not the 1x overlay's cells repeated");
    const unsigned char *pics[2] = {rgb, noise};
    int ws[2] = {W * S, 9}, hs[2] = {H * S, 7};
    for (int k = 0; k < 2; k++) {
        void *png = NULL;
        size_t len = 0;
        CHECK_OK(kiln_explain_png(pics[k], ws[k], hs[k], &png, &len));
        int w = 0, h = 0, c = 0;
        unsigned char *back = stbi_load_from_memory(png, (int)len, &w, &h, &c, 3);
        CHECK_MSG(back && w == ws[k] && h == hs[k] && c == 3, "PNG %d does not decode", k);
        if (back) CHECK_MSG(!memcmp(back, pics[k], (size_t)(w * h * 3)), "PNG %d pixels differ", k);
        stbi_image_free(back);
        free(png);
    }
}

int main(void) {
    RUN(test_png_roundtrip);
    RUN(test_gradients_vs_finite_differences);
    RUN(test_single_logit_probability);
    RUN(test_methods);
    RUN(test_gradcam);
    RUN(test_cubehelix);
    return kiln_test_summary();
}

/* test_shape_ops.c — reshape, flatten and concat: forward against plain index loops (every
 * batch size, ids too), backward against finite differences, tensors consumed twice (including
 * twice by one concat), and the errors the builders and plans give for bad shapes. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

static kiln_node *param(kiln_graph *g, const char *name, int ndim, const int64_t *dims) {
    return kiln_param(g, name, ndim, dims, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
}

static kiln_plan *plan(kiln_graph *g, kiln_node *y, kiln_node *loss, int batch) {
    kiln_plan *p = kiln_plan_new(
        g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = loss, .batch = batch});
    CHECK_MSG(p != NULL, "plan: %s", kiln_last_error());
    return p;
}

static int shape_is(kiln_shape s, int ndim, const int64_t *dims) {
    kiln_shape want = kiln_shape_make(ndim, dims);
    return kiln_shape_equal(&s, &want);
}

/* ---- reshape / flatten ---- */

static void test_reshape_forward_every_batch(void) {
    for (int batch = 1; batch <= 3; batch += 2) {
        kiln_graph *g = kiln_graph_new(1);
        kiln_node *x = kiln_input(g, "x", KILN_F32, 3, (int64_t[]){2, 3, 5});
        kiln_node *r = kiln_reshape(g, x, 2, (int64_t[]){5, -1});
        kiln_node *f = kiln_flatten(g, x);
        kiln_node *ids = kiln_input(g, "ids", KILN_I32, 1, (int64_t[]){6});
        kiln_node *ri = kiln_reshape(g, ids, 2, (int64_t[]){2, 3});
        CHECK_MSG(r && f && ri, "%s", kiln_last_error());
        if (!r || !f || !ri) return kiln_graph_free(g);
        CHECK(strcmp(kiln_node_name(r), "reshape_1") == 0);
        CHECK(strcmp(kiln_node_name(f), "flatten_1") == 0);
        CHECK(strcmp(kiln_node_op(f), "reshape") == 0);
        CHECK(kiln_node_dtype(ri) == KILN_I32);
        kiln_node *outs[3] = {r, f, ri};
        kiln_plan *p =
            kiln_plan_new(g, &(kiln_plan_opts){.outputs = outs, .n_outputs = 3, .batch = batch});
        CHECK_MSG(p != NULL, "%s", kiln_last_error());
        if (!p) return kiln_graph_free(g);
        CHECK(shape_is(kiln_plan_shape(p, r), 3, (int64_t[]){batch, 5, 6}));
        CHECK(shape_is(kiln_plan_shape(p, f), 2, (int64_t[]){batch, 30}));
        CHECK(shape_is(kiln_plan_shape(p, ri), 3, (int64_t[]){batch, 2, 3}));
        size_t n = (size_t)batch * 30;
        kiln_test_fill(kiln_plan_data(p, x), n, -2, 2, 1);
        int32_t *iv = kiln_plan_data(p, ids);
        for (int i = 0; i < batch * 6; i++) iv[i] = 1000 * i - 7;
        CHECK_OK(kiln_plan_forward(p));
        CHECK(memcmp(kiln_plan_data(p, r), kiln_plan_data(p, x), n * sizeof(float)) == 0);
        CHECK(memcmp(kiln_plan_data(p, f), kiln_plan_data(p, x), n * sizeof(float)) == 0);
        const int32_t *ov = kiln_plan_data(p, ri);
        for (int i = 0; i < batch * 6; i++) CHECK(ov[i] == 1000 * i - 7);
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

static void test_reshape_shapes(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *v = kiln_input(g, "v", KILN_F32, 0, NULL);               /* [B] */
    kiln_node *one = kiln_input(g, "one", KILN_F32, 1, (int64_t[]){1}); /* [B, 1] */
    kiln_node *f = kiln_flatten(g, v);
    kiln_node *s = kiln_reshape(g, one, 0, NULL);
    kiln_node *t = kiln_reshape(g, f, 4, (int64_t[]){1, 1, -1, 1});
    CHECK_MSG(f && s && t, "%s", kiln_last_error());
    if (f) CHECK(shape_is(kiln_node_shape(f), 2, (int64_t[]){1, 1}));
    if (s) CHECK(shape_is(kiln_node_shape(s), 1, (int64_t[]){1}));
    if (t) CHECK(shape_is(kiln_node_shape(t), 5, (int64_t[]){1, 1, 1, 1, 1}));
    kiln_graph_free(g);
}

static void test_reshape_gradcheck(void) {
    kiln_graph *g = kiln_graph_new(2);
    kiln_node *x = param(g, "x", 3, (int64_t[]){3, 4, 5});
    kiln_node *y = kiln_tanh(g, kiln_reshape(g, x, 2, (int64_t[]){-1, 2}));
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (y) CHECK(shape_is(kiln_node_shape(y), 3, (int64_t[]){3, 10, 2}));
    kiln_plan *p = y ? plan(g, y, y, 1) : NULL;
    if (p) CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_reshape_accumulate(void) {
    /* x feeds flatten and reshape (and the reshape feeds a second reshape): x's gradient is the
     * sum of two paths, so one of the backward passes must add. */
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *x = param(g, "x", 3, (int64_t[]){2, 3, 4});
    kiln_node *a = kiln_flatten(g, x);
    kiln_node *b = kiln_reshape(g, kiln_reshape(g, x, 2, (int64_t[]){4, 3}), 1, (int64_t[]){12});
    kiln_node *y = kiln_add(g, a, kiln_sigmoid(g, b));
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    kiln_plan *p = y ? plan(g, y, y, 1) : NULL;
    if (p) CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_reshape_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *x = kiln_input(g, "x", KILN_F32, 1, (int64_t[]){12});
    CHECK(kiln_reshape(g, x, 1, (int64_t[]){5}) == NULL);
    CHECK_ERR_HAS("reshape_1");
    CHECK_ERR_HAS("x=[1, 12]");
    CHECK_ERR_HAS("12 values per sample into [5]");
    CHECK(kiln_reshape(g, x, 2, (int64_t[]){-1, 5}) == NULL);
    CHECK_ERR_HAS("into [-1, 5]");
    CHECK(kiln_reshape(g, x, 2, (int64_t[]){-1, -1}) == NULL);
    CHECK_ERR_HAS("more than one -1");
    CHECK(kiln_reshape(g, x, 2, (int64_t[]){0, 12}) == NULL);
    CHECK_ERR_HAS("dim 0 = 0");
    CHECK(kiln_reshape(g, x, 2, (int64_t[]){-2, 6}) == NULL);
    CHECK_ERR_HAS("must be > 0 or -1");
    CHECK(kiln_reshape(g, x, KILN_MAX_DIMS, (int64_t[]){1, 1, 1, 1, 1, 12}) == NULL);
    CHECK_ERR_HAS("x=[1, 12]");
    CHECK(kiln_reshape(g, x, 2, NULL) == NULL);
    CHECK_ERR_HAS("no dims array");
    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_flatten(g, NULL) == NULL);
    CHECK(kiln_reshape(g, NULL, 1, (int64_t[]){1}) == NULL);
    CHECK_ERR_HAS("first failure");
    kiln_graph_free(g);
}

/* ---- concat ---- */

/* out = concat(xs, axis) by unravelling every output index: independent of the op's
 * row-copy scheme. */
static void ref_concat(float *const *xs, const kiln_shape *sh, int n, int axis, float *out,
                       const kiln_shape *os) {
    int64_t total = kiln_shape_numel(os);
    for (int64_t f = 0; f < total; f++) {
        int64_t idx[KILN_MAX_DIMS] = {0}, rem = f;
        for (int d = os->ndim - 1; d >= 0; d--) idx[d] = rem % os->dims[d], rem /= os->dims[d];
        int i = 0;
        while (idx[axis] >= sh[i].dims[axis]) idx[axis] -= sh[i++].dims[axis];
        int64_t src = 0;
        for (int d = 0; d < os->ndim; d++) src = src * sh[i].dims[d] + idx[d];
        out[f] = xs[i][src];
    }
}

static void check_concat(int n, int ndim, const int64_t dims[][KILN_MAX_DIMS], int axis,
                         int norm_axis) {
    kiln_graph *g = kiln_graph_new(5);
    kiln_node *xs[8];
    kiln_shape sh[8];
    char name[16];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "x%d", i);
        xs[i] = param(g, name, ndim, dims[i]);
        sh[i] = kiln_shape_make(ndim, dims[i]);
    }
    kiln_node *y = kiln_concat(g, xs, n, axis);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (!y) return kiln_graph_free(g);
    CHECK(strcmp(kiln_node_name(y), "concatenate_1") == 0);
    kiln_shape os = sh[0];
    for (int i = 1; i < n; i++) os.dims[norm_axis] += sh[i].dims[norm_axis];
    kiln_shape ys = kiln_node_shape(y);
    CHECK(kiln_shape_equal(&ys, &os));
    kiln_plan *p = plan(g, y, y, 1);
    if (!p) return kiln_graph_free(g);
    CHECK_OK(kiln_plan_forward(p));
    float *vals[8];
    for (int i = 0; i < n; i++) vals[i] = kiln_plan_data(p, xs[i]);
    size_t total = (size_t)kiln_shape_numel(&os);
    float *ref = malloc(total * sizeof *ref);
    ref_concat(vals, sh, n, norm_axis, ref, &os);
    CHECK_MSG(memcmp(ref, kiln_plan_data(p, y), total * sizeof *ref) == 0, "concat axis %d", axis);
    CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0, "concat axis %d", axis);
    free(ref);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_concat_forward_and_gradcheck(void) {
    /* three inputs on axis 1 */
    check_concat(3, 3, (const int64_t[][KILN_MAX_DIMS]){{2, 3, 4}, {2, 5, 4}, {2, 1, 4}}, 1, 1);
    /* three inputs on the last axis of a rank-4 tensor, given as -1 and as 3 */
    const int64_t r4[][KILN_MAX_DIMS] = {{2, 3, 2, 4}, {2, 3, 2, 1}, {2, 3, 2, 3}};
    check_concat(3, 4, r4, -1, 3);
    check_concat(3, 4, r4, 3, 3);
    /* a middle axis, batch 1, odd sizes */
    check_concat(2, 4, (const int64_t[][KILN_MAX_DIMS]){{1, 2, 3, 5}, {1, 2, 1, 5}}, -2, 2);
    check_concat(2, 2, (const int64_t[][KILN_MAX_DIMS]){{5, 7}, {5, 1}}, 1, 1);
    /* one input is a copy; many inputs */
    check_concat(1, 2, (const int64_t[][KILN_MAX_DIMS]){{3, 2}}, 1, 1);
    check_concat(
        7, 2,
        (const int64_t[][KILN_MAX_DIMS]){{2, 1}, {2, 2}, {2, 3}, {2, 1}, {2, 5}, {2, 1}, {2, 2}}, 1,
        1);
    /* large enough for the threaded copies */
    check_concat(3, 2, (const int64_t[][KILN_MAX_DIMS]){{4, 30000}, {4, 1001}, {4, 7}}, 1, 1);
}

static void test_concat_inputs_every_batch(void) {
    for (int batch = 1; batch <= 4; batch += 3) {
        kiln_graph *g = kiln_graph_new(1);
        kiln_node *a = kiln_input(g, "a", KILN_F32, 2, (int64_t[]){3, 2});
        kiln_node *b = kiln_input(g, "b", KILN_F32, 2, (int64_t[]){1, 2});
        kiln_node *ia = kiln_input(g, "ia", KILN_I64, 1, (int64_t[]){2});
        kiln_node *ib = kiln_input(g, "ib", KILN_I64, 1, (int64_t[]){3});
        kiln_node *y = kiln_concat(g, (kiln_node *[]){a, b}, 2, 1);
        kiln_node *yi = kiln_concat(g, (kiln_node *[]){ia, ib}, 2, -1);
        CHECK_MSG(y && yi, "%s", kiln_last_error());
        if (!y || !yi) return kiln_graph_free(g);
        kiln_node *outs[2] = {y, yi};
        kiln_plan *p =
            kiln_plan_new(g, &(kiln_plan_opts){.outputs = outs, .n_outputs = 2, .batch = batch});
        CHECK_MSG(p != NULL, "%s", kiln_last_error());
        if (!p) return kiln_graph_free(g);
        CHECK(shape_is(kiln_plan_shape(p, y), 3, (int64_t[]){batch, 4, 2}));
        float *av = kiln_plan_data(p, a), *bv = kiln_plan_data(p, b);
        kiln_test_fill(av, (size_t)batch * 6, -1, 1, 2);
        kiln_test_fill(bv, (size_t)batch * 2, -1, 1, 3);
        int64_t *iav = kiln_plan_data(p, ia), *ibv = kiln_plan_data(p, ib);
        for (int i = 0; i < batch * 2; i++) iav[i] = i;
        for (int i = 0; i < batch * 3; i++) ibv[i] = 100 + i;
        CHECK_OK(kiln_plan_forward(p));
        const float *yv = kiln_plan_data(p, y);
        const int64_t *yiv = kiln_plan_data(p, yi);
        for (int s = 0; s < batch; s++) {
            for (int j = 0; j < 6; j++) CHECK(yv[s * 8 + j] == av[s * 6 + j]);
            for (int j = 0; j < 2; j++) CHECK(yv[s * 8 + 6 + j] == bv[s * 2 + j]);
            for (int j = 0; j < 2; j++) CHECK(yiv[s * 5 + j] == s * 2 + j);
            for (int j = 0; j < 3; j++) CHECK(yiv[s * 5 + 2 + j] == 100 + s * 3 + j);
        }
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
}

static void test_concat_accumulate(void) {
    /* a appears twice in one concat (the second write must add) and also feeds tanh. */
    kiln_graph *g = kiln_graph_new(4);
    kiln_node *a = param(g, "a", 2, (int64_t[]){2, 3});
    kiln_node *b = param(g, "b", 2, (int64_t[]){2, 2});
    kiln_node *y = kiln_concat(g, (kiln_node *[]){a, b, a, kiln_tanh(g, a)}, 4, 1);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (y) CHECK(shape_is(kiln_node_shape(y), 2, (int64_t[]){2, 11}));
    kiln_plan *p = y ? plan(g, y, y, 1) : NULL;
    if (p) {
        CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0);
        /* with dL/dy = 1 everywhere, dL/da = 2 + tanh'(a) and dL/db = 1 exactly */
        CHECK_OK(kiln_plan_forward(p));
        float *dy = kiln_plan_grad(p, y);
        for (int i = 0; i < 22; i++) dy[i] = 1.0f;
        CHECK_OK(kiln_plan_backward(p));
        const float *av = kiln_plan_data(p, a), *da = kiln_plan_grad(p, a),
                    *db = kiln_plan_grad(p, b);
        for (int i = 0; i < 6; i++) {
            double t = tanh(av[i]);
            CHECK_NEAR(da[i], 2 + (1 - t * t), 1e-6);
        }
        for (int i = 0; i < 4; i++) CHECK(db[i] == 1.0f);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_concat_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *a = kiln_input(g, "a", KILN_F32, 2, (int64_t[]){3, 4});
    kiln_node *b = kiln_input(g, "b", KILN_F32, 2, (int64_t[]){3, 5});
    kiln_node *c = kiln_input(g, "c", KILN_F32, 1, (int64_t[]){3});
    kiln_node *ids = kiln_input(g, "ids", KILN_I32, 2, (int64_t[]){3, 4});
    CHECK(kiln_concat(g, (kiln_node *[]){a, b}, 2, 0) == NULL);
    CHECK_ERR_HAS("concatenate_1");
    CHECK_ERR_HAS("a=[1, 3, 4], b=[1, 3, 5]");
    CHECK_ERR_HAS("batch axis");
    CHECK(kiln_concat(g, (kiln_node *[]){a, b}, 2, -3) == NULL);
    CHECK_ERR_HAS("axis -3");
    CHECK(kiln_concat(g, (kiln_node *[]){a, b}, 2, 3) == NULL);
    CHECK_ERR_HAS("axis 3");
    CHECK(kiln_concat(g, (kiln_node *[]){a, b}, 2, 1) == NULL); /* differ on axis 2 */
    CHECK_ERR_HAS("a=[1, 3, 4], b=[1, 3, 5]");
    CHECK_ERR_HAS("every axis but 1");
    CHECK(kiln_concat(g, (kiln_node *[]){a, c}, 2, 1) == NULL);
    CHECK_ERR_HAS("c=[1, 3]");
    CHECK_ERR_HAS("same rank");
    CHECK(kiln_concat(g, (kiln_node *[]){a, ids}, 2, 1) == NULL);
    CHECK_ERR_HAS("ids is I32");
    CHECK(kiln_concat(g, (kiln_node *[]){a}, 0, 1) == NULL);
    CHECK_ERR_HAS("at least one input");
    CHECK(kiln_concat(g, NULL, 2, 1) == NULL);
    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_concat(g, (kiln_node *[]){a, NULL}, 2, 1) == NULL);
    CHECK_ERR_HAS("first failure");
    /* fine at build time (batch 1), wrong at batch 2: the plan reports it */
    kiln_node *w = kiln_param(g, "w", 2, (int64_t[]){1, 4}, (kiln_init){KILN_INIT_ONES}, 1, 0, 0);
    kiln_node *y = kiln_concat(g, (kiln_node *[]){c, w}, 2, 1);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (y) {
        kiln_plan *p =
            kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .batch = 2});
        CHECK(p == NULL);
        CHECK_ERR_HAS("batch 2");
        CHECK_ERR_HAS("c=[2, 3], w=[1, 4]");
        kiln_plan_free(p);
    }
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_reshape_forward_every_batch);
    RUN(test_reshape_shapes);
    RUN(test_reshape_gradcheck);
    RUN(test_reshape_accumulate);
    RUN(test_reshape_errors);
    RUN(test_concat_forward_and_gradcheck);
    RUN(test_concat_inputs_every_batch);
    RUN(test_concat_accumulate);
    RUN(test_concat_errors);
    return kiln_test_summary();
}

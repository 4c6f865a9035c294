/* test_embedding.c — embedding lookup: forward gathers table rows for I32 and I64 ids at
 * several shapes, the table's gradient matches finite differences, repeated ids accumulate and
 * untouched rows get 0 (over stale values), a table shared by two lookups accumulates, an id
 * outside [0, vocab) fails forward naming the node, the id and where it is, the default
 * initializer is Keras's uniform(-0.05, 0.05), and bad builder calls fail with messages. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "backend/ops.h"
#include "backend/attrs.h"

static void set_id(void *ids, kiln_dtype dt, int64_t i, int64_t v) {
    if (dt == KILN_I64)
        ((int64_t *)ids)[i] = v;
    else
        ((int32_t *)ids)[i] = (int32_t)v;
}

/* ids [B, T...] (dims excludes the batch) with vocab V, dim D: gather and gradient. */
static void check_gather(kiln_dtype dt, int B, int ndim, const int64_t *dims, int V, int D) {
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *ids = kiln_input(g, "tokens", dt, ndim, dims);
    kiln_node *y = kiln_embedding(g, ids, V, D);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    if (!y) return kiln_graph_free(g);
    CHECK(strcmp(kiln_node_name(y), "embedding_1") == 0);
    kiln_shape ys = kiln_node_shape(y);
    CHECK(ys.ndim == ndim + 2 && ys.dims[ndim + 1] == D && kiln_node_dtype(y) == KILN_F32);
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = B});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return kiln_graph_free(g);
    CHECK(kiln_plan_grad(p, ids) == NULL);
    int64_t P = B;
    for (int i = 0; i < ndim; i++) P *= dims[i];
    void *iv = kiln_plan_data(p, ids);
    for (int64_t i = 0; i < P; i++) set_id(iv, dt, i, (i * 7 + 3) % V);
    CHECK_OK(kiln_plan_forward(p));
    const float *table = kiln_plan_data(p, kiln_graph_find(g, "embedding_1.embeddings"));
    const float *out = kiln_plan_data(p, y);
    int64_t wrong = 0;
    for (int64_t i = 0; i < P; i++)
        for (int j = 0; j < D; j++) wrong += out[i * D + j] != table[((i * 7 + 3) % V) * D + j];
    CHECK_MSG(wrong == 0, "%s B=%d V=%d D=%d: %lld values are not the table's", kiln_dtype_name(dt),
              B, V, D, (long long)wrong);
    CHECK_MSG(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0, "%s B=%d V=%d D=%d",
              kiln_dtype_name(dt), B, V, D);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_embedding_gather_and_grad(void) {
    for (int t = 0; t < 2; t++) {
        kiln_dtype dt = t ? KILN_I64 : KILN_I32;
        check_gather(dt, 1, 1, (int64_t[]){1}, 1, 1);
        check_gather(dt, 3, 1, (int64_t[]){5}, 7, 4);
        check_gather(dt, 2, 2, (int64_t[]){2, 3}, 11, 70); /* dim > one column block */
        check_gather(dt, 1, 0, NULL, 5, 3);                /* ids [B]: one id per example */
    }
    /* large enough for the threaded gather and scatter */
    check_gather(KILN_I32, 16, 1, (int64_t[]){40}, 50, 130);
}

/* Repeated ids sum their rows' gradients; rows no id names get 0 even over stale values. */
static void test_embedding_repeated_ids(void) {
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *ids = kiln_input(g, "ids", KILN_I64, 1, (int64_t[]){4});
    kiln_node *y = kiln_embedding(g, ids, 5, 3);
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return kiln_graph_free(g);
    int64_t *iv = kiln_plan_data(p, ids);
    iv[0] = 2, iv[1] = 0, iv[2] = 2, iv[3] = 2;
    float *dt = kiln_plan_grad(p, kiln_graph_find(g, "embedding_1.embeddings"));
    for (int i = 0; i < 15; i++) dt[i] = 99.0f; /* stale values from an earlier step */
    CHECK_OK(kiln_plan_forward(p));
    float *dy = kiln_plan_grad(p, y);
    for (int i = 0; i < 12; i++) dy[i] = (float)(i + 1);
    CHECK_OK(kiln_plan_backward(p));
    float want[15] = {4, 5, 6, 0, 0, 0, 1 + 7 + 10, 2 + 8 + 11, 3 + 9 + 12, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 15; i++) CHECK_NEAR(dt[i], want[i], 0);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

/* One table, two lookups (made directly on the op, as a tied-weights model would), added:
 * the second backward accumulates into the table's gradient. */
static void test_embedding_shared_table(void) {
    kiln_graph *g = kiln_graph_new(8);
    kiln_node *a = kiln_input(g, "a", KILN_I32, 1, (int64_t[]){3});
    kiln_node *b = kiln_input(g, "b", KILN_I32, 1, (int64_t[]){3});
    kiln_node *table = kiln_param(g, "table", 2, (int64_t[]){6, 4},
                                  (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 0, 0);
    kiln_embedding_attr at = {6, 4};
    kiln_node *ea = kiln_graph_add_op(g, &kiln_op_embedding, (kiln_node *[]){a, table}, 2, &at,
                                      sizeof at, "lookup_a");
    kiln_node *eb = kiln_graph_add_op(g, &kiln_op_embedding, (kiln_node *[]){b, table}, 2, &at,
                                      sizeof at, "lookup_b");
    kiln_node *y = kiln_add(g, ea, eb);
    CHECK_MSG(y != NULL, "%s", kiln_last_error());
    kiln_plan *p =
        kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 2});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return kiln_graph_free(g);
    int32_t *ia = kiln_plan_data(p, a), *ib = kiln_plan_data(p, b);
    for (int i = 0; i < 6; i++) ia[i] = i % 4, ib[i] = (i * 5 + 1) % 6;
    CHECK(kiln_test_gradcheck(g, p, y, 1e-3, 1e-3, 3e-3, 200) == 0);
    /* by hand with dy = 1: row r's gradient counts how often r appears in a and b */
    float *dy = kiln_plan_grad(p, y), *dt = kiln_plan_grad(p, table);
    for (int i = 0; i < 24; i++) dy[i] = 1.0f;
    CHECK_OK(kiln_plan_forward(p));
    CHECK_OK(kiln_plan_backward(p));
    for (int r = 0; r < 6; r++) {
        int count = 0;
        for (int i = 0; i < 6; i++) count += (ia[i] == r) + (ib[i] == r);
        for (int j = 0; j < 4; j++) CHECK_NEAR(dt[r * 4 + j], count, 0);
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_embedding_out_of_range(void) {
    for (int t = 0; t < 2; t++) {
        kiln_dtype dt = t ? KILN_I64 : KILN_I32;
        kiln_graph *g = kiln_graph_new(3);
        kiln_node *ids = kiln_input(g, "words", dt, 1, (int64_t[]){3});
        kiln_node *y = kiln_embedding(g, ids, 7, 2);
        kiln_plan *p =
            kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .batch = 2});
        CHECK_MSG(p != NULL, "%s", kiln_last_error());
        if (!p) return kiln_graph_free(g);
        void *iv = kiln_plan_data(p, ids);
        for (int i = 0; i < 6; i++) set_id(iv, dt, i, i);
        set_id(iv, dt, 5, 7); /* ids[1, 2] = vocab */
        CHECK(kiln_plan_forward(p) == KILN_ERR_INVALID);
        CHECK_ERR_HAS("embedding_1");
        CHECK_ERR_HAS("id 7");
        CHECK_ERR_HAS("words[1, 2]");
        CHECK_ERR_HAS("[0, 7)");
        set_id(iv, dt, 5, 6);
        set_id(iv, dt, 1, -1); /* ids[0, 1] negative */
        CHECK(kiln_plan_forward(p) == KILN_ERR_INVALID);
        CHECK_ERR_HAS("id -1");
        CHECK_ERR_HAS("words[0, 1]");
        set_id(iv, dt, 1, 0);
        CHECK_OK(kiln_plan_forward(p));
        kiln_plan_free(p);
        kiln_graph_free(g);
    }
    /* an I64 id beyond 32 bits is reported as it is, not truncated */
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *ids = kiln_input(g, "big", KILN_I64, 0, NULL);
    kiln_node *y = kiln_embedding(g, ids, 3, 2);
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .batch = 1});
    CHECK(p != NULL);
    if (p) {
        *(int64_t *)kiln_plan_data(p, ids) = 4294967297LL; /* 2^32 + 1: 1 if truncated */
        CHECK(kiln_plan_forward(p) == KILN_ERR_INVALID);
        CHECK_ERR_HAS("id 4294967297");
    }
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_embedding_default_init(void) {
    kiln_graph *g = kiln_graph_new(17);
    kiln_node *ids = kiln_input(g, "ids", KILN_I32, 1, (int64_t[]){2});
    CHECK(kiln_embedding(g, ids, 100, 40) != NULL);
    CHECK_OK(kiln_graph_init_params(g));
    const float *w = kiln_node_param_data(g, kiln_graph_find(g, "embedding_1.embeddings"));
    float lo = 1, hi = -1;
    double mean = 0;
    for (int i = 0; i < 4000; i++) {
        lo = w[i] < lo ? w[i] : lo, hi = w[i] > hi ? w[i] : hi;
        mean += w[i];
    }
    mean /= 4000;
    CHECK_MSG(lo >= -0.05f && hi <= 0.05f && lo < -0.049f && hi > 0.049f, "range [%g, %g]",
              (double)lo, (double)hi);
    CHECK_NEAR(mean, 0.0, 0.003); /* sd of the mean: 0.05 / sqrt(3 * 4000) = 0.00046 */
    kiln_graph_free(g);
}

static void test_embedding_errors(void) {
    kiln_graph *g = kiln_graph_new(1);
    kiln_node *f = kiln_input(g, "floats", KILN_F32, 1, (int64_t[]){4});
    CHECK(kiln_embedding(g, f, 10, 4) == NULL);
    CHECK_ERR_HAS("floats");
    CHECK_ERR_HAS("F32");
    CHECK_ERR_HAS("[1, 4]");
    kiln_node *ids = kiln_input(g, "ids", KILN_I32, 1, (int64_t[]){4});
    CHECK(kiln_embedding(g, ids, 0, 4) == NULL);
    CHECK_ERR_HAS("vocab and dim must be > 0");
    CHECK(kiln_embedding(g, ids, 10, -2) == NULL);
    CHECK_ERR_HAS("ids");
    kiln_node *deep = kiln_input(g, "deep", KILN_I32, 5, (int64_t[]){1, 2, 1, 2, 1});
    CHECK(kiln_embedding(g, deep, 10, 4) == NULL);
    CHECK_ERR_HAS("deep");
    /* a table of the wrong shape, given to the op directly */
    kiln_node *t = kiln_param(g, "t", 2, (int64_t[]){9, 4}, (kiln_init){KILN_INIT_ZEROS}, 1, 0, 0);
    kiln_embedding_attr at = {10, 4};
    CHECK(kiln_graph_add_op(g, &kiln_op_embedding, (kiln_node *[]){ids, t}, 2, &at, sizeof at,
                            "lk") == NULL);
    CHECK_ERR_HAS("lk (embedding)");
    CHECK_ERR_HAS("t=[9, 4]");
    kiln_error(KILN_ERR_SHAPE, "first failure");
    CHECK(kiln_embedding(g, NULL, 10, 4) == NULL);
    CHECK_ERR_HAS("first failure");
    kiln_graph_free(g);
}

int main(void) {
    RUN(test_embedding_gather_and_grad);
    RUN(test_embedding_repeated_ids);
    RUN(test_embedding_shared_table);
    RUN(test_embedding_out_of_range);
    RUN(test_embedding_default_init);
    RUN(test_embedding_errors);
    return kiln_test_summary();
}

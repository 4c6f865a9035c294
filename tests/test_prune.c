/* test_prune.c — magnitude pruning (kiln/prune.h), train.prune's schedule (train/prune.h) and
 * the compact storage of pruned tensors in exports (model/sparse.h): exact zero counts with
 * ties and signs, the rounding of k, which parameters the globs select (kernels only) and the
 * error for one that selects nothing, one-shot pruning in the graph or in a copy, the polynomial
 * and constant schedules against their formulas, a sparse export smaller than the dense one
 * that loads to bitwise the same outputs, and damaged sparse entries refused. */
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "kiln/export.h"
#include "kiln/prune.h"
#include "model/sparse.h"
#include "train/prune.h"

static char root[] = "/tmp/kiln-test-prune-XXXXXX";

static const char *CNN =
    "seed: 2\n"
    "data: {source: npy, train: {x: /nonexistent/x.npy, y: /nonexistent/y.npy}}\n"
    "model:\n"
    "  input: [1, 8, 8]\n"
    "  layers:\n"
    "    - conv2d: {name: backbone/conv1, filters: 8, kernel: 3, padding: same}\n"
    "    - batchnorm: {name: backbone/bn}\n"
    "    - relu\n"
    "    - flatten\n"
    "    - dense: {units: 16, activation: relu}\n"
    "    - dense: {name: head, units: 4}\n"
    "loss: softmax_cross_entropy\n"
    "train: {epochs: 10, prune: {sparsity: 0.75, start_epoch: 2, end_epoch: 6, frequency: 3}}\n";

static kiln_status build(const char *yaml, kiln_cfg **cfg, kiln_model *m) {
    memset(m, 0, sizeof *m);
    kiln_status st = kiln_config_parse(yaml, "t.yaml", cfg);
    if (!st) st = kiln_config_resolve(*cfg);
    if (!st) st = kiln_model_build(*cfg, m);
    if (!st) st = kiln_graph_init_params(m->graph);
    return st;
}

static size_t zeros(const float *w, size_t n) {
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += w[i] == 0.0f;
    return z;
}

static void test_count(void) {
    CHECK(kiln_prune_count(72, 0.8) == 58);  /* 57.6 */
    CHECK(kiln_prune_count(24, 0.8) == 19);  /* 19.2 */
    CHECK(kiln_prune_count(10, 0.25) == 3);  /* 2.5: half up */
    CHECK(kiln_prune_count(7, 0) == 0);
    CHECK(kiln_prune_count(7, 1) == 7);
}

/* Ties and signs: magnitudes decide, the lower index goes first among equals. */
static void test_mask_exact(void) {
    float w[10] = {0.5f, -0.1f, 0.1f, -0.3f, 0.1f, 2, -0.1f, 0.3f, -4, 0.2f};
    unsigned char m[10];
    CHECK_OK(kiln_prune_mask(w, 10, 0.3, m)); /* 3 of the four 0.1s: indices 1, 2, 4 */
    unsigned char want[10] = {1, 0, 0, 1, 0, 1, 1, 1, 1, 1};
    CHECK(memcmp(m, want, 10) == 0);
    CHECK_OK(kiln_prune_mask(w, 10, 0.75, m)); /* 8 (7.5): all but 2 and -4 */
    unsigned char want2[10] = {0, 0, 0, 0, 0, 1, 0, 0, 1, 0};
    CHECK(memcmp(m, want2, 10) == 0);
    CHECK(kiln_prune_mask(w, 10, 1.5, m) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("sparsity 1.5 is outside [0, 1]");
    /* a large tensor: exactly k zeros, and the kept ones are the largest */
    size_t n = 100003;
    float *big = malloc(n * sizeof *big);
    unsigned char *bm = malloc(n);
    kiln_test_fill(big, n, -1, 1, 9);
    for (size_t i = 0; i < n; i += 7) big[i] = 0.25f; /* many ties */
    CHECK_OK(kiln_prune_mask(big, n, 0.9, bm));
    size_t pruned = 0;
    float max_pruned = 0, min_kept = 2;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(big[i]);
        if (!bm[i]) pruned++, max_pruned = a > max_pruned ? a : max_pruned;
        else min_kept = a < min_kept ? a : min_kept;
    }
    CHECK(pruned == kiln_prune_count(n, 0.9));
    CHECK(max_pruned <= min_kept);
    free(big), free(bm);
}

static void test_select(void) {
    kiln_cfg *cfg;
    kiln_model m;
    CHECK_OK(build(CNN, &cfg, &m));
    kiln_graph *g = m.graph;
    int np = kiln_graph_param_count(g);
    unsigned char *sel = calloc((size_t)np, 1);
    CHECK_OK(kiln_prune_select(g, NULL, 0, sel));
    int n = 0;
    for (int i = 0; i < np; i++) {
        const char *name = kiln_graph_param_info(g, i)->name;
        int kernel = strstr(name, ".kernel") != NULL;
        CHECK_MSG(sel[i] == kernel, "%s selected %d", name, sel[i]);
        n += sel[i];
    }
    CHECK(n == 3);
    const char *globs[] = {"backbone"};
    CHECK_OK(kiln_prune_select(g, globs, 1, sel));
    for (int i = 0; i < np; i++)
        CHECK(sel[i] == !strcmp(kiln_graph_param_info(g, i)->name, "backbone/conv1.kernel"));
    const char *bad[] = {"head", "backbone/bn"};
    CHECK(kiln_prune_select(g, bad, 2, sel) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("params[1]: 'backbone/bn' matches no kernel");
    free(sel);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

static void test_one_shot(void) {
    kiln_cfg *cfg;
    kiln_model m;
    CHECK_OK(build(CNN, &cfg, &m));
    kiln_graph *g = m.graph;
    size_t n = kiln_graph_params_size(g), pruned = 0, total = 0;
    float *copy = malloc(n * sizeof *copy), *orig = malloc(n * sizeof *orig);
    memcpy(copy, kiln_graph_params(g), n * sizeof *copy);
    memcpy(orig, copy, n * sizeof *copy);
    CHECK_OK(kiln_prune_magnitude(g, 0.6, NULL, 0, copy, &pruned, &total));
    CHECK(memcmp(orig, kiln_graph_params(g), n * sizeof *orig) == 0); /* the graph untouched */
    size_t want = 0;
    for (int i = 0; i < kiln_graph_param_count(g); i++) {
        const kiln_param_info *p = kiln_graph_param_info(g, i);
        size_t z = zeros(copy + p->offset, p->numel);
        if (strstr(p->name, ".kernel")) {
            CHECK_MSG(z == kiln_prune_count(p->numel, 0.6), "%s: %zu zeros", p->name, z);
            want += kiln_prune_count(p->numel, 0.6);
        } else {
            CHECK_MSG(!memcmp(copy + p->offset, orig + p->offset, p->numel * 4), "%s", p->name);
        }
    }
    CHECK(pruned == want && total == 8 * 9 + 512 * 16 + 16 * 4);
    CHECK_OK(kiln_prune_magnitude(g, 0.6, NULL, 0, NULL, NULL, NULL)); /* in place */
    CHECK(memcmp(copy, kiln_graph_params(g), n * sizeof *copy) == 0);
    CHECK(kiln_prune_magnitude(g, 1.0, NULL, 0, NULL, NULL, NULL) == KILN_ERR_INVALID);
    free(copy), free(orig);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

static void test_schedule(void) {
    kiln_cfg *cfg;
    kiln_model m;
    CHECK_OK(build(CNN, &cfg, &m));
    kiln_pruner *p = NULL;
    CHECK_OK(kiln_pruner_new(cfg, m.graph, 10, 10, NULL, &p)); /* steps 20 .. 60 */
    if (!p) goto out;
    CHECK_NEAR(kiln_pruner_target(p, 0), 0, 0);
    CHECK_NEAR(kiln_pruner_target(p, 20), 0, 0);
    CHECK_NEAR(kiln_pruner_target(p, 30), 0.75 * (1 - pow(0.75, 3)), 1e-12);
    CHECK_NEAR(kiln_pruner_target(p, 50), 0.75 * (1 - pow(0.25, 3)), 1e-12);
    CHECK(kiln_pruner_target(p, 60) == 0.75 && kiln_pruner_target(p, 99) == 0.75);
    /* update points: 20, 23, ..., 59 and 60 itself; the masks land exactly at 60 */
    float *w = kiln_graph_params(m.graph);
    kiln_test_fill(w, kiln_graph_trainable_size(m.graph), -1, 1, 4);
    int upd;
    CHECK_OK(kiln_pruner_step(p, m.graph, NULL, NULL, 21, &upd));
    CHECK(upd == 0);
    CHECK_OK(kiln_pruner_step(p, m.graph, NULL, NULL, 23, &upd));
    CHECK(upd == 1);
    CHECK_OK(kiln_pruner_step(p, m.graph, NULL, NULL, 60, &upd));
    CHECK(upd == 1);
    for (int i = 0; i < kiln_graph_param_count(m.graph); i++) {
        const kiln_param_info *pi = kiln_graph_param_info(m.graph, i);
        if (strstr(pi->name, ".kernel"))
            CHECK(zeros(w + pi->offset, pi->numel) == kiln_prune_count(pi->numel, 0.75));
    }
    CHECK_OK(kiln_pruner_step(p, m.graph, NULL, NULL, 61, &upd));
    CHECK(upd == 0);
    kiln_pruner_free(p);
    /* constant: the final sparsity at every update point */
    CHECK_OK(kiln_config_set(cfg, "train.prune.schedule=constant"));
    CHECK_OK(kiln_pruner_new(cfg, m.graph, 10, 10, NULL, &p));
    if (p) CHECK(kiln_pruner_target(p, 20) == 0.75 && kiln_pruner_target(p, 33) == 0.75);
    kiln_pruner_free(p);
    p = NULL;
    CHECK_OK(kiln_config_set(cfg, "train.prune.end_epoch=1"));
    CHECK(kiln_pruner_new(cfg, m.graph, 10, 10, NULL, &p) == KILN_ERR_INVALID && !p);
    CHECK_ERR_HAS("train.prune.end_epoch: 1 is before start_epoch 2");
out:
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* Rewrites weights.safetensors of dir with "<name>.sparse_bitmask" one byte shorter. */
static void damage(const char *dir, const char *name) {
    char path[1300], key[300];
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    snprintf(key, sizeof key, "%s.sparse_bitmask", name);
    kiln_st_file *f;
    CHECK_OK(kiln_safetensors_open(path, &f));
    int n = kiln_st_count(f);
    kiln_st_entry *e = calloc((size_t)n, sizeof *e);
    for (int i = 0; i < n; i++) {
        e[i] = *kiln_st_get(f, i);
        if (!strcmp(e[i].name, key)) e[i].shape.dims[0]--;
    }
    CHECK_OK(kiln_safetensors_write(path, e, n, kiln_st_meta_kv(f), kiln_st_meta_count(f)));
    free(e);
    kiln_st_close(f);
}

static void test_sparse_export(void) {
    kiln_cfg *cfg;
    kiln_model m;
    CHECK_OK(build(CNN, &cfg, &m));
    kiln_graph *g = m.graph;
    for (int i = 0; i < kiln_graph_param_count(g); i++) { /* batch-norm statistics too */
        const kiln_param_info *pi = kiln_graph_param_info(g, i);
        float lo = strstr(pi->name, "variance") ? 0.5f : -0.5f;
        kiln_test_fill(kiln_graph_params(g) + pi->offset, pi->numel, lo, 1, 30 + (uint64_t)i);
    }
    CHECK_OK(kiln_prune_magnitude(g, 0.9, NULL, 0, NULL, NULL, NULL));
    char base[1000], v1[1100], v2[1100], v3[1100], path[1300];
    snprintf(base, sizeof base, "%s/exp", root);
    kiln_export_source src = {.model = &m, .cfg = cfg};
    CHECK_OK(kiln_export_graph(&src, base, 1, NULL)); /* dense */
    src.sparse = 1;
    CHECK_OK(kiln_export_graph(&src, base, 2, NULL));
    CHECK_OK(kiln_export_graph(&src, base, 3, NULL));
    snprintf(v1, sizeof v1, "%s/1", base), snprintf(v2, sizeof v2, "%s/2", base);
    snprintf(v3, sizeof v3, "%s/3", base);
    snprintf(path, sizeof path, "%s/weights.safetensors", v1);
    long dense = file_size(path);
    snprintf(path, sizeof path, "%s/weights.safetensors", v2);
    long sparse = file_size(path);
    CHECK_MSG(sparse > 0 && sparse * 3 < dense, "sparse %ld bytes, dense %ld", sparse, dense);
    void *text;
    size_t len;
    snprintf(path, sizeof path, "%s/model.json", v2);
    CHECK_OK(kiln_file_read_all(path, &text, &len, 1 << 20));
    cJSON *j = cJSON_ParseWithLength(text, len), *sp = cJSON_GetObjectItem(j, "sparse");
    CHECK(cJSON_IsObject(sp) && cJSON_GetArraySize(cJSON_GetObjectItem(sp, "tensors")) == 3);
    const cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItem(sp, "tensors"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(t0, "name")->valuestring, "backbone/conv1.kernel"));
    CHECK(cJSON_GetObjectItem(t0, "nonzeros")->valuedouble == 72 - 65); /* 64.8 -> 65 pruned */
    cJSON_Delete(j);
    kiln_free(text);
    kiln_servable *a = NULL, *b = NULL;
    CHECK_OK(kiln_servable_load(v1, &a));
    CHECK_OK(kiln_servable_load(v2, &b));
    if (a && b) {
        size_t n = kiln_graph_params_size(g) * sizeof(float);
        CHECK(!memcmp(kiln_graph_params(kiln_servable_model(a)->graph),
                      kiln_graph_params(kiln_servable_model(b)->graph), n));
        float x[5 * 64], oa[5 * 4], ob[5 * 4];
        kiln_test_fill(x, 5 * 64, -2, 2, 77);
        kiln_plan *pa = kiln_servable_plan(a, 5), *pb = kiln_servable_plan(b, 5);
        CHECK_OK(kiln_servable_predict(a, pa, x, 5, oa, NULL));
        CHECK_OK(kiln_servable_predict(b, pb, x, 5, ob, NULL));
        CHECK(!memcmp(oa, ob, sizeof oa));
    }
    kiln_servable_free(a), kiln_servable_free(b);
    damage(v3, "head.kernel");
    kiln_servable *c = NULL;
    CHECK(kiln_servable_load(v3, &c) == KILN_ERR_FORMAT && !c);
    CHECK_ERR_HAS("sparse tensor 'head.kernel' needs 'head.kernel.sparse_bitmask' as U8 [8]");
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

int main(void) {
    if (!mkdtemp(root)) return 1;
    RUN(test_count);
    RUN(test_mask_exact);
    RUN(test_select);
    RUN(test_one_shot);
    RUN(test_schedule);
    RUN(test_sparse_export);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return kiln_test_summary();
}

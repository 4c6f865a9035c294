/* test_fl.c — federated learning (kiln/fl.h): aggregation, strategies, update checks,
 * partitions, the wire format, and FedAvg with one client against ordinary training. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/checkpoint.h"
#include "kiln/config.h"
#include "kiln/fileio.h"
#include "kiln/fl.h"
#include "kiln/model.h"
#include "kiln/rng.h"
#include "kiln/run.h"
#include "kiln/safetensors.h"
#include "kiln/trainer.h"

/* FedAvg of K known updates is the exact sample-weighted mean. */
static void test_fedavg_exact(void) {
    enum { N = 6, K = 3 };
    float u[K][N] = {{1, 2, 3, -4, 0.5f, 8}, {3, 2, 1, 4, 0.25f, -8}, {0, 0, 7, 0, 1, 16}};
    double w[K] = {1, 2, 5}; /* total 8: every mean below is a dyadic rational */
    kiln_fl_opts o = kiln_fl_opts_default(KILN_FL_FEDAVG);
    kiln_fl_strategy s;
    kiln_fl_accum a;
    CHECK_OK(kiln_fl_strategy_init(&s, &o, N, N));
    CHECK_OK(kiln_fl_accum_init(&a, N));
    for (int k = 0; k < K; k++) kiln_fl_accum_add(&a, u[k], w[k]);
    float g[N] = {9, 9, 9, 9, 9, 9};
    CHECK_OK(kiln_fl_strategy_apply(&s, &a, g));
    for (int i = 0; i < N; i++) {
        double want = 0;
        for (int k = 0; k < K; k++) want += w[k] * u[k][i];
        want /= 8;
        CHECK_MSG(g[i] == (float)want, "param %d: %.9g, want %.9g", i, g[i], want);
    }
    CHECK(g[0] == 0.875f && g[2] == 5.0f && g[5] == 9.0f);
    /* no update: refused, nothing changes */
    kiln_fl_accum_reset(&a);
    CHECK(kiln_fl_strategy_apply(&s, &a, g) == KILN_ERR_INVALID);
    CHECK(g[0] == 0.875f);
    kiln_fl_accum_free(&a);
    kiln_fl_strategy_free(&s);
}

/* FedAdam and FedYogi: one and two steps against the formulas of Reddi et al. 2021. */
static void test_adaptive(void) {
    for (int yogi = 0; yogi < 2; yogi++) {
        kiln_fl_opts o = kiln_fl_opts_default(yogi ? KILN_FL_FEDYOGI : KILN_FL_FEDADAM);
        o.server_lr = 0.1, o.beta1 = 0.9, o.beta2 = 0.99, o.tau = 1e-3;
        kiln_fl_strategy s;
        kiln_fl_accum a;
        CHECK_OK(kiln_fl_strategy_init(&s, &o, 3, 2)); /* the third value is not trainable */
        CHECK_OK(kiln_fl_accum_init(&a, 3));
        float g[3] = {1, -1, 5};
        double m[2] = {0, 0}, v[2] = {1e-6, 1e-6}, x[2] = {1, -1};
        for (int step = 0; step < 2; step++) {
            float u[3] = {(float)x[0] + 0.5f, (float)x[1] - 0.25f, 7};
            kiln_fl_accum_reset(&a);
            kiln_fl_accum_add(&a, u, 3);
            CHECK_OK(kiln_fl_strategy_apply(&s, &a, g));
            for (int i = 0; i < 2; i++) {
                double d = (double)u[i] - (float)x[i], d2 = d * d;
                m[i] = 0.9 * m[i] + 0.1 * d;
                v[i] = yogi ? v[i] - 0.01 * d2 * (v[i] - d2 > 0 ? 1 : -1) : 0.99 * v[i] + 0.01 * d2;
                x[i] = (float)((float)x[i] + 0.1 * m[i] / (sqrt(v[i]) + 1e-3));
                CHECK_NEAR(g[i], x[i], 1e-5);
            }
            CHECK(g[2] == 7.0f); /* non-trainable state: the plain mean */
        }
        kiln_fl_accum_free(&a);
        kiln_fl_strategy_free(&s);
    }
}

/* NaN / Inf refused; a norm over the limit refused, or clipped to it. */
static void test_check_update(void) {
    float g[4] = {0, 0, 0, 0}, u[4] = {3, 4, 0, 0};
    kiln_fl_opts o = kiln_fl_opts_default(KILN_FL_FEDAVG);
    double norm = 0;
    CHECK_OK(kiln_fl_check_update(&o, g, u, 4, &norm));
    CHECK_NEAR(norm, 5, 1e-12);
    u[2] = NAN;
    CHECK(kiln_fl_check_update(&o, g, u, 4, &norm) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("non-finite");
    u[2] = INFINITY;
    CHECK(kiln_fl_check_update(&o, g, u, 4, &norm) == KILN_ERR_INVALID);
    u[2] = 0;
    o.max_norm = 2.5;
    CHECK(kiln_fl_check_update(&o, g, u, 4, &norm) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("over the limit");
    CHECK(u[0] == 3 && u[1] == 4); /* refused: untouched */
    o.clip = 1;
    CHECK_OK(kiln_fl_check_update(&o, g, u, 4, &norm));
    CHECK_NEAR(norm, 5, 1e-12);
    CHECK_NEAR(u[0], 1.5, 1e-6);
    CHECK_NEAR(u[1], 2.0, 1e-6);
}

/* DP-FedAvg: changes clipped to S, clients weighed equally, N(0, (sigma S / m)^2) noise on the
 * mean (parameters only), and the accountant's epsilon. */
static void test_dp(void) {
    enum { N = 20000 };
    kiln_fl_opts o = kiln_fl_opts_default(KILN_FL_FEDAVG);
    o.dp_noise = 2, o.dp_clip = 0.5, o.seed = 9;
    float *g = calloc(N, sizeof *g), *u = calloc(N, sizeof *u);
    unsigned char *used = malloc(N);
    memset(used, 1, N);
    used[7] = 0; /* a gap of the layout: no noise there */
    double norm = 0;
    u[0] = 3, u[1] = 4;
    CHECK_OK(kiln_fl_check_update(&o, g, u, N, &norm));
    CHECK_NEAR(norm, 5, 1e-9);
    CHECK_NEAR(sqrt((double)u[0] * u[0] + (double)u[1] * u[1]), 0.5, 1e-6);
    CHECK(kiln_fl_weight(&o, 1234) == 1);
    kiln_fl_strategy s;
    kiln_fl_accum a;
    CHECK_OK(kiln_fl_strategy_init(&s, &o, N, N));
    s.used = used;
    CHECK_OK(kiln_fl_accum_init(&a, N));
    memset(u, 0, N * sizeof *u);
    for (int k = 0; k < 4; k++) kiln_fl_accum_add(&a, u, kiln_fl_weight(&o, 100 + k));
    CHECK_OK(kiln_fl_strategy_apply(&s, &a, g));
    double ss = 0, sum = 0;
    for (int i = 0; i < N; i++) ss += (double)g[i] * g[i], sum += g[i];
    double sd = sqrt(ss / (N - 1)); /* want 2 * 0.5 / 4 = 0.25 */
    CHECK_MSG(fabs(sd - 0.25) < 0.01, "noise sd %.4f, want 0.25", sd);
    CHECK(fabs(sum / N) < 0.01);
    CHECK(g[7] == 0);
    kiln_fl_accum_free(&a);
    kiln_fl_strategy_free(&s);
    free(g), free(u), free(used);
    /* epsilon: q = 1 is the plain Gaussian mechanism's RDP, alpha / (2 sigma^2) per round */
    double want = INFINITY;
    for (int al = 2; al <= 256; al++) {
        double e = 10 * al / (2 * 1.5 * 1.5) + log(1e5) / (al - 1);
        if (e < want) want = e;
    }
    CHECK_NEAR(kiln_fl_dp_epsilon(1, 1.5, 10, 1e-5), want, 1e-9);
    double e1 = kiln_fl_dp_epsilon(0.1, 1.1, 100, 1e-5),
           e2 = kiln_fl_dp_epsilon(0.1, 1.1, 200, 1e-5);
    double e3 = kiln_fl_dp_epsilon(0.1, 2.0, 100, 1e-5), e4 = kiln_fl_dp_epsilon(1, 1.1, 100, 1e-5);
    CHECK(e1 > 0 && e2 > e1 && e3 < e1 && e4 > 5 * e1); /* more rounds, less noise, no sampling */
    CHECK(kiln_fl_dp_epsilon(0.1, 1.1, 0, 1e-5) == 0);
}

/* Secure aggregation: one masked vector hides its values; the masked sum is the sum. */
static void test_secagg(void) {
    enum { N = 1000, K = 3 };
    const char *ids[K] = {"alice", "bob", "carol"}, *cohort = "alice,bob,carol";
    float w[K][N];
    double n[K] = {10, 20, 70}, want[N];
    for (int k = 0; k < K; k++) kiln_test_fill(w[k], N, -2, 2, 40 + k);
    uint64_t *m[K], *sum = calloc(N, sizeof *sum);
    double *got = calloc(N, sizeof *got);
    for (int k = 0; k < K; k++) {
        m[k] = calloc(N, sizeof **m);
        CHECK_OK(kiln_fl_secagg_mask("shared secret", cohort, ids[k], "3.1", w[k], N, n[k], m[k]));
        kiln_fl_secagg_add(sum, m[k], N);
    }
    /* alone, a masked vector is far from its fixed-point values */
    int close = 0;
    for (int i = 0; i < N; i++)
        close += llabs((int64_t)m[0][i] - llround(n[0] * w[0][i] * 65536)) < 1000000;
    CHECK_MSG(close < 5, "%d of %d masked values near the clear ones", close, N);
    kiln_fl_secagg_unmask(sum, N, got);
    for (int i = 0; i < N; i++) {
        want[i] = 0;
        for (int k = 0; k < K; k++) want[i] += n[k] * w[k][i];
        CHECK_NEAR(got[i], want[i], 3.0 / 65536);
    }
    /* a member missing: the masks do not cancel */
    memset(sum, 0, N * sizeof *sum);
    kiln_fl_secagg_add(sum, m[0], N), kiln_fl_secagg_add(sum, m[1], N);
    kiln_fl_secagg_unmask(sum, N, got);
    CHECK(fabs(got[0] - (n[0] * w[0][0] + n[1] * w[1][0])) > 1);
    CHECK(kiln_fl_secagg_mask("k", cohort, "mallory", "3.1", w[0], N, 1, m[0]) == KILN_ERR_INVALID);
    CHECK(kiln_fl_secagg_mask(NULL, cohort, "alice", "3.1", w[0], N, 1, m[0]) == KILN_ERR_INVALID);
    for (int k = 0; k < K; k++) free(m[k]);
    free(sum), free(got);
}

static int64_t **parts(int clients) {
    return calloc((size_t)clients, sizeof(int64_t *));
}

static void free_parts(int64_t **p, int clients) {
    for (int c = 0; c < clients; c++) free(p[c]);
    free(p);
}

/* Every row goes to exactly one client, rows ascending; iid is balanced; shards:K gives each
 * client at most K classes when shards do not straddle classes. */
static void test_partition(void) {
    enum { N = 1000, C = 10, CL = 10 };
    int32_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = i % C;
    const char *specs[] = {"iid", "dirichlet:0.3", "dirichlet:100", "shards:2"};
    for (int s = 0; s < 4; s++) {
        int64_t **p = parts(CL), counts[CL];
        CHECK_OK(kiln_fl_partition(specs[s], labels, N, C, CL, 1, p, counts));
        static int seen[N];
        memset(seen, 0, sizeof seen);
        int64_t total = 0;
        for (int c = 0; c < CL; c++) {
            total += counts[c];
            int hist[C] = {0}, ncls = 0;
            for (int64_t i = 0; i < counts[c]; i++) {
                seen[p[c][i]]++;
                if (i) CHECK(p[c][i] > p[c][i - 1]);
                if (!hist[labels[p[c][i]]]++) ncls++;
            }
            if (s == 0) CHECK(counts[c] == N / CL);
            if (s == 3) CHECK_MSG(ncls <= 2, "shards:2 client %d has %d classes", c, ncls);
        }
        CHECK(total == N);
        for (int i = 0; i < N; i++)
            CHECK_MSG(seen[i] == 1, "%s: row %d seen %d times", specs[s], i, seen[i]);
        free_parts(p, CL);
    }
    /* dirichlet:0.3 is skewed: some client lacks some class entirely */
    int64_t **p = parts(CL), counts[CL];
    CHECK_OK(kiln_fl_partition("dirichlet:0.3", labels, N, C, CL, 1, p, counts));
    int missing = 0;
    for (int c = 0; c < CL; c++) {
        int hist[C] = {0};
        for (int64_t i = 0; i < counts[c]; i++) hist[labels[p[c][i]]]++;
        for (int k = 0; k < C; k++) missing += hist[k] == 0;
    }
    CHECK(missing > 0);
    free_parts(p, CL);
    p = parts(CL);
    CHECK(kiln_fl_partition("dirichlet:0", labels, N, C, CL, 1, p, counts) == KILN_ERR_INVALID);
    CHECK(kiln_fl_partition("stripes", labels, N, C, CL, 1, p, counts) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("expected iid");
    free_parts(p, CL);
}

static const char *MODEL_YAML =
    "experiment: fl\nseed: 3\ndata: {source: csv, label: y, train: {path: none.csv}}\n"
    "model: {input: [4], layers: [{dense: {units: 5, activation: relu}}, {dense: {units: 3}}]}\n"
    "loss: softmax_cross_entropy\n";

static kiln_status build(const char *yaml, kiln_cfg **cfg, kiln_model *m) {
    kiln_status st = kiln_config_parse(yaml, "test.yaml", cfg);
    if (!st) st = kiln_config_resolve(*cfg);
    if (!st) st = kiln_model_build(*cfg, m);
    if (!st) st = kiln_graph_init_params(m->graph);
    return st;
}

/* Bodies: a round trip, and every malformed body refused with the flat buffer untouched. */
static void test_wire(void) {
    kiln_cfg *cfg = NULL, *cfg2 = NULL;
    kiln_model m = {0}, m2 = {0};
    CHECK_OK(build(MODEL_YAML, &cfg, &m));
    size_t n = kiln_graph_params_size(m.graph);
    float *src = calloc(n, sizeof *src), *dst = calloc(n, sizeof *dst);
    for (int i = 0; i < kiln_graph_param_count(m.graph); i++) {
        const kiln_param_info *pi = kiln_graph_param_info(m.graph, i);
        for (size_t j = 0; j < pi->numel; j++) src[pi->offset + j] = (float)(i * 100 + j) * 0.5f;
    }
    const char *meta[] = {"samples", "42", "round", "7"};
    char *body = NULL, v[32];
    size_t len = 0;
    CHECK_OK(kiln_fl_encode(m.graph, src, meta, 2, &body, &len));
    CHECK_OK(kiln_fl_decode(m.graph, body, len, "update", dst));
    CHECK(memcmp(src, dst, n * sizeof *src) == 0);
    CHECK_OK(kiln_fl_meta(body, len, "samples", v, sizeof v));
    CHECK(!strcmp(v, "42"));
    CHECK(kiln_fl_meta(body, len, "nope", v, sizeof v) == KILN_ERR_NOTFOUND);
    /* garbage */
    memset(dst, 0, n * sizeof *dst);
    CHECK(kiln_fl_decode(m.graph, "not safetensors at all", 22, "update", dst) != KILN_OK);
    CHECK(kiln_fl_decode(m.graph, body, len / 2, "update", dst) != KILN_OK); /* cut short */
    /* another model: a wrong shape */
    CHECK_OK(build("experiment: fl\nseed: 3\ndata: {source: csv, label: y, train: {path: "
                   "n.csv}}\nmodel: {input: [4], layers: [{dense: {units: 6, "
                   "activation: relu}}, {dense: {units: 3}}]}\nloss: softmax_cross_entropy\n",
                   &cfg2, &m2));
    char *b2 = NULL;
    size_t l2 = 0;
    float *z = calloc(kiln_graph_params_size(m2.graph), sizeof *z);
    CHECK_OK(kiln_fl_encode(m2.graph, z, NULL, 0, &b2, &l2));
    CHECK(kiln_fl_decode(m.graph, b2, l2, "update", dst) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("has shape");
    for (size_t i = 0; i < n; i++) CHECK(dst[i] == 0);
    free(b2), free(z);
    kiln_model_free(&m2);
    kiln_cfg_free(cfg2);
    /* a tensor missing, or one too many */
    kiln_st_file *f = NULL;
    CHECK_OK(kiln_safetensors_parse(body, len, "x", &f));
    char path[] = "/tmp/kiln-test-fl-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    kiln_st_entry e[8];
    int ne = kiln_st_count(f);
    for (int i = 0; i < ne && i < 8; i++) e[i] = *kiln_st_get(f, i);
    CHECK_OK(kiln_safetensors_write(path, e, ne - 1, NULL, 0));
    void *fb = NULL;
    size_t fl = 0;
    CHECK_OK(kiln_file_read_all(path, &fb, &fl, SIZE_MAX));
    CHECK(kiln_fl_decode(m.graph, fb, fl, "update", dst) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("is missing");
    kiln_free(fb);
    kiln_shape one = {.ndim = 1, .dims = {1}};
    float x1 = 1;
    e[ne] = (kiln_st_entry){.name = "extra", .dtype = KILN_F32, .shape = one, .data = &x1};
    CHECK_OK(kiln_safetensors_write(path, e, ne + 1, NULL, 0));
    CHECK_OK(kiln_file_read_all(path, &fb, &fl, SIZE_MAX));
    CHECK(kiln_fl_decode(m.graph, fb, fl, "update", dst) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("not a parameter");
    kiln_free(fb);
    unlink(path);
    kiln_st_close(f);
    free(body), free(src), free(dst);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
}

/* FedAvg with one client, one round and the config's epochs is `kiln train`: same seed, same
 * rows, same weights (the client trains from the global model's initial weights, which are the
 * config's seed's, exactly as kiln train initializes them). */
static void test_one_client_is_training(void) {
    char dir[] = "/tmp/kiln-test-fl-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char csv[4200], cfgp[4200], runs[4200];
    snprintf(csv, sizeof csv, "%s/blobs.csv", dir);
    snprintf(cfgp, sizeof cfgp, "%s/blobs.yaml", dir);
    snprintf(runs, sizeof runs, "%s/runs", dir);
    FILE *f = fopen(csv, "w");
    fprintf(f, "a,b,c,label\n");
    for (int i = 0; i < 240; i++) { /* three noisy blobs */
        int k = i % 3;
        fprintf(f, "%.4f,%.4f,%.4f,%d\n", k + 0.7 * kiln_rng_normal(5, 1, 3 * i),
                -k + 0.7 * kiln_rng_normal(5, 1, 3 * i + 1), 0.5 * kiln_rng_normal(5, 1, 3 * i + 2),
                k);
    }
    fclose(f);
    f = fopen(cfgp, "w");
    fprintf(f,
            "experiment: blobs\nseed: 11\n"
            "data: {source: csv, label: label, train: {path: %s}, validation_split: 0.2,\n"
            "       normalize: {standardize: true}, batch_size: 16}\n"
            "model: {input: [3], layers: [{dense: {units: 8, activation: relu}},\n"
            "        {dropout: {rate: 0.2}}, {dense: {units: 3}}]}\n"
            "loss: softmax_cross_entropy\nmetrics: [accuracy]\n"
            "optimizer: {adam: {learning_rate: 0.01}}\n"
            "train: {epochs: 2, ema_decay: 0.9}\n",
            csv);
    fclose(f);
    for (int epochs = 1; epochs <= 2; epochs++) { /* 1 local epoch (the issue), and 2 */
        char set[32];
        snprintf(set, sizeof set, "train.epochs=%d", epochs);
        const char *sets[] = {set};
        kiln_train_opts to = {.config_path = cfgp,
                              .sets = sets,
                              .n_sets = 1,
                              .runs_dir = runs,
                              .name = "central",
                              .quiet = 1};
        kiln_train_result tr;
        CHECK_OK(kiln_train(&to, &tr));
        kiln_fl_sim_opts so = {.clients = 1, .partition = "iid"};
        so.s.config_path = cfgp, so.s.runs_dir = runs, so.s.rounds = 1, so.s.min_clients = 1;
        so.s.fraction_fit = 1, so.s.local_epochs = epochs,
        so.s.strategy = kiln_fl_opts_default(KILN_FL_FEDAVG);
        kiln_fl_result fr;
        CHECK_OK(kiln_fl_simulate(&so, &fr));
        /* compare the parameters (not the EMA) of both final checkpoints */
        kiln_rundir *run = NULL;
        char name[64], pa[4400], pb[4400];
        CHECK_OK(kiln_run_open(tr.run_dir, KILN_RUN_READ, &run));
        CHECK_OK(kiln_run_checkpoint_latest(run, name, sizeof name, NULL, 0));
        kiln_run_close(run);
        snprintf(pa, sizeof pa, "%s/checkpoints/%s/weights.safetensors", tr.run_dir, name);
        snprintf(pb, sizeof pb, "%s/checkpoints/step-1/weights.safetensors", fr.run_dir);
        kiln_st_file *a = NULL, *b = NULL;
        CHECK_OK(kiln_safetensors_open(pa, &a));
        CHECK_OK(kiln_safetensors_open(pb, &b));
        int compared = 0;
        for (int i = 0; a && b && i < kiln_st_count(b); i++) {
            const kiln_st_entry *eb = kiln_st_get(b, i), *ea = kiln_st_find(a, eb->name);
            CHECK_MSG(ea != NULL, "%s missing from kiln train's checkpoint", eb->name);
            if (!ea) continue;
            size_t nel = 1;
            for (int d = 0; d < eb->shape.ndim; d++) nel *= (size_t)eb->shape.dims[d];
            size_t worst = 0;
            double r = kiln_test_compare(eb->data, ea->data, nel, 1e-6, 1e-5, &worst);
            CHECK_MSG(r <= 1, "%s differs at %zu", eb->name, worst);
            compared++;
        }
        CHECK(compared == 4);
        kiln_st_close(a), kiln_st_close(b);
    }
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    RUN(test_fedavg_exact);
    RUN(test_adaptive);
    RUN(test_check_update);
    RUN(test_dp);
    RUN(test_secagg);
    RUN(test_partition);
    RUN(test_wire);
    RUN(test_one_client_is_training);
    return kiln_test_summary();
}

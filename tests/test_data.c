/* test_data.c — datasets in memory, the seeded permutation and split, and the loader: batch
 * order, the final partial batch, drop_last, per-epoch shuffles that depend only on (seed,
 * epoch), exact resume by seek, normalization against a double reference, channel statistics,
 * prefetch on vs off byte for byte, and the prefetch thread's lifetime (start, stop, free while a
 * batch is being prepared). File formats are in test_data_formats.c. */
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* n rows of features [2] = {i, i + 0.5} and class labels i % 7 (or float labels {i, -i}). */
static kiln_dataset *counting(int64_t n, int float_labels) {
    float *x = malloc((size_t)n * 2 * sizeof *x), *yf = malloc((size_t)n * 2 * sizeof *yf);
    int32_t *yi = malloc((size_t)n * sizeof *yi);
    for (int64_t i = 0; i < n; i++) {
        x[2 * i] = (float)i, x[2 * i + 1] = (float)i + 0.5f;
        yi[i] = (int32_t)(i % 7), yf[2 * i] = (float)i, yf[2 * i + 1] = -(float)i;
    }
    kiln_dataset_desc d = {.rows = n,
                           .x_dtype = KILN_F32,
                           .x_shape = kiln_shape_make(1, (const int64_t[]){2}),
                           .x = x,
                           .y_kind = float_labels ? KILN_LABEL_FLOAT : KILN_LABEL_CLASS,
                           .y_width = 2,
                           .y = float_labels ? (void *)yf : (void *)yi};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_dataset_new(&d, &ds));
    free(x), free(yf), free(yi);
    return ds;
}

static void test_dataset_new(void) {
    uint8_t x[4 * 2 * 3];
    for (int i = 0; i < 24; i++) x[i] = (uint8_t)(i * 10);
    int32_t y[4] = {1, 0, 2, 1};
    const char *names[3] = {"cat", "dog", "eel"};
    kiln_dataset_desc d = {.rows = 4,
                           .x_dtype = KILN_U8,
                           .x_shape = kiln_shape_make(2, (const int64_t[]){2, 3}),
                           .x = x,
                           .y_kind = KILN_LABEL_CLASS,
                           .y = y,
                           .num_classes = 3,
                           .class_names = names};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_dataset_new(&d, &ds));
    x[0] = 99; /* the dataset holds a copy */
    if (ds) {
        CHECK(kiln_dataset_rows(ds) == 4 && kiln_dataset_x_dtype(ds) == KILN_U8);
        CHECK(kiln_dataset_x_shape(ds).ndim == 2 && kiln_dataset_x_shape(ds).dims[1] == 3);
        CHECK(kiln_dataset_num_classes(ds) == 3 && kiln_dataset_label_width(ds) == 1);
        CHECK(strcmp(kiln_dataset_class_name(ds, 2), "eel") == 0);
        float row[6];
        int32_t lab;
        CHECK_OK(kiln_dataset_get(ds, 0, row, &lab));
        CHECK(row[0] == 0 && row[5] == 50 && lab == 1);
        CHECK_OK(kiln_dataset_get(ds, 3, row, &lab));
        CHECK(row[0] == 180 && row[5] == 230 && lab == 1);
        CHECK(kiln_dataset_get(ds, 4, row, &lab) == KILN_ERR_INVALID);
        CHECK(kiln_dataset_source_row(ds, 2) == 2 && kiln_dataset_source_row(ds, 4) == -1);
        kiln_dataset_free(ds), ds = NULL;
    }
    /* class ids must fit num_classes; bad shapes and dtypes are refused */
    y[2] = 3;
    CHECK(kiln_dataset_new(&d, &ds) == KILN_ERR_FORMAT && !ds);
    CHECK_ERR_HAS("row 2 has class id 3 (must be in [0, 3))");
    y[2] = -1, d.num_classes = 0, d.class_names = NULL;
    CHECK(kiln_dataset_new(&d, &ds) == KILN_ERR_FORMAT && !ds);
    y[2] = 5;
    CHECK_OK(kiln_dataset_new(&d, &ds));
    CHECK(ds && kiln_dataset_num_classes(ds) == 6 && kiln_dataset_class_name(ds, 0) == NULL);
    kiln_dataset_free(ds), ds = NULL;
    d.x_dtype = KILN_I32;
    CHECK(kiln_dataset_new(&d, &ds) == KILN_ERR_INVALID && !ds);
    d.x_dtype = KILN_U8, d.x_shape.ndim = 0;
    CHECK(kiln_dataset_new(&d, &ds) == KILN_ERR_SHAPE && !ds);
    d.x_shape.ndim = 2, d.rows = 0;
    CHECK(kiln_dataset_new(&d, &ds) == KILN_ERR_INVALID && !ds);
    kiln_dataset_free(NULL);
}

/* Fisher-Yates as documented, written out again. */
static void reference_perm(int64_t n, uint64_t seed, uint64_t stream, int64_t *p) {
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = kiln_rng_below(seed, stream, (uint64_t)i, (uint32_t)(i + 1)), t = p[i];
        p[i] = p[j], p[j] = t;
    }
}

static int is_perm(const int64_t *p, int64_t n) {
    char *seen = calloc((size_t)n, 1);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) ok = p[i] >= 0 && p[i] < n && !seen[p[i]]++;
    free(seen);
    return ok;
}

static void test_permutation(void) {
    int64_t a[1000], b[1000], r[1000];
    CHECK_OK(kiln_data_permutation(1000, 5, 77, a));
    reference_perm(1000, 5, 77, r);
    CHECK(is_perm(a, 1000) && memcmp(a, r, sizeof a) == 0);
    CHECK_OK(kiln_data_permutation(1000, 5, 77, b));
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK_OK(kiln_data_permutation(1000, 6, 77, b));
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK_OK(kiln_data_permutation(1000, 5, 78, b));
    CHECK(memcmp(a, b, sizeof a) != 0);
    int64_t fixed = 0;
    for (int i = 0; i < 1000; i++) fixed += a[i] == i;
    CHECK(fixed < 10); /* about 1 expected */
    CHECK_OK(kiln_data_permutation(1, 5, 77, a));
    CHECK(a[0] == 0);
    CHECK(kiln_data_permutation(0, 5, 77, a) == KILN_ERR_INVALID);
}

static void test_split(void) {
    kiln_dataset *ds = counting(103, 0), *tr = NULL, *va = NULL;
    if (!ds) return;
    CHECK_OK(kiln_data_split(ds, 0.2, 42, &tr, &va));
    if (!tr || !va) goto out;
    CHECK(kiln_dataset_rows(va) == 21 && kiln_dataset_rows(tr) == 82); /* round(20.6) */
    int64_t perm[103];
    reference_perm(103, 42, KILN_DATA_STREAM_SPLIT, perm);
    char in_val[103] = {0}, seen[103] = {0};
    for (int k = 0; k < 21; k++) in_val[perm[k]] = 1;
    for (int which = 0; which < 2; which++) { /* both in file order, disjoint, covering */
        kiln_dataset *v = which ? va : tr;
        for (int64_t i = 0; i < kiln_dataset_rows(v); i++) {
            int64_t r = kiln_dataset_source_row(v, i);
            CHECK(r >= 0 && r < 103 && !seen[r] && in_val[r] == which);
            if (i) CHECK(r > kiln_dataset_source_row(v, i - 1));
            seen[r] = 1;
            float x[2];
            int32_t y;
            CHECK_OK(kiln_dataset_get(v, i, x, &y));
            CHECK(x[0] == (float)r && y == r % 7);
        }
    }
    for (int i = 0; i < 103; i++) CHECK(seen[i]);
    /* deterministic per seed, different across seeds */
    kiln_dataset *tr2 = NULL, *va2 = NULL, *tr3 = NULL, *va3 = NULL;
    CHECK_OK(kiln_data_split(ds, 0.2, 42, &tr2, &va2));
    CHECK_OK(kiln_data_split(ds, 0.2, 43, &tr3, &va3));
    int same2 = 1, same3 = 1;
    for (int64_t i = 0; va2 && va3 && i < 21; i++) {
        same2 &= kiln_dataset_source_row(va2, i) == kiln_dataset_source_row(va, i);
        same3 &= kiln_dataset_source_row(va3, i) == kiln_dataset_source_row(va, i);
    }
    CHECK(same2 && !same3);
    kiln_dataset_free(tr2), kiln_dataset_free(va2), kiln_dataset_free(tr3), kiln_dataset_free(va3);
    /* a view of a view maps to the file's rows, and views outlive their parents */
    kiln_dataset *a = NULL, *b = NULL;
    kiln_dataset_free(ds), ds = NULL;
    CHECK_OK(kiln_data_split(tr, 0.5, 1, &a, &b));
    kiln_dataset_free(tr), tr = NULL;
    if (a && b) {
        CHECK(kiln_dataset_rows(a) + kiln_dataset_rows(b) == 82);
        for (int64_t i = 0; i < kiln_dataset_rows(b); i++) {
            int64_t r = kiln_dataset_source_row(b, i);
            float x[2];
            CHECK(!in_val[r]);
            CHECK_OK(kiln_dataset_get(b, i, x, NULL));
            CHECK(x[0] == (float)r);
        }
    }
    kiln_dataset_free(a), kiln_dataset_free(b);
    /* bad fractions */
    kiln_dataset *small = counting(3, 0), *t = NULL, *v = NULL;
    CHECK(kiln_data_split(small, 0.0, 1, &t, &v) == KILN_ERR_INVALID && !t && !v);
    CHECK_ERR_HAS("validation fraction 0 is not in (0, 1)");
    CHECK(kiln_data_split(small, 1.0, 1, &t, &v) == KILN_ERR_INVALID);
    CHECK(kiln_data_split(small, 0.0 / 0.0, 1, &t, &v) == KILN_ERR_INVALID);
    CHECK(kiln_data_split(small, 0.1, 1, &t, &v) == KILN_ERR_INVALID && !t && !v);
    CHECK_ERR_HAS("fraction 0.1 of 3 rows leaves the validation set empty");
    CHECK(kiln_data_split(small, 0.9, 1, &t, &v) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("leaves the training set empty");
    kiln_dataset_free(small);
out:
    kiln_dataset_free(ds), kiln_dataset_free(tr), kiln_dataset_free(va);
}

static void test_subset(void) {
    kiln_dataset *ds = counting(10, 1), *s = NULL, *s2 = NULL;
    const int64_t rows[4] = {9, 2, 2, 0}, rows2[2] = {3, 1};
    CHECK_OK(kiln_dataset_subset(ds, rows, 4, &s));
    CHECK_OK(kiln_dataset_subset(s, rows2, 2, &s2)); /* rows 0 and 2 of the file */
    kiln_dataset_free(ds);
    if (s && s2) {
        float x[2], y[2];
        CHECK_OK(kiln_dataset_get(s, 0, x, y));
        CHECK(x[0] == 9 && y[0] == 9 && y[1] == -9);
        CHECK(kiln_dataset_source_row(s2, 0) == 0 && kiln_dataset_source_row(s2, 1) == 2);
        CHECK(kiln_dataset_label_kind(s2) == KILN_LABEL_FLOAT && kiln_dataset_label_width(s2) == 2);
    }
    const int64_t bad[2] = {0, 4};
    kiln_dataset *z = NULL;
    CHECK(s && kiln_dataset_subset(s, bad, 2, &z) == KILN_ERR_INVALID && !z);
    CHECK_ERR_HAS("rows[1] = 4 is outside [0, 4)");
    kiln_dataset_free(s), kiln_dataset_free(s2);
}

/* The first feature of each row of a batch: the row index in a counting() dataset. */
static void test_loader_order(void) {
    kiln_dataset *ds = counting(10, 0);
    for (int pf = 0; pf < 2 && ds; pf++) {
        kiln_loader *l = NULL;
        kiln_loader_config c = {.batch_size = 4, .prefetch = pf};
        CHECK_OK(kiln_loader_new(ds, &c, &l));
        if (!l) continue;
        CHECK(kiln_loader_batches(l) == 3);
        float x[8];
        int32_t y[4];
        int rows;
        for (int e = 0; e < 2; e++) {
            const int want_rows[3] = {4, 4, 2};
            for (int b = 0; b < 3; b++) {
                int64_t pe, pb;
                kiln_loader_position(l, &pe, &pb);
                CHECK(pe == e && pb == b);
                CHECK(kiln_loader_next(l, x, y, &rows) == 1);
                CHECK(rows == want_rows[b]);
                for (int k = 0; k < rows; k++)
                    CHECK(x[2 * k] == (float)(4 * b + k) && x[2 * k + 1] == 4 * b + k + 0.5f &&
                          y[k] == (4 * b + k) % 7);
            }
            CHECK(kiln_loader_next(l, x, y, &rows) == 0 && rows == 0);
        }
        int64_t pe, pb;
        kiln_loader_position(l, &pe, &pb);
        CHECK(pe == 2 && pb == 0);
        CHECK(kiln_loader_next(l, x, NULL, &rows) == 1 && rows == 4); /* labels skipped */
        kiln_loader_free(l), l = NULL;
        /* drop_last: only full batches */
        c.drop_last = 1;
        CHECK_OK(kiln_loader_new(ds, &c, &l));
        if (!l) continue;
        CHECK(kiln_loader_batches(l) == 2);
        int n = 0;
        while (kiln_loader_next(l, x, y, &rows) == 1) {
            CHECK(rows == 4);
            n++;
        }
        CHECK(n == 2);
        kiln_loader_free(l);
    }
    kiln_dataset_free(ds);
}

/* Runs one epoch of l and appends each row's first feature to order (n entries). */
static int epoch_order(kiln_loader *l, float *x, int64_t *order, int64_t n) {
    int rows, got = 0;
    while (kiln_loader_next(l, x, NULL, &rows) == 1)
        for (int k = 0; k < rows && got < n; k++) order[got++] = (int64_t)x[2 * k];
    return got;
}

static void test_loader_shuffle(void) {
    const int64_t n = 37;
    kiln_dataset *ds = counting(n, 0);
    kiln_loader *l = NULL, *l2 = NULL, *l3 = NULL;
    kiln_loader_config c = {.batch_size = 8, .shuffle = 1, .seed = 2024};
    CHECK_OK(kiln_loader_new(ds, &c, &l));
    CHECK_OK(kiln_loader_new(ds, &c, &l2));
    c.seed = 2025;
    CHECK_OK(kiln_loader_new(ds, &c, &l3));
    if (!l || !l2 || !l3) goto out;
    float x[16];
    int64_t ord[5][37], ord2[37], ord3[37], ref[37];
    for (int e = 0; e < 5; e++) {
        CHECK(epoch_order(l, x, ord[e], n) == n);
        CHECK(is_perm(ord[e], n));
        reference_perm(n, 2024, KILN_DATA_STREAM_SHUFFLE + (uint64_t)e, ref);
        CHECK_MSG(memcmp(ord[e], ref, sizeof ref) == 0,
                  "epoch %d order differs from the "
                  "documented permutation",
                  e);
        CHECK(epoch_order(l2, x, ord2, n) == n && memcmp(ord[e], ord2, sizeof ord2) == 0);
        CHECK(epoch_order(l3, x, ord3, n) == n && memcmp(ord[e], ord3, sizeof ord3) != 0);
        if (e) CHECK(memcmp(ord[e], ord[e - 1], sizeof ref) != 0);
    }
    /* epoch 3's order without replaying 0..2 */
    kiln_loader_free(l2), l2 = NULL;
    c.seed = 2024;
    CHECK_OK(kiln_loader_new(ds, &c, &l2));
    CHECK_OK(kiln_loader_seek(l2, 3, 0));
    CHECK(l2 && epoch_order(l2, x, ord2, n) == n && memcmp(ord[3], ord2, sizeof ord2) == 0);
out:
    kiln_loader_free(l), kiln_loader_free(l2), kiln_loader_free(l3);
    kiln_dataset_free(ds);
}

/* Data parallel: part r of N of every batch, concatenated over r, is the batch (with and without
 * prefetch), and each part has kiln_loader_shard_rows rows. */
static void test_loader_shards(void) {
    const int64_t n = 37, bs = 8;
    kiln_dataset *ds = counting(n, 0);
    for (int N = 1; N <= 3; N++)
        for (int pf = 0; pf <= 2; pf += 2) {
            kiln_loader_config c = {.batch_size = bs, .shuffle = 1, .seed = 99, .prefetch = pf};
            kiln_loader *whole = NULL, *part[3] = {0};
            CHECK_OK(kiln_loader_new(ds, &c, &whole));
            for (int r = 0; r < N; r++) {
                kiln_loader_config cr = c;
                cr.shard_rank = r, cr.shard_count = N;
                CHECK_OK(kiln_loader_new(ds, &cr, &part[r]));
            }
            float xw[16], xp[16];
            int rows, prow;
            for (int64_t b = 0; whole && kiln_loader_next(whole, xw, NULL, &rows) == 1; b++) {
                int at = 0;
                for (int r = 0; r < N; r++) {
                    CHECK(part[r] && kiln_loader_next(part[r], xp, NULL, &prow) == 1);
                    CHECK_MSG(prow == kiln_loader_shard_rows(n, bs, b, r, N), "N %d batch %lld part %d: %d rows", N,
                              (long long)b, r, prow);
                    CHECK(at + prow <= rows && memcmp(xp, xw + 2 * at, (size_t)prow * 2 * sizeof(float)) == 0);
                    at += prow;
                }
                CHECK_MSG(at == rows, "N %d batch %lld: parts hold %d of %d rows", N, (long long)b, at, rows);
            }
            kiln_loader_free(whole);
            for (int r = 0; r < N; r++) kiln_loader_free(part[r]);
        }
    kiln_loader_config bad = {.batch_size = 2, .shard_rank = 0, .shard_count = 3};
    kiln_loader *l = NULL;
    CHECK(kiln_loader_new(ds, &bad, &l) == KILN_ERR_INVALID && l == NULL);
    kiln_dataset_free(ds);
}

typedef struct {
    int rows;
    float x[8 * 2];
    float y[8 * 2];
} batch_rec;

static void test_loader_seek(void) {
    kiln_dataset *ds = counting(29, 1);
    for (int pf = 0; pf < 2 && ds; pf++) {
        kiln_loader_config c = {.batch_size = 8, .shuffle = 1, .seed = 9, .prefetch = pf};
        kiln_loader *l = NULL;
        CHECK_OK(kiln_loader_new(ds, &c, &l));
        if (!l) continue;
        batch_rec rec[3][4];
        memset(rec, 0, sizeof rec);
        for (int e = 0; e < 3; e++) {
            for (int b = 0; b < 4; b++)
                CHECK(kiln_loader_next(l, rec[e][b].x, rec[e][b].y, &rec[e][b].rows) == 1);
            int rows;
            CHECK(kiln_loader_next(l, rec[0][0].x, NULL, &rows) == 0);
        }
        for (int e = 0; e < 3; e++) CHECK(rec[e][3].rows == 29 - 24);
        /* resume anywhere: a fresh loader seeked to (e, b) continues exactly */
        for (int e = 2; e >= 0; e--)
            for (int b = 3; b >= 0; b--) {
                kiln_loader *r = NULL;
                CHECK_OK(kiln_loader_new(ds, &c, &r));
                CHECK_OK(kiln_loader_seek(r, e, b));
                int64_t pe, pb;
                kiln_loader_position(r, &pe, &pb);
                CHECK(pe == e && pb == b);
                for (int k = e * 4 + b; r && k < 12; k++) {
                    batch_rec got;
                    memset(&got, 0, sizeof got);
                    CHECK(kiln_loader_next(r, got.x, got.y, &got.rows) == 1);
                    CHECK(memcmp(&got, &rec[k / 4][k % 4], sizeof got) == 0);
                    if (k % 4 == 3) CHECK(kiln_loader_next(r, got.x, NULL, &got.rows) == 0);
                }
                kiln_loader_free(r);
            }
        /* seeking to the end of an epoch; seeking in a loader that is running */
        CHECK_OK(kiln_loader_seek(l, 1, 4));
        batch_rec got;
        memset(&got, 0, sizeof got);
        CHECK(kiln_loader_next(l, got.x, got.y, &got.rows) == 0);
        CHECK(kiln_loader_next(l, got.x, got.y, &got.rows) == 1);
        CHECK(memcmp(&got, &rec[2][0], sizeof got) == 0);
        CHECK_OK(kiln_loader_seek(l, 0, 2));
        CHECK(kiln_loader_next(l, got.x, got.y, &got.rows) == 1);
        CHECK(memcmp(&got, &rec[0][2], sizeof got) == 0);
        CHECK(kiln_loader_seek(l, 0, 5) == KILN_ERR_INVALID);
        CHECK_ERR_HAS("batches [0, 4]");
        CHECK(kiln_loader_seek(l, -1, 0) == KILN_ERR_INVALID);
        kiln_loader_free(l);
    }
    kiln_dataset_free(ds);
}

/* u8 images [n, 3, 2, 2] with float labels [n, 2]. */
static kiln_dataset *images(int64_t n) {
    uint8_t *x = malloc((size_t)n * 12);
    float *y = malloc((size_t)n * 2 * sizeof *y);
    for (int64_t i = 0; i < n * 12; i++) x[i] = (uint8_t)kiln_rng_u32(3, 0, (uint64_t)i);
    for (int64_t i = 0; i < n * 2; i++) y[i] = kiln_rng_uniform(3, 1, (uint64_t)i);
    kiln_dataset_desc d = {.rows = n,
                           .x_dtype = KILN_U8,
                           .x_shape = kiln_shape_make(3, (const int64_t[]){3, 2, 2}),
                           .x = x,
                           .y_kind = KILN_LABEL_FLOAT,
                           .y_width = 2,
                           .y = y};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_dataset_new(&d, &ds));
    free(x), free(y);
    return ds;
}

static const float mean3[3] = {0.4f, 0.5f, 0.6f}, std3[3] = {0.2f, 0.25f, 0.3f};

static void test_normalize(void) {
    kiln_dataset *ds = images(11);
    kiln_loader *l = NULL;
    kiln_loader_config c = {
        .batch_size = 11, .norm = {.scale = 1.0f / 255, .channels = 3, .mean = mean3, .std = std3}};
    CHECK_OK(kiln_loader_new(ds, &c, &l));
    float x[11 * 12], y[11 * 2], raw[12], ry[2];
    int rows;
    if (l && kiln_loader_next(l, x, y, &rows) == 1) {
        CHECK(rows == 11);
        double worst = 0;
        for (int i = 0; i < 11; i++) {
            kiln_dataset_get(ds, i, raw, ry);
            for (int j = 0; j < 12; j++) {
                int ch = j / 4;
                double want = (raw[j] / 255.0 - mean3[ch]) / std3[ch],
                       d = fabs(x[i * 12 + j] - want);
                worst = d > worst ? d : worst;
            }
            CHECK(y[2 * i] == ry[0] && y[2 * i + 1] == ry[1]);
        }
        CHECK_MSG(worst < 1e-5, "worst |x - ref| = %g", worst);
    }
    kiln_loader_free(l), l = NULL;
    /* scale only, and no scale at all (0 means 1) */
    c.norm.channels = 0, c.norm.scale = 0.5f;
    CHECK_OK(kiln_loader_new(ds, &c, &l));
    if (l && kiln_loader_next(l, x, NULL, &rows) == 1) {
        kiln_dataset_get(ds, 4, raw, NULL);
        for (int j = 0; j < 12; j++) CHECK(x[4 * 12 + j] == raw[j] * 0.5f);
    }
    kiln_loader_free(l), l = NULL;
    c.norm.scale = 0;
    CHECK_OK(kiln_loader_new(ds, &c, &l));
    if (l && kiln_loader_next(l, x, NULL, &rows) == 1) {
        kiln_dataset_get(ds, 10, raw, NULL);
        CHECK(memcmp(x + 10 * 12, raw, sizeof raw) == 0);
    }
    kiln_loader_free(l);
    kiln_dataset_free(ds);
}

static void test_channel_stats(void) {
    kiln_dataset *ds = images(40), *t = NULL, *v = NULL;
    float mean[3], sd[3];
    CHECK_OK(kiln_data_split(ds, 0.25, 3, &t, &v));
    for (int which = 0; which < 2 && t; which++) {
        kiln_dataset *d = which ? t : ds;
        CHECK_OK(kiln_dataset_channel_stats(d, 1.0f / 255, mean, sd));
        for (int ch = 0; ch < 3; ch++) {
            double s = 0, s2 = 0, cnt = 0;
            for (int64_t i = 0; i < kiln_dataset_rows(d); i++) {
                float x[12];
                kiln_dataset_get(d, i, x, NULL);
                for (int j = 0; j < 4; j++) s += x[ch * 4 + j] / 255.0, cnt++;
            }
            double mu = s / cnt;
            for (int64_t i = 0; i < kiln_dataset_rows(d); i++) {
                float x[12];
                kiln_dataset_get(d, i, x, NULL);
                for (int j = 0; j < 4; j++)
                    s2 += (x[ch * 4 + j] / 255.0 - mu) * (x[ch * 4 + j] / 255.0 - mu);
            }
            CHECK_NEAR(mean[ch], mu, 1e-6);
            CHECK_NEAR(sd[ch], sqrt(s2 / cnt), 1e-6);
        }
    }
    kiln_dataset_free(t), kiln_dataset_free(v), kiln_dataset_free(ds);
    /* a constant feature gets std 1 */
    float x[6] = {1, 5, 2, 5, 3, 5};
    kiln_dataset_desc d = {.rows = 3,
                           .x_dtype = KILN_F32,
                           .x_shape = kiln_shape_make(1, (const int64_t[]){2}),
                           .x = x};
    CHECK_OK(kiln_dataset_new(&d, &ds));
    if (ds) {
        CHECK_OK(kiln_dataset_channel_stats(ds, 0, mean, sd));
        CHECK(mean[0] == 2 && mean[1] == 5 && sd[1] == 1);
        CHECK_NEAR(sd[0], sqrt(2.0 / 3), 1e-6);
    }
    kiln_dataset_free(ds);
}

/* Runs the same script of next and seek calls on two loaders (prefetch off and on) and compares
 * every batch byte for byte. */
static void test_prefetch_identical(void) {
    kiln_dataset *ds = images(53);
    kiln_loader_config c = {
        .batch_size = 7,
        .shuffle = 1,
        .seed = 77,
        .norm = {.scale = 1.0f / 255, .channels = 3, .mean = mean3, .std = std3}};
    kiln_loader *a = NULL, *b = NULL;
    CHECK_OK(kiln_loader_new(ds, &c, &a));
    c.prefetch = 1;
    CHECK_OK(kiln_loader_new(ds, &c, &b));
    float xa[7 * 12], xb[7 * 12], ya[14], yb[14];
    int batches = 0, ends = 0, diffs = 0;
    for (int step = 0; a && b && step < 400; step++) {
        if (kiln_rng_below(5, 0, (uint64_t)step, 10) == 0) {
            int64_t e = kiln_rng_below(5, 1, (uint64_t)step, 6),
                    bt = kiln_rng_below(5, 2, (uint64_t)step, 9);
            CHECK_OK(kiln_loader_seek(a, e, bt));
            CHECK_OK(kiln_loader_seek(b, e, bt));
        }
        memset(xa, 0, sizeof xa), memset(xb, 0xff, sizeof xb);
        memset(ya, 0, sizeof ya), memset(yb, 0xff, sizeof yb);
        int ra = -5, rb = -6, na = kiln_loader_next(a, xa, ya, &ra),
            nb = kiln_loader_next(b, xb, yb, &rb);
        CHECK(na == nb && ra == rb);
        if (na == 1) {
            diffs += memcmp(xa, xb, (size_t)ra * 12 * sizeof *xa) != 0;
            diffs += memcmp(ya, yb, (size_t)ra * 2 * sizeof *ya) != 0;
            batches++;
        } else {
            ends++;
        }
        int64_t pa, pb, qa, qb;
        kiln_loader_position(a, &pa, &qa), kiln_loader_position(b, &pb, &qb);
        CHECK(pa == pb && qa == qb);
    }
    CHECK(diffs == 0);
    CHECK(batches > 300 && ends > 10);
    kiln_loader_free(a), kiln_loader_free(b);
    kiln_dataset_free(ds);
}

/* Thread start and stop, free while a batch is being prepared, the dataset freed first. */
static void test_prefetch_lifetime(void) {
    kiln_dataset *ds = images(500);
    kiln_loader_config c = {.batch_size = 250, .shuffle = 1, .prefetch = 1};
    float x[250 * 12];
    int rows;
    for (int i = 0; i < 30; i++) {
        kiln_loader *l = NULL;
        CHECK_OK(kiln_loader_new(ds, &c, &l));
        if (i % 3 == 1 && l) CHECK(kiln_loader_next(l, x, NULL, &rows) == 1);
        if (i % 3 == 2 && l) CHECK_OK(kiln_loader_seek(l, i, 1));
        kiln_loader_free(l);
    }
    kiln_loader *l = NULL;
    CHECK_OK(kiln_loader_new(ds, &c, &l));
    kiln_dataset_free(ds); /* the loader holds its own reference */
    int n = 0;
    while (l && kiln_loader_next(l, x, NULL, &rows) == 1) n++;
    CHECK(n == 2);
    kiln_loader_free(l);
}

static void test_loader_errors(void) {
    kiln_dataset *ds = images(5);
    kiln_loader *l = NULL;
    kiln_loader_config c = {.batch_size = 0};
    CHECK(kiln_loader_new(ds, &c, &l) == KILN_ERR_INVALID && !l);
    CHECK_ERR_HAS("batch_size 0");
    c.batch_size = 8, c.drop_last = 1;
    CHECK(kiln_loader_new(ds, &c, &l) == KILN_ERR_INVALID && !l);
    CHECK_ERR_HAS("drop_last with 5 rows and batch_size 8 leaves no batch");
    c.drop_last = 0, c.norm.channels = 2, c.norm.mean = mean3, c.norm.std = std3;
    CHECK(kiln_loader_new(ds, &c, &l) == KILN_ERR_SHAPE && !l);
    CHECK_ERR_HAS("normalize has 2 channels, but features [3, 2, 2] have 3");
    const float bad_std[3] = {1, 0, 1};
    c.norm.channels = 3, c.norm.std = bad_std;
    CHECK(kiln_loader_new(ds, &c, &l) == KILN_ERR_INVALID && !l);
    CHECK_ERR_HAS("channel 1 has mean 0.5 std 0");
    c.norm.std = NULL;
    CHECK(kiln_loader_new(ds, &c, &l) == KILN_ERR_INVALID && !l);
    c.norm.channels = 0;
    CHECK_OK(kiln_loader_new(ds, &c, &l));
    int rows;
    CHECK(l && kiln_loader_next(l, NULL, NULL, &rows) == -1);
    kiln_loader_free(l);
    kiln_loader_free(NULL);
    kiln_dataset_free(ds);
}

int main(void) {
    RUN(test_dataset_new);
    RUN(test_permutation);
    RUN(test_split);
    RUN(test_subset);
    RUN(test_loader_order);
    RUN(test_loader_shuffle);
    RUN(test_loader_shards);
    RUN(test_loader_seek);
    RUN(test_normalize);
    RUN(test_channel_stats);
    RUN(test_prefetch_identical);
    RUN(test_prefetch_lifetime);
    RUN(test_loader_errors);
    return kiln_test_summary();
}

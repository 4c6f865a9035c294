/* test_data_formats.c — IDX, CSV and NPY readers: the real Fashion-MNIST files, small files the
 * test writes itself (raw and gzipped), every documented error, and garbage (random bytes from
 * fixed seeds, and single-byte mutations of valid headers) that must give errors, never crashes
 * or reads out of bounds (the ASan build checks the latter). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/"

/* ---- scratch files ---- */

static char dir[64];

/* dir/name in one of 8 rotating buffers: copy a name that must outlive 8 more calls. */
static const char *tmp(const char *name) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void write_str(const char *path, const char *s) {
    write_file(path, s, strlen(s));
}

/* gzip of data [n] in memory (*out [*on], malloc'd). */
static unsigned char *gzip_bytes(const void *data, size_t n, size_t *on) {
    z_stream z = {0};
    CHECK(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    size_t cap = deflateBound(&z, (uLong)n) + 64;
    unsigned char *out = malloc(cap);
    z.next_in = (Bytef *)data, z.avail_in = (uInt)n;
    z.next_out = out, z.avail_out = (uInt)cap;
    CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
    *on = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static void write_gz(const char *path, const void *data, size_t n) {
    size_t gn;
    unsigned char *g = gzip_bytes(data, n, &gn);
    write_file(path, g, gn);
    free(g);
}

static void fill_random(unsigned char *p, size_t n, uint64_t stream) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)kiln_rng_u32(7, stream, i);
}

/* ---- IDX ---- */

/* An IDX u8 header: magic 00 00 08 ndim, big-endian dims. Returns its size. */
static size_t idx_header(unsigned char *out, int ndim, const uint32_t *dims) {
    size_t n = 4;
    out[0] = out[1] = 0, out[2] = 8, out[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        out[n++] = (unsigned char)(dims[i] >> 24), out[n++] = (unsigned char)(dims[i] >> 16);
        out[n++] = (unsigned char)(dims[i] >> 8), out[n++] = (unsigned char)dims[i];
    }
    return n;
}

/* A whole IDX u8 file: the header, then data [prod dims]. Returns its size. */
static size_t idx_bytes(unsigned char *out, int ndim, const uint32_t *dims,
                        const unsigned char *data) {
    size_t n = idx_header(out, ndim, dims), m = 1;
    for (int i = 0; i < ndim; i++) m *= dims[i];
    memcpy(out + n, data, m);
    return n + m;
}

static void test_fashion_mnist(void) {
    if (access(FMNIST "train-images-idx3-ubyte.gz", R_OK) != 0) {
        printf("  (skipped: Fashion-MNIST is not installed at " FMNIST ")\n");
        return;
    }
    kiln_dataset *tr = NULL, *te = NULL, *te_flat = NULL;
    CHECK_OK(kiln_data_load_idx(FMNIST "train-images-idx3-ubyte.gz",
                                FMNIST "train-labels-idx1-ubyte.gz", 0, &tr));
    CHECK_OK(kiln_data_load_idx(FMNIST "t10k-images-idx3-ubyte.gz",
                                FMNIST "t10k-labels-idx1-ubyte.gz", 0, &te));
    CHECK_OK(kiln_data_load_idx(FMNIST "t10k-images-idx3-ubyte.gz", NULL, 1, &te_flat));
    if (!tr || !te || !te_flat) goto out;
    CHECK(kiln_dataset_rows(tr) == 60000 && kiln_dataset_rows(te) == 10000);
    kiln_shape s = kiln_dataset_x_shape(tr);
    CHECK(s.ndim == 3 && s.dims[0] == 1 && s.dims[1] == 28 && s.dims[2] == 28);
    s = kiln_dataset_x_shape(te_flat);
    CHECK(s.ndim == 1 && s.dims[0] == 784);
    CHECK(kiln_dataset_x_dtype(tr) == KILN_U8);
    CHECK(kiln_dataset_label_kind(tr) == KILN_LABEL_CLASS && kiln_dataset_num_classes(tr) == 10);
    CHECK(kiln_dataset_label_kind(te_flat) == KILN_LABEL_NONE);
    CHECK(kiln_dataset_class_name(tr, 0) == NULL);

    float x[784];
    int32_t y;
    const int first_train[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, last_train[5] = {5, 1, 3, 0, 5};
    const int first_test[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    for (int i = 0; i < 10; i++) {
        CHECK_OK(kiln_dataset_get(tr, i, x, &y));
        CHECK_MSG(y == first_train[i], "train label %d is %d", i, (int)y);
        CHECK_OK(kiln_dataset_get(te, i, x, &y));
        CHECK_MSG(y == first_test[i], "test label %d is %d", i, (int)y);
    }
    for (int i = 0; i < 5; i++) {
        CHECK_OK(kiln_dataset_get(tr, 59995 + i, x, &y));
        CHECK(y == last_train[i]);
    }
    /* pixel sums computed once from the files with Python's gzip module */
    double sum = 0;
    CHECK_OK(kiln_dataset_get(tr, 0, x, NULL));
    for (int j = 0; j < 784; j++) sum += x[j];
    CHECK(sum == 76247);
    sum = 0;
    CHECK_OK(kiln_dataset_get(tr, 59999, x, NULL));
    for (int j = 0; j < 784; j++) sum += x[j];
    CHECK(sum == 16684);
    sum = 0;
    CHECK_OK(kiln_dataset_get(te_flat, 0, x, NULL));
    for (int j = 0; j < 784; j++) sum += x[j];
    CHECK(sum == 33456);
    int counts[10] = {0};
    for (int64_t i = 0; i < 60000; i++) {
        kiln_dataset_get(tr, i, NULL, &y);
        counts[y]++;
    }
    for (int k = 0; k < 10; k++) CHECK(counts[k] == 6000);

    /* The runner's path: split off 10 % for validation, batches scaled to [0, 1]. */
    kiln_dataset *t = NULL, *v = NULL;
    CHECK_OK(kiln_data_split(tr, 0.1, 1, &t, &v));
    if (t && v) {
        CHECK(kiln_dataset_rows(t) == 54000 && kiln_dataset_rows(v) == 6000);
        kiln_loader *l = NULL;
        kiln_loader_config c = {.batch_size = 128, .prefetch = 1, .norm.scale = 1.0f / 255};
        CHECK_OK(kiln_loader_new(v, &c, &l));
        float *bx = malloc(128 * 784 * sizeof *bx);
        int32_t by[128];
        int rows, nb = 0, last = 0;
        double bsum = 0, want = 0, lo = 1, hi = 0;
        while (l && kiln_loader_next(l, bx, by, &rows) == 1) {
            nb++, last = rows;
            for (int k = 0; k < rows * 784; k++) {
                bsum += bx[k];
                lo = bx[k] < lo ? bx[k] : lo, hi = bx[k] > hi ? bx[k] : hi;
            }
        }
        for (int64_t i = 0; i < 6000; i++) {
            kiln_dataset_get(v, i, x, NULL);
            for (int j = 0; j < 784; j++) want += x[j] / 255.0;
        }
        CHECK(nb == 47 && last == 6000 - 46 * 128);
        CHECK(lo == 0 && hi == 1);
        CHECK_NEAR(bsum, want, 1e-6 * want);
        free(bx);
        kiln_loader_free(l);
    }
    kiln_dataset_free(t), kiln_dataset_free(v);
out:
    kiln_dataset_free(tr), kiln_dataset_free(te), kiln_dataset_free(te_flat);
}

static unsigned char img5[5 * 3 * 4], lab5[5] = {3, 1, 4, 1, 5};

static void write_small_idx(void) {
    unsigned char buf[256];
    for (int i = 0; i < 60; i++) img5[i] = (unsigned char)(i * 37 + 11);
    size_t n = idx_bytes(buf, 3, (const uint32_t[]){5, 3, 4}, img5);
    write_file(tmp("img.idx"), buf, n);
    write_gz(tmp("img.idx.gz"), buf, n);
    write_file(tmp("img-gz-named.idx"), buf, n); /* raw, though the next one is named .gz */
    n = idx_bytes(buf, 1, (const uint32_t[]){5}, lab5);
    write_file(tmp("lab.idx"), buf, n);
    write_gz(tmp("lab.gz.idx"), buf, n); /* gzip without the .gz name: detected by content */
}

static void test_idx_small(void) {
    write_small_idx();
    const char *imgs[2] = {tmp("img.idx"), tmp("img.idx.gz")};
    const char *labs[2] = {tmp("lab.idx"), tmp("lab.gz.idx")};
    for (int v = 0; v < 4; v++) {
        kiln_dataset *ds = NULL;
        int flat = v >= 2;
        CHECK_OK(kiln_data_load_idx(imgs[v & 1], labs[(v >> 1) ^ (v & 1)], flat, &ds));
        if (!ds) continue;
        kiln_shape s = kiln_dataset_x_shape(ds);
        CHECK(kiln_dataset_rows(ds) == 5 && kiln_dataset_num_classes(ds) == 6);
        CHECK(flat ? s.ndim == 1 && s.dims[0] == 12
                   : s.ndim == 3 && s.dims[0] == 1 && s.dims[1] == 3 && s.dims[2] == 4);
        for (int i = 0; i < 5; i++) {
            float x[12];
            int32_t y;
            CHECK_OK(kiln_dataset_get(ds, i, x, &y));
            CHECK(y == lab5[i]);
            for (int j = 0; j < 12; j++) CHECK(x[j] == img5[i * 12 + j]);
        }
        kiln_dataset_free(ds);
    }
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_data_load_idx(imgs[1], NULL, 0, &ds));
    CHECK(ds && kiln_dataset_label_kind(ds) == KILN_LABEL_NONE &&
          kiln_dataset_label_width(ds) == 0);
    kiln_dataset_free(ds);
}

/* Loading must fail with code, and the message must contain sub. */
#define EXPECT_IDX_ERR(img, lab, code, sub)                                                        \
    do {                                                                                           \
        kiln_dataset *d_ = NULL;                                                                   \
        kiln_status s_ = kiln_data_load_idx(img, lab, 0, &d_);                                     \
        CHECK_MSG(s_ == (code), "%s, expected %s: %s", kiln_status_name(s_),                       \
                  kiln_status_name(code), kiln_last_error());                                      \
        CHECK(d_ == NULL);                                                                         \
        CHECK_ERR_HAS(sub);                                                                        \
        kiln_dataset_free(d_);                                                                     \
    } while (0)

static void test_idx_errors(void) {
    write_small_idx();
    unsigned char buf[512], *g;
    size_t n, gn;
    EXPECT_IDX_ERR(tmp("nope.idx"), NULL, KILN_ERR_IO, "nope.idx: cannot open");
    EXPECT_IDX_ERR(dir, NULL, KILN_ERR_IO, "is a directory");
    EXPECT_IDX_ERR(tmp("img.idx"), tmp("nope.idx"), KILN_ERR_IO, "nope.idx");
    write_file(tmp("empty.idx"), "", 0);
    EXPECT_IDX_ERR(tmp("empty.idx"), NULL, KILN_ERR_FORMAT, "empty.idx: IDX magic: needs 4 bytes");
    /* labels given as images, and images as labels */
    EXPECT_IDX_ERR(tmp("lab.idx"), NULL, KILN_ERR_FORMAT, "has 1 dims, but images have 3");
    EXPECT_IDX_ERR(tmp("img.idx"), tmp("img.idx"), KILN_ERR_FORMAT,
                   "has 3 dims, but labels have 1");
    write_str(tmp("text.idx"), "hello world, not idx");
    EXPECT_IDX_ERR(tmp("text.idx"), NULL, KILN_ERR_FORMAT, "text.idx: not an IDX file");
    n = idx_bytes(buf, 3, (const uint32_t[]){5, 3, 4}, img5);
    buf[2] = 0x0D; /* float32 elements */
    write_file(tmp("f32.idx"), buf, n);
    EXPECT_IDX_ERR(tmp("f32.idx"), NULL, KILN_ERR_FORMAT, "element type 0x0d is not supported");
    /* dims that do not match the file size */
    n = idx_bytes(buf, 3, (const uint32_t[]){5, 3, 4}, img5);
    write_file(tmp("short.idx"), buf, n - 30);
    EXPECT_IDX_ERR(tmp("short.idx"), NULL, KILN_ERR_FORMAT,
                   "implies 60 bytes after offset 16 but the file has 30");
    write_gz(tmp("short.idx.gz"), buf, n - 30);
    EXPECT_IDX_ERR(tmp("short.idx.gz"), NULL, KILN_ERR_FORMAT,
                   "needs 60 bytes at offset 16 but the file ends after 30");
    memcpy(buf + n, "xyz", 3);
    write_file(tmp("long.idx"), buf, n + 3);
    EXPECT_IDX_ERR(tmp("long.idx"), NULL, KILN_ERR_FORMAT, "3 unexpected bytes after the IDX data");
    write_gz(tmp("long.idx.gz"), buf, n + 3);
    EXPECT_IDX_ERR(tmp("long.idx.gz"), NULL, KILN_ERR_FORMAT, "unexpected data after the IDX data");
    /* images vs labels count */
    n = idx_bytes(buf, 1, (const uint32_t[]){4}, lab5);
    write_file(tmp("lab4.idx"), buf, n);
    EXPECT_IDX_ERR(tmp("img.idx"), tmp("lab4.idx"), KILN_ERR_FORMAT, "has 5 images but");
    CHECK_ERR_HAS("lab4.idx has 4 labels");
    /* zero and absurd dims; a gzip header that promises 500 MB it does not have */
    n = idx_bytes(buf, 3, (const uint32_t[]){5, 0, 4}, img5);
    write_file(tmp("zero.idx"), buf, n);
    EXPECT_IDX_ERR(tmp("zero.idx"), NULL, KILN_ERR_FORMAT, "IDX dim 1 is 0");
    n = idx_header(buf, 3, (const uint32_t[]){65535, 65535, 2});
    write_file(tmp("huge.idx"), buf, n);
    EXPECT_IDX_ERR(tmp("huge.idx"), NULL, KILN_ERR_FORMAT,
                   "IDX dims [65535, 65535, 2] are more than 4294967296 bytes");
    n = idx_header(buf, 3, (const uint32_t[]){1000, 1000, 500});
    memcpy(buf + n, img5, 60), memcpy(buf + n + 60, img5, 24);
    write_gz(tmp("promise.idx.gz"), buf, n + 84);
    EXPECT_IDX_ERR(tmp("promise.idx.gz"), NULL, KILN_ERR_FORMAT, "the file ends after 84");
    /* a truncated .gz: cut in the deflate data, and cut before the CRC trailer */
    n = idx_bytes(buf, 3, (const uint32_t[]){5, 3, 4}, img5);
    g = gzip_bytes(buf, n, &gn);
    write_file(tmp("cut.idx.gz"), g, gn / 2);
    EXPECT_IDX_ERR(tmp("cut.idx.gz"), NULL, KILN_ERR_FORMAT, "cut.idx.gz");
    CHECK_ERR_HAS("truncated");
    write_file(tmp("cut8.idx.gz"), g, gn - 8);
    EXPECT_IDX_ERR(tmp("cut8.idx.gz"), NULL, KILN_ERR_FORMAT, "the gzip stream is truncated");
    write_file(tmp("cut2.idx.gz"), g, 2);
    EXPECT_IDX_ERR(tmp("cut2.idx.gz"), NULL, KILN_ERR_FORMAT, "cut2.idx.gz");
    g[gn - 6] ^= 0x55; /* a wrong CRC */
    write_file(tmp("crc.idx.gz"), g, gn);
    EXPECT_IDX_ERR(tmp("crc.idx.gz"), NULL, KILN_ERR_FORMAT, "corrupt gzip data");
    free(g);
}

/* Random bytes as IDX, CSV and NPY files (raw and gzipped): errors, never crashes. */
static void test_garbage(void) {
    write_small_idx();
    unsigned char *buf = malloc(4096);
    char raw[256], gz[256], img[256]; /* tmp() names are reused after 8 calls */
    snprintf(raw, sizeof raw, "%s", tmp("garbage.bin"));
    snprintf(gz, sizeof gz, "%s", tmp("garbage.bin.gz"));
    snprintf(img, sizeof img, "%s", tmp("img.idx"));
    int errors = 0, runs = 0;
    for (int t = 0; t < 60; t++) {
        size_t n = kiln_rng_below(3, 1, (uint64_t)t, 4096);
        fill_random(buf, n, 100 + (uint64_t)t);
        if (t % 3 == 1) memcpy(buf, "\x00\x00\x08\x03", n < 4 ? n : 4);  /* IDX-like */
        if (t % 3 == 2) memcpy(buf, "\x93NUMPY\x01\x00", n < 8 ? n : 8); /* NPY-like */
        write_file(raw, buf, n);
        write_gz(gz, buf, n);
        for (int z = 0; z < 2; z++) {
            const char *p = z ? gz : raw;
            kiln_dataset *d = NULL;
            kiln_csv_options co = {.label = "y", .label_kind = KILN_LABEL_CLASS};
            errors += kiln_data_load_idx(p, NULL, 0, &d) != KILN_OK;
            kiln_dataset_free(d), d = NULL;
            errors += kiln_data_load_idx(img, p, 0, &d) != KILN_OK;
            kiln_dataset_free(d), d = NULL;
            errors += kiln_data_load_npy(p, NULL, KILN_LABEL_NONE, &d) != KILN_OK;
            kiln_dataset_free(d), d = NULL;
            errors += kiln_data_load_csv(p, &co, &d) != KILN_OK;
            kiln_dataset_free(d), d = NULL;
            runs += 4;
        }
    }
    CHECK_MSG(errors == runs, "%d of %d garbage files loaded", runs - errors, runs);
    free(buf);
}

/* Every single-byte change to the header of a valid file loads or fails cleanly. */
static void test_header_mutations(void) {
    unsigned char good[256], buf[256];
    size_t n = idx_bytes(good, 3, (const uint32_t[]){5, 3, 4}, img5);
    int ok = 0;
    for (int pos = 0; pos < 16; pos++)
        for (int v = 0; v < 8; v++) {
            memcpy(buf, good, n);
            buf[pos] = (unsigned char)kiln_rng_u32(9, (uint64_t)pos, (uint64_t)v);
            write_file(tmp("mut.idx"), buf, n);
            kiln_dataset *d = NULL;
            kiln_status s = kiln_data_load_idx(tmp("mut.idx"), NULL, 0, &d);
            CHECK(s == KILN_OK || s == KILN_ERR_FORMAT);
            ok += s == KILN_OK;
            kiln_dataset_free(d);
        }
    CHECK(ok < 16 * 8);
}

/* ---- CSV ---- */

static kiln_dataset *csv_load(const char *text, const char *label, kiln_label_kind kind) {
    write_str(tmp("t.csv"), text);
    kiln_csv_options o = {.label = label, .label_kind = kind};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_data_load_csv(tmp("t.csv"), &o, &ds));
    return ds;
}

/* Row i's features [nf] and label equal the expected ones. */
static void check_row(kiln_dataset *ds, int64_t i, const float *want, int nf, double label) {
    float x[16], yf[4];
    int32_t yi;
    int cls = kiln_dataset_label_kind(ds) == KILN_LABEL_CLASS;
    CHECK_OK(kiln_dataset_get(ds, i, x, cls ? (void *)&yi : (void *)yf));
    for (int j = 0; j < nf; j++)
        CHECK_MSG(x[j] == want[j], "row %lld x[%d] = %g, want %g", (long long)i, j, x[j], want[j]);
    if (kiln_dataset_label_kind(ds) != KILN_LABEL_NONE)
        CHECK_MSG((cls ? yi : yf[0]) == label, "row %lld label %g, want %g", (long long)i,
                  cls ? yi : yf[0], label);
}

static void test_csv_basic(void) {
    kiln_dataset *ds =
        csv_load("a,label,b\n1,0,2\n3.5,2,-4e1\n  5 ,1,6\n", "label", KILN_LABEL_CLASS);
    if (ds) {
        kiln_shape s = kiln_dataset_x_shape(ds);
        CHECK(kiln_dataset_rows(ds) == 3 && s.ndim == 1 && s.dims[0] == 2);
        CHECK(kiln_dataset_x_dtype(ds) == KILN_F32 && kiln_dataset_num_classes(ds) == 3);
        CHECK(kiln_dataset_class_name(ds, 0) == NULL);
        check_row(ds, 0, (const float[]){1, 2}, 2, 0);
        check_row(ds, 1, (const float[]){3.5f, -40}, 2, 2);
        check_row(ds, 2, (const float[]){5, 6}, 2, 1);
        kiln_dataset_free(ds);
    }
    /* string labels: ids in byte order of the distinct names */
    ds = csv_load("x,species\n1,virginica\n2,setosa\n3,versicolor\n4,setosa\n", "species",
                  KILN_LABEL_CLASS);
    if (ds) {
        CHECK(kiln_dataset_num_classes(ds) == 3);
        CHECK(strcmp(kiln_dataset_class_name(ds, 0), "setosa") == 0);
        CHECK(strcmp(kiln_dataset_class_name(ds, 1), "versicolor") == 0);
        CHECK(strcmp(kiln_dataset_class_name(ds, 2), "virginica") == 0);
        CHECK(kiln_dataset_class_name(ds, 3) == NULL && kiln_dataset_class_name(ds, -1) == NULL);
        const int want[4] = {2, 0, 1, 0};
        for (int i = 0; i < 4; i++) check_row(ds, i, (const float[]){(float)i + 1}, 1, want[i]);
        kiln_dataset_free(ds);
    }
    /* one non-integer label makes all labels names; "-1" and "1" are names too */
    ds = csv_load("x,y\n0,1\n0,-1\n0,1\n", "y", KILN_LABEL_CLASS);
    if (ds) {
        CHECK(kiln_dataset_num_classes(ds) == 2);
        CHECK(strcmp(kiln_dataset_class_name(ds, 0), "-1") == 0);
        check_row(ds, 1, (const float[]){0}, 1, 0);
        kiln_dataset_free(ds);
    }
    /* regression targets, unlabeled, selected feature columns */
    ds = csv_load("a,b,c,price\n1,2,3,9.25\n4,5,6,-1e-3\n", "price", KILN_LABEL_FLOAT);
    if (ds) {
        CHECK(kiln_dataset_label_kind(ds) == KILN_LABEL_FLOAT && kiln_dataset_label_width(ds) == 1);
        check_row(ds, 0, (const float[]){1, 2, 3}, 3, 9.25);
        check_row(ds, 1, (const float[]){4, 5, 6}, 3, -1e-3f);
        kiln_dataset_free(ds);
    }
    ds = csv_load("a,b\n1,2\n", NULL, KILN_LABEL_CLASS);
    if (ds) {
        CHECK(kiln_dataset_label_kind(ds) == KILN_LABEL_NONE && kiln_dataset_num_classes(ds) == 0);
        check_row(ds, 0, (const float[]){1, 2}, 2, 0);
        kiln_dataset_free(ds);
    }
    write_str(tmp("sel.csv"), "id,name,a,b,c,y\n7,\"x\",1,2,3,1\n8,zz,4,5,6,0\n");
    const char *cols[2] = {"c", "a"};
    kiln_csv_options o = {.label = "y",
                          .label_kind = KILN_LABEL_CLASS,
                          .feature_columns = cols,
                          .num_feature_columns = 2};
    CHECK_OK(kiln_data_load_csv(tmp("sel.csv"), &o, &ds));
    if (ds) {
        CHECK(kiln_dataset_x_shape(ds).dims[0] == 2);
        check_row(ds, 1, (const float[]){6, 4}, 2, 0);
        kiln_dataset_free(ds), ds = NULL;
    }
    /* another delimiter, and gzip */
    const char *semi = "a;b;y\n1.5;\"2\";0\n3;4;1\n";
    write_gz(tmp("semi.csv.gz"), semi, strlen(semi));
    kiln_csv_options os = {.label = "y", .label_kind = KILN_LABEL_CLASS, .delimiter = ';'};
    CHECK_OK(kiln_data_load_csv(tmp("semi.csv.gz"), &os, &ds));
    if (ds) check_row(ds, 0, (const float[]){1.5f, 2}, 2, 0);
    CHECK(ds && kiln_dataset_rows(ds) == 2);
    kiln_dataset_free(ds);
}

static void test_csv_quoting(void) {
    /* quoted fields with commas, doubled quotes and a line break; CRLF; BOM; blank lines */
    kiln_dataset *ds = csv_load("\xEF\xBB\xBF"
                                "f1, \"f,2\" ,lab\r\n"
                                "1,\"2.5\",\"a,b\"\r\n"
                                "\r\n"
                                "3, 4 ,\"say \"\"hi\"\"\"\r\n"
                                "5,6,\"two\nlines\"\r\n"
                                "7,8,\"a,b\"\r\n"
                                "\r\n   \r\n\r\n",
                                "lab", KILN_LABEL_CLASS);
    if (ds) {
        CHECK(kiln_dataset_rows(ds) == 4 && kiln_dataset_num_classes(ds) == 3);
        /* names in byte order: "a,b" < "say \"hi\"" < "two\nlines" */
        CHECK(strcmp(kiln_dataset_class_name(ds, 0), "a,b") == 0);
        CHECK(strcmp(kiln_dataset_class_name(ds, 1), "say \"hi\"") == 0);
        CHECK(strcmp(kiln_dataset_class_name(ds, 2), "two\nlines") == 0);
        check_row(ds, 0, (const float[]){1, 2.5f}, 2, 0);
        check_row(ds, 1, (const float[]){3, 4}, 2, 1);
        check_row(ds, 2, (const float[]){5, 6}, 2, 2);
        check_row(ds, 3, (const float[]){7, 8}, 2, 0);
        kiln_dataset_free(ds);
    }
    /* a header named with quotes and the last line without a line break */
    ds = csv_load("\"a\",\"b\"\n1,2", "b", KILN_LABEL_FLOAT);
    if (ds) check_row(ds, 0, (const float[]){1}, 1, 2);
    kiln_dataset_free(ds);
    /* a lone CR ends records too */
    ds = csv_load("a,b\r1,2\r3,4\r", "b", KILN_LABEL_CLASS);
    CHECK(ds && kiln_dataset_rows(ds) == 2);
    kiln_dataset_free(ds);
}

#define EXPECT_CSV_ERR(text, lab_, kind_, code, sub)                                               \
    do {                                                                                           \
        write_str(tmp("bad.csv"), text);                                                           \
        kiln_csv_options o_ = {.label = lab_, .label_kind = kind_};                                \
        kiln_dataset *d_ = NULL;                                                                   \
        kiln_status s_ = kiln_data_load_csv(tmp("bad.csv"), &o_, &d_);                             \
        CHECK_MSG(s_ == (code), "%s, expected %s: %s", kiln_status_name(s_),                       \
                  kiln_status_name(code), kiln_last_error());                                      \
        CHECK(d_ == NULL);                                                                         \
        CHECK_ERR_HAS(sub);                                                                        \
        kiln_dataset_free(d_);                                                                     \
    } while (0)

static void test_csv_errors(void) {
    const kiln_label_kind C = KILN_LABEL_CLASS, F = KILN_LABEL_FLOAT;
    EXPECT_CSV_ERR("a,b,y\n1,2,0\n3,x,1\n", "y", C, KILN_ERR_FORMAT,
                   "bad.csv:3: column 'b': \"x\" is not a finite number");
    EXPECT_CSV_ERR("a,b,y\n1,2,0\n\"q\nq\",1,1\n4,,1\n", "y", C, KILN_ERR_FORMAT,
                   "bad.csv:3: column 'a': \"q\nq\"");
    EXPECT_CSV_ERR("a,b,y\n1,2,0\n\"q\nq\",1,1\n4,,1\n", "y", F, KILN_ERR_FORMAT,
                   "bad.csv:3: column 'a'");
    EXPECT_CSV_ERR("a,b,y\n1,2,0\n\"5\n\",1,1\n4,,1\n", "y", C, KILN_ERR_FORMAT,
                   "bad.csv:3: column 'a'");
    EXPECT_CSV_ERR("a,b,y\n1,2,0\n\"5\",1,1\n\n4,,1\n", "y", C, KILN_ERR_FORMAT,
                   "bad.csv:5: column 'b' is empty");
    EXPECT_CSV_ERR("a,b,y\n1,nan,0\n", "y", C, KILN_ERR_FORMAT,
                   "column 'b': \"nan\" is not a finite number");
    EXPECT_CSV_ERR("a,b,y\n1,1e99,0\n", "y", C, KILN_ERR_FORMAT, "\"1e99\" is not a finite");
    EXPECT_CSV_ERR("a,b,y\n1,2,0\n1,2\n", "y", C, KILN_ERR_FORMAT,
                   "bad.csv:3: 2 fields, but the header has 3 columns");
    EXPECT_CSV_ERR("a,b,y\n1,2,0,4\n", "y", C, KILN_ERR_FORMAT, "bad.csv:2: 4 fields");
    EXPECT_CSV_ERR("a,b,y\n1,2,\n", "y", C, KILN_ERR_FORMAT, "bad.csv:2: the label is empty");
    EXPECT_CSV_ERR("a,b,y\n1,2,x\n", "y", F, KILN_ERR_FORMAT, "bad.csv:2: column 'y': \"x\"");
    EXPECT_CSV_ERR("a,b,y\n1,2,0\n", "z", C, KILN_ERR_NOTFOUND,
                   "no label column 'z' in the header (columns: 'a', 'b', 'y')");
    EXPECT_CSV_ERR("a,b,y\n1,\"2,0\n", "y", C, KILN_ERR_FORMAT,
                   "bad.csv:2: quoted field never closed");
    EXPECT_CSV_ERR("a,b,y\n1,\"2\"x,0\n", "y", C, KILN_ERR_FORMAT,
                   "bad.csv:2: unexpected 'x' after a closing quote");
    EXPECT_CSV_ERR("", "y", C, KILN_ERR_FORMAT, "empty file");
    EXPECT_CSV_ERR("\n\n  \n", "y", C, KILN_ERR_FORMAT, "empty file");
    EXPECT_CSV_ERR("a,b,y\r\n\r\n", "y", C, KILN_ERR_FORMAT, "no data rows");
    EXPECT_CSV_ERR("y\n1\n", "y", C, KILN_ERR_FORMAT, "no feature columns");
    EXPECT_CSV_ERR("a,y,y\n1,2,3\n", "y", C, KILN_ERR_FORMAT,
                   "names column 'y' twice (columns 2 and 3)");
    EXPECT_CSV_ERR("a,b,y\n1,2,3\n", "y", KILN_LABEL_NONE, KILN_ERR_INVALID,
                   "needs the label kind");
    /* feature lists */
    write_str(tmp("f.csv"), "a,b,y\n1,2,0\n");
    kiln_dataset *d = NULL;
    const char *both[2] = {"a", "y"}, *twice[2] = {"a", "a"}, *missing[1] = {"q"};
    kiln_csv_options o = {
        .label = "y", .label_kind = C, .feature_columns = both, .num_feature_columns = 2};
    CHECK(kiln_data_load_csv(tmp("f.csv"), &o, &d) == KILN_ERR_INVALID && !d);
    CHECK_ERR_HAS("'y' is both the label and a feature");
    o.feature_columns = twice;
    CHECK(kiln_data_load_csv(tmp("f.csv"), &o, &d) == KILN_ERR_INVALID && !d);
    CHECK_ERR_HAS("feature column 'a' is listed twice");
    o.feature_columns = missing, o.num_feature_columns = 1;
    CHECK(kiln_data_load_csv(tmp("f.csv"), &o, &d) == KILN_ERR_NOTFOUND && !d);
    CHECK_ERR_HAS("no feature column 'q'");
    o.num_feature_columns = 0;
    CHECK(kiln_data_load_csv(tmp("f.csv"), &o, &d) == KILN_ERR_INVALID && !d);
    CHECK(kiln_data_load_csv(tmp("nope.csv"), NULL, &d) == KILN_ERR_IO && !d);
    CHECK_ERR_HAS("nope.csv: cannot open");
}

/* Random text made of the characters that matter to the tokenizer. */
static void test_csv_fuzz(void) {
    const char alpha[] = "0123456789,,,\"\"\n\r .e-xy";
    char text[600];
    int ok = 0;
    for (int t = 0; t < 300; t++) {
        size_t n = kiln_rng_below(4, 1, (uint64_t)t, sizeof text - 1);
        for (size_t i = 0; i < n; i++)
            text[i] = alpha[kiln_rng_below(4, 2 + (uint64_t)t, i, sizeof alpha - 1)];
        text[n] = 0;
        write_str(tmp("fuzz.csv"), text);
        kiln_csv_options o = {.label = t % 2 ? "y" : NULL, .label_kind = KILN_LABEL_CLASS};
        kiln_dataset *d = NULL;
        kiln_status s = kiln_data_load_csv(tmp("fuzz.csv"), &o, &d);
        CHECK_MSG(s == KILN_OK || s == KILN_ERR_FORMAT || s == KILN_ERR_NOTFOUND, "%s: %s",
                  kiln_status_name(s), kiln_last_error());
        CHECK((s == KILN_OK) == (d != NULL));
        ok += s == KILN_OK;
        kiln_dataset_free(d);
    }
    CHECK(ok < 300);
}

/* ---- NPY ---- */

/* A .npy file as NumPy writes it: the dict padded with spaces to a multiple of 64 bytes in all,
 * ending in '\n'. dict NULL: the usual one from descr, fortran and shape. */
static size_t npy_bytes(unsigned char *out, int major, const char *dict_or_null, const char *descr,
                        const char *shape, const void *data, size_t nbytes) {
    char dict[512];
    if (dict_or_null)
        snprintf(dict, sizeof dict, "%s", dict_or_null);
    else
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
                 shape);
    size_t pre = major == 1 ? 10 : 12, hl = strlen(dict) + 1;
    hl += (64 - (pre + hl) % 64) % 64;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)major, out[7] = 0;
    out[8] = hl & 255, out[9] = (hl >> 8) & 255;
    if (major != 1) out[10] = (hl >> 16) & 255, out[11] = (unsigned char)(hl >> 24);
    memset(out + pre, ' ', hl);
    memcpy(out + pre, dict, strlen(dict));
    out[pre + hl - 1] = '\n';
    memcpy(out + pre + hl, data, nbytes);
    return pre + hl + nbytes;
}

static unsigned char nbuf[8192];

static const char *npy_file(const char *name, int major, const char *dict, const char *descr,
                            const char *shape, const void *data, size_t nbytes) {
    size_t n = npy_bytes(nbuf, major, dict, descr, shape, data, nbytes);
    const char *p = tmp(name);
    write_file(p, nbuf, n);
    return p;
}

static void test_npy(void) {
    float xf[24];
    double xd[24];
    unsigned char xu[12];
    for (int i = 0; i < 24; i++) xf[i] = (float)i * 0.5f - 3, xd[i] = xf[i];
    for (int i = 0; i < 12; i++) xu[i] = (unsigned char)(200 + i);
    int64_t y8[4] = {2, 0, 1, 2};
    int32_t y4[4] = {1, 1, 0, 3};
    kiln_dataset *ds = NULL;

    const char *fx = npy_file("x.npy", 1, NULL, "<f4", "(4, 2, 3)", xf, sizeof xf);
    const char *fy = npy_file("y.npy", 1, NULL, "<i8", "(4,)", y8, sizeof y8);
    CHECK_OK(kiln_data_load_npy(fx, fy, KILN_LABEL_CLASS, &ds));
    if (ds) {
        kiln_shape s = kiln_dataset_x_shape(ds);
        CHECK(kiln_dataset_rows(ds) == 4 && s.ndim == 2 && s.dims[0] == 2 && s.dims[1] == 3);
        CHECK(kiln_dataset_x_dtype(ds) == KILN_F32 && kiln_dataset_num_classes(ds) == 3);
        for (int i = 0; i < 4; i++) check_row(ds, i, xf + 6 * i, 6, (double)y8[i]);
        kiln_dataset_free(ds), ds = NULL;
    }
    /* version 2.0, float64 features converted, int32 [n, 1] labels */
    fx = npy_file("x2.npy", 2, NULL, "<f8", "(4, 6)", xd, sizeof xd);
    fy = npy_file("y2.npy", 2, NULL, "<i4", "(4, 1)", y4, sizeof y4);
    CHECK_OK(kiln_data_load_npy(fx, fy, KILN_LABEL_CLASS, &ds));
    if (ds) {
        CHECK(kiln_dataset_x_shape(ds).ndim == 1 && kiln_dataset_num_classes(ds) == 4);
        for (int i = 0; i < 4; i++) check_row(ds, i, xf + 6 * i, 6, y4[i]);
        kiln_dataset_free(ds), ds = NULL;
    }
    /* u8 features stay u8; u8 labels; gzip */
    size_t n = npy_bytes(nbuf, 1, NULL, "|u1", "(3, 2, 2)", xu, sizeof xu);
    write_gz(tmp("xu.npy.gz"), nbuf, n);
    fy = npy_file("yu.npy", 1, NULL, "|u1", "(3,)", "\x00\x07\x01", 3);
    CHECK_OK(kiln_data_load_npy(tmp("xu.npy.gz"), fy, KILN_LABEL_CLASS, &ds));
    if (ds) {
        CHECK(kiln_dataset_x_dtype(ds) == KILN_U8 && kiln_dataset_num_classes(ds) == 8);
        check_row(ds, 2, (const float[]){208, 209, 210, 211}, 4, 1);
        kiln_dataset_free(ds), ds = NULL;
    }
    /* float targets [n, 2]; int32 targets converted to float; 1-D features become [1] */
    fx = npy_file("x1.npy", 1, NULL, "<f4", "(4,)", xf, 16);
    fy = npy_file("yf.npy", 1, NULL, "<f4", "(4, 2)", xf + 8, 32);
    CHECK_OK(kiln_data_load_npy(fx, fy, KILN_LABEL_FLOAT, &ds));
    if (ds) {
        CHECK(kiln_dataset_x_shape(ds).ndim == 1 && kiln_dataset_x_shape(ds).dims[0] == 1);
        CHECK(kiln_dataset_label_width(ds) == 2);
        float x, y[2];
        CHECK_OK(kiln_dataset_get(ds, 3, &x, y));
        CHECK(x == xf[3] && y[0] == xf[14] && y[1] == xf[15]);
        kiln_dataset_free(ds), ds = NULL;
    }
    fy = npy_file("yi.npy", 1, NULL, "<i4", "(4,)", y4, sizeof y4);
    CHECK_OK(kiln_data_load_npy(fx, fy, KILN_LABEL_FLOAT, &ds));
    if (ds) check_row(ds, 3, xf + 3, 1, 3.0);
    kiln_dataset_free(ds), ds = NULL;
    /* other spellings NumPy's parser accepts: double quotes, no spaces, Python 2 longs */
    fx = npy_file("xs.npy", 1, "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2L,3L)}",
                  NULL, NULL, xf, 24);
    CHECK_OK(kiln_data_load_npy(fx, NULL, KILN_LABEL_NONE, &ds));
    CHECK(ds && kiln_dataset_rows(ds) == 2 && kiln_dataset_x_shape(ds).dims[0] == 3);
    kiln_dataset_free(ds);
}

#define EXPECT_NPY_ERR(fx, fy, kind, code, sub)                                                    \
    do {                                                                                           \
        kiln_dataset *d_ = NULL;                                                                   \
        kiln_status s_ = kiln_data_load_npy(fx, fy, kind, &d_);                                    \
        CHECK_MSG(s_ == (code), "%s, expected %s: %s", kiln_status_name(s_),                       \
                  kiln_status_name(code), kiln_last_error());                                      \
        CHECK(d_ == NULL);                                                                         \
        CHECK_ERR_HAS(sub);                                                                        \
        kiln_dataset_free(d_);                                                                     \
    } while (0)

#define BADDICT(dict) npy_file("bad.npy", 1, dict, NULL, NULL, xf, 24)

static void test_npy_errors(void) {
    float xf[8] = {0};
    int32_t neg[3] = {0, -1, 0};
    int64_t big[2] = {0, (int64_t)1 << 40};
    const kiln_label_kind C = KILN_LABEL_CLASS, N = KILN_LABEL_NONE;
    char ok[256]; /* tmp() names are reused after 8 calls */
    snprintf(ok, sizeof ok, "%s", npy_file("ok.npy", 1, NULL, "<f4", "(2, 3)", xf, 24));
    EXPECT_NPY_ERR(tmp("nope.npy"), NULL, N, KILN_ERR_IO, "nope.npy: cannot open");
    write_str(tmp("text.npy"), "just some text, long enough");
    EXPECT_NPY_ERR(tmp("text.npy"), NULL, N, KILN_ERR_FORMAT, "text.npy: not a .npy file");
    size_t n = npy_bytes(nbuf, 1, NULL, "<f4", "(2, 3)", xf, 24);
    nbuf[6] = 3;
    write_file(tmp("v3.npy"), nbuf, n);
    EXPECT_NPY_ERR(tmp("v3.npy"), NULL, N, KILN_ERR_FORMAT, "format version 3.0 is not supported");
    nbuf[6] = 1, nbuf[8] = 0xff, nbuf[9] = 0x7f; /* header length past the end of the file */
    write_file(tmp("hlen.npy"), nbuf, n);
    EXPECT_NPY_ERR(tmp("hlen.npy"), NULL, N, KILN_ERR_FORMAT,
                   ".npy header: the header implies 32767 bytes");
    nbuf[8] = nbuf[9] = 0;
    write_file(tmp("hlen0.npy"), nbuf, n);
    EXPECT_NPY_ERR(tmp("hlen0.npy"), NULL, N, KILN_ERR_FORMAT, "header length 0");
    write_file(tmp("pre.npy"), nbuf, 7);
    EXPECT_NPY_ERR(tmp("pre.npy"), NULL, N, KILN_ERR_FORMAT, "needs 10 bytes at offset 0");
    /* the data size must match the shape exactly */
    n = npy_bytes(nbuf, 1, NULL, "<f4", "(2, 3)", xf, 24);
    write_file(tmp("short.npy"), nbuf, n - 4);
    EXPECT_NPY_ERR(tmp("short.npy"), NULL, N, KILN_ERR_FORMAT,
                   "implies 24 bytes after offset 128 but the file has 20");
    write_gz(tmp("short.npy.gz"), nbuf, n - 4);
    EXPECT_NPY_ERR(tmp("short.npy.gz"), NULL, N, KILN_ERR_FORMAT,
                   "needs 24 bytes at offset 128 but the file ends after 20");
    write_file(tmp("long.npy"), nbuf, n + 4);
    EXPECT_NPY_ERR(tmp("long.npy"), NULL, N, KILN_ERR_FORMAT,
                   "4 unexpected bytes after the .npy data");
    /* header dicts */
    EXPECT_NPY_ERR(npy_file("fo.npy", 1,
                            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", NULL,
                            NULL, xf, 24),
                   NULL, N, KILN_ERR_FORMAT, "Fortran order");
    EXPECT_NPY_ERR(npy_file("be.npy", 1, NULL, ">f4", "(2, 3)", xf, 24), NULL, N, KILN_ERR_FORMAT,
                   "'>f4' is not supported");
    CHECK_ERR_HAS("big-endian");
    EXPECT_NPY_ERR(npy_file("c8.npy", 1, NULL, "<c8", "(2, 3)", xf, 24), NULL, N, KILN_ERR_FORMAT,
                   "'<c8' is not supported");
    EXPECT_NPY_ERR(BADDICT("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }"),
                   NULL, N, KILN_ERR_FORMAT, "expected a quoted string");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'shape': (6,), }"), NULL, N, KILN_ERR_FORMAT,
                   "no 'fortran_order' key");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}"), NULL,
                   N, KILN_ERR_FORMAT, "unknown key");
    EXPECT_NPY_ERR(
        BADDICT("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}"), NULL, N,
        KILN_ERR_FORMAT, "repeated key");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'fortran_order': False, 'shape': (2,,3)}"), NULL, N,
                   KILN_ERR_FORMAT, "expected a dimension");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'fortran_order': False, 'shape': (-6,)}"), NULL, N,
                   KILN_ERR_FORMAT, "expected a dimension");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)"), NULL, N,
                   KILN_ERR_FORMAT, "expected ',' or '}'");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4, 'fortran_order': False, 'shape': (6,)}"), NULL, N,
                   KILN_ERR_FORMAT, "expected ',' or '}'");
    EXPECT_NPY_ERR(BADDICT("{'descr' '<f4', 'fortran_order': False, 'shape': (6,)}"), NULL, N,
                   KILN_ERR_FORMAT, "expected ':' at character 9");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'fortran_order': 0, 'shape': (6,)}"), NULL, N,
                   KILN_ERR_FORMAT, "expected True or False");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} x"), NULL, N,
                   KILN_ERR_FORMAT, "unexpected text after the dict");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'fortran_order': False, 'shape': ()}"), NULL, N,
                   KILN_ERR_FORMAT, "scalar");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 6)}"), NULL, N,
                   KILN_ERR_FORMAT, "empty dim (0)");
    EXPECT_NPY_ERR(BADDICT("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,6)}"),
                   NULL, N, KILN_ERR_FORMAT, "more dims than kiln supports");
    EXPECT_NPY_ERR(
        BADDICT("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999,99999999999)}"),
        NULL, N, KILN_ERR_FORMAT, "more than 4294967296 bytes");
    /* labels */
    EXPECT_NPY_ERR(ok, ok, C, KILN_ERR_FORMAT, "dtype '<f4' cannot hold class ids");
    EXPECT_NPY_ERR(ok, npy_file("y3.npy", 1, NULL, "<i4", "(3,)", neg, 12), C, KILN_ERR_SHAPE,
                   "has 2 rows but");
    EXPECT_NPY_ERR(ok, npy_file("y22.npy", 1, NULL, "<i4", "(2, 2)", xf, 16), C, KILN_ERR_SHAPE,
                   "class ids must have shape [n] or [n, 1], got [2, 2]");
    EXPECT_NPY_ERR(ok, npy_file("yneg.npy", 1, NULL, "<i4", "(2,)", neg, 8), C, KILN_ERR_FORMAT,
                   "row 1 has class id -1");
    EXPECT_NPY_ERR(ok, npy_file("ybig.npy", 1, NULL, "<i8", "(2,)", big, 16), C, KILN_ERR_FORMAT,
                   "element 1 is 1099511627776, outside int32");
    EXPECT_NPY_ERR(ok, ok, N, KILN_ERR_INVALID, "needs the label kind");
}

/* Every single-byte change to a valid .npy header loads or fails cleanly. */
static void test_npy_mutations(void) {
    float xf[6] = {1, 2, 3, 4, 5, 6};
    unsigned char good[256];
    size_t n = npy_bytes(good, 1, NULL, "<f4", "(2, 3)", xf, 24);
    int loaded = 0;
    for (size_t pos = 0; pos < n - 24; pos++)
        for (int v = 0; v < 3; v++) {
            memcpy(nbuf, good, n);
            nbuf[pos] = (unsigned char)kiln_rng_u32(11, pos, (uint64_t)v);
            write_file(tmp("mut.npy"), nbuf, n);
            kiln_dataset *d = NULL;
            kiln_status s = kiln_data_load_npy(tmp("mut.npy"), NULL, KILN_LABEL_NONE, &d);
            CHECK_MSG(s == KILN_OK || s == KILN_ERR_FORMAT, "%s", kiln_last_error());
            loaded += s == KILN_OK;
            kiln_dataset_free(d);
        }
    CHECK(loaded < (int)(n - 24) * 3);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/kiln-test-data-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_fashion_mnist);
    RUN(test_idx_small);
    RUN(test_idx_errors);
    RUN(test_garbage);
    RUN(test_header_mutations);
    RUN(test_csv_basic);
    RUN(test_csv_quoting);
    RUN(test_csv_errors);
    RUN(test_csv_fuzz);
    RUN(test_npy);
    RUN(test_npy_errors);
    RUN(test_npy_mutations);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return kiln_test_summary();
}

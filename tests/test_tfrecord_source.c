/* test_tfrecord_source.c — tf.train.Example (src/data/tfexample.c) and the TFRecord data source
 * (src/data/tfrecord_source.c): the builder's bytes against a hand-encoded Example, parse round
 * trips (duplicate keys, every kind), shards plain / GZIP / ZLIB read through globs with their
 * labels, class names and values (also from 4 threads at once, and through the loader: the
 * same batches twice, reproducible), PNG image records decoded with a spec, bad input (a bad
 * checksum, a truncated file, a missing key, a wrong type or size, a label out of range,
 * conflicting class names: errors naming the file and the record; with skip_bad counted), and
 * fuzzing: mutated Examples through the parser and mutated shards through the source. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "check.h"
#include "kiln/tfexample.h"
#include "kiln/tfrecord.h"

static char dir[64];

static void test_builder_bytes(void) {
    kiln_example_builder *b;
    CHECK_OK(kiln_example_builder_new(&b));
    int64_t one = 1;
    CHECK_OK(kiln_example_add_int64(b, "a", &one, 1));
    const void *d;
    size_t n;
    CHECK_OK(kiln_example_serialize(b, &d, &n));
    /* Example{features(1){feature(1){key(1) "a", value(2){int64_list(3){value(1) packed [1]}}}}} */
    const unsigned char want[] = {0x0a, 0x0c, 0x0a, 0x0a, 0x0a, 0x01, 'a',
                                  0x12, 0x05, 0x1a, 0x03, 0x0a, 0x01, 0x01};
    CHECK(n == sizeof want && !memcmp(d, want, n));
    /* floats: float_list(2){value(1) packed [1.0f]} */
    kiln_example_builder_reset(b);
    float f = 1.0f;
    CHECK_OK(kiln_example_add_float(b, "b", &f, 1));
    CHECK_OK(kiln_example_serialize(b, &d, &n));
    const unsigned char want2[] = {0x0a, 0x0f, 0x0a, 0x0d, 0x0a, 0x01, 'b',  0x12, 0x08,
                                   0x12, 0x06, 0x0a, 0x04, 0x00, 0x00, 0x80, 0x3f};
    CHECK(n == sizeof want2 && !memcmp(d, want2, n));
    /* bytes: bytes_list(1){value(1) "xy"}; keys sorted; a key added twice is replaced */
    kiln_example_builder_reset(b);
    CHECK_OK(kiln_example_add_bytes(b, "z", "q", 1));
    CHECK_OK(kiln_example_add_bytes(b, "c", "xy", 2));
    CHECK_OK(kiln_example_add_bytes(b, "z", "", 0));
    CHECK_OK(kiln_example_serialize(b, &d, &n));
    const unsigned char want3[] = {0x0a, 0x18, 0x0a, 0x0b, 0x0a, 0x01, 'c',  0x12, 0x06,
                                   0x0a, 0x04, 0x0a, 0x02, 'x',  'y',  0x0a, 0x09, 0x0a,
                                   0x01, 'z',  0x12, 0x04, 0x0a, 0x02, 0x0a, 0x00};
    CHECK_MSG(n == sizeof want3 && !memcmp(d, want3, n), "%zu bytes", n);
    kiln_example_builder_free(b);
}

static void test_parse(void) {
    kiln_example_builder *b;
    kiln_example *e;
    CHECK_OK(kiln_example_builder_new(&b));
    CHECK_OK(kiln_example_new(&e));
    int64_t iv[3] = {-5, 0, 1LL << 40};
    float fv[2] = {0.5f, -2.25f};
    CHECK_OK(kiln_example_add_int64(b, "k/int", iv, 3));
    CHECK_OK(kiln_example_add_float(b, "k/float", fv, 2));
    CHECK_OK(kiln_example_add_bytes(b, "k/bytes", "\0\1\2", 3));
    CHECK_OK(kiln_example_add_float(b, "k/empty", NULL, 0));
    const void *d;
    size_t n;
    CHECK_OK(kiln_example_serialize(b, &d, &n));
    for (int rep = 0; rep < 3; rep++) { /* the arena is reused */
        CHECK_OK(kiln_example_parse(e, d, n));
        CHECK(kiln_example_size(e) == 4);
        kiln_feature f;
        kiln_example_feature(e, 0, &f);
        CHECK(!strcmp(f.key, "k/bytes") && f.kind == KILN_FEAT_BYTES && f.n == 1);
        size_t bl;
        const uint8_t *bb = kiln_feature_bytes(&f, 0, &bl);
        CHECK(bl == 3 && bb[0] == 0 && bb[1] == 1 && bb[2] == 2);
        CHECK(kiln_example_find(e, "k/int", &f) && f.kind == KILN_FEAT_INT64 && f.n == 3 &&
              f.i[0] == -5 && f.i[2] == 1LL << 40);
        CHECK(kiln_example_find(e, "k/float", &f) && f.kind == KILN_FEAT_FLOAT && f.n == 2 &&
              f.f[1] == -2.25f);
        CHECK(kiln_example_find(e, "k/empty", &f) && f.kind == KILN_FEAT_FLOAT && f.n == 0);
        CHECK(!kiln_example_find(e, "k/none", &f) && !kiln_example_find(e, "", &f));
    }
    /* two entries with one key: the last wins (protobuf's map rule) */
    const unsigned char dup[] = {0x0a, 0x1a, 0x0a, 0x0b, 0x0a, 0x01, 'a',  0x12, 0x06, 0x1a,
                                 0x04, 0x0a, 0x02, 0x01, 0x02, 0x0a, 0x0b, 0x0a, 0x01, 'a',
                                 0x12, 0x06, 0x1a, 0x04, 0x0a, 0x02, 0x07, 0x08};
    CHECK_OK(kiln_example_parse(e, dup, sizeof dup));
    kiln_feature f;
    CHECK(kiln_example_size(e) == 1 && kiln_example_find(e, "a", &f) && f.n == 2 && f.i[0] == 7);
    /* an empty message is an Example with no features; garbage is an error */
    CHECK_OK(kiln_example_parse(e, "", 0));
    CHECK(kiln_example_size(e) == 0);
    CHECK(kiln_example_parse(e, "\xff\xff\xff", 3) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("not a tf.train.Example");
    CHECK(kiln_example_size(e) == 0);
    kiln_example_free(e);
    kiln_example_builder_free(b);
}

/* The parser under mutation: flips, cuts, insertions and random bytes; no crash (ASan), and
 * whatever parses answers find() within its own bounds. */
static void test_parse_fuzz(void) {
    kiln_example_builder *b;
    kiln_example *e;
    CHECK_OK(kiln_example_builder_new(&b));
    CHECK_OK(kiln_example_new(&e));
    int64_t iv[4] = {1, 300, -1, 70000};
    float fv[3] = {1, 2, 3};
    CHECK_OK(kiln_example_add_int64(b, "image/class/label", iv, 4));
    CHECK_OK(kiln_example_add_float(b, "x", fv, 3));
    CHECK_OK(kiln_example_add_bytes(b, "image/encoded", "\x89PNG\r\n\x1a\nabcdef", 14));
    const void *d;
    size_t n;
    CHECK_OK(kiln_example_serialize(b, &d, &n));
    unsigned char *m = malloc(n + 16);
    int parsed = 0, failed = 0;
    uint64_t seed = 7;
    for (int it = 0; it < 20000; it++) {
        memcpy(m, d, n);
        size_t len = n;
        uint32_t w[4];
        kiln_philox(seed, 1, (uint64_t)it, w);
        int what = (int)(w[0] % 4);
        size_t at = w[1] % n;
        if (what == 0) m[at] ^= (unsigned char)(1u << (w[2] % 8));
        if (what == 1) m[at] = (unsigned char)w[2];
        if (what == 2) len = at;
        if (what == 3) { /* insert a byte */
            memmove(m + at + 1, m + at, n - at);
            m[at] = (unsigned char)w[2], len = n + 1;
        }
        if (kiln_example_parse(e, m, len) != KILN_OK) {
            failed++;
            continue;
        }
        parsed++;
        for (int i = 0; i < kiln_example_size(e); i++) {
            kiln_feature f;
            kiln_example_feature(e, i, &f);
            volatile double sum = 0;
            for (size_t j = 0; j < f.n; j++) {
                if (f.kind == KILN_FEAT_FLOAT) sum += f.f[j];
                if (f.kind == KILN_FEAT_INT64) sum += (double)f.i[j];
                if (f.kind == KILN_FEAT_BYTES) {
                    size_t bl;
                    const uint8_t *bb = kiln_feature_bytes(&f, j, &bl);
                    for (size_t q = 0; q < bl; q++) sum += bb[q];
                }
            }
            (void)sum;
        }
    }
    for (int it = 0; it < 2000; it++) { /* random bytes */
        uint32_t w[4];
        size_t len = 1 + (size_t)it % (n + 15);
        for (size_t j = 0; j < len; j += 4) {
            kiln_philox(seed, 2 + (uint64_t)it, j, w);
            memcpy(m + j, w, len - j < 4 ? len - j : 4);
        }
        kiln_feature f;
        if (kiln_example_parse(e, m, len) == KILN_OK) kiln_example_find(e, "x", &f);
    }
    CHECK(parsed > 0 && failed > 0);
    free(m);
    kiln_example_free(e);
    kiln_example_builder_free(b);
}

/* ---- shards ---- */

/* Record g of a synthetic data set: x = [g, g + 0.5, -g] (float), label g % 3, names "c0".. */
static void make_record(kiln_example_builder *b, int g, const char **drop, int wrong_type) {
    kiln_example_builder_reset(b);
    float x[3] = {(float)g, (float)g + 0.5f, (float)-g};
    int64_t y = g % 3;
    char name[8];
    snprintf(name, sizeof name, "c%d", g % 3);
    if (!drop || strcmp(*drop, "x")) {
        if (wrong_type) {
            int64_t xi[3] = {g, g, g};
            kiln_example_add_int64(b, "x", xi, 3);
        } else {
            kiln_example_add_float(b, "x", x, 3);
        }
    }
    if (!drop || strcmp(*drop, "label")) kiln_example_add_int64(b, "label", &y, 1);
    kiln_example_add_bytes(b, "label/text", name, strlen(name));
}

/* Writes shard s of 3 (records [10 s, 10 s + 10)) with compression c. */
static void write_shard(const char *path, kiln_tfrecord_compression c, int first, int count) {
    kiln_example_builder *b;
    CHECK_OK(kiln_example_builder_new(&b));
    kiln_tfrecord_writer *w;
    CHECK_OK(kiln_tfrecord_writer_open(path, c, &w));
    for (int g = first; w && g < first + count; g++) {
        make_record(b, g, NULL, 0);
        const void *d;
        size_t n;
        CHECK_OK(kiln_example_serialize(b, &d, &n));
        CHECK_OK(kiln_tfrecord_writer_add(w, d, n));
    }
    CHECK_OK(kiln_tfrecord_writer_commit(w));
    kiln_example_builder_free(b);
}

static const kiln_tfrecord_feature X_FEAT[] = {{"x", KILN_TFR_FLOAT, 0, {0}}};

static kiln_tfrecord_source_options table_opts(char **files, int n) {
    return (kiln_tfrecord_source_options){.files = (const char *const *)files,
                                          .num_files = n,
                                          .compression = KILN_TFRECORD_AUTO,
                                          .features = X_FEAT,
                                          .num_features = 1,
                                          .label_key = "label",
                                          .label_kind = KILN_LABEL_CLASS,
                                          .text_key = "label/text",
                                          .tmp_dir = dir};
}

static int count_files(const char *d) {
    DIR *dp = opendir(d);
    int n = 0;
    struct dirent *e;
    while (dp && (e = readdir(dp)))
        if (e->d_name[0] != '.') n++;
    if (dp) closedir(dp);
    return n;
}

typedef struct {
    const kiln_dataset *ds;
    int bad;
} reader_arg;

static void *read_all_rows(void *p) {
    reader_arg *a = p;
    float x[3];
    int32_t y;
    for (int64_t i = 0; i < kiln_dataset_rows(a->ds); i++) {
        int64_t g = kiln_dataset_rows(a->ds) - 1 - i; /* backwards: another order */
        if (kiln_dataset_get(a->ds, g, x, &y) || x[0] != (float)g || x[1] != (float)g + 0.5f ||
            x[2] != (float)-g || y != g % 3)
            a->bad++;
    }
    return NULL;
}

static void test_shards(void) {
    char sub[128], path[300];
    snprintf(sub, sizeof sub, "%s/shards", dir);
    CHECK_OK(kiln_mkdirs(sub));
    kiln_tfrecord_compression comp[3] = {KILN_TFRECORD_NONE, KILN_TFRECORD_GZIP,
                                         KILN_TFRECORD_ZLIB};
    for (int s = 0; s < 3; s++) {
        snprintf(path, sizeof path, "%s/train.tfrecord-%05d-of-00003", sub, s);
        write_shard(path, comp[s], 10 * s, 10);
    }
    snprintf(path, sizeof path, "%s/notes.txt", sub); /* not matched by the glob below */
    CHECK_OK(kiln_file_write_atomic(path, "x", 1));
    char **files;
    int nf;
    snprintf(path, sizeof path, "%s/train.tfrecord-*", sub);
    CHECK_OK(kiln_data_glob(path, &files, &nf));
    CHECK(nf == 3 && strstr(files[0], "00000-of") && strstr(files[2], "00002-of"));
    int tmp_before = count_files(dir);
    kiln_tfrecord_source_options o = table_opts(files, nf);
    kiln_dataset *ds = NULL;
    kiln_tfrecord_source_result res;
    CHECK_OK(kiln_data_load_tfrecord(&o, &ds, &res));
    CHECK(count_files(dir) == tmp_before); /* the decompressed copy is unlinked */
    CHECK(res.rows == 30 && res.files == 3 && res.compressed == 1 && res.skipped == 0);
    if (ds) {
        CHECK(kiln_dataset_rows(ds) == 30 && kiln_dataset_x_dtype(ds) == KILN_F32);
        kiln_shape xs = kiln_dataset_x_shape(ds);
        CHECK(xs.ndim == 1 && xs.dims[0] == 3);
        CHECK(kiln_dataset_num_classes(ds) == 3);
        CHECK(kiln_dataset_class_name(ds, 2) && !strcmp(kiln_dataset_class_name(ds, 2), "c2"));
        CHECK(kiln_dataset_is_source(ds));
        CHECK(strstr(kiln_dataset_row_name(ds, 25), "00002-of-00003") != NULL);
        reader_arg a[4] = {{ds, 0}, {ds, 0}, {ds, 0}, {ds, 0}};
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, read_all_rows, &a[i]);
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
        CHECK(a[0].bad + a[1].bad + a[2].bad + a[3].bad == 0);
        /* the loader: shuffled, reproducible, every row once an epoch */
        kiln_loader_config lc = {.batch_size = 7, .shuffle = 1, .prefetch = 1, .seed = 3};
        kiln_loader *l1, *l2;
        CHECK_OK(kiln_loader_new(ds, &lc, &l1));
        lc.prefetch = 0;
        CHECK_OK(kiln_loader_new(ds, &lc, &l2));
        float x1[21], x2[21];
        int32_t y1[7], y2[7];
        int r1, r2, seen[30] = {0}, same = 1, inorder = 1, k = 0;
        while (kiln_loader_next(l1, x1, y1, &r1) == 1) {
            CHECK(kiln_loader_next(l2, x2, y2, &r2) == 1 && r1 == r2);
            same &= !memcmp(x1, x2, sizeof(float) * 3 * (size_t)r1);
            for (int i = 0; i < r1; i++) {
                int g = (int)x1[3 * i];
                if (g >= 0 && g < 30) seen[g]++;
                inorder &= g == k++;
                CHECK(y1[i] == g % 3);
            }
        }
        int all = 1;
        for (int g = 0; g < 30; g++) all &= seen[g] == 1;
        CHECK(same && all && !inorder);
        kiln_loader_free(l1), kiln_loader_free(l2);
    }
    kiln_dataset_free(ds);
    /* explicit compression that does not fit a file: an error naming it */
    o.compression = KILN_TFRECORD_GZIP;
    CHECK(kiln_data_load_tfrecord(&o, &ds, &res) == KILN_ERR_FORMAT && ds == NULL);
    CHECK_ERR_HAS("00000-of-00003");
    kiln_data_free_files(files, nf);
    /* a folder: every file in it (the notes file is not a TFRecord: an error naming it) */
    CHECK_OK(kiln_data_glob(sub, &files, &nf));
    CHECK(nf == 4);
    o = table_opts(files, nf);
    CHECK(kiln_data_load_tfrecord(&o, &ds, &res) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("notes.txt: offset 0: truncated record");
    kiln_data_free_files(files, nf);
    snprintf(path, sizeof path, "%s/nothing-*", sub);
    CHECK(kiln_data_glob(path, &files, &nf) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("nothing-*");
    snprintf(path, sizeof path, "%s/no-such-folder/x-*", sub); /* not "unreadable" */
    CHECK(kiln_data_glob(path, &files, &nf) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("no such file");
}

/* One shard of 10 good records with record 4 made bad by `how`; the source must fail naming
 * the file and the record, and with skip_bad leave it out and count it. */
static void bad_case(const char *how, const char *msg, int64_t rows_when_skipped) {
    char path[160];
    snprintf(path, sizeof path, "%s/bad-%s.tfrecord", dir, how);
    kiln_example_builder *b;
    CHECK_OK(kiln_example_builder_new(&b));
    kiln_tfrecord_writer *w;
    CHECK_OK(kiln_tfrecord_writer_open(path, KILN_TFRECORD_NONE, &w));
    int64_t off4 = 0, at = 0;
    for (int g = 0; g < 10; g++) {
        const char *drop = NULL;
        if (g == 4 && !strcmp(how, "missing")) drop = "x";
        make_record(b, g, drop ? &drop : NULL, g == 4 && !strcmp(how, "type"));
        if (g == 4 && !strcmp(how, "range")) {
            int64_t y = -1;
            kiln_example_add_int64(b, "label", &y, 1);
        }
        if (g == 4 && !strcmp(how, "size")) {
            float x[2] = {1, 2};
            kiln_example_add_float(b, "x", x, 2);
        }
        if (g == 4 && !strcmp(how, "names")) kiln_example_add_bytes(b, "label/text", "cX", 2);
        const void *d;
        size_t n;
        kiln_example_serialize(b, &d, &n);
        if (g == 4) off4 = at;
        at += (int64_t)n + 16;
        CHECK_OK(kiln_tfrecord_writer_add(w, d, n));
    }
    CHECK_OK(kiln_tfrecord_writer_commit(w));
    kiln_example_builder_free(b);
    if (!strcmp(how, "crc") || !strcmp(how, "truncated") || !strcmp(how, "length")) {
        void *file;
        size_t n;
        CHECK_OK(kiln_file_read_all(path, &file, &n, 1 << 20));
        unsigned char *m = file;
        if (!strcmp(how, "crc")) m[off4 + 14] ^= 0x40;
        if (!strcmp(how, "length")) m[off4 + 1] ^= 0x01;
        CHECK_OK(kiln_file_write_atomic(path, m, !strcmp(how, "truncated") ? n - 3 : n));
        kiln_free(file);
    }
    char *files[1] = {path};
    kiln_tfrecord_source_options o = table_opts(files, 1);
    kiln_dataset *ds = NULL;
    kiln_tfrecord_source_result res;
    kiln_status st = kiln_data_load_tfrecord(&o, &ds, &res);
    CHECK_MSG(st == KILN_ERR_FORMAT && ds == NULL, "%s: %s", how, kiln_status_name(st));
    CHECK_MSG(strstr(kiln_last_error(), path) && strstr(kiln_last_error(), msg), "%s: '%s'", how,
              kiln_last_error());
    o.skip_bad = 1;
    st = kiln_data_load_tfrecord(&o, &ds, &res);
    CHECK_MSG(st == KILN_OK && res.skipped == 1 && res.rows == rows_when_skipped &&
                  strstr(res.first, msg),
              "%s: skip: %s, %lld skipped, %lld rows, first '%s'", how, kiln_status_name(st),
              (long long)res.skipped, (long long)res.rows, res.first);
    if (ds && rows_when_skipped == 9 && strcmp(how, "truncated")) { /* record 4 is left out */
        float x[3];
        int32_t y;
        CHECK_OK(kiln_dataset_get(ds, 4, x, &y));
        CHECK_MSG(x[0] == 5 && y == 2, "%s: x %g y %d", how, x[0], y);
    }
    kiln_dataset_free(ds);
}

static void test_bad_records(void) {
    char off[64];
    /* record 4 starts after records 0..3 */
    bad_case("missing", "record 4 (offset ", 9);
    bad_case("missing", "feature 'x' is missing", 9);
    bad_case("type", "feature 'x' is a int64 list, but the spec wants float", 9);
    bad_case("size", "feature 'x' has 2 values (expected 3)", 9);
    bad_case("range", "class label -1 is out of range", 9);
    bad_case("names", "class 1 is named 'cX' (label/text) here, but 'c1'", 9);
    bad_case("crc", "corrupt record: the checksum of its", 9);
    bad_case("length", "corrupt record: the checksum of its length", 4);
    bad_case("truncated", "truncated record", 9);
    (void)off;
}

/* Tiny PNG images as records (image/encoded), decoded and resized through the spec. */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} membuf;
static void sink(void *ctx, void *data, int size) {
    membuf *m = ctx;
    if (m->n + (size_t)size > m->cap) {
        m->cap = (m->n + (size_t)size) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, data, (size_t)size);
    m->n += (size_t)size;
}

static void test_images(void) {
    char path[160];
    snprintf(path, sizeof path, "%s/img.tfrecord.gz", dir);
    kiln_example_builder *b;
    CHECK_OK(kiln_example_builder_new(&b));
    kiln_tfrecord_writer *w;
    CHECK_OK(kiln_tfrecord_writer_open(path, KILN_TFRECORD_GZIP, &w));
    for (int g = 0; g < 6; g++) {
        unsigned char px[8 * 8];
        for (int i = 0; i < 64; i++) px[i] = (unsigned char)(g * 40 + (i % 8));
        membuf m = {0};
        CHECK(stbi_write_png_to_func(sink, &m, 8, 8, 1, px, 8));
        kiln_example_builder_reset(b);
        kiln_example_add_bytes(b, "image/encoded", m.p, m.n);
        int64_t y = g % 2;
        kiln_example_add_int64(b, "image/class/label", &y, 1);
        if (g == 5) kiln_example_add_bytes(b, "image/encoded", "not an image", 12);
        const void *d;
        size_t n;
        kiln_example_serialize(b, &d, &n);
        CHECK_OK(kiln_tfrecord_writer_add(w, d, n));
        free(m.p);
    }
    CHECK_OK(kiln_tfrecord_writer_commit(w));
    kiln_example_builder_free(b);
    const kiln_tfrecord_feature img[] = {{"image/encoded", KILN_TFR_IMAGE, 0, {0}}};
    char *files[1] = {path};
    kiln_tfrecord_source_options o = {
        .files = (const char *const *)files,
        .num_files = 1,
        .compression = KILN_TFRECORD_GZIP,
        .features = img,
        .num_features = 1,
        .spec = {.channels = 1, .resize_h = 4, .resize_w = 4, .out_h = 4, .out_w = 4},
        .label_key = "image/class/label",
        .label_kind = KILN_LABEL_CLASS,
        .text_key = "image/class/text",
        .tmp_dir = dir};
    kiln_dataset *ds;
    CHECK_OK(kiln_data_load_tfrecord(&o, &ds, NULL));
    if (!ds) return;
    CHECK(kiln_dataset_rows(ds) == 6 && kiln_dataset_x_dtype(ds) == KILN_U8);
    CHECK(kiln_dataset_num_classes(ds) == 2 && kiln_dataset_class_name(ds, 0) == NULL);
    uint8_t x[16];
    CHECK_OK(kiln_dataset_read(ds, 2, x));
    CHECK(x[0] >= 80 && x[0] <= 82); /* 80 + the mean of 0,1 */
    CHECK(kiln_dataset_read(ds, 5, x) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("img.tfrecord.gz: record 5");
    kiln_dataset *good;
    int64_t skipped;
    char first[256];
    CHECK_OK(kiln_data_drop_unreadable(ds, &good, &skipped, first, sizeof first));
    CHECK(skipped == 1 && kiln_dataset_rows(good) == 5 && strstr(first, "record 5"));
    kiln_dataset_free(good);
    kiln_dataset_free(ds);
}

/* Mutated shards through the whole source (index and reads), plain and gzip: never a crash;
 * either an error or rows that read (or fail) cleanly. */
static void test_source_fuzz(void) {
    char path[160], mpath[170];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/fz%d.tfrecord", dir, k);
        snprintf(mpath, sizeof mpath, "%s/fz%d-m.tfrecord", dir, k);
        write_shard(path, k ? KILN_TFRECORD_GZIP : KILN_TFRECORD_NONE, 0, 6);
        void *file;
        size_t n;
        CHECK_OK(kiln_file_read_all(path, &file, &n, 1 << 20));
        unsigned char *m = malloc(n);
        char *files[1] = {mpath};
        int opened = 0, failed = 0;
        for (int it = 0; it < 400; it++) {
            memcpy(m, file, n);
            uint32_t w[4];
            kiln_philox(11, (uint64_t)k, (uint64_t)it, w);
            size_t len = n;
            m[w[0] % n] ^= (unsigned char)(1 + w[1] % 255);
            if (w[2] % 4 == 0) m[w[3] % n] = (unsigned char)w[1];
            if (w[2] % 7 == 0) len = w[3] % n;
            CHECK_OK(kiln_file_write_atomic(mpath, m, len));
            kiln_tfrecord_source_options o = table_opts(files, 1);
            o.skip_bad = (int)(w[2] % 2);
            kiln_dataset *ds = NULL;
            if (kiln_data_load_tfrecord(&o, &ds, NULL) != KILN_OK) {
                failed++;
                continue;
            }
            opened++;
            float x[3];
            int32_t y;
            for (int64_t i = 0; i < kiln_dataset_rows(ds); i++) kiln_dataset_get(ds, i, x, &y);
            kiln_dataset_free(ds);
        }
        CHECK(opened > 0 && failed > 0);
        free(m);
        kiln_free(file);
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/kiln-test-tfsrc-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(test_builder_bytes);
    RUN(test_parse);
    RUN(test_parse_fuzz);
    RUN(test_shards);
    RUN(test_bad_records);
    RUN(test_images);
    RUN(test_source_fuzz);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return kiln_test_summary();
}

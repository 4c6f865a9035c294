/* test_safetensors.c — the safetensors reader and writer.
 *
 * Round trips for every dtype, scalars and empty tensors; byte-exact files against the vectors
 * of the reference implementation's own tests (huggingface/safetensors, tensor.rs) and a
 * hand-built multi-dtype layout (Python's order, padding, data placement, string escapes);
 * hand-built files the way other writers make them (unpadded, pretty-printed, unknown fields,
 * F16, misaligned tensors); then hostile input: every truncation, oversized and overlong header
 * lengths, a table of malformed headers (each must fail with a message naming the file and the
 * offending tensor or field), and a few hundred random and mutated files from a fixed seed, read
 * in full under ASan. Python's safetensors is not installed here, so there is no cross-check
 * with it beyond those vectors.
 */
#include <dirent.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "kiln/fileio.h"
#include "kiln/safetensors.h"

static char root[64];

static const char *at(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
    return buf[k];
}

static void put_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp) return;
    CHECK(fwrite(p, 1, n, fp) == n);
    fclose(fp);
}

static int temp_files(void) {
    DIR *d = opendir(root);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += !strncmp(e->d_name, ".tmp-", 5);
    if (d) closedir(d);
    return n;
}

/* A file: 8-byte length of the header, the header as given (no padding), then dlen data bytes
 * (value i % 251). Returns a malloc'ed buffer of *len bytes. */
static unsigned char *build(const char *header, size_t hlen, size_t dlen, size_t *len) {
    *len = 8 + hlen + dlen;
    unsigned char *b = malloc(*len + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    for (size_t i = 0; i < dlen; i++) b[8 + hlen + i] = (unsigned char)(i % 251);
    return b;
}

static size_t entry_bytes(const kiln_st_entry *e) {
    return (size_t)kiln_shape_numel(&e->shape) * kiln_dtype_size(e->dtype);
}

/* Reads every byte of every tensor (so ASan sees any bad pointer); returns a checksum. */
static unsigned touch_all(const kiln_st_file *f) {
    unsigned sum = 0;
    for (int i = 0; i < kiln_st_count(f); i++) {
        const kiln_st_entry *e = kiln_st_get(f, i);
        const unsigned char *p = e->data;
        for (size_t k = 0; k < entry_bytes(e); k++) sum = sum * 31 + p[k];
        sum += (unsigned)strlen(e->name);
    }
    for (int i = 0; i < 2 * kiln_st_meta_count(f); i++)
        sum += (unsigned)strlen(kiln_st_meta_kv(f)[i]);
    return sum;
}

/* ---- round trips ---- */

static void test_roundtrip_every_dtype(void) {
    /* Data for each entry: bytes (i * 37 + k) so that every tensor differs. */
    static unsigned char pool[8][256];
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 256; k++) pool[i][k] = (unsigned char)(i * 37 + k);
    kiln_st_entry in[] = {
        {"dense.kernel", KILN_F32, {2, {2, 3}}, pool[0]},
        {"emb.bf16", KILN_BF16, {1, {5}}, pool[1]}, /* 10 bytes: the next tensor must still align */
        {"ids", KILN_I32, {2, {3, 1}}, pool[2]},
        {"step", KILN_I64, {0, {0}}, pool[3]}, /* scalar */
        {"counts", KILN_I64, {2, {2, 2}}, pool[4]},
        {"mask", KILN_U8, {1, {7}}, pool[5]},
        {"scale", KILN_F32, {0, {0}}, pool[6]},   /* scalar */
        {"none", KILN_F32, {3, {2, 0, 3}}, NULL}, /* empty: a 0 dim, no data needed */
        {"none.u8", KILN_U8, {1, {0}}, pool[7]},
        {"a/b.c-d_e", KILN_BF16, {6, {1, 2, 1, 2, 1, 2}}, pool[7]}, /* KILN_MAX_DIMS dims */
    };
    int n = (int)(sizeof in / sizeof *in);
    const char *meta[] = {"format", "pt", "note", "h\xc3\xa9 \"quoted\"\n\\ tab\t"};
    CHECK_OK(kiln_safetensors_write(at("rt.safetensors"), in, n, meta, 2));

    kiln_st_file *f = NULL;
    CHECK_OK(kiln_safetensors_open(at("rt.safetensors"), &f));
    if (!f) return;
    CHECK(kiln_st_count(f) == n);
    for (int i = 0; i < n; i++) {
        const kiln_st_entry *e = kiln_st_find(f, in[i].name);
        CHECK_MSG(e != NULL, "%s missing", in[i].name);
        if (!e) continue;
        CHECK(!strcmp(e->name, in[i].name));
        CHECK_MSG(e->dtype == in[i].dtype, "%s: dtype %d", e->name, e->dtype);
        CHECK_MSG(kiln_shape_equal(&e->shape, &in[i].shape), "%s: shape differs", e->name);
        CHECK(e->data != NULL);
        CHECK_MSG(((uintptr_t)e->data % kiln_dtype_size(e->dtype)) == 0, "%s misaligned", e->name);
        size_t nb = entry_bytes(&in[i]);
        CHECK_MSG(nb == 0 || !memcmp(e->data, in[i].data, nb), "%s: bytes differ", e->name);
    }
    /* Header order is the write order: widest dtype first. */
    CHECK(kiln_st_get(f, 0)->dtype == KILN_I64);
    CHECK(kiln_st_get(f, n - 1)->dtype == KILN_U8);
    CHECK(kiln_st_get(f, -1) == NULL && kiln_st_get(f, n) == NULL);
    CHECK(kiln_st_find(f, "nope") == NULL && kiln_st_find(f, "") == NULL);
    CHECK(kiln_st_meta_count(f) == 2);
    CHECK(kiln_st_meta(f, "format") && !strcmp(kiln_st_meta(f, "format"), "pt"));
    CHECK(kiln_st_meta(f, "note") && !strcmp(kiln_st_meta(f, "note"), meta[3]));
    CHECK(!strcmp(kiln_st_meta_kv(f)[0], "format") && !strcmp(kiln_st_meta_kv(f)[2], "note"));
    CHECK(kiln_st_meta(f, "nope") == NULL);

    /* Writing what was read gives the same bytes (the writer is deterministic). */
    CHECK_OK(kiln_safetensors_write(at("rt2.safetensors"), kiln_st_get(f, 0), kiln_st_count(f),
                                    kiln_st_meta_kv(f), kiln_st_meta_count(f)));
    void *a, *b;
    size_t la, lb;
    CHECK_OK(kiln_file_read_all(at("rt.safetensors"), &a, &la, 1 << 20));
    CHECK_OK(kiln_file_read_all(at("rt2.safetensors"), &b, &lb, 1 << 20));
    CHECK(la == lb && !memcmp(a, b, la));
    /* The in-memory reader agrees with the file reader. */
    kiln_st_file *g = NULL;
    CHECK_OK(kiln_safetensors_parse(a, la, "mem", &g));
    CHECK(g && touch_all(g) == touch_all(f));
    kiln_st_close(g);
    kiln_free(a);
    kiln_free(b);
    kiln_st_close(f);
    CHECK(temp_files() == 0);
}

static void test_no_tensors(void) {
    CHECK_OK(kiln_safetensors_write(at("none.safetensors"), NULL, 0, NULL, 0));
    kiln_st_file *f = NULL;
    CHECK_OK(kiln_safetensors_open(at("none.safetensors"), &f));
    CHECK(f && kiln_st_count(f) == 0 && kiln_st_meta_count(f) == 0);
    CHECK(kiln_st_find(f, "x") == NULL && kiln_st_meta(f, "x") == NULL);
    kiln_st_close(f);
    kiln_st_close(NULL);
}

/* ---- byte layout ---- */

static void check_bytes(const char *path, const void *want, size_t n) {
    void *got;
    size_t len;
    CHECK_OK(kiln_file_read_all(path, &got, &len, 1 << 20));
    CHECK_MSG(len == n, "%s: %zu bytes, want %zu", path, len, n);
    if (got && len == n) {
        for (size_t i = 0; i < n; i++)
            if (((unsigned char *)got)[i] != ((const unsigned char *)want)[i]) {
                CHECK_MSG(0, "%s: byte %zu is 0x%02x, want 0x%02x", path, i,
                          ((unsigned char *)got)[i], ((const unsigned char *)want)[i]);
                break;
            }
    }
    kiln_free(got);
}

/* The vectors of test_serialization, test_serialization_forced_alignement and test_empty in the
 * reference implementation (safetensors/src/tensor.rs). */
static void test_bytes_match_reference_vectors(void) {
    static const float v[6] = {0, 1, 2, 3, 4, 5};
    static const char fl[] = "\0\0\0\0"
                             "\0\0\x80\x3f"
                             "\0\0\0\x40"
                             "\0\0\x40\x40"
                             "\0\0\x80\x40"
                             "\0\0\xa0\x40";
    kiln_st_entry e1 = {"attn.0", KILN_F32, {3, {1, 2, 3}}, v};
    CHECK_OK(kiln_safetensors_write(at("v1"), &e1, 1, NULL, 0));
    static const char w1[] =
        "\x40\0\0\0\0\0\0\0"
        "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    char buf[256];
    memcpy(buf, w1, 72), memcpy(buf + 72, fl, 24);
    check_bytes(at("v1"), buf, 96);

    kiln_st_entry e2 = {"attn0", KILN_F32, {4, {1, 1, 2, 3}}, v};
    CHECK_OK(kiln_safetensors_write(at("v2"), &e2, 1, NULL, 0));
    static const char w2[] =
        "\x48\0\0\0\0\0\0\0"
        "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}"
        "       ";
    memcpy(buf, w2, 80), memcpy(buf + 80, fl, 24);
    check_bytes(at("v2"), buf, 104);

    CHECK_OK(kiln_safetensors_write(at("v3"), NULL, 0, NULL, 0));
    check_bytes(at("v3"), "\x08\0\0\0\0\0\0\0{}      ", 16);

    const char *kv[] = {"framework", "pt"};
    CHECK_OK(kiln_safetensors_write(at("v4"), NULL, 0, kv, 1));
    check_bytes(at("v4"), "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ", 48);
}

/* Python's order (I64, F32, I32, BF16, U8, then by name), offsets, padding, data placement and
 * serde_json's string escapes, on a layout built by hand. */
static void test_bytes_order_and_escapes(void) {
    static const unsigned char b3[3] = {0xb0, 0xb1, 0xb2};
    static const uint32_t z = 0x3f800000u, c = 0xdeadbeefu, y[2] = {0x40000000u, 0x40400000u};
    static const uint16_t a[2] = {0x3f80, 0xc000};
    static const int64_t m = -2;
    kiln_st_entry in[] = {
        {"b", KILN_U8, {1, {3}}, b3},
        {"z", KILN_F32, {1, {1}}, &z},
        {"a", KILN_BF16, {1, {2}}, a},
        {"m", KILN_I64, {1, {1}}, &m},
        {"c", KILN_I32, {0, {0}}, &c},
        {"y", KILN_F32, {1, {2}}, y},
        {"q\"\\\x01\t\xc3\xa9", KILN_U8, {1, {0}}, NULL},
    };
    const char *kv[] = {"k\n", "v\x1f/"};
    CHECK_OK(kiln_safetensors_write(at("order"), in, 7, kv, 1));
    const char *hdr = "{\"__metadata__\":{\"k\\n\":\"v\\u001f/\"},"
                      "\"m\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                      "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                      "\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
                      "\"c\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[20,24]},"
                      "\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[24,28]},"
                      "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[28,31]},"
                      "\"q\\\"\\\\\\u0001\\t\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[0],"
                      "\"data_offsets\":[31,31]}}";
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    unsigned char want[1024];
    for (int i = 0; i < 8; i++) want[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(want + 8, hdr, hl);
    memset(want + 8 + hl, ' ', padded - hl);
    unsigned char *d = want + 8 + padded;
    memcpy(d + 0, &m, 8), memcpy(d + 8, y, 8), memcpy(d + 16, &z, 4), memcpy(d + 20, &c, 4);
    memcpy(d + 24, a, 4), memcpy(d + 28, b3, 3);
    CHECK(padded != hl); /* the case exercises padding */
    check_bytes(at("order"), want, 8 + padded + 31);

    kiln_st_file *f = NULL;
    CHECK_OK(kiln_safetensors_open(at("order"), &f));
    const kiln_st_entry *q = kiln_st_find(f, in[6].name);
    CHECK(q && q->dtype == KILN_U8 && q->shape.ndim == 1 && q->shape.dims[0] == 0);
    CHECK(kiln_st_meta(f, "k\n") && !strcmp(kiln_st_meta(f, "k\n"), "v\x1f/"));
    kiln_st_close(f);
}

/* ---- files as other writers make them ---- */

static kiln_st_file *parse_str(const char *header, size_t dlen) {
    size_t len;
    unsigned char *b = build(header, strlen(header), dlen, &len);
    kiln_st_file *f = NULL;
    CHECK_OK(kiln_safetensors_parse(b, len, "hand", &f));
    free(b);
    return f;
}

static void test_reads_other_layouts(void) {
    /* Unpadded (the example in the reference's docs), pretty-printed with fields reordered and an
     * unknown field, null metadata, zero-size tensors sharing an offset with a real one. */
    kiln_st_file *f =
        parse_str("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    const kiln_st_entry *e = kiln_st_find(f, "test");
    CHECK(e && e->dtype == KILN_I32 && e->shape.ndim == 2 && e->shape.dims[1] == 2);
    CHECK(e && ((const int32_t *)e->data)[1] == 0x07060504);
    kiln_st_close(f);

    f = parse_str("{\n\t\"__metadata__\": null,\r\n  \"w\" : {\"data_offsets\": [0, 8], \"extra\": "
                  "{\"x\": [1, 2]}, \"shape\": [2], \"dtype\": \"F32\"},\n  \"e1\": {\"dtype\": "
                  "\"F32\", \"shape\": [0, 4], \"data_offsets\": [0, 0]},\n  \"e2\": {\"dtype\": "
                  "\"U8\", \"shape\": [0], \"data_offsets\": [8, 8]}\n}\n  ",
                  8);
    CHECK(f && kiln_st_count(f) == 3 && kiln_st_meta_count(f) == 0);
    CHECK(f && !strcmp(kiln_st_get(f, 0)->name, "w") && !strcmp(kiln_st_get(f, 2)->name, "e2"));
    e = kiln_st_find(f, "e1");
    CHECK(e && e->data != NULL && e->shape.dims[0] == 0);
    kiln_st_close(f);
}

static void test_f16_converted(void) {
    /* 1, -2, 2^-24 (smallest subnormal), 65504 (largest), inf, -0, NaN, 0x3555, 2^-14 */
    static const uint16_t h[9] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x7C00,
                                  0x8000, 0x7E00, 0x3555, 0x0400};
    const char *hdr = "{\"h\":{\"dtype\":\"F16\",\"shape\":[3,3],\"data_offsets\":[0,18]}}";
    size_t len;
    unsigned char *b = build(hdr, strlen(hdr), 18, &len);
    memcpy(b + 8 + strlen(hdr), h, 18);
    kiln_st_file *f = NULL;
    CHECK_OK(kiln_safetensors_parse(b, len, "f16", &f));
    free(b);
    const kiln_st_entry *e = kiln_st_find(f, "h");
    CHECK(e && e->dtype == KILN_F32 && e->shape.ndim == 2 && e->shape.dims[0] == 3);
    if (!e) {
        kiln_st_close(f);
        return;
    }
    const float *x = e->data;
    CHECK(((uintptr_t)x % 4) == 0);
    CHECK(x[0] == 1.0f && x[1] == -2.0f && x[2] == 5.9604644775390625e-8f && x[3] == 65504.0f);
    CHECK(isinf(x[4]) && x[4] > 0 && x[5] == 0.0f && signbit(x[5]) && isnan(x[6]));
    CHECK(x[7] == 0.333251953125f && x[8] == 6.103515625e-5f);
    kiln_st_close(f);
}

static void test_misaligned_tensors_copied(void) {
    /* U8 [3] first puts F32 at 3 and I64 at 11: both are copied to aligned memory. */
    const char *hdr = "{\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                      "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
                      "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[11,19]}}";
    kiln_st_file *f = parse_str(hdr, 19);
    const kiln_st_entry *u = kiln_st_find(f, "u"), *fl = kiln_st_find(f, "f"),
                        *i = kiln_st_find(f, "i");
    CHECK(u && fl && i);
    if (!u || !fl || !i) {
        kiln_st_close(f);
        return;
    }
    CHECK((uintptr_t)fl->data % 4 == 0 && (uintptr_t)i->data % 8 == 0);
    uint32_t fw;
    memcpy(&fw, fl->data, 4);
    CHECK(fw == 0x06050403u);
    CHECK(*(const int64_t *)i->data == 0x1211100f0e0d0c0bll);
    CHECK(((const unsigned char *)u->data)[2] == 2);
    kiln_st_close(f);
}

/* ---- hostile input ---- */

static void test_truncated_at_every_length(void) {
    static const float w[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    static const int64_t s = 42;
    kiln_st_entry in[] = {{"w", KILN_F32, {2, {3, 4}}, w},
                          {"step", KILN_I64, {0, {0}}, &s},
                          {"b", KILN_BF16, {1, {3}}, w}};
    const char *kv[] = {"format", "kiln"};
    CHECK_OK(kiln_safetensors_write(at("t"), in, 3, kv, 1));
    void *full;
    size_t n;
    CHECK_OK(kiln_file_read_all(at("t"), &full, &n, 1 << 20));
    if (!full) return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | ((unsigned char *)full)[i];
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        kiln_st_file *f = NULL;
        kiln_status st = kiln_safetensors_parse(full, len, "trunc", &f);
        const char *want = len < 8          ? "shorter than the 8-byte header length"
                           : len < 8 + hlen ? "runs past the end of the file"
                                            : "beyond the end of the data section";
        if (st != KILN_ERR_FORMAT || f || !strstr(kiln_last_error(), want) ||
            strncmp(kiln_last_error(), "safetensors trunc: ", 19)) {
            if (!bad++)
                CHECK_MSG(0, "length %zu of %zu: %s '%s' (want '%s')", len, n, kiln_status_name(st),
                          kiln_last_error(), want);
        }
        kiln_st_close(f);
        /* The same through the file reader. */
        put_bytes(at("t.cut"), full, len);
        st = kiln_safetensors_open(at("t.cut"), &f);
        if (st != KILN_ERR_FORMAT || f || !strstr(kiln_last_error(), want) ||
            !strstr(kiln_last_error(), at("t.cut"))) {
            if (!bad++)
                CHECK_MSG(0, "file of length %zu: %s '%s'", len, kiln_status_name(st),
                          kiln_last_error());
        }
        kiln_st_close(f);
    }
    CHECK(bad == 0);
    /* One byte too many is refused as well. */
    unsigned char *more = malloc(n + 1);
    memcpy(more, full, n), more[n] = 0;
    kiln_st_file *f = NULL;
    CHECK(kiln_safetensors_parse(more, n + 1, "more", &f) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("trailing bytes");
    free(more);
    kiln_free(full);
}

static void test_header_length_field(void) {
    unsigned char b[64] = {0};
    memcpy(b + 8, "{}", 2);
    kiln_st_file *f = NULL;
    uint64_t lens[] = {100000001ull, UINT64_MAX, 1ull << 63};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(lens[k] >> (8 * i));
        CHECK(kiln_safetensors_parse(b, sizeof b, "big", &f) == KILN_ERR_FORMAT && !f);
        CHECK_ERR_HAS("oversized header");
    }
    uint64_t past = 100000000ull; /* at the limit but longer than the file */
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(past >> (8 * i));
    CHECK(kiln_safetensors_parse(b, sizeof b, "big", &f) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("runs past the end of the file (64 bytes)");
    put_bytes(at("big"), b, sizeof b);
    CHECK(kiln_safetensors_open(at("big"), &f) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS(at("big"));
}

typedef struct {
    const char *header;
    size_t dlen;
    const char *want; /* substring of the message */
} bad_case;

static void test_malformed_headers(void) {
    static char deep[4200];
    strcpy(deep, "{\"a\":{\"dtype\":\"F32\",\"shape\":");
    for (int i = 0; i < 2000; i++) strcat(deep, "[");
    for (int i = 0; i < 2000; i++) strcat(deep, "]");
    strcat(deep, ",\"data_offsets\":[0,0]}}");
#define T(dt, shape, off)                                                                          \
    "{\"t\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}}"
    const bad_case cases[] = {
        {"", 0, "does not start with '{'"},
        {"[1,2]", 0, "does not start with '{'"},
        {" {}", 0, "does not start with '{'"},
        {"{\"a\":", 0, "not valid JSON"},
        {"{\"a\" 1}", 0, "not valid JSON"},
        {"{} x", 0, "bytes after its JSON object"},
        {"{}}", 0, "bytes after its JSON object"},
        {deep, 0, "not valid JSON"},
        {"{\"t\":1}", 0, "tensor 't': expected an object"},
        {"{\"t\":[]}", 0, "got a list"},
        {T("F64", "[1]", "[0,8]"), 8, "tensor 't': unsupported dtype 'F64'"},
        {T("f32", "[1]", "[0,4]"), 4, "unsupported dtype 'f32'"},
        {"{\"t\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is a number"},
        {"{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing field 'dtype'"},
        {"{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing field 'shape'"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing field 'data_offsets'"},
        {"{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "duplicate field 'dtype'"},
        {T("F32", "3", "[0,4]"), 4, "shape is a number, not a list"},
        {T("F32", "[-1]", "[0,4]"), 4, "shape[0] is not a non-negative integer"},
        {T("F32", "[1,1.5]", "[0,4]"), 4, "shape[1] is not a non-negative integer"},
        {T("F32", "[\"2\"]", "[0,8]"), 8, "shape[0] is not"},
        {T("F32", "[1e300]", "[0,4]"), 4, "shape[0] is not"},
        {T("F32", "[null]", "[0,4]"), 4, "shape[0] is not"},
        {T("F32", "[1,1,1,1,1,1,1]", "[0,4]"), 4, "shape has 7 dims; kiln supports at most 6"},
        {T("U8", "[4294967296,4294967296,4294967296]", "[0,4]"), 4, "too many elements"},
        {T("I64", "[4294967296,4294967296]", "[0,4]"), 4, "too many elements"},
        {T("F32", "[1]", "[0]"), 4, "data_offsets is not a list of two"},
        {T("F32", "[1]", "[0,4,8]"), 8, "data_offsets is not a list of two"},
        {T("F32", "[1]", "[\"0\",4]"), 4, "data_offsets is not a list of two"},
        {T("F32", "[1]", "[-4,0]"), 4, "data_offsets is not a list of two"},
        {T("F32", "[1]", "{\"b\":0}"), 4, "data_offsets is not a list of two"},
        {T("F32", "[1]", "[8,4]"), 8, "data_offsets [8, 4]: begin is after end"},
        {T("F32", "[1]", "[0,16]"), 8, "[0, 16] run beyond the end of the data section (8 bytes)"},
        {T("F32", "[1]", "[0,18446744073709551615]"), 8, "data_offsets is not a list"},
        {T("F32", "[2]", "[0,12]"), 12, "[0, 12] hold 12 bytes, but F32 [2] needs 8"},
        {T("F16", "[3]", "[0,4]"), 4, "hold 4 bytes, but F16 [3] needs 6"},
        {T("F32", "[1]", "[4,8]"), 8, "gap of 4 bytes in the data section before tensor 't'"},
        {T("F32", "[1]", "[0,4]"), 8, "data section has 8 bytes but the tensors cover 4"},
        {"{}", 4, "trailing bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "tensors 'a' and 'b' overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, "gap of 4 bytes in the data section before tensor 'b'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "tensor 'a' appears twice"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ twice"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ 'k' is a number, not a string"},
        {"{\"__metadata__\":{\"k\":{}}}", 0, "__metadata__ 'k' is an object"},
        {"{\"__metadata__\":[]}", 0, "__metadata__ is a list"},
        {"{\"__metadata__\":\"x\"}", 0, "__metadata__ is a string"},
        {"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "__metadata__ has key 'k' twice"},
        {"{\"\xff\":{}}", 0, "not valid UTF-8 (byte 2 of the header)"},
        {"{\"\xc0\x80\":{}}", 0, "not valid UTF-8"},         /* overlong NUL */
        {"{\"\xed\xa0\x80\":{}}", 0, "not valid UTF-8"},     /* a surrogate */
        {"{\"\xf4\x90\x80\x80\":{}}", 0, "not valid UTF-8"}, /* above U+10FFFF */
        {"{\"\xe2\x82\":{}}", 0, "not valid UTF-8"},         /* cut short */
        {"{\"a\x01\":{}}", 0, "control byte 0x01"},
        {"{\"a\\u0000b\":{}}", 0, "\\u0000"},
        {"{\"a\":\"\\\"\\u0000\"}", 0, "\\u0000"},
    };
#undef T
    int n = (int)(sizeof cases / sizeof *cases);
    for (int k = 0; k < n; k++) {
        const bad_case *c = &cases[k];
        size_t len;
        unsigned char *b = build(c->header, strlen(c->header), c->dlen, &len);
        kiln_st_file *f = NULL;
        char label[32];
        snprintf(label, sizeof label, "case%d", k);
        kiln_status s = kiln_safetensors_parse(b, len, label, &f);
        CHECK_MSG(s == KILN_ERR_FORMAT && !f && strstr(kiln_last_error(), c->want) &&
                      strstr(kiln_last_error(), label),
                  "case %d (%.60s): %s '%s', want '%s'", k, c->header, kiln_status_name(s),
                  kiln_last_error(), c->want);
        kiln_st_close(f);
        put_bytes(at("bad"), b, len);
        s = kiln_safetensors_open(at("bad"), &f);
        CHECK_MSG(s == KILN_ERR_FORMAT && !f && strstr(kiln_last_error(), c->want) &&
                      strstr(kiln_last_error(), at("bad")),
                  "case %d via file: %s '%s'", k, kiln_status_name(s), kiln_last_error());
        kiln_st_close(f);
        free(b);
    }
}

static void test_open_errors(void) {
    kiln_st_file *f = (kiln_st_file *)1;
    CHECK(kiln_safetensors_open(at("missing.safetensors"), &f) == KILN_ERR_NOTFOUND && !f);
    CHECK_ERR_HAS(at("missing.safetensors"));
    CHECK(kiln_safetensors_open(root, &f) == KILN_ERR_IO);
    CHECK_ERR_HAS("not a regular file");
    CHECK(kiln_safetensors_open("", &f) == KILN_ERR_INVALID);
    CHECK(kiln_safetensors_parse(NULL, 0, NULL, &f) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("(memory)");
}

/* Random bytes, random headers and mutated valid files: never a crash, never a read out of
 * bounds (ASan), always a message when refused. */
static void test_garbage_never_crashes(void) {
    static const float w[6] = {1, 2, 3, 4, 5, 6};
    static const uint16_t h[3] = {1, 2, 3};
    kiln_st_entry in[] = {{"w", KILN_F32, {2, {2, 3}}, w},
                          {"h", KILN_BF16, {1, {3}}, h},
                          {"u", KILN_U8, {1, {5}}, w}};
    const char *kv[] = {"k", "v"};
    CHECK_OK(kiln_safetensors_write(at("g"), in, 3, kv, 1));
    void *valid;
    size_t vn;
    CHECK_OK(kiln_file_read_all(at("g"), &valid, &vn, 1 << 20));
    if (!valid) return;
    static const char alpha[] = "{}[]\":, 0123456789-.eE\\uFIUB_dtypeshaoffsts__metadata__";
    unsigned char buf[512];
    int ok = 0, refused = 0, quiet = 0;
    uint64_t ctr = 0;
#define R(n) kiln_rng_below(2024, 77, ctr++, (n))
    for (int it = 0; it < 600; it++) {
        size_t len;
        int kind = it % 3;
        if (kind == 0) { /* noise, sometimes with a plausible length prefix */
            len = R(300);
            for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)R(256);
            if (len >= 8 && R(2)) {
                uint64_t hl = R((uint32_t)len - 7);
                for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
            }
        } else if (kind == 1) { /* JSON-ish soup behind a correct length */
            size_t hl = 1 + R(200), dl = R(40);
            len = 8 + hl + dl;
            for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
            buf[8] = '{';
            for (size_t i = 9; i < 8 + hl; i++) buf[i] = (unsigned char)alpha[R(sizeof alpha - 1)];
            for (size_t i = 8 + hl; i < len; i++) buf[i] = (unsigned char)R(256);
        } else { /* a valid file with a few bytes changed, maybe cut or extended */
            len = vn;
            memcpy(buf, valid, vn);
            int edits = 1 + (int)R(4);
            for (int e = 0; e < edits; e++) {
                size_t pos = R((uint32_t)vn);
                buf[pos] = R(2) ? (unsigned char)R(256) : (unsigned char)alpha[R(sizeof alpha - 1)];
            }
            if (R(4) == 0) len = R((uint32_t)vn + 16);
            for (size_t i = vn; i < len; i++) buf[i] = (unsigned char)R(256);
        }
        /* A copy of exactly len bytes, so ASan catches a read past the end. */
        unsigned char *exact = malloc(len ? len : 1);
        memcpy(exact, buf, len);
        kiln_st_file *f = NULL;
        kiln_status s = kiln_safetensors_parse(exact, len, "noise", &f);
        if (s == KILN_OK) {
            ok++;
            touch_all(f);
            for (int i = 0; i < kiln_st_count(f); i++)
                CHECK(kiln_st_find(f, kiln_st_get(f, i)->name));
        } else {
            refused++;
            quiet += strncmp(kiln_last_error(), "safetensors noise: ", 19) != 0;
        }
        kiln_st_close(f);
        free(exact);
    }
#undef R
    printf("  garbage: %d accepted, %d refused\n", ok, refused);
    CHECK(refused > 0 && quiet == 0);
    kiln_free(valid);
}

/* ---- the writer refuses bad input and leaves the old file alone ---- */

static void test_writer_rejects(void) {
    static const float d[4] = {0};
    const char *path = at("w.safetensors");
    kiln_st_entry good = {"x", KILN_F32, {1, {4}}, d};
    CHECK_OK(kiln_safetensors_write(path, &good, 1, NULL, 0));
    void *before;
    size_t nbefore;
    CHECK_OK(kiln_file_read_all(path, &before, &nbefore, 1 << 20));

    struct {
        kiln_st_entry e[2];
        int n;
        const char *want;
    } cases[] = {
        {{{"a", KILN_F32, {1, {1}}, d}, {"a", KILN_F32, {1, {1}}, d}}, 2, "tensor 'a' given twice"},
        {{{"a", KILN_F32, {1, {1}}, d}, {"a", KILN_U8, {1, {1}}, d}}, 2, "tensor 'a' given twice"},
        {{{"__metadata__", KILN_F32, {1, {1}}, d}}, 1, "'__metadata__' is reserved"},
        {{{NULL, KILN_F32, {1, {1}}, d}}, 1, "entry 0 has no name"},
        {{{"ok", KILN_F32, {1, {1}}, d}, {"bad\xff", KILN_F32, {1, {1}}, d}},
         2,
         "entry 1: name is not valid UTF-8"},
        {{{"t", (kiln_dtype)99, {1, {1}}, d}}, 1, "tensor 't': unknown dtype 99"},
        {{{"t", KILN_F32, {7, {1}}, d}}, 1, "tensor 't': 7 dims"},
        {{{"t", KILN_F32, {-1, {1}}, d}}, 1, "tensor 't': -1 dims"},
        {{{"t", KILN_F32, {2, {2, -3}}, d}}, 1, "tensor 't': dim 1 is -3"},
        {{{"t", KILN_I64, {3, {1ll << 30, 1ll << 30, 1ll << 30}}, d}},
         1,
         "tensor 't': shape [1073741824, 1073741824, 1073741824] is too large"},
        {{{"t", KILN_F32, {1, {2}}, NULL}}, 1, "tensor 't': NULL data for F32 [2]"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_status s = kiln_safetensors_write(path, cases[k].e, cases[k].n, NULL, 0);
        CHECK_MSG(s != KILN_OK && strstr(kiln_last_error(), cases[k].want) &&
                      strstr(kiln_last_error(), path),
                  "case %zu: %s '%s', want '%s'", k, kiln_status_name(s), kiln_last_error(),
                  cases[k].want);
    }
    const char *dup[] = {"k", "1", "k", "2"}, *null_v[] = {"k", NULL}, *bad_u[] = {"k", "\xc3"};
    CHECK(kiln_safetensors_write(path, &good, 1, dup, 2) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("metadata key 'k' given twice");
    CHECK(kiln_safetensors_write(path, &good, 1, null_v, 1) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("metadata pair 0 has a NULL value");
    CHECK(kiln_safetensors_write(path, &good, 1, bad_u, 1) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("metadata 'k' is not valid UTF-8");
    CHECK(kiln_safetensors_write(path, &good, -1, NULL, 0) == KILN_ERR_INVALID);
    CHECK(kiln_safetensors_write(path, NULL, 1, NULL, 0) == KILN_ERR_INVALID);
    CHECK(kiln_safetensors_write(path, &good, 1, NULL, 1) == KILN_ERR_INVALID);
    CHECK(kiln_safetensors_write(at("nodir/x.safetensors"), &good, 1, NULL, 0) == KILN_ERR_IO);
    CHECK_ERR_HAS(at("nodir/x.safetensors"));

    void *after;
    size_t nafter;
    CHECK_OK(kiln_file_read_all(path, &after, &nafter, 1 << 20));
    CHECK(nafter == nbefore && !memcmp(before, after, nbefore));
    CHECK(temp_files() == 0);
    kiln_free(before);
    kiln_free(after);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    return remove(path);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/kiln-test-st-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_roundtrip_every_dtype);
    RUN(test_no_tensors);
    RUN(test_bytes_match_reference_vectors);
    RUN(test_bytes_order_and_escapes);
    RUN(test_reads_other_layouts);
    RUN(test_f16_converted);
    RUN(test_misaligned_tensors_copied);
    RUN(test_truncated_at_every_length);
    RUN(test_header_length_field);
    RUN(test_malformed_headers);
    RUN(test_open_errors);
    RUN(test_garbage_never_crashes);
    RUN(test_writer_rejects);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return kiln_test_summary();
}

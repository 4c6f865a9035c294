/* test_tensor_json.c — the serving JSON codecs: shortest float32 formatting (against an
 * independent strtof-based search), the text buffer, JSON numbers (against strtod), TF Serving
 * row and columnar requests, v2 requests, exact response bodies, error messages with their
 * paths, base64, and a fuzz loop over mutated bodies (nothing may crash or leak).
 *
 * Exhaustive check, run once by hand (not here: 2^31 floats take ~40 minutes): for every
 * positive finite float, kiln_f32_shortest reads back exactly and no decimal with one digit
 * fewer does (the nearest such decimal and its two neighbours, from glibc's exact "%.*e").
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "kiln/sbuf.h"
#include "kiln/tensor_json.h"
#include "net/json_scan.h"

/* ---- float formatting ---- */

/* Digits (no leading or trailing zeros) and the exponent of the last digit of a decimal. */
static void normalize(const char *s, char *dig, int *ex) {
    int n = 0, frac = 0, point = 0;
    if (*s == '-') s++;
    for (; *s && *s != 'e'; s++) {
        if (*s == '.') {
            point = 1;
            continue;
        }
        if (point) frac++;
        if (n == 0 && *s == '0') continue;
        dig[n++] = *s;
    }
    int e = (*s ? atoi(s + 1) : 0) - frac;
    while (n > 0 && dig[n - 1] == '0') n--, e++;
    dig[n] = 0;
    *ex = e;
}

/* The reference: for 1..9 digits, glibc's correctly rounded "%.*e" decimal and its two
 * neighbours; the first length with one that reads back wins, nearest to f (ties to even). */
static void reference_shortest(float f, char *dig, int *ex) {
    double d = f;
    for (int p = 1; p <= 9; p++) {
        char s[64];
        snprintf(s, sizeof s, "%.*e", p - 1, fabs(d));
        char *e = strchr(s, 'e');
        long long m = 0;
        for (char *q = s; q < e; q++)
            if (*q != '.') m = m * 10 + (*q - '0');
        int unit = atoi(e + 1) - (p - 1), found = 0;
        long long best = 0;
        long double best_dist = 0;
        for (long long c = m - 1; c <= m + 1; c++) {
            char t[64];
            snprintf(t, sizeof t, "%s%llde%d", f < 0 ? "-" : "", c, unit);
            if (c <= 0 || strtof(t, NULL) != f) continue;
            long double dist = fabsl(strtold(t, NULL) - (long double)d);
            if (!found || dist < best_dist || (dist == best_dist && c % 2 == 0))
                best = c, best_dist = dist, found = 1;
        }
        if (found) {
            char t[64];
            snprintf(t, sizeof t, "%llde%d", best, unit);
            normalize(t, dig, ex);
            return;
        }
    }
    strcpy(dig, "?");
    *ex = 0;
}

static int check_shortest(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    if (!isfinite(f) || f == 0) return 1;
    char out[KILN_F32_CHARS], d1[32], d2[32];
    int e1, e2;
    int len = kiln_f32_shortest(f, out);
    normalize(out, d1, &e1);
    reference_shortest(f, d2, &e2);
    int ok = len == (int)strlen(out) && strtof(out, NULL) == f && strcmp(d1, d2) == 0 && e1 == e2;
    CHECK_MSG(ok, "bits %08x: got %s, reference %se%d", bits, out, d2, e2);
    return ok;
}

static void test_f32_shortest_examples(void) {
    static const struct {
        float v;
        const char *s;
    } cases[] = {
        {0.1f, "0.1"},
        {1.0f, "1.0"},
        {-2.5f, "-2.5"},
        {0.0f, "0.0"},
        {100.0f, "100.0"},
        {3e-8f, "3e-08"},
        {1e-5f, "1e-05"},
        {1e-4f, "0.0001"},
        {123456.789f, "123456.79"},
        {16777216.0f, "16777216.0"},
        {1e15f, "1000000000000000.0"},
        {1e16f, "1e+16"},
        {1e20f, "1e+20"},
        {3.4028235e38f, "3.4028235e+38"},
        {1.17549435e-38f, "1.1754944e-38"},
        {1e-45f, "1e-45"},
        {0.3f, "0.3"},
        {2.0f / 3, "0.6666667"},
        {0.5f, "0.5"},
        {7.0e-6f, "7e-06"},
        {33554432.0f, "33554432.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[KILN_F32_CHARS];
        kiln_f32_shortest(cases[i].v, out);
        CHECK_MSG(strcmp(out, cases[i].s) == 0, "%.9g: got %s, want %s", cases[i].v, out,
                  cases[i].s);
    }
    char out[KILN_F32_CHARS];
    kiln_f32_shortest(-0.0f, out);
    CHECK(strcmp(out, "-0.0") == 0);
    kiln_f32_shortest(NAN, out);
    CHECK(strcmp(out, "NaN") == 0);
    kiln_f32_shortest(-INFINITY, out);
    CHECK(strcmp(out, "-Infinity") == 0);
    kiln_f32_shortest(INFINITY, out);
    CHECK(strcmp(out, "Infinity") == 0);
}

static void test_f32_shortest_against_reference(void) {
    int bad = 0;
    /* the smallest subnormals, every power of two (binade starts: the uneven interval), their
     * neighbours, the largest floats, and a pseudo-random sample of everything */
    for (uint32_t b = 1; b < 600 && bad < 10; b++) bad += !check_shortest(b);
    for (uint32_t e = 0; e < 255 && bad < 10; e++)
        for (int dm = -1; dm <= 1; dm++) bad += !check_shortest((e << 23) + (uint32_t)dm);
    for (uint32_t b = 0x7f7fffff; b > 0x7f7ffc00 && bad < 10; b--) bad += !check_shortest(b);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 40000 && bad < 10; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        bad += !check_shortest((uint32_t)x);
        bad += !check_shortest((uint32_t)x | 0x80000000u); /* negatives too */
    }
    /* floats from typical model outputs: probabilities and logits */
    for (int i = 0; i < 20000 && bad < 10; i++) {
        float f = (float)i / 20000.0f, g = ((float)i - 10000.0f) / 997.0f;
        uint32_t bf, bg;
        memcpy(&bf, &f, 4), memcpy(&bg, &g, 4);
        bad += !check_shortest(bf);
        bad += !check_shortest(bg);
    }
    CHECK(bad == 0);
}

/* ---- the text buffer ---- */

static void test_sbuf(void) {
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_json_str(&b, "a\"b\\c\n\t\x01/é");
    CHECK(strcmp(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001/é\"") == 0);
    kiln_sbuf_clear(&b);
    kiln_sbuf_json_strn(&b, "x\xff\xc3(\xed\xa0\x80y", 8); /* bad byte, bad pair, surrogate */
    CHECK_MSG(strcmp(b.data, "\"x\\ufffd\\ufffd(\\ufffd\\ufffd\\ufffdy\"") == 0, "%s", b.data);
    kiln_sbuf_clear(&b);
    kiln_sbuf_i64(&b, INT64_MIN);
    kiln_sbuf_putc(&b, ' ');
    kiln_sbuf_i64(&b, 0);
    kiln_sbuf_putc(&b, ' ');
    kiln_sbuf_i64(&b, 42);
    kiln_sbuf_printf(&b, " %s=%d", "n", 7);
    CHECK(strcmp(b.data, "-9223372036854775808 0 42 n=7") == 0);
    for (int i = 0; i < 10000; i++) kiln_sbuf_putc(&b, 'x'); /* growth */
    CHECK(b.len == 29 + 10000 && b.data[b.len] == 0);
    size_t len;
    char *s = kiln_sbuf_take(&b, &len);
    CHECK(s && len == 10029 && b.data == NULL && b.len == 0);
    free(s);
    s = kiln_sbuf_take(&b, &len); /* never written: an empty string */
    CHECK(s && len == 0 && s[0] == 0);
    free(s);
    kiln_sbuf_free(&b);
}

/* ---- JSON numbers against strtod ---- */

static void test_json_numbers(void) {
    const char *lits[] = {"0",
                          "-0",
                          "1",
                          "-1",
                          "0.5",
                          "1e22",
                          "1e23",
                          "1.7976931348623157e308",
                          "4.9e-324",
                          "2.2250738585072014e-308",
                          "123456789012345678901234567890",
                          "0.1",
                          "0.30000000000000004",
                          "9007199254740993",
                          "-9223372036854775808",
                          "9223372036854775807",
                          "9223372036854775808",
                          "1E+2",
                          "1e-400",
                          "1e400",
                          "0.000000000000000000000000001234",
                          "3.14159265358979323846264338327950288"};
    for (size_t i = 0; i < sizeof lits / sizeof *lits; i++) {
        js_cur c = {lits[i], lits[i], lits[i] + strlen(lits[i])};
        js_num n;
        CHECK_OK(js_number(&c, &n));
        double want = strtod(lits[i], NULL);
        CHECK_MSG(n.d == want || (isnan(n.d) && isnan(want)), "%s: %.17g vs %.17g", lits[i], n.d,
                  want);
        CHECK(c.p == c.end);
    }
    js_num n;
    js_cur c = {"-9223372036854775808", 0, 0};
    c.p = c.base, c.end = c.base + strlen(c.base);
    CHECK_OK(js_number(&c, &n));
    CHECK(n.is_int && n.i == INT64_MIN);
    c.base = c.p = "9223372036854775808", c.end = c.base + 19;
    CHECK_OK(js_number(&c, &n));
    CHECK(!n.is_int);
    /* random doubles written with 1..17 digits, and random exponents */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double v;
        uint64_t bits = x & 0x7fefffffffffffffull;
        memcpy(&v, &bits, 8);
        if (i % 2) v = (double)(x % 1000000007) * pow(10.0, (double)((int)(x >> 40) % 60 - 30));
        char s[64];
        snprintf(s, sizeof s, "%.*g", (int)(x >> 58) % 17 + 1, (x & 1) ? -v : v);
        if (strchr(s, 'i') || strchr(s, 'n')) continue;
        js_cur cc = {s, s, s + strlen(s)};
        if (js_number(&cc, &n) != KILN_OK || n.d != strtod(s, NULL)) {
            if (bad++ < 5)
                fprintf(stderr, "  number %s: %.17g vs %.17g\n", s, n.d, strtod(s, NULL));
        }
    }
    CHECK(bad == 0);
    const char *badlits[] = {"01", "-", "1.", ".5", "1e", "+1", "1e+", "-a"};
    for (size_t i = 0; i < sizeof badlits / sizeof *badlits; i++) {
        js_cur cc = {badlits[i], badlits[i], badlits[i] + strlen(badlits[i])};
        CHECK_MSG(js_number(&cc, &n) == KILN_ERR_FORMAT, "%s accepted", badlits[i]);
    }
}

/* ---- requests ---- */

static kiln_status tf(const char *body, kiln_tj_request *r) {
    return kiln_tj_parse_tf(body, strlen(body), NULL, r);
}
static kiln_status v2(const char *body, kiln_tj_request *r) {
    return kiln_tj_parse_v2(body, strlen(body), NULL, r);
}

static int shape_is(const kiln_tj_tensor *t, int ndim, const int64_t *dims) {
    kiln_shape s = kiln_shape_make(ndim, dims);
    return kiln_shape_equal(&t->shape, &s);
}

static int floats_are(const kiln_tj_tensor *t, const float *v, int n) {
    if (t->type != KILN_TJ_F32 || t->data_bytes != (size_t)n * 4) return 0;
    return memcmp(t->data, v, (size_t)n * 4) == 0;
}

/* Parsing body fails and the message equals want. */
#define CHECK_TF_ERR(body, want)                                                                   \
    do {                                                                                           \
        kiln_tj_request r_;                                                                        \
        kiln_status s_ = tf(body, &r_);                                                            \
        CHECK_MSG(s_ != KILN_OK && strcmp(kiln_last_error(), want) == 0,                           \
                  "%s\n    got:  %s\n    want: %s", body, kiln_last_error(), want);                \
        CHECK(r_.n_inputs == 0 && r_.inputs == NULL);                                              \
    } while (0)
#define CHECK_V2_ERR(body, want)                                                                   \
    do {                                                                                           \
        kiln_tj_request r_;                                                                        \
        kiln_status s_ = v2(body, &r_);                                                            \
        CHECK_MSG(s_ != KILN_OK && strcmp(kiln_last_error(), want) == 0,                           \
                  "%s\n    got:  %s\n    want: %s", body, kiln_last_error(), want);                \
    } while (0)

static void test_tf_rows(void) {
    kiln_tj_request r;
    CHECK_OK(tf("{\"instances\": [[1, 2, 3], [4, 5.5, -6e-1]]}", &r));
    CHECK(r.format == KILN_TJ_TF_ROW && !r.named && r.n_inputs == 1 && !r.signature_name);
    CHECK(strcmp(r.inputs[0].name, "") == 0);
    CHECK(shape_is(&r.inputs[0], 2, (int64_t[]){2, 3}));
    CHECK(floats_are(&r.inputs[0], (float[]){1, 2, 3, 4, 5.5f, -0.6f}, 6));
    kiln_tensor t = kiln_tj_as_tensor(&r.inputs[0]);
    CHECK(t.dtype == KILN_F32 && t.shape.ndim == 2 && t.data == r.inputs[0].data);
    kiln_tj_request_free(&r);

    /* scalars per instance, a 4-d instance, and signature_name after the instances */
    CHECK_OK(tf("{\"instances\": [1, 2, 3], \"signature_name\": \"serving_default\"}", &r));
    CHECK(shape_is(&r.inputs[0], 1, (int64_t[]){3}) &&
          floats_are(&r.inputs[0], (float[]){1, 2, 3}, 3));
    CHECK(r.signature_name && strcmp(r.signature_name, "serving_default") == 0);
    kiln_tj_request_free(&r);
    CHECK_OK(tf("{\"instances\":[[[[1],[2]]],[[[3],[4]]]]}", &r));
    CHECK(shape_is(&r.inputs[0], 4, (int64_t[]){2, 1, 2, 1}));
    kiln_tj_request_free(&r);

    /* named inputs, keys in any order, a bytes input */
    CHECK_OK(tf("{\"instances\": [{\"x\": [1, 2], \"tag\": {\"b64\": \"aGk=\"}},"
                "{\"tag\": {\"b64\": \"aGVsbG8\"}, \"x\": [3, 4]}]}",
                &r));
    CHECK(r.named && r.n_inputs == 2);
    CHECK(strcmp(r.inputs[0].name, "x") == 0 && shape_is(&r.inputs[0], 2, (int64_t[]){2, 2}));
    CHECK(floats_are(&r.inputs[0], (float[]){1, 2, 3, 4}, 4));
    const kiln_tj_tensor *tag = &r.inputs[1];
    CHECK(strcmp(tag->name, "tag") == 0 && tag->type == KILN_TJ_BYTES);
    CHECK(shape_is(tag, 1, (int64_t[]){2}) && tag->offsets);
    CHECK(tag->offsets[0] == 0 && tag->offsets[1] == 2 && tag->offsets[2] == 7);
    CHECK(tag->data_bytes == 7 && memcmp(tag->data, "hihello", 7) == 0);
    kiln_tj_request_free(&r);

    /* a list of b64 objects is an unnamed bytes input; plain strings too (with escapes) */
    CHECK_OK(tf("{\"instances\": [{\"b64\": \"-_8=\"}, {\"b64\": \"+/8\"}]}", &r));
    CHECK(!r.named && r.inputs[0].type == KILN_TJ_BYTES && r.inputs[0].data_bytes == 4);
    CHECK(memcmp(r.inputs[0].data, "\xfb\xff\xfb\xff", 4) == 0);
    kiln_tj_request_free(&r);
    CHECK_OK(tf("{\"instances\": [\"caf\\u00e9\", \"\\ud83d\\ude00\", \"a\\u0000b\"]}", &r));
    CHECK(r.inputs[0].type == KILN_TJ_BYTES && r.inputs[0].offsets[3] == 5 + 4 + 3);
    CHECK(memcmp(r.inputs[0].data,
                 "caf\xc3\xa9\xf0\x9f\x98\x80"
                 "a\0b",
                 12) == 0);
    kiln_tj_request_free(&r);
}

static void test_tf_columns(void) {
    kiln_tj_request r;
    CHECK_OK(tf("{\"inputs\": [[1, 2], [3, 4], [5, 6]]}", &r));
    CHECK(r.format == KILN_TJ_TF_COLUMNAR && !r.named &&
          shape_is(&r.inputs[0], 2, (int64_t[]){3, 2}));
    kiln_tj_request_free(&r);
    CHECK_OK(tf("{\"instances\": [{\"b64\": 5}]}", &r)); /* not a b64 object: an input "b64" */
    CHECK(r.named && strcmp(r.inputs[0].name, "b64") == 0 &&
          floats_are(&r.inputs[0], (float[]){5}, 1));
    kiln_tj_request_free(&r);
    CHECK_OK(tf("{\"inputs\": 7.5}", &r)); /* a scalar */
    CHECK(r.inputs[0].shape.ndim == 0 && floats_are(&r.inputs[0], (float[]){7.5f}, 1));
    kiln_tj_request_free(&r);
    CHECK_OK(tf(" {\"signature_name\":\"s\",\"inputs\":{\"a\":[1,2,3],\"b\":[[1],[2]],"
                "\"c\":{\"b64\":\"AAE=\"}}}\n",
                &r));
    CHECK(r.named && r.n_inputs == 3);
    CHECK(shape_is(&r.inputs[0], 1, (int64_t[]){3}) &&
          shape_is(&r.inputs[1], 2, (int64_t[]){2, 1}));
    CHECK(r.inputs[2].type == KILN_TJ_BYTES && r.inputs[2].shape.ndim == 0);
    CHECK(r.inputs[2].data_bytes == 2 && memcmp(r.inputs[2].data, "\0\1", 2) == 0);
    kiln_tj_request_free(&r);
}

static kiln_status ids_schema(void *ctx, const char *sig, const char *name, kiln_tj_type *type) {
    (void)ctx;
    if (sig && strcmp(sig, "serving_default") != 0)
        return kiln_error(KILN_ERR_NOTFOUND, "no signature '%s'", sig);
    if (strcmp(name, "ids") == 0)
        *type = KILN_TJ_I32;
    else if (strcmp(name, "big") == 0)
        *type = KILN_TJ_I64;
    else if (strcmp(name, "x") == 0)
        *type = KILN_TJ_F32;
    else
        return kiln_error(KILN_ERR_NOTFOUND, "unknown input '%s' (inputs: ids, big, x)", name);
    return KILN_OK;
}

static void test_schema_types(void) {
    kiln_tj_schema s = {ids_schema, NULL};
    kiln_tj_request r;
    const char *body = "{\"instances\": [{\"ids\": [1, 2.0, 1e2], \"big\": 9007199254740993},"
                       "{\"ids\": [-4, 5, 6], \"big\": -9223372036854775808}]}";
    CHECK_OK(kiln_tj_parse_tf(body, strlen(body), &s, &r));
    CHECK(r.inputs[0].type == KILN_TJ_I32 && shape_is(&r.inputs[0], 2, (int64_t[]){2, 3}));
    CHECK(memcmp(r.inputs[0].data, (int32_t[]){1, 2, 100, -4, 5, 6}, 24) == 0);
    CHECK(r.inputs[1].type == KILN_TJ_I64 && shape_is(&r.inputs[1], 1, (int64_t[]){2}));
    CHECK(memcmp(r.inputs[1].data, (int64_t[]){9007199254740993ll, INT64_MIN}, 16) == 0);
    CHECK(kiln_tj_as_tensor(&r.inputs[1]).dtype == KILN_I64);
    kiln_tj_request_free(&r);

    struct {
        const char *body, *err;
    } bad[] = {
        {"{\"instances\": [{\"ids\": [1.5]}]}",
         "instances[0].ids[0]: expected an integer (INT32), got 1.5"},
        {"{\"instances\": [{\"ids\": [2147483648]}]}",
         "instances[0].ids[0]: 2147483648 is out of range for INT32"},
        {"{\"instances\": [{\"nope\": 1}]}",
         "instances[0].nope: unknown input 'nope' (inputs: ids, big, x)"},
        {"{\"instances\": [[1]], \"signature_name\": \"other\"}",
         "instances: no signature 'other'"},
        {"{\"inputs\": {\"x\": \"text\"}}", "inputs.x: expected a number, got a string"},
        {"{\"inputs\": {\"big\": 1e19}}", "inputs.big: 1e19 is out of range for INT64"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(kiln_tj_parse_tf(bad[i].body, strlen(bad[i].body), &s, &r) != KILN_OK);
        CHECK_MSG(strcmp(kiln_last_error(), bad[i].err) == 0, "\n    got:  %s\n    want: %s",
                  kiln_last_error(), bad[i].err);
    }
}

static void test_tf_errors(void) {
    /* ragged: the list named is the one with the wrong count */
    char body[4096];
    int n = snprintf(body, sizeof body, "{\"instances\": [");
    for (int i = 0; i < 4; i++) {
        n += snprintf(body + n, sizeof body - (size_t)n, "%s[", i ? "," : "");
        for (int r = 0; r < 2; r++) {
            int cols = i == 3 && r == 1 ? 27 : 28;
            n += snprintf(body + n, sizeof body - (size_t)n, "%s[", r ? "," : "");
            for (int c = 0; c < cols; c++)
                n += snprintf(body + n, sizeof body - (size_t)n, "%s0", c ? "," : "");
            n += snprintf(body + n, sizeof body - (size_t)n, "]");
        }
        n += snprintf(body + n, sizeof body - (size_t)n, "]");
    }
    snprintf(body + n, sizeof body - (size_t)n, "]}");
    CHECK_TF_ERR(body, "instances[3][1]: expected 28 values, got 27");

    CHECK_TF_ERR("{\"instances\": [[1, 2], [3]]}", "instances[1]: expected 2 values, got 1");
    CHECK_TF_ERR("{\"instances\": [[1, 2], [3, 4, 5]]}", "instances[1]: expected 2 values, got 3");
    CHECK_TF_ERR("{\"instances\": [[1, 2], 3]}",
                 "instances[1]: expected a list of 2 values, got a number");
    CHECK_TF_ERR("{\"instances\": [[1, [2]]]}", "instances[0][1]: expected a number, got a list");
    CHECK_TF_ERR("{\"instances\": [[1, \"2\"]]}",
                 "instances[0][1]: expected a number, got a string");
    CHECK_TF_ERR("{\"instances\": [[\"a\", 2]]}",
                 "instances[0][1]: expected a string or {\"b64\": ...}, got a number");
    CHECK_TF_ERR("{\"instances\": [[1, null]]}", "instances[0][1]: expected a number, got null");
    CHECK_TF_ERR("{\"instances\": [[1, true]]}", "instances[0][1]: expected a number, got true");
    CHECK_TF_ERR("{\"instances\": [[1, \"NaN\"]]}",
                 "instances[0][1]: expected a number, got a string (NaN, Infinity and -Infinity go "
                 "without quotes)");
    CHECK_TF_ERR("{\"instances\": [1e39]}", "instances[0]: 1e39 is out of float32 range");
    CHECK_TF_ERR("{\"instances\": []}", "instances: empty list");
    CHECK_TF_ERR("{\"instances\": [[]]}",
                 "instances[0]: empty list (every dimension needs at least 1 value)");
    CHECK_TF_ERR("{\"instances\": 5}", "instances: expected a list, got a number");
    CHECK_TF_ERR("{\"instances\": [[[[[[[1]]]]]]]}",
                 "instances[0][0][0][0][0][0]: more than 6 dimensions");
    CHECK_TF_ERR("", "empty body: expected {\"instances\": [...]} or {\"inputs\": ...}");
    CHECK_TF_ERR("  \n ", "empty body: expected {\"instances\": [...]} or {\"inputs\": ...}");
    CHECK_TF_ERR("[1, 2]", "expected a JSON object with \"instances\" or \"inputs\", got a list");
    CHECK_TF_ERR("{}", "missing \"instances\" (row format) or \"inputs\" (columnar format)");
    CHECK_TF_ERR("{\"instance\": [1]}",
                 "missing \"instances\" (row format) or \"inputs\" (columnar format)");
    CHECK_TF_ERR(
        "{\"instances\": [1], \"inputs\": [1]}",
        "give either \"instances\" (row format) or \"inputs\" (columnar format), not both");
    CHECK_TF_ERR("{\"instances\": [1], \"instances\": [1]}", "\"instances\" given twice");
    CHECK_TF_ERR("{\"instances\": [1], \"signature_name\": 3}",
                 "signature_name: expected a string, got a number");
    /* syntax errors: line and column */
    CHECK_TF_ERR("{\"instances\": [1, 2,]}", "invalid JSON at line 1, column 21: expected a value");
    CHECK_TF_ERR("{\"instances\":\n  [1 2]}",
                 "invalid JSON at line 2, column 6: expected ',' or ']' after a list element");
    CHECK_TF_ERR("{\"instances\": [1]} x",
                 "invalid JSON at line 1, column 20: unexpected data after the JSON object");
    CHECK_TF_ERR("{\"instances\": [01]}",
                 "invalid JSON at line 1, column 17: leading zeros are not allowed in numbers");
    CHECK_TF_ERR(
        "{\"instances\": [1]",
        "invalid JSON at line 1 (end of body): expected ',' or '}' after an object member");
    CHECK_TF_ERR("{\"instances\": [\"a\x01\"]}",
                 "invalid JSON at line 1, column 18: control character in a string (escape it)");
    CHECK_TF_ERR(
        "{\"instances\": [\"\\ud800\"]}",
        "invalid JSON at line 1, column 17: high surrogate without a low one in \\u escape");
    CHECK_TF_ERR("{'instances': [1]}", "invalid JSON at line 1, column 2: expected a string key");
    /* named rows */
    CHECK_TF_ERR("{\"instances\": [{\"a\": 1}, {\"a\": 2, \"b\": 3}]}",
                 "instances[1]: input 'b' is not in instances[0]");
    CHECK_TF_ERR("{\"instances\": [{\"a\": 1, \"b\": 2}, {\"a\": 2}]}",
                 "instances[1]: missing input 'b' (instances[0] has it)");
    CHECK_TF_ERR("{\"instances\": [{\"a\": 1, \"a\": 2}]}", "instances[0]: input 'a' given twice");
    CHECK_TF_ERR("{\"instances\": [{\"a\": [1, 2]}, {\"a\": [1]}]}",
                 "instances[1].a: expected 2 values, got 1");
    CHECK_TF_ERR("{\"instances\": [{\"a\": [[1, 2], [3]]}]}",
                 "instances[0].a[1]: expected 2 values, got 1");
    CHECK_TF_ERR("{\"instances\": [{\"a\": 1}, [2]]}",
                 "instances[1]: expected an object of named inputs like instances[0], got a list");
    CHECK_TF_ERR("{\"inputs\": {\"a\": [1], \"a\": [2]}}", "inputs.a: given twice");
    CHECK_TF_ERR("{\"inputs\": {\"a\": [1, [2]]}}", "inputs.a[1]: expected a number, got a list");
    CHECK_TF_ERR("{\"inputs\": {}}", "inputs: empty object");
    /* base64 */
    CHECK_TF_ERR("{\"instances\": [{\"b64\": \"a*==\"}]}",
                 "instances[0]: b64: invalid base64 character at offset 1");
    CHECK_TF_ERR("{\"instances\": [{\"b64\": \"abcde\"}]}",
                 "instances[0]: b64: invalid base64 length 5");
    CHECK_TF_ERR("{\"instances\": [{\"b64\": \"ab=\"}]}",
                 "instances[0]: b64: invalid base64 length 3");
}

/* TF Serving's "JSON conformance" (api_rest.md): NaN, Infinity and -Infinity stand for numbers
 * in requests (rapidjson's kParseNanAndInfFlag, which also takes -NaN, Inf and -Inf), as in
 * Triton; float inputs take them, integer ones refuse them, and answers write them back. */
static void test_nonfinite(void) {
    kiln_tj_request r;
    CHECK_OK(tf("{\"instances\": [[1.0, -3.14, NaN, Infinity, -Infinity, Inf, -Inf, -NaN]],"
                " \"other\": {\"x\": [NaN, -Infinity]}}",
                &r));
    const float *f = r.n_inputs == 1 ? r.inputs[0].data : NULL;
    CHECK(f && shape_is(&r.inputs[0], 2, (int64_t[]){1, 8}));
    if (f) {
        CHECK(f[0] == 1.0f && f[1] == -3.14f && isnan(f[2]) && isnan(f[7]));
        CHECK(f[3] == INFINITY && f[4] == -INFINITY && f[5] == INFINITY && f[6] == -INFINITY);
    }
    kiln_tj_request_free(&r);
    CHECK_OK(tf("{\"inputs\": {\"a\": [NaN], \"b\": [[Infinity,1],[2,-Infinity]]}}", &r));
    CHECK(r.n_inputs == 2 && isnan(((float *)r.inputs[0].data)[0]));
    CHECK(r.n_inputs == 2 && ((float *)r.inputs[1].data)[3] == -INFINITY);
    kiln_tj_request_free(&r);
    CHECK_OK(v2("{\"inputs\": [{\"name\": \"x\", \"shape\": [3], \"datatype\": \"FP64\", "
                "\"data\": [NaN, Infinity, -Infinity]}]}",
                &r));
    f = r.n_inputs == 1 ? r.inputs[0].data : NULL;
    CHECK(f && isnan(f[0]) && f[1] == INFINITY && f[2] == -INFINITY);
    kiln_tj_request_free(&r);
    /* a literal beyond the range is still an error (rapidjson: "Number too big") */
    CHECK_TF_ERR("{\"instances\": [1e400]}", "instances[0]: 1e400 is out of float32 range");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"INT32\", "
                 "\"data\": [1, NaN]}]}",
                 "input 'x' data[1]: NaN is not an integer (datatype INT32)");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [NaN], \"datatype\": \"FP32\", "
                 "\"data\": [1]}]}",
                 "input 'x' shape: expected a number, got NaN or Infinity");
#define NOT_A_TOKEN "expected a value (NaN, Infinity or -Infinity?)"
    CHECK_TF_ERR("{\"instances\": [Nan]}", "invalid JSON at line 1, column 16: " NOT_A_TOKEN);
    CHECK_TF_ERR("{\"instances\": [NaNa]}", "invalid JSON at line 1, column 16: " NOT_A_TOKEN);
    CHECK_TF_ERR("{\"instances\": [Infinit]}", "invalid JSON at line 1, column 16: " NOT_A_TOKEN);
    CHECK_TF_ERR("{\"instances\": [1], \"x\": -Infinityy}",
                 "invalid JSON at line 1, column 25: " NOT_A_TOKEN);
    /* written back as TF Serving and Triton write them */
    kiln_sbuf b = KILN_SBUF_INIT;
    float odd[3] = {NAN, INFINITY, -INFINITY};
    kiln_tj_output o = {"y", KILN_TJ_F32, kiln_shape_make(1, (int64_t[]){3}), odd};
    CHECK_OK(kiln_tj_write_v2(&b, "m", NULL, NULL, &o, 1));
    CHECK(b.data && strstr(b.data, "\"data\":[NaN,Infinity,-Infinity]"));
    kiln_sbuf_free(&b);
}

/* ---- Triton's binary tensor data extension ---- */

/* body = json + bin (bin_len bytes); parses with the JSON's length as the header says. */
static kiln_status v2_bin(const char *json, const void *bin, size_t bin_len, kiln_tj_request *r,
                          const kiln_tj_schema *schema) {
    static char body[4096];
    size_t n = strlen(json);
    memcpy(body, json, n);
    memcpy(body + n, bin, bin_len);
    return kiln_tj_parse_v2_binary(body, n + bin_len, n, schema, r);
}

#define CHECK_BIN_ERR(json, bin, bin_len, want)                                                    \
    do {                                                                                           \
        kiln_tj_request r_;                                                                        \
        kiln_status s_ = v2_bin(json, bin, bin_len, &r_, NULL);                                    \
        CHECK_MSG(s_ != KILN_OK && strstr(kiln_last_error(), want),                                \
                  "%s\n    got:  %s\n    want: %s", json, s_ ? kiln_last_error() : "(accepted)",   \
                  want);                                                                           \
        if (!s_) kiln_tj_request_free(&r_);                                                        \
    } while (0)

static void test_v2_binary(void) {
    kiln_tj_request r;
    /* the spec's example: UINT32 [2, 2] and BOOL [3] as binary data, output0 asked as binary */
    const unsigned char ex[19] = {1, 0, 0,    0,    2,    0,    0, 0, 0, 1,
                                  0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 1};
    CHECK_OK(
        v2_bin("{\"model_name\": \"mymodel\", \"inputs\": [{\"name\": \"input0\", "
               "\"shape\": [2, 2], \"datatype\": \"UINT32\", \"parameters\": "
               "{\"binary_data_size\": 16}}, {\"name\": \"input1\", \"shape\": [3], "
               "\"datatype\": \"BOOL\", \"parameters\": {\"binary_data_size\": 3}}], "
               "\"outputs\": [{\"name\": \"output0\", \"parameters\": {\"binary_data\": true}}]}",
               ex, sizeof ex, &r, NULL));
    CHECK(r.n_inputs == 2 && shape_is(&r.inputs[0], 2, (int64_t[]){2, 2}));
    CHECK(r.n_inputs == 2 && floats_are(&r.inputs[0], (float[]){1, 2, 256, 4294967295.0f}, 4));
    CHECK(r.n_inputs == 2 && floats_are(&r.inputs[1], (float[]){1, 0, 1}, 3));
    CHECK(r.n_outputs == 1 && r.outputs_binary && r.outputs_binary[0] == 1);
    kiln_tj_request_free(&r);

    /* FP32 (little-endian, NaN kept), FP64, INT8, INT64, a JSON input between binary ones */
    const unsigned char f32[8] = {0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0xc0, 0x7f}; /* 1.5, NaN */
    unsigned char mix[8 + 8 + 2 + 8];
    memcpy(mix, f32, 8);
    const double d = -0.25;
    uint64_t du;
    memcpy(&du, &d, 8);
    for (int k = 0; k < 8; k++) mix[8 + k] = (unsigned char)(du >> (8 * k));
    mix[16] = 0x80, mix[17] = 0x7f; /* INT8 -128, 127 */
    const unsigned char i64[8] = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}; /* -2 */
    memcpy(mix + 18, i64, 8);
    CHECK_OK(v2_bin("{\"inputs\": ["
                    "{\"name\": \"a\", \"shape\": [2], \"datatype\": \"FP32\", "
                    "\"parameters\": {\"binary_data_size\": 8, \"other\": [1]}},"
                    "{\"name\": \"j\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [7]},"
                    "{\"name\": \"b\", \"shape\": [1], \"datatype\": \"FP64\", "
                    "\"parameters\": {\"binary_data_size\": 8}},"
                    "{\"parameters\": {\"binary_data_size\": 2}, \"name\": \"c\", \"shape\": [2], "
                    "\"datatype\": \"INT8\"},"
                    "{\"name\": \"e\", \"shape\": [1, 1], \"datatype\": \"INT64\", "
                    "\"parameters\": {\"binary_data_size\": 8}}],"
                    "\"parameters\": {\"binary_data_output\": true}}",
                    mix, sizeof mix, &r, NULL));
    const float *a = r.n_inputs == 5 ? r.inputs[0].data : NULL;
    CHECK(a && a[0] == 1.5f && isnan(a[1]));
    CHECK(r.n_inputs == 5 && floats_are(&r.inputs[1], (float[]){7}, 1));
    CHECK(r.n_inputs == 5 && floats_are(&r.inputs[2], (float[]){-0.25f}, 1));
    CHECK(r.n_inputs == 5 && floats_are(&r.inputs[3], (float[]){-128, 127}, 2));
    CHECK(r.n_inputs == 5 && floats_are(&r.inputs[4], (float[]){-2}, 1) &&
          shape_is(&r.inputs[4], 2, (int64_t[]){1, 1}));
    CHECK(r.binary_data_output == 1 && r.n_outputs == 0);
    kiln_tj_request_free(&r);

    /* BYTES: a 4-byte length before each element */
    const unsigned char bytes[4 + 2 + 4 + 4] = {2, 0, 0, 0, 'h', 'i', 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK_OK(v2_bin("{\"inputs\": [{\"name\": \"s\", \"shape\": [3], \"datatype\": \"BYTES\", "
                    "\"parameters\": {\"binary_data_size\": 14}}]}",
                    bytes, sizeof bytes, &r, NULL));
    CHECK(r.n_inputs == 1 && r.inputs[0].type == KILN_TJ_BYTES && r.inputs[0].data_bytes == 2);
    CHECK(r.n_inputs == 1 && r.inputs[0].offsets[1] == 2 && r.inputs[0].offsets[3] == 2);
    kiln_tj_request_free(&r);

    /* the schema's types: binary INT64 into int32 with its range check */
    kiln_tj_schema ids = {ids_schema, NULL};
    const unsigned char big[8] = {0, 0, 0, 0x80, 0, 0, 0, 0}; /* 2^31 */
    CHECK(v2_bin("{\"inputs\": [{\"name\": \"ids\", \"shape\": [1], \"datatype\": \"INT64\", "
                 "\"parameters\": {\"binary_data_size\": 8}}]}",
                 big, 8, &r, &ids) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("input 'ids' binary data[0]: 2147483648 is out of range for INT32");

    /* output choices: binary_data on an output wins over binary_data_output */
    CHECK_OK(
        v2_bin("{\"parameters\": {\"binary_data_output\": true}, \"outputs\": ["
               "{\"name\": \"p\"}, {\"name\": \"q\", \"parameters\": {\"binary_data\": false}},"
               "{\"name\": \"r\", \"parameters\": {\"binary_data\": true}}],"
               "\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
               "\"data\": [1]}]}",
               "", 0, &r, NULL));
    CHECK(r.n_outputs == 3 && r.outputs_binary[0] == 1 && r.outputs_binary[1] == 0 &&
          r.outputs_binary[2] == 1);
    kiln_tj_request_free(&r);

    /* refusals */
    const unsigned char four[4] = {0, 0, 0x80, 0x3f};
    const char *one_bin = "{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": "
                          "\"FP32\", \"parameters\": {\"binary_data_size\": 4}}]}";
    CHECK_BIN_ERR(one_bin, four, 3,
                  "input 'x': binary_data_size is 4, but only 3 bytes of binary data are left");
    unsigned char five[5] = {0, 0, 0x80, 0x3f, 9};
    CHECK_BIN_ERR(one_bin, five, 5, "1 bytes of binary data after the JSON belong to no input");
    CHECK_BIN_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"FP32\", "
                  "\"parameters\": {\"binary_data_size\": 4}}]}",
                  four, 4, "input 'x' binary data: 2 FP32 values take 8 bytes, got 4");
    CHECK_BIN_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
                  "\"data\": [1], \"parameters\": {\"binary_data_size\": 4}}]}",
                  four, 4, "input 'x': both \"data\" and \"parameters\": {\"binary_data_size\"}");
    CHECK_BIN_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
                  "\"parameters\": {\"binary_data_size\": -4}}]}",
                  four, 4, "input 'x' parameters: \"binary_data_size\" must be a byte count");
    CHECK_BIN_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
                  "\"parameters\": {}}]}",
                  "", 0,
                  "input 'x': missing \"data\" (or \"parameters\": {\"binary_data_size\": N} "
                  "for binary tensor data)");
    const unsigned char two = 2;
    CHECK_BIN_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"BOOL\", "
                  "\"parameters\": {\"binary_data_size\": 1}}]}",
                  &two, 1, "input 'x' binary data[0]: BOOL byte 2 (1 is true, 0 is false)");
    const unsigned char cut[6] = {5, 0, 0, 0, 'a', 'b'};
    CHECK_BIN_ERR("{\"inputs\": [{\"name\": \"s\", \"shape\": [1], \"datatype\": \"BYTES\", "
                  "\"parameters\": {\"binary_data_size\": 6}}]}",
                  cut, 6,
                  "input 's' binary data[0]: an element of 5 bytes, but only 2 bytes are left");
    CHECK_BIN_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
                  "\"data\": [1]}], \"outputs\": [{\"name\": \"y\", \"parameters\": "
                  "{\"binary_data\": 1}}]}",
                  "", 0,
                  "outputs[0] parameters: \"binary_data\" must be true or false, got a number");
    CHECK_BIN_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
                  "\"data\": [1]}]} x",
                  "", 0,
                  "unexpected data after the JSON object (the Inference-Header-Content-Length");
    /* without the header, binary data is refused by name */
    CHECK_V2_ERR(one_bin, "input 'x': \"binary_data_size\" is given, but the request has no "
                          "Inference-Header-Content-Length header to say where its JSON ends and "
                          "the binary data begins");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
                 "\"data\": [1]}]}\x01\x02",
                 "invalid JSON at line 1, column 75: unexpected data after the JSON object (binary "
                 "tensor data after it needs the Inference-Header-Content-Length header)");
    CHECK(kiln_tj_parse_v2_binary("{}", 2, 3, NULL, &r) == KILN_ERR_INVALID);

    /* a raw binary request: the whole body is the input */
    kiln_shape sh = kiln_shape_make(2, (int64_t[]){1, 2});
    CHECK_OK(kiln_tj_parse_v2_raw((const char *)f32, 8, "in", "FP32", &sh, NULL, &r));
    CHECK(r.n_inputs == 1 && strcmp(r.inputs[0].name, "in") == 0 &&
          shape_is(&r.inputs[0], 2, (int64_t[]){1, 2}) && r.binary_data_output == 1);
    kiln_tj_request_free(&r);
    CHECK(kiln_tj_parse_v2_raw((const char *)f32, 4, "in", "FP32", &sh, NULL, &r) ==
          KILN_ERR_INVALID);
    CHECK_ERR_HAS("raw binary request: input 'in': 2 FP32 values take 8 bytes, got 4");

    /* noise as binary data of every datatype: refused or read, never read past the body */
    static const char *dts[] = {"BOOL", "UINT8", "INT16", "UINT32", "INT64",
                                "FP32", "FP64",  "BYTES", "UINT64"};
    uint64_t rnd = 0x2545f4914f6cdd1dull;
    for (int it = 0; it < 3000; it++) {
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
        const char *dt = dts[rnd % 9];
        size_t n = (size_t)(rnd >> 8) % 40, numel = 1 + (size_t)(rnd >> 20) % 6;
        size_t claim = (rnd >> 30) % 4 ? n : (size_t)(rnd >> 40) % 48;
        char json[256];
        int jl = snprintf(json, sizeof json,
                          "{\"inputs\":[{\"name\":\"x\",\"shape\":[%zu],\"datatype\":\"%s\","
                          "\"parameters\":{\"binary_data_size\":%zu}}]}",
                          numel, dt, claim);
        char *body = malloc((size_t)jl + n);
        memcpy(body, json, (size_t)jl);
        for (size_t k = 0; k < n; k++) {
            rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
            body[jl + k] = (char)(k % 4 == 1 ? 0 : rnd); /* small BYTES lengths now and then */
        }
        if (kiln_tj_parse_v2_binary(body, (size_t)jl + n, (size_t)jl, NULL, &r) == KILN_OK) {
            CHECK(r.n_inputs == 1 && kiln_shape_numel(&r.inputs[0].shape) == (int64_t)numel);
            kiln_tj_request_free(&r);
        }
        free(body);
    }

    /* answers: binary outputs after the JSON, in order; the JSON's length for the header */
    float probs[2] = {0.25f, -1.0f};
    const char *cls[2] = {"ant", ""};
    int64_t ids64[1] = {-2};
    kiln_tj_output outs[3] = {
        {"probs", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){1, 2}), probs, 1},
        {"id", KILN_TJ_I64, kiln_shape_make(1, (int64_t[]){1}), ids64, 0},
        {"classes", KILN_TJ_BYTES, kiln_shape_make(1, (int64_t[]){2}), cls, 1}};
    kiln_sbuf b = KILN_SBUF_INIT;
    size_t json_len = 0;
    CHECK_OK(kiln_tj_write_v2_binary(&b, "m", "1", NULL, outs, 3, &json_len));
    const char *want_json =
        "{\"model_name\":\"m\",\"model_version\":\"1\",\"outputs\":["
        "{\"name\":\"probs\",\"shape\":[1,2],\"datatype\":\"FP32\",\"parameters\":"
        "{\"binary_data_size\":8}},"
        "{\"name\":\"id\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[-2]},"
        "{\"name\":\"classes\",\"shape\":[2],\"datatype\":\"BYTES\",\"parameters\":"
        "{\"binary_data_size\":11}}]}";
    const unsigned char want_bin[8 + 11] = {0, 0, 0x80, 0x3e, 0,   0, 0x80, 0xbf, 3, 0,
                                            0, 0, 'a',  'n',  't', 0, 0,    0,    0};
    CHECK(json_len == strlen(want_json) && b.len == json_len + sizeof want_bin);
    CHECK(b.len == json_len + sizeof want_bin && memcmp(b.data, want_json, json_len) == 0 &&
          memcmp(b.data + json_len, want_bin, sizeof want_bin) == 0);
    kiln_sbuf_free(&b);
}

static void test_v2_requests(void) {
    kiln_tj_request r;
    CHECK_OK(v2("{\"id\": \"42\", \"inputs\": [{\"name\": \"x\", \"shape\": [2, 3], \"datatype\": "
                "\"FP32\", \"data\": [1, 2, 3, 4, 5, 6]}], \"outputs\": [{\"name\": \"probs\"}]}",
                &r));
    CHECK(r.format == KILN_TJ_V2 && r.id && strcmp(r.id, "42") == 0 && r.n_inputs == 1);
    CHECK(strcmp(r.inputs[0].name, "x") == 0 && shape_is(&r.inputs[0], 2, (int64_t[]){2, 3}));
    CHECK(floats_are(&r.inputs[0], (float[]){1, 2, 3, 4, 5, 6}, 6));
    CHECK(r.n_outputs == 1 && strcmp(r.outputs[0], "probs") == 0);
    kiln_tj_request_free(&r);

    /* nested data, fields in any order, several inputs, conversions to float32 */
    CHECK_OK(
        v2("{\"inputs\": [{\"data\": [[1, 2], [3, 4]], \"datatype\": \"INT64\", \"shape\": [4],"
           "\"name\": \"a\", \"parameters\": {\"k\": [1, {\"z\": null}]}},"
           "{\"name\": \"b\", \"shape\": [1, 2], \"datatype\": \"BOOL\", \"data\": [true, false]},"
           "{\"name\": \"c\", \"shape\": [], \"datatype\": \"UINT8\", \"data\": [255]},"
           "{\"name\": \"d\", \"shape\": [2], \"datatype\": \"BYTES\", \"data\": [\"ab\", \"\"]}],"
           "\"parameters\": {\"priority\": 1}}",
           &r));
    CHECK(!r.id && r.n_inputs == 4 && r.n_outputs == 0);
    CHECK(shape_is(&r.inputs[0], 1, (int64_t[]){4}) &&
          floats_are(&r.inputs[0], (float[]){1, 2, 3, 4}, 4));
    CHECK(shape_is(&r.inputs[1], 2, (int64_t[]){1, 2}) &&
          floats_are(&r.inputs[1], (float[]){1, 0}, 2));
    CHECK(r.inputs[2].shape.ndim == 0 && floats_are(&r.inputs[2], (float[]){255}, 1));
    CHECK(r.inputs[3].type == KILN_TJ_BYTES && r.inputs[3].offsets[1] == 2 &&
          r.inputs[3].offsets[2] == 2);
    kiln_tj_request_free(&r);

    /* the schema picks int32 for ids */
    kiln_tj_schema s = {ids_schema, NULL};
    const char *body = "{\"inputs\": [{\"name\": \"ids\", \"shape\": [3], \"datatype\": \"INT64\","
                       "\"data\": [7, -1, 2147483647]}]}";
    CHECK_OK(kiln_tj_parse_v2(body, strlen(body), &s, &r));
    CHECK(r.inputs[0].type == KILN_TJ_I32 &&
          memcmp(r.inputs[0].data, (int32_t[]){7, -1, 2147483647}, 12) == 0);
    kiln_tj_request_free(&r);
    body = "{\"inputs\": [{\"name\": \"ids\", \"shape\": [1], \"datatype\": \"BYTES\", \"data\": "
           "[\"a\"]}]}";
    CHECK(kiln_tj_parse_v2(body, strlen(body), &s, &r) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("input 'ids': datatype BYTES, but the model takes INT32 for it");

    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [2, 3], \"datatype\": \"FP32\", "
                 "\"data\": [1, 2, 3, 4, 5]}]}",
                 "input 'x': shape [2, 3] needs 6 values, data has 5");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"FP32\", "
                 "\"data\": [1, 2, 3]}]}",
                 "input 'x': shape [2] needs 2 values, data has 3");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"INT32\", "
                 "\"data\": [1, 1.5]}]}",
                 "input 'x' data[1]: 1.5 is not an integer (datatype INT32)");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"UINT8\", "
                 "\"data\": [256]}]}",
                 "input 'x' data[0]: 256 is out of range for UINT8");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"BOOL\", "
                 "\"data\": [1]}]}",
                 "input 'x' data[0]: expected true or false (datatype BOOL), got 1");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
                 "\"data\": [\"1\"]}]}",
                 "input 'x' data[0]: expected a number, got a string");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
                 "\"data\": [true]}]}",
                 "input 'x' data[0]: expected a number for FP32, got true");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"FP16\", "
                 "\"data\": [1, 2]}]}",
                 "input 'x': datatype \"FP16\" is not supported (BOOL, UINT8, UINT16, UINT32, "
                 "UINT64, INT8, INT16, INT32, INT64, FP32, FP64, BYTES)");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [2, 0], \"datatype\": \"FP32\", "
                 "\"data\": []}]}",
                 "input 'x' shape: dims must be integers >= 1, got 0");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"FP32\"}]}",
                 "input 'x': missing \"data\" (or \"parameters\": {\"binary_data_size\": N} for "
                 "binary tensor data)");
    CHECK_V2_ERR("{\"inputs\": [{\"shape\": [2], \"datatype\": \"FP32\", \"data\": [1, 2]}]}",
                 "inputs[0]: missing \"name\"");
    CHECK_V2_ERR(
        "{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1]},"
        "{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1]}]}",
        "input 'x': given twice");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"shape\": [1]}]}",
                 "input 'x': \"shape\" given twice");
    CHECK_V2_ERR("{\"inputs\": []}", "inputs: empty list");
    CHECK_V2_ERR("{\"inputs\": [3]}", "inputs[0]: expected an object, got a number");
    CHECK_V2_ERR("{\"id\": 3, \"inputs\": []}", "id: expected a string, got a number");
    CHECK_V2_ERR("{\"instances\": [1]}", "missing \"inputs\"");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", "
                 "\"data\": [1]}], \"outputs\": [{}]}",
                 "outputs[0]: missing \"name\"");
    CHECK_V2_ERR("{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 1, 1, 1, 1, 1, 1]}]}",
                 "input 'x' shape: more than 6 dims");
}

/* ---- responses ---- */

static char *written(kiln_status st, kiln_sbuf *b) {
    CHECK_OK(st);
    return b->data ? b->data : "";
}

static void test_writers(void) {
    float probs[6] = {0.1f, 0.2f, 0.7f, 1.0f, 0.0f, -2.5e-7f};
    int64_t cls[2] = {2, -9};
    kiln_tj_output one = {"probs", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){2, 3}), probs};
    kiln_tj_output two[2] = {one, {"class", KILN_TJ_I64, kiln_shape_make(1, (int64_t[]){2}), cls}};
    kiln_sbuf b = KILN_SBUF_INIT;

    CHECK(strcmp(written(kiln_tj_write_tf_row(&b, &one, 1), &b),
                 "{\"predictions\":[[0.1,0.2,0.7],[1.0,0.0,-2.5e-07]]}") == 0);
    kiln_sbuf_clear(&b);
    CHECK(strcmp(written(kiln_tj_write_tf_row(&b, two, 2), &b),
                 "{\"predictions\":[{\"probs\":[0.1,0.2,0.7],\"class\":2},"
                 "{\"probs\":[1.0,0.0,-2.5e-07],\"class\":-9}]}") == 0);
    kiln_sbuf_clear(&b);
    CHECK(strcmp(written(kiln_tj_write_tf_columnar(&b, &one, 1), &b),
                 "{\"outputs\":[[0.1,0.2,0.7],[1.0,0.0,-2.5e-07]]}") == 0);
    kiln_sbuf_clear(&b);
    CHECK(strcmp(written(kiln_tj_write_tf_columnar(&b, two, 2), &b),
                 "{\"outputs\":{\"probs\":[[0.1,0.2,0.7],[1.0,0.0,-2.5e-07]],\"class\":[2,-9]}}") ==
          0);
    kiln_sbuf_clear(&b);
    CHECK(strcmp(written(kiln_tj_write_v2(&b, "mnist", "3", "req-1", two, 2), &b),
                 "{\"model_name\":\"mnist\",\"model_version\":\"3\",\"id\":\"req-1\",\"outputs\":["
                 "{\"name\":\"probs\",\"shape\":[2,3],\"datatype\":\"FP32\","
                 "\"data\":[0.1,0.2,0.7,1.0,0.0,-2.5e-07]},"
                 "{\"name\":\"class\",\"shape\":[2],\"datatype\":\"INT64\",\"data\":[2,-9]}]}") ==
          0);
    kiln_sbuf_clear(&b);
    CHECK(strcmp(written(kiln_tj_write_v2(&b, "m\"x", NULL, NULL, &one, 1), &b),
                 "{\"model_name\":\"m\\\"x\",\"outputs\":[{\"name\":\"probs\",\"shape\":[2,3],"
                 "\"datatype\":\"FP32\",\"data\":[0.1,0.2,0.7,1.0,0.0,-2.5e-07]}]}") == 0);

    /* a scalar, a 3-d output, non-finite values, int32 */
    float odd[4] = {NAN, INFINITY, -INFINITY, 5};
    int32_t i32[1] = {-7};
    kiln_tj_output sc = {"s", KILN_TJ_I32, kiln_shape_make(0, NULL), i32};
    kiln_tj_output cube = {"c", KILN_TJ_F32, kiln_shape_make(3, (int64_t[]){1, 2, 2}), odd};
    kiln_sbuf_clear(&b);
    CHECK(strcmp(written(kiln_tj_write_tf_columnar(&b, &sc, 1), &b), "{\"outputs\":-7}") == 0);
    kiln_sbuf_clear(&b);
    CHECK(strcmp(written(kiln_tj_write_tf_row(&b, &cube, 1), &b),
                 "{\"predictions\":[[[NaN,Infinity],[-Infinity,5.0]]]}") == 0);

    /* refusals leave the buffer alone */
    kiln_sbuf_clear(&b);
    CHECK(kiln_tj_write_tf_row(&b, &sc, 1) == KILN_ERR_INVALID);
    CHECK_ERR_HAS("output 's': shape []; the row format needs a leading batch dim");
    kiln_tj_output mismatch[2] = {one,
                                  {"class", KILN_TJ_I64, kiln_shape_make(1, (int64_t[]){3}), cls}};
    CHECK(kiln_tj_write_tf_row(&b, mismatch, 2) == KILN_ERR_INVALID);
    CHECK_ERR_HAS(
        "output 'class': shape [3]; the row format needs a leading batch dim shared by all "
        "outputs (output 'probs' has 2)");
    kiln_tj_output bad_type = {"b", (kiln_tj_type)9, kiln_shape_make(1, (int64_t[]){1}), "x"};
    CHECK(kiln_tj_write_v2(&b, "m", NULL, NULL, &bad_type, 1) == KILN_ERR_INVALID);
    CHECK(kiln_tj_write_tf_columnar(&b, &one, 0) == KILN_ERR_INVALID);
    CHECK(b.len == 0);

    /* string outputs (class names): escaped JSON strings, in rows and in v2 */
    const char *names[2] = {"Ankle \"boot\"", "T-shirt/top"};
    kiln_tj_output cls_names = {"classes", KILN_TJ_BYTES, kiln_shape_make(1, (int64_t[]){2}), names};
    CHECK(strcmp(written(kiln_tj_write_tf_row(&b, &cls_names, 1), &b),
                 "{\"predictions\":[\"Ankle \\\"boot\\\"\",\"T-shirt/top\"]}") == 0);
    kiln_sbuf_clear(&b);
    CHECK(strcmp(written(kiln_tj_write_v2(&b, "m", "1", NULL, &cls_names, 1), &b),
                 "{\"model_name\":\"m\",\"model_version\":\"1\",\"outputs\":[{\"name\":"
                 "\"classes\",\"shape\":[2],\"datatype\":\"BYTES\",\"data\":[\"Ankle "
                 "\\\"boot\\\"\",\"T-shirt/top\"]}]}") == 0);
    kiln_sbuf_free(&b);
}

/* Integers take a fast path: its edges (zero, sign, 9 and 10 digits, a fraction or exponent
 * after the digits) must give what the general path gives. */
static void test_integer_fast_path(void) {
    const char *body = "{\"instances\": [[0, -0, 7, -5, 123456789, 1234567890, 999999999, 1e2, "
                       "25.5, -3E1, 0.5, 100000000000, -2147483649]]}";
    const float want[] = {0, -0.0f, 7, -5, 123456789, 1234567890, 999999999, 100, 25.5f, -30, 0.5f,
                          1e11f, -2147483649.0f};
    kiln_tj_request r;
    CHECK_OK(kiln_tj_parse_tf(body, strlen(body), NULL, &r));
    CHECK(r.n_inputs == 1 && kiln_shape_numel(&r.inputs[0].shape) == 13);
    if (r.n_inputs == 1)
        for (int i = 0; i < 13; i++)
            CHECK_MSG(memcmp(&((float *)r.inputs[0].data)[i], &want[i], 4) == 0, "value %d: %g", i,
                      ((float *)r.inputs[0].data)[i]);
    kiln_tj_request_free(&r);
    const char *bad[] = {"{\"instances\": [[01]]}", "{\"instances\": [[-]]}",
                         "{\"instances\": [[1.]]}", "{\"instances\": [[- 1]]}"};
    for (int i = 0; i < 4; i++) CHECK(kiln_tj_parse_tf(bad[i], strlen(bad[i]), NULL, &r) == KILN_ERR_FORMAT);
}

/* The same edges written without spaces, as clients send bodies (json.dumps(separators=...),
 * JavaScript, curl): tj_walk's plain-integer run (tj_build.c) takes every element here; its
 * values, the shapes and the errors must be the general path's. A long row crosses the
 * builder's buffer growth. */
static void test_integer_fast_path_compact(void) {
    const char *body =
        "{\"instances\":[[0,-0,7,-5,123456789,1234567890,999999999,1e2,25.5,-3E1,0.5,"
        "100000000000,-2147483649,16777217],[1,2,3,4,5,6,7,8,9,10,11,12,13,14]]}";
    const float want[] = {0,   -0.0f, 7,   -5,   123456789, 1234567890,     999999999,
                          100, 25.5f, -30, 0.5f, 1e11f,     -2147483649.0f, 16777216.0f};
    kiln_tj_request r;
    CHECK_OK(kiln_tj_parse_tf(body, strlen(body), NULL, &r));
    CHECK(r.n_inputs == 1 && r.inputs[0].shape.ndim == 2 && r.inputs[0].shape.dims[0] == 2 &&
          r.inputs[0].shape.dims[1] == 14);
    if (r.n_inputs == 1 && kiln_shape_numel(&r.inputs[0].shape) == 28) {
        for (int i = 0; i < 14; i++)
            CHECK_MSG(memcmp(&((float *)r.inputs[0].data)[i], &want[i], 4) == 0, "value %d: %g", i,
                      ((float *)r.inputs[0].data)[i]);
        for (int i = 0; i < 14; i++) CHECK(((float *)r.inputs[0].data)[14 + i] == (float)(i + 1));
    }
    kiln_tj_request_free(&r);
    const char *bad[] = {"{\"instances\":[[1,01]]}", "{\"instances\":[[1,-]]}",
                         "{\"instances\":[[1,1.]]}", "{\"instances\":[[1,2,]]}",
                         "{\"instances\":[[0,00]]}", "{\"instances\":[[5,-0x]]}",
                         "{\"instances\":[[5,6}]}",  "{\"instances\":[[5,6"};
    for (int i = 0; i < 8; i++)
        CHECK_MSG(kiln_tj_parse_tf(bad[i], strlen(bad[i]), NULL, &r) == KILN_ERR_FORMAT, "%s",
                  bad[i]);
    const char *ragged = "{\"instances\":[[1,2],[3]]}";
    CHECK(kiln_tj_parse_tf(ragged, strlen(ragged), NULL, &r) == KILN_ERR_INVALID);
    CHECK(strstr(kiln_last_error(), "expected 2 values, got 1") != NULL);
    enum { N = 5000 };
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"instances\":[[");
    for (int i = 0; i < N; i++) kiln_sbuf_printf(&b, "%s%d", i ? "," : "", (i * 7919) % 511 - 255);
    kiln_sbuf_puts(&b, "]]}");
    CHECK_OK(kiln_tj_parse_tf(b.data, b.len, NULL, &r));
    int same = r.n_inputs == 1 && kiln_shape_numel(&r.inputs[0].shape) == N;
    for (int i = 0; same && i < N; i++)
        same = ((float *)r.inputs[0].data)[i] == (float)((i * 7919) % 511 - 255);
    CHECK(same);
    kiln_tj_request_free(&r);
    kiln_sbuf_free(&b);
}

/* js_skip_bracketed (the pre-scan of "instances" / "inputs") looks at 8 bytes at a time: every
 * structural byte at every offset mod 8, inside and outside strings (with escapes), must end the
 * skip exactly where a byte-by-byte scan ends it; a list cut short is an error. */
static void test_skip_bracketed(void) {
    const char *inner[] = {"1",      "[]",    "{}", "\"]\"", "\"a\\\"[\"", "[[1,2],{\"k\":[3]}]",
                           "\"}{\"", "-0.5e3"};
    int bad = 0;
    for (int pad = 0; pad < 24; pad++)
        for (int i = 0; i < 8; i++)
            for (int tail = 0; tail < 10; tail++) {
                char body[256];
                int n = snprintf(body, sizeof body, "[%*s%s%*s,%s]%*sX", pad, "", inner[i], tail,
                                 "", inner[(i + tail) % 8], pad % 9, "");
                js_cur c = {body, body, body + n};
                kiln_status st = js_skip_bracketed(&c);
                const char *want = strrchr(body, ']') + 1;
                if (st || c.p != want) bad++;
                js_cur cut = {body, body, want - 1}; /* the closing ']' cut off */
                if (js_skip_bracketed(&cut) != KILN_ERR_FORMAT) bad++;
            }
    CHECK_MSG(bad == 0, "%d skips ended in the wrong place", bad);
    /* a list cut short right after a run of 8 plain bytes: the scan must stop at the end of the
     * buffer (an exact-size heap copy, so ASan sees a read past it) */
    for (int n = 9; n <= 33; n++) {
        char *body = malloc((size_t)n);
        body[0] = '[';
        memset(body + 1, '1', (size_t)n - 1);
        js_cur c = {body, body, body + n};
        CHECK(js_skip_bracketed(&c) == KILN_ERR_FORMAT);
        free(body);
    }
}

/* Row-format output read back through the parser: values survive the round trip exactly. */
static void test_round_trip(void) {
    enum { R = 37, C = 11 };
    float v[R * C];
    for (int i = 0; i < R * C; i++) v[i] = (float)sin(i * 1.37) * powf(10.0f, (float)(i % 21 - 10));
    kiln_tj_output o = {"y", KILN_TJ_F32, kiln_shape_make(2, (int64_t[]){R, C}), v};
    kiln_sbuf b = KILN_SBUF_INIT;
    CHECK_OK(kiln_tj_write_tf_row(&b, &o, 1));
    CHECK(strncmp(b.data, "{\"predictions\":", 15) == 0);
    kiln_sbuf req = KILN_SBUF_INIT; /* the predictions sent back as instances */
    kiln_sbuf_printf(&req, "{\"instances\":%s", b.data + 15);
    kiln_tj_request r;
    CHECK_OK(kiln_tj_parse_tf(req.data, req.len, NULL, &r));
    kiln_sbuf_free(&req);
    CHECK(r.n_inputs == 1 && shape_is(&r.inputs[0], 2, (int64_t[]){R, C}));
    CHECK(r.n_inputs == 1 && memcmp(r.inputs[0].data, v, sizeof v) == 0);
    kiln_tj_request_free(&r);
    kiln_sbuf_free(&b);
}

/* A large body: linear time and no per-number allocation (a timing is printed, not asserted). */
static void test_large_body(void) {
    enum { N = 1 << 20 };
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"instances\": [");
    for (int i = 0; i < N / 256; i++) {
        kiln_sbuf_puts(&b, i ? ",[" : "[");
        for (int j = 0; j < 256; j++) {
            if (j) kiln_sbuf_putc(&b, ',');
            kiln_sbuf_f32(&b, (float)((i * 256 + j) % 1000) * 0.001f - 0.5f);
        }
        kiln_sbuf_putc(&b, ']');
    }
    kiln_sbuf_puts(&b, "]}");
    kiln_tj_request r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(kiln_tj_parse_tf(b.data, b.len, NULL, &r));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("  %.1f MB body, %d numbers: parsed in %.3f s (%.0f MB/s)\n", (double)b.len / 1e6, N, s,
           (double)b.len / 1e6 / s);
    CHECK(r.n_inputs == 1 && shape_is(&r.inputs[0], 2, (int64_t[]){N / 256, 256}));
    CHECK(r.n_inputs == 1 &&
          ((float *)r.inputs[0].data)[N - 1] == (float)((N - 1) % 1000) * 0.001f - 0.5f);
    kiln_tj_request_free(&r);
    kiln_sbuf_free(&b);
}

/* Any name: a type picked by the name's first byte. */
static kiln_status any_schema(void *ctx, const char *sig, const char *name, kiln_tj_type *type) {
    (void)ctx, (void)sig;
    *type = (kiln_tj_type)((unsigned char)name[0] % 4);
    return KILN_OK;
}

/* Mutated and truncated bodies: parsers must return (OK or an error), never crash or leak. */
static void test_fuzz(void) {
    static const char *seeds[] = {
        "{\"instances\": [[1, 2, 3], [4, 5, 6]], \"signature_name\": \"s\"}",
        "{\"instances\": [{\"x\": [1, 2], \"t\": {\"b64\": \"aGk=\"}}, {\"x\": [3, 4], \"t\": "
        "{\"b64\": \"\"}}]}",
        "{\"inputs\": {\"a\": [[1e3, -2.5e-3]], \"b\": \"caf\\u00e9\\ud83d\\ude00\"}}",
        "{\"id\": \"1\", \"inputs\": [{\"name\": \"x\", \"shape\": [2, 2], \"datatype\": "
        "\"INT32\", "
        "\"data\": [[1, 2], [3, 4]]}], \"outputs\": [{\"name\": \"y\"}]}",
        "{\"inputs\": [{\"name\": \"b\", \"shape\": [3], \"datatype\": \"BOOL\", \"data\": [true, "
        "false, true], \"parameters\": {\"a\": [null, {}]}}]}",
    };
    static const char alphabet[] = "{}[]\",:0123456789.eE+-tfnulrsaINb64\\u \n";
    uint64_t x = 0x243f6a8885a308d3ull;
    int ok = 0, err = 0;
    char buf[512];
    for (int it = 0; it < 30000; it++) {
        const char *seed = seeds[it % 5];
        size_t n = strlen(seed);
        memcpy(buf, seed, n);
        int edits = 1 + it % 4;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t pos = (size_t)(x >> 8) % n;
            switch ((x >> 3) % 4) {
            case 0:
                buf[pos] = alphabet[(x >> 40) % (sizeof alphabet - 1)];
                break;
            case 1:
                buf[pos] = (char)(x >> 48);
                break;
            case 2:
                n = pos + 1;
                break; /* truncate */
            default:
                if (n + 1 < sizeof buf) {
                    memmove(buf + pos + 1, buf + pos, n - pos);
                    buf[pos] = alphabet[(x >> 40) % (sizeof alphabet - 1)];
                    n++;
                }
            }
        }
        char *body = malloc(n); /* exactly n bytes, no terminator: ASan sees any overread */
        memcpy(body, buf, n);
        kiln_tj_request r;
        kiln_tj_schema any = {any_schema, NULL}, *schema = it % 3 == 2 ? &any : NULL;
        kiln_status st = (it & 1) ? kiln_tj_parse_v2(body, n, schema, &r)
                                  : kiln_tj_parse_tf(body, n, schema, &r);
        free(body);
        if (st == KILN_OK) {
            ok++;
            for (int i = 0; i < r.n_inputs; i++) /* shapes agree with the data */
                CHECK(r.inputs[i].type == KILN_TJ_BYTES ||
                      (size_t)kiln_shape_numel(&r.inputs[i].shape) *
                              (r.inputs[i].type == KILN_TJ_I64 ? 8 : 4) ==
                          r.inputs[i].data_bytes);
            kiln_tj_request_free(&r);
        } else {
            err++;
            CHECK(r.inputs == NULL && strlen(kiln_last_error()) > 0);
        }
    }
    printf("  fuzz: %d parsed, %d refused\n", ok, err);
    CHECK(ok > 100 && err > 100);
}

int main(void) {
    RUN(test_f32_shortest_examples);
    RUN(test_f32_shortest_against_reference);
    RUN(test_sbuf);
    RUN(test_json_numbers);
    RUN(test_tf_rows);
    RUN(test_tf_columns);
    RUN(test_schema_types);
    RUN(test_tf_errors);
    RUN(test_nonfinite);
    RUN(test_v2_requests);
    RUN(test_v2_binary);
    RUN(test_writers);
    RUN(test_integer_fast_path);
    RUN(test_integer_fast_path_compact);
    RUN(test_skip_bracketed);
    RUN(test_round_trip);
    RUN(test_large_body);
    RUN(test_fuzz);
    return kiln_test_summary();
}

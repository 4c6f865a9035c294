/* http_parse_fuzz.c — libFuzzer harness for the HTTP request parser (src/net/http_parse.c).
 * Not part of ctest (tests/test_http_parse.c runs the same properties on generated inputs and
 * keeps every crash found here as a regression case).
 *
 * Build and run by hand (from the repository root; clang 14 or later). The small limits let
 * short inputs reach the 414 / 431 / chunk-line paths:
 *   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *     -DHTTP_HEAD_MAX=512 -DHTTP_MAX_FIELDS=8 -DHTTP_CHUNK_LINE_MAX=64 \
 *     -Isrc -Iinclude tests/fuzz/http_parse_fuzz.c src/net/http_parse.c -o /tmp/http_fuzz
 *   mkdir -p /tmp/http_corpus && nice /tmp/http_fuzz /tmp/http_corpus -max_len=4096 \
 *     -max_total_time=600 -print_final_stats=1
 * (and once more without the -D flags, with the real limits). A crash leaves crash-<sha1> in
 * the current folder: add its bytes to test_fuzz_regressions in tests/test_http_parse.c.
 *
 * The first byte picks what the rest is fed to (each in a buffer of exactly its size, so that
 * AddressSanitizer sees any read past it):
 *   0: a request head (http_check_request_line, http_head_end, http_parse_head, the query);
 *   1: a chunk-size line;  2: a trailer field line;  3: a query string;
 *   4: a chunked body, whole and in pieces (http_chunked_feed);
 *   5: a stream of requests, whole and in pieces, through the server's framing loop
 *      (http_stream.h: http_head_feed, http_parse_head, http_parse_query, http_chunked_feed).
 * In 4 and 5 the next byte chooses the body limit and the pieces come from a generator seeded
 * by the input. Beyond "no crash, no out-of-bounds access, no undefined behaviour", it checks
 * that every rejection is a 4xx/5xx status with a message, that an accepted head is sound (a
 * token method, a path that starts with '/', field names that are tokens, values without
 * controls), and that the outcome is the same however the bytes are split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_stream.h"
#include "net/http_parse.h"

static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void check_reject(int rc, const char *msg) {
    if (rc == 0) return;
    if (rc < 400 || rc > 599 || !msg[0]) abort();
}

static void check_query(const char *q) {
    size_t n = strlen(q);
    char *mem = malloc(n + 1);
    http_arg args[64];
    int k = http_parse_query(q, mem, args, 64);
    if (k < -1 || k > 64) abort();
    for (int i = 0; i < k; i++)
        if (!args[i].name || strlen(args[i].name) > n) abort();
    free(mem);
}

static void check_head(const uint8_t *d, size_t n) {
    char msg[512];
    char *b = malloc(n + 1);
    memcpy(b, d, n);
    b[n] = 0;
    msg[0] = 0;
    int rc = http_check_request_line(b, n, msg, sizeof msg);
    check_reject(rc, msg);
    /* the end of the head, found in one look and found as the bytes come one by one */
    size_t scan = 0, end = http_head_end(b, n, &scan), scan2 = 0, end2 = 0;
    for (size_t k = 1; k <= n && !end2; k++) end2 = http_head_end(b, k, &scan2);
    if (end != end2 || end > n) abort();
    if (end) {
        char *h = malloc(end + 1);
        memcpy(h, d, end);
        h[end] = 0;
        http_head head;
        msg[0] = 0;
        rc = http_parse_head(h, end, &head, msg, sizeof msg);
        check_reject(rc, msg);
        if (!rc) {
            if (!head.method_name[0]) abort();
            for (const char *p = head.method_name; *p; p++)
                if (!is_tchar((unsigned char)*p)) abort();
            if (head.path[0] != '/' && !(head.asterisk && head.method == HTTP_M_OPTIONS)) abort();
            if (head.minor != 0 && head.minor != 1) abort();
            if (head.chunked && (head.minor != 1 || head.length)) abort();
            for (int i = 0; i < head.n_fields; i++) {
                const char *nm = head.fields[i].name, *v = head.fields[i].value;
                if (!nm[0]) abort();
                for (const char *p = nm; *p; p++)
                    if (!is_tchar((unsigned char)*p)) abort();
                for (const char *p = v; *p; p++)
                    if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) abort();
                size_t vl = strlen(v);
                if (vl && (v[0] == ' ' || v[0] == '\t' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                    abort();
            }
            (void)http_head_field(&head, "host");
            check_query(head.query);
        }
        free(h);
    }
    free(b);
}

static uint64_t next(uint64_t *x) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

/* Up to 16 cut points in (0, n), increasing, from a generator seeded by the input. */
static int make_cuts(const uint8_t *d, size_t n, size_t *cuts) {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) x = (x ^ d[i]) * 0x100000001b3ull;
    x |= 1;
    int k = 0;
    if (n < 2) return 0;
    size_t at = 0;
    int want = 1 + (int)(next(&x) % 16);
    while (k < want) {
        size_t step = 1 + (size_t)(next(&x) % (next(&x) % 2 ? 8 : n));
        if (at + step >= n) break;
        at += step;
        cuts[k++] = at;
    }
    return k;
}

static uint64_t pick_limit(uint8_t b) {
    static const uint64_t limits[] = {0, 1, 5, 100, 4095, 4096, 1u << 20, UINT64_MAX / 4};
    return limits[b % 8];
}

/* Mode 4: the body in one call sequence and in pieces: the same bytes, outcome and use. */
static void check_chunked(const uint8_t *d, size_t n, uint64_t max_body) {
    hs_text whole = {0}, cut = {0};
    size_t cuts[16];
    int n_cuts = make_cuts(d, n, cuts);
    for (int pass = 0; pass < 2; pass++) {
        hs_text *t = pass ? &cut : &whole;
        http_chunked ck = {0};
        size_t pos = 0, have = pass && n_cuts ? cuts[0] : n;
        int piece = 0;
        uint32_t sum = 2166136261u;
        uint64_t got = 0;
        for (;;) {
            char *w = hs_window((const char *)d, pos, have), msg[512] = "";
            const char *data;
            size_t used, dl;
            int rc =
                http_chunked_feed(&ck, w, have - pos, max_body, &used, &data, &dl, msg, sizeof msg);
            if (used > have - pos) abort();
            if (rc == HTTP_CK_OUT) {
                if (!dl || data < w || data + dl > w + (have - pos)) abort();
                sum = hs_fnv(sum, data, dl);
                got += dl;
            }
            free(w);
            pos += used;
            if (rc == HTTP_CK_OUT) continue;
            if (rc == HTTP_CK_MORE && have < n) {
                have = pass && ++piece < n_cuts ? cuts[piece] : n;
                continue;
            }
            if (rc != HTTP_CK_MORE && rc != HTTP_CK_END) check_reject(rc, msg);
            if (got > max_body) abort();
            hs_printf(t, "%d %s %llu %08x at %zu\n", rc, msg, (unsigned long long)got, sum,
                      rc == HTTP_CK_END ? pos : 0);
            break;
        }
    }
    if (strcmp(whole.data, cut.data)) abort();
    free(whole.data);
    free(cut.data);
}

/* Mode 5: a stream of requests through the server's framing loop, whole and in pieces. */
static void check_stream(const uint8_t *d, size_t n, uint64_t max_body) {
    hs_text whole = {0}, cut = {0};
    size_t cuts[16];
    int n_cuts = make_cuts(d, n, cuts);
    hs_run((const char *)d, n, NULL, 0, max_body, &whole);
    hs_run((const char *)d, n, cuts, n_cuts, max_body, &cut);
    if (whole.no_message || strcmp(whole.data, cut.data)) abort();
    free(whole.data);
    free(cut.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    int mode = data[0] % 6;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    char msg[512];
    msg[0] = 0;
    if (mode == 0) {
        check_head(d, n);
    } else if (mode == 1 || mode == 2) {
        char *line = malloc(n ? n : 1);
        memcpy(line, d, n);
        int rc;
        if (mode == 1) {
            uint64_t size_out = 12345;
            rc = http_parse_chunk_size(line, n, &size_out, msg, sizeof msg);
            if (rc && rc != 400 && rc != 413) abort();
        } else {
            rc = http_check_trailer_line(line, n, msg, sizeof msg);
        }
        check_reject(rc, msg);
        free(line);
    } else if (mode == 3) {
        char *q = malloc(n + 1);
        memcpy(q, d, n);
        q[n] = 0;
        check_query(q);
        free(q);
    } else if (n) {
        uint64_t max_body = pick_limit(d[0]);
        if (mode == 4)
            check_chunked(d + 1, n - 1, max_body);
        else
            check_stream(d + 1, n - 1, max_body);
    }
    return 0;
}

/* http_stream.h — the server's framing loop (src/net/http.c: step_head, begin_request,
 * step_body) over a byte stream, without sockets, for tests/test_http_parse.c and the fuzz
 * harness tests/fuzz/http_parse_fuzz.c (static functions: include it in one file only).
 *
 * hs_run feeds a stream to http_head_feed, http_parse_head, http_parse_query and
 * http_chunked_feed the way the server does, the bytes arriving in pieces, and writes down
 * what they decided: per request its head and body, or the error that ends the connection.
 * Each call sees only the bytes that have arrived, copied into a buffer of exactly their size,
 * so that a read past them is an AddressSanitizer error rather than a peek at bytes that have
 * not come yet. The property: the transcript is the same however the stream is cut. */
#ifndef KILN_TEST_HTTP_STREAM_H
#define KILN_TEST_HTTP_STREAM_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_parse.h"

typedef struct {
    char *data;
    size_t len, cap;
    int no_message; /* a rejection came without a message */
} hs_text;

static void hs_put(hs_text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *p = realloc(t->data, cap);
        if (!p) abort();
        t->data = p, t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = 0;
}

static void hs_printf(hs_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hs_printf(hs_text *t, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    hs_put(t, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* A string with its bytes escaped (controls and non-ASCII as \xNN). */
static void hs_str(hs_text *t, const char *s) {
    hs_put(t, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            hs_put(t, (const char *)p, 1);
        else
            hs_printf(t, "\\x%02x", *p);
    }
    hs_put(t, "\"", 1);
}

static uint32_t hs_fnv(uint32_t h, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static void hs_head(hs_text *t, const http_head *h) {
    hs_printf(t, "head %s ", h->method_name);
    hs_str(t, h->path);
    hs_put(t, " ?", 2);
    hs_str(t, h->query);
    hs_printf(t, " 1.%d%s%s%s%s%s len=%llu\n", h->minor, h->asterisk ? " *" : "",
              h->chunked ? " chunked" : "", h->close ? " close" : "",
              h->keep_alive_10 ? " keep-alive" : "", h->expect_continue ? " 100" : "",
              (unsigned long long)h->length);
    for (int i = 0; i < h->n_fields; i++) {
        hs_put(t, "  ", 2);
        hs_str(t, h->fields[i].name);
        hs_put(t, ": ", 2);
        hs_str(t, h->fields[i].value);
        hs_put(t, "\n", 1);
    }
    if (h->origin) hs_put(t, "  origin\n", 9);
}

/* The bytes that have arrived and are not consumed, in a buffer of exactly their size. */
static char *hs_window(const char *data, size_t from, size_t to) {
    char *w = malloc(to > from ? to - from : 1);
    if (!w) abort();
    if (to > from) memcpy(w, data + from, to - from);
    return w;
}

/* See the top of the file. cuts: n_cuts increasing offsets in (0, len). */
static void hs_run(const char *data, size_t len, const size_t *cuts, int n_cuts, uint64_t max_body,
                   hs_text *t) {
    size_t pos = 0, have = n_cuts ? cuts[0] : len;
    int piece = 0;
    char msg[512];
    for (;;) {
        /* the head */
        http_head_reader hr = {0};
        size_t end = 0;
        for (;;) {
            size_t skip = 0;
            int rc = 0;
            end = 0;
            if (have > pos) {
                char *w = hs_window(data, pos, have);
                msg[0] = 0;
                rc = http_head_feed(&hr, w, have - pos, &skip, &end, msg, sizeof msg);
                free(w);
                pos += skip;
            }
            if (rc) {
                hs_printf(t, "error %d %s\n", rc, msg);
                if (!msg[0]) t->no_message = 1;
                return;
            }
            if (end) break;
            if (have == len) {
                hs_put(t, pos == len ? "end\n" : "more\n", pos == len ? 4 : 5);
                return;
            }
            have = ++piece < n_cuts ? cuts[piece] : len;
        }
        char *head = malloc(end + 1);
        if (!head) abort();
        memcpy(head, data + pos, end);
        head[end] = 0;
        pos += end;
        http_head h;
        msg[0] = 0;
        int rc = http_parse_head(head, end, &h, msg, sizeof msg);
        if (rc) {
            hs_printf(t, "error %d %s\n", rc, msg);
            if (!msg[0]) t->no_message = 1;
            free(head);
            return;
        }
        hs_head(t, &h);
        int has_body = h.chunked || h.length > 0, stop = h.close;
        if (h.method == HTTP_M_OTHER) {
            hs_put(t, "405\n", 4);
            stop |= has_body;
            has_body = 0;
        } else if (h.length > max_body) {
            hs_put(t, "413\n", 4);
            stop = 1;
            has_body = 0;
        }
        /* the query, as dispatch reads it */
        size_t ql = strlen(h.query);
        char *argmem = malloc(ql + 1);
        http_arg args[64];
        if (!argmem) abort();
        int n_args = http_parse_query(h.query, argmem, args, 64);
        if (n_args < 0) hs_put(t, "  query with an encoded NUL\n", 28);
        for (int i = 0; i < n_args; i++) {
            hs_put(t, "  arg ", 6);
            hs_str(t, args[i].name);
            if (args[i].value) hs_put(t, "=", 1), hs_str(t, args[i].value);
            hs_put(t, "\n", 1);
        }
        free(argmem);
        free(head);
        if (has_body) { /* the body */
            uint64_t remaining = h.length, got = 0;
            uint32_t sum = 2166136261u;
            http_chunked ck = {0};
            for (;;) {
                int out = HTTP_CK_MORE;
                if (have > pos) {
                    char *w = hs_window(data, pos, have);
                    if (!h.chunked) {
                        size_t take = have - pos < remaining ? have - pos : (size_t)remaining;
                        sum = hs_fnv(sum, w, take);
                        got += take, pos += take, remaining -= take;
                        out = remaining ? HTTP_CK_MORE : HTTP_CK_END;
                    } else {
                        const char *d;
                        size_t used, n;
                        msg[0] = 0;
                        out = http_chunked_feed(&ck, w, have - pos, max_body, &used, &d, &n, msg,
                                                sizeof msg);
                        if (out == HTTP_CK_OUT) {
                            if (d < w || d + n > w + (have - pos) || used < n) abort();
                            sum = hs_fnv(sum, d, n);
                            got += n;
                        }
                        pos += used;
                    }
                    free(w);
                }
                if (out == HTTP_CK_OUT) continue;
                if (out == HTTP_CK_END) break;
                if (out != HTTP_CK_MORE) {
                    hs_printf(t, "body error %d %s (after %llu bytes)\n", out, msg,
                              (unsigned long long)got);
                    if (!msg[0]) t->no_message = 1;
                    return;
                }
                if (have == len) {
                    hs_put(t, "body more\n", 10);
                    return;
                }
                have = ++piece < n_cuts ? cuts[piece] : len;
            }
            if (got > max_body) abort();
            hs_printf(t, "body %llu %08x\n", (unsigned long long)got, sum);
        }
        if (stop) {
            hs_put(t, "close\n", 6);
            return;
        }
    }
}

#endif

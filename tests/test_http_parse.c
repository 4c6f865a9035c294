/* test_http_parse.c — the HTTP server against hostile input: regressions found by review and
 * fuzzing, then properties.
 *
 * Wire regressions (a server on 127.0.0.1): a lone CR before a request line, a chunked body
 * under a body limit below 4 KiB, the message of a malformed chunk size, chunk lines and trailer
 * sections over their limits, an encoded NUL in a query argument. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "kiln/http.h"
#include "kiln/sbuf.h"
#include "net/http_parse.h"

static void sleep_us(long us) {
    struct timespec t = {us / 1000000, (us % 1000000) * 1000L};
    nanosleep(&t, NULL);
}

/* ---- a test server: echoes what it parsed ---- */

static uint32_t fnv(const char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static void echo(void *ctx, const kiln_http_request *req, kiln_http_response *resp) {
    (void)ctx;
    const char *y = kiln_http_query_arg(req, "y"), *h = kiln_http_header(req, "x-test");
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_printf(&b, "{\"m\":\"%s\",\"p\":", req->method_name);
    kiln_sbuf_json_str(&b, req->path);
    kiln_sbuf_puts(&b, ",\"q\":");
    kiln_sbuf_json_str(&b, req->query);
    kiln_sbuf_puts(&b, ",\"y\":");
    kiln_sbuf_json_str(&b, y ? y : "-");
    kiln_sbuf_puts(&b, ",\"h\":");
    kiln_sbuf_json_str(&b, h ? h : "-");
    kiln_sbuf_printf(&b, ",\"len\":%zu,\"fnv\":%u}", req->body_len, fnv(req->body, req->body_len));
    kiln_http_body_sbuf(resp, &b);
}

static kiln_http_server *server_start(size_t max_body) {
    kiln_http_config cfg = {.threads = 2, .max_body_bytes = max_body};
    kiln_http_server *s = kiln_http_start(&cfg, echo, NULL);
    CHECK_MSG(s != NULL, "cannot start: %s", kiln_last_error());
    return s;
}

/* ---- a raw client ---- */

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Sends data in pieces (cuts: n_cuts increasing offsets inside it, a pause after each piece so
 * that the server reads them apart), half-closes, and reads until the server closes or 10 s
 * pass. What came back, NUL-terminated (*got bytes), in a buffer to free; *closed: the server
 * closed. */
static char *talk(int port, const char *data, size_t len, const size_t *cuts, int n_cuts,
                  size_t *got, int *closed) {
    kiln_sbuf out = KILN_SBUF_INIT;
    int fd = dial(port), eof = 0;
    if (fd >= 0) {
        size_t off = 0;
        for (int i = 0; i <= n_cuts; i++) {
            size_t to = i < n_cuts ? cuts[i] : len;
            while (off < to) {
                ssize_t w = send(fd, data + off, to - off, MSG_NOSIGNAL);
                if (w <= 0) break;
                off += (size_t)w;
            }
            if (off < to) break; /* the server closed early: what it said is read below */
            if (i < n_cuts) sleep_us(300);
        }
        shutdown(fd, SHUT_WR);
        for (;;) {
            char buf[16384];
            ssize_t k = recv(fd, buf, sizeof buf, 0);
            if (k == 0 || (k < 0 && errno == ECONNRESET)) eof = 1;
            if (k <= 0) break;
            kiln_sbuf_put(&out, buf, (size_t)k);
        }
        close(fd);
    }
    kiln_sbuf_putc(&out, 0);
    if (got) *got = out.len - 1;
    if (closed) *closed = eof;
    return kiln_sbuf_take(&out, NULL);
}

static char *talk_str(int port, const char *s) {
    return talk(port, s, strlen(s), NULL, 0, NULL, NULL);
}

static int starts(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- wire regressions ---- */

/* RFC 9112 §2.2: empty lines before a request line are ignored. A CR that arrived alone (its
 * LF in the next read) was taken for a malformed request line: 400. */
static void test_lone_cr_before_request(void) {
    kiln_http_server *s = server_start(0);
    if (!s) return;
    int port = kiln_http_port(s);
    const char *req = "\r\nGET /echo?y=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t cut = 1;
    char *out = talk(port, req, strlen(req), &cut, 1, NULL, NULL);
    CHECK_MSG(starts(out, "HTTP/1.1 200 ") && strstr(out, "\"y\":\"1\""), "%.200s", out);
    free(out);
    /* between pipelined requests too (a CRLF after a body, as old clients send) */
    const char *two = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab\r\n"
                      "GET /echo?y=2 HTTP/1.1\r\nHost: x\r\n\r\n";
    cut = (size_t)(strstr(two, "ab\r\n") - two) + 3;
    out = talk(port, two, strlen(two), &cut, 1, NULL, NULL);
    CHECK_MSG(starts(out, "HTTP/1.1 200 ") && strstr(out, "\"y\":\"2\""), "%.400s", out);
    free(out);
    kiln_http_stop(s, 0);
}

/* A chunked body under a max_body_bytes below 4096 (kiln serve --max_body_bytes 100): the first
 * reservation of 4 KiB never fitted the limit and the worker looped for ever. */
static void test_small_body_limit_chunked(void) {
    kiln_http_server *s = server_start(100);
    if (!s) return;
    int port = kiln_http_port(s);
    char *out = talk_str(port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               "\r\n5\r\nhello\r\n0\r\n\r\n");
    int answered = starts(out, "HTTP/1.1 200 ");
    CHECK_MSG(answered && strstr(out, "\"len\":5,"), "%.200s", out);
    free(out);
    if (!answered) return; /* the worker is stuck: stopping would wait for it for ever */
    out = talk_str(port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "64\r\n");
    CHECK_MSG(starts(out, "HTTP/1.1 200 ") == 0 && out[0] == 0, "100 bytes announced: %.200s",
              out); /* the limit is 100: the chunk fits, the body never came */
    free(out);
    out = talk_str(port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "65\r\n");
    CHECK_MSG(starts(out, "HTTP/1.1 413 "), "%.200s", out);
    free(out);
    kiln_http_stop(s, 0);
}

/* The 400 for a malformed chunk size quoted the line with %.32s, reading past its end: the bytes
 * after it (and past the buffer) went back to the client. */
static void test_chunk_size_message(void) {
    kiln_http_server *s = server_start(0);
    if (!s) return;
    char *out = talk_str(kiln_http_port(s), "POST /echo HTTP/1.1\r\nHost: x\r\n"
                                            "Transfer-Encoding: chunked\r\n\r\nzz\r\nSECRET");
    CHECK_MSG(starts(out, "HTTP/1.1 400 ") && strstr(out, "malformed chunk size 'zz'\"}") &&
                  !strstr(out, "SECRET"),
              "%.300s", out);
    free(out);
    kiln_http_stop(s, 0);
    char msg[256];
    uint64_t size;
    CHECK(http_parse_chunk_size("zzSECRET", 2, &size, msg, sizeof msg) == 400);
    CHECK_MSG(!strcmp(msg, "malformed chunk size 'zz'"), "%s", msg);
}

/* A chunk-size line over 4096 bytes was refused only while its end had not arrived: in one read
 * with its LF it was accepted. A trailer section was bounded only line by line: 100 lines of a
 * KB passed the 64 KiB of the head limit (and a line past it underflowed the limit). */
static void test_chunk_line_and_trailer_limits(void) {
    kiln_http_server *s = server_start(0);
    if (!s) return;
    int port = kiln_http_port(s);
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    for (int i = 0; i < 5000; i++) kiln_sbuf_putc(&b, 'e');
    kiln_sbuf_puts(&b, "\r\nX\r\n0\r\n\r\n");
    char *out = talk(port, b.data, b.len, NULL, 0, NULL, NULL);
    CHECK_MSG(starts(out, "HTTP/1.1 400 ") && strstr(out, "chunk size line is over 4096 bytes"),
              "%.300s", out);
    free(out);
    kiln_sbuf_clear(&b);
    kiln_sbuf_puts(&b, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "1\r\nX\r\n0\r\n");
    for (int i = 0; i < 100; i++) {
        kiln_sbuf_printf(&b, "X-T%d: ", i);
        for (int k = 0; k < 1000; k++) kiln_sbuf_putc(&b, 't');
        kiln_sbuf_puts(&b, "\r\n");
    }
    kiln_sbuf_puts(&b, "\r\n");
    out = talk(port, b.data, b.len, NULL, 0, NULL, NULL);
    CHECK_MSG(starts(out, "HTTP/1.1 431 ") && strstr(out, "trailer fields are over 65536 bytes"),
              "%.300s", out);
    free(out);
    kiln_sbuf_free(&b);
    kiln_http_stop(s, 0);
}

/* An encoded NUL in a query argument cut the argument short (y=a%00b read as "a"), as a NUL in
 * the path once did: 400 like the path. */
static void test_query_nul(void) {
    kiln_http_server *s = server_start(0);
    if (!s) return;
    char *out = talk_str(kiln_http_port(s), "GET /echo?y=a%00b HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_MSG(starts(out, "HTTP/1.1 400 ") && strstr(out, "encoded NUL"), "%.300s", out);
    free(out);
    kiln_http_stop(s, 0);
}

int main(void) {
    RUN(test_lone_cr_before_request);
    RUN(test_chunk_size_message);
    RUN(test_chunk_line_and_trailer_limits);
    RUN(test_query_nul);
    RUN(test_small_body_limit_chunked);
    return kiln_test_summary();
}

/* http_parse.h — the HTTP/1.1 request parser of the server (http.c): request heads and
 * chunked bodies, strict where RFC 9112 says a server MUST reject, with one message per
 * rejection. Private to src/net/.
 *
 * A head (request line, header fields and the blank line) is parsed in place in a buffer the
 * caller owns: the strings of http_head point into it. Errors are an HTTP status (400, 405 is
 * decided by the caller, 413, 414, 431, 417, 501, 505) and a message for {"error": ...}.
 *
 * The framing of a request as its bytes arrive is here too, in two readers that the server
 * feeds with whatever it has read: http_head_feed (empty lines before a request, the request
 * line checked as it comes, the end of the head, the head limits) and http_chunked_feed (chunk
 * sizes, data, trailer fields, their limits). Invariants: their answers depend only on the
 * bytes, never on how reads split them; their work is linear in the bytes; they never read
 * outside the buffer they are given (no NUL terminator needed). tests/test_http_parse.c checks
 * the first and last by feeding the same bytes whole and in random pieces, and
 * tests/fuzz/http_parse_fuzz.c under libFuzzer.
 */
#ifndef KILN_NET_HTTP_PARSE_H
#define KILN_NET_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* The limits; the fuzz harness builds the parser with smaller ones (-D) to reach them. */
#ifndef HTTP_HEAD_MAX
#define HTTP_HEAD_MAX (64 * 1024) /* request line + header fields + blank line */
#endif
#ifndef HTTP_MAX_FIELDS
#define HTTP_MAX_FIELDS 128
#endif
#ifndef HTTP_CHUNK_LINE_MAX
#define HTTP_CHUNK_LINE_MAX 4096 /* a chunk-size line with its extensions */
#endif

typedef struct {
    const char *name, *value; /* value without leading and trailing whitespace */
} http_field;

typedef struct {
    const char *name, *value; /* percent-decoded, '+' read as a space; value NULL: no '=' */
} http_arg;

typedef enum {
    HTTP_M_GET = 0,
    HTTP_M_HEAD,
    HTTP_M_POST,
    HTTP_M_OPTIONS,
    HTTP_M_DELETE, /* reach the handler only with kiln_http_config.rest_methods */
    HTTP_M_PATCH,
    HTTP_M_OTHER
} http_method;

typedef struct {
    http_method method;
    const char *method_name;
    int minor;         /* HTTP/1.minor; 2..9 are read as 1 */
    int asterisk;      /* the target was "*" (OPTIONS only) */
    const char *path;  /* percent-decoded: from the origin form or the absolute form */
    const char *query; /* raw, after '?'; "" when none */
    http_field fields[HTTP_MAX_FIELDS];
    int n_fields;
    /* framing */
    int chunked;         /* Transfer-Encoding: chunked */
    uint64_t length;     /* Content-Length (0 when absent, UINT64_MAX when past 2^63) */
    int close;           /* close the connection after the answer */
    int keep_alive_10;   /* HTTP/1.0 with Connection: keep-alive */
    int expect_continue; /* Expect: 100-continue */
    const char *origin;  /* Origin, NULL when absent */
} http_head;

/* Looks for the end of a head in buf[0..len) from *scan on (kept between calls as more bytes
 * arrive): the head's length with its blank line, or 0 when it is not complete yet. */
size_t http_head_end(const char *buf, size_t len, size_t *scan);

/* Reading a head as its bytes arrive (all zero before the first byte of each request). */
typedef struct {
    size_t scan;     /* http_head_end's */
    size_t line_pos; /* bytes of the request line checked (a CR at the end of what came: not) */
    size_t sp1, sp2; /* where the spaces after the method and after the target are; 0: not yet */
    int line_done;   /* the request line is complete and sound */
    size_t examined; /* request-line bytes looked at, over all calls (stays linear) */
} http_head_reader;

/* The bytes of the next request that have arrived so far, buf[0..len) (the same bytes and more
 * at each call): drops empty lines before the request line (*skip bytes, RFC 9112 §2.2; the
 * caller removes them and passes the rest next time), checks the request line as far as it has
 * come (a garbage line gets its answer before the rest of a head that may never come), and finds
 * the end of the head: *end is its length after the skipped bytes, 0 while it is incomplete.
 * Returns 0, or 400 / 505 (the request line), 414 (a request line over HTTP_HEAD_MAX), 431 (a
 * head over HTTP_HEAD_MAX) with msg. The outcome depends only on the bytes, never on how they
 * were split between calls; the work is linear in the bytes over all calls. */
int http_head_feed(http_head_reader *r, const char *buf, size_t len, size_t *skip, size_t *end,
                   char *msg, size_t msg_cap);

/* Checks the request line as far as it has arrived (buf[0..len), complete when a '\n' is in
 * it): 0 when nothing is wrong so far, else 400 or 505 with msg. */
int http_check_request_line(const char *buf, size_t len, char *msg, size_t msg_cap);

/* Parses a complete head, buf[0..len) NUL-terminated at len, in place. 0 or an HTTP status
 * with msg (400 for a head that is not complete); h->close is set whenever the framing of what
 * follows cannot be trusted. */
int http_parse_head(char *buf, size_t len, http_head *h, char *msg, size_t msg_cap);

/* The field's value (first of that name, case-insensitive), NULL when absent. */
const char *http_head_field(const http_head *h, const char *name);

/* Splits a raw query into decoded arguments, written into mem (at least strlen(query) + 1
 * bytes); at most cap arguments. Returns how many, or -1 when a name or value has an encoded
 * NUL (%00), which no C string can hold. */
int http_parse_query(const char *query, char *mem, http_arg *args, int cap);

/* A chunk-size line: line[0..len) without its line end. 0 with *size, or 400 / 413 with msg
 * (413: more hex digits than any body the server takes). */
int http_parse_chunk_size(const char *line, size_t len, uint64_t *size, char *msg, size_t msg_cap);

/* A header field line of a chunked body's trailer section (without its line end): 0 or 400. */
int http_check_trailer_line(const char *line, size_t len, char *msg, size_t msg_cap);

/* Decoding a chunked body as its bytes arrive (all zero before the body's first byte). */
typedef enum {
    HTTP_CK_SIZE = 0,
    HTTP_CK_DATA,
    HTTP_CK_DATA_END,
    HTTP_CK_TRAILER,
    HTTP_CK_DONE
} http_ck_state;
typedef struct {
    http_ck_state state;
    uint64_t remaining;   /* bytes of the current chunk still to come */
    uint64_t total;       /* body bytes so far */
    size_t trailer_bytes; /* of the trailer section so far, line ends included */
} http_chunked;

enum { HTTP_CK_MORE = 0, HTTP_CK_OUT = 1, HTTP_CK_END = 2 };

/* One step over in[0..len) (the bytes after those consumed so far): HTTP_CK_OUT with body bytes
 * *data[0..*data_len) (pointing into in), HTTP_CK_MORE when it needs more bytes, HTTP_CK_END
 * when the body and its trailer section are complete, or 400 (malformed framing, a chunk-size
 * line over HTTP_CHUNK_LINE_MAX), 413 (the body would pass max_body) or 431 (a trailer section
 * over HTTP_HEAD_MAX) with msg. *used: bytes of in consumed (the data included); the caller
 * drops them and calls again. The outcome depends only on the bytes, never on how they were
 * split between calls. */
int http_chunked_feed(http_chunked *c, const char *in, size_t len, uint64_t max_body, size_t *used,
                      const char **data, size_t *data_len, char *msg, size_t msg_cap);

#endif

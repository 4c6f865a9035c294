/* http_parse.h — the HTTP/1.1 request parser of the server (http.c): request heads and
 * chunked bodies, strict where RFC 9112 says a server MUST reject, with one message per
 * rejection. Private to src/net/.
 *
 * A head (request line, header fields and the blank line) is parsed in place in a buffer the
 * caller owns: the strings of http_head point into it. Errors are an HTTP status (400, 405 is
 * decided by the caller, 413, 414, 431, 417, 501, 505) and a message for {"error": ...}.
 */
#ifndef KILN_NET_HTTP_PARSE_H
#define KILN_NET_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_HEAD_MAX       (64 * 1024) /* request line + header fields + blank line */
#define HTTP_MAX_FIELDS     128
#define HTTP_CHUNK_LINE_MAX 4096 /* a chunk-size line with its extensions */

typedef struct {
    const char *name, *value; /* value without leading and trailing whitespace */
} http_field;

typedef struct {
    const char *name, *value; /* percent-decoded, '+' read as a space; value NULL: no '=' */
} http_arg;

typedef enum { HTTP_M_GET = 0, HTTP_M_HEAD, HTTP_M_POST, HTTP_M_OPTIONS, HTTP_M_OTHER } http_method;

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

/* Checks the request line as far as it has arrived (line[0..len), complete when a '\n' is in
 * it): 0 when nothing is wrong so far, else 400 or 505 with msg. Lets a garbage line get its
 * answer before the rest of a head that may never come. */
int http_check_request_line(const char *buf, size_t len, char *msg, size_t msg_cap);

/* Parses a complete head, buf[0..len) NUL-terminated at len, in place. 0 or an HTTP status
 * with msg; h->close is set whenever the framing of what follows cannot be trusted. */
int http_parse_head(char *buf, size_t len, http_head *h, char *msg, size_t msg_cap);

/* The field's value (first of that name, case-insensitive), NULL when absent. */
const char *http_head_field(const http_head *h, const char *name);

/* Splits a raw query into decoded arguments, written into mem (at least strlen(query) + 1
 * bytes); at most cap arguments. Returns how many. */
int http_parse_query(const char *query, char *mem, http_arg *args, int cap);

/* A chunk-size line: line[0..len) without its line end. 0 with *size, or 400 / 413 with msg
 * (413: more hex digits than any body the server takes). */
int http_parse_chunk_size(const char *line, size_t len, uint64_t *size, char *msg, size_t msg_cap);

/* A header field line of a chunked body's trailer section (without its line end): 0 or 400. */
int http_check_trailer_line(const char *line, size_t len, char *msg, size_t msg_cap);

#endif

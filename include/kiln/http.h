/* kiln/http.h — a small HTTP/1.1 server for `kiln serve` and `kiln board` (src/net/http.c).
 *
 * One handler sees every request, complete: kiln_http_start's fn is called once per request,
 * after the whole body has arrived, on one of the server's worker threads (each an epoll loop
 * over its own connections), so handlers run concurrently and must be thread-safe. The handler
 * fills a kiln_http_response; the server sends it with Content-Length set, and keeps the
 * connection open for the next request (HTTP/1.1 keep-alive, pipelined requests in order).
 *
 * What the server answers itself, without calling the handler. Every error body is
 * {"error": "<what was wrong>"} (application/json):
 *   - 400 for a request that breaks RFC 9112: a malformed request line, a control character
 *     (a NUL included) in it, a path with an encoded NUL (%00), a target that is neither a
 *     path nor an absolute http(s) URI, a malformed header field (whitespace before the colon,
 *     line folding, a bare CR), no Host or two in HTTP/1.1, Content-Length values that differ
 *     or are not numbers, chunked not last (or twice), Transfer-Encoding in HTTP/1.0, a
 *     malformed chunk or a chunk-size line over 4 KiB; the connection closes after the answer;
 *     also 400 (the connection stays) for a query argument with an encoded NUL;
 *   - 405 with Allow: GET, HEAD, POST, OPTIONS for any other method;
 *   - OPTIONS: 204 with Allow (and the CORS preflight headers, below); "OPTIONS *" too;
 *   - 413 for a body over max_body_bytes: at once when Content-Length says so, or when a chunk
 *     size takes the body over the limit (the body is never read; the connection closes after
 *     the answer, and what the client still sends is read and dropped for up to 2 s so that
 *     it reads the answer rather than a reset);
 *   - 414 for a request line over 64 KiB, 431 for header fields over 64 KiB (or over 128) and
 *     for a chunked body's trailer fields over 64 KiB;
 *   - 417 for an Expect other than 100-continue (which gets its 100 Continue);
 *   - 501 for a Transfer-Encoding other than chunked (gzip, ...);
 *   - 505 for an HTTP major version other than 1;
 *   - 503 when max_connections are open (the new connection is answered and closed);
 *   - 500 when memory for the request runs out.
 * Content-Length together with Transfer-Encoding: chunked is read as chunked and the
 * connection closes after the answer (RFC 9112 §6.1). An absolute-form target
 * ("GET http://host/v1/models/m") is served by its path (§3.2.2). A client that closes its
 * side with a request incomplete (part of the head or of the body) is closed at once; one
 * that sends nothing is closed after request_timeout_seconds, and one whose head has not come
 * whole within request_timeout_seconds of its first byte gets 408 and is closed (a byte now
 * and then keeps no connection for ever).
 * HEAD requests reach the handler as KILN_HTTP_HEAD; the response's headers (Content-Length
 * included) are sent without its body. A 204 or 304 answer has neither body nor length.
 *
 * CORS (cors_allowed_origins). NULL or "": no CORS headers (TF Serving's default: its
 * --rest_api_enable_cors_support is off). "*": every answer carries
 * Access-Control-Allow-Origin: * (what TF Serving sends when CORS is on). A list
 * ("https://a.example, http://localhost:8080"): an answer to a request whose Origin is in the
 * list carries Access-Control-Allow-Origin: <that origin>, and every answer Vary: Origin. A
 * preflight from an allowed origin (OPTIONS with Origin and Access-Control-Request-Method)
 * gets 204 with Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS,
 * Access-Control-Allow-Headers (the requested ones, else Content-Type) and
 * Access-Control-Max-Age: 600. Errors the server answers itself carry the same headers.
 *
 * Deferred responses. Each worker thread serves many connections, so a handler that blocks holds
 * up the other connections of its worker. A handler that waits (on a batching queue, on I/O)
 * should instead call kiln_http_defer(req) and return without filling the response; any thread
 * later calls kiln_http_resume(token, &resp) exactly once. Meanwhile the connection is parked and
 * the worker is free; req (path, query, body) stays valid until kiln_http_resume.
 *
 * Graceful stop. kiln_http_stop(server, drain_seconds): stop accepting (new connections are
 * refused at once, so clients fail over instead of waiting), let requests in flight (headers
 * received, response not yet sent) finish for up to drain_seconds (responses sent while
 * draining carry Connection: close), then answer deferred requests still waiting with 503
 * (allowing a second for those to go out), and shut down, closing idle and half-sent connections. A
 * handler still running at that point is waited for (handlers cannot be interrupted). Tokens stay
 * valid after stop: a late kiln_http_resume only releases the token.
 */
#ifndef KILN_HTTP_H
#define KILN_HTTP_H

#include <stddef.h>

#include "kiln/sbuf.h"
#include "kiln/status.h"

typedef struct kiln_http_server kiln_http_server;

typedef struct {
    const char *host;            /* address to bind; NULL = "127.0.0.1"; "0.0.0.0" or "::" = all */
    int port;                    /* 0 = any free port (see kiln_http_port) */
    int threads;                 /* worker threads; 0 = the number of CPUs */
    size_t max_body_bytes;       /* 0 = 64 MiB */
    int request_timeout_seconds; /* idle connections close after this, and a head must
                                    come whole within it (else 408); 0 = 30 */
    int max_connections;         /* 0 = 1024; never more than RLIMIT_NOFILE - 64 (half the
                                    limit below 256), so the process keeps descriptors */
    const char *cors_allowed_origins; /* NULL or "" = no CORS; "*"; or a comma-separated list
                                         of origins (scheme://host[:port]); see above */
    int rest_methods; /* 1: DELETE and PATCH requests reach the handler too (kiln board's MLflow
                         API); 0: they get 405 like any other method */
} kiln_http_config;

/* Checks a cors_allowed_origins value: KILN_OK, or KILN_ERR_INVALID naming the bad origin. */
kiln_status kiln_http_check_cors_origins(const char *list);

/* DELETE and PATCH only with kiln_http_config.rest_methods (else the server answers 405). */
typedef enum {
    KILN_HTTP_GET = 0,
    KILN_HTTP_HEAD,
    KILN_HTTP_POST,
    KILN_HTTP_DELETE,
    KILN_HTTP_PATCH
} kiln_http_method;

typedef struct kiln_http_request {
    kiln_http_method method;
    const char *method_name; /* "GET", "HEAD", "POST" */
    const char *path;        /* percent-decoded, without the query: "/v1/models/m:predict" */
    const char *query;       /* the raw query string after '?', "" when none */
    const char *body;        /* the complete body, NUL-terminated ("" when none) */
    size_t body_len;
    void *priv; /* the server's */
} kiln_http_request;

/* A request header (case-insensitive name) or query argument (decoded), NULL when absent. Only
 * inside the handler call: copy what a deferred request needs later. */
const char *kiln_http_header(const kiln_http_request *req, const char *name);
const char *kiln_http_query_arg(const kiln_http_request *req, const char *key);

#define KILN_HTTP_MAX_HEADERS 8

typedef struct {
    int status;               /* 200 unless set */
    const char *content_type; /* "application/json" unless set; must outlive the response
                                 (a string literal) */
    const char *body;         /* NULL = empty */
    size_t body_len;
    int body_owned; /* 1: body was malloc'd and the server frees it */
    /* headers added with kiln_http_add_header: "name\0value\0" pairs (no pointers, so the
     * struct may be copied) */
    int n_headers;
    size_t header_used;
    char header_buf[512];
} kiln_http_response;

/* Sets the body: a string the server must not free (literal, static), or a malloc'd buffer
 * (from kiln_sbuf_take) it frees. Either frees a previously set owned body. */
void kiln_http_body_static(kiln_http_response *resp, const char *s);
void kiln_http_body_owned(kiln_http_response *resp, char *s, size_t len);
/* Takes b's contents as the body (b is left empty); a buffer whose allocation failed gives
 * 500 {"error": "out of memory"} instead. */
void kiln_http_body_sbuf(kiln_http_response *resp, kiln_sbuf *b);
/* Adds a header (copied). KILN_ERR_INVALID for CR/LF in either string, a full table or
 * buffer. Content-Type, Content-Length, Connection, Transfer-Encoding and Date are the
 * server's. */
kiln_status kiln_http_add_header(kiln_http_response *resp, const char *name, const char *value);
/* status and body {"error": "<message>"}; the message is formatted like printf. */
void kiln_http_json_error(kiln_http_response *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef void (*kiln_http_handler)(void *ctx, const kiln_http_request *req,
                                  kiln_http_response *resp);

/* Binds, listens and starts the workers. NULL (with message) when the address cannot be bound,
 * cors_allowed_origins is not valid or a worker cannot start. */
kiln_http_server *kiln_http_start(const kiln_http_config *c, kiln_http_handler fn, void *ctx);
/* The port bound (useful with port 0). */
int kiln_http_port(const kiln_http_server *s);
/* Requests whose headers have arrived and that are not finished (deferred ones included). */
int kiln_http_in_flight(kiln_http_server *s);
/* See the top of this file. Frees the server. */
void kiln_http_stop(kiln_http_server *s, double drain_seconds);

typedef struct kiln_http_deferred kiln_http_deferred;
/* Parks the request (inside the handler only); the handler returns without a response. */
kiln_http_deferred *kiln_http_defer(const kiln_http_request *req);
/* Sends resp (its owned body passes to the server) and releases the token. Any thread, once. */
void kiln_http_resume(kiln_http_deferred *d, kiln_http_response *resp);

#endif

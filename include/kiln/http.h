/* kiln/http.h — a small HTTP/1.1 server for `kiln serve`, on libmicrohttpd.
 *
 * One handler sees every request, complete: kiln_http_start's fn is called once per request,
 * after the whole body has arrived, on one of the server's worker threads (a libmicrohttpd
 * thread pool, epoll where available), so handlers run concurrently and must be thread-safe.
 * The handler fills a kiln_http_response; the server sends it with Content-Length set, and
 * keeps the connection open for the next request (HTTP/1.1 keep-alive).
 *
 * What the server answers itself, without calling the handler:
 *   - 405 {"error": ...} with Allow: GET, HEAD, POST for any other method;
 *   - 413 {"error": ...} for a body over max_body_bytes: at once when Content-Length says so
 *     (the body is never read and the connection closes after the answer; a client that sends
 *     the body without waiting for "100 Continue" may then see the connection reset before it
 *     reads the answer, as with most servers), else (chunked) once the whole body has passed,
 *     read and dropped past the limit, never stored;
 *   - 500 {"error": ...} when memory for the request runs out;
 *   - malformed requests and oversized headers (over 64 KiB together) are libmicrohttpd's:
 *     400, 413, 431 or a closed connection.
 * HEAD requests reach the handler as KILN_HTTP_HEAD; the response's headers (Content-Length
 * included) are sent without its body.
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
    int request_timeout_seconds; /* idle connections close after this; 0 = 30 */
    int max_connections;         /* 0 = 1024 */
} kiln_http_config;

typedef enum { KILN_HTTP_GET = 0, KILN_HTTP_HEAD, KILN_HTTP_POST } kiln_http_method;

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
 * buffer. Content-Type and Content-Length are the server's. */
kiln_status kiln_http_add_header(kiln_http_response *resp, const char *name, const char *value);
/* status and body {"error": "<message>"}; the message is formatted like printf. */
void kiln_http_json_error(kiln_http_response *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef void (*kiln_http_handler)(void *ctx, const kiln_http_request *req,
                                  kiln_http_response *resp);

/* Binds, listens and starts the workers. NULL (with message) when the address cannot be bound
 * or libmicrohttpd refuses to start. */
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

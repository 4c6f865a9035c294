/* kiln/web.h — HTTP(S) for the federated server and client (src/net/web_server.c, web_fetch.c).
 *
 * The server is libmicrohttpd with GnuTLS: plain HTTP, or HTTPS when a certificate and key are
 * given, and then optionally client certificates checked against a CA (the request says whether
 * the peer presented one that verified). Unlike kiln/http.h's server (kiln serve's, which has
 * no TLS), it is meant for a few clients that exchange large binary bodies: the whole body is
 * collected (up to max_body_bytes, else 413) before the handler runs, on one of MHD's threads
 * (handlers run concurrently and must be thread-safe).
 *
 * The client is one libcurl request per call (HTTP or HTTPS, with an optional CA file, client
 * certificate and a bearer token).
 */
#ifndef KILN_WEB_H
#define KILN_WEB_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

typedef struct {
    const char *host;      /* NULL: 127.0.0.1; "0.0.0.0": all */
    int port;              /* 0: any free port (kiln_web_port) */
    int threads;           /* 0: 4 */
    size_t max_body_bytes; /* 0: 512 MiB */
    int timeout_seconds;   /* idle connections close after this; 0: 120 */
    const char *cert_pem;  /* PEM text: HTTPS when cert and key are both set */
    const char *key_pem;
    const char *client_ca_pem; /* PEM text: ask clients for a certificate signed by this CA */
} kiln_web_config;

typedef struct {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* without the query */
    const char *body;   /* the whole body ("" when none) */
    size_t body_len;
    int client_cert_ok; /* 1: the client's certificate verified against client_ca_pem */
    void *priv;         /* the server's */
} kiln_web_request;

/* A request header (case-insensitive) or query argument; NULL when absent. */
const char *kiln_web_header(const kiln_web_request *r, const char *name);
const char *kiln_web_arg(const kiln_web_request *r, const char *key);

typedef struct {
    int status;               /* 200 unless set */
    const char *content_type; /* "application/json" unless set (a literal) */
    char *body;               /* malloc'd, freed by the server; NULL: empty */
    size_t body_len;
    const char *retry_after; /* a Retry-After value (a literal) or NULL */
} kiln_web_response;

/* status and body {"error": "<message>"}. */
void kiln_web_error(kiln_web_response *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A JSON body (copied). */
void kiln_web_json(kiln_web_response *r, int status, const char *json);

typedef void (*kiln_web_handler)(void *ctx, const kiln_web_request *req, kiln_web_response *resp);

typedef struct kiln_web_server kiln_web_server;
/* NULL (with kiln_last_error) when the port cannot be bound or the TLS material is not valid. */
kiln_web_server *kiln_web_start(const kiln_web_config *c, kiln_web_handler fn, void *ctx);
int kiln_web_port(const kiln_web_server *s);
void kiln_web_stop(kiln_web_server *s); /* NULL is a no-op */

typedef struct {
    const char *token;     /* "Authorization: Bearer <token>" when set */
    const char *ca_file;   /* PEM CA to verify the server with (HTTPS); NULL: the system's */
    const char *cert_file; /* client certificate and key (PEM) */
    const char *key_file;
    double timeout_seconds; /* 0: 600 */
} kiln_fetch_opts;

/* One request: body NULL for GET. KILN_OK whenever an answer came (any status): *status, and
 * *resp (malloc'd, NUL-terminated; free()) with its length. KILN_ERR_IO with curl's reason when
 * none came. */
kiln_status kiln_web_fetch(const kiln_fetch_opts *o, const char *method, const char *url,
                           const void *body, size_t len, int *status, char **resp,
                           size_t *resp_len);

/* Keyed pseudo-random 64-bit words for secure aggregation's masks (src/net/web_crypto.c,
 * GnuTLS): out[i] for i < n is word i of HMAC-SHA256(key, label || block) over blocks 0, 1, ...
 * (4 words per block, little-endian). */
kiln_status kiln_web_prf_u64(const void *key, size_t key_len, const char *label, uint64_t *out,
                             size_t n);

#endif

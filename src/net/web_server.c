/* web_server.c — HTTP(S) server on libmicrohttpd + GnuTLS for the federated server (kiln/web.h).
 *
 * Design. MHD runs its own threads (a pool of `threads`, each polling its connections). The
 * access handler is called several times per request: first with no connection state (we make
 * a `conn` that collects the body), then once per chunk of body (appended, up to
 * max_body_bytes: beyond it the request is answered 413 without calling the handler), then
 * once with nothing more to read: only then does the user's handler run, on that MHD thread,
 * and its response is queued. The conn is freed by the completion callback, whatever happened.
 *
 * TLS. With cert_pem and key_pem the daemon speaks only HTTPS (MHD_USE_TLS); with client_ca_pem
 * MHD asks every client for a certificate (GnuTLS's "request", not "require"), and each request
 * says whether the peer's certificate verified against that CA (gnutls_certificate_verify_peers2
 * on the connection's session): the application refuses what it must (401/403).
 */
#include <gnutls/gnutls.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/sbuf.h"
#include "kiln/web.h"

struct kiln_web_server {
    struct MHD_Daemon *d;
    kiln_web_handler fn;
    void *ctx;
    size_t max_body;
    int tls_client;
    int port;
};

typedef struct {
    kiln_sbuf body;
    int too_big;
    struct MHD_Connection *c;
} conn;

const char *kiln_web_header(const kiln_web_request *r, const char *name) {
    return MHD_lookup_connection_value(((conn *)r->priv)->c, MHD_HEADER_KIND, name);
}

const char *kiln_web_arg(const kiln_web_request *r, const char *key) {
    return MHD_lookup_connection_value(((conn *)r->priv)->c, MHD_GET_ARGUMENT_KIND, key);
}

void kiln_web_json(kiln_web_response *r, int status, const char *json) {
    free(r->body);
    r->status = status;
    r->content_type = "application/json";
    r->body_len = strlen(json);
    r->body = malloc(r->body_len + 1);
    if (r->body)
        memcpy(r->body, json, r->body_len + 1);
    else
        r->body_len = 0;
}

void kiln_web_error(kiln_web_response *r, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"error\": ");
    kiln_sbuf_json_str(&b, msg);
    kiln_sbuf_puts(&b, "}");
    kiln_web_json(r, status, b.data ? b.data : "{\"error\": \"out of memory\"}");
    kiln_sbuf_free(&b);
}

static int peer_verified(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session) return 0;
    gnutls_session_t s = (gnutls_session_t)ci->tls_session;
    unsigned n = 0;
    if (!gnutls_certificate_get_peers(s, &n) || n == 0) return 0;
    unsigned status = 0;
    return gnutls_certificate_verify_peers2(s, &status) == 0 && status == 0;
}

static enum MHD_Result queue(struct MHD_Connection *c, kiln_web_response *r) {
    struct MHD_Response *mr =
        MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (char *)"",
                                        r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!mr) {
        free(r->body);
        return MHD_NO;
    }
    MHD_add_response_header(mr, "Content-Type",
                            r->content_type ? r->content_type : "application/json");
    if (r->retry_after) MHD_add_response_header(mr, "Retry-After", r->retry_after);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)(r->status ? r->status : 200), mr);
    MHD_destroy_response(mr);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state) {
    (void)version;
    kiln_web_server *s = cls;
    conn *k = *state;
    if (!k) { /* the head has come: make the request's state */
        if (!(k = calloc(1, sizeof *k))) return MHD_NO;
        k->c = c;
        *state = k;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (!k->too_big && k->body.len + *upload_size > s->max_body) k->too_big = 1;
        if (!k->too_big) kiln_sbuf_put(&k->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    kiln_web_response r = {.status = 200};
    if (k->too_big) {
        kiln_web_error(&r, 413, "the body is over %zu bytes", s->max_body);
        return queue(c, &r);
    }
    if (k->body.failed) {
        kiln_web_error(&r, 500, "out of memory for the body");
        return queue(c, &r);
    }
    kiln_web_request q = {.method = method,
                          .path = url,
                          .body = k->body.data ? k->body.data : "",
                          .body_len = k->body.len,
                          .priv = k};
    q.client_cert_ok = s->tls_client && peer_verified(c);
    s->fn(s->ctx, &q, &r);
    return queue(c, &r);
}

static void on_done(void *cls, struct MHD_Connection *c, void **state,
                    enum MHD_RequestTerminationCode why) {
    (void)cls, (void)c, (void)why;
    conn *k = *state;
    if (!k) return;
    kiln_sbuf_free(&k->body);
    free(k);
    *state = NULL;
}

kiln_web_server *kiln_web_start(const kiln_web_config *c, kiln_web_handler fn, void *ctx) {
    int tls = c->cert_pem && c->key_pem;
    if ((c->cert_pem || c->key_pem) && !tls) {
        kiln_error(KILN_ERR_INVALID, "TLS needs both a certificate and its key");
        return NULL;
    }
    if (c->client_ca_pem && !tls) {
        kiln_error(KILN_ERR_INVALID, "client certificates need TLS (a certificate and key)");
        return NULL;
    }
    if (tls && !MHD_is_feature_supported(MHD_FEATURE_TLS)) {
        kiln_error(KILN_ERR_INVALID, "this libmicrohttpd was built without TLS");
        return NULL;
    }
    kiln_web_server *s = calloc(1, sizeof *s);
    if (!s) {
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->fn = fn, s->ctx = ctx;
    s->max_body = c->max_body_bytes ? c->max_body_bytes : (size_t)512 << 20;
    s->tls_client = c->client_ca_pem != NULL;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    const char *host = c->host ? c->host : "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        kiln_error(KILN_ERR_INVALID, "host '%s': not an IPv4 address", host);
        free(s);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (tls) flags |= MHD_USE_TLS;
    struct MHD_OptionItem ops[8];
    int n = 0;
    ops[n++] =
        (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, c->threads > 0 ? c->threads : 4, NULL};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                       c->timeout_seconds > 0 ? c->timeout_seconds : 120, NULL};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &addr};
    if (tls) {
        ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)c->cert_pem};
        ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)c->key_pem};
        if (c->client_ca_pem)
            ops[n++] =
                (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, (void *)c->client_ca_pem};
    }
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    s->d = MHD_start_daemon(flags, (uint16_t)c->port, NULL, NULL, on_request, s, MHD_OPTION_ARRAY,
                            ops, MHD_OPTION_NOTIFY_COMPLETED, on_done, s, MHD_OPTION_END);
    if (!s->d) {
        kiln_error(KILN_ERR_IO,
                   "cannot start the %s server on %s:%d (port in use, or a bad "
                   "certificate or key)",
                   tls ? "HTTPS" : "HTTP", host, c->port);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : c->port;
    return s;
}

int kiln_web_port(const kiln_web_server *s) {
    return s->port;
}

void kiln_web_stop(kiln_web_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    free(s);
}

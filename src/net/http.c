/* src/net/ — the network plumbing the applications share and no model knows about:
 * the HTTP server on libmicrohttpd (http.c) and the REST client on libcurl (client.c), the
 * growing string buffer with JSON escaping and shortest float formatting (sbuf.c, fmt_f32.c), a
 * pull JSON scanner (json_scan.c) and the Prometheus registry (prom.c). Only this folder
 * includes libmicrohttpd and libcurl. Layers: docs/architecture.md.
 *
 * http.c — the HTTP server on libmicrohttpd (behaviour in kiln/http.h).
 *
 * One rq per request, made by the URI log callback (the first callback MHD makes for a
 * request, which also gives the raw query string) and freed when its last reference goes:
 * the connection's, dropped by the completion callback, and a deferred token's, dropped by
 * kiln_http_resume. The body is collected across MHD's upload callbacks into one buffer sized
 * from Content-Length (else doubling), never past max_body_bytes + 1.
 *
 * Deferral and stop, the delicate part. MHD demands that no connection be suspended when
 * MHD_stop_daemon runs, and that MHD_resume_connection only be called on suspended ones. So:
 *   - kiln_http_defer suspends first (it runs inside the access handler, the only place MHD
 *     allows that), then, under the server's mutex, either registers the request as DEFERRED
 *     or, when the server is stopping, marks it RESUMED with a 503 and resumes it at once;
 *   - whoever moves a request from DEFERRED to RESUMED under the mutex (kiln_http_resume, or
 *     kiln_http_stop giving up on it) stores the response and calls MHD_resume_connection,
 *     counted in `resuming` from inside the mutex until the call returns;
 *   - kiln_http_stop sets `stopping`, resumes every DEFERRED request with a 503, waits for
 *     `resuming` to reach 0, and only then stops MHD. A defer racing with that runs on an MHD
 *     worker thread, which MHD_stop_daemon joins before it inspects connections.
 * MHD functions are never called with the mutex held. The server itself is reference-counted
 * (its owner plus one per live token), so a token resumed after stop still finds the mutex.
 */
#include "kiln/http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kiln/sbuf.h"

#define HTTP_HEADER_MEMORY (64 * 1024) /* per connection: request line + headers must fit */

typedef enum { RQ_READING = 0, RQ_DEFERRED, RQ_RESUMED, RQ_ANSWERED } rq_phase;

typedef struct rq {
    kiln_http_server *srv;
    struct MHD_Connection *conn;
    kiln_http_request req;
    char *path, *query; /* copies: MHD's strings die with the connection */
    char *body;         /* [cap], NUL-terminated at len */
    size_t len, cap;
    int started, too_large, oom;
    int deferred_now;           /* the handler called kiln_http_defer (its thread only) */
    rq_phase phase;             /* under srv->mu from RQ_DEFERRED on */
    kiln_http_response pending; /* the answer of a resumed request */
    atomic_int refs;            /* the connection's, plus a deferred token's */
    struct rq *prev, *next;     /* srv->deferred, while DEFERRED */
} rq;

struct kiln_http_server {
    struct MHD_Daemon *d;
    int listen_fd, port;
    size_t max_body;
    kiln_http_handler fn;
    void *ctx;
    pthread_mutex_t mu;
    rq *deferred;         /* parked requests (under mu) */
    int stopping;         /* no more parking (under mu) */
    atomic_int draining;  /* answers carry Connection: close */
    atomic_int in_flight; /* requests with their headers in, not yet completed */
    atomic_int resuming;  /* MHD_resume_connection calls under way */
    atomic_int refs;      /* the owner's, plus one per live token */
};

/* ---- responses ---- */

static void resp_init(kiln_http_response *r) {
    memset(r, 0, offsetof(kiln_http_response, header_buf));
    r->status = 200;
    r->content_type = "application/json";
}

static void resp_drop_body(kiln_http_response *r) {
    if (r->body_owned) free((char *)r->body);
    r->body = NULL, r->body_len = 0, r->body_owned = 0;
}

void kiln_http_body_static(kiln_http_response *r, const char *s) {
    resp_drop_body(r);
    r->body = s, r->body_len = s ? strlen(s) : 0;
}

void kiln_http_body_owned(kiln_http_response *r, char *s, size_t len) {
    resp_drop_body(r);
    r->body = s, r->body_len = s ? len : 0, r->body_owned = s != NULL;
}

void kiln_http_body_sbuf(kiln_http_response *r, kiln_sbuf *b) {
    size_t len;
    char *s = kiln_sbuf_take(b, &len);
    if (s)
        kiln_http_body_owned(r, s, len);
    else
        kiln_http_json_error(r, 500, "out of memory writing the response");
}

kiln_status kiln_http_add_header(kiln_http_response *r, const char *name, const char *value) {
    size_t nl = strlen(name), vl = strlen(value);
    if (!nl || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return kiln_error(KILN_ERR_INVALID, "http: header '%.64s' has a bad name or value", name);
    if (!strcasecmp(name, "Content-Type") || !strcasecmp(name, "Content-Length"))
        return kiln_error(KILN_ERR_INVALID, "http: %s is set by the server (content_type, body)",
                          name);
    if (r->n_headers == KILN_HTTP_MAX_HEADERS ||
        nl + vl + 2 > sizeof r->header_buf - r->header_used)
        return kiln_error(KILN_ERR_INVALID, "http: too many response headers");
    char *p = r->header_buf + r->header_used;
    memcpy(p, name, nl + 1);
    memcpy(p + nl + 1, value, vl + 1);
    r->n_headers++;
    r->header_used += nl + vl + 2;
    return KILN_OK;
}

void kiln_http_json_error(kiln_http_response *r, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&b, "{\"error\": ");
    kiln_sbuf_json_str(&b, msg);
    kiln_sbuf_putc(&b, '}');
    size_t len;
    char *body = kiln_sbuf_take(&b, &len);
    r->status = status;
    r->content_type = "application/json";
    if (body)
        kiln_http_body_owned(r, body, len);
    else
        kiln_http_body_static(r, "{\"error\": \"out of memory\"}");
}

/* Queues r on conn; the response's owned body passes to MHD (or is freed). */
static enum MHD_Result send_response(kiln_http_server *srv, struct MHD_Connection *conn,
                                     kiln_http_response *r) {
    struct MHD_Response *m =
        r->body_owned
            ? MHD_create_response_from_buffer(r->body_len, (void *)r->body, MHD_RESPMEM_MUST_FREE)
            : MHD_create_response_from_buffer(r->body_len, (void *)(r->body ? r->body : ""),
                                              MHD_RESPMEM_PERSISTENT);
    if (!m) {
        resp_drop_body(r);
        return MHD_NO;
    }
    r->body_owned = 0; /* MHD's now */
    MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/json");
    const char *h = r->header_buf;
    for (int i = 0; i < r->n_headers; i++) {
        const char *v = h + strlen(h) + 1;
        MHD_add_response_header(m, h, v);
        h = v + strlen(v) + 1;
    }
    if (atomic_load(&srv->draining))
        MHD_add_response_header(m, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, m);
    MHD_destroy_response(m);
    return ret;
}

static enum MHD_Result send_error(kiln_http_server *srv, struct MHD_Connection *conn, int status,
                                  const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result send_error(kiln_http_server *srv, struct MHD_Connection *conn, int status,
                                  const char *allow, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_http_response r;
    resp_init(&r);
    kiln_http_json_error(&r, status, "%s", msg);
    if (allow) kiln_http_add_header(&r, MHD_HTTP_HEADER_ALLOW, allow);
    return send_response(srv, conn, &r);
}

/* ---- request lifetime ---- */

static void server_release(kiln_http_server *s) {
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void rq_release(rq *r) {
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    resp_drop_body(&r->pending);
    free(r->path);
    free(r->query);
    free(r->body);
    free(r);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    kiln_http_server *srv = cls;
    rq *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    const char *q = strchr(uri, '?');
    r->query = strdup(q ? q + 1 : "");
    if (!r->query) {
        free(r);
        return NULL;
    }
    r->srv = srv;
    r->conn = conn;
    atomic_init(&r->refs, 1);
    resp_init(&r->pending);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    kiln_http_server *srv = cls;
    rq *r = *con_cls;
    (void)conn, (void)toe;
    if (!r) return;
    *con_cls = NULL;
    pthread_mutex_lock(&srv->mu); /* a parked request whose connection died: unlist it */
    if (r->phase == RQ_DEFERRED) {
        r->phase = RQ_ANSWERED;
        if (r->prev)
            r->prev->next = r->next;
        else
            srv->deferred = r->next;
        if (r->next) r->next->prev = r->prev;
    }
    pthread_mutex_unlock(&srv->mu);
    if (r->started) atomic_fetch_sub(&srv->in_flight, 1);
    rq_release(r);
}

/* Appends upload data, bounded by max_body (past it, data is dropped and too_large set). */
static void rq_append(rq *r, const char *data, size_t n, size_t max) {
    if (r->too_large || r->oom) return;
    if (n > max - r->len) {
        r->too_large = 1;
        free(r->body);
        r->body = NULL, r->len = r->cap = 0;
        return;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1) cap = cap > max / 2 ? max + 1 : cap * 2;
        char *p = realloc(r->body, cap);
        if (!p) {
            r->oom = 1;
            return;
        }
        r->body = p, r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    kiln_http_server *srv = cls;
    rq *r = *con_cls;
    (void)version;
    if (!r) return send_error(srv, conn, 500, NULL, "out of memory");

    if (!r->started) { /* headers are in: check what can be checked before the body */
        r->started = 1;
        atomic_fetch_add(&srv->in_flight, 1);
        kiln_http_method m;
        if (!strcmp(method, MHD_HTTP_METHOD_GET))
            m = KILN_HTTP_GET;
        else if (!strcmp(method, MHD_HTTP_METHOD_HEAD))
            m = KILN_HTTP_HEAD;
        else if (!strcmp(method, MHD_HTTP_METHOD_POST))
            m = KILN_HTTP_POST;
        else
            return send_error(srv, conn, 405, "GET, HEAD, POST", "method %.32s is not allowed",
                              method);
        static const char *names[] = {"GET", "HEAD", "POST"};
        r->req.method = m;
        r->req.method_name = names[m];
        if (!(r->path = strdup(url))) return send_error(srv, conn, 500, NULL, "out of memory");
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (!errno && end != cl && n > srv->max_body)
                return send_error(srv, conn, 413, NULL,
                                  "request body is %llu bytes; the limit is %zu", n, srv->max_body);
            /* room for what was announced, up to 1 MiB until the bytes actually come */
            size_t want = !errno && end != cl ? (size_t)n + 1 : 0;
            if (want > ((size_t)1 << 20)) want = (size_t)1 << 20;
            if (want > 1) {
                if (!(r->body = malloc(want)))
                    return send_error(srv, conn, 500, NULL, "out of memory for the body");
                r->cap = want, r->body[0] = 0;
            }
        }
        return MHD_YES;
    }

    if (*upload_size) {
        rq_append(r, upload, *upload_size, srv->max_body);
        *upload_size = 0;
        return MHD_YES;
    }

    if (r->deferred_now) { /* called again after a resume: the answer is ready */
        pthread_mutex_lock(&srv->mu);
        int ready = r->phase == RQ_RESUMED;
        kiln_http_response resp = r->pending;
        if (ready) resp_init(&r->pending), r->phase = RQ_ANSWERED;
        pthread_mutex_unlock(&srv->mu);
        return ready ? send_response(srv, conn, &resp) : MHD_YES;
    }

    /* the whole request is in */
    if (r->too_large)
        return send_error(srv, conn, 413, NULL, "request body is over the limit of %zu bytes",
                          srv->max_body);
    if (r->oom) return send_error(srv, conn, 500, NULL, "out of memory for the request body");
    r->req.path = r->path;
    r->req.query = r->query;
    r->req.body = r->body ? r->body : "";
    r->req.body_len = r->len;
    r->req.priv = r;
    kiln_http_response resp;
    resp_init(&resp);
    srv->fn(srv->ctx, &r->req, &resp);
    if (r->deferred_now) { /* kiln_http_defer suspended the connection */
        resp_drop_body(&resp);
        return MHD_YES;
    }
    return send_response(srv, conn, &resp);
}

/* ---- deferral ---- */

kiln_http_deferred *kiln_http_defer(const kiln_http_request *req) {
    rq *r = req->priv;
    kiln_http_server *srv = r->srv;
    r->deferred_now = 1;
    atomic_fetch_add(&r->refs, 1);
    atomic_fetch_add(&srv->refs, 1);
    MHD_suspend_connection(r->conn);
    pthread_mutex_lock(&srv->mu);
    if (!srv->stopping) {
        r->phase = RQ_DEFERRED;
        r->prev = NULL, r->next = srv->deferred;
        if (srv->deferred) srv->deferred->prev = r;
        srv->deferred = r;
        pthread_mutex_unlock(&srv->mu);
    } else { /* too late to park: answer 503 now */
        r->phase = RQ_RESUMED;
        kiln_http_json_error(&r->pending, 503, "the server is shutting down");
        atomic_fetch_add(&srv->resuming, 1);
        pthread_mutex_unlock(&srv->mu);
        MHD_resume_connection(r->conn);
        atomic_fetch_sub(&srv->resuming, 1);
    }
    return (kiln_http_deferred *)(void *)r; /* a token is its request */
}

void kiln_http_resume(kiln_http_deferred *d, kiln_http_response *resp) {
    rq *r = (rq *)(void *)d;
    kiln_http_server *srv = r->srv;
    pthread_mutex_lock(&srv->mu);
    if (r->phase != RQ_DEFERRED) { /* answered already (stop gave up on it, or it died) */
        pthread_mutex_unlock(&srv->mu);
        resp_drop_body(resp);
    } else {
        r->phase = RQ_RESUMED;
        r->pending = *resp;
        resp->body_owned = 0;
        if (r->prev)
            r->prev->next = r->next;
        else
            srv->deferred = r->next;
        if (r->next) r->next->prev = r->prev;
        atomic_fetch_add(&srv->resuming, 1);
        pthread_mutex_unlock(&srv->mu);
        MHD_resume_connection(r->conn);
        atomic_fetch_sub(&srv->resuming, 1);
    }
    rq_release(r);
    server_release(srv);
}

/* ---- start and stop ---- */

static int bind_listen(const char *host, int port, int *fd_out) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc)
        return kiln_error(KILN_ERR_INVALID, "http: cannot resolve '%s': %s", host,
                          gai_strerror(rc));
    int err = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1024) == 0) {
            freeaddrinfo(res);
            *fd_out = fd;
            return KILN_OK;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return kiln_error(KILN_ERR_IO, "http: cannot listen on %s port %d: %s", host, port,
                      strerror(err));
}

kiln_http_server *kiln_http_start(const kiln_http_config *c, kiln_http_handler fn, void *ctx) {
    kiln_http_config cfg = c ? *c : (kiln_http_config){0};
    if (!fn || cfg.port < 0 || cfg.port > 65535 || cfg.threads < 0 || cfg.max_connections < 0 ||
        cfg.request_timeout_seconds < 0) {
        kiln_error(KILN_ERR_INVALID,
                   "http: bad config (port %d, threads %d, max_connections %d, "
                   "request_timeout_seconds %d) or no handler",
                   cfg.port, cfg.threads, cfg.max_connections, cfg.request_timeout_seconds);
        return NULL;
    }
    const char *host = cfg.host ? cfg.host : "127.0.0.1";
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = cfg.threads ? (unsigned)cfg.threads : ncpu > 0 ? (unsigned)ncpu : 1;
    kiln_http_server *s = calloc(1, sizeof *s);
    if (!s) {
        kiln_error(KILN_ERR_NOMEM, "http: out of memory");
        return NULL;
    }
    s->fn = fn, s->ctx = ctx;
    s->max_body = cfg.max_body_bytes ? cfg.max_body_bytes : (size_t)64 << 20;
    if (s->max_body > SIZE_MAX / 4) s->max_body = SIZE_MAX / 4;
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->refs, 1);
    if (bind_listen(host, cfg.port, &s->listen_fd)) {
        server_release(s);
        return NULL;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    getsockname(s->listen_fd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                             : ((struct sockaddr_in *)&sa)->sin_port);

    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME |
        (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL);
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0u, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(cfg.request_timeout_seconds ? cfg.request_timeout_seconds : 30),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg.max_connections ? cfg.max_connections : 1024),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_HEADER_MEMORY, MHD_OPTION_URI_LOG_CALLBACK,
        on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->d) {
        close(s->listen_fd);
        kiln_error(KILN_ERR_BACKEND, "http: libmicrohttpd did not start on %s port %d", host,
                   s->port);
        server_release(s);
        return NULL;
    }
    return s;
}

int kiln_http_port(const kiln_http_server *s) {
    return s->port;
}

int kiln_http_in_flight(kiln_http_server *s) {
    return atomic_load(&s->in_flight);
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void nap_ms(int ms) {
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, NULL);
}

void kiln_http_stop(kiln_http_server *s, double drain_seconds) {
    if (!s) return;
    atomic_store(&s->draining, 1);
    MHD_socket fd = MHD_quiesce_daemon(s->d);              /* no new connections from here */
    if (fd != MHD_INVALID_SOCKET) shutdown(fd, SHUT_RDWR); /* refuse, rather than queue, them */
    double deadline = now_seconds() + (drain_seconds > 0 ? drain_seconds : 0);
    while (atomic_load(&s->in_flight) > 0 && now_seconds() < deadline) nap_ms(2);

    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    rq *give_up = s->deferred;
    s->deferred = NULL;
    int n = 0;
    for (rq *r = give_up; r; r = r->next, n++) {
        r->phase = RQ_RESUMED;
        kiln_http_json_error(&r->pending, 503, "the server is shutting down");
    }
    atomic_fetch_add(&s->resuming, n);
    pthread_mutex_unlock(&s->mu);
    for (rq *r = give_up, *next; r; r = next) {
        next = r->next; /* read before the connection can complete and drop r */
        MHD_resume_connection(r->conn);
        atomic_fetch_sub(&s->resuming, 1);
    }
    while (atomic_load(&s->resuming) > 0) nap_ms(1);
    /* let the workers send those 503s (MHD would close resumed connections unanswered) */
    deadline = now_seconds() + 1.0;
    while (n && atomic_load(&s->in_flight) > 0 && now_seconds() < deadline) nap_ms(2);
    MHD_stop_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    server_release(s);
}

const char *kiln_http_header(const kiln_http_request *req, const char *name) {
    return MHD_lookup_connection_value(((rq *)req->priv)->conn, MHD_HEADER_KIND, name);
}

const char *kiln_http_query_arg(const kiln_http_request *req, const char *key) {
    return MHD_lookup_connection_value(((rq *)req->priv)->conn, MHD_GET_ARGUMENT_KIND, key);
}

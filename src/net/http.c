/* src/net/ — the network plumbing the applications share and no model knows about:
 * the HTTP server (http.c, its request parser http_parse.c) and the REST client on libcurl
 * (client.c), the growing string buffer with JSON escaping and shortest float formatting
 * (sbuf.c, fmt_f32.c), a pull JSON scanner (json_scan.c) and the Prometheus registry (prom.c).
 * Only this folder includes libcurl. Layers: docs/architecture.md.
 *
 * http.c — the HTTP/1.1 server (behaviour in kiln/http.h).
 *
 * Why not libmicrohttpd any more. Debian bookworm's libmicrohttpd (0.9.75) was the server up
 * to issue 11, and three of that defects are in it: (1) in its epoll mode a read that
 * returns fewer bytes than asked clears the "readable" flag, so the end-of-file of a client
 * that half-closes right after a partial request is never read (epoll is edge-triggered there
 * and the FIN brings no new edge): the socket stays until the idle timeout, and a few hundred
 * such clients exhaust the descriptors (upstream's EPOLLRDHUP change came in 1.0.0); (2) its
 * parser takes the first of two Content-Length values, keeps the connection after
 * Content-Length with chunked, reads a NUL in the target as the end of the path and the
 * absolute form as a path; (3) its own error answers (400, 413, 414, 431, 505) are fixed HTML
 * pages that no option replaces, in 0.9.75 or later. The server is small enough to own.
 *
 * Shape. `threads` workers, each an epoll loop (level-triggered) over its own connections plus
 * an eventfd to be woken by other threads. The listening socket is in every worker's set
 * (EPOLLEXCLUSIVE); whoever accepts hands the connection round-robin to a worker, which keeps
 * it for life, so only its thread touches it. A connection reads a head (request line and
 * fields: the framing, incremental, is http_parse.c's), then the body (Content-Length here,
 * chunked by http_chunked_feed) into the request, calls the
 * handler on the worker thread, and writes the answer (head and body in one sendmsg), then
 * reads the next request from what is already buffered (pipelining). End-of-file with a
 * request incomplete closes at once; after a last answer (an error, Connection: close) the
 * server shuts its side and reads and drops what still comes for up to 2 s, so that the client
 * reads the answer instead of a reset.
 *
 * One rq per request, reference-counted: the connection's reference, a deferred token's, and
 * one while it waits in a worker's queue of resumed requests. A handler may park its request
 * (kiln_http_defer); the connection then waits with no events, and kiln_http_resume (any
 * thread) stores the answer, queues the rq on its worker and wakes it. Phases under the
 * server's mutex from RQ_DEFERRED on: DEFERRED -> RESUMED (by resume, or by stop with a 503)
 * -> ANSWERED (by the worker). kiln_http_stop stops accepting, waits for requests in flight,
 * answers parked ones with 503, then tells the workers to quit and joins them; the server
 * struct lives on while tokens do (reference-counted), so a late resume finds its mutex.
 * Connections are freed only between event batches (a graveyard), so an event for a
 * connection closed earlier in the same batch finds it marked, not freed.
 */
#include "kiln/http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "kiln/sbuf.h"
#include "net/http_parse.h"

#define READ_CHUNK     16384
#define IN_MAX         (HTTP_HEAD_MAX + READ_CHUNK) /* the input buffer never grows past this */
#define LINGER_SECONDS 2.0
#define MAX_ARGS       64
#define ALLOWED        "GET, HEAD, POST, OPTIONS"

typedef enum { RQ_READING = 0, RQ_DEFERRED, RQ_RESUMED, RQ_ANSWERED } rq_phase;
typedef enum { C_HEAD = 0, C_BODY, C_PARKED, C_WRITING, C_LINGER } conn_state;

typedef struct worker worker;
typedef struct conn conn;

typedef struct rq {
    kiln_http_server *srv;
    worker *w;
    conn *c; /* its connection (the worker's thread only); NULL once that closed */
    kiln_http_request req;
    http_head h;
    char *head;   /* the head's bytes, parsed in place (h points into it) */
    char *argmem; /* decoded query arguments */
    http_arg args[MAX_ARGS];
    int n_args;
    char *body; /* [cap], NUL-terminated at len */
    size_t len, cap;
    int deferred_now;           /* the handler called kiln_http_defer */
    rq_phase phase;             /* under srv->mu from RQ_DEFERRED on */
    kiln_http_response pending; /* the answer of a resumed request */
    atomic_int refs;
    struct rq *prev, *next; /* srv->deferred, while DEFERRED */
    struct rq *qnext;       /* a worker's resumed queue */
} rq;

struct conn {
    worker *w;
    int fd;
    conn *prev, *next; /* the worker's connections; `incoming` while handed over */
    conn_state state;
    int closed;   /* closed in this batch: freed after it */
    int eof;      /* the client has shut its side */
    int dead;     /* parked when the socket failed: drop the answer */
    int in_epoll; /* the fd is in the worker's set */
    uint32_t events;
    double last_active, linger_until;
    double head_since; /* when the first byte of the head being read came; 0: none yet */
    char *in;          /* [in_cap]; unparsed bytes are in[in_pos .. in_len) */
    size_t in_len, in_pos, in_cap;
    http_head_reader hr; /* the head being read (http_parse.c) */
    rq *r;               /* the request being read, handled or answered */
    int chunked;         /* the body: chunked (ck) or remaining bytes of a Content-Length */
    http_chunked ck;
    uint64_t remaining;
    int continue_done; /* a 100 Continue went out, or needs not (body bytes have come) */
    int close_after, counted;
    kiln_sbuf out_head; /* the answer's head */
    size_t head_sent, body_sent, body_len;
    const char *body;
    int body_owned;
};

struct worker {
    kiln_http_server *srv;
    pthread_t th;
    int started;
    int ep, wake;
    conn *conns, *graveyard;
    atomic_int listening; /* the listening socket is in ep (set under srv->mu; the worker
                             reads it without) */
    double listen_again;  /* after EMFILE: when to take it back */
    double now;
    time_t date_t;
    char date[40];
    /* under srv->mu */
    rq *resumed;
    conn *incoming;
    int quit;
};

struct kiln_http_server {
    int listen_fd, port;
    size_t max_body;
    int rest_methods; /* DELETE and PATCH reach the handler */
    int timeout_s, max_conns;
    kiln_http_handler fn;
    void *ctx;
    worker *w;
    int nw;
    atomic_uint rr;
    atomic_int n_conns;
    pthread_mutex_t mu;
    rq *deferred;  /* parked requests (mu) */
    int stopping;  /* no more parking (mu) */
    int accepting; /* workers may take the listening socket back (mu) */
    atomic_int draining, in_flight, refs;
    int cors; /* 0: off, 1: any origin, 2: the list */
    char *cors_mem;
    const char **cors_list;
    int n_cors;
};

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void nap_ms(int ms) {
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, NULL);
}

static void wake_worker(worker *w) {
    uint64_t one = 1;
    (void)!write(w->wake, &one, sizeof one);
}

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
    if (!nl || strpbrk(name, "\r\n: \t") || strpbrk(value, "\r\n"))
        return kiln_error(KILN_ERR_INVALID, "http: header '%.64s' has a bad name or value", name);
    static const char *const own[] = {"Content-Type", "Content-Length", "Connection",
                                      "Transfer-Encoding", "Date"};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        if (!strcasecmp(name, own[i]))
            return kiln_error(KILN_ERR_INVALID, "http: %s is set by the server", own[i]);
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

static void json_error_v(kiln_http_response *r, int status, const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
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

void kiln_http_json_error(kiln_http_response *r, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    json_error_v(r, status, fmt, ap);
    va_end(ap);
}

static const struct {
    int code;
    const char *text;
} reasons[] = {
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {417, "Expectation Failed"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {499, "Client Closed Request"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

static const char *reason(int s) {
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++)
        if (reasons[i].code == s) return reasons[i].text;
    return "";
}

/* The IMF-fixdate of now, made once a second per worker (no locale involved). */
static const char *http_date(worker *w) {
    time_t t = time(NULL);
    if (t != w->date_t) {
        static const char *const day[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        struct tm g;
        gmtime_r(&t, &g);
        snprintf(w->date, sizeof w->date, "%s, %02d %s %04d %02d:%02d:%02d GMT", day[g.tm_wday],
                 g.tm_mday, mon[g.tm_mon], g.tm_year + 1900, g.tm_hour, g.tm_min, g.tm_sec);
        w->date_t = t;
    }
    return w->date;
}

/* ---- CORS ---- */

static int origin_ok(const char *s, size_t n) {
    if (n == 4 && !strncmp(s, "null", 4)) return 1;
    const char *sep = memmem(s, n, "://", 3);
    if (!sep || sep == s) return 0;
    for (const char *p = s; p < sep; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (p > s && ((*p >= '0' && *p <= '9') || strchr("+.-", *p)))))
            return 0;
    const char *h = sep + 3, *end = s + n;
    if (h == end) return 0;
    for (const char *p = h; p < end; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(".-:[]_", *p)))
            return 0;
    return 1;
}

kiln_status kiln_http_check_cors_origins(const char *list) {
    if (!list || !*list || !strcmp(list, "*")) return KILN_OK;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        const char *a = p, *b = p + n;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        if (b - a == 1 && *a == '*')
            return kiln_error(KILN_ERR_INVALID,
                              "CORS origins: '*' stands alone (any origin), not in a list");
        if (!origin_ok(a, (size_t)(b - a)))
            return kiln_error(KILN_ERR_INVALID,
                              "CORS origins: '%.*s' is not an origin (scheme://host[:port], "
                              "no path), in '%s'",
                              (int)(b - a), a, list);
        if (!p[n]) break;
        p += n + 1;
    }
    return KILN_OK;
}

static kiln_status cors_setup(kiln_http_server *s, const char *list) {
    if (kiln_http_check_cors_origins(list)) return KILN_ERR_INVALID;
    if (!list || !*list) return KILN_OK;
    if (!strcmp(list, "*")) {
        s->cors = 1;
        return KILN_OK;
    }
    int n = 1;
    for (const char *p = list; *p; p++) n += *p == ',';
    s->cors_mem = strdup(list);
    s->cors_list = calloc((size_t)n, sizeof *s->cors_list);
    if (!s->cors_mem || !s->cors_list) return kiln_error(KILN_ERR_NOMEM, "http: out of memory");
    for (char *p = s->cors_mem, *save = NULL, *t; (t = strtok_r(p, ",", &save)); p = NULL) {
        while (*t == ' ' || *t == '\t') t++;
        char *e = t + strlen(t);
        while (e > t && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        s->cors_list[s->n_cors++] = t;
    }
    s->cors = 2;
    return KILN_OK;
}

/* A comma-separated list of field names (what a preflight may be allowed to send). */
static int token_list(const char *s) {
    int any = 0;
    for (; *s; s++) {
        if (*s == ',' || *s == ' ' || *s == '\t') continue;
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
        any = 1;
    }
    return any;
}

static void cors_headers(kiln_http_server *s, const rq *r, kiln_sbuf *b) {
    if (!s->cors) return;
    const char *origin = r ? r->h.origin : NULL;
    int allowed = s->cors == 1;
    if (allowed) {
        kiln_sbuf_puts(b, "Access-Control-Allow-Origin: *\r\n");
    } else {
        kiln_sbuf_puts(b, "Vary: Origin\r\n");
        for (int i = 0; origin && i < s->n_cors && !allowed; i++)
            allowed = !strcasecmp(origin, s->cors_list[i]);
        if (allowed) kiln_sbuf_printf(b, "Access-Control-Allow-Origin: %s\r\n", origin);
    }
    if (!allowed || !origin || r->h.method != HTTP_M_OPTIONS ||
        !http_head_field(&r->h, "Access-Control-Request-Method"))
        return;
    const char *want = http_head_field(&r->h, "Access-Control-Request-Headers");
    kiln_sbuf_printf(b,
                     "Access-Control-Allow-Methods: " ALLOWED "\r\n"
                     "Access-Control-Allow-Headers: %s\r\n"
                     "Access-Control-Max-Age: 600\r\n",
                     want && token_list(want) ? want : "Content-Type");
}

/* ---- requests ---- */

static void server_release(kiln_http_server *s) {
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    pthread_mutex_destroy(&s->mu);
    free(s->cors_mem);
    free(s->cors_list);
    free(s->w);
    free(s);
}

static void rq_release(rq *r) {
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    resp_drop_body(&r->pending);
    free(r->head);
    free(r->argmem);
    free(r->body);
    free(r);
}

/* Room for n more body bytes and the NUL; the body never passes max (checked before). */
static int body_reserve(rq *r, size_t n, size_t max) {
    size_t need = r->len + n + 1;
    if (need <= r->cap) return 0;
    if (n > max || r->len > max - n) return -1;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < need) cap = cap > max / 2 ? max + 1 : cap * 2;
    char *p = realloc(r->body, cap);
    if (!p) return -1;
    r->body = p, r->cap = cap;
    return 0;
}

/* ---- connections ---- */

static void set_events(conn *c, uint32_t ev) {
    if (c->closed || !c->in_epoll || c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

static void out_drop(conn *c) {
    if (c->body_owned) free((char *)c->body);
    c->body = NULL, c->body_owned = 0, c->body_len = 0;
}

static void conn_close(conn *c) {
    if (c->closed) return;
    worker *w = c->w;
    kiln_http_server *s = w->srv;
    c->closed = 1;
    if (c->counted) atomic_fetch_sub(&s->in_flight, 1), c->counted = 0;
    if (c->r) {
        c->r->c = NULL;
        rq_release(c->r);
        c->r = NULL;
    }
    out_drop(c);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->next = w->graveyard;
    w->graveyard = c;
    atomic_fetch_sub(&s->n_conns, 1);
    w->listen_again = 0; /* a descriptor is free: accepting may work again */
}

static void conn_free(conn *c) {
    free(c->in);
    kiln_sbuf_free(&c->out_head);
    free(c);
}

static void conn_attach(worker *w, conn *c) {
    c->w = w;
    c->prev = NULL, c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    c->last_active = w->now;
    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &e)) {
        conn_close(c);
        return;
    }
    c->in_epoll = 1, c->events = e.events;
}

/* Queues the answer: its head into out_head, its body (passed to the connection). r may be
 * NULL (an error before any head was parsed: the connection then closes after it). */
static void start_response(conn *c, kiln_http_response *resp) {
    kiln_http_server *s = c->w->srv;
    rq *r = c->r;
    if (resp->status < 200 || resp->status > 999)
        kiln_http_json_error(resp, 500, "the handler answered status %d", resp->status);
    int st = resp->status, no_body = st == 204 || st == 304;
    if (!c->counted) c->counted = 1, atomic_fetch_add(&s->in_flight, 1);
    c->close_after |= !r || r->h.close || atomic_load(&s->draining);
    kiln_sbuf *b = &c->out_head;
    kiln_sbuf_clear(b);
    /* appends, not printf: the head of every answer (printf's format parsing was ~6k
     * instructions a request, 2% of a batch-1 prediction) */
    kiln_sbuf_puts(b, "HTTP/1.1 ");
    kiln_sbuf_i64(b, st);
    kiln_sbuf_putc(b, ' ');
    kiln_sbuf_puts(b, reason(st));
    kiln_sbuf_puts(b, "\r\nDate: ");
    kiln_sbuf_puts(b, http_date(c->w));
    kiln_sbuf_puts(b, "\r\n");
    if (!no_body) {
        kiln_sbuf_puts(b, "Content-Type: ");
        kiln_sbuf_puts(b, resp->content_type ? resp->content_type : "application/json");
        kiln_sbuf_puts(b, "\r\n");
    }
    const char *h = resp->header_buf;
    for (int i = 0; i < resp->n_headers; i++) {
        const char *v = h + strlen(h) + 1;
        kiln_sbuf_puts(b, h);
        kiln_sbuf_puts(b, ": ");
        kiln_sbuf_puts(b, v);
        kiln_sbuf_puts(b, "\r\n");
        h = v + strlen(v) + 1;
    }
    cors_headers(s, r, b);
    if (!no_body) {
        kiln_sbuf_puts(b, "Content-Length: ");
        kiln_sbuf_i64(b, (int64_t)resp->body_len);
        kiln_sbuf_puts(b, "\r\n");
    }
    if (c->close_after)
        kiln_sbuf_puts(b, "Connection: close\r\n");
    else if (r && r->h.keep_alive_10)
        kiln_sbuf_puts(b, "Connection: keep-alive\r\n");
    kiln_sbuf_puts(b, "\r\n");
    out_drop(c);
    if (no_body || (r && r->h.method == HTTP_M_HEAD)) {
        resp_drop_body(resp);
    } else {
        c->body = resp->body, c->body_len = resp->body_len, c->body_owned = resp->body_owned;
        resp->body_owned = 0;
    }
    c->head_sent = c->body_sent = 0;
    c->state = C_WRITING;
    if (b->failed) conn_close(c);
}

static void start_error(conn *c, int status, int close_after, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void start_error(conn *c, int status, int close_after, const char *fmt, ...) {
    kiln_http_response resp;
    resp_init(&resp);
    va_list ap;
    va_start(ap, fmt);
    json_error_v(&resp, status, fmt, ap);
    va_end(ap);
    if (status == 405) kiln_http_add_header(&resp, "Allow", ALLOWED);
    c->close_after |= close_after;
    start_response(c, &resp);
}

/* More bytes into in[]: 1 when something changed (bytes or end-of-file), 0 when the socket
 * has nothing now (the connection then waits for EPOLLIN), -1 when it closed. */
static int read_more(conn *c) {
    if (c->in_pos && (c->in_pos == c->in_len || c->in_cap - c->in_len < READ_CHUNK / 4)) {
        memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
    if (c->in_cap - c->in_len < READ_CHUNK / 4 && c->in_cap < IN_MAX) {
        size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
        if (cap > IN_MAX) cap = IN_MAX;
        char *p = realloc(c->in, cap);
        if (!p) {
            conn_close(c);
            return -1;
        }
        c->in = p, c->in_cap = cap;
    }
    if (c->in_len == c->in_cap) { /* cannot happen: the limits answer before */
        conn_close(c);
        return -1;
    }
    ssize_t k = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (k > 0) {
        c->in_len += (size_t)k;
        c->last_active = c->w->now;
        return 1;
    }
    if (k == 0) {
        c->eof = 1;
        return 1;
    }
    if (errno == EINTR) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        set_events(c, EPOLLIN | EPOLLRDHUP);
        return 0;
    }
    conn_close(c);
    return -1;
}

static void dispatch(conn *c);

/* Parses a complete head into a new request and sets up its body. */
static void begin_request(conn *c, size_t end) {
    kiln_http_server *s = c->w->srv;
    rq *r = calloc(1, sizeof *r);
    char *head = r ? malloc(end + 1) : NULL;
    if (!head) {
        free(r);
        start_error(c, 500, 1, "out of memory for the request");
        c->in_pos += end;
        return;
    }
    memcpy(head, c->in + c->in_pos, end);
    head[end] = 0;
    c->in_pos += end;
    memset(&c->hr, 0, sizeof c->hr);
    c->head_since = 0;
    r->srv = s, r->w = c->w, r->c = c, r->head = head;
    atomic_init(&r->refs, 1);
    resp_init(&r->pending);
    c->r = r;
    c->counted = 1;
    atomic_fetch_add(&s->in_flight, 1);
    c->close_after = 0;
    c->continue_done = 0;
    char msg[512];
    int rc = http_parse_head(head, end, &r->h, msg, sizeof msg);
    if (rc) {
        start_error(c, rc, 1, "%s", msg);
        return;
    }
    int has_body = r->h.chunked || r->h.length > 0;
    if (r->h.method == HTTP_M_OTHER ||
        (!s->rest_methods && (r->h.method == HTTP_M_DELETE || r->h.method == HTTP_M_PATCH))) {
        start_error(c, 405, has_body, "method %.32s is not allowed", r->h.method_name);
        return;
    }
    if (r->h.length > s->max_body) {
        start_error(c, 413, 1, "request body is %llu bytes; the limit is %zu",
                    (unsigned long long)r->h.length, s->max_body);
        return;
    }
    if (!has_body) {
        dispatch(c);
        return;
    }
    size_t want = r->h.chunked ? 4096 : (size_t)r->h.length;
    if (want > ((size_t)1 << 20)) want = (size_t)1 << 20; /* more when the bytes come */
    if (want > s->max_body) want = s->max_body;
    if (body_reserve(r, want, s->max_body)) {
        start_error(c, 500, 1, "out of memory for the body");
        return;
    }
    r->body[0] = 0;
    c->chunked = r->h.chunked;
    memset(&c->ck, 0, sizeof c->ck);
    c->remaining = r->h.length;
    c->state = C_BODY;
}

/* One step of reading a head: 1 to go on, 0 to wait for the socket. */
static int step_head(conn *c) {
    for (;;) {
        size_t avail = c->in_len - c->in_pos, skip, end;
        if (avail) {
            char msg[512];
            if (!c->head_since) c->head_since = c->w->now;
            int rc = http_head_feed(&c->hr, c->in + c->in_pos, avail, &skip, &end, msg, sizeof msg);
            c->in_pos += skip;
            if (rc) {
                c->in_pos = c->in_len;
                start_error(c, rc, 1, "%s", msg);
                return 1;
            }
            if (end) {
                begin_request(c, end);
                return 1;
            }
        }
        if (c->eof) { /* nothing, or part of a request, then the end: close at once */
            conn_close(c);
            return 0;
        }
        int k = read_more(c);
        if (k <= 0) return 0;
    }
}

/* One step of reading a body: 1 to go on, 0 to wait for the socket. */
static int step_body(conn *c) {
    kiln_http_server *s = c->w->srv;
    rq *r = c->r;
    char msg[512];
    for (;;) {
        const char *p = c->in + c->in_pos;
        size_t avail = c->in_len - c->in_pos;
        c->continue_done |= avail > 0;
        if (!c->chunked) {
            size_t take = avail < c->remaining ? avail : (size_t)c->remaining;
            if (take) {
                if (body_reserve(r, take, s->max_body)) {
                    start_error(c, 500, 1, "out of memory for the body");
                    return 1;
                }
                memcpy(r->body + r->len, p, take);
                r->len += take;
                r->body[r->len] = 0;
                c->in_pos += take;
                c->remaining -= take;
            }
            if (!c->remaining) {
                dispatch(c);
                return 1;
            }
        } else {
            const char *data;
            size_t used, n;
            int rc =
                http_chunked_feed(&c->ck, p, avail, s->max_body, &used, &data, &n, msg, sizeof msg);
            c->in_pos += used;
            if (rc == HTTP_CK_OUT) {
                if (body_reserve(r, n, s->max_body)) {
                    start_error(c, 500, 1, "out of memory for the body");
                    return 1;
                }
                memcpy(r->body + r->len, data, n);
                r->len += n;
                r->body[r->len] = 0;
                continue;
            }
            if (rc == HTTP_CK_END) {
                dispatch(c);
                return 1;
            }
            if (rc != HTTP_CK_MORE) {
                start_error(c, rc, 1, "%s", msg);
                return 1;
            }
        }
        if (c->eof) { /* the body will never be complete */
            conn_close(c);
            return 0;
        }
        if (r->h.expect_continue && !c->continue_done) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            c->continue_done = 1;
            if (send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL) != (ssize_t)sizeof cont - 1) {
                conn_close(c);
                return 0;
            }
        }
        if (!c->chunked) { /* straight into the body, no copy */
            size_t want =
                c->remaining < ((uint64_t)1 << 20) ? (size_t)c->remaining : (size_t)1 << 20;
            if (body_reserve(r, want, s->max_body)) {
                start_error(c, 500, 1, "out of memory for the body");
                return 1;
            }
            ssize_t k = recv(c->fd, r->body + r->len, want, 0);
            if (k > 0) {
                r->len += (size_t)k;
                r->body[r->len] = 0;
                c->remaining -= (uint64_t)k;
                c->continue_done = 1;
                c->last_active = c->w->now;
            } else if (k == 0) {
                c->eof = 1;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(c, EPOLLIN | EPOLLRDHUP);
                return 0;
            } else if (errno != EINTR) {
                conn_close(c);
                return 0;
            }
            continue;
        }
        int k = read_more(c);
        if (k <= 0) return 0;
    }
}

/* The whole request is in: answer OPTIONS, else call the handler. */
static void dispatch(conn *c) {
    kiln_http_server *s = c->w->srv;
    rq *r = c->r;
    kiln_http_response resp;
    resp_init(&resp);
    if (r->h.method == HTTP_M_OPTIONS) {
        resp.status = 204;
        kiln_http_add_header(&resp, "Allow", ALLOWED);
        start_response(c, &resp);
        return;
    }
    static const kiln_http_method methods[] = {KILN_HTTP_GET,    KILN_HTTP_HEAD,
                                               KILN_HTTP_POST,   KILN_HTTP_GET,
                                               KILN_HTTP_DELETE, KILN_HTTP_PATCH};
    r->req.method = methods[r->h.method];
    r->req.method_name = r->h.method_name;
    r->req.path = r->h.path;
    r->req.query = r->h.query;
    r->req.body = r->body ? r->body : "";
    r->req.body_len = r->len;
    r->req.priv = r;
    if (r->h.query[0]) {
        if (!(r->argmem = malloc(strlen(r->h.query) + 1))) {
            start_error(c, 500, 1, "out of memory for the query");
            return;
        }
        r->n_args = http_parse_query(r->h.query, r->argmem, r->args, MAX_ARGS);
        if (r->n_args < 0) {
            r->n_args = 0;
            start_error(c, 400, 0, "query argument contains an encoded NUL (%%00)");
            return;
        }
    }
    s->fn(s->ctx, &r->req, &resp);
    c->w->now = now_seconds();
    if (r->deferred_now) { /* parked: the worker's queue brings the answer */
        resp_drop_body(&resp);
        c->state = C_PARKED;
        set_events(c, 0);
        return;
    }
    start_response(c, &resp);
}

/* The answer has gone out. */
static void response_done(conn *c) {
    out_drop(c);
    if (c->counted) atomic_fetch_sub(&c->w->srv->in_flight, 1), c->counted = 0;
    if (c->r) {
        c->r->c = NULL;
        rq_release(c->r);
        c->r = NULL;
    }
    if (c->close_after) {
        if (c->eof) {
            conn_close(c);
            return;
        }
        /* our side is done; drop what still comes, so the client reads the answer instead of
         * a reset, until it closes or LINGER_SECONDS pass */
        shutdown(c->fd, SHUT_WR);
        c->in_pos = c->in_len = 0;
        c->state = C_LINGER;
        c->linger_until = c->w->now + LINGER_SECONDS;
        set_events(c, EPOLLIN | EPOLLRDHUP);
        return;
    }
    c->state = C_HEAD;
}

/* One step of writing the answer: 1 to go on, 0 to wait for the socket. */
static int step_write(conn *c) {
    for (;;) {
        struct iovec iov[2];
        int n = 0;
        size_t hl = c->out_head.len - c->head_sent, bl = c->body_len - c->body_sent;
        if (hl) iov[n++] = (struct iovec){c->out_head.data + c->head_sent, hl};
        if (bl) iov[n++] = (struct iovec){(char *)c->body + c->body_sent, bl};
        if (!n) {
            response_done(c);
            return !c->closed;
        }
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t k = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(c, EPOLLOUT);
                return 0;
            }
            conn_close(c);
            return 0;
        }
        c->last_active = c->w->now;
        size_t done = (size_t)k, h = done < hl ? done : hl;
        c->head_sent += h;
        c->body_sent += done - h;
    }
}

static void drive(conn *c) {
    while (!c->closed) {
        int go;
        switch (c->state) {
        case C_HEAD:
            go = step_head(c);
            break;
        case C_BODY:
            go = step_body(c);
            break;
        case C_WRITING:
            go = step_write(c);
            break;
        default:
            go = 0;
            break;
        }
        if (!go) return;
    }
}

static void linger_read(conn *c) {
    char sink[16384];
    for (int i = 0; i < 16; i++) {
        ssize_t k = recv(c->fd, sink, sizeof sink, 0);
        if (k > 0) continue;
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_close(c);
        return;
    }
}

static void conn_event(conn *c, uint32_t ev) {
    if (c->closed) return;
    if (c->state == C_PARKED) {
        if (ev & (EPOLLERR | EPOLLHUP)) { /* gone while parked: wait for the answer, drop it */
            epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->fd, NULL);
            c->in_epoll = 0;
            c->dead = 1;
        }
        return;
    }
    if (c->state == C_LINGER) {
        linger_read(c);
        return;
    }
    drive(c);
}

/* ---- deferral ---- */

/* Under srv->mu: r goes on its worker's queue of answers to send. */
static void enqueue_resumed(rq *r) {
    atomic_fetch_add(&r->refs, 1);
    r->qnext = r->w->resumed;
    r->w->resumed = r;
    wake_worker(r->w);
}

kiln_http_deferred *kiln_http_defer(const kiln_http_request *req) {
    rq *r = req->priv;
    kiln_http_server *srv = r->srv;
    r->deferred_now = 1;
    atomic_fetch_add(&r->refs, 1);
    atomic_fetch_add(&srv->refs, 1);
    pthread_mutex_lock(&srv->mu);
    if (!srv->stopping) {
        r->phase = RQ_DEFERRED;
        r->prev = NULL, r->next = srv->deferred;
        if (srv->deferred) srv->deferred->prev = r;
        srv->deferred = r;
    } else { /* too late to park: answer 503 */
        r->phase = RQ_RESUMED;
        kiln_http_json_error(&r->pending, 503, "the server is shutting down");
        enqueue_resumed(r);
    }
    pthread_mutex_unlock(&srv->mu);
    return (kiln_http_deferred *)(void *)r; /* a token is its request */
}

void kiln_http_resume(kiln_http_deferred *d, kiln_http_response *resp) {
    rq *r = (rq *)(void *)d;
    kiln_http_server *srv = r->srv;
    pthread_mutex_lock(&srv->mu);
    if (r->phase != RQ_DEFERRED) { /* answered already (stop gave up on it) */
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
        enqueue_resumed(r);
        pthread_mutex_unlock(&srv->mu);
    }
    rq_release(r);
    server_release(srv);
}

/* ---- workers ---- */

static void reject(kiln_http_server *s, int fd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reject(kiln_http_server *s, int fd, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_sbuf body = KILN_SBUF_INIT, b = KILN_SBUF_INIT;
    kiln_sbuf_puts(&body, "{\"error\": ");
    kiln_sbuf_json_str(&body, msg);
    kiln_sbuf_putc(&body, '}');
    kiln_sbuf_printf(&b,
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     s->cors == 1 ? "Access-Control-Allow-Origin: *\r\n" : "", body.len,
                     body.data ? body.data : "");
    if (!b.failed) (void)!send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    kiln_sbuf_free(&body);
    kiln_sbuf_free(&b);
    close(fd);
}

static void listen_pause(worker *w) {
    kiln_http_server *s = w->srv;
    pthread_mutex_lock(&s->mu);
    if (w->listening) epoll_ctl(w->ep, EPOLL_CTL_DEL, s->listen_fd, NULL);
    w->listening = 0;
    pthread_mutex_unlock(&s->mu);
    w->listen_again = w->now + 0.1;
}

static int listen_add(worker *w) {
    struct epoll_event e = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &w->srv->listen_fd};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->srv->listen_fd, &e) == 0) return 0;
    e.events = EPOLLIN; /* kernels before 4.5 */
    return epoll_ctl(w->ep, EPOLL_CTL_ADD, w->srv->listen_fd, &e);
}

static void listen_resume(worker *w) {
    kiln_http_server *s = w->srv;
    pthread_mutex_lock(&s->mu);
    if (s->accepting && !w->listening && listen_add(w) == 0) w->listening = 1;
    pthread_mutex_unlock(&s->mu);
}

static void accept_some(worker *w) {
    kiln_http_server *s = w->srv;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            /* out of descriptors or memory: leave the rest queued in the backlog and look
             * again once a connection closes or a moment has passed */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                listen_pause(w);
            return; /* EAGAIN, or the socket is shut down by kiln_http_stop */
        }
        if (atomic_load(&s->n_conns) >= s->max_conns) {
            reject(s, fd, "too many connections (the limit is %d)", s->max_conns);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            reject(s, fd, "out of memory");
            continue;
        }
        c->fd = fd;
        atomic_fetch_add(&s->n_conns, 1);
        worker *to = &s->w[atomic_fetch_add(&s->rr, 1) % (unsigned)s->nw];
        if (to == w) {
            conn_attach(w, c);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        int gone = to->quit;
        if (!gone) {
            c->next = to->incoming;
            to->incoming = c;
            wake_worker(to);
        }
        pthread_mutex_unlock(&s->mu);
        if (gone) {
            close(fd);
            free(c);
            atomic_fetch_sub(&s->n_conns, 1);
        }
    }
}

/* The eventfd: handed-over connections and resumed requests. Returns 1 when told to quit. */
static int on_wake(worker *w) {
    kiln_http_server *s = w->srv;
    uint64_t v;
    (void)!read(w->wake, &v, sizeof v);
    pthread_mutex_lock(&s->mu);
    conn *in = w->incoming;
    rq *res = w->resumed;
    w->incoming = NULL, w->resumed = NULL;
    int quit = w->quit;
    pthread_mutex_unlock(&s->mu);
    for (conn *c = in, *next; c; c = next) {
        next = c->next;
        conn_attach(w, c);
    }
    for (rq *r = res, *next; r; r = next) {
        next = r->qnext;
        pthread_mutex_lock(&s->mu);
        int take = r->phase == RQ_RESUMED;
        kiln_http_response resp = r->pending;
        if (take) resp_init(&r->pending), r->phase = RQ_ANSWERED;
        pthread_mutex_unlock(&s->mu);
        conn *c = r->c;
        if (take && c && !c->closed && c->r == r && c->state == C_PARKED && !c->dead && !quit) {
            start_response(c, &resp);
            drive(c);
        } else {
            if (take) resp_drop_body(&resp);
            if (c && !c->closed && c->r == r) conn_close(c);
        }
        rq_release(r);
    }
    return quit;
}

/* Closes connections idle for the timeout (lingering ones at their end) and answers 408 to
 * heads that have not come whole within it: a client that sends a byte now and then (or empty
 * lines) holds a connection no longer than one that sends nothing. */
static void sweep(worker *w) {
    double limit = w->srv->timeout_s;
    for (conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == C_HEAD && c->head_since && w->now - c->head_since > limit) {
            c->in_pos = c->in_len;
            start_error(c, 408, 1, "the request head did not come whole within %d s",
                        w->srv->timeout_s);
            drive(c);
        } else if (c->state == C_LINGER ? w->now >= c->linger_until
                                        : c->state != C_PARKED && w->now - c->last_active > limit) {
            conn_close(c);
        }
    }
}

static void bury(worker *w) {
    for (conn *c = w->graveyard, *next; c; c = next) {
        next = c->next;
        conn_free(c);
    }
    w->graveyard = NULL;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    kiln_http_server *s = w->srv;
    struct epoll_event ev[64];
    w->now = now_seconds();
    double next_sweep = w->now + 1;
    int quit = 0;
    while (!quit) {
        double until = next_sweep;
        if (!w->listening && w->listen_again < until) until = w->listen_again;
        int ms = until > w->now ? (int)((until - w->now) * 1000) + 1 : 0;
        int n = epoll_wait(w->ep, ev, 64, ms);
        w->now = now_seconds();
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &w->wake)
                quit |= on_wake(w);
            else if (p == &s->listen_fd)
                accept_some(w);
            else
                conn_event(p, ev[i].events);
        }
        if (!w->listening && w->now >= w->listen_again) listen_resume(w);
        if (w->now >= next_sweep) {
            sweep(w);
            next_sweep = w->now + 1;
        }
        bury(w);
        if (!quit) {
            pthread_mutex_lock(&s->mu);
            quit = w->quit && !w->resumed && !w->incoming;
            pthread_mutex_unlock(&s->mu);
        }
    }
    while (w->conns) conn_close(w->conns);
    pthread_mutex_lock(&s->mu);
    conn *in = w->incoming;
    rq *res = w->resumed;
    w->incoming = NULL, w->resumed = NULL;
    pthread_mutex_unlock(&s->mu);
    for (conn *c = in, *next; c; c = next) {
        next = c->next;
        close(c->fd);
        atomic_fetch_sub(&s->n_conns, 1);
        conn_free(c);
    }
    for (rq *r = res, *next; r; r = next) {
        next = r->qnext;
        rq_release(r);
    }
    bury(w);
    return NULL;
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

static void stop_workers(kiln_http_server *s) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nw; i++) {
        s->w[i].quit = 1;
        if (s->w[i].wake >= 0) wake_worker(&s->w[i]);
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];
        if (w->started) pthread_join(w->th, NULL);
        if (w->ep >= 0) close(w->ep);
        if (w->wake >= 0) close(w->wake);
    }
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
    int threads = cfg.threads ? cfg.threads : ncpu > 0 ? (int)ncpu : 1;
    kiln_http_server *s = calloc(1, sizeof *s);
    worker *ws = calloc((size_t)threads, sizeof *ws);
    if (!s || !ws) {
        free(s);
        free(ws);
        kiln_error(KILN_ERR_NOMEM, "http: out of memory");
        return NULL;
    }
    s->fn = fn, s->ctx = ctx;
    s->w = ws, s->nw = threads;
    s->rest_methods = cfg.rest_methods != 0;
    s->max_body = cfg.max_body_bytes ? cfg.max_body_bytes : (size_t)64 << 20;
    if (s->max_body > SIZE_MAX / 4) s->max_body = SIZE_MAX / 4;
    s->timeout_s = cfg.request_timeout_seconds ? cfg.request_timeout_seconds : 30;
    s->max_conns = cfg.max_connections ? cfg.max_connections : 1024;
    struct rlimit rl; /* leave the process descriptors of its own (model files, the poller) */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t room = rl.rlim_cur >= 256 ? rl.rlim_cur - 64 : rl.rlim_cur / 2;
        if ((rlim_t)s->max_conns > room) s->max_conns = room > 4 ? (int)room : 4;
    }
    s->listen_fd = -1;
    s->accepting = 1;
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->refs, 1);
    for (int i = 0; i < threads; i++) ws[i].ep = ws[i].wake = -1, ws[i].srv = s;
    if (cors_setup(s, cfg.cors_allowed_origins) || bind_listen(host, cfg.port, &s->listen_fd)) {
        server_release(s);
        return NULL;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    getsockname(s->listen_fd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                             : ((struct sockaddr_in *)&sa)->sin_port);
    for (int i = 0; i < threads; i++) {
        worker *w = &ws[i];
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &w->wake};
        int ok = w->ep >= 0 && w->wake >= 0 && !epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wake, &e) &&
                 !listen_add(w);
        if (ok) {
            w->listening = 1; /* before its thread reads it */
            ok = !pthread_create(&w->th, NULL, worker_main, w);
        }
        if (!ok) {
            kiln_error(KILN_ERR_IO, "http: cannot start worker %d: %s", i, strerror(errno));
            stop_workers(s);
            close(s->listen_fd);
            server_release(s);
            return NULL;
        }
        w->started = 1;
    }
    return s;
}

int kiln_http_port(const kiln_http_server *s) {
    return s->port;
}

int kiln_http_in_flight(kiln_http_server *s) {
    return atomic_load(&s->in_flight);
}

void kiln_http_stop(kiln_http_server *s, double drain_seconds) {
    if (!s) return;
    atomic_store(&s->draining, 1);
    pthread_mutex_lock(&s->mu); /* no new connections from here: refused, not queued */
    s->accepting = 0;
    for (int i = 0; i < s->nw; i++) {
        if (s->w[i].listening) epoll_ctl(s->w[i].ep, EPOLL_CTL_DEL, s->listen_fd, NULL);
        s->w[i].listening = 0;
    }
    pthread_mutex_unlock(&s->mu);
    shutdown(s->listen_fd, SHUT_RDWR);
    double deadline = now_seconds() + (drain_seconds > 0 ? drain_seconds : 0);
    while (atomic_load(&s->in_flight) > 0 && now_seconds() < deadline) nap_ms(2);

    pthread_mutex_lock(&s->mu); /* parked requests still waiting get 503 */
    s->stopping = 1;
    int n = 0;
    for (rq *r = s->deferred, *next; r; r = next, n++) {
        next = r->next;
        r->phase = RQ_RESUMED;
        kiln_http_json_error(&r->pending, 503, "the server is shutting down");
        enqueue_resumed(r);
    }
    s->deferred = NULL;
    pthread_mutex_unlock(&s->mu);
    deadline = now_seconds() + 1.0; /* let those 503s go out */
    while (n && atomic_load(&s->in_flight) > 0 && now_seconds() < deadline) nap_ms(2);
    stop_workers(s);
    close(s->listen_fd);
    server_release(s);
}

const char *kiln_http_header(const kiln_http_request *req, const char *name) {
    return http_head_field(&((rq *)req->priv)->h, name);
}

const char *kiln_http_query_arg(const kiln_http_request *req, const char *key) {
    const rq *r = req->priv;
    for (int i = 0; i < r->n_args; i++)
        if (!strcmp(r->args[i].name, key)) return r->args[i].value;
    return NULL;
}

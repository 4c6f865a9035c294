/* src/board/ — kiln board: a JSON API over the run folders (board_index.c,
 * board_details.c, board_metrics.c, board_params.c) on src/net/'s HTTP server, and the page it
 * serves (web/: HTML, JS, CSS, compiled into the library by cmake/embed_assets.cmake). An
 * application at the top of the library, below only the CLI. Layers: docs/architecture.md.
 *
 * board.c — kiln board's server: the routes of kiln/board.h on kiln/http.h's server.
 *
 * Requests. The page is served from the arrays compiled into the library (board_assets.c); no
 * request ever opens a file named by the URL. API paths name runs by two path components,
 * /api/runs/EXP/RUN, each checked before use: not empty, not starting with '.', no '/' (the
 * server has already percent-decoded the path, so %2F and %2e%2e arrive as '/' and ".."), no
 * backslash or control byte. The run is then looked up in the runs table by that key, or found
 * as <runs_dir>/EXP/RUN/run.json; either way the folder is a direct grandchild of the runs folder,
 * so no request can reach outside it.
 *
 * Concurrency. Handlers run on the HTTP server's worker threads. The runs table is under b->mu;
 * a run's metric points under the run's own mutex, taken after b->mu is released (see
 * board_internal.h), so a client following a big live run does not hold up the runs table.
 * Details read the run folder with no lock held. /api/studies[/NAME] read the registry
 * (board_studies.c), also without the board's lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "board/board_internal.h"
#include "board/board_mlflow.h"

#define NAME_MAX_BYTES 255

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_BYTES || s[0] == '.') return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '\\') return 0;
    return 1;
}

/* 1 with the value, 0 when absent, -1 when not a non-negative decimal integer. */
static int query_u64(const kiln_http_request *req, const char *key, uint64_t *out) {
    const char *v = kiln_http_query_arg(req, key);
    if (!v) return 0;
    if (v[0] < '0' || v[0] > '9' || strlen(v) > 19) return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno) return -1;
    *out = x;
    return 1;
}

static void no_store(kiln_http_response *resp) {
    kiln_http_add_header(resp, "Cache-Control", "no-store");
}

/* ---- /api/runs ---- */

static void api_runs(kiln_board *b, const kiln_http_request *req, kiln_http_response *resp) {
    uint64_t since = 0;
    if (query_u64(req, "since", &since) < 0) {
        kiln_http_json_error(resp, 400,
                             "since: expected the gen of an earlier answer (an integer "
                             ">= 0), got '%s'",
                             kiln_http_query_arg(req, "since"));
        return;
    }
    kiln_sbuf s = KILN_SBUF_INIT;
    pthread_mutex_lock(&b->mu);
    kiln_status st = board_scan(b, 0);
    if (!st) board_render_runs(b, since, &s);
    pthread_mutex_unlock(&b->mu);
    if (st) {
        kiln_http_json_error(resp, 500, "%s", kiln_last_error());
        return;
    }
    no_store(resp);
    kiln_http_body_sbuf(resp, &s);
}

/* ---- /api/runs/EXP/RUN[/metrics] ---- */

static void api_metrics(kiln_board *b, const kiln_http_request *req, kiln_http_response *resp,
                        const char *exp, const char *run) {
    uint64_t after = 0, rev = 0;
    int has_after = query_u64(req, "after", &after), has_rev = query_u64(req, "rev", &rev);
    if (has_after < 0 || has_rev < 0) {
        kiln_http_json_error(resp, 400,
                             "after and rev: expected integers >= 0 (the next and rev "
                             "of an earlier answer)");
        return;
    }
    if (has_after != has_rev) {
        kiln_http_json_error(resp, 400,
                             "after and rev go together: pass both (next and rev of "
                             "an earlier answer) or neither");
        return;
    }
    pthread_mutex_lock(&b->mu);
    board_run *r = board_find(b, exp, run);
    const char *status = r ? r->status : NULL;
    int crashed = r ? r->crashed : 0;
    pthread_mutex_unlock(&b->mu);
    if (!r) {
        kiln_http_json_error(resp, 404, "no run '%s/%s' in %s", exp, run, b->runs_dir);
        return;
    }
    kiln_sbuf s = KILN_SBUF_INIT;
    pthread_mutex_lock(&r->m.mu);
    kiln_status st = board_metrics_update(&r->m, r->dir);
    if (!st) {
        int reset = !has_after || (int64_t)rev != r->m.rev || (int64_t)after > r->m.seq;
        kiln_sbuf_puts(&s, "{\"key\":");
        kiln_sbuf_json_str(&s, r->key);
        kiln_sbuf_printf(&s, ",\"status\":\"%s\",\"crashed\":%s,", status,
                         crashed ? "true" : "false");
        board_metrics_render(&r->m, (int64_t)after, reset, &s);
        kiln_sbuf_putc(&s, '}');
    }
    pthread_mutex_unlock(&r->m.mu);
    if (st) {
        kiln_sbuf_free(&s);
        kiln_http_json_error(resp, 500, "%s", kiln_last_error());
        return;
    }
    no_store(resp);
    kiln_http_body_sbuf(resp, &s);
}

static void api_details(kiln_board *b, kiln_http_response *resp, const char *exp, const char *run) {
    pthread_mutex_lock(&b->mu);
    board_run *r = board_find(b, exp, run);
    const char *status = r ? r->status : NULL;
    int crashed = r ? r->crashed : 0;
    pthread_mutex_unlock(&b->mu);
    if (!r) {
        kiln_http_json_error(resp, 404, "no run '%s/%s' in %s", exp, run, b->runs_dir);
        return;
    }
    /* the stages come from the metric points (read up to date here, as for /metrics) */
    kiln_sbuf stages = KILN_SBUF_INIT, s = KILN_SBUF_INIT;
    pthread_mutex_lock(&r->m.mu);
    if (board_metrics_update(&r->m, r->dir))
        kiln_error_clear(); /* details without stages rather than none */
    else
        board_metrics_render_stages(&r->m, &stages);
    pthread_mutex_unlock(&r->m.mu);
    board_render_details(r->key, r->dir, status, crashed, stages.failed ? NULL : stages.data, &s);
    kiln_sbuf_free(&stages);
    no_store(resp);
    kiln_http_body_sbuf(resp, &s);
}

static void api_run(kiln_board *b, const kiln_http_request *req, kiln_http_response *resp,
                    const char *rest) {
    char buf[1024];
    char *part[4];
    int n = 0;
    if (strlen(rest) >= sizeof buf) {
        kiln_http_json_error(resp, 404, "no such route: the path is too long");
        return;
    }
    strcpy(buf, rest);
    for (char *p = buf, *slash; n < 4; p = slash + 1) {
        part[n++] = p;
        if (!(slash = strchr(p, '/'))) break;
        *slash = 0;
    }
    for (int i = 0; i < n && i < 2; i++)
        if (!name_ok(part[i])) {
            kiln_http_json_error(resp, 400,
                                 "'%s' is not an experiment or run folder name (names are one "
                                 "path component and do not start with '.')",
                                 part[i]);
            return;
        }
    if (n == 2)
        api_details(b, resp, part[0], part[1]);
    else if (n == 3 && !strcmp(part[2], "metrics"))
        api_metrics(b, req, resp, part[0], part[1]);
    else if (n == 4 && !strcmp(part[2], "explain")) { /* board_explain.c */
        pthread_mutex_lock(&b->mu);
        board_run *r = board_find(b, part[0], part[1]);
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", r ? r->dir : "");
        pthread_mutex_unlock(&b->mu);
        if (r) board_serve_explain(resp, dir, part[3]);
        else kiln_http_json_error(resp, 404, "no run '%s/%s' in %s", part[0], part[1], b->runs_dir);
    } else
        kiln_http_json_error(resp, 404,
                             "no such route: %s (see /api/runs/EXP/RUN and "
                             "/api/runs/EXP/RUN/metrics)",
                             req->path);
}

/* ---- the page ---- */

static void asset(const kiln_http_request *req, kiln_http_response *resp) {
    const char *path = strcmp(req->path, "/") ? req->path : "/index.html";
    for (int i = 0; i < kiln_board_n_assets; i++) {
        const kiln_board_asset *a = &kiln_board_assets[i];
        if (strcmp(a->path, path)) continue;
        resp->content_type = a->content_type;
        resp->body = (const char *)a->data;
        resp->body_len = a->len;
        kiln_http_add_header(resp, "Cache-Control", "no-cache");
        kiln_http_add_header(resp, "X-Content-Type-Options", "nosniff");
        return;
    }
    kiln_http_json_error(resp, 404, "no such page: %s", req->path);
}

static void handle(void *ctx, const kiln_http_request *req, kiln_http_response *resp) {
    kiln_board *b = ctx;
    if (board_mlflow_handle(b, req, resp)) return; /* /api/2.0/mlflow/..., board_mlflow.c */
    if (req->method != KILN_HTTP_GET && req->method != KILN_HTTP_HEAD) {
        kiln_http_add_header(resp, "Allow", "GET, HEAD");
        kiln_http_json_error(resp, 405, "%s %s: the board is read-only (GET and HEAD)",
                             req->method_name, req->path);
        return;
    }
    const char *p = req->path;
    if (!strcmp(p, "/api/runs"))
        api_runs(b, req, resp);
    else if (!strncmp(p, "/api/runs/", 10))
        api_run(b, req, resp, p + 10);
    else if (!strcmp(p, "/api/studies"))
        board_api_studies(b, resp, NULL);
    else if (!strncmp(p, "/api/studies/", 13)) {
        if (!name_ok(p + 13) || strchr(p + 13, '/'))
            kiln_http_json_error(resp, 400, "'%s' is not a study name (see /api/studies)", p + 13);
        else
            board_api_studies(b, resp, p + 13);
    } else if (!strncmp(p, "/api/", 5) || !strcmp(p, "/api"))
        kiln_http_json_error(resp, 404, "no such route: %s (see /api/runs, /api/studies)", p);
    else
        asset(req, resp);
}

/* ---- start and stop ---- */

kiln_board *kiln_board_start(const kiln_board_config *c) {
    if (!c || !c->runs_dir || !c->runs_dir[0]) {
        kiln_error(KILN_ERR_INVALID, "board: no runs folder given");
        return NULL;
    }
    struct stat st;
    if (stat(c->runs_dir, &st) != 0) {
        kiln_error(errno == ENOENT ? KILN_ERR_NOTFOUND : KILN_ERR_IO, "board: runs folder %s: %s",
                   c->runs_dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        kiln_error(KILN_ERR_INVALID, "board: runs folder %s is not a folder", c->runs_dir);
        return NULL;
    }
    kiln_board *b = calloc(1, sizeof *b);
    if (!b || !(b->runs_dir = strdup(c->runs_dir))) {
        free(b);
        kiln_error(KILN_ERR_NOMEM, "board: out of memory");
        return NULL;
    }
    for (size_t n = strlen(b->runs_dir); n > 1 && b->runs_dir[n - 1] == '/'; n--)
        b->runs_dir[n - 1] = 0;
    pthread_mutex_init(&b->mu, NULL);
    b->rescan_seconds = c->rescan_seconds == 0 ? 1.0 : c->rescan_seconds;
    b->last_scan = -1;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* Revs start at this board's start time in microseconds: a client still holding revs from
     * an earlier board never matches, so it gets everything again. */
    b->rev_base = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    snprintf(b->instance, sizeof b->instance, "%llx-%lx", (unsigned long long)b->rev_base,
             (long)getpid());
    pthread_mutex_lock(&b->mu);
    kiln_status s = board_scan(b, 1);
    pthread_mutex_unlock(&b->mu);
    if (!s && c->mlflow && !(b->mlflow = board_mlflow_new(c->token)))
        s = kiln_error(KILN_ERR_NOMEM, "board: out of memory");
    if (!s) {
        kiln_http_config hc = {.host = c->host ? c->host : "127.0.0.1",
                               .port = c->port,
                               .threads = c->threads > 0 ? c->threads : 2,
                               .rest_methods = c->mlflow};
        if (!(b->http = kiln_http_start(&hc, handle, b))) s = KILN_ERR_IO;
    }
    if (s) {
        kiln_board_stop(b);
        return NULL;
    }
    return b;
}

int kiln_board_port(const kiln_board *b) {
    return kiln_http_port(b->http);
}

int kiln_board_run_count(kiln_board *b) {
    pthread_mutex_lock(&b->mu);
    int n = b->n_listed;
    pthread_mutex_unlock(&b->mu);
    return n;
}

void kiln_board_stop(kiln_board *b) {
    if (!b) return;
    if (b->http) kiln_http_stop(b->http, 2.0);
    board_mlflow_free(b->mlflow);
    board_index_free(b);
    pthread_mutex_destroy(&b->mu);
    free(b->runs_dir);
    free(b);
}

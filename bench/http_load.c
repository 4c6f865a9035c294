/* http_load.c — a closed-loop HTTP/1.1 load generator that records the latency of every request,
 * for bench/serve_vs_python.sh beside wrk:
 *
 *   bench_http_load PORT PATH BODY_FILE [THREADS [CONNECTIONS_PER_THREAD [SECONDS]]]
 *
 * Each of THREADS (default 2) keeps CONNECTIONS_PER_THREAD (default 8) keep-alive connections to
 * 127.0.0.1:PORT, each with exactly one POST of BODY_FILE (application/json) in flight: the next
 * is written as soon as the answer is complete. A request's latency is from the start of its
 * write to the end of its answer's body (CLOCK_MONOTONIC), every one recorded (no sampling), so
 * Little's law holds for the figures: mean latency = connections / throughput within the time a
 * connection spends between answer and next write. Prints one line: requests, requests/s, mean,
 * p50, p90, p99, max, non-2xx answers.
 *
 * Why not wrk alone: Debian's wrk 4.1 with 2 threads reported a mean of 10 ms and a p99 of
 * 115-130 ms for kiln serve at 22,000 req/s over 16 connections, which Little's law rules out
 * (16 / 22,000 s = 0.73 ms is the largest possible mean, and a p99 of 115 ms alone would add
 * 1.15 ms to it); this client, at the same time on the same server, measures a mean of 0.66 ms
 * (wg/wrk#82 and #438 report the same kind of distortion).
 *
 * Answers are framed by Content-Length (both servers of the benchmark send it); anything else,
 * a closed connection or a read error ends the run with exit 1.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define IN_CAP      65536

typedef struct {
    int fd;
    double start; /* when the request in flight began to be written */
    size_t have;  /* bytes of the answer read so far */
    char in[IN_CAP + 1];
} load_conn;

typedef struct {
    double *lat; /* seconds, one per answered request */
    size_t n, cap;
    long non_2xx;
    const char *error; /* set when the thread stopped on a failure */
} load_result;

static char *request;
static size_t request_len;
static int port, conns_per_thread;
static double stop_at;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* The length of the complete answer at the front of c->in, 0 while incomplete, -1 if unframed. */
static long answer_length(load_conn *c) {
    c->in[c->have] = 0;
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end) return c->have >= IN_CAP ? -1 : 0;
    const char *cl = strcasestr(c->in, "\r\ncontent-length:");
    if (!cl || cl > end) return -1;
    long body = strtol(cl + 17, NULL, 10), head = end + 4 - c->in;
    if (body < 0 || head + body > IN_CAP) return -1;
    return c->have >= (size_t)(head + body) ? head + body : 0;
}

static int record(load_result *r, double seconds) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 65536;
        double *p = realloc(r->lat, cap * sizeof *p);
        if (!p) return -1;
        r->lat = p, r->cap = cap;
    }
    r->lat[r->n++] = seconds;
    return 0;
}

static void *load_thread(void *arg) {
    load_result *r = arg;
    int ep = epoll_create1(0);
    load_conn *cs = calloc((size_t)conns_per_thread, sizeof *cs);
    if (ep < 0 || !cs) {
        r->error = "out of resources";
        goto out;
    }
    for (int i = 0; i < conns_per_thread; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
        cs[i].fd = fd;
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
            r->error = "cannot connect";
            goto out;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        cs[i].start = now_s();
        if (send_all(fd, request, request_len)) {
            r->error = "write failed";
            goto out;
        }
    }
    struct epoll_event ev[64];
    while (now_s() < stop_at) {
        int n = epoll_wait(ep, ev, 64, 100);
        for (int k = 0; k < n; k++) {
            load_conn *c = ev[k].data.ptr;
            ssize_t m = read(c->fd, c->in + c->have, IN_CAP - c->have);
            if (m <= 0) {
                r->error = m ? "read failed" : "the server closed a connection";
                goto out;
            }
            c->have += (size_t)m;
            long len;
            while ((len = answer_length(c)) > 0) { /* one answer per request: at most one */
                double t = now_s();
                if (record(r, t - c->start)) {
                    r->error = "out of memory";
                    goto out;
                }
                if (strncmp(c->in + 8, " 2", 2)) r->non_2xx++; /* "HTTP/1.1 200" */
                memmove(c->in, c->in + len, c->have - (size_t)len);
                c->have -= (size_t)len;
                c->start = now_s();
                if (send_all(c->fd, request, request_len)) {
                    r->error = "write failed";
                    goto out;
                }
            }
            if (len < 0) {
                r->error = "an answer without Content-Length (or over 64 KiB)";
                goto out;
            }
        }
    }
out:
    for (int i = 0; cs && i < conns_per_thread; i++)
        if (cs[i].fd > 0) close(cs[i].fd);
    free(cs);
    if (ep >= 0) close(ep);
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_http_load PORT PATH BODY_FILE"
                        " [THREADS [CONNECTIONS_PER_THREAD [SECONDS]]]\n");
        return 2;
    }
    port = atoi(argv[1]);
    int threads = argc > 4 ? atoi(argv[4]) : 2;
    conns_per_thread = argc > 5 ? atoi(argv[5]) : 8;
    double seconds = argc > 6 ? atof(argv[6]) : 10;
    if (port < 1 || port > 65535 || threads < 1 || threads > MAX_THREADS ||
        conns_per_thread < 1 || seconds <= 0) {
        fprintf(stderr, "bench_http_load: bad port, threads (1-%d), connections or seconds\n",
                MAX_THREADS);
        return 2;
    }
    FILE *f = fopen(argv[3], "rb");
    char *body = NULL;
    long blen = -1;
    if (f && !fseek(f, 0, SEEK_END) && (blen = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
        (body = malloc((size_t)blen + 1)) && fread(body, 1, (size_t)blen, f) != (size_t)blen)
        blen = -1;
    if (f) fclose(f);
    if (!body || blen < 0) {
        fprintf(stderr, "bench_http_load: cannot read %s\n", argv[3]);
        return 2;
    }
    size_t cap = (size_t)blen + strlen(argv[2]) + 256;
    request = malloc(cap);
    if (!request) return 1;
    int head = snprintf(request, cap,
                        "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json"
                        "\r\nContent-Length: %ld\r\n\r\n",
                        argv[2], port, blen);
    memcpy(request + head, body, (size_t)blen);
    request_len = (size_t)head + (size_t)blen;
    free(body);

    pthread_t th[MAX_THREADS];
    load_result res[MAX_THREADS];
    memset(res, 0, sizeof res);
    double t0 = now_s();
    stop_at = t0 + seconds;
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, load_thread, &res[i]);
    size_t n = 0;
    long non_2xx = 0;
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        n += res[i].n, non_2xx += res[i].non_2xx;
        if (res[i].error) fprintf(stderr, "bench_http_load: thread %d: %s\n", i, res[i].error);
        failed |= res[i].error != NULL;
    }
    double wall = now_s() - t0, sum = 0;
    double *all = n ? malloc(n * sizeof *all) : NULL;
    if (failed || !all) {
        if (!n) fprintf(stderr, "bench_http_load: no answers\n");
        return 1;
    }
    for (int i = 0, k = 0; i < threads; i++)
        for (size_t j = 0; j < res[i].n; j++) all[k++] = res[i].lat[j], sum += res[i].lat[j];
    qsort(all, n, sizeof *all, by_value);
    printf("requests %zu  req/s %.0f  mean %.3f ms  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  "
           "max %.3f ms  non-2xx %ld\n",
           n, (double)n / wall, 1e3 * sum / (double)n, 1e3 * all[n / 2], 1e3 * all[n * 9 / 10],
           1e3 * all[n * 99 / 100], 1e3 * all[n - 1], non_2xx);
    for (int i = 0; i < threads; i++) free(res[i].lat);
    free(all);
    free(request);
    return 0;
}

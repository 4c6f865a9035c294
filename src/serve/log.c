/* log.c — the server's log line (through the config's callback, or stderr) and its clock. */
#include <stdarg.h>
#include <stdio.h>

#include "serve/serve_internal.h"

double serve_seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

void serve_log(kiln_server *s, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (s->cfg.log)
        s->cfg.log(s->cfg.log_ctx, line);
    else
        fprintf(stderr, "%s\n", line);
}

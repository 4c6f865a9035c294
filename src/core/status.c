/* status.c — thread-local error messages (see kiln/status.h).
 * Invariant: the buffer is always NUL-terminated; messages longer than it are truncated. */
#include "kiln/status.h"

#include <stdio.h>
#include <string.h>

#define KILN_ERRBUF 1024
static _Thread_local char errbuf[KILN_ERRBUF];

const char *kiln_last_error(void) { return errbuf; }

const char *kiln_status_name(kiln_status s) {
    static const char *names[] = {"KILN_OK",         "KILN_ERR_INVALID", "KILN_ERR_SHAPE",
                                  "KILN_ERR_NOMEM",  "KILN_ERR_IO",      "KILN_ERR_FORMAT",
                                  "KILN_ERR_NOTFOUND", "KILN_ERR_BACKEND", "KILN_ERR_NUMERIC"};
    if ((unsigned)s < sizeof names / sizeof *names) return names[s];
    return "KILN_ERR_UNKNOWN";
}

kiln_status kiln_error(kiln_status code, const char *fmt, ...) {
    /* Formatted aside first: an argument may be the current message itself
     * (kiln_error(code, "%s", kiln_last_error())), and vsnprintf must not read what it writes. */
    char msg[KILN_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(errbuf, msg, sizeof msg);
    return code;
}

void kiln_error_prefix(const char *fmt, ...) {
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t p = strlen(prefix) + 2, old = strlen(errbuf);
    if (p >= KILN_ERRBUF) return;
    if (old > KILN_ERRBUF - 1 - p) old = KILN_ERRBUF - 1 - p; /* truncate the tail */
    memmove(errbuf + p, errbuf, old);
    errbuf[p + old] = 0;
    memcpy(errbuf, prefix, p - 2);
    errbuf[p - 2] = ':', errbuf[p - 1] = ' ';
}

void kiln_error_clear(void) { errbuf[0] = 0; }

/* kiln/status.h — error codes and thread-local error messages.
 *
 * Every library function that can fail returns a kiln_status (or NULL) and leaves a human
 * message with context in a thread-local buffer, read with kiln_last_error(). The library never
 * exits or aborts on user input: only internal invariants are asserted.
 */
#ifndef KILN_STATUS_H
#define KILN_STATUS_H

#include <stdarg.h>

typedef enum {
    KILN_OK = 0,
    KILN_ERR_INVALID,  /* bad argument or attribute */
    KILN_ERR_SHAPE,    /* shapes do not agree */
    KILN_ERR_NOMEM,    /* allocation failed */
    KILN_ERR_IO,       /* file system error */
    KILN_ERR_FORMAT,   /* malformed file or data */
    KILN_ERR_NOTFOUND, /* named thing does not exist */
    KILN_ERR_BACKEND,  /* oneDNN (or another backend) refused */
    KILN_ERR_NUMERIC,  /* NaN or Inf where a finite value was required */
} kiln_status;

/* The message of the last error on this thread ("" when none). */
const char *kiln_last_error(void);
/* The name of a status code ("KILN_ERR_SHAPE"). */
const char *kiln_status_name(kiln_status s);
/* Sets this thread's message (printf-style) and returns code, so callers write
 * `return kiln_error(KILN_ERR_INVALID, "dense: units must be > 0, got %d", u);` */
kiln_status kiln_error(kiln_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to the current message (adds context while unwinding). */
void kiln_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kiln_error_clear(void);

#endif

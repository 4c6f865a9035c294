/* kiln/sbuf.h — a growable text buffer for the serving hot path (JSON bodies, metrics pages).
 *
 * Appends never fail visibly: when an allocation fails the buffer drops its contents and
 * becomes "failed", later appends do nothing, and kiln_sbuf_take returns NULL. A writer appends
 * everything and checks once at the end (SQLite's StrAccum does the same), so hot loops carry
 * no error branches. While not failed, data is NUL-terminated after every append.
 *
 * Numbers: kiln_sbuf_f32 writes the shortest decimal that reads back (strtof, round to nearest
 * even) as the same float32 (kiln_f32_shortest); integral values keep a ".0" so that typed
 * clients see floats; NaN and infinities are written as NaN, Infinity and -Infinity, which JSON
 * lacks but TF Serving writes and Python's json module reads (see kiln/tensor_json.h).
 */
#ifndef KILN_SBUF_H
#define KILN_SBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data; /* [cap]; NUL-terminated at len; NULL until the first append */
    size_t len; /* bytes written, not counting the NUL */
    size_t cap;
    int failed; /* an allocation failed: contents dropped, appends ignored */
} kiln_sbuf;

#define KILN_SBUF_INIT                                                                             \
    { NULL, 0, 0, 0 }

/* Makes room for n more bytes (plus the NUL); returns 0, or -1 (and fails the buffer). */
int kiln_sbuf_reserve(kiln_sbuf *b, size_t n);
/* Room for n more bytes and a NUL: where to write them (then add what was written to len), or
 * NULL when the buffer failed. Inline, for hot loops. */
static inline char *kiln_sbuf_room(kiln_sbuf *b, size_t n) {
    if (b->cap - b->len <= n && kiln_sbuf_reserve(b, n)) return NULL;
    return b->data + b->len;
}
void kiln_sbuf_put(kiln_sbuf *b, const char *s, size_t n);
void kiln_sbuf_puts(kiln_sbuf *b, const char *s);
void kiln_sbuf_putc(kiln_sbuf *b, char c);
void kiln_sbuf_printf(kiln_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string, quotes included: '"', '\\' and control bytes escaped; bytes that are not
 * valid UTF-8 become U+FFFD, so the output is always valid JSON text. */
void kiln_sbuf_json_str(kiln_sbuf *b, const char *s);
void kiln_sbuf_json_strn(kiln_sbuf *b, const char *s, size_t n);
void kiln_sbuf_f32(kiln_sbuf *b, float v);
void kiln_sbuf_i64(kiln_sbuf *b, int64_t v);
/* Hands the contents to the caller (malloc'd, NUL-terminated, release with free()) and resets b;
 * *len (if given) gets the length. NULL when the buffer failed (or was never written: then an
 * empty malloc'd string). */
char *kiln_sbuf_take(kiln_sbuf *b, size_t *len);
/* Empties b, keeping its memory (and clearing a failure). */
void kiln_sbuf_clear(kiln_sbuf *b);
void kiln_sbuf_free(kiln_sbuf *b);

/* The shortest decimal form of v that reads back as v (see the top of this file): writes at most
 * KILN_F32_CHARS - 1 characters and a NUL into out, returns the length. Examples: 0.1f -> "0.1",
 * 1.0f -> "1.0", 3e-8f -> "3e-08", 1e20f -> "1e+20", 16777216.0f -> "16777216.0". Positional
 * notation for decimal exponents -5..15, scientific outside (as Python's repr). */
#define KILN_F32_CHARS 32
int kiln_f32_shortest(float v, char out[KILN_F32_CHARS]);

#endif

/* http_parse.c — request heads and chunked bodies for the HTTP server (http_parse.h).
 *
 * RFC 9112 where it binds a server: a request line of exactly METHOD SP TARGET SP HTTP/d.d
 * (no control character anywhere: a NUL in a path is never silently a shorter path), header
 * fields name ":" OWS value OWS with a token name and no whitespace before the colon, no line
 * folding, no bare CR; one Host in HTTP/1.1; Content-Length values that all agree (§6.3);
 * Transfer-Encoding only "chunked", once and last, never in HTTP/1.0, and with Content-Length
 * the connection closes after the answer (§6.1). A bare LF ends a line as CRLF does (§2.2).
 * Targets in origin form ("/path?query"), absolute form ("http://host/path?query", §3.2.2: the
 * path is served, the authority ignored) and "*" (OPTIONS only).
 *
 * Split invariance. The incremental readers decide only what every longer input would decide
 * too: a CR at the end of what has come waits for its next byte (CRLF, or a bare CR), a line
 * with no end yet is refused for its length only when its length so far already passes the
 * limit, and only the first HTTP_HEAD_MAX bytes of a head decide between 400, 414 and 431.
 */
#include "net/http_parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ctl(unsigned char c) {
    return c < 0x20 || c == 0x7f;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t http_head_end(const char *buf, size_t len, size_t *scan) {
    size_t i = *scan;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl) {
            *scan = len;
            return 0;
        }
        i = (size_t)(nl - buf);
        if (i + 1 >= len || (buf[i + 1] == '\r' && i + 2 >= len)) {
            *scan = i; /* the next bytes decide */
            return 0;
        }
        if (buf[i + 1] == '\n') return i + 2;
        if (buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
        i++;
    }
    *scan = len;
    return 0;
}

#define MALFORMED "malformed request line (expected METHOD SP TARGET SP HTTP/1.1)"

/* The request line's automaton, resumed where the last call stopped: method (tchars), one SP,
 * target (no control character), one SP, exactly HTTP/d.d, the end of the line. buf[0..len) is
 * what has come of the request; a CR that ends what has come is left for the next call (the
 * start of CRLF, or a bare CR: what follows decides), so the outcome does not depend on where
 * the bytes were split. */
static int line_step(http_head_reader *r, const char *buf, size_t len, char *msg, size_t cap) {
    if (r->line_done || r->line_pos > len) return 0;
    const char *nl = memchr(buf + r->line_pos, '\n', len - r->line_pos);
    int complete = nl != NULL;
    size_t n = complete ? (size_t)(nl - buf) : len;
    if (n > r->line_pos && buf[n - 1] == '\r') n--; /* the line's CR, or maybe its CR */
    static const char pat[] = "HTTP/0.0";
    for (size_t i = r->line_pos; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        r->examined++;
        if (!r->sp1) { /* the method */
            if (is_tchar(c)) continue;
            if (c == ' ' && i) {
                r->sp1 = i;
                continue;
            }
        } else if (!r->sp2) { /* the target */
            if (c == ' ' && i > r->sp1 + 1) {
                r->sp2 = i;
                continue;
            }
            if (c != ' ' && !is_ctl(c)) continue;
            if (c != ' ' && c != '\r') {
                snprintf(msg, cap, "request target contains a control character (0x%02x)", c);
                return 400;
            }
        } else { /* the version */
            size_t k = i - r->sp2 - 1;
            if (k < 8 && (pat[k] == '0' ? c >= '0' && c <= '9' : c == (unsigned char)pat[k]))
                continue;
        }
        if (c == '\r')
            snprintf(msg, cap, "bare CR in the request line");
        else if (is_ctl(c))
            snprintf(msg, cap, "request line contains a control character (0x%02x)", c);
        else
            snprintf(msg, cap, MALFORMED);
        return 400;
    }
    r->line_pos = n;
    if (!complete) return 0;
    if (!r->sp2 || n - r->sp2 - 1 != 8) {
        snprintf(msg, cap, MALFORMED);
        return 400;
    }
    if (buf[r->sp2 + 6] != '1') {
        snprintf(msg, cap, "HTTP version %.8s is not supported (use HTTP/1.1)", buf + r->sp2 + 1);
        return 505;
    }
    r->line_done = 1;
    return 0;
}

int http_check_request_line(const char *buf, size_t len, char *msg, size_t cap) {
    http_head_reader r = {0};
    return line_step(&r, buf, len, msg, cap);
}

int http_head_feed(http_head_reader *r, const char *buf, size_t len, size_t *skip, size_t *end,
                   char *msg, size_t cap) {
    size_t s = 0;
    *skip = 0, *end = 0;
    if (!r->line_pos && !r->scan) { /* nothing of the request line yet: empty lines go */
        while (s < len && (buf[s] == '\n' || (buf[s] == '\r' && s + 1 < len && buf[s + 1] == '\n')))
            s += buf[s] == '\r' ? 2 : 1;
        *skip = s;
        if (s + 1 == len && buf[s] == '\r') return 0; /* a CR alone: an empty line, maybe */
    }
    buf += s, len -= s;
    if (!len) return 0;
    size_t e = http_head_end(buf, len, &r->scan);
    /* only the first HTTP_HEAD_MAX bytes decide, however many have come */
    size_t look = e ? e : len;
    int rc = line_step(r, buf, look < HTTP_HEAD_MAX ? look : HTTP_HEAD_MAX, msg, cap);
    if (rc) return rc;
    if ((e && e > HTTP_HEAD_MAX) || (!e && len >= HTTP_HEAD_MAX)) {
        if (r->line_done) {
            snprintf(msg, cap, "request header fields are over %d bytes", HTTP_HEAD_MAX);
            return 431;
        }
        snprintf(msg, cap, "request line is over %d bytes", HTTP_HEAD_MAX);
        return 414;
    }
    *end = e;
    return 0;
}

/* Percent-decodes s in place ('+' as a space when plus); malformed escapes stay as they are.
 * -1 when an escape decodes to NUL. */
static int decode(char *s, int plus) {
    char *o = s;
    int nul = 0;
    for (char *p = s; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval((unsigned char)p[1])) >= 0 &&
            (lo = hexval((unsigned char)p[2])) >= 0) {
            *o++ = (char)(hi * 16 + lo);
            nul |= hi == 0 && lo == 0;
            p += 2;
        } else {
            *o++ = plus && *p == '+' ? ' ' : *p;
        }
    }
    *o = 0;
    return nul ? -1 : 0;
}

static int set_target(char *t, http_head *h, char *msg, size_t cap) {
    h->query = "";
    if (!strcmp(t, "*")) {
        h->asterisk = 1;
        h->path = "*";
        if (h->method != HTTP_M_OPTIONS) {
            snprintf(msg, cap, "request target '*' is only for OPTIONS");
            return 400;
        }
        return 0;
    }
    char *path = t;
    if (t[0] != '/') {
        size_t skip = !strncasecmp(t, "http://", 7) ? 7 : !strncasecmp(t, "https://", 8) ? 8 : 0;
        size_t auth = skip ? strcspn(t + skip, "/?#") : 0;
        if (!skip || !auth) {
            snprintf(msg, cap,
                     "request target must be a path ('/...') or an absolute http(s) URI, not "
                     "'%.64s'",
                     t);
            return 400;
        }
        path = t + skip + auth; /* RFC 9112 §3.2.2: the authority is the target's, not Host's */
    }
    char *q = strchr(path, '?');
    if (q) *q = 0, h->query = q + 1;
    if (path[0] != '/') { /* absolute form without a path: "http://host" or "http://host?q" */
        h->path = "/";
        return 0;
    }
    if (decode(path, 0)) {
        snprintf(msg, cap, "request path contains an encoded NUL (%%00)");
        return 400;
    }
    h->path = path;
    return 0;
}

/* Next element of a comma-separated list in [*p, end): trimmed, maybe empty; 0 at the end. */
static int next_elem(const char **p, const char *end, const char **e0, const char **e1) {
    if (*p > end) return 0;
    const char *s = *p, *c = memchr(s, ',', (size_t)(end - s));
    const char *stop = c ? c : end;
    while (s < stop && (*s == ' ' || *s == '\t')) s++;
    const char *t = stop;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t')) t--;
    *e0 = s, *e1 = t;
    *p = stop + 1;
    return 1;
}

static int elem_is(const char *a, const char *b, const char *word) {
    size_t n = strlen(word);
    return (size_t)(b - a) == n && !strncasecmp(a, word, n);
}

static int check_field(char *p, size_t l, int line, int trailer, http_field *out, char *msg,
                       size_t cap) {
    const char *what = trailer ? "trailer field" : "header field";
    if (!l) {
        snprintf(msg, cap, "empty %s line %d", what, line);
        return 400;
    }
    if (p[0] == ' ' || p[0] == '\t') {
        snprintf(msg, cap, "obsolete line folding in %s line %d (RFC 9112 §5.2)", what, line);
        return 400;
    }
    char *colon = memchr(p, ':', l);
    if (!colon || colon == p) {
        snprintf(msg, cap, "malformed %s line %d (expected name: value)", what, line);
        return 400;
    }
    size_t nl = (size_t)(colon - p);
    if (p[nl - 1] == ' ' || p[nl - 1] == '\t') {
        snprintf(msg, cap, "whitespace between the %s name and ':' ('%.*s')", what,
                 (int)(nl > 64 ? 64 : nl), p);
        return 400;
    }
    for (size_t k = 0; k < nl; k++)
        if (!is_tchar((unsigned char)p[k])) {
            snprintf(msg, cap, "invalid character 0x%02x in the name of %s line %d",
                     (unsigned char)p[k], what, line);
            return 400;
        }
    char *v = colon + 1, *ve = p + l;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    for (char *c = v; c < ve; c++)
        if (is_ctl((unsigned char)*c) && *c != '\t') {
            snprintf(msg, cap, "%s '%.*s' contains %s (0x%02x)", what, (int)(nl > 64 ? 64 : nl), p,
                     *c == '\r' ? "a bare CR" : "a control character", (unsigned char)*c);
            return 400;
        }
    if (out) {
        *colon = 0;
        *ve = 0;
        out->name = p;
        out->value = v;
    }
    return 0;
}

int http_check_trailer_line(const char *line, size_t len, char *msg, size_t cap) {
    return check_field((char *)line, len, 0, 1, NULL, msg, cap);
}

/* Content-Length: every element of every field line a number, all equal (RFC 9110 §8.6). */
static int parse_length(const http_head *h, int *has, uint64_t *out, char *msg, size_t cap) {
    const char *first = NULL;
    size_t first_n = 0;
    for (int i = 0; i < h->n_fields; i++) {
        if (strcasecmp(h->fields[i].name, "Content-Length")) continue;
        const char *p = h->fields[i].value, *end = p + strlen(p), *a, *b;
        int any = 0;
        while (next_elem(&p, end, &a, &b)) {
            if (a == b) continue;
            any = 1;
            uint64_t v = 0;
            for (const char *c = a; c < b; c++) {
                if (*c < '0' || *c > '9') {
                    snprintf(msg, cap, "invalid Content-Length '%.32s'", h->fields[i].value);
                    return 400;
                }
                v = v > ((uint64_t)1 << 59) ? UINT64_MAX : v * 10 + (uint64_t)(*c - '0');
            }
            if (*has && v != *out) {
                snprintf(msg, cap, "conflicting Content-Length values (%.*s and %.*s)",
                         (int)(first_n > 24 ? 24 : first_n), first, (int)(b - a > 24 ? 24 : b - a),
                         a);
                return 400;
            }
            if (!*has) first = a, first_n = (size_t)(b - a);
            *has = 1, *out = v;
        }
        if (!any) {
            snprintf(msg, cap, "empty Content-Length");
            return 400;
        }
    }
    return 0;
}

static int parse_framing(http_head *h, char *msg, size_t cap) {
    int has_len = 0, te_lines = 0, codings = 0, chunked = 0, chunked_last = 0, hosts = 0;
    char unsupported[48] = "";
    uint64_t len = 0;
    int rc = parse_length(h, &has_len, &len, msg, cap);
    if (rc) return rc;
    for (int i = 0; i < h->n_fields; i++) {
        const char *name = h->fields[i].name, *val = h->fields[i].value;
        const char *p = val, *end = val + strlen(val), *a, *b;
        if (!strcasecmp(name, "Transfer-Encoding")) {
            te_lines++;
            while (next_elem(&p, end, &a, &b)) {
                const char *semi = memchr(a, ';', (size_t)(b - a));
                if (semi) {
                    b = semi;
                    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
                }
                if (a == b) continue;
                codings++;
                chunked_last = elem_is(a, b, "chunked");
                chunked += chunked_last;
                if (!chunked_last && !unsupported[0])
                    snprintf(unsupported, sizeof unsupported, "%.*s",
                             (int)(b - a > 40 ? 40 : b - a), a);
            }
        } else if (!strcasecmp(name, "Host")) {
            hosts++;
            if (strpbrk(val, " \t/\\?#@")) {
                snprintf(msg, cap, "invalid Host '%.64s'", val);
                return 400;
            }
        } else if (!strcasecmp(name, "Connection")) {
            while (next_elem(&p, end, &a, &b)) {
                if (elem_is(a, b, "close")) h->close = 1;
                if (elem_is(a, b, "keep-alive")) h->keep_alive_10 = 1;
            }
        } else if (!strcasecmp(name, "Expect")) {
            if (strcasecmp(val, "100-continue")) {
                snprintf(msg, cap, "Expect '%.64s' is not supported (only 100-continue)", val);
                return 417;
            }
            h->expect_continue = h->minor >= 1;
        } else if (!strcasecmp(name, "Origin") && !h->origin) {
            h->origin = val;
        }
    }
    if (hosts > 1) {
        snprintf(msg, cap, "more than one Host header field");
        return 400;
    }
    if (!hosts && h->minor >= 1) {
        snprintf(msg, cap, "missing Host header field (required in HTTP/1.1)");
        return 400;
    }
    if (h->minor == 0) {
        h->keep_alive_10 = h->keep_alive_10 && !h->close;
        h->close = !h->keep_alive_10;
    } else {
        h->keep_alive_10 = 0;
    }
    if (te_lines) {
        if (h->minor == 0) {
            snprintf(msg, cap, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)");
            return 400;
        }
        if (!codings) {
            snprintf(msg, cap, "empty Transfer-Encoding");
            return 400;
        }
        if (unsupported[0]) {
            snprintf(msg, cap, "Transfer-Encoding '%s' is not supported (only chunked)",
                     unsupported);
            return 501;
        }
        if (chunked != 1 || !chunked_last) {
            snprintf(msg, cap, "Transfer-Encoding: chunked must be the last coding, once");
            return 400;
        }
        h->chunked = 1;
        h->length = 0;
        if (has_len) h->close = 1; /* RFC 9112 §6.1: never trust the connection afterwards */
    } else {
        h->length = has_len ? len : 0;
    }
    return 0;
}

int http_parse_head(char *buf, size_t len, http_head *h, char *msg, size_t cap) {
    memset(h, 0, sizeof *h);
    h->close = 1; /* until the head has proved sound */
    h->query = "";
    int rc = http_check_request_line(buf, len, msg, cap);
    if (rc) return rc;
    char *nl = memchr(buf, '\n', len);
    if (!nl) { /* cannot happen with a head from http_head_feed */
        snprintf(msg, cap, "incomplete request head");
        return 400;
    }
    char *sp1 = strchr(buf, ' '), *sp2 = strchr(sp1 + 1, ' ');
    *sp1 = 0, *sp2 = 0;
    h->minor = sp2[8] >= '1' ? 1 : 0; /* HTTP/1.2 .. HTTP/1.9 read as 1.1 */
    static const char *const known[] = {"GET", "HEAD", "POST", "OPTIONS", "DELETE", "PATCH"};
    h->method = HTTP_M_OTHER;
    for (int m = 0; m < 6; m++)
        if (!strcmp(buf, known[m])) h->method = (http_method)m;
    h->method_name = buf;
    if ((rc = set_target(sp1 + 1, h, msg, cap))) return rc;

    char *p = nl + 1, *end = buf + len;
    for (int line = 2;; line++) {
        char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) { /* cannot happen with a head from http_head_feed */
            snprintf(msg, cap, "incomplete request head (no empty line after the fields)");
            return 400;
        }
        size_t l = (size_t)(e - p);
        if (l && p[l - 1] == '\r') l--;
        if (!l) break;
        if (h->n_fields == HTTP_MAX_FIELDS) {
            snprintf(msg, cap, "too many header fields (over %d)", HTTP_MAX_FIELDS);
            return 431;
        }
        if ((rc = check_field(p, l, line, 0, &h->fields[h->n_fields], msg, cap))) return rc;
        h->n_fields++;
        p = e + 1;
    }
    h->close = 0;
    if ((rc = parse_framing(h, msg, cap))) {
        h->close = 1;
        return rc;
    }
    return 0;
}

const char *http_head_field(const http_head *h, const char *name) {
    for (int i = 0; i < h->n_fields; i++)
        if (!strcasecmp(h->fields[i].name, name)) return h->fields[i].value;
    return NULL;
}

int http_parse_query(const char *query, char *mem, http_arg *args, int cap) {
    strcpy(mem, query);
    int n = 0;
    for (char *p = mem; *p && n < cap;) {
        char *amp = strchr(p, '&'), *next = amp ? amp + 1 : p + strlen(p);
        if (amp) *amp = 0;
        if (*p) {
            char *eq = strchr(p, '=');
            if (eq) *eq = 0;
            if (decode(p, 1) || (eq && decode(eq + 1, 1))) return -1;
            args[n].name = p;
            args[n].value = eq ? eq + 1 : NULL;
            n++;
        }
        p = next;
    }
    return n;
}

int http_parse_chunk_size(const char *line, size_t len, uint64_t *size, char *msg, size_t cap) {
    size_t i = 0, digits = 0;
    uint64_t v = 0;
    while (i < len && line[i] == '0') i++;
    while (i < len && hexval((unsigned char)line[i]) >= 0) {
        if (++digits <= 15) v = v * 16 + (uint64_t)hexval((unsigned char)line[i]);
        i++;
    }
    int shown = len > 32 ? 32 : (int)len; /* line is not NUL-terminated */
    if (i == 0) {
        snprintf(msg, cap, "malformed chunk size '%.*s'", shown, line);
        return 400;
    }
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i < len && line[i] != ';') {
        snprintf(msg, cap, "malformed chunk size '%.*s'", shown, line);
        return 400;
    }
    for (; i < len; i++)
        if (is_ctl((unsigned char)line[i]) && line[i] != '\t') {
            snprintf(msg, cap, "chunk extension contains a control character (0x%02x)",
                     (unsigned char)line[i]);
            return 400;
        }
    *size = digits > 15 ? UINT64_MAX : v;
    return 0;
}

int http_chunked_feed(http_chunked *c, const char *in, size_t len, uint64_t max_body, size_t *used,
                      const char **data, size_t *data_len, char *msg, size_t cap) {
    size_t pos = 0;
    *data = NULL, *data_len = 0;
    for (;;) {
        const char *p = in + pos;
        size_t avail = len - pos;
        *used = pos;
        switch (c->state) {
        case HTTP_CK_DATA: {
            if (!avail) return HTTP_CK_MORE;
            size_t take = avail < c->remaining ? avail : (size_t)c->remaining;
            *data = p, *data_len = take;
            *used = pos + take;
            c->remaining -= take;
            c->total += take;
            if (!c->remaining) c->state = HTTP_CK_DATA_END;
            return HTTP_CK_OUT;
        }
        case HTTP_CK_DATA_END:
            if (avail && p[0] == '\n') {
                pos += 1;
            } else if (avail >= 2 && p[0] == '\r' && p[1] == '\n') {
                pos += 2;
            } else if (avail && !(avail == 1 && p[0] == '\r')) {
                snprintf(msg, cap, "chunk data is not followed by CRLF");
                return 400;
            } else {
                return HTTP_CK_MORE;
            }
            c->state = HTTP_CK_SIZE;
            continue;
        case HTTP_CK_SIZE:
        case HTTP_CK_TRAILER: {
            /* a line: its length (line end excluded) bounds it whether or not its end has
             * come, so that the same bytes get the same answer however they are split */
            const char *nl = memchr(p, '\n', avail);
            size_t raw = nl ? (size_t)(nl - p) : avail; /* the line's bytes before any LF */
            size_t n = raw && p[raw - 1] == '\r' ? raw - 1 : raw; /* its content, at least */
            if (c->state == HTTP_CK_SIZE) {
                if (n > HTTP_CHUNK_LINE_MAX) {
                    snprintf(msg, cap, "chunk size line is over %d bytes", HTTP_CHUNK_LINE_MAX);
                    return 400;
                }
                if (!nl) return HTTP_CK_MORE;
                uint64_t size = 0;
                int rc = http_parse_chunk_size(p, n, &size, msg, cap);
                if (rc) return rc;
                if (size > max_body - c->total) {
                    char num[32] = "2^60 or more";
                    if (size != UINT64_MAX)
                        snprintf(num, sizeof num, "%llu", (unsigned long long)size);
                    snprintf(msg, cap,
                             "request body is over the limit of %llu bytes (a chunk of %s bytes "
                             "after %llu)",
                             (unsigned long long)max_body, num, (unsigned long long)c->total);
                    return 413;
                }
                pos += raw + 1;
                c->remaining = size;
                c->state = size ? HTTP_CK_DATA : HTTP_CK_TRAILER;
            } else {
                /* the section so far with this line and its LF, at least */
                if (c->trailer_bytes + raw + 1 > HTTP_HEAD_MAX) {
                    snprintf(msg, cap, "trailer fields are over %d bytes", HTTP_HEAD_MAX);
                    return 431;
                }
                if (!nl) return HTTP_CK_MORE;
                pos += raw + 1;
                c->trailer_bytes += raw + 1;
                if (!n) {
                    c->state = HTTP_CK_DONE;
                    *used = pos;
                    return HTTP_CK_END;
                }
                int rc = http_check_trailer_line(p, n, msg, cap);
                if (rc) return rc;
            }
            continue;
        }
        case HTTP_CK_DONE:
            return HTTP_CK_END;
        }
    }
}

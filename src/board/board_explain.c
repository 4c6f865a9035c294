/* board_explain.c — the attribution images of a run (log.explain writes them to
 * <run>/explain/epoch-<N>-<method>.png, src/train/tb_explain.c) in kiln board:
 *   details JSON:  "explain": [{"file", "epoch", "method"}, ...]   (ascending epochs)
 *   GET /api/runs/EXP/RUN/explain/FILE                              the PNG itself
 * FILE must match epoch-<digits>-<letters, digits, _>.png, so no path outside the folder can be
 * named; at most 64 images are listed (the newest ones) and each is at most 16 MiB.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board/board_internal.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"

#define MAX_LISTED 64

/* 1 when name is epoch-<N>-<method>.png; *epoch gets N */
static int explain_name(const char *name, long long *epoch) {
    if (strncmp(name, "epoch-", 6)) return 0;
    char *end;
    *epoch = strtoll(name + 6, &end, 10);
    if (end == name + 6 || *end != '-' || *epoch < 0) return 0;
    const char *m = end + 1, *dot = strrchr(m, '.');
    if (!dot || dot == m || strcmp(dot, ".png")) return 0;
    for (const char *c = m; c < dot; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) return 0;
    return 1;
}

typedef struct {
    long long epoch;
    char name[128];
} item;

static int by_epoch(const void *a, const void *b) {
    const item *x = a, *y = b;
    return x->epoch < y->epoch ? -1 : x->epoch > y->epoch ? 1 : strcmp(x->name, y->name);
}

void board_put_explain(kiln_sbuf *s, const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/explain", dir);
    kiln_sbuf_puts(s, ",\"explain\":[");
    DIR *d = opendir(path);
    item *it = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        long long ep;
        if (strlen(e->d_name) >= sizeof it->name || !explain_name(e->d_name, &ep)) continue;
        if (n == cap) {
            item *g = realloc(it, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *g);
            if (!g) break;
            it = g;
        }
        it[n].epoch = ep;
        memcpy(it[n++].name, e->d_name, strlen(e->d_name) + 1); /* shorter than name: above */
    }
    if (d) closedir(d);
    if (n) qsort(it, (size_t)n, sizeof *it, by_epoch);
    for (int i = n > MAX_LISTED ? n - MAX_LISTED : 0, first = 1; i < n; i++, first = 0) {
        const char *m = strchr(it[i].name + 6, '-') + 1;
        kiln_sbuf_printf(s, "%s{\"file\":", first ? "" : ",");
        kiln_sbuf_json_str(s, it[i].name);
        kiln_sbuf_printf(s, ",\"epoch\":%lld,\"method\":", it[i].epoch);
        kiln_sbuf_json_strn(s, m, strlen(m) - 4);
        kiln_sbuf_putc(s, '}');
    }
    kiln_sbuf_putc(s, ']');
    free(it);
}

void board_serve_explain(kiln_http_response *resp, const char *dir, const char *file) {
    long long ep;
    if (!explain_name(file, &ep)) {
        kiln_http_json_error(resp, 400,
                             "'%s' is not an attribution image name "
                             "(epoch-<N>-<method>.png)",
                             file);
        return;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/explain/%s", dir, file);
    void *data = NULL;
    size_t len = 0;
    if (kiln_file_read_all(path, &data, &len, (size_t)16 << 20)) {
        kiln_http_json_error(resp, 404, "no attribution image %s", path);
        return;
    }
    kiln_sbuf b = KILN_SBUF_INIT;
    kiln_sbuf_put(&b, data, len);
    kiln_free(data);
    if (b.failed) {
        kiln_http_json_error(resp, 500, "out of memory");
        return;
    }
    resp->content_type = "image/png";
    kiln_http_body_sbuf(resp, &b);
}

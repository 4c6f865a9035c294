/* profile.c — see profile.h. Events are few (ops x steps), so the table is a simple
 * aggregate-then-sort; times are relative to the first event. */
#include "train/profile.h"

#include <stdlib.h>
#include <string.h>

#include "kiln/fileio.h"

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

kiln_status kiln_profile_write_trace(const char *path, const kiln_op_event *ev, int n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return kiln_error(KILN_ERR_NOMEM, "profile: out of memory");
    double t0 = n ? ev[0].start_us : 0;
    fputs("{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n", f);
    fputs("{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 1, \"tid\": 1, \"args\": {\"name\": \"kiln train\"}}", f);
    for (int i = 0; i < n; i++) {
        fputs(",\n{\"name\": ", f);
        json_string(f, ev[i].name);
        fputs(", \"cat\": ", f);
        json_string(f, ev[i].phase);
        fprintf(f, ", \"ph\": \"X\", \"ts\": %.3f, \"dur\": %.3f, \"pid\": 1, \"tid\": 1, \"args\": {\"op\": ",
                ev[i].start_us - t0, ev[i].dur_us);
        json_string(f, ev[i].op);
        fputs("}}", f);
    }
    fputs("\n]}\n", f);
    fclose(f);
    kiln_status st = kiln_file_write_atomic(path, buf, len);
    free(buf);
    return st;
}

typedef struct {
    const char *name, *op, *phase;
    double total;
    int count;
} row;

static int by_total(const void *a, const void *b) {
    double x = ((const row *)a)->total, y = ((const row *)b)->total;
    return (x < y) - (x > y);
}

void kiln_profile_print_table(FILE *f, const kiln_op_event *ev, int n, int steps) {
    row *rows = calloc((size_t)(n ? n : 1), sizeof *rows);
    if (!rows) return;
    int nr = 0;
    double all = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < nr && !(strcmp(rows[k].name, ev[i].name) == 0 && strcmp(rows[k].phase, ev[i].phase) == 0)) k++;
        if (k == nr) rows[nr++] = (row){ev[i].name, ev[i].op, ev[i].phase, 0, 0};
        rows[k].total += ev[i].dur_us, rows[k].count++;
        all += ev[i].dur_us;
    }
    qsort(rows, (size_t)nr, sizeof *rows, by_total);
    fprintf(f, "per-op time over %d profiled steps (%.2f ms per step):\n", steps, steps ? all / 1e3 / steps : 0);
    fprintf(f, "  %-28s %-22s %-9s %12s %8s\n", "node", "op", "phase", "ms/step", "share");
    for (int i = 0; i < nr; i++)
        fprintf(f, "  %-28s %-22s %-9s %12.3f %7.1f%%\n", rows[i].name, rows[i].op, rows[i].phase,
                steps ? rows[i].total / 1e3 / steps : 0, all > 0 ? 100 * rows[i].total / all : 0);
    free(rows);
}

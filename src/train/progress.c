/* progress.c — see progress.h. */
#include "train/progress.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

double kiln_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void kiln_progress_epoch_start(kiln_progress *p) {
    p->t_start = kiln_now();
    p->rows = 0;
}

double kiln_progress_rate(const kiln_progress *p) {
    double dt = kiln_now() - p->t_start;
    return dt > 0 ? (double)p->rows / dt : 0;
}

static void emit(kiln_progress *p, const char *line, int live) {
    if (!p->quiet && p->out) {
        if (live) {
            fprintf(p->out, "\r%-100s", line);
            p->line_open = 1;
        } else {
            if (p->line_open) fputc('\n', p->out);
            p->line_open = 0;
            fprintf(p->out, "%s\n", line);
        }
        fflush(p->out);
    }
    if (!live && p->log) p->log(p->log_ctx, line);
}

void kiln_progress_step(kiln_progress *p, int64_t e, int64_t E, int64_t b, int64_t nb, int64_t step,
                        double loss, double lr, int rows) {
    p->rows += rows;
    double rate = kiln_progress_rate(p), eta = rate > 0 ? (double)(nb - b) * (double)p->rows / (double)b / rate : 0;
    char line[256], st[32] = "";
    if (p->n_stages > 0) snprintf(st, sizeof st, "stage %d/%d  ", p->stage, p->n_stages);
    snprintf(line, sizeof line,
             "%sepoch %lld/%lld  step %lld  batch %lld/%lld  loss %.4f  lr %.3g  %.0f samples/s  "
             "ETA %d:%02d",
             st, (long long)e + 1, (long long)E, (long long)step, (long long)b, (long long)nb, loss,
             lr, rate, (int)(eta / 60), (int)eta % 60);
    if (p->tty) emit(p, line, 1);
    if (p->every > 0 && step % p->every == 0) {
        if (p->tty) { /* log.txt still gets the plain line */
            if (p->log) p->log(p->log_ctx, line);
        } else {
            emit(p, line, 0);
        }
    }
}

void kiln_progress_line(kiln_progress *p, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    emit(p, line, 0);
}

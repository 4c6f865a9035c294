/* progress.h — what the terminal shows while training: a live line (step, loss, samples/s, ETA)
 * rewritten in place on a TTY, plain lines every N steps otherwise; the same plain lines go to
 * the run's log.txt through the callback. */
#ifndef KILN_PROGRESS_H
#define KILN_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *out;
    int tty;         /* rewrite one line with \r */
    int quiet;       /* nothing on the terminal (log.txt still gets its lines) */
    int64_t every;   /* plain line every N steps (non-TTY) */
    double t_start;  /* of this epoch */
    int64_t rows;    /* samples seen this epoch */
    int line_open;   /* a \r line is on screen */
    int stage, n_stages; /* stages: "stage 2/3" leads the step line when n_stages > 0 */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} kiln_progress;

double kiln_now(void); /* monotonic seconds */
void kiln_progress_epoch_start(kiln_progress *p);
/* After a step: epoch e of E, batch b of nb, step, running loss, learning rate. */
void kiln_progress_step(kiln_progress *p, int64_t e, int64_t E, int64_t b, int64_t nb, int64_t step,
                        double loss, double lr, int rows);
/* A full line (epoch summaries, messages): ends the live line first. */
void kiln_progress_line(kiln_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Samples per second this epoch so far. */
double kiln_progress_rate(const kiln_progress *p);

#endif

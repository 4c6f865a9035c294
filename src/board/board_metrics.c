/* board_metrics.c — a run's metric points for the board: read incrementally from metrics.jsonl,
 * kept per (name, split) series, and written as JSON for a client that already holds some.
 *
 * Reading. metrics.jsonl only grows (kiln/run.h): each update stats it and, when it is the same
 * file and longer than what was read, reads from the byte after the last complete line
 * (kiln_run_read_metrics's offset), so following a live run costs only its new lines. A file that
 * was replaced (another inode) or is shorter than what was read is read again from the start,
 * and rev changes. A half-written last line is not read until its newline arrives.
 *
 * Order. A series keeps its points sorted by step, one per step: the last line for a step wins
 * (a resumed run logs again the steps after its checkpoint). Points normally arrive in step
 * order and are appended; one that lands at or before a step already held replaces or is
 * inserted, and rev changes, because a client may hold the old value.
 *
 * Cursor. Every point read gets the next seq. A client sends the rev and the seq ("next") of its
 * last answer; when rev still matches, every point with a higher seq was appended after the last
 * rev change, so such points are exactly the tails of the series, found by walking back from
 * each end. (A step is not a usable cursor: the validation points of an epoch are logged at the
 * same step as its last training points, after an evaluation that takes a while.)
 *
 * Stages. Points of a run with stages: carry "stage"; each series keeps it per point (sent as a
 * "stage" array only when the run has any), and the run keeps, per stage, the steps and epochs
 * its points cover (the stage boundaries) and the stage of the last point read (the current one),
 * sent whole with every answer: they are small.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "board/board_internal.h"
#include "run/run_internal.h"

#define SERIES_MAX 4096 /* (name, split) pairs kept per run; more are counted as skipped */

void board_metrics_init(board_metrics *m, int64_t rev) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->rev = rev;
}

static void free_points(board_metrics *m) {
    for (int i = 0; i < m->n_series; i++) {
        board_series *s = &m->series[i];
        free(s->name), free(s->step), free(s->seq), free(s->value), free(s->wall), free(s->epoch);
        free(s->stage);
    }
    free(m->series);
    m->series = NULL;
    m->n_series = m->cap_series = 0;
    free(m->stages);
    m->stages = NULL;
    m->n_stages = m->cap_stages = m->stage = 0;
    m->offset = m->seq = m->skipped = 0;
    memset(&m->sig, 0, sizeof m->sig);
}

void board_metrics_reset(board_metrics *m) {
    if (m->n_series || m->offset || m->sig.exists) m->rev++;
    free_points(m);
}

void board_metrics_free(board_metrics *m) {
    free_points(m);
    pthread_mutex_destroy(&m->mu);
}

/* ---- reading ---- */

typedef struct {
    board_metrics *m;
    int hint; /* the series the previous point went to (points come in runs of one name) */
    int oom;
} ingest_ctx;

static board_series *find_series(ingest_ctx *c, const char *name, kiln_split split) {
    board_metrics *m = c->m;
    for (int k = 0; k < m->n_series; k++) {
        int i = (c->hint + k) % m->n_series;
        if (m->series[i].split == split && !strcmp(m->series[i].name, name))
            return c->hint = i, &m->series[i];
    }
    if (m->n_series == SERIES_MAX) return NULL;
    if (m->n_series == m->cap_series) {
        int cap = m->cap_series ? 2 * m->cap_series : 8;
        board_series *s = realloc(m->series, (size_t)cap * sizeof *s);
        if (!s) return c->oom = 1, NULL;
        m->series = s, m->cap_series = cap;
    }
    board_series *s = &m->series[m->n_series];
    memset(s, 0, sizeof *s);
    if (!(s->name = strdup(name))) return c->oom = 1, NULL;
    s->split = split;
    c->hint = m->n_series++;
    return s;
}

static int grow(board_series *s) {
    if (s->n < s->cap) return 0;
    int cap = s->cap ? 2 * s->cap : 64;
    int64_t *step = realloc(s->step, (size_t)cap * sizeof *step);
    if (step) s->step = step;
    int64_t *seq = realloc(s->seq, (size_t)cap * sizeof *seq);
    if (seq) s->seq = seq;
    double *value = realloc(s->value, (size_t)cap * sizeof *value);
    if (value) s->value = value;
    double *wall = realloc(s->wall, (size_t)cap * sizeof *wall);
    if (wall) s->wall = wall;
    double *epoch = realloc(s->epoch, (size_t)cap * sizeof *epoch);
    if (epoch) s->epoch = epoch;
    int *stage = realloc(s->stage, (size_t)cap * sizeof *stage);
    if (stage) s->stage = stage;
    if (!step || !seq || !value || !wall || !epoch || !stage) return -1;
    s->cap = cap;
    return 0;
}

/* Widens the steps and epochs of p's stage to cover p. */
static int note_stage(ingest_ctx *c, const kiln_metric_point *p) {
    board_metrics *m = c->m;
    int k = m->n_stages;
    while (k > 0 && m->stages[k - 1].stage > p->stage) k--; /* stages come mostly in order */
    if (k == 0 || m->stages[k - 1].stage != p->stage) {     /* a new stage: insert at k */
        if (m->n_stages == m->cap_stages) {
            int cap = m->cap_stages ? 2 * m->cap_stages : 4;
            board_stage *more = realloc(m->stages, (size_t)cap * sizeof *more);
            if (!more) return c->oom = 1;
            m->stages = more, m->cap_stages = cap;
        }
        memmove(m->stages + k + 1, m->stages + k, (size_t)(m->n_stages - k) * sizeof *m->stages);
        m->n_stages++;
        m->stages[k] = (board_stage){p->stage, p->step, p->step, NAN, NAN};
    } else {
        k--;
    }
    board_stage *g = &m->stages[k];
    if (p->step < g->first_step) g->first_step = p->step;
    if (p->step > g->last_step) g->last_step = p->step;
    if (isfinite(p->epoch) && !(p->epoch >= g->first_epoch)) g->first_epoch = p->epoch;
    if (isfinite(p->epoch) && !(p->epoch <= g->last_epoch)) g->last_epoch = p->epoch;
    return 0;
}

static int ingest(const kiln_metric_point *p, void *ctx) {
    ingest_ctx *c = ctx;
    board_metrics *m = c->m;
    board_series *s = find_series(c, p->name, p->split);
    if (!s) {
        m->skipped++;
        return c->oom;
    }
    int at = s->n;
    if (s->n && p->step <= s->step[s->n - 1]) { /* re-logged or out of order: find its place */
        int lo = 0, hi = s->n;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (s->step[mid] < p->step)
                lo = mid + 1;
            else
                hi = mid;
        }
        at = lo;
        m->rev++;
    }
    if (at == s->n || s->step[at] != p->step) {
        if (grow(s)) return c->oom = 1;
        size_t tail = (size_t)(s->n - at);
        memmove(s->step + at + 1, s->step + at, tail * sizeof *s->step);
        memmove(s->seq + at + 1, s->seq + at, tail * sizeof *s->seq);
        memmove(s->value + at + 1, s->value + at, tail * sizeof *s->value);
        memmove(s->wall + at + 1, s->wall + at, tail * sizeof *s->wall);
        memmove(s->epoch + at + 1, s->epoch + at, tail * sizeof *s->epoch);
        memmove(s->stage + at + 1, s->stage + at, tail * sizeof *s->stage);
        s->n++;
    }
    s->step[at] = p->step;
    s->seq[at] = ++m->seq;
    s->value[at] = p->value;
    s->wall[at] = p->wall_time;
    s->epoch[at] = p->epoch;
    s->stage[at] = p->stage;
    m->stage = p->stage;
    return p->stage > 0 ? note_stage(c, p) : 0;
}

kiln_status board_metrics_update(board_metrics *m, const char *dir) {
    char path[4096];
    kiln_status s = kiln_run_join(path, sizeof path, dir, "metrics.jsonl");
    if (s) return s;
    board_sig sig;
    if (!board_sig_of(path, &sig)) { /* not there (yet, or any more) */
        board_metrics_reset(m);
        return KILN_OK;
    }
    if (m->sig.exists && (sig.dev != m->sig.dev || sig.ino != m->sig.ino || sig.size < m->offset))
        board_metrics_reset(m);
    if (m->sig.exists && sig.size == m->offset) {
        m->sig = sig;
        return KILN_OK;
    }
    ingest_ctx c = {.m = m};
    int64_t skipped = 0;
    s = kiln_run_read_metrics(path, &m->offset, ingest, &c, &skipped);
    if (!s && c.oom) s = kiln_error(KILN_ERR_NOMEM, "%s: out of memory for its points", path);
    if (s) {
        board_metrics_reset(m);
        return s;
    }
    m->skipped += skipped;
    m->sig = sig;
    return KILN_OK;
}

/* ---- writing ---- */

static void put_steps(kiln_sbuf *b, const int64_t *v, int from, int n) {
    for (int i = from; i < n; i++) {
        if (i > from) kiln_sbuf_putc(b, ',');
        kiln_sbuf_i64(b, v[i]);
    }
}

static void put_numbers(kiln_sbuf *b, const double *v, int from, int n) {
    for (int i = from; i < n; i++) {
        if (i > from) kiln_sbuf_putc(b, ',');
        board_json_number(b, v[i]);
    }
}

void board_metrics_render(const board_metrics *m, int64_t after, int reset, kiln_sbuf *out) {
    kiln_sbuf_printf(out, "\"rev\":%lld,\"next\":%lld,\"reset\":%s,\"skipped\":%lld,\"series\":[",
                     (long long)m->rev, (long long)m->seq, reset ? "true" : "false",
                     (long long)m->skipped);
    int first = 1;
    for (int k = 0; k < m->n_series; k++) {
        const board_series *s = &m->series[k];
        int from = 0;
        if (!reset)
            for (from = s->n; from > 0 && s->seq[from - 1] > after;) from--;
        if (from == s->n) continue;
        if (!first) kiln_sbuf_putc(out, ',');
        first = 0;
        kiln_sbuf_puts(out, "{\"name\":");
        kiln_sbuf_json_str(out, s->name);
        kiln_sbuf_printf(out, ",\"split\":\"%s\",\"step\":[", kiln_split_name(s->split));
        put_steps(out, s->step, from, s->n);
        kiln_sbuf_puts(out, "],\"value\":[");
        put_numbers(out, s->value, from, s->n);
        kiln_sbuf_puts(out, "],\"wall_time\":[");
        for (int i = from; i < s->n; i++) {
            if (i > from) kiln_sbuf_putc(out, ',');
            kiln_sbuf_printf(out, "%.6f", s->wall[i]);
        }
        kiln_sbuf_puts(out, "],\"epoch\":[");
        put_numbers(out, s->epoch, from, s->n);
        if (m->n_stages) {
            kiln_sbuf_puts(out, "],\"stage\":[");
            for (int i = from; i < s->n; i++) {
                if (i > from) kiln_sbuf_putc(out, ',');
                kiln_sbuf_printf(out, "%d", s->stage[i]);
            }
        }
        kiln_sbuf_puts(out, "]}");
    }
    kiln_sbuf_putc(out, ']');
    board_metrics_render_stages(m, out);
}

void board_metrics_render_stages(const board_metrics *m, kiln_sbuf *out) {
    if (m->stage > 0)
        kiln_sbuf_printf(out, ",\"stage\":%d,\"stages\":[", m->stage);
    else
        kiln_sbuf_puts(out, ",\"stage\":null,\"stages\":[");
    for (int k = 0; k < m->n_stages; k++) {
        const board_stage *g = &m->stages[k];
        kiln_sbuf_printf(out, "%s{\"stage\":%d,\"first_step\":%lld,\"last_step\":%lld",
                         k ? "," : "", g->stage, (long long)g->first_step, (long long)g->last_step);
        kiln_sbuf_puts(out, ",\"first_epoch\":");
        board_json_number(out, g->first_epoch);
        kiln_sbuf_puts(out, ",\"last_epoch\":");
        board_json_number(out, g->last_epoch);
        kiln_sbuf_putc(out, '}');
    }
    kiln_sbuf_putc(out, ']');
}

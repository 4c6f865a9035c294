/* board_studies.c — kiln tune's studies for the board: /api/studies (the list) and
 * /api/studies/NAME (one study and its trials), read from the registry (runs/kiln.db: the
 * studies and trials tables of src/registry/registry_study.c).
 *
 * Each request opens the registry for reading only (kiln_registry_open_read: the board never
 * creates, upgrades or writes kiln.db), reads, and closes it: SQLite isolates the read from the
 * tuner's writes, and no board state is shared, so no lock of the board is taken. A runs folder
 * without a kiln.db (or with one older than studies) has no studies. A trial's run is its
 * registry id ("<experiment folder>/<run folder>"), the key the board's runs table uses, so the
 * page links a trial to its run. params is the trial's JSON object as the tuner wrote it (cJSON output).
 */
#include <stdio.h>
#include <string.h>

#include "board/board_internal.h"
#include "kiln/registry.h"

static void put_str(kiln_sbuf *s, const char *key, const char *v) {
    kiln_sbuf_printf(s, "\"%s\":", key);
    if (v) kiln_sbuf_json_str(s, v);
    else kiln_sbuf_puts(s, "null");
}

static int put_study(const kiln_registry_study *r, void *ctx) {
    kiln_sbuf *s = ctx;
    if (s->len && s->data[s->len - 1] == '}') kiln_sbuf_putc(s, ',');
    kiln_sbuf_putc(s, '{');
    put_str(s, "name", r->name);
    kiln_sbuf_putc(s, ',');
    put_str(s, "experiment", r->experiment);
    kiln_sbuf_putc(s, ',');
    put_str(s, "metric", r->metric);
    kiln_sbuf_putc(s, ',');
    put_str(s, "direction", r->direction);
    kiln_sbuf_putc(s, ',');
    put_str(s, "created", r->created);
    kiln_sbuf_printf(s, ",\"trials\":%lld,\"finished\":%lld,\"pruned\":%lld,\"failed\":%lld,"
                        "\"running\":%lld,\"best\":",
                     (long long)r->trials, (long long)r->finished, (long long)r->pruned,
                     (long long)r->failed, (long long)r->running);
    if (r->has_best) board_json_number(s, r->best);
    else kiln_sbuf_puts(s, "null");
    kiln_sbuf_putc(s, '}');
    return 0;
}

static int put_trial(const kiln_registry_trial *t, void *ctx) {
    kiln_sbuf *s = ctx;
    if (s->len && s->data[s->len - 1] == '}') kiln_sbuf_putc(s, ',');
    kiln_sbuf_printf(s, "{\"number\":%lld,", (long long)t->number);
    put_str(s, "state", t->state);
    kiln_sbuf_putc(s, ',');
    put_str(s, "run", t->run);
    kiln_sbuf_puts(s, ",\"params\":");
    /* the tuner's JSON object; anything else is passed on as a string rather than trusted */
    if (t->params && t->params[0] == '{' && t->params[strlen(t->params) - 1] == '}')
        kiln_sbuf_puts(s, t->params);
    else
        kiln_sbuf_puts(s, "{}");
    kiln_sbuf_puts(s, ",\"value\":");
    if (t->has_value) board_json_number(s, t->value);
    else kiln_sbuf_puts(s, "null");
    kiln_sbuf_puts(s, ",\"resource\":");
    if (t->has_resource) board_json_number(s, t->resource);
    else kiln_sbuf_puts(s, "null");
    kiln_sbuf_putc(s, ',');
    put_str(s, "start_time", t->start_time);
    kiln_sbuf_putc(s, ',');
    put_str(s, "end_time", t->end_time);
    kiln_sbuf_putc(s, ',');
    put_str(s, "message", t->message);
    kiln_sbuf_putc(s, '}');
    return 0;
}

void board_api_studies(kiln_board *b, kiln_http_response *resp, const char *name) {
    kiln_sbuf s = KILN_SBUF_INIT;
    kiln_registry *reg = NULL;
    kiln_status st = kiln_registry_open_read(b->runs_dir, &reg);
    if (st == KILN_ERR_NOTFOUND && !name) { /* no registry (yet): no studies */
        kiln_error_clear();
        kiln_sbuf_puts(&s, "{\"studies\":[]}");
        kiln_http_add_header(resp, "Cache-Control", "no-store");
        kiln_http_body_sbuf(resp, &s);
        return;
    }
    if (!st) {
        kiln_sbuf_puts(&s, name ? "{\"study\":" : "{\"studies\":[");
        st = kiln_registry_studies(reg, name, put_study, &s);
        if (!st && name) {
            kiln_sbuf_puts(&s, ",\"trials\":[");
            st = kiln_registry_trials(reg, name, put_trial, &s);
            kiln_sbuf_puts(&s, "]}");
        } else if (!st) {
            kiln_sbuf_puts(&s, "]}");
        }
    }
    kiln_registry_close(reg);
    if (st) {
        kiln_sbuf_free(&s);
        if (st == KILN_ERR_NOTFOUND)
            kiln_http_json_error(resp, 404, "no study '%s': %s", name, kiln_last_error());
        else
            kiln_http_json_error(resp, 500, "%s", kiln_last_error());
        return;
    }
    kiln_http_add_header(resp, "Cache-Control", "no-store");
    kiln_http_body_sbuf(resp, &s);
}

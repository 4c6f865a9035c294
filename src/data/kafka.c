/* kafka.c — Kafka topics as a data source, and the plain producer and consumer (kiln/kafka.h).
 * The only file with librdkafka's consumer and producer in it (kafka_codec.c has the formats).
 *
 * Windows. The source keeps, per partition it has seen, its position (the next offset to read)
 * and the range [start, end) it gave to the window in progress. A new stream window polls from
 * the positions until it has epoch_records good records (or epoch_seconds passed with at least
 * one); a window named by a checkpoint is read again by its ranges. Either way the records are
 * sorted by (topic, partition, offset) before they become rows, so a window's rows depend only
 * on its ranges. After every window the assigned partitions are sought back to the positions,
 * so nothing polled beyond a window is lost.
 *
 * Group. Stream mode subscribes (a group member: partitions are shared with other members, and
 * the rebalance callback assigns each partition at the source's position for it, or the
 * committed offset, else the beginning). Replay mode assigns every partition itself. Offsets
 * are committed only by kiln_kafka_source_commit (enable.auto.commit is off).
 *
 * Waiting. Polls are 100 ms. The error callback notes brokers going down; the rebalance
 * callback notes revocations. A window that waits on either, or gets nothing for 5 s, logs one
 * "training paused" line and one "continues" line when records flow again.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/data_internal.h"
#include "kiln/fileio.h"
#include "kiln/kafka.h"

#define IDLE_LOG_S 5.0

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk, (void)fac;
    if (getenv("KILN_KAFKA_DEBUG") || level <= 2) fprintf(stderr, "librdkafka: %s\n", buf);
}

/* A configuration with the connection's settings; NULL with the error set. */
static rd_kafka_conf_t *make_conf(const kiln_kafka_conn *c, int consumer) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    struct {
        const char *k, *v;
    } base[] = {{"bootstrap.servers", c->brokers},
                {"client.id", "kiln"},
                {consumer ? "group.id" : NULL, c->group_id ? c->group_id : "kiln"},
                {consumer ? "enable.auto.commit" : NULL, "false"},
                {consumer ? "auto.offset.reset" : NULL, "earliest"},
                {consumer ? "enable.partition.eof" : NULL, "false"},
                {consumer ? NULL : "linger.ms", "5"}};
    if (!c->brokers || !c->brokers[0]) {
        rd_kafka_conf_destroy(conf);
        kiln_error(KILN_ERR_INVALID, "kafka: no brokers given");
        return NULL;
    }
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        if (base[i].k && rd_kafka_conf_set(conf, base[i].k, base[i].v, err, sizeof err)) {
            rd_kafka_conf_destroy(conf);
            kiln_error(KILN_ERR_INVALID, "kafka: %s", err);
            return NULL;
        }
    for (int i = 0; i < c->num_props; i++) {
        char kv[1024];
        snprintf(kv, sizeof kv, "%s", c->props[i]);
        char *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            rd_kafka_conf_destroy(conf);
            kiln_error(KILN_ERR_INVALID, "kafka: setting '%s' is not key=value", c->props[i]);
            return NULL;
        }
        *eq = 0;
        if (rd_kafka_conf_set(conf, kv, eq + 1, err, sizeof err)) {
            rd_kafka_conf_destroy(conf);
            kiln_error(KILN_ERR_INVALID, "kafka: setting %s: %s", kv, err);
            return NULL;
        }
    }
    const char *dbg = getenv("KILN_KAFKA_DEBUG"); /* e.g. cgrp,fetch: librdkafka's debug */
    if (dbg && dbg[0] && strcmp(dbg, "1")) rd_kafka_conf_set(conf, "debug", dbg, err, sizeof err);
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    return conf;
}

/* ---- the source ---- */

typedef struct {
    char *topic;
    int32_t part;
    int64_t pos;        /* next offset to read (-1: unknown: committed, else the beginning) */
    int64_t start, end; /* the window's range (start == end: none) */
    int64_t want_end;   /* refill: read up to here */
} prange;

typedef struct {
    int pi;   /* partition index */
    int rank; /* the partition's place in (topic, partition) order */
    int64_t off;
    int64_t row; /* staging row, or -1 when the record was skipped */
} rec;

struct kiln_kafka_source {
    kiln_kafka_source_options o;
    char **topics;
    rd_kafka_t *rk;
    kiln_kafka_decoder *dec;
    kiln_dataset *ds;
    int64_t rows;
    size_t row_bytes, y_bytes;
    prange *parts;
    int nparts, cap;
    int64_t window_epoch;
    /* staging for a window */
    uint8_t *sx, *sy;
    int64_t scap;
    rec *recs;
    int64_t nrecs, rcap;
    /* the last save */
    int save_in_window;
    int64_t skipped, records;
    char first[512];
    /* callbacks' notes */
    int down, revoked, closing, paused;
    char why[512];
    FILE *trace;
};

static void say(kiln_kafka_source *s, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (s->o.log)
        s->o.log(s->o.log_ctx, line);
    else
        fprintf(stderr, "%s\n", line);
}

void kiln_kafka_source_set_log(kiln_kafka_source *s, void (*log)(void *ctx, const char *line),
                               void *ctx) {
    s->o.log = log, s->o.log_ctx = ctx;
}

static prange *part_of(kiln_kafka_source *s, const char *topic, int32_t p) {
    for (int i = 0; i < s->nparts; i++)
        if (s->parts[i].part == p && !strcmp(s->parts[i].topic, topic)) return &s->parts[i];
    if (s->nparts == s->cap) {
        int c = s->cap ? 2 * s->cap : 16;
        prange *np = realloc(s->parts, (size_t)c * sizeof *np);
        if (!np) return NULL;
        s->parts = np, s->cap = c;
    }
    char *t = strdup(topic);
    if (!t) return NULL;
    s->parts[s->nparts] = (prange){t, p, -1, 0, 0, 0};
    return &s->parts[s->nparts++];
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    kiln_kafka_source *s = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
        err == RD_KAFKA_RESP_ERR__RESOLVE) {
        s->down = 1;
        snprintf(s->why, sizeof s->why, "brokers unreachable (%s)", reason);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    kiln_kafka_source *s = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            prange *p = part_of(s, tp->topic, tp->partition);
            if (p && p->pos >= 0) tp->offset = p->pos;
        }
        rd_kafka_assign(rk, parts);
        s->revoked = 0;
        if (!s->closing && s->paused)
            say(s, "kafka: group rebalance: %d partition%s assigned", parts->cnt,
                parts->cnt == 1 ? "" : "s");
    } else {
        rd_kafka_assign(rk, NULL);
        if (!s->closing) {
            s->revoked = 1;
            snprintf(s->why, sizeof s->why, "group rebalance (%d partition%s revoked)", parts->cnt,
                     parts->cnt == 1 ? "" : "s");
        }
    }
}

/* Seeks the assigned partitions back to the source's positions (what a window did not use). */
static void seek_positions(kiln_kafka_source *s) {
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(s->rk, &a) || !a) return;
    int n = 0;
    for (int i = 0; i < a->cnt; i++) {
        prange *p = part_of(s, a->elems[i].topic, a->elems[i].partition);
        a->elems[i].offset = p && p->pos >= 0 ? p->pos : RD_KAFKA_OFFSET_INVALID;
        n += p && p->pos >= 0;
    }
    if (n) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(s->rk, a, 5000);
        if (e) rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(a);
}

static kiln_status grow_staging(kiln_kafka_source *s) {
    if (s->nrecs == s->rcap) {
        int64_t c = s->rcap ? 2 * s->rcap : 1024;
        rec *r = realloc(s->recs, (size_t)c * sizeof *r);
        if (!r) return kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
        s->recs = r, s->rcap = c;
    }
    return KILN_OK;
}

static kiln_status grow_rows(kiln_kafka_source *s, int64_t need) {
    if (need <= s->scap) return KILN_OK;
    int64_t c = s->scap ? 2 * s->scap : 1024;
    while (c < need) c *= 2;
    uint8_t *x = realloc(s->sx, (size_t)c * s->row_bytes);
    if (x) s->sx = x;
    uint8_t *y = s->y_bytes ? realloc(s->sy, (size_t)c * s->y_bytes) : NULL;
    if (y) s->sy = y;
    if (!x || (s->y_bytes && !y)) return kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
    s->scap = c;
    return KILN_OK;
}

/* One polled record into the staging area (decoded, or skipped). 1: taken, 0: not this
 * window's (refill), or an error. */
static kiln_status take(kiln_kafka_source *s, const rd_kafka_message_t *m, int refill,
                        int64_t *good) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    prange *p = part_of(s, topic, m->partition);
    if (!p) return kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
    if (refill && (m->offset < p->start || m->offset >= p->want_end)) return KILN_OK;
    if (!refill) {
        if (p->start == p->end) p->start = m->offset; /* first record of this window here */
        p->end = m->offset + 1;
    }
    p->pos = m->offset + 1;
    kiln_status st = grow_staging(s);
    if (!st) st = grow_rows(s, *good + 1);
    if (st) return st;
    char where[400], label[128] = "", *lp = NULL;
    snprintf(where, sizeof where, "kafka topic %s partition %d offset %lld", topic,
             (int)m->partition, (long long)m->offset);
    rd_kafka_headers_t *h = NULL;
    const void *hv;
    size_t hl;
    if (!rd_kafka_message_headers(m, &h) && !rd_kafka_header_get_last(h, "label", &hv, &hl) && hv &&
        hl < sizeof label)
        memcpy(label, hv, hl), label[hl] = 0, lp = label;
    rec *r = &s->recs[s->nrecs++];
    r->pi = (int)(p - s->parts), r->off = m->offset, r->row = -1;
    s->records++;
    st = kiln_kafka_decoder_row(s->dec, m->payload, m->len, lp, where, s->sx + *good * s->row_bytes,
                                s->y_bytes ? s->sy + *good * s->y_bytes : NULL);
    if (!st) {
        r->row = (*good)++;
        return KILN_OK;
    }
    if (!s->o.skip_bad || (st != KILN_ERR_FORMAT && st != KILN_ERR_SHAPE)) return st;
    if (s->skipped++ == 0) snprintf(s->first, sizeof s->first, "%s", kiln_last_error());
    return KILN_OK;
}

static int refill_done(const kiln_kafka_source *s) {
    for (int i = 0; i < s->nparts; i++)
        if (s->parts[i].want_end > s->parts[i].start && s->parts[i].pos < s->parts[i].want_end)
            return 0;
    return 1;
}

static int cmp_rec(const void *a, const void *b) {
    const rec *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

static int before(const prange *p, const prange *q) {
    int c = strcmp(p->topic, q->topic);
    return c < 0 || (c == 0 && p->part < q->part);
}

/* Reads one window: refill (the ranges start..want_end of each partition) or the next
 * epoch_records (stream) / everything up to want_end (replay, refill = 1). *good: rows. */
static kiln_status read_window(kiln_kafka_source *s, int refill, int64_t *good) {
    s->nrecs = 0, *good = 0;
    for (int i = 0; i < s->nparts; i++) {
        prange *p = &s->parts[i];
        if (!refill)
            p->start = p->end = p->pos;
        else if (p->want_end > p->start)
            p->pos = p->start, p->end = p->want_end;
    }
    if (refill) seek_positions(s);
    double last = now_s(), paused_at = 0, first = 0; /* first: the window's first record */
    int64_t want = s->o.replay ? INT64_MAX : s->o.epoch_records;
    while (refill ? !refill_done(s) : *good < want) {
        if (!refill && s->o.epoch_seconds > 0 && *good > 0 && now_s() - first >= s->o.epoch_seconds)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, 100);
        double t = now_s();
        if (m && !m->err) {
            s->down = 0;
            if (s->paused) {
                say(s, "kafka: records flowing again after %.1f s; training continues",
                    t - paused_at);
                s->paused = 0;
            }
            last = t;
            if (!first) first = t;
            kiln_status st = take(s, m, refill, good);
            rd_kafka_message_destroy(m);
            if (st) return st;
            continue;
        }
        if (m) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && !s->down)
                snprintf(s->why, sizeof s->why, "%s", rd_kafka_message_errstr(m));
            int fatal = m->err == RD_KAFKA_RESP_ERR__FATAL ||
                        m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                        m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
            rd_kafka_message_destroy(m);
            if (fatal) return kiln_error(KILN_ERR_IO, "kafka: %s", s->why);
        }
        int stuck = s->down || s->revoked || t - last >= IDLE_LOG_S;
        if (stuck && !s->paused) {
            s->paused = 1, paused_at = t;
            say(s, "kafka: %s; training paused",
                s->down || s->revoked ? s->why : "no records arrive (waiting for producers)");
        }
        if (s->o.timeout_s > 0 && t - last >= s->o.timeout_s)
            return kiln_error(KILN_ERR_IO, "kafka: no records for %.0f s (%s)", t - last,
                              s->why[0] ? s->why : "nothing produced");
    }
    /* deterministic order, then the trace of what was read */
    for (int64_t i = 0; i < s->nrecs; i++) {
        int rank = 0;
        for (int j = 0; j < s->nparts; j++) rank += before(&s->parts[j], &s->parts[s->recs[i].pi]);
        s->recs[i].rank = rank;
    }
    qsort(s->recs, (size_t)s->nrecs, sizeof *s->recs, cmp_rec);
    if (s->trace) {
        for (int64_t i = 0; i < s->nrecs; i++)
            fprintf(s->trace, "%s %d %lld\n", s->parts[s->recs[i].pi].topic,
                    (int)s->parts[s->recs[i].pi].part, (long long)s->recs[i].off);
        fflush(s->trace);
    }
    if (refill)
        for (int i = 0; i < s->nparts; i++) s->parts[i].want_end = 0;
    seek_positions(s);
    return KILN_OK;
}

/* Copies the window's good rows, in sorted order, into x and y (rows of them: cycled). */
static void place(kiln_kafka_source *s, int64_t good, uint8_t *x, uint8_t *y, int64_t rows) {
    int64_t k = 0;
    for (int64_t i = 0; i < s->nrecs && k < rows; i++) {
        if (s->recs[i].row < 0) continue;
        memcpy(x + k * s->row_bytes, s->sx + s->recs[i].row * s->row_bytes, s->row_bytes);
        if (s->y_bytes) memcpy(y + k * s->y_bytes, s->sy + s->recs[i].row * s->y_bytes, s->y_bytes);
        k++;
    }
    for (; k < rows && good > 0; k++) {
        memcpy(x + k * s->row_bytes, x + (k % good) * s->row_bytes, s->row_bytes);
        if (s->y_bytes) memcpy(y + k * s->y_bytes, y + (k % good) * s->y_bytes, s->y_bytes);
    }
}

/* Every partition of the topics (names, or patterns "^..."). */
static kiln_status list_partitions(kiln_kafka_source *s) {
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(s->rk, 1, NULL, &md, 10000);
    if (e)
        return kiln_error(KILN_ERR_IO, "kafka: cannot read the topics from %s: %s",
                          s->o.conn.brokers, rd_kafka_err2str(e));
    kiln_status st = KILN_OK;
    for (int t = 0; t < s->o.num_topics && !st; t++) {
        const char *want = s->o.topics[t];
        regex_t re;
        int pat = want[0] == '^';
        if (pat && regcomp(&re, want, REG_EXTENDED | REG_NOSUB)) {
            st = kiln_error(KILN_ERR_INVALID, "kafka: topic pattern '%s' is not a regex", want);
            break;
        }
        int found = 0;
        for (int i = 0; i < md->topic_cnt && !st; i++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[i];
            if (pat ? regexec(&re, mt->topic, 0, NULL, 0) : strcmp(mt->topic, want)) continue;
            if (mt->err) continue;
            found = 1;
            for (int j = 0; j < mt->partition_cnt && !st; j++)
                if (!part_of(s, mt->topic, mt->partitions[j].id))
                    st = kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
        }
        if (pat) regfree(&re);
        if (!st && !found)
            st = kiln_error(KILN_ERR_IO, "kafka: no topic '%s' on %s", want, s->o.conn.brokers);
    }
    rd_kafka_metadata_destroy(md);
    return st;
}

/* ---- state (a checkpoint's kafka.json) ---- */

static kiln_status load_state(kiln_kafka_source *s, const char *path, int64_t *epoch,
                              int64_t *wepoch) {
    void *text = NULL;
    size_t n = 0;
    kiln_status st = kiln_file_read_all(path, &text, &n, (size_t)64 << 20);
    if (st) return st;
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "mode");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "partitions");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "epoch");
    const cJSON *we = cJSON_GetObjectItemCaseSensitive(j, "window_epoch");
    if (!cJSON_IsString(mode) || !cJSON_IsArray(ps) || !cJSON_IsNumber(e) || !cJSON_IsNumber(we) ||
        strcmp(mode->valuestring, s->o.replay ? "replay" : "stream")) {
        cJSON_Delete(j);
        return kiln_error(KILN_ERR_FORMAT, "%s: not a kafka state of a %s source", path,
                          s->o.replay ? "replay" : "stream");
    }
    *epoch = (int64_t)e->valuedouble, *wepoch = (int64_t)we->valuedouble;
    const cJSON *p;
    cJSON_ArrayForEach(p, ps) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "topic");
        const cJSON *pa = cJSON_GetObjectItemCaseSensitive(p, "partition");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(p, "start");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(p, "end");
        const cJSON *pos = cJSON_GetObjectItemCaseSensitive(p, "position");
        if (!cJSON_IsString(t) || !cJSON_IsNumber(pa) || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            !cJSON_IsNumber(pos)) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: a partition entry is incomplete", path);
            break;
        }
        prange *r = part_of(s, t->valuestring, (int32_t)pa->valuedouble);
        if (!r) {
            st = kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
            break;
        }
        r->start = (int64_t)a->valuedouble, r->end = (int64_t)b->valuedouble;
        r->pos = (int64_t)pos->valuedouble;
    }
    cJSON_Delete(j);
    return st;
}

kiln_status kiln_kafka_source_save(kiln_kafka_source *s, int64_t epoch, const char *path) {
    s->save_in_window = s->o.replay || epoch == s->window_epoch;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
    fprintf(f,
            "{\n  \"mode\": \"%s\",\n  \"epoch\": %lld,\n  \"window_epoch\": %lld,\n"
            "  \"partitions\": [",
            s->o.replay ? "replay" : "stream", (long long)epoch, (long long)s->window_epoch);
    for (int i = 0; i < s->nparts; i++) {
        const prange *p = &s->parts[i];
        cJSON *js = cJSON_CreateString(p->topic);
        char *q = js ? cJSON_PrintUnformatted(js) : NULL;
        fprintf(f,
                "%s\n    {\"topic\": %s, \"partition\": %d, \"start\": %lld, \"end\": %lld, "
                "\"position\": %lld}",
                i ? "," : "", q ? q : "\"\"", (int)p->part, (long long)p->start, (long long)p->end,
                (long long)p->pos);
        cJSON_free(q), cJSON_Delete(js);
    }
    fprintf(f, "\n  ]\n}\n");
    fclose(f);
    kiln_status st = buf ? kiln_file_write_atomic(path, buf, len)
                         : kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
    free(buf);
    return st;
}

kiln_status kiln_kafka_source_commit(kiln_kafka_source *s) {
    if (s->o.replay) return KILN_OK; /* a replay reads from the beginning every time */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->nparts);
    for (int i = 0; i < s->nparts; i++) {
        const prange *p = &s->parts[i];
        int64_t off = s->save_in_window && p->start < p->end ? p->start : p->pos;
        if (off >= 0) rd_kafka_topic_partition_list_add(l, p->topic, p->part)->offset = off;
    }
    rd_kafka_resp_err_t e = l->cnt ? rd_kafka_commit(s->rk, l, 0) : RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(l);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        return kiln_error(KILN_ERR_IO, "kafka: committing offsets: %s", rd_kafka_err2str(e));
    return KILN_OK;
}

/* ---- opening ---- */

kiln_status kiln_kafka_source_open(const kiln_kafka_source_options *o, kiln_kafka_source **out) {
    *out = NULL;
    if (o->num_topics < 1) return kiln_error(KILN_ERR_INVALID, "kafka: no topic given");
    if (!o->replay && o->epoch_records < 1)
        return kiln_error(KILN_ERR_INVALID, "kafka: stream mode needs epoch_records >= 1");
    kiln_kafka_source *s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
    s->o = *o;
    s->o.state = NULL, s->o.trace = NULL;
    kiln_status st = kiln_kafka_decoder_new(&o->dec, &s->dec);
    rd_kafka_conf_t *conf = st ? NULL : make_conf(&o->conn, 1);
    if (!st && !conf) st = KILN_ERR_INVALID;
    char err[512];
    if (!st) {
        rd_kafka_conf_set_opaque(conf, s);
        rd_kafka_conf_set_error_cb(conf, on_error);
        if (!o->replay) rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        if (!(s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err))) {
            rd_kafka_conf_destroy(conf);
            st = kiln_error(KILN_ERR_INVALID, "kafka: %s", err);
        }
    }
    if (!st) rd_kafka_poll_set_consumer(s->rk);
    if (!st && o->trace && !(s->trace = fopen(o->trace, "a")))
        st = kiln_error(KILN_ERR_IO, "kafka: %s: %s", o->trace, strerror(errno));
    kiln_dtype dt = st ? KILN_F32 : kiln_kafka_decoder_dtype(s->dec);
    kiln_shape xs = st ? (kiln_shape){0} : kiln_kafka_decoder_shape(s->dec);
    s->row_bytes = (size_t)kiln_shape_numel(&xs) * (dt == KILN_U8 ? 1 : 4);
    int64_t yw = o->dec.label_kind == KILN_LABEL_CLASS   ? 1
                 : o->dec.label_kind == KILN_LABEL_FLOAT ? o->dec.label_width
                                                         : 0;
    if (!st && o->dec.label_kind == KILN_LABEL_FLOAT && yw < 1)
        st = kiln_error(KILN_ERR_INVALID, "kafka: regression needs the label width");
    s->y_bytes = (size_t)yw * 4;
    int64_t epoch = 0, wepoch = 0;
    int have_state = 0;
    if (!st && o->state) {
        st = load_state(s, o->state, &epoch, &wepoch);
        have_state = !st;
    }
    if (!st && o->replay) {
        /* the range: a checkpoint's, else beginning .. the end offsets now */
        if (!have_state && !(st = list_partitions(s)))
            for (int i = 0; i < s->nparts && !st; i++) {
                int64_t lo, hi;
                rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
                    s->rk, s->parts[i].topic, s->parts[i].part, &lo, &hi, 10000);
                if (e)
                    st = kiln_error(KILN_ERR_IO, "kafka: end offsets of %s [%d]: %s",
                                    s->parts[i].topic, (int)s->parts[i].part, rd_kafka_err2str(e));
                s->parts[i].start = lo, s->parts[i].end = hi;
            }
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->nparts);
        for (int i = 0; i < s->nparts; i++) {
            prange *p = &s->parts[i];
            p->want_end = p->end;
            if (p->start < p->end)
                rd_kafka_topic_partition_list_add(l, p->topic, p->part)->offset = p->start;
        }
        if (!st && l->cnt && rd_kafka_assign(s->rk, l))
            st = kiln_error(KILN_ERR_IO, "kafka: cannot assign the partitions");
        rd_kafka_topic_partition_list_destroy(l);
        int64_t good = 0;
        if (!st) st = read_window(s, 1, &good);
        if (!st && good == 0)
            st = kiln_error(KILN_ERR_INVALID, "kafka: the topic%s hold%s no %srecords to replay",
                            o->num_topics > 1 ? "s" : "", o->num_topics > 1 ? "" : "s",
                            s->skipped ? "readable " : "");
        s->rows = good;
    } else if (!st) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(o->num_topics);
        for (int i = 0; i < o->num_topics; i++)
            rd_kafka_topic_partition_list_add(l, o->topics[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(s->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (e) st = kiln_error(KILN_ERR_IO, "kafka: subscribing: %s", rd_kafka_err2str(e));
        s->rows = o->epoch_records;
        int64_t good = 0;
        if (!st && have_state && epoch == wepoch) { /* the window in progress, again */
            for (int i = 0; i < s->nparts; i++) s->parts[i].want_end = s->parts[i].end;
            st = read_window(s, 1, &good);
        } else if (!st) {
            st = read_window(s, 0, &good);
        }
        s->window_epoch = epoch;
        if (!st && good == 0)
            st = kiln_error(KILN_ERR_FORMAT,
                            "kafka: no readable record in "
                            "the first window (%s)",
                            s->first);
    }
    if (!st) {
        uint8_t *x = malloc((size_t)s->rows * s->row_bytes);
        uint8_t *y = s->y_bytes ? malloc((size_t)s->rows * s->y_bytes) : NULL;
        if (!x || (s->y_bytes && !y)) {
            free(x), free(y);
            st = kiln_error(KILN_ERR_NOMEM, "kafka: out of memory for %lld rows",
                            (long long)s->rows);
        } else {
            int64_t good = 0;
            for (int64_t i = 0; i < s->nrecs; i++) good += s->recs[i].row >= 0;
            place(s, good, x, y, s->rows);
            st = kiln_ds_adopt(&s->ds, "kafka", s->rows, dt, xs, x, o->dec.label_kind, yw, y,
                               o->dec.num_classes, NULL);
            if (o->replay) { /* one window for good: the staging copy is not needed again */
                free(s->sx), free(s->sy), free(s->recs);
                s->sx = s->sy = NULL, s->recs = NULL, s->scap = s->rcap = s->nrecs = 0;
            }
        }
    }
    if (st) {
        kiln_kafka_source_free(s);
        return st;
    }
    *out = s;
    return KILN_OK;
}

kiln_dataset *kiln_kafka_source_dataset(kiln_kafka_source *s) {
    return s->ds;
}

kiln_status kiln_kafka_source_epoch(kiln_kafka_source *s, int64_t epoch) {
    if (s->o.replay || epoch == s->window_epoch) return KILN_OK;
    int64_t good = 0;
    kiln_status st = read_window(s, 0, &good);
    if (st) return st;
    if (good == 0)
        return kiln_error(KILN_ERR_FORMAT, "kafka: no readable record in epoch %lld's window (%s)",
                          (long long)epoch + 1, s->first);
    place(s, good, s->ds->x, s->ds->y, s->rows);
    s->window_epoch = epoch;
    return KILN_OK;
}

int64_t kiln_kafka_source_skipped(const kiln_kafka_source *s, char *first, size_t cap) {
    if (first && cap) snprintf(first, cap, "%s", s->first);
    return s->skipped;
}

int64_t kiln_kafka_source_records(const kiln_kafka_source *s) {
    return s->records;
}

void kiln_kafka_source_free(kiln_kafka_source *s) {
    if (!s) return;
    s->closing = 1;
    if (s->rk) {
        rd_kafka_consumer_close(s->rk);
        rd_kafka_destroy(s->rk);
    }
    for (int i = 0; i < s->nparts; i++) free(s->parts[i].topic);
    free(s->parts), free(s->sx), free(s->sy), free(s->recs);
    kiln_kafka_decoder_free(s->dec);
    kiln_dataset_free(s->ds);
    if (s->trace) fclose(s->trace);
    free(s);
}

/* ---- the plain producer ---- */

struct kiln_kafka_producer {
    rd_kafka_t *rk;
    int64_t delivered, failed;
    char first[512];
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)opaque;
    kiln_kafka_producer *p = rd_kafka_opaque(rk);
    if (!m->err) {
        p->delivered++;
    } else if (p->failed++ == 0) {
        snprintf(p->first, sizeof p->first, "%s", rd_kafka_err2str(m->err));
    }
}

kiln_status kiln_kafka_producer_new(const kiln_kafka_conn *c, kiln_kafka_producer **out) {
    *out = NULL;
    rd_kafka_conf_t *conf = make_conf(c, 0);
    if (!conf) return KILN_ERR_INVALID;
    kiln_kafka_producer *p = calloc(1, sizeof *p);
    if (!p) {
        rd_kafka_conf_destroy(conf);
        return kiln_error(KILN_ERR_NOMEM, "kafka: out of memory");
    }
    char err[512];
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err))) {
        rd_kafka_conf_destroy(conf);
        free(p);
        return kiln_error(KILN_ERR_INVALID, "kafka: %s", err);
    }
    *out = p;
    return KILN_OK;
}

kiln_status kiln_kafka_produce(kiln_kafka_producer *p, const char *topic, int32_t partition,
                               const char *key, const void *value, size_t len, const char *label) {
    for (;;) {
        rd_kafka_resp_err_t e;
        if (label && label[0])
            e = rd_kafka_producev(
                p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)value, len),
                RD_KAFKA_V_HEADER("label", label, (ssize_t)strlen(label)), RD_KAFKA_V_END);
        else
            e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                  RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(p->rk, 100);
            continue;
        }
        rd_kafka_poll(p->rk, 0);
        if (e)
            return kiln_error(KILN_ERR_IO, "kafka: producing to %s: %s", topic,
                              rd_kafka_err2str(e));
        return KILN_OK;
    }
}

kiln_status kiln_kafka_producer_flush(kiln_kafka_producer *p, double timeout_s, int64_t *delivered,
                                      int64_t *failed) {
    rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, (int)(timeout_s * 1000));
    if (delivered) *delivered = p->delivered;
    if (failed) *failed = p->failed;
    if (p->failed)
        return kiln_error(KILN_ERR_IO, "kafka: %lld record%s not delivered (%s)",
                          (long long)p->failed, p->failed == 1 ? "" : "s", p->first);
    if (e)
        return kiln_error(KILN_ERR_IO, "kafka: %d record%s still queued after %.0f s (%s)",
                          rd_kafka_outq_len(p->rk), rd_kafka_outq_len(p->rk) == 1 ? "" : "s",
                          timeout_s, rd_kafka_err2str(e));
    return KILN_OK;
}

void kiln_kafka_producer_free(kiln_kafka_producer *p) {
    if (!p) return;
    rd_kafka_destroy(p->rk);
    free(p);
}

/* ---- the plain consumer ---- */

struct kiln_kafka_consumer {
    rd_kafka_t *rk;
    rd_kafka_message_t *held;
    char label[256];
};

kiln_status kiln_kafka_consumer_new(const kiln_kafka_conn *c, const char *const *topics, int n,
                                    kiln_kafka_consumer **out) {
    *out = NULL;
    rd_kafka_conf_t *conf = make_conf(c, 1);
    if (!conf) return KILN_ERR_INVALID;
    kiln_kafka_consumer *k = calloc(1, sizeof *k);
    char err[512];
    if (!k || !(k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err))) {
        rd_kafka_conf_destroy(conf);
        free(k);
        return kiln_error(k ? KILN_ERR_INVALID : KILN_ERR_NOMEM, "kafka: %s",
                          k ? err : "no memory");
    }
    rd_kafka_poll_set_consumer(k->rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        kiln_kafka_consumer_free(k);
        return kiln_error(KILN_ERR_IO, "kafka: subscribing: %s", rd_kafka_err2str(e));
    }
    *out = k;
    return KILN_OK;
}

int kiln_kafka_consumer_poll(kiln_kafka_consumer *k, double timeout_s, kiln_kafka_message *m) {
    if (k->held) rd_kafka_message_destroy(k->held), k->held = NULL;
    double end = now_s() + timeout_s;
    for (;;) {
        double left = end - now_s();
        rd_kafka_message_t *r = rd_kafka_consumer_poll(k->rk, left > 0 ? (int)(left * 1000) : 0);
        if (!r) return 0;
        if (r->err) {
            int fatal = r->err == RD_KAFKA_RESP_ERR__FATAL;
            if (fatal) kiln_error(KILN_ERR_IO, "kafka: %s", rd_kafka_message_errstr(r));
            rd_kafka_message_destroy(r);
            if (fatal) return -1;
            if (now_s() >= end) return 0;
            continue;
        }
        k->held = r;
        rd_kafka_headers_t *h = NULL;
        const void *hv;
        size_t hl;
        m->label = NULL;
        if (!rd_kafka_message_headers(r, &h) && !rd_kafka_header_get_last(h, "label", &hv, &hl) &&
            hv && hl < sizeof k->label)
            memcpy(k->label, hv, hl), k->label[hl] = 0, m->label = k->label;
        m->topic = rd_kafka_topic_name(r->rkt);
        m->partition = r->partition, m->offset = r->offset;
        m->key = r->key, m->key_len = r->key_len;
        m->value = r->payload, m->len = r->len;
        return 1;
    }
}

kiln_status kiln_kafka_consumer_commit(kiln_kafka_consumer *k) {
    rd_kafka_resp_err_t e = rd_kafka_commit(k->rk, NULL, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        return kiln_error(KILN_ERR_IO, "kafka: committing offsets: %s", rd_kafka_err2str(e));
    return KILN_OK;
}

void kiln_kafka_consumer_free(kiln_kafka_consumer *k) {
    if (!k) return;
    if (k->held) rd_kafka_message_destroy(k->held);
    rd_kafka_consumer_close(k->rk);
    rd_kafka_destroy(k->rk);
    free(k);
}

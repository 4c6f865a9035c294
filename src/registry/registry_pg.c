/* registry_pg.c — the database seam's PostgreSQL side, through libpq (see registry_db.h).
 *
 * Statements: reg_pg_prepare rewrites the registry's portable SQL into PostgreSQL's (translate
 * below: "?N" and "?" to $N outside string literals, and the few functions PostgreSQL names
 * differently) and keeps the text; reg_pg_step runs it with PQexecParams on its first call, with
 * every bound value sent as text with its type (int8, float8, text; NULL untyped, so the server
 * infers it from where it is used), then hands out the result's rows one by one. Nothing is
 * prepared on the server, so a broken connection that is reset leaves no stale statement.
 *
 * Errors: the SQLSTATE class maps onto REG_E* (08 and 57P connection failures REG_ECONN, 23
 * constraints, 40 and 55P03 REG_EBUSY, 53 resources, 42 syntax). Server notices (CREATE ... IF
 * NOT EXISTS) are dropped, not printed.
 *
 * Floats: PostgreSQL 12 and later print float8 in the shortest text that reads back exactly;
 * values go out as "%.17g", which reads back exactly too.
 */
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/registry.h"
#include "registry/registry_db.h"

#define OID_INT8   20
#define OID_TEXT   25
#define OID_FLOAT8 701
#define MAX_PARAMS 65535 /* the protocol's limit */

static int reg_pg_exec(reg_db *db, const char *sql);

typedef struct {
    PGconn *conn;
    int64_t changes;
    char err[1024];
} pg_conn;

typedef struct {
    char *sql;
    int n_params;
    char **vals;     /* [n_params] */
    unsigned *types; /* [n_params] */
    PGresult *res;
    int row, n_rows, done;
} pg_stmt;

#define PG(db)    ((pg_conn *)(db)->impl)
#define PSTMT(st) ((pg_stmt *)(st)->impl)

static void quiet(void *arg, const char *message) {
    (void)arg, (void)message;
}

static int map_state(const char *state) {
    if (!state || strlen(state) < 2) return REG_ECONN; /* no SQLSTATE: the connection */
    if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3)) return REG_ECONN;
    if (!strncmp(state, "23", 2)) return REG_ECONSTRAINT;
    if (!strncmp(state, "40", 2) || !strcmp(state, "55P03")) return REG_EBUSY;
    if (!strcmp(state, "53100")) return REG_EFULL;
    if (!strcmp(state, "53200")) return REG_ENOMEM;
    if (!strncmp(state, "42", 2) || !strncmp(state, "22", 2)) return REG_EINVALID;
    return REG_EIO;
}

/* Records the failure of res (or of the connection) and returns its class. */
static int fail(pg_conn *c, PGresult *res) {
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg) msg = PQerrorMessage(c->conn);
    snprintf(c->err, sizeof c->err, "%s", msg && *msg ? msg : "unknown PostgreSQL error");
    size_t n = strlen(c->err);
    while (n && (c->err[n - 1] == '\n' || c->err[n - 1] == ' ')) c->err[--n] = 0;
    int rc = PQstatus(c->conn) == CONNECTION_BAD
                 ? REG_ECONN
                 : map_state(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
    return rc;
}

static int pg_open(const char *conninfo, const char *schema, int connect_timeout_s, reg_db **out) {
    *out = NULL;
    reg_db *db = calloc(1, sizeof *db);
    pg_conn *c = calloc(1, sizeof *c);
    if (!db || !c) {
        free(db), free(c);
        return REG_ENOMEM;
    }
    db->dialect = REG_PG, db->impl = c;
    *out = db;
    char timeout[16], app[32];
    snprintf(timeout, sizeof timeout, "%d", connect_timeout_s > 0 ? connect_timeout_s : 10);
    snprintf(app, sizeof app, "kiln %ld", (long)getpid()); /* which process, for a DBA */
    /* later keywords win: the URI's own settings override these defaults */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {timeout, app, conninfo, NULL};
    c->conn = PQconnectdbParams(keys, vals, 1);
    if (!c->conn) {
        snprintf(c->err, sizeof c->err, "out of memory");
        return REG_ENOMEM;
    }
    if (PQstatus(c->conn) != CONNECTION_OK) return fail(c, NULL);
    PQsetNoticeProcessor(c->conn, quiet, NULL);
    /* jit: the registry's queries are small; compiling them costs more than it saves */
    static const char *const SETTINGS = "SET client_min_messages = warning; SET jit = off";
    if (!schema) return reg_pg_exec(db, SETTINGS);
    char *q = PQescapeIdentifier(c->conn, schema, strlen(schema));
    if (!q) return fail(c, NULL);
    char sql[600];
    /* One round trip when the schema exists (every open but the first): the settings, the
     * search path (a schema that does not exist may be named: current_schema() is then NULL)
     * and whether it exists. CREATE SCHEMA needs the right to create even when the schema
     * exists: it is asked for only when missing, so that a user who may only read can use it. */
    snprintf(sql, sizeof sql, "%s; SET search_path TO %s; SELECT current_schema() IS NOT NULL",
             SETTINGS, q);
    PGresult *res = PQexec(c->conn, sql);
    int rc = res && PQresultStatus(res) == PGRES_TUPLES_OK ? REG_OK : fail(c, res);
    int exists = !rc && PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    if (rc || exists) {
        PQfreemem(q);
        return rc;
    }
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s; SET search_path TO %s", q, q);
    PQfreemem(q);
    /* two sessions creating the same schema at once: one of them gets a unique violation */
    for (int attempt = 0;; attempt++) {
        rc = reg_pg_exec(db, sql);
        if (rc != REG_ECONSTRAINT || attempt == 3) return rc;
    }
}

static void reg_pg_close(reg_db *db) {
    pg_conn *c = PG(db);
    if (!c) return;
    if (c->conn) PQfinish(c->conn);
    free(c);
}

static int reg_pg_alive(reg_db *db) {
    return PQstatus(PG(db)->conn) == CONNECTION_OK;
}

/* ---- SQL ---- */

static const struct {
    const char *from, *to;
} REWRITES[] = {
    /* REG_DURATION_SQL */
    /* (julianday() of a text that is no time is NULL: so is this, without a cast error) */
    {"((julianday(coalesce(r.end_time, 'now')) - julianday(r.start_time)) * 86400.0)",
     "(CASE WHEN r.start_time LIKE '____-__-__T__:__:__%' AND (r.end_time IS NULL OR"
     " r.end_time LIKE '____-__-__T__:__:__%') THEN CAST(extract(epoch FROM"
     " coalesce(CAST(r.end_time AS timestamptz), now()) - CAST(r.start_time AS timestamptz))"
     " AS double precision) END)"},
    {"instr(", "strpos("},
    {"group_concat(", "string_agg("},
};

static char *translate(const char *sql, int *n_params) {
    size_t cap = strlen(sql) * 2 + 256;
    char *out = malloc(cap), *o = out;
    if (!out) return NULL;
    int seq = 0, max = 0;
    for (const char *p = sql; *p;) {
        if ((size_t)(o - out) + 160 > cap) {
            size_t used = (size_t)(o - out);
            cap *= 2;
            char *bigger = realloc(out, cap);
            if (!bigger) {
                free(out);
                return NULL;
            }
            out = bigger, o = out + used;
        }
        if (*p == '\'') { /* a string literal, '' inside it included */
            *o++ = *p++;
            while (*p && !(*p == '\'' && p[1] != '\'')) {
                if (*p == '\'') *o++ = *p++;
                *o++ = *p++;
            }
            if (*p) *o++ = *p++;
            continue;
        }
        if (*p == '?') {
            int n;
            p++;
            if (*p >= '0' && *p <= '9') {
                n = (int)strtol(p, (char **)&p, 10);
            } else {
                n = ++seq;
            }
            if (n > max) max = n;
            o += sprintf(o, "$%d", n);
            continue;
        }
        int done = 0;
        for (size_t i = 0; i < sizeof REWRITES / sizeof *REWRITES && !done; i++) {
            size_t len = strlen(REWRITES[i].from);
            if (!strncmp(p, REWRITES[i].from, len)) {
                size_t tl = strlen(REWRITES[i].to), used = (size_t)(o - out);
                if (used + tl + 160 > cap) {
                    cap = 2 * cap + tl;
                    char *bigger = realloc(out, cap);
                    if (!bigger) {
                        free(out);
                        return NULL;
                    }
                    out = bigger, o = out + used;
                }
                memcpy(o, REWRITES[i].to, tl);
                o += tl, p += len, done = 1;
            }
        }
        if (!done) *o++ = *p++;
    }
    *o = 0;
    *n_params = max;
    return out;
}

/* ---- statements ---- */

static int reg_pg_prepare(reg_db *db, const char *sql, reg_stmt **st) {
    reg_stmt *r = calloc(1, sizeof *r);
    pg_stmt *p = calloc(1, sizeof *p);
    if (!r || !p || !(p->sql = translate(sql, &p->n_params))) {
        free(r), free(p);
        return REG_ENOMEM;
    }
    if (p->n_params > MAX_PARAMS) {
        snprintf(PG(db)->err, sizeof PG(db)->err, "more than %d parameters", MAX_PARAMS);
        free(p->sql), free(p), free(r);
        return REG_EINVALID;
    }
    if (p->n_params && (!(p->vals = calloc((size_t)p->n_params, sizeof *p->vals)) ||
                        !(p->types = calloc((size_t)p->n_params, sizeof *p->types)))) {
        free(p->vals), free(p->sql), free(p), free(r);
        return REG_ENOMEM;
    }
    p->row = -1;
    r->db = db, r->impl = p;
    *st = r;
    return REG_OK;
}

static int reg_pg_step(reg_stmt *st) {
    pg_stmt *p = PSTMT(st);
    pg_conn *c = PG(st->db);
    if (p->done) return REG_DONE;
    if (!p->res) {
        p->res = PQexecParams(c->conn, p->sql, p->n_params, p->types,
                              (const char *const *)p->vals, NULL, NULL, 0);
        ExecStatusType es = p->res ? PQresultStatus(p->res) : PGRES_FATAL_ERROR;
        if (es == PGRES_COMMAND_OK) {
            c->changes = strtoll(PQcmdTuples(p->res), NULL, 10);
            p->done = 1;
            return REG_DONE;
        }
        if (es != PGRES_TUPLES_OK) {
            int rc = fail(c, p->res);
            PQclear(p->res);
            p->res = NULL;
            return rc;
        }
        c->changes = strtoll(PQcmdTuples(p->res), NULL, 10);
        p->n_rows = PQntuples(p->res);
        p->row = -1;
    }
    if (++p->row < p->n_rows) return REG_ROW;
    p->done = 1;
    return REG_DONE;
}

static void reg_pg_reset(reg_stmt *st) {
    pg_stmt *p = PSTMT(st);
    PQclear(p->res);
    p->res = NULL;
    p->row = -1, p->n_rows = 0, p->done = 0;
}

static void reg_pg_clear_bindings(reg_stmt *st) {
    pg_stmt *p = PSTMT(st);
    for (int i = 0; i < p->n_params; i++) {
        free(p->vals[i]);
        p->vals[i] = NULL, p->types[i] = 0;
    }
}

static void reg_pg_finalize(reg_stmt *st) {
    pg_stmt *p = PSTMT(st);
    reg_pg_reset(st);
    reg_pg_clear_bindings(st);
    free(p->vals), free(p->types);
    free(p->sql);
    free(p);
    free(st);
}

static void reg_pg_bind(reg_stmt *st, int i, int type, int64_t iv, double dv, const char *s) {
    pg_stmt *p = PSTMT(st);
    if (i < 1 || i > p->n_params) return;
    char buf[40];
    free(p->vals[i - 1]);
    p->vals[i - 1] = NULL, p->types[i - 1] = 0;
    switch (type) {
    case 'i':
        snprintf(buf, sizeof buf, "%lld", (long long)iv);
        p->vals[i - 1] = strdup(buf), p->types[i - 1] = OID_INT8;
        break;
    case 'd':
        if (isnan(dv))
            snprintf(buf, sizeof buf, "NaN");
        else if (isinf(dv))
            snprintf(buf, sizeof buf, "%sInfinity", dv < 0 ? "-" : "");
        else
            snprintf(buf, sizeof buf, "%.17g", dv);
        p->vals[i - 1] = strdup(buf), p->types[i - 1] = OID_FLOAT8;
        break;
    case 't':
        p->vals[i - 1] = strdup(s), p->types[i - 1] = OID_TEXT;
        break;
    default: /* NULL, its type left to the server */
        break;
    }
}

static int reg_pg_col_null(reg_stmt *st, int i) {
    pg_stmt *p = PSTMT(st);
    if (!p->res || p->row < 0 || p->row >= p->n_rows || i >= PQnfields(p->res)) return 1;
    return PQgetisnull(p->res, p->row, i);
}

static const char *reg_pg_col_text(reg_stmt *st, int i) {
    pg_stmt *p = PSTMT(st);
    if (reg_pg_col_null(st, i)) return NULL;
    return PQgetvalue(p->res, p->row, i);
}

/* ---- the connection ---- */

static int reg_pg_exec(reg_db *db, const char *sql) {
    pg_conn *c = PG(db);
    int n = 0;
    char *t = translate(sql, &n);
    if (!t) return REG_ENOMEM;
    PGresult *res = PQexec(c->conn, t);
    free(t);
    ExecStatusType es = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK ? REG_OK : fail(c, res);
    if (!rc) c->changes = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return rc;
}

static int64_t reg_pg_changes(reg_db *db) {
    return PG(db)->changes;
}

static const char *reg_pg_errmsg(reg_db *db) {
    return PG(db)->err;
}

static int reg_pg_in_tx(reg_db *db) {
    PGTransactionStatusType t = PQtransactionStatus(PG(db)->conn);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static const reg_pg_ops pg_ops = {
    pg_open,          reg_pg_prepare, reg_pg_step,      reg_pg_reset,   reg_pg_clear_bindings,
    reg_pg_finalize,  reg_pg_bind,    reg_pg_col_null,  reg_pg_col_text, reg_pg_exec,
    reg_pg_changes,   reg_pg_errmsg,  reg_pg_in_tx,     reg_pg_alive,   reg_pg_close,
};

void kiln_registry_use_postgres(void) {
    reg_pg = &pg_ops;
}

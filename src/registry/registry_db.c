/* registry_db.c — the database seam's SQLite side and its dispatch (see registry_db.h): every
 * call goes to SQLite here or to registry_pg.c, by the connection's dialect; registry_pg.c is
 * reached only through the reg_pg table it installs (kiln_registry_use_postgres), so programs
 * that do not ask for PostgreSQL do not link libpq.
 *
 * SQLite result codes map onto the REG_E* classes by their primary code (extended result codes
 * are on, so the low byte is the primary code).
 */
#include <sqlite3.h>
#include <stdlib.h>

#include "registry/registry_db.h"

#define LITE(db)   ((sqlite3 *)(db)->impl)
#define LSTMT(st)  ((sqlite3_stmt *)(st)->impl)
#define IS_PG(db)  ((db)->dialect == REG_PG)

int reg_map_sqlite(int rc) {
    switch (rc & 0xff) {
    case SQLITE_OK:
        return REG_OK;
    case SQLITE_ROW:
        return REG_ROW;
    case SQLITE_DONE:
        return REG_DONE;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return REG_EBUSY;
    case SQLITE_CONSTRAINT:
        return REG_ECONSTRAINT;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return REG_EFORMAT;
    case SQLITE_NOMEM:
        return REG_ENOMEM;
    case SQLITE_FULL:
        return REG_EFULL;
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
    case SQLITE_ERROR:
        return REG_EINVALID;
    default:
        return REG_EIO;
    }
}

reg_db *reg_db_wrap_sqlite(void *sqlite_db) {
    reg_db *db = calloc(1, sizeof *db);
    if (!db) {
        sqlite3_close_v2(sqlite_db);
        return NULL;
    }
    db->dialect = REG_SQLITE;
    db->impl = sqlite_db;
    return db;
}

void *reg_db_sqlite(reg_db *db) {
    return db && !IS_PG(db) ? db->impl : NULL;
}

const reg_pg_ops *reg_pg;

int reg_db_open_pg(const char *conninfo, const char *schema, int connect_timeout_s, reg_db **out) {
    *out = NULL;
    return reg_pg ? reg_pg->open(conninfo, schema, connect_timeout_s, out) : REG_EUNSUPPORTED;
}

reg_dialect reg_db_dialect(const reg_db *db) {
    return db->dialect;
}

void reg_db_close(reg_db *db) {
    if (!db) return;
    if (IS_PG(db))
        reg_pg->close(db);
    else
        sqlite3_close_v2(LITE(db));
    free(db);
}

int reg_db_alive(reg_db *db) {
    return IS_PG(db) ? reg_pg->alive(db) : 1;
}

int reg_prepare(reg_db *db, const char *sql, reg_stmt **st) {
    *st = NULL;
    if (IS_PG(db)) return reg_pg->prepare(db, sql, st);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v3(LITE(db), sql, -1, 0, &s, NULL);
    if (rc != SQLITE_OK) return reg_map_sqlite(rc);
    reg_stmt *r = malloc(sizeof *r);
    if (!r) {
        sqlite3_finalize(s);
        return REG_ENOMEM;
    }
    r->db = db, r->impl = s;
    *st = r;
    return REG_OK;
}

int reg_step(reg_stmt *st) {
    return IS_PG(st->db) ? reg_pg->step(st) : reg_map_sqlite(sqlite3_step(LSTMT(st)));
}

void reg_reset(reg_stmt *st) {
    if (IS_PG(st->db))
        reg_pg->reset(st);
    else
        sqlite3_reset(LSTMT(st));
}

void reg_clear_bindings(reg_stmt *st) {
    if (IS_PG(st->db))
        reg_pg->clear_bindings(st);
    else
        sqlite3_clear_bindings(LSTMT(st));
}

void reg_finalize(reg_stmt *st) {
    if (!st) return;
    if (IS_PG(st->db)) {
        reg_pg->finalize(st);
        return;
    }
    sqlite3_finalize(LSTMT(st));
    free(st);
}

void reg_bind_int64(reg_stmt *st, int i, int64_t v) {
    if (IS_PG(st->db))
        reg_pg->bind(st, i, 'i', v, 0, NULL);
    else
        sqlite3_bind_int64(LSTMT(st), i, v);
}

void reg_bind_double(reg_stmt *st, int i, double v) {
    if (IS_PG(st->db))
        reg_pg->bind(st, i, 'd', 0, v, NULL);
    else
        sqlite3_bind_double(LSTMT(st), i, v);
}

void reg_bind_text(reg_stmt *st, int i, const char *s) {
    if (!s)
        reg_bind_null(st, i);
    else if (IS_PG(st->db))
        reg_pg->bind(st, i, 't', 0, 0, s);
    else
        sqlite3_bind_text(LSTMT(st), i, s, -1, SQLITE_TRANSIENT);
}

void reg_bind_null(reg_stmt *st, int i) {
    if (IS_PG(st->db))
        reg_pg->bind(st, i, 'n', 0, 0, NULL);
    else
        sqlite3_bind_null(LSTMT(st), i);
}

int reg_col_null(reg_stmt *st, int i) {
    return IS_PG(st->db) ? reg_pg->col_null(st, i)
                         : sqlite3_column_type(LSTMT(st), i) == SQLITE_NULL;
}

int64_t reg_col_int64(reg_stmt *st, int i) {
    if (!IS_PG(st->db)) return sqlite3_column_int64(LSTMT(st), i);
    const char *t = reg_pg->col_text(st, i);
    if (!t) return 0;
    if (t[0] == 't' && !t[1]) return 1;
    return strtoll(t, NULL, 10);
}

double reg_col_double(reg_stmt *st, int i) {
    if (!IS_PG(st->db)) return sqlite3_column_double(LSTMT(st), i);
    const char *t = reg_pg->col_text(st, i);
    if (!t) return 0;
    if (t[0] == 't' && !t[1]) return 1;
    return strtod(t, NULL);
}

const char *reg_col_text(reg_stmt *st, int i) {
    return IS_PG(st->db) ? reg_pg->col_text(st, i)
                         : (const char *)sqlite3_column_text(LSTMT(st), i);
}

int reg_exec(reg_db *db, const char *sql) {
    if (IS_PG(db)) return reg_pg->exec(db, sql);
    return reg_map_sqlite(sqlite3_exec(LITE(db), sql, NULL, NULL, NULL));
}

int64_t reg_changes(reg_db *db) {
    return IS_PG(db) ? reg_pg->changes(db) : sqlite3_changes(LITE(db));
}

const char *reg_db_errmsg(reg_db *db) {
    return IS_PG(db) ? reg_pg->errmsg(db) : sqlite3_errmsg(LITE(db));
}

int reg_in_tx(reg_db *db) {
    return IS_PG(db) ? reg_pg->in_tx(db) : !sqlite3_get_autocommit(LITE(db));
}

int reg_db_begin(reg_db *db) {
    /* the advisory lock's key is "kiln" as an integer */
    return reg_exec(db, IS_PG(db) ? "BEGIN; SELECT pg_advisory_xact_lock(1802071150)"
                                  : "BEGIN IMMEDIATE");
}

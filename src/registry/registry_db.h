/* registry_db.h — the registry's database seam (library-private): one connection to SQLite or to
 * PostgreSQL behind the same small API, modelled on SQLite's (prepare, bind, step, column, reset,
 * finalize, exec), so that every query in src/registry/ is written once.
 *
 * Dialect: the SQL handed to reg_prepare and reg_exec is the registry's portable SQL, written in
 * SQLite's spelling: placeholders "?N" or "?", ON CONFLICT upserts, RETURNING, NULLS LAST,
 * FALSE, substr/length, CASE in place of SQLite-only scalar max() or sums of comparisons. The
 * PostgreSQL side (registry_pg.c) rewrites what PostgreSQL spells differently: placeholders to
 * $N, instr() to strpos(), group_concat() to string_agg(), and REG_DURATION_SQL (julianday()) to
 * an epoch difference. Schema DDL is per dialect (registry.c for SQLite, registry_pg.c for
 * PostgreSQL), with the same tables, columns, keys and migration steps.
 *
 * Results: reg_step returns REG_ROW, REG_DONE or one of the REG_E* classes below (the adapter
 * maps SQLite result codes and PostgreSQL SQLSTATEs onto them; reg_db_errmsg has the engine's
 * words). Columns: NULL text is NULL; integers and doubles of NULL are 0; PostgreSQL booleans
 * ('t'/'f') read as 1 and 0.
 *
 * Transactions: reg_db_begin takes the write lock at once on both: SQLite's BEGIN IMMEDIATE, and
 * on PostgreSQL BEGIN plus a transaction-scoped advisory lock (one key for the registry), so
 * writers are serialized exactly as on SQLite and read-then-insert steps (experiments, model
 * versions) never race. An error inside a PostgreSQL transaction aborts it; callers roll back on
 * any error anyway.
 *
 * Invariants: a reg_stmt belongs to one reg_db and one thread; reg_reset keeps bindings,
 * reg_clear_bindings drops them; text bound is copied.
 */
#ifndef KILN_REGISTRY_DB_H
#define KILN_REGISTRY_DB_H

#include <stdint.h>

typedef enum { REG_SQLITE = 0, REG_PG = 1 } reg_dialect;

enum {
    REG_OK = 0,
    REG_ROW = 100,
    REG_DONE = 101,
    REG_EBUSY = 1001,   /* locked longer than the timeout; deadlock; serialization failure */
    REG_ECONSTRAINT,    /* a unique, check or foreign key constraint */
    REG_EFORMAT,        /* not a database, damaged */
    REG_ENOMEM,
    REG_EFULL,          /* disk full */
    REG_EINVALID,       /* bad SQL, misuse */
    REG_ECONN,          /* the server cannot be reached or the connection broke */
    REG_EIO,            /* anything else */
    REG_EUNSUPPORTED    /* a PostgreSQL URI in a program without the PostgreSQL backend */
};

typedef struct reg_db {
    reg_dialect dialect;
    void *impl; /* sqlite3 *, or registry_pg.c's connection */
} reg_db;
typedef struct reg_stmt {
    reg_db *db;
    void *impl; /* sqlite3_stmt *, or registry_pg.c's statement */
} reg_stmt;

/* The REG_* class of an SQLite result code. */
int reg_map_sqlite(int rc);

/* ---- opening (registry_db.c: SQLite; registry_pg.c: PostgreSQL) ---- */

/* Wraps an open SQLite connection (the adapter owns it from now on). */
reg_db *reg_db_wrap_sqlite(void *sqlite_db);
/* Connects to the PostgreSQL server of conninfo (a libpq URI or key=value string) with
 * application_name "kiln <pid>" and, when schema is not NULL, that schema first in search_path
 * (created when missing). *out is set even on failure (for its message) and must be closed. */
int reg_db_open_pg(const char *conninfo, const char *schema, int connect_timeout_s, reg_db **out);
/* The SQLite connection (NULL for PostgreSQL): for what only SQLite has (pragmas, backup). */
void *reg_db_sqlite(reg_db *db);
reg_dialect reg_db_dialect(const reg_db *db);
void reg_db_close(reg_db *db);
/* 1 while the connection works (SQLite: always). */
int reg_db_alive(reg_db *db);

/* ---- statements ---- */

int reg_prepare(reg_db *db, const char *sql, reg_stmt **st);
int reg_step(reg_stmt *st);
void reg_reset(reg_stmt *st);
void reg_clear_bindings(reg_stmt *st);
void reg_finalize(reg_stmt *st); /* NULL is a no-op */
void reg_bind_int64(reg_stmt *st, int i, int64_t v);
void reg_bind_double(reg_stmt *st, int i, double v);
void reg_bind_text(reg_stmt *st, int i, const char *s); /* NULL binds NULL */
void reg_bind_null(reg_stmt *st, int i);
int reg_col_null(reg_stmt *st, int i);
int64_t reg_col_int64(reg_stmt *st, int i);
double reg_col_double(reg_stmt *st, int i);
const char *reg_col_text(reg_stmt *st, int i);

/* ---- the connection ---- */

/* Runs SQL without results (several statements separated by ';' on both). */
int reg_exec(reg_db *db, const char *sql);
/* Rows changed by the last INSERT, UPDATE or DELETE. */
int64_t reg_changes(reg_db *db);
const char *reg_db_errmsg(reg_db *db);
/* 1 inside a transaction. */
int reg_in_tx(reg_db *db);
int reg_db_begin(reg_db *db);

/* ---- the PostgreSQL side, linked only on request ----
 *
 * registry_db.c reaches registry_pg.c only through this table, which kiln_registry_use_postgres
 * (kiln/registry.h) installs: a program that never calls it (kiln-serve) links neither
 * registry_pg.c nor libpq and its Kerberos/LDAP/SASL dependencies. reg_db_open_pg without it
 * fails with REG_EUNSUPPORTED. A reg_db of dialect REG_PG exists only once the table is set. */
typedef struct reg_pg_ops {
    int (*open)(const char *conninfo, const char *schema, int connect_timeout_s, reg_db **out);
    int (*prepare)(reg_db *db, const char *sql, reg_stmt **st);
    int (*step)(reg_stmt *st);
    void (*reset)(reg_stmt *st);
    void (*clear_bindings)(reg_stmt *st);
    void (*finalize)(reg_stmt *st);
    void (*bind)(reg_stmt *st, int i, int type, int64_t iv, double dv, const char *s);
    int (*col_null)(reg_stmt *st, int i);
    const char *(*col_text)(reg_stmt *st, int i);
    int (*exec)(reg_db *db, const char *sql);
    int64_t (*changes)(reg_db *db);
    const char *(*errmsg)(reg_db *db);
    int (*in_tx)(reg_db *db);
    int (*alive)(reg_db *db);
    void (*close)(reg_db *db);
} reg_pg_ops;
extern const reg_pg_ops *reg_pg; /* NULL until kiln_registry_use_postgres() */

#endif

/* cg_db: PostgreSQL over libpq. One connection per object, parameterised SQL
 * only, errors translated to CG_DB_* codes; the libpq text is kept for logs
 * (never for clients). A lost connection is re-opened on the next call made
 * outside a transaction. Not thread-safe: one cg_db per thread. */
#ifndef CG_DB_H
#define CG_DB_H

#include <stddef.h>
#include <libpq-fe.h>

typedef struct cg_db cg_db;

enum {
	CG_DB_OK = 0,
	CG_DB_ECONN = -1,     /* server unreachable or connection lost */
	CG_DB_EDUP = -2,      /* unique_violation (23505) */
	CG_DB_ECONFLICT = -3, /* serialization_failure / deadlock (40001, 40P01) */
	CG_DB_ECHECK = -4,    /* check/foreign key/not null violation (23xxx) */
	CG_DB_ESQL = -5,      /* any other error */
};

/* Connects to `url` (libpq URI or key=value string). Returns NULL with the
 * reason in `err` when the URL is unusable or memory runs out. When the
 * server is only unreachable, returns an object anyway (so a caller can
 * report "disconnected" and retry later); cg_db_ping() tells the state. */
cg_db *cg_db_open(const char *url, char *err, size_t errlen);
void cg_db_close(cg_db *db);

/* 0 when connected (re-connecting if needed and not in a transaction),
 * CG_DB_ECONN otherwise. */
int cg_db_ping(cg_db *db);

/* Runs `sql` with `nparams` text parameters (NULL entries are SQL NULL).
 * On success returns CG_DB_OK and, when `res` is not NULL, hands the result
 * to the caller (PQclear it); on failure returns a CG_DB_* code, *res is
 * NULL. Reconnects and retries once when the connection was lost outside a
 * transaction. */
int cg_db_exec(cg_db *db, PGresult **res, const char *sql, int nparams, const char *const *params);

/* Runs a script of several statements without parameters (migrations). */
int cg_db_exec_script(cg_db *db, const char *sql);

/* BEGIN / COMMIT / ROLLBACK. Rollback is safe to call when no transaction is
 * open. Commit failing returns the code and leaves no transaction open. */
int cg_db_begin(cg_db *db);
int cg_db_commit(cg_db *db);
void cg_db_rollback(cg_db *db);
int cg_db_in_transaction(const cg_db *db);

/* BEGIN, then set_config('capsule.tenant', tenant, true): until COMMIT or
 * ROLLBACK the row-level security policies (sql/002_security.sql) admit only
 * that tenant's rows. Every tenant-scoped access runs inside one. Returns
 * CG_DB_OK, or a code with no transaction left open. */
int cg_db_begin_tenant(cg_db *db, const char *tenant);

/* The last error as libpq said it, and its SQLSTATE ("" when none). For logs. */
const char *cg_db_errmsg(const cg_db *db);
const char *cg_db_sqlstate(const cg_db *db);

/* Short name of a CG_DB_* code ("connection", "duplicate", ...). */
const char *cg_db_strerror(int code);

#endif

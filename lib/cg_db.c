/* cg_db: PostgreSQL over libpq: parameterised statements, SQLSTATE -> CG_DB_* codes, reconnects. */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "cg_db.h"
#include "cg_log.h"

#define DB_CONNECT_TIMEOUT "5" /* seconds; used when the URL sets none */
#define DB_MAX_PARAMS 65535    /* the protocol's limit */

struct cg_db {
	char *url;          /* as given; holds the password, never logged */
	PGconn *conn;       /* NULL only when libpq ran out of memory */
	int in_tx;          /* a BEGIN of ours (or the caller's) is open */
	int tx_lost;        /* the connection died inside that transaction */
	char errmsg[512];   /* last error, terse libpq text */
	char sqlstate[6];   /* last SQLSTATE or "" */
};

static void db_notice(void *arg, const char *message)
{
	(void)arg;
	cg_log_debug("postgres: %.*s", (int)strcspn(message, "\n"), message);
}

/* Copies a libpq message as one line (they end in, and may hold, newlines). */
static void one_line(char *dst, size_t len, const char *msg)
{
	size_t n, i;

	snprintf(dst, len, "%s", msg ? msg : "");
	n = strlen(dst);
	while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
		dst[--n] = '\0';
	for (i = 0; i < n; i++)
		if (dst[i] == '\n' || dst[i] == '\t' || dst[i] == '\r')
			dst[i] = ' ';
}

static void db_set_err(cg_db *db, const char *msg, const char *state)
{
	one_line(db->errmsg, sizeof db->errmsg, msg);
	snprintf(db->sqlstate, sizeof db->sqlstate, "%s", state ? state : "");
}

static void db_clear_err(cg_db *db)
{
	db->errmsg[0] = '\0';
	db->sqlstate[0] = '\0';
}

/* Opens a new PGconn for db->url; connect_timeout comes before dbname so
 * that a value inside the URL wins. */
static PGconn *db_connect_new(const char *url)
{
	const char *const keys[] = { "connect_timeout", "dbname", NULL };
	const char *const vals[] = { DB_CONNECT_TIMEOUT, url, NULL };
	PGconn *conn;

	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL)
		return NULL;
	PQsetNoticeProcessor(conn, db_notice, NULL);
	/* Terse: severity + primary message. DETAIL lines echo row values. */
	PQsetErrorVerbosity(conn, PQERRORS_TERSE);
	return conn;
}

static int db_connected(const cg_db *db)
{
	return db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK;
}

/* (Re)connects. Returns 0 or CG_DB_ECONN (reason in errmsg). */
static int db_reconnect(cg_db *db)
{
	if (db->conn == NULL) {
		db->conn = db_connect_new(db->url);
		if (db->conn == NULL) {
			db_set_err(db, "out of memory", "");
			return CG_DB_ECONN;
		}
	} else {
		PQreset(db->conn);
	}
	if (PQstatus(db->conn) != CONNECTION_OK) {
		db_set_err(db, PQerrorMessage(db->conn), "");
		cg_log_warn("db: connect failed: %s", db->errmsg);
		return CG_DB_ECONN;
	}
	cg_log_info("db: connected to %s:%s", PQhost(db->conn), PQport(db->conn));
	return 0;
}

/* An idle connection has nothing to read. Data or EOF there means the server
 * ended the session (e.g. FATAL 57P01 then close), so the connection is
 * known to be dead before we send anything. */
static int db_idle_conn_dead(cg_db *db)
{
	struct pollfd pfd;
	char c;
	ssize_t n;
	int fd;

	if (!db_connected(db))
		return 1;
	fd = PQsocket(db->conn);
	if (fd < 0)
		return 1;
	pfd.fd = fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	return 1;
}

/* Makes sure the connection is usable before a statement is sent. */
static int db_prepare(cg_db *db)
{
	if (db->in_tx) {
		if (db->tx_lost || db_idle_conn_dead(db)) {
			db->tx_lost = 1;
			db_set_err(db, "connection lost inside a transaction", "");
			return CG_DB_ECONN;
		}
		return 0;
	}
	if (db_idle_conn_dead(db))
		return db_reconnect(db);
	return 0;
}

static int db_is_conn_state(const char *st)
{
	return strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 ||
	       strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0;
}

/* Translates a result (possibly NULL) to a CG_DB_* code and records the error. */
static int db_classify(cg_db *db, const PGresult *res)
{
	const char *st;
	ExecStatusType es;

	if (res == NULL) {
		db_set_err(db, PQerrorMessage(db->conn), "");
		return CG_DB_ECONN;
	}
	es = PQresultStatus(res);
	if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK || es == PGRES_EMPTY_QUERY)
		return CG_DB_OK;
	st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (es != PGRES_FATAL_ERROR && es != PGRES_NONFATAL_ERROR && es != PGRES_BAD_RESPONSE) {
		/* COPY and friends: not something this wrapper drives. */
		db_set_err(db, "unsupported result status", "");
		return CG_DB_ESQL;
	}
	db_set_err(db, PQresultErrorMessage(res), st);
	if (st == NULL || st[0] == '\0')
		return PQstatus(db->conn) == CONNECTION_OK ? CG_DB_ESQL : CG_DB_ECONN;
	if (strcmp(st, "23505") == 0)
		return CG_DB_EDUP;
	if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)
		return CG_DB_ECONFLICT;
	if (strncmp(st, "23", 2) == 0)
		return CG_DB_ECHECK;
	if (db_is_conn_state(st))
		return CG_DB_ECONN;
	if (PQstatus(db->conn) != CONNECTION_OK)
		return CG_DB_ECONN;
	return CG_DB_ESQL;
}

/* Our view of the transaction follows the server's after every statement
 * (so a BEGIN or COMMIT sent through cg_db_exec is tracked as well). */
static void db_sync_tx(cg_db *db)
{
	PGTransactionStatusType ts = PQtransactionStatus(db->conn);

	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
		db->in_tx = 1;
	} else if (ts == PQTRANS_IDLE) {
		db->in_tx = 0;
		db->tx_lost = 0;
	}
}

static void db_log_failure(const cg_db *db, const char *what, int rc)
{
	/* Class 22 messages quote the offending input: keep them out of logs. */
	int quiet = strncmp(db->sqlstate, "22", 2) == 0;

	if (rc == CG_DB_EDUP) {
		cg_log_info("db: %s: %s [%s] %s", what, cg_db_strerror(rc), db->sqlstate,
			    db->errmsg);
		return;
	}
	cg_log_warn("db: %s: %s [%s] %s", what, cg_db_strerror(rc),
		    db->sqlstate[0] ? db->sqlstate : "-", quiet ? "(message withheld)" : db->errmsg);
}

cg_db *cg_db_open(const char *url, char *err, size_t errlen)
{
	PQconninfoOption *opts = NULL;
	char *perr = NULL;
	cg_db *db = NULL;

	if (url == NULL || url[0] == '\0') {
		snprintf(err, errlen, "empty database URL");
		goto out;
	}
	opts = PQconninfoParse(url, &perr);
	if (opts == NULL) {
		char why[256];

		one_line(why, sizeof why, perr ? perr : "out of memory");
		snprintf(err, errlen, "database URL not understood: %s", why);
		goto out;
	}
	db = calloc(1, sizeof *db);
	if (db == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	db->url = strdup(url);
	if (db->url == NULL) {
		snprintf(err, errlen, "out of memory");
		free(db);
		db = NULL;
		goto out;
	}
	db->conn = db_connect_new(db->url);
	if (db->conn == NULL) {
		snprintf(err, errlen, "out of memory");
		free(db->url);
		free(db);
		db = NULL;
		goto out;
	}
	if (PQstatus(db->conn) != CONNECTION_OK) {
		db_set_err(db, PQerrorMessage(db->conn), "");
		cg_log_warn("db: connect failed (will retry): %s", db->errmsg);
	}
out:
	if (perr != NULL)
		PQfreemem(perr);
	if (opts != NULL)
		PQconninfoFree(opts);
	return db;
}

void cg_db_close(cg_db *db)
{
	if (db == NULL)
		return;
	if (db->conn != NULL)
		PQfinish(db->conn);
	free(db->url);
	free(db);
}

int cg_db_ping(cg_db *db)
{
	PGresult *res = NULL;
	int rc;

	if (db == NULL)
		return CG_DB_ECONN;
	if (db->in_tx)
		return db_connected(db) && !db->tx_lost ? 0 : CG_DB_ECONN;
	rc = cg_db_exec(db, &res, "SELECT 1", 0, NULL);
	if (res != NULL)
		PQclear(res);
	return rc == CG_DB_OK ? 0 : CG_DB_ECONN;
}

int cg_db_exec(cg_db *db, PGresult **res, const char *sql, int nparams, const char *const *params)
{
	PGresult *r = NULL;
	int rc, attempt;

	if (res != NULL)
		*res = NULL;
	if (db == NULL)
		return CG_DB_ECONN;
	db_clear_err(db);
	if (sql == NULL || nparams < 0 || nparams > DB_MAX_PARAMS || (nparams > 0 && params == NULL)) {
		db_set_err(db, "bad arguments to cg_db_exec", "");
		return CG_DB_ESQL;
	}
	for (attempt = 0; attempt < 2; attempt++) {
		int was_in_tx = db->in_tx;

		rc = db_prepare(db);
		if (rc != 0)
			break;
		r = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
		rc = db_classify(db, r);
		if (rc == CG_DB_OK)
			break;
		if (r != NULL) {
			PQclear(r);
			r = NULL;
		}
		if (rc != CG_DB_ECONN)
			break;
		if (was_in_tx) {
			/* The transaction died with the connection: never replay. */
			db->tx_lost = 1;
			break;
		}
		/* Lost outside a transaction: reconnect, then one more try. */
		if (attempt == 0) {
			cg_log_warn("db: connection lost, reconnecting: %s", db->errmsg);
			if (db_reconnect(db) != 0)
				break;
		}
	}
	if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
		db_sync_tx(db);
	if (rc != CG_DB_OK) {
		db_log_failure(db, "statement failed", rc);
		return rc;
	}
	if (res != NULL)
		*res = r;
	else
		PQclear(r);
	return CG_DB_OK;
}

int cg_db_exec_script(cg_db *db, const char *sql)
{
	PGresult *r = NULL;
	int rc;

	if (db == NULL)
		return CG_DB_ECONN;
	db_clear_err(db);
	if (sql == NULL) {
		db_set_err(db, "no script", "");
		return CG_DB_ESQL;
	}
	rc = db_prepare(db);
	if (rc != 0)
		goto out;
	/* A script may have run in part: it is never replayed. */
	r = PQexec(db->conn, sql);
	rc = db_classify(db, r);
	if (rc == CG_DB_ECONN && db->in_tx)
		db->tx_lost = 1;
out:
	if (r != NULL)
		PQclear(r);
	if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
		db_sync_tx(db);
	if (rc != CG_DB_OK)
		db_log_failure(db, "script failed", rc);
	return rc;
}

int cg_db_begin(cg_db *db)
{
	int rc;

	if (db == NULL)
		return CG_DB_ECONN;
	if (db->in_tx) {
		db_set_err(db, "transaction already open", "");
		return CG_DB_ESQL;
	}
	rc = cg_db_exec(db, NULL, "BEGIN", 0, NULL);
	if (rc == CG_DB_OK) {
		db->in_tx = 1;
		db->tx_lost = 0;
	}
	return rc;
}

int cg_db_begin_tenant(cg_db *db, const char *tenant)
{
	const char *params[1] = { tenant };
	int rc;

	if (tenant == NULL || *tenant == '\0') {
		if (db != NULL)
			db_set_err(db, "no tenant given", "");
		return CG_DB_ESQL;
	}
	rc = cg_db_begin(db);
	if (rc != CG_DB_OK)
		return rc;
	rc = cg_db_exec(db, NULL, "SELECT set_config('capsule.tenant', $1, true)", 1, params);
	if (rc != CG_DB_OK)
		cg_db_rollback(db);
	return rc;
}

int cg_db_commit(cg_db *db)
{
	PGresult *r = NULL;
	int rc;

	if (db == NULL)
		return CG_DB_ECONN;
	if (!db->in_tx) {
		db_set_err(db, "no transaction open", "");
		return CG_DB_ESQL;
	}
	rc = cg_db_exec(db, &r, "COMMIT", 0, NULL);
	/* COMMIT of a failed transaction "succeeds" with the tag ROLLBACK. */
	if (rc == CG_DB_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
		db_set_err(db, "transaction was rolled back", "");
		cg_log_warn("db: commit: transaction was rolled back after an earlier error");
		rc = CG_DB_ESQL;
	}
	if (r != NULL)
		PQclear(r);
	db->in_tx = 0;
	db->tx_lost = 0;
	return rc;
}

void cg_db_rollback(cg_db *db)
{
	PGresult *r;

	if (db == NULL)
		return;
	if (db->in_tx && !db->tx_lost && db_connected(db)) {
		r = PQexec(db->conn, "ROLLBACK");
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			cg_log_warn("db: rollback failed: %s", PQerrorMessage(db->conn));
		PQclear(r);
	}
	db->in_tx = 0;
	db->tx_lost = 0;
}

int cg_db_in_transaction(const cg_db *db)
{
	return db != NULL && db->in_tx;
}

const char *cg_db_errmsg(const cg_db *db)
{
	return db != NULL ? db->errmsg : "";
}

const char *cg_db_sqlstate(const cg_db *db)
{
	return db != NULL ? db->sqlstate : "";
}

const char *cg_db_strerror(int code)
{
	switch (code) {
	case CG_DB_OK:
		return "ok";
	case CG_DB_ECONN:
		return "connection";
	case CG_DB_EDUP:
		return "duplicate";
	case CG_DB_ECONFLICT:
		return "conflict";
	case CG_DB_ECHECK:
		return "constraint";
	case CG_DB_ESQL:
		return "sql";
	default:
		return "unknown";
	}
}

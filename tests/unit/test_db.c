/* test_db: cg_db against a real PostgreSQL (CG_TEST_DATABASE_URL), skipped without one. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_db.h"
#include "cg_log.h"
#include "cg_util.h"
#include "tap.h"

static char table[64];
static char sqlbuf[1024];

/* Returns `sql` with every "@T" replaced by the test table's name. */
static const char *q(const char *sql)
{
	size_t o = 0, tl = strlen(table);

	while (*sql != '\0' && o + tl + 1 < sizeof sqlbuf) {
		if (sql[0] == '@' && sql[1] == 'T') {
			memcpy(sqlbuf + o, table, tl);
			o += tl;
			sql += 2;
		} else {
			sqlbuf[o++] = *sql++;
		}
	}
	sqlbuf[o] = '\0';
	return sqlbuf;
}

static long long count_rows(cg_db *db, const char *where)
{
	char sql[512];
	PGresult *res = NULL;
	long long n = -1;

	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE %s", table, where);
	if (cg_db_exec(db, &res, sql, 0, NULL) == CG_DB_OK)
		n = atoll(PQgetvalue(res, 0, 0));
	if (res)
		PQclear(res);
	return n;
}

static int backend_pid(cg_db *db)
{
	PGresult *res = NULL;
	int pid = -1;

	if (cg_db_exec(db, &res, "SELECT pg_backend_pid()", 0, NULL) == CG_DB_OK)
		pid = atoi(PQgetvalue(res, 0, 0));
	if (res)
		PQclear(res);
	return pid;
}

/* Ends a backend from another session and waits (up to 5 s) until it is gone. */
static int kill_backend(cg_db *other, int pid)
{
	char pids[16];
	const char *params[1] = { pids };
	PGresult *res = NULL;
	int rc;

	snprintf(pids, sizeof pids, "%d", pid);
	rc = cg_db_exec(other, &res, "SELECT pg_terminate_backend($1::int, 5000)", 1, params);
	rc = rc == CG_DB_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	if (res)
		PQclear(res);
	/* Let the FATAL message and the FIN reach our side of the socket. */
	usleep(50000);
	return rc;
}

static void test_params(cg_db *db)
{
	char injbuf[128];
	const char *params[3];
	PGresult *res = NULL;
	int rc;

	snprintf(injbuf, sizeof injbuf, "x'); DROP TABLE %s; --", table);
	params[0] = "1";
	params[1] = injbuf;
	params[2] = NULL;
	rc = cg_db_exec(db, NULL, q("INSERT INTO @T (id, name, note, qty) VALUES ($1, $2, $3, 5)"), 3, params);
	is_int(rc, CG_DB_OK, "insert with params (one NULL)");
	rc = cg_db_exec(db, &res, q("SELECT name, note, qty FROM @T WHERE id = $1"), 1, params);
	is_int(rc, CG_DB_OK, "select with a param");
	ok(res != NULL && PQntuples(res) == 1, "one row back");
	if (res != NULL && PQntuples(res) == 1) {
		is_str(PQgetvalue(res, 0, 0), injbuf, "injection text stored literally");
		ok(PQgetisnull(res, 0, 1), "NULL param stored as SQL NULL");
		is_str(PQgetvalue(res, 0, 2), "5", "text results");
	}
	if (res)
		PQclear(res);
	is_int(count_rows(db, "true"), 1, "table still there with its row");
	is_str(cg_db_errmsg(db), "", "no error after success");
}

static void test_errors(cg_db *db)
{
	const char *params[3];
	static char dummy;
	PGresult *res = (PGresult *)(void *)&dummy;
	int rc;

	params[0] = "1";
	params[1] = "dup";
	params[2] = NULL;
	rc = cg_db_exec(db, &res, q("INSERT INTO @T (id, name, note, qty) VALUES ($1, $2, $3, 1)"), 3, params);
	is_int(rc, CG_DB_EDUP, "unique violation -> CG_DB_EDUP");
	ok(res == NULL, "no result on failure");
	is_str(cg_db_sqlstate(db), "23505", "sqlstate 23505 kept");
	ok(strstr(cg_db_errmsg(db), "duplicate key") != NULL, "errmsg kept (%s)", cg_db_errmsg(db));
	is_str(cg_db_strerror(rc), "duplicate", "strerror names it");

	params[0] = "2";
	rc = cg_db_exec(db, NULL, q("INSERT INTO @T (id, name, note, qty) VALUES ($1, $2, $3, -1)"), 3, params);
	is_int(rc, CG_DB_ECHECK, "check violation -> CG_DB_ECHECK");
	is_str(cg_db_sqlstate(db), "23514", "sqlstate 23514");

	rc = cg_db_exec(db, NULL, q("INSERT INTO @T (id, qty) VALUES (3, 1)"), 0, NULL);
	is_int(rc, CG_DB_ECHECK, "not-null violation -> CG_DB_ECHECK");
	is_str(cg_db_sqlstate(db), "23502", "sqlstate 23502");

	rc = cg_db_exec(db, NULL, "SELEC 1", 0, NULL);
	is_int(rc, CG_DB_ESQL, "syntax error -> CG_DB_ESQL");
	is_str(cg_db_sqlstate(db), "42601", "sqlstate 42601");

	params[0] = "not-a-number";
	rc = cg_db_exec(db, NULL, q("SELECT 1 FROM @T WHERE id = $1"), 1, params);
	is_int(rc, CG_DB_ESQL, "bad integer text -> CG_DB_ESQL");

	rc = cg_db_exec(db, NULL, "SELECT 1", -1, NULL);
	is_int(rc, CG_DB_ESQL, "negative nparams refused");

	is_int(cg_db_exec(db, NULL, "SELECT 1", 0, NULL), CG_DB_OK, "connection usable after errors");
	is_str(cg_db_sqlstate(db), "", "sqlstate cleared by success");
}

static void test_tx(cg_db *db, cg_db *other)
{
	const char *p[1];
	int rc;

	ok(!cg_db_in_transaction(db), "not in a transaction at start");
	is_int(cg_db_begin(db), CG_DB_OK, "begin");
	ok(cg_db_in_transaction(db), "in a transaction after begin");
	is_int(cg_db_begin(db), CG_DB_ESQL, "nested begin refused");
	ok(cg_db_in_transaction(db), "still in the first transaction");
	p[0] = "10";
	is_int(cg_db_exec(db, NULL, q("INSERT INTO @T (id, name, qty) VALUES ($1, 'tx', 1)"), 1, p),
	       CG_DB_OK, "insert inside transaction");
	is_int(count_rows(other, "id = 10"), 0, "other session does not see uncommitted row");
	is_int(cg_db_commit(db), CG_DB_OK, "commit");
	ok(!cg_db_in_transaction(db), "no transaction after commit");
	is_int(count_rows(other, "id = 10"), 1, "other session sees committed row");

	is_int(cg_db_begin(db), CG_DB_OK, "begin again");
	p[0] = "11";
	cg_db_exec(db, NULL, q("INSERT INTO @T (id, name, qty) VALUES ($1, 'rb', 1)"), 1, p);
	cg_db_rollback(db);
	ok(!cg_db_in_transaction(db), "no transaction after rollback");
	is_int(count_rows(other, "id = 11"), 0, "rolled back row is gone");
	cg_db_rollback(db); /* safe without a transaction */
	is_int(cg_db_exec(db, NULL, "SELECT 1", 0, NULL), CG_DB_OK, "rollback without transaction is harmless");

	/* A failed statement poisons the transaction: COMMIT must not report success. */
	is_int(cg_db_begin(db), CG_DB_OK, "begin a transaction that will fail");
	p[0] = "12";
	cg_db_exec(db, NULL, q("INSERT INTO @T (id, name, qty) VALUES ($1, 'bad', 1)"), 1, p);
	rc = cg_db_exec(db, NULL, "SELEC 1", 0, NULL);
	is_int(rc, CG_DB_ESQL, "error inside transaction");
	ok(cg_db_in_transaction(db), "still in (aborted) transaction");
	rc = cg_db_commit(db);
	ok(rc != CG_DB_OK, "commit of an aborted transaction fails (%s)", cg_db_strerror(rc));
	ok(!cg_db_in_transaction(db), "no transaction after the failed commit");
	is_int(count_rows(other, "id = 12"), 0, "nothing of the aborted transaction is visible");

	is_int(cg_db_commit(db), CG_DB_ESQL, "commit without a transaction refused");

	/* BEGIN/COMMIT sent as plain statements are tracked too. */
	is_int(cg_db_exec(db, NULL, "BEGIN", 0, NULL), CG_DB_OK, "BEGIN through exec");
	ok(cg_db_in_transaction(db), "tracked as a transaction");
	is_int(cg_db_exec(db, NULL, "COMMIT", 0, NULL), CG_DB_OK, "COMMIT through exec");
	ok(!cg_db_in_transaction(db), "tracked as ended");
}

static void test_script(cg_db *db)
{
	char script[1024];
	int rc;

	snprintf(script, sizeof script,
		 "INSERT INTO %s (id, name, qty) VALUES (20, 's1', 1);\n"
		 "INSERT INTO %s (id, name, qty) VALUES (21, 's2', 2);\n"
		 "UPDATE %s SET qty = qty + 10 WHERE id IN (20, 21);\n",
		 table, table, table);
	rc = cg_db_exec_script(db, script);
	is_int(rc, CG_DB_OK, "multi-statement script");
	is_int(count_rows(db, "id IN (20, 21) AND qty > 10"), 2, "every statement of the script ran");

	snprintf(script, sizeof script,
		 "INSERT INTO %s (id, name, qty) VALUES (22, 's3', 1);\n"
		 "INSERT INTO %s (id, name, qty) VALUES (22, 's3', 1);\n", table, table);
	rc = cg_db_exec_script(db, script);
	is_int(rc, CG_DB_EDUP, "script error is translated");
	is_int(count_rows(db, "id = 22"), 0, "failed script is atomic (implicit transaction)");
	ok(!cg_db_in_transaction(db), "no transaction left open by a script");
}

static void test_reconnect(cg_db *db, cg_db *other)
{
	const char *p[1];
	int pid, pid2, rc;

	pid = backend_pid(db);
	ok(pid > 0 && kill_backend(other, pid), "killed our backend from another session");
	rc = cg_db_exec(db, NULL, "SELECT 1", 0, NULL);
	is_int(rc, CG_DB_OK, "next exec outside a transaction reconnects and works");
	pid2 = backend_pid(db);
	ok(pid2 > 0 && pid2 != pid, "on a new backend (%d -> %d)", pid, pid2);

	pid = pid2;
	ok(kill_backend(other, pid), "killed the backend again");
	is_int(cg_db_ping(db), 0, "ping reconnects");

	/* Inside a transaction nothing is replayed. */
	is_int(cg_db_begin(db), CG_DB_OK, "begin");
	p[0] = "30";
	is_int(cg_db_exec(db, NULL, q("INSERT INTO @T (id, name, qty) VALUES ($1, 'lost', 1)"), 1, p),
	       CG_DB_OK, "insert in transaction");
	pid = backend_pid(db);
	ok(kill_backend(other, pid), "killed the backend inside the transaction");
	rc = cg_db_exec(db, NULL, "SELECT 1", 0, NULL);
	is_int(rc, CG_DB_ECONN, "exec in a lost transaction -> CG_DB_ECONN");
	ok(cg_db_in_transaction(db), "transaction still open until the caller ends it");
	is_int(cg_db_ping(db), CG_DB_ECONN, "ping inside the lost transaction -> CG_DB_ECONN");
	is_int(cg_db_commit(db), CG_DB_ECONN, "commit of the lost transaction -> CG_DB_ECONN");
	ok(!cg_db_in_transaction(db), "transaction closed after commit");
	is_int(cg_db_exec(db, NULL, "SELECT 1", 0, NULL), CG_DB_OK, "works again after reconnect");
	is_int(count_rows(db, "id = 30"), 0, "the lost transaction's row is not there");

	/* Same with rollback. */
	is_int(cg_db_begin(db), CG_DB_OK, "begin");
	ok(kill_backend(other, backend_pid(db)), "killed the backend inside the transaction");
	is_int(cg_db_exec(db, NULL, "SELECT 1", 0, NULL), CG_DB_ECONN, "exec -> CG_DB_ECONN");
	cg_db_rollback(db);
	ok(!cg_db_in_transaction(db), "rollback ends the lost transaction");
	is_int(cg_db_ping(db), 0, "ping reconnects after rollback");
}

static void test_open_failures(void)
{
	static const char *bad[] = {
		"",
		"this is not a connection string",
		"postgresql://host/db?no_such_option=1",
		"host=127.0.0.1 port",
	};
	char err[256];
	size_t i;
	cg_db *db;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		db = cg_db_open(bad[i], err, sizeof err);
		ok(db == NULL && err[0] != '\0', "bad URL \"%s\" refused (%s)", bad[i], err);
		cg_db_close(db);
	}

	/* Nothing listens on port 1: an object, but disconnected. */
	err[0] = '\0';
	db = cg_db_open("postgresql://postgres@127.0.0.1:1/postgres", err, sizeof err);
	ok(db != NULL, "unreachable server still gives an object (%s)", err);
	if (db != NULL) {
		is_int(cg_db_ping(db), CG_DB_ECONN, "ping -> CG_DB_ECONN");
		is_int(cg_db_exec(db, NULL, "SELECT 1", 0, NULL), CG_DB_ECONN, "exec -> CG_DB_ECONN");
		is_int(cg_db_begin(db), CG_DB_ECONN, "begin -> CG_DB_ECONN");
		ok(!cg_db_in_transaction(db), "no transaction");
		ok(cg_db_errmsg(db)[0] != '\0', "reason kept (%s)", cg_db_errmsg(db));
		is_str(cg_db_strerror(CG_DB_ECONN), "connection", "strerror(ECONN)");
		cg_db_close(db);
	}
	cg_db_close(NULL);
}

int main(void)
{
	const char *url = getenv("CG_TEST_DATABASE_URL");
	char err[256] = "", rnd[40];
	cg_db *db, *other;

	if (url == NULL || url[0] == '\0')
		skip_all("CG_TEST_DATABASE_URL not set");
	cg_log_init("test_db", CG_LOG_ERROR);

	if (cg_random_id("", rnd, sizeof rnd) != 0)
		snprintf(rnd, sizeof rnd, "%ld", (long)getpid());
	snprintf(table, sizeof table, "cg_test_db_%s", rnd);

	db = cg_db_open(url, err, sizeof err);
	other = cg_db_open(url, err, sizeof err);
	if (db == NULL || other == NULL || cg_db_ping(db) != 0 || cg_db_ping(other) != 0) {
		printf("Bail out! cannot reach CG_TEST_DATABASE_URL: %s\n", err);
		return 1;
	}
	ok(1, "connected");
	if (!is_int(cg_db_exec(db, NULL,
			       q("CREATE TABLE @T (id integer PRIMARY KEY, name text NOT NULL, "
				 "note text, qty integer CHECK (qty >= 0))"),
			       0, NULL),
		    CG_DB_OK, "create test table %s", table)) {
		printf("Bail out! %s\n", cg_db_errmsg(db));
		return 1;
	}

	test_params(db);
	test_errors(db);
	test_tx(db, other);
	test_script(db);
	test_reconnect(db, other);
	test_open_failures();

	is_int(cg_db_exec(other, NULL, q("DROP TABLE @T"), 0, NULL), CG_DB_OK, "drop test table");
	cg_db_close(db);
	cg_db_close(other);
	return done_testing();
}

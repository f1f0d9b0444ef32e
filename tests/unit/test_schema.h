/* test_schema.h: gives a unit test its own PostgreSQL database with every
 * migration applied, so it neither depends on nor disturbs anything else.
 * The role in CG_TEST_DATABASE_URL needs CREATEDB (and CREATEROLE the first
 * time, for 002_security's capsule_app). */
#ifndef CG_TEST_SCHEMA_H
#define CG_TEST_SCHEMA_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_db.h"
#include "cg_util.h"

/* url with its database name replaced by `db` (simple postgresql:// URLs). */
__attribute__((unused))
static int test_url_with_db(const char *url, const char *db, char *out, size_t outlen)
{
	const char *scheme = strstr(url, "://"), *slash, *q;
	size_t host_len;
	int n;

	if (scheme == NULL)
		return -1;
	slash = strchr(scheme + 3, '/');
	host_len = slash != NULL ? (size_t)(slash - url) : strlen(url);
	q = slash != NULL ? strchr(slash, '?') : NULL;
	n = snprintf(out, outlen, "%.*s/%s%s", (int)host_len, url, db, q != NULL ? q : "");
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int test_migration_filter(const struct dirent *e)
{
	size_t n = strlen(e->d_name);

	return n > 8 && e->d_name[0] >= '0' && e->d_name[0] <= '9' && e->d_name[3] == '_' &&
	       strcmp(e->d_name + n - 4, ".sql") == 0;
}

static int test_apply_file(cg_db *db, const char *path)
{
	FILE *f = fopen(path, "r");
	char chunk[4096];
	cg_buf b;
	size_t n;
	int rc;

	if (f == NULL)
		return -1;
	cg_buf_init(&b, 1 << 20);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		cg_buf_append(&b, chunk, n);
	fclose(f);
	rc = b.data != NULL ? cg_db_exec_script(db, b.data) : -1;
	cg_buf_free(&b);
	return rc;
}

/* Creates database "<prefix>_<random>" (name written to out), applies every
 * sql/NNN_name.sql of $top_srcdir in order and returns a connection to it,
 * or NULL. */
__attribute__((unused))
static cg_db *test_database_create(const char *url, const char *prefix, char *out, size_t outlen)
{
	char sql[256], dburl[1024], dir[4096], path[8192], id[40], err[256];
	const char *top = getenv("top_srcdir");
	struct dirent **list = NULL;
	cg_db *admin, *db = NULL;
	int i, n;

	if (cg_random_id("", id, sizeof id) < 0)
		return NULL;
	snprintf(out, outlen, "%s_%s", prefix, id);
	admin = cg_db_open(url, err, sizeof err);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", out);
	if (admin == NULL || cg_db_exec_script(admin, sql) != CG_DB_OK) {
		cg_db_close(admin);
		return NULL;
	}
	cg_db_close(admin);
	if (test_url_with_db(url, out, dburl, sizeof dburl) < 0)
		return NULL;
	db = cg_db_open(dburl, err, sizeof err);
	if (db == NULL)
		return NULL;
	snprintf(dir, sizeof dir, "%s/sql", top ? top : "..");
	n = scandir(dir, &list, test_migration_filter, alphasort);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
		if (db != NULL && test_apply_file(db, path) != CG_DB_OK) {
			fprintf(stderr, "# migration %s failed: %s\n", list[i]->d_name, cg_db_errmsg(db));
			cg_db_close(db);
			db = NULL;
		}
		free(list[i]);
	}
	free(list);
	return n > 0 ? db : (cg_db_close(db), (cg_db *)NULL);
}

/* Closes `db` and drops the database named `name`. */
__attribute__((unused))
static void test_database_drop(const char *url, cg_db *db, const char *name)
{
	char sql[128], err[256];
	cg_db *admin;

	cg_db_close(db);
	admin = cg_db_open(url, err, sizeof err);
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	if (admin != NULL)
		cg_db_exec_script(admin, sql);
	cg_db_close(admin);
}

/* A test's application role: a temporary role `role` (made from `prefix`,
 * written to role[64]) that is a member of capsule_app, so row-level
 * security applies to it as to the programs. Returns a connection to
 * database `dbname` running as that role, or NULL (said on stdout: the
 * caller skips its checks; the role may still exist). Drop it with
 * test_app_role_drop() in every case. */
__attribute__((unused))
static cg_db *test_app_role_open(const char *url, cg_db *db, const char *dbname, const char *prefix,
				 char role[64])
{
	char sql[256], dburl[1024], err[256];
	cg_db *app = NULL;

	role[0] = '\0';
	if (cg_random_id(prefix, role, 64) < 0)
		return NULL;
	snprintf(sql, sizeof sql, "CREATE ROLE %s NOLOGIN IN ROLE capsule_app; GRANT %s TO CURRENT_USER", role, role);
	if (cg_db_exec_script(db, sql) != CG_DB_OK)
		role[0] = '\0';
	else if (test_url_with_db(url, dbname, dburl, sizeof dburl) == 0)
		app = cg_db_open(dburl, err, sizeof err);
	snprintf(sql, sizeof sql, "SET ROLE %s", role);
	if (app == NULL || cg_db_exec_script(app, sql) != CG_DB_OK) {
		printf("# could not make a capsule_app member (%s): row-level security checks skipped\n",
		       cg_db_errmsg(app != NULL ? app : db));
		cg_db_close(app);
		return NULL;
	}
	return app;
}

/* Closes `app` (may be NULL) and drops the role test_app_role_open() made. */
__attribute__((unused))
static void test_app_role_drop(cg_db *db, cg_db *app, const char *role)
{
	char sql[128];

	cg_db_close(app);
	if (role[0] == '\0')
		return;
	snprintf(sql, sizeof sql, "DROP ROLE %s", role);
	if (cg_db_exec_script(db, sql) != CG_DB_OK)
		printf("# could not drop role %s: %s\n", role, cg_db_errmsg(db));
}

#endif

/* capsule-migrate: applies pending schema migrations (sql/NNN_name.sql) in order, once each. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_config.h"
#include "cg_db.h"
#include "cg_log.h"
#include "cg_util.h"

#define MAX_MIGRATIONS 1000
#define MAX_MIGRATION_BYTES (4 * 1024 * 1024)
/* Serialises concurrent migrators (several hosts deploying at once). */
#define MIGRATE_LOCK_KEY "4242001"

static void usage(void)
{
	fprintf(stderr,
		"usage: capsule-migrate [-n] [-f config-file] [-s sql-dir]\n"
		"  -f FILE  configuration file (default: $CAPSULE_CONFIG or %s/capsule-gateway.conf)\n"
		"  -s DIR   folder of NNN_name.sql migrations (default: $CAPSULE_SQLDIR or %s)\n"
		"  -n       list pending migrations, apply nothing\n",
		CG_SYSCONFDIR, CG_SQLDIR);
	exit(2);
}

/* "001_initial.sql": three digits, '_', [a-z0-9_]+, ".sql". */
static int migration_name_ok(const char *n)
{
	size_t len = strlen(n), i;

	if (len < 9 || strcmp(n + len - 4, ".sql") != 0)
		return 0;
	for (i = 0; i < 3; i++)
		if (n[i] < '0' || n[i] > '9')
			return 0;
	if (n[3] != '_')
		return 0;
	for (i = 4; i < len - 4; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_'))
			return 0;
	return 1;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the migration files of `dir`, sorted. Returns the count or -1. */
static int list_migrations(const char *dir, char **names, int max)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL) {
		cg_log_error("cannot open migrations folder %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (!migration_name_ok(e->d_name))
			continue;
		if (n == max) {
			cg_log_error("more than %d migrations in %s", max, dir);
			break;
		}
		names[n] = strdup(e->d_name);
		if (names[n] == NULL)
			break;
		n++;
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof names[0], cmp_names);
	return n;
}

/* Reads a whole file (capped). Returns malloc'ed text or NULL. */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	cg_buf b;
	char chunk[8192];
	size_t n;

	if (f == NULL) {
		cg_log_error("cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	cg_buf_init(&b, MAX_MIGRATION_BYTES);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (cg_buf_append(&b, chunk, n) < 0) {
			cg_log_error("%s is larger than %d bytes", path, MAX_MIGRATION_BYTES);
			cg_buf_free(&b);
			fclose(f);
			return NULL;
		}
	}
	fclose(f);
	if (b.len == 0) {
		cg_log_error("%s is empty", path);
		cg_buf_free(&b);
		return NULL;
	}
	return b.data;
}

static int is_applied(cg_db *db, const char *version, int *applied)
{
	const char *params[1] = { version };
	PGresult *res = NULL;
	int rc = cg_db_exec(db, &res, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, params);

	if (rc == CG_DB_OK) {
		*applied = PQntuples(res) > 0;
		PQclear(res);
	}
	return rc;
}

/* Applies one migration in its own transaction. */
static int apply_one(cg_db *db, const char *dir, const char *name)
{
	char path[4096], version[4];
	const char *params[2] = { version, name };
	char *sql = NULL;
	int rc = -1;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	memcpy(version, name, 3);
	version[3] = '\0';
	sql = read_file(path);
	if (sql == NULL)
		goto out;
	if (cg_db_begin(db) != CG_DB_OK ||
	    cg_db_exec_script(db, sql) != CG_DB_OK ||
	    cg_db_exec(db, NULL, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, params) != CG_DB_OK ||
	    cg_db_commit(db) != CG_DB_OK) {
		cg_log_error("migration %s failed, nothing of it was applied: %s", name, cg_db_errmsg(db));
		cg_db_rollback(db);
		goto out;
	}
	printf("applied %s\n", name);
	rc = 0;
out:
	free(sql);
	return rc;
}

int main(int argc, char **argv)
{
	cg_config cfg;
	char err[512];
	const char *cfgpath = NULL, *sqldir = getenv("CAPSULE_SQLDIR");
	char *names[MAX_MIGRATIONS];
	int n = 0, i, c, dry = 0, status = 1, pending = 0;
	cg_db *db = NULL;
	cg_log_level lvl;

	memset(&cfg, 0, sizeof cfg);
	cg_log_init("capsule-migrate", CG_LOG_INFO);
	while ((c = getopt(argc, argv, "f:s:nh")) != -1) {
		switch (c) {
		case 'f': cfgpath = optarg; break;
		case 's': sqldir = optarg; break;
		case 'n': dry = 1; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (sqldir == NULL || *sqldir == '\0')
		sqldir = CG_SQLDIR;
	if (cfgpath == NULL)
		cfgpath = cg_config_default_path();
	if (cg_config_load(&cfg, cfgpath, CG_PROG_MIGRATE, err, sizeof err) < 0) {
		fprintf(stderr, "capsule-migrate: %s\n", err);
		goto out;
	}
	if (cg_log_level_parse(cfg.log_level, &lvl) == 0)
		cg_log_set_level(lvl);

	n = list_migrations(sqldir, names, MAX_MIGRATIONS);
	if (n < 0)
		goto out;
	for (i = 1; i < n; i++) {
		if (strncmp(names[i - 1], names[i], 3) == 0) {
			cg_log_error("%s and %s share the version %.3s", names[i - 1], names[i], names[i]);
			goto out;
		}
	}
	/* Migrations run as the owner (admin_database_url); the programs'
	 * database_url role may not create or alter anything. */
	db = cg_db_open(cfg.admin_database_url != NULL ? cfg.admin_database_url : cfg.database_url,
			err, sizeof err);
	if (db == NULL) {
		cg_log_error("database_url: %s", err);
		goto out;
	}
	if (cg_db_ping(db) != CG_DB_OK) {
		cg_log_error("cannot connect to the database: %s", cg_db_errmsg(db));
		goto out;
	}
	if (cg_db_exec(db, NULL, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL) != CG_DB_OK ||
	    cg_db_exec(db, NULL,
		       "CREATE TABLE IF NOT EXISTS schema_migrations ("
		       " version text PRIMARY KEY, name text NOT NULL,"
		       " applied_at timestamptz NOT NULL DEFAULT now())", 0, NULL) != CG_DB_OK) {
		cg_log_error("cannot prepare schema_migrations: %s", cg_db_errmsg(db));
		goto out;
	}
	for (i = 0; i < n; i++) {
		int applied = 0;
		char version[4]; /* the NNN prefix of "NNN_name.sql" */

		memcpy(version, names[i], 3);
		version[3] = '\0';
		if (is_applied(db, version, &applied) != CG_DB_OK) {
			cg_log_error("cannot read schema_migrations: %s", cg_db_errmsg(db));
			goto out;
		}
		if (applied)
			continue;
		pending++;
		if (dry) {
			printf("pending %s\n", names[i]);
			continue;
		}
		if (apply_one(db, sqldir, names[i]) < 0)
			goto out;
	}
	if (pending == 0)
		printf("database is up to date (%d migrations)\n", n);
	status = 0;
out:
	if (db != NULL) {
		cg_db_exec(db, NULL, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 0, NULL);
		cg_db_close(db);
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	cg_config_free(&cfg);
	return status;
}

/* test_schema.h: gives a unit test its own PostgreSQL schema with the
 * migrations applied, so it neither depends on nor disturbs the database. */
#ifndef CG_TEST_SCHEMA_H
#define CG_TEST_SCHEMA_H

#include <stdio.h>
#include <stdlib.h>

#include "cg_db.h"
#include "cg_util.h"

/* Creates schema "<prefix>_<random>" (name written to out), makes it the
 * search path and applies sql/001_initial.sql from $top_srcdir. */
__attribute__((unused))
static int test_schema_create(cg_db *db, const char *prefix, char *out, size_t outlen)
{
	char sql[256], path[4096], id[40], chunk[4096];
	const char *top = getenv("top_srcdir");
	FILE *f;
	cg_buf b;
	size_t n;
	int rc;

	if (cg_random_id("", id, sizeof id) < 0)
		return -1;
	snprintf(out, outlen, "%s_%s", prefix, id);
	snprintf(sql, sizeof sql, "CREATE SCHEMA %s; SET search_path = %s, public", out, out);
	if (cg_db_exec_script(db, sql) != CG_DB_OK)
		return -1;
	snprintf(path, sizeof path, "%s/sql/001_initial.sql", top ? top : "..");
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	cg_buf_init(&b, 1 << 20);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		cg_buf_append(&b, chunk, n);
	fclose(f);
	rc = cg_db_exec_script(db, b.data);
	cg_buf_free(&b);
	return rc;
}

__attribute__((unused))
static void test_schema_drop(cg_db *db, const char *schema)
{
	char sql[128];

	snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
	cg_db_exec_script(db, sql);
}

#endif

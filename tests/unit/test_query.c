/* test_query: GET /activities listing and /statistics counts (filters, order, paging, tenants, query plans). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_activity.h"
#include "cg_db.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_query.h"
#include "cg_util.h"
#include "tap.h"
#include "test_schema.h"

/* --- without a database: filter validation and the statement text -------- */

struct fcase {
	const char *name;
	cg_activity_filter f;
	const char *field; /* NULL: valid */
};

static const struct fcase fcases[] = {
	{ "no filter", { NULL, NULL, NULL }, NULL },
	{ "all three", { "user_789", "active", "security" }, NULL },
	{ "every state is accepted: resolved", { NULL, "resolved", NULL }, NULL },
	{ "category with spaces and UTF-8", { NULL, NULL, "r\xc3\xa9seau interne" }, NULL },
	{ "user id with a space", { "a b", NULL, NULL }, "user_id" },
	{ "user id with a quote", { "x'--", NULL, NULL }, "user_id" },
	{ "empty user id", { "", NULL, NULL }, "user_id" },
	{ "unknown state", { NULL, "open", NULL }, "state" },
	{ "state in capitals", { NULL, "ACTIVE", NULL }, "state" },
	{ "empty category", { NULL, NULL, "" }, "category" },
	{ "category not UTF-8", { NULL, NULL, "\xff\xfe" }, "category" },
};

static void check_filters(void)
{
	char longcat[CG_CATEGORY_MAX + 2];
	cg_activity_filter f = { NULL, NULL, NULL };
	cg_field_error fe;
	size_t i;

	for (i = 0; i < sizeof fcases / sizeof fcases[0]; i++) {
		int rc;

		memset(&fe, 0, sizeof fe);
		rc = cg_activity_filter_check(&fcases[i].f, &fe);
		if (fcases[i].field == NULL)
			ok(rc == 0, "filter %s: valid", fcases[i].name);
		else
			ok(rc == -1 && fe.field != NULL && strcmp(fe.field, fcases[i].field) == 0,
			   "filter %s: rejected naming %s (got %s)", fcases[i].name, fcases[i].field,
			   fe.field != NULL ? fe.field : "nothing");
	}
	memset(longcat, 'c', sizeof longcat - 1);
	longcat[sizeof longcat - 1] = '\0';
	f.category = longcat;
	ok(cg_activity_filter_check(&f, &fe) == -1 && strcmp(fe.field, "category") == 0,
	   "a category of 256 bytes is refused");
	longcat[CG_CATEGORY_MAX] = '\0';
	ok(cg_activity_filter_check(&f, &fe) == 0, "a category of 255 bytes is accepted");
}

static void check_statement(void)
{
	cg_activity_filter f = { "u1", NULL, "ops" };
	cg_list_query q;

	ok(cg_activity_list_query("default", &f, 50, 0, &q) == 0, "statement built");
	is_int(q.nparams, 5, "tenant, two filters, limit, offset: 5 parameters");
	is_str(q.params[1], "u1", "$2 is the user");
	is_str(q.params[2], "ops", "$3 is the category");
	is_str(q.params[3], "50", "$4 is the limit");
	is_str(q.params[4], "0", "$5 is the offset");
	ok(strstr(q.sql, "a.user_id = $2 AND a.category = $3") != NULL &&
	   strstr(q.sql, "c.user_id = $2 AND c.category = $3") != NULL &&
	   strstr(q.sql, "AND a.state") == NULL && strstr(q.sql, "AND c.state") == NULL,
	   "page and total filter the same columns, and only the given ones");
	ok(strstr(q.sql, "u1") == NULL && strstr(q.sql, "ops") == NULL,
	   "no value enters the statement text");
	ok(strstr(q.sql, "tenant_id = $1") != NULL, "the tenant is named in the statement");
	ok(cg_activity_list_query("default", NULL, 0, 0, &q) == CG_QUERY_EBOUNDS, "limit 0 refused");
	ok(cg_activity_list_query("default", NULL, 501, 0, &q) == CG_QUERY_EBOUNDS, "limit 501 refused");
	ok(cg_activity_list_query("default", NULL, 500, CG_LIST_OFFSET_MAX, &q) == 0,
	   "limit 500, offset 1000000 accepted");
	ok(cg_activity_list_query("default", NULL, 1, CG_LIST_OFFSET_MAX + 1, &q) == CG_QUERY_EBOUNDS,
	   "offset 1000001 refused");
	ok(cg_activity_list_query("default", NULL, 1, -1, &q) == CG_QUERY_EBOUNDS, "offset -1 refused");
}

/* --- with a database ------------------------------------------------------- */

static int exec_ok(cg_db *db, const char *sql)
{
	int rc = cg_db_exec(db, NULL, sql, 0, NULL);

	if (rc != CG_DB_OK)
		printf("# %s: %s\n", sql, cg_db_errmsg(db));
	return rc == CG_DB_OK;
}

/* "d6,d5,..." : the capsule_ids of a list, in order. */
static const char *ids_of(json_object *arr, char *out, size_t outlen)
{
	size_t i, len = 0;

	out[0] = '\0';
	for (i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
		json_object *a = json_object_array_get_idx(arr, i);
		const char *id = json_object_get_string(json_object_object_get(a, "capsule_id"));
		int n = snprintf(out + len, outlen - len, "%s%s", i > 0 ? "," : "", id ? id : "?");

		if (n < 0 || (size_t)n >= outlen - len)
			break;
		len += (size_t)n;
	}
	return out;
}

struct lcase {
	const char *name;
	cg_activity_filter f;
	long limit, offset;
	const char *ids;
	long long total;
};

/* Fixture (tenant default): d1..d6, d5 and d6 created at the same time
 * (d6 has the higher id, so it comes first). acme holds a1, a2 of user u1. */
static const struct lcase lcases[] = {
	{ "no filter", { NULL, NULL, NULL }, 50, 0, "d6,d5,d4,d3,d2,d1", 6 },
	{ "user u1", { "u1", NULL, NULL }, 50, 0, "d6,d2,d1", 3 },
	{ "state active", { NULL, "active", NULL }, 50, 0, "d6,d5,d3,d1", 4 },
	{ "category security", { NULL, NULL, "security" }, 50, 0, "d6,d4,d3,d1", 4 },
	{ "user u1, state active", { "u1", "active", NULL }, 50, 0, "d6,d1", 2 },
	{ "user u2, category security", { "u2", NULL, "security" }, 50, 0, "d4,d3", 2 },
	{ "state active, category security", { NULL, "active", "security" }, 50, 0, "d6,d3,d1", 3 },
	{ "all three", { "u1", "active", "security" }, 50, 0, "d6,d1", 2 },
	{ "nothing matches", { NULL, "approved", NULL }, 50, 0, "", 0 },
	{ "unknown user", { "nobody", NULL, NULL }, 50, 0, "", 0 },
	{ "limit 2", { NULL, NULL, NULL }, 2, 0, "d6,d5", 6 },
	{ "limit 2 offset 1", { NULL, NULL, NULL }, 2, 1, "d5,d4", 6 },
	{ "limit 2 offset 5: last page is short", { NULL, NULL, NULL }, 2, 5, "d1", 6 },
	{ "offset 6: past the end, total still told", { NULL, NULL, NULL }, 50, 6, "", 6 },
	{ "filtered, past the end", { "u1", NULL, NULL }, 10, 100, "", 3 },
	{ "filtered page", { NULL, "active", NULL }, 1, 2, "d3", 4 },
};

static void check_list(cg_db *db)
{
	json_object *arr = NULL, *got = NULL;
	long long total;
	char ids[256];
	size_t i;
	int rc;

	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction for the list");
	for (i = 0; i < sizeof lcases / sizeof lcases[0]; i++) {
		const struct lcase *c = &lcases[i];

		total = -1;
		rc = cg_activity_list(db, "default", &c->f, c->limit, c->offset, &arr, &total);
		if (!ok(rc == 0 && arr != NULL, "list %s: runs", c->name)) {
			printf("# rc %d: %s\n", rc, cg_db_errmsg(db));
			break;
		}
		is_str(ids_of(arr, ids, sizeof ids), c->ids, "list %s: newest first", c->name);
		is_int(total, c->total, "list %s: total", c->name);
		json_object_put(arr);
		arr = NULL;
	}
	rc = cg_activity_list(db, "default", NULL, 50, 0, &arr, &total);
	ok(rc == 0 && cg_activity_get(db, "default", "d1", &got) == 0 &&
	   json_object_array_length(arr) == 6,
	   "list and single read work in one transaction");
	if (got != NULL && arr != NULL)
		is_str(cg_json_compact(json_object_array_get_idx(arr, 5)), cg_json_compact(got),
		       "a listed activity has exactly the shape GET /activity gives");
	json_object_put(arr);
	json_object_put(got);
	arr = NULL;
	ok(cg_activity_list(db, "default", NULL, 0, 0, &arr, &total) == CG_QUERY_EBOUNDS && arr == NULL,
	   "limit 0 is refused without running anything");
	ok(cg_db_in_transaction(db), "the caller's transaction is still open (cg_query never commits)");
	cg_db_rollback(db);

	ok(cg_db_begin_tenant(db, "acme") == CG_DB_OK &&
	   cg_activity_list(db, "acme", NULL, 50, 0, &arr, &total) == 0, "acme lists its own");
	is_str(ids_of(arr, ids, sizeof ids), "a2,a1", "acme sees only acme's activities");
	is_int(total, 2, "acme's total counts only acme's");
	json_object_put(arr);
	arr = NULL;
	cg_db_rollback(db);
}

static long long stat_of(json_object *o, const char *key)
{
	json_object *v = json_object_object_get(o, key);

	return v != NULL && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
}

static void check_stats(cg_db *db, const char *tenant, const long long want[5])
{
	static const char *const keys[] = { "total_activities", "active_activities",
					     "resolved_activities", "dismissed_activities",
					     "total_actions" };
	json_object *st = NULL;
	size_t i;

	ok(cg_db_begin_tenant(db, tenant) == CG_DB_OK && cg_statistics(db, tenant, &st) == 0,
	   "statistics of %s", tenant);
	for (i = 0; i < 5; i++)
		is_int(stat_of(st, keys[i]), want[i], "%s: %s", tenant, keys[i]);
	json_object_put(st);
	cg_db_rollback(db);
}

/* With the policies applied to the owner too (FORCE), a tenant transaction
 * of acme that asks for default's rows gets nothing: row-level security is
 * the second wall behind the tenant_id filter. */
static void check_rls_wall(cg_db *db)
{
	json_object *arr = NULL, *st = NULL;
	long long total = -1;

	ok(exec_ok(db, "ALTER TABLE activities FORCE ROW LEVEL SECURITY") &&
	   exec_ok(db, "ALTER TABLE actions FORCE ROW LEVEL SECURITY"), "policies apply to the owner");
	ok(cg_db_begin_tenant(db, "acme") == CG_DB_OK &&
	   cg_activity_list(db, "default", NULL, 50, 0, &arr, &total) == 0,
	   "list of default inside acme's transaction runs");
	ok(arr != NULL && json_object_array_length(arr) == 0 && total == 0,
	   "... and row-level security hides default's rows");
	ok(cg_statistics(db, "default", &st) == 0 && stat_of(st, "total_activities") == 0 &&
	   stat_of(st, "total_actions") == 0, "... and its counts");
	json_object_put(arr);
	json_object_put(st);
	cg_db_rollback(db);
	arr = NULL;
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK &&
	   cg_activity_list(db, "default", NULL, 50, 0, &arr, &total) == 0 && total == 6,
	   "under the policies default still sees its own 6");
	json_object_put(arr);
	cg_db_rollback(db);
	ok(exec_ok(db, "ALTER TABLE activities NO FORCE ROW LEVEL SECURITY") &&
	   exec_ok(db, "ALTER TABLE actions NO FORCE ROW LEVEL SECURITY"), "policies lifted again");
}

/* --- query plans ------------------------------------------------------------ */

typedef struct plan_facts {
	int page_seen;        /* a Limit node (the page) was found */
	int page_seq_scans;   /* Seq Scan on activities under the Limit */
	char page_index[64];  /* first index on activities the page reads */
	int sorts;            /* Sort / Incremental Sort nodes anywhere */
	double sort_rows;     /* largest estimated input of one */
	char outline[512];    /* node types in pre-order, for the diagnostics */
} plan_facts;

static const char *member_str(json_object *o, const char *key)
{
	const char *s = json_object_get_string(json_object_object_get(o, key));

	return s != NULL ? s : "";
}

static void walk_plan(json_object *node, int in_page, plan_facts *pf)
{
	const char *type = member_str(node, "Node Type");
	const char *rel = member_str(node, "Relation Name");
	const char *idx = member_str(node, "Index Name");
	json_object *kids = json_object_object_get(node, "Plans");
	size_t len = strlen(pf->outline), i;

	snprintf(pf->outline + len, sizeof pf->outline - len, "%s%s%s%s", len > 0 ? "; " : "", type,
		 idx[0] != '\0' ? " " : "", idx);
	if (strcmp(type, "Limit") == 0) {
		pf->page_seen = 1;
		in_page = 1;
	}
	if (strcmp(type, "Sort") == 0 || strcmp(type, "Incremental Sort") == 0) {
		double rows = json_object_get_double(json_object_object_get(node, "Plan Rows"));
		pf->sorts++;
		if (rows > pf->sort_rows)
			pf->sort_rows = rows;
	}
	if (in_page && strcmp(rel, "activities") == 0) {
		if (strcmp(type, "Seq Scan") == 0)
			pf->page_seq_scans++;
		if (idx[0] != '\0' && pf->page_index[0] == '\0')
			snprintf(pf->page_index, sizeof pf->page_index, "%s", idx);
	}
	if (in_page && strcmp(type, "Bitmap Index Scan") == 0 && pf->page_index[0] == '\0')
		snprintf(pf->page_index, sizeof pf->page_index, "%s", idx);
	for (i = 0; kids != NULL && i < json_object_array_length(kids); i++)
		walk_plan(json_object_array_get_idx(kids, i), in_page, pf);
}

/* EXPLAIN (FORMAT JSON) of exactly the statement cg_activity_list runs. */
static int explain(cg_db *db, const char *tenant, const cg_activity_filter *f, long limit,
		   long offset, plan_facts *pf)
{
	char sql[CG_LIST_SQL_MAX + 32], err[128];
	cg_list_query q;
	PGresult *res = NULL;
	json_object *doc = NULL, *plan;
	int rc = -1;

	memset(pf, 0, sizeof *pf);
	if (cg_activity_list_query(tenant, f, limit, offset, &q) != 0)
		return -1;
	snprintf(sql, sizeof sql, "EXPLAIN (FORMAT JSON) %s", q.sql);
	if (cg_db_exec(db, &res, sql, q.nparams, q.params) != CG_DB_OK) {
		printf("# EXPLAIN: %s\n", cg_db_errmsg(db));
		return -1;
	}
	doc = cg_json_parse(PQgetvalue(res, 0, 0), strlen(PQgetvalue(res, 0, 0)), 128, err, sizeof err);
	plan = doc != NULL && json_object_is_type(doc, json_type_array)
		       ? json_object_object_get(json_object_array_get_idx(doc, 0), "Plan")
		       : NULL;
	if (plan != NULL) {
		walk_plan(plan, 0, pf);
		rc = 0;
	}
	json_object_put(doc);
	PQclear(res);
	return rc;
}

struct pcase {
	const char *name;
	cg_activity_filter f;
	const char *index; /* the index that has exactly this order, or NULL (a combination) */
};

static const struct pcase pcases[] = {
	{ "no filter", { NULL, NULL, NULL }, "activities_tenant_created" },
	{ "user_id", { "user_3", NULL, NULL }, "activities_tenant_user_created" },
	{ "state", { NULL, "resolved", NULL }, "activities_tenant_state_created" },
	{ "category", { NULL, NULL, "ops" }, "activities_tenant_category_created" },
	{ "user_id + state", { "user_3", "resolved", NULL }, NULL },
	{ "user_id + category", { "user_3", NULL, "ops" }, NULL },
	{ "state + category", { NULL, "resolved", "ops" }, NULL },
	{ "user_id + state + category", { "user_3", "resolved", "ops" }, NULL },
};

/* ~20,000 rows in three tenants (as in doc/api.md, "Listing and query
 * plans"), the statistics gathered, the policies applied as in production
 * (FORCE, inside a tenant transaction), then the plan of every filter
 * combination at the default page. Where an index has exactly the filter
 * and the order, the page must be an ordered index walk with no Sort. A
 * combination has no index of its own: it must still be found through an
 * activities_tenant_* index and never by a Seq Scan; the planner may then
 * sort the rows that index found when it expects few of them. */
static void check_plans(cg_db *db)
{
	static const char bulk[] =
		"INSERT INTO activities (tenant_id, activity_id, capsule_id, title, state, category,"
		" user_id, created_at)"
		" SELECT (ARRAY['default','acme','globex'])[1 + i % 3], 'act_' || i, 'cap_' || i, 't' || i,"
		" (ARRAY['active','investigating','mitigating','approved','rejected','dismissed',"
		"'resolved'])[1 + (i / 3) % 7],"
		" (ARRAY['security','network','billing','ops','misc'])[1 + (i / 21) % 5],"
		" 'user_' || ((i / 105) % 20), timestamptz '2025-01-01' + i * interval '1 minute'"
		" FROM generate_series(1, 20000) i";
	plan_facts pf;
	size_t i;

	ok(exec_ok(db, bulk) && exec_ok(db, "ANALYZE activities"), "20,000 rows in 3 tenants, analyzed");
	ok(exec_ok(db, "ALTER TABLE activities FORCE ROW LEVEL SECURITY") &&
	   cg_db_begin_tenant(db, "acme") == CG_DB_OK, "plans are taken under the policies, as acme");
	for (i = 0; i < sizeof pcases / sizeof pcases[0]; i++) {
		const struct pcase *c = &pcases[i];

		if (!ok(explain(db, "acme", &c->f, CG_LIST_LIMIT_DEFAULT, 0, &pf) == 0 && pf.page_seen,
			"plan %s: EXPLAIN of the list statement", c->name))
			continue;
		printf("# %s: %s\n", c->name, pf.outline);
		ok(pf.page_seq_scans == 0, "plan %s: no Seq Scan on activities for the page", c->name);
		ok(strncmp(pf.page_index, "activities_tenant_", 18) == 0,
		   "plan %s: the page is read through an activities_tenant_* index (%s)", c->name,
		   pf.page_index[0] != '\0' ? pf.page_index : "none");
		if (c->index != NULL) {
			is_str(pf.page_index, c->index, "plan %s: the index with this order", c->name);
			is_int(pf.sorts, 0, "plan %s: no Sort node", c->name);
		} else if (pf.sorts > 0) {
			printf("# %s: the planner sorts ~%.0f rows the index found\n", c->name, pf.sort_rows);
		}
	}
	cg_db_rollback(db);
	ok(exec_ok(db, "ALTER TABLE activities NO FORCE ROW LEVEL SECURITY"), "policies lifted again");
}

static void check_database(const char *url)
{
	static const char fixture[] =
		"INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex');"
		"INSERT INTO activities (tenant_id, activity_id, capsule_id, title, state, category,"
		" user_id, created_at) VALUES"
		" ('default', 'x1', 'd1', 't', 'active', 'security', 'u1', '2025-01-01T00:01:00Z'),"
		" ('default', 'x2', 'd2', 't', 'resolved', 'network', 'u1', '2025-01-01T00:02:00Z'),"
		" ('default', 'x3', 'd3', 't', 'active', 'security', 'u2', '2025-01-01T00:03:00Z'),"
		" ('default', 'x4', 'd4', 't', 'dismissed', 'security', 'u2', '2025-01-01T00:04:00Z'),"
		" ('default', 'x5', 'd5', 't', 'active', NULL, NULL, '2025-01-01T00:05:00Z'),"
		" ('default', 'x6', 'd6', 't', 'active', 'security', 'u1', '2025-01-01T00:05:00Z'),"
		" ('acme', 'y1', 'a1', 't', 'active', 'security', 'u1', '2025-01-01T00:10:00Z'),"
		" ('acme', 'y2', 'a2', 't', 'resolved', 'security', 'u1', '2025-01-01T00:11:00Z');"
		"INSERT INTO actions (tenant_id, action_id, capsule_id, action_type, user_id) VALUES"
		" ('default', 'n1', 'd1', 'inspect', 'u1'), ('default', 'n2', 'd1', 'mitigate', 'u1'),"
		" ('default', 'n3', 'd3', 'inspect', 'u2'), ('acme', 'n1', 'a1', 'inspect', 'u1'),"
		" ('acme', 'n2', 'a2', 'approve', 'u1')";
	static const long long want_default[5] = { 6, 4, 1, 1, 3 };
	static const long long want_acme[5] = { 2, 1, 1, 0, 2 };
	static const long long want_globex[5] = { 0, 0, 0, 0, 0 };
	char dbname[64];
	cg_db *db = test_database_create(url, "cg_test_query", dbname, sizeof dbname);

	if (!ok(db != NULL, "test database created (%s)", dbname))
		return;
	if (ok(cg_db_exec_script(db, fixture) == CG_DB_OK, "fixture inserted as the owner")) {
		check_list(db);
		check_stats(db, "default", want_default);
		check_stats(db, "acme", want_acme);
		check_stats(db, "globex", want_globex);
		check_rls_wall(db);
		check_plans(db);
	} else {
		printf("# %s\n", cg_db_errmsg(db));
	}
	test_database_drop(url, db, dbname);
}

int main(void)
{
	const char *url = getenv("CG_TEST_DATABASE_URL");

	cg_log_init("test_query", CG_LOG_ERROR);
	check_filters();
	check_statement();
	if (url != NULL && *url != '\0')
		check_database(url);
	else
		printf("# CG_TEST_DATABASE_URL not set: database checks skipped\n");
	return done_testing();
}

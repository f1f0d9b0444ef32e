/* test_activity: validation of create requests (table), and storage when CG_TEST_DATABASE_URL is set. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_activity.h"
#include "cg_db.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"
#include "tap.h"
#include "test_schema.h"

struct vcase {
	const char *name;
	const char *body;
	const char *field; /* NULL: valid */
};

static const struct vcase vcases[] = {
	{ "minimal", "{\"title\":\"t\"}", NULL },
	{ "full seed example",
	  "{\"activity_id\":\"act_123\",\"capsule_id\":\"cap_456\",\"title\":\"Security Alert\","
	  "\"message\":\"m\",\"priority\":\"high\",\"category\":\"security\",\"user_id\":\"user_789\","
	  "\"metadata\":{\"ip\":\"192.168.1.1\"}}", NULL },
	{ "missing title", "{\"message\":\"m\"}", "title" },
	{ "null title", "{\"title\":null}", "title" },
	{ "blank title", "{\"title\":\"   \"}", "title" },
	{ "numeric title", "{\"title\":5}", "title" },
	{ "bad priority", "{\"title\":\"t\",\"priority\":\"urgent\"}", "priority" },
	{ "priority not string", "{\"title\":\"t\",\"priority\":1}", "priority" },
	{ "each priority low", "{\"title\":\"t\",\"priority\":\"low\"}", NULL },
	{ "each priority critical", "{\"title\":\"t\",\"priority\":\"critical\"}", NULL },
	{ "metadata array", "{\"title\":\"t\",\"metadata\":[1]}", "metadata" },
	{ "metadata string", "{\"title\":\"t\",\"metadata\":\"x\"}", "metadata" },
	{ "capsule id with space", "{\"title\":\"t\",\"capsule_id\":\"a b\"}", "capsule_id" },
	{ "capsule id with slash", "{\"title\":\"t\",\"capsule_id\":\"a/b\"}", "capsule_id" },
	{ "empty activity id", "{\"title\":\"t\",\"activity_id\":\"\"}", "activity_id" },
	{ "user id with quote", "{\"title\":\"t\",\"user_id\":\"x'--\"}", "user_id" },
	{ "category number", "{\"title\":\"t\",\"category\":3}", "category" },
	{ "message object", "{\"title\":\"t\",\"message\":{}}", "message" },
};

static void check_validation_table(void)
{
	size_t i;

	for (i = 0; i < sizeof(vcases) / sizeof(vcases[0]); i++) {
		char err[128];
		json_object *body = cg_json_parse_object(vcases[i].body, strlen(vcases[i].body), 32, err, sizeof err);
		cg_activity_new a;
		cg_field_error fe = { 0 };
		int rc;

		if (body == NULL) {
			ok(0, "%s: body parses (%s)", vcases[i].name, err);
			continue;
		}
		rc = cg_activity_validate_new(body, &a, &fe);
		if (vcases[i].field == NULL)
			ok(rc == 0, "%s: valid", vcases[i].name);
		else
			ok(rc == -1 && fe.field != NULL && strcmp(fe.field, vcases[i].field) == 0,
			   "%s: rejected naming %s (got %s)", vcases[i].name, vcases[i].field,
			   fe.field ? fe.field : "nothing");
		json_object_put(body);
	}
}

/* Builds {"title": <n bytes of 'a'>} style bodies to test the bounds. */
static json_object *body_with(const char *key, size_t n, const char *extra)
{
	char *s = malloc(n + 1);
	json_object *o = json_object_new_object();

	memset(s, 'a', n);
	s[n] = '\0';
	json_object_object_add(o, key, json_object_new_string(s));
	if (extra != NULL && strcmp(key, "title") != 0)
		json_object_object_add(o, "title", json_object_new_string(extra));
	free(s);
	return o;
}

static void check_bounds(void)
{
	struct {
		const char *key;
		size_t n;
		int valid;
	} b[] = {
		{ "title", CG_TITLE_MAX, 1 },
		{ "title", CG_TITLE_MAX + 1, 0 },
		{ "message", CG_MESSAGE_MAX, 1 },
		{ "message", CG_MESSAGE_MAX + 1, 0 },
		{ "capsule_id", 255, 1 },
		{ "capsule_id", 256, 0 },
		{ "category", 255, 1 },
		{ "category", 256, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		json_object *o = body_with(b[i].key, b[i].n, "t");
		cg_activity_new a;
		cg_field_error fe = { 0 };
		int rc = cg_activity_validate_new(o, &a, &fe);

		ok((rc == 0) == b[i].valid, "%s of %zu bytes is %s", b[i].key, b[i].n, b[i].valid ? "accepted" : "rejected");
		json_object_put(o);
	}
}

static void check_defaults_and_depth(void)
{
	const char *body = "{\"title\":\"t\"}";
	char err[64];
	json_object *o = cg_json_parse_object(body, strlen(body), 32, err, sizeof err);
	json_object *deep, *cur;
	cg_activity_new a;
	cg_field_error fe;
	int i;

	ok(cg_activity_validate_new(o, &a, &fe) == 0, "minimal body validates");
	is_str(a.priority, "medium", "priority defaults to medium");
	is_str(a.metadata, "{}", "metadata defaults to {}");
	is_str(a.message, "", "message defaults to empty");
	ok(a.user_id == NULL, "no user_id means tenant-wide");
	ok(strncmp(a.capsule_id, "cap_", 4) == 0 && cg_id_valid(a.capsule_id), "capsule_id is generated (%s)", a.capsule_id);
	ok(strncmp(a.activity_id, "act_", 4) == 0 && cg_id_valid(a.activity_id), "activity_id is generated");

	/* metadata nested 16 deep is fine, 17 is not */
	for (i = CG_METADATA_DEPTH; i <= CG_METADATA_DEPTH + 1; i++) {
		int d;

		deep = json_object_new_object();
		cur = deep;
		for (d = 1; d < i; d++) { /* i objects deep in all */
			json_object *n = json_object_new_object();

			json_object_object_add(cur, "k", n);
			cur = n;
		}
		ok(cg_json_depth(deep) == i, "built metadata of depth %d", i);
		json_object_object_add(o, "metadata", deep);
		ok((cg_activity_validate_new(o, &a, &fe) == 0) == (i <= CG_METADATA_DEPTH),
		   "metadata of depth %d is %s", i, i <= CG_METADATA_DEPTH ? "accepted" : "rejected");
	}
	json_object_put(o);
}

static void check_cache_key(void)
{
	char k[64];

	ok(cg_activity_cache_key("default", "cap_456", k, sizeof k) == 0, "cache key fits");
	is_str(k, "cg:{default}:activity:cap_456", "cache key is namespaced by tenant");
	ok(cg_activity_cache_key("default", "cap_456", k, 10) == -1, "a too small buffer is refused");
}

static void check_storage(const char *url)
{
	char err[256], dbname[64];
	cg_db *db = test_database_create(url, "test_activity", dbname, sizeof dbname);
	const char *body = "{\"capsule_id\":\"cap_x\",\"title\":\"O'Brien; DROP TABLE activities;--\","
			   "\"user_id\":\"u1\",\"priority\":\"critical\",\"metadata\":{\"a\":{\"b\":[1,2]}}}";
	json_object *o, *act = NULL, *ev = NULL, *got = NULL, *ev2 = NULL;
	cg_activity_new a;
	cg_field_error fe;
	PGresult *res = NULL;

	if (!ok(db != NULL, "test database created with every migration")) {
		return;
	}
	cg_db_exec_script(db, "INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme')");

	o = cg_json_parse_object(body, strlen(body), 32, err, sizeof err);
	ok(cg_activity_validate_new(o, &a, &fe) == 0, "create body validates");
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK &&
	   cg_activity_create(db, "default", &a, "tester", &act, &ev) == 0 && cg_db_commit(db) == CG_DB_OK,
	   "activity created and committed");
	is_str(json_object_get_string(json_object_object_get(act, "title")), "O'Brien; DROP TABLE activities;--",
	       "SQL text in a field is stored literally");
	is_int(json_object_get_int(json_object_object_get(act, "version")), 1, "version starts at 1");
	is_str(json_object_get_string(json_object_object_get(act, "state")), "active", "state starts active");
	is_str(cg_event_str(ev, "type"), "activity.created", "the outbox event is activity.created");
	is_str(cg_event_str(ev, "user_id"), "u1", "the event is addressed to the activity's user");
	is_str(cg_event_str(ev, "capsule_id"), "cap_x", "the event names the capsule");
	ok(strlen(cg_event_str(ev, "event_id")) == 36, "the event has a uuid");

	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction");
	ok(cg_activity_get(db, "default", "cap_x", &got) == 0, "activity read back");
	is_str(cg_json_compact(got), cg_json_compact(act), "read back equals the created shape");
	ok(cg_activity_get(db, "default", "nope", &ev2) == CG_ACT_ENOTFOUND, "unknown capsule is not found");
	ok(cg_activity_create(db, "default", &a, "tester", &ev2, &ev2) == CG_ACT_EEXISTS, "same capsule_id again is EEXISTS");
	cg_db_rollback(db);
	ok(!cg_db_in_transaction(db), "no transaction left open after the rollback");
	{
		json_object *act2 = NULL, *ev3 = NULL;

		ok(cg_db_begin_tenant(db, "acme") == CG_DB_OK &&
		   cg_activity_create(db, "acme", &a, "tester", &act2, &ev3) == 0 && cg_db_commit(db) == CG_DB_OK,
		   "the same capsule_id is free in another tenant");
		json_object_put(act2);
		json_object_put(ev3);
	}
	ok(cg_db_exec(db, &res, "SELECT (SELECT count(*) FROM activities) || '/' || (SELECT count(*) FROM events)",
		      0, NULL) == CG_DB_OK && strcmp(PQgetvalue(res, 0, 0), "2/2") == 0,
	   "the failed create wrote neither activity nor event");
	if (res != NULL)
		PQclear(res);
	test_database_drop(url, db, dbname);
	json_object_put(o);
	json_object_put(act);
	json_object_put(ev);
	json_object_put(got);
}

int main(void)
{
	const char *url = getenv("CG_TEST_DATABASE_URL");

	cg_log_init("test_activity", CG_LOG_ERROR);
	check_validation_table();
	check_bounds();
	check_defaults_and_depth();
	check_cache_key();
	if (url != NULL && *url != '\0')
		check_storage(url);
	else
		printf("# CG_TEST_DATABASE_URL not set: storage checks skipped\n");
	return done_testing();
}

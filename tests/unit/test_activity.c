/* test_activity: validation of create, update and action requests (tables, configured bounds), storage and
 * state changes when CG_TEST_DATABASE_URL is set, the version-guarded cache when CG_TEST_REDIS_URL is set. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_activity.h"
#include "cg_db.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_state.h"
#include "cg_util.h"
#include "tap.h"
#include "test_schema.h"

/* The default bounds (cg_limits_from_config(NULL, ...)), set in main. */
static cg_limits lim_default;

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
		rc = cg_activity_validate_new(body, &lim_default, &a, &fe);
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
		int rc = cg_activity_validate_new(o, &lim_default, &a, &fe);

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

	ok(cg_activity_validate_new(o, &lim_default, &a, &fe) == 0, "minimal body validates");
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
		ok((cg_activity_validate_new(o, &lim_default, &a, &fe) == 0) == (i <= CG_METADATA_DEPTH),
		   "metadata of depth %d is %s", i, i <= CG_METADATA_DEPTH ? "accepted" : "rejected");
	}
	json_object_put(o);
}

/* n copies of the UTF-8 character `ch` as a new string (caller frees). */
static char *repeat_utf8(const char *ch, size_t n)
{
	size_t cl = strlen(ch), i;
	char *s = malloc(cl * n + 1);

	for (i = 0; i < n; i++)
		memcpy(s + i * cl, ch, cl);
	s[cl * n] = '\0';
	return s;
}

static int validate_title(const cg_limits *lim, const char *title, cg_field_error *fe)
{
	json_object *o = json_object_new_object();
	cg_activity_new a;
	int rc;

	json_object_object_add(o, "title", json_object_new_string(title));
	rc = cg_activity_validate_new(o, lim, &a, fe);
	json_object_put(o);
	return rc;
}

/* Titles are counted in characters, not bytes; the bounds come from the config. */
static void check_configured_limits(void)
{
	static const struct {
		const char *what;
		const char *ch; /* one character, 1-4 bytes */
		size_t n;
		int valid;
	} t[] = {
		{ "500 ASCII characters", "a", 500, 1 },
		{ "501 ASCII characters", "a", 501, 0 },
		{ "500 two-byte characters (1000 bytes)", "\xc3\xa9", 500, 1 },
		{ "501 two-byte characters", "\xc3\xa9", 501, 0 },
		{ "500 three-byte characters (1500 bytes)", "\xe2\x82\xac", 500, 1 },
		{ "500 four-byte characters (2000 bytes)", "\xf0\x9f\x94\x92", 500, 1 },
		{ "501 four-byte characters", "\xf0\x9f\x94\x92", 501, 0 },
	};
	cg_config cfg;
	cg_limits lim;
	cg_field_error fe;
	json_object *o, *meta;
	cg_activity_new a;
	size_t i;

	is_int((long long)lim_default.title_chars, CG_TITLE_MAX, "default title bound is 500 characters");
	is_int((long long)lim_default.message_bytes, CG_MESSAGE_MAX, "default message bound is 64 KiB");
	is_int((long long)lim_default.metadata_bytes, CG_METADATA_MAX, "default metadata bound is 64 KiB");
	is_int(lim_default.metadata_depth, CG_METADATA_DEPTH, "default metadata depth is 16");
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		char *title = repeat_utf8(t[i].ch, t[i].n);
		int rc;

		memset(&fe, 0, sizeof fe);
		rc = validate_title(&lim_default, title, &fe);
		ok((rc == 0) == t[i].valid, "title of %s is %s", t[i].what,
		   t[i].valid ? "accepted" : "rejected");
		if (!t[i].valid)
			ok(fe.field != NULL && strcmp(fe.field, "title") == 0 && fe.message != NULL &&
				   strstr(fe.message, "500 characters") != NULL,
			   "the error names title and its bound (%s)", fe.message ? fe.message : "");
		free(title);
	}

	memset(&cfg, 0, sizeof cfg);
	cfg.max_title_chars = 10;
	cfg.max_message_bytes = 20;
	cfg.max_metadata_bytes = 16;
	cfg.max_metadata_depth = 2;
	cg_limits_from_config(&cfg, &lim);
	is_int((long long)lim.title_chars, 10, "title bound from the config");
	is_int((long long)lim.message_bytes, 20, "message bound from the config");
	is_int((long long)lim.metadata_bytes, 16, "metadata bound from the config");
	is_int(lim.metadata_depth, 2, "metadata depth from the config");
	{
		char *ten = repeat_utf8("\xc3\xa9", 10), *eleven = repeat_utf8("\xc3\xa9", 11);

		ok(validate_title(&lim, ten, &fe) == 0, "10 characters pass a 10-character bound");
		ok(validate_title(&lim, eleven, &fe) == -1 && strstr(fe.message, "10 characters") != NULL,
		   "11 characters do not, and the message says 10 (%s)", fe.message);
		free(ten);
		free(eleven);
	}
	o = body_with("message", 20, "t");
	ok(cg_activity_validate_new(o, &lim, &a, &fe) == 0, "a 20-byte message passes a 20-byte bound");
	json_object_put(o);
	o = body_with("message", 21, "t");
	ok(cg_activity_validate_new(o, &lim, &a, &fe) == -1 && strcmp(fe.field, "message") == 0,
	   "a 21-byte message does not");
	json_object_put(o);
	/* {"k":"1234567890"} is 18 bytes compact; {"k":"12345678"} is 16 */
	o = body_with("x", 1, "t");
	meta = json_object_new_object();
	json_object_object_add(meta, "k", json_object_new_string("12345678"));
	json_object_object_add(o, "metadata", meta);
	ok(cg_activity_validate_new(o, &lim, &a, &fe) == 0, "16 bytes of metadata pass a 16-byte bound");
	json_object_object_add(meta, "k", json_object_new_string("123456789"));
	ok(cg_activity_validate_new(o, &lim, &a, &fe) == -1 && strcmp(fe.field, "metadata") == 0,
	   "17 bytes do not");
	json_object_object_add(meta, "k", json_object_new_object());
	ok(cg_activity_validate_new(o, &lim, &a, &fe) == 0, "metadata of depth 2 passes a depth bound of 2");
	json_object_object_add(json_object_object_get(meta, "k"), "k", json_object_new_object());
	ok(cg_activity_validate_new(o, &lim, &a, &fe) == -1 && strcmp(fe.field, "metadata") == 0,
	   "depth 3 does not");
	json_object_put(o);
}

struct ucase {
	const char *name;
	const char *body;
	const char *field; /* NULL: valid; "-": invalid without a field */
};

static const struct ucase update_cases[] = {
	{ "seed example", "{\"capsule_id\":\"cap_456\",\"state\":\"resolved\",\"resolution\":\"Verified\","
			  "\"metadata\":{\"resolved_by\":\"user_789\"}}", NULL },
	{ "state only", "{\"capsule_id\":\"c\",\"state\":\"investigating\"}", NULL },
	{ "metadata only", "{\"capsule_id\":\"c\",\"metadata\":{\"a\":1}}", NULL },
	{ "metadata deleting a key", "{\"capsule_id\":\"c\",\"metadata\":{\"a\":null}}", NULL },
	{ "empty metadata is a change", "{\"capsule_id\":\"c\",\"metadata\":{}}", NULL },
	{ "title only", "{\"capsule_id\":\"c\",\"title\":\"new\"}", NULL },
	{ "message only", "{\"capsule_id\":\"c\",\"message\":\"\"}", NULL },
	{ "priority only", "{\"capsule_id\":\"c\",\"priority\":\"low\"}", NULL },
	{ "category only", "{\"capsule_id\":\"c\",\"category\":\"ops\"}", NULL },
	{ "unknown fields are ignored", "{\"capsule_id\":\"c\",\"state\":\"active\",\"colour\":\"red\"}", NULL },
	{ "missing capsule_id", "{\"state\":\"resolved\"}", "capsule_id" },
	{ "null capsule_id", "{\"capsule_id\":null,\"state\":\"resolved\"}", "capsule_id" },
	{ "numeric capsule_id", "{\"capsule_id\":4,\"state\":\"resolved\"}", "capsule_id" },
	{ "bad capsule_id", "{\"capsule_id\":\"a b\",\"state\":\"resolved\"}", "capsule_id" },
	{ "nothing to change", "{\"capsule_id\":\"c\"}", "-" },
	{ "only unknown fields", "{\"capsule_id\":\"c\",\"colour\":\"red\"}", "-" },
	{ "only nulls", "{\"capsule_id\":\"c\",\"state\":null,\"title\":null}", "-" },
	{ "unknown state", "{\"capsule_id\":\"c\",\"state\":\"closed\"}", "state" },
	{ "state in capitals", "{\"capsule_id\":\"c\",\"state\":\"Resolved\"}", "state" },
	{ "state not a string", "{\"capsule_id\":\"c\",\"state\":1}", "state" },
	{ "blank title", "{\"capsule_id\":\"c\",\"title\":\" \"}", "title" },
	{ "bad priority", "{\"capsule_id\":\"c\",\"priority\":\"urgent\"}", "priority" },
	{ "metadata array", "{\"capsule_id\":\"c\",\"metadata\":[]}", "metadata" },
	{ "resolution number", "{\"capsule_id\":\"c\",\"resolution\":3}", "resolution" },
	{ "category object", "{\"capsule_id\":\"c\",\"category\":{}}", "category" },
};

static const struct ucase action_cases[] = {
	{ "seed example", "{\"capsule_id\":\"cap_456\",\"action_type\":\"mitigate\",\"user_id\":\"user_789\","
			  "\"metadata\":{\"mitigation_method\":\"block_ip\"}}", NULL },
	{ "inspect", "{\"capsule_id\":\"c\",\"action_type\":\"inspect\"}", NULL },
	{ "approve", "{\"capsule_id\":\"c\",\"action_type\":\"approve\"}", NULL },
	{ "reject", "{\"capsule_id\":\"c\",\"action_type\":\"reject\"}", NULL },
	{ "dismiss", "{\"capsule_id\":\"c\",\"action_type\":\"dismiss\"}", NULL },
	{ "unknown fields are ignored", "{\"capsule_id\":\"c\",\"action_type\":\"dismiss\",\"x\":1}", NULL },
	{ "missing capsule_id", "{\"action_type\":\"inspect\"}", "capsule_id" },
	{ "bad capsule_id", "{\"capsule_id\":\"x/y\",\"action_type\":\"inspect\"}", "capsule_id" },
	{ "missing action_type", "{\"capsule_id\":\"c\"}", "action_type" },
	{ "null action_type", "{\"capsule_id\":\"c\",\"action_type\":null}", "action_type" },
	{ "unknown action_type", "{\"capsule_id\":\"c\",\"action_type\":\"resolve\"}", "action_type" },
	{ "action_type a state", "{\"capsule_id\":\"c\",\"action_type\":\"investigating\"}", "action_type" },
	{ "action_type not a string", "{\"capsule_id\":\"c\",\"action_type\":[\"inspect\"]}", "action_type" },
	{ "bad user_id", "{\"capsule_id\":\"c\",\"action_type\":\"inspect\",\"user_id\":\"a b\"}", "user_id" },
	{ "metadata string", "{\"capsule_id\":\"c\",\"action_type\":\"inspect\",\"metadata\":\"x\"}", "metadata" },
};

static void check_case_table(const char *what, const struct ucase *cases, size_t n, int is_action)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char err[128];
		json_object *body = cg_json_parse_object(cases[i].body, strlen(cases[i].body), 32, err, sizeof err);
		cg_activity_patch p;
		cg_action_req a;
		cg_field_error fe;
		int rc;

		memset(&fe, 0, sizeof fe);
		if (body == NULL) {
			ok(0, "%s %s: body parses (%s)", what, cases[i].name, err);
			continue;
		}
		rc = is_action ? cg_activity_validate_action(body, &lim_default, &a, &fe)
			       : cg_activity_validate_update(body, &lim_default, &p, &fe);
		if (cases[i].field == NULL)
			ok(rc == 0, "%s %s: valid%s%s", what, cases[i].name, rc ? " -- " : "",
			   rc && fe.message ? fe.message : "");
		else if (strcmp(cases[i].field, "-") == 0)
			ok(rc == -1 && fe.field == NULL && fe.message != NULL,
			   "%s %s: rejected (%s)", what, cases[i].name, fe.message ? fe.message : "");
		else
			ok(rc == -1 && fe.field != NULL && strcmp(fe.field, cases[i].field) == 0,
			   "%s %s: rejected naming %s (got %s)", what, cases[i].name, cases[i].field,
			   fe.field ? fe.field : "nothing");
		json_object_put(body);
	}
}

static void check_update_action_validation(void)
{
	const char *b = "{\"capsule_id\":\"cap_1\",\"state\":\"resolved\",\"metadata\":{\"a\":null,\"b\":[1]}}";
	const char *c = "{\"capsule_id\":\"cap_1\",\"action_type\":\"inspect\"}";
	char err[64];
	json_object *o;
	cg_activity_patch p;
	cg_action_req a;
	cg_field_error fe;

	check_case_table("update", update_cases, sizeof update_cases / sizeof update_cases[0], 0);
	check_case_table("action", action_cases, sizeof action_cases / sizeof action_cases[0], 1);

	o = cg_json_parse_object(b, strlen(b), 32, err, sizeof err);
	ok(cg_activity_validate_update(o, &lim_default, &p, &fe) == 0, "update body validates");
	is_str(p.capsule_id, "cap_1", "capsule_id kept");
	is_str(p.state, "resolved", "state kept");
	is_str(p.metadata, "{\"a\":null,\"b\":[1]}", "metadata patch kept compact, nulls included");
	ok(p.title == NULL && p.message == NULL && p.priority == NULL && p.category == NULL &&
		   p.resolution == NULL, "absent fields stay NULL (unchanged)");
	is_int((long long)p.metadata_max, CG_METADATA_MAX, "the merged metadata bound is carried");
	json_object_put(o);

	o = cg_json_parse_object(c, strlen(c), 32, err, sizeof err);
	ok(cg_activity_validate_action(o, &lim_default, &a, &fe) == 0, "action body validates");
	is_str(a.metadata, "{}", "action metadata defaults to {}");
	ok(a.user_id == NULL, "action user_id absent stays NULL");
	json_object_put(o);
}

static void check_cache_key(void)
{
	char k[64];

	ok(cg_activity_cache_key("default", "cap_456", k, sizeof k) == 0, "cache key fits");
	is_str(k, "cg:{default}:activity:cap_456", "cache key is namespaced by tenant");
	ok(cg_activity_cache_key("default", "cap_456", k, 10) == -1, "a too small buffer is refused");
}

/* SQL helper: the first value of a one-row query as a static string ("" on error). */
static const char *sql1(cg_db *db, const char *sql)
{
	static char buf[1024];
	PGresult *res = NULL;

	buf[0] = '\0';
	if (cg_db_exec(db, &res, sql, 0, NULL) == CG_DB_OK && PQntuples(res) > 0)
		snprintf(buf, sizeof buf, "%s", PQgetvalue(res, 0, 0));
	if (res != NULL)
		PQclear(res);
	return buf;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return json_object_get_string(v);
}

static long long jint(json_object *o, const char *key)
{
	json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return -1;
	return json_object_get_int64(v);
}

/* Creates activity `capsule_id` (tenant default, user u1) and commits. */
static int make_activity(cg_db *db, const char *capsule_id, const char *metadata)
{
	char body[512], err[128];
	json_object *o, *act = NULL, *ev = NULL;
	cg_activity_new a;
	cg_field_error fe;
	int rc = -1;

	snprintf(body, sizeof body, "{\"capsule_id\":\"%s\",\"title\":\"t\",\"user_id\":\"u1\",\"metadata\":%s}",
		 capsule_id, metadata != NULL ? metadata : "{}");
	o = cg_json_parse_object(body, strlen(body), 32, err, sizeof err);
	if (o != NULL && cg_activity_validate_new(o, &lim_default, &a, &fe) == 0 &&
	    cg_db_begin_tenant(db, "default") == CG_DB_OK) {
		rc = cg_activity_create(db, "default", &a, "tester", &act, &ev);
		if (rc == 0)
			rc = cg_db_commit(db);
		else
			cg_db_rollback(db);
	}
	json_object_put(o);
	json_object_put(act);
	json_object_put(ev);
	return rc;
}

/* Runs one update in its own transaction; commits on success. */
static int run_update(cg_db *db, const char *tenant, const char *body, size_t metadata_max,
		      json_object **activity)
{
	char err[128];
	json_object *o = cg_json_parse_object(body, strlen(body), 32, err, sizeof err), *ev = NULL;
	cg_activity_patch p;
	cg_field_error fe;
	int rc = -100;

	*activity = NULL;
	if (o == NULL || cg_activity_validate_update(o, &lim_default, &p, &fe) != 0) {
		json_object_put(o);
		return rc;
	}
	if (metadata_max > 0)
		p.metadata_max = metadata_max;
	if (cg_db_begin_tenant(db, tenant) == CG_DB_OK) {
		rc = cg_activity_update(db, tenant, &p, "tester", activity, &ev);
		if (rc == 0)
			rc = cg_db_commit(db);
		else
			cg_db_rollback(db);
	}
	json_object_put(ev);
	json_object_put(o);
	return rc;
}

static void check_update_storage(cg_db *db)
{
	json_object *act = NULL;
	char q[512];

	ok(make_activity(db, "cap_u", "{\"a\":1,\"b\":{\"c\":2},\"keep\":null}") == 0, "activity cap_u created");
	is_int(run_update(db, "default", "{\"capsule_id\":\"cap_u\",\"title\":\"T2\",\"metadata\":{\"b\":null,\"d\":\"x\",\"a\":{\"n\":[1]}}}",
			  0, &act), 0, "update of title and metadata succeeds");
	is_int(jint(act, "version"), 2, "version went 1 -> 2");
	is_str(jstr(act, "title"), "T2", "title set");
	is_str(jstr(act, "state"), "active", "state unchanged");
	is_str(cg_json_compact(json_object_object_get(act, "metadata")), "{\"a\":{\"n\":[1]},\"d\":\"x\",\"keep\":null}",
	       "metadata merged shallowly: a replaced, b deleted by null, d added, keep untouched");
	is_str(sql1(db, "SELECT type || ' v' || version || ' ' || actor || ' ' || cause::text || ' ' || user_id"
			" FROM events WHERE capsule_id = 'cap_u' ORDER BY id DESC LIMIT 1"),
	       "activity.updated v2 tester {\"fields\": [\"title\", \"metadata\"]} u1",
	       "one activity.updated event: version, actor, changed fields, audience");
	is_str(sql1(db, "SELECT payload->>'version' || ' ' || (payload->>'title') FROM events"
			" WHERE capsule_id = 'cap_u' ORDER BY id DESC LIMIT 1"), "2 T2",
	       "the event carries the whole activity after the change");
	json_object_put(act);

	is_int(run_update(db, "default", "{\"capsule_id\":\"cap_u\",\"state\":\"active\"}", 0, &act), 0,
	       "repeating the current state (active, not final) is allowed");
	is_int(jint(act, "version"), 3, "and still bumps the version");
	json_object_put(act);
	is_int(run_update(db, "default", "{\"capsule_id\":\"cap_u\",\"metadata\":{\"big\":\"0123456789012345678901234567890123456789\"}}",
			  40, &act), CG_ACT_ELIMIT, "a merge that passes the metadata bound is refused (ELIMIT)");
	ok(act == NULL, "no activity handed out on ELIMIT");
	is_str(sql1(db, "SELECT version || ' ' || (metadata ? 'big')::text FROM activities WHERE capsule_id = 'cap_u'"),
	       "3 false", "and nothing changed");
	is_int(run_update(db, "default", "{\"capsule_id\":\"cap_u\",\"state\":\"approved\",\"resolution\":\"r\","
			  "\"priority\":\"critical\",\"category\":\"cat\",\"message\":\"m2\"}", 0, &act), 0,
	       "active -> approved with the other fields");
	is_str(sql1(db, "SELECT state || ' ' || resolution || ' ' || priority || ' ' || category || ' ' || message"
			" || ' ' || version FROM activities WHERE capsule_id = 'cap_u'"),
	       "approved r critical cat m2 4", "every field stored");
	json_object_put(act);
	is_int(run_update(db, "default", "{\"capsule_id\":\"cap_u\",\"state\":\"active\"}", 0, &act),
	       CG_ACT_ETRANSITION, "approved -> active is refused (ETRANSITION)");
	is_str(jstr(act, "state"), "approved", "the refusal hands out the unchanged activity");
	json_object_put(act);
	is_int(run_update(db, "default", "{\"capsule_id\":\"cap_u\",\"state\":\"approved\"}", 0, &act), 0,
	       "repeating approved (not final) is allowed through PUT /update");
	json_object_put(act);
	is_int(run_update(db, "default", "{\"capsule_id\":\"cap_u\",\"state\":\"resolved\"}", 0, &act), 0,
	       "approved -> resolved");
	json_object_put(act);
	is_int(run_update(db, "default", "{\"capsule_id\":\"cap_u\",\"title\":\"late\"}", 0, &act),
	       CG_ACT_EFINAL, "a resolved activity refuses even a title change (EFINAL)");
	is_str(jstr(act, "state"), "resolved", "EFINAL hands out the activity too");
	json_object_put(act);
	is_int(run_update(db, "default", "{\"capsule_id\":\"cap_u\",\"state\":\"resolved\"}", 0, &act),
	       CG_ACT_EFINAL, "repeating a final state is refused as well");
	json_object_put(act);
	is_int(run_update(db, "default", "{\"capsule_id\":\"nope\",\"state\":\"resolved\"}", 0, &act),
	       CG_ACT_ENOTFOUND, "unknown capsule: ENOTFOUND");
	ok(act == NULL, "nothing handed out");
	is_int(run_update(db, "acme", "{\"capsule_id\":\"cap_u\",\"title\":\"x\"}", 0, &act),
	       CG_ACT_ENOTFOUND, "another tenant's capsule: ENOTFOUND");
	snprintf(q, sizeof q, "SELECT count(*) || '/' || max(version) FROM events WHERE capsule_id = 'cap_u'");
	is_str(sql1(db, q), "6/6", "one event per successful change (created + 5 updates), none for refusals");
}

/* Every action from every state, through PostgreSQL. */
static void check_actions_storage(cg_db *db)
{
	size_t si, ai;

	for (si = 0; si < 7; si++) {
		for (ai = 0; ai < 5; ai++) {
			const char *from = cg_state_name(si), *type = cg_action_name(ai);
			const char *target = cg_action_target(type);
			int want = cg_state_is_final(from)		    ? CG_ACT_EFINAL
				   : cg_state_move_allowed(from, target) ? 0
									 : CG_ACT_ETRANSITION;
			json_object *action = NULL, *act = NULL, *ev = NULL;
			cg_action_req a;
			char cap[64], q[256];
			int rc = -100;

			snprintf(cap, sizeof cap, "cap_%s_%s", from, type);
			make_activity(db, cap, NULL);
			snprintf(q, sizeof q, "UPDATE activities SET state = '%s' WHERE capsule_id = '%s'", from, cap);
			cg_db_exec_script(db, q);
			memset(&a, 0, sizeof a);
			a.capsule_id = cap;
			a.action_type = type;
			a.user_id = ai % 2 ? "user_789" : NULL;
			a.metadata = "{\"why\":\"test\"}";
			if (cg_db_begin_tenant(db, "default") == CG_DB_OK) {
				rc = cg_activity_act(db, "default", &a, "tester", &action, &act, &ev);
				if (rc == 0)
					rc = cg_db_commit(db);
				else
					cg_db_rollback(db);
			}
			is_int(rc, want, "%s on %s: %s", type, from,
			       want == 0 ? "done" : want == CG_ACT_EFINAL ? "EFINAL" : "ETRANSITION");
			snprintf(q, sizeof q, "SELECT state || ' v' || version || ' ' || (SELECT count(*) FROM actions x"
				 " WHERE x.capsule_id = a.capsule_id) FROM activities a WHERE capsule_id = '%s'", cap);
			if (want == 0) {
				char expect[64];

				snprintf(expect, sizeof expect, "%s v2 1", target);
				is_str(sql1(db, q), expect, "%s on %s: state %s, version 2, one action row", type, from, target);
				ok(strncmp(jstr(action, "action_id") ? jstr(action, "action_id") : "", "action_", 7) == 0 &&
					   strlen(jstr(action, "action_id")) == 31 &&
					   strcmp(jstr(action, "result"), "success") == 0 &&
					   strcmp(jstr(action, "action_type"), type) == 0 &&
					   strcmp(jstr(action, "capsule_id"), cap) == 0 &&
					   (a.user_id ? strcmp(jstr(action, "user_id"), a.user_id) == 0
						      : jstr(action, "user_id") == NULL) &&
					   jstr(action, "created_at") != NULL &&
					   strcmp(cg_json_compact(json_object_object_get(action, "metadata")),
						  "{\"why\":\"test\"}") == 0,
				   "%s on %s: the action's JSON (%s)", type, from, cg_json_compact(action));
				is_str(jstr(act, "state"), target, "%s on %s: the activity handed out is %s", type, from,
				       target);
				is_int(cg_event_int(ev, "version"), 2, "%s on %s: the event has version 2", type, from);
				snprintf(q, sizeof q, "SELECT cause->'action'->>'action_type' || ' ' ||"
					 " (cause->'action'->>'action_id' = '%s')::text FROM events WHERE capsule_id = '%s'"
					 " AND type = 'activity.updated'", jstr(action, "action_id"), cap);
				snprintf(expect, sizeof expect, "%s true", type);
				is_str(sql1(db, q), expect, "%s on %s: the event's cause names the action", type, from);
			} else {
				char expect[64];

				snprintf(expect, sizeof expect, "%s v1 0", from);
				is_str(sql1(db, q), expect, "%s on %s: nothing changed, no action row", type, from);
				is_str(jstr(act, "state"), from, "%s on %s: the refusal hands out the activity", type, from);
				ok(action == NULL && ev == NULL, "%s on %s: no action, no event", type, from);
			}
			json_object_put(action);
			json_object_put(act);
			json_object_put(ev);
		}
	}
	{
		json_object *action = NULL, *act = NULL, *ev = NULL;
		cg_action_req a = { "no_such_capsule", "inspect", NULL, "{}" };
		int rc = -100;

		if (cg_db_begin_tenant(db, "default") == CG_DB_OK) {
			rc = cg_activity_act(db, "default", &a, "tester", &action, &act, &ev);
			cg_db_rollback(db);
		}
		is_int(rc, CG_ACT_ENOTFOUND, "an action on an unknown capsule: ENOTFOUND");
		ok(action == NULL && act == NULL && ev == NULL, "nothing handed out");
	}
}

/* The version-guarded cache store, against a real Redis. */
static void check_cache_store(const char *rurl)
{
	char err[256], tenant[40], key[128];
	cg_redis *r = cg_redis_open(rurl, 2000, err, sizeof err);
	cg_config cfg;
	json_object *a;
	char *val = NULL;
	size_t len;
	redisReply *rep = NULL;

	if (!ok(r != NULL && cg_redis_ping(r) == 0, "Redis reachable for the cache checks"))
		goto out;
	memset(&cfg, 0, sizeof cfg);
	cfg.cache_ttl = 60;
	cg_random_id("t", tenant, sizeof tenant);
	cg_activity_cache_key(tenant, "cap_c", key, sizeof key);
	a = json_object_new_object();
	json_object_object_add(a, "capsule_id", json_object_new_string("cap_c"));
	json_object_object_add(a, "metadata", json_object_new_object());
	json_object_object_add(json_object_object_get(a, "metadata"), "version", json_object_new_int(99));
	json_object_object_add(a, "version", json_object_new_int(2));

	cg_redis_cmdf(r, NULL, "SCRIPT FLUSH");
	is_int(cg_activity_cache_store(r, &cfg, tenant, a), 1, "absent entry: stored (EVAL after NOSCRIPT)");
	is_int(cg_activity_cache_store(r, &cfg, tenant, a), 0, "same version again: not stored");
	json_object_object_add(a, "version", json_object_new_int(1));
	is_int(cg_activity_cache_store(r, &cfg, tenant, a), 0,
	       "older version: not stored (a metadata member named version does not fool it)");
	cg_redis_get(r, key, &val, &len);
	ok(val != NULL && strstr(val, "\"version\":2}") != NULL, "the cache still holds version 2");
	free(val);
	val = NULL;
	json_object_object_add(a, "version", json_object_new_int(3));
	is_int(cg_activity_cache_store(r, &cfg, tenant, a), 1, "newer version: stored");
	cg_redis_get(r, key, &val, &len);
	is_str(val, cg_json_compact(a), "the entry is the compact activity");
	free(val);
	val = NULL;
	if (cg_redis_cmdf(r, &rep, "TTL %s", key) == CG_REDIS_OK)
		ok(rep->integer > 0 && rep->integer <= 60, "with the configured TTL (%lld)", rep->integer);
	else
		ok(0, "TTL readable");
	if (rep != NULL)
		freeReplyObject(rep);
	rep = NULL;
	cg_redis_setex(r, key, "not json", 8, 60);
	is_int(cg_activity_cache_store(r, &cfg, tenant, a), 1, "an entry that is not JSON is replaced");
	cg_redis_del(r, key);
	cg_redis_cmdf(r, NULL, "RPUSH %s x", key);
	ok(cg_activity_cache_store(r, &cfg, tenant, a) == CG_REDIS_EREPLY, "a key of another type: an error");
	is_int(cg_redis_get(r, key, &val, &len), CG_REDIS_ENIL, "and the key is deleted");
	free(val);
	json_object_object_del(a, "version");
	is_int(cg_activity_cache_store(r, &cfg, tenant, a), -1, "an activity without version is refused");
	json_object_put(a);
	cg_redis_del(r, key);
out:
	cg_redis_close(r);
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
	ok(cg_activity_validate_new(o, &lim_default, &a, &fe) == 0, "create body validates");
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
	check_update_storage(db);
	check_actions_storage(db);
	test_database_drop(url, db, dbname);
	json_object_put(o);
	json_object_put(act);
	json_object_put(ev);
	json_object_put(got);
}

int main(void)
{
	const char *url = getenv("CG_TEST_DATABASE_URL"), *rurl = getenv("CG_TEST_REDIS_URL");

	cg_log_init("test_activity", CG_LOG_ERROR);
	cg_limits_from_config(NULL, &lim_default);
	check_validation_table();
	check_bounds();
	check_defaults_and_depth();
	check_configured_limits();
	check_update_action_validation();
	check_cache_key();
	if (url != NULL && *url != '\0')
		check_storage(url);
	else
		printf("# CG_TEST_DATABASE_URL not set: storage checks skipped\n");
	if (rurl != NULL && *rurl != '\0')
		check_cache_store(rurl);
	else
		printf("# CG_TEST_REDIS_URL not set: cache checks skipped\n");
	return done_testing();
}

/* test_device: validation of device, push-to-start and Live Activity bodies (tables), and
 * storage (register/refresh/move, ownership, token rotation, history order) when
 * CG_TEST_DATABASE_URL is set. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_db.h"
#include "cg_device.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"
#include "tap.h"
#include "test_schema.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static json_object *parse(const char *text)
{
	char err[128];
	json_object *o = cg_json_parse_object(text, strlen(text), 32, err, sizeof err);

	if (o == NULL)
		printf("# test body does not parse: %s: %s\n", err, text);
	return o;
}

/* "{"key":"<n times c>"<extra>}" */
static char *body_with(const char *prefix, const char *key, size_t n, char c, const char *extra)
{
	size_t len = strlen(prefix) + strlen(key) + n + strlen(extra) + 16;
	char *s = malloc(len);
	char *fill = malloc(n + 1);

	memset(fill, c, n);
	fill[n] = '\0';
	snprintf(s, len, "{%s\"%s\":\"%s\"%s}", prefix, key, fill, extra);
	free(fill);
	return s;
}

struct vcase {
	const char *name;
	const char *body;
	const char *field; /* NULL: valid */
};

static const struct vcase reg_cases[] = {
	{ "ios minimal", "{\"platform\":\"ios\",\"device_token\":\"" HEX64 "\"}", NULL },
	{ "ios full", "{\"platform\":\"ios\",\"device_token\":\"ABCDEF01\",\"environment\":\"sandbox\","
		      "\"app_version\":\"2.3.1 (45)\",\"os_version\":\"iOS 18.1\"}", NULL },
	{ "web opaque id", "{\"platform\":\"web\",\"device_token\":\"browser-1:abc/DEF+=\"}", NULL },
	{ "missing platform", "{\"device_token\":\"" HEX64 "\"}", "platform" },
	{ "null platform", "{\"platform\":null,\"device_token\":\"ab\"}", "platform" },
	{ "android platform", "{\"platform\":\"android\",\"device_token\":\"ab\"}", "platform" },
	{ "upper-case platform", "{\"platform\":\"IOS\",\"device_token\":\"ab\"}", "platform" },
	{ "numeric platform", "{\"platform\":1,\"device_token\":\"ab\"}", "platform" },
	{ "missing token", "{\"platform\":\"ios\"}", "device_token" },
	{ "empty token", "{\"platform\":\"ios\",\"device_token\":\"\"}", "device_token" },
	{ "ios token not hex", "{\"platform\":\"ios\",\"device_token\":\"device_abc\"}", "device_token" },
	{ "ios token with space", "{\"platform\":\"ios\",\"device_token\":\"ab cd\"}", "device_token" },
	{ "ios token number", "{\"platform\":\"ios\",\"device_token\":1234}", "device_token" },
	{ "web token with space", "{\"platform\":\"web\",\"device_token\":\"a b\"}", "device_token" },
	{ "web token with newline", "{\"platform\":\"web\",\"device_token\":\"a\\nb\"}", "device_token" },
	{ "web token non-ASCII", "{\"platform\":\"web\",\"device_token\":\"caf\\u00e9\"}", "device_token" },
	{ "web token with NUL", "{\"platform\":\"web\",\"device_token\":\"a\\u0000b\"}", "device_token" },
	{ "bad environment", "{\"platform\":\"ios\",\"device_token\":\"ab\",\"environment\":\"dev\"}",
	  "environment" },
	{ "environment number", "{\"platform\":\"ios\",\"device_token\":\"ab\",\"environment\":0}",
	  "environment" },
	{ "app_version number", "{\"platform\":\"ios\",\"device_token\":\"ab\",\"app_version\":2}",
	  "app_version" },
	{ "app_version with tab", "{\"platform\":\"ios\",\"device_token\":\"ab\",\"app_version\":\"1\\t2\"}",
	  "app_version" },
	{ "os_version object", "{\"platform\":\"ios\",\"device_token\":\"ab\",\"os_version\":{}}",
	  "os_version" },
	{ "os_version non-ASCII", "{\"platform\":\"ios\",\"device_token\":\"ab\",\"os_version\":\"\\u00e9\"}",
	  "os_version" },
};

static void check_reg_table(void)
{
	size_t i;

	for (i = 0; i < sizeof(reg_cases) / sizeof(reg_cases[0]); i++) {
		json_object *body = parse(reg_cases[i].body);
		cg_device_reg reg;
		cg_field_error fe;
		int rc;

		memset(&fe, 0, sizeof fe);
		if (body == NULL) {
			ok(0, "register %s: body parses", reg_cases[i].name);
			continue;
		}
		rc = cg_device_validate_reg(body, &reg, &fe);
		if (reg_cases[i].field == NULL)
			ok(rc == 0, "register %s: valid", reg_cases[i].name);
		else
			ok(rc == -1 && fe.field != NULL && strcmp(fe.field, reg_cases[i].field) == 0 &&
				   fe.message != NULL,
			   "register %s: rejected naming %s (got %s)", reg_cases[i].name,
			   reg_cases[i].field, fe.field ? fe.field : "nothing");
		json_object_put(body);
	}
}

/* Bounds, defaults, lower-casing. */
static void check_reg_details(void)
{
	json_object *body;
	cg_device_reg reg;
	cg_field_error fe;
	char *s;

	body = parse("{\"platform\":\"ios\",\"device_token\":\"ABCDEF0123\"}");
	ok(cg_device_validate_reg(body, &reg, &fe) == 0, "upper-case iOS token is valid");
	is_str(reg.device_token, "abcdef0123", "an iOS token is lower-cased");
	ok(reg.environment == NULL && reg.app_version == NULL && reg.os_version == NULL,
	   "absent environment and versions are NULL (production for a new device, unchanged on refresh)");
	json_object_put(body);

	body = parse("{\"platform\":\"web\",\"device_token\":\"AbC\",\"app_version\":\"\"}");
	ok(cg_device_validate_reg(body, &reg, &fe) == 0, "web token with an empty app_version");
	is_str(reg.device_token, "AbC", "a web token is kept as sent");
	ok(reg.app_version == NULL, "an empty app_version counts as absent");
	json_object_put(body);

	s = body_with("\"platform\":\"ios\",", "device_token", CG_DEVICE_TOKEN_MAX, 'f', "");
	body = parse(s);
	ok(cg_device_validate_reg(body, &reg, &fe) == 0 && strlen(reg.device_token) == 4096,
	   "an iOS token of 4096 hex digits is valid");
	json_object_put(body);
	free(s);
	s = body_with("\"platform\":\"ios\",", "device_token", CG_DEVICE_TOKEN_MAX + 1, 'f', "");
	body = parse(s);
	ok(cg_device_validate_reg(body, &reg, &fe) == -1 && strcmp(fe.field, "device_token") == 0,
	   "an iOS token of 4097 hex digits is refused");
	json_object_put(body);
	free(s);
	s = body_with("\"platform\":\"web\",", "device_token", CG_DEVICE_TOKEN_MAX + 1, 'x', "");
	body = parse(s);
	ok(cg_device_validate_reg(body, &reg, &fe) == -1 && strcmp(fe.field, "device_token") == 0,
	   "a web token of 4097 characters is refused");
	json_object_put(body);
	free(s);
	s = body_with("\"platform\":\"ios\",\"device_token\":\"ab\",", "app_version", 64, '1', "");
	body = parse(s);
	ok(cg_device_validate_reg(body, &reg, &fe) == 0, "app_version of 64 characters is valid");
	json_object_put(body);
	free(s);
	s = body_with("\"platform\":\"ios\",\"device_token\":\"ab\",", "os_version", 65, '1', "");
	body = parse(s);
	ok(cg_device_validate_reg(body, &reg, &fe) == -1 && strcmp(fe.field, "os_version") == 0,
	   "os_version of 65 characters is refused");
	json_object_put(body);
	free(s);
}

static const struct vcase la_cases[] = {
	{ "string id", "{\"device_id\":\"17\",\"push_token\":\"" HEX64 "\"}", NULL },
	{ "integer id", "{\"device_id\":17,\"push_token\":\"AB12\"}", NULL },
	{ "missing id", "{\"push_token\":\"ab\"}", "device_id" },
	{ "null id", "{\"device_id\":null,\"push_token\":\"ab\"}", "device_id" },
	{ "zero id", "{\"device_id\":\"0\",\"push_token\":\"ab\"}", "device_id" },
	{ "negative id", "{\"device_id\":-3,\"push_token\":\"ab\"}", "device_id" },
	{ "negative id string", "{\"device_id\":\"-3\",\"push_token\":\"ab\"}", "device_id" },
	{ "id with letters", "{\"device_id\":\"12a\",\"push_token\":\"ab\"}", "device_id" },
	{ "id float", "{\"device_id\":1.5,\"push_token\":\"ab\"}", "device_id" },
	{ "id too long", "{\"device_id\":\"1234567890123456789\",\"push_token\":\"ab\"}", "device_id" },
	{ "id with NUL", "{\"device_id\":\"1\\u00002\",\"push_token\":\"ab\"}", "device_id" },
	{ "missing push_token", "{\"device_id\":\"1\"}", "push_token" },
	{ "empty push_token", "{\"device_id\":\"1\",\"push_token\":\"\"}", "push_token" },
	{ "push_token not hex", "{\"device_id\":\"1\",\"push_token\":\"xyz\"}", "push_token" },
	{ "push_token array", "{\"device_id\":\"1\",\"push_token\":[\"ab\"]}", "push_token" },
};

static const struct vcase pts_cases[] = {
	{ "hex", "{\"push_to_start_token\":\"" HEX64 "\"}", NULL },
	{ "missing", "{}", "push_to_start_token" },
	{ "null", "{\"push_to_start_token\":null}", "push_to_start_token" },
	{ "empty", "{\"push_to_start_token\":\"\"}", "push_to_start_token" },
	{ "not hex", "{\"push_to_start_token\":\"0x12\"}", "push_to_start_token" },
	{ "number", "{\"push_to_start_token\":12}", "push_to_start_token" },
};

static void check_token_tables(void)
{
	size_t i;
	json_object *body;
	cg_live_activity_req la;
	static char pts[CG_PUSH_TOKEN_MAX + 1];
	cg_field_error fe;
	char *s;
	int rc;

	for (i = 0; i < sizeof(la_cases) / sizeof(la_cases[0]); i++) {
		body = parse(la_cases[i].body);
		memset(&fe, 0, sizeof fe);
		rc = body != NULL ? cg_device_validate_live_activity(body, &la, &fe) : -2;
		if (la_cases[i].field == NULL)
			ok(rc == 0, "live activity %s: valid", la_cases[i].name);
		else
			ok(rc == -1 && fe.field != NULL && strcmp(fe.field, la_cases[i].field) == 0,
			   "live activity %s: rejected naming %s (got %s)", la_cases[i].name,
			   la_cases[i].field, fe.field ? fe.field : "nothing");
		json_object_put(body);
	}
	for (i = 0; i < sizeof(pts_cases) / sizeof(pts_cases[0]); i++) {
		body = parse(pts_cases[i].body);
		memset(&fe, 0, sizeof fe);
		rc = body != NULL ? cg_device_validate_push_to_start(body, pts, &fe) : -2;
		if (pts_cases[i].field == NULL)
			ok(rc == 0, "push-to-start %s: valid", pts_cases[i].name);
		else
			ok(rc == -1 && fe.field != NULL && strcmp(fe.field, pts_cases[i].field) == 0,
			   "push-to-start %s: rejected naming %s (got %s)", pts_cases[i].name,
			   pts_cases[i].field, fe.field ? fe.field : "nothing");
		json_object_put(body);
	}
	body = parse("{\"device_id\":\"0042\",\"push_token\":\"ABcd\"}");
	ok(cg_device_validate_live_activity(body, &la, &fe) == 0 && la.device_id == 42 &&
		   strcmp(la.push_token, "abcd") == 0,
	   "device_id \"0042\" is 42 and the push token is lower-cased");
	json_object_put(body);
	s = body_with("\"device_id\":\"1\",", "push_token", CG_PUSH_TOKEN_MAX, 'A', "");
	body = parse(s);
	ok(cg_device_validate_live_activity(body, &la, &fe) == 0 && strlen(la.push_token) == 4096,
	   "a push token of 4096 hex digits is valid");
	json_object_put(body);
	free(s);
	s = body_with("", "push_to_start_token", CG_PUSH_TOKEN_MAX + 1, 'a', "");
	body = parse(s);
	ok(cg_device_validate_push_to_start(body, pts, &fe) == -1, "a push-to-start token of 4097 digits is refused");
	json_object_put(body);
	free(s);
}

static void check_id_parse(void)
{
	static const struct {
		const char *in;
		long long want; /* -1: refused */
	} cases[] = {
		{ "1", 1 }, { "17", 17 }, { "007", 7 }, { "999999999999999999", 999999999999999999LL },
		{ "", -1 }, { "0", -1 }, { "-1", -1 }, { "+1", -1 }, { " 1", -1 }, { "1 ", -1 },
		{ "1e3", -1 }, { "0x10", -1 }, { "1000000000000000000", -1 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long v = -1;
		int rc = cg_device_id_parse(cases[i].in, &v);

		if (cases[i].want < 0)
			ok(rc == -1, "device id \"%s\" refused", cases[i].in);
		else
			ok(rc == 0 && v == cases[i].want, "device id \"%s\" is %lld", cases[i].in,
			   cases[i].want);
	}
}

/* --- storage ---------------------------------------------------------------- */

static const char *str(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return NULL;
	return json_object_get_string(v);
}

/* Fills *r (device_token points into r itself: never copy the struct). */
static void make_reg(cg_device_reg *r, const char *platform, const char *token, const char *env,
		     const char *app, const char *os)
{
	memset(r, 0, sizeof *r);
	snprintf(r->token, sizeof r->token, "%s", token);
	r->platform = platform;
	r->device_token = r->token;
	r->environment = env;
	r->app_version = app;
	r->os_version = os;
}

/* Runs one register in its own committed tenant transaction. */
static int reg_tx(cg_db *db, const char *tenant, const char *user, const cg_device_reg *r,
		  json_object **dev, int *created)
{
	int rc = cg_db_begin_tenant(db, tenant);

	*dev = NULL;
	if (rc != CG_DB_OK)
		return rc;
	rc = cg_device_register(db, tenant, user, r, dev, created);
	if (rc == CG_DB_OK)
		return cg_db_commit(db);
	cg_db_rollback(db);
	return rc;
}

static int list_len(cg_db *db, const char *tenant, const char *user)
{
	json_object *arr = NULL;
	int n = -1;

	if (cg_db_begin_tenant(db, tenant) != CG_DB_OK)
		return -1;
	if (cg_device_list(db, tenant, user, &arr) == CG_DB_OK)
		n = (int)json_object_array_length(arr);
	cg_db_rollback(db);
	json_object_put(arr);
	return n;
}

static long long count_sql(cg_db *db, const char *sql)
{
	PGresult *res = NULL;
	long long n = -1;

	if (cg_db_exec(db, &res, sql, 0, NULL) == CG_DB_OK)
		n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (res != NULL)
		PQclear(res);
	return n;
}

static void check_devices(cg_db *db)
{
	cg_device_reg r;
	json_object *d1 = NULL, *d2 = NULL, *d3 = NULL, *lat = NULL, *arr = NULL;
	cg_live_activity_req la;
	long long id;
	int created = -1, rc;
	char sqlbuf[256];

	make_reg(&r, "ios", HEX64, NULL, "1.0", "iOS 17.0");
	ok(reg_tx(db, "default", "alice", &r, &d1, &created) == 0 && created == 1,
	   "a new device registers (created)");
	is_str(str(d1, "platform"), "ios", "device shows its platform");
	is_str(str(d1, "device_token"), HEX64, "device shows its token");
	is_str(str(d1, "environment"), "production", "environment defaults to production");
	is_str(str(d1, "app_version"), "1.0", "app_version is kept");
	is_str(str(d1, "os_version"), "iOS 17.0", "os_version is kept");
	ok(json_object_get_boolean(json_object_object_get(d1, "active")), "a new device is active");
	ok(str(d1, "last_seen") != NULL && strlen(str(d1, "last_seen")) == 20, "last_seen is RFC 3339");
	ok(!json_object_object_get_ex(d1, "push_to_start_token", NULL),
	   "no push_to_start_token member until one is set");
	ok(cg_device_id_parse(str(d1, "device_id"), &id) == 0, "device_id is a decimal string");

	/* Refresh: same token, another environment, no versions. */
	cg_db_exec_script(db, "UPDATE devices SET last_seen = now() - interval '1 day',"
			      " active = false, deactivated_at = now(), deactivated_reason = 'Unregistered'");
	make_reg(&r, "ios", HEX64, "sandbox", NULL, "iOS 18.0");
	ok(reg_tx(db, "default", "alice", &r, &d2, &created) == 0 && created == 0,
	   "the same token again refreshes (not created)");
	is_str(str(d2, "device_id"), str(d1, "device_id"), "refresh keeps the device_id");
	is_str(str(d2, "app_version"), "1.0", "an absent app_version is kept on refresh");
	is_str(str(d2, "os_version"), "iOS 18.0", "a new os_version replaces the old");
	is_str(str(d2, "environment"), "sandbox", "environment is updated");
	ok(json_object_get_boolean(json_object_object_get(d2, "active")), "refresh re-activates a deactivated device");
	is_int(count_sql(db, "SELECT count(*) FROM devices WHERE last_seen > now() - interval '1 hour'"
			     " AND deactivated_at IS NULL AND deactivated_reason IS NULL"), 1,
	       "refresh sets last_seen to now and clears the deactivation");
	json_object_put(d2);
	d2 = NULL;
	make_reg(&r, "ios", HEX64, NULL, NULL, NULL);
	ok(reg_tx(db, "default", "alice", &r, &d2, &created) == 0 &&
		   strcmp(str(d2, "environment"), "sandbox") == 0,
	   "an absent environment leaves it unchanged on refresh");
	json_object_put(d2);
	d2 = NULL;

	is_int(list_len(db, "default", "alice"), 1, "alice lists one device");
	is_int(list_len(db, "default", "bob"), 0, "bob lists none");
	is_int(list_len(db, "acme", "alice"), 0, "alice of another tenant lists none");

	/* The same token in another tenant is another device. */
	ok(reg_tx(db, "acme", "alice", &r, &d3, &created) == 0 && created == 1,
	   "the same token in another tenant is a new device");
	ok(strcmp(str(d3, "device_id"), str(d1, "device_id")) != 0, "with its own device_id");

	/* Push-to-start. */
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction");
	rc = cg_device_set_push_to_start(db, "default", "alice", id, "abcdef", &d2);
	ok(rc == 0 && str(d2, "push_to_start_token") != NULL &&
		   strcmp(str(d2, "push_to_start_token"), "abcdef") == 0,
	   "push-to-start token set and shown");
	json_object_put(d2);
	d2 = NULL;
	ok(cg_device_set_push_to_start(db, "default", "bob", id, "abcdef", &d2) == CG_DEV_ENOTFOUND &&
		   d2 == NULL,
	   "another user's device: push-to-start not found");
	ok(cg_device_set_push_to_start(db, "acme", "alice", id, "abcdef", &d2) == CG_DEV_ENOTFOUND,
	   "a device id of another tenant is not found");
	ok(cg_device_set_push_to_start(db, "default", "alice", 999999, "abcdef", &d2) == CG_DEV_ENOTFOUND,
	   "an unknown device id is not found");
	ok(cg_db_commit(db) == CG_DB_OK, "commit");

	/* Live Activity tokens. */
	cg_db_exec_script(db, "INSERT INTO activities (tenant_id, activity_id, capsule_id, title)"
			      " VALUES ('default', 'act_1', 'cap_1', 'one'), ('acme', 'act_9', 'cap_9', 'nine')");
	memset(&la, 0, sizeof la);
	la.device_id = id;
	snprintf(la.push_token, sizeof la.push_token, "aa01");
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction");
	ok(cg_device_attach_live_activity(db, "default", "alice", "cap_1", &la, &lat, &created) == 0 &&
		   created == 1,
	   "Live Activity token attached (created)");
	is_str(str(lat, "push_token"), "aa01", "token shown");
	is_str(str(lat, "device_id"), str(d1, "device_id"), "for the device");
	is_str(str(lat, "capsule_id"), "cap_1", "for the activity");
	json_object_put(lat);
	lat = NULL;
	snprintf(la.push_token, sizeof la.push_token, "bb02");
	ok(cg_device_attach_live_activity(db, "default", "alice", "cap_1", &la, &lat, &created) == 0 &&
		   created == 0 && strcmp(str(lat, "push_token"), "bb02") == 0,
	   "a rotated token replaces the old one (not created)");
	json_object_put(lat);
	lat = NULL;
	is_int(count_sql(db, "SELECT count(*) FROM live_activity_tokens WHERE push_token = 'bb02'"), 1,
	       "one row per activity and device after rotation");
	ok(cg_device_attach_live_activity(db, "default", "bob", "cap_1", &la, &lat, &created) ==
		   CG_DEV_ENOTFOUND,
	   "another user's device: not found");
	ok(cg_device_attach_live_activity(db, "default", "alice", "cap_9", &la, &lat, &created) ==
		   CG_DEV_ENOACTIVITY,
	   "another tenant's activity: not found");
	ok(cg_device_attach_live_activity(db, "default", "alice", "nope", &la, &lat, &created) ==
		   CG_DEV_ENOACTIVITY,
	   "unknown activity: not found");
	ok(cg_db_commit(db) == CG_DB_OK, "commit");

	/* A web device takes neither token. */
	make_reg(&r, "web", "browser-1", NULL, NULL, NULL);
	ok(reg_tx(db, "default", "alice", &r, &d2, &created) == 0 && created == 1, "a web device registers");
	la.device_id = strtoll(str(d2, "device_id"), NULL, 10);
	json_object_put(d2);
	d2 = NULL;
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction");
	ok(cg_device_set_push_to_start(db, "default", "alice", la.device_id, "ab", &d2) ==
		   CG_DEV_EPLATFORM,
	   "push-to-start on a web device is refused");
	ok(cg_device_attach_live_activity(db, "default", "alice", "cap_1", &la, &lat, &created) ==
		   CG_DEV_EPLATFORM,
	   "a Live Activity token on a web device is refused");
	cg_db_rollback(db);
	is_int(list_len(db, "default", "alice"), 2, "alice lists two devices");
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK &&
		   cg_device_list(db, "default", "alice", &arr) == 0 &&
		   strcmp(str(json_object_array_get_idx(arr, 0), "device_id"), str(d1, "device_id")) == 0,
	   "oldest first");
	cg_db_rollback(db);
	json_object_put(arr);
	arr = NULL;

	/* Bob signs in on alice's phone: the token moves to bob, and nothing of
	 * alice's stays attached to it. */
	make_reg(&r, "ios", HEX64, NULL, NULL, NULL);
	ok(reg_tx(db, "default", "bob", &r, &d2, &created) == 0 && created == 0,
	   "another user registering the same token refreshes it");
	is_str(str(d2, "device_id"), str(d1, "device_id"), "the device keeps its id");
	ok(!json_object_object_get_ex(d2, "push_to_start_token", NULL),
	   "the previous user's push-to-start token is cleared");
	json_object_put(d2);
	d2 = NULL;
	is_int(list_len(db, "default", "bob"), 1, "the device is bob's now");
	is_int(list_len(db, "default", "alice"), 1, "alice keeps only her web device");
	snprintf(sqlbuf, sizeof sqlbuf, "SELECT count(*) FROM live_activity_tokens WHERE device_id = %lld", id);
	is_int(count_sql(db, sqlbuf), 0, "the previous user's Live Activity tokens are dropped");

	/* Delete. */
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction");
	is_int(cg_device_delete(db, "default", "alice", id), CG_DEV_ENOTFOUND,
	       "alice cannot delete bob's device: not found");
	is_int(cg_device_delete(db, "acme", "bob", id), CG_DEV_ENOTFOUND,
	       "a device of another tenant is not found");
	is_int(cg_device_delete(db, "default", "bob", id), 0, "bob deletes his device");
	is_int(cg_device_delete(db, "default", "bob", id), CG_DEV_ENOTFOUND, "deleting again: not found");
	ok(cg_db_commit(db) == CG_DB_OK, "commit");
	is_int(list_len(db, "default", "bob"), 0, "bob lists none after the delete");

	json_object_put(d1);
	json_object_put(d3);
}

static void check_device_limit(cg_db *db)
{
	char token[32];
	json_object *d = NULL;
	cg_device_reg r;
	int i, created, rc = 0;

	for (i = 0; i < CG_DEVICES_PER_USER_MAX && rc == 0; i++) {
		snprintf(token, sizeof token, "%08x", i + 1);
		make_reg(&r, "ios", token, NULL, NULL, NULL);
		rc = reg_tx(db, "default", "carol", &r, &d, &created);
		json_object_put(d);
	}
	ok(rc == 0, "carol registers %d devices", CG_DEVICES_PER_USER_MAX);
	make_reg(&r, "web", "one-too-many", NULL, NULL, NULL);
	is_int(reg_tx(db, "default", "carol", &r, &d, &created), CG_DEV_ELIMIT,
	       "one more device is refused (limit)");
	make_reg(&r, "ios", "00000001", NULL, "9.9", NULL);
	ok(reg_tx(db, "default", "carol", &r, &d, &created) == 0 && created == 0,
	   "refreshing an existing device at the limit still works");
	json_object_put(d);
	is_int(list_len(db, "default", "carol"), CG_DEVICES_PER_USER_MAX, "the list holds them all");
}

/* Inserts an outbox event for cap_h of `tenant` (committed). */
static int add_event(cg_db *db, const char *tenant, const char *capsule, const char *type,
		     long long version, const char *actor, const char *cause)
{
	json_object *ev = NULL;
	int rc = cg_db_begin_tenant(db, tenant);

	if (rc != CG_DB_OK)
		return rc;
	rc = cg_event_insert(db, tenant, type, capsule, NULL, version, "{}", actor, cause, &ev);
	json_object_put(ev);
	if (rc != CG_DB_OK) {
		cg_db_rollback(db);
		return rc;
	}
	return cg_db_commit(db);
}

static void check_history(cg_db *db)
{
	json_object *evs = NULL, *e;
	long long total = -1;
	char order[64];
	size_t i, n;

	cg_db_exec_script(db, "INSERT INTO activities (tenant_id, activity_id, capsule_id, title)"
			      " VALUES ('default', 'act_h', 'cap_h', 'h'), ('default', 'act_e', 'cap_empty', 'e'),"
			      " ('acme', 'act_h', 'cap_h', 'h')");
	/* Written out of version order on purpose; two events share version 2. */
	ok(add_event(db, "default", "cap_h", "activity.created", 1, "pub", NULL) == 0 &&
		   add_event(db, "default", "cap_h", "activity.updated", 3, "op2",
			     "{\"action\":{\"action_id\":\"a1\",\"action_type\":\"mitigate\",\"user_id\":\"u\"}}") == 0 &&
		   add_event(db, "default", "cap_h", "activity.updated", 2, "op1", "{\"fields\":[\"state\"]}") == 0 &&
		   add_event(db, "default", "cap_h", "activity.updated", 2, "op3", "{\"fields\":[\"metadata\"]}") == 0 &&
		   add_event(db, "acme", "cap_h", "activity.updated", 2, "intruder", NULL) == 0 &&
		   add_event(db, "default", "cap_other", "activity.updated", 2, "x", NULL) == 0,
	   "events written");

	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction");
	ok(cg_device_activity_history(db, "default", "cap_h", 100, 0, &evs, &total) == 0, "history read");
	is_int(total, 4, "total counts this tenant's events of this activity only");
	n = json_object_array_length(evs);
	order[0] = '\0';
	for (i = 0; i < n && i < 8; i++) {
		e = json_object_array_get_idx(evs, i);
		snprintf(order + strlen(order), sizeof order - strlen(order), "%s%d:%s", i ? "," : "",
			 json_object_get_int(json_object_object_get(e, "version")), str(e, "actor"));
	}
	is_str(order, "1:pub,2:op1,2:op3,3:op2", "ordered by version, then by id");
	e = json_object_array_get_idx(evs, 0);
	is_str(str(e, "type"), "activity.created", "type shown");
	ok(json_object_object_get_ex(e, "cause", NULL) && json_object_object_get(e, "cause") == NULL,
	   "a missing cause is null");
	ok(str(e, "event_id") != NULL && strlen(str(e, "event_id")) == 36, "event_id is a uuid");
	ok(str(e, "created_at") != NULL && strlen(str(e, "created_at")) == 20, "created_at is RFC 3339");
	e = json_object_array_get_idx(evs, 3);
	is_str(str(json_object_object_get(json_object_object_get(e, "cause"), "action"), "action_type"),
	       "mitigate", "the cause object is shown as JSON");
	json_object_put(evs);
	evs = NULL;

	ok(cg_device_activity_history(db, "default", "cap_h", 2, 1, &evs, &total) == 0 &&
		   json_object_array_length(evs) == 2 && total == 4 &&
		   strcmp(str(json_object_array_get_idx(evs, 0), "actor"), "op1") == 0 &&
		   strcmp(str(json_object_array_get_idx(evs, 1), "actor"), "op3") == 0,
	   "limit 2 offset 1 pages through the same order");
	json_object_put(evs);
	evs = NULL;
	ok(cg_device_activity_history(db, "default", "cap_h", 10, 50, &evs, &total) == 0 &&
		   json_object_array_length(evs) == 0 && total == 4,
	   "an offset past the end gives an empty page and the total");
	json_object_put(evs);
	evs = NULL;
	ok(cg_device_activity_history(db, "default", "cap_empty", 10, 0, &evs, &total) == 0 &&
		   json_object_array_length(evs) == 0 && total == 0,
	   "an activity without events has an empty history");
	json_object_put(evs);
	evs = NULL;
	is_int(cg_device_activity_history(db, "default", "cap_other", 10, 0, &evs, &total),
	       CG_DEV_ENOACTIVITY, "events of an unknown activity: not found");
	is_int(cg_device_activity_history(db, "globex", "cap_h", 10, 0, &evs, &total),
	       CG_DEV_ENOACTIVITY, "another tenant: not found");
	ok(evs == NULL, "nothing handed out on not found");
	cg_db_rollback(db);
}

static void check_storage(const char *url)
{
	char dbname[64];
	cg_db *db = test_database_create(url, "test_device", dbname, sizeof dbname);

	if (!ok(db != NULL, "test database created with every migration"))
		return;
	cg_db_exec_script(db, "INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme')");
	check_devices(db);
	check_device_limit(db);
	check_history(db);
	ok(!cg_db_in_transaction(db), "no transaction left open");
	test_database_drop(url, db, dbname);
}

int main(void)
{
	const char *url = getenv("CG_TEST_DATABASE_URL");

	cg_log_init("test_device", CG_LOG_ERROR);
	check_reg_table();
	check_reg_details();
	check_token_tables();
	check_id_parse();
	if (url != NULL && *url != '\0')
		check_storage(url);
	else
		printf("# CG_TEST_DATABASE_URL not set: storage checks skipped\n");
	return done_testing();
}

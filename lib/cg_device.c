/* cg_device: devices, push-to-start and Live Activity tokens, activity history. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_device.h"
#include "cg_json.h"
#include "cg_log.h"

#define STR_(x) #x
#define STR(x) STR_(x)

#define TS_SQL(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* A device as the API shows it, built by PostgreSQL from row `d`;
 * push_to_start_token is dropped again in C when it is null. */
#define DEVICE_JSON_SQL \
	"json_build_object('device_id', d.id::text, 'platform', d.platform," \
	" 'device_token', d.device_token, 'environment', d.environment," \
	" 'app_version', d.app_version, 'os_version', d.os_version, 'active', d.active," \
	" 'last_seen', " TS_SQL("d.last_seen") ", 'created_at', " TS_SQL("d.created_at") "," \
	" 'updated_at', " TS_SQL("d.updated_at") ", 'push_to_start_token', d.push_to_start_token)::text"

#define LAT_JSON_SQL \
	"json_build_object('capsule_id', l.capsule_id, 'device_id', l.device_id::text," \
	" 'push_token', l.push_token, 'active', l.active, 'created_at', " TS_SQL("l.created_at") "," \
	" 'updated_at', " TS_SQL("l.updated_at") ")::text"

/* Nesting of what PostgreSQL hands back: a device or token is flat; a
 * history page nests the cause objects the writers recorded. */
#define ROW_JSON_DEPTH 4
#define HISTORY_JSON_DEPTH 32

/* "17" fits in 32 bytes, so does every long long. */
#define ID_TEXT_MAX 32

static int field_fail(cg_field_error *fe, const char *field, const char *message)
{
	fe->field = field;
	fe->code = "validation_failed";
	fe->message = message;
	return -1;
}

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* 1 when s is 1..max hex digits. */
static int hex_valid(const char *s, size_t max)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (!is_hex(s[n]) || n >= max)
			return 0;
	return n > 0;
}

/* Copies hex string s (already checked) lower-cased into out. */
static void hex_lower(const char *s, char *out)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		out[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
	out[i] = '\0';
}

/* 1 when every byte of s is printable ASCII (spaces allowed when `space`). */
static int printable(const char *s, int space)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p > 0x7e || *p < (space ? 0x20 : 0x21))
			return 0;
	return 1;
}

/* Reads an optional string member. Returns 0 (absent: *out NULL) or -1. */
static int opt_string(json_object *body, const char *key, size_t max, const char **out,
		      cg_field_error *fe, const char *type_msg, const char *long_msg)
{
	switch (cg_json_get_string(body, key, max, out)) {
	case CG_JSON_OK:
		return 0;
	case CG_JSON_ABSENT:
		*out = NULL;
		return 0;
	case CG_JSON_TOO_LONG:
		return field_fail(fe, key, long_msg);
	case CG_JSON_BAD_UTF8:
		return field_fail(fe, key, "must be valid UTF-8 text");
	case CG_JSON_WRONG_TYPE:
	default:
		return field_fail(fe, key, type_msg);
	}
}

/* An optional app_version / os_version: "" counts as absent. */
static int opt_version(json_object *body, const char *key, const char **out, cg_field_error *fe,
		       const char *type_msg, const char *bad_msg)
{
	if (opt_string(body, key, CG_DEVICE_VERSION_MAX, out, fe, type_msg, bad_msg) < 0)
		return -1;
	if (*out != NULL && !printable(*out, 1))
		return field_fail(fe, key, bad_msg);
	if (*out != NULL && **out == '\0')
		*out = NULL;
	return 0;
}

int cg_device_validate_reg(json_object *body, cg_device_reg *out, cg_field_error *fe)
{
	const char *s;

	memset(out, 0, sizeof *out);
	if (opt_string(body, "platform", 16, &s, fe, "platform must be ios or web",
		       "platform must be ios or web") < 0)
		return -1;
	if (s == NULL)
		return field_fail(fe, "platform", "platform is required (ios or web)");
	if (strcmp(s, "ios") != 0 && strcmp(s, "web") != 0)
		return field_fail(fe, "platform", "platform must be ios or web");
	out->platform = s;

	if (opt_string(body, "device_token", CG_DEVICE_TOKEN_MAX, &s, fe,
		       "device_token must be a string",
		       "device_token must be at most 4096 characters") < 0)
		return -1;
	if (s == NULL || *s == '\0')
		return field_fail(fe, "device_token", "device_token is required");
	if (strcmp(out->platform, "ios") == 0) {
		if (!hex_valid(s, CG_DEVICE_TOKEN_MAX))
			return field_fail(fe, "device_token",
					  "an iOS device_token must be 1-4096 hex digits");
		hex_lower(s, out->token);
	} else {
		if (!printable(s, 0))
			return field_fail(fe, "device_token",
					  "a web device_token must be printable ASCII without spaces");
		memcpy(out->token, s, strlen(s) + 1);
	}
	out->device_token = out->token;

	if (opt_string(body, "environment", 16, &s, fe, "environment must be production or sandbox",
		       "environment must be production or sandbox") < 0)
		return -1;
	if (s != NULL && strcmp(s, "production") != 0 && strcmp(s, "sandbox") != 0)
		return field_fail(fe, "environment", "environment must be production or sandbox");
	out->environment = s;

	if (opt_version(body, "app_version", &out->app_version, fe, "app_version must be a string",
			"app_version must be at most 64 printable ASCII characters") < 0 ||
	    opt_version(body, "os_version", &out->os_version, fe, "os_version must be a string",
			"os_version must be at most 64 printable ASCII characters") < 0)
		return -1;
	return 0;
}

/* A required push token member: hex, lower-cased into out. */
static int push_token(json_object *body, const char *key, char *out, cg_field_error *fe,
		      const char *msg)
{
	const char *s;

	if (opt_string(body, key, CG_PUSH_TOKEN_MAX, &s, fe, msg, msg) < 0)
		return -1;
	if (s == NULL)
		return field_fail(fe, key, msg);
	if (!hex_valid(s, CG_PUSH_TOKEN_MAX))
		return field_fail(fe, key, msg);
	hex_lower(s, out);
	return 0;
}

int cg_device_validate_push_to_start(json_object *body, char *out, cg_field_error *fe)
{
	out[0] = '\0';
	return push_token(body, "push_to_start_token", out, fe,
			  "push_to_start_token is required: 1-4096 hex digits");
}

int cg_device_id_parse(const char *s, long long *out)
{
	long long v = 0;
	size_t n;

	for (n = 0; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= 18)
			return -1;
		v = v * 10 + (s[n] - '0');
	}
	if (n == 0 || v <= 0)
		return -1;
	*out = v;
	return 0;
}

int cg_device_validate_live_activity(json_object *body, cg_live_activity_req *out,
				     cg_field_error *fe)
{
	static const char id_msg[] = "device_id is required: the device_id of one of your devices";
	json_object *v = NULL;
	long long id = 0;

	memset(out, 0, sizeof *out);
	if (!json_object_object_get_ex(body, "device_id", &v) || v == NULL)
		return field_fail(fe, "device_id", id_msg);
	if (json_object_is_type(v, json_type_string)) {
		if (cg_device_id_parse(json_object_get_string(v), &id) < 0 ||
		    (size_t)json_object_get_string_len(v) != strlen(json_object_get_string(v)))
			return field_fail(fe, "device_id", id_msg);
	} else if (json_object_is_type(v, json_type_int)) {
		if (cg_json_get_int64(body, "device_id", &id) != CG_JSON_OK || id <= 0)
			return field_fail(fe, "device_id", id_msg);
	} else {
		return field_fail(fe, "device_id", id_msg);
	}
	out->device_id = id;
	return push_token(body, "push_token", out->push_token, fe,
			  "push_token is required: 1-4096 hex digits");
}

/* Parses one device row built by DEVICE_JSON_SQL and drops a null
 * push_to_start_token. NULL when it is not JSON. */
static json_object *device_from_text(const char *text)
{
	char err[128];
	json_object *d = cg_json_parse_object(text, strlen(text), ROW_JSON_DEPTH, err, sizeof err);
	json_object *pst = NULL;

	if (d == NULL) {
		cg_log_error("device from database is not JSON: %s", err);
		return NULL;
	}
	if (json_object_object_get_ex(d, "push_to_start_token", &pst) && pst == NULL)
		json_object_object_del(d, "push_to_start_token");
	return d;
}

static json_object *json_from_text(const char *text, int depth, const char *what)
{
	char err[128];
	json_object *o = cg_json_parse(text, strlen(text), depth, err, sizeof err);

	if (o == NULL)
		cg_log_error("%s from database is not JSON: %s", what, err);
	return o;
}

/* The owner of an existing (tenant, platform, token) row, locked until the
 * transaction ends. Returns 0 with *found (and id_out / owner_out), or a
 * CG_DB_* code. */
static int lock_existing(cg_db *db, const char *tenant, const cg_device_reg *reg, int *found,
			 char *id_out, size_t idlen, char **owner_out)
{
	static const char sql[] =
		"SELECT id::text, user_id FROM devices"
		" WHERE tenant_id = $1 AND platform = $2 AND device_token = $3 FOR UPDATE";
	const char *params[3] = { tenant, reg->platform, reg->device_token };
	PGresult *res = NULL;
	int rc = cg_db_exec(db, &res, sql, 3, params);

	*found = 0;
	*owner_out = NULL;
	if (rc != CG_DB_OK)
		return rc;
	if (PQntuples(res) > 0) {
		*found = 1;
		snprintf(id_out, idlen, "%s", PQgetvalue(res, 0, 0));
		*owner_out = strdup(PQgetvalue(res, 0, 1));
		if (*owner_out == NULL)
			rc = CG_DB_ESQL;
	}
	PQclear(res);
	return rc;
}

/* CG_DEV_ELIMIT when `user_id` already has the most devices allowed. */
static int check_limit(cg_db *db, const char *tenant, const char *user_id)
{
	static const char sql[] =
		"SELECT count(*) >= " STR(CG_DEVICES_PER_USER_MAX)
		" FROM devices WHERE tenant_id = $1 AND user_id = $2";
	const char *params[2] = { tenant, user_id };
	PGresult *res = NULL;
	int rc = cg_db_exec(db, &res, sql, 2, params);

	if (rc != CG_DB_OK)
		return rc;
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		rc = CG_DEV_ELIMIT;
	PQclear(res);
	return rc;
}

int cg_device_register(cg_db *db, const char *tenant, const char *user_id, const cg_device_reg *reg,
		       json_object **device, int *created)
{
	/* Every SET expression reads the OLD row (d.*), so push_to_start_*
	 * compare with the previous owner. */
	static const char upsert[] =
		"INSERT INTO devices AS d (tenant_id, user_id, platform, device_token, environment,"
		" app_version, os_version)"
		" VALUES ($1, $2, $3, $4, COALESCE($5, 'production'), $6, $7)"
		" ON CONFLICT (tenant_id, platform, device_token) DO UPDATE SET"
		" push_to_start_token = CASE WHEN d.user_id = EXCLUDED.user_id"
		"   THEN d.push_to_start_token END,"
		" push_to_start_updated_at = CASE WHEN d.user_id = EXCLUDED.user_id"
		"   THEN d.push_to_start_updated_at END,"
		" user_id = EXCLUDED.user_id,"
		" environment = COALESCE($5, d.environment),"
		" app_version = COALESCE($6, d.app_version),"
		" os_version = COALESCE($7, d.os_version),"
		" active = true, deactivated_at = NULL, deactivated_reason = NULL,"
		" last_seen = now(), updated_at = now()"
		" RETURNING (d.xmax = 0), " DEVICE_JSON_SQL;
	static const char drop_lat[] =
		"DELETE FROM live_activity_tokens WHERE tenant_id = $1 AND device_id = $2::bigint";
	const char *params[7];
	char prev_id[ID_TEXT_MAX] = "";
	char *prev_owner = NULL;
	PGresult *res = NULL;
	json_object *d = NULL;
	int found, moved, rc;

	*device = NULL;
	*created = 0;
	rc = lock_existing(db, tenant, reg, &found, prev_id, sizeof prev_id, &prev_owner);
	if (rc != CG_DB_OK)
		goto out;
	moved = found && strcmp(prev_owner, user_id) != 0;
	if (!found || moved) {
		rc = check_limit(db, tenant, user_id);
		if (rc != CG_DB_OK)
			goto out;
	}
	params[0] = tenant;
	params[1] = user_id;
	params[2] = reg->platform;
	params[3] = reg->device_token;
	params[4] = reg->environment;
	params[5] = reg->app_version;
	params[6] = reg->os_version;
	rc = cg_db_exec(db, &res, upsert, 7, params);
	if (rc != CG_DB_OK)
		goto out;
	if (moved) {
		const char *dparams[2] = { tenant, prev_id };

		rc = cg_db_exec(db, NULL, drop_lat, 2, dparams);
		if (rc != CG_DB_OK)
			goto out;
		cg_log_info("device %s (%s) moved from user %s to %s; its Live Activity tokens "
			    "and push-to-start token were dropped", prev_id, reg->platform,
			    prev_owner, user_id);
	}
	d = device_from_text(PQgetvalue(res, 0, 1));
	if (d == NULL) {
		rc = CG_DB_ESQL;
		goto out;
	}
	*created = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	*device = d;
out:
	if (res != NULL)
		PQclear(res);
	free(prev_owner);
	return rc;
}

int cg_device_list(cg_db *db, const char *tenant, const char *user_id, json_object **devices)
{
	static const char sql[] =
		"SELECT " DEVICE_JSON_SQL " FROM devices d WHERE d.tenant_id = $1 AND d.user_id = $2"
		" ORDER BY d.created_at, d.id LIMIT " STR(CG_DEVICES_PER_USER_MAX);
	const char *params[2] = { tenant, user_id };
	PGresult *res = NULL;
	json_object *arr = NULL;
	int i, n, rc;

	*devices = NULL;
	rc = cg_db_exec(db, &res, sql, 2, params);
	if (rc != CG_DB_OK)
		return rc;
	arr = json_object_new_array();
	if (arr == NULL) {
		rc = CG_DB_ESQL;
		goto out;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		json_object *d = device_from_text(PQgetvalue(res, i, 0));

		if (d == NULL || json_object_array_add(arr, d) != 0) {
			json_object_put(d);
			rc = CG_DB_ESQL;
			goto out;
		}
	}
	*devices = arr;
	arr = NULL;
out:
	json_object_put(arr);
	PQclear(res);
	return rc;
}

int cg_device_delete(cg_db *db, const char *tenant, const char *user_id, long long device_id)
{
	static const char sql[] =
		"DELETE FROM devices WHERE tenant_id = $1 AND user_id = $2 AND id = $3::bigint";
	char id[ID_TEXT_MAX];
	const char *params[3] = { tenant, user_id, id };
	PGresult *res = NULL;
	int rc;

	snprintf(id, sizeof id, "%lld", device_id);
	rc = cg_db_exec(db, &res, sql, 3, params);
	if (rc != CG_DB_OK)
		return rc;
	if (strcmp(PQcmdTuples(res), "0") == 0)
		rc = CG_DEV_ENOTFOUND;
	PQclear(res);
	return rc;
}

/* The platform of device `id` of `user_id`, locked against a concurrent
 * delete until the transaction ends: 0 with *ios, CG_DEV_ENOTFOUND, or a
 * CG_DB_* code. */
static int lock_device(cg_db *db, const char *tenant, const char *user_id, const char *id, int *ios)
{
	static const char sql[] =
		"SELECT platform FROM devices WHERE tenant_id = $1 AND user_id = $2 AND id = $3::bigint"
		" FOR SHARE";
	const char *params[3] = { tenant, user_id, id };
	PGresult *res = NULL;
	int rc = cg_db_exec(db, &res, sql, 3, params);

	*ios = 0;
	if (rc != CG_DB_OK)
		return rc;
	if (PQntuples(res) == 0)
		rc = CG_DEV_ENOTFOUND;
	else
		*ios = strcmp(PQgetvalue(res, 0, 0), "ios") == 0;
	PQclear(res);
	return rc;
}

int cg_device_set_push_to_start(cg_db *db, const char *tenant, const char *user_id,
				long long device_id, const char *token, json_object **device)
{
	static const char sql[] =
		"UPDATE devices AS d SET push_to_start_token = $4, push_to_start_updated_at = now(),"
		" updated_at = now() WHERE d.tenant_id = $1 AND d.user_id = $2 AND d.id = $3::bigint"
		" RETURNING " DEVICE_JSON_SQL;
	char id[ID_TEXT_MAX];
	const char *params[4] = { tenant, user_id, id, token };
	PGresult *res = NULL;
	int ios, rc;

	*device = NULL;
	snprintf(id, sizeof id, "%lld", device_id);
	rc = lock_device(db, tenant, user_id, id, &ios);
	if (rc != CG_DB_OK)
		return rc;
	if (!ios)
		return CG_DEV_EPLATFORM;
	rc = cg_db_exec(db, &res, sql, 4, params);
	if (rc != CG_DB_OK)
		return rc;
	if (PQntuples(res) == 0) {
		rc = CG_DEV_ENOTFOUND;
	} else {
		*device = device_from_text(PQgetvalue(res, 0, 0));
		if (*device == NULL)
			rc = CG_DB_ESQL;
	}
	PQclear(res);
	return rc;
}

/* 0 when activity `capsule_id` exists in the tenant, CG_DEV_ENOACTIVITY
 * when not, or a CG_DB_* code. */
static int activity_exists(cg_db *db, const char *tenant, const char *capsule_id)
{
	static const char sql[] = "SELECT 1 FROM activities WHERE tenant_id = $1 AND capsule_id = $2";
	const char *params[2] = { tenant, capsule_id };
	PGresult *res = NULL;
	int rc = cg_db_exec(db, &res, sql, 2, params);

	if (rc != CG_DB_OK)
		return rc;
	if (PQntuples(res) == 0)
		rc = CG_DEV_ENOACTIVITY;
	PQclear(res);
	return rc;
}

int cg_device_attach_live_activity(cg_db *db, const char *tenant, const char *user_id,
				   const char *capsule_id, const cg_live_activity_req *req,
				   json_object **token, int *created)
{
	static const char sql[] =
		"INSERT INTO live_activity_tokens AS l (tenant_id, capsule_id, device_id, push_token)"
		" VALUES ($1, $2, $3::bigint, $4)"
		" ON CONFLICT (tenant_id, capsule_id, device_id) DO UPDATE SET"
		" push_token = EXCLUDED.push_token, active = true, updated_at = now()"
		" RETURNING (l.xmax = 0), " LAT_JSON_SQL;
	char id[ID_TEXT_MAX];
	const char *params[4] = { tenant, capsule_id, id, req->push_token };
	PGresult *res = NULL;
	int ios, rc;

	*token = NULL;
	*created = 0;
	snprintf(id, sizeof id, "%lld", req->device_id);
	rc = lock_device(db, tenant, user_id, id, &ios);
	if (rc != CG_DB_OK)
		return rc;
	if (!ios)
		return CG_DEV_EPLATFORM;
	rc = activity_exists(db, tenant, capsule_id);
	if (rc != CG_DB_OK)
		return rc;
	rc = cg_db_exec(db, &res, sql, 4, params);
	if (rc != CG_DB_OK)
		return rc;
	*token = json_from_text(PQgetvalue(res, 0, 1), ROW_JSON_DEPTH, "live activity token");
	if (*token == NULL)
		rc = CG_DB_ESQL;
	else
		*created = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return rc;
}

int cg_device_activity_history(cg_db *db, const char *tenant, const char *capsule_id, int limit,
			       long long offset, json_object **events, long long *total)
{
	/* The page is ordered in the subquery; json_agg keeps that order. */
	static const char sql[] =
		"SELECT EXISTS (SELECT 1 FROM activities WHERE tenant_id = $1 AND capsule_id = $2),"
		" (SELECT count(*) FROM events WHERE tenant_id = $1 AND capsule_id = $2),"
		" (SELECT COALESCE(json_agg(json_build_object('version', e.version, 'type', e.type,"
		"   'actor', e.actor, 'cause', e.cause, 'created_at', " TS_SQL("e.created_at") ","
		"   'event_id', e.event_id) ORDER BY e.version, e.id), '[]')::text"
		"  FROM (SELECT version, type, actor, cause, created_at, event_id, id FROM events"
		"   WHERE tenant_id = $1 AND capsule_id = $2 ORDER BY version, id"
		"   LIMIT $3::int OFFSET $4::bigint) e)";
	char lim[ID_TEXT_MAX], off[ID_TEXT_MAX];
	const char *params[4] = { tenant, capsule_id, lim, off };
	PGresult *res = NULL;
	int rc;

	*events = NULL;
	*total = 0;
	if (limit < 1 || limit > CG_HISTORY_LIMIT_MAX || offset < 0)
		return CG_DB_ESQL;
	snprintf(lim, sizeof lim, "%d", limit);
	snprintf(off, sizeof off, "%lld", offset);
	rc = cg_db_exec(db, &res, sql, 4, params);
	if (rc != CG_DB_OK)
		return rc;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		rc = CG_DEV_ENOACTIVITY;
		goto out;
	}
	*total = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	*events = json_from_text(PQgetvalue(res, 0, 2), HISTORY_JSON_DEPTH, "history");
	if (*events == NULL || !json_object_is_type(*events, json_type_array)) {
		json_object_put(*events);
		*events = NULL;
		rc = CG_DB_ESQL;
	}
out:
	PQclear(res);
	return rc;
}

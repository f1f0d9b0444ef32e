/* cg_pushsub: Web Push subscriptions: body validation, storage, push-daemon's queries. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cg_json.h"
#include "cg_log.h"
#include "cg_pushsub.h"
#include "cg_util.h"

#define STR_(x) #x
#define STR(x) STR_(x)

#define TS_SQL(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* A subscription as the API shows it (never the keys), built by PostgreSQL
 * from row `s`. */
#define SUB_JSON_SQL \
	"json_build_object('id', s.id::text, 'endpoint', s.endpoint, 'user_agent', s.user_agent," \
	" 'device_info', s.device_info, 'active', s.active, 'created_at', " TS_SQL("s.created_at") "," \
	" 'updated_at', " TS_SQL("s.updated_at") ", 'last_seen', " TS_SQL("s.last_seen") ")"

/* A subscription row's JSON: the object plus device_info's own nesting. */
#define SUB_JSON_DEPTH (CG_PUSHSUB_DEVICE_INFO_DEPTH + 2)

/* Base64 text of a key longer than this is refused before decoding. */
#define KEY_TEXT_MAX 256

/* "17" fits in 32 bytes, so does every long long. */
#define ID_TEXT_MAX 32

/* Fails validation of `field` with a formatted message (in fe->text). */
__attribute__((format(printf, 3, 4)))
static int fail(cg_field_error *fe, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fe->text, sizeof fe->text, fmt, ap);
	va_end(ap);
	fe->field = field;
	fe->code = "validation_failed";
	fe->message = fe->text;
	return -1;
}

/* String member `key` of `obj` (reported as `field`), at most `max` bytes:
 * 0 with *out (NULL when absent or null), or -1 with *fe. */
static int member_string(json_object *obj, const char *key, const char *field, size_t max,
			 const char **out, cg_field_error *fe)
{
	cg_json_status st = cg_json_get_string(obj, key, max, out);

	if (st == CG_JSON_OK)
		return 0;
	*out = NULL;
	if (st == CG_JSON_ABSENT)
		return 0;
	if (st == CG_JSON_TOO_LONG)
		return fail(fe, field, "%s must be at most %zu bytes", field, max);
	return fail(fe, field, "%s must be %s", field,
		    st == CG_JSON_BAD_UTF8 ? "valid UTF-8 text" : "a string");
}

/* 1 when s is printable ASCII without spaces (a URL as browsers give it). */
static int url_chars_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

static int validate_endpoint(json_object *body, cg_pushsub_req *out, cg_field_error *fe)
{
	char origin[CG_PUSHSUB_ENDPOINT_MAX + 1];
	const char *s;

	if (member_string(body, "endpoint", "endpoint", CG_PUSHSUB_ENDPOINT_MAX, &s, fe) < 0)
		return -1;
	if (s == NULL || *s == '\0')
		return fail(fe, "endpoint", "endpoint is required: the push service URL of the "
			    "browser's PushSubscription");
	if (!url_chars_ok(s) || strncasecmp(s, "https://", 8) != 0 ||
	    cg_url_origin(s, origin, sizeof origin) != 0)
		return fail(fe, "endpoint", "endpoint must be an https URL with a host");
	out->endpoint = s;
	return 0;
}

/* Where the keys are: top-level p256dh_key / auth_key (our shape) or
 * keys.p256dh / keys.auth (PushSubscription.toJSON()); the top level wins
 * per key. Sets *p256dh / *auth (NULL when absent) and, for a key read
 * from "keys", the field name to report (*p_field / *a_field). */
static int find_keys(json_object *body, const char **p256dh, const char **auth,
		     const char **p_field, const char **a_field, cg_field_error *fe)
{
	json_object *keys = NULL;
	cg_json_status st = cg_json_get_object(body, "keys", &keys);

	if (st != CG_JSON_OK && st != CG_JSON_ABSENT)
		return fail(fe, "keys", "keys must be an object {\"p256dh\": \"…\", \"auth\": \"…\"}");
	if (member_string(body, "p256dh_key", "p256dh_key", KEY_TEXT_MAX, p256dh, fe) < 0 ||
	    member_string(body, "auth_key", "auth_key", KEY_TEXT_MAX, auth, fe) < 0)
		return -1;
	if (keys == NULL)
		return 0;
	if (*p256dh == NULL) {
		*p_field = "keys.p256dh";
		if (member_string(keys, "p256dh", *p_field, KEY_TEXT_MAX, p256dh, fe) < 0)
			return -1;
	}
	if (*auth == NULL) {
		*a_field = "keys.auth";
		if (member_string(keys, "auth", *a_field, KEY_TEXT_MAX, auth, fe) < 0)
			return -1;
	}
	return 0;
}

static int validate_keys(json_object *body, cg_pushsub_req *out, cg_field_error *fe)
{
	unsigned char pub[CG_WEBPUSH_PUBKEY_LEN], secret[CG_WEBPUSH_AUTH_LEN];
	const char *p256dh = NULL, *auth = NULL, *p_field = "p256dh_key", *a_field = "auth_key";
	char err[128];

	if (find_keys(body, &p256dh, &auth, &p_field, &a_field, fe) < 0)
		return -1;
	if (p256dh == NULL || *p256dh == '\0')
		return fail(fe, p_field, "%s is required: the subscription's P-256 public key "
			    "(base64url)", p_field);
	if (auth == NULL || *auth == '\0')
		return fail(fe, a_field, "%s is required: the subscription's 16-byte auth secret "
			    "(base64url)", a_field);
	if (cg_webpush_keys_parse(p256dh, auth, pub, secret, err, sizeof err) != 0) {
		/* err: "p256dh: <why>" or "auth: <why>" */
		const char *field = strncmp(err, "auth:", 5) == 0 ? a_field : p_field;
		const char *why = strchr(err, ':');

		return fail(fe, field, "%s is %s", field, why != NULL ? why + 2 : err);
	}
	if (cg_b64url_encode(pub, sizeof pub, out->p256dh, sizeof out->p256dh) < 0 ||
	    cg_b64url_encode(secret, sizeof secret, out->auth, sizeof out->auth) < 0)
		return fail(fe, p_field, "%s could not be encoded", p_field);
	return 0;
}

/* Number of code points of valid UTF-8 text, or -1 on a control character. */
static long text_chars(const char *s)
{
	const unsigned char *p;
	long n = 0;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return -1;
		if ((*p & 0xC0) != 0x80)
			n++;
	}
	return n;
}

static int validate_user_agent(json_object *body, cg_pushsub_req *out, cg_field_error *fe)
{
	const char *s = NULL;
	/* A character takes at most 4 bytes of UTF-8. */
	cg_json_status st = cg_json_get_string(body, "user_agent", 4 * CG_PUSHSUB_USER_AGENT_MAX, &s);
	long n = st == CG_JSON_OK ? text_chars(s) : -1;

	out->user_agent = NULL;
	if (st == CG_JSON_ABSENT)
		return 0;
	if (st == CG_JSON_WRONG_TYPE)
		return fail(fe, "user_agent", "user_agent must be a string");
	if (n < 0 || n > CG_PUSHSUB_USER_AGENT_MAX)
		return fail(fe, "user_agent", "user_agent must be at most %d characters of text without "
			    "control characters", CG_PUSHSUB_USER_AGENT_MAX);
	if (n > 0)
		out->user_agent = s;
	return 0;
}

static int validate_device_info(json_object *body, cg_pushsub_req *out, cg_field_error *fe)
{
	json_object *info = NULL;
	cg_json_status st = cg_json_get_object(body, "device_info", &info);
	const char *text;

	out->device_info = NULL;
	if (st == CG_JSON_ABSENT)
		return 0;
	if (st != CG_JSON_OK)
		return fail(fe, "device_info", "device_info must be a JSON object");
	if (cg_json_depth(info) > CG_PUSHSUB_DEVICE_INFO_DEPTH)
		return fail(fe, "device_info", "device_info nests too deeply (at most %d levels)",
			    CG_PUSHSUB_DEVICE_INFO_DEPTH);
	text = cg_json_compact(info);
	if (text == NULL || strlen(text) > CG_PUSHSUB_DEVICE_INFO_MAX)
		return fail(fe, "device_info", "device_info must be at most %d bytes of JSON",
			    CG_PUSHSUB_DEVICE_INFO_MAX);
	out->device_info = text;
	return 0;
}

int cg_pushsub_validate(json_object *body, cg_pushsub_req *out, cg_field_error *fe)
{
	memset(out, 0, sizeof *out);
	if (validate_endpoint(body, out, fe) < 0 || validate_keys(body, out, fe) < 0 ||
	    validate_user_agent(body, out, fe) < 0 || validate_device_info(body, out, fe) < 0)
		return -1;
	return 0;
}

int cg_pushsub_validate_endpoint(json_object *body, const char **endpoint, cg_field_error *fe)
{
	if (member_string(body, "endpoint", "endpoint", CG_PUSHSUB_ENDPOINT_MAX, endpoint, fe) < 0)
		return -1;
	if (*endpoint == NULL || **endpoint == '\0')
		return fail(fe, "endpoint", "endpoint is required: the endpoint of the subscription "
			    "to remove");
	return 0;
}

/* ---- storage ------------------------------------------------------------- */

/* Parses JSON text PostgreSQL built; NULL (logged) when it is not JSON. */
static json_object *from_db(const char *text, int depth, const char *what)
{
	char err[128];
	json_object *o = cg_json_parse(text, strlen(text), depth, err, sizeof err);

	if (o == NULL)
		cg_log_error("%s from database is not JSON: %s", what, err);
	return o;
}

/* Serialises the subscribes of `user_id` until the transaction ends, then
 * returns CG_PUSHSUB_ELIMIT when the user has the most active subscriptions
 * allowed besides `endpoint` (which is being refreshed or moved), else 0
 * or a CG_DB_* code. The count runs in a statement of its own, so under READ
 * COMMITTED it sees what a subscribe that held the lock before committed. */
static int lock_and_check_limit(cg_db *db, const char *tenant, const char *user_id,
				const char *endpoint)
{
	static const char lock_sql[] =
		"SELECT pg_advisory_xact_lock(hashtext('push_subscriptions'),"
		" hashtext($1 || '/' || $2))";
	static const char count_sql[] =
		"SELECT count(*) >= " STR(CG_PUSHSUBS_PER_USER_MAX) " FROM push_subscriptions"
		" WHERE tenant_id = $1 AND user_id = $2 AND active AND endpoint <> $3";
	const char *params[3] = { tenant, user_id, endpoint };
	PGresult *res = NULL;
	int rc = cg_db_exec(db, NULL, lock_sql, 2, params);

	if (rc != CG_DB_OK)
		return rc;
	rc = cg_db_exec(db, &res, count_sql, 3, params);
	if (rc != CG_DB_OK)
		return rc;
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		rc = CG_PUSHSUB_ELIMIT;
	PQclear(res);
	return rc;
}

int cg_pushsub_subscribe(cg_db *db, const char *tenant, const char *user_id,
			 const cg_pushsub_req *req, json_object **sub, int *created)
{
	/* Every SET expression reads the OLD row (s.*): user_agent and
	 * device_info are kept on a refresh by the same user only. */
	static const char upsert[] =
		"INSERT INTO push_subscriptions AS s (tenant_id, user_id, endpoint, p256dh, auth,"
		" user_agent, device_info)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
		" ON CONFLICT (tenant_id, endpoint) DO UPDATE SET"
		" user_agent = CASE WHEN s.user_id = EXCLUDED.user_id"
		"   THEN COALESCE(EXCLUDED.user_agent, s.user_agent) ELSE EXCLUDED.user_agent END,"
		" device_info = CASE WHEN s.user_id = EXCLUDED.user_id"
		"   THEN COALESCE(EXCLUDED.device_info, s.device_info) ELSE EXCLUDED.device_info END,"
		" user_id = EXCLUDED.user_id, p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth,"
		" active = true, deactivated_at = NULL, deactivated_reason = NULL,"
		" last_seen = now(), updated_at = now()"
		" RETURNING (s.xmax = 0), " SUB_JSON_SQL "::text";
	const char *params[7] = { tenant, user_id, req->endpoint, req->p256dh, req->auth,
				  req->user_agent, req->device_info };
	PGresult *res = NULL;
	int rc;

	*sub = NULL;
	*created = 0;
	rc = lock_and_check_limit(db, tenant, user_id, req->endpoint);
	if (rc != CG_DB_OK)
		return rc;
	rc = cg_db_exec(db, &res, upsert, 7, params);
	if (rc != CG_DB_OK)
		return rc;
	*sub = from_db(PQgetvalue(res, 0, 1), SUB_JSON_DEPTH, "push subscription");
	if (*sub == NULL)
		rc = CG_DB_ESQL;
	else
		*created = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return rc;
}

int cg_pushsub_list(cg_db *db, const char *tenant, const char *user_id, json_object **subs)
{
	/* The page is ordered in the subquery; json_agg keeps that order. */
	static const char sql[] =
		"SELECT COALESCE(json_agg(" SUB_JSON_SQL " ORDER BY s.created_at, s.id), '[]')::text"
		" FROM (SELECT * FROM push_subscriptions WHERE tenant_id = $1 AND user_id = $2 AND active"
		"  ORDER BY created_at, id LIMIT " STR(CG_PUSHSUBS_PER_USER_MAX) ") s";
	const char *params[2] = { tenant, user_id };
	PGresult *res = NULL;
	int rc = cg_db_exec(db, &res, sql, 2, params);

	*subs = NULL;
	if (rc != CG_DB_OK)
		return rc;
	*subs = from_db(PQgetvalue(res, 0, 0), SUB_JSON_DEPTH + 1, "push subscriptions");
	if (*subs == NULL || !json_object_is_type(*subs, json_type_array)) {
		json_object_put(*subs);
		*subs = NULL;
		rc = CG_DB_ESQL;
	}
	PQclear(res);
	return rc;
}

/* Runs a DELETE ... RETURNING id: 0 with *id, CG_PUSHSUB_ENOTFOUND, or a
 * CG_DB_* code. */
static int delete_returning(cg_db *db, const char *sql, int n, const char *const *params,
			    long long *id)
{
	PGresult *res = NULL;
	int rc = cg_db_exec(db, &res, sql, n, params);

	if (rc != CG_DB_OK)
		return rc;
	if (PQntuples(res) == 0)
		rc = CG_PUSHSUB_ENOTFOUND;
	else
		*id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

int cg_pushsub_unsubscribe(cg_db *db, const char *tenant, const char *user_id,
			   const char *endpoint, long long *id)
{
	static const char sql[] =
		"DELETE FROM push_subscriptions WHERE tenant_id = $1 AND user_id = $2 AND endpoint = $3"
		" RETURNING id";
	const char *params[3] = { tenant, user_id, endpoint };

	*id = 0;
	return delete_returning(db, sql, 3, params, id);
}

int cg_pushsub_for_event(cg_db *db, const char *tenant, const char *user_id, int limit,
			 PGresult **res)
{
	/* $2 NULL: every user of the tenant. */
	static const char sql[] =
		"SELECT id::text, user_id, endpoint, p256dh, auth FROM push_subscriptions"
		" WHERE tenant_id = $1 AND active AND ($2::text IS NULL OR user_id = $2)"
		" ORDER BY id LIMIT $3::int";
	char lim[ID_TEXT_MAX];
	const char *params[3] = { tenant, user_id, lim };

	*res = NULL;
	if (limit < 1 || limit > CG_PUSHSUB_FOR_EVENT_MAX)
		return CG_DB_ESQL;
	snprintf(lim, sizeof lim, "%d", limit);
	return cg_db_exec(db, res, sql, 3, params);
}

int cg_pushsub_delete(cg_db *db, const char *tenant, long long id, const char *reason)
{
	static const char sql[] =
		"DELETE FROM push_subscriptions WHERE tenant_id = $1 AND id = $2::bigint RETURNING id";
	char idtext[ID_TEXT_MAX];
	const char *params[2] = { tenant, idtext };
	long long gone = 0;
	int rc;

	snprintf(idtext, sizeof idtext, "%lld", id);
	rc = delete_returning(db, sql, 2, params, &gone);
	if (rc == CG_DB_OK)
		cg_log_info("push subscription %lld of tenant %s deleted: %s", id, tenant,
			    reason != NULL ? reason : "no reason given");
	return rc;
}

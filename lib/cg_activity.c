/* cg_activity: validation, storage and JSON shape of activities. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cg_activity.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"

/* The activity as PROTOCOLS.md shows it, built by PostgreSQL from row `a`.
 * Every reader uses this one expression, so every answer has one shape. */
#define ACTIVITY_JSON_SQL \
	"json_build_object('activity_id', a.activity_id, 'capsule_id', a.capsule_id," \
	" 'title', a.title, 'message', a.message, 'state', a.state, 'priority', a.priority," \
	" 'category', a.category, 'user_id', a.user_id, 'resolution', a.resolution," \
	" 'metadata', a.metadata, 'version', a.version," \
	" 'created_at', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')," \
	" 'updated_at', to_char(a.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))::text"

#define ACTIVITY_JSON_DEPTH (CG_METADATA_DEPTH + 4)

static const char *const priorities[] = { "low", "medium", "high", "critical" };

int cg_priority_valid(const char *p)
{
	size_t i;

	for (i = 0; p != NULL && i < sizeof(priorities) / sizeof(priorities[0]); i++)
		if (strcmp(p, priorities[i]) == 0)
			return 1;
	return 0;
}

static int field_fail(cg_field_error *fe, const char *field, const char *message)
{
	fe->field = field;
	fe->code = "validation_failed";
	fe->message = message;
	return -1;
}

/* Reads an optional string member. Returns 0 (absent: *out NULL) or -1. */
static int opt_string(json_object *body, const char *key, size_t max, const char **out,
		      cg_field_error *fe, const char *type_msg, const char *long_msg)
{
	cg_json_status st = cg_json_get_string(body, key, max, out);

	switch (st) {
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

/* An optional client-chosen id, or a generated one. */
static int opt_id(json_object *body, const char *key, const char *prefix, char *gen, size_t genlen,
		  const char **out, cg_field_error *fe)
{
	if (opt_string(body, key, CG_ID_MAX, out, fe, "must be a string",
		       "must be at most 255 characters") < 0)
		return -1;
	if (*out == NULL) {
		if (cg_random_id(prefix, gen, genlen) < 0)
			return field_fail(fe, key, "could not generate an id");
		*out = gen;
		return 0;
	}
	if (!cg_id_valid(*out))
		return field_fail(fe, key, "must be 1-255 characters of A-Z a-z 0-9 _ . : -");
	return 0;
}

int cg_activity_validate_new(json_object *body, cg_activity_new *out, cg_field_error *fe)
{
	json_object *meta;
	const char *s;

	memset(out, 0, sizeof *out);
	if (opt_id(body, "activity_id", "act_", out->gen_activity_id, sizeof out->gen_activity_id,
		   &out->activity_id, fe) < 0 ||
	    opt_id(body, "capsule_id", "cap_", out->gen_capsule_id, sizeof out->gen_capsule_id,
		   &out->capsule_id, fe) < 0)
		return -1;

	if (opt_string(body, "title", CG_TITLE_MAX, &out->title, fe, "title must be a string",
		       "title must be at most 500 characters") < 0)
		return -1;
	if (out->title == NULL)
		return field_fail(fe, "title", "title is required");
	if (out->title[strspn(out->title, " \t\r\n")] == '\0')
		return field_fail(fe, "title", "title must not be empty");
	if (opt_string(body, "message", CG_MESSAGE_MAX, &out->message, fe, "message must be a string",
		       "message must be at most 65536 bytes") < 0)
		return -1;
	if (out->message == NULL)
		out->message = "";

	if (opt_string(body, "priority", 16, &s, fe, "priority must be a string",
		       "priority must be one of low, medium, high, critical") < 0)
		return -1;
	if (s == NULL)
		s = "medium";
	if (!cg_priority_valid(s))
		return field_fail(fe, "priority", "priority must be one of low, medium, high, critical");
	out->priority = s;

	if (opt_string(body, "category", CG_CATEGORY_MAX, &out->category, fe,
		       "category must be a string", "category must be at most 255 characters") < 0)
		return -1;

	if (opt_string(body, "user_id", CG_ID_MAX, &out->user_id, fe, "user_id must be a string",
		       "user_id must be at most 255 characters") < 0)
		return -1;
	if (out->user_id != NULL && !cg_id_valid(out->user_id))
		return field_fail(fe, "user_id", "user_id must be 1-255 characters of A-Z a-z 0-9 _ . : -");

	switch (cg_json_get_object(body, "metadata", &meta)) {
	case CG_JSON_OK:
		if (cg_json_depth(meta) > CG_METADATA_DEPTH)
			return field_fail(fe, "metadata", "metadata nests too deeply (at most 16 levels)");
		out->metadata = cg_json_compact(meta);
		if (strlen(out->metadata) > CG_METADATA_MAX)
			return field_fail(fe, "metadata", "metadata must be at most 65536 bytes");
		break;
	case CG_JSON_ABSENT:
		out->metadata = "{}";
		break;
	default:
		return field_fail(fe, "metadata", "metadata must be a JSON object");
	}
	return 0;
}

static json_object *activity_from_text(const char *text)
{
	char err[128];
	json_object *a = cg_json_parse_object(text, strlen(text), ACTIVITY_JSON_DEPTH, err, sizeof err);

	if (a == NULL)
		cg_log_error("activity from database is not JSON: %s", err);
	return a;
}

int cg_activity_create(cg_db *db, const char *tenant, const cg_activity_new *a,
		       const char *actor, json_object **activity, json_object **event)
{
	static const char sql[] =
		"INSERT INTO activities AS a (tenant_id, activity_id, capsule_id, title, message,"
		" priority, category, user_id, metadata)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) RETURNING " ACTIVITY_JSON_SQL;
	const char *params[9];
	PGresult *res = NULL;
	json_object *act = NULL, *ev = NULL;
	int rc;

	*activity = NULL;
	*event = NULL;
	params[0] = tenant;
	params[1] = a->activity_id;
	params[2] = a->capsule_id;
	params[3] = a->title;
	params[4] = a->message;
	params[5] = a->priority;
	params[6] = a->category;
	params[7] = a->user_id;
	params[8] = a->metadata;

	rc = cg_db_exec(db, &res, sql, 9, params);
	if (rc == CG_DB_EDUP)
		rc = CG_ACT_EEXISTS;
	if (rc != CG_DB_OK)
		goto out;
	act = activity_from_text(PQgetvalue(res, 0, 0));
	if (act == NULL) {
		rc = CG_DB_ESQL;
		goto out;
	}
	rc = cg_event_insert(db, tenant, "activity.created", a->capsule_id, a->user_id, 1,
			     PQgetvalue(res, 0, 0), actor, NULL, &ev);
	if (rc != CG_DB_OK)
		goto out;
	*activity = act;
	*event = ev;
	act = NULL;
	ev = NULL;
out:
	if (res != NULL)
		PQclear(res);
	json_object_put(act);
	json_object_put(ev);
	return rc;
}

int cg_activity_get(cg_db *db, const char *tenant, const char *capsule_id, json_object **activity)
{
	static const char sql[] =
		"SELECT " ACTIVITY_JSON_SQL " FROM activities a WHERE a.tenant_id = $1 AND a.capsule_id = $2";
	const char *params[2] = { tenant, capsule_id };
	PGresult *res = NULL;
	int rc;

	*activity = NULL;
	rc = cg_db_exec(db, &res, sql, 2, params);
	if (rc != CG_DB_OK)
		return rc;
	if (PQntuples(res) == 0) {
		rc = CG_ACT_ENOTFOUND;
	} else {
		*activity = activity_from_text(PQgetvalue(res, 0, 0));
		if (*activity == NULL)
			rc = CG_DB_ESQL;
	}
	PQclear(res);
	return rc;
}

int cg_activity_cache_key(const char *tenant, const char *capsule_id, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "cg:{%s}:activity:%s", tenant, capsule_id);

	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

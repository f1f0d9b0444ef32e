/* cg_activity: validation, storage, state changes, JSON shape and cache of activities. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cg_activity.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_state.h"
#include "cg_util.h"

/* The one activity shape and its nesting bound (cg_activity.h). */
#define ACTIVITY_JSON_SQL CG_ACTIVITY_JSON_SQL
#define ACTIVITY_JSON_DEPTH CG_ACTIVITY_JSON_DEPTH

/* Columns that PUT /update may set, in the order of the UPDATE's $3..$8
 * and of the "fields" list of an event's cause. */
static const char *const patch_fields[] = {
	"state", "resolution", "title", "message", "priority", "category",
};
#define N_PATCH_FIELDS (sizeof patch_fields / sizeof patch_fields[0])

static const char *const priorities[] = { "low", "medium", "high", "critical" };

void cg_limits_from_config(const cg_config *cfg, cg_limits *l)
{
	l->title_chars = CG_TITLE_MAX;
	l->message_bytes = CG_MESSAGE_MAX;
	l->metadata_bytes = CG_METADATA_MAX;
	l->metadata_depth = CG_METADATA_DEPTH;
	if (cfg == NULL)
		return;
	if (cfg->max_title_chars > 0)
		l->title_chars = (size_t)cfg->max_title_chars;
	if (cfg->max_message_bytes > 0)
		l->message_bytes = (size_t)cfg->max_message_bytes;
	if (cfg->max_metadata_bytes > 0)
		l->metadata_bytes = (size_t)cfg->max_metadata_bytes;
	if (cfg->max_metadata_depth > 0)
		l->metadata_depth = (int)cfg->max_metadata_depth;
}

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

/* field_fail with a message formatted into fe->text. */
__attribute__((format(printf, 3, 4)))
static int field_failf(cg_field_error *fe, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fe->text, sizeof fe->text, fmt, ap);
	va_end(ap);
	return field_fail(fe, field, fe->text);
}

/* Number of characters (code points) of valid UTF-8 text. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* Reads an optional string member of at most `max` bytes (or characters
 * when `chars`). Returns 0 (absent or null: *out NULL) or -1 with *fe. */
static int opt_string_n(json_object *body, const char *key, size_t max, int chars,
			const char **out, cg_field_error *fe)
{
	/* A character takes at most 4 bytes of UTF-8. */
	size_t byte_max = chars ? (max > ((size_t)-1) / 4 ? 0 : max * 4) : max;
	cg_json_status st = cg_json_get_string(body, key, byte_max, out);

	switch (st) {
	case CG_JSON_OK:
		if (chars && utf8_chars(*out) > max)
			return field_failf(fe, key, "%s must be at most %zu characters", key, max);
		return 0;
	case CG_JSON_ABSENT:
		*out = NULL;
		return 0;
	case CG_JSON_TOO_LONG:
		return field_failf(fe, key, "%s must be at most %zu %s", key, max,
				   chars ? "characters" : "bytes");
	case CG_JSON_BAD_UTF8:
		return field_failf(fe, key, "%s must be valid UTF-8 text", key);
	case CG_JSON_WRONG_TYPE:
	default:
		return field_failf(fe, key, "%s must be a string", key);
	}
}

static int opt_string(json_object *body, const char *key, size_t max, const char **out,
		      cg_field_error *fe)
{
	return opt_string_n(body, key, max, 0, out, fe);
}

/* An optional id: 1..255 of [A-Za-z0-9_.:-] when present. */
static int opt_valid_id(json_object *body, const char *key, const char **out, cg_field_error *fe)
{
	if (opt_string(body, key, CG_ID_MAX, out, fe) < 0)
		return -1;
	if (*out != NULL && !cg_id_valid(*out))
		return field_failf(fe, key, "%s must be 1-255 characters of A-Z a-z 0-9 _ . : -", key);
	return 0;
}

/* A required id. */
static int req_id(json_object *body, const char *key, const char **out, cg_field_error *fe)
{
	if (opt_valid_id(body, key, out, fe) < 0)
		return -1;
	if (*out == NULL)
		return field_failf(fe, key, "%s is required", key);
	return 0;
}

/* An optional client-chosen id, or a generated one. */
static int opt_id(json_object *body, const char *key, const char *prefix, char *gen, size_t genlen,
		  const char **out, cg_field_error *fe)
{
	if (opt_valid_id(body, key, out, fe) < 0)
		return -1;
	if (*out == NULL) {
		if (cg_random_id(prefix, gen, genlen) < 0)
			return field_fail(fe, key, "could not generate an id");
		*out = gen;
	}
	return 0;
}

/* A title: at most lim->title_chars characters, not blank. */
static int opt_title(json_object *body, const cg_limits *lim, const char **out, cg_field_error *fe)
{
	if (opt_string_n(body, "title", lim->title_chars, 1, out, fe) < 0)
		return -1;
	if (*out != NULL && (*out)[strspn(*out, " \t\r\n")] == '\0')
		return field_fail(fe, "title", "title must not be empty");
	return 0;
}

static int opt_priority(json_object *body, const char **out, cg_field_error *fe)
{
	if (opt_string(body, "priority", 16, out, fe) < 0 ||
	    (*out != NULL && !cg_priority_valid(*out)))
		return field_fail(fe, "priority", "priority must be one of low, medium, high, critical");
	return 0;
}

/* Optional metadata object within the bounds: *out is its compact text
 * (owned by the member object inside `body`), NULL when absent or null. */
static int opt_metadata(json_object *body, const cg_limits *lim, const char **out,
			cg_field_error *fe)
{
	json_object *meta;

	*out = NULL;
	switch (cg_json_get_object(body, "metadata", &meta)) {
	case CG_JSON_OK:
		if (cg_json_depth(meta) > lim->metadata_depth)
			return field_failf(fe, "metadata", "metadata nests too deeply (at most %d levels)",
					   lim->metadata_depth);
		*out = cg_json_compact(meta);
		if (*out == NULL)
			return field_fail(fe, "metadata", "metadata could not be serialised");
		if (strlen(*out) > lim->metadata_bytes)
			return field_failf(fe, "metadata", "metadata must be at most %zu bytes",
					   lim->metadata_bytes);
		return 0;
	case CG_JSON_ABSENT:
		return 0;
	default:
		return field_fail(fe, "metadata", "metadata must be a JSON object");
	}
}

/* `lim`, or the built-in defaults (filled into *defaults) when NULL. */
static const cg_limits *limits_or_defaults(const cg_limits *lim, cg_limits *defaults)
{
	if (lim != NULL)
		return lim;
	cg_limits_from_config(NULL, defaults);
	return defaults;
}

int cg_activity_validate_new(json_object *body, const cg_limits *lim, cg_activity_new *out,
			     cg_field_error *fe)
{
	cg_limits defaults;

	memset(out, 0, sizeof *out);
	lim = limits_or_defaults(lim, &defaults);
	if (opt_id(body, "activity_id", "act_", out->gen_activity_id, sizeof out->gen_activity_id,
		   &out->activity_id, fe) < 0 ||
	    opt_id(body, "capsule_id", "cap_", out->gen_capsule_id, sizeof out->gen_capsule_id,
		   &out->capsule_id, fe) < 0)
		return -1;

	if (opt_title(body, lim, &out->title, fe) < 0)
		return -1;
	if (out->title == NULL)
		return field_fail(fe, "title", "title is required");
	if (opt_string(body, "message", lim->message_bytes, &out->message, fe) < 0)
		return -1;
	if (out->message == NULL)
		out->message = "";
	if (opt_priority(body, &out->priority, fe) < 0)
		return -1;
	if (out->priority == NULL)
		out->priority = "medium";
	if (opt_string(body, "category", CG_CATEGORY_MAX, &out->category, fe) < 0 ||
	    opt_valid_id(body, "user_id", &out->user_id, fe) < 0 ||
	    opt_metadata(body, lim, &out->metadata, fe) < 0)
		return -1;
	if (out->metadata == NULL)
		out->metadata = "{}";
	return 0;
}

int cg_activity_validate_update(json_object *body, const cg_limits *lim, cg_activity_patch *out,
				cg_field_error *fe)
{
	cg_limits defaults;

	memset(out, 0, sizeof *out);
	lim = limits_or_defaults(lim, &defaults);
	out->metadata_max = lim->metadata_bytes;
	if (req_id(body, "capsule_id", &out->capsule_id, fe) < 0)
		return -1;
	if (opt_string(body, "state", 32, &out->state, fe) < 0)
		return -1;
	if (out->state != NULL && !cg_state_valid(out->state))
		return field_fail(fe, "state", "state must be one of active, investigating, mitigating,"
					       " approved, rejected, dismissed, resolved");
	if (opt_string(body, "resolution", lim->message_bytes, &out->resolution, fe) < 0 ||
	    opt_title(body, lim, &out->title, fe) < 0 ||
	    opt_string(body, "message", lim->message_bytes, &out->message, fe) < 0 ||
	    opt_priority(body, &out->priority, fe) < 0 ||
	    opt_string(body, "category", CG_CATEGORY_MAX, &out->category, fe) < 0 ||
	    opt_metadata(body, lim, &out->metadata, fe) < 0)
		return -1;
	if (out->state == NULL && out->resolution == NULL && out->title == NULL &&
	    out->message == NULL && out->priority == NULL && out->category == NULL &&
	    out->metadata == NULL)
		return field_fail(fe, NULL, "nothing to update: give state, resolution, title, message,"
					    " priority, category or metadata");
	return 0;
}

int cg_activity_validate_action(json_object *body, const cg_limits *lim, cg_action_req *out,
				cg_field_error *fe)
{
	cg_limits defaults;

	memset(out, 0, sizeof *out);
	lim = limits_or_defaults(lim, &defaults);
	if (req_id(body, "capsule_id", &out->capsule_id, fe) < 0)
		return -1;
	if (opt_string(body, "action_type", 32, &out->action_type, fe) < 0)
		return -1;
	if (out->action_type == NULL)
		return field_fail(fe, "action_type", "action_type is required");
	if (cg_action_target(out->action_type) == NULL)
		return field_fail(fe, "action_type",
				  "action_type must be one of mitigate, inspect, dismiss, approve, reject");
	if (opt_valid_id(body, "user_id", &out->user_id, fe) < 0 ||
	    opt_metadata(body, lim, &out->metadata, fe) < 0)
		return -1;
	if (out->metadata == NULL)
		out->metadata = "{}";
	return 0;
}

static json_object *activity_from_text(const char *text)
{
	char err[128];
	json_object *a = cg_json_parse_object(text, strlen(text), ACTIVITY_JSON_DEPTH, err, sizeof err);

	if (a == NULL)
		cg_log_error("row JSON from the database does not parse: %s", err);
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

/* Locks activity `capsule_id` of the caller's tenant for the rest of the
 * transaction. Returns 0 with *res (column 0 the state, 1 the activity
 * JSON; caller PQclears), CG_ACT_ENOTFOUND or a CG_DB_* code. */
static int lock_activity(cg_db *db, const char *tenant, const char *capsule_id, PGresult **res)
{
	static const char sql[] =
		"SELECT a.state, " ACTIVITY_JSON_SQL " FROM activities a"
		" WHERE a.tenant_id = $1 AND a.capsule_id = $2 FOR UPDATE";
	const char *params[2] = { tenant, capsule_id };
	int rc = cg_db_exec(db, res, sql, 2, params);

	if (rc != CG_DB_OK)
		return rc;
	if (PQntuples(*res) != 1) {
		PQclear(*res);
		*res = NULL;
		return CG_ACT_ENOTFOUND;
	}
	return 0;
}

/* May the locked activity (row 0 of `locked`) move to `to` (NULL: no state
 * change)? A final activity never changes. When `stay_ok`, staying in the
 * current state is not a move (PUT /update repeating the state); else the
 * table decides that cell too (an action on an activity already in its
 * target state: inspect on investigating is allowed, approve on approved is
 * not). Returns 0, or CG_ACT_EFINAL / CG_ACT_ETRANSITION with *activity =
 * the unchanged activity (NULL only when memory runs out). */
static int check_move(PGresult *locked, const char *to, int stay_ok, json_object **activity)
{
	const char *from = PQgetvalue(locked, 0, 0);
	int rc = 0;

	if (cg_state_is_final(from))
		rc = CG_ACT_EFINAL;
	else if (to != NULL && !(stay_ok && strcmp(from, to) == 0) &&
		 !cg_state_move_allowed(from, to))
		rc = CG_ACT_ETRANSITION;
	if (rc != 0)
		*activity = activity_from_text(PQgetvalue(locked, 0, 1));
	return rc;
}

/* The one UPDATE of a change: sets the non-NULL vals (patch_fields order),
 * merges `metadata` (NULL: none), bumps version. On success *res has the
 * activity JSON, version and user_id (caller PQclears). */
static int apply_change(cg_db *db, const char *tenant, const char *capsule_id,
			const char *const vals[N_PATCH_FIELDS], const char *metadata, PGresult **res)
{
	/* updated_at: clock_timestamp(), never below the previous value --
	 * now() is the start of OUR transaction, which may be older than the
	 * change we waited for on the row lock. */
	static const char sql[] =
		"UPDATE activities AS a SET"
		" state = coalesce($3, a.state), resolution = coalesce($4, a.resolution),"
		" title = coalesce($5, a.title), message = coalesce($6, a.message),"
		" priority = coalesce($7, a.priority), category = coalesce($8, a.category),"
		" metadata = CASE WHEN $9::jsonb IS NULL THEN a.metadata"
		"  ELSE (a.metadata || $9::jsonb) - ARRAY(SELECT p.key FROM jsonb_each($9::jsonb) AS p"
		"   WHERE jsonb_typeof(p.value) = 'null') END,"
		" version = a.version + 1, updated_at = greatest(a.updated_at, clock_timestamp())"
		" WHERE a.tenant_id = $1 AND a.capsule_id = $2"
		" RETURNING " ACTIVITY_JSON_SQL ", a.version, a.user_id";
	const char *params[9];
	size_t i;
	int rc;

	params[0] = tenant;
	params[1] = capsule_id;
	for (i = 0; i < N_PATCH_FIELDS; i++)
		params[2 + i] = vals[i];
	params[8] = metadata;
	rc = cg_db_exec(db, res, sql, 9, params);
	if (rc != CG_DB_OK)
		return rc;
	if (PQntuples(*res) != 1) { /* locked just before: cannot happen */
		PQclear(*res);
		*res = NULL;
		return CG_ACT_ENOTFOUND;
	}
	return 0;
}

/* The common start of a change of activity `capsule_id`: locks the row,
 * checks the move to `to` (see check_move), applies vals / metadata (see
 * apply_change) and reads the changed activity. Returns 0 with *changed
 * (caller PQclears) and *act (caller puts); otherwise an error code, with
 * *activity set as check_move() sets it and *changed possibly set (caller
 * PQclears it still). */
static int lock_and_apply(cg_db *db, const char *tenant, const char *capsule_id, const char *to,
			  int stay_ok, const char *const vals[N_PATCH_FIELDS],
			  const char *metadata, json_object **activity, PGresult **changed,
			  json_object **act)
{
	PGresult *locked = NULL;
	int rc;

	*changed = NULL;
	*act = NULL;
	rc = lock_activity(db, tenant, capsule_id, &locked);
	if (rc != 0)
		goto out;
	rc = check_move(locked, to, stay_ok, activity);
	if (rc != 0)
		goto out;
	rc = apply_change(db, tenant, capsule_id, vals, metadata, changed);
	if (rc != 0)
		goto out;
	*act = activity_from_text(PQgetvalue(*changed, 0, 0));
	if (*act == NULL)
		rc = CG_DB_ESQL;
out:
	if (locked != NULL)
		PQclear(locked);
	return rc;
}

/* Writes the "activity.updated" event of a change whose UPDATE returned
 * `changed` (row 0: activity JSON, version, user_id). */
static int insert_update_event(cg_db *db, const char *tenant, const char *capsule_id,
			       PGresult *changed, const char *actor, json_object *cause,
			       json_object **event)
{
	const char *user_id = PQgetisnull(changed, 0, 2) ? NULL : PQgetvalue(changed, 0, 2);
	long long version = strtoll(PQgetvalue(changed, 0, 1), NULL, 10);
	const char *cause_text = cg_json_compact(cause);

	if (cause_text == NULL)
		return CG_DB_ESQL;
	return cg_event_insert(db, tenant, "activity.updated", capsule_id, user_id, version,
			       PQgetvalue(changed, 0, 0), actor, cause_text, event);
}

/* Compact size of the "metadata" member of `activity`. */
static size_t metadata_size(json_object *activity)
{
	json_object *m;
	const char *t;

	if (!json_object_object_get_ex(activity, "metadata", &m))
		return 0;
	t = cg_json_compact(m);
	return t != NULL ? strlen(t) : 0;
}

int cg_activity_update(cg_db *db, const char *tenant, const cg_activity_patch *p,
		       const char *actor, json_object **activity, json_object **event)
{
	const char *vals[N_PATCH_FIELDS];
	PGresult *changed = NULL;
	json_object *act = NULL, *ev = NULL, *cause = NULL, *fields = NULL;
	size_t i;
	int rc;

	*activity = NULL;
	*event = NULL;
	vals[0] = p->state;
	vals[1] = p->resolution;
	vals[2] = p->title;
	vals[3] = p->message;
	vals[4] = p->priority;
	vals[5] = p->category;

	rc = lock_and_apply(db, tenant, p->capsule_id, p->state, 1, vals, p->metadata, activity,
			    &changed, &act);
	if (rc != 0)
		goto out;
	if (p->metadata != NULL && p->metadata_max > 0 && metadata_size(act) > p->metadata_max) {
		rc = CG_ACT_ELIMIT;
		goto out;
	}

	/* cause: {"fields": [the fields this request set]} */
	cause = json_object_new_object();
	fields = json_object_new_array();
	rc = CG_DB_ESQL; /* out of memory, until proven otherwise */
	if (cause == NULL || fields == NULL)
		goto out;
	for (i = 0; i < N_PATCH_FIELDS; i++)
		if (vals[i] != NULL &&
		    json_object_array_add(fields, json_object_new_string(patch_fields[i])) != 0)
			goto out;
	if (p->metadata != NULL &&
	    json_object_array_add(fields, json_object_new_string("metadata")) != 0)
		goto out;
	if (json_object_object_add(cause, "fields", fields) != 0)
		goto out;
	fields = NULL;

	rc = insert_update_event(db, tenant, p->capsule_id, changed, actor, cause, &ev);
	if (rc != CG_DB_OK)
		goto out;
	*activity = act;
	*event = ev;
	act = NULL;
	ev = NULL;
out:
	if (changed != NULL)
		PQclear(changed);
	json_object_put(fields);
	json_object_put(cause);
	json_object_put(act);
	json_object_put(ev);
	return rc;
}

/* Inserts the action row; *action is its JSON. */
static int insert_action(cg_db *db, const char *tenant, const char *action_id,
			 const cg_action_req *a, json_object **action)
{
	static const char sql[] =
		"INSERT INTO actions AS x (tenant_id, action_id, capsule_id, action_type, user_id, metadata)"
		" VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING json_build_object("
		"'action_id', x.action_id, 'capsule_id', x.capsule_id, 'action_type', x.action_type,"
		" 'user_id', x.user_id, 'result', x.result, 'metadata', x.metadata,"
		" 'created_at', to_char(x.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))::text";
	const char *params[6] = { tenant, action_id, a->capsule_id, a->action_type, a->user_id,
				  a->metadata != NULL ? a->metadata : "{}" };
	PGresult *res = NULL;
	int rc = cg_db_exec(db, &res, sql, 6, params);

	if (rc != CG_DB_OK)
		return rc;
	*action = PQntuples(res) == 1 ? activity_from_text(PQgetvalue(res, 0, 0)) : NULL;
	PQclear(res);
	return *action != NULL ? 0 : CG_DB_ESQL;
}

/* {"action": {action_id, action_type, user_id}} */
static json_object *action_cause(const char *action_id, const cg_action_req *a)
{
	json_object *cause = json_object_new_object(), *inner = json_object_new_object();

	if (cause == NULL || inner == NULL || cg_json_add_string(inner, "action_id", action_id) != 0 ||
	    cg_json_add_string(inner, "action_type", a->action_type) != 0 ||
	    cg_json_add_string(inner, "user_id", a->user_id) != 0 ||
	    json_object_object_add(cause, "action", inner) != 0) {
		json_object_put(inner);
		json_object_put(cause);
		return NULL;
	}
	return cause;
}

int cg_activity_act(cg_db *db, const char *tenant, const cg_action_req *a, const char *actor,
		    json_object **action, json_object **activity, json_object **event)
{
	const char *target = cg_action_target(a->action_type);
	const char *vals[N_PATCH_FIELDS] = { NULL };
	PGresult *changed = NULL;
	json_object *act = NULL, *ev = NULL, *cause = NULL, *rec = NULL;
	char action_id[40];
	int rc;

	*action = NULL;
	*activity = NULL;
	*event = NULL;
	if (target == NULL)
		return CG_ACT_ETRANSITION; /* the validator refuses these first */
	vals[0] = target;
	if (cg_random_id("action_", action_id, sizeof action_id) < 0)
		return CG_DB_ESQL;

	rc = lock_and_apply(db, tenant, a->capsule_id, target, 0, vals, NULL, activity, &changed,
			    &act);
	if (rc != 0)
		goto out;
	rc = insert_action(db, tenant, action_id, a, &rec);
	if (rc != 0)
		goto out;
	cause = action_cause(action_id, a);
	if (cause == NULL) {
		rc = CG_DB_ESQL;
		goto out;
	}
	rc = insert_update_event(db, tenant, a->capsule_id, changed, actor, cause, &ev);
	if (rc != CG_DB_OK)
		goto out;
	*action = rec;
	*activity = act;
	*event = ev;
	rec = NULL;
	act = NULL;
	ev = NULL;
out:
	if (changed != NULL)
		PQclear(changed);
	json_object_put(cause);
	json_object_put(rec);
	json_object_put(act);
	json_object_put(ev);
	return rc;
}

/* Stores KEYS[1] = ARGV[1] (TTL ARGV[3] seconds, none when <= 0) unless the
 * entry there is a JSON object whose "version" is >= ARGV[2]. An entry
 * that is not JSON is replaced. Returns 1 stored, 0 kept. */
static const char cache_store_lua[] =
	"local cur = redis.call('GET', KEYS[1])\n"
	"if cur then\n"
	"  local ok, obj = pcall(cjson.decode, cur)\n"
	"  if ok and type(obj) == 'table' then\n"
	"    local v = tonumber(obj['version'])\n"
	"    if v ~= nil and v >= tonumber(ARGV[2]) then return 0 end\n"
	"  end\n"
	"end\n"
	"if tonumber(ARGV[3]) > 0 then\n"
	"  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])\n"
	"else\n"
	"  redis.call('SET', KEYS[1], ARGV[1])\n"
	"end\n"
	"return 1\n";

/* Lower-case hex SHA-1 of the script, as Redis names it for EVALSHA. */
static int script_sha1(const char *script, char out[41])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;

	if (EVP_Digest(script, strlen(script), md, &n, EVP_sha1(), NULL) != 1 || n != 20)
		return -1;
	for (i = 0; i < n; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0x0f];
	}
	out[40] = '\0';
	return 0;
}

int cg_activity_cache_store(cg_redis *r, const cg_config *cfg, const char *tenant,
			    json_object *activity)
{
	/* "cg:{" tenant "}:activity:" capsule_id (<= 255) */
	char key[512], sha[41], vbuf[24], ttlbuf[24];
	const char *argv[7];
	json_object *v;
	const char *capsule_id, *val;
	redisReply *rep = NULL;
	int rc;

	if (!json_object_object_get_ex(activity, "capsule_id", &v) ||
	    !json_object_is_type(v, json_type_string))
		return -1;
	capsule_id = json_object_get_string(v);
	if (!json_object_object_get_ex(activity, "version", &v) ||
	    !json_object_is_type(v, json_type_int))
		return -1;
	snprintf(vbuf, sizeof vbuf, "%lld", (long long)json_object_get_int64(v));
	snprintf(ttlbuf, sizeof ttlbuf, "%ld", cfg != NULL ? cfg->cache_ttl : 300L);
	val = cg_json_compact(activity);
	if (val == NULL || cg_activity_cache_key(tenant, capsule_id, key, sizeof key) < 0 ||
	    script_sha1(cache_store_lua, sha) < 0)
		return -1;

	argv[0] = "EVALSHA";
	argv[1] = sha;
	argv[2] = "1";
	argv[3] = key;
	argv[4] = val;
	argv[5] = vbuf;
	argv[6] = ttlbuf;
	rc = cg_redis_cmd(r, &rep, 7, argv, NULL);
	if (rc == CG_REDIS_EREPLY && strncmp(cg_redis_errmsg(r), "NOSCRIPT", 8) == 0) {
		/* First use on this server (or after SCRIPT FLUSH / a restart):
		 * EVAL runs it and caches it for the next EVALSHA. */
		argv[0] = "EVAL";
		argv[1] = cache_store_lua;
		rc = cg_redis_cmd(r, &rep, 7, argv, NULL);
	}
	if (rc == CG_REDIS_EREPLY) {
		/* e.g. WRONGTYPE: never leave a copy that may be stale. */
		cg_log_warn("cache store %s: %s; deleting the entry", key, cg_redis_errmsg(r));
		cg_redis_del(r, key);
		return rc;
	}
	if (rc != CG_REDIS_OK)
		return rc;
	if (rep->type != REDIS_REPLY_INTEGER) {
		cg_log_warn("cache store %s: unexpected reply type %d", key, rep->type);
		freeReplyObject(rep);
		return CG_REDIS_EREPLY;
	}
	rc = rep->integer == 1 ? 1 : 0;
	freeReplyObject(rep);
	return rc;
}

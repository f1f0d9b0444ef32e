/* cg_event: event type registry, outbox rows, Redis stream entries, WebSocket messages. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_auth.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"

/* The one table of event types. Adding a type is adding a row here. */
static const cg_event_type event_types[] = {
	{ "activity.created", "activity_created", "activity", CG_EV_WS | CG_EV_PUSH },
	{ "activity.updated", "activity_updated", "activity", CG_EV_WS | CG_EV_PUSH },
	{ "action.taken", "action_taken", "action", CG_EV_WS },
	{ "api.deployed", "api_deployed", "data", CG_EV_WS },
	{ "api.undeployed", "api_undeployed", "data", CG_EV_WS },
	{ "gateway.config.updated", "gateway_config_updated", "data", CG_EV_WS },
};

/* Fields of a stream entry, in XADD order. "data" is last and is JSON. */
static const char *const stream_fields[] = {
	"event_id", "type", "tenant", "user_id", "capsule_id", "channel", "agent_id", "version",
	"created_at", "data",
};
#define N_STREAM_FIELDS (sizeof(stream_fields) / sizeof(stream_fields[0]))

/* Largest event payload accepted back from the stream (1 MiB + envelope). */
#define EVENT_DATA_MAX (1024 * 1024 + 4096)
#define EVENT_DATA_DEPTH (64 + 8) /* max_metadata_depth may be 64; the activity wraps it */

const cg_event_type *cg_event_type_find(const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < sizeof(event_types) / sizeof(event_types[0]); i++)
		if (strcmp(event_types[i].name, name) == 0)
			return &event_types[i];
	return NULL;
}

const char *cg_event_capsule_channel(const char *name)
{
	size_t n = sizeof CG_CHANNEL_CAPSULE_PREFIX - 1;

	if (name == NULL || strncmp(name, CG_CHANNEL_CAPSULE_PREFIX, n) != 0 ||
	    !cg_id_valid(name + n))
		return NULL;
	return name + n;
}

/* NULL for "" so that absent audience members are SQL NULL. */
static const char *nullable(const char *s)
{
	return s != NULL && *s != '\0' ? s : NULL;
}

const char *cg_event_str(json_object *ev, const char *key)
{
	json_object *v;

	if (ev == NULL || !json_object_object_get_ex(ev, key, &v) || !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

long long cg_event_int(json_object *ev, const char *key)
{
	json_object *v;

	if (ev == NULL || !json_object_object_get_ex(ev, key, &v) || !json_object_is_type(v, json_type_int))
		return 0;
	return (long long)json_object_get_int64(v);
}

/* Parses the event JSON text PostgreSQL returned. */
static json_object *event_from_text(const char *text)
{
	char err[128];
	json_object *ev = cg_json_parse_object(text, strlen(text), EVENT_DATA_DEPTH, err, sizeof err);

	if (ev == NULL)
		cg_log_error("event from database is not JSON: %s", err);
	return ev;
}

int cg_event_insert(cg_db *db, const char *tenant, const char *type, const char *capsule_id,
		    const char *user_id, long long version, const char *payload_json,
		    const char *actor, const char *cause_json, json_object **event)
{
	cg_event_audience aud = { user_id, NULL, NULL };

	return cg_event_insert_to(db, tenant, type, capsule_id, &aud, version, payload_json, actor,
				  cause_json, event);
}

int cg_event_insert_to(cg_db *db, const char *tenant, const char *type, const char *capsule_id,
		       const cg_event_audience *aud, long long version, const char *payload_json,
		       const char *actor, const char *cause_json, json_object **event)
{
	static const char sql[] =
		"INSERT INTO events AS e (tenant_id, type, capsule_id, user_id, channel, agent_id, version,"
		" payload, actor, cause)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10::jsonb) RETURNING " CG_EVENT_JSON_SQL;
	static const cg_event_audience tenant_wide = { NULL, NULL, NULL };
	char vbuf[24];
	const char *params[10];
	PGresult *res = NULL;
	int rc;

	*event = NULL;
	if (aud == NULL)
		aud = &tenant_wide;
	if (cg_event_type_find(type) == NULL) {
		cg_log_error("refusing to write unregistered event type %s", type);
		return CG_DB_ESQL;
	}
	if (nullable(aud->channel) != NULL && cg_event_capsule_channel(aud->channel) == NULL) {
		cg_log_error("refusing to write an event for channel %s", aud->channel);
		return CG_DB_ESQL;
	}
	snprintf(vbuf, sizeof vbuf, "%lld", version);
	params[0] = tenant;
	params[1] = type;
	params[2] = capsule_id;
	params[3] = aud->user_id;
	params[4] = nullable(aud->channel);
	params[5] = nullable(aud->agent_id);
	params[6] = vbuf;
	params[7] = payload_json;
	params[8] = actor;
	params[9] = cause_json;
	rc = cg_db_exec(db, &res, sql, 10, params);
	if (rc != CG_DB_OK)
		goto out;
	if (PQntuples(res) != 1) {
		rc = CG_DB_ESQL;
		goto out;
	}
	*event = event_from_text(PQgetvalue(res, 0, 0));
	if (*event == NULL)
		rc = CG_DB_ESQL;
out:
	if (res != NULL)
		PQclear(res);
	return rc;
}

/* The stream fields of `ev` in XADD order into fields/values (each
 * N_STREAM_FIELDS long); vbuf (>= 24 bytes) holds the version text and the
 * data text stays owned by ev. Returns the number of pairs. */
static size_t stream_pairs(json_object *ev, const char **fields, const char **values, char *vbuf,
			   size_t vlen)
{
	json_object *data;
	size_t i, n = 0;

	snprintf(vbuf, vlen, "%lld", cg_event_int(ev, "version"));
	if (!json_object_object_get_ex(ev, "data", &data))
		data = NULL;
	for (i = 0; i < N_STREAM_FIELDS; i++) {
		const char *f = stream_fields[i], *v;

		if (strcmp(f, "version") == 0)
			v = vbuf;
		else if (strcmp(f, "data") == 0)
			v = data != NULL ? cg_json_compact(data) : NULL;
		else
			v = cg_event_str(ev, f);
		if (v == NULL)
			v = "{}";
		/* the narrower audiences only when set: entries of ordinary
		 * events keep the fields they always had */
		if (*v == '\0' && (strcmp(f, "channel") == 0 || strcmp(f, "agent_id") == 0))
			continue;
		fields[n] = f;
		values[n] = v;
		n++;
	}
	return n;
}

int cg_event_publish(cg_redis *r, const cg_config *cfg, json_object *ev, char *id_out, size_t idlen)
{
	const char *fields[N_STREAM_FIELDS], *values[N_STREAM_FIELDS];
	char vbuf[24];
	size_t n = stream_pairs(ev, fields, values, vbuf, sizeof vbuf);

	return cg_redis_xadd(r, cfg->event_stream, cfg->event_stream_maxlen, (int)n, fields, values,
			     id_out, idlen);
}

int cg_event_mark_published(cg_db *db, const char *tenant, const char *event_id, const char *stream_id)
{
	const char *params[2] = { event_id, stream_id };
	int rc = cg_db_begin_tenant(db, tenant);

	if (rc != CG_DB_OK)
		return rc;
	rc = cg_db_exec(db, NULL,
			"UPDATE events SET published_at = now(), stream_id = $2"
			" WHERE event_id = $1::uuid AND published_at IS NULL",
			2, params);
	if (rc != CG_DB_OK) {
		cg_db_rollback(db);
		return rc;
	}
	return cg_db_commit(db);
}

/* Relays one tenant's unpublished events inside a tenant transaction.
 * Returns the number published or a negative code. */
static int relay_tenant(cg_db *db, cg_redis *r, const cg_config *cfg, const char *tenant,
			int min_age_s, int max)
{
	static const char sql[] =
		"SELECT e.id, " CG_EVENT_JSON_SQL " FROM events e"
		" WHERE e.published_at IS NULL AND e.created_at < now() - make_interval(secs => $1)"
		" ORDER BY e.id LIMIT $2 FOR UPDATE SKIP LOCKED";
	char agebuf[16], maxbuf[16], sid[64];
	const char *params[2] = { agebuf, maxbuf };
	PGresult *res = NULL;
	int rc, i, n, published = 0, pub_rc = CG_REDIS_OK;

	snprintf(agebuf, sizeof agebuf, "%d", min_age_s);
	snprintf(maxbuf, sizeof maxbuf, "%d", max);
	rc = cg_db_begin_tenant(db, tenant);
	if (rc != CG_DB_OK)
		return rc;
	rc = cg_db_exec(db, &res, sql, 2, params);
	if (rc != CG_DB_OK)
		goto fail;
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		const char *uparams[2];
		json_object *ev = event_from_text(PQgetvalue(res, i, 1));

		if (ev == NULL)
			continue;
		pub_rc = cg_event_publish(r, cfg, ev, sid, sizeof sid);
		if (pub_rc == CG_REDIS_OK)
			cg_log_info("relay published event %s as %s", cg_event_str(ev, "event_id"), sid);
		json_object_put(ev);
		if (pub_rc != CG_REDIS_OK)
			break;
		uparams[0] = PQgetvalue(res, i, 0);
		uparams[1] = sid;
		rc = cg_db_exec(db, NULL, "UPDATE events SET published_at = now(), stream_id = $2 WHERE id = $1",
				2, uparams);
		if (rc != CG_DB_OK)
			goto fail; /* published but unmarked: republished later (at least once) */
		published++;
	}
	PQclear(res);
	res = NULL;
	rc = cg_db_commit(db);
	if (rc != CG_DB_OK)
		return rc;
	return published == 0 && pub_rc != CG_REDIS_OK ? pub_rc : published;
fail:
	if (res != NULL)
		PQclear(res);
	cg_db_rollback(db);
	return rc;
}

int cg_event_relay(cg_db *db, cg_redis *r, const cg_config *cfg, int min_age_s, int max)
{
	char agebuf[16];
	const char *params[1] = { agebuf };
	PGresult *res = NULL;
	int rc, i, n, total = 0;

	/* Which tenants have work is the one question asked across tenants
	 * (a SECURITY DEFINER function); the relaying itself runs under each
	 * tenant's row-level security. */
	snprintf(agebuf, sizeof agebuf, "%d", min_age_s);
	rc = cg_db_exec(db, &res, "SELECT t FROM capsule_unpublished_tenants($1::integer) AS t", 1, params);
	if (rc != CG_DB_OK)
		return rc;
	n = PQntuples(res);
	for (i = 0; i < n && total < max; i++) {
		rc = relay_tenant(db, r, cfg, PQgetvalue(res, i, 0), min_age_s, max - total);
		if (rc < 0) {
			PQclear(res);
			return total > 0 ? total : rc;
		}
		total += rc;
	}
	PQclear(res);
	return total;
}

/* Adds one stream field to ev; "data" is parsed into *data (added last by
 * entry_finish). Unknown fields are ignored. Returns 0, or -1 when the value
 * is unusable. */
static int entry_field(json_object *ev, json_object **data, const char *k, const char *v, size_t vlen)
{
	char err[128];
	size_t j;

	if (strcmp(k, "data") == 0) {
		if (vlen > EVENT_DATA_MAX || *data != NULL)
			return -1;
		*data = cg_json_parse(v, vlen, EVENT_DATA_DEPTH, err, sizeof err);
		return *data != NULL ? 0 : -1;
	}
	if (strcmp(k, "version") == 0) {
		cg_json_add_int64(ev, "version", strtoll(v, NULL, 10));
		return 0;
	}
	for (j = 0; j < N_STREAM_FIELDS; j++)
		if (strcmp(k, stream_fields[j]) == 0)
			cg_json_add_string(ev, k, v);
	return 0;
}

/* Checks the members every entry has and adds data (taking *data). */
static int entry_finish(json_object *ev, json_object **data)
{
	if (*cg_event_str(ev, "event_id") == '\0' || *cg_event_str(ev, "type") == '\0' ||
	    *cg_event_str(ev, "tenant") == '\0')
		return -1;
	json_object_object_add(ev, "data", *data != NULL ? *data : json_object_new_object());
	*data = NULL;
	return 0;
}

json_object *cg_event_from_stream_entry(const redisReply *entry)
{
	const redisReply *fields;
	json_object *ev = NULL, *data = NULL;
	size_t i;

	if (entry == NULL || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
	    entry->element[0]->type != REDIS_REPLY_STRING ||
	    entry->element[1]->type != REDIS_REPLY_ARRAY || entry->element[1]->elements % 2 != 0)
		return NULL;
	fields = entry->element[1];
	ev = json_object_new_object();
	if (ev == NULL)
		return NULL;
	cg_json_add_string(ev, "stream_id", entry->element[0]->str);
	for (i = 0; i + 1 < fields->elements; i += 2) {
		const redisReply *k = fields->element[i], *v = fields->element[i + 1];

		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
		    entry_field(ev, &data, k->str, v->str, v->len) < 0)
			goto bad;
	}
	if (entry_finish(ev, &data) < 0)
		goto bad;
	return ev;
bad:
	cg_log_warn("malformed stream entry %s skipped", entry->element[0]->str);
	json_object_put(data);
	json_object_put(ev);
	return NULL;
}

json_object *cg_event_from_row(const char *row_json, const char *stream_id)
{
	const char *fields[N_STREAM_FIELDS], *values[N_STREAM_FIELDS];
	char vbuf[24];
	json_object *row, *ev = NULL, *data = NULL;
	size_t i, n;
	int rc = 0;

	if (row_json == NULL || stream_id == NULL)
		return NULL;
	row = event_from_text(row_json);
	if (row == NULL)
		return NULL;
	/* the very pairs cg_event_publish() would write, read back the way
	 * cg_event_from_stream_entry() reads them */
	n = stream_pairs(row, fields, values, vbuf, sizeof vbuf);
	ev = json_object_new_object();
	if (ev == NULL)
		goto out;
	cg_json_add_string(ev, "stream_id", stream_id);
	for (i = 0; i < n && rc == 0; i++)
		rc = entry_field(ev, &data, fields[i], values[i], strlen(values[i]));
	if (rc == 0)
		rc = entry_finish(ev, &data);
	if (rc < 0) {
		cg_log_error("event %s from database unusable", cg_event_str(row, "event_id"));
		json_object_put(data);
		json_object_put(ev);
		ev = NULL;
	}
out:
	json_object_put(row);
	return ev;
}

json_object *cg_event_ws_message(json_object *ev)
{
	const cg_event_type *t = cg_event_type_find(cg_event_str(ev, "type"));
	json_object *msg, *data;

	if (t == NULL || !(t->flags & CG_EV_WS))
		return NULL;
	msg = json_object_new_object();
	if (msg == NULL)
		return NULL;
	cg_json_add_string(msg, "type", t->ws_type);
	if (json_object_object_get_ex(ev, "data", &data))
		json_object_object_add(msg, t->data_key, json_object_get(data));
	cg_json_add_string(msg, "event_id", cg_event_str(ev, "event_id"));
	cg_json_add_string(msg, "event_type", t->name);
	cg_json_add_int64(msg, "version", cg_event_int(ev, "version"));
	if (*cg_event_str(ev, "stream_id") != '\0')
		cg_json_add_string(msg, "stream_id", cg_event_str(ev, "stream_id"));
	return msg;
}

int cg_event_visible_to(json_object *ev, const char *tenant, const char *user_id, const char *role)
{
	const char *audience = cg_event_str(ev, "user_id");
	cg_role r;

	if (tenant == NULL || strcmp(cg_event_str(ev, "tenant"), tenant) != 0)
		return 0;
	if (*cg_event_str(ev, "agent_id") != '\0')
		return 0; /* for an agent: no user connection's */
	if (*audience == '\0')
		return 1; /* the tenant, or a channel's subscribers */
	if (user_id != NULL && strcmp(audience, user_id) == 0)
		return 1;
	/* operators and every role above them see the whole tenant */
	return role != NULL && cg_role_parse(role, &r) == 0 && r >= CG_ROLE_OPERATOR;
}

int cg_event_for_agent(json_object *ev, const char *tenant, const char *agent_id)
{
	return tenant != NULL && agent_id != NULL && *agent_id != '\0' &&
	       strcmp(cg_event_str(ev, "tenant"), tenant) == 0 &&
	       strcmp(cg_event_str(ev, "agent_id"), agent_id) == 0;
}

cg_device_audience cg_event_device_audience(json_object *ev)
{
	if (*cg_event_str(ev, "channel") != '\0' || *cg_event_str(ev, "agent_id") != '\0')
		return CG_DEVICES_NONE;
	return *cg_event_str(ev, "user_id") != '\0' ? CG_DEVICES_USER : CG_DEVICES_TENANT;
}

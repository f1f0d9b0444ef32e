/* cg_event: events as they travel: the registry of event types, the outbox
 * row -> Redis stream entry -> WebSocket message / push job mapping, who may
 * see an event, and the relay that publishes committed events that a crashed
 * process did not publish.
 *
 * An event is a json-c object with these members (all strings unless noted):
 *   event_id   uuid, unique
 *   type       registered type, e.g. "activity.created"
 *   tenant     tenant id
 *   user_id    audience user; "" means every user of the tenant (unless
 *              channel or agent_id names a narrower audience)
 *   channel    audience channel, e.g. "capsule:cap_1"; "" when none
 *   agent_id   audience agent (service client); "" when none
 *   capsule_id the activity it concerns ("" when none)
 *   version    (int) the activity version after this change
 *   created_at RFC 3339
 *   data       (object) the payload, e.g. the whole activity
 *   stream_id  set once read back from the Redis stream */
#ifndef CG_EVENT_H
#define CG_EVENT_H

#include <stddef.h>
#include <json-c/json.h>
#include <hiredis/hiredis.h>
#include "cg_config.h"
#include "cg_db.h"
#include "cg_redis.h"

/* Audience and transports of a type. */
enum {
	CG_EV_WS = 1 << 0,   /* sent to WebSocket clients */
	CG_EV_PUSH = 1 << 1, /* sent to devices by push-daemon */
};

typedef struct cg_event_type {
	const char *name;       /* "activity.created" */
	const char *ws_type;    /* WebSocket message type: "activity_created" */
	const char *data_key;   /* member of the WS message holding data: "activity" */
	unsigned flags;
} cg_event_type;

/* Looks a type up in the registry; NULL when unknown. */
const cg_event_type *cg_event_type_find(const char *name);

/* Channel names (the WebSocket subscribe names and an event's "channel"). */
#define CG_CHANNEL_ACTIVITIES "activities"
#define CG_CHANNEL_TENANT "tenant"
#define CG_CHANNEL_CAPSULE_PREFIX "capsule:"
#define CG_CHANNEL_MAX 256 /* bytes of a channel name */

/* When `name` is "capsule:<capsule_id>" with a capsule_id passing
 * cg_id_valid(), returns that capsule_id (pointing into name); else NULL. */
const char *cg_event_capsule_channel(const char *name);

/* Writes an outbox event row inside the caller's open tenant transaction:
 * type `type` (must be registered), for `capsule_id` (may be NULL), audience
 * `user_id` (NULL = tenant-wide), activity `version`, `payload_json` (a JSON
 * object text), `actor` (who caused it: the caller's subject; NULL for the
 * system) and `cause_json` (NULL, or a JSON object text saying why, e.g.
 * {"fields":["state"]} or {"action":{...}}; shown by the history endpoint).
 * On success returns 0 and *event (the event object above, caller puts it);
 * else a CG_DB_* code (CG_DB_ESQL for an unknown type). */
int cg_event_insert(cg_db *db, const char *tenant, const char *type, const char *capsule_id,
		    const char *user_id, long long version, const char *payload_json,
		    const char *actor, const char *cause_json, json_object **event);

/* Who an event is for (NULL or "" members are absent). At most one of
 * user_id, channel and agent_id is meant to be set; none means the whole
 * tenant. */
typedef struct cg_event_audience {
	const char *user_id;
	const char *channel;  /* a channel event: cg_event_capsule_channel() name */
	const char *agent_id;
} cg_event_audience;

/* cg_event_insert() with a full audience (aud NULL = the tenant). Refuses
 * (CG_DB_ESQL, logged) a channel that is not a capsule channel. */
int cg_event_insert_to(cg_db *db, const char *tenant, const char *type, const char *capsule_id,
		       const cg_event_audience *aud, long long version, const char *payload_json,
		       const char *actor, const char *cause_json, json_object **event);

/* Publishes `ev` to the event stream (XADD with fields event_id, type,
 * tenant, user_id, capsule_id, channel, agent_id, version, created_at,
 * data). On success writes
 * the stream id into id_out (>= 32 bytes) and returns 0; else a CG_REDIS_*
 * code. */
int cg_event_publish(cg_redis *r, const cg_config *cfg, json_object *ev, char *id_out, size_t idlen);

/* Records in PostgreSQL that event `event_id` of `tenant` reached the
 * stream (its own short tenant transaction). */
int cg_event_mark_published(cg_db *db, const char *tenant, const char *event_id, const char *stream_id);

/* Publishes committed events not yet marked published and older than
 * `min_age_s` seconds, oldest first per tenant, at most `max` of them; each
 * tenant's in its own tenant transaction. Returns the
 * number published (>= 0) or a negative CG_DB_ or CG_REDIS_ code. */
int cg_event_relay(cg_db *db, cg_redis *r, const cg_config *cfg, int min_age_s, int max);

/* The event object as PostgreSQL builds it, as JSON text, from an events
 * row `e`: every reader of the event log (the writer's RETURNING, the
 * relay, the history) selects this one expression. */
#define CG_EVENT_JSON_SQL \
	"json_build_object('event_id', e.event_id::text, 'type', e.type, 'tenant', e.tenant_id," \
	" 'user_id', coalesce(e.user_id, ''), 'capsule_id', coalesce(e.capsule_id, '')," \
	" 'channel', coalesce(e.channel, ''), 'agent_id', coalesce(e.agent_id, '')," \
	" 'version', e.version," \
	" 'created_at', to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')," \
	" 'data', e.payload)::text"

/* Builds the event object from one stream entry (reply of type ARRAY:
 * [id, [field, value, ...]]). Returns a new object or NULL when the entry
 * is malformed (unknown fields are ignored; `data` must be JSON). */
json_object *cg_event_from_stream_entry(const redisReply *entry);

/* The event object cg_event_from_stream_entry() builds for the events row
 * whose CG_EVENT_JSON_SQL text is `row_json` once published as `stream_id`
 * (read from PostgreSQL's event log instead of the stream): the same
 * members in the same order. Returns a new object, or NULL (logged) when
 * the text is unusable. */
json_object *cg_event_from_row(const char *row_json, const char *stream_id);

/* The WebSocket message for `ev`, e.g.
 * {"type":"activity_created","activity":{...},"event_id":"...","version":1,"stream_id":"..."}.
 * Returns a new object or NULL when the type is not sent over WebSocket. */
json_object *cg_event_ws_message(json_object *ev);

/* 1 when a connection of user `user_id` in `tenant` with `role` may see `ev`:
 * same tenant, not addressed to an agent (agents are no user's), and the
 * event is tenant-wide, addressed to a channel (whoever subscribed to it),
 * addressed to that user, or the role is operator or above (cg_auth.h's
 * order). Which subscription an event matches is the daemon's business. */
int cg_event_visible_to(json_object *ev, const char *tenant, const char *user_id, const char *role);

/* 1 when `ev` is addressed to agent `agent_id` (non-empty) of `tenant`:
 * what an agent's connections receive without subscribing. */
int cg_event_for_agent(json_object *ev, const char *tenant, const char *agent_id);

/* Whose devices an event is pushed to. Devices belong to users, so an event
 * for a channel's subscribers or for an agent has no device audience even
 * though its user_id is empty; only an event with no user, channel or agent
 * is for every user of the tenant. */
typedef enum {
	CG_DEVICES_NONE = 0,   /* push to nobody */
	CG_DEVICES_USER = 1,   /* the devices of user_id */
	CG_DEVICES_TENANT = 2, /* the devices of every user of the tenant */
} cg_device_audience;

cg_device_audience cg_event_device_audience(json_object *ev);

/* Convenience getters (return "" / 0 when absent). */
const char *cg_event_str(json_object *ev, const char *key);
long long cg_event_int(json_object *ev, const char *key);

#endif

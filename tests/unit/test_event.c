/* test_event: event registry, WebSocket mapping, visibility, stream entries; publish and relay with servers. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_config.h"
#include "cg_db.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "tap.h"
#include "test_schema.h"

static json_object *event_of(const char *tenant, const char *user, const char *type)
{
	json_object *ev = json_object_new_object();
	json_object *data = json_object_new_object();

	cg_json_add_string(ev, "event_id", "0b7c3f7e-8d2a-4b59-9a3e-2f1d5c6b7a80");
	cg_json_add_string(ev, "type", type);
	cg_json_add_string(ev, "tenant", tenant);
	cg_json_add_string(ev, "user_id", user);
	cg_json_add_string(ev, "capsule_id", "cap_1");
	cg_json_add_int64(ev, "version", 3);
	cg_json_add_string(ev, "created_at", "2025-11-16T10:30:00Z");
	cg_json_add_string(data, "capsule_id", "cap_1");
	json_object_object_add(ev, "data", data);
	return ev;
}

/* event_of() with a narrower audience: channel and agent_id where the
 * stream puts them (between capsule_id and version). */
static json_object *event_to(const char *tenant, const char *channel, const char *agent_id)
{
	json_object *ev = json_object_new_object();
	json_object *data = json_object_new_object();

	cg_json_add_string(ev, "event_id", "5e0c8a52-1f7d-4c3b-8e6a-9d2b4f1a7c33");
	cg_json_add_string(ev, "type", "api.deployed");
	cg_json_add_string(ev, "tenant", tenant);
	cg_json_add_string(ev, "user_id", "");
	cg_json_add_string(ev, "capsule_id", "");
	cg_json_add_string(ev, "channel", channel);
	cg_json_add_string(ev, "agent_id", agent_id);
	cg_json_add_int64(ev, "version", 0);
	cg_json_add_string(ev, "created_at", "2025-11-16T10:30:00Z");
	cg_json_add_string(data, "api", "billing");
	json_object_object_add(ev, "data", data);
	return ev;
}

/* Channel names: only capsule:<valid id> names a capsule. */
static void check_channels(void)
{
	const char *id = cg_event_capsule_channel("capsule:cap_1");

	is_str(id ? id : "(null)", "cap_1", "capsule:cap_1 names capsule cap_1");
	ok(cg_event_capsule_channel("capsule:") == NULL, "capsule: without an id is no channel");
	ok(cg_event_capsule_channel("capsule:a b") == NULL, "capsule: with an invalid id is no channel");
	ok(cg_event_capsule_channel("capsule:*") == NULL, "capsule:* is no capsule channel");
	ok(cg_event_capsule_channel("tenant") == NULL, "tenant is not a capsule channel");
	ok(cg_event_capsule_channel("Capsule:cap_1") == NULL, "the prefix is case-sensitive");
	ok(cg_event_capsule_channel(NULL) == NULL, "NULL is no channel");
}

/* Channel events are for the channel's subscribers of the tenant; agent
 * events for no user connection. */
static void check_audience_visibility(void)
{
	json_object *ch = event_to("t1", "capsule:cap_1", ""), *ag = event_to("t1", "", "agent-7");

	is_int(cg_event_visible_to(ch, "t1", "u2", "viewer"), 1, "a channel event is visible to a viewer of the tenant");
	is_int(cg_event_visible_to(ch, "t2", "u2", "admin"), 0, "a channel event is invisible to another tenant's admin");
	is_int(cg_event_visible_to(ag, "t1", "agent-7", "admin"), 0, "an agent event is visible to no user connection");
	is_int(cg_event_visible_to(ag, "t1", "u1", "viewer"), 0, "an agent event is invisible to a viewer");
	is_int(cg_event_for_agent(ag, "t1", "agent-7"), 1, "an agent event is for its agent");
	is_int(cg_event_for_agent(ag, "t2", "agent-7"), 0, "not for the same agent id of another tenant");
	is_int(cg_event_for_agent(ag, "t1", "agent-8"), 0, "not for another agent");
	is_int(cg_event_for_agent(ag, "t1", ""), 0, "not for an empty agent id");
	is_int(cg_event_for_agent(ch, "t1", "agent-7"), 0, "a channel event is for no agent");
	json_object_put(ch);
	json_object_put(ag);
}

static void check_registry(void)
{
	static const struct {
		const char *name, *ws_type;
		unsigned flags;
	} want[] = {
		{ "activity.created", "activity_created", CG_EV_WS | CG_EV_PUSH },
		{ "activity.updated", "activity_updated", CG_EV_WS | CG_EV_PUSH },
		{ "action.taken", "action_taken", CG_EV_WS },
		{ "api.deployed", "api_deployed", CG_EV_WS },
		{ "api.undeployed", "api_undeployed", CG_EV_WS },
		{ "gateway.config.updated", "gateway_config_updated", CG_EV_WS },
	};
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const cg_event_type *t = cg_event_type_find(want[i].name);

		ok(t != NULL && strcmp(t->ws_type, want[i].ws_type) == 0 && t->flags == want[i].flags,
		   "%s is registered as %s", want[i].name, want[i].ws_type);
	}
	ok(cg_event_type_find("activity.deleted") == NULL, "an unknown type is not found");
	ok(cg_event_type_find(NULL) == NULL, "NULL is not a type");
}

static void check_ws_message(void)
{
	json_object *ev = event_of("default", "u1", "activity.created");
	json_object *msg = cg_event_ws_message(ev), *v;

	ok(msg != NULL, "activity.created maps to a WebSocket message");
	is_str(json_object_get_string(json_object_object_get(msg, "type")), "activity_created", "type is activity_created");
	ok(json_object_object_get_ex(msg, "activity", &v) &&
	   strcmp(json_object_get_string(json_object_object_get(v, "capsule_id")), "cap_1") == 0,
	   "the activity travels under \"activity\"");
	is_str(json_object_get_string(json_object_object_get(msg, "event_id")),
	       "0b7c3f7e-8d2a-4b59-9a3e-2f1d5c6b7a80", "event_id is carried");
	is_int(json_object_get_int(json_object_object_get(msg, "version")), 3, "version is carried");
	json_object_put(msg);
	json_object_put(ev);

	ev = event_of("default", "u1", "no.such.type");
	ok(cg_event_ws_message(ev) == NULL, "an unregistered type has no WebSocket message");
	json_object_put(ev);
}

static void check_visibility(void)
{
	static const struct {
		const char *ev_tenant, *ev_user, *tenant, *user, *role;
		int visible;
		const char *why;
	} c[] = {
		{ "t1", "u1", "t1", "u1", "user", 1, "own activity" },
		{ "t1", "u1", "t1", "u2", "user", 0, "another user's activity" },
		{ "t1", "", "t1", "u2", "user", 1, "tenant-wide activity" },
		{ "t1", "u1", "t2", "u1", "user", 0, "same user id in another tenant" },
		{ "t1", "", "t2", "u1", "admin", 0, "tenant-wide activity of another tenant, even for an admin" },
		{ "t1", "u1", "t1", "u2", "operator", 1, "operator sees the tenant's activities" },
		{ "t1", "u1", "t1", "u2", "admin", 1, "admin sees the tenant's activities" },
		{ "t1", "u1", "t1", "u2", "publisher", 1, "publisher (above operator) sees the tenant's activities" },
		{ "t1", "u1", "t1", "u2", "viewer", 0, "viewer sees only its own and tenant-wide activities" },
		{ "t1", "u1", "t1", "u2", "root", 0, "an unknown role is no role" },
		{ "t1", "u1", "t2", "u2", "admin", 0, "admin of another tenant" },
	};
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		json_object *ev = event_of(c[i].ev_tenant, c[i].ev_user, "activity.created");

		is_int(cg_event_visible_to(ev, c[i].tenant, c[i].user, c[i].role), c[i].visible, "%s: %s",
		       c[i].why, c[i].visible ? "visible" : "invisible");
		json_object_put(ev);
	}
}

/* A hand-built XREAD entry: [id, [k, v, ...]]. */
static redisReply *str_reply(const char *s)
{
	redisReply *r = calloc(1, sizeof *r);

	r->type = REDIS_REPLY_STRING;
	r->str = strdup(s);
	r->len = strlen(s);
	return r;
}

static redisReply *entry_reply(const char *id, const char *const *kv, size_t n)
{
	redisReply *e = calloc(1, sizeof *e), *f = calloc(1, sizeof *f);
	size_t i;

	e->type = REDIS_REPLY_ARRAY;
	e->elements = 2;
	e->element = calloc(2, sizeof(redisReply *));
	e->element[0] = str_reply(id);
	e->element[1] = f;
	f->type = REDIS_REPLY_ARRAY;
	f->elements = n;
	f->element = calloc(n ? n : 1, sizeof(redisReply *));
	for (i = 0; i < n; i++)
		f->element[i] = str_reply(kv[i]);
	return e;
}

static void free_reply(redisReply *r)
{
	size_t i;

	for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
		free_reply(r->element[i]);
	free(r->element);
	free(r->str);
	free(r);
}

static void check_device_audience(void)
{
	static const struct {
		const char *user, *channel, *agent;
		cg_device_audience want;
		const char *why;
	} c[] = {
		{ "u1", NULL, NULL, CG_DEVICES_USER, "an event for a user goes to that user's devices" },
		{ "", NULL, NULL, CG_DEVICES_TENANT, "a tenant-wide event goes to every user's devices" },
		{ "", "capsule:cap_1", NULL, CG_DEVICES_NONE, "a channel's event goes to no device" },
		{ "", NULL, "agent-7", CG_DEVICES_NONE, "an agent's event goes to no device" },
	};
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		json_object *ev = event_of("t1", c[i].user, "activity.updated");

		if (c[i].channel != NULL)
			cg_json_add_string(ev, "channel", c[i].channel);
		if (c[i].agent != NULL)
			cg_json_add_string(ev, "agent_id", c[i].agent);
		is_int(cg_event_device_audience(ev), c[i].want, "%s", c[i].why);
		json_object_put(ev);
	}
}

static void check_stream_entries(void)
{
	const char *good[] = { "event_id", "e1", "type", "activity.created", "tenant", "default",
			       "user_id", "u1", "capsule_id", "c1", "version", "7",
			       "created_at", "2025-11-16T10:30:00Z", "data", "{\"title\":\"t\"}" };
	const char *bad_data[] = { "event_id", "e1", "type", "activity.created", "tenant", "default",
				   "data", "{not json" };
	const char *no_type[] = { "event_id", "e1", "tenant", "default", "data", "{}" };
	const char *odd[] = { "event_id", "e1", "type" };
	redisReply *r;
	json_object *ev;

	r = entry_reply("1700000000000-0", good, 16);
	ev = cg_event_from_stream_entry(r);
	ok(ev != NULL, "a well-formed entry parses");
	is_str(cg_event_str(ev, "stream_id"), "1700000000000-0", "stream_id comes from the entry id");
	is_int(cg_event_int(ev, "version"), 7, "version is an integer");
	is_str(cg_event_str(ev, "user_id"), "u1", "user_id is kept");
	is_str(json_object_get_string(json_object_object_get(json_object_object_get(ev, "data"), "title")), "t",
	       "data is parsed JSON");
	json_object_put(ev);
	free_reply(r);

	r = entry_reply("1-0", bad_data, 8);
	ok(cg_event_from_stream_entry(r) == NULL, "data that is not JSON is refused");
	free_reply(r);
	r = entry_reply("1-0", no_type, 6);
	ok(cg_event_from_stream_entry(r) == NULL, "an entry without type is refused");
	free_reply(r);
	r = entry_reply("1-0", odd, 3);
	ok(cg_event_from_stream_entry(r) == NULL, "an odd number of fields is refused");
	free_reply(r);
	ok(cg_event_from_stream_entry(NULL) == NULL, "NULL is refused");
}

/* publish -> XRANGE -> from_stream_entry gives the same event back. */
static void check_publish(cg_redis *r, const cg_config *cfg)
{
	json_object *ev = event_of("default", "", "activity.created"), *back;
	char id[64];
	redisReply *rep = NULL;

	ok(cg_event_publish(r, cfg, ev, id, sizeof id) == CG_REDIS_OK, "event published (%s)", id);
	ok(cg_redis_cmdf(r, &rep, "XRANGE %s %s %s", cfg->event_stream, id, id) == CG_REDIS_OK &&
	   rep->type == REDIS_REPLY_ARRAY && rep->elements == 1, "the entry is on the stream");
	back = rep != NULL && rep->elements == 1 ? cg_event_from_stream_entry(rep->element[0]) : NULL;
	json_object_object_del(back, "stream_id");
	is_str(back ? cg_json_compact(back) : "", cg_json_compact(ev), "what is read back equals what was published");
	json_object_put(back);
	if (rep != NULL)
		freeReplyObject(rep);
	json_object_put(ev);

	/* the narrower audiences travel on the stream too */
	ev = event_to("default", "capsule:cap_9", "");
	back = NULL;
	rep = NULL;
	ok(cg_event_publish(r, cfg, ev, id, sizeof id) == CG_REDIS_OK &&
	   cg_redis_cmdf(r, &rep, "XRANGE %s %s %s", cfg->event_stream, id, id) == CG_REDIS_OK &&
	   rep->type == REDIS_REPLY_ARRAY && rep->elements == 1, "a channel event is published");
	back = rep != NULL && rep->elements == 1 ? cg_event_from_stream_entry(rep->element[0]) : NULL;
	is_str(cg_event_str(back, "channel"), "capsule:cap_9", "its channel is read back");
	is_str(cg_event_str(back, "agent_id"), "", "no agent_id is read back as \"\"");
	if (rep != NULL)
		freeReplyObject(rep);
	json_object_put(back);
	json_object_put(ev);
	ev = event_to("default", "", "agent-7");
	json_object_object_del(ev, "channel"); /* an empty audience member is not on the stream */
	rep = NULL;
	ok(cg_event_publish(r, cfg, ev, id, sizeof id) == CG_REDIS_OK &&
	   cg_redis_cmdf(r, &rep, "XRANGE %s %s %s", cfg->event_stream, id, id) == CG_REDIS_OK &&
	   rep->type == REDIS_REPLY_ARRAY && rep->elements == 1, "an agent event is published");
	back = rep != NULL && rep->elements == 1 ? cg_event_from_stream_entry(rep->element[0]) : NULL;
	json_object_object_del(back, "stream_id");
	is_str(back ? cg_json_compact(back) : "", cg_json_compact(ev),
	       "an agent event read back equals what was published");
	if (rep != NULL)
		freeReplyObject(rep);
	json_object_put(back);
	json_object_put(ev);
}

/* An event committed but never published (a writer that died) is published
 * by the relay, once. */
static void check_relay(const char *url, cg_redis *r, const cg_config *cfg)
{
	char dbname[64];
	cg_db *db = test_database_create(url, "test_event", dbname, sizeof dbname);
	json_object *ev = NULL, *bogus = NULL;
	redisReply *rep = NULL;
	PGresult *res = NULL;
	int n;

	if (!ok(db != NULL, "test database for the relay"))
		return;
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK &&
	   cg_event_insert(db, "default", "activity.created", "cap_r", NULL, 1, "{\"capsule_id\":\"cap_r\"}", NULL, NULL, &ev) == CG_DB_OK &&
	   cg_db_commit(db) == CG_DB_OK, "an outbox event is committed and left unpublished");
	ok(cg_event_insert(db, "default", "bogus.type", NULL, NULL, 1, "{}", NULL, NULL, &bogus) != CG_DB_OK && bogus == NULL,
	   "an unregistered type cannot be written");
	{
		cg_event_audience ch = { NULL, "capsule:cap_r", NULL }, bad = { NULL, "ops", NULL };
		cg_event_audience two = { "u1", NULL, "agent-1" };
		json_object *cev = NULL, *bev = NULL, *tev = NULL;

		ok(cg_db_begin_tenant(db, "default") == CG_DB_OK &&
		   cg_event_insert_to(db, "default", "api.deployed", NULL, &ch, 0, "{}", "t", NULL, &cev) == CG_DB_OK,
		   "a channel event is written");
		is_str(cg_event_str(cev, "channel"), "capsule:cap_r", "the written event carries its channel");
		is_str(cg_event_str(cev, "agent_id"), "", "and agent_id \"\"");
		ok(cg_event_insert_to(db, "default", "api.deployed", NULL, &bad, 0, "{}", "t", NULL, &bev) != CG_DB_OK &&
		   bev == NULL, "a channel that is no capsule channel is refused");
		ok(cg_event_insert_to(db, "default", "api.deployed", NULL, &two, 0, "{}", "t", NULL, &tev) != CG_DB_OK &&
		   tev == NULL, "an event for a user and an agent at once is refused by the schema");
		cg_db_rollback(db);
		json_object_put(cev);
	}
	is_int(cg_event_relay(db, r, cfg, 60, 10), 0, "the relay leaves events younger than min_age alone");
	n = cg_event_relay(db, r, cfg, 0, 10);
	is_int(n, 1, "the relay publishes the unpublished event");
	is_int(cg_event_relay(db, r, cfg, 0, 10), 0, "a second relay run publishes nothing");
	ok(cg_db_exec(db, &res, "SELECT count(*) FROM events WHERE published_at IS NOT NULL AND stream_id IS NOT NULL",
		      0, NULL) == CG_DB_OK && strcmp(PQgetvalue(res, 0, 0), "1") == 0, "the event is marked published");
	if (res != NULL)
		PQclear(res);
	ok(cg_redis_cmdf(r, &rep, "XREVRANGE %s + - COUNT 1", cfg->event_stream) == CG_REDIS_OK &&
	   rep->elements == 1, "the relayed entry is on the stream");
	if (rep != NULL && rep->elements == 1) {
		json_object *back = cg_event_from_stream_entry(rep->element[0]);

		is_str(cg_event_str(back, "event_id"), cg_event_str(ev, "event_id"), "the relayed entry is that event");
		json_object_put(back);
	}
	if (rep != NULL)
		freeReplyObject(rep);
	json_object_put(ev);
	test_database_drop(url, db, dbname);
}

int main(void)
{
	const char *dburl = getenv("CG_TEST_DATABASE_URL"), *rurl = getenv("CG_TEST_REDIS_URL");
	cg_config cfg;
	char err[256], stream[64];

	cg_log_init("test_event", CG_LOG_ERROR);
	check_registry();
	check_ws_message();
	check_visibility();
	check_device_audience();
	check_channels();
	check_audience_visibility();
	check_stream_entries();

	memset(&cfg, 0, sizeof cfg);
	if (rurl != NULL && *rurl != '\0' && cg_config_load(&cfg, NULL, CG_PROG_TEST, err, sizeof err) == 0) {
		cg_redis *r = cg_redis_open(rurl, 2000, err, sizeof err);

		cg_random_id("test:events:", stream, sizeof stream);
		free(cfg.event_stream);
		cfg.event_stream = strdup(stream);
		check_publish(r, &cfg);
		if (dburl != NULL && *dburl != '\0')
			check_relay(dburl, r, &cfg);
		cg_redis_del(r, stream);
		cg_redis_close(r);
	} else {
		printf("# CG_TEST_REDIS_URL not set: publish and relay checks skipped\n");
	}
	cg_config_free(&cfg);
	return done_testing();
}

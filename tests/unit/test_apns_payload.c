/* test_apns_payload: APNs payload, header values and response classes, as tables. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "tap.h"
#include "apns_payload.h"
#include "cg_json.h"
#include "payload_check.h"

#define NOW 1700000000L

/* An activity.created event with the given activity fields (NULL: absent). */
static json_object *make_event(const char *capsule_id, const char *title, const char *message,
			       const char *priority, const char *category)
{
	json_object *ev = make_activity_event("activity.created", capsule_id, 1, title, message, priority);

	json_object_object_add(ev, "user_id", json_object_new_string("user_789"));
	if (category)
		json_object_object_add(at(ev, "data", NULL, NULL), "category", json_object_new_string(category));
	return ev;
}

#define build_parse(ev, len_out) build_parse_with(apns_payload_build, ev, len_out)

static void test_exact_payload(void)
{
	json_object *ev = make_event("cap_456", "Security Alert", "Suspicious login", "high", "security");
	const char *want =
		"{\"aps\":{\"alert\":{\"title\":\"Security Alert\",\"body\":\"Suspicious login\"},"
		"\"sound\":\"default\",\"thread-id\":\"cap_456\",\"category\":\"security\","
		"\"interruption-level\":\"time-sensitive\"},\"capsule_id\":\"cap_456\","
		"\"activity_id\":\"act_123\",\"event_id\":\"" EVENT_ID "\",\"priority\":\"high\"}";

	check_exact(apns_payload_build, ev, want, "alert payload");
}

static void test_priorities(void)
{
	static const struct {
		const char *priority; /* as in the activity (NULL: absent) */
		const char *level;
		int critical_sound;
		int apns_priority;
		long expiry;
		const char *custom; /* "priority" custom key */
	} rows[] = {
		{ "low", "passive", 0, 5, 3600, "low" },
		{ "medium", "active", 0, 10, 86400, "medium" },
		{ "high", "time-sensitive", 0, 10, 86400, "high" },
		{ "critical", "critical", 1, 10, 86400, "critical" },
		{ NULL, "active", 0, 10, 86400, "medium" },
		{ "bogus", "active", 0, 10, 86400, "medium" },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const char *name = rows[i].priority ? rows[i].priority : "(absent)";
		json_object *ev = make_event("cap_1", "T", "B", rows[i].priority, NULL);
		json_object *p = build_parse(ev, NULL), *sound;
		apns_headers h;

		ok(p != NULL, "%s: payload builds and parses", name);
		is_str(at_str(p, "aps", "interruption-level", NULL), rows[i].level,
		       "%s: interruption-level", name);
		sound = at(p, "aps", "sound", NULL);
		if (rows[i].critical_sound) {
			ok(sound && json_object_is_type(sound, json_type_object), "%s: sound is a dict", name);
			is_int(json_object_get_int(at(sound, "critical", NULL, NULL)), 1, "%s: sound.critical", name);
			is_str(at_str(sound, "name", NULL, NULL), "default", "%s: sound.name", name);
			ok(json_object_is_type(at(sound, "volume", NULL, NULL), json_type_double) &&
			   json_object_get_double(at(sound, "volume", NULL, NULL)) == 1.0,
			   "%s: sound.volume 1.0", name);
		} else {
			is_str(at_str(p, "aps", "sound", NULL), "default", "%s: sound \"default\"", name);
		}
		is_str(at_str(p, "priority", NULL, NULL), rows[i].custom, "%s: priority custom key", name);

		apns_headers_build(ev, "abcdef0123", NOW, &h);
		is_int(h.apns_priority, rows[i].apns_priority, "%s: apns-priority", name);
		is_int(h.expiration - NOW, rows[i].expiry, "%s: apns-expiration offset", name);
		is_int(apns_prio_lookup(rows[i].priority)->apns_priority, rows[i].apns_priority,
		       "%s: apns_prio_lookup", name);
		is_int(apns_expiration(rows[i].priority, NOW) - NOW, rows[i].expiry,
		       "%s: apns_expiration", name);
		json_object_put(p);
		json_object_put(ev);
	}
}

static void test_collapse_id(void)
{
	char c64[65], c65[66];
	static const struct {
		int len; /* capsule id length */
		int present;
	} rows[] = { { 1, 1 }, { 36, 1 }, { 64, 1 }, { 65, 0 }, { 255, 0 } };
	size_t i;

	memset(c64, 'a', 64);
	c64[64] = '\0';
	memset(c65, 'b', 65);
	c65[65] = '\0';
	is_str(apns_collapse_id(c64), c64, "64-byte capsule id is the collapse id");
	ok(apns_collapse_id(c65) == NULL, "65-byte capsule id: no collapse id");
	ok(apns_collapse_id("") == NULL, "empty capsule id: no collapse id");
	ok(apns_collapse_id(NULL) == NULL, "absent capsule id: no collapse id");

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char id[256];
		json_object *ev;
		apns_headers h;

		memset(id, 'c', (size_t)rows[i].len);
		id[rows[i].len] = '\0';
		ev = make_event(id, "T", "B", "medium", NULL);
		apns_headers_build(ev, "00ff", NOW, &h);
		if (rows[i].present)
			is_str(h.collapse_id, id, "headers: %d-byte capsule id -> apns-collapse-id", rows[i].len);
		else
			is_str(h.collapse_id, "", "headers: %d-byte capsule id -> no apns-collapse-id", rows[i].len);
		json_object_put(ev);
	}
}

static int uuid_shaped(const char *s)
{
	int i;

	if (strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

static void test_apns_id(void)
{
	char a[37], b[37], c[37];
	json_object *ev = make_event("cap_1", "T", "B", "low", NULL);
	apns_headers h;

	apns_id_for(EVENT_ID, "aabbcc", a);
	apns_id_for(EVENT_ID, "aabbcc", b);
	apns_id_for(EVENT_ID, "aabbcd", c);
	ok(uuid_shaped(a), "apns-id is a lowercase 8-4-4-4-12 UUID (%s)", a);
	is_str(a, b, "apns-id is the same on every attempt");
	ok(strcmp(a, c) != 0, "apns-id differs per device");
	apns_headers_build(ev, "aabbcc", NOW, &h);
	is_str(h.apns_id, a, "headers use apns_id_for(event_id, token)");
	json_object_put(ev);
}

static void test_custom_keys_and_category(void)
{
	json_object *ev = make_event("cap_9", "Title", "Body", "medium", NULL);
	json_object *p = build_parse(ev, NULL);

	is_str(at_str(p, "capsule_id", NULL, NULL), "cap_9", "custom key capsule_id");
	is_str(at_str(p, "activity_id", NULL, NULL), "act_123", "custom key activity_id");
	is_str(at_str(p, "event_id", NULL, NULL), EVENT_ID, "custom key event_id");
	is_str(at_str(p, "priority", NULL, NULL), "medium", "custom key priority");
	is_str(at_str(p, "aps", "thread-id", NULL), "cap_9", "thread-id is the capsule id");
	is_str(at_str(p, "aps", "alert", "title"), "Title", "alert.title");
	is_str(at_str(p, "aps", "alert", "body"), "Body", "alert.body");
	ok(at(p, "aps", "category", NULL) == NULL, "category omitted when absent");
	ok(at(p, "aps", "capsule_id", NULL) == NULL, "custom keys are not inside aps");
	json_object_put(p);
	json_object_put(ev);

	ev = make_event("cap_9", "Title", "Body", "medium", "security");
	p = build_parse(ev, NULL);
	is_str(at_str(p, "aps", "category", NULL), "security", "category present when set");
	json_object_put(p);
	json_object_put(ev);

	ev = make_event("cap_9", NULL, "", "medium", NULL);
	p = build_parse(ev, NULL);
	is_str(at_str(p, "aps", "alert", "title"), "activity.created", "absent title falls back to the type");
	ok(at(p, "aps", "alert", "body") == NULL, "empty message: no alert.body");
	json_object_put(p);
	json_object_put(ev);
}

static void test_truncation(void)
{
	size_t i;

	for (i = 0; i < CUT_ROWS; i++) {
		char *body, *title;
		json_object *ev, *p;
		size_t len = 0;

		cut_texts(i, "Title", &body, &title);
		ev = make_event("cap_t", title, body, "critical", "security");
		p = build_parse(ev, &len);

		ok(p != NULL, "row %zu: payload builds and is JSON", i);
		cut_check("row", i, len, APNS_PAYLOAD_MAX, at_str(p, "aps", "alert", "body"),
			  at_str(p, "aps", "alert", "title"), body, title);
		is_str(at_str(p, "event_id", NULL, NULL), EVENT_ID, "row %zu: custom keys survive", i);
		json_object_put(p);
		json_object_put(ev);
		free(body);
		free(title);
	}
}

static void test_classify(void)
{
	static const struct {
		int transport_ok;
		long status;
		const char *reason;
		apns_action want;
	} rows[] = {
		{ 1, 200, NULL, APNS_ACT_DONE },
		{ 1, 410, "Unregistered", APNS_ACT_DEACTIVATE },
		{ 1, 410, "ExpiredToken", APNS_ACT_DEACTIVATE },
		{ 1, 400, "BadDeviceToken", APNS_ACT_DEACTIVATE },
		{ 1, 400, "DeviceTokenNotForTopic", APNS_ACT_DEACTIVATE },
		{ 1, 400, "BadCollapseId", APNS_ACT_DROP },
		{ 1, 400, "BadExpirationDate", APNS_ACT_DROP },
		{ 1, 400, "TopicDisallowed", APNS_ACT_DROP },
		{ 1, 400, "", APNS_ACT_DROP },
		{ 1, 400, "IdleTimeout", APNS_ACT_RETRY },
		{ 1, 403, "Forbidden", APNS_ACT_DROP },
		{ 1, 403, "ExpiredProviderToken", APNS_ACT_REMINT },
		{ 1, 403, "InvalidProviderToken", APNS_ACT_AUTH_FAILED },
		{ 1, 403, "BadEnvironmentKeyIdInToken", APNS_ACT_AUTH_FAILED },
		{ 1, 404, "BadPath", APNS_ACT_DROP },
		{ 1, 405, "MethodNotAllowed", APNS_ACT_DROP },
		{ 1, 413, "PayloadTooLarge", APNS_ACT_DROP },
		{ 1, 429, "TooManyRequests", APNS_ACT_RETRY },
		{ 1, 429, "TooManyProviderTokenUpdates", APNS_ACT_TOKEN_BACKOFF },
		{ 1, 500, "InternalServerError", APNS_ACT_RETRY },
		{ 1, 503, "ServiceUnavailable", APNS_ACT_RETRY },
		{ 1, 503, "Shutdown", APNS_ACT_RETRY },
		{ 0, 0, NULL, APNS_ACT_RETRY },
		{ 0, 200, NULL, APNS_ACT_RETRY },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++)
		is_str(apns_action_name(apns_response_classify(rows[i].transport_ok, rows[i].status, rows[i].reason)),
		       apns_action_name(rows[i].want), "classify %s %ld %s",
		       rows[i].transport_ok ? "ok" : "transport-error", rows[i].status,
		       rows[i].reason ? rows[i].reason : "-");
}

static void test_error_parse(void)
{
	static const struct {
		const char *body;
		const char *reason;
		long long ts;
	} rows[] = {
		{ "{\"reason\":\"Unregistered\",\"timestamp\":1700000000123}", "Unregistered", 1700000000123LL },
		{ "{\"reason\":\"BadDeviceToken\"}", "BadDeviceToken", -1 },
		{ "", "", -1 },
		{ "not json", "", -1 },
		{ "[1,2]", "", -1 },
		{ "{\"reason\":42}", "", -1 },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char reason[64];
		long long ts = 0;

		apns_error_parse(rows[i].body, strlen(rows[i].body), reason, sizeof reason, &ts);
		is_str(reason, rows[i].reason, "error body %zu: reason", i);
		is_int(ts, rows[i].ts, "error body %zu: timestamp", i);
	}
}

/* make_event() plus type, state, version, updated_at and metadata.progress
 * (a JSON text, NULL: no metadata) of the activity. */
static json_object *make_la_event(const char *type, const char *state, const char *priority,
				  const char *message, const char *progress_json, const char *updated_at)
{
	json_object *ev = make_event("cap_456", "Security Alert", message, priority, "security");
	json_object *data = at(ev, "data", NULL, NULL);

	json_object_object_add(ev, "type", json_object_new_string(type));
	if (state)
		json_object_object_add(data, "state", json_object_new_string(state));
	json_object_object_add(data, "version", json_object_new_int(4));
	if (updated_at)
		json_object_object_add(data, "updated_at", json_object_new_string(updated_at));
	if (progress_json) {
		json_object *meta = json_object_new_object();

		json_object_object_add(meta, "progress", json_tokener_parse(progress_json));
		json_object_object_add(data, "metadata", meta);
	}
	return ev;
}

static void la_cfg(cg_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->push_expiration_low = 60;
	cfg->push_expiration_medium = 600;
	cfg->push_expiration_high = 6000;
	cfg->push_expiration_critical = 60000;
	cfg->live_activity_stale_s = 600;
	cfg->live_activity_dismissal_s = 7200;
	cfg->push_to_start_critical = 1;
}

static void test_configured_expirations(void)
{
	static const struct {
		const char *priority;
		long cfg_s;
		int la_priority;
		int relevance;
	} rows[] = {
		{ "low", 60, 5, 25 },
		{ "medium", 600, 5, 50 },
		{ "high", 6000, 10, 75 },
		{ "critical", 60000, 10, 100 },
		{ NULL, 600, 5, 50 },
		{ "bogus", 600, 5, 50 },
	};
	cg_config cfg;
	size_t i;

	la_cfg(&cfg);
	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const char *name = rows[i].priority ? rows[i].priority : "(absent)";
		json_object *ev = make_event("cap_1", "T", "B", rows[i].priority, NULL);
		apns_headers h;
		const apns_push_type_info *bg = apns_push_type_info_get(APNS_PUSH_BACKGROUND);

		is_int(apns_expiration_s(&cfg, rows[i].priority), rows[i].cfg_s, "%s: configured seconds", name);
		is_int(apns_expiration_cfg(&cfg, rows[i].priority, NOW), NOW + rows[i].cfg_s,
		       "%s: configured apns-expiration", name);
		is_int(apns_expiration_cfg(NULL, rows[i].priority, NOW), apns_expiration(rows[i].priority, NOW),
		       "%s: NULL cfg is the table", name);
		apns_headers_build_cfg(ev, &cfg, APNS_PUSH_ALERT, "ab", NOW, &h);
		is_int(h.expiration, NOW + rows[i].cfg_s, "%s: alert headers use the configured expiration", name);
		is_int(h.apns_priority, apns_prio_lookup(rows[i].priority)->apns_priority, "%s: alert priority", name);
		is_str(h.push_type, "alert", "%s: alert push type", name);
		is_str(h.topic_suffix, "", "%s: alert topic suffix", name);
		apns_headers_build_cfg(ev, &cfg, APNS_PUSH_BACKGROUND, "ab", NOW, &h);
		is_int(h.apns_priority, 5, "%s: background priority is always 5", name);
		is_int(bg->fixed_priority, 5, "%s: background table priority", name);
		is_str(h.push_type, "background", "%s: background push type", name);
		is_int(h.expiration, NOW + rows[i].cfg_s, "%s: background expiration", name);
		apns_headers_build_cfg(ev, &cfg, APNS_PUSH_LIVEACTIVITY, "cd", NOW, &h);
		is_int(h.apns_priority, rows[i].la_priority, "%s: liveactivity priority", name);
		is_str(h.push_type, "liveactivity", "%s: liveactivity push type", name);
		is_str(h.topic_suffix, ".push-type.liveactivity", "%s: liveactivity topic suffix", name);
		is_int(apns_prio_lookup(rows[i].priority)->la_relevance, rows[i].relevance, "%s: relevance", name);
		{
			char id[37];

			apns_id_for(EVENT_ID, "cd", id);
			is_str(h.apns_id, id, "%s: liveactivity apns-id from the activity token", name);
		}
		json_object_put(ev);
	}
	cfg.push_expiration_low = 0;
	is_int(apns_expiration_cfg(&cfg, "low", NOW), 0, "configured 0: apns-expiration 0 (try once)");
}

static void test_push_types(void)
{
	char topic[64];

	is_str(apns_push_type_info_get(APNS_PUSH_ALERT)->push_type, "alert", "alert push type");
	is_str(apns_push_type_info_get(APNS_PUSH_BACKGROUND)->push_type, "background", "background push type");
	is_str(apns_push_type_info_get(APNS_PUSH_LIVEACTIVITY)->push_type, "liveactivity", "liveactivity push type");
	is_str(apns_push_type_info_get((apns_push_type)42)->push_type, "alert", "out of range: alert row");
	is_int(apns_push_type_info_get(APNS_PUSH_ALERT)->fixed_priority, 0, "alert priority by activity");
	is_int(apns_push_type_info_get(APNS_PUSH_LIVEACTIVITY)->fixed_priority, 0, "liveactivity priority by activity");
	ok(apns_topic("com.example.app", APNS_PUSH_ALERT, topic, sizeof topic) == 0, "alert topic");
	is_str(topic, "com.example.app", "alert topic is the bundle id");
	ok(apns_topic("com.example.app", APNS_PUSH_BACKGROUND, topic, sizeof topic) == 0, "background topic");
	is_str(topic, "com.example.app", "background topic is the bundle id");
	ok(apns_topic("com.example.app", APNS_PUSH_LIVEACTIVITY, topic, sizeof topic) == 0, "liveactivity topic");
	is_str(topic, "com.example.app.push-type.liveactivity", "liveactivity topic has the suffix");
	ok(apns_topic("com.example.app", APNS_PUSH_LIVEACTIVITY, topic, 20) == -1 && topic[0] == '\0',
	   "topic that does not fit: -1");
	ok(apns_topic("", APNS_PUSH_ALERT, topic, sizeof topic) == -1, "empty bundle id: -1");
	ok(apns_topic(NULL, APNS_PUSH_ALERT, topic, sizeof topic) == -1, "NULL bundle id: -1");
}

static void test_push_kind(void)
{
	static const struct {
		const char *type;
		const char *state;
		const char *priority;
		apns_push_type want;
	} rows[] = {
		{ "activity.created", "active", "low", APNS_PUSH_ALERT },
		{ "activity.created", "active", "critical", APNS_PUSH_ALERT },
		{ "activity.created", "active", NULL, APNS_PUSH_ALERT },
		{ "activity.updated", "active", "low", APNS_PUSH_BACKGROUND },
		{ "activity.updated", "active", "medium", APNS_PUSH_BACKGROUND },
		{ "activity.updated", "investigating", "medium", APNS_PUSH_BACKGROUND },
		{ "activity.updated", "active", NULL, APNS_PUSH_BACKGROUND },
		{ "activity.updated", NULL, "low", APNS_PUSH_BACKGROUND },
		{ "activity.updated", "active", "high", APNS_PUSH_ALERT },
		{ "activity.updated", "active", "critical", APNS_PUSH_ALERT },
		{ "activity.updated", "resolved", "low", APNS_PUSH_ALERT },
		{ "activity.updated", "dismissed", "medium", APNS_PUSH_ALERT },
		{ "activity.updated", "rejected", NULL, APNS_PUSH_ALERT },
		{ "activity.updated", "bogus", "low", APNS_PUSH_BACKGROUND },
		{ "gateway.config.updated", "resolved", "critical", APNS_PUSH_BACKGROUND },
		{ "", "active", NULL, APNS_PUSH_BACKGROUND },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_object *ev = make_la_event(rows[i].type, rows[i].state, rows[i].priority, "m", NULL, NULL);

		is_int(apns_push_kind(ev), rows[i].want, "push kind of %s/%s/%s", rows[i].type,
		       rows[i].state ? rows[i].state : "-", rows[i].priority ? rows[i].priority : "-");
		json_object_put(ev);
	}
	ok(apns_push_kind(NULL) == APNS_PUSH_BACKGROUND, "push kind of NULL");
}

static void test_background(void)
{
	json_object *ev = make_la_event("activity.updated", "investigating", "high", "m", NULL, NULL);
	const char *want = "{\"aps\":{\"content-available\":1},\"capsule_id\":\"cap_456\","
			   "\"activity_id\":\"act_123\",\"event_id\":\"" EVENT_ID "\","
			   "\"type\":\"activity.updated\",\"version\":1,\"state\":\"investigating\","
			   "\"priority\":\"high\"}";

	check_exact(apns_background_build, ev, want, "background payload");
	ev = json_object_new_object();
	json_object_object_add(ev, "type", json_object_new_string("gateway.config.updated"));
	check_exact(apns_background_build, ev,
		    "{\"aps\":{\"content-available\":1},\"type\":\"gateway.config.updated\","
		    "\"version\":0,\"priority\":\"medium\"}", "non-activity background payload");
}

static void test_la_event(void)
{
	static const struct {
		const char *state;
		const char *want;
	} rows[] = {
		{ "active", "update" }, { "investigating", "update" }, { "mitigating", "update" },
		{ "approved", "update" }, { "rejected", "end" }, { "dismissed", "end" },
		{ "resolved", "end" }, { NULL, "update" }, { "bogus", "update" },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_object *ev = make_la_event("activity.updated", rows[i].state, "high", "m", NULL, NULL);

		is_str(apns_liveactivity_event(ev), rows[i].want, "state %s -> %s",
		       rows[i].state ? rows[i].state : "-", rows[i].want);
		json_object_put(ev);
	}
}

static void test_la_should_start(void)
{
	static const struct {
		int cfg_on;
		const char *type;
		const char *state;
		const char *priority;
		int want;
	} rows[] = {
		{ 1, "activity.created", "active", "critical", 1 },
		{ 0, "activity.created", "active", "critical", 0 },
		{ 1, "activity.created", "active", "high", 0 },
		{ 1, "activity.created", NULL, "critical", 1 },
		{ 1, "activity.updated", "active", "critical", 0 },
		{ 1, "activity.created", "resolved", "critical", 0 },
	};
	cg_config cfg;
	size_t i;

	la_cfg(&cfg);
	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_object *ev = make_la_event(rows[i].type, rows[i].state, rows[i].priority, "m", NULL, NULL);

		cfg.push_to_start_critical = rows[i].cfg_on;
		is_int(apns_liveactivity_should_start(ev, &cfg), rows[i].want, "should start row %zu", i);
		json_object_put(ev);
	}
	{
		json_object *ev = make_la_event("activity.created", "active", "critical", "m", NULL, NULL);

		is_int(apns_liveactivity_should_start(ev, NULL), 0, "NULL cfg: never start");
		json_object_put(ev);
	}
}

/* apns_liveactivity_build as text ("" on failure). */
static char *la_text(json_object *ev, const cg_config *cfg, const char *event, const char *attr)
{
	char *text = NULL;
	size_t len = 0;

	if (apns_liveactivity_build(ev, cfg, NOW, event, attr, &text, &len) != 0)
		return strdup("");
	if (strlen(text) != len) {
		free(text);
		return strdup("(length mismatch)");
	}
	return text;
}

#define UPDATED "2023-11-14T22:00:00Z" /* NOW - 800 */
#define CS_HIGH "\"content-state\":{\"state\":\"investigating\",\"title\":\"Security Alert\"," \
	"\"message\":\"Suspicious login\",\"priority\":\"high\",\"version\":4," \
	"\"updated_at\":\"" UPDATED "\",\"progress\":0.5}"
#define TAIL "\"capsule_id\":\"cap_456\",\"event_id\":\"" EVENT_ID "\"}"

static void test_la_payloads(void)
{
	cg_config cfg;
	json_object *ev;
	char *t;

	la_cfg(&cfg);
	ev = make_la_event("activity.updated", "investigating", "high", "Suspicious login", "0.5", UPDATED);
	t = la_text(ev, &cfg, "update", NULL);
	is_str(t, "{\"aps\":{\"timestamp\":1699999200,\"event\":\"update\"," CS_HIGH ","
		  "\"stale-date\":1700000600,\"relevance-score\":75}," TAIL,
	       "update payload is exactly the documented shape");
	free(t);
	t = la_text(ev, &cfg, "end", NULL);
	is_str(t, "{\"aps\":{\"timestamp\":1699999200,\"event\":\"end\"," CS_HIGH ","
		  "\"dismissal-date\":1700007200,\"relevance-score\":75}," TAIL,
	       "end payload: dismissal-date, no stale-date");
	free(t);
	t = la_text(ev, NULL, "update", NULL);
	ok(strstr(t, "\"stale-date\":1700003600") != NULL, "NULL cfg: default stale offset 3600");
	free(t);
	t = la_text(ev, NULL, "end", NULL);
	ok(strstr(t, "\"dismissal-date\":1700014400") != NULL, "NULL cfg: default dismissal offset 14400");
	free(t);
	t = la_text(ev, &cfg, "start", "CapsuleAttributes");
	is_str(t, "{\"aps\":{\"timestamp\":1699999200,\"event\":\"start\"," CS_HIGH ","
		  "\"stale-date\":1700000600,\"relevance-score\":75,"
		  "\"alert\":{\"title\":\"Security Alert\",\"body\":\"Suspicious login\",\"sound\":\"default\"},"
		  "\"attributes-type\":\"CapsuleAttributes\",\"attributes\":{\"capsule_id\":\"cap_456\","
		  "\"activity_id\":\"act_123\",\"category\":\"security\"}}," TAIL,
	       "start payload: alert, attributes-type and attributes");
	free(t);
	t = la_text(ev, &cfg, "start", NULL);
	is_str(t, "", "start without attributes type fails");
	free(t);
	t = la_text(ev, &cfg, "start", "");
	is_str(t, "", "start with an empty attributes type fails");
	free(t);
	t = la_text(ev, &cfg, "pause", NULL);
	is_str(t, "", "unknown event fails");
	free(t);
	t = la_text(ev, &cfg, NULL, NULL);
	is_str(t, "", "NULL event fails");
	free(t);
	json_object_put(ev);

	/* critical: alert on update, none on end */
	ev = make_la_event("activity.updated", "mitigating", "critical", "", NULL, UPDATED);
	t = la_text(ev, &cfg, "update", NULL);
	is_str(t, "{\"aps\":{\"timestamp\":1699999200,\"event\":\"update\",\"content-state\":{"
		  "\"state\":\"mitigating\",\"title\":\"Security Alert\",\"priority\":\"critical\","
		  "\"version\":4,\"updated_at\":\"" UPDATED "\"},\"stale-date\":1700000600,"
		  "\"relevance-score\":100,\"alert\":{\"title\":\"Security Alert\",\"sound\":\"default\"}}," TAIL,
	       "critical update: alert without body (empty message), no message, no progress");
	free(t);
	t = la_text(ev, &cfg, "end", NULL);
	ok(strstr(t, "\"alert\"") == NULL && strstr(t, "\"dismissal-date\":1700007200") != NULL,
	   "critical end: no alert");
	free(t);
	json_object_put(ev);
}

static void test_la_timestamp(void)
{
	static const struct {
		const char *updated_at; /* NULL: absent */
		long long want;
	} rows[] = {
		{ "2023-11-14T22:00:00Z", 1699999200 },
		{ "2023-11-14T22:00:00.123456Z", 1699999200 },
		{ "2023-11-14T23:00:00+01:00", 1699999200 },
		{ "2023-11-14T21:00:00-01:00", 1699999200 },
		{ "2023-11-14T22:13:20Z", NOW },
		{ "2023-11-14T22:13:21Z", NOW },     /* future: now */
		{ "2030-01-01T00:00:00Z", NOW },
		{ "2023-11-14 22:00:00Z", NOW },     /* garbage: now */
		{ "2023-11-14T22:00:00", NOW },
		{ "2023-11-14T25:00:00Z", NOW },
		{ "2023-11-14T22:00:00Zjunk", NOW },
		{ "yesterday", NOW },
		{ "", NOW },
		{ NULL, NOW },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_object *ev = make_la_event("activity.updated", "active", "low", "m", NULL, rows[i].updated_at);
		char *t = la_text(ev, NULL, "update", NULL);
		json_object *p = json_tokener_parse(t);

		is_int(json_object_get_int64(at(p, "aps", "timestamp", NULL)), rows[i].want, "timestamp of \"%s\"",
		       rows[i].updated_at ? rows[i].updated_at : "(absent)");
		json_object_put(p);
		free(t);
		json_object_put(ev);
	}
}

static void test_la_progress(void)
{
	static const struct {
		const char *progress; /* JSON text; NULL: no metadata */
		double want;          /* -1: absent */
	} rows[] = {
		{ "0", 0 }, { "0.25", 0.25 }, { "1", 1 }, { "1.0", 1 }, { "50", 0.5 }, { "100", 1 },
		{ "12.5", 0.125 }, { "100.5", -1 }, { "-0.1", -1 }, { "\"0.5\"", -1 }, { "true", -1 },
		{ "null", -1 }, { "[0.5]", -1 }, { NULL, -1 },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_object *ev = make_la_event("activity.updated", "active", "low", "m", rows[i].progress, NULL);
		char *t = la_text(ev, NULL, "update", NULL);
		json_object *p = json_tokener_parse(t);
		json_object *v = at(p, "aps", "content-state", "progress");

		if (rows[i].want < 0)
			ok(p != NULL && v == NULL, "progress %s: absent", rows[i].progress ? rows[i].progress : "-");
		else
			ok(v != NULL && json_object_is_type(v, json_type_double) &&
			   json_object_get_double(v) == rows[i].want, "progress %s -> %g", rows[i].progress,
			   rows[i].want);
		json_object_put(p);
		free(t);
		json_object_put(ev);
	}
}

static void test_la_truncation(void)
{
	static const struct {
		const char *event;
		const char *priority;
		int alert;
	} kinds[] = {
		{ "update", "high", 0 },
		{ "update", "critical", 1 },
		{ "start", "critical", 1 },
		{ "end", "low", 0 },
	};
	cg_config cfg;
	size_t k, i;

	la_cfg(&cfg);
	for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		for (i = 0; i < CUT_ROWS; i++) {
			char *body, *title, *t;
			json_object *ev, *p;
			const char *cm, *ct;
			char what[32];

			cut_texts(i, "Security Alert", &body, &title);
			ev = make_la_event("activity.updated", "active", kinds[k].priority, body, "0.5", NULL);
			snprintf(what, sizeof what, "LA %s/%s", kinds[k].event, kinds[k].priority);
			json_object_object_add(at(ev, "data", NULL, NULL), "title", json_object_new_string(title));
			t = la_text(ev, &cfg, kinds[k].event, "CapsuleAttributes");
			p = json_tokener_parse(t);
			cm = at_str(p, "aps", "content-state", "message");
			ct = at_str(p, "aps", "content-state", "title");
			ok(p != NULL, "%s %zu: builds", what, i);
			cut_check(what, i, strlen(t), APNS_PAYLOAD_MAX, cm, ct, body, title);
			if (kinds[k].alert) {
				is_str(at_str(p, "aps", "alert", "body"), cm, "%s %zu: alert body = message", what, i);
				is_str(at_str(p, "aps", "alert", "title"), ct, "%s %zu: alert title = title", what, i);
			} else {
				ok(at(p, "aps", "alert", NULL) == NULL, "%s %zu: no alert", what, i);
			}
			ok(at(p, "aps", "content-state", "progress") != NULL, "%s %zu: the rest survives", what, i);
			json_object_put(p);
			free(t);
			json_object_put(ev);
			free(body);
			free(title);
		}
	}
}

/* Provider-token rules: reuse, refresh at 50 minutes, never within 20. */
static void test_token_rules(void)
{
	static const struct {
		long long age_s;
		int expired;
		apns_token_decision want;
		const char *why;
	} t[] = {
		{ -1, 0, APNS_TOKEN_REMINT, "no token yet: mint one" },
		{ 0, 0, APNS_TOKEN_KEEP, "a fresh token is reused" },
		{ 19 * 60 + 59, 0, APNS_TOKEN_KEEP, "19:59 old: reused" },
		{ 30 * 60, 0, APNS_TOKEN_KEEP, "30 minutes old: still reused" },
		{ 50 * 60 - 1, 0, APNS_TOKEN_KEEP, "just under 50 minutes: reused" },
		{ 50 * 60, 0, APNS_TOKEN_REMINT, "50 minutes old: refreshed (inside Apple's 60)" },
		{ 59 * 60, 0, APNS_TOKEN_REMINT, "59 minutes old: refreshed" },
		{ 0, 1, APNS_TOKEN_KEEP, "ExpiredProviderToken on a fresh token: clock skew, kept" },
		{ 20 * 60 - 1, 1, APNS_TOKEN_KEEP, "ExpiredProviderToken under 20 minutes: kept (no update storm)" },
		{ 20 * 60, 1, APNS_TOKEN_REMINT, "ExpiredProviderToken at 20 minutes: re-minted" },
		{ 45 * 60, 1, APNS_TOKEN_REMINT, "ExpiredProviderToken at 45 minutes: re-minted" },
	};
	size_t i;

	for (i = 0; i < sizeof t / sizeof t[0]; i++)
		is_int(apns_token_decide(t[i].age_s, t[i].expired), t[i].want, "%s", t[i].why);
}

int main(void)
{
	test_exact_payload();
	test_priorities();
	test_collapse_id();
	test_apns_id();
	test_custom_keys_and_category();
	test_truncation();
	test_classify();
	test_error_parse();
	test_configured_expirations();
	test_push_types();
	test_push_kind();
	test_background();
	test_la_event();
	test_la_should_start();
	test_la_payloads();
	test_la_timestamp();
	test_la_progress();
	test_la_truncation();
	test_token_rules();
	return done_testing();
}

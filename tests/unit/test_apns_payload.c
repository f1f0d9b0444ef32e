/* test_apns_payload: APNs payload, header values and response classes, as tables. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "tap.h"
#include "apns_payload.h"
#include "cg_json.h"

#define NOW 1700000000L
#define EVENT_ID "0b5f3f0e-6c1d-4c55-9d1e-2f8a1b9c7d10"
#define ELL "\xe2\x80\xa6"

/* An activity.created event with the given activity fields (NULL: absent). */
static json_object *make_event(const char *capsule_id, const char *title, const char *message,
			       const char *priority, const char *category)
{
	json_object *ev = json_object_new_object();
	json_object *data = json_object_new_object();

	json_object_object_add(ev, "event_id", json_object_new_string(EVENT_ID));
	json_object_object_add(ev, "type", json_object_new_string("activity.created"));
	json_object_object_add(ev, "tenant", json_object_new_string("default"));
	json_object_object_add(ev, "user_id", json_object_new_string("user_789"));
	json_object_object_add(ev, "capsule_id", json_object_new_string(capsule_id));
	json_object_object_add(ev, "version", json_object_new_int(1));
	json_object_object_add(data, "activity_id", json_object_new_string("act_123"));
	json_object_object_add(data, "capsule_id", json_object_new_string(capsule_id));
	if (title)
		json_object_object_add(data, "title", json_object_new_string(title));
	if (message)
		json_object_object_add(data, "message", json_object_new_string(message));
	if (priority)
		json_object_object_add(data, "priority", json_object_new_string(priority));
	if (category)
		json_object_object_add(data, "category", json_object_new_string(category));
	json_object_object_add(ev, "data", data);
	return ev;
}

/* Builds the payload of ev and parses it back (NULL on any failure). */
static json_object *build_parse(json_object *ev, size_t *len_out)
{
	char *text = NULL;
	size_t len = 0;
	json_object *p;

	if (apns_payload_build(ev, &text, &len) != 0)
		return NULL;
	if (len_out)
		*len_out = len;
	p = json_tokener_parse(text);
	if (p != NULL && strlen(text) != len) {
		json_object_put(p);
		p = NULL;
	}
	free(text);
	return p;
}

/* Member at a path of up to three keys, or NULL. */
static json_object *at(json_object *o, const char *k1, const char *k2, const char *k3)
{
	const char *keys[3] = { k1, k2, k3 };
	int i;

	for (i = 0; i < 3 && keys[i] && o; i++)
		if (!json_object_object_get_ex(o, keys[i], &o))
			return NULL;
	return o;
}

static const char *at_str(json_object *o, const char *k1, const char *k2, const char *k3)
{
	o = at(o, k1, k2, k3);
	return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

static void test_exact_payload(void)
{
	json_object *ev = make_event("cap_456", "Security Alert", "Suspicious login", "high", "security");
	char *text = NULL;
	size_t len = 0;
	const char *want =
		"{\"aps\":{\"alert\":{\"title\":\"Security Alert\",\"body\":\"Suspicious login\"},"
		"\"sound\":\"default\",\"thread-id\":\"cap_456\",\"category\":\"security\","
		"\"interruption-level\":\"time-sensitive\"},\"capsule_id\":\"cap_456\","
		"\"activity_id\":\"act_123\",\"event_id\":\"" EVENT_ID "\",\"priority\":\"high\"}";

	ok(apns_payload_build(ev, &text, &len) == 0, "payload builds");
	is_str(text, want, "payload is exactly the documented shape");
	is_int((long long)len, (long long)strlen(want), "length reported");
	free(text);
	json_object_put(ev);
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

/* A string of `prefix` ASCII bytes then `unit` repeated until `total` bytes. */
static char *make_text(size_t prefix, const char *unit, size_t total)
{
	char *s = malloc(total + 8);
	size_t n = 0, u = strlen(unit);

	memset(s, 'x', prefix);
	n = prefix;
	while (n + u <= total) {
		memcpy(s + n, unit, u);
		n += u;
	}
	s[n] = '\0';
	return s;
}

static void test_truncation(void)
{
	static const struct {
		size_t prefix;
		const char *unit;
		size_t body_len;
		size_t title_len; /* of "T" repeated; 0: "Title" */
	} rows[] = {
		{ 0, "a", 5000, 0 },
		{ 0, "\xc3\xa9", 6000, 0 },            /* é: 2 bytes */
		{ 1, "\xc3\xa9", 6000, 0 },
		{ 0, "\xe2\x82\xac", 6000, 0 },        /* €: 3 bytes */
		{ 1, "\xe2\x82\xac", 6000, 0 },
		{ 2, "\xe2\x82\xac", 6000, 0 },
		{ 0, "\xf0\x9f\x98\x80", 9000, 0 },    /* 😀: 4 bytes */
		{ 1, "\xf0\x9f\x98\x80", 9000, 0 },
		{ 2, "\xf0\x9f\x98\x80", 9000, 0 },
		{ 3, "\xf0\x9f\x98\x80", 9000, 0 },
		{ 0, "\"", 5000, 0 },                   /* escaped: 2 bytes each */
		{ 0, "\x01", 5000, 0 },                 /* escaped: 6 bytes each */
		{ 0, "a\xe2\x82\xac", 65536, 500 },    /* the largest message + long title */
		{ 0, "a", 4000, 6000 },                 /* title alone too long */
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char *body = make_text(rows[i].prefix, rows[i].unit, rows[i].body_len);
		char *title = rows[i].title_len ? make_text(0, "T", rows[i].title_len) : strdup("Title");
		json_object *ev = make_event("cap_t", title, body, "critical", "security");
		size_t len = 0, bl;
		json_object *p = build_parse(ev, &len);
		const char *b = at_str(p, "aps", "alert", "body");
		const char *t = at_str(p, "aps", "alert", "title");

		ok(p != NULL, "row %zu: payload builds and is JSON", i);
		ok(len <= APNS_PAYLOAD_MAX, "row %zu: payload %zu <= 4096 bytes", i, len);
		ok(len > APNS_PAYLOAD_MAX - 16 || b == NULL, "row %zu: payload is not cut more than needed (%zu)", i, len);
		if (b != NULL) {
			bl = strlen(b);
			ok(cg_utf8_valid(b, bl), "row %zu: truncated body is valid UTF-8", i);
			ok(bl >= 3 && strcmp(b + bl - 3, ELL) == 0, "row %zu: body ends with an ellipsis", i);
			ok(bl >= 3 && strncmp(b, body, bl - 3) == 0, "row %zu: body is a prefix of the message", i);
			is_str(t, title, "row %zu: title kept whole", i);
		} else {
			size_t tl = t ? strlen(t) : 0;

			ok(t != NULL && cg_utf8_valid(t, tl) && tl < strlen(title) &&
			   strcmp(t + tl - 3, ELL) == 0, "row %zu: title cut with an ellipsis, body gone", i);
		}
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
	return done_testing();
}

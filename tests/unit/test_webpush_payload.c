/* test_webpush_payload: Web Push notification JSON, header values, Retry-After and response classes. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "tap.h"
#include "webpush_payload.h"
#include "cg_json.h"
#include "cg_webpush.h"
#include "payload_check.h"

#define NOW 1700000000L /* Tue, 14 Nov 2023 22:13:20 GMT */

/* An event of `type` with the given activity fields (NULL: absent), state
 * "active" and metadata.url `url`. */
static json_object *make_event(const char *type, const char *capsule_id, const char *title,
			       const char *message, const char *priority, const char *url)
{
	json_object *ev = make_activity_event(type, capsule_id, 3, title, message, priority);
	json_object *data = at(ev, "data", NULL, NULL);

	json_object_object_add(data, "state", json_object_new_string("active"));
	if (url) {
		json_object *meta = json_object_new_object();

		json_object_object_add(meta, "url", json_object_new_string(url));
		json_object_object_add(data, "metadata", meta);
	}
	return ev;
}

#define build_parse(ev, len_out) build_parse_with(webpush_payload_build, ev, len_out)

/* -1: absent or not a boolean, else 0/1. */
static int at_bool(json_object *o, const char *k1)
{
	o = at(o, k1, NULL, NULL);
	return o && json_object_is_type(o, json_type_boolean) ? json_object_get_boolean(o) : -1;
}

static void test_exact_payload(void)
{
	json_object *ev = make_event("activity.created", "cap_456", "Security Alert", "Suspicious login",
				     "high", "https://console.example.com/a/cap_456");
	const char *want =
		"{\"title\":\"Security Alert\",\"body\":\"Suspicious login\",\"tag\":\"cap_456\","
		"\"renotify\":true,\"data\":{\"capsule_id\":\"cap_456\",\"activity_id\":\"act_123\","
		"\"event_id\":\"" EVENT_ID "\",\"type\":\"activity.created\",\"priority\":\"high\","
		"\"state\":\"active\",\"version\":3,\"url\":\"https://console.example.com/a/cap_456\"}}";

	check_exact(webpush_payload_build, ev, want, "notification");
}

static void test_flags(void)
{
	static const struct {
		const char *type;
		const char *capsule_id;
		const char *priority;
		int renotify;      /* -1: absent */
		int require;       /* -1: absent */
		const char *tag;   /* NULL: absent */
		const char *prio;  /* data.priority */
	} rows[] = {
		{ "activity.created", "cap_1", "low", 1, -1, "cap_1", "low" },
		{ "activity.created", "cap_1", "critical", 1, 1, "cap_1", "critical" },
		{ "activity.updated", "cap_1", "medium", 0, -1, "cap_1", "medium" },
		{ "activity.updated", "cap_1", "high", 0, -1, "cap_1", "high" },
		{ "activity.updated", "cap_1", "critical", 1, 1, "cap_1", "critical" },
		{ "activity.updated", "cap_1", NULL, 0, -1, "cap_1", "medium" },
		{ "activity.updated", "cap_1", "bogus", 0, -1, "cap_1", "medium" },
		{ "activity.created", "", "critical", -1, 1, NULL, "critical" },
		{ "gateway.config.updated", "", "low", -1, -1, NULL, "low" },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_object *ev = make_event(rows[i].type, rows[i].capsule_id, "T", "B", rows[i].priority, NULL);
		json_object *p = build_parse(ev, NULL);

		ok(p != NULL, "row %zu: builds", i);
		is_int(at_bool(p, "renotify"), rows[i].renotify, "row %zu: renotify", i);
		is_int(at_bool(p, "requireInteraction"), rows[i].require, "row %zu: requireInteraction", i);
		is_str(at_str(p, "tag", NULL, NULL), rows[i].tag, "row %zu: tag", i);
		is_str(at_str(p, "data", "priority", NULL), rows[i].prio, "row %zu: data.priority", i);
		is_str(at_str(p, "data", "type", NULL), rows[i].type, "row %zu: data.type", i);
		json_object_put(p);
		json_object_put(ev);
	}

	{
		json_object *ev = make_event("activity.updated", "cap_2", NULL, "", "medium", NULL);
		json_object *p = build_parse(ev, NULL);

		is_str(at_str(p, "title", NULL, NULL), "activity.updated", "absent title falls back to the type");
		ok(at(p, "body", NULL, NULL) == NULL, "empty message: no body");
		ok(at(p, "data", "url", NULL) == NULL, "no metadata.url: no data.url");
		json_object_put(p);
		json_object_put(ev);
	}
}

static void test_url(void)
{
	static const struct {
		const char *url;
		int kept;
	} rows[] = {
		{ "https://console.example.com/x?y=1#z", 1 },
		{ "HTTPS://console.example.com/", 1 },
		{ "/activities/cap_1", 1 },
		{ "/", 1 },
		{ "https://", 0 },
		{ "http://console.example.com/", 0 },
		{ "javascript:alert(1)", 0 },
		{ "//evil.example.com/", 0 },
		{ "/\\evil.example.com/", 0 },
		{ "https://a.example.com/with space", 0 },
		{ "https://a.example.com/\x01", 0 },
		{ "https://a.example.com/\xc3\xa9", 0 },
		{ "relative/path", 0 },
		{ "", 0 },
	};
	size_t i;
	char *big;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_object *ev = make_event("activity.created", "cap_1", "T", "B", "low", rows[i].url);
		json_object *p = build_parse(ev, NULL);

		is_str(at_str(p, "data", "url", NULL), rows[i].kept ? rows[i].url : NULL, "url %zu kept: %d", i,
		       rows[i].kept);
		json_object_put(p);
		json_object_put(ev);
	}
	big = malloc(WEBPUSH_URL_MAX + 2);
	memcpy(big, "https://", 8);
	memset(big + 8, 'a', WEBPUSH_URL_MAX - 8);
	big[WEBPUSH_URL_MAX] = '\0';
	{
		json_object *ev = make_event("activity.created", "cap_1", "T", "B", "low", big);
		json_object *p = build_parse(ev, NULL);

		is_str(at_str(p, "data", "url", NULL), big, "url of WEBPUSH_URL_MAX bytes kept");
		json_object_put(p);
		json_object_put(ev);
		big[WEBPUSH_URL_MAX] = 'a';
		big[WEBPUSH_URL_MAX + 1] = '\0';
		ev = make_event("activity.created", "cap_1", "T", "B", "low", big);
		p = build_parse(ev, NULL);
		ok(p != NULL && at(p, "data", "url", NULL) == NULL, "url one byte longer left out");
		json_object_put(p);
		json_object_put(ev);
	}
	{
		/* metadata.url that is not a string */
		json_object *ev = make_event("activity.created", "cap_1", "T", "B", "low", NULL);
		json_object *meta = json_object_new_object(), *data = at(ev, "data", NULL, NULL), *p;

		json_object_object_add(meta, "url", json_object_new_int(5));
		json_object_object_add(data, "metadata", meta);
		p = build_parse(ev, NULL);
		ok(p != NULL && at(p, "data", "url", NULL) == NULL, "non-string metadata.url left out");
		json_object_put(p);
		json_object_put(ev);
	}
	free(big);
}

static void test_ttl_urgency(void)
{
	cg_config cfg;
	static const struct {
		const char *priority;
		long ttl_default;
		long ttl_cfg;
		const char *urgency;
	} rows[] = {
		{ "low", 3600, 11, "low" },
		{ "medium", 86400, 22, "normal" },
		{ "high", 86400, 33, "high" },
		{ "critical", 86400, 44, "high" },
		{ NULL, 86400, 22, "normal" },
		{ "bogus", 86400, 22, "normal" },
		{ "LOW", 86400, 22, "normal" },
	};
	size_t i;

	memset(&cfg, 0, sizeof cfg);
	cfg.push_expiration_low = 11;
	cfg.push_expiration_medium = 22;
	cfg.push_expiration_high = 33;
	cfg.push_expiration_critical = 44;
	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const char *name = rows[i].priority ? rows[i].priority : "(absent)";
		json_object *ev = make_event("activity.created", "cap_1", "T", "B", rows[i].priority, NULL);
		webpush_headers h;

		is_int(webpush_ttl(NULL, rows[i].priority), rows[i].ttl_default, "%s: default TTL", name);
		is_int(webpush_ttl(&cfg, rows[i].priority), rows[i].ttl_cfg, "%s: configured TTL", name);
		is_str(webpush_urgency(rows[i].priority), rows[i].urgency, "%s: Urgency", name);
		webpush_headers_build(ev, &cfg, &h);
		is_int(h.ttl, rows[i].ttl_cfg, "%s: headers TTL", name);
		is_str(h.urgency, rows[i].urgency, "%s: headers Urgency", name);
		json_object_put(ev);
	}
	cfg.push_expiration_critical = 0;
	is_int(webpush_ttl(&cfg, "critical"), 0, "TTL 0 configured stays 0");
}

static int topic_shaped(const char *t)
{
	size_t i;

	if (strlen(t) != WEBPUSH_TOPIC_LEN)
		return 0;
	for (i = 0; t[i]; i++)
		if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z') ||
		      (t[i] >= '0' && t[i] <= '9') || t[i] == '-' || t[i] == '_'))
			return 0;
	return 1;
}

static void test_topic(void)
{
	char a[WEBPUSH_TOPIC_LEN + 1], b[WEBPUSH_TOPIC_LEN + 1], c[WEBPUSH_TOPIC_LEN + 1];
	char long_id[256];
	const char *const ids[] = { "cap_456", "a", "cap.with:colons-and_more", long_id,
				    "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80", "0" };
	size_t i;
	json_object *ev;
	webpush_headers h;

	memset(long_id, 'z', 255);
	long_id[255] = '\0';
	webpush_topic("cap_456", a);
	is_str(a, "opbqVuaFAc-NqprUwACzICkgi3j9Vr3n", "Topic of cap_456 is b64url(SHA-256[0..24))");
	webpush_topic("a", a);
	is_str(a, "ypeBEsobvcr6wjGzmiPcTaeG7_gUfE5y", "Topic of \"a\"");
	for (i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		webpush_topic(ids[i], a);
		webpush_topic(ids[i], b);
		ok(topic_shaped(a), "id %zu: Topic is 32 base64url characters (%s)", i, a);
		is_str(a, b, "id %zu: Topic is deterministic", i);
	}
	webpush_topic("cap_1", a);
	webpush_topic("cap_2", c);
	ok(strcmp(a, c) != 0, "different capsules, different Topics");
	webpush_topic("", a);
	is_str(a, "", "empty capsule id: no Topic");
	webpush_topic(NULL, a);
	is_str(a, "", "NULL capsule id: no Topic");

	ev = make_event("activity.updated", "cap_456", "T", "B", "low", NULL);
	webpush_headers_build(ev, NULL, &h);
	is_str(h.topic, "opbqVuaFAc-NqprUwACzICkgi3j9Vr3n", "headers: Topic from the capsule id");
	json_object_put(ev);
	ev = make_event("activity.updated", "", "T", "B", "low", NULL);
	webpush_headers_build(ev, NULL, &h);
	is_str(h.topic, "", "headers: no capsule id, no Topic");
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
		ev = make_event("activity.created", "cap_t", title, body, "critical", "https://example.com/");
		p = build_parse(ev, &len);

		ok(p != NULL, "row %zu: payload builds and is JSON", i);
		cut_check("row", i, len, CG_WEBPUSH_MAX_PLAINTEXT, at_str(p, "body", NULL, NULL),
			  at_str(p, "title", NULL, NULL), body, title);
		is_str(at_str(p, "data", "event_id", NULL), EVENT_ID, "row %zu: data survives", i);
		is_int(at_bool(p, "requireInteraction"), 1, "row %zu: flags survive", i);
		json_object_put(p);
		json_object_put(ev);
		free(body);
		free(title);
	}
	{
		/* A message that fits exactly is not cut. */
		json_object *ev = make_event("activity.created", "cap_t", "T", "", "low", NULL);
		size_t base = 0, len = 0;
		json_object *p = build_parse(ev, &base);
		char *body;

		json_object_put(p);
		json_object_put(ev);
		/* "body":"..." adds 10 bytes plus the text */
		body = make_text(0, "b", CG_WEBPUSH_MAX_PLAINTEXT - base - 10);
		ev = make_event("activity.created", "cap_t", "T", body, "low", NULL);
		p = build_parse(ev, &len);
		is_int((long long)len, CG_WEBPUSH_MAX_PLAINTEXT, "a payload of exactly 3993 bytes");
		is_str(at_str(p, "body", NULL, NULL), body, "is not cut");
		json_object_put(p);
		json_object_put(ev);
		free(body);
	}
}

static void test_retry_after(void)
{
	static const struct {
		const char *value;
		long want;
	} rows[] = {
		{ "120", 120 },
		{ "0", 0 },
		{ " 30\t", 30 },
		{ "3600", 3600 },
		{ "3601", 3600 },
		{ "99999999999999999999999999", 3600 },
		{ "Tue, 14 Nov 2023 22:15:20 GMT", 120 },
		{ "Tuesday, 14-Nov-23 22:15:20 GMT", 120 },
		{ "Tue Nov 14 22:15:20 2023", 120 },
		{ "Tue, 14 Nov 2023 22:13:20 GMT", 0 },
		{ "Sun, 06 Nov 1994 08:49:37 GMT", 0 },
		{ "Sunday, 06-Nov-94 08:49:37 GMT", 0 },
		{ "Sun Nov  6 08:49:37 1994", 0 },
		{ "Fri, 01 Jan 2100 00:00:00 GMT", 3600 },
		{ "Wed, 15 Nov 2023 00:00:00 GMT", 3600 },
		{ "", -1 },
		{ "   ", -1 },
		{ "-5", -1 },
		{ "+5", -1 },
		{ "1.5", -1 },
		{ "120abc", -1 },
		{ "abc", -1 },
		{ "Tue, 14 Nov 2023 22:15:20 UTC", -1 },
		{ "Tue, 14 Foo 2023 22:15:20 GMT", -1 },
		{ "Tue, 32 Nov 2023 22:15:20 GMT", -1 },
		{ "Tue, 14 Nov 2023 25:15:20 GMT", -1 },
		{ "Tue, 14 Nov 2023 22:-1:20 GMT", -1 },
		{ "Tue, 14 Nov 2023 22:15:20 GMT extra", -1 },
		{ "Tue,14 Nov 2023 22:15:20 GMT", -1 },
		{ "Tue, 14 Nov 2023 22:15 GMT", -1 },
		{ "2023-11-14T22:15:20Z", -1 },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++)
		is_int(webpush_retry_after(rows[i].value, NOW, WEBPUSH_RETRY_AFTER_MAX_S), rows[i].want,
		       "Retry-After \"%s\"", rows[i].value);
	is_int(webpush_retry_after(NULL, NOW, 3600), -1, "Retry-After absent");
	is_int(webpush_retry_after("50", NOW, 10), 10, "Retry-After capped by the caller's cap");
}

static void test_classify(void)
{
	static const struct {
		int transport_ok;
		long status;
		const char *retry_after;
		webpush_action want;
		long delay;
	} rows[] = {
		{ 1, 200, NULL, WEBPUSH_ACT_DONE, -1 },
		{ 1, 201, NULL, WEBPUSH_ACT_DONE, -1 },
		{ 1, 202, NULL, WEBPUSH_ACT_DONE, -1 },
		{ 1, 204, NULL, WEBPUSH_ACT_DONE, -1 },
		{ 1, 404, NULL, WEBPUSH_ACT_DELETE, -1 },
		{ 1, 410, "60", WEBPUSH_ACT_DELETE, -1 },
		{ 1, 429, "60", WEBPUSH_ACT_RETRY, 60 },
		{ 1, 429, "Tue, 14 Nov 2023 22:15:20 GMT", WEBPUSH_ACT_RETRY, 120 },
		{ 1, 429, "86400", WEBPUSH_ACT_RETRY, WEBPUSH_RETRY_AFTER_MAX_S },
		{ 1, 429, "soon", WEBPUSH_ACT_RETRY, -1 },
		{ 1, 429, NULL, WEBPUSH_ACT_RETRY, -1 },
		{ 1, 500, "60", WEBPUSH_ACT_RETRY, -1 },
		{ 1, 502, NULL, WEBPUSH_ACT_RETRY, -1 },
		{ 1, 503, "30", WEBPUSH_ACT_RETRY, 30 },
		{ 1, 503, NULL, WEBPUSH_ACT_RETRY, -1 },
		{ 1, 504, NULL, WEBPUSH_ACT_RETRY, -1 },
		{ 1, 400, NULL, WEBPUSH_ACT_DROP, -1 },
		{ 1, 401, NULL, WEBPUSH_ACT_DROP, -1 },
		{ 1, 403, NULL, WEBPUSH_ACT_DROP, -1 },
		{ 1, 413, NULL, WEBPUSH_ACT_DROP, -1 },
		{ 1, 301, NULL, WEBPUSH_ACT_DROP, -1 },
		{ 1, 405, NULL, WEBPUSH_ACT_DROP, -1 },
		{ 1, 501, NULL, WEBPUSH_ACT_DROP, -1 },
		{ 1, 100, NULL, WEBPUSH_ACT_DROP, -1 },
		{ 0, 0, NULL, WEBPUSH_ACT_RETRY, -1 },
		{ 0, 201, NULL, WEBPUSH_ACT_RETRY, -1 },
		{ 1, 0, NULL, WEBPUSH_ACT_RETRY, -1 },
	};
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		long delay = 12345;
		webpush_action a = webpush_response_classify(rows[i].transport_ok, rows[i].status,
							     rows[i].retry_after, NOW, &delay);

		is_str(webpush_action_name(a), webpush_action_name(rows[i].want), "classify %s %ld %s",
		       rows[i].transport_ok ? "ok" : "transport-error", rows[i].status,
		       rows[i].retry_after ? rows[i].retry_after : "-");
		is_int(delay, rows[i].delay, "classify %s %ld: delay", rows[i].transport_ok ? "ok" : "transport-error",
		       rows[i].status);
	}
	ok(webpush_response_classify(1, 429, "5", NOW, NULL) == WEBPUSH_ACT_RETRY, "delay_s may be NULL");
	is_str(webpush_action_name((webpush_action)99), "?", "unknown action name");
}

int main(void)
{
	test_exact_payload();
	test_flags();
	test_url();
	test_ttl_urgency();
	test_topic();
	test_truncation();
	test_retry_after();
	test_classify();
	return done_testing();
}

/* webpush_payload: Web Push notification JSON, TTL/Urgency/Topic values and response classes (pure). */
#define _GNU_SOURCE /* timegm */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "webpush_payload.h"
#include "apns_payload.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_util.h"
#include "cg_webpush.h"

long webpush_ttl(const cg_config *cfg, const char *priority)
{
	return apns_expiration_s(cfg, priority);
}

const char *webpush_urgency(const char *priority)
{
	return apns_prio_lookup(priority)->web_urgency;
}

void webpush_topic(const char *capsule_id, char out[WEBPUSH_TOPIC_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	out[0] = '\0';
	if (capsule_id == NULL || *capsule_id == '\0')
		return;
	if (EVP_Digest(capsule_id, strlen(capsule_id), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 24)
		return;
	/* 24 bytes are 32 base64url characters, no padding. */
	if (cg_b64url_encode(md, 24, out, WEBPUSH_TOPIC_LEN + 1) != WEBPUSH_TOPIC_LEN)
		out[0] = '\0';
}

/* The activity object of an event (NULL when absent). */
static json_object *event_data(json_object *ev)
{
	json_object *d = NULL;

	return ev != NULL && cg_json_get_object(ev, "data", &d) == CG_JSON_OK ? d : NULL;
}

/* The capsule id: the event's own field, else the activity's. */
static const char *event_capsule_id(json_object *ev)
{
	const char *c = cg_event_str(ev, "capsule_id");

	return *c ? c : cg_event_str(event_data(ev), "capsule_id");
}

void webpush_headers_build(json_object *ev, const cg_config *cfg, webpush_headers *h)
{
	const char *priority = cg_event_str(event_data(ev), "priority");

	h->ttl = webpush_ttl(cfg, priority);
	h->urgency = webpush_urgency(priority);
	webpush_topic(event_capsule_id(ev), h->topic);
}

/* metadata.url when it may be opened (see the header), else "". */
static const char *activity_url(json_object *data)
{
	json_object *meta = NULL;
	const char *u;
	size_t i, n;

	if (data == NULL || cg_json_get_object(data, "metadata", &meta) != CG_JSON_OK)
		return "";
	u = cg_event_str(meta, "url");
	n = strlen(u);
	if (n == 0 || n > WEBPUSH_URL_MAX)
		return "";
	for (i = 0; i < n; i++)
		if (u[i] <= 0x20 || u[i] >= 0x7f)
			return "";
	if (strncasecmp(u, "https://", 8) == 0 && n > 8)
		return u;
	if (u[0] == '/' && u[1] != '/' && u[1] != '\\')
		return u;
	return "";
}

/* Adds key = val to obj when val is not empty. Returns 0 or -1. */
static int add_str(json_object *obj, const char *key, const char *val)
{
	return *val == '\0' ? 0 : cg_json_add_string(obj, key, val);
}

static int add_bool(json_object *obj, const char *key, int val)
{
	json_object *v = json_object_new_boolean(val);

	if (v == NULL || json_object_object_add(obj, key, v) != 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

int webpush_payload_build(json_object *ev, char **out, size_t *outlen)
{
	json_object *data = event_data(ev);
	const char *title = cg_event_str(data, "title");
	const char *body = cg_event_str(data, "message");
	const char *capsule_id = event_capsule_id(ev);
	const apns_prio *p = apns_prio_lookup(cg_event_str(data, "priority"));
	int critical = strcmp(p->name, "critical") == 0;
	int renotify = critical || strcmp(cg_event_str(ev, "type"), "activity.created") == 0;
	json_object *root, *d = NULL;
	cg_json_slot bslot, tslot;
	int rc = -1, t;

	*out = NULL;
	*outlen = 0;
	if (*title == '\0')
		title = cg_event_str(ev, "type");
	root = json_object_new_object();
	if (root == NULL)
		return -1;
	if (add_str(root, "title", title) < 0 || add_str(root, "body", body) < 0 ||
	    add_str(root, "tag", capsule_id) < 0 ||
	    (*capsule_id && add_bool(root, "renotify", renotify) < 0) ||
	    (critical && add_bool(root, "requireInteraction", 1) < 0))
		goto out;
	d = json_object_new_object();
	if (d == NULL || json_object_object_add(root, "data", d) != 0) {
		json_object_put(d);
		goto out;
	}
	if (add_str(d, "capsule_id", capsule_id) < 0 ||
	    add_str(d, "activity_id", cg_event_str(data, "activity_id")) < 0 ||
	    add_str(d, "event_id", cg_event_str(ev, "event_id")) < 0 ||
	    add_str(d, "type", cg_event_str(ev, "type")) < 0 ||
	    add_str(d, "priority", p->name) < 0 ||
	    add_str(d, "state", cg_event_str(data, "state")) < 0 ||
	    cg_json_add_int64(d, "version", cg_event_int(ev, "version")) < 0 ||
	    add_str(d, "url", activity_url(data)) < 0)
		goto out;
	bslot = (cg_json_slot){ root, "body" };
	tslot = (cg_json_slot){ root, "title" };
	t = cg_json_fit_text(root, CG_WEBPUSH_MAX_PLAINTEXT, &bslot, 1, body, strlen(body));
	if (t == 1)
		t = cg_json_fit_text(root, CG_WEBPUSH_MAX_PLAINTEXT, &tslot, 1, title, strlen(title));
	if (t != 0)
		goto out;
	*out = cg_json_compact_dup(root, CG_WEBPUSH_MAX_PLAINTEXT, outlen);
	rc = *out != NULL ? 0 : -1;
out:
	json_object_put(root);
	return rc;
}

static const char *const months[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* Month number 0..11 of a three-letter name (case-sensitive, as RFC 9110
 * writes it), or -1. */
static int month_index(const char *m)
{
	int i;

	for (i = 0; i < 12; i++)
		if (strcmp(months[i], m) == 0)
			return i;
	return -1;
}

/* UTC time of the fields, or -1 when one is out of range. */
static time_t utc_time(int year, int mon, int mday, int hour, int min, int sec)
{
	struct tm tm;

	if (mon < 0 || mon > 11 || mday < 1 || mday > 31 || hour < 0 || hour > 23 || min < 0 ||
	    min > 59 || sec < 0 || sec > 60 || year < 1970 || year > 9999)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = mday;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	return timegm(&tm);
}

/* Parses an HTTP-date (RFC 9110 5.6.7, all three forms); -1 when it is not
 * one. The whole string must match. */
static time_t http_date(const char *s)
{
	char wd[10], mon[4];
	int d, y, h, mi, sec, n = 0;
	size_t len = strlen(s);

	/* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
	if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wd, &d, mon, &y, &h, &mi,
		   &sec, &n) == 7 && (size_t)n == len && len == 29)
		return utc_time(y, month_index(mon), d, h, mi, sec);
	/* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT (two-digit year: 70..99 are 19xx) */
	n = 0;
	if (sscanf(s, "%9[A-Za-z], %2d-%3[A-Za-z]-%2d %2d:%2d:%2d GMT%n", wd, &d, mon, &y, &h, &mi,
		   &sec, &n) == 7 && (size_t)n == len && strlen(wd) >= 6)
		return utc_time(y < 70 ? 2000 + y : 1900 + y, month_index(mon), d, h, mi, sec);
	/* asctime: Sun Nov  6 08:49:37 1994 */
	n = 0;
	if (sscanf(s, "%3[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d %4d%n", wd, mon, &d, &h, &mi, &sec, &y,
		   &n) == 7 && (size_t)n == len && len == 24)
		return utc_time(y, month_index(mon), d, h, mi, sec);
	return -1;
}

long webpush_retry_after(const char *value, time_t now, long cap)
{
	char buf[64];
	size_t a, b, i;
	long long v = 0;
	time_t t;

	if (value == NULL || cap < 0)
		return -1;
	b = strlen(value);
	for (a = 0; a < b && (value[a] == ' ' || value[a] == '\t'); a++)
		;
	while (b > a && (value[b - 1] == ' ' || value[b - 1] == '\t'))
		b--;
	if (b == a || b - a >= sizeof buf)
		return -1;
	memcpy(buf, value + a, b - a);
	buf[b - a] = '\0';
	if (buf[0] >= '0' && buf[0] <= '9') {
		for (i = 0; buf[i]; i++) {
			if (buf[i] < '0' || buf[i] > '9')
				return -1;
			if (v <= cap && v < LLONG_MAX / 10 - 10)
				v = v * 10 + (buf[i] - '0');
		}
		return v > cap ? cap : (long)v;
	}
	t = http_date(buf);
	if (t == (time_t)-1)
		return -1;
	if (t <= now)
		return 0;
	return (long long)(t - now) > cap ? cap : (long)(t - now);
}

webpush_action webpush_response_classify(int transport_ok, long status, const char *retry_after,
					 time_t now, long *delay_s)
{
	long delay = -1;
	webpush_action a;

	if (!transport_ok || status == 0) {
		a = WEBPUSH_ACT_RETRY;
	} else if (status >= 200 && status <= 299) {
		a = WEBPUSH_ACT_DONE;
	} else if (status == 404 || status == 410) {
		a = WEBPUSH_ACT_DELETE;
	} else if (status == 429 || status == 503) {
		a = WEBPUSH_ACT_RETRY;
		delay = webpush_retry_after(retry_after, now, WEBPUSH_RETRY_AFTER_MAX_S);
	} else if (status == 500 || status == 502 || status == 504) {
		a = WEBPUSH_ACT_RETRY;
	} else {
		a = WEBPUSH_ACT_DROP;
	}
	if (delay_s != NULL)
		*delay_s = delay;
	return a;
}

const char *webpush_action_name(webpush_action a)
{
	switch (a) {
	case WEBPUSH_ACT_DONE: return "delivered";
	case WEBPUSH_ACT_DELETE: return "delete-subscription";
	case WEBPUSH_ACT_RETRY: return "retry";
	case WEBPUSH_ACT_DROP: return "dropped";
	}
	return "?";
}

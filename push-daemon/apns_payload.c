/* apns_payload: APNs alert payload, header values and response classes (pure). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apns_payload.h"
#include "cg_event.h"
#include "cg_util.h"

#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 */
#define ELLIPSIS_LEN 3
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static const apns_prio prio_table[] = {
	{ "low", "passive", 5, 3600, 0 },
	{ "medium", "active", 10, 86400, 0 },
	{ "high", "time-sensitive", 10, 86400, 0 },
	{ "critical", "critical", 10, 86400, 1 },
};

const apns_prio *apns_prio_lookup(const char *priority)
{
	size_t i;

	if (priority != NULL)
		for (i = 0; i < sizeof prio_table / sizeof prio_table[0]; i++)
			if (strcmp(prio_table[i].name, priority) == 0)
				return &prio_table[i];
	return &prio_table[1];
}

long long apns_expiration(const char *priority, time_t now)
{
	return (long long)now + apns_prio_lookup(priority)->expiration_s;
}

const char *apns_collapse_id(const char *capsule_id)
{
	size_t n;

	if (capsule_id == NULL)
		return NULL;
	n = strlen(capsule_id);
	return n >= 1 && n <= APNS_COLLAPSE_ID_MAX ? capsule_id : NULL;
}

void apns_id_for(const char *event_id, const char *device_token, char out[37])
{
	/* Event ids are UUIDs and device tokens at most 4096 bytes (schema), so
	 * this never truncates; if it did, the id would still be deterministic. */
	char buf[64 + 1 + 4096 + 1];
	int n = snprintf(buf, sizeof buf, "%s:%s", event_id, device_token);

	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof buf)
		n = (int)sizeof buf - 1;
	cg_uuid_from_hash(buf, (size_t)n, out);
}

/* The activity object of an event (NULL when absent). */
static json_object *event_data(json_object *ev)
{
	json_object *d = NULL;

	if (ev == NULL || !json_object_object_get_ex(ev, "data", &d) ||
	    !json_object_is_type(d, json_type_object))
		return NULL;
	return d;
}

/* String member `key` of `obj`, or "" when absent or not a string. */
static const char *str_member(json_object *obj, const char *key)
{
	json_object *v = NULL;

	if (obj == NULL || !json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

/* The capsule id: the event's own field, else the activity's. */
static const char *event_capsule_id(json_object *ev)
{
	const char *c = str_member(ev, "capsule_id");

	return *c ? c : str_member(event_data(ev), "capsule_id");
}

void apns_headers_build(json_object *ev, const char *device_token, time_t now, apns_headers *h)
{
	const char *priority = str_member(event_data(ev), "priority");
	const char *collapse = apns_collapse_id(event_capsule_id(ev));

	apns_id_for(str_member(ev, "event_id"), device_token, h->apns_id);
	h->apns_priority = apns_prio_lookup(priority)->apns_priority;
	h->expiration = apns_expiration(priority, now);
	if (collapse != NULL)
		snprintf(h->collapse_id, sizeof h->collapse_id, "%s", collapse);
	else
		h->collapse_id[0] = '\0';
}

/* Largest n' <= n that does not split a UTF-8 sequence of s. */
static size_t utf8_floor(const char *s, size_t n)
{
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* Sets alert[key] to the first `n` bytes of `s` (plus "…" when `ell`);
 * n == 0 and no ellipsis removes the key. Returns 0 or -1. */
static int set_text(json_object *alert, const char *key, const char *s, size_t n, int ell)
{
	json_object *v;
	char *tmp;

	if (n == 0 && !ell) {
		json_object_object_del(alert, key);
		return 0;
	}
	tmp = malloc(n + ELLIPSIS_LEN + 1);
	if (tmp == NULL)
		return -1;
	memcpy(tmp, s, n);
	if (ell)
		memcpy(tmp + n, ELLIPSIS, ELLIPSIS_LEN);
	v = json_object_new_string_len(tmp, (int)(n + (ell ? ELLIPSIS_LEN : 0)));
	free(tmp);
	if (v == NULL)
		return -1;
	/* An existing key keeps its place: the payload's order is stable. */
	return json_object_object_add(alert, key, v) == 0 ? 0 : -1;
}

/* Serialised size of `root`, or (size_t)-1 on failure. */
static size_t json_size(json_object *root)
{
	size_t len = 0;

	if (json_object_to_json_string_length(root, JSON_FLAGS, &len) == NULL)
		return (size_t)-1;
	return len;
}

/* Cuts alert[key] (full text s[0..n)) to the longest UTF-8-safe prefix plus
 * "…" that makes `root` fit; when even the bare "…" does not fit, removes
 * the key. Returns 0 when `root` now fits, 1 when it still does not, -1 on
 * failure. */
static int truncate_text(json_object *root, json_object *alert, const char *key,
			 const char *s, size_t n)
{
	size_t lo = 0, hi = n < APNS_PAYLOAD_MAX ? n : APNS_PAYLOAD_MAX, best = 0, sz;
	int found = 0;

	/* Binary search on the cut; utf8_floor is monotonic, so is the size. */
	while (lo <= hi) {
		size_t mid = lo + (hi - lo) / 2, cut = utf8_floor(s, mid);

		if (set_text(alert, key, s, cut, 1) < 0)
			return -1;
		sz = json_size(root);
		if (sz == (size_t)-1)
			return -1;
		if (sz <= APNS_PAYLOAD_MAX) {
			best = cut;
			found = 1;
			lo = mid + 1;
		} else {
			if (mid == 0)
				break;
			hi = mid - 1;
		}
	}
	if (!found) {
		if (set_text(alert, key, s, 0, 0) < 0)
			return -1;
		sz = json_size(root);
		if (sz == (size_t)-1)
			return -1;
		return sz <= APNS_PAYLOAD_MAX ? 0 : 1;
	}
	return set_text(alert, key, s, best, 1) < 0 ? -1 : 0;
}

/* Adds string member key=val to obj when val is not empty. */
static int add_nonempty(json_object *obj, const char *key, const char *val)
{
	json_object *v;

	if (val == NULL || *val == '\0')
		return 0;
	v = json_object_new_string(val);
	if (v == NULL)
		return -1;
	if (json_object_object_add(obj, key, v) != 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

static json_object *critical_sound(void)
{
	json_object *s = json_object_new_object();

	if (s == NULL)
		return NULL;
	if (json_object_object_add(s, "critical", json_object_new_int(1)) != 0 ||
	    json_object_object_add(s, "name", json_object_new_string("default")) != 0 ||
	    json_object_object_add(s, "volume", json_object_new_double(1.0)) != 0) {
		json_object_put(s);
		return NULL;
	}
	return s;
}

int apns_payload_build(json_object *ev, char **out, size_t *outlen)
{
	json_object *data = event_data(ev);
	const char *title = str_member(data, "title");
	const char *body = str_member(data, "message");
	const char *capsule_id = event_capsule_id(ev);
	const apns_prio *p = apns_prio_lookup(str_member(data, "priority"));
	json_object *root = NULL, *aps = NULL, *alert = NULL, *sound;
	const char *text;
	size_t title_len, body_len, len;
	int rc = -1, t;

	*out = NULL;
	*outlen = 0;
	if (*title == '\0')
		title = str_member(ev, "type");
	title_len = strlen(title);
	body_len = strlen(body);

	root = json_object_new_object();
	aps = json_object_new_object();
	alert = json_object_new_object();
	if (root == NULL || aps == NULL || alert == NULL)
		goto out;
	if (set_text(alert, "title", title, title_len, 0) < 0 ||
	    set_text(alert, "body", body, body_len, 0) < 0)
		goto out;
	if (json_object_object_add(aps, "alert", alert) != 0)
		goto out;
	alert = json_object_get(alert); /* aps holds one reference, we keep one */
	sound = p->critical_sound ? critical_sound() : json_object_new_string("default");
	if (sound == NULL || json_object_object_add(aps, "sound", sound) != 0) {
		json_object_put(sound);
		goto out;
	}
	if (add_nonempty(aps, "thread-id", capsule_id) < 0 ||
	    add_nonempty(aps, "category", str_member(data, "category")) < 0 ||
	    add_nonempty(aps, "interruption-level", p->interruption_level) < 0)
		goto out;
	if (json_object_object_add(root, "aps", aps) != 0)
		goto out;
	aps = NULL; /* owned by root now */
	if (add_nonempty(root, "capsule_id", capsule_id) < 0 ||
	    add_nonempty(root, "activity_id", str_member(data, "activity_id")) < 0 ||
	    add_nonempty(root, "event_id", str_member(ev, "event_id")) < 0 ||
	    add_nonempty(root, "priority", p->name) < 0)
		goto out;

	len = json_size(root);
	if (len == (size_t)-1)
		goto out;
	if (len > APNS_PAYLOAD_MAX) {
		t = truncate_text(root, alert, "body", body, body_len);
		if (t == 1)
			t = truncate_text(root, alert, "title", title, title_len);
		if (t != 0)
			goto out;
	}
	text = json_object_to_json_string_length(root, JSON_FLAGS, &len);
	if (text == NULL || len > APNS_PAYLOAD_MAX)
		goto out;
	*out = strndup(text, len);
	if (*out == NULL)
		goto out;
	*outlen = len;
	rc = 0;
out:
	json_object_put(alert);
	json_object_put(aps);
	json_object_put(root);
	return rc;
}

apns_action apns_response_classify(int transport_ok, long status, const char *reason)
{
	if (reason == NULL)
		reason = "";
	if (!transport_ok || status == 0)
		return APNS_ACT_RETRY;
	switch (status) {
	case 200:
		return APNS_ACT_DONE;
	case 400:
		if (strcmp(reason, "BadDeviceToken") == 0 ||
		    strcmp(reason, "DeviceTokenNotForTopic") == 0)
			return APNS_ACT_DEACTIVATE;
		if (strcmp(reason, "IdleTimeout") == 0)
			return APNS_ACT_RETRY;
		return APNS_ACT_DROP;
	case 403:
		if (strcmp(reason, "ExpiredProviderToken") == 0)
			return APNS_ACT_REMINT;
		if (strcmp(reason, "InvalidProviderToken") == 0 ||
		    strcmp(reason, "BadEnvironmentKeyIdInToken") == 0 ||
		    strcmp(reason, "MissingProviderToken") == 0 ||
		    strcmp(reason, "BadCertificate") == 0 ||
		    strcmp(reason, "BadCertificateEnvironment") == 0)
			return APNS_ACT_AUTH_FAILED;
		/* UnrelatedKeyIdInToken: libcurl gives us no say over which
		 * connection a retry uses; with one key per daemon it means a
		 * configuration error as well. */
		if (strcmp(reason, "UnrelatedKeyIdInToken") == 0)
			return APNS_ACT_AUTH_FAILED;
		return APNS_ACT_DROP; /* Forbidden and anything else */
	case 410:
		return APNS_ACT_DEACTIVATE;
	case 429:
		if (strcmp(reason, "TooManyProviderTokenUpdates") == 0)
			return APNS_ACT_TOKEN_BACKOFF;
		return APNS_ACT_RETRY;
	default:
		break;
	}
	if (status >= 500 && status <= 599)
		return APNS_ACT_RETRY;
	return APNS_ACT_DROP; /* 404, 405, 413 and other statuses */
}

const char *apns_action_name(apns_action a)
{
	switch (a) {
	case APNS_ACT_DONE: return "delivered";
	case APNS_ACT_DROP: return "dropped";
	case APNS_ACT_DEACTIVATE: return "deactivate";
	case APNS_ACT_AUTH_FAILED: return "auth-failed";
	case APNS_ACT_RETRY: return "retry";
	case APNS_ACT_REMINT: return "remint";
	case APNS_ACT_TOKEN_BACKOFF: return "token-backoff";
	}
	return "?";
}

void apns_error_parse(const char *body, size_t len, char *reason, size_t reasonlen,
		      long long *timestamp_ms)
{
	json_tokener *tok;
	json_object *obj = NULL, *v = NULL;

	if (reasonlen > 0)
		reason[0] = '\0';
	*timestamp_ms = -1;
	if (body == NULL || len == 0 || len > 64 * 1024)
		return;
	tok = json_tokener_new_ex(8);
	if (tok == NULL)
		return;
	obj = json_tokener_parse_ex(tok, body, (int)len);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(obj, json_type_object))
		goto out;
	if (json_object_object_get_ex(obj, "reason", &v) && json_object_is_type(v, json_type_string) &&
	    reasonlen > 0)
		snprintf(reason, reasonlen, "%s", json_object_get_string(v));
	if (json_object_object_get_ex(obj, "timestamp", &v) &&
	    (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))) {
		long long ts = json_object_get_int64(v);

		if (ts > 0)
			*timestamp_ms = ts;
	}
out:
	json_object_put(obj);
	json_tokener_free(tok);
}

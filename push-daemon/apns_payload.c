/* apns_payload: APNs alert, background and Live Activity payloads, header values and response classes (pure). */
#define _GNU_SOURCE /* timegm */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apns_payload.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_state.h"
#include "cg_util.h"

#define PRIO(name, level, alert_prio, expiry, crit, la_prio, relevance, urgency) \
	{ #name, level, alert_prio, expiry, crit, la_prio, relevance, \
	  offsetof(cg_config, push_expiration_##name), urgency }

/* Web Push has nothing above "high" (RFC 8030), so critical is "high" too. */
static const apns_prio prio_table[] = {
	PRIO(low, "passive", 5, 3600, 0, 5, 25, "low"),
	PRIO(medium, "active", 10, 86400, 0, 5, 50, "normal"),
	PRIO(high, "time-sensitive", 10, 86400, 0, 10, 75, "high"),
	PRIO(critical, "critical", 10, 86400, 1, 10, 100, "high"),
};

static const apns_push_type_info push_types[] = {
	[APNS_PUSH_ALERT] = { "alert", "", 0 },
	[APNS_PUSH_BACKGROUND] = { "background", "", 5 },
	[APNS_PUSH_LIVEACTIVITY] = { "liveactivity", ".push-type.liveactivity", 0 },
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

long apns_expiration_s(const cg_config *cfg, const char *priority)
{
	const apns_prio *p = apns_prio_lookup(priority);
	long v;

	if (cfg == NULL)
		return p->expiration_s;
	memcpy(&v, (const char *)cfg + p->cfg_expiration, sizeof v);
	return v < 0 ? 0 : v;
}

long long apns_expiration_cfg(const cg_config *cfg, const char *priority, time_t now)
{
	long s = apns_expiration_s(cfg, priority);

	return s <= 0 ? 0 : (long long)now + s;
}

long long apns_expiration(const char *priority, time_t now)
{
	return apns_expiration_cfg(NULL, priority, now);
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

const apns_push_type_info *apns_push_type_info_get(apns_push_type type)
{
	if ((unsigned)type >= sizeof push_types / sizeof push_types[0])
		type = APNS_PUSH_ALERT;
	return &push_types[type];
}

int apns_topic(const char *bundle_id, apns_push_type type, char *out, size_t outlen)
{
	int n;

	if (outlen > 0)
		out[0] = '\0';
	if (bundle_id == NULL || *bundle_id == '\0')
		return -1;
	n = snprintf(out, outlen, "%s%s", bundle_id, apns_push_type_info_get(type)->topic_suffix);
	if (n < 0 || (size_t)n >= outlen) {
		if (outlen > 0)
			out[0] = '\0';
		return -1;
	}
	return 0;
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

/* The capsule id: the event's own field, else the activity's. */
static const char *event_capsule_id(json_object *ev)
{
	const char *c = cg_event_str(ev, "capsule_id");

	return *c ? c : cg_event_str(event_data(ev), "capsule_id");
}

/* The activity's priority (absent: "" which the table reads as medium). */
static const apns_prio *event_prio(json_object *ev)
{
	return apns_prio_lookup(cg_event_str(event_data(ev), "priority"));
}

static int is_critical(const apns_prio *p)
{
	return strcmp(p->name, "critical") == 0;
}

apns_push_type apns_push_kind(json_object *ev)
{
	const char *type = cg_event_str(ev, "type");

	const apns_prio *p;

	if (strcmp(type, "activity.created") == 0)
		return APNS_PUSH_ALERT;
	if (strcmp(type, "activity.updated") != 0)
		return APNS_PUSH_BACKGROUND;
	p = event_prio(ev);
	if (is_critical(p) || strcmp(p->name, "high") == 0 ||
	    cg_state_is_final(cg_event_str(event_data(ev), "state")))
		return APNS_PUSH_ALERT;
	return APNS_PUSH_BACKGROUND;
}

void apns_headers_build_cfg(json_object *ev, const cg_config *cfg, apns_push_type type,
			    const char *device_token, time_t now, apns_headers *h)
{
	const apns_push_type_info *info = apns_push_type_info_get(type);
	const apns_prio *p = event_prio(ev);
	const char *collapse = apns_collapse_id(event_capsule_id(ev));

	apns_id_for(cg_event_str(ev, "event_id"), device_token, h->apns_id);
	if (info->fixed_priority)
		h->apns_priority = info->fixed_priority;
	else if (type == APNS_PUSH_LIVEACTIVITY)
		h->apns_priority = p->la_priority;
	else
		h->apns_priority = p->apns_priority;
	h->expiration = apns_expiration_cfg(cfg, p->name, now);
	if (collapse != NULL)
		snprintf(h->collapse_id, sizeof h->collapse_id, "%s", collapse);
	else
		h->collapse_id[0] = '\0';
	h->push_type = info->push_type;
	h->topic_suffix = info->topic_suffix;
}

void apns_headers_build(json_object *ev, const char *device_token, time_t now, apns_headers *h)
{
	apns_headers_build_cfg(ev, NULL, APNS_PUSH_ALERT, device_token, now, h);
}

/* Adds obj[key] = v, taking v (NULL v: failure). Returns 0 or -1. */
static int add_value(json_object *obj, const char *key, json_object *v)
{
	if (v == NULL)
		return -1;
	if (json_object_object_add(obj, key, v) != 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

/* Adds string member key=val to obj when val is not empty. */
static int add_nonempty(json_object *obj, const char *key, const char *val)
{
	if (val == NULL || *val == '\0')
		return 0;
	return add_value(obj, key, json_object_new_string(val));
}

/* Adds a new empty object as obj[key]; returns it (borrowed) or NULL. */
static json_object *add_object(json_object *obj, const char *key)
{
	json_object *v = json_object_new_object();

	return add_value(obj, key, v) == 0 ? v : NULL;
}

static json_object *critical_sound(void)
{
	json_object *s = json_object_new_object();

	if (s == NULL)
		return NULL;
	if (add_value(s, "critical", json_object_new_int(1)) < 0 ||
	    add_value(s, "name", json_object_new_string("default")) < 0 ||
	    add_value(s, "volume", json_object_new_double(1.0)) < 0) {
		json_object_put(s);
		return NULL;
	}
	return s;
}

/* Fits `root` into APNS_PAYLOAD_MAX by cutting the message (in the `nm`
 * slots of `msg`), then the title (the `nt` slots of `ttl`), and writes the
 * text into *out / *outlen. Returns 0 or -1 (still too large, or memory). */
static int fit_and_dump(json_object *root, const cg_json_slot *msg, size_t nm, const char *body,
			const cg_json_slot *ttl, size_t nt, const char *title, char **out, size_t *outlen)
{
	int t = cg_json_fit_text(root, APNS_PAYLOAD_MAX, msg, nm, body, strlen(body));

	if (t == 1)
		t = cg_json_fit_text(root, APNS_PAYLOAD_MAX, ttl, nt, title, strlen(title));
	if (t != 0)
		return -1;
	*out = cg_json_compact_dup(root, APNS_PAYLOAD_MAX, outlen);
	return *out != NULL ? 0 : -1;
}

/* The alert title: the activity's, else the event type. */
static const char *event_title(json_object *ev)
{
	const char *title = cg_event_str(event_data(ev), "title");

	return *title ? title : cg_event_str(ev, "type");
}

int apns_payload_build(json_object *ev, char **out, size_t *outlen)
{
	json_object *data = event_data(ev);
	const char *title = event_title(ev);
	const char *body = cg_event_str(data, "message");
	const char *capsule_id = event_capsule_id(ev);
	const apns_prio *p = event_prio(ev);
	json_object *root, *aps, *alert;
	int rc = -1;

	*out = NULL;
	*outlen = 0;
	root = json_object_new_object();
	if (root == NULL)
		return -1;
	aps = add_object(root, "aps");
	alert = aps != NULL ? add_object(aps, "alert") : NULL;
	if (alert == NULL || add_nonempty(alert, "title", title) < 0 ||
	    add_nonempty(alert, "body", body) < 0)
		goto out;
	if (add_value(aps, "sound", p->critical_sound ? critical_sound()
						       : json_object_new_string("default")) < 0)
		goto out;
	if (add_nonempty(aps, "thread-id", capsule_id) < 0 ||
	    add_nonempty(aps, "category", cg_event_str(data, "category")) < 0 ||
	    add_nonempty(aps, "interruption-level", p->interruption_level) < 0)
		goto out;
	if (add_nonempty(root, "capsule_id", capsule_id) < 0 ||
	    add_nonempty(root, "activity_id", cg_event_str(data, "activity_id")) < 0 ||
	    add_nonempty(root, "event_id", cg_event_str(ev, "event_id")) < 0 ||
	    add_nonempty(root, "priority", p->name) < 0)
		goto out;
	{
		cg_json_slot b = { alert, "body" }, t = { alert, "title" };

		rc = fit_and_dump(root, &b, 1, body, &t, 1, title, out, outlen);
	}
out:
	json_object_put(root);
	return rc;
}

int apns_background_build(json_object *ev, char **out, size_t *outlen)
{
	json_object *data = event_data(ev);
	json_object *root, *aps;
	int rc = -1;

	*out = NULL;
	*outlen = 0;
	root = json_object_new_object();
	if (root == NULL)
		return -1;
	aps = add_object(root, "aps");
	if (aps == NULL || add_value(aps, "content-available", json_object_new_int(1)) < 0)
		goto out;
	if (add_nonempty(root, "capsule_id", event_capsule_id(ev)) < 0 ||
	    add_nonempty(root, "activity_id", cg_event_str(data, "activity_id")) < 0 ||
	    add_nonempty(root, "event_id", cg_event_str(ev, "event_id")) < 0 ||
	    add_nonempty(root, "type", cg_event_str(ev, "type")) < 0 ||
	    add_value(root, "version", json_object_new_int64(cg_event_int(ev, "version"))) < 0 ||
	    add_nonempty(root, "state", cg_event_str(data, "state")) < 0 ||
	    add_nonempty(root, "priority", event_prio(ev)->name) < 0)
		goto out;
	*out = cg_json_compact_dup(root, APNS_PAYLOAD_MAX, outlen);
	rc = *out != NULL ? 0 : -1;
out:
	json_object_put(root);
	return rc;
}

/* metadata.progress as a fraction 0..1, or -1 when unknown (see header). */
static double activity_progress(json_object *data)
{
	json_object *meta = NULL, *v = NULL;
	double d;

	if (data == NULL || !json_object_object_get_ex(data, "metadata", &meta) ||
	    !json_object_is_type(meta, json_type_object) ||
	    !json_object_object_get_ex(meta, "progress", &v) ||
	    !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
		return -1;
	d = json_object_get_double(v);
	if (!isfinite(d) || d < 0 || d > 100)
		return -1;
	return d <= 1 ? d : d / 100;
}

/* Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)"; -1 when
 * it does not. */
static time_t rfc3339_parse(const char *s)
{
	struct tm tm;
	int y, mo, d, h, mi, sec, n = 0, oh, om;
	long off = 0;
	time_t t;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
		return -1;
	s += n;
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9'; s++)
			;
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		n = 0;
		if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5 || oh > 23 || om > 59)
			return -1;
		off = (oh * 60L + om) * 60L * (*s == '+' ? 1 : -1);
		s += 6;
	} else {
		return -1;
	}
	if (*s != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
	    mi > 59 || sec < 0 || sec > 60)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	return t == (time_t)-1 ? -1 : t - off;
}

const char *apns_liveactivity_event(json_object *ev)
{
	return cg_state_is_final(cg_event_str(event_data(ev), "state")) ? APNS_LA_END : APNS_LA_UPDATE;
}

int apns_liveactivity_should_start(json_object *ev, const cg_config *cfg)
{
	return cfg != NULL && cfg->push_to_start_critical &&
	       strcmp(cg_event_str(ev, "type"), "activity.created") == 0 &&
	       is_critical(event_prio(ev)) &&
	       !cg_state_is_final(cg_event_str(event_data(ev), "state"));
}

/* The content-state of the activity (see the header). */
static json_object *content_state(json_object *ev, const char *title)
{
	json_object *data = event_data(ev), *cs = json_object_new_object();
	double progress = activity_progress(data);
	long long version = cg_event_int(data, "version");

	if (cs == NULL)
		return NULL;
	if (version == 0)
		version = cg_event_int(ev, "version");
	if (add_value(cs, "state", json_object_new_string(cg_event_str(data, "state"))) < 0 ||
	    add_value(cs, "title", json_object_new_string(title)) < 0 ||
	    add_nonempty(cs, "message", cg_event_str(data, "message")) < 0 ||
	    add_value(cs, "priority", json_object_new_string(event_prio(ev)->name)) < 0 ||
	    add_value(cs, "version", json_object_new_int64(version)) < 0 ||
	    add_value(cs, "updated_at", json_object_new_string(cg_event_str(data, "updated_at"))) < 0 ||
	    (progress >= 0 && add_value(cs, "progress", json_object_new_double(progress)) < 0)) {
		json_object_put(cs);
		return NULL;
	}
	return cs;
}

/* aps.attributes of a push-to-start: what never changes in the activity. */
static json_object *start_attributes(json_object *ev)
{
	json_object *a = json_object_new_object();

	if (a == NULL)
		return NULL;
	if (add_value(a, "capsule_id", json_object_new_string(event_capsule_id(ev))) < 0 ||
	    add_value(a, "activity_id", json_object_new_string(cg_event_str(event_data(ev), "activity_id"))) < 0 ||
	    add_nonempty(a, "category", cg_event_str(event_data(ev), "category")) < 0) {
		json_object_put(a);
		return NULL;
	}
	return a;
}

int apns_liveactivity_build(json_object *ev, const cg_config *cfg, time_t now, const char *event,
			    const char *attributes_type, char **out, size_t *outlen)
{
	const char *title = event_title(ev);
	const char *body = cg_event_str(event_data(ev), "message");
	const apns_prio *p = event_prio(ev);
	int start = event != NULL && strcmp(event, APNS_LA_START) == 0;
	int end = event != NULL && strcmp(event, APNS_LA_END) == 0;
	int with_alert = start || (!end && is_critical(p));
	long stale_s = cfg != NULL ? cfg->live_activity_stale_s : APNS_LA_STALE_DEFAULT;
	long dismissal_s = cfg != NULL ? cfg->live_activity_dismissal_s : APNS_LA_DISMISSAL_DEFAULT;
	time_t ts = rfc3339_parse(cg_event_str(event_data(ev), "updated_at"));
	json_object *root, *aps, *cs, *alert = NULL;
	cg_json_slot msg[2], ttl[2];
	size_t nm = 1, nt = 1;
	int rc = -1;

	*out = NULL;
	*outlen = 0;
	if (event == NULL || (!start && !end && strcmp(event, APNS_LA_UPDATE) != 0) ||
	    (start && (attributes_type == NULL || *attributes_type == '\0')))
		return -1;
	if (ts < 0 || ts > now)
		ts = now;
	root = json_object_new_object();
	if (root == NULL)
		return -1;
	aps = add_object(root, "aps");
	if (aps == NULL || add_value(aps, "timestamp", json_object_new_int64((long long)ts)) < 0 ||
	    add_value(aps, "event", json_object_new_string(event)) < 0)
		goto out;
	cs = content_state(ev, title);
	if (add_value(aps, "content-state", cs) < 0)
		goto out;
	if (end ? add_value(aps, "dismissal-date",
			    json_object_new_int64((long long)now + dismissal_s)) < 0
		: add_value(aps, "stale-date",
			    json_object_new_int64((long long)now + stale_s)) < 0)
		goto out;
	if (add_value(aps, "relevance-score", json_object_new_int(p->la_relevance)) < 0)
		goto out;
	if (with_alert) {
		alert = add_object(aps, "alert");
		if (alert == NULL || add_nonempty(alert, "title", title) < 0 ||
		    add_nonempty(alert, "body", body) < 0 ||
		    add_value(alert, "sound", json_object_new_string("default")) < 0)
			goto out;
	}
	if (start && (add_value(aps, "attributes-type", json_object_new_string(attributes_type)) < 0 ||
		      add_value(aps, "attributes", start_attributes(ev)) < 0))
		goto out;
	if (add_nonempty(root, "capsule_id", event_capsule_id(ev)) < 0 ||
	    add_nonempty(root, "event_id", cg_event_str(ev, "event_id")) < 0)
		goto out;
	msg[0] = (cg_json_slot){ cs, "message" };
	ttl[0] = (cg_json_slot){ cs, "title" };
	if (alert != NULL) {
		msg[nm++] = (cg_json_slot){ alert, "body" };
		ttl[nt++] = (cg_json_slot){ alert, "title" };
	}
	rc = fit_and_dump(root, msg, nm, body, ttl, nt, title, out, outlen);
out:
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

apns_token_decision apns_token_decide(long long age_s, int expired_answer)
{
	if (age_s < 0)
		return APNS_TOKEN_REMINT;
	if (age_s < APNS_TOKEN_MIN_AGE_S)
		return APNS_TOKEN_KEEP;
	if (expired_answer || age_s >= APNS_TOKEN_REFRESH_S)
		return APNS_TOKEN_REMINT;
	return APNS_TOKEN_KEEP;
}

/* apns_payload: pure functions (no I/O) that turn an event and a device into
 * an APNs alert push: the JSON body, the header values, and what a response
 * means (PUSH.md A3-A7). Everything here is unit-tested in
 * tests/unit/test_apns_payload.c. */
#ifndef PUSHD_APNS_PAYLOAD_H
#define PUSHD_APNS_PAYLOAD_H

#include <stddef.h>
#include <time.h>
#include <json-c/json.h>

#define APNS_PAYLOAD_MAX 4096   /* request body bytes (alert pushes) */
#define APNS_COLLAPSE_ID_MAX 64 /* bytes */

/* What an activity priority becomes on the APNs side. */
typedef struct apns_prio {
	const char *name;               /* "low", "medium", "high", "critical" */
	const char *interruption_level; /* aps.interruption-level */
	int apns_priority;              /* apns-priority header: 5 or 10 */
	long expiration_s;              /* apns-expiration = now + this */
	int critical_sound;             /* aps.sound is the critical-alert dict */
} apns_prio;

/* The mapping for `priority`; NULL or an unknown name gives "medium" (the
 * default of PROTOCOLS.md). Never NULL; points to static data. */
const apns_prio *apns_prio_lookup(const char *priority);

/* apns-expiration for a push of `priority` sent at `now` (UNIX seconds). */
long long apns_expiration(const char *priority, time_t now);

/* apns-collapse-id: `capsule_id` itself when it is 1..64 bytes, else NULL
 * (no header). */
const char *apns_collapse_id(const char *capsule_id);

/* apns-id of the push of event `event_id` to `device_token`: the same on
 * every attempt, so a retry never shows twice (runtime contracts). */
void apns_id_for(const char *event_id, const char *device_token, char out[37]);

/* The header values of one push, derived from the event and the device. */
typedef struct apns_headers {
	char apns_id[37];
	int apns_priority;
	long long expiration;
	char collapse_id[APNS_COLLAPSE_ID_MAX + 1]; /* "" when none */
} apns_headers;

/* Fills `h` for event `ev` (cg_event.h shape) pushed to `device_token` at
 * `now`. Cannot fail. */
void apns_headers_build(json_object *ev, const char *device_token, time_t now, apns_headers *h);

/* Builds the alert payload of `ev` (cg_event.h shape; its "data" is the
 * activity):
 *   {"aps":{"alert":{"title":..,"body":..},"sound":..,"thread-id":<capsule_id>,
 *           "category":..,"interruption-level":..},
 *    "capsule_id":..,"activity_id":..,"event_id":..,"priority":..}
 * Empty/absent body, thread-id, category and custom keys are left out; an
 * absent title falls back to the event type. When the whole text would pass
 * APNS_PAYLOAD_MAX bytes the body is cut at a UTF-8 boundary and ends in
 * "…", then (if still needed) the title. On success *out is a malloc'ed,
 * NUL-terminated JSON text of *outlen <= APNS_PAYLOAD_MAX bytes (caller
 * frees) and 0 is returned; -1 when it cannot fit or memory runs out. */
int apns_payload_build(json_object *ev, char **out, size_t *outlen);

/* What the sender does with one response. */
typedef enum apns_action {
	APNS_ACT_DONE = 0,      /* 200: delivered */
	APNS_ACT_DROP,          /* final; the notification is discarded, logged */
	APNS_ACT_DEACTIVATE,    /* final; the device token is dead (410, BadDeviceToken, ...) */
	APNS_ACT_AUTH_FAILED,   /* final; our key/team/environment is wrong: state "failing" */
	APNS_ACT_RETRY,         /* back off and retry (429, 5xx, IdleTimeout, transport) */
	APNS_ACT_REMINT,        /* 403 ExpiredProviderToken: new provider token, retry */
	APNS_ACT_TOKEN_BACKOFF, /* 429 TooManyProviderTokenUpdates: keep token, back off, retry */
} apns_action;

/* Classifies a response: `transport_ok` is 0 when the transfer failed (no
 * status: reset, GOAWAY, timeout); `status` the HTTP status; `reason` the
 * "reason" of the JSON error body (NULL or "" when none). */
apns_action apns_response_classify(int transport_ok, long status, const char *reason);

/* Short name of an action, for logs. */
const char *apns_action_name(apns_action a);

/* Parses an APNs error body {"reason":"..","timestamp":<ms>}: copies the
 * reason (or "" when absent) into reason[reasonlen] and sets *timestamp_ms
 * (-1 when absent). Tolerates any body (a non-JSON body gives ""/-1). */
void apns_error_parse(const char *body, size_t len, char *reason, size_t reasonlen,
		      long long *timestamp_ms);

#endif

/* webpush_payload: pure functions (no I/O) that turn an event into a Web
 * Push message -- the notification JSON a service worker shows (the
 * plaintext before cg_webpush encrypts it), the TTL / Urgency / Topic header
 * values -- and say what a push service's response means (PUSH.md B1/B2).
 * Everything here is unit-tested in tests/unit/test_webpush_payload.c.
 *
 * Owned by push-daemon. No function keeps state; all are thread-safe.
 * Priorities come from apns_payload's one table (link apns_payload.c too). */
#ifndef PUSHD_WEBPUSH_PAYLOAD_H
#define PUSHD_WEBPUSH_PAYLOAD_H

#include <stddef.h>
#include <time.h>
#include <json-c/json.h>

#include "cg_config.h"

#define WEBPUSH_TOPIC_LEN 32          /* Topic header: base64url chars */
#define WEBPUSH_URL_MAX 2048          /* bytes of a data.url taken from metadata */
#define WEBPUSH_RETRY_AFTER_MAX_S 3600 /* cap of a Retry-After we obey */

/* TTL header value for a push of `priority`: cfg->push_expiration_<priority>
 * (the same keys as apns-expiration), or the defaults (low 3600, else 86400)
 * when cfg is NULL. NULL or an unknown priority counts as "medium". 0 means
 * "deliver only if the browser is reachable now" (RFC 8030). */
long webpush_ttl(const cg_config *cfg, const char *priority);

/* Urgency header value: low -> "low", medium -> "normal", high -> "high",
 * critical -> "high" (RFC 8030 has nothing above high); NULL or unknown ->
 * "normal". Static string. */
const char *webpush_urgency(const char *priority);

/* Topic header for the capsule: the base64url text of the first 24 bytes of
 * SHA-256(capsule_id), so exactly 32 characters of [A-Za-z0-9_-] for any
 * capsule id; a newer message of the same capsule replaces an undelivered
 * older one at the push service. out[0] = '\0' (send no Topic) when
 * capsule_id is NULL or empty or hashing fails. */
void webpush_topic(const char *capsule_id, char out[WEBPUSH_TOPIC_LEN + 1]);

/* The header values of one message of `ev` (cg_event.h shape; "data" is the
 * activity). Cannot fail. */
typedef struct webpush_headers {
	long ttl;
	const char *urgency;                 /* static */
	char topic[WEBPUSH_TOPIC_LEN + 1];   /* "" when none */
} webpush_headers;

void webpush_headers_build(json_object *ev, const cg_config *cfg, webpush_headers *h);

/* Builds the notification JSON of `ev`, what a service worker passes to
 * showNotification(title, options):
 *   {"title":..,"body":..,"tag":<capsule_id>,"renotify":..,
 *    "requireInteraction":true,
 *    "data":{"capsule_id":..,"activity_id":..,"event_id":..,"type":..,
 *            "priority":..,"state":..,"version":..,"url":..}}
 * title: the activity's, else the event type. body: the message (left out
 * when empty). tag and renotify only with a capsule id (a browser refuses
 * renotify without a tag); renotify is true when the event is one a user is
 * alerted to again (activity.created, or any event of a critical activity),
 * false for other updates, which replace the notification silently.
 * requireInteraction only for critical (true). data: empty strings are left
 * out, version (the event's) and priority (normalised) are always there; url
 * is the activity's metadata.url when it is a string of at most
 * WEBPUSH_URL_MAX printable ASCII bytes starting with "https://" or with a
 * single "/" (a path on the app's origin), else absent.
 * When the text would pass CG_WEBPUSH_MAX_PLAINTEXT bytes the body is cut at
 * a UTF-8 boundary and ends in "…", then (if still needed) the title. On
 * success *out is a malloc'ed NUL-terminated text of *outlen <=
 * CG_WEBPUSH_MAX_PLAINTEXT bytes (caller frees) and 0 is returned; -1 when it
 * cannot fit or memory runs out. */
int webpush_payload_build(json_object *ev, char **out, size_t *outlen);

/* Seconds to wait according to a Retry-After header `value` received at
 * `now`: delta-seconds (digits only, surrounding blanks allowed) or an
 * HTTP-date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850
 * "Sunday, 06-Nov-94 08:49:37 GMT" or asctime "Sun Nov  6 08:49:37 1994").
 * A date in the past gives 0; anything larger than `cap` gives `cap`.
 * Returns -1 when value is NULL, empty or not one of those forms. */
long webpush_retry_after(const char *value, time_t now, long cap);

/* What the sender does with one response (PUSH.md B2). */
typedef enum webpush_action {
	WEBPUSH_ACT_DONE = 0, /* any 2xx: accepted */
	WEBPUSH_ACT_DELETE,   /* 404, 410: the subscription is gone, delete it */
	WEBPUSH_ACT_RETRY,    /* 429, 500, 502, 503, 504, transport error */
	WEBPUSH_ACT_DROP,     /* 400, 401, 403, 413 and every other status:
	                       * discard the message, log, keep the subscription */
} webpush_action;

/* Classifies a response: `transport_ok` is 0 when the transfer failed (no
 * status); `status` the HTTP status; `retry_after` the Retry-After header
 * value (NULL when absent), read for 429 and 503 only. *delay_s (may be
 * NULL) gets, for a RETRY, the Retry-After delay capped at
 * WEBPUSH_RETRY_AFTER_MAX_S, or -1: use the sender's own back-off (also -1
 * for the other actions). 504 is retried like a transport timeout: the
 * outcome is unknown. */
webpush_action webpush_response_classify(int transport_ok, long status, const char *retry_after,
					 time_t now, long *delay_s);

/* Short name of an action, for logs. */
const char *webpush_action_name(webpush_action a);

#endif

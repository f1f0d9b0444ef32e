/* apns_payload: pure functions (no I/O) that turn an event and a device into
 * an APNs push -- alert, background or Live Activity: the JSON body, the
 * header values, and what a response means (PUSH.md A3-A7). Everything here
 * is unit-tested in tests/unit/test_apns_payload.c.
 *
 * Owned by push-daemon. No function keeps state; all are thread-safe. The
 * builders return 0 with a malloc'ed body or -1 (nothing allocated) when the
 * body cannot fit its limit or memory runs out. */
#ifndef PUSHD_APNS_PAYLOAD_H
#define PUSHD_APNS_PAYLOAD_H

#include <stddef.h>
#include <time.h>
#include <json-c/json.h>

#include "cg_config.h"

#define APNS_PAYLOAD_MAX 4096   /* request body bytes (alert, background, liveactivity) */
#define APNS_COLLAPSE_ID_MAX 64 /* bytes */

/* What an activity priority becomes on the APNs side (and, so that there is
 * one priority table for every push, the Web Push Urgency). */
typedef struct apns_prio {
	const char *name;               /* "low", "medium", "high", "critical" */
	const char *interruption_level; /* aps.interruption-level */
	int apns_priority;              /* apns-priority of an alert push: 5 or 10 */
	long expiration_s;              /* default of push_expiration_<name> */
	int critical_sound;             /* aps.sound is the critical-alert dict */
	int la_priority;                /* apns-priority of a Live Activity push: 5 or 10 */
	int la_relevance;               /* Live Activity aps.relevance-score */
	size_t cfg_expiration;          /* offsetof(cg_config, push_expiration_<name>) */
	const char *web_urgency;        /* Web Push Urgency header value */
} apns_prio;

/* The mapping for `priority`; NULL or an unknown name gives "medium" (the
 * default of PROTOCOLS.md). Never NULL; points to static data. */
const apns_prio *apns_prio_lookup(const char *priority);

/* Seconds a push of `priority` may wait at APNs / a Web Push service:
 * cfg->push_expiration_<priority>, or the table's default when cfg is NULL. */
long apns_expiration_s(const cg_config *cfg, const char *priority);

/* apns-expiration for a push of `priority` sent at `now` (UNIX seconds):
 * now + apns_expiration_s(cfg, priority); 0 ("try once, do not store")
 * when that is configured as 0. cfg NULL: the table's defaults. */
long long apns_expiration_cfg(const cg_config *cfg, const char *priority, time_t now);

/* apns_expiration_cfg(NULL, priority, now). */
long long apns_expiration(const char *priority, time_t now);

/* apns-collapse-id: `capsule_id` itself when it is 1..64 bytes, else NULL
 * (no header). */
const char *apns_collapse_id(const char *capsule_id);

/* apns-id of the push of event `event_id` to `device_token`: the same on
 * every attempt, so a retry never shows twice (runtime contracts). */
void apns_id_for(const char *event_id, const char *device_token, char out[37]);

/* The push types we send (PUSH.md A4). */
typedef enum apns_push_type {
	APNS_PUSH_ALERT = 0,
	APNS_PUSH_BACKGROUND,
	APNS_PUSH_LIVEACTIVITY,
} apns_push_type;

/* Header values of a push type, so the sender is table-driven. */
typedef struct apns_push_type_info {
	const char *push_type;    /* apns-push-type header value */
	const char *topic_suffix; /* apns-topic = <bundle id> + this */
	int fixed_priority;       /* apns-priority when it does not depend on the
	                           * activity (background: always 5), else 0 */
} apns_push_type_info;

/* Never NULL (an out-of-range type gives the alert row); static data. */
const apns_push_type_info *apns_push_type_info_get(apns_push_type type);

/* Writes apns-topic (bundle_id + suffix) into out[outlen]. Returns 0, or -1
 * when it does not fit or bundle_id is NULL/empty. */
int apns_topic(const char *bundle_id, apns_push_type type, char *out, size_t outlen);

/* Which kind of push an event of a push-registered type becomes, by its
 * content alone (the daemon keeps no previous state; Live Activity pushes go
 * to Live Activity tokens in addition, see apns_liveactivity_*):
 *   activity.created                       -> ALERT (a new activity is news)
 *   activity.updated, priority high or     -> ALERT (every change of an
 *   critical                                  important incident is shown)
 *   activity.updated, final state          -> ALERT (resolved, dismissed,
 *   (cg_state_is_final)                       rejected: the outcome is news;
 *                                             the daemon keeps no previous
 *                                             state, so an update of an
 *                                             activity already final counts
 *                                             too -- the state machine allows
 *                                             no move out of a final state)
 *   activity.updated, otherwise            -> BACKGROUND (the app refreshes
 *                                             its list silently; iOS may
 *                                             throttle these, which is fine)
 *   any other type (future push types such as gateway.config.updated)
 *                                          -> BACKGROUND
 * Never returns APNS_PUSH_LIVEACTIVITY. */
apns_push_type apns_push_kind(json_object *ev);

/* The header values of one push, derived from the event and the device. */
typedef struct apns_headers {
	char apns_id[37];
	int apns_priority;
	long long expiration;
	char collapse_id[APNS_COLLAPSE_ID_MAX + 1]; /* "" when none */
	const char *push_type;                      /* apns-push-type value (static) */
	const char *topic_suffix;                   /* appended to the bundle id (static) */
} apns_headers;

/* Fills `h` for event `ev` (cg_event.h shape) sent as a push of `type` to
 * `device_token` (the Live Activity push token for a liveactivity push) at
 * `now`, with the expirations of `cfg` (NULL: defaults). apns-priority:
 * alert -> the priority table (5 for low, else 10); background -> 5 always
 * (A4: 10 is an error); liveactivity -> 10 for high/critical, else 5 (A4:
 * 10 counts toward an hourly budget). Cannot fail. */
void apns_headers_build_cfg(json_object *ev, const cg_config *cfg, apns_push_type type,
			    const char *device_token, time_t now, apns_headers *h);

/* apns_headers_build_cfg(ev, NULL, APNS_PUSH_ALERT, device_token, now, h). */
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

/* Builds the background payload of `ev` (send with apns_headers_build_cfg(
 * .., APNS_PUSH_BACKGROUND, ..): apns-push-type background, priority 5):
 *   {"aps":{"content-available":1},"capsule_id":..,"activity_id":..,
 *    "event_id":..,"type":..,"version":..,"state":..,"priority":..}
 * No alert, badge or sound (A4). Empty strings are left out; "version" (the
 * event's) and "priority" (normalised) are always there. Same return
 * convention as apns_payload_build. */
int apns_background_build(json_object *ev, char **out, size_t *outlen);

/* Live Activities (PUSH.md A5). The content-state, decoded by the app's
 * ContentState with Swift's default JSON strategies (snake_case keys need
 * CodingKeys on the Swift side):
 *   {"state":String, "title":String, "message":String ("" when none),
 *    "priority":String, "version":Int, "updated_at":String (RFC 3339, "" when
 *    none), "progress":Double (only when known)}
 * progress comes from the activity's metadata.progress when it is a finite
 * number: 0..1 is taken as a fraction, (1..100] as a percentage (divided by
 * 100); anything else (negative, > 100, not a number) leaves it out. So 1
 * means 100 %, not 1 %.
 *
 * aps members by event:
 *   all      timestamp, event, content-state, relevance-score (25/50/75/100
 *            for low/medium/high/critical)
 *   update   stale-date = now + cfg->live_activity_stale_s; alert when the
 *            priority is critical
 *   end      dismissal-date = now + cfg->live_activity_dismissal_s
 *   start    stale-date, alert (always: A5 requires it), attributes-type =
 *            `attributes_type`, attributes = {"capsule_id","activity_id",
 *            "category" (only when set)}
 * The alert is {"title":..,"body":..,"sound":"default"} (body left out when
 * the message is empty). timestamp is the activity's updated_at when it
 * parses and is not after `now`, else `now`: ActivityKit shows the update
 * with the newest timestamp, so a retried older event sent after a newer one
 * must not carry a newer timestamp. Custom keys beside aps: capsule_id,
 * event_id. Over APNS_PAYLOAD_MAX the message is cut (content-state and alert
 * alike), then the title. */
#define APNS_LA_UPDATE "update"
#define APNS_LA_END "end"
#define APNS_LA_START "start"
#define APNS_LA_STALE_DEFAULT 3600      /* s, when cfg is NULL (cg_config's default) */
#define APNS_LA_DISMISSAL_DEFAULT 14400 /* s, when cfg is NULL (cg_config's default) */

/* "end" when the activity's state is final (cg_state_is_final), else
 * "update". Static string. */
const char *apns_liveactivity_event(json_object *ev);

/* 1 when `ev` should start a Live Activity through the push-to-start tokens
 * of its audience: cfg->push_to_start_critical is on, the type is
 * activity.created, the priority critical and the state not final. */
int apns_liveactivity_should_start(json_object *ev, const cg_config *cfg);

/* Builds the liveactivity payload of `ev` for `event` (APNS_LA_*), sent at
 * `now` with cfg's stale/dismissal offsets (cfg NULL: the defaults); `attributes_type` is the Swift
 * type name of the app's ActivityAttributes, required (non-empty) for
 * "start", ignored otherwise. Send with apns_headers_build_cfg(..,
 * APNS_PUSH_LIVEACTIVITY, <activity push token or push-to-start token>, ..).
 * Same return convention as apns_payload_build; -1 also for an unknown
 * event or a start without attributes_type. */
int apns_liveactivity_build(json_object *ev, const cg_config *cfg, time_t now, const char *event,
			    const char *attributes_type, char **out, size_t *outlen);

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

/* Provider-token rules (PUSH.md A2): one token is reused for every push
 * until it is APNS_TOKEN_REFRESH_S old (a refresh well inside Apple's 60
 * minutes), and never replaced before APNS_TOKEN_MIN_AGE_S (Apple refuses
 * updates more often than every 20 minutes: TooManyProviderTokenUpdates).
 * An ExpiredProviderToken answer re-mints it only when it is at least that
 * old; a younger one means our clock is off, and the push backs off. */
#define APNS_TOKEN_REFRESH_S (50 * 60)
#define APNS_TOKEN_MIN_AGE_S (20 * 60)

typedef enum apns_token_decision {
	APNS_TOKEN_KEEP = 0,
	APNS_TOKEN_REMINT,
} apns_token_decision;

/* What to do with a token `age_s` seconds old (< 0: there is none yet),
 * `expired_answer` when APNs just answered ExpiredProviderToken. */
apns_token_decision apns_token_decide(long long age_s, int expired_answer);

#endif

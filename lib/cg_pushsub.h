/* cg_pushsub: Web Push subscriptions (/api/v1/push/...): validation of a
 * browser's subscribe body, storage in PostgreSQL (push_subscriptions,
 * sql/007) and the JSON shape the API shows, plus what push-daemon needs to
 * fan an event out to them and to drop the ones a push service reports gone.
 *
 * Every storage function runs INSIDE the caller's open tenant transaction
 * (cg_db_begin_tenant) and never commits: the caller commits, so the
 * Idempotency-Key and the audit row share the transaction. On a CG_DB_*
 * error the transaction is aborted and the caller must roll it back; on a
 * CG_PUSHSUB_* "domain" error nothing was changed (the caller rolls back
 * too). A subscription belongs to one user of the tenant (`user_id` = the
 * caller's subject); another user's subscription is "not found", never
 * "forbidden". JSON objects handed out belong to the caller
 * (json_object_put). The keys (p256dh, auth) are never part of the API's
 * JSON: only cg_pushsub_for_event() hands them out, to push-daemon. */
#ifndef CG_PUSHSUB_H
#define CG_PUSHSUB_H

#include <stddef.h>
#include <json-c/json.h>

#include "cg_activity.h" /* cg_field_error */
#include "cg_db.h"
#include "cg_webpush.h"

#define CG_PUSHSUB_ENDPOINT_MAX 2048      /* endpoint URL, bytes */
#define CG_PUSHSUB_USER_AGENT_MAX 512     /* user_agent, characters */
#define CG_PUSHSUB_DEVICE_INFO_MAX 4096   /* device_info, bytes of compact JSON */
#define CG_PUSHSUB_DEVICE_INFO_DEPTH 4    /* device_info nesting as cg_json_depth counts it: {"a":{"b":{"c":1}}} */
#define CG_PUSHSUBS_PER_USER_MAX 100      /* a 101st active subscription is refused */
#define CG_PUSHSUB_FOR_EVENT_MAX 10000    /* rows one cg_pushsub_for_event() may return */

enum {
	CG_PUSHSUB_ENOTFOUND = -40, /* no such subscription of this user in the tenant */
	CG_PUSHSUB_ELIMIT = -41,    /* the user already has CG_PUSHSUBS_PER_USER_MAX active ones */
};

/* A validated POST /api/v1/push/subscribe body. endpoint, user_agent and
 * device_info point into the body object (valid while it lives); the keys
 * are normalised copies (base64url without padding). */
typedef struct cg_pushsub_req {
	const char *endpoint;    /* https URL with a host, <= CG_PUSHSUB_ENDPOINT_MAX bytes */
	char p256dh[CG_WEBPUSH_KEY_B64_MAX]; /* 87 characters: a point on P-256 */
	char auth[CG_WEBPUSH_KEY_B64_MAX];   /* 22 characters: 16 bytes */
	const char *user_agent;  /* NULL when absent, null or "" */
	const char *device_info; /* compact JSON object text, NULL when absent or null */
} cg_pushsub_req;

/* Checks a subscribe body, in either shape:
 *   {"endpoint": "https://…", "p256dh_key": "…", "auth_key": "…",
 *    "user_agent": "…", "device_info": {…}}            (our documented shape)
 *   {"endpoint": "https://…", "keys": {"p256dh": "…", "auth": "…"}, …}
 *                                  (the browser's PushSubscription.toJSON())
 * (when both are present the top-level p256dh_key / auth_key win).
 * endpoint: required, printable ASCII, an https URL with a host
 * (cg_url_origin), at most CG_PUSHSUB_ENDPOINT_MAX bytes; the keys:
 * required, base64url (or base64, padded or not), p256dh a 65-byte point
 * ON the P-256 curve, auth 16 bytes (cg_webpush_keys_parse); user_agent:
 * optional, at most CG_PUSHSUB_USER_AGENT_MAX characters of UTF-8 text
 * without control characters; device_info: optional object, at most
 * CG_PUSHSUB_DEVICE_INFO_DEPTH deep and CG_PUSHSUB_DEVICE_INFO_MAX bytes.
 * Returns 0, or -1 with *fe naming the field as the client sent it
 * ("endpoint", "p256dh_key" or "keys.p256dh", "auth_key" or "keys.auth",
 * "user_agent", "device_info"). Does not keep `body`. */
int cg_pushsub_validate(json_object *body, cg_pushsub_req *out, cg_field_error *fe);

/* Checks an unsubscribe body {"endpoint": "…"}: a string of 1 to
 * CG_PUSHSUB_ENDPOINT_MAX bytes (*endpoint points into body). Returns 0 or
 * -1 with *fe. */
int cg_pushsub_validate_endpoint(json_object *body, const char **endpoint, cg_field_error *fe);

/* Subscribes `user_id`, or refreshes: upsert on (tenant, endpoint) setting
 * user_id and the keys, user_agent / device_info (absent: unchanged when the
 * same user refreshes, cleared when the endpoint moves to another user),
 * active = true (clearing any deactivation), last_seen = updated_at = now().
 * A browser re-subscribing an endpoint another user of the tenant had (a
 * shared computer) moves it to `user_id`. Returns 0 with *sub (the
 * subscription shape: id, endpoint, user_agent, device_info, active,
 * created_at, updated_at, last_seen; never the keys) and *created (1 new
 * row, 0 replaced), CG_PUSHSUB_ELIMIT (`user_id` already has
 * CG_PUSHSUBS_PER_USER_MAX other active subscriptions), or a CG_DB_* code.
 * Concurrent subscribes of one user are serialised (transaction-level
 * advisory lock), so the limit holds exactly. */
int cg_pushsub_subscribe(cg_db *db, const char *tenant, const char *user_id,
			 const cg_pushsub_req *req, json_object **sub, int *created);

/* The active subscriptions of `user_id`, oldest first, at most
 * CG_PUSHSUBS_PER_USER_MAX. Returns 0 with *subs (a JSON array of the
 * subscription shape), or a CG_DB_* code. */
int cg_pushsub_list(cg_db *db, const char *tenant, const char *user_id, json_object **subs);

/* Deletes the subscription of `user_id` with `endpoint` (exact match).
 * Returns 0 with *id (the deleted row's id), CG_PUSHSUB_ENOTFOUND (absent,
 * or another user's), or a CG_DB_* code. */
int cg_pushsub_unsubscribe(cg_db *db, const char *tenant, const char *user_id,
			   const char *endpoint, long long *id);

/* ---- push-daemon ------------------------------------------------------------ */

/* Columns of the rows cg_pushsub_for_event() hands out. */
enum {
	CG_PUSHSUB_COL_ID = 0,       /* decimal text */
	CG_PUSHSUB_COL_USER_ID = 1,
	CG_PUSHSUB_COL_ENDPOINT = 2,
	CG_PUSHSUB_COL_P256DH = 3,   /* base64url, for cg_webpush_keys_parse() */
	CG_PUSHSUB_COL_AUTH = 4,     /* base64url */
};

/* The active subscriptions an event goes to: those of `user_id`, or of
 * every user of the tenant when `user_id` is NULL; ordered by id, at most
 * `limit` (1..CG_PUSHSUB_FOR_EVENT_MAX) rows. Runs in the caller's tenant
 * transaction. Returns 0 with *res (the caller PQclears it; columns
 * CG_PUSHSUB_COL_*), or a CG_DB_* code (*res NULL; CG_DB_ESQL for a
 * `limit` out of range). */
int cg_pushsub_for_event(cg_db *db, const char *tenant, const char *user_id, int limit,
			 PGresult **res);

/* Deletes subscription `id` of the tenant, whoever's it is: the push
 * service answered 404 or 410 for it (PUSH.md B2 "delete subscription": the
 * browser must subscribe again, which makes a new row). `reason` (e.g.
 * "410 Gone") only goes to the log. The caller's deliveries rows keep their
 * subscription_id. Returns 0, CG_PUSHSUB_ENOTFOUND (already gone), or a
 * CG_DB_* code. */
int cg_pushsub_delete(cg_db *db, const char *tenant, long long id, const char *reason);

#endif

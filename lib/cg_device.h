/* cg_device: the /api/v1 resources around a user's devices: devices (push
 * targets) and their push-to-start tokens, the push tokens of running Live
 * Activities, and the history of an activity (its outbox events). Input
 * validation against the bounds, storage in PostgreSQL and the JSON shapes,
 * which PostgreSQL builds (one SQL expression per shape).
 *
 * Every storage function runs INSIDE the caller's open tenant transaction
 * (cg_db_begin_tenant) and never commits: the caller commits, so the
 * Idempotency-Key and the audit row share the transaction. On a CG_DB_*
 * error the transaction is aborted and the caller must roll it back; on a
 * CG_DEV_* "domain" error nothing was changed (the caller rolls back too).
 * A device belongs to one user of the tenant (`user_id` = the caller's
 * subject); another user's device is "not found", never "forbidden".
 * JSON objects handed out belong to the caller (json_object_put). */
#ifndef CG_DEVICE_H
#define CG_DEVICE_H

#include <stddef.h>
#include <json-c/json.h>

#include "cg_activity.h" /* cg_field_error */
#include "cg_db.h"

#define CG_DEVICE_TOKEN_MAX 4096  /* device_token, bytes */
#define CG_DEVICE_VERSION_MAX 64  /* app_version, os_version, bytes */
#define CG_PUSH_TOKEN_MAX 4096    /* push-to-start and Live Activity tokens, hex digits */
#define CG_DEVICES_PER_USER_MAX 100 /* registering a 101st device is refused */
#define CG_HISTORY_LIMIT_MAX 500
#define CG_HISTORY_LIMIT_DEFAULT 100

enum {
	CG_DEV_ENOTFOUND = -30,   /* no such device of this user in the tenant */
	CG_DEV_ENOACTIVITY = -31, /* no such activity (capsule_id) in the tenant */
	CG_DEV_EPLATFORM = -32,   /* the device is not an iOS device (Live Activities) */
	CG_DEV_ELIMIT = -33,      /* the user already has CG_DEVICES_PER_USER_MAX devices */
};

/* A validated POST /api/v1/devices body. Strings point into the body object
 * (valid while it lives) or, for device_token, into token[] of the struct
 * itself: do not copy a cg_device_reg by value. */
typedef struct cg_device_reg {
	const char *platform;     /* "ios" | "web" */
	const char *device_token; /* iOS: lower-cased hex; web: an opaque printable id */
	const char *environment;  /* "production" | "sandbox"; NULL when absent */
	const char *app_version;  /* NULL when absent or "" */
	const char *os_version;   /* NULL when absent or "" */
	char token[CG_DEVICE_TOKEN_MAX + 1];
} cg_device_reg;

/* Checks a register body: platform ios|web (required); device_token
 * (required): iOS 1..4096 hex digits (lower-cased), web 1..4096 printable
 * ASCII without spaces; environment production|sandbox (optional);
 * app_version, os_version: at most 64 printable ASCII (optional). Returns 0,
 * or -1 with *fe naming the field. Does not keep `body`. */
int cg_device_validate_reg(json_object *body, cg_device_reg *out, cg_field_error *fe);

/* Checks {"push_to_start_token": "hex"}: 1..4096 hex digits, lower-cased
 * into out[CG_PUSH_TOKEN_MAX + 1]. Returns 0 or -1 with *fe. */
int cg_device_validate_push_to_start(json_object *body, char *out, cg_field_error *fe);

/* A validated POST /api/v1/activities/{capsule_id}/live-activity-tokens body. */
typedef struct cg_live_activity_req {
	long long device_id;                    /* devices.id */
	char push_token[CG_PUSH_TOKEN_MAX + 1]; /* lower-cased hex */
} cg_live_activity_req;

/* Checks {"device_id": "17" (or 17), "push_token": "hex"}. Returns 0 or -1
 * with *fe naming device_id or push_token. */
int cg_device_validate_live_activity(json_object *body, cg_live_activity_req *out,
				     cg_field_error *fe);

/* A device id as clients send it ("17"): 1..18 decimal digits, > 0.
 * Returns 0 with *out, or -1. */
int cg_device_id_parse(const char *s, long long *out);

/* Registers device `reg` for `user_id`, or refreshes it: upsert on (tenant,
 * platform, device_token) setting user_id, environment (absent: production
 * for a new device, unchanged on refresh), app_version / os_version (absent:
 * unchanged on refresh), last_seen = updated_at = now(), active = true
 * (clearing any deactivation). A token registered by ANOTHER user of the
 * tenant moves to `user_id` (the app install now belongs to whoever signed in
 * on it): its push-to-start token is cleared and its Live Activity tokens are
 * deleted, so nothing of the previous user reaches the new one. Returns 0
 * with *device (the device shape) and *created (1 new row, 0 refreshed), or
 * CG_DEV_ELIMIT (a new device beyond CG_DEVICES_PER_USER_MAX), or a CG_DB_*
 * code. */
int cg_device_register(cg_db *db, const char *tenant, const char *user_id, const cg_device_reg *reg,
		       json_object **device, int *created);

/* The devices of `user_id` (active or not), oldest first, at most
 * CG_DEVICES_PER_USER_MAX. Returns 0 with *devices (a JSON array), or a
 * CG_DB_* code. */
int cg_device_list(cg_db *db, const char *tenant, const char *user_id, json_object **devices);

/* Deletes device `device_id` of `user_id` (its Live Activity tokens go with
 * it). Returns 0, CG_DEV_ENOTFOUND (absent, or another user's), or a CG_DB_*
 * code. */
int cg_device_delete(cg_db *db, const char *tenant, const char *user_id, long long device_id);

/* Sets the push-to-start token (validated hex) of iOS device `device_id` of
 * `user_id` (updated_at = now()). Returns 0 with *device, CG_DEV_ENOTFOUND,
 * CG_DEV_EPLATFORM (a web device), or a CG_DB_* code. */
int cg_device_set_push_to_start(cg_db *db, const char *tenant, const char *user_id,
				long long device_id, const char *token, json_object **device);

/* Attaches the push token of the Live Activity showing `capsule_id` on
 * device `device_id` of `user_id`: upsert on (tenant, capsule_id,
 * device_id), so a token APNs rotated replaces the old one (active again,
 * updated_at = now()). The device must be the caller's and an iOS device,
 * the activity must exist in the tenant. Returns 0 with *token (the
 * live_activity_token shape) and *created (1 new, 0 replaced/refreshed);
 * CG_DEV_ENOTFOUND, CG_DEV_EPLATFORM, CG_DEV_ENOACTIVITY, or a CG_DB_* code. */
int cg_device_attach_live_activity(cg_db *db, const char *tenant, const char *user_id,
				   const char *capsule_id, const cg_live_activity_req *req,
				   json_object **token, int *created);

/* The history of activity `capsule_id`: its events ordered by version, then
 * id, `limit` (1..CG_HISTORY_LIMIT_MAX) from `offset` (>= 0), each
 * {version, type, actor, cause, created_at, event_id}. Returns 0 with
 * *events (a JSON array) and *total (every event of the activity),
 * CG_DEV_ENOACTIVITY, or a CG_DB_* code. */
int cg_device_activity_history(cg_db *db, const char *tenant, const char *capsule_id, int limit,
			       long long offset, json_object **events, long long *total);

#endif

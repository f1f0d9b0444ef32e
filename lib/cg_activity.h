/* cg_activity: the activity domain model: validation of client input against
 * the bounds, storage in PostgreSQL (activity row and its outbox event in one
 * transaction) and the JSON shape of PROTOCOLS.md, which PostgreSQL builds
 * (one SQL expression, so every reader returns the same shape). */
#ifndef CG_ACTIVITY_H
#define CG_ACTIVITY_H

#include <stddef.h>
#include <json-c/json.h>
#include "cg_db.h"

#define CG_TITLE_MAX 500
#define CG_MESSAGE_MAX (64 * 1024)
#define CG_METADATA_MAX (64 * 1024)
#define CG_METADATA_DEPTH 16
#define CG_CATEGORY_MAX 255
#define CG_ID_MAX 255

enum {
	CG_ACT_ENOTFOUND = -20,
	CG_ACT_EEXISTS = -21, /* capsule_id or activity_id already used in the tenant */
};

/* A validation failure: which field and why (static strings). */
typedef struct cg_field_error {
	const char *field;
	const char *code;    /* "validation_failed" */
	const char *message; /* "title is required" */
} cg_field_error;

/* A validated create request. String fields point into the request body
 * object (valid while it lives) or into the id buffers below. */
typedef struct cg_activity_new {
	const char *activity_id;
	const char *capsule_id;
	const char *title;
	const char *message;   /* "" when absent */
	const char *priority;  /* low|medium|high|critical */
	const char *category;  /* NULL when absent */
	const char *user_id;   /* NULL: tenant-wide */
	const char *metadata;  /* compact JSON object text, "{}" when absent */
	char gen_activity_id[32];
	char gen_capsule_id[32];
} cg_activity_new;

/* Checks a POST /create-activity body (an object). Generates missing ids.
 * Returns 0, or -1 with *fe filled. Does not keep `body`. */
int cg_activity_validate_new(json_object *body, cg_activity_new *out, cg_field_error *fe);

/* 1 when `p` is one of the four priorities. */
int cg_priority_valid(const char *p);

/* Inserts the activity and its "activity.created" outbox event inside the
 * caller's open transaction for `tenant` (cg_db_begin_tenant), recording
 * `actor` (the caller's subject) on the event; the caller
 * commits, so other rows (audit, idempotency) can share the transaction.
 * On success returns 0 and gives the caller *activity (the PROTOCOLS.md
 * shape, caller puts it) and *event (the outbox event as published to
 * Redis, caller puts it; see cg_event.h). Returns CG_ACT_EEXISTS or a
 * CG_DB_* code otherwise; the transaction is then aborted and the caller
 * must roll it back. */
int cg_activity_create(cg_db *db, const char *tenant, const cg_activity_new *a,
		       const char *actor, json_object **activity, json_object **event);

/* Reads one activity inside the caller's tenant transaction. Returns 0 with
 * *activity (caller puts it), CG_ACT_ENOTFOUND (also for another tenant's
 * activity: row-level security hides it), or a CG_DB_* code. */
int cg_activity_get(cg_db *db, const char *tenant, const char *capsule_id, json_object **activity);

/* Redis key of the cached activity: "cg:{<tenant>}:activity:<capsule_id>"
 * (braces, which tenant ids cannot contain, end the tenant unambiguously).
 * Returns 0, or -1 when it does not fit. */
int cg_activity_cache_key(const char *tenant, const char *capsule_id, char *out, size_t outlen);

#endif

/* cg_activity: the activity domain model: validation of client input against
 * the configured bounds, storage in PostgreSQL (every change and its outbox
 * event in the caller's one transaction), the state machine applied to
 * updates and actions (cg_state.h), the JSON shape of PROTOCOLS.md, which
 * PostgreSQL builds (one SQL expression, so every reader returns the same
 * shape), and the version-guarded Redis cache of activities. */
#ifndef CG_ACTIVITY_H
#define CG_ACTIVITY_H

#include <stddef.h>
#include <json-c/json.h>
#include "cg_config.h"
#include "cg_db.h"
#include "cg_redis.h"

/* Defaults of the configurable bounds (cg_config.h: MAX_TITLE_CHARS, ...). */
#define CG_TITLE_MAX 500            /* UTF-8 characters */
#define CG_MESSAGE_MAX (64 * 1024)  /* bytes */
#define CG_METADATA_MAX (64 * 1024) /* bytes of compact JSON */
#define CG_METADATA_DEPTH 16
/* Fixed bounds. */
#define CG_CATEGORY_MAX 255
#define CG_ID_MAX 255

/* The activity as PROTOCOLS.md shows it, built by PostgreSQL as JSON text
 * from a row of activities aliased `a`. Every reader (cg_activity.c,
 * cg_query.c) selects this one expression, so every answer has one shape. */
#define CG_ACTIVITY_JSON_SQL \
	"json_build_object('activity_id', a.activity_id, 'capsule_id', a.capsule_id," \
	" 'title', a.title, 'message', a.message, 'state', a.state, 'priority', a.priority," \
	" 'category', a.category, 'user_id', a.user_id, 'resolution', a.resolution," \
	" 'metadata', a.metadata, 'version', a.version," \
	" 'created_at', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')," \
	" 'updated_at', to_char(a.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))::text"

/* Nesting accepted when parsing that text back: the largest configurable
 * metadata depth (64, cg_config.c) plus the activity around it. */
#define CG_ACTIVITY_JSON_DEPTH (64 + 4)

enum {
	CG_ACT_ENOTFOUND = -20,
	CG_ACT_EEXISTS = -21,     /* capsule_id or activity_id already used in the tenant */
	CG_ACT_EFINAL = -22,      /* the activity is in a final state: nothing may change it */
	CG_ACT_ETRANSITION = -23, /* the state machine forbids the move */
	CG_ACT_ELIMIT = -24,      /* merged metadata would pass the metadata bound */
};

/* The input bounds validation applies. */
typedef struct cg_limits {
	size_t title_chars;    /* UTF-8 characters (code points) */
	size_t message_bytes;  /* message, and resolution */
	size_t metadata_bytes; /* compact JSON */
	int metadata_depth;    /* nesting, the metadata object itself = 1 */
} cg_limits;

/* Fills `l` from cfg->max_title_chars, max_message_bytes, max_metadata_bytes
 * and max_metadata_depth; a NULL `cfg` gives the CG_*_MAX defaults. */
void cg_limits_from_config(const cg_config *cfg, cg_limits *l);

/* A validation failure: which field and why. field and code are static
 * strings; message is static or points into `text` (a message naming a
 * configured bound), so use it before the struct goes away. */
typedef struct cg_field_error {
	const char *field;
	const char *code;    /* "validation_failed" */
	const char *message; /* "title is required" */
	char text[128];
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

/* Checks a POST /create-activity body (an object) against `lim`: title
 * required, <= lim->title_chars characters and not blank; message <=
 * lim->message_bytes; metadata an object <= lim->metadata_bytes (compact)
 * and <= lim->metadata_depth deep; ids <= 255 of [A-Za-z0-9_.:-]; every
 * string valid UTF-8 (`lim` NULL: the CG_*_MAX defaults; so for the two
 * validators below). Generates missing ids. Returns 0, or -1 with *fe
 * filled. Does not keep `body` (*out points into it). */
int cg_activity_validate_new(json_object *body, const cg_limits *lim, cg_activity_new *out,
			     cg_field_error *fe);

/* A validated PUT /update request. Each field is NULL when the request
 * leaves it unchanged (absent or JSON null); strings point into the body
 * object (valid while it lives). */
typedef struct cg_activity_patch {
	const char *capsule_id;  /* required */
	const char *state;       /* one of the seven states */
	const char *resolution;  /* <= lim->message_bytes */
	const char *title;
	const char *message;
	const char *priority;
	const char *category;
	const char *metadata;    /* compact JSON object to merge (a null member deletes the key) */
	size_t metadata_max;     /* lim->metadata_bytes: bound on the MERGED metadata */
} cg_activity_patch;

/* Checks a PUT /update body: capsule_id required; state, resolution,
 * title, message, priority, category and metadata optional with the
 * create rules (state: one of the seven); unknown members are ignored; at
 * least one field to change, else -1 with fe->field NULL. Returns 0, or
 * -1 with *fe filled. */
int cg_activity_validate_update(json_object *body, const cg_limits *lim, cg_activity_patch *out,
				cg_field_error *fe);

/* A validated POST /action request (strings point into the body). */
typedef struct cg_action_req {
	const char *capsule_id;  /* required */
	const char *action_type; /* required: inspect|mitigate|approve|reject|dismiss */
	const char *user_id;     /* NULL when absent */
	const char *metadata;    /* compact JSON object, "{}" when absent; kept on the action */
} cg_action_req;

/* Checks a POST /action body. Returns 0, or -1 with *fe filled. */
int cg_activity_validate_action(json_object *body, const cg_limits *lim, cg_action_req *out,
				cg_field_error *fe);

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

/* PUT /update inside the caller's open tenant transaction: locks the row
 * (SELECT ... FOR UPDATE), refuses a final activity (CG_ACT_EFINAL) and a
 * state move the state machine forbids (CG_ACT_ETRANSITION; repeating the
 * current state of an activity that is not final is allowed), then sets
 * the given fields, merges metadata (metadata || patch, minus the keys the
 * patch sets to null; CG_ACT_ELIMIT when the result passes
 * p->metadata_max), bumps version by 1, sets updated_at, and writes one
 * "activity.updated" outbox event (actor `actor`, cause
 * {"fields":[the fields the request set]}). Does not commit.
 * Returns 0 with *activity (the whole activity after the change) and
 * *event (caller puts both). CG_ACT_EFINAL and CG_ACT_ETRANSITION also give
 * *activity = the unchanged activity, so the caller can name its state;
 * CG_ACT_ENOTFOUND (also another tenant's), CG_ACT_ELIMIT or a CG_DB_* code
 * leave both NULL. After any error the caller rolls back. */
int cg_activity_update(cg_db *db, const char *tenant, const cg_activity_patch *p,
		       const char *actor, json_object **activity, json_object **event);

/* POST /action inside the caller's open tenant transaction: locks the row,
 * checks the move to cg_action_target(a->action_type) as above, moves the
 * state (version + 1), inserts the action row (action_id
 * "action_<24 hex>", result "success") and one "activity.updated" outbox
 * event (cause {"action":{action_id, action_type, user_id}}). Does not
 * commit. Returns 0 with *action ({action_id, capsule_id, action_type,
 * user_id, result, metadata, created_at}), *activity (whole, after) and
 * *event (caller puts all three); errors as cg_activity_update (EFINAL /
 * ETRANSITION give *activity, the unchanged one). */
int cg_activity_act(cg_db *db, const char *tenant, const cg_action_req *a, const char *actor,
		    json_object **action, json_object **activity, json_object **event);

/* Redis key of the cached activity: "cg:{<tenant>}:activity:<capsule_id>"
 * (braces, which tenant ids cannot contain, end the tenant unambiguously).
 * Returns 0, or -1 when it does not fit. */
int cg_activity_cache_key(const char *tenant, const char *capsule_id, char *out, size_t outlen);

/* The ONE way an activity enters the cache: stores the compact JSON of
 * `activity` (borrowed; needs its capsule_id and integer version) under
 * its cache key with TTL cfg->cache_ttl, atomically (a Lua script, EVALSHA
 * with an EVAL fallback) and only when no entry exists or the entry's
 * "version" is LOWER than the activity's: a reader that read an older row
 * can never overwrite a newer copy a writer stored. Returns 1 stored, 0
 * not stored (the cache holds this version or a newer one), -1 when the
 * activity lacks capsule_id / version or the key does not fit, or a
 * CG_REDIS_* code. When Redis answers an error (e.g. the key holds
 * another type) the entry is deleted, so no stale copy stays. */
int cg_activity_cache_store(cg_redis *r, const cg_config *cfg, const char *tenant,
			    json_object *activity);

#endif

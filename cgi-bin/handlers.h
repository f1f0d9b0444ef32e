/* handlers: the per-process context every handler gets, the per-request call
 * (route, path parameters, authenticated caller, audit bookkeeping) and the
 * prototypes of the REST handlers (one file per resource).
 *
 * Ownership: main.c owns the context and everything it points to; handlers
 * borrow it for the duration of one request and keep nothing between
 * requests. The router owns the cg_call. A handler always answers
 * (cg_req_send_json / cg_req_send_error); if one returns without answering,
 * cg_req_end() answers 500.
 *
 * Security pipeline (router.c runs it before any handler of a route whose
 * min_role is above CG_ROLE_NONE): CORS headers, per-IP rate limit,
 * authentication, per-credential rate limit, role check. A handler therefore
 * finds call->who set and its role sufficient. Every database access of a
 * handler runs in a transaction from cg_db_begin_tenant(db, call->who->tenant).
 * A state-changing route (its route row names an audit action) gets exactly
 * one audit_log row: the handler writes it on success inside its transaction
 * (change.h does that) and sets call->audited; otherwise the router writes a
 * failure row after the handler returns. */
#ifndef CG_HANDLERS_H
#define CG_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "cg_activity.h"
#include "cg_auth.h"
#include "cg_config.h"
#include "cg_db.h"
#include "cg_redis.h"
#include "request.h"

typedef struct cg_ratelimit cg_ratelimit;
typedef struct cg_cors cg_cors;

/* One per process, created at start, re-used by every request. */
typedef struct cg_ctx {
	const cg_config *cfg;
	cg_db *db;          /* reconnects by itself */
	cg_redis *redis;    /* reconnects by itself */
	cg_jwt_verifier *jwt; /* Bearer JWT keys, built once from cfg */
	cg_ratelimit *rl;   /* rate limits, parsed once from cfg */
	cg_cors *cors;      /* allowed origins, parsed once from cfg */
	int64_t start_ms;   /* cg_monotonic_ms() at start, for uptime_seconds */
} cg_ctx;

/* Path parameters of the matched route, percent-decoded (an encoded '/'
 * stays inside its parameter; none contains NUL). Names point into the
 * route pattern (name_len bytes, not NUL-terminated); values into a buffer
 * the router owns until the handler returns. */
#define CG_PATH_PARAMS_MAX 8

typedef struct cg_path_params {
	int n;
	const char *name[CG_PATH_PARAMS_MAX];
	size_t name_len[CG_PATH_PARAMS_MAX];
	const char *value[CG_PATH_PARAMS_MAX];
} cg_path_params;

/* The decoded value of path parameter `name`, or NULL when the route has
 * none of that name. */
const char *cg_path_param(const cg_path_params *pp, const char *name);

#define CG_AUDIT_TARGET_MAX 256

/* One request as the router hands it to a handler. */
typedef struct cg_call {
	cg_path_params pp;
	const cg_principal *who; /* the caller; NULL on routes open to anyone */
	const char *action;      /* audit action of the route ("activity.create"), or NULL */
	char target[CG_AUDIT_TARGET_MAX]; /* audit target the handler found (capsule_id), or "" */
	int audited;             /* the handler wrote this request's audit row */
} cg_call;

typedef void cg_handler_fn(cg_ctx *ctx, cg_req *req, cg_call *call);

/* Sets call->target (cut to CG_AUDIT_TARGET_MAX - 1 bytes). */
void cg_call_set_target(cg_call *call, const char *target);

/* Answers a failed cg_db_* / cg_activity_* call that is not a domain error:
 * 503 when the database is unreachable, else 500. The libpq text goes to
 * the log only. (activity.c) */
void cg_send_db_error(cg_ctx *ctx, cg_req *req, int rc, const char *what);

/* Answers 422 with a validator's field error (code "validation_failed" and
 * message "invalid request" when the validator left them NULL).
 * (activity.c) */
void cg_send_field_error(cg_req *req, const cg_field_error *fe);

/* A new object {"success": true (when with_success), key: val} holding a
 * new reference to `val`; NULL when memory runs out. (activity.c) */
json_object *cg_answer_wrap(json_object *val, const char *key, int with_success);

/* activity.c */
void cg_handle_create_activity(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_get_activity(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_update_activity(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_action(cg_ctx *ctx, cg_req *req, cg_call *call);

/* activities.c */
void cg_handle_activities(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_statistics(cg_ctx *ctx, cg_req *req, cg_call *call);

/* health.c */
void cg_handle_health(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_ready(cg_ctx *ctx, cg_req *req, cg_call *call);

/* ws_token.c */
void cg_handle_ws_token(cg_ctx *ctx, cg_req *req, cg_call *call);

/* admin_audit.c */
void cg_handle_admin_audit(cg_ctx *ctx, cg_req *req, cg_call *call);

/* Query parameter `name` as a strict RFC 3339 date-time (checked here, so
 * that PostgreSQL never reads "now" or "2025-02-30"): 0 with *out (NULL
 * when absent), or -1 after answering as cg_req_query_text() does or 422
 * "validation_failed" naming `name`. (admin_audit.c) */
int cg_req_query_time(cg_req *req, const char *name, const char **out);

/* The paged answer of an admin list: reads the query's limit (default 50,
 * 1..500) and offset (0..100000000; 422 naming the field otherwise), puts
 * them in params[nfilters] and params[nfilters + 1] (params has room for
 * both; they are $nfilters+1 and $nfilters+2 of `sql`), runs `sql` (one
 * row: the total, then a JSON array text of the page) in a transaction of
 * `tenant` and answers 200 {key: [...], "total": n, "limit": l,
 * "offset": o}, or the database error (`what` names it in the log).
 * (admin_audit.c) */
void cg_send_list_page(cg_ctx *ctx, cg_req *req, const char *tenant, const char *sql,
		       const char **params, int nfilters, const char *key, const char *what);

/* admin_deliveries.c */
void cg_handle_admin_deliveries(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_admin_delivery_retry(cg_ctx *ctx, cg_req *req, cg_call *call);

/* admin_connections.c */
void cg_handle_admin_connections(cg_ctx *ctx, cg_req *req, cg_call *call);

/* devices.c */
void cg_handle_device_register(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_device_list(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_device_delete(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_device_push_to_start(cg_ctx *ctx, cg_req *req, cg_call *call);

/* push_subscriptions.c */
void cg_handle_push_subscribe(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_push_unsubscribe(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_push_subscriptions(cg_ctx *ctx, cg_req *req, cg_call *call);
void cg_handle_push_vapid_public_key(cg_ctx *ctx, cg_req *req, cg_call *call);

/* live_activity.c */
void cg_handle_live_activity_token(cg_ctx *ctx, cg_req *req, cg_call *call);

/* events.c */
void cg_handle_event_publish(cg_ctx *ctx, cg_req *req, cg_call *call);

/* history.c */
void cg_handle_activity_history(cg_ctx *ctx, cg_req *req, cg_call *call);

#endif

/* handlers: the per-process context every handler gets and the prototypes of
 * the REST handlers (one file per resource: activity.c, health.c, ws_token.c).
 *
 * Ownership: main.c owns the context and everything it points to; handlers
 * borrow it for the duration of one request and keep nothing between
 * requests. A handler always answers (cg_req_send_json / cg_req_send_error);
 * if one returns without answering, cg_req_end() answers 500. */
#ifndef CG_HANDLERS_H
#define CG_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "cg_config.h"
#include "cg_db.h"
#include "cg_redis.h"
#include "request.h"

/* One per process, created at start, re-used by every request. */
typedef struct cg_ctx {
	const cg_config *cfg;
	cg_db *db;          /* reconnects by itself */
	cg_redis *redis;    /* reconnects by itself */
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

typedef void cg_handler_fn(cg_ctx *ctx, cg_req *req, const cg_path_params *pp);

/* activity.c */
void cg_handle_create_activity(cg_ctx *ctx, cg_req *req, const cg_path_params *pp);
void cg_handle_get_activity(cg_ctx *ctx, cg_req *req, const cg_path_params *pp);

/* health.c */
void cg_handle_health(cg_ctx *ctx, cg_req *req, const cg_path_params *pp);
void cg_handle_ready(cg_ctx *ctx, cg_req *req, const cg_path_params *pp);

/* ws_token.c */
void cg_handle_ws_token(cg_ctx *ctx, cg_req *req, const cg_path_params *pp);

#endif

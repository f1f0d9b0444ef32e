/* router: the const route table of the REST API -- the one place where every
 * endpoint declares the role it needs and, when it changes state, its audit
 * action -- and the dispatcher that matches a request against it and runs
 * the security pipeline before the handler.
 *
 * Pipeline: CORS headers (allowed Origin) -> 414/404/405 -> CORS preflight
 * (204/403, no authentication) -> routes with min_role CG_ROLE_NONE run at
 * once (health, ready) -> per-IP rate limit (429) -> authentication
 * (400/401/503) -> per-credential rate limit (429) -> role (403, audited as
 * "denied" on state-changing routes) -> handler -> the audit row of a
 * state-changing request the handler did not audit (failures).
 *
 * Patterns are literal segments and "{name}" parameters ("/activity/{capsule_id}").
 * The raw (still %-encoded) path is split on '/' first and each segment is
 * then percent-decoded, so "%2F" stays inside a parameter. A literal segment
 * matches its decoded form; a parameter matches any non-empty segment.
 *
 * Answers of its own: 404 "not_found" (no route has the path), 405
 * "method_not_allowed" with an Allow header (routes have the path, none the
 * method; HEAD is not supported), 400 "bad_request" (malformed %-escape or a
 * NUL in a segment), 414 "uri_too_long" (path over CG_PATH_MAX or query over
 * CG_QUERY_MAX). */
#ifndef CG_ROUTER_H
#define CG_ROUTER_H

#include "cg_auth.h"
#include "handlers.h"
#include "request.h"

#define CG_ROUTE_SEGMENTS_MAX 16

typedef struct cg_route {
	const char *method;   /* "GET", "POST", ... */
	const char *pattern;  /* "/activity/{capsule_id}" */
	cg_role min_role;     /* CG_ROLE_NONE: open to anyone, no authentication */
	const char *action;   /* audit action of a state-changing route, else NULL */
	cg_handler_fn *handler;
} cg_route;

/* Finds the route for `req` and runs its handler, or answers the error
 * itself. Always leaves `req` answered, unless a handler forgot to (then
 * cg_req_end answers 500). */
void cg_router_dispatch(cg_ctx *ctx, cg_req *req);

#endif

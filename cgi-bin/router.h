/* router: the const route table of the REST API and the dispatcher that
 * matches a request's method and path against it.
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

#include "handlers.h"
#include "request.h"

#define CG_ROUTE_SEGMENTS_MAX 16

typedef struct cg_route {
	const char *method;   /* "GET", "POST", ... */
	const char *pattern;  /* "/activity/{capsule_id}" */
	cg_handler_fn *handler;
} cg_route;

/* Finds the route for `req` and runs its handler, or answers the error
 * itself. Always leaves `req` answered, unless a handler forgot to (then
 * cg_req_end answers 500). */
void cg_router_dispatch(cg_ctx *ctx, cg_req *req);

#endif

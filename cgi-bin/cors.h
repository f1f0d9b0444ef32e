/* cors: cross-origin access for browsers, from cors_allowed_origins (exact
 * origins, comma-separated, e.g. "https://console.example.com,
 * http://localhost:3000"; empty: no origin is allowed).
 *
 * For a request whose Origin is allowed, every answer carries
 * Access-Control-Allow-Origin: <origin>, Vary: Origin and
 * Access-Control-Expose-Headers (request id and rate-limit headers).
 * A preflight (OPTIONS with Origin and Access-Control-Request-Method) on a
 * known path is answered here without authentication: 204 with the path's
 * methods, the request headers we accept and Max-Age 600; from an origin
 * not allowed, 403 without any CORS header. Credentials (cookies) are never
 * allowed: callers authenticate with headers. */
#ifndef CG_CGI_CORS_H
#define CG_CGI_CORS_H

#include <stddef.h>

#include "handlers.h"
#include "request.h"

/* At most this many origins, each at most CG_CORS_ORIGIN_MAX bytes. */
#define CG_CORS_ORIGINS_MAX 64
#define CG_CORS_ORIGIN_MAX 255

/* Parses the list. Returns NULL with a message naming cors_allowed_origins
 * when an entry is not an origin ("scheme://host[:port]", no path, no
 * wildcard). */
cg_cors *cg_cors_new(const char *origins, char *err, size_t errlen);
void cg_cors_free(cg_cors *c);

/* Adds the CORS headers to the answer when the request's Origin is allowed. */
void cg_cors_add_headers(const cg_cors *c, cg_req *req);

/* 1 when `req` is a preflight: OPTIONS with Origin and
 * Access-Control-Request-Method. */
int cg_cors_is_preflight(cg_req *req);

/* Answers a preflight: 204 (allowed origin; `methods` is the path's
 * "GET, POST" list) or 403 forbidden. Call cg_cors_add_headers first. */
void cg_cors_answer_preflight(const cg_cors *c, cg_req *req, const char *methods);

#endif

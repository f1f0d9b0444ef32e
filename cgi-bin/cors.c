/* cors: allowed origins, CORS response headers and preflight answers. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "cg_util.h"
#include "cors.h"

#define CONFIG_KEY "cors_allowed_origins"
#define EXPOSE_HEADERS "X-Request-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After"
#define ALLOW_HEADERS "Authorization, Content-Type, Idempotency-Key, X-API-Key, X-Request-ID"
#define MAX_AGE "600"

struct cg_cors {
	size_t n;
	char origin[CG_CORS_ORIGINS_MAX][CG_CORS_ORIGIN_MAX + 1];
};

/* "http://host" or "https://host:port": a scheme, then a host of letters,
 * digits, '.', '-', or a bracketed IPv6 literal, then an optional port.
 * Browsers send the scheme and host in lower case. */
static int origin_valid(const char *o, size_t n)
{
	size_t i, start;

	if (n > 7 && strncmp(o, "http://", 7) == 0)
		start = 7;
	else if (n > 8 && strncmp(o, "https://", 8) == 0)
		start = 8;
	else
		return 0;
	for (i = start; i < n; i++) {
		char c = o[i];
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		    c == ':' || c == '[' || c == ']')
			continue;
		return 0;
	}
	return o[n - 1] != ':' && o[n - 1] != '.';
}

cg_cors *cg_cors_new(const char *origins, char *err, size_t errlen)
{
	cg_cors *c = calloc(1, sizeof *c);
	const char *p = origins;

	if (c == NULL) {
		cg_set_err(err, errlen, "%s: out of memory", CONFIG_KEY);
		return NULL;
	}
	if (p == NULL || p[strspn(p, " \t")] == '\0')
		return c;
	for (;;) {
		size_t n = strcspn(p, ",");
		const char *s = p;

		while (n > 0 && (*s == ' ' || *s == '\t')) {
			s++;
			n--;
		}
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (n == 0 || n > CG_CORS_ORIGIN_MAX || !origin_valid(s, n)) {
			cg_set_err(err, errlen,
				   "%s: \"%.*s\" is not an origin (scheme://host[:port], lower case, "
				   "no path, no wildcard)", CONFIG_KEY, (int)(n > 80 ? 80 : n), s);
			goto fail;
		}
		if (c->n >= CG_CORS_ORIGINS_MAX) {
			cg_set_err(err, errlen, "%s: more than %d origins", CONFIG_KEY,
				   CG_CORS_ORIGINS_MAX);
			goto fail;
		}
		memcpy(c->origin[c->n], s, n);
		c->origin[c->n][n] = '\0';
		c->n++;
		if (p[strcspn(p, ",")] == '\0')
			break;
		p += strcspn(p, ",") + 1;
	}
	return c;
fail:
	free(c);
	return NULL;
}

void cg_cors_free(cg_cors *c)
{
	free(c);
}

/* The request's Origin when it is allowed, else NULL. */
static const char *allowed_origin(const cg_cors *c, cg_req *req)
{
	const char *o = cg_req_header(req, "Origin");
	size_t i;

	if (o == NULL || c == NULL)
		return NULL;
	for (i = 0; i < c->n; i++) {
		if (strcmp(o, c->origin[i]) == 0)
			return c->origin[i];
	}
	return NULL;
}

void cg_cors_add_headers(const cg_cors *c, cg_req *req)
{
	const char *o = allowed_origin(c, req);

	if (o == NULL)
		return;
	if (cg_req_add_header(req, "Access-Control-Allow-Origin", o) < 0 ||
	    cg_req_add_header(req, "Vary", "Origin") < 0 ||
	    cg_req_add_header(req, "Access-Control-Expose-Headers", EXPOSE_HEADERS) < 0)
		cg_log_warn("could not add the CORS headers");
}

int cg_cors_is_preflight(cg_req *req)
{
	return strcmp(cg_req_method(req), "OPTIONS") == 0 && cg_req_header(req, "Origin") != NULL &&
	       cg_req_header(req, "Access-Control-Request-Method") != NULL;
}

void cg_cors_answer_preflight(const cg_cors *c, cg_req *req, const char *methods)
{
	if (allowed_origin(c, req) == NULL) {
		cg_log_info("CORS preflight from an origin that is not allowed");
		cg_req_send_error(req, 403, "forbidden", "origin not allowed", NULL);
		return;
	}
	if (cg_req_add_header(req, "Access-Control-Allow-Methods", methods) < 0 ||
	    cg_req_add_header(req, "Access-Control-Allow-Headers", ALLOW_HEADERS) < 0 ||
	    cg_req_add_header(req, "Access-Control-Max-Age", MAX_AGE) < 0) {
		cg_req_send_error(req, 500, "internal_error", "internal error", NULL);
		return;
	}
	cg_req_send_empty(req, 204);
}

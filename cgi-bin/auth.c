/* auth: Bearer JWT / X-API-Key authentication of one REST request. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "cg_db.h"
#include "cg_log.h"
#include "cg_util.h"

/* Longest Authorization header accepted; a JWT with our claims is far
 * shorter. Longer ones are refused without being parsed. */
#define BEARER_MAX 8192

#define WWW_AUTH "Bearer realm=\"capsule-gateway\""
#define WWW_AUTH_INVALID "Bearer realm=\"capsule-gateway\", error=\"invalid_token\""

/* "Bearer <token>": the token, or NULL when the scheme is another one. */
static const char *bearer_token(const char *h)
{
	while (*h == ' ' || *h == '\t')
		h++;
	if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
		return NULL;
	h += 6;
	while (*h == ' ' || *h == '\t')
		h++;
	return h;
}

static cg_authn auth_jwt(cg_ctx *ctx, const char *header, cg_principal *p)
{
	const char *token = bearer_token(header);
	const char *why = NULL;
	size_t n;

	if (token == NULL) {
		cg_log_info("auth: refused: Authorization scheme is not Bearer");
		return CG_AUTHN_MISSING;
	}
	n = strlen(token);
	while (n > 0 && (token[n - 1] == ' ' || token[n - 1] == '\t'))
		n--;
	if (n == 0 || n > BEARER_MAX) {
		cg_log_info("auth: refused bearer token: %s", n == 0 ? "empty" : "too long");
		return CG_AUTHN_REFUSED;
	}
	if (token[n] != '\0') {
		/* trailing blanks: verify the token without them */
		char *copy = strndup(token, n);
		int rc;

		if (copy == NULL)
			return CG_AUTHN_ERROR;
		rc = cg_jwt_verify_bearer(ctx->jwt, copy, cg_now(), p, &why);
		free(copy);
		if (rc != 0)
			goto refused;
		return CG_AUTHN_OK;
	}
	if (cg_jwt_verify_bearer(ctx->jwt, token, cg_now(), p, &why) != 0)
		goto refused;
	return CG_AUTHN_OK;
refused:
	cg_log_info("auth: refused bearer token: %s", why != NULL ? why : "invalid");
	memset(p, 0, sizeof *p);
	return CG_AUTHN_REFUSED;
}

/* The API key check is the library's (the WebSocket daemon shares it). */
static cg_authn auth_api_key(cg_ctx *ctx, const char *key, cg_principal *p)
{
	switch (cg_api_key_authenticate(ctx->db, key, p)) {
	case CG_APIKEY_OK:
		return CG_AUTHN_OK;
	case CG_APIKEY_REFUSED:
		return CG_AUTHN_REFUSED;
	case CG_APIKEY_UNAVAILABLE:
		return CG_AUTHN_UNAVAILABLE;
	case CG_APIKEY_ERROR:
	default:
		return CG_AUTHN_ERROR;
	}
}

cg_authn cg_authenticate(cg_ctx *ctx, cg_req *req, cg_principal *p)
{
	const char *authz = cg_req_header(req, "Authorization");
	const char *apikey = cg_req_header(req, "X-API-Key");
	cg_authn result;

	memset(p, 0, sizeof *p);
	if (authz != NULL && apikey != NULL) {
		cg_log_info("auth: refused: both Authorization and X-API-Key given");
		return CG_AUTHN_AMBIGUOUS;
	}
	if (authz != NULL)
		result = auth_jwt(ctx, authz, p);
	else if (apikey != NULL)
		result = auth_api_key(ctx, apikey, p);
	else
		result = CG_AUTHN_MISSING;
	if (result == CG_AUTHN_OK)
		cg_log_debug("auth: %s %s tenant=%s role=%s",
			     p->kind == CG_AUTH_JWT ? "jwt" : "api_key", p->subject, p->tenant,
			     cg_role_name(p->role));
	else
		memset(p, 0, sizeof *p);
	return result;
}

void cg_auth_send_failure(cg_req *req, cg_authn result)
{
	switch (result) {
	case CG_AUTHN_OK:
		break;
	case CG_AUTHN_MISSING:
		if (cg_req_add_header(req, "WWW-Authenticate", WWW_AUTH) < 0)
			cg_log_warn("could not add WWW-Authenticate");
		cg_req_send_error(req, 401, "unauthorized", "authentication required", NULL);
		break;
	case CG_AUTHN_REFUSED:
		if (cg_req_add_header(req, "WWW-Authenticate", WWW_AUTH_INVALID) < 0)
			cg_log_warn("could not add WWW-Authenticate");
		cg_req_send_error(req, 401, "unauthorized", "invalid or expired credentials", NULL);
		break;
	case CG_AUTHN_AMBIGUOUS:
		cg_req_send_error(req, 400, "ambiguous_credentials",
				  "send either Authorization or X-API-Key, not both", NULL);
		break;
	case CG_AUTHN_UNAVAILABLE:
		cg_req_send_error(req, 503, "service_unavailable", "database unavailable", NULL);
		break;
	case CG_AUTHN_ERROR:
	default:
		cg_req_send_error(req, 500, "internal_error", "internal error", NULL);
		break;
	}
}

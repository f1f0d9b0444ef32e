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

/* Column `col` of row 0 is the boolean true. */
static int is_true(const PGresult *res, int col)
{
	return !PQgetisnull(res, 0, col) && strcmp(PQgetvalue(res, 0, col), "t") == 0;
}

static cg_authn auth_api_key(cg_ctx *ctx, const char *key, cg_principal *p)
{
	/* Runs outside any tenant: the SECURITY DEFINER function is the one
	 * narrow door to api_keys before the tenant is known (it also stamps
	 * last_used_at, so it runs in its own autocommit statement). */
	static const char sql[] =
		"SELECT tenant_id, role, secret_hash, expired, revoked"
		" FROM capsule_api_key_lookup($1)";
	char key_id[CG_API_KEY_ID_LEN + 1], hash[65];
	const char *params[1] = { key_id };
	PGresult *res = NULL;
	const char *tenant, *role_name;
	cg_role role;
	cg_authn result = CG_AUTHN_REFUSED;
	int rc;

	if (strlen(key) > CG_API_KEY_MAX || cg_api_key_parse(key, key_id, hash) < 0) {
		cg_log_info("auth: refused API key: malformed");
		goto out;
	}
	if (cg_db_in_transaction(ctx->db)) {
		cg_log_error("auth: API key lookup inside an open transaction");
		result = CG_AUTHN_ERROR;
		goto out;
	}
	rc = cg_db_exec(ctx->db, &res, sql, 1, params);
	if (rc != CG_DB_OK) {
		cg_log_warn("auth: API key lookup failed (%s): %s", cg_db_strerror(rc),
			    cg_db_errmsg(ctx->db));
		result = rc == CG_DB_ECONN ? CG_AUTHN_UNAVAILABLE : CG_AUTHN_ERROR;
		goto out;
	}
	if (PQntuples(res) != 1) {
		cg_log_info("auth: refused API key %s: unknown key id", key_id);
		goto out;
	}
	/* The secret first: without it, nothing about the key is told, not
	 * even in which way it is unusable. */
	if (PQgetisnull(res, 0, 2) || !cg_hash_equal(PQgetvalue(res, 0, 2), hash)) {
		cg_log_info("auth: refused API key %s: wrong secret", key_id);
		goto out;
	}
	if (is_true(res, 4)) {
		cg_log_info("auth: refused API key %s: revoked", key_id);
		goto out;
	}
	if (is_true(res, 3)) {
		cg_log_info("auth: refused API key %s: expired", key_id);
		goto out;
	}
	tenant = PQgetvalue(res, 0, 0);
	role_name = PQgetvalue(res, 0, 1);
	if (cg_role_parse(role_name, &role) < 0 || role == CG_ROLE_NONE ||
	    strlen(tenant) == 0 || strlen(tenant) >= sizeof p->tenant) {
		cg_log_error("auth: refused API key %s: stored role or tenant unusable", key_id);
		goto out;
	}
	memset(p, 0, sizeof *p);
	p->kind = CG_AUTH_API_KEY;
	p->role = role;
	snprintf(p->tenant, sizeof p->tenant, "%s", tenant);
	snprintf(p->subject, sizeof p->subject, "apikey:%s", key_id);
	snprintf(p->key_id, sizeof p->key_id, "%s", key_id);
	result = CG_AUTHN_OK;
out:
	if (res != NULL)
		PQclear(res);
	return result;
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

/* auth: who is calling a REST request. Reads `Authorization: Bearer <JWT>`
 * (checked by the process-wide cg_jwt_verifier) or `X-API-Key: <key>`
 * (looked up with capsule_api_key_lookup() outside any tenant, the secret's
 * hash compared in constant time) and yields a cg_principal.
 *
 * Every refusal answers the client the same way (401, WWW-Authenticate);
 * the reason goes to the log (a static word such as "expired", "revoked",
 * "bad signature", with the public key id of an API key), never the token or
 * the key. Nothing here answers the request: the router does, so that it can
 * add the rate-limit headers first. */
#ifndef CG_CGI_AUTH_H
#define CG_CGI_AUTH_H

#include "cg_auth.h"
#include "handlers.h"
#include "request.h"

typedef enum {
	CG_AUTHN_OK = 0,
	CG_AUTHN_MISSING,     /* no credential (or an unsupported scheme): 401 */
	CG_AUTHN_REFUSED,     /* a credential was presented and refused: 401 invalid_token */
	CG_AUTHN_AMBIGUOUS,   /* both Authorization and X-API-Key: 400 */
	CG_AUTHN_UNAVAILABLE, /* the key store (PostgreSQL) is unreachable: 503 */
	CG_AUTHN_ERROR,       /* anything else on our side: 500 */
} cg_authn;

/* Authenticates `req`. Returns CG_AUTHN_OK with *p filled, else the reason
 * (logged here). Must be called outside any database transaction. */
cg_authn cg_authenticate(cg_ctx *ctx, cg_req *req, cg_principal *p);

/* Sends the answer for a result other than CG_AUTHN_OK. */
void cg_auth_send_failure(cg_req *req, cg_authn result);

#endif

/* ws_token: GET /ws/token: a short-lived JWT for the WebSocket.
 *
 * The token carries the caller's tenant. A caller below publisher may mint
 * only for itself (user_id absent or equal to its own subject), and the token
 * carries the caller's role; a publisher or admin may name any user_id of its
 * own tenant, and such a token stands for that end user, so it carries the
 * least role (viewer: its own and tenant-wide activities), never the
 * minting service's. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_json.h"
#include "cg_jwt.h"
#include "cg_log.h"
#include "cg_util.h"
#include "handlers.h"

/* Copies `s` into a claim field; -1 when it does not fit. */
static int set_claim(char *dst, size_t dstlen, const char *s)
{
	size_t n = strlen(s);

	if (n >= dstlen)
		return -1;
	memcpy(dst, s, n + 1);
	return 0;
}

void cg_handle_ws_token(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_config *cfg = ctx->cfg;
	const cg_principal *who = call->who;
	const char *user_id = NULL, *device_token = NULL;
	cg_ws_claims claims;
	cg_role token_role;
	json_object *o = NULL;
	char *token = NULL;
	char err[160];
	int rc;

	rc = cg_req_query(req, "user_id", &user_id);
	if (rc < 0) {
		cg_req_send_error(req, 400, "bad_request", "malformed query string", NULL);
		goto out;
	}
	if (rc > 0 || user_id[0] == '\0') {
		/* no user_id: a token for the caller itself */
		user_id = who->subject;
	} else if (!cg_id_valid(user_id)) {
		cg_req_send_error(req, 422, "validation_failed",
				  "user_id must be 1..255 characters of [A-Za-z0-9_.:-]", "user_id");
		goto out;
	}
	if (who->role < CG_ROLE_PUBLISHER && strcmp(user_id, who->subject) != 0) {
		cg_log_info("ws token: %s (%s) may not mint for another user", who->subject,
			    cg_role_name(who->role));
		cg_req_send_error(req, 403, "forbidden",
				  "only a publisher or admin may mint a token for another user",
				  "user_id");
		goto out;
	}
	rc = cg_req_query(req, "device_token", &device_token);
	if (rc > 0) {
		device_token = "";
	} else if (rc < 0 || !cg_id_valid(device_token)) {
		/* same alphabet and length as ids: 1..255 of [A-Za-z0-9_.:-] */
		cg_req_send_error(req, 422, "validation_failed",
				  "device_token must be 1..255 characters of [A-Za-z0-9_.:-]",
				  "device_token");
		goto out;
	}

	token_role = strcmp(user_id, who->subject) == 0 ? who->role : CG_ROLE_VIEWER;
	memset(&claims, 0, sizeof claims);
	if (set_claim(claims.sub, sizeof claims.sub, user_id) < 0 ||
	    set_claim(claims.tenant, sizeof claims.tenant, who->tenant) < 0 ||
	    set_claim(claims.role, sizeof claims.role, cg_role_name(token_role)) < 0 ||
	    set_claim(claims.device_token, sizeof claims.device_token, device_token) < 0) {
		cg_log_error("ws token: a claim does not fit");
		cg_req_send_error(req, 500, "internal_error", "internal error", NULL);
		goto out;
	}
	err[0] = '\0';
	if (cg_ws_token_mint(cfg->ws_jwt_secret, cfg->ws_jwt_issuer, &claims, cfg->ws_token_ttl,
			     cg_now(), &token, err, sizeof err) < 0) {
		cg_log_error("ws token: %s", err);
		cg_req_send_error(req, 500, "internal_error", "internal error", NULL);
		goto out;
	}
	o = json_object_new_object();
	if (o == NULL || cg_json_add_string(o, "token", token) != 0 ||
	    cg_json_add_int64(o, "expires_in", cfg->ws_token_ttl) != 0) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_log_info("ws token for user_id=%s tenant=%s role=%s by %s (ttl %lds)", user_id,
		    who->tenant, cg_role_name(token_role), who->subject, cfg->ws_token_ttl);
	cg_req_send_json(req, 200, o);
out:
	json_object_put(o);
	free(token);
}

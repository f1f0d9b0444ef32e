/* ws_token: GET /ws/token: a short-lived JWT for the WebSocket. */
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

void cg_handle_ws_token(cg_ctx *ctx, cg_req *req, const cg_path_params *pp)
{
	const cg_config *cfg = ctx->cfg;
	const char *user_id = NULL, *device_token = NULL;
	cg_ws_claims claims;
	json_object *o = NULL;
	char *token = NULL;
	char err[160];
	int rc;

	(void)pp;
	rc = cg_req_query(req, "user_id", &user_id);
	if (rc < 0) {
		cg_req_send_error(req, 400, "bad_request", "malformed query string", NULL);
		goto out;
	}
	if (rc > 0 || user_id[0] == '\0') {
		cg_req_send_error(req, 422, "validation_failed", "user_id is required", "user_id");
		goto out;
	}
	if (!cg_id_valid(user_id)) {
		cg_req_send_error(req, 422, "validation_failed",
				  "user_id must be 1..255 characters of [A-Za-z0-9_.:-]", "user_id");
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

	memset(&claims, 0, sizeof claims);
	if (set_claim(claims.sub, sizeof claims.sub, user_id) < 0 ||
	    set_claim(claims.tenant, sizeof claims.tenant, cfg->default_tenant) < 0 ||
	    set_claim(claims.role, sizeof claims.role, "user") < 0 ||
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
	cg_log_info("ws token for user_id=%s (ttl %lds)", user_id, cfg->ws_token_ttl);
	cg_req_send_json(req, 200, o);
out:
	json_object_put(o);
	free(token);
}

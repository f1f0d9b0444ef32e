/* push_subscriptions: /api/v1/push/... -- a browser's Web Push subscription
 * (subscribe or refresh, unsubscribe, list the caller's) and the VAPID
 * public key browsers subscribe with.
 *
 * A subscription belongs to the caller's subject in the caller's tenant
 * (every access in a transaction of that tenant); another user's answers
 * 404 like an absent one. State changes go through change.h (tenant
 * transaction, Idempotency-Key, audit row, commit). */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cg_json.h"
#include "cg_log.h"
#include "cg_pushsub.h"
#include "cg_webpush.h"
#include "change.h"
#include "handlers.h"

/* The body itself, "keys" or "device_info" (at most
 * CG_PUSHSUB_DEVICE_INFO_DEPTH), and room to answer a deeper device_info
 * with 422 naming it rather than 400. */
#define BODY_JSON_DEPTH (CG_PUSHSUB_DEVICE_INFO_DEPTH + 4)

/* Answers a failed cg_pushsub_* call (the change is already aborted). */
static void send_pushsub_error(cg_ctx *ctx, cg_req *req, int rc, const char *what)
{
	switch (rc) {
	case CG_PUSHSUB_ENOTFOUND:
		cg_req_send_error(req, 404, "not_found", "push subscription not found", NULL);
		break;
	case CG_PUSHSUB_ELIMIT:
		cg_req_send_error(req, 409, "subscription_limit",
				  "too many push subscriptions for this user (at most 100): "
				  "unsubscribe one first", NULL);
		break;
	default:
		cg_send_db_error(ctx, req, rc, what);
		break;
	}
}

void cg_handle_push_subscribe(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	json_object *body = NULL, *sub = NULL;
	cg_pushsub_req sr;
	cg_field_error fe;
	const char *text;
	cg_change ch;
	size_t len;
	int created = 0, rc;

	memset(&ch, 0, sizeof ch);
	body = cg_req_json_body(req, BODY_JSON_DEPTH, &text, &len);
	if (body == NULL)
		goto out;
	memset(&fe, 0, sizeof fe);
	if (cg_pushsub_validate(body, &sr, &fe) < 0) {
		cg_send_field_error(req, &fe);
		goto out;
	}
	if (cg_change_begin(ctx, req, call, &ch, text, len) != 0)
		goto out; /* answered: replay, key reused, database down */
	rc = cg_pushsub_subscribe(ctx->db, who->tenant, who->subject, &sr, &sub, &created);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		send_pushsub_error(ctx, req, rc, "subscribe to web push");
		goto out;
	}
	if (cg_change_finish_upsert(ctx, req, call, &ch, sub, "subscription", "id", created) != 0)
		goto out; /* answered */
	cg_log_info("push subscription %s %s for %s", call->target,
		    created ? "created" : "refreshed", who->subject);
out:
	cg_change_free(ctx, &ch);
	json_object_put(sub);
	json_object_put(body);
}

/* DELETE /api/v1/push/subscribe and POST /api/v1/push/unsubscribe (for
 * clients that can only POST), both with {"endpoint": "…"}. */
void cg_handle_push_unsubscribe(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	static const char resp_text[] = "{\"success\":true}";
	const char *text, *endpoint;
	json_object *body = NULL;
	char target[32];
	cg_field_error fe;
	cg_change ch;
	long long id = 0;
	size_t len;
	int rc;

	memset(&ch, 0, sizeof ch);
	body = cg_req_json_body(req, BODY_JSON_DEPTH, &text, &len);
	if (body == NULL)
		goto out;
	memset(&fe, 0, sizeof fe);
	if (cg_pushsub_validate_endpoint(body, &endpoint, &fe) < 0) {
		cg_send_field_error(req, &fe);
		goto out;
	}
	if (cg_change_begin(ctx, req, call, &ch, text, len) != 0)
		goto out;
	rc = cg_pushsub_unsubscribe(ctx->db, who->tenant, who->subject, endpoint, &id);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		send_pushsub_error(ctx, req, rc, "unsubscribe from web push");
		goto out;
	}
	snprintf(target, sizeof target, "%lld", id);
	cg_call_set_target(call, target);
	if (cg_change_commit(ctx, req, call, &ch, 200, resp_text) != 0)
		goto out;
	cg_log_info("push subscription %lld deleted by %s", id, who->subject);
	cg_req_send_text(req, 200, resp_text, strlen(resp_text));
out:
	cg_change_free(ctx, &ch);
	json_object_put(body);
}

void cg_handle_push_subscriptions(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	json_object *subs = NULL, *resp = NULL;
	int rc = cg_db_begin_tenant(ctx->db, who->tenant);

	if (rc == CG_DB_OK) {
		rc = cg_pushsub_list(ctx->db, who->tenant, who->subject, &subs);
		if (rc == CG_DB_OK)
			rc = cg_db_commit(ctx->db);
		else
			cg_db_rollback(ctx->db);
	}
	resp = rc == CG_DB_OK ? cg_answer_wrap(subs, "subscriptions", 0) : NULL;
	if (resp != NULL)
		cg_req_send_json(req, 200, resp);
	else if (rc != CG_DB_OK)
		cg_send_db_error(ctx, req, rc, "list push subscriptions");
	else
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
	json_object_put(resp);
	json_object_put(subs);
}

/* The VAPID key pair of this process: loaded from the configuration at the
 * first request that needs it and kept until the process ends (the
 * configuration does not change while it runs). */
static cg_vapid *vapid;
static int vapid_failed;

/* A tenant's own VAPID public key, from push_credentials_dir/<tenant>.conf
 * (the file capsule-pushd signs that tenant's pushes with). Returns 1 with
 * the key in out, 0 when the tenant has none (the global key applies), -1
 * when its file is unusable (logged). */
static int tenant_vapid_public_key(const cg_config *cfg, const char *tenant, char *out, size_t outlen)
{
	char path[4096], err[512];
	cg_config tc;
	cg_vapid *v;
	int rc = 0;

	if (cfg->push_credentials_dir == NULL || cfg->push_credentials_dir[0] == '\0')
		return 0;
	snprintf(path, sizeof path, "%s/%s.conf", cfg->push_credentials_dir, tenant);
	if (access(path, F_OK) != 0)
		return 0;
	if (cg_config_load_push_credentials(&tc, path, err, sizeof err) < 0) {
		cg_log_error("push credentials of tenant %s: %s", tenant, err);
		rc = -1;
	} else if (cg_config_webpush_configured(&tc)) {
		v = cg_vapid_load(tc.vapid_private_key, tc.vapid_subject, err, sizeof err);
		if (v == NULL) {
			cg_log_error("push credentials of tenant %s: vapid_private_key: %s", tenant, err);
			rc = -1;
		} else {
			snprintf(out, outlen, "%s", cg_vapid_public_key(v));
			cg_vapid_free(v);
			rc = 1;
		}
	}
	cg_config_free(&tc);
	return rc;
}

void cg_handle_push_vapid_public_key(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	json_object *resp = NULL;
	char err[256], own[CG_WEBPUSH_KEY_B64_MAX];
	int rc;

	/* A tenant with its own VAPID key (push_credentials_dir): that one. */
	rc = tenant_vapid_public_key(ctx->cfg, call->who->tenant, own, sizeof own);
	if (rc < 0) {
		cg_req_send_error(req, 500, "internal_error", "the tenant's VAPID key could not be loaded",
				  NULL);
		return;
	}
	if (rc > 0) {
		resp = json_object_new_object();
		if (resp == NULL || cg_json_add_string(resp, "public_key", own) != 0)
			cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		else
			cg_req_send_json(req, 200, resp);
		json_object_put(resp);
		return;
	}
	if (!cg_config_webpush_configured(ctx->cfg)) {
		cg_req_send_error(req, 404, "not_configured",
				  "Web Push is not configured (vapid_private_key, vapid_subject)", NULL);
		return;
	}
	if (vapid == NULL && !vapid_failed) {
		vapid = cg_vapid_load(ctx->cfg->vapid_private_key, ctx->cfg->vapid_subject, err,
				      sizeof err);
		if (vapid == NULL) {
			vapid_failed = 1; /* a configuration error: logged once */
			cg_log_error("vapid_private_key: cannot load the VAPID key: %s", err);
		}
	}
	if (vapid == NULL) {
		cg_req_send_error(req, 500, "internal_error", "the VAPID key could not be loaded", NULL);
		return;
	}
	resp = json_object_new_object();
	if (resp == NULL || cg_json_add_string(resp, "public_key", cg_vapid_public_key(vapid)) != 0) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, 200, resp);
out:
	json_object_put(resp);
}

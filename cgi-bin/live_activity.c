/* live_activity: POST /api/v1/activities/{capsule_id}/live-activity-tokens --
 * attach the push token of a running Live Activity to an activity, for one
 * of the caller's iOS devices.
 *
 * The token is kept per (tenant, activity, device): APNs may rotate it, and
 * the new one replaces the old (201 for a new attachment, 200 when it
 * replaced or refreshed one). The device must be the caller's (else 404
 * "device not found") and the activity must exist in the caller's tenant
 * (else 404 "activity not found"). Through change.h: tenant transaction,
 * Idempotency-Key, audit row. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cg_device.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"
#include "change.h"
#include "handlers.h"

#define BODY_JSON_DEPTH 8

/* Answers a failed attach (the change is already aborted). */
static void send_attach_error(cg_ctx *ctx, cg_req *req, int rc)
{
	switch (rc) {
	case CG_DEV_ENOTFOUND:
		cg_req_send_error(req, 404, "not_found", "device not found", NULL);
		break;
	case CG_DEV_ENOACTIVITY:
		cg_req_send_error(req, 404, "not_found", "activity not found", NULL);
		break;
	case CG_DEV_EPLATFORM:
		cg_req_send_error(req, 422, "validation_failed",
				  "Live Activity tokens are for iOS devices", "device_id");
		break;
	default:
		cg_send_db_error(ctx, req, rc, "attach Live Activity token");
		break;
	}
}

void cg_handle_live_activity_token(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	const char *capsule_id = cg_path_param(&call->pp, "capsule_id");
	json_object *body = NULL, *token = NULL, *resp = NULL;
	const char *text, *resp_text;
	cg_live_activity_req la;
	cg_field_error fe;
	cg_change ch;
	size_t len;
	int created = 0, status, rc;

	memset(&ch, 0, sizeof ch);
	cg_call_set_target(call, capsule_id);
	/* An id that could never have been created is simply not found. */
	if (capsule_id == NULL || !cg_id_valid(capsule_id)) {
		cg_req_send_error(req, 404, "not_found", "activity not found", NULL);
		goto out;
	}
	body = cg_req_json_body(req, BODY_JSON_DEPTH, &text, &len);
	if (body == NULL)
		goto out;
	memset(&fe, 0, sizeof fe);
	if (cg_device_validate_live_activity(body, &la, &fe) < 0) {
		cg_send_field_error(req, &fe);
		goto out;
	}
	if (cg_change_begin(ctx, req, call, &ch, text, len) != 0)
		goto out;
	rc = cg_device_attach_live_activity(ctx->db, who->tenant, who->subject, capsule_id, &la,
					    &token, &created);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		send_attach_error(ctx, req, rc);
		goto out;
	}
	status = created ? 201 : 200;
	resp = cg_answer_wrap(token, "live_activity_token", 1);
	resp_text = cg_change_commit_json(ctx, req, call, &ch, status, resp);
	if (resp_text == NULL)
		goto out;
	cg_log_info("Live Activity token %s for capsule_id=%s device %lld by %s",
		    created ? "attached" : "replaced", capsule_id, la.device_id, who->subject);
	cg_req_send_text(req, status, resp_text, strlen(resp_text));
out:
	cg_change_free(ctx, &ch);
	json_object_put(resp);
	json_object_put(token);
	json_object_put(body);
}

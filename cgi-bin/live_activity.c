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
#include <strings.h>

#include "cg_device.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"
#include "change.h"
#include "handlers.h"

#define BODY_JSON_DEPTH 8

/* 1 when the Content-Type is application/json, parameters (charset) allowed. */
static int is_json_media_type(const char *ct)
{
	size_t n;

	if (ct == NULL)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0;
}

/* Reads and parses the JSON object body. Returns the object (caller puts
 * it) with *text / *len set, or NULL after answering 415 / 413 / 400. */
static json_object *json_body(cg_req *req, const char **text, size_t *len)
{
	json_object *body;
	char err[160], msg[200];

	if (!is_json_media_type(cg_req_header(req, "Content-Type"))) {
		cg_req_send_error(req, 415, "unsupported_media_type",
				  "Content-Type must be application/json", NULL);
		return NULL;
	}
	if (cg_req_body(req, text, len) < 0)
		return NULL; /* answered */
	err[0] = '\0';
	body = cg_json_parse_object(*text, *len, BODY_JSON_DEPTH, err, sizeof err);
	if (body == NULL) {
		snprintf(msg, sizeof msg, "malformed JSON: %s", err[0] != '\0' ? err : "not an object");
		cg_req_send_error(req, 400, "malformed_json", msg, NULL);
	}
	return body;
}

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
	const char *text, *resp_text = NULL;
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
	body = json_body(req, &text, &len);
	if (body == NULL)
		goto out;
	memset(&fe, 0, sizeof fe);
	if (cg_device_validate_live_activity(body, &la, &fe) < 0) {
		cg_req_send_error(req, 422, fe.code != NULL ? fe.code : "validation_failed",
				  fe.message != NULL ? fe.message : "invalid request", fe.field);
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
	resp = json_object_new_object();
	if (resp != NULL && json_object_object_add(resp, "success", json_object_new_boolean(1)) == 0) {
		if (json_object_object_add(resp, "live_activity_token", json_object_get(token)) == 0)
			resp_text = cg_json_compact(resp);
		else
			json_object_put(token); /* the reference the failed add did not take */
	}
	if (resp_text == NULL) {
		cg_change_abort(ctx, &ch);
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	if (cg_change_commit(ctx, req, call, &ch, status, resp_text) != 0)
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

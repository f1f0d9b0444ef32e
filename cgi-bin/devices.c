/* devices: /api/v1/devices -- register or refresh, list, delete the caller's
 * devices, and set a device's push-to-start token.
 *
 * A device belongs to the caller's subject in the caller's tenant (every
 * access in a transaction of that tenant); another user's device answers
 * 404 like an absent one. State changes go through change.h (tenant
 * transaction, Idempotency-Key, audit row, commit). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cg_device.h"
#include "cg_json.h"
#include "cg_log.h"
#include "change.h"
#include "handlers.h"

/* The bodies here are flat objects. */
#define BODY_JSON_DEPTH 8

/* Answers a failed cg_device_* call (the change is already aborted). */
static void send_device_error(cg_ctx *ctx, cg_req *req, int rc, const char *what)
{
	switch (rc) {
	case CG_DEV_ENOTFOUND:
		cg_req_send_error(req, 404, "not_found", "device not found", NULL);
		break;
	case CG_DEV_EPLATFORM:
		cg_req_send_error(req, 422, "validation_failed",
				  "push-to-start tokens are for iOS devices", "device_id");
		break;
	case CG_DEV_ELIMIT:
		cg_req_send_error(req, 409, "device_limit",
				  "too many devices registered for this user (at most "
				  "100): delete one first", NULL);
		break;
	default:
		cg_send_db_error(ctx, req, rc, what);
		break;
	}
}

void cg_handle_device_register(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	json_object *body = NULL, *device = NULL;
	cg_device_reg reg;
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
	if (cg_device_validate_reg(body, &reg, &fe) < 0) {
		cg_send_field_error(req, &fe);
		goto out;
	}
	if (cg_change_begin(ctx, req, call, &ch, text, len) != 0)
		goto out; /* answered: replay, key reused, database down */
	rc = cg_device_register(ctx->db, who->tenant, who->subject, &reg, &device, &created);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		send_device_error(ctx, req, rc, "register device");
		goto out;
	}
	if (cg_change_finish_upsert(ctx, req, call, &ch, device, "device", "device_id", created) != 0)
		goto out; /* answered */
	cg_log_info("device %s %s (%s) for %s", call->target, created ? "registered" : "refreshed",
		    reg.platform, who->subject);
out:
	cg_change_free(ctx, &ch);
	json_object_put(device);
	json_object_put(body);
}

void cg_handle_device_list(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	json_object *devices = NULL, *resp = NULL;
	int rc = cg_db_begin_tenant(ctx->db, who->tenant);

	if (rc == CG_DB_OK) {
		rc = cg_device_list(ctx->db, who->tenant, who->subject, &devices);
		if (rc == CG_DB_OK)
			rc = cg_db_commit(ctx->db);
		else
			cg_db_rollback(ctx->db);
	}
	if (rc != CG_DB_OK) {
		cg_send_db_error(ctx, req, rc, "list devices");
		goto out;
	}
	resp = json_object_new_object();
	if (resp == NULL || json_object_object_add(resp, "devices", json_object_get(devices)) != 0) {
		if (resp != NULL)
			json_object_put(devices); /* the reference the failed add did not take */
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, 200, resp);
out:
	json_object_put(resp);
	json_object_put(devices);
}

/* The {device_id} of the path, or -1 after answering 404 (an id that could
 * never exist is simply not found). Sets the audit target. */
static int path_device_id(cg_req *req, cg_call *call, long long *id)
{
	const char *s = cg_path_param(&call->pp, "device_id");

	cg_call_set_target(call, s);
	if (s == NULL || cg_device_id_parse(s, id) < 0) {
		cg_req_send_error(req, 404, "not_found", "device not found", NULL);
		return -1;
	}
	return 0;
}

void cg_handle_device_delete(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	static const char resp_text[] = "{\"success\":true}";
	long long id;
	cg_change ch;
	int rc;

	memset(&ch, 0, sizeof ch);
	if (path_device_id(req, call, &id) < 0)
		goto out;
	/* A DELETE carries no body: the Idempotency-Key covers method and path. */
	if (cg_change_begin(ctx, req, call, &ch, "", 0) != 0)
		goto out;
	rc = cg_device_delete(ctx->db, who->tenant, who->subject, id);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		send_device_error(ctx, req, rc, "delete device");
		goto out;
	}
	if (cg_change_commit(ctx, req, call, &ch, 200, resp_text) != 0)
		goto out;
	cg_log_info("device %lld deleted by %s", id, who->subject);
	cg_req_send_text(req, 200, resp_text, strlen(resp_text));
out:
	cg_change_free(ctx, &ch);
}

void cg_handle_device_push_to_start(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	json_object *body = NULL, *device = NULL, *resp = NULL;
	char token[CG_PUSH_TOKEN_MAX + 1];
	const char *text, *resp_text;
	cg_field_error fe;
	cg_change ch;
	long long id;
	size_t len;
	int rc;

	memset(&ch, 0, sizeof ch);
	if (path_device_id(req, call, &id) < 0)
		goto out;
	body = cg_req_json_body(req, BODY_JSON_DEPTH, &text, &len);
	if (body == NULL)
		goto out;
	memset(&fe, 0, sizeof fe);
	if (cg_device_validate_push_to_start(body, token, &fe) < 0) {
		cg_send_field_error(req, &fe);
		goto out;
	}
	if (cg_change_begin(ctx, req, call, &ch, text, len) != 0)
		goto out;
	rc = cg_device_set_push_to_start(ctx->db, who->tenant, who->subject, id, token, &device);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		send_device_error(ctx, req, rc, "set push-to-start token");
		goto out;
	}
	resp = cg_answer_wrap(device, "device", 1);
	resp_text = cg_change_commit_json(ctx, req, call, &ch, 200, resp);
	if (resp_text == NULL)
		goto out;
	cg_log_info("device %lld: push-to-start token set by %s", id, who->subject);
	cg_req_send_text(req, 200, resp_text, strlen(resp_text));
out:
	cg_change_free(ctx, &ch);
	json_object_put(resp);
	json_object_put(device);
	json_object_put(body);
}

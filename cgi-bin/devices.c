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
#include <strings.h>

#include "cg_device.h"
#include "cg_json.h"
#include "cg_log.h"
#include "change.h"
#include "handlers.h"

/* The bodies here are flat objects. */
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

static void send_field_error(cg_req *req, const cg_field_error *fe)
{
	cg_req_send_error(req, 422, fe->code != NULL ? fe->code : "validation_failed",
			  fe->message != NULL ? fe->message : "invalid request", fe->field);
}

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

/* {"success": true, "device": d} as compact text owned by *holder. */
static const char *device_answer(json_object *device, json_object **holder)
{
	json_object *o = json_object_new_object();

	*holder = o;
	if (o == NULL || json_object_object_add(o, "success", json_object_new_boolean(1)) != 0)
		return NULL;
	if (json_object_object_add(o, "device", json_object_get(device)) != 0) {
		json_object_put(device); /* the reference the failed add did not take */
		return NULL;
	}
	return cg_json_compact(o);
}

void cg_handle_device_register(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	json_object *body = NULL, *device = NULL, *resp = NULL;
	const char *text, *resp_text;
	cg_device_reg reg;
	cg_field_error fe;
	cg_change ch;
	size_t len;
	int created = 0, status, rc;

	memset(&ch, 0, sizeof ch);
	body = json_body(req, &text, &len);
	if (body == NULL)
		goto out;
	memset(&fe, 0, sizeof fe);
	if (cg_device_validate_reg(body, &reg, &fe) < 0) {
		send_field_error(req, &fe);
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
	cg_call_set_target(call, json_object_get_string(json_object_object_get(device, "device_id")));
	status = created ? 201 : 200;
	resp_text = device_answer(device, &resp);
	if (resp_text == NULL) {
		cg_change_abort(ctx, &ch);
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	if (cg_change_commit(ctx, req, call, &ch, status, resp_text) != 0)
		goto out; /* answered */
	cg_log_info("device %s %s (%s) for %s", call->target, created ? "registered" : "refreshed",
		    reg.platform, who->subject);
	cg_req_send_text(req, status, resp_text, strlen(resp_text));
out:
	cg_change_free(ctx, &ch);
	json_object_put(resp);
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
	body = json_body(req, &text, &len);
	if (body == NULL)
		goto out;
	memset(&fe, 0, sizeof fe);
	if (cg_device_validate_push_to_start(body, token, &fe) < 0) {
		send_field_error(req, &fe);
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
	resp_text = device_answer(device, &resp);
	if (resp_text == NULL) {
		cg_change_abort(ctx, &ch);
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	if (cg_change_commit(ctx, req, call, &ch, 200, resp_text) != 0)
		goto out;
	cg_log_info("device %lld: push-to-start token set by %s", id, who->subject);
	cg_req_send_text(req, 200, resp_text, strlen(resp_text));
out:
	cg_change_free(ctx, &ch);
	json_object_put(resp);
	json_object_put(device);
	json_object_put(body);
}

/* change: tenant transaction + Idempotency-Key + audit of a state-changing request. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "cg_json.h"
#include "cg_log.h"
#include "change.h"

/* Answers the stored answer of the first request with this key. */
static int replay(cg_ctx *ctx, cg_req *req, cg_call *call, cg_change *ch)
{
	json_object *detail = json_object_new_object();
	cg_audit_entry e;
	int rc;

	if (detail != NULL && json_object_object_add(detail, "idempotent_replay",
						     json_object_new_boolean(1)) != 0)
		cg_log_warn("audit: detail incomplete (out of memory)");
	memset(&e, 0, sizeof e);
	e.action = call->action;
	e.target = call->target;
	e.request_id = cg_req_id(req);
	e.outcome = CG_AUDIT_SUCCESS;
	e.status = ch->idem.replay_status;
	e.detail = detail;
	rc = call->action != NULL ? cg_audit_write(ctx->db, call->who, &e) : CG_DB_OK;
	json_object_put(detail);
	if (rc == CG_DB_OK)
		rc = cg_db_commit(ctx->db);
	ch->open = 0;
	if (rc != CG_DB_OK) {
		cg_db_rollback(ctx->db);
		cg_send_db_error(ctx, req, rc, "idempotent replay");
		return 1;
	}
	call->audited = 1;
	cg_log_info("Idempotency-Key replay: status %d, no second effect", ch->idem.replay_status);
	if (cg_req_add_header(req, "Idempotent-Replayed", "true") < 0)
		cg_log_warn("could not add Idempotent-Replayed");
	cg_req_send_text(req, ch->idem.replay_status, ch->idem.replay_body,
			 strlen(ch->idem.replay_body));
	return 1;
}

int cg_change_begin(cg_ctx *ctx, cg_req *req, cg_call *call, cg_change *ch, const char *body,
		    size_t len)
{
	int rc;

	memset(ch, 0, sizeof *ch);
	if (cg_idem_from_request(req, body, len, &ch->idem) < 0)
		return 1; /* answered 422 */
	rc = cg_db_begin_tenant(ctx->db, call->who->tenant);
	if (rc != CG_DB_OK) {
		cg_send_db_error(ctx, req, rc, "begin");
		return 1;
	}
	ch->open = 1;
	if (!ch->idem.present)
		return 0;
	rc = cg_idem_claim(ctx->db, call->who, req, &ch->idem);
	switch (rc) {
	case CG_IDEM_PROCEED:
		return 0;
	case CG_IDEM_REPLAY:
		return replay(ctx, req, call, ch);
	case CG_IDEM_REUSED:
		cg_change_abort(ctx, ch);
		cg_req_send_error(req, 422, "idempotency_key_reused",
				  "this Idempotency-Key was used for another request",
				  "Idempotency-Key");
		return 1;
	default:
		cg_change_abort(ctx, ch);
		cg_send_db_error(ctx, req, rc, "Idempotency-Key");
		return 1;
	}
}

int cg_change_commit(cg_ctx *ctx, cg_req *req, cg_call *call, cg_change *ch, int status,
		     const char *resp_text)
{
	cg_audit_entry e;
	int rc = CG_DB_OK;

	memset(&e, 0, sizeof e);
	e.action = call->action;
	e.target = call->target;
	e.request_id = cg_req_id(req);
	e.outcome = CG_AUDIT_SUCCESS;
	e.status = status;
	if (call->action != NULL)
		rc = cg_audit_write(ctx->db, call->who, &e);
	else
		cg_log_error("a state change on a route without an audit action");
	if (rc == CG_DB_OK && ch->idem.present)
		rc = cg_idem_store(ctx->db, call->who, &ch->idem, status, resp_text);
	if (rc == CG_DB_OK)
		rc = cg_db_commit(ctx->db);
	ch->open = 0;
	if (rc != CG_DB_OK) {
		cg_db_rollback(ctx->db);
		cg_send_db_error(ctx, req, rc, "commit");
		return -1;
	}
	call->audited = call->action != NULL;
	return 0;
}

const char *cg_change_commit_json(cg_ctx *ctx, cg_req *req, cg_call *call, cg_change *ch,
				  int status, json_object *resp)
{
	const char *resp_text = resp != NULL ? cg_json_compact(resp) : NULL;

	if (resp_text == NULL) {
		cg_change_abort(ctx, ch);
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		return NULL;
	}
	if (cg_change_commit(ctx, req, call, ch, status, resp_text) != 0)
		return NULL; /* answered */
	return resp_text;
}

int cg_change_finish_upsert(cg_ctx *ctx, cg_req *req, cg_call *call, cg_change *ch,
			    json_object *obj, const char *key, const char *id_key, int created)
{
	int status = created ? 201 : 200;
	json_object *resp;
	const char *text;
	int rc = -1;

	cg_call_set_target(call, json_object_get_string(json_object_object_get(obj, id_key)));
	resp = cg_answer_wrap(obj, key, 1);
	text = cg_change_commit_json(ctx, req, call, ch, status, resp);
	if (text != NULL) {
		cg_req_send_text(req, status, text, strlen(text));
		rc = 0;
	}
	json_object_put(resp);
	return rc;
}

void cg_change_abort(cg_ctx *ctx, cg_change *ch)
{
	if (ch->open)
		cg_db_rollback(ctx->db);
	ch->open = 0;
}

void cg_change_free(cg_ctx *ctx, cg_change *ch)
{
	cg_change_abort(ctx, ch);
	cg_idem_clear(&ch->idem);
}

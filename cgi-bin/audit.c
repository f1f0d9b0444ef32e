/* audit: audit_log rows for state-changing requests. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "cg_json.h"
#include "cg_log.h"

static const char *kind_name(cg_auth_kind k)
{
	return k == CG_AUTH_API_KEY ? "api_key" : "jwt";
}

int cg_audit_write(cg_db *db, const cg_principal *who, const cg_audit_entry *e)
{
	static const char sql[] =
		"INSERT INTO audit_log (tenant_id, actor, actor_kind, role, action, target,"
		" request_id, outcome, status, detail)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::integer, $10::jsonb)";
	char status[16];
	const char *params[10];
	int rc;

	snprintf(status, sizeof status, "%d", e->status);
	params[0] = who->tenant;
	params[1] = who->subject;
	params[2] = kind_name(who->kind);
	params[3] = cg_role_name(who->role);
	params[4] = e->action;
	params[5] = e->target != NULL && e->target[0] != '\0' ? e->target : NULL;
	params[6] = e->request_id;
	params[7] = e->outcome;
	params[8] = status;
	params[9] = e->detail != NULL ? cg_json_compact(e->detail) : NULL;
	rc = cg_db_exec(db, NULL, sql, 10, params);
	if (rc != CG_DB_OK)
		cg_log_error("audit: writing %s %s failed (%s): %s", e->action, e->outcome,
			     cg_db_strerror(rc), cg_db_errmsg(db));
	return rc;
}

void cg_audit_failure(cg_db *db, const cg_principal *who, const char *action,
		      const char *target, cg_req *req, json_object *extra)
{
	int status = cg_req_status(req);
	const char *code = cg_req_error_code(req), *field = cg_req_error_field(req);
	json_object *detail = json_object_new_object();
	cg_audit_entry e;
	int rc;

	if (detail == NULL) {
		cg_log_error("audit: out of memory; %s %d not recorded", action, status);
		return;
	}
	if ((code != NULL && cg_json_add_string(detail, "code", code) != 0) ||
	    (field != NULL && cg_json_add_string(detail, "field", field) != 0))
		cg_log_warn("audit: detail incomplete (out of memory)");
	if (extra != NULL) {
		json_object_object_foreach(extra, k, v) {
			json_object_object_add(detail, k, json_object_get(v));
		}
	}
	memset(&e, 0, sizeof e);
	e.action = action;
	e.target = target;
	e.request_id = cg_req_id(req);
	e.outcome = status == 403 ? CG_AUDIT_DENIED : status >= 400 ? CG_AUDIT_FAILURE
								     : CG_AUDIT_SUCCESS;
	e.status = status;
	e.detail = detail;
	if (cg_db_in_transaction(db)) {
		cg_log_error("audit: a transaction was left open; rolled back");
		cg_db_rollback(db);
	}
	rc = cg_db_begin_tenant(db, who->tenant);
	if (rc == CG_DB_OK)
		rc = cg_audit_write(db, who, &e);
	if (rc == CG_DB_OK)
		rc = cg_db_commit(db);
	else
		cg_db_rollback(db);
	if (rc != CG_DB_OK)
		cg_log_error("audit: row for %s %s %d lost (%s)", action, e.outcome, status,
			     cg_db_strerror(rc));
	json_object_put(detail);
}

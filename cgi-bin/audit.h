/* audit: the append-only audit_log row of a state-changing request: who
 * (tenant, actor = subject, jwt|api_key, role), what (action, target), the
 * request id, the outcome (success | failure | denied), the HTTP status and
 * a JSON detail ({"code":"validation_failed","field":"title"}).
 *
 * A success is written inside the transaction of the change itself, so the
 * change and its record commit or vanish together. A failure or a denial is
 * written in its own short tenant transaction, best effort: when even that
 * fails, the log says so (the request's answer is not changed). The
 * application role may only INSERT and SELECT audit_log (a trigger refuses
 * UPDATE, DELETE and TRUNCATE). */
#ifndef CG_CGI_AUDIT_H
#define CG_CGI_AUDIT_H

#include <json-c/json.h>

#include "cg_auth.h"
#include "cg_db.h"
#include "handlers.h"
#include "request.h"

#define CG_AUDIT_SUCCESS "success"
#define CG_AUDIT_FAILURE "failure"
#define CG_AUDIT_DENIED "denied"

typedef struct cg_audit_entry {
	const char *action;     /* "activity.create" */
	const char *target;     /* capsule_id, or NULL */
	const char *request_id;
	const char *outcome;    /* CG_AUDIT_* */
	int status;             /* HTTP status answered */
	json_object *detail;    /* borrowed, may be NULL */
} cg_audit_entry;

/* Inserts one row inside the caller's open tenant transaction (the tenant
 * is who->tenant). Returns 0 or a CG_DB_* code. */
int cg_audit_write(cg_db *db, const cg_principal *who, const cg_audit_entry *e);

/* Writes the row of a request that did not succeed, in its own tenant
 * transaction; outcome "denied" for 403, else "failure"; detail from the
 * error answer sent (code, field) merged with `extra` (may be NULL).
 * Best effort: logs when it cannot. Call outside any transaction. */
void cg_audit_failure(cg_db *db, const cg_principal *who, const char *action,
		      const char *target, cg_req *req, json_object *extra);

#endif

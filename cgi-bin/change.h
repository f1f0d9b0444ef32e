/* change: the one transaction of a state-changing request (POST, PUT):
 * tenant, Idempotency-Key, the effect and its audit row commit together.
 *
 *   cg_change ch;
 *   if (cg_change_begin(ctx, req, call, &ch, body, len) != 0)
 *       goto out;                       // answered: replay, 422, 503 ...
 *   rc = <the effect, inside the open tenant transaction>;
 *   if (rc != 0) { cg_change_abort(ctx, &ch); <answer the error>; goto out; }
 *   if (cg_change_commit(ctx, req, call, &ch, 201, resp_text) != 0)
 *       goto out;                       // answered 500/503, rolled back
 *   <after-commit work (publish, cache)>; cg_req_send_text(req, 201, resp_text)
 * out:
 *   cg_change_free(&ch);
 *
 * A failure answered by the handler is audited by the router (the handler
 * leaves call->audited at 0); success and replays are audited here, inside
 * the transaction. */
#ifndef CG_CGI_CHANGE_H
#define CG_CGI_CHANGE_H

#include <stddef.h>

#include "handlers.h"
#include "idempotency.h"
#include "request.h"

typedef struct cg_change {
	cg_idem idem;
	int open;  /* our tenant transaction is open */
} cg_change;

/* Reads the Idempotency-Key, opens the tenant transaction of call->who and
 * claims the key. Returns 0 with the transaction open (do the effect), or 1
 * when the request has been answered (a replay -- audited and committed --,
 * a reused or malformed key, a database failure). */
int cg_change_begin(cg_ctx *ctx, cg_req *req, cg_call *call, cg_change *ch, const char *body,
		    size_t len);

/* After a successful effect: writes the success audit row (action
 * call->action, target call->target), stores the answer for the
 * Idempotency-Key, commits. Returns 0 (the caller sends `resp_text` with
 * `status`), or -1 after answering 500/503 (rolled back). */
int cg_change_commit(cg_ctx *ctx, cg_req *req, cg_call *call, cg_change *ch, int status,
		     const char *resp_text);

/* cg_change_commit() with `resp` (borrowed; NULL when building it ran out
 * of memory) as the answer. Returns its compact text (owned by resp) for
 * the caller to send with `status` after its after-commit work, or NULL
 * after answering: 500 "out of memory" (the change aborted) when resp is
 * NULL or does not print, or as cg_change_commit() does. */
const char *cg_change_commit_json(cg_ctx *ctx, cg_req *req, cg_call *call, cg_change *ch,
				  int status, json_object *resp);

/* Ends a create-or-refresh change whose effect produced `obj` (borrowed):
 * sets the audit target to obj's string member `id_key`, commits with 201
 * (created) or 200 and the answer {"success": true, key: obj}, and sends
 * that answer. Returns 0 (answered with success; after-commit work may
 * follow), or -1 after answering an error as cg_change_commit_json() does. */
int cg_change_finish_upsert(cg_ctx *ctx, cg_req *req, cg_call *call, cg_change *ch,
			    json_object *obj, const char *key, const char *id_key, int created);

/* The effect failed: rolls back (the Idempotency-Key is free again). */
void cg_change_abort(cg_ctx *ctx, cg_change *ch);

/* Rolls back when still open; frees what ch holds. */
void cg_change_free(cg_ctx *ctx, cg_change *ch);

#endif

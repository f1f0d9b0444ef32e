/* history: GET /api/v1/activities/{capsule_id}/events -- every change of an
 * activity (its outbox events) with version, type, actor, cause and time.
 *
 * Query: limit (1..500, default 100), offset (>= 0, default 0). Answer
 * {"capsule_id": .., "events": [...], "total": N, "limit": L, "offset": O},
 * events ordered by version, then id. An unknown capsule_id (or another
 * tenant's) answers 404. Read in a transaction of the caller's tenant. */
#include "config.h"

#include <string.h>

#include "cg_device.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"
#include "handlers.h"

/* Offsets past this are refused (a page that far is never meant). */
#define OFFSET_MAX 1000000000LL

/* Query parameter `name` as a decimal of at most 10 digits in [min, max],
 * or `def` when absent (an empty value is not a number). Returns 0, or -1
 * after answering 400 (malformed query) or 422 `msg` naming the parameter. */
static int query_number(cg_req *req, const char *name, long long min, long long max,
			long long def, const char *msg, long long *out)
{
	const char *s;
	int rc = cg_req_query(req, name, &s);

	*out = def;
	if (rc == 1)
		return 0;
	if (rc < 0) {
		cg_req_send_error(req, 400, "bad_request", "malformed query string", NULL);
		return -1;
	}
	if (cg_req_parse_long(s, 10, min, max, out) < 0) {
		cg_req_send_error(req, 422, "validation_failed", msg, name);
		return -1;
	}
	return 0;
}

/* The answer object, holding a new reference to `events`; NULL when
 * memory runs out. */
static json_object *answer(const char *capsule_id, json_object *events, long long total,
			   long long limit, long long offset)
{
	json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	if (cg_json_add_string(o, "capsule_id", capsule_id) != 0)
		goto fail;
	if (json_object_object_add(o, "events", json_object_get(events)) != 0) {
		json_object_put(events);
		goto fail;
	}
	if (cg_json_add_int64(o, "total", total) != 0 || cg_json_add_int64(o, "limit", limit) != 0 ||
	    cg_json_add_int64(o, "offset", offset) != 0)
		goto fail;
	return o;
fail:
	json_object_put(o);
	return NULL;
}

void cg_handle_activity_history(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const cg_principal *who = call->who;
	const char *capsule_id = cg_path_param(&call->pp, "capsule_id");
	json_object *events = NULL, *resp = NULL;
	long long limit, offset, total = 0;
	int rc;

	/* An id that could never have been created is simply not found. */
	if (capsule_id == NULL || !cg_id_valid(capsule_id)) {
		cg_req_send_error(req, 404, "not_found", "activity not found", NULL);
		goto out;
	}
	if (query_number(req, "limit", 1, CG_HISTORY_LIMIT_MAX, CG_HISTORY_LIMIT_DEFAULT,
			 "limit must be an integer from 1 to 500", &limit) < 0 ||
	    query_number(req, "offset", 0, OFFSET_MAX, 0,
			 "offset must be a non-negative integer", &offset) < 0)
		goto out;
	rc = cg_db_begin_tenant(ctx->db, who->tenant);
	if (rc == CG_DB_OK) {
		rc = cg_device_activity_history(ctx->db, who->tenant, capsule_id, (int)limit, offset,
						&events, &total);
		if (rc == CG_DB_OK || rc == CG_DEV_ENOACTIVITY) {
			int crc = cg_db_commit(ctx->db);

			if (crc != CG_DB_OK)
				rc = crc;
		} else {
			cg_db_rollback(ctx->db);
		}
	}
	if (rc == CG_DEV_ENOACTIVITY) {
		cg_req_send_error(req, 404, "not_found", "activity not found", NULL);
		goto out;
	}
	if (rc != CG_DB_OK) {
		cg_send_db_error(ctx, req, rc, "activity history");
		goto out;
	}
	resp = answer(capsule_id, events, total, limit, offset);
	if (resp == NULL) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, 200, resp);
out:
	json_object_put(resp);
	json_object_put(events);
}

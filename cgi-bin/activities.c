/* activities: GET /activities (the list: filters, newest first, paging) and
 * GET /statistics (counts of the caller's tenant from PostgreSQL, the
 * ws-daemon connection registry and the cache hit rate from Redis).
 *
 * Both are read-only (no audit row) and run as the authenticated caller:
 * the database part inside one transaction of the caller's tenant. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_json.h"
#include "cg_log.h"
#include "cg_query.h"
#include "cg_redis.h"
#include "handlers.h"
#include "runtime_stats.h"

void cg_handle_activities(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *tenant = call->who->tenant;
	cg_activity_filter f;
	cg_field_error fe;
	json_object *list = NULL, *o = NULL;
	long long total = 0;
	long limit, offset;
	int rc;

	memset(&f, 0, sizeof f);
	memset(&fe, 0, sizeof fe);
	if (cg_req_query_text(req, "user_id", CG_QUERY_VALUE_MAX, &f.user_id) < 0 ||
	    cg_req_query_text(req, "state", CG_QUERY_VALUE_MAX, &f.state) < 0 ||
	    cg_req_query_text(req, "category", CG_QUERY_VALUE_MAX, &f.category) < 0 ||
	    cg_req_query_long(req, "limit", CG_LIST_LIMIT_DEFAULT, 1, CG_LIST_LIMIT_MAX, &limit) < 0 ||
	    cg_req_query_long(req, "offset", 0, 0, CG_LIST_OFFSET_MAX, &offset) < 0)
		goto out; /* answered */
	if (cg_activity_filter_check(&f, &fe) < 0) {
		cg_req_send_error(req, 422, fe.code, fe.message, fe.field);
		goto out;
	}

	rc = cg_db_begin_tenant(ctx->db, tenant);
	if (rc == CG_DB_OK) {
		rc = cg_activity_list(ctx->db, tenant, &f, limit, offset, &list, &total);
		if (rc == CG_DB_OK)
			rc = cg_db_commit(ctx->db);
		else
			cg_db_rollback(ctx->db);
	}
	if (rc != CG_DB_OK) {
		cg_send_db_error(ctx, req, rc, "list activities");
		goto out;
	}
	o = json_object_new_object();
	if (o == NULL || json_object_object_add(o, "activities", list) != 0) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	list = NULL; /* o owns it */
	if (cg_json_add_int64(o, "total", total) != 0 || cg_json_add_int64(o, "limit", limit) != 0 ||
	    cg_json_add_int64(o, "offset", offset) != 0) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, 200, o);
out:
	json_object_put(list);
	json_object_put(o);
}

/* The cache hit rate as a JSON number with at most 2 decimals: 0.92,
 * 0.5, 1, 0 (trailing zeros dropped). */
static json_object *rate_number(double rate)
{
	char text[16];
	size_t n;

	snprintf(text, sizeof text, "%.2f", rate);
	n = strlen(text);
	while (n > 0 && text[n - 1] == '0')
		text[--n] = '\0';
	if (n > 0 && text[n - 1] == '.')
		text[--n] = '\0';
	return json_object_new_double_s(strtod(text, NULL), text);
}

void cg_handle_statistics(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *tenant = call->who->tenant;
	json_object *o = NULL, *rate = NULL;
	int redis_up, rc;

	rc = cg_db_begin_tenant(ctx->db, tenant);
	if (rc == CG_DB_OK) {
		rc = cg_statistics(ctx->db, tenant, &o);
		if (rc == CG_DB_OK)
			rc = cg_db_commit(ctx->db);
		else
			cg_db_rollback(ctx->db);
	}
	if (rc != CG_DB_OK) {
		cg_send_db_error(ctx, req, rc, "statistics");
		goto out;
	}
	/* Redis down: the PostgreSQL counts still answer, the rest reads 0. */
	redis_up = cg_redis_ping(ctx->redis) == 0;
	if (!redis_up)
		cg_log_warn("statistics: redis unreachable; websocket_connections and "
			    "cache_hit_rate read 0");
	rate = rate_number(redis_up ? cg_cache_hit_rate(ctx->redis) : 0);
	if (rate == NULL ||
	    cg_json_add_int64(o, "websocket_connections",
			      redis_up ? cg_ws_connection_count(ctx->redis) : 0) != 0 ||
	    json_object_object_add(o, "cache_hit_rate", rate) != 0) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	rate = NULL; /* o owns it */
	cg_req_send_json(req, 200, o);
out:
	json_object_put(rate);
	json_object_put(o);
}

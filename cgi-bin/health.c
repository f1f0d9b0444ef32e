/* health: GET /health (state of each dependency) and GET /ready (readiness). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cg_db.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "handlers.h"
#include "runtime_stats.h"

/* Runtime contract: push-daemon SETs cg:pushd:apns
 * <connected|failing|not_configured> EX 30. (The ws-daemon registry is read
 * by runtime_stats.c, shared with GET /statistics.) */
#define PUSHD_APNS_KEY "cg:pushd:apns"

/* What push-daemon last said about APNs; when it said nothing (or Redis is
 * down): "not_configured" without an APNs key here, else "disconnected". */
static const char *apns_state(cg_ctx *ctx, int redis_up)
{
	static const char *const known[] = { "connected", "failing", "not_configured" };
	const char *state = NULL;
	char *val = NULL;
	size_t len, i;

	if (redis_up && cg_redis_get(ctx->redis, PUSHD_APNS_KEY, &val, &len) == CG_REDIS_OK) {
		for (i = 0; i < sizeof known / sizeof known[0]; i++) {
			if (strcmp(val, known[i]) == 0)
				state = known[i];
		}
		free(val);
	}
	if (state != NULL)
		return state;
	return cg_config_apns_configured(ctx->cfg) ? "disconnected" : "not_configured";
}

void cg_handle_health(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	int db_up = cg_db_ping(ctx->db) == 0;
	int redis_up = cg_redis_ping(ctx->redis) == 0;
	const char *apns = apns_state(ctx, redis_up);
	long long ws = redis_up ? cg_ws_connection_count(ctx->redis) : 0;
	int64_t uptime_ms = cg_monotonic_ms() - ctx->start_ms;
	const char *status = "healthy";
	json_object *o = json_object_new_object();

	(void)call;
	if (!db_up)
		status = "unhealthy";
	else if (!redis_up || strcmp(apns, "failing") == 0 || strcmp(apns, "disconnected") == 0)
		status = "degraded";
	if (o == NULL || cg_json_add_string(o, "status", status) != 0 ||
	    cg_json_add_string(o, "database", db_up ? "connected" : "disconnected") != 0 ||
	    cg_json_add_string(o, "redis", redis_up ? "connected" : "disconnected") != 0 ||
	    cg_json_add_string(o, "apns", apns) != 0 ||
	    cg_json_add_int64(o, "websocket_connections", ws) != 0 ||
	    cg_json_add_int64(o, "uptime_seconds", uptime_ms > 0 ? uptime_ms / 1000 : 0) != 0) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, db_up ? 200 : 503, o);
out:
	json_object_put(o);
}

void cg_handle_ready(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	int db_up = cg_db_ping(ctx->db) == 0;
	int redis_up = cg_redis_ping(ctx->redis) == 0;
	json_object *o = NULL;

	(void)call;
	if (!db_up || !redis_up) {
		cg_req_send_error(req, 503, "not_ready",
				  !db_up && !redis_up ? "database and redis unreachable"
				  : !db_up ? "database unreachable" : "redis unreachable",
				  NULL);
		return;
	}
	o = json_object_new_object();
	if (o == NULL || json_object_object_add(o, "ready", json_object_new_boolean(1)) != 0) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, 200, o);
out:
	json_object_put(o);
}

/* health: GET /health (state of each dependency) and GET /ready (readiness). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cg_db.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "handlers.h"

/* Runtime contracts: ws-daemon instances SET cg:ws:conns:<instance> <n> EX 15;
 * push-daemon SETs cg:pushd:apns <connected|failing|not_configured> EX 30. */
#define WS_CONNS_MATCH "cg:ws:conns:*"
#define PUSHD_APNS_KEY "cg:pushd:apns"
#define SCAN_COUNT "100"
/* Bounds the SCAN walk (and so the time /health may take). */
#define SCAN_ROUNDS_MAX 100
#define SCAN_KEYS_MAX 10000

/* A Redis string holding a non-negative integer, else 0. */
static long long count_value(const redisReply *v)
{
	char *end;
	long long n;

	if (v == NULL || v->type != REDIS_REPLY_STRING || v->len == 0)
		return 0;
	errno = 0;
	n = strtoll(v->str, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0)
		return 0;
	return n;
}

/* Sum of the values of `keys` (an array reply of SCAN) via one MGET. */
static long long sum_keys(cg_redis *r, const redisReply *keys)
{
	const char **argv = NULL;
	size_t *lens = NULL;
	redisReply *rep = NULL;
	long long total = 0;
	size_t i;
	int argc = 1;

	if (keys->elements == 0)
		return 0;
	argv = calloc(keys->elements + 1, sizeof *argv);
	lens = calloc(keys->elements + 1, sizeof *lens);
	if (argv == NULL || lens == NULL)
		goto out;
	argv[0] = "MGET";
	lens[0] = 4;
	for (i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];
		if (k->type != REDIS_REPLY_STRING)
			continue;
		argv[argc] = k->str;
		lens[argc] = k->len;
		argc++;
	}
	if (argc == 1 || cg_redis_cmd(r, &rep, argc, argv, lens) != CG_REDIS_OK)
		goto out;
	if (rep->type == REDIS_REPLY_ARRAY) {
		for (i = 0; i < rep->elements; i++)
			total += count_value(rep->element[i]);
	}
out:
	if (rep != NULL)
		freeReplyObject(rep);
	free(lens);
	free(argv);
	return total;
}

/* Sum of cg:ws:conns:* over every ws-daemon instance (0 when Redis is down). */
static long long ws_connections(cg_redis *r)
{
	char cursor[32] = "0";
	long long total = 0;
	size_t seen = 0;
	int round;

	for (round = 0; round < SCAN_ROUNDS_MAX && seen < SCAN_KEYS_MAX; round++) {
		const char *argv[] = { "SCAN", cursor, "MATCH", WS_CONNS_MATCH, "COUNT", SCAN_COUNT };
		redisReply *rep = NULL;
		const redisReply *cur, *keys;
		int done;

		if (cg_redis_cmd(r, &rep, 6, argv, NULL) != CG_REDIS_OK)
			break;
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING ||
		    rep->element[0]->len >= sizeof cursor ||
		    rep->element[1]->type != REDIS_REPLY_ARRAY) {
			cg_log_warn("unexpected SCAN reply");
			freeReplyObject(rep);
			break;
		}
		cur = rep->element[0];
		keys = rep->element[1];
		memcpy(cursor, cur->str, cur->len);
		cursor[cur->len] = '\0';
		total += sum_keys(r, keys);
		seen += keys->elements;
		freeReplyObject(rep);
		done = strcmp(cursor, "0") == 0;
		if (done)
			break;
	}
	return total;
}

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
	long long ws = redis_up ? ws_connections(ctx->redis) : 0;
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

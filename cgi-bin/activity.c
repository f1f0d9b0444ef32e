/* activity: POST /create-activity and GET /activity/{capsule_id}.
 *
 * Both run as the authenticated caller: every database access inside a
 * transaction of the caller's tenant (row-level security hides every other
 * tenant's rows, so another tenant's capsule_id is simply not found), and
 * the cache key carries the caller's tenant. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cg_activity.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "change.h"
#include "handlers.h"

/* Nesting allowed in a request body (metadata itself is held to
 * CG_METADATA_DEPTH by the validator) and in a cached activity. */
#define BODY_JSON_DEPTH 32
/* "cg:{" tenant (<= 64) "}:activity:" capsule_id (<= 255) */
#define CACHE_KEY_MAX 512

#define STAT_CACHE_HITS "cg:stats:cache_hits"
#define STAT_CACHE_MISSES "cg:stats:cache_misses"

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

void cg_send_db_error(cg_ctx *ctx, cg_req *req, int rc, const char *what)
{
	if (rc == CG_DB_ECONN) {
		cg_log_warn("%s: database unavailable: %s", what, cg_db_errmsg(ctx->db));
		cg_req_send_error(req, 503, "service_unavailable", "database unavailable", NULL);
		return;
	}
	cg_log_error("%s: %s (SQLSTATE %s): %s", what, cg_db_strerror(rc), cg_db_sqlstate(ctx->db),
		     cg_db_errmsg(ctx->db));
	cg_req_send_error(req, 500, "internal_error", "internal error", NULL);
}

void cg_call_set_target(cg_call *call, const char *target)
{
	snprintf(call->target, sizeof call->target, "%s", target != NULL ? target : "");
}

/* SET the cached copy of `activity`. Failures only cost a later miss. */
static void cache_put(cg_ctx *ctx, const char *tenant, const char *capsule_id,
		      json_object *activity)
{
	char key[CACHE_KEY_MAX];
	const char *val;
	int rc;

	if (cg_activity_cache_key(tenant, capsule_id, key, sizeof key) < 0)
		return;
	val = cg_json_compact(activity);
	if (val == NULL)
		return;
	rc = cg_redis_setex(ctx->redis, key, val, strlen(val), ctx->cfg->cache_ttl);
	if (rc != CG_REDIS_OK)
		cg_log_debug("cache SET %s: %s", key, cg_redis_strerror(rc));
}

static void count(cg_ctx *ctx, const char *key)
{
	int rc = cg_redis_incrby(ctx->redis, key, 1, NULL);

	if (rc != CG_REDIS_OK)
		cg_log_debug("INCR %s: %s", key, cg_redis_strerror(rc));
}

/* A new object {"success": true (when asked), key: val} holding a new
 * reference to `val`; NULL when memory runs out. */
static json_object *wrap(json_object *val, const char *key, int with_success)
{
	json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	if (with_success && json_object_object_add(o, "success", json_object_new_boolean(1)) != 0)
		goto fail;
	if (json_object_object_add(o, key, json_object_get(val)) != 0) {
		json_object_put(val);
		goto fail;
	}
	return o;
fail:
	json_object_put(o);
	return NULL;
}

/* 409: tells which of the two unique ids is taken (a new short
 * transaction: the failed INSERT aborted the change's one). */
static void send_conflict(cg_ctx *ctx, cg_req *req, const char *tenant, const cg_activity_new *a)
{
	json_object *existing = NULL;
	int rc = cg_db_begin_tenant(ctx->db, tenant);

	if (rc == CG_DB_OK) {
		rc = cg_activity_get(ctx->db, tenant, a->capsule_id, &existing);
		cg_db_rollback(ctx->db);
	}
	json_object_put(existing);
	if (rc == 0)
		cg_req_send_error(req, 409, "conflict", "capsule_id already exists", "capsule_id");
	else if (rc == CG_ACT_ENOTFOUND)
		cg_req_send_error(req, 409, "conflict", "activity_id already exists", "activity_id");
	else
		cg_req_send_error(req, 409, "conflict", "capsule_id or activity_id already exists",
				  NULL);
}

/* After the commit: publish the event, record that, refresh the cache. A
 * failure here never fails the request: the event is committed and the
 * relay in push-daemon publishes what was not marked published. */
static void after_commit(cg_ctx *ctx, const char *tenant, const cg_activity_new *a,
			 json_object *activity, json_object *event)
{
	const char *event_id = cg_event_str(event, "event_id");
	char stream_id[64];
	int rc;

	rc = cg_event_publish(ctx->redis, ctx->cfg, event, stream_id, sizeof stream_id);
	if (rc != CG_REDIS_OK) {
		cg_log_warn("event %s not published (%s: %s); the relay will publish it", event_id,
			    cg_redis_strerror(rc), cg_redis_errmsg(ctx->redis));
	} else {
		rc = cg_event_mark_published(ctx->db, tenant, event_id, stream_id);
		if (rc != 0)
			cg_log_warn("event %s published as %s but not marked (%s); "
				    "the relay may publish it again", event_id, stream_id,
				    cg_db_strerror(rc));
	}
	cache_put(ctx, tenant, a->capsule_id, activity);
}

void cg_handle_create_activity(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *tenant = call->who->tenant;
	json_object *body = NULL, *activity = NULL, *event = NULL, *resp = NULL;
	cg_activity_new a;
	cg_field_error fe;
	cg_change ch;
	const char *text, *resp_text;
	size_t len;
	char err[160], msg[200];
	int rc;

	memset(&ch, 0, sizeof ch);
	if (!is_json_media_type(cg_req_header(req, "Content-Type"))) {
		cg_req_send_error(req, 415, "unsupported_media_type",
				  "Content-Type must be application/json", NULL);
		goto out;
	}
	if (cg_req_body(req, &text, &len) < 0)
		goto out; /* answered */
	err[0] = '\0';
	body = cg_json_parse_object(text, len, BODY_JSON_DEPTH, err, sizeof err);
	if (body == NULL) {
		snprintf(msg, sizeof msg, "malformed JSON: %s", err[0] != '\0' ? err : "not an object");
		cg_req_send_error(req, 400, "malformed_json", msg, NULL);
		goto out;
	}
	memset(&a, 0, sizeof a);
	memset(&fe, 0, sizeof fe);
	if (cg_activity_validate_new(body, &a, &fe) < 0) {
		cg_req_send_error(req, 422, fe.code != NULL ? fe.code : "validation_failed",
				  fe.message != NULL ? fe.message : "invalid request", fe.field);
		goto out;
	}
	cg_call_set_target(call, a.capsule_id);

	if (cg_change_begin(ctx, req, call, &ch, text, len) != 0)
		goto out; /* answered: replay, key reused, database down */
	rc = cg_activity_create(ctx->db, tenant, &a, call->who->subject, &activity, &event);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		if (rc == CG_ACT_EEXISTS)
			send_conflict(ctx, req, tenant, &a);
		else
			cg_send_db_error(ctx, req, rc, "create activity");
		goto out;
	}
	resp = wrap(activity, "activity", 1);
	resp_text = resp != NULL ? cg_json_compact(resp) : NULL;
	if (resp_text == NULL) {
		cg_change_abort(ctx, &ch);
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	if (cg_change_commit(ctx, req, call, &ch, 201, resp_text) != 0)
		goto out; /* answered */
	cg_log_info("created activity capsule_id=%s event_id=%s by %s", a.capsule_id,
		    cg_event_str(event, "event_id"), call->who->subject);
	after_commit(ctx, tenant, &a, activity, event);
	cg_req_send_text(req, 201, resp_text, strlen(resp_text));
out:
	cg_change_free(ctx, &ch);
	json_object_put(resp);
	json_object_put(event);
	json_object_put(activity);
	json_object_put(body);
}

/* The cached activity, or NULL on a miss (counted) or when Redis is down. */
static json_object *cache_get(cg_ctx *ctx, const char *key)
{
	json_object *activity = NULL;
	char *cached = NULL;
	size_t clen = 0;
	char err[160];
	int rc = cg_redis_get(ctx->redis, key, &cached, &clen);

	if (rc == CG_REDIS_ECONN)
		goto out; /* serve from PostgreSQL, quietly */
	if (rc == CG_REDIS_OK) {
		activity = cg_json_parse_object(cached, clen, BODY_JSON_DEPTH, err, sizeof err);
		if (activity != NULL) {
			count(ctx, STAT_CACHE_HITS);
			goto out;
		}
		cg_log_warn("cached %s is not JSON (%s); dropped", key, err);
		cg_redis_del(ctx->redis, key);
	} else if (rc != CG_REDIS_ENIL) {
		cg_log_warn("cache GET %s: %s", key, cg_redis_errmsg(ctx->redis));
	}
	count(ctx, STAT_CACHE_MISSES);
out:
	free(cached);
	return activity;
}

/* Reads one activity in a transaction of `tenant`. */
static int get_in_tenant(cg_ctx *ctx, const char *tenant, const char *id, json_object **activity)
{
	int rc = cg_db_begin_tenant(ctx->db, tenant);

	*activity = NULL;
	if (rc != CG_DB_OK)
		return rc;
	rc = cg_activity_get(ctx->db, tenant, id, activity);
	if (rc == 0 || rc == CG_ACT_ENOTFOUND) {
		int crc = cg_db_commit(ctx->db);
		if (crc != CG_DB_OK) {
			json_object_put(*activity);
			*activity = NULL;
			return crc;
		}
		return rc;
	}
	cg_db_rollback(ctx->db);
	return rc;
}

void cg_handle_get_activity(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *id = cg_path_param(&call->pp, "capsule_id");
	const char *tenant = call->who->tenant;
	json_object *activity = NULL, *resp = NULL;
	char key[CACHE_KEY_MAX];
	int have_key, rc;

	/* An id that could never have been created is simply not found. */
	if (id == NULL || !cg_id_valid(id)) {
		cg_req_send_error(req, 404, "not_found", "activity not found", NULL);
		goto out;
	}
	have_key = cg_activity_cache_key(tenant, id, key, sizeof key) == 0;
	if (have_key)
		activity = cache_get(ctx, key);
	if (activity == NULL) {
		rc = get_in_tenant(ctx, tenant, id, &activity);
		if (rc == CG_ACT_ENOTFOUND) {
			cg_req_send_error(req, 404, "not_found", "activity not found", NULL);
			goto out;
		}
		if (rc != 0) {
			cg_send_db_error(ctx, req, rc, "get activity");
			goto out;
		}
		if (have_key)
			cache_put(ctx, tenant, id, activity);
	}
	resp = wrap(activity, "activity", 0);
	if (resp == NULL) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, 200, resp);
out:
	json_object_put(resp);
	json_object_put(activity);
}

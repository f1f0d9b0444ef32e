/* activity: POST /create-activity, GET /activity/{capsule_id}, PUT /update
 * and POST /action.
 *
 * All run as the authenticated caller: every database access inside a
 * transaction of the caller's tenant (row-level security hides every other
 * tenant's rows, so another tenant's capsule_id is simply not found), and
 * the cache key carries the caller's tenant. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_activity.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_state.h"
#include "cg_util.h"
#include "change.h"
#include "handlers.h"

/* Nesting the parser accepts in a request body and a cached activity:
 * room for the largest configurable metadata depth (64) inside them, so
 * that the validator, not the parser, refuses a too deep metadata (422
 * naming the field). */
#define BODY_JSON_DEPTH (64 + 8)
/* "cg:{" tenant (<= 64) "}:activity:" capsule_id (<= 255) */
#define CACHE_KEY_MAX 512

#define STAT_CACHE_HITS "cg:stats:cache_hits"
#define STAT_CACHE_MISSES "cg:stats:cache_misses"

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

/* Stores `activity` in the cache unless a newer copy is there (the one
 * version-guarded store of lib). Failures only cost a later miss. */
static void cache_store(cg_ctx *ctx, const char *tenant, json_object *activity)
{
	int rc = cg_activity_cache_store(ctx->redis, ctx->cfg, tenant, activity);

	if (rc < 0)
		cg_log_debug("cache store: %s", rc == -1 ? "activity without capsule_id or version"
							 : cg_redis_strerror(rc));
	else if (rc == 0)
		cg_log_debug("cache store: a copy as new or newer is cached");
}

static void count(cg_ctx *ctx, const char *key)
{
	int rc = cg_redis_incrby(ctx->redis, key, 1, NULL);

	if (rc != CG_REDIS_OK)
		cg_log_debug("INCR %s: %s", key, cg_redis_strerror(rc));
}

json_object *cg_answer_wrap(json_object *val, const char *key, int with_success)
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

void cg_send_field_error(cg_req *req, const cg_field_error *fe)
{
	cg_req_send_error(req, 422, fe->code != NULL ? fe->code : "validation_failed",
			  fe->message != NULL ? fe->message : "invalid request", fe->field);
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

/* After the commit: publish the event, record that, refresh the cache,
 * answer `status` with `resp_text`. A failure here never fails the
 * request: the event is committed and the relay in push-daemon publishes
 * what was not marked published. */
static void after_commit(cg_ctx *ctx, cg_req *req, const char *tenant, json_object *activity,
			 json_object *event, int status, const char *resp_text)
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
	cache_store(ctx, tenant, activity);
	cg_req_send_text(req, status, resp_text, strlen(resp_text));
}

void cg_handle_create_activity(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *tenant = call->who->tenant;
	json_object *body = NULL, *activity = NULL, *event = NULL, *resp = NULL;
	cg_activity_new a;
	cg_field_error fe;
	cg_limits lim;
	cg_change ch;
	const char *text, *resp_text;
	size_t len;
	int rc;

	memset(&ch, 0, sizeof ch);
	body = cg_req_json_body(req, BODY_JSON_DEPTH, &text, &len);
	if (body == NULL)
		goto out; /* answered */
	cg_limits_from_config(ctx->cfg, &lim);
	memset(&fe, 0, sizeof fe);
	if (cg_activity_validate_new(body, &lim, &a, &fe) < 0) {
		cg_send_field_error(req, &fe);
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
	resp = cg_answer_wrap(activity, "activity", 1);
	resp_text = cg_change_commit_json(ctx, req, call, &ch, 201, resp);
	if (resp_text == NULL)
		goto out; /* answered */
	cg_log_info("created activity capsule_id=%s event_id=%s by %s", a.capsule_id,
		    cg_event_str(event, "event_id"), call->who->subject);
	after_commit(ctx, req, tenant, activity, event, 201, resp_text);
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
		/* Guarded: a copy a writer stored meanwhile is newer and stays. */
		if (have_key)
			cache_store(ctx, tenant, activity);
	}
	resp = cg_answer_wrap(activity, "activity", 0);
	if (resp == NULL) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, 200, resp);
out:
	json_object_put(resp);
	json_object_put(activity);
}

/* Answers a refused or failed change of an activity. `current` is the
 * unchanged activity (for EFINAL / ETRANSITION, may be NULL), `to` the
 * state asked for and `field` the request member that asked for it. */
static void send_change_error(cg_ctx *ctx, cg_req *req, int rc, json_object *current,
			      const char *to, const char *field, const char *what)
{
	const char *from = cg_event_str(current, "state");
	char msg[200];

	switch (rc) {
	case CG_ACT_ENOTFOUND:
		cg_req_send_error(req, 404, "not_found", "activity not found", NULL);
		break;
	case CG_ACT_EFINAL:
		snprintf(msg, sizeof msg, "the activity is %s, a final state: nothing may change it",
			 from[0] != '\0' ? from : "in a final state");
		cg_req_send_error(req, 409, "final_state", msg, NULL);
		break;
	case CG_ACT_ETRANSITION:
		snprintf(msg, sizeof msg, "the state machine does not allow a move from %s to %s",
			 from[0] != '\0' ? from : "its state", to != NULL ? to : "that state");
		cg_req_send_error(req, 409, "invalid_transition", msg, field);
		break;
	case CG_ACT_ELIMIT:
		snprintf(msg, sizeof msg, "metadata must be at most %ld bytes (after the merge)",
			 ctx->cfg->max_metadata_bytes);
		cg_req_send_error(req, 422, "validation_failed", msg, "metadata");
		break;
	default:
		cg_send_db_error(ctx, req, rc, what);
		break;
	}
}

void cg_handle_update_activity(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *tenant = call->who->tenant;
	json_object *body = NULL, *activity = NULL, *event = NULL, *resp = NULL;
	cg_activity_patch p;
	cg_field_error fe;
	cg_limits lim;
	cg_change ch;
	const char *text, *resp_text;
	size_t len;
	int rc;

	memset(&ch, 0, sizeof ch);
	body = cg_req_json_body(req, BODY_JSON_DEPTH, &text, &len);
	if (body == NULL)
		goto out; /* answered */
	cg_limits_from_config(ctx->cfg, &lim);
	memset(&fe, 0, sizeof fe);
	if (cg_activity_validate_update(body, &lim, &p, &fe) < 0) {
		cg_send_field_error(req, &fe);
		goto out;
	}
	cg_call_set_target(call, p.capsule_id);

	if (cg_change_begin(ctx, req, call, &ch, text, len) != 0)
		goto out; /* answered: replay, key reused, database down */
	rc = cg_activity_update(ctx->db, tenant, &p, call->who->subject, &activity, &event);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		send_change_error(ctx, req, rc, activity, p.state, "state", "update activity");
		goto out;
	}
	resp = cg_answer_wrap(activity, "activity", 1);
	resp_text = cg_change_commit_json(ctx, req, call, &ch, 200, resp);
	if (resp_text == NULL)
		goto out; /* answered */
	cg_log_info("updated activity capsule_id=%s version=%lld event_id=%s by %s", p.capsule_id,
		    cg_event_int(event, "version"), cg_event_str(event, "event_id"),
		    call->who->subject);
	after_commit(ctx, req, tenant, activity, event, 200, resp_text);
out:
	cg_change_free(ctx, &ch);
	json_object_put(resp);
	json_object_put(event);
	json_object_put(activity);
	json_object_put(body);
}

/* {"success": true, "action": {...}, "activity": {...}} holding new
 * references; NULL when memory runs out. */
static json_object *action_answer(json_object *action, json_object *activity)
{
	json_object *o = cg_answer_wrap(action, "action", 1);

	if (o == NULL)
		return NULL;
	if (json_object_object_add(o, "activity", json_object_get(activity)) != 0) {
		json_object_put(activity);
		json_object_put(o);
		return NULL;
	}
	return o;
}

void cg_handle_action(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *tenant = call->who->tenant;
	json_object *body = NULL, *action = NULL, *activity = NULL, *event = NULL, *resp = NULL;
	cg_action_req a;
	cg_field_error fe;
	cg_limits lim;
	cg_change ch;
	const char *text, *resp_text;
	size_t len;
	int rc;

	memset(&ch, 0, sizeof ch);
	body = cg_req_json_body(req, BODY_JSON_DEPTH, &text, &len);
	if (body == NULL)
		goto out; /* answered */
	cg_limits_from_config(ctx->cfg, &lim);
	memset(&fe, 0, sizeof fe);
	if (cg_activity_validate_action(body, &lim, &a, &fe) < 0) {
		cg_send_field_error(req, &fe);
		goto out;
	}
	cg_call_set_target(call, a.capsule_id);

	if (cg_change_begin(ctx, req, call, &ch, text, len) != 0)
		goto out; /* answered: replay, key reused, database down */
	rc = cg_activity_act(ctx->db, tenant, &a, call->who->subject, &action, &activity, &event);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		send_change_error(ctx, req, rc, activity, cg_action_target(a.action_type),
				  "action_type", "action");
		goto out;
	}
	resp = action_answer(action, activity);
	resp_text = cg_change_commit_json(ctx, req, call, &ch, 200, resp);
	if (resp_text == NULL)
		goto out; /* answered */
	cg_log_info("action %s %s on capsule_id=%s version=%lld event_id=%s by %s",
		    cg_event_str(action, "action_id"), a.action_type, a.capsule_id,
		    cg_event_int(event, "version"), cg_event_str(event, "event_id"),
		    call->who->subject);
	after_commit(ctx, req, tenant, activity, event, 200, resp_text);
out:
	cg_change_free(ctx, &ch);
	json_object_put(resp);
	json_object_put(event);
	json_object_put(activity);
	json_object_put(action);
	json_object_put(body);
}

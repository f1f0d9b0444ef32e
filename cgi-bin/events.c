/* events: POST /api/v1/events, the generic publish of a registered event type
 * to a user, a channel, an agent or the whole tenant of the caller.
 *
 * The outbox event is written inside the change's tenant transaction (with
 * the idempotency key and the audit row), then published after the commit;
 * when Redis is down the relay publishes it later (the answer is still 202). */
#include "config.h"

#include <string.h>

#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"
#include "change.h"
#include "handlers.h"

#define EVENT_BODY_DEPTH (64 + 8)     /* as activities: the payload may nest deeply */
#define EVENT_DATA_MAX (1024 * 1024)  /* bytes of compact "data" */
#define EVENT_ID_MAX 255              /* user_id, agent_id, capsule_id: cg_id_valid */

/* An optional id member: absent/null -> *out NULL and 0; a valid id -> 0;
 * else answers 422 naming the field and returns -1. */
static int optional_id(cg_req *req, json_object *body, const char *key, const char **out)
{
	cg_json_status st = cg_json_get_string(body, key, EVENT_ID_MAX, out);

	if (st == CG_JSON_ABSENT) {
		*out = NULL;
		return 0;
	}
	if (st != CG_JSON_OK || !cg_id_valid(*out)) {
		cg_req_send_error(req, 422, "validation_failed",
				  "must be 1..255 characters of [A-Za-z0-9_.:-]", key);
		return -1;
	}
	return 0;
}

/* Validates the body into *type, *aud, *capsule_id and *data. Returns 0, or
 * -1 after answering 422. */
static int validate(cg_req *req, json_object *body, const char **type, cg_event_audience *aud,
		    const char **capsule_id, json_object **data)
{
	const char *data_text;
	int n = 0;

	if (cg_json_get_string(body, "type", 128, type) != CG_JSON_OK ||
	    cg_event_type_find(*type) == NULL) {
		cg_req_send_error(req, 422, "validation_failed", "type must be a registered event type",
				  "type");
		return -1;
	}
	memset(aud, 0, sizeof *aud);
	if (optional_id(req, body, "user_id", &aud->user_id) < 0 ||
	    optional_id(req, body, "agent_id", &aud->agent_id) < 0 ||
	    optional_id(req, body, "capsule_id", capsule_id) < 0)
		return -1;
	switch (cg_json_get_string(body, "channel", CG_CHANNEL_MAX, &aud->channel)) {
	case CG_JSON_ABSENT:
		aud->channel = NULL;
		break;
	case CG_JSON_OK:
		if (cg_event_capsule_channel(aud->channel) != NULL)
			break;
		/* fall through */
	default:
		cg_req_send_error(req, 422, "validation_failed",
				  "channel must be \"capsule:<capsule_id>\"", "channel");
		return -1;
	}
	n = (aud->user_id != NULL) + (aud->channel != NULL) + (aud->agent_id != NULL);
	if (n > 1) {
		cg_req_send_error(req, 422, "validation_failed",
				  "at most one of user_id, channel and agent_id", NULL);
		return -1;
	}
	if (cg_json_get_object(body, "data", data) != CG_JSON_OK) {
		cg_req_send_error(req, 422, "validation_failed", "data must be an object", "data");
		return -1;
	}
	data_text = cg_json_compact(*data);
	if (data_text == NULL || strlen(data_text) > EVENT_DATA_MAX) {
		cg_req_send_error(req, 422, "validation_failed", "data must be at most 1 MiB", "data");
		return -1;
	}
	return 0;
}

/* The answer's view of `event`: every member but the payload (which the
 * caller has). NULL when memory runs out. */
static json_object *event_summary(json_object *event)
{
	json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	json_object_object_foreach(event, key, val) {
		if (strcmp(key, "data") == 0)
			continue;
		if (json_object_object_add(o, key, json_object_get(val)) != 0) {
			json_object_put(val);
			json_object_put(o);
			return NULL;
		}
	}
	return o;
}

/* Publishes the committed event (the relay retries what fails here). */
static void publish(cg_ctx *ctx, const char *tenant, json_object *event)
{
	const char *event_id = cg_event_str(event, "event_id");
	char stream_id[64];
	int rc = cg_event_publish(ctx->redis, ctx->cfg, event, stream_id, sizeof stream_id);

	if (rc != CG_REDIS_OK) {
		cg_log_warn("event %s not published (%s: %s); the relay will publish it", event_id,
			    cg_redis_strerror(rc), cg_redis_errmsg(ctx->redis));
		return;
	}
	rc = cg_event_mark_published(ctx->db, tenant, event_id, stream_id);
	if (rc != 0)
		cg_log_warn("event %s published as %s but not marked (%s); the relay may publish it again",
			    event_id, stream_id, cg_db_strerror(rc));
}

void cg_handle_event_publish(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *tenant = call->who->tenant;
	json_object *body = NULL, *data = NULL, *event = NULL, *summary = NULL, *resp = NULL;
	const char *text, *resp_text, *type = NULL, *capsule_id = NULL;
	cg_event_audience aud;
	cg_change ch;
	size_t len;
	int rc;

	memset(&ch, 0, sizeof ch);
	body = cg_req_json_body(req, EVENT_BODY_DEPTH, &text, &len);
	if (body == NULL)
		goto out; /* answered: 413 over max_body_bytes, 415, 400 */
	if (validate(req, body, &type, &aud, &capsule_id, &data) < 0)
		goto out;
	cg_call_set_target(call, type);

	if (cg_change_begin(ctx, req, call, &ch, text, len) != 0)
		goto out; /* answered: replay, key reused, database down */
	rc = cg_event_insert_to(ctx->db, tenant, type, capsule_id, &aud, 0, cg_json_compact(data),
				call->who->subject, NULL, &event);
	if (rc != 0) {
		cg_change_abort(ctx, &ch);
		cg_send_db_error(ctx, req, rc, "publish event");
		goto out;
	}
	summary = event_summary(event);
	resp = summary != NULL ? cg_answer_wrap(summary, "event", 1) : NULL;
	resp_text = cg_change_commit_json(ctx, req, call, &ch, 202, resp);
	if (resp_text == NULL)
		goto out; /* answered */
	cg_log_info("event %s type=%s published by %s", cg_event_str(event, "event_id"), type,
		    call->who->subject);
	publish(ctx, tenant, event);
	cg_req_send_text(req, 202, resp_text, strlen(resp_text));
out:
	cg_change_free(ctx, &ch);
	json_object_put(resp);
	json_object_put(summary);
	json_object_put(event);
	json_object_put(body);
}

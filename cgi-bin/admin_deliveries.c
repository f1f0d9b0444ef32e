/* admin_deliveries: GET /api/v1/admin/deliveries (the caller's tenant's push
 * deliveries, newest first, filtered by status, channel, event_id and a
 * time range, paged) and POST /api/v1/admin/deliveries/{delivery_id}/retry
 * (a failed delivery becomes 'retry_requested'; push-daemon resends it with
 * the same apns-id). Admin only (router table). Rows: sql/006_deliveries.sql. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cg_json.h"
#include "cg_log.h"
#include "change.h"
#include "handlers.h"

#define FILTER_MAX CG_QUERY_VALUE_MAX
#define DELIVERY_ID_DIGITS 18

/* A timestamp column of p as RFC 3339 UTC (null stays null). */
#define TS_SQL(col) "to_char(p." col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* One delivery as the API shows it, built by PostgreSQL from a row p. The
 * target (a device token or endpoint) is shown by its first 8 characters. */
#define DELIVERY_JSON_SQL \
	"json_build_object('id', p.id, 'event_id', p.event_id, 'channel', p.channel," \
	" 'push_type', p.push_type, 'device_id', p.device_id, 'subscription_id', p.subscription_id," \
	" 'target', CASE WHEN length(p.target) > 8 THEN left(p.target, 8) || '…' ELSE p.target END," \
	" 'status', p.status, 'provider_status', p.provider_status," \
	" 'provider_reason', p.provider_reason, 'attempts', p.attempts, 'apns_id', p.apns_id," \
	" 'created_at', " TS_SQL("created_at") ", 'updated_at', " TS_SQL("updated_at") "," \
	" 'last_attempt_at', " TS_SQL("last_attempt_at") ", 'sent_at', " TS_SQL("sent_at") "," \
	" 'retry_requested_at', " TS_SQL("retry_requested_at") "," \
	" 'next_attempt_at', " TS_SQL("next_attempt_at") ")"

/* The tenant filter repeats what row-level security enforces anyway (and
 * lets the (tenant_id, [status,] created_at DESC, id DESC) indexes serve). */
static const char list_sql[] =
	"WITH f AS (SELECT * FROM deliveries WHERE tenant_id = $1"
	" AND ($2::text IS NULL OR status = $2)"
	" AND ($3::text IS NULL OR channel = $3)"
	" AND ($4::uuid IS NULL OR event_id = $4::uuid)"
	" AND ($5::timestamptz IS NULL OR created_at >= $5::timestamptz)"
	" AND ($6::timestamptz IS NULL OR created_at <= $6::timestamptz))"
	" SELECT (SELECT count(*) FROM f),"
	" coalesce((SELECT json_agg(" DELIVERY_JSON_SQL " ORDER BY p.created_at DESC, p.id DESC)"
	" FROM (SELECT * FROM f ORDER BY created_at DESC, id DESC LIMIT $7::integer"
	" OFFSET $8::bigint) p), '[]'::json)::text";

/* Locks the delivery, and turns it into a retry request when it failed.
 * No row: unknown (or another tenant's). Columns: the status it had, the
 * delivery as it is now (NULL unless it was failed). */
static const char retry_sql[] =
	"WITH t AS (SELECT id, status FROM deliveries WHERE tenant_id = $1 AND id = $2::bigint"
	"  FOR UPDATE),"
	" u AS (UPDATE deliveries d SET status = 'retry_requested', retry_requested_at = now(),"
	"  attempt_base = d.attempts, updated_at = now()"
	"  FROM t WHERE d.id = t.id AND t.status = 'failed' RETURNING d.*)"
	" SELECT t.status, (SELECT " DELIVERY_JSON_SQL " FROM u p)::text FROM t";

static const char *const statuses[] = { "pending", "sent", "failed", "deactivated",
					"retry_requested", "retry_due", NULL };
static const char *const channels[] = { "apns", "webpush", NULL };

/* 0 when `val` is NULL or one of `allowed`; else -1 after answering 422. */
static int one_of(cg_req *req, const char *name, const char *val, const char *const *allowed,
		  const char *msg)
{
	int i;

	if (val == NULL)
		return 0;
	for (i = 0; allowed[i] != NULL; i++)
		if (strcmp(val, allowed[i]) == 0)
			return 0;
	cg_req_send_error(req, 422, "validation_failed", msg, name);
	return -1;
}

/* 1 when `s` is a UUID in its text form (any case). */
static int uuid_text(const char *s)
{
	size_t i;

	for (i = 0; i < 36; i++) {
		char c = s[i];
		int dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? c != '-' :
			   !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return 0;
	}
	return s[36] == '\0';
}

void cg_handle_admin_deliveries(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *status, *channel, *event_id, *since, *until;
	const char *params[8];

	if (cg_req_query_text(req, "status", FILTER_MAX, &status) < 0 ||
	    cg_req_query_text(req, "channel", FILTER_MAX, &channel) < 0 ||
	    cg_req_query_text(req, "event_id", FILTER_MAX, &event_id) < 0 ||
	    cg_req_query_time(req, "since", &since) < 0 || cg_req_query_time(req, "until", &until) < 0)
		return;
	if (one_of(req, "status", status, statuses,
		   "status must be one of pending, sent, failed, deactivated, retry_requested, "
		   "retry_due") < 0 ||
	    one_of(req, "channel", channel, channels, "channel must be one of apns, webpush") < 0)
		return;
	if (event_id != NULL && !uuid_text(event_id)) {
		cg_req_send_error(req, 422, "validation_failed", "event_id must be a UUID", "event_id");
		return;
	}
	params[0] = call->who->tenant;
	params[1] = status;
	params[2] = channel;
	params[3] = event_id;
	params[4] = since;
	params[5] = until;
	cg_send_list_page(ctx, req, call->who->tenant, list_sql, params, 6, "deliveries",
			  "list deliveries");
}

void cg_handle_admin_delivery_retry(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *s = cg_path_param(&call->pp, "delivery_id");
	json_object *delivery = NULL, *resp = NULL;
	const char *params[2], *resp_text;
	PGresult *res = NULL;
	char err[128], msg[96];
	long long id;
	cg_change ch;
	int rc;

	memset(&ch, 0, sizeof ch);
	cg_call_set_target(call, s);
	/* an id that could never exist is simply not found */
	if (s == NULL || cg_req_parse_long(s, DELIVERY_ID_DIGITS, 1, 999999999999999999LL, &id) < 0) {
		cg_req_send_error(req, 404, "not_found", "delivery not found", NULL);
		goto out;
	}
	/* The POST carries no body: the Idempotency-Key covers method and path. */
	if (cg_change_begin(ctx, req, call, &ch, "", 0) != 0)
		goto out;
	params[0] = call->who->tenant;
	params[1] = s;
	rc = cg_db_exec(ctx->db, &res, retry_sql, 2, params);
	if (rc != CG_DB_OK) {
		cg_change_abort(ctx, &ch);
		cg_send_db_error(ctx, req, rc, "retry delivery");
		goto out;
	}
	if (PQntuples(res) == 0) {
		cg_change_abort(ctx, &ch);
		cg_req_send_error(req, 404, "not_found", "delivery not found", NULL);
		goto out;
	}
	if (PQgetisnull(res, 0, 1)) {
		cg_change_abort(ctx, &ch);
		snprintf(msg, sizeof msg, "only a failed delivery may be retried; this one is %s",
			 PQgetvalue(res, 0, 0));
		cg_req_send_error(req, 409, "not_retryable", msg, NULL);
		goto out;
	}
	delivery = cg_json_parse(PQgetvalue(res, 0, 1), strlen(PQgetvalue(res, 0, 1)), 16, err,
				 sizeof err);
	if (delivery == NULL)
		cg_log_error("retry delivery: %s", err);
	resp = delivery != NULL ? cg_answer_wrap(delivery, "delivery", 1) : NULL;
	resp_text = cg_change_commit_json(ctx, req, call, &ch, 202, resp);
	if (resp_text == NULL)
		goto out; /* answered */
	cg_log_info("delivery %lld: retry requested by %s", id, call->who->subject);
	cg_req_send_text(req, 202, resp_text, strlen(resp_text));
out:
	if (res != NULL)
		PQclear(res);
	cg_change_free(ctx, &ch);
	json_object_put(resp);
	json_object_put(delivery);
}

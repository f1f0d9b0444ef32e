/* admin_audit: GET /api/v1/admin/audit: the caller's tenant's audit log, newest
 * first, filtered by actor, action, outcome, target and a time range
 * (since/until, RFC 3339), paged with limit (default 50, at most 500) and
 * offset. Admin only (router table). Also the helpers every admin list
 * shares (handlers.h): RFC 3339 query filters and the paged answer. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_json.h"
#include "cg_log.h"
#include "handlers.h"

#define LIMIT_DEFAULT 50
#define LIMIT_MAX 500
#define OFFSET_MAX 100000000L
#define FILTER_MAX CG_QUERY_VALUE_MAX
#define TIME_MAX 40

/* One row of the answer, built by PostgreSQL. */
#define ENTRY_JSON_SQL \
	"json_build_object('id', p.id, 'actor', p.actor, 'actor_kind', p.actor_kind," \
	" 'role', p.role, 'action', p.action, 'target', p.target, 'request_id', p.request_id," \
	" 'outcome', p.outcome, 'status', p.status, 'detail', p.detail," \
	" 'created_at', to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"

/* The tenant filter repeats what row-level security enforces anyway (and
 * lets the (tenant_id, created_at) index serve the query). */
static const char list_sql[] =
	"WITH f AS (SELECT * FROM audit_log WHERE tenant_id = $1"
	" AND ($2::text IS NULL OR actor = $2)"
	" AND ($3::text IS NULL OR action = $3)"
	" AND ($4::text IS NULL OR outcome = $4)"
	" AND ($5::text IS NULL OR target = $5)"
	" AND ($6::timestamptz IS NULL OR created_at >= $6::timestamptz)"
	" AND ($7::timestamptz IS NULL OR created_at <= $7::timestamptz))"
	" SELECT (SELECT count(*) FROM f),"
	" coalesce((SELECT json_agg(" ENTRY_JSON_SQL " ORDER BY p.created_at DESC, p.id DESC)"
	" FROM (SELECT * FROM f ORDER BY created_at DESC, id DESC LIMIT $8::integer"
	" OFFSET $9::bigint) p), '[]'::json)::text";

static int digits(const char *s, int n)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int days_in_month(int y, int m)
{
	static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : d[m - 1];
}

/* Strict RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM),
 * 't'/'z' allowed as the RFC allows. Checked here so that PostgreSQL never
 * sees a value it would read otherwise ("now", "epoch", "2025-02-30"). */
static int rfc3339_valid(const char *s)
{
	size_t n = strlen(s), i = 19;
	int y, mo, d, h, mi, sec;

	if (n < 20 || n > TIME_MAX || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
		return 0;
	y = digits(s, 4);
	mo = digits(s + 5, 2);
	d = digits(s + 8, 2);
	h = digits(s + 11, 2);
	mi = digits(s + 14, 2);
	sec = digits(s + 17, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h < 0 || h > 23 ||
	    mi < 0 || mi > 59 || sec < 0 || sec > 59)
		return 0;
	if (s[i] == '.') {
		size_t start = ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start || i - start > 9)
			return 0;
	}
	if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n)
		return 1;
	if ((s[i] == '+' || s[i] == '-') && i + 6 == n && s[i + 3] == ':') {
		int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
		return oh >= 0 && oh <= 23 && om >= 0 && om <= 59;
	}
	return 0;
}

int cg_req_query_time(cg_req *req, const char *name, const char **out)
{
	char msg[96];

	if (cg_req_query_text(req, name, FILTER_MAX, out) < 0)
		return -1;
	if (*out != NULL && !rfc3339_valid(*out)) {
		snprintf(msg, sizeof msg, "%s must be an RFC 3339 date-time", name);
		cg_req_send_error(req, 422, "validation_failed", msg, name);
		return -1;
	}
	return 0;
}

void cg_handle_admin_audit(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *actor, *action, *outcome, *target, *since, *until;
	const char *params[9];

	if (cg_req_query_text(req, "actor", FILTER_MAX, &actor) < 0 ||
	    cg_req_query_text(req, "action", FILTER_MAX, &action) < 0 ||
	    cg_req_query_text(req, "outcome", FILTER_MAX, &outcome) < 0 ||
	    cg_req_query_text(req, "target", FILTER_MAX, &target) < 0 ||
	    cg_req_query_time(req, "since", &since) < 0 || cg_req_query_time(req, "until", &until) < 0)
		return;
	if (outcome != NULL && strcmp(outcome, "success") != 0 && strcmp(outcome, "failure") != 0 &&
	    strcmp(outcome, "denied") != 0) {
		cg_req_send_error(req, 422, "validation_failed",
				  "outcome must be one of success, failure, denied", "outcome");
		return;
	}
	params[0] = call->who->tenant;
	params[1] = actor;
	params[2] = action;
	params[3] = outcome;
	params[4] = target;
	params[5] = since;
	params[6] = until;
	cg_send_list_page(ctx, req, call->who->tenant, list_sql, params, 7, "entries",
			  "list audit log");
}

void cg_send_list_page(cg_ctx *ctx, cg_req *req, const char *tenant, const char *sql,
		       const char **params, int nfilters, const char *key, const char *what)
{
	PGresult *res = NULL;
	json_object *items = NULL, *o = NULL;
	char err[128], limbuf[24], offbuf[24];
	long limit, offset;
	int rc;

	if (cg_req_query_long(req, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX, &limit) < 0 ||
	    cg_req_query_long(req, "offset", 0, 0, OFFSET_MAX, &offset) < 0)
		return;
	snprintf(limbuf, sizeof limbuf, "%ld", limit);
	snprintf(offbuf, sizeof offbuf, "%ld", offset);
	params[nfilters] = limbuf;
	params[nfilters + 1] = offbuf;
	rc = cg_db_begin_tenant(ctx->db, tenant);
	if (rc == CG_DB_OK) {
		rc = cg_db_exec(ctx->db, &res, sql, nfilters + 2, params);
		if (rc == CG_DB_OK)
			rc = cg_db_commit(ctx->db);
		else
			cg_db_rollback(ctx->db);
	}
	if (rc != CG_DB_OK) {
		cg_send_db_error(ctx, req, rc, what);
		goto out;
	}
	items = cg_json_parse(PQgetvalue(res, 0, 1), strlen(PQgetvalue(res, 0, 1)), 64, err,
			      sizeof err);
	o = json_object_new_object();
	if (items == NULL || o == NULL) {
		cg_log_error("%s: %s", what, items == NULL ? err : "out of memory");
		cg_req_send_error(req, 500, "internal_error", "internal error", NULL);
		goto out;
	}
	if (json_object_object_add(o, key, items) != 0) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	items = NULL; /* o owns it */
	if (cg_json_add_int64(o, "total", strtoll(PQgetvalue(res, 0, 0), NULL, 10)) != 0 ||
	    cg_json_add_int64(o, "limit", limit) != 0 || cg_json_add_int64(o, "offset", offset) != 0) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, 200, o);
out:
	if (res != NULL)
		PQclear(res);
	json_object_put(items);
	json_object_put(o);
}

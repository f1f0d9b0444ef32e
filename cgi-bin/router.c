/* router: the REST route table (roles, audit actions) and the dispatch pipeline. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"
#include "cors.h"
#include "ratelimit.h"
#include "router.h"

/* The REST API. Several methods of one path are several rows. Every row
 * names the least role that may call it (roles are ordered: viewer <
 * operator < publisher < admin) and, when it changes state, the audit action
 * recorded for it. */
static const cg_route routes[] = {
	{ "POST", "/create-activity", CG_ROLE_PUBLISHER, "activity.create",
	  cg_handle_create_activity },
	{ "GET", "/activity/{capsule_id}", CG_ROLE_VIEWER, NULL, cg_handle_get_activity },
	{ "PUT", "/update", CG_ROLE_OPERATOR, "activity.update", cg_handle_update_activity },
	{ "POST", "/action", CG_ROLE_OPERATOR, "action.create", cg_handle_action },
	{ "GET", "/activities", CG_ROLE_VIEWER, NULL, cg_handle_activities },
	{ "GET", "/statistics", CG_ROLE_VIEWER, NULL, cg_handle_statistics },
	{ "GET", "/health", CG_ROLE_NONE, NULL, cg_handle_health },
	{ "GET", "/ready", CG_ROLE_NONE, NULL, cg_handle_ready },
	/* viewer and operator only for themselves: see ws_token.c */
	{ "GET", "/ws/token", CG_ROLE_VIEWER, NULL, cg_handle_ws_token },
	{ "POST", "/api/v1/activities/{capsule_id}/live-activity-tokens", CG_ROLE_VIEWER,
	  "live_activity.token", cg_handle_live_activity_token },
	{ "GET", "/api/v1/activities/{capsule_id}/events", CG_ROLE_VIEWER, NULL,
	  cg_handle_activity_history },
	{ "GET", "/api/v1/admin/audit", CG_ROLE_ADMIN, NULL, cg_handle_admin_audit },
	{ "GET", "/api/v1/admin/connections", CG_ROLE_ADMIN, NULL, cg_handle_admin_connections },
	{ "GET", "/api/v1/admin/deliveries", CG_ROLE_ADMIN, NULL, cg_handle_admin_deliveries },
	{ "POST", "/api/v1/admin/deliveries/{delivery_id}/retry", CG_ROLE_ADMIN, "delivery.retry",
	  cg_handle_admin_delivery_retry },
	{ "POST", "/api/v1/events", CG_ROLE_PUBLISHER, "event.publish", cg_handle_event_publish },
	/* devices: each caller registers, sees and deletes only its own */
	{ "POST", "/api/v1/devices", CG_ROLE_VIEWER, "device.register", cg_handle_device_register },
	{ "GET", "/api/v1/devices", CG_ROLE_VIEWER, NULL, cg_handle_device_list },
	{ "DELETE", "/api/v1/devices/{device_id}", CG_ROLE_VIEWER, "device.delete",
	  cg_handle_device_delete },
	{ "PUT", "/api/v1/devices/{device_id}/push-to-start-token", CG_ROLE_VIEWER,
	  "device.push_to_start", cg_handle_device_push_to_start },
	/* Web Push subscriptions: each caller manages only its own */
	{ "POST", "/api/v1/push/subscribe", CG_ROLE_VIEWER, "push.subscribe", cg_handle_push_subscribe },
	{ "DELETE", "/api/v1/push/subscribe", CG_ROLE_VIEWER, "push.unsubscribe",
	  cg_handle_push_unsubscribe },
	/* the same, for clients that can only POST (keepalive fetch of a closing page) */
	{ "POST", "/api/v1/push/unsubscribe", CG_ROLE_VIEWER, "push.unsubscribe",
	  cg_handle_push_unsubscribe },
	{ "GET", "/api/v1/push/subscriptions", CG_ROLE_VIEWER, NULL, cg_handle_push_subscriptions },
	{ "GET", "/api/v1/push/vapid-public-key", CG_ROLE_VIEWER, NULL,
	  cg_handle_push_vapid_public_key },
};

#define NROUTES (sizeof routes / sizeof routes[0])

typedef struct segments {
	int n;
	char *seg[CG_ROUTE_SEGMENTS_MAX]; /* decoded, NUL-terminated */
} segments;

const char *cg_path_param(const cg_path_params *pp, const char *name)
{
	size_t n = strlen(name);
	int i;

	for (i = 0; i < pp->n; i++) {
		if (pp->name_len[i] == n && memcmp(pp->name[i], name, n) == 0)
			return pp->value[i];
	}
	return NULL;
}

/* Splits `buf` (a copy of the path after its leading '/') on '/' and
 * decodes every segment in place. Returns 0, 1 when there are more segments
 * than any route has, -1 on a malformed escape or a NUL in a segment. */
static int split_path(char *buf, segments *s)
{
	char *p = buf;

	s->n = 0;
	for (;;) {
		size_t len = strcspn(p, "/");
		int last = p[len] == '\0';
		long dlen;

		if (s->n >= CG_ROUTE_SEGMENTS_MAX)
			return 1;
		p[len] = '\0';
		dlen = cg_pct_decode(p, len, 0, p);
		if (dlen < 0 || strlen(p) != (size_t)dlen)
			return -1;
		s->seg[s->n++] = p;
		if (last)
			break;
		p += len + 1;
	}
	return 0;
}

/* 1 when `pattern` matches the segments (filling *pp), else 0. */
static int match_pattern(const char *pattern, const segments *s, cg_path_params *pp)
{
	const char *p = pattern + 1; /* after the leading '/' */
	int i;

	pp->n = 0;
	for (i = 0; i < s->n; i++) {
		size_t plen = strcspn(p, "/");
		int is_param = plen >= 2 && p[0] == '{' && p[plen - 1] == '}';

		if (is_param) {
			if (s->seg[i][0] == '\0' || pp->n >= CG_PATH_PARAMS_MAX)
				return 0;
			pp->name[pp->n] = p + 1;
			pp->name_len[pp->n] = plen - 2;
			pp->value[pp->n] = s->seg[i];
			pp->n++;
		} else if (strlen(s->seg[i]) != plen || memcmp(s->seg[i], p, plen) != 0) {
			return 0;
		}
		if (p[plen] == '\0')
			return i == s->n - 1;
		p += plen + 1;
	}
	return 0;
}

/* "GET, POST": the distinct methods of the routes that matched the path. */
static void build_allow(const int *matched, char *out, size_t outlen)
{
	size_t i, j, len = 0;

	out[0] = '\0';
	for (i = 0; i < NROUTES; i++) {
		int seen = 0;
		size_t mlen;

		if (!matched[i])
			continue;
		for (j = 0; j < i; j++) {
			if (matched[j] && strcmp(routes[j].method, routes[i].method) == 0)
				seen = 1;
		}
		mlen = strlen(routes[i].method);
		if (seen || len + mlen + 3 > outlen)
			continue;
		if (len > 0) {
			memcpy(out + len, ", ", 2);
			len += 2;
		}
		memcpy(out + len, routes[i].method, mlen);
		len += mlen;
		out[len] = '\0';
	}
}

/* Runs the pipeline for a matched route: rate limits, authentication,
 * role, the handler, and the audit row of a state-changing request that
 * the handler did not write. */
static void run_route(cg_ctx *ctx, cg_req *req, const cg_route *route, cg_call *call)
{
	cg_principal who;
	cg_rl_result ip_rl, cred_rl;
	cg_authn an;

	if (route->min_role == CG_ROLE_NONE) {
		route->handler(ctx, req, call);
		return;
	}
	/* Per client address, before authentication: floods of bad
	 * credentials cost a Redis call, never a database lookup. */
	cg_ratelimit_ip(ctx->rl, ctx->redis, cg_req_param(req, "REMOTE_ADDR"), &ip_rl);
	if (!ip_rl.allowed) {
		cg_log_info("rate limited: client address");
		cg_ratelimit_send_refusal(req, &ip_rl);
		return;
	}
	an = cg_authenticate(ctx, req, &who);
	if (an != CG_AUTHN_OK) {
		cg_ratelimit_add_headers(req, &ip_rl);
		cg_auth_send_failure(req, an);
		return;
	}
	cg_ratelimit_credential(ctx->rl, ctx->redis, who.tenant, who.subject, &cred_rl);
	if (!cred_rl.allowed) {
		cg_log_info("rate limited: %s of tenant %s", who.subject, who.tenant);
		cg_ratelimit_send_refusal(req, &cred_rl);
		return;
	}
	/* From here on every answer carries the credential's bucket. */
	cg_ratelimit_add_headers(req, cred_rl.applied ? &cred_rl : &ip_rl);
	call->who = &who;
	call->action = route->action;
	if (who.role < route->min_role) {
		cg_log_info("forbidden: %s is %s, %s %s needs %s", who.subject, cg_role_name(who.role),
			    route->method, route->pattern, cg_role_name(route->min_role));
		cg_req_send_error(req, 403, "forbidden", "your role may not do this", NULL);
	} else {
		route->handler(ctx, req, call);
	}
	if (cg_db_in_transaction(ctx->db)) {
		cg_log_error("%s %s left a transaction open; rolled back", route->method,
			     route->pattern);
		cg_db_rollback(ctx->db);
	}
	if (route->action != NULL && !call->audited) {
		json_object *extra = NULL;

		if (who.role < route->min_role) {
			extra = json_object_new_object();
			if (extra != NULL &&
			    cg_json_add_string(extra, "required_role", cg_role_name(route->min_role)) != 0)
				cg_log_warn("audit: detail incomplete");
		}
		if (!cg_req_answered(req))
			cg_req_send_error(req, 500, "internal_error", "internal error", NULL);
		cg_audit_failure(ctx->db, &who, route->action, call->target, req, extra);
		json_object_put(extra);
	}
}

void cg_router_dispatch(cg_ctx *ctx, cg_req *req)
{
	const char *path = cg_req_path(req);
	const char *method = cg_req_method(req);
	int matched[NROUTES] = { 0 };
	int any = 0, rc;
	size_t i;
	char *buf = NULL;
	char allow[128];
	segments segs;
	cg_call call;

	memset(&call, 0, sizeof call);
	/* Before anything can answer, so that a browser may read errors too. */
	cg_cors_add_headers(ctx->cors, req);
	if (strlen(path) > CG_PATH_MAX || strlen(cg_req_query_string(req)) > CG_QUERY_MAX) {
		cg_req_send_error(req, 414, "uri_too_long", "request URI too long", NULL);
		goto out;
	}
	if (path[0] != '/') {
		cg_req_send_error(req, 404, "not_found", "no such resource", NULL);
		goto out;
	}
	buf = strdup(path + 1);
	if (buf == NULL) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	rc = split_path(buf, &segs);
	if (rc < 0) {
		cg_req_send_error(req, 400, "bad_request",
				  "malformed percent-encoding (or an encoded NUL) in the path",
				  NULL);
		goto out;
	}
	if (rc > 0) {
		cg_req_send_error(req, 404, "not_found", "no such resource", NULL);
		goto out;
	}
	for (i = 0; i < NROUTES; i++) {
		if (!match_pattern(routes[i].pattern, &segs, &call.pp))
			continue;
		if (strcmp(routes[i].method, method) == 0) {
			run_route(ctx, req, &routes[i], &call);
			goto out;
		}
		matched[i] = 1;
		any = 1;
	}
	if (!any) {
		cg_req_send_error(req, 404, "not_found", "no such resource", NULL);
		goto out;
	}
	build_allow(matched, allow, sizeof allow);
	if (cg_cors_is_preflight(req)) {
		cg_cors_answer_preflight(ctx->cors, req, allow);
		goto out;
	}
	if (cg_req_add_header(req, "Allow", allow) < 0)
		cg_log_warn("could not add the Allow header");
	cg_req_send_error(req, 405, "method_not_allowed", "method not allowed for this resource",
			  NULL);
out:
	free(buf);
}

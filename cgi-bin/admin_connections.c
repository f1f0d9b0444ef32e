/* admin_connections: GET /api/v1/admin/connections: the caller's tenant's live
 * WebSocket connections across every capsule-wsd instance, read from the
 * registry hashes cg:ws:registry:<instance_id> the instances keep in Redis
 * (each expires 15 s after its instance stops refreshing it). Optional
 * filters user_id and instance; sorted by connected_at, then connection_id.
 * Admin only (router table); read-only, so no audit row. Redis unreachable:
 * 503 "service_unavailable". */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cg_json.h"
#include "cg_log.h"
#include "handlers.h"

#define REGISTRY_MATCH "cg:ws:registry:*"
#define SCAN_COUNT "100"
#define SCAN_ROUNDS_MAX 100     /* bounds the SCAN walk */
#define KEYS_MAX 1000           /* instances looked at */
#define ENTRIES_MAX 100000      /* connections kept in one answer */
#define ENTRY_JSON_MAX 65536    /* bytes of one registry value */
#define ENTRY_DEPTH 8
#define FILTER_MAX CG_QUERY_VALUE_MAX
#define COLLECT_ENOMEM (-1000)  /* out of memory; apart from every CG_REDIS_* code */

typedef struct conn_list {
	json_object **v;
	size_t n, cap;
} conn_list;

static const char *entry_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int entry_cmp(const void *a, const void *b)
{
	json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
	const char *cx = entry_str(x, "connected_at"), *cy = entry_str(y, "connected_at");
	int c = strcmp(cx != NULL ? cx : "", cy != NULL ? cy : "");

	if (c != 0)
		return c;
	cx = entry_str(x, "connection_id");
	cy = entry_str(y, "connection_id");
	return strcmp(cx != NULL ? cx : "", cy != NULL ? cy : "");
}

/* Keeps `o` (takes the reference) when it belongs to `tenant` and passes the
 * filters; drops it otherwise. Returns 0, or -1 out of memory. */
static int keep_entry(conn_list *l, json_object *o, const char *tenant, const char *user_id,
		      const char *instance)
{
	const char *t = entry_str(o, "tenant");
	const char *u = entry_str(o, "user_id");
	const char *i = entry_str(o, "instance");
	json_object **nv;

	if (t == NULL || strcmp(t, tenant) != 0 ||
	    (user_id != NULL && (u == NULL || strcmp(u, user_id) != 0)) ||
	    (instance != NULL && (i == NULL || strcmp(i, instance) != 0)) || l->n >= ENTRIES_MAX) {
		json_object_put(o);
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap == 0 ? 16 : l->cap * 2;
		nv = realloc(l->v, cap * sizeof *nv);
		if (nv == NULL) {
			json_object_put(o);
			return -1;
		}
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = o;
	return 0;
}

/* HGETALL of one registry hash into `l`. Returns a CG_REDIS_* code, or
 * COLLECT_ENOMEM. A malformed value is skipped with a warning. */
static int read_instance(cg_ctx *ctx, const redisReply *key, conn_list *l, const char *tenant,
			 const char *user_id, const char *instance)
{
	const char *argv[2] = { "HGETALL", key->str };
	size_t lens[2] = { 7, key->len };
	redisReply *rep = NULL;
	char err[128];
	size_t i;
	int rc = cg_redis_cmd(ctx->redis, &rep, 2, argv, lens);

	if (rc != CG_REDIS_OK)
		goto out;
	if (rep->type != REDIS_REPLY_ARRAY)
		goto out; /* the key changed type or vanished: nothing to list */
	for (i = 0; i + 1 < rep->elements; i += 2) {
		const redisReply *v = rep->element[i + 1];
		json_object *o;

		if (v->type != REDIS_REPLY_STRING || v->len > ENTRY_JSON_MAX)
			continue;
		o = cg_json_parse_object(v->str, v->len, ENTRY_DEPTH, err, sizeof err);
		if (o == NULL) {
			cg_log_warn("connections: bad registry entry in %s: %s", key->str, err);
			continue;
		}
		if (keep_entry(l, o, tenant, user_id, instance) < 0) {
			rc = COLLECT_ENOMEM;
			goto out;
		}
	}
out:
	if (rep != NULL)
		freeReplyObject(rep);
	return rc;
}

/* Walks cg:ws:registry:* (bounded) and collects the matching entries.
 * Returns CG_REDIS_OK, another CG_REDIS_* code, or COLLECT_ENOMEM. */
static int collect(cg_ctx *ctx, conn_list *l, const char *tenant, const char *user_id,
		   const char *instance)
{
	char cursor[32] = "0";
	size_t seen = 0, i;
	int round, rc = CG_REDIS_OK;

	for (round = 0; round < SCAN_ROUNDS_MAX && seen < KEYS_MAX; round++) {
		const char *argv[] = { "SCAN", cursor, "MATCH", REGISTRY_MATCH, "COUNT", SCAN_COUNT };
		redisReply *rep = NULL;
		const redisReply *keys;

		rc = cg_redis_cmd(ctx->redis, &rep, 6, argv, NULL);
		if (rc != CG_REDIS_OK)
			return rc;
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING ||
		    rep->element[0]->len >= sizeof cursor ||
		    rep->element[1]->type != REDIS_REPLY_ARRAY) {
			cg_log_warn("connections: unexpected SCAN reply");
			freeReplyObject(rep);
			return CG_REDIS_EREPLY;
		}
		memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
		cursor[rep->element[0]->len] = '\0';
		keys = rep->element[1];
		for (i = 0; i < keys->elements && seen < KEYS_MAX; i++) {
			if (keys->element[i]->type != REDIS_REPLY_STRING)
				continue;
			seen++;
			rc = read_instance(ctx, keys->element[i], l, tenant, user_id, instance);
			if (rc != CG_REDIS_OK)
				break;
		}
		freeReplyObject(rep);
		if (rc != CG_REDIS_OK)
			return rc;
		if (strcmp(cursor, "0") == 0)
			break;
	}
	if (seen >= KEYS_MAX || round >= SCAN_ROUNDS_MAX)
		cg_log_warn("connections: registry walk cut at %zu instances", seen);
	return CG_REDIS_OK;
}

/* {"connections":[...],"total":N}; the entries move from `l` into it.
 * NULL when memory runs out. */
static json_object *answer(conn_list *l)
{
	json_object *arr = json_object_new_array_ext((int)(l->n > 0 ? l->n : 1));
	json_object *o = json_object_new_object();
	size_t i;

	if (arr == NULL || o == NULL)
		goto fail;
	for (i = 0; i < l->n; i++) {
		if (json_object_array_add(arr, l->v[i]) != 0)
			goto fail;
		l->v[i] = NULL; /* arr owns it */
	}
	if (json_object_object_add(o, "connections", arr) != 0)
		goto fail;
	arr = NULL; /* o owns it */
	if (cg_json_add_int64(o, "total", (long long)l->n) != 0)
		goto fail;
	return o;
fail:
	json_object_put(arr);
	json_object_put(o);
	return NULL;
}

void cg_handle_admin_connections(cg_ctx *ctx, cg_req *req, cg_call *call)
{
	const char *user_id, *instance;
	conn_list l = { NULL, 0, 0 };
	json_object *o = NULL;
	size_t i;
	int rc;

	if (cg_req_query_text(req, "user_id", FILTER_MAX, &user_id) < 0 ||
	    cg_req_query_text(req, "instance", FILTER_MAX, &instance) < 0)
		goto out;
	rc = collect(ctx, &l, call->who->tenant, user_id, instance);
	if (rc == COLLECT_ENOMEM) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	if (rc != CG_REDIS_OK) {
		cg_log_warn("connections: redis: %s %s", cg_redis_strerror(rc),
			    cg_redis_errmsg(ctx->redis));
		if (rc == CG_REDIS_ECONN)
			cg_req_send_error(req, 503, "service_unavailable", "redis unavailable", NULL);
		else
			cg_req_send_error(req, 500, "internal_error", "internal error", NULL);
		goto out;
	}
	if (l.n > 1)
		qsort(l.v, l.n, sizeof *l.v, entry_cmp);
	o = answer(&l);
	if (o == NULL) {
		cg_req_send_error(req, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	cg_req_send_json(req, 200, o);
out:
	for (i = 0; i < l.n; i++)
		json_object_put(l.v[i]);
	free(l.v);
	json_object_put(o);
}

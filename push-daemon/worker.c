/* worker: the worker thread: reads the event stream in the consumer group,
 * turns push events into one job per device, applies the results that need
 * PostgreSQL, XACKs events once every push is final, runs the outbox relay
 * and publishes the APNs health key. It may block; the sender never does. */
#include "config.h"

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "apns.h"
#include "apns_payload.h"
#include "cg_db.h"
#include "cg_event.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "pushd.h"

#define READ_COUNT 100          /* entries per XREADGROUP */
#define READ_BLOCK_MS 1000
#define BACKOFF_MS 1000         /* after a Redis or PostgreSQL failure */
#define RELAY_EVERY_MS 5000
#define RELAY_MIN_AGE_S 5
#define RELAY_MAX 100
#define PURGE_EVERY_MS 600000   /* idempotency keys past their 24 h */
#define STATUS_EVERY_MS 10000
#define STATUS_TTL_S 30
#define STATUS_KEY "cg:pushd:apns"
#define CLAIM_EVERY_MS 30000
#define CLAIM_MIN_IDLE_MS 600000 /* far longer than any event of a live instance stays pending */
#define DEACT_RETRY_MS 1000
#define ACK_BATCH 100

typedef struct ack_node {
	struct ack_node *next;
	char id[PUSHD_STREAM_ID_MAX];
} ack_node;

typedef struct worker {
	pushd *pd;
	const cg_config *cfg;
	cg_db *db;
	cg_redis *redis;
	int group_ready;
	int reading_pending;               /* re-reading our own pending entries */
	char pending_from[PUSHD_STREAM_ID_MAX];
	char claim_cursor[PUSHD_STREAM_ID_MAX];
	pushd_event *events;               /* events with jobs out */
	int outstanding;                   /* jobs not yet back */
	ack_node *acks;                    /* final events waiting for XACK */
	pushd_job *deact;                  /* deactivations waiting for PostgreSQL */
	int64_t next_relay, next_status, next_claim, next_deact, next_purge;
	int redis_down, db_down, relay_failing;
} worker;

/* --- outages: log once when a dependency goes, once when it is back ------- */

static void redis_failed(worker *w, int rc, const char *what)
{
	if (rc == CG_REDIS_ECONN) {
		if (!w->redis_down)
			cg_log_warn("redis unavailable (%s: %s); retrying every %d ms", what,
				    cg_redis_errmsg(w->redis), BACKOFF_MS);
		w->redis_down = 1;
	} else {
		cg_log_error("redis %s: %s", what, cg_redis_errmsg(w->redis));
	}
}

static void redis_ok(worker *w)
{
	if (w->redis_down)
		cg_log_info("redis is back");
	w->redis_down = 0;
}

static void db_failed(worker *w, int rc, const char *what)
{
	if (rc == CG_DB_ECONN) {
		if (!w->db_down)
			cg_log_warn("postgresql unavailable (%s: %s); retrying every %d ms", what,
				    cg_db_errmsg(w->db), BACKOFF_MS);
		w->db_down = 1;
	} else {
		cg_log_error("postgresql %s: %s: %s", what, cg_db_strerror(rc), cg_db_errmsg(w->db));
	}
}

static void db_ok(worker *w)
{
	if (w->db_down)
		cg_log_info("postgresql is back");
	w->db_down = 0;
}

/* --- acknowledgements ------------------------------------------------------ */

static void ack_add(worker *w, const char *stream_id)
{
	ack_node *a = calloc(1, sizeof *a);

	if (a == NULL) {
		/* Not acknowledged: the entry comes back after a restart. */
		cg_log_error("out of memory; entry %s stays pending", stream_id);
		return;
	}
	snprintf(a->id, sizeof a->id, "%s", stream_id);
	a->next = w->acks;
	w->acks = a;
}

/* XACKs what is waiting, ACK_BATCH ids per command. On a Redis failure the
 * ids stay for the next round. */
static void flush_acks(worker *w)
{
	while (w->acks != NULL) {
		const char *argv[3 + ACK_BATCH];
		ack_node *a = w->acks;
		int argc = 3, rc, i;

		argv[0] = "XACK";
		argv[1] = w->cfg->event_stream;
		argv[2] = w->cfg->push_group;
		for (; a != NULL && argc < 3 + ACK_BATCH; a = a->next)
			argv[argc++] = a->id;
		rc = cg_redis_cmd(w->redis, NULL, argc, argv, NULL);
		if (rc == CG_REDIS_ECONN) {
			redis_failed(w, rc, "XACK");
			return;
		}
		if (rc != CG_REDIS_OK)
			redis_failed(w, rc, "XACK"); /* e.g. NOGROUP: nothing left to ack */
		else
			redis_ok(w);
		for (i = 3; i < argc; i++) {
			a = w->acks;
			w->acks = a->next;
			cg_log_debug("acknowledged %s", a->id);
			free(a);
		}
	}
}

/* --- events and jobs ------------------------------------------------------- */

static void event_free(pushd_event *ev)
{
	if (ev == NULL)
		return;
	free(ev->tenant);
	free(ev->payload);
	free(ev);
}

static void event_unlink(worker *w, pushd_event *ev)
{
	if (ev->prev != NULL)
		ev->prev->next = ev->next;
	else
		w->events = ev->next;
	if (ev->next != NULL)
		ev->next->prev = ev->prev;
	ev->prev = ev->next = NULL;
}

static int event_in_flight(const worker *w, const char *stream_id)
{
	const pushd_event *ev;

	for (ev = w->events; ev != NULL; ev = ev->next)
		if (strcmp(ev->stream_id, stream_id) == 0)
			return 1;
	return 0;
}

/* One job of `ev` is final (or abandoned): free it, and once the event has
 * none left, acknowledge it unless something was abandoned. */
static void job_done(worker *w, pushd_job *job)
{
	pushd_event *ev = job->ev;

	pushd_job_free(job);
	w->outstanding--;
	if (--ev->remaining > 0)
		return;
	event_unlink(w, ev);
	if (!ev->abandoned) {
		cg_log_set_context(ev->event_id);
		cg_log_info("every push is final; acknowledging %s", ev->stream_id);
		cg_log_set_context(NULL);
		ack_add(w, ev->stream_id);
	}
	event_free(ev);
}

/* Runs one statement in its own transaction for `tenant`: the row-level
 * security policies admit only that tenant's rows. Returns a CG_DB_* code. */
static int tenant_exec(worker *w, const char *tenant, PGresult **res, const char *sql,
		       int n, const char *const *params)
{
	int rc = cg_db_begin_tenant(w->db, tenant);

	if (rc != CG_DB_OK)
		return rc;
	rc = cg_db_exec(w->db, res, sql, n, params);
	if (rc == CG_DB_OK)
		rc = cg_db_commit(w->db);
	else
		cg_db_rollback(w->db);
	if (rc != CG_DB_OK && res != NULL && *res != NULL) {
		PQclear(*res);
		*res = NULL;
	}
	return rc;
}

/* Marks the device of `job` inactive, unless it was re-registered after
 * APNs' timestamp (410) or after now. Returns a CG_DB_* code. */
static int deactivate(worker *w, pushd_job *job)
{
	static const char sql[] =
		"UPDATE devices SET active = false, deactivated_at = now(), deactivated_reason = $3,"
		" updated_at = now()"
		" WHERE tenant_id = $1 AND platform = 'ios' AND device_token = $2 AND active"
		" AND updated_at <= coalesce(to_timestamp($4::bigint / 1000.0), now())";
	char reason[96], ts[24];
	const char *params[4];
	PGresult *res = NULL;
	int rc;

	/* APNs' own word ("Unregistered", "BadDeviceToken", ...) */
	if (job->reason[0] != '\0')
		snprintf(reason, sizeof reason, "%s", job->reason);
	else
		snprintf(reason, sizeof reason, "HTTP %ld", job->status);
	snprintf(ts, sizeof ts, "%lld", job->timestamp_ms);
	params[0] = job->ev->tenant;
	params[1] = job->device_token;
	params[2] = reason;
	params[3] = job->timestamp_ms > 0 ? ts : NULL;
	rc = tenant_exec(w, job->ev->tenant, &res, sql, 4, params);
	cg_log_set_context(job->ev->event_id);
	if (rc == CG_DB_OK) {
		db_ok(w);
		if (strcmp(PQcmdTuples(res), "0") == 0)
			cg_log_info("device %.16s… not deactivated (%s): inactive or re-registered since",
				    job->device_token, reason);
		else
			cg_log_info("device %.16s… deactivated (%s)", job->device_token, reason);
	} else {
		db_failed(w, rc, "deactivating a device");
	}
	cg_log_set_context(NULL);
	if (res != NULL)
		PQclear(res);
	return rc;
}

static void handle_result(worker *w, pushd_job *job)
{
	switch (job->outcome) {
	case PUSHD_ABANDONED:
		job->ev->abandoned = 1;
		break;
	case PUSHD_DEACTIVATE:
		if (deactivate(w, job) == CG_DB_ECONN) {
			/* The event stays unacknowledged until this is written. */
			job->next = w->deact;
			w->deact = job;
			return;
		}
		break;
	case PUSHD_SENT:
	case PUSHD_FAILED:
		break;
	}
	job_done(w, job);
}

static void retry_deactivations(worker *w)
{
	pushd_job *list = w->deact, *job;

	w->deact = NULL;
	while (list != NULL) {
		job = list;
		list = job->next;
		job->next = NULL;
		handle_result(w, job); /* back on w->deact if PostgreSQL is still away */
	}
}

/* --- periodic work --------------------------------------------------------- */

static void write_status(worker *w)
{
	const pushd *pd = w->pd;
	int st = pd->apns != NULL ? atomic_load(&w->pd->apns_state) : PUSHD_APNS_NOT_CONFIGURED;
	const char *name = pushd_apns_state_name(st);
	int rc = cg_redis_setex(w->redis, STATUS_KEY, name, strlen(name), STATUS_TTL_S);

	if (rc != CG_REDIS_OK)
		redis_failed(w, rc, "SET " STATUS_KEY);
	else
		redis_ok(w);
}

static void run_relay(worker *w)
{
	int rc = cg_event_relay(w->db, w->redis, w->cfg, RELAY_MIN_AGE_S, RELAY_MAX);

	if (rc < 0) {
		if (!w->relay_failing)
			cg_log_warn("outbox relay failed (%d: %s / %s); retrying every %d ms", rc,
				    cg_db_errmsg(w->db), cg_redis_errmsg(w->redis), RELAY_EVERY_MS);
		w->relay_failing = 1;
		return;
	}
	if (w->relay_failing)
		cg_log_info("outbox relay works again");
	w->relay_failing = 0;
	if (rc > 0)
		cg_log_info("outbox relay published %d event(s)", rc);
}

/* Results, deactivation retries, acknowledgements and the timers. Never
 * reads the stream. */
/* Deletes idempotency keys older than 24 h, of every tenant (a narrow
 * SECURITY DEFINER function of 002_security.sql). */
static void purge_idempotency_keys(worker *w)
{
	PGresult *res = NULL;
	int rc = cg_db_exec(w->db, &res, "SELECT capsule_purge_idempotency_keys()", 0, NULL);

	if (rc == CG_DB_OK) {
		db_ok(w);
		if (strcmp(PQgetvalue(res, 0, 0), "0") != 0)
			cg_log_info("purged %s idempotency key(s) older than 24 h", PQgetvalue(res, 0, 0));
	} else {
		db_failed(w, rc, "purging idempotency keys");
	}
	if (res != NULL)
		PQclear(res);
}

static void housekeeping(worker *w)
{
	char ctx[128];
	const char *cur = cg_log_context();
	pushd_job *job;
	int64_t now;

	/* Called while an entry is being processed too: its event id must not
	 * label the lines of unrelated work. */
	snprintf(ctx, sizeof ctx, "%s", cur != NULL ? cur : "");
	cg_log_set_context(NULL);
	while ((job = pushd_queue_pop(w->pd->results)) != NULL)
		handle_result(w, job);
	now = cg_monotonic_ms();
	if (w->deact != NULL && now >= w->next_deact) {
		w->next_deact = now + DEACT_RETRY_MS;
		retry_deactivations(w);
	}
	flush_acks(w);
	if (now >= w->next_status) {
		w->next_status = now + STATUS_EVERY_MS;
		write_status(w);
	}
	if (now >= w->next_relay) {
		w->next_relay = now + RELAY_EVERY_MS;
		run_relay(w);
	}
	if (now >= w->next_purge) {
		w->next_purge = now + PURGE_EVERY_MS;
		purge_idempotency_keys(w);
	}
	cg_log_set_context(ctx[0] != '\0' ? ctx : NULL);
}

/* Waits up to `ms` for a result, then does the housekeeping. */
static void wait_a_while(worker *w, int ms)
{
	pushd_job *job = pushd_queue_pop_wait(w->pd->results, ms);

	if (job != NULL)
		handle_result(w, job);
	housekeeping(w);
}

static int stopping(const worker *w)
{
	return atomic_load(&w->pd->stop);
}

/* --- one stream entry ------------------------------------------------------ */

/* The event's iOS devices (runtime contracts). Returns a CG_DB_* code. */
static int select_devices(worker *w, json_object *ev, PGresult **res)
{
	static const char sql[] =
		"SELECT device_token FROM devices"
		" WHERE tenant_id = $1 AND platform = 'ios' AND active AND environment = $3"
		" AND ($2 = '' OR user_id = $2)" /* '': CG_DEVICES_TENANT */
		" ORDER BY id LIMIT $4";
	char limit[16];
	const char *params[4];

	snprintf(limit, sizeof limit, "%d", PUSHD_MAX_DEVICES_PER_EVENT + 1);
	params[0] = cg_event_str(ev, "tenant");
	params[1] = cg_event_str(ev, "user_id");
	params[2] = w->cfg->apns_use_sandbox ? "sandbox" : "production";
	params[3] = limit;
	return tenant_exec(w, params[0], res, sql, 4, params);
}

/* The event record for `jev` with its APNs payload; NULL on failure. */
static pushd_event *event_new(const char *stream_id, json_object *jev)
{
	pushd_event *ev = calloc(1, sizeof *ev);
	apns_headers h;

	if (ev == NULL)
		return NULL;
	snprintf(ev->stream_id, sizeof ev->stream_id, "%s", stream_id);
	snprintf(ev->event_id, sizeof ev->event_id, "%s", cg_event_str(jev, "event_id"));
	ev->tenant = strdup(cg_event_str(jev, "tenant"));
	if (ev->tenant == NULL || apns_payload_build(jev, &ev->payload, &ev->payload_len) < 0) {
		event_free(ev);
		return NULL;
	}
	apns_headers_build(jev, "", cg_now(), &h);
	ev->apns_priority = h.apns_priority;
	ev->expiration = h.expiration;
	snprintf(ev->collapse_id, sizeof ev->collapse_id, "%s", h.collapse_id);
	return ev;
}

/* Hands one job per row of `res` to the sender. Returns the number queued. */
static int queue_jobs(worker *w, pushd_event *ev, PGresult *res, int n)
{
	int i, queued = 0;

	for (i = 0; i < n; i++) {
		pushd_job *job = calloc(1, sizeof *job);

		if (job != NULL)
			job->device_token = strdup(PQgetvalue(res, i, 0));
		if (job == NULL || job->device_token == NULL) {
			cg_log_error("out of memory; event %s stays pending", ev->event_id);
			ev->abandoned = 1;
			pushd_job_free(job);
			break;
		}
		job->ev = ev;
		job->timestamp_ms = -1;
		apns_id_for(ev->event_id, job->device_token, job->apns_id);
		if (pushd_queue_push(w->pd->jobs, job) < 0) {
			cg_log_error("job queue full; event %s stays pending", ev->event_id);
			ev->abandoned = 1;
			pushd_job_free(job);
			break;
		}
		ev->remaining++;
		w->outstanding++;
		queued++;
	}
	return queued;
}

/* Processes one entry [id, [field, value, ...]]. `check_dup`: skip it when
 * it is already being delivered (re-read or claimed entries). Returns 0, or
 * -1 when the daemon is stopping before the entry was handed on (it stays
 * pending). */
static int process_entry(worker *w, const redisReply *entry, int check_dup)
{
	const cg_event_type *type;
	json_object *jev = NULL;
	pushd_event *ev = NULL;
	PGresult *res = NULL;
	const char *sid;
	int n, rc = 0;

	if (entry == NULL || entry->type != REDIS_REPLY_ARRAY || entry->elements < 1 ||
	    entry->element[0]->type != REDIS_REPLY_STRING ||
	    entry->element[0]->len >= PUSHD_STREAM_ID_MAX)
		return 0;
	sid = entry->element[0]->str;
	if (check_dup && event_in_flight(w, sid))
		return 0;
	jev = cg_event_from_stream_entry(entry);
	if (jev == NULL) {
		cg_log_info("stream entry %s is not an event; acknowledged", sid);
		ack_add(w, sid);
		return 0;
	}
	cg_log_set_context(cg_event_str(jev, "event_id"));
	type = cg_event_type_find(cg_event_str(jev, "type"));
	if (type == NULL || !(type->flags & CG_EV_PUSH) || w->pd->apns == NULL ||
	    cg_event_device_audience(jev) == CG_DEVICES_NONE) {
		ack_add(w, sid);
		goto out;
	}
	while (w->outstanding >= PUSHD_MAX_OUTSTANDING_JOBS && !stopping(w))
		wait_a_while(w, 200);
	for (;;) {
		if (stopping(w)) {
			rc = -1;
			goto out;
		}
		rc = select_devices(w, jev, &res);
		if (rc == CG_DB_OK)
			break;
		db_failed(w, rc, "selecting devices");
		wait_a_while(w, BACKOFF_MS);
	}
	db_ok(w);
	n = PQntuples(res);
	if (n == 0) {
		cg_log_debug("%s: no active iOS device; acknowledged", type->name);
		ack_add(w, sid);
		goto out;
	}
	if (n > PUSHD_MAX_DEVICES_PER_EVENT) {
		cg_log_warn("event %s reaches more than %d devices; pushing to the first %d",
			    cg_event_str(jev, "event_id"), PUSHD_MAX_DEVICES_PER_EVENT,
			    PUSHD_MAX_DEVICES_PER_EVENT);
		n = PUSHD_MAX_DEVICES_PER_EVENT;
	}
	ev = event_new(sid, jev);
	if (ev == NULL) {
		cg_log_error("event %s: cannot build the APNs payload; acknowledged without pushing",
			     cg_event_str(jev, "event_id"));
		ack_add(w, sid);
		goto out;
	}
	ev->next = w->events;
	if (w->events != NULL)
		w->events->prev = ev;
	w->events = ev;
	if (queue_jobs(w, ev, res, n) == 0) {
		event_unlink(w, ev); /* nothing out: not acknowledged, comes back later */
		event_free(ev);
		goto out;
	}
	cg_log_info("pushing %s to %d device(s)", type->name, ev->remaining);
	apns_sender_wakeup(w->pd->apns);
out:
	cg_log_set_context(NULL);
	if (res != NULL)
		PQclear(res);
	json_object_put(jev);
	return rc == 0 ? 0 : -1;
}

/* --- the stream ------------------------------------------------------------ */

static int ensure_group(worker *w)
{
	const char *argv[] = { "XGROUP", "CREATE", w->cfg->event_stream, w->cfg->push_group, "0",
			       "MKSTREAM" };
	int rc = cg_redis_cmd(w->redis, NULL, 6, argv, NULL);

	if (rc != CG_REDIS_OK && !(rc == CG_REDIS_EREPLY && strstr(cg_redis_errmsg(w->redis), "BUSYGROUP"))) {
		redis_failed(w, rc, "XGROUP CREATE");
		return -1;
	}
	redis_ok(w);
	w->group_ready = 1;
	w->reading_pending = 1; /* first our own pending entries, from the start */
	snprintf(w->pending_from, sizeof w->pending_from, "0");
	cg_log_info("consumer %s in group %s on stream %s", w->cfg->instance_id, w->cfg->push_group,
		    w->cfg->event_stream);
	return 0;
}

/* The entries array of an XREADGROUP reply [[stream, [entry, ...]]], or NULL. */
static const redisReply *read_entries(const redisReply *rep)
{
	const redisReply *s;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1)
		return NULL;
	s = rep->element[0];
	if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 || s->element[1]->type != REDIS_REPLY_ARRAY)
		return NULL;
	return s->element[1];
}

/* One XREADGROUP: our pending entries first, then new ones (blocking 1 s). */
static void read_batch(worker *w)
{
	char count[16], block[16];
	const char *argv[12];
	redisReply *rep = NULL;
	const redisReply *entries;
	int argc = 0, rc;
	size_t i;

	snprintf(count, sizeof count, "%d", READ_COUNT);
	snprintf(block, sizeof block, "%d", READ_BLOCK_MS);
	argv[argc++] = "XREADGROUP";
	argv[argc++] = "GROUP";
	argv[argc++] = w->cfg->push_group;
	argv[argc++] = w->cfg->instance_id;
	argv[argc++] = "COUNT";
	argv[argc++] = count;
	if (!w->reading_pending) {
		argv[argc++] = "BLOCK";
		argv[argc++] = block;
	}
	argv[argc++] = "STREAMS";
	argv[argc++] = w->cfg->event_stream;
	argv[argc++] = w->reading_pending ? w->pending_from : ">";
	rc = cg_redis_cmd(w->redis, &rep, argc, argv, NULL);
	if (rc != CG_REDIS_OK) {
		if (rc == CG_REDIS_EREPLY && strstr(cg_redis_errmsg(w->redis), "NOGROUP")) {
			cg_log_warn("consumer group %s is gone (Redis restarted?); creating it again",
				    w->cfg->push_group);
			w->group_ready = 0;
		} else {
			redis_failed(w, rc, "XREADGROUP");
		}
		wait_a_while(w, BACKOFF_MS);
		return;
	}
	redis_ok(w);
	entries = read_entries(rep);
	if (entries == NULL || entries->elements == 0) {
		if (w->reading_pending) {
			cg_log_debug("no pending entries left; reading new ones");
			w->reading_pending = 0;
		}
		goto out;
	}
	for (i = 0; i < entries->elements && !stopping(w); i++) {
		const redisReply *e = entries->element[i];

		if (process_entry(w, e, w->reading_pending) < 0)
			break;
		if (w->reading_pending && e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
		    e->element[0]->type == REDIS_REPLY_STRING)
			snprintf(w->pending_from, sizeof w->pending_from, "%s", e->element[0]->str);
	}
out:
	freeReplyObject(rep);
}

/* Takes over entries another consumer (a dead instance) left pending for
 * longer than CLAIM_MIN_IDLE_MS. */
static void claim_abandoned(worker *w)
{
	char idle[16], count[16];
	const char *argv[] = { "XAUTOCLAIM", w->cfg->event_stream, w->cfg->push_group,
			       w->cfg->instance_id, idle, w->claim_cursor, "COUNT", count };
	redisReply *rep = NULL;
	const redisReply *entries;
	size_t i;
	int rc;

	snprintf(idle, sizeof idle, "%d", CLAIM_MIN_IDLE_MS);
	snprintf(count, sizeof count, "%d", READ_COUNT);
	rc = cg_redis_cmd(w->redis, &rep, 8, argv, NULL);
	if (rc != CG_REDIS_OK) {
		redis_failed(w, rc, "XAUTOCLAIM");
		return;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
	    rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY)
		goto out;
	snprintf(w->claim_cursor, sizeof w->claim_cursor, "%s", rep->element[0]->str);
	entries = rep->element[1];
	if (entries->elements > 0)
		cg_log_info("claimed %zu entries left pending by another consumer", entries->elements);
	for (i = 0; i < entries->elements && !stopping(w); i++)
		if (process_entry(w, entries->element[i], 1) < 0)
			break;
out:
	freeReplyObject(rep);
}

/* --- the thread ------------------------------------------------------------ */

static void drain(worker *w)
{
	pushd_job *job;

	/* The sender finishes what is under way and hands everything back. */
	while (!apns_sender_finished(w->pd->apns)) {
		apns_sender_wakeup(w->pd->apns);
		wait_a_while(w, 100);
	}
	while ((job = pushd_queue_pop(w->pd->results)) != NULL)
		handle_result(w, job);
	/* Jobs the sender never started stay pending in Redis. */
	while ((job = pushd_queue_pop(w->pd->jobs)) != NULL) {
		job->outcome = PUSHD_ABANDONED;
		handle_result(w, job);
	}
	retry_deactivations(w);
	while ((job = w->deact) != NULL) {
		w->deact = job->next;
		job->ev->abandoned = 1;
		job_done(w, job);
	}
	flush_acks(w);
	if (w->acks != NULL)
		cg_log_warn("could not acknowledge every final event; they will be pushed again");
}

void *pushd_worker_main(void *arg)
{
	pushd *pd = arg;
	worker w;
	char err[256];
	int64_t now;
	ack_node *a;

	memset(&w, 0, sizeof w);
	w.pd = pd;
	w.cfg = &pd->cfg;
	snprintf(w.claim_cursor, sizeof w.claim_cursor, "0-0");
	w.db = cg_db_open(pd->cfg.database_url, err, sizeof err);
	if (w.db == NULL) {
		cg_log_error("database_url: %s", err);
		goto fail;
	}
	w.redis = cg_redis_open(pd->cfg.redis_url, 0, err, sizeof err);
	if (w.redis == NULL) {
		cg_log_error("redis_url: %s", err);
		goto fail;
	}
	now = cg_monotonic_ms();
	w.next_relay = now + RELAY_EVERY_MS;
	w.next_claim = now + CLAIM_EVERY_MS;
	while (!stopping(&w)) {
		housekeeping(&w);
		if (!w.group_ready) {
			if (ensure_group(&w) < 0)
				wait_a_while(&w, BACKOFF_MS);
			continue;
		}
		if (w.outstanding >= PUSHD_MAX_OUTSTANDING_JOBS) {
			wait_a_while(&w, 200);
			continue;
		}
		if (!w.reading_pending && cg_monotonic_ms() >= w.next_claim) {
			w.next_claim = cg_monotonic_ms() + CLAIM_EVERY_MS;
			claim_abandoned(&w);
			continue;
		}
		read_batch(&w);
	}
	cg_log_info("worker stopping: %d push(es) under way", w.outstanding);
	drain(&w);
	goto out;
fail:
	/* No job was ever queued: only wait for the sender to see the stop. */
	pushd_fatal_stop(pd);
	while (!apns_sender_finished(pd->apns)) {
		apns_sender_wakeup(pd->apns);
		usleep(50000);
	}
out:
	while ((a = w.acks) != NULL) {
		w.acks = a->next;
		free(a);
	}
	while (w.events != NULL) {
		pushd_event *ev = w.events;

		event_unlink(&w, ev);
		event_free(ev);
	}
	cg_redis_close(w.redis);
	cg_db_close(w.db);
	cg_log_info("worker stopped");
	return NULL;
}

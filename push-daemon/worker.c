/* worker: the worker thread: reads the event stream in the consumer group,
 * turns push events into one job per device (each a deliveries row),
 * records outcomes in PostgreSQL in batches, XACKs events once every push is
 * final there, resends deliveries an admin asked to retry, runs the outbox
 * relay and publishes the APNs health key. It may block; the sender never
 * does. */
#include "config.h"

#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "apns.h"
#include "apns_payload.h"
#include "cg_db.h"
#include "creds.h"
#include "cg_event.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "pushd.h"
#include "webpush_payload.h"

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
#define ACK_BATCH 100
#define FLUSH_EVERY_MS 100      /* outcomes wait at most this long for their batch */
#define FLUSH_MAX 500           /* outcomes per UPDATE */
#define RETRY_EVERY_MS 2000     /* looks for deliveries an admin asked to retry */
#define DUE_EVERY_MS 250        /* looks at the delayed queue in Redis */
#define DUE_MAX 500             /* delayed retries taken at once */
#define RETRY_QUEUE_KEY "cg:pushd:retry"
#define RETRY_BATCH_TEXT "500"  /* retried deliveries picked per tenant and round */

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
	pushd_job *out_head, *out_tail;    /* results not yet written to PostgreSQL */
	int out_n;
	int64_t out_since;                 /* when the oldest of them arrived */
	int64_t next_relay, next_status, next_claim, next_flush, next_purge, next_retry, next_due;
	int redis_down, db_down, relay_failing;
	char recover_s[24];                /* push_retry_recover_s as an SQL parameter */
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
	free(ev->la_payload);
	free(ev->la_start_payload);
	free(ev->wp_payload);
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

/* One job of `ev` is final (or abandoned) and recorded: free it, and once
 * the event has none left, acknowledge its stream entry unless something
 * was abandoned (an admin retry has no entry to acknowledge). */
static void job_done(worker *w, pushd_job *job)
{
	pushd_event *ev = job->ev;

	pushd_job_free(job);
	w->outstanding--;
	if (--ev->remaining > 0)
		return;
	event_unlink(w, ev);
	cg_log_set_context(ev->event_id);
	if (ev->stream_id[0] == '\0') {
		cg_log_info("every retried push is final");
	} else if (!ev->abandoned) {
		cg_log_info("every push is final; acknowledging %s", ev->stream_id);
		ack_add(w, ev->stream_id);
	}
	cg_log_set_context(NULL);
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

/* --- outcomes: batched into PostgreSQL, then final ----------------------------- */

/* Writes a batch of one tenant's outcomes ($2, a JSON array; see
 * outcome_json) in one statement: final ones set the row's status, progress
 * copies only the attempts of a row still pending (a final outcome in the
 * same batch wins), and a dead token deactivates its device -- or, for a
 * Live Activity push (k 'la'), only that live_activity_tokens row, for a
 * push-to-start (k 'start') only the device's push_to_start_token -- unless
 * it was re-registered (or replaced) after APNs' timestamp (410) or after
 * now. Returns what was deactivated (label, reason). */
static const char outcome_sql[] =
	"WITH u AS (SELECT * FROM json_to_recordset($2::json) AS x(id bigint, st text,"
	"  ps integer, pr text, at integer, aid uuid, dev bigint, ts bigint, k text, la bigint,"
	"  tok text, sub bigint, na bigint)),"
	" fin AS (SELECT DISTINCT ON (id) * FROM u WHERE st IS NOT NULL ORDER BY id, at DESC),"
	" prog AS (SELECT DISTINCT ON (id) * FROM u"
	"  WHERE st IS NULL AND id NOT IN (SELECT id FROM fin) ORDER BY id, at DESC),"
	" f AS (UPDATE deliveries d SET status = fin.st, attempts = fin.at,"
	"  provider_status = fin.ps, provider_reason = fin.pr, apns_id = fin.aid,"
	"  last_attempt_at = CASE WHEN fin.at > d.attempts THEN now() ELSE d.last_attempt_at END,"
	"  sent_at = CASE WHEN fin.st = 'sent' THEN now() ELSE d.sent_at END, updated_at = now(),"
	"  next_attempt_at = CASE WHEN fin.st = 'retry_due' THEN to_timestamp(fin.na / 1000.0) END"
	"  FROM fin WHERE d.tenant_id = $1 AND d.id = fin.id),"
	" p AS (UPDATE deliveries d SET attempts = prog.at, provider_status = prog.ps,"
	"  provider_reason = prog.pr, apns_id = prog.aid, last_attempt_at = now(), updated_at = now()"
	"  FROM prog WHERE d.tenant_id = $1 AND d.id = prog.id AND d.status = 'pending'"
	"  AND d.attempts < prog.at),"
	" dv AS (UPDATE devices v SET active = false, deactivated_at = now(),"
	"  deactivated_reason = coalesce(fin.pr, 'HTTP ' || fin.ps), updated_at = now()"
	"  FROM fin WHERE fin.st = 'deactivated' AND fin.k IS NULL AND v.tenant_id = $1"
	"  AND v.id = fin.dev AND v.platform = 'ios' AND v.active"
	"  AND v.updated_at <= coalesce(to_timestamp(fin.ts / 1000.0), now())"
	"  RETURNING 'device ' || left(v.device_token, 16) AS what, v.deactivated_reason AS why),"
	/* a Live Activity token: that token only, not its device */
	" lv AS (UPDATE live_activity_tokens l SET active = false, updated_at = now()"
	"  FROM fin WHERE fin.st = 'deactivated' AND fin.k = 'la' AND l.tenant_id = $1"
	"  AND l.id = fin.la AND l.active AND l.push_token = fin.tok"
	"  AND l.updated_at <= coalesce(to_timestamp(fin.ts / 1000.0), now())"
	"  RETURNING 'live activity token ' || left(l.push_token, 16) AS what,"
	"  coalesce(fin.pr, 'HTTP ' || fin.ps) AS why),"
	/* a push-to-start token: cleared from its device */
	" sv AS (UPDATE devices v SET push_to_start_token = NULL, push_to_start_updated_at = now()"
	"  FROM fin WHERE fin.st = 'deactivated' AND fin.k = 'start' AND v.tenant_id = $1"
	"  AND v.id = fin.dev AND v.push_to_start_token = fin.tok"
	"  AND coalesce(v.push_to_start_updated_at, '-infinity')"
	"   <= coalesce(to_timestamp(fin.ts / 1000.0), now())"
	"  RETURNING 'push-to-start token ' || left(fin.tok, 16) AS what,"
	"  coalesce(fin.pr, 'HTTP ' || fin.ps) AS why),"
	/* a browser subscription the push service says is gone (404/410) or
	 * whose keys cannot work: deleted (PUSH.md B2) */
	" ws AS (DELETE FROM push_subscriptions s USING fin"
	"  WHERE fin.st = 'deactivated' AND fin.k = 'wp' AND s.tenant_id = $1 AND s.id = fin.sub"
	"  RETURNING 'browser subscription ' || s.id || ' ' || left(s.endpoint, 48) AS what,"
	"  concat_ws(' ', 'deleted:', fin.ps, fin.pr) AS why)"
	" SELECT what, why FROM dv UNION ALL SELECT what, why FROM lv"
	" UNION ALL SELECT what, why FROM sv UNION ALL SELECT what, why FROM ws";

/* The deliveries status of a final outcome, NULL for the others. */
static const char *outcome_status(pushd_outcome o)
{
	switch (o) {
	case PUSHD_SENT:
		return "sent";
	case PUSHD_FAILED:
		return "failed";
	case PUSHD_DEACTIVATE:
		return "deactivated";
	case PUSHD_DEFERRED:
		return "retry_due";
	case PUSHD_ABANDONED:
	case PUSHD_RETRYING:
		break;
	}
	return NULL;
}

/* The Live Activity members of an outcome (k, la, tok: see outcome_sql):
 * which token a dead-token answer concerns. 0 or -1. */
static int outcome_json_la(json_object *o, const pushd_job *job)
{
	if (job->kind != PUSHD_KIND_LIVEACTIVITY || job->device_token == NULL)
		return 0;
	if (cg_json_add_string(o, "k", job->la_start ? "start" : "la") != 0 ||
	    cg_json_add_int64(o, "la", job->la_token_id) != 0 ||
	    cg_json_add_string(o, "tok", job->device_token) != 0)
		return -1;
	return 0;
}

/* Appends the row update of `job` (final or progress) to `arr`: 0 or -1. */
static int outcome_json(json_object *arr, const pushd_job *job)
{
	const char *st = outcome_status(job->outcome);
	json_object *o = json_object_new_object();

	if (o == NULL || json_object_array_add(arr, o) != 0) {
		json_object_put(o);
		return -1;
	}
	if (cg_json_add_int64(o, "id", job->delivery_id) != 0 ||
	    json_object_object_add(o, "st", st != NULL ? json_object_new_string(st) : NULL) != 0 ||
	    json_object_object_add(o, "ps", job->status > 0 ? json_object_new_int64(job->status) : NULL) != 0 ||
	    json_object_object_add(o, "pr", job->reason[0] != '\0' ? json_object_new_string(job->reason) : NULL) != 0 ||
	    cg_json_add_int64(o, "at", (long long)job->attempts_before + job->attempts) != 0 ||
	    json_object_object_add(o, "aid", job->apns_id[0] != '\0' ? json_object_new_string(job->apns_id) : NULL) != 0 ||
	    cg_json_add_int64(o, "dev", job->device_id) != 0 ||
	    json_object_object_add(o, "ts", job->timestamp_ms > 0 ? json_object_new_int64(job->timestamp_ms) : NULL) != 0 ||
	    (job->outcome == PUSHD_DEFERRED && cg_json_add_int64(o, "na", job->retry_due_ms) != 0) ||
	    outcome_json_la(o, job) != 0 ||
	    (job->kind == PUSHD_KIND_WEBPUSH &&
	     (cg_json_add_string(o, "k", "wp") != 0 || cg_json_add_int64(o, "sub", job->subscription_id) != 0)))
		return -1;
	return 0;
}

/* A result from the sender: kept until flush_outcomes() writes it. */
static void handle_result(worker *w, pushd_job *job)
{
	job->next = NULL;
	if (w->out_tail != NULL)
		w->out_tail->next = job;
	else
		w->out_head = job;
	w->out_tail = job;
	if (w->out_n++ == 0)
		w->out_since = cg_monotonic_ms();
}

/* Once its row is written (or cannot be): a final job is done, an abandoned
 * one leaves its event pending, a progress copy is freed. */
static void outcome_recorded(worker *w, pushd_job *job)
{
	switch (job->outcome) {
	case PUSHD_RETRYING:
		pushd_job_free(job);
		return;
	case PUSHD_ABANDONED:
		job->ev->abandoned = 1;
		break;
	case PUSHD_SENT:
	case PUSHD_FAILED:
	case PUSHD_DEACTIVATE:
	case PUSHD_DEFERRED:
		break;
	}
	job_done(w, job);
}

/* Takes from the buffer the first tenant's results, at most FLUSH_MAX of
 * them, in order; returns the list (linked by next) and its length. */
static pushd_job *take_tenant_batch(worker *w, int *count)
{
	pushd_job *head = NULL, **tail = &head, **pp = &w->out_head, *job;
	const char *tenant = w->out_head->ev->tenant;
	int n = 0;

	w->out_tail = NULL;
	while ((job = *pp) != NULL) {
		if (n < FLUSH_MAX && strcmp(job->ev->tenant, tenant) == 0) {
			*pp = job->next;
			job->next = NULL;
			*tail = job;
			tail = &job->next;
			n++;
		} else {
			w->out_tail = job;
			pp = &job->next;
		}
	}
	w->out_n -= n;
	*count = n;
	return head;
}

/* Puts a batch back in front of the buffer (PostgreSQL is away). */
static void untake_batch(worker *w, pushd_job *batch)
{
	pushd_job *last = batch;

	while (last->next != NULL) {
		last = last->next;
		w->out_n++;
	}
	w->out_n++;
	last->next = w->out_head;
	if (w->out_head == NULL)
		w->out_tail = last;
	w->out_head = batch;
}

/* Writes one tenant's batch. Returns a CG_DB_* code; CG_DB_OK also when
 * the batch needed no statement. */
static int write_batch(worker *w, pushd_job *batch)
{
	json_object *arr = json_object_new_array();
	const char *params[2];
	PGresult *res = NULL;
	pushd_job *job;
	int rc = CG_DB_OK, i, rows = 0;

	if (arr == NULL)
		return CG_DB_ESQL;
	for (job = batch; job != NULL; job = job->next) {
		if (job->outcome == PUSHD_ABANDONED)
			continue;
		if (outcome_json(arr, job) < 0) {
			rc = CG_DB_ESQL;
			cg_log_error("out of memory building a batch of outcomes");
			goto out;
		}
		rows++;
	}
	if (rows == 0)
		goto out;
	params[0] = batch->ev->tenant;
	params[1] = json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN);
	rc = tenant_exec(w, params[0], &res, outcome_sql, 2, params);
	if (rc != CG_DB_OK)
		goto out;
	cg_log_debug("recorded %d outcome(s) of tenant %s", rows, params[0]);
	for (i = 0; i < PQntuples(res); i++)
		cg_log_info("%s… deactivated (%s)", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
out:
	if (res != NULL)
		PQclear(res);
	json_object_put(arr);
	return rc;
}

/* Puts the deferred jobs of a recorded batch on the delayed queue in Redis:
 * one ZADD of "<tenant> <delivery id>" members scored by their due time
 * (UNIX ms). When Redis cannot take them the rows, 'retry_due' with
 * next_attempt_at, are picked from PostgreSQL once push_retry_recover_s
 * overdue (pick_retries). */
static void park_deferred(worker *w, pushd_job *batch)
{
	const char **argv = NULL;
	char *members = NULL;
	pushd_job *job;
	size_t n = 0, i = 0;
	int rc;

	for (job = batch; job != NULL; job = job->next)
		if (job->outcome == PUSHD_DEFERRED)
			n++;
	if (n == 0)
		return;
	argv = calloc(2 + 2 * n, sizeof *argv);
	members = calloc(n, 2 * 32 + CG_CLAIM_MAX);
	if (argv == NULL || members == NULL) {
		cg_log_error("out of memory parking %zu retries (picked from PostgreSQL later)", n);
		goto out;
	}
	argv[0] = "ZADD";
	argv[1] = RETRY_QUEUE_KEY;
	for (job = batch; job != NULL; job = job->next) {
		char *score = members + i * (2 * 32 + CG_CLAIM_MAX), *member = score + 32;

		if (job->outcome != PUSHD_DEFERRED)
			continue;
		snprintf(score, 32, "%lld", job->retry_due_ms);
		snprintf(member, 32 + CG_CLAIM_MAX, "%s %lld", job->ev->tenant, job->delivery_id);
		argv[2 + 2 * i] = score;
		argv[3 + 2 * i] = member;
		i++;
	}
	rc = cg_redis_cmd(w->redis, NULL, (int)(2 + 2 * n), argv, NULL);
	if (rc != CG_REDIS_OK)
		redis_failed(w, rc, "ZADD " RETRY_QUEUE_KEY " (retries are picked from PostgreSQL later)");
	else
		cg_log_debug("%zu retr%s parked on " RETRY_QUEUE_KEY, n, n == 1 ? "y" : "ies");
out:
	free(members);
	free(argv);
}

/* Writes every buffered result, a statement per tenant and FLUSH_MAX, then
 * finishes the jobs (so an entry is acknowledged only after its rows are
 * final in PostgreSQL). When PostgreSQL is away the rest stays buffered
 * (the worker reads nothing new meanwhile: the jobs stay outstanding);
 * any other failure is logged and the jobs finish unrecorded (their rows
 * stay 'pending'). Returns 0, or -1 when something stays buffered. */
static int flush_outcomes(worker *w)
{
	while (w->out_head != NULL) {
		pushd_job *batch, *job;
		int n, rc;

		batch = take_tenant_batch(w, &n);
		rc = write_batch(w, batch);
		if (rc == CG_DB_ECONN || rc == CG_DB_ECONFLICT) {
			db_failed(w, rc, "recording push outcomes");
			untake_batch(w, batch);
			return -1;
		}
		if (rc != CG_DB_OK) {
			db_failed(w, rc, "recording push outcomes (they stay unrecorded)");
			/* A retry that is not recorded anywhere must not be
			 * acknowledged away: its entry stays pending. */
			for (job = batch; job != NULL; job = job->next)
				if (job->outcome == PUSHD_DEFERRED)
					job->ev->abandoned = 1;
		} else {
			db_ok(w);
			park_deferred(w, batch);
		}
		while ((job = batch) != NULL) {
			batch = job->next;
			job->next = NULL;
			outcome_recorded(w, job);
		}
	}
	w->out_tail = NULL;
	w->out_n = 0;
	return 0;
}

/* --- periodic work --------------------------------------------------------- */

/* The APNs environment of `tenant`'s credentials ("sandbox" or
 * "production"): only its devices of that environment are pushed. */
static const char *tenant_environment(worker *w, const char *tenant)
{
	const pushd_apns_creds *a = pushd_creds_apns(w->pd->creds, tenant);

	return a != NULL && a->sandbox ? "sandbox" : "production";
}

static void write_status(worker *w)
{
	const pushd *pd = w->pd;
	int st = pd->apns != NULL && pushd_creds_any_apns(pd->creds) ? atomic_load(&w->pd->apns_state)
								     : PUSHD_APNS_NOT_CONFIGURED;
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
	if (w->out_n > 0 && now >= w->next_flush &&
	    (w->out_n >= FLUSH_MAX || now - w->out_since >= FLUSH_EVERY_MS)) {
		if (flush_outcomes(w) < 0)
			w->next_flush = now + BACKOFF_MS;
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

/* Waits up to `ms` (less when buffered outcomes are due) for a result,
 * then does the housekeeping. */
static void wait_a_while(worker *w, int ms)
{
	pushd_job *job;

	if (w->out_n > 0 && ms > FLUSH_EVERY_MS)
		ms = FLUSH_EVERY_MS;
	job = pushd_queue_pop_wait(w->pd->results, ms);

	if (job != NULL)
		handle_result(w, job);
	housekeeping(w);
}

static int stopping(const worker *w)
{
	return atomic_load(&w->pd->stop);
}

/* --- one stream entry ------------------------------------------------------ */

/* Claims the deliveries of one event, in one statement: the event's active
 * iOS devices of the daemon's APNs environment (runtime contracts; at most
 * PUSHD_MAX_DEVICES_PER_EVENT) get a 'pending' row each unless they have
 * one; the answer is every pair still to push -- new rows and rows left
 * 'pending' by an earlier run -- so a pair already final (sent, failed,
 * deactivated) or waiting for an admin retry is never pushed again from a
 * re-delivered entry. What a device gets (one push per device and event):
 *   - a Live Activity update/end (push_type 'liveactivity', to the push
 *     token) when it has an active live_activity_tokens row for the event's
 *     capsule ($7) and the event has a Live Activity payload ($8 <> '');
 *   - else a push-to-start (push_type 'liveactivity', la_start, to its
 *     push_to_start_token) when the event starts one ($9 <> '');
 *   - else the event's device push, push_type $6 ('alert'/'background'),
 *     unless the device already has a 'liveactivity' row for this event.
 * Columns: delivery id, device id, token to push to, attempts recorded so
 * far, size of the whole audience, then (by name) push_type, la_token_id
 * (0 when none) and la_start. */
static const char claim_sql[] =
	"WITH dev AS (SELECT id, device_token, push_to_start_token FROM devices"
	"  WHERE tenant_id = $1 AND platform = 'ios' AND active AND environment = $3"
	"  AND ($2 = '' OR user_id = $2)" /* '': CG_DEVICES_TENANT */
	"  ORDER BY id LIMIT $4::integer + 1),"
	" pick AS (SELECT * FROM dev ORDER BY id LIMIT $4::integer),"
	" la AS (SELECT p.id AS device_id, l.id AS la_id, l.push_token AS token FROM pick p"
	"  JOIN live_activity_tokens l ON l.tenant_id = $1 AND l.capsule_id = $7"
	"  AND l.device_id = p.id AND l.active WHERE $8 <> ''),"
	" st AS (SELECT p.id AS device_id, p.push_to_start_token AS token FROM pick p"
	"  WHERE $9 <> '' AND p.push_to_start_token IS NOT NULL"
	"  AND p.id NOT IN (SELECT device_id FROM la)),"
	" tgt AS (SELECT device_id, 'liveactivity'::text AS pt, la_id, false AS start, token FROM la"
	"  UNION ALL SELECT device_id, 'liveactivity', NULL::bigint, true, token FROM st"
	"  UNION ALL SELECT p.id, $6::text, NULL::bigint, false, p.device_token FROM pick p"
	"   WHERE p.id NOT IN (SELECT device_id FROM la) AND p.id NOT IN (SELECT device_id FROM st)"
	"   AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.tenant_id = $1"
	"    AND x.event_id = $5::uuid AND x.channel = 'apns' AND x.push_type = 'liveactivity'"
	"    AND x.device_id = p.id)),"
	" ins AS (INSERT INTO deliveries (tenant_id, event_id, channel, push_type, device_id, target)"
	"  SELECT $1, $5::uuid, 'apns', t.pt, t.device_id, t.token FROM tgt t"
	"  ON CONFLICT (tenant_id, event_id, channel, push_type, device_id) DO NOTHING"
	"  RETURNING id, device_id, push_type)"
	" SELECT coalesce(i.id, d.id), t.device_id, t.token, coalesce(d.attempts, 0),"
	"  (SELECT count(*) FROM dev), t.pt AS push_type, coalesce(t.la_id, 0) AS la_token_id,"
	"  t.start AS la_start"
	" FROM tgt t LEFT JOIN ins i ON i.device_id = t.device_id AND i.push_type = t.pt"
	" LEFT JOIN deliveries d ON i.id IS NULL AND d.tenant_id = $1 AND d.event_id = $5::uuid"
	"  AND d.channel = 'apns' AND d.push_type = t.pt AND d.device_id = t.device_id"
	" WHERE i.id IS NOT NULL OR d.status = 'pending'"
	" ORDER BY t.device_id";

static int claim_deliveries(worker *w, const pushd_event *pev, json_object *ev, PGresult **res)
{
	char limit[16];
	const char *params[9];

	snprintf(limit, sizeof limit, "%d", PUSHD_MAX_DEVICES_PER_EVENT);
	params[0] = cg_event_str(ev, "tenant");
	params[1] = cg_event_str(ev, "user_id");
	params[2] = tenant_environment(w, params[0]);
	params[3] = limit;
	params[4] = cg_event_str(ev, "event_id");
	params[5] = pev->device_kind == PUSHD_KIND_BACKGROUND ? "background" : "alert";
	params[6] = cg_event_str(ev, "capsule_id");
	params[7] = pev->la_payload != NULL ? "la" : "";
	params[8] = pev->la_start_payload != NULL ? "start" : "";
	return tenant_exec(w, params[0], res, claim_sql, 9, params);
}

/* 1 when `s` has the shape of a UUID (the deliveries column type). */
static int uuid_shaped(const char *s)
{
	size_t i;

	for (i = 0; i < 36; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return 0;
	}
	return s[36] == '\0';
}

/* The event record for `jev` with its APNs payload; NULL on failure. */
/* The Live Activity bodies of `ev` (an activity event with a capsule):
 * update or end (apns_liveactivity_event) for the activity's Live Activity
 * tokens, and start for push-to-start tokens when
 * apns_liveactivity_should_start. A body that cannot be built is left out
 * (logged): those devices then get the device push. */
static void event_la_prepare(pushd_event *ev, json_object *jev, const cg_config *cfg, time_t now)
{
	const char *type = cg_event_str(jev, "type");
	apns_headers h;

	if (cg_event_str(jev, "capsule_id")[0] == '\0' ||
	    (strcmp(type, "activity.created") != 0 && strcmp(type, "activity.updated") != 0))
		return;
	apns_headers_build_cfg(jev, cfg, APNS_PUSH_LIVEACTIVITY, "", now, &h);
	ev->la_priority = h.apns_priority;
	if (apns_liveactivity_build(jev, cfg, now, apns_liveactivity_event(jev), NULL, &ev->la_payload,
				    &ev->la_payload_len) < 0)
		cg_log_warn("event %s: cannot build the Live Activity payload; no Live Activity push",
			    ev->event_id);
	if (apns_liveactivity_should_start(jev, cfg) &&
	    apns_liveactivity_build(jev, cfg, now, APNS_LA_START, cfg->live_activity_attributes_type,
				    &ev->la_start_payload, &ev->la_start_payload_len) < 0)
		cg_log_warn("event %s: cannot build the push-to-start payload; no push-to-start",
			    ev->event_id);
}

/* The APNs side of `ev`: what devices get (apns_push_kind: alert or
 * background), its body and headers (expirations of `cfg`), and the Live
 * Activity bodies. Returns 0, or -1 when the device body cannot be built. */
static int event_apns_prepare(pushd_event *ev, json_object *jev, const cg_config *cfg)
{
	time_t now = cg_now();
	apns_push_type type = apns_push_kind(jev);
	apns_headers h;
	int rc;

	if (type == APNS_PUSH_BACKGROUND) {
		ev->device_kind = PUSHD_KIND_BACKGROUND;
		rc = apns_background_build(jev, &ev->payload, &ev->payload_len);
	} else {
		ev->device_kind = PUSHD_KIND_ALERT;
		rc = apns_payload_build(jev, &ev->payload, &ev->payload_len);
	}
	if (rc < 0)
		return -1;
	apns_headers_build_cfg(jev, cfg, type, "", now, &h);
	ev->apns_priority = h.apns_priority;
	ev->expiration = h.expiration;
	snprintf(ev->collapse_id, sizeof ev->collapse_id, "%s", h.collapse_id);
	event_la_prepare(ev, jev, cfg, now);
	return 0;
}

static pushd_event *event_new(const cg_config *cfg, const char *stream_id, json_object *jev)
{
	pushd_event *ev = calloc(1, sizeof *ev);

	if (ev == NULL)
		return NULL;
	snprintf(ev->stream_id, sizeof ev->stream_id, "%s", stream_id);
	snprintf(ev->event_id, sizeof ev->event_id, "%s", cg_event_str(jev, "event_id"));
	ev->tenant = strdup(cg_event_str(jev, "tenant"));
	if (ev->tenant == NULL || event_apns_prepare(ev, jev, cfg) < 0) {
		event_free(ev);
		return NULL;
	}
	return ev;
}

/* What the job of row `i` of `res` sends: the optional columns push_type
 * ('alert', 'background', 'liveactivity'), la_token_id and la_start (see
 * claim_sql); anything but 'liveactivity' is the event's device push. */
static void job_kind_from_row(pushd_job *job, const PGresult *res, int i)
{
	int c_type = PQfnumber(res, "push_type"), c_la = PQfnumber(res, "la_token_id"),
	    c_start = PQfnumber(res, "la_start");
	const char *pt = c_type >= 0 ? PQgetvalue(res, i, c_type) : "";

	/* alert or background: the body built for the event decides */
	job->kind = job->ev->device_kind;
	if (strcmp(pt, "liveactivity") != 0)
		return;
	job->kind = PUSHD_KIND_LIVEACTIVITY;
	if (c_la >= 0)
		job->la_token_id = strtoll(PQgetvalue(res, i, c_la), NULL, 10);
	if (c_start >= 0)
		job->la_start = strcmp(PQgetvalue(res, i, c_start), "t") == 0;
}

/* Column `name` of row i as an int; 0 when the answer has no such column. */
static int row_int(const PGresult *res, int i, const char *name)
{
	int c = PQfnumber(res, name);

	return c >= 0 ? (int)strtol(PQgetvalue(res, i, c), NULL, 10) : 0;
}

/* Hands `job` of `ev` to the sender and counts it out. On a full queue the
 * job is freed, the event stays pending (abandoned) and -1 is returned. */
static int job_enqueue(worker *w, pushd_event *ev, pushd_job *job)
{
	if (pushd_queue_push(w->pd->jobs, job) < 0) {
		cg_log_error("job queue full; event %s stays pending", ev->event_id);
		ev->abandoned = 1;
		pushd_job_free(job);
		return -1;
	}
	ev->remaining++;
	w->outstanding++;
	return 0;
}

/* Hands one job per row of `res` (columns: delivery id, device id, device
 * token, attempts so far) from row `first` on to the sender, until the end
 * or a row of another event (column `event_col` >= 0 names the event id).
 * Returns the number queued; *next gets the row after the last one used. */
static int queue_jobs(worker *w, pushd_event *ev, PGresult *res, int first, int event_col,
		      int *next)
{
	int i, n = PQntuples(res), queued = 0;

	for (i = first; i < n; i++) {
		pushd_job *job;

		if (event_col >= 0 && strcmp(PQgetvalue(res, i, event_col), ev->event_id) != 0)
			break;
		job = calloc(1, sizeof *job);
		if (job != NULL)
			job->device_token = strdup(PQgetvalue(res, i, 2));
		if (job == NULL || job->device_token == NULL) {
			cg_log_error("out of memory; event %s stays pending", ev->event_id);
			ev->abandoned = 1;
			pushd_job_free(job);
			break;
		}
		job->ev = ev;
		job->delivery_id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		job->device_id = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		job->attempts_before = (int)strtol(PQgetvalue(res, i, 3), NULL, 10);
		job->attempt_base = row_int(res, i, "attempt_base");
		job->timestamp_ms = -1;
		job_kind_from_row(job, res, i);
		apns_id_for(ev->event_id, job->device_token, job->apns_id);
		if (job_enqueue(w, ev, job) < 0)
			break;
		queued++;
	}
	if (next != NULL)
		*next = i;
	return queued;
}

/* Puts `ev` on the list of events with jobs out. */
static void event_link(worker *w, pushd_event *ev)
{
	ev->next = w->events;
	if (w->events != NULL)
		w->events->prev = ev;
	w->events = ev;
}

/* --- Web Push ------------------------------------------------------------------ */

/* Claims the Web Push deliveries of one event, like claim_sql: the
 * tenant's active browser subscriptions of the event's user ($2, or every
 * user's when '') get a 'pending' row each (channel and push_type
 * 'webpush', target the endpoint) unless they have one, and the answer is
 * every pair still to push. Columns: delivery id, subscription id,
 * endpoint, attempts recorded so far, size of the whole audience, p256dh,
 * auth. */
static const char webpush_claim_sql[] =
	"WITH sub AS (SELECT id, endpoint, p256dh, auth FROM push_subscriptions"
	"  WHERE tenant_id = $1 AND active AND ($2 = '' OR user_id = $2)"
	"  ORDER BY id LIMIT $3::integer + 1),"
	" pick AS (SELECT * FROM sub ORDER BY id LIMIT $3::integer),"
	" ins AS (INSERT INTO deliveries (tenant_id, event_id, channel, push_type, subscription_id, target)"
	"  SELECT $1, $4::uuid, 'webpush', 'webpush', p.id, p.endpoint FROM pick p"
	"  ON CONFLICT (tenant_id, event_id, channel, subscription_id) DO NOTHING"
	"  RETURNING id, subscription_id)"
	" SELECT coalesce(i.id, d.id), p.id, p.endpoint, coalesce(d.attempts, 0),"
	"  (SELECT count(*) FROM sub), p.p256dh, p.auth"
	" FROM pick p LEFT JOIN ins i ON i.subscription_id = p.id"
	" LEFT JOIN deliveries d ON i.id IS NULL AND d.tenant_id = $1 AND d.event_id = $4::uuid"
	"  AND d.channel = 'webpush' AND d.subscription_id = p.id"
	" WHERE i.id IS NOT NULL OR d.status = 'pending'"
	" ORDER BY p.id";

/* The Web Push side of `ev`: the notification JSON and the TTL / Urgency /
 * Topic headers, once. Returns 0, or -1 when the message cannot be built
 * (logged; the event then has no Web Push). */
static int event_wp_prepare(pushd_event *ev, json_object *jev, const cg_config *cfg)
{
	webpush_headers h;

	if (ev->wp_payload != NULL)
		return 0;
	if (webpush_payload_build(jev, &ev->wp_payload, &ev->wp_payload_len) < 0) {
		cg_log_warn("event %s: cannot build the Web Push message; no Web Push", ev->event_id);
		return -1;
	}
	webpush_headers_build(jev, cfg, &h);
	ev->wp_ttl = h.ttl;
	snprintf(ev->wp_urgency, sizeof ev->wp_urgency, "%s", h.urgency);
	snprintf(ev->wp_topic, sizeof ev->wp_topic, "%s", h.topic);
	return 0;
}

/* Claims the Web Push deliveries of `ev` (webpush_claim_sql). *res is NULL
 * (and CG_DB_OK returned) when Web Push is not configured or the event has
 * no message. Returns a CG_DB_* code. */
static int webpush_claim(worker *w, pushd_event *ev, json_object *jev, PGresult **res)
{
	char limit[16];
	const char *params[4];

	*res = NULL;
	if (pushd_creds_vapid(w->pd->creds, ev->tenant) == NULL || event_wp_prepare(ev, jev, w->cfg) < 0)
		return CG_DB_OK;
	snprintf(limit, sizeof limit, "%d", PUSHD_MAX_DEVICES_PER_EVENT);
	params[0] = ev->tenant;
	params[1] = cg_event_device_audience(jev) == CG_DEVICES_USER ? cg_event_str(jev, "user_id") : "";
	params[2] = limit;
	params[3] = ev->event_id;
	return tenant_exec(w, params[0], res, webpush_claim_sql, 4, params);
}

/* Hands one WEBPUSH job per row of `res` (webpush_claim_sql's columns,
 * also the first seven of webpush_retry_sql's) from row `first` on to the
 * sender, until the end or a row of another event (column `event_col` >= 0
 * names the event id). Returns the number queued; *next (may be NULL) gets
 * the row after the last one used. */
static int webpush_queue_jobs(worker *w, pushd_event *ev, PGresult *res, int first, int event_col,
			      int *next)
{
	int i, n = PQntuples(res), queued = 0;

	if (n > first && strtol(PQgetvalue(res, first, 4), NULL, 10) > PUSHD_MAX_DEVICES_PER_EVENT)
		cg_log_warn("event %s reaches more than %d browser subscriptions; pushing to the first %d",
			    ev->event_id, PUSHD_MAX_DEVICES_PER_EVENT, PUSHD_MAX_DEVICES_PER_EVENT);
	for (i = first; i < n; i++) {
		pushd_job *job;

		if (event_col >= 0 && strcmp(PQgetvalue(res, i, event_col), ev->event_id) != 0)
			break;
		job = calloc(1, sizeof *job);

		if (job != NULL) {
			job->endpoint = strdup(PQgetvalue(res, i, 2));
			job->p256dh = strdup(PQgetvalue(res, i, 5));
			job->auth = strdup(PQgetvalue(res, i, 6));
		}
		if (job == NULL || job->endpoint == NULL || job->p256dh == NULL || job->auth == NULL) {
			cg_log_error("out of memory; event %s stays pending", ev->event_id);
			ev->abandoned = 1;
			pushd_job_free(job);
			break;
		}
		job->ev = ev;
		job->kind = PUSHD_KIND_WEBPUSH;
		job->delivery_id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		job->subscription_id = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		job->attempts_before = (int)strtol(PQgetvalue(res, i, 3), NULL, 10);
		job->attempt_base = row_int(res, i, "attempt_base");
		job->timestamp_ms = -1;
		if (job_enqueue(w, ev, job) < 0)
			break;
		queued++;
	}
	if (next != NULL)
		*next = i;
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
	pushd_event *ev = NULL, *pushed;
	PGresult *res = NULL, *wres = NULL;
	const char *sid;
	int n, queued, nwp, rc = 0;

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
	if (!uuid_shaped(cg_event_str(jev, "event_id"))) {
		cg_log_warn("stream entry %s: event id is not a UUID; acknowledged without pushing", sid);
		ack_add(w, sid);
		goto out;
	}
	while (w->outstanding >= PUSHD_MAX_OUTSTANDING_JOBS && !stopping(w))
		wait_a_while(w, 200);
	ev = event_new(w->cfg, sid, jev);
	if (ev == NULL) {
		cg_log_error("event %s: cannot build the APNs payload; acknowledged without pushing",
			     cg_event_str(jev, "event_id"));
		ack_add(w, sid);
		goto out;
	}
	for (;;) {
		if (stopping(w)) {
			rc = -1;
			goto out;
		}
		rc = pushd_creds_apns(w->pd->creds, ev->tenant) != NULL ? claim_deliveries(w, ev, jev, &res)
									: CG_DB_OK;
		if (rc == CG_DB_OK)
			rc = webpush_claim(w, ev, jev, &wres);
		if (rc == CG_DB_OK)
			break;
		db_failed(w, rc, "claiming deliveries");
		if (res != NULL)
			PQclear(res);
		res = NULL;
		wait_a_while(w, BACKOFF_MS);
	}
	db_ok(w);
	n = PQntuples(res);
	if (n > 0 && strtol(PQgetvalue(res, 0, 4), NULL, 10) > PUSHD_MAX_DEVICES_PER_EVENT)
		cg_log_warn("event %s reaches more than %d devices; pushing to the first %d",
			    cg_event_str(jev, "event_id"), PUSHD_MAX_DEVICES_PER_EVENT,
			    PUSHD_MAX_DEVICES_PER_EVENT);
	if (n == 0 && PQntuples(wres) == 0) {
		cg_log_debug("%s: no active iOS device or browser subscription, or every push already "
			     "final; acknowledged", type->name);
		ack_add(w, sid);
		goto out;
	}
	event_link(w, ev);
	queued = n > 0 ? queue_jobs(w, ev, res, 0, -1, NULL) : 0;
	nwp = webpush_queue_jobs(w, ev, wres, 0, -1, NULL);
	queued += nwp;
	if (queued == 0) {
		event_unlink(w, ev); /* nothing out: not acknowledged, comes back later */
		goto out;
	}
	pushed = ev;
	ev = NULL;
	cg_log_info("pushing %s to %d device(s) and %d browser subscription(s)", type->name,
		    pushed->remaining - nwp, nwp);
	apns_sender_wakeup(w->pd->apns);
out:
	event_free(ev);
	cg_log_set_context(NULL);
	if (res != NULL)
		PQclear(res);
	if (wres != NULL)
		PQclear(wres);
	json_object_put(jev);
	return rc == 0 ? 0 : -1;
}

/* --- retries an admin asked for ------------------------------------------------ */

/* A retried delivery whose 'pending' row has not moved for this long lost
 * its daemon (a crash between pickup and outcome): it is picked again. */
#define RETRY_STALE_SQL "make_interval(secs => $5::integer)"

/* Takes up to $2 of tenant $1's deliveries to retry: 'retry_requested'
 * ones, and retried ones left 'pending' by a daemon that died. Each becomes
 * 'pending' again if its device is still active (of this daemon's APNs
 * environment, $3) and its event is still in the log, else 'failed' with
 * the reason. A 'liveactivity' row goes to the device's active Live
 * Activity token of the event's capsule (update/end), else -- push-to-start
 * on ($4 <> '') and the event an activity.created -- to its push-to-start
 * token, else it fails ('live activity token inactive'). Columns: delivery
 * id, device id, token to push to, attempts so far, event id ('' for a row
 * not retried, so that no event's run of rows includes it), the event
 * (CG_EVENT_JSON_SQL), its stream id, the reason it is not retried ('' when
 * it is), then push_type, la_token_id, la_start (see job_kind_from_row).
 * Rows to send come first, by event. */
static const char retry_sql[] =
	"WITH r AS (SELECT d.id, d.event_id, d.device_id, d.attempts, d.push_type, d.attempt_base"
	"  FROM deliveries d"
	"  WHERE d.tenant_id = $1 AND d.channel = 'apns' AND (d.status = 'retry_requested'"
	"   OR (d.status = 'pending' AND d.retry_requested_at IS NOT NULL"
	"       AND d.updated_at < now() - " RETRY_STALE_SQL "))"
	"  ORDER BY d.id LIMIT $2::integer FOR UPDATE SKIP LOCKED),"
	" j0 AS (SELECT r.*, v.id AS vid, ev.json, ev.stream_id,"
	"  CASE WHEN r.push_type <> 'liveactivity' THEN v.device_token"
	"   WHEN l.id IS NOT NULL THEN l.push_token"
	"   WHEN $4 <> '' AND ev.type = 'activity.created' THEN v.push_to_start_token END AS tok,"
	"  coalesce(l.id, 0) AS la_token_id, (r.push_type = 'liveactivity' AND l.id IS NULL) AS la_start"
	"  FROM r LEFT JOIN devices v ON v.id = r.device_id AND v.tenant_id = $1 AND v.active"
	"   AND v.platform = 'ios' AND v.environment = $3"
	"  LEFT JOIN LATERAL (SELECT " CG_EVENT_JSON_SQL " AS json, e.stream_id, e.type, e.capsule_id"
	"   FROM events e WHERE e.tenant_id = $1 AND e.event_id = r.event_id) ev ON true"
	"  LEFT JOIN live_activity_tokens l ON r.push_type = 'liveactivity' AND l.tenant_id = $1"
	"   AND l.capsule_id = ev.capsule_id AND l.device_id = r.device_id AND l.active),"
	" j AS (SELECT j0.*, CASE WHEN j0.vid IS NULL THEN 'device inactive'"
	"  WHEN j0.json IS NULL THEN 'event not found'"
	"  WHEN j0.tok IS NULL THEN 'live activity token inactive' END AS why FROM j0),"
	" u AS (UPDATE deliveries d SET status = CASE WHEN j.why IS NULL THEN 'pending' ELSE 'failed' END,"
	"  provider_status = CASE WHEN j.why IS NULL THEN d.provider_status END,"
	"  provider_reason = coalesce(j.why, d.provider_reason), updated_at = now()"
	"  FROM j WHERE d.id = j.id)"
	" SELECT j.id, j.device_id, coalesce(j.tok, ''), j.attempts,"
	"  CASE WHEN j.why IS NULL THEN j.event_id::text ELSE '' END, j.json,"
	"  coalesce(j.stream_id, ''), coalesce(j.why, ''), j.push_type, j.la_token_id, j.la_start,"
	"  j.attempt_base"
	" FROM j ORDER BY j.why IS NOT NULL, j.event_id, j.id";

/* Marks rows [first, end) of `res` failed with `reason` (their event could
 * not be rebuilt). */
static void retry_fail_rows(worker *w, const char *tenant, PGresult *res, int first, int end,
			    const char *reason)
{
	static const char sql[] =
		"UPDATE deliveries SET status = 'failed', provider_status = NULL,"
		" provider_reason = $3, updated_at = now()"
		" WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND status = 'pending'";
	const char *params[3];
	cg_buf ids;
	int i, bad, rc;

	/* "{1,2,3}": ids are digits only */
	cg_buf_init(&ids, (size_t)(end - first) * 21 + 8);
	bad = cg_buf_append(&ids, "{", 1);
	for (i = first; i < end && bad == 0; i++)
		bad = cg_buf_appendf(&ids, "%s%s", i > first ? "," : "", PQgetvalue(res, i, 0));
	if (bad == 0)
		bad = cg_buf_append(&ids, "}", 1);
	params[0] = tenant;
	params[1] = ids.data;
	params[2] = reason;
	rc = bad == 0 ? tenant_exec(w, tenant, NULL, sql, 3, params) : CG_DB_ESQL;
	if (rc != CG_DB_OK)
		db_failed(w, rc, "marking retried deliveries failed");
	cg_buf_free(&ids);
}

/* Picks `tenant`'s deliveries to retry with `sql` (retry_sql, or
 * webpush_retry_sql when `webpush`) and sends them: in its answer, columns
 * event_col .. event_col + 3 are the event id ('' for a row not retried),
 * the event, its stream id and the reason it is not retried; rows to send
 * come first, by event. Each event is rebuilt from the log (no stream
 * entry: nothing to acknowledge) and its rows queued; an event that cannot
 * be rebuilt fails its rows. Returns the number of jobs queued. */
static int retry_run(worker *w, const char *tenant, const char *sql, int nparams,
		     const char *const *params, int event_col, int webpush)
{
	PGresult *res = NULL;
	int i, n, next, queued = 0, rc;

	rc = tenant_exec(w, tenant, &res, sql, nparams, params);
	if (rc != CG_DB_OK) {
		db_failed(w, rc, "picking deliveries to retry");
		return 0;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i = next) {
		const char *event_id = PQgetvalue(res, i, event_col);
		json_object *jev;
		pushd_event *ev = NULL;
		int q;

		next = i + 1;
		if (event_id[0] == '\0') {
			cg_log_info("%sdelivery %s of tenant %s not retried: %s", webpush ? "web push " : "",
				    PQgetvalue(res, i, 0), tenant, PQgetvalue(res, i, event_col + 3));
			continue;
		}
		cg_log_set_context(event_id);
		jev = cg_event_from_row(PQgetvalue(res, i, event_col + 1), PQgetvalue(res, i, event_col + 2));
		if (jev != NULL)
			ev = event_new(w->cfg, "", jev);
		if (ev != NULL && webpush && event_wp_prepare(ev, jev, w->cfg) < 0) {
			event_free(ev);
			ev = NULL;
		}
		json_object_put(jev);
		if (ev == NULL) {
			for (next = i; next < n && strcmp(PQgetvalue(res, next, event_col), event_id) == 0; next++)
				;
			cg_log_error("cannot rebuild the push of event %s; %d retried deliveries failed",
				     event_id, next - i);
			retry_fail_rows(w, tenant, res, i, next, "event unusable");
			cg_log_set_context(NULL);
			continue;
		}
		event_link(w, ev);
		q = webpush ? webpush_queue_jobs(w, ev, res, i, event_col, &next)
			    : queue_jobs(w, ev, res, i, event_col, &next);
		if (q == 0) {
			/* rows stay 'pending' until picked again as stale */
			event_unlink(w, ev);
			event_free(ev);
		} else {
			cg_log_info("retrying %d %s", ev->remaining, webpush ? "Web Push(es)" : "push(es)");
			queued += ev->remaining;
		}
		cg_log_set_context(NULL);
	}
	PQclear(res);
	return queued;
}

/* Picks and sends one tenant's retries. Returns the number of jobs queued. */
static int retry_tenant(worker *w, const char *tenant)
{
	const char *params[5];

	params[0] = tenant;
	params[1] = RETRY_BATCH_TEXT;
	params[2] = tenant_environment(w, tenant);
	params[3] = w->cfg->push_to_start_critical ? "start" : "";
	params[4] = w->recover_s;
	return retry_run(w, tenant, retry_sql, 5, params, 4, 0);
}

/* Takes up to $2 of tenant $1's Web Push deliveries to retry, like
 * retry_sql: each becomes 'pending' again if its subscription still exists
 * and its event is still in the log, else 'failed' with the reason. Columns
 * 0-6 as webpush_claim_sql's (the audience size is 0), then the event id
 * ('' for a row not retried), the event (CG_EVENT_JSON_SQL), its stream id,
 * the reason it is not retried. Rows to send come first, by event. */
static const char webpush_retry_sql[] =
	"WITH r AS (SELECT d.id, d.event_id, d.subscription_id, d.attempts, d.attempt_base"
	"  FROM deliveries d"
	"  WHERE d.tenant_id = $1 AND d.channel = 'webpush' AND (d.status = 'retry_requested'"
	"   OR (d.status = 'pending' AND d.retry_requested_at IS NOT NULL"
	"       AND d.updated_at < now() - make_interval(secs => $3::integer)))"
	"  ORDER BY d.id LIMIT $2::integer FOR UPDATE SKIP LOCKED),"
	" j0 AS (SELECT r.*, s.id AS sid, s.endpoint, s.p256dh, s.auth, ev.json, ev.stream_id"
	"  FROM r LEFT JOIN push_subscriptions s ON s.id = r.subscription_id AND s.tenant_id = $1"
	"   AND s.active"
	"  LEFT JOIN LATERAL (SELECT " CG_EVENT_JSON_SQL " AS json, e.stream_id FROM events e"
	"   WHERE e.tenant_id = $1 AND e.event_id = r.event_id) ev ON true),"
	" j AS (SELECT j0.*, CASE WHEN j0.sid IS NULL THEN 'subscription gone'"
	"  WHEN j0.json IS NULL THEN 'event not found' END AS why FROM j0),"
	" u AS (UPDATE deliveries d SET status = CASE WHEN j.why IS NULL THEN 'pending' ELSE 'failed' END,"
	"  provider_status = CASE WHEN j.why IS NULL THEN d.provider_status END,"
	"  provider_reason = coalesce(j.why, d.provider_reason), updated_at = now()"
	"  FROM j WHERE d.id = j.id)"
	" SELECT j.id, coalesce(j.subscription_id, 0), coalesce(j.endpoint, ''), j.attempts, 0,"
	"  coalesce(j.p256dh, ''), coalesce(j.auth, ''),"
	"  CASE WHEN j.why IS NULL THEN j.event_id::text ELSE '' END, j.json,"
	"  coalesce(j.stream_id, ''), coalesce(j.why, ''), j.attempt_base"
	" FROM j ORDER BY j.why IS NOT NULL, j.event_id, j.id";

/* Picks and sends one tenant's Web Push retries (webpush_retry_sql).
 * Returns the number of jobs queued. */
static int webpush_retry_tenant(worker *w, const char *tenant)
{
	const char *params[3];

	params[0] = tenant;
	params[1] = RETRY_BATCH_TEXT;
	params[2] = w->recover_s;
	return retry_run(w, tenant, webpush_retry_sql, 3, params, 7, 1);
}

/* Makes `tenant`'s 'retry_due' rows 'retry_requested' (then retry_sql
 * sends them): the ones in `ids` ("{1,2}": taken from the delayed queue),
 * or with ids NULL the ones overdue by push_retry_recover_s (their Redis
 * entry was lost). */
static void promote_due(worker *w, const char *tenant, const char *ids)
{
	static const char by_id[] =
		"UPDATE deliveries SET status = 'retry_requested', retry_requested_at = now(),"
		" updated_at = now() WHERE tenant_id = $1 AND status = 'retry_due'"
		" AND id = ANY($2::bigint[])";
	static const char overdue[] =
		"UPDATE deliveries SET status = 'retry_requested', retry_requested_at = now(),"
		" updated_at = now() WHERE tenant_id = $1 AND status = 'retry_due'"
		" AND next_attempt_at < now() - make_interval(secs => $2::integer)";
	const char *params[2];
	int rc;

	params[0] = tenant;
	params[1] = ids != NULL ? ids : w->recover_s;
	rc = tenant_exec(w, tenant, NULL, ids != NULL ? by_id : overdue, 2, params);
	if (rc != CG_DB_OK)
		db_failed(w, rc, "taking due retries");
}

/* Sends `tenant`'s 'retry_requested' rows of each configured provider.
 * Returns the number of jobs queued. */
static int retry_one_tenant(worker *w, const char *tenant)
{
	int queued = 0;

	if (pushd_creds_apns(w->pd->creds, tenant) != NULL)
		queued += retry_tenant(w, tenant);
	if (pushd_creds_vapid(w->pd->creds, tenant) != NULL)
		queued += webpush_retry_tenant(w, tenant);
	return queued;
}

/* Every tenant with retries to do (capsule_retry_tenants, a SECURITY
 * DEFINER function of sql/006), then each under its own policies. */
static void pick_retries(worker *w)
{
	PGresult *res = NULL;
	const char *params[1] = { w->recover_s };
	int i, queued = 0, rc;

	rc = cg_db_exec(w->db, &res, "SELECT t FROM capsule_retry_tenants($1::integer) t LIMIT 100"
			/* a round's tenants */, 1, params);
	if (rc != CG_DB_OK) {
		db_failed(w, rc, "looking for deliveries to retry");
		return;
	}
	db_ok(w);
	for (i = 0; i < PQntuples(res) && w->outstanding < PUSHD_MAX_OUTSTANDING_JOBS && !stopping(w); i++) {
		promote_due(w, PQgetvalue(res, i, 0), NULL);
		queued += retry_one_tenant(w, PQgetvalue(res, i, 0));
	}
	PQclear(res);
	if (queued > 0)
		apns_sender_wakeup(w->pd->apns);
}

/* Takes what is due from the delayed queue in Redis (atomically: a due
 * member goes to exactly one daemon), makes those rows 'retry_requested'
 * and sends them at once. A member whose row is no longer 'retry_due' (sent
 * meanwhile by another path) is dropped. */
static void take_due(worker *w)
{
	static const char script[] =
		"local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2]) "
		"for i = 1, #m do redis.call('ZREM', KEYS[1], m[i]) end "
		"return m";
	char now[24], max[16];
	const char *argv[6];
	redisReply *rep = NULL;
	unsigned char *done = NULL;
	cg_buf ids;
	size_t i, j;
	int rc, queued = 0;

	snprintf(now, sizeof now, "%lld", (long long)cg_now_ms());
	snprintf(max, sizeof max, "%d", DUE_MAX);
	argv[0] = "EVAL";
	argv[1] = script;
	argv[2] = "1";
	argv[3] = RETRY_QUEUE_KEY;
	argv[4] = now;
	argv[5] = max;
	rc = cg_redis_cmd(w->redis, &rep, 6, argv, NULL);
	if (rc != CG_REDIS_OK) {
		redis_failed(w, rc, "taking due retries");
		return;
	}
	redis_ok(w);
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
		freeReplyObject(rep);
		return;
	}
	/* Members are "<tenant> <id>"; one round per tenant, in order. */
	done = calloc(rep->elements, 1);
	if (done == NULL) {
		cg_log_error("out of memory taking due retries (picked from PostgreSQL later)");
		freeReplyObject(rep);
		return;
	}
	cg_buf_init(&ids, 1 << 20);
	for (i = 0; i < rep->elements; i++) {
		const redisReply *m = rep->element[i];
		const char *sp;
		size_t tlen;

		if (done[i] || m == NULL || m->type != REDIS_REPLY_STRING)
			continue;
		sp = memchr(m->str, ' ', m->len);
		if (sp == NULL)
			continue;
		tlen = (size_t)(sp - m->str);
		cg_buf_reset(&ids);
		for (j = i; j < rep->elements; j++) {
			const redisReply *o = rep->element[j];

			if (done[j] || o == NULL || o->type != REDIS_REPLY_STRING || o->len <= tlen ||
			    memcmp(o->str, m->str, tlen + 1) != 0)
				continue;
			(void)cg_buf_appendf(&ids, "%s%.*s", ids.len == 0 ? "{" : ",",
					     (int)(o->len - tlen - 1), o->str + tlen + 1);
			done[j] = 1; /* this tenant's: taken */
		}
		if (ids.len > 0 && cg_buf_append(&ids, "}", 1) == 0) {
			char tenant[CG_CLAIM_MAX];

			snprintf(tenant, sizeof tenant, "%.*s", (int)tlen, m->str);
			promote_due(w, tenant, ids.data);
			queued += retry_one_tenant(w, tenant);
		}
	}
	cg_buf_free(&ids);
	free(done);
	freeReplyObject(rep);
	if (queued > 0)
		apns_sender_wakeup(w->pd->apns);
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

/* How often to look for other daemons' abandoned entries: every
 * CLAIM_EVERY_MS, or more often when push_claim_idle_s is shorter. */
static int64_t claim_every_ms(const worker *w)
{
	int64_t half = (int64_t)w->cfg->push_claim_idle_s * 500;

	return half < CLAIM_EVERY_MS ? (half > 0 ? half : 1) : CLAIM_EVERY_MS;
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
	/* while pushes are out, short blocks: their outcomes are recorded and
	 * acknowledged between reads */
	snprintf(block, sizeof block, "%d", w->outstanding > 0 ? FLUSH_EVERY_MS : READ_BLOCK_MS);
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
 * longer than push_claim_idle_s. */
static void claim_abandoned(worker *w)
{
	char idle[16], count[16];
	const char *argv[] = { "XAUTOCLAIM", w->cfg->event_stream, w->cfg->push_group,
			       w->cfg->instance_id, idle, w->claim_cursor, "COUNT", count };
	redisReply *rep = NULL;
	const redisReply *entries;
	size_t i;
	int rc;

	snprintf(idle, sizeof idle, "%ld", w->cfg->push_claim_idle_s * 1000);
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
	if (flush_outcomes(w) < 0) {
		/* Unrecorded: their rows stay 'pending', their entries unacknowledged. */
		cg_log_warn("could not record %d push outcome(s); their events will be pushed again",
			    w->out_n);
		while ((job = w->out_head) != NULL) {
			w->out_head = job->next;
			if (job->outcome != PUSHD_RETRYING)
				job->outcome = PUSHD_ABANDONED;
			outcome_recorded(w, job);
		}
		w->out_tail = NULL;
		w->out_n = 0;
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
	snprintf(w.recover_s, sizeof w.recover_s, "%ld", w.cfg->push_retry_recover_s);
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
	w.next_claim = now + claim_every_ms(&w);
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
		if (pd->apns != NULL && cg_monotonic_ms() >= w.next_due) {
			w.next_due = cg_monotonic_ms() + DUE_EVERY_MS;
			take_due(&w);
		}
		if (pd->apns != NULL && cg_monotonic_ms() >= w.next_retry) {
			w.next_retry = cg_monotonic_ms() + RETRY_EVERY_MS;
			pick_retries(&w);
			continue;
		}
		if (!w.reading_pending && cg_monotonic_ms() >= w.next_claim) {
			w.next_claim = cg_monotonic_ms() + claim_every_ms(&w);
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

/* worker: the capsule-wsd thread for PostgreSQL and Redis questions (API keys, history, cursors). */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cg_activity.h"
#include "cg_event.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "worker.h"

#define WORKER_REDIS_TIMEOUT_MS 2000 /* history reads: bounded, never blocking */
#define WORKER_SCAN_FACTOR 4         /* stream entries scanned per event wanted */
#define WORKER_SCAN_MAX 2000

struct wsd_worker {
	const cg_config *cfg;
	struct lws_context *ctx;
	cg_db *db;
	cg_redis *redis;

	pthread_t thread;
	int thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;                 /* guarded by lock */
	int stop_now;             /* set with stop: skip all but ACK jobs */
	lws_dll2_owner_t todo;    /* guarded by lock */
	lws_dll2_owner_t done;    /* guarded by lock */
};

wsd_job *
wsd_job_new(wsd_job_kind kind, unsigned long long session)
{
	wsd_job *job = calloc(1, sizeof *job);

	if (job == NULL)
		return NULL;
	job->kind = kind;
	job->session = session;
	return job;
}

void
wsd_job_free(wsd_job *job)
{
	if (job == NULL)
		return;
	json_object_put(job->events);
	free(job);
}

static wsd_job_status
db_status(int rc)
{
	return rc == CG_DB_ECONN ? WSD_JOB_UNAVAILABLE : WSD_JOB_ERROR;
}

static void
job_apikey(wsd_worker *w, wsd_job *job)
{
	switch (cg_api_key_authenticate(w->db, job->text, &job->principal)) {
	case CG_APIKEY_OK:
		job->status = WSD_JOB_OK;
		break;
	case CG_APIKEY_REFUSED:
		job->status = WSD_JOB_REFUSED;
		snprintf(job->reason, sizeof job->reason, "invalid API key");
		break;
	case CG_APIKEY_UNAVAILABLE:
		job->status = WSD_JOB_UNAVAILABLE;
		snprintf(job->reason, sizeof job->reason, "key store unavailable");
		break;
	default:
		job->status = WSD_JOB_ERROR;
		snprintf(job->reason, sizeof job->reason, "internal error");
		break;
	}
	/* The key is a secret: do not keep it around. */
	explicit_bzero(job->text, sizeof job->text);
}

/* Whether a position is older than the retention. */
static int
beyond_retention(const cg_stream_pos *pos, long retention_s)
{
	return pos->ms + (uint64_t)retention_s * 1000u < (uint64_t)cg_now_ms();
}

static void
job_start(wsd_worker *w, wsd_job *job)
{
	int rc, found = 0;
	time_t at;

	if (job->text[0] != '\0' && cg_stream_pos_parse(job->text, &job->pos) == 0) {
		found = 1;
	} else if (job->text[0] != '\0') {
		rc = cg_history_event_position(w->db, job->tenant, job->text, &found, &job->pos, &at);
		if (rc != CG_DB_OK) {
			job->status = db_status(rc);
			snprintf(job->reason, sizeof job->reason, "history unavailable");
			return;
		}
		if (!found) {
			job->status = WSD_JOB_RESYNC;
			snprintf(job->reason, sizeof job->reason, "unknown last_event_id");
			return;
		}
	} else {
		rc = cg_history_cursor_get(w->db, job->tenant, job->subject, job->device, &found,
					   &job->pos, &at);
		if (rc != CG_DB_OK) {
			job->status = db_status(rc);
			snprintf(job->reason, sizeof job->reason, "history unavailable");
			return;
		}
		if (!found) {
			job->status = WSD_JOB_NONE;
			return;
		}
	}
	if (beyond_retention(&job->pos, job->retention_s)) {
		job->status = WSD_JOB_RESYNC;
		snprintf(job->reason, sizeof job->reason, "older than the retained history");
		return;
	}
	job->status = WSD_JOB_OK;
}

/* Appends the events of `more` to job->events (taking them over). */
static int
job_take_events(wsd_job *job, json_object *more)
{
	size_t i, n = json_object_array_length(more);

	if (job->events == NULL) {
		job->events = more;
		return 0;
	}
	for (i = 0; i < n; i++) {
		json_object *ev = json_object_get(json_object_array_get_idx(more, i));

		if (json_object_array_add(job->events, ev) != 0) {
			json_object_put(ev);
			json_object_put(more);
			return -1;
		}
	}
	json_object_put(more);
	return 0;
}

/* PostgreSQL part of a page: after < position <= upto, before `before`
 * (NULL: no bound). Sets *got to the number read. */
static int
page_pg(wsd_worker *w, wsd_job *job, const cg_stream_pos *before, size_t *got)
{
	json_object *evs = NULL, *last;
	int rc;

	*got = 0;
	rc = cg_history_pg(w->db, job->tenant, &job->pos, &job->upto, before, job->limit, &evs);
	if (rc != CG_DB_OK) {
		job->status = db_status(rc);
		snprintf(job->reason, sizeof job->reason, "history unavailable");
		return -1;
	}
	*got = json_object_array_length(evs);
	if (*got > 0) {
		last = json_object_array_get_idx(evs, *got - 1);
		if (cg_stream_pos_parse(cg_event_str(last, "stream_id"), &job->pos) < 0) {
			json_object_put(evs);
			job->status = WSD_JOB_ERROR;
			return -1;
		}
	}
	if (job_take_events(job, evs) < 0) {
		job->status = WSD_JOB_ERROR;
		return -1;
	}
	return 0;
}

/* One page: what Redis no longer holds from PostgreSQL, the rest from the
 * stream. Redis down: all of it from PostgreSQL (events on the stream but
 * not yet marked published there are then read once Redis is back, or
 * reach the client live). */
static void
job_page(wsd_worker *w, wsd_job *job)
{
	cg_stream_pos first, last;
	json_object *evs = NULL;
	size_t got;
	int have = 0, end = 0, rc, scan;

	job->status = WSD_JOB_OK;
	if (job->limit < 1)
		job->limit = 1;
	if (cg_stream_pos_cmp(&job->pos, &job->upto) >= 0) {
		job->end = 1;
		return;
	}
	rc = cg_history_redis_first(w->redis, w->cfg, &have, &first);
	if (rc != CG_REDIS_OK || !have || cg_stream_pos_cmp(&job->pos, &first) < 0) {
		/* Before the stream's oldest entry (or no stream): PostgreSQL. */
		if (page_pg(w, job, rc == CG_REDIS_OK && have ? &first : NULL, &got) < 0)
			return;
		if (got > 0)
			return;
		if (rc != CG_REDIS_OK || !have) {
			job->pos = job->upto;
			job->end = 1;
			return;
		}
		/* Nothing in PostgreSQL before the stream: go on from Redis. */
	}
	scan = job->limit * WORKER_SCAN_FACTOR;
	if (scan > WORKER_SCAN_MAX)
		scan = WORKER_SCAN_MAX;
	rc = cg_history_redis(w->redis, w->cfg, job->tenant, &job->pos, &job->upto, scan, &evs,
			      &last, &end);
	if (rc != CG_REDIS_OK) {
		job->status = WSD_JOB_UNAVAILABLE;
		snprintf(job->reason, sizeof job->reason, "history unavailable");
		return;
	}
	if (job_take_events(job, evs) < 0) {
		job->status = WSD_JOB_ERROR;
		return;
	}
	job->pos = last;
	if (end || cg_stream_pos_cmp(&job->pos, &job->upto) >= 0) {
		job->pos = job->upto;
		job->end = 1;
	}
}

static void
job_ack(wsd_worker *w, wsd_job *job)
{
	int rc, found = 1;
	time_t at;

	if (job->text[0] != '\0') {
		rc = cg_history_event_position(w->db, job->tenant, job->text, &found, &job->pos, &at);
		if (rc != CG_DB_OK) {
			cg_log_warn("cursor of %s/%s not moved: %s", job->subject, job->device,
				    cg_db_errmsg(w->db));
			job->status = db_status(rc);
			return;
		}
		if (!found) {
			cg_log_debug("ack of unknown event %s ignored", job->text);
			job->status = WSD_JOB_NONE;
			return;
		}
	}
	rc = cg_history_cursor_advance(w->db, job->tenant, job->subject, job->device, &job->pos);
	if (rc != CG_DB_OK) {
		cg_log_warn("cursor of %s/%s not moved: %s", job->subject, job->device,
			    cg_db_errmsg(w->db));
		job->status = db_status(rc);
		return;
	}
	job->status = WSD_JOB_OK;
}

/* Reads the owner of activity job->text in its tenant. */
static void
job_channel(wsd_worker *w, wsd_job *job)
{
	json_object *act = NULL, *u;
	int rc = cg_db_begin_tenant(w->db, job->tenant);

	if (rc == CG_DB_OK) {
		rc = cg_activity_get(w->db, job->tenant, job->text, &act);
		if (rc == CG_DB_OK || rc == CG_ACT_ENOTFOUND)
			rc = cg_db_commit(w->db);
		else
			cg_db_rollback(w->db);
	}
	if (rc != CG_DB_OK) {
		job->status = db_status(rc);
		snprintf(job->reason, sizeof job->reason, "activity store unavailable");
	} else if (act == NULL) {
		job->status = WSD_JOB_NONE;
	} else {
		job->status = WSD_JOB_OK;
		if (json_object_object_get_ex(act, "user_id", &u) && json_object_is_type(u, json_type_string))
			snprintf(job->owner_user, sizeof job->owner_user, "%s", json_object_get_string(u));
	}
	json_object_put(act);
}

static void *
worker_main(void *arg)
{
	wsd_worker *w = arg;
	wsd_job *job;
	int skip;

	for (;;) {
		pthread_mutex_lock(&w->lock);
		while (w->todo.head == NULL && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->todo.head == NULL) {
			pthread_mutex_unlock(&w->lock);
			break;
		}
		job = lws_container_of(w->todo.head, wsd_job, list);
		lws_dll2_remove(&job->list);
		skip = job->kind != WSD_JOB_ACK && w->stop_now;
		pthread_mutex_unlock(&w->lock);
		if (skip) {
			/* Stopping: nobody is left to answer; cursors still move. */
			wsd_job_free(job);
			continue;
		}

		switch (job->kind) {
		case WSD_JOB_APIKEY:
			job_apikey(w, job);
			break;
		case WSD_JOB_START:
			job_start(w, job);
			break;
		case WSD_JOB_PAGE:
			job_page(w, job);
			break;
		case WSD_JOB_ACK:
			job_ack(w, job);
			break;
		case WSD_JOB_CHANNEL:
			job_channel(w, job);
			break;
		}
		if (job->kind == WSD_JOB_ACK) {
			/* Nobody waits for an ack's answer. */
			wsd_job_free(job);
			continue;
		}
		pthread_mutex_lock(&w->lock);
		lws_dll2_add_tail(&job->list, &w->done);
		pthread_mutex_unlock(&w->lock);
		lws_cancel_service(w->ctx);
	}
	return NULL;
}

wsd_worker *
wsd_worker_start(const cg_config *cfg, struct lws_context *ctx, char *err, size_t errlen)
{
	wsd_worker *w = calloc(1, sizeof *w);
	sigset_t all, old;
	int rc;

	if (w == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->cfg = cfg;
	w->ctx = ctx;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->db = cg_db_open(cfg->database_url, err, errlen);
	if (w->db == NULL)
		goto fail;
	w->redis = cg_redis_open(cfg->redis_url, WORKER_REDIS_TIMEOUT_MS, err, errlen);
	if (w->redis == NULL)
		goto fail;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the worker thread: %s", strerror(rc));
		goto fail;
	}
	w->thread_started = 1;
	return w;
fail:
	wsd_worker_free(w);
	return NULL;
}

int
wsd_worker_submit(wsd_worker *w, wsd_job *job)
{
	int rc = -1;

	pthread_mutex_lock(&w->lock);
	if (!w->stop && w->todo.count < WSD_WORKER_QUEUE_MAX) {
		lws_dll2_add_tail(&job->list, &w->todo);
		pthread_cond_signal(&w->cond);
		rc = 0;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

wsd_job *
wsd_worker_done(wsd_worker *w)
{
	wsd_job *job = NULL;

	pthread_mutex_lock(&w->lock);
	if (w->done.head != NULL) {
		job = lws_container_of(w->done.head, wsd_job, list);
		lws_dll2_remove(&job->list);
	}
	pthread_mutex_unlock(&w->lock);
	return job;
}

static void
free_list(lws_dll2_owner_t *owner)
{
	lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(owner)) {
		wsd_job *job = lws_container_of(d, wsd_job, list);

		lws_dll2_remove(&job->list);
		wsd_job_free(job);
	} lws_end_foreach_dll_safe(d, d1);
}

void
wsd_worker_free(wsd_worker *w)
{
	if (w == NULL)
		return;
	if (w->thread_started) {
		pthread_mutex_lock(&w->lock);
		w->stop = 1;
		w->stop_now = 1;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	free_list(&w->todo);
	free_list(&w->done);
	cg_db_close(w->db);
	cg_redis_close(w->redis);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

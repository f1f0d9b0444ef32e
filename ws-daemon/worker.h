/* worker: the capsule-wsd thread that asks PostgreSQL and Redis the slow questions.
 *
 * The lws service thread must never block, so everything that needs a
 * database round trip is a job for this one thread, with its own cg_db
 * (database_url) and cg_redis connections:
 *   APIKEY  verify an agent's API key (cg_api_key_authenticate);
 *   START   find where a resuming connection starts: a last_event_id (an
 *           event_id or a stream position) or the device's cursor;
 *   PAGE    one page of history after a position, up to a bound: from
 *           PostgreSQL for what Redis no longer holds (trimmed, or lost in
 *           a restart) and from the Redis stream for the rest;
 *   ACK     move a device's cursor forward (resolving an event_id first);
 *   CHANNEL whose activity a capsule channel is (may a viewer watch it?).
 * The service thread submits jobs (wsd_worker_submit) and gets them back
 * answered (wsd_worker_done) after the worker woke it with
 * lws_cancel_service(). Jobs are answered in the order they were submitted.
 * A job belongs to whoever holds it; the worker never touches lws state or
 * sessions, so a job whose session has gone is simply dropped on return.
 * The input queue is capped (WSD_WORKER_QUEUE_MAX): a submit beyond it
 * fails and the caller answers the client (1013, try again later). */
#ifndef WSD_WORKER_H
#define WSD_WORKER_H

#include <json-c/json.h>
#include <libwebsockets.h>

#include "cg_auth.h"
#include "cg_config.h"
#include "cg_history.h"
#include "cg_jwt.h"

#define WSD_WORKER_QUEUE_MAX 20000
#define WSD_JOB_TEXT_MAX 256          /* event id, position or API key */
#define WSD_JOB_SUBJECT_MAX 300       /* user id or "agent:<agent_id>" */
#define WSD_JOB_DEVICE_MAX 256        /* device token (cg_ws_claims) */

typedef enum {
	WSD_JOB_APIKEY = 1,
	WSD_JOB_START,
	WSD_JOB_PAGE,
	WSD_JOB_ACK,
	WSD_JOB_CHANNEL,
} wsd_job_kind;

typedef enum {
	WSD_JOB_OK = 0,
	WSD_JOB_NONE,        /* START: no cursor, nothing to replay; CHANNEL: no
	                      * such activity (yet) */
	WSD_JOB_RESYNC,      /* START: unknown position or older than retention */
	WSD_JOB_REFUSED,     /* APIKEY: the key is not valid */
	WSD_JOB_UNAVAILABLE, /* PostgreSQL (or Redis) unreachable */
	WSD_JOB_ERROR,       /* anything else */
} wsd_job_status;

typedef struct wsd_job {
	lws_dll2_t list;                 /* in a worker queue */
	wsd_job_kind kind;
	unsigned long long session;      /* serial of the session it is for (logs) */
	void *owner;                     /* the service thread's: the session waiting
	                                  * for the answer, NULL once it has gone.
	                                  * The worker never reads or writes it. */

	/* Input. */
	char tenant[CG_CLAIM_MAX];       /* START, PAGE, ACK */
	char subject[WSD_JOB_SUBJECT_MAX]; /* START, ACK: cursor subject */
	char device[WSD_JOB_DEVICE_MAX]; /* START, ACK: cursor device ("" for agents) */
	char text[WSD_JOB_TEXT_MAX];     /* APIKEY: the key; START: last_event_id as
	                                  * given ("" = the cursor); ACK: event_id
	                                  * ("" = use pos); CHANNEL: the capsule id */
	long retention_s;                /* START */
	cg_stream_pos upto;              /* PAGE: last position to include */
	int limit;                       /* PAGE: events returned at most */

	/* Input and output. */
	cg_stream_pos pos;               /* START out: replay after this;
	                                  * PAGE in: after this, out: covered up to
	                                  * here; ACK in: position (when text "") */

	/* Output. */
	wsd_job_status status;
	char reason[128];                /* RESYNC / REFUSED / errors, for the client */
	cg_principal principal;          /* APIKEY */
	char owner_user[CG_CLAIM_MAX];   /* CHANNEL: the activity's user_id ("" =
	                                  * tenant-wide) */
	json_object *events;             /* PAGE: array of events, owned by the job */
	int end;                         /* PAGE: nothing more up to `upto` */
} wsd_job;

typedef struct wsd_worker wsd_worker;

/* A zeroed job of `kind` for session `session`, or NULL (out of memory). */
wsd_job *wsd_job_new(wsd_job_kind kind, unsigned long long session);

/* Frees a job and its events. NULL is ignored. */
void wsd_job_free(wsd_job *job);

/* Starts the thread. `cfg` and `ctx` are borrowed and must outlive the
 * worker (until wsd_worker_free returns); the thread reads only
 * database_url, redis_url and event_stream from cfg (not reloaded). Returns
 * NULL with a reason when the URLs are unusable or the thread cannot start;
 * PostgreSQL or Redis being down is not an error (jobs answer UNAVAILABLE). */
wsd_worker *wsd_worker_start(const cg_config *cfg, struct lws_context *ctx, char *err,
			     size_t errlen);

/* Queues a job (ownership moves to the worker on success). Returns 0, or -1
 * when the queue is full or the worker is stopping (the caller keeps it).
 * Service thread. */
int wsd_worker_submit(wsd_worker *w, wsd_job *job);

/* The oldest answered job (the caller owns it), or NULL. Service thread. */
wsd_job *wsd_worker_done(wsd_worker *w);

/* Stops the thread once the jobs queued so far are done (ACKs must reach
 * the database), waits for it and frees everything. NULL is ignored. */
void wsd_worker_free(wsd_worker *w);

#endif

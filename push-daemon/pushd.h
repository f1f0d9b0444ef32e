/* pushd: shared internal declarations of capsule-pushd (the delivery daemon).
 *
 * Threads: the main thread handles signals only; the worker thread (worker.c)
 * talks to Redis and PostgreSQL and may block; the sender thread (apns.c)
 * drives one libcurl multi handle and never blocks. They meet in two capped
 * queues: `jobs` (worker -> sender, one job per device) and `results`
 * (sender -> worker, the same job with its final outcome, and progress
 * copies of jobs being retried). A job is owned by whichever side holds it;
 * its event record is owned by the worker and is read-only for the sender
 * while any of its jobs (or progress copies) is out.
 *
 * Every job is one row of the deliveries table (sql/006_deliveries.sql):
 * the worker inserts it 'pending' before queueing the job and writes each
 * outcome there before it acknowledges the stream entry. */
#ifndef PUSHD_H
#define PUSHD_H

#include <stdatomic.h>
#include <stdint.h>

#include "cg_config.h"
#include "queue.h"

/* Devices one event is pushed to at most (a larger audience is cut, with a
 * warning). */
#define PUSHD_MAX_DEVICES_PER_EVENT 10000
/* The worker reads no new entry while this many jobs are out. */
#define PUSHD_MAX_OUTSTANDING_JOBS 10000
/* Both queues hold every job that can exist, so a push never fails. */
#define PUSHD_QUEUE_CAP (PUSHD_MAX_OUTSTANDING_JOBS + PUSHD_MAX_DEVICES_PER_EVENT)
/* Redis stream ids are "<ms>-<seq>", two 64-bit numbers. */
#define PUSHD_STREAM_ID_MAX 48

typedef enum pushd_apns_state {
	PUSHD_APNS_NOT_CONFIGURED = 0,
	PUSHD_APNS_CONNECTED,
	PUSHD_APNS_FAILING,
} pushd_apns_state;

/* The value written to cg:pushd:apns. */
const char *pushd_apns_state_name(int state);

typedef enum pushd_outcome {
	PUSHD_SENT = 0,   /* final: the provider accepted it */
	PUSHD_FAILED,     /* final: rejected or retries exhausted; dropped and logged */
	PUSHD_DEACTIVATE, /* final: the token is dead; the worker deactivates the device
			   * (a Live Activity push: its live_activity_tokens row; a
			   * push-to-start: the device's push_to_start_token) */
	PUSHD_ABANDONED,  /* NOT final: the daemon is stopping; the event stays pending */
	PUSHD_DEFERRED,   /* final for this run: the sender wants a retry at
			   * retry_due_ms; the worker parks it on the delayed queue
			   * in Redis (row 'retry_due') and any daemon sends it then */
	PUSHD_RETRYING,   /* NOT final: a progress copy of a job the sender will retry
			   * (attempts, status, reason so far); the sender keeps the
			   * job, the worker records and frees the copy */
} pushd_outcome;

/* What a job sends (PUSH.md A4 push types, part B Web Push). */
typedef enum pushd_kind {
	PUSHD_KIND_ALERT = 0,    /* APNs alert: the event's payload */
	PUSHD_KIND_BACKGROUND,   /* APNs background (content-available), priority 5 */
	PUSHD_KIND_LIVEACTIVITY, /* APNs liveactivity: update/end to an activity's
	                          * push token, or start to a push-to-start token */
	PUSHD_KIND_WEBPUSH,      /* Web Push to a browser subscription */
} pushd_kind;

/* One stream entry being delivered (worker-owned), or the event of
 * deliveries an admin asked to retry: then stream_id is "" and nothing is
 * acknowledged when its jobs are final. */
typedef struct pushd_event {
	char stream_id[PUSHD_STREAM_ID_MAX];
	char event_id[64];
	char *tenant;
	char *payload;          /* the APNs JSON body, <= 4096 bytes */
	size_t payload_len;
	int apns_priority;      /* 5 or 10 */
	long long expiration;   /* apns-expiration, UNIX seconds */
	char collapse_id[65];   /* "" when none */
	pushd_kind device_kind; /* ALERT or BACKGROUND: what devices get */
	/* Live Activities (NULL when the event has none): */
	char *la_payload;       /* liveactivity body (update/end) */
	size_t la_payload_len;
	char *la_start_payload; /* liveactivity "start" body (push-to-start) */
	size_t la_start_payload_len;
	int la_priority;        /* apns-priority of liveactivity pushes */
	/* Web Push (NULL when the event has none): */
	char *wp_payload;       /* the notification JSON, before encryption */
	size_t wp_payload_len;
	long wp_ttl;            /* TTL header */
	char wp_urgency[16];    /* Urgency header */
	char wp_topic[40];      /* Topic header, "" when none */
	/* worker only: */
	int remaining;          /* jobs not yet final */
	int abandoned;          /* some job was abandoned: never XACK */
	struct pushd_event *prev, *next;
} pushd_event;

/* One push to one device (or Live Activity token, or browser subscription). */
typedef struct pushd_job {
	pushd_event *ev;
	pushd_kind kind;
	long long la_token_id;  /* LIVEACTIVITY update/end: live_activity_tokens.id */
	int la_start;           /* LIVEACTIVITY to a push-to-start token */
	long long subscription_id; /* WEBPUSH: push_subscriptions.id */
	char *endpoint;         /* WEBPUSH: the subscription's endpoint URL */
	char *p256dh, *auth;    /* WEBPUSH: its keys (base64url) */
	long retry_after_s;     /* set by the sender: the provider's Retry-After, 0 none */
	char *device_token;     /* NULL in a progress copy */
	char apns_id[37];
	long long delivery_id;  /* its deliveries row */
	long long device_id;    /* devices.id, for deactivation */
	int attempts_before;    /* attempts the row had recorded (earlier runs) */
	int attempt_base;       /* attempts an admin retry started from: the
	                         * attempt limit counts from there */
	long long retry_due_ms; /* PUSHD_DEFERRED: when to try again (UNIX ms) */
	/* sender only: */
	int attempts;
	int64_t retry_at_ms;    /* monotonic */
	struct pushd_job *next; /* the sender's retry list, the worker's outcome buffer */
	/* the outcome, set by the sender before handing the job back: */
	pushd_outcome outcome;
	long status;            /* HTTP status, 0 when none */
	char reason[64];        /* APNs reason, "" when none */
	long long timestamp_ms; /* 410 "timestamp", -1 when absent */
} pushd_job;

struct apns_sender;

/* The daemon: configuration and what the threads share. */
typedef struct pushd {
	cg_config cfg;              /* read-only once the threads run */
	atomic_int stop;            /* set by main on SIGTERM/SIGINT */
	atomic_int fatal;           /* a thread could not go on: exit 1 */
	atomic_int apns_state;      /* pushd_apns_state, set by the sender */
	pushd_queue *jobs;          /* worker -> sender */
	pushd_queue *results;       /* sender -> worker */
	struct apns_sender *apns;   /* the sender; NULL when neither APNs nor Web
				     * Push is configured */
	struct pushd_creds *creds;  /* each tenant's APNs / VAPID credentials (creds.h) */
} pushd;

/* Frees a job (not its event). */
void pushd_job_free(pushd_job *job);

/* Asks the whole daemon to stop because a thread cannot go on (exit 1). */
void pushd_fatal_stop(pushd *pd);

/* The worker thread (worker.c); `arg` is the pushd. Returns when pd->stop is
 * set and every delivered result is processed. */
void *pushd_worker_main(void *arg);

#endif

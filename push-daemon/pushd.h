/* pushd: shared internal declarations of capsule-pushd (the delivery daemon).
 *
 * Threads: the main thread handles signals only; the worker thread (worker.c)
 * talks to Redis and PostgreSQL and may block; the sender thread (apns.c)
 * drives one libcurl multi handle and never blocks. They meet in two capped
 * queues: `jobs` (worker -> sender, one job per device) and `results`
 * (sender -> worker, the same job with its final outcome). A job is owned by
 * whichever side holds it; its event record is owned by the worker and is
 * read-only for the sender while any of its jobs is out. */
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
	PUSHD_DEACTIVATE, /* final: the token is dead; the worker deactivates the device */
	PUSHD_ABANDONED,  /* NOT final: the daemon is stopping; the event stays pending */
} pushd_outcome;

/* One stream entry being delivered (worker-owned). */
typedef struct pushd_event {
	char stream_id[PUSHD_STREAM_ID_MAX];
	char event_id[64];
	char *tenant;
	char *payload;          /* the APNs JSON body, <= 4096 bytes */
	size_t payload_len;
	int apns_priority;      /* 5 or 10 */
	long long expiration;   /* apns-expiration, UNIX seconds */
	char collapse_id[65];   /* "" when none */
	/* worker only: */
	int remaining;          /* jobs not yet final */
	int abandoned;          /* some job was abandoned: never XACK */
	struct pushd_event *prev, *next;
} pushd_event;

/* One push to one device. */
typedef struct pushd_job {
	pushd_event *ev;
	char *device_token;
	char apns_id[37];
	/* sender only: */
	int attempts;
	int64_t retry_at_ms;    /* monotonic */
	struct pushd_job *next; /* the sender's retry list, the worker's deactivation list */
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
	struct apns_sender *apns;   /* NULL when APNs is not configured */
} pushd;

/* Frees a job (not its event). */
void pushd_job_free(pushd_job *job);

/* Asks the whole daemon to stop because a thread cannot go on (exit 1). */
void pushd_fatal_stop(pushd *pd);

/* The worker thread (worker.c); `arg` is the pushd. Returns when pd->stop is
 * set and every delivered result is processed. */
void *pushd_worker_main(void *arg);

#endif

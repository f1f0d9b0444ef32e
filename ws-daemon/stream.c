/* stream: the Redis event-stream reader thread of capsule-wsd and its hand-off queue. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "cg_event.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "stream.h"

#define STREAM_BLOCK_MS 2000       /* XREAD BLOCK: bounds how long a stop takes */
#define STREAM_READ_COUNT 256      /* entries per XREAD at most */
#define STREAM_RETRY_MS 1000       /* back-off while Redis is down */
#define STREAM_REGISTRY_MS 5000    /* registry refresh period */
#define STREAM_REGISTRY_TTL 15     /* seconds; outlives two missed refreshes */
#define STREAM_ID_MAX 64           /* "<ms>-<seq>" fits easily */

struct wsd_stream {
	const cg_config *cfg;
	struct lws_context *ctx;
	const atomic_int *nconns;
	char registry_key[320];

	pthread_t thread;
	int thread_started;
	atomic_int stop;

	/* The queue: a ring of owned event objects, guarded by `lock`. `cond`
	 * wakes the reader from its back-off and queue-full waits. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	json_object *ring[WSD_STREAM_QUEUE_MAX];
	size_t head;  /* oldest */
	size_t count;

	/* Reader-thread only. */
	cg_redis *redis;
	char last_id[STREAM_ID_MAX];
	int redis_down;        /* inside an outage: logged once */
	int xread_failing;     /* XREAD answers an error: logged once */
	int64_t next_registry_ms;
};

/* Sleeps up to `ms` unless a stop is requested (reader thread). */
static void
stream_wait(wsd_stream *s, long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->lock);
	if (!atomic_load(&s->stop))
		(void)pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	pthread_mutex_unlock(&s->lock);
}

/* Notes the outcome of a Redis command for the once-per-outage log lines. */
static void
stream_redis_result(wsd_stream *s, int rc)
{
	if (rc == CG_REDIS_ECONN) {
		if (!s->redis_down)
			cg_log_warn("redis unreachable, event stream paused (retrying every %d ms): %s",
				    STREAM_RETRY_MS, cg_redis_errmsg(s->redis));
		s->redis_down = 1;
		return;
	}
	if (s->redis_down)
		cg_log_info("redis reachable again, event stream resumed");
	s->redis_down = 0;
}

/* Writes this instance's entry of the connection registry when it is due. */
static void
stream_registry_tick(wsd_stream *s)
{
	char val[24];
	int64_t now = cg_monotonic_ms();
	int n, rc;

	if (now < s->next_registry_ms)
		return;
	s->next_registry_ms = now + STREAM_REGISTRY_MS;
	n = snprintf(val, sizeof val, "%d", atomic_load(s->nconns));
	rc = cg_redis_setex(s->redis, s->registry_key, val, (size_t)n, STREAM_REGISTRY_TTL);
	if (rc == CG_REDIS_EREPLY)
		cg_log_warn("redis: SET %s failed: %s", s->registry_key, cg_redis_errmsg(s->redis));
	else
		stream_redis_result(s, rc);
}

/* Room left in the queue (reader thread; the consumer only makes it grow). */
static size_t
stream_room(wsd_stream *s)
{
	size_t room;

	pthread_mutex_lock(&s->lock);
	room = WSD_STREAM_QUEUE_MAX - s->count;
	pthread_mutex_unlock(&s->lock);
	return room;
}

/* Queues the events of one XREAD reply and moves last_id past them. Returns
 * the number queued. */
static size_t
stream_take_reply(wsd_stream *s, const redisReply *rep)
{
	const redisReply *entries;
	size_t i, queued = 0;

	/* [[stream, [[id, [field, value, ...]], ...]]]; nil on timeout. */
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1)
		return 0;
	if (rep->element[0]->type != REDIS_REPLY_ARRAY || rep->element[0]->elements != 2)
		return 0;
	entries = rep->element[0]->element[1];
	if (entries->type != REDIS_REPLY_ARRAY)
		return 0;

	for (i = 0; i < entries->elements; i++) {
		const redisReply *entry = entries->element[i];
		json_object *ev;

		if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 1 ||
		    entry->element[0]->type != REDIS_REPLY_STRING)
			continue;
		if (entry->element[0]->len < STREAM_ID_MAX) {
			memcpy(s->last_id, entry->element[0]->str, entry->element[0]->len);
			s->last_id[entry->element[0]->len] = '\0';
		}
		ev = cg_event_from_stream_entry(entry);
		if (ev == NULL)
			continue; /* logged by cg_event; never block the stream on it */

		pthread_mutex_lock(&s->lock);
		if (s->count < WSD_STREAM_QUEUE_MAX) {
			s->ring[(s->head + s->count) % WSD_STREAM_QUEUE_MAX] = ev;
			s->count++;
			ev = NULL;
			queued++;
		}
		pthread_mutex_unlock(&s->lock);
		if (ev != NULL) {
			/* Cannot happen: COUNT never exceeds the room. */
			cg_log_error("event queue full, event %s dropped", cg_event_str(ev, "event_id"));
			json_object_put(ev);
		}
	}
	return queued;
}

/* One XREAD round. */
static void
stream_read_once(wsd_stream *s)
{
	redisReply *rep = NULL;
	char count[16], block[16];
	const char *argv[8];
	size_t room = stream_room(s);
	int rc;

	if (room == 0) {
		/* The service thread is behind: leave the events in Redis. */
		stream_wait(s, 100);
		return;
	}
	snprintf(count, sizeof count, "%zu", room < STREAM_READ_COUNT ? room : (size_t)STREAM_READ_COUNT);
	snprintf(block, sizeof block, "%d", STREAM_BLOCK_MS);
	argv[0] = "XREAD";
	argv[1] = "COUNT";
	argv[2] = count;
	argv[3] = "BLOCK";
	argv[4] = block;
	argv[5] = "STREAMS";
	argv[6] = s->cfg->event_stream;
	argv[7] = s->last_id;
	rc = cg_redis_cmd(s->redis, &rep, 8, argv, NULL);
	if (rc == CG_REDIS_EREPLY) {
		if (!s->xread_failing)
			cg_log_warn("redis: XREAD %s failed (retrying every %d ms): %s",
				    s->cfg->event_stream, STREAM_RETRY_MS, cg_redis_errmsg(s->redis));
		s->xread_failing = 1;
		stream_wait(s, STREAM_RETRY_MS);
		return;
	}
	stream_redis_result(s, rc);
	if (rc == CG_REDIS_OK && s->xread_failing) {
		cg_log_info("redis: XREAD %s works again", s->cfg->event_stream);
		s->xread_failing = 0;
	}
	if (rc != CG_REDIS_OK) {
		stream_wait(s, STREAM_RETRY_MS);
		return;
	}
	if (stream_take_reply(s, rep) > 0)
		lws_cancel_service(s->ctx);
	freeReplyObject(rep);
}

static void *
stream_main(void *arg)
{
	wsd_stream *s = arg;

	cg_log_debug("event stream reader started on %s", s->cfg->event_stream);
	while (!atomic_load(&s->stop)) {
		stream_registry_tick(s);
		stream_read_once(s);
	}
	/* Leave the registry at once so /health stops counting us. */
	if (!s->redis_down)
		(void)cg_redis_del(s->redis, s->registry_key);
	cg_log_debug("event stream reader stopped");
	return NULL;
}

wsd_stream *
wsd_stream_start(const cg_config *cfg, struct lws_context *ctx, const atomic_int *nconns,
		 char *err, size_t errlen)
{
	wsd_stream *s;
	pthread_condattr_t ca;
	sigset_t all, old;
	int rc;

	s = calloc(1, sizeof *s);
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->ctx = ctx;
	s->nconns = nconns;
	atomic_init(&s->stop, 0);
	snprintf(s->last_id, sizeof s->last_id, "$");
	snprintf(s->registry_key, sizeof s->registry_key, "cg:ws:conns:%s", cfg->instance_id);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);

	/* timeout 0: XREAD BLOCK must not be cut short by a socket timeout. */
	s->redis = cg_redis_open(cfg->redis_url, 0, err, errlen);
	if (s->redis == NULL)
		goto fail;
	/* Signals belong to the service thread: the reader inherits a full mask. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&s->thread, NULL, stream_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the stream thread: %s", strerror(rc));
		goto fail;
	}
	s->thread_started = 1;
	return s;
fail:
	wsd_stream_free(s);
	return NULL;
}

json_object *
wsd_stream_pop(wsd_stream *s)
{
	json_object *ev = NULL;
	int wake = 0;

	pthread_mutex_lock(&s->lock);
	if (s->count > 0) {
		ev = s->ring[s->head];
		s->ring[s->head] = NULL;
		s->head = (s->head + 1) % WSD_STREAM_QUEUE_MAX;
		s->count--;
		wake = s->count == WSD_STREAM_QUEUE_MAX - 1;
	}
	if (wake)
		pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return ev;
}

void
wsd_stream_stop(wsd_stream *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->stop, 1);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void
wsd_stream_free(wsd_stream *s)
{
	json_object *ev;

	if (s == NULL)
		return;
	if (s->thread_started) {
		wsd_stream_stop(s);
		pthread_join(s->thread, NULL);
	}
	for (;;) {
		ev = wsd_stream_pop(s);
		if (ev == NULL)
			break;
		json_object_put(ev);
	}
	cg_redis_close(s->redis);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

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
#define STREAM_REGISTRY_MIN_MS 1000 /* a new snapshot is written at most this often */
#define STREAM_ID_MAX 64           /* "<ms>-<seq>" fits easily */

/* Rewrites the registry hash atomically: KEYS[1] the hash, ARGV[1] the TTL,
 * then field/value pairs (HSET one by one: no unpack() stack limit). */
static const char registry_script[] =
	"redis.call('DEL', KEYS[1]) "
	"for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end "
	"if #ARGV > 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
	"return 1";

struct wsd_stream {
	const cg_config *cfg;
	struct lws_context *ctx;
	const atomic_int *nconns;
	char registry_key[320];
	char list_key[320];

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
	wsd_registry *pending; /* newest snapshot not yet taken by the reader */
	char popped_id[STREAM_ID_MAX]; /* every entry up to here was popped; "" unknown */

	/* Reader-thread only. */
	cg_redis *redis;
	char last_id[STREAM_ID_MAX];
	int redis_down;        /* inside an outage: logged once */
	int xread_failing;     /* XREAD answers an error: logged once */
	int64_t next_registry_ms;
	int64_t last_registry_ms;
	wsd_registry *current;  /* the snapshot the hash is rewritten from */
};

wsd_registry *
wsd_registry_new(size_t cap)
{
	wsd_registry *r = calloc(1, sizeof *r);

	if (r == NULL)
		return NULL;
	r->cap = cap;
	if (cap > 0) {
		r->field = calloc(cap, sizeof *r->field);
		r->value = calloc(cap, sizeof *r->value);
		if (r->field == NULL || r->value == NULL) {
			wsd_registry_free(r);
			return NULL;
		}
	}
	return r;
}

int
wsd_registry_add(wsd_registry *r, const char *field, const char *value)
{
	char *f, *v;

	if (r->n >= r->cap)
		return -1;
	f = strdup(field);
	v = strdup(value);
	if (f == NULL || v == NULL) {
		free(f);
		free(v);
		return -1;
	}
	r->field[r->n] = f;
	r->value[r->n] = v;
	r->n++;
	return 0;
}

void
wsd_registry_free(wsd_registry *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n; i++) {
		free(r->field[i]);
		free(r->value[i]);
	}
	free(r->field);
	free(r->value);
	free(r);
}

void
wsd_stream_set_registry(wsd_stream *s, wsd_registry *r)
{
	wsd_registry *old;

	pthread_mutex_lock(&s->lock);
	old = s->pending;
	s->pending = r;
	pthread_mutex_unlock(&s->lock);
	wsd_registry_free(old);
}

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

/* Rewrites the registry hash from s->current (reader thread). */
static void
stream_registry_write(wsd_stream *s)
{
	const char **argv = NULL;
	char ttl[16];
	size_t n = s->current != NULL ? s->current->n : 0, i;
	int rc;

	if (n == 0) {
		rc = cg_redis_del(s->redis, s->list_key);
		goto out;
	}
	argv = calloc(5 + 2 * n, sizeof *argv);
	if (argv == NULL) {
		cg_log_error("registry: out of memory");
		return;
	}
	snprintf(ttl, sizeof ttl, "%d", STREAM_REGISTRY_TTL);
	argv[0] = "EVAL";
	argv[1] = registry_script;
	argv[2] = "1";
	argv[3] = s->list_key;
	argv[4] = ttl;
	for (i = 0; i < n; i++) {
		argv[5 + 2 * i] = s->current->field[i];
		argv[6 + 2 * i] = s->current->value[i];
	}
	rc = cg_redis_cmd(s->redis, NULL, (int)(5 + 2 * n), argv, NULL);
out:
	if (rc == CG_REDIS_EREPLY)
		cg_log_warn("redis: registry %s not written: %s", s->list_key,
			    cg_redis_errmsg(s->redis));
	else
		stream_redis_result(s, rc);
	free(argv);
}

/* Writes this instance's entry of the connection registry when it is due:
 * every STREAM_REGISTRY_MS, or soon after the service thread handed over a
 * new snapshot. */
static void
stream_registry_tick(wsd_stream *s)
{
	wsd_registry *fresh;
	char val[24];
	int64_t now = cg_monotonic_ms();
	int n, rc;

	pthread_mutex_lock(&s->lock);
	fresh = s->pending;
	if (fresh != NULL && now >= s->last_registry_ms + STREAM_REGISTRY_MIN_MS)
		s->pending = NULL;
	else
		fresh = NULL;
	pthread_mutex_unlock(&s->lock);
	if (fresh == NULL && now < s->next_registry_ms)
		return;
	if (fresh != NULL) {
		wsd_registry_free(s->current);
		s->current = fresh;
	}
	s->next_registry_ms = now + STREAM_REGISTRY_MS;
	s->last_registry_ms = now;
	n = snprintf(val, sizeof val, "%d", atomic_load(s->nconns));
	rc = cg_redis_setex(s->redis, s->registry_key, val, (size_t)n, STREAM_REGISTRY_TTL);
	if (rc == CG_REDIS_EREPLY)
		cg_log_warn("redis: SET %s failed: %s", s->registry_key, cg_redis_errmsg(s->redis));
	else
		stream_redis_result(s, rc);
	if (rc == CG_REDIS_ECONN)
		return;
	stream_registry_write(s);
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

/* Turns the "$" the reader starts from into the id of the newest entry
 * ("0-0" for an empty or absent stream), so that the position up to which
 * events were handed over is known from the start (wsd_stream_position).
 * Returns 0, or -1 after a failure (Redis down: retried by the caller). */
static int
stream_resolve_start(wsd_stream *s)
{
	redisReply *rep = NULL;
	const redisReply *id;
	int rc;

	rc = cg_redis_cmdf(s->redis, &rep, "XREVRANGE %s + - COUNT 1", s->cfg->event_stream);
	stream_redis_result(s, rc);
	if (rc != CG_REDIS_OK) {
		if (rc == CG_REDIS_EREPLY)
			cg_log_warn("redis: XREVRANGE %s failed: %s", s->cfg->event_stream,
				    cg_redis_errmsg(s->redis));
		stream_wait(s, STREAM_RETRY_MS);
		return -1;
	}
	snprintf(s->last_id, sizeof s->last_id, "0-0");
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
	    rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements >= 1) {
		id = rep->element[0]->element[0];
		if (id->type == REDIS_REPLY_STRING && id->len < STREAM_ID_MAX) {
			memcpy(s->last_id, id->str, id->len);
			s->last_id[id->len] = '\0';
		}
	}
	freeReplyObject(rep);
	pthread_mutex_lock(&s->lock);
	snprintf(s->popped_id, sizeof s->popped_id, "%s", s->last_id);
	pthread_mutex_unlock(&s->lock);
	cg_log_debug("event stream %s: live from %s", s->cfg->event_stream, s->last_id);
	/* Sessions waiting for a position to resume to can go on. */
	lws_cancel_service(s->ctx);
	return 0;
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

	if (strcmp(s->last_id, "$") == 0 && stream_resolve_start(s) < 0)
		return;
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
	if (!s->redis_down) {
		(void)cg_redis_del(s->redis, s->registry_key);
		(void)cg_redis_del(s->redis, s->list_key);
	}
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
	snprintf(s->list_key, sizeof s->list_key, "cg:ws:registry:%s", cfg->instance_id);
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
		snprintf(s->popped_id, sizeof s->popped_id, "%s", cg_event_str(ev, "stream_id"));
		s->head = (s->head + 1) % WSD_STREAM_QUEUE_MAX;
		s->count--;
		wake = s->count == WSD_STREAM_QUEUE_MAX - 1;
	}
	if (wake)
		pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return ev;
}

int
wsd_stream_position(wsd_stream *s, cg_stream_pos *pos)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = cg_stream_pos_parse(s->popped_id, pos);
	pthread_mutex_unlock(&s->lock);
	return rc;
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
	wsd_registry_free(s->pending);
	wsd_registry_free(s->current);
	cg_redis_close(s->redis);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

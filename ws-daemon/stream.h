/* stream: the reader thread that follows the Redis event stream for capsule-wsd.
 *
 * One thread per daemon with its own cg_redis connection. It runs
 * XREAD BLOCK 2000 STREAMS <event_stream> <last id> (starting at "$": live
 * events only), turns each entry into an event object with
 * cg_event_from_stream_entry(), appends it to a mutex-protected queue and wakes
 * the lws service thread with lws_cancel_service(). It never reads more than
 * the queue has room for, so a slow service thread leaves events in Redis
 * instead of growing memory. Every ~5 s it also writes this instance's entry
 * of the connection registry: the count (SET cg:ws:conns:<instance_id> <n>
 * EX 15) and the list (hash cg:ws:registry:<instance_id>, one field per
 * authenticated connection, value compact JSON, EXPIRE 15, rewritten as a
 * whole from the last snapshot the service thread handed over with
 * wsd_stream_set_registry; a new snapshot is written within ~1-2 s). It
 * deletes both keys when it stops. When Redis is down it retries every
 * second and logs once per outage.
 *
 * The service thread is the only consumer (wsd_stream_pop); the reader thread
 * is the only producer. */
#ifndef WSD_STREAM_H
#define WSD_STREAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <json-c/json.h>

#include "cg_config.h"
#include "cg_history.h"

struct lws_context;

/* Events the queue holds at most. */
#define WSD_STREAM_QUEUE_MAX 4096

typedef struct wsd_stream wsd_stream;

/* A snapshot of this instance's authenticated connections for the registry
 * hash: `n` pairs of connection id and compact JSON value, at most `cap`
 * (the service thread caps it at ws_max_connections). Built by the service
 * thread, then owned by the stream. */
typedef struct wsd_registry {
	size_t n, cap;
	char **field;
	char **value;
} wsd_registry;

/* An empty snapshot with room for `cap` entries, or NULL (out of memory). */
wsd_registry *wsd_registry_new(size_t cap);

/* Copies one entry in. Returns 0, or -1 when full or out of memory. */
int wsd_registry_add(wsd_registry *r, const char *field, const char *value);

/* NULL is ignored. */
void wsd_registry_free(wsd_registry *r);

/* Hands the reader thread a new snapshot (ownership moves; a snapshot not
 * yet written is replaced and freed). Any thread; thread-safe. */
void wsd_stream_set_registry(wsd_stream *s, wsd_registry *r);

/* Starts the reader thread. `cfg`, `ctx` and `nconns` are borrowed and must
 * outlive the stream (until wsd_stream_free returns); `nconns` is the number
 * of authenticated connections, maintained by the service thread. Returns
 * NULL with a reason in `err` when the Redis URL is unusable or the thread
 * cannot start; Redis being down is not an error. */
wsd_stream *wsd_stream_start(const cg_config *cfg, struct lws_context *ctx,
			     const atomic_int *nconns, char *err, size_t errlen);

/* Takes the oldest queued event, or NULL when the queue is empty. The caller
 * owns the returned object (json_object_put). Service thread only. */
json_object *wsd_stream_pop(wsd_stream *s);

/* The position up to which the stream has been handed over: every entry
 * at or before *pos was popped (or skipped as malformed), every later one
 * will be. Returns 0, or -1 while it is not known yet (Redis not reached
 * since the start). Any thread. */
int wsd_stream_position(wsd_stream *s, cg_stream_pos *pos);

/* Asks the thread to stop; returns at once. It finishes within its current
 * XREAD block (at most ~2 s). Safe to call more than once. */
void wsd_stream_stop(wsd_stream *s);

/* Stops the thread if needed, waits for it, frees the queued events and the
 * stream. NULL is ignored. */
void wsd_stream_free(wsd_stream *s);

#endif

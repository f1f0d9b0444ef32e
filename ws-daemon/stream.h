/* stream: the reader thread that follows the Redis event stream for capsule-wsd.
 *
 * One thread per daemon with its own cg_redis connection. It runs
 * XREAD BLOCK 2000 STREAMS <event_stream> <last id> (starting at "$": live
 * events only), turns each entry into an event object with
 * cg_event_from_stream_entry(), appends it to a mutex-protected queue and wakes
 * the lws service thread with lws_cancel_service(). It never reads more than
 * the queue has room for, so a slow service thread leaves events in Redis
 * instead of growing memory. Every ~5 s it also writes this instance's entry
 * of the connection registry (SET cg:ws:conns:<instance_id> <n> EX 15) and
 * deletes it when it stops. When Redis is down it retries every second and
 * logs once per outage.
 *
 * The service thread is the only consumer (wsd_stream_pop); the reader thread
 * is the only producer. */
#ifndef WSD_STREAM_H
#define WSD_STREAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <json-c/json.h>

#include "cg_config.h"

struct lws_context;

/* Events the queue holds at most. */
#define WSD_STREAM_QUEUE_MAX 4096

typedef struct wsd_stream wsd_stream;

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

/* Asks the thread to stop; returns at once. It finishes within its current
 * XREAD block (at most ~2 s). Safe to call more than once. */
void wsd_stream_stop(wsd_stream *s);

/* Stops the thread if needed, waits for it, frees the queued events and the
 * stream. NULL is ignored. */
void wsd_stream_free(wsd_stream *s);

#endif

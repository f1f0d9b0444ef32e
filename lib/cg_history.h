/* cg_history: event history for resuming WebSocket clients (issue 5 item 3).
 *
 * Positions are Redis stream ids "<ms>-<seq>" (cg_stream_pos): the total
 * order of publication. An event gets its position when it is published
 * (cg_event_publish) and PostgreSQL records it (cg_event_mark_published,
 * events.stream_id; 005_ws_resume adds the numeric stream_ms/stream_seq
 * columns and an index (tenant_id, stream_ms, stream_seq) for ordered
 * reads).
 *
 * Hot history is the Redis stream itself (trimmed to event_stream_maxlen);
 * everything older, or everything after a Redis restart lost the stream, is
 * read from PostgreSQL's event log. Events never published (no stream_id)
 * are not history yet: the relay publishes them with a newer position.
 *
 * The per-device cursor (ws_cursors: tenant, subject, device -> position)
 * is the newest position a device acknowledged; it only moves forward.
 *
 * Events returned here are the cg_event.h objects, with "stream_id" set,
 * exactly as cg_event_from_stream_entry() builds them from the stream. */
#ifndef CG_HISTORY_H
#define CG_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <json-c/json.h>

#include "cg_config.h"
#include "cg_db.h"
#include "cg_redis.h"

typedef struct cg_stream_pos {
	uint64_t ms;
	uint64_t seq;
} cg_stream_pos;

#define CG_STREAM_POS_MAX 48 /* bytes of "<ms>-<seq>" with the NUL */

/* Parses "<ms>-<seq>" (both decimal, no sign, no spaces, each fitting in
 * uint64). Returns 0, or -1 (then *p is zeroed). */
int cg_stream_pos_parse(const char *text, cg_stream_pos *p);

/* Writes "<ms>-<seq>" into out (>= CG_STREAM_POS_MAX bytes); returns out. */
char *cg_stream_pos_format(const cg_stream_pos *p, char *out, size_t outlen);

/* <0, 0, >0 as a is before, equal to, after b. */
int cg_stream_pos_cmp(const cg_stream_pos *a, const cg_stream_pos *b);

/* The position right after p ("ms-(seq+1)", carrying into ms). */
cg_stream_pos cg_stream_pos_next(const cg_stream_pos *p);

/* The position right before p (borrowing from ms); 0-0 stays 0-0. */
cg_stream_pos cg_stream_pos_prev(const cg_stream_pos *p);

/* Where an event sits: *pos and *created_at of event `event_id` (a uuid
 * string) of `tenant`, read in its own tenant transaction. Returns CG_DB_OK
 * with *found = 1, or CG_DB_OK with *found = 0 when there is no such event
 * in that tenant, the text is not a uuid (checked before any query), or the
 * event has no position yet; else a CG_DB_* error. */
int cg_history_event_position(cg_db *db, const char *tenant, const char *event_id,
			      int *found, cg_stream_pos *pos, time_t *created_at);

/* Up to `limit` events of `tenant` with after < position <= upto (upto
 * NULL: no upper bound) and position < before (before NULL: no bound),
 * ordered by position, read from PostgreSQL in a tenant transaction.
 * *events is a new json array (caller puts it), possibly empty. Returns
 * CG_DB_OK or a CG_DB_* error (then *events is NULL). */
int cg_history_pg(cg_db *db, const char *tenant, const cg_stream_pos *after,
		  const cg_stream_pos *upto, const cg_stream_pos *before, int limit,
		  json_object **events);

/* The oldest entry still in the Redis event stream. Returns CG_REDIS_OK
 * with *have = 1 and *first set, CG_REDIS_OK with *have = 0 when the stream
 * is empty or absent, or a CG_REDIS_* error. */
int cg_history_redis_first(cg_redis *r, const cg_config *cfg, int *have, cg_stream_pos *first);

/* Reads at most `scan` stream entries with after < position <= upto (XRANGE
 * with an exclusive start made by cg_stream_pos_next, so any Redis >= 5
 * works), keeps those of `tenant` (others are skipped; malformed entries
 * are logged and skipped) and returns them as a new json array in *events.
 * *last is the position of the last entry scanned (after, when none) and
 * *end is 1 when fewer than `scan` entries were there (the range is done).
 * Returns CG_REDIS_OK or a CG_REDIS_* error (then *events is NULL). */
int cg_history_redis(cg_redis *r, const cg_config *cfg, const char *tenant,
		     const cg_stream_pos *after, const cg_stream_pos *upto, int scan,
		     json_object **events, cg_stream_pos *last, int *end);

/* The cursor of (tenant, subject, device). Returns CG_DB_OK with *found
 * (1: *pos and *updated_at set; 0: there is none); else a CG_DB_* error. `subject` is a
 * user id or "agent:<agent_id>"; `device` a device token, or "" for agents. */
int cg_history_cursor_get(cg_db *db, const char *tenant, const char *subject,
			  const char *device, int *found, cg_stream_pos *pos, time_t *updated_at);

/* Moves the cursor forward to `pos` (creating it; never backwards: an older
 * pos leaves it as it is). Returns CG_DB_OK or a CG_DB_* error. */
int cg_history_cursor_advance(cg_db *db, const char *tenant, const char *subject,
			      const char *device, const cg_stream_pos *pos);

#endif

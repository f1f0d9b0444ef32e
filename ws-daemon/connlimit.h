/* connlimit: capsule-wsd's connection limits: per-user connection counts and per-address attempts.
 *
 * Owned by the vhost (server.c) and used on the lws service thread only.
 * Both tables map a string key to small counters in an open-addressing hash
 * table with owned key copies:
 *   users     "<tenant>\x1f<sub>" -> authenticated connections now; an entry
 *             whose count falls to 0 is dropped at the next rebuild; at most
 *             one entry per authenticated connection, so it is bounded by
 *             ws_max_connections;
 *   addrs     client address -> connection attempts in a sliding minute
 *             (this minute's count plus the previous minute's, weighted by
 *             how much of it still lies inside the last 60 s); at most
 *             WSD_LIMITS_ADDRS_MAX addresses; entries idle for two minutes
 *             are dropped when room is needed. When the table is full of
 *             live addresses a new address is let through untracked (and
 *             logged once per minute by the caller's choice of message).
 * Allocation failures never refuse a client: the limit is then not applied. */
#ifndef WSD_CONNLIMIT_H
#define WSD_CONNLIMIT_H

#include <stddef.h>
#include <stdint.h>

/* Client addresses remembered at most. */
#define WSD_LIMITS_ADDRS_MAX 65536

struct wsd_ctab_ent;

/* One table (opaque members; see limits.c). */
typedef struct wsd_ctab {
	struct wsd_ctab_ent *ents;
	size_t nslots;   /* power of two, 0 until used */
	size_t used;     /* occupied slots (live or not) */
	size_t cap;      /* entries at most */
	int64_t full_win; /* a rebuild at `cap` found no room in this window (+1) */
} wsd_ctab;

typedef struct wsd_limits {
	wsd_ctab users;
	wsd_ctab addrs;
} wsd_limits;

void wsd_limits_init(wsd_limits *l);
void wsd_limits_free(wsd_limits *l);

/* Counts one connection attempt from `addr` at monotonic time `now_ms` and
 * returns the attempts in the sliding minute including this one, or 0 when
 * the address could not be tracked (table full or out of memory). */
long wsd_limits_attempt(wsd_limits *l, const char *addr, int64_t now_ms);

/* Connections of tenant+sub now (0 when unknown). */
long wsd_limits_user_count(const wsd_limits *l, const char *tenant, const char *sub);

/* Adds `delta` (+1 on authentication, -1 on close) to tenant+sub's count.
 * Returns 0, or -1 when the count could not be recorded (+1 only). */
int wsd_limits_user_add(wsd_limits *l, const char *tenant, const char *sub, int delta);

/* Addresses tracked (tests and logs). */
size_t wsd_limits_addrs(const wsd_limits *l);

#endif

/* order: per-session record of the highest activity version sent, so a client never goes back.
 *
 * Owned by one session (server.c) and used on the lws service thread only.
 * Concurrent REST writers may publish version N+1 of an activity before
 * version N; a session that already sent N+1 must drop N (and a second copy
 * of N). The record maps a 64-bit hash of the capsule id to the highest
 * version sent, for at most `max` capsules; beyond that the least recently
 * used capsule is forgotten (a very late, stale version of a forgotten
 * capsule then goes through). Memory grows with use: nothing is allocated
 * until the first activity, at most about 48 bytes per remembered capsule.
 * Two capsule ids with the same 64-bit hash would share an entry (a newer
 * version of one could hide an older-numbered one of the other); with a
 * 64-bit hash this is negligible. */
#ifndef WSD_ORDER_H
#define WSD_ORDER_H

#include <stddef.h>
#include <stdint.h>

/* Capsules remembered per session by default. */
#define WSD_ORDER_MAX 1024

struct wsd_order_slot;

typedef struct wsd_order {
	struct wsd_order_slot *slots; /* open addressing, power of two, NULL until used */
	size_t nslots;
	size_t count;
	size_t max;                   /* capsules remembered at most (>= 1) */
	uint64_t tick;                /* use counter for the LRU choice */
} wsd_order;

/* Results of wsd_order_admit. */
enum {
	WSD_ORDER_SEND = 1,  /* newer than anything sent: send it (recorded) */
	WSD_ORDER_DROP = 0,  /* not newer than what was sent: drop it */
};

/* Prepares an empty record remembering at most `max` capsules (0: the
 * default WSD_ORDER_MAX). Allocates nothing. */
void wsd_order_init(wsd_order *o, size_t max);

/* Frees what the record holds; it may be initialised again. */
void wsd_order_free(wsd_order *o);

/* Decides about version `version` of capsule `capsule_id` (NUL-terminated,
 * non-empty). Returns WSD_ORDER_SEND and records the version when it is
 * higher than the one sent before (or the capsule is not remembered), else
 * WSD_ORDER_DROP. When memory runs out it returns WSD_ORDER_SEND without
 * recording (ordering is then best effort, delivery is kept). */
int wsd_order_admit(wsd_order *o, const char *capsule_id, long long version);

/* Number of capsules remembered (tests). */
size_t wsd_order_count(const wsd_order *o);

#endif

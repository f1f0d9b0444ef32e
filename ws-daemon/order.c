/* order: per-session capsule -> highest version sent, a small LRU hash table. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cg_util.h"
#include "order.h"

#define ORDER_MIN_SLOTS 16

struct wsd_order_slot {
	uint64_t key;        /* 0: empty */
	long long version;   /* highest version sent */
	uint64_t used;       /* tick of the last admit that touched it */
};

/* cg_hash64, never 0 (0 marks an empty slot). */
static uint64_t
order_hash(const char *s)
{
	uint64_t h = cg_hash64(s);

	return h != 0 ? h : 1;
}

/* Slots needed to hold `max` capsules at a load of at most one half. */
static size_t
order_slots_for(size_t max)
{
	size_t n = ORDER_MIN_SLOTS;

	while (n < 2 * max)
		n *= 2;
	return n;
}

/* Index of `key`, or of the empty slot where it would go. */
static size_t
order_find(const wsd_order *o, uint64_t key)
{
	size_t mask = o->nslots - 1;
	size_t i = (size_t)key & mask;

	while (o->slots[i].key != 0 && o->slots[i].key != key)
		i = (i + 1) & mask;
	return i;
}

/* Rehashes into `nslots` slots. Returns 0 or -1 (out of memory, unchanged). */
static int
order_resize(wsd_order *o, size_t nslots)
{
	struct wsd_order_slot *old = o->slots;
	size_t oldn = o->nslots, i;

	o->slots = calloc(nslots, sizeof *o->slots);
	if (o->slots == NULL) {
		o->slots = old;
		return -1;
	}
	o->nslots = nslots;
	for (i = 0; i < oldn; i++) {
		if (old[i].key != 0)
			o->slots[order_find(o, old[i].key)] = old[i];
	}
	free(old);
	return 0;
}

/* Removes the slot at `i`, shifting later members of its probe run back so
 * every key stays reachable from its home slot. */
static void
order_remove_at(wsd_order *o, size_t i)
{
	size_t mask = o->nslots - 1;
	size_t j = i, home;

	for (;;) {
		j = (j + 1) & mask;
		if (o->slots[j].key == 0)
			break;
		home = (size_t)o->slots[j].key & mask;
		/* Move j into the hole at i when its home is not in (i, j]. */
		if ((i <= j) ? (home <= i || home > j) : (home <= i && home > j)) {
			o->slots[i] = o->slots[j];
			i = j;
		}
	}
	o->slots[i].key = 0;
	o->count--;
}

/* Forgets the least recently used capsule. */
static void
order_evict(wsd_order *o)
{
	size_t i, lru = o->nslots;

	for (i = 0; i < o->nslots; i++) {
		if (o->slots[i].key != 0 && (lru == o->nslots || o->slots[i].used < o->slots[lru].used))
			lru = i;
	}
	if (lru < o->nslots)
		order_remove_at(o, lru);
}

void
wsd_order_init(wsd_order *o, size_t max)
{
	memset(o, 0, sizeof *o);
	o->max = max > 0 ? max : WSD_ORDER_MAX;
}

void
wsd_order_free(wsd_order *o)
{
	free(o->slots);
	o->slots = NULL;
	o->nslots = 0;
	o->count = 0;
}

int
wsd_order_admit(wsd_order *o, const char *capsule_id, long long version)
{
	uint64_t key = order_hash(capsule_id);
	size_t i, want;

	o->tick++;
	if (o->slots == NULL && order_resize(o, ORDER_MIN_SLOTS) < 0)
		return WSD_ORDER_SEND;
	i = order_find(o, key);
	if (o->slots[i].key == key) {
		o->slots[i].used = o->tick;
		if (version <= o->slots[i].version)
			return WSD_ORDER_DROP;
		o->slots[i].version = version;
		return WSD_ORDER_SEND;
	}
	if (o->count >= o->max)
		order_evict(o);
	want = o->nslots;
	while ((o->count + 1) * 2 > want)
		want *= 2;
	if (want > order_slots_for(o->max))
		want = order_slots_for(o->max);
	if (want != o->nslots && order_resize(o, want) < 0)
		return WSD_ORDER_SEND;
	i = order_find(o, key);
	o->slots[i].key = key;
	o->slots[i].version = version;
	o->slots[i].used = o->tick;
	o->count++;
	return WSD_ORDER_SEND;
}

size_t
wsd_order_count(const wsd_order *o)
{
	return o->count;
}

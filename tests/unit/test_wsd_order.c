/* test_wsd_order: capsule-wsd's per-session version order record and its connection limit tables. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "connlimit.h"
#include "order.h"

static void
test_order_basic(void)
{
	wsd_order o;

	wsd_order_init(&o, 0);
	is_int((long long)o.max, WSD_ORDER_MAX, "max 0 means the default");
	is_int(wsd_order_count(&o), 0, "empty at first");
	ok(o.slots == NULL, "nothing allocated before the first activity");
	is_int(wsd_order_admit(&o, "c1", 3), WSD_ORDER_SEND, "first version of a capsule is sent");
	is_int(wsd_order_admit(&o, "c1", 2), WSD_ORDER_DROP, "an older version after a newer one is dropped");
	is_int(wsd_order_admit(&o, "c1", 3), WSD_ORDER_DROP, "the same version twice is dropped");
	is_int(wsd_order_admit(&o, "c1", 4), WSD_ORDER_SEND, "a newer version is sent");
	is_int(wsd_order_admit(&o, "c1", 3), WSD_ORDER_DROP, "v3 after v4 is dropped");
	is_int(wsd_order_admit(&o, "c2", 1), WSD_ORDER_SEND, "another capsule has its own versions");
	is_int(wsd_order_admit(&o, "c2", 1), WSD_ORDER_DROP, "and drops its own duplicates");
	is_int(wsd_order_count(&o), 2, "two capsules remembered");
	wsd_order_free(&o);
	is_int(wsd_order_count(&o), 0, "free empties the record");
	is_int(wsd_order_admit(&o, "c1", 1), WSD_ORDER_SEND, "usable again after free");
	wsd_order_free(&o);
}

/* Many capsules: growth, LRU eviction and the cap. */
static void
test_order_lru(void)
{
	wsd_order o;
	char id[32];
	int i, bad = 0;

	wsd_order_init(&o, 100);
	for (i = 0; i < 100; i++) {
		snprintf(id, sizeof id, "cap_%d", i);
		if (wsd_order_admit(&o, id, 5) != WSD_ORDER_SEND)
			bad++;
	}
	is_int(bad, 0, "100 new capsules are sent");
	is_int(wsd_order_count(&o), 100, "100 capsules remembered");
	ok(o.nslots <= 256, "slots stay within twice the cap, rounded up (%zu)", o.nslots);
	for (i = 0; i < 100; i++) {
		snprintf(id, sizeof id, "cap_%d", i);
		if (wsd_order_admit(&o, id, 5) != WSD_ORDER_DROP)
			bad++;
	}
	is_int(bad, 0, "each of them drops a repeat after growth");
	/* Touch cap_0 so that cap_1 is the least recently used, then add one. */
	is_int(wsd_order_admit(&o, "cap_0", 6), WSD_ORDER_SEND, "cap_0 moves to v6");
	is_int(wsd_order_admit(&o, "cap_new", 1), WSD_ORDER_SEND, "a new capsule at the cap is sent");
	is_int(wsd_order_count(&o), 100, "the count stays at the cap");
	is_int(wsd_order_admit(&o, "cap_0", 6), WSD_ORDER_DROP, "recently used cap_0 is still remembered");
	is_int(wsd_order_admit(&o, "cap_1", 5), WSD_ORDER_SEND, "least recently used cap_1 was forgotten");
	/* cap_1 coming back evicted the then least recently used, cap_2. */
	is_int(wsd_order_admit(&o, "cap_99", 4), WSD_ORDER_DROP, "a stale version of a remembered capsule is dropped");
	is_int(wsd_order_admit(&o, "cap_2", 4), WSD_ORDER_SEND, "cap_2 was evicted in turn");
	is_int(wsd_order_count(&o), 100, "still at the cap after churn");

	/* Heavy churn keeps every key reachable (backward-shift deletion). */
	bad = 0;
	for (i = 0; i < 5000; i++) {
		snprintf(id, sizeof id, "churn_%d", i);
		if (wsd_order_admit(&o, id, 1) != WSD_ORDER_SEND)
			bad++;
		if (wsd_order_admit(&o, id, 1) != WSD_ORDER_DROP)
			bad++;
	}
	is_int(bad, 0, "5000 capsules through a 100-entry record: each new, each repeat dropped");
	for (i = 4900; i < 5000; i++) {
		snprintf(id, sizeof id, "churn_%d", i);
		if (wsd_order_admit(&o, id, 1) != WSD_ORDER_DROP)
			bad++;
	}
	is_int(bad, 0, "the last 100 are all remembered");
	is_int(wsd_order_count(&o), 100, "count at the cap");
	wsd_order_free(&o);
}

static void
test_limits_users(void)
{
	wsd_limits l;
	char sub[32];
	int i, bad = 0;

	wsd_limits_init(&l);
	is_int(wsd_limits_user_count(&l, "default", "u1"), 0, "unknown user has 0 connections");
	is_int(wsd_limits_user_add(&l, "default", "u1", 1), 0, "add one");
	is_int(wsd_limits_user_add(&l, "default", "u1", 1), 0, "add another");
	is_int(wsd_limits_user_count(&l, "default", "u1"), 2, "u1 has 2");
	is_int(wsd_limits_user_count(&l, "other", "u1"), 0, "u1 of another tenant is counted apart");
	(void)wsd_limits_user_add(&l, "default", "u1", -1);
	is_int(wsd_limits_user_count(&l, "default", "u1"), 1, "down to 1 after a close");
	(void)wsd_limits_user_add(&l, "default", "u1", -1);
	(void)wsd_limits_user_add(&l, "default", "u1", -1);
	is_int(wsd_limits_user_count(&l, "default", "u1"), 0, "never below 0");
	/* Many users coming and going: the table does not keep the gone ones. */
	for (i = 0; i < 10000; i++) {
		snprintf(sub, sizeof sub, "user_%d", i);
		if (wsd_limits_user_add(&l, "default", sub, 1) < 0)
			bad++;
		(void)wsd_limits_user_add(&l, "default", sub, -1);
	}
	is_int(bad, 0, "10000 users connect and leave");
	ok(l.users.nslots <= 64, "users who left are dropped at rebuilds (%zu slots)", l.users.nslots);
	wsd_limits_free(&l);
}

static void
test_limits_addrs(void)
{
	wsd_limits l;
	char addr[32];
	int64_t t0 = 10 * 60000; /* the start of a minute */
	long n = 0;
	int i;

	wsd_limits_init(&l);
	for (i = 0; i < 5; i++)
		n = wsd_limits_attempt(&l, "127.0.0.1", t0 + i);
	is_int(n, 5, "5 attempts counted");
	is_int(wsd_limits_attempt(&l, "::1", t0 + 10), 1, "another address counts apart");
	/* Half-way into the next minute half of the previous one still counts. */
	is_int(wsd_limits_attempt(&l, "127.0.0.1", t0 + 60000 + 30000), 1 + 2, "sliding: 1 + 5/2");
	/* Two minutes later nothing of the old minutes counts. */
	is_int(wsd_limits_attempt(&l, "127.0.0.1", t0 + 3 * 60000), 1, "old attempts expire");
	/* The table is capped: idle addresses go, live ones stay. */
	for (i = 0; i < WSD_LIMITS_ADDRS_MAX + 10; i++) {
		snprintf(addr, sizeof addr, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		n = wsd_limits_attempt(&l, addr, t0 + 5 * 60000);
	}
	is_int(n, 0, "past the cap a new address is let through untracked");
	ok(wsd_limits_addrs(&l) <= WSD_LIMITS_ADDRS_MAX, "at most %d addresses (%zu)",
	   WSD_LIMITS_ADDRS_MAX, wsd_limits_addrs(&l));
	is_int(wsd_limits_attempt(&l, "192.0.2.1", t0 + 8 * 60000), 1,
	       "minutes later the idle addresses made room");
	ok(wsd_limits_addrs(&l) < 100, "and were dropped (%zu left)", wsd_limits_addrs(&l));
	wsd_limits_free(&l);
}

int
main(void)
{
	test_order_basic();
	test_order_lru();
	test_limits_users();
	test_limits_addrs();
	return done_testing();
}

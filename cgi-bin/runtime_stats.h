/* runtime_stats: the numbers that live in Redis rather than PostgreSQL and
 * that GET /health and GET /statistics report: the ws-daemon connection
 * registry and the activity cache's hit/miss counters.
 *
 * Runtime contracts: every ws-daemon instance does SET
 * cg:ws:conns:<instance_id> <n> EX 15 every 5 s; GET /activity/{id} does
 * INCR cg:stats:cache_hits or cg:stats:cache_misses.
 *
 * Both functions only read, never fail: what they cannot read (Redis down,
 * a key that is not a non-negative integer) counts as 0. They borrow the
 * connection for the call. */
#ifndef CG_RUNTIME_STATS_H
#define CG_RUNTIME_STATS_H

#include "cg_redis.h"

#define CG_WS_CONNS_MATCH "cg:ws:conns:*"
#define CG_STAT_CACHE_HITS "cg:stats:cache_hits"
#define CG_STAT_CACHE_MISSES "cg:stats:cache_misses"

/* Sum of cg:ws:conns:* over every live ws-daemon instance (a bounded SCAN
 * walk plus one MGET per batch). */
long long cg_ws_connection_count(cg_redis *r);

/* hits / (hits + misses); 0 when both are 0. */
double cg_cache_hit_rate(cg_redis *r);

#endif

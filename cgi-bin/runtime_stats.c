/* runtime_stats: ws-daemon connection registry sum and cache hit rate from Redis. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cg_log.h"
#include "runtime_stats.h"

#define SCAN_COUNT "100"
/* Bounds the SCAN walk (and so the time /health may take). */
#define SCAN_ROUNDS_MAX 100
#define SCAN_KEYS_MAX 10000

/* A Redis string holding a non-negative integer, else 0. */
static long long count_value(const redisReply *v)
{
	char *end;
	long long n;

	if (v == NULL || v->type != REDIS_REPLY_STRING || v->len == 0)
		return 0;
	errno = 0;
	n = strtoll(v->str, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0)
		return 0;
	return n;
}

/* Sum of the values of `keys` (an array reply of SCAN) via one MGET. */
static long long sum_keys(cg_redis *r, const redisReply *keys)
{
	const char **argv = NULL;
	size_t *lens = NULL;
	redisReply *rep = NULL;
	long long total = 0;
	size_t i;
	int argc = 1;

	if (keys->elements == 0)
		return 0;
	argv = calloc(keys->elements + 1, sizeof *argv);
	lens = calloc(keys->elements + 1, sizeof *lens);
	if (argv == NULL || lens == NULL)
		goto out;
	argv[0] = "MGET";
	lens[0] = 4;
	for (i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];
		if (k->type != REDIS_REPLY_STRING)
			continue;
		argv[argc] = k->str;
		lens[argc] = k->len;
		argc++;
	}
	if (argc == 1 || cg_redis_cmd(r, &rep, argc, argv, lens) != CG_REDIS_OK)
		goto out;
	if (rep->type == REDIS_REPLY_ARRAY) {
		for (i = 0; i < rep->elements; i++)
			total += count_value(rep->element[i]);
	}
out:
	if (rep != NULL)
		freeReplyObject(rep);
	free(lens);
	free(argv);
	return total;
}

long long cg_ws_connection_count(cg_redis *r)
{
	char cursor[32] = "0";
	long long total = 0;
	size_t seen = 0;
	int round;

	for (round = 0; round < SCAN_ROUNDS_MAX && seen < SCAN_KEYS_MAX; round++) {
		const char *argv[] = { "SCAN", cursor, "MATCH", CG_WS_CONNS_MATCH, "COUNT", SCAN_COUNT };
		redisReply *rep = NULL;
		const redisReply *cur, *keys;
		int done;

		if (cg_redis_cmd(r, &rep, 6, argv, NULL) != CG_REDIS_OK)
			break;
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING ||
		    rep->element[0]->len >= sizeof cursor ||
		    rep->element[1]->type != REDIS_REPLY_ARRAY) {
			cg_log_warn("unexpected SCAN reply");
			freeReplyObject(rep);
			break;
		}
		cur = rep->element[0];
		keys = rep->element[1];
		memcpy(cursor, cur->str, cur->len);
		cursor[cur->len] = '\0';
		total += sum_keys(r, keys);
		seen += keys->elements;
		freeReplyObject(rep);
		done = strcmp(cursor, "0") == 0;
		if (done)
			break;
	}
	return total;
}

double cg_cache_hit_rate(cg_redis *r)
{
	const char *argv[] = { "MGET", CG_STAT_CACHE_HITS, CG_STAT_CACHE_MISSES };
	redisReply *rep = NULL;
	long long hits = 0, misses = 0;
	int rc = cg_redis_cmd(r, &rep, 3, argv, NULL);

	if (rc == CG_REDIS_OK && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
		hits = count_value(rep->element[0]);
		misses = count_value(rep->element[1]);
	} else if (rc != CG_REDIS_ECONN) {
		cg_log_warn("cache counters unreadable (%s)", cg_redis_strerror(rc));
	}
	if (rep != NULL)
		freeReplyObject(rep);
	if (hits == 0 && misses == 0)
		return 0;
	return (double)hits / ((double)hits + (double)misses);
}

/* cg_redis: Redis over hiredis (synchronous). Parses REDIS_URL, connects with
 * timeouts, reconnects on the next command after a lost connection, and wraps
 * the commands our programs use. Not thread-safe: one cg_redis per thread. */
#ifndef CG_REDIS_H
#define CG_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>

typedef struct cg_redis cg_redis;

enum {
	CG_REDIS_OK = 0,
	CG_REDIS_ECONN = -1,   /* unreachable, lost, timed out */
	CG_REDIS_EREPLY = -2,  /* Redis answered with an error */
	CG_REDIS_ENIL = -3,    /* key absent / nil reply */
	CG_REDIS_EURL = -4,    /* REDIS_URL not understood */
};

/* Parses `url` (redis://[[user]:password@]host[:port][/db] or
 * unix:///path/to/sock[?db=N]) and connects. `timeout_ms` bounds connect and
 * each command (0: no bound, for blocking reads). Returns NULL with a reason
 * in `err` only when the URL is bad or memory runs out; when Redis is down an
 * object is returned and commands answer CG_REDIS_ECONN until it is back. */
cg_redis *cg_redis_open(const char *url, int timeout_ms, char *err, size_t errlen);
void cg_redis_close(cg_redis *r);

/* Runs one command given as argv (binary-safe with lens; lens NULL means
 * strlen). On success returns CG_REDIS_OK and hands the reply to the caller
 * (freeReplyObject) when `reply` is not NULL. An error reply gives
 * CG_REDIS_EREPLY (its text in cg_redis_errmsg). Reconnects once on a lost
 * connection, but never retries a command that may have run: only a failure
 * to send is retried. */
int cg_redis_cmd(cg_redis *r, redisReply **reply, int argc, const char **argv, const size_t *lens);

/* printf-style convenience over redisCommand (%s, %b, %d ...). */
int cg_redis_cmdf(cg_redis *r, redisReply **reply, const char *fmt, ...);

/* 0 when PING answers PONG. */
int cg_redis_ping(cg_redis *r);

/* GET: *out is a malloc'ed copy (NUL-terminated, *outlen set) or
 * CG_REDIS_ENIL when absent. */
int cg_redis_get(cg_redis *r, const char *key, char **out, size_t *outlen);
/* SET key value EX ttl (ttl <= 0: no expiry). */
int cg_redis_setex(cg_redis *r, const char *key, const char *val, size_t len, long ttl);
int cg_redis_del(cg_redis *r, const char *key);
/* INCRBY key by; *out (may be NULL) gets the new value. */
int cg_redis_incrby(cg_redis *r, const char *key, long long by, long long *out);

/* XADD stream MAXLEN ~ maxlen * field value ... (nfields pairs).
 * `id_out` (may be NULL, >= 32 bytes) gets the entry id. */
int cg_redis_xadd(cg_redis *r, const char *stream, long maxlen, int nfields,
		  const char *const *fields, const char *const *values, char *id_out, size_t idlen);

/* Last error text for logs. */
const char *cg_redis_errmsg(const cg_redis *r);
const char *cg_redis_strerror(int code);

#endif

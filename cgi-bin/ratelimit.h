/* ratelimit: token buckets in Redis, one atomic Lua script, per credential
 * (`cg:rl:<tenant>:<subject>`) and per client IP (`cg:rl:ip:<REMOTE_ADDR>`).
 *
 * A bucket holds at most `burst` tokens and gains `per_minute` tokens a
 * minute; each request takes one. The script reads Redis TIME itself (so
 * every FastCGI process on every host shares one clock), and each key
 * expires once its bucket would be full again. It runs with EVALSHA and
 * falls back to EVAL when Redis answers NOSCRIPT (restart, SCRIPT FLUSH).
 *
 * When Redis is unreachable (or answers an error) the request is ALLOWED:
 * rate limiting fails open, because Redis only protects capacity while
 * PostgreSQL is the source of truth and an outage of the limiter must not
 * become an outage of the API. A warning is logged at most once a minute per
 * process. See doc/security.md ("Rate limiting").
 *
 * Ownership: cg_ratelimit_new copies what it needs from cfg; the object is
 * per process and not thread-safe. */
#ifndef CG_CGI_RATELIMIT_H
#define CG_CGI_RATELIMIT_H

#include <stddef.h>

#include "cg_config.h"
#include "cg_redis.h"
#include "handlers.h"
#include "request.h"

/* Cap on rate_limit_tenant_overrides entries. */
#define CG_RL_OVERRIDES_MAX 1024

/* What one check found. applied == 0: nothing was checked (disabled, or
 * Redis unreachable: fail open); allowed is then 1. */
typedef struct cg_rl_result {
	int applied;
	int allowed;
	long limit;        /* bucket size (burst) */
	long remaining;    /* whole tokens left after this request */
	long reset_s;      /* seconds until the bucket is full again */
	long retry_after_s;/* when refused: seconds until one token is back (>= 1) */
} cg_rl_result;

/* Parses the limits and rate_limit_tenant_overrides ("tenant=per_minute/burst,
 * ..."). Returns NULL with a message naming the key in err when a value is
 * malformed (the program then exits 1 at start). */
cg_ratelimit *cg_ratelimit_new(const cg_config *cfg, char *err, size_t errlen);
void cg_ratelimit_free(cg_ratelimit *rl);

/* Takes one token from the bucket of client address `ip` / of the
 * credential `subject` of `tenant` (limits overridden per tenant). Always
 * fills *res. */
void cg_ratelimit_ip(cg_ratelimit *rl, cg_redis *r, const char *ip, cg_rl_result *res);
void cg_ratelimit_credential(cg_ratelimit *rl, cg_redis *r, const char *tenant,
			     const char *subject, cg_rl_result *res);

/* Adds RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (and
 * Retry-After when refused) to the answer; nothing when !res->applied. */
void cg_ratelimit_add_headers(cg_req *req, const cg_rl_result *res);

/* Answers 429 rate_limited with those headers. */
void cg_ratelimit_send_refusal(cg_req *req, const cg_rl_result *res);

#endif

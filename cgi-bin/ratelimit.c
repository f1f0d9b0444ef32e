/* ratelimit: token buckets in Redis (one Lua script), fail open. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cg_log.h"
#include "cg_util.h"
#include "ratelimit.h"

#define KEY_MAX 512
#define WARN_INTERVAL_MS 60000
#define OVERRIDE_KEY "rate_limit_tenant_overrides"
#define RATE_MAX 10000000L

/* KEYS[1] the bucket; ARGV[1] tokens per minute, ARGV[2] bucket size.
 * State: hash {tokens (float), ts (microseconds of Redis TIME)}. Returns
 * {allowed 0|1, whole tokens left, seconds until one token, seconds until
 * full}. Numbers are written with string.format so no precision is lost to
 * Lua's default number formatting. Needs Redis >= 5 (effects replication,
 * the default there, allows TIME before a write). */
static const char rl_script[] =
	"local rate = tonumber(ARGV[1]) / 60000000\n"
	"local burst = tonumber(ARGV[2])\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local st = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
	"local tokens = tonumber(st[1])\n"
	"local ts = tonumber(st[2])\n"
	"if tokens == nil or ts == nil then\n"
	"  tokens = burst\n"
	"else\n"
	"  if now < ts then now = ts end\n"
	"  tokens = tokens + (now - ts) * rate\n"
	"end\n"
	"if tokens > burst then tokens = burst end\n"
	"local allowed = 0\n"
	"local retry = 0\n"
	"if tokens >= 1 then\n"
	"  tokens = tokens - 1\n"
	"  allowed = 1\n"
	"else\n"
	"  retry = (1 - tokens) / rate\n"
	"end\n"
	"local full = (burst - tokens) / rate\n"
	"redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),"
	" 'ts', string.format('%.0f', now))\n"
	"redis.call('PEXPIRE', KEYS[1], math.floor(full / 1000) + 1000)\n"
	"return {allowed, math.floor(tokens), math.ceil(retry / 1000000),"
	" math.ceil(full / 1000000)}\n";

typedef struct rl_override {
	char tenant[65];
	long per_minute;
	long burst;
} rl_override;

struct cg_ratelimit {
	int enabled;
	long cred_per_minute, cred_burst;
	long ip_per_minute, ip_burst;
	rl_override *ov;
	size_t nov;
	char sha[41];          /* SHA-1 hex of rl_script, for EVALSHA */
	int64_t last_warn_ms;  /* last "Redis unreachable" warning */
	int warned;
};

static int sha1_hex(const char *s, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;

	if (EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL) != 1 || n != 20)
		return -1;
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* Trims blanks at both ends of s[0..*n). */
static const char *trim(const char *s, size_t *n)
{
	while (*n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		(*n)--;
	}
	while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
		(*n)--;
	return s;
}

/* A decimal 1..RATE_MAX from s[0..n); -1 otherwise. */
static long parse_count(const char *s, size_t n)
{
	long v = 0;
	size_t i;

	s = trim(s, &n);
	if (n == 0 || n > 8)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v >= 1 && v <= RATE_MAX ? v : -1;
}

static int tenant_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == ':' || c == '-';
}

/* One "tenant=per_minute/burst" item. */
static int parse_override(const char *item, size_t n, rl_override *o, char *err, size_t errlen)
{
	const char *eq, *slash, *t;
	size_t tn, i;

	item = trim(item, &n);
	eq = memchr(item, '=', n);
	slash = eq != NULL ? memchr(eq, '/', n - (size_t)(eq - item)) : NULL;
	if (eq == NULL || slash == NULL) {
		cg_set_err(err, errlen, "%s: \"%.*s\" is not tenant=per_minute/burst", OVERRIDE_KEY,
			   (int)(n > 80 ? 80 : n), item);
		return -1;
	}
	tn = (size_t)(eq - item);
	t = trim(item, &tn);
	if (tn == 0 || tn > 64) {
		cg_set_err(err, errlen, "%s: tenant id must be 1..64 characters", OVERRIDE_KEY);
		return -1;
	}
	for (i = 0; i < tn; i++) {
		if (!tenant_char(t[i])) {
			cg_set_err(err, errlen, "%s: bad character in tenant id \"%.*s\"", OVERRIDE_KEY,
				   (int)tn, t);
			return -1;
		}
	}
	memcpy(o->tenant, t, tn);
	o->tenant[tn] = '\0';
	o->per_minute = parse_count(eq + 1, (size_t)(slash - eq - 1));
	o->burst = parse_count(slash + 1, n - (size_t)(slash + 1 - item));
	if (o->per_minute < 0 || o->burst < 0) {
		cg_set_err(err, errlen, "%s: tenant %s: per_minute and burst must be integers 1..%ld",
			   OVERRIDE_KEY, o->tenant, RATE_MAX);
		return -1;
	}
	return 0;
}

static int parse_overrides(cg_ratelimit *rl, const char *s, char *err, size_t errlen)
{
	size_t cap = 1, i, j;
	const char *p;

	if (s == NULL)
		return 0;
	for (p = s; *p != '\0'; p++)
		cap += *p == ',';
	if (s[strspn(s, " \t")] == '\0')
		return 0;
	if (cap > CG_RL_OVERRIDES_MAX) {
		cg_set_err(err, errlen, "%s: more than %d entries", OVERRIDE_KEY, CG_RL_OVERRIDES_MAX);
		return -1;
	}
	rl->ov = calloc(cap, sizeof *rl->ov);
	if (rl->ov == NULL) {
		cg_set_err(err, errlen, "%s: out of memory", OVERRIDE_KEY);
		return -1;
	}
	for (p = s;;) {
		size_t n = strcspn(p, ",");

		if (parse_override(p, n, &rl->ov[rl->nov], err, errlen) < 0)
			return -1;
		for (j = 0; j < rl->nov; j++) {
			if (strcmp(rl->ov[j].tenant, rl->ov[rl->nov].tenant) == 0) {
				cg_set_err(err, errlen, "%s: tenant %s given twice", OVERRIDE_KEY,
					   rl->ov[j].tenant);
				return -1;
			}
		}
		rl->nov++;
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	for (i = 0; i < rl->nov; i++)
		cg_log_debug("rate limit override: tenant %s %ld/min burst %ld", rl->ov[i].tenant,
			     rl->ov[i].per_minute, rl->ov[i].burst);
	return 0;
}

cg_ratelimit *cg_ratelimit_new(const cg_config *cfg, char *err, size_t errlen)
{
	cg_ratelimit *rl = calloc(1, sizeof *rl);

	if (rl == NULL) {
		cg_set_err(err, errlen, "rate limits: out of memory");
		return NULL;
	}
	rl->enabled = cfg->rate_limit_enabled;
	rl->cred_per_minute = cfg->rate_limit_credential_per_minute;
	rl->cred_burst = cfg->rate_limit_credential_burst;
	rl->ip_per_minute = cfg->rate_limit_ip_per_minute;
	rl->ip_burst = cfg->rate_limit_ip_burst;
	if (sha1_hex(rl_script, rl->sha) < 0) {
		cg_set_err(err, errlen, "rate limits: SHA-1 of the script failed");
		goto fail;
	}
	if (parse_overrides(rl, cfg->rate_limit_tenant_overrides, err, errlen) < 0)
		goto fail;
	return rl;
fail:
	cg_ratelimit_free(rl);
	return NULL;
}

void cg_ratelimit_free(cg_ratelimit *rl)
{
	if (rl == NULL)
		return;
	free(rl->ov);
	free(rl);
}

/* Fail open, and say so -- but at most once a minute per process. */
static void fail_open(cg_ratelimit *rl, cg_redis *r, int rc)
{
	int64_t now = cg_monotonic_ms();

	if (rl->warned && now - rl->last_warn_ms < WARN_INTERVAL_MS)
		return;
	rl->warned = 1;
	rl->last_warn_ms = now;
	cg_log_warn("rate limiting skipped, requests are allowed (fail open): redis %s: %s",
		    cg_redis_strerror(rc), cg_redis_errmsg(r));
}

static long reply_int(const redisReply *e)
{
	if (e->type == REDIS_REPLY_INTEGER)
		return (long)e->integer;
	return -1;
}

/* Runs the script on `key`. */
static void take(cg_ratelimit *rl, cg_redis *r, const char *key, long per_minute, long burst,
		 cg_rl_result *res)
{
	char pm[24], b[24];
	const char *argv[6];
	redisReply *rep = NULL;
	int rc;

	memset(res, 0, sizeof *res);
	res->allowed = 1;
	if (!rl->enabled)
		return;
	snprintf(pm, sizeof pm, "%ld", per_minute);
	snprintf(b, sizeof b, "%ld", burst);
	argv[0] = "EVALSHA";
	argv[1] = rl->sha;
	argv[2] = "1";
	argv[3] = key;
	argv[4] = pm;
	argv[5] = b;
	rc = cg_redis_cmd(r, &rep, 6, argv, NULL);
	if (rc == CG_REDIS_EREPLY && strncmp(cg_redis_errmsg(r), "NOSCRIPT", 8) == 0) {
		/* Not cached in this Redis (yet): EVAL loads and runs it. */
		argv[0] = "EVAL";
		argv[1] = rl_script;
		rc = cg_redis_cmd(r, &rep, 6, argv, NULL);
	}
	if (rc != CG_REDIS_OK) {
		fail_open(rl, r, rc);
		goto out;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 || reply_int(rep->element[0]) < 0 ||
	    reply_int(rep->element[1]) < 0 || reply_int(rep->element[2]) < 0 ||
	    reply_int(rep->element[3]) < 0) {
		cg_log_warn("rate limit script: unexpected reply; request allowed");
		goto out;
	}
	res->applied = 1;
	res->allowed = reply_int(rep->element[0]) == 1;
	res->limit = burst;
	res->remaining = reply_int(rep->element[1]);
	res->retry_after_s = reply_int(rep->element[2]);
	res->reset_s = reply_int(rep->element[3]);
	if (!res->allowed && res->retry_after_s < 1)
		res->retry_after_s = 1;
out:
	if (rep != NULL)
		freeReplyObject(rep);
}

void cg_ratelimit_ip(cg_ratelimit *rl, cg_redis *r, const char *ip, cg_rl_result *res)
{
	char key[KEY_MAX];

	snprintf(key, sizeof key, "cg:rl-ip:%s", ip != NULL && ip[0] != '\0' ? ip : "unknown");
	take(rl, r, key, rl->ip_per_minute, rl->ip_burst, res);
}

void cg_ratelimit_credential(cg_ratelimit *rl, cg_redis *r, const char *tenant,
			     const char *subject, cg_rl_result *res)
{
	char key[KEY_MAX];
	long per_minute = rl->cred_per_minute, burst = rl->cred_burst;
	size_t i;

	for (i = 0; i < rl->nov; i++) {
		if (strcmp(rl->ov[i].tenant, tenant) == 0) {
			per_minute = rl->ov[i].per_minute;
			burst = rl->ov[i].burst;
			break;
		}
	}
	/* tenant <= 64 and subject <= 255 bytes: always fits */
	snprintf(key, sizeof key, "cg:{%s}:rl:%s", tenant, subject);
	take(rl, r, key, per_minute, burst, res);
}

void cg_ratelimit_add_headers(cg_req *req, const cg_rl_result *res)
{
	char v[24];
	int bad = 0;

	if (!res->applied)
		return;
	snprintf(v, sizeof v, "%ld", res->limit);
	bad |= cg_req_add_header(req, "RateLimit-Limit", v);
	snprintf(v, sizeof v, "%ld", res->remaining);
	bad |= cg_req_add_header(req, "RateLimit-Remaining", v);
	snprintf(v, sizeof v, "%ld", res->reset_s);
	bad |= cg_req_add_header(req, "RateLimit-Reset", v);
	if (!res->allowed) {
		snprintf(v, sizeof v, "%ld", res->retry_after_s);
		bad |= cg_req_add_header(req, "Retry-After", v);
	}
	if (bad)
		cg_log_warn("could not add the rate limit headers");
}

void cg_ratelimit_send_refusal(cg_req *req, const cg_rl_result *res)
{
	cg_ratelimit_add_headers(req, res);
	cg_req_send_error(req, 429, "rate_limited", "too many requests; retry later", NULL);
}

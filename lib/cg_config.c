/* cg_config: one table of keys; defaults, then the file, then the environment, then checks. */
#include "config.h"

#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cg_config.h"
#include "cg_log.h"
#include "cg_util.h"

#ifndef CG_SYSCONFDIR
#define CG_SYSCONFDIR "/etc"
#endif

/* Longest config file line (including the newline). */
#define CFG_LINE_MAX 8192
/* Longest key name (the environment name is built from it). */
#define CFG_NAME_MAX 64

enum cfg_type { CFG_STR, CFG_LONG, CFG_BOOL };

/* Flags on a key. */
#define CFG_NONEMPTY 0x1 /* a string that may not be set to "" */

#define ALL_PROGS (CG_PROG_CGI | CG_PROG_WSD | CG_PROG_PUSHD | CG_PROG_MIGRATE)

struct cfg_key {
	const char *name;      /* lower case; the environment uses upper case */
	enum cfg_type type;
	const char *def;       /* default as text; NULL: unset */
	long min, max;         /* CFG_LONG bounds */
	unsigned required;     /* cg_prog mask of programs that need it */
	unsigned flags;
	size_t off;            /* target field in struct cg_config */
};

#define S(n, d, req, fl) { #n, CFG_STR, d, 0, 0, req, fl, offsetof(cg_config, n) }
#define L(n, d, lo, hi) { #n, CFG_LONG, #d, lo, hi, 0, 0, offsetof(cg_config, n) }
#define B(n, d) { #n, CFG_BOOL, d, 0, 0, 0, 0, offsetof(cg_config, n) }

static const struct cfg_key cfg_keys[] = {
	S(database_url, NULL, CG_PROG_CGI | CG_PROG_WSD | CG_PROG_PUSHD | CG_PROG_MIGRATE, 0),
	S(redis_url, "redis://127.0.0.1:6379/0", 0, CFG_NONEMPTY),
	S(ws_jwt_secret, NULL, CG_PROG_CGI | CG_PROG_WSD, 0),
	L(ws_token_ttl, 3600, 60, 86400),
	S(ws_jwt_issuer, "capsule-gateway", 0, CFG_NONEMPTY),
	S(host, "127.0.0.1", 0, CFG_NONEMPTY),
	L(port, 8081, 1, 65535),
	L(ws_ping_interval, 30, 1, 3600),
	L(ws_pong_timeout, 60, 1, 3600),
	L(ws_auth_timeout, 10, 1, 600),
	L(ws_max_message, 1048576, 1024, 67108864),
	L(ws_send_queue_max, 1024, 1, 1000000),
	L(ws_max_connections, 10000, 1, 10000000),
	L(ws_max_connections_per_user, 20, 1, 100000),
	L(ws_connect_attempts_per_ip_per_minute, 120, 1, 10000000),
	L(ws_history_retention, 2592000, 60, 315360000),
	B(ws_reuse_port, "false"),
	S(instance_id, "", 0, 0),
	S(apns_team_id, NULL, 0, 0),
	S(apns_key_id, NULL, 0, 0),
	S(apns_key_path, NULL, 0, 0),
	S(apns_bundle_id, NULL, 0, 0),
	B(apns_use_sandbox, "false"),
	S(apns_url, NULL, 0, 0),
	S(apns_ca_file, NULL, 0, 0),
	L(apns_max_connections, 2, 1, 16),
	L(apns_timeout_ms, 10000, 100, 600000),
	L(push_expiration_low, 3600, 0, 2592000),
	L(push_expiration_medium, 86400, 0, 2592000),
	L(push_expiration_high, 86400, 0, 2592000),
	L(push_expiration_critical, 86400, 0, 2592000),
	B(push_to_start_critical, "false"),
	L(live_activity_stale_s, 3600, 60, 86400),
	L(live_activity_dismissal_s, 14400, 0, 86400),
	S(live_activity_attributes_type, "CapsuleActivityAttributes", 0, CFG_NONEMPTY),
	S(vapid_private_key, NULL, 0, 0),
	S(vapid_subject, NULL, 0, 0),
	S(webpush_ca_file, NULL, 0, 0),
	S(push_credentials_dir, NULL, 0, 0),
	L(push_retry_recover_s, 60, 1, 86400),
	L(push_claim_idle_s, 600, 1, 86400),
	L(webpush_timeout_ms, 10000, 100, 600000),
	L(max_body_bytes, 1048576, 1024, 67108864),
	L(cache_ttl, 300, 1, 2592000),
	L(max_title_chars, 500, 1, 100000),
	L(max_message_bytes, 65536, 1, 16777216),
	L(max_metadata_bytes, 65536, 2, 16777216),
	L(max_metadata_depth, 16, 1, 64),
	S(event_stream, "cg:events", 0, CFG_NONEMPTY),
	L(event_stream_maxlen, 1000000, 100, 1000000000),
	S(push_group, "capsule-pushd", 0, CFG_NONEMPTY),
	S(default_tenant, "default", 0, CFG_NONEMPTY),
	S(log_level, "info", 0, CFG_NONEMPTY),
	S(admin_database_url, NULL, 0, 0),
	S(auth_jwt_hs256_secret, NULL, 0, 0),
	S(auth_jwt_public_keys, NULL, 0, 0),
	S(auth_jwt_issuer, NULL, 0, 0),
	S(auth_jwt_audience, NULL, 0, 0),
	L(auth_jwt_leeway, 60, 0, 600),
	S(cors_allowed_origins, NULL, 0, 0),
	B(rate_limit_enabled, "true"),
	L(rate_limit_credential_per_minute, 600, 1, 10000000),
	L(rate_limit_credential_burst, 120, 1, 10000000),
	L(rate_limit_ip_per_minute, 1200, 1, 10000000),
	L(rate_limit_ip_burst, 240, 1, 10000000),
	S(rate_limit_tenant_overrides, NULL, 0, 0),
};

#undef S
#undef L
#undef B

#define NKEYS (sizeof cfg_keys / sizeof cfg_keys[0])

static const struct cfg_key *find_key(const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(cfg_keys[i].name, name) == 0)
			return &cfg_keys[i];
	return NULL;
}

static char **str_field(cg_config *cfg, const struct cfg_key *k)
{
	return (char **)(void *)((char *)cfg + k->off);
}

static long *long_field(cg_config *cfg, const struct cfg_key *k)
{
	return (long *)(void *)((char *)cfg + k->off);
}

static int *int_field(cg_config *cfg, const struct cfg_key *k)
{
	return (int *)(void *)((char *)cfg + k->off);
}

static const char *str_value(const cg_config *cfg, const struct cfg_key *k)
{
	return *(char *const *)(const void *)((const char *)cfg + k->off);
}

/* Strict base-10: optional sign, digits, nothing else. */
static int parse_long(const char *s, long *out)
{
	char *end;
	long v;
	const char *p = s;

	if (*p == '+' || *p == '-')
		p++;
	if (!isdigit((unsigned char)*p))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* Sets key k from text; `where` says where the text came from
 * ("file:line" or "environment variable NAME"). Values of numbers and bools
 * are echoed in errors, strings never (they may be secrets). */
static int set_value(cg_config *cfg, const struct cfg_key *k, const char *val,
		     const char *where, char *err, size_t errlen)
{
	switch (k->type) {
	case CFG_STR: {
		char **f = str_field(cfg, k);
		char *copy = NULL;

		/* Keys without a default stay NULL when set to "": unset. */
		if (val && (*val || k->def)) {
			copy = strdup(val);
			if (!copy) {
				cg_set_err(err, errlen, "%s: %s: out of memory", where, k->name);
				return -1;
			}
		}
		free(*f);
		*f = copy;
		return 0;
	}
	case CFG_LONG: {
		long v;

		if (!val || parse_long(val, &v) < 0) {
			cg_set_err(err, errlen, "%s: %s: \"%.32s\" is not an integer", where, k->name,
				val ? val : "");
			return -1;
		}
		if (v < k->min || v > k->max) {
			cg_set_err(err, errlen, "%s: %s: %ld is out of range %ld..%ld", where, k->name, v,
				k->min, k->max);
			return -1;
		}
		*long_field(cfg, k) = v;
		return 0;
	}
	case CFG_BOOL: {
		int b;

		if (!val || parse_bool(val, &b) < 0) {
			cg_set_err(err, errlen,
				"%s: %s: \"%.32s\" is not a boolean (true/false, yes/no, on/off, 1/0)",
				where, k->name, val ? val : "");
			return -1;
		}
		*int_field(cfg, k) = b;
		return 0;
	}
	}
	return -1;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* Loads `path` into cfg. With `only` (a NULL-terminated list of key names),
 * any other key is refused. */
static int load_file(cg_config *cfg, const char *path, const char *const *only, char *err,
		     size_t errlen)
{
	FILE *f;
	char line[CFG_LINE_MAX];
	char where[512];
	unsigned lineno = 0;
	int rc = -1;

	f = fopen(path, "r");
	if (!f) {
		cg_set_err(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, f)) {
		size_t len = strlen(line);
		char *p, *eq, *key, *val;
		const struct cfg_key *k;

		lineno++;
		snprintf(where, sizeof where, "%s:%u", path, lineno);
		if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
			cg_set_err(err, errlen, "%s: line longer than %d bytes", where, CFG_LINE_MAX - 2);
			goto out;
		}
		p = trim(line);
		if (*p == '\0' || *p == '#')
			continue;
		eq = strchr(p, '=');
		if (!eq) {
			cg_set_err(err, errlen, "%s: \"%.40s\": expected \"key = value\"", where, p);
			goto out;
		}
		*eq = '\0';
		key = trim(p);
		val = trim(eq + 1);
		if (*key == '\0') {
			cg_set_err(err, errlen, "%s: missing key before '='", where);
			goto out;
		}
		k = find_key(key);
		if (!k) {
			cg_set_err(err, errlen, "%s: unknown key \"%.64s\"", where, key);
			goto out;
		}
		if (only != NULL) {
			size_t i;

			for (i = 0; only[i] != NULL && strcmp(only[i], key) != 0; i++)
				;
			if (only[i] == NULL) {
				cg_set_err(err, errlen, "%s: \"%.64s\" cannot be set here", where, key);
				goto out;
			}
		}
		len = strlen(val);
		if (len >= 2 && val[0] == '"' && val[len - 1] == '"') {
			val[len - 1] = '\0';
			val++;
		}
		if (set_value(cfg, k, val, where, err, errlen) < 0)
			goto out;
	}
	if (ferror(f)) {
		cg_set_err(err, errlen, "%s: read error: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	fclose(f);
	return rc;
}

static int load_env(cg_config *cfg, char *err, size_t errlen)
{
	size_t i, j;

	for (i = 0; i < NKEYS; i++) {
		const struct cfg_key *k = &cfg_keys[i];
		char env[CFG_NAME_MAX];
		char where[CFG_NAME_MAX + 32];
		const char *v;

		for (j = 0; k->name[j] && j < sizeof env - 1; j++)
			env[j] = (char)toupper((unsigned char)k->name[j]);
		env[j] = '\0';
		v = getenv(env);
		if (!v)
			continue;
		snprintf(where, sizeof where, "environment variable %s", env);
		if (set_value(cfg, k, v, where, err, errlen) < 0)
			return -1;
	}
	return 0;
}

static int is_set(const char *s)
{
	return s && *s;
}

/* Apple's team and key ids: exactly 10 of [A-Z0-9]. */
static int apple_id_valid(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
			return 0;
	return i == 10;
}

static int fill_instance_id(cg_config *cfg, char *err, size_t errlen)
{
	char host[256];
	char id[320];
	size_t i;

	if (is_set(cfg->instance_id))
		return 0;
	if (gethostname(host, sizeof host) < 0 || host[0] == '\0')
		snprintf(host, sizeof host, "localhost");
	host[sizeof host - 1] = '\0';
	host[200] = '\0'; /* room for "-<pid>" within 255 */
	for (i = 0; host[i]; i++) {
		char c = host[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == ':' || c == '-'))
			host[i] = '-';
	}
	snprintf(id, sizeof id, "%s-%ld", host, (long)getpid());
	free(cfg->instance_id);
	cfg->instance_id = strdup(id);
	if (!cfg->instance_id) {
		cg_set_err(err, errlen, "instance_id: out of memory");
		return -1;
	}
	return 0;
}

static int validate(cg_config *cfg, cg_prog prog, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		size_t off;
	} apns[] = {
		{ "apns_key_path", offsetof(cg_config, apns_key_path) },
		{ "apns_key_id", offsetof(cg_config, apns_key_id) },
		{ "apns_team_id", offsetof(cg_config, apns_team_id) },
		{ "apns_bundle_id", offsetof(cg_config, apns_bundle_id) },
	};
	size_t i, nset = 0;
	cg_log_level lv;

	for (i = 0; i < NKEYS; i++) {
		const struct cfg_key *k = &cfg_keys[i];

		if (k->type != CFG_STR)
			continue;
		if ((k->required & (unsigned)prog) && !is_set(str_value(cfg, k))) {
			char env[CFG_NAME_MAX];
			size_t j;

			for (j = 0; k->name[j] && j < sizeof env - 1; j++)
				env[j] = (char)toupper((unsigned char)k->name[j]);
			env[j] = '\0';
			cg_set_err(err, errlen,
				"%s: missing required key (set it in the config file or as %s)",
				k->name, env);
			return -1;
		}
		if ((k->flags & CFG_NONEMPTY) && !is_set(str_value(cfg, k))) {
			cg_set_err(err, errlen, "%s: may not be empty", k->name);
			return -1;
		}
	}
	if (is_set(cfg->ws_jwt_secret) && strlen(cfg->ws_jwt_secret) < 16) {
		cg_set_err(err, errlen, "ws_jwt_secret: must be at least 16 bytes long");
		return -1;
	}
	if (cg_log_level_parse(cfg->log_level, &lv) < 0) {
		cg_set_err(err, errlen, "log_level: \"%.32s\" is not one of debug, info, warn, error",
			cfg->log_level);
		return -1;
	}
	if (!cg_id_valid(cfg->default_tenant)) {
		cg_set_err(err, errlen,
			"default_tenant: must be 1..255 characters of A-Z a-z 0-9 _ . : -");
		return -1;
	}
	if (is_set(cfg->apns_team_id) && !apple_id_valid(cfg->apns_team_id)) {
		cg_set_err(err, errlen, "apns_team_id: must be exactly 10 characters of A-Z 0-9");
		return -1;
	}
	if (is_set(cfg->apns_key_id) && !apple_id_valid(cfg->apns_key_id)) {
		cg_set_err(err, errlen, "apns_key_id: must be exactly 10 characters of A-Z 0-9");
		return -1;
	}
	for (i = 0; i < sizeof apns / sizeof apns[0]; i++)
		if (is_set(*(char **)(void *)((char *)cfg + apns[i].off)))
			nset++;
	if (nset > 0 && nset < sizeof apns / sizeof apns[0]) {
		for (i = 0; i < sizeof apns / sizeof apns[0]; i++) {
			if (!is_set(*(char **)(void *)((char *)cfg + apns[i].off))) {
				cg_set_err(err, errlen,
					"%s: missing (apns_key_path, apns_key_id, apns_team_id and "
					"apns_bundle_id must be set together)",
					apns[i].name);
				return -1;
			}
		}
	}
	if (is_set(cfg->vapid_private_key) && !is_set(cfg->vapid_subject)) {
		cg_set_err(err, errlen, "vapid_subject: missing (required with vapid_private_key: "
			   "a mailto: or https: URL)");
		return -1;
	}
	if (is_set(cfg->vapid_subject) && strncmp(cfg->vapid_subject, "mailto:", 7) != 0 &&
	    strncmp(cfg->vapid_subject, "https:", 6) != 0) {
		cg_set_err(err, errlen, "vapid_subject: must be a mailto: or https: URL");
		return -1;
	}
	if (is_set(cfg->auth_jwt_hs256_secret) && strlen(cfg->auth_jwt_hs256_secret) < 32) {
		cg_set_err(err, errlen, "auth_jwt_hs256_secret: must be at least 32 bytes long");
		return -1;
	}
	if (is_set(cfg->auth_jwt_hs256_secret) || is_set(cfg->auth_jwt_public_keys)) {
		if (!is_set(cfg->auth_jwt_issuer)) {
			cg_set_err(err, errlen, "auth_jwt_issuer: missing (required when JWT keys are set)");
			return -1;
		}
		if (!is_set(cfg->auth_jwt_audience)) {
			cg_set_err(err, errlen, "auth_jwt_audience: missing (required when JWT keys are set)");
			return -1;
		}
	}
	if (fill_instance_id(cfg, err, errlen) < 0)
		return -1;
	if (!cg_id_valid(cfg->instance_id)) {
		cg_set_err(err, errlen,
			"instance_id: must be 1..255 characters of A-Z a-z 0-9 _ . : -");
		return -1;
	}
	return 0;
}

/* Zeroes cfg and fills in every default. Returns 0 or -1. */
static int fill_defaults(cg_config *cfg, char *err, size_t errlen)
{
	size_t i;

	if (err && errlen)
		err[0] = '\0';
	memset(cfg, 0, sizeof *cfg);
	for (i = 0; i < NKEYS; i++) {
		if (!cfg_keys[i].def)
			continue;
		if (set_value(cfg, &cfg_keys[i], cfg_keys[i].def, "default", err, errlen) < 0)
			return -1;
	}
	return 0;
}

int cg_config_load(cg_config *cfg, const char *path, cg_prog prog, char *err, size_t errlen)
{
	if (fill_defaults(cfg, err, errlen) < 0)
		return -1;
	if (path && load_file(cfg, path, NULL, err, errlen) < 0)
		return -1;
	if (load_env(cfg, err, errlen) < 0)
		return -1;
	return validate(cfg, prog, err, errlen);
}

int cg_config_load_push_credentials(cg_config *cfg, const char *path, char *err, size_t errlen)
{
	static const char *const push_keys[] = {
		"apns_team_id", "apns_key_id", "apns_key_path", "apns_bundle_id", "apns_use_sandbox",
		"apns_url", "vapid_private_key", "vapid_subject", NULL,
	};

	if (fill_defaults(cfg, err, errlen) < 0 || load_file(cfg, path, push_keys, err, errlen) < 0)
		return -1;
	return validate(cfg, CG_PROG_TEST, err, errlen);
}

const char *cg_config_default_path(void)
{
	const char *env = getenv("CAPSULE_CONFIG");
	static const char sys[] = CG_SYSCONFDIR "/capsule-gateway.conf";

	if (env && *env)
		return env;
	if (access(sys, F_OK) == 0)
		return sys;
	return NULL;
}

void cg_config_free(cg_config *cfg)
{
	size_t i;

	if (!cfg)
		return;
	for (i = 0; i < NKEYS; i++) {
		if (cfg_keys[i].type == CFG_STR) {
			char **f = str_field(cfg, &cfg_keys[i]);
			free(*f);
			*f = NULL;
		}
	}
	memset(cfg, 0, sizeof *cfg);
}

int cg_config_webpush_configured(const cg_config *cfg)
{
	return cfg && is_set(cfg->vapid_private_key) && is_set(cfg->vapid_subject);
}

int cg_config_apns_configured(const cg_config *cfg)
{
	return cfg && is_set(cfg->apns_key_path) && is_set(cfg->apns_key_id) &&
	       is_set(cfg->apns_team_id) && is_set(cfg->apns_bundle_id);
}

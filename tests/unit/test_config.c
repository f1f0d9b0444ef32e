/* test_config: defaults, file syntax, environment overrides and validation. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_config.h"
#include "tap.h"

static const char *const env_names[] = {
	"DATABASE_URL", "REDIS_URL", "WS_JWT_SECRET", "WS_TOKEN_TTL", "WS_JWT_ISSUER", "HOST",
	"PORT", "WS_PING_INTERVAL", "WS_PONG_TIMEOUT", "WS_AUTH_TIMEOUT", "WS_MAX_MESSAGE",
	"WS_SEND_QUEUE_MAX", "INSTANCE_ID", "APNS_TEAM_ID", "APNS_KEY_ID", "APNS_KEY_PATH",
	"APNS_BUNDLE_ID", "APNS_USE_SANDBOX", "APNS_URL", "APNS_CA_FILE", "APNS_MAX_CONNECTIONS",
	"APNS_TIMEOUT_MS", "MAX_BODY_BYTES", "CACHE_TTL", "EVENT_STREAM", "EVENT_STREAM_MAXLEN",
	"PUSH_GROUP", "DEFAULT_TENANT", "LOG_LEVEL", "CAPSULE_CONFIG",
};

static void clear_env(void)
{
	size_t i;

	for (i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
		unsetenv(env_names[i]);
}

/* Writes `text` to a new temp file; returns its path (static storage per
 * slot) or NULL. */
static const char *write_conf(const char *text)
{
	static char paths[64][64];
	static int next;
	char *p = paths[next++ % 64];
	FILE *f;
	int fd;

	snprintf(p, 64, "/tmp/cg-test-config-XXXXXX");
	fd = mkstemp(p);
	if (fd < 0)
		return NULL;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return NULL;
	}
	fputs(text, f);
	fclose(f);
	return p;
}

static void test_defaults(void)
{
	cg_config cfg;
	char err[256];
	char want_prefix[300];
	int rc;

	clear_env();
	rc = cg_config_load(&cfg, NULL, CG_PROG_TEST, err, sizeof err);
	is_int(rc, 0, "defaults load for CG_PROG_TEST");
	ok(cfg.database_url == NULL, "database_url has no default");
	is_str(cfg.redis_url, "redis://127.0.0.1:6379/0", "redis_url default");
	ok(cfg.ws_jwt_secret == NULL, "ws_jwt_secret has no default");
	is_int(cfg.ws_token_ttl, 3600, "ws_token_ttl default");
	is_str(cfg.ws_jwt_issuer, "capsule-gateway", "ws_jwt_issuer default");
	is_str(cfg.host, "127.0.0.1", "host default");
	is_int(cfg.port, 8081, "port default");
	is_int(cfg.ws_ping_interval, 30, "ws_ping_interval default");
	is_int(cfg.ws_pong_timeout, 60, "ws_pong_timeout default");
	is_int(cfg.ws_auth_timeout, 10, "ws_auth_timeout default");
	is_int(cfg.ws_max_message, 1048576, "ws_max_message default");
	is_int(cfg.ws_send_queue_max, 1024, "ws_send_queue_max default");
	is_int(cfg.apns_use_sandbox, 0, "apns_use_sandbox default");
	is_int(cfg.apns_max_connections, 2, "apns_max_connections default");
	is_int(cfg.apns_timeout_ms, 10000, "apns_timeout_ms default");
	is_int(cfg.max_body_bytes, 1048576, "max_body_bytes default");
	is_int(cfg.cache_ttl, 300, "cache_ttl default");
	is_str(cfg.event_stream, "cg:events", "event_stream default");
	is_int(cfg.event_stream_maxlen, 1000000, "event_stream_maxlen default");
	is_str(cfg.push_group, "capsule-pushd", "push_group default");
	is_str(cfg.default_tenant, "default", "default_tenant default");
	is_str(cfg.log_level, "info", "log_level default");
	ok(cfg.apns_key_path == NULL && cfg.apns_url == NULL, "APNs keys unset by default");
	is_int(cg_config_apns_configured(&cfg), 0, "APNs not configured by default");
	{
		char host[256] = "";
		gethostname(host, sizeof host);
		snprintf(want_prefix, sizeof want_prefix, "-%ld", (long)getpid());
		ok(cfg.instance_id && strlen(cfg.instance_id) > strlen(want_prefix) &&
			   strcmp(cfg.instance_id + strlen(cfg.instance_id) - strlen(want_prefix),
				  want_prefix) == 0,
		   "instance_id defaults to <hostname>-<pid>: %s", cfg.instance_id ? cfg.instance_id : "");
	}
	cg_config_free(&cfg);
	ok(cfg.redis_url == NULL && cfg.port == 0 && cfg.instance_id == NULL,
	   "cg_config_free leaves the struct zeroed");
}

static void test_file(void)
{
	cg_config cfg;
	char err[256];
	const char *path;
	int rc;

	clear_env();
	path = write_conf("# a comment\n"
			  "\n"
			  "   # indented comment\n"
			  "database_url = postgresql://u:p#w@127.0.0.1/db\n"
			  "  port=9000   \n"
			  "host\t=\t\"0.0.0.0\"\n"
			  "ws_jwt_issuer = \"with spaces inside\"\n"
			  "event_stream = \"\n"
			  "apns_use_sandbox = yes\n"
			  "instance_id = node-1\n"
			  "log_level = debug\r\n"
			  "cache_ttl = 10\n"
			  "cache_ttl = 20\n");
	rc = cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err);
	is_int(rc, 0, "file with comments, quotes and whitespace loads");
	if (rc)
		printf("# %s\n", err);
	is_str(cfg.database_url, "postgresql://u:p#w@127.0.0.1/db", "'#' inside a value is kept");
	is_int(cfg.port, 9000, "port from file, whitespace trimmed");
	is_str(cfg.host, "0.0.0.0", "quotes stripped, tabs trimmed");
	is_str(cfg.ws_jwt_issuer, "with spaces inside", "quoted value keeps inner spaces");
	is_str(cfg.event_stream, "\"", "a lone quote is not a quoted value");
	is_int(cfg.apns_use_sandbox, 1, "bool from file");
	is_str(cfg.instance_id, "node-1", "instance_id kept when set");
	is_str(cfg.log_level, "debug", "CRLF line ending trimmed");
	is_int(cfg.cache_ttl, 20, "a repeated key: the last one wins");
	is_str(cfg.redis_url, "redis://127.0.0.1:6379/0", "keys not in the file keep defaults");
	cg_config_free(&cfg);
	unlink(path);
}

static void test_env_override(void)
{
	cg_config cfg;
	char err[256];
	const char *path;
	int rc;

	clear_env();
	path = write_conf("port = 9000\nhost = 10.0.0.1\nredis_url = redis://file/1\n");
	setenv("PORT", "9100", 1);
	setenv("HOST", "", 1);
	setenv("APNS_URL", "https://127.0.0.1:9443", 1);
	rc = cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err);
	is_int(rc, -1, "empty HOST counts as set (and host may not be empty)");
	ok(strstr(err, "host") != NULL, "error names host: %s", err);
	cg_config_free(&cfg);

	unsetenv("HOST");
	rc = cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err);
	is_int(rc, 0, "load with environment overrides");
	is_int(cfg.port, 9100, "environment wins over the file");
	is_str(cfg.host, "10.0.0.1", "file value kept when no environment variable");
	is_str(cfg.redis_url, "redis://file/1", "file wins over the default");
	is_str(cfg.apns_url, "https://127.0.0.1:9443", "environment sets a key absent from the file");
	cg_config_free(&cfg);

	setenv("REDIS_URL", "redis://env/2", 1);
	setenv("APNS_URL", "", 1);
	rc = cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err);
	is_int(rc, 0, "load again");
	is_str(cfg.redis_url, "redis://env/2", "REDIS_URL overrides the file");
	ok(cfg.apns_url == NULL, "empty APNS_URL leaves the optional key unset");
	cg_config_free(&cfg);

	setenv("PORT", "80x", 1);
	rc = cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err);
	is_int(rc, -1, "bad integer in the environment");
	ok(strstr(err, "PORT") != NULL && strstr(err, "port") != NULL, "error names PORT: %s", err);
	cg_config_free(&cfg);
	clear_env();
	unlink(path);
}

static void test_errors(void)
{
	static const struct {
		const char *text;
		const char *want1, *want2; /* substrings of the error */
	} cases[] = {
		{ "port = 1\nbogus_key = 1\n", ":2:", "bogus_key" },
		{ "# c\n\nno equals sign here\n", ":3:", "no equals sign" },
		{ "PORT = 80\n", ":1:", "PORT" },
		{ "= 80\n", ":1:", "key" },
		{ "port = 8o81\n", ":1:", "port" },
		{ "port = \n", ":1:", "port" },
		{ "port = 0x50\n", ":1:", "port" },
		{ "port = 65536\n", "port", "65536" },
		{ "port = 0\n", "port", "out of range" },
		{ "port = -1\n", "port", "out of range" },
		{ "port = 99999999999999999999999\n", "port", "integer" },
		{ "port = 80 80\n", "port", "integer" },
		{ "ws_token_ttl = 59\n", "ws_token_ttl", "60..86400" },
		{ "ws_token_ttl = 86401\n", "ws_token_ttl", "out of range" },
		{ "apns_max_connections = 17\n", "apns_max_connections", "1..16" },
		{ "max_body_bytes = 1023\n", "max_body_bytes", "out of range" },
		{ "max_body_bytes = 67108865\n", "max_body_bytes", "out of range" },
		{ "apns_use_sandbox = maybe\n", "apns_use_sandbox", "maybe" },
		{ "log_level = loud\n", "log_level", "loud" },
		{ "ws_jwt_secret = short\n", "ws_jwt_secret", "16" },
		{ "apns_team_id = abcdefghij\n", "apns_team_id", "10" },
		{ "apns_key_id = ABC123\n", "apns_key_id", "10" },
		{ "event_stream =\n", "event_stream", "empty" },
		{ "default_tenant = a b\n", "default_tenant", "default_tenant" },
	};
	size_t i;

	clear_env();
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cg_config cfg;
		char err[256] = "";
		const char *path = write_conf(cases[i].text);
		int rc = cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err);

		is_int(rc, -1, "error case %zu fails", i);
		ok(strstr(err, cases[i].want1) && strstr(err, cases[i].want2),
		   "error case %zu names \"%s\" and \"%s\": %s", i, cases[i].want1, cases[i].want2, err);
		cg_config_free(&cfg);
		unlink(path);
	}
	{
		/* Boundaries themselves are accepted. */
		cg_config cfg;
		char err[256];
		const char *path = write_conf("port = 65535\nws_token_ttl = 60\napns_max_connections = 16\n"
					      "max_body_bytes = 1024\nws_jwt_secret = 0123456789abcdef\n"
					      "port = +65535\n");
		is_int(cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err), 0,
		       "values at the bounds are accepted");
		is_int(cfg.port, 65535, "port at max");
		cg_config_free(&cfg);
		unlink(path);
	}
}

static void test_missing_file(void)
{
	cg_config cfg;
	char err[256] = "";
	const char *path = "/tmp/cg-test-config-does-not-exist.conf";

	clear_env();
	unlink(path);
	is_int(cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err), -1, "missing file fails");
	ok(strstr(err, path) != NULL, "error names the file: %s", err);
	cg_config_free(&cfg);
}

static void test_required(void)
{
	static const struct {
		cg_prog prog;
		const char *conf;
		int rc;
		const char *key; /* named in the error */
	} cases[] = {
		{ CG_PROG_CGI, "", -1, "database_url" },
		{ CG_PROG_CGI, "database_url = postgresql:///x\n", -1, "ws_jwt_secret" },
		{ CG_PROG_CGI, "database_url = postgresql:///x\nws_jwt_secret = 0123456789abcdef\n", 0, NULL },
		{ CG_PROG_WSD, "database_url = postgresql:///x\n", -1, "ws_jwt_secret" },
		{ CG_PROG_WSD, "ws_jwt_secret = 0123456789abcdef\n", -1, "database_url" },
		{ CG_PROG_WSD, "database_url = postgresql:///x\nws_jwt_secret = 0123456789abcdef\n", 0, NULL },
		{ CG_PROG_PUSHD, "", -1, "database_url" },
		{ CG_PROG_PUSHD, "database_url = postgresql:///x\n", 0, NULL },
		{ CG_PROG_MIGRATE, "", -1, "database_url" },
		{ CG_PROG_MIGRATE, "database_url = postgresql:///x\n", 0, NULL },
		{ CG_PROG_TEST, "", 0, NULL },
		{ CG_PROG_PUSHD, "database_url = \"\"\n", -1, "database_url" },
	};
	size_t i;

	clear_env();
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cg_config cfg;
		char err[256] = "";
		const char *path = write_conf(cases[i].conf);
		int rc = cg_config_load(&cfg, path, cases[i].prog, err, sizeof err);

		is_int(rc, cases[i].rc, "required case %zu", i);
		if (cases[i].key)
			ok(strstr(err, cases[i].key) != NULL, "required case %zu names %s: %s", i,
			   cases[i].key, err);
		cg_config_free(&cfg);
		unlink(path);
	}
	/* The environment alone can satisfy a required key. */
	setenv("DATABASE_URL", "postgresql:///env", 1);
	{
		cg_config cfg;
		char err[256];
		is_int(cg_config_load(&cfg, NULL, CG_PROG_PUSHD, err, sizeof err), 0,
		       "DATABASE_URL from the environment satisfies push-daemon");
		cg_config_free(&cfg);
	}
	clear_env();
}

static void test_apns(void)
{
	static const char full[] = "apns_key_path = /tmp/key.p8\n"
				   "apns_key_id = ABC123DEFG\n"
				   "apns_team_id = TEAM123456\n"
				   "apns_bundle_id = com.example.app\n";
	static const struct {
		const char *unset_env; /* set to empty, removing that key */
		const char *missing;
	} cases[] = {
		{ "APNS_KEY_PATH", "apns_key_path" },
		{ "APNS_KEY_ID", "apns_key_id" },
		{ "APNS_TEAM_ID", "apns_team_id" },
		{ "APNS_BUNDLE_ID", "apns_bundle_id" },
	};
	const char *path;
	cg_config cfg;
	char err[256];
	size_t i;

	clear_env();
	path = write_conf(full);
	is_int(cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err), 0, "all four APNs keys");
	is_int(cg_config_apns_configured(&cfg), 1, "APNs configured");
	cg_config_free(&cfg);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		setenv(cases[i].unset_env, "", 1);
		err[0] = '\0';
		is_int(cg_config_load(&cfg, path, CG_PROG_TEST, err, sizeof err), -1,
		       "APNs without %s fails", cases[i].missing);
		ok(strstr(err, cases[i].missing) == err, "error names %s first: %s", cases[i].missing, err);
		cg_config_free(&cfg);
		unsetenv(cases[i].unset_env);
	}
	unlink(path);
	clear_env();
}

static void test_bools(void)
{
	static const struct {
		const char *v;
		int rc, want;
	} cases[] = {
		{ "true", 0, 1 }, { "false", 0, 0 }, { "yes", 0, 1 }, { "no", 0, 0 },
		{ "on", 0, 1 },   { "off", 0, 0 },   { "1", 0, 1 },   { "0", 0, 0 },
		{ "TRUE", 0, 1 }, { "Off", 0, 0 },   { "", -1, 0 },   { "2", -1, 0 },
		{ "y", -1, 0 },   { " true", -1, 0 },
	};
	size_t i;

	clear_env();
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cg_config cfg;
		char err[256] = "";
		int rc;

		setenv("APNS_USE_SANDBOX", cases[i].v, 1);
		rc = cg_config_load(&cfg, NULL, CG_PROG_TEST, err, sizeof err);
		is_int(rc, cases[i].rc, "bool \"%s\"", cases[i].v);
		if (rc == 0)
			is_int(cfg.apns_use_sandbox, cases[i].want, "bool \"%s\" value", cases[i].v);
		else
			ok(strstr(err, "APNS_USE_SANDBOX") != NULL, "bool error names the variable: %s", err);
		cg_config_free(&cfg);
	}
	clear_env();
}

/* A tenant's push credentials file: only push keys, no environment. */
static void test_push_credentials(void)
{
	static const struct {
		const char *conf;
		int rc;
		const char *named; /* in the error */
	} cases[] = {
		{ "", 0, NULL },
		{ "apns_team_id = ABCDE12345\napns_key_id = KEY1234567\napns_key_path = /k.p8\n"
		  "apns_bundle_id = com.example.app\napns_use_sandbox = true\n", 0, NULL },
		{ "vapid_private_key = abc\nvapid_subject = mailto:ops@example.com\n", 0, NULL },
		{ "apns_team_id = ABCDE12345\n", -1, "must be set together" },
		{ "vapid_private_key = abc\n", -1, "vapid_subject" },
		{ "vapid_private_key = abc\nvapid_subject = ops@example.com\n", -1, "mailto:" },
		{ "database_url = postgresql:///x\n", -1, "cannot be set here" },
		{ "apns_ca_file = /etc/ssl/evil.pem\n", -1, "cannot be set here" },
		{ "nonsense = 1\n", -1, "unknown key" },
	};
	size_t i;

	clear_env();
	setenv("APNS_TEAM_ID", "ENVENV1234", 1);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cg_config cfg;
		char err[256] = "";
		const char *path = write_conf(cases[i].conf);
		int rc = cg_config_load_push_credentials(&cfg, path, err, sizeof err);

		is_int(rc, cases[i].rc, "push credentials case %zu", i);
		if (cases[i].named)
			ok(strstr(err, cases[i].named) != NULL, "push credentials case %zu says %s: %s",
			   i, cases[i].named, err);
		if (i == 0)
			ok(cfg.apns_team_id == NULL && !cg_config_apns_configured(&cfg),
			   "the environment does not reach a tenant's credentials");
		if (i == 1)
			ok(cg_config_apns_configured(&cfg) && cfg.apns_use_sandbox &&
			   strcmp(cfg.apns_bundle_id, "com.example.app") == 0,
			   "a tenant's APNs credentials are read");
		if (i == 2)
			ok(cg_config_webpush_configured(&cfg), "a tenant's VAPID key is read");
		cg_config_free(&cfg);
		unlink(path);
	}
	clear_env();
}

static void test_default_path(void)
{
	const char *p;

	clear_env();
	setenv("CAPSULE_CONFIG", "/tmp/somewhere.conf", 1);
	p = cg_config_default_path();
	is_str(p, "/tmp/somewhere.conf", "CAPSULE_CONFIG wins");
	setenv("CAPSULE_CONFIG", "", 1);
	p = cg_config_default_path();
	ok(p == NULL || strcmp(p, CG_SYSCONFDIR "/capsule-gateway.conf") == 0,
	   "empty CAPSULE_CONFIG falls back to the system path or NULL");
	ok((p != NULL) == (access(CG_SYSCONFDIR "/capsule-gateway.conf", F_OK) == 0),
	   "system path only when it exists");
	unsetenv("CAPSULE_CONFIG");
}

int main(void)
{
	test_defaults();
	test_file();
	test_env_override();
	test_errors();
	test_missing_file();
	test_required();
	test_apns();
	test_bools();
	test_push_credentials();
	test_default_path();
	return done_testing();
}

/* capsule-admin: operator CLI for tenants and API keys, and VAPID key generation. */
#define _GNU_SOURCE
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cg_auth.h"
#include "cg_config.h"
#include "cg_db.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"
#include "cg_webpush.h"

#define EXIT_USAGE 2
#define TENANT_ID_MAX 64
#define NAME_MAX_BYTES 255
#define EXPIRES_IN_MAX (10L * 366 * 86400) /* ten years */
#define ISSUE_ATTEMPTS 3                    /* key id collisions are 1 in 2^64 */

/* SQL that renders a timestamptz as RFC 3339 UTC, or '-' when NULL. */
#define TS(col) "coalesce(to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '-')"

static const char *progname = "capsule-admin";

static void usage(void)
{
	fprintf(stderr,
		"usage: capsule-admin [-f config-file] tenant create <tenant_id> [name]\n"
		"       capsule-admin [-f config-file] tenant list\n"
		"       capsule-admin [-f config-file] key issue <tenant_id> <role> <name>\n"
		"                     [--expires-in SECONDS | --expires-at RFC3339]\n"
		"       capsule-admin [-f config-file] key list <tenant_id>\n"
		"       capsule-admin [-f config-file] key revoke <key_id>\n"
		"       capsule-admin vapid-keygen\n"
		"  -f FILE  configuration file (default: $CAPSULE_CONFIG or %s/capsule-gateway.conf)\n"
		"  roles: viewer, operator, publisher, admin\n",
		CG_SYSCONFDIR);
	exit(EXIT_USAGE);
}

__attribute__((format(printf, 1, 2)))
static void errx_msg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A bad argument value: named, then usage status. */
__attribute__((format(printf, 1, 2), noreturn))
static void bad_arg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_USAGE);
}

/* ---- argument checks ---- */

static void check_tenant_id(const char *s)
{
	if (!cg_id_valid(s) || strlen(s) > TENANT_ID_MAX)
		bad_arg("tenant_id \"%.80s\": must be 1..%d characters of [A-Za-z0-9_.:-]", s, TENANT_ID_MAX);
}

/* Names: 1..255 bytes of valid UTF-8 without control characters. */
static void check_name(const char *what, const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > NAME_MAX_BYTES)
		bad_arg("%s: must be 1..%d bytes long", what, NAME_MAX_BYTES);
	if (!cg_utf8_valid(s, n))
		bad_arg("%s: is not valid UTF-8", what);
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			bad_arg("%s: must not contain control characters", what);
}

static void check_key_id(const char *s)
{
	size_t i;

	if (strlen(s) != CG_API_KEY_ID_LEN)
		goto bad;
	for (i = 0; i < CG_API_KEY_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			goto bad;
	return;
bad:
	/* Never echo it: an operator may have pasted a whole key, secret included. */
	bad_arg("key_id: must be %d lowercase hex digits (the id shown by \"key list\", "
		"not the key itself)", CG_API_KEY_ID_LEN);
}

static int two_digits(const char *s, int *v)
{
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
		return -1;
	*v = (s[0] - '0') * 10 + (s[1] - '0');
	return 0;
}

/* Strict RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
 * ('t'/'z' and a space instead of 'T' accepted). Returns 0 and the instant. */
static int parse_rfc3339(const char *s, time_t *out)
{
	struct tm tm;
	int y1, y2, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	const char *p;
	time_t t;

	if (strlen(s) < 20)
		return -1;
	if (two_digits(s, &y1) || two_digits(s + 2, &y2) || s[4] != '-' || two_digits(s + 5, &mo) ||
	    s[7] != '-' || two_digits(s + 8, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    two_digits(s + 11, &h) || s[13] != ':' || two_digits(s + 14, &mi) || s[16] != ':' ||
	    two_digits(s + 17, &sec))
		return -1;
	p = s + 19;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -1;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		sign = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && two_digits(p + 1, &oh) == 0 &&
		   p[3] == ':' && two_digits(p + 4, &om) == 0) {
		sign = *p == '+' ? 1 : -1;
		if (oh > 23 || om > 59)
			return -1;
	} else {
		return -1;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y1 * 100 + y2 - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec == 60 ? 59 : sec;
	t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != d) /* 29 February of a common year */
		return -1;
	*out = t - sign * (oh * 3600 + om * 60);
	return 0;
}

/* ---- database ---- */

static cg_db *connect_db(const cg_config *cfg)
{
	const char *url = cfg->admin_database_url != NULL && *cfg->admin_database_url != '\0' ?
			  cfg->admin_database_url : cfg->database_url;
	const char *key = url == cfg->database_url ? "database_url" : "admin_database_url";
	char err[512];
	cg_db *db;

	if (url == NULL || *url == '\0') {
		errx_msg("admin_database_url / database_url: not set");
		return NULL;
	}
	db = cg_db_open(url, err, sizeof err);
	if (db == NULL) {
		errx_msg("%s: %s", key, err);
		return NULL;
	}
	if (cg_db_ping(db) != CG_DB_OK) {
		errx_msg("cannot connect to the database (%s): %s", key, cg_db_errmsg(db));
		cg_db_close(db);
		return NULL;
	}
	return db;
}

static void db_fail(cg_db *db, const char *what)
{
	errx_msg("%s: %s", what, cg_db_errmsg(db));
}

/* 1 when the tenant exists, 0 when not, -1 on error. */
static int tenant_exists(cg_db *db, const char *tenant)
{
	const char *params[1] = { tenant };
	PGresult *res = NULL;
	int rc;

	if (cg_db_exec(db, &res, "SELECT 1 FROM tenants WHERE tenant_id = $1", 1, params) != CG_DB_OK) {
		db_fail(db, "cannot read tenants");
		return -1;
	}
	rc = PQntuples(res) > 0;
	PQclear(res);
	return rc;
}

/* Records what the operator did in audit_log, inside the caller's transaction. */
static int audit(cg_db *db, const char *tenant, const char *action, const char *target,
		 int status, json_object *detail)
{
	char actor[300], request_id[64];
	struct passwd *pw = getpwuid(getuid());
	const char *params[7];
	char status_s[16];

	if (pw != NULL && pw->pw_name != NULL)
		snprintf(actor, sizeof actor, "capsule-admin:%.255s", pw->pw_name);
	else
		snprintf(actor, sizeof actor, "capsule-admin:uid %ld", (long)getuid());
	if (cg_random_id("adm_", request_id, sizeof request_id) < 0)
		return -1;
	snprintf(status_s, sizeof status_s, "%d", status);
	params[0] = tenant;
	params[1] = actor;
	params[2] = action;
	params[3] = target;
	params[4] = request_id;
	params[5] = status_s;
	params[6] = detail != NULL ? cg_json_compact(detail) : NULL;
	if (cg_db_exec(db, NULL,
		       "INSERT INTO audit_log (tenant_id, actor, actor_kind, role, action, target,"
		       " request_id, outcome, status, detail)"
		       " VALUES ($1, $2, 'system', 'admin', $3, $4, $5, 'success', $6::integer, $7::jsonb)",
		       7, params) != CG_DB_OK) {
		db_fail(db, "cannot write the audit record");
		return -1;
	}
	return 0;
}

/* ---- commands ---- */

static int tenant_create(cg_db *db, const char *tenant, const char *name)
{
	const char *params[2] = { tenant, name };
	json_object *detail = json_object_new_object();
	int rc, status = 1;

	if (detail == NULL || cg_json_add_string(detail, "name", name) < 0) {
		errx_msg("out of memory");
		goto out;
	}
	if (cg_db_begin(db) != CG_DB_OK) {
		db_fail(db, "cannot begin a transaction");
		goto out;
	}
	rc = cg_db_exec(db, NULL, "INSERT INTO tenants (tenant_id, name) VALUES ($1, $2)", 2, params);
	if (rc == CG_DB_EDUP) {
		errx_msg("tenant_id \"%s\": tenant already exists", tenant);
		goto out;
	}
	if (rc != CG_DB_OK) {
		db_fail(db, "cannot create the tenant");
		goto out;
	}
	if (audit(db, tenant, "tenant.create", tenant, 201, detail) < 0)
		goto out;
	if (cg_db_commit(db) != CG_DB_OK) {
		db_fail(db, "cannot commit");
		goto out;
	}
	printf("created tenant %s\n", tenant);
	status = 0;
out:
	cg_db_rollback(db);
	if (detail)
		json_object_put(detail);
	return status;
}

static int tenant_list(cg_db *db)
{
	PGresult *res = NULL;
	int i, n;

	if (cg_db_exec(db, &res,
		       "SELECT t.tenant_id, " TS("t.created_at") ","
		       " (SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.tenant_id"
		       "   AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())),"
		       " t.name"
		       " FROM tenants t ORDER BY t.tenant_id", 0, NULL) != CG_DB_OK) {
		db_fail(db, "cannot list tenants");
		return 1;
	}
	n = PQntuples(res);
	printf("TENANT\tCREATED\tACTIVE_KEYS\tNAME\n");
	for (i = 0; i < n; i++)
		printf("%s\t%s\t%s\t%s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
		       PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
	PQclear(res);
	return 0;
}

static int key_issue(cg_db *db, const char *tenant, const char *role, const char *name,
		     const char *expires_at, const char *expires_in)
{
	char key[CG_API_KEY_MAX], key_id[CG_API_KEY_ID_LEN + 1], hash[65];
	const char *params[6];
	PGresult *res = NULL;
	json_object *detail = NULL;
	int attempt, rc = CG_DB_ESQL, status = 1, exists;

	memset(key, 0, sizeof key);
	exists = tenant_exists(db, tenant);
	if (exists < 0)
		goto out;
	if (exists == 0) {
		errx_msg("tenant_id \"%s\": no such tenant (create it with \"tenant create\")", tenant);
		goto out;
	}
	for (attempt = 0; attempt < ISSUE_ATTEMPTS; attempt++) {
		if (cg_api_key_generate(key, key_id, hash) < 0) {
			errx_msg("cannot generate a key: the system random generator failed");
			goto out;
		}
		params[0] = key_id;
		params[1] = tenant;
		params[2] = name;
		params[3] = role;
		params[4] = hash;
		params[5] = expires_at != NULL ? expires_at : expires_in;
		if (cg_db_begin(db) != CG_DB_OK) {
			db_fail(db, "cannot begin a transaction");
			goto out;
		}
		rc = cg_db_exec(db, &res,
				expires_at != NULL ?
				"INSERT INTO api_keys (key_id, tenant_id, name, role, secret_hash, expires_at)"
				" VALUES ($1, $2, $3, $4, $5, $6::timestamptz)"
				" RETURNING " TS("expires_at") :
				"INSERT INTO api_keys (key_id, tenant_id, name, role, secret_hash, expires_at)"
				" VALUES ($1, $2, $3, $4, $5, now() + $6::bigint * interval '1 second')"
				" RETURNING " TS("expires_at"),
				6, params);
		if (rc != CG_DB_EDUP)
			break;
		cg_db_rollback(db);
	}
	if (rc != CG_DB_OK) {
		db_fail(db, "cannot store the key");
		goto out;
	}
	detail = json_object_new_object();
	if (detail == NULL || cg_json_add_string(detail, "key_id", key_id) < 0 ||
	    cg_json_add_string(detail, "role", role) < 0 || cg_json_add_string(detail, "name", name) < 0 ||
	    cg_json_add_string(detail, "expires_at", strcmp(PQgetvalue(res, 0, 0), "-") == 0 ?
			       NULL : PQgetvalue(res, 0, 0)) < 0) {
		errx_msg("out of memory");
		goto out;
	}
	if (audit(db, tenant, "api_key.issue", key_id, 201, detail) < 0)
		goto out;
	if (cg_db_commit(db) != CG_DB_OK) {
		db_fail(db, "cannot commit");
		goto out;
	}
	/* The key itself is the only line on stdout, so scripts can capture it. */
	printf("%s\n", key);
	if (fflush(stdout) != 0) {
		errx_msg("cannot write the key to stdout: %s (key %s was stored; revoke it)",
			 strerror(errno), key_id);
		goto out;
	}
	fprintf(stderr,
		"issued API key %s: tenant %s, role %s, expires %s.\n"
		"The key above is shown only this once; only its hash is stored.\n",
		key_id, tenant, role, strcmp(PQgetvalue(res, 0, 0), "-") == 0 ? "never" : PQgetvalue(res, 0, 0));
	status = 0;
out:
	cg_db_rollback(db);
	OPENSSL_cleanse(key, sizeof key);
	if (res)
		PQclear(res);
	if (detail)
		json_object_put(detail);
	return status;
}

static int key_list(cg_db *db, const char *tenant)
{
	const char *params[1] = { tenant };
	PGresult *res = NULL;
	int i, n, exists;

	exists = tenant_exists(db, tenant);
	if (exists < 0)
		return 1;
	if (exists == 0) {
		errx_msg("tenant_id \"%s\": no such tenant", tenant);
		return 1;
	}
	if (cg_db_exec(db, &res,
		       "SELECT key_id, name, role, " TS("created_at") ", " TS("expires_at") ", "
		       TS("revoked_at") ", " TS("last_used_at") ","
		       " CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
		       "      WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired'"
		       "      ELSE 'active' END"
		       " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, key_id",
		       1, params) != CG_DB_OK) {
		db_fail(db, "cannot list keys");
		return 1;
	}
	n = PQntuples(res);
	printf("KEY_ID\tNAME\tROLE\tCREATED\tEXPIRES\tREVOKED\tLAST_USED\tSTATE\n");
	for (i = 0; i < n; i++)
		printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
		       PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4),
		       PQgetvalue(res, i, 5), PQgetvalue(res, i, 6), PQgetvalue(res, i, 7));
	PQclear(res);
	return 0;
}

static int key_revoke(cg_db *db, const char *key_id)
{
	const char *params[1] = { key_id };
	PGresult *res = NULL;
	json_object *detail = NULL;
	char tenant[TENANT_ID_MAX + 1];
	int status = 1;

	if (cg_db_begin(db) != CG_DB_OK) {
		db_fail(db, "cannot begin a transaction");
		goto out;
	}
	/* Lock the row so that two revocations record one audit entry. */
	if (cg_db_exec(db, &res, "SELECT tenant_id, revoked_at IS NOT NULL FROM api_keys"
		       " WHERE key_id = $1 FOR UPDATE", 1, params) != CG_DB_OK) {
		db_fail(db, "cannot read the key");
		goto out;
	}
	if (PQntuples(res) == 0) {
		errx_msg("key_id \"%s\": no such key", key_id);
		goto out;
	}
	snprintf(tenant, sizeof tenant, "%s", PQgetvalue(res, 0, 0));
	if (strcmp(PQgetvalue(res, 0, 1), "t") == 0) {
		printf("key %s (tenant %s) was already revoked\n", key_id, tenant);
		status = 0;
		goto out;
	}
	if (cg_db_exec(db, NULL, "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", 1, params) != CG_DB_OK) {
		db_fail(db, "cannot revoke the key");
		goto out;
	}
	detail = json_object_new_object();
	if (detail == NULL || cg_json_add_string(detail, "key_id", key_id) < 0) {
		errx_msg("out of memory");
		goto out;
	}
	if (audit(db, tenant, "api_key.revoke", key_id, 200, detail) < 0)
		goto out;
	if (cg_db_commit(db) != CG_DB_OK) {
		db_fail(db, "cannot commit");
		goto out;
	}
	printf("revoked key %s (tenant %s)\n", key_id, tenant);
	status = 0;
out:
	cg_db_rollback(db);
	if (res)
		PQclear(res);
	if (detail)
		json_object_put(detail);
	return status;
}

/* Parses the options after "key issue t r n". Writes the expiry as RFC 3339
 * UTC into at[21] or as seconds into in[24]; both empty: never. */
static void parse_expiry(int argc, char **argv, char *at, char *in)
{
	int i;
	char *end;
	long long secs;
	time_t t;

	at[0] = '\0';
	in[0] = '\0';
	for (i = 0; i < argc; i++) {
		const char *opt = argv[i], *val;

		if (strcmp(opt, "--expires-in") != 0 && strcmp(opt, "--expires-at") != 0) {
			errx_msg("unexpected argument \"%.80s\"", opt);
			usage();
		}
		if (i + 1 >= argc) {
			errx_msg("%s needs a value", opt);
			usage();
		}
		val = argv[++i];
		if (at[0] != '\0' || in[0] != '\0')
			bad_arg("give at most one of --expires-in and --expires-at");
		if (strcmp(opt, "--expires-in") == 0) {
			errno = 0;
			secs = strtoll(val, &end, 10);
			if (!isdigit((unsigned char)val[0]) || errno != 0 || *end != '\0' || secs < 1 ||
			    secs > EXPIRES_IN_MAX)
				bad_arg("--expires-in \"%.40s\": must be a number of seconds, 1..%ld", val,
					EXPIRES_IN_MAX);
			snprintf(in, 24, "%lld", secs);
		} else {
			if (parse_rfc3339(val, &t) < 0)
				bad_arg("--expires-at \"%.40s\": must be an RFC 3339 time such as "
					"2030-01-31T12:00:00Z", val);
			if (t <= cg_now())
				bad_arg("--expires-at \"%.40s\": is not in the future", val);
			if (t - cg_now() > EXPIRES_IN_MAX)
				bad_arg("--expires-at \"%.40s\": more than ten years ahead", val);
			cg_time_rfc3339(t, at);
		}
	}
}

/* Prints a new VAPID key pair as configuration lines. Needs no
 * configuration and no database. */
static int vapid_keygen(void)
{
	char priv[CG_WEBPUSH_KEY_B64_MAX], pub[CG_WEBPUSH_KEY_B64_MAX];
	int status = 1;

	if (cg_vapid_generate(priv, pub) != 0) {
		errx_msg("cannot generate a P-256 key pair");
		goto out;
	}
	printf("# VAPID key pair (P-256). Keep the private key secret; browsers subscribe\n"
	       "# with the public key as applicationServerKey.\n"
	       "vapid_private_key = %s\n"
	       "vapid_public_key = %s\n", priv, pub);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errx_msg("cannot write the keys: %s", strerror(errno));
		goto out;
	}
	status = 0;
out:
	OPENSSL_cleanse(priv, sizeof priv);
	return status;
}

int main(int argc, char **argv)
{
	cg_config cfg;
	char err[512], at[21], in[24];
	const char *cfgpath = NULL, *noun, *verb;
	cg_db *db = NULL;
	cg_role role = CG_ROLE_NONE;
	int c, status = 1;

	memset(&cfg, 0, sizeof cfg);
	/* Errors are printed by this program; the library's info and warning lines
	 * (a duplicate key, a refused connection) would only repeat them. */
	cg_log_init(progname, CG_LOG_ERROR);
	at[0] = '\0';
	in[0] = '\0';
	/* '+': stop at the command, whose own options come after it. */
	while ((c = getopt(argc, argv, "+f:h")) != -1) {
		switch (c) {
		case 'f': cfgpath = optarg; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc >= 1 && strcmp(argv[0], "vapid-keygen") == 0) {
		if (argc != 1)
			usage();
		return vapid_keygen();
	}
	if (argc < 2)
		usage();
	noun = argv[0];
	verb = argv[1];
	argc -= 2;
	argv += 2;

	/* Check the whole command line before touching the configuration. */
	if (strcmp(noun, "tenant") == 0 && strcmp(verb, "create") == 0) {
		if (argc < 1 || argc > 2)
			usage();
		check_tenant_id(argv[0]);
		check_name("name", argc == 2 ? argv[1] : argv[0]);
	} else if (strcmp(noun, "tenant") == 0 && strcmp(verb, "list") == 0) {
		if (argc != 0)
			usage();
	} else if (strcmp(noun, "key") == 0 && strcmp(verb, "issue") == 0) {
		if (argc < 3)
			usage();
		check_tenant_id(argv[0]);
		if (cg_role_parse(argv[1], &role) < 0)
			bad_arg("role \"%.40s\": must be one of viewer, operator, publisher, admin", argv[1]);
		check_name("name", argv[2]);
		parse_expiry(argc - 3, argv + 3, at, in);
	} else if (strcmp(noun, "key") == 0 && strcmp(verb, "list") == 0) {
		if (argc != 1)
			usage();
		check_tenant_id(argv[0]);
	} else if (strcmp(noun, "key") == 0 && strcmp(verb, "revoke") == 0) {
		if (argc != 1)
			usage();
		check_key_id(argv[0]);
	} else {
		errx_msg("unknown command \"%.40s %.40s\"", noun, verb);
		usage();
	}

	if (cfgpath == NULL)
		cfgpath = cg_config_default_path();
	if (cg_config_load(&cfg, cfgpath, CG_PROG_MIGRATE, err, sizeof err) < 0) {
		errx_msg("%s", err);
		goto out;
	}
	db = connect_db(&cfg);
	if (db == NULL)
		goto out;

	if (strcmp(noun, "tenant") == 0 && strcmp(verb, "create") == 0)
		status = tenant_create(db, argv[0], argc == 2 ? argv[1] : argv[0]);
	else if (strcmp(noun, "tenant") == 0)
		status = tenant_list(db);
	else if (strcmp(verb, "issue") == 0)
		status = key_issue(db, argv[0], cg_role_name(role), argv[2], at[0] ? at : NULL, in[0] ? in : NULL);
	else if (strcmp(verb, "list") == 0)
		status = key_list(db, argv[0]);
	else
		status = key_revoke(db, argv[0]);
out:
	cg_db_close(db);
	cg_config_free(&cfg);
	return status;
}

/* test_push_creds: per-tenant push credentials (push-daemon/creds.c) with the global fallback. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "creds.h"
#include "tap.h"

static char dir[] = "/tmp/test_push_creds.XXXXXX";
static char creds_dir[256];

/* Writes a new P-256 key as PKCS#8 PEM (an APNs .p8) to path. */
static int write_p8(const char *path)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	FILE *f = fopen(path, "w");
	int rc = -1;

	if (k != NULL && f != NULL && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1)
		rc = 0;
	if (f != NULL)
		fclose(f);
	EVP_PKEY_free(k);
	return rc;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
}

/* A global configuration with APNs (apns_url for tests) and VAPID. */
static int global_cfg(cg_config *cfg, int with_apns, int with_vapid, const char *credsdir)
{
	char path[512], text[2048], priv[CG_WEBPUSH_KEY_B64_MAX], pub[CG_WEBPUSH_KEY_B64_MAX], err[256];
	int n = 0;

	if (cg_vapid_generate(priv, pub) < 0)
		return -1;
	n += snprintf(text + n, sizeof text - (size_t)n, "database_url = postgresql:///x\n");
	if (with_apns)
		n += snprintf(text + n, sizeof text - (size_t)n,
			      "apns_team_id = GLOBAL1234\napns_key_id = GKEY123456\n"
			      "apns_key_path = %s/global.p8\napns_bundle_id = com.example.global\n"
			      "apns_url = https://127.0.0.1:9/\n", dir);
	if (with_vapid)
		n += snprintf(text + n, sizeof text - (size_t)n,
			      "vapid_private_key = %s\nvapid_subject = mailto:global@example.com\n", priv);
	if (credsdir != NULL)
		snprintf(text + n, sizeof text - (size_t)n, "push_credentials_dir = %s\n", credsdir);
	snprintf(path, sizeof path, "%s/global.conf", dir);
	write_text(path, text);
	return cg_config_load(cfg, path, CG_PROG_PUSHD, err, sizeof err);
}

static void test_fallback(void)
{
	char path[512], text[1024], priv[CG_WEBPUSH_KEY_B64_MAX], pub[CG_WEBPUSH_KEY_B64_MAX];
	char err[512] = "";
	cg_config cfg;
	pushd_creds *c;
	pushd_apns_creds *a, *g;

	snprintf(path, sizeof path, "%s/acme.p8", dir);
	ok(write_p8(path) == 0, "acme's .p8 written");
	snprintf(path, sizeof path, "%s/acme.conf", creds_dir);
	snprintf(text, sizeof text,
		 "apns_team_id = ACME123456\napns_key_id = AKEY123456\napns_key_path = %s/acme.p8\n"
		 "apns_bundle_id = com.acme.app\napns_use_sandbox = true\n", dir);
	write_text(path, text);
	ok(cg_vapid_generate(priv, pub) == 0, "a VAPID pair for globex");
	snprintf(path, sizeof path, "%s/globex.conf", creds_dir);
	snprintf(text, sizeof text, "vapid_private_key = %s\nvapid_subject = https://globex.example\n", priv);
	write_text(path, text);
	snprintf(path, sizeof path, "%s/not a tenant.conf", creds_dir);
	write_text(path, "apns_team_id = X\n");
	snprintf(path, sizeof path, "%s/README", creds_dir);
	write_text(path, "not a credentials file\n");

	is_int(global_cfg(&cfg, 1, 1, creds_dir), 0, "global configuration loads");
	c = pushd_creds_load(&cfg, err, sizeof err);
	ok(c != NULL, "credentials load: %s", err);
	if (c == NULL) {
		cg_config_free(&cfg);
		return;
	}
	g = pushd_creds_apns(c, "default");
	ok(g != NULL && strcmp(g->team_id, "GLOBAL1234") == 0 && strcmp(g->owner, "") == 0,
	   "a tenant without a file uses the global APNs key");
	ok(g != NULL && strcmp(g->base, "https://127.0.0.1:9") == 0, "apns_url is used without its slash");
	a = pushd_creds_apns(c, "acme");
	ok(a != NULL && strcmp(a->team_id, "ACME123456") == 0 && strcmp(a->bundle_id, "com.acme.app") == 0 &&
	   a->sandbox && strcmp(a->owner, "acme") == 0, "acme pushes with its own APNs key, sandbox");
	ok(a != NULL && strcmp(a->base, "https://127.0.0.1:9") == 0,
	   "the global apns_url (tests) applies to a tenant's key too");
	ok(pushd_creds_vapid(c, "acme") == pushd_creds_vapid(c, "default"),
	   "acme has no VAPID file: the global VAPID key");
	ok(pushd_creds_vapid(c, "globex") != NULL && pushd_creds_vapid(c, "globex") != pushd_creds_vapid(c, "default"),
	   "globex has its own VAPID key");
	ok(strcmp(cg_vapid_public_key(pushd_creds_vapid(c, "globex")), pub) == 0,
	   "and it is the one in its file");
	ok(pushd_creds_apns(c, "globex") == g, "globex has no APNs file: the global APNs key");
	is_int((int)pushd_creds_apns_count(c), 2, "two APNs sets (global first)");
	ok(pushd_creds_apns_at(c, 0) == g && pushd_creds_apns_at(c, 1) == a && pushd_creds_apns_at(c, 2) == NULL,
	   "listed in order");
	ok(pushd_creds_any_apns(c) && pushd_creds_any_vapid(c), "both providers configured");
	pushd_creds_free(c);
	cg_config_free(&cfg);

	/* Without global credentials, only the tenants with files have any. */
	is_int(global_cfg(&cfg, 0, 0, creds_dir), 0, "global configuration without credentials");
	c = pushd_creds_load(&cfg, err, sizeof err);
	ok(c != NULL, "credentials load: %s", err);
	if (c != NULL) {
		ok(pushd_creds_apns(c, "default") == NULL && pushd_creds_vapid(c, "default") == NULL,
		   "a tenant without a file has no push credentials");
		ok(pushd_creds_apns(c, "acme") != NULL && pushd_creds_vapid(c, "acme") == NULL,
		   "acme: its APNs key, no VAPID");
		ok(pushd_creds_apns(c, "globex") == NULL && pushd_creds_vapid(c, "globex") != NULL,
		   "globex: its VAPID key, no APNs");
		ok(pushd_creds_any_apns(c) && pushd_creds_any_vapid(c), "still, both providers are in use");
		pushd_creds_free(c);
	}
	cg_config_free(&cfg);
}

static void test_bad_files(void)
{
	char path[512], bad_dir[300], err[512] = "";
	cg_config cfg;
	pushd_creds *c;

	snprintf(bad_dir, sizeof bad_dir, "%s/bad", dir);
	mkdir(bad_dir, 0700);
	snprintf(path, sizeof path, "%s/acme.conf", bad_dir);
	write_text(path, "apns_team_id = ACME123456\n");
	is_int(global_cfg(&cfg, 0, 0, bad_dir), 0, "configuration with a bad credentials dir");
	c = pushd_creds_load(&cfg, err, sizeof err);
	ok(c == NULL && strstr(err, "acme.conf") != NULL && strstr(err, "together") != NULL,
	   "half an APNs set is refused, naming the file: %s", err);
	pushd_creds_free(c);
	write_text(path, "database_url = postgresql:///elsewhere\n");
	c = pushd_creds_load(&cfg, err, sizeof err);
	ok(c == NULL && strstr(err, "cannot be set here") != NULL, "other keys are refused: %s", err);
	pushd_creds_free(c);
	write_text(path, "apns_team_id = ACME123456\napns_key_id = AKEY123456\n"
		   "apns_key_path = /nonexistent/key.p8\napns_bundle_id = com.acme.app\n");
	c = pushd_creds_load(&cfg, err, sizeof err);
	ok(c == NULL && strstr(err, "acme.conf") != NULL, "an unreadable key is refused: %s", err);
	pushd_creds_free(c);
	cg_config_free(&cfg);

	is_int(global_cfg(&cfg, 0, 0, "/nonexistent/dir"), 0, "configuration with a missing dir");
	c = pushd_creds_load(&cfg, err, sizeof err);
	ok(c == NULL && strstr(err, "push_credentials_dir") != NULL, "a missing dir is refused: %s", err);
	pushd_creds_free(c);
	cg_config_free(&cfg);
	unlink(path);
	rmdir(bad_dir);
}

int main(void)
{
	char path[512];

	if (mkdtemp(dir) == NULL) {
		puts("1..0 # SKIP cannot make a temporary directory");
		return 0;
	}
	snprintf(creds_dir, sizeof creds_dir, "%s/tenants", dir);
	mkdir(creds_dir, 0700);
	snprintf(path, sizeof path, "%s/global.p8", dir);
	ok(write_p8(path) == 0, "the global .p8 written");
	test_fallback();
	test_bad_files();
	snprintf(path, sizeof path, "rm -rf '%s'", dir);
	if (system(path) != 0)
		printf("# could not remove %s\n", dir);
	return done_testing();
}

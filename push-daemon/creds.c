/* creds: per-tenant APNs and VAPID credentials with the global ones as fallback. */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "cg_util.h"
#include "creds.h"

#define CREDS_HOST_PRODUCTION "https://api.push.apple.com"
#define CREDS_HOST_SANDBOX "https://api.sandbox.push.apple.com"
#define CREDS_SUFFIX ".conf"

/* One tenant's own credentials (either may be NULL: the global ones). */
typedef struct tenant_creds {
	char *tenant;
	pushd_apns_creds *apns;
	cg_vapid *vapid;
} tenant_creds;

struct pushd_creds {
	pushd_apns_creds *apns;   /* global, or NULL */
	cg_vapid *vapid;          /* global, or NULL */
	tenant_creds *t;          /* sorted by tenant */
	size_t n;
	pushd_apns_creds **all;   /* every APNs set, global first */
	size_t nall;
};

static void
apns_creds_free(pushd_apns_creds *a)
{
	if (a == NULL)
		return;
	free(a->owner);
	free(a->team_id);
	free(a->key_id);
	free(a->bundle_id);
	free(a->key_path);
	free(a->base);
	free(a->jwt);
	cg_es256_key_free(a->key);
	free(a);
}

/* The APNs set of `cfg` (APNs configured there), for `owner`. `url` is the
 * global apns_url override (tests), or NULL. */
static pushd_apns_creds *
apns_creds_new(const cg_config *cfg, const char *owner, const char *url, char *err, size_t errlen)
{
	pushd_apns_creds *a = calloc(1, sizeof *a);
	const char *base = url != NULL && url[0] != '\0' ? url :
			   cfg->apns_use_sandbox ? CREDS_HOST_SANDBOX : CREDS_HOST_PRODUCTION;
	size_t n;

	if (a == NULL)
		goto oom;
	a->owner = strdup(owner);
	a->team_id = strdup(cfg->apns_team_id);
	a->key_id = strdup(cfg->apns_key_id);
	a->bundle_id = strdup(cfg->apns_bundle_id);
	a->key_path = strdup(cfg->apns_key_path);
	a->base = strdup(base);
	a->sandbox = cfg->apns_use_sandbox;
	if (a->owner == NULL || a->team_id == NULL || a->key_id == NULL || a->bundle_id == NULL ||
	    a->key_path == NULL || a->base == NULL)
		goto oom;
	n = strlen(a->base);
	while (n > 0 && a->base[n - 1] == '/')
		a->base[--n] = '\0';
	a->key = cg_es256_key_load(cfg->apns_key_path, err, errlen);
	if (a->key == NULL) {
		apns_creds_free(a);
		return NULL;
	}
	return a;
oom:
	snprintf(err, errlen, "out of memory");
	apns_creds_free(a);
	return NULL;
}

static int
tenant_cmp(const void *a, const void *b)
{
	return strcmp(((const tenant_creds *)a)->tenant, ((const tenant_creds *)b)->tenant);
}

/* Adds `a` to the list of every APNs set. */
static int
all_add(pushd_creds *c, pushd_apns_creds *a)
{
	pushd_apns_creds **all = realloc(c->all, (c->nall + 1) * sizeof *all);

	if (all == NULL)
		return -1;
	c->all = all;
	c->all[c->nall++] = a;
	return 0;
}

/* Reads dir/<name>; `name` ends in ".conf". Returns 0, or -1 with err. */
static int
load_tenant(pushd_creds *c, const cg_config *global, const char *dir, const char *name, char *err,
	    size_t errlen)
{
	char path[4096], tenant[256], why[512];
	size_t len = strlen(name) - strlen(CREDS_SUFFIX);
	tenant_creds *t, *grown;
	cg_config tc;
	int rc = -1;

	if (len == 0 || len >= sizeof tenant) {
		cg_log_warn("push credentials: %s/%s ignored (not <tenant>.conf)", dir, name);
		return 0;
	}
	memcpy(tenant, name, len);
	tenant[len] = '\0';
	if (!cg_id_valid(tenant)) {
		cg_log_warn("push credentials: %s/%s ignored (not a tenant id)", dir, name);
		return 0;
	}
	if (c->n >= PUSHD_CREDS_MAX_TENANTS) {
		snprintf(err, errlen, "push_credentials_dir: more than %d tenants", PUSHD_CREDS_MAX_TENANTS);
		return -1;
	}
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (cg_config_load_push_credentials(&tc, path, why, sizeof why) < 0) {
		/* File errors name file:line already; the checks afterwards do not. */
		if (strstr(why, path) == NULL)
			snprintf(err, errlen, "%s: %s", path, why);
		else
			snprintf(err, errlen, "%s", why);
		goto out;
	}
	grown = realloc(c->t, (c->n + 1) * sizeof *c->t);
	if (grown == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	c->t = grown;
	t = &c->t[c->n];
	memset(t, 0, sizeof *t);
	t->tenant = strdup(tenant);
	if (t->tenant == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	c->n++;
	if (cg_config_apns_configured(&tc)) {
		t->apns = apns_creds_new(&tc, tenant,
					 tc.apns_url != NULL && tc.apns_url[0] != '\0' ? tc.apns_url :
					 global->apns_url, why, sizeof why);
		if (t->apns == NULL || all_add(c, t->apns) < 0) {
			snprintf(err, errlen, "%s: %s", path, t->apns == NULL ? why : "out of memory");
			goto out;
		}
	}
	if (cg_config_webpush_configured(&tc)) {
		t->vapid = cg_vapid_load(tc.vapid_private_key, tc.vapid_subject, why, sizeof why);
		if (t->vapid == NULL) {
			snprintf(err, errlen, "%s: vapid_private_key: %s", path, why);
			goto out;
		}
	}
	cg_log_info("push credentials of tenant %s: APNs %s, VAPID %s", tenant,
		    t->apns != NULL ? "own" : "global", t->vapid != NULL ? "own" : "global");
	rc = 0;
out:
	cg_config_free(&tc);
	return rc;
}

static int
load_dir(pushd_creds *c, const cg_config *cfg, char *err, size_t errlen)
{
	const char *dir = cfg->push_credentials_dir;
	struct dirent **names = NULL;
	int n, i, rc = 0;

	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		snprintf(err, errlen, "push_credentials_dir: cannot read %s", dir);
		return -1;
	}
	for (i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		size_t len = strlen(name);

		if (rc == 0 && name[0] != '.' && len > strlen(CREDS_SUFFIX) &&
		    strcmp(name + len - strlen(CREDS_SUFFIX), CREDS_SUFFIX) == 0)
			rc = load_tenant(c, cfg, dir, name, err, errlen);
		free(names[i]);
	}
	free(names);
	if (rc == 0 && c->n > 1)
		qsort(c->t, c->n, sizeof *c->t, tenant_cmp);
	return rc;
}

pushd_creds *
pushd_creds_load(const cg_config *cfg, char *err, size_t errlen)
{
	pushd_creds *c = calloc(1, sizeof *c);
	char why[512];

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (cg_config_apns_configured(cfg)) {
		c->apns = apns_creds_new(cfg, "", cfg->apns_url, why, sizeof why);
		if (c->apns == NULL || all_add(c, c->apns) < 0) {
			snprintf(err, errlen, "apns_key_path: %s", c->apns == NULL ? why : "out of memory");
			goto fail;
		}
	}
	if (cg_config_webpush_configured(cfg)) {
		c->vapid = cg_vapid_load(cfg->vapid_private_key, cfg->vapid_subject, why, sizeof why);
		if (c->vapid == NULL) {
			snprintf(err, errlen, "vapid_private_key: %s", why);
			goto fail;
		}
	}
	if (cfg->push_credentials_dir != NULL && cfg->push_credentials_dir[0] != '\0' &&
	    load_dir(c, cfg, err, errlen) < 0)
		goto fail;
	return c;
fail:
	pushd_creds_free(c);
	return NULL;
}

static tenant_creds *
find_tenant(pushd_creds *c, const char *tenant)
{
	tenant_creds key;

	if (c->n == 0 || tenant == NULL)
		return NULL;
	key.tenant = (char *)(uintptr_t)tenant;
	return bsearch(&key, c->t, c->n, sizeof *c->t, tenant_cmp);
}

pushd_apns_creds *
pushd_creds_apns(pushd_creds *c, const char *tenant)
{
	tenant_creds *t = find_tenant(c, tenant);

	return t != NULL && t->apns != NULL ? t->apns : c->apns;
}

cg_vapid *
pushd_creds_vapid(pushd_creds *c, const char *tenant)
{
	tenant_creds *t = find_tenant(c, tenant);

	return t != NULL && t->vapid != NULL ? t->vapid : c->vapid;
}

int
pushd_creds_any_apns(const pushd_creds *c)
{
	return c->nall > 0;
}

int
pushd_creds_any_vapid(const pushd_creds *c)
{
	size_t i;

	if (c->vapid != NULL)
		return 1;
	for (i = 0; i < c->n; i++)
		if (c->t[i].vapid != NULL)
			return 1;
	return 0;
}

size_t
pushd_creds_apns_count(const pushd_creds *c)
{
	return c->nall;
}

pushd_apns_creds *
pushd_creds_apns_at(pushd_creds *c, size_t i)
{
	return i < c->nall ? c->all[i] : NULL;
}

void
pushd_creds_free(pushd_creds *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++) {
		free(c->t[i].tenant);
		apns_creds_free(c->t[i].apns);
		cg_vapid_free(c->t[i].vapid);
	}
	free(c->t);
	apns_creds_free(c->apns);
	cg_vapid_free(c->vapid);
	free(c->all);
	free(c);
}

/* creds: each tenant's push credentials: its own APNs and VAPID keys, or the global ones.
 *
 * A tenant may bring its own APNs key (team, key id, .p8, bundle id,
 * environment, and a base URL apns_url for a proxy; else the global one)
 * and its own VAPID key pair: a file <tenant>.conf in
 * push_credentials_dir (cg_config_load_push_credentials: only those keys,
 * nothing from the environment). For each provider separately, a tenant
 * without its own credentials falls back to the global configuration; a
 * tenant with neither gets no pushes of that provider. Files are read once,
 * at start (a change needs a restart); a bad file stops the daemon at start
 * with a message naming file and key, like the main configuration.
 *
 * Sharing: the sets are built before the threads start and never change.
 * The provider-token fields of pushd_apns_creds and each cg_vapid's JWT
 * cache belong to the sender thread; the worker reads only the immutable
 * fields (bundle_id, sandbox). */
#ifndef PUSHD_CREDS_H
#define PUSHD_CREDS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cg_config.h"
#include "cg_jwt.h"
#include "cg_webpush.h"

#define PUSHD_CREDS_MAX_TENANTS 10000

typedef struct pushd_apns_creds {
	char *owner;            /* the tenant, or "" for the global credentials */
	char *team_id, *key_id, *bundle_id, *key_path;
	int sandbox;            /* apns_use_sandbox: devices of that environment */
	char *base;             /* "https://host[:port]": the global apns_url when set
	                         * (tests), else Apple's host for the environment */
	cg_es256_key *key;
	/* The sender's: the current provider token. */
	char *jwt;
	time_t jwt_iat;
	int64_t jwt_minted_ms;
} pushd_apns_creds;

typedef struct pushd_creds pushd_creds;

/* Reads the global credentials from cfg and every <tenant>.conf in
 * cfg->push_credentials_dir (when set; files whose name is not a valid
 * tenant id followed by ".conf" are ignored, with a log line). Keys are
 * loaded and checked now. Returns NULL with the reason in err. */
pushd_creds *pushd_creds_load(const cg_config *cfg, char *err, size_t errlen);

/* The APNs credentials `tenant` pushes with, or NULL when it has none. */
pushd_apns_creds *pushd_creds_apns(pushd_creds *c, const char *tenant);

/* The VAPID key `tenant` pushes with, or NULL when it has none. */
cg_vapid *pushd_creds_vapid(pushd_creds *c, const char *tenant);

/* Whether any tenant (or the global configuration) has APNs / VAPID
 * credentials: the sender is needed at all. */
int pushd_creds_any_apns(const pushd_creds *c);
int pushd_creds_any_vapid(const pushd_creds *c);

/* Every APNs credential set (for minting at start and refreshing): the
 * i-th of pushd_creds_apns_count(c), global first when there is one. */
size_t pushd_creds_apns_count(const pushd_creds *c);
pushd_apns_creds *pushd_creds_apns_at(pushd_creds *c, size_t i);

void pushd_creds_free(pushd_creds *c);

#endif

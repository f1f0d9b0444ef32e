/* cg_config: the configuration of every program, from one table of keys.
 *
 * Sources, later ones winning: built-in defaults, the config file
 * (`key = value`, `#` comments, keys in lower case), then environment
 * variables of the same name in upper case. Every key is declared once in
 * the table in cg_config.c (name, type, default, bounds, which programs
 * require it); every error message names the key. */
#ifndef CG_CONFIG_H
#define CG_CONFIG_H

#include <stddef.h>

/* Which program is loading: decides which keys are required. */
typedef enum {
	CG_PROG_CGI = 1 << 0,
	CG_PROG_WSD = 1 << 1,
	CG_PROG_PUSHD = 1 << 2,
	CG_PROG_MIGRATE = 1 << 3,
	CG_PROG_TEST = 1 << 4, /* nothing required */
} cg_prog;

typedef struct cg_config {
	/* connections */
	char *database_url;       /* DATABASE_URL (libpq URI) */
	char *redis_url;          /* REDIS_URL: redis://[:pw@]host:port/db or unix:///path */
	/* WebSocket tokens */
	char *ws_jwt_secret;      /* WS_JWT_SECRET (HS256), >= 16 bytes */
	long ws_token_ttl;        /* WS_TOKEN_TTL seconds, default 3600 */
	char *ws_jwt_issuer;      /* WS_JWT_ISSUER, default "capsule-gateway" */
	/* ws-daemon */
	char *host;               /* HOST, default 127.0.0.1 */
	long port;                /* PORT, default 8081 */
	long ws_ping_interval;    /* WS_PING_INTERVAL seconds, default 30 */
	long ws_pong_timeout;     /* WS_PONG_TIMEOUT seconds, default 60 */
	long ws_auth_timeout;     /* WS_AUTH_TIMEOUT seconds, default 10 */
	long ws_max_message;      /* WS_MAX_MESSAGE bytes, default 1 MiB */
	long ws_send_queue_max;   /* WS_SEND_QUEUE_MAX messages per connection, default 1024 */
	long ws_max_connections;  /* WS_MAX_CONNECTIONS per instance, default 10000 */
	long ws_max_connections_per_user; /* per tenant+user per instance, default 20 */
	long ws_connect_attempts_per_ip_per_minute; /* per client address, default 120 */
	int ws_reuse_port;         /* WS_REUSE_PORT: SO_REUSEPORT, several instances on one port, default false */
	long ws_history_retention; /* WS_HISTORY_RETENTION seconds a client may resume from, default 30 days */
	char *instance_id;        /* INSTANCE_ID, default "<hostname>-<pid>" when empty */
	/* APNs */
	char *apns_team_id;       /* APNS_TEAM_ID (10 chars) */
	char *apns_key_id;        /* APNS_KEY_ID (10 chars) */
	char *apns_key_path;      /* APNS_KEY_PATH: .p8 (PEM PKCS#8 P-256) */
	char *apns_bundle_id;     /* APNS_BUNDLE_ID */
	int apns_use_sandbox;     /* APNS_USE_SANDBOX (bool), default false */
	char *apns_url;           /* APNS_URL: overrides Apple's host (tests, proxies) */
	char *apns_ca_file;       /* APNS_CA_FILE: extra CA to trust */
	long apns_max_connections;/* APNS_MAX_CONNECTIONS, default 2 */
	long apns_timeout_ms;     /* APNS_TIMEOUT_MS per request, default 10000 */
	/* push (APNs and Web Push) */
	long push_expiration_low;      /* PUSH_EXPIRATION_LOW seconds a low push may wait (apns-expiration, Web Push TTL), default 3600 */
	long push_expiration_medium;   /* ... medium, default 86400 */
	long push_expiration_high;     /* ... high, default 86400 */
	long push_expiration_critical; /* ... critical, default 86400 */
	int push_to_start_critical;    /* PUSH_TO_START_CRITICAL: start a Live Activity on new critical activities, default false */
	long live_activity_stale_s;    /* LIVE_ACTIVITY_STALE_S: stale-date = now + this, default 3600 */
	long live_activity_dismissal_s; /* LIVE_ACTIVITY_DISMISSAL_S: dismissal-date = end + this, default 14400 */
	char *live_activity_attributes_type; /* LIVE_ACTIVITY_ATTRIBUTES_TYPE: Swift ActivityAttributes type of push-to-start, default "CapsuleActivityAttributes" */
	char *vapid_private_key;       /* VAPID_PRIVATE_KEY: base64url P-256 scalar or PEM path (capsule-admin vapid-keygen) */
	char *vapid_subject;           /* VAPID_SUBJECT: mailto: or https: URL, required with a VAPID key */
	long push_retry_recover_s;     /* PUSH_RETRY_RECOVER_S: a delayed retry overdue this long (its Redis entry lost) is taken from PostgreSQL, default 60 */
	long push_claim_idle_s;        /* PUSH_CLAIM_IDLE_S: another daemon's stream entry pending this long is taken over, default 600 */
	char *push_credentials_dir;    /* PUSH_CREDENTIALS_DIR: <tenant>.conf files with a tenant's own APNs/VAPID credentials */
	char *webpush_ca_file;         /* WEBPUSH_CA_FILE: CA bundle for push services (tests); default: the system's */
	long webpush_timeout_ms;       /* WEBPUSH_TIMEOUT_MS per request, default 10000 */
	/* REST */
	long max_body_bytes;      /* MAX_BODY_BYTES, default 1 MiB */
	long cache_ttl;           /* CACHE_TTL seconds for cached activities, default 300 */
	long max_title_chars;     /* MAX_TITLE_CHARS (UTF-8 characters), default 500 */
	long max_message_bytes;   /* MAX_MESSAGE_BYTES, default 65536 */
	long max_metadata_bytes;  /* MAX_METADATA_BYTES (compact JSON), default 65536 */
	long max_metadata_depth;  /* MAX_METADATA_DEPTH, default 16 */
	/* events */
	char *event_stream;       /* EVENT_STREAM Redis stream key, default "cg:events" */
	long event_stream_maxlen; /* EVENT_STREAM_MAXLEN (approximate), default 1000000 */
	char *push_group;         /* PUSH_GROUP consumer group, default "capsule-pushd" */
	char *default_tenant;     /* DEFAULT_TENANT, default "default" */
	/* logging */
	char *log_level;          /* LOG_LEVEL: debug|info|warn|error, default info */
	/* security (see doc/security.md) */
	char *admin_database_url; /* ADMIN_DATABASE_URL: the owner, for capsule-migrate and
	                           * capsule-admin; default: database_url */
	char *auth_jwt_hs256_secret; /* AUTH_JWT_HS256_SECRET (>= 32 bytes) for Bearer JWTs */
	char *auth_jwt_public_keys;  /* AUTH_JWT_PUBLIC_KEYS "kid=/path.pem,kid2=/path2.pem" */
	char *auth_jwt_issuer;    /* AUTH_JWT_ISSUER: required when a JWT key is set */
	char *auth_jwt_audience;  /* AUTH_JWT_AUDIENCE: required when a JWT key is set */
	long auth_jwt_leeway;     /* AUTH_JWT_LEEWAY seconds of clock skew, default 60 */
	char *cors_allowed_origins; /* CORS_ALLOWED_ORIGINS "https://a.example,https://b.example" */
	int rate_limit_enabled;   /* RATE_LIMIT_ENABLED, default true */
	long rate_limit_credential_per_minute; /* default 600 */
	long rate_limit_credential_burst;      /* default 120 */
	long rate_limit_ip_per_minute;         /* default 1200 */
	long rate_limit_ip_burst;              /* default 240 */
	char *rate_limit_tenant_overrides;     /* "tenant=per_minute/burst,..." per credential */
} cg_config;

/* Fills `cfg` with defaults, then the file at `path` (NULL: no file; a path
 * that does not exist is an error), then the environment, then checks bounds
 * and the keys `prog` requires. On failure writes a message naming the key
 * (and file:line) into `err` and returns -1; `cfg` must still be freed. */
int cg_config_load(cg_config *cfg, const char *path, cg_prog prog, char *err, size_t errlen);

/* The config path a program uses when none is given: $CAPSULE_CONFIG if set,
 * else SYSCONFDIR/capsule-gateway.conf if that file exists, else NULL. */
const char *cg_config_default_path(void);

/* A tenant's push credentials file (push_credentials_dir/<tenant>.conf): the
 * same syntax, but only apns_team_id, apns_key_id, apns_key_path,
 * apns_bundle_id, apns_use_sandbox, apns_url, vapid_private_key and vapid_subject may
 * be set (any other key is an error naming file:line), nothing comes from
 * the environment (every other field keeps its default; the push keys have
 * none, so an unset one is NULL / false).
 * The same checks as the main file apply (APNs keys all four or none, a
 * VAPID key needs its subject). Returns 0, or -1 with the reason; `cfg` must
 * be freed either way. */
int cg_config_load_push_credentials(cg_config *cfg, const char *path, char *err, size_t errlen);

/* Frees every string in `cfg` (the struct itself belongs to the caller). */
void cg_config_free(cg_config *cfg);

/* True (1) when the APNs key, key id, team id and bundle id are all set. */
int cg_config_apns_configured(const cg_config *cfg);

/* 1 when Web Push is configured (vapid_private_key and vapid_subject). */
int cg_config_webpush_configured(const cg_config *cfg);

#endif

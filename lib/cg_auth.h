/* cg_auth: who is calling. Bearer JWTs (HS256 secret, RS256/ES256 public keys
 * chosen by kid) and API keys (stored only as a hash), roles and their order.
 *
 * A verified caller is a cg_principal: subject, tenant, role and how it
 * authenticated. Verification never logs or returns the secret it checked;
 * failure reasons are short static strings safe to log ("expired",
 * "unknown kid", ...). */
#ifndef CG_AUTH_H
#define CG_AUTH_H

#include <stddef.h>
#include <time.h>

#include "cg_config.h"
#include "cg_db.h"

/* Roles in increasing power: each role may do what the ones below it may. */
typedef enum {
	CG_ROLE_NONE = 0,      /* unauthenticated (health, ready) */
	CG_ROLE_VIEWER = 1,    /* read */
	CG_ROLE_OPERATOR = 2,  /* + actions, updates */
	CG_ROLE_PUBLISHER = 3, /* + create activities and events, mint WS tokens for any user */
	CG_ROLE_ADMIN = 4,     /* + keys, devices, admin views */
} cg_role;

/* "viewer" ... "admin" (exact, lower case) -> role; -1 for any other name,
 * "none" included (*out untouched). cg_role_name gives "none" for
 * CG_ROLE_NONE and "invalid" for a value out of range. */
int cg_role_parse(const char *name, cg_role *out);
const char *cg_role_name(cg_role r);

typedef enum {
	CG_AUTH_JWT = 1,
	CG_AUTH_API_KEY = 2,
} cg_auth_kind;

typedef struct cg_principal {
	cg_auth_kind kind;
	char subject[256];   /* JWT sub, or "apikey:<key_id>" */
	char tenant[65];
	cg_role role;
	char key_id[65];     /* API keys: the public key id; JWTs: the kid, or ""
	                      * when there was none */
} cg_principal;

/* The JWT verifier: keys from configuration, loaded once.
 *   auth_jwt_hs256_secret   optional HS256 secret (>= 32 bytes)
 *   auth_jwt_public_keys    optional "kid=/path/key.pem,kid2=/path/other.pem";
 *                           an RSA key verifies RS256 only, a P-256 key ES256 only
 *   auth_jwt_issuer, auth_jwt_audience   required when any key is set
 *   auth_jwt_leeway         seconds of clock skew allowed on exp/nbf (default 60)
 * Claims: sub, tenant, role (names of cg_role), exp required; nbf, iat optional. */
typedef struct cg_jwt_verifier cg_jwt_verifier;

/* Builds the verifier from cfg (copies what it needs; cfg may be freed
 * afterwards). At most 16 public keys; a kid is 1..64 of [A-Za-z0-9_.-]; an
 * RSA key must have >= 2048 bits; key files are read once, here. Returns NULL
 * with a reason naming the config key in err when a key file is unreadable,
 * not a PEM public key or of the wrong type, a kid is bad or repeated, or
 * issuer/audience are missing. A verifier with no keys configured is valid
 * and rejects every token ("no JWT keys"). Immutable once built: one
 * verifier may be shared by threads. */
cg_jwt_verifier *cg_jwt_verifier_new(const cg_config *cfg, char *err, size_t errlen);
void cg_jwt_verifier_free(cg_jwt_verifier *v);

/* Verifies a compact JWS (at most 8 KiB, base64url segments without padding)
 * at `now`. Rules: header alg must be HS256, RS256 or
 * ES256 ("none" and everything else rejected); HS256 needs no kid or any kid
 * and uses the secret; RS256/ES256 need a kid naming a configured key whose
 * type matches the alg (so an HS256 token can never be checked against a
 * public key, nor RS256 against an EC key); iss and aud must match (aud may be
 * a string or an array containing it); exp must be in the future and nbf not
 * beyond now + leeway; sub (1..255 printable ASCII), tenant (a valid tenant
 * id, <= 64 chars) and role (a cg_role name) present. A header or claims
 * object with a repeated name, or a "crit" header, is malformed. The claims
 * are read only after the signature checked out.
 * Returns 0 and fills *p, or -1 with *p zeroed and a static reason in *why
 * (p and why may be NULL): "malformed", "no JWT keys", "alg not allowed",
 * "unknown kid", "bad signature", "expired", "not yet valid", "wrong issuer",
 * "wrong audience", "missing sub", "bad tenant", "bad role". */
int cg_jwt_verify_bearer(const cg_jwt_verifier *v, const char *token, time_t now,
			 cg_principal *p, const char **why);

/* API keys look like "cgk_<key_id>_<secret>": key_id is 16 lowercase hex
 * digits (public, the lookup key), secret 43 base64url characters (32 random
 * bytes, canonical unpadded encoding). Only SHA-256(secret) is stored: the
 * hash of the 43 secret characters as text, in lowercase hex. */
#define CG_API_KEY_ID_LEN 16
#define CG_API_KEY_MAX 128

/* Makes a new key: writes the full key (shown once) to key[CG_API_KEY_MAX],
 * its id to key_id[CG_API_KEY_ID_LEN + 1] and the lowercase hex SHA-256 of
 * the secret to hash_hex[65]. Returns 0 or -1 (RNG failure). */
int cg_api_key_generate(char *key, char *key_id, char *hash_hex);

/* Splits a presented key: writes key_id and the hex SHA-256 of its secret.
 * Returns 0, or -1 when it is not of the key's shape. */
int cg_api_key_parse(const char *key, char *key_id, char *hash_hex);

typedef enum {
	CG_APIKEY_OK = 0,
	CG_APIKEY_REFUSED,     /* malformed, unknown, wrong secret, revoked, expired */
	CG_APIKEY_UNAVAILABLE, /* PostgreSQL unreachable */
	CG_APIKEY_ERROR,       /* any other failure (also: called inside a transaction) */
} cg_apikey_result;

/* Verifies `key` (as presented) with capsule_api_key_lookup() in its own
 * autocommit statement, outside any transaction (the lookup stamps
 * last_used_at): shape, known key id, secret hash (compared first, in
 * constant time), not revoked, not expired, stored role and tenant usable.
 * On CG_APIKEY_OK fills *p (kind CG_AUTH_API_KEY, subject "apikey:<key_id>",
 * tenant, role, key_id); otherwise *p is zeroed. Logs the refusal reason
 * with the key id, never the secret. */
cg_apikey_result cg_api_key_authenticate(cg_db *db, const char *key, cg_principal *p);

/* Constant-time comparison of two NUL-terminated hex hashes. 1 when equal;
 * 0 when they differ, differ in length, or either is NULL or empty. */
int cg_hash_equal(const char *a, const char *b);

#endif

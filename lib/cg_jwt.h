/* cg_jwt: the tokens the gateway issues and signs.
 *
 * WebSocket tokens: HS256 JWTs (libjwt) with sub, tenant, role, device_token,
 * iss, iat, nbf, exp. Verification accepts only HS256 and checks iss, exp and
 * nbf itself (libjwt 1.10 has no validator).
 *
 * ES256 JWS (APNs provider tokens, later VAPID) are signed over OpenSSL here
 * rather than libjwt because libjwt 1.10 always adds a "typ" header, which
 * PUSH.md A2 recommends leaving out, and we need the exact header bytes. */
#ifndef CG_JWT_H
#define CG_JWT_H

#include <stddef.h>
#include <time.h>

#define CG_CLAIM_MAX 256

typedef struct cg_ws_claims {
	char sub[CG_CLAIM_MAX];          /* user id */
	char tenant[CG_CLAIM_MAX];       /* tenant id */
	char role[64];                   /* "user", "publisher", ... */
	char device_token[CG_CLAIM_MAX]; /* may be empty */
	long long iat, nbf, exp;
} cg_ws_claims;

/* Mints a token for `c` (iat = nbf = now, exp = now + ttl; c->iat/nbf/exp are
 * ignored). *out is malloc'ed. Returns 0, or -1 with a reason in err. */
int cg_ws_token_mint(const char *secret, const char *issuer, const cg_ws_claims *c,
		     long ttl, time_t now, char **out, char *err, size_t errlen);

/* Verifies `token` with `secret` at time `now` (60 s leeway on nbf only):
 * alg must be HS256, signature valid, iss equal to `issuer`, exp in the
 * future, sub and tenant present. Fills *out and returns 0, or returns -1
 * with a reason ("expired", "bad signature", ...) in err. */
int cg_ws_token_verify(const char *secret, const char *issuer, const char *token,
		       time_t now, cg_ws_claims *out, char *err, size_t errlen);

/* An ES256 private key (P-256). */
typedef struct cg_es256_key cg_es256_key;

/* Loads a PEM private key (PKCS#8 ".p8" or SEC1); must be on P-256.
 * Returns NULL with a reason in err. */
cg_es256_key *cg_es256_key_load(const char *path, char *err, size_t errlen);
cg_es256_key *cg_es256_key_from_pem(const char *pem, size_t len, char *err, size_t errlen);
void cg_es256_key_free(cg_es256_key *k);

/* Signs `header_json` and `claims_json` (used verbatim) as a compact JWS:
 * b64url(header) "." b64url(claims) "." b64url(R||S), the signature in the
 * raw 64-byte JWS form. *out is malloc'ed. Returns 0 or -1. */
int cg_es256_sign_jws(cg_es256_key *k, const char *header_json, const char *claims_json,
		      char **out);

/* The same signer over an OpenSSL EVP_PKEY the caller holds and has checked
 * to be a P-256 private key (VAPID keys built from raw scalars, in
 * cg_webpush.c). Declared with OpenSSL's struct tag so this header needs no
 * OpenSSL include. Returns 0 or -1. */
struct evp_pkey_st;
int cg_es256_sign_jws_pkey(struct evp_pkey_st *pkey, const char *header_json,
			   const char *claims_json, char **out);

/* Writes "<what>: <OpenSSL's last queued error>" into err (nothing when
 * err is NULL) and clears OpenSSL's error queue: how every OpenSSL caller
 * (here and cg_webpush.c) turns a failure into a reason. */
void cg_ossl_err(char *err, size_t errlen, const char *what);

/* The key's EVP_PKEY, borrowed: valid while k lives, not to be freed. */
struct evp_pkey_st *cg_es256_key_pkey(const cg_es256_key *k);

#endif

/* cg_jwt: HS256 WebSocket tokens over libjwt, ES256 compact JWS over OpenSSL 3. */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "cg_jwt.h"
#include "cg_util.h"

#define JWT_TOKEN_MAX 8192          /* longest WebSocket token we look at */
#define JWT_SECRET_MAX 4096
#define JWT_TTL_MAX (10L * 365 * 86400)
#define JWT_NBF_LEEWAY 60           /* seconds of clock skew allowed on nbf */
#define ES256_PEM_MAX 65536         /* a P-256 key file is a few hundred bytes */
#define ES256_PART_MAX 65536        /* header / claims JSON */
#define ES256_SIG_LEN 64            /* raw R||S */

struct cg_es256_key {
	EVP_PKEY *pkey;
};

/* ---- WebSocket tokens (HS256) ---- */

/* Reads an integer claim. Returns 0 (value in *v), 1 when absent, -1 when
 * present but not a JSON integer. libjwt 1.10's jwt_get_grant_int() does not
 * tell a string or a float from a number, so the claim's JSON is read. */
static int claim_int(jwt_t *jwt, const char *name, long long *v)
{
	char *js, *end = NULL;
	long long x;
	int rc = -1;

	js = jwt_get_grants_json(jwt, name);
	if (js == NULL)
		return 1;
	if ((js[0] == '-' && js[1] >= '0' && js[1] <= '9') || (js[0] >= '0' && js[0] <= '9')) {
		errno = 0;
		x = strtoll(js, &end, 10);
		if (errno == 0 && end != NULL && *end == '\0') {
			*v = x;
			rc = 0;
		}
	}
	free(js);
	return rc;
}

/* Copies a string claim. Returns 0, 1 when absent (dst = ""), -1 when too
 * long for dst or not a string. */
static int claim_str(jwt_t *jwt, const char *name, char *dst, size_t dstlen)
{
	const char *s;
	char *js;
	size_t n;

	dst[0] = '\0';
	s = jwt_get_grant(jwt, name);
	if (s == NULL) {
		js = jwt_get_grants_json(jwt, name);
		if (js == NULL)
			return 1;
		free(js);
		return -1;
	}
	n = strlen(s);
	if (n >= dstlen)
		return -1;
	memcpy(dst, s, n + 1);
	return 0;
}

static int secret_ok(const char *secret, char *err, size_t errlen)
{
	size_t n;

	if (secret == NULL || secret[0] == '\0') {
		snprintf(err, errlen, "empty secret");
		return 0;
	}
	n = strlen(secret);
	if (n > JWT_SECRET_MAX) {
		snprintf(err, errlen, "secret too long");
		return 0;
	}
	return 1;
}

int cg_ws_token_mint(const char *secret, const char *issuer, const cg_ws_claims *c,
		     long ttl, time_t now, char **out, char *err, size_t errlen)
{
	jwt_t *jwt = NULL;
	char *tok = NULL;
	int rc = -1;

	*out = NULL;
	if (!secret_ok(secret, err, errlen))
		goto out;
	if (issuer == NULL || issuer[0] == '\0') {
		snprintf(err, errlen, "empty issuer");
		goto out;
	}
	if (c->sub[0] == '\0' || strnlen(c->sub, sizeof c->sub) >= sizeof c->sub) {
		snprintf(err, errlen, "sub empty or too long");
		goto out;
	}
	if (c->tenant[0] == '\0' || strnlen(c->tenant, sizeof c->tenant) >= sizeof c->tenant) {
		snprintf(err, errlen, "tenant empty or too long");
		goto out;
	}
	if (strnlen(c->role, sizeof c->role) >= sizeof c->role ||
	    strnlen(c->device_token, sizeof c->device_token) >= sizeof c->device_token) {
		snprintf(err, errlen, "role or device_token too long");
		goto out;
	}
	if (ttl <= 0 || ttl > JWT_TTL_MAX || now < 0) {
		snprintf(err, errlen, "ttl out of range");
		goto out;
	}
	if (jwt_new(&jwt) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) != 0 ||
	    jwt_add_grant(jwt, "iss", issuer) != 0 ||
	    jwt_add_grant(jwt, "sub", c->sub) != 0 ||
	    jwt_add_grant(jwt, "tenant", c->tenant) != 0 ||
	    jwt_add_grant(jwt, "role", c->role) != 0 ||
	    (c->device_token[0] != '\0' && jwt_add_grant(jwt, "device_token", c->device_token) != 0) ||
	    jwt_add_grant_int(jwt, "iat", (long)now) != 0 ||
	    jwt_add_grant_int(jwt, "nbf", (long)now) != 0 ||
	    jwt_add_grant_int(jwt, "exp", (long)now + ttl) != 0) {
		snprintf(err, errlen, "cannot build token");
		goto out;
	}
	tok = jwt_encode_str(jwt);
	if (tok == NULL) {
		snprintf(err, errlen, "cannot sign token");
		goto out;
	}
	*out = tok;
	rc = 0;
out:
	if (jwt != NULL)
		jwt_free(jwt);
	return rc;
}

/* HS256 check in constant time, before libjwt sees the token: libjwt 1.10
 * compares signatures with strcmp(). Returns 1 when the signature matches. */
static int hs256_sig_ok(const char *secret, const char *token)
{
	const char *dot1, *dot2;
	unsigned char want[EVP_MAX_MD_SIZE], got[64];
	unsigned int wlen = 0;
	long glen;

	dot1 = strchr(token, '.');
	if (dot1 == NULL)
		return 0;
	dot2 = strchr(dot1 + 1, '.');
	if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		return 0;
	glen = cg_b64url_decode(dot2 + 1, strlen(dot2 + 1), got, sizeof got);
	if (glen != 32)
		return 0;
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)token,
		 (size_t)(dot2 - token), want, &wlen) == NULL || wlen != 32)
		return 0;
	return CRYPTO_memcmp(want, got, 32) == 0;
}

int cg_ws_token_verify(const char *secret, const char *issuer, const char *token,
		       time_t now, cg_ws_claims *out, char *err, size_t errlen)
{
	char iss[CG_CLAIM_MAX];
	jwt_t *jwt = NULL;
	long long exp = 0, nbf = 0, iat = 0;
	int rc = -1, r;

	memset(out, 0, sizeof *out);
	if (!secret_ok(secret, err, errlen))
		goto out;
	if (token == NULL || token[0] == '\0') {
		snprintf(err, errlen, "missing token");
		goto out;
	}
	if (strnlen(token, JWT_TOKEN_MAX + 1) > JWT_TOKEN_MAX) {
		snprintf(err, errlen, "token too long");
		goto out;
	}
	if (!hs256_sig_ok(secret, token)) {
		snprintf(err, errlen, "bad signature or malformed");
		goto out;
	}
	/* With a key given, libjwt also refuses alg "none" and checks the HMAC
	 * (for the alg the header names; that alg is checked below). */
	if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 ||
	    jwt == NULL) {
		jwt = NULL;
		snprintf(err, errlen, "bad signature or malformed");
		goto out;
	}
	if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
		snprintf(err, errlen, "algorithm not allowed");
		goto out;
	}
	if (claim_str(jwt, "iss", iss, sizeof iss) != 0 || issuer == NULL ||
	    strcmp(iss, issuer) != 0) {
		snprintf(err, errlen, "wrong issuer");
		goto out;
	}
	r = claim_int(jwt, "exp", &exp);
	if (r != 0) {
		snprintf(err, errlen, r > 0 ? "missing exp" : "bad exp");
		goto out;
	}
	if (exp <= (long long)now) {
		snprintf(err, errlen, "expired");
		goto out;
	}
	r = claim_int(jwt, "nbf", &nbf);
	if (r < 0) {
		snprintf(err, errlen, "bad nbf");
		goto out;
	}
	if (r == 0 && nbf > (long long)now + JWT_NBF_LEEWAY) {
		snprintf(err, errlen, "not yet valid");
		goto out;
	}
	r = claim_int(jwt, "iat", &iat);
	if (r < 0) {
		snprintf(err, errlen, "bad iat");
		goto out;
	}
	r = claim_str(jwt, "sub", out->sub, sizeof out->sub);
	if (r != 0 || out->sub[0] == '\0') {
		snprintf(err, errlen, r < 0 ? "bad sub" : "missing sub");
		goto out;
	}
	r = claim_str(jwt, "tenant", out->tenant, sizeof out->tenant);
	if (r != 0 || out->tenant[0] == '\0') {
		snprintf(err, errlen, r < 0 ? "bad tenant" : "missing tenant");
		goto out;
	}
	if (claim_str(jwt, "role", out->role, sizeof out->role) < 0) {
		snprintf(err, errlen, "bad role");
		goto out;
	}
	if (claim_str(jwt, "device_token", out->device_token, sizeof out->device_token) < 0) {
		snprintf(err, errlen, "bad device_token");
		goto out;
	}
	out->exp = exp;
	out->nbf = nbf;
	out->iat = iat;
	rc = 0;
out:
	if (rc != 0)
		memset(out, 0, sizeof *out);
	if (jwt != NULL)
		jwt_free(jwt);
	return rc;
}

/* ---- ES256 (OpenSSL) ---- */

/* Keys are never encrypted here: refuse instead of prompting on a tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

void cg_ossl_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[200];

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	else
		snprintf(buf, sizeof buf, "unknown error");
	cg_set_err(err, errlen, "%s: %s", what, buf);
	ERR_clear_error();
}

cg_es256_key *cg_es256_key_from_pem(const char *pem, size_t len, char *err, size_t errlen)
{
	cg_es256_key *k = NULL;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char group[64];
	size_t glen = 0;

	if (pem == NULL || len == 0 || len > ES256_PEM_MAX) {
		snprintf(err, errlen, "key: empty or larger than %d bytes", ES256_PEM_MAX);
		goto out;
	}
	ERR_clear_error();
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL) {
		cg_ossl_err(err, errlen, "key");
		goto out;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	if (pkey == NULL) {
		cg_ossl_err(err, errlen, "key: not a PEM private key");
		goto out;
	}
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) {
		snprintf(err, errlen, "key: not an EC key (ES256 needs P-256)");
		goto out;
	}
	if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1 ||
	    OBJ_sn2nid(group) != NID_X9_62_prime256v1) {
		snprintf(err, errlen, "key: curve %s is not P-256", glen > 0 ? group : "(unknown)");
		goto out;
	}
	k = calloc(1, sizeof *k);
	if (k == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	k->pkey = pkey;
	pkey = NULL;
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	ERR_clear_error();
	return k;
}

cg_es256_key *cg_es256_key_load(const char *path, char *err, size_t errlen)
{
	cg_es256_key *k = NULL;
	char *buf = NULL;
	size_t n = 0;
	FILE *f = NULL;

	f = fopen(path, "re");
	if (f == NULL) {
		snprintf(err, errlen, "key %s: %s", path, strerror(errno));
		goto out;
	}
	buf = malloc(ES256_PEM_MAX + 1);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	n = fread(buf, 1, ES256_PEM_MAX + 1, f);
	if (ferror(f)) {
		snprintf(err, errlen, "key %s: read error", path);
		goto out;
	}
	if (n > ES256_PEM_MAX) {
		snprintf(err, errlen, "key %s: larger than %d bytes", path, ES256_PEM_MAX);
		goto out;
	}
	k = cg_es256_key_from_pem(buf, n, err, errlen);
out:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, n);
		free(buf);
	}
	if (f != NULL)
		fclose(f);
	return k;
}

void cg_es256_key_free(cg_es256_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

/* 4*ceil(n/3) characters plus the NUL, as cg_b64url_encode wants. */
static size_t b64_room(size_t n)
{
	return 4 * ((n + 2) / 3) + 1;
}

struct evp_pkey_st *cg_es256_key_pkey(const cg_es256_key *k)
{
	return k != NULL ? k->pkey : NULL;
}

int cg_es256_sign_jws(cg_es256_key *k, const char *header_json, const char *claims_json,
		      char **out)
{
	*out = NULL;
	if (k == NULL)
		return -1;
	return cg_es256_sign_jws_pkey(k->pkey, header_json, claims_json, out);
}

int cg_es256_sign_jws_pkey(EVP_PKEY *pkey, const char *header_json, const char *claims_json,
			   char **out)
{
	unsigned char der[128], raw[ES256_SIG_LEN];
	const unsigned char *p;
	const BIGNUM *r = NULL, *s = NULL;
	ECDSA_SIG *sig = NULL;
	EVP_MD_CTX *md = NULL;
	size_t hlen, clen, cap, pos, derlen;
	char *buf = NULL;
	long n;
	int rc = -1;

	*out = NULL;
	if (pkey == NULL || header_json == NULL || claims_json == NULL)
		goto out;
	hlen = strlen(header_json);
	clen = strlen(claims_json);
	if (hlen > ES256_PART_MAX || clen > ES256_PART_MAX)
		goto out;
	cap = b64_room(hlen) + 1 + b64_room(clen) + 1 + b64_room(ES256_SIG_LEN);
	buf = malloc(cap);
	if (buf == NULL)
		goto out;
	n = cg_b64url_encode(header_json, hlen, buf, cap);
	if (n < 0)
		goto out;
	pos = (size_t)n;
	buf[pos++] = '.';
	n = cg_b64url_encode(claims_json, clen, buf + pos, cap - pos);
	if (n < 0)
		goto out;
	pos += (size_t)n;

	ERR_clear_error();
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1)
		goto out;
	derlen = 0;
	if (EVP_DigestSign(md, NULL, &derlen, (const unsigned char *)buf, pos) != 1 ||
	    derlen > sizeof der)
		goto out;
	derlen = sizeof der;
	if (EVP_DigestSign(md, der, &derlen, (const unsigned char *)buf, pos) != 1)
		goto out;
	/* OpenSSL gives DER SEQUENCE{r, s}; JWS wants R||S, 32 bytes each. */
	p = der;
	sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	if (sig == NULL)
		goto out;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
		goto out;
	buf[pos++] = '.';
	n = cg_b64url_encode(raw, sizeof raw, buf + pos, cap - pos);
	if (n < 0)
		goto out;
	*out = buf;
	buf = NULL;
	rc = 0;
out:
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(md);
	free(buf);
	ERR_clear_error();
	return rc;
}

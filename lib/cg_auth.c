/* cg_auth: Bearer JWT verification (HS256/RS256/ES256 over OpenSSL 3), API keys and roles. */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "cg_auth.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"

#define AUTH_TOKEN_MAX 8192      /* longest Bearer token we look at */
#define AUTH_MAX_KEYS 16         /* public keys in auth_jwt_public_keys */
#define AUTH_KID_MAX 64
#define AUTH_PEM_MAX 65536       /* a public key PEM is a few hundred bytes */
#define AUTH_RSA_MIN_BITS 2048
#define AUTH_SIG_MAX 1024        /* decoded signature: RSA-8192 is 1024 bytes */
#define AUTH_HEADER_DEPTH 4
#define AUTH_CLAIMS_DEPTH 8
#define AUTH_SUB_MAX 255
#define AUTH_TENANT_MAX 64
#define HS256_LEN 32
#define ES256_SIG_LEN 64         /* raw R||S, 32 bytes each */
#define API_KEY_PREFIX "cgk_"
#define API_KEY_PREFIX_LEN 4
#define API_KEY_SECRET_BYTES 32
#define API_KEY_SECRET_LEN 43    /* base64url of 32 bytes, unpadded */
#define API_KEY_LEN (API_KEY_PREFIX_LEN + CG_API_KEY_ID_LEN + 1 + API_KEY_SECRET_LEN)

typedef enum {
	ALG_HS256 = 1,
	ALG_RS256 = 2,
	ALG_ES256 = 3,
} jwt_alg;

struct auth_key {
	char kid[AUTH_KID_MAX + 1];
	jwt_alg alg;             /* the only alg this key verifies */
	EVP_PKEY *pkey;
};

struct cg_jwt_verifier {
	unsigned char *hs_secret; /* NULL when HS256 is not configured */
	size_t hs_len;
	struct auth_key keys[AUTH_MAX_KEYS];
	int nkeys;
	char *issuer;
	char *audience;
	long leeway;
};

/* ---- roles ---- */

static const char *const role_names[] = {
	[CG_ROLE_NONE] = "none",
	[CG_ROLE_VIEWER] = "viewer",
	[CG_ROLE_OPERATOR] = "operator",
	[CG_ROLE_PUBLISHER] = "publisher",
	[CG_ROLE_ADMIN] = "admin",
};

int cg_role_parse(const char *name, cg_role *out)
{
	int r;

	if (name == NULL)
		return -1;
	for (r = CG_ROLE_VIEWER; r <= CG_ROLE_ADMIN; r++) {
		if (strcmp(name, role_names[r]) == 0) {
			if (out)
				*out = (cg_role)r;
			return 0;
		}
	}
	return -1;
}

const char *cg_role_name(cg_role r)
{
	if ((int)r < CG_ROLE_NONE || (int)r > CG_ROLE_ADMIN)
		return "invalid";
	return role_names[r];
}

/* ---- small helpers ---- */

static int is_set(const char *s)
{
	return s != NULL && *s != '\0';
}

static int kid_valid(const char *s, size_t len)
{
	size_t i;

	if (len < 1 || len > AUTH_KID_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

static int sha256_hex(const void *data, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return -1;
	for (i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0xf];
	}
	out[64] = '\0';
	return 0;
}

/* Reads a key file (capped) and returns its public key, or NULL with a reason. */
static EVP_PKEY *load_public_key(const char *path, char *err, size_t errlen)
{
	FILE *f = NULL;
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	char *buf = NULL;
	size_t n;

	buf = malloc(AUTH_PEM_MAX + 1);
	if (buf == NULL) {
		cg_set_err(err, errlen, "out of memory");
		goto out;
	}
	f = fopen(path, "rb");
	if (f == NULL) {
		cg_set_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	n = fread(buf, 1, AUTH_PEM_MAX + 1, f);
	if (ferror(f)) {
		cg_set_err(err, errlen, "cannot read %s", path);
		goto out;
	}
	if (n > AUTH_PEM_MAX) {
		cg_set_err(err, errlen, "%s is larger than %d bytes", path, AUTH_PEM_MAX);
		goto out;
	}
	bio = BIO_new_mem_buf(buf, (int)n);
	if (bio == NULL) {
		cg_set_err(err, errlen, "out of memory");
		goto out;
	}
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	if (pkey == NULL)
		cg_set_err(err, errlen, "%s holds no PEM public key (\"BEGIN PUBLIC KEY\")", path);
out:
	BIO_free(bio);
	if (f)
		fclose(f);
	free(buf);
	return pkey;
}

/* The only algorithm a key may verify: RSA (>= 2048 bits) -> RS256, EC
 * P-256 -> ES256. Returns 0 or -1 with a reason. */
static int key_alg(EVP_PKEY *pkey, const char *path, jwt_alg *alg, char *err, size_t errlen)
{
	char group[64];
	size_t glen = 0;

	if (EVP_PKEY_is_a(pkey, "RSA")) {
		if (EVP_PKEY_get_bits(pkey) < AUTH_RSA_MIN_BITS) {
			cg_set_err(err, errlen, "%s: RSA key shorter than %d bits", path, AUTH_RSA_MIN_BITS);
			return -1;
		}
		*alg = ALG_RS256;
		return 0;
	}
	if (EVP_PKEY_is_a(pkey, "EC")) {
		if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1 ||
		    (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
			cg_set_err(err, errlen, "%s: EC key is not on curve P-256", path);
			return -1;
		}
		*alg = ALG_ES256;
		return 0;
	}
	cg_set_err(err, errlen, "%s: key type is neither RSA nor EC P-256", path);
	return -1;
}

/* Parses "kid=/path.pem,kid2=/path2.pem" (spaces around items allowed). */
static int load_public_keys(cg_jwt_verifier *v, const char *spec, char *err, size_t errlen)
{
	char reason[384];
	char *copy = strdup(spec), *item, *save = NULL, *eq, *path, *end;
	int rc = -1, i;

	if (copy == NULL) {
		cg_set_err(err, errlen, "auth_jwt_public_keys: out of memory");
		return -1;
	}
	for (item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		struct auth_key *k;

		while (*item == ' ' || *item == '\t')
			item++;
		end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*item == '\0')
			continue;
		eq = strchr(item, '=');
		if (eq == NULL) {
			cg_set_err(err, errlen, "auth_jwt_public_keys: \"%.64s\" is not kid=/path.pem", item);
			goto out;
		}
		*eq = '\0';
		path = eq + 1;
		if (!kid_valid(item, strlen(item))) {
			cg_set_err(err, errlen, "auth_jwt_public_keys: kid \"%.64s\" must be 1..%d of [A-Za-z0-9_.-]",
				   item, AUTH_KID_MAX);
			goto out;
		}
		if (*path == '\0') {
			cg_set_err(err, errlen, "auth_jwt_public_keys: kid %s has no key file", item);
			goto out;
		}
		for (i = 0; i < v->nkeys; i++) {
			if (strcmp(v->keys[i].kid, item) == 0) {
				cg_set_err(err, errlen, "auth_jwt_public_keys: kid %s appears twice", item);
				goto out;
			}
		}
		if (v->nkeys == AUTH_MAX_KEYS) {
			cg_set_err(err, errlen, "auth_jwt_public_keys: more than %d keys", AUTH_MAX_KEYS);
			goto out;
		}
		k = &v->keys[v->nkeys];
		k->pkey = load_public_key(path, reason, sizeof reason);
		if (k->pkey == NULL) {
			cg_set_err(err, errlen, "auth_jwt_public_keys: kid %s: %s", item, reason);
			goto out;
		}
		v->nkeys++; /* owned by v from here on */
		if (key_alg(k->pkey, path, &k->alg, reason, sizeof reason) < 0) {
			cg_set_err(err, errlen, "auth_jwt_public_keys: kid %s: %s", item, reason);
			goto out;
		}
		snprintf(k->kid, sizeof k->kid, "%s", item);
	}
	rc = 0;
out:
	free(copy);
	return rc;
}

cg_jwt_verifier *cg_jwt_verifier_new(const cg_config *cfg, char *err, size_t errlen)
{
	cg_jwt_verifier *v = NULL;
	size_t n;

	if (cfg == NULL) {
		cg_set_err(err, errlen, "no configuration");
		return NULL;
	}
	v = calloc(1, sizeof *v);
	if (v == NULL) {
		cg_set_err(err, errlen, "out of memory");
		return NULL;
	}
	v->leeway = cfg->auth_jwt_leeway;
	if (v->leeway < 0 || v->leeway > 86400) {
		cg_set_err(err, errlen, "auth_jwt_leeway: %ld out of range", v->leeway);
		goto fail;
	}
	if (is_set(cfg->auth_jwt_hs256_secret)) {
		n = strlen(cfg->auth_jwt_hs256_secret);
		if (n < 32) {
			cg_set_err(err, errlen, "auth_jwt_hs256_secret: must be at least 32 bytes long");
			goto fail;
		}
		v->hs_secret = malloc(n);
		if (v->hs_secret == NULL) {
			cg_set_err(err, errlen, "out of memory");
			goto fail;
		}
		memcpy(v->hs_secret, cfg->auth_jwt_hs256_secret, n);
		v->hs_len = n;
	}
	if (is_set(cfg->auth_jwt_public_keys) && load_public_keys(v, cfg->auth_jwt_public_keys, err, errlen) < 0)
		goto fail;
	if (v->hs_secret != NULL || v->nkeys > 0) {
		if (!is_set(cfg->auth_jwt_issuer)) {
			cg_set_err(err, errlen, "auth_jwt_issuer: missing (required when JWT keys are set)");
			goto fail;
		}
		if (!is_set(cfg->auth_jwt_audience)) {
			cg_set_err(err, errlen, "auth_jwt_audience: missing (required when JWT keys are set)");
			goto fail;
		}
		v->issuer = strdup(cfg->auth_jwt_issuer);
		v->audience = strdup(cfg->auth_jwt_audience);
		if (v->issuer == NULL || v->audience == NULL) {
			cg_set_err(err, errlen, "out of memory");
			goto fail;
		}
	}
	return v;
fail:
	cg_jwt_verifier_free(v);
	return NULL;
}

void cg_jwt_verifier_free(cg_jwt_verifier *v)
{
	int i;

	if (v == NULL)
		return;
	if (v->hs_secret != NULL) {
		OPENSSL_cleanse(v->hs_secret, v->hs_len);
		free(v->hs_secret);
	}
	for (i = 0; i < v->nkeys; i++)
		EVP_PKEY_free(v->keys[i].pkey);
	free(v->issuer);
	free(v->audience);
	free(v);
}

/* ---- compact JWS ---- */

/* Base64url segment without padding: only [A-Za-z0-9_-]. */
static int segment_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* Counts the names of the top-level object in already-validated JSON text,
 * so that duplicate names (json-c keeps the last one silently) can be
 * refused: a token whose header or claims mean two things is malformed. */
static size_t top_level_names(const char *s, size_t n)
{
	size_t i, names = 0;
	int depth = 0;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '"') {
			for (i++; i < n && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
		} else if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			depth--;
		} else if (c == ':' && depth == 1) {
			names++;
		}
	}
	return names;
}

/* Decodes one base64url segment holding a JSON object. */
static json_object *decode_json_segment(const char *seg, size_t n, int depth)
{
	char *buf = NULL;
	long len;
	json_object *obj = NULL;

	if (n == 0 || !segment_ok(seg, n))
		return NULL;
	buf = malloc(n + 1);
	if (buf == NULL)
		return NULL;
	len = cg_b64url_decode(seg, n, buf, n + 1);
	if (len <= 0)
		goto out;
	obj = cg_json_parse_object(buf, (size_t)len, depth, NULL, 0);
	if (obj != NULL && top_level_names(buf, (size_t)len) != (size_t)json_object_object_length(obj)) {
		json_object_put(obj);
		obj = NULL;
	}
out:
	free(buf);
	return obj;
}

static int verify_hs256(const cg_jwt_verifier *v, const char *input, size_t inlen,
			const unsigned char *sig, size_t siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	int ok;

	if (siglen != HS256_LEN)
		return -1;
	if (HMAC(EVP_sha256(), v->hs_secret, (int)v->hs_len, (const unsigned char *)input, inlen,
		 mac, &maclen) == NULL || maclen != HS256_LEN)
		return -1;
	ok = CRYPTO_memcmp(mac, sig, HS256_LEN) == 0;
	OPENSSL_cleanse(mac, sizeof mac);
	return ok ? 0 : -1;
}

/* EVP_DigestVerify with SHA-256 over `input`; `der` is the signature in the
 * key type's native encoding (PKCS#1 v1.5 block for RSA, DER for ECDSA). */
static int verify_pkey(EVP_PKEY *pkey, int rsa, const char *input, size_t inlen,
		       const unsigned char *der, size_t derlen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	int rc = -1;

	if (ctx == NULL)
		goto out;
	if (EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, pkey) != 1)
		goto out;
	if (rsa && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0)
		goto out;
	if (EVP_DigestVerify(ctx, der, derlen, (const unsigned char *)input, inlen) == 1)
		rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

static int verify_rs256(EVP_PKEY *pkey, const char *input, size_t inlen,
			const unsigned char *sig, size_t siglen)
{
	if (EVP_PKEY_get_size(pkey) <= 0 || siglen != (size_t)EVP_PKEY_get_size(pkey))
		return -1;
	return verify_pkey(pkey, 1, input, inlen, sig, siglen);
}

/* JWS ES256 signatures are raw R||S (RFC 7518 3.4); OpenSSL wants DER. A
 * DER signature presented in the token is not 64 bytes and is refused. */
static int verify_es256(EVP_PKEY *pkey, const char *input, size_t inlen,
			const unsigned char *sig, size_t siglen)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *der = NULL;
	int derlen, rc = -1;

	if (siglen != ES256_SIG_LEN)
		return -1;
	es = ECDSA_SIG_new();
	r = BN_bin2bn(sig, ES256_SIG_LEN / 2, NULL);
	s = BN_bin2bn(sig + ES256_SIG_LEN / 2, ES256_SIG_LEN / 2, NULL);
	if (es == NULL || r == NULL || s == NULL || BN_is_zero(r) || BN_is_zero(s))
		goto out;
	if (ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = NULL; /* owned by es */
	s = NULL;
	derlen = i2d_ECDSA_SIG(es, &der);
	if (derlen <= 0)
		goto out;
	rc = verify_pkey(pkey, 0, input, inlen, der, (size_t)derlen);
out:
	OPENSSL_free(der);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return rc;
}

/* sub: 1..255 bytes of printable ASCII (0x20..0x7e). */
static int sub_valid(const char *s)
{
	size_t i;

	if (s == NULL || *s == '\0')
		return 0;
	for (i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i >= AUTH_SUB_MAX || c < 0x20 || c > 0x7e)
			return 0;
	}
	return 1;
}

static int aud_matches(json_object *claims, const char *want)
{
	json_object *aud = NULL, *e;
	size_t i, n;
	const char *s;

	if (cg_json_get_string(claims, "aud", 0, &s) == CG_JSON_OK)
		return strcmp(s, want) == 0;
	if (!json_object_object_get_ex(claims, "aud", &aud) || !json_object_is_type(aud, json_type_array))
		return 0;
	n = json_object_array_length(aud);
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(aud, i);
		if (e != NULL && json_object_is_type(e, json_type_string) &&
		    (size_t)json_object_get_string_len(e) == strlen(want) &&
		    strcmp(json_object_get_string(e), want) == 0)
			return 1;
	}
	return 0;
}

/* Checks the claims of a token whose signature is good. */
static const char *check_claims(const cg_jwt_verifier *v, json_object *claims, time_t now, cg_principal *p)
{
	long long exp, nbf, iat;
	const char *s;
	cg_json_status st;
	cg_role role;

	if (cg_json_get_int64(claims, "exp", &exp) != CG_JSON_OK)
		return "malformed";
	if (exp <= (long long)now - v->leeway)
		return "expired";
	st = cg_json_get_int64(claims, "nbf", &nbf);
	if (st == CG_JSON_OK) {
		if (nbf > (long long)now + v->leeway)
			return "not yet valid";
	} else if (st != CG_JSON_ABSENT) {
		return "malformed";
	}
	st = cg_json_get_int64(claims, "iat", &iat);
	if (st != CG_JSON_OK && st != CG_JSON_ABSENT)
		return "malformed";
	if (cg_json_get_string(claims, "iss", 0, &s) != CG_JSON_OK || strcmp(s, v->issuer) != 0)
		return "wrong issuer";
	if (!aud_matches(claims, v->audience))
		return "wrong audience";
	if (cg_json_get_string(claims, "sub", AUTH_SUB_MAX, &s) != CG_JSON_OK || !sub_valid(s))
		return "missing sub";
	snprintf(p->subject, sizeof p->subject, "%s", s);
	if (cg_json_get_string(claims, "tenant", AUTH_TENANT_MAX, &s) != CG_JSON_OK || !cg_id_valid(s) ||
	    strlen(s) > AUTH_TENANT_MAX)
		return "bad tenant";
	snprintf(p->tenant, sizeof p->tenant, "%s", s);
	if (cg_json_get_string(claims, "role", 0, &s) != CG_JSON_OK || cg_role_parse(s, &role) < 0)
		return "bad role";
	p->role = role;
	return NULL;
}

int cg_jwt_verify_bearer(const cg_jwt_verifier *v, const char *token, time_t now,
			 cg_principal *p, const char **why)
{
	const char *reason = "malformed", *dot1, *dot2, *alg, *kid = NULL;
	const char *hseg, *pseg, *sseg;
	size_t len, hlen, plen, slen;
	json_object *header = NULL, *claims = NULL;
	unsigned char sig[AUTH_SIG_MAX + 1];
	long siglen;
	const struct auth_key *key = NULL;
	cg_principal tmp;
	cg_json_status st;
	jwt_alg a;
	int i, rc = -1;

	memset(&tmp, 0, sizeof tmp);
	if (p != NULL)
		memset(p, 0, sizeof *p);
	if (v == NULL || (v->hs_secret == NULL && v->nkeys == 0)) {
		reason = "no JWT keys";
		goto out;
	}
	if (token == NULL)
		goto out;
	len = strnlen(token, AUTH_TOKEN_MAX + 1);
	if (len > AUTH_TOKEN_MAX)
		goto out;
	dot1 = memchr(token, '.', len);
	if (dot1 == NULL)
		goto out;
	dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
		goto out;
	hseg = token;
	hlen = (size_t)(dot1 - token);
	pseg = dot1 + 1;
	plen = (size_t)(dot2 - pseg);
	sseg = dot2 + 1;
	slen = len - (size_t)(sseg - token);

	header = decode_json_segment(hseg, hlen, AUTH_HEADER_DEPTH);
	if (header == NULL)
		goto out;
	if (cg_json_get_string(header, "alg", 32, &alg) != CG_JSON_OK)
		goto out;
	/* We understand no JWS extensions, so any "crit" must be refused. */
	if (json_object_object_get_ex(header, "crit", NULL))
		goto out;
	/* kid: absent, or a string; one that no configured kid could equal
	 * (too long, other characters) counts as absent. */
	st = cg_json_get_string(header, "kid", AUTH_KID_MAX, &kid);
	if (st != CG_JSON_OK && st != CG_JSON_ABSENT && st != CG_JSON_TOO_LONG)
		goto out;
	if (st != CG_JSON_OK || !kid_valid(kid, strlen(kid)))
		kid = NULL;

	if (strcmp(alg, "HS256") == 0) {
		a = ALG_HS256;
	} else if (strcmp(alg, "RS256") == 0) {
		a = ALG_RS256;
	} else if (strcmp(alg, "ES256") == 0) {
		a = ALG_ES256;
	} else {
		reason = "alg not allowed";
		goto out;
	}
	if (a == ALG_HS256) {
		if (v->hs_secret == NULL) {
			reason = "alg not allowed";
			goto out;
		}
	} else {
		if (kid == NULL) {
			reason = "unknown kid";
			goto out;
		}
		for (i = 0; i < v->nkeys; i++) {
			if (strcmp(v->keys[i].kid, kid) == 0) {
				key = &v->keys[i];
				break;
			}
		}
		if (key == NULL) {
			reason = "unknown kid";
			goto out;
		}
		/* The key decides the algorithm: never RS256 against an EC key,
		 * never anything against a key of another type. */
		if (key->alg != a) {
			reason = "alg not allowed";
			goto out;
		}
	}

	if (slen == 0 || slen > (AUTH_SIG_MAX * 4 + 2) / 3 || !segment_ok(sseg, slen)) {
		reason = "bad signature";
		goto out;
	}
	siglen = cg_b64url_decode(sseg, slen, sig, sizeof sig);
	if (siglen <= 0) {
		reason = "bad signature";
		goto out;
	}
	if (a == ALG_HS256)
		rc = verify_hs256(v, token, (size_t)(dot2 - token), sig, (size_t)siglen);
	else if (a == ALG_RS256)
		rc = verify_rs256(key->pkey, token, (size_t)(dot2 - token), sig, (size_t)siglen);
	else
		rc = verify_es256(key->pkey, token, (size_t)(dot2 - token), sig, (size_t)siglen);
	if (rc < 0) {
		reason = "bad signature";
		goto out;
	}
	rc = -1;

	/* Only a correctly signed token gets its claims read. */
	claims = decode_json_segment(pseg, plen, AUTH_CLAIMS_DEPTH);
	if (claims == NULL) {
		reason = "malformed";
		goto out;
	}
	reason = check_claims(v, claims, now, &tmp);
	if (reason != NULL)
		goto out;
	tmp.kind = CG_AUTH_JWT;
	if (kid != NULL && strlen(kid) < sizeof tmp.key_id)
		snprintf(tmp.key_id, sizeof tmp.key_id, "%s", kid);
	if (p != NULL)
		*p = tmp;
	rc = 0;
out:
	if (header)
		json_object_put(header);
	if (claims)
		json_object_put(claims);
	if (why != NULL)
		*why = rc == 0 ? NULL : reason;
	return rc;
}

/* ---- API keys ---- */

int cg_api_key_generate(char *key, char *key_id, char *hash_hex)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[8 + API_KEY_SECRET_BYTES];
	char id[CG_API_KEY_ID_LEN + 1], secret[API_KEY_SECRET_LEN + 2], hash[65];
	int i, rc = -1;

	if (key == NULL || key_id == NULL || hash_hex == NULL)
		return -1;
	if (cg_random_bytes(rnd, sizeof rnd) < 0)
		goto out;
	for (i = 0; i < 8; i++) {
		id[2 * i] = hex[rnd[i] >> 4];
		id[2 * i + 1] = hex[rnd[i] & 0xf];
	}
	id[CG_API_KEY_ID_LEN] = '\0';
	if (cg_b64url_encode(rnd + 8, API_KEY_SECRET_BYTES, secret, sizeof secret) != API_KEY_SECRET_LEN)
		goto out;
	if (sha256_hex(secret, API_KEY_SECRET_LEN, hash) < 0)
		goto out;
	snprintf(key, CG_API_KEY_MAX, API_KEY_PREFIX "%s_%s", id, secret);
	memcpy(key_id, id, sizeof id);
	memcpy(hash_hex, hash, sizeof hash);
	rc = 0;
out:
	OPENSSL_cleanse(rnd, sizeof rnd);
	OPENSSL_cleanse(secret, sizeof secret);
	return rc;
}

int cg_api_key_parse(const char *key, char *key_id, char *hash_hex)
{
	unsigned char raw[API_KEY_SECRET_BYTES + 1];
	const char *id, *secret;
	size_t len, i;
	int rc = -1;

	if (key == NULL || key_id == NULL || hash_hex == NULL)
		return -1;
	len = strnlen(key, CG_API_KEY_MAX + 1);
	if (len != API_KEY_LEN || memcmp(key, API_KEY_PREFIX, API_KEY_PREFIX_LEN) != 0)
		return -1;
	id = key + API_KEY_PREFIX_LEN;
	for (i = 0; i < CG_API_KEY_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return -1;
	if (id[CG_API_KEY_ID_LEN] != '_')
		return -1;
	secret = id + CG_API_KEY_ID_LEN + 1;
	/* Exactly the canonical encoding of 32 bytes: the alphabet only, no
	 * padding, and zero unused bits in the last character. */
	if (!segment_ok(secret, API_KEY_SECRET_LEN) ||
	    cg_b64url_decode(secret, API_KEY_SECRET_LEN, raw, sizeof raw) != API_KEY_SECRET_BYTES)
		goto out;
	if (sha256_hex(secret, API_KEY_SECRET_LEN, hash_hex) < 0)
		goto out;
	memcpy(key_id, id, CG_API_KEY_ID_LEN);
	key_id[CG_API_KEY_ID_LEN] = '\0';
	rc = 0;
out:
	OPENSSL_cleanse(raw, sizeof raw);
	return rc;
}

int cg_hash_equal(const char *a, const char *b)
{
	size_t la, lb;

	if (a == NULL || b == NULL)
		return 0;
	la = strlen(a);
	lb = strlen(b);
	/* The length of a hash is not secret; its bytes are. */
	if (la == 0 || la != lb)
		return 0;
	return CRYPTO_memcmp(a, b, la) == 0;
}

/* Column `col` of row 0 is the boolean true. */
static int is_true(const PGresult *res, int col)
{
	return !PQgetisnull(res, 0, col) && strcmp(PQgetvalue(res, 0, col), "t") == 0;
}

cg_apikey_result cg_api_key_authenticate(cg_db *db, const char *key, cg_principal *p)
{
	/* Runs outside any tenant: the SECURITY DEFINER function is the one
	 * narrow door to api_keys before the tenant is known (it also stamps
	 * last_used_at, so it runs in its own autocommit statement). */
	static const char sql[] =
		"SELECT tenant_id, role, secret_hash, expired, revoked"
		" FROM capsule_api_key_lookup($1)";
	char key_id[CG_API_KEY_ID_LEN + 1], hash[65];
	const char *params[1] = { key_id };
	PGresult *res = NULL;
	const char *tenant, *role_name;
	cg_role role;
	cg_apikey_result result = CG_APIKEY_REFUSED;
	int rc;

	memset(p, 0, sizeof *p);
	if (key == NULL || strnlen(key, CG_API_KEY_MAX + 1) > CG_API_KEY_MAX ||
	    cg_api_key_parse(key, key_id, hash) < 0) {
		cg_log_info("auth: refused API key: malformed");
		goto out;
	}
	if (cg_db_in_transaction(db)) {
		cg_log_error("auth: API key lookup inside an open transaction");
		result = CG_APIKEY_ERROR;
		goto out;
	}
	rc = cg_db_exec(db, &res, sql, 1, params);
	if (rc != CG_DB_OK) {
		cg_log_warn("auth: API key lookup failed (%s): %s", cg_db_strerror(rc), cg_db_errmsg(db));
		result = rc == CG_DB_ECONN ? CG_APIKEY_UNAVAILABLE : CG_APIKEY_ERROR;
		goto out;
	}
	if (PQntuples(res) != 1) {
		cg_log_info("auth: refused API key %s: unknown key id", key_id);
		goto out;
	}
	/* The secret first: without it, nothing about the key is told, not
	 * even in which way it is unusable. */
	if (PQgetisnull(res, 0, 2) || !cg_hash_equal(PQgetvalue(res, 0, 2), hash)) {
		cg_log_info("auth: refused API key %s: wrong secret", key_id);
		goto out;
	}
	if (is_true(res, 4)) {
		cg_log_info("auth: refused API key %s: revoked", key_id);
		goto out;
	}
	if (is_true(res, 3)) {
		cg_log_info("auth: refused API key %s: expired", key_id);
		goto out;
	}
	tenant = PQgetvalue(res, 0, 0);
	role_name = PQgetvalue(res, 0, 1);
	if (cg_role_parse(role_name, &role) < 0 || role == CG_ROLE_NONE ||
	    strlen(tenant) == 0 || strlen(tenant) >= sizeof p->tenant) {
		cg_log_error("auth: refused API key %s: stored role or tenant unusable", key_id);
		goto out;
	}
	p->kind = CG_AUTH_API_KEY;
	p->role = role;
	snprintf(p->tenant, sizeof p->tenant, "%s", tenant);
	snprintf(p->subject, sizeof p->subject, "apikey:%s", key_id);
	snprintf(p->key_id, sizeof p->key_id, "%s", key_id);
	result = CG_APIKEY_OK;
out:
	if (res != NULL)
		PQclear(res);
	OPENSSL_cleanse(hash, sizeof hash);
	return result;
}

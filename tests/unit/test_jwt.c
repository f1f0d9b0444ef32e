/* test_jwt: WebSocket token mint/verify (HS256 only) and ES256 JWS signing. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "cg_jwt.h"
#include "cg_util.h"
#include "tap.h"

#define SECRET "test-secret-0123456789abcdef0123456789"
#define ISSUER "capsule-gateway-test"
#define NOW 1700000000L

static cg_ws_claims sample_claims(void)
{
	cg_ws_claims c;

	memset(&c, 0, sizeof c);
	snprintf(c.sub, sizeof c.sub, "user_789");
	snprintf(c.tenant, sizeof c.tenant, "tenant_1");
	snprintf(c.role, sizeof c.role, "user");
	snprintf(c.device_token, sizeof c.device_token, "device_abc");
	return c;
}

/* Decodes one base64url part of a token into a NUL-terminated string. */
static char *decode_part(const char *tok, int idx)
{
	const char *p = tok, *e;
	char *out;
	long n;
	int i;

	for (i = 0; i < idx; i++) {
		p = strchr(p, '.');
		if (p == NULL)
			return NULL;
		p++;
	}
	e = strchr(p, '.');
	if (e == NULL)
		e = p + strlen(p);
	out = malloc((size_t)(e - p) + 4);
	if (out == NULL)
		return NULL;
	n = cg_b64url_decode(p, (size_t)(e - p), out, (size_t)(e - p) + 4);
	if (n < 0) {
		free(out);
		return NULL;
	}
	out[n] = '\0';
	return out;
}

static char *b64(const char *s)
{
	size_t n = strlen(s), cap = 4 * ((n + 2) / 3) + 1;
	char *out = malloc(cap);

	if (out != NULL && cg_b64url_encode(s, n, out, cap) < 0) {
		free(out);
		out = NULL;
	}
	return out;
}

/* Hand-built token: b64(header) "." b64(claims) "." sig (may be ""). */
static char *hand_token(const char *header, const char *claims, const char *sig)
{
	char *h = b64(header), *c = b64(claims), *t;
	size_t n = strlen(h) + strlen(c) + strlen(sig) + 3;

	t = malloc(n);
	snprintf(t, n, "%s.%s.%s", h, c, sig);
	free(h);
	free(c);
	return t;
}

/* A token with any header, signed with HMAC-SHA256 of SECRET (so only the
 * header's "alg" is wrong). */
static char *hs256_with_header(const char *header, const char *claims)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mlen = 0;
	char sig[64], *t, *t2;
	size_t n;

	t = hand_token(header, claims, "");
	n = strlen(t) - 1; /* without the trailing '.' */
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)t, n, mac, &mlen);
	cg_b64url_encode(mac, mlen, sig, sizeof sig);
	t2 = malloc(n + strlen(sig) + 2);
	snprintf(t2, n + strlen(sig) + 2, "%.*s.%s", (int)n, t, sig);
	free(t);
	return t2;
}

/* A token signed by libjwt with any alg/secret and arbitrary claims JSON. */
static char *libjwt_token(jwt_alg_t alg, const char *secret, const char *claims)
{
	jwt_t *j = NULL;
	char *t = NULL;

	if (jwt_new(&j) != 0)
		return NULL;
	if (jwt_set_alg(j, alg, (const unsigned char *)secret, (int)strlen(secret)) == 0 &&
	    jwt_add_grants_json(j, claims) == 0)
		t = jwt_encode_str(j);
	jwt_free(j);
	return t;
}

static void test_round_trip(void)
{
	cg_ws_claims c = sample_claims(), got;
	char err[128] = "", *tok = NULL, *payload;
	int rc;

	rc = cg_ws_token_mint(SECRET, ISSUER, &c, 3600, NOW, &tok, err, sizeof err);
	ok(rc == 0 && tok != NULL, "mint succeeds (%s)", err);
	if (tok == NULL)
		return;
	ok(strncmp(tok, "eyJ", 3) == 0 && strchr(tok, '.') != NULL, "mint gives a compact JWT");
	rc = cg_ws_token_verify(SECRET, ISSUER, tok, NOW + 10, &got, err, sizeof err);
	ok(rc == 0, "verify accepts a fresh token (%s)", err);
	is_str(got.sub, "user_789", "sub round-trips");
	is_str(got.tenant, "tenant_1", "tenant round-trips");
	is_str(got.role, "user", "role round-trips");
	is_str(got.device_token, "device_abc", "device_token round-trips");
	is_int(got.iat, NOW, "iat = now");
	is_int(got.nbf, NOW, "nbf = now");
	is_int(got.exp, NOW + 3600, "exp = now + ttl");

	payload = decode_part(tok, 1);
	ok(payload != NULL && strstr(payload, "\"exp\":1700003600") != NULL,
	   "exp is an integer claim in the payload");
	ok(payload != NULL && strstr(payload, "\"iss\":\"" ISSUER "\"") != NULL, "iss in payload");
	free(payload);

	/* Boundaries: exp is exclusive, nbf has 60 s of leeway. */
	rc = cg_ws_token_verify(SECRET, ISSUER, tok, NOW + 3599, &got, err, sizeof err);
	ok(rc == 0, "valid one second before exp");
	rc = cg_ws_token_verify(SECRET, ISSUER, tok, NOW + 3600, &got, err, sizeof err);
	ok(rc == -1 && strcmp(err, "expired") == 0, "expired at exp (%s)", err);
	ok(got.sub[0] == '\0', "claims cleared on failure");
	rc = cg_ws_token_verify(SECRET, ISSUER, tok, NOW + 100000, &got, err, sizeof err);
	ok(rc == -1 && strcmp(err, "expired") == 0, "expired long after (%s)", err);
	rc = cg_ws_token_verify(SECRET, ISSUER, tok, NOW - 60, &got, err, sizeof err);
	ok(rc == 0, "nbf leeway: 60 s early is accepted (%s)", err);
	rc = cg_ws_token_verify(SECRET, ISSUER, tok, NOW - 61, &got, err, sizeof err);
	ok(rc == -1 && strcmp(err, "not yet valid") == 0, "61 s early is not yet valid (%s)", err);

	rc = cg_ws_token_verify(SECRET "x", ISSUER, tok, NOW, &got, err, sizeof err);
	ok(rc == -1 && strstr(err, "bad signature") != NULL, "wrong secret rejected (%s)", err);
	rc = cg_ws_token_verify(SECRET, "someone-else", tok, NOW, &got, err, sizeof err);
	ok(rc == -1 && strcmp(err, "wrong issuer") == 0, "wrong issuer rejected (%s)", err);
	rc = cg_ws_token_verify("", ISSUER, tok, NOW, &got, err, sizeof err);
	ok(rc == -1, "empty secret rejected (%s)", err);

	/* Tamper: swap the payload for one naming another user, keep the sig. */
	{
		char *dot1 = strchr(tok, '.'), *dot2 = strchr(dot1 + 1, '.');
		char *forged = b64("{\"iss\":\"" ISSUER "\",\"sub\":\"admin\",\"tenant\":\"tenant_1\","
				   "\"role\":\"user\",\"iat\":1700000000,\"nbf\":1700000000,"
				   "\"exp\":1700003600}");
		size_t n = (size_t)(dot1 - tok) + strlen(forged) + strlen(dot2) + 2;
		char *t2 = malloc(n);

		snprintf(t2, n, "%.*s.%s%s", (int)(dot1 - tok), tok, forged, dot2);
		rc = cg_ws_token_verify(SECRET, ISSUER, t2, NOW, &got, err, sizeof err);
		ok(rc == -1 && strstr(err, "bad signature") != NULL, "tampered payload rejected (%s)", err);
		/* Flip one signature character. */
		snprintf(t2, n, "%s", tok);
		t2[strlen(t2) - 2] = t2[strlen(t2) - 2] == 'A' ? 'B' : 'A';
		rc = cg_ws_token_verify(SECRET, ISSUER, t2, NOW, &got, err, sizeof err);
		ok(rc == -1, "tampered signature rejected (%s)", err);
		free(t2);
		free(forged);
	}
	free(tok);
}

static void test_no_device_token(void)
{
	cg_ws_claims c = sample_claims(), got;
	char err[128] = "", *tok = NULL, *payload;

	c.device_token[0] = '\0';
	ok(cg_ws_token_mint(SECRET, ISSUER, &c, 60, NOW, &tok, err, sizeof err) == 0, "mint without device token");
	payload = tok ? decode_part(tok, 1) : NULL;
	ok(payload != NULL && strstr(payload, "device_token") == NULL, "device_token omitted when empty");
	ok(cg_ws_token_verify(SECRET, ISSUER, tok, NOW, &got, err, sizeof err) == 0 &&
	   got.device_token[0] == '\0', "verify gives empty device_token");
	free(payload);
	free(tok);
}

static void test_mint_rejects(void)
{
	static const struct {
		const char *name, *secret, *issuer, *sub, *tenant;
		long ttl;
	} cases[] = {
		{ "empty secret", "", ISSUER, "u", "t", 60 },
		{ "empty issuer", SECRET, "", "u", "t", 60 },
		{ "empty sub", SECRET, ISSUER, "", "t", 60 },
		{ "empty tenant", SECRET, ISSUER, "u", "", 60 },
		{ "zero ttl", SECRET, ISSUER, "u", "t", 0 },
		{ "negative ttl", SECRET, ISSUER, "u", "t", -5 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cg_ws_claims c = sample_claims();
		char err[128] = "", *tok = NULL;
		int rc;

		snprintf(c.sub, sizeof c.sub, "%s", cases[i].sub);
		snprintf(c.tenant, sizeof c.tenant, "%s", cases[i].tenant);
		rc = cg_ws_token_mint(cases[i].secret, cases[i].issuer, &c, cases[i].ttl, NOW, &tok,
				      err, sizeof err);
		ok(rc == -1 && tok == NULL && err[0] != '\0', "mint rejects %s (%s)", cases[i].name, err);
		free(tok);
	}
}

static void test_verify_table(void)
{
	char longsub[400];
	char claims_long[600];

	memset(longsub, 'a', 300);
	longsub[300] = '\0';
	snprintf(claims_long, sizeof claims_long,
		 "{\"iss\":\"%s\",\"sub\":\"%s\",\"tenant\":\"t\",\"exp\":1700003600}", ISSUER, longsub);

	const struct {
		const char *name;
		jwt_alg_t alg; /* JWT_ALG_INVAL: hand-built from header and sig below
				* (sig NULL: a valid HMAC-SHA256 under that header) */
		const char *header, *sig;
		const char *claims;
		const char *want; /* expected error substring; NULL = accepted */
	} cases[] = {
		{ "libjwt HS256 minimal", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", NULL },
		{ "HS512 with the right secret", JWT_ALG_HS512, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "HS384 with the right secret", JWT_ALG_HS384, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "alg none, empty signature", JWT_ALG_INVAL, "{\"alg\":\"none\"}", "",
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "alg none with typ", JWT_ALG_INVAL, "{\"alg\":\"none\",\"typ\":\"JWT\"}", "",
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "alg NONE upper case", JWT_ALG_INVAL, "{\"alg\":\"NONE\"}", "",
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "hand-made HS256 (checks the helper)", JWT_ALG_INVAL, "{\"alg\":\"HS256\"}", NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", NULL },
		{ "alg none with a valid HS256 MAC", JWT_ALG_INVAL, "{\"alg\":\"none\"}", NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "alg HS512 with a valid HS256 MAC", JWT_ALG_INVAL, "{\"alg\":\"HS512\"}", NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "alg RS256 with a valid HS256 MAC", JWT_ALG_INVAL, "{\"alg\":\"RS256\"}", NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "no alg with a valid HS256 MAC", JWT_ALG_INVAL, "{\"typ\":\"JWT\"}", NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "HS256 header, empty signature", JWT_ALG_INVAL, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "",
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "HS256 header, junk signature", JWT_ALG_INVAL, "{\"alg\":\"HS256\"}", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "bad signature" },
		{ "missing sub", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"tenant\":\"t\",\"exp\":1700003600}", "missing sub" },
		{ "empty sub", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"\",\"tenant\":\"t\",\"exp\":1700003600}", "missing sub" },
		{ "sub not a string", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":42,\"tenant\":\"t\",\"exp\":1700003600}", "bad sub" },
		{ "sub too long", JWT_ALG_HS256, NULL, NULL, claims_long, "bad sub" },
		{ "missing tenant", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"exp\":1700003600}", "missing tenant" },
		{ "missing iss", JWT_ALG_HS256, NULL, NULL,
		  "{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "wrong issuer" },
		{ "missing exp", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\"}", "missing exp" },
		{ "exp as string", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":\"1700003600\"}", "bad exp" },
		{ "exp as float", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600.5}", "bad exp" },
		{ "exp as bool", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":true}", "bad exp" },
		{ "nbf in the future", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600,\"nbf\":1700000100}", "not yet valid" },
		{ "iss of another issuer", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"evil\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600}", "wrong issuer" },
		{ "nbf as string", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600,\"nbf\":\"0\"}", "bad nbf" },
		{ "role too long", JWT_ALG_HS256, NULL, NULL,
		  "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1700003600,"
		  "\"role\":\"rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr\"}", "bad role" },
		{ "not a JWT", JWT_ALG_INVAL, NULL, NULL, "garbage", "bad signature" },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cg_ws_claims got;
		char err[128] = "", *tok;
		int rc;

		if (cases[i].alg != JWT_ALG_INVAL)
			tok = libjwt_token(cases[i].alg, SECRET, cases[i].claims);
		else if (cases[i].header != NULL && cases[i].sig == NULL)
			tok = hs256_with_header(cases[i].header, cases[i].claims);
		else if (cases[i].header != NULL)
			tok = hand_token(cases[i].header, cases[i].claims, cases[i].sig);
		else
			tok = strdup(cases[i].claims);
		if (!ok(tok != NULL, "%s: token built", cases[i].name))
			continue;
		rc = cg_ws_token_verify(SECRET, ISSUER, tok, NOW, &got, err, sizeof err);
		if (cases[i].want == NULL)
			ok(rc == 0, "%s: accepted (%s)", cases[i].name, err);
		else
			ok(rc == -1 && strstr(err, cases[i].want) != NULL, "%s: rejected with \"%s\" (%s)",
			   cases[i].name, cases[i].want, err);
		free(tok);
	}
	{
		cg_ws_claims got;
		char err[128] = "", *big = malloc(10001);

		memset(big, 'a', 10000);
		big[10000] = '\0';
		ok(cg_ws_token_verify(SECRET, ISSUER, big, NOW, &got, err, sizeof err) == -1 &&
		   strstr(err, "too long") != NULL, "oversized token rejected before parsing (%s)", err);
		free(big);
	}
}

/* ---- ES256 ---- */

static char *write_temp_key(EVP_PKEY *pkey, int traditional)
{
	char *path = strdup("/tmp/cg_test_jwt_key_XXXXXX");
	int fd = mkstemp(path);
	BIO *b;
	int w;

	if (fd < 0) {
		free(path);
		return NULL;
	}
	close(fd);
	b = BIO_new_file(path, "w");
	if (traditional)
		w = PEM_write_bio_PrivateKey_traditional(b, pkey, NULL, NULL, 0, NULL, NULL);
	else
		w = PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
	BIO_free(b);
	if (w != 1) {
		unlink(path);
		free(path);
		return NULL;
	}
	return path;
}

/* Verifies a compact ES256 JWS with the public half of pkey, the way a
 * relying party (APNs) does: raw R||S -> DER -> ECDSA verify over SHA-256. */
static int verify_jws(EVP_PKEY *pkey, const char *jws)
{
	const char *dot2 = strrchr(jws, '.');
	unsigned char raw[80], *der = NULL;
	ECDSA_SIG *sig = NULL;
	EVP_MD_CTX *md = NULL;
	BIGNUM *r, *s;
	long n;
	int derlen, res = 0;

	if (dot2 == NULL)
		return 0;
	n = cg_b64url_decode(dot2 + 1, strlen(dot2 + 1), raw, sizeof raw);
	if (n != 64)
		return 0;
	sig = ECDSA_SIG_new();
	r = BN_bin2bn(raw, 32, NULL);
	s = BN_bin2bn(raw + 32, 32, NULL);
	ECDSA_SIG_set0(sig, r, s);
	derlen = i2d_ECDSA_SIG(sig, &der);
	md = EVP_MD_CTX_new();
	if (derlen > 0 && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	    EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)jws,
			     (size_t)(dot2 - jws)) == 1)
		res = 1;
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	ECDSA_SIG_free(sig);
	return res;
}

static void test_es256(void)
{
	const char *hdr = "{\"alg\":\"ES256\",\"kid\":\"ABC123DEFG\"}";
	const char *claims = "{\"iss\":\"DEF123GHIJ\",\"iat\":1700000000}";
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	cg_es256_key *k;
	char err[256] = "", *path, *jws = NULL, *h, *c;
	int i;

	if (!ok(pkey != NULL, "generated a P-256 key"))
		return;
	path = write_temp_key(pkey, 0);
	k = path ? cg_es256_key_load(path, err, sizeof err) : NULL;
	ok(k != NULL, "PKCS#8 P-256 key loads (%s)", err);
	if (k != NULL) {
		ok(cg_es256_sign_jws(k, hdr, claims, &jws) == 0 && jws != NULL, "sign succeeds");
		if (jws != NULL) {
			const char *last = strrchr(jws, '.');

			ok(strchr(jws, '=') == NULL, "no base64 padding");
			is_int((long long)strlen(last + 1), 86, "signature is 86 chars (64 raw bytes)");
			h = decode_part(jws, 0);
			c = decode_part(jws, 1);
			is_str(h, hdr, "header bytes used verbatim");
			is_str(c, claims, "claims bytes used verbatim");
			free(h);
			free(c);
			ok(verify_jws(pkey, jws), "OpenSSL verifies the raw R||S signature");
			/* A changed signing input must not verify (checks the checker). */
			jws[5] ^= 1;
			ok(!verify_jws(pkey, jws), "modified token does not verify");
			free(jws);
		}
		/* ECDSA is randomised; several signatures must all verify (R or S
		 * with leading zero bytes exercise the 32-byte padding). */
		{
			int good = 1;

			for (i = 0; i < 64; i++) {
				jws = NULL;
				if (cg_es256_sign_jws(k, hdr, claims, &jws) != 0 || !verify_jws(pkey, jws))
					good = 0;
				free(jws);
			}
			ok(good, "64 signatures all verify");
		}
		cg_es256_key_free(k);
	}
	if (path) {
		unlink(path);
		free(path);
	}
	path = write_temp_key(pkey, 1);
	k = path ? cg_es256_key_load(path, err, sizeof err) : NULL;
	ok(k != NULL, "SEC1 (traditional) P-256 key loads (%s)", err);
	cg_es256_key_free(k);
	if (path) {
		unlink(path);
		free(path);
	}
	EVP_PKEY_free(pkey);
}

static void test_es256_bad_keys(void)
{
	EVP_PKEY *p384 = EVP_EC_gen("P-384");
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	struct {
		const char *name;
		EVP_PKEY *key;
	} cases[] = { { "P-384", p384 }, { "RSA", rsa }, { "Ed25519", ed } };
	static const char junk[] = "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n";
	char err[256];
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *path = cases[i].key ? write_temp_key(cases[i].key, 0) : NULL;
		cg_es256_key *k;

		err[0] = '\0';
		k = path ? cg_es256_key_load(path, err, sizeof err) : NULL;
		ok(path != NULL && k == NULL && err[0] != '\0', "%s key refused (%s)", cases[i].name, err);
		cg_es256_key_free(k);
		if (path) {
			unlink(path);
			free(path);
		}
		EVP_PKEY_free(cases[i].key);
	}
	err[0] = '\0';
	ok(cg_es256_key_from_pem(junk, sizeof junk - 1, err, sizeof err) == NULL && err[0] != '\0',
	   "junk PEM refused (%s)", err);
	err[0] = '\0';
	ok(cg_es256_key_load("/nonexistent/key.p8", err, sizeof err) == NULL && err[0] != '\0',
	   "missing file refused (%s)", err);
	err[0] = '\0';
	ok(cg_es256_key_from_pem("", 0, err, sizeof err) == NULL, "empty PEM refused (%s)", err);
}

int main(void)
{
	test_round_trip();
	test_no_device_token();
	test_mint_rejects();
	test_verify_table();
	test_es256();
	test_es256_bad_keys();
	return done_testing();
}

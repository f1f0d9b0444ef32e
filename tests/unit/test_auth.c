/* test_auth: Bearer JWT verification (HS256/RS256/ES256, forged and malformed tokens), API keys, roles. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "cg_auth.h"
#include "cg_util.h"
#include "tap.h"

#define NOW 1700000000LL
#define LEEWAY 60
#define HS_SECRET "hs256-test-secret-0123456789abcdef-0123"
#define ISSUER "https://auth.test.local"
#define AUDIENCE "capsule-gateway"

static char tmpdir[] = "/tmp/test_auth.XXXXXX";
static char rsa_pub_path[256], ec_pub_path[256], ec2_pub_path[256];
static EVP_PKEY *rsa_key, *ec_key, *ec2_key;
static unsigned char *rsa_pub_pem; /* the bytes of the RSA public key file */
static size_t rsa_pub_pem_len;

/* ---- token construction (independent of cg_auth) ---- */

typedef enum {
	SIG_HS256,       /* HMAC-SHA256 with HS_SECRET */
	SIG_HS256_WRONG, /* HMAC-SHA256 with another secret */
	SIG_HS256_PEM,   /* HMAC-SHA256 keyed by the RSA public key PEM (confusion) */
	SIG_HS512,       /* HMAC-SHA512 with HS_SECRET */
	SIG_RS256,       /* RSA key */
	SIG_ES256,       /* first P-256 key, raw R||S */
	SIG_ES256_2,     /* second P-256 key */
	SIG_ES256_DER,   /* first P-256 key, DER (invalid in JWS) */
	SIG_NONE,        /* empty signature */
	SIG_GARBAGE,     /* 32 bytes of 'x' */
} sig_mode;

static char *b64(const void *p, size_t n)
{
	size_t cap = (n + 2) / 3 * 4 + 1;
	char *out = malloc(cap);

	if (out == NULL || cg_b64url_encode(p, n, out, cap) < 0)
		abort();
	return out;
}

static unsigned char *pkey_sign(EVP_PKEY *k, const char *input, int raw_es, size_t *siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = NULL, *raw;
	const unsigned char *p;
	const BIGNUM *r, *s;
	ECDSA_SIG *es;
	size_t n = 0;

	if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k) != 1 ||
	    EVP_DigestSign(ctx, NULL, &n, (const unsigned char *)input, strlen(input)) != 1)
		abort();
	sig = malloc(n);
	if (sig == NULL || EVP_DigestSign(ctx, sig, &n, (const unsigned char *)input, strlen(input)) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
	if (!raw_es) {
		*siglen = n;
		return sig;
	}
	p = sig;
	es = d2i_ECDSA_SIG(NULL, &p, (long)n);
	raw = malloc(64);
	if (es == NULL || raw == NULL)
		abort();
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
		abort();
	ECDSA_SIG_free(es);
	free(sig);
	*siglen = 64;
	return raw;
}

/* header and claims are JSON text used verbatim. Returns a malloc'ed token. */
static char *make_token(const char *header, const char *claims, sig_mode mode)
{
	char *h = b64(header, strlen(header)), *c = b64(claims, strlen(claims)), *input, *s, *tok;
	unsigned char mac[EVP_MAX_MD_SIZE], *sig = NULL;
	unsigned int maclen = 0;
	size_t siglen = 0;

	input = malloc(strlen(h) + strlen(c) + 2);
	if (input == NULL)
		abort();
	sprintf(input, "%s.%s", h, c);
	switch (mode) {
	case SIG_HS256:
	case SIG_HS256_WRONG:
	case SIG_HS512:
		HMAC(mode == SIG_HS512 ? EVP_sha512() : EVP_sha256(),
		     mode == SIG_HS256_WRONG ? "another-secret-0123456789abcdef-xyz" : HS_SECRET,
		     (int)strlen(mode == SIG_HS256_WRONG ? "another-secret-0123456789abcdef-xyz" : HS_SECRET),
		     (const unsigned char *)input, strlen(input), mac, &maclen);
		s = b64(mac, maclen);
		break;
	case SIG_HS256_PEM:
		HMAC(EVP_sha256(), rsa_pub_pem, (int)rsa_pub_pem_len, (const unsigned char *)input,
		     strlen(input), mac, &maclen);
		s = b64(mac, maclen);
		break;
	case SIG_RS256:
		sig = pkey_sign(rsa_key, input, 0, &siglen);
		s = b64(sig, siglen);
		break;
	case SIG_ES256:
	case SIG_ES256_2:
	case SIG_ES256_DER:
		sig = pkey_sign(mode == SIG_ES256_2 ? ec2_key : ec_key, input, mode != SIG_ES256_DER, &siglen);
		s = b64(sig, siglen);
		break;
	case SIG_GARBAGE:
		s = b64("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 32);
		break;
	case SIG_NONE:
	default:
		s = strdup("");
		break;
	}
	tok = malloc(strlen(input) + strlen(s) + 2);
	if (tok == NULL)
		abort();
	sprintf(tok, "%s.%s", input, s);
	free(sig);
	free(s);
	free(input);
	free(h);
	free(c);
	return tok;
}

/* Replaces "$EXP" and "$NBF" in a claims template by NOW + offset. */
static char *claims_at(const char *tmpl, long long exp_off, long long nbf_off)
{
	size_t cap = strlen(tmpl) + 64;
	char *out = malloc(cap), *o = out;
	const char *p = tmpl;

	if (out == NULL)
		abort();
	while (*p) {
		if (strncmp(p, "$EXP", 4) == 0) {
			o += sprintf(o, "%lld", NOW + exp_off);
			p += 4;
		} else if (strncmp(p, "$NBF", 4) == 0) {
			o += sprintf(o, "%lld", NOW + nbf_off);
			p += 4;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

/* ---- fixtures ---- */

static int write_pub(EVP_PKEY *k, const char *path)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (f == NULL)
		return -1;
	rc = PEM_write_PUBKEY(f, k) == 1 ? 0 : -1;
	fclose(f);
	return rc;
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fputs(text, f);
	fclose(f);
	return 0;
}

static void set_str(char **field, const char *val)
{
	free(*field);
	*field = val ? strdup(val) : NULL;
}

static void base_config(cg_config *cfg, const char *secret, const char *keys)
{
	char err[256];

	memset(cfg, 0, sizeof *cfg);
	if (cg_config_load(cfg, NULL, CG_PROG_TEST, err, sizeof err) < 0) {
		printf("# cg_config_load: %s\n", err);
		abort();
	}
	set_str(&cfg->auth_jwt_hs256_secret, secret);
	set_str(&cfg->auth_jwt_public_keys, keys);
	set_str(&cfg->auth_jwt_issuer, ISSUER);
	set_str(&cfg->auth_jwt_audience, AUDIENCE);
	cfg->auth_jwt_leeway = LEEWAY;
}

static cg_jwt_verifier *make_verifier(const char *secret, const char *keys)
{
	cg_config cfg;
	cg_jwt_verifier *v;
	char err[512];

	base_config(&cfg, secret, keys);
	v = cg_jwt_verifier_new(&cfg, err, sizeof err);
	if (v == NULL)
		printf("# cg_jwt_verifier_new: %s\n", err);
	cg_config_free(&cfg);
	return v;
}

/* ---- JWT table ---- */

#define H_HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define H_RS "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"rsa1\"}"
#define H_ES "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"ec1\"}"
#define CL_START "{\"sub\":\"alice\",\"tenant\":\"acme\",\"role\":\"publisher\",\"iss\":\"" ISSUER "\","
#define CL_GOOD CL_START "\"aud\":\"" AUDIENCE "\",\"exp\":$EXP}"
#define CL_NBF CL_START "\"aud\":\"" AUDIENCE "\",\"exp\":$EXP,\"nbf\":$NBF}"
#define CL_WITH(extra) "{\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\",\"exp\":$EXP," extra "}"
#define A65 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define A64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

struct jcase {
	const char *name;
	const char *header;
	const char *claims;
	sig_mode sig;
	long long exp_off, nbf_off;
	const char *why; /* NULL: must verify */
};

static const struct jcase jcases[] = {
	{ "HS256 valid", H_HS, CL_GOOD, SIG_HS256, 300, 0, NULL },
	{ "HS256 valid with any kid", "{\"alg\":\"HS256\",\"kid\":\"whatever\"}", CL_GOOD, SIG_HS256, 300, 0, NULL },
	{ "RS256 valid", H_RS, CL_GOOD, SIG_RS256, 300, 0, NULL },
	{ "ES256 valid", H_ES, CL_GOOD, SIG_ES256, 300, 0, NULL },
	{ "ES256 valid (second key)", "{\"alg\":\"ES256\",\"kid\":\"ec2\"}", CL_GOOD, SIG_ES256_2, 300, 0, NULL },
	/* exp / nbf and the leeway edges */
	{ "expired long ago", H_HS, CL_GOOD, SIG_HS256, -3600, 0, "expired" },
	{ "exp = now - leeway - 1", H_HS, CL_GOOD, SIG_HS256, -LEEWAY - 1, 0, "expired" },
	{ "exp = now - leeway", H_HS, CL_GOOD, SIG_HS256, -LEEWAY, 0, "expired" },
	{ "exp = now - leeway + 1 (inside leeway)", H_HS, CL_GOOD, SIG_HS256, -LEEWAY + 1, 0, NULL },
	{ "exp missing", H_HS, CL_START "\"aud\":\"" AUDIENCE "\"}", SIG_HS256, 0, 0, "malformed" },
	{ "exp a string", H_HS, CL_START "\"aud\":\"" AUDIENCE "\",\"exp\":\"9999999999\"}", SIG_HS256, 0, 0, "malformed" },
	{ "exp a float", H_HS, CL_START "\"aud\":\"" AUDIENCE "\",\"exp\":9999999999.5}", SIG_HS256, 0, 0, "malformed" },
	{ "nbf in the future", H_HS, CL_NBF, SIG_HS256, 600, 3600, "not yet valid" },
	{ "nbf = now + leeway + 1", H_HS, CL_NBF, SIG_HS256, 600, LEEWAY + 1, "not yet valid" },
	{ "nbf = now + leeway (inside leeway)", H_HS, CL_NBF, SIG_HS256, 600, LEEWAY, NULL },
	{ "nbf in the past", H_HS, CL_NBF, SIG_HS256, 600, -10, NULL },
	{ "nbf a string", H_HS, CL_START "\"aud\":\"" AUDIENCE "\",\"exp\":$EXP,\"nbf\":\"0\"}", SIG_HS256, 600, 0, "malformed" },
	{ "iat a string", H_HS, CL_START "\"aud\":\"" AUDIENCE "\",\"exp\":$EXP,\"iat\":\"0\"}", SIG_HS256, 600, 0, "malformed" },
	/* iss / aud */
	{ "wrong iss", H_HS, "{\"sub\":\"a\",\"tenant\":\"acme\",\"role\":\"admin\",\"iss\":\"https://evil.example\",\"aud\":\"" AUDIENCE "\",\"exp\":$EXP}", SIG_HS256, 300, 0, "wrong issuer" },
	{ "iss missing", H_HS, "{\"sub\":\"a\",\"tenant\":\"acme\",\"role\":\"admin\",\"aud\":\"" AUDIENCE "\",\"exp\":$EXP}", SIG_HS256, 300, 0, "wrong issuer" },
	{ "iss prefix only", H_HS, "{\"sub\":\"a\",\"tenant\":\"acme\",\"role\":\"admin\",\"iss\":\"https://auth.test\",\"aud\":\"" AUDIENCE "\",\"exp\":$EXP}", SIG_HS256, 300, 0, "wrong issuer" },
	{ "wrong aud", H_HS, CL_START "\"aud\":\"other-service\",\"exp\":$EXP}", SIG_HS256, 300, 0, "wrong audience" },
	{ "aud missing", H_HS, CL_START "\"exp\":$EXP}", SIG_HS256, 300, 0, "wrong audience" },
	{ "aud array containing ours", H_HS, CL_START "\"aud\":[\"x\",\"" AUDIENCE "\"],\"exp\":$EXP}", SIG_HS256, 300, 0, NULL },
	{ "aud array without ours", H_HS, CL_START "\"aud\":[\"x\",\"y\"],\"exp\":$EXP}", SIG_HS256, 300, 0, "wrong audience" },
	{ "aud empty array", H_HS, CL_START "\"aud\":[],\"exp\":$EXP}", SIG_HS256, 300, 0, "wrong audience" },
	{ "aud a number", H_HS, CL_START "\"aud\":1,\"exp\":$EXP}", SIG_HS256, 300, 0, "wrong audience" },
	{ "aud nested array", H_HS, CL_START "\"aud\":[[\"" AUDIENCE "\"]],\"exp\":$EXP}", SIG_HS256, 300, 0, "wrong audience" },
	/* algorithms */
	{ "alg none, empty signature", "{\"alg\":\"none\",\"typ\":\"JWT\"}", CL_GOOD, SIG_NONE, 300, 0, "alg not allowed" },
	{ "alg None", "{\"alg\":\"None\"}", CL_GOOD, SIG_NONE, 300, 0, "alg not allowed" },
	{ "alg none with an HMAC signature", "{\"alg\":\"none\"}", CL_GOOD, SIG_HS256, 300, 0, "alg not allowed" },
	{ "alg HS512", "{\"alg\":\"HS512\"}", CL_GOOD, SIG_HS512, 300, 0, "alg not allowed" },
	{ "alg hs256 (case)", "{\"alg\":\"hs256\"}", CL_GOOD, SIG_HS256, 300, 0, "alg not allowed" },
	{ "alg PS256", "{\"alg\":\"PS256\",\"kid\":\"rsa1\"}", CL_GOOD, SIG_RS256, 300, 0, "alg not allowed" },
	{ "alg empty", "{\"alg\":\"\"}", CL_GOOD, SIG_HS256, 300, 0, "alg not allowed" },
	{ "RS256 header, HMAC keyed by the public key PEM", H_RS, CL_GOOD, SIG_HS256_PEM, 300, 0, "bad signature" },
	{ "HS256 header, HMAC keyed by the public key PEM", "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", CL_GOOD, SIG_HS256_PEM, 300, 0, "bad signature" },
	{ "ES256 with the kid of the RSA key", "{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", CL_GOOD, SIG_ES256, 300, 0, "alg not allowed" },
	{ "RS256 with the kid of an EC key", "{\"alg\":\"RS256\",\"kid\":\"ec1\"}", CL_GOOD, SIG_RS256, 300, 0, "alg not allowed" },
	{ "unknown kid", "{\"alg\":\"RS256\",\"kid\":\"rsa9\"}", CL_GOOD, SIG_RS256, 300, 0, "unknown kid" },
	{ "RS256 without kid", "{\"alg\":\"RS256\"}", CL_GOOD, SIG_RS256, 300, 0, "unknown kid" },
	{ "ES256 without kid", "{\"alg\":\"ES256\"}", CL_GOOD, SIG_ES256, 300, 0, "unknown kid" },
	{ "kid with a path", "{\"alg\":\"RS256\",\"kid\":\"../rsa1\"}", CL_GOOD, SIG_RS256, 300, 0, "unknown kid" },
	{ "kid not a string", "{\"alg\":\"RS256\",\"kid\":1}", CL_GOOD, SIG_RS256, 300, 0, "malformed" },
	/* signatures */
	{ "HS256 with another secret", H_HS, CL_GOOD, SIG_HS256_WRONG, 300, 0, "bad signature" },
	{ "ES256 signed by the other key", H_ES, CL_GOOD, SIG_ES256_2, 300, 0, "bad signature" },
	{ "ES256 signature in DER", H_ES, CL_GOOD, SIG_ES256_DER, 300, 0, "bad signature" },
	{ "RS256 garbage signature", H_RS, CL_GOOD, SIG_GARBAGE, 300, 0, "bad signature" },
	{ "ES256 empty signature", H_ES, CL_GOOD, SIG_NONE, 300, 0, "bad signature" },
	{ "HS256 empty signature", H_HS, CL_GOOD, SIG_NONE, 300, 0, "bad signature" },
	/* subject, tenant, role */
	{ "bad role", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"acme\",\"role\":\"root\""), SIG_HS256, 300, 0, "bad role" },
	{ "role none", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"acme\",\"role\":\"none\""), SIG_HS256, 300, 0, "bad role" },
	{ "role Admin (case)", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"acme\",\"role\":\"Admin\""), SIG_HS256, 300, 0, "bad role" },
	{ "role missing", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"acme\""), SIG_HS256, 300, 0, "bad role" },
	{ "role an array", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"acme\",\"role\":[\"admin\"]"), SIG_HS256, 300, 0, "bad role" },
	{ "tenant \"a b\"", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"a b\",\"role\":\"admin\""), SIG_HS256, 300, 0, "bad tenant" },
	{ "tenant 65 chars", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"" A65 "\",\"role\":\"admin\""), SIG_HS256, 300, 0, "bad tenant" },
	{ "tenant 64 chars", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"" A64 "\",\"role\":\"admin\""), SIG_HS256, 300, 0, NULL },
	{ "tenant missing", H_HS, CL_WITH("\"sub\":\"a\",\"role\":\"admin\""), SIG_HS256, 300, 0, "bad tenant" },
	{ "tenant empty", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"\",\"role\":\"admin\""), SIG_HS256, 300, 0, "bad tenant" },
	{ "tenant a number", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":7,\"role\":\"admin\""), SIG_HS256, 300, 0, "bad tenant" },
	{ "tenant with a quote", H_HS, CL_WITH("\"sub\":\"a\",\"tenant\":\"a'--\",\"role\":\"admin\""), SIG_HS256, 300, 0, "bad tenant" },
	{ "missing sub", H_HS, CL_WITH("\"tenant\":\"acme\",\"role\":\"admin\""), SIG_HS256, 300, 0, "missing sub" },
	{ "empty sub", H_HS, CL_WITH("\"sub\":\"\",\"tenant\":\"acme\",\"role\":\"admin\""), SIG_HS256, 300, 0, "missing sub" },
	{ "sub with a control character", H_HS, CL_WITH("\"sub\":\"a\\u0007b\",\"tenant\":\"acme\",\"role\":\"admin\""), SIG_HS256, 300, 0, "missing sub" },
	{ "sub with a newline", H_HS, CL_WITH("\"sub\":\"a\\nb\",\"tenant\":\"acme\",\"role\":\"admin\""), SIG_HS256, 300, 0, "missing sub" },
	{ "sub with NUL", H_HS, CL_WITH("\"sub\":\"a\\u0000b\",\"tenant\":\"acme\",\"role\":\"admin\""), SIG_HS256, 300, 0, "missing sub" },
	{ "sub non-ASCII", H_HS, CL_WITH("\"sub\":\"j\xc3\xb6rg\",\"tenant\":\"acme\",\"role\":\"admin\""), SIG_HS256, 300, 0, "missing sub" },
	{ "sub a number", H_HS, CL_WITH("\"sub\":42,\"tenant\":\"acme\",\"role\":\"admin\""), SIG_HS256, 300, 0, "missing sub" },
	{ "sub printable with spaces", H_HS, CL_WITH("\"sub\":\"CN=Alice Smith, O=Acme <x@y>\",\"tenant\":\"acme\",\"role\":\"viewer\""), SIG_HS256, 300, 0, NULL },
	/* malformed structure */
	{ "header not JSON", "not json", CL_GOOD, SIG_HS256, 300, 0, "malformed" },
	{ "header an array", "[\"HS256\"]", CL_GOOD, SIG_HS256, 300, 0, "malformed" },
	{ "header without alg", "{\"typ\":\"JWT\"}", CL_GOOD, SIG_HS256, 300, 0, "malformed" },
	{ "alg a number", "{\"alg\":256}", CL_GOOD, SIG_HS256, 300, 0, "malformed" },
	{ "alg null", "{\"alg\":null}", CL_GOOD, SIG_HS256, 300, 0, "malformed" },
	{ "duplicate alg", "{\"alg\":\"HS256\",\"alg\":\"none\"}", CL_GOOD, SIG_HS256, 300, 0, "malformed" },
	{ "crit header", "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", CL_GOOD, SIG_HS256, 300, 0, "malformed" },
	{ "claims not JSON", H_HS, "sub=alice", SIG_HS256, 300, 0, "malformed" },
	{ "claims an array", H_HS, "[1,2]", SIG_HS256, 300, 0, "malformed" },
	{ "claims with duplicate tenant", H_HS, CL_START "\"aud\":\"" AUDIENCE "\",\"exp\":$EXP,\"tenant\":\"globex\"}", SIG_HS256, 300, 0, "malformed" },
	{ "claims trailing garbage", H_HS, CL_GOOD "x", SIG_HS256, 300, 0, "malformed" },
};

static void check_principal(const cg_principal *p, const char *sub, const char *tenant, cg_role role,
			    const char *kid, const char *what)
{
	is_int(p->kind, CG_AUTH_JWT, "%s: kind", what);
	is_str(p->subject, sub, "%s: subject", what);
	is_str(p->tenant, tenant, "%s: tenant", what);
	is_int(p->role, role, "%s: role", what);
	is_str(p->key_id, kid, "%s: key_id", what);
}

static void test_jwt_table(cg_jwt_verifier *v)
{
	size_t i;

	for (i = 0; i < sizeof jcases / sizeof jcases[0]; i++) {
		const struct jcase *c = &jcases[i];
		char *claims = claims_at(c->claims, c->exp_off, c->nbf_off);
		char *tok = make_token(c->header, claims, c->sig);
		cg_principal p;
		const char *why = "unset";
		int rc = cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why);

		if (c->why == NULL) {
			if (!ok(rc == 0 && why == NULL, "%s: accepted", c->name))
				printf("# rc %d why %s\n", rc, why ? why : "(null)");
		} else {
			ok(rc == -1, "%s: refused", c->name);
			is_str(why, c->why, "%s: reason", c->name);
			ok(p.subject[0] == '\0' && p.tenant[0] == '\0' && p.role == CG_ROLE_NONE,
			   "%s: principal left empty", c->name);
		}
		free(tok);
		free(claims);
	}
}

static void test_jwt_principals(cg_jwt_verifier *v)
{
	char *claims = claims_at(CL_GOOD, 300, 0), *tok;
	cg_principal p;
	const char *why;

	tok = make_token(H_RS, claims, SIG_RS256);
	ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == 0, "RS256 principal");
	check_principal(&p, "alice", "acme", CG_ROLE_PUBLISHER, "rsa1", "RS256");
	free(tok);
	tok = make_token(H_ES, claims, SIG_ES256);
	ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == 0, "ES256 principal");
	check_principal(&p, "alice", "acme", CG_ROLE_PUBLISHER, "ec1", "ES256");
	free(tok);
	tok = make_token(H_HS, claims, SIG_HS256);
	ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == 0, "HS256 principal");
	check_principal(&p, "alice", "acme", CG_ROLE_PUBLISHER, "", "HS256");
	ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, NULL, NULL) == 0, "p and why may be NULL");
	free(tok);
	free(claims);
}

/* Structural garbage that never reaches a signature check. */
static void test_jwt_garbage(cg_jwt_verifier *v)
{
	static const char *const bad[] = {
		"", "abc", "a.b", "a.b.c.d", "..", "...", ".eyJ9.", "eyJhbGciOiJIUzI1NiJ9..",
		"eyJhbGciOiJIUzI1NiJ9.e30=.AAAA", "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA",
		"eyJhbGci OiJIUzI1NiJ9.e30.AAAA", "eyJhbGciOiJIUzI1NiJ9.e30.AA+A",
		"!!!.e30.AAAA", "eyJhbGciOiJIUzI1NiJ9\n.e30.AAAA",
	};
	cg_principal p;
	const char *why;
	size_t i;
	char *claims, *tok, *big;
	size_t pad;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc;

		why = NULL;
		rc = cg_jwt_verify_bearer(v, bad[i], (time_t)NOW, &p, &why);
		ok(rc == -1 && why != NULL, "garbage token %zu refused (%s)", i, why ? why : "?");
	}
	ok(cg_jwt_verify_bearer(v, NULL, (time_t)NOW, &p, &why) == -1 && strcmp(why, "malformed") == 0,
	   "NULL token refused as malformed");

	/* A correctly signed token just under and just over 8 KiB. */
	for (pad = 5900; pad <= 6300; pad += 400) {
		char *filler = malloc(pad + 1);
		size_t len;

		memset(filler, 'x', pad);
		filler[pad] = '\0';
		big = malloc(strlen(CL_GOOD) + pad + 32);
		sprintf(big, CL_START "\"aud\":\"" AUDIENCE "\",\"pad\":\"%s\",\"exp\":$EXP}", filler);
		claims = claims_at(big, 300, 0);
		tok = make_token(H_HS, claims, SIG_HS256);
		len = strlen(tok);
		if (len <= 8192)
			ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == 0,
			   "token of %zu bytes (<= 8 KiB) accepted", len);
		else
			ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == -1 &&
			   strcmp(why, "malformed") == 0, "token of %zu bytes (> 8 KiB) refused", len);
		free(tok);
		free(claims);
		free(big);
		free(filler);
	}
	/* A deeply nested claim is refused by the bounded parser. */
	{
		char nest[400];
		int d;

		strcpy(nest, CL_START "\"aud\":\"" AUDIENCE "\",\"exp\":$EXP,\"x\":");
		for (d = 0; d < 20; d++)
			strcat(nest, "[");
		for (d = 0; d < 20; d++)
			strcat(nest, "]");
		strcat(nest, "}");
		claims = claims_at(nest, 300, 0);
		tok = make_token(H_HS, claims, SIG_HS256);
		ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == -1 && strcmp(why, "malformed") == 0,
		   "deeply nested claims refused");
		free(tok);
		free(claims);
	}
	/* The claims segment of a good token swapped for another: bad signature. */
	{
		char *c1 = claims_at(CL_GOOD, 300, 0);
		char *c2 = claims_at(CL_WITH("\"sub\":\"alice\",\"tenant\":\"acme\",\"role\":\"admin\""), 300, 0);
		char *t1 = make_token(H_RS, c1, SIG_RS256), *t2 = make_token(H_RS, c2, SIG_RS256);
		char *d1 = strchr(t1, '.'), *d2 = strchr(t2, '.');
		char *forged = malloc(strlen(t1) + strlen(t2));

		/* header of t1, claims of t2 (role admin), signature of t1 */
		sprintf(forged, "%.*s.%.*s%s", (int)(d1 - t1), t1, (int)(strchr(d2 + 1, '.') - d2 - 1), d2 + 1,
			strchr(d1 + 1, '.'));
		ok(cg_jwt_verify_bearer(v, forged, (time_t)NOW, &p, &why) == -1 &&
		   strcmp(why, "bad signature") == 0, "claims swapped under a valid signature: bad signature");
		free(forged);
		free(t1);
		free(t2);
		free(c1);
		free(c2);
	}
}

/* Verifiers with fewer keys. */
static void test_jwt_key_sets(void)
{
	char keys[600], *claims = claims_at(CL_GOOD, 300, 0), *tok;
	cg_jwt_verifier *v;
	cg_principal p;
	const char *why;

	/* No HS256 secret: an HS256 token (even keyed by the PEM) is refused. */
	snprintf(keys, sizeof keys, "rsa1=%s", rsa_pub_path);
	v = make_verifier(NULL, keys);
	ok(v != NULL, "verifier with only an RSA key");
	tok = make_token(H_HS, claims, SIG_HS256);
	ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == -1 && strcmp(why, "alg not allowed") == 0,
	   "HS256 without a configured secret: alg not allowed");
	free(tok);
	tok = make_token("{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", claims, SIG_HS256_PEM);
	ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == -1 && strcmp(why, "alg not allowed") == 0,
	   "HS256 keyed by the RSA PEM without a secret: alg not allowed");
	free(tok);
	tok = make_token(H_RS, claims, SIG_RS256);
	ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == 0, "RS256 still verifies");
	free(tok);
	tok = make_token(H_ES, claims, SIG_ES256);
	ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == -1 && strcmp(why, "unknown kid") == 0,
	   "ES256 with a kid not configured: unknown kid");
	free(tok);
	cg_jwt_verifier_free(v);

	/* Nothing configured: every token refused with "no JWT keys". */
	v = make_verifier(NULL, NULL);
	ok(v != NULL, "verifier without keys is valid");
	tok = make_token(H_HS, claims, SIG_HS256);
	ok(cg_jwt_verify_bearer(v, tok, (time_t)NOW, &p, &why) == -1 && strcmp(why, "no JWT keys") == 0,
	   "no keys: \"no JWT keys\"");
	free(tok);
	cg_jwt_verifier_free(v);
	ok(cg_jwt_verify_bearer(NULL, "a.b.c", (time_t)NOW, &p, &why) == -1, "NULL verifier refuses");
	cg_jwt_verifier_free(NULL);
	free(claims);
}

/* Configuration errors name the key. */
static void test_verifier_config(void)
{
	struct {
		const char *name;
		const char *secret;
		const char *keys_fmt; /* %s: tmpdir */
		const char *issuer;
		const char *want; /* substring of the error; NULL: must load */
	} rows[] = {
		{ "three keys with spaces", HS_SECRET, " rsa1=%1$s/rsa.pem , ec1=%1$s/ec.pem,ec2=%1$s/ec2.pem ", ISSUER, NULL },
		{ "unreadable key file", NULL, "k=%s/missing.pem", ISSUER, "auth_jwt_public_keys" },
		{ "not a PEM file", NULL, "k=%s/junk.pem", ISSUER, "auth_jwt_public_keys" },
		{ "private key file", NULL, "k=%s/private.pem", ISSUER, "auth_jwt_public_keys" },
		{ "RSA 1024", NULL, "k=%s/rsa1024.pem", ISSUER, "RSA key shorter" },
		{ "P-384", NULL, "k=%s/p384.pem", ISSUER, "P-256" },
		{ "Ed25519", NULL, "k=%s/ed25519.pem", ISSUER, "neither RSA nor EC" },
		{ "bad kid", NULL, "a b=%s/rsa.pem", ISSUER, "kid" },
		{ "kid too long", NULL, A65 "=%s/rsa.pem", ISSUER, "kid" },
		{ "duplicate kid", NULL, "a=%1$s/rsa.pem,a=%1$s/ec.pem", ISSUER, "twice" },
		{ "no '='", NULL, "%s/rsa.pem", ISSUER, "kid=/path.pem" },
		{ "empty path", NULL, "a=", ISSUER, "no key file" },
		{ "short HS secret", "short", NULL, ISSUER, "auth_jwt_hs256_secret" },
		{ "issuer missing", HS_SECRET, NULL, NULL, "auth_jwt_issuer" },
	};
	size_t i;
	char keys[2048], err[512];
	cg_config cfg;
	cg_jwt_verifier *v;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const char *fmt = rows[i].keys_fmt;

		/* only "%s" and "%1$s" occur; expand by hand (no non-literal formats) */
		if (fmt != NULL) {
			const char *q = fmt;
			char *o = keys;

			while (*q) {
				if (strncmp(q, "%1$s", 4) == 0 || strncmp(q, "%s", 2) == 0) {
					o += sprintf(o, "%s", tmpdir);
					q += q[1] == '1' ? 4 : 2;
				} else {
					*o++ = *q++;
				}
			}
			*o = '\0';
		}
		base_config(&cfg, rows[i].secret, fmt ? keys : NULL);
		set_str(&cfg.auth_jwt_issuer, rows[i].issuer);
		err[0] = '\0';
		v = cg_jwt_verifier_new(&cfg, err, sizeof err);
		if (rows[i].want == NULL) {
			if (!ok(v != NULL, "config %s: loads", rows[i].name))
				printf("# %s\n", err);
		} else {
			ok(v == NULL, "config %s: refused", rows[i].name);
			if (!ok(strstr(err, rows[i].want) != NULL, "config %s: error names \"%s\"", rows[i].name,
				rows[i].want))
				printf("# error: %s\n", err);
		}
		cg_jwt_verifier_free(v);
		cg_config_free(&cfg);
	}

	/* At most 16 keys. */
	{
		char *o = keys;
		int k;

		for (k = 0; k < 17; k++)
			o += sprintf(o, "%sk%d=%s/ec.pem", k ? "," : "", k, tmpdir);
		v = make_verifier(NULL, keys);
		ok(v == NULL, "17 keys refused");
		cg_jwt_verifier_free(v);
		*strrchr(keys, ',') = '\0';
		v = make_verifier(NULL, keys);
		ok(v != NULL, "16 keys accepted");
		cg_jwt_verifier_free(v);
	}
}

/* ---- API keys ---- */

static void test_api_keys(void)
{
	char key[CG_API_KEY_MAX], key2[CG_API_KEY_MAX], id[CG_API_KEY_ID_LEN + 1], id2[CG_API_KEY_ID_LEN + 1];
	char hash[65], hash2[65], pid[CG_API_KEY_ID_LEN + 1], phash[65], indep[65];
	unsigned char md[32];
	size_t i;
	static const char *const bad[] = {
		"", "cgk_", "cgk_0123456789abcdef_", "cgk_0123456789abcdef",
		"cgx_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
		"CGK_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
		"cgk_0123456789ABCDEF_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
		"cgk_0123456789abcde_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A",
		"cgk_0123456789abcdefg_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
		"cgk_0123456789abcdef-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
		"cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",
		"cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A",
		"cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
		"cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9",
		"cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+",
		"cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX/BkaGxwdHh8",
		"cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
		" cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
		"cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX GBkaGxwdHh8",
	};

	ok(cg_api_key_generate(key, id, hash) == 0, "generate a key");
	is_int((long long)strlen(key), 64, "key is 64 characters");
	ok(strncmp(key, "cgk_", 4) == 0 && key[20] == '_', "key shape cgk_<id>_<secret>");
	ok(strncmp(key + 4, id, 16) == 0 && strlen(id) == 16, "key id is in the key");
	ok(strspn(id, "0123456789abcdef") == 16, "key id is 16 lowercase hex digits");
	ok(strspn(key + 21, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == 43,
	   "secret is 43 base64url characters");
	ok(cg_api_key_parse(key, pid, phash) == 0, "generated key parses");
	is_str(pid, id, "parse gives the same key id");
	is_str(phash, hash, "parse gives the same hash");
	/* independent SHA-256 of the secret text */
	EVP_Digest(key + 21, 43, md, NULL, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		sprintf(indep + 2 * i, "%02x", md[i]);
	is_str(hash, indep, "stored hash is SHA-256(secret) in lowercase hex");
	ok(cg_api_key_generate(key2, id2, hash2) == 0 && strcmp(key, key2) != 0 && strcmp(id, id2) != 0 &&
	   strcmp(hash, hash2) != 0, "two keys differ");

	/* A fixed key whose hash was computed with sha256sum. */
	ok(cg_api_key_parse("cgk_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", pid, phash) == 0,
	   "fixed key parses");
	is_str(pid, "0123456789abcdef", "fixed key id");
	is_str(phash, "ea866a757e4c38babfa8127cbe9a409d3e1f93a00ff1488ff735fcf917afffd0",
	       "fixed key hash matches sha256sum");

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ok(cg_api_key_parse(bad[i], pid, phash) == -1, "malformed key %zu refused", i);
	ok(cg_api_key_parse(NULL, pid, phash) == -1, "NULL key refused");
	{
		char longkey[300];

		memset(longkey, 'a', sizeof longkey - 1);
		longkey[sizeof longkey - 1] = '\0';
		memcpy(longkey, "cgk_", 4);
		ok(cg_api_key_parse(longkey, pid, phash) == -1, "overlong key refused");
	}

	ok(cg_hash_equal(hash, indep) == 1, "hash_equal: equal");
	strcpy(hash2, hash);
	hash2[63] = hash2[63] == '0' ? '1' : '0';
	ok(cg_hash_equal(hash, hash2) == 0, "hash_equal: last digit differs");
	hash2[63] = hash[63];
	hash2[0] = hash2[0] == '0' ? '1' : '0';
	ok(cg_hash_equal(hash, hash2) == 0, "hash_equal: first digit differs");
	ok(cg_hash_equal(hash, "abc") == 0, "hash_equal: lengths differ");
	ok(cg_hash_equal("", "") == 0, "hash_equal: empty never equal");
	ok(cg_hash_equal(NULL, hash) == 0 && cg_hash_equal(hash, NULL) == 0, "hash_equal: NULL");
}

static void test_roles(void)
{
	static const struct {
		const char *name;
		cg_role role;
	} rows[] = {
		{ "viewer", CG_ROLE_VIEWER },
		{ "operator", CG_ROLE_OPERATOR },
		{ "publisher", CG_ROLE_PUBLISHER },
		{ "admin", CG_ROLE_ADMIN },
	};
	static const char *const bad[] = { "", "none", "Admin", "admin ", "root", "user", "viewers" };
	cg_role r;
	size_t i;

	for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		r = CG_ROLE_NONE;
		ok(cg_role_parse(rows[i].name, &r) == 0 && r == rows[i].role, "role %s parses", rows[i].name);
		is_str(cg_role_name(rows[i].role), rows[i].name, "role name %s", rows[i].name);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		r = CG_ROLE_ADMIN;
		ok(cg_role_parse(bad[i], &r) == -1 && r == CG_ROLE_ADMIN, "role \"%s\" refused, out untouched", bad[i]);
	}
	ok(cg_role_parse(NULL, &r) == -1, "NULL role refused");
	ok(CG_ROLE_NONE < CG_ROLE_VIEWER && CG_ROLE_VIEWER < CG_ROLE_OPERATOR &&
	   CG_ROLE_OPERATOR < CG_ROLE_PUBLISHER && CG_ROLE_PUBLISHER < CG_ROLE_ADMIN, "roles are ordered");
	is_str(cg_role_name(CG_ROLE_NONE), "none", "role name none");
	is_str(cg_role_name((cg_role)99), "invalid", "out of range role name");
}

/* ---- setup ---- */

static int setup(void)
{
	char path[300];
	EVP_PKEY *k;
	FILE *f;

	if (mkdtemp(tmpdir) == NULL)
		return -1;
	rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ec2_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (rsa_key == NULL || ec_key == NULL || ec2_key == NULL)
		return -1;
	snprintf(rsa_pub_path, sizeof rsa_pub_path, "%s/rsa.pem", tmpdir);
	snprintf(ec_pub_path, sizeof ec_pub_path, "%s/ec.pem", tmpdir);
	snprintf(ec2_pub_path, sizeof ec2_pub_path, "%s/ec2.pem", tmpdir);
	if (write_pub(rsa_key, rsa_pub_path) < 0 || write_pub(ec_key, ec_pub_path) < 0 ||
	    write_pub(ec2_key, ec2_pub_path) < 0)
		return -1;
	/* the exact bytes of the RSA public key file, for the confusion test */
	f = fopen(rsa_pub_path, "rb");
	rsa_pub_pem = malloc(4096);
	if (f == NULL || rsa_pub_pem == NULL)
		return -1;
	rsa_pub_pem_len = fread(rsa_pub_pem, 1, 4096, f);
	fclose(f);

	/* files for the configuration errors */
	snprintf(path, sizeof path, "%s/junk.pem", tmpdir);
	write_text(path, "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n");
	snprintf(path, sizeof path, "%s/private.pem", tmpdir);
	f = fopen(path, "w");
	if (f == NULL || PEM_write_PrivateKey(f, ec_key, NULL, NULL, 0, NULL, NULL) != 1)
		return -1;
	fclose(f);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	snprintf(path, sizeof path, "%s/rsa1024.pem", tmpdir);
	if (k == NULL || write_pub(k, path) < 0)
		return -1;
	EVP_PKEY_free(k);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	snprintf(path, sizeof path, "%s/p384.pem", tmpdir);
	if (k == NULL || write_pub(k, path) < 0)
		return -1;
	EVP_PKEY_free(k);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	snprintf(path, sizeof path, "%s/ed25519.pem", tmpdir);
	if (k == NULL || write_pub(k, path) < 0)
		return -1;
	EVP_PKEY_free(k);
	return 0;
}

static void cleanup(void)
{
	static const char *const files[] = {
		"rsa.pem", "ec.pem", "ec2.pem", "junk.pem", "private.pem", "rsa1024.pem", "p384.pem", "ed25519.pem",
	};
	char path[300];
	size_t i;

	for (i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
		unlink(path);
	}
	rmdir(tmpdir);
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ec_key);
	EVP_PKEY_free(ec2_key);
	free(rsa_pub_pem);
}

int main(void)
{
	char keys[1024];
	cg_jwt_verifier *v;

	if (setup() < 0) {
		cleanup();
		skip_all("cannot create test keys");
	}
	snprintf(keys, sizeof keys, "rsa1=%s,ec1=%s,ec2=%s", rsa_pub_path, ec_pub_path, ec2_pub_path);
	v = make_verifier(HS_SECRET, keys);
	ok(v != NULL, "verifier with HS256, RS256 and two ES256 keys");
	if (v != NULL) {
		test_jwt_table(v);
		test_jwt_principals(v);
		test_jwt_garbage(v);
		cg_jwt_verifier_free(v);
	}
	test_jwt_key_sets();
	test_verifier_config();
	test_api_keys();
	test_roles();
	cleanup();
	return done_testing();
}

/* jwt-sign: prints a compact JWS for tests, including deliberately wrong ones (alg none, confusion, DER ES256). */

/*
 * Usage
 *   jwt-sign --alg ALG --claims JSON
 *            [--secret S | --secret-file FILE | --key PRIVATE.pem]
 *            [--kid K] [--header JSON] [--sign-as ALG] [--der]
 *
 *   The header is {"alg":"ALG","typ":"JWT"} plus "kid" when --kid is given,
 *   unless --header gives the exact header text (used verbatim, so tests can
 *   send duplicate names, "crit", odd types). --claims is used verbatim too.
 *   The signature is made with --sign-as, or with --alg when that is absent:
 *     HS256 / HS384 / HS512  HMAC keyed by --secret or by the raw bytes of
 *                            --secret-file (e.g. a public key PEM, for the
 *                            RS256 -> HS256 confusion test)
 *     RS256                  RSASSA-PKCS1-v1_5 SHA-256 with --key (RSA)
 *     ES256                  ECDSA P-256 SHA-256 with --key, written as raw
 *                            R||S (64 bytes) as JWS wants, or as DER with
 *                            --der (which a verifier must refuse)
 *     none                   empty signature
 *   Prints the token and a newline on stdout; exit 0, or 1 with a message on
 *   stderr, 2 for usage errors. Links OpenSSL only (not libcapsule), so the
 *   verifier is checked against an independent signer.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#define FILE_MAX (1024 * 1024)
#define TEXT_MAX (1024 * 1024)

static void usage(void)
{
	fprintf(stderr,
		"usage: jwt-sign --alg HS256|RS256|ES256|none|ALG --claims JSON\n"
		"                [--secret S | --secret-file FILE | --key PRIVATE.pem]\n"
		"                [--kid K] [--header JSON] [--sign-as ALG] [--der]\n");
	exit(2);
}

/* Everything main() allocates, so that every exit frees it (the tool runs
 * under the sanitizers in the test suite). */
static struct {
	char *h64, *p64, *input, *s64;
	unsigned char *secret, *sig;
	EVP_PKEY *key;
} g;

static void release(void)
{
	free(g.h64);
	free(g.p64);
	free(g.input);
	free(g.s64);
	free(g.secret);
	free(g.sig);
	EVP_PKEY_free(g.key);
	memset(&g, 0, sizeof g);
}

static void die(const char *msg)
{
	fprintf(stderr, "jwt-sign: %s\n", msg);
	ERR_print_errors_fp(stderr);
	release();
	exit(1);
}

/* base64url without padding; returns a malloc'ed string. */
static char *b64url(const unsigned char *in, size_t n)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *out = malloc(n / 3 * 4 + 5), *q;
	size_t i;

	if (out == NULL)
		die("out of memory");
	q = out;
	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		*q++ = tbl[v >> 18 & 63];
		*q++ = tbl[v >> 12 & 63];
		*q++ = tbl[v >> 6 & 63];
		*q++ = tbl[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		*q++ = tbl[v >> 18 & 63];
		*q++ = tbl[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		*q++ = tbl[v >> 18 & 63];
		*q++ = tbl[v >> 12 & 63];
		*q++ = tbl[v >> 6 & 63];
	}
	*q = '\0';
	return out;
}

/* Reads a whole file (capped). Returns malloc'ed bytes or NULL. */
static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	size_t n;

	if (f == NULL)
		return NULL;
	buf = malloc(FILE_MAX + 1);
	if (buf != NULL) {
		n = fread(buf, 1, FILE_MAX + 1, f);
		if (n > FILE_MAX || ferror(f)) {
			free(buf);
			buf = NULL;
		}
		*len = n;
	}
	fclose(f);
	return buf;
}

static EVP_PKEY *read_private_key(const char *path)
{
	FILE *f = fopen(path, "rb");
	EVP_PKEY *k;

	if (f == NULL)
		die("cannot open --key");
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL)
		die("--key holds no PEM private key");
	return k;
}

/* A value we put between quotes in the generated header. */
static void check_plain(const char *what, const char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			die(what);
}

static const EVP_MD *hmac_md(const char *alg)
{
	if (strcmp(alg, "HS256") == 0)
		return EVP_sha256();
	if (strcmp(alg, "HS384") == 0)
		return EVP_sha384();
	if (strcmp(alg, "HS512") == 0)
		return EVP_sha512();
	return NULL;
}

/* Signs `input` with a private key; returns the signature in JWS form
 * (raw R||S for ECDSA unless `der`), or NULL. */
static unsigned char *sign_pkey(EVP_PKEY *key, const char *input, int es, int der, size_t *siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = NULL, *raw = NULL, *ret = NULL;
	const unsigned char *p;
	size_t n = 0;
	ECDSA_SIG *es_sig = NULL;
	const BIGNUM *r, *s;

	if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(ctx, NULL, &n, (const unsigned char *)input, strlen(input)) != 1)
		goto out;
	sig = malloc(n);
	if (sig == NULL || EVP_DigestSign(ctx, sig, &n, (const unsigned char *)input, strlen(input)) != 1)
		goto out;
	if (!es || der) {
		*siglen = n;
		ret = sig;
		sig = NULL;
		goto out;
	}
	p = sig;
	es_sig = d2i_ECDSA_SIG(NULL, &p, (long)n);
	if (es_sig == NULL)
		goto out;
	ECDSA_SIG_get0(es_sig, &r, &s);
	raw = malloc(64);
	if (raw == NULL || BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
		goto out;
	*siglen = 64;
	ret = raw;
	raw = NULL;
out:
	EVP_MD_CTX_free(ctx);
	ECDSA_SIG_free(es_sig);
	free(sig);
	free(raw);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "alg", required_argument, NULL, 'a' },
		{ "secret", required_argument, NULL, 's' },
		{ "secret-file", required_argument, NULL, 'S' },
		{ "key", required_argument, NULL, 'k' },
		{ "kid", required_argument, NULL, 'i' },
		{ "claims", required_argument, NULL, 'c' },
		{ "header", required_argument, NULL, 'H' },
		{ "sign-as", required_argument, NULL, 'A' },
		{ "der", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *alg = NULL, *secret = NULL, *secret_file = NULL, *keyfile = NULL;
	const char *kid = NULL, *claims = NULL, *header_arg = NULL, *sign_as = NULL;
	size_t secret_len = 0, siglen = 0;
	char header[1024];
	const EVP_MD *md;
	int c, der = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': alg = optarg; break;
		case 's': secret = optarg; break;
		case 'S': secret_file = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'i': kid = optarg; break;
		case 'c': claims = optarg; break;
		case 'H': header_arg = optarg; break;
		case 'A': sign_as = optarg; break;
		case 'D': der = 1; break;
		default: usage();
		}
	}
	if (optind != argc || alg == NULL || claims == NULL || (secret && secret_file))
		usage();
	if (sign_as == NULL)
		sign_as = alg;
	if (strlen(claims) > TEXT_MAX || (header_arg && strlen(header_arg) > TEXT_MAX))
		die("--claims / --header too long");

	if (header_arg == NULL) {
		check_plain("--alg must not hold quotes, backslashes or control characters", alg);
		if (kid != NULL) {
			check_plain("--kid must not hold quotes, backslashes or control characters", kid);
			if (snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
				     alg, kid) >= (int)sizeof header)
				die("--alg/--kid too long");
		} else if (snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg) >=
			   (int)sizeof header) {
			die("--alg too long");
		}
		header_arg = header;
	}
	g.h64 = b64url((const unsigned char *)header_arg, strlen(header_arg));
	g.p64 = b64url((const unsigned char *)claims, strlen(claims));
	g.input = malloc(strlen(g.h64) + strlen(g.p64) + 2);
	if (g.input == NULL)
		die("out of memory");
	sprintf(g.input, "%s.%s", g.h64, g.p64);

	md = hmac_md(sign_as);
	if (md != NULL) {
		unsigned int n = 0;

		if (secret != NULL) {
			secret_len = strlen(secret);
			g.secret = malloc(secret_len + 1);
			if (g.secret == NULL)
				die("out of memory");
			memcpy(g.secret, secret, secret_len + 1);
		} else if (secret_file != NULL) {
			g.secret = read_file(secret_file, &secret_len);
			if (g.secret == NULL)
				die("cannot read --secret-file (missing, unreadable or over 1 MiB)");
		} else {
			die("HMAC needs --secret or --secret-file");
		}
		g.sig = malloc(EVP_MAX_MD_SIZE);
		if (g.sig == NULL || HMAC(md, g.secret, (int)secret_len, (const unsigned char *)g.input,
					strlen(g.input), g.sig, &n) == NULL)
			die("HMAC failed");
		siglen = n;
	} else if (strcmp(sign_as, "RS256") == 0 || strcmp(sign_as, "ES256") == 0) {
		int es = strcmp(sign_as, "ES256") == 0;

		if (keyfile == NULL)
			die("RS256/ES256 need --key PRIVATE.pem");
		g.key = read_private_key(keyfile);
		if (EVP_PKEY_is_a(g.key, es ? "EC" : "RSA") != 1)
			die(es ? "ES256 needs an EC key" : "RS256 needs an RSA key");
		g.sig = sign_pkey(g.key, g.input, es, der, &siglen);
		if (g.sig == NULL)
			die("cannot sign with --key");
	} else if (strcmp(sign_as, "none") == 0) {
		siglen = 0;
	} else {
		die("--sign-as / --alg: cannot sign with this algorithm (HS256 HS384 HS512 RS256 ES256 none)");
	}
	g.s64 = b64url(g.sig != NULL ? g.sig : (const unsigned char *)"", siglen);
	printf("%s.%s\n", g.input, g.s64);

	release();
	return fflush(stdout) == 0 ? 0 : 1;
}

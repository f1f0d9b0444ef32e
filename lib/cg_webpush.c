/* cg_webpush: RFC 8291 aes128gcm message encryption and RFC 8292 VAPID over OpenSSL 3. */
#define _GNU_SOURCE
#include "config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include "cg_json.h"
#include "cg_jwt.h"
#include "cg_util.h"
#include "cg_webpush.h"

#define WP_TAG_LEN 16
#define WP_NONCE_LEN 12
#define WP_CEK_LEN 16
#define WP_SECRET_LEN 32
#define WP_RS_MIN 18                  /* RFC 8188: rs < 18 is invalid */
#define WP_DECRYPT_MAX 65536          /* largest body the receiver side looks at */
#define WP_KEY_ARG_MAX 256            /* base64 text of a subscription key */
#define WP_ORIGIN_MAX 256             /* "scheme://host[:port]" with the NUL */
#define WP_SUBJECT_MAX 200            /* "sub" claim */
#define WP_AUTH_IN_MAX 4096           /* Authorization header value we parse */
#define WP_JSON_DEPTH 4
#define VAPID_CACHE_SLOTS 64
#define VAPID_TTL (12 * 3600)         /* exp = now + 12 h */
#define VAPID_REMINT (3600)           /* re-mint when less than 1 h is left */
#define VAPID_MAX_AHEAD (24 * 3600)   /* RFC 8292: exp at most 24 h ahead */
#define VAPID_JWT_HEADER "{\"typ\":\"JWT\",\"alg\":\"ES256\"}"

static const char key_info_label[] = "WebPush: info";           /* + 0x00 */
static const char cek_info[] = "Content-Encoding: aes128gcm";    /* + 0x00 */
static const char nonce_info[] = "Content-Encoding: nonce";      /* + 0x00 */

/* ---- P-256 keys from raw bytes ------------------------------------------ */

/* 1 when pub is an uncompressed (0x04) point on P-256. */
static int p256_point_ok(const unsigned char pub[CG_WEBPUSH_PUBKEY_LEN])
{
	EC_GROUP *g = NULL;
	EC_POINT *pt = NULL;
	int ok = 0;

	if (pub[0] != 0x04)
		goto out;
	g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	if (g == NULL)
		goto out;
	pt = EC_POINT_new(g);
	if (pt == NULL)
		goto out;
	/* oct2point refuses coordinates that are not on the curve. */
	if (EC_POINT_oct2point(g, pt, pub, CG_WEBPUSH_PUBKEY_LEN, NULL) != 1)
		goto out;
	ok = EC_POINT_is_on_curve(g, pt, NULL) == 1 && !EC_POINT_is_at_infinity(g, pt);
out:
	EC_POINT_free(pt);
	EC_GROUP_free(g);
	ERR_clear_error();
	return ok;
}

/* The public point priv·G (uncompressed) of a private scalar, which must be
 * in [1, n-1]. Returns 0 or -1 with the reason. */
static int p256_public_of(const unsigned char priv[CG_WEBPUSH_PRIVKEY_LEN],
			  unsigned char pub[CG_WEBPUSH_PUBKEY_LEN], char *err, size_t errlen)
{
	EC_GROUP *g = NULL;
	EC_POINT *pt = NULL;
	BIGNUM *d = NULL;
	int rc = -1;

	ERR_clear_error();
	g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	d = BN_bin2bn(priv, CG_WEBPUSH_PRIVKEY_LEN, NULL);
	if (g == NULL || d == NULL) {
		cg_ossl_err(err, errlen, "private key");
		goto out;
	}
	if (BN_is_zero(d) || BN_cmp(d, EC_GROUP_get0_order(g)) >= 0) {
		cg_set_err(err, errlen, "private key: scalar out of range for P-256");
		goto out;
	}
	pt = EC_POINT_new(g);
	if (pt == NULL || EC_POINT_mul(g, pt, d, NULL, NULL, NULL) != 1 ||
	    EC_POINT_point2oct(g, pt, POINT_CONVERSION_UNCOMPRESSED, pub, CG_WEBPUSH_PUBKEY_LEN,
			       NULL) != CG_WEBPUSH_PUBKEY_LEN) {
		cg_ossl_err(err, errlen, "private key: cannot derive the public key");
		goto out;
	}
	rc = 0;
out:
	BN_clear_free(d);
	EC_POINT_free(pt);
	EC_GROUP_free(g);
	return rc;
}

/* An EVP_PKEY on P-256 from a public point and, when priv is not NULL, its
 * private scalar (the caller has checked that they belong together). */
static EVP_PKEY *p256_pkey(const unsigned char *priv,
			   const unsigned char pub[CG_WEBPUSH_PUBKEY_LEN],
			   char *err, size_t errlen)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *d = NULL;

	ERR_clear_error();
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
					     CG_WEBPUSH_PUBKEY_LEN) != 1)
		goto fail;
	if (priv != NULL) {
		d = BN_secure_new();
		if (d == NULL || BN_bin2bn(priv, CG_WEBPUSH_PRIVKEY_LEN, d) == NULL ||
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1)
			goto fail;
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, priv != NULL ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
			      params) != 1) {
		pkey = NULL;
		goto fail;
	}
	goto out;
fail:
	cg_ossl_err(err, errlen, "cannot build a P-256 key");
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(d);
	return pkey;
}

/* The 32-byte private scalar of an EC key. Returns 0 or -1. */
static int p256_private_of(EVP_PKEY *pkey, unsigned char priv[CG_WEBPUSH_PRIVKEY_LEN])
{
	BIGNUM *d = NULL;
	int rc = -1;

	if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1)
		goto out;
	if (BN_bn2binpad(d, priv, CG_WEBPUSH_PRIVKEY_LEN) != CG_WEBPUSH_PRIVKEY_LEN)
		goto out;
	rc = 0;
out:
	BN_clear_free(d);
	ERR_clear_error();
	return rc;
}

/* A fresh P-256 key pair as raw bytes. Returns 0 or -1. */
static int p256_generate(unsigned char priv[CG_WEBPUSH_PRIVKEY_LEN],
			 unsigned char pub[CG_WEBPUSH_PUBKEY_LEN], char *err, size_t errlen)
{
	EVP_PKEY *pkey;
	int rc = -1;

	ERR_clear_error();
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (pkey == NULL) {
		cg_ossl_err(err, errlen, "P-256 key generation");
		goto out;
	}
	if (p256_private_of(pkey, priv) != 0) {
		cg_set_err(err, errlen, "P-256 key generation: cannot read the private key");
		goto out;
	}
	rc = p256_public_of(priv, pub, err, errlen);
out:
	EVP_PKEY_free(pkey);
	return rc;
}

/* ---- RFC 8291 key derivation -------------------------------------------- */

/* HKDF-SHA-256 (extract and expand) of `ikm` with `salt` and `info` into
 * out[outlen]. Returns 0 or -1. */
static int hkdf(const unsigned char *salt, size_t saltlen, const unsigned char *ikm, size_t ikmlen,
		const unsigned char *info, size_t infolen, unsigned char *out, size_t outlen,
		char *err, size_t errlen)
{
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *kctx = NULL;
	OSSL_PARAM p[5];
	int rc = -1;

	ERR_clear_error();
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (kdf != NULL)
		kctx = EVP_KDF_CTX_new(kdf);
	if (kctx == NULL) {
		cg_ossl_err(err, errlen, "HKDF");
		goto out;
	}
	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen);
	p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
	p[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
	p[4] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, outlen, p) != 1) {
		cg_ossl_err(err, errlen, "HKDF");
		goto out;
	}
	rc = 0;
out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return rc;
}

/* ECDH between our key pair (my_priv, my_pub) and the peer's public point,
 * then the RFC 8291 §3.3-3.4 / RFC 8188 §2.2-2.3 chain to the
 * content-encryption key and the nonce. ua_public/as_public are the user
 * agent's and the application server's public keys, in the key_info order
 * whichever side we are. Returns 0 or -1. */
static int derive_keys(const unsigned char my_priv[CG_WEBPUSH_PRIVKEY_LEN],
		       const unsigned char my_pub[CG_WEBPUSH_PUBKEY_LEN],
		       const unsigned char peer_pub[CG_WEBPUSH_PUBKEY_LEN],
		       const unsigned char ua_public[CG_WEBPUSH_PUBKEY_LEN],
		       const unsigned char as_public[CG_WEBPUSH_PUBKEY_LEN],
		       const unsigned char auth_secret[CG_WEBPUSH_AUTH_LEN],
		       const unsigned char salt[CG_WEBPUSH_SALT_LEN], unsigned char cek[WP_CEK_LEN],
		       unsigned char nonce[WP_NONCE_LEN], char *err, size_t errlen)
{
	unsigned char secret[WP_SECRET_LEN], ikm[WP_SECRET_LEN];
	unsigned char key_info[sizeof key_info_label + 2 * CG_WEBPUSH_PUBKEY_LEN];
	EVP_PKEY *mine = NULL, *peer = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	size_t slen = sizeof secret;
	int rc = -1;

	mine = p256_pkey(my_priv, my_pub, err, errlen);
	if (mine == NULL)
		goto out;
	peer = p256_pkey(NULL, peer_pub, err, errlen);
	if (peer == NULL)
		goto out;
	ERR_clear_error();
	ctx = EVP_PKEY_CTX_new(mine, NULL);
	if (ctx == NULL || EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1 ||
	    EVP_PKEY_derive(ctx, secret, &slen) != 1 || slen != sizeof secret) {
		cg_ossl_err(err, errlen, "ECDH");
		goto out;
	}
	/* sizeof key_info_label counts the NUL: "WebPush: info" 0x00. */
	memcpy(key_info, key_info_label, sizeof key_info_label);
	memcpy(key_info + sizeof key_info_label, ua_public, CG_WEBPUSH_PUBKEY_LEN);
	memcpy(key_info + sizeof key_info_label + CG_WEBPUSH_PUBKEY_LEN, as_public,
	       CG_WEBPUSH_PUBKEY_LEN);
	if (hkdf(auth_secret, CG_WEBPUSH_AUTH_LEN, secret, sizeof secret, key_info, sizeof key_info,
		 ikm, sizeof ikm, err, errlen) != 0 ||
	    hkdf(salt, CG_WEBPUSH_SALT_LEN, ikm, sizeof ikm, (const unsigned char *)cek_info,
		 sizeof cek_info, cek, WP_CEK_LEN, err, errlen) != 0 ||
	    hkdf(salt, CG_WEBPUSH_SALT_LEN, ikm, sizeof ikm, (const unsigned char *)nonce_info,
		 sizeof nonce_info, nonce, WP_NONCE_LEN, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(secret, sizeof secret);
	OPENSSL_cleanse(ikm, sizeof ikm);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(mine);
	EVP_PKEY_free(peer);
	return rc;
}

/* ---- Subscription keys -------------------------------------------------- */

/* Decodes base64 or base64url text, padded or not, into exactly `want`
 * bytes. Returns 0, -1 (not base64), -2 (wrong length). */
static int b64_any_decode(const char *in, unsigned char *out, size_t want)
{
	char tmp[WP_KEY_ARG_MAX + 1];
	unsigned char buf[WP_KEY_ARG_MAX];
	size_t n, i;
	long got;

	n = strnlen(in, WP_KEY_ARG_MAX + 1);
	if (n == 0 || n > WP_KEY_ARG_MAX)
		return -2;
	for (i = 0; i < n; i++)
		tmp[i] = in[i] == '+' ? '-' : in[i] == '/' ? '_' : in[i];
	got = cg_b64url_decode(tmp, n, buf, sizeof buf);
	if (got < 0)
		return -1;
	if ((size_t)got != want)
		return -2;
	memcpy(out, buf, want);
	OPENSSL_cleanse(buf, sizeof buf);
	return 0;
}

int cg_webpush_keys_parse(const char *p256dh, const char *auth,
			  unsigned char ua_public[CG_WEBPUSH_PUBKEY_LEN],
			  unsigned char auth_secret[CG_WEBPUSH_AUTH_LEN], char *err, size_t errlen)
{
	int r;

	if (p256dh == NULL || p256dh[0] == '\0') {
		cg_set_err(err, errlen, "p256dh: missing");
		return -1;
	}
	if (auth == NULL || auth[0] == '\0') {
		cg_set_err(err, errlen, "auth: missing");
		return -1;
	}
	r = b64_any_decode(p256dh, ua_public, CG_WEBPUSH_PUBKEY_LEN);
	if (r != 0) {
		cg_set_err(err, errlen, "p256dh: %s", r == -1 ? "not base64url" :
			   "not 65 bytes (an uncompressed P-256 point)");
		return -1;
	}
	if (ua_public[0] != 0x04) {
		cg_set_err(err, errlen, "p256dh: not an uncompressed point (first byte 0x%02x)",
			   ua_public[0]);
		return -1;
	}
	if (!p256_point_ok(ua_public)) {
		cg_set_err(err, errlen, "p256dh: not a point on the P-256 curve");
		return -1;
	}
	r = b64_any_decode(auth, auth_secret, CG_WEBPUSH_AUTH_LEN);
	if (r != 0) {
		cg_set_err(err, errlen, "auth: %s", r == -1 ? "not base64url" : "not 16 bytes");
		return -1;
	}
	return 0;
}

/* ---- Encryption and decryption ------------------------------------------ */

int cg_webpush_encrypt(const unsigned char ua_public[CG_WEBPUSH_PUBKEY_LEN],
		       const unsigned char auth_secret[CG_WEBPUSH_AUTH_LEN],
		       const unsigned char *plaintext, size_t len,
		       const unsigned char *salt, const unsigned char *as_private,
		       unsigned char **body, size_t *bodylen, char *err, size_t errlen)
{
	static const unsigned char delimiter = 0x02;
	unsigned char as_priv[CG_WEBPUSH_PRIVKEY_LEN], as_pub[CG_WEBPUSH_PUBKEY_LEN];
	unsigned char cek[WP_CEK_LEN], nonce[WP_NONCE_LEN];
	EVP_CIPHER_CTX *c = NULL;
	unsigned char *out = NULL, *p;
	size_t total;
	int n, rc = -1;

	*body = NULL;
	*bodylen = 0;
	if (len > CG_WEBPUSH_MAX_PLAINTEXT) {
		cg_set_err(err, errlen, "payload of %zu bytes is over the %d-byte Web Push limit", len,
			   CG_WEBPUSH_MAX_PLAINTEXT);
		goto out;
	}
	if (plaintext == NULL && len > 0) {
		cg_set_err(err, errlen, "no plaintext");
		goto out;
	}
	if (!p256_point_ok(ua_public)) {
		cg_set_err(err, errlen, "subscription key is not a P-256 point");
		goto out;
	}
	total = CG_WEBPUSH_HEADER_LEN + len + 1 + WP_TAG_LEN;
	out = malloc(total);
	if (out == NULL) {
		cg_set_err(err, errlen, "out of memory");
		goto out;
	}
	/* The header: salt, rs, idlen, keyid = our ephemeral public key. */
	if (salt != NULL)
		memcpy(out, salt, CG_WEBPUSH_SALT_LEN);
	else if (RAND_bytes(out, CG_WEBPUSH_SALT_LEN) != 1) {
		cg_ossl_err(err, errlen, "salt");
		goto out;
	}
	if (as_private != NULL) {
		memcpy(as_priv, as_private, sizeof as_priv);
		if (p256_public_of(as_priv, as_pub, err, errlen) != 0)
			goto out;
	} else if (p256_generate(as_priv, as_pub, err, errlen) != 0) {
		goto out;
	}
	if (derive_keys(as_priv, as_pub, ua_public, ua_public, as_pub, auth_secret, out, cek, nonce,
			err, errlen) != 0)
		goto out;
	p = out + CG_WEBPUSH_SALT_LEN;
	*p++ = (unsigned char)(CG_WEBPUSH_RS >> 24);
	*p++ = (unsigned char)(CG_WEBPUSH_RS >> 16 & 0xff);
	*p++ = (unsigned char)(CG_WEBPUSH_RS >> 8 & 0xff);
	*p++ = (unsigned char)(CG_WEBPUSH_RS & 0xff);
	*p++ = CG_WEBPUSH_PUBKEY_LEN;
	memcpy(p, as_pub, CG_WEBPUSH_PUBKEY_LEN);
	p += CG_WEBPUSH_PUBKEY_LEN;

	/* One record: plaintext || 0x02, no padding, then the tag. */
	ERR_clear_error();
	c = EVP_CIPHER_CTX_new();
	if (c == NULL || EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, WP_NONCE_LEN, NULL) != 1 ||
	    EVP_EncryptInit_ex(c, NULL, NULL, cek, nonce) != 1)
		goto ossl;
	if (len > 0) {
		if (EVP_EncryptUpdate(c, p, &n, plaintext, (int)len) != 1 || (size_t)n != len)
			goto ossl;
		p += n;
	}
	if (EVP_EncryptUpdate(c, p, &n, &delimiter, 1) != 1 || n != 1)
		goto ossl;
	p += n;
	if (EVP_EncryptFinal_ex(c, p, &n) != 1 || n != 0 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, WP_TAG_LEN, p) != 1)
		goto ossl;
	*body = out;
	*bodylen = total;
	out = NULL;
	rc = 0;
	goto out;
ossl:
	cg_ossl_err(err, errlen, "AES-128-GCM");
out:
	OPENSSL_cleanse(as_priv, sizeof as_priv);
	OPENSSL_cleanse(cek, sizeof cek);
	OPENSSL_cleanse(nonce, sizeof nonce);
	EVP_CIPHER_CTX_free(c);
	free(out);
	return rc;
}

int cg_webpush_decrypt(const unsigned char ua_private[CG_WEBPUSH_PRIVKEY_LEN],
		       const unsigned char ua_public[CG_WEBPUSH_PUBKEY_LEN],
		       const unsigned char auth_secret[CG_WEBPUSH_AUTH_LEN],
		       const unsigned char *body, size_t len,
		       unsigned char **plaintext, size_t *ptlen, char *err, size_t errlen)
{
	unsigned char derived[CG_WEBPUSH_PUBKEY_LEN], cek[WP_CEK_LEN], nonce[WP_NONCE_LEN];
	unsigned char tag[WP_TAG_LEN];
	const unsigned char *keyid, *ct;
	EVP_CIPHER_CTX *c = NULL;
	unsigned char *out = NULL;
	size_t ctlen = 0, i;
	uint32_t rs;
	int n, rc = -1;

	*plaintext = NULL;
	*ptlen = 0;
	if (body == NULL || len < CG_WEBPUSH_SALT_LEN + 5) {
		cg_set_err(err, errlen, "truncated header (%zu bytes)", body == NULL ? 0 : len);
		goto out;
	}
	if (len > WP_DECRYPT_MAX) {
		cg_set_err(err, errlen, "body of %zu bytes is over %d", len, WP_DECRYPT_MAX);
		goto out;
	}
	rs = (uint32_t)body[16] << 24 | (uint32_t)body[17] << 16 | (uint32_t)body[18] << 8 | body[19];
	if (rs < WP_RS_MIN) {
		cg_set_err(err, errlen, "record size %u is under %d", (unsigned)rs, WP_RS_MIN);
		goto out;
	}
	if (body[20] != CG_WEBPUSH_PUBKEY_LEN) {
		cg_set_err(err, errlen, "key id length %u is not %d", body[20], CG_WEBPUSH_PUBKEY_LEN);
		goto out;
	}
	if (len < CG_WEBPUSH_HEADER_LEN) {
		cg_set_err(err, errlen, "truncated header (%zu bytes)", len);
		goto out;
	}
	keyid = body + 21;
	if (!p256_point_ok(keyid)) {
		cg_set_err(err, errlen, "key id is not an uncompressed P-256 point");
		goto out;
	}
	ct = body + CG_WEBPUSH_HEADER_LEN;
	ctlen = len - CG_WEBPUSH_HEADER_LEN;
	if (ctlen < WP_TAG_LEN + 1) {
		cg_set_err(err, errlen, "truncated record (%zu bytes)", ctlen);
		goto out;
	}
	/* RFC 8291 §4: one record, and rs exceeds it. */
	if (ctlen >= rs) {
		cg_set_err(err, errlen, "record of %zu bytes does not fit record size %u", ctlen,
			   (unsigned)rs);
		goto out;
	}
	if (p256_public_of(ua_private, derived, err, errlen) != 0)
		goto out;
	if (CRYPTO_memcmp(derived, ua_public, sizeof derived) != 0) {
		cg_set_err(err, errlen, "subscription private key does not match its public key");
		goto out;
	}
	if (derive_keys(ua_private, ua_public, keyid, ua_public, keyid, auth_secret, body, cek, nonce,
			err, errlen) != 0)
		goto out;
	ctlen -= WP_TAG_LEN;
	memcpy(tag, ct + ctlen, WP_TAG_LEN);
	out = malloc(ctlen + 1);
	if (out == NULL) {
		cg_set_err(err, errlen, "out of memory");
		goto out;
	}
	ERR_clear_error();
	c = EVP_CIPHER_CTX_new();
	if (c == NULL || EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, WP_NONCE_LEN, NULL) != 1 ||
	    EVP_DecryptInit_ex(c, NULL, NULL, cek, nonce) != 1 ||
	    EVP_DecryptUpdate(c, out, &n, ct, (int)ctlen) != 1 || (size_t)n != ctlen ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, WP_TAG_LEN, tag) != 1) {
		cg_ossl_err(err, errlen, "AES-128-GCM");
		goto out;
	}
	if (EVP_DecryptFinal_ex(c, out + ctlen, &n) != 1) {
		ERR_clear_error();
		cg_set_err(err, errlen, "authentication tag mismatch (wrong keys or tampered body)");
		goto out;
	}
	/* The delimiter is the last non-zero byte; zeros after it are padding. */
	i = ctlen;
	while (i > 0 && out[i - 1] == 0x00)
		i--;
	if (i == 0 || out[i - 1] != 0x02) {
		cg_set_err(err, errlen, i == 0 ? "record has no delimiter" :
			   "record delimiter is not 0x02 (not the last record)");
		goto out;
	}
	i--;
	out[i] = '\0';
	*plaintext = out;
	*ptlen = i;
	out = NULL;
	rc = 0;
out:
	OPENSSL_cleanse(cek, sizeof cek);
	OPENSSL_cleanse(nonce, sizeof nonce);
	EVP_CIPHER_CTX_free(c);
	if (out != NULL) {
		OPENSSL_cleanse(out, ctlen);
		free(out);
	}
	return rc;
}

/* ---- Origins ------------------------------------------------------------ */

/* Host characters we let into an origin (it goes into the JWT's aud
 * verbatim): letters, digits, '-', '.', '_'; inside [] also ':'. */
static int host_char_ok(unsigned char ch, int bracketed)
{
	if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_')
		return 1;
	return bracketed && ch == ':';
}

/* Userinfo ("user:pass@host") is refused, not stripped: a push endpoint
 * never carries credentials, and a URL that does is not one we were given
 * by a browser. */
int cg_url_origin(const char *url, char *out, size_t outlen)
{
	const char *p, *auth_end, *host, *host_end, *port = NULL;
	unsigned long portnum = 0;
	unsigned deflt;
	size_t scheme_len, i, hlen;
	int n;

	if (url == NULL || out == NULL || outlen == 0)
		return -1;
	if (strncasecmp(url, "https://", 8) == 0) {
		scheme_len = 5;
		deflt = 443;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		scheme_len = 4;
		deflt = 80;
	} else {
		return -1;
	}
	host = url + scheme_len + 3;
	auth_end = host + strcspn(host, "/?#");
	if (memchr(host, '@', (size_t)(auth_end - host)) != NULL)
		return -1;
	if (host[0] == '[') {
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (host_end == NULL)
			return -1;
		host_end++;
		for (p = host + 1; p < host_end - 1; p++)
			if (!host_char_ok((unsigned char)*p, 1))
				return -1;
		if (host_end - host < 3)
			return -1;
	} else {
		host_end = host;
		while (host_end < auth_end && *host_end != ':') {
			if (!host_char_ok((unsigned char)*host_end, 0))
				return -1;
			host_end++;
		}
		if (host_end == host)
			return -1;
	}
	if (host_end < auth_end) {
		if (*host_end != ':')
			return -1;
		port = host_end + 1;
		if (port == auth_end) {
			port = NULL; /* "host:" means the default port */
		} else {
			for (p = port; p < auth_end; p++) {
				if (*p < '0' || *p > '9')
					return -1;
				portnum = portnum * 10 + (unsigned long)(*p - '0');
				if (portnum > 65535)
					return -1;
			}
			if (portnum == 0)
				return -1;
			if (portnum == deflt)
				port = NULL;
		}
	}
	hlen = (size_t)(host_end - host);
	if (scheme_len + 3 + hlen + 1 > outlen)
		return -1;
	memcpy(out, url, scheme_len);
	memcpy(out + scheme_len, "://", 3);
	for (i = 0; i < scheme_len; i++)
		out[i] = (char)tolower((unsigned char)out[i]);
	for (i = 0; i < hlen; i++)
		out[scheme_len + 3 + i] = (char)tolower((unsigned char)host[i]);
	out[scheme_len + 3 + hlen] = '\0';
	if (port != NULL) {
		n = snprintf(out + scheme_len + 3 + hlen, outlen - (scheme_len + 3 + hlen), ":%lu",
			     portnum);
		if (n < 0 || (size_t)n >= outlen - (scheme_len + 3 + hlen))
			return -1;
	}
	return 0;
}

/* ---- VAPID -------------------------------------------------------------- */

typedef struct vapid_slot {
	char origin[WP_ORIGIN_MAX];   /* "" when free */
	char *jwt;
	long long exp;
	uint64_t used;                /* LRU clock */
} vapid_slot;

struct cg_vapid {
	EVP_PKEY *pkey;
	char subject[WP_SUBJECT_MAX + 1];
	char public_b64[CG_WEBPUSH_KEY_B64_MAX];
	vapid_slot slots[VAPID_CACHE_SLOTS];
	uint64_t clock;
};

/* 1 when s is a mailto: or https: URL we can put in a JSON string as is. */
static int subject_ok(const char *s)
{
	size_t i, n = strnlen(s, WP_SUBJECT_MAX + 1);

	if (n > WP_SUBJECT_MAX)
		return 0;
	if (!((strncasecmp(s, "mailto:", 7) == 0 && n > 7) ||
	      (strncasecmp(s, "https:", 6) == 0 && n > 6)))
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
			return 0;
	}
	return 1;
}

/* The private scalar from a PEM file (SEC1 or PKCS#8 P-256). */
static int pem_private(const char *path, unsigned char priv[CG_WEBPUSH_PRIVKEY_LEN], char *err,
		       size_t errlen)
{
	cg_es256_key *k;
	int rc = -1;

	k = cg_es256_key_load(path, err, errlen);
	if (k == NULL)
		return -1;
	if (p256_private_of(cg_es256_key_pkey(k), priv) != 0) {
		cg_set_err(err, errlen, "key %s: cannot read the private scalar", path);
		goto out;
	}
	rc = 0;
out:
	cg_es256_key_free(k);
	return rc;
}

cg_vapid *cg_vapid_load(const char *private_key, const char *subject, char *err, size_t errlen)
{
	unsigned char priv[CG_WEBPUSH_PRIVKEY_LEN], pub[CG_WEBPUSH_PUBKEY_LEN];
	cg_vapid *v = NULL, *ret = NULL;
	size_t n;
	long got;

	if (private_key == NULL || private_key[0] == '\0') {
		cg_set_err(err, errlen, "VAPID private key: missing");
		goto out;
	}
	if (subject == NULL || !subject_ok(subject)) {
		cg_set_err(err, errlen, "VAPID subject: must be a mailto: or https: URL of at most %d "
			   "printable characters", WP_SUBJECT_MAX);
		goto out;
	}
	/* 43 base64url characters (44 padded) decoding to 32 bytes are the raw
	 * scalar; anything else names a PEM file. */
	n = strnlen(private_key, 45);
	got = -1;
	if (n == 43 || n == 44)
		got = cg_b64url_decode(private_key, n, priv, sizeof priv);
	if (got == CG_WEBPUSH_PRIVKEY_LEN) {
		if (p256_public_of(priv, pub, err, errlen) != 0)
			goto out;
	} else {
		if (pem_private(private_key, priv, err, errlen) != 0 ||
		    p256_public_of(priv, pub, err, errlen) != 0)
			goto out;
	}
	v = calloc(1, sizeof *v);
	if (v == NULL) {
		cg_set_err(err, errlen, "out of memory");
		goto out;
	}
	v->pkey = p256_pkey(priv, pub, err, errlen);
	if (v->pkey == NULL)
		goto out;
	memcpy(v->subject, subject, strlen(subject) + 1);
	if (cg_b64url_encode(pub, sizeof pub, v->public_b64, sizeof v->public_b64) < 0) {
		cg_set_err(err, errlen, "cannot encode the public key");
		goto out;
	}
	ret = v;
	v = NULL;
out:
	OPENSSL_cleanse(priv, sizeof priv);
	cg_vapid_free(v);
	return ret;
}

void cg_vapid_free(cg_vapid *v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < VAPID_CACHE_SLOTS; i++)
		free(v->slots[i].jwt);
	EVP_PKEY_free(v->pkey);
	free(v);
}

const char *cg_vapid_public_key(const cg_vapid *v)
{
	return v->public_b64;
}

/* The cached slot for origin when its JWT is still good at `now`, else the
 * slot to (re)use: the origin's own, a free one, or the least recently used. */
static vapid_slot *vapid_slot_for(cg_vapid *v, const char *origin, time_t now, int *fresh)
{
	vapid_slot *s, *victim = NULL;
	size_t i;

	*fresh = 0;
	for (i = 0; i < VAPID_CACHE_SLOTS; i++) {
		s = &v->slots[i];
		if (s->origin[0] != '\0' && strcmp(s->origin, origin) == 0) {
			/* Good while over an hour is left and not absurdly far
			 * ahead (the clock went back). */
			*fresh = s->exp - (long long)now >= VAPID_REMINT &&
				 s->exp - (long long)now <= VAPID_MAX_AHEAD;
			return s;
		}
		if (victim == NULL || (victim->origin[0] != '\0' &&
				       (s->origin[0] == '\0' || s->used < victim->used)))
			victim = s;
	}
	return victim;
}

int cg_vapid_authorization(cg_vapid *v, const char *endpoint, time_t now, char *out,
			   size_t outlen, char *err, size_t errlen)
{
	char origin[WP_ORIGIN_MAX], claims[WP_ORIGIN_MAX + WP_SUBJECT_MAX + 64];
	vapid_slot *s;
	char *jwt = NULL;
	long long exp;
	int fresh, n;

	if (out != NULL && outlen > 0)
		out[0] = '\0';
	if (v == NULL || out == NULL || outlen == 0) {
		cg_set_err(err, errlen, "VAPID: no key or no output buffer");
		return -1;
	}
	if (endpoint == NULL || cg_url_origin(endpoint, origin, sizeof origin) != 0) {
		cg_set_err(err, errlen, "VAPID: endpoint is not an http(s) URL with a host "
			   "(origin at most %d bytes)", WP_ORIGIN_MAX - 1);
		return -1;
	}
	s = vapid_slot_for(v, origin, now, &fresh);
	if (!fresh) {
		exp = (long long)now + VAPID_TTL;
		n = snprintf(claims, sizeof claims, "{\"aud\":\"%s\",\"exp\":%lld,\"sub\":\"%s\"}",
			     origin, exp, v->subject);
		if (n < 0 || (size_t)n >= sizeof claims ||
		    cg_es256_sign_jws_pkey(v->pkey, VAPID_JWT_HEADER, claims, &jwt) != 0) {
			cg_set_err(err, errlen, "VAPID: cannot sign the JWT");
			return -1;
		}
		free(s->jwt);
		s->jwt = jwt;
		s->exp = exp;
		memcpy(s->origin, origin, strlen(origin) + 1);
	}
	s->used = ++v->clock;
	n = snprintf(out, outlen, "vapid t=%s, k=%s", s->jwt, v->public_b64);
	if (n < 0 || (size_t)n >= outlen) {
		out[0] = '\0';
		cg_set_err(err, errlen, "VAPID: Authorization header longer than %zu bytes", outlen);
		return -1;
	}
	return 0;
}

int cg_vapid_generate(char *private_b64, char *public_b64)
{
	unsigned char priv[CG_WEBPUSH_PRIVKEY_LEN], pub[CG_WEBPUSH_PUBKEY_LEN];
	int rc = -1;

	if (p256_generate(priv, pub, NULL, 0) != 0)
		goto out;
	if (cg_b64url_encode(priv, sizeof priv, private_b64, CG_WEBPUSH_KEY_B64_MAX) < 0 ||
	    cg_b64url_encode(pub, sizeof pub, public_b64, CG_WEBPUSH_KEY_B64_MAX) < 0)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(priv, sizeof priv);
	return rc;
}

/* ---- VAPID verification (push-service side) ------------------------------ */

/* Checks an ES256 raw R||S signature over signing_input with a public point.
 * Returns 1 valid, 0 not. */
static int es256_verify(const unsigned char pub[CG_WEBPUSH_PUBKEY_LEN], const char *input,
			size_t inlen, const unsigned char raw[64])
{
	unsigned char der[80], *dp = der;
	ECDSA_SIG *sig = NULL;
	BIGNUM *r = NULL, *s = NULL;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY *pkey = NULL;
	int derlen, ok = 0;

	pkey = p256_pkey(NULL, pub, NULL, 0);
	sig = ECDSA_SIG_new();
	r = BN_bin2bn(raw, 32, NULL);
	s = BN_bin2bn(raw + 32, 32, NULL);
	if (pkey == NULL || sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1)
		goto out;
	r = s = NULL; /* owned by sig now */
	if (i2d_ECDSA_SIG(sig, NULL) > (int)sizeof der)
		goto out;
	derlen = i2d_ECDSA_SIG(sig, &dp);
	if (derlen <= 0)
		goto out;
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1)
		goto out;
	ok = EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)input, inlen) == 1;
out:
	EVP_MD_CTX_free(md);
	ECDSA_SIG_free(sig);
	BN_free(r);
	BN_free(s);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return ok;
}

/* Decodes one base64url JWT segment [p, e) as a JSON object. NULL when it
 * is not one. */
static json_object *jwt_part_json(const char *p, const char *e)
{
	char buf[WP_AUTH_IN_MAX];
	long n;

	n = cg_b64url_decode(p, (size_t)(e - p), buf, sizeof buf - 1);
	if (n <= 0)
		return NULL;
	return cg_json_parse_object(buf, (size_t)n, WP_JSON_DEPTH, NULL, 0);
}

/* Splits `vapid t=..., k=...` into t and k (pointers into copy, which the
 * caller owns and this function edits). Returns 0 or -1. */
static int vapid_params(char *copy, const char **t, const char **k)
{
	char *p = copy, *item, *save = NULL, *eq, *name, *val, *e;

	*t = *k = NULL;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "vapid", 5) != 0 || (p[5] != ' ' && p[5] != '\t'))
		return -1;
	p += 5;
	for (item = strtok_r(p, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		if (item[strspn(item, " \t")] == '\0')
			continue; /* empty item, e.g. a trailing comma */
		eq = strchr(item, '=');
		if (eq == NULL)
			return -1;
		*eq = '\0';
		name = item;
		val = eq + 1;
		while (*name == ' ' || *name == '\t')
			name++;
		for (e = eq; e > name && (e[-1] == ' ' || e[-1] == '\t'); e--)
			e[-1] = '\0';
		while (*val == ' ' || *val == '\t')
			val++;
		for (e = val + strlen(val); e > val && (e[-1] == ' ' || e[-1] == '\t'); e--)
			e[-1] = '\0';
		if (strcasecmp(name, "t") == 0) {
			if (*t != NULL)
				return -1;
			*t = val;
		} else if (strcasecmp(name, "k") == 0) {
			if (*k != NULL)
				return -1;
			*k = val;
		}
	}
	return *t != NULL && *k != NULL && (*t)[0] != '\0' && (*k)[0] != '\0' ? 0 : -1;
}

/* Malformed (-1, 401): no header, wrong scheme, t or k missing, k not
 * base64url of 65 bytes, the JWT not three base64url parts of JSON objects.
 * Invalid (-2, 403): k not on the curve, wrong typ/alg, bad signature, and
 * every claim rule (aud, exp, sub). */
int cg_vapid_verify(const char *authorization, const char *expected_origin, time_t now,
		    char *k_out, char *err, size_t errlen)
{
	unsigned char pub[CG_WEBPUSH_PUBKEY_LEN], sig[WP_AUTH_IN_MAX];
	json_object *hdr = NULL, *claims = NULL;
	const char *t, *k, *dot1, *dot2, *s;
	char *copy = NULL;
	long long exp;
	size_t n;
	long got;
	int rc = -1;

	if (k_out != NULL)
		k_out[0] = '\0';
	if (authorization == NULL || authorization[0] == '\0') {
		cg_set_err(err, errlen, "no Authorization header");
		goto out;
	}
	n = strnlen(authorization, WP_AUTH_IN_MAX + 1);
	if (n > WP_AUTH_IN_MAX) {
		cg_set_err(err, errlen, "Authorization header over %d bytes", WP_AUTH_IN_MAX);
		goto out;
	}
	copy = strndup(authorization, n);
	if (copy == NULL) {
		cg_set_err(err, errlen, "out of memory");
		goto out;
	}
	if (vapid_params(copy, &t, &k) != 0) {
		cg_set_err(err, errlen, "not \"vapid t=<JWT>, k=<key>\"");
		goto out;
	}
	got = cg_b64url_decode(k, strlen(k), pub, sizeof pub);
	if (got != CG_WEBPUSH_PUBKEY_LEN) {
		cg_set_err(err, errlen, "k is not the base64url of a 65-byte key");
		goto out;
	}
	dot1 = strchr(t, '.');
	dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
	if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL || dot1 == t || dot2 == dot1 + 1 ||
	    dot2[1] == '\0') {
		cg_set_err(err, errlen, "t is not a JWS compact serialisation");
		goto out;
	}
	hdr = jwt_part_json(t, dot1);
	claims = jwt_part_json(dot1 + 1, dot2);
	got = cg_b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof sig);
	if (hdr == NULL || claims == NULL || got < 0) {
		cg_set_err(err, errlen, "JWT parts are not base64url JSON objects and a signature");
		goto out;
	}
	/* Well-formed from here on: every failure is "invalid". */
	rc = -2;
	if (!p256_point_ok(pub)) {
		cg_set_err(err, errlen, "k is not a P-256 point");
		goto out;
	}
	if (cg_json_get_string(hdr, "typ", 16, &s) != CG_JSON_OK || strcasecmp(s, "JWT") != 0) {
		cg_set_err(err, errlen, "JWT header typ is not JWT");
		goto out;
	}
	if (cg_json_get_string(hdr, "alg", 16, &s) != CG_JSON_OK || strcmp(s, "ES256") != 0) {
		cg_set_err(err, errlen, "JWT header alg is not ES256");
		goto out;
	}
	if (got != 64 || !es256_verify(pub, t, (size_t)(dot2 - t), sig)) {
		cg_set_err(err, errlen, "JWT signature does not verify with k");
		goto out;
	}
	if (cg_json_get_string(claims, "aud", WP_ORIGIN_MAX, &s) != CG_JSON_OK ||
	    expected_origin == NULL || strcmp(s, expected_origin) != 0) {
		cg_set_err(err, errlen, "JWT aud is not %s", expected_origin ? expected_origin : "(none)");
		goto out;
	}
	if (cg_json_get_int64(claims, "exp", &exp) != CG_JSON_OK) {
		cg_set_err(err, errlen, "JWT has no integer exp");
		goto out;
	}
	if (exp <= (long long)now) {
		cg_set_err(err, errlen, "JWT expired");
		goto out;
	}
	if (exp > (long long)now + VAPID_MAX_AHEAD) {
		cg_set_err(err, errlen, "JWT exp is more than 24 h ahead");
		goto out;
	}
	if (cg_json_get_string(claims, "sub", 1024, &s) != CG_JSON_OK ||
	    !((strncasecmp(s, "mailto:", 7) == 0 && s[7] != '\0') ||
	      (strncasecmp(s, "https:", 6) == 0 && s[6] != '\0'))) {
		cg_set_err(err, errlen, "JWT sub is not a mailto: or https: URL");
		goto out;
	}
	if (k_out != NULL && cg_b64url_encode(pub, sizeof pub, k_out, CG_WEBPUSH_KEY_B64_MAX) < 0) {
		cg_set_err(err, errlen, "cannot encode k");
		goto out;
	}
	rc = 0;
out:
	if (hdr != NULL)
		json_object_put(hdr);
	if (claims != NULL)
		json_object_put(claims);
	free(copy);
	return rc;
}

/* cg_webpush: Web Push message encryption (RFC 8291 over RFC 8188 aes128gcm) and VAPID (RFC 8292), over OpenSSL 3.
 *
 * Written by hand over OpenSSL because no Debian-packaged C library does
 * Web Push encryption; the primitives (ECDH P-256, HKDF-SHA-256,
 * AES-128-GCM, ECDSA) are OpenSSL's, only the RFC 8291 framing is ours and
 * tests/unit/test_webpush.c reproduces the RFC 8291 Appendix A vector byte
 * for byte. See ../shared/PUSH.md part B for every rule followed here.
 *
 * All functions are thread-safe except where a cg_vapid is shared: one
 * cg_vapid per thread (its per-origin JWT cache is not locked). */
#ifndef CG_WEBPUSH_H
#define CG_WEBPUSH_H

#include <stddef.h>
#include <time.h>

#define CG_WEBPUSH_PUBKEY_LEN 65      /* uncompressed P-256 point 0x04||X||Y */
#define CG_WEBPUSH_PRIVKEY_LEN 32     /* P-256 private scalar */
#define CG_WEBPUSH_AUTH_LEN 16        /* subscription auth secret */
#define CG_WEBPUSH_SALT_LEN 16
#define CG_WEBPUSH_HEADER_LEN 86      /* salt(16) rs(4) idlen(1) keyid(65) */
#define CG_WEBPUSH_RS 4096            /* record size written */
#define CG_WEBPUSH_MAX_BODY 4096      /* a push service must accept this much */
#define CG_WEBPUSH_MAX_PLAINTEXT 3993 /* 4096 - 86 - 1 (delimiter) - 16 (tag) */
#define CG_WEBPUSH_AUTH_HEADER_MAX 1024 /* "vapid t=<jwt>, k=<key>" */
#define CG_WEBPUSH_KEY_B64_MAX 128    /* base64url of a key, with the NUL */

/* Decodes a subscription's keys as browsers send them (base64url, with or
 * without padding; standard base64 '+' '/' accepted too): `p256dh` must be
 * a 65-byte uncompressed point ON the P-256 curve, `auth` exactly 16 bytes.
 * Returns 0, or -1 with the reason in err (which key and why). */
int cg_webpush_keys_parse(const char *p256dh, const char *auth,
			  unsigned char ua_public[CG_WEBPUSH_PUBKEY_LEN],
			  unsigned char auth_secret[CG_WEBPUSH_AUTH_LEN], char *err, size_t errlen);

/* Encrypts `len` bytes (at most CG_WEBPUSH_MAX_PLAINTEXT) for one
 * subscription as one aes128gcm record (rs 4096, delimiter 0x02, no
 * padding): *body (malloc'ed, caller frees) = header || ciphertext || tag,
 * *bodylen = 86 + len + 17. `salt` and `as_private` are NULL in real use
 * (fresh random salt and a fresh ephemeral key pair per message); tests pass
 * the RFC's fixed ones. Returns 0, or -1 with the reason in err. */
int cg_webpush_encrypt(const unsigned char ua_public[CG_WEBPUSH_PUBKEY_LEN],
		       const unsigned char auth_secret[CG_WEBPUSH_AUTH_LEN],
		       const unsigned char *plaintext, size_t len,
		       const unsigned char *salt, const unsigned char *as_private,
		       unsigned char **body, size_t *bodylen, char *err, size_t errlen);

/* The receiver's side (the fake push service and the tests): checks the
 * header (rs >= 18, idlen 65, keyid a point on the curve, one record that
 * fits rs), derives the keys with the subscription's private key and auth
 * secret, decrypts and checks the tag and the 0x02 delimiter (padding
 * removed). *plaintext is malloc'ed (caller frees; NUL-terminated for
 * convenience, *ptlen excludes it). Returns 0, or -1 with the reason. */
int cg_webpush_decrypt(const unsigned char ua_private[CG_WEBPUSH_PRIVKEY_LEN],
		       const unsigned char ua_public[CG_WEBPUSH_PUBKEY_LEN],
		       const unsigned char auth_secret[CG_WEBPUSH_AUTH_LEN],
		       const unsigned char *body, size_t len,
		       unsigned char **plaintext, size_t *ptlen, char *err, size_t errlen);

/* The origin of an absolute http(s) URL: "scheme://host[:port]", scheme and
 * host lower-cased, port only when not the scheme's default, no path.
 * Returns 0, or -1 (not an http(s) URL with a host, or too long). */
int cg_url_origin(const char *url, char *out, size_t outlen);

/* ---- VAPID (RFC 8292) ---------------------------------------------------- */

typedef struct cg_vapid cg_vapid;

/* Loads a VAPID key pair from its private key: the base64url 32-byte scalar
 * (what `capsule-admin vapid-keygen` and the web-push tools print), or a
 * PEM file path (EC P-256 private key, SEC1 or PKCS#8). The public key is
 * derived. `subject` (mailto: or https: URL, required) goes in every JWT's
 * "sub". Returns NULL with the reason in err. */
cg_vapid *cg_vapid_load(const char *private_key, const char *subject, char *err, size_t errlen);
void cg_vapid_free(cg_vapid *v);

/* The public key, base64url without padding (the "k" parameter, and the
 * applicationServerKey browsers subscribe with). */
const char *cg_vapid_public_key(const cg_vapid *v);

/* Writes the Authorization header value "vapid t=<JWT>, k=<public key>" for
 * a push to `endpoint` into out (>= CG_WEBPUSH_AUTH_HEADER_MAX): JWT header
 * {"typ":"JWT","alg":"ES256"}, claims aud = the endpoint's origin,
 * exp = now + 12 h, sub = the subject; JWS signature raw R||S. The JWT is
 * cached per origin (at most 64 origins, least recently used evicted) and
 * re-minted when less than one hour of it is left, so one origin sees a new
 * JWT at most about every 11 hours. Returns 0, or -1 with the reason. */
int cg_vapid_authorization(cg_vapid *v, const char *endpoint, time_t now, char *out,
			   size_t outlen, char *err, size_t errlen);

/* Generates a new key pair: base64url private scalar (32 bytes) and
 * public key (65 bytes), each into a buffer of CG_WEBPUSH_KEY_B64_MAX.
 * Returns 0 or -1. */
int cg_vapid_generate(char *private_b64, char *public_b64);

/* The push service's check of an Authorization header value (the fake push
 * service and the tests): scheme "vapid" (case-insensitive), parameters t
 * and k (others ignored), k a P-256 point, the JWT's header typ JWT / alg
 * ES256, signature valid under k, aud == expected_origin, exp present with
 * now < exp <= now + 24 h, sub a mailto: or https: URL. On success returns
 * 0 and copies k (base64url) into k_out (>= CG_WEBPUSH_KEY_B64_MAX);
 * returns -1 with the reason when the header is absent or malformed (a
 * push service answers 401), -2 when it is well-formed but invalid (403). */
int cg_vapid_verify(const char *authorization, const char *expected_origin, time_t now,
		    char *k_out, char *err, size_t errlen);

#endif

/* test_webpush: RFC 8291 encryption (Appendix A vector), decryption, origins, VAPID (RFC 8292). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "cg_jwt.h"
#include "cg_util.h"
#include "cg_webpush.h"
#include "tap.h"

/* RFC 8291 Appendix A (hex from PUSH.md B5). */
#define V_AS_PRIVATE "c9f58f89813e9f8e872e71f42aa64e1757c9254dcc62b72ddc010bb4043ea11c"
#define V_UA_PRIVATE "ab5757a70dd4a53e553a6bbf71ffefea2874ec07a6b379e3c48f895a02dc33de"
#define V_UA_PUBLIC                                                                           \
	"042571b2becdfde360551aaf1ed0f4cd366c11cebe555f89bcb7b186a53339173168ece2ebe018597bd3" \
	"0479b86e3c8f8eced577ca59187e9246990db682008b0e"
#define V_AUTH "05305932a1c7eabe13b6cec9fda48882"
#define V_SALT "0c6bfaadad67958803092d454676f397"
#define V_CEK "a088555b4e0c45dcb65cdf4288a2f14e"
#define V_NONCE "e21ffde6495727913faa7a0d"
#define V_PLAINTEXT "When I grow up, I want to be a watermelon"
/* base64url, as browsers send them */
#define V_UA_PUBLIC_B64 \
	"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
#define V_AUTH_B64 "BTBZMqHH6r4Tts7J_aSIgg"
#define V_BODY_B64                                                                            \
	"DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocIn" \
	"mYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNW" \
	"QexSgSxsj_Qulcy4a-fN"

/* RFC 8292 §2.4 */
#define R_T                                                                                   \
	"eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5uZXQiLCJl" \
	"eHAiOjE0NTM1MjM3NjgsInN1YiI6Im1haWx0bzpwdXNoQGV4YW1wbGUuY29tIn0.i3CYb7t4xfxCDquptFOe" \
	"pC9GAu_HLGkMlMuCGSK2rpiUfnK9ojFwDXb1JrErtmysazNjjvW2L9OkSSHzvoD1oA"
#define R_K \
	"BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs"
#define R_ORIGIN "https://push.example.net"
#define R_NOW 1453523000L
#define R_EXP 1453523768L

#define SUBJECT "mailto:ops@example.com"
#define NOW 1700000000L

static void hex(const char *h, unsigned char *out)
{
	size_t i, n = strlen(h) / 2;
	unsigned v;

	for (i = 0; i < n; i++) {
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			abort();
		out[i] = (unsigned char)v;
	}
}

static long b64d(const char *s, unsigned char *out, size_t cap)
{
	return cg_b64url_decode(s, strlen(s), out, cap);
}

static void b64e(const void *in, size_t n, char *out, size_t cap)
{
	if (cg_b64url_encode(in, n, out, cap) < 0)
		abort();
}

typedef struct vec {
	unsigned char ua_priv[32], ua_pub[65], auth[16], salt[16], as_priv[32], cek[16], nonce[12];
} vec;

static void vec_load(vec *v)
{
	hex(V_UA_PRIVATE, v->ua_priv);
	hex(V_UA_PUBLIC, v->ua_pub);
	hex(V_AUTH, v->auth);
	hex(V_SALT, v->salt);
	hex(V_AS_PRIVATE, v->as_priv);
	hex(V_CEK, v->cek);
	hex(V_NONCE, v->nonce);
}

static int decrypts(const vec *v, const unsigned char *body, size_t len, char *err, size_t errlen,
		    unsigned char **pt, size_t *ptlen)
{
	return cg_webpush_decrypt(v->ua_priv, v->ua_pub, v->auth, body, len, pt, ptlen, err, errlen);
}

static void test_rfc8291_vector(void)
{
	unsigned char want[200], *body = NULL, *pt = NULL;
	char err[256] = "";
	size_t blen = 0, ptlen = 0;
	long wlen;
	vec v;

	vec_load(&v);
	wlen = b64d(V_BODY_B64, want, sizeof want);
	is_int(wlen, 144, "RFC 8291 body is 144 bytes");
	is_int(cg_webpush_encrypt(v.ua_pub, v.auth, (const unsigned char *)V_PLAINTEXT,
				  strlen(V_PLAINTEXT), v.salt, v.as_priv, &body, &blen, err,
				  sizeof err), 0, "encrypt with the RFC's salt and as_private (%s)", err);
	is_int((long long)blen, 144, "body length 86 + 41 + 17");
	ok(body != NULL && blen == 144 && memcmp(body, want, 144) == 0,
	   "RFC 8291 Appendix A body reproduced byte for byte");
	is_int(decrypts(&v, want, (size_t)wlen, err, sizeof err, &pt, &ptlen), 0,
	       "RFC body decrypts with ua_private (%s)", err);
	is_int((long long)ptlen, (long long)strlen(V_PLAINTEXT), "plaintext length 41");
	is_str((const char *)pt, V_PLAINTEXT, "plaintext is the watermelon");
	free(body);
	free(pt);
}

static void test_keys_parse(void)
{
	unsigned char pub[65], auth[16], want[65], raw[80];
	char err[256], b64[200], std[200];
	size_t i;
	vec v;

	vec_load(&v);
	hex(V_UA_PUBLIC, want);
	err[0] = '\0';
	is_int(cg_webpush_keys_parse(V_UA_PUBLIC_B64, V_AUTH_B64, pub, auth, err, sizeof err), 0,
	       "keys_parse: RFC keys (%s)", err);
	ok(memcmp(pub, want, 65) == 0 && memcmp(auth, v.auth, 16) == 0, "keys_parse: bytes right");

	/* padded, and standard-alphabet base64 */
	snprintf(b64, sizeof b64, "%s=", V_UA_PUBLIC_B64);
	snprintf(std, sizeof std, "%s==", V_AUTH_B64);
	is_int(cg_webpush_keys_parse(b64, std, pub, auth, err, sizeof err), 0, "keys_parse: padded");
	snprintf(std, sizeof std, "%s", V_UA_PUBLIC_B64);
	for (i = 0; std[i]; i++)
		std[i] = std[i] == '-' ? '+' : std[i] == '_' ? '/' : std[i];
	is_int(cg_webpush_keys_parse(std, V_AUTH_B64, pub, auth, err, sizeof err), 0,
	       "keys_parse: standard base64 alphabet");
	ok(memcmp(pub, want, 65) == 0, "keys_parse: standard alphabet gives the same bytes");

	/* wrong length: 64 bytes */
	b64e(want, 64, b64, sizeof b64);
	is_int(cg_webpush_keys_parse(b64, V_AUTH_B64, pub, auth, err, sizeof err), -1,
	       "keys_parse: 64-byte p256dh refused");
	ok(strstr(err, "p256dh") != NULL, "keys_parse: reason names p256dh (%s)", err);
	/* 66 bytes */
	memcpy(raw, want, 65);
	raw[65] = 0;
	b64e(raw, 66, b64, sizeof b64);
	is_int(cg_webpush_keys_parse(b64, V_AUTH_B64, pub, auth, err, sizeof err), -1,
	       "keys_parse: 66-byte p256dh refused");
	/* not on the curve */
	memcpy(raw, want, 65);
	raw[64] ^= 0x01;
	b64e(raw, 65, b64, sizeof b64);
	is_int(cg_webpush_keys_parse(b64, V_AUTH_B64, pub, auth, err, sizeof err), -1,
	       "keys_parse: point off the curve refused (%s)", err);
	ok(strstr(err, "curve") != NULL, "keys_parse: reason says curve");
	/* compressed point 0x02/0x03 || X (33 bytes) */
	raw[0] = (unsigned char)(0x02 | (want[64] & 1));
	memcpy(raw + 1, want + 1, 32);
	b64e(raw, 33, b64, sizeof b64);
	is_int(cg_webpush_keys_parse(b64, V_AUTH_B64, pub, auth, err, sizeof err), -1,
	       "keys_parse: compressed point refused (%s)", err);
	/* 65 bytes but not 0x04 */
	memcpy(raw, want, 65);
	raw[0] = 0x06;
	b64e(raw, 65, b64, sizeof b64);
	is_int(cg_webpush_keys_parse(b64, V_AUTH_B64, pub, auth, err, sizeof err), -1,
	       "keys_parse: hybrid-form point refused (%s)", err);
	/* bad base64 */
	is_int(cg_webpush_keys_parse("BCVx!sr7N", V_AUTH_B64, pub, auth, err, sizeof err), -1,
	       "keys_parse: bad base64 p256dh refused");
	ok(strstr(err, "base64") != NULL, "keys_parse: reason says base64 (%s)", err);
	is_int(cg_webpush_keys_parse(V_UA_PUBLIC_B64, "BTBZMqHH6r4Tts7J_aSI*g", pub, auth, err,
				     sizeof err), -1, "keys_parse: bad base64 auth refused");
	ok(strstr(err, "auth") != NULL, "keys_parse: reason names auth (%s)", err);
	/* auth length */
	b64e(v.auth, 15, b64, sizeof b64);
	is_int(cg_webpush_keys_parse(V_UA_PUBLIC_B64, b64, pub, auth, err, sizeof err), -1,
	       "keys_parse: 15-byte auth refused");
	memcpy(raw, v.auth, 16);
	raw[16] = 1;
	b64e(raw, 17, b64, sizeof b64);
	is_int(cg_webpush_keys_parse(V_UA_PUBLIC_B64, b64, pub, auth, err, sizeof err), -1,
	       "keys_parse: 17-byte auth refused");
	/* missing, and absurdly long */
	is_int(cg_webpush_keys_parse("", V_AUTH_B64, pub, auth, err, sizeof err), -1,
	       "keys_parse: empty p256dh refused");
	is_int(cg_webpush_keys_parse(V_UA_PUBLIC_B64, NULL, pub, auth, err, sizeof err), -1,
	       "keys_parse: NULL auth refused");
	{
		char big[600];
		memset(big, 'A', sizeof big - 1);
		big[sizeof big - 1] = '\0';
		is_int(cg_webpush_keys_parse(big, V_AUTH_B64, pub, auth, err, sizeof err), -1,
		       "keys_parse: 599-character p256dh refused");
	}
}

/* A fresh subscription: key pair and auth secret. */
typedef struct sub {
	unsigned char priv[32], pub[65], auth[16];
	char pub_b64[CG_WEBPUSH_KEY_B64_MAX];
} sub;

static int sub_new(sub *s)
{
	char priv_b64[CG_WEBPUSH_KEY_B64_MAX];

	if (cg_vapid_generate(priv_b64, s->pub_b64) != 0 || b64d(priv_b64, s->priv, 32) != 32 ||
	    b64d(s->pub_b64, s->pub, 65) != 65 || RAND_bytes(s->auth, 16) != 1)
		return -1;
	return 0;
}

static void test_round_trips(void)
{
	static const size_t lens[] = {0, 1, 15, 16, 17, 100, 1000, 3992, CG_WEBPUSH_MAX_PLAINTEXT};
	unsigned char *msg, *body = NULL, *body2 = NULL, *pt = NULL;
	char err[256] = "";
	size_t i, blen = 0, blen2 = 0, ptlen = 0;
	sub s, other;
	int good = 1;

	if (!ok(sub_new(&s) == 0 && sub_new(&other) == 0, "generated two subscriptions"))
		return;
	msg = malloc(CG_WEBPUSH_MAX_PLAINTEXT + 1);
	if (msg == NULL || RAND_bytes(msg, CG_WEBPUSH_MAX_PLAINTEXT + 1) != 1)
		abort();
	for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		int r1 = cg_webpush_encrypt(s.pub, s.auth, msg, lens[i], NULL, NULL, &body, &blen,
					    err, sizeof err);
		int r2 = r1 == 0 ? cg_webpush_decrypt(s.priv, s.pub, s.auth, body, blen, &pt, &ptlen,
						      err, sizeof err) : -1;
		if (r1 != 0 || r2 != 0 || blen != 86 + lens[i] + 17 || ptlen != lens[i] ||
		    memcmp(pt, msg, lens[i]) != 0 || pt[ptlen] != '\0') {
			good = 0;
			printf("# round trip of %zu bytes failed: %s\n", lens[i], err);
		}
		free(body);
		free(pt);
		body = pt = NULL;
	}
	ok(good, "round trips with random keys, 0..3993 bytes");

	/* 3993 bytes make exactly 4096; 3994 are refused */
	is_int(cg_webpush_encrypt(s.pub, s.auth, msg, CG_WEBPUSH_MAX_PLAINTEXT, NULL, NULL, &body,
				  &blen, err, sizeof err), 0, "3993-byte plaintext accepted");
	is_int((long long)blen, CG_WEBPUSH_MAX_BODY, "3993-byte plaintext gives a 4096-byte body");
	free(body);
	body = NULL;
	is_int(cg_webpush_encrypt(s.pub, s.auth, msg, CG_WEBPUSH_MAX_PLAINTEXT + 1, NULL, NULL,
				  &body, &blen, err, sizeof err), -1, "3994-byte plaintext refused");
	ok(body == NULL && blen == 0, "refused: no body (%s)", err);

	/* fresh salt and ephemeral key each time */
	if (cg_webpush_encrypt(s.pub, s.auth, msg, 10, NULL, NULL, &body, &blen, err, sizeof err) ||
	    cg_webpush_encrypt(s.pub, s.auth, msg, 10, NULL, NULL, &body2, &blen2, err, sizeof err))
		abort();
	ok(memcmp(body, body2, 16) != 0, "two messages have different salts");
	ok(memcmp(body + 21, body2 + 21, 65) != 0, "two messages have different keyids");
	ok(memcmp(body + 21, s.pub, 65) != 0, "keyid is not the subscription's key");
	free(body2);
	body2 = NULL;

	/* the other subscription cannot read it */
	is_int(cg_webpush_decrypt(other.priv, other.pub, s.auth, body, blen, &pt, &ptlen, err,
				  sizeof err), -1, "another subscription's key cannot decrypt");
	ok(pt == NULL, "no plaintext on failure");
	/* private key not matching the public one */
	is_int(cg_webpush_decrypt(other.priv, s.pub, s.auth, body, blen, &pt, &ptlen, err,
				  sizeof err), -1, "mismatched ua_private/ua_public refused (%s)", err);

	/* encrypt argument checks */
	{
		unsigned char bad[65];
		memcpy(bad, s.pub, 65);
		bad[64] ^= 1;
		is_int(cg_webpush_encrypt(bad, s.auth, msg, 10, NULL, NULL, &body2,
					  &blen2, err, sizeof err), -1,
		       "encrypt refuses a key off the curve");
		is_int(cg_webpush_encrypt(s.pub, s.auth, NULL, 10, NULL, NULL, &body2, &blen2, err,
					  sizeof err), -1, "encrypt refuses NULL plaintext with len");
		memset(bad, 0, 32);
		is_int(cg_webpush_encrypt(s.pub, s.auth, msg, 10, NULL, bad, &body2, &blen2, err,
					  sizeof err), -1, "encrypt refuses a zero as_private");
	}
	free(body);
	free(msg);
}

/* A hand-made body under the RFC's keys: its header, then record (len
 * bytes, delimiter and padding included) encrypted with the RFC's CEK and
 * NONCE, then the tag. */
static size_t hand_body(const vec *v, const unsigned char *header, const unsigned char *record,
			size_t len, unsigned char *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n;

	memcpy(out, header, 86);
	if (c == NULL || EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, v->cek, v->nonce) != 1 ||
	    EVP_EncryptUpdate(c, out + 86, &n, record, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(c, out + 86 + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + 86 + len) != 1)
		abort();
	EVP_CIPHER_CTX_free(c);
	return 86 + len + 16;
}

static void test_decrypt_rejections(void)
{
	unsigned char body[300], tmp[300], *pt = NULL;
	char err[256] = "";
	size_t blen, ptlen = 0;
	long n;
	vec v;

	vec_load(&v);
	n = b64d(V_BODY_B64, body, sizeof body);
	if (n != 144)
		abort();
	blen = 144;

#define REJECT(b, l, name)                                                                 \
	do {                                                                               \
		err[0] = '\0';                                                             \
		is_int(decrypts(&v, (b), (l), err, sizeof err, &pt, &ptlen), -1, name " (%s)", \
		       err);                                                               \
		free(pt);                                                                  \
		pt = NULL;                                                                 \
	} while (0)

	memcpy(tmp, body, blen);
	tmp[blen - 1] ^= 0x01;
	REJECT(tmp, blen, "tampered tag refused");
	ok(strstr(err, "tag") != NULL, "reason mentions the tag");
	memcpy(tmp, body, blen);
	tmp[90] ^= 0x80;
	REJECT(tmp, blen, "tampered ciphertext refused");
	memcpy(tmp, body, blen);
	tmp[0] ^= 0x01;
	REJECT(tmp, blen, "tampered salt refused");
	{
		vec w = v;
		w.auth[0] ^= 1;
		err[0] = '\0';
		is_int(cg_webpush_decrypt(w.ua_priv, w.ua_pub, w.auth, body, blen, &pt, &ptlen, err,
					  sizeof err), -1, "wrong auth secret refused (%s)", err);
		free(pt);
		pt = NULL;
	}
	memcpy(tmp, body, blen);
	tmp[16] = tmp[17] = tmp[18] = 0;
	tmp[19] = 17;
	REJECT(tmp, blen, "rs 17 refused");
	ok(strstr(err, "record size") != NULL, "reason names the record size");
	tmp[19] = 58; /* the record is 58 bytes: rs must exceed it */
	REJECT(tmp, blen, "rs equal to the record length refused");
	tmp[19] = 59;
	is_int(decrypts(&v, tmp, blen, err, sizeof err, &pt, &ptlen), 0,
	       "rs one over the record length accepted (%s)", err);
	free(pt);
	pt = NULL;
	memcpy(tmp, body, blen);
	tmp[20] = 64;
	REJECT(tmp, blen, "idlen 64 refused");
	ok(strstr(err, "key id length") != NULL, "reason names the key id length");
	tmp[20] = 0;
	REJECT(tmp, blen, "idlen 0 refused");
	memcpy(tmp, body, blen);
	tmp[85] ^= 0x01;
	REJECT(tmp, blen, "keyid off the curve refused");
	REJECT(body, 0, "empty body refused");
	REJECT(body, 20, "20-byte body refused");
	REJECT(body, 85, "85-byte body (truncated keyid) refused");
	REJECT(body, 86, "header only refused");
	REJECT(body, 86 + 16, "record shorter than a tag plus delimiter refused");
	REJECT(body, blen - 1, "body cut by one byte refused");
	REJECT(NULL, 0, "NULL body refused");

	/* Records built by hand under the RFC's CEK/NONCE. */
	{
		static const unsigned char rec_bad_delim[] = {'h', 'i', 0x01};
		static const unsigned char rec_zeros[] = {0, 0, 0, 0};
		static const unsigned char rec_padded[] = {'h', 'i', 0x02, 0, 0, 0};
		static const unsigned char rec_mid[] = {'h', 0x02, 'i', 0x01, 0};
		size_t l;

		l = hand_body(&v, body, rec_bad_delim, sizeof rec_bad_delim, tmp);
		is_int(decrypts(&v, tmp, l, err, sizeof err, &pt, &ptlen), -1,
		       "delimiter 0x01 refused (%s)", err);
		ok(strstr(err, "delimiter") != NULL, "reason names the delimiter");
		free(pt);
		pt = NULL;
		l = hand_body(&v, body, rec_zeros, sizeof rec_zeros, tmp);
		REJECT(tmp, l, "all-zero record (no delimiter) refused");
		l = hand_body(&v, body, rec_mid, sizeof rec_mid, tmp);
		REJECT(tmp, l, "last non-zero byte 0x01 refused");
		l = hand_body(&v, body, rec_padded, sizeof rec_padded, tmp);
		is_int(decrypts(&v, tmp, l, err, sizeof err, &pt, &ptlen), 0,
		       "padded record accepted (%s)", err);
		ok(ptlen == 2 && pt != NULL && memcmp(pt, "hi", 3) == 0, "padding removed");
		free(pt);
		pt = NULL;
	}
#undef REJECT
}

static void test_origin(void)
{
	static const struct {
		const char *url, *want;
	} cases[] = {
		{"https://push.example.net/p/abc?x=1", "https://push.example.net"},
		{"https://push.example.net", "https://push.example.net"},
		{"https://push.example.net:443/x", "https://push.example.net"},
		{"http://push.example.net:80/x", "http://push.example.net"},
		{"https://push.example.net:8443/x", "https://push.example.net:8443"},
		{"http://127.0.0.1:8080/push/1", "http://127.0.0.1:8080"},
		{"http://127.0.0.1:443/", "http://127.0.0.1:443"},
		{"https://127.0.0.1:80/", "https://127.0.0.1:80"},
		{"HTTPS://Push.Example.NET/Path/KEEP", "https://push.example.net"},
		{"https://fcm.googleapis.com/fcm/send/abc:def", "https://fcm.googleapis.com"},
		{"https://push.example.net?q", "https://push.example.net"},
		{"https://push.example.net#f", "https://push.example.net"},
		{"https://push.example.net:/x", "https://push.example.net"},
		{"https://push.example.net:00443/x", "https://push.example.net"},
		{"https://[::1]:8443/x", "https://[::1]:8443"},
		{"https://[2001:DB8::1]/x", "https://[2001:db8::1]"},
	};
	static const char *const bad[] = {
		"ftp://push.example.net/x",
		"push.example.net/x",
		"https:/push.example.net",
		"https://",
		"https:///x",
		"https://:443/x",
		"https://user:pw@push.example.net/x",
		"https://user@push.example.net/x",
		"https://push.example.net:99999/x",
		"https://push.example.net:0/x",
		"https://push.example.net:44a/x",
		"https://push example.net/x",
		"https://push.example.net%2f/x",
		"https://[::1/x",
		"https://[]/x",
		"https://[::1]x/",
		"",
	};
	char out[256], small[24];
	size_t i;
	int good = 1;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		out[0] = '\0';
		if (cg_url_origin(cases[i].url, out, sizeof out) != 0 ||
		    strcmp(out, cases[i].want) != 0) {
			good = 0;
			printf("# %s -> \"%s\", want %s\n", cases[i].url, out, cases[i].want);
		}
	}
	ok(good, "cg_url_origin: %zu good URLs", sizeof cases / sizeof cases[0]);
	good = 1;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (cg_url_origin(bad[i], out, sizeof out) != -1) {
			good = 0;
			printf("# %s accepted as \"%s\"\n", bad[i], out);
		}
	}
	ok(good, "cg_url_origin: %zu bad URLs refused (userinfo refused, not stripped)",
	   sizeof bad / sizeof bad[0]);
	is_int(cg_url_origin(NULL, out, sizeof out), -1, "cg_url_origin: NULL refused");
	is_int(cg_url_origin("https://push.example.net/x", small, sizeof small), -1,
	       "cg_url_origin: output too small refused");
	is_int(cg_url_origin("https://push.example.ne/x", small, sizeof small), 0,
	       "cg_url_origin: output exactly big enough");
	is_int(cg_url_origin("https://a.b:8443/x", small, 16), -1,
	       "cg_url_origin: no room for the port refused");
}

/* ---- VAPID ---- */

/* t and k of an Authorization value, copied. */
static int split_auth(const char *a, char *t, size_t tcap, char *k, size_t kcap)
{
	const char *tp = strstr(a, "t="), *kp = strstr(a, ", k="), *e;

	if (strncmp(a, "vapid t=", 8) != 0 || tp == NULL || kp == NULL || (size_t)(kp - tp - 2) >= tcap)
		return -1;
	memcpy(t, tp + 2, (size_t)(kp - tp - 2));
	t[kp - tp - 2] = '\0';
	e = kp + 4;
	if (strlen(e) >= kcap)
		return -1;
	strcpy(k, e);
	return 0;
}

/* The claims JSON of a JWT. */
static int jwt_claims(const char *t, char *out, size_t cap)
{
	const char *d1 = strchr(t, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	long n;

	if (d2 == NULL)
		return -1;
	n = cg_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), out, cap - 1);
	if (n < 0)
		return -1;
	out[n] = '\0';
	return 0;
}

static void test_vapid_rfc_example(void)
{
	char a[CG_WEBPUSH_AUTH_HEADER_MAX], k[CG_WEBPUSH_KEY_B64_MAX], err[256] = "";
	char bad[CG_WEBPUSH_AUTH_HEADER_MAX];
	size_t n;

	snprintf(a, sizeof a, "vapid t=%s, k=%s", R_T, R_K);
	is_int(cg_vapid_verify(a, R_ORIGIN, R_NOW, k, err, sizeof err), 0,
	       "RFC 8292 example verifies at 1453523000 (%s)", err);
	is_str(k, R_K, "k copied out");
	is_int(cg_vapid_verify(a, R_ORIGIN, R_EXP, k, err, sizeof err), -2,
	       "RFC example refused at exp (%s)", err);
	ok(k[0] == '\0', "k_out empty on failure");
	is_int(cg_vapid_verify(a, R_ORIGIN, R_EXP + 1000, k, err, sizeof err), -2,
	       "RFC example refused after exp");
	is_int(cg_vapid_verify(a, R_ORIGIN, R_EXP - 86401, k, err, sizeof err), -2,
	       "RFC example refused when exp is over 24 h ahead (%s)", err);
	is_int(cg_vapid_verify(a, "https://push.example.org", R_NOW, k, err, sizeof err), -2,
	       "RFC example refused for another origin (%s)", err);
	is_int(cg_vapid_verify(a, "https://push.example.net:8443", R_NOW, k, err, sizeof err), -2,
	       "RFC example refused for another port");
	/* tampered signature: change one character in the middle of it */
	snprintf(bad, sizeof bad, "%s", a);
	n = strlen("vapid t=") + strlen(R_T) - 20;
	bad[n] = bad[n] == 'A' ? 'B' : 'A';
	is_int(cg_vapid_verify(bad, R_ORIGIN, R_NOW, k, err, sizeof err), -2,
	       "RFC example with a tampered signature refused (%s)", err);
	/* tampered claims (exp changed): signature no longer matches */
	snprintf(bad, sizeof bad, "%s", a);
	n = strlen("vapid t=") + strlen("eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.") + 5;
	bad[n] = bad[n] == 'A' ? 'B' : 'A';
	ok(cg_vapid_verify(bad, R_ORIGIN, R_NOW, k, err, sizeof err) < 0,
	   "RFC example with tampered claims refused (%s)", err);
	/* the key of another party */
	{
		char priv[CG_WEBPUSH_KEY_B64_MAX], pub[CG_WEBPUSH_KEY_B64_MAX];
		if (cg_vapid_generate(priv, pub) != 0)
			abort();
		snprintf(bad, sizeof bad, "vapid t=%s, k=%s", R_T, pub);
		is_int(cg_vapid_verify(bad, R_ORIGIN, R_NOW, k, err, sizeof err), -2,
		       "RFC token with another k refused");
	}
	/* header syntax variants: case, no space, extra parameters, padding */
	snprintf(bad, sizeof bad, "VAPID k=%s,t=%s", R_K, R_T);
	is_int(cg_vapid_verify(bad, R_ORIGIN, R_NOW, k, err, sizeof err), 0,
	       "scheme case-insensitive, parameters in any order, no spaces (%s)", err);
	snprintf(bad, sizeof bad, "  vapid realm=\"x\" , t = %s ,k=%s=, ", R_T, R_K);
	is_int(cg_vapid_verify(bad, R_ORIGIN, R_NOW, k, err, sizeof err), 0,
	       "unknown parameter ignored, spaces, padded k (%s)", err);
	is_str(k, R_K, "k copied out canonical (unpadded)");
}

static void test_vapid_malformed(void)
{
	char a[CG_WEBPUSH_AUTH_HEADER_MAX * 2], k[CG_WEBPUSH_KEY_B64_MAX], err[256];
	static const char *const plain[] = {
		"", "Bearer abc", "vapid", "vapidt=x, k=y", "WebPush " R_T,
		"vapid k=" R_K, "vapid t=" R_T, "vapid t=" R_T ", k=", "vapid t=, k=" R_K,
		"vapid t=" R_T ", k=" R_K ", t=" R_T, "vapid t" R_T ", k=" R_K,
	};
	size_t i;
	int good = 1;

	is_int(cg_vapid_verify(NULL, R_ORIGIN, R_NOW, k, err, sizeof err), -1,
	       "absent header: -1");
	for (i = 0; i < sizeof plain / sizeof plain[0]; i++) {
		int r = cg_vapid_verify(plain[i], R_ORIGIN, R_NOW, k, err, sizeof err);
		if (r != -1) {
			good = 0;
			printf("# \"%.40s...\" gave %d\n", plain[i], r);
		}
	}
	ok(good, "%zu malformed headers: -1", sizeof plain / sizeof plain[0]);
#define MAL(fmt, want, name, ...)                                                          \
	do {                                                                               \
		snprintf(a, sizeof a, fmt, __VA_ARGS__);                                   \
		err[0] = '\0';                                                             \
		is_int(cg_vapid_verify(a, R_ORIGIN, R_NOW, k, err, sizeof err), want,      \
		       name " (%s)", err);                                                 \
	} while (0)
	MAL("vapid t=%s, k=%s", -1, "k bad base64: -1", R_T, "BA1H*xzy");
	MAL("vapid t=%s, k=%.43s", -1, "k 32 bytes: -1", R_T, R_K);
	MAL("vapid t=%s, k=%s", -1, "t with two parts: -1",
	    "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJ9", R_K);
	MAL("vapid t=%s.x, k=%s", -1, "t with four parts: -1", R_T, R_K);
	MAL("vapid t=%s, k=%s", -1, "t header not JSON: -1", "bm9wZQ.eyJhIjoxfQ.AAAA", R_K);
	MAL("vapid t=%s, k=%s", -1, "t signature not base64url: -1",
	    "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ.AA*A", R_K);
	{
		char big[5000];
		memset(big, 'A', sizeof big - 1);
		big[sizeof big - 1] = '\0';
		memcpy(big, "vapid t=", 8);
		is_int(cg_vapid_verify(big, R_ORIGIN, R_NOW, k, err, sizeof err), -1,
		       "header over 4096 bytes: -1 (%s)", err);
	}
	/* 65 bytes not on the curve: well-formed but invalid */
	{
		unsigned char pub[65];
		char kb[CG_WEBPUSH_KEY_B64_MAX];
		if (b64d(R_K, pub, sizeof pub) != 65)
			abort();
		pub[64] ^= 1;
		b64e(pub, 65, kb, sizeof kb);
		MAL("vapid t=%s, k=%s", -2, "k off the curve: -2", R_T, kb);
	}
#undef MAL
}

/* A new P-256 key (OpenSSL's own generator), its public key base64url
 * into pub_b64[CG_WEBPUSH_KEY_B64_MAX]. */
static EVP_PKEY *p256_keygen(char *pub_b64)
{
	unsigned char pub[100];
	size_t publen = 0;
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	if (pkey == NULL || EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
							    pub, sizeof pub, &publen) != 1 ||
	    publen != 65)
		abort();
	b64e(pub, 65, pub_b64, CG_WEBPUSH_KEY_B64_MAX);
	return pkey;
}

/* Signs a hand-made header and claims with pkey. (noinline: GCC 12 takes
 * the returned pointer for one to the local variable otherwise.) */
__attribute__((noinline))
static char *hand_jwt(EVP_PKEY *pkey, const char *header, const char *claims)
{
	char *t = NULL;

	if (cg_es256_sign_jws_pkey(pkey, header, claims, &t) != 0)
		abort();
	return t;
}

static void test_vapid_hand_tokens(void)
{
	static const char *const hdr = "{\"typ\":\"JWT\",\"alg\":\"ES256\"}";
#define EXP1 "1700003600" /* NOW + 3600 */
	static const struct {
		const char *header, *claims;
		int want;
		const char *name;
	} cases[] = {
		{NULL, "{\"aud\":\"" R_ORIGIN "\",\"exp\":" EXP1 ",\"sub\":\"mailto:a@b.c\"}", 0,
		 "good token"},
		{"{\"alg\":\"ES256\",\"typ\":\"JWT\"}",
		 "{\"sub\":\"https://example.com/c\",\"exp\":" EXP1 ",\"aud\":\"" R_ORIGIN "\"}", 0,
		 "other member order, https sub"},
		{NULL, "{\"aud\":\"" R_ORIGIN "\",\"exp\":" EXP1 ",\"sub\":\"a@b.c\"}", -2,
		 "sub not a URL: -2"},
		{NULL, "{\"aud\":\"" R_ORIGIN "\",\"exp\":" EXP1 "}", -2, "no sub: -2"},
		{NULL, "{\"aud\":\"" R_ORIGIN "\",\"sub\":\"mailto:a@b.c\"}", -2, "no exp: -2"},
		{NULL, "{\"aud\":\"" R_ORIGIN "\",\"exp\":\"" EXP1 "\",\"sub\":\"mailto:a@b.c\"}", -2,
		 "exp a string: -2"},
		{NULL, "{\"aud\":\"" R_ORIGIN "/\",\"exp\":" EXP1 ",\"sub\":\"mailto:a@b.c\"}", -2,
		 "aud with a slash: -2"},
		{NULL, "{\"aud\":[\"" R_ORIGIN "\"],\"exp\":" EXP1 ",\"sub\":\"mailto:a@b.c\"}", -2,
		 "aud an array: -2"},
		{"{\"alg\":\"ES256\"}",
		 "{\"aud\":\"" R_ORIGIN "\",\"exp\":" EXP1 ",\"sub\":\"mailto:a@b.c\"}", -2,
		 "no typ: -2"},
		{"{\"typ\":\"JWT\",\"alg\":\"ES384\"}",
		 "{\"aud\":\"" R_ORIGIN "\",\"exp\":" EXP1 ",\"sub\":\"mailto:a@b.c\"}", -2,
		 "alg ES384: -2"},
		{"{\"typ\":\"JWT\",\"alg\":\"none\"}",
		 "{\"aud\":\"" R_ORIGIN "\",\"exp\":" EXP1 ",\"sub\":\"mailto:a@b.c\"}", -2,
		 "alg none: -2"},
	};
#undef EXP1
	char a[CG_WEBPUSH_AUTH_HEADER_MAX * 2], k[CG_WEBPUSH_KEY_B64_MAX], kb[CG_WEBPUSH_KEY_B64_MAX];
	char claims[512], err[256];
	EVP_PKEY *pkey;
	size_t i;
	char *t;

	pkey = p256_keygen(kb);

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		t = hand_jwt(pkey, cases[i].header ? cases[i].header : hdr, cases[i].claims);
		snprintf(a, sizeof a, "vapid t=%s, k=%s", t, kb);
		err[0] = '\0';
		is_int(cg_vapid_verify(a, R_ORIGIN, NOW, k, err, sizeof err), cases[i].want,
		       "hand token: %s (%s)", cases[i].name, err);
		free(t);
	}
	/* exp window: now < exp <= now + 24 h */
	{
		static const struct {
			long delta;
			int want;
		} w[] = {{86400, 0}, {86401, -2}, {1, 0}, {0, -2}, {-1, -2}};
		for (i = 0; i < sizeof w / sizeof w[0]; i++) {
			snprintf(claims, sizeof claims,
				 "{\"aud\":\"%s\",\"exp\":%ld,\"sub\":\"mailto:a@b.c\"}", R_ORIGIN,
				 (long)NOW + w[i].delta);
			t = hand_jwt(pkey, hdr, claims);
			snprintf(a, sizeof a, "vapid t=%s, k=%s", t, kb);
			is_int(cg_vapid_verify(a, R_ORIGIN, NOW, k, err, sizeof err), w[i].want,
			       "exp = now %+ld: %d", w[i].delta, w[i].want);
			free(t);
		}
	}
	/* the signature of a token for another origin moved onto this one */
	{
		char *t1, *t2, mix[1200];
		const char *s1, *s2;
		snprintf(claims, sizeof claims, "{\"aud\":\"%s\",\"exp\":%ld,\"sub\":\"mailto:a@b.c\"}",
			 R_ORIGIN, (long)NOW + 60);
		t1 = hand_jwt(pkey, hdr, claims);
		snprintf(claims, sizeof claims, "{\"aud\":\"%s\",\"exp\":%ld,\"sub\":\"mailto:a@b.c\"}",
			 "https://evil.example", (long)NOW + 60);
		t2 = hand_jwt(pkey, hdr, claims);
		s1 = strrchr(t1, '.');
		s2 = strrchr(t2, '.');
		snprintf(mix, sizeof mix, "vapid t=%.*s%s, k=%s", (int)(s2 - t2), t2, s1, kb);
		is_int(cg_vapid_verify(mix, "https://evil.example", NOW, k, err, sizeof err), -2,
		       "signature from another token refused (%s)", err);
		/* a 63-byte signature: well-formed, invalid */
		snprintf(mix, sizeof mix, "vapid t=%.*s, k=%s", (int)strlen(t1) - 2, t1, kb);
		mix[strlen("vapid t=") + strlen(t1) - 2 - 1] = 'A';
		ok(cg_vapid_verify(mix, R_ORIGIN, NOW, k, err, sizeof err) < 0,
		   "truncated signature refused (%s)", err);
		free(t1);
		free(t2);
	}
	EVP_PKEY_free(pkey);
}

/* A fresh cg_vapid that has minted a JWT for https://a.example into a1. */
static cg_vapid *vapid_with_a(const char *priv, char *a1)
{
	char err[256];
	cg_vapid *v = cg_vapid_load(priv, SUBJECT, err, sizeof err);

	if (v == NULL || cg_vapid_authorization(v, "https://a.example/x", NOW, a1,
						CG_WEBPUSH_AUTH_HEADER_MAX, err, sizeof err) != 0)
		abort();
	return v;
}

/* Mints JWTs for https://o<first>.example ... o<first+count-1>. */
static void mint_others(cg_vapid *v, int first, int count)
{
	char ep[64], a[CG_WEBPUSH_AUTH_HEADER_MAX], err[256];
	int i;

	for (i = first; i < first + count; i++) {
		snprintf(ep, sizeof ep, "https://o%d.example/x", i);
		if (cg_vapid_authorization(v, ep, NOW, a, sizeof a, err, sizeof err) != 0)
			abort();
	}
}

static void test_vapid_roundtrip_and_cache(void)
{
	char priv[CG_WEBPUSH_KEY_B64_MAX], pub[CG_WEBPUSH_KEY_B64_MAX], priv2[CG_WEBPUSH_KEY_B64_MAX];
	char pub2[CG_WEBPUSH_KEY_B64_MAX], k[CG_WEBPUSH_KEY_B64_MAX], err[256] = "";
	char a1[CG_WEBPUSH_AUTH_HEADER_MAX], a2[CG_WEBPUSH_AUTH_HEADER_MAX];
	char a3[CG_WEBPUSH_AUTH_HEADER_MAX], t[CG_WEBPUSH_AUTH_HEADER_MAX], kk[200], claims[600];
	char want[600], ep[128];
	cg_vapid *v;
	int i, good;

	is_int(cg_vapid_generate(priv, pub), 0, "vapid_generate");
	is_int((long long)strlen(priv), 43, "private key: 43 base64url characters");
	is_int((long long)strlen(pub), 87, "public key: 87 base64url characters");
	ok(pub[0] == 'B', "public key starts with 0x04");
	if (cg_vapid_generate(priv2, pub2) != 0)
		abort();
	ok(strcmp(priv, priv2) != 0 && strcmp(pub, pub2) != 0, "two generated keys differ");

	v = cg_vapid_load(priv, SUBJECT, err, sizeof err);
	if (!ok(v != NULL, "vapid_load from the base64url scalar (%s)", err))
		return;
	is_str(cg_vapid_public_key(v), pub, "derived public key matches the generated one");
	is_int(cg_vapid_authorization(v, "https://push.example.net/wpush/v2/abc", NOW, a1,
				      sizeof a1, err, sizeof err), 0, "authorization (%s)", err);
	ok(split_auth(a1, t, sizeof t, kk, sizeof kk) == 0, "header is \"vapid t=..., k=...\"");
	is_str(kk, pub, "k is the public key");
	ok(jwt_claims(t, claims, sizeof claims) == 0, "claims decode");
	snprintf(want, sizeof want, "{\"aud\":\"https://push.example.net\",\"exp\":%ld,\"sub\":\"%s\"}",
		 NOW + 12 * 3600, SUBJECT);
	is_str(claims, want, "claims: aud origin, exp now+12h, sub");
	ok(strncmp(t, "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.", 37) == 0,
	   "JWT header {\"typ\":\"JWT\",\"alg\":\"ES256\"}");
	is_int(cg_vapid_verify(a1, "https://push.example.net", NOW, k, err, sizeof err), 0,
	       "own header verifies (%s)", err);
	is_str(k, pub, "verify returns k");
	is_int(cg_vapid_verify(a1, "https://push.example.net", NOW + 12 * 3600, k, err, sizeof err),
	       -2, "own header expired 12 h later");
	is_int(cg_vapid_verify(a1, "https://other.example.net", NOW, k, err, sizeof err), -2,
	       "own header refused by another origin");

	/* cache */
	cg_vapid_authorization(v, "https://push.example.net/other/path?q=1", NOW + 3600, a2,
			       sizeof a2, err, sizeof err);
	is_str(a2, a1, "same origin, one hour later, other path: same JWT");
	cg_vapid_authorization(v, "https://push.example.net/x", NOW + 11 * 3600, a2, sizeof a2, err,
			       sizeof err);
	is_str(a2, a1, "same origin at exactly 11 h: same JWT");
	cg_vapid_authorization(v, "https://push.example.net/x", NOW + 11 * 3600 + 1, a2, sizeof a2,
			       err, sizeof err);
	ok(strcmp(a2, a1) != 0, "same origin after 11 h: a new JWT");
	is_int(cg_vapid_verify(a2, "https://push.example.net", NOW + 11 * 3600 + 1, k, err,
			       sizeof err), 0, "the new JWT verifies");
	split_auth(a2, t, sizeof t, kk, sizeof kk);
	jwt_claims(t, claims, sizeof claims);
	snprintf(want, sizeof want, "\"exp\":%ld,", NOW + 23 * 3600 + 1);
	ok(strstr(claims, want) != NULL, "new JWT exp = its now + 12 h");
	cg_vapid_authorization(v, "https://push.example.net/x", NOW + 11 * 3600 + 2, a3, sizeof a3,
			       err, sizeof err);
	is_str(a3, a2, "and is cached in turn");
	cg_vapid_authorization(v, "https://push.example.net/x", NOW - 86400, a3, sizeof a3, err,
			       sizeof err);
	ok(strcmp(a3, a2) != 0, "clock went back a day: re-minted");
	is_int(cg_vapid_verify(a3, "https://push.example.net", NOW - 86400, k, err, sizeof err), 0,
	       "and valid at that time");
	cg_vapid_authorization(v, "https://push2.example.net/x", NOW + 11 * 3600 + 2, a3, sizeof a3,
			       err, sizeof err);
	ok(strcmp(a3, a2) != 0, "another origin: another JWT");
	is_int(cg_vapid_verify(a3, "https://push2.example.net", NOW + 11 * 3600 + 2, k, err,
			       sizeof err), 0, "with its own aud");

	/* LRU: A, then 63 others, touch A, then one more: A survives */
	cg_vapid_free(v);
	v = vapid_with_a(priv, a1);
	mint_others(v, 0, 63);
	cg_vapid_authorization(v, "https://a.example/x", NOW, a2, sizeof a2, err, sizeof err);
	is_str(a2, a1, "64 origins: all cached");
	mint_others(v, 63, 1);
	cg_vapid_authorization(v, "https://a.example/x", NOW, a2, sizeof a2, err, sizeof err);
	is_str(a2, a1, "65th origin evicts the least recently used, not the one just used");
	good = 1;
	for (i = 1; i < 64; i++) {
		char b1[CG_WEBPUSH_AUTH_HEADER_MAX];
		snprintf(ep, sizeof ep, "https://o%d.example/x", i);
		cg_vapid_authorization(v, ep, NOW, b1, sizeof b1, err, sizeof err);
		snprintf(want, sizeof want, "https://o%d.example", i);
		if (cg_vapid_verify(b1, want, NOW, k, err, sizeof err) != 0)
			good = 0;
	}
	ok(good, "every cached JWT verifies for its own origin");
	/* 65 distinct origins: the first is gone */
	cg_vapid_free(v);
	v = vapid_with_a(priv, a1);
	mint_others(v, 0, 64);
	cg_vapid_authorization(v, "https://a.example/x", NOW, a2, sizeof a2, err, sizeof err);
	ok(strcmp(a2, a1) != 0, "65 origins: the least recently used was evicted and re-minted");

	/* errors */
	is_int(cg_vapid_authorization(v, "ftp://x/y", NOW, a1, sizeof a1, err, sizeof err), -1,
	       "authorization: non-http endpoint refused (%s)", err);
	is_int(cg_vapid_authorization(v, "https://a.example/x", NOW, a1, 100, err, sizeof err), -1,
	       "authorization: output too small refused (%s)", err);
	ok(a1[0] == '\0', "and the output is empty");
	cg_vapid_free(v);
	cg_vapid_free(NULL);
}

static void test_vapid_load(void)
{
	static const char *const bad_subjects[] = {
		"", "ops@example.com", "mailto:", "https:", "http://example.com",
		"mailto:ops @example.com", "mailto:\"ops\"@example.com", "mailto:ops@example.com\n",
	};
	char priv[CG_WEBPUSH_KEY_B64_MAX], pub[CG_WEBPUSH_KEY_B64_MAX], err[256] = "";
	char b64[CG_WEBPUSH_KEY_B64_MAX + 2];
	unsigned char raw[32];
	cg_vapid *v;
	size_t i;
	int good = 1;

	if (cg_vapid_generate(priv, pub) != 0)
		abort();
	for (i = 0; i < sizeof bad_subjects / sizeof bad_subjects[0]; i++) {
		v = cg_vapid_load(priv, bad_subjects[i], err, sizeof err);
		if (v != NULL) {
			good = 0;
			printf("# subject \"%s\" accepted\n", bad_subjects[i]);
			cg_vapid_free(v);
		}
	}
	ok(good, "vapid_load: bad subjects refused (%s)", err);
	v = cg_vapid_load(priv, NULL, err, sizeof err);
	ok(v == NULL, "vapid_load: NULL subject refused");
	v = cg_vapid_load(priv, "https://example.com/contact", err, sizeof err);
	ok(v != NULL, "vapid_load: https subject accepted");
	cg_vapid_free(v);
	v = cg_vapid_load("", SUBJECT, err, sizeof err);
	ok(v == NULL, "vapid_load: empty key refused");
	memset(raw, 0, sizeof raw);
	b64e(raw, 32, b64, sizeof b64);
	v = cg_vapid_load(b64, SUBJECT, err, sizeof err);
	ok(v == NULL && strstr(err, "range") != NULL, "vapid_load: zero scalar refused (%s)", err);
	memset(raw, 0xff, sizeof raw);
	b64e(raw, 32, b64, sizeof b64);
	v = cg_vapid_load(b64, SUBJECT, err, sizeof err);
	ok(v == NULL, "vapid_load: scalar over the group order refused (%s)", err);
	snprintf(b64, sizeof b64, "%s=", priv);
	v = cg_vapid_load(b64, SUBJECT, err, sizeof err);
	ok(v != NULL && strcmp(cg_vapid_public_key(v), pub) == 0,
	   "vapid_load: padded scalar accepted (%s)", err);
	cg_vapid_free(v);
	v = cg_vapid_load("/nonexistent/vapid.pem", SUBJECT, err, sizeof err);
	ok(v == NULL && strstr(err, "/nonexistent/vapid.pem") != NULL,
	   "vapid_load: missing file refused with its name (%s)", err);
}

/* Writes pkey as PEM (PKCS#8 or SEC1) to a temporary file; path malloc'ed. */
static char *write_pem(EVP_PKEY *pkey, int sec1)
{
	char *path = strdup("/tmp/cg_test_webpush_XXXXXX");
	BIO *b;
	FILE *f;
	int fd, w;

	if (path == NULL)
		abort();
	fd = mkstemp(path);
	if (fd < 0)
		abort();
	f = fdopen(fd, "w");
	if (f == NULL)
		abort();
	b = BIO_new_fp(f, BIO_NOCLOSE);
	if (b == NULL)
		abort();
	w = sec1 ? PEM_write_bio_PrivateKey_traditional(b, pkey, NULL, NULL, 0, NULL, NULL)
		 : PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
	BIO_free(b);
	if (w != 1 || fclose(f) != 0)
		abort();
	return path;
}

static void test_vapid_pem(void)
{
	char pub_b64[CG_WEBPUSH_KEY_B64_MAX], a[CG_WEBPUSH_AUTH_HEADER_MAX], k[CG_WEBPUSH_KEY_B64_MAX];
	char err[256] = "";
	EVP_PKEY *pkey, *p384;
	cg_vapid *v;
	char *path;
	int sec1;

	pkey = p256_keygen(pub_b64);
	for (sec1 = 0; sec1 <= 1; sec1++) {
		path = write_pem(pkey, sec1);
		v = cg_vapid_load(path, SUBJECT, err, sizeof err);
		ok(v != NULL, "vapid_load: %s PEM file (%s)", sec1 ? "SEC1" : "PKCS#8", err);
		if (v != NULL) {
			is_str(cg_vapid_public_key(v), pub_b64, "PEM: public key derived");
			is_int(cg_vapid_authorization(v, "http://127.0.0.1:9443/p/1", NOW, a, sizeof a,
						      err, sizeof err), 0, "PEM: authorization");
			is_int(cg_vapid_verify(a, "http://127.0.0.1:9443", NOW, k, err, sizeof err),
			       0, "PEM: verifies (%s)", err);
		}
		cg_vapid_free(v);
		unlink(path);
		free(path);
	}
	p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	if (p384 == NULL)
		abort();
	path = write_pem(p384, 0);
	v = cg_vapid_load(path, SUBJECT, err, sizeof err);
	ok(v == NULL, "vapid_load: P-384 PEM refused (%s)", err);
	cg_vapid_free(v);
	unlink(path);
	free(path);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(pkey);
}

int main(void)
{
	test_rfc8291_vector();
	test_keys_parse();
	test_round_trips();
	test_decrypt_rejections();
	test_origin();
	test_vapid_rfc_example();
	test_vapid_malformed();
	test_vapid_hand_tokens();
	test_vapid_roundtrip_and_cache();
	test_vapid_load();
	test_vapid_pem();
	return done_testing();
}

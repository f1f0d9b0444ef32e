/* cg_util: ids, time, base64url and the capped growable buffer. */
#include "config.h"

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/sha.h>

#include "cg_util.h"

int cg_random_bytes(unsigned char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = getrandom(buf + got, n - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

/* 16 bytes -> "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx". */
static void uuid_format(const unsigned char b[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0x0f];
	}
	out[o] = '\0';
}

int cg_uuid4(char out[37])
{
	unsigned char b[16];

	if (cg_random_bytes(b, sizeof b) < 0) {
		out[0] = '\0';
		return -1;
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	uuid_format(b, out);
	return 0;
}

int cg_random_id(const char *prefix, char *out, size_t outlen)
{
	unsigned char b[12];
	size_t plen;

	if (!prefix)
		prefix = "";
	plen = strlen(prefix);
	if (!out || outlen < plen + 2 * sizeof b + 1)
		return -1;
	if (cg_random_bytes(b, sizeof b) < 0) {
		out[0] = '\0';
		return -1;
	}
	memcpy(out, prefix, plen);
	hex_encode(b, sizeof b, out + plen);
	return 0;
}

void cg_uuid_from_hash(const void *data, size_t len, char out[37])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data ? data : (const void *)"", data ? len : 0, md);
	md[6] = (unsigned char)((md[6] & 0x0f) | 0x50);
	md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
	uuid_format(md, out);
}

void cg_time_rfc3339(time_t t, char out[21])
{
	struct tm tm;

	/* Years past 9999 (or before 0) do not fit the fixed width. */
	if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900 ||
	    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) != 20)
		memcpy(out, "1970-01-01T00:00:00Z", 21);
}

time_t cg_now(void)
{
	return time(NULL);
}

int64_t cg_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cg_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char b64url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

long cg_b64url_encode(const void *in, size_t n, char *out, size_t outlen)
{
	const unsigned char *p = in;
	size_t need, i, o = 0;

	if (n > (size_t)LONG_MAX / 4 * 3 - 3)
		return -1;
	need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
	if (!out || outlen < need + 1 || (n && !in))
		return -1;
	for (i = 0; i + 3 <= n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
		out[o++] = b64url_alphabet[v >> 6 & 63];
		out[o++] = b64url_alphabet[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)p[i] << 16;
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
		out[o++] = b64url_alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
	return (long)o;
}

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Strict: only the url alphabet, padding only as the last one or two chars of
 * a multiple-of-four input, and unused trailing bits must be zero (one
 * encoding per byte string). Writes a NUL after the bytes when there is
 * room. */
long cg_b64url_decode(const char *in, size_t n, void *out, size_t outlen)
{
	unsigned char *q = out;
	size_t data = n, need, i, o = 0;
	unsigned acc = 0;
	int bits = 0;

	if (!in && n)
		return -1;
	if (n > (size_t)LONG_MAX)
		return -1;
	if (n && in[n - 1] == '=') {
		if (n % 4 != 0)
			return -1;
		data = n - 1;
		if (data && in[data - 1] == '=')
			data--;
	}
	if (data % 4 == 1)
		return -1;
	if (data != n && (data % 4 == 0))
		return -1; /* "====" or padding where none belongs */
	need = data / 4 * 3 + (data % 4 ? data % 4 - 1 : 0);
	if (need && (!out || outlen < need))
		return -1;
	for (i = 0; i < data; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			q[o++] = (unsigned char)(acc >> bits & 0xff);
		}
	}
	if (bits && (acc & ((1u << bits) - 1)))
		return -1;
	if (out && outlen > o)
		q[o] = '\0';
	return (long)o;
}

int cg_id_valid(const char *s)
{
	size_t i;

	if (!s || !*s)
		return 0;
	for (i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i >= 255)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == ':' || c == '-'))
			return 0;
	}
	return 1;
}

void cg_buf_init(cg_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

/* Makes room for `extra` more content bytes plus the NUL. The content may
 * reach `max` bytes; the allocation is then max + 1. */
static int buf_reserve(cg_buf *b, size_t extra)
{
	size_t want, ncap;
	char *p;

	if (extra > b->max || b->len > b->max - extra || b->len + extra == SIZE_MAX)
		return -1;
	want = b->len + extra + 1;
	if (want <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 64;
	while (ncap < want) {
		if (ncap > SIZE_MAX / 2) {
			ncap = want;
			break;
		}
		ncap *= 2;
	}
	if (ncap > b->max + 1 && b->max < SIZE_MAX)
		ncap = b->max + 1;
	if (ncap < want)
		ncap = want;
	p = realloc(b->data, ncap);
	if (!p)
		return -1;
	b->data = p;
	b->cap = ncap;
	return 0;
}

int cg_buf_append(cg_buf *b, const void *p, size_t n)
{
	if (n && !p)
		return -1;
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int cg_buf_appendf(cg_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	char probe[1];

	va_start(ap, fmt);
	n = vsnprintf(probe, sizeof probe, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if (buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->data[b->len] = '\0';
		return -1;
	}
	b->len += (size_t)n;
	return 0;
}

void cg_buf_reset(cg_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void cg_buf_free(cg_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads in[i] before writing out[j] with j <= i, so in == out is fine. */
long cg_pct_decode(const char *in, size_t len, int plus_space, char *out)
{
	size_t i = 0, j = 0;

	while (i < len) {
		unsigned char c = (unsigned char)in[i];
		if (c == '%') {
			int hi, lo;
			if (len - i < 3)
				return -1;
			hi = hexval((unsigned char)in[i + 1]);
			lo = hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			out[j++] = (char)(hi * 16 + lo);
			i += 3;
		} else if (c == '+' && plus_space) {
			out[j++] = ' ';
			i++;
		} else {
			out[j++] = (char)c;
			i++;
		}
	}
	out[j] = '\0';
	return (long)j;
}

void cg_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

uint64_t cg_hash64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

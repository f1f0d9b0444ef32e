/* test_util: ids, time formatting, base64url and the capped buffer. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cg_util.h"
#include "tap.h"

/* 8-4-4-4-12 lowercase hex with the given version nibble and variant 10xx. */
static int uuid_shape(const char *u, char version)
{
	size_t i;

	if (strlen(u) != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (u[i] != '-')
				return 0;
		} else if (!((u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f'))) {
			return 0;
		}
	}
	return u[14] == version && strchr("89ab", u[19]) != NULL;
}

static void test_uuid4(void)
{
	char a[37], b[37];
	int i, shape_ok = 1;

	is_int(cg_uuid4(a), 0, "cg_uuid4 succeeds");
	ok(uuid_shape(a, '4'), "uuid4 has v4 shape: %s", a);
	for (i = 0; i < 200; i++) {
		if (cg_uuid4(b) != 0 || !uuid_shape(b, '4') || strcmp(a, b) == 0)
			shape_ok = 0;
	}
	ok(shape_ok, "200 more uuid4s are well formed and differ from the first");
	cg_uuid4(b);
	ok(strcmp(a, b) != 0, "two uuid4s differ");
}

static void test_uuid_from_hash(void)
{
	char a[37], b[37], c[37];

	cg_uuid_from_hash("evt_1:device", 12, a);
	cg_uuid_from_hash("evt_1:device", 12, b);
	cg_uuid_from_hash("evt_2:device", 12, c);
	ok(uuid_shape(a, '5'), "hash uuid has version 5 shape: %s", a);
	is_str(a, b, "hash uuid is deterministic");
	ok(strcmp(a, c) != 0, "different input gives a different hash uuid");
	/* SHA-256("abc") = ba7816bf 8f01 cfea 4141 40de5dae2223b003...:
	 * version nibble -> 5, variant bits of 0x41 -> 0x81. */
	cg_uuid_from_hash("abc", 3, a);
	is_str(a, "ba7816bf-8f01-5fea-8141-40de5dae2223", "hash uuid of \"abc\" matches SHA-256");
}

static void test_random_id(void)
{
	char a[4 + 25], b[4 + 25], small[4 + 24];
	size_t i;
	int hex = 1;

	is_int(cg_random_id("act_", a, sizeof a), 0, "random id fits exactly");
	is_int((long long)strlen(a), 28, "random id is prefix + 24 chars");
	ok(strncmp(a, "act_", 4) == 0, "random id keeps its prefix");
	for (i = 4; i < 28; i++)
		if (!strchr("0123456789abcdef", a[i]))
			hex = 0;
	ok(hex, "random id suffix is lowercase hex");
	cg_random_id("act_", b, sizeof b);
	ok(strcmp(a, b) != 0, "two random ids differ");
	is_int(cg_random_id("act_", small, sizeof small), -1, "random id refuses a short buffer");
}

static void test_time(void)
{
	static const struct {
		time_t t;
		const char *want;
	} cases[] = {
		{ 0, "1970-01-01T00:00:00Z" },
		{ 1763289000, "2025-11-16T10:30:00Z" },
		{ 951782400, "2000-02-29T00:00:00Z" },
		{ 2147483647, "2038-01-19T03:14:07Z" },
	};
	char out[21];
	size_t i;
	int64_t m1, m2;
	time_t now;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cg_time_rfc3339(cases[i].t, out);
		is_str(out, cases[i].want, "rfc3339 of %lld", (long long)cases[i].t);
	}
	now = cg_now();
	ok(now > 1700000000 && now - time(NULL) <= 1, "cg_now is the wall clock");
	m1 = cg_monotonic_ms();
	m2 = cg_monotonic_ms();
	ok(m1 > 0 && m2 >= m1, "monotonic ms does not go backwards");
}

static void test_b64url(void)
{
	/* RFC 4648 section 10 vectors, unpadded; plus bytes that map to '-' and '_'. */
	static const struct {
		const char *in;
		size_t n;
		const char *want;
	} enc[] = {
		{ "", 0, "" },
		{ "f", 1, "Zg" },
		{ "fo", 2, "Zm8" },
		{ "foo", 3, "Zm9v" },
		{ "foob", 4, "Zm9vYg" },
		{ "fooba", 5, "Zm9vYmE" },
		{ "foobar", 6, "Zm9vYmFy" },
		{ "\xfb\xff", 2, "-_8" },
		{ "\xff\xff\xfe", 3, "___-" },
	};
	static const struct {
		const char *in;
		long want; /* byte count, or -1 */
		const char *bytes;
	} dec[] = {
		{ "Zm9vYg", 4, "foob" },
		{ "Zm9vYg==", 4, "foob" },
		{ "Zm9vYmE=", 5, "fooba" },
		{ "Zm9vYmE", 5, "fooba" },
		{ "", 0, "" },
		{ "-_8", 2, "\xfb\xff" },
		{ "+/8", -1, NULL },      /* standard alphabet */
		{ "Zm9v YmFy", -1, NULL }, /* space */
		{ "Zm9vY", -1, NULL },     /* impossible length */
		{ "Zm9vYg=", -1, NULL },   /* bad padding */
		{ "Zg=a", -1, NULL },      /* padding in the middle */
		{ "====", -1, NULL },
		{ "Zh", -1, NULL },        /* non-zero trailing bits */
		{ "Zm9v\n", -1, NULL },
	};
	char out[64];
	unsigned char bin[64];
	size_t i;
	unsigned char all[256];
	char big[400];
	long n;

	for (i = 0; i < sizeof enc / sizeof enc[0]; i++) {
		n = cg_b64url_encode(enc[i].in, enc[i].n, out, sizeof out);
		is_str(n >= 0 ? out : NULL, enc[i].want, "encode vector %zu", i);
		is_int(n, (long long)strlen(enc[i].want), "encode vector %zu length", i);
	}
	for (i = 0; i < sizeof dec / sizeof dec[0]; i++) {
		n = cg_b64url_decode(dec[i].in, strlen(dec[i].in), bin, sizeof bin);
		is_int(n, dec[i].want, "decode case %zu", i);
		if (dec[i].want > 0)
			ok(memcmp(bin, dec[i].bytes, (size_t)n) == 0, "decode case %zu bytes", i);
	}
	is_int(cg_b64url_encode("foo", 3, out, 4), -1, "encode refuses a buffer without room for NUL");
	is_int(cg_b64url_encode("foo", 3, out, 5), 4, "encode fits exactly");
	is_int(cg_b64url_decode("Zm9vYmFy", 8, bin, 5), -1, "decode refuses a short buffer");
	is_int(cg_b64url_decode("Zm9vYmFy", 8, bin, 6), 6, "decode fits exactly");

	for (i = 0; i < sizeof all; i++)
		all[i] = (unsigned char)i;
	n = cg_b64url_encode(all, sizeof all, big, sizeof big);
	ok(n > 0 && strspn(big, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
			    (size_t)n, "encoding of all bytes uses only the url alphabet");
	{
		unsigned char back[256];
		long m = cg_b64url_decode(big, (size_t)n, back, sizeof back);
		ok(m == 256 && memcmp(back, all, 256) == 0, "all 256 bytes round trip");
	}
	for (i = 0; i <= 10; i++) {
		unsigned char back[16];
		long e = cg_b64url_encode(all + 100, i, out, sizeof out);
		long d = cg_b64url_decode(out, (size_t)e, back, sizeof back);
		ok(d == (long)i && memcmp(back, all + 100, i) == 0, "round trip of %zu bytes", i);
	}
}

static void test_id_valid(void)
{
	static const struct {
		const char *s;
		int want;
	} cases[] = {
		{ "act_123", 1 },
		{ "a", 1 },
		{ "A-Z.a_z:0-9", 1 },
		{ "", 0 },
		{ "has space", 0 },
		{ "slash/no", 0 },
		{ "quote\"", 0 },
		{ "newline\n", 0 },
		{ "caf\xc3\xa9", 0 },
		{ "pct%20", 0 },
	};
	char long_ok[256], long_bad[257];
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		is_int(cg_id_valid(cases[i].s), cases[i].want, "id case %zu", i);
	is_int(cg_id_valid(NULL), 0, "NULL id is invalid");
	memset(long_ok, 'x', 255);
	long_ok[255] = '\0';
	memset(long_bad, 'x', 256);
	long_bad[256] = '\0';
	is_int(cg_id_valid(long_ok), 1, "255-byte id is valid");
	is_int(cg_id_valid(long_bad), 0, "256-byte id is invalid");
}

static void test_buf(void)
{
	cg_buf b;
	int i, grew = 1;

	cg_buf_init(&b, 10);
	is_int(cg_buf_append(&b, "hello", 5), 0, "append within cap");
	is_str(b.data, "hello", "content is NUL-terminated");
	is_int(cg_buf_append(&b, "world!", 6), -1, "append past cap fails");
	is_int((long long)b.len, 5, "failed append leaves len unchanged");
	is_str(b.data, "hello", "failed append leaves content unchanged");
	is_int(cg_buf_append(&b, "world", 5), 0, "append up to exactly max succeeds");
	is_str(b.data, "helloworld", "content at max");
	is_int(cg_buf_append(&b, "", 0), 0, "empty append at max succeeds");
	is_int(cg_buf_append(&b, "x", 1), -1, "one byte past max fails");
	is_int(cg_buf_appendf(&b, "%d", 1), -1, "appendf past max fails");
	is_str(b.data, "helloworld", "still unchanged after failed appendf");
	cg_buf_reset(&b);
	is_int((long long)b.len, 0, "reset empties");
	is_str(b.data, "", "reset leaves an empty string");
	is_int(cg_buf_appendf(&b, "%s-%03d", "ab", 7), 0, "appendf");
	is_str(b.data, "ab-007", "appendf content");
	is_int(cg_buf_appendf(&b, "%s", "12345"), -1, "appendf that would pass max fails");
	is_str(b.data, "ab-007", "appendf failure leaves content");
	cg_buf_free(&b);
	ok(b.data == NULL && b.len == 0, "free clears the buffer");

	cg_buf_init(&b, 100000);
	for (i = 0; i < 10000; i++) {
		if (cg_buf_appendf(&b, "%04d", i % 10000) != 0)
			grew = 0;
	}
	ok(grew && b.len == 40000 && b.cap <= 100001, "buffer grows up to its cap");
	ok(memcmp(b.data + 39996, "9999", 4) == 0 && b.data[40000] == '\0', "grown content intact");
	cg_buf_free(&b);

	cg_buf_init(&b, 0);
	is_int(cg_buf_append(&b, "x", 1), -1, "max 0 buffer refuses bytes");
	cg_buf_free(&b);
}

static void test_pct_decode(void)
{
	static const struct {
		const char *in;
		int plus_space;
		long want_len; /* -1: malformed */
		const char *want;
	} c[] = {
		{ "cap_456", 0, 7, "cap_456" },
		{ "cap%5F456", 0, 7, "cap_456" },
		{ "a%2Fb", 0, 3, "a/b" },
		{ "a%2fb", 0, 3, "a/b" },
		{ "a+b", 0, 3, "a+b" },
		{ "a+b", 1, 3, "a b" },
		{ "%41%42%43", 0, 3, "ABC" },
		{ "", 0, 0, "" },
		{ "%", 0, -1, NULL },
		{ "%4", 0, -1, NULL },
		{ "%zz", 0, -1, NULL },
		{ "ab%4g", 0, -1, NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char out[64];
		long n = cg_pct_decode(c[i].in, strlen(c[i].in), c[i].plus_space, out);

		if (c[i].want_len < 0)
			is_int(n, -1, "pct_decode \"%s\" is malformed", c[i].in);
		else
			ok(n == c[i].want_len && strcmp(out, c[i].want) == 0, "pct_decode \"%s\" -> \"%s\"",
			   c[i].in, c[i].want);
	}
	{
		char buf[16] = "x%00y";
		long n = cg_pct_decode(buf, strlen(buf), 0, buf);

		ok(n == 3 && strlen(buf) == 1, "a decoded NUL is kept and visible to strlen (in place)");
	}
}

int main(void)
{
	test_uuid4();
	test_uuid_from_hash();
	test_random_id();
	test_time();
	test_b64url();
	test_id_valid();
	test_buf();
	test_pct_decode();
	return done_testing();
}

/* test_json: strict parsing, depth caps, typed getters and compact output. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cg_json.h"
#include "tap.h"

static void test_parse_table(void)
{
	static const struct {
		const char *doc;
		size_t len; /* 0: strlen(doc) */
		int ok;
		const char *err; /* substring of the error when !ok */
	} cases[] = {
		{ "{}", 0, 1, NULL },
		{ "[]", 0, 1, NULL },
		{ "{\"a\":1,\"b\":[true,false,null],\"c\":\"x\"}", 0, 1, NULL },
		{ "  {\"a\" : 1}\n\t ", 0, 1, NULL },
		{ "123", 0, 1, NULL },
		{ "-1.5e3", 0, 1, NULL },
		{ "\"str\"", 0, 1, NULL },
		{ "true", 0, 1, NULL },
		{ "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", 0, 1, NULL },
		{ "", 0, 0, "offset 0" },
		{ "   ", 0, 0, "offset" },
		{ "{", 0, 0, "offset 1" },
		{ "{\"a\":1", 0, 0, "offset" },
		{ "{\"a\":1}x", 0, 0, "offset 7" },
		{ "{} {}", 0, 0, "offset 3" },
		{ "1 2", 0, 0, "offset 2" },
		{ "{'a':1}", 0, 0, "offset" },
		{ "[1,]", 0, 0, "offset" },
		{ "{\"a\":1,}", 0, 0, "offset" },
		{ "[01]", 0, 0, "offset" },
		{ "NaN", 0, 0, "unexpected character at offset 0" },
		{ "[Infinity]", 0, 0, "unexpected character at offset 1" },
		{ "[-Infinity]", 0, 0, "offset 1" },
		{ "[1e999]", 0, 0, "range" },
		{ "[1.]", 0, 0, "invalid number at offset 1" },
		{ "[.5]", 0, 0, "offset 1" },
		{ "[+1]", 0, 0, "offset 1" },
		{ "[-01]", 0, 0, "offset 1" },
		{ "[1.5e+]", 0, 0, "offset 1" },
		{ "[0x10]", 0, 0, "offset 2" },
		{ "[1e5, -0.25E-3, 0]", 0, 1, NULL },
		{ "[\"a\tb\"]", 0, 0, "control character in string at offset 3" },
		{ "[\"a\nb\"]", 0, 0, "control character in string at offset 3" },
		{ "[\"a\x01" "b\"]", 0, 0, "control character in string at offset 3" },
		{ "[\"a\\tb\"]", 0, 1, NULL },
		{ "[\"q\\\"[\"]", 0, 1, NULL },
		{ "[\"\\x41\"]", 0, 0, "offset" },
		{ "{\"a\":true,\"b\":false,\"c\":null}", 0, 1, NULL },
		{ "[truex]", 0, 0, "offset 5" },
		{ "[True]", 0, 0, "offset 1" },
		{ "/*c*/[1]", 0, 0, "offset 0" },
		{ "tru", 0, 0, "offset" },
		{ "{\"a\":\"x\"}\0", 10, 0, "NUL byte at offset 9" },
		{ "\"a\0b\"", 5, 0, "NUL byte at offset 2" },
		{ "\"\xc0\xaf\"", 0, 0, "UTF-8 at offset 1" },      /* overlong '/' */
		{ "\"\xed\xa0\x80\"", 0, 0, "UTF-8 at offset 1" },  /* surrogate */
		{ "\"\xf4\x90\x80\x80\"", 0, 0, "UTF-8" },          /* > U+10FFFF */
		{ "\"\xff\"", 0, 0, "UTF-8" },
		{ "\"\xe2\x82\"", 0, 0, "UTF-8" },                  /* truncated */
		{ "null", 0, 0, "null" },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[128] = "";
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].doc);
		json_object *o = cg_json_parse(cases[i].doc, len, 16, err, sizeof err);

		if (cases[i].ok) {
			ok(o != NULL, "parse case %zu accepted %s", i, err);
		} else {
			ok(o == NULL, "parse case %zu rejected", i);
			ok(strstr(err, cases[i].err) != NULL, "parse case %zu error has \"%s\": %s", i,
			   cases[i].err, err);
		}
		json_object_put(o);
	}
	{
		/* Buffers need not be NUL-terminated: only len bytes are read. */
		const char doc[] = "{\"a\":1}GARBAGE";
		char err[128];
		json_object *o = cg_json_parse(doc, 7, 16, err, sizeof err);
		ok(o != NULL, "parse reads only len bytes");
		json_object_put(o);
		o = cg_json_parse("12345", 3, 16, err, sizeof err);
		ok(o && json_object_get_int64(o) == 123, "a bare number ends at len");
		json_object_put(o);
	}
}

static void test_depth(void)
{
	static const struct {
		const char *doc;
		int depth;
	} cases[] = {
		{ "1", 1 },
		{ "[]", 1 },
		{ "[1]", 2 },
		{ "{\"a\":{}}", 2 },
		{ "{\"a\":{\"b\":[1]}}", 4 },
		{ "[[[[[]]]]]", 5 },
		{ "[1,[2,[3]],{\"x\":true}]", 4 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[128] = "";
		int d = cases[i].depth;
		json_object *o = cg_json_parse(cases[i].doc, strlen(cases[i].doc), d, err, sizeof err);

		ok(o != NULL, "%s parses with max depth %d", cases[i].doc, d);
		is_int(cg_json_depth(o), d, "cg_json_depth(%s)", cases[i].doc);
		json_object_put(o);
		if (d > 1) {
			o = cg_json_parse(cases[i].doc, strlen(cases[i].doc), d - 1, err, sizeof err);
			ok(o == NULL && strstr(err, "offset") != NULL,
			   "%s is rejected with max depth %d: %s", cases[i].doc, d - 1, err);
			json_object_put(o);
		}
	}
	{
		char deep[2001];
		char err[128];
		json_object *o;

		memset(deep, '[', 1000);
		memset(deep + 1000, ']', 1000);
		deep[2000] = '\0';
		o = cg_json_parse(deep, 2000, 32, err, sizeof err);
		ok(o == NULL, "1000 nested arrays rejected at depth 32");
		o = cg_json_parse(deep, 2000, 0, err, sizeof err);
		ok(o == NULL, "max depth 0 is refused");
	}
}

static void test_parse_object(void)
{
	char err[128];
	json_object *o;

	o = cg_json_parse_object("[1]", 3, 8, err, sizeof err);
	ok(o == NULL && strstr(err, "object") != NULL, "parse_object rejects an array: %s", err);
	o = cg_json_parse_object("{\"a\":1}", 7, 8, err, sizeof err);
	ok(o && json_object_is_type(o, json_type_object), "parse_object accepts an object");
	json_object_put(o);
}

static void test_getters(void)
{
	static const char doc[] =
		"{\"s\":\"hello\",\"n\":42,\"neg\":-7,\"f\":1.5,\"nul\":null,\"o\":{\"k\":\"v\"},"
		"\"arr\":[1],\"b\":true,\"z\":\"a\\u0000b\",\"big\":9223372036854775807,"
		"\"huge\":18446744073709551615,\"numstr\":\"12\",\"surr\":\"\\ud83d\\ude00\"}";
	static const struct {
		const char *key;
		size_t max;
		cg_json_status want;
		const char *val;
	} strs[] = {
		{ "s", 0, CG_JSON_OK, "hello" },
		{ "s", 5, CG_JSON_OK, "hello" },
		{ "s", 4, CG_JSON_TOO_LONG, NULL },
		{ "missing", 0, CG_JSON_ABSENT, NULL },
		{ "nul", 0, CG_JSON_ABSENT, NULL },
		{ "n", 0, CG_JSON_WRONG_TYPE, NULL },
		{ "o", 0, CG_JSON_WRONG_TYPE, NULL },
		{ "arr", 0, CG_JSON_WRONG_TYPE, NULL },
		{ "b", 0, CG_JSON_WRONG_TYPE, NULL },
		{ "z", 0, CG_JSON_BAD_UTF8, NULL },
		{ "surr", 0, CG_JSON_OK, "\xf0\x9f\x98\x80" },
	};
	static const struct {
		const char *key;
		cg_json_status want;
		long long val;
	} ints[] = {
		{ "n", CG_JSON_OK, 42 },
		{ "neg", CG_JSON_OK, -7 },
		{ "big", CG_JSON_OK, 9223372036854775807LL },
		{ "huge", CG_JSON_WRONG_TYPE, 0 },
		{ "f", CG_JSON_WRONG_TYPE, 0 },
		{ "numstr", CG_JSON_WRONG_TYPE, 0 },
		{ "b", CG_JSON_WRONG_TYPE, 0 },
		{ "nul", CG_JSON_ABSENT, 0 },
		{ "missing", CG_JSON_ABSENT, 0 },
	};
	static const struct {
		const char *key;
		cg_json_status want;
	} objs[] = {
		{ "o", CG_JSON_OK },
		{ "arr", CG_JSON_WRONG_TYPE },
		{ "s", CG_JSON_WRONG_TYPE },
		{ "nul", CG_JSON_ABSENT },
		{ "missing", CG_JSON_ABSENT },
	};
	char err[128] = "";
	json_object *o = cg_json_parse(doc, strlen(doc), 8, err, sizeof err);
	json_object *arr, *sub = NULL;
	size_t i;

	if (!ok(o != NULL, "getter document parses %s", err))
		return;
	for (i = 0; i < sizeof strs / sizeof strs[0]; i++) {
		const char *v = NULL;
		cg_json_status st = cg_json_get_string(o, strs[i].key, strs[i].max, &v);
		is_int(st, strs[i].want, "get_string \"%s\" max %zu", strs[i].key, strs[i].max);
		if (strs[i].val)
			is_str(v, strs[i].val, "get_string \"%s\" value", strs[i].key);
	}
	for (i = 0; i < sizeof ints / sizeof ints[0]; i++) {
		long long v = 0;
		cg_json_status st = cg_json_get_int64(o, ints[i].key, &v);
		is_int(st, ints[i].want, "get_int64 \"%s\"", ints[i].key);
		if (st == CG_JSON_OK)
			is_int(v, ints[i].val, "get_int64 \"%s\" value", ints[i].key);
	}
	for (i = 0; i < sizeof objs / sizeof objs[0]; i++) {
		json_object *v = NULL;
		is_int(cg_json_get_object(o, objs[i].key, &v), objs[i].want, "get_object \"%s\"",
		       objs[i].key);
		if (objs[i].want == CG_JSON_OK)
			sub = v;
	}
	{
		const char *v = NULL;
		ok(sub && cg_json_get_string(sub, "k", 0, &v) == CG_JSON_OK && strcmp(v, "v") == 0,
		   "get_object gives the nested object");
	}
	arr = json_object_object_get(o, "arr");
	is_int(cg_json_get_string(arr, "x", 0, NULL), CG_JSON_WRONG_TYPE,
	       "getter on a non-object is WRONG_TYPE");
	is_int(cg_json_get_int64(NULL, "x", NULL), CG_JSON_WRONG_TYPE, "getter on NULL is WRONG_TYPE");
	json_object_put(o);
}

static void test_build_and_compact(void)
{
	json_object *o = json_object_new_object();
	const char *s;

	is_int(cg_json_add_string(o, "url", "https://example.test/a/b"), 0, "add_string");
	is_int(cg_json_add_string(o, "none", NULL), 0, "add_string NULL");
	is_int(cg_json_add_int64(o, "n", -9007199254740993LL), 0, "add_int64");
	is_int(cg_json_add_string(o, "q", "say \"hi\"\n"), 0, "add_string with escapes");
	s = cg_json_compact(o);
	is_str(s, "{\"url\":\"https://example.test/a/b\",\"none\":null,\"n\":-9007199254740993,"
		  "\"q\":\"say \\\"hi\\\"\\n\"}",
	       "compact output: no spaces, '/' not escaped");
	{
		json_object *arr = json_object_new_array();
		is_int(cg_json_add_string(arr, "k", "v"), -1, "add_string to an array fails");
		is_int(cg_json_add_int64(arr, "k", 1), -1, "add_int64 to an array fails");
		json_object_put(arr);
	}
	{
		/* Round trip through the parser. */
		char err[128];
		json_object *back = cg_json_parse(s, strlen(s), 4, err, sizeof err);
		const char *url = NULL;
		ok(back && cg_json_get_string(back, "url", 0, &url) == CG_JSON_OK &&
			   strcmp(url, "https://example.test/a/b") == 0,
		   "compact output parses back");
		json_object_put(back);
	}
	json_object_put(o);
}

static void test_utf8(void)
{
	static const struct {
		const char *s;
		int want;
	} cases[] = {
		{ "", 1 },
		{ "ascii", 1 },
		{ "\xc2\x80", 1 },                 /* U+0080 */
		{ "\xdf\xbf", 1 },                 /* U+07FF */
		{ "\xe0\xa0\x80", 1 },             /* U+0800 */
		{ "\xed\x9f\xbf", 1 },             /* U+D7FF */
		{ "\xee\x80\x80", 1 },             /* U+E000 */
		{ "\xef\xbf\xbf", 1 },             /* U+FFFF */
		{ "\xf0\x90\x80\x80", 1 },         /* U+10000 */
		{ "\xf4\x8f\xbf\xbf", 1 },         /* U+10FFFF */
		{ "\xc0\x80", 0 },                 /* overlong NUL */
		{ "\xc1\xbf", 0 },                 /* overlong */
		{ "\xe0\x9f\xbf", 0 },             /* overlong */
		{ "\xf0\x8f\xbf\xbf", 0 },         /* overlong */
		{ "\xed\xa0\x80", 0 },             /* U+D800 */
		{ "\xed\xbf\xbf", 0 },             /* U+DFFF */
		{ "\xf4\x90\x80\x80", 0 },         /* U+110000 */
		{ "\xf5\x80\x80\x80", 0 },
		{ "\x80", 0 },                     /* lone continuation */
		{ "\xc2", 0 },                     /* truncated */
		{ "\xe2\x82", 0 },
		{ "\xc2\x41", 0 },                 /* bad continuation */
		{ "\xff", 0 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		is_int(cg_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].want, "utf8 case %zu", i);
	is_int(cg_utf8_valid("a\0b", 3), 1, "NUL is valid UTF-8 (the parser rejects it separately)");
	is_int(cg_utf8_valid("\xe2\x82\xac", 2), 0, "length is honoured");
}

int main(void)
{
	test_parse_table();
	test_depth();
	test_parse_object();
	test_getters();
	test_build_and_compact();
	test_utf8();
	return done_testing();
}

/* cg_json: strict, depth-capped JSON parsing and typed field access over json-c. */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_json.h"
#include "cg_util.h"

/* Offset of the first byte that is not part of valid UTF-8 (overlong forms,
 * UTF-16 surrogates and code points past U+10FFFF are invalid), or `len`. */
static size_t utf8_bad_offset(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		unsigned char lo = 0x80, hi = 0xbf;
		size_t n, j;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* past U+10FFFF */
		} else {
			return i;
		}
		if (len - i - 1 < n)
			return i;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (j = 2; j <= n; j++)
			if (s[i + j] < 0x80 || s[i + j] > 0xbf)
				return i;
		i += n + 1;
	}
	return len;
}

int cg_utf8_valid(const char *s, size_t len)
{
	if (!s)
		return len == 0;
	return utf8_bad_offset(s, len) == len;
}

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Length of the RFC 8259 number at s (n bytes available), or 0. */
static size_t number_len(const char *s, size_t n)
{
	size_t i = 0;

	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0') {
		i++;
	} else if (i < n && s[i] >= '1' && s[i] <= '9') {
		while (i < n && is_digit(s[i]))
			i++;
	} else {
		return 0;
	}
	if (i < n && s[i] == '.') {
		i++;
		if (i >= n || !is_digit(s[i]))
			return 0;
		while (i < n && is_digit(s[i]))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || !is_digit(s[i]))
			return 0;
		while (i < n && is_digit(s[i]))
			i++;
	}
	return i;
}

/* json-c's strict mode still takes single-quoted names, raw control
 * characters inside strings, "1." and NaN/Infinity. This lexical pass
 * admits only RFC 8259 tokens; json-c then checks the structure and the
 * escapes. Returns 0, or -1 with *off at the first bad byte. */
static int lex_check(const char *buf, size_t len, size_t *off, const char **why)
{
	static const char *const literals[] = { "true", "false", "null" };
	size_t i = 0, j, n;

	while (i < len) {
		char c = buf[i];

		if (is_ws(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == ':' || c == ',') {
			i++;
			continue;
		}
		if (c == '"') {
			for (i++; i < len && buf[i] != '"'; i++) {
				if ((unsigned char)buf[i] < 0x20) {
					*off = i;
					*why = "control character in string";
					return -1;
				}
				if (buf[i] == '\\')
					i++; /* json-c checks the escape itself */
			}
			i++;
			continue;
		}
		if (c == '-' || is_digit(c)) {
			n = number_len(buf + i, len - i);
			if (n == 0 || (i + n < len && (buf[i + n] == '.' || is_digit(buf[i + n]) ||
							 buf[i + n] == 'e' || buf[i + n] == 'E'))) {
				*off = i;
				*why = "invalid number";
				return -1;
			}
			i += n;
			continue;
		}
		for (j = 0; j < sizeof literals / sizeof literals[0]; j++) {
			n = strlen(literals[j]);
			if (len - i >= n && memcmp(buf + i, literals[j], n) == 0)
				break;
		}
		if (j == sizeof literals / sizeof literals[0]) {
			*off = i;
			*why = "unexpected character";
			return -1;
		}
		i += n;
	}
	return 0;
}

/* Doubles that overflow (1e999) come back as Infinity; JSON has none. */
static int all_finite(json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_double:
		return isfinite(json_object_get_double(o));
	case json_type_array: {
		size_t i, n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			if (!all_finite(json_object_array_get_idx(o, i)))
				return 0;
		return 1;
	}
	case json_type_object: {
		json_object_object_foreach(o, k, v) {
			(void)k;
			if (!all_finite(v))
				return 0;
		}
		return 1;
	}
	default:
		return 1;
	}
}

json_object *cg_json_parse(const char *buf, size_t len, int max_depth, char *err, size_t errlen)
{
	json_tokener *tok = NULL;
	json_object *obj = NULL;
	enum json_tokener_error jerr;
	const char *nul, *why = NULL;
	size_t off, end;

	if (!buf || max_depth < 1) {
		cg_set_err(err, errlen, "invalid arguments");
		goto out;
	}
	if (len > INT_MAX - 1) {
		cg_set_err(err, errlen, "document too large (%zu bytes)", len);
		goto out;
	}
	nul = memchr(buf, '\0', len);
	if (nul) {
		cg_set_err(err, errlen, "NUL byte at offset %zu", (size_t)(nul - buf));
		goto out;
	}
	off = utf8_bad_offset(buf, len);
	if (off != len) {
		cg_set_err(err, errlen, "invalid UTF-8 at offset %zu", off);
		goto out;
	}
	if (lex_check(buf, len, &off, &why) < 0) {
		cg_set_err(err, errlen, "%s at offset %zu", why, off);
		goto out;
	}
	tok = json_tokener_new_ex(max_depth);
	if (!tok) {
		cg_set_err(err, errlen, "out of memory");
		goto out;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue) {
		/* A bare number (or nothing) at the end: the terminating NUL
		 * tells json-c that the input is complete. */
		obj = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		end = len;
		if (jerr == json_tokener_continue)
			jerr = json_tokener_error_parse_eof;
	}
	if (jerr != json_tokener_success || !obj) {
		if (obj) {
			json_object_put(obj);
			obj = NULL;
		}
		if (jerr == json_tokener_success) {
			/* A lone JSON null parses to a NULL object. */
			cg_set_err(err, errlen, "null is not accepted as a document");
		} else {
			cg_set_err(err, errlen, "%s at offset %zu", json_tokener_error_desc(jerr), end);
		}
		goto out;
	}
	for (off = end; off < len; off++) {
		if (!is_ws(buf[off])) {
			cg_set_err(err, errlen, "trailing data at offset %zu", off);
			json_object_put(obj);
			obj = NULL;
			goto out;
		}
	}
	if (!all_finite(obj)) {
		cg_set_err(err, errlen, "number out of range");
		json_object_put(obj);
		obj = NULL;
		goto out;
	}
out:
	if (tok)
		json_tokener_free(tok);
	return obj;
}

json_object *cg_json_parse_object(const char *buf, size_t len, int max_depth, char *err, size_t errlen)
{
	json_object *obj = cg_json_parse(buf, len, max_depth, err, errlen);

	if (obj && !json_object_is_type(obj, json_type_object)) {
		cg_set_err(err, errlen, "expected a JSON object");
		json_object_put(obj);
		obj = NULL;
	}
	return obj;
}

/* Looks up `key`: CG_JSON_OK with *v set, CG_JSON_ABSENT for missing or
 * null, CG_JSON_WRONG_TYPE when `obj` is not an object. */
static cg_json_status lookup(json_object *obj, const char *key, json_object **v)
{
	*v = NULL;
	if (!obj || !key || !json_object_is_type(obj, json_type_object))
		return CG_JSON_WRONG_TYPE;
	if (!json_object_object_get_ex(obj, key, v) || !*v)
		return CG_JSON_ABSENT;
	return CG_JSON_OK;
}

cg_json_status cg_json_get_string(json_object *obj, const char *key, size_t max_len, const char **out)
{
	json_object *v;
	cg_json_status st = lookup(obj, key, &v);
	const char *s;
	size_t len;

	if (st != CG_JSON_OK)
		return st;
	if (!json_object_is_type(v, json_type_string))
		return CG_JSON_WRONG_TYPE;
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (max_len && len > max_len)
		return CG_JSON_TOO_LONG;
	/* "\u0000" decodes to a NUL that C strings cannot carry. */
	if (memchr(s, '\0', len) || !cg_utf8_valid(s, len))
		return CG_JSON_BAD_UTF8;
	if (out)
		*out = s;
	return CG_JSON_OK;
}

cg_json_status cg_json_get_int64(json_object *obj, const char *key, long long *out)
{
	json_object *v;
	cg_json_status st = lookup(obj, key, &v);

	if (st != CG_JSON_OK)
		return st;
	if (!json_object_is_type(v, json_type_int))
		return CG_JSON_WRONG_TYPE;
	/* json-c keeps integers past INT64_MAX as uint64. */
	if (json_object_get_uint64(v) > (uint64_t)INT64_MAX && json_object_get_int64(v) >= 0)
		return CG_JSON_WRONG_TYPE;
	if (out)
		*out = (long long)json_object_get_int64(v);
	return CG_JSON_OK;
}

cg_json_status cg_json_get_object(json_object *obj, const char *key, json_object **out)
{
	json_object *v;
	cg_json_status st = lookup(obj, key, &v);

	if (st != CG_JSON_OK)
		return st;
	if (!json_object_is_type(v, json_type_object))
		return CG_JSON_WRONG_TYPE;
	if (out)
		*out = v;
	return CG_JSON_OK;
}

int cg_json_depth(json_object *obj)
{
	int max = 0;

	switch (json_object_get_type(obj)) {
	case json_type_array: {
		size_t i, n = json_object_array_length(obj);
		for (i = 0; i < n; i++) {
			int d = cg_json_depth(json_object_array_get_idx(obj, i));
			if (d > max)
				max = d;
		}
		return 1 + max;
	}
	case json_type_object: {
		json_object_object_foreach(obj, k, v) {
			int d = cg_json_depth(v);
			(void)k;
			if (d > max)
				max = d;
		}
		return 1 + max;
	}
	default:
		return 1;
	}
}

const char *cg_json_compact(json_object *obj)
{
	return json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

int cg_json_add_string(json_object *obj, const char *key, const char *val)
{
	json_object *v = NULL;

	if (!obj || !key || !json_object_is_type(obj, json_type_object))
		return -1;
	if (val) {
		v = json_object_new_string(val);
		if (!v)
			return -1;
	}
	if (json_object_object_add(obj, key, v) != 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

int cg_json_add_int64(json_object *obj, const char *key, long long val)
{
	json_object *v;

	if (!obj || !key || !json_object_is_type(obj, json_type_object))
		return -1;
	v = json_object_new_int64((int64_t)val);
	if (!v)
		return -1;
	if (json_object_object_add(obj, key, v) != 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

size_t cg_utf8_floor(const char *s, size_t len, size_t n)
{
	if (n >= len)
		return len;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

#define FIT_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 */
#define ELLIPSIS_LEN 3

/* Compact size of `root`, or (size_t)-1 when it cannot be serialised. */
static size_t compact_len(json_object *root)
{
	size_t len = 0;

	if (json_object_to_json_string_length(root, FIT_FLAGS, &len) == NULL)
		return (size_t)-1;
	return len;
}

/* Sets every slot to s[0..n) + "…", or removes the keys when `drop`.
 * An existing key keeps its place, so the document's order is stable.
 * Returns 0 or -1. */
static int fit_set(const cg_json_slot *slots, size_t nslots, const char *s, size_t n, int drop)
{
	char *tmp = NULL;
	size_t i;
	int rc = -1;

	if (!drop) {
		tmp = malloc(n + ELLIPSIS_LEN + 1);
		if (!tmp)
			return -1;
		memcpy(tmp, s, n);
		memcpy(tmp + n, ELLIPSIS, ELLIPSIS_LEN);
	}
	for (i = 0; i < nslots; i++) {
		json_object *v;

		if (drop) {
			json_object_object_del(slots[i].obj, slots[i].key);
			continue;
		}
		v = json_object_new_string_len(tmp, (int)(n + ELLIPSIS_LEN));
		if (!v)
			goto out;
		if (json_object_object_add(slots[i].obj, slots[i].key, v) != 0) {
			json_object_put(v);
			goto out;
		}
	}
	rc = 0;
out:
	free(tmp);
	return rc;
}

int cg_json_fit_text(json_object *root, size_t max, const cg_json_slot *slots, size_t nslots,
		     const char *s, size_t n)
{
	size_t lo = 0, hi = n < max ? n : max, best = 0, sz;
	int found = 0;

	sz = compact_len(root);
	if (sz == (size_t)-1)
		return -1;
	if (sz <= max)
		return 0;
	if (n == 0)
		lo = 1; /* nothing to cut: skip the search, drop the keys */
	/* Binary search on the cut: cg_utf8_floor is monotonic, so is the size. */
	while (lo <= hi) {
		size_t mid = lo + (hi - lo) / 2, cut = cg_utf8_floor(s, n, mid);

		if (fit_set(slots, nslots, s, cut, 0) < 0)
			return -1;
		sz = compact_len(root);
		if (sz == (size_t)-1)
			return -1;
		if (sz <= max) {
			best = cut;
			found = 1;
			lo = mid + 1;
		} else {
			if (mid == 0)
				break;
			hi = mid - 1;
		}
	}
	if (found)
		return fit_set(slots, nslots, s, best, 0);
	if (fit_set(slots, nslots, s, 0, 1) < 0)
		return -1;
	sz = compact_len(root);
	if (sz == (size_t)-1)
		return -1;
	return sz <= max ? 0 : 1;
}

char *cg_json_compact_dup(json_object *obj, size_t max, size_t *len)
{
	const char *text;
	size_t n = 0;
	char *out;

	*len = 0;
	text = json_object_to_json_string_length(obj, FIT_FLAGS, &n);
	if (!text || n > max)
		return NULL;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	memcpy(out, text, n + 1);
	*len = n;
	return out;
}

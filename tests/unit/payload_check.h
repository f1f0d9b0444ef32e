/* payload_check.h: what the push payload tests share: reading a built
 * payload back, and the texts and checks of "a message too long for its
 * payload is cut at a UTF-8 boundary and ends in an ellipsis". Header-only,
 * included once by each of test_apns_payload.c and test_webpush_payload.c
 * after tap.h. */
#ifndef CG_PAYLOAD_CHECK_H
#define CG_PAYLOAD_CHECK_H

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cg_json.h"

#define EVENT_ID "0b5f3f0e-6c1d-4c55-9d1e-2f8a1b9c7d10"

/* An event of `type` for `capsule_id` at `version` whose activity has the
 * given fields (NULL: absent) and activity_id "act_123". */
__attribute__((unused))
static json_object *make_activity_event(const char *type, const char *capsule_id, int version,
					const char *title, const char *message, const char *priority)
{
	json_object *ev = json_object_new_object();
	json_object *data = json_object_new_object();

	json_object_object_add(ev, "event_id", json_object_new_string(EVENT_ID));
	json_object_object_add(ev, "type", json_object_new_string(type));
	json_object_object_add(ev, "tenant", json_object_new_string("default"));
	json_object_object_add(ev, "capsule_id", json_object_new_string(capsule_id));
	json_object_object_add(ev, "version", json_object_new_int(version));
	json_object_object_add(data, "activity_id", json_object_new_string("act_123"));
	json_object_object_add(data, "capsule_id", json_object_new_string(capsule_id));
	if (title)
		json_object_object_add(data, "title", json_object_new_string(title));
	if (message)
		json_object_object_add(data, "message", json_object_new_string(message));
	if (priority)
		json_object_object_add(data, "priority", json_object_new_string(priority));
	json_object_object_add(ev, "data", data);
	return ev;
}

/* Runs `build` (apns_payload_build, webpush_payload_build, ...) on `ev` and
 * parses its text back: NULL when it fails, the text is not JSON or its
 * length is not the one reported. *len_out (may be NULL) gets the length. */
__attribute__((unused))
static json_object *build_parse_with(int (*build)(json_object *, char **, size_t *), json_object *ev,
				     size_t *len_out)
{
	char *text = NULL;
	size_t len = 0;
	json_object *p;

	if (build(ev, &text, &len) != 0 || text == NULL)
		return NULL;
	if (len_out)
		*len_out = len;
	p = json_tokener_parse(text);
	if (p != NULL && strlen(text) != len) {
		json_object_put(p);
		p = NULL;
	}
	free(text);
	return p;
}

/* Checks that `build` makes exactly `want` of `ev` (then puts ev). */
__attribute__((unused))
static void check_exact(int (*build)(json_object *, char **, size_t *), json_object *ev,
			const char *want, const char *what)
{
	char *text = NULL;
	size_t len = 0;

	ok(build(ev, &text, &len) == 0, "%s builds", what);
	is_str(text, want, "%s is exactly the documented shape", what);
	is_int((long long)len, (long long)strlen(want), "%s length reported", what);
	free(text);
	json_object_put(ev);
}

/* Member at a path of up to three keys (NULL ends it early), or NULL. */
__attribute__((unused))
static json_object *at(json_object *o, const char *k1, const char *k2, const char *k3)
{
	const char *keys[3] = { k1, k2, k3 };
	int i;

	for (i = 0; i < 3 && keys[i] && o; i++)
		if (!json_object_object_get_ex(o, keys[i], &o))
			return NULL;
	return o;
}

/* The string at that path, or NULL when absent or not a string. */
__attribute__((unused))
static const char *at_str(json_object *o, const char *k1, const char *k2, const char *k3)
{
	o = at(o, k1, k2, k3);
	return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

#define CUT_ELL "\xe2\x80\xa6" /* U+2026 */

/* One long text: `prefix` ASCII bytes then `unit` repeated up to `total`
 * bytes; title_len is a title of that many "T" (0: a short title). */
typedef struct cut_row {
	size_t prefix;
	const char *unit;
	size_t body_len;
	size_t title_len;
} cut_row;

static const cut_row cut_rows[] = {
	{ 0, "a", 5000, 0 },
	{ 0, "\xc3\xa9", 6000, 0 },            /* é: 2 bytes */
	{ 1, "\xc3\xa9", 6000, 0 },
	{ 0, "\xe2\x82\xac", 6000, 0 },        /* €: 3 bytes */
	{ 1, "\xe2\x82\xac", 6000, 0 },
	{ 2, "\xe2\x82\xac", 6000, 0 },
	{ 0, "\xf0\x9f\x98\x80", 9000, 0 },    /* 😀: 4 bytes */
	{ 1, "\xf0\x9f\x98\x80", 9000, 0 },
	{ 2, "\xf0\x9f\x98\x80", 9000, 0 },
	{ 3, "\xf0\x9f\x98\x80", 9000, 0 },
	{ 0, "\"", 5000, 0 },                   /* escaped: 2 bytes each */
	{ 0, "\x01", 5000, 0 },                 /* escaped: 6 bytes each */
	{ 0, "a\xe2\x82\xac", 65536, 500 },    /* the largest message + long title */
	{ 0, "a", 4000, 6000 },                 /* title alone too long */
};
#define CUT_ROWS (sizeof cut_rows / sizeof cut_rows[0])

/* A string of `prefix` ASCII bytes then `unit` repeated until `total` bytes. */
__attribute__((unused))
static char *make_text(size_t prefix, const char *unit, size_t total)
{
	char *s = malloc(total + 8);
	size_t n = 0, u = strlen(unit);

	memset(s, 'x', prefix);
	n = prefix;
	while (n + u <= total) {
		memcpy(s + n, unit, u);
		n += u;
	}
	s[n] = '\0';
	return s;
}

/* The message and title (malloc'ed) of cut_rows[i]; a short title is `dflt`. */
__attribute__((unused))
static void cut_texts(size_t i, const char *dflt, char **body, char **title)
{
	const cut_row *r = &cut_rows[i];

	*body = make_text(r->prefix, r->unit, r->body_len);
	*title = r->title_len ? make_text(0, "T", r->title_len) : strdup(dflt);
}

/* 1 when `got` is a UTF-8-valid prefix of `full` shorter than it, ending in "…". */
__attribute__((unused))
static int cut_ok(const char *got, const char *full)
{
	size_t n = got ? strlen(got) : 0;

	return got != NULL && n >= 3 && cg_utf8_valid(got, n) && strcmp(got + n - 3, CUT_ELL) == 0 &&
	       n - 3 < strlen(full) && strncmp(got, full, n - 3) == 0;
}

/* The checks of one cut payload of `len` bytes (limit `max`) whose shown
 * message is `b` and title `t` (NULL: absent), made of `body` and `title`. */
__attribute__((unused))
static void cut_check(const char *what, size_t i, size_t len, size_t max, const char *b,
		      const char *t, const char *body, const char *title)
{
	ok(len <= max, "%s %zu: payload %zu <= %zu bytes", what, i, len, max);
	ok(len > max - 16 || b == NULL, "%s %zu: payload is not cut more than needed (%zu)", what, i, len);
	if (b != NULL) {
		ok(cut_ok(b, body), "%s %zu: message cut at UTF-8, with an ellipsis", what, i);
		is_str(t, title, "%s %zu: title kept whole", what, i);
	} else {
		ok(cut_ok(t, title), "%s %zu: message gone, title cut with an ellipsis", what, i);
	}
}

#endif

/* cg_json: JSON helpers over json-c: bounded parsing and typed field access
 * that tells "absent" from "wrong type". */
#ifndef CG_JSON_H
#define CG_JSON_H

#include <stddef.h>
#include <json-c/json.h>

typedef enum {
	CG_JSON_OK = 0,
	CG_JSON_ABSENT = 1,     /* key missing or JSON null */
	CG_JSON_WRONG_TYPE = -1,
	CG_JSON_TOO_LONG = -2,
	CG_JSON_BAD_UTF8 = -3,
} cg_json_status;

/* Parses `len` bytes as one JSON value, with nesting at most `max_depth`.
 * Returns a new object (caller puts it) or NULL with a short reason in `err`
 * (e.g. "unexpected end of data at offset 12"). Trailing non-space bytes and
 * invalid UTF-8 are errors. */
json_object *cg_json_parse(const char *buf, size_t len, int max_depth, char *err, size_t errlen);

/* Like cg_json_parse, and the value must be an object. */
json_object *cg_json_parse_object(const char *buf, size_t len, int max_depth, char *err, size_t errlen);

/* String field `key` of object `obj`: on CG_JSON_OK *out points into `obj`
 * (valid while obj lives). A string longer than `max_len` bytes gives
 * CG_JSON_TOO_LONG (max_len 0: no limit). */
cg_json_status cg_json_get_string(json_object *obj, const char *key, size_t max_len, const char **out);

/* Integer field: must be a JSON integer. */
cg_json_status cg_json_get_int64(json_object *obj, const char *key, long long *out);

/* Object field: *out is borrowed. */
cg_json_status cg_json_get_object(json_object *obj, const char *key, json_object **out);

/* Nesting depth of a value (scalar = 1). */
int cg_json_depth(json_object *obj);

/* Compact serialisation without escaping '/'; the string belongs to `obj`. */
const char *cg_json_compact(json_object *obj);

/* Adds `key` = string `val` (NULL adds JSON null). Returns 0 or -1. */
int cg_json_add_string(json_object *obj, const char *key, const char *val);
int cg_json_add_int64(json_object *obj, const char *key, long long val);

/* 1 when the `len` bytes are valid UTF-8 (no overlongs, no surrogates). */
int cg_utf8_valid(const char *s, size_t len);

/* Largest m <= n (n <= len) such that s[0..m) does not end inside a UTF-8
 * sequence: where a text may be cut. */
size_t cg_utf8_floor(const char *s, size_t len, size_t n);

/* Where one text goes: member `key` of object `obj`, somewhere inside the
 * document being fitted. */
typedef struct cg_json_slot {
	json_object *obj;
	const char *key;
} cg_json_slot;

/* Makes document `root` fit in `max` bytes of cg_json_compact() text by
 * cutting the text s[0..n) shown in `nslots` slots (the same text in each,
 * e.g. a message in two places of a payload). When root already fits,
 * nothing changes. Else every slot gets the longest prefix of s that does not
 * split a UTF-8 sequence, plus "\u2026" (as UTF-8), with which root fits;
 * when even a bare ellipsis does not fit, the slots' keys are removed.
 * Returns 0 when root fits now, 1 when it still does not (keys removed:
 * cut another text next), -1 when memory runs out. */
int cg_json_fit_text(json_object *root, size_t max, const cg_json_slot *slots, size_t nslots,
		     const char *s, size_t n);

/* A malloc'ed NUL-terminated copy of cg_json_compact(obj) with its length in
 * *len, or NULL when it is longer than `max` bytes or memory runs out. */
char *cg_json_compact_dup(json_object *obj, size_t max, size_t *len);

#endif

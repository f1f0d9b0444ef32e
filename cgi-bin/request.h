/* request: one REST request and its response over an FCGX_Request: method,
 * path, query, headers, request id, capped body reading and the JSON response
 * helpers (every answer carries the same headers -- request id and the
 * security headers: nosniff, X-Frame-Options DENY, no-referrer, a CSP that
 * allows nothing, Cache-Control no-store, and HSTS when the FastCGI param
 * HTTPS is "on" -- and the error shape of PROTOCOLS.md).
 *
 * Ownership: a cg_req borrows the FCGX_Request and the config for its whole
 * life; strings it hands out belong to it and live until cg_req_end(). A
 * request is answered exactly once; later send calls are ignored (and
 * logged). Not thread-safe: one request per thread at a time. */
#ifndef CG_REQUEST_H
#define CG_REQUEST_H

#include <stddef.h>
#include <fcgiapp.h>
#include <json-c/json.h>

#include "cg_config.h"

/* Caps: longer paths / query strings are refused with 414 by the router;
 * more query parameters than CG_QUERY_PARAMS_MAX make the query malformed. */
#define CG_PATH_MAX 2048
#define CG_QUERY_MAX 8192
#define CG_QUERY_PARAMS_MAX 64
#define CG_REQUEST_ID_MAX 128

typedef struct cg_req cg_req;

/* Starts a request that FCGX_Accept_r() just accepted: reads method, path
 * (REQUEST_URI without the query; SCRIPT_NAME + PATH_INFO when REQUEST_URI
 * is absent), query string and request id (the client's X-Request-ID when it
 * is 1..128 chars of [A-Za-z0-9._:-], else a new uuid), and sets the request
 * id as the log context. Returns NULL only when memory runs out (the caller
 * then answers with cg_req_fail_oom()). */
cg_req *cg_req_begin(FCGX_Request *fx, const cg_config *cfg);

/* Answers 500 when nothing was sent yet, logs one line (method, path,
 * status, duration), clears the log context and frees `r`. NULL is fine. */
void cg_req_end(cg_req *r);

/* Last resort when cg_req_begin() failed: a static 500 answer. */
void cg_req_fail_oom(FCGX_Request *fx);

const char *cg_req_method(const cg_req *r); /* "" when absent */
const char *cg_req_path(const cg_req *r);   /* raw, still %-encoded, no query */
const char *cg_req_query_string(const cg_req *r); /* "" when absent */
const char *cg_req_id(const cg_req *r);

/* A request header by its HTTP name ("Content-Type", "X-Request-ID"), or
 * NULL when absent (CGI params HTTP_*, CONTENT_TYPE, CONTENT_LENGTH). */
const char *cg_req_header(const cg_req *r, const char *name);

/* A raw FastCGI parameter, or NULL. */
const char *cg_req_param(const cg_req *r, const char *name);

/* Query parameter `name`, percent-decoded ('+' is a space). Returns 0 with
 * *out (owned by r; "" for "?name" or "?name="), 1 when absent, -1 when the
 * query string is malformed (bad %-escape, NUL, more than
 * CG_QUERY_PARAMS_MAX parameters). The first of repeated names wins. */
int cg_req_query(cg_req *r, const char *name, const char **out);

/* Longest query value a handler looks at before validating it (ids and
 * categories are at most 255 bytes; numbers far less). */
#define CG_QUERY_VALUE_MAX 255

/* Query parameter `name` for a handler: 0 with *out (owned by r; NULL when
 * absent or empty), or -1 after answering 400 "bad_request" (malformed
 * query string) or 422 "validation_failed" naming `name` (longer than
 * max_len bytes). */
int cg_req_query_text(cg_req *r, const char *name, size_t max_len, const char **out);

/* `s` as a decimal integer in [min, max]: 1 to max_digits (<= 18) digits
 * and nothing else (no sign, space or exponent). Returns 0 with *out, or
 * -1 with *out untouched. Answers nothing. */
int cg_req_parse_long(const char *s, int max_digits, long long min, long long max,
		      long long *out);

/* Query parameter `name` as a decimal integer of at most 9 digits in
 * [min, max] (limit, offset): 0 with *out (`def` when absent or empty), or
 * -1 after answering as cg_req_query_text() does (max_len
 * CG_QUERY_VALUE_MAX) or 422 "validation_failed" "<name> must be an integer
 * from <min> to <max>" naming `name`. */
int cg_req_query_long(cg_req *r, const char *name, long def, long min, long max, long *out);

/* Reads the whole body, at most cfg->max_body_bytes: 413 when
 * CONTENT_LENGTH says more (nothing is read) or when more bytes come; 400
 * when CONTENT_LENGTH is malformed or the body ends early. Returns 0 with
 * *body (NUL-terminated, owned by r) and *len, or -1 when the error answer
 * has already been sent. Safe to call again (returns the same body). */
int cg_req_body(cg_req *r, const char **body, size_t *len);

/* Reads a JSON object body: 415 "unsupported_media_type" unless the
 * Content-Type is application/json (parameters such as charset allowed),
 * 413/400 as cg_req_body(), 400 "malformed_json" when it is not one JSON
 * object nested at most `max_depth` deep. Returns the object (the caller
 * puts it) with *text / *len (the raw body, owned by r), or NULL when the
 * error answer has been sent. */
json_object *cg_req_json_body(cg_req *r, int max_depth, const char **text, size_t *len);

/* Adds a response header (e.g. "Allow"). Name and value must not hold CR,
 * LF or NUL; at most 2 KiB of extra headers. Returns 0 or -1. */
int cg_req_add_header(cg_req *r, const char *name, const char *value);

/* Sends `obj` (borrowed; the caller still puts it) as the response body
 * with HTTP `status`. NULL obj sends "{}". */
void cg_req_send_json(cg_req *r, int status, json_object *obj);

/* Sends the error shape: {"success":false,"error":{"code","message",
 * "field" (only when field != NULL)},"request_id"}. */
void cg_req_send_error(cg_req *r, int status, const char *code, const char *message,
		       const char *field);

/* Sends `json_text` (len bytes, already JSON, e.g. a stored idempotent
 * answer) as the body with HTTP `status`. */
void cg_req_send_text(cg_req *r, int status, const char *json_text, size_t len);

/* Sends an answer without a body or Content-Type (204 to a CORS preflight). */
void cg_req_send_empty(cg_req *r, int status);

/* 1 once a response was sent. */
int cg_req_answered(const cg_req *r);

/* The status sent (0 until answered). */
int cg_req_status(const cg_req *r);

/* The code and field of the error answer sent by cg_req_send_error (for the
 * audit log), or NULL when none was sent or it had no field. */
const char *cg_req_error_code(const cg_req *r);
const char *cg_req_error_field(const cg_req *r);


#endif

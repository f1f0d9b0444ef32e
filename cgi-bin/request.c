/* request: the request/response abstraction over one FCGX_Request. */
#include "config.h"

#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cg_json.h"
#include "cg_log.h"
#include "cg_util.h"
#include "request.h"

#define EXTRA_HEADERS_MAX 2048
#define BODY_CHUNK (16 * 1024)
#define LOG_PATH_MAX 200

/* On every answer, errors included (issue 3, browser safety). JSON is
 * never a document to render, frame or cache. */
#define SECURITY_HEADERS \
	"Cache-Control: no-store\r\n" \
	"X-Content-Type-Options: nosniff\r\n" \
	"X-Frame-Options: DENY\r\n" \
	"Referrer-Policy: no-referrer\r\n" \
	"Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
/* Only when the request came over TLS (the web server sets HTTPS=on): HSTS
 * over plain HTTP is ignored by browsers and would only mislead. */
#define HSTS_HEADER "Strict-Transport-Security: max-age=31536000\r\n"

/* Sent when even building an error body fails. */
static const char oom_body[] =
	"{\"success\":false,\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";

struct cg_req {
	FCGX_Request *fx;
	const cg_config *cfg;
	const char *method;   /* borrowed from the FastCGI params */
	char *path;           /* owned: raw path without the query */
	const char *query;    /* borrowed, or points into owned_query */
	char *owned_query;    /* query taken from REQUEST_URI when QUERY_STRING is absent */
	char id[CG_REQUEST_ID_MAX + 1];
	struct timespec t0;
	int status;           /* sent status, 0 until answered */
	/* extra response headers, "Name: value\r\n" each */
	char extra[EXTRA_HEADERS_MAX];
	size_t extra_len;
	/* query parameters, parsed on first use */
	int q_state;          /* 0 not parsed, 1 parsed, -1 malformed */
	int q_n;
	char *q_buf;
	const char *q_key[CG_QUERY_PARAMS_MAX];
	const char *q_val[CG_QUERY_PARAMS_MAX];
	/* the error answer sent (for the audit log): code and field */
	char err_code[64];
	char err_field[64];
	/* body, read on first use */
	int body_state;       /* 0 not read, 1 read, -1 failed (answered) */
	char *body;
	size_t body_len;
};

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

static int request_id_valid(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];
		if (n >= CG_REQUEST_ID_MAX)
			return 0;
		if (!isalnum(c) && c != '.' && c != '_' && c != ':' && c != '-')
			return 0;
	}
	return n > 0;
}

static void init_request_id(cg_req *r)
{
	static unsigned long fallback_seq;
	const char *given = FCGX_GetParam("HTTP_X_REQUEST_ID", r->fx->envp);

	if (given != NULL && request_id_valid(given)) {
		snprintf(r->id, sizeof r->id, "%s", given);
		return;
	}
	if (cg_uuid4(r->id) == 0)
		return;
	/* The RNG failed: still give the request a name the logs can carry. */
	snprintf(r->id, sizeof r->id, "req-%ld-%lu", (long)getpid(), ++fallback_seq);
}

/* Appends `s` at dst + *pos, escaping '%' as "%25" so that a decoded CGI
 * path (SCRIPT_NAME/PATH_INFO) decodes back to itself in the router. dst
 * has room for 3 bytes per input byte. */
static void append_escaped(char *dst, size_t *pos, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '%') {
			memcpy(dst + *pos, "%25", 3);
			*pos += 3;
		} else {
			dst[(*pos)++] = *s;
		}
	}
}

static int init_path(cg_req *r)
{
	const char *uri = FCGX_GetParam("REQUEST_URI", r->fx->envp);
	const char *qs = FCGX_GetParam("QUERY_STRING", r->fx->envp);

	if (uri != NULL && uri[0] != '\0') {
		size_t n;
		/* absolute-form "http://host/path": keep only the path */
		if (strncasecmp(uri, "http://", 7) == 0 || strncasecmp(uri, "https://", 8) == 0) {
			const char *p = strstr(uri, "://") + 3;
			p += strcspn(p, "/?#");
			uri = p;
		}
		n = strcspn(uri, "?#");
		r->path = n > 0 ? strndup(uri, n) : strdup("/");
		if (r->path == NULL)
			return -1;
		if (qs == NULL && uri[n] == '?') {
			size_t qn = strcspn(uri + n + 1, "#");
			r->owned_query = strndup(uri + n + 1, qn);
			if (r->owned_query == NULL)
				return -1;
			qs = r->owned_query;
		}
	} else {
		const char *sn = FCGX_GetParam("SCRIPT_NAME", r->fx->envp);
		const char *pi = FCGX_GetParam("PATH_INFO", r->fx->envp);
		size_t pos = 0, cap;

		sn = sn != NULL ? sn : "";
		pi = pi != NULL ? pi : "";
		cap = 3 * (strlen(sn) + strlen(pi)) + 2;
		r->path = malloc(cap);
		if (r->path == NULL)
			return -1;
		append_escaped(r->path, &pos, sn);
		append_escaped(r->path, &pos, pi);
		if (pos == 0)
			r->path[pos++] = '/';
		r->path[pos] = '\0';
	}
	r->query = qs != NULL ? qs : "";
	return 0;
}

cg_req *cg_req_begin(FCGX_Request *fx, const cg_config *cfg)
{
	cg_req *r = calloc(1, sizeof *r);
	const char *m;

	if (r == NULL)
		return NULL;
	r->fx = fx;
	r->cfg = cfg;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	m = FCGX_GetParam("REQUEST_METHOD", fx->envp);
	r->method = m != NULL ? m : "";
	if (init_path(r) < 0) {
		free(r->path);
		free(r->owned_query);
		free(r);
		return NULL;
	}
	init_request_id(r);
	cg_log_set_context(r->id);
	return r;
}

/* Copies `s` for a log line: control bytes become '?', long values are cut. */
static void log_safe(const char *s, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
	}
	out[i] = '\0';
	if (s[i] != '\0' && outlen > 4)
		memcpy(out + outlen - 4, "...", 4);
}

void cg_req_end(cg_req *r)
{
	struct timespec t1;
	double ms;
	char method[16], path[LOG_PATH_MAX];

	if (r == NULL)
		return;
	if (r->status == 0)
		cg_req_send_error(r, 500, "internal_error", "internal error", NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - r->t0.tv_sec) * 1000.0 +
	     (double)(t1.tv_nsec - r->t0.tv_nsec) / 1e6;
	log_safe(r->method, method, sizeof method);
	log_safe(r->path, path, sizeof path);
	if (r->status >= 500)
		cg_log_warn("%s %s %d %.1fms", method, path, r->status, ms);
	else
		cg_log_info("%s %s %d %.1fms", method, path, r->status, ms);
	cg_log_set_context(NULL);
	free(r->path);
	free(r->owned_query);
	free(r->q_buf);
	free(r->body);
	free(r);
}

/* 1 when the web server says the request came over TLS. */
static int https_on(FCGX_Request *fx)
{
	const char *v = FCGX_GetParam("HTTPS", fx->envp);

	return v != NULL && strcasecmp(v, "on") == 0;
}

void cg_req_fail_oom(FCGX_Request *fx)
{
	FCGX_FPrintF(fx->out,
		     "Status: 500 Internal Server Error\r\n"
		     "Content-Type: application/json\r\n"
		     SECURITY_HEADERS
		     "%s"
		     "\r\n%s", https_on(fx) ? HSTS_HEADER : "", oom_body);
	cg_log_error("out of memory starting a request");
}

const char *cg_req_method(const cg_req *r)
{
	return r->method;
}

const char *cg_req_path(const cg_req *r)
{
	return r->path;
}

const char *cg_req_query_string(const cg_req *r)
{
	return r->query;
}

const char *cg_req_id(const cg_req *r)
{
	return r->id;
}

const char *cg_req_param(const cg_req *r, const char *name)
{
	return FCGX_GetParam(name, r->fx->envp);
}

const char *cg_req_header(const cg_req *r, const char *name)
{
	char key[80];
	size_t n = strlen(name), i;

	if (strcasecmp(name, "Content-Type") == 0)
		return cg_req_param(r, "CONTENT_TYPE");
	if (strcasecmp(name, "Content-Length") == 0)
		return cg_req_param(r, "CONTENT_LENGTH");
	if (n == 0 || n + 6 > sizeof key)
		return NULL;
	memcpy(key, "HTTP_", 5);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		key[5 + i] = c == '-' ? '_' : (char)toupper(c);
	}
	key[5 + n] = '\0';
	return cg_req_param(r, key);
}

static int parse_query(cg_req *r)
{
	size_t qlen = strlen(r->query);
	char *p, *end;

	if (qlen > CG_QUERY_MAX)
		return -1;
	r->q_buf = malloc(qlen + 1);
	if (r->q_buf == NULL)
		return -1;
	memcpy(r->q_buf, r->query, qlen + 1);
	p = r->q_buf;
	end = r->q_buf + qlen;
	while (p < end) {
		size_t plen = strcspn(p, "&");
		char *eq, *key = p, *val;
		size_t klen, vlen;
		long dk, dv;

		p[plen] = '\0';
		p += plen + 1;
		if (plen == 0)
			continue; /* "a=1&&b=2" */
		if (r->q_n >= CG_QUERY_PARAMS_MAX)
			return -1;
		eq = strchr(key, '=');
		if (eq != NULL) {
			*eq = '\0';
			val = eq + 1;
		} else {
			val = key + plen; /* the NUL written above: "" */
		}
		klen = strlen(key);
		vlen = strlen(val);
		dk = cg_pct_decode(key, klen, 1, key);
		dv = cg_pct_decode(val, vlen, 1, val);
		if (dk < 0 || dv < 0 || strlen(key) != (size_t)dk || strlen(val) != (size_t)dv)
			return -1;
		r->q_key[r->q_n] = key;
		r->q_val[r->q_n] = val;
		r->q_n++;
	}
	return 0;
}

int cg_req_query(cg_req *r, const char *name, const char **out)
{
	int i;

	if (r->q_state == 0)
		r->q_state = parse_query(r) == 0 ? 1 : -1;
	if (r->q_state < 0)
		return -1;
	for (i = 0; i < r->q_n; i++) {
		if (strcmp(r->q_key[i], name) == 0) {
			*out = r->q_val[i];
			return 0;
		}
	}
	return 1;
}

int cg_req_query_text(cg_req *r, const char *name, size_t max_len, const char **out)
{
	const char *v = NULL;
	int rc = cg_req_query(r, name, &v);
	char msg[96];

	*out = NULL;
	if (rc < 0) {
		cg_req_send_error(r, 400, "bad_request", "malformed query string", NULL);
		return -1;
	}
	if (rc > 0 || v[0] == '\0')
		return 0;
	if (strlen(v) > max_len) {
		snprintf(msg, sizeof msg, "%s must be at most %zu characters", name, max_len);
		cg_req_send_error(r, 422, "validation_failed", msg, name);
		return -1;
	}
	*out = v;
	return 0;
}

int cg_req_parse_long(const char *s, int max_digits, long long min, long long max, long long *out)
{
	long long v = 0;
	int n;

	for (n = 0; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= max_digits)
			return -1;
		v = v * 10 + (s[n] - '0');
	}
	if (n == 0 || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int cg_req_query_long(cg_req *r, const char *name, long def, long min, long max, long *out)
{
	const char *s;
	long long v;
	char msg[96];

	*out = def;
	if (cg_req_query_text(r, name, CG_QUERY_VALUE_MAX, &s) < 0)
		return -1;
	if (s == NULL)
		return 0;
	if (cg_req_parse_long(s, 9, min, max, &v) < 0) {
		snprintf(msg, sizeof msg, "%s must be an integer from %ld to %ld", name, min, max);
		cg_req_send_error(r, 422, "validation_failed", msg, name);
		return -1;
	}
	*out = (long)v;
	return 0;
}

/* CONTENT_LENGTH: 0 and *out when valid, 1 when absent or empty, -1 when
 * malformed (anything but 1..19 decimal digits). */
static int content_length(const cg_req *r, unsigned long long *out)
{
	const char *s = cg_req_param(r, "CONTENT_LENGTH");
	unsigned long long v = 0;
	size_t i;

	if (s == NULL || s[0] == '\0')
		return 1;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 19)
			return -1;
		v = v * 10 + (unsigned long long)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static void send_too_large(cg_req *r, size_t cap)
{
	char msg[96];

	snprintf(msg, sizeof msg, "request body is larger than %zu bytes", cap);
	cg_req_send_error(r, 413, "payload_too_large", msg, NULL);
}

/* Reads the body into r->body; answers and returns -1 on failure. */
static int read_body(cg_req *r)
{
	size_t cap = r->cfg->max_body_bytes > 0 ? (size_t)r->cfg->max_body_bytes : 0;
	unsigned long long declared = 0;
	size_t alloc, len = 0;
	int cl = content_length(r, &declared);
	char *buf = NULL;
	int rc = -1;

	if (cl < 0) {
		cg_req_send_error(r, 400, "bad_request", "malformed Content-Length", NULL);
		goto out;
	}
	if (cl == 0 && declared > cap) {
		send_too_large(r, cap);
		goto out;
	}
	/* Room for cap + 1 bytes (to see that more came) and the NUL. */
	alloc = cl == 0 ? (size_t)declared + 2 : (cap + 2 < BODY_CHUNK ? cap + 2 : BODY_CHUNK);
	buf = malloc(alloc);
	if (buf == NULL) {
		cg_req_send_error(r, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	for (;;) {
		size_t room, want;
		int n;

		if (len + 1 >= alloc) {
			size_t nalloc = alloc * 2;
			char *nbuf;
			if (nalloc > cap + 2)
				nalloc = cap + 2;
			if (nalloc <= alloc)
				break; /* holds cap + 1 bytes already */
			nbuf = realloc(buf, nalloc);
			if (nbuf == NULL) {
				cg_req_send_error(r, 500, "internal_error", "out of memory", NULL);
				goto out;
			}
			buf = nbuf;
			alloc = nalloc;
		}
		room = alloc - 1 - len;
		want = cap + 1 - len < room ? cap + 1 - len : room;
		if (want > BODY_CHUNK)
			want = BODY_CHUNK;
		if (want == 0)
			break;
		n = FCGX_GetStr(buf + len, (int)want, r->fx->in);
		if (n < 0) {
			n = 0;
		}
		len += (size_t)n;
		if ((size_t)n < want)
			break; /* end of stdin (or an error, checked below) */
	}
	if (FCGX_GetError(r->fx->in) != 0) {
		cg_req_send_error(r, 400, "bad_request", "could not read the request body", NULL);
		goto out;
	}
	if (len > cap) {
		send_too_large(r, cap);
		goto out;
	}
	if (cl == 0 && len != declared) {
		cg_req_send_error(r, 400, "bad_request",
				  "request body length does not match Content-Length", NULL);
		goto out;
	}
	buf[len] = '\0';
	r->body = buf;
	r->body_len = len;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	return rc;
}

int cg_req_body(cg_req *r, const char **body, size_t *len)
{
	if (r->body_state == 0)
		r->body_state = read_body(r) == 0 ? 1 : -1;
	if (r->body_state < 0)
		return -1;
	*body = r->body;
	*len = r->body_len;
	return 0;
}

/* 1 when the Content-Type is application/json, parameters (charset) allowed. */
static int is_json_media_type(const char *ct)
{
	size_t n;

	if (ct == NULL)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0;
}

json_object *cg_req_json_body(cg_req *r, int max_depth, const char **text, size_t *len)
{
	json_object *body;
	char err[160], msg[200];

	if (!is_json_media_type(cg_req_header(r, "Content-Type"))) {
		cg_req_send_error(r, 415, "unsupported_media_type",
				  "Content-Type must be application/json", NULL);
		return NULL;
	}
	if (cg_req_body(r, text, len) < 0)
		return NULL; /* answered */
	err[0] = '\0';
	body = cg_json_parse_object(*text, *len, max_depth, err, sizeof err);
	if (body == NULL) {
		snprintf(msg, sizeof msg, "malformed JSON: %s", err[0] != '\0' ? err : "not an object");
		cg_req_send_error(r, 400, "malformed_json", msg, NULL);
	}
	return body;
}

static int header_text_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n')
			return 0;
	}
	return 1;
}

int cg_req_add_header(cg_req *r, const char *name, const char *value)
{
	size_t need = strlen(name) + strlen(value) + 4; /* ": " "\r\n" */
	int n;

	if (name[0] == '\0' || !header_text_ok(name) || !header_text_ok(value) ||
	    strchr(name, ':') != NULL)
		return -1;
	if (r->extra_len + need >= sizeof r->extra)
		return -1;
	n = snprintf(r->extra + r->extra_len, sizeof r->extra - r->extra_len, "%s: %s\r\n", name,
		     value);
	if (n < 0 || (size_t)n != need)
		return -1;
	r->extra_len += need;
	return 0;
}

int cg_req_answered(const cg_req *r)
{
	return r->status != 0;
}

static void send_raw(cg_req *r, int status, const char *body, size_t len)
{
	char hdr[EXTRA_HEADERS_MAX + 1024];
	int n;

	if (r->status != 0) {
		cg_log_warn("a second answer (%d) after %d was dropped", status, r->status);
		return;
	}
	r->status = status;
	n = snprintf(hdr, sizeof hdr,
		     "Status: %d %s\r\n"
		     "%s"
		     "Content-Length: %zu\r\n"
		     "X-Request-ID: %s\r\n"
		     SECURITY_HEADERS
		     "%s"
		     "%.*s"
		     "\r\n",
		     status, status_text(status),
		     status == 204 ? "" : "Content-Type: application/json\r\n", len, r->id,
		     https_on(r->fx) ? HSTS_HEADER : "", (int)r->extra_len, r->extra);
	if (n < 0 || (size_t)n >= sizeof hdr) {
		/* cannot happen: the parts are bounded */
		cg_log_error("response header too long");
		return;
	}
	if (FCGX_PutStr(hdr, n, r->fx->out) < 0 ||
	    (len > 0 && FCGX_PutStr(body, (int)len, r->fx->out) < 0))
		cg_log_info("client connection lost while answering");
}

void cg_req_send_empty(cg_req *r, int status)
{
	send_raw(r, status, "", 0);
}

void cg_req_send_text(cg_req *r, int status, const char *json_text, size_t len)
{
	send_raw(r, status, json_text, len);
}

int cg_req_status(const cg_req *r)
{
	return r->status;
}

const char *cg_req_error_code(const cg_req *r)
{
	return r->err_code[0] != '\0' ? r->err_code : NULL;
}

const char *cg_req_error_field(const cg_req *r)
{
	return r->err_field[0] != '\0' ? r->err_field : NULL;
}

void cg_req_send_json(cg_req *r, int status, json_object *obj)
{
	const char *s = obj != NULL ? cg_json_compact(obj) : "{}";

	if (s == NULL) {
		send_raw(r, 500, oom_body, sizeof oom_body - 1);
		return;
	}
	send_raw(r, status, s, strlen(s));
}

void cg_req_send_error(cg_req *r, int status, const char *code, const char *message,
		       const char *field)
{
	json_object *o = NULL, *e = NULL;
	int ok;

	if (r->status != 0) {
		cg_log_warn("a second answer (%d %s) after %d was dropped", status, code, r->status);
		return;
	}
	snprintf(r->err_code, sizeof r->err_code, "%s", code);
	snprintf(r->err_field, sizeof r->err_field, "%s", field != NULL ? field : "");
	o = json_object_new_object();
	e = json_object_new_object();
	ok = o != NULL && e != NULL &&
		 json_object_object_add(o, "success", json_object_new_boolean(0)) == 0 &&
		 cg_json_add_string(e, "code", code) == 0 &&
		 cg_json_add_string(e, "message", message) == 0 &&
		 (field == NULL || cg_json_add_string(e, "field", field) == 0);

	if (ok) {
		ok = json_object_object_add(o, "error", e) == 0;
		if (ok)
			e = NULL; /* o owns it now */
	}
	if (ok)
		ok = cg_json_add_string(o, "request_id", r->id) == 0;
	if (ok)
		cg_req_send_json(r, status, o);
	else
		send_raw(r, 500, oom_body, sizeof oom_body - 1);
	json_object_put(e);
	json_object_put(o);
}

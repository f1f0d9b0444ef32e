/* fake-webpush: a local stand-in for a Web Push service (RFC 8030 push, RFC 8291 payloads, RFC 8292 VAPID) for tests. */

/*
 * Usage
 *   fake-webpush --port N --cert CERT.pem --key KEY.pem --log FILE
 *                --subscriptions FILE [--script FILE] [--port-file FILE]
 *   fake-webpush --make-subscription PATH --port N [--vapid-k KEY]
 *
 *   Serve mode listens on 127.0.0.1:N only (--port 0 picks a free port),
 *   TLS only, HTTP/1.1 with keep-alive and pipelining (RFC 8030 lets a push
 *   service speak HTTP/1.1 or HTTP/2; HTTP/2 is not offered: no ALPN is
 *   selected, so clients fall back to HTTP/1.1).  Once listening it writes
 *   the port to --port-file (temporary name + rename(), never partial) and
 *   prints "fake-webpush listening on 127.0.0.1:PORT" on stdout.  SIGTERM or
 *   SIGINT ends it with status 0.  The push resource origin, which every
 *   VAPID "aud" must equal, is "https://127.0.0.1:PORT".
 *
 *   --make-subscription generates a fresh subscription (a P-256 key pair
 *   for the "browser" and a 16-byte auth secret), prints it and exits:
 *     line 1: the line to append to the --subscriptions file;
 *     line 2: what a browser hands the application,
 *             {"endpoint":"https://127.0.0.1:N/PATH","keys":{"p256dh":..,"auth":..}}.
 *   --vapid-k KEY makes it a restricted subscription (line 1 gets "vapid_k").
 *
 * Subscriptions (--subscriptions FILE, one JSON object per line, # comments)
 *   {"endpoint_path":"/push/abc","p256dh_private":"<b64url 32 bytes>",
 *    "p256dh":"<b64url 65 bytes>","auth":"<b64url 16 bytes>",
 *    "vapid_k":"<b64url public key>"}        (vapid_k optional: restricted)
 *   A bad line is reported on stderr and skipped.
 *
 * Script (--script FILE, # comments)
 *   <path> <status> [count|*] [retry-after-seconds]
 *   The first line for a path that still has uses left answers the next
 *   `count` requests for that path (default *, all of them) with `status`
 *   (100-599; 201 included) and, when given, a Retry-After header; when it is
 *   used up the next line for that path applies, or normal behaviour.
 *
 *   Both files are re-read whenever they change (inode, size, mtime or
 *   ctime differ; checked before each request, so a test may rewrite them and
 *   send at once); SIGHUP re-reads the subscriptions file unconditionally.
 *   Re-reading the script resets its counts; SIGHUP alone does not.
 *
 * Checks, in this order (PUSH.md B1-B3, B6); the first failure is answered
 * with its status and a JSON body {"code":N,"error":"...","message":reason}:
 *   method POST (405, Allow: POST); TTL present, 1*DIGIT, only one (400;
 *   above 2^31 it is taken as 2^31); Urgency one of very-low, low, normal,
 *   high, one value (400); Topic 1-32 chars of [A-Za-z0-9_-] (400); body at
 *   most 4096 bytes (413); with a body, Content-Encoding exactly one value
 *   aes128gcm (400); an Encryption header with salt= or a Crypto-Key header
 *   with dh= (400); Authorization "vapid t=..., k=..." checked with
 *   cg_vapid_verify() against the origin (absent/malformed 401, invalid 403);
 *   k equal to the message's keyid (400); then the path: a scripted path
 *   that is not a known subscription gets its scripted answer, an unknown
 *   one 404; a restricted subscription with another k (403); decryption with
 *   the subscription's keys (400); finally the scripted answer for the path,
 *   if any, else 201 with "Location: https://127.0.0.1:PORT/message/<n>" and
 *   "TTL: <min(TTL, 2592000)>".  An empty body needs no Content-Encoding.
 *   Malformed HTTP is answered 400, a request head over 16 KiB 431, a
 *   Transfer-Encoding 501, a body over 64 KiB 413 at once (the body is not
 *   read); these close the connection.  Expect: 100-continue is honoured.
 *   At 1024 connections no more are accepted until one closes.
 *
 * Log (--log FILE, appended, one JSON object per line per answered request,
 *   written with one write() each)
 *   {"time":1700000000.123456,"conn":1,"method":"POST","path":"/push/abc",
 *    "status":201,"message":1,"ttl":60,"urgency":"high","topic":null,
 *    "content_encoding":"aes128gcm","body_bytes":144,
 *    "vapid":{"aud":"https://127.0.0.1:4443","sub":"mailto:a@b","exp":1700043200,"k":"BA.."},
 *    "plaintext":"..."}
 *   "message" (the n in Location) is present on 201 only; "reason" is present
 *   on every other status ("scripted" for a scripted answer, which also has
 *   "retry_after" when one was sent).  "ttl" is a number when valid, else
 *   the raw text; urgency, topic and content_encoding are the raw header
 *   values; each is null when absent.  "vapid" holds the JWT's claims and
 *   the k parameter whenever they decode, whatever the verdict, else null.
 *   "plaintext" is the decrypted message when it is UTF-8 without NUL,
 *   otherwise "plaintext_base64" (standard base64) carries it; neither is
 *   present when nothing was decrypted.
 */
#include "config.h"

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "cg_json.h"
#include "cg_util.h"
#include "cg_webpush.h"
#include "fake_common.h"

#define PROG "fake-webpush"

/* Caps. */
#define MAX_CONNS 1024
#define HEAD_MAX 16384              /* request line + headers */
#define MAX_FIELDS 100              /* header fields per request */
#define BODY_READ_MAX 65536         /* larger bodies are refused unread */
#define IN_MAX (HEAD_MAX + BODY_READ_MAX)
#define OUT_MAX 65536               /* queued response bytes per connection */
#define OUT_HIGH 32768              /* stop answering above this until flushed */
#define READ_CHUNK 16384
#define SERVICE_ROUNDS 64           /* read/answer rounds per wake-up */
#define LINGER_MS 2000              /* drain the peer's data after our close */
#define FILE_MAX (4 * 1024 * 1024)  /* subscriptions / script file */
#define MAX_SUBS 4096
#define MAX_RULES 4096
#define PATH_MAX_LEN 512
#define LOG_LINE_MAX (64 * 1024)
#define ORIGIN_MAX 64

/* Web Push rules. */
#define PUSH_BODY_MAX CG_WEBPUSH_MAX_BODY
#define TOPIC_MAX 32
#define TTL_OVERFLOW 2147483648LL   /* 2^31 */
#define TTL_ANSWER_MAX 2592000      /* 30 days: the TTL we echo at most */

struct sub {
	char path[PATH_MAX_LEN + 1];
	unsigned char priv[CG_WEBPUSH_PRIVKEY_LEN];
	unsigned char pub[CG_WEBPUSH_PUBKEY_LEN];
	unsigned char auth[CG_WEBPUSH_AUTH_LEN];
	int restricted;
	unsigned char vapid_k[CG_WEBPUSH_PUBKEY_LEN];
};

struct rule {
	char path[PATH_MAX_LEN + 1];
	int status;
	long remaining;             /* -1: every request */
	long retry_after;           /* -1: no Retry-After */
};

/* A file re-read when SIGHUP arrives or its stat changes. */
struct watched {
	const char *path;           /* NULL: not configured */
	struct stat st;
	int have_st;
};

struct field {
	const char *name;
	const char *value;
};

/* One parsed request head; strings point into head[]. */
struct request {
	char head[HEAD_MAX + 1];
	const char *method;
	const char *target;
	int http10;
	struct field f[MAX_FIELDS];
	size_t nf;
};

enum conn_state { C_HANDSHAKE, C_HTTP, C_LINGER };

struct conn {
	unsigned long id;
	int fd;
	SSL *ssl;
	enum conn_state state;
	int dead;
	int eof;                    /* the peer closed its side */
	int closing;                /* close once the output is flushed */
	int hs_wants_write;
	int read_wants_write;
	int write_wants_read;
	int continue_sent;          /* 100 Continue sent for the pending request */
	int more;                   /* SSL holds decrypted bytes not read yet */
	int64_t linger_until;       /* monotonic ms */
	cg_buf in;
	cg_buf out;
};

struct server {
	SSL_CTX *tls;
	int listen_fd;
	int log_fd;
	char origin[ORIGIN_MAX];
	struct watched subs_file;
	struct sub *subs;
	size_t nsubs;
	struct watched script_file;
	struct rule *rules;
	size_t nrules;
	struct conn *conns[MAX_CONNS];
	size_t nconns;
	unsigned long next_conn_id;
	unsigned long next_message;
	struct request req;         /* scratch: one request is handled at a time */
};

/* What one request gets. */
struct answer {
	int status;
	char reason[256];
	long retry_after;           /* -1: none */
	long long ttl;              /* -1: none */
	unsigned long message;      /* 0: none */
	int close;
	int no_body;                /* HEAD: state the length, send no body */
};

static volatile sig_atomic_t g_stop;
static volatile sig_atomic_t g_reload;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		g_reload = 1;
	else
		g_stop = 1;
}

/* ------------------------------------------------------------ small helpers */

static int path_ok(const char *p)
{
	size_t n = strlen(p);

	if (n == 0 || n > PATH_MAX_LEN || p[0] != '/')
		return 0;
	return strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                 "0123456789/_.~-%") == n;
}

/* Decodes base64url `in` that must be exactly `want` bytes. */
static int b64_exact(const char *in, unsigned char *out, size_t want)
{
	unsigned char buf[CG_WEBPUSH_KEY_B64_MAX];
	long n;

	if (strlen(in) >= sizeof buf)
		return -1;
	n = cg_b64url_decode(in, strlen(in), buf, sizeof buf);
	if (n != (long)want)
		return -1;
	memcpy(out, buf, want);
	return 0;
}

/* Reads at most FILE_MAX bytes of `path` (NUL-terminated, malloc'ed). */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t len;

	if (f == NULL) {
		fake_warn("%s: %s", path, strerror(errno));
		return NULL;
	}
	text = malloc(FILE_MAX + 1);
	if (text != NULL) {
		len = fread(text, 1, FILE_MAX, f);  /* stdio loops over short reads */
		text[len] = '\0';
		if (len == FILE_MAX)
			fake_warn("%s: only the first %d bytes are read", path, FILE_MAX);
	}
	fclose(f);
	return text;
}

/* 1 when `w` must be re-read (forced, or its stat changed). */
static int watched_changed(struct watched *w, int force)
{
	struct stat st;

	if (w->path == NULL)
		return 0;
	if (stat(w->path, &st) < 0) {
		if (!w->have_st)
			return force;
		w->have_st = 0;
		return 1;
	}
	if (!force && w->have_st && st.st_ino == w->st.st_ino && st.st_dev == w->st.st_dev &&
	    st.st_size == w->st.st_size && st.st_mtim.tv_sec == w->st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == w->st.st_mtim.tv_nsec &&
	    st.st_ctim.tv_sec == w->st.st_ctim.tv_sec && st.st_ctim.tv_nsec == w->st.st_ctim.tv_nsec)
		return 0;
	w->st = st;
	w->have_st = 1;
	return 1;
}

/* Splits text into lines, handing each non-blank, non-comment line to fn. */
static void for_each_line(char *text, const char *path,
                          int (*fn)(void *ctx, char *line, const char *path, size_t lineno),
                          void *ctx)
{
	char *line, *next;
	size_t lineno = 0;

	for (line = text; line != NULL; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		lineno++;
		line += strspn(line, " \t\r");
		if (*line == '\0' || *line == '#')
			continue;
		if (fn(ctx, line, path, lineno) < 0)
			break;
	}
}

/* ------------------------------------------------------------ subscriptions */

struct subs_load {
	struct sub *v;
	size_t n;
};

static int sub_line(void *ctx, char *line, const char *path, size_t lineno)
{
	struct subs_load *l = ctx;
	struct sub *s;
	json_object *o;
	const char *ep = NULL, *priv = NULL, *pub = NULL, *auth = NULL, *vk = NULL;
	char err[200];

	if (l->n == MAX_SUBS) {
		fake_warn("%s: more than %d subscriptions; rest ignored", path, MAX_SUBS);
		return -1;
	}
	s = &l->v[l->n];
	memset(s, 0, sizeof *s);
	o = cg_json_parse_object(line, strlen(line), 4, err, sizeof err);
	if (o == NULL) {
		fake_warn("%s:%zu: %s", path, lineno, err);
		return 0;
	}
	if (cg_json_get_string(o, "endpoint_path", PATH_MAX_LEN, &ep) != CG_JSON_OK ||
	    !path_ok(ep)) {
		fake_warn("%s:%zu: bad or missing endpoint_path", path, lineno);
		goto out;
	}
	if (cg_json_get_string(o, "p256dh_private", 0, &priv) != CG_JSON_OK ||
	    b64_exact(priv, s->priv, sizeof s->priv) < 0) {
		fake_warn("%s:%zu: p256dh_private must be base64url of 32 bytes", path, lineno);
		goto out;
	}
	if (cg_json_get_string(o, "p256dh", CG_WEBPUSH_KEY_B64_MAX, &pub) != CG_JSON_OK ||
	    cg_json_get_string(o, "auth", CG_WEBPUSH_KEY_B64_MAX, &auth) != CG_JSON_OK ||
	    cg_webpush_keys_parse(pub, auth, s->pub, s->auth, err, sizeof err) < 0) {
		fake_warn("%s:%zu: p256dh/auth: %s", path, lineno,
		    pub == NULL || auth == NULL ? "missing" : err);
		goto out;
	}
	switch (cg_json_get_string(o, "vapid_k", CG_WEBPUSH_KEY_B64_MAX, &vk)) {
	case CG_JSON_OK:
		if (b64_exact(vk, s->vapid_k, sizeof s->vapid_k) < 0 || s->vapid_k[0] != 0x04) {
			fake_warn("%s:%zu: vapid_k must be base64url of a 65-byte public key", path, lineno);
			goto out;
		}
		s->restricted = 1;
		break;
	case CG_JSON_ABSENT:
		break;
	default:
		fake_warn("%s:%zu: bad vapid_k", path, lineno);
		goto out;
	}
	snprintf(s->path, sizeof s->path, "%s", ep);
	l->n++;
out:
	json_object_put(o);
	return 0;
}

static void subs_reload(struct server *srv)
{
	struct subs_load l = { NULL, 0 };
	char *text = slurp(srv->subs_file.path);

	if (text == NULL)
		goto out;
	l.v = calloc(MAX_SUBS, sizeof *l.v);
	if (l.v == NULL)
		goto out;
	for_each_line(text, srv->subs_file.path, sub_line, &l);
	free(srv->subs);
	srv->subs = l.v;
	srv->nsubs = l.n;
	l.v = NULL;
	fake_warn("%s: %zu subscriptions", srv->subs_file.path, srv->nsubs);
out:
	free(l.v);
	free(text);
}

static const struct sub *sub_find(const struct server *srv, const char *path)
{
	size_t i;

	for (i = 0; i < srv->nsubs; i++) {
		if (strcmp(srv->subs[i].path, path) == 0)
			return &srv->subs[i];
	}
	return NULL;
}

/* ------------------------------------------------------------------ script */

struct rules_load {
	struct rule *v;
	size_t n;
};

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int rule_line(void *ctx, char *line, const char *path, size_t lineno)
{
	struct rules_load *l = ctx;
	struct rule r;
	char *w[5], *save = NULL;
	size_t nw = 0;
	long status;

	while (nw < 5) {
		w[nw] = strtok_r(nw == 0 ? line : NULL, " \t\r", &save);
		if (w[nw] == NULL || *w[nw] == '#')
			break;
		nw++;
	}
	if (nw < 2 || nw > 4 || !path_ok(w[0]) || parse_long(w[1], 100, 599, &status) < 0) {
		fake_warn("%s:%zu: want <path> <status> [count|*] [retry-after]", path, lineno);
		return 0;
	}
	memset(&r, 0, sizeof r);
	snprintf(r.path, sizeof r.path, "%s", w[0]);
	r.status = (int)status;
	r.remaining = -1;
	r.retry_after = -1;
	if (nw >= 3 && strcmp(w[2], "*") != 0 && parse_long(w[2], 1, LONG_MAX, &r.remaining) < 0) {
		fake_warn("%s:%zu: bad count '%s'", path, lineno, w[2]);
		return 0;
	}
	if (nw == 4 && parse_long(w[3], 0, INT_MAX, &r.retry_after) < 0) {
		fake_warn("%s:%zu: bad retry-after '%s'", path, lineno, w[3]);
		return 0;
	}
	if (l->n == MAX_RULES) {
		fake_warn("%s: more than %d lines; rest ignored", path, MAX_RULES);
		return -1;
	}
	l->v[l->n++] = r;
	return 0;
}

static void script_reload(struct server *srv)
{
	struct rules_load l = { NULL, 0 };
	char *text = NULL;

	if (srv->script_file.have_st)
		text = slurp(srv->script_file.path);
	if (text != NULL) {
		l.v = calloc(MAX_RULES, sizeof *l.v);
		if (l.v == NULL)
			goto out;
		for_each_line(text, srv->script_file.path, rule_line, &l);
	}
	/* A missing file means no script. */
	free(srv->rules);
	srv->rules = l.v;
	srv->nrules = l.n;
	l.v = NULL;
out:
	free(l.v);
	free(text);
}

static void files_refresh(struct server *srv, int force)
{
	if (watched_changed(&srv->subs_file, force))
		subs_reload(srv);
	if (watched_changed(&srv->script_file, 0))
		script_reload(srv);     /* only on change, so counts survive SIGHUP */
}

static struct rule *rule_find(struct server *srv, const char *path)
{
	size_t i;

	for (i = 0; i < srv->nrules; i++) {
		if (srv->rules[i].remaining != 0 && strcmp(srv->rules[i].path, path) == 0)
			return &srv->rules[i];
	}
	return NULL;
}

/* Applies the scripted answer for `r`, consuming one use. */
static void rule_apply(struct rule *r, struct answer *a)
{
	if (r->remaining > 0)
		r->remaining--;
	a->status = r->status;
	a->retry_after = r->retry_after;
	snprintf(a->reason, sizeof a->reason, "scripted");
}

/* ------------------------------------------------------------- HTTP parsing */

/* The next line at *cur (NUL-terminated, CR stripped), NULL at the end. */
static char *next_line(char **cur)
{
	char *line = *cur, *eol;
	size_t n;

	if (line == NULL || *line == '\0')
		return NULL;
	eol = strchr(line, '\n');
	if (eol != NULL) {
		*eol = '\0';
		*cur = eol + 1;
	} else {
		*cur = NULL;
	}
	n = strlen(line);
	if (n > 0 && line[n - 1] == '\r')
		line[n - 1] = '\0';
	return line;
}

/* Parses the head (`len` bytes, blank line included) copied into req->head.
 * 0, or -1 when malformed. */
static int request_parse(struct request *req, size_t len)
{
	char *cur = req->head, *p, *sp1, *sp2, *colon, *v, *e;

	req->head[len] = '\0';
	req->nf = 0;
	p = next_line(&cur);
	if (p == NULL)
		return -1;
	sp1 = strchr(p, ' ');
	sp2 = sp1 == NULL ? NULL : strchr(sp1 + 1, ' ');
	if (sp1 == NULL || sp2 == NULL || sp1 == p || sp2 == sp1 + 1)
		return -1;
	*sp1 = '\0';
	*sp2 = '\0';
	req->method = p;
	req->target = sp1 + 1;
	if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
		req->http10 = 0;
	else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
		req->http10 = 1;
	else
		return -1;
	for (p = next_line(&cur); p != NULL && *p != '\0'; p = next_line(&cur)) {
		if (*p == ' ' || *p == '\t')
			return -1;          /* obsolete line folding */
		colon = strchr(p, ':');
		if (colon == NULL || colon == p || strcspn(p, " \t") < (size_t)(colon - p))
			return -1;
		if (req->nf == MAX_FIELDS)
			return -1;
		*colon = '\0';
		v = colon + 1;
		v += strspn(v, " \t");
		e = v + strlen(v);
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		req->f[req->nf].name = p;
		req->f[req->nf].value = v;
		req->nf++;
	}
	return 0;
}

/* The first value of header `name` and how many times it occurs. */
static const char *field(const struct request *req, const char *name, int *count)
{
	const char *v = NULL;
	size_t i;
	int n = 0;

	for (i = 0; i < req->nf; i++) {
		if (strcasecmp(req->f[i].name, name) == 0) {
			if (v == NULL)
				v = req->f[i].value;
			n++;
		}
	}
	if (count != NULL)
		*count = n;
	return v;
}

/* 1 when the comma/semicolon separated parameter list has `param`=... */
static int has_param(const char *list, const char *param)
{
	size_t plen = strlen(param);
	const char *p = list;

	while (p != NULL && *p != '\0') {
		p += strspn(p, " \t,;");
		if (strncasecmp(p, param, plen) == 0) {
			const char *q = p + plen;

			q += strspn(q, " \t");
			if (*q == '=')
				return 1;
		}
		p = strpbrk(p, ",;");
	}
	return 0;
}

/* ------------------------------------------------------------------- VAPID */

/* Copies parameter `name` of "vapid t=..., k=..." into out; 0, or -1 when absent. */
static int vapid_param(const char *authz, const char *name, char *out, size_t outlen)
{
	const char *p = authz, *end, *eq;
	size_t nlen = strlen(name), vlen;

	p += strspn(p, " \t");
	if (strncasecmp(p, "vapid", 5) != 0 || (p[5] != ' ' && p[5] != '\t'))
		return -1;
	p += 5;
	while (*p != '\0') {
		p += strspn(p, " \t,");
		end = p + strcspn(p, ",");
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq != NULL) {
			const char *ne = eq;

			while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
				ne--;
			if ((size_t)(ne - p) == nlen && strncasecmp(p, name, nlen) == 0) {
				const char *v = eq + 1, *ve = end;

				v += strspn(v, " \t");
				while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
					ve--;
				vlen = (size_t)(ve - v);
				if (vlen >= outlen)
					return -1;
				memcpy(out, v, vlen);
				out[vlen] = '\0';
				return 0;
			}
		}
		p = end;
	}
	return -1;
}

/* {"aud","sub","exp","k"} from the header, unverified, for the log; NULL when
 * nothing decodes. */
static json_object *vapid_for_log(const char *authz)
{
	char t[CG_WEBPUSH_AUTH_HEADER_MAX], k[CG_WEBPUSH_KEY_B64_MAX], claims[CG_WEBPUSH_AUTH_HEADER_MAX];
	json_object *out = NULL, *c = NULL, *v;
	const char *d1, *d2;
	static const char *const keys[] = { "aud", "sub", "exp" };
	long n;
	size_t i;

	if (authz == NULL)
		return NULL;
	if (vapid_param(authz, "t", t, sizeof t) == 0) {
		d1 = strchr(t, '.');
		d2 = d1 == NULL ? NULL : strchr(d1 + 1, '.');
		if (d2 != NULL) {
			n = cg_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), claims, sizeof claims);
			if (n > 0)
				c = cg_json_parse_object(claims, (size_t)n, 8, NULL, 0);
		}
	}
	if (c != NULL) {
		out = json_object_new_object();
		for (i = 0; out != NULL && i < sizeof keys / sizeof keys[0]; i++) {
			if (json_object_object_get_ex(c, keys[i], &v))
				json_object_object_add(out, keys[i], json_object_get(v));
		}
	}
	if (vapid_param(authz, "k", k, sizeof k) == 0) {
		if (out == NULL)
			out = json_object_new_object();
		if (out != NULL)
			cg_json_add_string(out, "k", k);
	}
	json_object_put(c);
	return out;
}

/* --------------------------------------------------------- push validation */

static void set_reason(struct answer *a, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_reason(struct answer *a, int status, const char *fmt, ...)
{
	va_list ap;

	a->status = status;
	va_start(ap, fmt);
	vsnprintf(a->reason, sizeof a->reason, fmt, ap);
	va_end(ap);
}

/* TTL: 1*DIGIT, overflow taken as 2^31. -1 when not digits. */
static long long parse_ttl(const char *s)
{
	long long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v < TTL_OVERFLOW)
			v = v * 10 + (*s - '0');
	}
	return v > TTL_OVERFLOW ? TTL_OVERFLOW : v;
}

static int topic_ok(const char *t)
{
	size_t n = strlen(t);

	return n >= 1 && n <= TOPIC_MAX &&
	       strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* Header-only checks (method, TTL, Urgency, Topic, size, encoding). 0 or -1. */
static int check_headers(const struct request *req, size_t body_len, struct answer *a)
{
	const char *ttl, *urg, *topic, *ce, *hv;
	int n;

	if (strcmp(req->method, "POST") != 0) {
		set_reason(a, 405, "method %s not allowed", req->method);
		return -1;
	}
	ttl = field(req, "TTL", &n);
	if (ttl == NULL) {
		set_reason(a, 400, "missing TTL");
		return -1;
	}
	if (n > 1 || parse_ttl(ttl) < 0) {
		set_reason(a, 400, "bad TTL");
		return -1;
	}
	a->ttl = parse_ttl(ttl);
	urg = field(req, "Urgency", &n);
	if (urg != NULL && (n > 1 || (strcmp(urg, "very-low") != 0 && strcmp(urg, "low") != 0 &&
	                              strcmp(urg, "normal") != 0 && strcmp(urg, "high") != 0))) {
		set_reason(a, 400, "bad Urgency");
		return -1;
	}
	topic = field(req, "Topic", &n);
	if (topic != NULL && (n > 1 || !topic_ok(topic))) {
		set_reason(a, 400, "bad Topic");
		return -1;
	}
	if (body_len > PUSH_BODY_MAX) {
		set_reason(a, 413, "body of %zu bytes over %d", body_len, PUSH_BODY_MAX);
		return -1;
	}
	ce = field(req, "Content-Encoding", &n);
	if (body_len > 0 && (ce == NULL || n > 1 || strcasecmp(ce, "aes128gcm") != 0)) {
		set_reason(a, 400, "Content-Encoding must be aes128gcm");
		return -1;
	}
	hv = field(req, "Encryption", NULL);
	if (hv != NULL && has_param(hv, "salt")) {
		set_reason(a, 400, "Encryption header with salt (legacy aesgcm)");
		return -1;
	}
	hv = field(req, "Crypto-Key", NULL);
	if (hv != NULL && has_param(hv, "dh")) {
		set_reason(a, 400, "Crypto-Key header with dh (legacy aesgcm)");
		return -1;
	}
	return 0;
}

/*
 * Everything after the headers: VAPID, keyid, subscription, decryption,
 * script. *pt and *ptlen receive the plaintext when decrypted.
 */
static void check_push(struct server *srv, const struct request *req, const unsigned char *body,
                       size_t body_len, struct answer *a, unsigned char **pt, size_t *ptlen)
{
	const char *authz;
	char k_b64[CG_WEBPUSH_KEY_B64_MAX], err[256];
	unsigned char k[CG_WEBPUSH_PUBKEY_LEN];
	const struct sub *s;
	struct rule *r;
	int n, rc;

	authz = field(req, "Authorization", &n);
	if (authz == NULL || n > 1) {
		set_reason(a, 401, authz == NULL ? "missing Authorization" : "repeated Authorization");
		return;
	}
	rc = cg_vapid_verify(authz, srv->origin, time(NULL), k_b64, err, sizeof err);
	if (rc < 0) {
		set_reason(a, rc == -2 ? 403 : 401, "VAPID: %s", err);
		return;
	}
	if (b64_exact(k_b64, k, sizeof k) < 0) {
		set_reason(a, 401, "VAPID: k does not decode");
		return;
	}
	if (body_len >= CG_WEBPUSH_HEADER_LEN && body[20] == CG_WEBPUSH_PUBKEY_LEN &&
	    memcmp(body + 21, k, sizeof k) == 0) {
		set_reason(a, 400, "VAPID key equals the message keyid");
		return;
	}
	s = sub_find(srv, req->target);
	r = rule_find(srv, req->target);
	if (s == NULL) {
		if (r != NULL)
			rule_apply(r, a);
		else
			set_reason(a, 404, "no subscription %s", req->target);
		return;
	}
	if (s->restricted && memcmp(s->vapid_k, k, sizeof k) != 0) {
		set_reason(a, 403, "VAPID k is not the restricted subscription's key");
		return;
	}
	if (body_len > 0 &&
	    cg_webpush_decrypt(s->priv, s->pub, s->auth, body, body_len, pt, ptlen, err,
	                       sizeof err) < 0) {
		set_reason(a, 400, "decryption: %s", err);
		return;
	}
	if (r != NULL) {
		rule_apply(r, a);
		return;
	}
	a->status = 201;
	a->message = ++srv->next_message;
}

/* ---------------------------------------------------------------- answers */

static const char *status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 410: return "Gone";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

/* Queues the response for `a`. -1 when the output buffer is full (close). */
static int answer_write(struct server *srv, struct conn *c, const struct answer *a)
{
	cg_buf body;
	int rc = -1;

	cg_buf_init(&body, 4096);
	if (a->status >= 300) {
		json_object *o = json_object_new_object();

		if (o == NULL)
			goto out;
		cg_json_add_int64(o, "code", a->status);
		cg_json_add_string(o, "error", status_text(a->status));
		cg_json_add_string(o, "message", a->reason);
		if (cg_buf_appendf(&body, "%s", cg_json_compact(o)) < 0) {
			json_object_put(o);
			goto out;
		}
		json_object_put(o);
	}
	if (cg_buf_appendf(&c->out, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n", a->status,
	                   status_text(a->status), body.len) < 0)
		goto out;
	if (body.len > 0 && cg_buf_appendf(&c->out, "Content-Type: application/json\r\n") < 0)
		goto out;
	if (a->status == 201 && a->message > 0 &&
	    cg_buf_appendf(&c->out, "Location: %s/message/%lu\r\n", srv->origin, a->message) < 0)
		goto out;
	if (a->status / 100 == 2 && a->ttl >= 0 &&
	    cg_buf_appendf(&c->out, "TTL: %lld\r\n",
	                   a->ttl > TTL_ANSWER_MAX ? (long long)TTL_ANSWER_MAX : a->ttl) < 0)
		goto out;
	if (a->status == 405 && cg_buf_appendf(&c->out, "Allow: POST\r\n") < 0)
		goto out;
	if (a->retry_after >= 0 && cg_buf_appendf(&c->out, "Retry-After: %ld\r\n", a->retry_after) < 0)
		goto out;
	if (a->close && cg_buf_appendf(&c->out, "Connection: close\r\n") < 0)
		goto out;
	if (cg_buf_append(&c->out, "\r\n", 2) < 0 ||
	    (!a->no_body && cg_buf_append(&c->out, body.data, body.len) < 0))
		goto out;
	rc = 0;
out:
	cg_buf_free(&body);
	return rc;
}

static void log_plaintext(json_object *o, const unsigned char *pt, size_t len)
{
	char *b64;

	if (memchr(pt, '\0', len) == NULL && cg_utf8_valid((const char *)pt, len)) {
		json_object_object_add(o, "plaintext", json_object_new_string_len((const char *)pt, (int)len));
		return;
	}
	b64 = malloc(4 * ((len + 2) / 3) + 1);
	if (b64 == NULL)
		return;
	EVP_EncodeBlock((unsigned char *)b64, pt, (int)len);
	cg_json_add_string(o, "plaintext_base64", b64);
	free(b64);
}

static json_object *header_or_null(const struct request *req, const char *name)
{
	const char *v = req == NULL ? NULL : field(req, name, NULL);

	return v == NULL ? NULL : json_object_new_string(v);
}

/* One log line; req is NULL when the head could not be parsed. */
static void log_request(struct server *srv, const struct conn *c, const struct request *req,
                        const struct answer *a, size_t body_len, const unsigned char *pt,
                        size_t ptlen)
{
	json_object *o = json_object_new_object();
	struct timespec ts;
	const char *s, *ttl;
	size_t len;

	if (o == NULL)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	json_object_object_add(o, "time",
	                       json_object_new_double((double)ts.tv_sec + ts.tv_nsec / 1e9));
	cg_json_add_int64(o, "conn", (long long)c->id);
	cg_json_add_string(o, "method", req == NULL ? NULL : req->method);
	cg_json_add_string(o, "path", req == NULL ? NULL : req->target);
	cg_json_add_int64(o, "status", a->status);
	if (a->message > 0)
		cg_json_add_int64(o, "message", (long long)a->message);
	else
		cg_json_add_string(o, "reason", a->reason);
	if (a->retry_after >= 0)
		cg_json_add_int64(o, "retry_after", a->retry_after);
	ttl = req == NULL ? NULL : field(req, "TTL", NULL);
	if (ttl != NULL && parse_ttl(ttl) >= 0)
		cg_json_add_int64(o, "ttl", parse_ttl(ttl));
	else
		cg_json_add_string(o, "ttl", ttl);
	json_object_object_add(o, "urgency", header_or_null(req, "Urgency"));
	json_object_object_add(o, "topic", header_or_null(req, "Topic"));
	json_object_object_add(o, "content_encoding", header_or_null(req, "Content-Encoding"));
	cg_json_add_int64(o, "body_bytes", (long long)body_len);
	json_object_object_add(o, "vapid",
	                       vapid_for_log(req == NULL ? NULL : field(req, "Authorization", NULL)));
	if (pt != NULL)
		log_plaintext(o, pt, ptlen);
	s = cg_json_compact(o);
	len = strlen(s);
	if (len < LOG_LINE_MAX) {
		char *line = malloc(len + 1);

		if (line != NULL) {
			memcpy(line, s, len);
			line[len] = '\n';
			if (write(srv->log_fd, line, len + 1) != (ssize_t)(len + 1))
				fake_warn("log write: %s", strerror(errno));
			free(line);
		}
	}
	json_object_put(o);
}

/* Answers a request whose head could not be used, and closes. */
static void refuse(struct server *srv, struct conn *c, const struct request *req, int status,
                   const char *reason, size_t body_len)
{
	struct answer a;

	memset(&a, 0, sizeof a);
	a.retry_after = -1;
	a.ttl = -1;
	a.close = 1;
	set_reason(&a, status, "%s", reason);
	log_request(srv, c, req, &a, body_len, NULL, 0);
	if (answer_write(srv, c, &a) < 0)
		c->dead = 1;
	c->closing = 1;
}

/* ------------------------------------------------------------ connections */

/* The length of the head including its blank line, 0 when incomplete. */
static size_t head_length(const cg_buf *in)
{
	size_t n = in->len < HEAD_MAX ? in->len : HEAD_MAX, i;

	for (i = 0; i + 1 < n; i++) {
		if (in->data[i] != '\n')
			continue;
		if (in->data[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && in->data[i + 1] == '\r' && in->data[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static void buf_consume(cg_buf *b, size_t n)
{
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	if (b->len == 0 && b->cap > READ_CHUNK * 2)
		cg_buf_free(b);     /* give back memory between bursts */
}

static void handle_one(struct server *srv, struct conn *c, struct request *req,
                       const unsigned char *body, size_t body_len)
{
	struct answer a;
	unsigned char *pt = NULL;
	size_t ptlen = 0;

	memset(&a, 0, sizeof a);
	a.retry_after = -1;
	a.ttl = -1;
	a.no_body = strcmp(req->method, "HEAD") == 0;
	files_refresh(srv, 0);
	if (check_headers(req, body_len, &a) == 0)
		check_push(srv, req, body, body_len, &a, &pt, &ptlen);
	if (req->http10) {
		const char *conn = field(req, "Connection", NULL);

		a.close = conn == NULL || strcasecmp(conn, "keep-alive") != 0;
	} else {
		const char *conn = field(req, "Connection", NULL);

		a.close = conn != NULL && strcasecmp(conn, "close") == 0;
	}
	log_request(srv, c, req, &a, body_len, pt, ptlen);
	free(pt);
	if (answer_write(srv, c, &a) < 0)
		c->dead = 1;
	if (a.close)
		c->closing = 1;
}

/* Answers every complete request in the input (while the output has room). */
static void conn_process(struct server *srv, struct conn *c)
{
	struct request *req = &srv->req;

	while (!c->closing && !c->dead && c->out.len < OUT_HIGH && c->in.len > 0) {
		size_t hlen = head_length(&c->in);
		const char *cl, *te, *expect;
		long long clen = 0;
		int n;

		if (hlen == 0) {
			if (c->in.len >= HEAD_MAX)
				refuse(srv, c, NULL, 431, "request head over 16 KiB", 0);
			return;
		}
		memcpy(req->head, c->in.data, hlen);
		if (request_parse(req, hlen) < 0) {
			refuse(srv, c, NULL, 400, "malformed request head", 0);
			return;
		}
		te = field(req, "Transfer-Encoding", NULL);
		if (te != NULL) {
			refuse(srv, c, req, 501, "Transfer-Encoding not supported", 0);
			return;
		}
		cl = field(req, "Content-Length", &n);
		if (cl != NULL) {
			clen = n == 1 ? parse_ttl(cl) : -1;
			if (clen < 0) {
				refuse(srv, c, req, 400, "bad Content-Length", 0);
				return;
			}
			if (clen > BODY_READ_MAX) {
				refuse(srv, c, req, 413, "body over 64 KiB, not read", (size_t)clen);
				return;
			}
		}
		if (c->in.len < hlen + (size_t)clen) {
			expect = field(req, "Expect", NULL);
			if (expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
			    !c->continue_sent) {
				static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

				if (cg_buf_append(&c->out, cont, sizeof cont - 1) < 0)
					c->dead = 1;
				c->continue_sent = 1;
			}
			return;
		}
		handle_one(srv, c, req, (const unsigned char *)c->in.data + hlen, (size_t)clen);
		buf_consume(&c->in, hlen + (size_t)clen);
		c->continue_sent = 0;
	}
}

#define IO_AGAIN (-2)

/* Reads once into the input buffer: bytes read, 0 at EOF, IO_AGAIN, -1. */
static int conn_read(struct conn *c)
{
	char buf[READ_CHUNK];
	size_t room = IN_MAX - c->in.len;
	int n, err;

	if (room == 0)
		return IO_AGAIN;
	if (room > sizeof buf)
		room = sizeof buf;
	c->read_wants_write = 0;
	ERR_clear_error();
	n = SSL_read(c->ssl, buf, (int)room);
	if (n > 0) {
		if (cg_buf_append(&c->in, buf, (size_t)n) < 0)
			return -1;
		return n;
	}
	err = SSL_get_error(c->ssl, n);
	if (err == SSL_ERROR_WANT_READ)
		return IO_AGAIN;
	if (err == SSL_ERROR_WANT_WRITE) {
		c->read_wants_write = 1;
		return IO_AGAIN;
	}
	ERR_clear_error();
	return err == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

/* Writes queued output until done or blocked. 0, or -1 on a broken connection. */
static int conn_flush(struct conn *c)
{
	c->write_wants_read = 0;
	while (c->out.len > 0) {
		int n, err;

		ERR_clear_error();
		n = SSL_write(c->ssl, c->out.data, (int)c->out.len);
		if (n <= 0) {
			err = SSL_get_error(c->ssl, n);
			if (err == SSL_ERROR_WANT_WRITE)
				return 0;
			if (err == SSL_ERROR_WANT_READ) {
				c->write_wants_read = 1;
				return 0;
			}
			ERR_clear_error();
			return -1;
		}
		buf_consume(&c->out, (size_t)n);
	}
	return 0;
}

/* Our side is done: close_notify, FIN, then discard what the peer still
 * sends for LINGER_MS so our last answer is not lost to a reset. */
static void conn_linger(struct conn *c)
{
	ERR_clear_error();
	SSL_shutdown(c->ssl);
	ERR_clear_error();
	shutdown(c->fd, SHUT_WR);
	c->state = C_LINGER;
	c->linger_until = cg_monotonic_ms() + LINGER_MS;
}

static void conn_service(struct server *srv, struct conn *c)
{
	int rounds, r;

	if (c->state == C_LINGER) {
		char buf[READ_CHUNK];
		ssize_t n;

		do {
			n = recv(c->fd, buf, sizeof buf, 0);
		} while (n > 0);
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			c->dead = 1;
		return;
	}
	if (c->state == C_HANDSHAKE) {
		ERR_clear_error();
		r = SSL_accept(c->ssl);
		if (r != 1) {
			int err = SSL_get_error(c->ssl, r);

			ERR_clear_error();
			if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
				c->hs_wants_write = err == SSL_ERROR_WANT_WRITE;
			else
				c->dead = 1;
			return;
		}
		c->state = C_HTTP;
	}
	for (rounds = 0; rounds < SERVICE_ROUNDS && !c->dead; rounds++) {
		r = IO_AGAIN;
		if (!c->eof && !c->closing) {
			r = conn_read(c);
			if (r == 0)
				c->eof = 1;
			else if (r == -1)
				c->dead = 1;
		}
		conn_process(srv, c);
		if (!c->dead && conn_flush(c) < 0)
			c->dead = 1;
		if (r <= 0)
			break;      /* blocked, full, EOF or error: wait for poll */
	}
	c->more = !c->dead && !c->eof && !c->closing && SSL_pending(c->ssl) > 0 &&
	          c->in.len < IN_MAX;
	if (c->dead || c->out.len > 0)
		return;
	if (c->closing)
		conn_linger(c);
	else if (c->eof)
		c->dead = 1;        /* the peer is gone; a partial request is dropped */
}

static short conn_events(const struct conn *c)
{
	short ev = POLLIN;

	if (c->state == C_HANDSHAKE)
		return c->hs_wants_write ? POLLOUT : POLLIN;
	if (c->state == C_LINGER)
		return POLLIN;
	/* Only writing is left: a readable EOF must not wake us in a loop. */
	if ((c->eof || c->closing) && c->out.len > 0 && !c->write_wants_read)
		return POLLOUT;
	if (c->read_wants_write || (c->out.len > 0 && !c->write_wants_read))
		ev |= POLLOUT;
	return ev;
}

static void conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl);
	ERR_clear_error();
	if (c->fd >= 0)
		close(c->fd);
	cg_buf_free(&c->in);
	cg_buf_free(&c->out);
	free(c);
}

static void server_accept(struct server *srv)
{
	while (srv->nconns < MAX_CONNS) {
		struct conn *c;
		int one = 1;
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				fake_warn("accept: %s", strerror(errno));
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c = calloc(1, sizeof *c);
		if (c == NULL) {
			close(fd);
			return;
		}
		c->fd = fd;
		c->id = ++srv->next_conn_id;
		c->state = C_HANDSHAKE;
		cg_buf_init(&c->in, IN_MAX);
		cg_buf_init(&c->out, OUT_MAX);
		c->ssl = SSL_new(srv->tls);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
			conn_free(c);
			continue;
		}
		SSL_set_accept_state(c->ssl);
		srv->conns[srv->nconns++] = c;
	}
}

static void server_reap(struct server *srv)
{
	size_t i = 0;

	while (i < srv->nconns) {
		if (!srv->conns[i]->dead) {
			i++;
			continue;
		}
		conn_free(srv->conns[i]);
		srv->conns[i] = srv->conns[--srv->nconns];
		srv->conns[srv->nconns] = NULL;
	}
}

static void server_run(struct server *srv, const sigset_t *waitmask)
{
	static struct pollfd pfd[MAX_CONNS + 1];
	static struct conn *polled[MAX_CONNS];

	while (!g_stop) {
		struct timespec tmo;
		int64_t now = cg_monotonic_ms(), wait = -1;
		size_t i, n = srv->nconns, base = 0;
		int r;

		if (g_reload) {
			g_reload = 0;
			files_refresh(srv, 1);
		}
		if (n < MAX_CONNS) {        /* at the cap, new clients wait in the backlog */
			pfd[0].fd = srv->listen_fd;
			pfd[0].events = POLLIN;
			pfd[0].revents = 0;
			base = 1;
		}
		for (i = 0; i < n; i++) {
			struct conn *c = srv->conns[i];

			polled[i] = c;
			pfd[base + i].fd = c->fd;
			pfd[base + i].events = conn_events(c);
			pfd[base + i].revents = 0;
			if (c->more)
				wait = 0;
			else if (c->state == C_LINGER &&
			         (wait < 0 || c->linger_until - now < wait))
				wait = c->linger_until > now ? c->linger_until - now : 0;
		}
		tmo.tv_sec = wait / 1000;
		tmo.tv_nsec = (long)(wait % 1000) * 1000000;
		r = ppoll(pfd, base + n, wait < 0 ? NULL : &tmo, waitmask);
		if (r < 0 && errno != EINTR) {
			fake_warn("poll: %s", strerror(errno));
			break;
		}
		if (r < 0)
			continue;
		now = cg_monotonic_ms();
		for (i = 0; i < n; i++) {
			struct conn *c = polled[i];

			if (pfd[base + i].revents != 0 || c->more)
				conn_service(srv, c);
			if (c->state == C_LINGER && now >= c->linger_until)
				c->dead = 1;
		}
		server_reap(srv);
		if (base == 1 && (pfd[0].revents & POLLIN))
			server_accept(srv);
	}
}

/* ------------------------------------------------------------------ setup */

/* --make-subscription: prints the subscriptions-file line and the browser JSON. */
static int make_subscription(const char *path, int port, const char *vapid_k)
{
	char priv[CG_WEBPUSH_KEY_B64_MAX], pub[CG_WEBPUSH_KEY_B64_MAX], auth[CG_WEBPUSH_KEY_B64_MAX];
	char url[PATH_MAX_LEN + ORIGIN_MAX];
	unsigned char secret[CG_WEBPUSH_AUTH_LEN], k[CG_WEBPUSH_PUBKEY_LEN];
	json_object *line = NULL, *browser = NULL, *keys = NULL;
	int rc = 1;

	if (!path_ok(path) || port <= 0) {
		fake_warn("--make-subscription needs a path like /push/abc and --port N (N > 0)");
		return 2;
	}
	if (vapid_k != NULL && (b64_exact(vapid_k, k, sizeof k) < 0 || k[0] != 0x04)) {
		fake_warn("--vapid-k must be base64url of a 65-byte public key");
		return 2;
	}
	if (cg_vapid_generate(priv, pub) < 0 || cg_random_bytes(secret, sizeof secret) < 0 ||
	    cg_b64url_encode(secret, sizeof secret, auth, sizeof auth) < 0) {
		fake_warn("cannot generate keys");
		goto out;
	}
	snprintf(url, sizeof url, "https://127.0.0.1:%d%s", port, path);
	line = json_object_new_object();
	browser = json_object_new_object();
	keys = json_object_new_object();
	if (line == NULL || browser == NULL || keys == NULL)
		goto out;
	cg_json_add_string(line, "endpoint_path", path);
	cg_json_add_string(line, "p256dh_private", priv);
	cg_json_add_string(line, "p256dh", pub);
	cg_json_add_string(line, "auth", auth);
	if (vapid_k != NULL)
		cg_json_add_string(line, "vapid_k", vapid_k);
	cg_json_add_string(keys, "p256dh", pub);
	cg_json_add_string(keys, "auth", auth);
	cg_json_add_string(browser, "endpoint", url);
	json_object_object_add(browser, "keys", keys);
	keys = NULL;
	printf("%s\n%s\n", cg_json_compact(line), cg_json_compact(browser));
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	OPENSSL_cleanse(priv, sizeof priv);
	json_object_put(keys);
	json_object_put(browser);
	json_object_put(line);
	return rc;
}

static void usage(FILE *f)
{
	fputs("usage: " PROG " --port N --cert CERT.pem --key KEY.pem --log FILE\n"
	      "                    --subscriptions FILE [--script FILE] [--port-file FILE]\n"
	      "       " PROG " --make-subscription PATH --port N [--vapid-k KEY]\n", f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'K' },
		{ "log", required_argument, NULL, 'l' },
		{ "subscriptions", required_argument, NULL, 'S' },
		{ "script", required_argument, NULL, 's' },
		{ "port-file", required_argument, NULL, 'P' },
		{ "make-subscription", required_argument, NULL, 'm' },
		{ "vapid-k", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct server srv;
	const char *cert = NULL, *key = NULL, *log_path = NULL, *port_file = NULL;
	const char *make = NULL, *vapid_k = NULL;
	long port = -1;
	int bound = 0, opt, rc = 1;
	struct sigaction sa;
	sigset_t block, waitmask;
	size_t i;

	fake_set_name(PROG);
	srv.listen_fd = -1;
	srv.log_fd = -1;
	for (;;) {
		opt = getopt_long(argc, argv, "h", opts, NULL);
		if (opt == -1)
			break;
		switch (opt) {
		case 'p':
			if (parse_long(optarg, 0, 65535, &port) < 0) {
				fake_warn("bad --port '%s'", optarg);
				return 2;
			}
			break;
		case 'c': cert = optarg; break;
		case 'K': key = optarg; break;
		case 'l': log_path = optarg; break;
		case 'S': srv.subs_file.path = optarg; break;
		case 's': srv.script_file.path = optarg; break;
		case 'P': port_file = optarg; break;
		case 'm': make = optarg; break;
		case 'v': vapid_k = optarg; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (make != NULL)
		return make_subscription(make, (int)port, vapid_k);
	if (port < 0 || cert == NULL || key == NULL || log_path == NULL ||
	    srv.subs_file.path == NULL) {
		usage(stderr);
		return 2;
	}

	/* Signals only set flags; they are delivered only inside ppoll(). */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGHUP);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	srv.tls = fake_tls_server(cert, key);
	if (srv.tls == NULL)
		goto out;
	srv.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (srv.log_fd < 0) {
		fake_warn("%s: %s", log_path, strerror(errno));
		goto out;
	}
	files_refresh(&srv, 1);
	if (srv.subs == NULL)
		goto out;           /* the subscriptions file must exist at start */
	srv.listen_fd = fake_listen((int)port, 511, &bound);
	if (srv.listen_fd < 0)
		goto out;
	snprintf(srv.origin, sizeof srv.origin, "https://127.0.0.1:%d", bound);
	if (port_file != NULL && fake_write_port_file(port_file, bound) < 0)
		goto out;
	printf(PROG " listening on 127.0.0.1:%d\n", bound);
	fflush(stdout);

	server_run(&srv, &waitmask);
	rc = g_stop ? 0 : 1;
out:
	for (i = 0; i < srv.nconns; i++)
		conn_free(srv.conns[i]);
	if (srv.listen_fd >= 0)
		close(srv.listen_fd);
	if (srv.log_fd >= 0)
		close(srv.log_fd);
	free(srv.subs);
	free(srv.rules);
	SSL_CTX_free(srv.tls);
	return rc;
}

/* cg_redis: synchronous Redis over hiredis 0.14: URL parsing, lazy reconnects, safe sends. */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"

#define R_HOST_MAX 256
#define R_USER_MAX 256
#define R_PASS_MAX 512
#define R_DB_MAX 1000000L
#define R_CONNECT_DEFAULT_MS 5000 /* connect bound when timeout_ms is 0 */
#define R_XADD_MAX_FIELDS 256

struct cg_redis {
	int is_unix;
	char host[R_HOST_MAX];                     /* TCP host (no brackets) */
	int port;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* unix socket */
	char user[R_USER_MAX];                     /* "" = none */
	char password[R_PASS_MAX];                 /* "" = no AUTH */
	long db;
	int timeout_ms;                            /* 0 = commands unbounded */
	redisContext *ctx;                         /* NULL = not connected */
	int down;                                  /* last connect failed (log once) */
	char errmsg[256];
};

static void r_set_err(cg_redis *r, const char *fmt, ...) CG_PRINTF(2, 3);

static void r_set_err(cg_redis *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
	va_end(ap);
}

/* ---- URL parsing ---- */

/* Percent-decodes s[0..n) into out (outlen with NUL). Returns 0 or -1. */
static int pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
	long d;

	if (n >= outlen)
		return -1;
	d = cg_pct_decode(s, n, 0, out);
	return d < 0 || strlen(out) != (size_t)d ? -1 : 0;
}

/* Parses all of s[0..n) as a decimal in [lo, hi]. */
static int parse_num(const char *s, size_t n, long lo, long hi, long *out)
{
	long v = 0;
	size_t i;

	if (n == 0 || n > 10)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int host_char_ok(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

static int parse_tcp_url(cg_redis *r, const char *s, char *err, size_t errlen)
{
	const char *auth_end, *at = NULL, *hp, *hp_end, *p, *port_s = NULL;
	size_t hlen;
	long v;

	auth_end = s + strcspn(s, "/?#");
	if (*auth_end == '?' || *auth_end == '#') {
		snprintf(err, errlen, "redis URL: query and fragment are not supported");
		return -1;
	}
	for (p = s; p < auth_end; p++)
		if (*p == '@')
			at = p;
	hp = s;
	if (at != NULL) {
		const char *colon = memchr(s, ':', (size_t)(at - s));

		if (colon == NULL) {
			snprintf(err, errlen, "redis URL: user info needs ':password'");
			return -1;
		}
		if (pct_decode(s, (size_t)(colon - s), r->user, sizeof r->user) != 0 ||
		    pct_decode(colon + 1, (size_t)(at - colon - 1), r->password, sizeof r->password) != 0) {
			snprintf(err, errlen, "redis URL: bad user or password encoding");
			return -1;
		}
		if (r->password[0] == '\0') {
			snprintf(err, errlen, "redis URL: empty password");
			return -1;
		}
		hp = at + 1;
	}
	if (*hp == '[') {
		const char *rb = memchr(hp, ']', (size_t)(auth_end - hp));

		if (rb == NULL) {
			snprintf(err, errlen, "redis URL: unterminated '['");
			return -1;
		}
		hlen = (size_t)(rb - hp - 1);
		for (p = hp + 1; p < rb; p++) {
			if (!(isxdigit((unsigned char)*p) || *p == ':' || *p == '.')) {
				snprintf(err, errlen, "redis URL: bad IPv6 address");
				return -1;
			}
		}
		if (hlen == 0 || hlen >= sizeof r->host) {
			snprintf(err, errlen, "redis URL: bad host");
			return -1;
		}
		memcpy(r->host, hp + 1, hlen);
		r->host[hlen] = '\0';
		hp_end = rb + 1;
		if (hp_end < auth_end) {
			if (*hp_end != ':') {
				snprintf(err, errlen, "redis URL: junk after ']'");
				return -1;
			}
			port_s = hp_end + 1;
		}
	} else {
		const char *colon = memchr(hp, ':', (size_t)(auth_end - hp));

		hp_end = colon != NULL ? colon : auth_end;
		hlen = (size_t)(hp_end - hp);
		if (hlen == 0 || hlen >= sizeof r->host) {
			snprintf(err, errlen, "redis URL: missing or too long host");
			return -1;
		}
		for (p = hp; p < hp_end; p++) {
			if (!host_char_ok((unsigned char)*p)) {
				snprintf(err, errlen, "redis URL: bad character in host");
				return -1;
			}
		}
		memcpy(r->host, hp, hlen);
		r->host[hlen] = '\0';
		if (colon != NULL)
			port_s = colon + 1;
	}
	r->port = 6379;
	if (port_s != NULL) {
		if (parse_num(port_s, (size_t)(auth_end - port_s), 1, 65535, &v) != 0) {
			snprintf(err, errlen, "redis URL: bad port");
			return -1;
		}
		r->port = (int)v;
	}
	r->db = 0;
	if (*auth_end == '/' && auth_end[1] != '\0') {
		if (parse_num(auth_end + 1, strlen(auth_end + 1), 0, R_DB_MAX, &v) != 0) {
			snprintf(err, errlen, "redis URL: bad database number");
			return -1;
		}
		r->db = v;
	}
	return 0;
}

static int parse_unix_url(cg_redis *r, const char *s, char *err, size_t errlen)
{
	size_t plen = strcspn(s, "?#");
	const char *q = s + plen;
	long v;

	if (s[0] != '/') {
		snprintf(err, errlen, "redis URL: unix socket path must be absolute (unix:///path)");
		return -1;
	}
	if (plen >= sizeof r->path) {
		snprintf(err, errlen, "redis URL: unix socket path too long");
		return -1;
	}
	memcpy(r->path, s, plen);
	r->path[plen] = '\0';
	r->db = 0;
	if (*q == '#') {
		snprintf(err, errlen, "redis URL: fragment not supported");
		return -1;
	}
	if (*q == '?') {
		if (strncmp(q + 1, "db=", 3) != 0 ||
		    parse_num(q + 4, strlen(q + 4), 0, R_DB_MAX, &v) != 0) {
			snprintf(err, errlen, "redis URL: only ?db=N is understood after a socket path");
			return -1;
		}
		r->db = v;
	}
	return 0;
}

static int parse_url(cg_redis *r, const char *url, char *err, size_t errlen)
{
	if (url == NULL || url[0] == '\0') {
		snprintf(err, errlen, "empty redis URL");
		return -1;
	}
	if (strncmp(url, "redis://", 8) == 0) {
		r->is_unix = 0;
		return parse_tcp_url(r, url + 8, err, errlen);
	}
	if (strncmp(url, "unix://", 7) == 0) {
		r->is_unix = 1;
		return parse_unix_url(r, url + 7, err, errlen);
	}
	snprintf(err, errlen, "redis URL must start with redis:// or unix://");
	return -1;
}

/* ---- connection ---- */

static void r_drop(cg_redis *r)
{
	if (r->ctx != NULL) {
		redisFree(r->ctx);
		r->ctx = NULL;
	}
}

static struct timeval ms_tv(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

static int r_send_all(int fd, const char *buf, size_t len, size_t *sent);

/* Runs a setup command (AUTH, SELECT) on a fresh context, through the same
 * SIGPIPE-free send as every other command. */
static int r_setup_cmd(cg_redis *r, const char *what, int argc, const char **argv)
{
	redisReply *rep = NULL;
	char *cmd = NULL;
	void *aux = NULL;
	size_t sent;
	int len, rc = -1;

	len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
	if (len < 0 || cmd == NULL) {
		r_set_err(r, "%s: out of memory", what);
		goto out;
	}
	if (r_send_all(r->ctx->fd, cmd, (size_t)len, &sent) != 0) {
		r_set_err(r, "%s: send: %s", what, strerror(errno));
		goto out;
	}
	if (redisGetReply(r->ctx, &aux) != REDIS_OK || aux == NULL) {
		r_set_err(r, "%s: %s", what, r->ctx->errstr[0] ? r->ctx->errstr : "no reply");
		goto out;
	}
	rep = aux;
	if (rep->type == REDIS_REPLY_ERROR) {
		r_set_err(r, "%s: %s", what, rep->str);
		goto out;
	}
	rc = 0;
out:
	if (rep != NULL)
		freeReplyObject(rep);
	if (cmd != NULL)
		redisFreeCommand(cmd);
	return rc;
}

static void r_where(const cg_redis *r, char *buf, size_t len)
{
	if (r->is_unix)
		snprintf(buf, len, "%s", r->path);
	else
		snprintf(buf, len, "%s:%d", r->host, r->port);
}

/* Connects, authenticates and selects the database. 0 or CG_REDIS_ECONN. */
static int r_connect(cg_redis *r)
{
	struct timeval ctv = ms_tv(r->timeout_ms > 0 ? r->timeout_ms : R_CONNECT_DEFAULT_MS);
	char where[R_HOST_MAX + 16];
	char dbs[24];
	int rc = CG_REDIS_ECONN;

	r_drop(r);
	r_where(r, where, sizeof where);
	if (r->is_unix)
		r->ctx = redisConnectUnixWithTimeout(r->path, ctv);
	else
		r->ctx = redisConnectWithTimeout(r->host, r->port, ctv);
	if (r->ctx == NULL) {
		r_set_err(r, "out of memory");
		goto out;
	}
	if (r->ctx->err) {
		r_set_err(r, "connect to %s: %s", where, r->ctx->errstr);
		goto out;
	}
	/* SO_RCVTIMEO/SO_SNDTIMEO; zero means no bound (blocking XREAD). */
	if (redisSetTimeout(r->ctx, ms_tv(r->timeout_ms)) != REDIS_OK) {
		r_set_err(r, "set timeout on %s: %s", where, r->ctx->errstr);
		goto out;
	}
	if (r->password[0] != '\0') {
		const char *argv[3];
		int argc = 0;

		argv[argc++] = "AUTH";
		if (r->user[0] != '\0')
			argv[argc++] = r->user;
		argv[argc++] = r->password;
		if (r_setup_cmd(r, "AUTH", argc, argv) != 0)
			goto out;
	}
	if (r->db != 0) {
		const char *argv[2];

		snprintf(dbs, sizeof dbs, "%ld", r->db);
		argv[0] = "SELECT";
		argv[1] = dbs;
		if (r_setup_cmd(r, "SELECT", 2, argv) != 0)
			goto out;
	}
	rc = CG_REDIS_OK;
out:
	if (rc != CG_REDIS_OK) {
		r_drop(r);
		if (!r->down)
			cg_log_warn("redis: %s", r->errmsg);
		r->down = 1;
	} else if (r->down) {
		cg_log_info("redis: connected to %s again", where);
		r->down = 0;
	}
	return rc;
}

/* In the synchronous protocol an idle connection has nothing to read: data
 * or EOF there means the server closed it (timeout, CLIENT KILL, restart). */
static int r_idle_ok(const redisContext *c)
{
	struct pollfd pfd;
	ssize_t n;
	char ch;

	if (c == NULL || c->err || c->fd < 0)
		return 0;
	pfd.fd = c->fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) <= 0)
		return 1;
	n = recv(c->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 1;
	return 0;
}

/* Writes the whole command; *sent counts bytes handed to the kernel.
 * MSG_NOSIGNAL: a closed peer gives EPIPE, not SIGPIPE. */
static int r_send_all(int fd, const char *buf, size_t len, size_t *sent)
{
	*sent = 0;
	while (*sent < len) {
		ssize_t n = send(fd, buf + *sent, len - *sent, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		*sent += (size_t)n;
	}
	return 0;
}

/* Sends a formatted command and reads its reply. A command is re-sent only
 * when not one byte of it reached the socket; after that, an I/O error drops
 * the connection and answers CG_REDIS_ECONN (it may have run). */
static int r_run(cg_redis *r, redisReply **reply, const char *cmd, size_t len)
{
	redisReply *rep = NULL;
	void *aux = NULL;
	int attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		size_t sent = 0;

		if (!r_idle_ok(r->ctx) && r_connect(r) != CG_REDIS_OK)
			return CG_REDIS_ECONN;
		if (r_send_all(r->ctx->fd, cmd, len, &sent) == 0)
			break;
		r_set_err(r, "send: %s", strerror(errno));
		r_drop(r);
		if (sent != 0 || attempt == 1) {
			cg_log_warn("redis: %s", r->errmsg);
			return CG_REDIS_ECONN;
		}
	}
	if (redisGetReply(r->ctx, &aux) != REDIS_OK || aux == NULL) {
		r_set_err(r, "reply: %s", r->ctx->errstr[0] ? r->ctx->errstr : "no reply");
		cg_log_warn("redis: %s", r->errmsg);
		r_drop(r);
		return CG_REDIS_ECONN;
	}
	rep = aux;
	if (rep->type == REDIS_REPLY_ERROR) {
		r_set_err(r, "%.*s", (int)(rep->len < 200 ? rep->len : 200), rep->str);
		cg_log_debug("redis: error reply: %s", r->errmsg);
		freeReplyObject(rep);
		return CG_REDIS_EREPLY;
	}
	if (reply != NULL)
		*reply = rep;
	else
		freeReplyObject(rep);
	return CG_REDIS_OK;
}

cg_redis *cg_redis_open(const char *url, int timeout_ms, char *err, size_t errlen)
{
	cg_redis *r = calloc(1, sizeof *r);

	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (parse_url(r, url, err, errlen) != 0) {
		free(r);
		return NULL;
	}
	r->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
	/* Down is not fatal: commands answer ECONN and retry the connect. */
	(void)r_connect(r);
	return r;
}

void cg_redis_close(cg_redis *r)
{
	if (r == NULL)
		return;
	r_drop(r);
	/* The password does not outlive the object in freed memory. */
	memset(r->password, 0, sizeof r->password);
	free(r);
}

int cg_redis_cmd(cg_redis *r, redisReply **reply, int argc, const char **argv, const size_t *lens)
{
	char *cmd = NULL;
	int len, rc;

	if (reply != NULL)
		*reply = NULL;
	if (r == NULL)
		return CG_REDIS_ECONN;
	if (argc <= 0 || argv == NULL) {
		r_set_err(r, "empty command");
		return CG_REDIS_EREPLY;
	}
	len = redisFormatCommandArgv(&cmd, argc, argv, lens);
	if (len < 0 || cmd == NULL) {
		r_set_err(r, "out of memory formatting a command");
		return CG_REDIS_ECONN;
	}
	rc = r_run(r, reply, cmd, (size_t)len);
	redisFreeCommand(cmd);
	return rc;
}

int cg_redis_cmdf(cg_redis *r, redisReply **reply, const char *fmt, ...)
{
	char *cmd = NULL;
	va_list ap;
	int len, rc;

	if (reply != NULL)
		*reply = NULL;
	if (r == NULL)
		return CG_REDIS_ECONN;
	va_start(ap, fmt);
	len = redisvFormatCommand(&cmd, fmt, ap);
	va_end(ap);
	if (len < 0 || cmd == NULL) {
		r_set_err(r, "cannot format command");
		return CG_REDIS_EREPLY;
	}
	rc = r_run(r, reply, cmd, (size_t)len);
	redisFreeCommand(cmd);
	return rc;
}

int cg_redis_ping(cg_redis *r)
{
	redisReply *rep = NULL;
	const char *argv[] = { "PING" };
	int rc;

	rc = cg_redis_cmd(r, &rep, 1, argv, NULL);
	if (rc != CG_REDIS_OK)
		return rc;
	if (rep->type != REDIS_REPLY_STATUS || strcmp(rep->str, "PONG") != 0) {
		r_set_err(r, "unexpected PING reply");
		rc = CG_REDIS_EREPLY;
	}
	freeReplyObject(rep);
	return rc;
}

int cg_redis_get(cg_redis *r, const char *key, char **out, size_t *outlen)
{
	redisReply *rep = NULL;
	const char *argv[] = { "GET", key };
	int rc;

	*out = NULL;
	if (outlen != NULL)
		*outlen = 0;
	rc = cg_redis_cmd(r, &rep, 2, argv, NULL);
	if (rc != CG_REDIS_OK)
		return rc;
	if (rep->type == REDIS_REPLY_NIL) {
		rc = CG_REDIS_ENIL;
		goto out;
	}
	if (rep->type != REDIS_REPLY_STRING) {
		r_set_err(r, "GET: unexpected reply type %d", rep->type);
		rc = CG_REDIS_EREPLY;
		goto out;
	}
	*out = malloc((size_t)rep->len + 1);
	if (*out == NULL) {
		r_set_err(r, "out of memory");
		rc = CG_REDIS_ECONN;
		goto out;
	}
	memcpy(*out, rep->str, (size_t)rep->len);
	(*out)[rep->len] = '\0';
	if (outlen != NULL)
		*outlen = (size_t)rep->len;
out:
	freeReplyObject(rep);
	return rc;
}

int cg_redis_setex(cg_redis *r, const char *key, const char *val, size_t len, long ttl)
{
	const char *argv[5];
	size_t lens[5];
	char ttls[24];
	int argc = 3;

	argv[0] = "SET";
	lens[0] = 3;
	argv[1] = key;
	lens[1] = strlen(key);
	argv[2] = val;
	lens[2] = len;
	if (ttl > 0) {
		snprintf(ttls, sizeof ttls, "%ld", ttl);
		argv[3] = "EX";
		lens[3] = 2;
		argv[4] = ttls;
		lens[4] = strlen(ttls);
		argc = 5;
	}
	return cg_redis_cmd(r, NULL, argc, argv, lens);
}

int cg_redis_del(cg_redis *r, const char *key)
{
	const char *argv[] = { "DEL", key };

	return cg_redis_cmd(r, NULL, 2, argv, NULL);
}

int cg_redis_incrby(cg_redis *r, const char *key, long long by, long long *out)
{
	redisReply *rep = NULL;
	char bys[32];
	const char *argv[3];
	int rc;

	snprintf(bys, sizeof bys, "%lld", by);
	argv[0] = "INCRBY";
	argv[1] = key;
	argv[2] = bys;
	rc = cg_redis_cmd(r, &rep, 3, argv, NULL);
	if (rc != CG_REDIS_OK)
		return rc;
	if (rep->type != REDIS_REPLY_INTEGER) {
		r_set_err(r, "INCRBY: unexpected reply type %d", rep->type);
		rc = CG_REDIS_EREPLY;
	} else if (out != NULL) {
		*out = rep->integer;
	}
	freeReplyObject(rep);
	return rc;
}

int cg_redis_xadd(cg_redis *r, const char *stream, long maxlen, int nfields,
		  const char *const *fields, const char *const *values, char *id_out, size_t idlen)
{
	const char **argv = NULL;
	redisReply *rep = NULL;
	char maxs[24];
	int argc = 0, i, rc;

	if (id_out != NULL && idlen > 0)
		id_out[0] = '\0';
	if (r == NULL)
		return CG_REDIS_ECONN;
	if (nfields <= 0 || nfields > R_XADD_MAX_FIELDS) {
		r_set_err(r, "XADD: field count %d out of range", nfields);
		return CG_REDIS_EREPLY;
	}
	argv = calloc((size_t)(6 + 2 * nfields), sizeof *argv);
	if (argv == NULL) {
		r_set_err(r, "out of memory");
		return CG_REDIS_ECONN;
	}
	argv[argc++] = "XADD";
	argv[argc++] = stream;
	if (maxlen > 0) {
		snprintf(maxs, sizeof maxs, "%ld", maxlen);
		argv[argc++] = "MAXLEN";
		argv[argc++] = "~";
		argv[argc++] = maxs;
	}
	argv[argc++] = "*";
	for (i = 0; i < nfields; i++) {
		argv[argc++] = fields[i];
		argv[argc++] = values[i];
	}
	rc = cg_redis_cmd(r, &rep, argc, argv, NULL);
	if (rc != CG_REDIS_OK)
		goto out;
	if (rep->type != REDIS_REPLY_STRING) {
		r_set_err(r, "XADD: unexpected reply type %d", rep->type);
		rc = CG_REDIS_EREPLY;
		goto out;
	}
	if (id_out != NULL) {
		if ((size_t)rep->len >= idlen) {
			/* The entry was added; the caller's buffer is a bug. */
			r_set_err(r, "XADD: id buffer too small");
			rc = CG_REDIS_EREPLY;
			goto out;
		}
		memcpy(id_out, rep->str, (size_t)rep->len);
		id_out[rep->len] = '\0';
	}
out:
	if (rep != NULL)
		freeReplyObject(rep);
	free(argv);
	return rc;
}

const char *cg_redis_errmsg(const cg_redis *r)
{
	return r != NULL ? r->errmsg : "";
}

const char *cg_redis_strerror(int code)
{
	switch (code) {
	case CG_REDIS_OK:
		return "ok";
	case CG_REDIS_ECONN:
		return "connection";
	case CG_REDIS_EREPLY:
		return "error reply";
	case CG_REDIS_ENIL:
		return "nil";
	case CG_REDIS_EURL:
		return "bad URL";
	default:
		return "unknown";
	}
}

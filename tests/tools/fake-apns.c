/* fake-apns: a local stand-in for Apple's APNs provider API (HTTP/2, token auth) for tests. */

/*
 * Usage
 *   fake-apns --port N --team-id TEAMID --key-id KEYID --auth-key PUB.pem
 *             --bundle-id BUNDLE --log FILE
 *             (--cert CERT.pem --key KEY.pem | --h2c)
 *             [--script FILE] [--port-file FILE]
 *
 *   Listens on 127.0.0.1:N only (--port 0 picks a free port).  Once listening
 *   it writes the port number to --port-file (via a temporary name and
 *   rename(), so a reader never sees a partial file) and prints
 *   "fake-apns listening on 127.0.0.1:PORT" on stdout.  SIGTERM or SIGINT
 *   ends it with status 0.  TLS needs ALPN "h2"; --h2c speaks cleartext
 *   HTTP/2 with prior knowledge instead (note: libcurl 7.88 cannot reuse a
 *   prior-knowledge connection, curl/curl#10634, so tests that need
 *   connection reuse use TLS).  --auth-key is the P-256 public key of the
 *   provider's .p8 key (the .p8 itself is accepted as well).
 *
 *   Every request is checked the way APNs does (PUSH.md A1-A8), in this
 *   order; the first failure is answered with its status and JSON body
 *   {"reason":"..."}:
 *     :method POST (405 MethodNotAllowed); :path /3/device/<hex token>
 *     (404 BadPath, 400 MissingDeviceToken, 400 BadDeviceToken); a repeated
 *     header (400 DuplicateHeaders); authorization "bearer <ES256 JWT>" with
 *     kid, iss, integer iat at most 300 s ahead (403 MissingProviderToken,
 *     403 InvalidProviderToken, 403 ExpiredProviderToken after 3600 s, 429
 *     TooManyProviderTokenUpdates for a different valid token within 20
 *     minutes of the previous one on the same connection); apns-push-type
 *     (400 InvalidPushType); apns-topic = bundle id + push-type suffix, none
 *     for alert, background and mdm (400 MissingTopic, 400 TopicDisallowed);
 *     apns-id (400 BadMessageId); apns-expiration (400 BadExpirationDate);
 *     apns-priority 1/5/10, background not 10 nor absent (400 BadPriority);
 *     apns-collapse-id <= 64 bytes (400 BadCollapseId); body (400
 *     PayloadEmpty, 413 PayloadTooLarge over 4096 bytes or 5120 for voip;
 *     400 BadPayload, our own reason, unless a JSON object with an "aps"
 *     object, background: content-available 1 and no alert/badge/sound,
 *     liveactivity: event start|update|end, integer timestamp, a
 *     content-state object, no content-available, integer stale-date and
 *     dismissal-date when present, and for start an alert object, a
 *     non-empty attributes-type and an attributes object -- which only
 *     start may carry); liveactivity priority 5 or 10 (400 BadPriority).
 *   A request that passes gets the scripted outcome for its device token, if
 *   any, else 200 with an apns-id header (echoed or generated) and no body.
 *   Every answer carries apns-id.  SETTINGS_MAX_CONCURRENT_STREAMS is 1 until
 *   the connection has carried a request with a valid JWT, then 500.
 *   Over MAX_HEADERS fields or MAX_HEADER_BYTES the stream is reset; a body
 *   over MAX_BODY_BYTES is answered 413 at once and the rest discarded.
 *
 * Script (--script FILE, re-read when it changes; tests may edit it live)
 *   # comment
 *   <device_token> <status> <reason> [times] [ts=MS]
 *   The first line for a token that still has uses left applies to the next
 *   `times` requests for that token (default: all of them); when used up the
 *   next line for that token applies, or success.  Rewriting the file resets
 *   the counts.  Status 410 adds "timestamp" (now, in milliseconds, plus
 *   MS when ts=MS is given, e.g. ts=-60000: APNs saw the token die a minute
 *   ago).  Reason
 *   GOAWAY (status ignored) sends GOAWAY (last-stream-id below that stream,
 *   NO_ERROR, opaque data {"reason":"Shutdown"}) and closes the connection
 *   without answering that stream or processing later ones.  libcurl may
 *   retry such streams on a new connection by itself.
 *
 * Log (--log FILE, appended, one JSON object per line per processed request)
 *   {"time":1700000000.123456,"conn":1,"stream":1,"method":"POST",
 *    "path":"/3/device/ab12","device_token":"ab12",
 *    "headers":{"apns-topic":"...","authorization":"bearer ..."},
 *    "jwt":{"header":{...},"claims":{...}},"body":{...}|"raw"|null,
 *    "body_bytes":123,"status":200,"apns_id":"..."}
 *   "conn" counts connections from 1.  "reason" is present unless the status
 *   is 200.  A repeated header is logged as an array of its values.  "jwt" is
 *   present when header and claims decode, whatever the verdict.  "body" is
 *   the parsed JSON, else the raw text, or null when over MAX_BODY_BYTES;
 *   "body_bytes" counts the bytes received when the answer was made.  A
 *   scripted GOAWAY is logged with "status":0,"reason":"GOAWAY".
 */
#include "config.h"

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <nghttp2/nghttp2.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "fake_common.h"

/* Caps. */
#define MAX_CONNS 256               /* simultaneous connections */
#define MAX_STREAMS_PER_CONN 1024   /* tracked streams per connection */
#define MAX_HEADERS 64              /* header fields per request */
#define MAX_HEADER_BYTES 16384      /* names + values per request */
#define MAX_BODY_BYTES 65536        /* request body buffered per stream */
#define OUTBUF_CAP 65536            /* bytes queued towards one socket */
#define READ_CHUNK 16384            /* one TLS record */
#define READ_ROUNDS 64              /* reads per connection per poll round */
#define MAX_JSON_DEPTH 32
#define MAX_SCRIPT_BYTES (1024 * 1024)
#define MAX_SCRIPT_LINES 4096
#define SCRIPT_REASON_MAX 128
#define LINGER_SECONDS 2            /* wait for the peer's FIN after GOAWAY */

/* APNs rules. */
#define APNS_PAYLOAD_MAX 4096
#define APNS_VOIP_PAYLOAD_MAX 5120
#define APNS_COLLAPSE_ID_MAX 64
#define JWT_MAX_AGE 3600            /* seconds: older -> ExpiredProviderToken */
#define JWT_MAX_SKEW 300            /* seconds an iat may lie in the future */
#define JWT_MIN_REFRESH 1200        /* seconds between token changes per connection */
#define STREAMS_BEFORE_AUTH 1
#define STREAMS_AFTER_AUTH 500

enum conn_state { CONN_HANDSHAKE, CONN_H2, CONN_LINGER };

struct header {
	char *name;
	char *value;
};

struct conn;

struct stream {
	struct stream *prev, *next;
	struct conn *conn;
	int32_t id;
	char *method;
	char *path;
	struct header hdrs[MAX_HEADERS];
	size_t nhdrs;
	size_t hdr_bytes;
	unsigned char *body;        /* up to MAX_BODY_BYTES */
	size_t body_len;            /* bytes buffered */
	size_t body_total;          /* bytes received */
	int answered;
	char *resp;                 /* response body, freed with the stream */
	size_t resp_len, resp_off;
};

struct script_entry {
	char *token;
	int status;
	char reason[SCRIPT_REASON_MAX];
	long remaining;             /* -1: every request */
	long long ts_offset_ms;     /* 410 "timestamp" = now + this */
};

struct script {
	const char *path;           /* NULL: no script */
	char *text;                 /* content last parsed */
	size_t text_len;
	struct stat st;
	int loaded;
	struct script_entry *v;
	size_t n;
};

struct server;

struct conn {
	struct server *srv;
	int fd;
	unsigned long id;
	enum conn_state state;
	int dead;
	SSL *ssl;                   /* NULL with --h2c */
	int ssl_fatal;
	int hs_want_write;
	int read_wants_write;
	int write_wants_read;
	nghttp2_session *h2;
	unsigned char *outbuf;      /* OUTBUF_CAP bytes */
	size_t outlen;
	int32_t goaway_stream;      /* stream that got the scripted GOAWAY, 0: none */
	int goaway_sent;
	int streams_raised;         /* sent SETTINGS with STREAMS_AFTER_AUTH */
	struct timespec linger_until;
	struct stream *streams;
	size_t nstreams;
	char *token;                /* last accepted provider token */
	time_t token_first_used;
};

struct server {
	const char *team_id;
	const char *key_id;
	const char *bundle_id;
	EVP_PKEY *auth_key;
	SSL_CTX *tls;               /* NULL with --h2c */
	int listen_fd;
	int log_fd;
	struct script script;
	nghttp2_session_callbacks *cbs;
	struct conn *conns[MAX_CONNS];
	size_t nconns;
	unsigned long next_conn_id;
};

struct verdict {
	int status;                 /* 0: GOAWAY, no answer */
	char reason[SCRIPT_REASON_MAX];
	int add_timestamp;
	long long ts_offset_ms;     /* added to the 410 "timestamp" */
	char apns_id[37];
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* ---------------------------------------------------------------- helpers */

static char *dup_mem(const void *p, size_t len)
{
	char *s = malloc(len + 1);

	if (s == NULL)
		return NULL;
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

static int is_hex_string(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		if (!isxdigit((unsigned char)*s))
			return 0;
	}
	return 1;
}

static int is_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return 0;
	}
	return 1;
}

/* Lowercase UUID 8-4-4-4-12. */
static int is_lower_uuid(const char *s)
{
	size_t i;

	if (strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

static void make_uuid_v4(char out[37])
{
	unsigned char b[16];
	size_t i;

	if (RAND_bytes(b, sizeof b) != 1) {
		for (i = 0; i < sizeof b; i++)
			b[i] = (unsigned char)random();
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
	         b[11], b[12], b[13], b[14], b[15]);
}

static int b64url_value(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	if (ch == '_')
		return 63;
	return -1;
}

/* Strict unpadded base64url (JWS compact form). Output is NUL-terminated. */
static int b64url_decode(const char *in, size_t inlen, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	uint32_t acc = 0;
	int bits = 0;
	size_t i, o = 0;

	*out = NULL;
	*outlen = 0;
	if (inlen % 4 == 1)
		return -1;
	buf = malloc(inlen / 4 * 3 + 3);
	if (buf == NULL)
		return -1;
	for (i = 0; i < inlen; i++) {
		int v = b64url_value(in[i]);

		if (v < 0) {
			free(buf);
			return -1;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0) {                 /* non-zero padding bits: not canonical */
		free(buf);
		return -1;
	}
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return 0;
}

/* Strict JSON; only trailing whitespace may follow. Returns NULL when not JSON. */
static json_object *parse_json(const char *buf, size_t len)
{
	json_tokener *tok;
	json_object *obj = NULL;
	size_t end;

	if (len == 0 || len > INT32_MAX)
		return NULL;
	tok = json_tokener_new_ex(MAX_JSON_DEPTH);
	if (tok == NULL)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success)
		goto fail;
	for (end = json_tokener_get_parse_end(tok); end < len; end++) {
		if (!isspace((unsigned char)buf[end]))
			goto fail;
	}
	json_tokener_free(tok);
	return obj;
fail:
	json_object_put(obj);
	json_tokener_free(tok);
	return NULL;
}

static json_object *get_member(json_object *obj, const char *key)
{
	json_object *v = NULL;

	if (!json_object_is_type(obj, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v;
}

static int member_is_string(json_object *obj, const char *key, const char *want)
{
	json_object *v = get_member(obj, key);

	return json_object_is_type(v, json_type_string) &&
	       strcmp(json_object_get_string(v), want) == 0;
}

static void now_timespec(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

/* ------------------------------------------------------------------- JWT */

/* ES256: raw R||S (64 bytes) -> DER, verified over `msg` with SHA-256. */
static int verify_es256(EVP_PKEY *key, const char *msg, size_t msglen,
                        const unsigned char *sig, size_t siglen)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *der = NULL;
	EVP_MD_CTX *md = NULL;
	int derlen;
	int rc = -1;

	if (siglen != 64)
		goto out;
	es = ECDSA_SIG_new();
	r = BN_bin2bn(sig, 32, NULL);
	s = BN_bin2bn(sig + 32, 32, NULL);
	if (es == NULL || r == NULL || s == NULL)
		goto out;
	if (ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = NULL;                       /* owned by es now */
	s = NULL;
	derlen = i2d_ECDSA_SIG(es, &der);
	if (derlen <= 0)
		goto out;
	md = EVP_MD_CTX_new();
	if (md == NULL)
		goto out;
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1)
		goto out;
	if (EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)msg, msglen) == 1)
		rc = 0;
out:
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	BN_free(r);
	BN_free(s);
	ERR_clear_error();
	return rc;
}

struct jwt {
	json_object *header;
	json_object *claims;
	unsigned char *sig;
	size_t siglen;
	size_t signing_len;         /* length of "header.claims" */
};

static void jwt_clear(struct jwt *j)
{
	json_object_put(j->header);
	json_object_put(j->claims);
	free(j->sig);
	memset(j, 0, sizeof *j);
}

static json_object *decode_json_part(const char *p, size_t len)
{
	unsigned char *raw = NULL;
	size_t rawlen;
	json_object *obj;

	if (b64url_decode(p, len, &raw, &rawlen) < 0)
		return NULL;
	obj = parse_json((const char *)raw, rawlen);
	free(raw);
	if (obj != NULL && !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		obj = NULL;
	}
	return obj;
}

/* Split and decode; header and claims may decode even when the signature does not. */
static int jwt_decode(const char *tok, struct jwt *j)
{
	const char *d1, *d2;

	memset(j, 0, sizeof *j);
	d1 = strchr(tok, '.');
	if (d1 == NULL)
		return -1;
	d2 = strchr(d1 + 1, '.');
	if (d2 == NULL || strchr(d2 + 1, '.') != NULL)
		return -1;
	j->header = decode_json_part(tok, (size_t)(d1 - tok));
	j->claims = decode_json_part(d1 + 1, (size_t)(d2 - d1 - 1));
	j->signing_len = (size_t)(d2 - tok);
	if (j->header == NULL || j->claims == NULL)
		return -1;
	if (b64url_decode(d2 + 1, strlen(d2 + 1), &j->sig, &j->siglen) < 0)
		return -1;
	return 0;
}

/* ---------------------------------------------------------------- script */

static void script_free_entries(struct script *sc)
{
	size_t i;

	for (i = 0; i < sc->n; i++)
		free(sc->v[i].token);
	free(sc->v);
	sc->v = NULL;
	sc->n = 0;
}

/* Parse `text` into a fresh table; bad lines are reported and skipped. */
static int script_parse(struct script *sc, char *text)
{
	struct script_entry *v;
	size_t n = 0, lineno = 0;
	char *line, *next;

	v = calloc(MAX_SCRIPT_LINES, sizeof *v);
	if (v == NULL)
		return -1;
	for (line = text; line != NULL; line = next) {
		char *f[6], *fsave = NULL, *hash, *end;
		size_t nf = 0, k;
		long status, times = -1;
		long long ts_off = 0;
		int bad = 0;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		lineno++;
		hash = strchr(line, '#');
		if (hash != NULL)
			*hash = '\0';
		/* Up to 6 fields: a sixth one means the line is malformed. */
		f[0] = strtok_r(line, " \t\r", &fsave);
		while (nf < 6 && f[nf] != NULL) {
			nf++;
			if (nf < 6)
				f[nf] = strtok_r(NULL, " \t\r", &fsave);
		}
		if (nf == 0)
			continue;
		if (nf < 3 || nf > 5) {
			fake_warn("%s:%zu: want <token> <status> <reason> [times] [ts=MS]", sc->path, lineno);
			continue;
		}
		errno = 0;
		status = strtol(f[1], &end, 10);
		if (errno != 0 || *end != '\0' || status < 100 || status > 599) {
			fake_warn("%s:%zu: bad status '%s'", sc->path, lineno, f[1]);
			continue;
		}
		if (strlen(f[2]) >= SCRIPT_REASON_MAX) {
			fake_warn("%s:%zu: reason too long", sc->path, lineno);
			continue;
		}
		for (k = 3; k < nf && !bad; k++) {
			errno = 0;
			if (strncmp(f[k], "ts=", 3) == 0) {
				ts_off = strtoll(f[k] + 3, &end, 10);
				bad = errno != 0 || *end != '\0' || end == f[k] + 3;
			} else if (times == -1) {
				times = strtol(f[k], &end, 10);
				bad = errno != 0 || *end != '\0' || times < 1;
			} else {
				bad = 1;
			}
			if (bad)
				fake_warn("%s:%zu: bad field '%s'", sc->path, lineno, f[k]);
		}
		if (bad)
			continue;
		if (n == MAX_SCRIPT_LINES) {
			fake_warn("%s: more than %d outcomes; rest ignored", sc->path, MAX_SCRIPT_LINES);
			break;
		}
		v[n].token = strdup(f[0]);
		if (v[n].token == NULL)
			break;
		v[n].status = (int)status;
		snprintf(v[n].reason, sizeof v[n].reason, "%s", f[2]);
		v[n].remaining = times;
		v[n].ts_offset_ms = ts_off;
		n++;
	}
	script_free_entries(sc);
	sc->v = v;
	sc->n = n;
	return 0;
}

static int same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Re-read the script when its mtime (or inode, size or content) changed. */
static void script_refresh(struct script *sc)
{
	struct stat st;
	char *text = NULL, *work = NULL;
	size_t len = 0;
	ssize_t r;
	int fd = -1;

	if (sc->path == NULL)
		return;
	fd = open(sc->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (sc->loaded) {
			script_free_entries(sc);
			free(sc->text);
			sc->text = NULL;
			sc->text_len = 0;
			sc->loaded = 0;
		}
		goto out;
	}
	text = malloc(MAX_SCRIPT_BYTES + 1);
	if (text == NULL)
		goto out;
	while (len < MAX_SCRIPT_BYTES) {
		r = read(fd, text + len, MAX_SCRIPT_BYTES - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	text[len] = '\0';
	if (sc->loaded && same_stat(&st, &sc->st) && len == sc->text_len &&
	    memcmp(text, sc->text, len) == 0)
		goto out;
	work = dup_mem(text, len);
	if (work == NULL || script_parse(sc, work) < 0)
		goto out;
	free(sc->text);
	sc->text = text;
	text = NULL;
	sc->text_len = len;
	sc->st = st;
	sc->loaded = 1;
out:
	free(work);
	free(text);
	if (fd >= 0)
		close(fd);
}

/* The outcome for `token`, consuming one use. Returns 1 when scripted. */
static int script_take(struct script *sc, const char *token, int *status, char *reason,
                       size_t rsize, long long *ts_offset_ms)
{
	size_t i;

	script_refresh(sc);
	for (i = 0; i < sc->n; i++) {
		struct script_entry *e = &sc->v[i];

		if (strcasecmp(e->token, token) != 0 || e->remaining == 0)
			continue;
		if (e->remaining > 0)
			e->remaining--;
		*status = e->status;
		snprintf(reason, rsize, "%s", e->reason);
		*ts_offset_ms = e->ts_offset_ms;
		return 1;
	}
	return 0;
}

static void script_free(struct script *sc)
{
	script_free_entries(sc);
	free(sc->text);
	sc->text = NULL;
}

/* --------------------------------------------------------------- streams */

static void stream_free(struct stream *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->nhdrs; i++) {
		free(s->hdrs[i].name);
		free(s->hdrs[i].value);
	}
	free(s->method);
	free(s->path);
	free(s->body);
	free(s->resp);
	free(s);
}

static void stream_unlink(struct conn *c, struct stream *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	c->nstreams--;
}

/* First value of a (non-pseudo) header, or NULL. */
static const char *stream_header(const struct stream *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->nhdrs; i++) {
		if (strcmp(s->hdrs[i].name, name) == 0)
			return s->hdrs[i].value;
	}
	return NULL;
}

static int stream_has_duplicates(const struct stream *s)
{
	size_t i, k;

	for (i = 0; i < s->nhdrs; i++) {
		for (k = i + 1; k < s->nhdrs; k++) {
			if (strcmp(s->hdrs[i].name, s->hdrs[k].name) == 0)
				return 1;
		}
	}
	return 0;
}

/* --------------------------------------------------------------- checks */

struct push_type {
	const char *name;
	const char *topic_suffix;
};

static const struct push_type push_types[] = {
	{ "alert", "" },
	{ "background", "" },
	{ "complication", ".complication" },
	{ "controls", ".push-type.controls" },
	{ "fileprovider", ".pushkit.fileprovider" },
	{ "liveactivity", ".push-type.liveactivity" },
	{ "location", ".location-query" },
	{ "mdm", "" },
	{ "pushtotalk", ".voip-ptt" },
	{ "voip", ".voip" },
	{ "widgets", ".push-type.widgets" },
};

static const struct push_type *find_push_type(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof push_types / sizeof push_types[0]; i++) {
		if (strcmp(push_types[i].name, name) == 0)
			return &push_types[i];
	}
	return NULL;
}

/* The token after "bearer " (scheme case-insensitive); "" when absent; NULL: other scheme. */
static const char *bearer_token(const char *authz)
{
	const char *tok;

	if (authz == NULL || *authz == '\0' || strcasecmp(authz, "bearer") == 0)
		return "";
	if (strncasecmp(authz, "bearer", 6) != 0 || (authz[6] != ' ' && authz[6] != '\t'))
		return NULL;
	tok = authz + 6;
	while (*tok == ' ' || *tok == '\t')
		tok++;
	return tok;
}

/* {"header":{...},"claims":{...}} for the log when both decode, else NULL. */
static json_object *jwt_for_log(const char *authz)
{
	const char *tok = bearer_token(authz);
	json_object *obj = NULL;
	struct jwt j;

	if (tok == NULL || *tok == '\0')
		return NULL;
	(void)jwt_decode(tok, &j);
	if (j.header != NULL && j.claims != NULL) {
		obj = json_object_new_object();
		if (obj != NULL) {
			json_object_object_add(obj, "header", json_object_get(j.header));
			json_object_object_add(obj, "claims", json_object_get(j.claims));
		}
	}
	jwt_clear(&j);
	return obj;
}

/*
 * Provider token checks (PUSH.md A2). Returns NULL when accepted, else the
 * reason with *status set.
 */
static const char *check_auth(struct conn *c, const char *authz, time_t now, int *status)
{
	struct server *srv = c->srv;
	struct jwt j;
	const char *tok, *reason = "InvalidProviderToken";
	json_object *iat;
	int64_t iat_v;
	int cached;

	*status = 403;
	tok = bearer_token(authz);
	if (tok != NULL && *tok == '\0')
		return "MissingProviderToken";
	if (tok == NULL || strpbrk(tok, " \t") != NULL)
		return "InvalidProviderToken";
	if (jwt_decode(tok, &j) < 0)
		goto fail;
	if (!member_is_string(j.header, "alg", "ES256") ||
	    !member_is_string(j.header, "kid", srv->key_id) ||
	    !member_is_string(j.claims, "iss", srv->team_id))
		goto fail;
	iat = get_member(j.claims, "iat");
	if (!json_object_is_type(iat, json_type_int))
		goto fail;
	iat_v = json_object_get_int64(iat);
	if (iat_v <= 0 || iat_v > (int64_t)now + JWT_MAX_SKEW)
		goto fail;
	cached = c->token != NULL && strcmp(c->token, tok) == 0;
	if (!cached && verify_es256(srv->auth_key, tok, j.signing_len, j.sig, j.siglen) < 0)
		goto fail;
	if ((int64_t)now - iat_v > JWT_MAX_AGE) {
		reason = "ExpiredProviderToken";
		goto fail;
	}
	if (!cached) {
		if (c->token != NULL && now - c->token_first_used < JWT_MIN_REFRESH) {
			*status = 429;
			reason = "TooManyProviderTokenUpdates";
			goto fail;
		}
		free(c->token);
		c->token = strdup(tok);
		c->token_first_used = now;
		if (c->token == NULL) {
			*status = 500;
			reason = "InternalServerError";
			goto fail;
		}
	}
	jwt_clear(&j);
	return NULL;
fail:
	jwt_clear(&j);
	return reason;
}

static const char *check_payload(json_object *body, const char *push_type)
{
	json_object *aps = get_member(body, "aps");
	json_object *v;

	if (!json_object_is_type(body, json_type_object) || !json_object_is_type(aps, json_type_object))
		return "BadPayload";
	if (strcmp(push_type, "background") == 0) {
		v = get_member(aps, "content-available");
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) != 1)
			return "BadPayload";
		if (get_member(aps, "alert") != NULL || get_member(aps, "badge") != NULL ||
		    get_member(aps, "sound") != NULL)
			return "BadPayload";
	} else if (strcmp(push_type, "liveactivity") == 0) {
		if (!member_is_string(aps, "event", "start") && !member_is_string(aps, "event", "update") &&
		    !member_is_string(aps, "event", "end"))
			return "BadPayload";
		if (!json_object_is_type(get_member(aps, "timestamp"), json_type_int) ||
		    !json_object_is_type(get_member(aps, "content-state"), json_type_object))
			return "BadPayload";
		if (get_member(aps, "content-available") != NULL)
			return "BadPayload";
		v = get_member(aps, "stale-date");
		if (v != NULL && !json_object_is_type(v, json_type_int))
			return "BadPayload";
		v = get_member(aps, "dismissal-date");
		if (v != NULL && !json_object_is_type(v, json_type_int))
			return "BadPayload";
		if (member_is_string(aps, "event", "start")) {
			v = get_member(aps, "attributes-type");
			if (!json_object_is_type(get_member(aps, "alert"), json_type_object) ||
			    !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 ||
			    !json_object_is_type(get_member(aps, "attributes"), json_type_object))
				return "BadPayload";
		} else if (get_member(aps, "attributes-type") != NULL ||
			   get_member(aps, "attributes") != NULL) {
			return "BadPayload";
		}
	}
	return NULL;
}

/*
 * All APNs checks in order (see the comment at the top). Sets v->status and
 * v->reason for the first failure and returns -1; returns 0 when the request
 * is acceptable.
 */
static int check_request(struct conn *c, struct stream *s, json_object *body, int overflow,
                         struct verdict *v)
{
	struct server *srv = c->srv;
	const char *token, *reason, *hv, *ptype_name;
	const struct push_type *ptype;
	char topic[512];
	size_t max_payload;
	int status;
	time_t now = time(NULL);

	if (s->method == NULL || strcmp(s->method, "POST") != 0) {
		v->status = 405;
		reason = "MethodNotAllowed";
		goto fail;
	}
	if (s->path == NULL || strncmp(s->path, "/3/device/", 10) != 0) {
		v->status = 404;
		reason = "BadPath";
		goto fail;
	}
	token = s->path + 10;
	if (*token == '\0') {
		v->status = 400;
		reason = "MissingDeviceToken";
		goto fail;
	}
	if (!is_hex_string(token)) {
		v->status = 400;
		reason = "BadDeviceToken";
		goto fail;
	}
	if (stream_has_duplicates(s)) {
		v->status = 400;
		reason = "DuplicateHeaders";
		goto fail;
	}
	reason = check_auth(c, stream_header(s, "authorization"), now, &status);
	if (reason != NULL) {
		v->status = status;
		goto fail;
	}
	if (!c->streams_raised) {
		nghttp2_settings_entry iv = { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		                              STREAMS_AFTER_AUTH };

		if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, &iv, 1) == 0)
			c->streams_raised = 1;
	}
	ptype_name = stream_header(s, "apns-push-type");
	if (ptype_name == NULL) {
		ptype = find_push_type("alert");
	} else {
		ptype = find_push_type(ptype_name);
		if (ptype == NULL) {
			v->status = 400;
			reason = "InvalidPushType";
			goto fail;
		}
	}
	hv = stream_header(s, "apns-topic");
	if (hv == NULL) {
		v->status = 400;
		reason = "MissingTopic";
		goto fail;
	}
	snprintf(topic, sizeof topic, "%s%s", srv->bundle_id, ptype->topic_suffix);
	if (strcmp(hv, topic) != 0) {
		v->status = 400;
		reason = "TopicDisallowed";
		goto fail;
	}
	hv = stream_header(s, "apns-id");
	if (hv != NULL && !is_lower_uuid(hv)) {
		v->status = 400;
		reason = "BadMessageId";
		goto fail;
	}
	hv = stream_header(s, "apns-expiration");
	if (hv != NULL && !is_digits(hv)) {
		v->status = 400;
		reason = "BadExpirationDate";
		goto fail;
	}
	hv = stream_header(s, "apns-priority");
	if (hv != NULL && strcmp(hv, "1") != 0 && strcmp(hv, "5") != 0 && strcmp(hv, "10") != 0) {
		v->status = 400;
		reason = "BadPriority";
		goto fail;
	}
	if (strcmp(ptype->name, "background") == 0 && (hv == NULL || strcmp(hv, "10") == 0)) {
		v->status = 400;
		reason = "BadPriority";
		goto fail;
	}
	/* Live Activities: "5 or 10" (PUSH.md A4; 1 is unconfirmed: refused) */
	if (strcmp(ptype->name, "liveactivity") == 0 && hv != NULL && strcmp(hv, "1") == 0) {
		v->status = 400;
		reason = "BadPriority";
		goto fail;
	}
	hv = stream_header(s, "apns-collapse-id");
	if (hv != NULL && strlen(hv) > APNS_COLLAPSE_ID_MAX) {
		v->status = 400;
		reason = "BadCollapseId";
		goto fail;
	}
	if (s->body_total == 0) {
		v->status = 400;
		reason = "PayloadEmpty";
		goto fail;
	}
	max_payload = strcmp(ptype->name, "voip") == 0 ? APNS_VOIP_PAYLOAD_MAX : APNS_PAYLOAD_MAX;
	if (overflow || s->body_total > max_payload) {
		v->status = 413;
		reason = "PayloadTooLarge";
		goto fail;
	}
	reason = check_payload(body, ptype->name);
	if (reason != NULL) {
		v->status = 400;
		goto fail;
	}
	return 0;
fail:
	snprintf(v->reason, sizeof v->reason, "%s", reason);
	return -1;
}

/* ------------------------------------------------------------- log, reply */

static void log_add_headers(json_object *obj, const struct stream *s)
{
	json_object *hdrs = json_object_new_object();
	size_t i;

	if (hdrs == NULL)
		return;
	for (i = 0; i < s->nhdrs; i++) {
		json_object *old = NULL, *arr;
		json_object *val = json_object_new_string(s->hdrs[i].value);

		if (!json_object_object_get_ex(hdrs, s->hdrs[i].name, &old)) {
			json_object_object_add(hdrs, s->hdrs[i].name, val);
			continue;
		}
		if (json_object_is_type(old, json_type_array)) {
			json_object_array_add(old, val);
			continue;
		}
		arr = json_object_new_array();
		if (arr == NULL) {
			json_object_put(val);
			continue;
		}
		json_object_array_add(arr, json_object_get(old));
		json_object_array_add(arr, val);
		json_object_object_add(hdrs, s->hdrs[i].name, arr);
	}
	json_object_object_add(obj, "headers", hdrs);
}

/* Append one line to --log. */
static void log_request(struct conn *c, const struct stream *s, json_object *body, int overflow,
                        const struct verdict *v)
{
	json_object *obj = json_object_new_object();
	json_object *jwt_log = NULL;
	struct timespec ts;
	char tbuf[48];
	const char *line;
	char *out = NULL;
	size_t len;

	if (obj == NULL)
		return;
	now_timespec(&ts);
	snprintf(tbuf, sizeof tbuf, "%lld.%06ld", (long long)ts.tv_sec, ts.tv_nsec / 1000);
	json_object_object_add(obj, "time", json_object_new_double_s(strtod(tbuf, NULL), tbuf));
	json_object_object_add(obj, "conn", json_object_new_int64((int64_t)c->id));
	json_object_object_add(obj, "stream", json_object_new_int(s->id));
	json_object_object_add(obj, "method", s->method ? json_object_new_string(s->method) : NULL);
	json_object_object_add(obj, "path", s->path ? json_object_new_string(s->path) : NULL);
	json_object_object_add(obj, "device_token",
	                       s->path != NULL && strncmp(s->path, "/3/device/", 10) == 0 ?
	                       json_object_new_string(s->path + 10) : NULL);
	log_add_headers(obj, s);
	jwt_log = jwt_for_log(stream_header(s, "authorization"));
	if (jwt_log != NULL)
		json_object_object_add(obj, "jwt", jwt_log);
	if (body != NULL)
		json_object_object_add(obj, "body", json_object_get(body));
	else if (overflow)
		json_object_object_add(obj, "body", NULL);
	else
		json_object_object_add(obj, "body",
		                       json_object_new_string_len((const char *)(s->body ? s->body :
		                                                  (const unsigned char *)""),
		                                                  (int)s->body_len));
	json_object_object_add(obj, "body_bytes", json_object_new_int64((int64_t)s->body_total));
	json_object_object_add(obj, "status", json_object_new_int(v->status));
	if (v->status != 200)
		json_object_object_add(obj, "reason", json_object_new_string(v->reason));
	json_object_object_add(obj, "apns_id", json_object_new_string(v->apns_id));

	line = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
	                                      JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(line);
	out = malloc(len + 2);
	if (out != NULL) {
		memcpy(out, line, len);
		out[len] = '\n';
		if (write(c->srv->log_fd, out, len + 1) != (ssize_t)(len + 1))
			fake_warn("log write: %s", strerror(errno));
	}
	free(out);
	json_object_put(obj);
}

static ssize_t resp_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
	struct stream *s = source->ptr;
	size_t n = s->resp_len - s->resp_off;

	if (n > length)
		n = length;
	memcpy(buf, s->resp + s->resp_off, n);
	s->resp_off += n;
	if (s->resp_off == s->resp_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE }

static int respond(struct conn *c, struct stream *s, const struct verdict *v)
{
	char status[8], clen[24];
	json_object *obj = NULL;
	const char *text;
	nghttp2_data_provider prd;
	int rc = -1;

	snprintf(status, sizeof status, "%d", v->status);
	if (v->status == 200) {
		nghttp2_nv nva[] = { NV(":status", status), NV("apns-id", v->apns_id) };

		rc = nghttp2_submit_response(c->h2, s->id, nva, 2, NULL) == 0 ? 0 : -1;
		goto out;
	}
	obj = json_object_new_object();
	if (obj == NULL)
		goto out;
	json_object_object_add(obj, "reason", json_object_new_string(v->reason));
	if (v->add_timestamp) {
		struct timespec ts;

		now_timespec(&ts);
		json_object_object_add(obj, "timestamp",
		                       json_object_new_int64((int64_t)ts.tv_sec * 1000 +
		                                             ts.tv_nsec / 1000000 +
		                                             v->ts_offset_ms));
	}
	text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	s->resp_len = strlen(text);
	s->resp = dup_mem(text, s->resp_len);
	if (s->resp == NULL)
		goto out;
	snprintf(clen, sizeof clen, "%zu", s->resp_len);
	{
		nghttp2_nv nva[] = { NV(":status", status), NV("content-type", "application/json"),
		                     NV("content-length", clen), NV("apns-id", v->apns_id) };

		prd.source.ptr = s;
		prd.read_callback = resp_read_cb;
		rc = nghttp2_submit_response(c->h2, s->id, nva, 4, &prd) == 0 ? 0 : -1;
	}
out:
	json_object_put(obj);
	return rc;
}

/* Check, log and answer one request (or send the scripted GOAWAY). */
static void handle_request(struct conn *c, struct stream *s, int overflow)
{
	struct verdict v;
	json_object *body = NULL;
	const char *id;
	int status;

	s->answered = 1;
	if (c->goaway_stream != 0 && s->id > c->goaway_stream)
		return;                 /* after GOAWAY: not processed, as announced */
	memset(&v, 0, sizeof v);
	if (!overflow && s->body_len > 0)
		body = parse_json((const char *)s->body, s->body_len);
	id = stream_header(s, "apns-id");
	if (id != NULL && is_lower_uuid(id))
		snprintf(v.apns_id, sizeof v.apns_id, "%s", id);
	else
		make_uuid_v4(v.apns_id);

	if (check_request(c, s, body, overflow, &v) == 0) {
		v.status = 200;
		if (script_take(&c->srv->script, s->path + 10, &status, v.reason, sizeof v.reason,
		                &v.ts_offset_ms)) {
			if (strcmp(v.reason, "GOAWAY") == 0)
				v.status = 0;
			else
				v.status = status;
			v.add_timestamp = status == 410;
		}
	}
	log_request(c, s, body, overflow, &v);
	json_object_put(body);

	if (v.status == 0) {
		static const char opaque[] = "{\"reason\":\"Shutdown\"}";
		int32_t last = s->id > 2 ? s->id - 2 : 0;

		if (c->goaway_stream != 0)
			return;
		c->goaway_stream = s->id;
		if (nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR,
		                          (const uint8_t *)opaque, sizeof opaque - 1) != 0)
			c->dead = 1;
		return;
	}
	if (respond(c, s, &v) < 0)
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
}

/* ------------------------------------------------------- nghttp2 callbacks */

static ssize_t send_cb(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
                       void *user_data)
{
	struct conn *c = user_data;
	size_t room = OUTBUF_CAP - c->outlen;

	if (room == 0)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (length > room)
		length = room;
	memcpy(c->outbuf + c->outlen, data, length);
	c->outlen += length;
	return (ssize_t)length;
}

static int on_begin_headers_cb(nghttp2_session *session, const nghttp2_frame *frame,
                               void *user_data)
{
	struct conn *c = user_data;
	struct stream *s;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (c->nstreams >= MAX_STREAMS_PER_CONN)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	s = calloc(1, sizeof *s);
	if (s == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	s->conn = c;
	s->id = frame->hd.stream_id;
	s->next = c->streams;
	if (c->streams != NULL)
		c->streams->prev = s;
	c->streams = s;
	c->nstreams++;
	if (nghttp2_session_set_stream_user_data(session, s->id, s) != 0) {
		stream_unlink(c, s);
		stream_free(s);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_header_cb(nghttp2_session *session, const nghttp2_frame *frame,
                        const uint8_t *name, size_t namelen, const uint8_t *value,
                        size_t valuelen, uint8_t flags, void *user_data)
{
	struct stream *s;
	char **slot = NULL;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;               /* trailers are ignored */
	s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (s == NULL)
		return 0;
	s->hdr_bytes += namelen + valuelen;
	if (s->hdr_bytes > MAX_HEADER_BYTES)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (namelen > 0 && name[0] == ':') {
		if (namelen == 7 && memcmp(name, ":method", 7) == 0)
			slot = &s->method;
		else if (namelen == 5 && memcmp(name, ":path", 5) == 0)
			slot = &s->path;
		if (slot != NULL && *slot == NULL) {
			*slot = dup_mem(value, valuelen);
			if (*slot == NULL)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
		return 0;
	}
	if (s->nhdrs == MAX_HEADERS)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	s->hdrs[s->nhdrs].name = dup_mem(name, namelen);
	s->hdrs[s->nhdrs].value = dup_mem(value, valuelen);
	if (s->hdrs[s->nhdrs].name == NULL || s->hdrs[s->nhdrs].value == NULL) {
		free(s->hdrs[s->nhdrs].name);
		free(s->hdrs[s->nhdrs].value);
		s->hdrs[s->nhdrs].name = NULL;
		s->hdrs[s->nhdrs].value = NULL;
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	s->nhdrs++;
	return 0;
}

static int on_data_chunk_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                            const uint8_t *data, size_t len, void *user_data)
{
	struct conn *c = user_data;
	struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);

	if (s == NULL || s->answered)
		return 0;
	s->body_total += len;
	if (s->body_total > MAX_BODY_BYTES) {
		/*
		 * Answer now (413 unless a header check fails) and drop the rest of
		 * the body.  No RST_STREAM(NO_ERROR) after the answer (RFC 9113
		 * 8.1 allows it): curl 7.88 reports that as a stream error instead
		 * of returning the 413.
		 */
		handle_request(c, s, 1);
		return 0;
	}
	if (s->body == NULL) {
		s->body = malloc(MAX_BODY_BYTES);
		if (s->body == NULL)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	memcpy(s->body + s->body_len, data, len);
	s->body_len += len;
	return 0;
}

static int on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct conn *c = user_data;
	struct stream *s;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (s == NULL || s->answered)
		return 0;
	handle_request(c, s, 0);
	return 0;
}

static int on_frame_send_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct conn *c = user_data;

	if (frame->hd.type == NGHTTP2_GOAWAY)
		c->goaway_sent = 1;
	return 0;
}

static int on_stream_close_cb(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                              void *user_data)
{
	struct conn *c = user_data;
	struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);

	if (s == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	stream_unlink(c, s);
	stream_free(s);
	return 0;
}

static nghttp2_session_callbacks *make_callbacks(void)
{
	nghttp2_session_callbacks *cbs = NULL;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return NULL;
	nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
	return cbs;
}

/* ------------------------------------------------------------ connections */

#define IO_AGAIN (-2)

static ssize_t io_read(struct conn *c, unsigned char *buf, size_t len)
{
	ssize_t n;
	int n_ssl, err;

	if (c->ssl == NULL) {
		n = recv(c->fd, buf, len, 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return IO_AGAIN;
		return n;
	}
	c->read_wants_write = 0;
	ERR_clear_error();
	n_ssl = SSL_read(c->ssl, buf, (int)len);
	if (n_ssl > 0)
		return n_ssl;
	err = SSL_get_error(c->ssl, n_ssl);
	if (err == SSL_ERROR_WANT_READ)
		return IO_AGAIN;
	if (err == SSL_ERROR_WANT_WRITE) {
		c->read_wants_write = 1;
		return IO_AGAIN;
	}
	if (err == SSL_ERROR_ZERO_RETURN)
		return 0;
	c->ssl_fatal = 1;
	return -1;
}

static ssize_t io_write(struct conn *c, const unsigned char *buf, size_t len)
{
	ssize_t n;
	int n_ssl, err;

	if (c->ssl == NULL) {
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return IO_AGAIN;
		return n;
	}
	c->write_wants_read = 0;
	ERR_clear_error();
	n_ssl = SSL_write(c->ssl, buf, (int)len);
	if (n_ssl > 0)
		return n_ssl;
	err = SSL_get_error(c->ssl, n_ssl);
	if (err == SSL_ERROR_WANT_WRITE)
		return IO_AGAIN;
	if (err == SSL_ERROR_WANT_READ) {
		c->write_wants_read = 1;
		return IO_AGAIN;
	}
	c->ssl_fatal = 1;
	return -1;
}

/*
 * libcurl 7.88 (Debian 12) sends RST_STREAM(STREAM_CLOSED) after most
 * finished streams. nghttp2's "rapid reset" defence (1000 resets, then 33 a
 * second) would answer that with GOAWAY(INTERNAL_ERROR) after about a
 * thousand pushes on a connection, which APNs does not do: the fake allows
 * one reset per stream it may see.
 */
#define RESET_BURST 1000000
#define RESET_RATE 100000

static int conn_start_h2(struct conn *c)
{
	nghttp2_settings_entry iv = { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, STREAMS_BEFORE_AUTH };
	nghttp2_option *opt = NULL;
	int rc;

	if (nghttp2_option_new(&opt) != 0)
		return -1;
	nghttp2_option_set_stream_reset_rate_limit(opt, RESET_BURST, RESET_RATE);
	rc = nghttp2_session_server_new2(&c->h2, c->srv->cbs, c, opt);
	nghttp2_option_del(opt);
	if (rc != 0) {
		c->h2 = NULL;
		return -1;
	}
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, &iv, 1) != 0)
		return -1;
	c->state = CONN_H2;
	return 0;
}

/* Write queued bytes; 0 when done or blocked, -1 on a dead socket. */
static int conn_flush(struct conn *c)
{
	while (c->outlen > 0) {
		ssize_t n = io_write(c, c->outbuf, c->outlen);

		if (n == IO_AGAIN)
			return 0;
		if (n <= 0)
			return -1;
		memmove(c->outbuf, c->outbuf + n, c->outlen - (size_t)n);
		c->outlen -= (size_t)n;
	}
	return 0;
}

/* Let nghttp2 serialise what it has and push it out until the socket blocks. */
static int conn_send(struct conn *c)
{
	for (;;) {
		if (nghttp2_session_send(c->h2) != 0)
			return -1;
		if (c->outlen == 0)
			return 0;
		if (conn_flush(c) < 0)
			return -1;
		if (c->outlen > 0 || !nghttp2_session_want_write(c->h2))
			return 0;
	}
}

/*
 * Read until the socket would block (or READ_ROUNDS chunks, so one busy
 * client cannot starve the others), feeding nghttp2. -1: close.
 */
static int conn_recv(struct conn *c)
{
	unsigned char buf[READ_CHUNK];
	int rounds;

	for (rounds = 0; rounds < READ_ROUNDS || (c->ssl != NULL && SSL_pending(c->ssl) > 0);
	     rounds++) {
		ssize_t n = io_read(c, buf, sizeof buf);

		if (n == IO_AGAIN)
			return 0;
		if (n <= 0)
			return -1;
		if (nghttp2_session_mem_recv(c->h2, buf, (size_t)n) < 0)
			return -1;
		if (c->dead)
			return -1;
	}
	return 0;
}

static void conn_start_linger(struct conn *c)
{
	if (c->ssl != NULL && !c->ssl_fatal) {
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	shutdown(c->fd, SHUT_WR);
	clock_gettime(CLOCK_MONOTONIC, &c->linger_until);
	c->linger_until.tv_sec += LINGER_SECONDS;
	c->state = CONN_LINGER;
}

static void conn_handshake(struct conn *c)
{
	const unsigned char *alpn = NULL;
	unsigned int alpn_len = 0;
	int r, err;

	ERR_clear_error();
	r = SSL_accept(c->ssl);
	if (r != 1) {
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
			c->hs_want_write = err == SSL_ERROR_WANT_WRITE;
			return;
		}
		c->ssl_fatal = 1;
		c->dead = 1;
		ERR_clear_error();
		return;
	}
	SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
	if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
		fake_warn("conn %lu: client did not negotiate h2", c->id);
		c->dead = 1;
		return;
	}
	if (conn_start_h2(c) < 0)
		c->dead = 1;
}

static void conn_service(struct conn *c)
{
	if (c->state == CONN_LINGER) {
		unsigned char buf[READ_CHUNK];
		ssize_t n;

		do {
			n = recv(c->fd, buf, sizeof buf, 0);
		} while (n > 0);
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			c->dead = 1;
		return;
	}
	if (c->state == CONN_HANDSHAKE) {
		conn_handshake(c);
		if (c->dead || c->state == CONN_HANDSHAKE)
			return;
	}
	if (conn_recv(c) < 0 || conn_send(c) < 0) {
		c->dead = 1;
		return;
	}
	if (c->goaway_sent && c->outlen == 0)
		conn_start_linger(c);
	else if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
	         c->outlen == 0)
		c->dead = 1;
}

static short conn_events(const struct conn *c)
{
	short ev = POLLIN;

	if (c->state == CONN_LINGER)
		return POLLIN;
	if (c->state == CONN_HANDSHAKE)
		return c->hs_want_write ? POLLOUT : POLLIN;
	if (c->read_wants_write || (c->outlen > 0 && !c->write_wants_read))
		ev |= POLLOUT;
	return ev;
}

static void conn_free(struct conn *c)
{
	struct stream *s, *next;

	if (c == NULL)
		return;
	if (c->h2 != NULL)
		nghttp2_session_del(c->h2);
	for (s = c->streams; s != NULL; s = next) {
		next = s->next;
		stream_free(s);
	}
	if (c->ssl != NULL) {
		if (c->state == CONN_H2 && !c->ssl_fatal) {
			ERR_clear_error();
			SSL_shutdown(c->ssl);
		}
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	if (c->fd >= 0)
		close(c->fd);
	free(c->token);
	free(c->outbuf);
	free(c);
}

static void server_accept(struct server *srv)
{
	for (;;) {
		struct conn *c;
		int one = 1;
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				fake_warn("accept: %s", strerror(errno));
			return;
		}
		if (srv->nconns == MAX_CONNS) {
			fake_warn("more than %d connections; closing the new one", MAX_CONNS);
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c = calloc(1, sizeof *c);
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->srv = srv;
		c->fd = fd;
		c->id = ++srv->next_conn_id;
		c->outbuf = malloc(OUTBUF_CAP);
		if (c->outbuf == NULL)
			goto fail;
		if (srv->tls != NULL) {
			c->state = CONN_HANDSHAKE;
			c->ssl = SSL_new(srv->tls);
			if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1)
				goto fail;
			SSL_set_accept_state(c->ssl);
		} else {
			if (conn_start_h2(c) < 0 || conn_send(c) < 0)
				goto fail;
		}
		srv->conns[srv->nconns++] = c;
		continue;
fail:
		ERR_clear_error();
		conn_free(c);
	}
}

/* ----------------------------------------------------------------- setup */

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned int i = 0;

	while (i < inlen) {
		unsigned int len = in[i];

		if (len == 0 || i + 1 + len > inlen)
			break;
		if (len == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + len;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* The P-256 key that verifies provider tokens: PUBLIC KEY PEM (or the .p8). */
static EVP_PKEY *load_auth_key(const char *path)
{
	EVP_PKEY *key = NULL;
	char group[32];
	size_t glen = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		fake_warn("%s: %s", path, strerror(errno));
		return NULL;
	}
	key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	if (key == NULL) {
		rewind(f);
		key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	}
	fclose(f);
	ERR_clear_error();
	if (key == NULL) {
		fake_warn("%s: not a PEM public key", path);
		return NULL;
	}
	if (!EVP_PKEY_is_a(key, "EC") ||
	    EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof group, &glen) != 1 ||
	    strcmp(group, "prime256v1") != 0) {
		fake_warn("%s: not an EC P-256 key", path);
		EVP_PKEY_free(key);
		ERR_clear_error();
		return NULL;
	}
	return key;
}

static void usage(FILE *f)
{
	fputs("usage: fake-apns --port N --team-id TEAMID --key-id KEYID --auth-key PUB.pem\n"
	      "                 --bundle-id BUNDLE --log FILE\n"
	      "                 (--cert CERT.pem --key KEY.pem | --h2c)\n"
	      "                 [--script FILE] [--port-file FILE]\n", f);
}

/* ------------------------------------------------------------------ loop */

static int timespec_ms_until(const struct timespec *t, const struct timespec *now)
{
	long long ms = (long long)(t->tv_sec - now->tv_sec) * 1000 +
	               (t->tv_nsec - now->tv_nsec) / 1000000;

	if (ms < 0)
		return 0;
	return ms > 60000 ? 60000 : (int)ms;
}

static void server_reap(struct server *srv)
{
	size_t i = 0;

	while (i < srv->nconns) {
		if (srv->conns[i]->dead) {
			conn_free(srv->conns[i]);
			srv->conns[i] = srv->conns[--srv->nconns];
			srv->conns[srv->nconns] = NULL;
		} else {
			i++;
		}
	}
}

static void server_run(struct server *srv, const sigset_t *waitmask)
{
	struct pollfd pfd[MAX_CONNS + 1];
	struct conn *polled[MAX_CONNS];

	while (!g_stop) {
		struct timespec now, tmo, *tmop = NULL;
		int timeout = -1;
		size_t i, n = srv->nconns;
		int r;

		clock_gettime(CLOCK_MONOTONIC, &now);
		pfd[0].fd = srv->listen_fd;
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		for (i = 0; i < n; i++) {
			struct conn *c = srv->conns[i];

			polled[i] = c;
			pfd[i + 1].fd = c->fd;
			pfd[i + 1].events = conn_events(c);
			pfd[i + 1].revents = 0;
			if (c->state == CONN_LINGER) {
				int ms = timespec_ms_until(&c->linger_until, &now);

				if (timeout < 0 || ms < timeout)
					timeout = ms;
			}
		}
		if (timeout >= 0) {
			tmo.tv_sec = timeout / 1000;
			tmo.tv_nsec = (long)(timeout % 1000) * 1000000;
			tmop = &tmo;
		}
		r = ppoll(pfd, n + 1, tmop, waitmask);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fake_warn("poll: %s", strerror(errno));
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		for (i = 0; i < n; i++) {
			struct conn *c = polled[i];

			if (pfd[i + 1].revents != 0)
				conn_service(c);
			if (c->state == CONN_LINGER && timespec_ms_until(&c->linger_until, &now) == 0)
				c->dead = 1;
		}
		server_reap(srv);
		if (pfd[0].revents & POLLIN)
			server_accept(srv);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "team-id", required_argument, NULL, 't' },
		{ "key-id", required_argument, NULL, 'k' },
		{ "auth-key", required_argument, NULL, 'a' },
		{ "bundle-id", required_argument, NULL, 'b' },
		{ "log", required_argument, NULL, 'l' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'K' },
		{ "h2c", no_argument, NULL, 'H' },
		{ "script", required_argument, NULL, 's' },
		{ "port-file", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct server srv;
	const char *auth_key = NULL, *log_path = NULL, *cert = NULL, *key = NULL, *port_file = NULL;
	int port = -1, h2c = 0, bound_port = 0, opt, rc = 1;
	char *end;
	long v;
	struct sigaction sa;
	sigset_t block, waitmask;
	size_t i;

	fake_set_name("fake-apns");
	memset(&srv, 0, sizeof srv);
	srv.listen_fd = -1;
	srv.log_fd = -1;
	for (;;) {
		opt = getopt_long(argc, argv, "h", opts, NULL);
		if (opt == -1)
			break;
		switch (opt) {
		case 'p':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg || v < 0 || v > 65535) {
				fake_warn("bad --port '%s'", optarg);
				return 2;
			}
			port = (int)v;
			break;
		case 't': srv.team_id = optarg; break;
		case 'k': srv.key_id = optarg; break;
		case 'a': auth_key = optarg; break;
		case 'b': srv.bundle_id = optarg; break;
		case 'l': log_path = optarg; break;
		case 'c': cert = optarg; break;
		case 'K': key = optarg; break;
		case 'H': h2c = 1; break;
		case 's': srv.script.path = optarg; break;
		case 'P': port_file = optarg; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || port < 0 || srv.team_id == NULL || srv.key_id == NULL ||
	    auth_key == NULL || srv.bundle_id == NULL || log_path == NULL ||
	    (h2c && (cert != NULL || key != NULL)) || (!h2c && (cert == NULL || key == NULL))) {
		usage(stderr);
		return 2;
	}
	if (strlen(srv.bundle_id) > 400) {
		fake_warn("--bundle-id too long");
		return 2;
	}

	/* Signals only set a flag; they are unblocked only inside ppoll(). */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	srv.auth_key = load_auth_key(auth_key);
	if (srv.auth_key == NULL)
		goto out;
	if (!h2c) {
		srv.tls = fake_tls_server(cert, key);
		if (srv.tls == NULL)
			goto out;
		SSL_CTX_set_alpn_select_cb(srv.tls, alpn_select_cb, NULL);
	}
	srv.cbs = make_callbacks();
	if (srv.cbs == NULL)
		goto out;
	srv.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (srv.log_fd < 0) {
		fake_warn("%s: %s", log_path, strerror(errno));
		goto out;
	}
	script_refresh(&srv.script);
	srv.listen_fd = fake_listen(port, 128, &bound_port);
	if (srv.listen_fd < 0)
		goto out;
	if (port_file != NULL && fake_write_port_file(port_file, bound_port) < 0)
		goto out;
	printf("fake-apns listening on 127.0.0.1:%d\n", bound_port);
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
	script_free(&srv.script);
	if (srv.cbs != NULL)
		nghttp2_session_callbacks_del(srv.cbs);
	SSL_CTX_free(srv.tls);
	EVP_PKEY_free(srv.auth_key);
	return rc;
}

/* ws-client: a small WebSocket client for the integration tests (libwebsockets only). */
/*
 * ws-client --url ws://HOST:PORT/PATH?QUERY [--send JSON]... [--until TYPE]
 *           [--count N] [--timeout SECONDS] [--timestamps] [--pong]
 *           [--send-big BYTES] [--header 'Name: value']... [--ack | --ack-stream]
 *           [--pause-ms N] [--read-delay-ms N] [--brief-over BYTES]
 *           [--rcvbuf BYTES] [--send-after TYPE]
 *
 * Connects without a subprotocol, sends every --send message in order once
 * the connection is up (then, with --send-big, one text message of exactly
 * BYTES bytes: {"type":"ping","pad":"xxx..."}), and prints each received text message as one line on
 * stdout (flushed per line), with --timestamps prefixed by the wall-clock
 * time of arrival in microseconds. The server's JSON {"type":"ping"} is
 * answered with {"type":"pong"} only with --pong: by default the client
 * sends nothing but its --send messages (a silent client for heartbeat
 * tests); WebSocket control-frame pings are always answered by lws.
 *
 *   --header 'Name: value'  sent with the upgrade request (repeatable, at
 *                     most 16), e.g. X-API-Key, api-key, X-Agent-ID.
 *   --ack             after each received message with a top-level
 *                     "event_id", sends {"type":"ack","event_id":"..."}
 *                     (in order; when more than 4096 are waiting the oldest
 *                     are dropped: a cursor only moves forward).
 *   --ack-stream      the same with {"type":"ack","stream_id":"..."} for
 *                     messages that carry a top-level "stream_id".
 *   --pause-ms N      after the first complete message (authenticated or
 *                     registered, normally) stops reading from the socket
 *                     for N ms, so that the server's send queue fills;
 *                     SIGUSR1 ends the pause at once.
 *   --read-delay-ms N stops reading for N ms after every message (a slow
 *                     reader).
 *   --brief-over BYTES  a message longer than BYTES is printed as
 *                     {"type":"..","event_id":"..","stream_id":"..","bytes":N}
 *                     (members it lacks are empty strings) instead of itself.
 *   --rcvbuf BYTES    SO_RCVBUF of the socket (a small one fills sooner).
 *   --send-after TYPE the --send (and --send-big) messages wait until a
 *                     message of that type arrived (e.g. registered: an
 *                     agent's key is checked after the upgrade).
 *
 * lws 4.1 reports some close codes it does not know (1013, "try again
 * later", for one) as 1002: check those in the server's log or with a raw
 * socket (tests/integration/lib.sh raw_ws_close).
 *
 * Exit status:
 *   0  a message whose top-level "type" equals --until arrived, or --count
 *      messages arrived
 *   1  timeout (default 10 s)
 *   2  could not connect (or bad arguments)
 *   3  the server closed the connection; a line "close <code>" is printed
 *      first (1005 when the close frame had no code, 1006 when the TCP
 *      connection ended without a close frame)
 *
 * It deliberately links nothing but libwebsockets: the "type", "event_id"
 * and "stream_id" members are found with a tiny scanner rather than a JSON
 * library.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

#include <libwebsockets.h>

#define WSC_MAX_SEND 64                 /* --send messages */
#define WSC_MAX_MESSAGE (16u << 20)     /* one received message */
#define WSC_MAX_HOST 256
#define WSC_MAX_PATH 4096
#define WSC_MAX_HEADERS 16              /* --header */
#define WSC_MAX_HEADER_NAME 128         /* "Name:" of one --header */
#define WSC_ACK_RING 4096               /* acks waiting to be written */
#define WSC_ID_MAX 64                   /* an event_id or stream_id */
#define WSC_MAX_DELAY_MS 3600000L       /* --pause-ms, --read-delay-ms */

enum {
	WSC_EXIT_OK = 0,
	WSC_EXIT_TIMEOUT = 1,
	WSC_EXIT_CONNECT = 2,
	WSC_EXIT_CLOSED = 3,
};

struct wsc_opts {
	const char *url;
	const char *send[WSC_MAX_SEND];
	int nsend;
	const char *until;
	long count;     /* 0: no count */
	long timeout_s;
	int timestamps;  /* prefix each message with the wall-clock time in µs */
	int pong;        /* answer the server's JSON pings */
	long send_big;   /* bytes of one extra large message; 0: none */
	const char *headers[WSC_MAX_HEADERS]; /* "Name: value" */
	int nheaders;
	const char *ack_key; /* "event_id" or "stream_id"; NULL: no acks */
	long pause_ms;       /* after the first message; 0: none */
	long read_delay_ms;  /* after every message; 0: none */
	long brief_over;     /* print longer messages briefly; 0: never */
	long rcvbuf;         /* SO_RCVBUF; 0: the system's */
	const char *send_after; /* hold --send until this type arrived; NULL: none */
};

/* SIGUSR1 ends a --pause-ms pause. */
static volatile sig_atomic_t wsc_unpause_requested;

struct wsc {
	const struct wsc_opts *o;
	struct lws_context *ctx;
	lws_sorted_usec_list_t sul_timeout;
	int exit_code;          /* -1 until the outcome is known */
	int finished;           /* the connection is gone (or given up on) */
	int closing;            /* outcome known: close from WRITEABLE */
	int next_send;          /* index of the next --send to write */
	int send_ready;         /* --send may go (after --send-after) */
	int big_sent;           /* the --send-big message went out */
	int pongs_due;          /* JSON pongs to write */
	long received;          /* complete text messages */
	int close_code;         /* from the peer's close frame, -1 if none */
	unsigned char *rx;      /* the message being assembled */
	size_t rx_len;
	size_t rx_cap;
	int rx_binary;
	struct lws *wsi;        /* the connection, once established */
	lws_sorted_usec_list_t sul_read; /* ends a pause / read delay */
	lws_sorted_usec_list_t sul_tick; /* wakes the loop while paused (SIGUSR1) */
	int paused;             /* reading is off */
	int pause_done;         /* the --pause-ms pause has happened */
	char (*acks)[WSC_ID_MAX]; /* ring of ids to acknowledge */
	unsigned ack_head;      /* next to write */
	unsigned ack_count;
};

/* Ends the run with `code` unless an earlier outcome was already decided. */
static void
wsc_finish(struct wsc *c, int code)
{
	if (c->exit_code < 0)
		c->exit_code = code;
}

/* Finds the string value of the top-level member `key` of the JSON object
 * in s[0..n). Escapes inside the value are copied as they are (types and
 * ids are plain words). Returns 0 with a NUL-terminated copy in `out`, or
 * -1. */
static int
wsc_json_member(const char *s, size_t n, const char *key, char *out, size_t outlen)
{
	int depth = 0;
	size_t i, start, end, j, klen = strlen(key);

	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == '{' || ch == '[') {
			depth++;
			continue;
		}
		if (ch == '}' || ch == ']') {
			depth--;
			continue;
		}
		if (ch != '"')
			continue;
		start = i + 1;
		for (i = start; i < n && s[i] != '"'; i++) {
			if (s[i] == '\\')
				i++;
		}
		if (i >= n)
			return -1;
		end = i;
		if (depth != 1 || end - start != klen || memcmp(s + start, key, klen) != 0)
			continue;
		j = end + 1;
		while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n'))
			j++;
		if (j >= n || s[j] != ':')
			continue; /* "type" was a value, not a key */
		j++;
		while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n'))
			j++;
		if (j >= n || s[j] != '"')
			continue; /* not a string: maybe a key further on */
		start = ++j;
		while (j < n && s[j] != '"') {
			if (s[j] == '\\')
				j++;
			j++;
		}
		if (j >= n || j - start >= outlen)
			return -1;
		memcpy(out, s + start, j - start);
		out[j - start] = '\0';
		return 0;
	}
	return -1;
}

static int
wsc_json_type(const char *s, size_t n, char *out, size_t outlen)
{
	return wsc_json_member(s, n, "type", out, outlen);
}

/* Appends one received fragment to the message buffer (capped). */
static int
wsc_rx_append(struct wsc *c, const void *in, size_t len)
{
	if (len > WSC_MAX_MESSAGE - c->rx_len)
		return -1;
	if (c->rx_len + len + 1 > c->rx_cap) {
		size_t ncap = c->rx_cap ? c->rx_cap : 4096;
		unsigned char *p;

		while (ncap < c->rx_len + len + 1)
			ncap *= 2;
		p = realloc(c->rx, ncap);
		if (p == NULL)
			return -1;
		c->rx = p;
		c->rx_cap = ncap;
	}
	if (len > 0)
		memcpy(c->rx + c->rx_len, in, len);
	c->rx_len += len;
	c->rx[c->rx_len] = '\0';
	return 0;
}

static void wsc_read_resume_cb(lws_sorted_usec_list_t *sul);

/* While reading is off poll() waits for timers only: this one makes the
 * loop look at the SIGUSR1 flag at least every 100 ms. */
static void
wsc_tick_cb(lws_sorted_usec_list_t *sul)
{
	struct wsc *c = lws_container_of(sul, struct wsc, sul_tick);

	if (c->paused)
		lws_sul_schedule(c->ctx, 0, &c->sul_tick, wsc_tick_cb, 100 * LWS_US_PER_MS);
}

/* Stops reading from the socket for `ms` milliseconds. */
static void
wsc_read_pause(struct wsc *c, long ms)
{
	if (c->wsi == NULL || ms <= 0)
		return;
	lws_rx_flow_control(c->wsi, 0);
	c->paused = 1;
	lws_sul_schedule(c->ctx, 0, &c->sul_read, wsc_read_resume_cb,
			 (lws_usec_t)ms * LWS_US_PER_MS);
	lws_sul_schedule(c->ctx, 0, &c->sul_tick, wsc_tick_cb, 100 * LWS_US_PER_MS);
}

/* Reads again (end of a pause or read delay, or SIGUSR1). */
static void
wsc_read_resume(struct wsc *c)
{
	lws_sul_cancel(&c->sul_read);
	lws_sul_cancel(&c->sul_tick);
	if (!c->paused || c->wsi == NULL)
		return;
	c->paused = 0;
	lws_rx_flow_control(c->wsi, 1);
}

static void
wsc_read_resume_cb(lws_sorted_usec_list_t *sul)
{
	struct wsc *c = lws_container_of(sul, struct wsc, sul_read);

	wsc_read_resume(c);
}

/* Queues an ack for `id`; when the ring is full the oldest is dropped. */
static void
wsc_ack_push(struct wsc *c, const char *id)
{
	unsigned slot;

	if (c->acks == NULL)
		return;
	if (c->ack_count == WSC_ACK_RING) {
		c->ack_head = (c->ack_head + 1) % WSC_ACK_RING;
		c->ack_count--;
	}
	slot = (c->ack_head + c->ack_count) % WSC_ACK_RING;
	snprintf(c->acks[slot], WSC_ID_MAX, "%s", id);
	c->ack_count++;
}

/* Prints a long message as {"type":..,"event_id":..,"stream_id":..,"bytes":N}. */
static void
wsc_print_brief(const struct wsc *c)
{
	static const char *const keys[] = { "type", "event_id", "stream_id" };
	char val[WSC_ID_MAX * 2];
	size_t k;

	fputc('{', stdout);
	for (k = 0; k < sizeof keys / sizeof keys[0]; k++) {
		if (wsc_json_member((const char *)c->rx, c->rx_len, keys[k], val, sizeof val) < 0)
			val[0] = '\0';
		printf("\"%s\":\"%s\",", keys[k], val);
	}
	printf("\"bytes\":%zu}", c->rx_len);
}

/* One complete message: print it and decide whether we are done. */
static void
wsc_message(struct wsc *c)
{
	char type[128], id[WSC_ID_MAX];

	if (c->rx_binary || c->exit_code >= 0)
		return; /* text frames only; nothing after the outcome */
	if (c->o->timestamps) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		printf("%lld ", (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
	}
	if (c->o->brief_over > 0 && c->rx_len > (size_t)c->o->brief_over)
		wsc_print_brief(c);
	else
		fwrite(c->rx, 1, c->rx_len, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	c->received++;
	if (c->o->pong && wsc_json_type((const char *)c->rx, c->rx_len, type, sizeof type) == 0 &&
	    strcmp(type, "ping") == 0)
		c->pongs_due++;
	if (c->o->ack_key != NULL &&
	    wsc_json_member((const char *)c->rx, c->rx_len, c->o->ack_key, id, sizeof id) == 0 &&
	    id[0] != '\0')
		wsc_ack_push(c, id);
	if (c->o->until != NULL &&
	    wsc_json_type((const char *)c->rx, c->rx_len, type, sizeof type) == 0 &&
	    strcmp(type, c->o->until) == 0)
		wsc_finish(c, WSC_EXIT_OK);
	if (!c->send_ready && c->o->send_after != NULL &&
	    wsc_json_type((const char *)c->rx, c->rx_len, type, sizeof type) == 0 &&
	    strcmp(type, c->o->send_after) == 0) {
		c->send_ready = 1;
		if (c->wsi != NULL && (c->o->nsend > 0 || c->o->send_big > 0))
			lws_callback_on_writable(c->wsi);
	}
	if (c->o->count > 0 && c->received >= c->o->count)
		wsc_finish(c, WSC_EXIT_OK);
	if (c->exit_code >= 0)
		return;
	if (c->o->pause_ms > 0 && !c->pause_done) {
		c->pause_done = 1;
		wsc_read_pause(c, c->o->pause_ms);
	} else if (c->o->read_delay_ms > 0) {
		wsc_read_pause(c, c->o->read_delay_ms);
	}
}

/* Writes one text message. Returns 0 or -1. */
static int
wsc_write_text(struct lws *wsi, const char *msg, size_t len)
{
	unsigned char *buf;
	int n;

	buf = malloc(LWS_PRE + len + 1);
	if (buf == NULL)
		return -1;
	memcpy(buf + LWS_PRE, msg, len);
	n = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
	free(buf);
	return n < (int)len ? -1 : 0;
}

/* {"type":"ping","pad":"xxx..."} of exactly `len` bytes (len >= 32). */
static int
wsc_write_big(struct lws *wsi, size_t len)
{
	static const char head[] = "{\"type\":\"ping\",\"pad\":\"";
	char *msg = malloc(len);
	int rc;

	if (msg == NULL)
		return -1;
	memcpy(msg, head, sizeof head - 1);
	memset(msg + sizeof head - 1, 'x', len - (sizeof head - 1) - 2);
	memcpy(msg + len - 2, "\"}", 2);
	rc = wsc_write_text(wsi, msg, len);
	free(msg);
	return rc;
}

/* Writes what is due, one message per WRITEABLE callback: pongs first,
 * then acks, then the next --send, then the --send-big message. */
static int
wsc_write_next(struct lws *wsi, struct wsc *c)
{
	const char *msg;
	char ack[WSC_ID_MAX + 64];

	if (c->pongs_due > 0) {
		msg = "{\"type\":\"pong\"}";
		if (wsc_write_text(wsi, msg, strlen(msg)) < 0)
			return -1;
		c->pongs_due--;
	} else if (c->ack_count > 0) {
		snprintf(ack, sizeof ack, "{\"type\":\"ack\",\"%s\":\"%s\"}", c->o->ack_key,
			 c->acks[c->ack_head]);
		if (wsc_write_text(wsi, ack, strlen(ack)) < 0)
			return -1;
		c->ack_head = (c->ack_head + 1) % WSC_ACK_RING;
		c->ack_count--;
	} else if (c->send_ready && c->next_send < c->o->nsend) {
		msg = c->o->send[c->next_send];
		if (wsc_write_text(wsi, msg, strlen(msg)) < 0)
			return -1;
		c->next_send++;
	} else if (c->send_ready && c->o->send_big > 0 && !c->big_sent) {
		if (wsc_write_big(wsi, (size_t)c->o->send_big) < 0)
			return -1;
		c->big_sent = 1;
	} else {
		return 0;
	}
	if (c->pongs_due > 0 || c->ack_count > 0 ||
	    (c->send_ready && (c->next_send < c->o->nsend || (c->o->send_big > 0 && !c->big_sent))))
		lws_callback_on_writable(wsi);
	return 0;
}

/* Adds every --header to the upgrade request being built at *p (len bytes
 * left). lws wants the name with its colon. Returns 0 or -1. */
static int
wsc_append_headers(struct lws *wsi, const struct wsc *c, unsigned char **p, size_t len)
{
	unsigned char *end = *p + len;
	char name[WSC_MAX_HEADER_NAME];
	const char *h, *colon, *v;
	int i;

	for (i = 0; i < c->o->nheaders; i++) {
		h = c->o->headers[i];
		colon = strchr(h, ':');
		if (colon == NULL || colon == h || (size_t)(colon - h) + 2 > sizeof name)
			return -1;
		memcpy(name, h, (size_t)(colon - h) + 1);
		name[colon - h + 1] = '\0';
		v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
						(const unsigned char *)v, (int)strlen(v), p, end))
			return -1;
	}
	return 0;
}

static int
wsc_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
	     void *in, size_t len)
{
	struct wsc *c = lws_context_user(lws_get_context(wsi));

	(void)user;
	if (c == NULL)
		return 0;

	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		fprintf(stderr, "ws-client: connection failed: %s\n",
			in != NULL ? (const char *)in : "unknown error");
		wsc_finish(c, WSC_EXIT_CONNECT);
		c->finished = 1;
		break;

	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		if (wsc_append_headers(wsi, c, (unsigned char **)in, len) < 0) {
			fprintf(stderr, "ws-client: the --header lines do not fit\n");
			wsc_finish(c, WSC_EXIT_CONNECT);
			return -1;
		}
		break;

	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		c->wsi = wsi;
		if (c->o->rcvbuf > 0) {
			int v = (int)c->o->rcvbuf;

			if (setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_RCVBUF, &v,
				       sizeof v) < 0)
				fprintf(stderr, "ws-client: SO_RCVBUF: %s\n", strerror(errno));
		}
		if (c->send_ready && (c->o->nsend > 0 || c->o->send_big > 0))
			lws_callback_on_writable(wsi);
		break;

	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (c->closing) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
			return -1;
		}
		if (wsc_write_next(wsi, c) < 0) {
			fprintf(stderr, "ws-client: write failed\n");
			wsc_finish(c, WSC_EXIT_CLOSED);
			return -1;
		}
		break;

	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (lws_is_first_fragment(wsi)) {
			c->rx_len = 0;
			c->rx_binary = lws_frame_is_binary(wsi);
		}
		if (wsc_rx_append(c, in, len) < 0) {
			fprintf(stderr, "ws-client: message larger than %u bytes\n",
				WSC_MAX_MESSAGE);
			wsc_finish(c, WSC_EXIT_CLOSED);
			return -1;
		}
		if (lws_is_final_fragment(wsi)) {
			wsc_message(c);
			if (c->pongs_due > 0 || c->ack_count > 0)
				lws_callback_on_writable(wsi);
		}
		if (c->exit_code >= 0 && !c->closing) {
			/* Done: say goodbye with a 1000 close frame. */
			c->closing = 1;
			lws_callback_on_writable(wsi);
		}
		break;

	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (in != NULL && len >= 2) {
			const unsigned char *p = in;

			c->close_code = (p[0] << 8) | p[1];
		} else {
			c->close_code = LWS_CLOSE_STATUS_NO_STATUS;
		}
		break;

	case LWS_CALLBACK_CLIENT_CLOSED:
		if (c->exit_code < 0) {
			printf("close %d\n", c->close_code >= 0 ? c->close_code :
			       (int)LWS_CLOSE_STATUS_ABNORMAL_CLOSE);
			fflush(stdout);
		}
		wsc_finish(c, WSC_EXIT_CLOSED);
		c->finished = 1;
		c->wsi = NULL;
		break;

	default:
		break;
	}
	return 0;
}

static void
wsc_timeout_cb(lws_sorted_usec_list_t *sul)
{
	struct wsc *c = lws_container_of(sul, struct wsc, sul_timeout);

	if (c->exit_code < 0)
		fprintf(stderr, "ws-client: timeout after %ld s\n", c->o->timeout_s);
	wsc_finish(c, WSC_EXIT_TIMEOUT);
	c->finished = 1;
	/* lws_service() goes back to poll() after running timers: wake it so
	 * the loop sees `finished`. */
	lws_cancel_service(c->ctx);
}

static void
wsc_on_sigusr1(int sig)
{
	(void)sig;
	wsc_unpause_requested = 1;
}

/* Splits "ws://host[:port][/path]" into its parts. Returns 0 or -1. */
static int
wsc_parse_url(const char *url, char *host, size_t hostlen, int *port,
	      char *path, size_t pathlen)
{
	const char *p, *hend, *pstart;
	size_t hl;

	if (strncmp(url, "ws://", 5) != 0)
		return -1;
	p = url + 5;
	hend = p + strcspn(p, ":/?");
	hl = (size_t)(hend - p);
	if (hl == 0 || hl >= hostlen)
		return -1;
	memcpy(host, p, hl);
	host[hl] = '\0';
	*port = 80;
	pstart = hend;
	if (*hend == ':') {
		char *endp;
		long v;

		errno = 0;
		v = strtol(hend + 1, &endp, 10);
		if (errno != 0 || endp == hend + 1 || v < 1 || v > 65535)
			return -1;
		*port = (int)v;
		pstart = endp;
	}
	if (*pstart == '\0')
		pstart = "/";
	if (*pstart != '/' && *pstart != '?')
		return -1;
	if (snprintf(path, pathlen, "%s%s", *pstart == '?' ? "/" : "", pstart) >= (int)pathlen)
		return -1;
	return 0;
}

static void
wsc_usage(void)
{
	fprintf(stderr, "usage: ws-client --url ws://HOST:PORT/PATH [--send JSON]... "
		"[--until TYPE] [--count N] [--timeout SECONDS] [--timestamps] [--pong]\n"
		"       [--send-big BYTES] [--header 'Name: value']... [--ack | --ack-stream]\n"
		"       [--pause-ms N] [--read-delay-ms N] [--brief-over BYTES] [--rcvbuf BYTES]\n"
		"       [--send-after TYPE]\n");
}

static int
wsc_parse_args(int argc, char **argv, struct wsc_opts *o)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "send", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "timestamps", no_argument, NULL, 'S' },
		{ "pong", no_argument, NULL, 'P' },
		{ "send-big", required_argument, NULL, 'B' },
		{ "header", required_argument, NULL, 'H' },
		{ "ack", no_argument, NULL, 'a' },
		{ "ack-stream", no_argument, NULL, 'A' },
		{ "pause-ms", required_argument, NULL, 'p' },
		{ "read-delay-ms", required_argument, NULL, 'd' },
		{ "brief-over", required_argument, NULL, 'b' },
		{ "rcvbuf", required_argument, NULL, 'R' },
		{ "send-after", required_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	char *endp;

	o->timeout_s = 10;
	for (;;) {
		ch = getopt_long(argc, argv, "u:s:t:c:T:SPB:H:aAp:d:b:R:W:h", longopts, NULL);
		if (ch == -1)
			break;
		switch (ch) {
		case 'u':
			o->url = optarg;
			break;
		case 's':
			if (o->nsend >= WSC_MAX_SEND) {
				fprintf(stderr, "ws-client: at most %d --send\n", WSC_MAX_SEND);
				return -1;
			}
			o->send[o->nsend++] = optarg;
			break;
		case 't':
			o->until = optarg;
			break;
		case 'S':
			o->timestamps = 1;
			break;
		case 'P':
			o->pong = 1;
			break;
		case 'B':
			o->send_big = strtol(optarg, &endp, 10);
			if (*endp != '\0' || o->send_big < 32 || o->send_big > (long)WSC_MAX_MESSAGE)
				return -1;
			break;
		case 'H':
			if (o->nheaders >= WSC_MAX_HEADERS || strchr(optarg, ':') == NULL) {
				fprintf(stderr, "ws-client: at most %d --header 'Name: value'\n",
					WSC_MAX_HEADERS);
				return -1;
			}
			o->headers[o->nheaders++] = optarg;
			break;
		case 'W':
			o->send_after = optarg;
			break;
		case 'a':
			o->ack_key = "event_id";
			break;
		case 'A':
			o->ack_key = "stream_id";
			break;
		case 'p':
			o->pause_ms = strtol(optarg, &endp, 10);
			if (*endp != '\0' || o->pause_ms < 0 || o->pause_ms > WSC_MAX_DELAY_MS)
				return -1;
			break;
		case 'd':
			o->read_delay_ms = strtol(optarg, &endp, 10);
			if (*endp != '\0' || o->read_delay_ms < 0 || o->read_delay_ms > WSC_MAX_DELAY_MS)
				return -1;
			break;
		case 'b':
			o->brief_over = strtol(optarg, &endp, 10);
			if (*endp != '\0' || o->brief_over < 0)
				return -1;
			break;
		case 'R':
			o->rcvbuf = strtol(optarg, &endp, 10);
			if (*endp != '\0' || o->rcvbuf < 1 || o->rcvbuf > INT_MAX)
				return -1;
			break;
		case 'c':
			o->count = strtol(optarg, &endp, 10);
			if (*endp != '\0' || o->count < 1)
				return -1;
			break;
		case 'T':
			o->timeout_s = strtol(optarg, &endp, 10);
			if (*endp != '\0' || o->timeout_s < 1 || o->timeout_s > 86400)
				return -1;
			break;
		default:
			return -1;
		}
	}
	if (optind != argc || o->url == NULL)
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct lws_protocols protocols[] = {
		{ "capsule-test-client", wsc_callback, 0, 0, 0, NULL, 0 },
		{ NULL, NULL, 0, 0, 0, NULL, 0 } /* terminator */
	};
	struct wsc_opts o;
	struct wsc c;
	struct lws_context_creation_info info;
	struct lws_client_connect_info ci;
	struct lws_context *ctx = NULL;
	struct sigaction sa;
	char host[WSC_MAX_HOST], path[WSC_MAX_PATH];
	int port, rc = WSC_EXIT_CONNECT;

	memset(&o, 0, sizeof o);
	memset(&c, 0, sizeof c);
	c.o = &o;
	c.exit_code = -1;
	c.close_code = -1;

	if (wsc_parse_args(argc, argv, &o) < 0) {
		wsc_usage();
		return WSC_EXIT_CONNECT;
	}
	if (wsc_parse_url(o.url, host, sizeof host, &port, path, sizeof path) < 0) {
		fprintf(stderr, "ws-client: cannot use URL %s (ws://host:port/path only)\n", o.url);
		return WSC_EXIT_CONNECT;
	}
	c.send_ready = o.send_after == NULL;
	if (o.ack_key != NULL) {
		c.acks = calloc(WSC_ACK_RING, sizeof *c.acks);
		if (c.acks == NULL) {
			fprintf(stderr, "ws-client: out of memory\n");
			return WSC_EXIT_CONNECT;
		}
	}
	/* No SA_RESTART: the signal interrupts poll() so the loop sees it. */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = wsc_on_sigusr1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);

	lws_set_log_level(LLL_ERR, NULL);
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.user = &c;
	info.gid = -1;
	info.uid = -1;
	ctx = lws_create_context(&info);
	if (ctx == NULL) {
		fprintf(stderr, "ws-client: lws_create_context failed\n");
		goto out;
	}
	c.ctx = ctx;

	memset(&ci, 0, sizeof ci);
	ci.context = ctx;
	ci.address = host;
	ci.port = port;
	ci.path = path;
	ci.host = host;
	ci.origin = host;
	ci.protocol = NULL; /* no Sec-WebSocket-Protocol: the server's default */
	ci.local_protocol_name = protocols[0].name;
	if (lws_client_connect_via_info(&ci) == NULL) {
		fprintf(stderr, "ws-client: cannot start connecting to %s:%d\n", host, port);
		goto out;
	}
	lws_sul_schedule(ctx, 0, &c.sul_timeout, wsc_timeout_cb,
			 (lws_usec_t)o.timeout_s * LWS_US_PER_SEC);

	while (!c.finished) {
		if (lws_service(ctx, 0) < 0) {
			wsc_finish(&c, WSC_EXIT_CONNECT);
			break;
		}
		if (wsc_unpause_requested) {
			wsc_unpause_requested = 0;
			c.pause_done = 1;
			wsc_read_resume(&c);
		}
	}
	rc = c.exit_code;

out:
	if (ctx != NULL) {
		lws_sul_cancel(&c.sul_timeout);
		lws_sul_cancel(&c.sul_read);
		lws_sul_cancel(&c.sul_tick);
		lws_context_destroy(ctx);
	}
	free(c.rx);
	free(c.acks);
	return rc;
}

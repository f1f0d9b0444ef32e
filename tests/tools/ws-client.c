/* ws-client: a small WebSocket client for the integration tests (libwebsockets only). */
/*
 * ws-client --url ws://HOST:PORT/PATH?QUERY [--send JSON]... [--until TYPE]
 *           [--count N] [--timeout SECONDS] [--timestamps] [--pong]
 *           [--send-big BYTES]
 *
 * Connects without a subprotocol, sends every --send message in order once
 * the connection is up (then, with --send-big, one text message of exactly
 * BYTES bytes: {"type":"ping","pad":"xxx..."}), and prints each received text message as one line on
 * stdout (flushed per line), with --timestamps prefixed by the wall-clock
 * time of arrival in microseconds. The server's JSON {"type":"ping"} is
 * answered with {"type":"pong"} only with --pong: by default the client
 * sends nothing but its --send messages (a silent client for heartbeat
 * tests); WebSocket control-frame pings are always answered by lws. Exit
 * status:
 *   0  a message whose top-level "type" equals --until arrived, or --count
 *      messages arrived
 *   1  timeout (default 10 s)
 *   2  could not connect (or bad arguments)
 *   3  the server closed the connection; a line "close <code>" is printed
 *      first (1005 when the close frame had no code, 1006 when the TCP
 *      connection ended without a close frame)
 *
 * It deliberately links nothing but libwebsockets: the "type" member is
 * found with a tiny scanner rather than a JSON library.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#define WSC_MAX_SEND 64                 /* --send messages */
#define WSC_MAX_MESSAGE (16u << 20)     /* one received message */
#define WSC_MAX_HOST 256
#define WSC_MAX_PATH 4096

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
};

struct wsc {
	const struct wsc_opts *o;
	struct lws_context *ctx;
	lws_sorted_usec_list_t sul_timeout;
	int exit_code;          /* -1 until the outcome is known */
	int finished;           /* the connection is gone (or given up on) */
	int closing;            /* outcome known: close from WRITEABLE */
	int next_send;          /* index of the next --send to write */
	int big_sent;           /* the --send-big message went out */
	int pongs_due;          /* JSON pongs to write */
	long received;          /* complete text messages */
	int close_code;         /* from the peer's close frame, -1 if none */
	unsigned char *rx;      /* the message being assembled */
	size_t rx_len;
	size_t rx_cap;
	int rx_binary;
};

/* Ends the run with `code` unless an earlier outcome was already decided. */
static void
wsc_finish(struct wsc *c, int code)
{
	if (c->exit_code < 0)
		c->exit_code = code;
}

/* Finds the string value of the top-level "type" member of the JSON object
 * in s[0..n). Escapes inside the value are copied as they are (types are
 * plain words). Returns 0 with a NUL-terminated copy in `out`, or -1. */
static int
wsc_json_type(const char *s, size_t n, char *out, size_t outlen)
{
	int depth = 0;
	size_t i, start, end, j;

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
		if (depth != 1 || end - start != 4 || memcmp(s + start, "type", 4) != 0)
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
			return -1;
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

/* One complete message: print it and decide whether we are done. */
static void
wsc_message(struct wsc *c)
{
	char type[128];

	if (c->rx_binary || c->exit_code >= 0)
		return; /* text frames only; nothing after the outcome */
	if (c->o->timestamps) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		printf("%lld ", (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
	}
	fwrite(c->rx, 1, c->rx_len, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	c->received++;
	if (c->o->pong && wsc_json_type((const char *)c->rx, c->rx_len, type, sizeof type) == 0 &&
	    strcmp(type, "ping") == 0)
		c->pongs_due++;
	if (c->o->until != NULL &&
	    wsc_json_type((const char *)c->rx, c->rx_len, type, sizeof type) == 0 &&
	    strcmp(type, c->o->until) == 0)
		wsc_finish(c, WSC_EXIT_OK);
	if (c->o->count > 0 && c->received >= c->o->count)
		wsc_finish(c, WSC_EXIT_OK);
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
 * then the next --send, then the --send-big message. */
static int
wsc_write_next(struct lws *wsi, struct wsc *c)
{
	const char *msg;

	if (c->pongs_due > 0) {
		msg = "{\"type\":\"pong\"}";
		if (wsc_write_text(wsi, msg, strlen(msg)) < 0)
			return -1;
		c->pongs_due--;
	} else if (c->next_send < c->o->nsend) {
		msg = c->o->send[c->next_send];
		if (wsc_write_text(wsi, msg, strlen(msg)) < 0)
			return -1;
		c->next_send++;
	} else if (c->o->send_big > 0 && !c->big_sent) {
		if (wsc_write_big(wsi, (size_t)c->o->send_big) < 0)
			return -1;
		c->big_sent = 1;
	} else {
		return 0;
	}
	if (c->pongs_due > 0 || c->next_send < c->o->nsend ||
	    (c->o->send_big > 0 && !c->big_sent))
		lws_callback_on_writable(wsi);
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

	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (c->o->nsend > 0 || c->o->send_big > 0)
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
			if (c->pongs_due > 0)
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
		"       [--send-big BYTES]\n");
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
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	char *endp;

	o->timeout_s = 10;
	for (;;) {
		ch = getopt_long(argc, argv, "u:s:t:c:T:SPB:h", longopts, NULL);
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
	}
	rc = c.exit_code;

out:
	if (ctx != NULL) {
		lws_sul_cancel(&c.sul_timeout);
		lws_context_destroy(ctx);
	}
	free(c.rx);
	return rc;
}

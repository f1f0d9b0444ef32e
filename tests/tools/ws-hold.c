/* ws-hold: opens many WebSocket connections and holds them (benchmarks: memory per connection). */
/*
 * ws-hold --url ws://HOST:PORT/PATH?QUERY --connections N [--hold SECONDS]
 *         [--rate PER_SECOND] [--timeout SECONDS]
 *
 * Opens N client connections to the same URL (libwebsockets only, no
 * subprotocol), at most PER_SECOND new ones a second (default 500), and
 * counts those that received a message whose text contains
 * "authenticated". Once all N are authenticated it prints
 * "authenticated N" (flushed), holds them for SECONDS (default 0) and
 * exits 0. It answers the server's JSON {"type":"ping"} with a pong so the
 * connections stay up. Exit 1: not all authenticated within the timeout
 * (default 120 s), with the counts on stderr; 2: bad arguments.
 */
#include "config.h"

#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#define WSH_MAX_CONNECTIONS 100000
#define WSH_TICK_MS 20

struct wsh {
	struct lws_context *ctx;
	char host[256];
	char path[4096];
	int port;
	long want, rate_per_s, hold_s, timeout_s;
	long started, connected, authenticated, closed;
	int64_t t0_ms, all_ms;
	int done, rc;
	lws_sorted_usec_list_t sul;
};

/* Per connection: does it owe a pong? */
struct wsh_conn {
	int pong_due;
};

static int64_t
now_ms(void)
{
	return (int64_t)(lws_now_usecs() / 1000);
}

static void
wsh_connect_one(struct wsh *h)
{
	struct lws_client_connect_info ci;

	memset(&ci, 0, sizeof ci);
	ci.context = h->ctx;
	ci.address = h->host;
	ci.port = h->port;
	ci.path = h->path;
	ci.host = h->host;
	ci.origin = h->host;
	ci.protocol = NULL;
	if (lws_client_connect_via_info(&ci) != NULL)
		h->started++;
}

static void
wsh_tick(lws_sorted_usec_list_t *sul)
{
	struct wsh *h = lws_container_of(sul, struct wsh, sul);
	int64_t now = now_ms(), elapsed = now - h->t0_ms;
	long allowed = (long)(elapsed * h->rate_per_s / 1000) + 1;

	while (h->started < h->want && h->started < allowed)
		wsh_connect_one(h);
	if (h->authenticated >= h->want) {
		if (h->all_ms == 0) {
			h->all_ms = now;
			printf("authenticated %ld in %lld ms\n", h->authenticated,
			       (long long)(now - h->t0_ms));
			fflush(stdout);
		}
		if (now - h->all_ms >= h->hold_s * 1000) {
			h->done = 1;
			h->rc = 0;
			return;
		}
	} else if (elapsed > h->timeout_s * 1000) {
		fprintf(stderr, "ws-hold: timeout: started %ld connected %ld authenticated %ld closed %ld\n",
			h->started, h->connected, h->authenticated, h->closed);
		h->done = 1;
		h->rc = 1;
		return;
	}
	lws_sul_schedule(h->ctx, 0, &h->sul, wsh_tick, WSH_TICK_MS * LWS_US_PER_MS);
}

static int
wsh_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct wsh *h = lws_context_user(lws_get_context(wsi));
	struct wsh_conn *c = user;
	unsigned char buf[LWS_PRE + 32];
	static const char pong[] = "{\"type\":\"pong\"}";

	switch (reason) {
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		h->connected++;
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (in != NULL && len > 0 && memmem(in, len, "\"authenticated\"", 15) != NULL)
			h->authenticated++;
		if (c != NULL && in != NULL && memmem(in, len, "\"type\":\"ping\"", 13) != NULL) {
			c->pong_due = 1;
			lws_callback_on_writable(wsi);
		}
		break;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (c != NULL && c->pong_due) {
			c->pong_due = 0;
			memcpy(buf + LWS_PRE, pong, sizeof pong - 1);
			if (lws_write(wsi, buf + LWS_PRE, sizeof pong - 1, LWS_WRITE_TEXT) < 0)
				return -1;
		}
		break;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
	case LWS_CALLBACK_CLIENT_CLOSED:
		h->closed++;
		break;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols wsh_protocols[] = {
	{ "ws-hold", wsh_callback, sizeof(struct wsh_conn), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void
usage(void)
{
	fprintf(stderr, "usage: ws-hold --url ws://HOST:PORT/PATH --connections N "
		"[--hold S] [--rate N] [--timeout S]\n");
	exit(2);
}

/* Splits ws://host:port/path into h. Returns 0 or -1. */
static int
wsh_parse_url(struct wsh *h, const char *url)
{
	const char *p, *slash, *colon;
	size_t n;

	if (strncmp(url, "ws://", 5) != 0)
		return -1;
	p = url + 5;
	slash = strchr(p, '/');
	if (slash == NULL)
		slash = p + strlen(p);
	colon = memchr(p, ':', (size_t)(slash - p));
	n = (size_t)((colon != NULL ? colon : slash) - p);
	if (n == 0 || n >= sizeof h->host)
		return -1;
	memcpy(h->host, p, n);
	h->host[n] = '\0';
	h->port = colon != NULL ? atoi(colon + 1) : 80;
	if (h->port <= 0 || h->port > 65535 || strlen(slash) >= sizeof h->path)
		return -1;
	snprintf(h->path, sizeof h->path, "%s", *slash != '\0' ? slash : "/");
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "connections", required_argument, NULL, 'n' },
		{ "hold", required_argument, NULL, 'H' },
		{ "rate", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct lws_context_creation_info info;
	struct wsh h;
	const char *url = NULL;
	int ch;

	memset(&h, 0, sizeof h);
	h.rate_per_s = 500;
	h.timeout_s = 120;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u': url = optarg; break;
		case 'n': h.want = strtol(optarg, NULL, 10); break;
		case 'H': h.hold_s = strtol(optarg, NULL, 10); break;
		case 'r': h.rate_per_s = strtol(optarg, NULL, 10); break;
		case 't': h.timeout_s = strtol(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (url == NULL || wsh_parse_url(&h, url) < 0 || h.want < 1 ||
	    h.want > WSH_MAX_CONNECTIONS || h.rate_per_s < 1 || h.hold_s < 0 || h.timeout_s < 1)
		usage();

	lws_set_log_level(LLL_ERR, NULL);
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = wsh_protocols;
	info.user = &h;
	info.gid = -1;
	info.uid = -1;
	info.fd_limit_per_thread = (unsigned int)h.want + 64;
	h.ctx = lws_create_context(&info);
	if (h.ctx == NULL) {
		fprintf(stderr, "ws-hold: cannot create the lws context\n");
		return 2;
	}
	h.t0_ms = now_ms();
	lws_sul_schedule(h.ctx, 0, &h.sul, wsh_tick, 1);
	while (!h.done && lws_service(h.ctx, 0) >= 0)
		;
	lws_context_destroy(h.ctx);
	return h.rc;
}

/* listen: capsule-wsd's listening socket (SO_REUSEPORT) and its accept loop inside lws. */
#include "config.h"

#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "cg_log.h"
#include "listen.h"

#define LISTEN_BACKLOG 1024
#define ACCEPT_BURST 64          /* connections accepted per wake-up at most */
#define ACCEPT_PAUSE_MS 100      /* out of descriptors: wait this long */

/* Per-vhost state of the listener protocol. */
typedef struct listen_vh {
	struct lws *wsi;             /* the adopted listening socket */
	int paused;
	int64_t emfile_logged_s;     /* last "out of descriptors" log line */
	lws_sorted_usec_list_t sul_resume;
} listen_vh;

static void
listen_resume_cb(lws_sorted_usec_list_t *sul)
{
	listen_vh *lv = lws_container_of(sul, listen_vh, sul_resume);

	lv->paused = 0;
	if (lv->wsi != NULL)
		lws_rx_flow_control(lv->wsi, 1);
}

/* Accepts what waits on the listening socket `lfd` and gives it to lws. */
static void
listen_accept(struct lws *wsi, listen_vh *lv, int lfd)
{
	struct lws_vhost *vh = lws_get_vhost(wsi);
	int i, fd;

	for (i = 0; i < ACCEPT_BURST; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				int64_t now = (int64_t)time(NULL);

				if (now - lv->emfile_logged_s >= 10) {
					cg_log_warn("accept: %s: new connections wait (raise the fd "
						    "limit or run another instance)", strerror(errno));
					lv->emfile_logged_s = now;
				}
				lv->paused = 1;
				lws_rx_flow_control(wsi, 0);
				lws_sul_schedule(lws_get_context(wsi), 0, &lv->sul_resume, listen_resume_cb,
						 (lws_usec_t)ACCEPT_PAUSE_MS * LWS_US_PER_MS);
				return;
			}
			cg_log_warn("accept: %s", strerror(errno));
			return;
		}
		/* On failure lws has closed fd already. */
		if (lws_adopt_socket_vhost(vh, fd) == NULL)
			cg_log_warn("a new connection could not be adopted (out of memory?)");
	}
}

int
wsd_listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		size_t len)
{
	listen_vh *lv = lws_protocol_vh_priv_get(lws_get_vhost(wsi), lws_get_protocol(wsi));

	(void)user;
	(void)in;
	(void)len;
	switch (reason) {
	case LWS_CALLBACK_PROTOCOL_INIT:
		lv = lws_protocol_vh_priv_zalloc(lws_get_vhost(wsi), lws_get_protocol(wsi), sizeof *lv);
		return lv == NULL ? -1 : 0;
	case LWS_CALLBACK_PROTOCOL_DESTROY:
		if (lv != NULL)
			lws_sul_cancel(&lv->sul_resume);
		return 0;
	case LWS_CALLBACK_RAW_ADOPT_FILE:
		if (lv != NULL)
			lv->wsi = wsi;
		return 0;
	case LWS_CALLBACK_RAW_RX_FILE:
		if (lv != NULL && !lv->paused)
			listen_accept(wsi, lv, (int)lws_get_socket_fd(wsi));
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (lv != NULL) {
			lws_sul_cancel(&lv->sul_resume);
			lv->wsi = NULL;
		}
		return 0;
	default:
		return 0;
	}
}


/* A listening socket on `ai`, or -1 with the reason in err. */
static int
listen_on(const struct addrinfo *ai, int v6_any, int reuse_port, const char *host, long port,
	  char *err, size_t errlen)
{
	int fd, one = 1, zero = 0;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
	    (v6_any && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "listen on %s:%ld: %s", host, port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
wsd_listen_open(const char *host, long port, int reuse_port, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	char service[16];
	const char *node = host;
	int fd = -1, rc, pass, v6_any;

	if (node != NULL && (node[0] == '\0' || strcmp(node, "*") == 0))
		node = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof service, "%ld", port);
	rc = getaddrinfo(node, service, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "host %s: %s", node != NULL ? node : "*", gai_strerror(rc));
		return -1;
	}
	/* Every address wanted: an IPv6 socket that takes IPv4 too is tried
	 * first (pass 0); then every other address in getaddrinfo's order. */
	for (pass = 0; pass < 2 && fd < 0; pass++) {
		for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
			v6_any = node == NULL && ai->ai_family == AF_INET6;
			if ((pass == 0) != v6_any)
				continue;
			fd = listen_on(ai, v6_any, reuse_port, node != NULL ? node : "*", port, err,
				       errlen);
		}
	}
	freeaddrinfo(res);
	return fd;
}

int
wsd_listen_adopt(struct lws_vhost *vh, int fd, char *err, size_t errlen)
{
	lws_sock_file_fd_type u;

	memset(&u, 0, sizeof u);
	u.filefd = fd;
	if (lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u, WSD_LISTEN_PROTOCOL,
				       NULL) == NULL) {
		snprintf(err, errlen, "the listening socket could not be added to the event loop");
		return -1;
	}
	return 0;
}

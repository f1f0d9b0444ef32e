/* listen: capsule-wsd's own listening socket, shared between instances with SO_REUSEPORT.
 *
 * Several instances must be able to listen on one address and port (the
 * kernel then spreads the connections). libwebsockets 4.1 sets SO_REUSEPORT
 * only when it is built for several service threads (LWS_MAX_SMP > 1), which
 * Debian's build is not, so the daemon opens the socket itself
 * (SO_REUSEADDR, SO_REUSEPORT when ws_reuse_port is set, non-blocking,
 * close-on-exec), the lws
 * context is created without a listener (CONTEXT_PORT_NO_LISTEN_SERVER), and
 * the socket is adopted into the lws event loop as a raw descriptor of the
 * protocol below. When it is readable, the protocol accepts what is waiting
 * (a bounded burst) and hands each connection to the vhost with
 * lws_adopt_socket_vhost(): from there on it is an ordinary lws HTTP
 * connection that may upgrade to a WebSocket. When accept() runs out of
 * file descriptors, the listener pauses for a short while instead of
 * spinning (the connections wait in the kernel's queue). Service thread
 * only. */
#ifndef WSD_LISTEN_H
#define WSD_LISTEN_H

#include <stddef.h>

#include <libwebsockets.h>

#define WSD_LISTEN_PROTOCOL "capsule-wsd-listen"

/* The protocol of the listening socket: server.c's protocol list holds
 * WSD_LISTEN_PROTOCOL_ENTRY after its own. */
int wsd_listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			void *in, size_t len);
#define WSD_LISTEN_PROTOCOL_ENTRY \
	{ WSD_LISTEN_PROTOCOL, wsd_listen_callback, 0, 0, 0, NULL, 0 }

/* Opens, binds and listens on `host` (an address or "localhost"; "" or "*"
 * for every address, IPv6 and IPv4) and `port`, with SO_REUSEPORT when
 * `reuse_port` (ws_reuse_port: off by default, so that a second instance
 * started by mistake fails instead of silently sharing). Returns the
 * socket, or -1 with the reason in err. */
int wsd_listen_open(const char *host, long port, int reuse_port, char *err, size_t errlen);

/* Hands the socket to the event loop of vhost `vh` (ownership moves: lws
 * closes it with the context). Returns 0, or -1 with the reason (the socket
 * is closed then). */
int wsd_listen_adopt(struct lws_vhost *vh, int fd, char *err, size_t errlen);

#endif

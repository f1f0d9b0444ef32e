/* server: the capsule-wsd WebSocket protocol: sessions, authentication, heartbeat and fan-out.
 *
 * State is kept at three levels, as in the libwebsockets minimal examples:
 *   wsd_app      per process, owned by main.c, reached through
 *                lws_context_user(): configuration, the stream reader, the
 *                count of authenticated connections, the stop flag;
 *   per vhost    (server.c) the list of sessions, the fan-out and the
 *                connection limits (connlimit.h; over a limit the upgrade
 *                is accepted and closed with 4429);
 *   per session  (server.c) authentication, subscriptions, heartbeat, the
 *                assembly buffer, a capped queue of outgoing messages
 *                that point at shared, reference-counted message buffers,
 *                and the highest activity version sent per capsule
 *                (order.h) so versions never go back.
 * Everything here runs on the lws service thread; only `nconns` is read by
 * the stream thread. Once a second, when the sessions changed (and every
 * 4 s anyway), the service thread builds a snapshot of the authenticated
 * sessions (capped at ws_max_connections) and hands it to the stream thread
 * (wsd_stream_set_registry), which writes it to Redis; the stream thread
 * never touches lws state. */
#ifndef WSD_SERVER_H
#define WSD_SERVER_H

#include <stdatomic.h>

#include <libwebsockets.h>

#include "cg_config.h"
#include "stream.h"
#include "worker.h"

struct wsd_vhost;

typedef struct wsd_app {
	const cg_config *cfg;      /* borrowed; outlives the lws context */
	wsd_stream *stream;        /* set once the reader runs; may be NULL */
	wsd_worker *worker;        /* PostgreSQL/Redis questions; may be NULL */
	atomic_int nconns;         /* authenticated sessions (registry count) */
	int stopping;              /* set by wsd_server_shutdown() */
	struct wsd_vhost *vhost;   /* set by the protocol while the vhost lives */
} wsd_app;

/* The protocol list for lws_context_creation_info.protocols. Our protocol
 * is first, so it is the one used when a client names no subprotocol; it
 * also answers plain HTTP (404 for everything). */
extern const struct lws_protocols wsd_protocols[];

/* Starts a graceful stop: refuses new connections and closes every session
 * with 1001 (going away). Service thread only. */
void wsd_server_shutdown(wsd_app *app);

/* Number of open WebSocket sessions (authenticated or not). */
int wsd_server_sessions(const wsd_app *app);

#endif

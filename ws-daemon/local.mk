# capsule-wsd: the WebSocket daemon.
sbin_PROGRAMS += ws-daemon/capsule-wsd
ws_daemon_capsule_wsd_SOURCES = \
	ws-daemon/main.c \
	ws-daemon/server.c ws-daemon/server.h \
	ws-daemon/connlimit.c ws-daemon/connlimit.h \
	ws-daemon/listen.c ws-daemon/listen.h \
	ws-daemon/order.c ws-daemon/order.h \
	ws-daemon/stream.c ws-daemon/stream.h \
	ws-daemon/worker.c ws-daemon/worker.h
ws_daemon_capsule_wsd_CFLAGS = $(AM_CFLAGS) $(CG_LIB_CFLAGS) $(LWS_CFLAGS)
ws_daemon_capsule_wsd_LDADD = lib/libcapsule.la $(CG_LIB_LIBS) $(LWS_LIBS)

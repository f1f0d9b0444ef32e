# capsule-pushd: the delivery daemon (APNs for now).
sbin_PROGRAMS += push-daemon/capsule-pushd
push_daemon_capsule_pushd_SOURCES = \
	push-daemon/main.c \
	push-daemon/pushd.h \
	push-daemon/worker.c \
	push-daemon/apns.c push-daemon/apns.h \
	push-daemon/apns_payload.c push-daemon/apns_payload.h \
	push-daemon/webpush_payload.c push-daemon/webpush_payload.h \
	push-daemon/webpush.c push-daemon/webpush.h \
	push-daemon/creds.c push-daemon/creds.h \
	push-daemon/queue.c push-daemon/queue.h
push_daemon_capsule_pushd_CFLAGS = $(AM_CFLAGS) $(CG_LIB_CFLAGS) $(CURL_CFLAGS)
push_daemon_capsule_pushd_LDADD = lib/libcapsule.la $(CG_LIB_LIBS) $(CURL_LIBS)

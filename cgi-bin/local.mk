# The FastCGI program that serves the REST API.
sbin_PROGRAMS += cgi-bin/capsule-gateway.fcgi
cgi_bin_capsule_gateway_fcgi_SOURCES = \
	cgi-bin/main.c \
	cgi-bin/request.c cgi-bin/request.h \
	cgi-bin/router.c cgi-bin/router.h \
	cgi-bin/handlers.h \
	cgi-bin/activities.c \
	cgi-bin/activity.c \
	cgi-bin/admin_audit.c \
	cgi-bin/admin_connections.c \
	cgi-bin/admin_deliveries.c \
	cgi-bin/audit.c cgi-bin/audit.h \
	cgi-bin/auth.c cgi-bin/auth.h \
	cgi-bin/change.c cgi-bin/change.h \
	cgi-bin/cors.c cgi-bin/cors.h \
	cgi-bin/devices.c \
	cgi-bin/events.c \
	cgi-bin/health.c \
	cgi-bin/history.c \
	cgi-bin/idempotency.c cgi-bin/idempotency.h \
	cgi-bin/live_activity.c \
	cgi-bin/push_subscriptions.c \
	cgi-bin/ratelimit.c cgi-bin/ratelimit.h \
	cgi-bin/runtime_stats.c cgi-bin/runtime_stats.h \
	cgi-bin/ws_token.c
cgi_bin_capsule_gateway_fcgi_CFLAGS = $(AM_CFLAGS) $(CG_LIB_CFLAGS) $(FCGI_CFLAGS)
cgi_bin_capsule_gateway_fcgi_LDADD = lib/libcapsule.la $(CG_LIB_LIBS) $(FCGI_LIBS)

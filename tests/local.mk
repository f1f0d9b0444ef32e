# Tests: unit tests (C, TAP), test tools (fake APNs, WebSocket client) and the
# integration suite that starts real servers on 127.0.0.1.
TEST_EXTENSIONS = .sh
LOG_DRIVER = env AM_TAP_AWK='$(AWK)' $(SHELL) $(top_srcdir)/build-aux/tap-driver.sh
SH_LOG_DRIVER = $(LOG_DRIVER)
SH_LOG_COMPILER = $(SHELL)
AM_TESTS_ENVIRONMENT = \
	top_srcdir='$(abs_top_srcdir)'; top_builddir='$(abs_top_builddir)'; \
	export top_srcdir top_builddir;

CG_TEST_CFLAGS = $(AM_CFLAGS) $(CG_LIB_CFLAGS) -I$(top_srcdir)/tests/unit
CG_TEST_LDADD = lib/libcapsule.la $(CG_LIB_LIBS)

CG_UNIT_TESTS = \
	tests/unit/test_config \
	tests/unit/test_log \
	tests/unit/test_json \
	tests/unit/test_util \
	tests/unit/test_jwt \
	tests/unit/test_activity \
	tests/unit/test_event \
	tests/unit/test_db \
	tests/unit/test_redis \
	tests/unit/test_apns_payload \
	tests/unit/test_auth \
	tests/unit/test_device \
	tests/unit/test_state \
	tests/unit/test_query \
	tests/unit/test_wsd_order \
	tests/unit/test_history \
	tests/unit/test_webpush \
	tests/unit/test_webpush_payload \
	tests/unit/test_pushsub \
	tests/unit/test_push_creds
check_PROGRAMS += $(CG_UNIT_TESTS)
TESTS += $(CG_UNIT_TESTS)

tests_unit_test_config_SOURCES = tests/unit/test_config.c tests/unit/tap.h
tests_unit_test_config_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_config_LDADD = $(CG_TEST_LDADD)
tests_unit_test_log_SOURCES = tests/unit/test_log.c tests/unit/tap.h
tests_unit_test_log_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_log_LDADD = $(CG_TEST_LDADD)
tests_unit_test_json_SOURCES = tests/unit/test_json.c tests/unit/tap.h
tests_unit_test_json_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_json_LDADD = $(CG_TEST_LDADD)
tests_unit_test_util_SOURCES = tests/unit/test_util.c tests/unit/tap.h
tests_unit_test_util_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_util_LDADD = $(CG_TEST_LDADD)
tests_unit_test_jwt_SOURCES = tests/unit/test_jwt.c tests/unit/tap.h
tests_unit_test_jwt_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_jwt_LDADD = $(CG_TEST_LDADD)
tests_unit_test_activity_SOURCES = tests/unit/test_activity.c tests/unit/tap.h tests/unit/test_schema.h
tests_unit_test_activity_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_activity_LDADD = $(CG_TEST_LDADD)
tests_unit_test_event_SOURCES = tests/unit/test_event.c tests/unit/tap.h tests/unit/test_schema.h
tests_unit_test_event_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_event_LDADD = $(CG_TEST_LDADD)
tests_unit_test_db_SOURCES = tests/unit/test_db.c tests/unit/tap.h
tests_unit_test_db_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_db_LDADD = $(CG_TEST_LDADD)
tests_unit_test_redis_SOURCES = tests/unit/test_redis.c tests/unit/tap.h
tests_unit_test_redis_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_redis_LDADD = $(CG_TEST_LDADD)
tests_unit_test_apns_payload_SOURCES = tests/unit/test_apns_payload.c tests/unit/tap.h \
	tests/unit/payload_check.h \
	push-daemon/apns_payload.c push-daemon/apns_payload.h
tests_unit_test_apns_payload_CFLAGS = $(CG_TEST_CFLAGS) -I$(top_srcdir)/push-daemon
tests_unit_test_apns_payload_LDADD = $(CG_TEST_LDADD)
tests_unit_test_auth_SOURCES = tests/unit/test_auth.c tests/unit/tap.h
tests_unit_test_auth_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_auth_LDADD = $(CG_TEST_LDADD)
tests_unit_test_device_SOURCES = tests/unit/test_device.c tests/unit/tap.h tests/unit/test_schema.h
tests_unit_test_device_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_device_LDADD = $(CG_TEST_LDADD)
tests_unit_test_state_SOURCES = tests/unit/test_state.c tests/unit/tap.h
tests_unit_test_state_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_state_LDADD = $(CG_TEST_LDADD)
tests_unit_test_query_SOURCES = tests/unit/test_query.c tests/unit/tap.h tests/unit/test_schema.h
tests_unit_test_query_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_query_LDADD = $(CG_TEST_LDADD)
tests_unit_test_wsd_order_SOURCES = tests/unit/test_wsd_order.c tests/unit/tap.h \
	ws-daemon/order.c ws-daemon/order.h ws-daemon/connlimit.c ws-daemon/connlimit.h
tests_unit_test_wsd_order_CFLAGS = $(CG_TEST_CFLAGS) -I$(top_srcdir)/ws-daemon
tests_unit_test_wsd_order_LDADD = $(CG_TEST_LDADD)
tests_unit_test_history_SOURCES = tests/unit/test_history.c tests/unit/tap.h tests/unit/test_schema.h
tests_unit_test_history_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_history_LDADD = $(CG_TEST_LDADD)
tests_unit_test_webpush_SOURCES = tests/unit/test_webpush.c tests/unit/tap.h
tests_unit_test_webpush_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_webpush_LDADD = $(CG_TEST_LDADD)
tests_unit_test_webpush_payload_SOURCES = tests/unit/test_webpush_payload.c tests/unit/tap.h \
	tests/unit/payload_check.h \
	push-daemon/webpush_payload.c push-daemon/webpush_payload.h \
	push-daemon/apns_payload.c push-daemon/apns_payload.h
tests_unit_test_webpush_payload_CFLAGS = $(CG_TEST_CFLAGS) -I$(top_srcdir)/push-daemon
tests_unit_test_webpush_payload_LDADD = $(CG_TEST_LDADD)
tests_unit_test_pushsub_SOURCES = tests/unit/test_pushsub.c tests/unit/tap.h tests/unit/test_schema.h
tests_unit_test_pushsub_CFLAGS = $(CG_TEST_CFLAGS)
tests_unit_test_pushsub_LDADD = $(CG_TEST_LDADD)
tests_unit_test_push_creds_SOURCES = tests/unit/test_push_creds.c tests/unit/tap.h \
	push-daemon/creds.c push-daemon/creds.h
tests_unit_test_push_creds_CFLAGS = $(CG_TEST_CFLAGS) -I$(top_srcdir)/push-daemon
tests_unit_test_push_creds_LDADD = $(CG_TEST_LDADD)

# Test tools: local stand-ins for the outside world.
check_PROGRAMS += tests/tools/fake-apns tests/tools/ws-client
tests_tools_fake_apns_SOURCES = tests/tools/fake-apns.c tests/tools/fake_common.c tests/tools/fake_common.h
tests_tools_fake_apns_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(NGHTTP2_CFLAGS) $(JSONC_CFLAGS)
tests_tools_fake_apns_LDADD = $(OPENSSL_LIBS) $(NGHTTP2_LIBS) $(JSONC_LIBS)
check_PROGRAMS += tests/tools/fake-webpush
tests_tools_fake_webpush_SOURCES = tests/tools/fake-webpush.c tests/tools/fake_common.c tests/tools/fake_common.h
tests_tools_fake_webpush_CFLAGS = $(CG_TEST_CFLAGS)
tests_tools_fake_webpush_LDADD = $(CG_TEST_LDADD)
tests_tools_ws_client_SOURCES = tests/tools/ws-client.c
tests_tools_ws_client_CFLAGS = $(AM_CFLAGS) $(LWS_CFLAGS)
tests_tools_ws_client_LDADD = $(LWS_LIBS)
check_PROGRAMS += tests/tools/ws-hold
tests_tools_ws_hold_SOURCES = tests/tools/ws-hold.c
tests_tools_ws_hold_CFLAGS = $(AM_CFLAGS) $(LWS_CFLAGS)
tests_tools_ws_hold_LDADD = $(LWS_LIBS)
check_PROGRAMS += tests/tools/jwt-sign
tests_tools_jwt_sign_SOURCES = tests/tools/jwt-sign.c
tests_tools_jwt_sign_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS)
tests_tools_jwt_sign_LDADD = $(OPENSSL_LIBS)

# Integration: real PostgreSQL, Redis, lighttpd + spawn-fcgi and both daemons.
TESTS += tests/integration/e2e.sh
TESTS += tests/integration/security.sh
TESTS += tests/integration/api.sh
TESTS += tests/integration/ws.sh
EXTRA_DIST += tests/stack.sh tests/integration/e2e.sh tests/integration/lib.sh
EXTRA_DIST += tests/integration/security.sh
EXTRA_DIST += tests/integration/api.sh
EXTRA_DIST += tests/integration/ws.sh
TESTS += tests/integration/channels.sh
EXTRA_DIST += tests/integration/channels.sh
# The same suites run behind lighttpd, Apache and nginx (STACK_WEB); paths.sh
# checks what the program sees of a request through each.
TESTS += tests/integration/paths.sh
EXTRA_DIST += tests/integration/paths.sh
TESTS += tests/integration/registry.sh
EXTRA_DIST += tests/integration/registry.sh
TESTS += tests/integration/resume.sh
EXTRA_DIST += tests/integration/resume.sh
TESTS += tests/integration/agents.sh
EXTRA_DIST += tests/integration/agents.sh
TESTS += tests/integration/instances.sh
EXTRA_DIST += tests/integration/instances.sh
TESTS += tests/integration/deliveries.sh
EXTRA_DIST += tests/integration/deliveries.sh
TESTS += tests/integration/webpush.sh
EXTRA_DIST += tests/integration/webpush.sh
TESTS += tests/integration/webpush_delivery.sh
EXTRA_DIST += tests/integration/webpush_delivery.sh
TESTS += tests/integration/liveactivity.sh
EXTRA_DIST += tests/integration/liveactivity.sh
TESTS += tests/integration/push_tenants.sh
EXTRA_DIST += tests/integration/push_tenants.sh

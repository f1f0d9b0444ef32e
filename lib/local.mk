# libcapsule: code shared by every program. No main().
noinst_LTLIBRARIES += lib/libcapsule.la
lib_libcapsule_la_CFLAGS = $(AM_CFLAGS) $(CG_LIB_CFLAGS)
lib_libcapsule_la_SOURCES = \
	lib/cg_activity.c lib/cg_activity.h \
	lib/cg_auth.c lib/cg_auth.h \
	lib/cg_config.c lib/cg_config.h \
	lib/cg_db.c lib/cg_db.h \
	lib/cg_device.c lib/cg_device.h \
	lib/cg_event.c lib/cg_event.h \
	lib/cg_history.c lib/cg_history.h \
	lib/cg_json.c lib/cg_json.h \
	lib/cg_jwt.c lib/cg_jwt.h \
	lib/cg_log.c lib/cg_log.h \
	lib/cg_pushsub.c lib/cg_pushsub.h \
	lib/cg_query.c lib/cg_query.h \
	lib/cg_redis.c lib/cg_redis.h \
	lib/cg_state.c lib/cg_state.h \
	lib/cg_util.c lib/cg_util.h \
	lib/cg_webpush.c lib/cg_webpush.h
lib_libcapsule_la_LIBADD = $(CG_LIB_LIBS)

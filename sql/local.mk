# Schema migrations and the program that applies them.
sqldir = $(pkgdatadir)/sql
dist_sql_DATA = sql/001_initial.sql sql/002_security.sql sql/003_api.sql \
	sql/004_event_audience.sql sql/005_ws_resume.sql \
	sql/006_deliveries.sql sql/007_push_subscriptions.sql

sbin_PROGRAMS += sql/capsule-migrate
sql_capsule_migrate_SOURCES = sql/capsule-migrate.c
sql_capsule_migrate_CFLAGS = $(AM_CFLAGS) $(CG_LIB_CFLAGS)
sql_capsule_migrate_CPPFLAGS = $(AM_CPPFLAGS) -DCG_SQLDIR='"$(sqldir)"'
sql_capsule_migrate_LDADD = lib/libcapsule.la $(CG_LIB_LIBS)

sbin_PROGRAMS += sql/capsule-admin
sql_capsule_admin_SOURCES = sql/capsule-admin.c
sql_capsule_admin_CFLAGS = $(AM_CFLAGS) $(CG_LIB_CFLAGS)
sql_capsule_admin_LDADD = lib/libcapsule.la $(CG_LIB_LIBS)

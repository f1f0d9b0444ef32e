# Manual pages for the programs and the config file.
dist_man_MANS = \
	man/capsule-admin.8 \
	man/capsule-gateway.conf.5 \
	man/capsule-gateway.fcgi.8 \
	man/capsule-migrate.8 \
	man/capsule-pushd.8 \
	man/capsule-wsd.8

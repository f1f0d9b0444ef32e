# Example configuration, installed as documentation-like data.
examplesdir = $(pkgdatadir)/examples
dist_examples_DATA = \
	etc/capsule-gateway.conf.example \
	etc/lighttpd.conf.example

# Example configuration: the gateway's config file and web server snippets.
examplesdir = $(pkgdatadir)/examples
dist_examples_DATA = \
	etc/capsule-gateway.conf.example \
	etc/lighttpd.conf.example \
	etc/apache.conf.example \
	etc/nginx.conf.example \
	etc/systemd/capsule-gateway-fcgi.service \
	etc/systemd/capsule-wsd.service \
	etc/systemd/capsule-pushd.service
# Installed under a flat name next to the other examples.
install-data-local:
	$(MKDIR_P) '$(DESTDIR)$(examplesdir)'
	$(INSTALL_DATA) '$(srcdir)/etc/lighttpd/capsule-gateway.conf' '$(DESTDIR)$(examplesdir)/lighttpd-capsule-gateway.conf'
	$(INSTALL_DATA) '$(srcdir)/etc/apache/capsule-gateway.conf' '$(DESTDIR)$(examplesdir)/apache-capsule-gateway.conf'
	$(INSTALL_DATA) '$(srcdir)/etc/nginx/capsule-gateway.conf' '$(DESTDIR)$(examplesdir)/nginx-capsule-gateway.conf'
uninstall-local:
	rm -f '$(DESTDIR)$(examplesdir)/lighttpd-capsule-gateway.conf'
	rm -f '$(DESTDIR)$(examplesdir)/apache-capsule-gateway.conf'
	rm -f '$(DESTDIR)$(examplesdir)/nginx-capsule-gateway.conf'
EXTRA_DIST += etc/lighttpd/capsule-gateway.conf
EXTRA_DIST += etc/apache/capsule-gateway.conf etc/nginx/capsule-gateway.conf

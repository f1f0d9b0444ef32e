/* fake_common: stderr messages, TLS context, listener and port file of the fake services. */
#include "config.h"

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "fake_common.h"

static const char *fake_name = "fake";

void fake_set_name(const char *name)
{
	fake_name = name;
}

void fake_warn(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", fake_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

SSL_CTX *fake_tls_server(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		fake_warn("cannot load certificate %s", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		fake_warn("cannot load key %s (or it does not match the certificate)", key);
		goto fail;
	}
	return ctx;
fail:
	ERR_print_errors_fp(stderr);
	SSL_CTX_free(ctx);
	return NULL;
}

int fake_listen(int port, int backlog, int *bound)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	int one = 1, fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, backlog) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		goto fail;
	*bound = ntohs(sa.sin_port);
	return fd;
fail:
	fake_warn("listen on 127.0.0.1:%d: %s", port, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int fake_write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f = NULL;
	int rc = -1;

	if ((size_t)snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= sizeof tmp)
		goto out;
	f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%d\n", port) < 0)
		goto out;
	if (fclose(f) != 0) {
		f = NULL;
		goto out;
	}
	f = NULL;
	if (rename(tmp, path) < 0)
		goto out;
	rc = 0;
out:
	if (f != NULL)
		fclose(f);
	if (rc < 0) {
		fake_warn("%s: cannot write the port: %s", path, strerror(errno));
		unlink(tmp);
	}
	return rc;
}

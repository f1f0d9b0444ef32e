/* main: capsule-wsd, the WebSocket daemon: options, configuration, signals and the service loop. */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "cg_config.h"
#include "cg_log.h"
#include "listen.h"
#include "server.h"
#include "stream.h"

#define WSD_PROGNAME "capsule-wsd"
#define WSD_STOP_GRACE_MS 3000     /* sessions get this long to close on SIGTERM */
#define WSD_MAX_HEADER_DATA 8192   /* room for a token in the query string */

/* Signals only set these and wake the loop; the loop acts on them. */
static volatile sig_atomic_t got_term;
static volatile sig_atomic_t got_hup;
static struct lws_context *volatile sig_ctx;

static void
on_signal(int sig)
{
	struct lws_context *ctx = sig_ctx;

	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_term = 1;
	if (ctx != NULL)
		lws_cancel_service(ctx); /* writes to lws's wake pipe */
}

static void
set_signals(int on)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on ? on_signal : SIG_DFL;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

static void
block_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

/* libwebsockets' own log lines, through cg_log. */
static void
lws_log_emit(int level, const char *line)
{
	int n = (int)strlen(line);

	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (level & LLL_ERR)
		cg_log_error("lws: %.*s", n, line);
	else if (level & LLL_WARN)
		cg_log_warn("lws: %.*s", n, line);
	else
		cg_log_debug("lws: %.*s", n, line);
}

static void
lws_log_setup(void)
{
	int levels = LLL_ERR | LLL_WARN;

	if (cg_log_enabled(CG_LOG_DEBUG))
		levels |= LLL_NOTICE;
	lws_set_log_level(levels, lws_log_emit);
}

/* NULL-safe string equality. */
static int
same(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* SIGHUP: re-reads the configuration (file, then environment) and applies
 * what can change while running: the log level, the WebSocket token secret
 * (rotation) and every limit and timer. Where to listen and what to connect
 * to need a restart; changed ones are named in the log. A configuration
 * that does not load changes nothing. Service thread only: the other
 * threads read none of the fields changed here. */
static void
reload_config(cg_config *cfg, const char *path)
{
	cg_config tmp;
	cg_log_level level;
	char err[512], restart[256] = "";
	char *swap;

	memset(&tmp, 0, sizeof tmp);
	if (cg_config_load(&tmp, path, CG_PROG_WSD, err, sizeof err) < 0) {
		cg_log_warn("SIGHUP: configuration not reloaded: %s", err);
		goto out;
	}
	if (cg_log_level_parse(tmp.log_level, &level) < 0) {
		cg_log_warn("SIGHUP: configuration not reloaded: log_level: unknown level \"%s\"",
			    tmp.log_level);
		goto out;
	}
	cg_log_set_level(level);
	lws_log_setup();
	swap = cfg->log_level;
	cfg->log_level = tmp.log_level;
	tmp.log_level = swap;
	swap = cfg->ws_jwt_secret;
	cfg->ws_jwt_secret = tmp.ws_jwt_secret;
	tmp.ws_jwt_secret = swap;
	cfg->ws_ping_interval = tmp.ws_ping_interval;
	cfg->ws_pong_timeout = tmp.ws_pong_timeout;
	cfg->ws_auth_timeout = tmp.ws_auth_timeout;
	cfg->ws_max_message = tmp.ws_max_message;
	cfg->ws_send_queue_max = tmp.ws_send_queue_max;
	cfg->ws_max_connections = tmp.ws_max_connections;
	cfg->ws_max_connections_per_user = tmp.ws_max_connections_per_user;
	cfg->ws_connect_attempts_per_ip_per_minute = tmp.ws_connect_attempts_per_ip_per_minute;
	cfg->ws_history_retention = tmp.ws_history_retention;

	if (!same(cfg->host, tmp.host) || cfg->port != tmp.port)
		strcat(restart, " host/port");
	if (!same(cfg->redis_url, tmp.redis_url))
		strcat(restart, " redis_url");
	if (!same(cfg->database_url, tmp.database_url))
		strcat(restart, " database_url");
	if (!same(cfg->event_stream, tmp.event_stream))
		strcat(restart, " event_stream");
	cg_log_info("SIGHUP: configuration reloaded (log level %s, ws_max_connections %ld, "
		    "ws_max_connections_per_user %ld, ws_send_queue_max %ld)", cfg->log_level,
		    cfg->ws_max_connections, cfg->ws_max_connections_per_user,
		    cfg->ws_send_queue_max);
	if (restart[0] != '\0')
		cg_log_warn("SIGHUP: changed, applied only after a restart:%s", restart);
out:
	cg_config_free(&tmp);
}

static int grace_over;
static struct lws_context *grace_ctx;

static void
grace_cb(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	grace_over = 1;
	/* lws_service() polls again after running timers: wake it so the
	 * loop sees the flag. */
	lws_cancel_service(grace_ctx);
}

static void
usage(int status)
{
	fprintf(stderr, "usage: %s [-dn] [-f file]\n"
		"  -d            stay in the foreground and log to stderr\n"
		"  -n            check the configuration and exit\n"
		"  -f, --config  configuration file\n", WSD_PROGNAME);
	exit(status);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct lws_context_creation_info info;
	struct lws_context *ctx = NULL;
	struct lws_vhost *vh;
	lws_sorted_usec_list_t sul_grace;
	cg_config cfg;
	cg_log_level level = CG_LOG_INFO;
	wsd_app app;
	const char *path = NULL;
	char err[512];
	int ch, foreground = 0, check_only = 0, rc = 1, listen_fd = -1, rc_listen;

	for (;;) {
		ch = getopt_long(argc, argv, "dnf:h", longopts, NULL);
		if (ch == -1)
			break;
		switch (ch) {
		case 'd':
			foreground = 1;
			break;
		case 'n':
			check_only = 1;
			break;
		case 'f':
			path = optarg;
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(1);
		}
	}
	if (optind != argc)
		usage(1);
	if (path == NULL)
		path = cg_config_default_path();

	cg_log_init(WSD_PROGNAME, CG_LOG_INFO);
	memset(&cfg, 0, sizeof cfg);
	memset(&app, 0, sizeof app);
	memset(&sul_grace, 0, sizeof sul_grace);
	atomic_init(&app.nconns, 0);
	if (cg_config_load(&cfg, path, CG_PROG_WSD, err, sizeof err) < 0) {
		fprintf(stderr, "%s: %s\n", WSD_PROGNAME, err);
		goto out;
	}
	if (cg_log_level_parse(cfg.log_level, &level) < 0) {
		fprintf(stderr, "%s: log_level: unknown level \"%s\"\n", WSD_PROGNAME, cfg.log_level);
		goto out;
	}
	if (check_only) {
		printf("configuration OK\n");
		rc = 0;
		goto out;
	}
	cg_log_init(WSD_PROGNAME, level);
	lws_log_setup();
	app.cfg = &cfg;

	/* Our own listening socket (listen.h: SO_REUSEPORT); lws serves what
	 * it accepts. */
	listen_fd = wsd_listen_open(cfg.host, cfg.port, cfg.ws_reuse_port, err, sizeof err);
	if (listen_fd < 0) {
		cg_log_error("%s", err);
		goto out;
	}
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = wsd_protocols;
	info.user = &app;
	info.gid = -1;
	info.uid = -1;
	info.vhost_name = WSD_PROGNAME;
	info.max_http_header_data = WSD_MAX_HEADER_DATA;
	/* lws closes a text message that is not UTF-8 with 1007. */
	info.options |= LWS_SERVER_OPTION_VALIDATE_UTF8;
	ctx = lws_create_context(&info);
	if (ctx == NULL) {
		cg_log_error("cannot create the libwebsockets context");
		goto out;
	}
	vh = lws_get_vhost_by_name(ctx, WSD_PROGNAME);
	rc_listen = vh != NULL ? wsd_listen_adopt(vh, listen_fd, err, sizeof err) : -1;
	listen_fd = -1; /* lws owns it now (closed on failure too) */
	if (rc_listen < 0) {
		cg_log_error("listen: %s", vh != NULL ? err : "no vhost");
		goto out;
	}

	if (!foreground) {
		if (daemon(0, 0) < 0) {
			cg_log_error("daemon: %m");
			goto out;
		}
		cg_log_use_syslog(1);
	}

	app.worker = wsd_worker_start(&cfg, ctx, err, sizeof err);
	if (app.worker == NULL) {
		cg_log_error("worker: %s", err);
		goto out;
	}
	app.stream = wsd_stream_start(&cfg, ctx, &app.nconns, err, sizeof err);
	if (app.stream == NULL) {
		cg_log_error("event stream: %s", err);
		goto out;
	}
	sig_ctx = ctx;
	set_signals(1);
	cg_log_info("listening on %s:%ld (instance %s, stream %s)", cfg.host, cfg.port,
		    cfg.instance_id, cfg.event_stream);

	for (;;) {
		if (lws_service(ctx, 0) < 0) {
			cg_log_error("lws_service failed");
			break;
		}
		if (got_hup) {
			got_hup = 0;
			reload_config(&cfg, path);
		}
		if (got_term && !app.stopping) {
			cg_log_info("stopping: closing %d connection(s)", wsd_server_sessions(&app));
			wsd_server_shutdown(&app);
			wsd_stream_stop(app.stream);
			grace_ctx = ctx;
			lws_sul_schedule(ctx, 0, &sul_grace, grace_cb,
					 (lws_usec_t)WSD_STOP_GRACE_MS * LWS_US_PER_MS);
		}
		if (app.stopping && (wsd_server_sessions(&app) == 0 || grace_over))
			break;
	}
	rc = app.stopping ? 0 : 1;

out:
	block_signals();
	sig_ctx = NULL;
	/* The reader wakes the context: stop it first. */
	wsd_stream_free(app.stream);
	app.stream = NULL;
	if (ctx != NULL) {
		lws_sul_cancel(&sul_grace);
		lws_context_destroy(ctx);
	}
	/* After the sessions: their last acks are written before it stops. */
	wsd_worker_free(app.worker);
	app.worker = NULL;
	if (listen_fd >= 0)
		close(listen_fd);
	cg_config_free(&cfg);
	if (rc == 0 && !check_only)
		cg_log_info("stopped");
	return rc;
}

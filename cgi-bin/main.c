/* main: capsule-gateway.fcgi: configuration, connections and the FastCGI accept loop. */
#include "config.h"

#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "cg_auth.h"
#include "cg_config.h"
#include "cg_db.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "cors.h"
#include "handlers.h"
#include "ratelimit.h"
#include "request.h"
#include "router.h"

#define PROGNAME "capsule-gateway.fcgi"
/* Bound on connecting to Redis and on each command: a slow Redis must not
 * hold a request for long, the handlers fall back to PostgreSQL. */
#define REDIS_TIMEOUT_MS 2000

/* The signal that asked us to stop (0: keep serving). Set only by on_stop. */
static volatile sig_atomic_t stop_signal;
/* 1 while the loop waits in FCGX_Accept_r (signals are blocked otherwise). */
static volatile sig_atomic_t in_accept;

/* SIGTERM, SIGINT, SIGUSR1: remember it and make a waiting accept give up.
 * The handler is installed without SA_RESTART, so a blocked accept() returns
 * EINTR; FCGX_ShutdownPending() only sets libfcgi's flag (its own SIGUSR1
 * handler does the same), which libfcgi checks right before accept(). For
 * the few instructions between that check and the system call, an alarm
 * interrupts the accept a second later. */
static void on_stop(int sig)
{
	stop_signal = sig;
	FCGX_ShutdownPending();
	if (in_accept)
		alarm(1);
}

static void on_alarm(int sig)
{
	(void)sig; /* only there to interrupt accept() */
}

static int install_signals(sigset_t *set)
{
	struct sigaction sa;
	static const int stops[] = { SIGTERM, SIGINT, SIGUSR1 };
	size_t i;

	sigemptyset(set);
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: a blocked accept() must return */
	sa.sa_handler = on_stop;
	for (i = 0; i < sizeof stops / sizeof stops[0]; i++) {
		sigaddset(set, stops[i]);
		sigaddset(&sa.sa_mask, stops[i]);
	}
	for (i = 0; i < sizeof stops / sizeof stops[0]; i++) {
		if (sigaction(stops[i], &sa, NULL) < 0)
			return -1;
	}
	sa.sa_handler = on_alarm;
	sigaddset(set, SIGALRM);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		return -1;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-ns] [-f file | --config file]\n"
		"  -f, --config FILE  configuration file (default: $CAPSULE_CONFIG or\n"
		"                     the installed capsule-gateway.conf)\n"
		"  -n, --check        check the configuration, print \"configuration OK\" and exit\n"
		"  -s, --syslog       log to syslog instead of stderr (spawn-fcgi without -n\n"
		"                     points stderr at /dev/null)\n"
		"  -h, --help         this text\n"
		"  -V, --version      print the version\n"
		"Runs as a FastCGI application: the listening socket is file descriptor 0\n"
		"(spawn-fcgi or the web server provides it).\n",
		PROGNAME);
}

static void serve_one(cg_ctx *ctx, FCGX_Request *fx)
{
	cg_req *req = cg_req_begin(fx, ctx->cfg);

	if (req == NULL) {
		cg_req_fail_oom(fx);
		return;
	}
	cg_router_dispatch(ctx, req);
	cg_req_end(req);
}

/* Serves requests until a stop signal. Returns the exit status. */
static int accept_loop(cg_ctx *ctx, const sigset_t *stopset)
{
	FCGX_Request fx;
	int status = 0;

	if (FCGX_InitRequest(&fx, 0, FCGI_FAIL_ACCEPT_ON_INTR) != 0) {
		cg_log_error("FCGX_InitRequest failed");
		return 1;
	}
	/* Stop signals are blocked except while waiting for a request, so a
	 * request in progress is never cut short by EINTR. */
	sigprocmask(SIG_BLOCK, stopset, NULL);
	while (!stop_signal) {
		int rc;

		in_accept = 1;
		sigprocmask(SIG_UNBLOCK, stopset, NULL); /* pending signals run here */
		rc = stop_signal ? -EINTR : FCGX_Accept_r(&fx);
		sigprocmask(SIG_BLOCK, stopset, NULL);
		in_accept = 0;
		alarm(0);
		if (rc < 0) {
			if (stop_signal)
				break;
			if (rc == -EINTR)
				continue;
			cg_log_error("accepting a FastCGI request failed: %s",
				     rc > -4096 ? strerror(-rc) : "libfcgi error");
			status = 1;
			break;
		}
		serve_one(ctx, &fx);
		FCGX_Finish_r(&fx);
	}
	if (stop_signal)
		cg_log_info("signal %d: exiting", (int)stop_signal);
	FCGX_Free(&fx, 1);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'f' },
		{ "check", no_argument, NULL, 'n' },
		{ "syslog", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	cg_config cfg;
	cg_ctx ctx;
	cg_log_level level;
	sigset_t stopset;
	const char *path = NULL;
	char err[512];
	int check_only = 0, use_syslog = 0, c, status = 1;

	memset(&cfg, 0, sizeof cfg);
	memset(&ctx, 0, sizeof ctx);
	ctx.start_ms = cg_monotonic_ms();
	cg_log_init(PROGNAME, CG_LOG_INFO);

	for (;;) {
		c = getopt_long(argc, argv, "f:nshV", longopts, NULL);
		if (c == -1)
			break;
		switch (c) {
		case 'f':
			path = optarg;
			break;
		case 'n':
			check_only = 1;
			break;
		case 's':
			use_syslog = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("%s %s\n", PROGNAME, PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 1;
	}
	if (path == NULL)
		path = cg_config_default_path();
	if (cg_config_load(&cfg, path, CG_PROG_CGI, err, sizeof err) < 0) {
		cg_log_error("%s", err);
		goto out;
	}
	if (cg_log_level_parse(cfg.log_level, &level) == 0)
		cg_log_set_level(level);
	/* Security settings are read once, here: a bad key file, limit or
	 * origin stops the program at start (and fails -n). */
	ctx.jwt = cg_jwt_verifier_new(&cfg, err, sizeof err);
	if (ctx.jwt == NULL) {
		cg_log_error("%s", err);
		goto out;
	}
	ctx.rl = cg_ratelimit_new(&cfg, err, sizeof err);
	if (ctx.rl == NULL) {
		cg_log_error("%s", err);
		goto out;
	}
	ctx.cors = cg_cors_new(cfg.cors_allowed_origins, err, sizeof err);
	if (ctx.cors == NULL) {
		cg_log_error("%s", err);
		goto out;
	}
	if (!cfg.rate_limit_enabled)
		cg_log_info("rate limiting is disabled (rate_limit_enabled = false)");
	if (check_only) {
		printf("configuration OK\n");
		status = 0;
		goto out;
	}

	if (use_syslog)
		cg_log_use_syslog(1);

	/* Before FCGX_Init, so libfcgi keeps our SIGUSR1 handler. */
	if (install_signals(&stopset) < 0) {
		cg_log_error("sigaction: %s", strerror(errno));
		goto out;
	}
	if (FCGX_Init() != 0) {
		cg_log_error("FCGX_Init failed");
		goto out;
	}
	if (FCGX_IsCGI()) {
		cg_log_error("file descriptor 0 is not a FastCGI listening socket: "
			     "start this program with spawn-fcgi or from the web server");
		goto out;
	}

	ctx.cfg = &cfg;
	ctx.db = cg_db_open(cfg.database_url, err, sizeof err);
	if (ctx.db == NULL) {
		cg_log_error("DATABASE_URL: %s", err);
		goto out;
	}
	ctx.redis = cg_redis_open(cfg.redis_url, REDIS_TIMEOUT_MS, err, sizeof err);
	if (ctx.redis == NULL) {
		cg_log_error("REDIS_URL: %s", err);
		goto out;
	}
	if (cg_db_ping(ctx.db) != 0)
		cg_log_warn("database not reachable yet (%s); requests will retry",
			    cg_db_errmsg(ctx.db));
	if (cg_redis_ping(ctx.redis) != 0)
		cg_log_warn("redis not reachable yet (%s); requests will retry",
			    cg_redis_errmsg(ctx.redis));
	cg_log_info("serving FastCGI requests (pid %ld)", (long)getpid());

	status = accept_loop(&ctx, &stopset);
out:
	cg_cors_free(ctx.cors);
	cg_ratelimit_free(ctx.rl);
	cg_jwt_verifier_free(ctx.jwt);
	if (ctx.redis != NULL)
		cg_redis_close(ctx.redis);
	if (ctx.db != NULL)
		cg_db_close(ctx.db);
	cg_config_free(&cfg);
	return status;
}

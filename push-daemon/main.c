/* capsule-pushd: the delivery daemon's skeleton: options, config, signals, threads. */
#include "config.h"

#define _GNU_SOURCE
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "apns.h"
#include "creds.h"
#include "cg_config.h"
#include "cg_jwt.h"
#include "cg_log.h"
#include "cg_webpush.h"
#include "pushd.h"

#define PROGNAME "capsule-pushd"

static volatile sig_atomic_t got_stop, got_hup;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_stop = 1;
}

const char *pushd_apns_state_name(int state)
{
	switch (state) {
	case PUSHD_APNS_CONNECTED: return "connected";
	case PUSHD_APNS_FAILING: return "failing";
	default: return "not_configured";
	}
}

void pushd_job_free(pushd_job *job)
{
	if (job == NULL)
		return;
	free(job->device_token);
	free(job->endpoint);
	free(job->p256dh);
	free(job->auth);
	free(job);
}

void pushd_fatal_stop(pushd *pd)
{
	atomic_store(&pd->fatal, 1);
	atomic_store(&pd->stop, 1);
	kill(getpid(), SIGTERM); /* wakes the main thread's sigsuspend */
}

static void usage(void)
{
	fprintf(stderr, "usage: %s [-dn] [-f file | --config file]\n"
			"  -d         stay in the foreground and log to stderr\n"
			"  -n         check the configuration and exit\n"
			"  -f file    configuration file (default: $CAPSULE_CONFIG or the installed one)\n",
		PROGNAME);
}

/* Applies LOG_LEVEL; returns 0 or -1 (names the key in err). */
static int apply_log_level(const cg_config *cfg, char *err, size_t errlen)
{
	cg_log_level level;

	if (cg_log_level_parse(cfg->log_level, &level) < 0) {
		snprintf(err, errlen, "log_level: unknown level \"%s\"", cfg->log_level ? cfg->log_level : "");
		return -1;
	}
	cg_log_set_level(level);
	return 0;
}

/* SIGHUP: re-reads the configuration; only the log level changes live. */
static void reload(const char *path)
{
	cg_config fresh;
	char err[512];

	memset(&fresh, 0, sizeof fresh);
	if (cg_config_load(&fresh, path, CG_PROG_PUSHD, err, sizeof err) < 0 ||
	    apply_log_level(&fresh, err, sizeof err) < 0)
		cg_log_error("SIGHUP: configuration not reloaded: %s", err);
	else
		cg_log_info("SIGHUP: log level %s", fresh.log_level);
	cg_config_free(&fresh);
}

static int install_signals(sigset_t *oldmask)
{
	struct sigaction sa;
	sigset_t block;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -1;
	sa.sa_handler = on_signal;
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0 ||
	    sigaction(SIGHUP, &sa, NULL) < 0)
		return -1;
	/* Blocked everywhere but in the main thread's sigsuspend: the threads
	 * created below inherit this mask, so only main sees these signals. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	return pthread_sigmask(SIG_BLOCK, &block, oldmask) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static pushd pd; /* static: large, and lives as long as the process */
	const char *path = NULL;
	pthread_t worker_tid, sender_tid;
	int foreground = 0, check_only = 0, sender_started = 0, worker_started = 0, c, status = 1;
	sigset_t oldmask;
	char err[512];

	while ((c = getopt_long(argc, argv, "dnf:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': foreground = 1; break;
		case 'n': check_only = 1; break;
		case 'f': path = optarg; break;
		case 'h': usage(); return 0;
		default: usage(); return 1;
		}
	}
	if (optind != argc) {
		usage();
		return 1;
	}
	cg_log_init(PROGNAME, CG_LOG_INFO);
	if (path == NULL)
		path = cg_config_default_path();
	if (cg_config_load(&pd.cfg, path, CG_PROG_PUSHD, err, sizeof err) < 0 ||
	    apply_log_level(&pd.cfg, err, sizeof err) < 0) {
		fprintf(stderr, "%s: %s\n", PROGNAME, err);
		goto out;
	}
	/* Every key, global and per tenant, is loaded and checked now. */
	pd.creds = pushd_creds_load(&pd.cfg, err, sizeof err);
	if (pd.creds == NULL) {
		fprintf(stderr, "%s: %s\n", PROGNAME, err);
		goto out;
	}
	if (check_only) {
		printf("configuration OK\n");
		status = 0;
		goto out;
	}
	if (!foreground) {
		if (daemon(0, 0) < 0) {
			perror(PROGNAME ": daemon");
			goto out;
		}
		cg_log_use_syslog(1);
	}
	if (install_signals(&oldmask) < 0) {
		cg_log_error("cannot install signal handlers");
		goto out;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		cg_log_error("curl_global_init failed");
		goto out;
	}
	atomic_init(&pd.stop, 0);
	atomic_init(&pd.fatal, 0);
	atomic_init(&pd.apns_state, PUSHD_APNS_NOT_CONFIGURED);
	pd.jobs = pushd_queue_new(PUSHD_QUEUE_CAP);
	pd.results = pushd_queue_new(PUSHD_QUEUE_CAP);
	if (pd.jobs == NULL || pd.results == NULL) {
		cg_log_error("out of memory");
		goto out_curl;
	}
	if (!pushd_creds_any_apns(pd.creds))
		cg_log_warn("APNs is not configured (apns_key_path, apns_key_id, apns_team_id, "
			    "apns_bundle_id): no push to iOS devices");
	if (!pushd_creds_any_vapid(pd.creds))
		cg_log_warn("Web Push is not configured (vapid_private_key, vapid_subject): "
			    "no push to browsers");
	if (pushd_creds_any_apns(pd.creds) || pushd_creds_any_vapid(pd.creds)) {
		/* one sender thread for both providers */
		pd.apns = apns_sender_new(&pd, err, sizeof err);
		if (pd.apns == NULL) {
			cg_log_error("%s", err);
			goto out_curl;
		}
	} else {
		cg_log_warn("push events are acknowledged without pushing");
	}
	cg_log_info("starting as %s", pd.cfg.instance_id);
	if (pd.apns != NULL) {
		if (pthread_create(&sender_tid, NULL, apns_sender_main, pd.apns) != 0) {
			cg_log_error("cannot start the sender thread");
			goto out_threads;
		}
		sender_started = 1;
	}
	if (pthread_create(&worker_tid, NULL, pushd_worker_main, &pd) != 0) {
		cg_log_error("cannot start the worker thread");
		goto out_threads;
	}
	worker_started = 1;

	while (!got_stop) {
		sigsuspend(&oldmask);
		if (got_hup) {
			got_hup = 0;
			reload(path);
		}
	}
	if (!atomic_load(&pd.fatal))
		cg_log_info("stopping: finishing the pushes under way");
	status = atomic_load(&pd.fatal) ? 1 : 0;
out_threads:
	atomic_store(&pd.stop, 1);
	apns_sender_wakeup(pd.apns);
	if (sender_started)
		pthread_join(sender_tid, NULL);
	if (worker_started)
		pthread_join(worker_tid, NULL);
	apns_sender_free(pd.apns);
	pd.apns = NULL;
	cg_log_info("stopped");
out_curl:
	pushd_queue_free(pd.jobs);
	pushd_queue_free(pd.results);
	curl_global_cleanup();
out:
	pushd_creds_free(pd.creds);
	cg_config_free(&pd.cfg);
	return status;
}

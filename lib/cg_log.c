/* cg_log: leveled, one-write-per-line logging to stderr, a test stream or syslog. */
#include "config.h"

#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cg_log.h"

/* A line is formatted into this much stack; longer messages are cut and end
 * with "...". */
#define CG_LOG_LINE_MAX 4096
#define CG_LOG_PROGNAME_MAX 64
#define CG_LOG_CONTEXT_MAX 128

/* Shared settings. They change rarely (start-up, SIGHUP) and are read on every
 * line, so a mutex guards them; the level alone is read without the lock by
 * cg_log_enabled() (a stale read there only lets one line through). */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_progname[CG_LOG_PROGNAME_MAX] = "capsule";
static volatile int log_min_level = CG_LOG_INFO;
static int log_syslog;
static FILE *log_stream; /* NULL: stderr */

static __thread char log_ctx[CG_LOG_CONTEXT_MAX];
static __thread int log_ctx_set;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

static int clamp_level(int level)
{
	if (level < CG_LOG_DEBUG)
		return CG_LOG_DEBUG;
	if (level > CG_LOG_ERROR)
		return CG_LOG_ERROR;
	return level;
}

void cg_log_init(const char *progname, cg_log_level level)
{
	pthread_mutex_lock(&log_lock);
	if (progname && *progname) {
		const char *base = strrchr(progname, '/');
		snprintf(log_progname, sizeof log_progname, "%s", base ? base + 1 : progname);
	}
	log_min_level = clamp_level((int)level);
	pthread_mutex_unlock(&log_lock);
}

void cg_log_use_syslog(int on)
{
	pthread_mutex_lock(&log_lock);
	if (on && !log_syslog)
		openlog(log_progname, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (!on && log_syslog)
		closelog();
	log_syslog = on ? 1 : 0;
	pthread_mutex_unlock(&log_lock);
}

int cg_log_level_parse(const char *name, cg_log_level *out)
{
	static const struct {
		const char *name;
		cg_log_level level;
	} names[] = {
		{ "debug", CG_LOG_DEBUG },
		{ "info", CG_LOG_INFO },
		{ "warn", CG_LOG_WARN },
		{ "warning", CG_LOG_WARN },
		{ "error", CG_LOG_ERROR },
	};
	size_t i;

	if (!name)
		return -1;
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcasecmp(name, names[i].name) == 0) {
			if (out)
				*out = names[i].level;
			return 0;
		}
	}
	return -1;
}

void cg_log_set_level(cg_log_level level)
{
	log_min_level = clamp_level((int)level);
}

int cg_log_enabled(cg_log_level level)
{
	return (int)level >= log_min_level;
}

void cg_log_set_context(const char *id)
{
	if (!id) {
		log_ctx[0] = '\0';
		log_ctx_set = 0;
		return;
	}
	snprintf(log_ctx, sizeof log_ctx, "%s", id);
	log_ctx_set = 1;
}

const char *cg_log_context(void)
{
	return log_ctx_set ? log_ctx : NULL;
}

void cg_log_set_stream(void *FILE_stream)
{
	pthread_mutex_lock(&log_lock);
	log_stream = FILE_stream;
	pthread_mutex_unlock(&log_lock);
}

/* Control bytes (newlines above all) from untrusted text must not forge
 * extra log lines: they become '?'. */
static void sanitize(char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			s[i] = '?';
	}
}

/* Appends the formatted message at line+off (capacity cap), marks a cut
 * message with "..." and returns the new length. */
static size_t put_message(char *line, size_t off, size_t cap, const char *fmt, va_list ap)
{
	int n;
	size_t start = off;

	n = vsnprintf(line + off, cap - off, fmt, ap);
	if (n < 0) {
		n = snprintf(line + off, cap - off, "(log format error)");
		if (n < 0)
			n = 0;
	}
	if ((size_t)n >= cap - off) {
		off = cap - 1;
		if (off - start >= 3)
			memcpy(line + off - 3, "...", 3);
	} else {
		off += (size_t)n;
	}
	sanitize(line + start, off - start);
	return off;
}

void cg_log_vmsg(cg_log_level level, const char *fmt, va_list ap)
{
	char line[CG_LOG_LINE_MAX];
	char stamp[32];
	struct tm tm;
	time_t now;
	size_t off;
	int n, lv;
	const char *ctx = log_ctx_set ? log_ctx : NULL;

	lv = clamp_level((int)level);
	if (lv < log_min_level)
		return;

	pthread_mutex_lock(&log_lock);
	if (log_syslog) {
		static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
		off = 0;
		if (ctx) {
			n = snprintf(line, sizeof line, "[%s] ", ctx);
			off = (n > 0 && (size_t)n < sizeof line) ? (size_t)n : 0;
			sanitize(line, off);
		}
		off = put_message(line, off, sizeof line, fmt, ap);
		line[off] = '\0';
		syslog(prio[lv], "%s", line);
		goto out;
	}

	now = time(NULL);
	if (!gmtime_r(&now, &tm) || strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(stamp, sizeof stamp, "%lld", (long long)now);
	n = snprintf(line, sizeof line, "%s %s[%ld] %s %s%s%s", stamp, log_progname,
		     (long)getpid(), level_names[lv], ctx ? "[" : "", ctx ? ctx : "",
		     ctx ? "] " : "");
	if (n < 0)
		n = 0;
	off = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 2;
	sanitize(line, off);
	/* Leave room for the newline. */
	off = put_message(line, off, sizeof line - 1, fmt, ap);
	line[off++] = '\n';
	{
		FILE *f = log_stream ? log_stream : stderr;
		fwrite(line, 1, off, f);
		fflush(f);
	}
out:
	pthread_mutex_unlock(&log_lock);
}

void cg_log_msg(cg_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cg_log_vmsg(level, fmt, ap);
	va_end(ap);
}

void cg_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cg_log_vmsg(CG_LOG_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}

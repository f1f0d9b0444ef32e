/* cg_log: the one logging module. Lines go to stderr (or syslog once a daemon
 * detaches); each carries the level, the program name and, when set, the
 * current request or event id. Nothing is formatted when the level is off. */
#ifndef CG_LOG_H
#define CG_LOG_H

#include <stdarg.h>

typedef enum {
	CG_LOG_DEBUG = 0,
	CG_LOG_INFO = 1,
	CG_LOG_WARN = 2,
	CG_LOG_ERROR = 3,
} cg_log_level;

#define CG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Sets the program name shown in every line and the minimum level.
 * `progname` is copied. Safe to call again (e.g. on SIGHUP). */
void cg_log_init(const char *progname, cg_log_level level);

/* Switches output from stderr to syslog(LOG_DAEMON) (1) or back (0). */
void cg_log_use_syslog(int on);

/* Parses "debug", "info", "warn"/"warning", "error". Returns 0, or -1 when
 * the name is unknown (*out untouched). */
int cg_log_level_parse(const char *name, cg_log_level *out);

void cg_log_set_level(cg_log_level level);
int cg_log_enabled(cg_log_level level);

/* The id carried by every following line of this thread (request id in the
 * FastCGI program, event id in the daemons). NULL clears it. Copied (max 127
 * bytes). */
void cg_log_set_context(const char *id);
const char *cg_log_context(void);

/* Tests may send lines to another stream; NULL restores stderr. */
void cg_log_set_stream(void *FILE_stream);

void cg_log_msg(cg_log_level level, const char *fmt, ...) CG_PRINTF(2, 3);
void cg_log_vmsg(cg_log_level level, const char *fmt, va_list ap) CG_PRINTF(2, 0);

#define cg_log_debug(...) do { if (cg_log_enabled(CG_LOG_DEBUG)) cg_log_msg(CG_LOG_DEBUG, __VA_ARGS__); } while (0)
#define cg_log_info(...)  do { if (cg_log_enabled(CG_LOG_INFO)) cg_log_msg(CG_LOG_INFO, __VA_ARGS__); } while (0)
#define cg_log_warn(...)  cg_log_msg(CG_LOG_WARN, __VA_ARGS__)
#define cg_log_error(...) cg_log_msg(CG_LOG_ERROR, __VA_ARGS__)

/* Logs at error level and exits with status 1. */
void cg_fatal(const char *fmt, ...) CG_PRINTF(1, 2) __attribute__((noreturn));

#endif

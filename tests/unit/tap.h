/* tap.h: a tiny TAP producer for the C unit tests (read by automake's
 * tap-driver.sh). Header-only; each test program includes it once. */
#ifndef CG_TAP_H
#define CG_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

static void tap_vok(int cond, const char *fmt, va_list ap)
{
	tap_n++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
}

__attribute__((format(printf, 2, 3), unused))
static int ok(int cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tap_vok(cond, fmt, ap);
	va_end(ap);
	return cond;
}

__attribute__((format(printf, 3, 4), unused))
static int is_int(long long got, long long want, const char *fmt, ...)
{
	va_list ap;
	int c = got == want;
	va_start(ap, fmt);
	tap_vok(c, fmt, ap);
	va_end(ap);
	if (!c)
		printf("# got %lld, want %lld\n", got, want);
	return c;
}

__attribute__((format(printf, 3, 4), unused))
static int is_str(const char *got, const char *want, const char *fmt, ...)
{
	va_list ap;
	int c = (got == NULL && want == NULL) || (got && want && strcmp(got, want) == 0);
	va_start(ap, fmt);
	tap_vok(c, fmt, ap);
	va_end(ap);
	if (!c)
		printf("# got \"%s\", want \"%s\"\n", got ? got : "(null)", want ? want : "(null)");
	return c;
}

/* Skips the whole program: prints an empty plan with a reason. */
__attribute__((unused, noreturn))
static void skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

/* Prints the plan (at the end) and returns the exit status. */
__attribute__((unused))
static int done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif

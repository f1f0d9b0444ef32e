/* test_log: line format, context, level filtering and level names. */
#include "config.h"

#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_log.h"
#include "tap.h"

static FILE *mem;
static char *memdata;
static size_t memlen;

static void capture_start(void)
{
	mem = open_memstream(&memdata, &memlen);
	cg_log_set_stream(mem);
}

/* Stops capturing and returns what was logged (caller frees). */
static char *capture_end(void)
{
	char *s;

	cg_log_set_stream(NULL);
	fclose(mem);
	s = memdata;
	memdata = NULL;
	mem = NULL;
	return s;
}

static int matches(const char *s, const char *re)
{
	regex_t r;
	int m;

	if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB) != 0)
		return 0;
	m = regexec(&r, s, 0, NULL, 0) == 0;
	regfree(&r);
	return m;
}

static void test_format(void)
{
	char *out;
	char re[256];

	cg_log_init("/usr/sbin/capsule-wsd", CG_LOG_DEBUG);
	capture_start();
	cg_log_warn("hello %s %d", "world", 42);
	out = capture_end();
	snprintf(re, sizeof re,
		 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z capsule-wsd\\[%ld\\] warn hello world 42\n$",
		 (long)getpid());
	ok(matches(out, re), "line format without context");
	if (!matches(out, re))
		printf("# got: %s", out);
	free(out);

	cg_log_set_context("req-123");
	is_str(cg_log_context(), "req-123", "context is kept");
	capture_start();
	cg_log_error("boom");
	out = capture_end();
	snprintf(re, sizeof re, "Z capsule-wsd\\[%ld\\] error \\[req-123\\] boom\n$", (long)getpid());
	ok(matches(out, re), "line carries the context");
	free(out);

	cg_log_set_context(NULL);
	ok(cg_log_context() == NULL, "NULL clears the context");
	capture_start();
	cg_log_info("plain");
	out = capture_end();
	ok(strstr(out, " info plain\n") != NULL && strchr(out, '[') == strrchr(out, '['),
	   "no context part once cleared");
	free(out);
}

static void test_levels(void)
{
	static const struct {
		cg_log_level min;
		int want_lines; /* of debug, info, warn, error */
	} cases[] = {
		{ CG_LOG_DEBUG, 4 },
		{ CG_LOG_INFO, 3 },
		{ CG_LOG_WARN, 2 },
		{ CG_LOG_ERROR, 1 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *out, *p;
		int lines = 0;

		cg_log_set_level(cases[i].min);
		capture_start();
		cg_log_debug("d");
		cg_log_info("i");
		cg_log_warn("w");
		cg_log_error("e");
		cg_log_msg(CG_LOG_DEBUG, "direct debug");
		out = capture_end();
		for (p = out; *p; p++)
			if (*p == '\n')
				lines++;
		is_int(lines, cases[i].want_lines + (cases[i].min == CG_LOG_DEBUG), "min level %d",
		       (int)cases[i].min);
		ok(cg_log_enabled(cases[i].min) && (cases[i].min == CG_LOG_DEBUG ||
						   !cg_log_enabled(cases[i].min - 1)),
		   "cg_log_enabled agrees at level %d", (int)cases[i].min);
		free(out);
	}
	cg_log_set_level(CG_LOG_INFO);
}

static void test_parse(void)
{
	static const struct {
		const char *name;
		int rc;
		cg_log_level want;
	} cases[] = {
		{ "debug", 0, CG_LOG_DEBUG },
		{ "info", 0, CG_LOG_INFO },
		{ "warn", 0, CG_LOG_WARN },
		{ "warning", 0, CG_LOG_WARN },
		{ "error", 0, CG_LOG_ERROR },
		{ "ERROR", 0, CG_LOG_ERROR },
		{ "verbose", -1, CG_LOG_DEBUG },
		{ "", -1, CG_LOG_DEBUG },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cg_log_level lv = (cg_log_level)99;
		int rc = cg_log_level_parse(cases[i].name, &lv);
		is_int(rc, cases[i].rc, "parse \"%s\"", cases[i].name);
		if (rc == 0)
			is_int(lv, cases[i].want, "parse \"%s\" level", cases[i].name);
		else
			is_int(lv, 99, "parse \"%s\" leaves out untouched", cases[i].name);
	}
}

static void test_injection_and_length(void)
{
	char *out, *big;
	size_t nl = 0;
	char *p;

	cg_log_set_level(CG_LOG_DEBUG);
	capture_start();
	cg_log_info("user said %s", "x\nFAKE 2025 line");
	out = capture_end();
	for (p = out; *p; p++)
		if (*p == '\n')
			nl++;
	ok(nl == 1 && strstr(out, "x?FAKE") != NULL, "newlines in a message cannot forge a line");
	free(out);

	big = malloc(20000);
	memset(big, 'a', 19999);
	big[19999] = '\0';
	capture_start();
	cg_log_info("%s", big);
	out = capture_end();
	nl = strlen(out);
	ok(nl > 1000 && nl <= 4096 && out[nl - 1] == '\n' && strstr(out, "...\n") != NULL,
	   "a long message is cut to one bounded line");
	free(out);
	free(big);
}

static void *thread_main(void *arg)
{
	int i;

	cg_log_set_context(arg);
	for (i = 0; i < 200; i++)
		cg_log_info("from %s number %d", (const char *)arg, i);
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[4];
	static char names[4][8] = { "t0", "t1", "t2", "t3" };
	char *out, *line, *save = NULL;
	int i, good = 0, bad = 0;

	cg_log_set_context("main");
	capture_start();
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, thread_main, names[i]);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	out = capture_end();
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char re[128];
		const char *ctx = strstr(line, "] info [");
		if (ctx && sscanf(ctx, "] info [%7[^]]", re) == 1 && strstr(line, "from ") &&
		    strncmp(strstr(line, "from ") + 5, re, 2) == 0)
			good++;
		else
			bad++;
	}
	ok(good == 800 && bad == 0, "800 lines from 4 threads, whole, each with its own context");
	is_str(cg_log_context(), "main", "other threads did not change this thread's context");
	free(out);
	cg_log_set_context(NULL);
}

int main(void)
{
	test_format();
	test_levels();
	test_parse();
	test_injection_and_length();
	test_threads();
	return done_testing();
}

/* test_redis: cg_redis against a real Redis (CG_TEST_REDIS_URL), skipped without one. */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "tap.h"

static const char *base_url;
static char prefix[64];

static const char *key(const char *name)
{
	static char buf[4][160];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s%s", prefix, name);
	return buf[i];
}

/* base_url with another database number. */
static void url_with_db(const char *db, char *out, size_t len)
{
	const char *cut;

	if (strncmp(base_url, "unix://", 7) == 0) {
		cut = strchr(base_url, '?');
		snprintf(out, len, "%.*s?db=%s", (int)(cut ? cut - base_url : (long)strlen(base_url)),
			 base_url, db);
		return;
	}
	cut = strchr(base_url + 8, '/');
	snprintf(out, len, "%.*s/%s", (int)(cut ? cut - base_url : (long)strlen(base_url)),
		 base_url, db);
}

/* base_url with user info, or "" when it has some already or is a socket. */
static void url_with_auth(const char *userinfo, char *out, size_t len)
{
	const char *auth_end;

	out[0] = '\0';
	if (strncmp(base_url, "redis://", 8) != 0)
		return;
	auth_end = base_url + 8 + strcspn(base_url + 8, "/");
	if (memchr(base_url + 8, '@', (size_t)(auth_end - base_url - 8)) != NULL)
		return;
	snprintf(out, len, "redis://%s@%s", userinfo, base_url + 8);
}

static long long int_reply(cg_redis *r, const char *cmd, const char *k)
{
	redisReply *rep = NULL;
	long long v = -999;

	if (cg_redis_cmdf(r, &rep, "%s %s", cmd, k) == CG_REDIS_OK && rep->type == REDIS_REPLY_INTEGER)
		v = rep->integer;
	if (rep)
		freeReplyObject(rep);
	return v;
}

static long long client_id(cg_redis *r)
{
	redisReply *rep = NULL;
	long long v = -1;

	if (cg_redis_cmdf(r, &rep, "CLIENT ID") == CG_REDIS_OK && rep->type == REDIS_REPLY_INTEGER)
		v = rep->integer;
	if (rep)
		freeReplyObject(rep);
	return v;
}

static void test_strings(cg_redis *r)
{
	static const char bin[] = { 'a', 0, 'b', 0, 'c' };
	char *out = NULL;
	size_t len = 0;
	long long n = 0;
	int rc;

	is_int(cg_redis_setex(r, key("s"), "hello", 5, 100), CG_REDIS_OK, "SET EX");
	rc = cg_redis_get(r, key("s"), &out, &len);
	is_int(rc, CG_REDIS_OK, "GET");
	is_str(out, "hello", "value back");
	is_int((long long)len, 5, "length back");
	free(out);
	n = int_reply(r, "TTL", key("s"));
	ok(n > 0 && n <= 100, "TTL set (%lld)", n);

	is_int(cg_redis_setex(r, key("p"), "forever", 7, 0), CG_REDIS_OK, "SET without expiry");
	is_int(int_reply(r, "TTL", key("p")), -1, "no TTL when ttl <= 0");

	is_int(cg_redis_setex(r, key("bin"), bin, sizeof bin, 60), CG_REDIS_OK, "binary value");
	out = NULL;
	rc = cg_redis_get(r, key("bin"), &out, &len);
	ok(rc == CG_REDIS_OK && len == sizeof bin && memcmp(out, bin, sizeof bin) == 0,
	   "binary value round-trips with NUL bytes");
	free(out);

	is_int(cg_redis_del(r, key("s")), CG_REDIS_OK, "DEL");
	out = (char *)"sentinel";
	rc = cg_redis_get(r, key("s"), &out, &len);
	is_int(rc, CG_REDIS_ENIL, "GET of a deleted key -> CG_REDIS_ENIL");
	ok(out == NULL, "no value on ENIL");
	is_int(cg_redis_get(r, key("never"), &out, NULL), CG_REDIS_ENIL, "GET of a missing key -> ENIL");
	is_int(cg_redis_del(r, key("never")), CG_REDIS_OK, "DEL of a missing key is fine");

	is_int(cg_redis_incrby(r, key("n"), 5, &n), CG_REDIS_OK, "INCRBY new key");
	is_int(n, 5, "INCRBY value");
	is_int(cg_redis_incrby(r, key("n"), -7, &n), CG_REDIS_OK, "INCRBY negative");
	is_int(n, -2, "INCRBY value after -7");
	is_int(cg_redis_incrby(r, key("n"), 1, NULL), CG_REDIS_OK, "INCRBY with NULL out");
}

static void test_error_replies(cg_redis *r)
{
	const char *argv[3];
	redisReply *rep = (redisReply *)(void *)&argv;
	char *out = NULL;
	long long n = 42;
	int rc;

	cg_redis_setex(r, key("str"), "abc", 3, 60);
	rc = cg_redis_incrby(r, key("str"), 1, &n);
	is_int(rc, CG_REDIS_EREPLY, "INCRBY on a non-number -> CG_REDIS_EREPLY");
	ok(strstr(cg_redis_errmsg(r), "not an integer") != NULL, "error text kept (%s)", cg_redis_errmsg(r));
	is_int(n, 42, "out untouched on error");

	argv[0] = "LPUSH";
	argv[1] = key("str");
	argv[2] = "x";
	rc = cg_redis_cmd(r, &rep, 3, argv, NULL);
	is_int(rc, CG_REDIS_EREPLY, "LPUSH on a string -> CG_REDIS_EREPLY");
	ok(rep == NULL, "no reply handed over on error");
	ok(strncmp(cg_redis_errmsg(r), "WRONGTYPE", 9) == 0, "WRONGTYPE text (%s)", cg_redis_errmsg(r));

	cg_redis_cmdf(r, NULL, "RPUSH %s a", key("list"));
	rc = cg_redis_get(r, key("list"), &out, NULL);
	is_int(rc, CG_REDIS_EREPLY, "GET on a list -> CG_REDIS_EREPLY");
	ok(out == NULL, "no value");
	is_int(cg_redis_cmdf(r, NULL, "NOSUCHCOMMAND"), CG_REDIS_EREPLY, "unknown command -> EREPLY");
	is_int(cg_redis_ping(r), 0, "connection fine after error replies");
	is_str(cg_redis_strerror(CG_REDIS_EREPLY), "error reply", "strerror(EREPLY)");
}

static void test_argv_and_cmdf(cg_redis *r)
{
	const char *argv[3] = { "SET", NULL, "x\0y" };
	size_t lens[3] = { 3, 0, 3 };
	redisReply *rep = NULL;
	char *out = NULL;
	size_t len = 0;

	argv[1] = key("argv");
	lens[1] = strlen(argv[1]);
	is_int(cg_redis_cmd(r, &rep, 3, argv, lens), CG_REDIS_OK, "cmd with lens");
	ok(rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0, "status reply handed over");
	if (rep)
		freeReplyObject(rep);
	ok(cg_redis_get(r, key("argv"), &out, &len) == CG_REDIS_OK && len == 3 && memcmp(out, "x\0y", 3) == 0,
	   "binary-safe argv");
	free(out);
	out = NULL;
	is_int(cg_redis_cmdf(r, NULL, "SET %s %b", key("cmdf"), "p\0q", (size_t)3), CG_REDIS_OK, "cmdf with %%b");
	ok(cg_redis_get(r, key("cmdf"), &out, &len) == CG_REDIS_OK && len == 3 && memcmp(out, "p\0q", 3) == 0,
	   "cmdf binary-safe");
	free(out);
	is_int(cg_redis_cmd(r, NULL, 0, argv, NULL), CG_REDIS_EREPLY, "argc 0 refused");
}

static void test_xadd(cg_redis *r)
{
	const char *fields[] = { "event_id", "type", "data" };
	const char *values[] = { "ev1", "activity.created", "{\"a\":1}" };
	char id1[64] = "", id2[64] = "", small[4];
	redisReply *rep = NULL;
	long long len;
	int i, rc, good = 1;

	rc = cg_redis_xadd(r, key("stream"), 1000, 3, fields, values, id1, sizeof id1);
	is_int(rc, CG_REDIS_OK, "XADD");
	ok(strspn(id1, "0123456789") > 0 && strchr(id1, '-') != NULL, "entry id returned (%s)", id1);
	rc = cg_redis_xadd(r, key("stream"), 1000, 3, fields, values, id2, sizeof id2);
	ok(rc == CG_REDIS_OK && strcmp(id1, id2) != 0, "second entry has another id (%s)", id2);
	is_int(int_reply(r, "XLEN", key("stream")), 2, "two entries");

	rc = cg_redis_cmdf(r, &rep, "XRANGE %s - + COUNT 1", key("stream"));
	ok(rc == CG_REDIS_OK && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
	   rep->element[0]->elements == 2 && rep->element[0]->element[1]->elements == 6 &&
	   strcmp(rep->element[0]->element[1]->element[0]->str, "event_id") == 0 &&
	   strcmp(rep->element[0]->element[1]->element[5]->str, "{\"a\":1}") == 0,
	   "fields and values stored in order");
	if (rep)
		freeReplyObject(rep);

	/* MAXLEN ~ trims whole nodes (100 entries by default). */
	for (i = 0; i < 300; i++)
		if (cg_redis_xadd(r, key("capped"), 10, 1, fields, values, NULL, 0) != CG_REDIS_OK)
			good = 0;
	ok(good, "300 capped XADDs");
	len = int_reply(r, "XLEN", key("capped"));
	ok(len >= 10 && len <= 110, "MAXLEN ~10 keeps the stream short (%lld)", len);
	for (i = 0; i < 150; i++)
		cg_redis_xadd(r, key("uncapped"), 0, 1, fields, values, NULL, 0);
	is_int(int_reply(r, "XLEN", key("uncapped")), 150, "maxlen 0: no trimming");

	is_int(cg_redis_xadd(r, key("stream"), 10, 1, fields, values, small, sizeof small),
	       CG_REDIS_EREPLY, "id buffer too small reported");
	is_int(cg_redis_xadd(r, key("stream"), 10, 0, fields, values, NULL, 0), CG_REDIS_EREPLY,
	       "no fields refused");
	is_int(cg_redis_xadd(r, key("str"), 10, 1, fields, values, NULL, 0), CG_REDIS_EREPLY,
	       "XADD on a string key -> EREPLY");
}

static void test_url_table(void)
{
	static const char *bad[] = {
		"",
		"http://127.0.0.1:6379",
		"rediss://127.0.0.1:6379",
		"redis://",
		"redis://:6379",
		"redis://127.0.0.1:",
		"redis://127.0.0.1:0",
		"redis://127.0.0.1:65536",
		"redis://127.0.0.1:63a9",
		"redis://127.0.0.1:6379/x",
		"redis://127.0.0.1:6379/1/2",
		"redis://127.0.0.1:6379/-1",
		"redis://127.0.0.1:6379?db=1",
		"redis://user@127.0.0.1:6379",
		"redis://:@127.0.0.1:6379",
		"redis://:pw%zz@127.0.0.1:6379",
		"redis://:pw%4@127.0.0.1:6379",
		"redis://ho st:6379",
		"redis://[::1",
		"redis://[::1]x",
		"unix://",
		"unix://relative/redis.sock",
		"unix:///tmp/redis.sock?db=x",
		"unix:///tmp/redis.sock?foo=1",
		"unix:///tmp/0123456789012345678901234567890123456789012345678901234567890123456789"
		"012345678901234567890123456789012345678901234567890123456789.sock",
	};
	static const char *good[] = {
		"redis://127.0.0.1:1",
		"redis://127.0.0.1:1/",
		"redis://127.0.0.1:1/15",
		"redis://:secret@127.0.0.1:1/2",
		"redis://default:secret@127.0.0.1:1",
		"redis://:p%40ss%3Aword@127.0.0.1:1",
		"redis://[::1]:1",
		"redis://localhost:1/0",
		"unix:///nonexistent/redis.sock",
		"unix:///nonexistent/redis.sock?db=3",
	};
	char err[256];
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cg_redis *r;

		err[0] = '\0';
		r = cg_redis_open(bad[i], 200, err, sizeof err);
		ok(r == NULL && err[0] != '\0', "bad URL \"%s\" refused (%s)", bad[i], err);
		cg_redis_close(r);
	}
	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		cg_redis *r;

		err[0] = '\0';
		r = cg_redis_open(good[i], 200, err, sizeof err);
		ok(r != NULL, "good URL \"%s\" accepted (%s)", good[i], err);
		if (r != NULL)
			is_int(cg_redis_ping(r), CG_REDIS_ECONN, "  nothing listens there: ECONN");
		cg_redis_close(r);
	}
}

static void test_unreachable(void)
{
	const char *f[] = { "a" }, *v[] = { "b" };
	char err[256] = "", *out = NULL;
	cg_redis *r = cg_redis_open("redis://127.0.0.1:1/0", 500, err, sizeof err);

	if (!ok(r != NULL, "object for an unreachable server"))
		return;
	is_int(cg_redis_ping(r), CG_REDIS_ECONN, "ping -> ECONN");
	is_int(cg_redis_get(r, "k", &out, NULL), CG_REDIS_ECONN, "get -> ECONN");
	is_int(cg_redis_setex(r, "k", "v", 1, 10), CG_REDIS_ECONN, "setex -> ECONN");
	is_int(cg_redis_incrby(r, "k", 1, NULL), CG_REDIS_ECONN, "incrby -> ECONN");
	is_int(cg_redis_xadd(r, "s", 10, 1, f, v, NULL, 0), CG_REDIS_ECONN, "xadd -> ECONN");
	ok(strstr(cg_redis_errmsg(r), "127.0.0.1:1") != NULL, "reason names the server (%s)", cg_redis_errmsg(r));
	is_str(cg_redis_strerror(CG_REDIS_ECONN), "connection", "strerror(ECONN)");
	cg_redis_close(r);
}

static void test_select_db(cg_redis *r)
{
	char url[512], err[256] = "", *out = NULL;
	cg_redis *r3;

	url_with_db("3", url, sizeof url);
	r3 = cg_redis_open(url, 2000, err, sizeof err);
	if (!ok(r3 != NULL && cg_redis_ping(r3) == 0, "connect with /3 (%s)", err)) {
		cg_redis_close(r3);
		return;
	}
	cg_redis_setex(r3, key("db3"), "three", 5, 60);
	is_int(cg_redis_get(r, key("db3"), &out, NULL), CG_REDIS_ENIL, "key written in db 3 is not in the test db");
	is_int(cg_redis_get(r3, key("db3"), &out, NULL), CG_REDIS_OK, "but is in db 3");
	free(out);
	out = NULL;
	/* After a reconnect the database is selected again. */
	cg_redis_cmdf(r, NULL, "CLIENT KILL ID %lld", client_id(r3));
	usleep(100000);
	is_int(cg_redis_get(r3, key("db3"), &out, NULL), CG_REDIS_OK, "db 3 selected again after reconnect");
	free(out);
	cg_redis_del(r3, key("db3"));
	cg_redis_close(r3);
}

static void test_auth(cg_redis *r)
{
	char user[64], ui[256], url[512], err[256] = "";
	cg_redis *ra;
	int rc;

	snprintf(user, sizeof user, "cgtest_%s", prefix + 7);
	user[strcspn(user, ":")] = '\0';
	snprintf(ui, sizeof ui, "%s:p%%40ss%%3Aw%%25rd", user);
	url_with_auth(ui, url, sizeof url);
	if (url[0] == '\0') {
		ok(1, "# SKIP CG_TEST_REDIS_URL is a socket or has a password already");
		return;
	}
	rc = cg_redis_cmdf(r, NULL, "ACL SETUSER %s on >p@ss:w%%rd ~* &* +@all", user);
	if (rc != CG_REDIS_OK) {
		ok(1, "# SKIP ACL users not available here (%s)", cg_redis_errmsg(r));
		return;
	}
	ra = cg_redis_open(url, 2000, err, sizeof err);
	ok(ra != NULL && cg_redis_ping(ra) == 0, "AUTH user password (percent-encoded) works (%s)",
	   ra ? cg_redis_errmsg(ra) : err);
	cg_redis_close(ra);

	snprintf(ui, sizeof ui, "%s:wrong", user);
	url_with_auth(ui, url, sizeof url);
	ra = cg_redis_open(url, 2000, err, sizeof err);
	ok(ra != NULL, "wrong password still gives an object");
	if (ra != NULL) {
		is_int(cg_redis_ping(ra), CG_REDIS_ECONN, "wrong password -> ECONN");
		ok(strstr(cg_redis_errmsg(ra), "AUTH") != NULL, "reason says AUTH (%s)", cg_redis_errmsg(ra));
	}
	cg_redis_close(ra);
	cg_redis_cmdf(r, NULL, "ACL DELUSER %s", user);
}

static void test_reconnect(cg_redis *r, cg_redis *admin)
{
	long long id1, id2;
	char *out = NULL;

	id1 = client_id(r);
	ok(id1 > 0, "client id %lld", id1);
	{
		redisReply *rep = NULL;

		ok(cg_redis_cmdf(admin, &rep, "CLIENT KILL ID %lld", id1) == CG_REDIS_OK &&
		   rep->type == REDIS_REPLY_INTEGER && rep->integer == 1,
		   "killed our connection from another one");
		if (rep)
			freeReplyObject(rep);
	}
	usleep(100000);
	is_int(cg_redis_ping(r), 0, "next command reconnects first");
	id2 = client_id(r);
	ok(id2 > 0 && id2 != id1, "on a new connection (%lld -> %lld)", id1, id2);
	is_int(cg_redis_setex(r, key("after"), "1", 1, 60), CG_REDIS_OK, "writes work after reconnect");
	is_int(cg_redis_get(r, key("after"), &out, NULL), CG_REDIS_OK, "reads work after reconnect");
	free(out);
}

static void test_timeouts(void)
{
	char err[256] = "";
	redisReply *rep = NULL;
	cg_redis *r0 = cg_redis_open(base_url, 0, err, sizeof err);
	cg_redis *rs = cg_redis_open(base_url, 200, err, sizeof err);
	int64_t t0;
	int rc;

	if (!ok(r0 != NULL && rs != NULL, "opened with timeout 0 and 200 ms")) {
		cg_redis_close(r0);
		cg_redis_close(rs);
		return;
	}
	t0 = cg_monotonic_ms();
	rc = cg_redis_cmdf(r0, &rep, "BLPOP %s 1", key("nolist"));
	ok(rc == CG_REDIS_OK && rep != NULL && rep->type == REDIS_REPLY_NIL,
	   "timeout 0: a 1 s BLPOP waits and answers nil (%s)", cg_redis_errmsg(r0));
	ok(cg_monotonic_ms() - t0 >= 900, "it did block");
	if (rep)
		freeReplyObject(rep);

	t0 = cg_monotonic_ms();
	rc = cg_redis_cmdf(rs, NULL, "BLPOP %s 2", key("nolist"));
	is_int(rc, CG_REDIS_ECONN, "timeout 200 ms: a 2 s BLPOP times out -> ECONN");
	ok(cg_monotonic_ms() - t0 < 1500, "bounded by the timeout");
	is_int(cg_redis_ping(rs), 0, "usable again after the timeout");

	cg_redis_close(r0);
	cg_redis_close(rs);
}

/* ---- a fake Redis that swallows commands, to prove none is sent twice ---- */

enum { FAKE_SILENT, FAKE_CLOSE };

struct fake {
	int lfd, port, mode;
	atomic_int stop;
	int commands; /* INCR commands received, over every connection */
	int conns;
	pthread_t th;
};

/* Counts INCR/INCRBY command names (a bulk string after "\r\n"). */
static int count_incr(const char *buf, size_t n)
{
	int c = 0;
	size_t i;

	for (i = 0; i + 6 <= n; i++)
		if (memcmp(buf + i, "\r\nINCR", 6) == 0)
			c++;
	return c;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	while (!f->stop) {
		struct pollfd pfd = { f->lfd, POLLIN, 0 };
		int cfd;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		cfd = accept(f->lfd, NULL, NULL);
		if (cfd < 0)
			continue;
		f->conns++;
		while (!f->stop) {
			struct pollfd cp = { cfd, POLLIN, 0 };
			char buf[4096];
			ssize_t n;

			if (poll(&cp, 1, 20) <= 0)
				continue;
			n = read(cfd, buf, sizeof buf);
			if (n <= 0)
				break;
			f->commands += count_incr(buf, (size_t)n);
			if (f->mode == FAKE_CLOSE)
				break;
		}
		close(cfd);
	}
	return NULL;
}

static int fake_start(struct fake *f, int mode)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;

	memset(f, 0, sizeof *f);
	f->mode = mode;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    listen(f->lfd, 8) != 0 || getsockname(f->lfd, (struct sockaddr *)&sa, &sl) != 0)
		return -1;
	f->port = ntohs(sa.sin_port);
	return pthread_create(&f->th, NULL, fake_main, f) == 0 ? 0 : -1;
}

static void fake_stop(struct fake *f)
{
	usleep(300000); /* room for a (wrong) second attempt to arrive */
	f->stop = 1;
	pthread_join(f->th, NULL);
	close(f->lfd);
}

static void test_never_resent(void)
{
	static const struct {
		int mode;
		const char *name;
	} modes[] = {
		{ FAKE_SILENT, "no reply (timeout)" },
		{ FAKE_CLOSE, "connection closed after the command" },
	};
	size_t i;

	for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		char url[64], err[256] = "";
		struct fake f;
		cg_redis *r;
		int rc;

		if (!ok(fake_start(&f, modes[i].mode) == 0, "fake server up (%s)", modes[i].name))
			continue;
		snprintf(url, sizeof url, "redis://127.0.0.1:%d", f.port);
		r = cg_redis_open(url, 200, err, sizeof err);
		rc = cg_redis_incrby(r, "k", 1, NULL);
		is_int(rc, CG_REDIS_ECONN, "%s -> ECONN", modes[i].name);
		fake_stop(&f);
		is_int(f.commands, 1, "%s: the command was sent exactly once", modes[i].name);
		cg_redis_close(r);
	}
}

static void cleanup(cg_redis *r)
{
	char cursor[32] = "0";
	int rounds = 0;

	do {
		redisReply *rep = NULL;
		size_t i;

		if (cg_redis_cmdf(r, &rep, "SCAN %s MATCH %s* COUNT 1000", cursor, prefix) != CG_REDIS_OK)
			break;
		snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
		for (i = 0; i < rep->element[1]->elements; i++)
			cg_redis_del(r, rep->element[1]->element[i]->str);
		freeReplyObject(rep);
	} while (strcmp(cursor, "0") != 0 && ++rounds < 10000);
}

int main(void)
{
	char err[256] = "", rnd[40];
	cg_redis *r, *admin;

	base_url = getenv("CG_TEST_REDIS_URL");
	if (base_url == NULL || base_url[0] == '\0')
		skip_all("CG_TEST_REDIS_URL not set");
	cg_log_init("test_redis", CG_LOG_ERROR);
	if (cg_random_id("", rnd, sizeof rnd) != 0)
		snprintf(rnd, sizeof rnd, "%ld", (long)getpid());
	snprintf(prefix, sizeof prefix, "cgtest:%s:", rnd);

	r = cg_redis_open(base_url, 2000, err, sizeof err);
	admin = cg_redis_open(base_url, 2000, err, sizeof err);
	if (r == NULL || admin == NULL || cg_redis_ping(r) != 0 || cg_redis_ping(admin) != 0) {
		printf("Bail out! cannot reach CG_TEST_REDIS_URL: %s\n", r ? cg_redis_errmsg(r) : err);
		return 1;
	}
	ok(1, "connected, key prefix %s", prefix);

	test_strings(r);
	test_error_replies(r);
	test_argv_and_cmdf(r);
	test_xadd(r);
	test_url_table();
	test_unreachable();
	test_select_db(r);
	test_auth(r);
	test_reconnect(r, admin);
	test_timeouts();
	test_never_resent();

	cleanup(admin);
	{
		redisReply *rep = NULL;

		cg_redis_cmdf(admin, &rep, "SCAN 0 MATCH %s* COUNT 100000", prefix);
		ok(rep != NULL && rep->element[1]->elements == 0, "test keys deleted");
		if (rep)
			freeReplyObject(rep);
	}
	cg_redis_close(r);
	cg_redis_close(admin);
	return done_testing();
}

/* test_history: stream positions; history from PostgreSQL and Redis, cursors and API keys with servers. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_auth.h"
#include "cg_config.h"
#include "cg_db.h"
#include "cg_event.h"
#include "cg_history.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_redis.h"
#include "cg_util.h"
#include "tap.h"
#include "test_schema.h"

#define MAXU UINT64_MAX

static char *pos_text(const cg_stream_pos *p)
{
	static char buf[4][CG_STREAM_POS_MAX];
	static int i;

	i = (i + 1) % 4;
	return cg_stream_pos_format(p, buf[i], sizeof buf[i]);
}

/* ---- positions ---- */

static void check_pos_parse(void)
{
	static const struct {
		const char *text;
		int rc;
		uint64_t ms, seq;
	} c[] = {
		{ "0-0", 0, 0, 0 },
		{ "1700000000000-5", 0, 1700000000000ULL, 5 },
		{ "18446744073709551615-18446744073709551615", 0, MAXU, MAXU },
		{ "007-01", 0, 7, 1 },
		{ "18446744073709551616-0", -1, 0, 0 },
		{ "0-18446744073709551616", -1, 0, 0 },
		{ "99999999999999999999-1", -1, 0, 0 },
		{ "184467440737095516150-1", -1, 0, 0 },
		{ "1-", -1, 0, 0 },
		{ "-1", -1, 0, 0 },
		{ "-", -1, 0, 0 },
		{ "1", -1, 0, 0 },
		{ "", -1, 0, 0 },
		{ "+1-2", -1, 0, 0 },
		{ "1-+2", -1, 0, 0 },
		{ "-1-2", -1, 0, 0 },
		{ " 1-2", -1, 0, 0 },
		{ "1-2 ", -1, 0, 0 },
		{ "1 -2", -1, 0, 0 },
		{ "1--2", -1, 0, 0 },
		{ "1-2-3", -1, 0, 0 },
		{ "a-1", -1, 0, 0 },
		{ "1-0x1", -1, 0, 0 },
		{ "1-2\t", -1, 0, 0 },
		{ "$", -1, 0, 0 },
		{ "1234567890123456789012345678901234567890123456789-1", -1, 0, 0 },
	};
	size_t i;
	cg_stream_pos p;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		p.ms = 9;
		p.seq = 9;
		ok(cg_stream_pos_parse(c[i].text, &p) == c[i].rc && p.ms == c[i].ms && p.seq == c[i].seq,
		   "parse \"%s\": %s", c[i].text, c[i].rc == 0 ? "accepted" : "refused, zeroed");
	}
	p.ms = 9;
	ok(cg_stream_pos_parse(NULL, &p) == -1 && p.ms == 0, "parse NULL: refused, zeroed");
}

static void check_pos_format(void)
{
	cg_stream_pos a = { 0, 0 }, b = { MAXU, MAXU }, c = { 1700000000000ULL, 42 }, back;
	char buf[CG_STREAM_POS_MAX];

	is_str(cg_stream_pos_format(&a, buf, sizeof buf), "0-0", "format 0-0");
	is_str(cg_stream_pos_format(&b, buf, sizeof buf), "18446744073709551615-18446744073709551615",
	       "format the largest position");
	ok(strlen(buf) < CG_STREAM_POS_MAX, "the largest position fits CG_STREAM_POS_MAX");
	is_str(cg_stream_pos_format(&c, buf, sizeof buf), "1700000000000-42", "format an ordinary position");
	ok(cg_stream_pos_parse(buf, &back) == 0 && cg_stream_pos_cmp(&back, &c) == 0, "format then parse round-trips");
}

static void check_pos_cmp_next(void)
{
	static const struct {
		cg_stream_pos a, b;
		int sign;
	} c[] = {
		{ { 1, 1 }, { 1, 1 }, 0 },
		{ { 1, 1 }, { 1, 2 }, -1 },
		{ { 1, 2 }, { 1, 1 }, 1 },
		{ { 1, MAXU }, { 2, 0 }, -1 },
		{ { 2, 0 }, { 1, MAXU }, 1 },
		{ { 0, 0 }, { MAXU, MAXU }, -1 },
		{ { MAXU, 0 }, { MAXU - 1, MAXU }, 1 },
	};
	static const struct {
		cg_stream_pos p, want;
	} n[] = {
		{ { 1, 2 }, { 1, 3 } },
		{ { 0, 0 }, { 0, 1 } },
		{ { 1, MAXU }, { 2, 0 } },
		{ { MAXU - 1, MAXU }, { MAXU, 0 } },
		{ { MAXU, MAXU }, { MAXU, MAXU } },
	};
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		int r = cg_stream_pos_cmp(&c[i].a, &c[i].b);

		ok((r > 0) - (r < 0) == c[i].sign, "cmp %s %s is %d", pos_text(&c[i].a), pos_text(&c[i].b), c[i].sign);
	}
	for (i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		cg_stream_pos got = cg_stream_pos_next(&n[i].p);

		is_str(pos_text(&got), pos_text(&n[i].want), "next of %s", pos_text(&n[i].p));
		if (i < sizeof(n) / sizeof(n[0]) - 1) {
			cg_stream_pos back = cg_stream_pos_prev(&got);

			is_str(pos_text(&back), pos_text(&n[i].p), "prev of %s", pos_text(&got));
		}
	}
	{
		cg_stream_pos zero = { 0, 0 }, got = cg_stream_pos_prev(&zero);

		is_str(pos_text(&got), "0-0", "prev of 0-0 stays 0-0");
	}
}

/* ---- PostgreSQL ---- */

/* Writes a committed event of `tenant` (audience user/channel/agent, any
 * NULL) and, when sid is not NULL, marks it published at stream id sid.
 * The event object goes to *ev when ev is not NULL. */
static int add_event(cg_db *db, const char *tenant, const char *user, const char *channel,
		     const char *agent, const char *payload, const char *sid, char id[37], json_object **ev)
{
	cg_event_audience aud = { user, channel, agent };
	json_object *e = NULL;
	int rc = cg_db_begin_tenant(db, tenant);

	if (rc != CG_DB_OK)
		return rc;
	rc = cg_event_insert_to(db, tenant, channel != NULL || agent != NULL ? "api.deployed" : "activity.created",
				"cap_h", &aud, 2, payload, "u-actor", "{\"fields\":[\"state\"]}", &e);
	if (rc != CG_DB_OK) {
		cg_db_rollback(db);
		return rc;
	}
	rc = cg_db_commit(db);
	snprintf(id, 37, "%s", cg_event_str(e, "event_id"));
	if (rc == CG_DB_OK && sid != NULL)
		rc = cg_event_mark_published(db, tenant, id, sid);
	if (ev != NULL)
		*ev = e;
	else
		json_object_put(e);
	return rc;
}

/* The stream ids of a history array, comma-separated. */
static const char *sids(json_object *arr)
{
	static char buf[1024];
	size_t i, n = arr != NULL ? json_object_array_length(arr) : 0, off = 0;

	buf[0] = '\0';
	for (i = 0; i < n && off < sizeof buf; i++) {
		int w = snprintf(buf + off, sizeof buf - off, "%s%s", i ? "," : "",
				 cg_event_str(json_object_array_get_idx(arr, i), "stream_id"));
		if (w < 0)
			break;
		off += (size_t)w;
	}
	return arr != NULL ? buf : "(null)";
}

/* cg_history_pg() as a list of stream ids ("ERR" on failure). */
static const char *pg_range(cg_db *db, const char *tenant, const cg_stream_pos *after,
			    const cg_stream_pos *upto, const cg_stream_pos *before, int limit)
{
	json_object *arr = NULL;
	const char *s;

	if (cg_history_pg(db, tenant, after, upto, before, limit, &arr) != CG_DB_OK || arr == NULL)
		return "ERR";
	s = sids(arr);
	json_object_put(arr);
	return s;
}

static void check_event_position(cg_db *db)
{
	char pub[37], unpub[37], other[37], unknown[37], upper[37];
	cg_stream_pos pos;
	time_t at;
	int found, i;
	static const char *const junk[] = {
		"not-a-uuid", "", "'; DROP TABLE events; --", "0b7c3f7e8d2a4b599a3e2f1d5c6b7a80",
		"{0b7c3f7e-8d2a-4b59-9a3e-2f1d5c6b7a80}", "0b7c3f7e-8d2a-4b59-9a3e-2f1d5c6b7a8g",
		"0b7c3f7e-8d2a-4b59-9a3e-2f1d5c6b7a800", "1700000000000-0",
	};

	ok(add_event(db, "default", NULL, NULL, NULL, "{\"n\":1}", "1700000000000-7", pub, NULL) == CG_DB_OK &&
	   add_event(db, "default", NULL, NULL, NULL, "{\"n\":2}", NULL, unpub, NULL) == CG_DB_OK &&
	   add_event(db, "acme", NULL, NULL, NULL, "{\"n\":3}", "1700000000001-0", other, NULL) == CG_DB_OK,
	   "events for event_position written");
	found = -1;
	ok(cg_history_event_position(db, "default", pub, &found, &pos, &at) == CG_DB_OK && found == 1,
	   "a published event is found");
	is_str(pos_text(&pos), "1700000000000-7", "at its stream position");
	ok(at > cg_now() - 300 && at <= cg_now() + 5, "with its created_at");
	for (i = 0; pub[i]; i++)
		upper[i] = (char)(pub[i] >= 'a' && pub[i] <= 'f' ? pub[i] - 'a' + 'A' : pub[i]);
	upper[i] = '\0';
	ok(cg_history_event_position(db, "default", upper, &found, &pos, &at) == CG_DB_OK && found == 1,
	   "an upper-case uuid names the same event");
	cg_uuid4(unknown);
	ok(cg_history_event_position(db, "default", unknown, &found, &pos, &at) == CG_DB_OK && found == 0 &&
	   pos.ms == 0 && at == 0, "an unknown uuid: not found");
	ok(cg_history_event_position(db, "default", other, &found, &pos, &at) == CG_DB_OK && found == 0,
	   "another tenant's event: not found");
	ok(cg_history_event_position(db, "acme", other, &found, &pos, &at) == CG_DB_OK && found == 1,
	   "(found in its own tenant)");
	ok(cg_history_event_position(db, "default", unpub, &found, &pos, &at) == CG_DB_OK && found == 0,
	   "an event not published yet has no position");
	for (i = 0; i < (int)(sizeof(junk) / sizeof(junk[0])); i++)
		ok(cg_history_event_position(db, "default", junk[i], &found, &pos, &at) == CG_DB_OK && found == 0 &&
		   !cg_db_in_transaction(db), "\"%s\" is not a uuid: not found, no SQL error", junk[i]);
	ok(cg_history_event_position(db, "default", NULL, &found, &pos, &at) == CG_DB_OK && found == 0,
	   "NULL: not found");
	/* and the connection is still usable */
	ok(cg_history_event_position(db, "default", pub, &found, &pos, &at) == CG_DB_OK && found == 1,
	   "the connection is fine afterwards");
}

/* Positions in an order that their ids (insertion order) do not have. */
static void check_history_pg(cg_db *db)
{
	const char *sid[] = { "300-0", "100-5", "200-0", "200-1" };
	char id[37];
	cg_stream_pos after, upto, before;
	json_object *arr = NULL;
	size_t i;
	int ok_all = 1;

	for (i = 0; i < sizeof(sid) / sizeof(sid[0]); i++)
		ok_all &= add_event(db, "globex", NULL, NULL, NULL, "{}", sid[i], id, NULL) == CG_DB_OK;
	ok_all &= add_event(db, "globex", NULL, NULL, NULL, "{}", NULL, id, NULL) == CG_DB_OK;
	ok_all &= add_event(db, "globex", "u1", NULL, NULL, "{}", "not-a-position", id, NULL) == CG_DB_OK;
	ok_all &= add_event(db, "initech", NULL, NULL, NULL, "{}", "150-0", id, NULL) == CG_DB_OK;
	ok(ok_all, "events with out-of-order stream ids written");

	is_str(pg_range(db, "globex", NULL, NULL, NULL, 100), "100-5,200-0,200-1,300-0",
	       "ordered by position, not by id; unpublished and odd ids left out");
	is_str(pg_range(db, "initech", NULL, NULL, NULL, 100), "150-0", "another tenant sees only its own");
	is_str(pg_range(db, "nobody", NULL, NULL, NULL, 100), "", "an unknown tenant: empty");
	cg_stream_pos_parse("100-5", &after);
	is_str(pg_range(db, "globex", &after, NULL, NULL, 100), "200-0,200-1,300-0", "after is exclusive");
	cg_stream_pos_parse("100-4", &after);
	is_str(pg_range(db, "globex", &after, NULL, NULL, 100), "100-5,200-0,200-1,300-0", "after just before one");
	cg_stream_pos_parse("200-0", &upto);
	is_str(pg_range(db, "globex", NULL, &upto, NULL, 100), "100-5,200-0", "upto is inclusive");
	cg_stream_pos_parse("200-1", &before);
	is_str(pg_range(db, "globex", NULL, NULL, &before, 100), "100-5,200-0", "before is exclusive");
	cg_stream_pos_parse("201-0", &before);
	is_str(pg_range(db, "globex", NULL, NULL, &before, 100), "100-5,200-0,200-1", "before with a seq carry");
	cg_stream_pos_parse("300-0", &upto);
	cg_stream_pos_parse("300-0", &before);
	is_str(pg_range(db, "globex", NULL, &upto, &before, 100), "100-5,200-0,200-1", "upto and before: the narrower wins");
	cg_stream_pos_parse("100-5", &after);
	cg_stream_pos_parse("200-1", &upto);
	is_str(pg_range(db, "globex", &after, &upto, NULL, 100), "200-0,200-1", "after and upto");
	is_str(pg_range(db, "globex", &upto, &after, NULL, 100), "", "after beyond upto: empty");
	is_str(pg_range(db, "globex", NULL, NULL, NULL, 2), "100-5,200-0", "limit");
	is_str(pg_range(db, "globex", NULL, NULL, NULL, 0), "", "limit 0: empty");
	before.ms = 0;
	before.seq = 0;
	is_str(pg_range(db, "globex", NULL, NULL, &before, 100), "", "before 0-0: empty");
	after.ms = MAXU;
	after.seq = MAXU;
	is_str(pg_range(db, "globex", &after, NULL, NULL, 100), "", "after the largest position: empty");
	after.ms = MAXU;
	after.seq = 0;
	is_str(pg_range(db, "globex", &after, NULL, NULL, 100), "", "after beyond bigint: empty");
	after.ms = 100;
	after.seq = MAXU;
	is_str(pg_range(db, "globex", &after, NULL, NULL, 100), "200-0,200-1,300-0", "after with a huge seq");
	upto.ms = MAXU;
	upto.seq = MAXU;
	is_str(pg_range(db, "globex", NULL, &upto, NULL, 100), "100-5,200-0,200-1,300-0", "upto the largest position");
	before.ms = 200;
	before.seq = MAXU;
	is_str(pg_range(db, "globex", NULL, NULL, &before, 100), "100-5,200-0,200-1", "before with a huge seq");

	ok(cg_history_pg(db, "globex", NULL, NULL, NULL, 1, &arr) == CG_DB_OK && arr != NULL &&
	   json_object_array_length(arr) == 1, "one event read");
	if (arr != NULL && json_object_array_length(arr) == 1) {
		json_object *ev = json_object_array_get_idx(arr, 0);

		is_str(cg_event_str(ev, "tenant"), "globex", "it has its tenant");
		is_str(cg_event_str(ev, "type"), "activity.created", "its type");
		is_int(cg_event_int(ev, "version"), 2, "its version");
		ok(!json_object_object_get_ex(ev, "actor", NULL) && !json_object_object_get_ex(ev, "cause", NULL),
		   "no actor or cause (the stream has none)");
		ok(!cg_db_in_transaction(db), "no transaction left open");
	}
	json_object_put(arr);
}

/* Advances the cursor to `to` (NULL: leaves it) and returns where it is
 * then ("none" without one, "ERR" on failure). */
static const char *cursor_after(cg_db *db, const char *tenant, const char *subject, const char *device,
				const char *to)
{
	cg_stream_pos p, got;
	time_t at;
	int found = 0;

	if (to != NULL && (cg_stream_pos_parse(to, &p) < 0 ||
			   cg_history_cursor_advance(db, tenant, subject, device, &p) != CG_DB_OK))
		return "ERR";
	if (cg_history_cursor_get(db, tenant, subject, device, &found, &got, &at) != CG_DB_OK)
		return "ERR";
	if (found && (at < cg_now() - 300 || at > cg_now() + 5))
		return "bad updated_at";
	return found ? pos_text(&got) : "none";
}

static void check_cursors(cg_db *db)
{
	cg_stream_pos p;

	is_str(cursor_after(db, "default", "alice", "dev1", NULL), "none", "no cursor yet");
	is_str(cursor_after(db, "default", "alice", "dev1", "100-5"), "100-5", "cursor created at the position given");
	is_str(cursor_after(db, "default", "alice", "dev1", "100-4"), "100-5", "it never moves back");
	is_str(cursor_after(db, "default", "alice", "dev1", "99-99"), "100-5", "not even to an older ms with a larger seq");
	is_str(cursor_after(db, "default", "alice", "dev1", "100-5"), "100-5", "the same position leaves it");
	is_str(cursor_after(db, "default", "alice", "dev1", "100-6"), "100-6", "it moves forward");
	is_str(cursor_after(db, "default", "alice", "dev1", "101-0"), "101-0", "and forward across ms");

	is_str(cursor_after(db, "default", "alice", "dev2", NULL), "none", "another device of the same user has none");
	is_str(cursor_after(db, "default", "alice", "dev2", "50-0"), "50-0", "it gets its own");
	is_str(cursor_after(db, "default", "alice", "dev1", NULL), "101-0", "the first device keeps its own");
	is_str(cursor_after(db, "acme", "alice", "dev1", NULL), "none", "the same user and device in another tenant has none");
	is_str(cursor_after(db, "acme", "alice", "dev1", "7-0"), "7-0", "a cursor per tenant");
	is_str(cursor_after(db, "default", "alice", "dev1", NULL), "101-0", "the other tenant's is untouched");
	is_str(cursor_after(db, "default", "bob", "dev1", NULL), "none", "another user with the same device token has none");
	is_str(cursor_after(db, "default", "agent:bot-1", "", "3-1"), "3-1", "an agent's cursor has device \"\"");

	p.ms = MAXU;
	p.seq = 0;
	ok(cg_history_cursor_advance(db, "default", "alice", "dev1", &p) != CG_DB_OK,
	   "a position beyond bigint is refused");
	is_str(cursor_after(db, "default", "alice", "dev1", NULL), "101-0", "and leaves the cursor as it was");
	cg_stream_pos_parse("1-0", &p);
	is_int(cg_history_cursor_advance(db, "default", "", "dev1", &p), CG_DB_ECHECK, "an empty subject is refused");
	is_int(cg_history_cursor_advance(db, "nope", "alice", "dev1", &p), CG_DB_ECHECK,
	       "an unknown tenant is refused");
	ok(!cg_db_in_transaction(db), "no transaction left open");
}

/* The same calls as a role subject to row-level security (a temporary
 * member of capsule_app), as the daemons run. */
static void check_as_app_role(const char *url, cg_db *db, const char *dbname)
{
	char role[64], id[37];
	cg_db *app = test_app_role_open(url, db, dbname, "test_hist_", role);
	PGresult *res = NULL;
	cg_stream_pos p;
	json_object *arr = NULL;
	time_t at;
	int found = 0;

	if (app == NULL)
		goto out;
	ok(add_event(db, "hooli", NULL, NULL, NULL, "{}", "500-0", id, NULL) == CG_DB_OK, "an event of tenant hooli");
	ok(cg_history_pg(app, "hooli", NULL, NULL, NULL, 10, &arr) == CG_DB_OK && arr != NULL &&
	   json_object_array_length(arr) == 1, "capsule_app reads the history of its tenant");
	json_object_put(arr);
	ok(cg_history_event_position(app, "hooli", id, &found, &p, &at) == CG_DB_OK && found == 1,
	   "capsule_app finds an event's position");
	is_str(cursor_after(app, "hooli", "carol", "d", "500-0"), "500-0", "capsule_app creates a cursor");
	is_str(cursor_after(app, "hooli", "carol", "d", "500-1"), "500-1", "capsule_app moves it forward");
	is_str(cursor_after(app, "hooli", "carol", "d", "499-0"), "500-1", "but not back");
	ok(cg_db_begin_tenant(app, "hooli") == CG_DB_OK &&
	   cg_db_exec(app, &res, "SELECT count(*) FROM ws_cursors", 0, NULL) == CG_DB_OK &&
	   strcmp(PQgetvalue(res, 0, 0), "1") == 0, "row-level security: a tenant sees only its own cursors");
	if (res != NULL)
		PQclear(res);
	res = NULL;
	cg_db_rollback(app);
	ok(cg_db_begin_tenant(app, "hooli") == CG_DB_OK &&
	   cg_db_exec(app, NULL, "INSERT INTO ws_cursors (tenant_id, subject, device, stream_ms, stream_seq)"
			    " VALUES ('default', 'x', 'y', 1, 1)", 0, NULL) != CG_DB_OK,
	   "row-level security: no cursor for another tenant");
	cg_db_rollback(app);
	ok(cg_db_begin_tenant(app, "hooli") == CG_DB_OK &&
	   cg_db_exec(app, NULL, "DELETE FROM ws_cursors", 0, NULL) != CG_DB_OK, "capsule_app may not delete cursors");
	cg_db_rollback(app);
out:
	test_app_role_drop(db, app, role);
}

static void check_api_keys(cg_db *db)
{
	static const struct {
		const char *label, *role, *extra;
	} rows[] = {
		{ "good", "operator", "NULL, NULL" },
		{ "revoked", "admin", "NULL, now()" },
		{ "expired", "admin", "now() - interval '1 hour', NULL" },
		{ "future", "viewer", "now() + interval '1 day', NULL" },
	};
	char key[4][CG_API_KEY_MAX], kid[4][CG_API_KEY_ID_LEN + 1], hash[4][65];
	char stranger[CG_API_KEY_MAX], sk[CG_API_KEY_ID_LEN + 1], sh[65], wrong[CG_API_KEY_MAX], sql[512], err[256];
	cg_principal p;
	cg_db *down;
	size_t i;
	int ok_all = 1;

	for (i = 0; i < 4; i++) {
		ok_all &= cg_api_key_generate(key[i], kid[i], hash[i]) == 0;
		snprintf(sql, sizeof sql,
			 "INSERT INTO api_keys (key_id, tenant_id, name, role, secret_hash, expires_at, revoked_at)"
			 " VALUES ('%s', 'acme', '%s', '%s', '%s', %s)",
			 kid[i], rows[i].label, rows[i].role, hash[i], rows[i].extra);
		ok_all &= cg_db_exec_script(db, sql) == CG_DB_OK;
	}
	ok(ok_all, "API keys stored");
	memset(&p, 0xff, sizeof p);
	is_int(cg_api_key_authenticate(db, key[0], &p), CG_APIKEY_OK, "a good key is accepted");
	is_int(p.kind, CG_AUTH_API_KEY, "kind api key");
	is_str(p.tenant, "acme", "its tenant");
	is_int(p.role, CG_ROLE_OPERATOR, "its role");
	is_str(p.key_id, kid[0], "its key id");
	snprintf(sql, sizeof sql, "apikey:%s", kid[0]);
	is_str(p.subject, sql, "subject apikey:<key_id>");
	is_int(cg_api_key_authenticate(db, key[3], &p), CG_APIKEY_OK, "a key expiring later is accepted");
	is_int(p.role, CG_ROLE_VIEWER, "with its role");

	is_int(cg_api_key_authenticate(db, key[1], &p), CG_APIKEY_REFUSED, "a revoked key is refused");
	ok(p.kind == 0 && p.tenant[0] == '\0', "and the principal is zeroed");
	is_int(cg_api_key_authenticate(db, key[2], &p), CG_APIKEY_REFUSED, "an expired key is refused");
	ok(cg_api_key_generate(stranger, sk, sh) == 0, "an unknown key made");
	is_int(cg_api_key_authenticate(db, stranger, &p), CG_APIKEY_REFUSED, "an unknown key id is refused");
	/* the good key's id with another key's secret */
	snprintf(wrong, sizeof wrong, "cgk_%s%s", kid[0], stranger + 4 + CG_API_KEY_ID_LEN);
	is_int(cg_api_key_authenticate(db, wrong, &p), CG_APIKEY_REFUSED, "a wrong secret is refused");
	is_int(cg_api_key_authenticate(db, "cgk_nothing", &p), CG_APIKEY_REFUSED, "a malformed key is refused");
	is_int(cg_api_key_authenticate(db, "", &p), CG_APIKEY_REFUSED, "an empty key is refused");
	is_int(cg_api_key_authenticate(db, NULL, &p), CG_APIKEY_REFUSED, "no key is refused");
	ok(cg_db_begin(db) == CG_DB_OK, "a transaction is opened");
	is_int(cg_api_key_authenticate(db, key[0], &p), CG_APIKEY_ERROR, "inside a transaction: error");
	cg_db_rollback(db);
	is_int(cg_api_key_authenticate(db, key[0], &p), CG_APIKEY_OK, "afterwards fine again");

	down = cg_db_open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", err, sizeof err);
	is_int(cg_api_key_authenticate(down, key[0], &p), CG_APIKEY_UNAVAILABLE,
	       "PostgreSQL unreachable: unavailable");
	cg_db_close(down);
}

/* ---- Redis ---- */

/* cg_history_redis() as stream ids; *last and *end through the pointers. */
static const char *redis_range(cg_redis *r, const cg_config *cfg, const char *tenant, const cg_stream_pos *after,
			       const cg_stream_pos *upto, int scan, cg_stream_pos *last, int *end)
{
	json_object *arr = NULL;
	const char *s;

	if (cg_history_redis(r, cfg, tenant, after, upto, scan, &arr, last, end) != CG_REDIS_OK || arr == NULL)
		return "ERR";
	s = sids(arr);
	json_object_put(arr);
	return s;
}

/* Writes, publishes and marks an event; its stream id into sid. */
static int publish(cg_db *db, cg_redis *r, const cg_config *cfg, const char *tenant, const char *user,
		   const char *channel, const char *agent, const char *payload, char *sid, size_t sidlen)
{
	char id[37];
	json_object *ev = NULL;
	int rc = add_event(db, tenant, user, channel, agent, payload, NULL, id, &ev);

	if (rc == CG_DB_OK)
		rc = cg_event_publish(r, cfg, ev, sid, sidlen);
	if (rc == CG_REDIS_OK)
		rc = cg_event_mark_published(db, tenant, id, sid);
	json_object_put(ev);
	return rc;
}

static void check_redis(cg_db *db, cg_redis *r, cg_config *cfg)
{
	char d[4][64], a[2][64], junk[64], expect[512], *stream = cfg->event_stream;
	cg_stream_pos zero = { 0, 0 }, first, last, p, upto;
	json_object *from_pg = NULL, *from_redis = NULL;
	redisReply *rep = NULL;
	int have = -1, end = -1, ok_all = 1;
	size_t i;

	ok(cg_history_redis_first(r, cfg, &have, &first) == CG_REDIS_OK && have == 0, "an absent stream has no first entry");
	is_str(redis_range(r, cfg, "umbrella", &zero, NULL, 10, &last, &end), "", "an absent stream: no history");
	ok(end == 1 && cg_stream_pos_cmp(&last, &zero) == 0, "the range is done, last is after");

	ok_all &= publish(db, r, cfg, "umbrella", NULL, NULL, NULL, "{\"title\":\"one\",\"n\":[1,2]}", d[0], 64) == 0;
	ok_all &= publish(db, r, cfg, "wayne", NULL, NULL, NULL, "{}", a[0], 64) == 0;
	ok_all &= publish(db, r, cfg, "umbrella", "u1", NULL, NULL, "{\"title\":\"two\"}", d[1], 64) == 0;
	ok_all &= publish(db, r, cfg, "umbrella", NULL, "capsule:cap_h", NULL, "{\"api\":\"x\"}", d[2], 64) == 0;
	ok_all &= publish(db, r, cfg, "wayne", NULL, NULL, NULL, "{}", a[1], 64) == 0;
	ok_all &= publish(db, r, cfg, "umbrella", NULL, NULL, "bot-1", "{\"deep\":{\"a\":{\"b\":null}}}", d[3], 64) == 0;
	ok(ok_all, "events of two tenants published");

	ok(cg_history_redis_first(r, cfg, &have, &first) == CG_REDIS_OK && have == 1, "the stream has a first entry");
	is_str(pos_text(&first), d[0], "it is the oldest");

	snprintf(expect, sizeof expect, "%s,%s,%s,%s", d[0], d[1], d[2], d[3]);
	is_str(redis_range(r, cfg, "umbrella", &zero, NULL, 100, &last, &end), expect, "a tenant's entries, in order");
	ok(end == 1 && strcmp(pos_text(&last), d[3]) == 0, "range done; last is the last entry");
	snprintf(expect, sizeof expect, "%s,%s", a[0], a[1]);
	is_str(redis_range(r, cfg, "wayne", &zero, NULL, 100, &last, &end), expect, "the other tenant's entries only");
	is_str(pos_text(&last), d[3], "its last scanned is the last entry of the stream");

	snprintf(expect, sizeof expect, "%s,%s", d[0], d[1]);
	is_str(redis_range(r, cfg, "umbrella", &zero, NULL, 3, &last, &end), expect, "scan 3: three entries scanned");
	ok(end == 0 && strcmp(pos_text(&last), d[1]) == 0, "not done; last is the third entry");
	p = last;
	snprintf(expect, sizeof expect, "%s,%s", d[2], d[3]);
	is_str(redis_range(r, cfg, "umbrella", &p, NULL, 3, &last, &end), expect, "the next three from last");
	ok(end == 0 && strcmp(pos_text(&last), d[3]) == 0, "exactly scan entries: not known to be done");
	p = last;
	is_str(redis_range(r, cfg, "umbrella", &p, NULL, 3, &last, &end), "", "then nothing");
	ok(end == 1 && cg_stream_pos_cmp(&last, &p) == 0, "done; last stays after");

	cg_stream_pos_parse(d[1], &upto);
	snprintf(expect, sizeof expect, "%s,%s", d[0], d[1]);
	is_str(redis_range(r, cfg, "umbrella", &zero, &upto, 100, &last, &end), expect, "upto is inclusive");
	ok(end == 1 && strcmp(pos_text(&last), d[1]) == 0, "done at upto");
	cg_stream_pos_parse(d[0], &p);
	is_str(redis_range(r, cfg, "umbrella", &p, &upto, 100, &last, &end), d[1], "after is exclusive");
	is_str(redis_range(r, cfg, "umbrella", &upto, &p, 100, &last, &end), "", "upto before after: empty");
	ok(end == 1 && cg_stream_pos_cmp(&last, &upto) == 0, "done; last is after");
	p.ms = MAXU;
	p.seq = MAXU;
	is_str(redis_range(r, cfg, "umbrella", &p, NULL, 100, &last, &end), "", "after the largest position: empty");
	ok(end == 1, "and done");
	cg_stream_pos_parse(d[0], &p);
	p.seq = MAXU;
	p.ms--;
	snprintf(expect, sizeof expect, "%s,%s,%s,%s", d[0], d[1], d[2], d[3]);
	is_str(redis_range(r, cfg, "umbrella", &p, NULL, 100, &last, &end), expect, "after with seq at its maximum carries into ms");

	/* The PostgreSQL event log gives the very same objects. */
	ok(cg_history_pg(db, "umbrella", NULL, NULL, NULL, 100, &from_pg) == CG_DB_OK &&
	   cg_history_redis(r, cfg, "umbrella", &zero, NULL, 100, &from_redis, &last, &end) == CG_REDIS_OK &&
	   json_object_array_length(from_pg) == 4 && json_object_array_length(from_redis) == 4,
	   "history read from both");
	for (i = 0; from_pg != NULL && from_redis != NULL && i < 4 && i < json_object_array_length(from_pg); i++) {
		json_object *x = json_object_array_get_idx(from_pg, i), *y = json_object_array_get_idx(from_redis, i);
		char xs[2048];

		snprintf(xs, sizeof xs, "%s", cg_json_compact(x));
		is_str(xs, cg_json_compact(y), "event %zu from PostgreSQL equals the one from the stream", i);
	}
	if (from_redis != NULL && json_object_array_length(from_redis) == 4) {
		is_str(cg_event_str(json_object_array_get_idx(from_redis, 2), "channel"), "capsule:cap_h",
		       "(the channel event carries its channel)");
		is_str(cg_event_str(json_object_array_get_idx(from_redis, 3), "agent_id"), "bot-1",
		       "(the agent event carries its agent_id)");
	}
	json_object_put(from_pg);
	json_object_put(from_redis);

	/* A malformed entry is skipped but scanned. */
	ok(cg_redis_cmdf(r, &rep, "XADD %s * event_id x tenant umbrella", stream) == CG_REDIS_OK &&
	   rep->type == REDIS_REPLY_STRING, "a malformed entry added");
	snprintf(junk, sizeof junk, "%s", rep != NULL && rep->type == REDIS_REPLY_STRING ? rep->str : "");
	if (rep != NULL)
		freeReplyObject(rep);
	rep = NULL;
	cg_stream_pos_parse(d[3], &p);
	is_str(redis_range(r, cfg, "umbrella", &p, NULL, 100, &last, &end), "", "a malformed entry is skipped");
	ok(end == 1 && strcmp(pos_text(&last), junk) == 0, "but counts as scanned");

	/* Trimmed: the oldest entries are gone from Redis, not from PostgreSQL. */
	ok(cg_redis_cmdf(r, &rep, "XTRIM %s MAXLEN 4", stream) == CG_REDIS_OK, "stream trimmed to its 4 newest entries");
	if (rep != NULL)
		freeReplyObject(rep);
	rep = NULL;
	ok(cg_history_redis_first(r, cfg, &have, &first) == CG_REDIS_OK && have == 1, "a trimmed stream has a first entry");
	is_str(pos_text(&first), d[2], "the oldest one left");
	snprintf(expect, sizeof expect, "%s,%s", d[2], d[3]);
	is_str(redis_range(r, cfg, "umbrella", &zero, NULL, 100, &last, &end), expect, "only what is left is read");
	snprintf(expect, sizeof expect, "%s,%s,%s,%s", d[0], d[1], d[2], d[3]);
	is_str(pg_range(db, "umbrella", NULL, NULL, NULL, 100), expect, "PostgreSQL still has all of it");
	cg_stream_pos_parse(d[2], &p);
	snprintf(expect, sizeof expect, "%s,%s", d[0], d[1]);
	is_str(pg_range(db, "umbrella", NULL, NULL, &p, 100), expect, "PostgreSQL gives what is before the first entry");

	cg_redis_del(r, stream);
	ok(cg_history_redis_first(r, cfg, &have, &first) == CG_REDIS_OK && have == 0, "a deleted stream has no first entry");

	/* Not a stream: a Redis error. */
	cg_redis_setex(r, stream, "x", 1, 60);
	{
		json_object *dummy = json_object_new_object(), *arr = dummy;

		ok(cg_history_redis(r, cfg, "umbrella", &zero, NULL, 10, &arr, &last, &end) == CG_REDIS_EREPLY && arr == NULL,
		   "a key that is no stream: a Redis error, no events");
		ok(cg_history_redis_first(r, cfg, &have, &first) == CG_REDIS_EREPLY && have == 0,
		   "and no first entry");
		json_object_put(dummy);
	}
	cg_redis_del(r, stream);
}

int main(void)
{
	const char *dburl = getenv("CG_TEST_DATABASE_URL"), *rurl = getenv("CG_TEST_REDIS_URL");
	char dbname[64], err[256], stream[64];
	cg_config cfg;
	cg_db *db = NULL;

	cg_log_init("test_history", CG_LOG_ERROR);
	check_pos_parse();
	check_pos_format();
	check_pos_cmp_next();

	if (dburl == NULL || *dburl == '\0') {
		printf("# CG_TEST_DATABASE_URL not set: PostgreSQL and Redis checks skipped\n");
		return done_testing();
	}
	db = test_database_create(dburl, "test_history", dbname, sizeof dbname);
	if (!ok(db != NULL, "test database"))
		return done_testing();
	ok(cg_db_exec_script(db, "INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex'),"
				 " ('initech', 'Initech'), ('hooli', 'Hooli'), ('umbrella', 'Umbrella'), ('wayne', 'Wayne')") ==
	   CG_DB_OK, "tenants made");
	check_event_position(db);
	check_history_pg(db);
	check_cursors(db);
	check_as_app_role(dburl, db, dbname);
	check_api_keys(db);

	memset(&cfg, 0, sizeof cfg);
	if (rurl != NULL && *rurl != '\0' && cg_config_load(&cfg, NULL, CG_PROG_TEST, err, sizeof err) == 0) {
		cg_redis *r = cg_redis_open(rurl, 2000, err, sizeof err);

		cg_random_id("test:history:", stream, sizeof stream);
		free(cfg.event_stream);
		cfg.event_stream = strdup(stream);
		check_redis(db, r, &cfg);
		cg_redis_del(r, stream);
		cg_redis_close(r);
	} else {
		printf("# CG_TEST_REDIS_URL not set: Redis checks skipped\n");
	}
	cg_config_free(&cfg);
	test_database_drop(dburl, db, dbname);
	return done_testing();
}

/* cg_history: stream positions, event history from Redis and PostgreSQL, per-device cursors. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_event.h"
#include "cg_history.h"
#include "cg_log.h"

#define POS_DIGITS_MAX 20        /* digits of UINT64_MAX */
#define HISTORY_SCAN_MAX 10000   /* stream entries read by one XRANGE (*end still exact) */
#define UUID_LEN 36

/* Positions as PostgreSQL stores them (bigint). */
#define PG_POS_MAX ((uint64_t)INT64_MAX)

/* ---- positions ---- */

/* Parses 1..20 decimal digits [s, s + n) into *out; -1 on overflow. */
static int parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > POS_DIGITS_MAX)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int cg_stream_pos_parse(const char *text, cg_stream_pos *p)
{
	const char *dash;
	size_t len;
	cg_stream_pos tmp;

	memset(p, 0, sizeof *p);
	if (text == NULL)
		return -1;
	len = strnlen(text, CG_STREAM_POS_MAX);
	if (len >= CG_STREAM_POS_MAX)
		return -1;
	dash = memchr(text, '-', len);
	if (dash == NULL || parse_u64(text, (size_t)(dash - text), &tmp.ms) < 0 ||
	    parse_u64(dash + 1, len - (size_t)(dash + 1 - text), &tmp.seq) < 0)
		return -1;
	*p = tmp;
	return 0;
}

char *cg_stream_pos_format(const cg_stream_pos *p, char *out, size_t outlen)
{
	snprintf(out, outlen, "%" PRIu64 "-%" PRIu64, p->ms, p->seq);
	return out;
}

int cg_stream_pos_cmp(const cg_stream_pos *a, const cg_stream_pos *b)
{
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

/* The largest position there is: nothing comes after it. */
static int pos_is_max(const cg_stream_pos *p)
{
	return p->ms == UINT64_MAX && p->seq == UINT64_MAX;
}

cg_stream_pos cg_stream_pos_next(const cg_stream_pos *p)
{
	cg_stream_pos n = *p;

	if (pos_is_max(p))
		return n; /* saturates; callers check pos_is_max() first */
	if (n.seq == UINT64_MAX) {
		n.ms++;
		n.seq = 0;
	} else {
		n.seq++;
	}
	return n;
}

cg_stream_pos cg_stream_pos_prev(const cg_stream_pos *p)
{
	cg_stream_pos r = *p;

	if (r.seq > 0) {
		r.seq--;
	} else if (r.ms > 0) {
		r.ms--;
		r.seq = UINT64_MAX;
	}
	return r;
}

/* ---- PostgreSQL ---- */

/* 8-4-4-4-12 hex digits: the only event id text sent to PostgreSQL. */
static int uuid_valid(const char *s)
{
	size_t i;

	if (s == NULL || strnlen(s, UUID_LEN + 1) != UUID_LEN)
		return 0;
	for (i = 0; i < UUID_LEN; i++) {
		char c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return 0;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
			return 0;
		}
	}
	return 1;
}

/* Reads a bigint column that the schema keeps >= 0. */
static int col_u64(const PGresult *res, int row, int col, uint64_t *out)
{
	const char *v;

	if (PQgetisnull(res, row, col))
		return -1;
	v = PQgetvalue(res, row, col);
	return parse_u64(v, strlen(v), out);
}

/* Clamps an inclusive upper bound to what a bigint column can hold. */
static cg_stream_pos pg_upper(cg_stream_pos p)
{
	if (p.ms > PG_POS_MAX) {
		p.ms = PG_POS_MAX;
		p.seq = PG_POS_MAX;
	} else if (p.seq > PG_POS_MAX) {
		p.seq = PG_POS_MAX;
	}
	return p;
}

/* Runs one read in a tenant transaction of its own and hands the result
 * over (res NULL: none wanted). Returns CG_DB_OK or a code, then no
 * transaction is left open and *res is NULL. */
static int tenant_exec(cg_db *db, const char *tenant, const char *sql, int nparams,
		       const char *const *params, PGresult **res)
{
	int rc = cg_db_begin_tenant(db, tenant);

	if (res != NULL)
		*res = NULL;
	if (rc != CG_DB_OK)
		return rc;
	rc = cg_db_exec(db, res, sql, nparams, params);
	if (rc == CG_DB_OK)
		rc = cg_db_commit(db);
	if (rc != CG_DB_OK) {
		cg_db_rollback(db);
		if (res != NULL && *res != NULL) {
			PQclear(*res);
			*res = NULL;
		}
	}
	return rc;
}

/* Runs `sql` (one row or none: stream_ms, stream_seq, an epoch) in a
 * tenant transaction of its own: the shape of every "where is it" read. */
static int read_position(cg_db *db, const char *tenant, const char *sql, int nparams,
			 const char *const *params, int *found, cg_stream_pos *pos, time_t *when)
{
	PGresult *res = NULL;
	cg_stream_pos p;
	int rc;

	*found = 0;
	memset(pos, 0, sizeof *pos);
	*when = 0;
	rc = tenant_exec(db, tenant, sql, nparams, params, &res);
	if (rc != CG_DB_OK)
		return rc;
	if (PQntuples(res) == 1) {
		if (col_u64(res, 0, 0, &p.ms) < 0 || col_u64(res, 0, 1, &p.seq) < 0) {
			rc = CG_DB_ESQL;
		} else {
			*pos = p;
			*when = (time_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10);
			*found = 1;
		}
	}
	PQclear(res);
	return rc;
}

int cg_history_event_position(cg_db *db, const char *tenant, const char *event_id,
			      int *found, cg_stream_pos *pos, time_t *created_at)
{
	static const char sql[] =
		"SELECT e.stream_ms, e.stream_seq, extract(epoch FROM e.created_at)::bigint"
		" FROM events e WHERE e.tenant_id = $1 AND e.event_id = $2::uuid"
		" AND e.stream_ms IS NOT NULL";
	const char *params[2] = { tenant, event_id };

	if (!uuid_valid(event_id)) {
		*found = 0;
		memset(pos, 0, sizeof *pos);
		*created_at = 0;
		return CG_DB_OK;
	}
	return read_position(db, tenant, sql, 2, params, found, pos, created_at);
}

int cg_history_pg(cg_db *db, const char *tenant, const cg_stream_pos *after,
		  const cg_stream_pos *upto, const cg_stream_pos *before, int limit,
		  json_object **events)
{
	/* (stream_ms, stream_seq) in (lo, hi]: one index range of
	 * events_tenant_stream, in the stream's order. */
	static const char sql[] =
		"SELECT e.stream_id, " CG_EVENT_JSON_SQL " FROM events e"
		" WHERE e.tenant_id = $1 AND e.stream_ms IS NOT NULL"
		" AND (e.stream_ms, e.stream_seq) > ($2::bigint, $3::bigint)"
		" AND (e.stream_ms, e.stream_seq) <= ($4::bigint, $5::bigint)"
		" ORDER BY e.stream_ms, e.stream_seq LIMIT $6";
	cg_stream_pos lo = { 0, 0 }, hi = { UINT64_MAX, UINT64_MAX };
	char b[5][24];
	const char *params[6] = { tenant, b[0], b[1], b[2], b[3], b[4] };
	json_object *arr;
	PGresult *res = NULL;
	int rc, i, n, empty = limit <= 0;

	*events = NULL;
	arr = json_object_new_array();
	if (arr == NULL)
		return CG_DB_ESQL;
	/* The bounds as one exclusive lower and one inclusive upper position. */
	if (after != NULL) {
		lo = *after;
		if (lo.ms > PG_POS_MAX)
			empty = 1;
		else if (lo.seq > PG_POS_MAX)
			lo.seq = PG_POS_MAX; /* no stored seq is larger */
	}
	if (upto != NULL)
		hi = *upto;
	if (before != NULL) {
		cg_stream_pos prev = cg_stream_pos_prev(before);

		if (before->ms == 0 && before->seq == 0)
			empty = 1; /* nothing is before 0-0 */
		if (cg_stream_pos_cmp(&prev, &hi) < 0)
			hi = prev;
	}
	hi = pg_upper(hi);
	if (empty || cg_stream_pos_cmp(&lo, &hi) >= 0) {
		*events = arr;
		return CG_DB_OK;
	}
	snprintf(b[0], sizeof b[0], "%" PRIu64, lo.ms);
	snprintf(b[1], sizeof b[1], "%" PRIu64, lo.seq);
	snprintf(b[2], sizeof b[2], "%" PRIu64, hi.ms);
	snprintf(b[3], sizeof b[3], "%" PRIu64, hi.seq);
	snprintf(b[4], sizeof b[4], "%d", limit); /* the caller's cap: fewer means done */

	rc = tenant_exec(db, tenant, sql, 6, params, &res);
	if (rc != CG_DB_OK) {
		json_object_put(arr);
		return rc;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		json_object *ev = cg_event_from_row(PQgetvalue(res, i, 1), PQgetvalue(res, i, 0));

		/* a row that does not make an event is logged by
		 * cg_event_from_row and left out, like a malformed entry */
		if (ev != NULL)
			json_object_array_add(arr, ev);
	}
	PQclear(res);
	*events = arr;
	return CG_DB_OK;
}

int cg_history_cursor_get(cg_db *db, const char *tenant, const char *subject,
			  const char *device, int *found, cg_stream_pos *pos, time_t *updated_at)
{
	static const char sql[] =
		"SELECT stream_ms, stream_seq, extract(epoch FROM updated_at)::bigint FROM ws_cursors"
		" WHERE tenant_id = $1 AND subject = $2 AND device = $3";
	const char *params[3] = { tenant, subject, device };

	return read_position(db, tenant, sql, 3, params, found, pos, updated_at);
}

int cg_history_cursor_advance(cg_db *db, const char *tenant, const char *subject,
			      const char *device, const cg_stream_pos *pos)
{
	/* The WHERE of DO UPDATE keeps a newer cursor as it is. */
	static const char sql[] =
		"INSERT INTO ws_cursors AS c (tenant_id, subject, device, stream_ms, stream_seq, updated_at)"
		" VALUES ($1, $2, $3, $4::bigint, $5::bigint, now())"
		" ON CONFLICT (tenant_id, subject, device) DO UPDATE"
		" SET stream_ms = EXCLUDED.stream_ms, stream_seq = EXCLUDED.stream_seq, updated_at = now()"
		" WHERE (c.stream_ms, c.stream_seq) < (EXCLUDED.stream_ms, EXCLUDED.stream_seq)";
	char ms[24], seq[24];
	const char *params[5] = { tenant, subject, device, ms, seq };

	if (pos->ms > PG_POS_MAX || pos->seq > PG_POS_MAX) {
		cg_log_warn("cursor of %s in tenant %s: position out of range", subject, tenant);
		return CG_DB_ECHECK;
	}
	snprintf(ms, sizeof ms, "%" PRIu64, pos->ms);
	snprintf(seq, sizeof seq, "%" PRIu64, pos->seq);
	return tenant_exec(db, tenant, sql, 5, params, NULL);
}

/* ---- Redis ---- */

/* XRANGE stream start stop COUNT count; *rep is an array reply (the
 * caller frees it) or NULL with a code. */
static int xrange(cg_redis *r, const char *stream, const char *start, const char *stop, int count,
		  redisReply **rep)
{
	char cbuf[16];
	const char *argv[] = { "XRANGE", stream, start, stop, "COUNT", cbuf };
	int rc;

	snprintf(cbuf, sizeof cbuf, "%d", count);
	rc = cg_redis_cmd(r, rep, 6, argv, NULL);
	if (rc == CG_REDIS_OK && (*rep)->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(*rep);
		rc = CG_REDIS_EREPLY;
	}
	if (rc != CG_REDIS_OK)
		*rep = NULL;
	return rc;
}

/* The position of a stream entry [id, [fields...]]; -1 when it has none. */
static int entry_pos(const redisReply *entry, cg_stream_pos *p)
{
	if (entry == NULL || entry->type != REDIS_REPLY_ARRAY || entry->elements < 1 ||
	    entry->element[0]->type != REDIS_REPLY_STRING)
		return -1;
	return cg_stream_pos_parse(entry->element[0]->str, p);
}

int cg_history_redis_first(cg_redis *r, const cg_config *cfg, int *have, cg_stream_pos *first)
{
	redisReply *rep = NULL;
	int rc;

	*have = 0;
	memset(first, 0, sizeof *first);
	rc = xrange(r, cfg->event_stream, "-", "+", 1, &rep);
	if (rc != CG_REDIS_OK)
		return rc;
	if (rep->elements > 0) {
		if (entry_pos(rep->element[0], first) == 0)
			*have = 1;
		else
			rc = CG_REDIS_EREPLY;
	}
	freeReplyObject(rep);
	return rc;
}

int cg_history_redis(cg_redis *r, const cg_config *cfg, const char *tenant,
		     const cg_stream_pos *after, const cg_stream_pos *upto, int scan,
		     json_object **events, cg_stream_pos *last, int *end)
{
	char start[CG_STREAM_POS_MAX], stop[CG_STREAM_POS_MAX];
	cg_stream_pos from;
	redisReply *rep = NULL;
	json_object *arr;
	size_t i;
	int rc = CG_REDIS_OK;

	*events = NULL;
	*last = *after;
	*end = 0;
	arr = json_object_new_array();
	if (arr == NULL)
		return CG_REDIS_EREPLY;
	if (pos_is_max(after) || (upto != NULL && cg_stream_pos_cmp(upto, after) <= 0)) {
		*end = 1; /* an empty range */
		goto out;
	}
	if (scan < 1)
		scan = 1;
	if (scan > HISTORY_SCAN_MAX)
		scan = HISTORY_SCAN_MAX;
	from = cg_stream_pos_next(after);
	cg_stream_pos_format(&from, start, sizeof start);
	if (upto != NULL)
		cg_stream_pos_format(upto, stop, sizeof stop);
	else
		snprintf(stop, sizeof stop, "+");
	rc = xrange(r, cfg->event_stream, start, stop, scan, &rep);
	if (rc != CG_REDIS_OK)
		goto out;
	for (i = 0; i < rep->elements; i++) {
		const redisReply *entry = rep->element[i];
		cg_stream_pos p;
		json_object *ev;

		if (entry_pos(entry, &p) < 0) {
			cg_log_warn("history: stream %s: entry without an id skipped", cfg->event_stream);
			continue;
		}
		*last = p;
		ev = cg_event_from_stream_entry(entry); /* logs a malformed entry */
		if (ev == NULL)
			continue;
		if (strcmp(cg_event_str(ev, "tenant"), tenant) == 0)
			json_object_array_add(arr, ev);
		else
			json_object_put(ev);
	}
	*end = rep->elements < (size_t)scan;
out:
	if (rep != NULL)
		freeReplyObject(rep);
	if (rc != CG_REDIS_OK) {
		json_object_put(arr);
		*last = *after;
		*end = 0;
		return rc;
	}
	*events = arr;
	return CG_REDIS_OK;
}

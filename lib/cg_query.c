/* cg_query: the activity list of GET /activities and the counts of GET /statistics. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_json.h"
#include "cg_log.h"
#include "cg_query.h"
#include "cg_state.h"
#include "cg_util.h"

/* The filters in parameter order: column name, and the member of
 * cg_activity_filter that holds the value. */
enum { FILTER_USER, FILTER_STATE, FILTER_CATEGORY, FILTER_COUNT };
static const char *const filter_columns[FILTER_COUNT] = { "user_id", "state", "category" };

static const char *filter_value(const cg_activity_filter *f, int i)
{
	if (f == NULL)
		return NULL;
	switch (i) {
	case FILTER_USER:
		return f->user_id;
	case FILTER_STATE:
		return f->state;
	default:
		return f->category;
	}
}

static int fail(cg_field_error *fe, const char *field, const char *message)
{
	fe->field = field;
	fe->code = "validation_failed";
	fe->message = message;
	return -1;
}

int cg_activity_filter_check(const cg_activity_filter *f, cg_field_error *fe)
{
	size_t n;

	if (f->user_id != NULL && !cg_id_valid(f->user_id))
		return fail(fe, "user_id", "user_id must be 1-255 characters of A-Z a-z 0-9 _ . : -");
	if (f->state != NULL && !cg_state_valid(f->state))
		return fail(fe, "state", "state must be one of active, investigating, mitigating, "
			    "approved, rejected, dismissed, resolved");
	if (f->category != NULL) {
		n = strlen(f->category);
		if (n == 0 || n > CG_CATEGORY_MAX)
			return fail(fe, "category", "category must be 1-255 bytes");
		if (!cg_utf8_valid(f->category, n))
			return fail(fe, "category", "category must be valid UTF-8 text");
	}
	return 0;
}

/* Appends printf output to out[*len..cap). Returns 0, or -1 when it does
 * not fit (out is then unusable). */
__attribute__((format(printf, 4, 5)))
static int append(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len)
		return -1;
	*len += (size_t)n;
	return 0;
}

/* "<alias>.tenant_id = $1 AND <alias>.user_id = $2 ...": the WHERE clause
 * of `f`, numbering the present filters from $2 in filter order. Only
 * constant fragments enter the text. */
static int append_where(char *out, size_t cap, size_t *len, const char *alias,
			const cg_activity_filter *f)
{
	int i, p = 2;

	if (append(out, cap, len, "%s.tenant_id = $1", alias) < 0)
		return -1;
	for (i = 0; i < FILTER_COUNT; i++) {
		if (filter_value(f, i) == NULL)
			continue;
		if (append(out, cap, len, " AND %s.%s = $%d", alias, filter_columns[i], p++) < 0)
			return -1;
	}
	return 0;
}

/* The page is the inner query: its ORDER BY matches an index
 * (tenant_id[, filter], created_at DESC, id DESC), so PostgreSQL walks the
 * index and stops after offset + limit entries. The outer query builds the
 * JSON for the page rows only (not for the rows OFFSET skips); its ORDER BY
 * is the inner one, which the planner knows the subquery already yields
 * (no second sort). The total is an uncorrelated subquery: evaluated once,
 * in the same snapshot as the page. */
int cg_activity_list_query(const char *tenant, const cg_activity_filter *f, long limit,
			   long offset, cg_list_query *q)
{
	size_t len = 0;
	int i, p;

	memset(q, 0, sizeof *q);
	if (limit < 1 || limit > CG_LIST_LIMIT_MAX || offset < 0 || offset > CG_LIST_OFFSET_MAX)
		return CG_QUERY_EBOUNDS;
	q->params[q->nparams++] = tenant;
	for (i = 0; i < FILTER_COUNT; i++) {
		if (filter_value(f, i) != NULL)
			q->params[q->nparams++] = filter_value(f, i);
	}
	snprintf(q->limit, sizeof q->limit, "%ld", limit);
	snprintf(q->offset, sizeof q->offset, "%ld", offset);
	p = q->nparams + 1;
	q->params[q->nparams++] = q->limit;
	q->params[q->nparams++] = q->offset;

	if (append(q->sql, sizeof q->sql, &len, "SELECT %s, (SELECT count(*) FROM activities c WHERE ",
		   CG_ACTIVITY_JSON_SQL) < 0 ||
	    append_where(q->sql, sizeof q->sql, &len, "c", f) < 0 ||
	    append(q->sql, sizeof q->sql, &len, ") FROM (SELECT * FROM activities a WHERE ") < 0 ||
	    append_where(q->sql, sizeof q->sql, &len, "a", f) < 0 ||
	    append(q->sql, sizeof q->sql, &len,
		   " ORDER BY a.created_at DESC, a.id DESC LIMIT $%d::integer OFFSET $%d::bigint) a"
		   " ORDER BY a.created_at DESC, a.id DESC", p, p + 1) < 0)
		return CG_DB_ESQL; /* cannot happen: the fragments are constant */
	return 0;
}

/* count(*) of the filter alone: for a page that came back empty (past the
 * end, so nothing to be consistent with). */
static int count_matching(cg_db *db, const cg_list_query *q, const cg_activity_filter *f,
			  long long *total)
{
	char sql[512];
	size_t len = 0;
	PGresult *res = NULL;
	int rc;

	if (append(sql, sizeof sql, &len, "SELECT count(*) FROM activities c WHERE ") < 0 ||
	    append_where(sql, sizeof sql, &len, "c", f) < 0)
		return CG_DB_ESQL;
	/* the same parameters without limit and offset */
	rc = cg_db_exec(db, &res, sql, q->nparams - 2, q->params);
	if (rc != CG_DB_OK)
		return rc;
	*total = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return CG_DB_OK;
}

int cg_activity_list(cg_db *db, const char *tenant, const cg_activity_filter *f, long limit,
		     long offset, json_object **activities, long long *total)
{
	cg_list_query q;
	PGresult *res = NULL;
	json_object *arr = NULL;
	char err[128];
	int rc, i, n;

	*activities = NULL;
	*total = 0;
	rc = cg_activity_list_query(tenant, f, limit, offset, &q);
	if (rc != 0)
		return rc;
	rc = cg_db_exec(db, &res, q.sql, q.nparams, q.params);
	if (rc != CG_DB_OK)
		goto out;
	arr = json_object_new_array();
	if (arr == NULL) {
		rc = CG_DB_ESQL;
		goto out;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		const char *text = PQgetvalue(res, i, 0);
		json_object *a = cg_json_parse_object(text, strlen(text), CG_ACTIVITY_JSON_DEPTH, err,
						      sizeof err);

		if (a == NULL) {
			cg_log_error("activity from database is not JSON: %s", err);
			rc = CG_DB_ESQL;
			goto out;
		}
		if (json_object_array_add(arr, a) != 0) {
			json_object_put(a);
			rc = CG_DB_ESQL;
			goto out;
		}
	}
	if (n > 0)
		*total = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	else if (offset > 0)
		rc = count_matching(db, &q, f, total);
	/* else: nothing matches at all, *total stays 0 */
	if (rc != CG_DB_OK)
		goto out;
	*activities = arr;
	arr = NULL;
out:
	if (res != NULL)
		PQclear(res);
	json_object_put(arr);
	return rc;
}

int cg_statistics(cg_db *db, const char *tenant, json_object **stats)
{
	static const char sql[] =
		"SELECT count(*), count(*) FILTER (WHERE a.state = 'active'),"
		" count(*) FILTER (WHERE a.state = 'resolved'),"
		" count(*) FILTER (WHERE a.state = 'dismissed'),"
		" (SELECT count(*) FROM actions x WHERE x.tenant_id = $1)"
		" FROM activities a WHERE a.tenant_id = $1";
	static const char *const names[] = { "total_activities", "active_activities",
					      "resolved_activities", "dismissed_activities",
					      "total_actions" };
	const char *params[1] = { tenant };
	PGresult *res = NULL;
	json_object *o = NULL;
	size_t i;
	int rc;

	*stats = NULL;
	rc = cg_db_exec(db, &res, sql, 1, params);
	if (rc != CG_DB_OK)
		return rc;
	o = json_object_new_object();
	if (o == NULL) {
		rc = CG_DB_ESQL;
		goto out;
	}
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (cg_json_add_int64(o, names[i], strtoll(PQgetvalue(res, 0, (int)i), NULL, 10)) != 0) {
			rc = CG_DB_ESQL;
			goto out;
		}
	}
	*stats = o;
	o = NULL;
out:
	PQclear(res);
	json_object_put(o);
	return rc;
}

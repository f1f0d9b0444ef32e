/* cg_query: the read-only questions about many activities of one tenant:
 * the GET /activities list (filters, newest first, paging, total) and the
 * GET /statistics counts. Both run inside the caller's open tenant
 * transaction (cg_db_begin_tenant) and neither commits nor rolls back.
 *
 * Every query names the tenant itself (tenant_id = $1) besides the
 * row-level security policy: the policy is the second wall, not the only
 * one (the owner role bypasses it), and the explicit filter is what lets
 * the (tenant_id, ..., created_at DESC, id DESC) indexes of sql/001 and
 * sql/003 serve the list without a sort.
 *
 * Ownership: results are new json-c objects the caller puts. Filter strings
 * are borrowed for the duration of the call. Not thread-safe beyond cg_db. */
#ifndef CG_QUERY_H
#define CG_QUERY_H

#include <stddef.h>
#include <json-c/json.h>

#include "cg_activity.h"
#include "cg_db.h"

/* Paging bounds of GET /activities. */
#define CG_LIST_LIMIT_DEFAULT 50
#define CG_LIST_LIMIT_MAX 500
#define CG_LIST_OFFSET_MAX 1000000L

enum {
	CG_QUERY_EBOUNDS = -30, /* limit or offset out of range */
};

/* Equality filters; NULL means "any". */
typedef struct cg_activity_filter {
	const char *user_id;  /* an id (cg_id_valid) */
	const char *state;    /* one of the seven states (cg_state_valid) */
	const char *category; /* <= CG_CATEGORY_MAX bytes of UTF-8 */
} cg_activity_filter;

/* Checks a filter as a client sent it. Returns 0, or -1 with *fe naming
 * the field ("user_id", "state", "category"; static messages). */
int cg_activity_filter_check(const cg_activity_filter *f, cg_field_error *fe);

/* The exact statement cg_activity_list runs, with its parameters (for
 * EXPLAIN in tests). sql is built only from constant fragments; values go
 * in params[] ($1 tenant, then each present filter, then limit, offset).
 * The strings in params[] point into `f`, `tenant` and the struct. */
#define CG_LIST_SQL_MAX 2048
typedef struct cg_list_query {
	char sql[CG_LIST_SQL_MAX];
	const char *params[6];
	int nparams;
	char limit[24];
	char offset[24];
} cg_list_query;

/* Fills *q for `tenant`, `f` (NULL: no filter), limit and offset (the
 * caller checked the bounds). Returns 0 or CG_QUERY_EBOUNDS. */
int cg_activity_list_query(const char *tenant, const cg_activity_filter *f, long limit,
			   long offset, cg_list_query *q);

/* GET /activities: the tenant's activities matching `f`, newest first
 * (created_at DESC, id DESC), at most `limit` (1..CG_LIST_LIMIT_MAX) after
 * skipping `offset` (0..CG_LIST_OFFSET_MAX), each in the one activity shape
 * of cg_activity.h. *activities gets a new JSON array (caller puts it) and
 * *total the number of activities matching `f` (the page and the total
 * come from one statement, so one snapshot, unless the page is empty past
 * offset 0: then a second count). Returns 0, CG_QUERY_EBOUNDS (nothing
 * ran), or a CG_DB_* code (the transaction is then aborted: roll back). */
int cg_activity_list(cg_db *db, const char *tenant, const cg_activity_filter *f, long limit,
		     long offset, json_object **activities, long long *total);

/* GET /statistics, the PostgreSQL part, in one statement: *stats gets a
 * new object {total_activities, active_activities (state active),
 * resolved_activities, dismissed_activities, total_actions} of the tenant
 * (caller puts it). Returns 0 or a CG_DB_* code. */
int cg_statistics(cg_db *db, const char *tenant, json_object **stats);

#endif

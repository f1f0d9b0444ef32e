/* test_pushsub: validation of Web Push subscribe bodies (both shapes, as a table, with the
 * bounds), and when CG_TEST_DATABASE_URL is set the storage: upsert/refresh/move, the
 * per-user limit, unsubscribe ownership, push-daemon's queries and row-level security. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_db.h"
#include "cg_json.h"
#include "cg_log.h"
#include "cg_pushsub.h"
#include "cg_util.h"
#include "tap.h"
#include "test_schema.h"

/* RFC 8291 Appendix A: the user agent's public key and auth secret. */
#define P256 "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
#define AUTH "BTBZMqHH6r4Tts7J_aSIgg"
/* The same point with one byte of Y changed: not on the curve. */
#define P256_OFF "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw8"
/* The RFC's as_public: another valid point. */
#define P256_B "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
#define EP "https://push.example.net/wpush/v2/abc"
#define OURS(ep, extra) "{\"endpoint\":\"" ep "\",\"p256dh_key\":\"" P256 "\",\"auth_key\":\"" AUTH "\"" extra "}"

static json_object *parse(const char *text)
{
	char err[128];
	json_object *o = cg_json_parse_object(text, strlen(text), 32, err, sizeof err);

	if (o == NULL)
		printf("# test body does not parse: %s: %s\n", err, text);
	return o;
}

struct vcase {
	const char *name;
	const char *body;
	const char *field; /* NULL: valid */
};

static const struct vcase cases[] = {
	{ "our shape", OURS(EP, ""), NULL },
	{ "our shape, all fields", OURS(EP, ",\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\","
				   "\"device_info\":{\"os\":\"Linux\",\"screen\":{\"w\":1920,\"h\":1080}}"), NULL },
	{ "browser toJSON() shape", "{\"endpoint\":\"" EP "\",\"expirationTime\":null,"
				     "\"keys\":{\"p256dh\":\"" P256 "\",\"auth\":\"" AUTH "\"}}", NULL },
	{ "port and query", OURS("https://127.0.0.1:8443/push/x?y=1", ""), NULL },
	{ "upper-case scheme", OURS("HTTPS://fcm.googleapis.com/fcm/send/x", ""), NULL },
	{ "IPv6 host", OURS("https://[::1]:9/p", ""), NULL },
	{ "null optional fields", OURS(EP, ",\"user_agent\":null,\"device_info\":null"), NULL },
	{ "padded standard base64 keys", "{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" P256 "\","
					  "\"auth_key\":\"BTBZMqHH6r4Tts7J/aSIgg==\"}", NULL },
	{ "missing endpoint", "{\"p256dh_key\":\"" P256 "\",\"auth_key\":\"" AUTH "\"}", "endpoint" },
	{ "empty endpoint", OURS("", ""), "endpoint" },
	{ "numeric endpoint", "{\"endpoint\":7,\"p256dh_key\":\"" P256 "\",\"auth_key\":\"" AUTH "\"}", "endpoint" },
	{ "http endpoint", OURS("http://push.example.net/x", ""), "endpoint" },
	{ "ftp endpoint", OURS("ftp://push.example.net/x", ""), "endpoint" },
	{ "relative endpoint", OURS("/push/x", ""), "endpoint" },
	{ "endpoint without host", OURS("https:///push/x", ""), "endpoint" },
	{ "endpoint only a scheme", OURS("https://", ""), "endpoint" },
	{ "endpoint with userinfo", OURS("https://user@push.example.net/x", ""), "endpoint" },
	{ "endpoint with a space", OURS("https://push.example.net/a b", ""), "endpoint" },
	{ "endpoint with a newline", OURS("https://push.example.net/a\\nb", ""), "endpoint" },
	{ "endpoint non-ASCII", OURS("https://push.example.net/caf\\u00e9", ""), "endpoint" },
	{ "endpoint bad port", OURS("https://push.example.net:99999/x", ""), "endpoint" },
	{ "missing p256dh", "{\"endpoint\":\"" EP "\",\"auth_key\":\"" AUTH "\"}", "p256dh_key" },
	{ "p256dh not on the curve", "{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" P256_OFF "\","
				      "\"auth_key\":\"" AUTH "\"}", "p256dh_key" },
	{ "p256dh not base64", "{\"endpoint\":\"" EP "\",\"p256dh_key\":\"not base64!\",\"auth_key\":\"" AUTH "\"}",
	  "p256dh_key" },
	{ "p256dh of 16 bytes", "{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" AUTH "\",\"auth_key\":\"" AUTH "\"}",
	  "p256dh_key" },
	{ "p256dh a number", "{\"endpoint\":\"" EP "\",\"p256dh_key\":5,\"auth_key\":\"" AUTH "\"}", "p256dh_key" },
	{ "p256dh compressed", "{\"endpoint\":\"" EP "\",\"p256dh_key\":\"AyVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcx\","
			       "\"auth_key\":\"" AUTH "\"}", "p256dh_key" },
	{ "missing auth", "{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" P256 "\"}", "auth_key" },
	{ "auth of 15 bytes", "{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" P256 "\",\"auth_key\":\"BTBZMqHH6r4Tts7J_aSI\"}",
	  "auth_key" },
	{ "auth of 17 bytes", "{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" P256 "\",\"auth_key\":\"BTBZMqHH6r4Tts7J_aSIggAA\"}",
	  "auth_key" },
	{ "auth not base64", "{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" P256 "\",\"auth_key\":\"****\"}", "auth_key" },
	{ "keys not an object", "{\"endpoint\":\"" EP "\",\"keys\":[\"" P256 "\"]}", "keys" },
	{ "keys without p256dh", "{\"endpoint\":\"" EP "\",\"keys\":{\"auth\":\"" AUTH "\"}}", "keys.p256dh" },
	{ "keys.p256dh off the curve", "{\"endpoint\":\"" EP "\",\"keys\":{\"p256dh\":\"" P256_OFF "\",\"auth\":\"" AUTH "\"}}",
	  "keys.p256dh" },
	{ "keys.auth too short", "{\"endpoint\":\"" EP "\",\"keys\":{\"p256dh\":\"" P256 "\",\"auth\":\"AAAA\"}}",
	  "keys.auth" },
	{ "keys.auth a number", "{\"endpoint\":\"" EP "\",\"keys\":{\"p256dh\":\"" P256 "\",\"auth\":1}}", "keys.auth" },
	{ "user_agent a number", OURS(EP, ",\"user_agent\":5"), "user_agent" },
	{ "user_agent with a tab", OURS(EP, ",\"user_agent\":\"a\\tb\""), "user_agent" },
	{ "user_agent with NUL", OURS(EP, ",\"user_agent\":\"a\\u0000b\""), "user_agent" },
	{ "device_info an array", OURS(EP, ",\"device_info\":[1]"), "device_info" },
	{ "device_info a string", OURS(EP, ",\"device_info\":\"phone\""), "device_info" },
	{ "device_info depth 4", OURS(EP, ",\"device_info\":{\"a\":{\"b\":{\"c\":1}}}"), NULL },
	{ "device_info depth 5", OURS(EP, ",\"device_info\":{\"a\":{\"b\":{\"c\":{\"d\":1}}}}"), "device_info" },
};

static void check_table(void)
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_object *body = parse(cases[i].body);
		cg_pushsub_req r;
		cg_field_error fe;
		int rc;

		memset(&fe, 0, sizeof fe);
		if (body == NULL) {
			ok(0, "%s: body parses", cases[i].name);
			continue;
		}
		rc = cg_pushsub_validate(body, &r, &fe);
		if (cases[i].field == NULL)
			ok(rc == 0, "%s: valid%s%s", cases[i].name, rc ? " -- " : "", rc ? fe.message : "");
		else
			ok(rc == -1 && fe.field != NULL && strcmp(fe.field, cases[i].field) == 0 &&
				   fe.message != NULL && strcmp(fe.code, "validation_failed") == 0,
			   "%s: rejected naming %s (got %s: %s)", cases[i].name, cases[i].field,
			   fe.field ? fe.field : "nothing", fe.message ? fe.message : "");
		json_object_put(body);
	}
}

/* {"endpoint":"https://h/<n-16 x's>", keys..., <extra>} with an endpoint of n bytes. */
static json_object *body_endpoint_len(size_t n)
{
	char *ep = malloc(n + 1), *text = malloc(n + 512);
	json_object *o;

	memcpy(ep, "https://h.test/", 15);
	memset(ep + 15, 'x', n - 15);
	ep[n] = '\0';
	snprintf(text, n + 512, "{\"endpoint\":\"%s\",\"p256dh_key\":\"%s\",\"auth_key\":\"%s\"}", ep, P256, AUTH);
	o = parse(text);
	free(ep);
	free(text);
	return o;
}

/* OURS body with member `key` = a string of n copies of `unit`. */
static json_object *body_with_repeat(const char *key, const char *unit, size_t n)
{
	size_t ul = strlen(unit), len = ul * n + 512;
	char *s = malloc(ul * n + 1), *text = malloc(len);
	json_object *o;
	size_t i;

	for (i = 0; i < n; i++)
		memcpy(s + i * ul, unit, ul);
	s[ul * n] = '\0';
	snprintf(text, len, "{\"endpoint\":\"%s\",\"p256dh_key\":\"%s\",\"auth_key\":\"%s\",\"%s\":%s}", EP, P256,
		 AUTH, key, s);
	o = parse(text);
	free(s);
	free(text);
	return o;
}

static int validates(json_object *body, const char *field)
{
	cg_pushsub_req r;
	cg_field_error fe;
	int rc;

	memset(&fe, 0, sizeof fe);
	rc = body != NULL ? cg_pushsub_validate(body, &r, &fe) : -2;
	json_object_put(body);
	if (field == NULL)
		return rc == 0;
	return rc == -1 && fe.field != NULL && strcmp(fe.field, field) == 0;
}

static void check_details(void)
{
	json_object *body;
	cg_pushsub_req r;
	cg_field_error fe;
	const char *ep = NULL;
	char *ua;
	size_t i;

	body = parse("{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" P256 "\",\"auth_key\":\"BTBZMqHH6r4Tts7J/aSIgg==\","
		     "\"user_agent\":\"\"}");
	ok(cg_pushsub_validate(body, &r, &fe) == 0, "padded standard base64 auth is valid");
	is_str(r.auth, AUTH, "the auth key is stored base64url without padding");
	is_str(r.p256dh, P256, "the p256dh key as sent when already normalised");
	is_str(r.endpoint, EP, "the endpoint as sent");
	ok(r.user_agent == NULL && r.device_info == NULL, "an empty user_agent and no device_info are NULL");
	json_object_put(body);

	body = parse("{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" P256_B "\",\"auth_key\":\"" AUTH "\","
		     "\"keys\":{\"p256dh\":\"" P256 "\",\"auth\":\"AAAA\"}}");
	ok(cg_pushsub_validate(body, &r, &fe) == 0 && strcmp(r.p256dh, P256_B) == 0,
	   "with both shapes the top-level keys win");
	json_object_put(body);

	body = parse("{\"endpoint\":\"" EP "\",\"keys\":{\"p256dh\":\"" P256 "\",\"auth\":\"" AUTH "\"},"
		     "\"device_info\":{\"b\":[1, 2],\"a\":\"x\"}}");
	ok(cg_pushsub_validate(body, &r, &fe) == 0 && r.device_info != NULL &&
		   strcmp(r.device_info, "{\"b\":[1,2],\"a\":\"x\"}") == 0,
	   "device_info is handed on as compact JSON");
	json_object_put(body);

	body = parse("{\"endpoint\":\"" EP "\",\"p256dh_key\":\"" P256_OFF "\",\"auth_key\":\"" AUTH "\"}");
	memset(&fe, 0, sizeof fe);
	ok(cg_pushsub_validate(body, &r, &fe) == -1 && strstr(fe.message, "curve") != NULL,
	   "the message says why (not on the curve)");
	printf("# %s\n", fe.message != NULL ? fe.message : "(none)");
	json_object_put(body);

	ok(validates(body_endpoint_len(CG_PUSHSUB_ENDPOINT_MAX), NULL), "an endpoint of 2048 bytes is valid");
	ok(validates(body_endpoint_len(CG_PUSHSUB_ENDPOINT_MAX + 1), "endpoint"),
	   "an endpoint of 2049 bytes is refused");
	/* "é" x 512: 1024 bytes, 512 characters; one more character is too many. */
	ua = malloc(CG_PUSHSUB_USER_AGENT_MAX * 2 + 4);
	ua[0] = '"';
	for (i = 0; i < CG_PUSHSUB_USER_AGENT_MAX; i++)
		memcpy(ua + 1 + 2 * i, "\xc3\xa9", 2);
	memcpy(ua + 1 + 2 * i, "\"", 2);
	ok(validates(body_with_repeat("user_agent", ua, 1), NULL), "a user_agent of 512 characters is valid");
	memcpy(ua + 1 + 2 * i, "x\"", 3);
	ok(validates(body_with_repeat("user_agent", ua, 1), "user_agent"), "a user_agent of 513 characters is refused");
	free(ua);
	/* device_info: {"k":"xxx…"} of 4096 bytes and of 4097. */
	{
		size_t n = CG_PUSHSUB_DEVICE_INFO_MAX - 8, len = n + 16;
		char *s = malloc(len);

		snprintf(s, len, "{\"k\":\"%*s\"}", (int)n, "");
		memset(s + 6, 'x', n);
		ok(strlen(s) == CG_PUSHSUB_DEVICE_INFO_MAX && validates(body_with_repeat("device_info", s, 1), NULL),
		   "a device_info of 4096 bytes is valid");
		snprintf(s, len, "{\"k\":\"%*s\"}", (int)n + 1, "");
		memset(s + 6, 'x', n + 1);
		ok(validates(body_with_repeat("device_info", s, 1), "device_info"),
		   "a device_info of 4097 bytes is refused");
		free(s);
	}

	body = parse("{\"endpoint\":\"" EP "\"}");
	ok(cg_pushsub_validate_endpoint(body, &ep, &fe) == 0 && strcmp(ep, EP) == 0,
	   "unsubscribe body: the endpoint");
	json_object_put(body);
	body = parse("{\"endpoint\":3}");
	ok(cg_pushsub_validate_endpoint(body, &ep, &fe) == -1 && strcmp(fe.field, "endpoint") == 0,
	   "unsubscribe body: a numeric endpoint is refused");
	json_object_put(body);
	body = parse("{}");
	ok(cg_pushsub_validate_endpoint(body, &ep, &fe) == -1 && strcmp(fe.field, "endpoint") == 0,
	   "unsubscribe body: the endpoint is required");
	json_object_put(body);
}

/* --- storage ---------------------------------------------------------------- */

static const char *str(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return NULL;
	return json_object_get_string(v);
}

/* A request for endpoint `ep` with keys p256dh/AUTH. */
static void make_req(cg_pushsub_req *r, const char *ep, const char *p256dh, const char *ua,
		     const char *info)
{
	memset(r, 0, sizeof *r);
	r->endpoint = ep;
	snprintf(r->p256dh, sizeof r->p256dh, "%s", p256dh);
	snprintf(r->auth, sizeof r->auth, "%s", AUTH);
	r->user_agent = ua;
	r->device_info = info;
}

/* One subscribe in its own committed tenant transaction. */
static int sub_tx(cg_db *db, const char *tenant, const char *user, const cg_pushsub_req *r,
		  json_object **sub, int *created)
{
	int rc = cg_db_begin_tenant(db, tenant);

	*sub = NULL;
	if (rc != CG_DB_OK)
		return rc;
	rc = cg_pushsub_subscribe(db, tenant, user, r, sub, created);
	if (rc == CG_DB_OK)
		return cg_db_commit(db);
	cg_db_rollback(db);
	return rc;
}

static int list_len(cg_db *db, const char *tenant, const char *user)
{
	json_object *arr = NULL;
	int n = -1;

	if (cg_db_begin_tenant(db, tenant) != CG_DB_OK)
		return -1;
	if (cg_pushsub_list(db, tenant, user, &arr) == CG_DB_OK)
		n = (int)json_object_array_length(arr);
	cg_db_rollback(db);
	json_object_put(arr);
	return n;
}

static char *sql_text(cg_db *db, const char *sql)
{
	PGresult *res = NULL;
	char *out = NULL;

	if (cg_db_exec(db, &res, sql, 0, NULL) == CG_DB_OK && PQntuples(res) > 0)
		out = strdup(PQgetvalue(res, 0, 0));
	if (res != NULL)
		PQclear(res);
	return out;
}

static void is_sql(cg_db *db, const char *sql, const char *want, const char *desc)
{
	char *got = sql_text(db, sql);

	is_str(got, want, "%s", desc);
	free(got);
}

static void check_subscriptions(cg_db *db)
{
	json_object *s1 = NULL, *s2 = NULL, *s3 = NULL, *arr = NULL, *info;
	cg_pushsub_req r;
	long long id = 0;
	int created = -1;

	make_req(&r, EP, P256, "Firefox/128", "{\"os\":\"Linux\"}");
	ok(sub_tx(db, "default", "alice", &r, &s1, &created) == 0 && created == 1, "a new subscription (created)");
	is_str(str(s1, "endpoint"), EP, "shows its endpoint");
	is_str(str(s1, "user_agent"), "Firefox/128", "shows its user_agent");
	info = json_object_object_get(s1, "device_info");
	is_str(str(info, "os"), "Linux", "shows its device_info as an object");
	ok(str(s1, "id") != NULL && strtoll(str(s1, "id"), NULL, 10) > 0, "id is a decimal string");
	ok(json_object_get_boolean(json_object_object_get(s1, "active")), "active");
	ok(str(s1, "created_at") != NULL && strlen(str(s1, "created_at")) == 20 && str(s1, "last_seen") != NULL &&
		   str(s1, "updated_at") != NULL,
	   "created_at, updated_at, last_seen in RFC 3339");
	ok(!json_object_object_get_ex(s1, "p256dh", NULL) && !json_object_object_get_ex(s1, "auth", NULL) &&
		   !json_object_object_get_ex(s1, "user_id", NULL),
	   "never shows the keys");
	is_sql(db, "SELECT user_id || ' ' || p256dh || ' ' || auth FROM push_subscriptions",
	       "alice " P256 " " AUTH, "PostgreSQL: owner and keys stored");

	/* Refresh by the same user: new keys, no user_agent / device_info. */
	cg_db_exec_script(db, "UPDATE push_subscriptions SET last_seen = now() - interval '1 day',"
			      " active = false, deactivated_at = now(), deactivated_reason = 'test'");
	make_req(&r, EP, P256_B, NULL, NULL);
	ok(sub_tx(db, "default", "alice", &r, &s2, &created) == 0 && created == 0,
	   "the same endpoint again refreshes (not created)");
	is_str(str(s2, "id"), str(s1, "id"), "and keeps the id");
	is_str(str(s2, "user_agent"), "Firefox/128", "an absent user_agent is kept on the same user's refresh");
	ok(json_object_object_get(s2, "device_info") != NULL, "so is device_info");
	ok(json_object_get_boolean(json_object_object_get(s2, "active")), "refresh re-activates");
	is_sql(db, "SELECT p256dh || ' ' || (last_seen > now() - interval '1 hour') || ' ' ||"
		   " (deactivated_at IS NULL AND deactivated_reason IS NULL) FROM push_subscriptions",
	       P256_B " true true", "the keys are replaced, last_seen is now, the deactivation cleared");
	json_object_put(s2);
	s2 = NULL;

	is_int(list_len(db, "default", "alice"), 1, "alice lists one subscription");
	is_int(list_len(db, "default", "bob"), 0, "bob lists none");
	is_int(list_len(db, "acme", "alice"), 0, "alice of another tenant lists none");

	/* The same endpoint in another tenant is another subscription. */
	make_req(&r, EP, P256, NULL, NULL);
	ok(sub_tx(db, "acme", "alice", &r, &s3, &created) == 0 && created == 1,
	   "the same endpoint in another tenant is a new subscription");
	ok(strcmp(str(s3, "id"), str(s1, "id")) != 0, "with its own id");

	/* Bob signs in on alice's browser, which subscribes again. */
	make_req(&r, EP, P256, NULL, NULL);
	ok(sub_tx(db, "default", "bob", &r, &s2, &created) == 0 && created == 0,
	   "another user subscribing the same endpoint replaces the subscription");
	is_str(str(s2, "id"), str(s1, "id"), "same id");
	ok(json_object_object_get(s2, "user_agent") == NULL && json_object_object_get(s2, "device_info") == NULL,
	   "the previous user's user_agent and device_info are not carried over");
	json_object_put(s2);
	s2 = NULL;
	is_int(list_len(db, "default", "bob"), 1, "bob lists it now");
	is_int(list_len(db, "default", "alice"), 0, "alice no longer does");

	/* Inactive subscriptions are not listed. */
	make_req(&r, "https://push.example.net/old", P256, NULL, NULL);
	ok(sub_tx(db, "default", "bob", &r, &s2, &created) == 0, "a second subscription for bob");
	json_object_put(s2);
	s2 = NULL;
	cg_db_exec_script(db, "UPDATE push_subscriptions SET active = false WHERE endpoint LIKE '%/old'");
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK && cg_pushsub_list(db, "default", "bob", &arr) == 0 &&
		   json_object_array_length(arr) == 1 &&
		   strcmp(str(json_object_array_get_idx(arr, 0), "endpoint"), EP) == 0,
	   "an inactive subscription is not listed");
	cg_db_rollback(db);
	json_object_put(arr);
	arr = NULL;

	/* Unsubscribe. */
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction");
	is_int(cg_pushsub_unsubscribe(db, "default", "alice", EP, &id), CG_PUSHSUB_ENOTFOUND,
	       "alice cannot unsubscribe bob's endpoint: not found");
	is_int(cg_pushsub_unsubscribe(db, "globex", "bob", EP, &id), CG_PUSHSUB_ENOTFOUND,
	       "another tenant: not found");
	is_int(cg_pushsub_unsubscribe(db, "default", "bob", "https://push.example.net/none", &id),
	       CG_PUSHSUB_ENOTFOUND, "an unknown endpoint: not found");
	is_int(cg_pushsub_unsubscribe(db, "default", "bob", EP, &id), 0, "bob unsubscribes");
	is_int(id, strtoll(str(s1, "id"), NULL, 10), "the deleted id is handed back");
	is_int(cg_pushsub_unsubscribe(db, "default", "bob", EP, &id), CG_PUSHSUB_ENOTFOUND, "again: not found");
	ok(cg_db_commit(db) == CG_DB_OK, "commit");
	is_sql(db, "SELECT count(*) FROM push_subscriptions WHERE endpoint = '" EP "'", "1",
	       "only acme's subscription of that endpoint is left");

	json_object_put(s1);
	json_object_put(s3);
}

static void check_limit(cg_db *db)
{
	char ep[64];
	json_object *s = NULL;
	cg_pushsub_req r;
	int i, created, rc = 0;

	for (i = 0; i < CG_PUSHSUBS_PER_USER_MAX && rc == 0; i++) {
		snprintf(ep, sizeof ep, "https://push.example.net/carol/%d", i);
		make_req(&r, ep, P256, NULL, NULL);
		rc = sub_tx(db, "default", "carol", &r, &s, &created);
		json_object_put(s);
	}
	ok(rc == 0, "carol subscribes %d endpoints", CG_PUSHSUBS_PER_USER_MAX);
	make_req(&r, "https://push.example.net/carol/one-more", P256, NULL, NULL);
	is_int(sub_tx(db, "default", "carol", &r, &s, &created), CG_PUSHSUB_ELIMIT, "one more is refused (limit)");
	ok(s == NULL, "nothing handed out");
	make_req(&r, "https://push.example.net/carol/7", P256_B, "ua", NULL);
	ok(sub_tx(db, "default", "carol", &r, &s, &created) == 0 && created == 0,
	   "refreshing one at the limit still works");
	json_object_put(s);
	is_int(list_len(db, "default", "carol"), CG_PUSHSUBS_PER_USER_MAX, "the list holds them all");
	make_req(&r, "https://push.example.net/carol/one-more", P256, NULL, NULL);
	ok(sub_tx(db, "default", "dave", &r, &s, &created) == 0, "another user is not limited by carol's");
	json_object_put(s);
	is_int(sub_tx(db, "default", "carol", &r, &s, &created), CG_PUSHSUB_ELIMIT,
	       "taking over dave's endpoint counts against carol's limit");
	cg_db_exec_script(db, "UPDATE push_subscriptions SET active = false WHERE endpoint LIKE '%/carol/0'");
	ok(sub_tx(db, "default", "carol", &r, &s, &created) == 0, "an inactive subscription frees a place");
	json_object_put(s);
}

static void check_daemon_queries(cg_db *db)
{
	PGresult *res = NULL;
	long long id;
	char sql[256];
	char *idtext;
	int n;

	cg_db_exec_script(db, "DELETE FROM push_subscriptions;"
			      " INSERT INTO push_subscriptions (tenant_id, user_id, endpoint, p256dh, auth, active) VALUES"
			      " ('default', 'u1', 'https://p.test/1', '" P256 "', '" AUTH "', true),"
			      " ('default', 'u1', 'https://p.test/2', '" P256_B "', '" AUTH "', true),"
			      " ('default', 'u2', 'https://p.test/3', '" P256 "', '" AUTH "', true),"
			      " ('default', 'u2', 'https://p.test/4', '" P256 "', '" AUTH "', false),"
			      " ('acme', 'u1', 'https://p.test/5', '" P256 "', '" AUTH "', true)");
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction");
	ok(cg_pushsub_for_event(db, "default", "u1", 100, &res) == 0 && PQntuples(res) == 2 &&
		   PQnfields(res) == 5,
	   "for_event(u1): u1's two active subscriptions, five columns");
	if (res != NULL && PQntuples(res) == 2) {
		is_str(PQgetvalue(res, 0, CG_PUSHSUB_COL_ENDPOINT), "https://p.test/1", "ordered by id");
		is_str(PQgetvalue(res, 1, CG_PUSHSUB_COL_P256DH), P256_B, "with p256dh");
		is_str(PQgetvalue(res, 1, CG_PUSHSUB_COL_AUTH), AUTH, "and auth");
		is_str(PQgetvalue(res, 0, CG_PUSHSUB_COL_USER_ID), "u1", "and the user");
	}
	PQclear(res);
	res = NULL;
	ok(cg_pushsub_for_event(db, "default", NULL, 100, &res) == 0 && PQntuples(res) == 3,
	   "for_event(NULL): every active subscription of the tenant, not acme's, not the inactive one");
	PQclear(res);
	res = NULL;
	ok(cg_pushsub_for_event(db, "default", NULL, 2, &res) == 0 && PQntuples(res) == 2, "limit 2: two rows");
	PQclear(res);
	res = NULL;
	ok(cg_pushsub_for_event(db, "default", "nobody", 10, &res) == 0 && PQntuples(res) == 0,
	   "an unknown user: no rows");
	PQclear(res);
	res = NULL;
	is_int(cg_pushsub_for_event(db, "default", NULL, 0, &res), CG_DB_ESQL, "limit 0 is refused");
	is_int(cg_pushsub_for_event(db, "default", NULL, CG_PUSHSUB_FOR_EVENT_MAX + 1, &res), CG_DB_ESQL,
	       "a limit above the bound is refused");
	ok(res == NULL, "no result on error");
	cg_db_rollback(db);

	idtext = sql_text(db, "SELECT id FROM push_subscriptions WHERE endpoint = 'https://p.test/2'");
	id = idtext != NULL ? strtoll(idtext, NULL, 10) : 0;
	free(idtext);
	ok(cg_db_begin_tenant(db, "acme") == CG_DB_OK, "tenant transaction (acme)");
	is_int(cg_pushsub_delete(db, "acme", id, "410 Gone"), CG_PUSHSUB_ENOTFOUND,
	       "delete: another tenant's id is not found");
	cg_db_rollback(db);
	ok(cg_db_begin_tenant(db, "default") == CG_DB_OK, "tenant transaction");
	is_int(cg_pushsub_delete(db, "default", id, "410 Gone"), 0, "delete: the push service said gone");
	is_int(cg_pushsub_delete(db, "default", id, NULL), CG_PUSHSUB_ENOTFOUND, "delete again: not found");
	ok(cg_db_commit(db) == CG_DB_OK, "commit");
	snprintf(sql, sizeof sql, "SELECT count(*) FROM push_subscriptions WHERE id = %lld", id);
	is_sql(db, sql, "0", "the row is gone");
	n = list_len(db, "default", "u1");
	is_int(n, 1, "u1 lists the remaining one");
}

/* The same calls as a role subject to row-level security (a temporary
 * member of capsule_app), as the programs run. */
static void check_as_app_role(const char *url, cg_db *db, const char *dbname)
{
	char role[64];
	cg_db *app = test_app_role_open(url, db, dbname, "test_psub_", role);
	json_object *s = NULL;
	cg_pushsub_req r;
	PGresult *res = NULL;
	long long id = 0;
	int created;

	if (app == NULL)
		goto out;
	cg_db_exec_script(db, "DELETE FROM push_subscriptions;"
			      " INSERT INTO push_subscriptions (tenant_id, user_id, endpoint, p256dh, auth) VALUES"
			      " ('default', 'u1', 'https://p.test/d1', '" P256 "', '" AUTH "'),"
			      " ('acme', 'u1', 'https://p.test/a1', '" P256 "', '" AUTH "')");
	make_req(&r, "https://p.test/d2", P256, "ua", "{\"k\":1}");
	ok(sub_tx(app, "default", "u1", &r, &s, &created) == 0 && created == 1, "capsule_app subscribes");
	json_object_put(s);
	s = NULL;
	is_int(list_len(app, "default", "u1"), 2, "capsule_app lists its tenant's subscriptions");
	ok(cg_db_begin_tenant(app, "acme") == CG_DB_OK &&
		   cg_pushsub_for_event(app, "default", NULL, 100, &res) == 0 && PQntuples(res) == 0,
	   "row-level security: in acme's transaction, default's subscriptions are invisible");
	if (res != NULL)
		PQclear(res);
	res = NULL;
	is_int(cg_pushsub_unsubscribe(app, "default", "u1", "https://p.test/d1", &id), CG_PUSHSUB_ENOTFOUND,
	       "row-level security: nor can they be unsubscribed");
	cg_db_rollback(app);
	ok(cg_db_begin_tenant(app, "acme") == CG_DB_OK &&
		   cg_pushsub_subscribe(app, "default", "u1", &r, &s, &created) != CG_DB_OK && s == NULL,
	   "row-level security: no subscription written for another tenant");
	cg_db_rollback(app);
	ok(cg_db_begin_tenant(app, "acme") == CG_DB_OK &&
		   cg_db_exec(app, &res, "SELECT count(*) FROM push_subscriptions", 0, NULL) == CG_DB_OK &&
		   strcmp(PQgetvalue(res, 0, 0), "1") == 0,
	   "row-level security: a tenant sees only its own rows");
	if (res != NULL)
		PQclear(res);
	res = NULL;
	cg_db_rollback(app);
	ok(cg_db_begin_tenant(app, "default") == CG_DB_OK &&
		   cg_pushsub_unsubscribe(app, "default", "u1", "https://p.test/d2", &id) == 0 &&
		   cg_db_commit(app) == CG_DB_OK,
	   "capsule_app may delete (unsubscribe)");
	ok(cg_db_exec(app, &res, "SELECT count(*) FROM push_subscriptions", 0, NULL) == CG_DB_OK &&
		   strcmp(PQgetvalue(res, 0, 0), "0") == 0,
	   "row-level security: without a tenant nothing is visible");
	if (res != NULL)
		PQclear(res);
out:
	test_app_role_drop(db, app, role);
}

static void check_storage(const char *url)
{
	char dbname[64];
	cg_db *db = test_database_create(url, "test_pushsub", dbname, sizeof dbname);

	if (!ok(db != NULL, "test database created with every migration"))
		return;
	cg_db_exec_script(db, "INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex')");
	check_subscriptions(db);
	check_limit(db);
	check_daemon_queries(db);
	ok(cg_db_exec_script(db, "INSERT INTO push_subscriptions (tenant_id, user_id, endpoint, p256dh, auth)"
				 " VALUES ('default', 'x', 'http://p.test/1', '" P256 "', '" AUTH "')") != CG_DB_OK,
	   "the schema refuses an http endpoint");
	ok(cg_db_exec_script(db, "INSERT INTO push_subscriptions (tenant_id, user_id, endpoint, p256dh, auth)"
				 " VALUES ('default', 'x', 'https://p.test/1', 'short', '" AUTH "')") != CG_DB_OK,
	   "the schema refuses a key that is not 87 base64url characters");
	check_as_app_role(url, db, dbname);
	ok(!cg_db_in_transaction(db), "no transaction left open");
	test_database_drop(url, db, dbname);
}

int main(void)
{
	const char *url = getenv("CG_TEST_DATABASE_URL");

	cg_log_init("test_pushsub", CG_LOG_ERROR);
	check_table();
	check_details();
	if (url != NULL && *url != '\0')
		check_storage(url);
	else
		printf("# CG_TEST_DATABASE_URL not set: storage checks skipped\n");
	return done_testing();
}

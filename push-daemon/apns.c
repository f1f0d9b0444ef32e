/* apns: the APNs sender thread: one libcurl multi handle, HTTP/2, never blocking. */
#include "config.h"

#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "apns.h"
#include "apns_payload.h"
#include "creds.h"
#include "cg_log.h"
#include "cg_util.h"
#include "webpush.h"
#include "webpush_payload.h"

#define APNS_HOST_PRODUCTION "https://api.push.apple.com"
#define APNS_HOST_SANDBOX "https://api.sandbox.push.apple.com"
#define APNS_TOKEN_MAX 4096       /* device token bytes (schema bound) */
#define APNS_STREAMS_WANTED 1000  /* the server's SETTINGS limit governs */
#define APNS_IDLE_POLL_MS 1000
#define APNS_CONN_MAXAGE_S 3000   /* keep idle connections (Apple: reuse for long) */

struct apns_sender {
	pushd *pd;
	const cg_config *cfg;
	CURLM *multi;
	pushd_creds *creds;       /* each tenant's keys and provider tokens (borrowed) */
	int have_apns;            /* some tenant (or the global config) has an APNs key */
	webpush_ctx *wp;          /* NULL when no tenant has a VAPID key */
	int prior_knowledge;      /* h2c: apns_url is http:// (tests) */
	int no_reuse;             /* one connection per push (see apns_sender_new) */
	int inflight;             /* transfers in the multi handle */
	pushd_job *retry_head;    /* waiting retries, sorted by retry_at_ms */
	uint64_t rng;             /* xorshift state for jitter */
	atomic_int finished;
};

/* One transfer under way. */
typedef struct apns_xfer {
	pushd_job *job;
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	cg_buf resp;
	char errbuf[CURL_ERROR_SIZE];
	webpush_req wp;           /* Web Push jobs: body, headers, Retry-After */
} apns_xfer;

static uint64_t rng_next(apns_sender *s)
{
	uint64_t x = s->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	s->rng = x;
	return x;
}

/* Mints a provider token {"alg":"ES256","kid":KEYID}.{"iss":TEAMID,"iat":now}
 * (no "typ", PUSH.md A2) for the credentials `a`. Returns 0 or -1 (the old
 * token is kept). */
static int mint_token(pushd_apns_creds *a)
{
	json_object *hdr = json_object_new_object(), *claims = json_object_new_object();
	time_t now = cg_now();
	char *jwt = NULL;
	int rc = -1;

	if (hdr == NULL || claims == NULL)
		goto out;
	json_object_object_add(hdr, "alg", json_object_new_string("ES256"));
	json_object_object_add(hdr, "kid", json_object_new_string(a->key_id));
	json_object_object_add(claims, "iss", json_object_new_string(a->team_id));
	json_object_object_add(claims, "iat", json_object_new_int64((int64_t)now));
	if (cg_es256_sign_jws(a->key,
			      json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
			      json_object_to_json_string_ext(claims, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
			      &jwt) < 0)
		goto out;
	free(a->jwt);
	a->jwt = jwt;
	a->jwt_iat = now;
	a->jwt_minted_ms = cg_monotonic_ms();
	rc = 0;
	cg_log_info("apns: minted a provider token (kid %s, team %s%s%s, iat %lld)", a->key_id,
		    a->team_id, a->owner[0] != '\0' ? ", tenant " : "", a->owner, (long long)now);
out:
	if (rc < 0)
		cg_log_error("apns: cannot sign a provider token with %s", a->key_path);
	json_object_put(hdr);
	json_object_put(claims);
	return rc;
}

static void set_state(apns_sender *s, pushd_apns_state st)
{
	int old = atomic_exchange(&s->pd->apns_state, (int)st);

	if (old != (int)st)
		cg_log_info("apns: state %s", pushd_apns_state_name((int)st));
}

apns_sender *apns_sender_new(pushd *pd, char *err, size_t errlen)
{
	apns_sender *s = calloc(1, sizeof *s);
	const cg_config *cfg = &pd->cfg;
	const char *url = cfg->apns_url;
	size_t i;

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->pd = pd;
	s->cfg = cfg;
	s->creds = pd->creds;
	s->have_apns = pushd_creds_any_apns(pd->creds);
	atomic_init(&s->finished, 0);
	s->rng = (uint64_t)cg_monotonic_ms() * 2654435761u ^ (uint64_t)getpid() ^ (uint64_t)time(NULL) << 20;
	if (s->rng == 0)
		s->rng = 88172645463325252ULL;
	if (url != NULL && url[0] != '\0' && strncmp(url, "https://", 8) != 0 &&
	    strncmp(url, "http://", 7) != 0) {
		snprintf(err, errlen, "apns_url: must start with https:// or http://");
		goto fail;
	}
	s->prior_knowledge = url != NULL && strncmp(url, "http://", 7) == 0;
	/* libcurl before 8.0.0 breaks a prior-knowledge (h2c) connection when it
	 * reuses it ("Error in the HTTP2 framing layer", curl#10634): there,
	 * h2c pushes get a connection each. h2c is for tests; https is fine. */
	s->no_reuse = s->prior_knowledge && curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
	s->multi = curl_multi_init();
	if (s->multi == NULL) {
		snprintf(err, errlen, "curl_multi_init failed");
		goto fail;
	}
	curl_multi_setopt(s->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, cfg->apns_max_connections);
	curl_multi_setopt(s->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)APNS_STREAMS_WANTED);
	for (i = 0; i < pushd_creds_apns_count(pd->creds); i++) {
		pushd_apns_creds *a = pushd_creds_apns_at(pd->creds, i);

		if (mint_token(a) < 0) {
			snprintf(err, errlen, "%s: cannot sign a provider token with %s",
				 a->owner[0] != '\0' ? a->owner : "apns_key_path", a->key_path);
			goto fail;
		}
	}
	if (pushd_creds_any_vapid(pd->creds)) {
		s->wp = webpush_ctx_new(cfg, pd->creds, err, errlen);
		if (s->wp == NULL)
			goto fail;
	}
	if (s->have_apns)
		atomic_store(&pd->apns_state, PUSHD_APNS_CONNECTED);
	return s;
fail:
	apns_sender_free(s);
	return NULL;
}

void apns_sender_free(apns_sender *s)
{
	if (s == NULL)
		return;
	if (s->multi != NULL)
		curl_multi_cleanup(s->multi);
	webpush_ctx_free(s->wp);
	free(s);
}

void apns_sender_wakeup(apns_sender *s)
{
	if (s != NULL)
		curl_multi_wakeup(s->multi);
}

int apns_sender_finished(apns_sender *s)
{
	return s == NULL || atomic_load(&s->finished);
}

/* Hands a job back to the worker. The queues are sized for every job that
 * can exist, so this only waits if that sizing is ever broken. */
static void hand_back(apns_sender *s, pushd_job *job, pushd_outcome outcome)
{
	job->outcome = outcome;
	while (pushd_queue_push(s->pd->results, job) < 0) {
		cg_log_error("apns: result queue full; waiting");
		usleep(10000);
	}
}

/* Tells the worker how a job that will be retried stands (attempts, last
 * status and reason), so its deliveries row shows it while it waits: a
 * progress copy (PUSHD_RETRYING) on the result queue. Best effort: skipped
 * when memory runs short or the queue is half full (final results first). */
static void report_progress(apns_sender *s, const pushd_job *job)
{
	pushd_job *note;

	if (pushd_queue_len(s->pd->results) >= PUSHD_QUEUE_CAP / 2)
		return;
	note = calloc(1, sizeof *note);
	if (note == NULL)
		return;
	note->ev = job->ev;
	memcpy(note->apns_id, job->apns_id, sizeof note->apns_id);
	note->delivery_id = job->delivery_id;
	note->device_id = job->device_id;
	note->attempts_before = job->attempts_before;
	note->attempts = job->attempts;
	note->status = job->status;
	memcpy(note->reason, job->reason, sizeof note->reason);
	note->timestamp_ms = -1;
	note->outcome = PUSHD_RETRYING;
	if (pushd_queue_push(s->pd->results, note) < 0)
		free(note);
}

/* What a job goes to, for logs: "device <first 16 characters>…", or a Web
 * Push subscription's id and endpoint label. */
static const char *job_label(const pushd_job *job, char *buf, size_t n)
{
	char ep[WEBPUSH_LABEL_MAX];

	if (job->kind == PUSHD_KIND_WEBPUSH) {
		webpush_endpoint_label(job->endpoint, ep, sizeof ep);
		snprintf(buf, n, "subscription %lld (%s)", job->subscription_id, ep);
	} else {
		snprintf(buf, n, "device %.16s…", job->device_token != NULL ? job->device_token : "");
	}
	return buf;
}

/* Puts `job` on the retry list (sorted by time) after the back-off for its
 * attempt count, or hands it back as failed when attempts are used up.
 * delay_ms < 0: exponential back-off with jitter. */
static void schedule_retry(apns_sender *s, pushd_job *job, long delay_ms)
{
	pushd_job **pp;
	char label[WEBPUSH_LABEL_MAX + 64];
	const char *who = job->kind == PUSHD_KIND_WEBPUSH ? "webpush" : "apns";
	/* Attempts count across runs (the delayed queue makes each a run),
	 * from where an admin retry started. */
	int attempts = job->attempts_before - job->attempt_base + job->attempts;

	if (attempts >= APNS_MAX_ATTEMPTS) {
		cg_log_error("%s: push to %s failed after %d attempts (last: %ld %s)", who,
			     job_label(job, label, sizeof label), attempts, job->status,
			     job->reason[0] ? job->reason : job->status > 0 ? "" : "transport error");
		hand_back(s, job, PUSHD_FAILED);
		return;
	}
	if (delay_ms < 0) {
		long d = APNS_RETRY_BASE_MS;
		int i;

		for (i = 1; i < attempts && d < APNS_RETRY_CAP_MS; i++)
			d *= 2;
		if (d > APNS_RETRY_CAP_MS)
			d = APNS_RETRY_CAP_MS;
		/* "equal jitter": between half and all of the delay */
		delay_ms = d / 2 + (long)(rng_next(s) % (uint64_t)(d / 2 + 1));
	}
	cg_log_info("%s: retrying %s in %ld ms (attempt %d of %d)", who,
		    job_label(job, label, sizeof label), delay_ms, attempts + 1, APNS_MAX_ATTEMPTS);
	if (delay_ms > 0) {
		/* A real wait: on the delayed queue in Redis (the worker parks
		 * it), where any daemon picks it up when it is due, rather than
		 * in this process's memory. */
		job->retry_due_ms = (long long)cg_now_ms() + delay_ms;
		hand_back(s, job, PUSHD_DEFERRED);
		return;
	}
	job->retry_at_ms = cg_monotonic_ms() + delay_ms;
	if (job->attempts > 0)
		report_progress(s, job);
	pp = &s->retry_head;
	while (*pp != NULL && (*pp)->retry_at_ms <= job->retry_at_ms)
		pp = &(*pp)->next;
	job->next = *pp;
	*pp = job;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	apns_xfer *x = userdata;
	size_t n = size * nmemb, room = x->resp.max > x->resp.len ? x->resp.max - x->resp.len : 0;

	if (room > 0)
		cg_buf_append(&x->resp, ptr, n < room ? n : room);
	return n; /* the rest is dropped, not an error */
}

static void xfer_free(apns_xfer *x)
{
	if (x == NULL)
		return;
	if (x->easy != NULL)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	free(x->url);
	cg_buf_free(&x->resp);
	webpush_req_free(&x->wp);
	free(x);
}

/* Appends one "name: value" header; returns 0 or -1. */
static int add_header(apns_xfer *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_header(apns_xfer *x, const char *fmt, ...)
{
	char line[8192];
	struct curl_slist *l;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line)
		return -1;
	l = curl_slist_append(x->headers, line);
	if (l == NULL)
		return -1;
	x->headers = l;
	return 0;
}

static int token_is_hex(const char *t)
{
	size_t n = 0;

	for (; t[n] != '\0'; n++) {
		char c = t[n];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return 0;
		if (n >= APNS_TOKEN_MAX)
			return 0;
	}
	return n > 0;
}

/* The short reason of a push service's error body: Apple's "reason" or
 * autopush's "error" string, "" when the body has neither. */
static void webpush_reason(const cg_buf *resp, char *out, size_t outlen)
{
	json_object *o, *r = NULL;

	out[0] = '\0';
	if (resp->len == 0 || resp->len >= APNS_RESPONSE_MAX)
		return;
	o = json_tokener_parse(resp->data);
	if (o != NULL && json_object_is_type(o, json_type_object) &&
	    ((json_object_object_get_ex(o, "reason", &r) && json_object_is_type(r, json_type_string)) ||
	     (json_object_object_get_ex(o, "error", &r) && json_object_is_type(r, json_type_string))))
		snprintf(out, outlen, "%s", json_object_get_string(r));
	json_object_put(o);
}

/* Starts the Web Push transfer of `job` (PUSH.md B1). A subscription whose
 * keys or endpoint do not parse can never work: it is handed back to be
 * deleted, with no attempt counted. */
static void start_webpush(apns_sender *s, pushd_job *job)
{
	char label[WEBPUSH_LABEL_MAX + 64], why[64];
	apns_xfer *x = NULL;
	CURLMcode mc;
	int rc;

	cg_log_set_context(job->ev->event_id);
	job_label(job, label, sizeof label);
	if (s->wp == NULL) { /* the worker makes no such job then */
		snprintf(job->reason, sizeof job->reason, "Web Push not configured");
		hand_back(s, job, PUSHD_FAILED);
		goto out;
	}
	job->attempts++;
	job->status = 0;
	job->reason[0] = '\0';
	job->retry_after_s = 0;
	x = calloc(1, sizeof *x);
	if (x == NULL)
		goto retry;
	x->job = job;
	cg_buf_init(&x->resp, APNS_RESPONSE_MAX);
	x->easy = curl_easy_init();
	if (x->easy == NULL)
		goto retry;
	rc = webpush_req_setup(s->wp, job, x->easy, &x->wp, why, sizeof why);
	if (rc == WEBPUSH_SETUP_DEAD) {
		cg_log_warn("webpush: %s: %s; deleting the subscription", label, why);
		job->attempts--;
		snprintf(job->reason, sizeof job->reason, "%s", why);
		xfer_free(x);
		hand_back(s, job, PUSHD_DEACTIVATE);
		goto out;
	}
	if (rc == WEBPUSH_SETUP_NOKEY) {
		cg_log_error("webpush: %s: %s; dropped", label, why);
		job->attempts--;
		snprintf(job->reason, sizeof job->reason, "%s", why);
		xfer_free(x);
		hand_back(s, job, PUSHD_FAILED);
		goto out;
	}
	if (rc < 0)
		goto retry;
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	mc = curl_multi_add_handle(s->multi, x->easy);
	if (mc != CURLM_OK) {
		cg_log_error("webpush: curl_multi_add_handle: %s", curl_multi_strerror(mc));
		goto retry;
	}
	s->inflight++;
	goto out;
retry:
	cg_log_error("webpush: cannot start a transfer to %s", label);
	xfer_free(x);
	schedule_retry(s, job, -1);
out:
	cg_log_set_context(NULL);
}

/* Handles one finished Web Push transfer (PUSH.md B2): 2xx sent; 404/410
 * the subscription is gone (the worker deletes it); 429/5xx/transport
 * retried, after the Retry-After when there is one; anything else failed,
 * the subscription kept. */
static void finish_webpush(apns_sender *s, apns_xfer *x, CURLcode res)
{
	pushd_job *job = x->job;
	char label[WEBPUSH_LABEL_MAX + 64];
	long status = 0, delay_s = -1;
	webpush_action act;

	curl_multi_remove_handle(s->multi, x->easy);
	s->inflight--;
	cg_log_set_context(job->ev->event_id);
	job_label(job, label, sizeof label);
	if (res == CURLE_OK)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	job->status = status;
	job->reason[0] = '\0';
	if (res == CURLE_OK && (status < 200 || status > 299))
		webpush_reason(&x->resp, job->reason, sizeof job->reason);
	act = webpush_response_classify(res == CURLE_OK, status,
					x->wp.retry_after[0] != '\0' ? x->wp.retry_after : NULL, cg_now(),
					&delay_s);
	job->retry_after_s = delay_s > 0 ? delay_s : 0;
	switch (act) {
	case WEBPUSH_ACT_DONE:
		cg_log_info("webpush: delivered to %s (%ld)", label, status);
		hand_back(s, job, PUSHD_SENT);
		break;
	case WEBPUSH_ACT_DELETE:
		cg_log_info("webpush: %s is gone: %ld %s; deleting it", label, status,
			    job->reason[0] ? job->reason : "(no reason)");
		hand_back(s, job, PUSHD_DEACTIVATE);
		break;
	case WEBPUSH_ACT_DROP:
		cg_log_warn("webpush: %s rejected the push: %ld %s; dropped%s", label, status,
			    job->reason[0] ? job->reason : "(no reason)",
			    status == 401 || status == 403 ? " (check vapid_private_key and vapid_subject)" : "");
		hand_back(s, job, PUSHD_FAILED);
		break;
	case WEBPUSH_ACT_RETRY:
		if (res != CURLE_OK)
			cg_log_warn("webpush: transfer to %s failed: %s", label,
				    x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
		else
			cg_log_warn("webpush: %s: %ld %s%s%s", label, status,
				    job->reason[0] ? job->reason : "(no reason)",
				    delay_s >= 0 ? "; Retry-After " : "", delay_s >= 0 ? x->wp.retry_after : "");
		schedule_retry(s, job, delay_s >= 0 ? delay_s * 1000 : -1);
		break;
	}
	cg_log_set_context(NULL);
	xfer_free(x);
}

/* What an APNs job sends, by its kind (PUSH.md A4). */
typedef struct apns_req {
	const char *push_type; /* apns-push-type */
	char topic[512];       /* apns-topic */
	int priority;          /* apns-priority */
	int collapse;          /* send the event's apns-collapse-id */
	const char *body;      /* owned by the event */
	size_t len;
} apns_req;

/* Fills `rq` for `job`: alert and background -> the event's device body
 * and priority (background: 5, set by apns_headers_build_cfg), topic the
 * bundle id; liveactivity -> <bundle id>.push-type.liveactivity, the event's
 * Live Activity priority, and its update/end body or, to a push-to-start
 * token, its start body. Returns 0, or -1 when the event has no body for
 * the job or the topic does not fit. */
static int job_request(const pushd_apns_creds *a, const pushd_job *job, apns_req *rq)
{
	const pushd_event *ev = job->ev;
	apns_push_type type;

	memset(rq, 0, sizeof *rq);
	switch (job->kind) {
	case PUSHD_KIND_LIVEACTIVITY:
		type = APNS_PUSH_LIVEACTIVITY;
		rq->priority = ev->la_priority;
		rq->body = job->la_start ? ev->la_start_payload : ev->la_payload;
		rq->len = job->la_start ? ev->la_start_payload_len : ev->la_payload_len;
		break;
	case PUSHD_KIND_BACKGROUND:
		type = APNS_PUSH_BACKGROUND;
		rq->priority = ev->apns_priority;
		rq->body = ev->payload;
		rq->len = ev->payload_len;
		rq->collapse = 1;
		break;
	case PUSHD_KIND_ALERT:
	case PUSHD_KIND_WEBPUSH:
	default:
		type = APNS_PUSH_ALERT;
		rq->priority = ev->apns_priority;
		rq->body = ev->payload;
		rq->len = ev->payload_len;
		rq->collapse = 1;
		break;
	}
	rq->push_type = apns_push_type_info_get(type)->push_type;
	if (apns_push_type_info_get(type)->fixed_priority)
		rq->priority = apns_push_type_info_get(type)->fixed_priority;
	if (rq->body == NULL || apns_topic(a->bundle_id, type, rq->topic, sizeof rq->topic) < 0)
		return -1;
	return 0;
}

/* Starts one transfer for `job`. On failure the job is finished or retried. */
static void start_job(apns_sender *s, pushd_job *job)
{
	const pushd_event *ev = job->ev;
	const cg_config *cfg = s->cfg;
	apns_xfer *x = NULL;
	pushd_apns_creds *a;
	apns_req rq;
	size_t ulen;
	CURLMcode mc;

	if (job->kind == PUSHD_KIND_WEBPUSH) {
		start_webpush(s, job);
		return;
	}
	cg_log_set_context(ev->event_id);
	a = pushd_creds_apns(s->creds, ev->tenant);
	if (a == NULL) {
		/* The worker makes no such job; a guard all the same. */
		cg_log_error("apns: no APNs credentials for tenant %s; dropped", ev->tenant);
		snprintf(job->reason, sizeof job->reason, "NoCredentials");
		hand_back(s, job, PUSHD_FAILED);
		goto out;
	}
	if (!token_is_hex(job->device_token)) {
		cg_log_warn("apns: device token %.16s… is not hex; dropped", job->device_token);
		snprintf(job->reason, sizeof job->reason, "InvalidTokenFormat");
		hand_back(s, job, PUSHD_FAILED);
		goto out;
	}
	if (job_request(a, job, &rq) < 0) {
		cg_log_error("apns: no %s body or topic for token %.16s…; dropped", rq.push_type,
			     job->device_token);
		snprintf(job->reason, sizeof job->reason, "NoPayload");
		hand_back(s, job, PUSHD_FAILED);
		goto out;
	}
	job->attempts++;
	job->status = 0;
	job->reason[0] = '\0';
	x = calloc(1, sizeof *x);
	if (x == NULL)
		goto retry;
	x->job = job;
	cg_buf_init(&x->resp, APNS_RESPONSE_MAX);
	ulen = strlen(a->base) + strlen("/3/device/") + strlen(job->device_token) + 1;
	x->url = malloc(ulen);
	x->easy = curl_easy_init();
	if (x->url == NULL || x->easy == NULL)
		goto retry;
	snprintf(x->url, ulen, "%s/3/device/%s", a->base, job->device_token);
	if (add_header(x, "authorization: bearer %s", a->jwt) < 0 ||
	    add_header(x, "apns-push-type: %s", rq.push_type) < 0 ||
	    add_header(x, "apns-topic: %s", rq.topic) < 0 ||
	    add_header(x, "apns-id: %s", job->apns_id) < 0 ||
	    add_header(x, "apns-priority: %d", rq.priority) < 0 ||
	    add_header(x, "apns-expiration: %lld", ev->expiration) < 0 ||
	    (rq.collapse && ev->collapse_id[0] != '\0' &&
	     add_header(x, "apns-collapse-id: %s", ev->collapse_id) < 0) ||
	    add_header(x, "content-type: application/json") < 0 ||
	    add_header(x, "Accept:") < 0 || add_header(x, "Expect:") < 0)
		goto retry;

	curl_easy_setopt(x->easy, CURLOPT_URL, x->url);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(x->easy, CURLOPT_HTTP_VERSION,
			 s->prior_knowledge ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
					    : (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(x->easy, CURLOPT_PIPEWAIT, s->no_reuse ? 0L : 1L);
	if (s->no_reuse) {
		curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(x->easy, CURLOPT_FORBID_REUSE, 1L);
	}
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, rq.body);
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long)rq.len);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, cfg->apns_timeout_ms);
	curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, cfg->apns_timeout_ms);
	curl_easy_setopt(x->easy, CURLOPT_MAXAGE_CONN, (long)APNS_CONN_MAXAGE_S);
	curl_easy_setopt(x->easy, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	if (cfg->apns_ca_file != NULL && cfg->apns_ca_file[0] != '\0')
		curl_easy_setopt(x->easy, CURLOPT_CAINFO, cfg->apns_ca_file);
	mc = curl_multi_add_handle(s->multi, x->easy);
	if (mc != CURLM_OK) {
		cg_log_error("apns: curl_multi_add_handle: %s", curl_multi_strerror(mc));
		goto retry;
	}
	s->inflight++;
	goto out;
retry:
	cg_log_error("apns: cannot start a transfer (out of memory?)");
	xfer_free(x);
	schedule_retry(s, job, -1);
out:
	cg_log_set_context(NULL);
}

/* Handles one finished transfer. */
static void finish_xfer(apns_sender *s, apns_xfer *x, CURLcode res)
{
	pushd_job *job = x->job;
	long status = 0;
	apns_action act;
	long long ts = -1;

	if (job->kind == PUSHD_KIND_WEBPUSH) {
		finish_webpush(s, x, res);
		return;
	}
	curl_multi_remove_handle(s->multi, x->easy);
	s->inflight--;
	cg_log_set_context(job->ev->event_id);
	if (res == CURLE_OK)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	job->status = status;
	job->reason[0] = '\0';
	if (res == CURLE_OK && status != 200)
		apns_error_parse(x->resp.data, x->resp.len, job->reason, sizeof job->reason, &ts);
	job->timestamp_ms = ts;
	act = apns_response_classify(res == CURLE_OK, status, job->reason);

	switch (act) {
	case APNS_ACT_DONE:
		set_state(s, PUSHD_APNS_CONNECTED);
		cg_log_info("apns: delivered to device %.16s… (apns-id %s)", job->device_token, job->apns_id);
		hand_back(s, job, PUSHD_SENT);
		break;
	case APNS_ACT_DROP:
		cg_log_warn("apns: device %.16s… rejected the push: %ld %s; dropped", job->device_token,
			    status, job->reason[0] ? job->reason : "(no reason)");
		hand_back(s, job, PUSHD_FAILED);
		break;
	case APNS_ACT_DEACTIVATE:
		cg_log_info("apns: device %.16s… is gone: %ld %s; deactivating", job->device_token,
			    status, job->reason[0] ? job->reason : "(no reason)");
		hand_back(s, job, PUSHD_DEACTIVATE);
		break;
	case APNS_ACT_AUTH_FAILED:
		set_state(s, PUSHD_APNS_FAILING);
		cg_log_error("apns: provider token rejected: %ld %s (check APNS_KEY_ID, APNS_TEAM_ID, "
			     "APNS_KEY_PATH and APNS_USE_SANDBOX); push dropped", status, job->reason);
		hand_back(s, job, PUSHD_FAILED);
		break;
	case APNS_ACT_REMINT: {
		pushd_apns_creds *a = pushd_creds_apns(s->creds, job->ev->tenant);

		if (a != NULL && apns_token_decide((cg_monotonic_ms() - a->jwt_minted_ms) / 1000, 1) ==
				 APNS_TOKEN_REMINT) {
			cg_log_warn("apns: provider token expired; minting a new one");
			if (mint_token(a) == 0) {
				schedule_retry(s, job, 0);
				break;
			}
		} else if (a != NULL) {
			cg_log_warn("apns: ExpiredProviderToken for a token minted %lld s ago (clock skew?)",
				    (long long)(cg_monotonic_ms() - a->jwt_minted_ms) / 1000);
		}
		schedule_retry(s, job, -1);
		break;
	}
	case APNS_ACT_TOKEN_BACKOFF:
		cg_log_warn("apns: 429 TooManyProviderTokenUpdates; keeping the token, backing off");
		schedule_retry(s, job, -1);
		break;
	case APNS_ACT_RETRY:
		if (res != CURLE_OK) {
			set_state(s, PUSHD_APNS_FAILING);
			cg_log_warn("apns: transfer to device %.16s… failed: %s", job->device_token,
				    x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
		} else {
			if (status >= 500)
				set_state(s, PUSHD_APNS_FAILING);
			cg_log_warn("apns: device %.16s…: %ld %s", job->device_token, status,
				    job->reason[0] ? job->reason : "(no reason)");
		}
		schedule_retry(s, job, -1);
		break;
	}
	cg_log_set_context(NULL);
	xfer_free(x);
}

static void collect_done(apns_sender *s)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
		void *x = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &x);
		if (x != NULL)
			finish_xfer(s, x, msg->data.result);
	}
}

/* Starts what is due: retries whose time has come, then new jobs, up to
 * APNS_MAX_INFLIGHT transfers. */
static void start_due(apns_sender *s)
{
	int64_t now = cg_monotonic_ms();
	pushd_job *job;
	size_t i;

	/* Each key's token is refreshed inside Apple's 20-60 minute window;
	 * on failure the old token goes on (and APNs says why). */
	for (i = 0; i < pushd_creds_apns_count(s->creds); i++) {
		pushd_apns_creds *a = pushd_creds_apns_at(s->creds, i);

		if (apns_token_decide(a->jwt == NULL ? -1 : (long long)(cg_now() - a->jwt_iat), 0) ==
		    APNS_TOKEN_REMINT)
			mint_token(a);
	}
	while (s->inflight < APNS_MAX_INFLIGHT && s->retry_head != NULL &&
	       s->retry_head->retry_at_ms <= now) {
		job = s->retry_head;
		s->retry_head = job->next;
		job->next = NULL;
		start_job(s, job);
	}
	while (s->inflight < APNS_MAX_INFLIGHT) {
		job = pushd_queue_pop(s->pd->jobs);
		if (job == NULL)
			break;
		start_job(s, job);
	}
}

static int poll_timeout_ms(const apns_sender *s, int stopping)
{
	long t = stopping ? 100 : APNS_IDLE_POLL_MS;

	if (!stopping && s->retry_head != NULL) {
		int64_t d = s->retry_head->retry_at_ms - cg_monotonic_ms();

		if (d < 0)
			d = 0;
		if (d < t)
			t = (long)d;
	}
	return (int)t;
}

void *apns_sender_main(void *arg)
{
	apns_sender *s = arg;
	int running = 0, stopping;
	pushd_job *job;
	size_t i;

	for (i = 0; i < pushd_creds_apns_count(s->creds); i++) {
		const pushd_apns_creds *a = pushd_creds_apns_at(s->creds, i);

		cg_log_info("apns: %s%s sends to %s%s (team %s, bundle %s), up to %ld connections",
			    a->owner[0] != '\0' ? "tenant " : "every tenant",
			    a->owner[0] != '\0' ? a->owner : "", a->base,
			    s->no_reuse ? " (h2c, a connection per push: libcurl < 8 cannot reuse h2c)" :
			    s->prior_knowledge ? " (h2c)" : "", a->team_id, a->bundle_id,
			    s->cfg->apns_max_connections);
	}
	if (pushd_creds_vapid(s->creds, NULL) != NULL)
		cg_log_info("webpush: sending with VAPID key %s (subject %s)",
			    cg_vapid_public_key(pushd_creds_vapid(s->creds, NULL)), s->cfg->vapid_subject);
	for (;;) {
		stopping = atomic_load(&s->pd->stop);
		if (!stopping)
			start_due(s);
		else if (s->inflight == 0)
			break;
		curl_multi_perform(s->multi, &running);
		collect_done(s);
		curl_multi_poll(s->multi, NULL, 0, poll_timeout_ms(s, stopping), NULL);
	}
	/* Retries not yet due are not final: their events stay pending in
	 * Redis and come back at the next start (same apns-id). */
	while (s->retry_head != NULL) {
		job = s->retry_head;
		s->retry_head = job->next;
		job->next = NULL;
		hand_back(s, job, PUSHD_ABANDONED);
	}
	cg_log_info("apns: sender stopped");
	atomic_store(&s->finished, 1);
	return NULL;
}

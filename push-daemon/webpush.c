/* webpush: Web Push requests (RFC 8030/8291/8292) on the sender's libcurl multi handle. */
#include "config.h"

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cg_log.h"
#include "cg_util.h"
#include "cg_webpush.h"
#include "creds.h"
#include "webpush.h"

#define WEBPUSH_LABEL_PATH_CHARS 20 /* characters of the path a label shows */
#define WEBPUSH_CONN_MAXAGE_S 300   /* keep idle connections to push services */

struct webpush_ctx {
	const cg_config *cfg;
	pushd_creds *creds;
};

webpush_ctx *webpush_ctx_new(const cg_config *cfg, pushd_creds *creds, char *err, size_t errlen)
{
	webpush_ctx *c = calloc(1, sizeof *c);

	if (c == NULL) {
		cg_set_err(err, errlen, "out of memory");
		return NULL;
	}
	c->cfg = cfg;
	c->creds = creds;
	return c;
}

void webpush_ctx_free(webpush_ctx *c)
{
	free(c);
}

void webpush_endpoint_label(const char *endpoint, char *out, size_t outlen)
{
	char origin[WEBPUSH_LABEL_MAX];
	const char *path;
	size_t olen;

	if (outlen == 0)
		return;
	if (endpoint == NULL || cg_url_origin(endpoint, origin, sizeof origin) != 0) {
		snprintf(out, outlen, "(bad endpoint)");
		return;
	}
	/* the path starts after "scheme://authority" (the origin is that, maybe
	 * lower-cased, maybe without a default port) */
	path = endpoint + strcspn(endpoint, ":");
	path += strspn(path, ":/");
	path += strcspn(path, "/?#");
	olen = strlen(path);
	snprintf(out, outlen, "%s%.*s%s", origin, WEBPUSH_LABEL_PATH_CHARS, path,
		 olen > WEBPUSH_LABEL_PATH_CHARS ? "…" : "");
}

/* Keeps the Retry-After of the final answer (an interim 100 Continue head
 * starts a new one). */
static size_t on_header(char *line, size_t size, size_t nitems, void *userdata)
{
	webpush_req *req = userdata;
	size_t n = size * nitems, vlen;
	const char *v, *end;
	static const char name[] = "retry-after:";

	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		req->retry_after[0] = '\0';
		return n;
	}
	if (n < sizeof name - 1 || strncasecmp(line, name, sizeof name - 1) != 0)
		return n;
	v = line + sizeof name - 1;
	end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	vlen = (size_t)(end - v);
	if (vlen >= sizeof req->retry_after)
		vlen = sizeof req->retry_after - 1;
	memcpy(req->retry_after, v, vlen);
	req->retry_after[vlen] = '\0';
	return n;
}

/* Appends one header line ("name:" alone, when value is NULL, keeps
 * libcurl from sending its default); 0 or -1. */
static int add_line(webpush_req *req, const char *name, const char *value)
{
	char line[CG_WEBPUSH_AUTH_HEADER_MAX + 64];
	struct curl_slist *l;
	int n = value != NULL ? snprintf(line, sizeof line, "%s: %s", name, value)
			      : snprintf(line, sizeof line, "%s:", name);

	if (n < 0 || (size_t)n >= sizeof line)
		return -1;
	l = curl_slist_append(req->headers, line);
	if (l == NULL)
		return -1;
	req->headers = l;
	return 0;
}

int webpush_req_setup(webpush_ctx *c, const pushd_job *job, CURL *easy, webpush_req *req,
		      char *err, size_t errlen)
{
	const pushd_event *ev = job->ev;
	const cg_config *cfg = c->cfg;
	unsigned char ua_public[CG_WEBPUSH_PUBKEY_LEN], auth_secret[CG_WEBPUSH_AUTH_LEN];
	char authz[CG_WEBPUSH_AUTH_HEADER_MAX], origin[256], ttl[24], why[256];
	cg_vapid *vapid;

	if (job->endpoint == NULL || cg_url_origin(job->endpoint, origin, sizeof origin) != 0 ||
	    strncasecmp(job->endpoint, "https://", 8) != 0) {
		cg_set_err(err, errlen, "bad endpoint");
		return WEBPUSH_SETUP_DEAD;
	}
	if (job->p256dh == NULL || job->auth == NULL ||
	    cg_webpush_keys_parse(job->p256dh, job->auth, ua_public, auth_secret, why, sizeof why) != 0) {
		cg_set_err(err, errlen, "bad keys");
		return WEBPUSH_SETUP_DEAD;
	}
	if (ev->wp_payload == NULL ||
	    cg_webpush_encrypt(ua_public, auth_secret, (const unsigned char *)ev->wp_payload,
			       ev->wp_payload_len, NULL, NULL, &req->body, &req->body_len, why,
			       sizeof why) != 0) {
		cg_log_error("webpush: cannot encrypt the message: %s", ev->wp_payload ? why : "no payload");
		cg_set_err(err, errlen, "encryption failed");
		return WEBPUSH_SETUP_RETRY;
	}
	vapid = pushd_creds_vapid(c->creds, ev->tenant);
	if (vapid == NULL) {
		cg_set_err(err, errlen, "no VAPID key for tenant %s", ev->tenant);
		return WEBPUSH_SETUP_NOKEY;
	}
	if (cg_vapid_authorization(vapid, job->endpoint, cg_now(), authz, sizeof authz, why,
				   sizeof why) != 0) {
		cg_log_error("webpush: %s", why);
		cg_set_err(err, errlen, "VAPID signing failed");
		return WEBPUSH_SETUP_RETRY;
	}
	snprintf(ttl, sizeof ttl, "%ld", ev->wp_ttl);
	if (add_line(req, "TTL", ttl) < 0 ||
	    add_line(req, "Urgency", ev->wp_urgency[0] != '\0' ? ev->wp_urgency : "normal") < 0 ||
	    (ev->wp_topic[0] != '\0' && add_line(req, "Topic", ev->wp_topic) < 0) ||
	    add_line(req, "Content-Encoding", "aes128gcm") < 0 ||
	    add_line(req, "Content-Type", "application/octet-stream") < 0 ||
	    add_line(req, "Authorization", authz) < 0 ||
	    add_line(req, "Accept", NULL) < 0 || add_line(req, "Expect", NULL) < 0) {
		cg_set_err(err, errlen, "out of memory");
		return WEBPUSH_SETUP_RETRY;
	}
	curl_easy_setopt(easy, CURLOPT_URL, job->endpoint);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, cfg->webpush_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, cfg->webpush_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_MAXAGE_CONN, (long)WEBPUSH_CONN_MAXAGE_S);
	curl_easy_setopt(easy, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (cfg->webpush_ca_file != NULL && cfg->webpush_ca_file[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_CAINFO, cfg->webpush_ca_file);
	return 0;
}

void webpush_req_free(webpush_req *req)
{
	if (req == NULL)
		return;
	curl_slist_free_all(req->headers);
	req->headers = NULL;
	free(req->body);
	req->body = NULL;
	req->body_len = 0;
}

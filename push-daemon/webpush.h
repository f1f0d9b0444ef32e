/* webpush: the Web Push half of the sender thread: one RFC 8030 POST per
 * job, with an RFC 8291 aes128gcm body and RFC 8292 VAPID authorization,
 * set up on a libcurl easy handle that the sender (apns.c) adds to its one
 * multi handle, and the reading of the answer (status, Retry-After).
 *
 * Owned by push-daemon. A webpush_ctx belongs to the sender thread (its
 * cg_vapid caches JWTs per origin, unlocked); nothing here blocks: the
 * encryption and the (cached) VAPID signature are CPU work of well under a
 * millisecond. See ../shared/PUSH.md part B. */
#ifndef PUSHD_WEBPUSH_H
#define PUSHD_WEBPUSH_H

#include <stddef.h>

#include <curl/curl.h>

#include "cg_config.h"
#include "pushd.h"

/* A label of an endpoint for logs: its origin and the first characters of
 * its path, e.g. "https://fcm.googleapis.com/fcm/send/dGhp…". */
#define WEBPUSH_LABEL_MAX 96
/* Bytes of a Retry-After value kept (longer ones are cut). */
#define WEBPUSH_RETRY_AFTER_LEN 64

typedef struct webpush_ctx webpush_ctx;

/* The Web Push context of the sender: `cfg` and `creds` (each tenant's
 * VAPID key, creds.h) are borrowed and outlive it. Returns NULL with the
 * reason in err. */
struct pushd_creds;
webpush_ctx *webpush_ctx_new(const cg_config *cfg, struct pushd_creds *creds, char *err,
			     size_t errlen);
void webpush_ctx_free(webpush_ctx *c);

/* What one request needs while it is under way; zero it before
 * webpush_req_setup(), free it with webpush_req_free() once its easy handle
 * is out of the multi handle (libcurl reads the body and headers until the
 * transfer ends). */
typedef struct webpush_req {
	struct curl_slist *headers;
	unsigned char *body;                        /* the encrypted message */
	size_t body_len;
	char retry_after[WEBPUSH_RETRY_AFTER_LEN];  /* the answer's, "" when none */
} webpush_req;

/* webpush_req_setup() results other than 0. */
enum {
	WEBPUSH_SETUP_RETRY = -1, /* could not build it now (memory, crypto): retry */
	WEBPUSH_SETUP_DEAD = -2,  /* the subscription can never work (its keys or
	                           * endpoint do not parse): delete it */
	WEBPUSH_SETUP_NOKEY = -3, /* the tenant has no VAPID key: failed, kept */
};

/* Builds the request of `job` (a PUSHD_KIND_WEBPUSH job whose event has a
 * wp_payload) on `easy`: URL = the endpoint, a fresh encryption of the
 * event's notification JSON, headers TTL, Urgency, Topic (when set),
 * Content-Encoding: aes128gcm, Content-Type: application/octet-stream,
 * Authorization: vapid (JWT cached per origin), HTTP/2 over TLS when the
 * service offers it (else HTTP/1.1), CA file and timeout from the config,
 * and a header callback that stores the answer's Retry-After in
 * req->retry_after. The caller sets CURLOPT_PRIVATE, the write callback and
 * the error buffer. Returns 0, or WEBPUSH_SETUP_* with the reason in err
 * (short: it becomes the delivery's provider_reason). */
int webpush_req_setup(webpush_ctx *c, const pushd_job *job, CURL *easy, webpush_req *req,
		      char *err, size_t errlen);

/* Frees what webpush_req_setup() allocated (safe on a zeroed req). */
void webpush_req_free(webpush_req *req);

/* Writes the log label of `endpoint` (see WEBPUSH_LABEL_MAX) into out. */
void webpush_endpoint_label(const char *endpoint, char *out, size_t outlen);

#endif

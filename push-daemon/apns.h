/* apns: the sender thread: APNs alert pushes over one libcurl multi handle
 * (HTTP/2, multiplexed), provider-token auth, retries with back-off. */
#ifndef PUSHD_APNS_H
#define PUSHD_APNS_H

#include <stddef.h>

#include "cg_jwt.h"
#include "pushd.h"

/* Retry policy (PUSH.md A7): exponential back-off with jitter. */
#define APNS_RETRY_BASE_MS 1000
#define APNS_RETRY_CAP_MS 60000
#define APNS_MAX_ATTEMPTS 5
/* Transfers in the multi handle at once; more wait in pd->jobs. */
#define APNS_MAX_INFLIGHT 1000
/* Response bodies beyond this are cut (APNs sends small JSON). */
#define APNS_RESPONSE_MAX 4096

typedef struct apns_sender apns_sender;

/* Creates the sender for `pd`, which pushes with pd->creds (creds.h: each
 * tenant's APNs key and VAPID key, or the global ones). A first provider
 * token is minted for every APNs key; with none, no APNs job may be queued
 * and pd->apns_state stays not_configured. WEBPUSH jobs go out on the same
 * multi handle. Returns NULL with a reason in err. Call after the process
 * is detached. */
apns_sender *apns_sender_new(pushd *pd, char *err, size_t errlen);

/* The thread body; `arg` is the apns_sender. Pops jobs from pd->jobs and
 * hands each back on pd->results once final. When pd->stop is set it starts
 * nothing new, lets the transfers under way finish (each is bounded by
 * APNS_TIMEOUT_MS), hands back waiting retries as PUSHD_ABANDONED and
 * returns. Jobs left in pd->jobs are the worker's to reclaim. */
void *apns_sender_main(void *arg);

/* Wakes the sender's poll (new jobs, stop). Safe from any thread. */
void apns_sender_wakeup(apns_sender *s);

/* 1 once apns_sender_main has handed back everything and is returning. */
int apns_sender_finished(apns_sender *s);

/* Frees the sender (after its thread was joined). */
void apns_sender_free(apns_sender *s);

#endif

/* server: the capsule-wsd WebSocket protocol callback, sessions, heartbeat and fan-out. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "cg_event.h"
#include "cg_json.h"
#include "cg_jwt.h"
#include "cg_log.h"
#include "cg_util.h"
#include "connlimit.h"
#include "listen.h"
#include "order.h"
#include "server.h"
#include "worker.h"

#define WSD_PATH "/ws"                /* the only path that upgrades */
#define WSD_CHANNEL_ACTIVITIES CG_CHANNEL_ACTIVITIES
#define WSD_CAPSULE_SUBS_MAX 64       /* capsule:<id> subscriptions of a session */
#define WSD_CLOSE_FORBIDDEN 4403      /* forbidden channel (PROTOCOLS.md) */
#define WSD_TOKEN_MAX 4096            /* bytes of a token (query or message) */
#define WSD_JSON_DEPTH 16             /* nesting of a client message */
#define WSD_TYPE_MAX 64               /* bytes of a message "type" */
#define WSD_CHANNEL_MAX CG_CHANNEL_MAX /* bytes of a channel name */
#define WSD_RX_KEEP 65536             /* assembly buffer kept between messages */
#define WSD_RX_BUFFER 1024            /* lws's receive buffer per connection: client
                                       * messages are small; larger ones arrive in
                                       * pieces and are assembled in rx */
#define WSD_CLOSE_GRACE_S 5           /* a session we close is gone after this */
#define WSD_CLOSE_LIMIT 4429          /* rate or connection limit (PROTOCOLS.md) */
#define WSD_CONN_ID_MAX 160           /* "<instance_id>:<serial>" */
#define WSD_REGISTRY_TICK_MS 1000     /* how often a changed registry is handed over */
#define WSD_REGISTRY_REFRESH_MS 4000  /* an unchanged one (health, last_heartbeat) */
#define WSD_CLOSE_TRY_AGAIN 1013      /* PostgreSQL/Redis needed and unavailable */
#define WSD_PAGE_MAX 200              /* history events asked for at once */
#define WSD_REPLAY_RETRY_MS 250       /* stream position not known yet */
#define WSD_AGENT_PREFIX "agent:"     /* cursor subject and limit key of an agent */
#define WSD_EVENT_ID_MAX 64           /* bytes of an acked event_id */
#define WSD_AGENT_ID_MAX 200          /* bytes of an agent id */
#define WSD_CHAN_JOBS_MAX 8           /* capsule channel checks out per session */

/* Where a session is with resuming (see session_resume_begin). */
enum {
	WSD_REPLAY_NONE = 0,  /* live */
	WSD_REPLAY_START,     /* finding the start (START job) */
	WSD_REPLAY_PAGING,    /* sending history (PAGE jobs) */
};

/* ---- per message ------------------------------------------------------- */

/* One serialised server message, shared by every session queue that holds
 * it. `buf` has LWS_PRE bytes of headroom for the frame header lws writes
 * in front of the payload; the payload itself is never modified (servers
 * do not mask), so one buffer serves every session. */
typedef struct wsd_msg {
	int refs;
	size_t len;
	unsigned char buf[];
} wsd_msg;

/* Returns a message holding one reference (the creator's), or NULL. */
static wsd_msg *
wsd_msg_new(const char *text, size_t len)
{
	wsd_msg *m = malloc(sizeof *m + LWS_PRE + len);

	if (m == NULL)
		return NULL;
	m->refs = 1;
	m->len = len;
	memcpy(m->buf + LWS_PRE, text, len);
	return m;
}

static void
wsd_msg_unref(wsd_msg *m)
{
	if (m != NULL && --m->refs == 0)
		free(m);
}

/* An entry of a session's send queue. */
typedef struct wsd_qent {
	lws_dll2_t list;
	wsd_msg *msg;   /* one reference */
} wsd_qent;

/* ---- per vhost and per session ------------------------------------------ */

struct wsd_vhost {
	struct lws_context *ctx;
	wsd_app *app;
	lws_dll2_owner_t sessions;  /* every established wsd_session */
	wsd_limits limits;          /* per-user counts, per-address attempts */
	unsigned long long next_serial; /* of connection ids */
	int registry_dirty;         /* sessions changed since the last snapshot */
	int64_t registry_sent_ms;   /* when the last snapshot was handed over */
	lws_sorted_usec_list_t sul_registry;
};

typedef struct wsd_session {
	lws_dll2_t list;            /* in wsd_vhost.sessions */
	struct lws *wsi;
	struct wsd_vhost *vhd;
	int established;
	char peer[64];
	char conn_id[WSD_CONN_ID_MAX]; /* registry field and log tag */
	time_t connected_at;        /* wall clock, for the registry */

	int authenticated;
	cg_ws_claims claims;        /* an agent: sub "agent:<id>", the key's tenant and role */
	int is_agent;
	char agent_id[WSD_AGENT_ID_MAX + 1];
	unsigned long long serial;
	wsd_job *key_job;           /* APIKEY job out, or NULL */
	wsd_job *chan_jobs[WSD_CHAN_JOBS_MAX]; /* CHANNEL jobs out (NULL: free slot) */
	char *pending_channels;     /* an agent's channels= until its key is checked */
	int sub_activities;
	int sub_tenant;             /* "tenant": events for the whole tenant */
	char *sub_capsules[WSD_CAPSULE_SUBS_MAX]; /* "capsule:<id>" ids, NULL when free */
	int user_counted;           /* counted in vhd->limits.users */
	wsd_order order;            /* highest activity version sent per capsule */

	int64_t last_rx_ms;         /* monotonic; any message or pong */
	int64_t next_ping_ms;
	lws_sorted_usec_list_t sul_auth;
	lws_sorted_usec_list_t sul_beat;

	lws_dll2_owner_t sendq;     /* wsd_qent, at most cfg->ws_send_queue_max */

	/* Resume: history after a position, then the live events held meanwhile. */
	int replay;                 /* WSD_REPLAY_* */
	wsd_job *replay_job;        /* START or PAGE job out, or NULL */
	char resume_from[WSD_JOB_TEXT_MAX]; /* last_event_id as given; "" = the cursor */
	cg_stream_pos replay_pos;   /* history sent up to here */
	cg_stream_pos replay_upto;  /* live events start after here */
	int upto_known;
	char replay_start[CG_STREAM_POS_MAX];
	char replay_last[CG_STREAM_POS_MAX]; /* last event sent from history */
	long replay_sent;
	lws_dll2_owner_t held;      /* wsd_qent: live messages held during the replay */
	lws_sorted_usec_list_t sul_replay;

	/* The device's cursor: the newest acknowledged event, written within a
	 * second by the registry tick and at disconnect. */
	int ack_dirty;
	cg_stream_pos ack_pos;      /* acked by stream_id (0-0: none) */
	char ack_event[WSD_EVENT_ID_MAX + 1]; /* acked by event_id ("" none) */

	cg_buf rx;                  /* fragments of the message being received */
	int rx_binary;
	int rx_discard;             /* reading a message over the limit to its end */

	int close_code;             /* pending close, done from WRITEABLE */
	char close_reason[64];
	char why[128];              /* for the disconnect log line */
} wsd_session;

static const cg_config *
session_cfg(const wsd_session *s)
{
	return s->vhd->app->cfg;
}

static const char *
session_user(const wsd_session *s)
{
	return s->authenticated ? s->claims.sub : "-";
}

/* Closes the session from the WRITEABLE callback with `code`. A session that
 * cannot be written to (peer gone, buffers full) is killed after a grace
 * period. The first reason wins. */
static void
session_close(wsd_session *s, int code, const char *reason)
{
	if (s->close_code != 0)
		return;
	s->close_code = code;
	snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
	snprintf(s->why, sizeof s->why, "closed by server: %d %s", code, reason);
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, WSD_CLOSE_GRACE_S);
	lws_callback_on_writable(s->wsi);
}

/* Closes at once from inside a callback on this wsi: the caller returns
 * what this returns (-1). */
static int
session_close_now(wsd_session *s, int code, const char *reason)
{
	snprintf(s->why, sizeof s->why, "closed by server: %d %s", code, reason);
	lws_close_reason(s->wsi, (enum lws_close_status)code,
			 (unsigned char *)(uintptr_t)reason, strlen(reason));
	return -1;
}

/* Appends a reference to `m` to queue `q` (the send queue, or the live
 * messages held during a replay) and, for the send queue, asks for
 * WRITEABLE. On overflow the session is closed with 1008: a client that
 * cannot keep up resumes from history instead of growing our memory.
 * Returns 0 or -1 (dropped). */
static int
session_enqueue_to(wsd_session *s, wsd_msg *m, lws_dll2_owner_t *q)
{
	wsd_qent *e;

	if (s->close_code != 0)
		return -1;
	if ((long)q->count >= session_cfg(s)->ws_send_queue_max) {
		cg_log_warn("%s user %s: send queue full (%u messages%s), closing",
			    s->peer, session_user(s), q->count, q == &s->held ? " held" : "");
		session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "send queue full");
		return -1;
	}
	e = calloc(1, sizeof *e);
	if (e == NULL) {
		cg_log_error("%s: out of memory queueing a message", s->peer);
		session_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
		return -1;
	}
	m->refs++;
	e->msg = m;
	lws_dll2_add_tail(&e->list, q);
	if (q == &s->sendq)
		lws_callback_on_writable(s->wsi);
	return 0;
}

static int
session_enqueue(wsd_session *s, wsd_msg *m)
{
	return session_enqueue_to(s, m, &s->sendq);
}

static int
session_send_text(wsd_session *s, const char *text)
{
	wsd_msg *m = wsd_msg_new(text, strlen(text));
	int rc;

	if (m == NULL)
		return -1;
	rc = session_enqueue(s, m);
	wsd_msg_unref(m);
	return rc;
}

static int
session_send_json(wsd_session *s, json_object *obj)
{
	const char *text = obj != NULL ? cg_json_compact(obj) : NULL;

	if (text == NULL)
		return -1;
	return session_send_text(s, text);
}

/* {"type":"error","code":...,"message":...} */
static int
session_send_error(wsd_session *s, const char *code, const char *message)
{
	json_object *o = json_object_new_object();
	int rc = -1;

	if (o == NULL)
		return -1;
	if (cg_json_add_string(o, "type", "error") == 0 &&
	    cg_json_add_string(o, "code", code) == 0 &&
	    cg_json_add_string(o, "message", message) == 0)
		rc = session_send_json(s, o);
	json_object_put(o);
	return rc;
}

/* {"type":<type>,"channel":<channel>} */
static int
session_send_channel(wsd_session *s, const char *type, const char *channel)
{
	json_object *o = json_object_new_object();
	int rc = -1;

	if (o == NULL)
		return -1;
	if (cg_json_add_string(o, "type", type) == 0 &&
	    cg_json_add_string(o, "channel", channel) == 0)
		rc = session_send_json(s, o);
	json_object_put(o);
	return rc;
}

static void
queue_free(lws_dll2_owner_t *q)
{
	lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(q)) {
		wsd_qent *e = lws_container_of(d, wsd_qent, list);

		lws_dll2_remove(&e->list);
		wsd_msg_unref(e->msg);
		free(e);
	} lws_end_foreach_dll_safe(d, d1);
}

static void
session_free_queue(wsd_session *s)
{
	queue_free(&s->sendq);
	queue_free(&s->held);
}

/* ---- heartbeat and authentication timers -------------------------------- */

static void session_beat_cb(lws_sorted_usec_list_t *sul);

/* Schedules the next heartbeat check: the next ping or the moment the
 * session would time out, whichever comes first. */
static void
session_beat_schedule(wsd_session *s, int64_t now)
{
	int64_t due = s->last_rx_ms + session_cfg(s)->ws_pong_timeout * 1000;
	int64_t delay;

	if (s->next_ping_ms < due)
		due = s->next_ping_ms;
	delay = due - now;
	if (delay < 1)
		delay = 1;
	lws_sul_schedule(s->vhd->ctx, 0, &s->sul_beat, session_beat_cb,
			 (lws_usec_t)delay * LWS_US_PER_MS);
}

static void
session_beat_cb(lws_sorted_usec_list_t *sul)
{
	wsd_session *s = lws_container_of(sul, wsd_session, sul_beat);
	const cg_config *cfg = session_cfg(s);
	int64_t now = cg_monotonic_ms();

	if (s->close_code != 0)
		return;
	if (now - s->last_rx_ms >= cfg->ws_pong_timeout * 1000) {
		cg_log_info("%s user %s: nothing received for %ld s, closing",
			    s->peer, session_user(s), cfg->ws_pong_timeout);
		session_close(s, 4408, "heartbeat timeout");
		return;
	}
	if (now >= s->next_ping_ms) {
		(void)session_send_text(s, "{\"type\":\"ping\"}");
		s->next_ping_ms = now + cfg->ws_ping_interval * 1000;
	}
	session_beat_schedule(s, now);
}

static void
session_auth_timeout_cb(lws_sorted_usec_list_t *sul)
{
	wsd_session *s = lws_container_of(sul, wsd_session, sul_auth);

	if (s->authenticated || s->close_code != 0)
		return;
	cg_log_warn("auth failed from %s: no token within %ld s", s->peer,
		    session_cfg(s)->ws_auth_timeout);
	session_close(s, 4401, "authentication timeout");
}

/* What a subscribe/unsubscribe message names. */
typedef enum { CHAN_ACTIVITIES, CHAN_TENANT, CHAN_CAPSULE } wsd_chan_kind;

/* Parses channel name `channel` into *kind (*capsule_id for a capsule
 * channel). Returns 0; 1 after an error was queued (unknown name); -1 for a
 * wildcard (no role may subscribe to several channels at once: the caller
 * closes with 4403). */
static int
channel_parse(wsd_session *s, const char *channel, wsd_chan_kind *kind, const char **capsule_id)
{
	char text[WSD_CHANNEL_MAX + 32];

	*capsule_id = NULL;
	if (strchr(channel, '*') != NULL) {
		cg_log_warn("%s user %s: forbidden channel %s", s->peer, session_user(s), channel);
		return -1;
	}
	if (strcmp(channel, WSD_CHANNEL_ACTIVITIES) == 0) {
		*kind = CHAN_ACTIVITIES;
		return 0;
	}
	if (strcmp(channel, CG_CHANNEL_TENANT) == 0) {
		*kind = CHAN_TENANT;
		return 0;
	}
	*capsule_id = cg_event_capsule_channel(channel);
	if (*capsule_id != NULL) {
		*kind = CHAN_CAPSULE;
		return 0;
	}
	snprintf(text, sizeof text, "unknown channel: %s", channel);
	(void)session_send_error(s, "unknown_channel", text);
	return 1;
}

/* Index of capsule_id in the session's capsule subscriptions, or -1. */
static int
session_capsule_find(const wsd_session *s, const char *capsule_id)
{
	int i;

	for (i = 0; i < WSD_CAPSULE_SUBS_MAX; i++)
		if (s->sub_capsules[i] != NULL && strcmp(s->sub_capsules[i], capsule_id) == 0)
			return i;
	return -1;
}

static void
session_capsules_free(wsd_session *s)
{
	int i;

	for (i = 0; i < WSD_CAPSULE_SUBS_MAX; i++) {
		free(s->sub_capsules[i]);
		s->sub_capsules[i] = NULL;
	}
}

/* Adds a capsule subscription. Returns 0, or 1 after an error was queued. */
static int
session_capsule_add(wsd_session *s, const char *capsule_id)
{
	int i, free_slot = -1;

	if (session_capsule_find(s, capsule_id) >= 0)
		return 0;
	for (i = 0; i < WSD_CAPSULE_SUBS_MAX && free_slot < 0; i++)
		if (s->sub_capsules[i] == NULL)
			free_slot = i;
	if (free_slot < 0) {
		(void)session_send_error(s, "too_many_subscriptions",
					 "at most 64 capsule channels per connection");
		return 1;
	}
	s->sub_capsules[free_slot] = strdup(capsule_id);
	if (s->sub_capsules[free_slot] == NULL) {
		(void)session_send_error(s, "internal_error", "out of memory");
		return 1;
	}
	return 0;
}

/* 1 when the session's role sees the whole tenant (operator and above). */
static int
session_sees_all(const wsd_session *s)
{
	cg_role r;

	return cg_role_parse(s->claims.role, &r) == 0 && r >= CG_ROLE_OPERATOR;
}

/* A capsule channel below operator: who owns the activity is asked of
 * PostgreSQL (a CHANNEL job); session_channel_result subscribes or closes
 * with 4403. Returns 0, or 1 after an error was queued. */
static int
session_channel_check(wsd_session *s, const char *capsule_id)
{
	wsd_job *job;
	int i, slot = -1;

	for (i = 0; i < WSD_CHAN_JOBS_MAX && slot < 0; i++)
		if (s->chan_jobs[i] == NULL)
			slot = i;
	if (slot < 0) {
		(void)session_send_error(s, "busy", "too many subscriptions being checked, try again");
		return 1;
	}
	job = s->vhd->app->worker != NULL ? wsd_job_new(WSD_JOB_CHANNEL, s->serial) : NULL;
	if (job == NULL) {
		(void)session_send_error(s, "unavailable", "cannot check the channel now, try again");
		return 1;
	}
	snprintf(job->tenant, sizeof job->tenant, "%s", s->claims.tenant);
	snprintf(job->text, sizeof job->text, "%s", capsule_id);
	job->owner = s;
	if (wsd_worker_submit(s->vhd->app->worker, job) < 0) {
		wsd_job_free(job);
		(void)session_send_error(s, "unavailable", "cannot check the channel now, try again");
		return 1;
	}
	s->chan_jobs[slot] = job;
	return 0;
}

/* Subscribes to `channel` and confirms with "subscribed" (a capsule channel
 * below operator once its activity is known not to be another user's:
 * session_channel_check). Returns 0; 1 after an error was queued; -1 for a
 * forbidden channel (the caller closes with 4403). */
static int
session_subscribe(wsd_session *s, const char *channel)
{
	const char *capsule_id;
	wsd_chan_kind kind = CHAN_ACTIVITIES;
	int rc = channel_parse(s, channel, &kind, &capsule_id);

	if (rc != 0)
		return rc;
	if (kind == CHAN_CAPSULE && !session_sees_all(s) && session_capsule_find(s, capsule_id) < 0)
		return session_channel_check(s, capsule_id);
	if (kind == CHAN_ACTIVITIES)
		s->sub_activities = 1;
	else if (kind == CHAN_TENANT)
		s->sub_tenant = 1;
	else if (session_capsule_add(s, capsule_id) != 0)
		return 1;
	s->vhd->registry_dirty = 1;
	(void)session_send_channel(s, "subscribed", channel);
	return 0;
}

/* The subscriptions a session starts with: `channels` (a comma-separated
 * list from the query, or NULL) or `arr` (the authenticate message's array,
 * or NULL); with neither, "activities": the seed server broadcast every
 * activity to every connected client and existing clients rely on that
 * (they may still unsubscribe). Named channels are confirmed with
 * "subscribed" each. Returns 0, or -1 for a forbidden channel. */
static int
session_initial_channels(wsd_session *s, const char *channels, json_object *arr)
{
	char name[WSD_CHANNEL_MAX + 1];
	const char *p, *comma;
	size_t i, n, len;

	if (arr != NULL) {
		n = json_object_array_length(arr);
		for (i = 0; i < n; i++) {
			json_object *v = json_object_array_get_idx(arr, i);

			if (!json_object_is_type(v, json_type_string) ||
			    json_object_get_string_len(v) > WSD_CHANNEL_MAX) {
				(void)session_send_error(s, "bad_message",
							 "channels must be strings of at most 256 bytes");
				continue;
			}
			if (session_subscribe(s, json_object_get_string(v)) < 0)
				return -1;
		}
		return 0;
	}
	if (channels == NULL) {
		/* Implicit: not confirmed, as the seed server did not either. */
		s->sub_activities = 1;
		return 0;
	}
	for (p = channels; *p != '\0'; p = *comma != '\0' ? comma + 1 : comma) {
		comma = strchr(p, ',');
		if (comma == NULL)
			comma = p + strlen(p);
		len = (size_t)(comma - p);
		if (len == 0)
			continue;
		if (len > WSD_CHANNEL_MAX) {
			(void)session_send_error(s, "bad_message", "a channel name is longer than 256 bytes");
			continue;
		}
		memcpy(name, p, len);
		name[len] = '\0';
		if (session_subscribe(s, name) < 0)
			return -1;
	}
	return 0;
}

static void session_resume_begin(wsd_session *s, const char *from);
static void session_replay_step(wsd_session *s);

/* Marks a session whose identity (s->claims; for an agent also agent_id)
 * was verified as authenticated: counts it under its subject (refused at
 * ws_max_connections_per_user: returns 1 and the caller closes with 4429),
 * confirms with "authenticated" (users) or "registered" (agents), sets the
 * initial subscriptions (returns -1 for a forbidden one: the caller closes
 * with 4403), starts the heartbeat, and begins resuming from `from` (a
 * last_event_id, or NULL/"" for the device's cursor). Returns 0. */
static int
session_admit(wsd_session *s, const char *from, const char *channels, json_object *arr)
{
	const cg_config *cfg = session_cfg(s);
	wsd_limits *lim = &s->vhd->limits;
	json_object *o;
	long n;
	int64_t now;

	n = wsd_limits_user_count(lim, s->claims.tenant, s->claims.sub);
	if (n >= cfg->ws_max_connections_per_user) {
		cg_log_warn("%s user %s (tenant %s): refused, %ld connections already "
			    "(ws_max_connections_per_user %ld)", s->peer, s->claims.sub,
			    s->claims.tenant, n, cfg->ws_max_connections_per_user);
		return 1;
	}
	if (wsd_limits_user_add(lim, s->claims.tenant, s->claims.sub, 1) == 0)
		s->user_counted = 1;
	else
		cg_log_warn("%s user %s: connection not counted (out of memory)", s->peer,
			    s->claims.sub);
	s->authenticated = 1;
	atomic_fetch_add(&s->vhd->app->nconns, 1);
	lws_sul_cancel(&s->sul_auth);
	s->vhd->registry_dirty = 1;
	cg_log_info("%s authenticated as %s %s (tenant %s, role %s, connection %s)", s->peer,
		    s->is_agent ? "agent" : "user", s->is_agent ? s->agent_id : s->claims.sub,
		    s->claims.tenant, s->claims.role, s->conn_id);

	o = json_object_new_object();
	if (o != NULL && s->is_agent) {
		if (cg_json_add_string(o, "type", "registered") == 0 &&
		    cg_json_add_string(o, "agent_id", s->agent_id) == 0 &&
		    cg_json_add_string(o, "tenant", s->claims.tenant) == 0 &&
		    cg_json_add_string(o, "connection_id", s->conn_id) == 0)
			(void)session_send_json(s, o);
	} else if (o != NULL) {
		if (cg_json_add_string(o, "type", "authenticated") == 0 &&
		    cg_json_add_string(o, "user_id", s->claims.sub) == 0 &&
		    cg_json_add_string(o, "device_token", s->claims.device_token) == 0)
			(void)session_send_json(s, o);
	}
	json_object_put(o);
	/* Agents get what is addressed to them without subscribing. */
	if ((!s->is_agent || channels != NULL || arr != NULL) &&
	    session_initial_channels(s, channels, arr) < 0)
		return -1;

	now = cg_monotonic_ms();
	s->next_ping_ms = now + cfg->ws_ping_interval * 1000;
	session_beat_schedule(s, now);
	session_resume_begin(s, from);
	return 0;
}

/* Verifies `token` and, when valid, admits the session (session_admit).
 * Returns 0, or -1 after session_close_now: 4401 when the token is bad
 * (logged without the token), 4429 when the user has
 * ws_max_connections_per_user connections already, 4403 for a forbidden
 * initial channel. */
static int
session_authenticate(wsd_session *s, const char *token, const char *from, const char *channels,
		     json_object *arr)
{
	const cg_config *cfg = session_cfg(s);
	char err[128];
	int rc;

	if (cg_ws_token_verify(cfg->ws_jwt_secret, cfg->ws_jwt_issuer, token, cg_now(),
			       &s->claims, err, sizeof err) < 0) {
		memset(&s->claims, 0, sizeof s->claims);
		cg_log_warn("auth failed from %s: %s", s->peer, err);
		return session_close_now(s, 4401, "invalid token");
	}
	if (strncmp(s->claims.sub, WSD_AGENT_PREFIX, strlen(WSD_AGENT_PREFIX)) == 0) {
		/* Agent subjects are API keys' alone. */
		cg_log_warn("auth failed from %s: token subject %s is reserved for agents", s->peer,
			    s->claims.sub);
		memset(&s->claims, 0, sizeof s->claims);
		return session_close_now(s, 4401, "invalid token");
	}
	rc = session_admit(s, from, channels, arr);
	if (rc > 0)
		return session_close_now(s, WSD_CLOSE_LIMIT, "too many connections for this user");
	if (rc < 0)
		return session_close_now(s, WSD_CLOSE_FORBIDDEN, "forbidden channel");
	return 0;
}

/* ---- client messages ---------------------------------------------------- */

/* A handler returns 0 to keep the session, or -1 after session_close_now. */
typedef int (*wsd_handler)(wsd_session *s, json_object *msg);

static int
on_authenticate(wsd_session *s, json_object *msg)
{
	const char *token = NULL, *from = NULL;
	json_object *arr = NULL;

	if (s->authenticated || s->key_job != NULL) {
		(void)session_send_error(s, "already_authenticated",
					 "this connection is already authenticated");
		return 0;
	}
	if (cg_json_get_string(msg, "token", WSD_TOKEN_MAX, &token) != CG_JSON_OK ||
	    *token == '\0') {
		cg_log_warn("auth failed from %s: authenticate message without a usable token",
			    s->peer);
		return session_close_now(s, 4401, "invalid token");
	}
	if (json_object_object_get_ex(msg, "last_event_id", NULL) &&
	    cg_json_get_string(msg, "last_event_id", WSD_JOB_TEXT_MAX - 1, &from) != CG_JSON_OK) {
		(void)session_send_error(s, "bad_message", "last_event_id must be a string");
		from = NULL;
	}
	if (json_object_object_get_ex(msg, "channels", &arr) &&
	    !json_object_is_type(arr, json_type_array)) {
		(void)session_send_error(s, "bad_message", "channels must be an array of strings");
		arr = NULL;
	}
	return session_authenticate(s, token, from, NULL, arr);
}

/* Reads the channel of a subscribe/unsubscribe message into *channel and
 * *kind (*capsule_id for a capsule channel). Returns 0; 1 after an error
 * was queued (malformed or unknown name); -1 after session_close_now with
 * 4403 (a wildcard). */
static int
message_channel(wsd_session *s, json_object *msg, const char **channel, wsd_chan_kind *kind,
		const char **capsule_id)
{
	int rc;

	*channel = NULL;
	*capsule_id = NULL;
	if (cg_json_get_string(msg, "channel", WSD_CHANNEL_MAX, channel) != CG_JSON_OK) {
		(void)session_send_error(s, "bad_message", "channel must be a string of at most 256 bytes");
		return 1;
	}
	rc = channel_parse(s, *channel, kind, capsule_id);
	if (rc < 0)
		return session_close_now(s, WSD_CLOSE_FORBIDDEN, "forbidden channel");
	return rc;
}

static int
on_subscribe(wsd_session *s, json_object *msg)
{
	const char *channel = NULL;
	int rc;

	if (cg_json_get_string(msg, "channel", WSD_CHANNEL_MAX, &channel) != CG_JSON_OK) {
		(void)session_send_error(s, "bad_message", "channel must be a string of at most 256 bytes");
		return 0;
	}
	rc = session_subscribe(s, channel);
	if (rc < 0)
		return session_close_now(s, WSD_CLOSE_FORBIDDEN, "forbidden channel");
	return 0;
}

static int
on_unsubscribe(wsd_session *s, json_object *msg)
{
	const char *channel, *capsule_id;
	wsd_chan_kind kind = CHAN_ACTIVITIES;
	int i, rc = message_channel(s, msg, &channel, &kind, &capsule_id);

	if (rc != 0)
		return rc > 0 ? 0 : -1;
	if (kind == CHAN_ACTIVITIES) {
		s->sub_activities = 0;
	} else if (kind == CHAN_TENANT) {
		s->sub_tenant = 0;
	} else {
		i = session_capsule_find(s, capsule_id);
		if (i >= 0) {
			free(s->sub_capsules[i]);
			s->sub_capsules[i] = NULL;
		}
	}
	s->vhd->registry_dirty = 1;
	(void)session_send_channel(s, "unsubscribed", channel);
	return 0;
}

static int
on_ping(wsd_session *s, json_object *msg)
{
	(void)msg;
	(void)session_send_text(s, "{\"type\":\"pong\"}");
	return 0;
}

/* pong: receiving it already refreshed liveness. */
static int
on_quiet(wsd_session *s, json_object *msg)
{
	(void)s;
	(void)msg;
	return 0;
}

/* Whether the session has a cursor: a user's device, or an agent. */
static int
session_has_cursor(const wsd_session *s)
{
	return s->is_agent || s->claims.device_token[0] != '\0';
}

/* ack: {"event_id":…} or {"stream_id":…} moves the device's cursor forward
 * (written within a second: session_flush_ack). */
static int
on_ack(wsd_session *s, json_object *msg)
{
	const char *id = NULL;
	cg_stream_pos pos;

	if (json_object_object_get_ex(msg, "stream_id", NULL)) {
		if (cg_json_get_string(msg, "stream_id", CG_STREAM_POS_MAX, &id) != CG_JSON_OK ||
		    cg_stream_pos_parse(id, &pos) < 0) {
			(void)session_send_error(s, "bad_message",
						 "stream_id must be a stream position \"<ms>-<seq>\"");
			return 0;
		}
		if (session_has_cursor(s) && cg_stream_pos_cmp(&pos, &s->ack_pos) > 0) {
			s->ack_pos = pos;
			s->ack_dirty = 1;
		}
		return 0;
	}
	if (cg_json_get_string(msg, "event_id", WSD_EVENT_ID_MAX, &id) != CG_JSON_OK || *id == '\0') {
		(void)session_send_error(s, "bad_message", "ack needs an event_id or a stream_id");
		return 0;
	}
	if (session_has_cursor(s)) {
		snprintf(s->ack_event, sizeof s->ack_event, "%s", id);
		s->ack_dirty = 1;
	}
	return 0;
}

/* Hands the worker the acks received since the last call. */
static void
session_flush_ack(wsd_session *s)
{
	wsd_worker *w = s->vhd->app->worker;
	static const cg_stream_pos zero;
	wsd_job *job;
	int i;

	if (!s->ack_dirty || w == NULL)
		return;
	s->ack_dirty = 0;
	for (i = 0; i < 2; i++) {
		if (i == 0 && cg_stream_pos_cmp(&s->ack_pos, &zero) == 0)
			continue;
		if (i == 1 && s->ack_event[0] == '\0')
			continue;
		job = wsd_job_new(WSD_JOB_ACK, s->serial);
		if (job == NULL)
			break;
		snprintf(job->tenant, sizeof job->tenant, "%s", s->claims.tenant);
		snprintf(job->subject, sizeof job->subject, "%s", s->claims.sub);
		snprintf(job->device, sizeof job->device, "%s", s->claims.device_token);
		if (i == 0)
			job->pos = s->ack_pos;
		else
			snprintf(job->text, sizeof job->text, "%s", s->ack_event);
		if (wsd_worker_submit(w, job) < 0) {
			cg_log_warn("%s user %s: cursor not moved (worker queue full)", s->peer,
				    session_user(s));
			wsd_job_free(job);
		}
	}
	s->ack_event[0] = '\0';
}

static const struct {
	const char *type;
	int needs_auth;
	wsd_handler fn;
} wsd_handlers[] = {
	{ "authenticate", 0, on_authenticate },
	{ "subscribe", 1, on_subscribe },
	{ "unsubscribe", 1, on_unsubscribe },
	{ "ping", 1, on_ping },
	{ "pong", 1, on_quiet },
	{ "ack", 1, on_ack },
};

/* One complete client message. Returns 0, or -1 when the session closes. */
static int
session_message(wsd_session *s, const char *data, size_t len)
{
	json_object *msg = NULL;
	const char *type = NULL;
	char err[128], text[192];
	size_t i;
	int rc = 0;

	if (s->rx_binary) {
		(void)session_send_error(s, "bad_message", "only text messages are accepted");
		goto out;
	}
	msg = cg_json_parse_object(data, len, WSD_JSON_DEPTH, err, sizeof err);
	if (msg == NULL) {
		snprintf(text, sizeof text, "not a JSON object: %s", err);
		(void)session_send_error(s, "bad_message", text);
		goto out;
	}
	if (cg_json_get_string(msg, "type", WSD_TYPE_MAX, &type) != CG_JSON_OK) {
		(void)session_send_error(s, "bad_message", "\"type\" must be a string");
		goto out;
	}
	for (i = 0; i < sizeof wsd_handlers / sizeof wsd_handlers[0]; i++) {
		if (strcmp(type, wsd_handlers[i].type) == 0)
			break;
	}
	if (!s->authenticated && (i == sizeof wsd_handlers / sizeof wsd_handlers[0] ||
				  wsd_handlers[i].needs_auth)) {
		(void)session_send_error(s, "unauthenticated", "send a valid token first");
		goto out;
	}
	if (i == sizeof wsd_handlers / sizeof wsd_handlers[0]) {
		snprintf(text, sizeof text, "unknown message type: %s", type);
		(void)session_send_error(s, "unknown_type", text);
		goto out;
	}
	rc = wsd_handlers[i].fn(s, msg);
out:
	json_object_put(msg);
	return rc;
}

/* RECEIVE: assembles fragments up to ws_max_message and handles each
 * complete message. Returns 0, or -1 when the session closes. */
static int
session_receive(wsd_session *s, const void *in, size_t len)
{
	size_t max = (size_t)session_cfg(s)->ws_max_message;
	size_t remaining;
	int rc = 0;

	s->last_rx_ms = cg_monotonic_ms();
	/* Closing: what still arrives is read and dropped. */
	if (s->close_code != 0)
		return 0;
	/* A message over the limit is read to its end and dropped before the
	 * 1009 close goes out: a client still in the middle of sending it could
	 * not answer the close, and the connection would end in a reset instead
	 * (bounded: the session is killed WSD_CLOSE_GRACE_S after the limit was
	 * passed, however much more it sends). */
	if (s->rx_discard) {
		if (lws_is_final_fragment(s->wsi)) {
			s->rx_discard = 0;
			session_close(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
		}
		return 0;
	}
	if (lws_is_first_fragment(s->wsi)) {
		cg_buf_reset(&s->rx);
		s->rx_binary = lws_frame_is_binary(s->wsi);
	}
	remaining = lws_remaining_packet_payload(s->wsi);
	if (s->rx.len + len > max || remaining > max - s->rx.len - len) {
		cg_log_warn("%s user %s: message larger than %zu bytes, closing",
			    s->peer, session_user(s), max);
		cg_buf_free(&s->rx);
		lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, WSD_CLOSE_GRACE_S);
		if (lws_is_final_fragment(s->wsi))
			session_close(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
		else
			s->rx_discard = 1;
		return 0;
	}
	if (!lws_is_final_fragment(s->wsi)) {
		if (cg_buf_append(&s->rx, in, len) < 0)
			return session_close_now(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
		return 0;
	}
	if (s->rx.len == 0) {
		/* The whole message arrived in one piece: no copy. */
		rc = session_message(s, in, len);
	} else {
		if (cg_buf_append(&s->rx, in, len) < 0)
			return session_close_now(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
		rc = session_message(s, s->rx.data, s->rx.len);
	}
	/* Do not keep a large buffer for an idle connection. */
	if (s->rx.cap > WSD_RX_KEEP)
		cg_buf_free(&s->rx);
	else
		cg_buf_reset(&s->rx);
	return rc;
}

/* WRITEABLE: a pending close, or one queued message. */
static int
session_writeable(wsd_session *s)
{
	wsd_qent *e;
	size_t len;
	int n;

	if (s->close_code != 0) {
		lws_close_reason(s->wsi, (enum lws_close_status)s->close_code,
				 (unsigned char *)s->close_reason, strlen(s->close_reason));
		return -1;
	}
	if (s->sendq.head == NULL)
		return 0;
	e = lws_container_of(s->sendq.head, wsd_qent, list);
	lws_dll2_remove(&e->list);
	len = e->msg->len;
	n = lws_write(s->wsi, e->msg->buf + LWS_PRE, len, LWS_WRITE_TEXT);
	wsd_msg_unref(e->msg);
	free(e);
	if (n < (int)len) {
		snprintf(s->why, sizeof s->why, "write failed");
		return -1;
	}
	if (s->sendq.head != NULL)
		lws_callback_on_writable(s->wsi);
	if (s->replay == WSD_REPLAY_PAGING && s->replay_job == NULL &&
	    (long)s->sendq.count <= session_cfg(s)->ws_send_queue_max / 2)
		session_replay_step(s);
	return 0;
}

/* ---- session life ------------------------------------------------------- */

/* Copies request header `name` (lower case, with the colon) into buf.
 * Returns 1 when present and non-empty (and fitting), else 0. */
static int
session_header(struct lws *wsi, const char *name, char *buf, size_t len)
{
	int n = lws_hdr_custom_length(wsi, name, (int)strlen(name));

	if (n <= 0 || (size_t)n >= len)
		return 0;
	return lws_hdr_custom_copy(wsi, buf, (int)len, name, (int)strlen(name)) > 0 && buf[0] != '\0';
}

/* An agent: the upgrade carried an API key. Its check needs PostgreSQL, so
 * it is a worker job (session_key_result goes on); until then the session
 * is unauthenticated. The agent id comes from the query (agent_id=) or the
 * X-Agent-ID header, else it is "key_<key_id>". Returns 0, or -1 after
 * session_close_now with 4401 (a token too, or a bad agent id) or 1013. */
static int
session_agent_begin(wsd_session *s, char *key, const char *token, const char *from,
		    const char *channels)
{
	char abuf[CG_CLAIM_MAX + 16];
	const char *agent = lws_get_urlarg_by_name(s->wsi, "agent_id=", abuf, (int)sizeof abuf);
	wsd_job *job;

	if (token != NULL) {
		explicit_bzero(key, strlen(key));
		cg_log_warn("auth failed from %s: both a token and an API key", s->peer);
		return session_close_now(s, 4401, "both a token and an API key");
	}
	if (agent == NULL && session_header(s->wsi, "x-agent-id:", abuf, sizeof abuf))
		agent = abuf;
	if (agent != NULL && (!cg_id_valid(agent) || strlen(agent) > WSD_AGENT_ID_MAX)) {
		explicit_bzero(key, strlen(key));
		cg_log_warn("auth failed from %s: invalid agent_id", s->peer);
		return session_close_now(s, 4401, "invalid agent_id");
	}
	s->is_agent = 1;
	snprintf(s->agent_id, sizeof s->agent_id, "%.200s", agent != NULL ? agent : "");
	snprintf(s->resume_from, sizeof s->resume_from, "%s", from != NULL ? from : "");
	if (channels != NULL) {
		s->pending_channels = strdup(channels);
		if (s->pending_channels == NULL) {
			explicit_bzero(key, strlen(key));
			return session_close_now(s, WSD_CLOSE_TRY_AGAIN, "out of memory");
		}
	}
	job = s->vhd->app->worker != NULL ? wsd_job_new(WSD_JOB_APIKEY, s->serial) : NULL;
	if (job != NULL) {
		snprintf(job->text, sizeof job->text, "%s", key);
		job->owner = s;
		if (wsd_worker_submit(s->vhd->app->worker, job) < 0) {
			explicit_bzero(job->text, sizeof job->text);
			wsd_job_free(job);
			job = NULL;
		}
	}
	explicit_bzero(key, strlen(key));
	if (job == NULL) {
		cg_log_warn("auth failed from %s: API key not checked (worker busy)", s->peer);
		return session_close_now(s, WSD_CLOSE_TRY_AGAIN, "server busy, try again later");
	}
	s->key_job = job;
	lws_sul_schedule(s->vhd->ctx, 0, &s->sul_auth, session_auth_timeout_cb,
			 (lws_usec_t)session_cfg(s)->ws_auth_timeout * LWS_US_PER_SEC);
	return 0;
}

/* The APIKEY answer for a session that is still there. */
static void
session_key_result(wsd_session *s, wsd_job *job)
{
	int rc;

	if (s->close_code != 0)
		return;
	if (job->status == WSD_JOB_REFUSED) {
		cg_log_warn("auth failed from %s: API key refused", s->peer);
		session_close(s, 4401, "invalid API key");
		return;
	}
	if (job->status != WSD_JOB_OK) {
		cg_log_warn("auth failed from %s: API key not checked: %s", s->peer, job->reason);
		session_close(s, WSD_CLOSE_TRY_AGAIN, "key store unavailable, try again later");
		return;
	}
	if (s->agent_id[0] == '\0')
		snprintf(s->agent_id, sizeof s->agent_id, "key_%s", job->principal.key_id);
	snprintf(s->claims.sub, sizeof s->claims.sub, WSD_AGENT_PREFIX "%.200s", s->agent_id);
	snprintf(s->claims.tenant, sizeof s->claims.tenant, "%s", job->principal.tenant);
	snprintf(s->claims.role, sizeof s->claims.role, "%s", cg_role_name(job->principal.role));
	s->claims.device_token[0] = '\0';
	rc = session_admit(s, s->resume_from, s->pending_channels, NULL);
	free(s->pending_channels);
	s->pending_channels = NULL;
	if (rc > 0)
		session_close(s, WSD_CLOSE_LIMIT, "too many connections for this agent");
	else if (rc < 0)
		session_close(s, WSD_CLOSE_FORBIDDEN, "forbidden channel");
}

static int
session_established(struct wsd_vhost *vhd, wsd_session *s, struct lws *wsi)
{
	const cg_config *cfg = vhd->app->cfg;
	char buf[WSD_TOKEN_MAX + 16], fbuf[WSD_JOB_TEXT_MAX + 16], cbuf[2048];
	char kbuf[WSD_JOB_TEXT_MAX];
	const char *token, *from, *channels;
	long attempts;

	memset(s, 0, sizeof *s);
	s->wsi = wsi;
	s->vhd = vhd;
	s->established = 1;
	s->connected_at = cg_now();
	s->serial = ++vhd->next_serial;
	snprintf(s->conn_id, sizeof s->conn_id, "%s:%llu", cfg->instance_id, s->serial);
	snprintf(s->why, sizeof s->why, "connection lost");
	if (lws_get_peer_simple(wsi, s->peer, sizeof s->peer) == NULL)
		snprintf(s->peer, sizeof s->peer, "?");
	cg_buf_init(&s->rx, (size_t)cfg->ws_max_message);
	wsd_order_init(&s->order, WSD_ORDER_MAX);
	s->last_rx_ms = cg_monotonic_ms();
	lws_dll2_add_tail(&s->list, &vhd->sessions);
	cg_log_info("connect from %s (connection %s)", s->peer, s->conn_id);

	/* Limits: the upgrade is accepted, then closed with 4429 and a reason. */
	attempts = wsd_limits_attempt(&vhd->limits, s->peer, s->last_rx_ms);
	if (attempts > cfg->ws_connect_attempts_per_ip_per_minute) {
		cg_log_warn("%s: refused, %ld connection attempts in the last minute "
			    "(ws_connect_attempts_per_ip_per_minute %ld)", s->peer, attempts,
			    cfg->ws_connect_attempts_per_ip_per_minute);
		return session_close_now(s, WSD_CLOSE_LIMIT, "too many connection attempts");
	}
	if ((long)vhd->sessions.count > cfg->ws_max_connections) {
		cg_log_warn("%s: refused, %ld connections open (ws_max_connections %ld)", s->peer,
			    (long)vhd->sessions.count - 1, cfg->ws_max_connections);
		return session_close_now(s, WSD_CLOSE_LIMIT, "too many connections");
	}

	from = lws_get_urlarg_by_name(wsi, "last_event_id=", fbuf, (int)sizeof fbuf);
	channels = lws_get_urlarg_by_name(wsi, "channels=", cbuf, (int)sizeof cbuf);
	token = lws_get_urlarg_by_name(wsi, "token=", buf, (int)sizeof buf);
	if (session_header(wsi, "x-api-key:", kbuf, sizeof kbuf) ||
	    session_header(wsi, "api-key:", kbuf, sizeof kbuf))
		return session_agent_begin(s, kbuf, token, from, channels);
	if (token != NULL && *token != '\0')
		return session_authenticate(s, token, from, channels, NULL);
	lws_sul_schedule(vhd->ctx, 0, &s->sul_auth, session_auth_timeout_cb,
			 (lws_usec_t)cfg->ws_auth_timeout * LWS_US_PER_SEC);
	return 0;
}

static void
session_closed(wsd_session *s)
{
	int i;

	if (!s->established)
		return;
	lws_sul_cancel(&s->sul_auth);
	lws_sul_cancel(&s->sul_beat);
	lws_sul_cancel(&s->sul_replay);
	lws_dll2_remove(&s->list);
	/* Answers still to come find nobody. */
	if (s->key_job != NULL)
		s->key_job->owner = NULL;
	if (s->replay_job != NULL)
		s->replay_job->owner = NULL;
	for (i = 0; i < WSD_CHAN_JOBS_MAX; i++)
		if (s->chan_jobs[i] != NULL)
			s->chan_jobs[i]->owner = NULL;
	if (s->authenticated)
		session_flush_ack(s);
	free(s->pending_channels);
	s->pending_channels = NULL;
	session_free_queue(s);
	cg_buf_free(&s->rx);
	wsd_order_free(&s->order);
	session_capsules_free(s);
	if (s->user_counted)
		(void)wsd_limits_user_add(&s->vhd->limits, s->claims.tenant, s->claims.sub, -1);
	if (s->authenticated) {
		atomic_fetch_sub(&s->vhd->app->nconns, 1);
		s->vhd->registry_dirty = 1;
	}
	cg_log_info("disconnect from %s user %s: %s (connection %s)", s->peer, session_user(s),
		    s->why, s->conn_id);
	s->established = 0;
}

/* ---- per vhost ---------------------------------------------------------- */

/* True for the event types whose versions a session must never see go
 * back (activity_created / activity_updated). */
static int
event_is_ordered(json_object *ev)
{
	const char *type = cg_event_str(ev, "type");

	return (strcmp(type, "activity.created") == 0 || strcmp(type, "activity.updated") == 0) &&
	       cg_event_str(ev, "capsule_id")[0] != '\0';
}

/* Whether session `s` may be sent `ev` as far as ordering goes; records the
 * version when it may. A version not above the one already sent for the
 * capsule (an older one published late, or the same event twice) is dropped. */
static int
session_admit_order(wsd_session *s, json_object *ev, int ordered)
{
	const char *capsule_id;
	long long version;

	if (!ordered)
		return 1;
	capsule_id = cg_event_str(ev, "capsule_id");
	version = cg_event_int(ev, "version");
	if (wsd_order_admit(&s->order, capsule_id, version) == WSD_ORDER_SEND)
		return 1;
	cg_log_debug("%s user %s: %s version %lld of %s dropped (not newer than sent)",
		     s->peer, session_user(s), cg_event_str(ev, "type"), version, capsule_id);
	return 0;
}

/* 1 when one of the session's subscriptions matches `ev` (visibility is
 * checked apart): "activities" takes every event that names no channel or
 * agent (as the seed server did), "tenant" the events for the whole tenant
 * (no user, channel or agent), "capsule:<id>" the events about capsule <id>
 * and those addressed to that channel. Several matches are one delivery. */
static int
session_subscribed(const wsd_session *s, json_object *ev)
{
	const char *channel = cg_event_str(ev, "channel");
	const char *capsule_id;

	if (*cg_event_str(ev, "agent_id") != '\0')
		return 0;
	if (*channel == '\0') {
		if (s->sub_activities)
			return 1;
		if (s->sub_tenant && *cg_event_str(ev, "user_id") == '\0')
			return 1;
		capsule_id = cg_event_str(ev, "capsule_id");
	} else {
		capsule_id = cg_event_capsule_channel(channel);
	}
	return capsule_id != NULL && *capsule_id != '\0' && session_capsule_find(s, capsule_id) >= 0;
}

/* 1 when session `s` is to get `ev` (ordering apart): an agent gets what is
 * addressed to it; anyone gets what it subscribed to and may see. */
static int
session_wants(const wsd_session *s, json_object *ev)
{
	if (!s->authenticated || s->close_code != 0)
		return 0;
	if (s->is_agent && cg_event_for_agent(ev, s->claims.tenant, s->agent_id))
		return 1;
	return session_subscribed(s, ev) &&
	       cg_event_visible_to(ev, s->claims.tenant, s->claims.sub, s->claims.role);
}

/* The shared WebSocket message of `ev`, or NULL (a type not sent over
 * WebSocket, or out of memory: logged). */
static wsd_msg *
event_msg(json_object *ev)
{
	json_object *wm = cg_event_ws_message(ev);
	const char *text;
	wsd_msg *m = NULL;

	if (wm == NULL) {
		cg_log_debug("event type %s is not sent over WebSocket", cg_event_str(ev, "type"));
		return NULL;
	}
	text = cg_json_compact(wm);
	if (text != NULL)
		m = wsd_msg_new(text, strlen(text));
	if (m == NULL)
		cg_log_error("out of memory for an event message");
	json_object_put(wm);
	return m;
}

/* A live event for a session: queued, or held while its replay runs. The
 * first held event bounds the replay (it ends right before it). Returns 0
 * or -1 (dropped: the session is closing). */
static int
session_live(wsd_session *s, json_object *ev, wsd_msg *m)
{
	cg_stream_pos pos;

	if (s->replay == WSD_REPLAY_NONE)
		return session_enqueue(s, m);
	if (!s->upto_known && cg_stream_pos_parse(cg_event_str(ev, "stream_id"), &pos) == 0) {
		s->replay_upto = cg_stream_pos_prev(&pos);
		s->upto_known = 1;
	}
	return session_enqueue_to(s, m, &s->held);
}

/* Sends one event to every session that wants it (session_wants); the
 * message is serialised once and shared. */
static void
vhost_fanout_one(struct wsd_vhost *vhd, json_object *ev)
{
	wsd_msg *m = NULL;
	int n = 0, ordered = event_is_ordered(ev);

	cg_log_set_context(cg_event_str(ev, "event_id"));
	m = event_msg(ev);
	if (m == NULL)
		goto out;
	lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&vhd->sessions)) {
		wsd_session *s = lws_container_of(d, wsd_session, list);

		if (session_wants(s, ev) && session_admit_order(s, ev, ordered) &&
		    session_live(s, ev, m) == 0)
			n++;
	} lws_end_foreach_dll(d);
	cg_log_debug("event %s queued for %d session(s)", cg_event_str(ev, "type"), n);
out:
	wsd_msg_unref(m);
	cg_log_set_context(NULL);
}

/* ---- resuming from history ---------------------------------------------- */

static void
session_replay_retry_cb(lws_sorted_usec_list_t *sul)
{
	session_replay_step(lws_container_of(sul, wsd_session, sul_replay));
}

/* Starts resuming: from `from` (a last_event_id: event id or stream
 * position), or with none from the device's cursor. Until the replay is
 * over, live events for the session are held (session_live). Sessions
 * with neither are live at once. */
static void
session_resume_begin(wsd_session *s, const char *from)
{
	if (from == NULL)
		from = "";
	if (*from == '\0' && !session_has_cursor(s))
		return;
	if (s->vhd->app->worker == NULL) {
		(void)session_send_error(s, "history_unavailable", "no history in this daemon");
		return;
	}
	if (from != s->resume_from)
		snprintf(s->resume_from, sizeof s->resume_from, "%s", from);
	s->replay = WSD_REPLAY_START;
	session_replay_step(s);
}

/* Asks the worker for what the replay needs next: its start, or the next
 * page once the send queue has room (WRITEABLE calls again). */
static void
session_replay_step(wsd_session *s)
{
	const cg_config *cfg = session_cfg(s);
	wsd_job *job;
	long limit;

	if (s->close_code != 0 || s->replay_job != NULL || s->replay == WSD_REPLAY_NONE)
		return;
	if (s->replay == WSD_REPLAY_START) {
		job = wsd_job_new(WSD_JOB_START, s->serial);
		if (job == NULL)
			goto busy;
		snprintf(job->text, sizeof job->text, "%s", s->resume_from);
		job->retention_s = cfg->ws_history_retention;
	} else {
		if (!s->upto_known) {
			if (s->vhd->app->stream == NULL ||
			    wsd_stream_position(s->vhd->app->stream, &s->replay_upto) < 0) {
				lws_sul_schedule(s->vhd->ctx, 0, &s->sul_replay, session_replay_retry_cb,
						 (lws_usec_t)WSD_REPLAY_RETRY_MS * LWS_US_PER_MS);
				return;
			}
			s->upto_known = 1;
		}
		limit = cfg->ws_send_queue_max / 2 - (long)s->sendq.count;
		if (limit < 1 && s->sendq.count > 0)
			return; /* WRITEABLE asks again once the queue drained */
		if (limit > WSD_PAGE_MAX)
			limit = WSD_PAGE_MAX;
		if (limit < 1)
			limit = 1;
		job = wsd_job_new(WSD_JOB_PAGE, s->serial);
		if (job == NULL)
			goto busy;
		job->pos = s->replay_pos;
		job->upto = s->replay_upto;
		job->limit = (int)limit;
	}
	snprintf(job->tenant, sizeof job->tenant, "%s", s->claims.tenant);
	snprintf(job->subject, sizeof job->subject, "%s", s->claims.sub);
	snprintf(job->device, sizeof job->device, "%s", s->claims.device_token);
	job->owner = s;
	if (wsd_worker_submit(s->vhd->app->worker, job) < 0) {
		wsd_job_free(job);
		goto busy;
	}
	s->replay_job = job;
	return;
busy:
	cg_log_warn("%s user %s: history not available now (worker busy)", s->peer, session_user(s));
	session_close(s, WSD_CLOSE_TRY_AGAIN, "server busy, try again later");
}

/* Ends the replay: says so (type "resumed" or "resync_required"; NULL:
 * nothing), then the held live events follow. */
static void
session_replay_finish(wsd_session *s, const char *type, const char *reason)
{
	json_object *o = NULL;
	long cap = session_cfg(s)->ws_send_queue_max;

	s->replay = WSD_REPLAY_NONE;
	lws_sul_cancel(&s->sul_replay);
	if (type != NULL) {
		o = json_object_new_object();
		if (o != NULL && cg_json_add_string(o, "type", type) == 0) {
			if (reason != NULL)
				(void)cg_json_add_string(o, "reason", reason);
			else if (cg_json_add_string(o, "from", s->replay_start) == 0 &&
				 json_object_object_add(o, "events", json_object_new_int64(s->replay_sent)) == 0)
				(void)cg_json_add_string(o, "stream_id", s->replay_last);
			(void)session_send_json(s, o);
		}
		json_object_put(o);
	}
	cg_log_info("%s user %s: %s from %s (%ld event(s) from history, %u held live)", s->peer,
		    session_user(s), type != NULL ? type : "no cursor, live",
		    s->replay_start[0] != '\0' ? s->replay_start : "-", s->replay_sent, s->held.count);
	lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&s->held)) {
		wsd_qent *e = lws_container_of(d, wsd_qent, list);

		lws_dll2_remove(&e->list);
		if ((long)s->sendq.count >= cap || s->close_code != 0) {
			wsd_msg_unref(e->msg);
			free(e);
			if (s->close_code == 0) {
				cg_log_warn("%s user %s: send queue full after the replay, closing",
					    s->peer, session_user(s));
				session_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "send queue full");
			}
			continue;
		}
		lws_dll2_add_tail(&e->list, &s->sendq);
	} lws_end_foreach_dll_safe(d, d1);
	if (s->sendq.head != NULL)
		lws_callback_on_writable(s->wsi);
}

/* A START or PAGE answer for a session that is still there. */
static void
session_replay_result(wsd_session *s, wsd_job *job)
{
	size_t i, n;

	if (s->close_code != 0)
		return;
	if (job->status == WSD_JOB_UNAVAILABLE || job->status == WSD_JOB_ERROR) {
		cg_log_warn("%s user %s: cannot resume from %s: %s", s->peer, session_user(s),
			    s->resume_from[0] != '\0' ? s->resume_from : "the cursor", job->reason);
		session_close(s, WSD_CLOSE_TRY_AGAIN, "history unavailable, try again later");
		return;
	}
	if (job->kind == WSD_JOB_START) {
		if (job->status == WSD_JOB_NONE) {
			session_replay_finish(s, NULL, NULL);
			return;
		}
		if (job->status == WSD_JOB_RESYNC) {
			session_replay_finish(s, "resync_required", job->reason);
			return;
		}
		s->replay_pos = job->pos;
		cg_stream_pos_format(&job->pos, s->replay_start, sizeof s->replay_start);
		snprintf(s->replay_last, sizeof s->replay_last, "%s", s->replay_start);
		s->replay_sent = 0;
		s->replay = WSD_REPLAY_PAGING;
		session_replay_step(s);
		return;
	}
	n = job->events != NULL ? json_object_array_length(job->events) : 0;
	for (i = 0; i < n && s->close_code == 0; i++) {
		json_object *ev = json_object_array_get_idx(job->events, i);
		wsd_msg *m;

		if (!session_wants(s, ev) || !session_admit_order(s, ev, event_is_ordered(ev)))
			continue;
		m = event_msg(ev);
		if (m == NULL)
			continue;
		if (session_enqueue(s, m) == 0) {
			s->replay_sent++;
			snprintf(s->replay_last, sizeof s->replay_last, "%s",
				 cg_event_str(ev, "stream_id"));
		}
		wsd_msg_unref(m);
	}
	s->replay_pos = job->pos;
	if (job->end)
		session_replay_finish(s, "resumed", NULL);
	else
		session_replay_step(s);
}

static void
vhost_fanout(struct wsd_vhost *vhd)
{
	json_object *ev;

	if (vhd->app->stream == NULL)
		return;
	for (;;) {
		ev = wsd_stream_pop(vhd->app->stream);
		if (ev == NULL)
			break;
		vhost_fanout_one(vhd, ev);
		json_object_put(ev);
	}
}

/* A CHANNEL answer: another user's activity is a forbidden channel (4403)
 * for a session below operator; a tenant-wide one, its own, or one that does
 * not exist (yet: events may be published to the channel) is subscribed. */
static void
session_channel_result(wsd_session *s, wsd_job *job)
{
	char channel[WSD_CHANNEL_MAX + 16];
	int i;

	for (i = 0; i < WSD_CHAN_JOBS_MAX; i++)
		if (s->chan_jobs[i] == job)
			s->chan_jobs[i] = NULL;
	if (s->close_code != 0)
		return;
	snprintf(channel, sizeof channel, CG_CHANNEL_CAPSULE_PREFIX "%s", job->text);
	if (job->status == WSD_JOB_UNAVAILABLE || job->status == WSD_JOB_ERROR) {
		cg_log_warn("%s user %s: channel %s not checked: %s", s->peer, session_user(s),
			    channel, job->reason);
		(void)session_send_error(s, "unavailable", "cannot check the channel now, try again");
		return;
	}
	if (job->status == WSD_JOB_OK && job->owner_user[0] != '\0' &&
	    strcmp(job->owner_user, s->claims.sub) != 0) {
		cg_log_warn("%s user %s: forbidden channel %s (another user's activity)", s->peer,
			    session_user(s), channel);
		session_close(s, WSD_CLOSE_FORBIDDEN, "forbidden channel");
		return;
	}
	if (session_capsule_add(s, job->text) != 0)
		return;
	s->vhd->registry_dirty = 1;
	(void)session_send_channel(s, "subscribed", channel);
}

/* Hands each answered worker job to the session that asked, if it is still
 * there. */
static void
vhost_jobs(struct wsd_vhost *vhd)
{
	wsd_job *job;

	if (vhd->app->worker == NULL)
		return;
	for (;;) {
		job = wsd_worker_done(vhd->app->worker);
		if (job == NULL)
			break;
		if (job->owner != NULL) {
			wsd_session *s = job->owner;

			if (job->kind == WSD_JOB_APIKEY) {
				s->key_job = NULL;
				session_key_result(s, job);
			} else if (job->kind == WSD_JOB_CHANNEL) {
				session_channel_result(s, job);
			} else {
				s->replay_job = NULL;
				session_replay_result(s, job);
			}
		}
		wsd_job_free(job);
	}
}

/* ---- connection registry ------------------------------------------------ */

/* The subscriptions of a session as channel names. Returns 0 or -1. */
static int
session_registry_subs(const wsd_session *s, json_object *arr)
{
	char chan[WSD_CHANNEL_MAX + 16];
	int i;

	if (s->sub_activities &&
	    json_object_array_add(arr, json_object_new_string(WSD_CHANNEL_ACTIVITIES)) != 0)
		return -1;
	if (s->sub_tenant && json_object_array_add(arr, json_object_new_string("tenant")) != 0)
		return -1;
	for (i = 0; i < WSD_CAPSULE_SUBS_MAX; i++) {
		if (s->sub_capsules[i] == NULL)
			continue;
		snprintf(chan, sizeof chan, "capsule:%s", s->sub_capsules[i]);
		if (json_object_array_add(arr, json_object_new_string(chan)) != 0)
			return -1;
	}
	return 0;
}

/* Adds the registry entry of an authenticated session to `r`. `now` and
 * `now_ms` are the wall and monotonic clocks of the snapshot. Returns 0 or -1. */
static int
session_registry_entry(const wsd_session *s, wsd_registry *r, time_t now, int64_t now_ms)
{
	const cg_config *cfg = session_cfg(s);
	json_object *o = json_object_new_object(), *subs = json_object_new_array();
	char connected[21], beat[21];
	const char *text;
	int64_t idle_s = (now_ms - s->last_rx_ms) / 1000;
	int lagging = (long)s->sendq.count > cfg->ws_send_queue_max / 2;
	int rc = -1;

	if (o == NULL || subs == NULL)
		goto out;
	cg_time_rfc3339(s->connected_at, connected);
	cg_time_rfc3339(now - (time_t)(idle_s > 0 ? idle_s : 0), beat);
	if (session_registry_subs(s, subs) < 0 ||
	    cg_json_add_string(o, "connection_id", s->conn_id) != 0 ||
	    cg_json_add_string(o, "instance", cfg->instance_id) != 0 ||
	    cg_json_add_string(o, "tenant", s->claims.tenant) != 0 ||
	    cg_json_add_string(o, "kind", s->is_agent ? "agent" : "user") != 0 ||
	    (s->is_agent && cg_json_add_string(o, "agent_id", s->agent_id) != 0) ||
	    cg_json_add_string(o, "user_id", s->is_agent ? "" : s->claims.sub) != 0 ||
	    cg_json_add_string(o, "device_token", s->claims.device_token) != 0 ||
	    cg_json_add_string(o, "role", s->claims.role) != 0 ||
	    cg_json_add_string(o, "connected_at", connected) != 0 ||
	    cg_json_add_string(o, "last_heartbeat", beat) != 0)
		goto out;
	if (json_object_object_add(o, "subscriptions", subs) != 0)
		goto out;
	subs = NULL; /* o owns it */
	if (cg_json_add_string(o, "health", lagging ? "lagging" : "ok") != 0)
		goto out;
	text = cg_json_compact(o);
	if (text != NULL && wsd_registry_add(r, s->conn_id, text) == 0)
		rc = 0;
out:
	json_object_put(subs);
	json_object_put(o);
	return rc;
}

/* Hands the stream a snapshot of the authenticated sessions (at most
 * ws_max_connections). */
static void
vhost_registry_publish(struct wsd_vhost *vhd, int64_t now_ms)
{
	const cg_config *cfg = vhd->app->cfg;
	size_t cap = cfg->ws_max_connections > 0 ? (size_t)cfg->ws_max_connections : 0;
	wsd_registry *r = wsd_registry_new(cap);
	time_t now = cg_now();
	int failed = 0;

	if (r == NULL) {
		cg_log_error("registry: out of memory");
		return;
	}
	lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&vhd->sessions)) {
		wsd_session *s = lws_container_of(d, wsd_session, list);

		if (s->authenticated && r->n < r->cap &&
		    session_registry_entry(s, r, now, now_ms) < 0)
			failed++;
	} lws_end_foreach_dll(d);
	if (failed > 0)
		cg_log_warn("registry: %d connection(s) left out (out of memory)", failed);
	wsd_stream_set_registry(vhd->app->stream, r);
	vhd->registry_dirty = 0;
	vhd->registry_sent_ms = now_ms;
}

static void
vhost_registry_cb(lws_sorted_usec_list_t *sul)
{
	struct wsd_vhost *vhd = lws_container_of(sul, struct wsd_vhost, sul_registry);
	int64_t now = cg_monotonic_ms();

	if (vhd->app->stream != NULL && !vhd->app->stopping &&
	    (vhd->registry_dirty || now - vhd->registry_sent_ms >= WSD_REGISTRY_REFRESH_MS))
		vhost_registry_publish(vhd, now);
	/* Cursors move at most once a second per session. */
	lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&vhd->sessions)) {
		wsd_session *s = lws_container_of(d, wsd_session, list);

		if (s->ack_dirty && s->authenticated)
			session_flush_ack(s);
	} lws_end_foreach_dll(d);
	lws_sul_schedule(vhd->ctx, 0, &vhd->sul_registry, vhost_registry_cb,
			 (lws_usec_t)WSD_REGISTRY_TICK_MS * LWS_US_PER_MS);
}

/* HTTP_CONFIRM_UPGRADE: only GET /ws becomes a WebSocket. Returns 0 to
 * allow, 1 after answering with an HTTP error. */
static int
vhost_confirm_upgrade(struct wsd_vhost *vhd, struct lws *wsi, const char *upgrade)
{
	char path[256];
	unsigned int status = HTTP_STATUS_NOT_FOUND;

	if (vhd != NULL && vhd->app->stopping) {
		status = HTTP_STATUS_SERVICE_UNAVAILABLE;
	} else if (upgrade != NULL && strcmp(upgrade, "websocket") == 0 &&
		   lws_hdr_copy(wsi, path, (int)sizeof path, WSI_TOKEN_GET_URI) > 0 &&
		   strcmp(path, WSD_PATH) == 0) {
		return 0;
	}
	if (lws_return_http_status(wsi, status, NULL) != 0)
		return -1;
	return 1;
}

static int
wsd_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
	     void *in, size_t len)
{
	struct wsd_vhost *vhd = lws_protocol_vh_priv_get(lws_get_vhost(wsi),
							 lws_get_protocol(wsi));
	wsd_session *s = user;

	switch (reason) {
	case LWS_CALLBACK_PROTOCOL_INIT:
		vhd = lws_protocol_vh_priv_zalloc(lws_get_vhost(wsi), lws_get_protocol(wsi),
						  sizeof *vhd);
		if (vhd == NULL)
			return -1;
		vhd->ctx = lws_get_context(wsi);
		vhd->app = lws_context_user(vhd->ctx);
		vhd->app->vhost = vhd;
		wsd_limits_init(&vhd->limits);
		lws_sul_schedule(vhd->ctx, 0, &vhd->sul_registry, vhost_registry_cb,
				 (lws_usec_t)WSD_REGISTRY_TICK_MS * LWS_US_PER_MS);
		return 0;

	case LWS_CALLBACK_PROTOCOL_DESTROY:
		if (vhd != NULL) {
			lws_sul_cancel(&vhd->sul_registry);
			if (vhd->app->vhost == vhd)
				vhd->app->vhost = NULL;
			wsd_limits_free(&vhd->limits);
		}
		return 0;

	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (vhd != NULL) {
			vhost_jobs(vhd);
			vhost_fanout(vhd);
		}
		return 0;

	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return vhost_confirm_upgrade(vhd, wsi, in);

	case LWS_CALLBACK_HTTP:
		/* No plain HTTP here: /health lives in the FastCGI program. */
		if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL) != 0)
			return -1;
		return lws_http_transaction_completed(wsi) != 0 ? -1 : 0;

	case LWS_CALLBACK_ESTABLISHED:
		if (vhd == NULL || s == NULL)
			return -1;
		return session_established(vhd, s, wsi);

	case LWS_CALLBACK_RECEIVE:
		if (s == NULL || !s->established)
			return -1;
		return session_receive(s, in, len);

	case LWS_CALLBACK_RECEIVE_PONG:
		if (s != NULL && s->established)
			s->last_rx_ms = cg_monotonic_ms();
		return 0;

	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (s == NULL || !s->established)
			return -1;
		return session_writeable(s);

	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (s != NULL && s->established) {
			const unsigned char *p = in;
			int code = in != NULL && len >= 2 ? (p[0] << 8) | p[1] : 1005;

			snprintf(s->why, sizeof s->why, "closed by client: %d", code);
		}
		return 0;

	case LWS_CALLBACK_CLOSED:
		if (s != NULL)
			session_closed(s);
		return 0;

	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

const struct lws_protocols wsd_protocols[] = {
	{ "capsule-gateway", wsd_callback, sizeof(wsd_session), WSD_RX_BUFFER, 0, NULL, 0 },
	WSD_LISTEN_PROTOCOL_ENTRY,
	{ NULL, NULL, 0, 0, 0, NULL, 0 } /* terminator */
};

void
wsd_server_shutdown(wsd_app *app)
{
	struct wsd_vhost *vhd = app->vhost;

	app->stopping = 1;
	if (vhd == NULL)
		return;
	lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&vhd->sessions)) {
		wsd_session *s = lws_container_of(d, wsd_session, list);

		session_close(s, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
	} lws_end_foreach_dll(d);
}

int
wsd_server_sessions(const wsd_app *app)
{
	return app->vhost != NULL ? (int)app->vhost->sessions.count : 0;
}

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
#include "order.h"
#include "server.h"

#define WSD_PATH "/ws"                /* the only path that upgrades */
#define WSD_CHANNEL_ACTIVITIES CG_CHANNEL_ACTIVITIES
#define WSD_CAPSULE_SUBS_MAX 64       /* capsule:<id> subscriptions of a session */
#define WSD_CLOSE_FORBIDDEN 4403      /* forbidden channel (PROTOCOLS.md) */
#define WSD_TOKEN_MAX 4096            /* bytes of a token (query or message) */
#define WSD_JSON_DEPTH 16             /* nesting of a client message */
#define WSD_TYPE_MAX 64               /* bytes of a message "type" */
#define WSD_CHANNEL_MAX CG_CHANNEL_MAX /* bytes of a channel name */
#define WSD_RX_KEEP 65536             /* assembly buffer kept between messages */
#define WSD_CLOSE_GRACE_S 5           /* a session we close is gone after this */
#define WSD_CLOSE_LIMIT 4429          /* rate or connection limit (PROTOCOLS.md) */
#define WSD_CONN_ID_MAX 160           /* "<instance_id>:<serial>" */
#define WSD_REGISTRY_TICK_MS 1000     /* how often a changed registry is handed over */
#define WSD_REGISTRY_REFRESH_MS 4000  /* an unchanged one (health, last_heartbeat) */

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
	cg_ws_claims claims;
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

	cg_buf rx;                  /* fragments of the message being received */
	int rx_binary;

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

/* Appends a reference to `m` to the session's queue and asks for WRITEABLE.
 * On overflow the session is closed with 1008. Returns 0 or -1 (dropped). */
static int
session_enqueue(wsd_session *s, wsd_msg *m)
{
	wsd_qent *e;

	if (s->close_code != 0)
		return -1;
	if ((long)s->sendq.count >= session_cfg(s)->ws_send_queue_max) {
		cg_log_warn("%s user %s: send queue full (%u messages), closing",
			    s->peer, session_user(s), s->sendq.count);
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
	lws_dll2_add_tail(&e->list, &s->sendq);
	lws_callback_on_writable(s->wsi);
	return 0;
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
session_free_queue(wsd_session *s)
{
	lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&s->sendq)) {
		wsd_qent *e = lws_container_of(d, wsd_qent, list);

		lws_dll2_remove(&e->list);
		wsd_msg_unref(e->msg);
		free(e);
	} lws_end_foreach_dll_safe(d, d1);
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

/* Verifies `token` and, when valid and the user is under its connection
 * limit, authenticates the session. Returns 0, or -1 after
 * session_close_now: 4401 when the token is bad (logged without the token),
 * 4429 when the user has ws_max_connections_per_user connections already. */
static int
session_authenticate(wsd_session *s, const char *token)
{
	const cg_config *cfg = session_cfg(s);
	wsd_limits *lim = &s->vhd->limits;
	json_object *o = NULL;
	char err[128];
	long n;
	int64_t now;

	if (cg_ws_token_verify(cfg->ws_jwt_secret, cfg->ws_jwt_issuer, token, cg_now(),
			       &s->claims, err, sizeof err) < 0) {
		memset(&s->claims, 0, sizeof s->claims);
		cg_log_warn("auth failed from %s: %s", s->peer, err);
		return session_close_now(s, 4401, "invalid token");
	}
	n = wsd_limits_user_count(lim, s->claims.tenant, s->claims.sub);
	if (n >= cfg->ws_max_connections_per_user) {
		cg_log_warn("%s user %s (tenant %s): refused, %ld connections already "
			    "(ws_max_connections_per_user %ld)", s->peer, s->claims.sub,
			    s->claims.tenant, n, cfg->ws_max_connections_per_user);
		return session_close_now(s, WSD_CLOSE_LIMIT, "too many connections for this user");
	}
	if (wsd_limits_user_add(lim, s->claims.tenant, s->claims.sub, 1) == 0)
		s->user_counted = 1;
	else
		cg_log_warn("%s user %s: connection not counted (out of memory)", s->peer,
			    s->claims.sub);
	s->authenticated = 1;
	atomic_fetch_add(&s->vhd->app->nconns, 1);
	lws_sul_cancel(&s->sul_auth);
	/* Subscribed to "activities" from the start: the seed server broadcast
	 * every activity to every connected client and existing clients rely on
	 * that. Clients may still unsubscribe and subscribe again. */
	s->sub_activities = 1;
	s->vhd->registry_dirty = 1;
	cg_log_info("%s authenticated as user %s (tenant %s, role %s, connection %s)", s->peer,
		    s->claims.sub, s->claims.tenant, s->claims.role, s->conn_id);

	o = json_object_new_object();
	if (o != NULL && cg_json_add_string(o, "type", "authenticated") == 0 &&
	    cg_json_add_string(o, "user_id", s->claims.sub) == 0 &&
	    cg_json_add_string(o, "device_token", s->claims.device_token) == 0)
		(void)session_send_json(s, o);
	json_object_put(o);

	now = cg_monotonic_ms();
	s->next_ping_ms = now + cfg->ws_ping_interval * 1000;
	session_beat_schedule(s, now);
	return 0;
}

/* ---- client messages ---------------------------------------------------- */

/* A handler returns 0 to keep the session, or -1 after session_close_now. */
typedef int (*wsd_handler)(wsd_session *s, json_object *msg);

static int
on_authenticate(wsd_session *s, json_object *msg)
{
	const char *token = NULL;

	if (s->authenticated) {
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
	return session_authenticate(s, token);
}

/* What a subscribe/unsubscribe message names. */
typedef enum { CHAN_ACTIVITIES, CHAN_TENANT, CHAN_CAPSULE } wsd_chan_kind;

/* Reads the channel of a subscribe/unsubscribe message into *channel and
 * *kind (*capsule_id for a capsule channel). Returns 0; 1 after an error
 * was queued (malformed or unknown name); -1 after session_close_now with
 * 4403 (a wildcard: no role may subscribe to several channels at once). */
static int
message_channel(wsd_session *s, json_object *msg, const char **channel, wsd_chan_kind *kind,
		const char **capsule_id)
{
	char text[WSD_CHANNEL_MAX + 32];

	*channel = NULL;
	*capsule_id = NULL;
	if (cg_json_get_string(msg, "channel", WSD_CHANNEL_MAX, channel) != CG_JSON_OK) {
		(void)session_send_error(s, "bad_message", "channel must be a string of at most 256 bytes");
		return 1;
	}
	if (strchr(*channel, '*') != NULL) {
		cg_log_warn("%s user %s: forbidden channel %s", s->peer, session_user(s), *channel);
		return session_close_now(s, WSD_CLOSE_FORBIDDEN, "forbidden channel");
	}
	if (strcmp(*channel, WSD_CHANNEL_ACTIVITIES) == 0) {
		*kind = CHAN_ACTIVITIES;
		return 0;
	}
	if (strcmp(*channel, CG_CHANNEL_TENANT) == 0) {
		*kind = CHAN_TENANT;
		return 0;
	}
	*capsule_id = cg_event_capsule_channel(*channel);
	if (*capsule_id != NULL) {
		*kind = CHAN_CAPSULE;
		return 0;
	}
	snprintf(text, sizeof text, "unknown channel: %s", *channel);
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

static int
on_subscribe(wsd_session *s, json_object *msg)
{
	const char *channel, *capsule_id;
	wsd_chan_kind kind = CHAN_ACTIVITIES;
	int rc = message_channel(s, msg, &channel, &kind, &capsule_id);

	if (rc != 0)
		return rc > 0 ? 0 : -1;
	if (kind == CHAN_ACTIVITIES)
		s->sub_activities = 1;
	else if (kind == CHAN_TENANT)
		s->sub_tenant = 1;
	else if (session_capsule_add(s, capsule_id) != 0)
		return 0;
	s->vhd->registry_dirty = 1;
	(void)session_send_channel(s, "subscribed", channel);
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

/* pong and ack: receiving them already refreshed liveness. Acks are accepted
 * and not yet used (delivery is at least once; resume comes from history). */
static int
on_quiet(wsd_session *s, json_object *msg)
{
	(void)s;
	(void)msg;
	return 0;
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
	{ "ack", 1, on_quiet },
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
	if (lws_is_first_fragment(s->wsi)) {
		cg_buf_reset(&s->rx);
		s->rx_binary = lws_frame_is_binary(s->wsi);
	}
	remaining = lws_remaining_packet_payload(s->wsi);
	if (s->rx.len + len > max || remaining > max - s->rx.len - len) {
		cg_log_warn("%s user %s: message larger than %zu bytes, closing",
			    s->peer, session_user(s), max);
		return session_close_now(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
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
	return 0;
}

/* ---- session life ------------------------------------------------------- */

static int
session_established(struct wsd_vhost *vhd, wsd_session *s, struct lws *wsi)
{
	const cg_config *cfg = vhd->app->cfg;
	char buf[WSD_TOKEN_MAX + 16];
	const char *token;

	long attempts;

	memset(s, 0, sizeof *s);
	s->wsi = wsi;
	s->vhd = vhd;
	s->established = 1;
	s->connected_at = cg_now();
	snprintf(s->conn_id, sizeof s->conn_id, "%s:%llu", cfg->instance_id, ++vhd->next_serial);
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

	/* last_event_id in the query is accepted and not used yet: resuming from
	 * history comes with the history itself. */
	token = lws_get_urlarg_by_name(wsi, "token=", buf, (int)sizeof buf);
	if (token != NULL && *token != '\0')
		return session_authenticate(s, token);
	lws_sul_schedule(vhd->ctx, 0, &s->sul_auth, session_auth_timeout_cb,
			 (lws_usec_t)cfg->ws_auth_timeout * LWS_US_PER_SEC);
	return 0;
}

static void
session_closed(wsd_session *s)
{
	if (!s->established)
		return;
	lws_sul_cancel(&s->sul_auth);
	lws_sul_cancel(&s->sul_beat);
	lws_dll2_remove(&s->list);
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

/* Sends one event to every session that subscribed to it and may see it;
 * the message is serialised once and shared. */
static void
vhost_fanout_one(struct wsd_vhost *vhd, json_object *ev)
{
	json_object *wm = NULL;
	wsd_msg *m = NULL;
	const char *text;
	int n = 0, ordered = event_is_ordered(ev);

	cg_log_set_context(cg_event_str(ev, "event_id"));
	wm = cg_event_ws_message(ev);
	if (wm == NULL) {
		cg_log_debug("event type %s is not sent over WebSocket", cg_event_str(ev, "type"));
		goto out;
	}
	text = cg_json_compact(wm);
	if (text == NULL)
		goto out;
	m = wsd_msg_new(text, strlen(text));
	if (m == NULL) {
		cg_log_error("out of memory for an event message");
		goto out;
	}
	lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&vhd->sessions)) {
		wsd_session *s = lws_container_of(d, wsd_session, list);

		if (s->authenticated && s->close_code == 0 && session_subscribed(s, ev) &&
		    cg_event_visible_to(ev, s->claims.tenant, s->claims.sub, s->claims.role) &&
		    session_admit_order(s, ev, ordered) && session_enqueue(s, m) == 0)
			n++;
	} lws_end_foreach_dll(d);
	cg_log_debug("event %s queued for %d session(s)", cg_event_str(ev, "type"), n);
out:
	wsd_msg_unref(m);
	json_object_put(wm);
	cg_log_set_context(NULL);
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
	    cg_json_add_string(o, "user_id", s->claims.sub) != 0 ||
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
		if (vhd != NULL)
			vhost_fanout(vhd);
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
	{ "capsule-gateway", wsd_callback, sizeof(wsd_session), 0, 0, NULL, 0 },
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

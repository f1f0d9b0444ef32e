#!/usr/bin/env bash
# webpush_delivery.sh: Web Push delivery by capsule-pushd (issue 6): browser subscriptions
# made with POST /api/v1/push/subscribe get each push event of their user (or of the
# whole tenant) from the fake push service (tests/tools/fake-webpush), encrypted (RFC 8291)
# with the notification JSON, TTL / Urgency / Topic per priority and VAPID (RFC 8292);
# answers 404/410 delete the subscription, 400/413 fail the delivery, 429 (Retry-After)
# and 500 are retried; a deliveries row per subscription; Web Push without APNs.
# Prints TAP. Every server is started on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin webpush_delivery

it_stack_up "stack starts (PostgreSQL, Redis, fake push service, capsule-pushd) behind $(stack_web)"

WP_LOG="$STACK_DIR/webpush-requests.jsonl"
WP_SUBS="$STACK_DIR/webpush-subs.jsonl"
WP_SCRIPT="$STACK_DIR/webpush-script.txt"
APNS_LOG="$STACK_DIR/apns-requests.jsonl"
FAKE="$BUILD_DIR/tests/tools/fake-webpush"
ORIGIN="https://127.0.0.1:$WEBPUSH_PORT"
VAPID_PUB=$(sed -n 's/^vapid_public_key = //p' "$STACK_DIR/keys/vapid.conf")
JSON=(-H 'Content-Type: application/json')

# script LINE...: the fake's per-path answers (replaced whole, atomically).
script() {
	printf '%s\n' "$@" >"$WP_SCRIPT.tmp" && mv "$WP_SCRIPT.tmp" "$WP_SCRIPT"
}

# newsubs NAME...: fresh subscriptions /push/NAME the fake knows (one atomic rewrite of
# its subscriptions file); the browser JSON of each goes to $T_DIR/NAME.json.
newsubs() {
	local n out
	cp "$WP_SUBS" "$WP_SUBS.tmp" || return 1
	for n in "$@"; do
		out=$("$FAKE" --make-subscription "/push/$n" --port "$WEBPUSH_PORT") || return 1
		printf '%s\n' "$out" | sed -n 1p >>"$WP_SUBS.tmp"
		printf '%s\n' "$out" | sed -n 2p >"$T_DIR/$n.json"
	done
	mv "$WP_SUBS.tmp" "$WP_SUBS"
}

# subscribe USER NAME [TENANT]: USER's browser subscribes /push/NAME through the API.
subscribe() {
	newsubs "$2" || return 1
	HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token "$1" "${3:-default}" viewer)")
	http POST /api/v1/push/subscribe "${JSON[@]}" --data-binary "@$T_DIR/$2.json"
	HTTP_AUTH=()
	[ "$H_STATUS" = 201 ] || { diag "subscribe $2 answered $H_STATUS: $H_BODY"; return 1; }
}

# subs_of USER [TENANT]: the endpoints GET /api/v1/push/subscriptions lists for USER.
subs_of() {
	HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token "$1" "${2:-default}" viewer)")
	http GET /api/v1/push/subscriptions
	HTTP_AUTH=()
	printf '%s' "$H_BODY" | jq -r '.subscriptions[].endpoint' | sed "s|^$ORIGIN/push/||" | sort | tr '\n' ' '
}

# push USER CAPSULE PRIORITY [TENANT]: an activity (USER "" = for the whole tenant).
push() {
	local u=""
	[ -n "$1" ] && u=",\"user_id\":\"$1\""
	HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token wpd-publisher "${4:-default}" publisher)")
	http POST /create-activity "${JSON[@]}" --data-binary \
		"{\"capsule_id\":\"$2\",\"title\":\"Title of $2\",\"message\":\"Body of $2\",\"priority\":\"$3\"$u}"
	HTTP_AUTH=()
	[ "$H_STATUS" = 201 ] || diag "create-activity $2 answered $H_STATUS: $H_BODY"
}

# event_of CAPSULE: the event id of the capsule's activity.created.
event_of() { sql "SELECT event_id FROM events WHERE capsule_id = '$1' AND type = 'activity.created'"; }

# reqs NAME [CAPSULE]: the fake's log lines for /push/NAME (for CAPSULE's message only).
reqs() {
	jq -c --arg p "/push/$1" --arg c "${2:-}" \
		'select(.path == $p) | select($c == "" or ((.plaintext // "{}") | fromjson | .tag) == $c)' "$WP_LOG"
}
nreqs() { reqs "$@" | wc -l; }
nreqs_is() { [ "$(nreqs "$1" "${2:-}")" = "$3" ]; }

# wrow CAPSULE NAME: status/attempts/provider_status of the Web Push delivery.
wrow() {
	sql "SELECT d.status || '/' || d.attempts || '/' || coalesce(d.provider_status::text, '')
	       FROM deliveries d WHERE d.channel = 'webpush' AND d.target = '$ORIGIN/push/$2'
	        AND d.event_id = (SELECT event_id FROM events WHERE capsule_id = '$1' AND type = 'activity.created')"
}
wrow_is() { [ "$(wrow "$1" "$2")" = "$3" ]; }

# topic CAPSULE: the Topic the gateway sends (base64url of SHA-256(capsule)[0..24)).
topic() { printf '%s' "$1" | openssl dgst -sha256 -binary | head -c 24 | b64url; }

sub_id() { sql "SELECT id FROM push_subscriptions WHERE endpoint = '$ORIGIN/push/$1'"; }

# --- subscriptions -------------------------------------------------------------------
ok=0
subscribe wpd-alice wp-a1 || ok=1
subscribe wpd-alice wp-a2 || ok=1
subscribe wpd-bob wp-b1 || ok=1
subscribe wpd-carol wp-c1 acme || ok=1
t_result $ok "four browsers subscribe through POST /api/v1/push/subscribe (alice 2, bob 1, acme's carol 1)"
is "$(subs_of wpd-alice)" "wp-a1 wp-a2 " "GET /api/v1/push/subscriptions lists alice's two"

# --- a user's event -------------------------------------------------------------------
push wpd-alice cap-wpd-1 high
EV1=$(event_of cap-wpd-1)
wait_for 15 sh -c "[ \"\$(jq -c 'select(.path == \"/push/wp-a1\" or .path == \"/push/wp-a2\") | select(.status == 201)' '$WP_LOG' | wc -l)\" -ge 2 ]"
is "$(nreqs wp-a1)/$(nreqs wp-a2)" "1/1" "alice's event reaches each of her two subscriptions once"
R=$(reqs wp-a1 | head -n 1)
is "$(printf '%s' "$R" | jq -r '[.method, .status, .content_encoding] | map(tostring) | join(" ")')" "POST 201 aes128gcm" \
	"... a POST the push service accepts (201), Content-Encoding aes128gcm"
P=$(printf '%s' "$R" | jq -r '.plaintext // empty')
is "$(printf '%s' "$P" | jq -r '[.title, .body, .tag] | join("|")' 2>/dev/null)" "Title of cap-wpd-1|Body of cap-wpd-1|cap-wpd-1" \
	"... decrypted, it is the notification JSON: title, body, tag = the capsule"
is "$(printf '%s' "$P" | jq -r '[.data.event_id, .data.capsule_id, .data.type, .data.priority, .renotify] | map(tostring) | join("|")' 2>/dev/null)" \
	"$EV1|cap-wpd-1|activity.created|high|true" "... with data (event id, capsule, type, priority) and renotify for a new activity"
is "$(printf '%s' "$R" | jq -r '[.ttl, .urgency, .topic] | map(tostring) | join(" ")')" "86400 high $(topic cap-wpd-1)" \
	"... high priority: TTL 86400, Urgency high, Topic from the capsule"
is "$(printf '%s' "$R" | jq -r '[.vapid.aud, .vapid.sub, .vapid.k] | join(" ")')" "$ORIGIN mailto:ops@capsule.test $VAPID_PUB" \
	"... VAPID: aud = the push service's origin, sub = vapid_subject, k = the gateway's public key"
EXP=$(printf '%s' "$R" | jq -r '.vapid.exp')
NOW=$(date +%s)
[ "$EXP" -gt "$((NOW + 11 * 3600))" ] && [ "$EXP" -le "$((NOW + 12 * 3600 + 60))" ]
t_result $? "... and its JWT expires in about 12 hours ($((EXP - NOW)) s)"
is "$(nreqs wp-b1)/$(nreqs wp-c1)" "0/0" "... bob's and another tenant's subscriptions get nothing"
wait_for 10 wrow_is cap-wpd-1 wp-a1 "sent/1/201"
is "$(wrow cap-wpd-1 wp-a1)/$(wrow cap-wpd-1 wp-a2)" "sent/1/201/sent/1/201" "a deliveries row each: sent, 1 attempt, provider status 201"
is "$(sql "SELECT string_agg(push_type || ',' || (subscription_id = (SELECT id FROM push_subscriptions WHERE endpoint = d.target))::text
            || ',' || (device_id IS NULL)::text || ',' || (apns_id IS NULL)::text || ',' || (sent_at IS NOT NULL)::text, ' ')
            FROM deliveries d WHERE channel = 'webpush' AND event_id = '$EV1'")" "webpush,true,true,true,true webpush,true,true,true,true" \
	"... channel and push_type webpush, the subscription's id, no device, no apns-id, sent_at set"

# --- priorities ------------------------------------------------------------------------
push wpd-bob cap-wpd-low low
push wpd-bob cap-wpd-med medium
push wpd-bob cap-wpd-crit critical
wait_for 15 sh -c "[ \"\$(jq -c 'select(.path == \"/push/wp-b1\" and .status == 201)' '$WP_LOG' | wc -l)\" -ge 3 ]"
is "$(reqs wp-b1 cap-wpd-low | jq -r '[.ttl, .urgency] | map(tostring) | join(" ")')" "3600 low" "low priority: TTL 3600, Urgency low"
is "$(reqs wp-b1 cap-wpd-med | jq -r '[.ttl, .urgency] | map(tostring) | join(" ")')" "86400 normal" "medium: TTL 86400, Urgency normal"
is "$(reqs wp-b1 cap-wpd-crit | jq -r '[.ttl, .urgency, (.plaintext | fromjson | .requireInteraction)] | map(tostring) | join(" ")')" \
	"86400 high true" "critical: Urgency high and requireInteraction"
is "$(nreqs wp-a1)/$(nreqs wp-c1)" "1/0" "bob's events reach nobody else"

# --- the whole tenant, another tenant -----------------------------------------------------
push "" cap-wpd-all medium
wait_for 15 sh -c "[ \"\$(jq -c 'select(.status == 201 and (.plaintext | fromjson | .tag) == \"cap-wpd-all\")' '$WP_LOG' | wc -l)\" -ge 3 ]"
sleep 1
is "$(nreqs wp-a1 cap-wpd-all)/$(nreqs wp-a2 cap-wpd-all)/$(nreqs wp-b1 cap-wpd-all)/$(nreqs wp-c1 cap-wpd-all)" "1/1/1/0" \
	"an event for the whole tenant reaches each of its subscriptions, not another tenant's"
push wpd-carol cap-wpd-acme high acme
wait_for 15 nreqs_is wp-c1 cap-wpd-acme 1
is "$(nreqs wp-c1 cap-wpd-acme)/$(reqs wp-c1 cap-wpd-acme | jq -r .status)" "1/201" "acme's event reaches carol's subscription"
is "$(sql "SELECT tenant_id FROM deliveries WHERE channel = 'webpush' AND target = '$ORIGIN/push/wp-c1'")" acme \
	"... its deliveries row is acme's"

# --- the push service's answers -------------------------------------------------------------
subscribe wpd-gone wp-g410 || diag "subscribe failed"
subscribe wpd-gone wp-g404 || diag "subscribe failed"
subscribe wpd-gone wp-keep || diag "subscribe failed"
subscribe wpd-slow wp-r429 || diag "subscribe failed"
subscribe wpd-flaky wp-f500 || diag "subscribe failed"
subscribe wpd-bad wp-d400 || diag "subscribe failed"
subscribe wpd-big wp-d413 || diag "subscribe failed"
ID410=$(sub_id wp-g410)
ID404=$(sub_id wp-g404)
script "/push/wp-g410 410" "/push/wp-g404 404" "/push/wp-r429 429 1 1" "/push/wp-f500 500 2" \
	"/push/wp-d400 400" "/push/wp-d413 413"
push wpd-gone cap-wpd-gone high
push wpd-slow cap-wpd-slow high
push wpd-flaky cap-wpd-flaky high
push wpd-bad cap-wpd-bad high
push wpd-big cap-wpd-big high

wait_for 15 wrow_is cap-wpd-gone wp-g410 "deactivated/1/410"
is "$(wrow cap-wpd-gone wp-g410)" "deactivated/1/410" "410 Gone: the delivery is deactivated with the status"
wait_for 10 sh -c "[ -z \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT id FROM push_subscriptions WHERE id = $ID410\")\" ]"
is "$(sql "SELECT count(*) FROM push_subscriptions WHERE id = $ID410")" 0 "... and the subscription is deleted"
wait_for 15 wrow_is cap-wpd-gone wp-g404 "deactivated/1/404"
is "$(wrow cap-wpd-gone wp-g404)" "deactivated/1/404" "404: the delivery is deactivated"
wait_for 10 sh -c "[ -z \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT id FROM push_subscriptions WHERE id = $ID404\")\" ]"
is "$(sql "SELECT count(*) FROM push_subscriptions WHERE id = $ID404")" 0 "... and the subscription is deleted"
is "$(subs_of wpd-gone)" "wp-keep " "GET /api/v1/push/subscriptions lists only the user's live one"
is "$(wrow cap-wpd-gone wp-keep)" "sent/1/201" "... which got the same event"
is "$(sql "SELECT subscription_id FROM deliveries WHERE channel = 'webpush' AND target = '$ORIGIN/push/wp-g410'")" "$ID410" \
	"the deliveries row keeps the deleted subscription's id"

wait_for 15 wrow_is cap-wpd-slow wp-r429 "sent/2/201"
is "$(wrow cap-wpd-slow wp-r429)" "sent/2/201" "429 with Retry-After 1, then accepted: sent after 2 attempts"
T=$(reqs wp-r429 | jq -r .time | tr '\n' ' ')
is "$(reqs wp-r429 | jq -r '.status' | tr '\n' ' ')" "429 201 " "... the fake saw 429 then 201"
awk -v a="${T%% *}" -v b="$(echo "$T" | awk '{print $2}')" 'BEGIN { exit !(b - a >= 0.99) }'
t_result $? "... the retry waited the Retry-After second ($(awk -v t="$T" 'BEGIN { split(t, x, " "); printf "%.3f", x[2] - x[1] }') s)"

wait_for 20 wrow_is cap-wpd-flaky wp-f500 "sent/3/201"
is "$(wrow cap-wpd-flaky wp-f500)" "sent/3/201" "500 twice, then 201: sent after 3 attempts"
is "$(reqs wp-f500 | jq -r '.status' | tr '\n' ' ')" "500 500 201 " "... the fake saw 500, 500, 201"
is "$(reqs wp-f500 | jq -r '.plaintext | fromjson | .data.event_id' | sort -u | wc -l)" 1 "... the same message each time"

wait_for 15 wrow_is cap-wpd-bad wp-d400 "failed/1/400"
is "$(wrow cap-wpd-bad wp-d400)" "failed/1/400" "400: failed at once (not retried)"
is "$(subs_of wpd-bad)" "wp-d400 " "... and the subscription is kept"
wait_for 15 wrow_is cap-wpd-big wp-d413 "failed/1/413"
is "$(wrow cap-wpd-big wp-d413)" "failed/1/413" "413: failed at once"
is "$(subs_of wpd-big)" "wp-d413 " "... and the subscription is kept"
is "$(nreqs wp-d400)/$(nreqs wp-d413)" "1/1" "... each tried once"

# --- admin retries -----------------------------------------------------------------------------
ADMIN=(-H "Authorization: Bearer $(bearer_token wpd-admin default admin)")
script ""
retry() { # DELIVERY-ID
	HTTP_AUTH=("${ADMIN[@]}")
	http POST "/api/v1/admin/deliveries/$1/retry" -H 'Content-Length: 0'
	HTTP_AUTH=()
}
retry "$(sql "SELECT id FROM deliveries WHERE channel = 'webpush' AND target = '$ORIGIN/push/wp-d400'")"
is "$H_STATUS/$(jqr .delivery.status)" "202/retry_requested" "an admin retries the failed Web Push delivery (202)"
wait_for 15 wrow_is cap-wpd-bad wp-d400 "sent/2/201"
is "$(wrow cap-wpd-bad wp-d400)" "sent/2/201" "... capsule-pushd sends it again: sent, 2 attempts in all"
is "$(reqs wp-d400 | jq -r .status | tr '\n' ' ')" "400 201 " "... the fake saw 400, then 201"
HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token wpd-big default viewer)")
http DELETE /api/v1/push/subscribe "${JSON[@]}" --data-binary "{\"endpoint\":\"$ORIGIN/push/wp-d413\"}"
HTTP_AUTH=()
is "$H_STATUS" 200 "the user unsubscribes the other failed one"
retry "$(sql "SELECT id FROM deliveries WHERE channel = 'webpush' AND target = '$ORIGIN/push/wp-d413'")"
is "$H_STATUS" 202 "... an admin retries its delivery (202)"
wait_for 15 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT provider_reason FROM deliveries WHERE target = '$ORIGIN/push/wp-d413'\")\" = 'subscription gone' ]"
is "$(sql "SELECT status || '/' || attempts || '/' || provider_reason FROM deliveries WHERE target = '$ORIGIN/push/wp-d413'")" \
	"failed/1/subscription gone" "... capsule-pushd marks it failed: subscription gone"
is "$(nreqs wp-d413)" 1 "... and pushes nothing"

# A subscription whose stored keys cannot work (p256dh not a point on the curve) is deleted
# without a request.
sql "INSERT INTO push_subscriptions (tenant_id, user_id, endpoint, p256dh, auth)
     VALUES ('default', 'wpd-badkeys', '$ORIGIN/push/wp-badkeys', 'B$(printf 'A%.0s' $(seq 1 86))', 'AAAAAAAAAAAAAAAAAAAAAA')" >/dev/null
IDBK=$(sub_id wp-badkeys)
push wpd-badkeys cap-wpd-badkeys high
wait_for 15 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT status || '/' || attempts || '/' || coalesce(provider_reason, '') FROM deliveries WHERE subscription_id = $IDBK\")\" = 'deactivated/0/bad keys' ]"
is "$(sql "SELECT status || '/' || attempts || '/' || coalesce(provider_reason, '') FROM deliveries WHERE subscription_id = $IDBK")" \
	"deactivated/0/bad keys" "stored keys that do not parse: deactivated, reason 'bad keys', no attempt"
is "$(sql "SELECT count(*) FROM push_subscriptions WHERE id = $IDBK")/$(nreqs wp-badkeys)" "0/0" "... the subscription is deleted, nothing sent"

# --- VAPID JWT reuse, rows --------------------------------------------------------------------
SPAN=$(jq -s '[.[] | select(.status == 201) | .time] | (max - min)' "$WP_LOG")
is "$(jq -r 'select(.status == 201) | .vapid.exp' "$WP_LOG" | sort -u | wc -l)" 1 \
	"one VAPID JWT (same exp) for every push to the origin over $SPAN s: it is cached, not re-signed"
is "$(sql "SELECT count(*) FROM deliveries WHERE channel = 'webpush'")" \
	"$(($(jq -s '[.[] | .path + " " + ((.plaintext // "{}") | fromjson | .data.event_id // "")] | unique | length' "$WP_LOG") + 1))" \
	"a deliveries row per subscription and event (each pair the fake saw, plus the bad-keys one)"
is "$(sql "SELECT count(*) FROM deliveries WHERE channel = 'webpush' AND status = 'pending'")" 0 "... none left pending"

# --- 50 subscriptions ------------------------------------------------------------------------
N=50
names=()
for i in $(seq 1 $N); do names+=("wp-many-$i"); done
newsubs "${names[@]}"
for n in "${names[@]}"; do
	jq -r --arg u wpd-many '"(\(["default", $u, .endpoint, .keys.p256dh, .keys.auth] | map("'"'"'" + . + "'"'"'") | join(", ")))"' "$T_DIR/$n.json"
done | paste -sd, >"$T_DIR/many.values"
sql "INSERT INTO push_subscriptions (tenant_id, user_id, endpoint, p256dh, auth) VALUES $(cat "$T_DIR/many.values")" >/dev/null
is "$(sql "SELECT count(*) FROM push_subscriptions WHERE user_id = 'wpd-many'")" $N "$N subscriptions for one user"
t0=$(date +%s.%N)
push wpd-many cap-wpd-many high
wait_for 30 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT count(*) FROM deliveries WHERE channel = 'webpush' AND status = 'sent' AND target LIKE '%/push/wp-many-%'\")\" = $N ]"
t_result $? "an event to $N subscriptions: every row sent ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
is "$(jq -r 'select(.status == 201 and (.path | startswith("/push/wp-many-"))) | .path' "$WP_LOG" | sort -u | wc -l)" $N \
	"... the fake accepted one message for each"
wait_for 10 sh -c "[ \"\$(redis-cli -p $REDIS_PORT XPENDING cg:events capsule-pushd | head -n 1)\" = 0 ]"
t_result $? "every event is acknowledged once its rows are final"

# --- Web Push without APNs ---------------------------------------------------------------------
stack_stop capsule-pushd
grep -v '^[[:space:]]*apns_' "$CAPSULE_CONFIG" >"$STACK_DIR/no-apns.conf"
T_DEV=$(openssl rand -hex 32)
sql "INSERT INTO devices (tenant_id, user_id, platform, device_token) VALUES ('default', 'wpd-alice', 'ios', '$T_DEV')" >/dev/null
redis-cli -p "$REDIS_PORT" DEL cg:pushd:apns >/dev/null
CAPSULE_CONFIG="$STACK_DIR/no-apns.conf" stack_start_pushd 2>/dev/null
push wpd-alice cap-wpd-noapns high
wait_for 15 wrow_is cap-wpd-noapns wp-a1 "sent/1/201"
is "$(wrow cap-wpd-noapns wp-a1)/$(wrow cap-wpd-noapns wp-a2)" "sent/1/201/sent/1/201" \
	"APNs not configured: Web Push still delivers"
is "$(jq -r --arg t "$T_DEV" 'select(.device_token == $t)' "$APNS_LOG" | wc -l)/$(sql "SELECT count(*) FROM deliveries WHERE channel = 'apns' AND event_id = '$(event_of cap-wpd-noapns)'")" \
	"0/0" "... and nothing goes to APNs (no request, no apns row)"
wait_for 10 sh -c "[ \"\$(redis-cli -p $REDIS_PORT GET cg:pushd:apns)\" = not_configured ]"
is "$(redis-cli -p "$REDIS_PORT" GET cg:pushd:apns)" not_configured "... and the APNs state is not_configured"
http GET /health
is "$(jqr .apns)" not_configured "... as /health shows"

# --- logs ----------------------------------------------------------------------------------------
sanitizer_clean "$STACK_DIR"/capsule-pushd.log "$STACK_DIR"/fcgi.log
t_result $? "no sanitizer report in capsule-pushd or the FastCGI log"
is "$(grep -c 'postgresql.*recording push outcomes\|claiming deliveries' "$STACK_DIR/capsule-pushd.log")" 0 \
	"capsule-pushd logged no database error"
grep -q "webpush: .*wp-g410.* is gone: 410" "$STACK_DIR/capsule-pushd.log"
t_result $? "the log names a gone subscription by its endpoint's origin and path start"

t_done

#!/usr/bin/env bash
# liveactivity.sh: APNs push types and Live Activities (issue 6): alert vs background device
# pushes (apns-push-type, apns-priority, apns-topic, payload, configured apns-expiration),
# Live Activity update/end pushes to the activity's push token instead of the device push,
# 410 on a Live Activity token (only that token is deactivated; the 410 timestamp race),
# push-to-start of a new critical activity (PUSH_TO_START_CRITICAL on and off, the
# configured attributes type, 410 clearing the push-to-start token), an admin retry of an
# older Live Activity update (its timestamp stays older), and the deliveries rows' push_type.
# Every request is checked by tests/tools/fake-apns against PUSH.md A3-A5 (topic suffix,
# priorities, liveactivity payload members). Prints TAP. Every server runs on 127.0.0.1 in a
# temporary folder and is stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin liveactivity

# The environment wins over the config file for every process started from here.
export PUSH_EXPIRATION_LOW=120
it_stack_up "stack starts (PostgreSQL, Redis, fake APNs, capsule-pushd) behind $(stack_web)"

LOG="$STACK_DIR/apns-requests.jsonl"
SCRIPT="$STACK_DIR/apns-script.txt"
BUNDLE=$STACK_APNS_BUNDLE_ID
PUB=(-H "Authorization: Bearer $(bearer_token la-publisher default publisher)")
OPS=(-H "Authorization: Bearer $(bearer_token la-operator default operator)")
ADMIN=(-H "Authorization: Bearer $(bearer_token la-admin default admin)")
JSON=(-H 'Content-Type: application/json')

script() { printf '%s\n' "$@" >"$SCRIPT.tmp" && mv "$SCRIPT.tmp" "$SCRIPT"; }

# device USER TOKEN: an active iOS device; prints its id.
device() {
	sql "INSERT INTO devices (tenant_id, user_id, platform, device_token) VALUES ('default', '$1', 'ios', '$2') RETURNING id"
}

# create USER CAPSULE PRIORITY: an activity for USER.
create() {
	HTTP_AUTH=("${PUB[@]}")
	http POST /create-activity "${JSON[@]}" --data-binary \
		"{\"capsule_id\":\"$2\",\"title\":\"LA test $2\",\"message\":\"Door $2 opened\",\"priority\":\"$3\",\"user_id\":\"$1\"}"
	HTTP_AUTH=()
	[ "$H_STATUS" = 201 ] || diag "create-activity $2 answered $H_STATUS: $H_BODY"
}

# update CAPSULE JSON-MEMBERS: PUT /update.
update() {
	HTTP_AUTH=("${OPS[@]}")
	http PUT /update "${JSON[@]}" --data-binary "{\"capsule_id\":\"$1\",$2}"
	HTTP_AUTH=()
	[ "$H_STATUS" = 200 ] || diag "update $1 answered $H_STATUS: $H_BODY"
}

# la_token USER CAPSULE DEVICE_ID TOKEN: POST .../live-activity-tokens as USER.
la_token() {
	HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token "$1" default viewer)")
	http POST "/api/v1/activities/$2/live-activity-tokens" "${JSON[@]}" \
		--data-binary "{\"device_id\":\"$3\",\"push_token\":\"$4\"}"
	HTTP_AUTH=()
}

# last_event CAPSULE: the event id of the activity's newest event.
last_event() { sql "SELECT event_id FROM events WHERE capsule_id = '$1' ORDER BY version DESC, id DESC LIMIT 1"; }

# reqs TOKEN EVENT_ID: the fake's logged requests to TOKEN for that event (one JSON a line).
reqs() {
	jq -c --arg t "$1" --arg e "$2" \
		'select(.device_token == $t and (.body | type) == "object" and .body.event_id == $e)' "$LOG"
}
nreqs() { reqs "$1" "$2" | wc -l; }
has_req() { [ "$(nreqs "$1" "$2")" -ge 1 ]; }
# req TOKEN EVENT_ID FILTER: jq -r FILTER on the last such request.
req() { reqs "$1" "$2" | tail -n 1 | jq -r "$3"; }
# hdrs: "push-type/topic/priority" of a request.
HDRS='[.headers["apns-push-type"], .headers["apns-topic"], .headers["apns-priority"], (.status | tostring)] | join("/")'

# row EVENT_ID DEVICE_ID: push_type/status/target prefix of the deliveries of a pair.
row() {
	sql "SELECT string_agg(push_type || '/' || status || '/' || left(target, 8), ',' ORDER BY id)
	       FROM deliveries WHERE event_id = '$1' AND device_id = $2"
}
row_is() { [ "$(row "$1" "$2")" = "$3" ]; }
# row_check EVENT_ID DEVICE_ID WANT DESCRIPTION: waits for the pair's rows to read WANT; checks.
row_check() { wait_for 15 row_is "$1" "$2" "$3"; is "$(row "$1" "$2")" "$3" "$4"; }
# pushed CAPSULE TOKEN: EV = the activity's newest event, once TOKEN got a push for it.
pushed() { EV=$(last_event "$1"); wait_for 15 has_req "$2" "$EV"; }
idle() { [ "$(redis-cli -p "$REDIS_PORT" XPENDING cg:events capsule-pushd | head -n 1)" = 0 ]; }

tok() { openssl rand -hex 32; }
epoch() { date -u -d "$1" +%s; }

# --- alert vs background ---------------------------------------------------------------
TA=$(tok); TA2=$(tok)
DA=$(device la-a "$TA")
t0=$(date +%s)
create la-a cap-la-low low
pushed cap-la-low "$TA"
t1=$(date +%s)
is "$(req "$TA" "$EV" "$HDRS")" "alert/$BUNDLE/5/200" \
	"activity.created (low): alert push, topic the bundle id, priority 5 (low)"
is "$(req "$TA" "$EV" '[.body.aps.alert.title, .body.aps["interruption-level"], .body.capsule_id] | join("/")')" \
	"LA test cap-la-low/passive/cap-la-low" "... its payload is the alert (title, interruption level, capsule_id)"
EXP=$(req "$TA" "$EV" '.headers["apns-expiration"]')
[ "$EXP" -ge $((t0 + 120)) ] && [ "$EXP" -le $((t1 + 121)) ]
t_result $? "... apns-expiration is now + PUSH_EXPIRATION_LOW (120 s from the environment): $EXP in [$((t0 + 120)), $((t1 + 121))]"
row_check "$EV" "$DA" "alert/sent/${TA:0:8}" "... its deliveries row: push_type alert, sent"

update cap-la-low '"state":"investigating"'
pushed cap-la-low "$TA"
is "$(req "$TA" "$EV" "$HDRS")" "background/$BUNDLE/5/200" \
	"activity.updated (low, not final): background push, topic the bundle id, priority 5"
is "$(req "$TA" "$EV" '[.body.aps["content-available"], (.body.aps | has("alert")), (.body.aps | has("sound")), .body.state, .body.type] | map(tostring) | join("/")')" \
	"1/false/false/investigating/activity.updated" "... payload: content-available 1, no alert or sound, the new state"
EXP=$(req "$TA" "$EV" '.headers["apns-expiration"]')
[ "$EXP" -ge $((t0 + 120)) ] && [ "$EXP" -le $(($(date +%s) + 121)) ]
t_result $? "... apns-expiration of a low background push is the configured one too"
row_check "$EV" "$DA" "background/sent/${TA:0:8}" "... its deliveries row: push_type background"

update cap-la-low '"priority":"high"'
pushed cap-la-low "$TA"
is "$(req "$TA" "$EV" "$HDRS")" "alert/$BUNDLE/10/200" "activity.updated to high priority: alert push, priority 10"
row_check "$EV" "$DA" "alert/sent/${TA:0:8}" "... push_type alert"

create la-a cap-la-med medium
update cap-la-med '"message":"still looking"'
pushed cap-la-med "$TA"
is "$(req "$TA" "$EV" '.headers["apns-push-type"]')" background "activity.updated (medium): background"
update cap-la-med '"state":"resolved","resolution":"fixed"'
pushed cap-la-med "$TA"
is "$(req "$TA" "$EV" "$HDRS")" "alert/$BUNDLE/10/200" "activity.updated to a final state (medium, resolved): alert push"

# --- Live Activity update and end --------------------------------------------------------
TB=$(tok); TB2=$(tok); LB=$(tok)
DB=$(device la-b "$TB")
DB2=$(device la-b "$TB2")
create la-b cap-la-b medium
pushed cap-la-b "$TB"
la_token la-b cap-la-b "$DB" "$LB"
is "$H_STATUS/$(jqr .live_activity_token.active)" "201/true" "Live Activity token attached to cap-la-b for one device"
wait_for 10 idle
update cap-la-b '"message":"Door cap-la-b closed again"'
pushed cap-la-b "$LB"
is "$(req "$LB" "$EV" "$HDRS")" "liveactivity/$BUNDLE.push-type.liveactivity/5/200" \
	"activity.updated: liveactivity push to the Live Activity token, topic <bundle>.push-type.liveactivity, priority 5 (medium)"
is "$(req "$LB" "$EV" '[.body.aps.event, .body.aps["content-state"].state, .body.aps["content-state"].message, .body.aps["content-state"].priority, (.body.aps["stale-date"] | type), (.body.aps | has("alert")), .body.capsule_id] | map(tostring) | join("/")')" \
	"update/active/Door cap-la-b closed again/medium/number/false/cap-la-b" \
	"... payload: event update, content-state (state, message, priority), stale-date, no alert (medium)"
TS=$(req "$LB" "$EV" '.body.aps.timestamp')
UA=$(req "$LB" "$EV" '.body.aps["content-state"].updated_at')
is "$TS" "$(epoch "$UA")" "... aps.timestamp is the activity's updated_at ($UA), so an older version never wins"
wait_for 10 idle
is "$(nreqs "$TB" "$EV")" 0 "... and that device gets no alert/background push for the same event"
is "$(req "$TB2" "$EV" '.headers["apns-push-type"]')" background "... its other device (no Live Activity token) gets the background push"
is "$(row "$EV" "$DB")/$(row "$EV" "$DB2")" "liveactivity/sent/${LB:0:8}/background/sent/${TB2:0:8}" \
	"... deliveries: liveactivity (target the Live Activity token) and background"

update cap-la-b '"priority":"critical","message":"Intruder"'
pushed cap-la-b "$LB"
is "$(req "$LB" "$EV" "$HDRS")/$(req "$LB" "$EV" '.body.aps.alert.title | type')" \
	"liveactivity/$BUNDLE.push-type.liveactivity/10/200/string" "a critical update: liveactivity priority 10 with an alert"
wait_for 10 idle
is "$(nreqs "$TB" "$EV")" 0 "... still no separate alert to that device"
is "$(req "$TB2" "$EV" '.headers["apns-push-type"]')" alert "... the other device gets the alert"

update cap-la-b '"state":"resolved","resolution":"all clear"'
pushed cap-la-b "$LB"
is "$(req "$LB" "$EV" '[.body.aps.event, .body.aps["content-state"].state, (.body.aps["dismissal-date"] | type), .headers["apns-push-type"], .status] | map(tostring) | join("/")')" \
	"end/resolved/number/liveactivity/200" "the move to resolved: event end with the final content-state and a dismissal-date"
wait_for 10 idle
is "$(nreqs "$TB" "$EV")" 0 "... and no alert to that device"
is "$(row "$EV" "$DB")" "liveactivity/sent/${LB:0:8}" "... deliveries row liveactivity"

# --- 410 on a Live Activity token: only that token; the timestamp race ----------------------
TC=$(tok); LC=$(tok)
DC=$(device la-c "$TC")
create la-c cap-la-c medium
wait_for 15 has_req "$TC" "$(last_event cap-la-c)"
la_token la-c cap-la-c "$DC" "$LC"
script "$LC 410 Unregistered 1 ts=-60000"
wait_for 10 idle
update cap-la-c '"message":"m1"'
EV=$(last_event cap-la-c)
row_check "$EV" "$DC" "liveactivity/deactivated/${LC:0:8}" "410 (timestamp a minute old) on a Live Activity push: row deactivated"
is "$(sql "SELECT active FROM live_activity_tokens WHERE push_token = '$LC'")" t \
	"... but the token, registered after APNs' timestamp, stays active (410 timestamp race)"
script "$LC 410 Unregistered 1"
update cap-la-c '"message":"m2"'
EV=$(last_event cap-la-c)
row_check "$EV" "$DC" "liveactivity/deactivated/${LC:0:8}" "410 (timestamp now) on a Live Activity push: row deactivated"
is "$(sql "SELECT active FROM live_activity_tokens WHERE push_token = '$LC'")" f "... the Live Activity token is deactivated"
is "$(sql "SELECT active FROM devices WHERE id = $DC")" t "... its device is not"
update cap-la-c '"priority":"high"'
pushed cap-la-c "$TC"
is "$(req "$TC" "$EV" "$HDRS")" "alert/$BUNDLE/10/200" "the next event reaches the device as a normal alert"
is "$(nreqs "$LC" "$EV")" 0 "... and nothing goes to the dead Live Activity token"
la_token la-c cap-la-c "$DC" "$LC"
is "$H_STATUS/$(jqr .live_activity_token.active)" "200/true" "the app registers the token again: active"
update cap-la-c '"message":"m3"'
pushed cap-la-c "$LC"
is "$(req "$LC" "$EV" '.body.aps.event + "/" + (.status | tostring)')" "update/200" "... and gets Live Activity pushes again"

# --- an admin retry of an older update keeps its older timestamp -----------------------------
script "$LC 400 BadCollapseId 1"
update cap-la-c '"message":"older"'
EV_OLD=$(last_event cap-la-c)
row_check "$EV_OLD" "$DC" "liveactivity/failed/${LC:0:8}" "a Live Activity push refused (400): failed"
sleep 1.2
update cap-la-c '"message":"newer"'
EV_NEW=$(last_event cap-la-c)
wait_for 15 row_is "$EV_NEW" "$DC" "liveactivity/sent/${LC:0:8}"
ID_OLD=$(sql "SELECT id FROM deliveries WHERE event_id = '$EV_OLD' AND device_id = $DC")
HTTP_AUTH=("${ADMIN[@]}")
http POST "/api/v1/admin/deliveries/$ID_OLD/retry" -H 'Content-Length: 0'
HTTP_AUTH=()
is "$H_STATUS" 202 "an admin retries the older update after the newer one was sent"
row_check "$EV_OLD" "$DC" "liveactivity/sent/${LC:0:8}" "... resent as a Live Activity push to the token"
T_OLD=$(reqs "$LC" "$EV_OLD" | jq -r 'select(.status == 200) | .body.aps.timestamp')
T_NEW=$(req "$LC" "$EV_NEW" '.body.aps.timestamp')
[ -n "$T_OLD" ] && [ "$T_OLD" -lt "$T_NEW" ]
t_result $? "... with its own, older timestamp ($T_OLD < $T_NEW): ActivityKit keeps the newer state"
is "$(reqs "$LC" "$EV_OLD" | jq -r .apns_id | sort -u | wc -l)" 1 "... and the same apns-id as its first attempt"

# --- push-to-start ----------------------------------------------------------------------
TE=$(tok); PE=$(tok)
DE=$(device la-e "$TE")
HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token la-e default viewer)")
http PUT "/api/v1/devices/$DE/push-to-start-token" "${JSON[@]}" --data-binary "{\"push_to_start_token\":\"$PE\"}"
HTTP_AUTH=()
is "$H_STATUS" 200 "push-to-start token registered"
create la-e cap-la-e1 critical
pushed cap-la-e1 "$TE"
is "$(req "$TE" "$EV" "$HDRS")" "alert/$BUNDLE/10/200" "PUSH_TO_START_CRITICAL false: a new critical activity is a normal alert"
wait_for 10 idle
is "$(nreqs "$PE" "$EV")" 0 "... and nothing goes to the push-to-start token"

stack_stop capsule-pushd
export PUSH_TO_START_CRITICAL=true LIVE_ACTIVITY_ATTRIBUTES_TYPE=TestAttributes
stack_start_pushd 2>/dev/null
unset PUSH_TO_START_CRITICAL LIVE_ACTIVITY_ATTRIBUTES_TYPE
create la-e cap-la-e2 critical
EV=$(last_event cap-la-e2)
wait_for 20 has_req "$PE" "$EV"
is "$(req "$PE" "$EV" "$HDRS")" "liveactivity/$BUNDLE.push-type.liveactivity/10/200" \
	"PUSH_TO_START_CRITICAL true: a new critical activity starts a Live Activity (push-to-start token, priority 10)"
is "$(req "$PE" "$EV" '[.body.aps.event, .body.aps["attributes-type"], .body.aps.attributes.capsule_id, (.body.aps.alert.title | type), .body.aps["content-state"].state] | map(tostring) | join("/")')" \
	"start/TestAttributes/cap-la-e2/string/active" \
	"... payload: event start, attributes-type from the config, attributes, alert, content-state"
wait_for 10 idle
is "$(nreqs "$TE" "$EV")" 0 "... instead of the alert (the start push shows its own alert)"
is "$(row "$EV" "$DE")" "liveactivity/sent/${PE:0:8}" "... deliveries row liveactivity, target the push-to-start token"
create la-e cap-la-e3 high
pushed cap-la-e3 "$TE"
is "$(req "$TE" "$EV" '.headers["apns-push-type"]')" alert "a new high (not critical) activity: a normal alert"
is "$(nreqs "$PE" "$EV")" 0 "... no push-to-start"

script "$PE 410 Unregistered 1"
create la-e cap-la-e4 critical
EV=$(last_event cap-la-e4)
row_check "$EV" "$DE" "liveactivity/deactivated/${PE:0:8}" "410 on a push-to-start push: row deactivated"
is "$(sql "SELECT coalesce(push_to_start_token, 'none') || '/' || active FROM devices WHERE id = $DE")" "none/true" \
	"... the push-to-start token is cleared, the device stays active"
create la-e cap-la-e5 critical
pushed cap-la-e5 "$TE"
is "$(req "$TE" "$EV" "$HDRS")" "alert/$BUNDLE/10/200" "the next critical activity reaches the device as an alert"

is "$(jq -r 'select(.status == 400 and .reason != "BadCollapseId") | .reason' "$LOG" | sort | uniq -c | tr -s ' ')" "" \
	"the fake APNs refused no request of capsule-pushd (topic, push type, priority, payload)"

# --- the fake APNs enforces the liveactivity rules (PUSH.md A4, A5, A8) ---------------------
APNS_JWT=$("$BUILD_DIR/tests/tools/jwt-sign" --alg ES256 --key "$STACK_DIR/keys/apns.p8" \
	--header "{\"alg\":\"ES256\",\"kid\":\"$STACK_APNS_KEY_ID\"}" \
	--claims "{\"iss\":\"$STACK_APNS_TEAM_ID\",\"iat\":$(date +%s)}")
# fake TYPE TOPIC PRIORITY BODY: status/reason of one request made here with curl.
fake() {
	local out
	out=$(curl -sS --http2 --cacert "$STACK_DIR/keys/ca.pem" -o "$T_DIR/fake-body" -w '%{http_code}' \
		-H "authorization: bearer $APNS_JWT" -H "apns-push-type: $1" -H "apns-topic: $2" \
		-H "apns-priority: $3" --data-binary "$4" "https://127.0.0.1:$APNS_PORT/3/device/$(tok)")
	printf '%s/%s' "$out" "$(jq -r '.reason // ""' "$T_DIR/fake-body" 2>/dev/null)"
}
NOW=$(date +%s)
CS='"content-state":{"state":"active"}'
LAT="$BUNDLE.push-type.liveactivity"
is "$(fake liveactivity "$LAT" 10 "{\"aps\":{\"timestamp\":$NOW,\"event\":\"update\",$CS}}")" "200/" \
	"fake APNs: a well-formed liveactivity update passes"
is "$(fake liveactivity "$BUNDLE" 10 "{\"aps\":{\"timestamp\":$NOW,\"event\":\"update\",$CS}}")" "400/TopicDisallowed" \
	"fake APNs: liveactivity without the .push-type.liveactivity topic suffix is refused"
is "$(fake alert "$LAT" 10 '{"aps":{"alert":{"title":"x"}}}')" "400/TopicDisallowed" \
	"fake APNs: an alert to the liveactivity topic is refused"
is "$(fake liveactivity "$LAT" 1 "{\"aps\":{\"timestamp\":$NOW,\"event\":\"update\",$CS}}")" "400/BadPriority" \
	"fake APNs: liveactivity priority 1 is refused (5 or 10)"
is "$(fake background "$BUNDLE" 10 '{"aps":{"content-available":1}}')" "400/BadPriority" \
	"fake APNs: background priority 10 is refused"
is "$(fake liveactivity "$LAT" 5 "{\"aps\":{\"timestamp\":$NOW,\"event\":\"update\"}}")" "400/BadPayload" \
	"fake APNs: liveactivity without content-state is refused"
is "$(fake liveactivity "$LAT" 5 "{\"aps\":{\"event\":\"end\",$CS}}")" "400/BadPayload" \
	"fake APNs: liveactivity without timestamp is refused"
is "$(fake liveactivity "$LAT" 10 "{\"aps\":{\"timestamp\":$NOW,\"event\":\"start\",$CS,\"alert\":{\"title\":\"x\"},\"attributes\":{}}}")" \
	"400/BadPayload" "fake APNs: a start without attributes-type is refused"
is "$(fake liveactivity "$LAT" 10 "{\"aps\":{\"timestamp\":$NOW,\"event\":\"start\",$CS,\"attributes-type\":\"A\",\"attributes\":{}}}")" \
	"400/BadPayload" "fake APNs: a start without alert is refused"
is "$(fake liveactivity "$LAT" 10 "{\"aps\":{\"timestamp\":$NOW,\"event\":\"update\",$CS,\"attributes-type\":\"A\",\"attributes\":{}}}")" \
	"400/BadPayload" "fake APNs: attributes on an update are refused"

# --- logs --------------------------------------------------------------------------------
sanitizer_clean "$STACK_DIR"/capsule-pushd.log "$STACK_DIR"/fcgi.log
t_result $? "no sanitizer report in capsule-pushd or the FastCGI log"
is "$(grep -c 'postgresql.*recording push outcomes\|claiming deliveries\|picking deliveries' "$STACK_DIR/capsule-pushd.log")" 0 \
	"capsule-pushd logged no database error"

t_done

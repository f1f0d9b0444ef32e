#!/usr/bin/env bash
# channels.sh: WebSocket channels (activities, capsule:<id>, tenant) and POST /api/v1/events
# (issue 5 item 2) through the web server: who gets which event, once, and nobody of another
# tenant. Prints TAP. Every server is started on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin channels

STACK_LOG_LEVEL=debug
it_stack_up "stack starts behind $(stack_web)"

WSC="$BUILD_DIR/tests/tools/ws-client"
WS_URL="ws://127.0.0.1:$HTTP_PORT/ws"
SECRET=$(cat "$STACK_DIR/ws-secret")
WSD_LOG="$STACK_DIR/capsule-wsd.log"
ctype=(-H 'Content-Type: application/json')

T_PUB=$(bearer_token ch-pub default publisher)
T_VIEW=$(bearer_token ch-view default viewer)
T_ACME_PUB=$(bearer_token ch-acme-pub acme publisher)
as() { HTTP_AUTH=(-H "Authorization: Bearer $1"); }
jreq() { local m=$1 p=$2 b=$3; shift 3; http "$m" "$p" "${ctype[@]}" --data-binary "$b" "$@"; }

# ws_token SUB [TENANT [ROLE]]: a WebSocket token signed here with the secret.
ws_token() {
	local now
	now=$(date +%s)
	hs256 "$SECRET" '{"alg":"HS256","typ":"JWT"}' \
		"{\"sub\":\"$1\",\"tenant\":\"${2:-default}\",\"role\":\"${3:-viewer}\",\"iss\":\"capsule-gateway\",\"iat\":$now,\"nbf\":$now,\"exp\":$((now + 600))}"
}
close_of() { grep '^close' "$1"; }

# client NAME SUB TENANT [ws-client args]: stays until killed; pid in PIDS.
PIDS=""
client() {
	local name=$1 sub=$2 tenant=$3
	shift 3
	"$WSC" --url "$WS_URL?token=$(ws_token "$sub" "$tenant")" --pong --until never --timeout 60 "$@" \
		>"$T_DIR/$name.out" 2>&1 &
	PIDS="$PIDS $!"
}
sub() { printf '{"type":"subscribe","channel":"%s"}' "$1"; }
unsub() { printf '{"type":"unsubscribe","channel":"%s"}' "$1"; }
nsubs() { grep -c '"subscribed"\|"unsubscribed"' "$T_DIR/$1.out"; }
has() { grep -q "$2" "$T_DIR/$1.out"; }
count() { grep -c "$2" "$T_DIR/$1.out"; }

# cap: only capsule:cap-x. ten: only tenant. act: activities (the default).
# act2: another user with activities. all: every channel at once. acme: another tenant.
client cap u-cap default --send "$(unsub activities)" --send "$(sub capsule:cap-x)"
client ten u-ten default --send "$(unsub activities)" --send "$(sub tenant)"
client act u-act default
client act2 u-act2 default
client all u-all default --send "$(sub capsule:cap-x)" --send "$(sub tenant)" --send "$(sub activities)"
client acme u-acme acme --send "$(sub tenant)"
ready() { [ "$(nsubs cap)" = 2 ] && [ "$(nsubs ten)" = 2 ] && [ "$(nsubs all)" = 3 ] && [ "$(nsubs acme)" = 1 ] &&
	has act '"authenticated"' && has act2 '"authenticated"'; }
wait_for 10 ready
t_result $? "six clients connected and subscribed (capsule:cap-x, tenant, activities, all three, another tenant)"

# --- capsule:<id> gets that capsule's activity events only -----------------------
as "$T_PUB"
jreq POST /create-activity '{"capsule_id":"cap-y","title":"y"}'
is "$H_STATUS" 201 "activity cap-y created"
jreq POST /create-activity '{"capsule_id":"cap-x","title":"x"}'
is "$H_STATUS" 201 "activity cap-x created"
wait_for 10 has cap '"cap-x"'
t_result $? "the capsule:cap-x subscriber gets cap-x's activity_created"
wait_for 10 has act '"cap-x"'
sleep 0.5
has cap '"cap-y"'
is "$?" 1 "it does not get cap-y's"
wait_for 5 has ten '"cap-x"'
t_result $? "the tenant subscriber gets a tenant-wide activity (no user_id): it is for the whole tenant"

# --- POST /api/v1/events ---------------------------------------------------------
jreq POST /api/v1/events '{"type":"api.deployed","user_id":"u-act","data":{"marker":"to-user"}}'
is "$H_STATUS/$(jqr .success)/$(jqr .event.type)/$(jqr .event.user_id)" "202/true/api.deployed/u-act" \
	"POST /api/v1/events to a user answers 202 with the event"
[ -n "$(jqr .event.event_id)" ] && [ "$(jqr .event.data)" = null ]
t_result $? "the answer carries the event_id and not the payload"
jreq POST /api/v1/events '{"type":"api.deployed","channel":"capsule:cap-x","data":{"marker":"to-channel"}}'
is "$H_STATUS/$(jqr .event.channel)" "202/capsule:cap-x" "POST /api/v1/events to a channel answers 202"
jreq POST /api/v1/events '{"type":"api.undeployed","agent_id":"agent-7","data":{"marker":"to-agent"}}'
is "$H_STATUS/$(jqr .event.agent_id)" "202/agent-7" "POST /api/v1/events to an agent answers 202 (stored; agents come later)"
jreq POST /api/v1/events '{"type":"gateway.config.updated","data":{"marker":"to-tenant"}}'
is "$H_STATUS" 202 "POST /api/v1/events to the tenant answers 202"
as "$T_ACME_PUB"
jreq POST /api/v1/events '{"type":"gateway.config.updated","data":{"marker":"acme-tenant"}}'
is "$H_STATUS" 202 "another tenant's publisher publishes to its tenant"
as "$T_PUB"

wait_for 10 sh -c "grep -q to-tenant '$T_DIR/ten.out' && grep -q to-tenant '$T_DIR/act.out' && grep -q acme-tenant '$T_DIR/acme.out'"
t_result $? "the tenant event reached the tenant subscriber, an activities subscriber and the other tenant its own"
sleep 0.5
has act to-user
is "$?" 0 "the user's event reached that user's client"
has act2 to-user
is "$?" 1 "it did not reach another user's client"
has ten to-user
is "$?" 1 "nor the tenant channel (it is not for the whole tenant)"
has cap to-channel
is "$?" 0 "the channel event reached the channel's subscriber"
has act to-channel
is "$?" 1 "the channel event did not reach an activities-only subscriber"
has act2 to-tenant
is "$?" 0 "the tenant event reached every client of the tenant"
has cap to-tenant
is "$?" 1 "a capsule-only subscriber does not get tenant events"
has acme to-tenant
is "$?" 1 "the tenant event reached nobody of another tenant"
has act acme-tenant || has ten acme-tenant || has all acme-tenant
is "$?" 1 "another tenant's tenant event reached nobody of this tenant"
has_agent=0
for c in cap ten act act2 all acme; do has "$c" to-agent && has_agent=1; done
is "$has_agent" 0 "the agent event reached no user connection"
is "$(count all '"cap-x"')/$(count all to-channel)/$(count all to-tenant)" "1/1/1" \
	"a client subscribed to several matching channels gets each event once"
is "$(grep to-tenant "$T_DIR/act.out" | jq -r '.type + " " + .data.marker')" "gateway_config_updated to-tenant" \
	"the message has the registered WebSocket type and the payload"

jreq POST /api/v1/events '{"type":"no.such.type","data":{}}'
is "$H_STATUS/$(jqr .error.field // .field)" "422/type" "an unregistered type answers 422 naming type"
jreq POST /api/v1/events '{"type":"api.deployed","user_id":"u1","channel":"capsule:cap-x","data":{}}'
is "$H_STATUS" 422 "a user and a channel at once answer 422"
jreq POST /api/v1/events '{"type":"api.deployed","channel":"ops","data":{}}'
is "$H_STATUS/$(jqr .error.field // .field)" "422/channel" "a channel that is not capsule:<id> answers 422"
jreq POST /api/v1/events '{"type":"api.deployed","data":[1]}'
is "$H_STATUS/$(jqr .error.field // .field)" "422/data" "data that is not an object answers 422"
big=$(head -c 1048600 /dev/zero | tr '\0' 'a')
printf '{"type":"api.deployed","data":{"b":"%s"}}' "$big" >"$T_DIR/big.json"
http POST /api/v1/events "${ctype[@]}" --data-binary "@$T_DIR/big.json"
case "$H_STATUS" in 413|422) r=0 ;; *) r=1 ;; esac
t_result $r "a payload over 1 MiB is refused (got $H_STATUS)"
as "$T_VIEW"
jreq POST /api/v1/events '{"type":"api.deployed","data":{}}'
is "$H_STATUS" 403 "a viewer may not publish (403)"
as "$T_PUB"
n=$(sql "SELECT count(*) FROM audit_log WHERE action = 'event.publish'")
[ "$n" -ge 5 ]
t_result $? "publishing is audited as event.publish ($n rows)"
is "$(sql "SELECT count(*) FROM events WHERE channel = 'capsule:cap-x' AND published_at IS NOT NULL")" 1 \
	"the channel event is in the outbox, marked published"

# --- 4403 and unknown channels --------------------------------------------------
"$WSC" --url "$WS_URL?token=$(ws_token u-wild)" --send "$(sub 'capsule:*')" --until never --timeout 5 >"$T_DIR/wild.out" 2>&1
is "$?/$(close_of "$T_DIR/wild.out")" "3/close 4403" "subscribing to a wildcard channel closes with 4403"
"$WSC" --url "$WS_URL?token=$(ws_token u-bad)" --send "$(sub 'capsule:a b')" --until error --timeout 5 >"$T_DIR/bad.out" 2>&1
is "$?/$(grep '"error"' "$T_DIR/bad.out" | jq -r .code)" "0/unknown_channel" "a malformed capsule channel answers unknown_channel"

# Below operator, another user's activity is a forbidden channel; one's own, a
# tenant-wide one and one that does not exist (yet) are not. Operators watch any.
as "$T_PUB"
jreq POST /create-activity '{"capsule_id":"cap-own","title":"own","user_id":"u-own"}'
s1=$H_STATUS
jreq POST /create-activity '{"capsule_id":"cap-other","title":"other","user_id":"u-other"}'
is "$s1/$H_STATUS" "201/201" "activities of two users created"
"$WSC" --url "$WS_URL?token=$(ws_token u-own)" --send "$(sub capsule:cap-other)" --until never --timeout 5 \
	>"$T_DIR/other.out" 2>&1
is "$?/$(close_of "$T_DIR/other.out")" "3/close 4403" "a viewer subscribing to another user's activity is closed with 4403"
grep -q 'forbidden channel capsule:cap-other' "$WSD_LOG"
t_result $? "the refusal is logged with the channel"
"$WSC" --url "$WS_URL?token=$(ws_token u-own)" --send "$(sub capsule:cap-own)" --send "$(sub capsule:cap-x)" \
	--send "$(sub capsule:cap-none)" --count 4 --timeout 10 >"$T_DIR/own.out" 2>&1
is "$?/$(grep -c '"subscribed"' "$T_DIR/own.out")" "0/3" "its own, a tenant-wide and a not (yet) existing activity are subscribed"
"$WSC" --url "$WS_URL?token=$(ws_token u-op default operator)" --send "$(sub capsule:cap-other)" --count 2 \
	--timeout 10 >"$T_DIR/op.out" 2>&1
is "$?/$(grep -c '"subscribed"' "$T_DIR/op.out")" "0/1" "an operator may watch another user's activity"
"$WSC" --url "$WS_URL?token=$(ws_token u-own)&channels=activities,capsule:cap-other" --until never --timeout 5 \
	>"$T_DIR/other2.out" 2>&1
is "$?/$(close_of "$T_DIR/other2.out")" "3/close 4403" "the same channel named at authentication is closed with 4403 too"

# --- push: devices belong to users; a channel's event has no device audience ----
PUSH_TOKEN=$(openssl rand -hex 32)
sql "INSERT INTO devices (tenant_id, user_id, platform, device_token) VALUES ('default', 'u-push', 'ios', '$PUSH_TOKEN')" >/dev/null
as "$T_PUB"
jreq POST /api/v1/events '{"type":"activity.updated","channel":"capsule:cap-x","data":{"capsule_id":"cap-x","title":"chan-push"}}'
is "$H_STATUS" 202 "a push-type event to a channel is accepted"
jreq POST /api/v1/events '{"type":"activity.updated","user_id":"u-push","data":{"capsule_id":"cap-x","title":"user-push"}}'
is "$H_STATUS" 202 "a push-type event to a user is accepted"
# (an update of a medium activity is a background push: its body names the event, not the title)
wait_for 15 grep -q "$PUSH_TOKEN" "$STACK_DIR/apns-requests.jsonl"
t_result $? "the user's event is pushed to the user's device"
sleep 1
is "$(grep -c "$PUSH_TOKEN" "$STACK_DIR/apns-requests.jsonl")/$(grep -c chan-push "$STACK_DIR/apns-requests.jsonl")" "1/0" \
	"the channel's event, published first, is pushed to no device (it is not for the whole tenant)"

for p in $PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$WSD_LOG" "$STACK_DIR"/fcgi*.log 2>/dev/null; then
	t_result 1 "no sanitizer report"
else
	t_result 0 "no sanitizer report"
fi
t_done

#!/usr/bin/env bash
# deliveries.sh: push deliveries recorded in PostgreSQL (issue 6): one row per event and
# device with its outcome (sent, deactivated, failed after retries, attempts while
# retrying), GET /api/v1/admin/deliveries (filters, paging, roles, tenants), POST
# /api/v1/admin/deliveries/{id}/retry (resent with the same apns-id), no second push of a
# pair after capsule-pushd is killed mid-batch, and a 10,000-device event.
# Prints TAP. Every server is started on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin deliveries

# A dead daemon's work is taken over after 5 s here (default: 60 s for a retried row,
# 600 s for a stream entry), so the kill test below stays short.
export PUSH_RETRY_RECOVER_S=5 PUSH_CLAIM_IDLE_S=5
it_stack_up "stack starts (PostgreSQL, Redis, fake APNs, capsule-pushd) behind $(stack_web)"

APNS_LOG="$STACK_DIR/apns-requests.jsonl"
SCRIPT="$STACK_DIR/apns-script.txt"
PUB=(-H "Authorization: Bearer $(bearer_token dlv-publisher default publisher)")
ADMIN=(-H "Authorization: Bearer $(bearer_token dlv-admin default admin)")
OPERATOR=(-H "Authorization: Bearer $(bearer_token dlv-operator default operator)")
ACME_ADMIN=(-H "Authorization: Bearer $(bearer_token dlv-acme-admin acme admin)")
JSON=(-H 'Content-Type: application/json')
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

# script LINE...: the fake's per-token outcomes (replaced whole, atomically).
script() {
	printf '%s\n' "$@" >"$SCRIPT.tmp" && mv "$SCRIPT.tmp" "$SCRIPT"
}

# device USER TOKEN: an active iOS device of tenant default.
device() {
	sql "INSERT INTO devices (tenant_id, user_id, platform, device_token) VALUES ('default', '$1', 'ios', '$2')" >/dev/null
}

# push USER CAPSULE: an activity for USER (pushed to USER's devices).
push() {
	HTTP_AUTH=("${PUB[@]}")
	http POST /create-activity "${JSON[@]}" \
		--data-binary "{\"capsule_id\":\"$2\",\"title\":\"Delivery test $2\",\"priority\":\"high\",\"user_id\":\"$1\"}"
	HTTP_AUTH=()
	[ "$H_STATUS" = 201 ] || diag "create-activity $2 answered $H_STATUS: $H_BODY"
}

# row TOKEN: status/attempts/provider_status/provider_reason of the token's delivery.
row() {
	sql "SELECT status || '/' || attempts || '/' || coalesce(provider_status::text, '') || '/' || coalesce(provider_reason, '')
	       FROM deliveries WHERE target = '$1'"
}
row_is() { [ "$(row "$1")" = "$2" ]; }

# oks TOKEN: how many 200s the fake APNs answered for the token.
oks() { jq -r --arg t "$1" 'select(.device_token == $t and .status == 200) | .status' "$APNS_LOG" | wc -l; }

api() { # METHOD PATH CREDENTIAL-ARRAY-NAME [curl args...] (a POST gets an empty body)
	local m=$1 p=$2 c="$3[@]"
	shift 3
	HTTP_AUTH=("${!c}")
	if [ "$m" = POST ]; then
		http "$m" "$p" -H 'Content-Length: 0' "$@"
	else
		http "$m" "$p" "$@"
	fi
	HTTP_AUTH=()
}

T_OK=$(openssl rand -hex 32)
T_GONE=$(openssl rand -hex 32)
T_BAD=$(openssl rand -hex 32)
T_FLAKY=$(openssl rand -hex 32)
T_DOWN=$(openssl rand -hex 32)
T_DROP=$(openssl rand -hex 32)
T_LATE=$(openssl rand -hex 32)
script "$T_GONE 410 Unregistered" "$T_BAD 400 BadDeviceToken" "$T_FLAKY 500 InternalServerError 2" \
	"$T_DOWN 500 InternalServerError" "$T_DROP 400 BadCollapseId" "$T_LATE 400 BadCollapseId"
device dlv-ok "$T_OK"
device dlv-gone "$T_GONE"
device dlv-bad "$T_BAD"
device dlv-flaky "$T_FLAKY"
device dlv-down "$T_DOWN"
device dlv-drop "$T_DROP"
device dlv-late "$T_LATE"

# The permanent 500 takes its five attempts with back-off (7.5 to 15 s): first.
push dlv-down cap-dlv-down
push dlv-ok cap-dlv-ok
push dlv-gone cap-dlv-gone
push dlv-bad cap-dlv-bad
push dlv-flaky cap-dlv-flaky
push dlv-drop cap-dlv-drop
push dlv-late cap-dlv-late

# --- outcomes --------------------------------------------------------------------
wait_for 15 row_is "$T_OK" "sent/1/200/"
is "$(row "$T_OK")" "sent/1/200/" "a push creates a delivery row: sent, 1 attempt, provider status 200"
is "$(sql "SELECT channel || '/' || push_type || '/' || (device_id = (SELECT id FROM devices WHERE device_token = '$T_OK'))::text
            || '/' || (sent_at IS NOT NULL AND last_attempt_at IS NOT NULL)::text FROM deliveries WHERE target = '$T_OK'")" \
	"apns/alert/true/true" "... channel apns, push type alert, its device, sent_at and last_attempt_at set"
AID=$(sql "SELECT apns_id FROM deliveries WHERE target = '$T_OK'")
printf '%s' "$AID" | grep -Eq "$UUID_RE"
t_result $? "... apns_id is recorded ($AID)"
is "$(jq -r --arg t "$T_OK" 'select(.device_token == $t) | .apns_id' "$APNS_LOG")" "$AID" \
	"... and is the apns-id the provider saw"
is "$(sql "SELECT event_id = (SELECT event_id FROM events WHERE capsule_id = 'cap-dlv-ok' AND type = 'activity.created') FROM deliveries WHERE target = '$T_OK'")" t \
	"... event_id is the outbox event's"

wait_for 15 row_is "$T_GONE" "deactivated/1/410/Unregistered"
is "$(row "$T_GONE")" "deactivated/1/410/Unregistered" "410 Unregistered: delivery deactivated"
is "$(sql "SELECT active::text || '/' || deactivated_reason FROM devices WHERE device_token = '$T_GONE'")" "false/Unregistered" \
	"... and the device is deactivated"
wait_for 15 row_is "$T_BAD" "deactivated/1/400/BadDeviceToken"
is "$(row "$T_BAD")" "deactivated/1/400/BadDeviceToken" "400 BadDeviceToken: delivery deactivated"
is "$(sql "SELECT active FROM devices WHERE device_token = '$T_BAD'")" f "... and the device is deactivated"
wait_for 15 row_is "$T_DROP" "failed/1/400/BadCollapseId"
is "$(row "$T_DROP")" "failed/1/400/BadCollapseId" "400 BadCollapseId: delivery failed at once (not retried)"

wait_for 10 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT status || attempts FROM deliveries WHERE target = '$T_FLAKY'\")\" = pending1 ]"
t_result $? "while a push waits for its retry, its row is pending with the attempts so far"
is "$(sql "SELECT provider_status || '/' || provider_reason FROM deliveries WHERE target = '$T_FLAKY'")" "500/InternalServerError" \
	"... and the last provider status and reason"
wait_for 15 row_is "$T_FLAKY" "sent/3/200/"
is "$(row "$T_FLAKY")" "sent/3/200/" "500 twice then 200: sent after 3 attempts"
is "$(jq -r --arg t "$T_FLAKY" 'select(.device_token == $t) | .apns_id' "$APNS_LOG" | sort -u | wc -l)/$(oks "$T_FLAKY")" "1/1" \
	"... every attempt carried the same apns-id, one was accepted"

wait_for 30 row_is "$T_DOWN" "failed/5/500/InternalServerError"
is "$(row "$T_DOWN")" "failed/5/500/InternalServerError" "a permanent 500: failed after 5 attempts with provider status 500"

wait_for 10 sh -c "[ \"\$(redis-cli -p $REDIS_PORT XPENDING cg:events capsule-pushd | head -n 1)\" = 0 ]"
t_result $? "every event is acknowledged once its rows are final"

# --- GET /api/v1/admin/deliveries ------------------------------------------------
wait_for 15 row_is "$T_LATE" "failed/1/400/BadCollapseId"
N_ALL=$(sql "SELECT count(*) FROM deliveries WHERE tenant_id = 'default'")
api GET /api/v1/admin/deliveries ADMIN
is "$H_STATUS/$(jqr .total)/$(jqr '.deliveries | length')/$(jqr .limit)/$(jqr .offset)" "200/$N_ALL/$N_ALL/50/0" \
	"admin lists the tenant's deliveries (total, limit 50, offset 0)"
is "$(jqr '[.deliveries[] | [.created_at, .id]] == ([.deliveries[] | [.created_at, .id]] | sort | reverse)')" true \
	"... newest first"
api GET "/api/v1/admin/deliveries?status=sent" ADMIN
is "$H_STATUS/$(jqr .total)/$(jqr '[.deliveries[].status] | unique | join(",")')" "200/2/sent" "status=sent filters"
D=$(printf '%s' "$H_BODY" | jq -c --arg p "${T_OK:0:8}…" '.deliveries[] | select(.target == $p)')
is "$(printf '%s' "$D" | jq -r '[.channel, .push_type, .status, .provider_status, .attempts, .apns_id] | map(tostring) | join("/")')" \
	"apns/alert/sent/200/1/$AID" "a delivery shows channel, push type, status, provider status, attempts, apns_id"
is "$(printf '%s' "$D" | jq -r '[.id, .event_id, .device_id, .created_at, .updated_at, .last_attempt_at, .sent_at] | map(type) | join(",")')" \
	"number,string,number,string,string,string,string" "... with id, event_id, device_id and its times"
printf '%s' "$D" | jq -r .sent_at | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
t_result $? "... times are RFC 3339 UTC"
is "$(printf '%s' "$H_BODY" | jq -r '.deliveries[].target' | grep -c "$T_OK")" 0 "... and only the first 8 characters of the token"
api GET "/api/v1/admin/deliveries?status=failed" ADMIN
is "$H_STATUS/$(jqr .total)" "200/3" "status=failed filters"
api GET "/api/v1/admin/deliveries?status=deactivated&channel=apns" ADMIN
is "$H_STATUS/$(jqr .total)" "200/2" "status=deactivated and channel=apns filter"
api GET "/api/v1/admin/deliveries?channel=webpush" ADMIN
is "$H_STATUS/$(jqr .total)" "200/0" "channel=webpush: none yet"
EV=$(sql "SELECT event_id FROM deliveries WHERE target = '$T_OK'")
api GET "/api/v1/admin/deliveries?event_id=$EV" ADMIN
is "$H_STATUS/$(jqr .total)/$(jqr '.deliveries[0].event_id')" "200/1/$EV" "event_id filters"
api GET "/api/v1/admin/deliveries?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00%2B01:00" ADMIN
is "$H_STATUS/$(jqr .total)" "200/$N_ALL" "since/until around now: all"
api GET "/api/v1/admin/deliveries?since=2999-01-01T00:00:00Z" ADMIN
is "$H_STATUS/$(jqr .total)" "200/0" "since in the future: none"
api GET "/api/v1/admin/deliveries?until=2000-01-01T00:00:00Z" ADMIN
is "$H_STATUS/$(jqr .total)" "200/0" "until in the past: none"
MID=$(sql "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM deliveries WHERE target = '$T_OK'")
api GET "/api/v1/admin/deliveries?since=$MID&until=$MID" ADMIN
is "$H_STATUS/$(jqr .total)/$(jqr '.deliveries[0].event_id')" "200/1/$EV" "since = until = a row's time: that row (bounds inclusive)"
api GET "/api/v1/admin/deliveries?limit=2&offset=0" ADMIN
P1=$(jqr '[.deliveries[].id] | join(",")')
is "$H_STATUS/$(jqr '.deliveries | length')/$(jqr .total)/$(jqr .limit)" "200/2/$N_ALL/2" "limit=2: two rows, the whole total"
api GET "/api/v1/admin/deliveries?limit=2&offset=2" ADMIN
P2=$(jqr '[.deliveries[].id] | join(",")')
api GET "/api/v1/admin/deliveries?limit=4&offset=0" ADMIN
is "$P1,$P2" "$(jqr '[.deliveries[].id] | join(",")')" "offset=2 continues where offset=0 stopped"
api GET "/api/v1/admin/deliveries?offset=$N_ALL" ADMIN
is "$H_STATUS/$(jqr '.deliveries | length')/$(jqr .total)" "200/0/$N_ALL" "past the end: empty page, total kept"
for q in status=bogus channel=sms event_id=not-a-uuid since=now until=2025-02-30T00:00:00Z since=2025-01-01 \
	limit=0 limit=501 offset=-1 limit=abc; do
	api GET "/api/v1/admin/deliveries?$q" ADMIN
	is "$H_STATUS/$(jqr .error.code)/$(jqr .error.field)" "422/validation_failed/${q%%=*}" "$q answers 422 naming ${q%%=*}"
done
api GET /api/v1/admin/deliveries OPERATOR
is "$H_STATUS/$(jqr .error.code)" "403/forbidden" "an operator gets 403"
api GET /api/v1/admin/deliveries PUB
is "$H_STATUS" 403 "a publisher gets 403"
http GET /api/v1/admin/deliveries
is "$H_STATUS" 401 "no credential: 401"
api GET /api/v1/admin/deliveries ACME_ADMIN
is "$H_STATUS/$(jqr .total)" "200/0" "another tenant's admin sees none of them"

# --- POST /api/v1/admin/deliveries/{id}/retry -------------------------------------
ID_DOWN=$(sql "SELECT id FROM deliveries WHERE target = '$T_DOWN'")
ID_OK=$(sql "SELECT id FROM deliveries WHERE target = '$T_OK'")
ID_LATE=$(sql "SELECT id FROM deliveries WHERE target = '$T_LATE'")
api POST "/api/v1/admin/deliveries/$ID_DOWN/retry" OPERATOR
is "$H_STATUS" 403 "an operator may not retry (403)"
api POST "/api/v1/admin/deliveries/$ID_DOWN/retry" ACME_ADMIN
is "$H_STATUS/$(jqr .error.code)" "404/not_found" "another tenant's admin: 404"
api POST "/api/v1/admin/deliveries/999999999/retry" ADMIN
is "$H_STATUS/$(jqr .error.code)" "404/not_found" "an unknown delivery: 404"
api POST "/api/v1/admin/deliveries/abc/retry" ADMIN
is "$H_STATUS" 404 "a malformed id: 404"
api POST "/api/v1/admin/deliveries/$ID_OK/retry" ADMIN
is "$H_STATUS/$(jqr .error.code)" "409/not_retryable" "retrying a sent delivery: 409 not_retryable"
is "$(row "$T_OK")" "sent/1/200/" "... and it stays sent"
api GET "/api/v1/admin/deliveries/$ID_OK/retry" ADMIN
is "$H_STATUS" 405 "GET on the retry path: 405"

script "$T_GONE 410 Unregistered" "$T_BAD 400 BadDeviceToken"   # the provider works again
api POST "/api/v1/admin/deliveries/$ID_DOWN/retry" ADMIN -H "Idempotency-Key: dlv-retry-1"
is "$H_STATUS/$(jqr .success)/$(jqr .delivery.status)/$(jqr .delivery.id)" "202/true/retry_requested/$ID_DOWN" \
	"retrying a failed delivery: 202 with the delivery retry_requested"
FIRST_BODY=$H_BODY
api POST "/api/v1/admin/deliveries/$ID_DOWN/retry" ADMIN -H "Idempotency-Key: dlv-retry-1"
is "$H_STATUS/$(header Idempotent-Replayed)" "202/true" "the same Idempotency-Key replays the answer"
is "$H_BODY" "$FIRST_BODY" "... with the same body"
is "$(sql "SELECT count(*) FROM audit_log WHERE action = 'delivery.retry' AND target = '$ID_DOWN' AND outcome = 'success'")" 2 \
	"the retry and its replay are audited (delivery.retry)"
is "$(sql "SELECT count(*) FROM audit_log WHERE action = 'delivery.retry' AND target = '$ID_OK' AND status = 409")" 1 \
	"the refused retry is audited as a failure"
wait_for 15 row_is "$T_DOWN" "sent/6/200/"
is "$(row "$T_DOWN")" "sent/6/200/" "push-daemon resends it: sent, 6 attempts in all"
is "$(jq -r --arg t "$T_DOWN" 'select(.device_token == $t) | .apns_id' "$APNS_LOG" | sort -u)" \
	"$(sql "SELECT apns_id FROM deliveries WHERE target = '$T_DOWN'")" "... with the same apns-id as every earlier attempt"
is "$(oks "$T_DOWN")/$(jq -r --arg t "$T_DOWN" 'select(.device_token == $t) | .status' "$APNS_LOG" | wc -l)" "1/6" \
	"... the fake saw 5 refusals and 1 success"
api POST "/api/v1/admin/deliveries/$ID_DOWN/retry" ADMIN
is "$H_STATUS/$(jqr .error.code)" "409/not_retryable" "retrying it again once sent: 409"

sql "UPDATE devices SET active = false WHERE device_token = '$T_LATE'" >/dev/null
api POST "/api/v1/admin/deliveries/$ID_LATE/retry" ADMIN
is "$H_STATUS" 202 "retrying a failed delivery whose device is gone since: 202"
wait_for 15 row_is "$T_LATE" "failed/1//device inactive"
is "$(row "$T_LATE")" "failed/1//device inactive" "... push-daemon marks it failed: device inactive"
is "$(oks "$T_LATE")" 0 "... and pushes nothing"

# --- the 410 race: a token APNs saw die before the device registered it again is kept -----
T_RACE=$(openssl rand -hex 32)
device dlv-race "$T_RACE"          # registered (updated_at) now
script "$T_RACE 410 Unregistered 1 ts=-60000"   # APNs: unregistered a minute ago
push dlv-race cap-dlv-race
wait_for 15 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT status FROM deliveries WHERE target = '$T_RACE'\")\" = deactivated ]"
is "$(row "$T_RACE")" "deactivated/1/410/Unregistered" "410 with a timestamp before the device's registration: the delivery records it"
is "$(sql "SELECT active FROM devices WHERE device_token = '$T_RACE'")" t \
	"... but the device stays active: it registered the token again after APNs' timestamp"
T_RACE2=$(openssl rand -hex 32)
device dlv-race2 "$T_RACE2"
sql "UPDATE devices SET updated_at = now() - interval '2 minutes' WHERE device_token = '$T_RACE2'" >/dev/null
script "$T_RACE2 410 Unregistered 1 ts=-60000"
push dlv-race2 cap-dlv-race2
wait_for 15 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT active FROM devices WHERE device_token = '$T_RACE2'\")\" = f ]"
is "$(sql "SELECT active FROM devices WHERE device_token = '$T_RACE2'")" f \
	"the same 410 for a device last registered before APNs' timestamp deactivates it"
script ""

# --- provider token: one token for every push; ExpiredProviderToken on a fresh token -----
# (PUSH.md A2: refresh inside 20-60 minutes; the age rules themselves: test_apns_payload)
T_EXP=$(openssl rand -hex 32)
device dlv-exp "$T_EXP"
script "$T_EXP 403 ExpiredProviderToken 1"
push dlv-exp cap-dlv-exp
wait_for 20 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT status FROM deliveries WHERE target = '$T_EXP'\")\" = sent ]"
is "$(row "$T_EXP" | cut -d/ -f1,2)" "sent/2" "403 ExpiredProviderToken on a token minted seconds ago: backed off, retried, sent"
grep -q 'ExpiredProviderToken for a token minted [0-9]* s ago' "$STACK_DIR/capsule-pushd.log"
t_result $? "... and not re-minted (a fresh token cannot have expired: our clock is off)"
is "$(jq -r 'select(.jwt != null) | .jwt.claims.iat' "$APNS_LOG" | sort -u | wc -l)" 1 \
	"every push so far went with the one provider token this daemon minted"

# --- /health's apns field is the daemon's real state --------------------------------
# (the state follows the last answers: earlier 5xx left it failing, the push above fixed it)
wait_for 25 sh -c "curl -s http://127.0.0.1:$HTTP_PORT/health | jq -e '.apns == \"connected\"' >/dev/null"
t_result $? "/health: apns connected after accepted pushes"
T_5XX=$(openssl rand -hex 32)
device dlv-5xx "$T_5XX"
script "$T_5XX 503 ServiceUnavailable"
push dlv-5xx cap-dlv-5xx
wait_for 25 sh -c "curl -s http://127.0.0.1:$HTTP_PORT/health | jq -e '.apns == \"failing\"' >/dev/null"
t_result $? "/health: apns failing while APNs answers 5xx (written by capsule-pushd every 10 s)"
script ""
device dlv-back "$(openssl rand -hex 32)"
push dlv-back cap-dlv-back
wait_for 40 sh -c "curl -s http://127.0.0.1:$HTTP_PORT/health | jq -e '.apns == \"connected\"' >/dev/null"
t_result $? "... and connected again once APNs accepts pushes"

# --- the delayed queue lost (Redis restarted empty): the rows still get their retry -----
T_LOST=$(openssl rand -hex 32)
device dlv-lost "$T_LOST"
script "$T_LOST 503 ServiceUnavailable 1"
push dlv-lost cap-dlv-lost
wait_for 15 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT status FROM deliveries WHERE target = '$T_LOST'\")\" = retry_due ]"
is "$(row "$T_LOST")" "retry_due/1/503/ServiceUnavailable" "a 503: the delivery waits on the delayed queue (retry_due)"
redis-cli -p "$REDIS_PORT" DEL cg:pushd:retry >/dev/null
wait_for 30 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT status FROM deliveries WHERE target = '$T_LOST'\")\" = sent ]"
is "$(row "$T_LOST" | cut -d/ -f1,2)" "sent/2" "the delayed queue deleted from Redis: the row is retried from PostgreSQL all the same"
is "$(oks "$T_LOST")" 1 "... and pushed once"
script ""

# --- killed mid-batch: no pair pushed twice ---------------------------------------
N_BIG=2000
sql "INSERT INTO devices (tenant_id, user_id, platform, device_token)
     SELECT 'default', 'dlv-big', 'ios', md5('big-a' || g) || md5('big-b' || g) FROM generate_series(1, $N_BIG) g" >/dev/null
# Every second device fails until the daemon is killed: half the batch is final, half
# retried: waiting on the delayed queue in Redis (cg:pushd:retry) or in flight.
sql "SELECT device_token || ' 500 InternalServerError' FROM devices WHERE user_id = 'dlv-big' AND id % 2 = 0" >"$SCRIPT.tmp" &&
	mv "$SCRIPT.tmp" "$SCRIPT"
push dlv-big cap-dlv-big
big() { sql "SELECT count(*) FILTER (WHERE d.status = 'sent') || '/'
               || count(*) FILTER (WHERE d.status IN ('pending', 'retry_due', 'retry_requested'))
               FROM deliveries d JOIN devices v ON v.id = d.device_id WHERE v.user_id = 'dlv-big'"; }
wait_for 30 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT count(*) FROM deliveries d JOIN devices v ON v.id = d.device_id WHERE v.user_id = 'dlv-big' AND d.status = 'sent'\")\" = $((N_BIG / 2)) ]"
is "$(big)" "$((N_BIG / 2))/$((N_BIG / 2))" "2,000 devices: half sent, half waiting to be retried"
due_rows() { sql "SELECT count(*) FROM deliveries d JOIN devices v ON v.id = d.device_id
                  WHERE v.user_id = 'dlv-big' AND d.status = 'retry_due' AND d.next_attempt_at IS NOT NULL"; }
wait_for 10 sh -c "[ \"\$(redis-cli -p $REDIS_PORT ZCARD cg:pushd:retry)\" -gt 0 ]"
t_result $? "the retries wait on the delayed queue in Redis ($(redis-cli -p "$REDIS_PORT" ZCARD cg:pushd:retry) due later)"
[ "$(due_rows)" -gt 0 ]
t_result $? "... and their rows say retry_due with next_attempt_at"
PUSHD_PID=$(tail -n 1 "$STACK_DIR/pids/capsule-pushd.pid")
kill -KILL "$PUSHD_PID"
wait "$PUSHD_PID" 2>/dev/null
diag "killed with $(big) sent/waiting, $(redis-cli -p "$REDIS_PORT" ZCARD cg:pushd:retry) on the delayed queue, $(redis-cli -p "$REDIS_PORT" XPENDING cg:events capsule-pushd | head -n 1) stream entr(y/ies) pending"
script ""
# Another daemon (another consumer of the group) finishes the work: what waits in Redis,
# retried rows that were in flight (after PUSH_RETRY_RECOVER_S) and, if the entry was
# not yet acknowledged, the entry itself (XAUTOCLAIM after PUSH_CLAIM_IDLE_S).
INSTANCE_ID=other stack_start_pushd 2>/dev/null
wait_for 60 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT count(*) FROM deliveries d JOIN devices v ON v.id = d.device_id WHERE v.user_id = 'dlv-big' AND d.status = 'sent'\")\" = $N_BIG ]"
is "$(big)" "$N_BIG/0" "killed (SIGKILL), another daemon finishes its work: all 2,000 sent"
sql "SELECT device_token FROM devices WHERE user_id = 'dlv-big'" | sort >"$T_DIR/big-tokens"
jq -r 'select(.status == 200) | .device_token' "$APNS_LOG" | sort | uniq -c | awk '{print $2 " " $1}' >"$T_DIR/ok-counts"
is "$(join "$T_DIR/big-tokens" "$T_DIR/ok-counts" | awk '$2 == 1' | wc -l)" "$N_BIG" "every one of the 2,000 devices got exactly one accepted push"
wait_for 10 sh -c "[ \"\$(redis-cli -p $REDIS_PORT XPENDING cg:events capsule-pushd | head -n 1)\" = 0 ]"
t_result $? "... and the entry is acknowledged"

# --- 10,000 devices ----------------------------------------------------------------
N_HUGE=10000
sql "INSERT INTO devices (tenant_id, user_id, platform, device_token)
     SELECT 'default', 'dlv-huge', 'ios', md5('huge-a' || g) || md5('huge-b' || g) FROM generate_series(1, $N_HUGE) g" >/dev/null
t0=$(date +%s)
push dlv-huge cap-dlv-huge
wait_for 60 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT count(*) FROM deliveries d JOIN devices v ON v.id = d.device_id WHERE v.user_id = 'dlv-huge' AND d.status = 'sent'\")\" = $N_HUGE ]"
t_result $? "an event for 10,000 devices: every row sent ($(($(date +%s) - t0)) s)"
sql "SELECT device_token FROM devices WHERE user_id = 'dlv-huge'" | sort >"$T_DIR/huge-tokens"
jq -r 'select(.status == 200) | .device_token' "$APNS_LOG" | sort | uniq -c | awk '{print $2 " " $1}' >"$T_DIR/ok-counts"
is "$(join -v1 "$T_DIR/huge-tokens" "$T_DIR/ok-counts" | wc -l)" 0 "... each token accepted at least once"
# A transfer that broke before its answer has an unknown outcome and is retried with the
# same apns-id (PUSH.md A7), so only those tokens may have been accepted twice.
grep -o 'transfer to device [0-9a-f]*' "$STACK_DIR/capsule-pushd.log" | awk '{print $4}' | sort -u >"$T_DIR/broken"
join "$T_DIR/huge-tokens" "$T_DIR/ok-counts" | awk '$2 != 1 {print substr($1, 1, 16)}' | sort -u >"$T_DIR/twice"
diag "$(wc -l <"$T_DIR/twice") token(s) accepted twice after a broken transfer, $(wc -l <"$T_DIR/broken") broken transfer(s)"
is "$(comm -23 "$T_DIR/twice" "$T_DIR/broken" | wc -l)" 0 "... and exactly once unless a transfer to it broke before its answer"
wait_for 10 sh -c "[ \"\$(redis-cli -p $REDIS_PORT XPENDING cg:events capsule-pushd | head -n 1)\" = 0 ]"
t_result $? "... and the entry is acknowledged"

# --- logs --------------------------------------------------------------------------
sanitizer_clean "$STACK_DIR"/capsule-pushd.log "$STACK_DIR"/fcgi.log
t_result $? "no sanitizer report in capsule-pushd or the FastCGI log"
is "$(grep -c 'postgresql.*recording push outcomes\|claiming deliveries\|picking deliveries' "$STACK_DIR/capsule-pushd.log")" 0 \
	"capsule-pushd logged no database error"

t_done

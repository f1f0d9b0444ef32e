#!/usr/bin/env bash
# e2e.sh: one alert from REST to a WebSocket client and to APNs, through the real
# lighttpd + spawn-fcgi, PostgreSQL, Redis, capsule-wsd, capsule-pushd and the fake APNs.
# Prints TAP. Every server is started on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin e2e

STACK_LOG_LEVEL=debug
it_stack_up "stack starts (PostgreSQL, Redis, fake APNs, capsule-wsd, capsule-pushd, spawn-fcgi) behind $(stack_web)"

WSC="$BUILD_DIR/tests/tools/ws-client"
WS_URL="ws://127.0.0.1:$HTTP_PORT/ws"   # through the web server, same origin as REST
SECRET=$(cat "$STACK_DIR/ws-secret")
DEVICE_TOKEN=$(openssl rand -hex 32)

# --- migrations are safe to run twice ---------------------------------------
out=$(stack_migrate 2>&1)
t_result $? "capsule-migrate runs again without error"
case "$out" in *"up to date"*) t_result 0 "second migration run applies nothing" ;; *) t_result 1 "second migration run applies nothing"; diag "$out" ;; esac
N_MIGRATIONS=$(ls "$SRC_DIR"/sql/[0-9][0-9][0-9]_*.sql | wc -l)
is "$(sql "SELECT count(*) FROM schema_migrations")" "$N_MIGRATIONS" "schema_migrations records each migration once"
mkdir -p "$T_DIR/sql"
cp "$SRC_DIR"/sql/*.sql "$T_DIR/sql/"
printf 'CREATE TABLE half_done (x int);\nSELECT no_such_function();\n' >"$T_DIR/sql/900_broken.sql"
"$BUILD_DIR/sql/capsule-migrate" -f "$CAPSULE_CONFIG" -s "$T_DIR/sql" >"$T_DIR/migrate-broken.out" 2>&1
is "$?" 1 "a failing migration makes capsule-migrate exit 1"
is "$(sql "SELECT count(*) FROM schema_migrations")/$(sql "SELECT to_regclass('half_done') IS NULL")" "$N_MIGRATIONS/t" \
	"a failing migration leaves nothing behind (not recorded, its first statement rolled back)"

# --- REST callers authenticate (security issue): a publisher of 'default' ---
http GET /activity/cap_456
is "$H_STATUS" 401 "a request without credentials answers 401"
HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token e2e-publisher default publisher)")

# --- WebSocket tokens ---------------------------------------------------------
http GET "/ws/token?user_id=user_789&device_token=device_abc"
is "$H_STATUS" 200 "GET /ws/token answers 200"
TOKEN=$(jqr .token)
is "$(jqr .expires_in)" 3600 "token expires_in is 3600"
http GET "/ws/token?user_id=user_other"
OTHER_TOKEN=$(jqr .token)
http GET "/ws/token"
is "$H_STATUS/$(jwt_payload "$(jqr .token)" | jq -r .sub)" "200/e2e-publisher" \
	"GET /ws/token without user_id mints a token for the caller itself"
http GET "/ws/token?user_id=bad%20id"
is "$H_STATUS" 422 "GET /ws/token with an invalid user_id answers 422"
is "$(jqr .error.field)" user_id "the error names user_id"

# --- an iOS device for user_789 (registration API comes later: SQL for now) --
sql "INSERT INTO devices (tenant_id, user_id, platform, device_token) VALUES ('default', 'user_789', 'ios', '$DEVICE_TOKEN')"

# --- clients: user_789 by query token, user_other by authenticate message ----
"$WSC" --url "$WS_URL?token=$TOKEN" --send '{"type":"subscribe","channel":"activities"}' \
	--until activity_created --timeout 20 >"$T_DIR/ws-a.out" 2>"$T_DIR/ws-a.err" &
WS_A=$!
"$WSC" --url "$WS_URL" --send "{\"type\":\"authenticate\",\"token\":\"$OTHER_TOKEN\"}" \
	--until activity_created --timeout 20 >"$T_DIR/ws-b.out" 2>"$T_DIR/ws-b.err" &
WS_B=$!
wait_for 10 grep -q '"subscribed"' "$T_DIR/ws-a.out"
t_result $? "client A (query token) is authenticated and subscribed"
grep -q '"authenticated"' "$T_DIR/ws-a.out"
t_result $? "client A got authenticated"
wait_for 10 grep -q '"authenticated"' "$T_DIR/ws-b.out"
t_result $? "client B (authenticate message) is authenticated"

# --- create ---------------------------------------------------------------
BODY='{"activity_id":"act_123","capsule_id":"cap_456","title":"Security Alert","message":"Suspicious login detected from new location","priority":"high","category":"security","user_id":"user_789","metadata":{"location":"San Francisco, CA","ip":"192.168.1.1"}}'
http POST /create-activity -H 'Content-Type: application/json' -H 'X-Request-ID: e2e-create-1' --data-binary "$BODY"
is "$H_STATUS" 201 "POST /create-activity answers 201"
CREATED=$H_BODY
is "$(jqr .success)" true "answer has success true"
is "$(jqr '.activity | [.activity_id, .capsule_id, .title, .state, .priority, .category, .user_id, .version] | join(",")')" \
	"act_123,cap_456,Security Alert,active,high,security,user_789,1" "answer carries the activity as created"
is "$(jqr .activity.metadata.location)" "San Francisco, CA" "metadata is kept"
jqr .activity.created_at | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
t_result $? "created_at is RFC 3339 UTC"
is "$(header X-Request-ID)" e2e-create-1 "X-Request-ID is echoed"
is "$(sql "SELECT count(*) FROM events WHERE capsule_id = 'cap_456' AND type = 'activity.created'")" 1 "the outbox event is written"

wait $WS_A
is "$?" 0 "client A receives activity_created"
MSG=$(grep '"activity_created"' "$T_DIR/ws-a.out" | head -n 1)
is "$(printf '%s' "$MSG" | jq -r '.activity.capsule_id')" cap_456 "the WebSocket message carries the activity"
is "$(printf '%s' "$MSG" | jq -r '.version')" 1 "the WebSocket message carries the version"
EVENT_ID=$(printf '%s' "$MSG" | jq -r '.event_id')
is "$(sql "SELECT count(*) FROM events WHERE event_id::text = '$EVENT_ID'")" 1 "event_id is the outbox event's id"

# user_other must not see user_789's activity; a tenant-wide one reaches both.
sleep 1
grep -q activity_created "$T_DIR/ws-b.out"
is "$?" 1 "client B (another user) does not receive user_789's activity"
"$WSC" --url "$WS_URL?token=$TOKEN" --until activity_created --timeout 20 >"$T_DIR/ws-c.out" 2>&1 &
WS_C=$!
wait_for 10 grep -q '"authenticated"' "$T_DIR/ws-c.out"
http POST /create-activity -H 'Content-Type: application/json' \
	--data-binary '{"capsule_id":"cap_all","title":"Maintenance window","priority":"low"}'
is "$H_STATUS" 201 "tenant-wide activity is created"
wait $WS_B
is "$?" 0 "client B receives the tenant-wide activity"
grep activity_created "$T_DIR/ws-b.out" | jq -r .activity.capsule_id | grep -qx cap_all
t_result $? "client B's message is the tenant-wide activity"
wait $WS_C
is "$?" 0 "client A' (default subscription) receives the tenant-wide activity"

# --- APNs ----------------------------------------------------------------------
APNS_LOG="$STACK_DIR/apns-requests.jsonl"
wait_for 15 grep -q "$DEVICE_TOKEN" "$APNS_LOG"
t_result $? "the fake APNs received a push for the device"
REQ=$(grep "$DEVICE_TOKEN" "$APNS_LOG" | head -n 1)
j() { printf '%s' "$REQ" | jq -r "$1"; }
is "$(j .status)" 200 "the fake APNs accepted the push (JWT, headers and payload valid)"
is "$(j .path)" "/3/device/$DEVICE_TOKEN" "path is /3/device/<token>"
is "$(j '.headers["apns-push-type"]')" alert "apns-push-type is alert"
is "$(j '.headers["apns-topic"]')" "$STACK_APNS_BUNDLE_ID" "apns-topic is the bundle id"
is "$(j '.headers["apns-priority"]')" 10 "apns-priority is 10 for a high-priority alert"
is "$(j '.headers["apns-collapse-id"]')" cap_456 "apns-collapse-id is the capsule id"
j '.headers["apns-id"]' | grep -Eq '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
t_result $? "apns-id is a lowercase UUID"
is "$(j '.jwt.header | [.alg, .kid, (has("typ"))] | map(tostring) | join(",")')" "ES256,$STACK_APNS_KEY_ID,false" \
	"provider token header is ES256 with the key id and no typ"
is "$(j '.jwt.claims.iss')" "$STACK_APNS_TEAM_ID" "provider token iss is the team id"
is "$(j '.jwt.claims.iat | type')" number "provider token iat is a number"
is "$(j '.body.aps.alert.title')" "Security Alert" "alert title is the activity title"
is "$(j '.body.aps.alert.body')" "Suspicious login detected from new location" "alert body is the activity message"
is "$(j '.body.aps["interruption-level"]')" time-sensitive "high priority is time-sensitive"
is "$(j '.body.aps["thread-id"]')" cap_456 "thread-id is the capsule id"
is "$(j '.body.capsule_id')" cap_456 "payload carries capsule_id"
is "$(grep "$DEVICE_TOKEN" "$APNS_LOG" | jq -r .body.capsule_id | grep -c '^cap_456$')" 1 "the activity was pushed to the device exactly once"
wait_for 10 sh -c "[ \"\$(redis-cli -p $REDIS_PORT XPENDING cg:events capsule-pushd | head -n 1)\" = 0 ]"
t_result $? "push-daemon acknowledged every event it consumed"

# --- read back ---------------------------------------------------------------
http GET /activity/cap_456
is "$H_STATUS" 200 "GET /activity/{capsule_id} answers 200"
is "$(printf '%s' "$H_BODY" | jq -S .activity)" "$(printf '%s' "$CREATED" | jq -S .activity)" "it returns the activity as created (cache)"
redis-cli -p "$REDIS_PORT" DEL "cg:{default}:activity:cap_456" >/dev/null
http GET /activity/cap_456
is "$(printf '%s' "$H_BODY" | jq -S .activity)" "$(printf '%s' "$CREATED" | jq -S .activity)" "the same from PostgreSQL after the cache entry is gone"
http GET /activity/cap%5F456
is "$H_STATUS" 200 "a percent-encoded capsule id is decoded"
http GET /activity/nope
is "$H_STATUS" 404 "unknown capsule answers 404"
is "$(jqr '[.success, .error.code, (.request_id | length > 0)] | map(tostring) | join(",")')" "false,not_found,true" \
	"404 has the JSON error shape with a request id"

# --- bad input changes nothing -------------------------------------------------
count_rows() { sql "SELECT (SELECT count(*) FROM activities) || '/' || (SELECT count(*) FROM events)"; }
BEFORE=$(count_rows)
http POST /create-activity -H 'Content-Type: application/json' --data-binary '{"title": "x",'
is "$H_STATUS" 400 "malformed JSON answers 400"
is "$(jqr .error.code)" malformed_json "400 says malformed_json"
http POST /create-activity -H 'Content-Type: application/json' --data-binary '{"message":"no title"}'
is "$H_STATUS" 422 "missing title answers 422"
is "$(jqr .error.field)" title "422 names the field title"
head -c 1100000 /dev/zero | tr '\0' 'a' | sed 's/^/{"title":"/; s/$/"}/' >"$T_DIR/big.json"
http POST /create-activity -H 'Content-Type: application/json' --data-binary "@$T_DIR/big.json"
is "$H_STATUS" 413 "a body over 1 MiB answers 413"
http POST /create-activity -H 'Content-Type: application/json' --data-binary "$BODY"
is "$H_STATUS" 409 "a second create with the same capsule_id answers 409"
http POST /create-activity -H 'Content-Type: application/json' --data-binary '{"title":"t","priority":"urgent"}'
is "$H_STATUS" 422 "an unknown priority answers 422"
is "$(jqr .error.field)" priority "422 names the field priority"
http GET /no/such/path
is "$H_STATUS" 404 "unknown path answers 404"
is "$(jqr .error.code)" not_found "404 has the error shape"
http GET /create-activity
is "$H_STATUS" 405 "wrong method answers 405"
is "$(header Allow)" POST "405 carries Allow: POST"
is "$(jqr .success)" false "405 has the error shape"
is "$(count_rows)" "$BEFORE" "no bad request wrote anything"

# --- bad WebSocket tokens close with 4401 ---------------------------------------
now=$(date +%s)
EXPIRED=$(hs256 "$SECRET" '{"alg":"HS256","typ":"JWT"}' \
	"{\"sub\":\"user_789\",\"tenant\":\"default\",\"role\":\"user\",\"iss\":\"capsule-gateway\",\"iat\":$((now - 7200)),\"nbf\":$((now - 7200)),\"exp\":$((now - 3600))}")
FORGED=$(hs256 "not-the-secret-at-all" '{"alg":"HS256","typ":"JWT"}' \
	"{\"sub\":\"user_789\",\"tenant\":\"default\",\"role\":\"user\",\"iss\":\"capsule-gateway\",\"iat\":$now,\"nbf\":$now,\"exp\":$((now + 600))}")
VALID=$(hs256 "$SECRET" '{"alg":"HS256","typ":"JWT"}' \
	"{\"sub\":\"user_789\",\"tenant\":\"default\",\"role\":\"user\",\"iss\":\"capsule-gateway\",\"iat\":$now,\"nbf\":$now,\"exp\":$((now + 600))}")
NONE="$(printf '{"alg":"none"}' | b64url).$(printf '{"sub":"user_789","tenant":"default","iss":"capsule-gateway","exp":%s}' $((now + 600)) | b64url)."
for case in "expired:$EXPIRED" "forged:$FORGED" "alg none:$NONE" "garbage:abc.def"; do
	name=${case%%:*}
	tok=${case#*:}
	"$WSC" --url "$WS_URL?token=$tok" --until authenticated --timeout 10 >"$T_DIR/ws-bad.out" 2>&1
	rc=$?
	is "$rc/$(grep '^close' "$T_DIR/ws-bad.out")" "3/close 4401" "$name token closes with 4401"
done
"$WSC" --url "$WS_URL" --send '{"type":"authenticate","token":"abc.def.ghi"}' --until authenticated --timeout 10 >"$T_DIR/ws-bad.out" 2>&1
is "$?/$(grep '^close' "$T_DIR/ws-bad.out")" "3/close 4401" "a bad token in an authenticate message closes with 4401"
"$WSC" --url "$WS_URL?token=$VALID" --send '{"type":"ping"}' --until pong --timeout 10 >"$T_DIR/ws-ping.out" 2>&1
is "$?" 0 "a token made independently with the secret is accepted, and ping answers pong"

# --- health ------------------------------------------------------------------
"$WSC" --url "$WS_URL?token=$TOKEN" --until never --timeout 15 >/dev/null 2>&1 &
WS_IDLE=$!
health_has_ws() {
	curl -sS "http://127.0.0.1:$HTTP_PORT/health" | jq -e '.websocket_connections >= 1' >/dev/null
}
wait_for 12 health_has_ws
t_result $? "/health counts WebSocket connections from the ws-daemon registry"
http GET /health
is "$H_STATUS" 200 "GET /health answers 200"
is "$(jqr '[.status, .database, .redis, .apns] | join(",")')" "healthy,connected,connected,connected" \
	"health: healthy, database, redis and apns connected"
jqr .uptime_seconds | grep -Eq '^[0-9]+$'
t_result $? "health carries uptime_seconds"
kill "$WS_IDLE" 2>/dev/null
wait "$WS_IDLE" 2>/dev/null

# --- everything stops cleanly ---------------------------------------------------
for d in capsule-wsd capsule-pushd; do
	pid=$(cat "$STACK_DIR/pids/$d.pid")
	kill -TERM "$pid"
	wait "$pid"
	is "$?" 0 "$d exits 0 on SIGTERM"
	rm -f "$STACK_DIR/pids/$d.pid"
done
stack_stop_web
stack_stop fcgi
for log in capsule-wsd capsule-pushd fcgi "$(stack_web)-error" fake-apns; do
	if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$STACK_DIR/$log.log" 2>/dev/null; then
		t_result 1 "no sanitizer report in $log.log"
		grep -E -A5 'ERROR: |runtime error:' "$STACK_DIR/$log.log" | head -n 30 | sed 's/^/# /'
	else
		t_result 0 "no sanitizer report in $log.log"
	fi
done

t_done

#!/usr/bin/env bash
# registry.sh: the WebSocket connection registry (issue 5 item 7): capsule-wsd records each
# authenticated connection in Redis with a heartbeat, GET /api/v1/admin/connections lists the
# caller's tenant's ones, /statistics counts them, disconnects and SIGTERM remove them.
# Prints TAP. Every server is started on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin registry

STACK_LOG_LEVEL=debug
it_stack_up "stack starts behind $(stack_web)"

WSC="$BUILD_DIR/tests/tools/ws-client"
WS_URL="ws://127.0.0.1:$HTTP_PORT/ws"
SECRET=$(cat "$STACK_DIR/ws-secret")
WSD_LOG="$STACK_DIR/capsule-wsd.log"
RCLI=(redis-cli -p "$REDIS_PORT")

T_ADMIN=$(bearer_token reg-admin default admin)
T_VIEW=$(bearer_token reg-view default viewer)
T_ACME_ADMIN=$(bearer_token reg-acme-admin acme admin)
as() { HTTP_AUTH=(-H "Authorization: Bearer $1"); }

# ws_token SUB TENANT [DEVICE_TOKEN]: a WebSocket token signed here with the secret.
ws_token() {
	local now
	now=$(date +%s)
	hs256 "$SECRET" '{"alg":"HS256","typ":"JWT"}' \
		"{\"sub\":\"$1\",\"tenant\":\"$2\",\"role\":\"user\",\"device_token\":\"${3:-}\",\"iss\":\"capsule-gateway\",\"iat\":$now,\"nbf\":$now,\"exp\":$((now + 600))}"
}
authenticated() { grep -q '"authenticated"' "$T_DIR/$1.out"; }
subscribed() { grep -q '"subscribed"' "$T_DIR/$1.out"; }

# client NAME SUB TENANT DEVICE_TOKEN [ws-client args]: stays until killed; pid in BG_PID.
client() {
	local name=$1 sub=$2 tenant=$3 dev=$4
	shift 4
	"$WSC" --url "$WS_URL?token=$(ws_token "$sub" "$tenant" "$dev")" --pong --until never --timeout 60 "$@" \
		>"$T_DIR/$name.out" 2>&1 &
	BG_PID=$!
}

# conns [QUERY]: GET /api/v1/admin/connections as the default admin.
conns() { as "$T_ADMIN"; http GET "/api/v1/admin/connections${1:-}"; }
conns_total_is() { conns; [ "$H_STATUS" = 200 ] && [ "$(jqr .total)" = "$1" ]; }
stats_ws_is() {
	as "$T_VIEW"
	http GET /statistics
	[ "$H_STATUS" = 200 ] && [ "$(jqr .websocket_connections)" = "$1" ]
}

# --- before anyone connects --------------------------------------------------
conns
is "$H_STATUS/$(jqr .total)/$(jqr '.connections | length')" "200/0/0" "no connection: an empty list"

# --- two clients of default (one with a device token), one of acme ---------------
client d1 u-reg1 default dev-reg-1 --send '{"type":"subscribe","channel":"capsule:cap-r"}'
D1=$BG_PID
client d2 u-reg2 default ""
D2=$BG_PID
client a1 u-reg-acme acme dev-acme
A1=$BG_PID
wait_for 10 sh -c "grep -q '\"subscribed\"' '$T_DIR/d1.out' && grep -q '\"authenticated\"' '$T_DIR/d2.out' && grep -q '\"authenticated\"' '$T_DIR/a1.out'"
t_result $? "three clients are connected (two of default, one of acme)"

wait_for 7 conns_total_is 2
t_result $? "within 7 s the admin list shows the two connections of default"
conns
diag "$(printf '%s' "$H_BODY" | head -c 600)"
is "$(jqr '[.connections[].user_id] | sort | join(",")')" "u-reg1,u-reg2" "the list names both users"
is "$(jqr '[.connections[] | select(.user_id == "u-reg1") | .device_token] | join(",")')" "dev-reg-1" \
	"the device token of the first client is listed"
is "$(jqr '[.connections[].instance] | unique | join(",")')" "local" "every entry names its instance"
is "$(jqr '[.connections[].tenant] | unique | join(",")')" "default" "every entry is of the caller's tenant"
is "$(jqr '[.connections[] | .connection_id | startswith("local:")] | all')" "true" \
	"connection ids are <instance>:<serial>"
is "$(jqr '[.connections[].connection_id] | unique | length')" 2 "connection ids are distinct"
rfc='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
is "$(jqr "[.connections[] | (.connected_at | test(\"$rfc\")) and (.last_heartbeat | test(\"$rfc\"))] | all")" "true" \
	"connected_at and last_heartbeat are RFC 3339"
is "$(jqr '[.connections[] | .connected_at <= .last_heartbeat] | all')" "true" "last_heartbeat is not before connected_at"
is "$(jqr '.connections[] | select(.user_id == "u-reg1") | .subscriptions | sort | join(",")')" "activities,capsule:cap-r" \
	"the subscriptions of the first client are listed"
is "$(jqr '.connections[] | select(.user_id == "u-reg2") | .subscriptions | join(",")')" "activities" \
	"the second client has the default subscription"
is "$(jqr '[.connections[].health] | unique | join(",")')" "ok" "health is ok"
is "$(jqr '[.connections[].connected_at] == ([.connections[].connected_at] | sort)')" "true" "sorted by connected_at"
is "$(jqr '[.connections[] | select(.user_id == "u-reg-acme")] | length')" 0 "the acme connection is not listed for default"

# --- filters, other tenant, roles -------------------------------------------------
conns "?user_id=u-reg2"
is "$H_STATUS/$(jqr .total)/$(jqr '.connections[0].user_id')" "200/1/u-reg2" "?user_id= filters by user"
conns "?instance=local"
is "$H_STATUS/$(jqr .total)" "200/2" "?instance= of this instance keeps both"
conns "?instance=elsewhere"
is "$H_STATUS/$(jqr .total)" "200/0" "?instance= of another instance keeps none"
as "$T_ACME_ADMIN"
http GET /api/v1/admin/connections
is "$H_STATUS/$(jqr '[.connections[].user_id] | join(",")')/$(jqr '.connections[0].device_token')" "200/u-reg-acme/dev-acme" \
	"an acme admin sees only the acme connection"
as "$T_VIEW"
http GET /api/v1/admin/connections
is "$H_STATUS/$(jqr .error.code)" "403/forbidden" "a viewer gets 403"
HTTP_AUTH=()
http GET /api/v1/admin/connections
is "$H_STATUS" 401 "no credential: 401"
n=$(sql "SELECT count(*) FROM audit_log WHERE action LIKE '%connection%'")
is "$n" 0 "listing connections writes no audit row"

# --- statistics and the Redis keys -----------------------------------------------
wait_for 7 stats_ws_is 3
t_result $? "GET /statistics websocket_connections is 3 (2 default + 1 acme listed)"
ttl=$("${RCLI[@]}" TTL cg:ws:registry:local)
[ "$ttl" -gt 0 ] && [ "$ttl" -le 15 ]
t_result $? "the registry hash expires within 15 s unless refreshed (TTL $ttl)"
is "$("${RCLI[@]}" HLEN cg:ws:registry:local)" 3 "the hash holds one field per connection"

# --- a disconnect disappears -------------------------------------------------------
kill "$D2" 2>/dev/null
wait "$D2" 2>/dev/null
wait_for 7 conns_total_is 1
t_result $? "within 7 s of a disconnect the connection is gone from the list"
conns
is "$(jqr '.connections[0].user_id')" "u-reg1" "the other one is still listed"
wait_for 7 stats_ws_is 2
t_result $? "GET /statistics websocket_connections follows (2)"
grep -q 'disconnect from .* user u-reg2: .*(connection local:' "$WSD_LOG"
t_result $? "the disconnect is logged with its reason and connection id"
grep -q 'authenticated as user u-reg1 .*connection local:' "$WSD_LOG"
t_result $? "the connect is logged with the connection id"

# --- the hash expires when the instance stops refreshing it -----------------------
# (the registry key itself expiring is Redis' job; check that the value is only
# kept alive by the heartbeat: it is rewritten, so its TTL goes back up)
sleep 1
ttl1=$("${RCLI[@]}" TTL cg:ws:registry:local)
wait_for 7 sh -c "[ \$(redis-cli -p $REDIS_PORT TTL cg:ws:registry:local) -gt $ttl1 ]"
t_result $? "the heartbeat rewrites the hash (TTL refreshed from $ttl1)"

# --- SIGTERM removes the hash -------------------------------------------------------
pid=$(cat "$STACK_DIR/pids/capsule-wsd.pid")
kill -TERM "$pid"
wait "$D1" 2>/dev/null
wait "$A1" 2>/dev/null
wait "$pid"
is "$?" 0 "capsule-wsd exits 0 on SIGTERM"
rm -f "$STACK_DIR/pids/capsule-wsd.pid"
is "$("${RCLI[@]}" EXISTS cg:ws:registry:local)/$("${RCLI[@]}" EXISTS cg:ws:conns:local)" "0/0" \
	"SIGTERM deletes the registry hash and the count key"
conns
is "$H_STATUS/$(jqr .total)" "200/0" "the list is empty after the instance stopped"

# --- Redis down --------------------------------------------------------------------
"${RCLI[@]}" SHUTDOWN NOSAVE >/dev/null 2>&1
conns
is "$H_STATUS/$(jqr .error.code)" "503/service_unavailable" "Redis down: 503 service_unavailable"

if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$WSD_LOG"; then
	t_result 1 "no sanitizer report in capsule-wsd.log"
	grep -E -A5 'ERROR: |runtime error:' "$WSD_LOG" | head -n 30 | sed 's/^/# /'
else
	t_result 0 "no sanitizer report in capsule-wsd.log"
fi

t_done

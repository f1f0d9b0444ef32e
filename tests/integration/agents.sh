#!/usr/bin/env bash
# agents.sh: WebSocket agents (service clients, issue 5): upgrade with an API key (X-API-Key or
# api-key) and no token, the registered message, agent ids (default, query, X-Agent-ID), delivery
# of events addressed to an agent on all of its connections and to nobody else, bad keys (4401),
# channels, the admin connection list, resume, and PostgreSQL down (1013). Prints TAP. Every
# server is started on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin agents

export WS_MAX_CONNECTIONS_PER_USER=3
STACK_LOG_LEVEL=debug
it_stack_up "stack starts behind $(stack_web) with ws_max_connections_per_user 3"

WSC=${WSC:-$BUILD_DIR/tests/tools/ws-client}
WS_URL="ws://127.0.0.1:$HTTP_PORT/ws"
WS_DIRECT="ws://127.0.0.1:$WS_PORT/ws"
WSD_LOG="$STACK_DIR/capsule-wsd.log"
CADMIN="$BUILD_DIR/sql/capsule-admin"
T_PUB=$(bearer_token ag-pub default publisher)
T_ACME_PUB=$(bearer_token ag-acme-pub acme publisher)
T_ADMIN=$(bearer_token ag-admin default admin)

# issue TENANT ROLE NAME [capsule-admin options]: a new API key (stdout).
issue() { "$CADMIN" -f "$CAPSULE_CONFIG" key issue "$@" 2>>"$T_DIR/capsule-admin.err"; }
key_id() { printf '%s' "${1:4:16}"; }
out() { printf '%s/%s.out' "$T_DIR" "$1"; }
close_of() { grep '^close' "$(out "$1")"; }
msg_of() { ws_msg "$(out "$1")" "$2"; }
registered() { grep -q '"registered"' "$(out "$1")"; }
has() { grep -q "$2" "$(out "$1")"; }
count() { grep -c "$2" "$(out "$1")"; }

K_PUB=$(issue default publisher "agent publisher")
K_PUB2=$(issue default publisher "agent publisher 2")
K_OPER=$(issue default operator "agent operator")
K_VIEW=$(issue default viewer "agent viewer")
K_ACME=$(issue acme publisher "acme agent")
K_REV=$(issue default publisher "agent to revoke")
K_FRESH=$(issue default publisher "agent used once PostgreSQL is down")
K_EXP=$(issue default publisher "agent expiring" --expires-in 1)
K_EXP_T=$(date +%s)
n=0
for k in "$K_PUB" "$K_PUB2" "$K_OPER" "$K_VIEW" "$K_ACME" "$K_REV" "$K_FRESH" "$K_EXP"; do
	case "$k" in cgk_*) n=$((n + 1)) ;; esac
done
is "$n" 8 "8 API keys issued with capsule-admin"
[ "$n" = 8 ] && : >"$T_DIR/capsule-admin.err" || sed 's/^/# /' "$T_DIR/capsule-admin.err"

# agent NAME KEY [QUERY [ws-client args]]: an agent through the web server
# that stays until killed (or 60 s); pid in CL_PID and PIDS.
PIDS=""
agent() {
	local name=$1 key=$2 q=${3:-}
	shift 3
	"$WSC" --url "$WS_URL${q:+?$q}" --header "X-API-Key: $key" --pong --until never --timeout 60 "$@" \
		>"$(out "$name")" 2>&1 &
	CL_PID=$!
	PIDS="$PIDS $CL_PID"
}
# once NAME URL [ws-client args]: a short-lived client until registered (5 s).
once() {
	local name=$1 url=$2
	shift 2
	"$WSC" --url "$url" --until registered --timeout 5 "$@" >"$(out "$name")" 2>&1
}

# --- registering --------------------------------------------------------------------
once reg1 "$WS_URL" --header "X-API-Key: $K_PUB"
is "$?" 0 "an upgrade with X-API-Key and no token is answered with registered"
R=$(msg_of reg1 registered)
diag "$R"
is "$(printf '%s' "$R" | jq -r '"\(.agent_id)/\(.tenant)"')" "key_$(key_id "$K_PUB")/default" \
	"registered names the default agent id key_<key_id> and the key's tenant"
printf '%s' "$R" | jq -e '.connection_id | type == "string" and startswith("local:")' >/dev/null
t_result $? "registered carries the connection id (<instance>:<serial>)"
has reg1 '"authenticated"'
is "$?" 1 "there is no authenticated message for an agent"
once reg2 "$WS_URL" --header "api-key: $K_PUB"
is "$?/$(msg_of reg2 registered | jq -r .agent_id)" "0/key_$(key_id "$K_PUB")" "the api-key header works too"
once reg3 "$WS_URL?agent_id=builder-1" --header "X-API-Key: $K_PUB"
is "$?/$(msg_of reg3 registered | jq -r .agent_id)" "0/builder-1" "agent_id in the query names the agent"
once reg4 "$WS_URL" --header "X-API-Key: $K_PUB" --header "X-Agent-ID: builder-2"
is "$?/$(msg_of reg4 registered | jq -r .agent_id)" "0/builder-2" "the X-Agent-ID header names the agent"
once reg5 "$WS_DIRECT?agent_id=builder-3" --header "X-API-Key: $K_PUB"
is "$?/$(msg_of reg5 registered | jq -r .agent_id)" "0/builder-3" "straight to capsule-wsd (no web server) too"
grep -q "$(key_id "$K_PUB")" "$WSD_LOG"
t_result $? "the log names the key id"
if grep -qF "${K_PUB:21}" "$WSD_LOG"; then
	t_result 1 "the log never holds the key's secret part"
else
	t_result 0 "the log never holds the key's secret part"
fi

# --- refused keys: 4401 -----------------------------------------------------------------
"$CADMIN" -f "$CAPSULE_CONFIG" key revoke "$(key_id "$K_REV")" >"$T_DIR/revoke.out" 2>&1
t_result $? "capsule-admin key revoke"
while [ $(($(date +%s) - K_EXP_T)) -lt 2 ]; do sleep 0.2; done
for c in "revoked|$K_REV" "expired (--expires-in 1, 2 s later)|$K_EXP" "garbage|cgk_garbage" \
	"unknown key id|cgk_0123456789abcdef_${K_PUB:21}" \
	"right key id, wrong secret|cgk_$(key_id "$K_PUB")_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=' | cut -c1-43)"; do
	once bad "$WS_URL" --header "X-API-Key: ${c#*|}"
	is "$?/$(close_of bad)" "3/close 4401" "key ${c%%|*}: close 4401"
done
once both "$WS_URL?token=$(ws_jwt u-both)" --header "X-API-Key: $K_PUB"
is "$?/$(close_of both)" "3/close 4401" "a token and a key at once: close 4401"

# --- delivery -----------------------------------------------------------------------------
agent a7q "$K_PUB" "agent_id=agent-7"
A7Q=$CL_PID
agent a7h "$K_PUB2" "" --header "X-Agent-ID: agent-7"
agent a8 "$K_PUB" "agent_id=agent-8"
agent adef "$K_PUB" ""
agent acme7 "$K_ACME" "agent_id=agent-7"
"$WSC" --url "$WS_URL?token=$(ws_jwt agent-7)" --pong --until never --timeout 60 \
	--send '{"type":"subscribe","channel":"tenant"}' >"$(out user7)" 2>&1 &
PIDS="$PIDS $!"
ready() { for c in a7q a7h a8 adef acme7; do registered "$c" || return 1; done; has user7 '"subscribed"'; }
wait_for 15 ready
t_result $? "two connections of agent-7 (two keys), agent-8, a default-id agent, acme's agent-7 and a user named agent-7 are up"

jreq() { http POST /api/v1/events -H 'Content-Type: application/json' --data-binary "$1"; }
HTTP_AUTH=(-H "Authorization: Bearer $T_PUB")
jreq '{"type":"api.deployed","agent_id":"agent-7","data":{"marker":"to-agent-7"}}'
is "$H_STATUS" 202 "an event for agent-7 is published"
E7=$(jqr .event.event_id)
jreq '{"type":"api.deployed","agent_id":"agent-8","data":{"marker":"to-agent-8"}}'
HTTP_AUTH=(-H "Authorization: Bearer $T_ACME_PUB")
jreq '{"type":"api.deployed","agent_id":"agent-7","data":{"marker":"acme-agent-7"}}'
is "$H_STATUS" 202 "acme publishes an event for its own agent-7"
HTTP_AUTH=()
wait_for 10 sh -c "grep -q to-agent-7 '$(out a7q)' && grep -q to-agent-7 '$(out a7h)' && grep -q to-agent-8 '$(out a8)' && grep -q acme-agent-7 '$(out acme7)'"
t_result $? "agent-7's event reached both of its connections, agent-8's and acme's reached theirs"
sleep 0.5
is "$(count a7q to-agent-7)/$(count a7h to-agent-7)" "1/1" "each agent-7 connection got it once"
is "$(msg_of a7q api_deployed | jq -r '.event_id')" "$E7" "with its event_id"
has a8 to-agent-7 || has adef to-agent-7 || has acme7 to-agent-7
is "$?" 1 "no other agent got agent-7's event (another id, the default id, acme's agent-7)"
has user7 to-agent-7
is "$?" 1 "a user named agent-7 (subscribed to activities and tenant) did not get it"
has a7q to-agent-8 || has a7h to-agent-8 || has user7 to-agent-8
is "$?" 1 "agent-8's event reached only agent-8"
has a7q acme-agent-7 || has a7h acme-agent-7
is "$?" 1 "acme's event for its agent-7 did not reach default's agent-7"

# --- a third connection is allowed, a fourth is over ws_max_connections_per_user ---------
once a7c "$WS_URL?agent_id=agent-7" --header "X-API-Key: $K_PUB"
is "$?" 0 "a third connection of agent-7 registers (ws_max_connections_per_user 3)"
agent a7c3 "$K_PUB" "agent_id=agent-7"
A7C3=$CL_PID
wait_for 10 registered a7c3
once a7d "$WS_URL?agent_id=agent-7" --header "X-API-Key: $K_PUB"
is "$?/$(close_of a7d)" "3/close 4429" "a fourth one is closed with 4429"
kill_wait "$A7C3"

# --- channels and the key's role --------------------------------------------------------
# (the key is checked after the upgrade: messages wait for registered)
agent chan "$K_PUB" "agent_id=agent-chan" --send-after registered --send '{"type":"subscribe","channel":"capsule:cap-ag"}'
agent oper "$K_OPER" "agent_id=agent-oper" --send-after registered --send '{"type":"subscribe","channel":"activities"}'
agent view "$K_VIEW" "agent_id=agent-view" --send-after registered --send '{"type":"subscribe","channel":"activities"}'
wait_for 10 sh -c "grep -q '\"subscribed\"' '$(out chan)' && grep -q '\"subscribed\"' '$(out oper)' && grep -q '\"subscribed\"' '$(out view)'"
t_result $? "agents subscribe to capsule:cap-ag and activities (subscribed)"
HTTP_AUTH=(-H "Authorization: Bearer $T_PUB")
jreq '{"type":"api.deployed","channel":"capsule:cap-ag","data":{"marker":"chan-ag"}}'
jreq '{"type":"api.deployed","user_id":"u-someone","data":{"marker":"for-u-someone"}}'
jreq '{"type":"api.deployed","data":{"marker":"tenant-wide"}}'
HTTP_AUTH=()
wait_for 10 has chan chan-ag
t_result $? "an agent subscribed to capsule:cap-ag gets that channel's event"
wait_for 10 has oper for-u-someone
t_result $? "an agent with an operator key subscribed to activities sees a user's event (operator sees the tenant's)"
wait_for 10 has view tenant-wide
t_result $? "an agent with a viewer key gets the tenant-wide event"
sleep 0.3
has view for-u-someone
is "$?" 1 "but not a user's event"
has a7q chan-ag || has a7q tenant-wide
is "$?" 1 "an agent that subscribed to nothing gets no channel or tenant event"

# --- the admin list ----------------------------------------------------------------------
conns_ok() {
	HTTP_AUTH=(-H "Authorization: Bearer $T_ADMIN")
	http GET /api/v1/admin/connections
	HTTP_AUTH=()
	[ "$H_STATUS" = 200 ] && [ "$(jqr '[.connections[] | select(.agent_id == "agent-7")] | length')" = 2 ]
}
wait_for 10 conns_ok
t_result $? "GET /api/v1/admin/connections lists agent-7's two connections"
diag "$(printf '%s' "$H_BODY" | jq -c '.connections[] | select(.agent_id == "agent-7")' 2>/dev/null | head -n 1)"
is "$(jqr '[.connections[] | select(.agent_id == "agent-7") | .kind] | unique | join(",")')" "agent" \
	"their entries say kind agent"
is "$(jqr '[.connections[] | select(.agent_id != null and .agent_id != "") | .kind] | unique | join(",")')" "agent" \
	"every entry with an agent_id is kind agent"
is "$(jqr '[.connections[] | select(.user_id == "agent-7") | .kind] | join(",")')" "user" \
	"the user named agent-7 is kind user"
is "$(jqr '[.connections[] | select(.agent_id == "agent-7" and .tenant != "default")] | length')" 0 \
	"acme's agent-7 is not in default's list"

# --- an agent resumes with last_event_id ---------------------------------------------------
agent r1 "$K_PUB" "agent_id=agent-res"
wait_for 10 registered r1
HTTP_AUTH=(-H "Authorization: Bearer $T_PUB")
jreq '{"type":"api.deployed","agent_id":"agent-res","data":{"marker":"res-0"}}'
R0=$(jqr .event.event_id)
wait_for 10 has r1 res-0
kill_wait "$CL_PID"
: >"$T_DIR/res.ids"
for i in 1 2 3; do printf '{"type":"api.deployed","agent_id":"agent-res","data":{"marker":"res-%d"}}\n' "$i"; done |
	post_events "$T_PUB" "$T_DIR/res.ids"
HTTP_AUTH=()
agent r2 "$K_PUB" "agent_id=agent-res&last_event_id=$R0" --ack
wait_for 15 grep -q '"resumed"\|"resync_required"' "$(out r2)"
sleep 0.3
is "$(ws_events "$(out r2)" | tr '\n' ' ')" "$(tr '\n' ' ' <"$T_DIR/res.ids")RESUMED " \
	"an agent reconnecting with last_event_id gets the 3 it missed, then resumed"
agent_cursor() { sql "SELECT stream_ms || '-' || stream_seq FROM ws_cursors WHERE tenant_id = 'default' AND subject = 'agent:agent-res' AND device = ''" 2>/dev/null; }
last_pos=$(grep '^{' "$(out r2)" | jq -r 'select((.event_id // "") != "") | .stream_id' | tail -n 1)
cursor_ok() { [ -n "$last_pos" ] && [ "$(agent_cursor)" = "$last_pos" ]; }
wait_for 3 cursor_ok
t_result $? "its acks move the cursor of subject agent:agent-res, device \"\" ($(agent_cursor), want $last_pos)"
kill_wait "$CL_PID"

kill_wait $PIDS
PIDS=""

# --- PostgreSQL down: 1013 (last: the key store is gone) -------------------------------------
stack_stop_pg
is "$(sql "SELECT 1" >/dev/null 2>&1 && echo up || echo down)" down "PostgreSQL is stopped"
# (lws clients report 1013 as 1002: a raw socket reads the close frame)
is "$(raw_ws_close "$WS_PORT" /ws "X-API-Key: $K_FRESH")" 1013 "an agent key cannot be checked: close 1013"
once pgdown "$WS_URL" --header "X-API-Key: $K_FRESH"
is "$?" 3 "through the web server too, the connection is closed"
once pgdown-user "$WS_URL?token=$(ws_jwt u-pgdown)" --until authenticated
is "$?" 0 "a user with a token still connects (tokens need no database)"
stack_start_pg >/dev/null 2>&1
t_result $? "PostgreSQL starts again on the same port"
pg_back() { once pgup "$WS_URL" --header "X-API-Key: $K_FRESH"; }
wait_for 20 pg_back
t_result $? "then the agent registers again"

if sanitizer_clean "$WSD_LOG" "$STACK_DIR"/fcgi*.log; then
	t_result 0 "no sanitizer report"
else
	t_result 1 "no sanitizer report"
	grep -h -E -A5 'ERROR: |runtime error:' "$WSD_LOG" | head -n 30 | sed 's/^/# /'
fi
t_done

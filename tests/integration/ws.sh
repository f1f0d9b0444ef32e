#!/usr/bin/env bash
# ws.sh: capsule-wsd's protocol details, heartbeat, limits, ordering and shutdown, through the
# web server in front of it, with small limits and a fast heartbeat set in the environment.
# Prints TAP. Every server is started on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin ws

# The environment overrides the config file for every program of the stack.
PER_IP=60
export WS_PING_INTERVAL=1 WS_PONG_TIMEOUT=3 WS_MAX_CONNECTIONS=8 WS_MAX_CONNECTIONS_PER_USER=2
export WS_CONNECT_ATTEMPTS_PER_IP_PER_MINUTE=$PER_IP
STACK_LOG_LEVEL=debug
it_stack_up "stack starts behind $(stack_web) with ping 1 s, pong timeout 3 s, small connection limits"

WSC="$BUILD_DIR/tests/tools/ws-client"
WS_URL="ws://127.0.0.1:$HTTP_PORT/ws"
SECRET=$(cat "$STACK_DIR/ws-secret")
WSD_LOG="$STACK_DIR/capsule-wsd.log"

# ws_token SUB: a WebSocket token of tenant default, signed here with the secret.
ws_token() {
	local now
	now=$(date +%s)
	hs256 "$SECRET" '{"alg":"HS256","typ":"JWT"}' \
		"{\"sub\":\"$1\",\"tenant\":\"default\",\"role\":\"user\",\"iss\":\"capsule-gateway\",\"iat\":$now,\"nbf\":$now,\"exp\":$((now + 600))}"
}

# close_of FILE: the "close <code>" line a client printed (empty if none).
close_of() { grep '^close' "$1"; }

# bg_client NAME SUB [ws-client args...]: a client that stays until killed
# (or its timeout), output in $T_DIR/NAME.out; its pid in BG_PID.
bg_client() {
	local name=$1 sub=$2
	shift 2
	"$WSC" --url "$WS_URL?token=$(ws_token "$sub")" --until never "$@" >"$T_DIR/$name.out" 2>&1 &
	BG_PID=$!
}

authenticated() { grep -q '"authenticated"' "$T_DIR/$1.out"; }

# --- a client for the SIGTERM check at the end (answers pings, stays) ---------
bg_client term u-term --pong --timeout 60
TERM_PID=$BG_PID
wait_for 10 authenticated term
t_result $? "a long-lived client (answering pings) is connected"

# --- ping, pong, server pings ---------------------------------------------------
"$WSC" --url "$WS_URL?token=$(ws_token u-ping)" --send '{"type":"ping"}' --until pong --timeout 5 >"$T_DIR/ping.out" 2>&1
is "$?" 0 "ping is answered with pong"
"$WSC" --url "$WS_URL?token=$(ws_token u-ping)" --until ping --timeout 5 >"$T_DIR/sping.out" 2>&1
is "$?" 0 "the server sends {\"type\":\"ping\"} (every ws_ping_interval)"

# --- heartbeat: a silent client is closed with 4408, one that answers stays ----
start=$(date +%s)
"$WSC" --url "$WS_URL?token=$(ws_token u-silent)" --until never --timeout 15 >"$T_DIR/silent.out" 2>&1 &
SILENT=$!
"$WSC" --url "$WS_URL?token=$(ws_token u-alive)" --pong --until never --timeout 6 >"$T_DIR/alive.out" 2>&1 &
ALIVE=$!
wait $SILENT
rc=$?
elapsed=$(($(date +%s) - start))
is "$rc/$(close_of "$T_DIR/silent.out")" "3/close 4408" "a client that never answers pings is closed with 4408"
[ "$elapsed" -ge 2 ] && [ "$elapsed" -le 6 ]
t_result $? "the silent client is closed near ws_pong_timeout (3 s; took ${elapsed} s)"
wait $ALIVE
rc=$?
is "$rc/$(close_of "$T_DIR/alive.out")" "1/" "a client that answers with pong is still connected after 6 s (2x the timeout)"
n=$(grep -c '"ping"' "$T_DIR/alive.out")
[ "$n" -ge 4 ]
t_result $? "it received the server's pings meanwhile ($n)"
grep -q 'heartbeat\|nothing received' "$WSD_LOG"
t_result $? "the heartbeat close is logged"

# --- message size -------------------------------------------------------------
"$WSC" --url "$WS_URL?token=$(ws_token u-big)" --send-big 1048576 --until pong --timeout 10 >"$T_DIR/big-ok.out" 2>&1
is "$?" 0 "a message of exactly ws_max_message (1 MiB) is accepted"
"$WSC" --url "$WS_URL?token=$(ws_token u-big)" --send-big 1048577 --until never --timeout 10 >"$T_DIR/big.out" 2>&1
is "$?/$(close_of "$T_DIR/big.out")" "3/close 1009" "a message over ws_max_message closes with 1009"

# --- channels -------------------------------------------------------------------
"$WSC" --url "$WS_URL?token=$(ws_token u-chan)" --send '{"type":"subscribe","channel":"no-such-channel"}' \
	--until error --timeout 5 >"$T_DIR/chan.out" 2>&1
rc=$?
is "$rc/$(grep '"error"' "$T_DIR/chan.out" | jq -r .code)" "0/unknown_channel" "subscribing to an unknown channel answers an error"
"$WSC" --url "$WS_URL?token=$(ws_token u-chan)" --send '{"type":"subscribe","channel":"activities"}' \
	--until subscribed --timeout 5 >"$T_DIR/chan2.out" 2>&1
is "$?" 0 "subscribing to activities answers subscribed"

# --- per-activity order: v3, v2, v4 (and v4 again) -> 3 and 4 only --------------
bg_client order u1 --pong --timeout 20
ORDER=$BG_PID
wait_for 10 authenticated order
t_result $? "ordering client connected"
xadd() { # event_id capsule version [user]
	redis-cli -p "$REDIS_PORT" XADD cg:events '*' event_id "$1" type activity.updated tenant default \
		user_id "${4:-u1}" capsule_id "$2" version "$3" created_at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
		data "{\"capsule_id\":\"$2\",\"version\":$3}" >/dev/null
}
xadd "$(cat /proc/sys/kernel/random/uuid)" c1 3
xadd "$(cat /proc/sys/kernel/random/uuid)" c1 2
E4=$(cat /proc/sys/kernel/random/uuid)
xadd "$E4" c1 4
xadd "$E4" c1 4
xadd "$(cat /proc/sys/kernel/random/uuid)" c2 1
xadd "$(cat /proc/sys/kernel/random/uuid)" c-end 1
wait_for 10 grep -q '"c-end"' "$T_DIR/order.out"
t_result $? "the events reached the client"
kill "$ORDER" 2>/dev/null
wait "$ORDER" 2>/dev/null
is "$(grep '"activity_updated"' "$T_DIR/order.out" | jq -r 'select(.activity.capsule_id == "c1") | .version' | tr '\n' ' ')" "3 4 " \
	"published v3, v2, v4, v4 (same event): the client gets 3 and 4 only"
is "$(grep '"activity_updated"' "$T_DIR/order.out" | jq -r 'select(.activity.capsule_id == "c2") | .version')" 1 \
	"another capsule's v1 after c1's v4 is delivered"

# --- connections per user --------------------------------------------------------
bg_client lim1 u-lim --pong --timeout 20
LIM1=$BG_PID
bg_client lim2 u-lim --pong --timeout 20
LIM2=$BG_PID
wait_for 10 sh -c "grep -q '\"authenticated\"' '$T_DIR/lim1.out' && grep -q '\"authenticated\"' '$T_DIR/lim2.out'"
t_result $? "two connections of one user are accepted (ws_max_connections_per_user 2)"
"$WSC" --url "$WS_URL?token=$(ws_token u-lim)" --until authenticated --timeout 5 >"$T_DIR/lim3.out" 2>&1
is "$?/$(close_of "$T_DIR/lim3.out")" "3/close 4429" "the third connection of that user is closed with 4429"
"$WSC" --url "$WS_URL?token=$(ws_token u-other)" --until authenticated --timeout 5 >"$T_DIR/lim-other.out" 2>&1
is "$?" 0 "another user still connects meanwhile"
"$WSC" --url "$WS_URL" --send "{\"type\":\"authenticate\",\"token\":\"$(ws_token u-lim)\"}" \
	--until authenticated --timeout 5 >"$T_DIR/lim4.out" 2>&1
is "$?/$(close_of "$T_DIR/lim4.out")" "3/close 4429" "the limit holds for an authenticate message too"
kill "$LIM1" 2>/dev/null
wait "$LIM1" 2>/dev/null
sleep 0.5
"$WSC" --url "$WS_URL?token=$(ws_token u-lim)" --until authenticated --timeout 5 >"$T_DIR/lim5.out" 2>&1
is "$?" 0 "after one of them leaves, the user connects again"
kill "$LIM2" 2>/dev/null
wait "$LIM2" 2>/dev/null
grep -q 'refused.*ws_max_connections_per_user' "$WSD_LOG"
t_result $? "the per-user refusal is logged"

# --- connections per instance (ws_max_connections 8; the SIGTERM client is one) --
sleep 0.5 # the clients killed above are gone from capsule-wsd too
GPIDS=""
for i in 1 2 3 4 5 6 7; do
	bg_client "g$i" "u-g$i" --pong --timeout 20
	GPIDS="$GPIDS $BG_PID"
done
all_g() { for i in 1 2 3 4 5 6 7; do authenticated "g$i" || return 1; done; }
wait_for 10 all_g
t_result $? "8 connections are open (ws_max_connections 8)"
"$WSC" --url "$WS_URL?token=$(ws_token u-g9)" --until authenticated --timeout 5 >"$T_DIR/g9.out" 2>&1
is "$?/$(close_of "$T_DIR/g9.out")" "3/close 4429" "the 9th connection is closed with 4429"
grep -q 'refused.*ws_max_connections ' "$WSD_LOG"
t_result $? "the global refusal is logged"
for p in $GPIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done

# --- connection attempts per address --------------------------------------------
# Every client comes from the web server's 127.0.0.1; the checks above made
# about 30 attempts in this minute. Connect until refused.
refused=0
for i in $(seq 1 $((PER_IP + 5))); do
	"$WSC" --url "$WS_URL?token=$(ws_token "u-flood$i")" --until authenticated --timeout 5 >"$T_DIR/flood.out" 2>&1
	if [ "$(close_of "$T_DIR/flood.out")" = "close 4429" ]; then
		refused=1
		break
	fi
done
is "$refused" 1 "connection attempts over ws_connect_attempts_per_ip_per_minute are closed with 4429 (refused at flood attempt $i)"
grep -q 'refused.*ws_connect_attempts_per_ip_per_minute' "$WSD_LOG"
t_result $? "the per-address refusal is logged"

# --- SIGTERM closes connected clients with 1001 ----------------------------------
pid=$(cat "$STACK_DIR/pids/capsule-wsd.pid")
kill -TERM "$pid"
wait "$TERM_PID"
is "$?/$(close_of "$T_DIR/term.out")" "3/close 1001" "SIGTERM to capsule-wsd closes a connected client with 1001"
wait "$pid"
is "$?" 0 "capsule-wsd exits 0 on SIGTERM"
rm -f "$STACK_DIR/pids/capsule-wsd.pid"
grep -q 'stopped' "$WSD_LOG"
t_result $? "capsule-wsd logged a clean stop"
if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$WSD_LOG"; then
	t_result 1 "no sanitizer report in capsule-wsd.log"
	grep -E -A5 'ERROR: |runtime error:' "$WSD_LOG" | head -n 30 | sed 's/^/# /'
else
	t_result 0 "no sanitizer report in capsule-wsd.log"
fi

t_done

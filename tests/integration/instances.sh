#!/usr/bin/env bash
# instances.sh: several capsule-wsd instances sharing one Redis and PostgreSQL (issue 5): on two
# ports and on one port (SO_REUSEPORT) every client gets each event exactly once; a killed
# instance's registry entries expire and its clients resume on another one without a gap; SIGTERM
# closes clients with 1001; a client that does not read shows "health":"lagging"; SIGHUP reloads
# the configuration. Prints TAP. Every server is started on 127.0.0.1 in a temporary folder and
# stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin instances

export RATE_LIMIT_IP_BURST=5000 RATE_LIMIT_IP_PER_MINUTE=60000
# Every capsule-wsd of this suite may share its port (SO_REUSEPORT); off by default.
export WS_REUSE_PORT=true
STACK_RATE_BURST=5000
STACK_RATE_PER_MINUTE=60000
it_stack_up "stack starts behind $(stack_web) (instance local)"

WSC=${WSC:-$BUILD_DIR/tests/tools/ws-client}
WS_URL="ws://127.0.0.1:$HTTP_PORT/ws"
WSD_LOG="$STACK_DIR/capsule-wsd.log"
T_PUB=$(bearer_token in-pub default publisher)
T_ADMIN=$(bearer_token in-admin default admin)
MAIN_PID=$(head -n 1 "$STACK_DIR/pids/capsule-wsd.pid")

out() { printf '%s/%s.out' "$T_DIR" "$1"; }
close_of() { grep '^close' "$(out "$1")"; }
authed() { grep -q '"authenticated"' "$(out "$1")"; }
nevents() { ws_events "$(out "$1")" | grep -cv '^RESUMED$\|^RESYNC$'; }
has_events() { [ "$(nevents "$1")" -ge "$2" ]; }
last_event() { ws_events "$(out "$1")" | grep -v '^RESUMED$\|^RESYNC$' | tail -n 1; }
seq_of() { ws_events "$(out "$1")" | tr '\n' ' ' | sed 's/ $//'; }
words() { tr '\n' ' ' | sed 's/ $//'; }

# client NAME URL [ws-client args]: stays until killed (or 90 s); pid in CL_PID
# and in the table $T_DIR/pids (NAME PID).
client() {
	local name=$1 url=$2
	shift 2
	"$WSC" --url "$url" --pong --until never --timeout 90 "$@" >"$(out "$name")" 2>&1 &
	CL_PID=$!
	echo "$name $CL_PID" >>"$T_DIR/pids"
}
pid_of() { awk -v n="$1" '$1 == n { p = $2 } END { print p }' "$T_DIR/pids"; }
all_clients_down() { local n p; while read -r n p; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done <"$T_DIR/pids"; : >"$T_DIR/pids"; }
: >"$T_DIR/pids"

# pub TAG N: N tenant-wide events (every client of default gets them); ids in $T_DIR/TAG.ids.
pub() {
	: >"$T_DIR/$1.ids"
	local i
	for i in $(seq 1 "$2"); do
		printf '{"type":"api.deployed","data":{"marker":"%s-%d"}}\n' "$1" "$i"
	done | post_events "$T_PUB" "$T_DIR/$1.ids"
}
ids() { cat "$T_DIR/$1.ids"; }

# conns: GET /api/v1/admin/connections as default's admin (H_BODY).
conns() { HTTP_AUTH=(-H "Authorization: Bearer $T_ADMIN"); http GET /api/v1/admin/connections; HTTP_AUTH=(); }
# inst_of USER: the instance(s) the registry lists USER's connections on.
inst_of() { conns; jqr "[.connections[] | select(.user_id == \"$1\") | .instance] | unique | join(\",\")"; }
inst_is() { [ "$(inst_of "$1")" = "$2" ]; }

# --- (a) two instances on two ports ---------------------------------------------------------
PORT2=$(stack_free_port)
wsd_start_extra i2 PORT="$PORT2" INSTANCE_ID=i2
t_result $? "a second instance (i2) listens on another port ($PORT2)"
I2=$WSD_EXTRA_PID
client a1 "ws://127.0.0.1:$WS_PORT/ws?token=$(ws_jwt u-a1)"
client a2 "ws://127.0.0.1:$PORT2/ws?token=$(ws_jwt u-a2)"
client a3 "$WS_URL?token=$(ws_jwt u-a3)"
wait_for 10 sh -c "grep -q authenticated '$(out a1)' && grep -q authenticated '$(out a2)' && grep -q authenticated '$(out a3)'"
t_result $? "clients on instance local (direct and through $(stack_web)) and on i2 are connected"
wait_for 10 inst_is u-a2 i2
t_result $? "the registry lists u-a2 on i2"
is "$(inst_of u-a1)/$(inst_of u-a3)" "local/local" "and u-a1, u-a3 on local"
conns
is "$(jqr '[.connections[] | select(.instance == "i2") | .connection_id | startswith("i2:")] | all')" true \
	"i2's connection ids start with i2:"
pub pa 10
is "$(grep -c FAILED "$T_DIR/pa.ids")" 0 "10 tenant-wide events published"
wait_for 15 sh -c "[ \$(grep -c api_deployed '$(out a1)') -ge 10 ] && [ \$(grep -c api_deployed '$(out a2)') -ge 10 ] && [ \$(grep -c api_deployed '$(out a3)') -ge 10 ]"
sleep 0.5
for c in a1 a2 a3; do
	is "$(seq_of "$c")" "$(ids pa | words)" "$c got each of the 10 events exactly once, in order"
done

# --- (b) two instances on the same port (SO_REUSEPORT) -----------------------------------------
# Without ws_reuse_port an instance started by mistake on a taken port fails.
wsd_start_extra i0 PORT="$WS_PORT" INSTANCE_ID=i0 WS_REUSE_PORT=false
is "$?" 1 "without ws_reuse_port a second instance cannot take the port"
grep -q 'Address already in use' "$STACK_DIR/capsule-wsd-i0.log"
t_result $? "it says why (address already in use)"
wsd_start_extra i3 PORT="$WS_PORT" INSTANCE_ID=i3
t_result $? "a third instance (i3) listens on the same port as local ($WS_PORT)"
I3=$WSD_EXTRA_PID
I3_LOG="$STACK_DIR/capsule-wsd-i3.log"
kill -0 "$MAIN_PID" 2>/dev/null
t_result $? "local still runs"
on_both() { grep -q 'authenticated as user u-b' "$I3_LOG" && grep -q 'authenticated as user u-b' "$WSD_LOG"; }
NB=0
while [ "$NB" -lt 24 ]; do
	NB=$((NB + 1))
	client "b$NB" "ws://127.0.0.1:$WS_PORT/ws?token=$(ws_jwt "u-b$NB")"
	wait_for 10 authed "b$NB" || break
	[ "$NB" -ge 4 ] && on_both && break
done
on_both
t_result $? "$NB clients on port $WS_PORT: the kernel spread them over local and i3"
ON_I3=$(grep -o 'authenticated as user u-b[0-9]*' "$I3_LOG" | awk '{print $4}' | sort -u | words)
ON_LOCAL=$(grep -o 'authenticated as user u-b[0-9]*' "$WSD_LOG" | awk '{print $4}' | sort -u | words)
diag "on i3: $ON_I3; on local: $ON_LOCAL"
u1=${ON_I3%% *}
wait_for 10 inst_is "$u1" i3
t_result $? "the registry lists $u1 on i3"
pub pb 10
is "$(grep -c FAILED "$T_DIR/pb.ids")" 0 "10 more tenant-wide events published"
all_b() { local i; for i in $(seq 1 "$NB"); do has_events "b$i" 10 || return 1; done; has_events a1 20 && has_events a2 20; }
wait_for 20 all_b
sleep 0.5
bad=""
for i in $(seq 1 "$NB"); do
	[ "$(seq_of "b$i")" = "$(ids pb | words)" ] || bad="$bad b$i"
done
is "$bad" "" "every client on either instance got each of the 10 events exactly once, in order"
is "$(seq_of a1)|$(seq_of a2)" "$(ids pa | words) $(ids pb | words)|$(ids pa | words) $(ids pb | words)" \
	"the clients of (a) got them too, once"

# --- SIGKILL i2 and i3: their registry entries expire, their clients resume on local, no gap -------
# (a2 was on i2; the u-b* clients that the kernel gave to i3)
kill -KILL "$I2" "$I3" 2>/dev/null
# (bash reports a job killed by a signal on its own stderr)
exec 3>&2 2>/dev/null
wait "$I2"
wait "$I3"
exec 2>&3 3>&-
gone_ones() { local u p; for u in $ON_I3; do p=$(pid_of "b${u#u-b}"); kill -0 "$p" 2>/dev/null && return 1; done; ! kill -0 "$(pid_of a2)" 2>/dev/null; }
wait_for 10 gone_ones
t_result $? "i2 and i3 killed (SIGKILL): their clients' connections end"
pub pc 5
killed_listed() { conns; [ "$H_STATUS" = 200 ] && jqr '[.connections[] | select(.instance == "i2" or .instance == "i3")] | length'; }
n=$(killed_listed)
[ "${n:-0}" -ge 1 ]
t_result $? "just after the kill the registry still lists their connections ($n)"
none_listed() { [ "$(killed_listed)" = 0 ]; }
wait_for 25 none_listed
t_result $? "within 25 s they expire from the registry"
client ra2 "ws://127.0.0.1:$WS_PORT/ws?token=$(ws_jwt u-a2)&last_event_id=$(last_event a2)"
RESUMERS="ra2"
for u in $ON_I3; do
	n=${u#u-b}
	client "rb$n" "ws://127.0.0.1:$WS_PORT/ws?token=$(ws_jwt "$u")&last_event_id=$(last_event "b$n")"
	RESUMERS="$RESUMERS rb$n"
done
settled_all() { local c; for c in $RESUMERS; do grep -q '"resumed"\|"resync_required"' "$(out "$c")" || return 1; done; }
wait_for 15 settled_all
t_result $? "they reconnect to port $WS_PORT (local) with last_event_id: $RESUMERS"
pub pd 3
all_rb() { local c; for c in $RESUMERS; do has_events "$c" 8 || return 1; done; }
wait_for 15 all_rb
sleep 0.5
is "$(seq_of a2) $(seq_of ra2)" "$(ids pa | words) $(ids pb | words) $(ids pc | words) RESUMED $(ids pd | words)" \
	"i2's client missed nothing: the events during the outage (replayed), resumed, then live"
bad=""
[ -n "$ON_I3" ] || bad="(no client was on i3)"
for u in $ON_I3; do
	n=${u#u-b}
	[ "$(seq_of "b$n") $(seq_of "rb$n")" = "$(ids pb | words) $(ids pc | words) RESUMED $(ids pd | words)" ] || bad="$bad b$n"
done
is "$bad" "" "i3's clients missed nothing either"
bad=""
[ -n "$ON_LOCAL" ] || bad="(no client was on local)"
for u in $ON_LOCAL; do
	n=${u#u-b}
	[ "$(seq_of "b$n")" = "$(ids pb | words) $(ids pc | words) $(ids pd | words)" ] || bad="$bad b$n"
done
is "$bad" "" "the clients on local were not disturbed (all 18 events once)"
is "$(seq_of a1)" "$(ids pa | words) $(ids pb | words) $(ids pc | words) $(ids pd | words)" "nor a1 (all 28 once)"
all_clients_down

# --- SIGTERM: clients see 1001 ----------------------------------------------------------------------
PORT4=$(stack_free_port)
wsd_start_extra i4 PORT="$PORT4" INSTANCE_ID=i4
I4=$WSD_EXTRA_PID
client t1 "ws://127.0.0.1:$PORT4/ws?token=$(ws_jwt u-t1)"
T1=$CL_PID
wait_for 10 authed t1
t_result $? "a client on instance i4"
kill -TERM "$I4"
wait_for 10 sh -c "! kill -0 $T1 2>/dev/null"
kill "$T1" 2>/dev/null
wait "$T1"
is "$?/$(close_of t1)" "3/close 1001" "SIGTERM to i4 closes its client with 1001"
wait "$I4"
is "$?" 0 "i4 exits 0"
kill -0 "$MAIN_PID" 2>/dev/null
t_result $? "local still runs"

# --- health lagging: a client that does not read -------------------------------------------------------
PORT5=$(stack_free_port)
wsd_start_extra lag PORT="$PORT5" INSTANCE_ID=lag WS_SEND_QUEUE_MAX=30
t_result $? "instance lag with ws_send_queue_max 30 (lagging over 15)"
LAG_LOG="$STACK_DIR/capsule-wsd-lag.log"
client lag1 "ws://127.0.0.1:$PORT5/ws?token=$(ws_jwt u-lag)" --pause-ms 60000 --rcvbuf 65536 --brief-over 4096
LAG1=$CL_PID
wait_for 10 authed lag1
health_is() { conns; [ "$(jqr ".connections[] | select(.user_id == \"u-lag\") | .health")" = "$1" ]; }
wait_for 10 health_is ok
t_result $? "its registry entry says health ok"
PAD=$(head -c 524288 /dev/zero | tr '\0' 'x')
: >"$T_DIR/lag.ids"
for i in $(seq 1 28); do
	printf '{"type":"api.deployed","user_id":"u-lag","data":{"marker":"lag-%d","pad":"%s"}}\n' "$i" "$PAD"
done | post_events "$T_PUB" "$T_DIR/lag.ids"
is "$?" 0 "28 events of 512 KiB published to a client that stopped reading"
wait_for 15 health_is lagging
t_result $? "its registry entry says health lagging"
grep -q 'send queue full' "$LAG_LOG"
is "$?" 1 "(it was not closed: its queue stayed under ws_send_queue_max)"
kill -USR1 "$LAG1"
wait_for 20 has_events lag1 28
t_result $? "reading again, it gets all 28"
wait_for 15 health_is ok
t_result $? "and its health is ok again"
kill_wait "$LAG1"

# --- SIGHUP reloads the configuration -------------------------------------------------------------------
HUP_PORT=$(stack_free_port)
HUP_CONF="$T_DIR/hup.conf"
grep -v '^port\|^instance_id\|^ws_max_connections_per_user\|^log_level' "$CAPSULE_CONFIG" >"$HUP_CONF"
printf 'port = %s\ninstance_id = hup\nws_max_connections_per_user = 5\nlog_level = info\n' "$HUP_PORT" >>"$HUP_CONF"
WSD_EXTRA_CONFIG=$HUP_CONF wsd_start_extra hup
t_result $? "instance hup on its own config file (ws_max_connections_per_user 5)"
HUP=$WSD_EXTRA_PID
HUP_LOG="$STACK_DIR/capsule-wsd-hup.log"
HUP_URL="ws://127.0.0.1:$HUP_PORT/ws?token=$(ws_jwt u-hup)"
client h1 "$HUP_URL"
client h2 "$HUP_URL"
client h3 "$HUP_URL"
wait_for 10 sh -c "grep -q authenticated '$(out h1)' && grep -q authenticated '$(out h2)' && grep -q authenticated '$(out h3)'"
t_result $? "three connections of one user are accepted"
sed -i -e 's/^ws_max_connections_per_user = .*/ws_max_connections_per_user = 3/' \
	-e "s/^port = .*/port = $(stack_free_port)/" -e 's/^log_level = .*/log_level = debug/' "$HUP_CONF"
kill -HUP "$HUP"
wait_for 10 grep -q 'SIGHUP: configuration reloaded' "$HUP_LOG"
t_result $? "SIGHUP: the log says the configuration was reloaded"
grep 'SIGHUP' "$HUP_LOG" | grep -q 'port'
t_result $? "it names port as a key that needs a restart"
"$WSC" --url "$HUP_URL" --until authenticated --timeout 5 >"$(out h4)" 2>&1
is "$?/$(close_of h4)" "3/close 4429" "the new ws_max_connections_per_user (3) applies: a fourth connection gets 4429"
kill -0 "$HUP" 2>/dev/null
t_result $? "the instance still runs on its old port"
kill_wait "$(pid_of h3)"
sleep 0.5
"$WSC" --url "$HUP_URL" --until authenticated --timeout 5 >"$(out h5)" 2>&1
is "$?" 0 "with one gone, a new connection is accepted (the old port still serves)"
pub ph 1
wait_for 10 grep -q ' debug ' "$HUP_LOG"
t_result $? "log_level debug applies after SIGHUP"
all_clients_down

if sanitizer_clean "$WSD_LOG" "$STACK_DIR"/capsule-wsd-*.log; then
	t_result 0 "no sanitizer report in any capsule-wsd log"
else
	t_result 1 "no sanitizer report in any capsule-wsd log"
	grep -h -E -A5 'ERROR: |runtime error:' "$WSD_LOG" "$STACK_DIR"/capsule-wsd-*.log | head -n 30 | sed 's/^/# /'
fi
t_done

#!/usr/bin/env bash
# resume.sh: resuming WebSocket clients (issue 5 item 3): last_event_id as an event id or a stream
# position, in the query or the authenticate message; every missed event once and in order, then
# "resumed", then live ones; per channel; from PostgreSQL when Redis lost the stream; per-device
# cursors moved by acks; resync_required; no other tenant's events; a slow client culled with 1008
# that resumes without a gap. Prints TAP. Every server is started on 127.0.0.1 in a temporary
# folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin resume

# History older than 60 s is outside retention (the smallest allowed); every
# scenario below resumes within seconds of its own events. Many events are
# published: a large burst for the publisher's credential.
export WS_HISTORY_RETENTION=60
STACK_RATE_BURST=5000
STACK_RATE_PER_MINUTE=60000
export RATE_LIMIT_IP_BURST=5000 RATE_LIMIT_IP_PER_MINUTE=60000
it_stack_up "stack starts behind $(stack_web) with ws_history_retention 60 s"

WSC=${WSC:-$BUILD_DIR/tests/tools/ws-client}
WS_URL="ws://127.0.0.1:$HTTP_PORT/ws"
WSD_LOG="$STACK_DIR/capsule-wsd.log"
RCLI=(redis-cli -p "$REDIS_PORT")
T_PUB=$(bearer_token res-pub default publisher)
T_ACME_PUB=$(bearer_token res-acme-pub acme publisher)

uuid() { cat /proc/sys/kernel/random/uuid; }
out() { printf '%s/%s.out' "$T_DIR" "$1"; }

# bodies MEMBERS PREFIX N: N event bodies (api.deployed) with the given
# audience members ('"user_id":"u1"', '"channel":"capsule:c"', ''), markers PREFIX-1..N.
bodies() {
	local i sep=,
	[ -z "$1" ] && sep=""
	for i in $(seq 1 "$3"); do
		printf '{"type":"api.deployed"%s%s,"data":{"marker":"%s-%d"}}\n' "$sep" "$1" "$2" "$i"
	done
}
to_user() { printf '"user_id":"%s"' "$1"; }

# pub TAG [BEARER] < BODIES: publishes in order; $T_DIR/TAG.map holds "marker event_id" lines.
pub() {
	local tag=$1 tok=${2:-$T_PUB} st
	cat >"$T_DIR/$tag.bodies"
	: >"$T_DIR/$tag.ids"
	post_events "$tok" "$T_DIR/$tag.ids" <"$T_DIR/$tag.bodies"
	st=$?
	paste -d' ' <(jq -r '.data.marker' "$T_DIR/$tag.bodies") "$T_DIR/$tag.ids" >"$T_DIR/$tag.map"
	return $st
}
# ids TAG [ERE]: the event ids published under TAG (whose marker matches ERE), in order.
ids() { awk -v re="${2:-.}" '$1 ~ re { print $2 }' "$T_DIR/$1.map"; }

# client NAME QUERY [ws-client args]: a client through the web server that
# stays until killed (or 90 s); pid in CL_PID.
PIDS=""
client() {
	local name=$1 q=$2
	shift 2
	"$WSC" --url "$WS_URL${q:+?$q}" --pong --until never --timeout 90 "$@" >"$(out "$name")" 2>&1 &
	CL_PID=$!
	PIDS="$PIDS $CL_PID"
}
nevents() { ws_events "$(out "$1")" | grep -cv '^RESUMED$\|^RESYNC$'; }
has_events() { [ "$(nevents "$1")" -ge "$2" ]; }
authed() { grep -q '"authenticated"' "$(out "$1")"; }
settled() { grep -q '"resumed"\|"resync_required"' "$(out "$1")"; }
last_event() { ws_events "$(out "$1")" | grep -v '^RESUMED$\|^RESYNC$' | tail -n 1; }
last_stream() { grep '^{' "$(out "$1")" | jq -r 'select((.event_id // "") != "") | .stream_id // empty' | tail -n 1; }
stream_of() { grep '^{' "$(out "$1")" | jq -r --arg e "$2" 'select(.event_id == $e) | .stream_id // empty' | head -n 1; }
seq_of() { ws_events "$(out "$1")" | tr '\n' ' ' | sed 's/ $//'; }
words() { tr '\n' ' ' | sed 's/ $//'; }
cleanup_clients() { kill_wait $PIDS; PIDS=""; }
auth_msg() { # TOKEN [extra members]
	printf '{"type":"authenticate","token":"%s"%s}' "$1" "${2:+,$2}"
}

# anchor NAME USER: a client of USER receives 3 events, then leaves; sets
# ANCHOR_ID and ANCHOR_POS (event_id and stream_id of the last one).
anchor() {
	local name=$1 user=$2
	client "$name" "token=$(ws_jwt "$user")"
	wait_for 10 authed "$name"
	bodies "$(to_user "$user")" "$name" 3 | pub "$name"
	wait_for 10 has_events "$name" 3
	kill_wait "$CL_PID"
	ANCHOR_ID=$(last_event "$name")
	ANCHOR_POS=$(last_stream "$name")
}

# --- 1-4: last_event_id as event id / stream position, query / authenticate ----
resume_case() { # N HOW
	local n=$1 how=$2 user="u-res$1" tok
	tok=$(ws_jwt "$user")
	anchor "a$n" "$user"
	is "$(ids "a$n" | words)" "$(ws_events "$(out "a$n")" | words)" \
		"case $n ($how): a client gets 3 events live, each with an event_id"
	printf '%s' "$ANCHOR_POS" | grep -Eq '^[0-9]+-[0-9]+$'
	t_result $? "case $n: the events carry a stream_id (<ms>-<seq>: $ANCHOR_POS)"
	bodies "$(to_user "$user")" "m$n" 5 | pub "m$n"
	case $how in
	query-event) client "r$n" "token=$tok&last_event_id=$ANCHOR_ID" ;;
	query-stream) client "r$n" "token=$tok&last_event_id=$ANCHOR_POS" ;;
	auth-event) client "r$n" "" --send "$(auth_msg "$tok" "\"last_event_id\":\"$ANCHOR_ID\"")" ;;
	auth-stream) client "r$n" "" --send "$(auth_msg "$tok" "\"last_event_id\":\"$ANCHOR_POS\"")" ;;
	esac
	wait_for 15 settled "r$n"
	bodies "$(to_user "$user")" "l$n" 2 | pub "l$n"
	wait_for 10 has_events "r$n" 7
	sleep 0.3
	kill_wait "$CL_PID"
	is "$(seq_of "r$n")" "$(ids "m$n" | words) RESUMED $(ids "l$n" | words)" \
		"case $n ($how): the 5 missed events once and in order, then resumed, then the 2 live ones"
	local r
	r=$(ws_msg "$(out "r$n")" resumed)
	is "$(printf '%s' "$r" | jq -r '"\(.events)/\(.from)/\(.stream_id)"' 2>/dev/null)" \
		"5/$ANCHOR_POS/$(stream_of "r$n" "$(ids "m$n" | tail -n 1)")" \
		"case $n: resumed says events 5, from the given position, stream_id of the last replayed"
	[ "$(grep -n '"authenticated"' "$(out "r$n")" | head -n 1 | cut -d: -f1)" = 1 ]
	t_result $? "case $n: authenticated is the first message"
}
resume_case 1 query-event
resume_case 2 query-stream
resume_case 3 auth-event
resume_case 4 auth-stream

# --- 5: a long replay while events keep coming: no gap, no duplicate at the seam --
anchor a5 u-many
bodies "$(to_user u-many)" many 300 | pub many
is "$(ids many | grep -c FAILED)" 0 "300 events published while u-many is away"
bodies "$(to_user u-many)" conc 40 >"$T_DIR/conc.bodies.in"
pub conc <"$T_DIR/conc.bodies.in" &
PUBPID=$!
TOK5=$(ws_jwt u-many)
client r5a "token=$TOK5&last_event_id=$ANCHOR_ID" --brief-over 100000
sleep 0.2
client r5b "token=$TOK5&last_event_id=$ANCHOR_POS"
sleep 0.3
client r5c "" --send "$(auth_msg "$TOK5" "\"last_event_id\":\"$ANCHOR_ID\"")"
wait "$PUBPID"
is "$?/$(ids conc | grep -c FAILED)" "0/0" "40 more published meanwhile (while three clients resume)"
WANT5="$(ids many | words) $(ids conc | words)"
all340() { has_events r5a 340 && has_events r5b 340 && has_events r5c 340; }
wait_for 60 all340
sleep 0.3
for c in r5a r5b r5c; do
	got=$(ws_events "$(out "$c")" | grep -v '^RESUMED$' | words)
	if [ "$got" = "$WANT5" ]; then
		t_result 0 "$c: all 340 events once, in publication order"
	else
		t_result 1 "$c: all 340 events once, in publication order"
		diag "got $(nevents "$c") events, $(ws_events "$(out "$c")" | grep -v RESUMED | sort | uniq -d | wc -l) duplicated, resumed at line $(ws_events "$(out "$c")" | grep -n RESUMED | cut -d: -f1)"
	fi
	nres=$(ws_events "$(out "$c")" | grep -c '^RESUMED$')
	before=$(ws_events "$(out "$c")" | grep -n '^RESUMED$' | head -n 1 | cut -d: -f1)
	is "$nres/$(ws_msg "$(out "$c")" resumed | jq -r .events)" "1/$((${before:-1} - 1))" \
		"$c: one resumed message, its count is the number of events before it"
done
# (how much of the seam was exercised: events held live during each replay)
grep 'user u-many: .*held live' "$WSD_LOG" | sed 's/^.*user u-many: /# u-many: /'
cleanup_clients

# 5b: the same with the history in PostgreSQL only (a slower replay) and eight
# clients resuming one after the other while events keep coming.
anchor a5b u-many2
bodies "$(to_user u-many2)" many2 300 | pub many2
"${RCLI[@]}" DEL cg:events >/dev/null
# one request per event (a curl each): spread over the four resumes
pub_slow() { # TAG USER N
	local i id st=0
	: >"$T_DIR/$1.map"
	for i in $(seq 1 "$3"); do
		: >"$T_DIR/$1.one"
		bodies "$(to_user "$2")" "$1-$i" 1 | post_events "$T_PUB" "$T_DIR/$1.one" || st=1
		echo "$1-$i $(cat "$T_DIR/$1.one")" >>"$T_DIR/$1.map"
	done
	return $st
}
pub_slow conc2 u-many2 80 &
PUBPID=$!
TOK5B=$(ws_jwt u-many2)
sleep 0.1
S5="s5a s5b s5c s5d s5e s5f s5g s5h"
for c in $S5; do
	client "$c" "token=$TOK5B&last_event_id=$ANCHOR_ID"
	sleep 0.15
done
wait "$PUBPID"
is "$?/$(ids many2 | grep -c FAILED)/$(ids conc2 | grep -c FAILED)" "0/0/0" "300 + 80 events published for u-many2, the 300 in PostgreSQL only"
WANT5B="$(ids many2 | words) $(ids conc2 | words)"
all380() { local c; for c in $S5; do has_events "$c" 380 || return 1; done; }
wait_for 60 all380
sleep 0.3
bad=""
for c in $S5; do
	[ "$(ws_events "$(out "$c")" | grep -v '^RESUMED$' | words)" = "$WANT5B" ] &&
		[ "$(ws_events "$(out "$c")" | grep -c '^RESUMED$')" = 1 ] || bad="$bad $c"
done
is "$bad" "" "eight clients resuming from PostgreSQL while events come: each gets all 380 once, in order, one resumed"
grep 'user u-many2: .*held live' "$WSD_LOG" | sed 's/^.*user u-many2: /# u-many2: /'
held=$(grep 'user u-many2: .*held live' "$WSD_LOG" | grep -vc ' 0 held live')
if [ "$held" -ge 1 ]; then
	t_result 0 "the seam was exercised: live events were held during $held of the 8 replays"
else
	t_skip "the seam was exercised" "no live event arrived during a replay this time (timing)"
fi
cleanup_clients

# --- 6: channels chosen at authentication, replay filtered by them ---------------
TOK6=$(ws_jwt u-chan)
client c6a "token=$TOK6&channels=capsule:cap-r"
wait_for 10 authed c6a
{
	bodies '"channel":"capsule:cap-r"' r6a 1
	bodies "$(to_user u-chan)" u6a 1
	bodies '"channel":"capsule:cap-o"' o6a 1
	bodies '"channel":"capsule:cap-r"' r6b 1
} | pub ch1
wait_for 10 has_events c6a 2
sleep 0.5
kill_wait "$CL_PID"
is "$(seq_of c6a)" "$(ids ch1 '^r6' | words)" \
	"channels=capsule:cap-r in the query: only that channel's events, not the user's (no activities)"
A6=$(ids ch1 '^r6b')
{
	bodies '"channel":"capsule:cap-r"' r6c 1
	bodies "$(to_user u-chan)" u6b 1
	bodies '"channel":"capsule:cap-o"' o6b 1
	bodies '"channel":"capsule:cap-r"' r6d 2
} | pub ch2
client c6b "token=$TOK6&channels=capsule:cap-r&last_event_id=$A6"
client c6c "" --send "$(auth_msg "$TOK6" "\"last_event_id\":\"$A6\",\"channels\":[\"activities\",\"capsule:cap-r\"]")"
wait_for 15 settled c6b
wait_for 15 settled c6c
{
	bodies "$(to_user u-chan)" u6c 1
	bodies '"channel":"capsule:cap-r"' r6e 1
	bodies '"channel":"capsule:cap-o"' o6c 1
} | pub ch3
wait_for 10 has_events c6b 4
wait_for 10 has_events c6c 6
sleep 0.5
cleanup_clients
is "$(seq_of c6b)" "$(ids ch2 '^r6' | words) RESUMED $(ids ch3 '^r6' | words)" \
	"query channels=capsule:cap-r: the replay and the live events are that channel's only"
is "$(seq_of c6c)" "$(ids ch2 '^[ru]6' | words) RESUMED $(ids ch3 '^[ru]6' | words)" \
	"authenticate channels [activities, capsule:cap-r]: the user's and that channel's, not capsule:cap-o"
client c6d "token=$TOK6&channels=activities,no-such-channel"
wait_for 10 authed c6d
wait_for 5 grep -q '"error"' "$(out c6d)"
t_result $? "an unknown channel at authentication answers an error message"
kill_wait "$CL_PID"

# --- 7-9: history from PostgreSQL when Redis lost (part of) the stream --------------
anchor a7 u-pg
bodies "$(to_user u-pg)" m7 4 | pub m7
"${RCLI[@]}" FLUSHALL >/dev/null
client r7 "token=$(ws_jwt u-pg)&last_event_id=$ANCHOR_ID"
wait_for 15 settled r7
bodies "$(to_user u-pg)" l7 2 | pub l7
wait_for 10 has_events r7 6
sleep 0.3
kill_wait "$CL_PID"
is "$(seq_of r7)" "$(ids m7 | words) RESUMED $(ids l7 | words)" \
	"after FLUSHALL the missed events come from PostgreSQL, in order, then live ones"

anchor a8 u-mix
bodies "$(to_user u-mix)" pg8 3 | pub pg8
"${RCLI[@]}" DEL cg:events >/dev/null
bodies "$(to_user u-mix)" rd8 3 | pub rd8
is "$("${RCLI[@]}" XLEN cg:events)" 3 "the stream holds only the 3 newest events (the 3 before are in PostgreSQL only)"
client r8 "token=$(ws_jwt u-mix)&last_event_id=$ANCHOR_POS"
wait_for 15 settled r8
bodies "$(to_user u-mix)" l8 1 | pub l8
wait_for 10 has_events r8 7
sleep 0.3
kill_wait "$CL_PID"
is "$(seq_of r8)" "$(ids pg8 | words) $(ids rd8 | words) RESUMED $(ids l8 | words)" \
	"3 missed events in PostgreSQL only and 3 in Redis: all 6 once, in order"

anchor a9 u-trim
bodies "$(to_user u-trim)" m9 6 | pub m9
"${RCLI[@]}" XTRIM cg:events MAXLEN 2 >/dev/null
client r9 "token=$(ws_jwt u-trim)&last_event_id=$ANCHOR_ID"
wait_for 15 settled r9
sleep 0.3
kill_wait "$CL_PID"
is "$(seq_of r9)" "$(ids m9 | words) RESUMED" "a stream trimmed past the position: the older part comes from PostgreSQL"

# --- 10: the per-device cursor -------------------------------------------------------
TOKC=$(ws_jwt u-cur default user dev-cur)
bodies "$(to_user u-cur)" pre10 2 | pub pre10
client c10a "token=$TOKC" --ack
wait_for 10 authed c10a
sleep 1.5
is "$(seq_of c10a)" "" "a device without a cursor and no last_event_id: no replay and no resumed message"
bodies "$(to_user u-cur)" ack10 4 | pub ack10
wait_for 10 has_events c10a 4
cursor_of() { sql "SELECT stream_ms || '-' || stream_seq FROM ws_cursors WHERE tenant_id = 'default' AND subject = '$1' AND device = '$2'" 2>/dev/null; }
cursor_is() { [ "$(cursor_of "$1" "$2")" = "$3" ]; }
ACKED_POS=$(stream_of c10a "$(ids ack10 | tail -n 1)")
wait_for 3 cursor_is u-cur dev-cur "$ACKED_POS"
t_result $? "within ~1 s ws_cursors holds the last acked position for (default, u-cur, dev-cur): $(cursor_of u-cur dev-cur) (want $ACKED_POS)"
kill_wait "$CL_PID"
bodies "$(to_user u-cur)" aft10 3 | pub aft10
client c10b "token=$TOKC"
wait_for 15 settled c10b
bodies "$(to_user u-cur)" live10 1 | pub live10
wait_for 10 has_events c10b 4
sleep 0.3
kill_wait "$CL_PID"
is "$(seq_of c10b)" "$(ids aft10 | words) RESUMED $(ids live10 | words)" \
	"reconnecting without last_event_id: only what came after the acked event, then live"
client c10c "token=$TOKC" --ack-stream
wait_for 15 settled c10c
wait_for 10 has_events c10c 4
sleep 1.5
kill_wait "$CL_PID"
is "$(seq_of c10c)" "$(ids aft10 | words) $(ids live10 | words) RESUMED" \
	"the connection that did not ack left the cursor where it was"
is "$(cursor_of u-cur dev-cur)" "$(stream_of c10c "$(ids live10)")" "acks by stream_id moved the stored cursor"
client c10d "token=$TOKC" --send "{\"type\":\"ack\",\"event_id\":\"$(ids ack10 | head -n 1)\"}"
wait_for 15 settled c10d
sleep 1.5
kill_wait "$CL_PID"
is "$(seq_of c10d)" "RESUMED" "acks by stream_id moved the cursor to the last event: nothing to replay"
bodies "$(to_user u-cur)" last10 1 | pub last10
client c10e "token=$TOKC"
wait_for 15 settled c10e
wait_for 5 has_events c10e 1
sleep 0.3
kill_wait "$CL_PID"
is "$(seq_of c10e)" "$(ids last10 | words) RESUMED" "an ack of an older event does not move the cursor back"
client c10f "token=$(ws_jwt u-cur default user dev-cur-2)"
wait_for 10 authed c10f
sleep 1.5
kill_wait "$CL_PID"
is "$(seq_of c10f)" "" "another device of the same user has its own (absent) cursor: no replay"
client c10g "token=$(ws_jwt u-cur)" --ack
wait_for 10 authed c10g
sleep 1
kill_wait "$CL_PID"
is "$(seq_of c10g)/$(grep -c '"error"' "$(out c10g)")" "/0" "a token without device_token: no replay; acks are accepted"

# --- 11: resync_required -----------------------------------------------------------
resync_case() { # NAME LAST_EVENT_ID DESCRIPTION
	local name=$1 user="u-rs-$1"
	client "$name" "token=$(ws_jwt "$user")&last_event_id=$2"
	wait_for 15 settled "$name"
	bodies "$(to_user "$user")" "$name" 1 | pub "$name"
	wait_for 10 has_events "$name" 1
	sleep 0.2
	kill_wait "$CL_PID"
	is "$(seq_of "$name")" "RESYNC $(ids "$name")" "$3: resync_required, then live events"
	[ -n "$(ws_msg "$(out "$name")" resync_required | jq -r '.reason // empty')" ]
	t_result $? "$3: resync_required has a reason"
}
resync_case rs1 "$(uuid)" "an unknown event id"
bodies "$(to_user u-rs-rs2)" acme11 1 | pub acme11 "$T_ACME_PUB"
resync_case rs2 "$(ids acme11)" "another tenant's event id"
resync_case rs3 "1000-0" "a position older than ws_history_retention (1000-0)"
now_ms=$(($(date +%s) * 1000))
resync_case rs4 "$((now_ms - 120000))-0" "a position 120 s old (retention 60 s)"
client rs5 "token=$(ws_jwt u-rs-rs5)&last_event_id=$((now_ms - 20000))-0"
wait_for 15 settled rs5
kill_wait "$CL_PID"
is "$(seq_of rs5)/$(ws_msg "$(out rs5)" resumed | jq -r .events)" "RESUMED/0" \
	"a position 20 s old (inside retention) with nothing for the user: resumed with 0 events"

# --- 12: no other tenant's events in a replay -----------------------------------------
anchor a12 u-x
bodies "$(to_user u-x)" acme12a 2 | pub acme12a "$T_ACME_PUB"
bodies "$(to_user u-x)" def12a 1 | pub def12a
bodies '' acme12b 1 | pub acme12b "$T_ACME_PUB"
bodies "$(to_user u-x)" def12b 1 | pub def12b
client r12 "token=$(ws_jwt u-x)&last_event_id=$ANCHOR_ID"
wait_for 15 settled r12
bodies "$(to_user u-x)" acme12c 1 | pub acme12c "$T_ACME_PUB"
bodies "$(to_user u-x)" def12c 1 | pub def12c
wait_for 10 has_events r12 3
sleep 0.5
kill_wait "$CL_PID"
is "$(seq_of r12)" "$(ids def12a) $(ids def12b) RESUMED $(ids def12c)" \
	"acme's events for a user of the same name (and acme-wide ones) are neither replayed nor delivered"

# --- 13: a slow client is closed with 1008 and resumes without a gap -------------------
SLOW_PORT=$(stack_free_port)
wsd_start_extra slow PORT="$SLOW_PORT" INSTANCE_ID=slow WS_SEND_QUEUE_MAX=8
t_result $? "a second capsule-wsd with ws_send_queue_max 8 listens on $SLOW_PORT"
SLOW_LOG="$STACK_DIR/capsule-wsd-slow.log"
TOKS=$(ws_jwt u-slow)
"$WSC" --url "ws://127.0.0.1:$SLOW_PORT/ws?token=$TOKS" --until never --timeout 90 \
	--pause-ms 60000 --rcvbuf 65536 --brief-over 4096 >"$(out s13)" 2>&1 &
SLOWC=$!
PIDS="$PIDS $SLOWC"
wait_for 10 authed s13
t_result $? "a client that stops reading after authenticated is connected"
PAD=$(head -c 196608 /dev/zero | tr '\0' 'x')
for i in $(seq 1 48); do
	printf '{"type":"api.deployed","user_id":"u-slow","data":{"marker":"slow-%d","pad":"%s"}}\n' "$i" "$PAD"
done | pub slow
is "$(ids slow | grep -c FAILED)" 0 "48 events of 192 KiB published to it"
wait_for 30 grep -q 'send queue full' "$SLOW_LOG"
t_result $? "its send queue filled: 'send queue full' is logged"
kill -USR1 "$SLOWC" 2>/dev/null
wait_for 30 sh -c "! kill -0 $SLOWC 2>/dev/null"
t_result $? "reading again, the client sees the connection end"
kill "$SLOWC" 2>/dev/null
wait "$SLOWC"
rc=$?
code=$(grep '^close' "$(out s13)")
case "$rc/$code" in 3/"close 1008" | 3/"close 1006") r=0 ;; *) r=1 ;; esac
t_result $r "it was closed (exit $rc, $code; 1008 when the close frame got through)"
got13=$(ws_events "$(out s13)" | words)
n13=$(nevents s13)
is "$got13" "$(ids slow | head -n "$n13" | words)" "before the close it got a prefix of the events ($n13 of 48)"
[ "$n13" -lt 48 ]
t_result $? "and not all of them"
LAST13=$(last_event s13)
[ -n "$LAST13" ] || LAST13=$ANCHOR_ID
client r13 "token=$TOKS&last_event_id=$LAST13" --brief-over 4096
wait_for 30 settled r13
wait_for 30 has_events r13 $((48 - n13))
sleep 0.3
kill_wait "$CL_PID"
is "$(ws_events "$(out s13)" | words) $(seq_of r13)" "$(ids slow | words) RESUMED" \
	"resuming with the last event it got: the rest, no gap and no duplicate"

cleanup_clients
if sanitizer_clean "$WSD_LOG" "$SLOW_LOG" "$STACK_DIR"/fcgi*.log; then
	t_result 0 "no sanitizer report"
else
	t_result 1 "no sanitizer report"
	grep -h -E -A5 'ERROR: |runtime error:' "$WSD_LOG" "$SLOW_LOG" | head -n 30 | sed 's/^/# /'
fi
t_done

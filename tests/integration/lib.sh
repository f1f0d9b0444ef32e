# lib.sh: TAP output and HTTP/WebSocket helpers for the shell integration tests.

T_N=0
T_FAIL=0

t_result() { # status description...
	local st=$1
	shift
	T_N=$((T_N + 1))
	if [ "$st" = 0 ]; then
		echo "ok $T_N - $*"
	else
		echo "not ok $T_N - $*"
		T_FAIL=$((T_FAIL + 1))
	fi
}

diag() { printf '# %s\n' "$*"; }

# is GOT WANT description
is() {
	local got=$1 want=$2
	shift 2
	if [ "$got" = "$want" ]; then
		t_result 0 "$*"
	else
		t_result 1 "$*"
		diag "got:  $got"
		diag "want: $want"
	fi
}

# ok_cmd description -- command...: passes when the command exits 0.
ok_cmd() {
	local desc=$1
	shift
	[ "$1" = "--" ] && shift
	if "$@" >/dev/null 2>&1; then t_result 0 "$desc"; else t_result 1 "$desc"; fi
}

t_done() {
	echo "1..$T_N"
	[ "$T_FAIL" = 0 ]
}

# Credential headers every http call sends (curl arguments), e.g.
# HTTP_AUTH=(-H "Authorization: Bearer $tok"); empty: none.
HTTP_AUTH=()

# http METHOD PATH [curl args...]: sets H_STATUS, H_BODY and H_HEADERS (file).
http() {
	local method=$1 path=$2
	shift 2
	H_HEADERS="$T_DIR/last-headers"
	H_STATUS=$(curl -sS -o "$T_DIR/last-body" -D "$H_HEADERS" -w '%{http_code}' -X "$method" \
		"${HTTP_AUTH[@]}" "$@" \
		"http://127.0.0.1:$HTTP_PORT$path") || H_STATUS=000
	H_BODY=$(cat "$T_DIR/last-body")
}

# header NAME: the value of response header NAME of the last http call.
header() {
	tr -d '\r' <"$H_HEADERS" | awk -v n="$(echo "$1" | tr 'A-Z' 'a-z')" -F': ' \
		'tolower($1) == n { sub(/^[^:]*: /, ""); print; exit }'
}

# jqr FILTER: jq -r on the last body.
jqr() { printf '%s' "$H_BODY" | jq -r "$1" 2>/dev/null; }

# psql as the owner (sees every tenant: row-level security does not apply to it).
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$ADMIN_DATABASE_URL" -c "$1"; }

# app_sql TENANT SQL: psql as the application role inside a transaction for TENANT.
app_sql() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 "$DATABASE_URL" \
		-c "BEGIN" -c "SET LOCAL capsule.tenant = '$1'" -c "$2" -c "COMMIT"
}

# wait_for SECONDS command...: polls until the command succeeds.
wait_for() {
	local secs=$1 i
	shift
	for i in $(seq 1 $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# jwt_payload TOKEN: the decoded claims of a compact JWS.
jwt_payload() {
	local p
	p=$(printf '%s' "$1" | cut -d. -f2 | tr '_-' '/+')
	while [ $((${#p} % 4)) != 0 ]; do p="$p="; done
	printf '%s' "$p" | base64 -d 2>/dev/null
}

# hs256 SECRET HEADER_JSON CLAIMS_JSON: a JWT built independently of the code under test.
hs256() {
	local h c s
	h=$(printf '%s' "$2" | b64url)
	c=$(printf '%s' "$3" | b64url)
	s=$(printf '%s' "$h.$c" | openssl dgst -sha256 -hmac "$1" -binary | b64url)
	printf '%s.%s.%s' "$h" "$c" "$s"
}

# bearer_token SUB TENANT ROLE [TTL]: an HS256 Bearer JWT for the stack's
# issuer and audience, signed here with openssl (not by the code under test).
bearer_token() {
	local now
	now=$(date +%s)
	hs256 "$(cat "$STACK_DIR/jwt-hs256-secret")" '{"alg":"HS256","typ":"JWT"}' \
		"{\"iss\":\"https://auth.test.local\",\"aud\":\"capsule-gateway\",\"sub\":\"$1\",\"tenant\":\"$2\",\"role\":\"$3\",\"iat\":$now,\"exp\":$((now + ${4:-3600}))}"
}

# it_begin NAME: the start of every integration test: skips (TAP "1..0 # SKIP")
# when asked to or when a server program is missing, then makes the stack
# folder ($STACK_DIR, with $T_DIR for the test's own files) and arranges for
# the stack to stop at exit, keeping the folder when a check failed.
it_begin() {
	local tool
	if [ -n "${CG_SKIP_INTEGRATION:-}" ]; then
		echo "1..0 # SKIP CG_SKIP_INTEGRATION is set"
		exit 0
	fi
	local web=lighttpd
	case "${STACK_WEB:-lighttpd}" in apache) web=apache2 ;; nginx) web=nginx ;; esac
	for tool in redis-server "$web" spawn-fcgi psql curl jq openssl; do
		if ! command -v "$tool" >/dev/null 2>&1; then
			echo "1..0 # SKIP $tool is not installed (./devstack test installs it)"
			exit 0
		fi
	done
	stack_pg_bindir >/dev/null 2>&1 || { echo "1..0 # SKIP PostgreSQL server is not installed"; exit 0; }
	STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/capsule-$1.XXXXXX")
	T_DIR="$STACK_DIR/t"
	mkdir -p "$T_DIR"
	trap it_cleanup EXIT
	trap 'exit 1' INT TERM
}

# it_stack_up DESCRIPTION: starts the stack (retrying on other ports) as one
# TAP check; when it cannot start, prints the logs and ends the test.
it_stack_up() {
	if ! stack_up_retry 2>"$T_DIR/stack-up.log"; then
		sed 's/^/# /' "$T_DIR/stack-up.log"
		for f in "$STACK_DIR"/*.log; do diag "--- $f"; tail -n 20 "$f" | sed 's/^/# /'; done
		t_result 1 "stack starts"
		t_done
		exit 1
	fi
	t_result 0 "$1"
}

it_cleanup() {
	stack_down
	if [ "$T_FAIL" != 0 ] || [ -n "${CG_KEEP_STACK:-}" ]; then
		echo "# stack folder kept for inspection: $STACK_DIR" >&2
	else
		stack_remove_pg
		rm -rf "$STACK_DIR"
	fi
}

# --- issue 5 (resume, agents, several instances) helpers ---------------------

# ws_jwt SUB [TENANT [ROLE [DEVICE_TOKEN [TTL]]]]: a WebSocket token signed
# here with the stack's ws secret (role default "user", no device token).
ws_jwt() {
	local now dev=""
	now=$(date +%s)
	[ -n "${4:-}" ] && dev=",\"device_token\":\"$4\""
	hs256 "$(cat "$STACK_DIR/ws-secret")" '{"alg":"HS256","typ":"JWT"}' \
		"{\"sub\":\"$1\",\"tenant\":\"${2:-default}\",\"role\":\"${3:-user}\"$dev,\"iss\":\"capsule-gateway\",\"iat\":$now,\"nbf\":$now,\"exp\":$((now + ${5:-600}))}"
}

# post_events BEARER IDS_FILE < BODIES: POSTs each line of stdin (a JSON
# body) to /api/v1/events, one after the other on one curl connection (so
# they are published in that order), and appends each answer's event_id to
# IDS_FILE, one line per body ("FAILED" for a failed one). Returns 1 unless
# every answer is 202 with an event_id.
post_events() {
	local tok=$1 ids=$2 n=0 cfg dir line st i id
	dir=$(mktemp -d "$T_DIR/post.XXXXXX")
	cfg="$dir/curl.cfg"
	: >"$cfg"
	while IFS= read -r line; do
		n=$((n + 1))
		printf '%s' "$line" >"$dir/b$n.json"
		[ "$n" -gt 1 ] && echo "next" >>"$cfg"
		cat >>"$cfg" <<-EOC
			url = "http://127.0.0.1:$HTTP_PORT/api/v1/events"
			request = "POST"
			header = "Content-Type: application/json"
			header = "Authorization: Bearer $tok"
			data-binary = "@$dir/b$n.json"
			output = "$dir/r$n.json"
			write-out = "%{http_code}\\n"
			max-time = 60
		EOC
	done
	[ "$n" = 0 ] && { rm -rf "$dir"; return 0; }
	curl -sS -K "$cfg" >"$dir/codes" 2>"$dir/err" || true
	st=0
	for i in $(seq 1 "$n"); do
		id=$(jq -er '.event.event_id' "$dir/r$i.json" 2>/dev/null) || id=""
		if [ "$(sed -n "${i}p" "$dir/codes")" != 202 ] || [ -z "$id" ]; then
			echo FAILED >>"$ids"
			st=1
			diag "post_events: request $i answered $(sed -n "${i}p" "$dir/codes"): $(head -c 300 "$dir/r$i.json" 2>/dev/null)"
		else
			echo "$id" >>"$ids"
		fi
	done
	rm -rf "$dir"
	return $st
}

# ws_events FILE: the event_id of every event message a ws-client printed,
# in order, one per line; `resumed` and `resync_required` show as RESUMED
# and RESYNC lines where they arrived.
ws_events() {
	grep '^{' "$1" 2>/dev/null | jq -r 'if .type == "resumed" then "RESUMED"
		elif .type == "resync_required" then "RESYNC"
		elif (.event_id // "") != "" then .event_id else empty end' 2>/dev/null
}

# ws_msg FILE TYPE: the first message of that type a ws-client printed.
ws_msg() { grep '^{' "$1" 2>/dev/null | jq -c --arg t "$2" 'select(.type == $t)' 2>/dev/null | head -n 1; }

# wsd_start_extra NAME [VAR=value]...: starts one more capsule-wsd with the
# given environment overrides (the environment wins over the file: PORT,
# INSTANCE_ID, WS_SEND_QUEUE_MAX...) on the config file $WSD_EXTRA_CONFIG
# (default: the stack's), logging to $STACK_DIR/capsule-wsd-NAME.log; its pid
# is recorded with the stack's capsule-wsd (stack_down stops it) and left in
# WSD_EXTRA_PID. Waits (20 s) until it logs that it listens; returns 1 when
# it does not.
wsd_start_extra() {
	local name=$1 log conf=${WSD_EXTRA_CONFIG:-$CAPSULE_CONFIG}
	shift
	log="$STACK_DIR/capsule-wsd-$name.log"
	env "$@" ${STACK_DAEMON_WRAPPER:-} \
		"$BUILD_DIR/ws-daemon/capsule-wsd" -d -f "$conf" >>"$log" 2>&1 &
	WSD_EXTRA_PID=$!
	stack_record_pid capsule-wsd "$WSD_EXTRA_PID"
	wait_for 20 sh -c "grep -q 'listening on' '$log' || ! kill -0 $WSD_EXTRA_PID 2>/dev/null"
	if ! grep -q 'listening on' "$log" || ! kill -0 "$WSD_EXTRA_PID" 2>/dev/null; then
		diag "capsule-wsd $name did not start: $(tail -n 5 "$log")"
		return 1
	fi
}

# kill_wait PID...: stops background processes this test started (TERM),
# and reaps them.
kill_wait() {
	local p
	for p in "$@"; do
		[ -n "$p" ] || continue
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	return 0
}

# sanitizer_clean FILE...: 0 when no file holds a sanitizer report.
sanitizer_clean() {
	! grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$@" 2>/dev/null
}

# raw_ws_close PORT PATH [HEADER]...: upgrades on 127.0.0.1:PORT with a raw
# socket (no WebSocket library: lws 4.1 reports close codes 1012-2999 as
# 1002), reads for up to 6 s and prints the code of the first close frame the
# server sent ("none" if there was none). The server's frames are unmasked.
raw_ws_close() {
	local port=$1 path=$2 h req
	shift 2
	req="GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	req="${req}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for h in "$@"; do req="$req$h\r\n"; done
	req="$req\r\n"
	timeout 6 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1; printf "$1" >&3; cat <&3' "$port" "$req" 2>/dev/null |
		od -An -v -tu1 | tr -s ' \n' '\n\n' | grep -v '^$' | awk '
		{ b[n++] = $1 }
		END {
			for (i = 3; i < n; i++)
				if (b[i-3] == 13 && b[i-2] == 10 && b[i-1] == 13 && b[i] == 10) break
			i++
			while (i + 1 < n) {
				op = b[i] % 16; len = b[i+1] % 128; h = 2
				if (len == 126) { len = b[i+2] * 256 + b[i+3]; h = 4 }
				else if (len == 127) { len = 0; for (k = 2; k < 10; k++) len = len * 256 + b[i+k]; h = 10 }
				if (op == 8) { if (len >= 2) print b[i+h] * 256 + b[i+h+1]; else print 1005; exit }
				i += h + len
			}
			print "none"
		}'
}

# t_skip DESCRIPTION REASON: a TAP check that did not run ("ok N - ... # SKIP REASON").
t_skip() {
	T_N=$((T_N + 1))
	echo "ok $T_N - $1 # SKIP $2"
}

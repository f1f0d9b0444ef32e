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

# http METHOD PATH [curl args...]: sets H_STATUS, H_BODY and H_HEADERS (file).
http() {
	local method=$1 path=$2
	shift 2
	H_HEADERS="$T_DIR/last-headers"
	H_STATUS=$(curl -sS -o "$T_DIR/last-body" -D "$H_HEADERS" -w '%{http_code}' -X "$method" "$@" \
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

# psql as the application role.
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "$1"; }

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

# hs256 SECRET HEADER_JSON CLAIMS_JSON: a JWT built independently of the code under test.
hs256() {
	local h c s
	h=$(printf '%s' "$2" | b64url)
	c=$(printf '%s' "$3" | b64url)
	s=$(printf '%s' "$h.$c" | openssl dgst -sha256 -hmac "$1" -binary | b64url)
	printf '%s.%s.%s' "$h" "$c" "$s"
}

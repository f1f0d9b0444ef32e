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

#!/usr/bin/env bash
# push_tenants.sh: per-tenant push credentials (issue 6 item 4). Tenant acme has its own APNs
# key, team, key id and bundle (push_credentials_dir/acme.conf, with its own fake APNs that
# accepts only acme's key), tenant globex its own VAPID key (globex.conf); every other tenant
# uses the global credentials. A bad credentials file stops capsule-pushd at start.
# Prints TAP. Every server is started on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin push_tenants

it_stack_up "stack starts (PostgreSQL, Redis, fake APNs and Web Push, capsule-pushd) behind $(stack_web)"

APNS_LOG="$STACK_DIR/apns-requests.jsonl"
ACME_LOG="$STACK_DIR/apns-acme-requests.jsonl"
WP_LOG="$STACK_DIR/webpush-requests.jsonl"
WP_SUBS="$STACK_DIR/webpush-subs.jsonl"
TENANTS="$STACK_DIR/tenants"
JSON=(-H 'Content-Type: application/json')
GLOBAL_VAPID=$(sed -n 's/^vapid_public_key = //p' "$STACK_DIR/keys/vapid.conf")

# --- acme's own APNs key and its own fake APNs; globex's own VAPID pair ------------------
mkdir -p "$TENANTS"
(
	umask 077
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TENANTS/acme.p8" &&
		openssl pkey -in "$TENANTS/acme.p8" -pubout -out "$TENANTS/acme-pub.pem"
) >/dev/null 2>&1
ACME_PORT=$(stack_free_port)
: >"$ACME_LOG"
: >"$STACK_DIR/apns-acme-script.txt"
"$BUILD_DIR/tests/tools/fake-apns" --port "$ACME_PORT" --cert "$STACK_DIR/keys/server.pem" \
	--key "$STACK_DIR/keys/server.key" --team-id ACMETEAM01 --key-id ACMEKEY001 \
	--auth-key "$TENANTS/acme-pub.pem" --bundle-id com.acme.alerts \
	--log "$ACME_LOG" --script "$STACK_DIR/apns-acme-script.txt" >"$STACK_DIR/fake-apns-acme.log" 2>&1 &
stack_record_pid fake-apns $!
stack_wait_port "$ACME_PORT"
t_result $? "a second fake APNs for acme's key (team ACMETEAM01, bundle com.acme.alerts)"
cat >"$TENANTS/acme.conf" <<EOF
# acme's own APNs credentials (its own Apple developer account)
apns_team_id = ACMETEAM01
apns_key_id = ACMEKEY001
apns_key_path = $TENANTS/acme.p8
apns_bundle_id = com.acme.alerts
apns_url = https://127.0.0.1:$ACME_PORT
EOF
"$BUILD_DIR/sql/capsule-admin" vapid-keygen >"$TENANTS/globex-vapid.txt"
GLOBEX_VAPID=$(sed -n 's/^vapid_public_key = //p' "$TENANTS/globex-vapid.txt")
{
	echo "# globex's own VAPID key pair"
	sed -n 's/^vapid_private_key = /vapid_private_key = /p' "$TENANTS/globex-vapid.txt"
	echo "vapid_subject = https://globex.example/push-contact"
} >"$TENANTS/globex.conf"

# A bad file: capsule-pushd -n names it and refuses to start.
mkdir -p "$STACK_DIR/bad-tenants"
printf 'apns_team_id = ACMETEAM01\n' >"$STACK_DIR/bad-tenants/acme.conf"
PUSH_CREDENTIALS_DIR="$STACK_DIR/bad-tenants" "$BUILD_DIR/push-daemon/capsule-pushd" -n \
	-f "$CAPSULE_CONFIG" >"$T_DIR/bad.out" 2>&1
is "$?" 1 "capsule-pushd -n refuses a tenant file with half an APNs key"
grep -q 'bad-tenants/acme.conf' "$T_DIR/bad.out"
t_result $? "... naming the file: $(head -n 1 "$T_DIR/bad.out")"
printf 'database_url = postgresql:///elsewhere\n' >"$STACK_DIR/bad-tenants/acme.conf"
PUSH_CREDENTIALS_DIR="$STACK_DIR/bad-tenants" "$BUILD_DIR/push-daemon/capsule-pushd" -n \
	-f "$CAPSULE_CONFIG" >"$T_DIR/bad2.out" 2>&1
is "$?/$(grep -c 'cannot be set here' "$T_DIR/bad2.out")" "1/1" "... and any key other than the push credentials"

stack_stop capsule-pushd
PUSH_CREDENTIALS_DIR="$TENANTS" stack_start_pushd 2>/dev/null
wait_for 10 grep -q 'tenant acme sends to' "$STACK_DIR/capsule-pushd.log"
t_result $? "capsule-pushd restarted with push_credentials_dir: it reads acme's and globex's files"

# --- APNs: default with the global key, acme with its own -------------------------------------
T_DEF=$(openssl rand -hex 32)
T_ACME=$(openssl rand -hex 32)
T_GLOBEX=$(openssl rand -hex 32)
sql "INSERT INTO devices (tenant_id, user_id, platform, device_token) VALUES
     ('default', 'pt-user', 'ios', '$T_DEF'), ('acme', 'pt-user', 'ios', '$T_ACME'),
     ('globex', 'pt-user', 'ios', '$T_GLOBEX')" >/dev/null

# create TENANT CAPSULE: an activity of pt-user in TENANT.
create() {
	HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token "pt-pub-$1" "$1" publisher)")
	http POST /create-activity "${JSON[@]}" \
		--data-binary "{\"capsule_id\":\"$2\",\"title\":\"Tenant $1\",\"priority\":\"high\",\"user_id\":\"pt-user\"}"
	HTTP_AUTH=()
	[ "$H_STATUS" = 201 ] || diag "create-activity in $1 answered $H_STATUS: $H_BODY"
}
# req LOG TOKEN FILTER: jq FILTER over the fake's log line for TOKEN.
req() { jq -r --arg t "$2" "select(.device_token == \$t) | $3" "$1" | head -n 1; }

create default cap-pt-def
create acme cap-pt-acme
create globex cap-pt-globex
wait_for 15 sh -c "[ \"\$(jq -c --arg t '$T_ACME' 'select(.device_token == \$t and .status == 200)' '$ACME_LOG' | wc -l)\" -ge 1 ]"
is "$(req "$ACME_LOG" "$T_ACME" .status)" 200 "acme's push goes to acme's APNs endpoint and is accepted with acme's key"
is "$(req "$ACME_LOG" "$T_ACME" '.jwt.claims.iss + "/" + .jwt.header.kid')" "ACMETEAM01/ACMEKEY001" \
	"... its provider token names acme's team and key"
is "$(req "$ACME_LOG" "$T_ACME" '.headers["apns-topic"]')" "com.acme.alerts" "... and the topic is acme's bundle"
wait_for 15 sh -c "[ \"\$(jq -c --arg t '$T_DEF' 'select(.device_token == \$t and .status == 200)' '$APNS_LOG' | wc -l)\" -ge 1 ]"
is "$(req "$APNS_LOG" "$T_DEF" '.jwt.claims.iss + "/" + .headers["apns-topic"]')" \
	"$STACK_APNS_TEAM_ID/$STACK_APNS_BUNDLE_ID" "default's push uses the global key and bundle"
wait_for 15 sh -c "[ \"\$(jq -c --arg t '$T_GLOBEX' 'select(.device_token == \$t and .status == 200)' '$APNS_LOG' | wc -l)\" -ge 1 ]"
is "$(req "$APNS_LOG" "$T_GLOBEX" '.jwt.claims.iss')" "$STACK_APNS_TEAM_ID" \
	"globex has no APNs file: the global key"
is "$(jq -c --arg t "$T_ACME" 'select(.device_token == $t)' "$APNS_LOG" | wc -l)/$(jq -c --arg t "$T_DEF" 'select(.device_token == $t)' "$ACME_LOG" | wc -l)" \
	"0/0" "no push crosses to the other tenant's APNs endpoint"
wait_for 10 sh -c "[ \"\$(psql -X -q -t -A '$ADMIN_DATABASE_URL' -c \"SELECT status FROM deliveries WHERE target = '$T_ACME'\")\" = sent ]"
is "$(sql "SELECT status FROM deliveries WHERE target = '$T_ACME'")" sent "acme's delivery row says sent"

# --- Web Push: globex with its own VAPID key, default with the global one ---------------------
# The FastCGI program reads the same directory for GET /api/v1/push/vapid-public-key.
stack_stop fcgi
PUSH_CREDENTIALS_DIR="$TENANTS" stack_start_fcgi >/dev/null 2>&1
wait_for 10 sh -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HTTP_PORT/health | grep -qv 000"
vapid_key_of() { # TENANT
	HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token pt-user "$1" viewer)")
	http GET /api/v1/push/vapid-public-key
	HTTP_AUTH=()
	jqr .public_key
}
is "$(vapid_key_of globex)" "$GLOBEX_VAPID" "GET /api/v1/push/vapid-public-key gives globex its own key"
is "$(vapid_key_of default)" "$GLOBAL_VAPID" "... and default the global one"

newsub() { # NAME: a subscription /push/NAME the fake knows; the browser JSON in $T_DIR/NAME.json
	local out
	out=$("$BUILD_DIR/tests/tools/fake-webpush" --make-subscription "/push/$1" --port "$WEBPUSH_PORT") || return 1
	cp "$WP_SUBS" "$WP_SUBS.tmp" && printf '%s\n' "$out" | sed -n 1p >>"$WP_SUBS.tmp" && mv "$WP_SUBS.tmp" "$WP_SUBS"
	printf '%s\n' "$out" | sed -n 2p >"$T_DIR/$1.json"
}
subscribe() { # TENANT NAME
	newsub "$2" || return 1
	HTTP_AUTH=(-H "Authorization: Bearer $(bearer_token pt-user "$1" viewer)")
	http POST /api/v1/push/subscribe "${JSON[@]}" --data-binary "@$T_DIR/$2.json"
	HTTP_AUTH=()
	[ "$H_STATUS" = 201 ]
}
subscribe globex pt-globex
s1=$?
subscribe default pt-def
is "$s1/$?" "0/0" "a browser of globex and one of default subscribe"
create globex cap-pt-globex-2
create default cap-pt-def-2
wait_for 15 sh -c "[ \"\$(jq -c 'select((.path == \"/push/pt-globex\" or .path == \"/push/pt-def\") and .status == 201)' '$WP_LOG' | wc -l)\" -ge 2 ]"
is "$(jq -r 'select(.path == "/push/pt-globex" and .status == 201) | .vapid.k' "$WP_LOG" | head -n 1)" "$GLOBEX_VAPID" \
	"globex's push is signed with globex's VAPID key"
is "$(jq -r 'select(.path == "/push/pt-globex" and .status == 201) | .vapid.sub' "$WP_LOG" | head -n 1)" \
	"https://globex.example/push-contact" "... with globex's subject"
is "$(jq -r 'select(.path == "/push/pt-def" and .status == 201) | .vapid.k' "$WP_LOG" | head -n 1)" "$GLOBAL_VAPID" \
	"default's push is signed with the global VAPID key"

sanitizer_clean "$STACK_DIR"/capsule-pushd.log
t_result $? "no sanitizer report in capsule-pushd"
t_done

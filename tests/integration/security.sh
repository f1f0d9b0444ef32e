#!/usr/bin/env bash
# security.sh: authentication, roles, tenant isolation (PostgreSQL row-level security),
# audit, idempotency, rate limits and browser safety, through the real lighttpd +
# spawn-fcgi, PostgreSQL, Redis and capsule-wsd. Prints TAP. Every server is started
# on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin sec

# debug: whatever the FastCGI program logs, not even debug lines may hold a secret.
STACK_LOG_LEVEL=debug
# enough FastCGI processes for the concurrent idempotency requests to really overlap
STACK_FCGI_CHILDREN=${STACK_FCGI_CHILDREN:-4}
it_stack_up "stack starts (PostgreSQL, Redis, capsule-wsd, spawn-fcgi) behind $(stack_web)"

WSC="$BUILD_DIR/tests/tools/ws-client"
JWTSIGN="$BUILD_DIR/tests/tools/jwt-sign"
CADMIN="$BUILD_DIR/sql/capsule-admin"
WS_URL="ws://127.0.0.1:$HTTP_PORT/ws"
KEYS="$STACK_DIR/keys"
HS_SECRET=$(cat "$STACK_DIR/jwt-hs256-secret")
ISS=https://auth.test.local
AUD=capsule-gateway
NOW=$(date +%s)
SECRETS="$T_DIR/secrets"     # every token and key secret: none may reach fcgi.log
ERRORS="$T_DIR/error-bodies" # every error body: none may hold SQL or a file path
: >"$SECRETS"
: >"$ERRORS"
printf '%s\n' "$HS_SECRET" >>"$SECRETS"

# api METHOD PATH [curl args]: http, remembering error bodies for the last group.
api() {
	http "$@"
	if [ "$H_STATUS" -ge 400 ] 2>/dev/null && [ -z "${NO_REC:-}" ]; then
		printf '%s\n' "$H_BODY" >>"$ERRORS"
	fi
}

# claims SUB TENANT ROLE [JQ]: standard claims valid for 10 minutes, then
# changed by the jq filter JQ ($now is the time).
claims() {
	jq -cn --arg sub "$1" --arg t "$2" --arg r "$3" --arg iss "$ISS" --arg aud "$AUD" \
		--argjson now "$NOW" \
		"{sub: \$sub, tenant: \$t, role: \$r, iss: \$iss, aud: \$aud, iat: \$now, nbf: \$now, exp: (\$now + 600)} | ${4:-.}"
}

# sign [jwt-sign args]: a token, remembered as a secret.
sign() {
	local t
	t=$("$JWTSIGN" "$@") || { diag "jwt-sign $* failed"; return 1; }
	printf '%s\n' "$t" >>"$SECRETS"
	printf '%s\n' "${t##*.}" | awk 'length($0) >= 16' >>"$SECRETS"
	printf '%s' "$t"
}

# hs SUB TENANT ROLE [JQ]: an HS256 Bearer token with the configured secret.
hs() { sign --alg HS256 --secret "$HS_SECRET" --claims "$(claims "$@")"; }

# issue TENANT ROLE NAME [capsule-admin options]: a new API key (stdout).
issue() {
	local k
	k=$("$CADMIN" -f "$CAPSULE_CONFIG" key issue "$@" 2>>"$T_DIR/capsule-admin.err") || return 1
	printf '%s\n' "$k" >>"$SECRETS"
	printf '%s\n%s\n' "${k:21}" "${k:21:24}" >>"$SECRETS"
	printf '%s' "$k"
}
key_id() { printf '%s' "${1:4:16}"; }

# bearer TOKEN: the Authorization header for curl -H.
bearer() { printf 'Authorization: Bearer %s' "$1"; }

# sec_headers DESCRIPTION: the last answer carries the browser-safety headers.
sec_headers() {
	local h missing=""
	for h in X-Content-Type-Options X-Frame-Options Content-Security-Policy Referrer-Policy; do
		[ -n "$(header "$h")" ] || missing="$missing $h"
	done
	is "${missing# }" "" "$1 carries X-Content-Type-Options, X-Frame-Options, Content-Security-Policy, Referrer-Policy"
}

ctype=(-H 'Content-Type: application/json')

# ============================================================================
# Tokens
# ============================================================================
diag "--- Bearer JWTs (tenant default, capsule ids tok-*)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T_DIR/other-rsa.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_DIR/other-ec.pem" 2>/dev/null

C_OK=$(claims tok-user default viewer)
T_HS=$(hs tok-user default viewer)
T_RS=$(sign --alg RS256 --kid rsa1 --key "$KEYS/jwt-rsa.pem" --claims "$C_OK")
T_ES=$(sign --alg ES256 --kid ec1 --key "$KEYS/jwt-ec.pem" --claims "$C_OK")
T_LIB=$(hs256 "$HS_SECRET" '{"alg":"HS256","typ":"JWT"}' "$C_OK")
printf '%s\n' "$T_LIB" >>"$SECRETS"

for c in "HS256:$T_HS" "RS256 (kid rsa1):$T_RS" "ES256 (kid ec1):$T_ES" "HS256 signed by openssl:$T_LIB"; do
	api GET /activity/tok-none -H "$(bearer "${c#*:}")"
	is "$H_STATUS" 404 "a valid ${c%%:*} token is accepted (GET /activity/x answers 404, not 401)"
done
is "$(header RateLimit-Limit | grep -c '^[0-9][0-9]*$')" 1 "an authenticated answer carries RateLimit-Limit"
is "$(header RateLimit-Remaining | grep -c '^[0-9][0-9]*$')/$(header RateLimit-Reset | grep -c '^[0-9][0-9]*$')" "1/1" \
	"an authenticated answer carries RateLimit-Remaining and RateLimit-Reset"

BAD=(
	"forged HS256 (wrong secret)|$(sign --alg HS256 --secret "not-the-secret-$(openssl rand -hex 16)" --claims "$C_OK")"
	"forged RS256 (another RSA key, kid rsa1)|$(sign --alg RS256 --kid rsa1 --key "$T_DIR/other-rsa.pem" --claims "$C_OK")"
	"forged ES256 (another EC key, kid ec1)|$(sign --alg ES256 --kid ec1 --key "$T_DIR/other-ec.pem" --claims "$C_OK")"
	"ES256 with a DER signature|$(sign --alg ES256 --kid ec1 --key "$KEYS/jwt-ec.pem" --der --claims "$C_OK")"
	"expired (exp 1 h ago)|$(hs tok-user default viewer '.iat = $now - 7200 | .nbf = $now - 7200 | .exp = $now - 3600')"
	"not yet valid (nbf in 1 h)|$(hs tok-user default viewer '.nbf = $now + 3600 | .exp = $now + 7200')"
	"alg none|$(sign --alg none --claims "$C_OK")"
	"alg NONE|$(sign --alg none --header '{"alg":"NONE","typ":"JWT"}' --claims "$C_OK")"
	"alg none with a valid HMAC attached|$(sign --alg none --sign-as HS256 --secret "$HS_SECRET" --claims "$C_OK")"
	"wrong aud|$(hs tok-user default viewer '.aud = "someone-else"')"
	"wrong iss|$(hs tok-user default viewer '.iss = "https://evil.example"')"
	"no exp|$(hs tok-user default viewer 'del(.exp)')"
	"unknown role|$(hs tok-user default viewer '.role = "superuser"')"
	"unknown kid|$(sign --alg RS256 --kid nope --key "$KEYS/jwt-rsa.pem" --claims "$C_OK")"
	"RS256 without kid|$(sign --alg RS256 --key "$KEYS/jwt-rsa.pem" --claims "$C_OK")"
	"RS256 header HMAC-signed with the RSA public key PEM (alg confusion)|$(sign --alg RS256 --kid rsa1 --sign-as HS256 --secret-file "$KEYS/jwt-rsa-pub.pem" --claims "$C_OK")"
	"HS256 kid rsa1 HMAC-signed with the RSA public key PEM (alg confusion)|$(sign --alg HS256 --kid rsa1 --secret-file "$KEYS/jwt-rsa-pub.pem" --claims "$C_OK")"
	"ES256 signed by the EC key but kid rsa1|$(sign --alg ES256 --kid rsa1 --key "$KEYS/jwt-ec.pem" --claims "$C_OK")"
	"RS256 signed by the RSA key but kid ec1|$(sign --alg RS256 --kid ec1 --key "$KEYS/jwt-rsa.pem" --claims "$C_OK")"
	"garbage|abc.def.ghi"
)
no_invalid_token=""
for c in "${BAD[@]}"; do
	name=${c%%|*}
	tok=${c#*|}
	[ -n "$tok" ] || { t_result 1 "$name: jwt-sign made the token"; continue; }
	api GET /activity/tok-none -H "$(bearer "$tok")"
	www=$(header WWW-Authenticate)
	case "$www" in Bearer*) wok=Bearer ;; *) wok="WWW-Authenticate: $www" ;; esac
	is "$H_STATUS $wok $(jqr '[.success, .error.code] | map(tostring) | join(",")')" "401 Bearer false,unauthorized" \
		"$name: 401, WWW-Authenticate Bearer, error code unauthorized"
	case "$www" in *'error="invalid_token"'*) ;; *) no_invalid_token="$no_invalid_token [$name]" ;; esac
done
is "${no_invalid_token# }" "" 'every refused token gets WWW-Authenticate with error="invalid_token"'
sec_headers "a 401 answer"

api GET /activity/tok-none
is "$H_STATUS/$(jqr .error.code)" "401/unauthorized" "no credential: 401 unauthorized"
is "$(header WWW-Authenticate | grep -c 'Bearer realm="capsule-gateway"')" 1 \
	'no credential: WWW-Authenticate: Bearer realm="capsule-gateway"'
api GET /activity/tok-none -H "Authorization: Basic $(printf 'a:b' | base64)"
is "$H_STATUS" 401 "Authorization: Basic is not a credential here: 401"
api POST /create-activity "${ctype[@]}" --data-binary '{"capsule_id":"tok-anon","title":"anonymous"}'
is "$H_STATUS" 401 "an anonymous create answers 401"
is "$(sql "SELECT count(*) FROM activities WHERE capsule_id = 'tok-anon'")" 0 "the anonymous create wrote nothing"

FCGI_LOG="$STACK_DIR/fcgi.log"
missing=""
for reason in "expired" "not yet valid" "bad signature" "unknown kid" "alg not allowed" "wrong audience" "wrong issuer"; do
	grep -q "$reason" "$FCGI_LOG" || missing="$missing [$reason]"
done
is "${missing# }" "" "fcgi.log names the reason of each refusal (expired, bad signature, unknown kid, ...)"

# ============================================================================
# API keys
# ============================================================================
diag "--- API keys (capsule-admin; tenant default, acme, globex)"
"$CADMIN" -f "$CAPSULE_CONFIG" tenant create initech "Initech Corp" >"$T_DIR/tenant-create.out" 2>&1
t_result $? "capsule-admin tenant create initech"
"$CADMIN" -f "$CAPSULE_CONFIG" tenant list >"$T_DIR/tenant-list.out" 2>&1
is "$(awk '{print $1}' "$T_DIR/tenant-list.out" | grep -c -x -e default -e acme -e globex -e initech)" 4 \
	"capsule-admin tenant list shows default, acme, globex and initech"

K_EXP=$(issue default publisher expiring --expires-in 1)
K_EXP_T=$(date +%s)
K_DEF_PUB=$(issue default publisher "default publisher")
K_ACME_VIEW=$(issue acme viewer "acme viewer")
K_ACME_OPER=$(issue acme operator "acme operator")
K_ACME_PUB=$(issue acme publisher "acme publisher")
K_ACME_ADMIN=$(issue acme admin "acme admin")
K_GLOBEX_PUB=$(issue globex publisher "globex publisher")
K_REVOKE=$(issue default viewer "to revoke")
n=0
for k in "$K_EXP" "$K_DEF_PUB" "$K_ACME_VIEW" "$K_ACME_OPER" "$K_ACME_PUB" "$K_ACME_ADMIN" "$K_GLOBEX_PUB" "$K_REVOKE"; do
	printf '%s' "$k" | grep -Eq '^cgk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$' && n=$((n + 1))
done
is "$n" 8 "capsule-admin key issue prints each key alone, shaped cgk_<16 hex>_<43 base64url>"
[ "$n" = 8 ] || sed 's/^/# /' "$T_DIR/capsule-admin.err"

api GET /activity/key-none -H "X-API-Key: $K_DEF_PUB"
is "$H_STATUS" 404 "a valid API key is accepted (404, not 401)"
api GET /activity/key-none -H "X-API-Key: $K_REVOKE"
is "$H_STATUS" 404 "the key to revoke works before revocation"
"$CADMIN" -f "$CAPSULE_CONFIG" key revoke "$(key_id "$K_REVOKE")" >"$T_DIR/revoke.out" 2>&1
t_result $? "capsule-admin key revoke"
api GET /activity/key-none -H "X-API-Key: $K_REVOKE"
is "$H_STATUS/$(jqr .error.code)/$(header WWW-Authenticate | cut -c1-6)" "401/unauthorized/Bearer" "a revoked key answers 401 unauthorized"

K_ID=$(key_id "$K_DEF_PUB")
for c in "malformed (too short)|cgk_1234" \
	"malformed (no prefix)|${K_DEF_PUB#cgk_}" \
	"malformed (secret cut short)|${K_DEF_PUB%?????}" \
	"right key id, wrong secret|cgk_${K_ID}_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=' | cut -c1-43)" \
	"unknown key id|cgk_0123456789abcdef_${K_DEF_PUB:21}" \
	"SQL in the key|cgk_' OR '1'='1"; do
	api GET /activity/key-none -H "X-API-Key: ${c#*|}"
	is "$H_STATUS/$(jqr .error.code)" "401/unauthorized" "API key ${c%%|*}: 401 unauthorized"
done

# (issued with --expires-in 1 above; everything since took time already)
while [ $(($(date +%s) - K_EXP_T)) -lt 2 ]; do sleep 0.2; done
api GET /activity/key-none -H "X-API-Key: $K_EXP"
is "$H_STATUS/$(jqr .error.code)" "401/unauthorized" "an expired key (--expires-in 1, 2 s later) answers 401"

"$CADMIN" -f "$CAPSULE_CONFIG" key list default >"$T_DIR/key-list.out" 2>&1
t_result $? "capsule-admin key list default"
is "$(grep -c "$(key_id "$K_DEF_PUB")" "$T_DIR/key-list.out")" 1 "key list shows the key id"
leaks=0
for k in "$K_EXP" "$K_DEF_PUB" "$K_REVOKE"; do
	grep -qF -e "${k:21}" "$T_DIR/key-list.out" && leaks=$((leaks + 1))
done
is "$leaks" 0 "key list never shows a key's secret"
is "$(grep "$(key_id "$K_REVOKE")" "$T_DIR/key-list.out" | grep -c revoked)" 1 "key list marks the revoked key as revoked"

plain=0
for k in "$K_DEF_PUB" "$K_ACME_ADMIN" "$K_GLOBEX_PUB"; do
	n=$(sql "SELECT count(*) FROM api_keys k WHERE strpos(row_to_json(k)::text, '${k:21}') > 0")
	plain=$((plain + n))
done
is "$plain" 0 "no column of api_keys holds a key's secret"
is "$(sql "SELECT secret_hash FROM api_keys WHERE key_id = '$K_ID'")" \
	"$(printf '%s' "${K_DEF_PUB:21}" | sha256sum | cut -d' ' -f1)" "api_keys stores the SHA-256 of the secret"

is "$(grep "$(key_id "$K_EXP")" "$T_DIR/key-list.out" | grep -c expired)" 1 "key list marks the expired key as expired"

# ============================================================================
# Roles x endpoint classes
# ============================================================================
diag "--- roles (tenant acme, capsule ids role-*)"
# Open: health and readiness.
api GET /health
is "$H_STATUS" 200 "/health needs no credential (200)"
sec_headers "a 200 answer"
api GET /ready
is "$H_STATUS" 200 "/ready needs no credential (200)"

# Create (publisher and above).
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" --data-binary '{"capsule_id":"role-pub","title":"by publisher"}'
is "$H_STATUS" 201 "publisher can create (201)"
sec_headers "a 201 answer"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_ADMIN" --data-binary '{"capsule_id":"role-admin","title":"by admin"}'
is "$H_STATUS" 201 "admin can create (201)"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_VIEW" --data-binary '{"capsule_id":"role-view","title":"by viewer"}'
is "$H_STATUS/$(jqr .error.code)" "403/forbidden" "viewer cannot create (403 forbidden)"
sec_headers "a 403 answer"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_OPER" --data-binary '{"capsule_id":"role-oper","title":"by operator"}'
is "$H_STATUS/$(jqr .error.code)" "403/forbidden" "operator cannot create (403 forbidden)"
api POST /create-activity "${ctype[@]}" -H "$(bearer "$(hs role-jv acme viewer)")" --data-binary '{"capsule_id":"role-jview","title":"by viewer JWT"}'
is "$H_STATUS/$(jqr .error.code)" "403/forbidden" "viewer JWT cannot create (403 forbidden)"
is "$(sql "SELECT count(*) FROM activities WHERE capsule_id IN ('role-view', 'role-oper', 'role-jview')")" 0 \
	"denied creates wrote nothing"

# Read (viewer and above).
for c in "viewer key|X-API-Key: $K_ACME_VIEW" "operator key|X-API-Key: $K_ACME_OPER" \
	"viewer JWT|$(bearer "$(hs role-jv acme viewer)")"; do
	api GET /activity/role-pub -H "${c#*|}"
	is "$H_STATUS/$(jqr .activity.title)" "200/by publisher" "${c%%|*} can read GET /activity/{id} (200)"
done

# Admin view (admin only).
api GET /api/v1/admin/audit -H "X-API-Key: $K_ACME_ADMIN"
is "$H_STATUS" 200 "admin can read GET /api/v1/admin/audit (200)"
for c in "viewer|$K_ACME_VIEW" "operator|$K_ACME_OPER" "publisher|$K_ACME_PUB"; do
	api GET /api/v1/admin/audit -H "X-API-Key: ${c#*|}"
	is "$H_STATUS/$(jqr .error.code)" "403/forbidden" "${c%%|*} gets 403 forbidden on /api/v1/admin/audit"
done
api GET /api/v1/admin/audit
is "$H_STATUS" 401 "/api/v1/admin/audit without a credential answers 401"

# WebSocket tokens.
T_U1=$(hs u1 acme viewer)
api GET /ws/token -H "$(bearer "$T_U1")"
is "$H_STATUS" 200 "viewer JWT (sub u1) gets a WebSocket token without user_id"
WT=$(jqr .token)
printf '%s\n' "$WT" >>"$SECRETS"
is "$(jwt_payload "$WT" | jq -r '[.sub, .tenant] | join(",")')" "u1,acme" \
	"that token is for u1 in the caller's tenant acme"
api GET "/ws/token?user_id=u1" -H "$(bearer "$T_U1")"
is "$H_STATUS/$(jwt_payload "$(jqr .token)" | jq -r .sub)" "200/u1" "viewer JWT (sub u1) gets a token with user_id=u1"
api GET "/ws/token?user_id=u2" -H "$(bearer "$T_U1")"
is "$H_STATUS/$(jqr .error.code)" "403/forbidden" "viewer JWT (sub u1) gets 403 for user_id=u2"
api GET "/ws/token?user_id=u2" -H "$(bearer "$(hs u1-op acme operator)")"
is "$H_STATUS" 403 "operator JWT gets 403 for another user"
api GET "/ws/token?user_id=anyone-7" -H "X-API-Key: $K_ACME_PUB"
is "$H_STATUS" 200 "publisher key may mint a token for any user"
WT=$(jqr .token)
printf '%s\n' "$WT" >>"$SECRETS"
is "$(jwt_payload "$WT" | jq -r '[.sub, .tenant, .role] | join(",")')" "anyone-7,acme,viewer" \
	"the publisher's token names that user, the publisher's tenant acme, and the end user's role viewer"
api GET "/ws/token" -H "$(bearer "$(hs self-op acme operator)")"
is "$(jwt_payload "$(jqr .token)" | jq -r '[.sub, .role] | join(",")')" "self-op,operator" \
	"a token minted for oneself carries one's own role"
api GET "/ws/token?user_id=anyone-8" -H "$(bearer "$(hs role-gpub globex publisher)")"
WT=$(jqr .token)
printf '%s\n' "$WT" >>"$SECRETS"
is "$H_STATUS/$(jwt_payload "$WT" | jq -r .tenant)" "200/globex" "a globex publisher JWT mints tokens of tenant globex"

# ============================================================================
# Tenant isolation
# ============================================================================
diag "--- tenant isolation (acme vs globex vs default, capsule ids iso-*)"
diag "listing (GET /activities), updating (PUT /update) and acting (POST /action) do not exist yet (issue 4): their cross-tenant checks come with them"
T_GV=$(hs iso-gv globex viewer)
T_GPUB=$(hs iso-gpub globex publisher)
T_AV=$(hs iso-av acme viewer)
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" \
	--data-binary '{"capsule_id":"iso-cap-1","title":"acme secret alert","message":"acme only"}'
is "$H_STATUS" 201 "acme creates iso-cap-1"
api GET /activity/iso-cap-1 -H "$(bearer "$T_GV")"
is "$H_STATUS/$(jqr .error.code)" "404/not_found" "globex cannot read acme's activity (404, not 403)"
api GET /activity/iso-cap-1 -H "X-API-Key: $K_DEF_PUB"
is "$H_STATUS" 404 "default cannot read acme's activity (404)"
api GET /activity/iso-cap-1 -H "$(bearer "$T_AV")"
is "$H_STATUS/$(jqr .activity.title)" "200/acme secret alert" "acme reads its activity (now cached)"
is "$(redis-cli -p "$REDIS_PORT" EXISTS "cg:{acme}:activity:iso-cap-1")/$(redis-cli -p "$REDIS_PORT" EXISTS "cg:{globex}:activity:iso-cap-1")" "1/0" \
	"the cache key is namespaced by tenant"
api GET /activity/iso-cap-1 -H "$(bearer "$T_GV")"
is "$H_STATUS" 404 "globex still gets 404 once acme's activity is cached"
api GET /activity/iso-cap-1 -H "X-API-Key: $K_DEF_PUB"
is "$H_STATUS" 404 "default still gets 404 once acme's activity is cached"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_GLOBEX_PUB" \
	--data-binary '{"capsule_id":"iso-cap-1","title":"globex own alert"}'
is "$H_STATUS" 201 "globex can create the same capsule_id (201: unique per tenant)"
is "$(sql "SELECT string_agg(tenant_id || ':' || title, ',' ORDER BY tenant_id) FROM activities WHERE capsule_id = 'iso-cap-1'")" \
	"acme:acme secret alert,globex:globex own alert" "both activities exist, one per tenant"
api GET /activity/iso-cap-1 -H "$(bearer "$T_GV")"
is "$H_STATUS/$(jqr .activity.title)" "200/globex own alert" "globex reads its own iso-cap-1"
api GET /activity/iso-cap-1 -H "$(bearer "$T_AV")"
is "$H_STATUS/$(jqr .activity.title)" "200/acme secret alert" "acme still reads its own iso-cap-1"

# Streaming: a globex client never receives acme's event.
api GET "/ws/token?user_id=iso-gv" -H "$(bearer "$T_GV")"
WT_G=$(jqr .token)
api GET "/ws/token?user_id=iso-av" -H "$(bearer "$T_AV")"
WT_A=$(jqr .token)
printf '%s\n%s\n' "$WT_G" "$WT_A" >>"$SECRETS"
"$WSC" --url "$WS_URL?token=$WT_A" --until activity_created --timeout 20 >"$T_DIR/ws-acme.out" 2>"$T_DIR/ws-acme.err" &
WS_A=$!
"$WSC" --url "$WS_URL?token=$WT_G" --until activity_created --timeout 20 >"$T_DIR/ws-globex.out" 2>"$T_DIR/ws-globex.err" &
WS_G=$!
wait_for 10 grep -q '"authenticated"' "$T_DIR/ws-acme.out"
t_result $? "acme WebSocket client is authenticated"
wait_for 10 grep -q '"authenticated"' "$T_DIR/ws-globex.out"
t_result $? "globex WebSocket client is authenticated"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" \
	--data-binary '{"capsule_id":"iso-ws-acme","title":"acme tenant-wide"}'
is "$H_STATUS" 201 "acme creates a tenant-wide activity"
wait $WS_A
is "$?/$(grep '"activity_created"' "$T_DIR/ws-acme.out" | head -n 1 | jq -r .activity.capsule_id)" "0/iso-ws-acme" \
	"the acme client receives acme's activity_created"
# The globex client gets its own tenant's next event first: acme's came before it
# on the stream, so had it been delivered it would be the first one.
api POST /create-activity "${ctype[@]}" -H "$(bearer "$T_GPUB")" \
	--data-binary '{"capsule_id":"iso-ws-globex","title":"globex tenant-wide"}'
is "$H_STATUS" 201 "globex creates a tenant-wide activity"
wait $WS_G
is "$?/$(grep '"activity_created"' "$T_DIR/ws-globex.out" | head -n 1 | jq -r .activity.capsule_id)" "0/iso-ws-globex" \
	"the globex client's first activity_created is globex's"
is "$(grep -c 'iso-ws-acme\|acme tenant-wide' "$T_DIR/ws-globex.out")" 0 "the globex client never received acme's activity"

# Audit of acme is invisible to globex's admin.
T_GADMIN=$(hs iso-gadmin globex admin)
api GET "/api/v1/admin/audit?limit=500" -H "$(bearer "$T_GADMIN")"
is "$H_STATUS" 200 "globex admin lists its audit log"
is "$(jqr '[.entries[] | select(.actor == "apikey:'"$(key_id "$K_ACME_PUB")"'" or .target == "iso-ws-acme" or .target == "role-pub")] | length')" 0 \
	"acme's audit entries are not listed for the globex admin"
is "$(jqr '[.entries[] | select(.target == "iso-cap-1")] | length')" 1 "globex's own create of iso-cap-1 is listed once"
G_IDS=$(jqr '[.entries[].id] | map(tostring) | join(",")')
is "$(jqr '.entries | length')/$(sql "SELECT count(*) FROM audit_log WHERE id IN (${G_IDS:-0}) AND tenant_id = 'globex'")" \
	"$(sql "SELECT count(*) FROM audit_log WHERE tenant_id = 'globex'")/$(jqr '.entries | length')" \
	"the globex admin gets exactly globex's audit rows, all of them"

# ============================================================================
# RLS when a query forgets the tenant filter
# ============================================================================
diag "--- row-level security (psql as capsule_web, the application role)"
ACME_N=$(sql "SELECT count(*) FROM activities WHERE tenant_id = 'acme'")
ALL_N=$(sql "SELECT count(*) FROM activities")
is "$(app_sql acme "SELECT count(*) FROM activities")" "$ACME_N" \
	"app role in tenant acme, SELECT count(*) FROM activities with no WHERE: only acme's rows ($ACME_N)"
[ "$ALL_N" -gt "$ACME_N" ]
t_result $? "while the owner counts every tenant's rows ($ALL_N > $ACME_N)"
is "$(app_sql acme "SELECT count(DISTINCT tenant_id) || ':' || min(tenant_id) FROM activities")" "1:acme" \
	"the unfiltered query returns acme rows only"
is "$(app_sql globex "SELECT count(*) FROM audit_log WHERE tenant_id <> 'globex'")" 0 \
	"app role in globex sees no other tenant's audit rows even when asking for them"
is "$(app_sql acme "WITH u AS (UPDATE activities SET title = title RETURNING tenant_id) SELECT count(*) FILTER (WHERE tenant_id <> 'acme') || '/' || count(*) FROM u")" \
	"0/$ACME_N" "an unfiltered UPDATE as acme touches only acme's rows"
is "$(psql -X -q -t -A "$DATABASE_URL" -c "SELECT (SELECT count(*) FROM activities) + (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM audit_log) + (SELECT count(*) FROM events)" 2>&1)" 0 \
	"app role with no tenant set sees 0 rows (activities, api_keys, audit_log, events)"
app_sql acme "INSERT INTO activities (tenant_id, activity_id, capsule_id, title) VALUES ('globex', 'rls-x', 'rls-x', 'planted')" >"$T_DIR/rls.out" 2>&1
is "$?" 1 "app role in acme cannot INSERT a row for globex"
is "$(sql "SELECT count(*) FROM activities WHERE capsule_id = 'rls-x'")" 0 "the planted row does not exist"
app_sql acme "INSERT INTO activities (tenant_id, activity_id, capsule_id, title) VALUES ('acme', 'rls-own', 'rls-own', 'own')" >"$T_DIR/rls.out" 2>&1
is "$?" 0 "(control) app role in acme can INSERT a row for acme"
app_sql acme "UPDATE activities SET tenant_id = 'globex' WHERE capsule_id = 'rls-own'" >"$T_DIR/rls.out" 2>&1
is "$?" 1 "app role in acme cannot move a row to globex"
app_sql acme "UPDATE audit_log SET outcome = 'success'" >"$T_DIR/rls.out" 2>&1
is "$?" 1 "app role cannot UPDATE audit_log"
app_sql acme "DELETE FROM audit_log" >"$T_DIR/rls.out" 2>&1
is "$?" 1 "app role cannot DELETE from audit_log"
app_sql acme "TRUNCATE audit_log" >"$T_DIR/rls.out" 2>&1
is "$?" 1 "app role cannot TRUNCATE audit_log"
AUDIT_N=$(sql "SELECT count(*) FROM audit_log")
[ "$AUDIT_N" -gt 0 ]
t_result $? "the audit log has rows ($AUDIT_N)"
sql "UPDATE audit_log SET outcome = 'success' WHERE id = (SELECT min(id) FROM audit_log)" >"$T_DIR/rls.out" 2>&1
is "$?/$(grep -c 'append-only' "$T_DIR/rls.out")" "1/1" "the owner's UPDATE of an audit row fails too (trigger: append-only)"
sql "DELETE FROM audit_log WHERE id = (SELECT min(id) FROM audit_log)" >"$T_DIR/rls.out" 2>&1
is "$?" 1 "the owner's DELETE of an audit row fails (trigger)"
sql "TRUNCATE audit_log" >"$T_DIR/rls.out" 2>&1
is "$?" 1 "the owner's TRUNCATE of audit_log fails (trigger)"
is "$(sql "SELECT count(*) FROM audit_log")" "$AUDIT_N" "the audit log lost no row"
is "$(sql "SELECT rolbypassrls::text || '/' || rolsuper::text FROM pg_roles WHERE rolname = 'capsule_web'")" "false/false" \
	"capsule_web neither bypasses RLS nor is a superuser"
is "$(sql "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner IN ('capsule_web', 'capsule_app')")" 0 \
	"the application roles own no table"
is "$(psql -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U postgres -d capsule -c "SELECT string_agg(DISTINCT usename, ',') FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = 'capsule' AND pid <> pg_backend_pid()")" \
	capsule_web "the running programs are connected as capsule_web only (never as the owner)"

# ============================================================================
# SQL injection strings stored literally
# ============================================================================
diag "--- SQL injection strings (tenant default, capsule ids inj-*)"
INJ=(
	"'; DROP TABLE activities; --"
	"\" OR 1=1 --"
	'$$; SELECT pg_sleep(5); $$'
	"1'); DELETE FROM audit_log; SELECT ('"
)
i=0
for s in "${INJ[@]}"; do
	i=$((i + 1))
	body=$(jq -cn --arg s "$s" --arg id "inj-$i" \
		'{capsule_id: $id, title: $s, message: $s, category: $s, metadata: {value: $s, ($s): "key", nested: {v: $s}}}')
	t0=$(date +%s)
	api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_DEF_PUB" --data-binary "$body"
	is "$H_STATUS" 201 "create with $s in title, message, category and metadata answers 201"
	is "$(($(date +%s) - t0 < 4))" 1 "... and did not run pg_sleep"
	got=$(jqr '.activity | [.title, .message, .category, .metadata.value, .metadata.nested.v] | join("\u0001")')
	want=$(printf '%s\001%s\001%s\001%s\001%s' "$s" "$s" "$s" "$s" "$s")
	is "$got" "$want" "... the answer returns every field literally"
	redis-cli -p "$REDIS_PORT" DEL "cg:{default}:activity:inj-$i" >/dev/null
	api GET "/activity/inj-$i" -H "X-API-Key: $K_DEF_PUB"
	got=$(jqr '.activity | [.title, .message, .category, .metadata.value, .metadata.nested.v] | join("\u0001")')
	is "$got" "$want" "... and so does GET /activity from PostgreSQL"
	is "$(printf '%s' "$H_BODY" | jq -r --arg s "$s" '.activity.metadata[$s]')" key "... a metadata key of that text is kept too"
	is "$(sql "SELECT count(*) FROM activities WHERE tenant_id = 'default' AND capsule_id = 'inj-$i' AND title = message AND message = category AND metadata->>'value' = title AND title = \$q\$$s\$q\$")" 1 \
		"... the row holds the text exactly"
done
is "$(sql "SELECT to_regclass('activities') IS NOT NULL AND to_regclass('audit_log') IS NOT NULL")/$(sql "SELECT count(*) > 0 FROM audit_log")" "t/t" \
	"activities and audit_log are still there (and audit_log not emptied)"
# Ids have a charset: the injection strings are refused with 422 naming the field.
NO_REC=1
for f in capsule_id activity_id user_id; do
	for s in "${INJ[@]}"; do
		body=$(jq -cn --arg s "$s" --arg f "$f" '{title: "inj id"} | .[$f] = $s')
		api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_DEF_PUB" --data-binary "$body"
		is "$H_STATUS/$(jqr .error.field)" "422/$f" "$f = $s answers 422 naming $f"
	done
done
unset NO_REC
api GET "/activity/$(jq -rn --arg s "${INJ[0]}" '$s | @uri')" -H "X-API-Key: $K_DEF_PUB"
is "$H_STATUS" 404 "GET /activity/<injection string> answers 404"
is "$(sql "SELECT count(*) FROM activities WHERE title = 'inj id'")" 0 "no refused create wrote a row"

# ============================================================================
# Audit
# ============================================================================
diag "--- audit (tenant acme, capsule ids aud-*)"
# audit_row REQUEST_ID: the row's fields, comma-separated.
audit_row() {
	sql "SELECT tenant_id || ',' || actor || ',' || actor_kind || ',' || role || ',' || action || ',' || coalesce(target, '') || ',' || outcome || ',' || status FROM audit_log WHERE request_id = '$1'"
}
AK=$(key_id "$K_ACME_PUB")
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" -H 'X-Request-ID: sec-aud-1' \
	--data-binary '{"capsule_id":"aud-1","title":"audited"}'
is "$H_STATUS" 201 "an audited create answers 201"
is "$(audit_row sec-aud-1)" "acme,apikey:$AK,api_key,publisher,activity.create,aud-1,success,201" \
	"one audit row: actor, api_key, role, activity.create, target, request id, success, 201"
is "$(sql "SELECT count(*) FROM audit_log WHERE request_id = 'sec-aud-1'")" 1 "exactly one row for that request"
api POST /create-activity "${ctype[@]}" -H "$(bearer "$(hs aud-jwt-user acme publisher)")" -H 'X-Request-ID: sec-aud-2' \
	--data-binary '{"capsule_id":"aud-2","title":"audited by a JWT"}'
is "$(audit_row sec-aud-2)" "acme,aud-jwt-user,jwt,publisher,activity.create,aud-2,success,201" \
	"a JWT create is audited with the subject and actor_kind jwt"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" -H 'X-Request-ID: sec-aud-3' \
	--data-binary '{"capsule_id":"aud-3","message":"no title"}'
is "$H_STATUS" 422 "a create without title answers 422"
is "$(audit_row sec-aud-3 | cut -d, -f1-5,7-8)" "acme,apikey:$AK,api_key,publisher,activity.create,failure,422" \
	"the 422 create writes one failure row"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_VIEW" -H 'X-Request-ID: sec-aud-4' \
	--data-binary '{"capsule_id":"aud-4","title":"viewer tries"}'
is "$H_STATUS" 403 "a viewer's create answers 403"
is "$(audit_row sec-aud-4 | cut -d, -f1,3-5,7-8)" "acme,api_key,viewer,activity.create,denied,403" \
	"the 403 create writes one denied row"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" -H 'X-Request-ID: sec-aud-5' \
	--data-binary '{"capsule_id":"aud-1","title":"duplicate"}'
is "$H_STATUS" 409 "a duplicate create answers 409"
is "$(audit_row sec-aud-5 | cut -d, -f5,7-8)" "activity.create,failure,409" "the 409 create writes one failure row"

# The admin view: filters and pagination.
HA=(-H "X-API-Key: $K_ACME_ADMIN")
api GET "/api/v1/admin/audit?actor=apikey:$AK&action=activity.create&outcome=success&limit=500" "${HA[@]}"
is "$H_STATUS" 200 "GET /api/v1/admin/audit with actor, action and outcome filters"
WANT_N=$(sql "SELECT count(*) FROM audit_log WHERE tenant_id = 'acme' AND actor = 'apikey:$AK' AND action = 'activity.create' AND outcome = 'success'")
is "$(jqr '.entries | length')/$(jqr .total)" "$WANT_N/$WANT_N" "it lists exactly the matching rows ($WANT_N) and total says so"
is "$(jqr '[.entries[] | select(.actor != "apikey:'"$AK"'" or .action != "activity.create" or .outcome != "success")] | length')" 0 \
	"every listed entry matches the filters"
is "$(jqr '[.entries[] | select(.request_id == "sec-aud-1")][0] | [.target, .role, .actor_kind, (.status | tostring)] | join(",")')" \
	"aud-1,publisher,api_key,201" "an entry carries target, role, actor_kind and status"
api GET "/api/v1/admin/audit?outcome=denied" "${HA[@]}"
is "$(jqr '[.entries[] | select(.request_id == "sec-aud-4")] | length')/$(jqr '[.entries[] | select(.outcome != "denied")] | length')" "1/0" \
	"outcome=denied lists the viewer's denied create and nothing else"
api GET "/api/v1/admin/audit?actor=aud-jwt-user" "${HA[@]}"
is "$(jqr '[.entries[].request_id] | join(",")')/$(jqr .total)" "sec-aud-2/1" "actor=<JWT subject> lists that subject's one row"
TOTAL_ACME=$(sql "SELECT count(*) FROM audit_log WHERE tenant_id = 'acme'")
api GET "/api/v1/admin/audit?limit=2&offset=0" "${HA[@]}"
P1=$(jqr '[.entries[].id] | map(tostring) | join(",")')
is "$(jqr '[(.entries | length), .total, .limit, .offset] | map(tostring) | join(",")')" "2,$TOTAL_ACME,2,0" \
	"limit=2 offset=0: 2 entries, total $TOTAL_ACME, limit and offset echoed"
api GET "/api/v1/admin/audit?limit=2&offset=2" "${HA[@]}"
P2=$(jqr '[.entries[].id] | map(tostring) | join(",")')
is "$(jqr '[(.entries | length), .total, .offset] | map(tostring) | join(",")')" "2,$TOTAL_ACME,2" "limit=2 offset=2: the next 2 entries"
[ -n "$P1" ] && [ -n "$P2" ] && [ "$P1" != "$P2" ] && [ -z "$(printf '%s\n%s\n' "${P1//,/$'\n'}" "${P2//,/$'\n'}" | sort | uniq -d)" ]
t_result $? "the two pages do not overlap ($P1 | $P2)"
api GET "/api/v1/admin/audit?limit=2&offset=$TOTAL_ACME" "${HA[@]}"
is "$(jqr '.entries | length')/$(jqr .total)" "0/$TOTAL_ACME" "an offset past the end lists nothing"
api GET "/api/v1/admin/audit?limit=abc" "${HA[@]}"
is "$(case $H_STATUS in 400|422) echo refused ;; *) echo "$H_STATUS" ;; esac)" refused "a malformed limit is refused (400/422)"
api GET "/api/v1/admin/audit?actor=$(jq -rn --arg s "${INJ[1]}" '$s | @uri')" "${HA[@]}"
is "$H_STATUS/$(jqr .total)" "200/0" "an actor filter holding SQL matches nothing (parameterised)"

# ============================================================================
# Idempotency
# ============================================================================
diag "--- idempotency (tenant default, capsule ids idem-*)"
HP=(-H "X-API-Key: $K_DEF_PUB")
B1='{"capsule_id":"idem-cap-1","title":"idempotent"}'
api POST /create-activity "${ctype[@]}" "${HP[@]}" -H 'Idempotency-Key: idem-key-1' --data-binary "$B1"
FIRST_BODY=$H_BODY
is "$H_STATUS" 201 "first POST with Idempotency-Key answers 201"
api POST /create-activity "${ctype[@]}" "${HP[@]}" -H 'Idempotency-Key: idem-key-1' --data-binary "$B1"
is "$H_STATUS" 201 "the same key and body again: same status 201"
is "$(printf '%s' "$H_BODY" | jq -cS .)" "$(printf '%s' "$FIRST_BODY" | jq -cS .)" "... and the same body"
is "$(header Idempotent-Replayed)" true "... with Idempotent-Replayed: true"
is "$(sql "SELECT count(*) FROM activities WHERE capsule_id = 'idem-cap-1'")/$(sql "SELECT count(*) FROM events WHERE capsule_id = 'idem-cap-1'")" "1/1" \
	"only one activity and one event exist"
api POST /create-activity "${ctype[@]}" "${HP[@]}" -H 'Idempotency-Key: idem-key-1' \
	--data-binary '{"capsule_id":"idem-cap-1b","title":"another body"}'
is "$H_STATUS" 422 "the same key with a different body answers 422"
is "$(sql "SELECT count(*) FROM activities WHERE capsule_id = 'idem-cap-1b'")" 0 "... and creates nothing"

pids=""
for i in 1 2 3 4 5; do
	curl -sS -o "$T_DIR/idem-c$i.body" -w '%{http_code}' -X POST "${ctype[@]}" "${HP[@]}" \
		-H 'Idempotency-Key: idem-key-2' --data-binary '{"capsule_id":"idem-cap-2","title":"concurrent"}' \
		"http://127.0.0.1:$HTTP_PORT/create-activity" >"$T_DIR/idem-c$i.status" 2>/dev/null &
	pids="$pids $!"
done
wait $pids
is "$(cat "$T_DIR"/idem-c?.status)" "201201201201201" "5 concurrent POSTs with one new key all answer 201"
is "$(for i in 1 2 3 4 5; do jq -cS . "$T_DIR/idem-c$i.body"; done | sort -u | wc -l)" 1 "... all with the same body"
is "$(sql "SELECT count(*) FROM activities WHERE capsule_id = 'idem-cap-2'")/$(sql "SELECT count(*) FROM events WHERE capsule_id = 'idem-cap-2'")" "1/1" \
	"... and exactly one activity (and one event) exists"

T_OTHER=$(hs idem-other default publisher)
api POST /create-activity "${ctype[@]}" -H "$(bearer "$T_OTHER")" -H 'Idempotency-Key: idem-key-1' \
	--data-binary '{"capsule_id":"idem-cap-3","title":"other credential"}'
is "$H_STATUS/$(header Idempotent-Replayed)" "201/" "another credential's same key with another body is independent (201, not 422)"
api POST /create-activity "${ctype[@]}" -H "$(bearer "$(hs idem-other2 default publisher)")" -H 'Idempotency-Key: idem-key-1' \
	--data-binary "$B1"
is "$H_STATUS/$(header Idempotent-Replayed)" "409/" "another credential's same key and body is executed, not replayed (409: exists)"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" -H 'Idempotency-Key: idem-key-1' --data-binary "$B1"
is "$H_STATUS/$(header Idempotent-Replayed)" "201/" "the same key and body in another tenant is independent (201, created there)"
sql "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE idem_key = 'idem-key-1' AND actor = 'idem-other'" >/dev/null
sql "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE idem_key = 'idem-key-1' AND tenant_id = 'acme'" >/dev/null
before=$(sql "SELECT count(*) FROM idempotency_keys")
purged=$(psql -X -q -t -A "$DATABASE_URL" -c "SELECT capsule_purge_idempotency_keys()")
is "$purged/$(sql "SELECT count(*) FROM idempotency_keys")" "2/$((before - 2))" \
	"the application role's purge removes keys older than 24 h of every tenant and keeps the rest"

# ============================================================================
# Rate limit
# ============================================================================
diag "--- rate limit (tenant globex: 60/minute, burst 5 per credential)"
hits=0
for i in $(seq 1 30); do
	api GET /activity/rl-none -H "X-API-Key: $K_GLOBEX_PUB"
	[ "$H_STATUS" = 429 ] && { hits=$i; break; }
	[ "$H_STATUS" = 404 ] || diag "request $i answered $H_STATUS"
done
[ "$hits" -ge 1 ] && [ "$hits" -le 8 ]
t_result $? "the globex publisher key gets 429 after its burst (request $hits)"
RA=$(header Retry-After)
is "$(jqr .error.code)" rate_limited "429 says rate_limited"
printf '%s' "$RA" | grep -Eq '^[1-9][0-9]*$'
t_result $? "429 carries Retry-After in seconds ($RA)"
is "$(header RateLimit-Limit | grep -c '^[0-9][0-9]*$')/$(header RateLimit-Remaining)/$(header RateLimit-Reset | grep -c '^[0-9][0-9]*$')" "1/0/1" \
	"429 carries RateLimit-Limit, RateLimit-Remaining: 0 and RateLimit-Reset"
sec_headers "a 429 answer"
api GET /activity/rl-none -H "$(bearer "$(hs rl-other globex publisher)")"
is "$H_STATUS" 404 "another globex credential is not limited meanwhile (own bucket)"
api GET /activity/rl-none -H "X-API-Key: $K_ACME_PUB"
is "$H_STATUS" 404 "another tenant's credential is not limited meanwhile"
sleep "${RA:-1}"
api GET /activity/rl-none -H "X-API-Key: $K_GLOBEX_PUB"
is "$H_STATUS" 404 "after Retry-After seconds the key is served again (recovered)"

# ============================================================================
# CORS and headers
# ============================================================================
diag "--- CORS and security headers"
PRE=(-H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization, content-type, idempotency-key')
api OPTIONS /create-activity -H 'Origin: https://console.test.local' "${PRE[@]}"
is "$H_STATUS" 204 "preflight from https://console.test.local answers 204"
is "$(header Access-Control-Allow-Origin)" https://console.test.local "... Access-Control-Allow-Origin is that origin"
header Access-Control-Allow-Methods | grep -q POST
t_result $? "... Access-Control-Allow-Methods contains POST ($(header Access-Control-Allow-Methods))"
header Access-Control-Allow-Headers | grep -qi authorization
t_result $? "... Access-Control-Allow-Headers contains Authorization"
is "$(header Access-Control-Allow-Credentials)" "" "... credentials (cookies) are not allowed"
sec_headers "a 204 preflight"
api OPTIONS /create-activity -H 'Origin: https://evil.example' "${PRE[@]}"
is "$(header Access-Control-Allow-Origin)" "" "preflight from https://evil.example: no Access-Control-Allow-Origin"
is "$(grep -ci '^access-control-' "$H_HEADERS")" 0 "... and no Access-Control-* header at all"
api GET /activity/iso-cap-1 -H 'Origin: https://console.test.local' -H "X-API-Key: $K_ACME_VIEW"
is "$H_STATUS/$(header Access-Control-Allow-Origin)" "200/https://console.test.local" \
	"an actual request from the allowed origin carries Access-Control-Allow-Origin"
api GET /activity/iso-cap-1 -H 'Origin: https://evil.example' -H "X-API-Key: $K_ACME_VIEW"
is "$(header Access-Control-Allow-Origin)" "" "an actual request from another origin carries none"
api GET /no/such/path -H "X-API-Key: $K_ACME_VIEW"
is "$H_STATUS" 404 "unknown path answers 404"
sec_headers "a 404 answer"
api GET /activity/tok-none
sec_headers "an unauthenticated 401 answer"

# A few answers that could leak internals.
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" --data-binary '{"title": "x",'
is "$H_STATUS" 400 "malformed JSON answers 400"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" --data-binary '{"capsule_id":"iso-cap-1","title":"dup"}'
is "$H_STATUS" 409 "a duplicate capsule_id answers 409"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" \
	--data-binary "$(jq -cn '{title: ("é" * 501)}')"
is "$H_STATUS" 422 "a title over 500 characters answers 422"
api GET /create-activity -H "X-API-Key: $K_ACME_PUB"
is "$H_STATUS" 405 "wrong method answers 405"
api POST /create-activity "${ctype[@]}" -H "X-API-Key: $K_ACME_PUB" -H "Authorization: Bearer $T_HS" \
	--data-binary '{"title":"two credentials"}'
is "$([ "$H_STATUS" -ge 400 ] && [ "$H_STATUS" -lt 500 ] && echo refused)" refused "two credentials at once are refused ($H_STATUS)"
nbodies=$(wc -l <"$ERRORS")
bad=$(grep -E 'SQL|ERROR:|pg_|(^|[^A-Za-z0-9_])/(usr|etc|var|tmp|home|root|work|opt|srv|run|lib)/|\.[ch]:[0-9]+|violates|constraint|syntax error' "$ERRORS")
is "$bad" "" "no error body ($nbodies seen) contains SQL, ERROR:, pg_ or a file path"
is "$(grep -cv '"request_id"' "$ERRORS")" 0 "every error body carries a request_id"

# ============================================================================
# Logs
# ============================================================================
diag "--- logs"
grep -v '^$' "$SECRETS" | sort -u >"$SECRETS.u"
n=$(wc -l <"$SECRETS.u")
leak=$(grep -F -o -f "$SECRETS.u" "$FCGI_LOG" | head -n 3 | cut -c1-20)
is "$leak" "" "fcgi.log holds none of the $n tokens, API keys, key secrets or the HS256 secret"
leak=$(grep -F -o -e "$(sed -n 2p "$KEYS/jwt-rsa.pem")" -e "$(sed -n 2p "$KEYS/jwt-ec.pem")" "$FCGI_LOG" | head -n 1)
is "$leak" "" "fcgi.log holds no private key text"
grep -q "$(key_id "$K_REVOKE")" "$FCGI_LOG"
t_result $? "fcgi.log names the public key id of the revoked key"

stack_stop_web
stack_stop fcgi
stack_stop capsule-wsd
stack_stop capsule-pushd
for log in capsule-wsd capsule-pushd fcgi "$(stack_web)-error"; do
	if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$STACK_DIR/$log.log" 2>/dev/null; then
		t_result 1 "no sanitizer report in $log.log"
		grep -E -A5 'ERROR: |runtime error:' "$STACK_DIR/$log.log" | head -n 30 | sed 's/^/# /'
	else
		t_result 0 "no sanitizer report in $log.log"
	fi
done

t_done

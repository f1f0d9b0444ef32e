#!/usr/bin/env bash
# webpush.sh: the REST side of Web Push (issue 6) through the real web server (STACK_WEB):
# POST /api/v1/push/subscribe in both body shapes (ours and the browser's
# PushSubscription.toJSON()), refresh, GET /api/v1/push/subscriptions, unsubscribe by
# DELETE and by POST /api/v1/push/unsubscribe, every validation error, users and tenants
# kept apart, the per-user limit, Idempotency-Key, audit rows, roles, and
# GET /api/v1/push/vapid-public-key unconfigured and configured. Prints TAP. Every server
# is started on 127.0.0.1 in a temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin webpush

FAKE="$BUILD_DIR/tests/tools/fake-webpush"
[ -x "$FAKE" ] || { echo "1..0 # SKIP $FAKE is not built (make check builds it)"; exit 0; }

# A few hundred requests from 127.0.0.1: lift the limits (security.sh tests them).
STACK_RATE_PER_MINUTE=600000
STACK_RATE_BURST=100000
STACK_RATE_OVERRIDES="globex=600000/100000,acme=600000/100000"
RATE_LIMIT_IP_PER_MINUTE=600000
RATE_LIMIT_IP_BURST=100000
export RATE_LIMIT_IP_PER_MINUTE RATE_LIMIT_IP_BURST
it_stack_up "stack starts (PostgreSQL, Redis, capsule-wsd, capsule-pushd, $(stack_web) + spawn-fcgi)"

JSON=(-H 'Content-Type: application/json')
T_ALICE=$(bearer_token wp-alice default viewer)
T_BOB=$(bearer_token wp-bob default viewer)
T_CAROL=$(bearer_token wp-carol default viewer)
T_ACME=$(bearer_token wp-alice acme viewer)
T_OP=$(bearer_token wp-op default operator)
T_ADMIN=$(bearer_token wp-admin default admin)
as() { HTTP_AUTH=(-H "Authorization: Bearer $1"); }
noauth() { HTTP_AUTH=(); }

# jreq METHOD PATH JSON [curl args]
jreq() {
	local m=$1 p=$2 b=$3
	shift 3
	http "$m" "$p" "${JSON[@]}" --data-binary "$b" "$@"
}

# browser_sub PATH: a PushSubscription.toJSON() with fresh valid keys, endpoint
# https://127.0.0.1:1PATH (fake-webpush makes the key pair; nothing listens there).
browser_sub() { "$FAKE" --make-subscription "$1" --port 1 | sed -n 2p; }
# ours JSON [JQ]: the same subscription in our documented shape, changed by JQ.
ours() { printf '%s' "$1" | jq -c "{endpoint, p256dh_key: .keys.p256dh, auth_key: .keys.auth} | ${2:-.}"; }
# subs_of TENANT USER: "endpoint,…" of USER's rows, from PostgreSQL.
subs_of() { sql "SELECT coalesce(string_agg(endpoint, ',' ORDER BY id), '') FROM push_subscriptions WHERE tenant_id = '$1' AND user_id = '$2'"; }

# RFC 8291 Appendix A's user agent key and auth secret; the same point with one byte of Y changed.
RFC_P256=BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4
RFC_AUTH=BTBZMqHH6r4Tts7J_aSIgg
OFF_CURVE=BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw8
EP_BASE="https://127.0.0.1:1"

# ============================================================================
diag "--- subscribe: both body shapes, refresh"
as "$T_ALICE"
S1=$(browser_sub /push/a1)
S2=$(browser_sub /push/a2)
EP1=$(printf '%s' "$S1" | jq -r .endpoint)
EP2=$(printf '%s' "$S2" | jq -r .endpoint)
jreq POST /api/v1/push/subscribe "$(ours "$S1" '. + {user_agent: "Mozilla/5.0 Firefox/128.0", device_info: {os: "Linux", screen: {w: 1920}}}')" \
	-H 'X-Request-ID: wp-audit-1'
is "$H_STATUS/$(jqr .success)/$(jqr .subscription.endpoint)" "201/true/$EP1" "POST /api/v1/push/subscribe (our shape) answers 201 with the subscription"
ID1=$(jqr .subscription.id)
is "$(jqr '.subscription | [has("p256dh"), has("auth"), has("p256dh_key"), has("keys")] | any')" false "the answer never shows the keys"
is "$(jqr '.subscription.device_info.screen.w')/$(jqr .subscription.user_agent)/$(jqr .subscription.active)" "1920/Mozilla/5.0 Firefox/128.0/true" \
	"device_info, user_agent and active are shown"
is "$(sql "SELECT user_id || ',' || p256dh || ',' || auth || ',' || active FROM push_subscriptions WHERE id = ${ID1:-0}")" \
	"wp-alice,$(printf '%s' "$S1" | jq -r .keys.p256dh),$(printf '%s' "$S1" | jq -r .keys.auth),true" \
	"PostgreSQL: the row holds the caller, the keys and active"

jreq POST /api/v1/push/subscribe "$S2" -H 'X-Request-ID: wp-audit-2'
is "$H_STATUS/$(jqr .subscription.endpoint)" "201/$EP2" "the browser's PushSubscription.toJSON() shape answers 201 too"
ID2=$(jqr .subscription.id)

SEEN=$(sql "SELECT last_seen FROM push_subscriptions WHERE id = ${ID1:-0}")
S1B=$(browser_sub /push/a1) # the browser re-subscribed: same endpoint, new keys
jreq POST /api/v1/push/subscribe "$S1B" -H 'X-Request-ID: wp-audit-3'
is "$H_STATUS/$(jqr .subscription.id)" "200/$ID1" "subscribing the same endpoint again refreshes it (200, same id)"
is "$(sql "SELECT (p256dh = '$(printf '%s' "$S1B" | jq -r .keys.p256dh)') || ',' || (last_seen > '$SEEN') || ',' || count(*) OVER () FROM push_subscriptions WHERE endpoint = '$EP1'")" \
	"true,true,1" "the refresh replaces the keys and last_seen, in one row"
is "$(jqr .subscription.user_agent)/$(jqr .subscription.device_info.os)" "Mozilla/5.0 Firefox/128.0/Linux" \
	"user_agent and device_info are kept when the refresh omits them"

# Standard base64 with padding, as some clients send it: stored base64url without padding.
jreq POST /api/v1/push/subscribe "{\"endpoint\":\"$EP_BASE/push/rfc\",\"p256dh_key\":\"$(printf '%s' "$RFC_P256" | tr '_-' '/+')=\",\"auth_key\":\"$(printf '%s' "$RFC_AUTH" | tr '_-' '/+')==\"}"
is "$H_STATUS/$(sql "SELECT p256dh = '$RFC_P256' AND auth = '$RFC_AUTH' FROM push_subscriptions WHERE endpoint = '$EP_BASE/push/rfc'")" "201/t" \
	"padded standard base64 keys are accepted and stored normalised"
ID_RFC=$(jqr .subscription.id)

# ============================================================================
diag "--- list"
http GET /api/v1/push/subscriptions
is "$H_STATUS/$(jqr '[.subscriptions[].id] | join(",")')" "200/$ID1,$ID2,$ID_RFC" "GET /api/v1/push/subscriptions lists the caller's three, oldest first"
is "$(jqr '[.subscriptions[] | has("p256dh") or has("auth") or has("keys")] | any')" false "the list never shows the keys"
is "$(jqr '.subscriptions[0] | [.endpoint, .user_agent, (.created_at | test("^[0-9-]{10}T[0-9:]{8}Z$")), (.last_seen | test("Z$"))] | map(tostring) | join(",")')" \
	"$EP1,Mozilla/5.0 Firefox/128.0,true,true" "each shows endpoint, user_agent, created_at and last_seen"
sql "UPDATE push_subscriptions SET active = false WHERE id = ${ID_RFC:-0}" >/dev/null
http GET /api/v1/push/subscriptions
is "$(jqr '.subscriptions | length')" 2 "an inactive subscription is not listed"

# ============================================================================
diag "--- validation: 422 naming the field, nothing stored"
BEFORE=$(sql "SELECT count(*) FROM push_subscriptions")
LONG_EP="$EP_BASE/$(head -c 2029 /dev/zero | tr '\0' x)"
K="\"p256dh_key\":\"$RFC_P256\",\"auth_key\":\"$RFC_AUTH\""
UA513=$(head -c 513 /dev/zero | tr '\0' u)
while IFS='|' read -r field desc body; do
	[ -n "$field" ] || continue
	jreq POST /api/v1/push/subscribe "$body"
	is "$H_STATUS/$(jqr .error.code)/$(jqr .error.field)" "422/validation_failed/$field" "422 naming $field: $desc"
done <<EOF
endpoint|an http:// endpoint|{"endpoint":"http://127.0.0.1:1/push/x",$K}
endpoint|an endpoint without a host|{"endpoint":"https:///push/x",$K}
endpoint|an endpoint that is only a scheme|{"endpoint":"https://",$K}
endpoint|a relative endpoint|{"endpoint":"/push/x",$K}
endpoint|an endpoint of 2049 bytes|{"endpoint":"$LONG_EP",$K}
endpoint|no endpoint|{$K}
endpoint|a numeric endpoint|{"endpoint":42,$K}
p256dh_key|p256dh not a point on P-256|{"endpoint":"$EP_BASE/v","p256dh_key":"$OFF_CURVE","auth_key":"$RFC_AUTH"}
p256dh_key|p256dh not base64|{"endpoint":"$EP_BASE/v","p256dh_key":"not*base64","auth_key":"$RFC_AUTH"}
p256dh_key|p256dh of 16 bytes|{"endpoint":"$EP_BASE/v","p256dh_key":"$RFC_AUTH","auth_key":"$RFC_AUTH"}
p256dh_key|p256dh missing|{"endpoint":"$EP_BASE/v","auth_key":"$RFC_AUTH"}
auth_key|auth of 12 bytes|{"endpoint":"$EP_BASE/v","p256dh_key":"$RFC_P256","auth_key":"BTBZMqHH6r4Tts7J"}
auth_key|auth of 17 bytes|{"endpoint":"$EP_BASE/v","p256dh_key":"$RFC_P256","auth_key":"BTBZMqHH6r4Tts7J_aSIggAA"}
keys.p256dh|keys.p256dh off the curve (browser shape)|{"endpoint":"$EP_BASE/v","keys":{"p256dh":"$OFF_CURVE","auth":"$RFC_AUTH"}}
keys.auth|keys.auth of the wrong length (browser shape)|{"endpoint":"$EP_BASE/v","keys":{"p256dh":"$RFC_P256","auth":"AAAA"}}
keys|keys not an object|{"endpoint":"$EP_BASE/v","keys":"$RFC_P256"}
device_info|device_info an array|{"endpoint":"$EP_BASE/v",$K,"device_info":[1,2]}
device_info|device_info a string|{"endpoint":"$EP_BASE/v",$K,"device_info":"iPhone"}
device_info|device_info nested 5 deep|{"endpoint":"$EP_BASE/v",$K,"device_info":{"a":{"b":{"c":{"d":1}}}}}
user_agent|user_agent of 513 characters|{"endpoint":"$EP_BASE/v",$K,"user_agent":"$UA513"}
user_agent|user_agent a number|{"endpoint":"$EP_BASE/v",$K,"user_agent":7}
EOF
is "$(sql "SELECT count(*) FROM push_subscriptions")" "$BEFORE" "no rejected body stored anything"
jreq POST /api/v1/push/subscribe '{"endpoint":'
is "$H_STATUS/$(jqr .error.code)" "400/malformed_json" "malformed JSON answers 400"
http POST /api/v1/push/subscribe -H 'Content-Type: text/plain' --data-binary "$S2"
is "$H_STATUS" 415 "a body that is not application/json answers 415"
jreq DELETE /api/v1/push/subscribe '{"endpoint":7}'
is "$H_STATUS/$(jqr .error.field)" "422/endpoint" "unsubscribe with a numeric endpoint answers 422"
jreq POST /api/v1/push/unsubscribe '{}'
is "$H_STATUS/$(jqr .error.field)" "422/endpoint" "unsubscribe without an endpoint answers 422"
http PUT /api/v1/push/subscribe "${JSON[@]}" --data-binary "$S2"
is "$H_STATUS/$(header Allow)" "405/POST, DELETE" "PUT /api/v1/push/subscribe answers 405 with Allow: POST, DELETE"

# ============================================================================
diag "--- users and tenants are kept apart"
as "$T_BOB"
http GET /api/v1/push/subscriptions
is "$H_STATUS/$(jqr '.subscriptions | length')" "200/0" "another user of the tenant lists none of alice's"
jreq DELETE /api/v1/push/subscribe "{\"endpoint\":\"$EP1\"}" -H 'X-Request-ID: wp-audit-4'
is "$H_STATUS/$(jqr .error.code)" "404/not_found" "another user cannot unsubscribe alice's endpoint (404)"
jreq POST /api/v1/push/unsubscribe "{\"endpoint\":\"$EP1\"}"
is "$H_STATUS" 404 "... nor through POST /api/v1/push/unsubscribe"
as "$T_ACME"
http GET /api/v1/push/subscriptions
is "$H_STATUS/$(jqr '.subscriptions | length')" "200/0" "the same subject in another tenant lists none"
jreq DELETE /api/v1/push/subscribe "{\"endpoint\":\"$EP1\"}"
is "$H_STATUS" 404 "the same subject in another tenant cannot unsubscribe it (404)"
jreq POST /api/v1/push/subscribe "$S1B"
is "$H_STATUS" 201 "the same endpoint subscribed in another tenant is a new subscription (201)"
is "$(sql "SELECT string_agg(tenant_id, ',' ORDER BY tenant_id) FROM push_subscriptions WHERE endpoint = '$EP1'")" "acme,default" \
	"PostgreSQL: one row per tenant"
is "$(subs_of default wp-alice | tr ',' '\n' | grep -c .)" 3 "alice's rows in tenant default are untouched"
is "$(app_sql acme "SELECT count(*) FROM push_subscriptions")" 1 "row-level security: the app role in acme sees only acme's row"

# A shared computer: bob signs in and the browser subscribes its endpoint again.
as "$T_BOB"
jreq POST /api/v1/push/subscribe "$S2"
is "$H_STATUS/$(jqr .subscription.id)" "200/$ID2" "the same endpoint subscribed by another user moves to that user (200, same id)"
is "$(subs_of default wp-bob)" "$EP2" "PostgreSQL: the endpoint is bob's now"

# ============================================================================
diag "--- unsubscribe"
as "$T_ALICE"
jreq DELETE /api/v1/push/subscribe "{\"endpoint\":\"$EP1\"}" -H 'X-Request-ID: wp-audit-5'
is "$H_STATUS/$H_BODY" '200/{"success":true}' "DELETE /api/v1/push/subscribe deletes the caller's subscription"
is "$(sql "SELECT count(*) FROM push_subscriptions WHERE tenant_id = 'default' AND endpoint = '$EP1'")" 0 "PostgreSQL: the row is gone"
jreq DELETE /api/v1/push/subscribe "{\"endpoint\":\"$EP1\"}" -H 'X-Request-ID: wp-audit-6'
is "$H_STATUS" 404 "again: 404"
jreq POST /api/v1/push/unsubscribe "{\"endpoint\":\"$EP_BASE/push/rfc\"}"
is "$H_STATUS/$(jqr .success)" "200/true" "POST /api/v1/push/unsubscribe (sendBeacon) deletes too"
is "$(subs_of default wp-alice)" "" "alice has no subscription left"

# ============================================================================
diag "--- Idempotency-Key"
S3=$(browser_sub /push/a3)
jreq POST /api/v1/push/subscribe "$S3" -H 'Idempotency-Key: wp-idem-1'
FIRST=$H_BODY
is "$H_STATUS" 201 "subscribe with an Idempotency-Key: 201"
jreq POST /api/v1/push/subscribe "$S3" -H 'Idempotency-Key: wp-idem-1'
is "$H_STATUS/$(header Idempotent-Replayed)" "201/true" "the same key and body replay 201"
is "$(printf '%s' "$H_BODY" | jq -cS .)" "$(printf '%s' "$FIRST" | jq -cS .)" "... with the same body"
jreq POST /api/v1/push/subscribe "$(browser_sub /push/a4)" -H 'Idempotency-Key: wp-idem-1'
is "$H_STATUS" 422 "the same key with another body answers 422"
is "$(subs_of default wp-alice)" "$(printf '%s' "$S3" | jq -r .endpoint)" "one subscription stored"
jreq DELETE /api/v1/push/subscribe "$(printf '%s' "$S3" | jq -c '{endpoint}')" -H 'Idempotency-Key: wp-idem-2'
is "$H_STATUS" 200 "unsubscribe with an Idempotency-Key: 200"
jreq DELETE /api/v1/push/subscribe "$(printf '%s' "$S3" | jq -c '{endpoint}')" -H 'Idempotency-Key: wp-idem-2'
is "$H_STATUS/$(header Idempotent-Replayed)" "200/true" "the same unsubscribe replays 200 (not 404)"

# ============================================================================
diag "--- the per-user limit (100 active)"
as "$T_CAROL"
sql "INSERT INTO push_subscriptions (tenant_id, user_id, endpoint, p256dh, auth)
     SELECT 'default', 'wp-carol', '$EP_BASE/carol/' || i, '$RFC_P256', '$RFC_AUTH' FROM generate_series(1, 100) i" >/dev/null
jreq POST /api/v1/push/subscribe "$(browser_sub /carol/101)" -H 'X-Request-ID: wp-audit-7'
is "$H_STATUS/$(jqr .error.code)" "409/subscription_limit" "a 101st subscription answers 409 subscription_limit"
jreq POST /api/v1/push/subscribe "{\"endpoint\":\"$EP_BASE/carol/7\",$K}"
is "$H_STATUS" 200 "refreshing one of the 100 still works (200)"
sql "UPDATE push_subscriptions SET active = false WHERE endpoint = '$EP_BASE/carol/1'" >/dev/null
jreq POST /api/v1/push/subscribe "$(browser_sub /carol/101)"
is "$H_STATUS" 201 "an inactive one does not count: a new one is accepted again"

# ============================================================================
diag "--- audit"
is "$(sql "SELECT string_agg(action || ':' || outcome || ':' || status, ',' ORDER BY request_id) FROM audit_log WHERE request_id LIKE 'wp-audit-%'")" \
	"push.subscribe:success:201,push.subscribe:success:201,push.subscribe:success:200,push.unsubscribe:failure:404,push.unsubscribe:success:200,push.unsubscribe:failure:404,push.subscribe:failure:409" \
	"audit: subscribes, refreshes, unsubscribes and their failures are recorded"
is "$(sql "SELECT target || ',' || actor FROM audit_log WHERE request_id = 'wp-audit-1'")" "$ID1,wp-alice" \
	"audit: the target is the subscription id, the actor the caller"
is "$(sql "SELECT target FROM audit_log WHERE request_id = 'wp-audit-5'")" "$ID1" "audit: an unsubscribe names the deleted id"
as "$T_ALICE"
http GET /api/v1/push/subscriptions -H 'X-Request-ID: wp-noaudit-1'
http GET /api/v1/push/vapid-public-key -H 'X-Request-ID: wp-noaudit-2'
is "$(sql "SELECT count(*) FROM audit_log WHERE request_id LIKE 'wp-noaudit-%'")" 0 "reads are not audited"

# ============================================================================
diag "--- roles and credentials"
noauth
for r in "POST /api/v1/push/subscribe" "DELETE /api/v1/push/subscribe" "POST /api/v1/push/unsubscribe" \
	"GET /api/v1/push/subscriptions" "GET /api/v1/push/vapid-public-key"; do
	if [ "${r%% *}" = GET ]; then http GET "${r#* }"; else jreq "${r%% *}" "${r#* }" "$S2"; fi
	is "$H_STATUS" 401 "$r without a credential answers 401"
done
for t in "$T_OP" "$T_ADMIN"; do
	as "$t"
	jreq POST /api/v1/push/subscribe "$(browser_sub "/roles/$(jwt_payload "$t" | jq -r .role)")"
	is "$H_STATUS" 201 "$(jwt_payload "$t" | jq -r .role) may subscribe (roles are a hierarchy)"
	http GET /api/v1/push/subscriptions
	is "$(jqr '.subscriptions | length')" 1 "$(jwt_payload "$t" | jq -r .role) lists only its own"
done

# ============================================================================
diag "--- GET /api/v1/push/vapid-public-key"
as "$T_ALICE"
# Without a VAPID key: the stack's file has one, an empty variable overrides it.
export VAPID_PRIVATE_KEY= VAPID_SUBJECT=
stack_stop fcgi
stack_start_fcgi 2>>"$T_DIR/fcgi-restart.log"
wait_for 5 curl -sf "http://127.0.0.1:$HTTP_PORT/health"
http GET /api/v1/push/vapid-public-key
is "$H_STATUS/$(jqr .error.code)" "404/not_configured" "without a VAPID key: 404 not_configured"
# Configure Web Push through the environment (every key has its variable) and
# restart the FastCGI processes.
KEYGEN=$("$BUILD_DIR/sql/capsule-admin" vapid-keygen)
VAPID_PRIVATE_KEY=$(printf '%s\n' "$KEYGEN" | sed -n 's/^vapid_private_key = //p')
VAPID_PUBLIC=$(printf '%s\n' "$KEYGEN" | sed -n 's/^vapid_public_key = //p')
VAPID_SUBJECT=mailto:ops@capsule.test
export VAPID_PRIVATE_KEY VAPID_SUBJECT
stack_stop fcgi
stack_start_fcgi 2>>"$T_DIR/fcgi-restart.log"
t_result $? "the FastCGI processes restart with VAPID_PRIVATE_KEY and VAPID_SUBJECT"
wait_for 5 curl -sf "http://127.0.0.1:$HTTP_PORT/health"
http GET /api/v1/push/vapid-public-key
is "$H_STATUS/$(jqr .public_key)" "200/$VAPID_PUBLIC" "configured: 200 with the public key capsule-admin printed"
is "$(jqr .public_key | tr -d '\n' | wc -c)/$(jqr '.public_key | test("^B[A-Za-z0-9_-]+$")')" "87/true" \
	"the key is 87 base64url characters of an uncompressed point (applicationServerKey)"
http GET /api/v1/push/vapid-public-key
is "$H_STATUS/$(jqr .public_key)" "200/$VAPID_PUBLIC" "again (the key loaded once per process)"
grep -q "$VAPID_PRIVATE_KEY" "$STACK_DIR/fcgi.log"
is "$?" 1 "fcgi.log does not hold the VAPID private key"

# ============================================================================
stack_stop fcgi
sanitizer_clean "$STACK_DIR"/fcgi.log
t_result $? "no sanitizer report in fcgi.log"

t_done

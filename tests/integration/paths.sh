#!/usr/bin/env bash
# paths.sh: what the FastCGI program sees of a request through the web server in
# front (STACK_WEB: lighttpd, apache or nginx): the path, URL-encoded ids (%5F,
# %3A, %2F), query strings, 405 with Allow, HEAD, request bodies and the
# Authorization header. Prints TAP; the same checks pass, with the same
# results, behind all three.
#
# All three send REQUEST_URI as the client sent it, which the program prefers;
# their SCRIPT_NAME/PATH_INFO (the program's fallback) differ and are decoded:
# lighttpd "/activity" + "/<id>", Apache the whole path as SCRIPT_NAME and no
# PATH_INFO, nginx (our snippet) "" + the whole path. So a %2F in an id only
# survives through REQUEST_URI, and these checks see that it does.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin paths

STACK_LOG_LEVEL=info
it_stack_up "stack starts (PostgreSQL, Redis, fake APNs, capsule-wsd, capsule-pushd, spawn-fcgi) behind $(stack_web)"

FCGI_LOG="$STACK_DIR/fcgi.log"
WSC="$BUILD_DIR/tests/tools/ws-client"
TOKEN=$(bearer_token paths-publisher default publisher)

# is_json_error STATUS CODE description: the last answer has STATUS and the
# gateway's JSON error shape with error.code CODE (so the program answered,
# not the web server).
is_json_error() {
	local status=$1 code=$2
	shift 2
	is "$H_STATUS/$(jqr '[.success, .error.code, (.request_id | type)] | map(tostring) | join(",")')" \
		"$status/false,$code,string" "$*"
}

# saw_path METHOD RAW_PATH STATUS: the program logged this request line, i.e.
# it saw the path exactly as the client sent it.
saw_path() {
	grep -qF "] $1 $2 $3 " "$FCGI_LOG"
}

# --- Authorization reaches the program ------------------------------------------
http GET /activity/paths-unknown
is_json_error 401 unauthorized "no credentials: 401 from the program"
case "$(header WWW-Authenticate)" in
Bearer*'realm="capsule-gateway"'*) t_result 0 "401 carries WWW-Authenticate: Bearer realm=\"capsule-gateway\"" ;;
*) t_result 1 "401 carries WWW-Authenticate: Bearer realm=\"capsule-gateway\""; diag "got: $(header WWW-Authenticate)" ;;
esac
http GET /activity/paths-unknown -H "Authorization: Bearer not.a.token"
is_json_error 401 unauthorized "a refused Bearer token: 401 from the program"
case "$(header WWW-Authenticate)" in
*'error="invalid_token"'*) t_result 0 'the Authorization header reached the program (error="invalid_token")' ;;
*) t_result 1 'the Authorization header reached the program (error="invalid_token")'; diag "got: $(header WWW-Authenticate)" ;;
esac
http GET /activity/paths-unknown -H "authorization: Bearer $TOKEN"
is_json_error 404 not_found "a valid Bearer token (header name in lower case) gets past authentication: 404 for an unknown id"
UNKNOWN_MSG=$(jqr .error.message)
HTTP_AUTH=(-H "Authorization: Bearer $TOKEN")

# --- request bodies: Content-Type and Content-Length, and chunked -----------------
ID="paths:cap.1-$(stack_web)"      # ':' and '.' are legal in ids
BODY="{\"capsule_id\":\"$ID\",\"title\":\"Path check\",\"message\":\"through $(stack_web)\",\"priority\":\"low\",\"user_id\":\"paths_user\"}"
http POST /create-activity -H 'Content-Type: application/json' --data-binary "$BODY"
is "$H_STATUS/$(jqr .activity.capsule_id)" "201/$ID" "POST /create-activity with an id holding ':' and '.' answers 201"
http POST /create-activity -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \
	--data-binary "{\"capsule_id\":\"paths-chunked\",\"title\":\"Chunked\",\"message\":\"m\",\"priority\":\"low\"}"
is "$H_STATUS/$(jqr .activity.capsule_id)" "201/paths-chunked" "a chunked request body reaches the program whole: 201"
http POST /create-activity -H 'Content-Type: text/plain' --data-binary "$BODY"
is_json_error 415 unsupported_media_type "Content-Type reaches the program: text/plain answers 415"
# Over max_body_bytes (1 MiB): the program answers; far over it, a web server
# with its own limit (nginx: client_max_body_size) answers the same JSON shape.
for size in 1100000 3000000; do
	head -c "$size" /dev/zero | tr '\0' 'a' >"$T_DIR/big.json"
	http POST /create-activity -H 'Content-Type: application/json' --data-binary "@$T_DIR/big.json"
	is_json_error 413 payload_too_large "a body of $size bytes answers 413 JSON"
done
rm -f "$T_DIR/big.json"

# --- ids in the path --------------------------------------------------------------
ENC_ID=$(printf '%s' "$ID" | sed 's/:/%3A/g')
http GET "/activity/$ID"
is "$H_STATUS/$(jqr .activity.capsule_id)" "200/$ID" "GET /activity/<id with a raw ':'> answers 200 with that activity"
http GET "/activity/$ENC_ID"
is "$H_STATUS/$(jqr .activity.capsule_id)" "200/$ID" "GET /activity/<id with %3A> answers 200: the program decodes the segment"
saw_path GET "/activity/$ENC_ID" 200
t_result $? "the program saw the path as sent (%3A not decoded by the web server)"
http GET "/activity/$(printf '%s' "$ENC_ID" | sed 's/\./%2E/g; s/p/%70/')"
is "$H_STATUS/$(jqr .activity.capsule_id)" "200/$ID" "GET /activity/<id with %2E and %70 too> answers 200"
http GET "/activity/$ID?x=1&y=%2F"
is "$H_STATUS/$(jqr .activity.capsule_id)" "200/$ID" "GET /activity/<id>?query answers 200: the query is not part of the id"

http GET /activity/cap%5F1
is_json_error 404 not_found "GET /activity/cap%5F1 (unknown) answers 404 JSON"
is "$(jqr .error.message)" "$UNKNOWN_MSG" "... as an unknown id (the handler answered, the route matched)"

http GET "/activity/$ENC_ID%2Fx"
is_json_error 404 not_found "GET /activity/<id>%2Fx answers 404 JSON"
is "$(jqr .error.message)" "$UNKNOWN_MSG" "... as one unknown id: %2F did not split it"
saw_path GET "/activity/$ENC_ID%2Fx" 404
t_result $? "the program saw %2F undecoded"
http GET "/activity/a%2F..%2F..%2Fhealth"
is_json_error 404 not_found "GET /activity/a%2F..%2F..%2Fhealth is an unknown id, not /health"
is "$(jqr .error.message)" "$UNKNOWN_MSG" "... answered by the activity handler"
http GET "/activity/$ID/x"
is_json_error 404 not_found "GET /activity/<id>/x (a real slash) answers 404 JSON"
ROUTER_MSG=$(jqr .error.message)
http GET /no/such/resource
is "$H_STATUS/$(jqr .error.message)" "404/$ROUTER_MSG" "... from the router, as any unknown path"
http GET "/activity/paths%20space"
is_json_error 404 not_found "GET /activity/paths%20space (an id that can never exist) answers 404 JSON"

# --- query strings ----------------------------------------------------------------
http GET "/health?probe=1&x=%2F%20+&&empty="
is "$H_STATUS/$(jqr '.status | type')" "200/string" "GET /health with a query string answers 200 with the health body"
saw_path GET /health 200
t_result $? "the program logged the path /health without the query"
http GET "/ws/token?user_id=paths%5Fuser%3Ax&device_token=dev%2D1"
is "$H_STATUS/$(jwt_payload "$(jqr .token)" | jq -r '[.sub, .device_token] | join(",")')" \
	"200/paths_user:x,dev-1" "query values are decoded once, by the program (/ws/token sub and device_token)"
http GET "/ws/token?user_id=bad%2Fuser"
is_json_error 422 validation_failed "an encoded '/' in a query value is not a path separator: 422 for user_id"

# --- 405 with Allow, HEAD ---------------------------------------------------------
http DELETE "/activity/$ENC_ID"
is_json_error 405 method_not_allowed "DELETE /activity/<id> answers 405 JSON"
is "$(header Allow)" GET "... with Allow: GET"
http POST "/health?x=1" -H 'Content-Type: application/json' --data-binary '{}'
is_json_error 405 method_not_allowed "POST /health answers 405 JSON"
is "$(header Allow)" GET "... with Allow: GET"
http PUT /create-activity -H 'Content-Type: application/json' --data-binary "$BODY"
is "$H_STATUS/$(header Allow)" "405/POST" "PUT /create-activity answers 405 with Allow: POST"

# HEAD by hand (curl would not show a body sent after the headers): HTTP/1.0,
# so the server closes the connection after its answer.
head_raw() {
	exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" || return 1
	printf 'HEAD /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	cat <&3
	exec 3<&-
}
timeout 10 bash -c "$(declare -f head_raw); HTTP_PORT=$HTTP_PORT head_raw" >"$T_DIR/head.raw" 2>/dev/null
tr -d '\r' <"$T_DIR/head.raw" | sed -n '1,/^$/p' >"$T_DIR/head.headers"
H_HEADERS="$T_DIR/head.headers"
H_STATUS=$(head -n 1 "$H_HEADERS" | cut -d' ' -f2)
is "$(awk 'BEGIN { RS = "\r\n\r\n" } NR > 1' "$T_DIR/head.raw" | wc -c)" 0 "HEAD /health: nothing follows the headers"
case "$H_STATUS" in
200) is "$(header Content-Type | cut -d';' -f1)" application/json "HEAD /health answers 200 with the GET's Content-Type" ;;
405) is "$(header Allow)" GET "HEAD /health answers 405 with Allow: GET (the program does not serve HEAD)" ;;
*) t_result 1 "HEAD /health answers 200 or 405"; diag "got: $(head -n 1 "$H_HEADERS")" ;;
esac
[ -n "$(header X-Request-ID)" ]
t_result $? "HEAD /health carries X-Request-ID (the program answered)"

# --- request headers: X-Request-ID both ways --------------------------------------
http GET "/activity/$ENC_ID" -H "X-Request-ID: paths-req-42"
is "$H_STATUS/$(header X-Request-ID)/$(jqr .activity.capsule_id)" "200/paths-req-42/$ID" "X-Request-ID reaches the program and comes back"
http GET /activity/paths-unknown -H "X-Request-ID: paths-req-43"
is "$(jqr .request_id)" paths-req-43 "... and is the error body's request_id"

# --- /ws is the WebSocket, /ws/token the REST API ---------------------------------
http GET /ws/token?user_id=paths_user
WS_TOKEN=$(jqr .token)
"$WSC" --url "ws://127.0.0.1:$HTTP_PORT/ws?token=$WS_TOKEN" --send '{"type":"ping"}' --until pong \
	--timeout 10 >"$T_DIR/ws.out" 2>&1
is "$?/$(grep -c '"pong"' "$T_DIR/ws.out")" "0/1" "/ws (with a query string) is proxied to capsule-wsd with its Upgrade: ping answers pong"

stack_stop_web
stack_stop fcgi
if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$FCGI_LOG" 2>/dev/null; then
	t_result 1 "no sanitizer report in fcgi.log"
	grep -E -A5 'ERROR: |runtime error:' "$FCGI_LOG" | head -n 30 | sed 's/^/# /'
else
	t_result 0 "no sanitizer report in fcgi.log"
fi

t_done

#!/usr/bin/env bash
# api.sh: the complete REST API (issue 4) through the real web server (STACK_WEB):
# every endpoint's success path, the state machine as a table, every error path,
# X-Request-ID, concurrency, cache coherence, tenants and roles, and 503 while
# PostgreSQL is down. Prints TAP. Every server is started on 127.0.0.1 in a
# temporary folder and stopped at the end.
set -u

SRC_DIR=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD_DIR=${top_builddir:-$SRC_DIR}
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"

it_begin api

STACK_LOG_LEVEL=info
# enough FastCGI processes for concurrent requests to really overlap
STACK_FCGI_CHILDREN=4
# This suite sends many hundreds of requests from 127.0.0.1 in a few seconds:
# lift the limits (rate limiting itself is security.sh's subject).
STACK_RATE_OVERRIDES="globex=600000/100000,acme=600000/100000"
STACK_RATE_PER_MINUTE=600000
STACK_RATE_BURST=100000
RATE_LIMIT_IP_PER_MINUTE=600000
RATE_LIMIT_IP_BURST=100000
export RATE_LIMIT_IP_PER_MINUTE RATE_LIMIT_IP_BURST
it_stack_up "stack starts (PostgreSQL, Redis, capsule-wsd, capsule-pushd, ${STACK_WEB:-lighttpd} + spawn-fcgi x$STACK_FCGI_CHILDREN)"

FCGI_LOG="$STACK_DIR/fcgi.log"
BASE="http://127.0.0.1:$HTTP_PORT"
T0=$(date +%s%N)
ctype=(-H 'Content-Type: application/json')

# Credentials: HS256 Bearer JWTs signed here with openssl (lib.sh).
T_PUB=$(bearer_token api-pub default publisher)
T_OP=$(bearer_token api-op default operator)
T_VIEW=$(bearer_token api-view default viewer)
T_ACME_PUB=$(bearer_token xt-acme-pub acme publisher)
T_ACME_OP=$(bearer_token xt-acme-op acme operator)
T_GLOBEX_PUB=$(bearer_token xt-globex-pub globex publisher)
T_GLOBEX_OP=$(bearer_token xt-globex-op globex operator)
T_GLOBEX_VIEW=$(bearer_token xt-globex-view globex viewer)

# as TOKEN: every following http call carries this Bearer token.
as() { HTTP_AUTH=(-H "Authorization: Bearer $1"); }
as "$T_PUB"

# jreq METHOD PATH JSON [curl args]: a JSON request.
jreq() {
	local m=$1 p=$2 b=$3
	shift 3
	http "$m" "$p" "${ctype[@]}" --data-binary "$b" "$@"
}

# create ID [JQ [curl args]]: POST /create-activity of {capsule_id: ID, title: "t ID"} changed by JQ.
create() {
	local id=$1 f=${2:-.}
	shift
	[ $# -gt 0 ] && shift
	jreq POST /create-activity "$(jq -cn --arg id "$id" "{capsule_id: \$id, title: (\"t \" + \$id)} | $f")" "$@"
}
# update ID JQ [curl args]: PUT /update of {capsule_id: ID} changed by JQ.
update() {
	local id=$1 f=$2
	shift 2
	jreq PUT /update "$(jq -cn --arg id "$id" "{capsule_id: \$id} | $f")" "$@"
}
# act ID ACTION [JQ [curl args]]: POST /action (user_id user_789).
act() {
	local id=$1 a=$2 f=${3:-.}
	shift 2
	[ $# -gt 0 ] && shift
	jreq POST /action "$(jq -cn --arg id "$id" --arg a "$a" "{capsule_id: \$id, action_type: \$a, user_id: \"user_789\"} | $f")" "$@"
}
# jqc FILTER: compact, key-sorted jq output of the last body.
jqc() { printf '%s' "$H_BODY" | jq -S -c "$1" 2>/dev/null; }

# row TENANT ID: state/version/updated_at/#events/#actions of an activity, from PostgreSQL.
row() {
	sql "SELECT a.state || '/' || a.version || '/' || a.updated_at || '/' ||
		(SELECT count(*) FROM events e WHERE e.tenant_id = a.tenant_id AND e.capsule_id = a.capsule_id) || '/' ||
		(SELECT count(*) FROM actions x WHERE x.tenant_id = a.tenant_id AND x.capsule_id = a.capsule_id)
		FROM activities a WHERE a.tenant_id = '$1' AND a.capsule_id = '$2'"
}

RFC3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?Z$'
# is_time VALUE DESCRIPTION
is_time() {
	if printf '%s' "$1" | grep -Eq "$RFC3339"; then t_result 0 "$2"; else t_result 1 "$2"; diag "got: $1"; fi
}

# The members every activity has (PROTOCOLS.md).
ACT_KEYS='["activity_id","capsule_id","title","message","state","priority","category","user_id","metadata","version","created_at","updated_at"]'
# missing_keys PATH KEYS_JSON: the members of KEYS missing from the object at PATH
# of the last body ("(no object)" when there is none).
missing_keys() {
	local m
	m=$(jqr "($1) as \$o | if (\$o | type) == \"object\" then \"=\" + ($2 - (\$o | keys) | join(\",\")) else \"(no object)\" end")
	case $m in =*) printf '%s' "${m#=}" ;; *) printf '(no object)' ;; esac
}

group() { diag "--- $* ($(( ($(date +%s%N) - T0) / 1000000 )) ms)"; }

# ============================================================================
group "success paths: create, get, update, action (tenant default, capsule ids ok-*)"
BODY='{"activity_id":"ok-act-1","capsule_id":"ok-1","title":"Security Alert","message":"Suspicious login detected from new location","priority":"high","category":"security","user_id":"user_789","metadata":{"location":"San Francisco, CA","ip":"192.168.1.1","drop_me":"x"}}'
jreq POST /create-activity "$BODY"
is "$H_STATUS" 201 "POST /create-activity answers 201"
is "$(jqr .success)" true "create: success true"
is "$(missing_keys .activity "$ACT_KEYS")" "" "create: the activity has every PROTOCOLS.md member"
is "$(jqr '.activity | [.activity_id, .capsule_id, .title, .state, .priority, .category, .user_id, (.version | tostring)] | join(",")')" \
	"ok-act-1,ok-1,Security Alert,active,high,security,user_789,1" "create: fields as sent, state active, version 1"
CREATED_AT=$(jqr .activity.created_at)
is_time "$CREATED_AT" "create: created_at is RFC 3339 UTC"
is "$(jqr '.activity.updated_at == .activity.created_at')" true "create: updated_at equals created_at"
CREATED=$(jqc .activity)

http GET /activity/ok-1
is "$H_STATUS" 200 "GET /activity/{capsule_id} answers 200"
is "$(jqr 'keys | join(",")')/$(jqc .activity)" "activity/$CREATED" \
	"GET /activity: {\"activity\": ...} exactly as created"

sleep 0.01
update ok-1 '.title = "New title" | .message = "new message" | .priority = "critical" | .category = "network" | .metadata = {resolved_by: "user_789", drop_me: null}'
is "$H_STATUS" 200 "PUT /update answers 200"
is "$(jqr .success)" true "update: success true"
is "$(missing_keys .activity "$ACT_KEYS")" "" "update: answers the whole activity"
is "$(jqr '.activity | [.title, .message, .priority, .category, .state, (.version | tostring)] | join(",")')" \
	"New title,new message,critical,network,active,2" "update: title, message, priority, category set; state kept; version 2"
is "$(jqc .activity.metadata)" '{"ip":"192.168.1.1","location":"San Francisco, CA","resolved_by":"user_789"}' \
	"update: metadata merged (old keys kept, new key added, a null value removed its key)"
is "$(jqr '[.activity.activity_id, .activity.capsule_id, .activity.user_id, (.activity.created_at == "'"$CREATED_AT"'")] | map(tostring) | join(",")')" \
	"ok-act-1,ok-1,user_789,true" "update: ids, user_id and created_at unchanged"
is "$(jqr '.activity.updated_at >= .activity.created_at')" true "update: updated_at is not before created_at"

update ok-1 '.state = "resolved" | .resolution = "Verified as legitimate user" | .metadata = {resolved_by: "user_789"}'
is "$H_STATUS/$(jqr '.activity | [.state, .resolution, (.version | tostring)] | join(",")')" \
	"200/resolved,Verified as legitimate user,3" "PUT /update state resolved with a resolution: 200, resolution set, version 3"
http GET /activity/ok-1
is "$H_STATUS/$(jqr '.activity | [.state, .resolution, (.version | tostring), .title] | join(",")')" \
	"200/resolved,Verified as legitimate user,3,New title" "GET /activity after the updates shows the latest version"
is "$(row default ok-1 | cut -d/ -f1,2,4)" "resolved/3/3" "PostgreSQL: resolved, version 3, 3 outbox events (created + 2 updates)"

create ok-2
ACT_BODY='{"capsule_id":"ok-2","action_type":"mitigate","user_id":"user_789","metadata":{"mitigation_method":"block_ip"}}'
jreq POST /action "$ACT_BODY"
is "$H_STATUS" 200 "POST /action answers 200"
is "$(jqr .success)" true "action: success true"
is "$(missing_keys .action '["action_id","capsule_id","action_type","user_id","result","created_at"]')" "" \
	"action: the action has action_id, capsule_id, action_type, user_id, result, created_at"
is "$(jqr '.action | [.capsule_id, .action_type, .user_id, .result] | join(",")')" "ok-2,mitigate,user_789,success" \
	"action: fields as sent, result success"
ACTION_ID=$(jqr .action.action_id)
[ -n "$ACTION_ID" ] && [ "$ACTION_ID" != null ]
t_result $? "action: action_id is set ($ACTION_ID)"
is_time "$(jqr .action.created_at)" "action: created_at is RFC 3339 UTC"
is "$(jqr '.activity | [.capsule_id, .state, (.version | tostring)] | join(",")')" "ok-2,mitigating,2" \
	"action: activity capsule_id, state mitigating, version 2"
is "$(sql "SELECT action_type || ',' || user_id || ',' || (metadata->>'mitigation_method') FROM actions WHERE tenant_id = 'default' AND action_id = '$ACTION_ID'")" \
	"mitigate,user_789,block_ip" "PostgreSQL: the action row holds type, user and metadata"
is "$(row default ok-2 | cut -d/ -f1,2,4,5)" "mitigating/2/2/1" "PostgreSQL: activity mitigating, version 2, 2 events, 1 action"
http GET /activity/ok-2
is "$(jqr '.activity | [.state, (.version | tostring)] | join(",")')" "mitigating,2" "GET /activity after the action shows state and version"

http GET /health
is "$H_STATUS" 200 "GET /health answers 200"
is "$(missing_keys . '["status","database","redis","apns","websocket_connections","uptime_seconds"]')" "" \
	"health: status, database, redis, apns, websocket_connections, uptime_seconds"
is "$(jqr '[.status, .database, .redis] | join(",")')" "healthy,connected,connected" "health: healthy, database and redis connected"
is "$(jqr '[(.websocket_connections | type), (.uptime_seconds | type)] | join(",")')" "number,number" "health: counters are numbers"
http GET /ready
is "$H_STATUS" 200 "GET /ready answers 200"
http GET "/ws/token?user_id=user_789&device_token=device_abc"
is "$H_STATUS/$(jqr .expires_in)" "200/3600" "GET /ws/token answers 200 with expires_in 3600"
is "$(jwt_payload "$(jqr .token)" | jq -r '[.sub, .tenant, .device_token] | join(",")')" "user_789,default,device_abc" \
	"ws token: user, tenant and device token"

# ============================================================================
group "history: GET /api/v1/activities/{capsule_id}/events (capsule ids hist-*)"
create hist-1
as "$T_OP"
update hist-1 '.metadata = {k: 1} | .title = "hist title"'
is "$H_STATUS" 200 "operator updates hist-1"
act hist-1 inspect
is "$H_STATUS" 200 "operator inspects hist-1"
HIST_ACTION=$(jqr .action.action_id)
as "$T_PUB"
update hist-1 '.state = "resolved" | .resolution = "done"'
is "$H_STATUS" 200 "publisher resolves hist-1"
http GET /api/v1/activities/hist-1/events
is "$H_STATUS" 200 "GET /api/v1/activities/hist-1/events answers 200"
is "$(jqr '[.capsule_id, .total, (.events | type)] | map(tostring) | join(",")')" "hist-1,4,array" \
	"history answer: capsule_id, total 4, events"
HIST=$(jqc '.events | sort_by(.version)')
h() { printf '%s' "$HIST" | jq -r "$1" 2>/dev/null; }
is "$(h 'length')" 4 "history lists 4 changes (created + update + action + update)"
is "$(h 'map(.version | tostring) | join(",")')" "1,2,3,4" "each change carries its version (1..4)"
is "$(h 'map(.type) | join(",")')" "activity.created,activity.updated,activity.updated,activity.updated" "each change carries its type"
is "$(h 'map(.actor) | join(",")')" "api-pub,api-op,api-op,api-pub" "each change carries the actor (the caller's subject)"
is "$(h '[.[] | .created_at | test("'"$RFC3339"'")] | all')" true "each change carries its time (RFC 3339)"
is "$(h '.[1].cause.fields | sort | join(",")')" "metadata,title" "the update's cause names the changed fields"
is "$(h '.[2].cause.action | [.action_id, .action_type, .user_id] | join(",")')" "$HIST_ACTION,inspect,user_789" \
	"the action's cause names the action (id, type, user)"
is "$(h '.[3].cause.fields | sort | join(",")')" "resolution,state" "the resolve's cause names state and resolution"
create "hist:enc.1"
http GET /api/v1/activities/hist%3Aenc.1/events
is "$H_STATUS/$(jqr '.events | length')" "200/1" "a percent-encoded capsule id in the history path is decoded"
http GET /api/v1/activities/hist-none/events
is "$H_STATUS/$(jqr .error.code)" "404/not_found" "history of an unknown capsule answers 404"

# ============================================================================
group "GET /activities: filters, order, paging (capsule ids lst-*)"
create lst-1 '.user_id = "lst-user-a" | .category = "lst-cat-x"'
create lst-2 '.user_id = "lst-user-b" | .category = "lst-cat-x"'
create lst-3 '.user_id = "lst-user-a" | .category = "lst-cat-y"'
create lst-4 '.user_id = "lst-user-a" | .category = "lst-cat-x"'
act lst-3 inspect >/dev/null
http GET "/activities?user_id=lst-user-a"
is "$H_STATUS" 200 "GET /activities answers 200"
is "$(jqr 'keys | sort | join(",")')" "activities,limit,offset,total" "answer has activities, total, limit, offset"
is "$(jqr '[.activities[].capsule_id] | join(",")')/$(jqr .total)" "lst-4,lst-3,lst-1/3" "user_id filter, newest first, total 3"
is "$(jqr '[.limit, .offset] | map(tostring) | join(",")')" "50,0" "limit defaults to 50, offset to 0"
is "$(missing_keys '.activities[0]' "$ACT_KEYS")" "" "listed activities have every member"
http GET "/activities?category=lst-cat-x"
is "$(jqr '[.activities[].capsule_id] | join(",")')/$(jqr .total)" "lst-4,lst-2,lst-1/3" "category filter"
http GET "/activities?state=investigating&user_id=lst-user-a"
is "$(jqr '[.activities[].capsule_id] | join(",")')/$(jqr .total)" "lst-3/1" "state filter combined with user_id"
http GET "/activities?user_id=lst-user-a&category=lst-cat-x&state=active"
is "$(jqr '[.activities[].capsule_id] | join(",")')/$(jqr .total)" "lst-4,lst-1/2" "three filters at once"
http GET "/activities?user_id=lst-nobody"
is "$H_STATUS/$(jqr '.activities | length')/$(jqr .total)" "200/0/0" "a filter matching nothing: empty list, total 0"

# 60 more rows of one category, one second apart (inserted directly: faster).
sql "INSERT INTO activities (tenant_id, activity_id, capsule_id, title, category, created_at, updated_at)
	SELECT 'default', 'lst-bulk-a' || i, 'lst-bulk-' || i, 'bulk ' || i, 'lst-bulk', now() - i * interval '1 second', now() - i * interval '1 second'
	FROM generate_series(1, 60) i" >/dev/null
N_DEFAULT=$(sql "SELECT count(*) FROM activities WHERE tenant_id = 'default'")
http GET "/activities"
is "$H_STATUS/$(jqr '.activities | length')/$(jqr .limit)/$(jqr .total)" "200/50/50/$N_DEFAULT" \
	"no query: 50 activities (default limit) and total = every activity of the tenant ($N_DEFAULT)"
is "$(jqr '[.activities[].created_at] | . == (sort | reverse)')" true "the list is newest first"
http GET "/activities?category=lst-bulk&limit=500"
is "$H_STATUS/$(jqr '.activities | length')/$(jqr .limit)/$(jqr .total)" "200/60/500/60" "limit=500 is allowed"
is "$(jqr '[.activities[].capsule_id] | join(",")')" "$(seq -f 'lst-bulk-%g' 1 60 | paste -sd,)" \
	"newest first across 60 rows (by created_at)"
http GET "/activities?category=lst-bulk&limit=7&offset=0"
P1=$(jqr '[.activities[].capsule_id] | join(",")')
is "$(jqr '[(.activities | length), .total, .limit, .offset] | map(tostring) | join(",")')" "7,60,7,0" "limit=7 offset=0"
http GET "/activities?category=lst-bulk&limit=7&offset=7"
P2=$(jqr '[.activities[].capsule_id] | join(",")')
is "$P1|$P2" "$(seq -f 'lst-bulk-%g' 1 7 | paste -sd,)|$(seq -f 'lst-bulk-%g' 8 14 | paste -sd,)" \
	"offset=7 continues exactly where offset=0 stopped"
http GET "/activities?category=lst-bulk&limit=7&offset=58"
is "$(jqr '[.activities[].capsule_id] | join(",")')/$(jqr .total)" "lst-bulk-59,lst-bulk-60/60" "the last page is short"
http GET "/activities?category=lst-bulk&offset=60"
is "$(jqr '.activities | length')/$(jqr .total)" "0/60" "an offset past the end lists nothing"
http GET "/activities?limit=501"
is "$H_STATUS/$(jqr .error.code)/$(jqr .error.field)" "422/validation_failed/limit" "limit=501 answers 422 naming limit"
http GET "/activities?offset=-1"
is "$H_STATUS/$(jqr .error.field)" "422/offset" "offset=-1 answers 422 naming offset"
http GET "/activities?limit=abc"
is "$H_STATUS/$(jqr .error.field)" "422/limit" "limit=abc answers 422 naming limit"
# The page query's shape (ORDER BY created_at DESC, id DESC LIMIT) per filter,
# planned with sequential scans off: each filter has an index that serves it.
for c in "category = 'lst-bulk'|activities_tenant_category_created" "user_id = 'lst-user-a'|activities_tenant_user_created" \
	"state = 'active'|activities_tenant_state_created" "true|activities_tenant_created"; do
	psql -X -q -t -A "$DATABASE_URL" -c "BEGIN" -c "SET LOCAL capsule.tenant = 'default'" -c "SET LOCAL enable_seqscan = off" \
		-c "EXPLAIN SELECT * FROM activities WHERE tenant_id = 'default' AND ${c%%|*} ORDER BY created_at DESC, id DESC LIMIT 50" \
		-c "COMMIT" >"$T_DIR/plan.txt" 2>&1
	used=$(grep -o 'Index Scan[a-zA-Z ]* using [a-z_]*' "$T_DIR/plan.txt" | head -n 1)
	is "$(grep -c 'Sort ' "$T_DIR/plan.txt")/${used##* }" "0/${c#*|}" \
		"GET /activities $([ "${c%%|*}" = true ] && echo 'without a filter' || echo "filtered by ${c%%|*}"): planned as '$used', no sort"
done

# ============================================================================
group "GET /statistics (tenant default; capsule ids st-*)"
http GET /statistics
is "$H_STATUS" 200 "GET /statistics answers 200"
STATS_KEYS='["total_activities","active_activities","resolved_activities","dismissed_activities","total_actions","websocket_connections","cache_hit_rate"]'
is "$(missing_keys . "$STATS_KEYS")" "" "statistics has every PROTOCOLS.md member"
is "$(jqr "[.[$STATS_KEYS[]] | type] | unique | join(\",\")")" "number" "every member is a number"
is "$(jqr '.cache_hit_rate >= 0 and .cache_hit_rate <= 1')" true "cache_hit_rate is between 0 and 1 ($(jqr .cache_hit_rate))"
is "$(jqr .total_activities)" "$(sql "SELECT count(*) FROM activities WHERE tenant_id = 'default'")" "total_activities is the tenant's count in PostgreSQL"
is "$(jqr .total_actions)" "$(sql "SELECT count(*) FROM actions WHERE tenant_id = 'default'")" "total_actions is the tenant's count in PostgreSQL"
S0=$H_BODY
s_delta() { jq -n --argjson a "$S0" --argjson b "$H_BODY" -r '[$b.total_activities - $a.total_activities, $b.active_activities - $a.active_activities, $b.resolved_activities - $a.resolved_activities, $b.dismissed_activities - $a.dismissed_activities, $b.total_actions - $a.total_actions] | map(tostring) | join(",")'; }
create st-1 >/dev/null
create st-2 >/dev/null
create st-3 >/dev/null
http GET /statistics
is "$(s_delta)" "3,3,0,0,0" "after 3 creates: total +3, active +3"
update st-1 '.state = "resolved"' >/dev/null
http GET /statistics
is "$(s_delta)" "3,2,1,0,0" "after a resolve: active -1, resolved +1"
act st-2 dismiss >/dev/null
http GET /statistics
is "$(s_delta)" "3,1,1,1,1" "after a dismiss action: active -1, dismissed +1, actions +1"
HITS=$(redis-cli -p "$REDIS_PORT" GET cg:stats:cache_hits)
MISSES=$(redis-cli -p "$REDIS_PORT" GET cg:stats:cache_misses)
is "$(jq -n --argjson r "$(jqr .cache_hit_rate)" --argjson h "${HITS:-0}" --argjson m "${MISSES:-0}" \
	'if $h + $m == 0 then $r == 0 else (($r - $h / ($h + $m)) | fabs) < 0.05 end')" true \
	"cache_hit_rate matches the hit/miss counters (${HITS:-0} hits, ${MISSES:-0} misses)"

# ============================================================================
group "devices, push-to-start and Live Activity tokens under /api/v1 (capsule ids dev-*)"
T_DEV1=$(bearer_token dev-user-1 default viewer)
T_DEV2=$(bearer_token dev-user-2 default viewer)
TOK1=$(openssl rand -hex 32)
TOK2=$(openssl rand -hex 32)
as "$T_DEV1"
jreq POST /api/v1/devices "{\"device_token\":\"$TOK1\",\"platform\":\"ios\",\"app_version\":\"1.2.3\",\"os_version\":\"17.2\"}"
is "$H_STATUS" 201 "POST /api/v1/devices registers a new device (201)"
is "$(jqr '.device | [.platform, .app_version, .os_version, .device_token] | join(",")')" "ios,1.2.3,17.2,$TOK1" \
	"the answer carries platform, app_version, os_version and the token"
DEV1=$(jqr .device.device_id)
is_time "$(jqr .device.last_seen)" "the device has last_seen"
SEEN1=$(sql "SELECT last_seen FROM devices WHERE device_token = '$TOK1'")
is "$(sql "SELECT user_id || ',' || platform || ',' || active FROM devices WHERE tenant_id = 'default' AND device_token = '$TOK1'")" \
	"dev-user-1,ios,true" "PostgreSQL: the device belongs to the caller"
sleep 0.01
jreq POST /api/v1/devices "{\"device_token\":\"$TOK1\",\"platform\":\"ios\",\"app_version\":\"1.3.0\",\"os_version\":\"17.3\"}"
is "$H_STATUS/$(jqr .device.device_id)" "200/$DEV1" "registering the same token again refreshes it (200, same device_id)"
is "$(sql "SELECT count(*) || ',' || max(app_version) || ',' || (max(last_seen) > '$SEEN1') FROM devices WHERE device_token = '$TOK1'")" "1,1.3.0,true" \
	"the refresh keeps one row, updates app_version and last_seen"
jreq POST /api/v1/devices '{"device_token":"web-endpoint-1","platform":"web"}'
is "$H_STATUS" 201 "a web device registers (201)"
DEVW=$(jqr .device.device_id)
jreq POST /api/v1/devices '{"device_token":"x","platform":"android"}'
is "$H_STATUS/$(jqr .error.field)" "422/platform" "platform android answers 422 naming platform"
jreq POST /api/v1/devices '{"platform":"ios"}'
is "$H_STATUS/$(jqr .error.field)" "422/device_token" "a missing device_token answers 422 naming it"
as "$T_DEV2"
jreq POST /api/v1/devices "{\"device_token\":\"$TOK2\",\"platform\":\"ios\"}"
is "$H_STATUS" 201 "another user registers a device"
DEV2=$(jqr .device.device_id)
http GET /api/v1/devices
is "$H_STATUS/$(jqr '[.devices[].device_id | tostring] | join(",")')" "200/$DEV2" "GET /api/v1/devices lists only the caller's device"
as "$T_DEV1"
http GET /api/v1/devices
is "$(jqr '[.devices[].device_id | tostring] | sort | join(",")')" "$(printf '%s\n' "$DEV1" "$DEVW" | sort | paste -sd,)" \
	"user 1 lists its two devices"
http DELETE "/api/v1/devices/$DEV2"
is "$H_STATUS" 404 "deleting another user's device answers 404"
is "$(sql "SELECT active FROM devices WHERE id = $DEV2")" t "... and leaves it alone"
PTS=$(openssl rand -hex 40)
jreq PUT "/api/v1/devices/$DEV1/push-to-start-token" "{\"push_to_start_token\":\"$PTS\"}"
is "$H_STATUS" 200 "PUT /api/v1/devices/{id}/push-to-start-token answers 200"
is "$(sql "SELECT push_to_start_token FROM devices WHERE id = $DEV1")" "$PTS" "PostgreSQL: the push-to-start token is stored"
jreq PUT "/api/v1/devices/$DEV2/push-to-start-token" "{\"push_to_start_token\":\"$PTS\"}"
is "$H_STATUS" 404 "a push-to-start token for another user's device answers 404"
jreq PUT "/api/v1/devices/$DEV1/push-to-start-token" '{"push_to_start_token":"not hex!"}'
is "$H_STATUS/$(jqr .error.field)" "422/push_to_start_token" "a non-hex push-to-start token answers 422"
as "$T_PUB"
create dev-act-1 >/dev/null
as "$T_DEV1"
LAT1=$(openssl rand -hex 40)
LAT2=$(openssl rand -hex 40)
jreq POST /api/v1/activities/dev-act-1/live-activity-tokens "{\"device_id\":$DEV1,\"push_token\":\"$LAT1\"}"
is "$H_STATUS" 201 "POST /api/v1/activities/{id}/live-activity-tokens answers 201"
is "$(jqr '.live_activity_token | [.capsule_id, (.device_id | tostring), .push_token, (.active | tostring)] | join(",")')" \
	"dev-act-1,$DEV1,$LAT1,true" "the answer carries the token, its activity and device"
is "$(sql "SELECT push_token || ',' || active FROM live_activity_tokens WHERE capsule_id = 'dev-act-1' AND device_id = $DEV1")" "$LAT1,true" \
	"PostgreSQL: the Live Activity token is attached to the activity and device"
jreq POST /api/v1/activities/dev-act-1/live-activity-tokens "{\"device_id\":$DEV1,\"push_token\":\"$LAT2\"}"
is "$(case $H_STATUS in 200|201) echo ok ;; *) echo "$H_STATUS" ;; esac)/$(sql "SELECT count(*) || ',' || max(push_token) FROM live_activity_tokens WHERE capsule_id = 'dev-act-1' AND device_id = $DEV1")" \
	"ok/1,$LAT2" "a rotated token replaces the old one (one row)"
jreq POST /api/v1/activities/dev-act-1/live-activity-tokens "{\"device_id\":$DEV2,\"push_token\":\"$LAT1\"}"
is "$H_STATUS" 404 "attaching a token for another user's device answers 404"
jreq POST /api/v1/activities/dev-none/live-activity-tokens "{\"device_id\":$DEV1,\"push_token\":\"$LAT1\"}"
is "$H_STATUS" 404 "attaching a token to an unknown activity answers 404"
jreq POST /api/v1/activities/dev-act-1/live-activity-tokens "{\"device_id\":$DEV1,\"push_token\":\"zz\"}"
is "$H_STATUS/$(jqr .error.field)" "422/push_token" "a non-hex Live Activity token answers 422 naming push_token"
http DELETE "/api/v1/devices/$DEVW"
is "$(case $H_STATUS in 200|204) echo ok ;; *) echo "$H_STATUS" ;; esac)" ok "DELETE /api/v1/devices/{id} deletes the caller's device"
http GET /api/v1/devices
is "$(jqr '[.devices[].device_id | tostring] | join(",")')" "$DEV1" "the deleted device is no longer listed"
http DELETE "/api/v1/devices/$DEVW"
is "$H_STATUS" 404 "deleting it again answers 404"
as "$T_PUB"

# ============================================================================
group "state machine: every reachable state x every action and PUT state (capsule ids sm-*)"
STATES="active investigating mitigating approved rejected dismissed resolved"
OPS="inspect mitigate approve reject dismiss =active =investigating =mitigating =approved =rejected =dismissed =resolved"
ALLOW_active="investigating mitigating approved rejected dismissed resolved"
ALLOW_investigating="active investigating mitigating approved rejected dismissed resolved"
ALLOW_mitigating="active investigating mitigating approved rejected resolved"
ALLOW_approved="investigating mitigating resolved"
target_of() {
	case $1 in
	inspect) echo investigating ;; mitigate) echo mitigating ;; approve) echo approved ;;
	reject) echo rejected ;; dismiss) echo dismissed ;; =*) echo "${1#=}" ;;
	esac
}
# reach ID STATE: a new activity in STATE (through the API).
reach() {
	create "$1" >/dev/null
	case $2 in
	active) ;;
	investigating) act "$1" inspect ;; mitigating) act "$1" mitigate ;; approved) act "$1" approve ;;
	rejected) act "$1" reject ;; dismissed) act "$1" dismiss ;;
	resolved) update "$1" '.state = "resolved"' ;;
	esac
}
# sm_id FROM OP: the capsule id of one cell.
sm_id() { case $2 in =*) echo "sm-$1-put-${2#=}" ;; *) echo "sm-$1-$2" ;; esac; }
# sm_reach FROM / sm_ops FROM: one row of the table: a fresh activity in state
# FROM per operation; then each operation on its activity, writing
# "status|code|answered state|answered version" per cell. The rows run in
# parallel, each with its own http scratch files; PostgreSQL is read once
# before and once after all operations.
sm_reach() {
	local op
	T_DIR="$T_DIR/sm-$1"
	mkdir -p "$T_DIR"
	for op in $OPS; do
		reach "$(sm_id "$1" "$op")" "$1"
	done
}
sm_ops() {
	local op id
	T_DIR="$T_DIR/sm-$1"
	for op in $OPS; do
		id=$(sm_id "$1" "$op")
		case $op in
		=*) update "$id" ".state = \"${op#=}\"" ;;
		*) act "$id" "$op" ;;
		esac
		printf '%s|%s|%s|%s\n' "$H_STATUS" "$(jqr .error.code)" "$(jqr .activity.state)" \
			"$(jqr .activity.version)" >"$T_DIR/$op.res"
	done
}
# sm_snapshot FILE: "capsule_id state/version/updated_at/#events/#actions" of every sm-* activity.
sm_snapshot() {
	sql "SELECT a.capsule_id || ' ' || a.state || '/' || a.version || '/' || extract(epoch FROM a.updated_at) || '/' ||
		(SELECT count(*) FROM events e WHERE e.tenant_id = a.tenant_id AND e.capsule_id = a.capsule_id) || '/' ||
		(SELECT count(*) FROM actions x WHERE x.tenant_id = a.tenant_id AND x.capsule_id = a.capsule_id)
		FROM activities a WHERE a.tenant_id = 'default' AND a.capsule_id LIKE 'sm-%'" >"$1"
}
snap_of() { awk -v id="$2" '$1 == id { print $2 }' "$1"; }
pids=""
for from in $STATES; do
	sm_reach "$from" &
	pids="$pids $!"
done
wait $pids
sm_snapshot "$T_DIR/sm-before"
pids=""
for from in $STATES; do
	sm_ops "$from" &
	pids="$pids $!"
done
wait $pids
sm_snapshot "$T_DIR/sm-after"
GRID="$T_DIR/sm-grid"
: >"$GRID"
for from in $STATES; do
	line=$(printf '%-14s' "$from")
	for op in $OPS; do
		to=$(target_of "$op")
		IFS='|' read -r st code r_state r_ver <"$T_DIR/sm-$from/$op.res"
		before=$(snap_of "$T_DIR/sm-before" "$(sm_id "$from" "$op")")
		after=$(snap_of "$T_DIR/sm-after" "$(sm_id "$from" "$op")")
		line="$line $(printf '%-5s' "$st")"
		if [ "${before%%/*}" != "$from" ]; then
			t_result 1 "$from + $op: setup reached $from"
			diag "row: $before"
			continue
		fi
		IFS=/ read -r b_state b_ver b_upd b_ev b_act <<<"$before"
		IFS=/ read -r a_state a_ver a_upd a_ev a_act <<<"$after"
		case " rejected dismissed resolved " in
		*" $from "*) want=409 ;;
		*)
			allow_var="ALLOW_$from"
			if [ "$op" = "=$from" ] || case " ${!allow_var} " in *" $to "*) true ;; *) false ;; esac; then
				want=200
			else
				want=409
			fi
			;;
		esac
		case $op in
		=*) kind="PUT state=$to" d_act=0 ;;
		*) kind="action $op" d_act=1 ;;
		esac
		if [ "$want" = 200 ]; then
			is "$st $r_state $r_ver | $a_state $a_ver $a_ev $a_act" \
				"200 $to $((b_ver + 1)) | $to $((b_ver + 1)) $((b_ev + 1)) $((b_act + d_act))" \
				"$from + $kind -> 200, state $to, version $((b_ver + 1)), one event"
		else
			case " rejected dismissed resolved " in *" $from "*) want_code=final_state ;; *) want_code=invalid_transition ;; esac
			is "$st $code | $a_state $a_ver $a_upd $a_ev $a_act" \
				"409 $want_code | $b_state $b_ver $b_upd $b_ev $b_act" \
				"$from + $kind -> 409 $want_code, nothing changes (state, version, updated_at, events, actions)"
		fi
	done
	echo "$line" >>"$GRID"
done
diag "observed (rows: from; columns: $OPS):"
sed 's/^/#   /' "$GRID"
reach sm-msg approved >/dev/null
update sm-msg '.state = "rejected"'
is "$H_STATUS/$(jqr '.error.message | test("approved") and test("rejected")')" "409/true" \
	"the invalid_transition message names from (approved) and to (rejected)"
for f in '.metadata = {x: 1}' '.title = "changed"' '.resolution = "again"' '.priority = "low"'; do
	before=$(row default sm-resolved-inspect)
	update sm-resolved-inspect "$f"
	is "$H_STATUS $(jqr .error.code) $(row default sm-resolved-inspect)" "409 final_state $before" \
		"a resolved activity refuses PUT ($f) with 409 final_state and stays unchanged"
done
http GET /activity/sm-dismissed-inspect
is "$(jqr '.activity | [.state, (.version | tostring)] | join(",")')" "dismissed,2" "GET shows the final activity unchanged"

# ============================================================================
group "error paths through the web server (capsule ids err-*)"
count_rows() { sql "SELECT (SELECT count(*) FROM activities) || '/' || (SELECT count(*) FROM events) || '/' || (SELECT count(*) FROM actions)"; }
create err-base >/dev/null
BEFORE=$(count_rows)
# err_shape STATUS CODE DESCRIPTION: the last answer is STATUS with the JSON error shape and CODE.
err_shape() {
	is "$H_STATUS $(jqr '[.success, .error.code, (.request_id | type), (.error.message | type)] | map(tostring) | join(",")')" \
		"$1 false,$2,string,string" "$3"
}
for p in "POST /create-activity" "PUT /update" "POST /action" "POST /api/v1/devices"; do
	jreq ${p% *} "${p#* }" '{"title": "x",'
	err_shape 400 malformed_json "$p with malformed JSON: 400 malformed_json"
done
for p in "POST /create-activity" "PUT /update" "POST /action"; do
	http ${p% *} "${p#* }" -H 'Content-Type: text/plain' --data-binary '{"capsule_id":"err-base","title":"x","action_type":"inspect"}'
	err_shape 415 unsupported_media_type "$p with Content-Type text/plain: 415"
done
head -c 1100000 /dev/zero | tr '\0' 'a' | sed 's/^/{"capsule_id":"err-base","title":"/; s/$/"}/' >"$T_DIR/big.json"
for p in "POST /create-activity" "PUT /update" "POST /action"; do
	http ${p% *} "${p#* }" "${ctype[@]}" --data-binary "@$T_DIR/big.json"
	err_shape 413 payload_too_large "$p with a body over 1 MiB: 413"
done
update err-none '.title = "x"'
err_shape 404 not_found "PUT /update of an unknown capsule: 404"
act err-none inspect
err_shape 404 not_found "POST /action on an unknown capsule: 404"
http GET /activity/err-none
err_shape 404 not_found "GET /activity of an unknown capsule: 404"
http GET /no/such/path
err_shape 404 not_found "unknown path: 404"
http GET /api/v1/nothing
err_shape 404 not_found "unknown path under /api/v1: 404"
for c in "GET /update|PUT" "GET /action|POST" "POST /activities|GET" "DELETE /statistics|GET" "PUT /create-activity|POST" \
	"POST /activity/err-base|GET" "PATCH /api/v1/devices|GET, POST" "GET /api/v1/activities/err-base/live-activity-tokens|POST"; do
	req=${c%%|*}
	body=()
	case ${req% *} in POST|PUT|PATCH) body=(--data-binary '') ;; esac # no 411 Length Required
	http ${req% *} "${req#* }" "${body[@]}"
	allow=$(header Allow | tr -d ' ' | tr ',' '\n' | sort | paste -sd,)
	is "$H_STATUS $(jqr .error.code) $allow" "405 method_not_allowed $(printf '%s' "${c#*|}" | tr -d ' ' | tr ',' '\n' | sort | paste -sd,)" \
		"$req: 405 with Allow: ${c#*|}"
done
create err-base
err_shape 409 conflict "a second create with the same capsule_id: 409 conflict"
is "$(jqr .error.field)" capsule_id "... naming capsule_id"

# 422: each bound, with the field named.
v422() { # FIELD DESCRIPTION
	is "$H_STATUS $(jqr .error.code) $(jqr .error.field)" "422 validation_failed $1" "$2: 422 naming $1"
}
create err-t501 '.title = ("é" * 501)'
v422 title "title of 501 characters (é x 501)"
create err-t500 '.title = ("é" * 500)'
is "$H_STATUS/$(jqr '.activity.title | length')" "201/500" "title of 500 characters (é x 500, 1000 bytes) is accepted"
create err-m '.message = ("a" * 65537)'
v422 message "message of 64 KiB + 1 bytes"
create err-m64 '.message = ("a" * 65536)'
is "$H_STATUS" 201 "message of exactly 64 KiB is accepted"
create err-md '.metadata = [1, 2]'
v422 metadata "metadata an array"
create err-md '.metadata = "text"'
v422 metadata "metadata a string"
DEEP17=$(jq -cn 'reduce range(16) as $i ({x: 1}; {d: .})')
DEEP15=$(jq -cn 'reduce range(14) as $i ({x: 1}; {d: .})')
create err-md17 ".metadata = $DEEP17"
v422 metadata "metadata nested 17 objects deep"
create err-md15 ".metadata = $DEEP15"
is "$H_STATUS" 201 "metadata nested 15 objects deep is accepted"
create err-mbig '.metadata = {big: ("a" * 66000)}'
v422 metadata "metadata over 64 KiB"
create "err space"
v422 capsule_id "a capsule_id with a space"
create "$(printf 'e%.0s' $(seq 1 256))"
v422 capsule_id "a capsule_id of 256 characters"
create "$(printf 'e%.0s' $(seq 1 255))"
is "$H_STATUS" 201 "a capsule_id of 255 characters is accepted"
create err-p '.priority = "urgent"'
v422 priority "an unknown priority"
jreq POST /create-activity '{"capsule_id":"err-nt"}'
v422 title "a missing title"
printf '{"capsule_id":"err-utf","title":"bad \xff\xfe bytes"}' >"$T_DIR/badutf8.json"
http POST /create-activity "${ctype[@]}" --data-binary "@$T_DIR/badutf8.json"
is "$(case $H_STATUS in 400|422) echo refused ;; *) echo "$H_STATUS" ;; esac)/$(jqr .success)" "refused/false" \
	"invalid UTF-8 bytes in a string: 400 or 422 ($H_STATUS)"
printf '{"capsule_id":"err-base","metadata":{"k":"\xc3\x28"}}' >"$T_DIR/badutf8u.json"
http PUT /update "${ctype[@]}" --data-binary "@$T_DIR/badutf8u.json"
is "$(case $H_STATUS in 400|422) echo refused ;; *) echo "$H_STATUS" ;; esac)" refused "invalid UTF-8 in an update's metadata: 400 or 422 ($H_STATUS)"
# The same bounds on PUT /update and POST /action.
update err-base '.title = ("é" * 501)'
v422 title "PUT /update title of 501 characters"
update err-base '.message = ("a" * 65537)'
v422 message "PUT /update message over 64 KiB"
update err-base '.metadata = [1]'
v422 metadata "PUT /update metadata not an object"
update err-base ".metadata = $DEEP17"
v422 metadata "PUT /update metadata nested 17 deep"
update err-base '.metadata = {big: ("a" * 66000)}'
v422 metadata "PUT /update metadata over 64 KiB"
update err-base '.state = "exploded"'
v422 state "PUT /update unknown state"
update err-base '.priority = "urgent"'
v422 priority "PUT /update unknown priority"
jreq PUT /update '{"title":"no id"}'
v422 capsule_id "PUT /update without capsule_id"
act err-base explode
v422 action_type "POST /action unknown action_type"
jreq POST /action '{"capsule_id":"err-base"}'
v422 action_type "POST /action without action_type"
act err-base inspect '.metadata = [1]'
v422 metadata "POST /action metadata not an object"
act "err space" inspect
v422 capsule_id "POST /action capsule_id with a space"
is "$(count_rows)" "$(sql "SELECT ($(echo "$BEFORE" | cut -d/ -f1) + 4) || '/' || ($(echo "$BEFORE" | cut -d/ -f2) + 4) || '/' || $(echo "$BEFORE" | cut -d/ -f3)")" \
	"no refused request wrote anything (only the 4 accepted boundary creates did)"
is "$(row default err-base | cut -d/ -f1,2)" "active/1" "err-base is untouched"

# ============================================================================
group "X-Request-ID (capsule ids rid-*)"
create rid-1 '.' -H 'X-Request-ID: api-rid-create.1'
is "$H_STATUS/$(header X-Request-ID)" "201/api-rid-create.1" "a sane X-Request-ID is echoed"
update rid-1 '.title = "x"' -H 'X-Request-ID: api-rid-update:2'
is "$(header X-Request-ID)" "api-rid-update:2" "... on PUT /update too"
act rid-1 inspect '.' -H 'X-Request-ID: api-rid-action_3'
is "$(header X-Request-ID)" "api-rid-action_3" "... and on POST /action"
http GET /activity/rid-none -H 'X-Request-ID: api-rid-err-4'
is "$(header X-Request-ID)/$(jqr .request_id)" "api-rid-err-4/api-rid-err-4" "an error carries it in the header and the body"
sleep 0.2
for rid in api-rid-create.1 api-rid-update:2 api-rid-action_3 api-rid-err-4; do
	n=$(grep -cF "[$rid]" "$FCGI_LOG")
	[ "$n" -ge 1 ]
	t_result $? "fcgi.log has $n line(s) tagged [$rid]"
done
grep -F 'capsule_id=rid-1' "$FCGI_LOG" | grep -F 'created' >"$T_DIR/rid-lines"
is "$(grep -c . "$T_DIR/rid-lines")/$(grep -cvF '[api-rid-create.1]' "$T_DIR/rid-lines")" "1/0" \
	"the request's own log line (created activity rid-1) carries its id"
missing=""
for c in "api-rid-create.1|POST /create-activity 201" "api-rid-update:2|PUT /update 200" \
	"api-rid-action_3|POST /action 200" "api-rid-err-4|GET /activity/rid-none 404"; do
	grep -F "[${c%%|*}]" "$FCGI_LOG" | grep -qF "${c#*|}" || missing="$missing [${c%%|*}]"
done
is "${missing# }" "" "each request's access line (method, path, status) carries its id"
LONG=$(printf 'r%.0s' $(seq 1 200))
for c in "spaces|has spaces in it" "200 characters|$LONG" "a quote|bad\"id" "a slash|a/b"; do
	http GET /activity/rid-1 -H "X-Request-ID: ${c#*|}"
	got=$(header X-Request-ID)
	[ -n "$got" ] && [ "$got" != "${c#*|}" ] && printf '%s' "$got" | grep -Eq '^[A-Za-z0-9._:-]{1,128}$'
	t_result $? "an X-Request-ID with ${c%%|*} is replaced by a generated one ($got)"
done
http GET /activity/rid-none -H "X-Request-ID: has spaces"
GEN=$(header X-Request-ID)
is "$(jqr .request_id)" "$GEN" "the generated id is the body's request_id"
sleep 0.2
grep -qF "[$GEN]" "$FCGI_LOG"
t_result $? "the generated id tags the request's log lines"
grep -qF 'has spaces' "$FCGI_LOG"
is "$?" 1 "the refused X-Request-ID never reaches the log"

# ============================================================================
group "concurrency: $STACK_FCGI_CHILDREN FastCGI processes (capsule ids cc-*)"
create cc-1 '.metadata = {base: true}' >/dev/null
pids=""
for i in $(seq 1 20); do
	curl -sS -o "$T_DIR/cc-u$i.body" -w '%{http_code}' -X PUT "${ctype[@]}" -H "Authorization: Bearer $T_OP" \
		--data-binary "{\"capsule_id\":\"cc-1\",\"metadata\":{\"k$i\":$i}}" "$BASE/update" >"$T_DIR/cc-u$i.status" 2>/dev/null &
	pids="$pids $!"
done
wait $pids
is "$(cat "$T_DIR"/cc-u*.status | tr -d '\n' | sed 's/200//g')" "" "20 concurrent PUT /update all answer 200"
is "$(for i in $(seq 1 20); do jq -r .activity.version "$T_DIR/cc-u$i.body"; done | sort -n | paste -sd,)" "$(seq 2 21 | paste -sd,)" \
	"their answers carry versions 2..21, each once"
http GET /activity/cc-1
is "$(jqr .activity.version)" 21 "afterwards the version is 21"
is "$(jqr '.activity.metadata | keys | sort | join(",")')" "$( (echo base; seq -f 'k%g' 1 20) | sort | paste -sd,)" \
	"all 20 metadata keys (and the original one) are present"
is "$(sql "SELECT version || '/' || (SELECT count(*) FROM jsonb_object_keys(metadata)) FROM activities WHERE tenant_id = 'default' AND capsule_id = 'cc-1'")" "21/21" \
	"PostgreSQL agrees (version 21, 21 keys)"
is "$(sql "SELECT string_agg(version::text, ',' ORDER BY id) FROM events WHERE tenant_id = 'default' AND capsule_id = 'cc-1'")" "$(seq 1 21 | paste -sd,)" \
	"the outbox holds one event per version, in commit order"

create cc-2 >/dev/null
pids=""
for i in $(seq 1 10); do
	a=inspect
	[ $((i % 2)) = 0 ] && a=mitigate
	curl -sS -o "$T_DIR/cc-a$i.body" -w '%{http_code}' -X POST "${ctype[@]}" -H "Authorization: Bearer $T_OP" \
		--data-binary "{\"capsule_id\":\"cc-2\",\"action_type\":\"$a\",\"user_id\":\"u$i\"}" "$BASE/action" >"$T_DIR/cc-a$i.status" 2>/dev/null &
	pids="$pids $!"
done
wait $pids
is "$(cat "$T_DIR"/cc-a*.status | tr -d '\n' | sed 's/200//g')" "" "10 concurrent POST /action all answer 200"
is "$(for i in $(seq 1 10); do jq -r .activity.version "$T_DIR/cc-a$i.body"; done | sort -n | paste -sd,)" "$(seq 2 11 | paste -sd,)" \
	"their answers carry versions 2..11, each once"
is "$(for i in $(seq 1 10); do jq -r .action.action_id "$T_DIR/cc-a$i.body"; done | sort -u | grep -vc '^null$')" 10 "10 distinct action ids"
http GET /api/v1/activities/cc-2/events
is "$(jqr '[.events[].version] | sort | map(tostring) | join(",")')" "$(seq 1 11 | paste -sd,)" \
	"history versions are 1..11: strictly increasing, no gaps, no duplicates"
is "$(sql "SELECT count(*) || '/' || max(version) FROM activities a JOIN actions x USING (tenant_id, capsule_id) WHERE a.tenant_id = 'default' AND a.capsule_id = 'cc-2'")" "10/11" \
	"PostgreSQL: 10 actions, version 11"

# ============================================================================
group "cache coherence under concurrent writers (capsule id coh-1)"
create coh-1 >/dev/null
COH_KEY="cg:{default}:activity:coh-1"
COH_STOP="$T_DIR/coh-stop"
rm -f "$COH_STOP"
# writer N: 10 updates; after each answer, a GET; records "answered_version got_version".
writer() {
	local n=$1 j v g
	for j in $(seq 1 10); do
		v=$(curl -sS -X PUT "${ctype[@]}" -H "Authorization: Bearer $T_OP" \
			--data-binary "{\"capsule_id\":\"coh-1\",\"metadata\":{\"w$n\":$j}}" "$BASE/update" | jq -r .activity.version)
		g=$(curl -sS -H "Authorization: Bearer $T_OP" "$BASE/activity/coh-1" | jq -r .activity.version)
		echo "$v $g"
	done >"$T_DIR/coh-w$n"
}
# Meanwhile the cache entry keeps being deleted, and readers keep missing
# (each miss stores what it read from PostgreSQL).
deleter() {
	while [ ! -e "$COH_STOP" ]; do
		redis-cli -p "$REDIS_PORT" -r 20 -i 0.005 DEL "$COH_KEY" >/dev/null
	done
}
reader() {
	while [ ! -e "$COH_STOP" ]; do
		curl -sS -o /dev/null -H "Authorization: Bearer $T_OP" "$BASE/activity/coh-1"
	done
}
deleter &
bg="$!"
reader &
bg="$bg $!"
reader &
bg="$bg $!"
pids=""
for n in 1 2 3 4; do
	writer "$n" &
	pids="$pids $!"
done
wait $pids
touch "$COH_STOP"
wait $bg
cat "$T_DIR"/coh-w? >"$T_DIR/coh-all"
is "$(wc -l <"$T_DIR/coh-all")/$(awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/' "$T_DIR/coh-all" | wc -l)" "40/40" \
	"4 writers x 10 updates, each followed by a GET, all answered with versions"
is "$(awk '$2 < $1' "$T_DIR/coh-all" | head -n 5 | paste -sd';')" "" \
	"every GET after a writer's answer saw at least the version that writer was answered (cache key deleted, readers missing, all along)"
is "$(cut -d' ' -f1 "$T_DIR/coh-all" | sort -n | paste -sd,)" "$(seq 2 41 | paste -sd,)" "the writers were answered versions 2..41, each once"
http GET /activity/coh-1
is "$(jqr .activity.version)/$(jqr '.activity.metadata | keys | join(",")')" "41/w1,w2,w3,w4" "the final read shows version 41 and every writer's key"
is "$(redis-cli -p "$REDIS_PORT" GET "$COH_KEY" | jq -r .version)" 41 "the cache entry holds version 41"
# A stale entry planted by hand is never served over a newer write.
redis-cli -p "$REDIS_PORT" SET "$COH_KEY" "$(redis-cli -p "$REDIS_PORT" GET "$COH_KEY" | jq -c '.version = 1 | .title = "stale"')" >/dev/null
update coh-1 '.title = "fresh"'
is "$H_STATUS/$(jqr .activity.version)" 200/42 "an update over a stale cached entry answers version 42"
http GET /activity/coh-1
is "$(jqr '.activity | [(.version | tostring), .title] | join(",")')" "42,fresh" "and the next read shows it, not the stale entry"
# The other half of the rule, made deterministic: a store never replaces a
# NEWER cached entry (a slow writer or reader finishing late cannot roll the
# cache back). A planted entry 100 versions ahead must survive an update.
redis-cli -p "$REDIS_PORT" SET "$COH_KEY" "$(redis-cli -p "$REDIS_PORT" GET "$COH_KEY" | jq -c '.version = 142 | .title = "planted newer"')" >/dev/null
update coh-1 '.title = "older than the cache"'
is "$H_STATUS/$(jqr .activity.version)" 200/43 "an update under a planted newer entry answers version 43"
is "$(redis-cli -p "$REDIS_PORT" GET "$COH_KEY" | jq -r '[(.version | tostring), .title] | join(",")')" "142,planted newer" \
	"the cache store did not replace the newer entry (conditional on version)"
redis-cli -p "$REDIS_PORT" DEL "$COH_KEY" >/dev/null
http GET /activity/coh-1
is "$(jqr '.activity | [(.version | tostring), .title] | join(",")')" "43,older than the cache" "once it is gone, reads show PostgreSQL's version 43"

# ============================================================================
group "cross-tenant: acme vs globex (capsule ids xt-*)"
as "$T_ACME_PUB"
create xt-acme-1 '.category = "xt-cat" | .user_id = "xt-user"' >/dev/null
is "$H_STATUS" 201 "acme creates xt-acme-1"
ACME_ROW=$(row acme xt-acme-1)
as "$T_GLOBEX_OP"
update xt-acme-1 '.title = "taken over"'
is "$H_STATUS/$(jqr .error.code)" "404/not_found" "globex operator cannot update acme's activity (404)"
update xt-acme-1 '.state = "resolved"'
is "$H_STATUS" 404 "globex operator cannot resolve acme's activity (404)"
act xt-acme-1 dismiss
is "$H_STATUS/$(jqr .error.code)" "404/not_found" "globex operator cannot act on acme's activity (404)"
http GET /api/v1/activities/xt-acme-1/events
is "$H_STATUS" 404 "globex cannot read acme's history (404)"
as "$T_GLOBEX_PUB"
jreq POST /api/v1/devices "{\"device_token\":\"$(openssl rand -hex 32)\",\"platform\":\"ios\"}"
GDEV=$(jqr .device.device_id)
jreq POST /api/v1/activities/xt-acme-1/live-activity-tokens "{\"device_id\":${GDEV:-0},\"push_token\":\"$(openssl rand -hex 32)\"}"
is "$H_STATUS" 404 "globex cannot attach a Live Activity token to acme's activity (404)"
is "$(row acme xt-acme-1)" "$ACME_ROW" "acme's activity is unchanged (state, version, updated_at, events, actions)"
is "$(sql "SELECT count(*) FROM live_activity_tokens WHERE capsule_id = 'xt-acme-1'")" 0 "no Live Activity token was attached"
create xt-globex-1 '.category = "xt-cat" | .user_id = "xt-user"' >/dev/null
as "$T_GLOBEX_VIEW"
http GET "/activities?limit=500"
is "$H_STATUS/$(jqr '[.activities[] | select(.capsule_id | startswith("xt-acme"))] | length')" "200/0" \
	"GET /activities as globex lists none of acme's"
is "$(jqr .total)/$(jqr '.activities | length')" "$(sql "SELECT count(*) FROM activities WHERE tenant_id = 'globex'")/$(sql "SELECT least(500, count(*)) FROM activities WHERE tenant_id = 'globex'")" \
	"globex's total is globex's count"
http GET "/activities?category=xt-cat&user_id=xt-user"
is "$(jqr '[.activities[].capsule_id] | join(",")')/$(jqr .total)" "xt-globex-1/1" "filters matching both tenants' rows list only globex's"
http GET /statistics
is "$(jqr '[.total_activities, .total_actions] | map(tostring) | join(",")')" \
	"$(sql "SELECT (SELECT count(*) FROM activities WHERE tenant_id = 'globex') || ',' || (SELECT count(*) FROM actions WHERE tenant_id = 'globex')")" \
	"GET /statistics as globex counts only globex's activities and actions"
as "$T_ACME_OP"
http GET /api/v1/activities/xt-acme-1/events
is "$H_STATUS/$(jqr '.events | length')" "200/1" "acme reads its own history"
http GET /activity/xt-globex-1
is "$H_STATUS" 404 "acme cannot read globex's activity"
as "$T_PUB"

# ============================================================================
group "roles: viewer, operator (capsule ids role-*)"
create role-1 >/dev/null
as "$T_VIEW"
update role-1 '.title = "viewer"' -H 'X-Request-ID: api-role-1'
is "$H_STATUS/$(jqr .error.code)" "403/forbidden" "viewer cannot PUT /update (403)"
act role-1 inspect '.' -H 'X-Request-ID: api-role-2'
is "$H_STATUS/$(jqr .error.code)" "403/forbidden" "viewer cannot POST /action (403)"
is "$(row default role-1 | cut -d/ -f1,2)" "active/1" "the viewer changed nothing"
http GET "/activities?limit=1"
is "$H_STATUS" 200 "viewer can GET /activities"
http GET /statistics
is "$H_STATUS" 200 "viewer can GET /statistics"
http GET /api/v1/activities/role-1/events
is "$H_STATUS" 200 "viewer can read history"
as "$T_OP"
update role-1 '.title = "operator"' -H 'X-Request-ID: api-role-3'
is "$H_STATUS" 200 "operator can PUT /update"
act role-1 inspect '.' -H 'X-Request-ID: api-role-4'
is "$H_STATUS" 200 "operator can POST /action"
create role-2
is "$H_STATUS" 403 "operator cannot create (403)"
as "$T_PUB"
update role-1 '.title = "publisher"' -H 'X-Request-ID: api-role-5'
is "$H_STATUS/$(jqr .activity.version)" "200/4" "publisher can update too (roles are a hierarchy)"
is "$(sql "SELECT string_agg(action || ':' || outcome || ':' || status, ',' ORDER BY request_id) FROM audit_log WHERE tenant_id = 'default' AND request_id LIKE 'api-role-%'")" \
	"activity.update:denied:403,action.create:denied:403,activity.update:success:200,action.create:success:200,activity.update:success:200" \
	"audit: the denied and the allowed update and action are recorded"

# ============================================================================
group "503 while PostgreSQL is down (capsule ids pg-*); last: it restarts the database"
create pg-1 >/dev/null
redis-cli -p "$REDIS_PORT" DEL "cg:{default}:activity:pg-1" >/dev/null
stack_stop_pg
is "$(sql "SELECT 1" >/dev/null 2>&1 && echo up || echo down)" down "PostgreSQL is stopped"
create pg-2
err_shape 503 service_unavailable "POST /create-activity answers 503 service_unavailable"
http GET /activity/pg-1
err_shape 503 service_unavailable "GET /activity (not cached) answers 503"
update pg-1 '.title = "x"'
err_shape 503 service_unavailable "PUT /update answers 503"
act pg-1 inspect
err_shape 503 service_unavailable "POST /action answers 503"
http GET /activities
err_shape 503 service_unavailable "GET /activities answers 503"
http GET /health
is "$H_STATUS/$(jqr '[.status, .database] | join(",")')" "503/unhealthy,disconnected" "GET /health answers 503 unhealthy, database disconnected"
http GET /ready
is "$H_STATUS" 503 "GET /ready answers 503"
stack_start_pg >/dev/null 2>&1
t_result $? "PostgreSQL starts again on the same port ($PG_PORT)"
health_ok() { curl -sS "$BASE/health" | jq -e '.status != "unhealthy"' >/dev/null; }
wait_for 15 health_ok
t_result $? "/health recovers"
bad=""
for i in 1 2 3 4 5 6 7 8; do
	create "pg-back-$i" >/dev/null
	[ "$H_STATUS" = 201 ] || bad="$bad $i:$H_STATUS"
	http GET /activity/pg-1
	[ "$H_STATUS" = 200 ] || bad="$bad get$i:$H_STATUS"
done
is "${bad# }" "" "after recovery every request succeeds (8 creates and 8 reads over $STACK_FCGI_CHILDREN processes)"
update pg-1 '.title = "after"'
is "$H_STATUS/$(jqr .activity.version)" "200/2" "an update after recovery answers version 2 (nothing was written while down)"
http GET /health
is "$H_STATUS/$(jqr .database)" "200/connected" "/health: database connected again"

group "done"
stack_stop fcgi
for log in fcgi; do
	if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$STACK_DIR/$log.log" 2>/dev/null; then
		t_result 1 "no sanitizer report in $log.log"
		grep -E -A5 'ERROR: |runtime error:' "$STACK_DIR/$log.log" | head -n 30 | sed 's/^/# /'
	else
		t_result 0 "no sanitizer report in $log.log"
	fi
done

t_done

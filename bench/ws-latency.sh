#!/usr/bin/env bash
# ws-latency.sh: how long after the REST answer a WebSocket client has the event.
#
# Starts a whole stack on 127.0.0.1 (tests/stack.sh), connects one client through
# lighttpd, creates N activities one after another with curl, and compares each
# REST answer time (curl start + time_total) with the arrival time of its
# activity_created message. Prints median, p95 and max in milliseconds.
#   usage: bench/ws-latency.sh [N] (default 200); BUILD_DIR defaults to _build/plain
set -u
N=${1:-200}
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC_DIR/_build/plain}
STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/capsule-bench.XXXXXX")
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"
trap 'stack_down; stack_remove_pg; rm -rf "$STACK_DIR"' EXIT
STACK_LOG_LEVEL=warn stack_up_retry 2>/dev/null || { echo "stack did not start" >&2; exit 1; }

AUTH="Authorization: Bearer $(bearer_token bench-publisher default publisher)"
tok=$(curl -s -H "$AUTH" "http://127.0.0.1:$HTTP_PORT/ws/token?user_id=bench_user" | jq -r .token)
"$BUILD_DIR/tests/tools/ws-client" --url "ws://127.0.0.1:$HTTP_PORT/ws?token=$tok" --timestamps \
	--count $((N + 1)) --timeout 600 >"$STACK_DIR/ws.out" 2>&1 &
client=$!
for i in $(seq 1 50); do grep -q authenticated "$STACK_DIR/ws.out" && break; sleep 0.1; done

for i in $(seq 1 "$N"); do
	t0=$(date +%s%6N)
	tt=$(curl -s -o /dev/null -w '%{time_total}' -X POST "http://127.0.0.1:$HTTP_PORT/create-activity" \
		-H 'Content-Type: application/json' -H "$AUTH" \
		-d "{\"capsule_id\":\"bench_$i\",\"title\":\"bench $i\",\"user_id\":\"bench_user\"}")
	echo "bench_$i $(awk -v t0="$t0" -v tt="$tt" 'BEGIN { printf "%.0f", t0 + tt * 1000000 }')"
done >"$STACK_DIR/answers"
wait "$client"

grep activity_created "$STACK_DIR/ws.out" |
	awk '{ ts = $1; sub(/^[0-9]+ /, ""); print ts, $0 }' |
	while read -r ts msg; do
		printf '%s %s\n' "$(printf '%s' "$msg" | jq -r .activity.capsule_id)" "$ts"
	done | sort >"$STACK_DIR/arrivals"
sort "$STACK_DIR/answers" | join - "$STACK_DIR/arrivals" |
	awk '{ print ($3 - $2) / 1000.0 }' | sort -n >"$STACK_DIR/lat"
n=$(wc -l <"$STACK_DIR/lat")
awk -v n="$n" 'NR == int(n * 0.5) + 1 { med = $1 } NR == int(n * 0.95) + 1 { p95 = $1 } { max = $1 }
	END { printf "events: %d  after REST answer (ms): median %.2f  p95 %.2f  max %.2f\n", n, med, p95, max }' "$STACK_DIR/lat"

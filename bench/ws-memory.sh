#!/usr/bin/env bash
# ws-memory.sh: capsule-wsd's memory per idle authenticated WebSocket connection.
#
# Starts a whole stack on 127.0.0.1 (tests/stack.sh), reads capsule-wsd's resident set
# (VmRSS), opens N connections straight to its port with one user's token
# (tests/tools/ws-hold), reads VmRSS again while they are held, publishes one tenant-wide
# event that every connection receives, and prints the memory per connection.
#   usage: bench/ws-memory.sh [N] (default 5000; the fd limit of both processes bounds it)
#   BUILD_DIR defaults to _build/plain
set -u
N=${1:-5000}
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC_DIR/_build/plain}
STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/capsule-bench.XXXXXX")
. "$SRC_DIR/tests/stack.sh"
. "$SRC_DIR/tests/integration/lib.sh"
trap 'stack_down; stack_remove_pg; rm -rf "$STACK_DIR"' EXIT
# One user holds every connection: lift the per-user and per-address limits.
export WS_MAX_CONNECTIONS=$((N + 100)) WS_MAX_CONNECTIONS_PER_USER=$((N + 100))
export WS_CONNECT_ATTEMPTS_PER_IP_PER_MINUTE=$((N * 10))
STACK_LOG_LEVEL=warn stack_up_retry 2>/dev/null || { echo "stack did not start" >&2; exit 1; }

wsd_pid=$(pgrep -f "capsule-wsd .*$STACK_DIR" | head -n 1)
[ -n "$wsd_pid" ] || { echo "capsule-wsd not found" >&2; exit 1; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$wsd_pid/status"; }

AUTH="Authorization: Bearer $(bearer_token bench-publisher default publisher)"
tok=$(curl -s -H "$AUTH" "http://127.0.0.1:$HTTP_PORT/ws/token?user_id=bench_user" | jq -r .token)
before=$(rss)
"$BUILD_DIR/tests/tools/ws-hold" --url "ws://127.0.0.1:$WS_PORT/ws?token=$tok" --connections "$N" \
	--hold 30 --rate 1000 --timeout 300 >"$STACK_DIR/hold.out" 2>&1 &
holder=$!
for _ in $(seq 1 600); do grep -q '^authenticated' "$STACK_DIR/hold.out" && break; sleep 0.5; done
grep -q '^authenticated' "$STACK_DIR/hold.out" || { cat "$STACK_DIR/hold.out" >&2; exit 1; }
sleep 2
held=$(rss)
curl -s -o /dev/null -X POST "http://127.0.0.1:$HTTP_PORT/api/v1/events" -H "$AUTH" \
	-H 'Content-Type: application/json' -d '{"type":"gateway.config.updated","data":{"bench":true}}'
sleep 2
after_event=$(rss)
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
echo "$(head -n 1 "$STACK_DIR/hold.out")"
awk -v n="$N" -v b="$before" -v h="$held" -v e="$after_event" 'BEGIN {
	printf "capsule-wsd VmRSS: %d kB idle, %d kB with %d connections, %d kB after one event to all\n", b, h, n, e
	printf "per connection: %.1f kB held, %.1f kB after the event\n", (h - b) / n, (e - b) / n }'

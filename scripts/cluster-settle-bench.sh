#!/usr/bin/env bash
# Cluster settlement benchmark: NODES release nodes (default 3) on loopback,
# each with 2 cores, forming one cluster in fresh temporary directories, with
# RTGS cycles on, driven end to end by `settle-loadgen --settle` spread over
# every node, all on the same box.
#
#   scripts/cluster-settle-bench.sh BATCH CLIENTS [DURATION] [RATE] [NODES]
#
# Prints the load generator's report (intake, then settled tx/s end to end
# and cycle latency close → applied p50/p99), then restarts the nodes on
# their data with cycles off and prints `settle status --digest` (leaders,
# logs, and whether every replica's state is the same; the exit status is
# non-zero unless they converged). RATE
# (tx/s, total) switches to open loop; without it the clients run closed
# loop and settlement trails intake.
#
# Environment:
#   SETTLE_RTGS_CYCLE_MS  period of the RTGS cycles (default 200, the node's)
#   SETTLE_TRIGGER        how often the load generator asks for T0/T1/T2
#                         cycles through a node (default 1s; `off`: RTGS only)
#   SETTLE_LIQUIDITY      prefunding multiplier (default 100: at 1 the
#                         workload drains home currencies in seconds and
#                         settlement waits for funds)
#   SETTLE_CORES, SETTLE_NODE_ARGS, SETTLE_KEEP, SETTLE_LIVE as in
#   scripts/cluster-bench.sh.
# Cycles run on the control group's leader; the load generator's cycle
# requests go through the first node (forwarded to that leader) and the
# cycles are read from every node's replica, each cycle counted once.
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:?batch}
clients=${2:?clients}
duration=${3:-10s}
rate=${4:-}
nodes=${5:-3}
participants=32
cargo build --release -q --bins
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${SETTLE_KEEP:-}" ] && cp "$dir"/node-*.log "$SETTLE_KEEP"/ ; rm -rf "$dir"' EXIT
. scripts/cluster-lib.sh
./target/release/settle-loadgen participants --count "$participants" \
    --liquidity "${SETTLE_LIQUIDITY:-100}" > "$dir/participants.json"
pick_addresses
start_nodes "" --rtgs-cycle-ms "${SETTLE_RTGS_CYCLE_MS:-200}" ${SETTLE_NODE_ARGS:-}
wait_balanced
args=(--duration "$duration" --clients "$clients" --batch "$batch" --participants "$participants"
    --settle --settle-trigger "${SETTLE_TRIGGER:-1s}")
for i in $(seq 1 "$nodes"); do args+=(--target "${listen[$i]}"); done
[ -n "$rate" ] && args+=(--rate "$rate")
./target/release/settle-loadgen "${args[@]}" 2>"${SETTLE_LIVE:-/dev/null}"
# Digests are compared at an index every replica applied (cheap: read from
# a ring), but "converged" also wants equal applied indexes, and RTGS
# cycles keep running while anything waits (the optimiser defers small
# payments whose wire costs more than waiting). Restart the nodes on their
# data with cycles off: the report then compares the durable state, and
# the restart itself (replaying logs) is checked too.
for i in $(seq 1 "$nodes"); do kill "${pids[$i]}"; done
for i in $(seq 1 "$nodes"); do wait "${pids[$i]}" || true; done
start_nodes .restart --rtgs-cycle-ms 0 \
    --window-schedule T0=off --window-schedule T1=off --window-schedule T2=off \
    --heartbeat-ms 200 --election-timeout-ms 3000-6000
# Quiet: every replica has applied its whole log, and nothing moved in a second.
indexes() { ./target/release/settle status --target "$first_peer" 2>/dev/null \
    | awk '/^  node/ { print $2, $7, $11; if ($7 != $11) busy = 1 } END { if (busy) print "busy" }' \
    || true; }
quiet=no
last=""
for _ in $(seq 1 120); do
    now=$(indexes)
    if [ -n "$now" ] && [ "$now" = "$last" ] && ! echo "$now" | grep -q busy; then
        quiet=yes
        break
    fi
    last=$now
    sleep 1
done
[ "$quiet" = yes ] || echo "warning: the cluster did not go quiet after the restart" >&2
echo "restarted on the same data with cycles off; replicas:"
./target/release/settle status --digest --timeout 60s --target "$first_peer"

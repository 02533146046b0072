#!/usr/bin/env bash
# Cluster intake benchmark: NODES release nodes (default 3) on loopback, each
# with 2 cores, forming one cluster in fresh temporary directories, driven by
# the release load generator spread over every node, all on the same box.
#
#   scripts/cluster-bench.sh BATCH CLIENTS [DURATION] [NODES] [RATE]
#
# Prints the load generator's report, then `settle status` (leaders, logs,
# lag). BIN_DIR and SECURITY as in scripts/cluster-lib.sh. SETTLE_NODE_ARGS adds `settle start` flags (e.g. election timeouts).
# An acknowledgement means durable on a majority. Settlement cycles
# are off: this measures intake and replication. Failover times come from
#   cargo test --release -p settle-tests --test cluster_failover -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:?batch}
clients=${2:?clients}
duration=${3:-10s}
nodes=${4:-3}
rate=${5:-}
participants=32
[ -n "${BIN_DIR:-}" ] || cargo build --release -q --bins
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${SETTLE_KEEP:-}" ] && cp "$dir"/node-*.log "$SETTLE_KEEP"/ ; rm -rf "$dir"' EXIT
. scripts/cluster-lib.sh
"${BIN_DIR:-./target/release}/settle-loadgen" participants --count "$participants" > "$dir/participants.json"
pick_addresses
start_nodes "" \
    --rtgs-cycle-ms 0 --window-schedule T0=off --window-schedule T1=off --window-schedule T2=off \
    ${SETTLE_NODE_ARGS:-}
wait_balanced
args=(--duration "$duration" --clients "$clients" --batch "$batch" --participants "$participants" "${tool_security[@]}")
for i in $(seq 1 "$nodes"); do args+=(--target "${listen[$i]}"); done
[ -n "$rate" ] && args+=(--rate "$rate")
# LOADGEN_FLAGS: more flags for the load generator (e.g. --scattered-ids).
# shellcheck disable=SC2206
args+=(${LOADGEN_FLAGS:-})
"$bin/settle-loadgen" "${args[@]}" 2>"${SETTLE_LIVE:-/dev/null}"
"$bin/settle" status --target "$first_peer" "${tool_security[@]}"

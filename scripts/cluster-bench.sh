#!/usr/bin/env bash
# Cluster intake benchmark: NODES release nodes (default 3) on loopback, each
# with 2 cores, forming one cluster in fresh temporary directories, driven by
# the release load generator spread over every node, all on the same box.
#
#   scripts/cluster-bench.sh BATCH CLIENTS [DURATION] [NODES] [RATE]
#
# Prints the load generator's report, then `settle status` (leaders, logs,
# lag). SETTLE_NODE_ARGS adds `settle start` flags (e.g. election timeouts).
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
cargo build --release -q --bins
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${SETTLE_KEEP:-}" ] && cp "$dir"/node-*.log "$SETTLE_KEEP"/ ; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
./target/release/settle-loadgen participants --count "$participants" > "$dir/participants.json"
peers=""
declare -a listen
for i in $(seq 1 "$nodes"); do
    peers="$peers${peers:+,}$i=127.0.0.1:$(free_port)"
    listen[$i]="127.0.0.1:$(free_port)"
done
for i in $(seq 1 "$nodes"); do
    ./target/release/settle start --node-id "$i" --peers "$peers" --cores "${SETTLE_CORES:-2}" \
        --data-dir "$dir/node-$i" --listen "${listen[$i]}" \
        --participants "$dir/participants.json" \
        --rtgs-cycle-ms 0 --window-schedule T0=off --window-schedule T1=off --window-schedule T2=off \
        ${SETTLE_NODE_ARGS:-} 2> "$dir/node-$i.log" &
done
for i in $(seq 1 "$nodes"); do
    for _ in $(seq 1 300); do grep -q "listening on" "$dir/node-$i.log" && break; sleep 0.1; done
    grep -q "listening on" "$dir/node-$i.log" || { cat "$dir/node-$i.log"; exit 1; }
done
# Leaders move to their preferred members (group g on member g mod N) a few
# seconds after start; measure the steady state, not those hand-overs.
first_peer="$(echo "$peers" | cut -d, -f1 | cut -d= -f2)"
for _ in $(seq 1 60); do
    status=$(./target/release/settle status --target "$first_peer" 2>/dev/null || true)
    balanced=yes
    for g in $(seq 0 4); do
        echo "$status" | grep -q "^group $g .*leader $((g % nodes + 1)) " || balanced=no
    done
    [ "$balanced" = yes ] && break
    sleep 0.5
done
[ "$balanced" = yes ] || echo "warning: leaders not balanced before the run" >&2
args=(--duration "$duration" --clients "$clients" --batch "$batch" --participants "$participants")
for i in $(seq 1 "$nodes"); do args+=(--target "${listen[$i]}"); done
[ -n "$rate" ] && args+=(--rate "$rate")
./target/release/settle-loadgen "${args[@]}" 2>"${SETTLE_LIVE:-/dev/null}"
./target/release/settle status --target "$first_peer"

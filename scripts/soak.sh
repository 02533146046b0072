#!/usr/bin/env bash
# One-node soak: a release node with cycles on, an open-loop load for
# MINUTES, and per minute the figures that say whether the node holds:
# answered and created tx/s, request p50/p99/max, the node's RSS, and the
# bytes of its data directory (log + snapshots + state store).
#
#   scripts/soak.sh [MINUTES] [RATE] [BATCH] [MEMORY_BUDGET]
#
# Defaults: 10 minutes, 300000 tx/s, batch 1000, the node's default budget.
# The load runs as one load generator per minute (same workload, a fresh id
# space each minute), so a minute's figures are its own. BIN_DIR=dir runs
# the binaries in dir instead of building ./target/release. SETTLE=1 drives
# T0/T1/T2 cycles too and reports the settled rate per minute. SECURITY=tls
# (default: the node's own certificates), tls+at-rest or insecure, as in
# scripts/bench-intake.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node-lib.sh
minutes=${1:-10}
rate=${2:-300000}
batch=${3:-1000}
budget=${4:-}
participants=32
clients=${CLIENTS:-16}
if [ -z "${BIN_DIR:-}" ]; then
    cargo build --release -q --bins
    BIN_DIR=./target/release
fi
dir=$(mktemp -d -p "${SOAK_DIR:-/tmp}")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(free_port)
"$BIN_DIR/settle-loadgen" participants --count "$participants" --liquidity 1000 > "$dir/participants.json"
security_flags "$dir"
# Every window cycles every second (the day's cut-offs would leave T0-T2
# payments pending all soak long); NODE_FLAGS replaces this.
read -r -a node_flags <<< "${NODE_FLAGS:---window-schedule T0=every:1s --window-schedule T1=every:1s --window-schedule T2=every:1s}"
node_args=(start --data-dir "$dir/data" --listen "127.0.0.1:$port" --participants "$dir/participants.json" "${node_security[@]}" "${node_flags[@]}")
[ -n "$budget" ] && node_args+=(--memory-budget "$budget")
"$BIN_DIR/settle" "${node_args[@]}" 2> "$dir/node.log" &
node=$!
wait_listening "$dir/node.log"
printf '%-6s %10s %10s %9s %9s %9s %9s %9s %10s\n' minute "answered/s" "created/s" "p50_ms" "p99_ms" "max_ms" "rss_MiB" "disk_MiB" "settled/s"
for m in $(seq 1 "$minutes"); do
    args=(--target "127.0.0.1:$port" --duration 60s --clients "$clients" --batch "$batch"
          --participants "$participants" --rate "$rate" --json "$dir/m$m.json" "${client_security[@]}")
    [ -n "${SETTLE:-}" ] && args+=(--settle)
    "$BIN_DIR/settle-loadgen" "${args[@]}" > "$dir/m$m.txt" 2>&1 || true
    rss=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$node/status")
    disk=$(du -sm "$dir/data" | cut -f1)
    settled=$(grep -oE '= [0-9]+ settled tx/s' "$dir/m$m.txt" | grep -oE '[0-9]+' | head -1 || true)
    python3 - "$dir/m$m.json" "$m" "$rss" "$disk" "${settled:--}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r = r.get("load", r)  # with SETTLE=1: {"load": ..., "settle": ...}
l = r["latency_us"]
print(f'{sys.argv[2]:<6} {r["transactions_per_s"]:>10.0f} {r["created_per_s"]:>10.0f} '
      f'{l["p50"]/1000:>9.2f} {l["p99"]/1000:>9.2f} {l["max"]/1000:>9.1f} '
      f'{sys.argv[3]:>9} {sys.argv[4]:>9} {sys.argv[5]:>10}')
PY
done
kill -0 "$node" || { echo "the node died"; tail -20 "$dir/node.log"; exit 1; }

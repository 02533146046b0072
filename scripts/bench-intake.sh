#!/usr/bin/env bash
# One-node intake benchmark: a release node in a fresh temporary directory,
# driven by the release load generator on the same box.
#
#   scripts/bench-intake.sh BATCH CLIENTS [DURATION] [RATE]
#
# Prints the load generator's report. RATE (tx/s) switches to open loop.
# BIN_DIR=dir runs the binaries in dir instead of building ./target/release
# (for interleaved A/B runs of two builds). SECURITY=tls (default: the node's
# own, TLS 1.3 on the client port, the load generator with the admin's
# certificate), tls+at-rest (and the Raft log sealed with AES-256-GCM), or
# insecure (plaintext) measures what security costs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node-lib.sh
batch=${1:?batch}
clients=${2:?clients}
duration=${3:-10s}
rate=${4:-}
participants=32
if [ -z "${BIN_DIR:-}" ]; then
    cargo build --release -q --bins
    BIN_DIR=./target/release
fi
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(free_port)
"$BIN_DIR/settle-loadgen" participants --count "$participants" > "$dir/participants.json"
security_flags "$dir"
"$BIN_DIR/settle" start --data-dir "$dir/data" --listen "127.0.0.1:$port" \
    --participants "$dir/participants.json" "${node_security[@]}" 2> "$dir/node.log" &
wait_listening "$dir/node.log"
args=(--target "127.0.0.1:$port" --duration "$duration" --clients "$clients" --batch "$batch" --participants "$participants" "${client_security[@]}")
[ -n "$rate" ] && args+=(--rate "$rate")
"$BIN_DIR/settle-loadgen" "${args[@]}" 2>/dev/null

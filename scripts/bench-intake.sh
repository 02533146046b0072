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
# insecure (plaintext) measures what security costs. SCRAPE=1 also starts the
# node's HTTP port and scrapes GET /metrics every second while the load runs
# (as Prometheus would; the admin's token over TLS, plain with insecure).
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
http=()
if [ -n "${SCRAPE:-}" ]; then
    http_port=$(free_port)
    http=(--http "127.0.0.1:$http_port")
fi
"$BIN_DIR/settle" start --data-dir "$dir/data" --listen "127.0.0.1:$port" \
    --participants "$dir/participants.json" "${node_security[@]}" "${http[@]}" 2> "$dir/node.log" &
wait_listening "$dir/node.log"
if [ -n "${SCRAPE:-}" ]; then
    if [ "${SECURITY:-tls}" = insecure ] || [ "${SECURITY:-tls}" = legacy ]; then
        scrape=(curl -sf "http://127.0.0.1:$http_port/metrics")
    else
        scrape=(curl -sf --cacert "$dir/data/tls/ca.pem" -H "Authorization: Bearer $(cat "$dir/data/tls/admin.token")" "https://127.0.0.1:$http_port/metrics")
    fi
    while true; do "${scrape[@]}" > /dev/null || echo "scrape failed" >&2; sleep 1; done &
fi
args=(--target "127.0.0.1:$port" --duration "$duration" --clients "$clients" --batch "$batch" --participants "$participants" "${client_security[@]}")
[ -n "$rate" ] && args+=(--rate "$rate")
# LOADGEN_FLAGS: more flags for the load generator (e.g. --scattered-ids).
# shellcheck disable=SC2206
args+=(${LOADGEN_FLAGS:-})
"$BIN_DIR/settle-loadgen" "${args[@]}" 2>/dev/null

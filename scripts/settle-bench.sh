#!/usr/bin/env bash
# One node with settlement cycles: the load generator drives intake and
# cycles (--settle: RTGS every 200 ms, T0/T1/T2 every second), 16 clients x
# 1,000, participants funded with --liquidity 100; prints the load
# generator's report (settled tx/s end to end, cycle latency, savings) and
# the node's RSS. With RUST_LOG=settle_node::cycle::coordinator=debug the
# node's per-step cycle times ("cycle steps") are kept in /tmp/last-node.log.
#
#   scripts/settle-bench.sh BIN_DIR DURATION [RATE]     # RATE: open loop; none: closed loop
#
# NODEFLAGS adds node flags (e.g. --insecure --solver-budget-ms 10),
# LGFLAGS load generator flags (--insecure with an insecure node), NOTLS=1
# for a build without TLS.
set -uo pipefail
bin=$1; dur=$2; rate=${3:-}
d=$(mktemp -d -p /tmp)
port=$((40000 + RANDOM % 20000))
"$bin/settle-loadgen" participants --count 32 --liquidity 100 > "$d/p.json"
# shellcheck disable=SC2086
"$bin/settle" start --data-dir "$d/data" --listen "127.0.0.1:$port" --cores 2 --participants "$d/p.json" ${NODEFLAGS:-} 2> "$d/node.log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$d/node.log" && break; sleep 0.1; done
r=(); [ -n "$rate" ] && r=(--rate "$rate")
tls=(); [ -z "${NOTLS:-}" ] && tls=(--tls-dir "$d/data/tls")
# shellcheck disable=SC2086
"$bin/settle-loadgen" --target "127.0.0.1:$port" --duration "$dur" --clients 16 --batch 1000 --participants 32 --settle "${r[@]}" "${tls[@]}" ${LGFLAGS:-} > "$d/lg.txt" 2>&1
grep -vE '^\s*$' "$d/lg.txt" | tail -30
echo "RSS $(awk '/VmRSS/ {print int($2/1024)}' "/proc/$pid/status") MiB"
kill "$pid"; wait "$pid" 2>/dev/null || true
cp "$d/node.log" /tmp/last-node.log
rm -rf "$d"

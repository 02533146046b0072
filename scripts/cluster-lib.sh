# Shared by the cluster benchmark scripts (sourced, not run): a loopback
# cluster of $nodes release nodes in $dir, with peers and client listeners
# on free ports. The caller sets `nodes`, `dir` and writes
# "$dir/participants.json" first.
#
# BIN_DIR=dir runs the binaries in dir (default ./target/release).
# SECURITY=tls (default: mutual TLS 1.3 on the peer links, TLS 1.3 and roles
# on the client ports), tls+at-rest (also the Raft logs and state stores
# sealed with AES-256-GCM, a fresh key in $dir) or insecure (plaintext,
# `--insecure` on every node and tool).
bin=${BIN_DIR:-./target/release}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Picks every member's peer and client address: sets `peers`, `listen[i]`
# and `first_peer`; makes the cluster's credentials in $dir/tls (the nodes
# get --tls-dir, the tools find them through SETTLE_TLS_DIR).
pick_addresses() {
    declare -g -a node_security tool_security
    node_security=(--tls-dir "$dir/tls")
    tool_security=()
    case "${SECURITY:-tls}" in
        tls) ;;
        tls+at-rest)
            [ -e "$dir/at-rest.key" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/at-rest.key"
            node_security+=(--encryption-key-file "$dir/at-rest.key") ;;
        insecure)
            node_security=(--insecure)
            tool_security=(--insecure) ;;
        *) echo "SECURITY=${SECURITY}: tls, tls+at-rest or insecure" >&2; exit 2 ;;
    esac
    if [ "${SECURITY:-tls}" != insecure ]; then
        [ -e "$dir/tls/ca.pem" ] || "$bin/settle" certs init "$dir/tls" --nodes "$nodes" > /dev/null
        export SETTLE_TLS_DIR="$dir/tls"
    fi
    peers=""
    declare -g -a listen
    for i in $(seq 1 "$nodes"); do
        peers="$peers${peers:+,}$i=127.0.0.1:$(free_port)"
        listen[$i]="127.0.0.1:$(free_port)"
    done
    first_peer="$(echo "$peers" | cut -d, -f1 | cut -d= -f2)"
}

# start_nodes LOG_SUFFIX FLAGS...: starts every node (pids in `pids[i]`,
# stderr in $dir/node-i<suffix>.log) and waits until each listens.
start_nodes() {
    local suffix=$1
    shift
    declare -g -a pids
    for i in $(seq 1 "$nodes"); do
        "$bin/settle" start --node-id "$i" --peers "$peers" --cores "${SETTLE_CORES:-2}" \
            --data-dir "$dir/node-$i" --listen "${listen[$i]}" \
            --participants "$dir/participants.json" "${node_security[@]}" "$@" 2> "$dir/node-$i$suffix.log" &
        pids[$i]=$!
    done
    for i in $(seq 1 "$nodes"); do
        for _ in $(seq 1 300); do grep -q "listening on" "$dir/node-$i$suffix.log" && break; sleep 0.1; done
        grep -q "listening on" "$dir/node-$i$suffix.log" || { cat "$dir/node-$i$suffix.log"; exit 1; }
    done
}

# Leaders move to their preferred members (group g on member g mod N) a few
# seconds after start; benchmarks measure the steady state, not those
# hand-overs, so they wait for it.
wait_balanced() {
    local balanced=no status
    for _ in $(seq 1 60); do
        status=$("$bin/settle" status --target "$first_peer" "${tool_security[@]}" 2>/dev/null || true)
        balanced=yes
        for g in $(seq 0 4); do
            echo "$status" | grep -q "^group $g .*leader $((g % nodes + 1)) " || balanced=no
        done
        [ "$balanced" = yes ] && return 0
        sleep 0.5
    done
    echo "warning: leaders not balanced before the run" >&2
}

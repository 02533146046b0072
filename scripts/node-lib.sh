# Shared by the one-node scripts (bench-intake.sh, soak.sh): source it.

# A free loopback port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Sets the arrays node_security (flags of `settle start`) and client_security
# (flags of the load generator) for SECURITY=tls (default: the node's own
# certificates in DIR/data/tls), tls+at-rest (also the log and stores sealed
# with a fresh key in DIR), insecure (plaintext) or legacy (no flags: a
# build from before TLS).
security_flags() {
    local dir=$1
    local security=${SECURITY:-tls}
    node_security=()
    client_security=(--tls-dir "$dir/data/tls")
    case "$security" in
        tls) ;;
        tls+at-rest)
            head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/at-rest.key"
            node_security=(--encryption-key-file "$dir/at-rest.key") ;;
        insecure)
            node_security=(--insecure)
            client_security=(--insecure) ;;
        legacy)
            # Builds from before TLS (plaintext, no security flags at all):
            # for A/B runs against them.
            node_security=()
            client_security=() ;;
        *) echo "SECURITY=$security: tls, tls+at-rest or insecure" >&2; exit 2 ;;
    esac
}

# Waits up to 20 s for the node logging to LOG to listen; shows the log and
# fails if it does not.
wait_listening() {
    local log=$1
    for _ in $(seq 1 200); do grep -q "listening on" "$log" && return 0; sleep 0.1; done
    cat "$log"
    exit 1
}

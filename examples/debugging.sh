#!/bin/sh
# Debugging: what would hold the proxy's shutdown right now?
# Usage: examples/debugging.sh POD [NAMESPACE]
set -eu
pod=${1:?usage: $0 POD [NAMESPACE]}
ns=${2:-default}

# Only TCP sockets count (/proc/net/tcp and tcp6): UDP and QUIC are not listed.
# Every socket, with the owner prestop-wait attributes it to and whether it
# would block the shutdown. Exit code: 0 nothing blocks, 1 something blocks.
kubectl exec -n "$ns" -c istio-proxy "$pod" -- prestop-wait check --all || true

# The same as JSON, for scripts (e.g. | jq).
kubectl exec -n "$ns" -c istio-proxy "$pod" -- prestop-wait check --json --all || true

# The verdict alone, with the defaults (add the flags of your hook to match it).
kubectl exec -n "$ns" -c istio-proxy "$pod" -- prestop-wait check

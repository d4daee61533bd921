#!/usr/bin/env bash
# Ack latency and RSS of agents held by a stateless front-end (findings
# through a 3-node JetStream cluster of nats-node processes, R3, fsync
# always) against the same agents held by one collector with direct
# ingest, back to back in one run, on loopback. docs/scale.md.
#
#   scripts/frontends-bench.sh [-n AGENTS] [-hold 30s] [-every 2s]
# needs: vigil-collector and loadgen built into $BIN (default /tmp/fe-bin).
set -euo pipefail
N=1000 HOLD=30s EVERY=2s BIN=${BIN:-/tmp/fe-bin}
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=$2; shift 2 ;; -hold) HOLD=$2; shift 2 ;; -every) EVERY=$2; shift 2 ;;
	*) echo "unknown $1" >&2; exit 2 ;;
	esac
done
W=$(mktemp -d /tmp/fe-bench.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
C="$BIN/vigil-collector"
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitadmin() { for _ in $(seq 600); do "$C" devices list --data "$1" --json >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "collector $1 not up" >&2; exit 1; }
waitlog() { for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "$1: no '$2'" >&2; exit 1; }

# A: direct ingest, one collector.
G=$(port); H=$(port)
"$C" serve --data "$W/direct" --grpc-listen 127.0.0.1:$G --http-listen 127.0.0.1:$H --log-level warn 2>"$W/direct.log" & pids+=($!); DPID=$!
waitadmin "$W/direct"
TOK=$("$C" token create --data "$W/direct" --group load --uses $((N + 10)))
"$BIN/loadgen" -addr 127.0.0.1:$G -token "$TOK" -agents "$N" -identities "$W/ids-direct" -collector-pid $DPID \
	-hold "$HOLD" -finding-every "$EVERY" -heartbeat 30s >"$W/direct.json"
kill $DPID; wait $DPID 2>/dev/null || true

# B: 3 nats-node, the store-owning collector, one front-end.
R=() U=()
for i in 1 2 3; do R+=(127.0.0.1:$(port)); U+=(nats://127.0.0.1:$(port)); done
ROUTES=$(IFS=,; echo "${R[*]}"); URLS=$(IFS=,; echo "${U[*]}")
for i in 0 1 2; do
	"$C" nats-node --data "$W/n$i" --name n$i --listen "${U[$i]#nats://}" --cluster vigil-bench \
		--cluster-listen "${R[$i]}" --routes "$ROUTES" --log-level warn 2>"$W/n$i.log" & pids+=($!)
done
G=$(port); H=$(port); F=$(port)
"$C" serve --data "$W/storer" --grpc-listen 127.0.0.1:$G --http-listen 127.0.0.1:$H --ingest jetstream --nats "$URLS" \
	--log-level warn 2>"$W/storer.log" & pids+=($!)
waitadmin "$W/storer"
mkdir -p "$W/fe/pki"; cp "$W/storer/pki/"{ca.pem,server.pem,server.key} "$W/fe/pki/"
"$C" frontend --data "$W/fe" --grpc-listen 127.0.0.1:$F --nats "$URLS" 2>"$W/fe.log" & pids+=($!); FPID=$!
waitlog "$W/fe.log" "stream front-end serving"
TOK=$("$C" token create --data "$W/storer" --group load --uses $((N + 10)))
"$BIN/loadgen" -addr 127.0.0.1:$F -enroll-addr 127.0.0.1:$G -token "$TOK" -agents "$N" -identities "$W/ids-fe" \
	-collector-pid $FPID -hold "$HOLD" -finding-every "$EVERY" -heartbeat 30s >"$W/frontend.json"

python3 - "$W/direct.json" "$W/frontend.json" <<'PY'
import json, sys
d, f = (json.load(open(p)) for p in sys.argv[1:3])
k = lambda r, n: r.get(n, 0)
print(f"{'':24}{'direct':>12}{'front-end':>12}{'ratio':>8}")
for name in ("ack_p50_ms", "ack_p99_ms", "collector_rss_held_mean_bytes", "collector_rss_per_agent_kb", "collector_cpu_percent_while_held"):
    a, b = k(d, name), k(f, name)
    print(f"{name:24.24}{a:12.1f}{b:12.1f}{(b / a if a else 0):8.2f}")
PY
echo "work dir $W"

#!/usr/bin/env bash
# Many agents across three stateless front-ends (findings through a 3-node
# JetStream cluster of nats-node processes, R3, fsync always) on loopback,
# then kill -9 of one front-end while they are held: RSS of every process,
# ack p50/p99, and how long the moved agents take to be welcomed by the
# others (loadgen -failover, as the agent's --stream-collectors). The
# issue-13 figure; docs/scale.md, docs/benchmarks.md.
#
#   scripts/frontends-scale.sh [-n 50000] [-hold 150s] [-kill-after 60s] [-every 30s] [-rate 100]
# needs: vigil-collector and loadgen built into $BIN (default /tmp/fe-bin).
set -euo pipefail
N=50000 HOLD=150s KILL_AFTER=60 EVERY=30s RATE=100 BIN=${BIN:-/tmp/fe-bin}
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=$2; shift 2 ;; -hold) HOLD=$2; shift 2 ;; -kill-after) KILL_AFTER=${2%s}; shift 2 ;;
	-every) EVERY=$2; shift 2 ;; -rate) RATE=$2; shift 2 ;;
	*) echo "unknown $1" >&2; exit 2 ;;
	esac
done
W=$(mktemp -d /tmp/fe-scale.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
C="$BIN/vigil-collector"
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitadmin() { for _ in $(seq 600); do "$C" devices list --data "$1" --json >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "collector $1 not up" >&2; exit 1; }
waitlog() { for _ in $(seq 6000); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "$1: no '$2'" >&2; exit 1; }
rssmb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo 0; }

R=() U=() NP=()
for i in 1 2 3; do R+=(127.0.0.1:$(port)); U+=(nats://127.0.0.1:$(port)); done
ROUTES=$(IFS=,; echo "${R[*]}"); URLS=$(IFS=,; echo "${U[*]}")
for i in 0 1 2; do
	"$C" nats-node --data "$W/n$i" --name n$i --listen "${U[$i]#nats://}" --cluster vigil-scale \
		--cluster-listen "${R[$i]}" --routes "$ROUTES" --log-level warn 2>"$W/n$i.log" & pids+=($!); NP+=($!)
done
G=$(port); H=$(port)
"$C" serve --data "$W/storer" --grpc-listen 127.0.0.1:$G --http-listen 127.0.0.1:$H --ingest jetstream --nats "$URLS" \
	--log-level warn 2>"$W/storer.log" & pids+=($!); SPID=$!
waitadmin "$W/storer"
F=() FP=()
for i in 0 1 2; do
	F+=(127.0.0.1:$(port))
	mkdir -p "$W/fe$i/pki"; cp "$W/storer/pki/"{ca.pem,server.pem,server.key} "$W/fe$i/pki/"
	"$C" frontend --data "$W/fe$i" --name fe$i --grpc-listen "${F[$i]}" --nats "$URLS" 2>"$W/fe$i.log" & pids+=($!); FP+=($!)
done
for i in 0 1 2; do waitlog "$W/fe$i.log" "stream front-end serving"; done
TOK=$("$C" token create --data "$W/storer" --group load --uses $((N + 30)))
LG=()
for i in 0 1 2; do
	others=$(for j in 0 1 2; do [ $j = $i ] || printf '%s,' "${F[$j]}"; done)
	"$BIN/loadgen" -addr "${F[$i]}" -enroll-addr 127.0.0.1:$G -token "$TOK" -agents $((N / 3)) -identities "$W/ids$i" \
		-collector-pid "${FP[$i]}" -hold "$HOLD" -finding-every "$EVERY" -heartbeat 30s -rate "$RATE" -ramp-timeout 20m \
		-failover "${others%,}" >"$W/lg$i.json" 2>"$W/lg$i.log" & LG+=($!)
done
t0=$(date +%s)
# A loadgen of more agents than one process holds (-per-proc 8000) says
# "all children ready" once its children all are; its children's own
# "agents connected" lines are parts.
ready="agents connected"; [ $((N / 3)) -gt 8000 ] && ready="all children ready"
for i in 0 1 2; do
	for _ in $(seq 24000); do
		grep -q "$ready" "$W/lg$i.log" && break
		kill -0 "${LG[$i]}" 2>/dev/null || { echo "loadgen $i ended early" >&2; tail "$W/lg$i.log" >&2; exit 1; }
		sleep 0.1
	done
done
echo "all $N agents placed after $(($(date +%s) - t0)) s (enrolment and ramp)"
sleep "$KILL_AFTER"
printf 'RSS held (MB): fe0 %s fe1 %s fe2 %s | nats %s %s %s | storer %s\n' \
	"$(rssmb ${FP[0]})" "$(rssmb ${FP[1]})" "$(rssmb ${FP[2]})" "$(rssmb ${NP[0]})" "$(rssmb ${NP[1]})" "$(rssmb ${NP[2]})" "$(rssmb $SPID)"
for i in 0 1 2; do printf 'fe%d holds %s descriptors\n' $i "$(ls /proc/${FP[$i]}/fd | wc -l)"; done
kill -9 "${FP[0]}"
echo "kill -9 fe0 at $(date +%T)"
for p in "${LG[@]}"; do wait "$p" || true; done
printf 'after the kill, RSS (MB): fe1 %s fe2 %s\n' "$(rssmb ${FP[1]})" "$(rssmb ${FP[2]})"
python3 - "$W"/lg0.json "$W"/lg1.json "$W"/lg2.json <<'PY'
import json, sys
for i, p in enumerate(sys.argv[1:]):
    try:
        r = json.load(open(p))
    except Exception as e:
        print(f"loadgen {i}: no summary ({e})"); continue
    print(f"loadgen {i} (agents of fe{i}): connected {r.get('connected')}/{r.get('agents')}, "
          f"ack p50 {r.get('ack_p50_ms', 0):.1f} ms p99 {r.get('ack_p99_ms', 0):.1f} ms ({r.get('acks')} acks), "
          f"fe{i} RSS held {r.get('collector_rss_held_mean_bytes', 0)/2**20:.0f} MB, "
          f"{r.get('collector_rss_per_agent_kb', 0):.1f} KB/agent, CPU {r.get('collector_cpu_percent_while_held', 0):.0f} %, "
          f"stream errors {r.get('stream_errors')}, reconnects {r.get('reconnects', 0)} "
          f"(p50 {r.get('reconnect_p50_ms', 0)/1000:.1f} s, p99 {r.get('reconnect_p99_ms', 0)/1000:.1f} s, "
          f"max {r.get('reconnect_max_ms', 0)/1000:.1f} s), not reconnected {r.get('reconnects_failed', 0)}")
PY
echo "work dir $W"

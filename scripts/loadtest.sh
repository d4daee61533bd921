#!/usr/bin/env bash
# loadtest.sh: collector memory and ack latency per agent count, with one or
# more collector builds or buffer profiles in the same run (docs/scale.md).
#
#   scripts/loadtest.sh [-n "1000 5000"] [-hold 60s] CONFIG...
#   CONFIG is BINARY[:PROFILE], e.g. /tmp/vc-old bin/vigil-collector:grpc-default bin/vigil-collector
#
# One data dir for the whole run (identities are enrolled once and reused),
# a fresh collector process per count and config, loopback only.
set -euo pipefail
counts="1000 5000"
hold=60s
heartbeat=60s
finding=60s
ramp=5m
while [ $# -gt 0 ]; do
	case "$1" in
	-n) counts="$2"; shift 2 ;;
	-hold) hold="$2"; shift 2 ;;
	-heartbeat) heartbeat="$2"; shift 2 ;;
	-finding-every) finding="$2"; shift 2 ;;
	-ramp-timeout) ramp="$2"; shift 2 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { sed -n 2,8p "$0"; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
work=${LOADTEST_DIR:-/tmp/vigil-loadtest}
mkdir -p "$work"
go build -o "$work/loadgen" "$root/tools/loadgen"
ulimit -n "$(ulimit -Hn)"
port=17443
first=${1%%:*}

start() { # BINARY PROFILE
	local prof=()
	[ -n "$2" ] && prof=(--grpc-buffers "$2")
	"$1" serve --data "$work/data" --grpc-listen 127.0.0.1:$port --http-listen 127.0.0.1:17080 \
		--verify-interval -1s --log-level warn --heartbeat "$heartbeat" "${prof[@]}" >>"$work/collector.log" 2>&1 &
	pid=$!
	for _ in $(seq 600); do [ -S "$work/data/admin.sock" ] && break; sleep 0.1; done
	# the admin socket comes up with the agent port; give the listener a moment to answer
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
}
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; }

start "$first" ""
if [ ! -s "$work/token" ]; then
	"$first" token create --data "$work/data" --group load --uses 60000 --ttl 720h >"$work/token"
fi
stop

printf '| agents | collector | profile | connected | RSS before | RSS held (mean) | per agent | ack p50 | ack p99 | CPU |\n|---|---|---|---|---|---|---|---|---|---|\n'
for n in $counts; do
	for cfg in "$@"; do
		bin=${cfg%%:*}; profile=; [ "$cfg" != "$bin" ] && profile=${cfg#*:}
		start "$bin" "$profile"
		out=$("$work/loadgen" -addr 127.0.0.1:$port -token "$(cat "$work/token")" -identities "$work/ids" \
			-agents "$n" -per-proc 7000 -rate 400 -ramp-timeout "$ramp" -hold "$hold" -heartbeat "$heartbeat" -finding-every "$finding" \
			-collector-pid "$pid" 2>>"$work/loadgen.log")
		stop
		res="$work/result-$n-$(basename "$bin")-${profile:-default}.json"
		echo "$out" >"$res"
		/usr/bin/python3 - "$n" "$(basename "$bin")" "${profile:-default}" "$res" <<'PY'
import json, sys
n, b, p, f = sys.argv[1:5]; r = json.load(open(f))
mb = lambda v: f"{v/1e6:,.0f} MB"
print(f"| {int(n):,} | {b} | {p} | {r['connected']:,} | {mb(r.get('collector_rss_before_bytes',0))} | {mb(r.get('collector_rss_held_mean_bytes',0))} | {r.get('collector_rss_per_agent_kb',0):.1f} KB | {r['ack_p50_ms']:.1f} ms | {r['ack_p99_ms']:.1f} ms | {r.get('collector_cpu_percent_while_held',0):.1f} % |")
PY
	done
done

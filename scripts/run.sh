#!/usr/bin/env bash
# make run: a collector with its Badger store in ./var/collector, a local
# agent enrolled into the "demo" group and running, one selftest finding sent
# end to end. Ctrl-C stops both cleanly (SIGTERM: in-flight commits finish,
# Badger closes).
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${VIGIL_VAR:-$PWD/var}
GRPC=${VIGIL_GRPC:-127.0.0.1:7443}
HTTP=${VIGIL_HTTP:-127.0.0.1:7080}
mkdir -p "$VAR"
C="$VAR/collector" A="$VAR/agent"

pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping agent and collector..."
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	echo "stopped; data kept in $VAR"
}
trap stop INT TERM EXIT

./bin/vigil-collector serve --data "$C" --grpc-listen "$GRPC" --http-listen "$HTTP" 2>>"$VAR/collector.log" &
pids+=($!)
for _ in $(seq 100); do
	./bin/vigil-collector devices list --data "$C" --json >/dev/null 2>&1 && break
	sleep 0.1
done
./bin/vigil-collector devices list --data "$C" --json >/dev/null || { echo "collector did not start; see $VAR/collector.log"; exit 1; }

if [ ! -f "$A/config.json" ]; then
	token=$(./bin/vigil-collector token create --data "$C" --group demo --ttl 1h --uses 1)
	./bin/vigil-agent enroll --collector "$GRPC" --token "$token" --state "$A"
fi
./bin/vigil-agent run --state "$A" 2>>"$VAR/agent.log" &
pids+=($!)
for _ in $(seq 100); do
	./bin/vigil-agent status --state "$A" >/dev/null 2>&1 && break
	sleep 0.1
done
./bin/vigil-agent trigger-test --state "$A" --count 1 >/dev/null

# The console is HTTPS with a certificate from the collector's own CA; the
# browser will not know that CA, so give what to compare before trusting it.
fp=$(grep -o ' sha256_fingerprint=[^ ]*' "$VAR/collector.log" | tail -1 | cut -d= -f2 || true)

pwfile="$C/initial-admin-password"
login="user admin, password in $pwfile"
[ -f "$pwfile" ] || login="the admin account created on first start (password file since removed)"
cat <<MSG

Vigil is running.
  console    https://$HTTP/   log in as $login
             certificate SHA-256 $fp
             (issued by the collector's CA $C/pki/ca.pem: import that to trust it,
              or check the fingerprint in the browser's warning before accepting)
  collector  gRPC $GRPC   data $C (log $VAR/collector.log)
  agent      state $A (log $VAR/agent.log)

  See findings:      ./bin/vigil-collector findings list --data $C
  See devices:       ./bin/vigil-collector devices list --data $C
  Prove monitoring:  ./bin/vigil-agent trigger-test --state $A --count 5
  Edit rules:        $C/rules/default/*.yaml (pushed to agents on save)

  Add staff:         ./bin/vigil-collector user add --data $C --username dsl1 --role dsl --password-file FILE
  Watch a screen:    ./bin/vigil-agent session --state $A   (in a desktop session; alerts appear in the console)

Press Ctrl-C to stop.
MSG
wait "${pids[0]}"

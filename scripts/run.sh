#!/usr/bin/env bash
# make run: a collector with its Badger store in ./var/collector, a local
# agent enrolled into the "pupils" group (the group the default screen,
# Bluetooth and removable-media rules apply to, so what the hint below
# promises happens) and running, a DSL account to see the alerts with, and
# one selftest finding sent end to end. Ctrl-C stops both cleanly (SIGTERM:
# in-flight commits finish, Badger closes).
#
# VIGIL_RUN_SETUP_ONLY=1 stops after the setup (collector and agent
# running, accounts made) and prints the hint, leaving both running for the
# caller to stop: the e2e test (e2e/makerun_test.go) drives this path.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${VIGIL_VAR:-$PWD/var}
GRPC=${VIGIL_GRPC:-127.0.0.1:7443}
HTTP=${VIGIL_HTTP:-127.0.0.1:7080}
BIN=${VIGIL_BIN:-./bin}
mkdir -p "$VAR"
C="$VAR/collector" A="$VAR/agent"
GROUP=pupils
SOCK="$VAR/run/session.sock"
mkdir -p "$VAR/run"

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

"$BIN"/vigil-collector serve --data "$C" --grpc-listen "$GRPC" --http-listen "$HTTP" 2>>"$VAR/collector.log" &
pids+=($!)
for _ in $(seq 100); do
	"$BIN"/vigil-collector devices list --data "$C" --json >/dev/null 2>&1 && break
	sleep 0.1
done
"$BIN"/vigil-collector devices list --data "$C" --json >/dev/null || { echo "collector did not start; see $VAR/collector.log"; exit 1; }

# An agent enrolled by an older make run is in group "demo", which no
# default rule applies to: enroll it again into pupils.
if [ -f "$A/config.json" ] && ! grep -q '"group": *"'$GROUP'"' "$A/config.json"; then
	echo "re-enrolling the local agent into group $GROUP (it was enrolled into another group)"
	mv "$A" "$A.old.$(date +%s)"
fi
if [ ! -f "$A/config.json" ]; then
	token=$("$BIN"/vigil-collector token create --data "$C" --group "$GROUP" --ttl 1h --uses 1)
	"$BIN"/vigil-agent enroll --collector "$GRPC" --token "$token" --state "$A"
fi

# The alerts go to the Designated Safeguarding Lead (the admin sees no
# alerts): a DSL account, its password in a file only the owner can read.
dslpw="$VAR/dsl-password"
if [ ! -f "$dslpw" ]; then
	# tr reads a finite input whole: `tr </dev/urandom | head` dies of
	# SIGPIPE, which pipefail turns into a failure.
	pw=$(head -c 600 /dev/urandom | LC_ALL=C tr -dc 'a-km-zA-HJ-NP-Z2-9')
	(umask 077; printf '%s\n' "${pw:0:20}" >"$dslpw")
	"$BIN"/vigil-collector user add --data "$C" --username dsl --role dsl --display-name "Demo DSL" \
		--password-file "$dslpw" >/dev/null 2>>"$VAR/collector.log" ||
		{ echo "could not create the dsl account; see $VAR/collector.log"; rm -f "$dslpw"; exit 1; }
fi

"$BIN"/vigil-agent run --state "$A" --session-socket "$SOCK" 2>>"$VAR/agent.log" &
pids+=($!)
for _ in $(seq 100); do
	"$BIN"/vigil-agent status --state "$A" >/dev/null 2>&1 && break
	sleep 0.1
done
"$BIN"/vigil-agent trigger-test --state "$A" --count 1 >/dev/null

# The console is HTTPS with a certificate from the collector's own CA; the
# browser will not know that CA, so give what to compare before trusting it.
fp=$(grep -o ' sha256_fingerprint=[^ ]*' "$VAR/collector.log" | tail -1 | cut -d= -f2 || true)

pwfile="$C/initial-admin-password"
login="user admin, password in $pwfile (you choose a new one at first sign-in)"
[ -f "$pwfile" ] || login="the admin account created on first start (its password is the one you chose)"
cat <<MSG

Vigil is running.
  console    https://$HTTP/   log in as $login
             certificate SHA-256 $fp
             (issued by the collector's CA $C/pki/ca.pem: import that to trust it,
              or check the fingerprint in the browser's warning before accepting)
  collector  gRPC $GRPC   data $C (log $VAR/collector.log)
  agent      state $A (log $VAR/agent.log)

  See findings:      $BIN/vigil-collector findings list --data $C
  See devices:       $BIN/vigil-collector devices list --data $C
  Prove monitoring:  $BIN/vigil-agent trigger-test --state $A --count 5
  Edit rules:        $C/rules/default/*.yaml (pushed to agents on save)

  Add staff:         $BIN/vigil-collector user add --data $C --username dsl1 --role dsl --password-file FILE
  Watch a screen:    $BIN/vigil-agent session --session-socket $SOCK   (in a desktop session; a window
                     title with a keyword, say a search for "how to kill myself", becomes an alert in the
                     console: sign in as dsl, password in $dslpw; this agent is in group $GROUP)

Press Ctrl-C to stop.
MSG
if [ "${VIGIL_RUN_SETUP_ONLY:-}" = 1 ]; then
	trap - INT TERM EXIT
	echo "collector_pid=${pids[0]} agent_pid=${pids[1]}"
	exit 0
fi
wait "${pids[0]}"

#!/bin/sh
# Start the vSphere simulator (building it first if needed) in its own session.
# Idempotent: if it already runs (pid file + live process), just print its URL.
# Env: VCSIM_PORT (default 0 = any free port), VCSIM_USER / VCSIM_PASSWORD
# (default user / pass), VCSIM_STATE_DIR (default <repo>/.state/vcsim).
# Writes to the state dir: vcsim.pid, url, cert.pem, env (VMWARE_* lines), vcsim.log.
# Prints the service URL (https://127.0.0.1:PORT/sdk).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
STATE=${VCSIM_STATE_DIR:-$REPO/.state/vcsim}
export VCSIM_STATE_DIR="$STATE"
PIDFILE=$STATE/vcsim.pid
URLFILE=$STATE/url
USER_=${VCSIM_USER:-user}
PASS_=${VCSIM_PASSWORD:-pass}

alive() {
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q vcsim-pv
}

if alive && [ -s "$URLFILE" ]; then
    cat "$URLFILE"
    exit 0
fi

BIN=$("$HERE/build.sh")
mkdir -p "$STATE/datastores"
rm -f "$URLFILE" "$PIDFILE"
# The simulator keeps its datastore folders under TMPDIR; keep them in the state dir.
TMPDIR="$STATE/datastores" setsid "$BIN" \
    -listen "127.0.0.1:${VCSIM_PORT:-0}" -url-file "$URLFILE" -cert-file "$STATE/cert.pem" \
    -username "$USER_" -password "$PASS_" \
    >"$STATE/vcsim.log" 2>&1 </dev/null &
echo $! > "$PIDFILE"

i=0
while [ ! -s "$URLFILE" ]; do
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "start.sh: the simulator exited; log:" >&2
        cat "$STATE/vcsim.log" >&2
        rm -f "$PIDFILE"
        exit 1
    fi
    i=$((i + 1))
    if [ "$i" -gt 200 ]; then
        echo "start.sh: the simulator did not come up in 20s" >&2
        exit 1
    fi
    sleep 0.1
done

url=$(cat "$URLFILE")
port=${url##*:}; port=${port%%/*}
cat > "$STATE/env" <<ENV
VMWARE_HOST=127.0.0.1
VMWARE_PORT=$port
VMWARE_USER=$USER_
VMWARE_PASSWORD=$PASS_
VMWARE_VALIDATE_CERTS=false
ENV
echo "$url"

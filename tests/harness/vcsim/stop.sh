#!/bin/sh
# Stop the simulator started by start.sh: SIGTERM by pid (it then removes its
# datastore folders), SIGKILL after 10 s. Idempotent.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
STATE=${VCSIM_STATE_DIR:-$REPO/.state/vcsim}
PIDFILE=$STATE/vcsim.pid

if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
            && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q vcsim-pv; then
        kill -TERM "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
            sleep 0.1; i=$((i + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop.sh: $pid did not stop on SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDFILE"
fi
rm -f "$STATE/url" "$STATE/env"
# Leftovers of an unclean stop.
rm -rf "$STATE/datastores"

#!/usr/bin/env bash
# shellcheck disable=SC2153  # STATE and the other settings come from lib.sh
# Show the state of each test-cloud service: pid alive, API port answering.
# Exit 0 when everything runs, 1 otherwise.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
rc=0
for s in $SERVICES; do
    port="${API_PORT[$s]:-}"
    if is_running "$s"; then
        state="running (pid $(cat "$(pidfile "$s")"))"
        if [ -n "$port" ] && ! wait_port "$port" 1; then state="$state, port $port not answering"; rc=1; fi
    else
        state="stopped"; rc=1
    fi
    printf '%-18s %s\n' "$s" "$state"
done
[ -f "$STATE/clouds.yaml" ] && echo "clouds.yaml: $STATE/clouds.yaml (cloud pvtest)"
exit $rc

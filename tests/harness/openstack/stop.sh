#!/usr/bin/env bash
# Stop the OpenStack test cloud by pid (process groups started by start.sh).
# Usage: stop.sh [SERVICE...]   (default: everything; e.g. `stop.sh cinder-api` for fault tests)
# Nova services ignore SIGTERM: SIGKILL after a grace period. RabbitMQ: rabbitmqctl stop.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

GRACE="${PV_OS_STOP_GRACE:-5}"

term_group() {  # send SIG to the process group led by the service's pid
    local name="$1" sig="$2" pid
    pid="$(cat "$(pidfile "$name")" 2>/dev/null)" || return 0
    [ -n "$pid" ] || return 0
    kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
}

stop_services() {
    local names=("$@") left=() end n
    for n in "${names[@]}"; do
        if is_running "$n"; then term_group "$n" TERM; left+=("$n"); else rm -f "$(pidfile "$n")"; fi
    done
    [ ${#left[@]} -gt 0 ] || return 0
    end=$((SECONDS + GRACE))
    while [ $SECONDS -lt $end ]; do
        local still=()
        for n in "${left[@]}"; do is_running "$n" && still+=("$n"); done
        [ ${#still[@]} -gt 0 ] || break
        sleep 0.3
    done
    for n in "${left[@]}"; do
        if is_running "$n"; then log "$n ignored SIGTERM: SIGKILL"; term_group "$n" KILL; fi
        # also the rest of the group (workers) once the leader is gone
        term_group "$n" KILL
        rm -f "$(pidfile "$n")"
        log "stopped $n"
    done
}

stop_rabbitmq() {
    is_running rabbitmq || { rm -f "$(pidfile rabbitmq)"; return 0; }
    (
        # the Debian wrapper /usr/sbin/rabbitmqctl switches to the rabbitmq user (other cookie)
        export RABBITMQ_NODENAME=rabbit@localhost ERL_EPMD_ADDRESS=127.0.0.1 HOME="$DATA/rabbitmq"
        timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl -q stop "$RUN/rabbitmq-node.pid" >/dev/null 2>&1 || true
    )
    stop_services rabbitmq
    # epmd was started by the Erlang VM for this node; ask it to exit (only if nothing else uses it)
    if command -v epmd >/dev/null && ! ERL_EPMD_ADDRESS=127.0.0.1 epmd -names 2>/dev/null | grep -q '^name '; then
        ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 || true
    fi
}

if [ $# -gt 0 ]; then
    rm -f "$RUN/ready"
    for s in "$@"; do
        case "$s" in
            rabbitmq) stop_rabbitmq ;;
            *) stop_services "$s" ;;
        esac
    done
    exit 0
fi

stop_services nova-compute nova-scheduler nova-conductor nova-api cinder-volume cinder-scheduler \
    cinder-api glance-api neutron-api placement keystone
stop_rabbitmq
PV_OS_STOP_GRACE=30 stop_services mariadb
rm -f "$RUN/mariadbd.pid"
rm -f "$RUN/ready"
log "OpenStack test cloud stopped"

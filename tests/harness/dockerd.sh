#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# tests/harness/dockerd.sh start|stop|status
#
# Makes sure a Docker engine answers on the default socket for the tests.
#   start   if `docker info` works: nothing (an engine we did not start is never touched);
#           else install Debian's docker.io if dockerd is missing and start
#           `setsid dockerd --data-root <repo>/.state/docker/data` (pid file, log under
#           <repo>/.state/docker/), then wait until it answers.
#   stop    stop the dockerd THIS script started (by its pid: TERM, then KILL); else nothing.
#   status  exit 0 if an engine answers (says whether we started it), 3 otherwise.
# Environment: PV_DOCKERD_STATE (default <repo>/.state/docker), PV_DOCKERD_TIMEOUT (s, default 90).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${PV_DOCKERD_STATE:-$REPO/.state/docker}
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
TIMEOUT=${PV_DOCKERD_TIMEOUT:-90}
export DEBIAN_FRONTEND=noninteractive
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}

log() { echo "dockerd.sh: $*" >&2; }

docker_ok() {
    command -v docker >/dev/null 2>&1 || return 1
    timeout 15 docker info >/dev/null 2>&1
}

our_pid() {
    # pid of the dockerd we started, if it still runs
    [[ -s $PIDFILE ]] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] && [[ -d /proc/$pid ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] || return 1
    echo "$pid"
}

apt_install() {
    # apt-get install -y PKG..., with one `apt-get update` when the lists are missing or stale;
    # services are not started by maintainer scripts (no init system here to own them).
    local policy_made=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_made=1
    fi
    local rc=0
    if ! apt-get install -y -q --no-install-recommends "$@" >&2; then
        apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "$@" >&2 || rc=$?
    fi
    [[ -n $policy_made ]] && rm -f /usr/sbin/policy-rc.d
    return $rc
}

children_of() {
    local pid=$1
    cat /proc/"$pid"/task/*/children 2>/dev/null || true
}

start() {
    if docker_ok; then
        if pid=$(our_pid); then log "running (ours, pid $pid)"; else log "an engine is already running (not ours)"; fi
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        log "dockerd missing: installing Debian's docker.io"
        apt_install docker.io
    fi
    if ! command -v docker >/dev/null 2>&1; then
        # the docker CLI: part of docker.io on Debian 12, its own package (docker-cli) on Debian 13
        apt_install docker-cli || apt_install docker.io
    fi
    if ! command -v docker >/dev/null 2>&1; then
        log "no docker CLI after installing docker.io/docker-cli"
        return 1
    fi
    mkdir -p "$STATE/data"
    local pid
    if ! pid=$(our_pid); then
        log "starting dockerd (data-root $STATE/data, log $LOG)"
        setsid dockerd --data-root "$STATE/data" --pidfile "$PIDFILE" >"$LOG" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$PIDFILE.launch"
    fi
    local t0=$SECONDS deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if docker_ok; then
            # dockerd writes its own pid file; keep ours if it did not (yet)
            [[ -s $PIDFILE ]] || echo "$pid" >"$PIDFILE"
            log "ready after $((SECONDS - t0)) s (pid $(cat "$PIDFILE"))"
            return 0
        fi
        if ! [[ -d /proc/$pid ]]; then
            log "dockerd exited; log tail:"; tail -n 40 "$LOG" >&2 || true
            return 1
        fi
        sleep 0.5
    done
    log "dockerd did not answer within ${TIMEOUT}s; log tail:"; tail -n 40 "$LOG" >&2 || true
    return 1
}

stop() {
    local pid
    if ! pid=$(our_pid); then
        log "no dockerd started by this script is running"
        rm -f "$PIDFILE" "$PIDFILE.launch"
        return 0
    fi
    local kids
    kids=$(children_of "$pid")   # its managed containerd, killed too if dockerd must be KILLed
    log "stopping dockerd pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 60; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.5
    done
    if [[ -d /proc/$pid ]]; then
        log "dockerd ignored TERM: KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    for k in $kids; do
        if [[ -d /proc/$k ]]; then kill -TERM "$k" 2>/dev/null || true; fi
    done
    sleep 0.5
    for k in $kids; do
        if [[ -d /proc/$k ]]; then kill -KILL "$k" 2>/dev/null || true; fi
    done
    rm -f "$PIDFILE" "$PIDFILE.launch"
    return 0
}

status() {
    local pid
    if docker_ok; then
        if pid=$(our_pid); then echo "running (started by dockerd.sh, pid $pid)"; else echo "running (not ours)"; fi
        return 0
    fi
    echo "not running"
    return 3
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

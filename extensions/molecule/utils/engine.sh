#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# extensions/molecule/utils/engine.sh start|stop|status BASE BRIDGE [SUBNET]
#
# The private Docker engine of the volume_plugin scenario (its "instance": create starts it,
# destroy stops it). Docker 20.10 keeps every legacy volume plugin it has activated until it
# restarts, and then waits ~15 s in each `docker volume ls` for a plugin whose socket is gone,
# so a plugin installed and removed by a test must never be seen by the machine's shared
# engine. This engine runs in its own mount namespace (unshare --mount --propagation slave)
# where BASE/plugins is bind-mounted over /run/docker/plugins: the plugin puts its socket
# there and only this engine sees it. BASE/shared is made a shared bind mount first, so what
# the plugin mounts under it (in the host's namespace) propagates into the engine's, as on a
# normal host; the plugin's root must live under BASE/shared.
#
# Files: BASE/e/{docker.sock,dockerd.pid,dockerd.log,data/,exec/}. Network: its own bridge
# BRIDGE (never --bridge=none: a dockerd started that way deletes the host's docker0),
# no iptables. The same technique as the plugin tests' PrivateDockerd.
#   start   start it unless it answers; wait until it does (PV_ENGINE_TIMEOUT, default 90 s)
#   stop    stop it by the pid in its pid file (TERM, then KILL); unmount BASE/shared and
#           what is mounted under it, detach loop devices backed under BASE, delete BRIDGE
#   status  exit 0 if it answers
set -euo pipefail
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}

ACTION=${1:?usage: engine.sh start|stop|status BASE BRIDGE [SUBNET]}
BASE=${2:?usage: engine.sh start|stop|status BASE BRIDGE [SUBNET]}
BRIDGE=${3:?usage: engine.sh start|stop|status BASE BRIDGE [SUBNET]}
SUBNET=${4:-172.31.253.1/24}
BASE=${BASE%/}
ENGINE=$BASE/e
SOCK=$ENGINE/docker.sock
PIDFILE=$ENGINE/dockerd.pid
LOG=$ENGINE/dockerd.log
TIMEOUT=${PV_ENGINE_TIMEOUT:-90}

log() { echo "engine.sh: $*" >&2; }

answers() { timeout 15 docker -H "unix://$SOCK" info >/dev/null 2>&1; }

alive() {   # a zombie has an empty cmdline
    local cmd
    cmd=$(tr -d '\0' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ -n $cmd ]]
}

engine_pid() {
    local pid
    [[ -s $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$PIDFILE" || return 1
    echo "$pid"
}

apt_install() {
    # apt-get install -y PKG... (one `apt-get update` when that fails); maintainer scripts
    # must not start services (no init system here owns them)
    local policy_made='' rc=0
    export DEBIAN_FRONTEND=noninteractive
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_made=1
    fi
    if ! apt-get install -y -q --no-install-recommends "$@" >&2; then
        { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "$@" >&2; } || rc=$?
    fi
    [[ -n $policy_made ]] && rm -f /usr/sbin/policy-rc.d
    return $rc
}

ensure_tools() {
    # a fresh CI machine: dockerd (docker.io), the docker CLI (docker-cli on Debian 13), ip, unshare
    command -v dockerd >/dev/null || apt_install docker.io
    command -v docker >/dev/null || apt_install docker-cli || apt_install docker.io
    command -v ip >/dev/null || apt_install iproute2
    command -v unshare >/dev/null || apt_install util-linux
}

is_mountpoint() { awk -v t="$1" '$5 == t {found = 1} END {exit !found}' /proc/self/mountinfo; }

start() {
    if answers; then echo "running (pid $(engine_pid || echo '?'))"; return 0; fi
    ensure_tools
    mkdir -p "$ENGINE" "$BASE/plugins" "$BASE/shared" /run/docker/plugins
    chmod 0700 "$BASE/plugins"
    if ! is_mountpoint "$BASE/shared"; then
        mount --bind "$BASE/shared" "$BASE/shared"
        mount --make-shared "$BASE/shared"
    fi
    if [[ ! -e /sys/class/net/$BRIDGE ]]; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$SUBNET" dev "$BRIDGE"
        ip link set "$BRIDGE" up
    fi
    rm -f "$PIDFILE"
    # shellcheck disable=SC2016 # $1 and $@ belong to the inner sh
    setsid unshare --mount --propagation slave -- \
        sh -c 'mount --bind "$1" /run/docker/plugins && shift && exec "$@"' sh "$BASE/plugins" \
        dockerd --data-root "$ENGINE/data" --exec-root "$ENGINE/exec" -H "unix://$SOCK" \
        --pidfile "$PIDFILE" --bridge "$BRIDGE" --iptables=false --ip-masq=false --ip6tables=false \
        --userland-proxy=false </dev/null >>"$LOG" 2>&1 &
    local i
    for ((i = 0; i < TIMEOUT * 2; i++)); do
        if answers; then echo "started (pid $(engine_pid || echo '?'))"; return 0; fi
        sleep 0.5
    done
    log "the engine did not answer within ${TIMEOUT}s; log tail:"
    tail -n 30 "$LOG" >&2
    return 1
}

stop() {
    local pid i note="not running"
    if pid=$(engine_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
        note="stopped (pid $pid)"
    fi
    rm -f "$PIDFILE"
    # what is mounted under the shared bind mount (the plugin's volumes), deepest first
    awk -v base="$BASE/shared/" 'index($5, base) == 1 {print length($5), $5}' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2- | while IFS= read -r target; do
            umount "$target" 2>/dev/null || umount -l "$target"
            log "unmounted $target"
        done
    while read -r dev file; do
        [[ $file == "$BASE/"* ]] && losetup -d "$dev" && log "detached $dev ($file)"
    done < <(losetup -l -n -O NAME,BACK-FILE 2>/dev/null)
    while is_mountpoint "$BASE/shared"; do umount "$BASE/shared" || umount -l "$BASE/shared"; done
    if [[ -e /sys/class/net/$BRIDGE ]]; then
        ip link delete "$BRIDGE"
    fi
    echo "$note"
}

case $ACTION in
    start) start ;;
    stop) stop ;;
    status) if answers; then echo "running (pid $(engine_pid || echo '?'))"; else echo "not running"; exit 3; fi ;;
    *) echo "usage: engine.sh start|stop|status BASE BRIDGE [SUBNET]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# scripts/bootstrap.sh - make this machine ready to run the collection and its tests.
# Idempotent; works on a fresh Debian 12 or 13 as root (or through sudo).
#   1. apt-get installs the system packages that are missing (one `apt-get update` only when needed)
#   2. <repo>/.venv with `pip install -r tests/requirements.txt` (skipped when unchanged)
#   3. a running Docker engine (tests/harness/dockerd.sh start) and the test image
#      (tests/harness/image.sh)
# Environment:
#   PV_PYTHON      interpreter for the venv (default: /usr/bin/python3, else python3 on PATH)
#   PV_NO_DOCKER=1 skip step 3
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.venv
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}
T0=$SECONDS

log() { echo "bootstrap: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        log "not root: re-running through sudo"
        exec sudo -E bash "$0" "$@"
    fi
    log "must run as root (apt-get, dockerd, loop devices, mounts)"
    exit 1
fi

# ---------------------------------------------------------------- 1. system packages
PACKAGES=(
    ca-certificates git tar
    python3 python3-venv
    python3-docker          # the plugin daemon's Docker client (role venv sees system site-packages; bench daemon)
    e2fsprogs xfsprogs util-linux mount fdisk
    busybox-static
    cryptsetup-bin          # tests only: a real LUKS header for the never-format test
    docker.io iptables
    shellcheck
    # cinder tests: Nova writes config drives with genisoimage; fuseiso reads them on kernels without ISO 9660
    genisoimage fuseiso
    # fleet tests: the multi-host lab (tests/harness/lab) builds its image with debootstrap, puts
    # its dockerd in a network namespace (ip) and reaches its hosts over SSH
    debootstrap iproute2 openssh-client
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    # no init system owns services here: keep maintainer scripts from starting dockerd;
    # tests/harness/dockerd.sh starts it with its own data-root and pid file
    policy_made=
    if [[ $(cat /proc/1/comm 2>/dev/null) != systemd && ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_made=1
    fi
    cleanup_policy() { [[ -n $policy_made ]] && rm -f /usr/sbin/policy-rc.d; return 0; }
    trap cleanup_policy EXIT
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    cleanup_policy
    trap - EXIT
else
    log "system packages present"
fi
if ! command -v docker >/dev/null 2>&1; then
    # Debian 13 ships the docker CLI separately (docker-cli, only recommended by docker.io)
    log "installing docker-cli"
    apt-get install -y -q --no-install-recommends docker-cli ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends docker-cli; }
fi

if [[ ! -e /dev/loop-control ]]; then
    modprobe loop 2>/dev/null || log "WARNING: /dev/loop-control missing and 'modprobe loop' failed: loop tests will fail"
fi

# ---------------------------------------------------------------- 2. venv
PY=${PV_PYTHON:-}
if [[ -z $PY ]]; then
    if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
fi
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating $VENV with $PY ($("$PY" --version 2>&1))"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi
stamp=$VENV/.pv-requirements.sha256
want=$(cat "$REPO/tests/requirements.txt" "$REPO/requirements.txt" | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    log "pip install -r tests/requirements.txt"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    (cd "$REPO/tests" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt)
    echo "$want" >"$stamp"
else
    log "venv up to date"
fi

# ---------------------------------------------------------------- 3. docker
if [[ -z ${PV_NO_DOCKER:-} ]]; then
    bash "$REPO/tests/harness/dockerd.sh" start
    bash "$REPO/tests/harness/image.sh" >/dev/null
fi

log "done in $((SECONDS - T0)) s"
